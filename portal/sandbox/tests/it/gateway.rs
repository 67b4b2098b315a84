//! The latency gateway through the real AWS SDK: slow resources take their
//! time behind it, while moto itself (asked directly) has them ready at once.

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::NatGatewayState;
use aws_sdk_elasticloadbalancingv2::types::LoadBalancerStateEnum;
use cloudpulse_sandbox::{Gateway, Latency, MotoServer};

const DELAY: Duration = Duration::from_secs(3);

async fn moto_and_gateway(latency: Latency) -> (MotoServer, Gateway) {
    let moto = MotoServer::start().await.expect("start moto");
    let gateway = Gateway::start(&moto.endpoint(), latency)
        .await
        .expect("start gateway");
    (moto, gateway)
}

/// A VPC with a public subnet in each of two zones, made through `ec2`.
async fn network(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc
        .unwrap()
        .vpc_id
        .unwrap();
    let mut subnets = Vec::new();
    for (i, zone) in ["us-east-1a", "us-east-1b"].into_iter().enumerate() {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("10.0.{}.0/24", i + 1))
            .availability_zone(zone)
            .send()
            .await
            .unwrap()
            .subnet
            .unwrap()
            .subnet_id
            .unwrap();
        subnets.push(subnet);
    }
    subnets
}

async fn nat_state(ec2: &aws_sdk_ec2::Client, id: &str) -> NatGatewayState {
    ec2.describe_nat_gateways()
        .nat_gateway_ids(id)
        .send()
        .await
        .unwrap()
        .nat_gateways()[0]
        .state()
        .cloned()
        .unwrap()
}

async fn lb_state(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    arn: &str,
) -> LoadBalancerStateEnum {
    elb.describe_load_balancers()
        .load_balancer_arns(arn)
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .state()
        .and_then(|s| s.code())
        .cloned()
        .unwrap()
}

/// Polls `check` until it is true; returns how long that took from `since`.
async fn until<F, Fut>(since: Instant, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = since + DELAY * 4;
    while !check().await {
        assert!(Instant::now() < deadline, "never reached the final state");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    since.elapsed()
}

#[tokio::test]
async fn nat_gateway_is_pending_until_its_delay_has_passed() {
    let (moto, gateway) = moto_and_gateway(Latency {
        nat_pending: DELAY,
        ..Latency::default()
    })
    .await;
    let ec2 = aws_sdk_ec2::Client::new(&gateway.sdk_config());
    let direct = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let subnets = network(&ec2).await;
    let allocation = ec2
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .send()
        .await
        .unwrap()
        .allocation_id
        .unwrap();

    let created = ec2
        .create_nat_gateway()
        .subnet_id(&subnets[0])
        .allocation_id(allocation)
        .send()
        .await
        .unwrap();
    let since = Instant::now();
    let nat = created.nat_gateway().unwrap();
    assert_eq!(nat.state(), Some(&NatGatewayState::Pending));
    let id = nat.nat_gateway_id().unwrap();

    assert_eq!(nat_state(&ec2, id).await, NatGatewayState::Pending);
    assert_eq!(
        nat_state(&direct, id).await,
        NatGatewayState::Available,
        "moto alone has no pending state"
    );
    let took = until(since, || async {
        nat_state(&ec2, id).await == NatGatewayState::Available
    })
    .await;
    assert!(took >= DELAY - Duration::from_millis(500), "{took:?}");
    moto.stop().await;
}

#[tokio::test]
async fn load_balancer_is_provisioning_until_its_delay_has_passed() {
    let (moto, gateway) = moto_and_gateway(Latency {
        alb_provisioning: DELAY,
        ..Latency::default()
    })
    .await;
    let ec2 = aws_sdk_ec2::Client::new(&gateway.sdk_config());
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&gateway.sdk_config());
    let direct = aws_sdk_elasticloadbalancingv2::Client::new(&moto.sdk_config());
    let subnets = network(&ec2).await;

    let created = elb
        .create_load_balancer()
        .name("gateway-test")
        .set_subnets(Some(subnets))
        .send()
        .await
        .unwrap();
    let since = Instant::now();
    let arn = created.load_balancers()[0].load_balancer_arn().unwrap();

    assert_eq!(
        lb_state(&elb, arn).await,
        LoadBalancerStateEnum::Provisioning
    );
    assert_eq!(
        lb_state(&direct, arn).await,
        LoadBalancerStateEnum::Active,
        "moto alone is active on the first describe"
    );
    let took = until(since, || async {
        lb_state(&elb, arn).await == LoadBalancerStateEnum::Active
    })
    .await;
    assert!(took >= DELAY - Duration::from_millis(500), "{took:?}");
    moto.stop().await;
}

#[tokio::test]
async fn other_calls_pass_through_unchanged() {
    let (moto, gateway) = moto_and_gateway(Latency {
        nat_pending: DELAY,
        alb_provisioning: DELAY,
    })
    .await;
    let sts = aws_sdk_sts::Client::new(&gateway.sdk_config());
    let me = sts.get_caller_identity().send().await.unwrap();
    assert_eq!(me.account(), Some("123456789012"));

    // S3 exercises paths, a binary body, metadata headers and error codes.
    let s3 = |config: aws_config::SdkConfig| {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        )
    };
    let (through, direct) = (s3(gateway.sdk_config()), s3(moto.sdk_config()));
    through
        .create_bucket()
        .bucket("through-gateway")
        .send()
        .await
        .unwrap();
    let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    through
        .put_object()
        .bucket("through-gateway")
        .key("dir/blob.bin")
        .metadata("sha", "abc")
        .body(payload.clone().into())
        .send()
        .await
        .unwrap();
    for client in [&through, &direct] {
        let object = client
            .get_object()
            .bucket("through-gateway")
            .key("dir/blob.bin")
            .send()
            .await
            .unwrap();
        assert_eq!(object.metadata().and_then(|m| m.get("sha")).unwrap(), "abc");
        assert_eq!(object.body.collect().await.unwrap().into_bytes(), payload);
    }
    let missing = through
        .head_bucket()
        .bucket("no-such-bucket")
        .send()
        .await
        .unwrap_err();
    assert!(missing.into_service_error().is_not_found());

    // Old enough resources are not touched: a zero latency is a plain proxy.
    let plain = Gateway::start(&moto.endpoint(), Latency::default())
        .await
        .unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&plain.sdk_config());
    let subnets = network(&ec2).await;
    let allocation = ec2
        .allocate_address()
        .send()
        .await
        .unwrap()
        .allocation_id
        .unwrap();
    let nat = ec2
        .create_nat_gateway()
        .subnet_id(&subnets[0])
        .allocation_id(allocation)
        .send()
        .await
        .unwrap();
    assert_eq!(
        nat.nat_gateway().and_then(|n| n.state()),
        Some(&NatGatewayState::Available)
    );
    moto.stop().await;
}
