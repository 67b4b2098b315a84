//! The DAG of a deploy, and the reverse DAG of its teardown.

use crate::params::{DeploymentParams, NatMode};

pub use crate::steps::StepKey;

/// A step of a job, as the `steps` table names it: a deploy step, the undo
/// of one, or the teardown's closing sweep and verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepId {
    Do(StepKey),
    Undo(StepKey),
    Sweep,
    Verify,
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepId::Do(key) => key.fmt(f),
            StepId::Undo(key) => write!(f, "undo:{key}"),
            StepId::Sweep => f.write_str("sweep"),
            StepId::Verify => f.write_str("verify"),
        }
    }
}

impl std::str::FromStr for StepId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "sweep" => StepId::Sweep,
            "verify" => StepId::Verify,
            _ => match text.strip_prefix("undo:") {
                Some(key) => StepId::Undo(key.parse()?),
                None => StepId::Do(text.parse()?),
            },
        })
    }
}

/// Stored and sent as its text, e.g. `"undo:nat_gateway:1"`.
impl serde::Serialize for StepId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A node and the nodes it waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedStep {
    pub key: StepId,
    pub depends_on: Vec<StepId>,
}

/// The NAT gateway that serves the private subnet of AZ `az`.
pub fn nat_for(params: &DeploymentParams, az: u8) -> u8 {
    match params.nat {
        NatMode::PerAz => az,
        NatMode::Single => 0,
    }
}

/// The deploy DAG. Waiting on NAT gateways holds up only the NAT routes and
/// the Auto Scaling group (whose instances fetch the code through them);
/// security groups, load balancer, IAM and the artifact go ahead in parallel.
pub fn deploy_dag(params: &DeploymentParams) -> Vec<(StepKey, Vec<StepKey>)> {
    use StepKey::*;
    let azs: Vec<u8> = (0..params.azs).collect();
    let nats: Vec<u8> = match params.nat {
        NatMode::PerAz => azs.clone(),
        NatMode::Single => vec![0],
    };
    let mut dag = vec![
        (IamRole, vec![]),
        (InstanceProfile, vec![IamRole]),
        (Bucket, vec![]),
        (Artifact, vec![Bucket]),
        (Vpc, vec![]),
        (InternetGateway, vec![Vpc]),
    ];
    for &az in &azs {
        dag.push((PublicSubnet(az), vec![Vpc]));
        dag.push((PrivateSubnet(az), vec![Vpc]));
        dag.push((PrivateRoutes(az), vec![PrivateSubnet(az)]));
    }
    let public: Vec<StepKey> = azs.iter().map(|&az| PublicSubnet(az)).collect();
    let private: Vec<StepKey> = azs.iter().map(|&az| PrivateSubnet(az)).collect();
    dag.push((
        PublicRoutes,
        [vec![InternetGateway], public.clone()].concat(),
    ));
    for &n in &nats {
        dag.push((ElasticIp(n), vec![]));
        dag.push((
            NatGateway(n),
            vec![ElasticIp(n), PublicSubnet(n), InternetGateway],
        ));
    }
    for &az in &azs {
        dag.push((
            NatRoute(az),
            vec![PrivateRoutes(az), NatGateway(nat_for(params, az))],
        ));
    }
    dag.push((NetworkAcl, private.clone()));
    dag.push((SecurityGroups, vec![Vpc]));
    dag.push((TargetGroup, vec![Vpc]));
    dag.push((
        LoadBalancer,
        [vec![SecurityGroups, InternetGateway], public].concat(),
    ));
    dag.push((Listener, vec![LoadBalancer, TargetGroup]));
    dag.push((
        LaunchTemplate,
        vec![InstanceProfile, SecurityGroups, Artifact],
    ));
    let nat_routes: Vec<StepKey> = azs.iter().map(|&az| NatRoute(az)).collect();
    dag.push((
        AutoScalingGroup,
        [
            vec![LaunchTemplate, TargetGroup, NetworkAcl, PublicRoutes],
            private,
            nat_routes,
        ]
        .concat(),
    ));
    dag.push((ScalingPolicies, vec![AutoScalingGroup]));
    dag.push((Alarms, vec![ScalingPolicies]));
    dag.push((WaitHealthy, vec![AutoScalingGroup, Listener, Alarms]));
    dag
}

