//! A portal killed with SIGKILL in the middle of a deploy resumes the job
//! when it starts again, and the cloud ends up with exactly one of everything.

use crate::common;

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use cloudpulse_sandbox::{Gateway, Latency, MotoServer};
use common::*;
use serde_json::{json, Value};

async fn job(url: &str, id: &str) -> Value {
    get_json(&format!("{url}/api/v1/jobs/{id}")).await.1
}

fn serve(dir: &std::path::Path, endpoint: &str) -> Portal {
    serve_with(dir, endpoint, &[])
}

fn serve_with(dir: &std::path::Path, endpoint: &str, env: &[(&str, String)]) -> Portal {
    let artifact = dir.join("cloudpulse-instance");
    std::fs::write(&artifact, b"#!/bin/sh\necho test instance\n").unwrap();
    start(
        &on_free_port(
            "serve",
            &dir.join("crash.db"),
            &["--instance-binary", artifact.to_str().unwrap()],
        ),
        dir,
        &[&[("AWS_ENDPOINT_URL", endpoint.to_string())], env].concat(),
    )
}

async fn count(ec2: &aws_sdk_ec2::Client, deployment: &str) -> (usize, usize, usize, usize) {
    let tag = || {
        Filter::builder()
            .name("tag:cloudpulse:deployment")
            .values(deployment)
            .build()
    };
    let vpcs = ec2
        .describe_vpcs()
        .filters(tag())
        .send()
        .await
        .unwrap()
        .vpcs()
        .len();
    let subnets = ec2
        .describe_subnets()
        .filters(tag())
        .send()
        .await
        .unwrap()
        .subnets()
        .len();
    let eips = ec2
        .describe_addresses()
        .filters(tag())
        .send()
        .await
        .unwrap()
        .addresses()
        .len();
    // Counted by tag client-side: moto ignores tag filters on this call.
    let nats = ec2
        .describe_nat_gateways()
        .send()
        .await
        .unwrap()
        .nat_gateways()
        .iter()
        .filter(|g| g.tags().iter().any(|t| t.value() == Some(deployment)))
        .count();
    (vpcs, subnets, eips, nats)
}

