//! The full drift check's reads: each describes one part of the stack,
//! notes what it saw standing, and answers where it differs.

use std::collections::HashMap;

use aws_sdk_ec2::types::NatGatewayState;
use cloudpulse_core::drift::{breaks, DriftScope, Observed};
use cloudpulse_core::params::DeploymentParams;
use cloudpulse_core::resource::ResourceKind;

use super::rules::{expected_rules, route_target, rule_findings, rules, seen};
use super::{aws_error, Recorded};
use crate::aws::{Aws, Names};
use crate::error::SdkResultExt;
use crate::plan::{nat_for, StepKey};
use crate::runner::EngineError;
use crate::steps::tagged_by;

/// The group's timings; its bounds and size are the poll's.
pub(super) async fn group_drift(
    params: &DeploymentParams,
    aws: &Aws,
    names: &Names,
    present: &mut Present,
) -> Result<Vec<Observed>, EngineError> {
    let name = names.auto_scaling_group();
    let out = aws
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&name)
        .send()
        .await
        .step()
        .map_err(aws_error)?;
    let Some(group) = out.auto_scaling_groups().first() else {
        return Ok(Vec::new());
    };
    present.saw(ResourceKind::AutoScalingGroup, &name);
    present.members = Some(
        group
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect(),
    );
    let mut found = Vec::new();
    for (field, expected, actual) in [
        (
            "grace_period",
            params.grace_period,
            group.health_check_grace_period(),
        ),
        ("cooldown", params.cooldown, group.default_cooldown()),
    ] {
        let actual = actual.unwrap_or_default();
        if i64::from(expected) != i64::from(actual) {
            found.push(seen(
                ResourceKind::AutoScalingGroup,
                &name,
                field,
                expected,
                actual,
                breaks::GROUP_TIMING,
            ));
        }
    }
    Ok(found)
}

