//! The gateway's faithful layer through the real AWS SDK: each call is made
//! once straight to moto, which accepts it (or has nothing, or fails), and
//! once through the gateway, which answers as AWS does.

use std::time::Duration;

use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use aws_sdk_cloudwatch::types::{ComparisonOperator, HistoryItemType, StateValue, Statistic};
use aws_sdk_ec2::types::DomainType;
use cloudpulse_sandbox::faithful::{Cause, Trigger};
use cloudpulse_sandbox::{Gateway, Latency, MotoServer};

use aws_sdk_ec2::error::ProvideErrorMetadata;

use crate::common::{network, refusal, Clouds, Network, AMI};

async fn instance(ec2: &aws_sdk_ec2::Client, subnet: &str, group: Option<&str>) -> String {
    ec2.run_instances()
        .image_id(AMI)
        .min_count(1)
        .max_count(1)
        .subnet_id(subnet)
        .set_security_group_ids(group.map(|g| vec![g.to_string()]))
        .send()
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string()
}

async fn security_group(ec2: &aws_sdk_ec2::Client, vpc: &str, name: &str) -> String {
    ec2.create_security_group()
        .group_name(name)
        .description(name)
        .vpc_id(vpc)
        .send()
        .await
        .unwrap()
        .group_id
        .unwrap()
}

/// `app` admits port 80 from `from`.
async fn admit(ec2: &aws_sdk_ec2::Client, app: &str, from: &str) {
    ec2.authorize_security_group_ingress()
        .group_id(app)
        .ip_permissions(from_group(from))
        .send()
        .await
        .unwrap();
}

fn from_group(from: &str) -> aws_sdk_ec2::types::IpPermission {
    aws_sdk_ec2::types::IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(80)
        .to_port(80)
        .user_id_group_pairs(
            aws_sdk_ec2::types::UserIdGroupPair::builder()
                .group_id(from)
                .build(),
        )
        .build()
}

#[tokio::test]
async fn a_subnet_with_a_live_instance_stays() {
    let clouds = Clouds::start().await;
    let (ec2, direct) = clouds.ec2();
    let net = network(&ec2, 0).await;
    let used = instance(&ec2, &net.subnets[0], None).await;
    instance(&ec2, &net.subnets[1], None).await;

    let (code, message) = refusal(ec2.delete_subnet().subnet_id(&net.subnets[0]).send().await);
    assert_eq!(code, "DependencyViolation");
    assert_eq!(
        message,
        format!(
            "The subnet '{}' has dependencies and cannot be deleted.",
            net.subnets[0]
        )
    );
    direct
        .delete_subnet()
        .subnet_id(&net.subnets[1])
        .send()
        .await
        .expect("moto alone deletes a subnet with an instance in it");

    // Terminated, the instance no longer holds its subnet.
    ec2.terminate_instances()
        .instance_ids(&used)
        .send()
        .await
        .unwrap();
    ec2.delete_subnet()
        .subnet_id(&net.subnets[0])
        .send()
        .await
        .expect("an empty subnet goes");
    clouds.moto.stop().await;
}

