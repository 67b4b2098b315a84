//! Drift: reading a live stack back from AWS and comparing it with what its
//! parameters say it must be, then putting it back (repair) or taking the
//! actual values into the parameters (accept).
//!
//! Two checks feed the store ([`crate::store::Store::save_drift`]), each
//! owning its findings: the telemetry poll, which reads the group every
//! cycle anyway, compares its bounds and size ([`group_findings`], no AWS
//! call of its own); the full check ([`Engine::check_drift`]) reads the rest
//! in twelve calls: the group's timings, both security groups' rules, the
//! route tables, the target group and its attributes, the alarms, and
//! whether the NAT gateways, load balancer, launch template, role, profile
//! and bucket still stand.
//!
//! A desired capacity that differs from the parameters is drift only when
//! the group's latest change of it was not made by a scaling policy: the
//! alarms move it on purpose, the console or the CLI does not.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_ec2::types::{IpPermission, NatGatewayState, RouteState};
use cloudpulse_core::drift::{self, breaks, DriftReport, DriftScope, Observed};
use cloudpulse_core::ids::DeploymentId;
use cloudpulse_core::model::{ActivityView, DeploymentStatus, GroupHealth, HealthSnapshot, Source};
use cloudpulse_core::params::{DeploymentParams, FieldErrors};
use cloudpulse_core::resource::ResourceKind;

use crate::aws::{Aws, Names};
use crate::error::{SdkResultExt, StepError};
use crate::plan::{self, nat_for, StepKey};
use crate::runner::{Engine, EngineError};
use crate::steps::gone_ok;
use crate::store::Created;

fn aws_error(error: StepError) -> EngineError {
    EngineError::Aws(error)
}

fn seen(
    kind: ResourceKind,
    id: &str,
    field: &str,
    expected: impl ToString,
    actual: impl ToString,
    breaks: &str,
) -> Observed {
    Observed {
        resource_kind: kind.as_str().to_string(),
        resource_id: id.to_string(),
        field: field.to_string(),
        expected: expected.to_string(),
        actual: actual.to_string(),
        breaks: breaks.to_string(),
        scope: DriftScope::Full,
    }
}

/// Whether the group's latest change of its desired capacity came from a
/// scaling policy (an alarm's, or an `ExecutePolicy`), in AWS's words for
/// an activity's cause.
pub fn scaled_by_policy(activities: &[ActivityView]) -> bool {
    activities
        .iter()
        .filter(|a| a.cause.contains("changing the desired capacity"))
        .max_by_key(|a| a.started_at)
        .is_some_and(|a| {
            a.cause.contains("triggered policy") || a.cause.contains("executed policy")
        })
}

/// The group's bounds and size against the parameters: what the poll sees.
pub fn group_findings(
    params: &DeploymentParams,
    group: &GroupHealth,
    activities: &[ActivityView],
) -> Vec<Observed> {
    let mut found = Vec::new();
    let mut check = |field: &str, expected: u32, actual: i32, why: &str| {
        if i64::from(expected) != i64::from(actual) {
            let mut o = seen(
                ResourceKind::AutoScalingGroup,
                &group.name,
                field,
                expected,
                actual,
                why,
            );
            o.scope = DriftScope::Poll;
            found.push(o);
        }
    };
    check("min", params.min, group.min, breaks::BOUNDS);
    check("max", params.max, group.max, breaks::BOUNDS);
    if !scaled_by_policy(activities) {
        check("desired", params.desired, group.desired, breaks::DESIRED);
    }
    found
}

/// One security-group rule per source or destination, as a person reads
/// it (`tcp 80 from 0.0.0.0/0`, `tcp 3000 to sg-1`, `all traffic to ::/0`),
/// with the permission that is that rule alone (what a revoke names).
pub(crate) fn split_rules(permissions: &[IpPermission], way: &str) -> Vec<(String, IpPermission)> {
    let mut out = Vec::new();
    for p in permissions {
        let protocol = p.ip_protocol().unwrap_or("-1");
        let what = match (protocol, p.from_port(), p.to_port()) {
            ("-1", _, _) => "all traffic".to_string(),
            (proto, Some(from), Some(to)) if from == to => format!("{proto} {from}"),
            (proto, Some(from), Some(to)) => format!("{proto} {from}-{to}"),
            (proto, _, _) => proto.to_string(),
        };
        let base = || {
            IpPermission::builder()
                .set_ip_protocol(p.ip_protocol().map(str::to_string))
                .set_from_port(p.from_port())
                .set_to_port(p.to_port())
        };
        let mut push = |peer: &str, rule: IpPermission| {
            out.push((format!("{what} {way} {peer}"), rule));
        };
        for r in p.ip_ranges() {
            let peer = r.cidr_ip().unwrap_or_default();
            push(peer, base().ip_ranges(r.clone()).build());
        }
        for r in p.ipv6_ranges() {
            let peer = r.cidr_ipv6().unwrap_or_default();
            push(peer, base().ipv6_ranges(r.clone()).build());
        }
        for g in p.user_id_group_pairs() {
            let peer = g.group_id().unwrap_or_default();
            push(peer, base().user_id_group_pairs(g.clone()).build());
        }
        for l in p.prefix_list_ids() {
            let peer = l.prefix_list_id().unwrap_or_default();
            push(peer, base().prefix_list_ids(l.clone()).build());
        }
    }
    out
}

