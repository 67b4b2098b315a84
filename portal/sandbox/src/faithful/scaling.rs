//! Auto Scaling's limits and history, which moto does not keep.
//!
//! moto sets any desired capacity it is given (7 in a group whose maximum is
//! 4), accepts a minimum above the maximum, ignores cooldowns and never
//! records a scaling activity. Here:
//! - a capacity outside the group's bounds is refused with AWS's
//!   `ValidationError` wording, and an update that moves a bound past the
//!   current desired capacity moves it along, as AWS does;
//! - a simple-scaling policy is executed here, not by moto: its adjustment
//!   is computed the AWS way (percentages rounded towards zero but at least
//!   one, `MinAdjustmentMagnitude`), clamped to the bounds, and set on moto
//!   as a plain desired capacity;
//! - each change that scales a group starts its cooldown (the policy's own,
//!   else the group's default), and a request that asks to honour it is
//!   refused with `ScalingActivityInProgress` until it ends;
//! - every instance launched or terminated becomes a `Successful` activity
//!   with AWS's description and cause. They are found by comparing the
//!   group's instances (moto launches and terminates synchronously) before
//!   and after each change that passes here, under one lock so that two
//!   changes never claim each other's instances.
//!
//! A change made straight to moto, bypassing the gateway, is seen only at
//! the next change that passes here and then carries that change's cause;
//! the data plane therefore makes its own changes through
//! [`Faithful::record_change`] or reports them with [`Faithful::note_change`].

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use chrono::{DateTime, SecondsFormat, Utc};

use super::wire::{self, Params, Service};
use super::{After, AfterStep, Faithful, FaithfulError, Verdict};

/// One launch or termination, as `DescribeScalingActivities` lists it.
/// `Successful` at 100 % (moto's changes are instant), or `Failed` with
/// AWS's StatusMessage for a launch the sandbox was told to refuse.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScalingActivity {
    pub activity_id: String,
    pub group: String,
    pub group_arn: Option<String>,
    /// `Launching a new EC2 instance: i-…` or `Terminating EC2 instance: i-…`.
    pub description: String,
    /// AWS's account of why, starting `At <time> …`.
    pub cause: String,
    /// JSON, as AWS gives it: where the instance was.
    pub details: String,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    /// The group has been deleted since; AWS then lists the activity only
    /// to callers that ask for deleted groups.
    pub group_deleted: bool,
    /// AWS's StatusMessage of a `Failed` activity; `None` for a successful one.
    #[serde(default)]
    pub failure: Option<String>,
}

/// A launch EC2 refuses, as the sandbox can be told to make it fail (see
/// [`Faithful::fail_launch`]), with the StatusMessage AWS gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LaunchFailure {
    /// `InsufficientInstanceCapacity`: the zone has none of the type now.
    InsufficientCapacity,
    /// `VcpuLimitExceeded`: the account's On-Demand vCPU quota is used up.
    VcpuLimit,
    /// The encrypted root volume's KMS key has no grant for Auto Scaling:
    /// the instance starts and is terminated at once.
    KmsGrant,
}

impl LaunchFailure {
    /// `insufficient-capacity`, `vcpu-limit` or `kms-grant`.
    pub fn parse(text: &str) -> Option<LaunchFailure> {
        match text {
            "insufficient-capacity" => Some(LaunchFailure::InsufficientCapacity),
            "vcpu-limit" => Some(LaunchFailure::VcpuLimit),
            "kms-grant" => Some(LaunchFailure::KmsGrant),
            _ => None,
        }
    }

    /// AWS's StatusMessage for the failed launch of `instance_type` in `zone`.
    pub fn status_message(self, instance_type: &str, zone: &str) -> String {
        match self {
            LaunchFailure::InsufficientCapacity => format!(
                "We currently do not have sufficient {instance_type} capacity in the \
                 Availability Zone you requested ({zone}). Our system will be working on \
                 provisioning additional capacity. You can currently get {instance_type} \
                 capacity by not specifying an Availability Zone in your request or choosing \
                 a different Availability Zone. Launching EC2 instance failed."
            ),
            LaunchFailure::VcpuLimit => "You have requested more vCPU capacity than your \
                 current vCPU limit of 32 allows for the instance bucket that the specified \
                 instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request \
                 to request an adjustment to this limit. Launching EC2 instance failed."
                .to_string(),
            LaunchFailure::KmsGrant => "Instance became unhealthy while waiting for instance \
                 to be in InService state. Termination Reason: Client.InternalError: Client \
                 error on launch"
                .to_string(),
        }
    }

    /// Whether EC2 gets as far as an instance id (which AWS then names in
    /// the activity's description).
    fn had_instance(self) -> bool {
        self == LaunchFailure::KmsGrant
    }
}

/// Why a group's instances changed, in the words AWS uses for the cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Someone changed the desired capacity; the sentence says who and how,
    /// e.g. `a user request explicitly set group desired capacity changing
    /// the desired capacity from 2 to 3.` Instances then follow "in response
    /// to a difference between desired and actual capacity".
    CapacityChange(String),
    /// Instances were taken out of service for a reason of their own, e.g.
    /// `an ELB system health check failure`; their replacements follow the
    /// capacity difference.
    OutOfService(String),
    /// A user terminated an instance through Auto Scaling, lowering the
    /// desired capacity with it or not.
    UserTermination { decrement: bool },
    /// An instance refresh replaces instances (see [`super::refresh`]).
    InstanceRefresh,
}

