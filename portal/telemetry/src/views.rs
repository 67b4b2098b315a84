//! What the pages and the REST API read: the stored telemetry in the shapes
//! of `cloudpulse_core::live`.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use cloudpulse_core::ids::DeploymentId;
use cloudpulse_core::live::{
    InstanceDetail, LiveView, Marker, MetricsRange, MetricsView, Series, Threshold, Topology,
    UptimeSummary, UptimeView, Zone,
};
use cloudpulse_core::params::DeploymentParams;

use cloudpulse_core::model::{DeploymentStatus, EventKind};

use crate::db::{self, Db, DbResult};
use crate::{cost, TelemetryConfig, CALLS_PER_POLL};

/// Points a chart is drawn from, at most, per series.
const MAX_POINTS: i64 = 360;
/// Steps (seconds) points are averaged over, smallest first.
const STEPS: [i64; 14] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
];
/// Kinds of event drawn as markers on the charts.
const MARKED: [EventKind; 4] = [
    EventKind::Scaling,
    EventKind::Chaos,
    EventKind::Recovery,
    EventKind::Alarm,
];
/// Kinds of resource the topology draws.
const TOPOLOGY: [&str; 4] = ["vpc", "subnet", "nat_gateway", "load_balancer"];
/// Timeline events a live view carries.
const RECENT_EVENTS: u32 = 30;

struct Basics {
    name: String,
    status: DeploymentStatus,
    params: DeploymentParams,
    created_at: DateTime<Utc>,
    /// When it was torn down: its charts end there.
    torn_down_at: Option<DateTime<Utc>>,
}

async fn basics(db: &Db, deployment_id: &DeploymentId) -> DbResult<Option<Basics>> {
    let ids = [deployment_id.clone()];
    let found = db.store().deployment_records(Some(&ids)).await?;
    Ok(found.into_iter().next().map(|d| Basics {
        name: d.name,
        status: d.status,
        params: d.params,
        created_at: d.created_at,
        torn_down_at: d.torn_down_at,
    }))
}

/// The smallest step that keeps a span within [`MAX_POINTS`].
pub fn step_for(span_seconds: i64) -> i64 {
    let wanted = (span_seconds + MAX_POINTS - 1) / MAX_POINTS;
    STEPS
        .into_iter()
        .find(|s| *s >= wanted)
        .unwrap_or(STEPS[STEPS.len() - 1])
}

async fn metrics_of(
    db: &Db,
    config: &TelemetryConfig,
    deployment_id: &DeploymentId,
    basics: &Basics,
    range: MetricsRange,
    now: DateTime<Utc>,
    instance: Option<&str>,
) -> DbResult<MetricsView> {
    // A torn-down deployment's charts end at its teardown: a day later its
    // last hour is still the hour before it went, not an empty one.
    let now = basics.torn_down_at.map_or(now, |end| end.min(now));
    let from = match range.span() {
        Some(span) => (now - span).max(basics.created_at.min(now - TimeDelta::minutes(1))),
        None => basics.created_at,
    };
    let step = step_for((now - from).num_seconds().max(1));
    let rows = db::series(
        db,
        deployment_id,
        from.timestamp(),
        now.timestamp(),
        step,
        instance,
    )
    .await?;
    let mut by_name: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for (name, at, value) in rows {
        by_name.entry(name).or_default().push((at, value));
    }
    let series = by_name
        .into_iter()
        .map(|(name, points)| Series { name, points })
        .collect();
    let markers = db
        .store()
        .events_between(deployment_id, from, now, &MARKED)
        .await?
        .into_iter()
        .filter(|(_, _, text)| instance.is_none_or(|i| text.contains(i)))
        .map(|(at, kind, text)| Marker { at, kind, text })
        .collect();
    let poll_seconds = config.poll.as_secs_f64();
    Ok(MetricsView {
        deployment_id: deployment_id.clone(),
        range,
        from,
        to: now,
        step_seconds: step,
        series,
        thresholds: vec![
            Threshold {
                alarm: "high CPU".into(),
                value: basics.params.scale_out_cpu,
                comparison: "GreaterThanThreshold".into(),
            },
            Threshold {
                alarm: "low CPU".into(),
                value: basics.params.scale_in_cpu,
                comparison: "LessThanThreshold".into(),
            },
        ],
        markers,
        poll_seconds,
        api_calls_per_poll: CALLS_PER_POLL,
        api_calls_per_minute: f64::from(CALLS_PER_POLL) * 60.0 / poll_seconds.max(0.001),
    })
}

