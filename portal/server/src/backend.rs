//! The portal's implementation of the pages' [`Backend`]; the REST API uses it too.

use async_trait::async_trait;
use std::sync::Arc;

use chrono::Utc;
use cloudpulse_app::backend::{Accepted, Backend, BackendError, DeploymentFilter};
use cloudpulse_app::change::ChangePlan;
use cloudpulse_app::drift::DriftReport;
use cloudpulse_app::ids::{DeploymentId, JobId, PlanId};
use cloudpulse_app::live::{
    CostSummary, CostView, InstanceDetail, LiveView, MetricsRange, MetricsView, UptimeSummary,
    UptimeView,
};
use cloudpulse_app::model::{
    Budget, BudgetChange, ChaosAccepted, ChaosAction, CloudMode, CloudStatus, DeploymentDetail,
    DeploymentStatus, DeploymentSummary, HealthSnapshot, JobView, Link, OrphanCleanup, OrphanScan,
    Page, Preflight, Source,
};
use cloudpulse_app::params::{
    check_region, is_region, DeploymentParams, FieldErrors, SANDBOX_TTL_MINUTES,
};
use cloudpulse_engine::store::{Created, NewDeployment};
use cloudpulse_engine::{Engine, EngineError, StoreError};
use cloudpulse_telemetry::{budget, cost, views, Telemetry};

use crate::cloud::CloudProbe;
use crate::idempotency::{check_key, KeyError, Keys, Scoped};

pub struct PortalBackend {
    engine: Engine,
    cloud: CloudProbe,
    telemetry: Arc<Telemetry>,
    keys: Keys,
    /// Deployments that may stand at once (`--max-live`).
    max_live: u32,
    /// Held by every deploy from the look-up of its key, through the count
    /// of what stands and the preflight, to the record of what it created:
    /// two requests under one key cannot both start a job, and parallel
    /// deploys cannot all pass the count.
    deploying: tokio::sync::Mutex<()>,
}

impl PortalBackend {
    pub fn new(
        engine: Engine,
        cloud: CloudProbe,
        telemetry: Arc<Telemetry>,
        keys: Keys,
        max_live: u32,
    ) -> Self {
        PortalBackend {
            engine,
            cloud,
            telemetry,
            keys,
            max_live,
            deploying: tokio::sync::Mutex::new(()),
        }
    }

    /// Deployments that stand: deploying, live or failed (a failed one may
    /// hold resources until it is torn down).
    async fn standing(&self) -> Result<u64, BackendError> {
        let mut standing = 0;
        for status in [
            DeploymentStatus::Deploying,
            DeploymentStatus::Live,
            DeploymentStatus::Failed,
        ] {
            let page = self
                .engine
                .store()
                .list_deployments(Some(status), 1, 1)
                .await
                .map_err(store_error)?;
            standing += page.total;
        }
        Ok(standing)
    }

    fn db(&self) -> &cloudpulse_telemetry::db::Db {
        self.telemetry.db()
    }

    /// The region asked for, or the portal's own; a malformed name is refused.
    fn region(&self, asked: Option<&str>) -> Result<String, BackendError> {
        match asked {
            Some(region) => check_region(region)
                .map(|()| region.to_string())
                .map_err(BackendError::Invalid),
            None => {
                let own = self.cloud.current().region;
                Ok(if is_region(&own) {
                    own
                } else {
                    DeploymentParams::default().region
                })
            }
        }
    }

    /// The countdown's start, from the TTL's deadline.
    fn with_warning(&self, mut budget: Budget) -> Budget {
        let before = chrono::TimeDelta::from_std(self.telemetry.config().warn_before)
            .unwrap_or(chrono::TimeDelta::minutes(15));
        budget.warn_from = budget.expires_at.map(|at| at - before);
        budget
    }

    async fn detail(&self, id: &DeploymentId) -> Result<DeploymentDetail, BackendError> {
        let mut detail = self
            .engine
            .store()
            .deployment(id)
            .await
            .map_err(store_error)?;
        detail.budget = self.with_warning(detail.budget);
        Ok(detail)
    }

