//! The deployment's timeline. Every event is written here, by the engine
//! and the telemetry alike.

use super::*;

/// The latest `limit` events of a deployment, newest first; with `naming`,
/// only those whose message names it (an instance id). The telemetry's
/// instance page reads them too.
pub async fn recent_events(
    pool: &SqlitePool,
    deployment_id: &str,
    naming: Option<&str>,
    limit: u32,
) -> Result<Vec<EventView>, sqlx::Error> {
    let rows: Vec<(DateTime<Utc>, String, Option<String>, String)> = sqlx::query_as(
        "SELECT at, kind, source, message FROM events
         WHERE deployment_id = ?1 AND (?2 IS NULL OR instr(message, ?2) > 0)
         ORDER BY at DESC, id DESC LIMIT ?3",
    )
    .bind(deployment_id)
    .bind(naming)
    .bind(i64::from(limit))
    .fetch_all(pool)
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

impl Store {
    /// A deployment's latest `limit` events, newest first.
    pub async fn events(
        &self,
        deployment_id: &str,
        limit: u32,
    ) -> Result<Vec<EventView>, StoreError> {
        Ok(recent_events(&self.pool, deployment_id, None, limit).await?)
    }

    pub async fn add_event(
        &self,
        deployment_id: &str,
        kind: &str,
        source: Option<&str>,
        message: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_event(&mut conn, deployment_id, kind, source, message).await
    }

    /// An event with facts a program reads back (`data`, JSON).
    pub async fn add_event_data(
        &self,
        deployment_id: &str,
        kind: &str,
        source: Option<&str>,
        message: &str,
        data: &Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO events (deployment_id, at, kind, source, message, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(deployment_id)
        .bind(now())
        .bind(kind)
        .bind(source)
        .bind(message)
        .bind(data.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

pub(super) async fn insert_event(
    conn: &mut sqlx::SqliteConnection,
    deployment_id: &str,
    kind: &str,
    source: Option<&str>,
    message: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (deployment_id, at, kind, source, message) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(deployment_id)
    .bind(now())
    .bind(kind)
    .bind(source)
    .bind(message)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
