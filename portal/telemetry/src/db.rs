//! The telemetry's store: its own tables in the portal's database (samples,
//! instances, incidents) on a pool of its own, and what it needs of the
//! engine's tables through the engine's [`Store`]. The events it adds to
//! timelines go through the store's one events function, in the same
//! transaction as the poll or probe that saw them.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use cloudpulse_core::ids::DeploymentId;
use cloudpulse_core::live::{Incident, InstanceRecord};
use cloudpulse_core::model::{EventKind, HealthSnapshot};
use cloudpulse_engine::store::{self, StoreError, TimelineEvent};
use cloudpulse_engine::Store;
use sqlx::SqlitePool;

use crate::observe::{Known, NewEvent, Seen};

pub type DbResult<T> = Result<T, StoreError>;

/// Connections of the telemetry's own pool: one poller writes at a time
/// per deployment, pages read.
const CONNECTIONS: u32 = 4;

/// The telemetry's handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: SqlitePool,
    store: Store,
}

impl Db {
    /// A pool of its own on the store's database file (already migrated by
    /// [`Store::open`]), beside the engine's store for the engine's tables.
    pub async fn open(store: &Store) -> DbResult<Self> {
        Ok(Db {
            pool: store::connect(store.path(), CONNECTIONS).await?,
            store: store.clone(),
        })
    }

    /// The engine's store, for what the telemetry reads of deployments,
    /// resources, steps and events.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// One point of a series.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub series: String,
    pub at: i64,
    pub value: f64,
}

impl Sample {
    pub fn new(series: impl Into<String>, at: i64, value: f64) -> Self {
        Sample {
            series: series.into(),
            at,
            value,
        }
    }
}

/// A deployment the poller should be watching, with its app URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    pub id: DeploymentId,
    pub region: String,
    pub app_url: Option<String>,
    pub load_balancer_arn: Option<String>,
}

pub async fn live_deployments(db: &Db) -> DbResult<Vec<Watched>> {
    Ok(db
        .store
        .live_deployments()
        .await?
        .into_iter()
        .map(|live| {
            let text = |key: &str| live.outputs[key].as_str().map(str::to_string);
            Watched {
                app_url: text("app_url"),
                load_balancer_arn: text("load_balancer_arn"),
                id: live.id,
                region: live.region,
            }
        })
        .collect())
}

/// What a previous run of the poller saw, so that a restart reports only
/// what changed since.
pub async fn load_known(db: &Db, deployment_id: &DeploymentId) -> DbResult<Known> {
    let mut known = Known::default();
    // (id, lifecycle, health, target state, target reason)
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let instances: Vec<Row> = sqlx::query_as(
        "SELECT instance_id, lifecycle, health, target_state, target_reason FROM instances
             WHERE deployment_id = ?1 AND gone_at IS NULL",
    )
    .bind(deployment_id.as_str())
    .fetch_all(&db.pool)
    .await?;
    for (id, lifecycle, health, target_state, target_reason) in instances {
        known.instances.insert(
            id,
            Seen {
                lifecycle,
                health,
                target_state,
                target_reason,
            },
        );
    }
    known.activities = db
        .store
        .scaling_activity_ids(deployment_id)
        .await?
        .into_iter()
        .collect::<HashSet<_>>();
    let alarms: Vec<(String, f64)> = sqlx::query_as(
        "SELECT s.series, s.value FROM samples s
         WHERE s.deployment_id = ?1 AND s.series LIKE 'alarm:%' AND s.resolution = 0
           AND s.at = (SELECT MAX(at) FROM samples t
                       WHERE t.deployment_id = s.deployment_id AND t.series = s.series AND t.resolution = 0)",
    )
    .bind(deployment_id.as_str())
    .fetch_all(&db.pool)
    .await?;
    for (series, value) in alarms {
        if let Some(name) = series.strip_prefix("alarm:") {
            known
                .alarms
                .insert(name.to_string(), alarm_state(value).to_string());
        }
    }
    let desired: Option<(f64,)> = sqlx::query_as(
        "SELECT value FROM samples WHERE deployment_id = ?1 AND series = 'desired' AND resolution = 0
         ORDER BY at DESC LIMIT 1",
    )
    .bind(deployment_id.as_str())
    .fetch_optional(&db.pool)
    .await?;
    known.desired = desired.map(|(d,)| d as i32);
    Ok(known)
}