#[tokio::test]
async fn a_security_group_in_use_stays() {
    let clouds = Clouds::start().await;
    let (ec2, direct) = clouds.ec2();
    let elb = clouds.elb();
    let net = network(&ec2, 0).await;

    // Referenced by another group's rule: refused, and moto alone accepts.
    let (alb, app) = (
        security_group(&ec2, &net.vpc, "alb").await,
        security_group(&ec2, &net.vpc, "app").await,
    );
    admit(&ec2, &app, &alb).await;
    let (alb2, app2) = (
        security_group(&ec2, &net.vpc, "alb2").await,
        security_group(&ec2, &net.vpc, "app2").await,
    );
    admit(&ec2, &app2, &alb2).await;
    let (code, message) = refusal(ec2.delete_security_group().group_id(&alb).send().await);
    assert_eq!(code, "DependencyViolation");
    assert_eq!(message, format!("resource {alb} has a dependent object"));
    direct
        .delete_security_group()
        .group_id(&alb2)
        .send()
        .await
        .expect("moto alone deletes a referenced group");
    ec2.revoke_security_group_ingress()
        .group_id(&app)
        .ip_permissions(from_group(&alb))
        .send()
        .await
        .unwrap();
    ec2.delete_security_group()
        .group_id(&alb)
        .send()
        .await
        .expect("once the rule is gone, so can the group go");

    // Used by an instance, then by a load balancer.
    let on_instance = security_group(&ec2, &net.vpc, "on-instance").await;
    let id = instance(&ec2, &net.subnets[0], Some(&on_instance)).await;
    let (code, _) = refusal(
        ec2.delete_security_group()
            .group_name("on-instance")
            .send()
            .await,
    );
    assert_eq!(code, "DependencyViolation", "found by name too");
    ec2.terminate_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    ec2.delete_security_group()
        .group_id(&on_instance)
        .send()
        .await
        .unwrap();

    let on_lb = security_group(&ec2, &net.vpc, "on-lb").await;
    let lb = elb
        .create_load_balancer()
        .name("faithful")
        .set_subnets(Some(net.subnets.clone()))
        .security_groups(&on_lb)
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_string();
    let (code, _) = refusal(ec2.delete_security_group().group_id(&on_lb).send().await);
    assert_eq!(code, "DependencyViolation");
    elb.delete_load_balancer()
        .load_balancer_arn(lb)
        .send()
        .await
        .unwrap();
    ec2.delete_security_group()
        .group_id(&on_lb)
        .send()
        .await
        .unwrap();
    clouds.moto.stop().await;
}