pub fn deploy_plan(params: &DeploymentParams) -> Vec<PlannedStep> {
    deploy_dag(params)
        .into_iter()
        .map(|(key, deps)| PlannedStep {
            key: StepId::Do(key),
            depends_on: deps.into_iter().map(StepId::Do).collect(),
        })
        .collect()
}

/// The teardown DAG: `undo:K` for every deploy step K, each waiting for the
/// undo of every step that depended on K; then a sweep of anything still
/// tagged with the deployment, then a verification.
pub fn teardown_plan(params: &DeploymentParams) -> Vec<PlannedStep> {
    let dag = deploy_dag(params);
    let mut steps: Vec<PlannedStep> = dag
        .iter()
        .filter(|(key, _)| *key != StepKey::WaitHealthy)
        .map(|(key, _)| {
            let dependents = dag
                .iter()
                .filter(|(other, deps)| *other != StepKey::WaitHealthy && deps.contains(key))
                .map(|(other, _)| StepId::Undo(*other))
                .collect();
            PlannedStep {
                key: StepId::Undo(*key),
                depends_on: dependents,
            }
        })
        .collect();
    let all_undos = steps.iter().map(|s| s.key).collect();
    steps.push(PlannedStep {
        key: StepId::Sweep,
        depends_on: all_undos,
    });
    steps.push(PlannedStep {
        key: StepId::Verify,
        depends_on: vec![StepId::Sweep],
    });
    steps
}

/// The DAG of an apply that changes the parameters named in `changed`
/// (dotted, as `cloudpulse_core::change::field_changes` names them) on a
/// live stack from `before` to `after`. Each step converges AWS to the
/// deployment's new parameters, so running one again is harmless. A
/// change of the budget alone makes no step: the portal holds it.
///
/// A switch of the NAT mode to `after.nat` makes, in each zone after the
/// first, its address, gateway and route (to one gateway per zone), or
/// moves its route to the first zone's gateway and then removes its own
/// gateway and address (to one shared): never a route to a gateway that is
/// not there yet or no longer.
///
/// Another zone count ([`zone_steps`]) adds or removes the last zones.
pub fn apply_plan(
    changed: &[&str],
    before: &DeploymentParams,
    after: &DeploymentParams,
) -> Vec<PlannedStep> {
    use StepKey::*;
    let any = |names: &[&str]| changed.iter().any(|c| names.contains(c));
    let mut nat: Vec<PlannedStep> = Vec::new();
    if any(&["nat"]) {
        let step = |key: StepId, deps: Vec<StepId>| PlannedStep {
            key,
            depends_on: deps,
        };
        for az in 1..after.azs {
            if after.nat == NatMode::PerAz {
                nat.push(step(StepId::Do(ElasticIp(az)), vec![]));
                nat.push(step(
                    StepId::Do(NatGateway(az)),
                    vec![StepId::Do(ElasticIp(az))],
                ));
                nat.push(step(
                    StepId::Do(NatRoute(az)),
                    vec![StepId::Do(NatGateway(az))],
                ));
            } else {
                nat.push(step(StepId::Do(NatRoute(az)), vec![]));
                nat.push(step(
                    StepId::Undo(NatGateway(az)),
                    vec![StepId::Do(NatRoute(az))],
                ));
                nat.push(step(
                    StepId::Undo(ElasticIp(az)),
                    vec![StepId::Undo(NatGateway(az))],
                ));
            }
        }
    }
    let mut dag: Vec<(StepKey, Vec<StepKey>)> = Vec::new();
    let group = if any(&["desired"]) {
        Some(ResizeGroup)
    } else if any(&["min", "max", "grace_period", "cooldown"]) {
        Some(UpdateGroup)
    } else {
        None
    };
    let zones = any(&["azs"]);
    if let Some(group) = group {
        // A new size takes effect over the new zones: no instance is
        // launched into a zone that is going, or moved again once the new
        // zone is there.
        dag.push((group, if zones { vec![GroupZones] } else { vec![] }));
    }
    if any(&["cooldown"]) {
        dag.push((ScalingPolicies, vec![]));
    }
    if any(&["scale_out_cpu", "scale_in_cpu"]) {
        // The alarms name the policies: after them when both run.
        let after = if any(&["cooldown"]) {
            vec![ScalingPolicies]
        } else {
            vec![]
        };
        dag.push((Alarms, after));
    }
    let target_group = changed
        .iter()
        .any(|c| c.starts_with("health_check.") || *c == "deregistration_delay");
    if target_group {
        dag.push((TargetGroup, vec![]));
    }
    if any(&["min", "max", "desired"]) || zones {
        let mut deps: Vec<StepKey> = group.into_iter().collect();
        if target_group {
            deps.push(TargetGroup);
        }
        if zones {
            deps.push(GroupZones);
        }
        dag.push((WaitCapacity, deps));
    }
    if any(&["instance_type", cloudpulse_core::change::IMAGE_FIELD]) {
        dag.push((TemplateVersion, vec![]));
        // After the group has its new size and settings: the refresh
        // counts its batches from the desired capacity.
        let mut deps = vec![TemplateVersion];
        deps.extend(
            dag.iter()
                .map(|(key, _)| *key)
                .filter(|k| *k == WaitCapacity),
        );
        dag.push((InstanceRefresh, deps));
    }
    let zone_steps = if zones {
        zone_steps(before, after)
    } else {
        Vec::new()
    };
    dag.into_iter()
        .map(|(key, deps)| PlannedStep {
            key: StepId::Do(key),
            depends_on: deps.into_iter().map(StepId::Do).collect(),
        })
        .chain(nat)
        .chain(zone_steps)
        .collect()
}

