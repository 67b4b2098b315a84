//! The portal's SQLite database: opening, migrating and querying it.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cloudpulse_app::model::{
    Budget, DeploymentDetail, DeploymentStatus, DeploymentSummary, EventView, JobKind, JobStatus,
    JobSummary, JobView, Link, Page, ResourceView, Source, StepFailure, StepStatus, StepView,
};
use serde_json::Value;

use crate::plan::PlannedStep;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

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
    #[error("{0}")]
    Conflict(String),
}

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    ///
    /// WAL journal so readers never block the writer, foreign keys enforced,
    /// and a busy timeout so concurrent writers wait instead of failing.
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
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|e| StoreError::Invalid(e.to_string()))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|e| classify_open_error(path, e))?;
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

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A cheap round trip, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Deployments, newest first, one page at a time.
    pub async fn list_deployments(
        &self,
        status: Option<DeploymentStatus>,
        page: u32,
        per_page: u32,
    ) -> Result<Page<DeploymentSummary>, StoreError> {
        if page == 0 || per_page == 0 || per_page > 500 {
            return Err(StoreError::Invalid(format!(
                "page must be at least 1 and per_page between 1 and 500 (got page {page}, per_page {per_page})"
            )));
        }
        let status_text = status.map(DeploymentStatus::as_str);
        let offset = i64::from(page - 1) * i64::from(per_page);
        let rows: Vec<DeploymentRow> = sqlx::query_as(
            "SELECT id, name, region, status, created_at, torn_down_at,
                    json_extract(params, '$.instance_type') AS instance_type,
                    json_extract(params, '$.min') AS min,
                    json_extract(params, '$.desired') AS desired,
                    json_extract(params, '$.max') AS max,
                    json_extract(params, '$.ttl_minutes') AS ttl_minutes,
                    json_extract(params, '$.cost_cap_usd') AS cost_cap_usd,
                    expires_at, redeployed_from
             FROM deployments
             WHERE (?1 IS NULL OR status = ?1)
             ORDER BY created_at DESC, id
             LIMIT ?2 OFFSET ?3",
        )
        .bind(status_text)
        .bind(i64::from(per_page))
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let (total,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM deployments WHERE (?1 IS NULL OR status = ?1)")
                .bind(status_text)
                .fetch_one(&self.pool)
                .await?;
        let mut items: Vec<DeploymentSummary> = rows
            .into_iter()
            .map(DeploymentRow::into_summary)
            .collect::<Result<_, _>>()?;
        // The origins' names, for the page's rows only.
        let origins: Vec<&str> = items
            .iter()
            .filter_map(|d| d.redeployed_from.as_ref().map(|l| l.id.as_str()))
            .collect();
        if !origins.is_empty() {
            let names = self.names(&origins).await?;
            for item in &mut items {
                if let Some(link) = &mut item.redeployed_from {
                    link.name = names.get(&link.id).cloned().unwrap_or_default();
                }
            }
        }
        Ok(Page {
            items,
            total: u64::try_from(total).unwrap_or(0),
            page,
            per_page,
        })
    }
}

/// What a new deployment carries besides its parameters.
#[derive(Clone, Debug, Default)]
pub struct NewDeployment<'a> {
    /// Time until its TTL runs out, on the cloud's clock; `None` for no TTL.
    pub ttl: Option<Duration>,
    /// The torn-down deployment it is deployed again from.
    pub redeployed_from: Option<&'a str>,
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
    pub deployment_id: String,
    pub job_id: String,
    /// False when an earlier request with the same key made them.
    pub fresh: bool,
}

/// One recorded AWS resource.
pub struct NewResource<'a> {
    pub kind: &'a str,
    pub aws_id: &'a str,
    pub arn: Option<&'a str>,
    pub step_key: &'a str,
    pub region: &'a str,
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

impl Store {
    /// Writes a deployment, its deploy job and every step of the plan in one
    /// transaction: either all of it exists or none of it.
    pub async fn create_deployment(
        &self,
        name: &str,
        region: &str,
        params: &Value,
        job: NewJob<'_>,
    ) -> Result<Created, StoreError> {
        self.create_deployment_with(name, region, params, job, NewDeployment::default())
            .await
    }

