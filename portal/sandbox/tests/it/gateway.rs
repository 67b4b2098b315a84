//! The latency gateway through the real AWS SDK: slow resources take their
//! time behind it, while moto itself (asked directly) has them ready at once.

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::NatGatewayState;
use aws_sdk_elasticloadbalancingv2::types::LoadBalancerStateEnum;
use cloudpulse_sandbox::{Gateway, Latency, MotoServer};

use crate::common::{nat_state, network, Clouds};

const DELAY: Duration = Duration::from_secs(3);

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
    let Clouds { moto, gateway } = Clouds::start_with(Latency {
        nat_pending: DELAY,
        ..Latency::default()
    })
    .await;
    let ec2 = aws_sdk_ec2::Client::new(&gateway.sdk_config());
    let direct = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let subnets = network(&ec2, 0).await.subnets;
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

    assert_eq!(nat_state(&ec2, id).await, Some(NatGatewayState::Pending));
    assert_eq!(
        nat_state(&direct, id).await,
        Some(NatGatewayState::Available),
        "moto alone has no pending state"
    );
    let took = until(since, || async {
        nat_state(&ec2, id).await == Some(NatGatewayState::Available)
    })
    .await;
    assert!(took >= DELAY - Duration::from_millis(500), "{took:?}");
    moto.stop().await;
}

