//! A live deployment as it is right now, and breaking it on purpose.
//!
//! [`Engine::health`] reads the group, its targets, alarms and latest
//! scaling activities in one go. [`Engine::chaos`] terminates an instance
//! (EC2 `TerminateInstances`), or runs `cloudpulse-instance stress` or
//! `fail-health` on instances through SSM Run Command: the same calls in
//! the sandbox (whose data plane carries the command out) as on AWS. Each
//! action goes on the deployment's timeline; after one that takes an
//! instance away, the engine times the group's recovery (until it has as
//! many healthy targets as it wants instances, none of them the victim) and
//! puts that on the timeline too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::AutoScalingGroup;
use aws_sdk_ec2::types::Filter;
use chrono::{DateTime, Utc};
use cloudpulse_core::ids::DeploymentId;
use cloudpulse_core::model::{
    ActivityView, AlarmView, ChaosAccepted, ChaosAction, DeploymentStatus, EventKind, GroupHealth,
    HealthSnapshot, InstanceHealth, Source,
};

use crate::aws::{Aws, Names};
use crate::error::{SdkResultExt, StepError};
use crate::runner::{Engine, EngineError};
use crate::store::StoreError;
use cloudpulse_core::resource::ResourceKind;

/// How long a recovery is watched before the timeline says it did not come.
const RECOVERY_LIMIT: Duration = Duration::from_secs(30 * 60);
/// Scaling activities a health snapshot carries.
const ACTIVITIES: i32 = 10;

fn aws_error(error: StepError) -> EngineError {
    EngineError::Aws(error)
}

fn date(value: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    let value = value?;
    DateTime::from_timestamp(value.secs(), value.subsec_nanos())
}

impl Engine {
    /// The clients and names of a deployment that must be live.
    async fn live(&self, deployment_id: &DeploymentId) -> Result<(Aws, Names), EngineError> {
        let (name, region, status) = self.store().deployment_brief(deployment_id).await?;
        if status != DeploymentStatus::Live {
            return Err(EngineError::NotLive {
                deployment_id: deployment_id.clone(),
                status,
                needs: "health and chaos actions need a live deployment",
            });
        }
        Ok((self.aws(&region), Names::new(deployment_id, &name)))
    }

    /// The deployment's group, targets, alarms and activities, now: four
    /// calls (Auto Scaling twice, ELB and CloudWatch once each), and EC2's
    /// `DescribeInstances` only when the group has an instance not seen
    /// before (what it tells, launch time, type and address, never
    /// changes). The target group's ARN is the one the engine recorded.
    pub async fn health(
        &self,
        deployment_id: &DeploymentId,
    ) -> Result<HealthSnapshot, EngineError> {
        let (aws, names) = self.live(deployment_id).await?;
        let group = describe_group(&aws, &names).await?;
        let ids: Vec<String> = group
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        let launched = launch_facts(&aws, &ids).await?;
        let target_group = self.target_group_arn(deployment_id).await;
        let targets = target_health(&aws, target_group.as_deref()).await?;
        let instances: Vec<InstanceHealth> = group
            .instances()
            .iter()
            .map(|i| {
                let id = i.instance_id().unwrap_or_default().to_string();
                let facts = launched.get(&id).cloned().unwrap_or_default();
                let target = targets.get(&id);
                InstanceHealth {
                    lifecycle: i
                        .lifecycle_state()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    health: i.health_status().unwrap_or_default().to_string(),
                    availability_zone: i.availability_zone().unwrap_or_default().to_string(),
                    instance_type: i
                        .instance_type()
                        .map(str::to_string)
                        .or(facts.instance_type),
                    launched_at: facts.launched_at,
                    private_ip: facts.private_ip,
                    target_state: target.map(|t| t.0.clone()),
                    target_reason: target.and_then(|t| t.1.clone()),
                    id,
                }
            })
            .collect();
        let healthy_targets = targets.values().filter(|t| t.0 == "healthy").count() as u32;
        let alarms = describe_alarms(&aws, &names)
            .await?
            .metric_alarms()
            .iter()
            .map(|a| AlarmView {
                name: a.alarm_name().unwrap_or_default().to_string(),
                state: a
                    .state_value()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                reason: a.state_reason().map(str::to_string),
                updated_at: date(a.state_updated_timestamp()),
                threshold: a.threshold(),
                comparison: a.comparison_operator().map(|c| c.as_str().to_string()),
            })
            .collect();
        let activities = activities(&aws, &names).await?;
        Ok(HealthSnapshot {
            deployment_id: deployment_id.clone(),
            taken_at: Utc::now(),
            group: GroupHealth {
                name: names.auto_scaling_group(),
                min: group.min_size().unwrap_or_default(),
                desired: group.desired_capacity().unwrap_or_default(),
                max: group.max_size().unwrap_or_default(),
                instances,
            },
            healthy_targets,
            alarms,
            activities,
        })
    }

