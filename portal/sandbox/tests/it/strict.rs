//! The strict layer through the real AWS SDK: each call is made straight to
//! moto, which answers at once, and through a strict gateway, which waits
//! and refuses as AWS does until AWS's figure (here a second or two) has
//! passed. Each wait is polled to its end, never timed.

use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use aws_sdk_ec2::types::{
    DomainType, LaunchTemplateIamInstanceProfileSpecificationRequest, NatGatewayState,
    RequestLaunchTemplateData,
};
use cloudpulse_sandbox::{Gateway, MotoServer, Strictness};

use crate::common::{eventually, nat_state, network, refusal, Clouds, Network, AMI};

const SECOND: Duration = Duration::from_secs(1);

async fn address(ec2: &aws_sdk_ec2::Client) -> String {
    ec2.allocate_address()
        .domain(DomainType::Vpc)
        .send()
        .await
        .unwrap()
        .allocation_id
        .unwrap()
}

#[tokio::test]
async fn a_new_instance_profile_is_refused_until_it_propagates() {
    let clouds = Clouds::start_strict(Strictness {
        iam_propagation: 2 * SECOND,
        ..Strictness::INSTANT
    })
    .await;
    let (ec2, direct) = clouds.ec2();
    let iam = aws_sdk_iam::Client::new(&clouds.gateway.sdk_config());
    let asg = aws_sdk_autoscaling::Client::new(&clouds.gateway.sdk_config());
    let Network { subnets, .. } = network(&ec2, 0).await;
    let arn = iam
        .create_instance_profile()
        .instance_profile_name("fresh")
        .send()
        .await
        .unwrap()
        .instance_profile
        .unwrap()
        .arn;
    let profile = || {
        aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
            .arn(&arn)
            .build()
    };
    let run = |client: &aws_sdk_ec2::Client| {
        client
            .run_instances()
            .image_id(AMI)
            .min_count(1)
            .max_count(1)
            .subnet_id(&subnets[0])
            .iam_instance_profile(profile())
    };
    run(&direct)
        .send()
        .await
        .expect("moto takes a profile the moment it exists");
    let (code, message) = refusal(run(&ec2).send().await);
    assert_eq!(code, "InvalidParameterValue");
    assert_eq!(
        message,
        format!(
            "Value ({arn}) for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance \
             Profile ARN"
        )
    );

    // Through a launch template, Auto Scaling words it its own way.
    let template = ec2
        .create_launch_template()
        .launch_template_name("with-profile")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(AMI)
                .iam_instance_profile(
                    LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                        .arn(&arn)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .launch_template
        .unwrap()
        .launch_template_id
        .unwrap();
    let group = || {
        asg.create_auto_scaling_group()
            .auto_scaling_group_name("young")
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(&template)
                    .version("$Latest")
                    .build(),
            )
            .min_size(0)
            .max_size(1)
            .desired_capacity(0)
            .vpc_zone_identifier(subnets.join(","))
    };
    let (code, message) = refusal(group().send().await);
    assert_eq!(code, "ValidationError");
    assert!(
        message.starts_with("You must use a valid fully-formed launch template.")
            && message.ends_with("Invalid IAM Instance Profile ARN"),
        "{message}"
    );

    eventually("the profile propagates", || async {
        run(&ec2).send().await.is_ok()
    })
    .await;
    group().send().await.expect("and the group takes it too");
    clouds.moto.stop().await;
}