/// The steps that take a live stack from `before.azs` zones to
/// `after.azs`, always adding or removing the last ones.
///
/// A zone added gets its subnets, private route table and (one gateway
/// per zone) its address and NAT gateway, then its default route; the
/// public route table, the private subnets' network ACL and the load
/// balancer take its subnets in; then the group spreads to it.
///
/// A zone removed is drained first: the group leaves it (its instances
/// replaced elsewhere, drained and terminated), the load balancer leaves
/// its public subnet and the public route table lets it go; then its
/// route table, gateway and address, and its subnets are deleted.
pub fn zone_steps(before: &DeploymentParams, after: &DeploymentParams) -> Vec<PlannedStep> {
    use StepKey::*;
    let step = |key: StepId, deps: Vec<StepId>| PlannedStep {
        key,
        depends_on: deps,
    };
    let per_az = after.nat == NatMode::PerAz;
    let mut steps = Vec::new();
    if after.azs > before.azs {
        let added: Vec<u8> = (before.azs..after.azs).collect();
        let each = |f: fn(u8) -> StepKey| -> Vec<StepId> {
            added.iter().map(|&az| StepId::Do(f(az))).collect()
        };
        for &az in &added {
            steps.push(step(StepId::Do(PublicSubnet(az)), vec![]));
            steps.push(step(StepId::Do(PrivateSubnet(az)), vec![]));
            steps.push(step(
                StepId::Do(PrivateRoutes(az)),
                vec![StepId::Do(PrivateSubnet(az))],
            ));
            let mut route = vec![StepId::Do(PrivateRoutes(az))];
            if per_az {
                steps.push(step(StepId::Do(ElasticIp(az)), vec![]));
                steps.push(step(
                    StepId::Do(NatGateway(az)),
                    vec![StepId::Do(ElasticIp(az)), StepId::Do(PublicSubnet(az))],
                ));
                route.push(StepId::Do(NatGateway(az)));
            }
            steps.push(step(StepId::Do(NatRoute(az)), route));
        }
        steps.push(step(StepId::Do(PublicRoutes), each(PublicSubnet)));
        steps.push(step(StepId::Do(NetworkAcl), each(PrivateSubnet)));
        steps.push(step(
            StepId::Do(LoadBalancer),
            [vec![StepId::Do(PublicRoutes)], each(PublicSubnet)].concat(),
        ));
        steps.push(step(
            StepId::Do(GroupZones),
            [
                vec![StepId::Do(NetworkAcl), StepId::Do(LoadBalancer)],
                each(NatRoute),
            ]
            .concat(),
        ));
    } else if after.azs < before.azs {
        steps.push(step(StepId::Do(GroupZones), vec![]));
        steps.push(step(StepId::Do(LoadBalancer), vec![StepId::Do(GroupZones)]));
        steps.push(step(
            StepId::Do(PublicRoutes),
            vec![StepId::Do(LoadBalancer)],
        ));
        for az in after.azs..before.azs {
            steps.push(step(
                StepId::Undo(PrivateRoutes(az)),
                vec![StepId::Do(GroupZones)],
            ));
            let mut public = vec![StepId::Do(LoadBalancer), StepId::Do(PublicRoutes)];
            if before.nat == NatMode::PerAz {
                steps.push(step(
                    StepId::Undo(NatGateway(az)),
                    vec![StepId::Undo(PrivateRoutes(az))],
                ));
                steps.push(step(
                    StepId::Undo(ElasticIp(az)),
                    vec![StepId::Undo(NatGateway(az))],
                ));
                public.push(StepId::Undo(NatGateway(az)));
            }
            steps.push(step(
                StepId::Undo(PrivateSubnet(az)),
                vec![StepId::Undo(PrivateRoutes(az))],
            ));
            steps.push(step(StepId::Undo(PublicSubnet(az)), public));
        }
    }
    steps
}