impl Cause {
    fn termination(&self, instance: &str, from: usize, to: usize, at: &str) -> String {
        match self {
            Cause::CapacityChange(why) => format!(
                "At {at} {why}  At {at} an instance was taken out of service in response to a \
                 difference between desired and actual capacity, shrinking the capacity from \
                 {from} to {to}."
            ),
            Cause::OutOfService(reason) => {
                format!("At {at} an instance was taken out of service in response to {reason}.")
            }
            Cause::UserTermination { decrement: true } => format!(
                "At {at} instance {instance} was taken out of service in response to a user \
                 request, shrinking the capacity from {from} to {to}."
            ),
            Cause::UserTermination { decrement: false } => format!(
                "At {at} instance {instance} was taken out of service in response to a user \
                 request."
            ),
            Cause::InstanceRefresh => format!(
                "At {at} an instance was taken out of service in response to an instance \
                 refresh.  At {at} instance {instance} was selected for termination."
            ),
        }
    }

    fn launch(&self, from: usize, to: usize, at: &str) -> String {
        let started = format!(
            "At {at} an instance was started in response to a difference between desired and \
             actual capacity, increasing the capacity from {from} to {to}."
        );
        match self {
            Cause::CapacityChange(why) => format!("At {at} {why}  {started}"),
            Cause::InstanceRefresh => format!(
                "At {at} an instance was launched to aid in instance refresh, increasing the \
                 capacity from {from} to {to}."
            ),
            _ => started,
        }
    }
}

/// Who executes a policy, for the activity's cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// An `ExecutePolicy` request.
    User,
    /// The alarm of this name, in state ALARM.
    Alarm(String),
}

/// What executing a policy did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalingOutcome {
    pub group: String,
    pub policy: String,
    /// The desired capacity before and after; equal when the group was
    /// already at the bound the policy pushes against.
    pub from: i32,
    pub to: i32,
    pub activities: Vec<ScalingActivity>,
}

/// A group as moto describes it.
#[derive(Clone, Debug)]
struct GroupView {
    arn: Option<String>,
    min: i32,
    max: i32,
    desired: i32,
    default_cooldown: i32,
    /// Instance id → availability zone, of those not on their way out: an
    /// instance that goes `Terminating` has left the group's capacity, and
    /// its termination is recorded then.
    instances: BTreeMap<String, String>,
    /// Instances `Terminating`, still in the group while they drain.
    leaving: usize,
}

#[derive(Debug)]
struct Known {
    arn: Option<String>,
    instances: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Cooldown {
    until: Instant,
    activity: String,
}

/// Each group's last known instances and cooldown, and every activity.
#[derive(Debug, Default)]
pub(super) struct Groups {
    known: HashMap<String, Known>,
    cooldowns: HashMap<String, Cooldown>,
    /// Oldest first.
    activities: Vec<ScalingActivity>,
}

impl Groups {
    /// Remembers a group's instances as the starting point, unless known.
    fn baseline(&mut self, group: &str, view: &GroupView) {
        self.known
            .entry(group.to_string())
            .or_insert_with(|| Known {
                arn: view.arn.clone(),
                instances: view.instances.clone(),
            });
    }

    /// Records an activity for each instance that left or joined `group`
    /// since it was last seen; `view` is `None` once the group is gone.
    fn observe(
        &mut self,
        group: &str,
        view: Option<&GroupView>,
        cause: &Cause,
        now: DateTime<Utc>,
    ) -> Vec<ScalingActivity> {
        let Some(before) = self.known.remove(group) else {
            if let Some(view) = view {
                self.baseline(group, view);
            }
            return Vec::new();
        };
        let after = view.map(|v| v.instances.clone()).unwrap_or_default();
        let removed: Vec<(&String, &String)> = before
            .instances
            .iter()
            .filter(|(id, _)| !after.contains_key(*id))
            .collect();
        let added: Vec<(&String, &String)> = after
            .iter()
            .filter(|(id, _)| !before.instances.contains_key(*id))
            .collect();
        let at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
        let start = before.instances.len();
        let shrunk = start - removed.len();
        let grown = shrunk + added.len();
        let arn = view.and_then(|v| v.arn.clone()).or(before.arn.clone());
        let activity = |description: String, cause: String, zone: &str| ScalingActivity {
            activity_id: uuid::Uuid::new_v4().to_string(),
            group: group.to_string(),
            group_arn: arn.clone(),
            description,
            cause,
            details: serde_json::json!({ "Availability Zone": zone }).to_string(),
            start_time: now,
            end_time: now,
            group_deleted: false,
            failure: None,
        };
        let mut recorded: Vec<ScalingActivity> = removed
            .iter()
            .map(|(id, zone)| {
                activity(
                    format!("Terminating EC2 instance: {id}"),
                    cause.termination(id, start, shrunk, &at),
                    zone,
                )
            })
            .collect();
        recorded.extend(added.iter().map(|(id, zone)| {
            activity(
                format!("Launching a new EC2 instance: {id}"),
                cause.launch(shrunk, grown, &at),
                zone,
            )
        }));
        self.activities.extend(recorded.iter().cloned());
        match view {
            Some(_) => {
                self.known.insert(
                    group.to_string(),
                    Known {
                        arn,
                        instances: after,
                    },
                );
            }
            None => {
                self.cooldowns.remove(group);
                for a in self.activities.iter_mut().filter(|a| a.group == group) {
                    a.group_deleted = true;
                }
                for a in &mut recorded {
                    a.group_deleted = true;
                }
            }
        }
        recorded
    }

