//! Drift through the strict sandbox: a stack changed behind the portal's
//! back (a rule revoked and one added, a route deleted, an alarm deleted, a
//! network ACL entry changed and a deny added, the listener answering by
//! itself, the desired capacity set by hand) is found, each difference once; the
//! desired capacity is accepted into the parameters, a rule is not, and a
//! repair puts the rest back as the parameters say.

use crate::common;

use aws_sdk_ec2::types::{IpPermission, IpRange, PortRange, RuleAction, UserIdGroupPair};
use cloudpulse_core::drift::DriftReport;
use cloudpulse_core::model::{EventKind, Source};
use cloudpulse_core::resource::ResourceKind;
use cloudpulse_engine::EngineError;
use common::{assert_done, harness, params, DeploymentId, Harness};

/// The one recorded id of `kind` made by the step `step`.
async fn recorded(h: &Harness, id: &DeploymentId, kind: ResourceKind, step: &str) -> String {
    let rows = h.engine.store().resources(id, Some(kind)).await.unwrap();
    rows.into_iter()
        .find(|r| r.step_key == step && r.deleted_at.is_none())
        .unwrap_or_else(|| panic!("no {kind} recorded by {step}"))
        .aws_id
}

/// The findings as (kind, field, expected, actual), sorted.
fn read(report: &DriftReport) -> Vec<(String, String, String, String)> {
    let mut rows: Vec<_> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.resource_kind.clone(),
                f.field.clone(),
                f.expected.clone(),
                f.actual.clone(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn finding<'a>(report: &'a DriftReport, field: &str) -> &'a cloudpulse_core::drift::DriftFinding {
    report
        .findings
        .iter()
        .find(|f| f.field == field)
        .unwrap_or_else(|| panic!("no {field} finding in {report:#?}"))
}

fn tcp(port: i32) -> aws_sdk_ec2::types::builders::IpPermissionBuilder {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(port)
        .to_port(port)
}

