//! Changing a live stack through the strict sandbox: a plan changes
//! nothing, an apply brings every in-place setting to the new parameters,
//! and plans are refused when they cannot hold.

use crate::common;

use cloudpulse_core::change::ChangeAction;
use cloudpulse_core::ids::PlanId;
use cloudpulse_core::model::{DeploymentStatus, JobKind, Source};
use cloudpulse_engine::params::{DeploymentParams, NatMode};
use cloudpulse_engine::store::Created;
use cloudpulse_engine::{EngineError, StoreError};
use common::{assert_done, harness, params, Harness};

/// The group's (min, desired, max, grace period, cooldown, in service).
async fn group(h: &Harness, name: &str) -> (i32, i32, i32, i32, i32, usize) {
    let out = h
        .aws()
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap();
    let g = &out.auto_scaling_groups()[0];
    let in_service = g
        .instances()
        .iter()
        .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
        .count();
    (
        g.min_size().unwrap(),
        g.desired_capacity().unwrap(),
        g.max_size().unwrap(),
        g.health_check_grace_period().unwrap(),
        g.default_cooldown().unwrap(),
        in_service,
    )
}

/// Applies the plan `id` as the portal does: read, then applied.
async fn apply(h: &Harness, id: &PlanId) -> Result<Created, EngineError> {
    let stored = h.engine.change_plan(id).await?;
    h.engine.apply_change(&stored, Source::Api, None).await
}

#[tokio::test]
async fn a_plan_changes_nothing_and_its_apply_changes_every_setting_in_place() {
    let h = harness().await;
    let (id, _) = h.deploy(params("edit-in-place")).await;
    let names = h.names(&id).await;
    let before = group(&h, &names.auto_scaling_group()).await;
    assert_eq!((before.0, before.1, before.2), (2, 2, 4), "as deployed");

    let after = DeploymentParams {
        desired: 3,
        max: 5,
        grace_period: 60,
        cooldown: 120,
        scale_out_cpu: 80.0,
        deregistration_delay: 45,
        health_check: cloudpulse_engine::params::HealthCheck {
            interval: 10,
            ..Default::default()
        },
        ..params("edit-in-place")
    };
    let plan = h
        .engine
        .plan_change(&id, after.clone(), Source::Api)
        .await
        .unwrap();
    let kinds: Vec<&str> = plan
        .changes
        .iter()
        .map(|c| c.resource_kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "auto_scaling_group",
            "scaling_policy",
            "alarm",
            "target_group"
        ]
    );
    assert!(plan
        .changes
        .iter()
        .all(|c| c.action == ChangeAction::UpdateInPlace));
    assert_eq!(
        plan.changes[0].resource_id.as_deref(),
        Some(names.auto_scaling_group().as_str())
    );
    let cost = plan.cost.as_ref().expect("us-east-1 is priced");
    assert!(cost.change.after_hourly_usd > cost.change.before_hourly_usd);
    assert_eq!(
        group(&h, &names.auto_scaling_group()).await,
        before,
        "a plan touches nothing"
    );

    // A second plan made now goes stale once the first is applied.
    let rival = h
        .engine
        .plan_change(
            &id,
            DeploymentParams {
                min: 1,
                ..params("edit-in-place")
            },
            Source::Api,
        )
        .await
        .unwrap();

    let created = apply(&h, &plan.id).await.unwrap();
    assert!(created.fresh);
    let job = h.engine.wait(&created.job_id).await.unwrap();
    assert_done(&job);
    assert_eq!(job.kind, JobKind::Apply);
    let keys: Vec<&str> = job.steps.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "resize_group",
            "scaling_policies",
            "alarms",
            "target_group",
            "wait_capacity"
        ]
    );

    let aws = h.aws();
    assert_eq!(
        group(&h, &names.auto_scaling_group()).await,
        (2, 3, 5, 60, 120, 3)
    );
    let policies = aws
        .asg
        .describe_policies()
        .auto_scaling_group_name(names.auto_scaling_group())
        .send()
        .await
        .unwrap();
    assert_eq!(policies.scaling_policies().len(), 2);
    for policy in policies.scaling_policies() {
        assert_eq!(policy.cooldown(), Some(120), "{:?}", policy.policy_name());
    }
    let alarms = aws
        .cloudwatch
        .describe_alarms()
        .alarm_names(names.high_cpu_alarm())
        .send()
        .await
        .unwrap();
    let high = &alarms.metric_alarms()[0];
    assert_eq!(high.threshold(), Some(80.0));
    assert_eq!(
        high.alarm_actions(),
        [policies
            .scaling_policies()
            .iter()
            .find(|p| p.policy_name() == Some(names.scale_out_policy().as_str()))
            .and_then(|p| p.policy_arn())
            .unwrap()
            .to_string()],
        "the alarm still runs the scale-out policy"
    );
    let groups = aws
        .elb
        .describe_target_groups()
        .names(names.target_group())
        .send()
        .await
        .unwrap();
    let tg = &groups.target_groups()[0];
    assert_eq!(tg.health_check_interval_seconds(), Some(10));
    let attributes = aws
        .elb
        .describe_target_group_attributes()
        .target_group_arn(tg.target_group_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert!(attributes.attributes().iter().any(|a| {
        a.key() == Some("deregistration_delay.timeout_seconds") && a.value() == Some("45")
    }));
    let stored = h.engine.store().deployment(&id).await.unwrap();
    assert_eq!(stored.status, DeploymentStatus::Live);
    assert_eq!(stored.params["desired"], 3);
    assert_eq!(stored.params["health_check"]["interval"], 10);

    // The same plan again gives its job; the rival plan is stale.
    let again = apply(&h, &plan.id).await.unwrap();
    assert_eq!((again.fresh, &again.job_id), (false, &created.job_id));
    let stale = apply(&h, &rival.id).await.unwrap_err();
    assert!(
        matches!(
            stale,
            EngineError::Store(StoreError::Stale {
                made_at: 1,
                now: 2,
                ..
            })
        ),
        "{stale}"
    );

    h.teardown(&id).await;
    let gone = h
        .engine
        .plan_change(&id, after, Source::Api)
        .await
        .unwrap_err();
    assert!(matches!(gone, EngineError::NotLive { .. }), "{gone}");
}