/// The charts' data of a deployment, `None` if there is no such deployment.
pub async fn metrics(
    db: &Db,
    config: &TelemetryConfig,
    deployment_id: &DeploymentId,
    range: MetricsRange,
    now: DateTime<Utc>,
) -> DbResult<Option<MetricsView>> {
    let Some(basics) = basics(db, deployment_id).await? else {
        return Ok(None);
    };
    metrics_of(db, config, deployment_id, &basics, range, now, None)
        .await
        .map(Some)
}

fn percent(good: u64, all: u64) -> Option<f64> {
    (all > 0).then(|| good as f64 * 100.0 / all as f64)
}

async fn uptime_of(
    db: &Db,
    deployment_id: &DeploymentId,
    basics: &Basics,
    now: DateTime<Utc>,
) -> DbResult<UptimeView> {
    let (good, all) = db::probe_counts(db, deployment_id, basics.created_at.timestamp()).await?;
    let (good_24h, all_24h) =
        db::probe_counts(db, deployment_id, (now - TimeDelta::hours(24)).timestamp()).await?;
    let last = db::last_recovery(db, deployment_id).await?;
    Ok(UptimeView {
        deployment_id: deployment_id.clone(),
        name: basics.name.clone(),
        availability_pct: percent(good, all),
        availability_24h_pct: percent(good_24h, all_24h),
        probes: all,
        failed_probes: all - good.min(all),
        incidents: db::incidents(db, deployment_id, now).await?,
        last_recovery_seconds: last.map(|(s, _)| s),
        last_recovery_at: last.map(|(_, at)| at),
    })
}

/// Availability and incidents of a deployment.
pub async fn uptime(
    db: &Db,
    deployment_id: &DeploymentId,
    now: DateTime<Utc>,
) -> DbResult<Option<UptimeView>> {
    let Some(basics) = basics(db, deployment_id).await? else {
        return Ok(None);
    };
    uptime_of(db, deployment_id, &basics, now).await.map(Some)
}

/// Availability of every deployment that was ever probed, newest first.
pub async fn uptime_all(db: &Db, now: DateTime<Utc>) -> DbResult<UptimeSummary> {
    let ids = db::probed(db).await?;
    let mut deployments = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(view) = uptime(db, &id, now).await? {
            deployments.push(view);
        }
    }
    let probes: u64 = deployments.iter().map(|d| d.probes).sum();
    let failed: u64 = deployments.iter().map(|d| d.failed_probes).sum();
    Ok(UptimeSummary {
        availability_pct: percent(probes - failed, probes),
        probes,
        failed_probes: failed,
        deployments,
    })
}

/// The VPC as built: from the deployment's resources and its subnets' AZs.
pub async fn topology(db: &Db, deployment_id: &DeploymentId, cidr: &str) -> DbResult<Topology> {
    as_built(db, deployment_id, cidr, false).await
}

