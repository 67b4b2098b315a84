//! A full deploy and teardown against moto through the real AWS SDK, checking
//! every resource and setting of the reference stack.

use crate::common;

use aws_sdk_ec2::types::Filter;
use cloudpulse_core::model::DeploymentStatus;
use cloudpulse_engine::aws::TAG_DEPLOYMENT;
use cloudpulse_engine::inventory;
use common::{harness, params};

fn tagged(deployment: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{TAG_DEPLOYMENT}"))
        .values(deployment)
        .build()
}

#[tokio::test]
async fn deploy_builds_the_reference_stack_and_teardown_removes_it() {
    let h = harness().await;
    let (id, job) = h.deploy(params("reference")).await;
    let aws = h.aws();
    let names = h.names(&id).await;
    let detail = h.engine.store().deployment(&id).await.unwrap();
    assert_eq!(detail.status, DeploymentStatus::Live);
    assert!(detail.outputs["app_url"]
        .as_str()
        .unwrap()
        .starts_with("http://"));
    assert!(job
        .steps
        .iter()
        .all(|s| s.attempts >= 1 && s.finished_at.is_some()));

    // Network.
    let vpcs = aws
        .ec2
        .describe_vpcs()
        .filters(tagged(id.as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(vpcs.vpcs().len(), 1);
    let vpc = &vpcs.vpcs()[0];
    assert_eq!(vpc.cidr_block(), Some("10.0.0.0/16"));
    let vpc_id = vpc.vpc_id().unwrap();
    let dns = aws
        .ec2
        .describe_vpc_attribute()
        .vpc_id(vpc_id)
        .attribute(aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames)
        .send()
        .await
        .unwrap();
    assert_eq!(
        dns.enable_dns_hostnames().and_then(|v| v.value()),
        Some(true)
    );

    let subnets = aws
        .ec2
        .describe_subnets()
        .filters(tagged(id.as_str()))
        .send()
        .await
        .unwrap();
    let mut cidrs: Vec<(&str, bool, &str)> = subnets
        .subnets()
        .iter()
        .map(|s| {
            (
                s.cidr_block().unwrap(),
                s.map_public_ip_on_launch().unwrap_or(false),
                s.availability_zone().unwrap(),
            )
        })
        .collect();
    cidrs.sort();
    assert_eq!(
        cidrs,
        [
            ("10.0.1.0/24", true, "us-east-1a"),
            ("10.0.2.0/24", true, "us-east-1b"),
            ("10.0.3.0/24", false, "us-east-1a"),
            ("10.0.4.0/24", false, "us-east-1b"),
        ]
    );

    let igws = aws
        .ec2
        .describe_internet_gateways()
        .filters(tagged(id.as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(igws.internet_gateways().len(), 1);
    assert_eq!(
        igws.internet_gateways()[0].attachments()[0].vpc_id(),
        Some(vpc_id)
    );
    let igw = igws.internet_gateways()[0].internet_gateway_id().unwrap();

    let nats = aws
        .ec2
        .describe_nat_gateways()
        .filter(tagged(id.as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(nats.nat_gateways().len(), 2, "one NAT gateway per AZ");
    let eips = aws
        .ec2
        .describe_addresses()
        .filters(tagged(id.as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(eips.addresses().len(), 2);

    let tables = aws
        .ec2
        .describe_route_tables()
        .filters(tagged(id.as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tables.route_tables().len(),
        3,
        "one public, one private per AZ"
    );
    let default_targets: Vec<(Option<&str>, Option<&str>, usize)> = tables
        .route_tables()
        .iter()
        .map(|t| {
            let route = t
                .routes()
                .iter()
                .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
                .unwrap();
            (
                route.gateway_id(),
                route.nat_gateway_id(),
                t.associations().len(),
            )
        })
        .collect();
    assert!(
        default_targets.contains(&(Some(igw), None, 2)),
        "{default_targets:?}"
    );
    let nat_ids: Vec<&str> = nats
        .nat_gateways()
        .iter()
        .filter_map(|n| n.nat_gateway_id())
        .collect();
    for nat in &nat_ids {
        assert!(
            default_targets
                .iter()
                .any(|t| t.1 == Some(*nat) && t.2 == 1),
            "private route to {nat}"
        );
    }

    let acls = aws
        .ec2
        .describe_network_acls()
        .filters(tagged(id.as_str()))
        .send()
        .await
        .unwrap();
    let acl = &acls.network_acls()[0];
    let mut rules: Vec<(i32, bool, String, i32, i32)> = acl
        .entries()
        .iter()
        .filter(|e| e.rule_number() != Some(32767))
        .map(|e| {
            let range = e.port_range().unwrap();
            (
                e.rule_number().unwrap(),
                e.egress().unwrap(),
                e.cidr_block().unwrap().to_string(),
                range.from().unwrap(),
                range.to().unwrap(),
            )
        })
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        [
            (100, false, "10.0.0.0/16".into(), 3000, 3000),
            (100, true, "0.0.0.0/0".into(), 443, 443),
            (110, false, "0.0.0.0/0".into(), 1024, 65535),
            (110, true, "0.0.0.0/0".into(), 1024, 65535),
        ]
    );
    assert_eq!(acl.associations().len(), 2, "both private subnets");

    // Security groups reference each other.
    let groups = aws
        .ec2
        .describe_security_groups()
        .filters(tagged(id.as_str()))
        .send()
        .await
        .unwrap();
    let alb = groups
        .security_groups()
        .iter()
        .find(|g| g.group_name() == Some(&names.alb_security_group()))
        .unwrap();
    let app = groups
        .security_groups()
        .iter()
        .find(|g| g.group_name() == Some(&names.app_security_group()))
        .unwrap();
    let rule =
        |perms: &[aws_sdk_ec2::types::IpPermission]| -> Vec<(i32, Option<String>, Option<String>)> {
            perms
                .iter()
                .map(|p| {
                    (
                        p.from_port().unwrap_or(-1),
                        p.ip_ranges()
                            .first()
                            .and_then(|r| r.cidr_ip())
                            .map(str::to_string),
                        p.user_id_group_pairs()
                            .first()
                            .and_then(|g| g.group_id())
                            .map(str::to_string),
                    )
                })
                .collect()
        };
    assert_eq!(
        rule(alb.ip_permissions()),
        [(80, Some("0.0.0.0/0".into()), None)]
    );
    assert_eq!(
        rule(alb.ip_permissions_egress()),
        [(3000, None, app.group_id().map(str::to_string))]
    );
    assert_eq!(
        rule(app.ip_permissions()),
        [(3000, None, alb.group_id().map(str::to_string))]
    );
    assert_eq!(
        rule(app.ip_permissions_egress()),
        [(443, Some("0.0.0.0/0".into()), None)]
    );

    // Load balancing.
    let lbs = aws
        .elb
        .describe_load_balancers()
        .names(names.load_balancer())
        .send()
        .await
        .unwrap();
    let lb = &lbs.load_balancers()[0];
    assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internet-facing"));
    let listeners = aws
        .elb
        .describe_listeners()
        .load_balancer_arn(lb.load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(listeners.listeners().len(), 1);
    assert_eq!(listeners.listeners()[0].port(), Some(80));
    let tgs = aws
        .elb
        .describe_target_groups()
        .names(names.target_group())
        .send()
        .await
        .unwrap();
    let tg = &tgs.target_groups()[0];
    assert_eq!(tg.port(), Some(3000));
    assert_eq!(tg.health_check_path(), Some("/health"));
    assert_eq!(tg.health_check_interval_seconds(), Some(30));
    assert_eq!(tg.health_check_timeout_seconds(), Some(5));
    assert_eq!(tg.healthy_threshold_count(), Some(2));
    assert_eq!(tg.unhealthy_threshold_count(), Some(3));
    assert_eq!(
        listeners.listeners()[0].default_actions()[0].target_group_arn(),
        tg.target_group_arn()
    );
    // A leaving target drains for the deployment's delay (30 s), not
    // AWS's default five minutes.
    let attributes = aws
        .elb
        .describe_target_group_attributes()
        .target_group_arn(tg.target_group_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        attributes
            .attributes()
            .iter()
            .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
            .and_then(|a| a.value()),
        Some("30")
    );

    // Compute.
    let groups = aws
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(names.auto_scaling_group())
        .send()
        .await
        .unwrap();
    let group = &groups.auto_scaling_groups()[0];
    assert_eq!(
        (group.min_size(), group.desired_capacity(), group.max_size()),
        (Some(2), Some(2), Some(4))
    );
    assert_eq!(group.health_check_type(), Some("ELB"));
    assert_eq!(group.health_check_grace_period(), Some(300));
    assert_eq!(
        group.target_group_arns(),
        [tg.target_group_arn().unwrap().to_string()]
    );
    assert_eq!(group.instances().len(), 2);

    let templates = aws
        .ec2
        .describe_launch_templates()
        .filters(tagged(id.as_str()))
        .send()
        .await
        .unwrap();
    let template_id = templates.launch_templates()[0]
        .launch_template_id()
        .unwrap();
    let versions = aws
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(template_id)
        .send()
        .await
        .unwrap();
    let data = versions.launch_template_versions()[0]
        .launch_template_data()
        .unwrap();
    assert_eq!(
        data.metadata_options()
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str()),
        Some("required"),
        "IMDSv2 required"
    );
    assert_eq!(
        data.metadata_options()
            .and_then(|m| m.http_put_response_hop_limit()),
        Some(1),
        "IMDSv2 tokens stop at the instance (hop limit 1)"
    );
    // Detailed monitoring: CPU every minute, which the alarms' two
    // 60-second periods need (basic monitoring sends it every five).
    assert_eq!(
        data.monitoring().and_then(|m| m.enabled()),
        Some(true),
        "detailed monitoring"
    );
    let ebs = data.block_device_mappings()[0].ebs().unwrap();
    assert_eq!(ebs.encrypted(), Some(true));
    assert_eq!(ebs.volume_size(), Some(8));
    let user_data = String::from_utf8(base64_decode(data.user_data().unwrap())).unwrap();
    let artifact = common::artifact();
    assert!(
        user_data.contains(&artifact.sha256),
        "user data checks the artifact's hash"
    );
    assert!(user_data.contains(&names.bucket()));

    // Alarms drive the policies.
    let alarms = aws
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(format!("{}-", names.prefix()))
        .send()
        .await
        .unwrap();
    assert_eq!(alarms.metric_alarms().len(), 2);
    for alarm in alarms.metric_alarms() {
        assert_eq!(alarm.metric_name(), Some("CPUUtilization"));
        assert_eq!(alarm.namespace(), Some("AWS/EC2"));
        assert_eq!(
            (alarm.period(), alarm.evaluation_periods()),
            (Some(60), Some(2))
        );
        assert_eq!(
            alarm.dimensions()[0].value(),
            Some(names.auto_scaling_group().as_str())
        );
        let high = alarm.alarm_name() == Some(&names.high_cpu_alarm());
        assert_eq!(alarm.threshold(), Some(if high { 70.0 } else { 30.0 }));
        let policy = if high {
            names.scale_out_policy()
        } else {
            names.scale_in_policy()
        };
        assert!(
            alarm.alarm_actions()[0].ends_with(&policy),
            "{:?}",
            alarm.alarm_actions()
        );
    }

    // Identity.
    let inline = aws
        .iam
        .get_role_policy()
        .role_name(names.role())
        .policy_name("cloudpulse-instance")
        .send()
        .await
        .unwrap();
    let doc = urlencoding_decode(inline.policy_document());
    assert!(
        doc.contains("cloudwatch:PutMetricData") && doc.contains(&names.bucket()),
        "{doc}"
    );
    // The scoped document (see steps/iam.rs): metrics in our namespace only,
    // reads of this deployment's artifacts only.
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let statements = doc["Statement"].as_array().unwrap();
    let metrics = statements
        .iter()
        .find(|s| s["Action"] == "cloudwatch:PutMetricData")
        .unwrap();
    assert_eq!(
        metrics["Condition"]["StringEquals"]["cloudwatch:namespace"],
        "CloudPulse"
    );
    let artifact_read = statements
        .iter()
        .find(|s| s["Action"] == "s3:GetObject")
        .unwrap();
    assert_eq!(
        artifact_read["Resource"],
        format!("arn:aws:s3:::{}/instance/*", names.bucket())
    );
    let attached = aws
        .iam
        .list_attached_role_policies()
        .role_name(names.role())
        .send()
        .await
        .unwrap();
    assert!(attached
        .attached_policies()
        .iter()
        .any(|p| p.policy_name() == Some("AmazonSSMManagedInstanceCore")));
    let profile = aws
        .iam
        .get_instance_profile()
        .instance_profile_name(names.instance_profile())
        .send()
        .await
        .unwrap();
    assert_eq!(
        profile.instance_profile().unwrap().roles()[0].role_name(),
        names.role()
    );

    // Code delivery.
    let bucket = names.bucket();
    let block = aws
        .s3
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let block = block.public_access_block_configuration().unwrap();
    assert_eq!(block.block_public_acls(), Some(true));
    assert_eq!(block.restrict_public_buckets(), Some(true));
    aws.s3
        .get_bucket_encryption()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let object = aws
        .s3
        .head_object()
        .bucket(&bucket)
        .key(artifact.key())
        .send()
        .await
        .unwrap();
    assert_eq!(
        object.metadata().and_then(|m| m.get("sha256")),
        Some(&artifact.sha256)
    );

    // Every created resource is in the database.
    let recorded = h.engine.store().resources(&id, None).await.unwrap();
    for kind in [
        "vpc",
        "subnet",
        "nat_gateway",
        "elastic_ip",
        "load_balancer",
        "auto_scaling_group",
        "iam_role",
        "s3_bucket",
    ] {
        assert!(
            recorded.iter().any(|r| r.kind == kind),
            "{kind} not recorded"
        );
    }

    // Teardown leaves nothing.
    let teardown = h.teardown(&id).await;
    assert!(teardown.steps.iter().any(|s| s.key == "verify"));
    assert_eq!(inventory::remaining(&aws, &names).await.unwrap(), []);
    let detail = h.engine.store().deployment(&id).await.unwrap();
    assert_eq!(detail.status, DeploymentStatus::TornDown);
    assert!(
        detail.resources.iter().all(|r| r.deleted_at.is_some()),
        "{:?}",
        detail.resources
    );
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// IAM returns policy documents URL-encoded.
fn urlencoding_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
