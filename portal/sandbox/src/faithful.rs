//! What the gateway adds so that moto refuses, limits and remembers like AWS.
//!
//! moto accepts deletes that AWS refuses (a subnet with instances in it, a
//! security group still referenced, an address still mapped by a NAT
//! gateway…), lets an Auto Scaling group grow past its maximum and ignores
//! cooldowns, never records a scaling activity and cannot answer
//! `DescribeAlarmHistory` at all (HTTP 500). Code that is only ever tested
//! against moto can therefore tear down in the wrong order, overshoot a
//! group's size or show an empty history, and nothing would tell. This layer
//! sits in the gateway's [`relay`](crate::gateway) and, for the few calls
//! where moto falls short:
//! - refuses with AWS's own error code, message and XML shape when AWS
//!   would (checked by asking moto about the dependencies, directly, before
//!   the call is forwarded) — see [`dependencies`];
//! - enforces an Auto Scaling group's bounds and cooldown, executes
//!   simple-scaling policies itself (clamped, as AWS does) and records a
//!   scaling activity for every instance launched or terminated, found by
//!   comparing the group's instances before and after each change that
//!   passes here — see [`scaling`];
//! - records alarm configuration and state changes and serves
//!   `DescribeAlarmHistory` from that record — see [`alarms`];
//! - answers instance refreshes, which moto lacks, and keeps them for the
//!   data plane to carry out — see [`refresh`].
//!
//! Everything else passes through untouched, and so does any call this layer
//! cannot judge (moto could not be asked, or the call is of a kind not
//! modelled here, like a step-scaling policy): moto then answers as it would
//! without us. The data plane reaches the same rules through [`Faithful`]'s
//! methods, so an alarm it evaluates scales the group exactly as a request
//! through the gateway would.
//!
//! The record (activities, alarm history, cooldowns, each group's last known
//! instances, and when the gateway first saw each slow resource) lives in
//! memory and, once [`Faithful::persist_to`] names a file, on disk as well,
//! written after every change: a sandbox restarted in front of the same
//! moto state still lists the activities and the history, keeps a cooldown
//! running and does not make a load balancer `provisioning` again — see
//! [`record`].

mod alarms;
mod dependencies;
mod record;
mod refresh;
mod scaling;
pub mod strict;
mod wire;

use std::sync::{Arc, Mutex, MutexGuard};

use axum::response::Response;
use tokio::sync::OwnedMutexGuard;

pub use alarms::{AlarmHistoryItem, HistoryItemType};
pub use record::UnsafeRecord;
pub use refresh::{GroupNow, InstanceRefresh, Preferences, RefreshMove, RefreshStatus};
pub use scaling::{Cause, LaunchFailure, ScalingActivity, ScalingOutcome, Trigger};

use wire::{Params, Service};

/// Query requests are a few kilobytes; a larger body is an upload (S3)
/// and not worth decoding as a form.
const QUERY_BODY_LIMIT: usize = 1024 * 1024;

/// Why the faithful layer did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum FaithfulError {
    /// AWS would refuse this: its error code and message.
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
    /// moto could not be asked what the rule needs to know.
    #[error("cannot ask moto: {0}")]
    Moto(String),
    /// Not something modelled here (an unknown policy, a step-scaling one…).
    #[error("not modelled by the sandbox gateway: {0}")]
    Unmodelled(String),
}

impl FaithfulError {
    fn refused(code: &str, message: impl Into<String>) -> FaithfulError {
        FaithfulError::Refused {
            code: code.to_string(),
            message: message.into(),
        }
    }

    fn moto(error: impl std::fmt::Display) -> FaithfulError {
        FaithfulError::Moto(error.to_string())
    }
}