    /// Turns the launch of `instance` into a failed one: its activity (or a
    /// new one) becomes `Failed` with `message`, and the instance is
    /// forgotten without a termination of its own, as on AWS.
    fn fail_launch(
        &mut self,
        group: &str,
        instance: &str,
        failure: LaunchFailure,
        message: String,
        now: DateTime<Utc>,
    ) -> ScalingActivity {
        let zone = self
            .known
            .get_mut(group)
            .and_then(|known| known.instances.remove(instance))
            .unwrap_or_default();
        let description = if failure.had_instance() {
            format!("Launching a new EC2 instance: {instance}.  Status Reason: {message}")
        } else {
            format!("Launching a new EC2 instance.  Status Reason: {message}")
        };
        let launched = format!("Launching a new EC2 instance: {instance}");
        if let Some(activity) = self
            .activities
            .iter_mut()
            .rev()
            .find(|a| a.group == group && a.description == launched)
        {
            activity.description = description;
            activity.failure = Some(message);
            activity.end_time = now;
            return activity.clone();
        }
        let activity = ScalingActivity {
            activity_id: uuid::Uuid::new_v4().to_string(),
            group: group.to_string(),
            group_arn: self.known.get(group).and_then(|k| k.arn.clone()),
            description,
            cause: format!(
                "At {} an instance was started in response to a difference between desired \
                 and actual capacity.",
                now.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            details: serde_json::json!({ "Availability Zone": zone }).to_string(),
            start_time: now,
            end_time: now,
            group_deleted: false,
            failure: Some(message),
        };
        self.activities.push(activity.clone());
        activity
    }

    /// What to keep across a restart (see [`super::record`]).
    pub(super) fn export(
        &self,
        saved: &mut super::record::Saved,
        now: Instant,
        wall: DateTime<Utc>,
    ) {
        saved.activities = self.activities.clone();
        saved.known = self
            .known
            .iter()
            .map(|(group, k)| (group.clone(), (k.arn.clone(), k.instances.clone())))
            .collect();
        saved.cooldowns = self
            .cooldowns
            .iter()
            .filter(|(_, c)| c.until > now)
            .map(|(group, c)| {
                (
                    group.clone(),
                    (
                        super::record::to_wall(c.until, now, wall),
                        c.activity.clone(),
                    ),
                )
            })
            .collect();
    }

    /// Takes back what [`Groups::export`] kept.
    pub(super) fn import(
        &mut self,
        saved: &super::record::Saved,
        now: Instant,
        wall: DateTime<Utc>,
    ) {
        self.activities = saved.activities.clone();
        self.known = saved
            .known
            .iter()
            .map(|(group, (arn, instances))| {
                (
                    group.clone(),
                    Known {
                        arn: arn.clone(),
                        instances: instances.clone(),
                    },
                )
            })
            .collect();
        self.cooldowns = saved
            .cooldowns
            .iter()
            .map(|(group, (until, activity))| {
                (
                    group.clone(),
                    Cooldown {
                        until: super::record::from_wall(*until, now, wall),
                        activity: activity.clone(),
                    },
                )
            })
            .collect();
    }

    /// The activity whose cooldown `group` is still in, if any.
    fn cooling(&self, group: &str, now: Instant) -> Option<&str> {
        self.cooldowns
            .get(group)
            .filter(|c| now < c.until)
            .map(|c| c.activity.as_str())
    }

    fn start_cooldown(&mut self, group: &str, length: Duration, activity: String, now: Instant) {
        self.cooldowns.insert(
            group.to_string(),
            Cooldown {
                until: now + length,
                activity,
            },
        );
    }

    /// Newest first, as AWS lists them.
    fn activities(
        &self,
        group: Option<&str>,
        ids: &[&str],
        include_deleted: bool,
    ) -> Vec<ScalingActivity> {
        self.activities
            .iter()
            .rev()
            .filter(|a| group.is_none_or(|g| a.group == g))
            .filter(|a| ids.is_empty() || ids.contains(&a.activity_id.as_str()))
            .filter(|a| include_deleted || !a.group_deleted)
            .cloned()
            .collect()
    }
}

/// The desired capacity a simple-scaling policy asks for, clamped to the
/// group's bounds; `None` for an adjustment type AWS does not have.
fn policy_capacity(
    desired: i32,
    bounds: (i32, i32),
    adjustment_type: &str,
    adjustment: i32,
    min_magnitude: Option<i32>,
) -> Option<i32> {
    let wanted = match adjustment_type {
        "ChangeInCapacity" => desired.saturating_add(adjustment),
        "ExactCapacity" => adjustment,
        "PercentChangeInCapacity" => {
            let exact = f64::from(desired) * f64::from(adjustment) / 100.0;
            // AWS: above 1 rounds down, below -1 rounds up, and anything
            // between -1 and 1 (but 0) becomes ±1.
            let mut change = if exact > 0.0 && exact < 1.0 {
                1
            } else if exact < 0.0 && exact > -1.0 {
                -1
            } else {
                exact.trunc() as i32
            };
            if let Some(magnitude) = min_magnitude.filter(|m| *m > 0) {
                if change != 0 && change.abs() < magnitude {
                    change = magnitude * change.signum();
                }
            }
            desired.saturating_add(change)
        }
        _ => return None,
    };
    let (min, max) = bounds;
    Some(wanted.clamp(min, max.max(min)))
}

/// AWS's refusal of bounds that contradict each other.
fn check_bounds(min: i32, max: i32, desired: Option<i32>) -> Result<(), FaithfulError> {
    if min > max {
        return Err(FaithfulError::refused(
            "ValidationError",
            format!("Max bound, {max}, must be greater than or equal to min bound, {min}"),
        ));
    }
    match desired {
        Some(d) if d < min || d > max => Err(FaithfulError::refused(
            "ValidationError",
            format!("Desired capacity:{d} must be between the specified min size:{min} and max size:{max}"),
        )),
        _ => Ok(()),
    }
}

fn in_progress(activity: &str) -> FaithfulError {
    FaithfulError::refused(
        "ScalingActivityInProgress",
        format!("Scaling activity {activity} is in progress and blocks this action"),
    )
}

/// What to record once moto has made a forwarded change.
pub(super) struct Pending {
    groups: Vec<String>,
    cause: Cause,
    /// The group was just created: it had no instances before.
    created: bool,
    /// Start the group's cooldown for this long (the change scaled it).
    cooldown: Option<Duration>,
}

impl Faithful {
    /// Executes a policy as Auto Scaling does: a simple-scaling policy's
    /// adjustment, clamped to the group's bounds, refused during the
    /// group's cooldown when `honor_cooldown`. `policy` is a name (then
    /// `group` is required, as in AWS) or an ARN. Other policy types are
    /// [`FaithfulError::Unmodelled`].
    pub async fn execute_policy(
        &self,
        group: Option<&str>,
        policy: &str,
        honor_cooldown: bool,
        trigger: Trigger,
    ) -> Result<ScalingOutcome, FaithfulError> {
        let _held = self.inner.scaling.lock().await;
        let found = self.find_policy(group, policy).await?;
        let policy_name = found.policy_name().unwrap_or(policy).to_string();
        let group = found
            .auto_scaling_group_name()
            .ok_or_else(|| FaithfulError::Unmodelled(format!("policy {policy} has no group")))?
            .to_string();
        if !matches!(found.policy_type(), None | Some("SimpleScaling")) {
            return Err(FaithfulError::Unmodelled(format!(
                "{} policy {policy_name}",
                found.policy_type().unwrap_or_default()
            )));
        }
        let view = self
            .describe_group(&group)
            .await?
            .ok_or_else(|| FaithfulError::Unmodelled(format!("no group {group}")))?;
        self.groups().baseline(&group, &view);
        if honor_cooldown {
            if let Some(activity) = self.groups().cooling(&group, Instant::now()) {
                return Err(in_progress(activity));
            }
        }
        let adjustment = found.scaling_adjustment().ok_or_else(|| {
            FaithfulError::Unmodelled(format!("policy {policy_name} has no adjustment"))
        })?;
        let adjustment_type = found.adjustment_type().unwrap_or("ChangeInCapacity");
        // Instances an instance refresh launched beyond the desired
        // capacity are not part of it on AWS: a policy moves the group's own.
        let surplus = self.refresh_surplus(&group);
        let desired = view.desired - surplus;
        let to = policy_capacity(
            desired,
            (view.min, view.max),
            adjustment_type,
            adjustment,
            found.min_adjustment_magnitude(),
        )
        .ok_or_else(|| FaithfulError::Unmodelled(format!("adjustment type {adjustment_type}")))?;
        let mut outcome = ScalingOutcome {
            group: group.clone(),
            policy: policy_name.clone(),
            from: desired,
            to,
            activities: Vec::new(),
        };
        if to == desired {
            return Ok(outcome);
        }
        self.inner
            .asg
            .set_desired_capacity()
            .auto_scaling_group_name(&group)
            .desired_capacity(to + surplus)
            .honor_cooldown(false)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(refusal) => FaithfulError::refused(
                    refusal.code().unwrap_or("InternalFailure"),
                    refusal.message().unwrap_or_default(),
                ),
                None => FaithfulError::moto(e),
            })?;
        let from = desired;
        let why = match &trigger {
            Trigger::User => format!(
                "a user request executed policy {policy_name} changing the desired capacity \
                 from {from} to {to}."
            ),
            Trigger::Alarm(alarm) => format!(
                "a monitor alarm {alarm} in state ALARM triggered policy {policy_name} changing \
                 the desired capacity from {from} to {to}."
            ),
        };
        let now = self.describe_group(&group).await?;
        let activities = self.groups().observe(
            &group,
            now.as_ref(),
            &Cause::CapacityChange(why),
            Utc::now(),
        );
        let length = self.cooldown(found.cooldown().unwrap_or(view.default_cooldown));
        self.start_cooldown(&group, length, &activities);
        outcome.activities = activities;
        self.save();
        Ok(outcome)
    }

