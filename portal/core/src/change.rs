//! Changing a live deployment: which parameters can change in place, what a
//! change does to each resource of the stack, how much it disturbs, and what
//! it costs before and after. Pure: the engine fills in the AWS ids and
//! stores the plan; the pages and the CLI show it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{DeploymentId, PlanId};
use crate::params::{DeploymentParams, FieldErrors, NatMode};
use crate::pricing::{estimate, usd, CostCategory, CostEstimate};
use crate::resource::ResourceKind;

text_enum! {
    /// What a plan does to one resource.
    pub enum ChangeAction {
        UpdateInPlace = "update in place",
        Replace = "replace",
        Create = "create",
        Delete = "delete",
        NoChange = "no change",
    }
}

/// How much a change disturbs the app, from least to most.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Disruption {
    /// Requests are served as before.
    #[serde(rename = "none")]
    None,
    /// Instances are replaced a few at a time, capacity kept.
    #[serde(rename = "rolling")]
    Rolling { at_a_time: u32 },
    /// Some traffic stops for a moment, and why.
    #[serde(rename = "brief outage")]
    BriefOutage { why: String },
}

/// One parameter's value before and after, by its dotted name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

/// Hourly and monthly cost before and after a change, in US dollars.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostChange {
    pub before_hourly_usd: f64,
    pub after_hourly_usd: f64,
    pub before_monthly_usd: f64,
    pub after_monthly_usd: f64,
}

impl CostChange {
    fn between(before: (f64, f64), after: (f64, f64)) -> CostChange {
        CostChange {
            before_hourly_usd: before.0,
            after_hourly_usd: after.0,
            before_monthly_usd: before.1,
            after_monthly_usd: after.1,
        }
    }
}

/// What a plan does to one resource of the stack (or to its budget, which
/// lives in the portal, not in AWS: `resource_kind` "budget").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceChange {
    pub resource_kind: String,
    /// The resource's AWS id or name, where the stack has one.
    pub resource_id: Option<String>,
    pub action: ChangeAction,
    pub fields: Vec<FieldChange>,
    /// The AWS calls that make the change.
    pub aws_calls: Vec<String>,
    pub disruption: Disruption,
    /// What a person should know before applying it.
    pub note: Option<String>,
    /// This resource's share of the cost, where it changes.
    pub cost: Option<CostChange>,
}

/// The whole stack's cost before and after.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanCost {
    #[serde(flatten)]
    pub change: CostChange,
    pub prices_as_of: String,
}

/// A change of a live deployment's parameters, worked out and not yet
/// applied. It holds for the version of the parameters it was made
/// against; once they change, applying it is refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangePlan {
    pub id: PlanId,
    pub deployment_id: DeploymentId,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub changes: Vec<ResourceChange>,
    /// `None` where the region has no prices.
    pub cost: Option<PlanCost>,
    /// The worst disruption of all the changes.
    pub disruption: Disruption,
}

/// How a parameter can change on a live stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldClass {
    /// In place, on these resources with these calls: [`IN_PLACE`].
    InPlace,
    /// By making new resources before removing old ones, as the plan's
    /// changes list them (the NAT mode: [`nat_changes`]; the instance type:
    /// [`instance_changes`]; the zone count: [`zone_changes`]).
    Rebuilt,
    /// Not without tearing the stack down; the text says why.
    Refused(&'static str),
}

/// A parameter that changes in place: the resource it lives on and the
/// calls that change it.
pub struct InPlace {
    pub field: &'static str,
    pub resource: &'static str,
    pub calls: &'static [&'static str],
}

/// Every parameter that changes in place, and where. A parameter may touch
/// more than one resource (the cooldown is the group's and each policy's).
pub const IN_PLACE: &[InPlace] = &[
    in_place("min", "auto_scaling_group", &["UpdateAutoScalingGroup"]),
    in_place("max", "auto_scaling_group", &["UpdateAutoScalingGroup"]),
    in_place("desired", "auto_scaling_group", &["UpdateAutoScalingGroup"]),
    in_place(
        "grace_period",
        "auto_scaling_group",
        &["UpdateAutoScalingGroup"],
    ),
    in_place(
        "cooldown",
        "auto_scaling_group",
        &["UpdateAutoScalingGroup"],
    ),
    in_place("cooldown", "scaling_policy", &["PutScalingPolicy"]),
    in_place("scale_out_cpu", "alarm", &["PutMetricAlarm"]),
    in_place("scale_in_cpu", "alarm", &["PutMetricAlarm"]),
    in_place("health_check.path", "target_group", &["ModifyTargetGroup"]),
    in_place(
        "health_check.interval",
        "target_group",
        &["ModifyTargetGroup"],
    ),
    in_place(
        "health_check.timeout",
        "target_group",
        &["ModifyTargetGroup"],
    ),
    in_place(
        "health_check.healthy_threshold",
        "target_group",
        &["ModifyTargetGroup"],
    ),
    in_place(
        "health_check.unhealthy_threshold",
        "target_group",
        &["ModifyTargetGroup"],
    ),
    in_place(
        "deregistration_delay",
        "target_group",
        &["ModifyTargetGroupAttributes"],
    ),
    in_place("ttl_minutes", BUDGET, &[]),
    in_place("cost_cap_usd", BUDGET, &[]),
];

