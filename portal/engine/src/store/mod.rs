//! The portal's SQLite database: opening, migrating and querying it.
//!
//! One module per table or concern, each a handful of small queries on
//! [`Store`]; the pool itself stays inside this module tree.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cloudpulse_core::ids::{DeploymentId, JobId};
use cloudpulse_core::model::{
    Budget, DeploymentDetail, DeploymentStatus, DeploymentSummary, EventKind, EventView, JobKind,
    JobStatus, JobSummary, JobView, Link, Page, ResourceView, Source, StepFailure, StepStatus,
    StepView,
};
use cloudpulse_core::params::DeploymentParams;
use cloudpulse_core::resource::ResourceKind;
use serde_json::Value;

use crate::plan::PlannedStep;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

mod budget;
mod deployments;
mod drift;
mod events;
mod jobs;
mod plans;
mod resources;
mod steps;

use budget::ttl_minutes;
pub use deployments::{DeploymentRecord, LiveDeployment};
use events::insert_event;
pub use events::{write_event, TimelineEvent};
use jobs::{insert_job, live_and_idle, lock_deployment, unfinished_job, JobSummaryRow};
pub use plans::{PlanApply, StoredPlan};
pub use resources::ResourceSpan;
use steps::StepRow;

/// How long a writer waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use database {path}: its folder {folder} does not exist; create it or pass another --database")]
    NoFolder { path: PathBuf, folder: PathBuf },
    #[error("cannot open database {path}: {reason}; check that the file and its folder are writable, or pass another --database")]
    Unwritable { path: PathBuf, reason: String },
    #[error("database {path} is corrupt or not a CloudPulse database ({reason}); move it aside or pass another --database")]
    Corrupt { path: PathBuf, reason: String },
    #[error("database {path} was written by a newer CloudPulse (migration {version} is unknown here); upgrade CloudPulse or pass another --database")]
    TooNew { path: PathBuf, version: i64 },
    #[error("cannot migrate database {path}: {source}")]
    Migrate {
        path: PathBuf,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "a deployment named {0:?} already exists; choose another name or tear that one down first"
    )]
    NameInUse(String),
    #[error("no {what} with id {id:?}")]
    NotFound { what: &'static str, id: String },
    /// A job of the deployment is unfinished, so another cannot start.
    #[error("the deployment has an unfinished {kind} job ({job_id}); cancel it or wait for it")]
    Busy { kind: String, job_id: JobId },
    /// A change needs a live deployment and this one is not.
    #[error("deployment {id} is {status}; a change applies only to a live deployment (redeploy a torn-down one)")]
    NotLive { id: DeploymentId, status: String },
    /// A plan was made against parameters that have changed since.
    #[error("plan {plan} was made against version {made_at} of the deployment's parameters; they are at version {now} now (an apply or a budget change since): make a new plan")]
    Stale {
        plan: cloudpulse_core::ids::PlanId,
        made_at: i64,
        now: i64,
    },
    /// The deployment is torn down or unknown, and the change needs one
    /// that stands.
    #[error("deployment {id} is torn down (or unknown); {needs}")]
    NotStanding {
        id: DeploymentId,
        needs: &'static str,
    },
}

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`, with
    /// [`connect`]'s settings.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !folder.is_dir() {
            return Err(StoreError::NoFolder {
                path: path.to_path_buf(),
                folder,
            });
        }
        let pool = connect(path, 8).await?;
        let store = Store {
            pool,
            path: path.to_path_buf(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = sqlx::migrate!("../../migrations");
        // A file that is not SQLite at all only shows itself on first read.
        let check: Result<(String,), sqlx::Error> = sqlx::query_as("PRAGMA quick_check")
            .fetch_one(&self.pool)
            .await;
        match check {
            Ok((verdict,)) if verdict == "ok" => {}
            Ok((verdict,)) => {
                return Err(StoreError::Corrupt {
                    path: self.path.clone(),
                    reason: verdict,
                })
            }
            Err(e) => return Err(classify_open_error(&self.path, e)),
        }
        migrator.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::VersionMissing(version) => StoreError::TooNew {
                path: self.path.clone(),
                version,
            },
            sqlx::migrate::MigrateError::Execute(inner) => classify_open_error(&self.path, inner),
            other => StoreError::Migrate {
                path: self.path.clone(),
                source: other,
            },
        })
    }

    /// Closes every connection; for a clean exit (and tests that reopen).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A cheap round trip, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// A pool on the database file at `path`, with the portal's settings: WAL
/// journal so readers never block the writer, foreign keys enforced, and a
/// busy timeout so concurrent writers wait instead of failing. [`Store`]
/// keeps its own; a room with tables of its own in the same file (the
/// telemetry) opens another, so no room reaches into another's pool.
pub async fn connect(path: &Path, max_connections: u32) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str("sqlite:")
        .map_err(|e| StoreError::Invalid(e.to_string()))?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
        .map_err(|e| classify_open_error(path, e))
}

/// What a new deployment carries besides its parameters.
#[derive(Clone, Debug, Default)]
pub struct NewDeployment<'a> {
    /// Time until its TTL runs out, on the cloud's clock; `None` for no TTL.
    pub ttl: Option<Duration>,
    /// The torn-down deployment it is deployed again from.
    pub redeployed_from: Option<&'a DeploymentId>,
}

/// A deployment's budget as the guard and the budget editor need it.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetRow {
    pub name: String,
    pub status: DeploymentStatus,
    pub created_at: DateTime<Utc>,
    pub ttl_minutes: Option<u32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub cost_cap_usd: Option<f64>,
}

/// A new job as the engine wants it stored.
pub struct NewJob<'a> {
    pub kind: JobKind,
    pub source: Source,
    pub idempotency_key: Option<&'a str>,
    pub steps: &'a [PlannedStep],
}

/// What `create_deployment` made, or found under the same idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub deployment_id: DeploymentId,
    pub job_id: JobId,
    /// False when an earlier request with the same key made them.
    pub fresh: bool,
}

/// One recorded AWS resource.
pub struct NewResource<'a> {
    pub kind: ResourceKind,
    pub aws_id: &'a str,
    pub arn: Option<&'a str>,
    pub step_key: &'a str,
    pub region: &'a str,
}

fn not_found(what: &'static str, id: &str) -> StoreError {
    StoreError::NotFound {
        what,
        id: id.to_string(),
    }
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn job_kind(text: &str) -> Result<JobKind, StoreError> {
    JobKind::parse(text).ok_or_else(|| StoreError::Invalid(format!("bad job kind {text:?}")))
}

fn job_status(text: &str) -> Result<JobStatus, StoreError> {
    JobStatus::parse(text).ok_or_else(|| StoreError::Invalid(format!("bad job status {text:?}")))
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

fn json_or_null(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Turns SQLite's terse codes into errors that say what to fix.
fn classify_open_error(path: &Path, error: sqlx::Error) -> StoreError {
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    let reason = error.to_string();
    // SQLite primary result codes: 26 NOTADB, 11 CORRUPT, 14 CANTOPEN, 8 READONLY.
    let primary = code
        .as_deref()
        .and_then(|c| c.parse::<i64>().ok())
        .map(|c| c & 0xff);
    match primary {
        Some(26) | Some(11) => StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        },
        Some(14) | Some(8) | Some(23) => StoreError::Unwritable {
            path: path.to_path_buf(),
            reason,
        },
        _ if reason.contains("not a database") || reason.contains("malformed") => {
            StoreError::Corrupt {
                path: path.to_path_buf(),
                reason,
            }
        }
        _ if reason.contains("readonly") || reason.contains("unable to open") => {
            StoreError::Unwritable {
                path: path.to_path_buf(),
                reason,
            }
        }
        _ => StoreError::Query(error),
    }
}
