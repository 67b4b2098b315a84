//! The deployment's timeline. Every event is written by [`write_event`], by
//! the engine and the telemetry alike, and read back here.

use super::*;

/// One event on a deployment's timeline, as written.
#[derive(Clone, Copy, Debug)]
pub struct TimelineEvent<'a> {
    pub deployment_id: &'a DeploymentId,
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    /// browser, api, cli, system, telemetry ...: who or what it came from.
    pub source: Option<&'a str>,
    pub message: &'a str,
    /// Facts a program reads back (an activity id, a recovery's seconds).
    pub data: Option<&'a Value>,
}

impl<'a> TimelineEvent<'a> {
    /// An event of this moment, without data.
    pub fn now(
        deployment_id: &'a DeploymentId,
        kind: EventKind,
        source: Option<&'a str>,
        message: &'a str,
    ) -> Self {
        TimelineEvent {
            deployment_id,
            at: now(),
            kind,
            source,
            message,
            data: None,
        }
    }
}

/// Writes one event on `conn`, inside whatever transaction the caller holds,
/// so an event is committed with the change it reports.
pub async fn write_event(
    conn: &mut sqlx::SqliteConnection,
    event: &TimelineEvent<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO events (deployment_id, at, kind, source, message, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .bind(event.deployment_id.as_str())
    .bind(event.at)
    .bind(event.kind.as_str())
    .bind(event.source)
    .bind(event.message)
    // The column holds `{}` for an event without data.
    .bind(
        event
            .data
            .map_or_else(|| "{}".to_string(), Value::to_string),
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An event of now, without data: what the store's own changes record.
pub(super) async fn insert_event(
    conn: &mut sqlx::SqliteConnection,
    deployment_id: &DeploymentId,
    kind: EventKind,
    source: Option<&str>,
    message: &str,
) -> Result<(), StoreError> {
    let event = TimelineEvent::now(deployment_id, kind, source, message);
    Ok(write_event(conn, &event).await?)
}

impl Store {
    /// A deployment's latest `limit` events, newest first.
    pub async fn events(
        &self,
        deployment_id: &DeploymentId,
        limit: u32,
    ) -> Result<Vec<EventView>, StoreError> {
        self.recent_events(deployment_id, None, limit).await
    }

    /// The latest `limit` events of a deployment, newest first; with
    /// `naming`, only those whose message names it (an instance id).
    pub async fn recent_events(
        &self,
        deployment_id: &DeploymentId,
        naming: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EventView>, StoreError> {
        let rows: Vec<(DateTime<Utc>, String, Option<String>, String)> = sqlx::query_as(
            "SELECT at, kind, source, message FROM events
             WHERE deployment_id = ?1 AND (?2 IS NULL OR instr(message, ?2) > 0)
             ORDER BY at DESC, id DESC LIMIT ?3",
        )
        .bind(deployment_id.as_str())
        .bind(naming)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(at, kind, source, message)| EventView {
                at,
                kind,
                source,
                message,
            })
            .collect())
    }

    /// Events of a deployment between two moments, of the given kinds,
    /// oldest first (at most 500): the markers on a chart.
    pub async fn events_between(
        &self,
        deployment_id: &DeploymentId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        kinds: &[EventKind],
    ) -> Result<Vec<(DateTime<Utc>, String, String)>, StoreError> {
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        Ok(sqlx::query_as(
            "SELECT at, kind, message FROM events
             WHERE deployment_id = ?1 AND at >= ?2 AND at <= ?3
               AND kind IN (SELECT value FROM json_each(?4))
             ORDER BY at, id LIMIT 500",
        )
        .bind(deployment_id.as_str())
        .bind(from)
        .bind(to)
        .bind(serde_json::to_string(&kinds).unwrap_or_else(|_| "[]".into()))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The scaling activities already on the timeline, by activity id.
    pub async fn scaling_activity_ids(
        &self,
        deployment_id: &DeploymentId,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT json_extract(data, '$.activity_id') FROM events
             WHERE deployment_id = ?1 AND kind = ?2
               AND json_extract(data, '$.activity_id') IS NOT NULL",
        )
        .bind(deployment_id.as_str())
        .bind(EventKind::Scaling.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Whether anything (the engine's recovery watch, say) recorded a
    /// recovery for the deployment since `since`.
    pub async fn recovery_since(
        &self,
        deployment_id: &DeploymentId,
        since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM events WHERE deployment_id = ?1 AND kind = ?2 AND at >= ?3 LIMIT 1",
        )
        .bind(deployment_id.as_str())
        .bind(EventKind::Recovery.as_str())
        .bind(since)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// The last recovery on the timeline that says how long it took:
    /// seconds and when.
    pub async fn last_recovery(
        &self,
        deployment_id: &DeploymentId,
    ) -> Result<Option<(f64, DateTime<Utc>)>, StoreError> {
        let row: Option<(Option<f64>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT json_extract(data, '$.seconds'), at FROM events
             WHERE deployment_id = ?1 AND kind = ?2 AND json_extract(data, '$.seconds') IS NOT NULL
             ORDER BY at DESC, id DESC LIMIT 1",
        )
        .bind(deployment_id.as_str())
        .bind(EventKind::Recovery.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(seconds, at)| seconds.map(|s| (s, at))))
    }

    pub async fn add_event(
        &self,
        deployment_id: &DeploymentId,
        kind: EventKind,
        source: Option<&str>,
        message: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_event(&mut conn, deployment_id, kind, source, message).await
    }

    /// An event with facts a program reads back (`data`, JSON).
    pub async fn add_event_data(
        &self,
        deployment_id: &DeploymentId,
        kind: EventKind,
        source: Option<&str>,
        message: &str,
        data: &Value,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let event = TimelineEvent {
            data: Some(data),
            ..TimelineEvent::now(deployment_id, kind, source, message)
        };
        Ok(write_event(&mut conn, &event).await?)
    }
}