/// The resource kind of a plan's budget change: the portal's, not AWS's.
pub const BUDGET: &str = "budget";

const fn in_place(
    field: &'static str,
    resource: &'static str,
    calls: &'static [&'static str],
) -> InPlace {
    InPlace {
        field,
        resource,
        calls,
    }
}

/// How `field` (a dotted name, as [`field_changes`] gives it) can change.
pub fn classify(field: &str) -> FieldClass {
    if IN_PLACE.iter().any(|p| p.field == field) {
        return FieldClass::InPlace;
    }
    match field {
        "instance_type" | "nat" | "azs" => FieldClass::Rebuilt,
        "region" => FieldClass::Refused(
            "a stack cannot move to another region: every resource would be made again",
        ),
        "vpc_cidr" => FieldClass::Refused(
            "a VPC's range cannot change in place, and every subnet is carved from it",
        ),
        "name" => FieldClass::Refused(
            "the name is in every resource's Name tag, which is set only when it is made",
        ),
        _ => FieldClass::Refused("this portal does not know how to change it"),
    }
}

/// Every leaf parameter whose value differs, by dotted name, in the order
/// the parameters are declared.
pub fn field_changes(before: &DeploymentParams, after: &DeploymentParams) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    let (Ok(before), Ok(after)) = (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return changes;
    };
    diff("", &before, &after, &mut changes);
    changes
}

fn diff(prefix: &str, before: &Value, after: &Value, out: &mut Vec<FieldChange>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (key, b_value) in b {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                diff(&name, b_value, a.get(key).unwrap_or(&Value::Null), out);
            }
        }
        (b, a) if b != a => out.push(FieldChange {
            field: prefix.to_string(),
            before: b.clone(),
            after: a.clone(),
        }),
        _ => {}
    }
}

/// Why a change cannot be planned: the error code (`change_refused` when a
/// field needs a teardown, `change_not_supported` when the fields cannot
/// change together) and each such field with what to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub code: &'static str,
    pub fields: FieldErrors,
}

/// The changes `before` → `after` makes to each resource, without AWS ids
/// (the engine knows them), or why they cannot be made on a live stack.
/// The budget's values compare as the store keeps them: no TTL is 0.
pub fn resource_changes(
    before: &DeploymentParams,
    after: &DeploymentParams,
) -> Result<Vec<ResourceChange>, Refusal> {
    let fields = field_changes(&budget_as_stored(before), &budget_as_stored(after));
    let mut refused = FieldErrors::new();
    let mut not_yet = FieldErrors::new();
    let changes_field = |name: &str| fields.iter().any(|f| f.field == name);
    if changes_field("azs") && changes_field("nat") {
        not_yet.insert(
            "nat".to_string(),
            "the zone count and the NAT mode change in two plans, not one: each moves the \
             private routes; plan the zones first, apply, then plan the NAT mode"
                .to_string(),
        );
    }
    for change in &fields {
        match classify(&change.field) {
            FieldClass::InPlace | FieldClass::Rebuilt => {}
            FieldClass::Refused(why) => {
                refused.insert(
                    change.field.clone(),
                    format!("{why}; tear the deployment down, then redeploy it with the new value"),
                );
            }
        }
    }
    if !refused.is_empty() {
        refused.extend(not_yet);
        return Err(Refusal {
            code: "change_refused",
            fields: refused,
        });
    }
    if !not_yet.is_empty() {
        return Err(Refusal {
            code: "change_not_supported",
            fields: not_yet,
        });
    }
    let mut changes: Vec<ResourceChange> = Vec::new();
    for place in IN_PLACE {
        let Some(field) = fields.iter().find(|f| f.field == place.field) else {
            continue;
        };
        let change = match changes
            .iter_mut()
            .position(|c| c.resource_kind == place.resource)
        {
            Some(i) => &mut changes[i],
            None => {
                changes.push(ResourceChange {
                    resource_kind: place.resource.to_string(),
                    resource_id: None,
                    action: ChangeAction::UpdateInPlace,
                    fields: Vec::new(),
                    aws_calls: Vec::new(),
                    disruption: Disruption::None,
                    note: None,
                    cost: None,
                });
                changes.last_mut().expect("just pushed")
            }
        };
        change.fields.push(field.clone());
        for call in place.calls {
            if !change.aws_calls.iter().any(|c| c == call) {
                change.aws_calls.push(call.to_string());
            }
        }
    }
    for change in &mut changes {
        change.note = note(change, before, after);
    }
    if let Some(nat) = fields.iter().find(|f| f.field == "nat") {
        changes.extend(nat_changes(before, after, nat));
    }
    if let Some(azs) = fields.iter().find(|f| f.field == "azs") {
        for zone in zone_changes(before, after, azs) {
            // The group may already change in place (its size, say).
            match changes
                .iter_mut()
                .find(|c| c.resource_kind == zone.resource_kind)
            {
                Some(same) => merge(same, zone),
                None => changes.push(zone),
            }
        }
    }
    let instance_type = fields.iter().find(|f| f.field == "instance_type");
    if let Some(field) = instance_type {
        changes.extend(instance_changes(after, field));
    }
    // The instances' cost, once: on their replacement when there is one,
    // else on the group whose size changes.
    let priced = if instance_type.is_some() {
        ResourceKind::Instance
    } else {
        ResourceKind::AutoScalingGroup
    };
    if let Some(change) = changes
        .iter_mut()
        .find(|c| c.resource_kind == priced.as_str())
    {
        change.cost = category_cost(before, after, CostCategory::Instances);
    }
    Ok(changes)
}

