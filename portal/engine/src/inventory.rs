//! What of a deployment still exists in AWS, found per service by its tags
//! and deterministic names rather than by what the database remembers.

use aws_sdk_ec2::types::{InstanceStateName, NatGatewayState};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aws::{Aws, Names, TAG_DEPLOYMENT};
use crate::error::{SdkResultExt, StepResult};
use crate::steps::{filter, gone_ok, tagged_by};

/// One resource still present.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Leftover {
    pub kind: String,
    pub id: String,
    /// When AWS says it was made, for the kinds whose API tells.
    pub created: Option<DateTime<Utc>>,
    /// An instance's type: what its price depends on.
    pub instance_type: Option<String>,
}

impl Leftover {
    fn new(kind: &str, id: impl Into<String>) -> Self {
        Leftover {
            kind: kind.to_string(),
            id: id.into(),
            created: None,
            instance_type: None,
        }
    }

    fn made(mut self, at: Option<&aws_smithy_types::DateTime>) -> Self {
        self.created = at.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()));
        self
    }
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.id)
    }
}

fn found(kind: &str, ids: Vec<String>) -> Vec<Leftover> {
    ids.into_iter().map(|id| Leftover::new(kind, id)).collect()
}

/// Every resource type CloudPulse creates, listed in AWS.
pub async fn remaining(aws: &Aws, names: &Names) -> StepResult<Vec<Leftover>> {
    let ec2 = &aws.ec2;
    let tag = || filter(&format!("tag:{TAG_DEPLOYMENT}"), names.deployment.as_str());
    let mut left = Vec::new();

    let instances = ec2
        .describe_instances()
        .filters(tag())
        .send()
        .await
        .step()?;
    left.extend(
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
            .filter_map(|i| {
                let mut found = Leftover::new("instance", i.instance_id()?).made(i.launch_time());
                found.instance_type = i.instance_type().map(|t| t.as_str().to_string());
                Some(found)
            }),
    );
    let nats = ec2
        .describe_nat_gateways()
        .filter(tag())
        .send()
        .await
        .step()?;
    left.extend(
        nats.nat_gateways()
            .iter()
            .filter(|g| tagged_by(g.tags(), names.deployment.as_str(), None))
            .filter(|g| !matches!(g.state(), Some(NatGatewayState::Deleted)))
            .filter_map(|g| {
                Some(Leftover::new("nat_gateway", g.nat_gateway_id()?).made(g.create_time()))
            }),
    );
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
    left.extend(launch_templates(aws, names).await?);
    left.extend(load_balancers(aws, names).await?);
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
    left.extend(groups.auto_scaling_groups().iter().filter_map(|g| {
        Some(
            Leftover::new("auto_scaling_group", g.auto_scaling_group_name()?)
                .made(Some(g.created_time()?)),
        )
    }));
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
    left.extend(named(aws, names).await?);
    Ok(left)
}

/// The resources found by their deterministic names, not by tags: the
/// instance role, its profile and the artifact bucket (three calls).
pub(crate) async fn named(aws: &Aws, names: &Names) -> StepResult<Vec<Leftover>> {
    let mut left = Vec::new();
    if let Some(role) = gone_ok(
        aws.iam
            .get_role()
            .role_name(names.role())
            .send()
            .await
            .step(),
    )? {
        let created = role.role().map(|r| r.create_date());
        left.push(Leftover::new("iam_role", names.role()).made(created));
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
        left.push(Leftover::new("instance_profile", names.instance_profile()));
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
        left.push(Leftover::new("s3_bucket", names.bucket()));
    }
    Ok(left)
}

/// The deployment's launch templates, by their tags: one call.
async fn launch_templates(aws: &Aws, names: &Names) -> StepResult<Vec<Leftover>> {
    let templates = aws
        .ec2
        .describe_launch_templates()
        .filters(filter(
            &format!("tag:{TAG_DEPLOYMENT}"),
            names.deployment.as_str(),
        ))
        .send()
        .await
        .step()?;
    Ok(templates
        .launch_templates()
        .iter()
        .filter_map(|t| {
            Some(Leftover::new("launch_template", t.launch_template_id()?).made(t.create_time()))
        })
        .collect())
}

/// The deployment's load balancer, by its name: one call, and none when it
/// is gone.
async fn load_balancers(aws: &Aws, names: &Names) -> StepResult<Vec<Leftover>> {
    let mut left = Vec::new();
    if let Some(lbs) = gone_ok(
        aws.elb
            .describe_load_balancers()
            .names(names.load_balancer())
            .send()
            .await
            .step(),
    )? {
        left.extend(lbs.load_balancers().iter().filter_map(|l| {
            Some(Leftover::new("load_balancer", l.load_balancer_name()?).made(l.created_time()))
        }));
    }
    Ok(left)
}