fn rules(permissions: &[IpPermission], way: &str) -> BTreeSet<String> {
    split_rules(permissions, way)
        .into_iter()
        .map(|(text, _)| text)
        .collect()
}

/// The rules each security group must have and no others: the load
/// balancer's HTTP from anywhere and port 3000 to the instances, the
/// instances' port 3000 from the load balancer and HTTPS out.
pub(crate) struct ExpectedRules {
    pub alb_ingress: Vec<String>,
    pub alb_egress: Vec<String>,
    pub app_ingress: Vec<String>,
    pub app_egress: Vec<String>,
}

pub(crate) fn expected_rules(alb: &str, app: &str) -> ExpectedRules {
    ExpectedRules {
        alb_ingress: vec!["tcp 80 from 0.0.0.0/0".to_string()],
        alb_egress: vec![format!("tcp 3000 to {app}")],
        app_ingress: vec![format!("tcp 3000 from {alb}")],
        app_egress: vec!["tcp 443 to 0.0.0.0/0".to_string()],
    }
}

/// Missing and extra rules of one direction of one group.
fn rule_findings(
    group: &str,
    field: &str,
    expected: &[String],
    actual: &BTreeSet<String>,
    missing_breaks: &str,
) -> Vec<Observed> {
    let mut found = Vec::new();
    for rule in expected {
        if !actual.contains(rule) {
            found.push(seen(
                ResourceKind::SecurityGroup,
                group,
                field,
                rule,
                "missing",
                missing_breaks,
            ));
        }
    }
    for rule in actual {
        if !expected.contains(rule) {
            found.push(seen(
                ResourceKind::SecurityGroup,
                group,
                field,
                "absent",
                rule,
                breaks::EXTRA_RULE,
            ));
        }
    }
    found
}

/// Where a route sends its traffic, as a person reads it.
fn route_target(route: &aws_sdk_ec2::types::Route) -> String {
    let target = route
        .gateway_id()
        .or(route.nat_gateway_id())
        .or(route.instance_id())
        .or(route.network_interface_id())
        .or(route.vpc_peering_connection_id())
        .or(route.transit_gateway_id())
        .unwrap_or("nowhere");
    match route.state() {
        Some(RouteState::Blackhole) => format!("via {target} (blackhole)"),
        _ => format!("via {target}"),
    }
}

/// The AWS ids a deployment recorded, by the step that made them.
struct Recorded {
    rows: Vec<cloudpulse_core::model::ResourceView>,
}

impl Recorded {
    fn id(&self, kind: ResourceKind, step: StepKey) -> Option<&str> {
        let step = step.to_string();
        self.rows
            .iter()
            .find(|r| r.kind == kind.as_str() && r.step_key == step)
            .map(|r| r.aws_id.as_str())
    }

    fn of(&self, kind: ResourceKind) -> impl Iterator<Item = &str> {
        self.rows
            .iter()
            .filter(move |r| r.kind == kind.as_str())
            .map(|r| r.aws_id.as_str())
    }

    fn arns(&self, kind: ResourceKind) -> Vec<&str> {
        self.rows
            .iter()
            .filter(|r| r.kind == kind.as_str())
            .filter_map(|r| r.arn.as_deref())
            .collect()
    }
}

