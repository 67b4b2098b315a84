//! Jobs: creating one (once per idempotency key), reading it with its
//! steps, its status and cancellation.

use super::*;

impl Store {
    /// Adds a job to an existing deployment unless it already has an
    /// unfinished one (concurrent requests create one job) and sets the
    /// deployment's status, all in one transaction.
    pub async fn create_job(
        &self,
        deployment_id: &DeploymentId,
        status: DeploymentStatus,
        job: NewJob<'_>,
    ) -> Result<Created, StoreError> {
        if let Some(existing) = self.job_by_idempotency_key(job.idempotency_key).await? {
            return Ok(existing);
        }
        let at = now();
        let mut tx = self.pool.begin().await?;
        lock_deployment(&mut tx, deployment_id).await?;
        if let Some((id, kind)) = unfinished_job(&mut tx, deployment_id).await? {
            if kind == job.kind.as_str() {
                return Ok(Created {
                    deployment_id: deployment_id.clone(),
                    job_id: id.into(),
                    fresh: false,
                });
            }
            return Err(StoreError::Busy {
                kind: kind.to_string(),
                job_id: id.into(),
            });
        }
        let job_id = insert_job(&mut tx, deployment_id, &job, at).await?;
        sqlx::query("UPDATE deployments SET status = ?2, updated_at = ?3 WHERE id = ?1")
            .bind(deployment_id.as_str())
            .bind(status.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        insert_event(
            &mut tx,
            deployment_id,
            EventKind::Job,
            Some(job.source.as_str()),
            &format!("{} requested", job.kind.as_str()),
        )
        .await?;
        tx.commit().await?;
        Ok(Created {
            deployment_id: deployment_id.clone(),
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
            deployment_id: deployment_id.into(),
            job_id: job_id.into(),
            fresh: false,
        }))
    }

    /// Jobs a crash interrupted (or that never started).
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobId>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM jobs WHERE status IN ('pending', 'running') ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id.into()).collect())
    }

    pub async fn job(&self, job_id: &JobId) -> Result<JobView, StoreError> {
        let row: Option<JobRow> = sqlx::query_as(
            "SELECT id, deployment_id, kind, status, source, error, cancel_requested,
                    created_at, started_at, finished_at, waiting
             FROM jobs WHERE id = ?1",
        )
        .bind(job_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or_else(|| not_found("job", job_id.as_str()))?;
        let steps: Vec<StepRow> = sqlx::query_as(
            "SELECT key, depends_on, status, attempts, started_at, finished_at, progress,
                    error_code, error_message, error_hint, request_id, outputs
             FROM steps WHERE job_id = ?1 ORDER BY rowid",
        )
        .bind(job_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        row.into_view(steps)
    }

    pub async fn job_deployment(
        &self,
        job_id: &JobId,
    ) -> Result<(DeploymentId, Value), StoreError> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT d.id, d.params FROM jobs j JOIN deployments d ON d.id = j.deployment_id WHERE j.id = ?1",
        )
        .bind(job_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let (id, params) = row.ok_or_else(|| not_found("job", job_id.as_str()))?;
        let params = serde_json::from_str(&params).map_err(|e| {
            StoreError::Invalid(format!("deployment {id} has unreadable params: {e}"))
        })?;
        Ok((id.into(), params))
    }

    pub async fn set_job_status(
        &self,
        job_id: &JobId,
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
        .bind(job_id.as_str())
        .bind(status.as_str())
        .bind(error)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What a job waits for before its first step, or `None` once it runs.
    pub async fn set_job_waiting(
        &self,
        job_id: &JobId,
        waiting: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET waiting = ?2 WHERE id = ?1")
            .bind(job_id.as_str())
            .bind(waiting)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn request_cancel(&self, job_id: &JobId) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 AND status IN ('pending', 'running')",
        )
        .bind(job_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Takes the database's write lock for the rest of the transaction (the
/// effect of BEGIN IMMEDIATE), so what it reads next stays true until it
/// commits.
pub(super) async fn lock_deployment(
    conn: &mut sqlx::SqliteConnection,
    deployment_id: &DeploymentId,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE deployments SET updated_at = updated_at WHERE id = ?1")
        .bind(deployment_id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The deployment's pending or running job, as (id, kind).
pub(super) async fn unfinished_job(
    conn: &mut sqlx::SqliteConnection,
    deployment_id: &DeploymentId,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, kind FROM jobs WHERE deployment_id = ?1 AND status IN ('pending', 'running')",
    )
    .bind(deployment_id.as_str())
    .fetch_optional(&mut *conn)
    .await?)
}

pub(super) async fn insert_job(
    conn: &mut sqlx::SqliteConnection,
    deployment_id: &DeploymentId,
    job: &NewJob<'_>,
    at: DateTime<Utc>,
) -> Result<JobId, StoreError> {
    // The one place a job id is made.
    let job_id = JobId::from(uuid::Uuid::new_v4().to_string());
    sqlx::query(
        "INSERT INTO jobs (id, deployment_id, kind, status, source, idempotency_key, created_at)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6)",
    )
    .bind(job_id.as_str())
    .bind(deployment_id.as_str())
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
        .bind(job_id.as_str())
        .bind(step.key.to_string())
        .bind(serde_json::to_string(&step.depends_on).unwrap_or_else(|_| "[]".into()))
        .execute(&mut *conn)
        .await?;
    }
    Ok(job_id)
}

#[derive(FromRow)]
pub(super) struct JobRow {
    #[sqlx(try_from = "String")]
    id: JobId,
    #[sqlx(try_from = "String")]
    deployment_id: DeploymentId,
    kind: String,
    status: String,
    source: String,
    error: Option<String>,
    cancel_requested: i64,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    waiting: Option<String>,
}

impl JobRow {
    pub(super) fn into_view(self, steps: Vec<StepRow>) -> Result<JobView, StoreError> {
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
            waiting: self.waiting,
            steps: steps
                .into_iter()
                .map(StepRow::into_view)
                .collect::<Result<_, _>>()?,
        })
    }
}

#[derive(FromRow)]
pub(super) struct JobSummaryRow {
    #[sqlx(try_from = "String")]
    id: JobId,
    kind: String,
    status: String,
    source: String,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl JobSummaryRow {
    pub(super) fn into_summary(self) -> Result<JobSummary, StoreError> {
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

/// Refuses a deployment that is not live or has an unfinished job.
pub(super) async fn live_and_idle(
    tx: &mut sqlx::SqliteConnection,
    deployment_id: &DeploymentId,
) -> Result<(), StoreError> {
    let (status,): (String,) = sqlx::query_as("SELECT status FROM deployments WHERE id = ?1")
        .bind(deployment_id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found("deployment", deployment_id.as_str()))?;
    if status != DeploymentStatus::Live.as_str() {
        return Err(StoreError::NotLive {
            id: deployment_id.clone(),
            status,
        });
    }
    if let Some((id, kind)) = unfinished_job(&mut *tx, deployment_id).await? {
        return Err(StoreError::Busy {
            kind,
            job_id: id.into(),
        });
    }
    Ok(())
}
