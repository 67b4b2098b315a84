//! The engine: starts, runs, resumes and cancels jobs.
//!
//! A job's steps run as soon as their dependencies are done, at most
//! `concurrency` at a time. Every transition is committed to SQLite before
//! and after the AWS calls, so a killed portal resumes a job where it stopped
//! and, because every action adopts what it finds, duplicates nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use cloudpulse_core::ids::{DeploymentId, JobId};
use cloudpulse_core::model::{
    DeploymentStatus, EventKind, JobKind, JobStatus, JobView, OrphanCleanup, OrphanReason,
    OrphanScan, Source, StepFailure, StepStatus,
};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio::task::JoinSet;

use crate::aws::{Aws, Names};
use crate::error::{retry_pause, StepError, StepResult};
use crate::params::{DeploymentParams, FieldErrors};
use crate::plan::{self, StepId, StepKey};
use crate::steps::{self, ArtifactSource, StepCtx, Timings};
use crate::store::{Created, NewDeployment, NewJob, Store, StoreError};
use crate::{inventory, orphans};

mod change;
mod execute;

/// The progress line of a step an injected fault holds after its action.
#[cfg(feature = "fault-injection")]
pub const HELD: &str = "held after its action by an injected fault";

/// How the engine is set up.
#[derive(Clone)]
pub struct EngineConfig {
    pub artifact: ArtifactSource,
    pub timings: Timings,
    /// Steps of one job running at once.
    pub concurrency: usize,
    /// Base delay between retries of a retryable error (doubles, capped).
    pub retry_base: Duration,
    /// How long resumed jobs whose steps were interrupted wait before they
    /// run: a killed process's requests may still be in flight in AWS, and a
    /// step that looked too early would not find what they create.
    pub resume_settle: Duration,
    /// Deploy jobs running at once; more wait, in the order they came, and
    /// their job says so. Teardowns never wait: they stop the spending.
    pub max_concurrent_deploys: usize,
}

/// Deploys that create resources at once unless configured otherwise: each
/// holds a few AWS waits (NAT gateways, a load balancer) and a share of the
/// account's quotas, and a queue is easier to follow than twenty half-made
/// stacks.
pub const DEFAULT_MAX_CONCURRENT_DEPLOYS: usize = 4;

impl EngineConfig {
    /// Short waits, fast retries and no settle time, for tests and
    /// benchmarks against moto: every wait keeps a deadline, sized for a
    /// local fake rather than for AWS.
    pub fn for_tests(artifact: ArtifactSource) -> Self {
        EngineConfig {
            artifact,
            timings: Timings::for_tests(),
            concurrency: 8,
            retry_base: Duration::from_millis(50),
            resume_settle: Duration::ZERO,
            max_concurrent_deploys: DEFAULT_MAX_CONCURRENT_DEPLOYS,
        }
    }
}

/// A change worth telling subscribers about.
#[derive(Clone, Debug, Serialize)]
pub struct JobEvent {
    pub job_id: JobId,
    pub deployment_id: DeploymentId,
    /// The step that changed, or none for the job itself.
    pub step: Option<String>,
    pub status: Progress,
}

/// What happened to a job or one of its steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Progress {
    /// A deploy waits for one of the deploy slots (its job's `waiting` says so).
    Queued,
    Running,
    /// A step failed in a way worth trying again, and waits to.
    Retrying,
    Done,
    Failed,
    Cancelled,
    /// The job's task ended (whatever the job's status): nothing more comes.
    Stopped,
}