    /// [`Self::create_deployment`] with a TTL and an origin.
    pub async fn create_deployment_with(
        &self,
        name: &str,
        region: &str,
        params: &Value,
        job: NewJob<'_>,
        extra: NewDeployment<'_>,
    ) -> Result<Created, StoreError> {
        if let Some(existing) = self.job_by_idempotency_key(job.idempotency_key).await? {
            return Ok(existing);
        }
        let deployment_id = uuid::Uuid::new_v4().to_string();
        let at = now();
        let expires_at = extra
            .ttl
            .and_then(|ttl| chrono::TimeDelta::from_std(ttl).ok())
            .map(|ttl| at + ttl);
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO deployments
                 (id, name, region, status, params, created_at, updated_at, expires_at, redeployed_from)
             VALUES (?1, ?2, ?3, 'deploying', ?4, ?5, ?5, ?6, ?7)",
        )
        .bind(&deployment_id)
        .bind(name)
        .bind(region)
        .bind(params.to_string())
        .bind(at)
        .bind(expires_at)
        .bind(extra.redeployed_from)
        .execute(&mut *tx)
        .await;
        if let Err(error) = inserted {
            if is_unique_violation(&error) {
                return Err(StoreError::NameInUse(name.to_string()));
            }
            return Err(error.into());
        }
        let job_id = match insert_job(&mut tx, &deployment_id, &job, at).await {
            Ok(id) => id,
            Err(StoreError::Query(e)) if is_unique_violation(&e) => {
                // A concurrent request with the same key won the race.
                drop(tx);
                return self
                    .job_by_idempotency_key(job.idempotency_key)
                    .await?
                    .ok_or(StoreError::Query(e));
            }
            Err(e) => return Err(e),
        };
        insert_event(
            &mut tx,
            &deployment_id,
            "job",
            Some(job.source.as_str()),
            &format!("{} requested", job.kind.as_str()),
        )
        .await?;
        tx.commit().await?;
        Ok(Created {
            deployment_id,
            job_id,
            fresh: true,
        })
    }

    /// Adds a job to an existing deployment unless it already has an
    /// unfinished one (concurrent requests create one job) and sets the
    /// deployment's status, all in one transaction.
    pub async fn create_job(
        &self,
        deployment_id: &str,
        status: DeploymentStatus,
        job: NewJob<'_>,
    ) -> Result<Created, StoreError> {
        if let Some(existing) = self.job_by_idempotency_key(job.idempotency_key).await? {
            return Ok(existing);
        }
        let at = now();
        let mut tx = self.pool.begin().await?;
        // BEGIN IMMEDIATE semantics: take the write lock before reading.
        sqlx::query("UPDATE deployments SET updated_at = updated_at WHERE id = ?1")
            .bind(deployment_id)
            .execute(&mut *tx)
            .await?;
        let running: Option<(String, String)> = sqlx::query_as(
            "SELECT id, kind FROM jobs WHERE deployment_id = ?1 AND status IN ('pending', 'running')",
        )
        .bind(deployment_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((id, kind)) = running {
            if kind == job.kind.as_str() {
                return Ok(Created {
                    deployment_id: deployment_id.to_string(),
                    job_id: id,
                    fresh: false,
                });
            }
            return Err(StoreError::Conflict(format!(
                "the deployment has an unfinished {kind} job ({id}); cancel it or wait for it"
            )));
        }
        let job_id = insert_job(&mut tx, deployment_id, &job, at).await?;
        sqlx::query("UPDATE deployments SET status = ?2, updated_at = ?3 WHERE id = ?1")
            .bind(deployment_id)
            .bind(status.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        insert_event(
            &mut tx,
            deployment_id,
            "job",
            Some(job.source.as_str()),
            &format!("{} requested", job.kind.as_str()),
        )
        .await?;
        tx.commit().await?;
        Ok(Created {
            deployment_id: deployment_id.to_string(),
            job_id,
            fresh: true,
        })
    }

    /// The job a request with this idempotency key started, if any.
    pub async fn job_by_idempotency_key(
        &self,
        key: Option<&str>,
    ) -> Result<Option<Created>, StoreError> {
        let Some(key) = key else { return Ok(None) };
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT id, deployment_id FROM jobs WHERE idempotency_key = ?1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(job_id, deployment_id)| Created {
            deployment_id,
            job_id,
            fresh: false,
        }))
    }

    /// Jobs a crash interrupted (or that never started).
    pub async fn unfinished_jobs(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM jobs WHERE status IN ('pending', 'running') ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    pub async fn job(&self, job_id: &str) -> Result<JobView, StoreError> {
        let row: Option<JobRow> = sqlx::query_as(
            "SELECT id, deployment_id, kind, status, source, error, cancel_requested,
                    created_at, started_at, finished_at
             FROM jobs WHERE id = ?1",
        )
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or_else(|| StoreError::NotFound {
            what: "job",
            id: job_id.to_string(),
        })?;
        let steps: Vec<StepRow> = sqlx::query_as(
            "SELECT key, depends_on, status, attempts, started_at, finished_at, progress,
                    error_code, error_message, error_hint, request_id, outputs
             FROM steps WHERE job_id = ?1 ORDER BY rowid",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        row.into_view(steps)
    }

    pub async fn job_deployment(&self, job_id: &str) -> Result<(String, Value), StoreError> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT d.id, d.params FROM jobs j JOIN deployments d ON d.id = j.deployment_id WHERE j.id = ?1",
        )
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        let (id, params) = row.ok_or_else(|| StoreError::NotFound {
            what: "job",
            id: job_id.to_string(),
        })?;
        let params = serde_json::from_str(&params).map_err(|e| {
            StoreError::Invalid(format!("deployment {id} has unreadable params: {e}"))
        })?;
        Ok((id, params))
    }

    pub async fn set_job_status(
        &self,
        job_id: &str,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let at = now();
        sqlx::query(
            "UPDATE jobs SET status = ?2, error = ?3,
                 started_at = COALESCE(started_at, ?4),
                 finished_at = CASE WHEN ?2 IN ('done', 'failed', 'cancelled') THEN ?4 ELSE NULL END
             WHERE id = ?1",
        )
        .bind(job_id)
        .bind(status.as_str())
        .bind(error)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn request_cancel(&self, job_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 AND status IN ('pending', 'running')",
        )
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Steps interrupted by a crash go back to pending; their actions are
    /// idempotent, so running them again adopts what they had made.
    pub async fn reset_interrupted_steps(&self, job_id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE steps SET status = 'pending', progress = NULL WHERE job_id = ?1 AND status = 'running'",
        )
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Failed and skipped steps go back to pending, for a retry.
    pub async fn reset_failed_steps(&self, job_id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE steps SET status = 'pending', progress = NULL, finished_at = NULL
             WHERE job_id = ?1 AND status IN ('failed', 'skipped')",
        )
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE jobs SET status = 'pending', error = NULL, finished_at = NULL, cancel_requested = 0 WHERE id = ?1",
        )
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn step_started(&self, job_id: &str, key: &str) -> Result<u32, StoreError> {
        let (attempts,): (i64,) = sqlx::query_as(
            "UPDATE steps SET status = 'running', attempts = attempts + 1,
                 started_at = COALESCE(started_at, ?3), progress = NULL
             WHERE job_id = ?1 AND key = ?2 RETURNING attempts",
        )
        .bind(job_id)
        .bind(key)
        .bind(now())
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(attempts).unwrap_or(u32::MAX))
    }

    /// A retryable failure: the step stays running, the error is kept so the
    /// job shows why it is retrying.
    pub async fn step_retrying(
        &self,
        job_id: &str,
        key: &str,
        error: &StepFailure,
    ) -> Result<u32, StoreError> {
        let (attempts,): (i64,) = sqlx::query_as(
            "UPDATE steps SET attempts = attempts + 1, error_code = ?3, error_message = ?4,
                 error_hint = ?5, request_id = ?6
             WHERE job_id = ?1 AND key = ?2 RETURNING attempts",
        )
        .bind(job_id)
        .bind(key)
        .bind(&error.code)
        .bind(&error.message)
        .bind(&error.hint)
        .bind(&error.request_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(attempts).unwrap_or(u32::MAX))
    }

    pub async fn step_progress(
        &self,
        job_id: &str,
        key: &str,
        progress: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE steps SET progress = ?3 WHERE job_id = ?1 AND key = ?2")
            .bind(job_id)
            .bind(key)
            .bind(progress)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn step_done(
        &self,
        job_id: &str,
        key: &str,
        outputs: &Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE steps SET status = 'done', finished_at = ?3, outputs = ?4, progress = NULL
             WHERE job_id = ?1 AND key = ?2",
        )
        .bind(job_id)
        .bind(key)
        .bind(now())
        .bind(outputs.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn step_failed(
        &self,
        job_id: &str,
        key: &str,
        error: &StepFailure,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE steps SET status = 'failed', finished_at = ?3, progress = NULL, error_code = ?4,
                 error_message = ?5, error_hint = ?6, request_id = ?7
             WHERE job_id = ?1 AND key = ?2",
        )
        .bind(job_id)
        .bind(key)
        .bind(now())
        .bind(&error.code)
        .bind(&error.message)
        .bind(&error.hint)
        .bind(&error.request_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn steps_skipped(&self, job_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE steps SET status = 'skipped' WHERE job_id = ?1 AND status = 'pending'")
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_deployment_status(
        &self,
        deployment_id: &str,
        status: DeploymentStatus,
        outputs: Option<&Value>,
    ) -> Result<(), StoreError> {
        let at = now();
        sqlx::query(
            "UPDATE deployments SET status = ?2, updated_at = ?3,
                 outputs = COALESCE(?4, outputs),
                 torn_down_at = CASE WHEN ?2 = 'torn_down' THEN ?3 ELSE torn_down_at END
             WHERE id = ?1",
        )
        .bind(deployment_id)
        .bind(status.as_str())
        .bind(at)
        .bind(outputs.map(Value::to_string))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Name and status of a deployment, or `None` if this database never
    /// heard of it.
    pub async fn deployment_status(
        &self,
        id: &str,
    ) -> Result<Option<(String, DeploymentStatus)>, StoreError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT name, status FROM deployments WHERE id = ?1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(name, status)| {
            DeploymentStatus::parse(&status)
                .map(|status| (name, status))
                .ok_or_else(|| StoreError::Invalid(format!("bad status {status:?}")))
        })
        .transpose()
    }

    /// Name, region and status of a deployment: what a poll of a live
    /// deployment needs, without its history.
    pub async fn deployment_brief(
        &self,
        id: &str,
    ) -> Result<(String, String, DeploymentStatus), StoreError> {
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT name, region, status FROM deployments WHERE id = ?1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let (name, region, status) = row.ok_or_else(|| StoreError::NotFound {
            what: "deployment",
            id: id.to_string(),
        })?;
        let status = DeploymentStatus::parse(&status)
            .ok_or_else(|| StoreError::Invalid(format!("bad status {status:?}")))?;
        Ok((name, region, status))
    }

    /// Gives resources that outlived their record a deployment to belong to
    /// again: inserts one under their deployment id, or reopens a torn-down
    /// one, as `failed` and named `name`, so a teardown job can take them.
    /// A deployment that is not torn down is left as it is.
    pub async fn reopen_for_cleanup(
        &self,
        id: &str,
        name: &str,
        region: &str,
        params: &Value,
        why: &str,
    ) -> Result<(), StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "INSERT INTO deployments (id, name, region, status, params, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'failed', ?4, ?5, ?5)
             ON CONFLICT (id) DO UPDATE SET status = 'failed', name = excluded.name,
                 updated_at = excluded.updated_at, torn_down_at = NULL
             WHERE deployments.status = 'torn_down'",
        )
        .bind(id)
        .bind(name)
        .bind(region)
        .bind(params.to_string())
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(|e| match e {
            e if is_unique_violation(&e) => StoreError::NameInUse(name.to_string()),
            e => StoreError::Query(e),
        })?
        .rows_affected();
        if changed > 0 {
            insert_event(&mut tx, id, "orphans", Some("system"), why).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records an AWS resource the moment its id is known. Recording it
    /// again is harmless.
    pub async fn record_resource(
        &self,
        deployment_id: &str,
        r: &NewResource<'_>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO resources (deployment_id, kind, aws_id, arn, step_key, region, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (deployment_id, kind, aws_id)
             DO UPDATE SET deleted_at = NULL, arn = COALESCE(excluded.arn, resources.arn)",
        )
        .bind(deployment_id)
        .bind(r.kind)
        .bind(r.aws_id)
        .bind(r.arn)
        .bind(r.step_key)
        .bind(r.region)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn resource_deleted(
        &self,
        deployment_id: &str,
        kind: &str,
        aws_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE resources SET deleted_at = ?4
             WHERE deployment_id = ?1 AND kind = ?2 AND aws_id = ?3 AND deleted_at IS NULL",
        )
        .bind(deployment_id)
        .bind(kind)
        .bind(aws_id)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Live resources of a deployment, optionally of one kind.
    pub async fn resources(
        &self,
        deployment_id: &str,
        kind: Option<&str>,
    ) -> Result<Vec<ResourceView>, StoreError> {
        let rows: Vec<ResourceRow> = sqlx::query_as(
            "SELECT kind, aws_id, arn, step_key, region, created_at, deleted_at FROM resources
             WHERE deployment_id = ?1 AND (?2 IS NULL OR kind = ?2)
             ORDER BY created_at, kind, aws_id",
        )
        .bind(deployment_id)
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ResourceRow::into_view).collect())
    }

    /// A deployment's latest `limit` events, newest first.
    pub async fn events(
        &self,
        deployment_id: &str,
        limit: u32,
    ) -> Result<Vec<EventView>, StoreError> {
        let rows: Vec<(DateTime<Utc>, String, Option<String>, String)> = sqlx::query_as(
            "SELECT at, kind, source, message FROM events
             WHERE deployment_id = ?1 ORDER BY at DESC, id DESC LIMIT ?2",
        )
        .bind(deployment_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(at, kind, source, message)| EventView {
                at,
                kind,
                source,
                message,
            })
            .collect())
    }

    pub async fn add_event(
        &self,
        deployment_id: &str,
        kind: &str,
        source: Option<&str>,
        message: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_event(&mut conn, deployment_id, kind, source, message).await
    }

    /// An event with facts a program reads back (`data`, JSON).
    pub async fn add_event_data(
        &self,
        deployment_id: &str,
        kind: &str,
        source: Option<&str>,
        message: &str,
        data: &Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO events (deployment_id, at, kind, source, message, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(deployment_id)
        .bind(now())
        .bind(kind)
        .bind(source)
        .bind(message)
        .bind(data.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Names of deployments by id.
    async fn names(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, name FROM deployments WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(list)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// A deployment's TTL, deadline and cost cap.
    pub async fn budget(&self, id: &str) -> Result<BudgetRow, StoreError> {
        let row: Option<BudgetQueryRow> = sqlx::query_as(
            "SELECT id, name, status, created_at, expires_at,
                    json_extract(params, '$.ttl_minutes') AS ttl_minutes,
                    json_extract(params, '$.cost_cap_usd') AS cost_cap_usd
             FROM deployments WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| StoreError::NotFound {
            what: "deployment",
            id: id.to_string(),
        })?
        .into_budget()
    }

    /// Deployments that still stand and have a TTL or a cost cap: what the
    /// budget guard watches.
    pub async fn guarded(&self) -> Result<Vec<(String, BudgetRow)>, StoreError> {
        let rows: Vec<BudgetQueryRow> = sqlx::query_as(
            "SELECT id, name, status, created_at, expires_at,
                    json_extract(params, '$.ttl_minutes') AS ttl_minutes,
                    json_extract(params, '$.cost_cap_usd') AS cost_cap_usd
             FROM deployments
             WHERE status <> 'torn_down'
               AND (expires_at IS NOT NULL OR json_extract(params, '$.cost_cap_usd') IS NOT NULL)",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let id = row.id.clone();
                row.into_budget().map(|budget| (id, budget))
            })
            .collect()
    }

    /// Sets a standing deployment's TTL (0 = none), deadline and cost cap,
    /// and says so on its timeline, in one transaction.
    pub async fn set_budget(
        &self,
        id: &str,
        ttl_minutes: u32,
        expires_at: Option<DateTime<Utc>>,
        cost_cap_usd: Option<f64>,
        source: Source,
        message: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE deployments
             SET params = json_set(params, '$.ttl_minutes', ?2, '$.cost_cap_usd', ?3),
                 expires_at = ?4, updated_at = ?5
             WHERE id = ?1 AND status <> 'torn_down'",
        )
        .bind(id)
        .bind(i64::from(ttl_minutes))
        .bind(cost_cap_usd)
        .bind(expires_at)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "deployment {id} is torn down (or unknown); a budget guards only a deployment that stands"
            )));
        }
        insert_event(&mut tx, id, "budget", Some(source.as_str()), message).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn deployment(&self, id: &str) -> Result<DeploymentDetail, StoreError> {
        let row: Option<DetailRow> = sqlx::query_as(
            "SELECT id, name, region, status, params, outputs, created_at, updated_at, torn_down_at,
                    expires_at, redeployed_from
             FROM deployments WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or_else(|| StoreError::NotFound {
            what: "deployment",
            id: id.to_string(),
        })?;
        let jobs: Vec<JobSummaryRow> = sqlx::query_as(
            "SELECT id, kind, status, source, created_at, finished_at FROM jobs
             WHERE deployment_id = ?1 ORDER BY created_at DESC, rowid DESC",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let jobs = jobs
            .into_iter()
            .map(JobSummaryRow::into_summary)
            .collect::<Result<Vec<_>, _>>()?;
        let current_job = match jobs.first() {
            Some(job) => Some(self.job(&job.id).await?),
            None => None,
        };
        let status = DeploymentStatus::parse(&row.status)
            .ok_or_else(|| StoreError::Invalid(format!("bad status {:?}", row.status)))?;
        let params = json_or_null(&row.params);
        let budget = Budget {
            ttl_minutes: ttl_minutes(params["ttl_minutes"].as_i64()),
            expires_at: row.expires_at,
            warn_from: None,
            cost_cap_usd: params["cost_cap_usd"].as_f64(),
        };
        let redeployed_from = match &row.redeployed_from {
            Some(origin) => self
                .names(&[origin])
                .await?
                .remove(origin)
                .map(|name| Link {
                    id: origin.clone(),
                    name,
                }),
            None => None,
        };
        let redeployed_as: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, name FROM deployments WHERE redeployed_from = ?1 ORDER BY created_at DESC",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(DeploymentDetail {
            budget,
            redeployed_from,
            redeployed_as: redeployed_as
                .into_iter()
                .map(|(id, name)| Link { id, name })
                .collect(),
            resources: self.resources(id, None).await?,
            id: row.id,
            name: row.name,
            region: row.region,
            status,
            params,
            outputs: json_or_null(&row.outputs),
            created_at: row.created_at,
            updated_at: row.updated_at,
            torn_down_at: row.torn_down_at,
            current_job,
            jobs,
            events: self.events(id, 100).await?,
        })
    }
}

