//! The CPU alarms that drive the scaling policies.

use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic, Tag as CwTag};
use serde_json::{json, Value};

use crate::error::{SdkResultExt, StepError, StepResult};
use crate::plan::StepKey;
use crate::steps::StepCtx;
use cloudpulse_core::resource::ResourceKind;

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
