//! Target group, internet-facing Application Load Balancer and its listener.

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, IpAddressType, LoadBalancer, LoadBalancerSchemeEnum,
    LoadBalancerStateEnum, LoadBalancerTypeEnum, Matcher, ProtocolEnum, Tag, TargetGroup,
    TargetGroupAttribute, TargetTypeEnum,
};
use cloudpulse_core::params::HealthCheck;
use serde_json::{json, Value};

use super::{gone_ok, StepCtx};
use crate::error::{SdkResultExt, StepError, StepResult};
use crate::plan::StepKey;
use cloudpulse_core::resource::ResourceKind;

fn elb_tags(ctx: &StepCtx, step: StepKey, what: &str) -> Vec<Tag> {
    ctx.names
        .tags(&step.to_string(), what)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// The target group attribute that holds the deregistration delay.
pub const DEREGISTRATION_DELAY_KEY: &str = "deregistration_delay.timeout_seconds";

fn seconds(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// The deployment's target group ARN, found by its deterministic name.
async fn find_target_group(ctx: &StepCtx) -> StepResult<Option<String>> {
    Ok(describe_target_group(ctx)
        .await?
        .and_then(|t| t.target_group_arn().map(str::to_string)))
}

/// The deployment's target group as AWS describes it.
async fn describe_target_group(ctx: &StepCtx) -> StepResult<Option<TargetGroup>> {
    let found = gone_ok(
        ctx.aws
            .elb
            .describe_target_groups()
            .names(ctx.names.target_group())
            .send()
            .await
            .step(),
    )?;
    Ok(found.and_then(|f| f.target_groups().first().cloned()))
}

/// Whether a target group checks health as the parameters say.
fn checks_as_asked(group: &TargetGroup, hc: &HealthCheck) -> bool {
    group.health_check_path() == Some(hc.path.as_str())
        && group.health_check_interval_seconds() == Some(seconds(hc.interval))
        && group.health_check_timeout_seconds() == Some(seconds(hc.timeout))
        && group.healthy_threshold_count() == Some(seconds(hc.healthy_threshold))
        && group.unhealthy_threshold_count() == Some(seconds(hc.unhealthy_threshold))
}

/// The deployment's load balancer, found by its deterministic name.
async fn find_load_balancer(ctx: &StepCtx) -> StepResult<Option<LoadBalancer>> {
    let found = gone_ok(
        ctx.aws
            .elb
            .describe_load_balancers()
            .names(ctx.names.load_balancer())
            .send()
            .await
            .step(),
    )?;
    Ok(found.and_then(|f| f.load_balancers().first().cloned()))
}

pub async fn target_group(ctx: &StepCtx) -> StepResult<Value> {
    let elb = &ctx.aws.elb;
    let name = ctx.names.target_group();
    let vpc = ctx.id(ResourceKind::Vpc, StepKey::Vpc).await?;
    let hc = &ctx.params.health_check;
    let arn = match describe_target_group(ctx).await? {
        Some(group) => {
            let arn = group.target_group_arn().unwrap_or_default().to_string();
            // A change of a live stack's health check lands here.
            if !checks_as_asked(&group, hc) {
                elb.modify_target_group()
                    .target_group_arn(&arn)
                    .health_check_path(&hc.path)
                    .health_check_interval_seconds(seconds(hc.interval))
                    .health_check_timeout_seconds(seconds(hc.timeout))
                    .healthy_threshold_count(seconds(hc.healthy_threshold))
                    .unhealthy_threshold_count(seconds(hc.unhealthy_threshold))
                    .send()
                    .await
                    .step()?;
            }
            arn
        }
        None => {
            let out = elb
                .create_target_group()
                .name(&name)
                .protocol(ProtocolEnum::Http)
                .port(3000)
                .vpc_id(&vpc)
                .target_type(TargetTypeEnum::Instance)
                .health_check_protocol(ProtocolEnum::Http)
                .health_check_path(&hc.path)
                .health_check_interval_seconds(seconds(hc.interval))
                .health_check_timeout_seconds(seconds(hc.timeout))
                .healthy_threshold_count(seconds(hc.healthy_threshold))
                .unhealthy_threshold_count(seconds(hc.unhealthy_threshold))
                .matcher(Matcher::builder().http_code("200").build())
                .set_tags(Some(elb_tags(ctx, StepKey::TargetGroup, "tg")))
                .send()
                .await
                .step()?;
            out.target_groups()
                .first()
                .and_then(|t| t.target_group_arn())
                .map(str::to_string)
                .ok_or_else(|| {
                    StepError::fatal("EmptyResponse", "no ARN for the new target group")
                })?
        }
    };
    ctx.record(
        ResourceKind::TargetGroup,
        &name,
        Some(&arn),
        StepKey::TargetGroup,
    )
    .await?;
    // AWS's default keeps a leaving target 300 s: every scale-in and
    // teardown would wait five minutes. Set on every run, so an adopted
    // group gets it too.
    let delay = ctx.params.deregistration_delay;
    elb.modify_target_group_attributes()
        .target_group_arn(&arn)
        .attributes(
            TargetGroupAttribute::builder()
                .key(DEREGISTRATION_DELAY_KEY)
                .value(delay.to_string())
                .build(),
        )
        .send()
        .await
        .step()?;
    Ok(json!({ "target_group": name, "arn": arn, "deregistration_delay": delay }))
}

pub async fn undo_target_group(ctx: &StepCtx) -> StepResult<Value> {
    let name = ctx.names.target_group();
    if let Some(arn) = find_target_group(ctx).await? {
        gone_ok(
            ctx.aws
                .elb
                .delete_target_group()
                .target_group_arn(&arn)
                .send()
                .await
                .step(),
        )?;
    }
    ctx.forget(ResourceKind::TargetGroup, &name).await?;
    Ok(json!({ "deleted": name }))
}

pub async fn load_balancer(ctx: &StepCtx) -> StepResult<Value> {
    let elb = &ctx.aws.elb;
    let name = ctx.names.load_balancer();
    let mut subnets = Vec::new();
    for az in 0..ctx.params.azs {
        subnets.push(
            ctx.id(ResourceKind::Subnet, StepKey::PublicSubnet(az))
                .await?,
        );
    }
    let security_group = alb_security_group(ctx).await?;
    let (arn, dns) = match find_load_balancer(ctx).await? {
        Some(lb) => {
            let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
            // A live stack's zones changed: the balancer spreads to the
            // new zone's subnet, or leaves the old one's.
            let mut enabled: Vec<&str> = lb
                .availability_zones()
                .iter()
                .filter_map(|z| z.subnet_id())
                .collect();
            enabled.sort_unstable();
            let mut wanted: Vec<&str> = subnets.iter().map(String::as_str).collect();
            wanted.sort_unstable();
            if enabled != wanted {
                elb.set_subnets()
                    .load_balancer_arn(&arn)
                    .set_subnets(Some(subnets.clone()))
                    .send()
                    .await
                    .step()?;
            }
            (arn, lb.dns_name().unwrap_or_default().to_string())
        }
        None => {
            let out = elb
                .create_load_balancer()
                .name(&name)
                .set_subnets(Some(subnets.clone()))
                .security_groups(&security_group)
                .scheme(LoadBalancerSchemeEnum::InternetFacing)
                .r#type(LoadBalancerTypeEnum::Application)
                .ip_address_type(IpAddressType::Ipv4)
                .set_tags(Some(elb_tags(ctx, StepKey::LoadBalancer, "alb")))
                .send()
                .await
                .step()?;
            let lb = out.load_balancers().first().ok_or_else(|| {
                StepError::fatal("EmptyResponse", "no load balancer in the create response")
            })?;
            (
                lb.load_balancer_arn().unwrap_or_default().to_string(),
                lb.dns_name().unwrap_or_default().to_string(),
            )
        }
    };
    ctx.record(
        ResourceKind::LoadBalancer,
        &name,
        Some(&arn),
        StepKey::LoadBalancer,
    )
    .await?;
    ctx.wait_for(
        &format!("load balancer {name} active"),
        ctx.timings.load_balancer,
        || async {
            let out = elb
                .describe_load_balancers()
                .load_balancer_arns(&arn)
                .send()
                .await
                .step()?;
            let state = out
                .load_balancers()
                .first()
                .and_then(|lb| lb.state())
                .and_then(|s| s.code().cloned());
            Ok(match state {
                Some(LoadBalancerStateEnum::Active) => None,
                Some(LoadBalancerStateEnum::Failed)
                | Some(LoadBalancerStateEnum::ActiveImpaired) => {
                    return Err(StepError::fatal(
                        "LoadBalancerFailed",
                        format!("load balancer {name} is {state:?}"),
                    ))
                }
                other => Some(
                    other
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_else(|| "unknown".into()),
                ),
            })
        },
    )
    .await?;
    Ok(json!({ "load_balancer": name, "arn": arn, "dns_name": dns, "subnets": subnets }))
}

async fn alb_security_group(ctx: &StepCtx) -> StepResult<String> {
    let groups = ctx
        .ids(ResourceKind::SecurityGroup, StepKey::SecurityGroups)
        .await?;
    let found = ctx
        .aws
        .ec2
        .describe_security_groups()
        .set_group_ids(Some(groups.into_iter().map(|(id, _)| id).collect()))
        .send()
        .await
        .step()?;
    found
        .security_groups()
        .iter()
        .find(|g| g.group_name() == Some(ctx.names.alb_security_group().as_str()))
        .and_then(|g| g.group_id())
        .map(str::to_string)
        .ok_or_else(|| {
            StepError::fatal(
                "MissingDependency",
                "the load balancer's security group is not recorded",
            )
        })
}

pub async fn undo_load_balancer(ctx: &StepCtx) -> StepResult<Value> {
    let elb = &ctx.aws.elb;
    let name = ctx.names.load_balancer();
    if let Some(arn) = find_load_balancer(ctx)
        .await?
        .and_then(|lb| lb.load_balancer_arn().map(str::to_string))
    {
        gone_ok(
            elb.delete_load_balancer()
                .load_balancer_arn(&arn)
                .send()
                .await
                .step(),
        )?;
        ctx.wait_for(
            &format!("load balancer {name} deleted"),
            ctx.timings.load_balancer,
            || async {
                let still = gone_ok(
                    elb.describe_load_balancers()
                        .load_balancer_arns(&arn)
                        .send()
                        .await
                        .step(),
                )?;
                Ok(still
                    .filter(|out| !out.load_balancers().is_empty())
                    .map(|_| "deleting".to_string()))
            },
        )
        .await?;
    }
    ctx.forget(ResourceKind::LoadBalancer, &name).await?;
    Ok(json!({ "deleted": name }))
}

pub async fn listener(ctx: &StepCtx) -> StepResult<Value> {
    let elb = &ctx.aws.elb;
    let lb = ctx
        .arn(ResourceKind::LoadBalancer, StepKey::LoadBalancer)
        .await?;
    let tg = ctx
        .arn(ResourceKind::TargetGroup, StepKey::TargetGroup)
        .await?;
    let found = elb
        .describe_listeners()
        .load_balancer_arn(&lb)
        .send()
        .await
        .step()?;
    let forward = || {
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(&tg)
            .build()
    };
    // One the stack does not make (another port) is drift: a repair runs
    // this step to take it away.
    let mut removed = Vec::new();
    for extra in found.listeners().iter().filter(|l| l.port() != Some(80)) {
        if let Some(arn) = extra.listener_arn() {
            gone_ok(elb.delete_listener().listener_arn(arn).send().await.step())?;
            removed.push(arn.to_string());
        }
    }
    let existing = found.listeners().iter().find(|l| l.port() == Some(80));
    let forwards = existing.is_some_and(|l| {
        l.protocol() == Some(&ProtocolEnum::Http)
            && l.default_actions().len() == 1
            && l.default_actions()[0].r#type() == Some(&ActionTypeEnum::Forward)
            && l.default_actions()[0].target_group_arn() == Some(tg.as_str())
    });
    let mut modified = false;
    if let (Some(listener), false) = (existing, forwards) {
        if let Some(arn) = listener.listener_arn() {
            elb.modify_listener()
                .listener_arn(arn)
                .protocol(ProtocolEnum::Http)
                .port(80)
                .default_actions(forward())
                .send()
                .await
                .step()?;
            modified = true;
        }
    }
    let arn = match existing.and_then(|l| l.listener_arn()) {
        Some(arn) => arn.to_string(),
        None => {
            let out = elb
                .create_listener()
                .load_balancer_arn(&lb)
                .protocol(ProtocolEnum::Http)
                .port(80)
                .default_actions(forward())
                .set_tags(Some(elb_tags(ctx, StepKey::Listener, "http")))
                .send()
                .await
                .step()?;
            out.listeners()
                .first()
                .and_then(|l| l.listener_arn())
                .map(str::to_string)
                .ok_or_else(|| StepError::fatal("EmptyResponse", "no ARN for the new listener"))?
        }
    };
    ctx.record(ResourceKind::Listener, &arn, Some(&arn), StepKey::Listener)
        .await?;
    let mut outputs = json!({ "listener_arn": arn, "port": 80 });
    // What a repair put back, said only when there was something.
    if modified {
        outputs["modified"] = json!(true);
    }
    if !removed.is_empty() {
        outputs["removed"] = json!(removed);
    }
    Ok(outputs)
}

pub async fn undo_listener(ctx: &StepCtx) -> StepResult<Value> {
    let elb = &ctx.aws.elb;
    let arns = ctx.ids(ResourceKind::Listener, StepKey::Listener).await?;
    ctx.delete_each(ResourceKind::Listener, arns, |arn, _| async move {
        let deleted = elb.delete_listener().listener_arn(arn);
        deleted.send().await.step().map(drop)
    })
    .await
}