/// The DAG of a repair: the deploy steps in `owners` (each converges its
/// resources to the parameters), the steps in `rebuild` (of resources that
/// are gone) with every deploy step that waits on them, each waiting for
/// those of its deploy ancestors that run too; then what an apply of the
/// group's drifted `group_fields` runs, without a step twice.
pub fn repair_plan(
    params: &DeploymentParams,
    owners: &[StepKey],
    rebuild: &[StepKey],
    group_fields: &[&str],
) -> Vec<PlannedStep> {
    let dag = deploy_dag(params);
    let deps_of = |key: StepKey| -> &[StepKey] {
        dag.iter()
            .find(|(k, _)| *k == key)
            .map_or(&[], |(_, deps)| deps.as_slice())
    };
    let mut chosen: std::collections::BTreeSet<StepKey> = owners.iter().copied().collect();
    chosen.extend(rebuild.iter().copied());
    // Every step downstream of a rebuilt one, until nothing is added.
    loop {
        let more: Vec<StepKey> = dag
            .iter()
            .filter(|(key, deps)| {
                !chosen.contains(key)
                    && deps
                        .iter()
                        .any(|d| chosen.contains(d) && downstream_of(&dag, *d, rebuild))
            })
            .map(|(key, _)| *key)
            .collect();
        if more.is_empty() {
            break;
        }
        chosen.extend(more);
    }
    let ancestors = |key: StepKey| {
        let mut seen = std::collections::BTreeSet::new();
        let mut todo: Vec<StepKey> = deps_of(key).to_vec();
        while let Some(next) = todo.pop() {
            if seen.insert(next) {
                todo.extend_from_slice(deps_of(next));
            }
        }
        seen
    };
    let mut steps: Vec<PlannedStep> = dag
        .iter()
        .filter(|(key, _)| chosen.contains(key))
        .map(|(key, _)| PlannedStep {
            key: StepId::Do(*key),
            depends_on: ancestors(*key)
                .into_iter()
                .filter(|a| chosen.contains(a))
                .map(StepId::Do)
                .collect(),
        })
        .collect();
    for step in apply_plan(group_fields, params, params) {
        if !steps.iter().any(|s| s.key == step.key) {
            steps.push(step);
        }
    }
    steps
}

/// Whether `key` is one of `rebuild` or waits on one of them.
fn downstream_of(dag: &[(StepKey, Vec<StepKey>)], key: StepKey, rebuild: &[StepKey]) -> bool {
    if rebuild.contains(&key) {
        return true;
    }
    dag.iter()
        .find(|(k, _)| *k == key)
        .is_some_and(|(_, deps)| deps.iter().any(|d| downstream_of(dag, *d, rebuild)))
}

