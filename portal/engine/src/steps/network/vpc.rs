//! The VPC and its internet gateway.

use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType};
use serde_json::{json, Value};

use super::created;
use crate::error::{SdkResultExt, StepResult};
use crate::plan::StepKey;
use crate::steps::{gone_ok, StepCtx};
use cloudpulse_core::resource::ResourceKind;

pub async fn vpc(ctx: &StepCtx) -> StepResult<Value> {
    let ec2 = &ctx.aws.ec2;
    let found = ec2
        .describe_vpcs()
        .set_filters(Some(ctx.ec2_filters(StepKey::Vpc)))
        .send()
        .await
        .step()?;
    let id = match found.vpcs().iter().find_map(|v| v.vpc_id()) {
        Some(id) => id.to_string(),
        None => {
            let out = ec2
                .create_vpc()
                .cidr_block(&ctx.params.vpc_cidr)
                .tag_specifications(ctx.ec2_tags(ResourceType::Vpc, StepKey::Vpc, "vpc"))
                .send()
                .await
                .step()?;
            created(
                out.vpc().and_then(|v| v.vpc_id()).map(str::to_string),
                "VPC",
            )?
        }
    };
    ctx.record(ResourceKind::Vpc, &id, None, StepKey::Vpc)
        .await?;
    let on = || AttributeBooleanValue::builder().value(true).build();
    ec2.modify_vpc_attribute()
        .vpc_id(&id)
        .enable_dns_support(on())
        .send()
        .await
        .step()?;
    ec2.modify_vpc_attribute()
        .vpc_id(&id)
        .enable_dns_hostnames(on())
        .send()
        .await
        .step()?;
    Ok(json!({ "vpc_id": id, "cidr": ctx.params.vpc_cidr }))
}

pub async fn undo_vpc(ctx: &StepCtx) -> StepResult<Value> {
    let ids = tagged_vpcs(ctx).await?;
    for id in &ids {
        gone_ok(ctx.aws.ec2.delete_vpc().vpc_id(id).send().await.step())?;
        ctx.forget(ResourceKind::Vpc, id).await?;
    }
    Ok(json!({ "deleted": ids }))
}

async fn tagged_vpcs(ctx: &StepCtx) -> StepResult<Vec<String>> {
    let found = ctx
        .aws
        .ec2
        .describe_vpcs()
        .set_filters(Some(ctx.ec2_filters(StepKey::Vpc)))
        .send()
        .await
        .step()?;
    Ok(found
        .vpcs()
        .iter()
        .filter_map(|v| v.vpc_id().map(str::to_string))
        .collect())
}

pub async fn internet_gateway(ctx: &StepCtx) -> StepResult<Value> {
    let ec2 = &ctx.aws.ec2;
    let vpc = ctx.id(ResourceKind::Vpc, StepKey::Vpc).await?;
    let found = ec2
        .describe_internet_gateways()
        .set_filters(Some(ctx.ec2_filters(StepKey::InternetGateway)))
        .send()
        .await
        .step()?;
    let (id, attached) = match found.internet_gateways().first() {
        Some(igw) => (
            igw.internet_gateway_id().unwrap_or_default().to_string(),
            igw.attachments()
                .iter()
                .any(|a| a.vpc_id() == Some(vpc.as_str())),
        ),
        None => {
            let out = ec2
                .create_internet_gateway()
                .tag_specifications(ctx.ec2_tags(
                    ResourceType::InternetGateway,
                    StepKey::InternetGateway,
                    "igw",
                ))
                .send()
                .await
                .step()?;
            let id = created(
                out.internet_gateway()
                    .and_then(|g| g.internet_gateway_id())
                    .map(str::to_string),
                "internet gateway",
            )?;
            (id, false)
        }
    };
    ctx.record(
        ResourceKind::InternetGateway,
        &id,
        None,
        StepKey::InternetGateway,
    )
    .await?;
    if !attached {
        ec2.attach_internet_gateway()
            .internet_gateway_id(&id)
            .vpc_id(&vpc)
            .send()
            .await
            .step()?;
    }
    Ok(json!({ "internet_gateway_id": id }))
}

pub async fn undo_internet_gateway(ctx: &StepCtx) -> StepResult<Value> {
    let ec2 = &ctx.aws.ec2;
    let found = ec2
        .describe_internet_gateways()
        .set_filters(Some(ctx.ec2_filters(StepKey::InternetGateway)))
        .send()
        .await
        .step()?;
    let gateways = found
        .internet_gateways()
        .iter()
        .filter_map(|g| Some((g.internet_gateway_id()?.to_string(), g)))
        .collect::<Vec<_>>();
    ctx.delete_each(
        ResourceKind::InternetGateway,
        gateways,
        |id, igw| async move {
            for vpc in igw.attachments().iter().filter_map(|a| a.vpc_id()) {
                gone_ok(
                    ec2.detach_internet_gateway()
                        .internet_gateway_id(&id)
                        .vpc_id(vpc)
                        .send()
                        .await
                        .step(),
                )?;
            }
            ec2.delete_internet_gateway()
                .internet_gateway_id(id)
                .send()
                .await
                .step()
                .map(drop)
        },
    )
    .await
}