    /// The budget part of a change from `before` to `after`, checked as a
    /// budget change is (a TTL already past, a cap already reached are
    /// refused): `None` when neither the TTL nor the cap changes, else the
    /// new deadline.
    async fn changed_budget(
        &self,
        id: &DeploymentId,
        before: &DeploymentParams,
        after: &DeploymentParams,
    ) -> Result<Option<Option<chrono::DateTime<Utc>>>, BackendError> {
        let ttl = |p: &DeploymentParams| p.ttl_minutes.unwrap_or(0);
        let change = BudgetChange {
            ttl_minutes: (ttl(before) != ttl(after)).then_some(after.ttl_minutes),
            cost_cap_usd: (before.cost_cap_usd != after.cost_cap_usd).then_some(after.cost_cap_usd),
            extend_minutes: None,
        };
        if change.ttl_minutes.is_none() && change.cost_cap_usd.is_none() {
            return Ok(None);
        }
        let row = self.engine.store().budget(id).await.map_err(store_error)?;
        let new = self.checked_budget(id, &row, &change).await?;
        Ok(Some(new.expires_at))
    }

    /// `change` checked against the deployment's budget as it stands and
    /// its cost accrued so far: what the budget becomes, or each problem.
    async fn checked_budget(
        &self,
        id: &DeploymentId,
        row: &cloudpulse_engine::store::BudgetRow,
        change: &BudgetChange,
    ) -> Result<budget::NewBudget, BackendError> {
        let now = Utc::now();
        let accrued = cost::cost(self.db(), id, now)
            .await
            .map_err(db_error)?
            .filter(|view| view.priced)
            .map(|view| view.accrued_usd);
        budget::apply(row, change, self.telemetry.config(), accrued, now)
            .map_err(BackendError::Validation)
    }

    /// Validates the budget part of `params` (the TTL's default filled in
    /// for this portal's cloud) and starts the deploy.
    async fn start_deploy(
        &self,
        mut params: DeploymentParams,
        source: Source,
        idempotency_key: Option<String>,
        redeployed_from: Option<&DeploymentId>,
    ) -> Result<Accepted, BackendError> {
        if params.ttl_minutes.is_none() {
            params.ttl_minutes = Some(self.default_ttl());
        }
        let scoped = match idempotency_key.as_deref() {
            Some(key) => {
                check_key(key).map_err(BackendError::Invalid)?;
                let request = serde_json::to_string(&params)
                    .map_err(|e| BackendError::Internal(e.to_string()))?;
                let operation = match redeployed_from {
                    Some(_) => "redeploy",
                    None => "deploy",
                };
                Some(Scoped::new(operation, redeployed_from, key, &request))
            }
            None => None,
        };
        let _one_at_a_time = self.deploying.lock().await;
        if let Some(scoped) = &scoped {
            // A request seen before answers with what it started, unchecked:
            // its own resources would count against the quotas now.
            if let Some(job_id) = self.keys.seen(scoped).await.map_err(key_error)? {
                return self.replay(&job_id).await;
            }
        }
        params.validate().map_err(BackendError::Validation)?;
        let standing = self.standing().await?;
        if standing >= u64::from(self.max_live) {
            return Err(BackendError::TooMany(format!(
                "{standing} deployments stand, the most this portal allows at once \
                 (--max-live {}); tear one down first",
                self.max_live
            )));
        }
        let preflight = self.engine.preflight(&params).await;
        if !preflight.ok {
            tracing::info!(
                failed = preflight.failed().count(),
                name = %params.name,
                "deploy refused by its preflight"
            );
            return Err(BackendError::Preflight(preflight));
        }
        if params.cost_cap_usd.is_some()
            && cloudpulse_app::pricing::prices(&params.region).is_none()
            && is_region(&params.region)
        {
            return Err(BackendError::Validation(FieldErrors::from([(
                "cost_cap_usd".to_string(),
                format!(
                    "{} has no prices, so a cap could not be checked; use a TTL",
                    params.region
                ),
            )])));
        }
        let ttl = params
            .ttl_minutes
            .filter(|m| *m > 0)
            .map(|m| self.telemetry.config().minutes(m));
        let created = self
            .engine
            .deploy_with(
                params,
                source,
                scoped.as_ref().map(|s| s.stored.as_str()),
                NewDeployment {
                    ttl,
                    redeployed_from,
                },
            )
            .await
            .map_err(engine_error)?;
        if let Some(scoped) = &scoped {
            self.keys
                .record(scoped, &created.job_id)
                .await
                .map_err(key_error)?;
        }
        self.accepted(created).await
    }