/// The deploy DAG as a Mermaid flowchart: an arrow from each step to every
/// step that waits for it, in the plan's order.
pub fn mermaid(params: &DeploymentParams) -> String {
    let id = |key: StepKey| key.to_string().replace(':', "_");
    let mut drawn = std::collections::HashSet::new();
    let mut node = |key: StepKey| {
        if drawn.insert(key) {
            format!("{}[\"{key}\"]", id(key))
        } else {
            id(key)
        }
    };
    let mut out = String::from("flowchart LR\n");
    for (key, deps) in deploy_dag(params) {
        for dep in deps {
            let from = node(dep);
            let to = node(key);
            out.push_str(&format!("  {from} --> {to}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    struct Named<'a> {
        key: &'a String,
        depends_on: &'a Vec<String>,
    }

    fn find(plan: &[PlannedStep], key: &str) -> PlannedStep {
        plan.iter()
            .find(|s| s.key.to_string() == key)
            .unwrap()
            .clone()
    }

    fn names(ids: &[StepId]) -> Vec<String> {
        ids.iter().map(ToString::to_string).collect()
    }

    fn assert_acyclic(plan: &[PlannedStep]) {
        let plan: Vec<(String, Vec<String>)> = plan
            .iter()
            .map(|s| {
                let deps = s.depends_on.iter().map(ToString::to_string).collect();
                (s.key.to_string(), deps)
            })
            .collect();
        let plan: Vec<Named> = plan
            .iter()
            .map(|(key, depends_on)| Named { key, depends_on })
            .collect();
        let keys: HashSet<_> = plan.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys.len(), plan.len(), "duplicate keys");
        let deps: HashMap<_, _> = plan
            .iter()
            .map(|s| (s.key.as_str(), &s.depends_on))
            .collect();
        let mut done = HashSet::new();
        while done.len() < plan.len() {
            let before = done.len();
            for step in &plan {
                if !done.contains(step.key.as_str())
                    && step.depends_on.iter().all(|d| {
                        assert!(
                            keys.contains(d.as_str()),
                            "{} depends on unknown {d}",
                            step.key
                        );
                        done.contains(d.as_str())
                    })
                {
                    done.insert(step.key.as_str());
                }
            }
            assert!(
                done.len() > before,
                "cycle among {:?}",
                deps.keys()
                    .filter(|k| !done.contains(*k))
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn plans_are_acyclic_for_every_shape() {
        for azs in [2, 3] {
            for nat in [NatMode::PerAz, NatMode::Single] {
                let params = DeploymentParams {
                    azs,
                    nat,
                    ..Default::default()
                };
                assert_acyclic(&deploy_plan(&params));
                assert_acyclic(&teardown_plan(&params));
            }
        }
    }

    #[test]
    fn keys_round_trip() {
        let params = DeploymentParams {
            azs: 3,
            ..Default::default()
        };
        for (key, _) in deploy_dag(&params) {
            assert_eq!(key.to_string().parse::<StepKey>(), Ok(key));
        }
        assert!("nat_gateway".parse::<StepKey>().is_err());
        assert!("vpc:1".parse::<StepKey>().is_err());
    }

    #[test]
    fn nat_waits_do_not_hold_up_the_load_balancer() {
        let dag = deploy_dag(&DeploymentParams::default());
        let deps: HashMap<_, _> = dag.into_iter().collect();
        // Everything the load balancer needs, transitively, excludes NAT.
        let mut stack = vec![StepKey::Listener];
        let mut seen = HashSet::new();
        while let Some(k) = stack.pop() {
            if seen.insert(k) {
                stack.extend(deps[&k].iter().copied());
            }
        }
        assert!(!seen
            .iter()
            .any(|k| matches!(k, StepKey::NatGateway(_) | StepKey::ElasticIp(_))));
        assert!(deps[&StepKey::AutoScalingGroup].contains(&StepKey::NatRoute(1)));
    }

    #[test]
    fn single_nat_serves_every_az() {
        let params = DeploymentParams {
            nat: NatMode::Single,
            azs: 3,
            ..Default::default()
        };
        let plan = deploy_plan(&params);
        assert_eq!(
            plan.iter()
                .filter(|s| matches!(s.key, StepId::Do(StepKey::NatGateway(_))))
                .count(),
            1
        );
        let route2 = find(&plan, "nat_route:2");
        assert!(names(&route2.depends_on).contains(&"nat_gateway:0".to_string()));
    }

    #[test]
    fn teardown_removes_dependents_first() {
        let plan = teardown_plan(&DeploymentParams::default());
        let vpc = names(&find(&plan, "undo:vpc").depends_on);
        assert!(vpc.contains(&"undo:security_groups".to_string()));
        assert!(vpc.contains(&"undo:public_subnet:0".to_string()));
        let sgs = names(&find(&plan, "undo:security_groups").depends_on);
        assert!(sgs.contains(&"undo:load_balancer".to_string()));
        assert!(sgs.contains(&"undo:launch_template".to_string()));
        assert_eq!(plan.last().unwrap().key, StepId::Verify);
    }

    /// docs/architecture.md draws the default deploy DAG; it must be this one.
    #[test]
    fn the_drawn_dag_is_the_planned_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/architecture.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let marker = doc.find("<!-- deploy-dag:").expect("the marker in the doc");
        let open = marker + doc[marker..].find("```mermaid\n").unwrap() + "```mermaid\n".len();
        let close = open + doc[open..].find("```").unwrap();
        let expected = mermaid(&DeploymentParams::default());
        if doc[open..close] != expected {
            if std::env::var_os("CLOUDPULSE_WRITE_DOCS").is_some() {
                let written = format!("{}{expected}{}", &doc[..open], &doc[close..]);
                std::fs::write(path, written).unwrap();
                return;
            }
            panic!(
                "docs/architecture.md draws another DAG than deploy_dag(); \
                 run this test with CLOUDPULSE_WRITE_DOCS=1, or draw:\n{expected}"
            );
        }
    }

    #[test]
    fn step_ids_round_trip() {
        for params in [
            DeploymentParams::default(),
            DeploymentParams {
                azs: 3,
                ..Default::default()
            },
        ] {
            for step in deploy_plan(&params)
                .into_iter()
                .chain(teardown_plan(&params))
            {
                assert_eq!(step.key.to_string().parse::<StepId>(), Ok(step.key));
            }
        }
        assert!("undo:sweep".parse::<StepId>().is_err());
    }

    #[test]
    fn an_apply_runs_only_the_steps_its_changes_need() {
        let live = DeploymentParams {
            name: "demo".into(),
            ..DeploymentParams::default()
        };
        let keys = |plan: Vec<PlannedStep>| -> Vec<String> {
            assert_acyclic(&plan);
            plan.iter().map(|s| s.key.to_string()).collect()
        };
        assert_eq!(
            keys(apply_plan(&["desired"], &live, &live)),
            ["resize_group", "wait_capacity"]
        );
        assert_eq!(
            keys(apply_plan(&["cooldown"], &live, &live)),
            ["update_group", "scaling_policies"]
        );
        assert_eq!(
            keys(apply_plan(
                &["max", "health_check.path", "scale_in_cpu", "cooldown"],
                &live,
                &live
            )),
            [
                "update_group",
                "scaling_policies",
                "alarms",
                "target_group",
                "wait_capacity"
            ]
        );
        let plan = apply_plan(&["min", "deregistration_delay"], &live, &live);
        assert_eq!(
            names(&find(&plan, "wait_capacity").depends_on),
            ["update_group", "target_group"]
        );
        assert!(
            !plan.iter().any(|s| s.key == StepId::Do(StepKey::Alarms)),
            "{plan:?}"
        );
        assert!(apply_plan(&["ttl_minutes", "cost_cap_usd"], &live, &live).is_empty());
        // A newer image, as another instance type: a version, a refresh.
        assert_eq!(
            keys(apply_plan(&["image"], &live, &live)),
            ["template_version", "instance_refresh"]
        );

        // A NAT switch makes before it removes, zone by zone after the first.
        let single = DeploymentParams {
            nat: NatMode::Single,
            azs: 3,
            ..live.clone()
        };
        let to_single = apply_plan(&["nat"], &single, &single);
        assert_eq!(
            keys(to_single.clone()),
            [
                "nat_route:1",
                "undo:nat_gateway:1",
                "undo:elastic_ip:1",
                "nat_route:2",
                "undo:nat_gateway:2",
                "undo:elastic_ip:2"
            ]
        );
        assert_eq!(
            names(&find(&to_single, "undo:nat_gateway:2").depends_on),
            ["nat_route:2"]
        );
        let per_az = DeploymentParams {
            nat: NatMode::PerAz,
            ..single
        };
        let to_per_az = apply_plan(&["nat"], &per_az, &per_az);
        assert_eq!(
            names(&find(&to_per_az, "nat_route:1").depends_on),
            ["nat_gateway:1"]
        );
        assert_eq!(
            names(&find(&to_per_az, "nat_gateway:1").depends_on),
            ["elastic_ip:1"]
        );
    }

    #[test]
    fn a_zone_is_added_before_the_group_spreads_and_drained_before_it_goes() {
        let two = DeploymentParams {
            name: "demo".into(),
            ..DeploymentParams::default()
        };
        let three = DeploymentParams {
            azs: 3,
            ..two.clone()
        };
        let grow = apply_plan(&["azs"], &two, &three);
        assert_acyclic(&grow);
        let keys: Vec<String> = grow.iter().map(|s| s.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "wait_capacity",
                "public_subnet:2",
                "private_subnet:2",
                "private_routes:2",
                "elastic_ip:2",
                "nat_gateway:2",
                "nat_route:2",
                "public_routes",
                "network_acl",
                "load_balancer",
                "group_zones"
            ]
        );
        assert_eq!(
            names(&find(&grow, "group_zones").depends_on),
            ["network_acl", "load_balancer", "nat_route:2"]
        );
        assert_eq!(
            names(&find(&grow, "wait_capacity").depends_on),
            ["group_zones"]
        );
        // One shared gateway: the new zone routes through the first's.
        let single = |p: &DeploymentParams| DeploymentParams {
            nat: NatMode::Single,
            ..p.clone()
        };
        let grow_single = apply_plan(&["azs"], &single(&two), &single(&three));
        assert_eq!(
            names(&find(&grow_single, "nat_route:2").depends_on),
            ["private_routes:2"]
        );
        assert!(!grow_single
            .iter()
            .any(|s| s.key == StepId::Do(StepKey::NatGateway(2))));

        let shrink = apply_plan(&["azs"], &three, &two);
        assert_acyclic(&shrink);
        assert_eq!(
            names(&find(&shrink, "load_balancer").depends_on),
            ["group_zones"]
        );
        assert_eq!(
            names(&find(&shrink, "undo:public_subnet:2").depends_on),
            ["load_balancer", "public_routes", "undo:nat_gateway:2"]
        );
        assert_eq!(
            names(&find(&shrink, "undo:private_subnet:2").depends_on),
            ["undo:private_routes:2"]
        );
        assert_eq!(
            names(&find(&shrink, "undo:private_routes:2").depends_on),
            ["group_zones"]
        );
        assert_eq!(
            names(&find(&shrink, "undo:elastic_ip:2").depends_on),
            ["undo:nat_gateway:2"]
        );
        let shrink_single = apply_plan(&["azs"], &single(&three), &single(&two));
        assert!(!shrink_single
            .iter()
            .any(|s| s.key == StepId::Undo(StepKey::NatGateway(2))));
        // With a new size: the group settles after it spreads.
        let both = apply_plan(&["azs", "desired"], &two, &three);
        assert_acyclic(&both);
        assert_eq!(
            names(&find(&both, "resize_group").depends_on),
            ["group_zones"]
        );
        assert_eq!(
            names(&find(&both, "wait_capacity").depends_on),
            ["resize_group", "group_zones"]
        );
    }

    #[test]
    fn a_repair_runs_the_owners_and_everything_after_a_rebuilt_step() {
        let params = DeploymentParams {
            name: "demo".into(),
            ..DeploymentParams::default()
        };
        let keys = |plan: &[PlannedStep]| -> Vec<String> {
            assert_acyclic(plan);
            plan.iter().map(|s| s.key.to_string()).collect()
        };
        let plan = repair_plan(
            &params,
            &[StepKey::SecurityGroups, StepKey::NatRoute(1)],
            &[],
            &["desired"],
        );
        assert_eq!(
            keys(&plan),
            [
                "nat_route:1",
                "security_groups",
                "resize_group",
                "wait_capacity"
            ]
        );
        assert!(find(&plan, "security_groups").depends_on.is_empty());

        let rebuilt = repair_plan(&params, &[StepKey::Alarms], &[StepKey::NatGateway(0)], &[]);
        let rebuilt_keys = keys(&rebuilt);
        for key in [
            "nat_gateway:0",
            "nat_route:0",
            "auto_scaling_group",
            "alarms",
            "wait_healthy",
        ] {
            assert!(
                rebuilt_keys.iter().any(|k| k == key),
                "{key}: {rebuilt_keys:?}"
            );
        }
        for key in ["nat_gateway:1", "nat_route:1", "vpc", "security_groups"] {
            assert!(
                !rebuilt_keys.iter().any(|k| k == key),
                "{key}: {rebuilt_keys:?}"
            );
        }
        assert_eq!(
            names(&find(&rebuilt, "nat_route:0").depends_on),
            ["nat_gateway:0"]
        );
        assert!(
            names(&find(&rebuilt, "alarms").depends_on).contains(&"auto_scaling_group".to_string())
        );
    }
}
