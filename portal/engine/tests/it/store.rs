//! The database against real SQLite files in a temporary folder.

use cloudpulse_core::ids::DeploymentId;
use cloudpulse_core::model::{DeploymentStatus, EventKind};
use cloudpulse_engine::store::connect;
use cloudpulse_engine::{Store, StoreError};
use sqlx::SqlitePool;

/// A pool of the test's own on the store's file, with the portal's settings,
/// for what the store has no function for (raw rows, pragmas).
async fn raw(store: &Store) -> SqlitePool {
    connect(store.path(), 1).await.unwrap()
}

async fn insert(store: &Store, id: &str, name: &str, status: &str, created_at: &str) {
    sqlx::query(
        "INSERT INTO deployments (id, name, region, status, params, created_at, updated_at)
         VALUES (?1, ?2, 'us-east-1', ?3, '{}', ?4, ?4)",
    )
    .bind(id)
    .bind(name)
    .bind(status)
    .bind(created_at)
    .execute(&raw(store).await)
    .await
    .expect("insert deployment");
}

#[tokio::test]
async fn opens_with_wal_and_foreign_keys_and_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("portal.db")).await.unwrap();

    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&raw(&store).await)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let (fk,): (i64,) = sqlx::query_as("PRAGMA foreign_keys")
        .fetch_one(&raw(&store).await)
        .await
        .unwrap();
    assert_eq!(fk, 1);

    let tables: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(&raw(&store).await)
            .await
            .unwrap();
    let tables: Vec<_> = tables.into_iter().map(|(t,)| t).collect();
    for wanted in [
        "deployments",
        "jobs",
        "steps",
        "resources",
        "events",
        "samples",
        "prices",
    ] {
        assert!(
            tables.iter().any(|t| t == wanted),
            "missing table {wanted}: {tables:?}"
        );
    }
    // A foreign key is enforced: a job for a missing deployment is refused.
    let orphan = sqlx::query(
        "INSERT INTO jobs (id, deployment_id, kind, status, source, created_at)
         VALUES ('j', 'nope', 'deploy', 'pending', 'api', '2026-01-01T00:00:00Z')",
    )
    .execute(&raw(&store).await)
    .await;
    assert!(orphan.is_err());
}

#[tokio::test]
async fn reopening_keeps_data_and_does_not_remigrate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal.db");
    {
        let store = Store::open(&path).await.unwrap();
        insert(&store, "a", "alpha", "live", "2026-11-01T10:00:00Z").await;
        store.close().await;
    }
    let store = Store::open(&path).await.unwrap();
    let page = store.list_deployments(None, 1, 10).await.unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.items[0].name, "alpha");
}

#[tokio::test]
async fn the_database_refuses_a_misspelt_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("portal.db")).await.unwrap();
    let bad = sqlx::query(
        "INSERT INTO deployments (id, name, region, status, params, created_at, updated_at)
         VALUES ('x', 'x', 'us-east-1', 'runing', '{}', 'now', 'now')",
    )
    .execute(&raw(&store).await)
    .await;
    assert!(bad.is_err());
}

#[tokio::test]
async fn names_are_unique_only_among_deployments_that_exist() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("portal.db")).await.unwrap();
    insert(&store, "a", "demo", "torn_down", "2026-11-01T10:00:00Z").await;
    insert(&store, "b", "demo", "live", "2026-11-02T10:00:00Z").await;
    let dup = sqlx::query(
        "INSERT INTO deployments (id, name, region, status, params, created_at, updated_at)
         VALUES ('c', 'demo', 'us-east-1', 'deploying', '{}', 'now', 'now')",
    )
    .execute(&raw(&store).await)
    .await;
    assert!(dup.is_err(), "a second live 'demo' must be refused");
}

