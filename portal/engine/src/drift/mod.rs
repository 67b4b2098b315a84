//! Drift: reading a live stack back from AWS and comparing it with what its
//! parameters say it must be, then putting it back (repair) or taking the
//! actual values into the parameters (accept).
//!
//! Two checks feed the store ([`crate::store::Store::save_drift`]), each
//! owning its findings: the telemetry poll, which reads the group every
//! cycle anyway, compares its bounds and size ([`group_findings`], no AWS
//! call of its own); the full check ([`Engine::check_drift`]) reads the rest
//! in fourteen calls: the group's timings, both security groups' rules, the
//! route tables, the private subnets' network ACL, the launch template's
//! latest instance type, the load balancer's listeners, the target group
//! and its attributes, the alarms, the instances in the VPC outside the
//! group, and
//! whether the NAT gateways, load balancer, launch template, role, profile
//! and bucket still stand.
//!
//! A desired capacity that differs from the parameters is drift only when
//! the group's latest change of it was not made by a scaling policy: the
//! alarms move it on purpose, the console or the CLI does not.

mod read;
mod rules;

use std::collections::BTreeSet;

use cloudpulse_core::drift::{self, DriftReport, DriftScope};
use cloudpulse_core::ids::DeploymentId;
use cloudpulse_core::model::{DeploymentStatus, HealthSnapshot, Source};
use cloudpulse_core::params::{DeploymentParams, FieldErrors};
use cloudpulse_core::resource::ResourceKind;

use crate::aws::{Aws, Names};
use crate::error::StepError;
use crate::plan::{self, StepKey};
use crate::runner::{Engine, EngineError};
use crate::store::Created;

pub(crate) use rules::{expected_rules, split_rules};
pub use rules::{group_findings, scaled_by_policy};

pub(super) fn aws_error(error: StepError) -> EngineError {
    EngineError::Aws(error)
}

/// The AWS ids a deployment recorded, by the step that made them.
pub(super) struct Recorded {
    pub(super) rows: Vec<cloudpulse_core::model::ResourceView>,
}

impl Recorded {
    pub(super) fn id(&self, kind: ResourceKind, step: StepKey) -> Option<&str> {
        let step = step.to_string();
        self.rows
            .iter()
            .find(|r| r.kind == kind.as_str() && r.step_key == step)
            .map(|r| r.aws_id.as_str())
    }

    pub(super) fn of(&self, kind: ResourceKind) -> impl Iterator<Item = &str> {
        self.rows
            .iter()
            .filter(move |r| r.kind == kind.as_str())
            .map(|r| r.aws_id.as_str())
    }

    pub(super) fn arns(&self, kind: ResourceKind) -> Vec<&str> {
        self.rows
            .iter()
            .filter(|r| r.kind == kind.as_str())
            .filter_map(|r| r.arn.as_deref())
            .collect()
    }
}

impl Engine {
    /// A live deployment's parameters, clients and names.
    async fn drift_context(
        &self,
        id: &DeploymentId,
    ) -> Result<(DeploymentParams, Aws, Names), EngineError> {
        let (name, region, status, params) = self.store().drift_subject(id).await?;
        if status != DeploymentStatus::Live {
            return Err(EngineError::NotLive {
                deployment_id: id.clone(),
                status,
                needs: "drift is checked on a live deployment",
            });
        }
        let params: DeploymentParams = serde_json::from_value(params)
            .map_err(|e| EngineError::Corrupt(format!("parameters: {e}")))?;
        Ok((params, self.aws(&region), Names::new(id, &name)))
    }

    /// The findings kept for a deployment.
    pub async fn drift(&self, id: &DeploymentId) -> Result<DriftReport, EngineError> {
        Ok(self.store().drift(id).await?)
    }