/// A handle on the rules and records; clones share them.
#[derive(Clone, Debug)]
pub struct Faithful {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ec2: aws_sdk_ec2::Client,
    asg: aws_sdk_autoscaling::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    /// Held from before a group-changing call is forwarded until its effect
    /// has been recorded, so two changes never see each other's instances
    /// as their own and a cooldown check cannot race the change it guards.
    scaling: Arc<tokio::sync::Mutex<()>>,
    /// The same for an alarm's state: read, change, record as one.
    alarm_changes: Arc<tokio::sync::Mutex<()>>,
    groups: Mutex<scaling::Groups>,
    history: Mutex<alarms::History>,
    refreshes: Mutex<refresh::Refreshes>,
    /// When the gateway first saw each slow resource (a load balancer…).
    sightings: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Where the record is kept, once [`Faithful::persist_to`] said.
    record: Mutex<Option<record::RecordFile>>,
    /// Multiplies cooldowns, as the data plane's time scale does its
    /// intervals; an `f64`'s bits.
    time_scale: std::sync::atomic::AtomicU64,
}

/// What the gateway does with a request after [`Faithful::before`].
pub(crate) enum Verdict {
    /// Forward it, and hand a successful answer's [`After`] back to
    /// [`Faithful::after`].
    Forward { after: Option<After> },
    /// Answer with this instead of asking moto.
    Answer(Response),
}

impl Verdict {
    fn pass() -> Verdict {
        Verdict::Forward { after: None }
    }
}

/// What to record once moto has accepted a forwarded call. Holds the lock
/// of the change it belongs to, so dropping it (moto refused, or did not
/// answer) releases the lock without recording anything.
pub(crate) struct After {
    step: AfterStep,
    _held: OwnedMutexGuard<()>,
}

enum AfterStep {
    Scaling(scaling::Pending),
    Alarm(alarms::Pending),
}

impl Faithful {
    /// Rules in front of the moto at `moto_endpoint`, asked directly (never
    /// through the gateway, whose faults and delays are for the portal).
    pub fn new(moto_endpoint: &str) -> Faithful {
        let config = crate::moto::sdk_config(moto_endpoint);
        Faithful {
            inner: Arc::new(Inner {
                ec2: aws_sdk_ec2::Client::new(&config),
                asg: aws_sdk_autoscaling::Client::new(&config),
                elb: aws_sdk_elasticloadbalancingv2::Client::new(&config),
                cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
                scaling: Arc::new(tokio::sync::Mutex::new(())),
                alarm_changes: Arc::new(tokio::sync::Mutex::new(())),
                groups: Mutex::new(scaling::Groups::default()),
                history: Mutex::new(alarms::History::default()),
                refreshes: Mutex::new(refresh::Refreshes::default()),
                sightings: Mutex::new(std::collections::HashMap::new()),
                record: Mutex::new(None),
                time_scale: std::sync::atomic::AtomicU64::new(1.0f64.to_bits()),
            }),
        }
    }

    /// Keeps the record in `path` from now on: reads what a previous run
    /// left there (its activities, history, cooldowns and first sightings
    /// replace what is in memory) and writes it after every change. The
    /// folder must be this user's own, open to nobody else (it is made so
    /// if missing), and a record there a plain file of this user's that
    /// nobody else may open; anything else is refused.
    pub fn persist_to(&self, path: &std::path::Path) -> Result<(), UnsafeRecord> {
        let file = record::RecordFile::new(path);
        let saved: record::Saved = file.load(record::VERSION)?.unwrap_or_default();
        let (now, wall) = (std::time::Instant::now(), chrono::Utc::now());
        self.groups().import(&saved, now, wall);
        self.refreshes().all = saved.refreshes.clone();
        self.history().restore(saved.history);
        *lock(&self.inner.sightings) = saved
            .first_seen
            .iter()
            .map(|(id, at)| (id.clone(), record::from_wall(*at, now, wall)))
            .collect();
        *lock(&self.inner.record) = Some(file);
        self.save();
        Ok(())
    }

