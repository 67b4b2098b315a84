//! Every step's action and undo.
//!
//! Each action first looks for what it would create (by the deployment's
//! tags, or by a deterministic name), adopts it if it exists, creates only
//! what is missing, and records every AWS id the moment it learns it. Each
//! undo deletes what the action made and treats "already gone" as success.
//! Running either twice is harmless.

mod artifacts;
mod catalogue;
mod compute;
mod iam;
mod load_balancer;
mod network;
mod security;

use cloudpulse_core::ids::{DeploymentId, JobId};
use cloudpulse_core::resource::ResourceKind;
use std::time::Duration;

use crate::aws::{Aws, Names, TAG_DEPLOYMENT, TAG_STEP};
use crate::error::{StepError, StepResult};
use crate::params::DeploymentParams;
use crate::plan::StepId;
use crate::store::{NewResource, Store};

pub use artifacts::{Artifact, ArtifactSource};
pub use catalogue::{run_action, run_undo, StepKey, Undo};
pub(crate) use compute::{latest_ami, strays, AMI_PARAMETER};
pub(crate) use load_balancer::DEREGISTRATION_DELAY_KEY;
pub(crate) use network::zones;
pub(crate) use security::{acl_rules, entry_text, ACL_DEFAULT_RULE};

/// Timings the engine waits with; shortened by tests and the sandbox.
#[derive(Clone, Debug)]
pub struct Timings {
    /// NAT gateway `available`, and `deleted` on teardown.
    pub nat: Duration,
    /// Load balancer `active`, and gone on teardown.
    pub load_balancer: Duration,
    /// Instances in service and healthy behind the load balancer.
    pub healthy: Duration,
    /// Auto Scaling group gone on teardown.
    pub asg_delete: Duration,
    /// How often to look again while waiting, and the longest pause before
    /// retrying an error that only waits on AWS (see
    /// [`crate::error::retry_pause`]).
    pub poll: Duration,
    /// How long a step keeps retrying retryable errors.
    pub step_deadline: Duration,
    /// How often to look while timing a recovery after a chaos action:
    /// its resolution, at two AWS calls a look.
    pub recovery_poll: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            nat: Duration::from_secs(15 * 60),
            load_balancer: Duration::from_secs(15 * 60),
            healthy: Duration::from_secs(15 * 60),
            asg_delete: Duration::from_secs(15 * 60),
            // A wait ends on average half a poll after AWS is done; 3 s
            // keeps that short at one describe call per wait per 3 s.
            poll: Duration::from_secs(3),
            step_deadline: Duration::from_secs(10 * 60),
            recovery_poll: Duration::from_secs(1),
        }
    }
}

impl Timings {
    /// A minute for anything to happen, looking every 50 ms: moto answers at
    /// once, so a test that waits longer has found a bug.
    pub fn for_tests() -> Self {
        Timings {
            nat: Duration::from_secs(60),
            load_balancer: Duration::from_secs(60),
            healthy: Duration::from_secs(60),
            asg_delete: Duration::from_secs(60),
            poll: Duration::from_millis(50),
            step_deadline: Duration::from_secs(60),
            recovery_poll: Duration::from_millis(50),
        }
    }
}

/// Everything a step needs.
pub struct StepCtx {
    pub store: Store,
    pub aws: Aws,
    pub names: Names,
    pub params: DeploymentParams,
    pub deployment_id: DeploymentId,
    pub job_id: JobId,
    /// The step being run; stored as text, e.g. `nat_gateway:0` or `undo:vpc`.
    pub step: StepId,
    pub timings: Timings,
    pub artifact: ArtifactSource,
    /// The app URL in the sandbox (its local load balancer), if any.
    pub app_url_override: Option<String>,
}

impl StepCtx {
    /// Records a resource at once; a failure to record is fatal, since an
    /// unrecorded resource is one we could forget.
    pub async fn record(
        &self,
        kind: ResourceKind,
        aws_id: &str,
        arn: Option<&str>,
        step: StepKey,
    ) -> StepResult<()> {
        self.store
            .record_resource(
                &self.deployment_id,
                &NewResource {
                    kind,
                    aws_id,
                    arn,
                    step_key: &step.to_string(),
                    region: &self.aws.region,
                },
            )
            .await
            .map_err(|e| StepError::fatal("Database", e.to_string()))
    }

    pub async fn forget(&self, kind: ResourceKind, aws_id: &str) -> StepResult<()> {
        self.store
            .resource_deleted(&self.deployment_id, kind, aws_id)
            .await
            .map_err(|e| StepError::fatal("Database", e.to_string()))
    }

    /// What every undo ends with: deletes each `(id, item)` with `delete`
    /// (one already gone counts as deleted), forgets it, and lists the ids
    /// in the step's output.
    pub async fn delete_each<T, F, Fut>(
        &self,
        kind: ResourceKind,
        found: impl IntoIterator<Item = (String, T)>,
        mut delete: F,
    ) -> StepResult<serde_json::Value>
    where
        F: FnMut(String, T) -> Fut,
        Fut: std::future::Future<Output = StepResult<()>>,
    {
        let mut deleted = Vec::new();
        for (id, item) in found {
            gone_ok(delete(id.clone(), item).await)?;
            self.forget(kind, &id).await?;
            deleted.push(id);
        }
        Ok(serde_json::json!({ "deleted": deleted }))
    }

