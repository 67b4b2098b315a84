//! Security groups (load balancer and app, referencing each other) and the
//! private subnets' network ACL.

use aws_sdk_ec2::types::{
    IpPermission, IpRange, PortRange, ResourceType, RuleAction, UserIdGroupPair,
};
use serde_json::{json, Value};

use super::{filter, gone_ok, StepCtx};
use crate::drift::{expected_rules, split_rules};
use crate::error::{SdkResultExt, StepError, StepResult};
use crate::plan::StepKey;
use cloudpulse_core::resource::ResourceKind;

fn tcp(port_from: i32, port_to: i32) -> aws_sdk_ec2::types::builders::IpPermissionBuilder {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(port_from)
        .to_port(port_to)
}

fn cidr(block: &str) -> IpRange {
    IpRange::builder().cidr_ip(block).build()
}

fn group(id: &str) -> UserIdGroupPair {
    UserIdGroupPair::builder().group_id(id).build()
}

/// The rules that name another security group, if any.
fn cross_references(rules: &[IpPermission]) -> Option<Vec<IpPermission>> {
    let referencing: Vec<IpPermission> = rules
        .iter()
        .filter(|p| !p.user_id_group_pairs().is_empty())
        .cloned()
        .collect();
    (!referencing.is_empty()).then_some(referencing)
}

/// Ignores "this rule exists" (adopt) and "this rule is gone" (undo).
fn duplicate_ok(result: StepResult<()>) -> StepResult<()> {
    match result {
        Err(e)
            if e.code == "InvalidPermission.Duplicate"
                || e.code == "InvalidPermission.NotFound" =>
        {
            Ok(())
        }
        other => other,
    }
}

async fn find_group(ctx: &StepCtx, vpc: &str, name: &str) -> StepResult<Option<String>> {
    let found = ctx
        .aws
        .ec2
        .describe_security_groups()
        .filters(filter("vpc-id", vpc))
        .filters(filter("group-name", name))
        .send()
        .await
        .step()?;
    Ok(found
        .security_groups()
        .iter()
        .find_map(|g| g.group_id().map(str::to_string)))
}

async fn ensure_group(
    ctx: &StepCtx,
    vpc: &str,
    name: &str,
    description: &str,
    what: &str,
) -> StepResult<String> {
    let id = match find_group(ctx, vpc, name).await? {
        Some(id) => id,
        None => {
            let out = ctx
                .aws
                .ec2
                .create_security_group()
                .group_name(name)
                .description(description)
                .vpc_id(vpc)
                .tag_specifications(ctx.ec2_tags(
                    ResourceType::SecurityGroup,
                    StepKey::SecurityGroups,
                    what,
                ))
                .send()
                .await
                .step()?;
            out.group_id().map(str::to_string).ok_or_else(|| {
                StepError::fatal("EmptyResponse", "no id for the new security group")
            })?
        }
    };
    ctx.record(
        ResourceKind::SecurityGroup,
        &id,
        None,
        StepKey::SecurityGroups,
    )
    .await?;
    Ok(id)
}

pub async fn security_groups(ctx: &StepCtx) -> StepResult<Value> {
    let ec2 = &ctx.aws.ec2;
    let vpc = ctx.id(ResourceKind::Vpc, StepKey::Vpc).await?;
    let alb = ensure_group(
        ctx,
        &vpc,
        &ctx.names.alb_security_group(),
        "CloudPulse load balancer: HTTP from anywhere",
        "alb-sg",
    )
    .await?;
    let app = ensure_group(
        ctx,
        &vpc,
        &ctx.names.app_security_group(),
        "CloudPulse instances: port 3000 from the load balancer only",
        "app-sg",
    )
    .await?;

    // Replace the default allow-all egress with exactly what each side needs.
    for id in [&alb, &app] {
        duplicate_ok(
            ec2.revoke_security_group_egress()
                .group_id(id)
                .ip_permissions(
                    IpPermission::builder()
                        .ip_protocol("-1")
                        .ip_ranges(cidr("0.0.0.0/0"))
                        .build(),
                )
                .send()
                .await
                .step()
                .map(drop),
        )?;
    }
    duplicate_ok(
        ec2.authorize_security_group_ingress()
            .group_id(&alb)
            .ip_permissions(tcp(80, 80).ip_ranges(cidr("0.0.0.0/0")).build())
            .send()
            .await
            .step()
            .map(drop),
    )?;
    duplicate_ok(
        ec2.authorize_security_group_egress()
            .group_id(&alb)
            .ip_permissions(tcp(3000, 3000).user_id_group_pairs(group(&app)).build())
            .send()
            .await
            .step()
            .map(drop),
    )?;
    duplicate_ok(
        ec2.authorize_security_group_ingress()
            .group_id(&app)
            .ip_permissions(tcp(3000, 3000).user_id_group_pairs(group(&alb)).build())
            .send()
            .await
            .step()
            .map(drop),
    )?;
    duplicate_ok(
        ec2.authorize_security_group_egress()
            .group_id(&app)
            .ip_permissions(tcp(443, 443).ip_ranges(cidr("0.0.0.0/0")).build())
            .send()
            .await
            .step()
            .map(drop),
    )?;
    let revoked = revoke_extras(ctx, &alb, &app).await?;
    Ok(json!({
        "alb_security_group_id": alb,
        "app_security_group_id": app,
        "revoked": revoked,
    }))
}

