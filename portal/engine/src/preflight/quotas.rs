//! The quota checks: how much of each Service Quotas limit the account
//! uses, and whether this deployment fits in what is left.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_ec2::types::{Filter, InstanceLifecycleType, InstanceType};
use aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum;
use cloudpulse_core::model::{Check, CheckStatus};

use crate::aws::Aws;
use crate::error::{SdkResultExt, StepError, StepResult};
use crate::params::{DeploymentParams, NatMode};

use super::*;

/// A quota in Service Quotas: service code, quota code, what it counts.
#[derive(Clone, Copy, Debug)]
pub struct QuotaCode {
    pub service: &'static str,
    pub code: &'static str,
}

impl QuotaCode {
    const fn new(service: &'static str, code: &'static str) -> Self {
        QuotaCode { service, code }
    }
}

pub const VPCS_PER_REGION: QuotaCode = QuotaCode::new("vpc", "L-F678F1CE");
pub const NAT_GATEWAYS_PER_AZ: QuotaCode = QuotaCode::new("vpc", "L-FE5A380F");
pub const ELASTIC_IPS: QuotaCode = QuotaCode::new("ec2", "L-0263D0A3");
pub const ALBS_PER_REGION: QuotaCode = QuotaCode::new("elasticloadbalancing", "L-53DA6B97");
pub const STANDARD_VCPUS: QuotaCode = QuotaCode::new("ec2", "L-1216C47A");

/// Families counted by "Running On-Demand Standard (A, C, D, H, I, M, R, T,
/// Z) instances".
const STANDARD_FAMILIES: &[char] = &['a', 'c', 'd', 'h', 'i', 'm', 'r', 't', 'z'];

/// A quota's value and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub value: u64,
    /// "Service Quotas L-F678F1CE" or "EC2 account attribute vpc-max-elastic-ips".
    pub source: String,
}

/// One quota compared with what is in use and what the deployment adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Headroom<'a> {
    /// The check's name, e.g. "Quota: VPCs per region".
    pub name: &'a str,
    /// What is counted, plural: "VPCs", "vCPUs".
    pub unit: &'a str,
    /// `Err(why)` when the endpoint does not expose the quota.
    pub limit: Result<Limit, String>,
    pub used: u64,
    pub needed: u64,
    /// Where to find the quota: "L-F678F1CE (service vpc)".
    pub quota: &'a str,
}

/// Pass when what is in use plus what the deployment needs fits the quota,
/// fail when it does not, warn (not checked) when the quota is unknown.
pub fn headroom(h: Headroom<'_>) -> Check {
    let usage = format!(
        "{} {} in use; this deployment needs {}",
        h.used, h.unit, h.needed
    );
    match h.limit {
        Err(why) => Check {
            name: h.name.to_string(),
            status: CheckStatus::Warn,
            detail: format!("not checked: {why}; {usage}"),
            hint: Some(format!(
                "compare it yourself before deploying: quota {} in the Service Quotas console",
                h.quota
            )),
        },
        Ok(limit) if h.used.saturating_add(h.needed) > limit.value => Check {
            name: h.name.to_string(),
            status: CheckStatus::Fail,
            detail: format!(
                "{usage}, but the quota is {} ({}): {} short",
                limit.value,
                limit.source,
                h.used.saturating_add(h.needed) - limit.value
            ),
            hint: Some(format!(
                "free {} {} (tear down what you no longer need), use a smaller deployment, \
                 or request an increase of quota {} in the Service Quotas console",
                h.used.saturating_add(h.needed) - limit.value,
                h.unit,
                h.quota
            )),
        },
        Ok(limit) => Check {
            name: h.name.to_string(),
            status: CheckStatus::Pass,
            detail: format!("{usage}; quota {} ({})", limit.value, limit.source),
            hint: None,
        },
    }
}

