//! Launch template, Auto Scaling group, scaling policies, CPU alarms, and the
//! wait until the group serves.

use aws_sdk_autoscaling::types::{
    LaunchTemplateSpecification, LifecycleState, ScalingActivityStatusCode, Tag as AsgTag,
};
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic, Tag as CwTag};
use aws_sdk_ec2::types::{
    InstanceType, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateTagSpecificationRequest, LaunchTemplatesMonitoringRequest,
    RequestLaunchTemplateData, ResourceType, Tag as Ec2Tag, VolumeType,
};
use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{gone_ok, StepCtx};
use crate::aws::Aws;
use crate::error::{SdkResultExt, StepError, StepResult};
use crate::plan::StepKey;
use cloudpulse_core::resource::ResourceKind;
use cloudpulse_instance::user_data::UserData;

/// The latest Amazon Linux 2023 AMI for x86_64, from AWS's public parameter.
pub const AMI_PARAMETER: &str =
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";

/// The AMI id [`AMI_PARAMETER`] names in the clients' region; the launch
/// template and the preflight both resolve it here.
pub async fn latest_ami(aws: &Aws) -> StepResult<String> {
    aws.ssm
        .get_parameter()
        .name(AMI_PARAMETER)
        .send()
        .await
        .step()?
        .parameter()
        .and_then(|p| p.value())
        .map(str::to_string)
        .ok_or_else(|| {
            StepError::fatal(
                "AmiNotFound",
                format!("{AMI_PARAMETER} has no value in {}", aws.region),
            )
        })
}

fn size(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

pub async fn launch_template(ctx: &StepCtx) -> StepResult<Value> {
    let ec2 = &ctx.aws.ec2;
    let name = ctx.names.launch_template();
    let found = ec2
        .describe_launch_templates()
        .set_filters(Some(ctx.ec2_filters(StepKey::LaunchTemplate)))
        .send()
        .await
        .step()?;
    if let Some(lt) = found.launch_templates().first() {
        let id = lt.launch_template_id().unwrap_or_default().to_string();
        ctx.record(
            ResourceKind::LaunchTemplate,
            &id,
            None,
            StepKey::LaunchTemplate,
        )
        .await?;
        return Ok(json!({ "launch_template_id": id, "name": name, "adopted": true }));
    }
    let ami = latest_ami(&ctx.aws).await?;
    let profile_arn = ctx
        .arn(ResourceKind::InstanceProfile, StepKey::InstanceProfile)
        .await?;
    let app_sg = ctx
        .ids(ResourceKind::SecurityGroup, StepKey::SecurityGroups)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect::<Vec<_>>();
    let app_sg = app_security_group(ctx, &app_sg).await?;
    let artifact = ctx.artifact.get()?;
    let (bucket, key, asg) = (
        ctx.names.bucket(),
        artifact.key(),
        ctx.names.auto_scaling_group(),
    );
    let script = UserData {
        bucket: &bucket,
        key: &key,
        sha256: &artifact.sha256,
        region: &ctx.aws.region,
        asg_name: &asg,
    }
    .render()
    .map_err(|e| StepError::fatal("InvalidUserData", e.to_string()))?;
    let instance_tags: Vec<Ec2Tag> = ctx
        .names
        .tags(&StepKey::AutoScalingGroup.to_string(), "instance")
        .into_iter()
        .map(|(k, v)| Ec2Tag::builder().key(k).value(v).build())
        .collect();
    let data = RequestLaunchTemplateData::builder()
        .image_id(&ami)
        .instance_type(InstanceType::from(ctx.params.instance_type.as_str()))
        .iam_instance_profile(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .arn(&profile_arn)
                .build(),
        )
        .security_group_ids(&app_sg)
        // Detailed monitoring: EC2 sends CPUUtilization every minute, as the
        // alarms' two 60-second periods need. With basic monitoring (one
        // datapoint every five minutes) they would sit in INSUFFICIENT_DATA
        // or react minutes late. Priced in the estimate (`pricing.rs`).
        .monitoring(
            LaunchTemplatesMonitoringRequest::builder()
                .enabled(true)
                .build(),
        )
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::Enabled)
                .http_tokens(LaunchTemplateHttpTokensState::Required)
                .http_put_response_hop_limit(1)
                .build(),
        )
        .block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name("/dev/xvda")
                .ebs(
                    LaunchTemplateEbsBlockDeviceRequest::builder()
                        .volume_size(8)
                        .volume_type(VolumeType::Gp3)
                        .encrypted(true)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .user_data(base64::engine::general_purpose::STANDARD.encode(script))
        .tag_specifications(
            LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(ResourceType::Instance)
                .set_tags(Some(instance_tags.clone()))
                .build(),
        )
        .tag_specifications(
            LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(ResourceType::Volume)
                .set_tags(Some(instance_tags))
                .build(),
        )
        .build();
    let out = ec2
        .create_launch_template()
        .launch_template_name(&name)
        .client_token(format!("{}-lt", ctx.deployment_id))
        .launch_template_data(data)
        .tag_specifications(ctx.ec2_tags(
            ResourceType::LaunchTemplate,
            StepKey::LaunchTemplate,
            "lt",
        ))
        .send()
        .await
        .step()?;
    let id = out
        .launch_template()
        .and_then(|lt| lt.launch_template_id())
        .map(str::to_string)
        .ok_or_else(|| StepError::fatal("EmptyResponse", "no id for the new launch template"))?;
    ctx.record(
        ResourceKind::LaunchTemplate,
        &id,
        None,
        StepKey::LaunchTemplate,
    )
    .await?;
    Ok(json!({ "launch_template_id": id, "name": name, "ami": ami }))
}