/// An instance refresh never lets the healthy instances drop below the
/// desired capacity, and launches up to half as many again while a batch's
/// new instances warm up.
pub const REFRESH_MIN_HEALTHY_PERCENT: u32 = 100;
pub const REFRESH_MAX_HEALTHY_PERCENT: u32 = 150;
/// How long a new instance is healthy behind the load balancer before the
/// refresh counts it and terminates an old one.
pub const REFRESH_WARMUP_SECS: u32 = 60;

/// How many instances one batch of the refresh replaces at `desired`, as
/// Auto Scaling counts it from [`REFRESH_MAX_HEALTHY_PERCENT`].
pub fn refresh_at_a_time(desired: u32) -> u32 {
    (desired * (REFRESH_MAX_HEALTHY_PERCENT - 100) / 100).max(1)
}

/// What a new instance type does: [`template_changes`].
fn instance_changes(after: &DeploymentParams, field: &FieldChange) -> Vec<ResourceChange> {
    template_changes(after, field, &format!("with {}", after.instance_type))
}

/// The field of a plan's change to a newer image than the launch
/// template's. Not a parameter: a stack always launches the newest Amazon
/// Linux 2023 its region publishes, and a plan offers the move when a
/// newer one is out.
pub const IMAGE_FIELD: &str = "image";

/// Adds to `changes` what moving the stack from the image `current` to
/// `newest` does: as another instance type, a launch-template version and
/// a rolling instance refresh; the same version and refresh when the
/// instance type changes too.
pub fn add_image_change(
    changes: &mut Vec<ResourceChange>,
    after: &DeploymentParams,
    current: &str,
    newest: &str,
) {
    let field = FieldChange {
        field: IMAGE_FIELD.to_string(),
        before: Value::from(current),
        after: Value::from(newest),
    };
    let template = ResourceKind::LaunchTemplate.as_str();
    if changes.iter().any(|c| c.resource_kind == template) {
        for change in changes.iter_mut().filter(|c| {
            c.resource_kind == template || c.resource_kind == ResourceKind::Instance.as_str()
        }) {
            change.fields.push(field.clone());
        }
        return;
    }
    changes.extend(template_changes(after, &field, &format!("from {newest}")));
}

