//! What deployments have cost: every priced resource from when it was made
//! until it was deleted, every instance from its launch until it left the
//! group, priced by `cloudpulse_core::pricing`, the module behind the
//! estimate.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cloudpulse_core::ids::DeploymentId;
use cloudpulse_core::live::{CostShare, CostSummary, CostView};
use cloudpulse_core::pricing::{
    self, Lifetime, ResourceKind, BILLED_METRICS_PER_INSTANCE, HOURS_PER_MONTH, PRICES_AS_OF,
    ROOT_VOLUME_GB,
};

use cloudpulse_core::model::DeploymentStatus;
use cloudpulse_engine::store::DeploymentRecord;

use crate::db::{self, Db, DbResult};

/// `(kind, instance type, from, to)` of one thing that was billed.
type Span = (
    ResourceKind,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

/// Kinds of recorded resource that bill by the hour (instances come from
/// the telemetry's own records).
const BILLED: [ResourceKind; 5] = [
    ResourceKind::NatGateway,
    ResourceKind::ElasticIp,
    ResourceKind::LoadBalancer,
    ResourceKind::Alarm,
    ResourceKind::S3Bucket,
];

/// Resources and instances of some deployments (or all), by deployment.
async fn spans(
    db: &Db,
    ids: Option<&[DeploymentId]>,
) -> DbResult<HashMap<DeploymentId, Vec<Span>>> {
    let mut by_deployment: HashMap<DeploymentId, Vec<Span>> = HashMap::new();
    for span in db.store().resource_spans(ids, &BILLED).await? {
        by_deployment.entry(span.deployment_id).or_default().push((
            span.kind,
            None,
            span.created_at,
            span.deleted_at,
        ));
    }
    for (deployment, instance_type, from, to) in db::instance_spans(db, ids).await? {
        by_deployment.entry(deployment).or_default().push((
            ResourceKind::Instance,
            instance_type,
            from,
            to,
        ));
    }
    Ok(by_deployment)
}

/// The billed lifetimes behind a deployment's spans. Nothing outlives the
/// deployment's teardown; an instance brings its EBS volume, its custom
/// metrics and detailed monitoring, and its share of CloudPulse's own
/// CloudWatch use (its metrics read, its `PutMetricData`); the load
/// balancer holds a public address in each AZ and stands for the live
/// deployment's share of that use (the group's metrics, the alarm reads).
fn lifetimes(deployment: &DeploymentRecord, spans: &[Span]) -> Vec<Lifetime> {
    let end = |to: Option<DateTime<Utc>>| match (to, deployment.torn_down_at) {
        (Some(to), Some(down)) => Some(to.min(down)),
        (to, down) => to.or(down),
    };
    let mut all = Vec::new();
    for &(kind, ref instance_type, from, to) in spans {
        let life = |kind, quantity| Lifetime {
            kind,
            instance_type: instance_type.clone(),
            quantity,
            from,
            to: end(to),
        };
        all.push(life(kind, 1.0));
        match kind {
            ResourceKind::Instance => {
                all.push(life(ResourceKind::EbsVolume, ROOT_VOLUME_GB));
                all.push(life(
                    ResourceKind::CustomMetric,
                    f64::from(BILLED_METRICS_PER_INSTANCE),
                ));
                all.push(life(
                    ResourceKind::ApiRequests,
                    pricing::api_units_per_instance_hour(),
                ));
            }
            ResourceKind::LoadBalancer => {
                all.push(life(
                    ResourceKind::ApiRequests,
                    pricing::api_units_per_deployment_hour(),
                ));
                for _ in 0..deployment.params.azs {
                    all.push(life(ResourceKind::ElasticIp, 1.0));
                }
            }
            _ => {}
        }
    }
    all
}

fn view(deployment: &DeploymentRecord, spans: &[Span], now: DateTime<Utc>) -> CostView {
    let lifetimes = lifetimes(deployment, spans);
    let until = deployment.torn_down_at.unwrap_or(now).min(now);
    let instance_hours: f64 = lifetimes
        .iter()
        .filter(|l| l.kind == ResourceKind::Instance)
        .map(|l| pricing::accrued(1.0, l.from, l.to.unwrap_or(until).min(until)))
        .sum();
    let mut view = CostView {
        deployment_id: deployment.id.clone(),
        name: deployment.name.clone(),
        status: deployment.status.as_str().to_string(),
        region: deployment.region.clone(),
        prices_as_of: PRICES_AS_OF.to_string(),
        priced: false,
        hourly_usd: 0.0,
        monthly_usd: 0.0,
        accrued_usd: 0.0,
        since: deployment.created_at,
        until,
        breakdown: Vec::new(),
        instance_hours,
        notes: Vec::new(),
    };
    match pricing::accrue(&deployment.region, &lifetimes, now) {
        Ok(accrual) => {
            view.priced = true;
            view.hourly_usd = accrual.per_hour;
            view.monthly_usd = accrual.per_hour * HOURS_PER_MONTH;
            view.accrued_usd = accrual.accrued;
            view.breakdown = accrual
                .lines
                .iter()
                .map(|line| CostShare {
                    category: line.category,
                    label: line.category.label().to_string(),
                    accrued_usd: line.accrued,
                    hourly_usd: line.per_hour,
                })
                .collect();
        }
        Err(error) => view.notes.push(error.to_string()),
    }
    if spans
        .iter()
        .all(|(kind, ..)| *kind != ResourceKind::Instance)
        && deployment.status == DeploymentStatus::Live
    {
        view.notes.push(
            "no instance has been seen yet; instance-hours count from the first poll".to_string(),
        );
    }
    view
}

/// One deployment's cost, or `None` if there is no such deployment.
pub async fn cost(
    db: &Db,
    deployment_id: &DeploymentId,
    now: DateTime<Utc>,
) -> DbResult<Option<CostView>> {
    let ids = [deployment_id.clone()];
    let Some(deployment) = db.store().deployment_records(Some(&ids)).await?.pop() else {
        return Ok(None);
    };
    let spans = spans(db, Some(&ids)).await?;
    Ok(Some(view(
        &deployment,
        spans.get(deployment_id).map_or(&[][..], Vec::as_slice),
        now,
    )))
}

/// Every deployment's cost, newest first, and the totals.
pub async fn cost_all(db: &Db, now: DateTime<Utc>) -> DbResult<CostSummary> {
    let all = db.store().deployment_records(None).await?;
    let spans = spans(db, None).await?;
    let views: Vec<CostView> = all
        .iter()
        .map(|d| view(d, spans.get(&d.id).map_or(&[][..], Vec::as_slice), now))
        .collect();
    let hourly: f64 = views.iter().map(|v| v.hourly_usd).sum();
    Ok(CostSummary {
        accrued_usd: views.iter().map(|v| v.accrued_usd).sum(),
        hourly_usd: hourly,
        monthly_usd: hourly * HOURS_PER_MONTH,
        deployments: views,
    })
}

/// What the deployments list shows of one deployment's cost and uptime.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    /// Accrued, when its region is priced.
    pub accrued_usd: Option<f64>,
    /// Per hour of what exists now, when priced.
    pub hourly_usd: Option<f64>,
    /// Good probes out of all, once probed.
    pub availability_pct: Option<f64>,
}

/// Cost and availability of the deployments `ids`, for the deployments list.
pub async fn summaries(
    db: &Db,
    ids: &[DeploymentId],
    now: DateTime<Utc>,
) -> DbResult<HashMap<DeploymentId, Figures>> {
    let spans = spans(db, Some(ids)).await?;
    let mut out: HashMap<DeploymentId, Figures> = db
        .store()
        .deployment_records(Some(ids))
        .await?
        .iter()
        .map(|d| {
            let view = view(d, spans.get(&d.id).map_or(&[][..], Vec::as_slice), now);
            let priced = |usd: f64| view.priced.then_some(usd);
            (
                d.id.clone(),
                Figures {
                    accrued_usd: priced(view.accrued_usd),
                    hourly_usd: priced(view.hourly_usd),
                    availability_pct: None,
                },
            )
        })
        .collect();
    let probes = db::probe_totals(db, ids).await?;
    for (id, good, all) in probes {
        if let Some(entry) = out.get_mut(&id) {
            entry.availability_pct = (all > 0).then(|| good * 100.0 / all as f64);
        }
    }
    Ok(out)
}
