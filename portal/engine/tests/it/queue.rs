//! Deploys beyond `max_concurrent_deploys` wait their turn, saying so, and
//! start when a slot frees; a cancel ends a queued one without a step.

use std::time::Duration;

use crate::common;

use cloudpulse_core::model::{JobStatus, Source, StepStatus};
use cloudpulse_engine::faults::Fault;
use cloudpulse_engine::steps::ArtifactSource;
use cloudpulse_engine::{Engine, EngineConfig, Store};
use common::params;

/// A strict sandbox and an engine that runs one deploy at a time.
async fn one_at_a_time() -> (common::Harness, Engine, tempfile::TempDir) {
    let h = common::harness().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("queue.db")).await.unwrap();
    let engine = Engine::new(
        store,
        h.gateway().sdk_config(),
        EngineConfig {
            max_concurrent_deploys: 1,
            ..EngineConfig::for_tests(ArtifactSource::Ready(common::artifact()))
        },
    );
    (h, engine, dir)
}

/// Starts a deploy that holds the one slot: its VPC step never ends.
async fn hold_the_slot(engine: &Engine) {
    engine
        .faults()
        .arm("holder", "vpc", Fault::HoldAfterAction, 1);
    engine
        .deploy(params("holder"), Source::Api, None)
        .await
        .unwrap();
}

/// Polls `job_id` until `done` holds of it, for at most a minute.
async fn until(
    engine: &Engine,
    job_id: &cloudpulse_core::ids::JobId,
    what: &str,
    done: impl Fn(&cloudpulse_core::model::JobView) -> bool,
) -> cloudpulse_core::model::JobView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let job = engine.store().job(job_id).await.unwrap();
        if done(&job) {
            return job;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {job:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_deploy_beyond_the_limit_waits_saying_so_and_runs_when_a_slot_frees() {
    let (_h, engine, _dir) = one_at_a_time().await;
    // The first deploy fails at its VPC step, after the second has queued.
    engine.faults().arm("first", "vpc", Fault::Fatal, 1);
    let first = engine
        .deploy(params("first"), Source::Api, None)
        .await
        .unwrap();
    let second = engine
        .deploy(params("second"), Source::Api, None)
        .await
        .unwrap();

    // The first took the only slot when it was created, so the second
    // waits: pending, no step started, and its job says why.
    let queued = engine.store().job(&second.job_id).await.unwrap();
    assert_eq!(queued.status, JobStatus::Pending);
    assert!(queued.steps.iter().all(|s| s.status == StepStatus::Pending));

    let failed = engine.wait(&first.job_id).await.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    let ran = until(&engine, &second.job_id, "the second deploy runs", |j| {
        j.steps.iter().any(|s| s.status != StepStatus::Pending)
    })
    .await;
    assert_eq!(ran.waiting, None, "the note goes once it runs");
    let events = engine
        .store()
        .events(&second.deployment_id, 100)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "job" && e.message.contains("--max-concurrent-deploys")),
        "the timeline says it was queued: {events:?}"
    );
    engine.cancel(&second.job_id, Source::Api).await.unwrap();
    engine.wait(&second.job_id).await.unwrap();
}

#[tokio::test]
async fn a_queued_deploy_says_why_and_a_cancel_ends_it_without_a_step() {
    let (_h, engine, _dir) = one_at_a_time().await;
    hold_the_slot(&engine).await;
    let queued = engine
        .deploy(params("queued"), Source::Api, None)
        .await
        .unwrap();
    let job = until(&engine, &queued.job_id, "the job says it waits", |j| {
        j.waiting.is_some()
    })
    .await;
    let waiting = job.waiting.unwrap();
    assert!(
        waiting.contains("1 deploy is under way") && waiting.contains("--max-concurrent-deploys"),
        "{waiting}"
    );
    assert_eq!(job.status, JobStatus::Pending);

    engine.cancel(&queued.job_id, Source::Api).await.unwrap();
    let ended = engine.wait(&queued.job_id).await.unwrap();
    assert_eq!(ended.status, JobStatus::Cancelled);
    assert!(
        ended.steps.iter().all(|s| s.started_at.is_none()),
        "no step ran: {:?}",
        ended.steps
    );
    assert_eq!(ended.waiting, None);
}

#[tokio::test]
async fn teardowns_never_wait_for_a_deploy_slot() {
    let (h, engine, _dir) = one_at_a_time().await;
    let _ = h;
    let done = engine
        .deploy(params("done"), Source::Api, None)
        .await
        .unwrap();
    common::assert_done(&engine.wait(&done.job_id).await.unwrap());
    hold_the_slot(&engine).await;
    let teardown = engine
        .teardown(&done.deployment_id, Source::Api, None)
        .await
        .unwrap();
    common::assert_done(&engine.wait(&teardown.job_id).await.unwrap());
}
