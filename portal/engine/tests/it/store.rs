//! The database against real SQLite files in a temporary folder.

use cloudpulse_core::model::DeploymentStatus;
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
