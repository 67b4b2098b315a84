//! Launch template, Auto Scaling group, scaling policies, CPU alarms, and the
//! wait until the group serves: one module each.

use super::StepCtx;
use crate::aws::Aws;
use crate::error::{SdkResultExt, StepError, StepResult};

mod alarms;
mod group;
mod healthy;
mod refresh;
mod template;

pub use alarms::{alarms, undo_alarms};
pub use group::{
    auto_scaling_group, group_zones, scaling_policies, strays, terminate_strays,
    undo_auto_scaling_group, undo_scaling_policies, update_group,
};
pub use healthy::{wait_capacity, wait_healthy};
pub use refresh::{cancel_instance_refresh, instance_refresh};
pub use template::{launch_template, template_version, undo_launch_template};

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

pub(super) fn size(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}
pub(super) async fn describe_group(
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
