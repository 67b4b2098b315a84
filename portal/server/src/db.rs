//! The server's own tables in the portal's database (browser sessions,
//! idempotency keys), on a pool of its own beside the engine's store and
//! the telemetry's, so that no part reaches into another's pool.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::SqlitePool;

/// Connections of the server's pool: sign-ins and keyed requests are rare.
const CONNECTIONS: u32 = 2;

/// A handle on the server's tables; cheap to clone.
#[derive(Clone, Debug)]
pub struct ServerDb {
    pool: SqlitePool,
}

impl ServerDb {
    /// A pool on the database at `path`, which the engine's store has
    /// already created and migrated (the migrations hold these tables too).
    pub async fn open(path: &Path) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(CONNECTIONS)
            .connect_with(options)
            .await?;
        Ok(ServerDb { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}
