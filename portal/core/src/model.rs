//! Plain data shared by the server, the REST API and the browser.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{DeploymentId, JobId};

/// Which cloud the portal talks to, and whether it can reach it right now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudStatus {
    pub mode: CloudMode,
    pub region: String,
    /// The endpoint override, when there is one (always in the sandbox).
    pub endpoint: Option<String>,
    /// The AWS account the credentials belong to, once learned.
    pub account: Option<String>,
    pub reachable: Reachability,
    pub checked_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloudMode {
    /// The local sandbox cloud: moto plus CloudPulse's emulated data plane.
    Sandbox,
    /// An AWS account reached through the standard credential chain.
    Aws,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Reachability {
    /// Not checked yet.
    Unknown,
    Reachable,
    Unreachable {
        reason: String,
    },
}

impl CloudStatus {
    /// A short label for the top bar, e.g. "Sandbox · us-east-1".
    pub fn label(&self) -> String {
        match (self.mode, &self.account) {
            (CloudMode::Sandbox, _) => format!("Sandbox cloud · {}", self.region),
            (CloudMode::Aws, Some(account)) => format!("AWS account {account} · {}", self.region),
            (CloudMode::Aws, None) => format!("AWS · {}", self.region),
        }
    }
}

text_enum! {
    /// The life of a deployment, as stored in `deployments.status`.
    pub enum DeploymentStatus {
        Deploying = "deploying",
        Live = "live",
        Failed = "failed",
        TearingDown = "tearing_down",
        TornDown = "torn_down",
    }
}

impl DeploymentStatus {
    /// Human wording for badges.
    pub fn label(self) -> &'static str {
        match self {
            DeploymentStatus::Deploying => "Deploying",
            DeploymentStatus::Live => "Live",
            DeploymentStatus::Failed => "Failed",
            DeploymentStatus::TearingDown => "Tearing down",
            DeploymentStatus::TornDown => "Torn down",
        }
    }

    /// Whether its budget still matters: it stands and no teardown has
    /// begun, so the guard watches it and its TTL or cap can change.
    pub fn guarded(self) -> bool {
        matches!(
            self,
            DeploymentStatus::Deploying | DeploymentStatus::Live | DeploymentStatus::Failed
        )
    }
}

/// One row of the deployments list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentSummary {
    pub id: DeploymentId,
    pub name: String,
    pub region: String,
    pub status: DeploymentStatus,
    pub created_at: DateTime<Utc>,
    pub torn_down_at: Option<DateTime<Utc>>,
    /// "2 × t3.micro (2-4)": desired instances, type, and the scaling range.
    pub size: Option<String>,
    /// Accrued cost so far, when its region is priced.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Good probes of the app URL out of all, once probed.
    #[serde(default)]
    pub availability_pct: Option<f64>,
    #[serde(default)]
    pub budget: Budget,
    /// The torn-down deployment this one was deployed again from.
    #[serde(default)]
    pub redeployed_from: Option<Link>,
    /// Set while a live deployment's load balancer sees no requests.
    #[serde(default)]
    pub idle: Option<Idle>,
    /// Drift findings open on a live deployment (changed past the portal).
    #[serde(default)]
    pub drift: u32,
}

/// What keeps a deployment from billing forever: its time-to-live and its
/// cost cap, both optional, both acted on by the portal's budget guard.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Minutes from creation until teardown; `None` when there is no TTL.
    pub ttl_minutes: Option<u32>,
    /// When the TTL runs out (on the sandbox's clock, its time scale applies).
    pub expires_at: Option<DateTime<Utc>>,
    /// From when pages show the countdown and the extend control.
    pub warn_from: Option<DateTime<Utc>>,
    /// The accrued cost that tears the deployment down.
    pub cost_cap_usd: Option<f64>,
}

impl Budget {
    /// True once the countdown should show: from the start of the warning
    /// window until the deployment is gone.
    pub fn warning(&self, now: DateTime<Utc>) -> bool {
        self.warn_from.is_some_and(|from| now >= from)
    }
}

/// Another deployment, by id and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub id: DeploymentId,
    pub name: String,
}

/// A live deployment nobody uses: no requests beyond the portal's own
/// probes for at least `seconds` (the portal's idle window).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Idle {
    pub seconds: u64,
    /// What it costs per day while it stands, when its region is priced.
    pub daily_usd: Option<f64>,
}

/// A change to a deployment's budget (`PATCH /deployments/{id}`). A field
/// left out is kept; `null` turns it off.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetChange {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl_minutes: Option<Option<u32>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub cost_cap_usd: Option<Option<f64>>,
    /// Adds minutes to the current TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extend_minutes: Option<u32>,
}