impl Engine {
    /// A live deployment's parameters, clients and names.
    async fn drift_context(
        &self,
        id: &DeploymentId,
    ) -> Result<(DeploymentParams, Aws, Names), EngineError> {
        let (name, region, status, params) = self.store().drift_subject(id).await?;
        if status != DeploymentStatus::Live {
            return Err(EngineError::NotLive {
                deployment_id: id.clone(),
                status,
                needs: "drift is checked on a live deployment",
            });
        }
        let params: DeploymentParams = serde_json::from_value(params)
            .map_err(|e| EngineError::Corrupt(format!("parameters: {e}")))?;
        Ok((params, self.aws(&region), Names::new(id, &name)))
    }

    /// The findings kept for a deployment.
    pub async fn drift(&self, id: &DeploymentId) -> Result<DriftReport, EngineError> {
        Ok(self.store().drift(id).await?)
    }

    /// Keeps what the telemetry poll saw of the group's bounds and size.
    /// Skipped while a job of the deployment runs: an apply moves the
    /// parameters a moment before it moves the group.
    pub async fn poll_drift(&self, snapshot: &HealthSnapshot) -> Result<(), EngineError> {
        let id = &snapshot.deployment_id;
        let (params, _, _) = self.drift_context(id).await?;
        if self.store().busy(id).await? {
            return Ok(());
        }
        let found = group_findings(&params, &snapshot.group, &snapshot.activities);
        self.store()
            .save_drift(id, DriftScope::Poll, &found)
            .await?;
        Ok(())
    }

    /// Reads the whole stack back, keeps every difference, and answers the
    /// findings as now kept. Refused while a job of the deployment runs
    /// (an apply checks by itself as it ends).
    pub async fn check_drift(&self, id: &DeploymentId) -> Result<DriftReport, EngineError> {
        if self.store().busy(id).await? {
            return Err(EngineError::WrongState(
                "a job of this deployment is running; drift is checked when it ends".into(),
            ));
        }
        self.read_drift(id).await
    }

    /// [`Self::check_drift`] without asking whether a job runs: for the
    /// end of an apply, which still holds its job.
    pub(crate) async fn read_drift(&self, id: &DeploymentId) -> Result<DriftReport, EngineError> {
        let (params, aws, names) = self.drift_context(id).await?;
        let recorded = Recorded {
            rows: self
                .store()
                .resources(id, None)
                .await?
                .into_iter()
                .filter(|r| r.deleted_at.is_none())
                .collect(),
        };
        let mut present = Present::default();
        let mut found = Vec::new();
        found.extend(group_drift(&params, &aws, &names, &mut present).await?);
        found.extend(security_group_drift(&aws, &names, &recorded, &mut present).await?);
        found.extend(route_drift(&params, &aws, &recorded, &mut present).await?);
        found.extend(target_group_drift(&params, &aws, &names, &mut present).await?);
        found.extend(alarm_drift(&params, &aws, &names, &recorded, &mut present).await?);
        look_for_the_rest(&aws, &names, &recorded, &mut present).await?;
        found.extend(missing(&recorded, &present));
        self.store()
            .save_drift(id, DriftScope::Full, &found)
            .await?;
        self.drift(id).await
    }

    /// Starts the job that puts every drifted resource back as the
    /// parameters say: the deploy steps that own them (each converges its
    /// resource), a missing resource's step with every step after it, and
    /// the group's update for its bounds and size. Refused when nothing
    /// drifted.
    pub async fn repair_drift(
        &self,
        id: &DeploymentId,
        source: Source,
    ) -> Result<Created, EngineError> {
        let (params, _, _) = self.drift_context(id).await?;
        let report = self.store().drift(id).await?;
        if report.findings.is_empty() {
            return Err(EngineError::WrongState(
                "nothing to repair: no drift is found on this deployment (check it again first)"
                    .into(),
            ));
        }
        let recorded = self.store().resources(id, None).await?;
        let mut owners = BTreeSet::new();
        let mut rebuild = BTreeSet::new();
        let mut group_fields = Vec::new();
        for finding in &report.findings {
            let step = recorded
                .iter()
                .find(|r| r.kind == finding.resource_kind && r.aws_id == finding.resource_id)
                .and_then(|r| r.step_key.parse::<StepKey>().ok());
            if finding.field == "exists" {
                if let Some(step) = step {
                    rebuild.insert(step);
                }
                continue;
            }
            if finding.resource_kind == ResourceKind::AutoScalingGroup.as_str() {
                group_fields.push(finding.field.as_str());
                continue;
            }
            match step {
                // A private table's default route is its NAT route's.
                Some(StepKey::PrivateRoutes(az)) => owners.insert(StepKey::NatRoute(az)),
                Some(step) => owners.insert(step),
                None => {
                    return Err(EngineError::Internal(format!(
                        "finding {} names {} {}, which the deployment did not record",
                        finding.id, finding.resource_kind, finding.resource_id
                    )))
                }
            };
        }
        // A resource that is gone is made again by its step, which must not
        // find the old id recorded.
        for finding in report.findings.iter().filter(|f| f.field == "exists") {
            if let Ok(kind) = finding.resource_kind.parse::<ResourceKind>() {
                self.store()
                    .resource_deleted(id, kind, &finding.resource_id)
                    .await?;
            }
        }
        let owners: Vec<StepKey> = owners.into_iter().collect();
        let rebuild: Vec<StepKey> = rebuild.into_iter().collect();
        let steps = plan::repair_plan(&params, &owners, &rebuild, &group_fields);
        let summary = report
            .findings
            .iter()
            .map(|f| format!("{} {} {}", f.resource_kind, f.resource_id, f.field))
            .collect::<Vec<_>>()
            .join(", ");
        let created = self
            .store()
            .create_repair_job(id, &steps, source, &summary)
            .await?;
        self.start(&created.job_id, cloudpulse_core::model::JobKind::Apply);
        Ok(created)
    }