pub(super) async fn security_group_drift(
    aws: &Aws,
    names: &Names,
    recorded: &Recorded,
    present: &mut Present,
) -> Result<Vec<Observed>, EngineError> {
    let ids: Vec<String> = recorded
        .rows
        .iter()
        .filter(|r| r.kind == ResourceKind::SecurityGroup.as_str())
        .map(|r| r.aws_id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // A filter, not ids: a group that is gone is left out, not an error.
    let out = aws
        .ec2
        .describe_security_groups()
        .filters(crate::steps::filter_any("group-id", ids))
        .send()
        .await
        .step()
        .map_err(aws_error)?;
    for g in out.security_groups() {
        present.saw(
            ResourceKind::SecurityGroup,
            g.group_id().unwrap_or_default(),
        );
    }
    let by_name: HashMap<&str, &aws_sdk_ec2::types::SecurityGroup> = out
        .security_groups()
        .iter()
        .filter_map(|g| Some((g.group_name()?, g)))
        .collect();
    let alb_name = names.alb_security_group();
    let app_name = names.app_security_group();
    let (Some(alb), Some(app)) = (
        by_name.get(alb_name.as_str()),
        by_name.get(app_name.as_str()),
    ) else {
        return Ok(Vec::new());
    };
    let alb_id = alb.group_id().unwrap_or_default();
    let app_id = app.group_id().unwrap_or_default();
    let expected = expected_rules(alb_id, app_id);
    let mut found = Vec::new();
    for (group, field, expected, actual, why) in [
        (
            alb_id,
            "ingress",
            &expected.alb_ingress,
            rules(alb.ip_permissions(), "from"),
            breaks::ALB_INGRESS_MISSING,
        ),
        (
            alb_id,
            "egress",
            &expected.alb_egress,
            rules(alb.ip_permissions_egress(), "to"),
            breaks::EGRESS_MISSING,
        ),
        (
            app_id,
            "ingress",
            &expected.app_ingress,
            rules(app.ip_permissions(), "from"),
            breaks::APP_INGRESS_MISSING,
        ),
        (
            app_id,
            "egress",
            &expected.app_egress,
            rules(app.ip_permissions_egress(), "to"),
            breaks::EGRESS_MISSING,
        ),
    ] {
        found.extend(rule_findings(group, field, expected, &actual, why));
    }
    Ok(found)
}

pub(super) async fn route_drift(
    params: &DeploymentParams,
    aws: &Aws,
    recorded: &Recorded,
    present: &mut Present,
) -> Result<Vec<Observed>, EngineError> {
    // Each table, the gateway its default route must use, and what a
    // wrong one breaks.
    let mut wanted: Vec<(String, String, &str)> = Vec::new();
    if let (Some(table), Some(igw)) = (
        recorded.id(ResourceKind::RouteTable, StepKey::PublicRoutes),
        recorded.id(ResourceKind::InternetGateway, StepKey::InternetGateway),
    ) {
        wanted.push((table.into(), igw.into(), breaks::PUBLIC_ROUTE));
    }
    for az in 0..params.azs {
        let nat = StepKey::NatGateway(nat_for(params, az));
        if let (Some(table), Some(nat)) = (
            recorded.id(ResourceKind::RouteTable, StepKey::PrivateRoutes(az)),
            recorded.id(ResourceKind::NatGateway, nat),
        ) {
            wanted.push((table.into(), nat.into(), breaks::PRIVATE_ROUTE));
        }
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let out = aws
        .ec2
        .describe_route_tables()
        .filters(crate::steps::filter_any(
            "route-table-id",
            wanted.iter().map(|w| w.0.clone()).collect(),
        ))
        .send()
        .await
        .step()
        .map_err(aws_error)?;
    let mut found = Vec::new();
    for table in out.route_tables() {
        let id = table.route_table_id().unwrap_or_default();
        present.saw(ResourceKind::RouteTable, id);
        let Some((_, gateway, why)) = wanted.iter().find(|w| w.0 == id) else {
            continue;
        };
        let expected = format!("via {gateway}");
        let default = table
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"));
        let actual = default.map_or_else(|| "missing".to_string(), route_target);
        if actual != expected {
            found.push(seen(
                ResourceKind::RouteTable,
                id,
                "route 0.0.0.0/0",
                expected,
                actual,
                why,
            ));
        }
        for route in table.routes() {
            let destination = route
                .destination_cidr_block()
                .or(route.destination_ipv6_cidr_block())
                .or(route.destination_prefix_list_id())
                .unwrap_or_default();
            if destination == "0.0.0.0/0" || route.gateway_id() == Some("local") {
                continue;
            }
            found.push(seen(
                ResourceKind::RouteTable,
                id,
                &format!("route {destination}"),
                "absent",
                route_target(route),
                breaks::EXTRA_ROUTE,
            ));
        }
    }
    Ok(found)
}

pub(super) async fn target_group_drift(
    params: &DeploymentParams,
    aws: &Aws,
    names: &Names,
    present: &mut Present,
) -> Result<Vec<Observed>, EngineError> {
    let name = names.target_group();
    let out = aws.elb.describe_target_groups().names(&name).send().await;
    let group = match out.step() {
        Ok(out) => out.target_groups().first().cloned(),
        Err(e) if e.code == "TargetGroupNotFound" => None,
        Err(e) => return Err(aws_error(e)),
    };
    let Some(group) = group else {
        return Ok(Vec::new());
    };
    present.saw(ResourceKind::TargetGroup, &name);
    let hc = &params.health_check;
    let number = |n: Option<i32>| n.map_or_else(|| "none".to_string(), |n| n.to_string());
    let mut pairs = vec![
        (
            "health_check.path",
            hc.path.clone(),
            group.health_check_path().unwrap_or("none").to_string(),
        ),
        (
            "health_check.interval",
            hc.interval.to_string(),
            number(group.health_check_interval_seconds()),
        ),
        (
            "health_check.timeout",
            hc.timeout.to_string(),
            number(group.health_check_timeout_seconds()),
        ),
        (
            "health_check.healthy_threshold",
            hc.healthy_threshold.to_string(),
            number(group.healthy_threshold_count()),
        ),
        (
            "health_check.unhealthy_threshold",
            hc.unhealthy_threshold.to_string(),
            number(group.unhealthy_threshold_count()),
        ),
    ];
    if let Some(arn) = group.target_group_arn() {
        let attributes = aws
            .elb
            .describe_target_group_attributes()
            .target_group_arn(arn)
            .send()
            .await
            .step()
            .map_err(aws_error)?;
        let delay = attributes
            .attributes()
            .iter()
            .find(|a| a.key() == Some(crate::steps::DEREGISTRATION_DELAY_KEY))
            .and_then(|a| a.value())
            .unwrap_or("none")
            .to_string();
        pairs.push((
            "deregistration_delay",
            params.deregistration_delay.to_string(),
            delay,
        ));
    }
    Ok(pairs
        .into_iter()
        .filter(|(_, expected, actual)| expected != actual)
        .map(|(field, expected, actual)| {
            let why = if field == "deregistration_delay" {
                breaks::DRAINING
            } else {
                breaks::HEALTH_CHECK
            };
            seen(
                ResourceKind::TargetGroup,
                &name,
                field,
                expected,
                actual,
                why,
            )
        })
        .collect())
}

/// A CPU threshold as the parameters and the findings write it: `70`, `72.5`.
fn percent(value: f64) -> String {
    format!("{value}")
}

pub(super) async fn alarm_drift(
    params: &DeploymentParams,
    aws: &Aws,
    names: &Names,
    recorded: &Recorded,
    present: &mut Present,
) -> Result<Vec<Observed>, EngineError> {
    let out = crate::live::describe_alarms(aws, names).await?;
    for alarm in out.metric_alarms() {
        present.saw(ResourceKind::Alarm, alarm.alarm_name().unwrap_or_default());
    }
    let policies = recorded.arns(ResourceKind::ScalingPolicy);
    let mut found = Vec::new();
    for (alarm_name, field, threshold) in [
        (
            names.high_cpu_alarm(),
            "scale_out_cpu",
            params.scale_out_cpu,
        ),
        (names.low_cpu_alarm(), "scale_in_cpu", params.scale_in_cpu),
    ] {
        // A missing alarm is reported by the inventory's comparison.
        let Some(alarm) = out
            .metric_alarms()
            .iter()
            .find(|a| a.alarm_name() == Some(alarm_name.as_str()))
        else {
            continue;
        };
        let actual = alarm.threshold().unwrap_or_default();
        if (actual - threshold).abs() > 1e-9 {
            found.push(seen(
                ResourceKind::Alarm,
                &alarm_name,
                field,
                percent(threshold),
                percent(actual),
                breaks::ALARM,
            ));
        }
        let acts = alarm
            .alarm_actions()
            .iter()
            .any(|a| policies.contains(&a.as_str()));
        if !acts {
            found.push(seen(
                ResourceKind::Alarm,
                &alarm_name,
                "actions",
                "its scaling policy",
                if alarm.alarm_actions().is_empty() {
                    "none".to_string()
                } else {
                    alarm.alarm_actions().join(", ")
                },
                breaks::ALARM,
            ));
        }
    }
    Ok(found)
}

/// The field of a private subnet whose network ACL is not the stack's; the
/// ACL's step, not the subnet's, puts it back.
pub(super) const ACL_ASSOCIATION_FIELD: &str = "network acl";

/// The private subnets' network ACL: its entries against the stack's
/// (a missing, changed or added one), and each private subnet's
/// association with it. One call.
pub(super) async fn acl_drift(
    params: &DeploymentParams,
    aws: &Aws,
    recorded: &Recorded,
    present: &mut Present,
) -> Result<Vec<Observed>, EngineError> {
    let (Some(acl), Some(vpc)) = (
        recorded.id(ResourceKind::NetworkAcl, StepKey::NetworkAcl),
        recorded.id(ResourceKind::Vpc, StepKey::Vpc),
    ) else {
        return Ok(Vec::new());
    };
    // By the VPC, not the id: an ACL that is gone is left out, not an error.
    let out = aws
        .ec2
        .describe_network_acls()
        .filters(crate::steps::filter("vpc-id", vpc))
        .send()
        .await
        .step()
        .map_err(aws_error)?;
    let Some(described) = out
        .network_acls()
        .iter()
        .find(|a| a.network_acl_id() == Some(acl))
    else {
        return Ok(Vec::new());
    };
    present.saw(ResourceKind::NetworkAcl, acl);
    let rule = |egress: bool, number: i32| {
        let way = if egress { "outbound" } else { "inbound" };
        format!("{way} rule {number}")
    };
    let wanted = crate::steps::acl_rules(&params.vpc_cidr);
    let mut found = Vec::new();
    let entries: Vec<_> = described
        .entries()
        .iter()
        .filter(|e| e.rule_number() != Some(crate::steps::ACL_DEFAULT_RULE))
        .collect();
    for want in &wanted {
        let actual = entries
            .iter()
            .find(|e| want.numbers(e))
            .map_or_else(|| "missing".to_string(), |e| crate::steps::entry_text(e));
        if actual != want.text() {
            found.push(seen(
                ResourceKind::NetworkAcl,
                acl,
                &rule(want.egress, want.number),
                want.text(),
                actual,
                breaks::ACL_RULE,
            ));
        }
    }
    for extra in entries
        .iter()
        .filter(|e| !wanted.iter().any(|w| w.numbers(e)))
    {
        let egress = extra.egress().unwrap_or_default();
        found.push(seen(
            ResourceKind::NetworkAcl,
            acl,
            &rule(egress, extra.rule_number().unwrap_or_default()),
            "absent",
            crate::steps::entry_text(extra),
            breaks::ACL_RULE,
        ));
    }
    let associated: Vec<&str> = described
        .associations()
        .iter()
        .filter_map(|a| a.subnet_id())
        .collect();
    for az in 0..params.azs {
        let Some(subnet) = recorded.id(ResourceKind::Subnet, StepKey::PrivateSubnet(az)) else {
            continue;
        };
        if !associated.contains(&subnet) {
            found.push(seen(
                ResourceKind::Subnet,
                subnet,
                ACL_ASSOCIATION_FIELD,
                acl,
                "another",
                breaks::ACL_ASSOCIATION,
            ));
        }
    }
    Ok(found)
}

/// The instance type of the launch template's latest version (the one the
/// group launches from), and whether the template stands. One call.
pub(super) async fn template_drift(
    params: &DeploymentParams,
    aws: &Aws,
    recorded: &Recorded,
    present: &mut Present,
) -> Result<Vec<Observed>, EngineError> {
    let Some(template) = recorded.id(ResourceKind::LaunchTemplate, StepKey::LaunchTemplate) else {
        return Ok(Vec::new());
    };
    let out = aws
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(template)
        .versions("$Latest")
        .send()
        .await
        .step();
    let out = match out {
        Ok(out) => out,
        Err(e) if e.code.starts_with("InvalidLaunchTemplateId") => return Ok(Vec::new()),
        Err(e) => return Err(aws_error(e)),
    };
    present.saw(ResourceKind::LaunchTemplate, template);
    let actual = out
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data())
        .and_then(|d| d.instance_type())
        .map_or_else(|| "none".to_string(), |t| t.as_str().to_string());
    Ok((actual != params.instance_type)
        .then(|| {
            seen(
                ResourceKind::LaunchTemplate,
                template,
                "instance_type",
                params.instance_type.clone(),
                actual,
                breaks::INSTANCE_TYPE,
            )
        })
        .into_iter()
        .collect())
}

/// The load balancer's listeners: one on port 80, HTTP, forwarding to the
/// stack's target group, and no other. One call; a load balancer that is
/// gone is the existence check's to find.
pub(super) async fn listener_drift(
    aws: &Aws,
    names: &Names,
    recorded: &Recorded,
    present: &mut Present,
) -> Result<Vec<Observed>, EngineError> {
    let (Some(lb), Some(tg)) = (
        recorded.arns(ResourceKind::LoadBalancer).first().copied(),
        recorded.arns(ResourceKind::TargetGroup).first().copied(),
    ) else {
        return Ok(Vec::new());
    };
    let out = aws
        .elb
        .describe_listeners()
        .load_balancer_arn(lb)
        .send()
        .await
        .step();
    // The answer also says whether the load balancer stands: it is gone
    // when AWS no longer knows its ARN.
    let out = match out {
        Ok(out) => out,
        Err(e) if e.code == "LoadBalancerNotFound" => return Ok(Vec::new()),
        Err(e) => return Err(aws_error(e)),
    };
    present.saw(ResourceKind::LoadBalancer, &names.load_balancer());
    let expected = listener_text(Some("HTTP"), &[("forward", Some(names.target_group()))]);
    let mut found = Vec::new();
    for listener in out.listeners() {
        let arn = listener.listener_arn().unwrap_or_default();
        let actions: Vec<(&str, Option<String>)> = listener
            .default_actions()
            .iter()
            .map(|a| {
                let target = a.target_group_arn().map(|arn| {
                    if arn == tg {
                        names.target_group()
                    } else {
                        arn.to_string()
                    }
                });
                (a.r#type().map_or("?", |t| t.as_str()), target)
            })
            .collect();
        let actual = listener_text(listener.protocol().map(|p| p.as_str()), &actions);
        let port = listener.port().unwrap_or_default();
        if port == 80 {
            present.saw(ResourceKind::Listener, arn);
            if actual != expected {
                found.push(seen(
                    ResourceKind::Listener,
                    arn,
                    "port 80",
                    expected.clone(),
                    actual,
                    breaks::LISTENER,
                ));
            }
        } else {
            found.push(seen(
                ResourceKind::Listener,
                arn,
                &format!("port {port}"),
                "absent",
                actual,
                breaks::EXTRA_LISTENER,
            ));
        }
    }
    Ok(found)
}

/// A listener as a person reads it: `HTTP, forward to cp-…-tg`.
fn listener_text(protocol: Option<&str>, actions: &[(&str, Option<String>)]) -> String {
    let actions: Vec<String> = actions
        .iter()
        .map(|(kind, target)| match target {
            Some(target) => format!("{kind} to {target}"),
            None => (*kind).to_string(),
        })
        .collect();
    format!("{}, {}", protocol.unwrap_or("?"), actions.join(" then "))
}

/// Looks for what the setting checks do not read, one call a kind: the NAT
/// gateways (gone once `deleting`), the load balancer, the launch template,
/// the role, its profile and the bucket.
pub(super) async fn look_for_the_rest(
    aws: &Aws,
    names: &Names,
    recorded: &Recorded,
    present: &mut Present,
) -> Result<(), EngineError> {
    let nats: Vec<String> = recorded
        .of(ResourceKind::NatGateway)
        .map(str::to_string)
        .collect();
    if !nats.is_empty() {
        let out = aws
            .ec2
            .describe_nat_gateways()
            .filter(crate::steps::filter_any("nat-gateway-id", nats))
            .send()
            .await
            .step()
            .map_err(aws_error)?;
        for nat in out.nat_gateways() {
            let standing = matches!(
                nat.state(),
                Some(NatGatewayState::Pending | NatGatewayState::Available)
            );
            if standing {
                present.saw(
                    ResourceKind::NatGateway,
                    nat.nat_gateway_id().unwrap_or_default(),
                );
            }
        }
    }
    for leftover in crate::inventory::named(aws, names)
        .await
        .map_err(aws_error)?
    {
        present.seen.insert((leftover.kind, leftover.id));
    }
    Ok(())
}

/// The field of a stray instance's finding.
pub(super) const STRAY_FIELD: &str = "outside the group";

/// Instances in the stack's VPC outside its group (as [`group_drift`] read
/// it; see [`crate::steps::strays`]). One call.
pub(super) async fn stray_drift(
    aws: &Aws,
    names: &Names,
    recorded: &Recorded,
    present: &Present,
) -> Result<Vec<Observed>, EngineError> {
    let (Some(vpc), Some(members)) = (
        recorded.id(ResourceKind::Vpc, StepKey::Vpc),
        present.members.as_ref(),
    ) else {
        return Ok(Vec::new());
    };
    let strays = crate::steps::strays(aws, vpc, &names.auto_scaling_group(), members)
        .await
        .map_err(aws_error)?;
    Ok(strays
        .iter()
        .map(|stray| {
            let owner = if tagged_by(stray.tags(), names.deployment.as_str(), None) {
                "with this stack's tags"
            } else {
                "not this stack's"
            };
            seen(
                ResourceKind::Instance,
                stray.instance_id().unwrap_or_default(),
                STRAY_FIELD,
                "absent",
                format!(
                    "{} {} in {}, {owner}",
                    stray
                        .state()
                        .and_then(|s| s.name())
                        .map_or("unknown", |n| n.as_str()),
                    stray.instance_type().map_or("", |t| t.as_str()),
                    stray.subnet_id().unwrap_or("no subnet"),
                ),
                breaks::STRAY_INSTANCE,
            )
        })
        .collect())
}

/// What a full check saw standing, by kind and id.
#[derive(Default)]
pub(super) struct Present {
    seen: std::collections::HashSet<(String, String)>,
    /// The group's instances, once the group was read.
    members: Option<Vec<String>>,
}

impl Present {
    fn saw(&mut self, kind: ResourceKind, id: &str) {
        self.seen
            .insert((kind.as_str().to_string(), id.to_string()));
    }
}

/// The kinds a full check looks for. The VPC, its subnets, the internet
/// gateway, the Elastic IPs and the network ACL are not: AWS refuses to
/// delete them while the stack's other resources stand on them.
const LOOKED_FOR: &[ResourceKind] = &[
    ResourceKind::AutoScalingGroup,
    ResourceKind::SecurityGroup,
    ResourceKind::RouteTable,
    ResourceKind::TargetGroup,
    ResourceKind::Alarm,
    ResourceKind::NatGateway,
    ResourceKind::LoadBalancer,
    ResourceKind::Listener,
    ResourceKind::LaunchTemplate,
    ResourceKind::IamRole,
    ResourceKind::InstanceProfile,
    ResourceKind::S3Bucket,
];

/// Every recorded resource of a kind looked for that was not seen.
pub(super) fn missing(recorded: &Recorded, present: &Present) -> Vec<Observed> {
    let looked: Vec<&str> = LOOKED_FOR.iter().map(|k| k.as_str()).collect();
    recorded
        .rows
        .iter()
        .filter(|r| looked.contains(&r.kind.as_str()))
        .filter(|r| !present.seen.contains(&(r.kind.clone(), r.aws_id.clone())))
        .map(|r| Observed {
            resource_kind: r.kind.clone(),
            resource_id: r.aws_id.clone(),
            field: "exists".into(),
            expected: "present".into(),
            actual: "gone".into(),
            breaks: breaks::MISSING.into(),
            scope: DriftScope::Full,
        })
        .collect()
}