    /// The ARN the engine recorded for the deployment's target group.
    async fn target_group_arn(&self, deployment_id: &DeploymentId) -> Option<String> {
        self.store()
            .resources(deployment_id, Some(ResourceKind::TargetGroup))
            .await
            .ok()?
            .into_iter()
            .filter(|r| r.deleted_at.is_none())
            .find_map(|r| r.arn)
    }

    /// Runs a chaos action on one instance of a live deployment, or with
    /// `instance_id` `None`, on every instance in service (not terminate:
    /// that is one instance at a time).
    pub async fn chaos(
        &self,
        deployment_id: &DeploymentId,
        instance_id: Option<&str>,
        action: ChaosAction,
        source: Source,
    ) -> Result<ChaosAccepted, EngineError> {
        let seconds = match action {
            ChaosAction::Terminate => None,
            ChaosAction::Stress { seconds } | ChaosAction::FailHealth { seconds } => Some(seconds),
        };
        if let Some(seconds) = seconds {
            if !(1..=ChaosAction::MAX_SECONDS).contains(&seconds) {
                return Err(EngineError::Validation(
                    [(
                        "seconds".to_string(),
                        format!(
                            "must be from 1 to {}, got {seconds}",
                            ChaosAction::MAX_SECONDS
                        ),
                    )]
                    .into(),
                ));
            }
        }
        let (aws, names) = self.live(deployment_id).await?;
        let group = describe_group(&aws, &names).await?;
        let in_service: Vec<String> = group
            .instances()
            .iter()
            .filter(|i| {
                i.lifecycle_state()
                    .is_some_and(|s| s.as_str() == "InService")
            })
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        let targets = match instance_id {
            Some(id) if in_service.iter().any(|i| i == id) => vec![id.to_string()],
            Some(id) => {
                return Err(EngineError::Store(StoreError::NotFound {
                    what: "instance in service in this deployment's group",
                    id: id.to_string(),
                }))
            }
            None if action == ChaosAction::Terminate => {
                return Err(EngineError::WrongState(
                    "terminate takes one instance at a time; name it in the path".into(),
                ))
            }
            None if in_service.is_empty() => {
                return Err(EngineError::WrongState(
                    "the group has no instance in service to act on".into(),
                ))
            }
            None => in_service,
        };
        let command_id = match action {
            ChaosAction::Terminate => {
                aws.ec2
                    .terminate_instances()
                    .set_instance_ids(Some(targets.clone()))
                    .send()
                    .await
                    .step()
                    .map_err(aws_error)?;
                None
            }
            ChaosAction::Stress { seconds } | ChaosAction::FailHealth { seconds } => {
                let line = format!("cloudpulse-instance {} --seconds {seconds}", action.name());
                let sent = aws
                    .ssm
                    .send_command()
                    .document_name("AWS-RunShellScript")
                    .set_instance_ids(Some(targets.clone()))
                    .parameters("commands", vec![line])
                    .comment(format!("CloudPulse {}: {}", names.display, action.name()))
                    .send()
                    .await
                    .step()
                    .map_err(|e| aws_error(agent_hint(e)))?;
                sent.command()
                    .and_then(|c| c.command_id())
                    .map(str::to_string)
            }
        };
        let at = Utc::now();
        let what = match action {
            ChaosAction::Terminate => "terminated".to_string(),
            ChaosAction::Stress { seconds } => format!("CPU stressed for {seconds} s on"),
            ChaosAction::FailHealth { seconds } => {
                format!("health checks failing for {seconds} s on")
            }
        };
        let via = command_id.as_deref().map_or_else(
            || " (EC2 TerminateInstances)".to_string(),
            |id| format!(" (Run Command {id})"),
        );
        self.store()
            .add_event(
                deployment_id,
                EventKind::Chaos,
                Some(source.as_str()),
                &format!("{what} {}{via}", targets.join(", ")),
            )
            .await?;
        // A stress takes no instance away; the alarms answer it instead.
        let watching_recovery = !matches!(action, ChaosAction::Stress { .. });
        if watching_recovery {
            let engine = self.clone();
            let deployment = deployment_id.clone();
            let victims = targets.clone();
            tokio::spawn(async move {
                engine
                    .watch_recovery(&deployment, aws, names, victims, Instant::now())
                    .await;
            });
        }
        Ok(ChaosAccepted {
            action,
            instance_ids: targets,
            command_id,
            at,
            watching_recovery,
        })
    }