async fn insert_job(
    conn: &mut sqlx::SqliteConnection,
    deployment_id: &str,
    job: &NewJob<'_>,
    at: DateTime<Utc>,
) -> Result<String, StoreError> {
    let job_id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO jobs (id, deployment_id, kind, status, source, idempotency_key, created_at)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6)",
    )
    .bind(&job_id)
    .bind(deployment_id)
    .bind(job.kind.as_str())
    .bind(job.source.as_str())
    .bind(job.idempotency_key)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    for step in job.steps {
        sqlx::query(
            "INSERT INTO steps (job_id, key, depends_on, status) VALUES (?1, ?2, ?3, 'pending')",
        )
        .bind(&job_id)
        .bind(&step.key)
        .bind(serde_json::to_string(&step.depends_on).unwrap_or_else(|_| "[]".into()))
        .execute(&mut *conn)
        .await?;
    }
    Ok(job_id)
}

async fn insert_event(
    conn: &mut sqlx::SqliteConnection,
    deployment_id: &str,
    kind: &str,
    source: Option<&str>,
    message: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (deployment_id, at, kind, source, message) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(deployment_id)
    .bind(now())
    .bind(kind)
    .bind(source)
    .bind(message)
    .execute(&mut *conn)
    .await?;
    Ok(())
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

#[derive(FromRow)]
struct JobRow {
    id: String,
    deployment_id: String,
    kind: String,
    status: String,
    source: String,
    error: Option<String>,
    cancel_requested: i64,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl JobRow {
    fn into_view(self, steps: Vec<StepRow>) -> Result<JobView, StoreError> {
        Ok(JobView {
            kind: job_kind(&self.kind)?,
            status: job_status(&self.status)?,
            id: self.id,
            deployment_id: self.deployment_id,
            source: self.source,
            error: self.error,
            cancel_requested: self.cancel_requested != 0,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            steps: steps
                .into_iter()
                .map(StepRow::into_view)
                .collect::<Result<_, _>>()?,
        })
    }
}

#[derive(FromRow)]
struct StepRow {
    key: String,
    depends_on: String,
    status: String,
    attempts: i64,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    progress: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    error_hint: Option<String>,
    request_id: Option<String>,
    outputs: String,
}

impl StepRow {
    fn into_view(self) -> Result<StepView, StoreError> {
        let error = self.error_code.map(|code| StepFailure {
            code,
            message: self.error_message.unwrap_or_default(),
            hint: self.error_hint,
            request_id: self.request_id,
        });
        Ok(StepView {
            status: StepStatus::parse(&self.status)
                .ok_or_else(|| StoreError::Invalid(format!("bad step status {:?}", self.status)))?,
            depends_on: serde_json::from_str(&self.depends_on).unwrap_or_default(),
            key: self.key,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            started_at: self.started_at,
            finished_at: self.finished_at,
            progress: self.progress,
            error,
            outputs: json_or_null(&self.outputs),
        })
    }
}

#[derive(FromRow)]
struct ResourceRow {
    kind: String,
    aws_id: String,
    arn: Option<String>,
    step_key: String,
    region: String,
    created_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
}

impl ResourceRow {
    fn into_view(self) -> ResourceView {
        ResourceView {
            kind: self.kind,
            aws_id: self.aws_id,
            arn: self.arn,
            step_key: self.step_key,
            region: self.region,
            created_at: self.created_at,
            deleted_at: self.deleted_at,
        }
    }
}

#[derive(FromRow)]
struct DetailRow {
    id: String,
    name: String,
    region: String,
    status: String,
    params: String,
    outputs: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    torn_down_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    redeployed_from: Option<String>,
}

/// A stored TTL as the budget shows it: `None` for none (stored as 0).
fn ttl_minutes(stored: Option<i64>) -> Option<u32> {
    stored
        .and_then(|m| u32::try_from(m).ok())
        .filter(|m| *m > 0)
}

#[derive(FromRow)]
struct BudgetQueryRow {
    id: String,
    name: String,
    status: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    ttl_minutes: Option<i64>,
    cost_cap_usd: Option<f64>,
}

impl BudgetQueryRow {
    fn into_budget(self) -> Result<BudgetRow, StoreError> {
        Ok(BudgetRow {
            status: DeploymentStatus::parse(&self.status)
                .ok_or_else(|| StoreError::Invalid(format!("bad status {:?}", self.status)))?,
            name: self.name,
            created_at: self.created_at,
            ttl_minutes: ttl_minutes(self.ttl_minutes),
            expires_at: self.expires_at,
            cost_cap_usd: self.cost_cap_usd,
        })
    }
}

#[derive(FromRow)]
struct JobSummaryRow {
    id: String,
    kind: String,
    status: String,
    source: String,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl JobSummaryRow {
    fn into_summary(self) -> Result<JobSummary, StoreError> {
        Ok(JobSummary {
            kind: job_kind(&self.kind)?,
            status: job_status(&self.status)?,
            id: self.id,
            source: self.source,
            created_at: self.created_at,
            finished_at: self.finished_at,
        })
    }
}

#[derive(FromRow)]
struct DeploymentRow {
    id: String,
    name: String,
    region: String,
    status: String,
    created_at: DateTime<Utc>,
    torn_down_at: Option<DateTime<Utc>>,
    instance_type: Option<String>,
    min: Option<i64>,
    desired: Option<i64>,
    max: Option<i64>,
    ttl_minutes: Option<i64>,
    cost_cap_usd: Option<f64>,
    expires_at: Option<DateTime<Utc>>,
    redeployed_from: Option<String>,
}

impl DeploymentRow {
    fn into_summary(self) -> Result<DeploymentSummary, StoreError> {
        let status = DeploymentStatus::parse(&self.status).ok_or_else(|| {
            StoreError::Invalid(format!(
                "deployment {} has unknown status {:?}",
                self.id, self.status
            ))
        })?;
        Ok(DeploymentSummary {
            id: self.id,
            name: self.name,
            region: self.region,
            status,
            created_at: self.created_at,
            torn_down_at: self.torn_down_at,
            size: match (self.instance_type, self.min, self.desired, self.max) {
                (Some(kind), Some(min), Some(desired), Some(max)) => {
                    Some(format!("{desired} × {kind} ({min}-{max})"))
                }
                _ => None,
            },
            budget: Budget {
                ttl_minutes: ttl_minutes(self.ttl_minutes),
                expires_at: self.expires_at,
                warn_from: None,
                cost_cap_usd: self.cost_cap_usd,
            },
            // Named by the list query.
            redeployed_from: self.redeployed_from.map(|id| Link {
                id,
                name: String::new(),
            }),
            // The telemetry fills these in.
            cost_usd: None,
            availability_pct: None,
            idle: None,
        })
    }
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