    /// Records the launches and terminations in `group` since it was last
    /// seen, with `cause`. For a change already made straight to moto; a
    /// group never seen before only gets its starting point recorded, so
    /// prefer [`Faithful::record_change`], which looks before and after.
    pub async fn note_change(
        &self,
        group: &str,
        cause: Cause,
    ) -> Result<Vec<ScalingActivity>, FaithfulError> {
        let _held = self.inner.scaling.lock().await;
        let view = self.describe_group(group).await?;
        let activities = self
            .groups()
            .observe(group, view.as_ref(), &cause, Utc::now());
        self.save();
        Ok(activities)
    }

    /// Makes a change to `group` (e.g. terminating an unhealthy instance
    /// straight in moto) and records what it launched and terminated, with
    /// `cause`. No other change can interleave: `change` must therefore go
    /// straight to moto, not through the gateway, which would wait for the
    /// lock held here forever.
    pub async fn record_change<T>(
        &self,
        group: &str,
        cause: Cause,
        change: impl Future<Output = T>,
    ) -> Result<(T, Vec<ScalingActivity>), FaithfulError> {
        let _held = self.inner.scaling.lock().await;
        if let Some(view) = self.describe_group(group).await? {
            self.groups().baseline(group, &view);
        }
        let made = change.await;
        let view = self.describe_group(group).await?;
        let activities = self
            .groups()
            .observe(group, view.as_ref(), &cause, Utc::now());
        self.save();
        Ok((made, activities))
    }

