//! Steps of a job: their progress from pending to done, failed or skipped,
//! and their reset when a job resumes or is retried.

use super::*;

impl Store {
    /// Steps interrupted by a crash go back to pending; their actions are
    /// idempotent, so running them again adopts what they had made.
    pub async fn reset_interrupted_steps(&self, job_id: &JobId) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE steps SET status = 'pending', progress = NULL WHERE job_id = ?1 AND status = 'running'",
        )
        .bind(job_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Failed and skipped steps go back to pending, for a retry.
    pub async fn reset_failed_steps(&self, job_id: &JobId) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE steps SET status = 'pending', progress = NULL, finished_at = NULL
             WHERE job_id = ?1 AND status IN ('failed', 'skipped')",
        )
        .bind(job_id.as_str())
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE jobs SET status = 'pending', error = NULL, finished_at = NULL, cancel_requested = 0 WHERE id = ?1",
        )
        .bind(job_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn step_started(&self, job_id: &JobId, key: &str) -> Result<u32, StoreError> {
        let (attempts,): (i64,) = sqlx::query_as(
            "UPDATE steps SET status = 'running', attempts = attempts + 1,
                 started_at = COALESCE(started_at, ?3), progress = NULL
             WHERE job_id = ?1 AND key = ?2 RETURNING attempts",
        )
        .bind(job_id.as_str())
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
        job_id: &JobId,
        key: &str,
        error: &StepFailure,
    ) -> Result<u32, StoreError> {
        let (attempts,): (i64,) = sqlx::query_as(
            "UPDATE steps SET attempts = attempts + 1, error_code = ?3, error_message = ?4,
                 error_hint = ?5, request_id = ?6
             WHERE job_id = ?1 AND key = ?2 RETURNING attempts",
        )
        .bind(job_id.as_str())
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
        job_id: &JobId,
        key: &str,
        progress: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE steps SET progress = ?3 WHERE job_id = ?1 AND key = ?2")
            .bind(job_id.as_str())
            .bind(key)
            .bind(progress)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn step_done(
        &self,
        job_id: &JobId,
        key: &str,
        outputs: &Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE steps SET status = 'done', finished_at = ?3, outputs = ?4, progress = NULL
             WHERE job_id = ?1 AND key = ?2",
        )
        .bind(job_id.as_str())
        .bind(key)
        .bind(now())
        .bind(outputs.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn step_failed(
        &self,
        job_id: &JobId,
        key: &str,
        error: &StepFailure,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE steps SET status = 'failed', finished_at = ?3, progress = NULL, error_code = ?4,
                 error_message = ?5, error_hint = ?6, request_id = ?7
             WHERE job_id = ?1 AND key = ?2",
        )
        .bind(job_id.as_str())
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

    pub async fn steps_skipped(&self, job_id: &JobId) -> Result<(), StoreError> {
        sqlx::query("UPDATE steps SET status = 'skipped' WHERE job_id = ?1 AND status = 'pending'")
            .bind(job_id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Outputs of the finished steps of a deployment's deploy jobs whose key
    /// contains `key_part` (e.g. every subnet step), oldest job first.
    pub async fn deploy_outputs_of(
        &self,
        deployment_id: &DeploymentId,
        key_part: &str,
    ) -> Result<Vec<(String, Value)>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT s.key, s.outputs FROM steps s JOIN jobs j ON j.id = s.job_id
             WHERE j.deployment_id = ?1 AND j.kind = ?2 AND s.status = ?3
               AND instr(s.key, ?4) > 0
             ORDER BY j.created_at",
        )
        .bind(deployment_id.as_str())
        .bind(JobKind::Deploy.as_str())
        .bind(StepStatus::Done.as_str())
        .bind(key_part)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(key, outputs)| (key, json_or_null(&outputs)))
            .collect())
    }
}

#[derive(FromRow)]
pub(super) struct StepRow {
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
    pub(super) fn into_view(self) -> Result<StepView, StoreError> {
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
