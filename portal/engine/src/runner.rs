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
use cloudpulse_core::model::{
    DeploymentStatus, JobKind, JobStatus, JobView, OrphanCleanup, OrphanReason, OrphanScan, Source,
    StepFailure, StepStatus,
};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio::task::JoinSet;

use crate::aws::{Aws, Names};
use crate::error::{StepError, StepResult};
use crate::params::{DeploymentParams, FieldErrors};
use crate::plan::{self, StepId, StepKey};
use crate::steps::{self, ArtifactSource, StepCtx, Timings};
use crate::store::{Created, NewDeployment, NewJob, Store, StoreError};
use crate::{inventory, orphans};

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
}

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
        }
    }
}

/// A change worth telling subscribers about.
#[derive(Clone, Debug, Serialize)]
pub struct JobEvent {
    pub job_id: String,
    pub deployment_id: String,
    /// The step that changed, or none for the job itself.
    pub step: Option<String>,
    pub status: String,
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
        deployment_id: String,
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
    running: Mutex<HashSet<String>>,
    events: broadcast::Sender<JobEvent>,
}

impl Engine {
    pub fn new(store: Store, sdk: SdkConfig, config: EngineConfig) -> Self {
        Engine {
            inner: Arc::new(Inner {
                store,
                sdk,
                config,
                clients: Mutex::new(HashMap::new()),
                #[cfg(feature = "fault-injection")]
                faults: crate::faults::Faults::default(),
                running: Mutex::new(HashSet::new()),
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

    /// Clients for a region, built once.
    pub fn aws(&self, region: &str) -> Aws {
        let mut clients = self.inner.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(region.to_string())
            .or_insert_with(|| Aws::new(&self.inner.sdk, region))
            .clone()
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
            self.start(&created.job_id);
        }
        Ok(created)
    }

    /// Starts a teardown of everything the deployment has, or returns the
    /// teardown already under way.
    pub async fn teardown(
        &self,
        deployment_id: &str,
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
            self.start(&created.job_id);
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
    pub async fn retry(&self, job_id: &str, source: Source) -> Result<JobView, EngineError> {
        let job = self.inner.store.job(job_id).await?;
        if job.status != JobStatus::Failed && job.status != JobStatus::Cancelled {
            return Err(EngineError::WrongState(format!(
                "job {job_id} is {}; only a failed or cancelled job can be retried",
                job.status.as_str()
            )));
        }
        self.inner.store.reset_failed_steps(job_id).await?;
        self.inner
            .store
            .add_event(
                &job.deployment_id,
                "job",
                Some(source.as_str()),
                &format!("retry of the {} job requested", job.kind.as_str()),
            )
            .await?;
        let status = match job.kind {
            JobKind::Deploy => DeploymentStatus::Deploying,
            JobKind::Teardown => DeploymentStatus::TearingDown,
        };
        self.inner
            .store
            .set_deployment_status(&job.deployment_id, status, None)
            .await?;
        self.start(job_id);
        Ok(self.inner.store.job(job_id).await?)
    }

    /// Asks a running job to stop starting new steps.
    pub async fn cancel(&self, job_id: &str, source: Source) -> Result<bool, EngineError> {
        let requested = self.inner.store.request_cancel(job_id).await?;
        if requested {
            let job = self.inner.store.job(job_id).await?;
            self.inner
                .store
                .add_event(
                    &job.deployment_id,
                    "job",
                    Some(source.as_str()),
                    &format!("cancel of the {} job requested", job.kind.as_str()),
                )
                .await?;
        }
        Ok(requested)
    }

    /// Picks up every job a previous process left unfinished.
    pub async fn resume_unfinished(&self) -> Result<Vec<String>, EngineError> {
        let jobs = self.inner.store.unfinished_jobs().await?;
        let settle = self.inner.config.resume_settle;
        for job in &jobs {
            let reset = self.inner.store.reset_interrupted_steps(job).await?;
            tracing::info!(job, interrupted_steps = reset, "resuming job");
            if reset == 0 || settle.is_zero() {
                self.start(job);
                continue;
            }
            let engine = self.clone();
            let job = job.clone();
            tracing::info!(
                job,
                seconds = settle.as_secs_f64(),
                "waiting for the previous run's requests to settle"
            );
            tokio::spawn(async move {
                tokio::time::sleep(settle).await;
                engine.start(&job);
            });
        }
        Ok(jobs)
    }

    /// Waits until a job has finished and returns it.
    pub async fn wait(&self, job_id: &str) -> Result<JobView, EngineError> {
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

    fn is_running(&self, job_id: &str) -> bool {
        self.inner
            .running
            .lock()
            .map(|r| r.contains(job_id))
            .unwrap_or(false)
    }

    /// Spawns the job unless this process is already running it.
    fn start(&self, job_id: &str) {
        {
            let mut running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
            if !running.insert(job_id.to_string()) {
                return;
            }
        }
        let engine = self.clone();
        let job_id = job_id.to_string();
        tokio::spawn(async move {
            if let Err(error) = engine.run(&job_id).await {
                tracing::error!(job = %job_id, %error, "job stopped by an internal error");
                let _ = engine
                    .inner
                    .store
                    .set_job_status(&job_id, JobStatus::Failed, Some(&error.to_string()))
                    .await;
            }
            if let Ok(mut running) = engine.inner.running.lock() {
                running.remove(&job_id);
            }
            engine.emit(&job_id, "", None, "finished");
        });
    }

    fn emit(&self, job_id: &str, deployment_id: &str, step: Option<&str>, status: &str) {
        let _ = self.inner.events.send(JobEvent {
            job_id: job_id.to_string(),
            deployment_id: deployment_id.to_string(),
            step: step.map(str::to_string),
            status: status.to_string(),
        });
    }

    async fn run(&self, job_id: &str) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let (deployment_id, params) = store.job_deployment(job_id).await?;
        let params: DeploymentParams = serde_json::from_value(params)
            .map_err(|e| EngineError::Corrupt(format!("parameters: {e}")))?;
        let names = Names::new(&deployment_id, &params.name);
        let aws = self.aws(&params.region);
        store
            .set_job_status(job_id, JobStatus::Running, None)
            .await?;
        self.emit(job_id, &deployment_id, None, "running");

        let mut tasks: JoinSet<(String, StepResult<Value>)> = JoinSet::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut failed = false;
        loop {
            let job = store.job(job_id).await?;
            let status: HashMap<&str, StepStatus> = job
                .steps
                .iter()
                .map(|s| (s.key.as_str(), s.status))
                .collect();
            failed |= job.steps.iter().any(|s| s.status == StepStatus::Failed);
            let stop_launching = failed || job.cancel_requested;
            if !stop_launching {
                let ready: Vec<_> = job
                    .steps
                    .iter()
                    .filter(|s| {
                        s.status == StepStatus::Pending
                            && !in_flight.contains(&s.key)
                            && s.depends_on
                                .iter()
                                .all(|d| status.get(d.as_str()) == Some(&StepStatus::Done))
                    })
                    .collect();
                for step in ready {
                    if in_flight.len() >= self.inner.config.concurrency.max(1) {
                        break;
                    }
                    in_flight.insert(step.key.clone());
                    let ctx = StepCtx {
                        store: store.clone(),
                        aws: aws.clone(),
                        names: names.clone(),
                        params: params.clone(),
                        deployment_id: deployment_id.clone(),
                        job_id: job_id.to_string(),
                        step: step.key.clone(),
                        timings: self.inner.config.timings.clone(),
                        artifact: self.inner.config.artifact.clone(),
                        app_url_override: None,
                    };
                    let engine = self.clone();
                    tasks.spawn(async move {
                        let result = engine.run_step(&ctx).await;
                        (ctx.step, result)
                    });
                }
            }
            match tasks.join_next().await {
                Some(Ok((key, result))) => {
                    in_flight.remove(&key);
                    failed |= result.is_err();
                }
                Some(Err(join_error)) => {
                    return Err(EngineError::Internal(format!(
                        "a step task crashed: {join_error}"
                    )));
                }
                None => break,
            }
        }
        self.finish(job_id, &deployment_id, &aws, &names).await
    }

    /// One step, with retries of retryable errors until its deadline.
    async fn run_step(&self, ctx: &StepCtx) -> StepResult<Value> {
        let store = &self.inner.store;
        let database = |e: StoreError| StepError::fatal("Database", e.to_string());
        store
            .step_started(&ctx.job_id, &ctx.step)
            .await
            .map_err(database)?;
        self.emit(&ctx.job_id, &ctx.deployment_id, Some(&ctx.step), "running");
        let deadline = tokio::time::Instant::now() + ctx.timings.step_deadline;
        let mut delay = self.inner.config.retry_base;
        loop {
            #[cfg(feature = "fault-injection")]
            let result = match self.inner.faults.take(&ctx.names.display, &ctx.step) {
                Some(injected) => Err(injected),
                None => self.dispatch(ctx).await,
            };
            #[cfg(not(feature = "fault-injection"))]
            let result = self.dispatch(ctx).await;
            #[cfg(feature = "fault-injection")]
            if result.is_ok() && self.inner.faults.hold_after(&ctx.names.display, &ctx.step) {
                ctx.progress(HELD).await;
                std::future::pending::<()>().await;
            }
            match result {
                Ok(outputs) => {
                    store
                        .step_done(&ctx.job_id, &ctx.step, &outputs)
                        .await
                        .map_err(database)?;
                    self.emit(&ctx.job_id, &ctx.deployment_id, Some(&ctx.step), "done");
                    return Ok(outputs);
                }
                Err(error) if error.retryable && tokio::time::Instant::now() + delay < deadline => {
                    tracing::info!(step = %ctx.step, %error, "retrying");
                    store
                        .step_retrying(&ctx.job_id, &ctx.step, &failure(&error))
                        .await
                        .map_err(database)?;
                    self.emit(&ctx.job_id, &ctx.deployment_id, Some(&ctx.step), "retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(error) => {
                    tracing::warn!(step = %ctx.step, %error, "step failed");
                    store
                        .step_failed(&ctx.job_id, &ctx.step, &failure(&error))
                        .await
                        .map_err(database)?;
                    self.emit(&ctx.job_id, &ctx.deployment_id, Some(&ctx.step), "failed");
                    return Err(error);
                }
            }
        }
    }

    async fn dispatch(&self, ctx: &StepCtx) -> StepResult<Value> {
        let id = ctx
            .step
            .parse::<StepId>()
            .map_err(|e| StepError::fatal("UnknownStep", e))?;
        match id {
            StepId::Do(key) => steps::run_action(ctx, key).await,
            StepId::Undo(key) => steps::run_undo(ctx, key).await,
            StepId::Sweep => self.sweep(ctx).await,
            StepId::Verify => verify(ctx).await,
        }
    }

    /// Runs every undo again (each finds its resources by tag or name), so
    /// anything made by an interrupted action that was never recorded goes too.
    async fn sweep(&self, ctx: &StepCtx) -> StepResult<Value> {
        let mut order: Vec<StepKey> = plan::deploy_dag(&ctx.params)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        order.reverse();
        let before = inventory::remaining(&ctx.aws, &ctx.names).await?;
        if before.is_empty() {
            return Ok(json!({ "swept": [] }));
        }
        ctx.progress(&format!(
            "{} resources still tagged; removing them",
            before.len()
        ))
        .await;
        terminate_stray_instances(ctx, &before).await?;
        for key in order {
            steps::run_undo(ctx, key).await?;
        }
        let after = inventory::remaining(&ctx.aws, &ctx.names).await?;
        if !after.is_empty() {
            return Err(StepError::retryable(
                "ResourcesRemain",
                format!("still present: {}", list(&after)),
            ));
        }
        Ok(json!({ "swept": before }))
    }

    async fn finish(
        &self,
        job_id: &str,
        deployment_id: &str,
        aws: &Aws,
        names: &Names,
    ) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let job = store.job(job_id).await?;
        let all_done = job.steps.iter().all(|s| s.status == StepStatus::Done);
        let failed_step = job.steps.iter().find(|s| s.status == StepStatus::Failed);
        let (job_status, error) = if all_done {
            (JobStatus::Done, None)
        } else if let Some(step) = failed_step {
            let why = step
                .error
                .as_ref()
                .map(|e| format!("{}: {}", e.code, e.message))
                .unwrap_or_default();
            (
                JobStatus::Failed,
                Some(format!("step {} failed: {why}", step.key)),
            )
        } else if job.cancel_requested {
            (JobStatus::Cancelled, Some("cancelled".to_string()))
        } else {
            (
                JobStatus::Failed,
                Some("the job stopped with steps left pending".to_string()),
            )
        };
        store.steps_skipped(job_id).await?;
        let deployment_status = match (job.kind, job_status) {
            (JobKind::Deploy, JobStatus::Done) => DeploymentStatus::Live,
            (JobKind::Teardown, JobStatus::Done) => DeploymentStatus::TornDown,
            _ => DeploymentStatus::Failed,
        };
        let outputs = match (job.kind, job_status) {
            (JobKind::Deploy, JobStatus::Done) => Some(deploy_outputs(&job, names, aws)),
            _ => None,
        };
        store
            .set_deployment_status(deployment_id, deployment_status, outputs.as_ref())
            .await?;
        store
            .set_job_status(job_id, job_status, error.as_deref())
            .await?;
        let message = match &error {
            Some(e) => format!("{} {}: {e}", job.kind.as_str(), job_status.as_str()),
            None => format!("{} {}", job.kind.as_str(), job_status.as_str()),
        };
        store
            .add_event(deployment_id, "job", None, &message)
            .await?;
        self.emit(job_id, deployment_id, None, job_status.as_str());
        // A cancelled deploy tears down what it made.
        if job.kind == JobKind::Deploy && job_status == JobStatus::Cancelled {
            self.teardown(deployment_id, Source::System, None).await?;
        }
        Ok(())
    }
}

fn failure(error: &StepError) -> StepFailure {
    StepFailure {
        code: error.code.clone(),
        message: error.message.clone(),
        hint: error.hint.clone(),
        request_id: error.request_id.clone(),
    }
}

fn list(left: &[inventory::Leftover]) -> String {
    left.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

async fn terminate_stray_instances(ctx: &StepCtx, left: &[inventory::Leftover]) -> StepResult<()> {
    use crate::error::SdkResultExt;
    let ids: Vec<String> = left
        .iter()
        .filter(|l| l.kind == "instance")
        .map(|l| l.id.clone())
        .collect();
    if !ids.is_empty() {
        ctx.aws
            .ec2
            .terminate_instances()
            .set_instance_ids(Some(ids))
            .send()
            .await
            .step()?;
    }
    Ok(())
}

/// The teardown's proof: nothing tagged with the deployment is left.
async fn verify(ctx: &StepCtx) -> StepResult<Value> {
    let left = inventory::remaining(&ctx.aws, &ctx.names).await?;
    if left.is_empty() {
        Ok(json!({ "remaining": [] }))
    } else {
        let mut error = StepError::fatal(
            "ResourcesRemain",
            format!("still present after teardown: {}", list(&left)),
        );
        error.hint = Some("retry the teardown; if it persists, delete these in the AWS console (they may still bill)".into());
        Err(error)
    }
}

/// What a live deployment shows: its URL and main resource ids.
fn deploy_outputs(job: &JobView, names: &Names, aws: &Aws) -> Value {
    let output = |key: &str, field: &str| {
        job.steps
            .iter()
            .find(|s| s.key == key)
            .and_then(|s| s.outputs.get(field))
            .cloned()
            .unwrap_or(Value::Null)
    };
    // Read again once the instances served: the same name on AWS, the local
    // load balancer's address in the sandbox.
    let dns = match output("wait_healthy", "dns_name") {
        Value::String(name) if !name.is_empty() => Value::String(name),
        _ => output("load_balancer", "dns_name"),
    };
    let url = dns
        .as_str()
        .filter(|d| !d.is_empty())
        .map(|d| format!("http://{d}"));
    json!({
        "app_url": url,
        "load_balancer_dns": dns,
        "region": aws.region,
        "vpc_id": output("vpc", "vpc_id"),
        "load_balancer_arn": output("load_balancer", "arn"),
        "target_group_arn": output("target_group", "arn"),
        "auto_scaling_group": names.auto_scaling_group(),
        "bucket": names.bucket(),
    })
}