/// A field that is present, even as `null`, becomes `Some`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A page of results, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub page: u32,
    pub per_page: u32,
}

text_enum! {
    /// The kind of work a job does.
    pub enum JobKind {
        Deploy = "deploy",
        Teardown = "teardown",
        /// A change plan applied to a live stack.
        Apply = "apply",
    }
}

text_enum! {
    pub enum JobStatus {
        Pending = "pending",
        Running = "running",
        Done = "done",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

impl JobStatus {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

text_enum! {
    pub enum StepStatus {
        Pending = "pending",
        Running = "running",
        Done = "done",
        Failed = "failed",
        Skipped = "skipped",
    }
}

text_enum! {
    /// Who asked for a job; shown on the timeline.
    pub enum Source {
        Browser = "browser",
        Api = "api",
        Cli = "cli",
        Ttl = "ttl",
        CostCap = "cost_cap",
        System = "system",
    }
}

text_enum! {
    /// What a timeline event is about, as stored in `events.kind`: the
    /// engine writes jobs, chaos, orphans, budget and system events; the
    /// telemetry what it sees change.
    pub enum EventKind {
        Job = "job",
        Chaos = "chaos",
        Recovery = "recovery",
        Orphans = "orphans",
        Budget = "budget",
        System = "system",
        Instance = "instance",
        Target = "target",
        Scaling = "scaling",
        Capacity = "capacity",
        Alarm = "alarm",
        Uptime = "uptime",
        /// A difference between the stack and its parameters found or gone.
        Drift = "drift",
    }
}

/// An AWS error as a step saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepFailure {
    pub code: String,
    pub message: String,
    pub hint: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    pub key: String,
    pub depends_on: Vec<String>,
    pub status: StepStatus,
    pub attempts: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub progress: Option<String>,
    /// The last error: the reason for `failed`, or the last retried one.
    pub error: Option<StepFailure>,
    pub outputs: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: JobId,
    pub deployment_id: DeploymentId,
    pub kind: JobKind,
    pub status: JobStatus,
    pub source: String,
    pub error: Option<String>,
    pub cancel_requested: bool,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// What the job waits for before its first step (a deploy queued behind
    /// the deploys already under way); absent once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    pub steps: Vec<StepView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceView {
    pub kind: String,
    pub aws_id: String,
    pub arn: Option<String>,
    pub step_key: String,
    pub region: String,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentDetail {
    pub id: DeploymentId,
    pub name: String,
    pub region: String,
    pub status: DeploymentStatus,
    pub params: serde_json::Value,
    pub outputs: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub torn_down_at: Option<DateTime<Utc>>,
    // The page's island never reads these three (the server renders the
    // budget), so the browser skips them: every struct serde reads there
    // costs kilobytes of wasm.
    #[serde(default)]
    #[cfg_attr(feature = "browser", serde(skip_deserializing))]
    pub budget: Budget,
    #[serde(default)]
    #[cfg_attr(feature = "browser", serde(skip_deserializing))]
    pub redeployed_from: Option<Link>,
    /// Deployments made again from this one, newest first.
    #[serde(default)]
    #[cfg_attr(feature = "browser", serde(skip_deserializing))]
    pub redeployed_as: Vec<Link>,
    pub resources: Vec<ResourceView>,
    pub current_job: Option<JobView>,
    pub jobs: Vec<JobSummary>,
    /// The deployment's timeline, newest first (the latest 100).
    pub events: Vec<EventView>,
}

/// One entry of a deployment's timeline: what changed, and who asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub at: DateTime<Utc>,
    pub kind: String,
    /// browser, api, cli, system, ... when a person or a rule asked for it.
    pub source: Option<String>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    pub id: JobId,
    pub kind: JobKind,
    pub status: JobStatus,
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Why resources count as orphans: nothing here tracks them any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanReason {
    /// Their deployment is unknown to this database (another portal, or a
    /// lost database made them).
    Unknown,
    /// Their deployment was torn down, yet they remain.
    TornDown,
}

/// One AWS resource an orphan scan found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrphanResource {
    pub kind: String,
    pub id: String,
    /// When AWS says it was made, where its API tells.
    pub created: Option<DateTime<Utc>>,
    /// What it costs per hour in USD; `None` when the region's prices are unknown.
    pub hourly_usd: Option<f64>,
}

/// The resources of one deployment that nothing tracks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Orphan {
    pub deployment_id: DeploymentId,
    /// Its name, when this database knows it.
    pub name: Option<String>,
    pub reason: OrphanReason,
    pub resources: Vec<OrphanResource>,
    pub hourly_usd: Option<f64>,
}

/// Everything in a region that carries a CloudPulse tag and no live record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrphanScan {
    pub region: String,
    pub scanned_at: DateTime<Utc>,
    /// The date of the price table the costs come from.
    pub prices_as_of: String,
    pub orphans: Vec<Orphan>,
    /// What all of them cost per hour; `None` when the prices are unknown.
    pub hourly_usd: Option<f64>,
}