#[tokio::test]
async fn a_killed_portal_resumes_the_deploy_without_duplicates() {
    let moto = MotoServer::start().await.unwrap();
    // NAT gateways stay pending for a while, so the kill lands mid-step.
    let gateway = Gateway::start(
        &moto.endpoint(),
        Latency {
            nat_pending: Duration::from_secs(4),
            alb_provisioning: Duration::from_secs(2),
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut portal = serve(dir.path(), &gateway.endpoint());
    let (deployment, job_id) = deploy(&portal.url, json!({ "name": "crash-test" })).await;

    // Wait until a NAT gateway step is running, then kill without warning.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = job(&portal.url, &job_id).await;
        let nat_running = job["steps"].as_array().unwrap().iter().any(|s| {
            s["key"].as_str().unwrap().starts_with("nat_gateway") && s["status"] == "running"
        });
        if nat_running {
            break;
        }
        assert!(Instant::now() < deadline, "no NAT step started: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    portal.child.kill().unwrap();
    portal.child.wait().unwrap();

    // Start again on the same database: the job resumes and finishes.
    let portal = serve(dir.path(), &gateway.endpoint());
    let deadline = Instant::now() + Duration::from_secs(120);
    let finished = loop {
        let job = job(&portal.url, &job_id).await;
        if job["status"] != "running" && job["status"] != "pending" {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "job did not finish after restart: {job}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(finished["status"], "done", "{finished}");
    let (_, detail) = get_json(&format!("{}/api/v1/deployments/{deployment}", portal.url)).await;
    assert_eq!(detail["status"], "live");

    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    assert_eq!(
        count(&ec2, &deployment).await,
        (1, 4, 2, 2),
        "exactly one VPC, four subnets, two EIPs, two NAT gateways"
    );
}

#[tokio::test]
async fn a_kill_during_heavy_writes_loses_no_job_and_leaves_the_database_whole() {
    let moto = MotoServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut portal = serve(dir.path(), &moto.endpoint());
    let client = reqwest::Client::new();

    // Four deploys at once, one NAT gateway each: every step of every job
    // writes to SQLite. Deploys pass their preflight one at a time, each
    // seeing what the ones before it made, so together they must fit
    // moto's quotas (five VPCs, the default one among them).
    let requests = (0..4).map(|i| {
        client
            .post(format!("{}/api/v1/deployments", portal.url))
            .json(&json!({ "name": format!("load-{i}"), "nat": "single" }))
            .send()
    });
    let mut accepted = Vec::new();
    for response in futures_util::future::join_all(requests).await {
        let response = response.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 202, "{body}");
        accepted.push(body["job"]["id"].as_str().unwrap().to_string());
    }
    // Kill while the jobs are writing step after step.
    tokio::time::sleep(Duration::from_millis(700)).await;
    portal.child.kill().unwrap();
    portal.child.wait().unwrap();

    let store = cloudpulse_engine::Store::open(&dir.path().join("crash.db"))
        .await
        .unwrap();
    let (verdict,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(
            &cloudpulse_engine::store::connect(store.path(), 1)
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(verdict, "ok");
    for job in &accepted {
        let view = store
            .job(&job.as_str().into())
            .await
            .expect("every accepted job is still there");
        assert_eq!(view.steps.len(), 27, "with its whole plan");
    }
    store.close().await;

    // And a restart finishes all of them.
    let portal = serve(dir.path(), &moto.endpoint());
    let deadline = Instant::now() + Duration::from_secs(180);
    for id in &accepted {
        loop {
            let view = job(&portal.url, id).await;
            if view["status"] == "done" {
                break;
            }
            assert!(view["status"] != "failed", "{view}");
            assert!(Instant::now() < deadline, "{view}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

async fn wait_done(url: &str, job_id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let job = job(url, job_id).await;
        if job["status"] == "done" {
            return job;
        }
        assert!(job["status"] != "failed", "{job}");
        assert!(Instant::now() < deadline, "job did not finish: {job}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The crash points' deployments share one moto, and each deploy's preflight
/// counts what stands there against AWS's default quotas (5 VPCs, 5 Elastic
/// IPs): one NAT gateway each, and each torn down once counted, keeps three
/// at a time within them.
const CRASH_NAT: &str = "single";

/// Every resource of a deployment that moto holds, counted by kind.
async fn census(
    sdk: &aws_config::SdkConfig,
    id: &str,
    name: &str,
) -> std::collections::BTreeMap<String, usize> {
    let aws = cloudpulse_engine::aws::Aws::new(sdk, "us-east-1");
    let names = cloudpulse_engine::aws::Names::new(&id.into(), name);
    let mut kinds = std::collections::BTreeMap::new();
    for left in cloudpulse_engine::inventory::remaining(&aws, &names)
        .await
        .unwrap()
    {
        *kinds.entry(left.kind).or_insert(0) += 1;
    }
    kinds
}

/// One crash point: the portal dies with SIGKILL right after step `step`'s
/// action did its work in AWS and before the step was recorded as done.
/// Returns how long the restarted portal took to finish the job.
async fn crash_at(
    moto: &MotoServer,
    step: &str,
    index: usize,
    expected: &std::collections::BTreeMap<String, usize>,
) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("crash-{index}");
    let faults = format!("{name}/{step}=hold");
    let mut portal = serve_with(
        dir.path(),
        &moto.endpoint(),
        &[("CLOUDPULSE_TEST_FAULTS", faults)],
    );
    let (deployment, job_id) = deploy(&portal.url, json!({ "name": name, "nat": CRASH_NAT })).await;
    wait_held(&portal.url, &job_id, step).await;
    portal.child.kill().unwrap();
    portal.child.wait().unwrap();

    let restarted = Instant::now();
    let portal = serve(dir.path(), &moto.endpoint());
    wait_done(&portal.url, &job_id, Duration::from_secs(120)).await;
    let recovery = restarted.elapsed();
    let found = census(&moto.sdk_config(), &deployment, &name).await;
    if &found != expected {
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
        let tables = ec2
            .describe_route_tables()
            .filters(
                Filter::builder()
                    .name("tag:cloudpulse:deployment")
                    .values(&deployment)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let job = job(&portal.url, &job_id).await;
        panic!(
            "after a crash at {step}: {found:?} != {expected:?}\n{:#?}\n{job:#}",
            tables.route_tables()
        );
    }
    tear_down(&portal.url, &deployment).await;
    recovery
}

/// Waits until the injected fault holds step `step` of the job after its
/// action, the moment the test kills the portal.
async fn wait_held(url: &str, job_id: &str, step: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let job = job(url, job_id).await;
        let held = job["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["key"] == step && s["progress"] == cloudpulse_engine::runner::HELD);
        if held {
            return;
        }
        assert!(Instant::now() < deadline, "step {step} never held: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Tears a counted deployment down, making room for the next ones.
async fn tear_down(url: &str, deployment: &str) {
    let done = common::tear_down(&reqwest::Client::new(), url, deployment).await;
    assert_eq!(done["status"], "done", "{done}");
}

#[tokio::test]
async fn a_kill_at_every_step_of_the_deploy_resumes_and_duplicates_nothing() {
    let moto = MotoServer::start().await.unwrap();

    // The census of a deploy nobody interrupted is what every crash must reach.
    let dir = tempfile::tempdir().unwrap();
    let portal = serve(dir.path(), &moto.endpoint());
    let (deployment, job_id) = deploy(
        &portal.url,
        json!({ "name": "undisturbed", "nat": CRASH_NAT }),
    )
    .await;
    wait_done(&portal.url, &job_id, Duration::from_secs(120)).await;
    let expected = census(&moto.sdk_config(), &deployment, "undisturbed").await;
    assert!(expected.len() >= 15, "a whole stack: {expected:?}");
    tear_down(&portal.url, &deployment).await;
    drop(portal);

    let steps: Vec<String> =
        cloudpulse_engine::plan::deploy_dag(&cloudpulse_engine::params::DeploymentParams {
            nat: cloudpulse_engine::params::NatMode::Single,
            ..Default::default()
        })
        .into_iter()
        .map(|(key, _)| key.to_string())
        .collect();
    // Three crash points at a time keep the run short on two cores.
    let mut slowest = (Duration::ZERO, String::new());
    for (batch, chunk) in steps.chunks(3).enumerate() {
        let runs = chunk
            .iter()
            .enumerate()
            .map(|(i, step)| crash_at(&moto, step, batch * 3 + i, &expected));
        for (step, recovery) in chunk.iter().zip(futures_util::future::join_all(runs).await) {
            if recovery > slowest.0 {
                slowest = (recovery, step.clone());
            }
        }
    }
    println!(
        "{} crash points; slowest recovery {:.1} s (after a crash at {})",
        steps.len(),
        slowest.0.as_secs_f64(),
        slowest.1
    );
}

#[tokio::test]
async fn a_kill_during_an_apply_resumes_it_and_makes_nothing_twice() {
    let moto = MotoServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = "crash-apply";
    let mut portal = serve_with(
        dir.path(),
        &moto.endpoint(),
        &[(
            "CLOUDPULSE_TEST_FAULTS",
            format!("{name}/resize_group=hold"),
        )],
    );
    let (deployment, job_id) = deploy(&portal.url, json!({ "name": name, "nat": CRASH_NAT })).await;
    wait_done(&portal.url, &job_id, Duration::from_secs(120)).await;
    let before = census(&moto.sdk_config(), &deployment, name).await;
    let client = reqwest::Client::new();
    let base = format!("{}/api/v1/deployments/{deployment}", portal.url);
    let (status, plan) = post_json(&client, &format!("{base}/plan"), json!({ "desired": 3 })).await;
    assert_eq!(status, 200, "{plan}");
    let (status, accepted) = post_json(
        &client,
        &format!("{base}/apply"),
        json!({ "plan_id": plan["plan"]["id"] }),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let apply = accepted["job"]["id"].as_str().unwrap().to_string();
    wait_held(&portal.url, &apply, "resize_group").await;
    portal.child.kill().unwrap();
    portal.child.wait().unwrap();

    let portal = serve(dir.path(), &moto.endpoint());
    let done = wait_done(&portal.url, &apply, Duration::from_secs(120)).await;
    let resized = step(&done, "resize_group");
    assert_eq!(
        resized["attempts"], 2,
        "run again after the restart: {done}"
    );
    let mut after = census(&moto.sdk_config(), &deployment, name).await;
    let mut grown = before.clone();
    *grown.entry("instance".to_string()).or_insert(0) += 1;
    after.retain(|_, n| *n > 0);
    assert_eq!(after, grown, "one instance more, nothing else");
    let (_, detail) = get_json(&format!("{}/api/v1/deployments/{deployment}", portal.url)).await;
    assert_eq!(
        (&detail["status"], &detail["params"]["desired"]),
        (&json!("live"), &json!(3))
    );
    tear_down(&portal.url, &deployment).await;
}

#[tokio::test]
async fn after_a_lost_database_the_orphan_scan_finds_the_stack_and_deletes_it() {
    let moto = MotoServer::start().await.unwrap();
    let first = tempfile::tempdir().unwrap();
    let portal = serve(first.path(), &moto.endpoint());
    let (deployment, job_id) =
        deploy(&portal.url, json!({ "name": "forgotten", "nat": "per-az" })).await;
    wait_done(&portal.url, &job_id, Duration::from_secs(120)).await;
    drop(portal);
    drop(first); // The database is gone, the stack is not.

    let second = tempfile::tempdir().unwrap();
    let portal = serve(second.path(), &moto.endpoint());
    let cli = |args: &[&str]| {
        let mut command = std::process::Command::new(BIN);
        command.args(args).env("CLOUDPULSE_URL", &portal.url);
        isolated(&mut command, second.path());
        command.output().unwrap()
    };

    let (status, scan) = get_json(&format!("{}/api/v1/orphans", portal.url)).await;
    assert_eq!(status, 200, "{scan}");
    assert_eq!(scan["region"], "us-east-1");
    let orphans = scan["orphans"].as_array().unwrap();
    assert_eq!(orphans.len(), 1, "{scan}");
    assert_eq!(orphans[0]["deployment_id"], deployment.as_str());
    assert_eq!(orphans[0]["reason"], "unknown");
    assert!(scan["hourly_usd"].as_f64().unwrap() > 0.1, "{scan}");

    let (status, error) = get_json(&format!("{}/api/v1/orphans?region=mars", portal.url)).await;
    assert_eq!(status, 400, "{error}");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("us-east-1"));

    let listed = cli(&["orphans"]);
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{stdout}");
    assert!(
        stdout.contains(&deployment) && stdout.contains("unknown to this portal"),
        "{stdout}"
    );
    assert!(
        stdout.contains("nat_gateway") && stdout.contains("remove them with --delete"),
        "{stdout}"
    );

    let deleted = cli(&["orphans", "--delete"]);
    let stdout = String::from_utf8_lossy(&deleted.stdout);
    assert!(
        deleted.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert!(stdout.contains("done    verify"), "{stdout}");
    assert!(census(&moto.sdk_config(), &deployment, "").await.is_empty());
    let again = cli(&["orphans"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("no orphans in us-east-1"));
}
