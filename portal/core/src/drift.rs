//! Drift: where a live stack no longer matches its parameters, because
//! someone changed it past the portal (the console, the CLI, another tool).
//!
//! The engine reads AWS and turns every difference into an [`Observed`];
//! the store keeps each as a [`DriftFinding`] with the moment it was first
//! seen, until a check no longer sees it. Pure: the ids, the wording of
//! what a difference breaks, and which differences the parameters can take
//! in (accept) live here, so the pages, the API and the CLI say the same.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::DeploymentId;
use crate::params::DeploymentParams;

text_enum! {
    /// Which check sees a finding: the telemetry poll, which reads the
    /// group every cycle anyway, or the drift check, which reads the rest.
    /// A check replaces the findings of its own scope (a full check: all).
    pub enum DriftScope {
        Poll = "poll",
        Full = "full",
    }
}

/// One difference between AWS and the parameters, as a check sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// A [`crate::resource::ResourceKind`]'s name, e.g. `security_group`.
    pub resource_kind: String,
    /// The AWS id or name of the resource.
    pub resource_id: String,
    /// What differs: a parameter's dotted name where one says it
    /// (`desired`, `health_check.path`), else the setting (`ingress`,
    /// `route 0.0.0.0/0`, `exists`).
    pub field: String,
    pub expected: String,
    pub actual: String,
    /// What the difference breaks, in a sentence.
    pub breaks: String,
    pub scope: DriftScope,
}

impl Observed {
    /// The finding's id: the same difference gets the same id on every
    /// check, so it keeps the moment it was first seen. A rule is told
    /// apart by its text; a setting or a route by its field alone (its
    /// value may move while it stays drifted).
    pub fn id(&self) -> String {
        let what = if self.field == "ingress" || self.field == "egress" {
            format!("{}|{}", self.expected, self.actual)
        } else {
            String::new()
        };
        let text = format!(
            "{}|{}|{}|{what}",
            self.resource_kind, self.resource_id, self.field
        );
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        format!("d{:012x}", hash >> 16)
    }

    /// The parameter this finding's actual value can be taken into, if the
    /// parameters can say it.
    pub fn parameter(&self) -> Option<&'static str> {
        accepted_parameter(&self.field)
    }
}

/// The parameters that can take a drifted value in.
const ACCEPTABLE: &[&str] = &[
    "min",
    "desired",
    "max",
    "cooldown",
    "grace_period",
    "deregistration_delay",
    "scale_out_cpu",
    "scale_in_cpu",
    "health_check.path",
    "health_check.interval",
    "health_check.timeout",
    "health_check.healthy_threshold",
    "health_check.unhealthy_threshold",
    "instance_type",
];

/// The parameters whose value is text, not a number.
const TEXT: &[&str] = &["health_check.path", "instance_type"];

fn accepted_parameter(field: &str) -> Option<&'static str> {
    ACCEPTABLE.iter().copied().find(|p| *p == field)
}

/// A difference kept by the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftFinding {
    pub id: String,
    pub resource_kind: String,
    pub resource_id: String,
    pub field: String,
    pub expected: String,
    pub actual: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub breaks: String,
    /// Whether Accept can take the actual value into the parameters.
    pub acceptable: bool,
}

/// A deployment's drift as last checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub deployment_id: DeploymentId,
    /// When a full check last ran; `None` before the first.
    pub checked_at: Option<DateTime<Utc>>,
    pub findings: Vec<DriftFinding>,
}

/// What came of a check against what was kept before.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DriftChanges {
    /// Findings seen for the first time.
    pub found: Vec<Observed>,
    /// Findings kept before that this check no longer sees.
    pub resolved: Vec<DriftFinding>,
}

/// Why a finding cannot be accepted.
pub fn refusal(finding: &DriftFinding) -> String {
    format!(
        "{} of {} {}: the parameters cannot say this; Repair puts it back as the \
         parameters say, or change it in AWS",
        finding.field, finding.resource_kind, finding.resource_id
    )
}

/// The parameters with the actual values of `findings` taken in. Every
/// finding must be acceptable; an actual value that does not read as the
/// parameter's type is refused with its reason.
pub fn accept(
    params: &DeploymentParams,
    findings: &[&DriftFinding],
) -> Result<DeploymentParams, String> {
    let mut value = serde_json::to_value(params)
        .map_err(|e| format!("the parameters do not serialize: {e}"))?;
    for finding in findings {
        let Some(parameter) = accepted_parameter(&finding.field) else {
            return Err(refusal(finding));
        };
        let actual: Value = if TEXT.contains(&parameter) {
            Value::String(finding.actual.clone())
        } else {
            serde_json::from_str(&finding.actual).map_err(|_| {
                format!(
                    "{parameter}: the actual value {:?} is not a number",
                    finding.actual
                )
            })?
        };
        let mut patch = actual;
        for part in parameter.rsplit('.') {
            patch = serde_json::json!({ part: patch });
        }
        crate::change::merge_patch(&mut value, patch);
    }
    serde_json::from_value(value).map_err(|e| format!("the accepted values do not fit: {e}"))
}