    /// Takes the actual values of the findings `ids` into the parameters.
    /// Every id must name a kept finding the parameters can express, and
    /// the parameters with them taken in must be valid; else nothing
    /// changes and the answer says which and why.
    pub async fn accept_drift(
        &self,
        id: &DeploymentId,
        ids: &[String],
        source: Source,
    ) -> Result<DriftReport, EngineError> {
        let (params, _, _) = self.drift_context(id).await?;
        let report = self.store().drift(id).await?;
        let mut refused = FieldErrors::new();
        let mut accepted = Vec::new();
        if ids.is_empty() {
            refused.insert(
                "findings".into(),
                "name at least one finding id (GET the deployment's drift)".into(),
            );
        }
        for wanted in ids {
            match report.findings.iter().find(|f| &f.id == wanted) {
                None => {
                    refused.insert(
                        wanted.clone(),
                        "no such finding on this deployment (it may be resolved already)".into(),
                    );
                }
                Some(f) if !f.acceptable => {
                    refused.insert(wanted.clone(), drift::refusal(f));
                }
                Some(f) => accepted.push(f),
            }
        }
        if !refused.is_empty() {
            return Err(EngineError::Refused {
                code: "drift_not_accepted",
                fields: refused,
            });
        }
        let after = drift::accept(&params, &accepted).map_err(|why| EngineError::Refused {
            code: "drift_not_accepted",
            fields: FieldErrors::from([("findings".to_string(), why)]),
        })?;
        if let Err(errors) = after.validate() {
            let fields = errors
                .into_iter()
                .map(|(field, why)| {
                    (
                        field.clone(),
                        format!("taking the actual value in would make {field} invalid: {why}"),
                    )
                })
                .collect();
            return Err(EngineError::Refused {
                code: "drift_not_accepted",
                fields,
            });
        }
        let accepted: Vec<_> = accepted.into_iter().cloned().collect();
        self.store()
            .accept_drift(id, &after, &accepted, source)
            .await?;
        self.drift(id).await
    }
}