/// An alarm state as a number on the chart: 1 in alarm, 0 OK, -1 without data.
pub fn alarm_value(state: &str) -> f64 {
    match state {
        "ALARM" => 1.0,
        "OK" => 0.0,
        _ => -1.0,
    }
}

fn alarm_state(value: f64) -> &'static str {
    if value >= 0.5 {
        "ALARM"
    } else if value >= 0.0 {
        "OK"
    } else {
        "INSUFFICIENT_DATA"
    }
}

/// A target state as a number on the chart: 1 healthy, 0 unhealthy, and in
/// between on the way in or out.
pub fn target_value(state: &str) -> f64 {
    match state {
        "healthy" => 1.0,
        "initial" => 0.5,
        "draining" => 0.25,
        _ => 0.0,
    }
}

/// Writes one poll: the instances as seen, the samples and the events, in
/// one transaction, so a crash never keeps half of a poll.
pub async fn record_poll(
    db: &Db,
    snapshot: &HealthSnapshot,
    samples: &[Sample],
    events: &[NewEvent],
) -> DbResult<()> {
    let deployment_id = &snapshot.deployment_id;
    let now = snapshot.taken_at;
    let mut tx = db.pool.begin().await?;
    for instance in &snapshot.group.instances {
        let seen = Seen::of(instance);
        sqlx::query(
            "INSERT INTO instances (deployment_id, instance_id, instance_type, availability_zone,
                 private_ip, launched_at, lifecycle, health, target_state, target_reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (deployment_id, instance_id) DO UPDATE SET
                 instance_type = COALESCE(excluded.instance_type, instance_type),
                 availability_zone = COALESCE(excluded.availability_zone, availability_zone),
                 private_ip = COALESCE(excluded.private_ip, private_ip),
                 lifecycle = excluded.lifecycle, health = excluded.health,
                 target_state = excluded.target_state, target_reason = excluded.target_reason,
                 gone_at = NULL",
        )
        .bind(deployment_id.as_str())
        .bind(&instance.id)
        .bind(&instance.instance_type)
        .bind(Some(&instance.availability_zone).filter(|z| !z.is_empty()))
        .bind(&instance.private_ip)
        .bind(instance.launched_at.unwrap_or(now))
        .bind(&seen.lifecycle)
        .bind(&seen.health)
        .bind(&seen.target_state)
        .bind(&seen.target_reason)
        .execute(&mut *tx)
        .await?;
    }
    let present: Vec<&str> = snapshot
        .group
        .instances
        .iter()
        .map(|i| i.id.as_str())
        .collect();
    sqlx::query(
        "UPDATE instances SET gone_at = ?2
         WHERE deployment_id = ?1 AND gone_at IS NULL
           AND instance_id NOT IN (SELECT value FROM json_each(?3))",
    )
    .bind(deployment_id.as_str())
    .bind(now)
    .bind(serde_json::to_string(&present).unwrap_or_else(|_| "[]".into()))
    .execute(&mut *tx)
    .await?;
    for sample in samples {
        sqlx::query(
            "INSERT OR REPLACE INTO samples (deployment_id, series, at, resolution, value)
             VALUES (?1, ?2, ?3, 0, ?4)",
        )
        .bind(deployment_id.as_str())
        .bind(&sample.series)
        .bind(sample.at)
        .bind(sample.value)
        .execute(&mut *tx)
        .await?;
    }
    for event in events {
        let event = TimelineEvent {
            deployment_id,
            at: now,
            kind: event.kind,
            source: Some(SOURCE),
            message: &event.message,
            data: Some(&event.data),
        };
        store::write_event(&mut tx, &event).await?;
    }
    Ok(tx.commit().await?)
}

/// The source the telemetry's events carry.
const SOURCE: &str = "telemetry";