/// A quota's value from Service Quotas; `Err` says why it is not known.
async fn service_quota(aws: &Aws, quota: QuotaCode) -> Result<Limit, String> {
    let answer = aws
        .quotas
        .get_service_quota()
        .service_code(quota.service)
        .quota_code(quota.code)
        .send()
        .await
        .step();
    match answer {
        Ok(out) => match out.quota().and_then(|q| q.value()) {
            Some(value) if value.is_finite() && value >= 0.0 => Ok(Limit {
                value: value.floor() as u64,
                source: format!("Service Quotas {}", quota.code),
            }),
            _ => Err(format!("Service Quotas has no value for {}", quota.code)),
        },
        Err(error) => Err(format!(
            "Service Quotas did not give {} ({})",
            quota.code, error.code
        )),
    }
}

/// EC2's account attributes (`vpc-max-elastic-ips`, ...), by name.
async fn account_attributes(aws: &Aws) -> StepResult<HashMap<String, u64>> {
    let out = aws.ec2.describe_account_attributes().send().await.step()?;
    Ok(out
        .account_attributes()
        .iter()
        .filter_map(|a| {
            let value = a
                .attribute_values()
                .first()?
                .attribute_value()?
                .parse()
                .ok()?;
            Some((a.attribute_name()?.to_string(), value))
        })
        .collect())
}

fn described(quota: QuotaCode) -> String {
    format!("{} (service {})", quota.code, quota.service)
}

fn failed_to_count(name: &str, what: &str, error: StepError) -> Check {
    fail(
        name,
        format!("could not count {what}: {error}"),
        error.hint.clone().unwrap_or_else(|| {
            "allow the describe calls in policy/operator-policy.json and run the preflight again"
                .into()
        }),
    )
}

pub(super) async fn quotas(aws: &Aws, params: &DeploymentParams) -> Vec<Check> {
    let (vpcs, eips, nat, albs, vcpus) = tokio::join!(
        vpc_quota(aws),
        eip_quota(aws, params),
        nat_quota(aws, params),
        alb_quota(aws),
        vcpu_quota(aws, params),
    );
    vec![vpcs, eips, nat, albs, vcpus]
}

/// NAT gateways (and Elastic IPs) a deployment of `params` creates.
fn nat_gateways(params: &DeploymentParams) -> u64 {
    match params.nat {
        NatMode::PerAz => u64::from(params.azs),
        NatMode::Single => 1,
    }
}

async fn vpc_quota(aws: &Aws) -> Check {
    let (limit, used) = tokio::join!(
        service_quota(aws, VPCS_PER_REGION),
        aws.ec2
            .describe_vpcs()
            .into_paginator()
            .items()
            .send()
            .try_collect(),
    );
    match used.step() {
        Ok(vpcs) => headroom(Headroom {
            name: QUOTA_VPCS,
            unit: "VPCs",
            limit,
            used: vpcs.len() as u64,
            needed: 1,
            quota: &described(VPCS_PER_REGION),
        }),
        Err(error) => failed_to_count(QUOTA_VPCS, "the VPCs", error),
    }
}

async fn eip_quota(aws: &Aws, params: &DeploymentParams) -> Check {
    let (limit, attributes, used) = tokio::join!(
        service_quota(aws, ELASTIC_IPS),
        account_attributes(aws),
        aws.ec2.describe_addresses().send(),
    );
    // Service Quotas first; EC2's own account attribute when it has none.
    let limit = limit.or_else(|why| {
        match attributes
            .as_ref()
            .ok()
            .and_then(|a| a.get("vpc-max-elastic-ips"))
        {
            Some(value) => Ok(Limit {
                value: *value,
                source: "EC2 account attribute vpc-max-elastic-ips".into(),
            }),
            None => Err(format!("{why}, and EC2 has no vpc-max-elastic-ips")),
        }
    });
    match used.step() {
        Ok(out) => headroom(Headroom {
            name: QUOTA_EIPS,
            unit: "Elastic IPs",
            limit,
            used: out.addresses().len() as u64,
            needed: nat_gateways(params),
            quota: &described(ELASTIC_IPS),
        }),
        Err(error) => failed_to_count(QUOTA_EIPS, "the Elastic IPs", error),
    }
}