#[tokio::test]
async fn a_nat_gateway_pends_then_deletes_slowly_holding_its_address() {
    let clouds = Clouds::start_strict(Strictness {
        nat_pending: SECOND,
        nat_deleting: 2 * SECOND,
        nat_deleted_visible: SECOND,
        ..Strictness::INSTANT
    })
    .await;
    let (ec2, direct) = clouds.ec2();
    let Network { vpc, subnets } = network(&ec2, 0).await;
    let eip = address(&ec2).await;
    let created = ec2
        .create_nat_gateway()
        .subnet_id(&subnets[0])
        .allocation_id(&eip)
        .send()
        .await
        .unwrap()
        .nat_gateway
        .unwrap();
    let id = created.nat_gateway_id.unwrap();
    assert_eq!(created.state, Some(NatGatewayState::Pending));
    assert_eq!(
        nat_state(&direct, &id).await,
        Some(NatGatewayState::Available),
        "moto makes it available at once"
    );
    eventually("available", || async {
        nat_state(&ec2, &id).await == Some(NatGatewayState::Available)
    })
    .await;

    ec2.delete_nat_gateway()
        .nat_gateway_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        nat_state(&direct, &id).await,
        Some(NatGatewayState::Deleted)
    );
    assert_eq!(nat_state(&ec2, &id).await, Some(NatGatewayState::Deleting));
    // While deleting, it holds its address, its subnet and its VPC's mapping.
    let (code, _) = refusal(ec2.release_address().allocation_id(&eip).send().await);
    assert_eq!(code, "AuthFailure");
    let (code, message) = refusal(ec2.delete_subnet().subnet_id(&subnets[0]).send().await);
    assert_eq!(code, "DependencyViolation", "{message}");
    let igw = ec2
        .create_internet_gateway()
        .send()
        .await
        .unwrap()
        .internet_gateway
        .unwrap()
        .internet_gateway_id
        .unwrap();
    ec2.attach_internet_gateway()
        .internet_gateway_id(&igw)
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap();
    let (code, message) = refusal(
        ec2.detach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(&vpc)
            .send()
            .await,
    );
    assert_eq!(code, "DependencyViolation");
    assert!(message.contains("mapped public address"), "{message}");

    eventually("deleted", || async {
        nat_state(&ec2, &id).await == Some(NatGatewayState::Deleted)
    })
    .await;
    ec2.release_address()
        .allocation_id(&eip)
        .send()
        .await
        .expect("a deleted gateway holds nothing");
    ec2.delete_subnet()
        .subnet_id(&subnets[0])
        .send()
        .await
        .unwrap();
    eventually("no longer listed", || async {
        nat_state(&ec2, &id).await.is_none()
    })
    .await;
    assert_eq!(
        nat_state(&direct, &id).await,
        Some(NatGatewayState::Deleted),
        "moto lists it for ever"
    );
    clouds.moto.stop().await;
}

#[tokio::test]
async fn a_failed_nat_gateway_says_why_and_its_token_gives_it_back() {
    let clouds = Clouds::start_strict(Strictness {
        nat_pending: SECOND,
        ..Strictness::INSTANT
    })
    .await;
    let (ec2, _) = clouds.ec2();
    let Network { subnets, .. } = network(&ec2, 0).await;
    let eip = address(&ec2).await;
    let create = |client: &aws_sdk_ec2::Client, token: &str| {
        client
            .create_nat_gateway()
            .subnet_id(&subnets[0])
            .allocation_id(&eip)
            .client_token(token)
    };
    clouds.gateway.strict().fail_next_nat_gateways(1);
    let first = create(&ec2, "token-1").send().await.unwrap();
    let id = first
        .nat_gateway()
        .unwrap()
        .nat_gateway_id()
        .unwrap()
        .to_string();
    eventually("failed", || async {
        nat_state(&ec2, &id).await == Some(NatGatewayState::Failed)
    })
    .await;
    let described = ec2
        .describe_nat_gateways()
        .nat_gateway_ids(&id)
        .send()
        .await
        .unwrap();
    let nat = &described.nat_gateways()[0];
    assert_eq!(nat.failure_code(), Some("InternalError"));
    assert!(
        nat.failure_message().unwrap_or("").ends_with(
            "created and used internally by this NAT gateway is in an invalid state. Please try again."
        ),
        "{nat:?}"
    );

    // The same token: the same (failed) gateway, as AWS answers.
    let again = create(&ec2, "token-1").send().await.unwrap();
    assert_eq!(
        again.nat_gateway().unwrap().nat_gateway_id(),
        Some(id.as_str())
    );
    assert_eq!(
        again.nat_gateway().unwrap().state(),
        Some(&NatGatewayState::Failed)
    );
    // A new token gets a new gateway, with the same address: a failed
    // gateway holds none.
    let fresh = create(&ec2, "token-2").send().await.unwrap();
    let fresh = fresh
        .nat_gateway()
        .unwrap()
        .nat_gateway_id()
        .unwrap()
        .to_string();
    assert_ne!(fresh, id);
    eventually("the new one is available", || async {
        nat_state(&ec2, &fresh).await == Some(NatGatewayState::Available)
    })
    .await;
    clouds.moto.stop().await;
}