#[tokio::test]
async fn a_plan_says_what_it_cannot_change_and_changes_nothing() {
    let h = harness().await;
    let (id, _) = h.deploy(params("edit-refused")).await;
    let current = params("edit-refused");
    let refused = |e: EngineError| match e {
        EngineError::Refused { code, fields } => (code, fields),
        other => panic!("not refused: {other}"),
    };

    let moved = DeploymentParams {
        region: "eu-west-1".into(),
        vpc_cidr: "10.9.0.0/16".into(),
        ..current.clone()
    };
    let (code, fields) = refused(
        h.engine
            .plan_change(&id, moved, Source::Api)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "change_refused");
    assert!(
        fields["region"].contains("tear the deployment down"),
        "{fields:?}"
    );
    assert!(fields.contains_key("vpc_cidr"), "{fields:?}");

    // The zone count and the NAT mode both move the private routes: one
    // plan each.
    let zones_and_nat = DeploymentParams {
        azs: 3,
        nat: match current.nat {
            NatMode::PerAz => NatMode::Single,
            NatMode::Single => NatMode::PerAz,
        },
        ..current.clone()
    };
    let (code, fields) = refused(
        h.engine
            .plan_change(&id, zones_and_nat, Source::Api)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "change_not_supported");
    assert!(fields["nat"].contains("plan the zones first"), "{fields:?}");

    let invalid = DeploymentParams {
        desired: 50,
        ..current.clone()
    };
    let error = h
        .engine
        .plan_change(&id, invalid, Source::Api)
        .await
        .unwrap_err();
    let EngineError::Validation(fields) = error else {
        panic!("not a validation error: {error}");
    };
    assert!(fields.contains_key("desired"), "{fields:?}");

    let error = h
        .engine
        .plan_change(&id, current, Source::Api)
        .await
        .unwrap_err();
    let EngineError::Validation(fields) = error else {
        panic!("not a validation error: {error}");
    };
    assert!(
        fields["form"].starts_with("nothing to change"),
        "{fields:?}"
    );
    assert_eq!(h.engine.store().params_version(&id).await.unwrap(), 1);
    h.teardown(&id).await;
}

