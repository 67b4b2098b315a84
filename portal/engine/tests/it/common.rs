//! Shared set-up for the engine's tests: a real moto behind the sandbox
//! gateway, as strict and as slow as AWS at a hundredth of its pace, and a
//! real SQLite file.

use std::sync::Arc;
use std::time::Duration;

pub use cloudpulse_core::ids::DeploymentId;
use cloudpulse_core::model::{JobStatus, JobView, Source};
use cloudpulse_engine::aws::{Aws, Names};
use cloudpulse_engine::params::DeploymentParams;
use cloudpulse_engine::steps::{Artifact, ArtifactSource};
use cloudpulse_engine::{Engine, EngineConfig, Store};
use cloudpulse_sandbox::{Disruption, Gateway, Latency, MotoServer, Strictness};

/// The clock the engine's tests run the strict sandbox on: AWS's figures
/// at a hundredth (a NAT gateway `pending` 0.9 s, a load balancer's
/// interfaces lingering 1.2 s, an instance profile refused 0.1 s).
pub const TIME_SCALE: f64 = 0.01;

pub struct Harness {
    /// Kept for the harness's lifetime: dropping it stops moto.
    #[allow(dead_code)]
    pub moto: MotoServer,
    /// The strict gateway the engine talks through, when the harness made it.
    pub gateway: Option<Gateway>,
    pub engine: Engine,
    /// The account as its administrator and AWS's own services see it
    /// (the sandbox's service identity, allowed everything), for what a
    /// test looks at or does behind the portal's back; the engine signs as
    /// the operator, with the operator policy only.
    pub world: aws_config::SdkConfig,
    pub _dir: tempfile::TempDir,
}

pub fn artifact() -> Arc<Artifact> {
    Arc::new(Artifact::new(
        b"#!/bin/sh\necho cloudpulse test artifact\n".to_vec(),
    ))
}

/// The sandbox with every AWS behaviour on, at [`TIME_SCALE`].
pub async fn harness() -> Harness {
    strict_harness(
        Strictness::AWS.scaled(TIME_SCALE),
        Duration::from_secs(90).mul_f64(TIME_SCALE),
    )
    .await
}

/// A harness whose gateway is exactly as strict as `strictness`, with load
/// balancers `provisioning` for `alb_provisioning`.
pub async fn strict_harness(strictness: Strictness, alb_provisioning: Duration) -> Harness {
    let moto = MotoServer::start().await.expect("start moto");
    let latency = Latency {
        nat_pending: Duration::ZERO,
        alb_provisioning,
    };
    let gateway =
        Gateway::start_strict(&moto.endpoint(), latency, strictness, Disruption::default())
            .await
            .expect("start the gateway");
    gateway.faithful().set_time_scale(TIME_SCALE);
    let mut h = harness_on(moto, gateway.operator_sdk_config()).await;
    h.gateway = Some(gateway);
    h
}

/// A harness whose engine talks to AWS through `sdk` (a gateway, say).
pub async fn harness_on(moto: MotoServer, sdk: aws_config::SdkConfig) -> Harness {
    let world = cloudpulse_sandbox::sdk_config(sdk.endpoint_url().expect("a sandbox endpoint"));
    let (engine, dir) = engine_on(sdk).await;
    Harness {
        moto,
        gateway: None,
        engine,
        world,
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
    /// The gateway [`strict_harness`] made.
    pub fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().expect("a harness with a gateway")
    }

    /// The step `key` of `job`.
    pub fn step<'a>(job: &'a JobView, key: &str) -> &'a cloudpulse_core::model::StepView {
        job.steps.iter().find(|s| s.key == key).unwrap_or_else(|| {
            panic!(
                "no step {key} in {:?}",
                job.steps.iter().map(|s| &s.key).collect::<Vec<_>>()
            )
        })
    }

    /// Clients that see the whole account ([`Harness::world`]).
    pub fn aws(&self) -> Aws {
        Aws::new(&self.world, "us-east-1")
    }

    /// Deploys and waits; panics with the job's errors unless it is done.
    pub async fn deploy(&self, params: DeploymentParams) -> (DeploymentId, JobView) {
        let created = self
            .engine
            .deploy(params, Source::Api, None)
            .await
            .expect("deploy accepted");
        let job = self.engine.wait(&created.job_id).await.unwrap();
        assert_done(&job);
        (created.deployment_id, job)
    }

    pub async fn teardown(&self, deployment_id: &DeploymentId) -> JobView {
        let created = self
            .engine
            .teardown(deployment_id, Source::Api, None)
            .await
            .expect("teardown accepted");
        let job = self.engine.wait(&created.job_id).await.unwrap();
        assert_done(&job);
        job
    }

    pub async fn names(&self, deployment_id: &DeploymentId) -> Names {
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