async fn app_security_group(ctx: &StepCtx, ids: &[String]) -> StepResult<String> {
    let found = ctx
        .aws
        .ec2
        .describe_security_groups()
        .set_group_ids(Some(ids.to_vec()))
        .send()
        .await
        .step()?;
    found
        .security_groups()
        .iter()
        .find(|g| g.group_name() == Some(ctx.names.app_security_group().as_str()))
        .and_then(|g| g.group_id())
        .map(str::to_string)
        .ok_or_else(|| {
            StepError::fatal(
                "MissingDependency",
                "the instances' security group is not recorded",
            )
        })
}

pub async fn undo_launch_template(ctx: &StepCtx) -> StepResult<Value> {
    let found = ctx
        .aws
        .ec2
        .describe_launch_templates()
        .set_filters(Some(ctx.ec2_filters(StepKey::LaunchTemplate)))
        .send()
        .await
        .step()?;
    let mut deleted = Vec::new();
    for id in found
        .launch_templates()
        .iter()
        .filter_map(|lt| lt.launch_template_id())
    {
        gone_ok(
            ctx.aws
                .ec2
                .delete_launch_template()
                .launch_template_id(id)
                .send()
                .await
                .step(),
        )?;
        ctx.forget(ResourceKind::LaunchTemplate, id).await?;
        deleted.push(id.to_string());
    }
    Ok(json!({ "deleted": deleted }))
}

async fn describe_group(
    ctx: &StepCtx,
) -> StepResult<Option<aws_sdk_autoscaling::types::AutoScalingGroup>> {
    let out = ctx
        .aws
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(ctx.names.auto_scaling_group())
        .send()
        .await
        .step()?;
    Ok(out.auto_scaling_groups().first().cloned())
}