    /// The answer a keyed request got the first time.
    async fn replay(&self, job_id: &JobId) -> Result<Accepted, BackendError> {
        let job = self.engine.store().job(job_id).await.map_err(store_error)?;
        self.accepted(Created {
            deployment_id: job.deployment_id,
            job_id: job.id,
            fresh: false,
        })
        .await
    }

    /// 4 h in the sandbox; off against AWS (the form suggests one).
    fn default_ttl(&self) -> u32 {
        match self.cloud.current().mode {
            CloudMode::Sandbox => SANDBOX_TTL_MINUTES,
            CloudMode::Aws => 0,
        }
    }

    async fn accepted(&self, created: Created) -> Result<Accepted, BackendError> {
        let store = self.engine.store();
        Ok(Accepted {
            deployment: self.detail(&created.deployment_id).await?,
            job: store.job(&created.job_id).await.map_err(store_error)?,
            fresh: created.fresh,
        })
    }
}

#[async_trait]
impl Backend for PortalBackend {
    async fn health(&self, deployment_id: &DeploymentId) -> Result<HealthSnapshot, BackendError> {
        self.engine
            .health(deployment_id)
            .await
            .map_err(engine_error)
    }

    async fn chaos(
        &self,
        deployment_id: &DeploymentId,
        instance_id: Option<&str>,
        action: ChaosAction,
        source: Source,
    ) -> Result<ChaosAccepted, BackendError> {
        self.engine
            .chaos(deployment_id, instance_id, action, source)
            .await
            .map_err(engine_error)
    }

    async fn metrics(
        &self,
        deployment_id: &DeploymentId,
        range: MetricsRange,
    ) -> Result<MetricsView, BackendError> {
        let view = views::metrics(
            self.db(),
            self.telemetry.config(),
            deployment_id,
            range,
            Utc::now(),
        )
        .await;
        found(view, deployment_id)
    }

    async fn uptime(&self, deployment_id: &DeploymentId) -> Result<UptimeView, BackendError> {
        let view = views::uptime(self.db(), deployment_id, Utc::now()).await;
        found(view, deployment_id)
    }

    async fn uptime_all(&self) -> Result<UptimeSummary, BackendError> {
        views::uptime_all(self.db(), Utc::now())
            .await
            .map_err(db_error)
    }

    async fn cost(&self, deployment_id: &DeploymentId) -> Result<CostView, BackendError> {
        let view = cost::cost(self.db(), deployment_id, Utc::now()).await;
        found(view, deployment_id)
    }

    async fn cost_all(&self) -> Result<CostSummary, BackendError> {
        cost::cost_all(self.db(), Utc::now())
            .await
            .map_err(db_error)
    }

    async fn live_view(
        &self,
        deployment_id: &DeploymentId,
        range: MetricsRange,
    ) -> Result<LiveView, BackendError> {
        let view = views::live(
            self.db(),
            self.telemetry.config(),
            deployment_id,
            range,
            Utc::now(),
        )
        .await;
        found(view, deployment_id)
    }

    async fn instance(
        &self,
        deployment_id: &DeploymentId,
        instance_id: &str,
        range: MetricsRange,
    ) -> Result<InstanceDetail, BackendError> {
        let view = views::instance(
            self.db(),
            self.telemetry.config(),
            deployment_id,
            instance_id,
            range,
            Utc::now(),
        )
        .await
        .map_err(db_error)?;
        view.ok_or_else(|| {
            BackendError::NotFound(format!(
                "no instance {instance_id} was ever seen in deployment {deployment_id}"
            ))
        })
    }