/// An uptime event of the app URL, written with the probe that saw it.
async fn uptime_event(
    conn: &mut sqlx::SqliteConnection,
    deployment_id: &DeploymentId,
    at: DateTime<Utc>,
    message: &str,
) -> DbResult<()> {
    let event = TimelineEvent {
        deployment_id,
        at,
        kind: EventKind::Uptime,
        source: Some(SOURCE),
        message,
        data: None,
    };
    Ok(store::write_event(conn, &event).await?)
}

/// Whether anything (the engine's recovery watch, say) recorded a recovery
/// for the deployment since `since`.
pub async fn recovery_recorded_since(
    db: &Db,
    deployment_id: &DeploymentId,
    since: DateTime<Utc>,
) -> DbResult<bool> {
    db.store.recovery_since(deployment_id, since).await
}

/// Writes a probe's result, and opens or closes an incident with it.
pub async fn record_probe(
    db: &Db,
    deployment_id: &DeploymentId,
    at: DateTime<Utc>,
    failure: Option<&str>,
    millis: Option<f64>,
) -> DbResult<()> {
    let mut tx = db.pool.begin().await?;
    let unix = at.timestamp();
    sqlx::query(
        "INSERT OR REPLACE INTO samples (deployment_id, series, at, resolution, value)
         VALUES (?1, 'probe', ?2, 0, ?3)",
    )
    .bind(deployment_id.as_str())
    .bind(unix)
    .bind(if failure.is_some() { 0.0 } else { 1.0 })
    .execute(&mut *tx)
    .await?;
    if let Some(millis) = millis {
        sqlx::query(
            "INSERT OR REPLACE INTO samples (deployment_id, series, at, resolution, value)
             VALUES (?1, 'probe_ms', ?2, 0, ?3)",
        )
        .bind(deployment_id.as_str())
        .bind(unix)
        .bind(millis)
        .execute(&mut *tx)
        .await?;
    }
    let open: Option<(i64,)> = sqlx::query_as(
        "SELECT id FROM incidents WHERE deployment_id = ?1 AND ended_at IS NULL
         ORDER BY started_at DESC LIMIT 1",
    )
    .bind(deployment_id.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    match (open, failure) {
        (None, Some(cause)) => {
            sqlx::query(
                "INSERT INTO incidents (deployment_id, started_at, cause) VALUES (?1, ?2, ?3)",
            )
            .bind(deployment_id.as_str())
            .bind(at)
            .bind(cause)
            .execute(&mut *tx)
            .await?;
            let message = format!("the app URL stopped answering: {cause}");
            uptime_event(&mut tx, deployment_id, at, &message).await?;
        }
        (Some((id,)), None) => {
            close_incident(&mut tx, deployment_id, id, at).await?;
        }
        _ => {}
    }
    Ok(tx.commit().await?)
}

async fn close_incident(
    tx: &mut sqlx::SqliteConnection,
    deployment_id: &DeploymentId,
    id: i64,
    at: DateTime<Utc>,
) -> DbResult<()> {
    let (started,): (DateTime<Utc>,) =
        sqlx::query_as("UPDATE incidents SET ended_at = ?2 WHERE id = ?1 RETURNING started_at")
            .bind(id)
            .bind(at)
            .fetch_one(&mut *tx)
            .await?;
    let seconds = (at - started).num_milliseconds() as f64 / 1000.0;
    let message = format!("the app URL answers again after {seconds:.1} s");
    uptime_event(tx, deployment_id, at, &message).await
}

/// Ends what a deployment no longer watched left open: its incident.
pub async fn stop_watching(db: &Db, deployment_id: &DeploymentId) -> DbResult<()> {
    let mut tx = db.pool.begin().await?;
    let open: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM incidents WHERE deployment_id = ?1 AND ended_at IS NULL")
            .bind(deployment_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((id,)) = open {
        close_incident(&mut tx, deployment_id, id, Utc::now()).await?;
    }
    Ok(tx.commit().await?)
}

/// Replaces raw samples older than `keep_raw_before` (unix seconds) with
/// minutely averages. Returns how many raw samples went.
pub async fn downsample(db: &Db, keep_raw_before: i64) -> DbResult<u64> {
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "INSERT OR REPLACE INTO samples (deployment_id, series, at, resolution, value)
         SELECT deployment_id, series, (at / 60) * 60, 60, AVG(value) FROM samples
         WHERE resolution = 0 AND at < ?1
         GROUP BY deployment_id, series, at / 60",
    )
    .bind(keep_raw_before)
    .execute(&mut *tx)
    .await?;
    let gone = sqlx::query("DELETE FROM samples WHERE resolution = 0 AND at < ?1")
        .bind(keep_raw_before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(gone)
}

/// Points of the series of one deployment from `from` to `to` (unix
/// seconds), averaged over `step` seconds (1: as stored). `instance`
/// chooses the series of one instance; otherwise the group's series and
/// every target's health.
pub async fn series(
    db: &Db,
    deployment_id: &DeploymentId,
    from: i64,
    to: i64,
    step: i64,
    instance: Option<&str>,
) -> DbResult<Vec<(String, i64, f64)>> {
    Ok(sqlx::query_as(
        "SELECT series, (at / ?4) * ?4 AS t, AVG(value) FROM samples
         WHERE deployment_id = ?1 AND at >= ?2 AND at <= ?3
           AND CASE WHEN ?5 IS NULL THEN (instr(series, ':i-') = 0 OR series LIKE 'target:%')
                    ELSE series LIKE '%:' || ?5 END
         GROUP BY series, t ORDER BY series, t",
    )
    .bind(deployment_id.as_str())
    .bind(from)
    .bind(to)
    .bind(step.max(1))
    .bind(instance)
    .fetch_all(&db.pool)
    .await?)
}

type InstanceRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn instance_record(row: InstanceRow) -> InstanceRecord {
    let (
        id,
        instance_type,
        availability_zone,
        private_ip,
        launched_at,
        gone_at,
        lifecycle,
        health,
        target_state,
        target_reason,
    ) = row;
    InstanceRecord {
        id,
        instance_type,
        availability_zone,
        private_ip,
        launched_at,
        gone_at,
        lifecycle,
        health,
        target_state,
        target_reason,
    }
}

const INSTANCE_COLUMNS: &str = "instance_id, instance_type, availability_zone, private_ip, \
     launched_at, gone_at, lifecycle, health, target_state, target_reason";

/// Every instance the deployment's group ever had, in the group first,
/// newest first.
pub async fn instances(db: &Db, deployment_id: &DeploymentId) -> DbResult<Vec<InstanceRecord>> {
    let rows: Vec<InstanceRow> = sqlx::query_as(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE deployment_id = ?1
         ORDER BY gone_at IS NOT NULL, launched_at DESC, instance_id"
    ))
    .bind(deployment_id.as_str())
    .fetch_all(&db.pool)
    .await?;
    Ok(rows.into_iter().map(instance_record).collect())
}

pub async fn instance(
    db: &Db,
    deployment_id: &DeploymentId,
    instance_id: &str,
) -> DbResult<Option<InstanceRecord>> {
    let row: Option<InstanceRow> = sqlx::query_as(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE deployment_id = ?1 AND instance_id = ?2"
    ))
    .bind(deployment_id.as_str())
    .bind(instance_id)
    .fetch_optional(&db.pool)
    .await?;
    Ok(row.map(instance_record))
}

