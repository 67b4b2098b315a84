//! Telemetry: what a live deployment is doing, what it costs, how well it stays up.
//!
//! A poller per live deployment reads the Auto Scaling group, target health,
//! alarm states, scaling activities ([`Engine::health`], four calls) on a
//! fixed cadence and CloudWatch metrics (one batched `GetMetricData`) once
//! a minute, their resolution,
//! stores samples in SQLite, and turns every change into an event on the
//! deployment's timeline ([`observe`]). Beside it, a probe asks the app URL
//! for its page and keeps incidents. Raw samples are kept for a day, then
//! replaced by minutely averages. Cost accrues with
//! `cloudpulse_core::pricing`, the module the estimate uses too ([`cost`]).
//!
//! It reads AWS and writes the database; it never creates or deletes AWS
//! resources (that is the engine's job) and never renders anything.

pub mod budget;
pub mod cost;
pub mod db;
pub mod metrics;
pub mod observe;
pub mod views;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use cloudpulse_core::ids::DeploymentId;
use cloudpulse_core::model::{EventKind, HealthSnapshot};
use cloudpulse_engine::store::StoreError;
use cloudpulse_engine::{Engine, EngineError};
use tokio::task::JoinHandle;

use crate::db::{Db, Sample, Watched};
use crate::observe::Known;

/// AWS calls one poll makes: [`Engine::health`]'s four (and a
/// `DescribeInstances` when an instance joins). `GetMetricData` comes once
/// a minute on top: at the default 30 s, 9 calls a minute per live
/// deployment, within [`CALLS_PER_MINUTE`].
pub const CALLS_PER_POLL: u32 = 4;

/// The most AWS calls a minute the telemetry may make for one live
/// deployment.
pub const CALLS_PER_MINUTE: u32 = 12;

/// How often, and how, the telemetry looks.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// Between two polls of a live deployment.
    pub poll: Duration,
    /// Between two probes of its app URL.
    pub probe: Duration,
    /// How long a probe waits for an answer.
    pub probe_timeout: Duration,
    /// The CloudWatch period metrics are read at (seconds).
    pub metric_period: i32,
    /// Raw samples older than this become minutely averages.
    pub raw_retention: Duration,
    /// The cloud's clock against AWS's: a sandbox minute lasts `60 ×
    /// time_scale` seconds, and so do the minutes of a TTL.
    pub time_scale: f64,
    /// Between two looks of the budget guard.
    pub budget_tick: Duration,
    /// How long before a TTL runs out the pages show the countdown.
    pub warn_before: Duration,
    /// A live deployment whose load balancer saw no requests but the
    /// portal's probes for this long is flagged idle.
    pub idle_after: Duration,
    /// Between two full drift checks of a live deployment (the group's
    /// bounds and size are compared on every poll).
    pub drift: Duration,
}

impl TelemetryConfig {
    /// `minutes` on the cloud's clock, as a real duration.
    pub fn minutes(&self, minutes: u32) -> Duration {
        Duration::from_secs(u64::from(minutes) * 60).mul_f64(self.time_scale)
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            poll: Duration::from_secs(30),
            probe: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(5),
            metric_period: 60,
            raw_retention: Duration::from_secs(24 * 3600),
            time_scale: 1.0,
            budget_tick: Duration::from_secs(5),
            warn_before: Duration::from_secs(15 * 60),
            idle_after: Duration::from_secs(60 * 60),
            drift: Duration::from_secs(5 * 60),
        }
    }
}

/// The uptime probe's HTTP client. It follows no redirect: an app URL that
/// answers 3xx is counted as down (as the load balancer's health check
/// counts it), and a compromised instance cannot point the portal at
/// another address (a metadata service, an internal host) by redirecting.
pub fn probe_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent("cloudpulse-uptime-probe")
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// The pollers of every live deployment.
pub struct Telemetry {
    engine: Engine,
    db: Db,
    config: TelemetryConfig,
    http: reqwest::Client,
    /// When each deployment's metrics were last read.
    metrics_read: std::sync::Mutex<HashMap<DeploymentId, Instant>>,
}