/// Revokes every rule of the two groups that the stack does not need: one
/// added past the portal (the console, the CLI) is drift, and a repair runs
/// this step to take it away. Answers the rules revoked, as read.
async fn revoke_extras(ctx: &StepCtx, alb: &str, app: &str) -> StepResult<Vec<String>> {
    let ec2 = &ctx.aws.ec2;
    let found = ec2
        .describe_security_groups()
        .group_ids(alb)
        .group_ids(app)
        .send()
        .await
        .step()?;
    let expected = expected_rules(alb, app);
    let mut revoked = Vec::new();
    for g in found.security_groups() {
        let id = g.group_id().unwrap_or_default();
        let (ingress, egress) = if id == alb {
            (&expected.alb_ingress, &expected.alb_egress)
        } else {
            (&expected.app_ingress, &expected.app_egress)
        };
        for (text, rule) in split_rules(g.ip_permissions(), "from") {
            if !ingress.contains(&text) {
                let revoke = ec2.revoke_security_group_ingress().group_id(id);
                duplicate_ok(revoke.ip_permissions(rule).send().await.step().map(drop))?;
                revoked.push(format!("{id} ingress {text}"));
            }
        }
        for (text, rule) in split_rules(g.ip_permissions_egress(), "to") {
            if !egress.contains(&text) {
                let revoke = ec2.revoke_security_group_egress().group_id(id);
                duplicate_ok(revoke.ip_permissions(rule).send().await.step().map(drop))?;
                revoked.push(format!("{id} egress {text}"));
            }
        }
    }
    Ok(revoked)
}

pub async fn undo_security_groups(ctx: &StepCtx) -> StepResult<Value> {
    let ec2 = &ctx.aws.ec2;
    let found = ec2
        .describe_security_groups()
        .set_filters(Some(ctx.ec2_filters(StepKey::SecurityGroups)))
        .send()
        .await
        .step()?;
    let groups: Vec<_> = found.security_groups().to_vec();
    // The two groups reference each other: revoke the cross rules first.
    for g in &groups {
        let Some(id) = g.group_id() else { continue };
        if let Some(rules) = cross_references(g.ip_permissions()) {
            duplicate_ok(
                gone_ok(
                    ec2.revoke_security_group_ingress()
                        .group_id(id)
                        .set_ip_permissions(Some(rules))
                        .send()
                        .await
                        .step(),
                )
                .map(drop),
            )?;
        }
        if let Some(rules) = cross_references(g.ip_permissions_egress()) {
            duplicate_ok(
                gone_ok(
                    ec2.revoke_security_group_egress()
                        .group_id(id)
                        .set_ip_permissions(Some(rules))
                        .send()
                        .await
                        .step(),
                )
                .map(drop),
            )?;
        }
    }
    // A load balancer's network interfaces linger for minutes after it is
    // deleted; DependencyViolation is retryable, so the runner tries again.
    let ids = groups
        .iter()
        .filter_map(|g| Some((g.group_id()?.to_string(), ())))
        .collect::<Vec<_>>();
    ctx.delete_each(ResourceKind::SecurityGroup, ids, |id, ()| async move {
        let deleted = ec2.delete_security_group().group_id(id);
        deleted.send().await.step().map(drop)
    })
    .await
}

