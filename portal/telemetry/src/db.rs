//! The telemetry's reads and writes of the portal's database: samples,
//! instances, incidents, and the events it adds to timelines.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use cloudpulse_core::live::{Incident, InstanceRecord};
use cloudpulse_core::model::HealthSnapshot;
use serde_json::Value;
use sqlx::SqlitePool;

use crate::observe::{Known, NewEvent, Seen};

pub type DbResult<T> = Result<T, sqlx::Error>;

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
    pub id: String,
    pub region: String,
    pub app_url: Option<String>,
    pub load_balancer_arn: Option<String>,
}

pub async fn live_deployments(pool: &SqlitePool) -> DbResult<Vec<Watched>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT id, region, outputs FROM deployments WHERE status = 'live' ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, region, outputs)| {
            let outputs = serde_json::from_str::<Value>(&outputs).unwrap_or_default();
            let text = |key: &str| outputs[key].as_str().map(str::to_string);
            Watched {
                id,
                region,
                app_url: text("app_url"),
                load_balancer_arn: text("load_balancer_arn"),
            }
        })
        .collect())
}

/// What a previous run of the poller saw, so that a restart reports only
/// what changed since.
pub async fn load_known(pool: &SqlitePool, deployment_id: &str) -> DbResult<Known> {
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
    .bind(deployment_id)
    .fetch_all(pool)
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
    let activities: Vec<(String,)> = sqlx::query_as(
        "SELECT json_extract(data, '$.activity_id') FROM events
         WHERE deployment_id = ?1 AND kind = 'scaling' AND json_extract(data, '$.activity_id') IS NOT NULL",
    )
    .bind(deployment_id)
    .fetch_all(pool)
    .await?;
    known.activities = activities
        .into_iter()
        .map(|(id,)| id)
        .collect::<HashSet<_>>();
    let alarms: Vec<(String, f64)> = sqlx::query_as(
        "SELECT s.series, s.value FROM samples s
         WHERE s.deployment_id = ?1 AND s.series LIKE 'alarm:%' AND s.resolution = 0
           AND s.at = (SELECT MAX(at) FROM samples t
                       WHERE t.deployment_id = s.deployment_id AND t.series = s.series AND t.resolution = 0)",
    )
    .bind(deployment_id)
    .fetch_all(pool)
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
    .bind(deployment_id)
    .fetch_optional(pool)
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
    pool: &SqlitePool,
    snapshot: &HealthSnapshot,
    samples: &[Sample],
    events: &[NewEvent],
) -> DbResult<()> {
    let deployment_id = &snapshot.deployment_id;
    let now = snapshot.taken_at;
    let mut tx = pool.begin().await?;
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
        .bind(deployment_id)
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
    .bind(deployment_id)
    .bind(now)
    .bind(serde_json::to_string(&present).unwrap_or_else(|_| "[]".into()))
    .execute(&mut *tx)
    .await?;
    for sample in samples {
        sqlx::query(
            "INSERT OR REPLACE INTO samples (deployment_id, series, at, resolution, value)
             VALUES (?1, ?2, ?3, 0, ?4)",
        )
        .bind(deployment_id)
        .bind(&sample.series)
        .bind(sample.at)
        .bind(sample.value)
        .execute(&mut *tx)
        .await?;
    }
    for event in events {
        sqlx::query(
            "INSERT INTO events (deployment_id, at, kind, source, message, data)
             VALUES (?1, ?2, ?3, 'telemetry', ?4, ?5)",
        )
        .bind(deployment_id)
        .bind(now)
        .bind(event.kind)
        .bind(&event.message)
        .bind(event.data.to_string())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Whether anything (the engine's recovery watch, say) recorded a recovery
/// for the deployment since `since`.
pub async fn recovery_recorded_since(
    pool: &SqlitePool,
    deployment_id: &str,
    since: DateTime<Utc>,
) -> DbResult<bool> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT 1 FROM events WHERE deployment_id = ?1 AND kind = 'recovery' AND at >= ?2 LIMIT 1",
    )
    .bind(deployment_id)
    .bind(since)
    .fetch_optional(pool)
    .await?;
    Ok(row.is_some())
}

/// Writes a probe's result, and opens or closes an incident with it.
pub async fn record_probe(
    pool: &SqlitePool,
    deployment_id: &str,
    at: DateTime<Utc>,
    failure: Option<&str>,
    millis: Option<f64>,
) -> DbResult<()> {
    let mut tx = pool.begin().await?;
    let unix = at.timestamp();
    sqlx::query(
        "INSERT OR REPLACE INTO samples (deployment_id, series, at, resolution, value)
         VALUES (?1, 'probe', ?2, 0, ?3)",
    )
    .bind(deployment_id)
    .bind(unix)
    .bind(if failure.is_some() { 0.0 } else { 1.0 })
    .execute(&mut *tx)
    .await?;
    if let Some(millis) = millis {
        sqlx::query(
            "INSERT OR REPLACE INTO samples (deployment_id, series, at, resolution, value)
             VALUES (?1, 'probe_ms', ?2, 0, ?3)",
        )
        .bind(deployment_id)
        .bind(unix)
        .bind(millis)
        .execute(&mut *tx)
        .await?;
    }
    let open: Option<(i64,)> = sqlx::query_as(
        "SELECT id FROM incidents WHERE deployment_id = ?1 AND ended_at IS NULL
         ORDER BY started_at DESC LIMIT 1",
    )
    .bind(deployment_id)
    .fetch_optional(&mut *tx)
    .await?;
    match (open, failure) {
        (None, Some(cause)) => {
            sqlx::query(
                "INSERT INTO incidents (deployment_id, started_at, cause) VALUES (?1, ?2, ?3)",
            )
            .bind(deployment_id)
            .bind(at)
            .bind(cause)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO events (deployment_id, at, kind, source, message)
                 VALUES (?1, ?2, 'uptime', 'telemetry', ?3)",
            )
            .bind(deployment_id)
            .bind(at)
            .bind(format!("the app URL stopped answering: {cause}"))
            .execute(&mut *tx)
            .await?;
        }
        (Some((id,)), None) => {
            close_incident(&mut tx, deployment_id, id, at).await?;
        }
        _ => {}
    }
    tx.commit().await
}

