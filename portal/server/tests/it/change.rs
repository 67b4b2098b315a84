//! Changing a live sandbox deployment through the REST API and the CLI:
//! plans that refuse what they cannot do, an apply that grows the group
//! and one that shrinks it (its instance drained by the data plane), a
//! plan gone stale, and a steady request stream that sees no failure while
//! the size, the NAT mode, the zones and the instance type (with a newer
//! image) change under it.

use crate::common;

use common::*;
use serde_json::{json, Value};

/// The group's desired capacity and its healthy targets, as the portal reads them.
async fn size(url: &str, id: &str) -> (u64, u64) {
    let (status, health) = get_json(&format!("{url}/api/v1/deployments/{id}/health")).await;
    assert_eq!(status, 200, "{health}");
    (
        health["group"]["desired"].as_u64().unwrap(),
        health["healthy_targets"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn a_live_stack_is_planned_applied_and_refused_through_the_api_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let portal = sandbox_at_a_fifth(dir.path(), "change.db");
    let url = portal.url.clone();
    let client = reqwest::Client::new();
    let (id, job) = deploy(&url, json!({ "name": "edit-api", "nat": "single" })).await;
    assert_eq!(wait_job(&client, &url, &job).await["status"], "done");
    let plan_url = format!("{url}/api/v1/deployments/{id}/plan");

    // What it cannot do, each answered with the field and nothing changed.
    for (body, status, code, field) in [
        (
            json!({ "region": "eu-west-1" }),
            422,
            "change_refused",
            "region",
        ),
        (
            json!({ "azs": 3, "nat": "per-az" }),
            422,
            "change_not_supported",
            "nat",
        ),
        (json!({ "desired": 50 }), 400, "validation", "desired"),
        (json!({}), 400, "validation", "form"),
    ] {
        let (got, answer) = post_json(&client, &plan_url, body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
        assert!(
            answer["error"]["fields"][field].is_string(),
            "{body}: {answer}"
        );
    }
    for body in [json!([1]), json!({ "bogus": 1 })] {
        let (got, answer) = post_json(&client, &plan_url, body.clone()).await;
        assert_eq!(
            (got, &answer["error"]["code"]),
            (400, &json!("bad_request")),
            "{body}: {answer}"
        );
    }
    let (missing, _) = get_json(&format!("{url}/api/v1/plans/no-such-plan")).await;
    assert_eq!(missing, 404);

    // The CLI plans a scale-out, names a refused field as it was set, and
    // applies the plan, following its steps.
    let (ok, out, err) = cli(dir.path(), &url, &["plan", &id, "--set", "desired=3"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("auto_scaling_group") && out.contains("desired"),
        "{out}"
    );
    assert!(
        out.contains("update in place") && out.contains("cost $"),
        "{out}"
    );
    let plan_id = out
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().nth(1))
        .map(|p| p.trim_end_matches(';').to_string())
        .expect("the plan id on the last line");
    let (ok, _, err) = cli(
        dir.path(),
        &url,
        &["plan", &id, "--set", "region=eu-west-1"],
    );
    assert!(!ok && err.contains("region=:"), "{err}");
    // No parameter and no newer image: nothing to plan, and it says why.
    let (ok, _, err) = cli(dir.path(), &url, &["plan", &id]);
    assert!(!ok && err.contains("newest Amazon Linux 2023"), "{err}");

    let (ok, out, err) = cli(dir.path(), &url, &["apply", &plan_id, "--wait"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("done    resize_group"), "{out}");
    assert!(out.contains("done    wait_capacity"), "{out}");
    assert_eq!(size(&url, &id).await, (3, 3));

    // Applying it again gives the same job; a plan this deployment never
    // had is not found, and changes nothing.
    let apply_url = format!("{url}/api/v1/deployments/{id}/apply");
    let (status, unknown) =
        post_json(&client, &apply_url, json!({ "plan_id": "no-such-plan" })).await;
    assert_eq!(
        (status, &unknown["error"]["code"]),
        (404, &json!("not_found")),
        "{unknown}"
    );
    let (status, again) = post_json(&client, &apply_url, json!({ "plan_id": plan_id })).await;
    assert_eq!((status, &again["fresh"]), (202, &json!(false)), "{again}");

    // Two plans from one version: the first applied, the second is stale.
    let (_, back) = post_json(&client, &plan_url, json!({ "desired": 2 })).await;
    let (_, rival) = post_json(&client, &plan_url, json!({ "max": 5 })).await;
    let back_id = back["plan"]["id"].as_str().unwrap();
    assert_eq!(back["plan"]["changes"][0]["fields"][0]["before"], 3);
    assert!(
        back["plan"]["changes"][0]["note"]
            .as_str()
            .is_some_and(|n| n.contains("drain")),
        "{back}"
    );
    let (status, accepted) = post_json(&client, &apply_url, json!({ "plan_id": back_id })).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["job"]["kind"], "apply");
    let job = accepted["job"]["id"].as_str().unwrap();
    let done: Value = wait_job(&client, &url, job).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(
        size(&url, &id).await,
        (2, 2),
        "scaled in, the third drained"
    );
    let (status, stale) = post_json(
        &client,
        &apply_url,
        json!({ "plan_id": rival["plan"]["id"] }),
    )
    .await;
    assert_eq!(status, 409, "{stale}");
    assert!(
        stale["error"]["message"]
            .as_str()
            .unwrap()
            .contains("make a new plan"),
        "{stale}"
    );

    let (_, detail) = get_json(&format!("{url}/api/v1/deployments/{id}")).await;
    assert_eq!(detail["status"], "live");
    assert_eq!(detail["params"]["desired"], 2);
    // The page says when the parameters changed, and how.
    let page = reqwest::get(format!("{url}/deployments/{id}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let changes = page
        .split("data-testid=\"param-changes\"")
        .nth(1)
        .and_then(|rest| rest.split("</ul>").next())
        .expect("a list of the parameters' changes");
    assert!(
        changes.contains("desired 2 → 3") && changes.contains("desired 3 → 2"),
        "{changes}"
    );

    assert_eq!(tear_down(&client, &url, &id).await["status"], "done");
    let (status, gone) = post_json(&client, &plan_url, json!({ "desired": 3 })).await;
    assert_eq!(status, 409, "{gone}");
}

/// As AWS publishes a newer Amazon Linux 2023, from one of the
/// deployment's instances.
async fn publish_newer_image(portal: &Portal, id: &str) {
    let endpoint = portal.aws_endpoint.clone().expect("the sandbox's AWS API");
    let instance = instances_of(&portal.url, id).await[0].0.clone();
    cloudpulse_sandbox::publish_newer_image(&endpoint, &instance)
        .await
        .unwrap();
}

/// Requests to `url` every 100 ms until `stop`: (answered 200, all).
fn stream(
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(u32, u32, Vec<String>)> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap();
        let (mut ok, mut all, mut failures) = (0, 0, Vec::new());
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            all += 1;
            match client.get(&url).send().await {
                Ok(answer) if answer.status() == 200 => ok += 1,
                Ok(answer) => failures.push(format!("HTTP {}", answer.status())),
                Err(error) => failures.push(error.to_string()),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        (ok, all, failures)
    })
}

#[tokio::test]
async fn a_steady_stream_sees_no_failure_while_the_stack_changes_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let portal = sandbox_at_a_fifth(dir.path(), "stream.db");
    let url = portal.url.clone();
    let client = reqwest::Client::new();
    let (id, job) = deploy(&url, json!({ "name": "edit-stream" })).await;
    assert_eq!(wait_job(&client, &url, &job).await["status"], "done");
    let (_, detail) = get_json(&format!("{url}/api/v1/deployments/{id}")).await;
    let app = detail["outputs"]["app_url"].as_str().unwrap().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let requests = stream(app, stop.clone());

    let cost_url = format!("{url}/api/v1/deployments/{id}/cost");
    let rate = || async {
        let (_, cost) = get_json(&cost_url).await;
        cost["hourly_usd"].as_f64().unwrap()
    };
    // The rate once the telemetry has seen the deployed instances.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let base = loop {
        let (_, cost) = get_json(&cost_url).await;
        let instances = cost["breakdown"]
            .as_array()
            .unwrap()
            .iter()
            .find(|line| line["category"] == "instances")
            .and_then(|line| line["hourly_usd"].as_f64())
            .unwrap_or(0.0);
        if instances > 0.0 {
            break cost["hourly_usd"].as_f64().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no instance in {cost}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    // Each change, and how the cost view's rate must compare with the
    // stack as deployed once it follows: two instances more, as many as
    // before, one NAT gateway and its address less, as before, a third
    // zone with its gateway and a third instance, as before (the third
    // zone's instance drained first), and larger instances.
    type Follows = fn(f64, f64) -> bool;
    let changes: [(Value, Follows); 7] = [
        (json!({ "desired": 4 }), |now, base| now > base),
        (json!({ "desired": 2 }), |now, base| {
            (now - base).abs() < 1e-6
        }),
        (json!({ "nat": "single" }), |now, base| now < base),
        (json!({ "nat": "per-az" }), |now, base| {
            (now - base).abs() < 1e-6
        }),
        (json!({ "azs": 3, "desired": 3 }), |now, base| now > base),
        (json!({ "azs": 2, "desired": 2 }), |now, base| {
            (now - base).abs() < 1e-6
        }),
        (json!({ "instance_type": "t3.small" }), |now, base| {
            now > base
        }),
    ];
    for (change, follows) in changes {
        let before = instances_of(&url, &id).await;
        let retype = change.get("instance_type").is_some();
        if retype {
            // AWS publishes a newer image first: the same refresh takes both.
            publish_newer_image(&portal, &id).await;
        }
        let (status, plan) = post_json(
            &client,
            &format!("{url}/api/v1/deployments/{id}/plan"),
            change.clone(),
        )
        .await;
        assert_eq!(status, 200, "{change}: {plan}");
        if retype {
            let template = plan["plan"]["changes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["resource_kind"] == "launch_template")
                .unwrap();
            let fields: Vec<&str> = template["fields"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|f| f["field"].as_str())
                .collect();
            assert_eq!(fields, ["instance_type", "image"], "{plan}");
        }
        let (status, accepted) = post_json(
            &client,
            &format!("{url}/api/v1/deployments/{id}/apply"),
            json!({ "plan_id": plan["plan"]["id"] }),
        )
        .await;
        assert_eq!(status, 202, "{change}: {accepted}");
        let done = wait_job(&client, &url, accepted["job"]["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "done", "{change}: {done}");
        if retype {
            // Nothing is left to plan: the instances run the newest image.
            let (status, nothing) = post_json(
                &client,
                &format!("{url}/api/v1/deployments/{id}/plan"),
                json!({}),
            )
            .await;
            assert_eq!(status, 400, "{nothing}");
            let after = instances_of(&url, &id).await;
            assert_eq!(after.len(), 2, "{after:?}");
            assert!(
                after
                    .iter()
                    .all(|(id, t)| t == "t3.small" && !before.iter().any(|(b, _)| b == id)),
                "every instance replaced by a t3.small: {before:?} → {after:?}"
            );
        }
        if let Some(azs) = change.get("azs").and_then(Value::as_u64) {
            // Spread over the zones, none left where the group no longer
            // is (the idle group's scale-in alarm may take one meanwhile).
            let (_, health) = get_json(&format!("{url}/api/v1/deployments/{id}/health")).await;
            let instances = health["group"]["instances"].as_array().unwrap();
            let zones: std::collections::BTreeSet<&str> = instances
                .iter()
                .filter_map(|i| i["availability_zone"].as_str())
                .collect();
            assert_eq!(
                zones.len(),
                instances.len().min(azs as usize),
                "{change}: {health}"
            );
            if azs == 2 {
                assert!(!zones.contains("us-east-1c"), "{change}: {health}");
            }
        }
        let (status, drift) = post_json(
            &client,
            &format!("{url}/api/v1/deployments/{id}/drift"),
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{drift}");
        assert_eq!(
            drift["findings"],
            json!([]),
            "{change}: the stack matches its new parameters"
        );
        // The instances' share follows the telemetry's next poll.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let now = rate().await;
            if follows(now, base) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{change}: the cost view still says ${now}/h against ${base}/h"
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, all, failures) = requests.await.unwrap();
    assert!(all > 50, "the stream ran: {all} requests");
    assert_eq!(
        ok, all,
        "no request failed while the stack changed: {failures:?}"
    );
    assert_eq!(tear_down(&client, &url, &id).await["status"], "done");
}