    /// Makes the launch of `instance` in `group` fail as `failure` says:
    /// the instance is terminated straight in moto, its launch recorded as
    /// a `Failed` activity with AWS's StatusMessage, and the replacement
    /// moto launches at once recorded as the next attempt. For the data
    /// plane, which decides whether an instance boots.
    pub async fn fail_launch(
        &self,
        group: &str,
        instance: &str,
        failure: LaunchFailure,
    ) -> Result<ScalingActivity, FaithfulError> {
        let _held = self.inner.scaling.lock().await;
        if let Some(view) = self.describe_group(group).await? {
            self.groups().baseline(group, &view);
        }
        let described = self
            .inner
            .ec2
            .describe_instances()
            .instance_ids(instance)
            .send()
            .await
            .map_err(FaithfulError::moto)?;
        let found = described
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance));
        let instance_type = found
            .and_then(|i| i.instance_type())
            .map(|t| t.as_str().to_string())
            .unwrap_or_else(|| "t3.micro".into());
        let zone = found
            .and_then(|i| i.placement())
            .and_then(|p| p.availability_zone())
            .unwrap_or("us-east-1a")
            .to_string();
        let message = failure.status_message(&instance_type, &zone);
        let activity = self
            .groups()
            .fail_launch(group, instance, failure, message, Utc::now());
        self.inner
            .ec2
            .terminate_instances()
            .instance_ids(instance)
            .send()
            .await
            .map_err(FaithfulError::moto)?;
        let view = self.describe_group(group).await?;
        // Its replacement just follows the difference in capacity.
        let cause = Cause::OutOfService(String::new());
        self.groups()
            .observe(group, view.as_ref(), &cause, Utc::now());
        self.save();
        Ok(activity)
    }

    /// Every recorded activity (of `group`, if given), newest first,
    /// including those of deleted groups.
    pub fn scaling_activities(&self, group: Option<&str>) -> Vec<ScalingActivity> {
        self.groups().activities(group, &[], true)
    }

    pub(super) async fn before_autoscaling(
        &self,
        action: &str,
        params: &Params,
    ) -> Result<Verdict, FaithfulError> {
        match action {
            "CreateAutoScalingGroup" => self.before_create_group(params).await,
            "UpdateAutoScalingGroup" => self.before_update_group(params).await,
            "SetDesiredCapacity" => self.before_set_desired(params).await,
            "ExecutePolicy" => self.answer_execute_policy(params).await,
            "TerminateInstanceInAutoScalingGroup" => self.before_terminate_in_group(params).await,
            "DeleteAutoScalingGroup" => self.before_delete_group(params).await,
            "DescribeScalingActivities" => {
                Ok(Verdict::Answer(self.describe_scaling_activities(params)))
            }
            "StartInstanceRefresh" | "DescribeInstanceRefreshes" | "CancelInstanceRefresh" => {
                self.answer_instance_refresh(action, params).await
            }
            _ => Ok(Verdict::pass()),
        }
    }

    async fn before_create_group(&self, params: &Params) -> Result<Verdict, FaithfulError> {
        let Some(name) = params.get("AutoScalingGroupName") else {
            return Ok(Verdict::pass());
        };
        let (min, max) = (params.int("MinSize"), params.int("MaxSize"));
        let desired = params.int("DesiredCapacity");
        if let (Some(min), Some(max)) = (min, max) {
            check_bounds(min, max, desired)?;
        }
        let held = self.inner.scaling.clone().lock_owned().await;
        if self.describe_group(name).await?.is_some() {
            // moto refuses it as AWS does (AlreadyExists).
            return Ok(Verdict::pass());
        }
        let desired = desired.or(min).unwrap_or(0);
        let cause = Cause::CapacityChange(format!(
            "a user request created an AutoScalingGroup changing the desired capacity from 0 \
             to {desired}."
        ));
        Ok(self.forward_then(held, vec![name.to_string()], cause, true, None))
    }

    async fn before_update_group(&self, params: &Params) -> Result<Verdict, FaithfulError> {
        let Some(name) = params.get("AutoScalingGroupName") else {
            return Ok(Verdict::pass());
        };
        let held = self.inner.scaling.clone().lock_owned().await;
        let Some(view) = self.describe_group(name).await? else {
            return Ok(Verdict::pass());
        };
        let min = params.int("MinSize").unwrap_or(view.min);
        let max = params.int("MaxSize").unwrap_or(view.max);
        let asked = params.int("DesiredCapacity");
        check_bounds(min, max, asked)?;
        self.groups().baseline(name, &view);
        // AWS (and moto too): a new bound that excludes the desired
        // capacity moves it.
        let desired = asked.unwrap_or(view.desired.clamp(min, max));
        let cause = Cause::CapacityChange(format!(
            "a user request update of AutoScalingGroup constraints to min: {min}, max: {max}, \
             desired: {desired} changing the desired capacity from {} to {desired}.",
            view.desired
        ));
        Ok(self.forward_then(held, vec![name.to_string()], cause, false, None))
    }

    async fn before_set_desired(&self, params: &Params) -> Result<Verdict, FaithfulError> {
        let (Some(name), Some(desired)) = (
            params.get("AutoScalingGroupName"),
            params.int("DesiredCapacity"),
        ) else {
            return Ok(Verdict::pass());
        };
        let held = self.inner.scaling.clone().lock_owned().await;
        let Some(view) = self.describe_group(name).await? else {
            return Ok(Verdict::pass());
        };
        if desired > view.max {
            return Err(FaithfulError::refused(
                "ValidationError",
                format!(
                    "New SetDesiredCapacity value {desired} is above max value {}",
                    view.max
                ),
            ));
        }
        if desired < view.min {
            return Err(FaithfulError::refused(
                "ValidationError",
                format!(
                    "New SetDesiredCapacity value {desired} is below min value {}",
                    view.min
                ),
            ));
        }
        if params.flag("HonorCooldown") == Some(true) {
            if let Some(activity) = self.groups().cooling(name, Instant::now()) {
                return Err(in_progress(activity));
            }
        }
        self.groups().baseline(name, &view);
        let cause = Cause::CapacityChange(format!(
            "a user request explicitly set group desired capacity changing the desired \
             capacity from {} to {desired}.",
            view.desired
        ));
        let cooldown = (desired != view.desired).then(|| self.cooldown(view.default_cooldown));
        Ok(self.forward_then(held, vec![name.to_string()], cause, false, cooldown))
    }

    /// `ExecutePolicy` never reaches moto, which would overshoot the
    /// group's maximum; unless it is of a kind not modelled here.
    async fn answer_execute_policy(&self, params: &Params) -> Result<Verdict, FaithfulError> {
        let Some(policy) = params.get("PolicyName") else {
            return Ok(Verdict::pass());
        };
        let honor = params.flag("HonorCooldown").unwrap_or(false);
        self.execute_policy(
            params.get("AutoScalingGroupName"),
            policy,
            honor,
            Trigger::User,
        )
        .await?;
        Ok(Verdict::Answer(wire::success(
            Service::AutoScaling,
            "ExecutePolicy",
            None,
        )))
    }

    async fn before_terminate_in_group(&self, params: &Params) -> Result<Verdict, FaithfulError> {
        let Some(instance) = params.get("InstanceId") else {
            return Ok(Verdict::pass());
        };
        let decrement = params
            .flag("ShouldDecrementDesiredCapacity")
            .unwrap_or(false);
        self.before_instances_leave(&[instance], Cause::UserTermination { decrement })
            .await
    }

    /// EC2's `TerminateInstances` on a group's instance: Auto Scaling sees
    /// it fail its status check and replaces it.
    pub(super) async fn before_terminate_instances(
        &self,
        params: &Params,
    ) -> Result<Verdict, FaithfulError> {
        let ids = params.list("InstanceId");
        let cause = Cause::OutOfService("an EC2 instance status check failure".into());
        self.before_instances_leave(&ids, cause).await
    }

    async fn before_instances_leave(
        &self,
        ids: &[&str],
        cause: Cause,
    ) -> Result<Verdict, FaithfulError> {
        if ids.is_empty() {
            return Ok(Verdict::pass());
        }
        let held = self.inner.scaling.clone().lock_owned().await;
        let found = self
            .inner
            .asg
            .describe_auto_scaling_instances()
            .set_instance_ids(Some(ids.iter().map(|s| s.to_string()).collect()))
            .send()
            .await
            .map_err(FaithfulError::moto)?;
        let mut groups: Vec<String> = found
            .auto_scaling_instances()
            .iter()
            .filter_map(|i| i.auto_scaling_group_name())
            .map(str::to_string)
            .collect();
        groups.sort();
        groups.dedup();
        if groups.is_empty() {
            return Ok(Verdict::pass());
        }
        for group in &groups {
            if let Some(view) = self.describe_group(group).await? {
                self.groups().baseline(group, &view);
            }
        }
        Ok(self.forward_then(held, groups, cause, false, None))
    }

    async fn before_delete_group(&self, params: &Params) -> Result<Verdict, FaithfulError> {
        let Some(name) = params.get("AutoScalingGroupName") else {
            return Ok(Verdict::pass());
        };
        let held = self.inner.scaling.clone().lock_owned().await;
        let Some(view) = self.describe_group(name).await? else {
            return Ok(Verdict::pass());
        };
        if params.flag("ForceDelete") != Some(true)
            && (!view.instances.is_empty() || view.leaving > 0)
        {
            return Err(FaithfulError::refused(
                "ResourceInUse",
                "You cannot delete an AutoScalingGroup while there are instances or pending \
                 Spot instance request(s) still in the group.",
            ));
        }
        self.groups().baseline(name, &view);
        self.end_refreshes(name);
        let cause = Cause::CapacityChange(format!(
            "a user request force deleted the AutoScalingGroup changing the desired capacity \
             from {} to 0.",
            view.desired
        ));
        Ok(self.forward_then(held, vec![name.to_string()], cause, false, None))
    }

    fn forward_then(
        &self,
        held: tokio::sync::OwnedMutexGuard<()>,
        groups: Vec<String>,
        cause: Cause,
        created: bool,
        cooldown: Option<Duration>,
    ) -> Verdict {
        Verdict::Forward {
            after: Some(After {
                step: AfterStep::Scaling(Pending {
                    groups,
                    cause,
                    created,
                    cooldown,
                }),
                _held: held,
            }),
        }
    }

    pub(super) async fn after_scaling(&self, pending: &Pending) -> Result<(), FaithfulError> {
        for group in &pending.groups {
            if pending.created {
                self.groups().known.insert(
                    group.clone(),
                    Known {
                        arn: None,
                        instances: BTreeMap::new(),
                    },
                );
            }
            let view = self.describe_group(group).await?;
            let activities =
                self.groups()
                    .observe(group, view.as_ref(), &pending.cause, Utc::now());
            if let Some(length) = pending.cooldown {
                self.start_cooldown(group, length, &activities);
            }
        }
        Ok(())
    }

    /// Starts `group`'s cooldown, named after the first activity of the
    /// change that started it (the one a refusal then points to).
    fn start_cooldown(&self, group: &str, length: Duration, activities: &[ScalingActivity]) {
        let activity = activities
            .first()
            .map(|a| a.activity_id.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.groups()
            .start_cooldown(group, length, activity, Instant::now());
    }

    fn describe_scaling_activities(&self, params: &Params) -> axum::response::Response {
        let ids = params.list("ActivityIds");
        let all = self.groups().activities(
            params.get("AutoScalingGroupName"),
            &ids,
            params.flag("IncludeDeletedGroups").unwrap_or(false),
        );
        let max =
            usize::try_from(params.int("MaxRecords").unwrap_or(100).clamp(1, 100)).unwrap_or(100);
        let start = wire::token_start(params.get("NextToken")).min(all.len());
        let page = &all[start..(start + max).min(all.len())];
        let members: String = page.iter().map(activity_xml).collect();
        let mut result = format!("<Activities>{members}</Activities>");
        if let Some(token) = wire::next_token(start, page.len(), all.len()) {
            result.push_str(&wire::element("NextToken", &token));
        }
        wire::success(
            Service::AutoScaling,
            "DescribeScalingActivities",
            Some(&result),
        )
    }

    async fn find_policy(
        &self,
        group: Option<&str>,
        policy: &str,
    ) -> Result<aws_sdk_autoscaling::types::ScalingPolicy, FaithfulError> {
        let by_arn = policy.starts_with("arn:");
        if group.is_none() && !by_arn {
            return Err(FaithfulError::Unmodelled(format!(
                "policy {policy} named without its group"
            )));
        }
        let policies = self
            .inner
            .asg
            .describe_policies()
            .set_auto_scaling_group_name(group.map(str::to_string))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(FaithfulError::moto)?;
        policies
            .into_iter()
            .find(|p| {
                if by_arn {
                    p.policy_arn() == Some(policy)
                } else {
                    p.policy_name() == Some(policy) && p.auto_scaling_group_name() == group
                }
            })
            .ok_or_else(|| FaithfulError::Unmodelled(format!("no policy {policy}")))
    }

    async fn describe_group(&self, name: &str) -> Result<Option<GroupView>, FaithfulError> {
        let out = self
            .inner
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(FaithfulError::moto)?;
        Ok(out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(name))
            .map(|g| GroupView {
                arn: g.auto_scaling_group_arn().map(str::to_string),
                min: g.min_size().unwrap_or(0),
                max: g.max_size().unwrap_or(0),
                desired: g.desired_capacity().unwrap_or(0),
                default_cooldown: g.default_cooldown().unwrap_or(300),
                leaving: g.instances().iter().filter(|i| leaving(i)).count(),
                instances: g
                    .instances()
                    .iter()
                    .filter(|i| !leaving(i))
                    .filter_map(|i| {
                        Some((
                            i.instance_id()?.to_string(),
                            i.availability_zone().unwrap_or_default().to_string(),
                        ))
                    })
                    .collect(),
            }))
    }
}