    fn cloud_status(&self) -> CloudStatus {
        self.cloud.current()
    }

    async fn recheck_cloud(&self) -> CloudStatus {
        self.cloud.check().await
    }

    async fn database_ok(&self) -> Result<(), BackendError> {
        self.engine.store().ping().await.map_err(store_error)
    }

    async fn list_deployments(
        &self,
        filter: DeploymentFilter,
    ) -> Result<Page<DeploymentSummary>, BackendError> {
        let mut page = self
            .engine
            .store()
            .list_deployments(filter.status, filter.page, filter.per_page)
            .await
            .map_err(store_error)?;
        let ids: Vec<DeploymentId> = page.items.iter().map(|d| d.id.clone()).collect();
        let now = Utc::now();
        let figures = cost::summaries(self.db(), &ids, now)
            .await
            .map_err(db_error)?;
        let live: Vec<DeploymentId> = page
            .items
            .iter()
            .filter(|d| d.status == DeploymentStatus::Live)
            .map(|d| d.id.clone())
            .collect();
        let hourly = figures
            .iter()
            .filter_map(|(id, f)| f.hourly_usd.map(|h| (id.clone(), h)))
            .collect();
        let mut idle = budget::idle(self.db(), self.telemetry.config(), &live, &hourly, now)
            .await
            .map_err(db_error)?;
        let drift: std::collections::HashMap<DeploymentId, u32> = self
            .engine
            .store()
            .drift_counts()
            .await
            .map_err(store_error)?
            .into_iter()
            .collect();
        for item in &mut page.items {
            item.drift = drift.get(&item.id).copied().unwrap_or_default();
            if let Some(f) = figures.get(&item.id) {
                item.cost_usd = f.accrued_usd;
                item.availability_pct = f.availability_pct;
            }
            item.idle = idle.remove(&item.id);
            item.budget = self.with_warning(std::mem::take(&mut item.budget));
        }
        Ok(page)
    }

    async fn preflight(&self, mut params: DeploymentParams) -> Result<Preflight, BackendError> {
        // The name plays no part in the checks; a checklist needs none.
        if params.name.is_empty() {
            params.name = "preflight".into();
        }
        params.validate().map_err(BackendError::Validation)?;
        Ok(self.engine.preflight(&params).await)
    }

    async fn deploy(
        &self,
        params: DeploymentParams,
        source: Source,
        idempotency_key: Option<String>,
    ) -> Result<Accepted, BackendError> {
        self.start_deploy(params, source, idempotency_key, None)
            .await
    }

    async fn redeploy(
        &self,
        deployment_id: &DeploymentId,
        params: Option<DeploymentParams>,
        source: Source,
        idempotency_key: Option<String>,
    ) -> Result<Accepted, BackendError> {
        let old = self.detail(deployment_id).await?;
        if old.status != DeploymentStatus::TornDown {
            return Err(BackendError::Conflict(format!(
                "only a torn-down deployment can be deployed again; {} is {}",
                old.name,
                old.status.label().to_lowercase()
            )));
        }
        let params = match params {
            Some(params) => params,
            None => serde_json::from_value(old.params).map_err(|e| {
                BackendError::Invalid(format!("the stored parameters cannot be read: {e}"))
            })?,
        };
        self.start_deploy(params, source, idempotency_key, Some(deployment_id))
            .await
    }

    async fn set_budget(
        &self,
        deployment_id: &DeploymentId,
        change: BudgetChange,
        source: Source,
    ) -> Result<DeploymentDetail, BackendError> {
        let store = self.engine.store();
        let row = store.budget(deployment_id).await.map_err(store_error)?;
        if !row.status.guarded() {
            return Err(BackendError::Conflict(format!(
                "{} is {}; its budget no longer matters",
                row.name,
                row.status.label().to_lowercase()
            )));
        }
        let new = self.checked_budget(deployment_id, &row, &change).await?;
        store
            .set_budget(
                deployment_id,
                new.ttl_minutes,
                new.expires_at,
                new.cost_cap_usd,
                source,
                &new.message,
            )
            .await
            .map_err(store_error)?;
        self.detail(deployment_id).await
    }