/// Incidents of a deployment, newest first.
pub async fn incidents(
    db: &Db,
    deployment_id: &DeploymentId,
    now: DateTime<Utc>,
) -> DbResult<Vec<Incident>> {
    let rows: Vec<(DateTime<Utc>, Option<DateTime<Utc>>, String)> = sqlx::query_as(
        "SELECT started_at, ended_at, cause FROM incidents WHERE deployment_id = ?1
         ORDER BY started_at DESC LIMIT 200",
    )
    .bind(deployment_id.as_str())
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(started_at, ended_at, cause)| Incident {
            started_at,
            ended_at,
            duration_seconds: (ended_at.unwrap_or(now) - started_at).num_milliseconds() as f64
                / 1000.0,
            cause,
        })
        .collect())
}

/// `(deployment, instance type, launched, gone)` of every instance of the
/// deployments `ids` (or of all): the instance-hours the accrual bills.
pub async fn instance_spans(
    db: &Db,
    ids: Option<&[DeploymentId]>,
) -> DbResult<
    Vec<(
        DeploymentId,
        Option<String>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
    )>,
> {
    type Row = (String, Option<String>, DateTime<Utc>, Option<DateTime<Utc>>);
    let ids = ids.map(|ids| serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()));
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT deployment_id, instance_type, launched_at, gone_at FROM instances
         WHERE ?1 IS NULL OR deployment_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(ids)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, kind, launched, gone)| (id.into(), kind, launched, gone))
        .collect())
}

