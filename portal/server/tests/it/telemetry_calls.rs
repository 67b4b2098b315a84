//! The portal's own AWS bill: a live deployment's telemetry stays within
//! twelve AWS calls a (sandbox) minute, and reads its metrics at most once
//! a minute, counted by the sandbox gateway every call goes through.

use std::collections::BTreeMap;
use std::sync::Arc;

use cloudpulse_app::model::Source;
use cloudpulse_engine::steps::{Artifact, ArtifactSource};
use cloudpulse_engine::{Engine, EngineConfig, Store};
use cloudpulse_sandbox::{Gateway, Latency, MotoServer};
use cloudpulse_telemetry::{Telemetry, TelemetryConfig};

/// Twenty times AWS's pace: a minute lasts 3 s.
const SCALE: f64 = 0.05;
/// Sandbox minutes the calls are counted over.
const MINUTES: u32 = 5;

/// The portal's flags at their defaults.
#[derive(clap::Parser)]
struct Flags {
    #[command(flatten)]
    serve: cloudpulse_server::config::ServeArgs,
}

fn total(calls: &BTreeMap<String, u64>) -> u64 {
    calls.values().sum()
}

fn since(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(action, n)| (action.clone(), n - before.get(action).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_deployment_costs_at_most_twelve_calls_a_minute() {
    let moto = MotoServer::start().await.expect("start moto");
    let gateway = Gateway::start(&moto.endpoint(), Latency::default())
        .await
        .expect("start gateway");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("portal.db")).await.unwrap();
    let artifact = Arc::new(Artifact::new(b"#!/bin/sh\necho calls\n".to_vec()));
    let engine = Engine::new(
        store,
        gateway.operator_sdk_config(),
        EngineConfig::for_tests(ArtifactSource::Ready(artifact)),
    );
    let created = engine
        .deploy(
            cloudpulse_engine::params::DeploymentParams {
                name: "calls".into(),
                ..Default::default()
            },
            Source::Api,
            None,
        )
        .await
        .unwrap();
    let job = engine.wait(&created.job_id).await.unwrap();
    assert_eq!(job.status.as_str(), "done", "{:?}", job.error);

    // The portal's own cadence on the sandbox's clock, as `cloudpulse
    // sandbox --time-scale 0.05` sets it.
    let args = <Flags as clap::Parser>::parse_from(["cloudpulse"]).serve;
    let config: TelemetryConfig = args.telemetry(SCALE);
    let minute = config.minutes(1);
    let telemetry = Telemetry::new(engine.clone(), config).await.unwrap();
    let task = telemetry.spawn();
    // Let the first polls (and the first DescribeInstances) pass.
    tokio::time::sleep(minute).await;
    let before = gateway.calls();
    tokio::time::sleep(minute * MINUTES).await;
    let counted = since(&before, &gateway.calls());
    task.abort();

    let calls = total(&counted);
    assert!(
        calls <= 12 * u64::from(MINUTES),
        "{calls} calls in {MINUTES} minutes: {counted:?}"
    );
    let metric_reads = counted.get("GetMetricData").copied().unwrap_or(0);
    assert!(
        (1..=u64::from(MINUTES) + 1).contains(&metric_reads),
        "GetMetricData at most once a minute: {counted:?}"
    );
    eprintln!("{calls} calls in {MINUTES} sandbox minutes: {counted:?}");
    moto.stop().await;
}
