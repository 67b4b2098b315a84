//! VPC, internet gateway, subnets, route tables, Elastic IPs and NAT gateways.

use aws_sdk_ec2::types::{AttributeBooleanValue, DomainType, NatGatewayState, ResourceType};
use serde_json::{json, Value};

use super::{filter, gone_ok, StepCtx};
use crate::aws::Aws;
use crate::error::{SdkResultExt, StepError, StepResult};
use crate::plan::{nat_for, StepKey};
use cloudpulse_core::resource::ResourceKind;

fn created<T>(id: Option<T>, what: &str) -> StepResult<T> {
    id.ok_or_else(|| {
        StepError::fatal(
            "EmptyResponse",
            format!("AWS returned no id for the new {what}"),
        )
    })
}

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
    let mut deleted = Vec::new();
    for igw in found.internet_gateways() {
        let Some(id) = igw.internet_gateway_id() else {
            continue;
        };
        for attachment in igw.attachments() {
            if let Some(vpc) = attachment.vpc_id() {
                gone_ok(
                    ec2.detach_internet_gateway()
                        .internet_gateway_id(id)
                        .vpc_id(vpc)
                        .send()
                        .await
                        .step(),
                )?;
            }
        }
        gone_ok(
            ec2.delete_internet_gateway()
                .internet_gateway_id(id)
                .send()
                .await
                .step(),
        )?;
        ctx.forget(ResourceKind::InternetGateway, id).await?;
        deleted.push(id.to_string());
    }
    Ok(json!({ "deleted": deleted }))
}

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
    let plan = ctx
        .params
        .subnets()
        .map_err(|e| StepError::fatal("InvalidParameters", e))?;
    let cidr = if public { &plan.public } else { &plan.private }
        .get(usize::from(az))
        .cloned()
        .ok_or_else(|| {
            StepError::fatal(
                "InvalidParameters",
                format!("no subnet planned for AZ {az}"),
            )
        })?;
    let zone = zone(ctx, az).await?;
    let vpc = ctx.id(ResourceKind::Vpc, StepKey::Vpc).await?;
    let found = ec2
        .describe_subnets()
        .set_filters(Some(ctx.ec2_filters(key)))
        .send()
        .await
        .step()?;
    let id = match found.subnets().iter().find_map(|s| s.subnet_id()) {
        Some(id) => id.to_string(),
        None => {
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
            created(
                out.subnet().and_then(|s| s.subnet_id()).map(str::to_string),
                "subnet",
            )?
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
    let mut deleted = Vec::new();
    for id in found.subnets().iter().filter_map(|s| s.subnet_id()) {
        gone_ok(
            ctx.aws
                .ec2
                .delete_subnet()
                .subnet_id(id)
                .send()
                .await
                .step(),
        )?;
        ctx.forget(ResourceKind::Subnet, id).await?;
        deleted.push(id.to_string());
    }
    Ok(json!({ "deleted": deleted }))
}

/// Finds or creates the route table of `key` and associates it with `subnets`.
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
    let (id, associated): (String, Vec<String>) = match existing {
        Some(table) => (
            table.route_table_id().unwrap_or_default().to_string(),
            table
                .associations()
                .iter()
                .filter_map(|a| a.subnet_id().map(str::to_string))
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
    for subnet in subnets {
        if !associated.contains(subnet) {
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
    let mut deleted = Vec::new();
    for table in found.route_tables() {
        let Some(id) = table.route_table_id() else {
            continue;
        };
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
        gone_ok(
            ec2.delete_route_table()
                .route_table_id(id)
                .send()
                .await
                .step(),
        )?;
        ctx.forget(ResourceKind::RouteTable, id).await?;
        deleted.push(id.to_string());
    }
    Ok(json!({ "deleted": deleted }))
}

pub async fn elastic_ip(ctx: &StepCtx, n: u8) -> StepResult<Value> {
    let key = StepKey::ElasticIp(n);
    let ec2 = &ctx.aws.ec2;
    let found = ec2
        .describe_addresses()
        .set_filters(Some(ctx.ec2_filters(key)))
        .send()
        .await
        .step()?;
    let (id, ip) = match found.addresses().first() {
        Some(a) => (
            a.allocation_id().unwrap_or_default().to_string(),
            a.public_ip().map(str::to_string),
        ),
        None => {
            let out = ec2
                .allocate_address()
                .domain(DomainType::Vpc)
                .tag_specifications(ctx.ec2_tags(
                    ResourceType::ElasticIp,
                    key,
                    &format!("nat-eip-{n}"),
                ))
                .send()
                .await
                .step()?;
            (
                created(out.allocation_id().map(str::to_string), "Elastic IP")?,
                out.public_ip().map(str::to_string),
            )
        }
    };
    ctx.record(ResourceKind::ElasticIp, &id, None, key).await?;
    Ok(json!({ "allocation_id": id, "public_ip": ip }))
}

pub async fn undo_elastic_ip(ctx: &StepCtx, key: StepKey) -> StepResult<Value> {
    let ec2 = &ctx.aws.ec2;
    let found = ec2
        .describe_addresses()
        .set_filters(Some(ctx.ec2_filters(key)))
        .send()
        .await
        .step()?;
    let mut released = Vec::new();
    for id in found.addresses().iter().filter_map(|a| a.allocation_id()) {
        let result = ec2.release_address().allocation_id(id).send().await.step();
        match result {
            // AWS refuses to release an address while the NAT gateway that
            // used it is still `deleting`, in either of two words.
            Err(e)
                if matches!(e.code.as_str(), "AuthFailure" | "InvalidIPAddress.InUse")
                    && nat_still_holds(ctx, id).await? =>
            {
                return Err(StepError {
                    retryable: true,
                    hint: Some(format!(
                        "a NAT gateway that used {id} is still being deleted; AWS frees the \
                         address once the gateway is `deleted`, so the step retries until then"
                    )),
                    ..e
                });
            }
            other => {
                gone_ok(other)?;
            }
        }
        ctx.forget(ResourceKind::ElasticIp, id).await?;
        released.push(id.to_string());
    }
    Ok(json!({ "released": released }))
}

/// Whether a NAT gateway of this deployment that is not yet `deleted`
/// names the address `allocation`.
async fn nat_still_holds(ctx: &StepCtx, allocation: &str) -> StepResult<bool> {
    let found = ctx
        .aws
        .ec2
        .describe_nat_gateways()
        .filter(filter(
            &format!("tag:{}", crate::aws::TAG_DEPLOYMENT),
            ctx.deployment_id.as_str(),
        ))
        .send()
        .await
        .step()?;
    Ok(found.nat_gateways().iter().any(|g| {
        super::tagged_by(g.tags(), ctx.deployment_id.as_str(), None)
            && g.state() != Some(&NatGatewayState::Deleted)
            && g.nat_gateway_addresses()
                .iter()
                .any(|a| a.allocation_id() == Some(allocation))
    }))
}

/// Every NAT gateway `key` of this deployment made that AWS still lists,
/// with its state: the live ones, and the failed, deleting and deleted
/// ones AWS keeps showing for about an hour.
async fn tagged_nat_gateways(
    ctx: &StepCtx,
    key: StepKey,
) -> StepResult<Vec<(String, Option<NatGatewayState>)>> {
    let mut request = ctx.aws.ec2.describe_nat_gateways();
    for f in ctx.ec2_filters(key) {
        request = request.filter(f);
    }
    let found = request.send().await.step()?;
    Ok(found
        .nat_gateways()
        .iter()
        .filter(|g| super::tagged_by(g.tags(), ctx.deployment_id.as_str(), Some(&key.to_string())))
        .filter_map(|g| {
            g.nat_gateway_id()
                .map(|id| (id.to_string(), g.state().cloned()))
        })
        .collect())
}

/// `pending` or `available`: a gateway that is, or will be, of use.
fn nat_is_live(state: Option<&NatGatewayState>) -> bool {
    !matches!(
        state,
        Some(NatGatewayState::Deleted | NatGatewayState::Deleting | NatGatewayState::Failed)
    )
}

/// The `ClientToken` of the next create: the step's own, moved on by each
/// of its gateways that failed or went, so that a new gateway is never
/// asked for with the token of a failed one (AWS would hand the failed
/// one back) and a create repeated after a crash still finds its own.
fn nat_token(ctx: &StepCtx, key: StepKey, gone: usize) -> String {
    match gone {
        0 => format!("{}-{key}", ctx.deployment_id),
        n => format!("{}-{key}-{n}", ctx.deployment_id),
    }
}

pub async fn nat_gateway(ctx: &StepCtx, n: u8) -> StepResult<Value> {
    let key = StepKey::NatGateway(n);
    let ec2 = &ctx.aws.ec2;
    let subnet = ctx
        .id(ResourceKind::Subnet, StepKey::PublicSubnet(n))
        .await?;
    let allocation = ctx
        .id(ResourceKind::ElasticIp, StepKey::ElasticIp(n))
        .await?;
    let gateways = tagged_nat_gateways(ctx, key).await?;
    let gone = gateways
        .iter()
        .filter(|(_, state)| !nat_is_live(state.as_ref()))
        .count();
    let id = match gateways
        .into_iter()
        .find(|(_, state)| nat_is_live(state.as_ref()))
    {
        Some((id, _)) => id,
        None => {
            let out = ec2
                .create_nat_gateway()
                .subnet_id(&subnet)
                .allocation_id(&allocation)
                // The same token makes a retried create return the first gateway.
                .client_token(nat_token(ctx, key, gone))
                .tag_specifications(ctx.ec2_tags(
                    ResourceType::Natgateway,
                    key,
                    &format!("nat-{n}"),
                ))
                .send()
                .await
                .step()?;
            created(
                out.nat_gateway()
                    .and_then(|g| g.nat_gateway_id())
                    .map(str::to_string),
                "NAT gateway",
            )?
        }
    };
    ctx.record(ResourceKind::NatGateway, &id, None, key).await?;
    match wait_nat(ctx, &id, true).await {
        Err(failed) if failed.code == "NatGatewayFailed" => {
            // A failed gateway stays failed: delete it, and the next
            // attempt creates a new one with a new token.
            gone_ok(
                ec2.delete_nat_gateway()
                    .nat_gateway_id(&id)
                    .send()
                    .await
                    .step(),
            )?;
            ctx.forget(ResourceKind::NatGateway, &id).await?;
            return Err(StepError::retryable(
                "NatGatewayFailed",
                format!(
                    "NAT gateway {id} failed: {}; it is being deleted and a new one will be created",
                    failed.message
                ),
            ));
        }
        waited => waited?,
    }
    Ok(json!({ "nat_gateway_id": id, "subnet_id": subnet, "allocation_id": allocation }))
}

/// Waits for a NAT gateway to be available (or deleted), reporting its state.
async fn wait_nat(ctx: &StepCtx, id: &str, available: bool) -> StepResult<()> {
    let what = if available {
        format!("NAT gateway {id} available")
    } else {
        format!("NAT gateway {id} deleted")
    };
    ctx.wait_for(&what, ctx.timings.nat, || async {
        let out = ctx
            .aws
            .ec2
            .describe_nat_gateways()
            .nat_gateway_ids(id)
            .send()
            .await;
        let out = match out.step() {
            Ok(out) => out,
            Err(e) if !available && super::is_gone(&e) => return Ok(None),
            Err(e) if e.retryable => return Ok(Some(e.code)),
            Err(e) => return Err(e),
        };
        let state = out.nat_gateways().first().and_then(|g| g.state().cloned());
        match (state, available) {
            (Some(NatGatewayState::Available), true)
            | (Some(NatGatewayState::Deleted) | None, false) => Ok(None),
            (Some(NatGatewayState::Failed), true) => {
                let reason = out
                    .nat_gateways()
                    .first()
                    .and_then(|g| g.failure_message())
                    .unwrap_or("no reason given")
                    .to_string();
                Err(StepError::retryable("NatGatewayFailed", reason))
            }
            (state, _) => Ok(Some(
                state
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|| "unknown".into()),
            )),
        }
    })
    .await
}

/// Deletes every gateway of `key` that is not yet `deleted` (a failed one
/// too: it is still listed, and the teardown's verification counts it)
/// and waits until each is `deleted`, when AWS frees its address and
/// subnet. One already `deleting` (an earlier teardown that stopped) is
/// waited for.
pub async fn undo_nat_gateway(ctx: &StepCtx, key: StepKey) -> StepResult<Value> {
    let mut deleted = Vec::new();
    for (id, state) in tagged_nat_gateways(ctx, key).await? {
        if state == Some(NatGatewayState::Deleted) {
            ctx.forget(ResourceKind::NatGateway, &id).await?;
            continue;
        }
        if state != Some(NatGatewayState::Deleting) {
            gone_ok(
                ctx.aws
                    .ec2
                    .delete_nat_gateway()
                    .nat_gateway_id(&id)
                    .send()
                    .await
                    .step(),
            )?;
        }
        wait_nat(ctx, &id, false).await?;
        ctx.forget(ResourceKind::NatGateway, &id).await?;
        deleted.push(id);
    }
    Ok(json!({ "deleted": deleted }))
}
