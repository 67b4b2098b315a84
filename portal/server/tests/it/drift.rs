//! Drift on a live sandbox deployment, through the REST API and the CLI:
//! a rule added, a bound moved and a launch-template version of another
//! type made behind the portal's back (through the sandbox's own AWS API)
//! are found by the portal on its own, the list shows a badge, a rule
//! cannot be accepted, the bound can, and a repair takes the rule away and
//! makes a version of the parameters' type.

use crate::common;

use aws_sdk_ec2::types::{IpPermission, IpRange};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The drift report once it holds `count` findings.
async fn findings(url: &str, id: &str, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, report) = get_json(&format!("{url}/api/v1/deployments/{id}/drift")).await;
        assert_eq!(status, 200, "{report}");
        if report["findings"].as_array().unwrap().len() == count {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "no {count} findings in time: {report}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn id_of<'a>(report: &'a Value, field: &str) -> &'a str {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == field)
        .and_then(|f| f["id"].as_str())
        .unwrap_or_else(|| panic!("no {field} finding: {report}"))
}

/// What the launch template's latest version launches.
async fn latest_version(
    ec2: &aws_sdk_ec2::Client,
    template: &str,
) -> aws_sdk_ec2::types::ResponseLaunchTemplateData {
    ec2.describe_launch_template_versions()
        .launch_template_id(template)
        .versions("$Latest")
        .send()
        .await
        .unwrap()
        .launch_template_versions()[0]
        .launch_template_data()
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn drift_is_found_by_the_portal_shown_accepted_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    // A full check every sandbox minute: 12 s here.
    let portal = sandbox_at_a_fifth_with(
        dir.path(),
        "drift.db",
        &[("CLOUDPULSE_DRIFT_MINUTES", "1".to_string())],
    );
    let url = portal.url.clone();
    let client = reqwest::Client::new();
    let (id, job) = deploy(&url, json!({ "name": "drift-api" })).await;
    assert_eq!(wait_job(&client, &url, &job).await["status"], "done");
    let drift_url = format!("{url}/api/v1/deployments/{id}/drift");
    let (status, checked) = post_json(&client, &drift_url, Value::Null).await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(checked["findings"], json!([]), "{checked}");
    assert!(checked["checked_at"].is_string(), "{checked}");

    // Behind the portal's back, as in the console.
    let endpoint = portal
        .aws_endpoint
        .clone()
        .expect("the sandbox names its AWS API");
    let sdk = cloudpulse_sandbox::sdk_config(&endpoint);
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let asg = aws_sdk_autoscaling::Client::new(&sdk);
    let (_, detail) = get_json(&format!("{url}/api/v1/deployments/{id}")).await;
    let names = cloudpulse_engine::aws::Names::new(
        &cloudpulse_app::ids::DeploymentId::from(id.clone()),
        detail["name"].as_str().unwrap(),
    );
    let groups = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values(names.app_security_group())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let app = groups.security_groups()[0].group_id().unwrap().to_string();
    ec2.authorize_security_group_ingress()
        .group_id(&app)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    asg.update_auto_scaling_group()
        .auto_scaling_group_name(names.auto_scaling_group())
        .max_size(5)
        .send()
        .await
        .unwrap();
    let template = ec2
        .describe_launch_templates()
        .launch_template_names(names.launch_template())
        .send()
        .await
        .unwrap()
        .launch_templates()[0]
        .launch_template_id()
        .unwrap()
        .to_string();
    let image = latest_version(&ec2, &template)
        .await
        .image_id()
        .map(str::to_string);
    ec2.create_launch_template_version()
        .launch_template_id(&template)
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .set_image_id(image)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Small)
                .build(),
        )
        .send()
        .await
        .unwrap();

    // The poll sees the bound, the periodic check the rule and the type.
    let report = findings(&url, &id, 3).await;
    assert!(
        report.to_string().contains(r#""actual":"t3.small""#),
        "{report}"
    );
    let rule = id_of(&report, "ingress").to_string();
    let max = id_of(&report, "max").to_string();
    assert_eq!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == max.as_str())
            .map(|f| (
                f["expected"].clone(),
                f["actual"].clone(),
                f["acceptable"].clone()
            )),
        Some((json!("4"), json!("5"), json!(true))),
        "{report}"
    );
    let (_, list) = get_json(&format!("{url}/api/v1/deployments")).await;
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id.as_str())
        .unwrap();
    assert_eq!(listed["drift"], 3, "{listed}");
    let (_, events) = get_json(&format!("{url}/api/v1/deployments/{id}/events")).await;
    assert!(
        events.to_string().contains("drift found: security_group"),
        "{events}"
    );

    // The CLI shows both, with what to do.
    let (ok, out, err) = cli(dir.path(), &url, &["drift", &id]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains(&rule) && out.contains(&max), "{out}");
    assert!(out.contains("tcp 22 from 0.0.0.0/0"), "{out}");
    assert!(out.contains(&format!("--accept {max}")), "{out}");

    // Bad input changes nothing.
    let accept_url = format!("{drift_url}/accept");
    for (body, status, code) in [
        (json!({}), 400, "bad_request"),
        (json!({ "findings": ["nope"] }), 422, "drift_not_accepted"),
        (
            json!({ "findings": [rule.clone()] }),
            422,
            "drift_not_accepted",
        ),
    ] {
        let (got, answer) = post_json(&client, &accept_url, body.clone()).await;
        assert_eq!(
            (got, &answer["error"]["code"]),
            (status, &json!(code)),
            "{body}: {answer}"
        );
    }
    let (ok, _, err) = cli(dir.path(), &url, &["drift", &id, "--accept", &rule]);
    assert!(!ok && err.contains("cannot say this"), "{err}");
    let (_, detail) = get_json(&format!("{url}/api/v1/deployments/{id}")).await;
    assert_eq!(detail["params"]["max"], 4);

    let (ok, out, err) = cli(dir.path(), &url, &["drift", &id, "--accept", &max]);
    assert!(ok, "{out}\n{err}");
    let (_, detail) = get_json(&format!("{url}/api/v1/deployments/{id}")).await;
    assert_eq!(detail["params"]["max"], 5, "accepted into the parameters");

    let (ok, out, err) = cli(dir.path(), &url, &["drift", &id, "--repair", "--wait"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("done    security_groups"), "{out}");
    assert!(out.contains("done    template_version"), "{out}");
    assert!(out.contains("done    instance_refresh"), "{out}");
    assert_eq!(
        latest_version(&ec2, &template)
            .await
            .instance_type()
            .map(|t| t.as_str()),
        Some("t3.micro"),
        "a new version with the parameters' type"
    );
    let (ok, out, _) = cli(dir.path(), &url, &["drift", &id]);
    assert!(ok && out.starts_with("no drift"), "{out}");
    let (status, nothing) = post_json(&client, &format!("{drift_url}/repair"), Value::Null).await;
    assert_eq!(status, 409, "{nothing}");
}