/// What a difference in one field of a resource breaks, for the findings
/// the engine makes.
pub mod breaks {
    pub const DESIRED: &str = "the group runs a different number of instances than the \
        parameters say: cost and capacity differ from the plan, and the next apply resets it";
    pub const BOUNDS: &str = "scaling stops at other bounds than the parameters say: a \
        surge may find no room, or the group may shrink below what the app needs";
    pub const GROUP_TIMING: &str = "instances are judged or scaled on another clock: \
        replacements may be killed before they boot, or scaling may flap";
    pub const HEALTH_CHECK: &str = "the load balancer judges instances differently: \
        healthy instances may be taken out, or broken ones kept in";
    pub const DRAINING: &str = "a leaving instance's requests get another amount of time to \
        finish: scale-ins and teardowns cut requests or wait longer";
    pub const ALARM: &str = "the group scales at another CPU, or not at all";
    pub const ALB_INGRESS_MISSING: &str =
        "the load balancer no longer takes HTTP from the internet: every visitor times out";
    pub const APP_INGRESS_MISSING: &str = "the load balancer cannot reach the instances: health \
        checks time out, targets go unhealthy, and visitors get 502 or 503";
    pub const EGRESS_MISSING: &str = "traffic that needs this rule is dropped: the load \
        balancer cannot reach its targets, or instances cannot reach AWS's APIs";
    pub const EXTRA_RULE: &str = "opens more than the stack needs: a port or a source the \
        design keeps closed is reachable";
    pub const PUBLIC_ROUTE: &str = "the public subnets lose their way to the internet: the \
        load balancer is unreachable and the NAT gateways cannot forward";
    pub const PRIVATE_ROUTE: &str = "this zone's instances lose their way out: no metrics, no \
        artifact download at boot, and new instances there never turn healthy";
    pub const EXTRA_ROUTE: &str = "traffic to this destination leaves the way the design \
        does not expect";
    pub const INSTANCE_TYPE: &str = "the group launches another instance type than the \
        parameters say: capacity, CPU credits and cost differ from the plan, and an instance \
        refresh would spread it";
    pub const LISTENER: &str = "the load balancer's port 80 sends requests elsewhere than \
        the stack's target group, or answers them itself: the app behind the address is down or \
        another";
    pub const EXTRA_LISTENER: &str = "the load balancer answers on a port the design does not \
        open: whatever it serves there is reachable from the internet";
    pub const ACL_RULE: &str = "the private subnets' network ACL lets other traffic in or \
        out than the design: ACLs are stateless, so a denied port or return range cuts the load \
        balancer's requests to the instances or the instances' HTTPS to AWS";
    pub const ACL_ASSOCIATION: &str = "a private subnet follows another network ACL than the \
        stack's: its traffic obeys rules the stack does not know";
    pub const STRAY_INSTANCE: &str = "an instance runs in the stack's VPC outside its group \
        (detached from it, or launched by hand): it bills by the hour, the load balancer sends \
        it nothing, and it holds its subnet at teardown; Repair terminates it when it carries \
        this stack's tags, and one that does not is someone else's to terminate";
    pub const MISSING: &str = "a resource the stack is made of is gone: whatever depends on \
        it fails (see the failure lab's card for its kind)";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(field: &str, expected: &str, actual: &str) -> Observed {
        Observed {
            resource_kind: "auto_scaling_group".into(),
            resource_id: "cp-demo-asg".into(),
            field: field.into(),
            expected: expected.into(),
            actual: actual.into(),
            breaks: breaks::DESIRED.into(),
            scope: DriftScope::Poll,
        }
    }

    fn finding(field: &str, actual: &str) -> DriftFinding {
        let o = observed(field, "2", actual);
        DriftFinding {
            id: o.id(),
            resource_kind: o.resource_kind,
            resource_id: o.resource_id,
            field: o.field,
            expected: o.expected,
            actual: o.actual,
            first_seen: Utc::now(),
            last_seen: Utc::now(),
            breaks: o.breaks,
            acceptable: accepted_parameter(field).is_some(),
        }
    }

    #[test]
    fn a_setting_keeps_its_id_while_its_value_moves_and_a_rule_is_told_by_its_text() {
        assert_eq!(
            observed("desired", "2", "4").id(),
            observed("desired", "2", "5").id()
        );
        assert_ne!(
            observed("desired", "2", "4").id(),
            observed("max", "2", "4").id()
        );
        assert_ne!(
            observed("ingress", "absent", "tcp 22 from 0.0.0.0/0").id(),
            observed("ingress", "absent", "tcp 23 from 0.0.0.0/0").id()
        );
        let id = observed("desired", "2", "4").id();
        assert_eq!(id.len(), 13, "{id}");
        assert!(id.starts_with('d'));
    }

    #[test]
    fn accepting_takes_numbers_paths_and_types_into_the_parameters() {
        let params = DeploymentParams {
            name: "demo".into(),
            ..DeploymentParams::default()
        };
        let desired = finding("desired", "4");
        let path = finding("health_check.path", "/ready");
        let kind = finding("instance_type", "t3.small");
        let accepted = accept(&params, &[&desired, &path, &kind]).unwrap();
        assert_eq!(accepted.desired, 4);
        assert_eq!(accepted.health_check.path, "/ready");
        assert_eq!(accepted.instance_type, "t3.small");
        assert_eq!(accepted.min, params.min);

        let rule = finding("ingress", "tcp 22 from 0.0.0.0/0");
        let refused = accept(&params, &[&rule]).unwrap_err();
        assert!(refused.contains("cannot say this"), "{refused}");
        let garbled = finding("max", "lots");
        assert!(accept(&params, &[&garbled])
            .unwrap_err()
            .contains("not a number"));
    }
}