/// A launch-template version (`what` it differs by; the group launches
/// from `$Latest`), then every instance replaced by a rolling instance
/// refresh, launch before terminate.
fn template_changes(
    after: &DeploymentParams,
    field: &FieldChange,
    what: &str,
) -> Vec<ResourceChange> {
    let at_a_time = refresh_at_a_time(after.desired);
    vec![
        ResourceChange {
            resource_kind: ResourceKind::LaunchTemplate.as_str().to_string(),
            resource_id: None,
            action: ChangeAction::UpdateInPlace,
            fields: vec![field.clone()],
            aws_calls: vec!["CreateLaunchTemplateVersion".into()],
            disruption: Disruption::None,
            note: Some(format!(
                "a new version {what}; the group launches from the latest, so every instance \
                 it starts from then on is one"
            )),
            cost: None,
        },
        ResourceChange {
            resource_kind: ResourceKind::Instance.as_str().to_string(),
            resource_id: None,
            action: ChangeAction::Replace,
            fields: vec![field.clone()],
            aws_calls: vec![
                "StartInstanceRefresh".into(),
                "DescribeInstanceRefreshes".into(),
            ],
            disruption: Disruption::Rolling { at_a_time },
            note: Some(format!(
                "an instance refresh launches {at_a_time} new instance(s) at a time and \
                 terminates as many old ones once the new are healthy behind the load balancer \
                 for {REFRESH_WARMUP_SECS} s: never fewer than {} healthy; the old drain for \
                 the deregistration delay ({} s)",
                after.desired, after.deregistration_delay
            )),
            cost: None,
        },
    ]
}

/// What switching the NAT mode does: a gateway and its address made (to
/// one per zone) or removed (to one shared) in each zone after the first,
/// and those zones' private default routes moved. New gateways are
/// available before a route moves to them; old ones are deleted only after
/// no route points at them, so egress never waits longer than the route's
/// replacement.
fn nat_changes(
    before: &DeploymentParams,
    after: &DeploymentParams,
    field: &FieldChange,
) -> Vec<ResourceChange> {
    let to_per_az = after.nat == NatMode::PerAz;
    let zones = after.azs.saturating_sub(1);
    let (action, gateway, address) = if to_per_az {
        (ChangeAction::Create, "CreateNatGateway", "AllocateAddress")
    } else {
        (ChangeAction::Delete, "DeleteNatGateway", "ReleaseAddress")
    };
    let one = |kind: ResourceKind, action, call: &str, note: Option<String>, cost| ResourceChange {
        resource_kind: kind.as_str().to_string(),
        resource_id: None,
        action,
        fields: vec![field.clone()],
        aws_calls: vec![call.to_string()],
        disruption: Disruption::None,
        note,
        cost,
    };
    let gateway_note = if to_per_az {
        format!(
            "{zones} new gateway(s), each in its own zone and available before that zone's \
             route moves to it: a zone's outage no longer cuts the others' egress"
        )
    } else {
        format!(
            "the other {zones} zone(s) send their egress through the first zone's gateway, \
             deleted only once no route points at them: that one gateway then fails with its zone"
        )
    };
    let mut routes = one(
        ResourceKind::RouteTable,
        ChangeAction::UpdateInPlace,
        "ReplaceRoute",
        Some(format!(
            "the private route table of each of the {zones} zone(s) after the first"
        )),
        None,
    );
    routes.disruption = Disruption::BriefOutage {
        why: "connections open through a NAT gateway are cut when their zone's default \
              route moves to another; new ones go out at once"
            .to_string(),
    };
    vec![
        one(
            ResourceKind::NatGateway,
            action,
            gateway,
            Some(gateway_note),
            category_cost(before, after, CostCategory::Nat),
        ),
        one(
            ResourceKind::ElasticIp,
            action,
            address,
            None,
            category_cost(before, after, CostCategory::PublicIpv4),
        ),
        routes,
    ]
}

