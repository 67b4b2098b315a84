//! The DAG of a deploy, and the reverse DAG of its teardown.

use std::fmt;
use std::str::FromStr;

use crate::params::{DeploymentParams, NatMode};

/// One node of a deploy. Indexed variants are per availability zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepKey {
    IamRole,
    InstanceProfile,
    Bucket,
    Artifact,
    Vpc,
    InternetGateway,
    PublicSubnet(u8),
    PrivateSubnet(u8),
    PublicRoutes,
    PrivateRoutes(u8),
    ElasticIp(u8),
    NatGateway(u8),
    NatRoute(u8),
    NetworkAcl,
    SecurityGroups,
    TargetGroup,
    LoadBalancer,
    Listener,
    LaunchTemplate,
    AutoScalingGroup,
    ScalingPolicies,
    Alarms,
    WaitHealthy,
}

impl StepKey {
    fn base(self) -> (&'static str, Option<u8>) {
        use StepKey::*;
        match self {
            IamRole => ("iam_role", None),
            InstanceProfile => ("instance_profile", None),
            Bucket => ("bucket", None),
            Artifact => ("artifact", None),
            Vpc => ("vpc", None),
            InternetGateway => ("internet_gateway", None),
            PublicSubnet(i) => ("public_subnet", Some(i)),
            PrivateSubnet(i) => ("private_subnet", Some(i)),
            PublicRoutes => ("public_routes", None),
            PrivateRoutes(i) => ("private_routes", Some(i)),
            ElasticIp(i) => ("elastic_ip", Some(i)),
            NatGateway(i) => ("nat_gateway", Some(i)),
            NatRoute(i) => ("nat_route", Some(i)),
            NetworkAcl => ("network_acl", None),
            SecurityGroups => ("security_groups", None),
            TargetGroup => ("target_group", None),
            LoadBalancer => ("load_balancer", None),
            Listener => ("listener", None),
            LaunchTemplate => ("launch_template", None),
            AutoScalingGroup => ("auto_scaling_group", None),
            ScalingPolicies => ("scaling_policies", None),
            Alarms => ("alarms", None),
            WaitHealthy => ("wait_healthy", None),
        }
    }
}

impl fmt::Display for StepKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.base() {
            (name, Some(i)) => write!(f, "{name}:{i}"),
            (name, None) => f.write_str(name),
        }
    }
}

impl FromStr for StepKey {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        use StepKey::*;
        let (name, index) = match text.split_once(':') {
            Some((name, i)) => (
                name,
                Some(
                    i.parse::<u8>()
                        .map_err(|_| format!("bad step key {text:?}"))?,
                ),
            ),
            None => (text, None),
        };
        let key = match (name, index) {
            ("iam_role", None) => IamRole,
            ("instance_profile", None) => InstanceProfile,
            ("bucket", None) => Bucket,
            ("artifact", None) => Artifact,
            ("vpc", None) => Vpc,
            ("internet_gateway", None) => InternetGateway,
            ("public_subnet", Some(i)) => PublicSubnet(i),
            ("private_subnet", Some(i)) => PrivateSubnet(i),
            ("public_routes", None) => PublicRoutes,
            ("private_routes", Some(i)) => PrivateRoutes(i),
            ("elastic_ip", Some(i)) => ElasticIp(i),
            ("nat_gateway", Some(i)) => NatGateway(i),
            ("nat_route", Some(i)) => NatRoute(i),
            ("network_acl", None) => NetworkAcl,
            ("security_groups", None) => SecurityGroups,
            ("target_group", None) => TargetGroup,
            ("load_balancer", None) => LoadBalancer,
            ("listener", None) => Listener,
            ("launch_template", None) => LaunchTemplate,
            ("auto_scaling_group", None) => AutoScalingGroup,
            ("scaling_policies", None) => ScalingPolicies,
            ("alarms", None) => Alarms,
            ("wait_healthy", None) => WaitHealthy,
            _ => return Err(format!("unknown step key {text:?}")),
        };
        Ok(key)
    }
}

/// A node and the nodes it waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedStep {
    pub key: String,
    pub depends_on: Vec<String>,
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
            key: key.to_string(),
            depends_on: deps.iter().map(ToString::to_string).collect(),
        })
        .collect()
}

pub const SWEEP: &str = "sweep";
pub const VERIFY: &str = "verify";

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
                .map(|(other, _)| undo_key(*other))
                .collect();
            PlannedStep {
                key: undo_key(*key),
                depends_on: dependents,
            }
        })
        .collect();
    let all_undos = steps.iter().map(|s| s.key.clone()).collect();
    steps.push(PlannedStep {
        key: SWEEP.into(),
        depends_on: all_undos,
    });
    steps.push(PlannedStep {
        key: VERIFY.into(),
        depends_on: vec![SWEEP.into()],
    });
    steps
}

pub fn undo_key(key: StepKey) -> String {
    format!("undo:{key}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn assert_acyclic(plan: &[PlannedStep]) {
        let keys: HashSet<_> = plan.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys.len(), plan.len(), "duplicate keys");
        let deps: HashMap<_, _> = plan
            .iter()
            .map(|s| (s.key.as_str(), &s.depends_on))
            .collect();
        let mut done = HashSet::new();
        while done.len() < plan.len() {
            let before = done.len();
            for step in plan {
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
                .filter(|s| s.key.starts_with("nat_gateway"))
                .count(),
            1
        );
        let route2 = plan.iter().find(|s| s.key == "nat_route:2").unwrap();
        assert!(route2.depends_on.contains(&"nat_gateway:0".to_string()));
    }

    #[test]
    fn teardown_removes_dependents_first() {
        let plan = teardown_plan(&DeploymentParams::default());
        let vpc = plan.iter().find(|s| s.key == "undo:vpc").unwrap();
        assert!(vpc.depends_on.contains(&"undo:security_groups".to_string()));
        assert!(vpc.depends_on.contains(&"undo:public_subnet:0".to_string()));
        let sgs = plan
            .iter()
            .find(|s| s.key == "undo:security_groups")
            .unwrap();
        assert!(sgs.depends_on.contains(&"undo:load_balancer".to_string()));
        assert!(sgs.depends_on.contains(&"undo:launch_template".to_string()));
        assert_eq!(plan.last().unwrap().key, VERIFY);
    }
}
