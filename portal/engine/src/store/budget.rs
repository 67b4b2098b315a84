//! A deployment's time-to-live and cost cap, as the budget guard reads
//! and changes them.

use super::*;

impl Store {
    /// A deployment's TTL, deadline and cost cap.
    pub async fn budget(&self, id: &DeploymentId) -> Result<BudgetRow, StoreError> {
        let row: Option<BudgetQueryRow> = sqlx::query_as(
            "SELECT id, name, status, created_at, expires_at,
                    json_extract(params, '$.ttl_minutes') AS ttl_minutes,
                    json_extract(params, '$.cost_cap_usd') AS cost_cap_usd
             FROM deployments WHERE id = ?1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| not_found("deployment", id.as_str()))?
            .into_budget()
    }

    /// Deployments that still stand and have a TTL or a cost cap: what the
    /// budget guard watches.
    pub async fn guarded(&self) -> Result<Vec<(DeploymentId, BudgetRow)>, StoreError> {
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
        id: &DeploymentId,
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
                 params_version = params_version + 1, expires_at = ?4, updated_at = ?5
             WHERE id = ?1 AND status <> 'torn_down'",
        )
        .bind(id.as_str())
        .bind(i64::from(ttl_minutes))
        .bind(cost_cap_usd)
        .bind(expires_at)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotStanding {
                id: id.clone(),
                needs: "a budget guards only a deployment that stands",
            });
        }
        insert_event(
            &mut tx,
            id,
            EventKind::Budget,
            Some(source.as_str()),
            message,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A stored TTL as the budget shows it: `None` for none (stored as 0).
pub(super) fn ttl_minutes(stored: Option<i64>) -> Option<u32> {
    stored
        .and_then(|m| u32::try_from(m).ok())
        .filter(|m| *m > 0)
}

#[derive(FromRow)]
pub(super) struct BudgetQueryRow {
    #[sqlx(try_from = "String")]
    id: DeploymentId,
    name: String,
    status: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    ttl_minutes: Option<i64>,
    cost_cap_usd: Option<f64>,
}

impl BudgetQueryRow {
    pub(super) fn into_budget(self) -> Result<BudgetRow, StoreError> {
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