    /// Keeps what the telemetry poll saw of the group's bounds and size.
    /// Skipped while a job of the deployment runs: an apply moves the
    /// parameters a moment before it moves the group.
    pub async fn poll_drift(&self, snapshot: &HealthSnapshot) -> Result<(), EngineError> {
        let id = &snapshot.deployment_id;
        let (params, _, _) = self.drift_context(id).await?;
        if self.store().busy(id).await? {
            return Ok(());
        }
        let found = group_findings(&params, &snapshot.group, &snapshot.activities);
        self.store()
            .save_drift(id, DriftScope::Poll, &found)
            .await?;
        Ok(())
    }

    /// Reads the whole stack back, keeps every difference, and answers the
    /// findings as now kept. Refused while a job of the deployment runs
    /// (an apply checks by itself as it ends).
    pub async fn check_drift(&self, id: &DeploymentId) -> Result<DriftReport, EngineError> {
        if self.store().busy(id).await? {
            return Err(EngineError::WrongState(
                "a job of this deployment is running; drift is checked when it ends".into(),
            ));
        }
        self.read_drift(id).await
    }

    /// [`Self::check_drift`] without asking whether a job runs: for the
    /// end of an apply, which still holds its job.
    pub(crate) async fn read_drift(&self, id: &DeploymentId) -> Result<DriftReport, EngineError> {
        let (params, aws, names) = self.drift_context(id).await?;
        let recorded = Recorded {
            rows: self
                .store()
                .resources(id, None)
                .await?
                .into_iter()
                .filter(|r| r.deleted_at.is_none())
                .collect(),
        };
        let mut present = read::Present::default();
        let mut found = Vec::new();
        found.extend(read::group_drift(&params, &aws, &names, &mut present).await?);
        found.extend(read::security_group_drift(&aws, &names, &recorded, &mut present).await?);
        found.extend(read::route_drift(&params, &aws, &recorded, &mut present).await?);
        found.extend(read::target_group_drift(&params, &aws, &names, &mut present).await?);
        found.extend(read::alarm_drift(&params, &aws, &names, &recorded, &mut present).await?);
        found.extend(read::acl_drift(&params, &aws, &recorded, &mut present).await?);
        found.extend(read::template_drift(&params, &aws, &recorded, &mut present).await?);
        found.extend(read::listener_drift(&aws, &names, &recorded, &mut present).await?);
        found.extend(read::stray_drift(&aws, &names, &recorded, &present).await?);
        read::look_for_the_rest(&aws, &names, &recorded, &mut present).await?;
        found.extend(read::missing(&recorded, &present));
        self.store()
            .save_drift(id, DriftScope::Full, &found)
            .await?;
        self.drift(id).await
    }