    /// Waits until the group is whole again and puts how long that took on
    /// the timeline.
    async fn watch_recovery(
        &self,
        deployment_id: &DeploymentId,
        aws: Aws,
        names: Names,
        victims: Vec<String>,
        began: Instant,
    ) {
        let poll = self.timings().recovery_poll;
        let target_group = self.target_group_arn(deployment_id).await;
        let (message, seconds) = loop {
            if began.elapsed() > RECOVERY_LIMIT {
                let message = format!(
                    "not recovered {} min after losing {}: still short of healthy targets",
                    RECOVERY_LIMIT.as_secs() / 60,
                    victims.join(", ")
                );
                break (message, None);
            }
            tokio::time::sleep(poll).await;
            // A deployment being torn down has nothing left to recover.
            match self.store().deployment_status(deployment_id).await {
                Ok(Some((_, DeploymentStatus::Live))) => {}
                _ => return,
            }
            let (Ok(group), Ok(targets)) = (
                describe_group(&aws, &names).await,
                target_health(&aws, target_group.as_deref()).await,
            ) else {
                continue;
            };
            let desired = group.desired_capacity().unwrap_or_default().max(0) as usize;
            let healthy: Vec<&String> = targets
                .iter()
                .filter(|(id, t)| t.0 == "healthy" && !victims.contains(id))
                .map(|(id, _)| id)
                .collect();
            if healthy.len() >= desired {
                let mut healthy: Vec<String> = healthy.into_iter().cloned().collect();
                healthy.sort();
                let seconds = began.elapsed().as_secs_f64();
                let message = format!(
                    "recovered in {seconds:.1} s after losing {}: {} of {desired} healthy targets ({})",
                    victims.join(", "),
                    healthy.len(),
                    healthy.join(", ")
                );
                break (message, Some(seconds));
            }
        };
        tracing::info!(%deployment_id, %message, "recovery");
        if let Err(error) = self
            .store()
            .add_event_data(
                deployment_id,
                EventKind::Recovery,
                Some("system"),
                &message,
                &serde_json::json!({ "seconds": seconds, "instances": victims }),
            )
            .await
        {
            tracing::warn!(%deployment_id, %error, "cannot record the recovery");
        }
    }
}

/// Run Command knows an instance only once its SSM agent has registered,
/// a minute or so after boot (and only if the instance reaches Systems
/// Manager, here through the NAT gateways); until then `SendCommand`
/// answers `InvalidInstanceId`. Say so, instead of AWS's bare words.
fn agent_hint(mut error: StepError) -> StepError {
    if error.code == "InvalidInstanceId" {
        error.hint = Some(
            "the SSM agent on these instances has not registered with Systems Manager yet: it does \
             about a minute after an instance boots, once it reaches SSM through the NAT gateways; \
             try again in a minute"
                .into(),
        );
    }
    error
}

/// The deployment's two CPU alarms, as CloudWatch describes them.
pub(crate) async fn describe_alarms(
    aws: &Aws,
    names: &Names,
) -> Result<aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput, EngineError> {
    aws.cloudwatch
        .describe_alarms()
        .alarm_names(names.high_cpu_alarm())
        .alarm_names(names.low_cpu_alarm())
        .send()
        .await
        .step()
        .map_err(aws_error)
}

/// The group's latest scaling activities, newest first.
pub(crate) async fn activities(aws: &Aws, names: &Names) -> Result<Vec<ActivityView>, EngineError> {
    Ok(aws
        .asg
        .describe_scaling_activities()
        .auto_scaling_group_name(names.auto_scaling_group())
        .max_records(ACTIVITIES)
        .send()
        .await
        .step()
        .map_err(aws_error)?
        .activities()
        .iter()
        .map(|a| ActivityView {
            id: a.activity_id().unwrap_or_default().to_string(),
            description: a.description().unwrap_or_default().to_string(),
            cause: a.cause().unwrap_or_default().to_string(),
            status: a
                .status_code()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            started_at: date(a.start_time()),
            ended_at: date(a.end_time()),
        })
        .collect())
}