/// Live NAT gateways per availability zone.
async fn nat_gateways_per_zone(aws: &Aws) -> StepResult<BTreeMap<String, u64>> {
    let nats = aws
        .ec2
        .describe_nat_gateways()
        .filter(
            Filter::builder()
                .name("state")
                .values("pending")
                .values("available")
                .build(),
        )
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .step()?;
    let subnet_ids: BTreeSet<String> = nats
        .iter()
        .filter_map(|n| n.subnet_id().map(str::to_string))
        .collect();
    if subnet_ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let subnets = aws
        .ec2
        .describe_subnets()
        .filters(
            Filter::builder()
                .name("subnet-id")
                .set_values(Some(subnet_ids.into_iter().collect()))
                .build(),
        )
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .step()?;
    let zone_of: HashMap<&str, &str> = subnets
        .iter()
        .filter_map(|s| Some((s.subnet_id()?, s.availability_zone()?)))
        .collect();
    let mut per_zone = BTreeMap::new();
    for nat in &nats {
        if let Some(zone) = nat.subnet_id().and_then(|s| zone_of.get(s)) {
            *per_zone.entry(zone.to_string()).or_insert(0) += 1;
        }
    }
    Ok(per_zone)
}

async fn nat_quota(aws: &Aws, params: &DeploymentParams) -> Check {
    let (limit, per_zone, chosen) = tokio::join!(
        service_quota(aws, NAT_GATEWAYS_PER_AZ),
        nat_gateways_per_zone(aws),
        chosen_zones(aws, params),
    );
    let (per_zone, chosen) = match (per_zone, chosen) {
        (Ok(p), Ok(c)) => (p, c),
        (Err(error), _) | (_, Err(error)) => {
            return failed_to_count(QUOTA_NAT, "the NAT gateways per zone", error)
        }
    };
    // Every zone gets one in per-AZ mode; single mode puts its one in the first.
    let zones = match params.nat {
        NatMode::PerAz => &chosen[..],
        NatMode::Single => &chosen[..chosen.len().min(1)],
    };
    // The fullest zone the deployment adds one to decides (the first of equals).
    let count = |z: &String| per_zone.get(z).copied().unwrap_or(0);
    let fullest = zones
        .iter()
        .reduce(|best, z| if count(z) > count(best) { z } else { best });
    let used = fullest.and_then(|z| per_zone.get(z)).copied().unwrap_or(0);
    let mut check = headroom(Headroom {
        name: QUOTA_NAT,
        unit: "NAT gateways",
        limit,
        used,
        needed: u64::from(fullest.is_some()),
        quota: &described(NAT_GATEWAYS_PER_AZ),
    });
    if let Some(zone) = fullest {
        check.detail = format!("in {zone}, the fullest zone used: {}", check.detail);
    }
    check
}