/// The group's timings; its bounds and size are the poll's.
async fn group_drift(
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

async fn security_group_drift(
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

async fn route_drift(
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

async fn target_group_drift(
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

async fn alarm_drift(
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

/// Looks for what the setting checks do not read, one call a kind: the NAT
/// gateways (gone once `deleting`), the load balancer, the launch template,
/// the role, its profile and the bucket.
async fn look_for_the_rest(
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
    let balancers = gone_ok(
        aws.elb
            .describe_load_balancers()
            .names(names.load_balancer())
            .send()
            .await
            .step(),
    )
    .map_err(aws_error)?;
    for lb in balancers.iter().flat_map(|b| b.load_balancers()) {
        present.saw(
            ResourceKind::LoadBalancer,
            lb.load_balancer_name().unwrap_or_default(),
        );
    }
    let templates = aws
        .ec2
        .describe_launch_templates()
        .filters(crate::steps::filter(
            &format!("tag:{}", crate::aws::TAG_DEPLOYMENT),
            names.deployment.as_str(),
        ))
        .send()
        .await
        .step()
        .map_err(aws_error)?;
    for t in templates.launch_templates() {
        present.saw(
            ResourceKind::LaunchTemplate,
            t.launch_template_id().unwrap_or_default(),
        );
    }
    for leftover in crate::inventory::named(aws, names)
        .await
        .map_err(aws_error)?
    {
        present.seen.insert((leftover.kind, leftover.id));
    }
    Ok(())
}

/// What a full check saw standing, by kind and id.
#[derive(Default)]
struct Present {
    seen: std::collections::HashSet<(String, String)>,
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
    ResourceKind::LaunchTemplate,
    ResourceKind::IamRole,
    ResourceKind::InstanceProfile,
    ResourceKind::S3Bucket,
];

/// Every recorded resource of a kind looked for that was not seen.
fn missing(recorded: &Recorded, present: &Present) -> Vec<Observed> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn activity(minute: u32, cause: &str) -> ActivityView {
        ActivityView {
            id: format!("a{minute}"),
            description: String::new(),
            cause: cause.into(),
            status: "Successful".into(),
            started_at: Some(Utc.with_ymd_and_hms(2026, 12, 3, 12, minute, 0).unwrap()),
            ended_at: None,
        }
    }

    fn group(min: i32, desired: i32, max: i32) -> GroupHealth {
        GroupHealth {
            name: "cp-demo-asg".into(),
            min,
            desired,
            max,
            instances: Vec::new(),
        }
    }

    const BY_USER: &str = "At 2026-12-03T12:05:00Z a user request explicitly set group desired \
        capacity changing the desired capacity from 2 to 4.";
    const BY_ALARM: &str = "At 2026-12-03T12:07:00Z a monitor alarm cp-demo-high-cpu in state \
        ALARM triggered policy cp-demo-scale-out changing the desired capacity from 2 to 3.";

    #[test]
    fn a_desired_capacity_moved_by_a_policy_is_not_drift_and_one_set_by_hand_is() {
        let params = DeploymentParams {
            name: "demo".into(),
            ..DeploymentParams::default()
        };
        let (min, desired, max) = (params.min as i32, params.desired as i32, params.max as i32);
        assert!(group_findings(&params, &group(min, desired, max), &[]).is_empty());

        let by_hand = group_findings(
            &params,
            &group(min, desired + 2, max),
            &[activity(5, BY_USER)],
        );
        assert_eq!(by_hand.len(), 1, "{by_hand:?}");
        assert_eq!(by_hand[0].field, "desired");
        assert_eq!(by_hand[0].scope, DriftScope::Poll);

        // The newest change of the desired capacity decides.
        let scaled = [activity(5, BY_USER), activity(7, BY_ALARM)];
        assert!(group_findings(&params, &group(min, desired + 1, max), &scaled).is_empty());
        assert!(scaled_by_policy(&scaled));
        assert!(!scaled_by_policy(&[
            activity(9, BY_USER),
            activity(7, BY_ALARM)
        ]));

        let bounds = group_findings(&params, &group(min + 1, desired, max + 1), &scaled);
        let fields: Vec<&str> = bounds.iter().map(|o| o.field.as_str()).collect();
        assert_eq!(fields, ["min", "max"]);
    }

    #[test]
    fn rules_read_as_a_person_writes_them() {
        use aws_sdk_ec2::types::{IpRange, UserIdGroupPair};
        let permissions = [
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(80)
                .to_port(80)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(3000)
                .to_port(3010)
                .user_id_group_pairs(UserIdGroupPair::builder().group_id("sg-1").build())
                .build(),
            IpPermission::builder()
                .ip_protocol("-1")
                .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/8").build())
                .build(),
        ];
        let read: Vec<String> = rules(&permissions, "from").into_iter().collect();
        assert_eq!(
            read,
            [
                "all traffic from 10.0.0.0/8",
                "tcp 3000-3010 from sg-1",
                "tcp 80 from 0.0.0.0/0"
            ]
        );
        let found = rule_findings(
            "sg-2",
            "ingress",
            &[
                "tcp 80 from 0.0.0.0/0".to_string(),
                "tcp 443 from 0.0.0.0/0".to_string(),
            ],
            &rules(&permissions, "from"),
            breaks::ALB_INGRESS_MISSING,
        );
        let pairs: Vec<(&str, &str)> = found
            .iter()
            .map(|o| (o.expected.as_str(), o.actual.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("tcp 443 from 0.0.0.0/0", "missing"),
                ("absent", "all traffic from 10.0.0.0/8"),
                ("absent", "tcp 3000-3010 from sg-1"),
            ]
        );
    }
}