async fn main_route_table(ec2: &aws_sdk_ec2::Client, vpc: &str) -> String {
    ec2.describe_route_tables()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(vpc)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .route_tables()
        .iter()
        .find(|t| t.associations().iter().any(|a| a.main() == Some(true)))
        .and_then(|t| t.route_table_id())
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_main_route_table_stays() {
    let clouds = Clouds::start().await;
    let (ec2, direct) = clouds.ec2();
    let first = network(&ec2, 0).await;
    let second = network(&ec2, 1).await;
    let main = main_route_table(&ec2, &first.vpc).await;

    let (code, message) = refusal(ec2.delete_route_table().route_table_id(&main).send().await);
    assert_eq!(code, "DependencyViolation");
    assert_eq!(
        message,
        format!("The routeTable '{main}' has dependencies and cannot be deleted.")
    );
    let other = main_route_table(&ec2, &second.vpc).await;
    direct
        .delete_route_table()
        .route_table_id(other)
        .send()
        .await
        .expect("moto alone deletes a main route table");
    clouds.moto.stop().await;
}

/// A VPC with an internet gateway and a NAT gateway on an Elastic IP in
/// its first subnet: (network, internet gateway, allocation, NAT gateway).
async fn nat_stack(
    ec2: &aws_sdk_ec2::Client,
    second_octet: u8,
) -> (Network, String, String, String) {
    let net = network(ec2, second_octet).await;
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
        .vpc_id(&net.vpc)
        .send()
        .await
        .unwrap();
    let allocation = ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .send()
        .await
        .unwrap()
        .allocation_id
        .unwrap();
    let nat = ec2
        .create_nat_gateway()
        .subnet_id(&net.subnets[0])
        .allocation_id(&allocation)
        .send()
        .await
        .unwrap()
        .nat_gateway
        .unwrap()
        .nat_gateway_id
        .unwrap();
    (net, igw, allocation, nat)
}

#[tokio::test]
async fn a_nat_gateway_holds_its_address_subnet_and_internet_gateway() {
    let clouds = Clouds::start().await;
    let (ec2, direct) = clouds.ec2();
    let (net, igw, allocation, nat) = nat_stack(&ec2, 0).await;

    let (code, message) = refusal(
        ec2.release_address()
            .allocation_id(&allocation)
            .send()
            .await,
    );
    assert_eq!(code, "InvalidIPAddress.InUse");
    assert!(message.ends_with("is in use."), "{message}");
    let (code, message) = refusal(
        ec2.detach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(&net.vpc)
            .send()
            .await,
    );
    assert_eq!(code, "DependencyViolation");
    assert_eq!(
        message,
        format!(
            "Network {} has some mapped public address(es). Please unmap those public \
             address(es) before detaching the gateway.",
            net.vpc
        )
    );
    let (code, _) = refusal(ec2.delete_subnet().subnet_id(&net.subnets[0]).send().await);
    assert_eq!(code, "DependencyViolation");

    // The same three calls straight to moto, on a stack of their own.
    let (net2, igw2, allocation2, _) = nat_stack(&ec2, 1).await;
    direct
        .detach_internet_gateway()
        .internet_gateway_id(igw2)
        .vpc_id(&net2.vpc)
        .send()
        .await
        .expect("moto alone detaches a gateway with mapped addresses");
    direct
        .release_address()
        .allocation_id(allocation2)
        .send()
        .await
        .expect("moto alone releases an address a NAT gateway uses");
    direct
        .delete_subnet()
        .subnet_id(&net2.subnets[0])
        .send()
        .await
        .expect("moto alone deletes a NAT gateway's subnet");

    // The AWS order goes through: NAT gateway, then the rest.
    ec2.delete_nat_gateway()
        .nat_gateway_id(nat)
        .send()
        .await
        .unwrap();
    ec2.detach_internet_gateway()
        .internet_gateway_id(&igw)
        .vpc_id(&net.vpc)
        .send()
        .await
        .unwrap();
    ec2.release_address()
        .allocation_id(allocation)
        .send()
        .await
        .unwrap();
    ec2.delete_subnet()
        .subnet_id(&net.subnets[0])
        .send()
        .await
        .unwrap();
    clouds.moto.stop().await;
}

async fn launch_template(ec2: &aws_sdk_ec2::Client) {
    ec2.create_launch_template()
        .launch_template_name("faithful-lt")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id(AMI)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

async fn group(
    asg: &aws_sdk_autoscaling::Client,
    name: &str,
    subnet: &str,
    (min, max, desired): (i32, i32, i32),
) -> Result<(), String> {
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_name("faithful-lt")
                .build(),
        )
        .min_size(min)
        .max_size(max)
        .desired_capacity(desired)
        .default_cooldown(300)
        .vpc_zone_identifier(subnet)
        .send()
        .await
        .map(drop)
        .map_err(|e| {
            let e = e.into_service_error();
            format!(
                "{}: {}",
                e.code().unwrap_or_default(),
                e.message().unwrap_or_default()
            )
        })
}

async fn desired(asg: &aws_sdk_autoscaling::Client, name: &str) -> (i32, usize) {
    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap();
    let g = &out.auto_scaling_groups()[0];
    // A scaled-in instance stays listed, Terminating, until its targets
    // have drained (the data plane, absent here, ends that): it no longer
    // counts.
    let in_service = g
        .instances()
        .iter()
        .filter(|i| i.lifecycle_state().map(|s| s.as_str()) != Some("Terminating"))
        .count();
    (g.desired_capacity().unwrap(), in_service)
}

#[tokio::test]
async fn a_group_stays_within_its_bounds() {
    let clouds = Clouds::start().await;
    let (ec2, _) = clouds.ec2();
    let (asg, direct) = clouds.asg();
    let net = network(&ec2, 0).await;
    launch_template(&ec2).await;

    assert_eq!(
        group(&asg, "inverted", &net.subnets[0], (3, 1, 2)).await,
        Err("ValidationError: Max bound, 1, must be greater than or equal to min bound, 3".into())
    );
    assert_eq!(
        group(&direct, "inverted", &net.subnets[0], (3, 1, 3)).await,
        Ok(()),
        "moto alone accepts a minimum above the maximum"
    );
    assert_eq!(
        group(&asg, "too-many", &net.subnets[0], (1, 4, 5)).await,
        Err("ValidationError: Desired capacity:5 must be between the specified min size:1 and max size:4".into())
    );

    group(&asg, "web", &net.subnets[0], (1, 4, 2))
        .await
        .unwrap();
    let (code, message) = refusal(
        asg.set_desired_capacity()
            .auto_scaling_group_name("web")
            .desired_capacity(5)
            .send()
            .await,
    );
    assert_eq!(code, "ValidationError");
    assert_eq!(
        message,
        "New SetDesiredCapacity value 5 is above max value 4"
    );
    let (_, message) = refusal(
        asg.set_desired_capacity()
            .auto_scaling_group_name("web")
            .desired_capacity(0)
            .send()
            .await,
    );
    assert_eq!(
        message,
        "New SetDesiredCapacity value 0 is below min value 1"
    );
    assert_eq!(desired(&asg, "web").await, (2, 2));
    direct
        .set_desired_capacity()
        .auto_scaling_group_name("web")
        .desired_capacity(5)
        .send()
        .await
        .expect("moto alone goes past the maximum");
    assert_eq!(desired(&asg, "web").await, (5, 5));

    let (code, message) = refusal(
        asg.update_auto_scaling_group()
            .auto_scaling_group_name("web")
            .min_size(5)
            .max_size(4)
            .send()
            .await,
    );
    assert_eq!(
        (code.as_str(), message.as_str()),
        (
            "ValidationError",
            "Max bound, 4, must be greater than or equal to min bound, 5"
        )
    );
    // A lower maximum takes the desired capacity down with it.
    asg.update_auto_scaling_group()
        .auto_scaling_group_name("web")
        .max_size(3)
        .send()
        .await
        .unwrap();
    assert_eq!(desired(&asg, "web").await, (3, 3));
    clouds.moto.stop().await;
}

async fn simple_policy(
    asg: &aws_sdk_autoscaling::Client,
    group: &str,
    name: &str,
    adjustment: i32,
    cooldown: i32,
) {
    asg.put_scaling_policy()
        .auto_scaling_group_name(group)
        .policy_name(name)
        .policy_type("SimpleScaling")
        .adjustment_type("ChangeInCapacity")
        .scaling_adjustment(adjustment)
        .cooldown(cooldown)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn policies_are_clamped_and_cooldowns_honoured() {
    let clouds = Clouds::start().await;
    let (ec2, _) = clouds.ec2();
    let (asg, direct) = clouds.asg();
    let net = network(&ec2, 0).await;
    launch_template(&ec2).await;
    // moto keys policies by name alone: two groups, two names.
    for (name, policy) in [("web", "burst"), ("bare", "bare-burst")] {
        group(&asg, name, &net.subnets[0], (1, 3, 2)).await.unwrap();
        simple_policy(&asg, name, policy, 5, 1).await;
    }

    direct
        .execute_policy()
        .auto_scaling_group_name("bare")
        .policy_name("bare-burst")
        .send()
        .await
        .unwrap();
    assert_eq!(desired(&asg, "bare").await, (7, 7), "moto alone overshoots");
    direct
        .execute_policy()
        .auto_scaling_group_name("bare")
        .policy_name("bare-burst")
        .honor_cooldown(true)
        .send()
        .await
        .expect("moto alone ignores the cooldown");

    asg.execute_policy()
        .auto_scaling_group_name("web")
        .policy_name("burst")
        .send()
        .await
        .unwrap();
    assert_eq!(desired(&asg, "web").await, (3, 3), "clamped to the maximum");
    // Back to 2, starting the group's own 300 s cooldown.
    asg.set_desired_capacity()
        .auto_scaling_group_name("web")
        .desired_capacity(2)
        .send()
        .await
        .unwrap();
    let (code, message) = refusal(
        asg.execute_policy()
            .auto_scaling_group_name("web")
            .policy_name("burst")
            .honor_cooldown(true)
            .send()
            .await,
    );
    assert_eq!(code, "ScalingActivityInProgress");
    assert!(message.starts_with("Scaling activity "), "{message}");
    assert!(message.ends_with(" is in progress and blocks this action"));
    let (code, _) = refusal(
        asg.set_desired_capacity()
            .auto_scaling_group_name("web")
            .desired_capacity(3)
            .honor_cooldown(true)
            .send()
            .await,
    );
    assert_eq!(code, "ScalingActivityInProgress");
    assert_eq!(desired(&asg, "web").await, (2, 2));

    // A policy's own cooldown (1 s) replaces the group's once it runs.
    let arn = asg
        .describe_policies()
        .auto_scaling_group_name("web")
        .send()
        .await
        .unwrap()
        .scaling_policies()[0]
        .policy_arn()
        .unwrap()
        .to_string();
    asg.execute_policy()
        .policy_name(&arn)
        .send()
        .await
        .expect("by ARN, without honouring the cooldown");
    assert_eq!(desired(&asg, "web").await, (3, 3));
    simple_policy(&asg, "web", "calm", -1, 1).await;
    assert!(asg
        .execute_policy()
        .auto_scaling_group_name("web")
        .policy_name("calm")
        .honor_cooldown(true)
        .send()
        .await
        .is_err());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    asg.execute_policy()
        .auto_scaling_group_name("web")
        .policy_name("calm")
        .honor_cooldown(true)
        .send()
        .await
        .expect("the cooldown is over");
    assert_eq!(desired(&asg, "web").await, (2, 2));
    clouds.moto.stop().await;
}

#[tokio::test]
async fn a_group_with_instances_needs_force_to_go() {
    let clouds = Clouds::start().await;
    let (ec2, _) = clouds.ec2();
    let (asg, direct) = clouds.asg();
    let net = network(&ec2, 0).await;
    launch_template(&ec2).await;
    for name in ["web", "bare"] {
        group(&asg, name, &net.subnets[0], (1, 3, 2)).await.unwrap();
    }

    let (code, message) = refusal(
        asg.delete_auto_scaling_group()
            .auto_scaling_group_name("web")
            .send()
            .await,
    );
    assert_eq!(code, "ResourceInUse");
    assert_eq!(
        message,
        "You cannot delete an AutoScalingGroup while there are instances or pending Spot \
         instance request(s) still in the group."
    );
    direct
        .delete_auto_scaling_group()
        .auto_scaling_group_name("bare")
        .send()
        .await
        .expect("moto alone deletes a group with instances");

    asg.delete_auto_scaling_group()
        .auto_scaling_group_name("web")
        .force_delete(true)
        .send()
        .await
        .unwrap();
    let activities = |include: bool| {
        asg.describe_scaling_activities()
            .auto_scaling_group_name("web")
            .include_deleted_groups(include)
            .send()
    };
    assert!(activities(false).await.unwrap().activities().is_empty());
    let kept = activities(true).await.unwrap();
    let terminations = kept
        .activities()
        .iter()
        .filter(|a| {
            a.description()
                .unwrap()
                .starts_with("Terminating EC2 instance: ")
        })
        .count();
    assert_eq!(terminations, 2, "{kept:#?}");
    clouds.moto.stop().await;
}

#[tokio::test]
async fn every_launch_and_termination_is_an_activity() {
    let clouds = Clouds::start().await;
    let (ec2, _) = clouds.ec2();
    let (asg, direct) = clouds.asg();
    let net = network(&ec2, 0).await;
    launch_template(&ec2).await;
    group(&asg, "web", &net.subnets[0], (1, 4, 2))
        .await
        .unwrap();
    asg.set_desired_capacity()
        .auto_scaling_group_name("web")
        .desired_capacity(3)
        .send()
        .await
        .unwrap();
    let victim = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("web")
        .send()
        .await
        .unwrap()
        .auto_scaling_groups()[0]
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    ec2.terminate_instances()
        .instance_ids(&victim)
        .send()
        .await
        .unwrap();

    let listed = direct
        .describe_scaling_activities()
        .auto_scaling_group_name("web")
        .send()
        .await
        .unwrap();
    assert!(listed.activities().is_empty(), "moto alone records none");

    let listed = asg
        .describe_scaling_activities()
        .auto_scaling_group_name("web")
        .send()
        .await
        .unwrap();
    let activities = listed.activities();
    let summary: Vec<(&str, &str)> = activities
        .iter()
        .map(|a| (a.description().unwrap(), a.cause().unwrap()))
        .collect();
    // Newest first: the replacement, the termination, the scale-out, the
    // two launches of the creation.
    assert_eq!(activities.len(), 5, "{summary:#?}");
    assert!(summary[0].0.starts_with("Launching a new EC2 instance: i-"));
    assert!(summary[0].1.ends_with(
        "an instance was started in response to a difference between desired and actual \
         capacity, increasing the capacity from 2 to 3."
    ));
    assert_eq!(summary[1].0, format!("Terminating EC2 instance: {victim}"));
    assert!(summary[1].1.ends_with(
        "an instance was taken out of service in response to an EC2 instance status check \
         failure."
    ));
    assert!(summary[2].1.contains(
        "a user request explicitly set group desired capacity changing the desired capacity \
         from 2 to 3."
    ));
    assert!(summary[3].1.contains(
        "a user request created an AutoScalingGroup changing the desired capacity from 0 to 2."
    ));
    for a in activities {
        assert!(a.cause().unwrap().starts_with("At 20"));
        assert_eq!(a.status_code().map(|s| s.as_str()), Some("Successful"));
        assert_eq!(a.progress(), Some(100));
        assert!(a.start_time().is_some() && a.end_time().is_some());
        assert_eq!(a.auto_scaling_group_name(), Some("web"));
    }

    let first = asg
        .describe_scaling_activities()
        .auto_scaling_group_name("web")
        .max_records(2)
        .send()
        .await
        .unwrap();
    assert_eq!(first.activities().len(), 2);
    let rest = asg
        .describe_scaling_activities()
        .auto_scaling_group_name("web")
        .max_records(10)
        .set_next_token(first.next_token().map(str::to_string))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.activities().len(), 3);
    assert_eq!(rest.next_token(), None);
    assert_eq!(
        rest.activities()[0].activity_id(),
        activities[2].activity_id()
    );
    clouds.moto.stop().await;
}

#[tokio::test]
async fn the_data_plane_scales_and_heals_through_the_same_rules() {
    let clouds = Clouds::start().await;
    let (ec2, direct_ec2) = clouds.ec2();
    let (asg, _) = clouds.asg();
    let net = network(&ec2, 0).await;
    launch_template(&ec2).await;
    group(&asg, "web", &net.subnets[0], (1, 3, 2))
        .await
        .unwrap();
    simple_policy(&asg, "web", "scale-out", 2, 60).await;
    let faithful = clouds.gateway.faithful();

    let outcome = faithful
        .execute_policy(
            Some("web"),
            "scale-out",
            true,
            Trigger::Alarm("cpu-high".into()),
        )
        .await
        .unwrap();
    assert_eq!((outcome.from, outcome.to), (2, 3), "clamped");
    assert_eq!(outcome.activities.len(), 1);
    assert!(outcome.activities[0].cause.contains(
        "a monitor alarm cpu-high in state ALARM triggered policy scale-out changing the desired \
         capacity from 2 to 3."
    ));
    let refused = faithful
        .execute_policy(
            Some("web"),
            "scale-out",
            true,
            Trigger::Alarm("cpu-high".into()),
        )
        .await
        .unwrap_err();
    assert!(
        refused.to_string().starts_with("ScalingActivityInProgress"),
        "{refused}"
    );

    // A health-check replacement made straight in moto, recorded as such.
    let victim = outcome.activities[0]
        .description
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let (_, activities) = faithful
        .record_change(
            "web",
            Cause::OutOfService("an ELB system health check failure".into()),
            direct_ec2
                .terminate_instances()
                .instance_ids(&victim)
                .send(),
        )
        .await
        .unwrap();
    assert_eq!(activities.len(), 2, "{activities:#?}");
    assert_eq!(
        activities[0].description,
        format!("Terminating EC2 instance: {victim}")
    );
    assert!(activities[0].cause.ends_with(
        "an instance was taken out of service in response to an ELB system health check failure."
    ));

    let listed = asg
        .describe_scaling_activities()
        .auto_scaling_group_name("web")
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.activities()[0].activity_id(),
        Some(activities[1].activity_id.as_str()),
        "the gateway serves what the data plane recorded"
    );
    assert_eq!(faithful.scaling_activities(Some("web")).len(), 5);
    clouds.moto.stop().await;
}