    /// Writes the record, if it is kept on disk. A failure is logged, never
    /// passed on: the portal's calls must not fail for the sandbox's books.
    fn save(&self) {
        let record = lock(&self.inner.record);
        let Some(file) = record.as_ref() else {
            return;
        };
        let (now, wall) = (std::time::Instant::now(), chrono::Utc::now());
        let mut saved = record::Saved {
            version: record::VERSION,
            ..record::Saved::default()
        };
        self.groups().export(&mut saved, now, wall);
        saved.history = self.history().items().to_vec();
        saved.refreshes = self.refreshes().all.clone();
        saved.first_seen = lock(&self.inner.sightings)
            .iter()
            .map(|(id, at)| (id.clone(), record::to_wall(*at, now, wall)))
            .collect();
        if let Err(error) = file.store(&saved) {
            tracing::warn!(%error, "cannot write the gateway's record");
        }
    }

    /// When the gateway first saw `id` (now, if this is the first time):
    /// the start of its slow state, kept across restarts.
    pub fn first_seen(&self, id: &str) -> std::time::Instant {
        let (born, new) = {
            let mut seen = lock(&self.inner.sightings);
            match seen.get(id) {
                Some(born) => (*born, false),
                None => {
                    let now = std::time::Instant::now();
                    seen.insert(id.to_string(), now);
                    (now, true)
                }
            }
        };
        if new {
            self.save();
        }
        born
    }

    /// Shortens (or lengthens) every cooldown from now on by `scale`, the
    /// sandbox's time scale; non-positive or non-finite values are ignored.
    pub fn set_time_scale(&self, scale: f64) {
        if scale.is_finite() && scale > 0.0 {
            self.inner
                .time_scale
                .store(scale.to_bits(), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// A cooldown of `seconds` as this sandbox's clock runs it.
    fn cooldown(&self, seconds: i32) -> std::time::Duration {
        let scale = f64::from_bits(
            self.inner
                .time_scale
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        std::time::Duration::from_secs(u64::try_from(seconds).unwrap_or(0)).mul_f64(scale)
    }

    /// Looks at a request before it is forwarded: refuses it, answers it,
    /// or lets it through with something to record afterwards.
    pub(crate) async fn before(&self, body: &[u8]) -> Verdict {
        if body.len() > QUERY_BODY_LIMIT {
            return Verdict::pass();
        }
        let params = Params::parse(body);
        let Some((service, action)) = params.call() else {
            return Verdict::pass();
        };
        let judged = match service {
            Service::Ec2 => match action {
                "TerminateInstances" => self.before_terminate_instances(&params).await,
                _ => self
                    .check_dependencies(action, &params)
                    .await
                    .map(|()| Verdict::pass()),
            },
            Service::AutoScaling => self.before_autoscaling(action, &params).await,
            Service::CloudWatch => self.before_cloudwatch(action, &params).await,
        };
        match judged {
            Ok(verdict) => verdict,
            Err(FaithfulError::Refused { code, message }) => {
                tracing::debug!(action, %code, %message, "refused as AWS would");
                Verdict::Answer(wire::error(service, &code, &message))
            }
            Err(error @ FaithfulError::Unmodelled(_)) => {
                tracing::debug!(action, %error, "left to moto");
                Verdict::pass()
            }
            Err(error) => {
                // Our own trouble must never block the portal: moto decides.
                tracing::warn!(action, %error, "passing the call to moto unjudged");
                Verdict::pass()
            }
        }
    }

    /// Records what a forwarded call that moto accepted has changed.
    pub(crate) async fn after(&self, after: After) {
        let recorded = match &after.step {
            AfterStep::Scaling(pending) => self.after_scaling(pending).await,
            AfterStep::Alarm(pending) => self.after_alarm(pending).await,
        };
        if let Err(error) = recorded {
            tracing::warn!(%error, "could not record the effect of a call");
        }
        self.save();
    }

    fn groups(&self) -> MutexGuard<'_, scaling::Groups> {
        // A poisoned lock only means a panic mid-update of plain data.
        self.inner.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refreshes(&self) -> MutexGuard<'_, refresh::Refreshes> {
        lock(&self.inner.refreshes)
    }

    fn history(&self) -> MutexGuard<'_, alarms::History> {
        self.inner.history.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic mid-update of plain data.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
