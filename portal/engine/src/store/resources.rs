//! The AWS resources a deployment made, recorded the moment their ids are
//! known and marked deleted when their undo removes them.

use super::*;

impl Store {
    /// Records an AWS resource the moment its id is known. Recording it
    /// again is harmless.
    pub async fn record_resource(
        &self,
        deployment_id: &DeploymentId,
        r: &NewResource<'_>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO resources (deployment_id, kind, aws_id, arn, step_key, region, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (deployment_id, kind, aws_id)
             DO UPDATE SET deleted_at = NULL, arn = COALESCE(excluded.arn, resources.arn)",
        )
        .bind(deployment_id.as_str())
        .bind(r.kind.as_str())
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
        deployment_id: &DeploymentId,
        kind: ResourceKind,
        aws_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE resources SET deleted_at = ?4
             WHERE deployment_id = ?1 AND kind = ?2 AND aws_id = ?3 AND deleted_at IS NULL",
        )
        .bind(deployment_id.as_str())
        .bind(kind.as_str())
        .bind(aws_id)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Live resources of a deployment, optionally of one kind.
    pub async fn resources(
        &self,
        deployment_id: &DeploymentId,
        kind: Option<ResourceKind>,
    ) -> Result<Vec<ResourceView>, StoreError> {
        let rows: Vec<ResourceRow> = sqlx::query_as(
            "SELECT kind, aws_id, arn, step_key, region, created_at, deleted_at FROM resources
             WHERE deployment_id = ?1 AND (?2 IS NULL OR kind = ?2)
             ORDER BY created_at, kind, aws_id",
        )
        .bind(deployment_id.as_str())
        .bind(kind.map(ResourceKind::as_str))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ResourceRow::into_view).collect())
    }

    /// When each resource of these kinds (of the deployments `ids`, or of
    /// all) was made and deleted: what the cost accrual bills.
    pub async fn resource_spans(
        &self,
        ids: Option<&[DeploymentId]>,
        kinds: &[ResourceKind],
    ) -> Result<Vec<ResourceSpan>, StoreError> {
        let ids = ids.map(|ids| serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()));
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        type Row = (String, String, DateTime<Utc>, Option<DateTime<Utc>>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT deployment_id, kind, created_at, deleted_at FROM resources
             WHERE (?1 IS NULL OR deployment_id IN (SELECT value FROM json_each(?1)))
               AND kind IN (SELECT value FROM json_each(?2))",
        )
        .bind(ids)
        .bind(serde_json::to_string(&kinds).unwrap_or_else(|_| "[]".into()))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(deployment_id, kind, created_at, deleted_at)| {
                Ok(ResourceSpan {
                    kind: kind
                        .parse()
                        .map_err(|e| StoreError::Invalid(format!("{e}")))?,
                    deployment_id: deployment_id.into(),
                    created_at,
                    deleted_at,
                })
            })
            .collect()
    }
}

/// One billed resource's life.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceSpan {
    pub deployment_id: DeploymentId,
    pub kind: ResourceKind,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
pub(super) struct ResourceRow {
    kind: String,
    aws_id: String,
    arn: Option<String>,
    step_key: String,
    region: String,
    created_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
}

impl ResourceRow {
    pub(super) fn into_view(self) -> ResourceView {
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
