//! The wait until the group serves: in service, healthy behind the load
//! balancer, or a failed launch read for what a person can do.

use aws_sdk_autoscaling::types::{LifecycleState, ScalingActivityStatusCode};
use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;
use serde_json::{json, Value};

use super::describe_group;
use crate::error::{SdkResultExt, StepError, StepResult};
use crate::plan::StepKey;
use crate::steps::StepCtx;
use cloudpulse_core::resource::ResourceKind;

/// What a `Failed` scaling activity means for the wait.
#[derive(Debug, PartialEq, Eq)]
enum LaunchFailureKind {
    /// Auto Scaling retries and it may well succeed (capacity comes back,
    /// another zone launches): keep waiting, showing why.
    Waiting,
    /// Nothing will change until a person acts: fail with this code.
    Fatal(&'static str),
}

/// The newest failed launch of the group, as its activity reports it.
#[derive(Debug, PartialEq, Eq)]
struct LaunchFailure {
    kind: LaunchFailureKind,
    /// AWS's StatusMessage, verbatim.
    message: String,
    hint: &'static str,
}

/// Reads a `Failed` activity's StatusMessage: by its wording, since AWS
/// gives the EC2 error only inside it.
fn classify_launch_failure(message: &str) -> LaunchFailure {
    let lower = message.to_ascii_lowercase();
    let (kind, hint) = if lower.contains("vcpu") {
        (
            LaunchFailureKind::Fatal("VcpuLimitExceeded"),
            "the account's On-Demand vCPU quota for this instance family is used up: ask for \
             more in Service Quotas (EC2, Running On-Demand Standard instances) or stop other \
             instances, then retry the job",
        )
    } else if lower.contains("kms") || lower.contains("client.internalerror") {
        (
            LaunchFailureKind::Fatal("KmsKeyNotUsable"),
            "the encrypted root volume's KMS key cannot be used by Auto Scaling: give the \
             AWSServiceRoleForAutoScaling role a grant on the key (or use the AWS-managed \
             aws/ebs key for EBS default encryption), then retry the job",
        )
    } else if lower.contains("capacity") {
        (
            LaunchFailureKind::Waiting,
            "AWS has no spare capacity of this type in that zone right now; Auto Scaling keeps \
             retrying and launches in the other zones. If it lasts, tear down and choose \
             another instance type",
        )
    } else {
        (
            LaunchFailureKind::Waiting,
            "Auto Scaling retries failed launches; open the group's activity history for more",
        )
    };
    LaunchFailure {
        kind,
        message: message.to_string(),
        hint,
    }
}

/// The group's newest launch, if it failed. A failure an attempt after it
/// got past (the quota was raised, capacity came back) no longer counts.
async fn failed_launch(ctx: &StepCtx) -> StepResult<Option<LaunchFailure>> {
    let out = ctx
        .aws
        .asg
        .describe_scaling_activities()
        .auto_scaling_group_name(ctx.names.auto_scaling_group())
        .max_records(20)
        .send()
        .await
        .step()?;
    // Newest first, as AWS lists them.
    Ok(out
        .activities()
        .iter()
        .find(|a| a.description().is_some_and(|d| d.starts_with("Launching")))
        .filter(|a| a.status_code() == Some(&ScalingActivityStatusCode::Failed))
        .map(|a| {
            classify_launch_failure(
                a.status_message()
                    .or(a.description())
                    .unwrap_or("a launch failed without a message"),
            )
        }))
}

/// Live when the group has `desired` instances in service and as many
/// healthy targets; otherwise says which instances never turned healthy.
pub async fn wait_healthy(ctx: &StepCtx) -> StepResult<Value> {
    wait_serving(ctx, Settled::AtLeastDesired).await
}

/// After a change of the group's size: done when it has exactly its own
/// desired capacity in service and healthy, and nothing else (no instance
/// still launching, none still draining). The group's desired capacity,
/// not the parameters': an alarm may act while the change settles.
pub async fn wait_capacity(ctx: &StepCtx) -> StepResult<Value> {
    wait_serving(ctx, Settled::Exactly).await
}

/// When the wait for a serving group ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// At least the parameters' desired count in service and healthy.
    AtLeastDesired,
    /// The group's desired count in service and healthy, and no other
    /// instance in the group.
    Exactly,
}

