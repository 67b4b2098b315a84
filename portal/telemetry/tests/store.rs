//! The telemetry's records in a real SQLite file, migrated as the portal
//! migrates it.

use chrono::{DateTime, TimeDelta, Utc};
use cloudpulse_core::ids::DeploymentId;
use cloudpulse_core::live::MetricsRange;
use cloudpulse_core::model::{GroupHealth, HealthSnapshot, InstanceHealth};
use cloudpulse_engine::store;
use cloudpulse_engine::Store;
use cloudpulse_telemetry::db::{self, Db, Sample};
use cloudpulse_telemetry::observe::{observe, Known};
use cloudpulse_telemetry::{budget, cost, metrics, views, TelemetryConfig};
use sqlx::SqlitePool;

const ID: &str = "0b6c7e2e-0000-4000-8000-000000000001";

fn id() -> DeploymentId {
    DeploymentId::from(ID)
}

/// A migrated database holding one live deployment, and a raw pool on it
/// for what the test reads directly.
async fn store(dir: &tempfile::TempDir, created: DateTime<Utc>) -> (Db, SqlitePool) {
    let path = dir.path().join("telemetry.db");
    let store = Store::open(&path).await.unwrap();
    let raw = store::connect(&path, 1).await.unwrap();
    sqlx::query(
        "INSERT INTO deployments (id, name, region, status, params, created_at, updated_at)
         VALUES (?1, 'demo', 'us-east-1', 'live', '{}', ?2, ?2)",
    )
    .bind(ID)
    .bind(created)
    .execute(&raw)
    .await
    .unwrap();
    (Db::open(&store).await.unwrap(), raw)
}

fn instance(id: &str, target: &str) -> InstanceHealth {
    InstanceHealth {
        id: id.into(),
        lifecycle: "InService".into(),
        health: "Healthy".into(),
        availability_zone: "us-east-1a".into(),
        instance_type: Some("t3.micro".into()),
        launched_at: None,
        private_ip: Some("10.0.3.4".into()),
        target_state: Some(target.into()),
        target_reason: None,
    }
}

fn snapshot(at: DateTime<Utc>, instances: Vec<InstanceHealth>) -> HealthSnapshot {
    HealthSnapshot {
        deployment_id: ID.into(),
        taken_at: at,
        healthy_targets: instances.len() as u32,
        group: GroupHealth {
            name: "g".into(),
            min: 2,
            desired: 2,
            max: 4,
            instances,
        },
        alarms: vec![],
        activities: vec![],
    }
}

#[tokio::test]
async fn a_restarted_poller_reports_only_what_changed_since() {
    let dir = tempfile::tempdir().unwrap();
    let start = Utc::now() - TimeDelta::hours(1);
    let (db, _raw) = store(&dir, start).await;
    let pool = &db;

    let mut known = Known::default();
    let first = snapshot(
        start,
        vec![instance("i-a", "healthy"), instance("i-b", "healthy")],
    );
    let events = observe(&mut known, &first);
    db::record_poll(
        pool,
        &first,
        &[Sample::new("desired", start.timestamp(), 2.0)],
        &events,
    )
    .await
    .unwrap();

    // A new poller, as after a restart, starts from the database.
    let mut known = db::load_known(pool, &id()).await.unwrap();
    assert_eq!(known.instances.len(), 2);
    assert_eq!(known.desired, Some(2));
    let later = start + TimeDelta::minutes(10);
    let second = snapshot(later, vec![instance("i-b", "healthy")]);
    let events = observe(&mut known, &second);
    let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        ["i-a left the group (last InService and Healthy)"]
    );
    db::record_poll(pool, &second, &[], &events).await.unwrap();

    let records = db::instances(pool, &id()).await.unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].id, "i-b", "those in the group come first");
    assert_eq!(records[1].gone_at, Some(later));
    // i-a lived 10 minutes, i-b 1 hour so far: 70 instance-minutes.
    let now = start + TimeDelta::hours(1);
    let cost = cost::cost(pool, &id(), now).await.unwrap().unwrap();
    assert!(
        (cost.instance_hours - 70.0 / 60.0).abs() < 1e-6,
        "{}",
        cost.instance_hours
    );
    let instances = cost
        .breakdown
        .iter()
        .find(|s| s.label == "Instances")
        .unwrap();
    assert!((instances.accrued_usd - 0.0104 * 70.0 / 60.0).abs() < 1e-9);
    assert!(
        (instances.hourly_usd - 0.0104).abs() < 1e-12,
        "one instance runs now"
    );
}

