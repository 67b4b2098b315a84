//! The orphan scan: every resource in a region that carries a
//! `cloudpulse:deployment` tag whose deployment this database has torn down
//! or never heard of — what a lost database, another portal or an
//! interrupted teardown leaves billing in the dark.
//!
//! Deployments are found by their tag values (and, for the few resources
//! with no tag API worth a call per resource, by the deterministic names that
//! embed the deployment id); each one's resources are then listed by
//! [`inventory::remaining`], the same census a teardown's verify step uses.

use std::collections::BTreeSet;

use chrono::Utc;
use cloudpulse_core::ids::DeploymentId;
use cloudpulse_core::model::{DeploymentStatus, Orphan, OrphanReason, OrphanResource, OrphanScan};
use cloudpulse_core::pricing::{self, ResourceKind};

use crate::aws::{Aws, Names, TAG_DEPLOYMENT};
use crate::error::{SdkResultExt, StepResult};
use crate::inventory::{self, Leftover};
use crate::steps::filter;
use crate::store::{Store, StoreError};

/// Names CloudPulse gives IAM roles, alarms and buckets start with this.
const NAME_PREFIX: &str = "cloudpulse-";

#[derive(Debug, thiserror::Error)]
pub enum OrphanError {
    #[error("cannot list resources in AWS: {0}")]
    Aws(#[from] crate::error::StepError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Scans `aws`'s region and sorts what it finds against `store`.
pub async fn scan(aws: &Aws, store: &Store) -> Result<OrphanScan, OrphanError> {
    let mut orphans = Vec::new();
    for deployment in tagged_deployments(aws).await? {
        let (name, reason) = match store.deployment_status(&deployment).await? {
            None => (None, OrphanReason::Unknown),
            Some((name, DeploymentStatus::TornDown)) => (Some(name), OrphanReason::TornDown),
            // Live, failed or busy: tracked, so not an orphan.
            Some(_) => continue,
        };
        let names = Names::new(&deployment, name.as_deref().unwrap_or_default());
        let left = inventory::remaining(aws, &names).await?;
        if left.is_empty() {
            continue;
        }
        let resources: Vec<OrphanResource> =
            left.into_iter().map(|l| priced(&aws.region, l)).collect();
        orphans.push(Orphan {
            hourly_usd: total(resources.iter().map(|r| r.hourly_usd)),
            deployment_id: deployment,
            name,
            reason,
            resources,
        });
    }
    Ok(OrphanScan {
        region: aws.region.clone(),
        scanned_at: Utc::now(),
        prices_as_of: pricing::PRICES_AS_OF.to_string(),
        hourly_usd: total(orphans.iter().map(|o| o.hourly_usd)),
        orphans,
    })
}

fn priced(region: &str, left: Leftover) -> OrphanResource {
    let hourly_usd = left
        .kind
        .parse::<ResourceKind>()
        .ok()
        .and_then(|kind| pricing::hourly(region, kind, left.instance_type.as_deref()));
    OrphanResource {
        kind: left.kind,
        id: left.id,
        created: left.created,
        hourly_usd,
    }
}

/// The sum, or `None` if any part is unknown: a partial total would
/// understate the bill.
fn total(parts: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    parts.sum()
}

/// Every deployment id that some resource in the region carries.
pub async fn tagged_deployments(aws: &Aws) -> StepResult<BTreeSet<DeploymentId>> {
    let mut ids = BTreeSet::new();
    // Ids are kept in their hyphenated form, whatever form they came in.
    let mut keep = |value: Option<&str>| {
        if let Some(id) = value.and_then(|v| uuid::Uuid::parse_str(v).ok()) {
            ids.insert(DeploymentId::from(id.to_string()));
        }
    };

    // EC2: every taggable resource, in one paginated call.
    let mut pages = aws
        .ec2
        .describe_tags()
        .filters(filter("key", TAG_DEPLOYMENT))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for tag in page.step()?.tags() {
            keep(tag.value());
        }
    }
    // NAT gateways by their own tags as well (moto leaves them out above).
    let nats = aws.ec2.describe_nat_gateways().send().await.step()?;
    for tag in nats.nat_gateways().iter().flat_map(|g| g.tags()) {
        if tag.key() == Some(TAG_DEPLOYMENT) {
            keep(tag.value());
        }
    }

    let asg_tags = aws
        .asg
        .describe_tags()
        .filters(
            aws_sdk_autoscaling::types::Filter::builder()
                .name("key")
                .values(TAG_DEPLOYMENT)
                .build(),
        )
        .send()
        .await
        .step()?;
    for tag in asg_tags.tags() {
        keep(tag.value());
    }

    let mut arns: Vec<String> = Vec::new();
    let lbs = aws.elb.describe_load_balancers().send().await.step()?;
    arns.extend(
        lbs.load_balancers()
            .iter()
            .filter_map(|l| l.load_balancer_arn().map(str::to_string)),
    );
    let tgs = aws.elb.describe_target_groups().send().await.step()?;
    arns.extend(
        tgs.target_groups()
            .iter()
            .filter_map(|t| t.target_group_arn().map(str::to_string)),
    );
    // DescribeTags takes at most 20 ARNs a call.
    for chunk in arns.chunks(20) {
        let described = aws
            .elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .step()?;
        for tag in described
            .tag_descriptions()
            .iter()
            .flat_map(|d| d.tags())
            .filter(|t| t.key() == Some(TAG_DEPLOYMENT))
        {
            keep(tag.value());
        }
    }

    let alarms = aws
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(NAME_PREFIX)
        .send()
        .await
        .step()?;
    for arn in alarms.metric_alarms().iter().filter_map(|a| a.alarm_arn()) {
        let tags = aws
            .cloudwatch
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .step()?;
        for tag in tags
            .tags()
            .iter()
            .filter(|t| t.key() == Some(TAG_DEPLOYMENT))
        {
            keep(tag.value());
        }
    }

    let mut roles = Vec::new();
    let mut pages = aws.iam.list_roles().into_paginator().send();
    while let Some(page) = pages.next().await {
        roles.extend(
            page.step()?
                .roles()
                .iter()
                .map(|r| r.role_name().to_string()),
        );
    }
    for role in roles.iter().filter(|r| r.starts_with(NAME_PREFIX)) {
        let tags = aws
            .iam
            .list_role_tags()
            .role_name(role)
            .send()
            .await
            .step()?;
        for tag in tags.tags().iter().filter(|t| t.key() == TAG_DEPLOYMENT) {
            keep(Some(tag.value()));
        }
    }

    // A bucket's name is the whole deployment id without its hyphens.
    let buckets = aws.s3.list_buckets().send().await.step()?;
    for bucket in buckets.buckets().iter().filter_map(|b| b.name()) {
        if let Some(hex) = bucket.strip_prefix(NAME_PREFIX) {
            keep(Some(hex));
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_price_makes_the_total_unknown() {
        assert_eq!(total([Some(1.0), Some(0.5)].into_iter()), Some(1.5));
        assert_eq!(total([Some(1.0), None].into_iter()), None);
        assert_eq!(total(std::iter::empty()), Some(0.0));
    }

    #[test]
    fn a_resource_is_priced_by_kind_and_region() {
        let nat = Leftover {
            kind: "nat_gateway".into(),
            id: "nat-1".into(),
            created: None,
            instance_type: None,
        };
        let priced_nat = priced("us-east-1", nat.clone());
        assert!(priced_nat.hourly_usd.is_some_and(|h| h > 0.04));
        assert_eq!(priced("mars-north-1", nat).hourly_usd, None);
    }
}
