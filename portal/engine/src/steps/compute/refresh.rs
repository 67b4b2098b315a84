//! An apply's instance refresh: every instance not on the launch template's
//! latest version replaced, launch before terminate, so the group never has
//! fewer healthy instances than it asks for.

use aws_sdk_autoscaling::types::{InstanceRefresh, InstanceRefreshStatus, RefreshPreferences};
use serde_json::{json, Value};

use super::describe_group;
use crate::error::{SdkResultExt, StepError, StepResult};
use crate::steps::StepCtx;
use cloudpulse_core::change::{
    REFRESH_MAX_HEALTHY_PERCENT, REFRESH_MIN_HEALTHY_PERCENT, REFRESH_WARMUP_SECS,
};

fn percent(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn active(refresh: &InstanceRefresh) -> bool {
    matches!(
        refresh.status(),
        Some(
            InstanceRefreshStatus::Pending
                | InstanceRefreshStatus::InProgress
                | InstanceRefreshStatus::Cancelling
        )
    )
}

async fn refreshes(ctx: &StepCtx) -> StepResult<Vec<InstanceRefresh>> {
    Ok(ctx
        .aws
        .asg
        .describe_instance_refreshes()
        .auto_scaling_group_name(ctx.names.auto_scaling_group())
        .send()
        .await
        .step()?
        .instance_refreshes()
        .to_vec())
}

/// Starts a refresh (or takes up the one under way, after a crash) and
/// waits until it has replaced every instance of another type. Nothing to
/// replace, nothing started.
pub async fn instance_refresh(ctx: &StepCtx) -> StepResult<Value> {
    let group = ctx.names.auto_scaling_group();
    let id = match refreshes(ctx).await?.into_iter().find(active) {
        Some(under_way) => under_way
            .instance_refresh_id()
            .unwrap_or_default()
            .to_string(),
        None => {
            let described = describe_group(ctx).await?.ok_or_else(|| {
                StepError::fatal("GroupMissing", "the Auto Scaling group is gone")
            })?;
            let other_type = described
                .instances()
                .iter()
                .filter(|i| i.instance_type() != Some(ctx.params.instance_type.as_str()))
                .count();
            if other_type == 0 {
                return Ok(json!({ "replaced": 0, "instance_type": ctx.params.instance_type }));
            }
            let started = ctx
                .aws
                .asg
                .start_instance_refresh()
                .auto_scaling_group_name(&group)
                .strategy(aws_sdk_autoscaling::types::RefreshStrategy::Rolling)
                .preferences(
                    RefreshPreferences::builder()
                        .min_healthy_percentage(percent(REFRESH_MIN_HEALTHY_PERCENT))
                        .max_healthy_percentage(percent(REFRESH_MAX_HEALTHY_PERCENT))
                        .instance_warmup(percent(REFRESH_WARMUP_SECS))
                        .skip_matching(true)
                        .build(),
                )
                .send()
                .await
                .step()?;
            started
                .instance_refresh_id()
                .unwrap_or_default()
                .to_string()
        }
    };
    let last = std::sync::Mutex::new(None::<InstanceRefresh>);
    ctx.wait_for("the instance refresh", ctx.timings.healthy * 4, || async {
        let found = refreshes(ctx)
            .await?
            .into_iter()
            .find(|r| r.instance_refresh_id() == Some(id.as_str()))
            .ok_or_else(|| {
                StepError::fatal(
                    "InstanceRefreshGone",
                    format!("Auto Scaling no longer lists the instance refresh {id}"),
                )
            })?;
        let state = match found.status() {
            Some(InstanceRefreshStatus::Successful) => None,
            Some(
                status @ (InstanceRefreshStatus::Cancelled
                | InstanceRefreshStatus::Failed
                | InstanceRefreshStatus::RollbackSuccessful
                | InstanceRefreshStatus::RollbackFailed),
            ) => {
                return Err(StepError::fatal(
                    "InstanceRefreshEnded",
                    format!(
                        "the instance refresh {id} ended {}{}: instances replaced so far \
                             stay; apply the plan again to finish",
                        status.as_str(),
                        found
                            .status_reason()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ),
                ))
            }
            _ => Some(format!(
                "{} % done, {} to replace{}",
                found.percentage_complete().unwrap_or(0),
                found.instances_to_update().unwrap_or(0),
                found
                    .status_reason()
                    .map(|r| format!("; {r}"))
                    .unwrap_or_default()
            )),
        };
        *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(found);
        Ok(state)
    })
    .await?;
    let done = last.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(json!({
        "instance_refresh_id": id,
        "instance_type": ctx.params.instance_type,
        "percentage_complete": done.as_ref().and_then(|r| r.percentage_complete()),
    }))
}

/// The undo of an apply's refresh: cancel the one under way, if any (the
/// instances it replaced stay replaced).
pub async fn cancel_instance_refresh(ctx: &StepCtx) -> StepResult<Value> {
    let cancelled = ctx
        .aws
        .asg
        .cancel_instance_refresh()
        .auto_scaling_group_name(ctx.names.auto_scaling_group())
        .send()
        .await
        .step();
    match cancelled {
        Ok(out) => Ok(json!({ "cancelled": out.instance_refresh_id() })),
        Err(e) if e.code == "ActiveInstanceRefreshNotFound" => Ok(json!({ "cancelled": null })),
        Err(e) => Err(e),
    }
}