pub async fn auto_scaling_group(ctx: &StepCtx) -> StepResult<Value> {
    let name = ctx.names.auto_scaling_group();
    let p = &ctx.params;
    if describe_group(ctx).await?.is_none() {
        let template = ctx
            .id(ResourceKind::LaunchTemplate, StepKey::LaunchTemplate)
            .await?;
        let target_group = ctx
            .arn(ResourceKind::TargetGroup, StepKey::TargetGroup)
            .await?;
        let mut subnets = Vec::new();
        for az in 0..p.azs {
            subnets.push(
                ctx.id(ResourceKind::Subnet, StepKey::PrivateSubnet(az))
                    .await?,
            );
        }
        let tags = ctx
            .names
            .tags(&StepKey::AutoScalingGroup.to_string(), "app")
            .into_iter()
            .map(|(k, v)| {
                AsgTag::builder()
                    .key(k)
                    .value(v)
                    .propagate_at_launch(true)
                    .resource_id(&name)
                    .resource_type("auto-scaling-group")
                    .build()
            })
            .collect();
        let created = ctx
            .aws
            .asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(&name)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(&template)
                    .version("$Latest")
                    .build(),
            )
            .min_size(size(p.min))
            .max_size(size(p.max))
            .desired_capacity(size(p.desired))
            .vpc_zone_identifier(subnets.join(","))
            .target_group_arns(&target_group)
            .health_check_type("ELB")
            .health_check_grace_period(size(p.grace_period))
            .default_cooldown(size(p.cooldown))
            .set_tags(Some(tags))
            .send()
            .await
            .step();
        match created {
            Err(e) if e.code == "AlreadyExists" => {}
            other => {
                other?;
            }
        }
    }
    ctx.record(
        ResourceKind::AutoScalingGroup,
        &name,
        None,
        StepKey::AutoScalingGroup,
    )
    .await?;
    Ok(json!({ "auto_scaling_group": name, "min": p.min, "desired": p.desired, "max": p.max }))
}

pub async fn undo_auto_scaling_group(ctx: &StepCtx) -> StepResult<Value> {
    let name = ctx.names.auto_scaling_group();
    if describe_group(ctx).await?.is_some() {
        // Force: terminate its instances instead of refusing.
        gone_ok(
            ctx.aws
                .asg
                .delete_auto_scaling_group()
                .auto_scaling_group_name(&name)
                .force_delete(true)
                .send()
                .await
                .step(),
        )?;
        ctx.wait_for(
            &format!("Auto Scaling group {name} deleted"),
            ctx.timings.asg_delete,
            || async {
                Ok(describe_group(ctx).await?.map(|g| {
                    format!(
                        "{} ({} instances)",
                        g.status().unwrap_or("deleting"),
                        g.instances().len()
                    )
                }))
            },
        )
        .await?;
    }
    ctx.forget(ResourceKind::AutoScalingGroup, &name).await?;
    Ok(json!({ "deleted": name }))
}

/// Creates (or updates) one simple-scaling policy and returns its ARN.
async fn policy(ctx: &StepCtx, name: &str, adjustment: i32) -> StepResult<String> {
    let asg = ctx.names.auto_scaling_group();
    let out = ctx
        .aws
        .asg
        .put_scaling_policy()
        .auto_scaling_group_name(&asg)
        .policy_name(name)
        .policy_type("SimpleScaling")
        .adjustment_type("ChangeInCapacity")
        .scaling_adjustment(adjustment)
        .cooldown(size(ctx.params.cooldown))
        .send()
        .await
        .step()?;
    if let Some(arn) = out.policy_arn() {
        return Ok(arn.to_string());
    }
    // Some implementations leave the ARN out of the response; ask for it.
    let described = ctx
        .aws
        .asg
        .describe_policies()
        .auto_scaling_group_name(&asg)
        .policy_names(name)
        .send()
        .await
        .step()?;
    described
        .scaling_policies()
        .first()
        .and_then(|p| p.policy_arn())
        .map(str::to_string)
        .ok_or_else(|| {
            StepError::retryable("PolicyNotVisible", format!("policy {name} has no ARN yet"))
        })
}

pub async fn scaling_policies(ctx: &StepCtx) -> StepResult<Value> {
    let out_name = ctx.names.scale_out_policy();
    let in_name = ctx.names.scale_in_policy();
    let out_arn = policy(ctx, &out_name, 1).await?;
    ctx.record(
        ResourceKind::ScalingPolicy,
        &out_name,
        Some(&out_arn),
        StepKey::ScalingPolicies,
    )
    .await?;
    let in_arn = policy(ctx, &in_name, -1).await?;
    ctx.record(
        ResourceKind::ScalingPolicy,
        &in_name,
        Some(&in_arn),
        StepKey::ScalingPolicies,
    )
    .await?;
    Ok(json!({ "scale_out": out_arn, "scale_in": in_arn }))
}

