//! The route tables: the public one through the internet gateway, one
//! private one per zone, and their default routes.

use aws_sdk_ec2::types::ResourceType;
use serde_json::{json, Value};

use super::created;
use crate::error::{SdkResultExt, StepResult};
use crate::plan::{nat_for, StepKey};
use crate::steps::{gone_ok, StepCtx};
use cloudpulse_core::resource::ResourceKind;

/// Finds or creates the route table of `key` and associates it with
/// `subnets`, and with no other subnet.
async fn route_table(
    ctx: &StepCtx,
    key: StepKey,
    what: &str,
    subnets: &[String],
) -> StepResult<String> {
    let ec2 = &ctx.aws.ec2;
    let vpc = ctx.id(ResourceKind::Vpc, StepKey::Vpc).await?;
    let found = ec2
        .describe_route_tables()
        .set_filters(Some(ctx.ec2_filters(key)))
        .send()
        .await
        .step()?;
    let existing = found.route_tables().first().cloned();
    // Each associated subnet with its association.
    let (id, associated): (String, Vec<(String, String)>) = match existing {
        Some(table) => (
            table.route_table_id().unwrap_or_default().to_string(),
            table
                .associations()
                .iter()
                .filter_map(|a| {
                    Some((
                        a.subnet_id()?.to_string(),
                        a.route_table_association_id()?.to_string(),
                    ))
                })
                .collect(),
        ),
        None => {
            let out = ec2
                .create_route_table()
                .vpc_id(&vpc)
                .tag_specifications(ctx.ec2_tags(ResourceType::RouteTable, key, what))
                .send()
                .await
                .step()?;
            let id = created(
                out.route_table()
                    .and_then(|t| t.route_table_id())
                    .map(str::to_string),
                "route table",
            )?;
            (id, Vec::new())
        }
    };
    ctx.record(ResourceKind::RouteTable, &id, None, key).await?;
    // A subnet of a zone the stack no longer uses leaves the table first.
    for (subnet, association) in &associated {
        if !subnets.contains(subnet) {
            gone_ok(
                ec2.disassociate_route_table()
                    .association_id(association)
                    .send()
                    .await
                    .step(),
            )?;
        }
    }
    for subnet in subnets {
        if !associated.iter().any(|(s, _)| s == subnet) {
            ec2.associate_route_table()
                .route_table_id(&id)
                .subnet_id(subnet)
                .send()
                .await
                .step()?;
        }
    }
    Ok(id)
}

/// Adds (or points) the default route of `table` at a gateway.
async fn default_route(ctx: &StepCtx, table: &str, gateway: Gateway<'_>) -> StepResult<()> {
    let ec2 = &ctx.aws.ec2;
    let tables = ec2
        .describe_route_tables()
        .route_table_ids(table)
        .send()
        .await
        .step()?;
    let current = tables.route_tables().first().and_then(|t| {
        t.routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
            .cloned()
    });
    // A route added past the portal is drift; the stack's tables hold the
    // local route and the default one only.
    let extra: Vec<String> = tables
        .route_tables()
        .first()
        .map(|t| {
            t.routes()
                .iter()
                .filter(|r| r.gateway_id() != Some("local"))
                .filter_map(|r| r.destination_cidr_block())
                .filter(|d| *d != "0.0.0.0/0")
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for destination in extra {
        gone_ok(
            ec2.delete_route()
                .route_table_id(table)
                .destination_cidr_block(destination)
                .send()
                .await
                .step(),
        )?;
    }
    let (igw, nat) = match gateway {
        Gateway::Internet(id) => (Some(id), None),
        Gateway::Nat(id) => (None, Some(id)),
    };
    match current {
        Some(route) if route.gateway_id() == igw && route.nat_gateway_id() == nat => Ok(()),
        Some(_) => {
            ec2.replace_route()
                .route_table_id(table)
                .destination_cidr_block("0.0.0.0/0")
                .set_gateway_id(igw.map(str::to_string))
                .set_nat_gateway_id(nat.map(str::to_string))
                .send()
                .await
                .step()?;
            Ok(())
        }
        None => {
            ec2.create_route()
                .route_table_id(table)
                .destination_cidr_block("0.0.0.0/0")
                .set_gateway_id(igw.map(str::to_string))
                .set_nat_gateway_id(nat.map(str::to_string))
                .send()
                .await
                .step()?;
            Ok(())
        }
    }
}

enum Gateway<'a> {
    Internet(&'a str),
    Nat(&'a str),
}

pub async fn public_routes(ctx: &StepCtx) -> StepResult<Value> {
    let mut subnets = Vec::new();
    for az in 0..ctx.params.azs {
        subnets.push(
            ctx.id(ResourceKind::Subnet, StepKey::PublicSubnet(az))
                .await?,
        );
    }
    let igw = ctx
        .id(ResourceKind::InternetGateway, StepKey::InternetGateway)
        .await?;
    let table = route_table(ctx, StepKey::PublicRoutes, "public-rt", &subnets).await?;
    default_route(ctx, &table, Gateway::Internet(&igw)).await?;
    Ok(json!({ "route_table_id": table, "subnets": subnets }))
}

pub async fn private_routes(ctx: &StepCtx, az: u8) -> StepResult<Value> {
    let subnet = ctx
        .id(ResourceKind::Subnet, StepKey::PrivateSubnet(az))
        .await?;
    let table = route_table(
        ctx,
        StepKey::PrivateRoutes(az),
        &format!("private-rt-{az}"),
        std::slice::from_ref(&subnet),
    )
    .await?;
    Ok(json!({ "route_table_id": table, "subnet": subnet }))
}

pub async fn nat_route(ctx: &StepCtx, az: u8) -> StepResult<Value> {
    let table = ctx
        .id(ResourceKind::RouteTable, StepKey::PrivateRoutes(az))
        .await?;
    let nat = ctx
        .id(
            ResourceKind::NatGateway,
            StepKey::NatGateway(nat_for(&ctx.params, az)),
        )
        .await?;
    default_route(ctx, &table, Gateway::Nat(&nat)).await?;
    Ok(json!({ "route_table_id": table, "nat_gateway_id": nat }))
}

pub async fn undo_route_table(ctx: &StepCtx, key: StepKey) -> StepResult<Value> {
    let ec2 = &ctx.aws.ec2;
    let found = ec2
        .describe_route_tables()
        .set_filters(Some(ctx.ec2_filters(key)))
        .send()
        .await
        .step()?;
    let tables = found
        .route_tables()
        .iter()
        .filter_map(|t| Some((t.route_table_id()?.to_string(), t)))
        .collect::<Vec<_>>();
    ctx.delete_each(ResourceKind::RouteTable, tables, |id, table| async move {
        for association in table.associations() {
            if association.main() == Some(true) {
                continue;
            }
            if let Some(assoc) = association.route_table_association_id() {
                gone_ok(
                    ec2.disassociate_route_table()
                        .association_id(assoc)
                        .send()
                        .await
                        .step(),
                )?;
            }
        }
        ec2.delete_route_table()
            .route_table_id(id)
            .send()
            .await
            .step()
            .map(drop)
    })
    .await
}