async fn close_incident(
    tx: &mut sqlx::SqliteConnection,
    deployment_id: &str,
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
    sqlx::query(
        "INSERT INTO events (deployment_id, at, kind, source, message)
         VALUES (?1, ?2, 'uptime', 'telemetry', ?3)",
    )
    .bind(deployment_id)
    .bind(at)
    .bind(format!("the app URL answers again after {seconds:.1} s"))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Ends what a deployment no longer watched left open: its incident.
pub async fn stop_watching(pool: &SqlitePool, deployment_id: &str) -> DbResult<()> {
    let mut tx = pool.begin().await?;
    let open: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM incidents WHERE deployment_id = ?1 AND ended_at IS NULL")
            .bind(deployment_id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((id,)) = open {
        close_incident(&mut tx, deployment_id, id, Utc::now()).await?;
    }
    tx.commit().await
}

/// Replaces raw samples older than `keep_raw_before` (unix seconds) with
/// minutely averages. Returns how many raw samples went.
pub async fn downsample(pool: &SqlitePool, keep_raw_before: i64) -> DbResult<u64> {
    let mut tx = pool.begin().await?;
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
    pool: &SqlitePool,
    deployment_id: &str,
    from: i64,
    to: i64,
    step: i64,
    instance: Option<&str>,
) -> DbResult<Vec<(String, i64, f64)>> {
    sqlx::query_as(
        "SELECT series, (at / ?4) * ?4 AS t, AVG(value) FROM samples
         WHERE deployment_id = ?1 AND at >= ?2 AND at <= ?3
           AND CASE WHEN ?5 IS NULL THEN (instr(series, ':i-') = 0 OR series LIKE 'target:%')
                    ELSE series LIKE '%:' || ?5 END
         GROUP BY series, t ORDER BY series, t",
    )
    .bind(deployment_id)
    .bind(from)
    .bind(to)
    .bind(step.max(1))
    .bind(instance)
    .fetch_all(pool)
    .await
}

/// Events of a deployment between two moments, of the given kinds, oldest first.
pub async fn events_between(
    pool: &SqlitePool,
    deployment_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    kinds: &[&str],
) -> DbResult<Vec<(DateTime<Utc>, String, String)>> {
    sqlx::query_as(
        "SELECT at, kind, message FROM events
         WHERE deployment_id = ?1 AND at >= ?2 AND at <= ?3
           AND kind IN (SELECT value FROM json_each(?4))
         ORDER BY at, id LIMIT 500",
    )
    .bind(deployment_id)
    .bind(from)
    .bind(to)
    .bind(serde_json::to_string(kinds).unwrap_or_else(|_| "[]".into()))
    .fetch_all(pool)
    .await
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
pub async fn instances(pool: &SqlitePool, deployment_id: &str) -> DbResult<Vec<InstanceRecord>> {
    let rows: Vec<InstanceRow> = sqlx::query_as(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE deployment_id = ?1
         ORDER BY gone_at IS NOT NULL, launched_at DESC, instance_id"
    ))
    .bind(deployment_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(instance_record).collect())
}

pub async fn instance(
    pool: &SqlitePool,
    deployment_id: &str,
    instance_id: &str,
) -> DbResult<Option<InstanceRecord>> {
    let row: Option<InstanceRow> = sqlx::query_as(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE deployment_id = ?1 AND instance_id = ?2"
    ))
    .bind(deployment_id)
    .bind(instance_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(instance_record))
}

/// Incidents of a deployment, newest first.
pub async fn incidents(
    pool: &SqlitePool,
    deployment_id: &str,
    now: DateTime<Utc>,
) -> DbResult<Vec<Incident>> {
    let rows: Vec<(DateTime<Utc>, Option<DateTime<Utc>>, String)> = sqlx::query_as(
        "SELECT started_at, ended_at, cause FROM incidents WHERE deployment_id = ?1
         ORDER BY started_at DESC LIMIT 200",
    )
    .bind(deployment_id)
    .fetch_all(pool)
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

/// Good and all probes of a deployment since `from` (unix seconds).
pub async fn probe_counts(
    pool: &SqlitePool,
    deployment_id: &str,
    from: i64,
) -> DbResult<(u64, u64)> {
    // Downsampled probes are averages over a minute; counted as minutes.
    let (good, all): (Option<f64>, i64) = sqlx::query_as(
        "SELECT SUM(value), COUNT(*) FROM samples
         WHERE deployment_id = ?1 AND series = 'probe' AND at >= ?2",
    )
    .bind(deployment_id)
    .bind(from)
    .fetch_one(pool)
    .await?;
    Ok((good.unwrap_or(0.0).round() as u64, all.max(0) as u64))
}

/// The last recovery on the timeline: seconds and when.
pub async fn last_recovery(
    pool: &SqlitePool,
    deployment_id: &str,
) -> DbResult<Option<(f64, DateTime<Utc>)>> {
    let row: Option<(Option<f64>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT json_extract(data, '$.seconds'), at FROM events
         WHERE deployment_id = ?1 AND kind = 'recovery' AND json_extract(data, '$.seconds') IS NOT NULL
         ORDER BY at DESC, id DESC LIMIT 1",
    )
    .bind(deployment_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(seconds, at)| seconds.map(|s| (s, at))))
}
