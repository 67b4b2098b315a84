//! Drift findings: what a check saw, kept from its first sighting until a
//! check no longer sees it, each change on the timeline in the same
//! transaction.

use cloudpulse_core::drift::{DriftChanges, DriftFinding, DriftReport, DriftScope, Observed};

use super::*;

type FindingRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    String,
);

fn finding(
    (id, kind, resource, field, expected, actual, first, last, breaks): FindingRow,
) -> DriftFinding {
    let acceptable = Observed {
        resource_kind: kind.clone(),
        resource_id: resource.clone(),
        field: field.clone(),
        expected: String::new(),
        actual: String::new(),
        breaks: String::new(),
        scope: DriftScope::Full,
    }
    .parameter()
    .is_some();
    DriftFinding {
        id,
        resource_kind: kind,
        resource_id: resource,
        field,
        expected,
        actual,
        first_seen: first,
        last_seen: last,
        breaks,
        acceptable,
    }
}

const COLUMNS: &str = "id, resource_kind, resource_id, field, expected, actual, first_seen, \
                       last_seen, breaks";

/// "security_group sg-1 ingress: expected …, actual …", for the timeline.
fn described(kind: &str, resource: &str, field: &str, expected: &str, actual: &str) -> String {
    format!("{kind} {resource} {field}: expected {expected}, actual {actual}")
}