/// What another zone count does: the last zone's public and private
/// subnets, its private route table and (one gateway per zone) its NAT
/// gateway and address made or deleted; the public route table, the
/// private subnets' ACL and the load balancer take the zone's subnets in
/// or let them go; the group spreads to it, or first moves its instances
/// out of it (each replaced in another zone before it drains).
fn zone_changes(
    before: &DeploymentParams,
    after: &DeploymentParams,
    field: &FieldChange,
) -> Vec<ResourceChange> {
    let adding = after.azs > before.azs;
    let zones: Vec<u8> = if adding {
        (before.azs..after.azs).collect()
    } else {
        (after.azs..before.azs).collect()
    };
    let count = zones.len();
    let (action, verb) = if adding {
        (ChangeAction::Create, "Create")
    } else {
        (ChangeAction::Delete, "Delete")
    };
    let change = |kind: ResourceKind, action, calls: &[&str], note: String| ResourceChange {
        resource_kind: kind.as_str().to_string(),
        resource_id: None,
        action,
        fields: vec![field.clone()],
        aws_calls: calls.iter().map(|c| c.to_string()).collect(),
        disruption: Disruption::None,
        note: Some(note),
        cost: None,
    };
    let subnet_call = format!("{verb}Subnet");
    let table_call = format!("{verb}RouteTable");
    let mut changes = vec![
        change(
            ResourceKind::Subnet,
            action,
            &[&subnet_call],
            if adding {
                format!(
                    "a public and a private subnet in each of {count} new zone(s), in blocks of \
                     the VPC range no subnet holds: the others stay where they are"
                )
            } else {
                format!(
                    "the public and private subnet of the last {count} zone(s), deleted once \
                     nothing runs in them"
                )
            },
        ),
        change(
            ResourceKind::RouteTable,
            action,
            &[
                &table_call,
                if adding {
                    "AssociateRouteTable"
                } else {
                    "DisassociateRouteTable"
                },
            ],
            if adding {
                format!(
                    "the private route table of each new zone, its default route to {}; the \
                     public route table takes in the zone's public subnet",
                    if after.nat == NatMode::PerAz {
                        "the zone's own NAT gateway"
                    } else {
                        "the first zone's NAT gateway"
                    }
                )
            } else {
                "the private route table of each such zone, deleted; the public route table \
                 lets the zone's public subnet go"
                    .to_string()
            },
        ),
    ];
    let per_az = if adding { after.nat } else { before.nat } == NatMode::PerAz;
    if per_az {
        let (gateway, address) = if adding {
            ("CreateNatGateway", "AllocateAddress")
        } else {
            ("DeleteNatGateway", "ReleaseAddress")
        };
        changes.push(ResourceChange {
            cost: category_cost(before, after, CostCategory::Nat),
            ..change(
                ResourceKind::NatGateway,
                action,
                &[gateway],
                if adding {
                    "one per new zone, available before the zone's route points at it".to_string()
                } else {
                    "the zone's gateway, deleted after its route table and before its subnet"
                        .to_string()
                },
            )
        });
        changes.push(ResourceChange {
            cost: category_cost(before, after, CostCategory::PublicIpv4),
            ..change(
                ResourceKind::ElasticIp,
                action,
                &[address],
                "the gateway's address".to_string(),
            )
        });
    }
    changes.push(change(
        ResourceKind::NetworkAcl,
        ChangeAction::UpdateInPlace,
        &["ReplaceNetworkAclAssociation"],
        if adding {
            "the new private subnets join the private subnets' ACL".to_string()
        } else {
            "the ACL keeps the remaining private subnets".to_string()
        },
    ));
    let mut balancer = change(
        ResourceKind::LoadBalancer,
        ChangeAction::UpdateInPlace,
        &["SetSubnets"],
        if adding {
            "enabled in the new zone's public subnet before the group launches there".to_string()
        } else {
            "leaves the zone's public subnet once the group's instances there are gone".to_string()
        },
    );
    if !per_az {
        balancer.cost = category_cost(before, after, CostCategory::PublicIpv4);
    }
    changes.push(balancer);
    let mut group = change(
        ResourceKind::AutoScalingGroup,
        ChangeAction::UpdateInPlace,
        &["UpdateAutoScalingGroup"],
        if adding {
            format!(
                "the group's subnets include the new zone(s): Auto Scaling launches there next, \
                 and moves instances (launching before terminating) while its zones are more \
                 than one apart ({} instance(s) over {} zones)",
                after.desired, after.azs
            )
        } else {
            format!(
                "the group leaves the zone(s): each instance there is replaced in another zone \
                 before it drains for the deregistration delay ({} s) and terminates",
                after.deregistration_delay
            )
        },
    );
    if !adding {
        group.disruption = Disruption::Rolling { at_a_time: 1 };
    }
    changes.push(group);
    changes
}

/// `other`'s fields, calls and note added to `change`, which takes the
/// worse disruption of the two.
fn merge(change: &mut ResourceChange, other: ResourceChange) {
    change.fields.extend(other.fields);
    for call in other.aws_calls {
        if !change.aws_calls.contains(&call) {
            change.aws_calls.push(call);
        }
    }
    change.note = match (change.note.take(), other.note) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    };
    change.disruption = change.disruption.clone().max(other.disruption);
    change.cost = change.cost.take().or(other.cost);
}

/// The parameters as the store keeps a live deployment's: its TTL is
/// always a number, 0 for none.
fn budget_as_stored(params: &DeploymentParams) -> DeploymentParams {
    DeploymentParams {
        ttl_minutes: Some(params.ttl_minutes.unwrap_or(0)),
        ..params.clone()
    }
}

/// What a person should know about one resource's change.
fn note(
    change: &ResourceChange,
    before: &DeploymentParams,
    after: &DeploymentParams,
) -> Option<String> {
    let changed = |name: &str| change.fields.iter().any(|f| f.field == name);
    match change.resource_kind.as_str() {
        "auto_scaling_group" if after.desired < before.desired || after.max < before.desired => {
            Some(format!(
                "instances leaving the group drain for the deregistration delay ({} s), \
                 then terminate",
                after.deregistration_delay
            ))
        }
        "target_group" if changed("health_check.path") => Some(format!(
            "a target that does not answer 200 at {} is taken out after {} failed checks \
             and replaced",
            after.health_check.path, after.health_check.unhealthy_threshold
        )),
        _ => None,
    }
}