#[tokio::test]
async fn drift_behind_the_portals_back_is_found_accepted_and_repaired() {
    let h = harness().await;
    let (id, _) = h.deploy(params("drifting")).await;
    let names = h.names(&id).await;
    let fresh = h.engine.check_drift(&id).await.unwrap();
    assert!(
        fresh.findings.is_empty(),
        "a fresh stack matches its parameters: {:#?}",
        fresh.findings
    );
    assert!(fresh.checked_at.is_some());

    let aws = h.aws();
    let groups = h
        .engine
        .store()
        .resources(&id, Some(ResourceKind::SecurityGroup))
        .await
        .unwrap();
    let described = aws
        .ec2
        .describe_security_groups()
        .set_group_ids(Some(groups.iter().map(|g| g.aws_id.clone()).collect()))
        .send()
        .await
        .unwrap();
    let group_id = |name: String| {
        described
            .security_groups()
            .iter()
            .find(|g| g.group_name() == Some(name.as_str()))
            .and_then(|g| g.group_id())
            .unwrap()
            .to_string()
    };
    let alb = group_id(names.alb_security_group());
    let app = group_id(names.app_security_group());
    aws.ec2
        .revoke_security_group_ingress()
        .group_id(&app)
        .ip_permissions(
            tcp(3000)
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(&alb).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    aws.ec2
        .authorize_security_group_ingress()
        .group_id(&app)
        .ip_permissions(
            tcp(22)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let private = recorded(&h, &id, ResourceKind::RouteTable, "private_routes:1").await;
    aws.ec2
        .delete_route()
        .route_table_id(&private)
        .destination_cidr_block("0.0.0.0/0")
        .send()
        .await
        .unwrap();
    let acl = recorded(&h, &id, ResourceKind::NetworkAcl, "network_acl").await;
    aws.ec2
        .create_network_acl_entry()
        .network_acl_id(&acl)
        .rule_number(90)
        .protocol("-1")
        .rule_action(RuleAction::Deny)
        .egress(false)
        .cidr_block("0.0.0.0/0")
        .send()
        .await
        .unwrap();
    aws.ec2
        .replace_network_acl_entry()
        .network_acl_id(&acl)
        .rule_number(100)
        .protocol("6")
        .rule_action(RuleAction::Allow)
        .egress(true)
        .cidr_block("0.0.0.0/0")
        .port_range(PortRange::builder().from(80).to(80).build())
        .send()
        .await
        .unwrap();
    let listener = recorded(&h, &id, ResourceKind::Listener, "listener").await;
    aws.elb
        .modify_listener()
        .listener_arn(&listener)
        .default_actions(
            aws_sdk_elasticloadbalancingv2::types::Action::builder()
                .r#type(aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::FixedResponse)
                .fixed_response_config(
                    aws_sdk_elasticloadbalancingv2::types::FixedResponseActionConfig::builder()
                        .status_code("503")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    aws.cloudwatch
        .delete_alarms()
        .alarm_names(names.low_cpu_alarm())
        .send()
        .await
        .unwrap();
    aws.asg
        .set_desired_capacity()
        .auto_scaling_group_name(names.auto_scaling_group())
        .desired_capacity(3)
        .send()
        .await
        .unwrap();

    // The poll sees the desired capacity at once, from what it reads anyway.
    let snapshot = h.engine.health(&id).await.unwrap();
    h.engine.poll_drift(&snapshot).await.unwrap();
    assert_eq!(
        read(&h.engine.drift(&id).await.unwrap()),
        [(
            "auto_scaling_group".into(),
            "desired".into(),
            "2".into(),
            "3".into()
        )]
    );
    let desired_seen = finding(&h.engine.drift(&id).await.unwrap(), "desired").first_seen;

    let report = h.engine.check_drift(&id).await.unwrap();
    let nat = recorded(&h, &id, ResourceKind::NatGateway, "nat_gateway:1").await;
    assert_eq!(
        read(&report),
        [
            (
                "alarm".into(),
                "exists".into(),
                "present".into(),
                "gone".into()
            ),
            (
                "auto_scaling_group".into(),
                "desired".into(),
                "2".into(),
                "3".into()
            ),
            (
                "listener".into(),
                "port 80".into(),
                format!("HTTP, forward to {}", names.target_group()),
                "HTTP, fixed-response".into()
            ),
            (
                "network_acl".into(),
                "inbound rule 90".into(),
                "absent".into(),
                "deny all traffic from 0.0.0.0/0".into()
            ),
            (
                "network_acl".into(),
                "outbound rule 100".into(),
                "allow tcp 443 to 0.0.0.0/0".into(),
                "allow tcp 80 to 0.0.0.0/0".into()
            ),
            (
                "route_table".into(),
                "route 0.0.0.0/0".into(),
                format!("via {nat}"),
                "missing".into()
            ),
            (
                "security_group".into(),
                "ingress".into(),
                "absent".into(),
                "tcp 22 from 0.0.0.0/0".into()
            ),
            (
                "security_group".into(),
                "ingress".into(),
                format!("tcp 3000 from {alb}"),
                "missing".into()
            ),
        ]
    );
    assert_eq!(
        finding(&report, "desired").first_seen,
        desired_seen,
        "a finding seen again keeps its first sighting"
    );
    let again = h.engine.check_drift(&id).await.unwrap();
    assert_eq!(read(&again), read(&report), "a second check finds the same");
    let events = h.engine.store().events(&id, 100).await.unwrap();
    let found: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == EventKind::Drift.as_str() && e.message.starts_with("drift found"))
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(found.len(), 8, "each difference once: {found:#?}");

    // A rule cannot go into the parameters, and a refusal changes nothing.
    let rule = report
        .findings
        .iter()
        .find(|f| f.actual.starts_with("tcp 22"))
        .unwrap();
    assert!(!rule.acceptable);
    let desired = finding(&report, "desired");
    assert!(desired.acceptable);
    let refused = h
        .engine
        .accept_drift(&id, &[desired.id.clone(), rule.id.clone()], Source::Api)
        .await
        .unwrap_err();
    match refused {
        EngineError::Refused { code, fields } => {
            assert_eq!(code, "drift_not_accepted");
            assert!(fields[&rule.id].contains("cannot say this"), "{fields:?}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let version = h.engine.store().params_version(&id).await.unwrap();
    assert_eq!(
        h.engine.store().deployment(&id).await.unwrap().params["desired"],
        2
    );

    let accepted = h
        .engine
        .accept_drift(&id, std::slice::from_ref(&desired.id), Source::Api)
        .await
        .unwrap();
    assert_eq!(accepted.findings.len(), 7);
    assert_eq!(
        h.engine.store().deployment(&id).await.unwrap().params["desired"],
        3
    );
    assert_eq!(
        h.engine.store().params_version(&id).await.unwrap(),
        version + 1,
        "plans made before the accept are stale"
    );

    let created = h.engine.repair_drift(&id, Source::Api).await.unwrap();
    let job = h.engine.wait(&created.job_id).await.unwrap();
    assert_done(&job);
    let keys: Vec<&str> = job.steps.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "nat_route:1",
            "network_acl",
            "security_groups",
            "listener",
            "alarms",
            "wait_healthy"
        ]
    );
    assert_eq!(
        read(&h.engine.drift(&id).await.unwrap()),
        [],
        "the apply's own check after the repair finds nothing"
    );
    let app_rules = aws
        .ec2
        .describe_security_groups()
        .group_ids(&app)
        .send()
        .await
        .unwrap();
    let ingress = app_rules.security_groups()[0].ip_permissions();
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    assert_eq!(ingress[0].from_port(), Some(3000));
    let tables = aws
        .ec2
        .describe_route_tables()
        .route_table_ids(&private)
        .send()
        .await
        .unwrap();
    assert!(tables.route_tables()[0]
        .routes()
        .iter()
        .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0")
            && r.nat_gateway_id() == Some(nat.as_str())));
    let listeners = aws
        .elb
        .describe_listeners()
        .listener_arns(&listener)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listeners.listeners()[0].default_actions()[0]
            .r#type()
            .map(|t| t.as_str()),
        Some("forward"),
        "the listener forwards again"
    );
    let entries = aws
        .ec2
        .describe_network_acls()
        .network_acl_ids(&acl)
        .send()
        .await
        .unwrap();
    let entries = entries.network_acls()[0].entries();
    assert!(
        !entries.iter().any(|e| e.rule_number() == Some(90)),
        "{entries:?}"
    );
    assert!(
        entries.iter().any(|e| e.rule_number() == Some(100)
            && e.egress() == Some(true)
            && e.port_range().and_then(|p| p.from()) == Some(443)),
        "{entries:?}"
    );
    let alarms = aws
        .cloudwatch
        .describe_alarms()
        .alarm_names(names.low_cpu_alarm())
        .send()
        .await
        .unwrap();
    assert_eq!(alarms.metric_alarms().len(), 1);

    let nothing = h.engine.repair_drift(&id, Source::Api).await.unwrap_err();
    assert!(
        matches!(nothing, EngineError::WrongState(ref why) if why.contains("nothing to repair")),
        "{nothing:?}"
    );
}

#[tokio::test]
async fn a_desired_capacity_moved_by_a_scaling_policy_is_not_drift() {
    let h = harness().await;
    let (id, _) = h.deploy(params("scaled")).await;
    let names = h.names(&id).await;
    h.aws()
        .asg
        .execute_policy()
        .auto_scaling_group_name(names.auto_scaling_group())
        .policy_name(names.scale_out_policy())
        .honor_cooldown(false)
        .send()
        .await
        .unwrap();
    let snapshot = h.engine.health(&id).await.unwrap();
    assert_eq!(snapshot.group.desired, 3, "the policy added one");
    h.engine.poll_drift(&snapshot).await.unwrap();
    let report = h.engine.check_drift(&id).await.unwrap();
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
}

#[tokio::test]
async fn a_launch_template_version_of_another_type_is_found_and_can_be_accepted() {
    let h = harness().await;
    let (id, _) = h.deploy(params("retyped")).await;
    let template = recorded(&h, &id, ResourceKind::LaunchTemplate, "launch_template").await;
    let aws = h.aws();
    let latest = aws
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(&template)
        .versions("$Latest")
        .send()
        .await
        .unwrap();
    let data = latest.launch_template_versions()[0]
        .launch_template_data()
        .unwrap();
    // As the console does: a new version, another type, all else the same.
    aws.ec2
        .create_launch_template_version()
        .launch_template_id(&template)
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .set_image_id(data.image_id().map(str::to_string))
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Small)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let report = h.engine.check_drift(&id).await.unwrap();
    assert_eq!(
        read(&report),
        [(
            "launch_template".into(),
            "instance_type".into(),
            "t3.micro".into(),
            "t3.small".into()
        )]
    );
    let found = finding(&report, "instance_type");
    assert!(found.acceptable, "the parameters can say it");
    let accepted = h
        .engine
        .accept_drift(&id, std::slice::from_ref(&found.id), Source::Api)
        .await
        .unwrap();
    assert!(accepted.findings.is_empty(), "{:#?}", accepted.findings);
    assert_eq!(
        h.engine.store().deployment(&id).await.unwrap().params["instance_type"],
        "t3.small"
    );
    assert_eq!(read(&h.engine.check_drift(&id).await.unwrap()), []);
}

#[tokio::test]
async fn an_instance_outside_the_group_is_found_and_terminated_when_ours_and_a_gone_balancer_seen()
{
    let h = harness().await;
    let (id, _) = h.deploy(params("strays")).await;
    let subnet = recorded(&h, &id, ResourceKind::Subnet, "private_subnet:0").await;
    let template = recorded(&h, &id, ResourceKind::LaunchTemplate, "launch_template").await;
    let aws = h.aws();
    let image = aws
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(&template)
        .versions("$Latest")
        .send()
        .await
        .unwrap()
        .launch_template_versions()[0]
        .launch_template_data()
        .and_then(|d| d.image_id())
        .unwrap()
        .to_string();
    // One as a detached instance keeps the stack's tags, one launched by
    // hand into the same subnet.
    let launch = |tags: Vec<(&str, &str)>| {
        let mut spec = aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::Instance);
        for (key, value) in tags {
            spec = spec.tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build(),
            );
        }
        aws.ec2
            .run_instances()
            .image_id(&image)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .subnet_id(&subnet)
            .min_count(1)
            .max_count(1)
            .tag_specifications(spec.build())
            .send()
    };
    let detached = launch(vec![("cloudpulse:deployment", id.as_str())])
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    let foreign = launch(vec![("Name", "someone-elses")])
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();

    let report = h.engine.check_drift(&id).await.unwrap();
    let mut strays: Vec<(&str, &str)> = report
        .findings
        .iter()
        .map(|f| (f.resource_id.as_str(), f.actual.as_str()))
        .collect();
    strays.sort();
    assert_eq!(strays.len(), 2, "{report:#?}");
    for (stray, actual) in &strays {
        let f = report
            .findings
            .iter()
            .find(|f| f.resource_id == *stray)
            .unwrap();
        assert_eq!(
            (f.resource_kind.as_str(), f.field.as_str()),
            ("instance", "outside the group")
        );
        assert!(!f.acceptable, "the parameters cannot say it");
        assert!(
            actual.starts_with("running t3.micro in subnet-"),
            "{actual}"
        );
    }
    let of = |instance: &str| strays.iter().find(|s| s.0 == instance).unwrap().1;
    assert!(
        of(&detached).ends_with("with this stack's tags"),
        "{strays:?}"
    );
    assert!(of(&foreign).ends_with("not this stack's"), "{strays:?}");

    let job = h
        .engine
        .wait(
            &h.engine
                .repair_drift(&id, Source::Api)
                .await
                .unwrap()
                .job_id,
        )
        .await
        .unwrap();
    assert_done(&job);
    let step = job
        .steps
        .iter()
        .find(|s| s.key == "stray_instances")
        .unwrap();
    assert_eq!(step.outputs["terminated"], serde_json::json!([detached]));
    // Someone else's is theirs to terminate: still found, still running.
    let left = h.engine.check_drift(&id).await.unwrap();
    let ids: Vec<&str> = left
        .findings
        .iter()
        .map(|f| f.resource_id.as_str())
        .collect();
    assert_eq!(ids, [foreign.as_str()], "{left:#?}");
    aws.ec2
        .terminate_instances()
        .instance_ids(&foreign)
        .send()
        .await
        .unwrap();
    assert_eq!(read(&h.engine.check_drift(&id).await.unwrap()), []);

    // The listeners' answer says the load balancer is gone.
    let names = h.names(&id).await;
    let balancer = aws
        .elb
        .describe_load_balancers()
        .names(names.load_balancer())
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_string();
    aws.elb
        .delete_load_balancer()
        .load_balancer_arn(balancer)
        .send()
        .await
        .unwrap();
    let gone = read(&h.engine.check_drift(&id).await.unwrap());
    assert!(
        gone.contains(&(
            "load_balancer".into(),
            "exists".into(),
            "present".into(),
            "gone".into()
        )),
        "{gone:?}"
    );
    h.teardown(&id).await;
}