/// `(deployment, good probes, all probes)` of each of the deployments `ids`
/// that was probed.
pub async fn probe_totals(
    db: &Db,
    ids: &[DeploymentId],
) -> DbResult<Vec<(DeploymentId, f64, i64)>> {
    let rows: Vec<(String, f64, i64)> = sqlx::query_as(
        "SELECT deployment_id, SUM(value), COUNT(*) FROM samples
         WHERE deployment_id IN (SELECT value FROM json_each(?1)) AND series = 'probe'
         GROUP BY deployment_id",
    )
    .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, good, all)| (id.into(), good, all))
        .collect())
}

/// What each of `ids` (a JSON array) served in the `window` seconds of
/// `series` (a load balancer's request counts) that have arrived: the
/// window ends at the newest datapoint, since CloudWatch publishes a minute
/// of requests minutes after it, or at `now` when none is younger than
/// `stale` seconds. Per deployment: (id, start of the window, requests counted in
/// it, probes sent in it give or take `slack`, the first poll from its
/// start less `slack`).
pub async fn traffic_in_window(
    db: &Db,
    ids: &str,
    series: &str,
    now: i64,
    window: i64,
    stale: i64,
    slack: i64,
) -> DbResult<Vec<(String, i64, Option<f64>, i64, Option<i64>)>> {
    Ok(sqlx::query_as(
        "WITH ends AS (
           SELECT d.value AS id,
                  COALESCE((SELECT MAX(at) FROM samples
                             WHERE deployment_id = d.value AND series = ?2 AND at >= ?3 - ?5),
                           ?3) AS last
             FROM json_each(?1) AS d
         )
         SELECT id, last - ?4,
                (SELECT SUM(value) FROM samples
                  WHERE deployment_id = id AND series = ?2 AND at > last - ?4),
                (SELECT COUNT(*) FROM samples
                  WHERE deployment_id = id AND series = 'probe'
                    AND at >= last - ?4 - ?6 AND at <= last + ?6 + ?6),
                (SELECT MIN(at) FROM samples
                  WHERE deployment_id = id AND series = 'desired' AND at >= last - ?4 - ?6)
           FROM ends",
    )
    .bind(ids)
    .bind(series)
    .bind(now)
    .bind(window)
    .bind(stale)
    .bind(slack)
    .fetch_all(&db.pool)
    .await?)
}

/// Deployments that were ever probed, newest first (at most 500).
pub async fn probed(db: &Db) -> DbResult<Vec<DeploymentId>> {
    let ids = db.store.deployment_ids().await?;
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT d.value FROM json_each(?1) AS d
         WHERE EXISTS (SELECT 1 FROM samples s WHERE s.deployment_id = d.value AND s.series = 'probe')
         ORDER BY d.key LIMIT 500",
    )
    .bind(serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into()))
    .fetch_all(&db.pool)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id.into()).collect())
}

/// Good and all probes of a deployment since `from` (unix seconds).
pub async fn probe_counts(
    db: &Db,
    deployment_id: &DeploymentId,
    from: i64,
) -> DbResult<(u64, u64)> {
    // Downsampled probes are averages over a minute; counted as minutes.
    let (good, all): (Option<f64>, i64) = sqlx::query_as(
        "SELECT SUM(value), COUNT(*) FROM samples
         WHERE deployment_id = ?1 AND series = 'probe' AND at >= ?2",
    )
    .bind(deployment_id.as_str())
    .bind(from)
    .fetch_one(&db.pool)
    .await?;
    Ok((good.unwrap_or(0.0).round() as u64, all.max(0) as u64))
}

/// The last recovery on the timeline: seconds and when.
pub async fn last_recovery(
    db: &Db,
    deployment_id: &DeploymentId,
) -> DbResult<Option<(f64, DateTime<Utc>)>> {
    db.store.last_recovery(deployment_id).await
}