#[tokio::test]
async fn old_samples_become_minutely_averages() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let (db, raw) = store(&dir, now - TimeDelta::days(3)).await;
    let pool = &db;
    // On a quarter hour, so both minutes fall in one 15-minute point below.
    let old = (now - TimeDelta::days(2)).timestamp() / 900 * 900;
    let mut samples: Vec<Sample> = (0..120)
        .map(|s| Sample::new("cpu", old + s, s as f64))
        .collect();
    samples.push(Sample::new("cpu", now.timestamp(), 42.0));
    let snap = snapshot(now, vec![]);
    db::record_poll(pool, &snap, &samples, &[]).await.unwrap();

    let thinned = db::downsample(pool, (now - TimeDelta::hours(24)).timestamp())
        .await
        .unwrap();
    assert_eq!(thinned, 120);
    let rows: Vec<(i64, i64, f64)> = sqlx::query_as(
        "SELECT at, resolution, value FROM samples WHERE series = 'cpu' ORDER BY at",
    )
    .fetch_all(&raw)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            (old, 60, 29.5),
            (old + 60, 60, 89.5),
            (now.timestamp(), 0, 42.0)
        ]
    );
    // Running it again changes nothing.
    assert_eq!(
        db::downsample(pool, (now - TimeDelta::hours(24)).timestamp())
            .await
            .unwrap(),
        0
    );
    let metrics = views::metrics(
        pool,
        &TelemetryConfig::default(),
        &id(),
        MetricsRange::All,
        now,
    )
    .await
    .unwrap()
    .unwrap();
    // Three days at 360 points or fewer: 15-minute points, so the two
    // old minutes share one.
    assert_eq!(metrics.step_seconds, 900);
    let cpu = metrics.series("cpu").unwrap();
    assert_eq!(
        cpu.points,
        vec![(old / 900 * 900, 59.5), (now.timestamp() / 900 * 900, 42.0)]
    );
}