async fn alarm(cw: &aws_sdk_cloudwatch::Client, threshold: f64) {
    cw.put_metric_alarm()
        .alarm_name("cpu-high")
        .namespace("AWS/EC2")
        .metric_name("CPUUtilization")
        .statistic(Statistic::Average)
        .period(60)
        .evaluation_periods(2)
        .threshold(threshold)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap();
}

async fn set_state(cw: &aws_sdk_cloudwatch::Client, state: StateValue, reason: &str) {
    cw.set_alarm_state()
        .alarm_name("cpu-high")
        .state_value(state)
        .state_reason(reason)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn alarm_history_is_kept_and_served() {
    let clouds = Clouds::start().await;
    let (cw, direct) = clouds.cloudwatch();
    alarm(&cw, 70.0).await;
    // A new alarm has not been evaluated: INSUFFICIENT_DATA, as on AWS
    // (moto alone says OK).
    let created = cw
        .describe_alarms()
        .alarm_names("cpu-high")
        .send()
        .await
        .unwrap();
    let created = &created.metric_alarms()[0];
    assert_eq!(created.state_value(), Some(&StateValue::InsufficientData));
    assert_eq!(
        created.state_reason(),
        Some("Unchecked: Initial alarm creation")
    );
    direct
        .put_metric_alarm()
        .alarm_name("moto-alone")
        .namespace("AWS/EC2")
        .metric_name("CPUUtilization")
        .statistic(Statistic::Average)
        .period(60)
        .evaluation_periods(2)
        .threshold(70.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap();
    let alone = direct
        .describe_alarms()
        .alarm_names("moto-alone")
        .send()
        .await
        .unwrap();
    assert_eq!(
        alone.metric_alarms()[0].state_value(),
        Some(&StateValue::Ok),
        "moto starts an alarm OK"
    );
    alarm(&cw, 80.0).await;
    set_state(
        &cw,
        StateValue::Alarm,
        "Threshold Crossed: 2 datapoints above 80",
    )
    .await;
    set_state(&cw, StateValue::Alarm, "still").await;
    set_state(&cw, StateValue::Ok, "Threshold Crossed: back below 80").await;

    let moto_alone = direct
        .describe_alarm_history()
        .alarm_name("cpu-high")
        .send()
        .await;
    assert!(moto_alone.is_err(), "moto alone cannot: {moto_alone:?}");

    let history = cw
        .describe_alarm_history()
        .alarm_name("cpu-high")
        .send()
        .await
        .unwrap();
    let summaries: Vec<&str> = history
        .alarm_history_items()
        .iter()
        .map(|i| i.history_summary().unwrap())
        .collect();
    assert_eq!(
        summaries,
        [
            "Alarm updated from ALARM to OK",
            "Alarm updated from INSUFFICIENT_DATA to ALARM",
            "Alarm \"cpu-high\" updated",
            "Alarm \"cpu-high\" created",
        ],
        "newest first, and a state set twice changes once"
    );
    let update = &history.alarm_history_items()[2];
    assert_eq!(
        update.history_item_type(),
        Some(&HistoryItemType::ConfigurationUpdate)
    );
    let data: serde_json::Value = serde_json::from_str(update.history_data().unwrap()).unwrap();
    assert_eq!(data["originalAlarm"]["threshold"], 70.0);
    assert_eq!(data["updatedAlarm"]["threshold"], 80.0);
    let state: serde_json::Value =
        serde_json::from_str(history.alarm_history_items()[1].history_data().unwrap()).unwrap();
    assert_eq!(state["newState"]["stateValue"], "ALARM");
    assert_eq!(state["oldState"]["stateValue"], "INSUFFICIENT_DATA");

    let states = cw
        .describe_alarm_history()
        .history_item_type(HistoryItemType::StateUpdate)
        .scan_by(aws_sdk_cloudwatch::types::ScanBy::TimestampAscending)
        .max_records(1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        states.alarm_history_items()[0].history_summary(),
        Some("Alarm updated from INSUFFICIENT_DATA to ALARM")
    );
    let next = cw
        .describe_alarm_history()
        .history_item_type(HistoryItemType::StateUpdate)
        .scan_by(aws_sdk_cloudwatch::types::ScanBy::TimestampAscending)
        .set_next_token(states.next_token().map(str::to_string))
        .send()
        .await
        .unwrap();
    assert_eq!(
        next.alarm_history_items()[0].history_summary(),
        Some("Alarm updated from ALARM to OK")
    );
    let later = cw
        .describe_alarm_history()
        .start_date(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
            chrono::Utc::now().timestamp() + 3600,
        ))
        .send()
        .await
        .unwrap();
    assert!(later.alarm_history_items().is_empty());

    // The evaluator's transitions land in the same history.
    let item = clouds
        .gateway
        .faithful()
        .set_alarm_state("cpu-high", StateValue::Alarm, "evaluated", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item.summary, "Alarm updated from OK to ALARM");
    let newest = cw
        .describe_alarm_history()
        .alarm_name("cpu-high")
        .max_records(1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        newest.alarm_history_items()[0].history_summary(),
        Some("Alarm updated from OK to ALARM")
    );
    cw.delete_alarms()
        .alarm_names("cpu-high")
        .send()
        .await
        .unwrap();
    let deleted = cw
        .describe_alarm_history()
        .alarm_name("cpu-high")
        .max_records(1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        deleted.alarm_history_items()[0].history_summary(),
        Some("Alarm \"cpu-high\" deleted")
    );
    clouds.moto.stop().await;
}

/// The state of an ALB through `elb`.
async fn load_balancer_state(elb: &aws_sdk_elasticloadbalancingv2::Client, arn: &str) -> String {
    elb.describe_load_balancers()
        .load_balancer_arns(arn)
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .state()
        .and_then(|s| s.code())
        .map(|c| c.as_str().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_record_outlives_a_restarted_gateway() {
    let moto = MotoServer::start().await.expect("start moto");
    let dir = std::env::temp_dir().join(format!("cloudpulse-record-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file = dir.join("gateway-record.json");
    // Load balancers provision for a second; the first gateway sees it
    // through.
    let latency = Latency {
        alb_provisioning: Duration::from_secs(1),
        ..Latency::default()
    };
    let first = Gateway::start(&moto.endpoint(), latency).await.unwrap();
    first.faithful().persist_to(&file).unwrap();
    let through = first.sdk_config();
    let (ec2, asg, cw, elb) = (
        aws_sdk_ec2::Client::new(&through),
        aws_sdk_autoscaling::Client::new(&through),
        aws_sdk_cloudwatch::Client::new(&through),
        aws_sdk_elasticloadbalancingv2::Client::new(&through),
    );
    let net = network(&ec2, 0).await;
    launch_template(&ec2).await;
    group(&asg, "web", &net.subnets[0], (1, 4, 2))
        .await
        .unwrap();
    // A change that starts the group's 300 s cooldown.
    asg.set_desired_capacity()
        .auto_scaling_group_name("web")
        .desired_capacity(3)
        .send()
        .await
        .unwrap();
    alarm(&cw, 70.0).await;
    set_state(&cw, StateValue::Alarm, "Threshold Crossed").await;
    let lb = elb
        .create_load_balancer()
        .name("web-alb")
        .set_subnets(Some(net.subnets.clone()))
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_string();
    assert_eq!(load_balancer_state(&elb, &lb).await, "provisioning");
    while load_balancer_state(&elb, &lb).await != "active" {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let activities = |asg: aws_sdk_autoscaling::Client| async move {
        asg.describe_scaling_activities()
            .auto_scaling_group_name("web")
            .send()
            .await
            .unwrap()
            .activities()
            .iter()
            .map(|a| a.description().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    let before = activities(asg.clone()).await;
    assert_eq!(before.len(), 3, "{before:?}");
    drop(first);

    // A new gateway in front of the same moto, as after a portal restart.
    let second = Gateway::start(&moto.endpoint(), latency).await.unwrap();
    let forgetful = Gateway::start(&moto.endpoint(), latency).await.unwrap();
    second.faithful().persist_to(&file).unwrap();
    let through = second.sdk_config();
    let (asg, cw, elb) = (
        aws_sdk_autoscaling::Client::new(&through),
        aws_sdk_cloudwatch::Client::new(&through),
        aws_sdk_elasticloadbalancingv2::Client::new(&through),
    );
    assert_eq!(activities(asg.clone()).await, before, "the activities");
    let history = cw
        .describe_alarm_history()
        .alarm_name("cpu-high")
        .send()
        .await
        .unwrap();
    assert_eq!(
        history.alarm_history_items()[0].history_summary(),
        Some("Alarm updated from INSUFFICIENT_DATA to ALARM"),
        "the alarm history"
    );
    let cooling = asg
        .set_desired_capacity()
        .auto_scaling_group_name("web")
        .desired_capacity(2)
        .honor_cooldown(true)
        .send()
        .await;
    assert_eq!(
        refusal(cooling).0,
        "ScalingActivityInProgress",
        "the cooldown still runs"
    );
    assert_eq!(
        load_balancer_state(&elb, &lb).await,
        "active",
        "a load balancer that was active stays active"
    );
    // Without the record, all of it is forgotten.
    let fresh = elb_client(&forgetful);
    assert_eq!(load_balancer_state(&fresh, &lb).await, "provisioning");
    let _ = std::fs::remove_dir_all(&dir);
    moto.stop().await;
}

fn elb_client(gateway: &Gateway) -> aws_sdk_elasticloadbalancingv2::Client {
    aws_sdk_elasticloadbalancingv2::Client::new(&gateway.sdk_config())
}