impl Telemetry {
    /// Opens the telemetry's own pool on the engine's database file.
    pub async fn new(engine: Engine, config: TelemetryConfig) -> Result<Arc<Self>, StoreError> {
        let db = Db::open(engine.store()).await?;
        let http = probe_client(config.probe_timeout);
        Ok(Arc::new(Telemetry {
            engine,
            db,
            config,
            http,
            metrics_read: Default::default(),
        }))
    }

    /// The telemetry's store, for the pages' and the API's reads.
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn config(&self) -> &TelemetryConfig {
        &self.config
    }

    /// Starts watching: a task that starts a poller for every deployment
    /// that goes live, stops it when the deployment no longer is, and thins
    /// old samples once an hour; and the budget guard ([`budget`]).
    pub fn spawn(self: &Arc<Self>) -> JoinHandle<()> {
        tokio::spawn(budget::guard(
            self.engine.clone(),
            self.db.clone(),
            self.config.budget_tick,
        ));
        let telemetry = self.clone();
        tokio::spawn(async move { telemetry.supervise().await })
    }

    async fn supervise(self: Arc<Self>) {
        let db = &self.db;
        let mut watchers: HashMap<DeploymentId, JoinHandle<()>> = HashMap::new();
        let mut thinned: Option<Instant> = None;
        // A job's progress (a deploy going live, a teardown starting) wakes
        // the supervisor at once; otherwise it looks every few seconds.
        let look = self.config.poll.min(Duration::from_secs(2));
        let mut jobs = self.engine.subscribe();
        loop {
            match db::live_deployments(db).await {
                Ok(live) => {
                    let ids: Vec<&DeploymentId> = live.iter().map(|d| &d.id).collect();
                    let ended: Vec<DeploymentId> = watchers
                        .keys()
                        .filter(|id| !ids.contains(id))
                        .cloned()
                        .collect();
                    for id in ended {
                        if let Some(task) = watchers.remove(&id) {
                            task.abort();
                        }
                        if let Err(error) = db::stop_watching(db, &id).await {
                            tracing::warn!(deployment = %id, %error, "cannot close the uptime record");
                        }
                        tracing::info!(deployment = %id, "telemetry stopped: no longer live");
                    }
                    for deployment in live {
                        if !watchers.contains_key(&deployment.id) {
                            tracing::info!(deployment = %deployment.id, "telemetry started");
                            let id = deployment.id.clone();
                            let telemetry = self.clone();
                            watchers.insert(id, tokio::spawn(telemetry.watch(deployment)));
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "telemetry cannot list live deployments"),
            }
            if thinned.is_none_or(|at| at.elapsed() > Duration::from_secs(3600)) {
                thinned = Some(Instant::now());
                let keep = Utc::now()
                    - TimeDelta::from_std(self.config.raw_retention).unwrap_or(TimeDelta::days(1));
                match db::downsample(db, keep.timestamp()).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(samples = n, "raw samples thinned to minutely averages")
                    }
                    Err(error) => tracing::warn!(%error, "cannot thin old samples"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(look) => {}
                event = jobs.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = event {
                        tokio::time::sleep(look).await;
                    }
                }
            }
        }
    }

    /// Polls and probes one deployment until the task is stopped.
    async fn watch(self: Arc<Self>, deployment: Watched) {
        let db = &self.db;
        let mut known = match db::load_known(db, &deployment.id).await {
            Ok(known) => known,
            Err(error) => {
                tracing::warn!(deployment = %deployment.id, %error, "telemetry starts without its record");
                Known::default()
            }
        };
        // A portal starting with many live deployments spreads their first
        // polls and probes over one cadence instead of sending them at once.
        let start = tokio::time::Instant::now();
        let spread = |every: Duration| start + every.mul_f64(spread_of(deployment.id.as_str()));
        let mut poll = tokio::time::interval_at(spread(self.config.poll), self.config.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probe = tokio::time::interval_at(spread(self.config.probe), self.config.probe);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drift = tokio::time::interval_at(spread(self.config.drift), self.config.drift);
        drift.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut healthy: Option<u32> = None;
        loop {
            tokio::select! {
                _ = drift.tick() => self.drift_once(&deployment.id).await,
                _ = poll.tick() => {
                    if let Some(snapshot) = self.poll_once(&deployment, &mut known).await {
                        healthy = Some(snapshot.healthy_targets);
                    }
                }
                _ = probe.tick() => {
                    if let Some(url) = &deployment.app_url {
                        self.probe_once(&deployment.id, url, healthy).await;
                    }
                }
            }
        }
    }

    /// One poll: read, compare, store. `None` when AWS did not answer.
    pub async fn poll_once(
        &self,
        deployment: &Watched,
        known: &mut Known,
    ) -> Option<HealthSnapshot> {
        let id = &deployment.id;
        let snapshot = match self.engine.health(id).await {
            Ok(snapshot) => snapshot,
            Err(EngineError::NotLive { status, .. }) => {
                tracing::debug!(deployment = %id, status = status.as_str(), "nothing to poll");
                return None;
            }
            Err(error) => {
                tracing::warn!(deployment = %id, %error, "telemetry poll failed");
                return None;
            }
        };
        let mut samples = group_samples(&snapshot);
        samples.extend(self.read_metrics(deployment, &snapshot).await);
        let db = &self.db;
        let mut events = observe::observe(known, &snapshot);
        let mut kept = Vec::with_capacity(events.len());
        for event in events.drain(..) {
            if event.kind == EventKind::Recovery {
                let seconds = event.data["seconds"].as_f64().unwrap_or_default();
                let since = snapshot.taken_at - TimeDelta::milliseconds((seconds * 1000.0) as i64);
                // The engine times recoveries after chaos more finely.
                if db::recovery_recorded_since(db, id, since)
                    .await
                    .unwrap_or(false)
                {
                    continue;
                }
            }
            kept.push(event);
        }
        if let Err(error) = db::record_poll(db, &snapshot, &samples, &kept).await {
            tracing::warn!(deployment = %id, %error, "cannot store a telemetry poll");
        }
        match self.engine.poll_drift(&snapshot).await {
            Ok(()) | Err(EngineError::NotLive { .. }) => {}
            Err(error) => {
                tracing::warn!(deployment = %id, %error, "cannot compare the group with its parameters")
            }
        }
        Some(snapshot)
    }

    /// One full drift check; what it finds goes on the timeline.
    async fn drift_once(&self, id: &DeploymentId) {
        match self.engine.check_drift(id).await {
            Ok(report) => {
                tracing::debug!(deployment = %id, findings = report.findings.len(), "drift checked")
            }
            Err(EngineError::NotLive { .. } | EngineError::WrongState(_)) => {}
            Err(error) => tracing::warn!(deployment = %id, %error, "drift check failed"),
        }
    }

    /// How often metrics are read: once a minute (on the cloud's clock), the
    /// resolution of detailed monitoring and of the instances' own metrics,
    /// and never more often than one CloudWatch period.
    pub fn metrics_interval(&self) -> Duration {
        self.config
            .minutes(1)
            .max(Duration::from_secs(self.config.metric_period.max(1) as u64))
    }

    /// Whether this deployment's metrics are due; marks them read if so.
    fn metrics_due(&self, deployment_id: &DeploymentId) -> bool {
        let mut read = self.metrics_read.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // A little slack, so that a poll cadence that divides the minute
        // does not skip a minute for a few milliseconds.
        let interval = self.metrics_interval().mul_f64(0.95);
        match read.get(deployment_id) {
            Some(last) if now.duration_since(*last) < interval => false,
            _ => {
                read.insert(deployment_id.clone(), now);
                true
            }
        }
    }

    async fn read_metrics(&self, deployment: &Watched, snapshot: &HealthSnapshot) -> Vec<Sample> {
        if !self.metrics_due(&deployment.id) {
            return Vec::new();
        }
        let ids: Vec<String> = snapshot
            .group
            .instances
            .iter()
            .map(|i| i.id.clone())
            .collect();
        let period = self.config.metric_period;
        let load_balancer = deployment
            .load_balancer_arn
            .as_deref()
            .and_then(metrics::load_balancer_dimension);
        let (queries, series) = metrics::queries(&snapshot.group.name, load_balancer, &ids, period);
        let (from, to) = metrics::window(snapshot.taken_at, period);
        let aws = self.engine.aws(&deployment.region);
        let answer = aws
            .cloudwatch
            .get_metric_data()
            .set_metric_data_queries(Some(queries))
            .start_time(aws_smithy_types::DateTime::from_secs(from.timestamp()))
            .end_time(aws_smithy_types::DateTime::from_secs(to.timestamp()))
            .send()
            .await;
        match answer {
            Ok(out) => metrics::samples(out.metric_data_results(), &series),
            Err(error) => {
                tracing::warn!(deployment = %deployment.id, error = %aws_sdk_cloudwatch::error::DisplayErrorContext(&error), "GetMetricData failed");
                Vec::new()
            }
        }
    }

    /// Asks the app URL for its page once and records the answer.
    pub async fn probe_once(&self, deployment_id: &DeploymentId, url: &str, healthy: Option<u32>) {
        let at = Utc::now();
        let started = Instant::now();
        let failure = match self.http.get(url).send().await {
            Ok(answer) if answer.status().is_success() => None,
            Ok(answer) => Some(format!("HTTP {}", answer.status())),
            Err(error) if error.is_timeout() => Some(format!(
                "no answer within {} s",
                self.config.probe_timeout.as_secs_f64()
            )),
            Err(error) if error.is_connect() => Some("the connection was refused".to_string()),
            Err(error) => Some(format!("the request failed: {error}")),
        };
        let millis = failure
            .is_none()
            .then(|| started.elapsed().as_secs_f64() * 1000.0);
        let cause = failure.map(|f| match healthy {
            Some(0) => format!("{f}; no healthy targets behind the load balancer"),
            _ => f,
        });
        let db = &self.db;
        if let Err(error) = db::record_probe(db, deployment_id, at, cause.as_deref(), millis).await
        {
            tracing::warn!(deployment = %deployment_id, %error, "cannot store a probe");
        }
    }
}

/// Where in a cadence a deployment's first poll falls, from 0 to 1: the
/// same for the same id, spread evenly across ids.
fn spread_of(id: &str) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut hasher);
    (hasher.finish() % 1000) as f64 / 1000.0
}

