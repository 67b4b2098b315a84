//! How much the deploy DAG saves over doing the steps one at a time.
//!
//! moto finishes NAT gateways and load balancers instantly, which would make
//! both runs equally fast; so each deploy goes through the sandbox's latency
//! gateway, where every NAT gateway stays `pending` and the load balancer
//! `provisioning` for 20 s, as in AWS (where it is minutes).
//!
//! - `dag`: the engine as the portal runs it, up to 8 steps at once.
//! - `sequential`: the same engine with concurrency 1. Ready steps are taken
//!   in plan order, and the plan lists the steps phase by phase (IAM and the
//!   code bucket, then the VPC with its NAT gateways, then security groups
//!   and the load balancer, then compute, then scaling and alarms), so this
//!   is the same steps one by one in dependency order, which is also the
//!   article's order. The run prints the order it actually used.
//!
//! Each run gets a fresh moto and gateway. Run with
//! `cargo run -p cloudpulse-engine --example dag_bench` (needs moto, see
//! `cargo xtask setup` or `CLOUDPULSE_MOTO_PYTHON`).

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudpulse_core::model::{JobStatus, JobView, Source};
use cloudpulse_engine::params::DeploymentParams;
use cloudpulse_engine::steps::{Artifact, ArtifactSource, Timings};
use cloudpulse_engine::{Engine, EngineConfig, Store};
use cloudpulse_sandbox::{Gateway, Latency, MotoServer};

const LATENCY: Latency = Latency {
    nat_pending: Duration::from_secs(20),
    alb_provisioning: Duration::from_secs(20),
};
/// The whole benchmark must finish within this.
const BUDGET: Duration = Duration::from_secs(170);

type BoxError = Box<dyn Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    println!(
        "deploy through the latency gateway: NAT pending {} s, ALB provisioning {} s, poll 1 s",
        LATENCY.nat_pending.as_secs(),
        LATENCY.alb_provisioning.as_secs()
    );
    let runs = tokio::time::timeout(BUDGET, async {
        let dag = deploy("dag", 8).await?;
        let sequential = deploy("sequential", 1).await?;
        Ok::<_, BoxError>((dag, sequential))
    })
    .await
    .map_err(|_| format!("the benchmark took longer than {} s", BUDGET.as_secs()))??;
    let (dag, sequential) = runs;

    println!();
    println!("{:<12} {:>8} {:>12}", "mode", "wall s", "vs sequential");
    for run in [&sequential, &dag] {
        println!(
            "{:<12} {:>8.1} {:>12.2}x",
            run.mode,
            run.wall.as_secs_f64(),
            run.wall.as_secs_f64() / sequential.wall.as_secs_f64()
        );
    }

    println!("\nsequential order: {}", order(&sequential.job).join(" > "));
    println!("\ncritical path of the dag run (start s, took s):");
    for (key, start, took) in critical_path(&dag.job) {
        println!("  {start:>6.1} {took:>6.1}  {key}");
    }
    Ok(())
}

struct Run {
    mode: &'static str,
    wall: Duration,
    job: JobView,
}

async fn deploy(mode: &'static str, concurrency: usize) -> Result<Run, BoxError> {
    let moto = MotoServer::start().await?;
    let gateway = Gateway::start(&moto.endpoint(), LATENCY).await?;
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("engine.db")).await?;
    let engine = Engine::new(
        store,
        gateway.sdk_config(),
        EngineConfig {
            // Longer waits than the tests': the gateway adds AWS-like latency.
            timings: Timings {
                nat: Duration::from_secs(120),
                load_balancer: Duration::from_secs(120),
                healthy: Duration::from_secs(60),
                asg_delete: Duration::from_secs(60),
                poll: Duration::from_secs(1),
                step_deadline: Duration::from_secs(150),
                recovery_poll: Duration::from_secs(1),
            },
            concurrency,
            retry_base: Duration::from_millis(200),
            ..EngineConfig::for_tests(ArtifactSource::Ready(Arc::new(Artifact::new(
                b"#!/bin/sh\necho bench\n".to_vec(),
            ))))
        },
    );
    let params = DeploymentParams {
        name: format!("bench-{mode}"),
        ..Default::default()
    };
    let started = Instant::now();
    let created = engine.deploy(params, Source::Cli, None).await?;
    let job = engine.wait(&created.job_id).await?;
    let wall = started.elapsed();
    if job.status != JobStatus::Done {
        return Err(format!("{mode} deploy ended {:?}: {:?}", job.status, job.error).into());
    }
    println!("  {mode}: {:.1} s", wall.as_secs_f64());
    drop(gateway);
    moto.stop().await;
    Ok(Run { mode, wall, job })
}

/// Step keys in the order they started.
fn order(job: &JobView) -> Vec<String> {
    let mut steps: Vec<_> = job.steps.iter().collect();
    steps.sort_by_key(|s| s.started_at);
    steps.iter().map(|s| s.key.clone()).collect()
}

/// From the last step to finish, back through whichever dependency finished
/// last: the chain that set the job's wall time.
fn critical_path(job: &JobView) -> Vec<(String, f64, f64)> {
    let origin = job.started_at.or(Some(job.created_at));
    type At = Option<chrono::DateTime<chrono::Utc>>;
    let secs = |from: At, to: At| match (from, to) {
        (Some(from), Some(to)) => (to - from).num_milliseconds() as f64 / 1000.0,
        _ => f64::NAN,
    };
    let find = |key: &str| job.steps.iter().find(|s| s.key == key);
    let mut path = Vec::new();
    let mut current = job.steps.iter().max_by_key(|s| s.finished_at);
    while let Some(step) = current {
        path.push((
            step.key.clone(),
            secs(origin, step.started_at),
            secs(step.started_at, step.finished_at),
        ));
        current = step
            .depends_on
            .iter()
            .filter_map(|d| find(d))
            .max_by_key(|s| s.finished_at);
    }
    path.reverse();
    path
}