/// The deployment's standing NAT gateways, its Elastic IPs, and the NAT
/// gateway each private route table's default route uses, by zone.
async fn nat_layout(h: &Harness, id: &common::DeploymentId) -> (Vec<String>, usize, Vec<String>) {
    let aws = h.aws();
    let tag = || {
        aws_sdk_ec2::types::Filter::builder()
            .name("tag:cloudpulse:deployment")
            .values(id.as_str())
            .build()
    };
    let nats = aws
        .ec2
        .describe_nat_gateways()
        .filter(tag())
        .send()
        .await
        .unwrap();
    let standing: Vec<String> = nats
        .nat_gateways()
        .iter()
        .filter(|n| n.state().map(|s| s.as_str()) == Some("available"))
        .filter_map(|n| n.nat_gateway_id().map(str::to_string))
        .collect();
    let addresses = aws
        .ec2
        .describe_addresses()
        .filters(tag())
        .send()
        .await
        .unwrap()
        .addresses()
        .len();
    let tables = h
        .engine
        .store()
        .resources(
            id,
            Some(cloudpulse_core::resource::ResourceKind::RouteTable),
        )
        .await
        .unwrap();
    let mut routes = Vec::new();
    for az in 0..2 {
        let table = tables
            .iter()
            .find(|t| t.step_key == format!("private_routes:{az}"))
            .unwrap();
        let out = aws
            .ec2
            .describe_route_tables()
            .route_table_ids(&table.aws_id)
            .send()
            .await
            .unwrap();
        let nat = out.route_tables()[0]
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
            .and_then(|r| r.nat_gateway_id())
            .unwrap_or("none")
            .to_string();
        routes.push(nat);
    }
    (standing, addresses, routes)
}

/// Each change of a plan as (resource kind, action).
fn actions(plan: &cloudpulse_core::change::ChangePlan) -> Vec<(&str, ChangeAction)> {
    plan.changes
        .iter()
        .map(|c| (c.resource_kind.as_str(), c.action))
        .collect()
}

#[tokio::test]
async fn a_nat_switch_makes_new_gateways_before_it_removes_old_ones_and_back() {
    let h = harness().await;
    let (id, _) = h.deploy(params("nat-switch")).await;
    let (nats, addresses, routes) = nat_layout(&h, &id).await;
    assert_eq!((nats.len(), addresses), (2, 2), "one per zone as deployed");
    assert_ne!(routes[0], routes[1]);

    let single = DeploymentParams {
        nat: NatMode::Single,
        ..params("nat-switch")
    };
    let plan = h
        .engine
        .plan_change(&id, single, Source::Api)
        .await
        .unwrap();
    let actions = actions(&plan);
    assert_eq!(
        actions,
        [
            ("nat_gateway", ChangeAction::Delete),
            ("elastic_ip", ChangeAction::Delete),
            ("route_table", ChangeAction::UpdateInPlace),
        ]
    );
    let cost = plan.cost.as_ref().unwrap();
    assert!(cost.change.after_hourly_usd < cost.change.before_hourly_usd);
    let job = h
        .engine
        .wait(&apply(&h, &plan.id).await.unwrap().job_id)
        .await
        .unwrap();
    assert_done(&job);
    let keys: Vec<&str> = job.steps.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        keys,
        ["nat_route:1", "undo:nat_gateway:1", "undo:elastic_ip:1"]
    );
    let (nats, addresses, routes) = nat_layout(&h, &id).await;
    assert_eq!((nats.len(), addresses), (1, 1), "one shared gateway");
    assert_eq!(routes, [nats[0].clone(), nats[0].clone()]);
    assert_eq!(h.engine.drift(&id).await.unwrap().findings, []);

    let per_az = params("nat-switch");
    let plan = h
        .engine
        .plan_change(&id, per_az, Source::Api)
        .await
        .unwrap();
    assert_eq!(plan.changes[0].action, ChangeAction::Create);
    let job = h
        .engine
        .wait(&apply(&h, &plan.id).await.unwrap().job_id)
        .await
        .unwrap();
    assert_done(&job);
    let (nats, addresses, routes) = nat_layout(&h, &id).await;
    assert_eq!((nats.len(), addresses), (2, 2), "one per zone again");
    assert_ne!(routes[0], routes[1]);
    assert!(nats.contains(&routes[0]) && nats.contains(&routes[1]));
    assert_eq!(h.engine.drift(&id).await.unwrap().findings, []);
    h.teardown(&id).await;
}