async fn wait_serving(ctx: &StepCtx, settled: Settled) -> StepResult<Value> {
    let target_group = ctx
        .arn(ResourceKind::TargetGroup, StepKey::TargetGroup)
        .await?;
    let last = std::sync::Mutex::new((Vec::<String>::new(), Vec::<String>::new()));
    let waited = ctx
        .wait_for(
            "instances in service and healthy",
            ctx.timings.healthy,
            || async {
                let group = describe_group(ctx).await?.ok_or_else(|| {
                    StepError::fatal("GroupMissing", "the Auto Scaling group disappeared")
                })?;
                let desired = match settled {
                    Settled::AtLeastDesired => ctx.params.desired,
                    Settled::Exactly => group
                        .desired_capacity()
                        .and_then(|d| u32::try_from(d).ok())
                        .unwrap_or(ctx.params.desired),
                };
                let desired = usize::try_from(desired).unwrap_or(usize::MAX);
                let in_service: Vec<String> = group
                    .instances()
                    .iter()
                    .filter(|i| i.lifecycle_state() == Some(&LifecycleState::InService))
                    .filter_map(|i| i.instance_id().map(str::to_string))
                    .collect();
                let health = ctx
                    .aws
                    .elb
                    .describe_target_health()
                    .target_group_arn(&target_group)
                    .send()
                    .await
                    .step()?;
                let healthy: Vec<String> = health
                    .target_health_descriptions()
                    .iter()
                    .filter(|d| {
                        d.target_health().and_then(|h| h.state())
                            == Some(&TargetHealthStateEnum::Healthy)
                    })
                    .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
                    .filter(|id| in_service.contains(id))
                    .collect();
                let others = group.instances().len() - in_service.len();
                let done = match settled {
                    Settled::AtLeastDesired => {
                        in_service.len() >= desired && healthy.len() >= desired
                    }
                    Settled::Exactly => {
                        in_service.len() == desired && healthy.len() == desired && others == 0
                    }
                };
                let mut state = format!(
                    "{}/{desired} in service, {}/{desired} healthy",
                    in_service.len(),
                    healthy.len()
                );
                if settled == Settled::Exactly && others > 0 {
                    state = format!("{state}, {others} launching or draining");
                }
                if !done {
                    // AWS reports a launch it could not make only here: a
                    // fatal kind fails the step now, not at the deadline.
                    if let Some(failure) = failed_launch(ctx).await? {
                        match failure.kind {
                            LaunchFailureKind::Fatal(code) => {
                                return Err(StepError {
                                    hint: Some(failure.hint.to_string()),
                                    ..StepError::fatal(code, failure.message)
                                });
                            }
                            LaunchFailureKind::Waiting => {
                                state = format!(
                                    "{state}; the last launch failed, Auto Scaling retries: {} ({})",
                                    failure.message, failure.hint
                                );
                            }
                        }
                    }
                }
                if let Ok(mut last) = last.lock() {
                    *last = (in_service, healthy);
                }
                Ok((!done).then_some(state))
            },
        )
        .await;
    let (in_service, healthy) = last.into_inner().unwrap_or_default();
    match waited {
        Ok(()) => {
            // The address the app answers at, read now that it serves: on
            // AWS the load balancer's DNS name, in the sandbox its local
            // listener, which exists once the targets are being checked.
            let load_balancer = ctx
                .arn(ResourceKind::LoadBalancer, StepKey::LoadBalancer)
                .await?;
            let described = ctx
                .aws
                .elb
                .describe_load_balancers()
                .load_balancer_arns(&load_balancer)
                .send()
                .await
                .step()?;
            let dns = described
                .load_balancers()
                .first()
                .and_then(|lb| lb.dns_name())
                .unwrap_or_default();
            Ok(json!({ "in_service": in_service, "healthy": healthy, "dns_name": dns }))
        }
        // A failed launch already says what to do.
        Err(e) if e.code != "Timeout" => Err(e),
        Err(mut e) => {
            let never: Vec<&String> = in_service
                .iter()
                .filter(|id| !healthy.contains(id))
                .collect();
            if !never.is_empty() {
                e.message = format!(
                    "{}; never healthy: {}",
                    e.message,
                    never
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            e.hint = Some("open the instances' console output or the target group's health reasons; check the health check path and that instances can reach S3 through the NAT gateways".into());
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_failures_are_read_by_their_words() {
        let capacity = classify_launch_failure(
            "We currently do not have sufficient t3.micro capacity in the Availability Zone you \
             requested (us-east-1a). Our system will be working on provisioning additional \
             capacity. Launching EC2 instance failed.",
        );
        assert_eq!(capacity.kind, LaunchFailureKind::Waiting);
        let vcpu = classify_launch_failure(
            "You have requested more vCPU capacity than your current vCPU limit of 32 allows for \
             the instance bucket that the specified instance type belongs to. Launching EC2 \
             instance failed.",
        );
        assert_eq!(vcpu.kind, LaunchFailureKind::Fatal("VcpuLimitExceeded"));
        assert!(vcpu.hint.contains("Service Quotas"));
        let kms = classify_launch_failure(
            "Instance became unhealthy while waiting for instance to be in InService state. \
             Termination Reason: Client.InternalError: Client error on launch",
        );
        assert_eq!(kms.kind, LaunchFailureKind::Fatal("KmsKeyNotUsable"));
        assert_eq!(
            classify_launch_failure("something new").kind,
            LaunchFailureKind::Waiting
        );
    }
}
