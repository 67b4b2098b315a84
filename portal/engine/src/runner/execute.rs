//! Running a job: its steps in dependency order, each committed before and
//! after its AWS calls, and the job's end.

use super::*;

impl Engine {
    pub(super) fn is_running(&self, job_id: &JobId) -> bool {
        self.inner
            .running
            .lock()
            .map(|r| r.contains(job_id))
            .unwrap_or(false)
    }

    /// Spawns the job unless this process is already running it. A deploy
    /// takes one of the deploy slots first, here and now if one is free (so
    /// jobs started one after another get slots in that order), else it
    /// waits for one in the background, its job saying why.
    pub(crate) fn start(&self, job_id: &JobId, kind: JobKind) {
        {
            let mut running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
            if !running.insert(job_id.clone()) {
                return;
            }
        }
        let slot = match kind {
            JobKind::Deploy => Some(self.inner.deploy_slots.clone().try_acquire_owned()),
            JobKind::Teardown | JobKind::Apply => None,
        };
        let engine = self.clone();
        let job_id = job_id.clone();
        tokio::spawn(async move {
            // The permit, if any, is held until the run ends.
            let slot = match slot {
                Some(Err(_)) => engine.queue(&job_id).await,
                Some(Ok(permit)) => Ok(Some(permit)),
                None => Ok(None),
            };
            let outcome = match slot {
                Ok(_permit) => engine.run(&job_id).await,
                Err(error) => Err(error),
            };
            if let Err(error) = outcome {
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
            // The deployment is not known here: the event names the job only.
            engine.emit(&job_id, &DeploymentId::from(""), None, Progress::Stopped);
        });
    }

    /// Waits, in turn, for a deploy slot; the job says what it waits for
    /// until then. A cancel while it waits ends the wait without a slot: the
    /// run then starts no step and ends cancelled.
    async fn queue(
        &self,
        job_id: &JobId,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, EngineError> {
        let store = &self.inner.store;
        let limit = self.inner.config.max_concurrent_deploys.max(1);
        let deployment_id = store.job(job_id).await?.deployment_id;
        let waiting = format!(
            "queued: {limit} {} under way, the most that run at once \
             (--max-concurrent-deploys); this one starts when one of them ends",
            if limit == 1 {
                "deploy is"
            } else {
                "deploys are"
            }
        );
        store.set_job_waiting(job_id, Some(&waiting)).await?;
        store
            .add_event(&deployment_id, EventKind::Job, Some("system"), &waiting)
            .await?;
        self.emit(job_id, &deployment_id, None, Progress::Queued);
        tracing::info!(job = %job_id, limit, "deploy queued");
        let acquire = self.inner.deploy_slots.clone().acquire_owned();
        tokio::pin!(acquire);
        let permit = loop {
            tokio::select! {
                permit = &mut acquire => {
                    break Some(permit.map_err(|e| EngineError::Internal(e.to_string()))?);
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if store.job(job_id).await?.cancel_requested {
                        break None;
                    }
                }
            }
        };
        store.set_job_waiting(job_id, None).await?;
        Ok(permit)
    }

    pub(super) fn emit(
        &self,
        job_id: &JobId,
        deployment_id: &DeploymentId,
        step: Option<&str>,
        status: Progress,
    ) {
        let _ = self.inner.events.send(JobEvent {
            job_id: job_id.clone(),
            deployment_id: deployment_id.clone(),
            step: step.map(str::to_string),
            status,
        });
    }

    pub(super) async fn run(&self, job_id: &JobId) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let (deployment_id, params) = store.job_deployment(job_id).await?;
        let params: DeploymentParams = serde_json::from_value(params)
            .map_err(|e| EngineError::Corrupt(format!("parameters: {e}")))?;
        let names = Names::new(&deployment_id, &params.name);
        let aws = self.aws(&params.region);
        store
            .set_job_status(job_id, JobStatus::Running, None)
            .await?;
        self.emit(job_id, &deployment_id, None, Progress::Running);

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
                    let id = match step.key.parse::<StepId>() {
                        Ok(id) => id,
                        Err(error) => {
                            // A key this build does not know (a record from
                            // another version): the step fails, saying so.
                            let error = StepError::fatal("UnknownStep", error);
                            store
                                .step_failed(job_id, &step.key, &failure(&error))
                                .await?;
                            self.emit(job_id, &deployment_id, Some(&step.key), Progress::Failed);
                            in_flight.remove(&step.key);
                            failed = true;
                            continue;
                        }
                    };
                    let ctx = StepCtx {
                        store: store.clone(),
                        aws: aws.clone(),
                        names: names.clone(),
                        params: params.clone(),
                        deployment_id: deployment_id.clone(),
                        job_id: job_id.clone(),
                        step: id,
                        timings: self.inner.config.timings.clone(),
                        artifact: self.inner.config.artifact.clone(),
                        app_url_override: None,
                    };
                    let engine = self.clone();
                    tasks.spawn(async move {
                        let result = engine.run_step(&ctx).await;
                        (ctx.step.to_string(), result)
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
    pub(super) async fn run_step(&self, ctx: &StepCtx) -> StepResult<Value> {
        let store = &self.inner.store;
        let database = |e: StoreError| StepError::fatal("Database", e.to_string());
        let key = ctx.step.to_string();
        store
            .step_started(&ctx.job_id, &key)
            .await
            .map_err(database)?;
        self.emit(
            &ctx.job_id,
            &ctx.deployment_id,
            Some(&key),
            Progress::Running,
        );
        let deadline = tokio::time::Instant::now() + ctx.timings.step_deadline;
        let mut delay = self.inner.config.retry_base;
        loop {
            #[cfg(feature = "fault-injection")]
            let result = match self.inner.faults.take(&ctx.names.display, &key) {
                Some(injected) => Err(injected),
                None => self.dispatch(ctx).await,
            };
            #[cfg(not(feature = "fault-injection"))]
            let result = self.dispatch(ctx).await;
            #[cfg(feature = "fault-injection")]
            if result.is_ok() && self.inner.faults.hold_after(&ctx.names.display, &key) {
                ctx.progress(HELD).await;
                std::future::pending::<()>().await;
            }
            match result {
                Ok(outputs) => {
                    store
                        .step_done(&ctx.job_id, &key, &outputs)
                        .await
                        .map_err(database)?;
                    self.emit(&ctx.job_id, &ctx.deployment_id, Some(&key), Progress::Done);
                    return Ok(outputs);
                }
                Err(error)
                    if error.retryable
                        && tokio::time::Instant::now()
                            + retry_pause(&error, delay, ctx.timings.poll)
                            < deadline =>
                {
                    tracing::info!(step = %ctx.step, %error, "retrying");
                    store
                        .step_retrying(&ctx.job_id, &key, &failure(&error))
                        .await
                        .map_err(database)?;
                    self.emit(
                        &ctx.job_id,
                        &ctx.deployment_id,
                        Some(&key),
                        Progress::Retrying,
                    );
                    tokio::time::sleep(retry_pause(&error, delay, ctx.timings.poll)).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(error) => {
                    tracing::warn!(step = %ctx.step, %error, "step failed");
                    store
                        .step_failed(&ctx.job_id, &key, &failure(&error))
                        .await
                        .map_err(database)?;
                    self.emit(
                        &ctx.job_id,
                        &ctx.deployment_id,
                        Some(&key),
                        Progress::Failed,
                    );
                    return Err(error);
                }
            }
        }
    }

    pub(super) async fn dispatch(&self, ctx: &StepCtx) -> StepResult<Value> {
        match ctx.step {
            StepId::Do(key) => steps::run_action(ctx, key).await,
            StepId::Undo(key) => steps::run_undo(ctx, key).await,
            StepId::Sweep => self.sweep(ctx).await,
            StepId::Verify => verify(ctx).await,
        }
    }

    /// Runs every undo again (each finds its resources by tag or name), so
    /// anything made by an interrupted action that was never recorded goes too.
    pub(super) async fn sweep(&self, ctx: &StepCtx) -> StepResult<Value> {
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

    pub(super) async fn finish(
        &self,
        job_id: &JobId,
        deployment_id: &DeploymentId,
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
            // A failed or cancelled change leaves a stack that stands and
            // serves; a retry converges it to the new parameters.
            (JobKind::Apply, _) => DeploymentStatus::Live,
            _ => DeploymentStatus::Failed,
        };
        let outputs = match (job.kind, job_status) {
            (JobKind::Deploy, JobStatus::Done) => Some(deploy_outputs(&job, names, aws)),
            _ => None,
        };
        // A change or a repair ends with the stack read back: what it set
        // right has left the drift findings before the job reads as done.
        if job.kind == JobKind::Apply && job_status == JobStatus::Done {
            if let Err(error) = self.read_drift(deployment_id).await {
                tracing::warn!(deployment = %deployment_id, %error, "drift check after an apply failed");
            }
        }
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
            .add_event(deployment_id, EventKind::Job, None, &message)
            .await?;
        self.emit(job_id, deployment_id, None, Progress::ended(job_status));
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