impl Store {
    /// Keeps what a check of `scope` saw: new findings are inserted (with
    /// a "drift found" event each), those seen again get their new actual
    /// value and sighting, and those of the scope no longer seen are
    /// removed (with a "drift resolved" event each). A full check also
    /// marks the deployment checked. One transaction.
    ///
    /// A finding's scope is the check that sees it: the poll owns the
    /// group's bounds and size, the full check the rest.
    pub async fn save_drift(
        &self,
        deployment_id: &DeploymentId,
        scope: DriftScope,
        seen: &[Observed],
    ) -> Result<DriftChanges, StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        let kept: Vec<FindingRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM drift_findings
             WHERE deployment_id = ?1 AND scope = ?2"
        ))
        .bind(deployment_id.as_str())
        .bind(scope.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let kept: Vec<DriftFinding> = kept.into_iter().map(finding).collect();
        let mut changes = DriftChanges::default();
        for observed in seen {
            let id = observed.id();
            let known = kept.iter().any(|k| k.id == id);
            sqlx::query(
                "INSERT INTO drift_findings (deployment_id, id, resource_kind, resource_id, field,
                     expected, actual, breaks, scope, first_seen, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)
                 ON CONFLICT (deployment_id, id) DO UPDATE
                 SET expected = excluded.expected, actual = excluded.actual,
                     breaks = excluded.breaks, scope = excluded.scope,
                     last_seen = excluded.last_seen",
            )
            .bind(deployment_id.as_str())
            .bind(&id)
            .bind(&observed.resource_kind)
            .bind(&observed.resource_id)
            .bind(&observed.field)
            .bind(&observed.expected)
            .bind(&observed.actual)
            .bind(&observed.breaks)
            .bind(observed.scope.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if !known {
                let message = format!(
                    "drift found: {}",
                    described(
                        &observed.resource_kind,
                        &observed.resource_id,
                        &observed.field,
                        &observed.expected,
                        &observed.actual
                    )
                );
                let data = serde_json::json!({ "finding": id, "breaks": observed.breaks });
                let event = TimelineEvent {
                    data: Some(&data),
                    ..TimelineEvent::now(deployment_id, EventKind::Drift, Some("system"), &message)
                };
                write_event(&mut tx, &event).await?;
                changes.found.push(observed.clone());
            }
        }
        let seen_ids: Vec<String> = seen.iter().map(Observed::id).collect();
        for gone in kept.into_iter().filter(|k| !seen_ids.contains(&k.id)) {
            sqlx::query("DELETE FROM drift_findings WHERE deployment_id = ?1 AND id = ?2")
                .bind(deployment_id.as_str())
                .bind(&gone.id)
                .execute(&mut *tx)
                .await?;
            let message = format!(
                "drift resolved: {} {} {} is {} again",
                gone.resource_kind, gone.resource_id, gone.field, gone.expected
            );
            let data = serde_json::json!({ "finding": gone.id });
            let event = TimelineEvent {
                data: Some(&data),
                ..TimelineEvent::now(deployment_id, EventKind::Drift, Some("system"), &message)
            };
            write_event(&mut tx, &event).await?;
            changes.resolved.push(gone);
        }
        if scope == DriftScope::Full {
            sqlx::query("UPDATE deployments SET drift_checked_at = ?2 WHERE id = ?1")
                .bind(deployment_id.as_str())
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(changes)
    }

    /// A live deployment's findings, oldest first, and when it was last
    /// checked (none once it is no longer live).
    pub async fn drift(&self, deployment_id: &DeploymentId) -> Result<DriftReport, StoreError> {
        let checked: Option<(Option<DateTime<Utc>>,)> =
            sqlx::query_as("SELECT drift_checked_at FROM deployments WHERE id = ?1")
                .bind(deployment_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let (checked_at,) =
            checked.ok_or_else(|| not_found("deployment", deployment_id.as_str()))?;
        // A stack that no longer stands has no drift; what was found
        // before its teardown stays on its timeline.
        let rows: Vec<FindingRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM drift_findings
             WHERE deployment_id = ?1
               AND EXISTS (SELECT 1 FROM deployments d WHERE d.id = ?1 AND d.status = 'live')
             ORDER BY first_seen, resource_kind, field, id"
        ))
        .bind(deployment_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(DriftReport {
            deployment_id: deployment_id.clone(),
            checked_at,
            findings: rows.into_iter().map(finding).collect(),
        })
    }

    /// A deployment's name, region, status and parameters: what a drift
    /// check compares against, in one query (the poll asks every cycle).
    pub async fn drift_subject(
        &self,
        id: &DeploymentId,
    ) -> Result<(String, String, DeploymentStatus, Value), StoreError> {
        let row: Option<(String, String, String, String)> =
            sqlx::query_as("SELECT name, region, status, params FROM deployments WHERE id = ?1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let (name, region, status, params) =
            row.ok_or_else(|| not_found("deployment", id.as_str()))?;
        let status = DeploymentStatus::parse(&status)
            .ok_or_else(|| StoreError::Invalid(format!("bad status {status:?}")))?;
        let params = serde_json::from_str(&params)
            .map_err(|e| StoreError::Invalid(format!("deployment {id} parameters: {e}")))?;
        Ok((name, region, status, params))
    }

    /// Whether the deployment has a job that is not finished.
    pub async fn busy(&self, deployment_id: &DeploymentId) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(unfinished_job(&mut conn, deployment_id).await?.is_some())
    }

    /// How many findings each deployment has open, for the list's badge.
    pub async fn drift_counts(&self) -> Result<Vec<(DeploymentId, u32)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT f.deployment_id, COUNT(*) FROM drift_findings f
             JOIN deployments d ON d.id = f.deployment_id
             WHERE d.status = 'live' GROUP BY f.deployment_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, n)| (DeploymentId::from(id), n as u32))
            .collect())
    }

    /// Takes accepted findings into the parameters: stores `after`, moves
    /// the version (plans made before no longer apply), removes the
    /// findings, and says so on the timeline. Refused unless the
    /// deployment is live with no unfinished job. One transaction.
    pub async fn accept_drift(
        &self,
        deployment_id: &DeploymentId,
        after: &DeploymentParams,
        accepted: &[DriftFinding],
        source: Source,
    ) -> Result<(), StoreError> {
        let after = serde_json::to_string(after).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let at = now();
        let mut tx = self.pool.begin().await?;
        lock_deployment(&mut tx, deployment_id).await?;
        live_and_idle(&mut tx, deployment_id).await?;
        sqlx::query(
            "UPDATE deployments SET params = ?2, params_version = params_version + 1,
                 updated_at = ?3
             WHERE id = ?1",
        )
        .bind(deployment_id.as_str())
        .bind(after)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        for finding in accepted {
            sqlx::query("DELETE FROM drift_findings WHERE deployment_id = ?1 AND id = ?2")
                .bind(deployment_id.as_str())
                .bind(&finding.id)
                .execute(&mut *tx)
                .await?;
            let message = format!(
                "drift accepted: {} is {} in the parameters now (was {})",
                finding.field, finding.actual, finding.expected
            );
            insert_event(
                &mut tx,
                deployment_id,
                EventKind::Drift,
                Some(source.as_str()),
                &message,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Creates the job that puts drifted resources back as the parameters
    /// say: like an apply's, without a change of parameters. Refused
    /// unless the deployment is live with no unfinished job.
    pub async fn create_repair_job(
        &self,
        deployment_id: &DeploymentId,
        steps: &[PlannedStep],
        source: Source,
        summary: &str,
    ) -> Result<Created, StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        lock_deployment(&mut tx, deployment_id).await?;
        live_and_idle(&mut tx, deployment_id).await?;
        let job = NewJob {
            kind: JobKind::Apply,
            source,
            idempotency_key: None,
            steps,
        };
        let job_id = insert_job(&mut tx, deployment_id, &job, at).await?;
        insert_event(
            &mut tx,
            deployment_id,
            EventKind::Job,
            Some(source.as_str()),
            &format!("repair requested: {summary}"),
        )
        .await?;
        tx.commit().await?;
        Ok(Created {
            deployment_id: deployment_id.clone(),
            job_id,
            fresh: true,
        })
    }
}
