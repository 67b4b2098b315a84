//! Changing a live stack: a plan (what a change does, stored, nothing
//! touched) and its apply (a durable job of idempotent steps that converge
//! AWS to the new parameters, resumed after a crash like a deploy).

use chrono::{DateTime, Utc};
use cloudpulse_core::change::{self, ChangePlan, Refusal};
use cloudpulse_core::ids::{DeploymentId, PlanId};
use cloudpulse_core::model::{DeploymentStatus, JobKind, Source};

use super::{Engine, EngineError};
use crate::aws::Names;
use crate::params::{DeploymentParams, FieldErrors};
use crate::plan;
use crate::store::{Created, PlanApply, StoredPlan};

impl Engine {
    /// Works out what moving a live deployment to `after` does to each of
    /// its resources, and keeps the plan. Changes nothing in AWS.
    pub async fn plan_change(
        &self,
        id: &DeploymentId,
        after: DeploymentParams,
        source: Source,
    ) -> Result<ChangePlan, EngineError> {
        let store = &self.inner.store;
        let detail = store.deployment(id).await?;
        if detail.status != DeploymentStatus::Live {
            return Err(EngineError::NotLive {
                deployment_id: id.clone(),
                status: detail.status,
                needs: "a plan changes a live deployment (redeploy a torn-down one)",
            });
        }
        let version = store.params_version(id).await?;
        let before: DeploymentParams = serde_json::from_value(detail.params.clone())
            .map_err(|e| EngineError::Corrupt(format!("parameters: {e}")))?;
        after.validate().map_err(EngineError::Validation)?;
        let mut changes = change::resource_changes(&before, &after)
            .map_err(|Refusal { code, fields }| EngineError::Refused { code, fields })?;
        if changes.is_empty() {
            return Err(EngineError::Validation(FieldErrors::from([(
                "form".to_string(),
                "nothing to change: the parameters given equal the current ones".to_string(),
            )])));
        }
        let names = Names::new(id, &before.name);
        for change in &mut changes {
            change.resource_id = resource_id(&names, &change.resource_kind);
        }
        let plan = ChangePlan {
            id: PlanId::from(uuid::Uuid::new_v4().to_string()),
            deployment_id: id.clone(),
            version,
            created_at: Utc::now(),
            cost: change::plan_cost(&before, &after),
            disruption: change::worst_disruption(&changes),
            changes,
        };
        let after_json =
            serde_json::to_value(&after).map_err(|e| EngineError::Internal(e.to_string()))?;
        store
            .insert_plan(&plan, &detail.params, &after_json, source)
            .await?;
        Ok(plan)
    }

    /// A plan as it was made, with the job that applied it, if any.
    pub async fn change_plan(&self, id: &PlanId) -> Result<StoredPlan, EngineError> {
        Ok(self.inner.store.plan(id).await?)
    }

    /// Applies a plan, as [`Self::change_plan`] read it: the new parameters
    /// and the job in one transaction (which reads the plan's row again, so
    /// a plan applied meanwhile gives its job back), then the job runs. Refused when the deployment is not live, is busy,
    /// or its parameters moved since the plan. `expires_at` is the new
    /// deadline when the plan changes the TTL (`None` keeps the old one).
    pub async fn apply_change(
        &self,
        stored: &StoredPlan,
        source: Source,
        expires_at: Option<Option<DateTime<Utc>>>,
    ) -> Result<Created, EngineError> {
        let fields: Vec<&str> = stored
            .plan
            .changes
            .iter()
            .flat_map(|c| c.fields.iter().map(|f| f.field.as_str()))
            .collect();
        let after: DeploymentParams = serde_json::from_value(stored.after.clone())
            .map_err(|e| EngineError::Corrupt(format!("plan {}: {e}", stored.plan.id)))?;
        let before: DeploymentParams = serde_json::from_value(stored.before.clone())
            .map_err(|e| EngineError::Corrupt(format!("plan {}: {e}", stored.plan.id)))?;
        let steps = plan::apply_plan(&fields, &before, &after);
        let summary = summary(&stored.plan);
        let created = self
            .inner
            .store
            .create_apply_job(PlanApply {
                plan_id: &stored.plan.id,
                steps: &steps,
                source,
                expires_at,
                summary: &summary,
            })
            .await?;
        if created.fresh {
            self.start(&created.job_id, JobKind::Apply);
        }
        Ok(created)
    }
}

/// The AWS name of a resource a plan changes, as the deploy named it.
fn resource_id(names: &Names, kind: &str) -> Option<String> {
    Some(match kind {
        "auto_scaling_group" => names.auto_scaling_group(),
        "scaling_policy" => format!("{}, {}", names.scale_out_policy(), names.scale_in_policy()),
        "alarm" => format!("{}, {}", names.high_cpu_alarm(), names.low_cpu_alarm()),
        "target_group" => names.target_group(),
        "load_balancer" => names.load_balancer(),
        "launch_template" => names.launch_template(),
        "instance" => format!("the instances of {}", names.auto_scaling_group()),
        _ => return None,
    })
}

/// "desired 2 → 4, health_check.interval 30 → 10 (plan …)", for the timeline.
fn summary(plan: &ChangePlan) -> String {
    let mut fields: Vec<String> = Vec::new();
    for f in plan.changes.iter().flat_map(|c| &c.fields) {
        let line = format!("{} {} → {}", f.field, f.before, f.after);
        if !fields.contains(&line) {
            fields.push(line);
        }
    }
    format!("{} (plan {})", fields.join(", "), plan.id)
}
