//! Deployments: creating one with its deploy job, its status, its detail
//! view and the list.

use super::*;

/// A deployment as the telemetry prices and charts it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentRecord {
    pub id: DeploymentId,
    pub name: String,
    pub status: DeploymentStatus,
    pub region: String,
    pub params: DeploymentParams,
    pub created_at: DateTime<Utc>,
    pub torn_down_at: Option<DateTime<Utc>>,
}

/// A live deployment and what its deploy reported (app URL, load balancer).
#[derive(Clone, Debug, PartialEq)]
pub struct LiveDeployment {
    pub id: DeploymentId,
    pub region: String,
    pub outputs: Value,
}

impl Store {
    /// The deployments `ids` (or every one), newest first.
    pub async fn deployment_records(
        &self,
        ids: Option<&[DeploymentId]>,
    ) -> Result<Vec<DeploymentRecord>, StoreError> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
        );
        let ids = ids.map(|ids| serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()));
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, name, status, region, params, created_at, torn_down_at FROM deployments
             WHERE ?1 IS NULL OR id IN (SELECT value FROM json_each(?1))
             ORDER BY created_at DESC, id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(
                |(id, name, status, region, params, created_at, torn_down_at)| {
                    Ok(DeploymentRecord {
                        status: DeploymentStatus::parse(&status)
                            .ok_or_else(|| StoreError::Invalid(format!("bad status {status:?}")))?,
                        params: serde_json::from_str(&params).unwrap_or_default(),
                        id: id.into(),
                        name,
                        region,
                        created_at,
                        torn_down_at,
                    })
                },
            )
            .collect()
    }

    /// Every deployment's id, newest first.
    pub async fn deployment_ids(&self) -> Result<Vec<DeploymentId>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM deployments ORDER BY created_at DESC, id")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(id,)| id.into()).collect())
    }

    /// Live deployments with their deploy's outputs, by id.
    pub async fn live_deployments(&self) -> Result<Vec<LiveDeployment>, StoreError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT id, region, outputs FROM deployments WHERE status = ?1 ORDER BY id",
        )
        .bind(DeploymentStatus::Live.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, region, outputs)| LiveDeployment {
                id: id.into(),
                region,
                outputs: serde_json::from_str(&outputs).unwrap_or_default(),
            })
            .collect())
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
        let origins: Vec<&DeploymentId> = items
            .iter()
            .filter_map(|d| d.redeployed_from.as_ref().map(|l| &l.id))
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
        // The one place a deployment id is made.
        let deployment_id = DeploymentId::from(uuid::Uuid::new_v4().to_string());
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
        .bind(deployment_id.as_str())
        .bind(name)
        .bind(region)
        .bind(params.to_string())
        .bind(at)
        .bind(expires_at)
        .bind(extra.redeployed_from.map(DeploymentId::as_str))
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
            EventKind::Job,
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

    pub async fn set_deployment_status(
        &self,
        deployment_id: &DeploymentId,
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
        .bind(deployment_id.as_str())
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
        id: &DeploymentId,
    ) -> Result<Option<(String, DeploymentStatus)>, StoreError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT name, status FROM deployments WHERE id = ?1")
                .bind(id.as_str())
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
        id: &DeploymentId,
    ) -> Result<(String, String, DeploymentStatus), StoreError> {
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT name, region, status FROM deployments WHERE id = ?1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let (name, region, status) = row.ok_or_else(|| not_found("deployment", id.as_str()))?;
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
        id: &DeploymentId,
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
        .bind(id.as_str())
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
            insert_event(&mut tx, id, EventKind::Orphans, Some("system"), why).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Names of deployments by id.
    async fn names(
        &self,
        ids: &[&DeploymentId],
    ) -> Result<std::collections::HashMap<DeploymentId, String>, StoreError> {
        let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, name FROM deployments WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(list)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name)| (DeploymentId::from(id), name))
            .collect())
    }

    pub async fn deployment(&self, id: &DeploymentId) -> Result<DeploymentDetail, StoreError> {
        let row: Option<DetailRow> = sqlx::query_as(
            "SELECT id, name, region, status, params, outputs, created_at, updated_at, torn_down_at,
                    expires_at, redeployed_from
             FROM deployments WHERE id = ?1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or_else(|| not_found("deployment", id.as_str()))?;
        let jobs: Vec<JobSummaryRow> = sqlx::query_as(
            "SELECT id, kind, status, source, created_at, finished_at FROM jobs
             WHERE deployment_id = ?1 ORDER BY created_at DESC, rowid DESC",
        )
        .bind(id.as_str())
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
        let redeployed_from = match row.redeployed_from.map(DeploymentId::from) {
            Some(origin) => self
                .names(&[&origin])
                .await?
                .remove(&origin)
                .map(|name| Link { id: origin, name }),
            None => None,
        };
        let redeployed_as: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, name FROM deployments WHERE redeployed_from = ?1 ORDER BY created_at DESC",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(DeploymentDetail {
            budget,
            redeployed_from,
            redeployed_as: redeployed_as
                .into_iter()
                .map(|(id, name)| Link {
                    id: id.into(),
                    name,
                })
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

#[derive(FromRow)]
pub(super) struct DetailRow {
    #[sqlx(try_from = "String")]
    id: DeploymentId,
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

#[derive(FromRow)]
pub(super) struct DeploymentRow {
    #[sqlx(try_from = "String")]
    id: DeploymentId,
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
    pub(super) fn into_summary(self) -> Result<DeploymentSummary, StoreError> {
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
                id: id.into(),
                name: String::new(),
            }),
            // The telemetry fills these in.
            cost_usd: None,
            availability_pct: None,
            idle: None,
            drift: 0,
        })
    }
}
