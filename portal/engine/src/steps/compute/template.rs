//! The launch template the group's instances start from, with its user data
//! and the app security group it names.

use aws_sdk_ec2::types::{
    InstanceType, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateTagSpecificationRequest, LaunchTemplatesMonitoringRequest,
    RequestLaunchTemplateData, ResourceType, Tag as Ec2Tag, VolumeType,
};
use base64::Engine as _;
use serde_json::{json, Value};

use super::latest_ami;
use crate::error::{SdkResultExt, StepError, StepResult};
use crate::plan::StepKey;
use crate::steps::StepCtx;
use cloudpulse_core::resource::ResourceKind;
use cloudpulse_instance::user_data::UserData;

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
    let (data, ami) = template_data(ctx, latest_ami(&ctx.aws).await?).await?;
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

/// What every instance starts from, as the parameters say now: `ami` (the
/// newest Amazon Linux 2023, also returned), the instance type, profile,
/// security group, monitoring, metadata options, volume, user data and tags.
async fn template_data(
    ctx: &StepCtx,
    ami: String,
) -> StepResult<(RequestLaunchTemplateData, String)> {
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
    Ok((data, ami))
}

/// An apply's: a new version of the launch template with the parameters'
/// instance type and the newest AMI, unless its latest version has both
/// already (a resumed apply, or nothing to change). The group launches
/// from `$Latest`, so new instances start from it at once; the instance
/// refresh replaces the others.
pub async fn template_version(ctx: &StepCtx) -> StepResult<Value> {
    let ec2 = &ctx.aws.ec2;
    let id = ctx
        .id(ResourceKind::LaunchTemplate, StepKey::LaunchTemplate)
        .await?;
    let latest = ec2
        .describe_launch_template_versions()
        .launch_template_id(&id)
        .versions("$Latest")
        .send()
        .await
        .step()?;
    let latest = latest.launch_template_versions().first();
    let latest_data = latest.and_then(|v| v.launch_template_data());
    let latest_type = latest_data
        .and_then(|d| d.instance_type())
        .map(|t| t.as_str().to_string());
    let latest_image = latest_data.and_then(|d| d.image_id());
    let ami = latest_ami(&ctx.aws).await?;
    if latest_type.as_deref() == Some(ctx.params.instance_type.as_str())
        && latest_image == Some(ami.as_str())
    {
        return Ok(json!({
            "launch_template_id": id,
            "version": latest.and_then(|v| v.version_number()),
            "instance_type": latest_type,
            "ami": ami,
            "adopted": true,
        }));
    }
    let was_image = latest_image.map(str::to_string);
    let (data, ami) = template_data(ctx, ami).await?;
    let out = ec2
        .create_launch_template_version()
        .launch_template_id(&id)
        .version_description(format!("{} from {ami}", ctx.params.instance_type))
        .launch_template_data(data)
        .send()
        .await
        .step()?;
    let version = out
        .launch_template_version()
        .and_then(|v| v.version_number());
    Ok(json!({
        "launch_template_id": id,
        "version": version,
        "was": latest_type,
        "was_ami": was_image,
        "instance_type": ctx.params.instance_type,
        "ami": ami,
    }))
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
    let ec2 = &ctx.aws.ec2;
    let ids = found
        .launch_templates()
        .iter()
        .filter_map(|lt| Some((lt.launch_template_id()?.to_string(), ())))
        .collect::<Vec<_>>();
    ctx.delete_each(ResourceKind::LaunchTemplate, ids, |id, ()| async move {
        let deleted = ec2.delete_launch_template().launch_template_id(id);
        deleted.send().await.step().map(drop)
    })
    .await
}
