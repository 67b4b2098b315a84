//! Changing a live stack: a plan (what a change does, stored, nothing
//! touched) and its apply (a durable job of idempotent steps that converge
//! AWS to the new parameters, resumed after a crash like a deploy).

use chrono::{DateTime, Utc};
use cloudpulse_core::change::{self, ChangePlan, Refusal};
use cloudpulse_core::ids::{DeploymentId, PlanId};
use cloudpulse_core::model::{DeploymentStatus, JobKind, Source};

use super::{Engine, EngineError};
use crate::aws::Names;
use crate::error::SdkResultExt;
use crate::params::{DeploymentParams, FieldErrors};
use crate::plan;
use crate::store::{Created, PlanApply, StoredPlan};
use cloudpulse_core::resource::ResourceKind;

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
        if let Some((current, newest)) = self.newer_image(id, &before.region).await {
            change::add_image_change(&mut changes, &after, &current, &newest);
        }
        if changes.is_empty() {
            return Err(EngineError::Validation(FieldErrors::from([(
                "form".to_string(),
                "nothing to change: the parameters given equal the current ones, and the \
                 instances launch from the newest Amazon Linux 2023"
                    .to_string(),
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

impl Engine {
    /// The image the live stack's launch template launches and the newest
    /// Amazon Linux 2023 of its region, when they differ: AWS published a
    /// newer one since. Two calls; `None` (and a warning) when either
    /// cannot be read, so a plan of the parameters still goes ahead.
    async fn newer_image(&self, id: &DeploymentId, region: &str) -> Option<(String, String)> {
        let template = self
            .inner
            .store
            .resources(id, Some(ResourceKind::LaunchTemplate))
            .await
            .ok()?
            .into_iter()
            .find(|r| r.deleted_at.is_none())?
            .aws_id;
        let aws = self.aws(region);
        let read = async {
            let newest = crate::steps::latest_ami(&aws).await?;
            let latest = aws
                .ec2
                .describe_launch_template_versions()
                .launch_template_id(&template)
                .versions("$Latest")
                .send()
                .await
                .step()?;
            let current = latest
                .launch_template_versions()
                .first()
                .and_then(|v| v.launch_template_data())
                .and_then(|d| d.image_id())
                .map(str::to_string);
            Ok::<_, crate::error::StepError>((current, newest))
        };
        match read.await {
            Ok((Some(current), newest)) if current != newest => Some((current, newest)),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(deployment = %id, %error, "cannot compare the image with the newest");
                None
            }
        }
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
