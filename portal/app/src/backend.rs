//! The server side of the portal as the pages see it.
//!
//! Server functions run on the server but live in this crate, which must not
//! know about sqlx or the AWS SDK. They reach the portal through this trait;
//! the server crate implements it and provides it as Leptos context, and its
//! REST API calls the same implementation, so the UI and the API cannot drift.

use std::sync::Arc;

use async_trait::async_trait;
use leptos::prelude::*;

use crate::change::ChangePlan;
use crate::drift::DriftReport;
use crate::ids::{DeploymentId, JobId, PlanId};
use crate::live::{
    CostSummary, CostView, InstanceDetail, LiveView, MetricsRange, MetricsView, UptimeSummary,
    UptimeView,
};
use crate::model::{
    BudgetChange, ChaosAccepted, ChaosAction, CloudStatus, DeploymentDetail, DeploymentStatus,
    DeploymentSummary, HealthSnapshot, JobView, Link, OrphanCleanup, OrphanScan, Page, Preflight,
    Source,
};
use crate::params::{DeploymentParams, FieldErrors};

/// Why a backend call failed, in words a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    Invalid(String),
    #[error("the parameters are invalid: {}", summarize(.0))]
    Validation(FieldErrors),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the database failed: {0}")]
    Database(String),
    /// A bug or an unreadable record in the portal itself.
    #[error("{0}")]
    Internal(String),
    #[error("the cloud refused or did not answer: {0}")]
    Cloud(String),
    /// An idempotency key sent again with another request; nothing was done.
    #[error("{0}")]
    KeyReused(String),
    /// As many deployments stand as the portal allows; nothing was created.
    #[error("{0}")]
    TooMany(String),
    /// A change a live stack cannot take: `code` says whether it needs a
    /// teardown (`change_refused`) or is not applied in place yet
    /// (`change_not_supported`); each field says what to do.
    #[error("the stack cannot take these changes in place: {}", summarize(.fields))]
    Refused {
        code: &'static str,
        fields: FieldErrors,
    },
    /// The preflight before a deploy failed; nothing was created.
    #[error("the preflight failed, nothing was created: {}", failed_checks(.0))]
    Preflight(Preflight),
}