async fn alb_quota(aws: &Aws) -> Check {
    let (limit, used) = tokio::join!(
        service_quota(aws, ALBS_PER_REGION),
        aws.elb
            .describe_load_balancers()
            .into_paginator()
            .items()
            .send()
            .try_collect(),
    );
    match used.step() {
        Ok(lbs) => headroom(Headroom {
            name: QUOTA_ALBS,
            unit: "Application Load Balancers",
            limit,
            used: lbs
                .iter()
                .filter(|lb| lb.r#type() == Some(&LoadBalancerTypeEnum::Application))
                .count() as u64,
            needed: 1,
            quota: &described(ALBS_PER_REGION),
        }),
        Err(error) => failed_to_count(QUOTA_ALBS, "the load balancers", error),
    }
}

fn is_standard(instance_type: &str) -> bool {
    instance_type
        .chars()
        .next()
        .is_some_and(|c| STANDARD_FAMILIES.contains(&c))
}

/// Default vCPUs of each type, as EC2 describes them.
async fn vcpus_of(aws: &Aws, types: &BTreeSet<String>) -> StepResult<HashMap<String, u64>> {
    let mut vcpus = HashMap::new();
    let types: Vec<&String> = types.iter().collect();
    // DescribeInstanceTypes takes at most 100 names a call.
    for batch in types.chunks(100) {
        let out = aws
            .ec2
            .describe_instance_types()
            .set_instance_types(Some(
                batch
                    .iter()
                    .map(|t| InstanceType::from(t.as_str()))
                    .collect(),
            ))
            .send()
            .await
            .step()?;
        for t in out.instance_types() {
            if let (Some(name), Some(n)) = (
                t.instance_type(),
                t.v_cpu_info().and_then(|v| v.default_v_cpus()),
            ) {
                vcpus.insert(name.as_str().to_string(), u64::try_from(n).unwrap_or(0));
            }
        }
    }
    Ok(vcpus)
}

async fn vcpu_quota(aws: &Aws, params: &DeploymentParams) -> Check {
    let (limit, running) = tokio::join!(
        service_quota(aws, STANDARD_VCPUS),
        aws.ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .build(),
            )
            .into_paginator()
            .items()
            .send()
            .try_collect(),
    );
    let running = match running.step() {
        Ok(pages) => pages,
        Err(error) => return failed_to_count(QUOTA_VCPUS, "the running instances", error),
    };
    // On-Demand instances of the standard families; Spot has its own quota.
    let on_demand: Vec<String> = running
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.instance_lifecycle() != Some(&InstanceLifecycleType::Spot))
        .filter_map(|i| i.instance_type().map(|t| t.as_str().to_string()))
        .filter(|t| is_standard(t))
        .collect();
    let mut types: BTreeSet<String> = on_demand.iter().cloned().collect();
    types.insert(params.instance_type.clone());
    let vcpus = match vcpus_of(aws, &types).await {
        Ok(vcpus) => vcpus,
        Err(error) => {
            return failed_to_count(QUOTA_VCPUS, "the vCPUs of the instance types", error)
        }
    };
    let Some(per_instance) = vcpus.get(&params.instance_type).copied() else {
        return Check {
            name: QUOTA_VCPUS.into(),
            status: CheckStatus::Warn,
            detail: format!(
                "not checked: EC2 does not describe the vCPUs of {}",
                params.instance_type
            ),
            hint: Some("choose an instance type EC2 describes, such as t3.micro".into()),
        };
    };
    let used = on_demand
        .iter()
        .map(|t| vcpus.get(t).copied().unwrap_or(0))
        .sum();
    let needed = if is_standard(&params.instance_type) {
        u64::from(params.max) * per_instance
    } else {
        0
    };
    headroom(Headroom {
        name: QUOTA_VCPUS,
        unit: "vCPUs",
        limit,
        used,
        needed,
        quota: &described(STANDARD_VCPUS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(value: u64) -> Result<Limit, String> {
        Ok(Limit {
            value,
            source: "test".into(),
        })
    }

    fn judge(limit: Result<Limit, String>, used: u64, needed: u64) -> Check {
        headroom(Headroom {
            name: "Quota: vCPUs",
            unit: "vCPUs",
            limit,
            used,
            needed,
            quota: "L-TEST (service test)",
        })
    }

    #[test]
    fn what_fits_passes_and_exactly_full_still_fits() {
        assert_eq!(judge(limit(32), 4, 8).status, CheckStatus::Pass);
        assert_eq!(judge(limit(32), 24, 8).status, CheckStatus::Pass);
    }

    #[test]
    fn needs_beyond_the_quota_fail_with_the_shortfall_and_a_hint() {
        let check = judge(limit(16), 10, 20);
        assert_eq!(check.status, CheckStatus::Fail);
        assert!(check.detail.contains("14 short"), "{}", check.detail);
        let hint = check.hint.unwrap();
        assert!(hint.contains("free 14 vCPUs"), "{hint}");
        assert!(hint.contains("L-TEST"), "{hint}");
    }

    #[test]
    fn an_unexposed_quota_is_a_warning_not_a_guess() {
        let check = judge(Err("Service Quotas did not give L-1".into()), 1000, 1000);
        assert_eq!(check.status, CheckStatus::Warn);
        assert!(check.detail.starts_with("not checked"), "{}", check.detail);
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        assert_eq!(judge(limit(10), u64::MAX, 1).status, CheckStatus::Fail);
    }

    #[test]
    fn standard_families_are_the_ones_the_vcpu_quota_counts() {
        assert!(is_standard("t3.micro"));
        assert!(is_standard("m5.large"));
        assert!(!is_standard("g5.xlarge"));
        assert!(!is_standard("p4d.24xlarge"));
    }
}