/// A teardown started to remove one orphaned deployment's resources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanCleanup {
    pub deployment_id: DeploymentId,
    pub job_id: JobId,
}

/// A live deployment's health right now, read from AWS in one go
/// (`GET /api/v1/deployments/{id}/health`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthSnapshot {
    pub deployment_id: DeploymentId,
    pub taken_at: DateTime<Utc>,
    pub group: GroupHealth,
    /// Targets the load balancer holds healthy.
    pub healthy_targets: u32,
    pub alarms: Vec<AlarmView>,
    /// The group's latest scaling activities, newest first.
    pub activities: Vec<ActivityView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupHealth {
    pub name: String,
    pub min: i32,
    pub desired: i32,
    pub max: i32,
    pub instances: Vec<InstanceHealth>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceHealth {
    pub id: String,
    /// Auto Scaling's lifecycle state: `Pending`, `InService`, `Terminating`...
    pub lifecycle: String,
    /// Auto Scaling's verdict: `Healthy` or `Unhealthy`.
    pub health: String,
    pub availability_zone: String,
    pub instance_type: Option<String>,
    pub launched_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub private_ip: Option<String>,
    /// The load balancer's verdict: `initial`, `healthy`, `unhealthy`,
    /// `draining`...; `None` when it is not a target.
    pub target_state: Option<String>,
    pub target_reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlarmView {
    pub name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    pub reason: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
    pub threshold: Option<f64>,
    pub comparison: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivityView {
    /// Auto Scaling's activity id.
    #[serde(default)]
    pub id: String,
    pub description: String,
    pub cause: String,
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// Breaking a live deployment on purpose, with the same AWS calls in the
/// sandbox as on AWS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChaosAction {
    /// EC2 `TerminateInstances`.
    Terminate,
    /// SSM Run Command: `cloudpulse-instance stress --seconds N`.
    Stress { seconds: u32 },
    /// SSM Run Command: `cloudpulse-instance fail-health --seconds N`.
    FailHealth { seconds: u32 },
}

impl ChaosAction {
    /// Longest stress or health failure one action may ask for.
    pub const MAX_SECONDS: u32 = 3_600;

    pub fn name(self) -> &'static str {
        match self {
            ChaosAction::Terminate => "terminate",
            ChaosAction::Stress { .. } => "stress",
            ChaosAction::FailHealth { .. } => "fail-health",
        }
    }
}

/// A chaos action AWS accepted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChaosAccepted {
    pub action: ChaosAction,
    pub instance_ids: Vec<String>,
    /// The Run Command's id (stress and fail-health).
    pub command_id: Option<String>,
    pub at: DateTime<Utc>,
    /// Whether the portal is timing the group's recovery (see the timeline).
    pub watching_recovery: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_round_trips() {
        for status in DeploymentStatus::ALL {
            assert_eq!(DeploymentStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(DeploymentStatus::parse("running"), None);
    }

    #[test]
    fn status_serializes_as_stored_text() {
        for status in DeploymentStatus::ALL {
            let json = serde_json::to_string(&status).expect("serialize");
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
    }

    #[test]
    fn reachability_is_tagged() {
        let json = serde_json::to_value(Reachability::Unreachable {
            reason: "connection refused".into(),
        })
        .expect("serialize");
        assert_eq!(json["state"], "unreachable");
        assert_eq!(json["reason"], "connection refused");
    }
}

/// What a preflight found before a deploy: one line per check. A deploy
/// whose preflight has a failed check is refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preflight {
    pub checks: Vec<Check>,
    /// No check failed (warnings allowed).
    pub ok: bool,
    pub checked_at: DateTime<Utc>,
}

impl Preflight {
    pub fn new(checks: Vec<Check>, checked_at: DateTime<Utc>) -> Self {
        Preflight {
            ok: !checks.iter().any(|c| c.status == CheckStatus::Fail),
            checks,
            checked_at,
        }
    }

    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == CheckStatus::Fail)
    }
}

/// One line of a preflight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub status: CheckStatus,
    /// What was found, e.g. "2 of 5 in use; this deployment needs 1".
    pub detail: String,
    /// What to do about a failure (or a warning).
    pub hint: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    /// Could not be checked, or close to a limit; does not block a deploy.
    Warn,
    Fail,
}

impl CheckStatus {
    pub fn label(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "fail",
        }
    }
}