fn category_cost(
    before: &DeploymentParams,
    after: &DeploymentParams,
    category: CostCategory,
) -> Option<CostChange> {
    let line = |e: &CostEstimate| {
        e.lines
            .iter()
            .find(|l| l.category == category)
            .map(|l| (l.per_hour, l.per_month))
    };
    let (b, a) = (estimate(before).ok()?, estimate(after).ok()?);
    let (b, a) = (line(&b)?, line(&a)?);
    (b != a).then(|| CostChange::between(b, a))
}

/// The whole stack's cost before and after, or `None` where the region has
/// no prices.
pub fn plan_cost(before: &DeploymentParams, after: &DeploymentParams) -> Option<PlanCost> {
    let (b, a) = (estimate(before).ok()?, estimate(after).ok()?);
    Some(PlanCost {
        change: CostChange::between((b.per_hour, b.per_month), (a.per_hour, a.per_month)),
        prices_as_of: a.prices_as_of,
    })
}

/// The worst disruption among `changes`.
pub fn worst_disruption(changes: &[ResourceChange]) -> Disruption {
    changes
        .iter()
        .map(|c| c.disruption.clone())
        .max()
        .unwrap_or(Disruption::None)
}

/// A plan as a person reads it: a row per changed field (resource,
/// action, field, before, after) and the lines under the table (notes, the
/// cost before and after, the disruption). The pages and the CLI show it
/// so.
pub struct PlanText {
    pub rows: Vec<[String; 5]>,
    pub lines: Vec<String>,
}

pub fn plan_text(plan: &ChangePlan) -> PlanText {
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for change in &plan.changes {
        let resource = match &change.resource_id {
            Some(id) => format!("{} {id}", change.resource_kind),
            None => change.resource_kind.clone(),
        };
        for field in &change.fields {
            rows.push([
                resource.clone(),
                change.action.as_str().to_string(),
                field.field.clone(),
                field.before.to_string(),
                field.after.to_string(),
            ]);
        }
        if let Some(note) = &change.note {
            lines.push(format!("note ({}): {note}", change.resource_kind));
        }
    }
    if let Some(cost) = &plan.cost {
        let c = &cost.change;
        lines.push(format!(
            "cost {}/h -> {}/h ({} -> {} a month, prices of {})",
            usd(c.before_hourly_usd),
            usd(c.after_hourly_usd),
            usd(c.before_monthly_usd),
            usd(c.after_monthly_usd),
            cost.prices_as_of
        ));
    }
    lines.push(format!(
        "disruption: {}",
        match &plan.disruption {
            Disruption::None => "none".to_string(),
            Disruption::Rolling { at_a_time } => format!("rolling, {at_a_time} at a time"),
            Disruption::BriefOutage { why } => format!("a brief outage: {why}"),
        }
    ));
    PlanText { rows, lines }
}