/// The group's figures at the moment of a snapshot.
fn group_samples(snapshot: &HealthSnapshot) -> Vec<Sample> {
    let at = snapshot.taken_at.timestamp();
    let group = &snapshot.group;
    let in_service = group
        .instances
        .iter()
        .filter(|i| i.lifecycle == "InService")
        .count();
    let mut samples = vec![
        Sample::new("desired", at, f64::from(group.desired)),
        Sample::new("min", at, f64::from(group.min)),
        Sample::new("max", at, f64::from(group.max)),
        Sample::new("in_service", at, in_service as f64),
        Sample::new("healthy_targets", at, f64::from(snapshot.healthy_targets)),
    ];
    for alarm in &snapshot.alarms {
        samples.push(Sample::new(
            format!("alarm:{}", alarm.name),
            at,
            db::alarm_value(&alarm.state),
        ));
    }
    for instance in &group.instances {
        if let Some(state) = &instance.target_state {
            samples.push(Sample::new(
                format!("target:{}", instance.id),
                at,
                db::target_value(state),
            ));
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::spread_of;

    #[test]
    fn first_polls_spread_over_the_cadence() {
        let spreads: Vec<f64> = (0..1000)
            .map(|i| spread_of(&format!("deployment-{i}")))
            .collect();
        assert!(spreads.iter().all(|s| (0.0..1.0).contains(s)));
        let early = spreads.iter().filter(|s| **s < 0.5).count();
        assert!(
            (400..600).contains(&early),
            "{early} of 1000 in the first half"
        );
        assert_eq!(spread_of("a"), spread_of("a"));
    }
}