#[tokio::test]
async fn lists_newest_first_with_filter_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("portal.db")).await.unwrap();
    insert(&store, "1", "one", "torn_down", "2026-11-01T10:00:00Z").await;
    insert(&store, "2", "two", "live", "2026-11-02T10:00:00Z").await;
    insert(&store, "3", "three", "live", "2026-11-03T10:00:00Z").await;

    let all = store.list_deployments(None, 1, 2).await.unwrap();
    assert_eq!(all.total, 3);
    let names: Vec<_> = all.items.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["three", "two"]);
    let second = store.list_deployments(None, 2, 2).await.unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].name, "one");

    let live = store
        .list_deployments(Some(DeploymentStatus::Live), 1, 10)
        .await
        .unwrap();
    assert_eq!(live.total, 2);
    assert!(live
        .items
        .iter()
        .all(|d| d.status == DeploymentStatus::Live));

    assert!(matches!(
        store.list_deployments(None, 0, 10).await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal.db");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let err = Store::open(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("move it aside"), "{err}");
    // Nothing was changed.
    assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 8192]);
}

#[tokio::test]
async fn a_missing_folder_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(&dir.path().join("no/such/portal.db"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoFolder { .. }), "{err:?}");
}

#[tokio::test]
async fn a_path_that_cannot_be_opened_for_writing_is_reported() {
    // A folder where the file should be fails for every user, root included.
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(dir.path()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unwritable { .. }), "{err:?}");
    assert!(err.to_string().contains("writable"), "{err}");
}

async fn insert_event(store: &Store, kind: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO events (deployment_id, at, kind, source, message)
         VALUES ('a', '2026-11-01T10:00:00Z', ?1, 'system', 'm')",
    )
    .bind(kind)
    .execute(&raw(store).await)
    .await
    .map(|_| ())
}

#[tokio::test]
async fn the_database_refuses_an_unknown_event_kind() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("portal.db")).await.unwrap();
    insert(&store, "a", "alpha", "live", "2026-11-01T10:00:00Z").await;
    let error = insert_event(&store, "deploy_step")
        .await
        .expect_err("an event kind EventKind does not have must be refused");
    assert!(error.to_string().contains("CHECK"), "{error}");
}

#[tokio::test]
async fn the_database_accepts_every_event_kind() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("portal.db")).await.unwrap();
    insert(&store, "a", "alpha", "live", "2026-11-01T10:00:00Z").await;
    for kind in EventKind::ALL {
        insert_event(&store, kind.as_str())
            .await
            .unwrap_or_else(|e| panic!("kind {kind} refused: {e}"));
    }
    let stored = store.events(&DeploymentId::from("a"), 100).await.unwrap();
    assert_eq!(stored.len(), EventKind::ALL.len());
}

/// A database made by the migrations before `events.kind` had its CHECK
/// keeps every event, with its id, its data and the index, and new ids
/// follow the old ones.
#[tokio::test]
async fn the_event_kind_migration_keeps_ids_data_and_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal.db");
    {
        let pool = migrated_before(dir.path(), &path, "20261216000001").await;
        sqlx::query(
            "INSERT INTO deployments (id, name, region, status, params, created_at, updated_at)
             VALUES ('a', 'alpha', 'us-east-1', 'live', '{}', 'now', 'now')",
        )
        .execute(&pool)
        .await
        .unwrap();
        for (id, kind) in [(3, "job"), (7, "scaling"), (9, "uptime")] {
            sqlx::query(
                "INSERT INTO events (id, deployment_id, at, kind, source, message, data)
                 VALUES (?1, 'a', '2026-11-01T10:00:00Z', ?2, 'telemetry', 'm', '{\"n\":1}')",
            )
            .bind(id)
            .bind(kind)
            .execute(&pool)
            .await
            .unwrap();
        }
        // The highest id was deleted: the counter must not reuse it.
        sqlx::query("DELETE FROM events WHERE id = 9")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let store = Store::open(&path).await.unwrap();
    let pool = raw(&store).await;
    let kept: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, kind, data FROM events ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        kept,
        vec![
            (3, "job".to_string(), "{\"n\":1}".to_string()),
            (7, "scaling".to_string(), "{\"n\":1}".to_string()),
        ]
    );
    let index: Option<(String,)> = sqlx::query_as(
        "SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND name = 'events_by_deployment'",
    )
    .fetch_optional(&pool)
    .await
    .unwrap();
    assert_eq!(index, Some(("events".to_string(),)));
    store
        .add_event(&DeploymentId::from("a"), EventKind::System, None, "after")
        .await
        .unwrap();
    let (newest,): (i64,) = sqlx::query_as("SELECT MAX(id) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(newest, 10);
    assert!(insert_event(&store, "bogus").await.is_err());
}