async fn describe_group(aws: &Aws, names: &Names) -> Result<AutoScalingGroup, EngineError> {
    let name = names.auto_scaling_group();
    aws.asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&name)
        .send()
        .await
        .step()
        .map_err(aws_error)?
        .auto_scaling_groups()
        .first()
        .cloned()
        .ok_or_else(|| {
            EngineError::WrongState(format!(
                "the deployment's Auto Scaling group {name} is gone; run the orphan scan or tear the deployment down"
            ))
        })
}

/// What EC2 knows of an instance that Auto Scaling does not say.
#[derive(Clone, Debug, Default)]
struct LaunchFacts {
    launched_at: Option<DateTime<Utc>>,
    instance_type: Option<String>,
    private_ip: Option<String>,
}

/// What `DescribeInstances` said of each instance seen so far, in this
/// process: none of it changes while an instance lives. Bounded, since
/// instances come and go.
fn known_facts() -> &'static std::sync::Mutex<HashMap<String, LaunchFacts>> {
    static KNOWN: std::sync::OnceLock<std::sync::Mutex<HashMap<String, LaunchFacts>>> =
        std::sync::OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

/// Facts of at most this many instances are remembered.
const KNOWN_FACTS: usize = 10_000;

/// Launch time, type and private address of each instance: remembered
/// ones from memory, the others with one `DescribeInstances`.
async fn launch_facts(
    aws: &Aws,
    ids: &[String],
) -> Result<HashMap<String, LaunchFacts>, EngineError> {
    let mut facts: HashMap<String, LaunchFacts> = {
        let known = known_facts().lock().unwrap_or_else(|e| e.into_inner());
        ids.iter()
            .filter_map(|id| Some((id.clone(), known.get(id)?.clone())))
            .collect()
    };
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !facts.contains_key(*id))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(facts);
    }
    let described = describe_launch_facts(aws, &missing).await?;
    let mut known = known_facts().lock().unwrap_or_else(|e| e.into_inner());
    if known.len() + described.len() > KNOWN_FACTS {
        known.clear();
    }
    for (id, fact) in described {
        // Only a launched instance's facts are final.
        if fact.launched_at.is_some() {
            known.insert(id.clone(), fact.clone());
        }
        facts.insert(id, fact);
    }
    Ok(facts)
}

async fn describe_launch_facts(
    aws: &Aws,
    ids: &[String],
) -> Result<HashMap<String, LaunchFacts>, EngineError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let out = aws
        .ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("instance-id")
                .set_values(Some(ids.to_vec()))
                .build(),
        )
        .send()
        .await
        .step()
        .map_err(aws_error)?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| {
            Some((
                i.instance_id()?.to_string(),
                LaunchFacts {
                    launched_at: date(i.launch_time()),
                    instance_type: i.instance_type().map(|t| t.as_str().to_string()),
                    private_ip: i.private_ip_address().map(str::to_string),
                },
            ))
        })
        .collect())
}

/// `instance id → (state, reason)` for every target of the deployment's
/// target group (`arn`, as recorded); empty if it has none or it is gone.
async fn target_health(
    aws: &Aws,
    arn: Option<&str>,
) -> Result<HashMap<String, (String, Option<String>)>, EngineError> {
    let Some(arn) = arn else {
        return Ok(HashMap::new());
    };
    let out = match aws
        .elb
        .describe_target_health()
        .target_group_arn(arn)
        .send()
        .await
        .step()
    {
        Ok(out) => out,
        Err(error) if error.code == "TargetGroupNotFound" => return Ok(HashMap::new()),
        Err(error) => return Err(aws_error(error)),
    };
    Ok(out
        .target_health_descriptions()
        .iter()
        .filter_map(|d| {
            let id = d.target()?.id()?.to_string();
            let health = d.target_health()?;
            Some((
                id,
                (
                    health
                        .state()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    health.reason().map(|r| r.as_str().to_string()),
                ),
            ))
        })
        .collect())
}
