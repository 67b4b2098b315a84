//! A fault at every step of the deploy: retryable faults are retried to
//! success with the attempts visible; a fatal fault fails the job with the
//! AWS code, message and a hint, after which both a retry (to live) and a
//! teardown (to nothing left) work.

use crate::common;

use cloudpulse_core::model::{DeploymentStatus, JobStatus, Source, StepStatus};
use cloudpulse_engine::faults::Fault;
use cloudpulse_engine::inventory;
use cloudpulse_engine::plan::deploy_plan;
use common::{assert_done, harness, params};

/// Runs `scenario` for every deploy step, a few at a time.
async fn for_every_step<F, Fut>(scenario: F)
where
    F: Fn(usize, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let keys: Vec<String> = deploy_plan(&params("x"))
        .into_iter()
        .map(|s| s.key.to_string())
        .collect();
    assert!(keys.len() >= 25, "{keys:?}");
    for (chunk_index, chunk) in keys.chunks(6).enumerate() {
        let runs = chunk
            .iter()
            .enumerate()
            .map(|(i, key)| scenario(chunk_index * 6 + i, key.clone()));
        futures_util::future::join_all(runs).await;
    }
}

#[tokio::test]
async fn a_retryable_fault_at_any_step_is_retried_to_success() {
    let h = harness().await;
    for_every_step(|i, key| {
        let h = &h;
        async move {
            let name = format!("retry-{i}");
            h.engine.faults().arm(&name, &key, Fault::Retryable, 2);
            let (_, job) = h.deploy(params(&name)).await;
            let step = job.steps.iter().find(|s| s.key == key).unwrap();
            assert_eq!(
                step.attempts, 3,
                "{key}: two injected failures, then success"
            );
            assert_eq!(
                step.error.as_ref().map(|e| e.code.as_str()),
                Some("Throttling"),
                "{key}"
            );
            assert_eq!(step.status, StepStatus::Done);
        }
    })
    .await;
}

#[tokio::test]
async fn a_fatal_fault_at_any_step_fails_and_both_recoveries_work() {
    let h = harness().await;
    let aws = h.aws();
    for_every_step(|i, key| {
        let (h, aws) = (&h, &aws);
        async move {
            // Path 1: fail, then retry to live, then tear down.
            let name = format!("fatal-{i}");
            h.engine.faults().arm(&name, &key, Fault::Fatal, 1);
            let created = h
                .engine
                .deploy(params(&name), Source::Api, None)
                .await
                .unwrap();
            let job = h.engine.wait(&created.job_id).await.unwrap();
            assert_eq!(job.status, JobStatus::Failed, "{key}");
            let failed = job.steps.iter().find(|s| s.key == key).unwrap();
            assert_eq!(failed.status, StepStatus::Failed, "{key}");
            let error = failed.error.as_ref().unwrap();
            assert_eq!(error.code, "UnauthorizedOperation");
            assert!(error.message.contains("not authorized"));
            assert!(
                error
                    .hint
                    .as_deref()
                    .unwrap_or("")
                    .contains("operator policy"),
                "{key}: {error:?}"
            );
            assert!(job.error.as_deref().unwrap().contains(&key));
            let detail = h
                .engine
                .store()
                .deployment(&created.deployment_id)
                .await
                .unwrap();
            assert_eq!(detail.status, DeploymentStatus::Failed);

            h.engine.retry(&created.job_id, Source::Api).await.unwrap();
            let job = h.engine.wait(&created.job_id).await.unwrap();
            assert_done(&job);
            let detail = h
                .engine
                .store()
                .deployment(&created.deployment_id)
                .await
                .unwrap();
            assert_eq!(detail.status, DeploymentStatus::Live, "{key}");
            h.teardown(&created.deployment_id).await;

            // Path 2: fail, then tear down what exists.
            let name = format!("fatal-down-{i}");
            h.engine.faults().arm(&name, &key, Fault::Fatal, 1);
            let created = h
                .engine
                .deploy(params(&name), Source::Api, None)
                .await
                .unwrap();
            let job = h.engine.wait(&created.job_id).await.unwrap();
            assert_eq!(job.status, JobStatus::Failed, "{key}");
            h.teardown(&created.deployment_id).await;
            let names = h.names(&created.deployment_id).await;
            assert_eq!(
                inventory::remaining(aws, &names).await.unwrap(),
                [],
                "{key}"
            );
            let detail = h
                .engine
                .store()
                .deployment(&created.deployment_id)
                .await
                .unwrap();
            assert_eq!(detail.status, DeploymentStatus::TornDown);
        }
    })
    .await;
}
