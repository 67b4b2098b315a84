//! Elastic IPs and the NAT gateways that hold them.

use aws_sdk_ec2::types::{DomainType, NatGatewayState, ResourceType};
use serde_json::{json, Value};

use super::created;
use crate::error::{SdkResultExt, StepError, StepResult};
use crate::plan::StepKey;
use crate::steps::{filter, gone_ok, StepCtx};
use cloudpulse_core::resource::ResourceKind;

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
        crate::steps::tagged_by(g.tags(), ctx.deployment_id.as_str(), None)
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
        .filter(|g| {
            crate::steps::tagged_by(g.tags(), ctx.deployment_id.as_str(), Some(&key.to_string()))
        })
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
            Err(e) if !available && crate::steps::is_gone(&e) => return Ok(None),
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