/// [`topology`] from the resources still there, or with `deleted`, from
/// every resource the deployment ever had.
async fn as_built(
    db: &Db,
    deployment_id: &DeploymentId,
    cidr: &str,
    deleted: bool,
) -> DbResult<Topology> {
    let resources: Vec<(String, String, String)> = db
        .store()
        .resources(deployment_id, None)
        .await?
        .into_iter()
        .filter(|r| (deleted || r.deleted_at.is_none()) && TOPOLOGY.contains(&r.kind.as_str()))
        .map(|r| (r.kind, r.aws_id, r.step_key))
        .collect();
    let outputs = db
        .store()
        .deploy_outputs_of(deployment_id, "subnet:")
        .await?;
    let zone_of: BTreeMap<String, String> = outputs
        .into_iter()
        .filter_map(|(key, outputs)| {
            let zone = outputs["availability_zone"].as_str()?.to_string();
            Some((key.rsplit(':').next()?.to_string(), zone))
        })
        .collect();
    let mut topology = Topology {
        vpc_cidr: cidr.to_string(),
        ..Topology::default()
    };
    let mut zones: BTreeMap<String, Zone> = BTreeMap::new();
    for (kind, aws_id, step) in resources {
        let index = step.rsplit_once(':').map(|(_, i)| i.to_string());
        let zone = |index: &Option<String>| {
            let index = index.clone().unwrap_or_default();
            let name = zone_of
                .get(&index)
                .cloned()
                .unwrap_or_else(|| format!("AZ {index}"));
            (index, name)
        };
        match kind.as_str() {
            "vpc" => topology.vpc_id = Some(aws_id),
            "load_balancer" => topology.load_balancer = Some(aws_id),
            "subnet" | "nat_gateway" => {
                let (index, name) = zone(&index);
                let entry = zones.entry(index).or_insert_with(|| Zone {
                    name,
                    ..Zone::default()
                });
                if kind == "nat_gateway" {
                    entry.nat_gateway = Some(aws_id);
                } else if step.starts_with("public") {
                    entry.public_subnet = Some(aws_id);
                } else {
                    entry.private_subnet = Some(aws_id);
                }
            }
            _ => {}
        }
    }
    topology.zones = zones.into_values().collect();
    Ok(topology)
}

/// Everything the live part of a deployment's page shows.
pub async fn live(
    db: &Db,
    config: &TelemetryConfig,
    deployment_id: &DeploymentId,
    range: MetricsRange,
    now: DateTime<Utc>,
) -> DbResult<Option<LiveView>> {
    let Some(basics) = basics(db, deployment_id).await? else {
        return Ok(None);
    };
    let Some(cost) = cost::cost(db, deployment_id, now).await? else {
        return Ok(None);
    };
    let mut instances = db::instances(db, deployment_id).await?;
    let mut topology = topology(db, deployment_id, &basics.params.vpc_cidr).await?;
    // Torn down: every instance went with the stack, and the topology is
    // the stack as it was, saying so.
    if let Some(end) = basics.torn_down_at {
        for instance in instances.iter_mut().filter(|i| i.gone_at.is_none()) {
            instance.gone_at = Some(end);
        }
        topology = as_built(db, deployment_id, &basics.params.vpc_cidr, true).await?;
        topology.deleted_at = Some(end);
    }
    Ok(Some(LiveView {
        metrics: metrics_of(db, config, deployment_id, &basics, range, now, None).await?,
        instances,
        uptime: uptime_of(db, deployment_id, &basics, now).await?,
        cost,
        events: db.store().events(deployment_id, RECENT_EVENTS).await?,
        topology,
    }))
}

/// One instance's page, `None` if the deployment never had it.
pub async fn instance(
    db: &Db,
    config: &TelemetryConfig,
    deployment_id: &DeploymentId,
    instance_id: &str,
    range: MetricsRange,
    now: DateTime<Utc>,
) -> DbResult<Option<InstanceDetail>> {
    let Some(basics) = basics(db, deployment_id).await? else {
        return Ok(None);
    };
    let Some(record) = db::instance(db, deployment_id, instance_id).await? else {
        return Ok(None);
    };
    let events = db
        .store()
        .recent_events(deployment_id, Some(instance_id), 200)
        .await?;
    Ok(Some(InstanceDetail {
        deployment_id: deployment_id.clone(),
        deployment_name: basics.name.clone(),
        deployment_live: basics.status == DeploymentStatus::Live,
        metrics: metrics_of(
            db,
            config,
            deployment_id,
            &basics,
            range,
            now,
            Some(instance_id),
        )
        .await?,
        instance: record,
        events,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_keep_charts_within_their_points() {
        assert_eq!(step_for(900), 5);
        assert_eq!(step_for(360), 1);
        assert_eq!(step_for(3600), 10);
        assert_eq!(step_for(24 * 3600), 300);
        for span in [1, 59, 900, 3600, 6 * 3600, 86_400, 30 * 86_400] {
            let step = step_for(span);
            assert!(span / step <= MAX_POINTS || step == 7200, "{span}: {step}");
        }
    }
}