    async fn plan_change(
        &self,
        deployment_id: &DeploymentId,
        changes: serde_json::Value,
        source: Source,
    ) -> Result<ChangePlan, BackendError> {
        let current = self.detail(deployment_id).await?;
        let unreadable = |e: serde_json::Error| {
            BackendError::Invalid(format!("the parameters cannot be read: {e}"))
        };
        let before: DeploymentParams =
            serde_json::from_value(current.params.clone()).map_err(unreadable)?;
        let mut merged = current.params;
        cloudpulse_app::change::merge_patch(&mut merged, changes);
        let after: DeploymentParams = serde_json::from_value(merged).map_err(unreadable)?;
        self.changed_budget(deployment_id, &before, &after).await?;
        self.engine
            .plan_change(deployment_id, after, source)
            .await
            .map_err(engine_error)
    }

    async fn plan(&self, plan_id: &PlanId) -> Result<ChangePlan, BackendError> {
        let stored = self
            .engine
            .change_plan(plan_id)
            .await
            .map_err(engine_error)?;
        Ok(stored.plan)
    }

    async fn apply_plan(
        &self,
        deployment_id: &DeploymentId,
        plan_id: &PlanId,
        source: Source,
    ) -> Result<Accepted, BackendError> {
        let stored = self
            .engine
            .change_plan(plan_id)
            .await
            .map_err(engine_error)?;
        if stored.plan.deployment_id != *deployment_id {
            return Err(BackendError::NotFound(format!(
                "deployment {deployment_id} has no plan {plan_id}"
            )));
        }
        let unreadable =
            |e: serde_json::Error| BackendError::Internal(format!("plan {plan_id}: {e}"));
        let before: DeploymentParams =
            serde_json::from_value(stored.before.clone()).map_err(unreadable)?;
        let after: DeploymentParams =
            serde_json::from_value(stored.after.clone()).map_err(unreadable)?;
        // Checked again now: a TTL that was fine at plan time may be past.
        let expires_at = match stored.job_id {
            Some(_) => None,
            None => self.changed_budget(deployment_id, &before, &after).await?,
        };
        let created = self
            .engine
            .apply_change(&stored, source, expires_at)
            .await
            .map_err(engine_error)?;
        self.accepted(created).await
    }

    async fn drift(&self, deployment_id: &DeploymentId) -> Result<DriftReport, BackendError> {
        self.engine.drift(deployment_id).await.map_err(engine_error)
    }

    async fn check_drift(&self, deployment_id: &DeploymentId) -> Result<DriftReport, BackendError> {
        self.engine
            .check_drift(deployment_id)
            .await
            .map_err(engine_error)
    }

    async fn repair_drift(
        &self,
        deployment_id: &DeploymentId,
        source: Source,
    ) -> Result<Accepted, BackendError> {
        let created = self
            .engine
            .repair_drift(deployment_id, source)
            .await
            .map_err(engine_error)?;
        self.accepted(created).await
    }

    async fn accept_drift(
        &self,
        deployment_id: &DeploymentId,
        ids: Vec<String>,
        source: Source,
    ) -> Result<DriftReport, BackendError> {
        self.engine
            .accept_drift(deployment_id, &ids, source)
            .await
            .map_err(engine_error)
    }

    async fn form_params(
        &self,
        from: Option<&DeploymentId>,
    ) -> Result<(DeploymentParams, Option<Link>), BackendError> {
        let Some(from) = from else {
            let params = DeploymentParams {
                ttl_minutes: Some(self.default_ttl()),
                ..Default::default()
            };
            return Ok((params, None));
        };
        let old = self.detail(from).await?;
        let params = serde_json::from_value(old.params).map_err(|e| {
            BackendError::Invalid(format!("the stored parameters cannot be read: {e}"))
        })?;
        Ok((
            params,
            Some(Link {
                id: old.id,
                name: old.name,
            }),
        ))
    }