pub async fn undo_scaling_policies(ctx: &StepCtx) -> StepResult<Value> {
    let asg = ctx.names.auto_scaling_group();
    let names = [ctx.names.scale_out_policy(), ctx.names.scale_in_policy()];
    for name in &names {
        let result = ctx
            .aws
            .asg
            .delete_policy()
            .auto_scaling_group_name(&asg)
            .policy_name(name)
            .send()
            .await
            .step();
        match result {
            // Deleting the group already removed its policies.
            Err(e) if e.code == "ValidationError" && e.message.contains("not found") => {}
            other => {
                gone_ok(other)?;
            }
        }
        ctx.forget(ResourceKind::ScalingPolicy, name).await?;
    }
    Ok(json!({ "deleted": names }))
}

pub async fn alarms(ctx: &StepCtx) -> StepResult<Value> {
    let asg = ctx.names.auto_scaling_group();
    let policies = ctx
        .ids(ResourceKind::ScalingPolicy, StepKey::ScalingPolicies)
        .await?;
    let arn_of = |name: String| {
        policies
            .iter()
            .find(|(id, _)| *id == name)
            .and_then(|(_, arn)| arn.clone())
            .ok_or_else(|| {
                StepError::fatal(
                    "MissingDependency",
                    format!("policy {name} is not recorded"),
                )
            })
    };
    let alarms = [
        (
            ctx.names.high_cpu_alarm(),
            ComparisonOperator::GreaterThanThreshold,
            ctx.params.scale_out_cpu,
            arn_of(ctx.names.scale_out_policy())?,
        ),
        (
            ctx.names.low_cpu_alarm(),
            ComparisonOperator::LessThanThreshold,
            ctx.params.scale_in_cpu,
            arn_of(ctx.names.scale_in_policy())?,
        ),
    ];
    let tags: Vec<CwTag> = ctx
        .names
        .tags(&StepKey::Alarms.to_string(), "cpu-alarm")
        .into_iter()
        .map(|(k, v)| CwTag::builder().key(k).value(v).build())
        .collect();
    for (name, comparison, threshold, action) in &alarms {
        ctx.aws
            .cloudwatch
            .put_metric_alarm()
            .alarm_name(name)
            .alarm_description(format!(
                "CloudPulse {}: average CPU of {asg}",
                ctx.names.display
            ))
            .namespace("AWS/EC2")
            .metric_name("CPUUtilization")
            .dimensions(
                Dimension::builder()
                    .name("AutoScalingGroupName")
                    .value(&asg)
                    .build(),
            )
            .statistic(Statistic::Average)
            .period(60)
            .evaluation_periods(2)
            .threshold(*threshold)
            .comparison_operator(comparison.clone())
            .alarm_actions(action)
            .set_tags(Some(tags.clone()))
            .send()
            .await
            .step()?;
        ctx.record(ResourceKind::Alarm, name, None, StepKey::Alarms)
            .await?;
    }
    Ok(json!({ "alarms": alarms.iter().map(|a| a.0.clone()).collect::<Vec<_>>() }))
}

pub async fn undo_alarms(ctx: &StepCtx) -> StepResult<Value> {
    let names = vec![ctx.names.high_cpu_alarm(), ctx.names.low_cpu_alarm()];
    ctx.aws
        .cloudwatch
        .delete_alarms()
        .set_alarm_names(Some(names.clone()))
        .send()
        .await
        .step()?;
    for name in &names {
        ctx.forget(ResourceKind::Alarm, name).await?;
    }
    Ok(json!({ "deleted": names }))
}

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
    let target_group = ctx
        .arn(ResourceKind::TargetGroup, StepKey::TargetGroup)
        .await?;
    let desired = usize::try_from(ctx.params.desired).unwrap_or(usize::MAX);
    let last = std::sync::Mutex::new((Vec::<String>::new(), Vec::<String>::new()));
    let waited = ctx
        .wait_for(
            "instances in service and healthy",
            ctx.timings.healthy,
            || async {
                let group = describe_group(ctx).await?.ok_or_else(|| {
                    StepError::fatal("GroupMissing", "the Auto Scaling group disappeared")
                })?;
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
                let done = in_service.len() >= desired && healthy.len() >= desired;
                let mut state = format!(
                    "{}/{desired} in service, {}/{desired} healthy",
                    in_service.len(),
                    healthy.len()
                );
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
