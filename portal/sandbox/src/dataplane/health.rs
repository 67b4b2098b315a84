//! Health checks of a target group's instances, the way an ALB makes them.
//!
//! moto reports every registered target `healthy` forever. Here each target
//! group gets a checker that probes each registered instance's process on its
//! loopback port with the group's own settings (path, interval, timeout,
//! thresholds, matcher) and keeps AWS's verdict for it: `initial` until it has
//! passed HealthyThreshold checks in a row, `healthy`, `unhealthy` after
//! UnhealthyThreshold failures in a row, and `draining` once the instance is
//! gone (deregistration), with AWS's reason codes and descriptions.
//!
//! The verdicts live in a [`TargetTable`] that the load balancer reads on
//! every request, so a target leaving `healthy` stops getting traffic on the
//! very next request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// A target's health as ELB names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetState {
    Initial,
    Healthy,
    Unhealthy,
    Draining,
}

impl TargetState {
    /// The wire value, as in `TargetHealth.State`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Initial => "initial",
            TargetState::Healthy => "healthy",
            TargetState::Unhealthy => "unhealthy",
            TargetState::Draining => "draining",
        }
    }
}

/// Why a target is not healthy, with AWS's code and wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetReason {
    RegistrationInProgress,
    InitialHealthChecking,
    ResponseCodeMismatch(u16),
    Timeout,
    FailedHealthChecks,
    DeregistrationInProgress,
}

impl TargetReason {
    /// The `TargetHealth.Reason` code.
    pub fn code(&self) -> &'static str {
        match self {
            TargetReason::RegistrationInProgress => "Elb.RegistrationInProgress",
            TargetReason::InitialHealthChecking => "Elb.InitialHealthChecking",
            TargetReason::ResponseCodeMismatch(_) => "Target.ResponseCodeMismatch",
            TargetReason::Timeout => "Target.Timeout",
            TargetReason::FailedHealthChecks => "Target.FailedHealthChecks",
            TargetReason::DeregistrationInProgress => "Target.DeregistrationInProgress",
        }
    }

    /// The `TargetHealth.Description` text.
    pub fn description(&self) -> String {
        match self {
            TargetReason::RegistrationInProgress => "Target registration is in progress".into(),
            TargetReason::InitialHealthChecking => "Initial health checks in progress".into(),
            TargetReason::ResponseCodeMismatch(code) => {
                format!("Health checks failed with these codes: [{code}]")
            }
            TargetReason::Timeout => "Request timed out".into(),
            TargetReason::FailedHealthChecks => "Health checks failed".into(),
            TargetReason::DeregistrationInProgress => "Target deregistration is in progress".into(),
        }
    }
}

/// The data plane's verdict on one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetVerdict {
    pub instance_id: String,
    pub port: u16,
    pub state: TargetState,
    /// `None` when healthy.
    pub reason: Option<TargetReason>,
}

/// Which HTTP codes count as a pass: ELB's `Matcher.HttpCode`, a list of
/// codes and ranges such as `200`, `200,302` or `200-299`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher(Vec<(u16, u16)>);

impl Matcher {
    /// Parses ELB's syntax; anything unreadable falls back to ELB's default
    /// for HTTP target groups, `200`.
    pub fn parse(spec: &str) -> Matcher {
        let ranges: Option<Vec<(u16, u16)>> = spec
            .split(',')
            .map(|part| {
                let part = part.trim();
                match part.split_once('-') {
                    Some((low, high)) => {
                        Some((low.trim().parse().ok()?, high.trim().parse().ok()?))
                    }
                    None => part.parse().ok().map(|code| (code, code)),
                }
            })
            .collect();
        match ranges {
            Some(ranges) if !ranges.is_empty() => Matcher(ranges),
            _ => Matcher(vec![(200, 200)]),
        }
    }

    pub fn matches(&self, code: u16) -> bool {
        self.0
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&code))
    }
}