/// What a deployment's zones look like in AWS: the zones of its live
/// subnets (public, private), of its NAT gateways, of its load balancer and
/// of its group's subnets, each sorted, and its subnets' blocks.
#[derive(Debug, PartialEq)]
struct Zones {
    public: Vec<String>,
    private: Vec<String>,
    nats: Vec<String>,
    balancer: Vec<String>,
    group: Vec<String>,
    blocks: Vec<String>,
}

async fn zones_of(h: &Harness, id: &common::DeploymentId) -> Zones {
    let aws = h.aws();
    let tag = aws_sdk_ec2::types::Filter::builder()
        .name("tag:cloudpulse:deployment")
        .values(id.as_str())
        .build();
    let subnets = aws
        .ec2
        .describe_subnets()
        .filters(tag.clone())
        .send()
        .await
        .unwrap();
    let zone_of: std::collections::HashMap<String, String> = subnets
        .subnets()
        .iter()
        .map(|s| {
            (
                s.subnet_id().unwrap().to_string(),
                s.availability_zone().unwrap().to_string(),
            )
        })
        .collect();
    let kind = |prefix: &str| -> Vec<String> {
        let mut zones: Vec<String> = subnets
            .subnets()
            .iter()
            .filter(|s| {
                s.tags().iter().any(|t| {
                    t.key() == Some("cloudpulse:step")
                        && t.value().is_some_and(|v| v.starts_with(prefix))
                })
            })
            .map(|s| s.availability_zone().unwrap().to_string())
            .collect();
        zones.sort();
        zones
    };
    let mut nats: Vec<String> = aws
        .ec2
        .describe_nat_gateways()
        .filter(tag)
        .send()
        .await
        .unwrap()
        .nat_gateways()
        .iter()
        .filter(|n| n.state().map(|s| s.as_str()) == Some("available"))
        .filter_map(|n| zone_of.get(n.subnet_id()?).cloned())
        .collect();
    nats.sort();
    let names = h.names(id).await;
    let balancers = aws
        .elb
        .describe_load_balancers()
        .names(names.load_balancer())
        .send()
        .await
        .unwrap();
    let mut balancer: Vec<String> = balancers
        .load_balancers()
        .first()
        .map(|lb| {
            lb.availability_zones()
                .iter()
                .filter_map(|z| z.zone_name().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    balancer.sort();
    let groups = aws
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(names.auto_scaling_group())
        .send()
        .await
        .unwrap();
    let mut group: Vec<String> = groups
        .auto_scaling_groups()
        .iter()
        .flat_map(|g| g.vpc_zone_identifier().unwrap_or_default().split(','))
        .filter_map(|s| zone_of.get(s.trim()).cloned())
        .collect();
    group.sort();
    let mut blocks: Vec<String> = subnets
        .subnets()
        .iter()
        .filter_map(|s| s.cidr_block().map(str::to_string))
        .collect();
    blocks.sort();
    Zones {
        public: kind("public_subnet"),
        private: kind("private_subnet"),
        nats,
        balancer,
        group,
        blocks,
    }
}

#[tokio::test]
async fn a_zone_is_added_and_taken_away_with_every_subnet_kept_where_it_was() {
    let h = harness().await;
    let (id, _) = h.deploy(params("zones")).await;
    let two = zones_of(&h, &id).await;
    assert_eq!(two.public.len(), 2, "{two:?}");
    let (a, b) = (two.public[0].clone(), two.public[1].clone());

    let three = DeploymentParams {
        azs: 3,
        ..params("zones")
    };
    let plan = h.engine.plan_change(&id, three, Source::Api).await.unwrap();
    assert_eq!(plan.changes[0].resource_kind, "subnet");
    assert_eq!(plan.changes[0].action, ChangeAction::Create);
    let cost = plan.cost.as_ref().unwrap();
    assert!(cost.change.after_hourly_usd > cost.change.before_hourly_usd);
    let job = h
        .engine
        .wait(&apply(&h, &plan.id).await.unwrap().job_id)
        .await
        .unwrap();
    assert_done(&job);
    let grown = zones_of(&h, &id).await;
    let c = grown
        .public
        .iter()
        .find(|z| **z != a && **z != b)
        .expect("a third zone")
        .clone();
    let all = vec![a.clone(), b.clone(), c.clone()];
    assert_eq!(
        (
            &grown.public,
            &grown.private,
            &grown.nats,
            &grown.balancer,
            &grown.group
        ),
        (&all, &all, &all, &all, &all),
        "{grown:?}"
    );
    // The first two zones' subnets stayed; the third took free blocks.
    assert_eq!(
        grown.blocks,
        [
            "10.0.1.0/24",
            "10.0.2.0/24",
            "10.0.3.0/24",
            "10.0.4.0/24",
            "10.0.5.0/24",
            "10.0.6.0/24"
        ]
    );
    assert_eq!(h.engine.drift(&id).await.unwrap().findings, []);

    let plan = h
        .engine
        .plan_change(&id, params("zones"), Source::Api)
        .await
        .unwrap();
    assert!(plan
        .changes
        .iter()
        .any(|c| c.resource_kind == "subnet" && c.action == ChangeAction::Delete));
    let job = h
        .engine
        .wait(&apply(&h, &plan.id).await.unwrap().job_id)
        .await
        .unwrap();
    assert_done(&job);
    // The group left the zone before anything of the zone was deleted.
    let step = |key: &str| job.steps.iter().find(|s| s.key == key).unwrap();
    let drained = step("group_zones").finished_at.unwrap();
    for gone in job.steps.iter().filter(|s| s.key.starts_with("undo:")) {
        assert!(gone.started_at.unwrap() >= drained, "{:?}", job.steps);
    }
    assert_eq!(
        step("group_zones").outputs["zones"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let shrunk = zones_of(&h, &id).await;
    assert_eq!(shrunk, two, "back as deployed");
    assert_eq!(h.engine.drift(&id).await.unwrap().findings, []);
    h.teardown(&id).await;
}

/// As AWS publishes a newer Amazon Linux 2023, from one of the stack's
/// instances. Returns the new AMI.
async fn publish_newer_image(h: &Harness, id: &common::DeploymentId) -> String {
    let names = h.names(id).await;
    let groups = h
        .aws()
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(names.auto_scaling_group())
        .send()
        .await
        .unwrap();
    let instance = groups.auto_scaling_groups()[0].instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    let endpoint = h.world.endpoint_url().expect("a sandbox endpoint");
    cloudpulse_sandbox::publish_newer_image(endpoint, &instance)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_newer_image_is_offered_by_a_plan_of_the_same_parameters() {
    let h = harness().await;
    let (id, _) = h.deploy(params("imaged")).await;
    let error = h
        .engine
        .plan_change(&id, params("imaged"), Source::Api)
        .await
        .unwrap_err();
    let EngineError::Validation(fields) = error else {
        panic!("not a validation error: {error}");
    };
    assert!(
        fields["form"].contains("newest Amazon Linux 2023"),
        "{fields:?}"
    );
    // No account may move AWS's public parameter: the portal cannot.
    let denied = h
        .engine
        .aws("us-east-1")
        .ssm
        .put_parameter()
        .name(cloudpulse_sandbox::AMI_PARAMETER)
        .value("ami-12345678")
        .overwrite(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        denied.as_service_error().and_then(|e| e.meta().code()),
        Some("AccessDeniedException"),
        "{denied:?}"
    );

    let newest = publish_newer_image(&h, &id).await;
    let plan = h
        .engine
        .plan_change(&id, params("imaged"), Source::Api)
        .await
        .unwrap();
    let actions = actions(&plan);
    assert_eq!(
        actions,
        [
            ("launch_template", ChangeAction::UpdateInPlace),
            ("instance", ChangeAction::Replace)
        ]
    );
    let field = &plan.changes[0].fields[0];
    assert_eq!(field.field, "image");
    assert_eq!(field.after, newest.as_str());
    assert_ne!(field.before, field.after);
    let cost = plan.cost.as_ref().unwrap();
    assert_eq!(
        cost.change.before_hourly_usd, cost.change.after_hourly_usd,
        "the same stack, another image"
    );
    h.teardown(&id).await;
}
