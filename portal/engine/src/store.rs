//! The portal's SQLite database: opening, migrating and querying it.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cloudpulse_app::model::{DeploymentStatus, DeploymentSummary, Page};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

/// How long a writer waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use database {path}: its folder {folder} does not exist; create it or pass another --database")]
    NoFolder { path: PathBuf, folder: PathBuf },
    #[error("cannot open database {path}: {reason}; check that the file and its folder are writable, or pass another --database")]
    Unwritable { path: PathBuf, reason: String },
    #[error("database {path} is corrupt or not a CloudPulse database ({reason}); move it aside or pass another --database")]
    Corrupt { path: PathBuf, reason: String },
    #[error("database {path} was written by a newer CloudPulse (migration {version} is unknown here); upgrade CloudPulse or pass another --database")]
    TooNew { path: PathBuf, version: i64 },
    #[error("cannot migrate database {path}: {source}")]
    Migrate {
        path: PathBuf,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
}

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    ///
    /// WAL journal so readers never block the writer, foreign keys enforced,
    /// and a busy timeout so concurrent writers wait instead of failing.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !folder.is_dir() {
            return Err(StoreError::NoFolder {
                path: path.to_path_buf(),
                folder,
            });
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|e| StoreError::Invalid(e.to_string()))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|e| classify_open_error(path, e))?;
        let store = Store {
            pool,
            path: path.to_path_buf(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = sqlx::migrate!("../../migrations");
        // A file that is not SQLite at all only shows itself on first read.
        let check: Result<(String,), sqlx::Error> = sqlx::query_as("PRAGMA quick_check")
            .fetch_one(&self.pool)
            .await;
        match check {
            Ok((verdict,)) if verdict == "ok" => {}
            Ok((verdict,)) => {
                return Err(StoreError::Corrupt {
                    path: self.path.clone(),
                    reason: verdict,
                })
            }
            Err(e) => return Err(classify_open_error(&self.path, e)),
        }
        migrator.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::VersionMissing(version) => StoreError::TooNew {
                path: self.path.clone(),
                version,
            },
            sqlx::migrate::MigrateError::Execute(inner) => classify_open_error(&self.path, inner),
            other => StoreError::Migrate {
                path: self.path.clone(),
                source: other,
            },
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A cheap round trip, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Deployments, newest first, one page at a time.
    pub async fn list_deployments(
        &self,
        status: Option<DeploymentStatus>,
        page: u32,
        per_page: u32,
    ) -> Result<Page<DeploymentSummary>, StoreError> {
        if page == 0 || per_page == 0 || per_page > 500 {
            return Err(StoreError::Invalid(format!(
                "page must be at least 1 and per_page between 1 and 500 (got page {page}, per_page {per_page})"
            )));
        }
        let status_text = status.map(DeploymentStatus::as_str);
        let offset = i64::from(page - 1) * i64::from(per_page);
        let rows: Vec<DeploymentRow> = sqlx::query_as(
            "SELECT id, name, region, status, created_at, torn_down_at
             FROM deployments
             WHERE (?1 IS NULL OR status = ?1)
             ORDER BY created_at DESC, id
             LIMIT ?2 OFFSET ?3",
        )
        .bind(status_text)
        .bind(i64::from(per_page))
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let (total,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM deployments WHERE (?1 IS NULL OR status = ?1)")
                .bind(status_text)
                .fetch_one(&self.pool)
                .await?;
        let items = rows
            .into_iter()
            .map(DeploymentRow::into_summary)
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            total: u64::try_from(total).unwrap_or(0),
            page,
            per_page,
        })
    }
}

#[derive(FromRow)]
struct DeploymentRow {
    id: String,
    name: String,
    region: String,
    status: String,
    created_at: DateTime<Utc>,
    torn_down_at: Option<DateTime<Utc>>,
}

impl DeploymentRow {
    fn into_summary(self) -> Result<DeploymentSummary, StoreError> {
        let status = DeploymentStatus::parse(&self.status).ok_or_else(|| {
            StoreError::Invalid(format!(
                "deployment {} has unknown status {:?}",
                self.id, self.status
            ))
        })?;
        Ok(DeploymentSummary {
            id: self.id,
            name: self.name,
            region: self.region,
            status,
            created_at: self.created_at,
            torn_down_at: self.torn_down_at,
        })
    }
}

/// Turns SQLite's terse codes into errors that say what to fix.
fn classify_open_error(path: &Path, error: sqlx::Error) -> StoreError {
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    let reason = error.to_string();
    // SQLite primary result codes: 26 NOTADB, 11 CORRUPT, 14 CANTOPEN, 8 READONLY.
    let primary = code
        .as_deref()
        .and_then(|c| c.parse::<i64>().ok())
        .map(|c| c & 0xff);
    match primary {
        Some(26) | Some(11) => StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        },
        Some(14) | Some(8) | Some(23) => StoreError::Unwritable {
            path: path.to_path_buf(),
            reason,
        },
        _ if reason.contains("not a database") || reason.contains("malformed") => {
            StoreError::Corrupt {
                path: path.to_path_buf(),
                reason,
            }
        }
        _ if reason.contains("readonly") || reason.contains("unable to open") => {
            StoreError::Unwritable {
                path: path.to_path_buf(),
                reason,
            }
        }
        _ => StoreError::Query(error),
    }
}
