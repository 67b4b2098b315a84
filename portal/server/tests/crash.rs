//! A portal killed with SIGKILL in the middle of a deploy resumes the job
//! when it starts again, and the cloud ends up with exactly one of everything.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use cloudpulse_sandbox::{Gateway, Latency, MotoServer};
use common::*;
use serde_json::{json, Value};

async fn job(url: &str, id: &str) -> Value {
    get_json(&format!("{url}/api/v1/jobs/{id}")).await.1
}

fn serve(dir: &std::path::Path, endpoint: &str) -> Portal {
    let artifact = dir.join("cloudpulse-instance");
    std::fs::write(&artifact, b"#!/bin/sh\necho test instance\n").unwrap();
    start(
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database",
            dir.join("crash.db").to_str().unwrap(),
            "--instance-binary",
            artifact.to_str().unwrap(),
        ],
        dir,
        &[("AWS_ENDPOINT_URL", endpoint.to_string())],
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
    let client = reqwest::Client::new();
    let accepted: Value = client
        .post(format!("{}/api/v1/deployments", portal.url))
        .json(&json!({ "name": "crash-test" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = accepted["job"]["id"].as_str().unwrap().to_string();
    let deployment = accepted["deployment"]["id"].as_str().unwrap().to_string();

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