/// A JSON merge patch (RFC 7386): objects merge key by key, `null` removes
/// a key, anything else replaces the value.
pub fn merge_patch(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(&key);
                } else {
                    merge_patch(target.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live() -> DeploymentParams {
        DeploymentParams {
            name: "demo".into(),
            ttl_minutes: Some(0),
            ..DeploymentParams::default()
        }
    }

    /// Each change as (resource kind, action).
    fn actions(changes: &[ResourceChange]) -> Vec<(&str, ChangeAction)> {
        changes
            .iter()
            .map(|c| (c.resource_kind.as_str(), c.action))
            .collect()
    }

    fn leaves(value: &Value, prefix: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    let name = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    leaves(value, &name, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    #[test]
    fn every_parameter_has_a_class_of_its_own() {
        let mut names = Vec::new();
        leaves(
            &serde_json::to_value(DeploymentParams::default()).unwrap(),
            "",
            &mut names,
        );
        for name in names {
            assert_ne!(
                classify(&name),
                FieldClass::Refused("this portal does not know how to change it"),
                "{name} has no entry: say how it changes on a live stack"
            );
        }
    }

    #[test]
    fn a_nested_field_is_named_by_its_path() {
        let mut after = live();
        after.health_check.interval = 10;
        after.desired = 3;
        let changes = field_changes(&live(), &after);
        let names: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(names, ["desired", "health_check.interval"]);
        assert_eq!(changes[1].before, json!(30));
        assert_eq!(changes[1].after, json!(10));
    }

    #[test]
    fn in_place_changes_group_by_resource_with_their_calls() {
        let mut after = live();
        after.desired = 4;
        after.cooldown = 120;
        after.scale_out_cpu = 80.0;
        after.deregistration_delay = 45;
        let changes = resource_changes(&live(), &after).unwrap();
        let kinds: Vec<&str> = changes.iter().map(|c| c.resource_kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "auto_scaling_group",
                "scaling_policy",
                "alarm",
                "target_group"
            ]
        );
        let group = &changes[0];
        assert_eq!(group.aws_calls, ["UpdateAutoScalingGroup"]);
        assert_eq!(group.fields.len(), 2, "desired and cooldown");
        let cost = group.cost.as_ref().expect("more instances cost more");
        assert!(cost.after_hourly_usd > cost.before_hourly_usd);
        assert!(changes.iter().all(|c| c.disruption == Disruption::None));
    }

    #[test]
    fn a_scale_in_says_its_instances_drain() {
        let mut before = live();
        before.desired = 3;
        let changes = resource_changes(&before, &live()).unwrap();
        let note = changes[0].note.as_deref().unwrap();
        assert!(
            note.contains("drain for the deregistration delay (30 s)"),
            "{note}"
        );
    }

    #[test]
    fn a_change_that_needs_a_teardown_is_refused_by_name() {
        let mut after = live();
        after.region = "eu-west-1".into();
        after.azs = 3;
        after.nat = NatMode::Single;
        let refusal = resource_changes(&live(), &after).unwrap_err();
        assert_eq!(refusal.code, "change_refused");
        assert!(refusal.fields["region"].contains("tear the deployment down"));
        // What else stands in the way is said at once.
        assert!(refusal.fields.contains_key("nat"));

        let mut after = live();
        after.azs = 3;
        after.nat = NatMode::Single;
        let refusal = resource_changes(&live(), &after).unwrap_err();
        assert_eq!(refusal.code, "change_not_supported");
        assert!(refusal.fields["nat"].contains("plan the zones first"));
    }

    #[test]
    fn a_newer_image_is_a_new_template_version_and_a_refresh() {
        let mut changes = Vec::new();
        add_image_change(&mut changes, &live(), "ami-old", "ami-new");
        let read = actions(&changes);
        assert_eq!(
            read,
            [
                ("launch_template", ChangeAction::UpdateInPlace),
                ("instance", ChangeAction::Replace)
            ]
        );
        assert_eq!(changes[0].fields[0].field, IMAGE_FIELD);
        assert_eq!(changes[0].fields[0].after, "ami-new");
        assert!(changes[0].note.as_deref().unwrap().contains("from ami-new"));
        assert_eq!(
            worst_disruption(&changes),
            Disruption::Rolling { at_a_time: 1 }
        );
        // With another instance type: one version, one refresh, both fields.
        let bigger = DeploymentParams {
            instance_type: "t3.small".into(),
            ..live()
        };
        let mut both = resource_changes(&live(), &bigger).unwrap();
        add_image_change(&mut both, &bigger, "ami-old", "ami-new");
        let template = both
            .iter()
            .find(|c| c.resource_kind == "launch_template")
            .unwrap();
        let fields: Vec<&str> = template.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["instance_type", "image"]);
        assert_eq!(
            both.iter()
                .filter(|c| c.resource_kind == "instance")
                .count(),
            1
        );
    }

    #[test]
    fn another_zone_count_adds_or_drains_the_last_zone() {
        let three = DeploymentParams { azs: 3, ..live() };
        let grow = resource_changes(&live(), &three).unwrap();
        let read = actions(&grow);
        assert_eq!(
            read,
            [
                ("subnet", ChangeAction::Create),
                ("route_table", ChangeAction::Create),
                ("nat_gateway", ChangeAction::Create),
                ("elastic_ip", ChangeAction::Create),
                ("network_acl", ChangeAction::UpdateInPlace),
                ("load_balancer", ChangeAction::UpdateInPlace),
                ("auto_scaling_group", ChangeAction::UpdateInPlace),
            ]
        );
        assert_eq!(worst_disruption(&grow), Disruption::None);
        let nat = grow[2].cost.as_ref().expect("a third gateway costs more");
        assert!(nat.after_hourly_usd > nat.before_hourly_usd);
        let shrink = resource_changes(&three, &live()).unwrap();
        assert!(shrink[..4].iter().all(|c| c.action == ChangeAction::Delete));
        assert_eq!(
            worst_disruption(&shrink),
            Disruption::Rolling { at_a_time: 1 }
        );
        // With a new size too, the group is one change with both.
        let bigger = DeploymentParams {
            desired: 3,
            ..three.clone()
        };
        let both = resource_changes(&live(), &bigger).unwrap();
        let groups: Vec<&ResourceChange> = both
            .iter()
            .filter(|c| c.resource_kind == "auto_scaling_group")
            .collect();
        assert_eq!(groups.len(), 1, "{both:?}");
        let fields: Vec<&str> = groups[0].fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["desired", "azs"]);
        assert!(groups[0].cost.is_some());
        // One shared gateway: nothing to make but the zone's own network.
        let single = |p: &DeploymentParams| DeploymentParams {
            nat: NatMode::Single,
            ..p.clone()
        };
        let grow_single = resource_changes(&single(&live()), &single(&three)).unwrap();
        assert!(!grow_single.iter().any(|c| c.resource_kind == "nat_gateway"));
        assert!(grow_single[1]
            .note
            .as_deref()
            .unwrap()
            .contains("first zone's"));
    }

    #[test]
    fn a_nat_switch_makes_before_it_removes_and_says_what_it_cuts() {
        let single = DeploymentParams {
            nat: NatMode::Single,
            ..live()
        };
        let to_single = resource_changes(&live(), &single).unwrap();
        let read = actions(&to_single);
        assert_eq!(
            read,
            [
                ("nat_gateway", ChangeAction::Delete),
                ("elastic_ip", ChangeAction::Delete),
                ("route_table", ChangeAction::UpdateInPlace),
            ]
        );
        let cost = to_single[0].cost.as_ref().expect("NAT gateways are priced");
        assert!(cost.after_hourly_usd < cost.before_hourly_usd);
        assert!(matches!(
            worst_disruption(&to_single),
            Disruption::BriefOutage { .. }
        ));
        let back = resource_changes(&single, &live()).unwrap();
        assert_eq!(back[0].action, ChangeAction::Create);
        assert_eq!(back[0].aws_calls, ["CreateNatGateway"]);
    }

    #[test]
    fn a_new_instance_type_is_a_template_version_and_a_rolling_refresh() {
        let after = DeploymentParams {
            instance_type: "t3.small".into(),
            desired: 4,
            ..live()
        };
        let changes = resource_changes(&live(), &after).unwrap();
        let read = actions(&changes);
        assert_eq!(
            read,
            [
                ("auto_scaling_group", ChangeAction::UpdateInPlace),
                ("launch_template", ChangeAction::UpdateInPlace),
                ("instance", ChangeAction::Replace),
            ]
        );
        assert_eq!(
            worst_disruption(&changes),
            Disruption::Rolling { at_a_time: 2 }
        );
        assert!(changes[0].cost.is_none(), "the instances are priced once");
        let cost = changes[2].cost.as_ref().expect("instances are priced");
        assert!(cost.after_hourly_usd > cost.before_hourly_usd);
        assert_eq!(refresh_at_a_time(1), 1);
        assert_eq!(refresh_at_a_time(2), 1);
        assert_eq!(refresh_at_a_time(5), 2);
    }

    #[test]
    fn no_ttl_and_a_ttl_of_zero_are_the_same() {
        let after = DeploymentParams {
            ttl_minutes: None,
            ..live()
        };
        assert_eq!(resource_changes(&live(), &after).unwrap(), vec![]);
    }

    #[test]
    fn the_plan_cost_is_the_estimate_before_and_after() {
        let mut after = live();
        after.desired = 4;
        after.max = 4;
        let cost = plan_cost(&live(), &after).unwrap();
        assert_eq!(
            cost.change.before_hourly_usd,
            estimate(&live()).unwrap().per_hour
        );
        assert_eq!(
            cost.change.after_hourly_usd,
            estimate(&after).unwrap().per_hour
        );
    }

    #[test]
    fn disruptions_order_from_none_to_an_outage() {
        let rolling = Disruption::Rolling { at_a_time: 1 };
        let outage = Disruption::BriefOutage { why: "x".into() };
        assert!(Disruption::None < rolling && rolling < outage);
        assert_eq!(
            serde_json::to_value(&outage).unwrap(),
            json!({"kind": "brief outage", "why": "x"})
        );
        assert_eq!(
            serde_json::to_value(Disruption::None).unwrap(),
            json!({"kind": "none"})
        );
    }

    #[test]
    fn a_merge_patch_merges_objects_and_removes_nulls() {
        let mut target = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut target, json!({"b": {"c": 5, "d": null}, "e": [1]}));
        assert_eq!(target, json!({"a": 1, "b": {"c": 5}, "e": [1]}));
    }
}