/// A database at `path` migrated up to, not including, the migration
/// whose name starts with `first_left_out`, as an older portal left it.
async fn migrated_before(
    dir: &std::path::Path,
    path: &std::path::Path,
    first_left_out: &str,
) -> sqlx::SqlitePool {
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let before = dir.join("migrations");
    std::fs::create_dir(&before).unwrap();
    for entry in std::fs::read_dir(&all).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.as_str() < first_left_out {
            std::fs::copy(entry.path(), before.join(&name)).unwrap();
        }
    }
    let pool = connect(path, 1).await.unwrap();
    sqlx::migrate::Migrator::new(before.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    pool
}

/// The migration that adds the `apply` job kind makes `jobs`, `steps` and
/// `idempotency_keys` again: every row stays, steps in their order, the
/// references still cascade, and the kind is checked as before.
#[tokio::test]
async fn the_apply_kind_migration_keeps_jobs_steps_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal.db");
    {
        let pool = migrated_before(dir.path(), &path, "20261218000001").await;
        for statement in [
            "INSERT INTO deployments (id, name, region, status, params, created_at, updated_at)
             VALUES ('a', 'alpha', 'us-east-1', 'live', '{}', '2026-11-01T10:00:00Z', '2026-11-01T10:00:00Z')",
            "INSERT INTO jobs (id, deployment_id, kind, status, source, idempotency_key, created_at, waiting)
             VALUES ('j', 'a', 'deploy', 'done', 'api', 'deploy - k', '2026-11-01T10:00:00Z', NULL)",
            // Inserted out of name order: the job lists them as inserted.
            "INSERT INTO steps (job_id, key, status, outputs) VALUES ('j', 'vpc', 'done', '{\"v\":1}')",
            "INSERT INTO steps (job_id, key, status) VALUES ('j', 'bucket', 'done')",
            "INSERT INTO steps (job_id, key, status) VALUES ('j', 'alarms', 'done')",
            "INSERT INTO idempotency_keys (scope, fingerprint, job_id, created_at)
             VALUES ('deploy - k', 'f', 'j', 1)",
        ] {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let store = Store::open(&path).await.unwrap();
    let pool = raw(&store).await;
    let job = store.job(&"j".into()).await.unwrap();
    let keys: Vec<&str> = job.steps.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, ["vpc", "bucket", "alarms"]);
    assert_eq!(job.steps[0].outputs["v"], 1);
    let (kept,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM idempotency_keys WHERE job_id = 'j'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(kept, 1);
    let (version,): (i64,) =
        sqlx::query_as("SELECT params_version FROM deployments WHERE id = 'a'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(version, 1);
    let broken: Vec<(String, i64, String, i64)> = sqlx::query_as("PRAGMA foreign_key_check")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(broken.is_empty(), "{broken:?}");
    for (kind, accepted) in [("apply", true), ("bogus", false)] {
        let inserted = sqlx::query(
            "INSERT INTO jobs (id, deployment_id, kind, status, source, created_at)
             VALUES (?1, 'a', ?2, 'done', 'api', '2026-11-01T10:00:00Z')",
        )
        .bind(format!("job-{kind}"))
        .bind(kind)
        .execute(&pool)
        .await;
        assert_eq!(inserted.is_ok(), accepted, "{kind}: {inserted:?}");
    }
    for index in ["jobs_by_deployment", "jobs_unfinished"] {
        let (table,): (String,) =
            sqlx::query_as("SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND name = ?1")
                .bind(index)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(table, "jobs");
    }
    // Deleting the deployment still takes its jobs, steps and keys with it.
    sqlx::query("DELETE FROM deployments WHERE id = 'a'")
        .execute(&pool)
        .await
        .unwrap();
    for table in ["jobs", "steps", "idempotency_keys"] {
        let (left,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 0, "{table}");
    }
}