    async fn teardown(
        &self,
        deployment_id: &DeploymentId,
        source: Source,
        idempotency_key: Option<String>,
    ) -> Result<Accepted, BackendError> {
        let scoped = match idempotency_key.as_deref() {
            Some(key) => {
                check_key(key).map_err(BackendError::Invalid)?;
                Some(Scoped::new("teardown", Some(deployment_id), key, ""))
            }
            None => None,
        };
        let created = self
            .engine
            .teardown(
                deployment_id,
                source,
                scoped.as_ref().map(|s| s.stored.as_str()),
            )
            .await
            .map_err(engine_error)?;
        self.accepted(created).await
    }

    async fn deployment(&self, id: &DeploymentId) -> Result<DeploymentDetail, BackendError> {
        self.detail(id).await
    }

    async fn job(&self, id: &JobId) -> Result<JobView, BackendError> {
        self.engine.store().job(id).await.map_err(store_error)
    }

    async fn retry_job(&self, id: &JobId, source: Source) -> Result<JobView, BackendError> {
        self.engine.retry(id, source).await.map_err(engine_error)
    }

    async fn cancel_job(&self, id: &JobId, source: Source) -> Result<JobView, BackendError> {
        let job = self.engine.store().job(id).await.map_err(store_error)?;
        if job.status.is_finished() {
            return Err(BackendError::Conflict(format!(
                "job {id} is already {}",
                job.status.as_str()
            )));
        }
        self.engine.cancel(id, source).await.map_err(engine_error)?;
        self.engine.store().job(id).await.map_err(store_error)
    }

    async fn orphans(&self, region: Option<&str>) -> Result<OrphanScan, BackendError> {
        let region = self.region(region)?;
        self.engine
            .scan_orphans(&region)
            .await
            .map_err(engine_error)
    }

    async fn clean_orphans(
        &self,
        region: Option<&str>,
        source: Source,
    ) -> Result<Vec<OrphanCleanup>, BackendError> {
        let region = self.region(region)?;
        self.engine
            .clean_orphans(&region, source)
            .await
            .map_err(engine_error)
    }
}

/// A telemetry read that failed: the database, whatever the cause.
fn db_error(error: StoreError) -> BackendError {
    match error {
        StoreError::Query(inner) => BackendError::Database(inner.to_string()),
        other => BackendError::Database(other.to_string()),
    }
}

/// A deployment's view, or why there is none.
fn found<T>(view: Result<Option<T>, StoreError>, id: &DeploymentId) -> Result<T, BackendError> {
    view.map_err(db_error)?
        .ok_or_else(|| BackendError::NotFound(format!("no deployment with id {:?}", id.as_str())))
}

fn key_error(error: KeyError) -> BackendError {
    match error {
        KeyError::Reused => BackendError::KeyReused(error.to_string()),
        KeyError::Database(e) => BackendError::Database(e.to_string()),
    }
}

fn store_error(error: StoreError) -> BackendError {
    match error {
        StoreError::Invalid(message) => BackendError::Invalid(message),
        StoreError::NotFound { .. } => BackendError::NotFound(error.to_string()),
        StoreError::NameInUse(_)
        | StoreError::Busy { .. }
        | StoreError::NotStanding { .. }
        | StoreError::NotLive { .. }
        | StoreError::Stale { .. } => BackendError::Conflict(error.to_string()),
        other => BackendError::Database(other.to_string()),
    }
}

fn engine_error(error: EngineError) -> BackendError {
    match error {
        EngineError::Validation(fields) => BackendError::Validation(fields),
        EngineError::Store(e) => store_error(e),
        EngineError::NotLive { .. } | EngineError::WrongState(_) => {
            BackendError::Conflict(error.to_string())
        }
        EngineError::Corrupt(_) | EngineError::Internal(_) => {
            BackendError::Internal(error.to_string())
        }
        EngineError::Aws(e) => BackendError::Cloud(e.to_string()),
        EngineError::Refused { code, fields } => BackendError::Refused { code, fields },
    }
}
