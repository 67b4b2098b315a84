//! A sandbox deployment outlives the portal: killed outright or stopped,
//! the portal comes back to the same deployment, its instances serving at the
//! same app URL, and can still tear it down to nothing.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn sandbox(dir: &Path) -> Portal {
    sandbox_at_a_fifth(dir, "restart.db")
}

/// The instances that answer at `app` (waits until two do).
async fn served_by(app: &str) -> BTreeSet<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut served = BTreeSet::new();
    loop {
        if let Ok(response) = client.get(format!("{app}/api/status")).send().await {
            if response.status() == 200 {
                let body: serde_json::Value = response.json().await.unwrap();
                served.insert(body["instanceId"].as_str().unwrap().to_string());
                if served.len() == 2 {
                    return served;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{app} never served two instances: {served:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// moto processes that keep their state in `dir` (their environment says so).
fn motos_of(dir: &Path) -> Vec<u32> {
    let wanted = format!("CLOUDPULSE_MOTO_STATE={}", dir.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            environ
                .split(|b| *b == 0)
                .any(|var| var.starts_with(wanted.as_bytes()))
                .then_some(pid)
        })
        .collect()
}

/// The portal's moto has saved its state and gone.
async fn moto_gone(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !motos_of(dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "moto outlived the portal: {:?}",
            motos_of(dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn closed(app: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while reqwest::get(app).await.is_ok() {
        assert!(Instant::now() < deadline, "{app} still answers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Once `portal` is gone, its instances and its moto are gone too; a new
/// portal on the same database then serves the same `instances` at `app`.
/// Returns that portal and how long it took to serve again.
async fn gone_and_back(
    portal: Portal,
    dir: &Path,
    app: &str,
    instances: &BTreeSet<String>,
) -> (Portal, Duration) {
    drop(portal);
    closed(app).await;
    moto_gone(dir).await;
    let restarted = Instant::now();
    let portal = sandbox(dir);
    assert_eq!(&served_by(app).await, instances);
    (portal, restarted.elapsed())
}

#[tokio::test]
async fn a_restarted_sandbox_finds_its_live_deployment_again() {
    let dir = tempfile::tempdir().unwrap();
    let portal = sandbox(dir.path());
    let client = reqwest::Client::new();
    let (deployment, job) =
        deploy(&portal.url, json!({ "name": "survivor", "nat": "single" })).await;
    assert_eq!(wait_job(&client, &portal.url, &job).await["status"], "done");
    let (_, detail) = get_json(&format!("{}/api/v1/deployments/{deployment}", portal.url)).await;
    let app = detail["outputs"]["app_url"].as_str().unwrap().to_string();
    let instances = served_by(&app).await;
    let (_, health) = get_json(&format!(
        "{}/api/v1/deployments/{deployment}/health",
        portal.url
    ))
    .await;
    let activities = health["activities"].clone();
    assert_eq!(
        activities.as_array().map(Vec::len),
        Some(2),
        "a launch each: {health}"
    );

    // Killed outright: the instances go with the portal...
    let mut portal = portal;
    portal.child.kill().unwrap();
    portal.child.wait().unwrap();
    // ...and a new portal on the same database finds the same deployment,
    // the same instances, at the same address.
    let (portal, after_kill) = gone_and_back(portal, dir.path(), &app, &instances).await;
    let (status, health) = get_json(&format!(
        "{}/api/v1/deployments/{deployment}/health",
        portal.url
    ))
    .await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["group"]["desired"], 2);
    assert_eq!(
        health["activities"], activities,
        "the gateway's record kept the scaling activities"
    );
    // Kept with moto's state, private as it is.
    for record in ["gateway-record.json", "gateway-clocks.json"] {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join("restart-moto").join(record);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }

    // Stopped the polite way, the same.
    let pid = portal.child.id().to_string();
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(stopped.success());
    let mut portal = portal;
    let deadline = Instant::now() + Duration::from_secs(30);
    while portal.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the portal did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (portal, after_stop) = gone_and_back(portal, dir.path(), &app, &instances).await;

    // It can still be torn down to nothing.
    assert_nothing_remains(&tear_down(&client, &portal.url, &deployment).await);
    closed(&app).await;
    drop(portal);
    moto_gone(dir.path()).await;
    eprintln!("serving again {after_kill:?} after a restart from kill -9, {after_stop:?} after one from SIGTERM");
}

#[tokio::test]
async fn a_kill_during_an_instance_refresh_resumes_it_and_replaces_each_instance_once() {
    let dir = tempfile::tempdir().unwrap();
    let portal = sandbox(dir.path());
    let client = reqwest::Client::new();
    let (deployment, job) =
        deploy(&portal.url, json!({ "name": "refreshed", "nat": "single" })).await;
    assert_eq!(wait_job(&client, &portal.url, &job).await["status"], "done");
    let (_, detail) = get_json(&format!("{}/api/v1/deployments/{deployment}", portal.url)).await;
    let app = detail["outputs"]["app_url"].as_str().unwrap().to_string();
    let before = instances_of(&portal.url, &deployment).await;
    assert_eq!(before.len(), 2, "{before:?}");

    let base = format!("{}/api/v1/deployments/{deployment}", portal.url);
    let (status, plan) = post_json(
        &client,
        &format!("{base}/plan"),
        json!({ "instance_type": "t3.small" }),
    )
    .await;
    assert_eq!(status, 200, "{plan}");
    let (status, accepted) = post_json(
        &client,
        &format!("{base}/apply"),
        json!({ "plan_id": plan["plan"]["id"] }),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let apply = accepted["job"]["id"].as_str().unwrap().to_string();
    // Killed once the refresh is under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, job) = get_json(&format!("{}/api/v1/jobs/{apply}", portal.url)).await;
        let refreshing = job["steps"].as_array().unwrap().iter().any(|s| {
            s["key"] == "instance_refresh"
                && s["progress"].as_str().is_some_and(|p| p.contains("% done"))
        });
        if refreshing {
            break;
        }
        assert!(Instant::now() < deadline, "no refresh under way: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut portal = portal;
    portal.child.kill().unwrap();
    portal.child.wait().unwrap();
    drop(portal);
    closed(&app).await;
    moto_gone(dir.path()).await;

    let portal = sandbox(dir.path());
    let done = wait_job(&client, &portal.url, &apply).await;
    assert_eq!(done["status"], "done", "{done}");
    let after = instances_of(&portal.url, &deployment).await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after
            .iter()
            .all(|(id, t)| t == "t3.small" && !before.iter().any(|(b, _)| b == id)),
        "each instance replaced by a t3.small: {before:?} → {after:?}"
    );
    // One refresh, taken up again rather than started twice, and one launch
    // for each instance replaced.
    let endpoint = portal.aws_endpoint.clone().expect("the sandbox's AWS API");
    let asg = aws_sdk_autoscaling::Client::new(&cloudpulse_sandbox::sdk_config(&endpoint));
    let names = cloudpulse_engine::aws::Names::new(
        &cloudpulse_app::ids::DeploymentId::from(deployment.clone()),
        "refreshed",
    );
    let refreshes = asg
        .describe_instance_refreshes()
        .auto_scaling_group_name(names.auto_scaling_group())
        .send()
        .await
        .unwrap();
    let statuses: Vec<&str> = refreshes
        .instance_refreshes()
        .iter()
        .filter_map(|r| r.status().map(|s| s.as_str()))
        .collect();
    assert_eq!(statuses, ["Successful"]);
    let activities = asg
        .describe_scaling_activities()
        .auto_scaling_group_name(names.auto_scaling_group())
        .send()
        .await
        .unwrap();
    let launches = activities
        .activities()
        .iter()
        .filter(|a| a.description().is_some_and(|d| d.starts_with("Launching")))
        .count();
    assert_eq!(launches, 4, "two at the deploy, one for each replaced");
    assert_nothing_remains(&tear_down(&client, &portal.url, &deployment).await);
}