    pub async fn progress(&self, text: &str) {
        if let Err(e) = self
            .store
            .step_progress(&self.job_id, &self.step.to_string(), text)
            .await
        {
            tracing::warn!(error = %e, "could not record progress");
        }
    }

    /// The ids this deployment recorded for `kind` made by `step`.
    pub async fn ids(
        &self,
        kind: ResourceKind,
        step: StepKey,
    ) -> StepResult<Vec<(String, Option<String>)>> {
        let step = step.to_string();
        let rows = self
            .store
            .resources(&self.deployment_id, Some(kind))
            .await
            .map_err(|e| StepError::fatal("Database", e.to_string()))?;
        Ok(rows
            .into_iter()
            .filter(|r| r.step_key == step && r.deleted_at.is_none())
            .map(|r| (r.aws_id, r.arn))
            .collect())
    }

    /// The one id a dependency recorded; its absence means the plan ran out
    /// of order, which is a bug, not an AWS problem.
    pub async fn id(&self, kind: ResourceKind, step: StepKey) -> StepResult<String> {
        self.ids(kind, step)
            .await?
            .into_iter()
            .next()
            .map(|(id, _)| id)
            .ok_or_else(|| {
                StepError::fatal(
                    "MissingDependency",
                    format!("no {kind} recorded by step {step}"),
                )
            })
    }

    pub async fn arn(&self, kind: ResourceKind, step: StepKey) -> StepResult<String> {
        self.ids(kind, step)
            .await?
            .into_iter()
            .find_map(|(_, arn)| arn)
            .ok_or_else(|| {
                StepError::fatal(
                    "MissingDependency",
                    format!("no {kind} ARN recorded by step {step}"),
                )
            })
    }

    /// EC2 tag specification for a resource made by `step`.
    pub fn ec2_tags(
        &self,
        resource: aws_sdk_ec2::types::ResourceType,
        step: StepKey,
        what: &str,
    ) -> aws_sdk_ec2::types::TagSpecification {
        let tags = self
            .names
            .tags(&step.to_string(), what)
            .into_iter()
            .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
            .collect();
        aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(resource)
            .set_tags(Some(tags))
            .build()
    }

    /// Filters that find what `step` of this deployment made.
    pub fn ec2_filters(&self, step: StepKey) -> Vec<aws_sdk_ec2::types::Filter> {
        vec![
            filter(
                &format!("tag:{TAG_DEPLOYMENT}"),
                self.deployment_id.as_str(),
            ),
            filter(&format!("tag:{TAG_STEP}"), &step.to_string()),
        ]
    }

    /// Polls `check` until it says done, reporting progress, up to `limit`.
    pub async fn wait_for<F, Fut>(
        &self,
        what: &str,
        limit: Duration,
        mut check: F,
    ) -> StepResult<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = StepResult<Option<String>>>,
    {
        let started = tokio::time::Instant::now();
        loop {
            match check().await? {
                None => return Ok(()),
                Some(state) => {
                    let waited = started.elapsed().as_secs();
                    self.progress(&format!("waiting for {what}: {state} ({waited} s)"))
                        .await;
                }
            }
            if started.elapsed() >= limit {
                return Err(StepError::fatal(
                    "Timeout",
                    format!(
                        "{what} not reached within {} s (timed out)",
                        limit.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(self.timings.poll).await;
        }
    }
}

/// Whether EC2 tags mark a resource as made by `step` of `deployment`
/// (checked client-side too: some EC2 implementations ignore tag filters).
pub fn tagged_by(tags: &[aws_sdk_ec2::types::Tag], deployment: &str, step: Option<&str>) -> bool {
    let has = |key: &str, value: &str| {
        tags.iter()
            .any(|t| t.key() == Some(key) && t.value() == Some(value))
    };
    has(TAG_DEPLOYMENT, deployment) && step.is_none_or(|step| has(TAG_STEP, step))
}

pub fn filter(name: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}

/// An EC2 filter matching any of `values`.
pub fn filter_any(name: &str, values: Vec<String>) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .set_values(Some(values))
        .build()
}

/// True when an error only says the thing is already gone.
pub fn is_gone(error: &StepError) -> bool {
    error.code.ends_with("NotFound")
        || error.code.ends_with(".NotFound")
        || error.code.ends_with("NotFoundException")
        || matches!(
            error.code.as_str(),
            "NoSuchEntity"
                | "NoSuchBucket"
                | "NotFound"
                | "LoadBalancerNotFound"
                | "TargetGroupNotFound"
                | "ListenerNotFound"
        )
}

/// Treats "already gone" as done.
pub fn gone_ok<T>(result: StepResult<T>) -> StepResult<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if is_gone(&e) => Ok(None),
        Err(e) => Err(e),
    }
}