#[tokio::test]
async fn failed_probes_open_an_incident_and_the_next_good_one_closes_it() {
    let dir = tempfile::tempdir().unwrap();
    let start = Utc::now() - TimeDelta::minutes(5);
    let (db, _raw) = store(&dir, start).await;
    let pool = &db;
    let at = |s: i64| start + TimeDelta::seconds(s);
    db::record_probe(pool, &id(), at(10), None, Some(3.0))
        .await
        .unwrap();
    db::record_probe(pool, &id(), at(20), Some("HTTP 502 Bad Gateway"), None)
        .await
        .unwrap();
    db::record_probe(
        pool,
        &id(),
        at(30),
        Some("HTTP 503 Service Unavailable"),
        None,
    )
    .await
    .unwrap();
    db::record_probe(pool, &id(), at(40), None, Some(4.0))
        .await
        .unwrap();

    let uptime = views::uptime(pool, &id(), at(60)).await.unwrap().unwrap();
    assert_eq!((uptime.probes, uptime.failed_probes), (4, 2));
    assert_eq!(uptime.availability_pct, Some(50.0));
    assert_eq!(uptime.incidents.len(), 1);
    let incident = &uptime.incidents[0];
    assert_eq!(
        incident.cause, "HTTP 502 Bad Gateway",
        "the first failure names it"
    );
    assert_eq!(incident.ended_at, Some(at(40)));
    assert_eq!(incident.duration_seconds, 20.0);

    // One left open is closed when the deployment is no longer watched.
    db::record_probe(
        pool,
        &id(),
        at(50),
        Some("the connection was refused"),
        None,
    )
    .await
    .unwrap();
    db::stop_watching(pool, &id()).await.unwrap();
    let uptime = views::uptime(pool, &id(), Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert!(uptime.incidents.iter().all(|i| i.ended_at.is_some()));
}

/// CloudWatch publishes a minute of a load balancer's requests minutes
/// after it: the idle window is the newest one that has arrived, so traffic
/// counts as soon as its datapoints do (a window ending now would hold none
/// when it is shorter than the delay), and a deployment whose requests are
/// only the portal's own probes is idle.
#[tokio::test]
async fn idle_is_judged_on_the_requests_cloudwatch_has_published() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let start = now - TimeDelta::hours(1);
    let (db, _raw) = store(&dir, start).await;
    let minute = |m: i64| (now - TimeDelta::minutes(m)).timestamp() / 60 * 60;
    let config = TelemetryConfig {
        idle_after: std::time::Duration::from_secs(2 * 60),
        ..TelemetryConfig::default()
    };
    let live = [id()];
    let hourly = std::collections::HashMap::from([(id(), 0.1)]);
    let poll = |at: DateTime<Utc>, samples: Vec<Sample>| {
        let db = &db;
        async move {
            db::record_poll(db, &snapshot(at, vec![]), &samples, &[])
                .await
                .unwrap();
            db::record_probe(db, &id(), at, None, Some(3.0))
                .await
                .unwrap();
        }
    };
    // Polled and probed once a minute, each probe counted by the load
    // balancer; the newest datapoint is three minutes old.
    for m in (0..=60).rev() {
        let mut samples = vec![Sample::new("desired", minute(m), 2.0)];
        if m >= 3 {
            samples.push(Sample::new(metrics::LB_REQUESTS, minute(m), 1.0));
        }
        poll(now - TimeDelta::minutes(m), samples).await;
    }
    let idle = budget::idle(&db, &config, &live, &hourly, now)
        .await
        .unwrap();
    assert!(idle.contains_key(&id()), "only probes: idle");
    assert!((idle[&id()].daily_usd.unwrap() - 2.4).abs() < 1e-9);

    // People used it four minutes ago; the datapoint is as late as the rest.
    let busy = vec![Sample::new(metrics::LB_REQUESTS, minute(4), 400.0)];
    poll(now, busy).await;
    let idle = budget::idle(&db, &config, &live, &hourly, now)
        .await
        .unwrap();
    assert!(
        idle.is_empty(),
        "400 requests in the newest published window"
    );

    // When CloudWatch publishes nothing for longer than the window and its
    // delay, the window ends now and counted nothing.
    let later = now + TimeDelta::minutes(20);
    for m in 1..=20 {
        let at = now + TimeDelta::minutes(m);
        poll(at, vec![Sample::new("desired", at.timestamp(), 2.0)]).await;
    }
    let idle = budget::idle(&db, &config, &live, &hourly, later)
        .await
        .unwrap();
    assert!(
        idle.contains_key(&id()),
        "no datapoint for 20 minutes: idle"
    );
}

#[tokio::test]
async fn an_ended_deployments_charts_end_at_its_teardown() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let (db, raw) = store(&dir, now - TimeDelta::days(2)).await;
    let ended = now - TimeDelta::days(1);
    let last = ended.timestamp() - 120;
    let samples = vec![Sample::new("cpu", last, 37.0)];
    db::record_poll(&db, &snapshot(ended, vec![]), &samples, &[])
        .await
        .unwrap();
    sqlx::query("UPDATE deployments SET status = 'torn_down', torn_down_at = ?2 WHERE id = ?1")
        .bind(ID)
        .bind(ended)
        .execute(&raw)
        .await
        .unwrap();
    let metrics = views::metrics(
        &db,
        &TelemetryConfig::default(),
        &id(),
        MetricsRange::Hour1,
        now,
    )
    .await
    .unwrap()
    .unwrap();
    // The hour before the teardown, not the empty hour before now.
    assert_eq!(metrics.to.timestamp(), ended.timestamp());
    let cpu = metrics.series("cpu").expect("the last hour's samples");
    assert_eq!(cpu.points.len(), 1);
    assert_eq!(cpu.points[0].1, 37.0);
}
