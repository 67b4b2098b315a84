//! Shared set-up for the engine's tests: a real moto, a real SQLite file.

use std::sync::Arc;

use cloudpulse_core::model::{JobStatus, JobView, Source};
use cloudpulse_engine::aws::{Aws, Names};
use cloudpulse_engine::params::DeploymentParams;
use cloudpulse_engine::steps::{Artifact, ArtifactSource};
use cloudpulse_engine::{Engine, EngineConfig, Store};
use cloudpulse_sandbox::MotoServer;

pub struct Harness {
    pub moto: MotoServer,
    pub engine: Engine,
    pub _dir: tempfile::TempDir,
}

pub fn artifact() -> Arc<Artifact> {
    Arc::new(Artifact::new(
        b"#!/bin/sh\necho cloudpulse test artifact\n".to_vec(),
    ))
}

pub async fn harness() -> Harness {
    let moto = MotoServer::start().await.expect("start moto");
    let sdk = moto.sdk_config();
    harness_on(moto, sdk).await
}

/// A harness whose engine talks to AWS through `sdk` (a gateway, say).
pub async fn harness_on(moto: MotoServer, sdk: aws_config::SdkConfig) -> Harness {
    let (engine, dir) = engine_on(sdk).await;
    Harness {
        moto,
        engine,
        _dir: dir,
    }
}

/// An engine with a database of its own, talking to AWS through `sdk`.
pub async fn engine_on(sdk: aws_config::SdkConfig) -> (Engine, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("engine.db")).await.unwrap();
    let engine = Engine::new(
        store,
        sdk,
        EngineConfig::for_tests(ArtifactSource::Ready(artifact())),
    );
    (engine, dir)
}

pub fn params(name: &str) -> DeploymentParams {
    DeploymentParams {
        name: name.into(),
        ..Default::default()
    }
}

impl Harness {
    pub fn aws(&self) -> Aws {
        self.engine.aws("us-east-1")
    }

    /// Deploys and waits; panics with the job's errors unless it is done.
    pub async fn deploy(&self, params: DeploymentParams) -> (String, JobView) {
        let created = self
            .engine
            .deploy(params, Source::Api, None)
            .await
            .expect("deploy accepted");
        let job = self.engine.wait(&created.job_id).await.unwrap();
        assert_done(&job);
        (created.deployment_id, job)
    }

    pub async fn teardown(&self, deployment_id: &str) -> JobView {
        let created = self
            .engine
            .teardown(deployment_id, Source::Api, None)
            .await
            .expect("teardown accepted");
        let job = self.engine.wait(&created.job_id).await.unwrap();
        assert_done(&job);
        job
    }

    pub async fn names(&self, deployment_id: &str) -> Names {
        let detail = self.engine.store().deployment(deployment_id).await.unwrap();
        Names::new(deployment_id, &detail.name)
    }
}

pub fn assert_done(job: &JobView) {
    let problems: Vec<String> = job
        .steps
        .iter()
        .filter(|s| s.error.is_some() && s.status != cloudpulse_core::model::StepStatus::Done)
        .map(|s| format!("{} {:?}: {:?}", s.key, s.status, s.error))
        .collect();
    assert_eq!(
        job.status,
        JobStatus::Done,
        "job {} {:?}: {:?} {problems:#?}",
        job.id,
        job.kind,
        job.error
    );
}
