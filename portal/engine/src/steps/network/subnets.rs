//! The region's zones and a public and a private subnet in each zone used.

use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType};
use serde_json::{json, Value};

use super::created;
use crate::aws::Aws;
use crate::error::{SdkResultExt, StepError, StepResult};
use crate::plan::StepKey;
use crate::steps::{filter, tagged_by, StepCtx};
use cloudpulse_core::params::cidrs_overlap;
use cloudpulse_core::resource::ResourceKind;

/// The region's available zones (not local or wavelength zones), in name
/// order: a deployment with `azs = n` uses the first `n`.
pub async fn zones(aws: &Aws) -> StepResult<Vec<String>> {
    let out = aws
        .ec2
        .describe_availability_zones()
        .filters(filter("state", "available"))
        .send()
        .await
        .step()?;
    let mut zones: Vec<String> = out
        .availability_zones()
        .iter()
        .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
        .filter_map(|z| z.zone_name().map(str::to_string))
        .collect();
    zones.sort();
    Ok(zones)
}

/// The `az`-th availability zone of the region, in name order.
async fn zone(ctx: &StepCtx, az: u8) -> StepResult<String> {
    let zones = zones(&ctx.aws).await?;
    zones.get(usize::from(az)).cloned().ok_or_else(|| {
        StepError::fatal(
            "NotEnoughZones",
            format!(
                "region {} offers {} availability zones; use azs={}",
                ctx.aws.region,
                zones.len(),
                zones.len().min(3)
            ),
        )
    })
}

pub async fn subnet(ctx: &StepCtx, az: u8, public: bool) -> StepResult<Value> {
    let ec2 = &ctx.aws.ec2;
    let key = if public {
        StepKey::PublicSubnet(az)
    } else {
        StepKey::PrivateSubnet(az)
    };
    let zone = zone(ctx, az).await?;
    let vpc = ctx.id(ResourceKind::Vpc, StepKey::Vpc).await?;
    // Every subnet of the VPC: ours by its tags, the others for the blocks
    // they hold.
    let found = ec2
        .describe_subnets()
        .filters(filter("vpc-id", &vpc))
        .send()
        .await
        .step()?;
    let step = key.to_string();
    let ours = found
        .subnets()
        .iter()
        .find(|s| tagged_by(s.tags(), ctx.deployment_id.as_str(), Some(&step)));
    let (id, cidr) = match ours {
        Some(subnet) => (
            subnet.subnet_id().unwrap_or_default().to_string(),
            subnet.cidr_block().unwrap_or_default().to_string(),
        ),
        None => {
            let taken: Vec<&str> = found
                .subnets()
                .iter()
                .filter_map(|s| s.cidr_block())
                .collect();
            let cidr = ctx
                .params
                .subnet_candidates(az, public)
                .map_err(|e| StepError::fatal("InvalidParameters", e))?
                .into_iter()
                .find(|c| !taken.iter().any(|t| cidrs_overlap(c, t)))
                .ok_or_else(|| {
                    StepError::fatal(
                        "NoFreeBlock",
                        format!(
                            "every block of the VPC range {} holds a subnet: none is left for \
                             the {} subnet of AZ {az}",
                            ctx.params.vpc_cidr,
                            if public { "public" } else { "private" }
                        ),
                    )
                })?;
            let what = format!("{}-{zone}", if public { "public" } else { "private" });
            let out = ec2
                .create_subnet()
                .vpc_id(&vpc)
                .cidr_block(&cidr)
                .availability_zone(&zone)
                .tag_specifications(ctx.ec2_tags(ResourceType::Subnet, key, &what))
                .send()
                .await
                .step()?;
            let id = created(
                out.subnet().and_then(|s| s.subnet_id()).map(str::to_string),
                "subnet",
            )?;
            (id, cidr)
        }
    };
    ctx.record(ResourceKind::Subnet, &id, None, key).await?;
    if public {
        ec2.modify_subnet_attribute()
            .subnet_id(&id)
            .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
            .send()
            .await
            .step()?;
    }
    Ok(json!({ "subnet_id": id, "cidr": cidr, "availability_zone": zone }))
}

pub async fn undo_subnet(ctx: &StepCtx, key: StepKey) -> StepResult<Value> {
    let found = ctx
        .aws
        .ec2
        .describe_subnets()
        .set_filters(Some(ctx.ec2_filters(key)))
        .send()
        .await
        .step()?;
    let ec2 = &ctx.aws.ec2;
    let ids = found
        .subnets()
        .iter()
        .filter_map(|s| Some((s.subnet_id()?.to_string(), ())))
        .collect::<Vec<_>>();
    ctx.delete_each(ResourceKind::Subnet, ids, |id, ()| async move {
        ec2.delete_subnet()
            .subnet_id(id)
            .send()
            .await
            .step()
            .map(drop)
    })
    .await
}