/// "Region: xx-nowhere-1 is not a region EC2 knows (choose one of: ...)".
fn failed_checks(preflight: &Preflight) -> String {
    preflight
        .failed()
        .map(|c| match &c.hint {
            Some(hint) => format!("{}: {} ({hint})", c.name, c.detail),
            None => format!("{}: {}", c.name, c.detail),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn summarize(fields: &FieldErrors) -> String {
    fields
        .iter()
        .map(|(field, message)| format!("{field}: {message}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A job the portal accepted, with the deployment it belongs to.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Accepted {
    pub deployment: DeploymentDetail,
    pub job: JobView,
    /// False when the same request (idempotency key, or a teardown already
    /// under way) had been accepted before.
    pub fresh: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeploymentFilter {
    pub status: Option<DeploymentStatus>,
    /// 1-based.
    pub page: u32,
    pub per_page: u32,
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The last known state of the cloud connection; never waits on AWS.
    fn cloud_status(&self) -> CloudStatus;

    /// Asks the cloud again now and returns the fresh state.
    async fn recheck_cloud(&self) -> CloudStatus;

    /// A cheap round trip to the database, for health checks.
    async fn database_ok(&self) -> Result<(), BackendError>;

    async fn list_deployments(
        &self,
        filter: DeploymentFilter,
    ) -> Result<Page<DeploymentSummary>, BackendError>;

    /// Checks, without changing anything, what a deploy of `params` needs:
    /// credentials, region, image, zones and quotas. Invalid parameters are
    /// refused first.
    async fn preflight(&self, params: DeploymentParams) -> Result<Preflight, BackendError>;

    /// Validates, runs the preflight and starts a deploy; nothing is created
    /// if the parameters are invalid or a preflight check fails.
    async fn deploy(
        &self,
        params: DeploymentParams,
        source: Source,
        idempotency_key: Option<String>,
    ) -> Result<Accepted, BackendError>;

    async fn teardown(
        &self,
        deployment_id: &DeploymentId,
        source: Source,
        idempotency_key: Option<String>,
    ) -> Result<Accepted, BackendError>;

    /// Deploys a torn-down deployment again: with its parameters, or with
    /// `params` (edited from them); the new one links back to it.
    async fn redeploy(
        &self,
        deployment_id: &DeploymentId,
        params: Option<DeploymentParams>,
        source: Source,
        idempotency_key: Option<String>,
    ) -> Result<Accepted, BackendError>;

    /// Changes a standing deployment's TTL or cost cap; an invalid change
    /// changes nothing.
    async fn set_budget(
        &self,
        deployment_id: &DeploymentId,
        change: BudgetChange,
        source: Source,
    ) -> Result<DeploymentDetail, BackendError>;

    /// What moving a live deployment to its parameters merged with
    /// `changes` (a JSON merge patch) does to each resource, and what it
    /// costs; changes nothing but keeps the plan for [`Backend::apply_plan`].
    async fn plan_change(
        &self,
        deployment_id: &DeploymentId,
        changes: serde_json::Value,
        source: Source,
    ) -> Result<ChangePlan, BackendError>;

    /// A plan as it was made.
    async fn plan(&self, plan_id: &PlanId) -> Result<ChangePlan, BackendError>;

    /// Runs a plan of `deployment_id` as a job; not found when the plan is
    /// another deployment's, refused when the deployment has changed since
    /// the plan was made, is not live, or is busy.
    async fn apply_plan(
        &self,
        deployment_id: &DeploymentId,
        plan_id: &PlanId,
        source: Source,
    ) -> Result<Accepted, BackendError>;

    /// Where a live deployment differs from its parameters, as last checked.
    async fn drift(&self, deployment_id: &DeploymentId) -> Result<DriftReport, BackendError>;

    /// Reads the stack back from AWS now and answers what differs.
    async fn check_drift(&self, deployment_id: &DeploymentId) -> Result<DriftReport, BackendError>;

    /// Runs the job that puts every drifted resource back as the
    /// parameters say; refused when nothing drifted or the deployment is
    /// busy or not live.
    async fn repair_drift(
        &self,
        deployment_id: &DeploymentId,
        source: Source,
    ) -> Result<Accepted, BackendError>;

    /// Takes the actual values of the findings `ids` into the parameters;
    /// refused (nothing changed) when one cannot be.
    async fn accept_drift(
        &self,
        deployment_id: &DeploymentId,
        ids: Vec<String>,
        source: Source,
    ) -> Result<DriftReport, BackendError>;

    /// What the new-deployment form starts from: the defaults (with the
    /// TTL this portal's cloud suggests), or a torn-down deployment's
    /// parameters to deploy again.
    async fn form_params(
        &self,
        from: Option<&DeploymentId>,
    ) -> Result<(DeploymentParams, Option<Link>), BackendError>;

    async fn deployment(&self, id: &DeploymentId) -> Result<DeploymentDetail, BackendError>;

    async fn job(&self, id: &JobId) -> Result<JobView, BackendError>;

    /// Runs a failed job again from its failed steps.
    async fn retry_job(&self, id: &JobId, source: Source) -> Result<JobView, BackendError>;

    /// Stops a job from starting new steps; a cancelled deploy tears down.
    async fn cancel_job(&self, id: &JobId, source: Source) -> Result<JobView, BackendError>;

    /// Every resource in `region` (the portal's own without one) that
    /// carries a CloudPulse tag and that no tracked deployment owns.
    async fn orphans(&self, region: Option<&str>) -> Result<OrphanScan, BackendError>;

    /// A live deployment's group, targets, alarms and activities, now.
    async fn health(&self, deployment_id: &DeploymentId) -> Result<HealthSnapshot, BackendError>;

    /// Terminates, stresses or fails the health checks of one instance of a
    /// live deployment (`instance_id`), or of every instance in service
    /// (`None`).
    async fn chaos(
        &self,
        deployment_id: &DeploymentId,
        instance_id: Option<&str>,
        action: ChaosAction,
        source: Source,
    ) -> Result<ChaosAccepted, BackendError>;

    /// The charts' series of a deployment over `range`.
    async fn metrics(
        &self,
        deployment_id: &DeploymentId,
        range: MetricsRange,
    ) -> Result<MetricsView, BackendError>;

    /// Availability and incidents of a deployment, from the portal's probes.
    async fn uptime(&self, deployment_id: &DeploymentId) -> Result<UptimeView, BackendError>;

    /// Availability of every deployment ever probed.
    async fn uptime_all(&self) -> Result<UptimeSummary, BackendError>;

    /// What a deployment has cost and costs per hour.
    async fn cost(&self, deployment_id: &DeploymentId) -> Result<CostView, BackendError>;

    /// The cost of every deployment, torn-down ones included.
    async fn cost_all(&self) -> Result<CostSummary, BackendError>;

    /// Everything the live part of a deployment's page shows.
    async fn live_view(
        &self,
        deployment_id: &DeploymentId,
        range: MetricsRange,
    ) -> Result<LiveView, BackendError>;

    /// One instance of a deployment's group, as the portal has seen it.
    async fn instance(
        &self,
        deployment_id: &DeploymentId,
        instance_id: &str,
        range: MetricsRange,
    ) -> Result<InstanceDetail, BackendError>;

    /// Starts a teardown job for every orphaned deployment in `region`.
    async fn clean_orphans(
        &self,
        region: Option<&str>,
        source: Source,
    ) -> Result<Vec<OrphanCleanup>, BackendError>;
}

/// What the server puts into Leptos context.
pub type SharedBackend = Arc<dyn Backend>;

pub fn use_backend() -> Result<SharedBackend, ServerFnError> {
    use_context::<SharedBackend>()
        .ok_or_else(|| ServerFnError::new("the portal backend is not available in this context"))
}