/// A target group's health check, already divided by the time scale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheckSettings {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub matcher: Matcher,
}

impl Default for HealthCheckSettings {
    /// ELB's defaults for an HTTP target group of instances.
    fn default() -> Self {
        HealthCheckSettings {
            path: "/".into(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            healthy_threshold: 5,
            unhealthy_threshold: 2,
            matcher: Matcher(vec![(200, 200)]),
        }
    }
}

#[derive(Clone, Debug)]
struct Tracked {
    port: u16,
    state: TargetState,
    reason: Option<TargetReason>,
    /// Consecutive passes and failures; one of them is always zero.
    passes: u32,
    failures: u32,
    /// When draining began; the entry goes when the drain ends.
    draining_since: Option<Instant>,
}

/// The verdicts of one target group, shared with its load balancer(s).
#[derive(Debug, Default)]
pub struct TargetTable {
    targets: RwLock<HashMap<String, Tracked>>,
}

/// Where a load balancer may send a request right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routable {
    pub healthy: Vec<u16>,
    /// Registered, not draining, but unhealthy: the fail-open set.
    pub unhealthy: Vec<u16>,
    /// Registered and still in `initial`.
    pub initial: usize,
}

impl TargetTable {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Tracked>> {
        // A poisoned lock means a panic mid-update of plain data; go on.
        self.targets.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Tracked>> {
        self.targets.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Every target's verdict, sorted by instance id.
    pub fn verdicts(&self) -> Vec<TargetVerdict> {
        let mut out: Vec<TargetVerdict> = self
            .read()
            .iter()
            .map(|(id, t)| TargetVerdict {
                instance_id: id.clone(),
                port: t.port,
                state: t.state,
                reason: t.reason.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        out
    }

    pub fn verdict(&self, instance_id: &str) -> Option<TargetVerdict> {
        self.read().get(instance_id).map(|t| TargetVerdict {
            instance_id: instance_id.to_string(),
            port: t.port,
            state: t.state,
            reason: t.reason.clone(),
        })
    }

    /// Ports by health, for the load balancer.
    pub fn routable(&self) -> Routable {
        let mut routable = Routable::default();
        for target in self.read().values() {
            match target.state {
                TargetState::Healthy => routable.healthy.push(target.port),
                TargetState::Unhealthy => routable.unhealthy.push(target.port),
                TargetState::Initial => routable.initial += 1,
                TargetState::Draining => {}
            }
        }
        // A stable order makes round robin fair across calls.
        routable.healthy.sort_unstable();
        routable.unhealthy.sort_unstable();
        routable
    }

    /// Starts checking `instance_id` on `port`, if it is not known yet.
    pub fn register(&self, instance_id: &str, port: u16) {
        let mut targets = self.write();
        let fresh = || Tracked {
            port,
            state: TargetState::Initial,
            reason: Some(TargetReason::InitialHealthChecking),
            passes: 0,
            failures: 0,
            draining_since: None,
        };
        match targets.get_mut(instance_id) {
            // Same id on a new port is a new process: start over.
            Some(known) if known.port != port => *known = fresh(),
            Some(_) => {}
            None => {
                targets.insert(instance_id.to_string(), fresh());
            }
        }
    }

    /// The instance is leaving: no more traffic, no more checks.
    pub fn drain(&self, instance_id: &str) {
        if let Some(target) = self.write().get_mut(instance_id) {
            if target.state != TargetState::Draining {
                target.state = TargetState::Draining;
                target.reason = Some(TargetReason::DeregistrationInProgress);
                target.draining_since = Some(Instant::now());
            }
        }
    }

    /// Forgets the target (its drain is over).
    pub fn remove(&self, instance_id: &str) {
        self.write().remove(instance_id);
    }

    pub fn instance_ids(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Draining targets whose drain began more than `delay` ago.
    pub fn drained_longer_than(&self, delay: Duration) -> Vec<String> {
        self.read()
            .iter()
            .filter(|(_, t)| t.draining_since.is_some_and(|s| s.elapsed() >= delay))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Applies one probe's outcome. Draining targets are past checking.
    pub(crate) fn record(
        &self,
        instance_id: &str,
        port: u16,
        outcome: Probe,
        settings: &HealthCheckSettings,
    ) {
        let mut targets = self.write();
        let Some(target) = targets.get_mut(instance_id) else {
            return;
        };
        if target.port != port || target.state == TargetState::Draining {
            return;
        }
        match outcome {
            Probe::Pass => {
                target.failures = 0;
                target.passes = target.passes.saturating_add(1);
                if target.state != TargetState::Healthy
                    && target.passes >= settings.healthy_threshold
                {
                    target.state = TargetState::Healthy;
                    target.reason = None;
                }
            }
            Probe::Fail(reason) => {
                target.passes = 0;
                target.failures = target.failures.saturating_add(1);
                if target.state != TargetState::Unhealthy
                    && target.failures >= settings.unhealthy_threshold
                {
                    target.state = TargetState::Unhealthy;
                }
                if target.state == TargetState::Unhealthy {
                    // The latest failure says best what is wrong now.
                    target.reason = Some(reason);
                }
            }
        }
    }
}

/// One health check's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    Pass,
    Fail(TargetReason),
}

/// Probes one target group's targets until dropped.
#[derive(Debug)]
pub struct HealthChecker {
    table: Arc<TargetTable>,
    settings: watch::Sender<HealthCheckSettings>,
    task: tokio::task::JoinHandle<()>,
}

impl HealthChecker {
    pub fn start(target_group_arn: &str, settings: HealthCheckSettings) -> HealthChecker {
        let table = Arc::new(TargetTable::default());
        let (settings_tx, settings_rx) = watch::channel(settings);
        let task = tokio::spawn(run_checks(
            target_group_arn.to_string(),
            Arc::clone(&table),
            settings_rx,
        ));
        HealthChecker {
            table,
            settings: settings_tx,
            task,
        }
    }

    pub fn table(&self) -> &Arc<TargetTable> {
        &self.table
    }

    /// Applies changed settings from the next round on.
    pub fn update_settings(&self, settings: HealthCheckSettings) {
        self.settings.send_if_modified(|current| {
            let changed = *current != settings;
            if changed {
                *current = settings;
            }
            changed
        });
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run_checks(
    target_group_arn: String,
    table: Arc<TargetTable>,
    mut settings: watch::Receiver<HealthCheckSettings>,
) {
    // Health checks open a fresh connection each time, as ELB's do: a pooled
    // connection to a process that died would fail for the wrong reason.
    let client = match reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, %target_group_arn, "cannot build the health check client");
            return;
        }
    };
    loop {
        let current = settings.borrow_and_update().clone();
        let round_started = Instant::now();
        let targets: Vec<(String, u16)> = table
            .read()
            .iter()
            .filter(|(_, t)| t.state != TargetState::Draining)
            .map(|(id, t)| (id.clone(), t.port))
            .collect();
        let probes = targets.into_iter().map(|(id, port)| {
            let client = &client;
            let current = &current;
            async move {
                let outcome = probe(client, port, current).await;
                (id, port, outcome)
            }
        });
        for (id, port, outcome) in futures_util::future::join_all(probes).await {
            if let Probe::Fail(reason) = &outcome {
                tracing::debug!(%target_group_arn, instance_id = %id, reason = reason.code(), "health check failed");
            }
            table.record(&id, port, outcome, &current);
        }
        let next = round_started + current.interval;
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            changed = settings.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

async fn probe(client: &reqwest::Client, port: u16, settings: &HealthCheckSettings) -> Probe {
    let url = format!("http://127.0.0.1:{port}{}", settings.path);
    let sent = client.get(url).timeout(settings.timeout).send().await;
    match sent {
        Ok(response) => {
            let code = response.status().as_u16();
            if settings.matcher.matches(code) {
                Probe::Pass
            } else {
                Probe::Fail(TargetReason::ResponseCodeMismatch(code))
            }
        }
        Err(error) if error.is_timeout() => Probe::Fail(TargetReason::Timeout),
        Err(_) => Probe::Fail(TargetReason::FailedHealthChecks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(healthy: u32, unhealthy: u32) -> HealthCheckSettings {
        HealthCheckSettings {
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
            ..HealthCheckSettings::default()
        }
    }

    #[test]
    fn matcher_reads_codes_lists_and_ranges() {
        let m = Matcher::parse("200-299, 302");
        assert!(m.matches(200) && m.matches(250) && m.matches(302));
        assert!(!m.matches(301) && !m.matches(503));
        assert_eq!(Matcher::parse("nonsense"), Matcher(vec![(200, 200)]));
        assert!(Matcher::parse("200").matches(200));
    }

    #[test]
    fn thresholds_move_a_target_like_elb() {
        let table = TargetTable::default();
        let s = settings(3, 2);
        table.register("i-1", 80);
        let state = || table.verdict("i-1").unwrap();
        assert_eq!(state().state, TargetState::Initial);
        assert_eq!(state().reason, Some(TargetReason::InitialHealthChecking));
        table.record("i-1", 80, Probe::Pass, &s);
        table.record("i-1", 80, Probe::Pass, &s);
        assert_eq!(state().state, TargetState::Initial);
        table.record("i-1", 80, Probe::Pass, &s);
        assert_eq!(state().state, TargetState::Healthy);
        assert_eq!(state().reason, None);
        // One failure is not enough; a pass resets the count.
        table.record("i-1", 80, Probe::Fail(TargetReason::Timeout), &s);
        table.record("i-1", 80, Probe::Pass, &s);
        table.record("i-1", 80, Probe::Fail(TargetReason::Timeout), &s);
        assert_eq!(state().state, TargetState::Healthy);
        table.record(
            "i-1",
            80,
            Probe::Fail(TargetReason::ResponseCodeMismatch(503)),
            &s,
        );
        assert_eq!(state().state, TargetState::Unhealthy);
        assert_eq!(
            state().reason.unwrap().code(),
            "Target.ResponseCodeMismatch"
        );
        assert_eq!(table.routable().unhealthy, vec![80]);
        assert!(table.routable().healthy.is_empty());
        // Draining is final: probes no longer count.
        table.drain("i-1");
        for _ in 0..5 {
            table.record("i-1", 80, Probe::Pass, &s);
        }
        assert_eq!(state().state, TargetState::Draining);
        assert_eq!(
            state().reason.unwrap().code(),
            "Target.DeregistrationInProgress"
        );
        assert_eq!(table.routable(), Routable::default());
    }

    #[test]
    fn a_new_process_for_the_same_instance_starts_over() {
        let table = TargetTable::default();
        let s = settings(1, 1);
        table.register("i-1", 80);
        table.record("i-1", 80, Probe::Pass, &s);
        assert_eq!(table.verdict("i-1").unwrap().state, TargetState::Healthy);
        table.register("i-1", 80);
        assert_eq!(table.verdict("i-1").unwrap().state, TargetState::Healthy);
        table.register("i-1", 81);
        assert_eq!(table.verdict("i-1").unwrap().state, TargetState::Initial);
        // A late probe of the old port does not count for the new one.
        table.record("i-1", 80, Probe::Pass, &s);
        assert_eq!(table.verdict("i-1").unwrap().state, TargetState::Initial);
    }

    #[test]
    fn descriptions_read_like_aws() {
        assert_eq!(
            TargetReason::ResponseCodeMismatch(503).description(),
            "Health checks failed with these codes: [503]"
        );
        assert_eq!(TargetReason::Timeout.code(), "Target.Timeout");
    }
}