/// The private subnets' ACL: app traffic from inside the VPC and return
/// traffic in; HTTPS and return traffic out.
pub async fn network_acl(ctx: &StepCtx) -> StepResult<Value> {
    let ec2 = &ctx.aws.ec2;
    let vpc = ctx.id(ResourceKind::Vpc, StepKey::Vpc).await?;
    let found = ec2
        .describe_network_acls()
        .set_filters(Some(ctx.ec2_filters(StepKey::NetworkAcl)))
        .send()
        .await
        .step()?;
    let id = match found.network_acls().iter().find_map(|a| a.network_acl_id()) {
        Some(id) => id.to_string(),
        None => {
            let out = ec2
                .create_network_acl()
                .vpc_id(&vpc)
                .tag_specifications(ctx.ec2_tags(
                    ResourceType::NetworkAcl,
                    StepKey::NetworkAcl,
                    "private-nacl",
                ))
                .send()
                .await
                .step()?;
            out.network_acl()
                .and_then(|a| a.network_acl_id())
                .map(str::to_string)
                .ok_or_else(|| StepError::fatal("EmptyResponse", "no id for the new network ACL"))?
        }
    };
    ctx.record(ResourceKind::NetworkAcl, &id, None, StepKey::NetworkAcl)
        .await?;
    converge_acl_entries(ctx, &id).await?;
    let mut subnets = Vec::new();
    for az in 0..ctx.params.azs {
        let subnet = ctx
            .id(ResourceKind::Subnet, StepKey::PrivateSubnet(az))
            .await?;
        associate_acl(ctx, &subnet, &id).await?;
        subnets.push(subnet);
    }
    Ok(json!({ "network_acl_id": id, "subnets": subnets }))
}

/// One entry of the private subnets' ACL: its number, direction, source
/// or destination and TCP ports, all allowed.
pub struct AclRule {
    pub number: i32,
    pub egress: bool,
    pub block: String,
    pub ports: (i32, i32),
}

impl AclRule {
    /// Whether `entry` has this rule's number and direction (an ACL holds
    /// at most one such entry).
    pub fn numbers(&self, entry: &aws_sdk_ec2::types::NetworkAclEntry) -> bool {
        entry.rule_number() == Some(self.number) && entry.egress() == Some(self.egress)
    }

    /// As a person reads it: `allow tcp 3000 from 10.0.0.0/16`.
    pub fn text(&self) -> String {
        acl_text("allow", "6", self.egress, &self.block, Some(self.ports))
    }
}

/// An ACL entry as a person reads it.
pub fn acl_text(
    action: &str,
    protocol: &str,
    egress: bool,
    block: &str,
    ports: Option<(i32, i32)>,
) -> String {
    let protocol = match protocol {
        "6" => "tcp",
        "17" => "udp",
        "-1" => "all traffic",
        other => other,
    };
    let ports = match ports {
        Some((from, to)) if protocol != "all traffic" && from == to => format!(" {from}"),
        Some((from, to)) if protocol != "all traffic" => format!(" {from}-{to}"),
        _ => String::new(),
    };
    let way = if egress { "to" } else { "from" };
    format!("{action} {protocol}{ports} {way} {block}")
}

/// App traffic from inside the VPC and return traffic in; HTTPS and return
/// traffic out. Rule 32767, every ACL's final deny, is AWS's.
pub fn acl_rules(vpc_cidr: &str) -> Vec<AclRule> {
    [
        (100, false, vpc_cidr, (3000, 3000)),
        (110, false, "0.0.0.0/0", (1024, 65535)),
        (100, true, "0.0.0.0/0", (443, 443)),
        (110, true, "0.0.0.0/0", (1024, 65535)),
    ]
    .into_iter()
    .map(|(number, egress, block, ports)| AclRule {
        number,
        egress,
        block: block.to_string(),
        ports,
    })
    .collect()
}

/// The number AWS gives every ACL's final deny-all entry.
pub const ACL_DEFAULT_RULE: i32 = 32767;