#[tokio::test]
async fn a_deleted_load_balancers_interfaces_hold_its_groups_and_subnets() {
    let clouds = Clouds::start_strict(Strictness {
        eni_linger: 2 * SECOND,
        ..Strictness::INSTANT
    })
    .await;
    let (ec2, direct) = clouds.ec2();
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&clouds.gateway.sdk_config());
    let Network { vpc, subnets } = network(&ec2, 0).await;
    let group = ec2
        .create_security_group()
        .group_name("alb")
        .description("alb")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id
        .unwrap();
    let lb = elb
        .create_load_balancer()
        .name("lingering")
        .set_subnets(Some(subnets.clone()))
        .security_groups(&group)
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_string();
    elb.delete_load_balancer()
        .load_balancer_arn(&lb)
        .send()
        .await
        .unwrap();
    let (code, message) = refusal(ec2.delete_security_group().group_id(&group).send().await);
    assert_eq!(code, "DependencyViolation");
    assert_eq!(message, format!("resource {group} has a dependent object"));
    let (code, _) = refusal(ec2.delete_subnet().subnet_id(&subnets[0]).send().await);
    assert_eq!(code, "DependencyViolation");
    direct
        .delete_subnet()
        .subnet_id(&subnets[1])
        .send()
        .await
        .expect("moto frees the subnet the moment the load balancer goes");

    eventually("the interfaces are released", || async {
        ec2.delete_security_group()
            .group_id(&group)
            .send()
            .await
            .is_ok()
    })
    .await;
    ec2.delete_subnet()
        .subnet_id(&subnets[0])
        .send()
        .await
        .unwrap();
    clouds.moto.stop().await;
}

#[tokio::test]
async fn run_command_knows_an_instance_once_its_agent_registers() {
    let clouds = Clouds::start_strict(Strictness {
        instance_boot: SECOND,
        ssm_registration: SECOND,
        ..Strictness::INSTANT
    })
    .await;
    let (ec2, _) = clouds.ec2();
    let ssm = aws_sdk_ssm::Client::new(&clouds.gateway.sdk_config());
    let direct = aws_sdk_ssm::Client::new(&clouds.moto.sdk_config());
    let Network { subnets, .. } = network(&ec2, 0).await;
    let instance = ec2
        .run_instances()
        .image_id(AMI)
        .min_count(1)
        .max_count(1)
        .subnet_id(&subnets[0])
        .send()
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    let send = |client: &aws_sdk_ssm::Client| {
        client
            .send_command()
            .document_name("AWS-RunShellScript")
            .instance_ids(&instance)
            .parameters("commands", vec!["true".to_string()])
    };
    send(&direct)
        .send()
        .await
        .expect("moto runs a command on an instance just launched");
    let (code, message) = refusal(send(&ssm).send().await);
    assert_eq!(code, "InvalidInstanceId");
    assert_eq!(
        message,
        format!("Instances [[{instance}]] not in a valid state for account 123456789012")
    );
    eventually("the agent registers", || async {
        send(&ssm).send().await.is_ok()
    })
    .await;
    clouds.moto.stop().await;
}

/// A strict gateway in front of `moto`, keeping its clocks in `record` when
/// one is given.
async fn strict_gateway(
    moto: &MotoServer,
    strictness: Strictness,
    record: Option<&std::path::Path>,
) -> Gateway {
    let gateway = crate::common::strict_gateway(moto, strictness).await;
    if let Some(record) = record {
        gateway
            .strict()
            .persist_to(record)
            .expect("read the record");
    }
    gateway
}

