//! The budget guard in the sandbox, at a fifth of AWS's time: a TTL that
//! runs out and a cost cap that is reached each tear their deployment down
//! with nothing left; extend moves the deadline; a bad change changes
//! nothing; redeploy makes an equal deployment that links back; an idle
//! deployment is flagged; and a portal stopped across a deadline acts on it
//! when it starts again, saying how late.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;
use serde_json::{json, Value};

/// A sandbox minute lasts this many real seconds.
const MINUTE_SECS: f64 = 12.0;

fn sandbox(dir: &Path, database: &str) -> Portal {
    sandbox_at_a_fifth_with(
        dir,
        database,
        &[("CLOUDPULSE_IDLE_MINUTES", "1".to_string())],
    )
}

async fn patch(client: &reqwest::Client, url: &str, id: &str, body: Value) -> (u16, Value) {
    let response = client
        .patch(format!("{url}/api/v1/deployments/{id}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn detail(url: &str, id: &str) -> Value {
    let (status, body) = get_json(&format!("{url}/api/v1/deployments/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

/// The smallest TTL (sandbox minutes from creation) that ends at least
/// `margin` real seconds from now.
fn ttl_ending_soon(created: DateTime<Utc>, margin: f64) -> u64 {
    let age = (Utc::now() - created).num_milliseconds() as f64 / 1000.0;
    ((age + margin) / MINUTE_SECS).ceil() as u64
}

/// Waits for the deployment to be torn down by a job of `source` (three
/// minutes at most); returns that job.
async fn torn_down_by(client: &reqwest::Client, url: &str, id: &str, source: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let d = detail(url, id).await;
        if let Some(job) = d["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["kind"] == "teardown")
        {
            assert_eq!(job["source"], source, "{job}");
            let done = wait_job(client, url, job["id"].as_str().unwrap()).await;
            assert_nothing_remains(&done);
            assert_eq!(detail(url, id).await["status"], "torn_down");
            return done;
        }
        assert!(Instant::now() < deadline, "never torn down: {d}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn budget_events(url: &str, id: &str) -> Vec<String> {
    detail(url, id).await["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "budget")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

async fn list_row(url: &str, id: &str) -> Value {
    let (_, page) = get_json(&format!("{url}/api/v1/deployments?per_page=100")).await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn ttl_cost_cap_extend_redeploy_and_idle() {
    let dir = tempfile::tempdir().unwrap();
    let portal = sandbox(dir.path(), "budget.db");
    let url = portal.url.clone();
    let client = reqwest::Client::new();

    // Invalid budgets create nothing.
    let (status, body) = post_json(
        &client,
        &format!("{url}/api/v1/deployments"),
        json!({ "name": "bad-budget", "ttl_minutes": 999_999, "cost_cap_usd": -1 }),
    )
    .await;
    assert_eq!(status, 400);
    let fields = &body["error"]["fields"];
    assert!(fields["ttl_minutes"].is_string(), "{body}");
    assert!(fields["cost_cap_usd"].is_string(), "{body}");

    let (ttl_id, ttl_job) = deploy(
        &url,
        json!({ "name": "ttl-demo", "nat": "single", "ttl_minutes": 0 }),
    )
    .await;
    let (cap_id, cap_job) = deploy(
        &url,
        json!({ "name": "cap-demo", "nat": "single", "cost_cap_usd": 50 }),
    )
    .await;
    // No TTL given: the sandbox's default of four hours.
    let (keep_id, keep_job) = deploy(&url, json!({ "name": "keep-demo", "nat": "single" })).await;
    for job in [&ttl_job, &cap_job, &keep_job] {
        assert_eq!(wait_job(&client, &url, job).await["status"], "done");
    }
    let keep = detail(&url, &keep_id).await;
    assert_eq!(keep["budget"]["ttl_minutes"], 240);
    assert_eq!(keep["params"]["ttl_minutes"], 240);
    let created = time(&keep["created_at"]);
    let expires = time(&keep["budget"]["expires_at"]);
    assert_eq!(
        (expires - created).num_seconds(),
        (240.0 * MINUTE_SECS) as i64
    );
    assert!(detail(&url, &ttl_id).await["budget"]["expires_at"].is_null());

    // A change that cannot hold changes nothing and says why, per field.
    let (status, body) = patch(&client, &url, &keep_id, json!({ "ttl_minutes": 0.5 })).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = patch(
        &client,
        &url,
        &ttl_id,
        json!({ "ttl_minutes": 1, "cost_cap_usd": 0.000001 }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let fields = &body["error"]["fields"];
    assert!(
        fields["ttl_minutes"].as_str().unwrap().contains("at least"),
        "{body}"
    );
    assert!(
        fields["cost_cap_usd"].as_str().unwrap().contains("accrued"),
        "{body}"
    );
    let (status, body) = patch(&client, &url, &ttl_id, json!({ "extend_minutes": 30 })).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["fields"]["extend_minutes"]
        .as_str()
        .unwrap()
        .contains("no TTL"));
    let unchanged = detail(&url, &ttl_id).await;
    assert!(unchanged["budget"]["expires_at"].is_null(), "{unchanged}");
    assert!(unchanged["budget"]["cost_cap_usd"].is_null(), "{unchanged}");

    // Extend moves the deadline by an hour of the sandbox's clock.
    let (status, extended) = patch(&client, &url, &keep_id, json!({ "extend_minutes": 60 })).await;
    assert_eq!(status, 200, "{extended}");
    assert_eq!(extended["budget"]["ttl_minutes"], 300);
    let moved = time(&extended["budget"]["expires_at"]) - expires;
    assert_eq!(moved.num_seconds(), (60.0 * MINUTE_SECS) as i64);
    assert!(budget_events(&url, &keep_id).await[0].contains("TTL extended to 5 h"));
    // The command line does the same through the API, and says what it set.
    let out = run_to_end(
        &["budget", &keep_id, "--extend", "30", "--portal", &url],
        dir.path(),
    );
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("ttl 330 min, tears down at"), "{said}");
    let out = run_to_end(&["budget", &keep_id, "--portal", &url], dir.path());
    assert!(one_line_error(&out).contains("nothing to change"));
    let out = run_to_end(
        &["budget", &keep_id, "--ttl-minutes", "1", "--portal", &url],
        dir.path(),
    );
    assert!(
        one_line_error(&out).contains("--ttl-minutes: a TTL of 1 min"),
        "{out:?}"
    );
    assert_eq!(detail(&url, &keep_id).await["budget"]["ttl_minutes"], 330);

    // The list flags a deployment nobody uses, with what it costs a day,
    // and stops once something asks its load balancer.
    let idle = {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let row = list_row(&url, &keep_id).await;
            if !row["idle"].is_null() {
                break row["idle"].clone();
            }
            assert!(Instant::now() < deadline, "never flagged idle: {row}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let daily = idle["daily_usd"].as_f64().unwrap();
    assert!((2.0..5.0).contains(&daily), "{idle}");
    let app = keep["outputs"]["app_url"].as_str().unwrap().to_string();
    let busy_until = Instant::now() + Duration::from_secs(90);
    loop {
        for _ in 0..20 {
            let _ = client.get(&app).send().await;
        }
        if list_row(&url, &keep_id).await["idle"].is_null() {
            break;
        }
        assert!(
            Instant::now() < busy_until,
            "still flagged idle while serving"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A TTL that runs out, and a cap that is reached, tear down.
    let ttl_created = time(&detail(&url, &ttl_id).await["created_at"]);
    let minutes = ttl_ending_soon(ttl_created, 3.0);
    let (status, body) = patch(&client, &url, &ttl_id, json!({ "ttl_minutes": minutes })).await;
    assert_eq!(status, 200, "{body}");
    let cost: Value = get_json(&format!("{url}/api/v1/deployments/{cap_id}/cost"))
        .await
        .1;
    let cap = cost["accrued_usd"].as_f64().unwrap() + 0.0002;
    let (status, body) = patch(&client, &url, &cap_id, json!({ "cost_cap_usd": cap })).await;
    assert_eq!(status, 200, "{body}");
    torn_down_by(&client, &url, &ttl_id, "ttl").await;
    torn_down_by(&client, &url, &cap_id, "cost_cap").await;
    let why = budget_events(&url, &ttl_id).await;
    assert!(why[0].contains("ran out"), "{why:?}");
    assert!(!why[0].contains("late"), "{why:?}");
    let why = budget_events(&url, &cap_id).await;
    assert!(why[0].contains("reached the cap"), "{why:?}");
    let spent = get_json(&format!("{url}/api/v1/deployments/{cap_id}/cost"))
        .await
        .1;
    assert!(spent["accrued_usd"].as_f64().unwrap() >= cap, "{spent}");
    // A torn-down deployment has no budget to change.
    let (status, _) = patch(&client, &url, &ttl_id, json!({ "ttl_minutes": 600 })).await;
    assert_eq!(status, 409);

    // Redeploy: refused while it stands, then equal parameters and a link.
    let redeploy = format!("{url}/api/v1/deployments/{keep_id}/redeploy");
    let (status, _) = post_json(&client, &redeploy, Value::Null).await;
    assert_eq!(status, 409);
    tear_down(&client, &url, &keep_id).await;
    // Through the command line, which follows the job to the end.
    let out = run_to_end(
        &["redeploy", &keep_id, "--wait", "--portal", &url],
        dir.path(),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(said.contains("live at http://"), "{said}");
    let again = said
        .split_whitespace()
        .nth(1)
        .expect("the new deployment's id")
        .to_string();
    assert_ne!(again, keep_id);
    let new = detail(&url, &again).await;
    let old = detail(&url, &keep_id).await;
    assert_eq!(new["status"], "live");
    assert_eq!(new["params"], old["params"]);
    assert_eq!(new["redeployed_from"]["id"], keep_id);
    assert_eq!(old["redeployed_as"][0]["id"], again.as_str());
    assert_eq!(
        list_row(&url, &again).await["redeployed_from"]["name"],
        "keep-demo"
    );

    // Its own teardown leaves nothing either.
    let done = tear_down(&client, &url, &again).await;
    assert_eq!(done["status"], "done", "{done}");
}

#[tokio::test]
async fn a_deadline_passed_while_the_portal_was_down_is_acted_on_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let portal = sandbox(dir.path(), "late.db");
    let client = reqwest::Client::new();
    let (id, job) = deploy(
        &portal.url,
        json!({ "name": "late-demo", "nat": "single", "ttl_minutes": 0 }),
    )
    .await;
    assert_eq!(wait_job(&client, &portal.url, &job).await["status"], "done");
    let created = time(&detail(&portal.url, &id).await["created_at"]);
    // Ends a sandbox minute or two from now; the portal is gone before then.
    let minutes = ttl_ending_soon(created, MINUTE_SECS);
    let (status, body) = patch(&client, &portal.url, &id, json!({ "ttl_minutes": minutes })).await;
    assert_eq!(status, 200, "{body}");
    let expires = time(&body["budget"]["expires_at"]);
    let mut portal = portal;
    portal.child.kill().unwrap();
    portal.child.wait().unwrap();
    drop(portal);
    assert!(
        Utc::now() < expires,
        "the deadline passed before the portal stopped"
    );

    // Down across the deadline, and ten seconds more.
    let wait = (expires - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(10);
    tokio::time::sleep(wait).await;
    let portal = sandbox(dir.path(), "late.db");
    torn_down_by(&client, &portal.url, &id, "ttl").await;
    let why = budget_events(&portal.url, &id).await;
    assert!(why[0].contains("ran out"), "{why:?}");
    assert!(why[0].contains(" late "), "it should say how late: {why:?}");
}
