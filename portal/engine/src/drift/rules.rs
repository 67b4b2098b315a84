//! What the drift checks compare, without AWS: the group against its
//! parameters, security-group rules as a person reads them, routes.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{IpPermission, RouteState};
use cloudpulse_core::drift::{breaks, DriftScope, Observed};
use cloudpulse_core::model::{ActivityView, GroupHealth};
use cloudpulse_core::params::DeploymentParams;
use cloudpulse_core::resource::ResourceKind;

pub(super) fn seen(
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

pub(super) fn rules(permissions: &[IpPermission], way: &str) -> BTreeSet<String> {
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
pub(super) fn rule_findings(
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
pub(super) fn route_target(route: &aws_sdk_ec2::types::Route) -> String {
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