#[tokio::test]
async fn the_clocks_outlive_a_restarted_gateway() {
    let figure = 5 * SECOND;
    let strictness = Strictness {
        iam_propagation: figure,
        nat_pending: figure,
        nat_deleting: figure,
        eni_linger: figure,
        ..Strictness::INSTANT
    };
    let moto = MotoServer::start().await.expect("start moto");
    let dir = std::env::temp_dir().join(format!("cloudpulse-clocks-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let record = dir.join("gateway-clocks.json");

    let first = strict_gateway(&moto, strictness, Some(&record)).await;
    let ec2 = aws_sdk_ec2::Client::new(&first.sdk_config());
    let iam = aws_sdk_iam::Client::new(&first.sdk_config());
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&first.sdk_config());
    let Network { vpc, subnets } = network(&ec2, 0).await;
    let profile = iam
        .create_instance_profile()
        .instance_profile_name("young")
        .send()
        .await
        .unwrap()
        .instance_profile
        .unwrap()
        .arn;
    let nat = |client: &aws_sdk_ec2::Client, subnet: &str, eip: &str, token: &str| {
        client
            .create_nat_gateway()
            .subnet_id(subnet)
            .allocation_id(eip)
            .client_token(token)
    };
    let id = |created: aws_sdk_ec2::operation::create_nat_gateway::CreateNatGatewayOutput| {
        created.nat_gateway.unwrap().nat_gateway_id.unwrap()
    };
    // A: pending across the restart.
    let eip_a = address(&ec2).await;
    let created_a = Instant::now();
    let a = id(nat(&ec2, &subnets[0], &eip_a, "token-a")
        .send()
        .await
        .unwrap());
    // B: deleting across the restart, holding its address.
    let eip_b = address(&ec2).await;
    let b = id(nat(&ec2, &subnets[1], &eip_b, "token-b")
        .send()
        .await
        .unwrap());
    ec2.delete_nat_gateway()
        .nat_gateway_id(&b)
        .send()
        .await
        .unwrap();
    // C: bound to fail once its pending time is over.
    first.strict().fail_next_nat_gateways(1);
    let eip_c = address(&ec2).await;
    let c = id(nat(&ec2, &subnets[0], &eip_c, "token-c")
        .send()
        .await
        .unwrap());
    // A deleted load balancer whose interfaces hold its security group.
    let group = ec2
        .create_security_group()
        .group_name("alb")
        .description("alb")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id
        .unwrap();
    let lb = elb
        .create_load_balancer()
        .name("lingering")
        .set_subnets(Some(subnets.clone()))
        .security_groups(&group)
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_string();
    elb.delete_load_balancer()
        .load_balancer_arn(&lb)
        .send()
        .await
        .unwrap();
    drop(first);

    // As after a portal restart: a new gateway, the same moto and record.
    let second = strict_gateway(&moto, strictness, Some(&record)).await;
    let forgetful = strict_gateway(&moto, strictness, None).await;
    let ec2 = aws_sdk_ec2::Client::new(&second.sdk_config());
    let old = aws_sdk_ec2::Client::new(&forgetful.sdk_config());
    let run = |client: &aws_sdk_ec2::Client| {
        client
            .run_instances()
            .image_id(AMI)
            .min_count(1)
            .max_count(1)
            .subnet_id(&subnets[0])
            .iam_instance_profile(
                aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                    .arn(&profile)
                    .build(),
            )
    };
    let (code, _) = refusal(run(&ec2).send().await);
    assert_eq!(code, "InvalidParameterValue", "the profile is still young");
    assert_eq!(nat_state(&ec2, &a).await, Some(NatGatewayState::Pending));
    assert_eq!(
        nat_state(&old, &a).await,
        Some(NatGatewayState::Available),
        "a gateway without the record forgets"
    );
    let again = id(nat(&ec2, &subnets[0], &eip_a, "token-a")
        .send()
        .await
        .unwrap());
    assert_eq!(again, a, "the token still gives the same gateway");
    assert_eq!(nat_state(&ec2, &b).await, Some(NatGatewayState::Deleting));
    let (code, _) = refusal(ec2.release_address().allocation_id(&eip_b).send().await);
    assert_eq!(code, "AuthFailure", "a deleting gateway holds its address");
    assert_eq!(nat_state(&ec2, &c).await, Some(NatGatewayState::Pending));
    let (code, _) = refusal(ec2.delete_security_group().group_id(&group).send().await);
    assert_eq!(code, "DependencyViolation", "the interfaces still linger");

    // Each clock runs on from where it was.
    eventually("A is available", || async {
        nat_state(&ec2, &a).await == Some(NatGatewayState::Available)
    })
    .await;
    assert!(created_a.elapsed() >= figure, "not before its time");
    eventually("C has failed", || async {
        nat_state(&ec2, &c).await == Some(NatGatewayState::Failed)
    })
    .await;
    eventually("B is deleted", || async {
        nat_state(&ec2, &b).await == Some(NatGatewayState::Deleted)
    })
    .await;
    ec2.release_address()
        .allocation_id(&eip_b)
        .send()
        .await
        .expect("a deleted gateway holds nothing");
    eventually("the interfaces are released", || async {
        ec2.delete_security_group()
            .group_id(&group)
            .send()
            .await
            .is_ok()
    })
    .await;
    eventually("the profile propagates", || async {
        run(&ec2).send().await.is_ok()
    })
    .await;
    drop((second, forgetful));

    // Restarted once more, after every clock ran out: nothing starts over.
    let third = strict_gateway(&moto, strictness, Some(&record)).await;
    let ec2 = aws_sdk_ec2::Client::new(&third.sdk_config());
    assert_eq!(nat_state(&ec2, &a).await, Some(NatGatewayState::Available));
    assert_eq!(nat_state(&ec2, &b).await, Some(NatGatewayState::Deleted));
    assert_eq!(nat_state(&ec2, &c).await, Some(NatGatewayState::Failed));
    run(&ec2).send().await.expect("an old profile is usable");
    let _ = std::fs::remove_dir_all(&dir);
    moto.stop().await;
}