/// Makes the ACL's entries exactly [`acl_rules`]: a missing one created, a
/// changed one replaced, one the stack does not make deleted (drift, and a
/// repair runs this step to take it away).
async fn converge_acl_entries(ctx: &StepCtx, id: &str) -> StepResult<()> {
    let ec2 = &ctx.aws.ec2;
    let described = ec2
        .describe_network_acls()
        .network_acl_ids(id)
        .send()
        .await
        .step()?;
    let entries: Vec<_> = described
        .network_acls()
        .iter()
        .flat_map(|a| a.entries())
        .filter(|e| e.rule_number() != Some(ACL_DEFAULT_RULE))
        .cloned()
        .collect();
    let wanted = acl_rules(&ctx.params.vpc_cidr);
    for rule in &wanted {
        let current = entries.iter().find(|e| rule.numbers(e));
        if current.is_some_and(|e| entry_text(e) == rule.text()) {
            continue;
        }
        let port_range = PortRange::builder()
            .from(rule.ports.0)
            .to(rule.ports.1)
            .build();
        let result = if current.is_some() {
            ec2.replace_network_acl_entry()
                .network_acl_id(id)
                .rule_number(rule.number)
                .protocol("6")
                .rule_action(RuleAction::Allow)
                .egress(rule.egress)
                .cidr_block(&rule.block)
                .port_range(port_range)
                .send()
                .await
                .step()
                .map(drop)
        } else {
            ec2.create_network_acl_entry()
                .network_acl_id(id)
                .rule_number(rule.number)
                .protocol("6")
                .rule_action(RuleAction::Allow)
                .egress(rule.egress)
                .cidr_block(&rule.block)
                .port_range(port_range)
                .send()
                .await
                .step()
                .map(drop)
        };
        match result {
            Err(e) if e.code == "NetworkAclEntryAlreadyExists" => {}
            other => other?,
        }
    }
    for extra in entries
        .iter()
        .filter(|e| !wanted.iter().any(|r| r.numbers(e)))
    {
        gone_ok(
            ec2.delete_network_acl_entry()
                .network_acl_id(id)
                .rule_number(extra.rule_number().unwrap_or_default())
                .egress(extra.egress().unwrap_or_default())
                .send()
                .await
                .step(),
        )?;
    }
    Ok(())
}

/// An entry AWS describes, read as [`acl_text`] writes it.
pub fn entry_text(entry: &aws_sdk_ec2::types::NetworkAclEntry) -> String {
    acl_text(
        entry.rule_action().map_or("?", |a| a.as_str()),
        entry.protocol().unwrap_or("-1"),
        entry.egress().unwrap_or_default(),
        entry
            .cidr_block()
            .or(entry.ipv6_cidr_block())
            .unwrap_or_default(),
        entry
            .port_range()
            .map(|p| (p.from().unwrap_or_default(), p.to().unwrap_or_default())),
    )
}

/// Points `subnet` at `acl` (each subnet always has exactly one ACL).
async fn associate_acl(ctx: &StepCtx, subnet: &str, acl: &str) -> StepResult<()> {
    let ec2 = &ctx.aws.ec2;
    let current = ec2
        .describe_network_acls()
        .filters(filter("association.subnet-id", subnet))
        .send()
        .await
        .step()?;
    let association = current.network_acls().iter().find_map(|a| {
        a.associations()
            .iter()
            .find(|assoc| assoc.subnet_id() == Some(subnet))
            .map(|assoc| {
                (
                    a.network_acl_id().unwrap_or_default().to_string(),
                    assoc
                        .network_acl_association_id()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
    });
    match association {
        Some((current_acl, _)) if current_acl == acl => Ok(()),
        Some((_, association_id)) => {
            ec2.replace_network_acl_association()
                .association_id(association_id)
                .network_acl_id(acl)
                .send()
                .await
                .step()?;
            Ok(())
        }
        None => Err(StepError::retryable(
            "InvalidSubnetID.NotFound",
            format!("subnet {subnet} has no network ACL association yet"),
        )),
    }
}

pub async fn undo_network_acl(ctx: &StepCtx) -> StepResult<Value> {
    let ec2 = &ctx.aws.ec2;
    let found = ec2
        .describe_network_acls()
        .set_filters(Some(ctx.ec2_filters(StepKey::NetworkAcl)))
        .send()
        .await
        .step()?;
    let acls = found
        .network_acls()
        .iter()
        .filter_map(|a| Some((a.network_acl_id()?.to_string(), a)))
        .collect::<Vec<_>>();
    ctx.delete_each(ResourceKind::NetworkAcl, acls, |id, acl| async move {
        // Hand the subnets back to the VPC's default ACL first.
        if let Some(vpc) = acl.vpc_id() {
            let default = ec2
                .describe_network_acls()
                .filters(filter("vpc-id", vpc))
                .filters(filter("default", "true"))
                .send()
                .await
                .step()?;
            if let Some(default_id) = default
                .network_acls()
                .iter()
                .find_map(|a| a.network_acl_id())
            {
                for assoc_id in acl
                    .associations()
                    .iter()
                    .filter_map(|a| a.network_acl_association_id())
                {
                    gone_ok(
                        ec2.replace_network_acl_association()
                            .association_id(assoc_id)
                            .network_acl_id(default_id)
                            .send()
                            .await
                            .step(),
                    )?;
                }
            }
        }
        ec2.delete_network_acl()
            .network_acl_id(id)
            .send()
            .await
            .step()
            .map(drop)
    })
    .await
}
