//! Change plans: kept as made, and applied once, in the same transaction
//! that moves the deployment to the new parameters and creates the job.

use cloudpulse_core::change::ChangePlan;
use cloudpulse_core::ids::PlanId;

use super::*;

/// A plan as stored: the plan, the parameters it goes from and to, and the
/// job that applied it, if one did.
#[derive(Clone, Debug)]
pub struct StoredPlan {
    pub plan: ChangePlan,
    pub before: Value,
    pub after: Value,
    pub job_id: Option<JobId>,
}

/// What applying a plan needs besides the plan: its steps and who asked.
pub struct PlanApply<'a> {
    pub plan_id: &'a PlanId,
    pub steps: &'a [PlannedStep],
    pub source: Source,
    /// The new deadline when the plan changes the TTL; `None` keeps it.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// What the timeline says was asked for.
    pub summary: &'a str,
}

impl Store {
    /// The version of a deployment's parameters that a plan binds to.
    pub async fn params_version(&self, id: &DeploymentId) -> Result<i64, StoreError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT params_version FROM deployments WHERE id = ?1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.ok_or_else(|| not_found("deployment", id.as_str()))?.0)
    }

    pub async fn insert_plan(
        &self,
        plan: &ChangePlan,
        before: &Value,
        after: &Value,
        source: Source,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(plan).map_err(|e| StoreError::Invalid(e.to_string()))?;
        sqlx::query(
            "INSERT INTO change_plans (id, deployment_id, version, before, after, plan, source, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(plan.id.as_str())
        .bind(plan.deployment_id.as_str())
        .bind(plan.version)
        .bind(before.to_string())
        .bind(after.to_string())
        .bind(json)
        .bind(source.as_str())
        .bind(plan.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn plan(&self, id: &PlanId) -> Result<StoredPlan, StoreError> {
        let row: Option<(String, String, String, Option<String>)> =
            sqlx::query_as("SELECT plan, before, after, job_id FROM change_plans WHERE id = ?1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let (plan, before, after, job_id) = row.ok_or_else(|| not_found("plan", id.as_str()))?;
        let unreadable = |e: serde_json::Error| StoreError::Invalid(format!("plan {id}: {e}"));
        Ok(StoredPlan {
            plan: serde_json::from_str(&plan).map_err(unreadable)?,
            before: serde_json::from_str(&before).map_err(unreadable)?,
            after: serde_json::from_str(&after).map_err(unreadable)?,
            job_id: job_id.map(JobId::from),
        })
    }

    /// Applies a plan in one transaction: refuses it if the deployment is
    /// not live, has an unfinished job, or has moved past the plan's
    /// version; otherwise stores the new parameters (and deadline), bumps
    /// the version, creates the job and ties it to the plan. A plan applied
    /// before gives its job back, not fresh.
    pub async fn create_apply_job(&self, apply: PlanApply<'_>) -> Result<Created, StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        let row: Option<(String, i64, String, Option<String>)> = sqlx::query_as(
            "SELECT deployment_id, version, after, job_id FROM change_plans WHERE id = ?1",
        )
        .bind(apply.plan_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let (deployment_id, version, after, job_id) =
            row.ok_or_else(|| not_found("plan", apply.plan_id.as_str()))?;
        let deployment_id = DeploymentId::from(deployment_id);
        if let Some(job_id) = job_id {
            return Ok(Created {
                deployment_id,
                job_id: job_id.into(),
                fresh: false,
            });
        }
        lock_deployment(&mut tx, &deployment_id).await?;
        live_and_idle(&mut tx, &deployment_id).await?;
        let (current,): (i64,) =
            sqlx::query_as("SELECT params_version FROM deployments WHERE id = ?1")
                .bind(deployment_id.as_str())
                .fetch_one(&mut *tx)
                .await?;
        if current != version {
            return Err(StoreError::Stale {
                plan: apply.plan_id.clone(),
                made_at: version,
                now: current,
            });
        }
        let job = NewJob {
            kind: JobKind::Apply,
            source: apply.source,
            idempotency_key: None,
            steps: apply.steps,
        };
        let job_id = insert_job(&mut tx, &deployment_id, &job, at).await?;
        let (keep_deadline, expires_at) = match apply.expires_at {
            None => (true, None),
            Some(deadline) => (false, deadline),
        };
        sqlx::query(
            "UPDATE deployments
             SET params = ?2, params_version = params_version + 1, updated_at = ?3,
                 expires_at = CASE WHEN ?4 THEN expires_at ELSE ?5 END
             WHERE id = ?1",
        )
        .bind(deployment_id.as_str())
        .bind(after)
        .bind(at)
        .bind(keep_deadline)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE change_plans SET job_id = ?2 WHERE id = ?1")
            .bind(apply.plan_id.as_str())
            .bind(job_id.as_str())
            .execute(&mut *tx)
            .await?;
        insert_event(
            &mut tx,
            &deployment_id,
            EventKind::Job,
            Some(apply.source.as_str()),
            &format!("apply requested: {}", apply.summary),
        )
        .await?;
        tx.commit().await?;
        Ok(Created {
            deployment_id,
            job_id,
            fresh: true,
        })
    }
}