#[tokio::test]
async fn load_balancer_is_provisioning_until_its_delay_has_passed() {
    let Clouds { moto, gateway } = Clouds::start_with(Latency {
        alb_provisioning: DELAY,
        ..Latency::default()
    })
    .await;
    let ec2 = aws_sdk_ec2::Client::new(&gateway.sdk_config());
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&gateway.sdk_config());
    let direct = aws_sdk_elasticloadbalancingv2::Client::new(&moto.sdk_config());
    let subnets = network(&ec2, 0).await.subnets;

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
    let Clouds { moto, gateway } = Clouds::start_with(Latency {
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
    let subnets = network(&ec2, 0).await.subnets;
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

// ---------------------------------------------------------------------------
// Hostile input: what a web page, or a name rebound to 127.0.0.1, can send.

/// One HTTP/1.1 request written byte for byte (no client tidies its path
/// or headers); the status, the head and the body of the answer.
async fn raw(addr: &str, request: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

const DESCRIBE_VPCS: &str = "Action=DescribeVpcs&Version=2016-11-15";
const EC2_AUTH: &str = "AWS4-HMAC-SHA256 Credential=sandbox/20260101/us-east-1/ec2/aws4_request, \
     SignedHeaders=host, Signature=0";

/// A query-protocol POST as the SDK sends it, with `extra` header lines.
fn post(path: &str, host: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {EC2_AUTH}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn pages_rebound_names_and_moto_api_are_refused_before_moto_sees_them() {
    let Clouds { moto, gateway } = Clouds::start_with(Latency::default()).await;
    let addr = gateway.endpoint().trim_start_matches("http://").to_string();
    let port = addr.rsplit(':').next().unwrap().to_string();
    // Something to lose: a VPC, made through the gateway as the portal does.
    let ec2 = aws_sdk_ec2::Client::new(&gateway.sdk_config());
    let vpc = crate::common::vpc(&ec2, "10.7.0.0/16").await;

    // The same request, plain, as the SDK sends it, reaches moto, which
    // answers it as EC2 does (its signature is made up and IAM is enforced:
    // `AuthFailure`): every refusal below is the browser's or the
    // stranger's doing.
    for host in [
        addr.clone(),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("[::1]:{port}"),
        "127.0.0.1".to_string(),
    ] {
        let (status, _, body) = raw(&addr, &post("/", &host, "", DESCRIBE_VPCS)).await;
        assert_eq!(status, 401, "{host}: {body}");
        assert!(body.contains("<Code>AuthFailure</Code>"), "{host}: {body}");
    }

    let reset = "POST /moto-api/reset HTTP/1.1";
    let hostile: Vec<(&str, String, &str)> = vec![
        (
            "a page's form post",
            post("/", &addr, "Origin: https://evil.example\r\n", DESCRIBE_VPCS),
            "Origin",
        ),
        (
            "an opaque origin",
            post("/", &addr, "Origin: null\r\n", DESCRIBE_VPCS),
            "Origin",
        ),
        (
            "a CORS preflight",
            format!(
                "OPTIONS / HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://evil.example\r\n\
                 Access-Control-Request-Method: POST\r\n\
                 Access-Control-Request-Headers: x-amz-target\r\nConnection: close\r\n\r\n"
            ),
            "Origin",
        ),
        (
            "an <img> or no-cors fetch",
            format!(
                "GET /?{DESCRIBE_VPCS} HTTP/1.1\r\nHost: {addr}\r\nSec-Fetch-Site: cross-site\r\n\
                 Sec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: image\r\nConnection: close\r\n\r\n"
            ),
            "sec-fetch-",
        ),
        (
            "a same-origin fetch after rebinding",
            post(
                "/",
                &addr,
                "Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: cors\r\n",
                DESCRIBE_VPCS,
            ),
            "sec-fetch-",
        ),
        (
            "an old browser on a rebound name",
            post("/", &format!("rebind.example:{port}"), "", DESCRIBE_VPCS),
            "rebind.example",
        ),
        (
            "a loopback look-alike",
            post("/", &format!("127.0.0.1.nip.io:{port}"), "", DESCRIBE_VPCS),
            "is not 127.0.0.1",
        ),
        (
            "a host with a bad port",
            post("/", "127.0.0.1:80x", "", DESCRIBE_VPCS),
            "is not 127.0.0.1",
        ),
        (
            "no Host at all",
            format!(
                "POST / HTTP/1.0\r\nAuthorization: {EC2_AUTH}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{DESCRIBE_VPCS}",
                DESCRIBE_VPCS.len()
            ),
            "no Host",
        ),
        (
            "moto's reset",
            format!("{reset}\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            "moto's own API",
        ),
        (
            "moto's state",
            format!("GET /moto-api/data.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
            "moto's own API",
        ),
        (
            "moto's dashboard",
            format!("GET /moto-api HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
            "moto's own API",
        ),
        (
            "moto's reset, percent-encoded",
            format!(
                "POST /%6Doto-api/reset HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            ),
            "moto's own API",
        ),
        (
            "moto's reset behind dot segments",
            format!(
                "POST /x/../moto-api/reset HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            ),
            "moto's own API",
        ),
        (
            "moto's reset behind an encoded dot segment",
            format!(
                "POST /x/%2e%2E/moto-api/reset HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            ),
            "moto's own API",
        ),
        (
            "moto's reset behind a doubled slash",
            format!(
                "POST //moto-api/reset HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            ),
            "moto's own API",
        ),
    ];
    for (what, request, says) in &hostile {
        let (status, head, body) = raw(&addr, request).await;
        assert_eq!(status, 403, "{what}: {head}\n{body}");
        assert!(body.contains(says), "{what}: {body}");
        assert!(
            !head.contains("access-control-allow-origin"),
            "{what}: {head}"
        );
    }

    // Nothing of it reached moto: the VPC is still there.
    let direct = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let vpcs = direct.describe_vpcs().vpc_ids(&vpc).send().await.unwrap();
    assert_eq!(vpcs.vpcs().len(), 1, "moto was reset through the gateway");
    // The portal's own call to moto's API goes to moto, and works.
    moto.reset().await.expect("reset on moto's own port");
    assert!(direct.describe_vpcs().vpc_ids(&vpc).send().await.is_err());
    moto.stop().await;
}

#[tokio::test]
async fn moto_itself_answers_no_page_and_grants_no_cross_origin_read() {
    let moto = MotoServer::start().await.expect("start moto");
    let addr = moto.addr().to_string();
    // moto's global CORS (flask-cors) answered these with
    // `Access-Control-Allow-Origin: *`, so any page could read them.
    for request in [
        format!(
            "OPTIONS / HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://evil.example\r\n\
             Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
        ),
        post(
            "/",
            &addr,
            "Origin: https://evil.example\r\n",
            DESCRIBE_VPCS,
        ),
        format!(
            "GET /moto-api/data.json HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://evil.example\r\n\
             Connection: close\r\n\r\n"
        ),
        post(
            "/",
            "rebind.example",
            "Sec-Fetch-Site: same-origin\r\n",
            DESCRIBE_VPCS,
        ),
    ] {
        let (status, head, body) = raw(&addr, &request).await;
        assert!(
            !head.contains("access-control-allow-origin"),
            "{request}\n{head}"
        );
        assert_eq!(status, 403, "{request}\n{head}\n{body}");
        assert!(
            body.contains("moto serves the sandbox on this machine only"),
            "{body}"
        );
    }
    // The SDK's own requests reach moto (which checks their signature), and
    // the portal's reset still works.
    let (status, _, body) = raw(&addr, &post("/", &addr, "", DESCRIBE_VPCS)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("<Code>AuthFailure</Code>"), "{body}");
    moto.reset().await.expect("reset");
    moto.stop().await;
}
