//! The Auto Scaling group and its simple-scaling policies.

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag as AsgTag};
use serde_json::{json, Value};

use super::{describe_group, size};
use crate::aws::Aws;
use crate::error::{SdkResultExt, StepError, StepResult};
use crate::plan::StepKey;
use crate::steps::{filter, filter_any, gone_ok, tagged_by, StepCtx};
use cloudpulse_core::resource::ResourceKind;

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

/// The group of a live stack, which an apply changes: an error when it is
/// gone.
async fn live_group(ctx: &StepCtx) -> StepResult<aws_sdk_autoscaling::types::AutoScalingGroup> {
    describe_group(ctx).await?.ok_or_else(|| {
        StepError::fatal(
            "GroupMissing",
            "the Auto Scaling group is gone: the stack no longer matches its deployment \
             (tear it down and deploy it again)",
        )
    })
}

/// Brings a live group's bounds, grace period and cooldown to the
/// parameters, and with `resize` its desired capacity too. Without it AWS
/// keeps the desired capacity (moved into the new bounds), so a change of
/// the grace period alone does not undo a scale-out the alarms made.
pub async fn update_group(ctx: &StepCtx, resize: bool) -> StepResult<Value> {
    let p = &ctx.params;
    let group = live_group(ctx).await?;
    let was = json!({
        "min": group.min_size(),
        "max": group.max_size(),
        "desired": group.desired_capacity(),
        "grace_period": group.health_check_grace_period(),
        "cooldown": group.default_cooldown(),
    });
    ctx.aws
        .asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(ctx.names.auto_scaling_group())
        .min_size(size(p.min))
        .max_size(size(p.max))
        .set_desired_capacity(resize.then(|| size(p.desired)))
        .health_check_grace_period(size(p.grace_period))
        .default_cooldown(size(p.cooldown))
        .send()
        .await
        .step()?;
    Ok(json!({
        "was": was,
        "min": p.min,
        "max": p.max,
        "desired": resize.then_some(p.desired),
        "grace_period": p.grace_period,
        "cooldown": p.cooldown,
    }))
}

/// Spreads a live group over the private subnets of the parameters'
/// zones, and waits until none of its instances is left in another zone.
/// Auto Scaling rebalances on its own, launching before it terminates: a
/// zone added gets the next launches (and instances moved to it when the
/// group is more than one apart), and the instances of a zone removed are
/// replaced in the others, then drain and terminate. Their subnets can go
/// only after that.
pub async fn group_zones(ctx: &StepCtx) -> StepResult<Value> {
    let mut subnets = Vec::new();
    for az in 0..ctx.params.azs {
        subnets.push(
            ctx.id(ResourceKind::Subnet, StepKey::PrivateSubnet(az))
                .await?,
        );
    }
    let zones: Vec<String> = crate::steps::network::zones(&ctx.aws)
        .await?
        .into_iter()
        .take(usize::from(ctx.params.azs))
        .collect();
    let group = live_group(ctx).await?;
    let listed = |text: &str| -> Vec<String> {
        let mut ids: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        ids.sort();
        ids
    };
    let was = group.vpc_zone_identifier().unwrap_or_default().to_string();
    let wanted = subnets.join(",");
    if listed(&was) != listed(&wanted) {
        ctx.aws
            .asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(ctx.names.auto_scaling_group())
            .vpc_zone_identifier(&wanted)
            .send()
            .await
            .step()?;
    }
    // Launch, health checks and the old instances' draining.
    let limit = ctx.timings.healthy * 2
        + std::time::Duration::from_secs(u64::from(ctx.params.deregistration_delay));
    ctx.wait_for("instances only in the group's zones", limit, || async {
        let group = describe_group(ctx).await?.ok_or_else(|| {
            StepError::fatal("GroupMissing", "the Auto Scaling group disappeared")
        })?;
        let elsewhere: Vec<String> = group
            .instances()
            .iter()
            .filter(|i| {
                !zones
                    .iter()
                    .any(|z| i.availability_zone() == Some(z.as_str()))
            })
            .map(|i| {
                format!(
                    "{} in {} ({})",
                    i.instance_id().unwrap_or_default(),
                    i.availability_zone().unwrap_or_default(),
                    i.lifecycle_state().map_or("unknown", |l| l.as_str())
                )
            })
            .collect();
        Ok((!elsewhere.is_empty()).then(|| elsewhere.join(", ")))
    })
    .await?;
    Ok(json!({ "was": listed(&was), "subnets": subnets, "zones": zones }))
}

/// The instances in `vpc` that bill or hold a volume (pending, running,
/// stopping, stopped) and are not the group's: neither among `members`
/// nor tagged by Auto Scaling as launched by the group named `group` (one
/// launched after `members` was read is).
pub async fn strays(
    aws: &Aws,
    vpc: &str,
    group: &str,
    members: &[String],
) -> StepResult<Vec<aws_sdk_ec2::types::Instance>> {
    let out = aws
        .ec2
        .describe_instances()
        .filters(filter("vpc-id", vpc))
        .filters(filter_any(
            "instance-state-name",
            ["pending", "running", "stopping", "stopped"]
                .map(String::from)
                .to_vec(),
        ))
        .send()
        .await
        .step()?;
    let launched_by_group = |tags: &[aws_sdk_ec2::types::Tag]| {
        tags.iter()
            .any(|t| t.key() == Some(GROUP_NAME_TAG) && t.value() == Some(group))
    };
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| {
            let id = i.instance_id().unwrap_or_default();
            !members.iter().any(|m| m == id) && !launched_by_group(i.tags())
        })
        .cloned()
        .collect())
}

/// The tag Auto Scaling puts on every instance it launches for a group.
const GROUP_NAME_TAG: &str = "aws:autoscaling:groupName";

/// A repair's: terminates the instances of this stack (by its deployment
/// tag) that run in its VPC outside its group. Another's instance there is
/// left alone: the drift check keeps naming it.
pub async fn terminate_strays(ctx: &StepCtx) -> StepResult<Value> {
    let vpc = ctx.id(ResourceKind::Vpc, StepKey::Vpc).await?;
    let members: Vec<String> = live_group(ctx)
        .await?
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    let ours: Vec<String> = strays(&ctx.aws, &vpc, &ctx.names.auto_scaling_group(), &members)
        .await?
        .iter()
        .filter(|i| tagged_by(i.tags(), ctx.deployment_id.as_str(), None))
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    if !ours.is_empty() {
        ctx.aws
            .ec2
            .terminate_instances()
            .set_instance_ids(Some(ours.clone()))
            .send()
            .await
            .step()?;
    }
    Ok(json!({ "terminated": ours }))
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