    /// Starts the job that puts every drifted resource back as the
    /// parameters say: the deploy steps that own them (each converges its
    /// resource), a missing resource's step with every step after it, and
    /// the group's update for its bounds and size. Refused when nothing
    /// drifted.
    pub async fn repair_drift(
        &self,
        id: &DeploymentId,
        source: Source,
    ) -> Result<Created, EngineError> {
        let (params, _, _) = self.drift_context(id).await?;
        let report = self.store().drift(id).await?;
        if report.findings.is_empty() {
            return Err(EngineError::WrongState(
                "nothing to repair: no drift is found on this deployment (check it again first)"
                    .into(),
            ));
        }
        let recorded = self.store().resources(id, None).await?;
        let mut owners = BTreeSet::new();
        let mut rebuild = BTreeSet::new();
        let mut group_fields = Vec::new();
        let mut strays = false;
        for finding in &report.findings {
            if finding.field == read::STRAY_FIELD {
                strays = true;
                continue;
            }
            let step = recorded
                .iter()
                .find(|r| r.kind == finding.resource_kind && r.aws_id == finding.resource_id)
                .and_then(|r| r.step_key.parse::<StepKey>().ok());
            if finding.field == "exists" {
                if let Some(step) = step {
                    rebuild.insert(step);
                }
                continue;
            }
            // A new template version and a refresh, as an apply of the
            // instance type makes them.
            if finding.field == "instance_type" {
                group_fields.push(finding.field.as_str());
                continue;
            }
            if finding.field == read::ACL_ASSOCIATION_FIELD {
                owners.insert(StepKey::NetworkAcl);
                continue;
            }
            if finding.resource_kind == ResourceKind::AutoScalingGroup.as_str() {
                group_fields.push(finding.field.as_str());
                continue;
            }
            match step {
                // A private table's default route is its NAT route's.
                Some(StepKey::PrivateRoutes(az)) => owners.insert(StepKey::NatRoute(az)),
                Some(step) => owners.insert(step),
                None => {
                    return Err(EngineError::Internal(format!(
                        "finding {} names {} {}, which the deployment did not record",
                        finding.id, finding.resource_kind, finding.resource_id
                    )))
                }
            };
        }
        // A resource that is gone is made again by its step, which must not
        // find the old id recorded.
        for finding in report.findings.iter().filter(|f| f.field == "exists") {
            if let Ok(kind) = finding.resource_kind.parse::<ResourceKind>() {
                self.store()
                    .resource_deleted(id, kind, &finding.resource_id)
                    .await?;
            }
        }
        let owners: Vec<StepKey> = owners.into_iter().collect();
        let rebuild: Vec<StepKey> = rebuild.into_iter().collect();
        let mut steps = plan::repair_plan(&params, &owners, &rebuild, &group_fields);
        if strays {
            steps.push(plan::PlannedStep {
                key: plan::StepId::Do(StepKey::StrayInstances),
                depends_on: Vec::new(),
            });
        }
        let summary = report
            .findings
            .iter()
            .map(|f| format!("{} {} {}", f.resource_kind, f.resource_id, f.field))
            .collect::<Vec<_>>()
            .join(", ");
        let created = self
            .store()
            .create_repair_job(id, &steps, source, &summary)
            .await?;
        self.start(&created.job_id, cloudpulse_core::model::JobKind::Apply);
        Ok(created)
    }

    /// Takes the actual values of the findings `ids` into the parameters.
    /// Every id must name a kept finding the parameters can express, and
    /// the parameters with them taken in must be valid; else nothing
    /// changes and the answer says which and why.
    pub async fn accept_drift(
        &self,
        id: &DeploymentId,
        ids: &[String],
        source: Source,
    ) -> Result<DriftReport, EngineError> {
        let (params, _, _) = self.drift_context(id).await?;
        let report = self.store().drift(id).await?;
        let mut refused = FieldErrors::new();
        let mut accepted = Vec::new();
        if ids.is_empty() {
            refused.insert(
                "findings".into(),
                "name at least one finding id (GET the deployment's drift)".into(),
            );
        }
        for wanted in ids {
            match report.findings.iter().find(|f| &f.id == wanted) {
                None => {
                    refused.insert(
                        wanted.clone(),
                        "no such finding on this deployment (it may be resolved already)".into(),
                    );
                }
                Some(f) if !f.acceptable => {
                    refused.insert(wanted.clone(), drift::refusal(f));
                }
                Some(f) => accepted.push(f),
            }
        }
        if !refused.is_empty() {
            return Err(EngineError::Refused {
                code: "drift_not_accepted",
                fields: refused,
            });
        }
        let after = drift::accept(&params, &accepted).map_err(|why| EngineError::Refused {
            code: "drift_not_accepted",
            fields: FieldErrors::from([("findings".to_string(), why)]),
        })?;
        if let Err(errors) = after.validate() {
            let fields = errors
                .into_iter()
                .map(|(field, why)| {
                    (
                        field.clone(),
                        format!("taking the actual value in would make {field} invalid: {why}"),
                    )
                })
                .collect();
            return Err(EngineError::Refused {
                code: "drift_not_accepted",
                fields,
            });
        }
        let accepted: Vec<_> = accepted.into_iter().cloned().collect();
        self.store()
            .accept_drift(id, &after, &accepted, source)
            .await?;
        self.drift(id).await
    }
}