/// Whether Auto Scaling is taking the instance out (`Terminating`,
/// `Terminating:Wait`, `Terminating:Proceed`) or has (`Terminated`).
fn leaving(instance: &aws_sdk_autoscaling::types::Instance) -> bool {
    instance
        .lifecycle_state()
        .is_some_and(|s| s.as_str().starts_with("Terminat"))
}

fn activity_xml(a: &ScalingActivity) -> String {
    let arn = a
        .group_arn
        .as_deref()
        .map(|arn| wire::element("AutoScalingGroupARN", arn))
        .unwrap_or_default();
    let status = match &a.failure {
        None => "<StatusCode>Successful</StatusCode>".to_string(),
        Some(message) => format!(
            "<StatusCode>Failed</StatusCode>{}",
            wire::element("StatusMessage", message)
        ),
    };
    format!(
        "<member>{}{}{arn}{}{}{}{}{status}<Progress>100</Progress>{}</member>",
        wire::element("ActivityId", &a.activity_id),
        wire::element("AutoScalingGroupName", &a.group),
        wire::element("Description", &a.description),
        wire::element("Cause", &a.cause),
        wire::element("StartTime", &wire::timestamp(a.start_time)),
        wire::element("EndTime", &wire::timestamp(a.end_time)),
        wire::element("Details", &a.details),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(instances: &[&str]) -> GroupView {
        GroupView {
            arn: Some("arn:group".into()),
            min: 1,
            max: 4,
            desired: instances.len() as i32,
            default_cooldown: 300,
            leaving: 0,
            instances: instances
                .iter()
                .map(|i| (i.to_string(), "us-east-1a".to_string()))
                .collect(),
        }
    }

    #[test]
    fn percentages_round_towards_zero_but_move_at_least_one() {
        let pct =
            |desired, adj| policy_capacity(desired, (0, 100), "PercentChangeInCapacity", adj, None);
        assert_eq!(pct(10, 25), Some(12), "2.5 rounds down");
        assert_eq!(pct(2, 10), Some(3), "0.2 becomes 1");
        assert_eq!(pct(2, -10), Some(1), "-0.2 becomes -1");
        assert_eq!(pct(30, -22), Some(24), "-6.6 rounds up to -6");
        assert_eq!(
            policy_capacity(10, (0, 100), "PercentChangeInCapacity", 10, Some(3)),
            Some(13),
            "MinAdjustmentMagnitude lifts 1 to 3"
        );
    }

    #[test]
    fn policies_are_clamped_to_the_bounds() {
        assert_eq!(
            policy_capacity(4, (1, 4), "ChangeInCapacity", 1, None),
            Some(4)
        );
        assert_eq!(
            policy_capacity(2, (1, 4), "ChangeInCapacity", -5, None),
            Some(1)
        );
        assert_eq!(
            policy_capacity(2, (1, 4), "ExactCapacity", 9, None),
            Some(4)
        );
        assert_eq!(
            policy_capacity(2, (1, 4), "ChangeInCapacity", 1, None),
            Some(3)
        );
        assert_eq!(policy_capacity(2, (1, 4), "Bogus", 1, None), None);
    }

    #[test]
    fn bounds_are_checked_with_aws_words() {
        let refusal = |r: Result<(), FaithfulError>| match r {
            Err(FaithfulError::Refused { code, message }) => format!("{code}: {message}"),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refusal(check_bounds(3, 1, None)),
            "ValidationError: Max bound, 1, must be greater than or equal to min bound, 3"
        );
        assert_eq!(
            refusal(check_bounds(1, 4, Some(5))),
            "ValidationError: Desired capacity:5 must be between the specified min size:1 and max size:4"
        );
        assert!(check_bounds(1, 4, Some(4)).is_ok());
    }

    #[test]
    fn a_replacement_is_a_termination_then_a_launch() {
        let mut groups = Groups::default();
        let now = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        groups.baseline("g", &view(&["i-1", "i-2"]));
        let cause = Cause::OutOfService("an EC2 instance status check failure".into());
        let recorded = groups.observe("g", Some(&view(&["i-2", "i-3"])), &cause, now);
        assert_eq!(recorded.len(), 2);
        assert_eq!(recorded[0].description, "Terminating EC2 instance: i-1");
        assert_eq!(
            recorded[0].cause,
            "At 2026-11-25T10:00:00Z an instance was taken out of service in response to an \
             EC2 instance status check failure."
        );
        assert_eq!(recorded[1].description, "Launching a new EC2 instance: i-3");
        assert_eq!(
            recorded[1].cause,
            "At 2026-11-25T10:00:00Z an instance was started in response to a difference \
             between desired and actual capacity, increasing the capacity from 1 to 2."
        );
        let listed = groups.activities(Some("g"), &[], false);
        assert_eq!(listed[0], recorded[1], "newest first");
        assert!(groups
            .observe("g", Some(&view(&["i-2", "i-3"])), &cause, now)
            .is_empty());
    }

    #[test]
    fn a_deleted_groups_activities_are_listed_only_on_request() {
        let mut groups = Groups::default();
        let now = Utc::now();
        groups.baseline("g", &view(&["i-1"]));
        let cause = Cause::CapacityChange("a user request force deleted the group.".into());
        let recorded = groups.observe("g", None, &cause, now);
        assert_eq!(recorded.len(), 1);
        assert!(recorded[0].group_deleted);
        assert!(groups.activities(Some("g"), &[], false).is_empty());
        assert_eq!(groups.activities(Some("g"), &[], true).len(), 1);
    }

    #[test]
    fn an_unknown_group_only_gets_its_starting_point() {
        let mut groups = Groups::default();
        let cause = Cause::OutOfService("x".into());
        assert!(groups
            .observe("g", Some(&view(&["i-1"])), &cause, Utc::now())
            .is_empty());
        let recorded = groups.observe("g", Some(&view(&[])), &cause, Utc::now());
        assert_eq!(recorded.len(), 1);
    }

    #[test]
    fn cooldowns_end() {
        let mut groups = Groups::default();
        let now = Instant::now();
        groups.start_cooldown("g", Duration::from_secs(60), "act-1".into(), now);
        assert_eq!(groups.cooling("g", now), Some("act-1"));
        assert_eq!(groups.cooling("g", now + Duration::from_secs(61)), None);
        assert_eq!(groups.cooling("other", now), None);
    }
}
