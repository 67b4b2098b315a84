//! What of a deployment still exists in AWS, found per service by its tags
//! and deterministic names rather than by what the database remembers.

use aws_sdk_ec2::types::{InstanceStateName, NatGatewayState};
use serde::Serialize;

use crate::aws::{Aws, Names, TAG_DEPLOYMENT};
use crate::error::{SdkResultExt, StepResult};
use crate::steps::{filter, gone_ok, tagged_by};

/// One resource still present.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Leftover {
    pub kind: String,
    pub id: String,
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.id)
    }
}

fn found(kind: &str, ids: Vec<String>) -> Vec<Leftover> {
    ids.into_iter()
        .map(|id| Leftover {
            kind: kind.to_string(),
            id,
        })
        .collect()
}

/// Every resource type CloudPulse creates, listed in AWS.
pub async fn remaining(aws: &Aws, names: &Names) -> StepResult<Vec<Leftover>> {
    let ec2 = &aws.ec2;
    let tag = || filter(&format!("tag:{TAG_DEPLOYMENT}"), &names.deployment);
    let mut left = Vec::new();

    let instances = ec2
        .describe_instances()
        .filters(tag())
        .send()
        .await
        .step()?;
    left.extend(found(
        "instance",
        instances
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| {
                !matches!(
                    i.state().and_then(|s| s.name()),
                    Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
                )
            })
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect::<Vec<_>>(),
    ));
    let nats = ec2
        .describe_nat_gateways()
        .filter(tag())
        .send()
        .await
        .step()?;
    left.extend(found(
        "nat_gateway",
        nats.nat_gateways()
            .iter()
            .filter(|g| tagged_by(g.tags(), &names.deployment, None))
            .filter(|g| !matches!(g.state(), Some(NatGatewayState::Deleted)))
            .filter_map(|g| g.nat_gateway_id().map(str::to_string))
            .collect::<Vec<_>>(),
    ));
    let addresses = ec2
        .describe_addresses()
        .filters(tag())
        .send()
        .await
        .step()?;
    left.extend(found(
        "elastic_ip",
        addresses
            .addresses()
            .iter()
            .filter_map(|a| a.allocation_id().map(str::to_string))
            .collect::<Vec<_>>(),
    ));
    let subnets = ec2.describe_subnets().filters(tag()).send().await.step()?;
    left.extend(found(
        "subnet",
        subnets
            .subnets()
            .iter()
            .filter_map(|s| s.subnet_id().map(str::to_string))
            .collect::<Vec<_>>(),
    ));
    let tables = ec2
        .describe_route_tables()
        .filters(tag())
        .send()
        .await
        .step()?;
    left.extend(found(
        "route_table",
        tables
            .route_tables()
            .iter()
            .filter_map(|t| t.route_table_id().map(str::to_string))
            .collect::<Vec<_>>(),
    ));
    let igws = ec2
        .describe_internet_gateways()
        .filters(tag())
        .send()
        .await
        .step()?;
    left.extend(found(
        "internet_gateway",
        igws.internet_gateways()
            .iter()
            .filter_map(|g| g.internet_gateway_id().map(str::to_string))
            .collect::<Vec<_>>(),
    ));
    let groups = ec2
        .describe_security_groups()
        .filters(tag())
        .send()
        .await
        .step()?;
    left.extend(found(
        "security_group",
        groups
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect::<Vec<_>>(),
    ));
    let acls = ec2
        .describe_network_acls()
        .filters(tag())
        .send()
        .await
        .step()?;
    left.extend(found(
        "network_acl",
        acls.network_acls()
            .iter()
            .filter_map(|a| a.network_acl_id().map(str::to_string))
            .collect::<Vec<_>>(),
    ));
    let vpcs = ec2.describe_vpcs().filters(tag()).send().await.step()?;
    left.extend(found(
        "vpc",
        vpcs.vpcs()
            .iter()
            .filter_map(|v| v.vpc_id().map(str::to_string))
            .collect::<Vec<_>>(),
    ));
    let templates = ec2
        .describe_launch_templates()
        .filters(tag())
        .send()
        .await
        .step()?;
    left.extend(found(
        "launch_template",
        templates
            .launch_templates()
            .iter()
            .filter_map(|t| t.launch_template_id().map(str::to_string))
            .collect::<Vec<_>>(),
    ));

    if let Some(lbs) = gone_ok(
        aws.elb
            .describe_load_balancers()
            .names(names.load_balancer())
            .send()
            .await
            .step(),
    )? {
        left.extend(found(
            "load_balancer",
            lbs.load_balancers()
                .iter()
                .filter_map(|l| l.load_balancer_name().map(str::to_string))
                .collect::<Vec<_>>(),
        ));
    }
    if let Some(tgs) = gone_ok(
        aws.elb
            .describe_target_groups()
            .names(names.target_group())
            .send()
            .await
            .step(),
    )? {
        left.extend(found(
            "target_group",
            tgs.target_groups()
                .iter()
                .filter_map(|t| t.target_group_name().map(str::to_string))
                .collect::<Vec<_>>(),
        ));
    }
    let groups = aws
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(names.auto_scaling_group())
        .send()
        .await
        .step()?;
    left.extend(found(
        "auto_scaling_group",
        groups
            .auto_scaling_groups()
            .iter()
            .filter_map(|g| g.auto_scaling_group_name().map(str::to_string))
            .collect::<Vec<_>>(),
    ));
    let alarms = aws
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(format!("{}-", names.prefix()))
        .send()
        .await
        .step()?;
    left.extend(found(
        "alarm",
        alarms
            .metric_alarms()
            .iter()
            .filter_map(|a| a.alarm_name().map(str::to_string))
            .collect::<Vec<_>>(),
    ));
    if gone_ok(
        aws.iam
            .get_role()
            .role_name(names.role())
            .send()
            .await
            .step(),
    )?
    .is_some()
    {
        left.push(Leftover {
            kind: "iam_role".into(),
            id: names.role(),
        });
    }
    if gone_ok(
        aws.iam
            .get_instance_profile()
            .instance_profile_name(names.instance_profile())
            .send()
            .await
            .step(),
    )?
    .is_some()
    {
        left.push(Leftover {
            kind: "instance_profile".into(),
            id: names.instance_profile(),
        });
    }
    if gone_ok(
        aws.s3
            .head_bucket()
            .bucket(names.bucket())
            .send()
            .await
            .step(),
    )?
    .is_some()
    {
        left.push(Leftover {
            kind: "s3_bucket".into(),
            id: names.bucket(),
        });
    }
    Ok(left)
}