impl Progress {
    /// A job's final status as progress.
    pub fn ended(status: JobStatus) -> Self {
        match status {
            JobStatus::Done => Progress::Done,
            JobStatus::Cancelled => Progress::Cancelled,
            JobStatus::Failed | JobStatus::Pending | JobStatus::Running => Progress::Failed,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the parameters are invalid")]
    Validation(FieldErrors),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The deployment is not live, and the request needs one that is.
    #[error("deployment {deployment_id} is {}; {needs}", .status.as_str())]
    NotLive {
        deployment_id: DeploymentId,
        status: DeploymentStatus,
        /// What needed it: "health and chaos actions need a live deployment".
        needs: &'static str,
    },
    /// The request does not fit the deployment's or the job's state now (a
    /// teardown of a torn-down deployment, a retry of a running job).
    #[error("{0}")]
    WrongState(String),
    /// A stored record cannot be read back: the database holds what this
    /// build does not understand.
    #[error("a stored record is unreadable: {0}")]
    Corrupt(String),
    /// A bug in the engine, not a problem of the request or of AWS.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("AWS refused: {0}")]
    Aws(StepError),
    /// A change the live stack cannot take: `code` is `change_refused`
    /// (it needs a teardown) or `change_not_supported` (not applied to a
    /// live stack yet), and each field says what to do.
    #[error("the stack cannot take these changes in place")]
    Refused {
        code: &'static str,
        fields: FieldErrors,
    },
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    sdk: SdkConfig,
    config: EngineConfig,
    clients: Mutex<HashMap<String, Aws>>,
    #[cfg(feature = "fault-injection")]
    faults: crate::faults::Faults,
    running: Mutex<HashSet<JobId>>,
    /// One permit per deploy job that may run now.
    deploy_slots: Arc<tokio::sync::Semaphore>,
    events: broadcast::Sender<JobEvent>,
}

impl Engine {
    pub fn new(store: Store, sdk: SdkConfig, config: EngineConfig) -> Self {
        let deploy_slots = Arc::new(tokio::sync::Semaphore::new(
            config.max_concurrent_deploys.max(1),
        ));
        Engine {
            inner: Arc::new(Inner {
                store,
                sdk,
                config,
                clients: Mutex::new(HashMap::new()),
                #[cfg(feature = "fault-injection")]
                faults: crate::faults::Faults::default(),
                running: Mutex::new(HashSet::new()),
                deploy_slots,
                events: broadcast::channel(1024).0,
            }),
        }
    }

    /// Where tests arm faults.
    #[cfg(feature = "fault-injection")]
    pub fn faults(&self) -> &crate::faults::Faults {
        &self.inner.faults
    }

    /// The configuration every client is built from.
    pub(crate) fn sdk(&self) -> &SdkConfig {
        &self.inner.sdk
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn timings(&self) -> &crate::steps::Timings {
        &self.inner.config.timings
    }

    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.inner.events.subscribe()
    }

    /// Clients for a region, built once and kept (within [`crate::aws::cached`]'s bound).
    pub fn aws(&self, region: &str) -> Aws {
        let mut clients = self.inner.clients.lock().unwrap_or_else(|e| e.into_inner());
        crate::aws::cached(&mut clients, &self.inner.sdk, region)
    }

    /// Validates, records the deployment with its whole plan, starts the job.
    pub async fn deploy(
        &self,
        params: DeploymentParams,
        source: Source,
        idempotency_key: Option<&str>,
    ) -> Result<Created, EngineError> {
        self.deploy_with(params, source, idempotency_key, NewDeployment::default())
            .await
    }

    /// [`Self::deploy`] with a TTL and an origin.
    pub async fn deploy_with(
        &self,
        params: DeploymentParams,
        source: Source,
        idempotency_key: Option<&str>,
        extra: NewDeployment<'_>,
    ) -> Result<Created, EngineError> {
        params.validate().map_err(EngineError::Validation)?;
        let plan = plan::deploy_plan(&params);
        let json =
            serde_json::to_value(&params).map_err(|e| EngineError::Internal(e.to_string()))?;
        let created = self
            .inner
            .store
            .create_deployment_with(
                &params.name,
                &params.region,
                &json,
                NewJob {
                    kind: JobKind::Deploy,
                    source,
                    idempotency_key,
                    steps: &plan,
                },
                extra,
            )
            .await?;
        if created.fresh {
            self.start(&created.job_id, JobKind::Deploy);
        }
        Ok(created)
    }

    /// Starts a teardown of everything the deployment has, or returns the
    /// teardown already under way.
    pub async fn teardown(
        &self,
        deployment_id: &DeploymentId,
        source: Source,
        idempotency_key: Option<&str>,
    ) -> Result<Created, EngineError> {
        let detail = self.inner.store.deployment(deployment_id).await?;
        if detail.status == DeploymentStatus::TornDown {
            return Err(EngineError::WrongState(format!(
                "deployment {} is already torn down",
                detail.name
            )));
        }
        let params: DeploymentParams = serde_json::from_value(detail.params)
            .map_err(|e| EngineError::Corrupt(format!("parameters: {e}")))?;
        let plan = plan::teardown_plan(&params);
        let created = self
            .inner
            .store
            .create_job(
                deployment_id,
                DeploymentStatus::TearingDown,
                NewJob {
                    kind: JobKind::Teardown,
                    source,
                    idempotency_key,
                    steps: &plan,
                },
            )
            .await?;
        if created.fresh {
            self.start(&created.job_id, JobKind::Teardown);
        }
        Ok(created)
    }

    /// Lists every resource in `region` that carries a CloudPulse tag and
    /// belongs to no deployment this database tracks.
    pub async fn scan_orphans(&self, region: &str) -> Result<OrphanScan, EngineError> {
        orphans::scan(&self.aws(region), &self.inner.store)
            .await
            .map_err(|e| match e {
                orphans::OrphanError::Store(e) => EngineError::Store(e),
                orphans::OrphanError::Aws(e) => EngineError::Aws(e),
            })
    }

    /// Starts a teardown for every orphaned deployment in `region`: one
    /// unknown here gets a record again (as `recovered-<id>`), a torn-down
    /// one is reopened; each teardown is an ordinary durable job that ends
    /// by verifying nothing is left.
    pub async fn clean_orphans(
        &self,
        region: &str,
        source: Source,
    ) -> Result<Vec<OrphanCleanup>, EngineError> {
        let scan = self.scan_orphans(region).await?;
        let mut started = Vec::new();
        for orphan in scan.orphans {
            let names = Names::new(&orphan.deployment_id, "");
            let recovered = format!("recovered-{}", names.short);
            let (params, why) = match orphan.reason {
                OrphanReason::Unknown => (
                    // Unknown parameters: the widest plan, whose undos cover
                    // any stack CloudPulse can make.
                    DeploymentParams {
                        name: recovered.clone(),
                        region: region.to_string(),
                        azs: 3,
                        ..Default::default()
                    },
                    format!(
                        "{} resources found in AWS with no record here; recorded as {recovered} to tear them down",
                        orphan.resources.len()
                    ),
                ),
                OrphanReason::TornDown => {
                    let detail = self.inner.store.deployment(&orphan.deployment_id).await?;
                    let params = serde_json::from_value(detail.params).map_err(|e| {
                        EngineError::Corrupt(format!("parameters: {e}"))
                    })?;
                    (
                        params,
                        format!(
                            "{} resources outlived the teardown of {}; reopened as {recovered} to remove them",
                            orphan.resources.len(),
                            detail.name
                        ),
                    )
                }
            };
            let json =
                serde_json::to_value(&params).map_err(|e| EngineError::Internal(e.to_string()))?;
            self.inner
                .store
                .reopen_for_cleanup(&orphan.deployment_id, &recovered, region, &json, &why)
                .await?;
            let created = self.teardown(&orphan.deployment_id, source, None).await?;
            started.push(OrphanCleanup {
                deployment_id: created.deployment_id,
                job_id: created.job_id,
            });
        }
        Ok(started)
    }

    /// Runs a failed job again from its failed steps.
    pub async fn retry(&self, job_id: &JobId, source: Source) -> Result<JobView, EngineError> {
        let job = self.inner.store.job(job_id).await?;
        if job.status != JobStatus::Failed && job.status != JobStatus::Cancelled {
            return Err(EngineError::WrongState(format!(
                "job {job_id} is {}; only a failed or cancelled job can be retried",
                job.status.as_str()
            )));
        }
        self.inner.store.reset_failed_steps(job_id).await?;
        self.requested(&job, "retry", source).await?;
        let status = match job.kind {
            JobKind::Deploy => DeploymentStatus::Deploying,
            JobKind::Teardown => DeploymentStatus::TearingDown,
            // The stack stands and serves while a change is applied.
            JobKind::Apply => DeploymentStatus::Live,
        };
        self.inner
            .store
            .set_deployment_status(&job.deployment_id, status, None)
            .await?;
        self.start(job_id, job.kind);
        Ok(self.inner.store.job(job_id).await?)
    }

    /// Puts "`what` of the … job requested" on the job's timeline.
    async fn requested(
        &self,
        job: &JobView,
        what: &str,
        source: Source,
    ) -> Result<(), EngineError> {
        let message = format!("{what} of the {} job requested", job.kind.as_str());
        self.inner
            .store
            .add_event(
                &job.deployment_id,
                EventKind::Job,
                Some(source.as_str()),
                &message,
            )
            .await?;
        Ok(())
    }

    /// Asks a running job to stop starting new steps.
    pub async fn cancel(&self, job_id: &JobId, source: Source) -> Result<bool, EngineError> {
        let requested = self.inner.store.request_cancel(job_id).await?;
        if requested {
            let job = self.inner.store.job(job_id).await?;
            self.requested(&job, "cancel", source).await?;
        }
        Ok(requested)
    }

    /// Picks up every job a previous process left unfinished.
    pub async fn resume_unfinished(&self) -> Result<Vec<JobId>, EngineError> {
        let jobs = self.inner.store.unfinished_jobs().await?;
        let settle = self.inner.config.resume_settle;
        for job in &jobs {
            let reset = self.inner.store.reset_interrupted_steps(job).await?;
            let kind = self.inner.store.job(job).await?.kind;
            tracing::info!(
                job = job.as_str(),
                interrupted_steps = reset,
                "resuming job"
            );
            if reset == 0 || settle.is_zero() {
                self.start(job, kind);
                continue;
            }
            let engine = self.clone();
            let job = job.clone();
            tracing::info!(
                job = job.as_str(),
                seconds = settle.as_secs_f64(),
                "waiting for the previous run's requests to settle"
            );
            tokio::spawn(async move {
                tokio::time::sleep(settle).await;
                engine.start(&job, kind);
            });
        }
        Ok(jobs)
    }

    /// Waits until a job has finished and returns it.
    pub async fn wait(&self, job_id: &JobId) -> Result<JobView, EngineError> {
        let mut events = self.subscribe();
        loop {
            let job = self.inner.store.job(job_id).await?;
            if job.status.is_finished() && !self.is_running(job_id) {
                return Ok(job);
            }
            // Either an event or a periodic look, whichever comes first.
            let _ = tokio::time::timeout(Duration::from_millis(500), events.recv()).await;
        }
    }
}
