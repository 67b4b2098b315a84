//! Instance refresh, which moto does not have (`StartInstanceRefresh` is an
//! HTTP 500 there).
//!
//! The gateway answers `StartInstanceRefresh`, `DescribeInstanceRefreshes`
//! and `CancelInstanceRefresh` itself, with AWS's validation, wording and
//! XML, and keeps every refresh in the record (a sandbox restarted in the
//! middle of one goes on with it). The data plane, which knows each
//! target's health, moves a refresh on at every reconcile round
//! ([`Faithful::advance_refresh`]), as Auto Scaling does on AWS:
//! - at the start, the instances to replace are the group's instances in
//!   service, less (with `SkipMatching`) those already on the launch
//!   template version the group launches from (same instance type and
//!   image);
//! - with `MaxHealthyPercentage` above 100 a batch launches first: the
//!   batch of `desired × (max − 100) %` instances (at least one, past the
//!   group's maximum if need be) is launched beyond the desired capacity,
//!   and once every new instance has been healthy in all of the group's
//!   target groups for the warm-up, as many old instances are terminated,
//!   so healthy capacity never drops below 100 %. moto can only launch by
//!   raising its desired capacity, so it counts the batch there, but a
//!   scaling policy moves the group's own capacity, as on AWS
//!   ([`Faithful::refresh_surplus`]): an idle group's scale-in alarm at the
//!   minimum does not take the batch's instances away;
//! - otherwise a batch terminates first: `desired × (100 − min) %` old
//!   instances (at least one) are taken out without lowering the desired
//!   capacity, and the next batch waits until their replacements are
//!   healthy and warm;
//! - a cancel lets the batch in flight finish, then ends `Cancelled`; the
//!   instances already replaced stay replaced.
//!
//! `PercentageComplete` counts replaced instances; an old instance that
//! leaves the group by itself (scale-in, a failed health check) counts as
//! replaced.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::wire::{self, Params, Service};
use super::{Faithful, FaithfulError, Verdict};

/// Where a refresh is, in AWS's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefreshStatus {
    Pending,
    InProgress,
    Cancelling,
    Cancelled,
    Successful,
    Failed,
}

impl RefreshStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshStatus::Pending => "Pending",
            RefreshStatus::InProgress => "InProgress",
            RefreshStatus::Cancelling => "Cancelling",
            RefreshStatus::Cancelled => "Cancelled",
            RefreshStatus::Successful => "Successful",
            RefreshStatus::Failed => "Failed",
        }
    }

    /// Not over yet: another refresh of the group is refused meanwhile.
    pub fn active(self) -> bool {
        matches!(
            self,
            RefreshStatus::Pending | RefreshStatus::InProgress | RefreshStatus::Cancelling
        )
    }
}

/// The preferences a refresh was started with, AWS's defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    pub min_healthy: i32,
    /// 100 when not given: no instance beyond the desired capacity.
    pub max_healthy: i32,
    /// Seconds (at AWS's pace) a new instance must be healthy before it
    /// counts.
    pub warmup: i32,
    pub skip_matching: bool,
}

/// One batch of replacements under way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The group's instances in service when the batch began (less those it
    /// took out): anything else in service is new.
    pub before: Vec<String>,
    /// How many new instances it waits for.
    pub size: usize,
    /// moto's desired capacity with a launch-first batch's instances: a
    /// launch that did not take (moto did not answer) is made again.
    #[serde(default)]
    pub launched_to: i32,
    /// Each new instance's first moment seen healthy.
    pub healthy_since: BTreeMap<String, DateTime<Utc>>,
}

/// One instance refresh, as the record keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRefresh {
    pub id: String,
    pub group: String,
    pub status: RefreshStatus,
    pub status_reason: Option<String>,
    pub start_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    pub preferences: Preferences,
    /// Old instances not yet replaced.
    pub to_replace: Vec<String>,
    /// How many there were at the start.
    pub total: usize,
    /// Old instances it terminated that are still in the group, draining:
    /// the refresh ends once they are gone.
    #[serde(default)]
    pub taken_out: Vec<String>,
    pub batch: Option<Batch>,
}

/// A group as the data plane sees it at one round.
pub struct GroupNow<'a> {
    /// In service (not booting in Auto Scaling's eyes, not leaving).
    pub in_service: &'a [String],
    /// Every instance in the group, those leaving included.
    pub members: &'a [String],
    /// Healthy in every one of the group's target groups.
    pub healthy: &'a HashSet<String>,
    pub desired: i32,
    /// Each instance's availability zone.
    pub zones: &'a HashMap<String, String>,
}

/// What a refresh asks of the group next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshMove {
    /// Set the desired capacity to this (a launch-first batch).
    Launch { desired: i32 },
    /// Terminate these through Auto Scaling, lowering the desired capacity
    /// with them or not.
    Terminate {
        instances: Vec<String>,
        decrement: bool,
    },
    /// End a launch-first batch some of whose old instances left by
    /// themselves: terminate the rest, lowering the desired capacity, then
    /// set it to `desired`, giving back the surplus they no longer need.
    TerminateAndSet {
        instances: Vec<String>,
        desired: i32,
    },
}

impl InstanceRefresh {
    /// Whole percent of the instances to replace that are replaced.
    pub fn percentage_complete(&self) -> usize {
        if self.total == 0 {
            return 100;
        }
        (self.total - self.to_replace.len().min(self.total)) * 100 / self.total
    }

    fn launches_first(&self) -> bool {
        self.preferences.max_healthy > 100
    }

    /// How many instances one batch replaces at `desired`.
    pub fn batch_size(&self, desired: i32) -> usize {
        let p = &self.preferences;
        let room = if self.launches_first() {
            p.max_healthy - 100
        } else {
            100 - p.min_healthy
        };
        let n = i64::from(desired.max(0)) * i64::from(room.max(0)) / 100;
        usize::try_from(n).unwrap_or(0).max(1)
    }

    /// Moves the refresh on by what the group looks like `now`, at `at`,
    /// with `warmup` being the preference as this sandbox's clock runs it.
    pub fn advance(
        &mut self,
        now: &GroupNow<'_>,
        at: DateTime<Utc>,
        warmup: chrono::Duration,
    ) -> Option<RefreshMove> {
        if self.status == RefreshStatus::Pending {
            self.status = RefreshStatus::InProgress;
        }
        if !self.status.active() {
            return None;
        }
        // An old instance that left by itself needs no replacing.
        self.to_replace.retain(|id| now.in_service.contains(id));
        self.taken_out.retain(|id| now.members.contains(id));
        let Some(mut batch) = self.batch.take() else {
            if self.to_replace.is_empty() || self.status == RefreshStatus::Cancelling {
                if let Some(id) = self.taken_out.first() {
                    self.status_reason = Some(format!(
                        "Waiting for instances to terminate before finishing. For example: {id} \
                         is terminating."
                    ));
                    return None;
                }
                self.finish(at);
                return None;
            }
            let size = self.batch_size(now.desired).min(self.to_replace.len());
            if self.launches_first() {
                let launched_to = now.desired + i32::try_from(size).unwrap_or(1);
                self.batch = Some(Batch {
                    before: now.in_service.to_vec(),
                    size,
                    launched_to,
                    healthy_since: BTreeMap::new(),
                });
                return Some(RefreshMove::Launch {
                    desired: launched_to,
                });
            }
            let out: Vec<String> = self.to_replace.drain(..size).collect();
            self.taken_out.extend(out.iter().cloned());
            self.batch = Some(Batch {
                before: now
                    .in_service
                    .iter()
                    .filter(|id| !out.contains(id))
                    .cloned()
                    .collect(),
                size,
                launched_to: 0,
                healthy_since: BTreeMap::new(),
            });
            return Some(RefreshMove::Terminate {
                instances: out,
                decrement: false,
            });
        };
        let new: Vec<&String> = now
            .in_service
            .iter()
            .filter(|id| !batch.before.contains(id) && !self.to_replace.contains(id))
            .collect();
        if self.launches_first() && new.is_empty() && now.desired < batch.launched_to {
            let desired = batch.launched_to;
            self.batch = Some(batch);
            return Some(RefreshMove::Launch { desired });
        }
        batch
            .healthy_since
            .retain(|id, _| new.contains(&id) && now.healthy.contains(id));
        for id in new.iter().filter(|id| now.healthy.contains(id.as_str())) {
            batch.healthy_since.entry((*id).clone()).or_insert(at);
        }
        let warming = batch
            .healthy_since
            .iter()
            .find(|(_, since)| at - **since < warmup)
            .map(|(id, _)| id.clone());
        let ready = batch
            .healthy_since
            .values()
            .filter(|since| at - **since >= warmup)
            .count();
        if ready < batch.size {
            self.status_reason = warming.map(|id| {
                format!(
                    "Waiting for instances to warm up before continuing. For example: {id} is \
                     warming up."
                )
            });
            self.batch = Some(batch);
            return None;
        }
        self.status_reason = None;
        if !self.launches_first() {
            return None;
        }
        let out = self.take_from_fullest_zones(now, batch.size);
        self.taken_out.extend(out.iter().cloned());
        if out.len() < batch.size {
            let short = i32::try_from(batch.size - out.len()).unwrap_or(0);
            let taken = i32::try_from(out.len()).unwrap_or(0);
            return Some(RefreshMove::TerminateAndSet {
                instances: out,
                desired: now.desired - taken - short,
            });
        }
        Some(RefreshMove::Terminate {
            instances: out,
            decrement: true,
        })
    }

    /// `count` old instances to terminate, each from the zone with the most
    /// instances in service at that point, so that the new instances and
    /// the remaining old ones stay spread as Auto Scaling spreads them.
    fn take_from_fullest_zones(&mut self, now: &GroupNow<'_>, count: usize) -> Vec<String> {
        let mut per_zone: HashMap<&str, usize> = HashMap::new();
        for id in now.in_service {
            *per_zone
                .entry(now.zones.get(id).map_or("", String::as_str))
                .or_default() += 1;
        }
        let mut out = Vec::new();
        while out.len() < count && !self.to_replace.is_empty() {
            let zone_of = |id: &String| now.zones.get(id).map_or("", String::as_str);
            let fullest = (0..self.to_replace.len())
                .max_by_key(|&i| {
                    let zone = zone_of(&self.to_replace[i]);
                    // The first listed wins a tie (max_by_key keeps the last).
                    (per_zone.get(zone).copied().unwrap_or(0), usize::MAX - i)
                })
                .unwrap_or(0);
            let id = self.to_replace.remove(fullest);
            if let Some(n) = per_zone.get_mut(zone_of(&id)) {
                *n = n.saturating_sub(1);
            }
            out.push(id);
        }
        out
    }

    /// Asks the refresh to stop after the batch in flight.
    fn cancel(&mut self) {
        self.status = RefreshStatus::Cancelling;
        self.status_reason = None;
    }

    fn finish(&mut self, at: DateTime<Utc>) {
        self.status = if self.status == RefreshStatus::Cancelling {
            RefreshStatus::Cancelled
        } else {
            RefreshStatus::Successful
        };
        self.status_reason = None;
        self.end_time = Some(at);
    }

    fn xml(&self) -> String {
        let p = &self.preferences;
        let mut out = String::from("<member>");
        out.push_str(&wire::element("InstanceRefreshId", &self.id));
        out.push_str(&wire::element("AutoScalingGroupName", &self.group));
        out.push_str(&wire::element("Status", self.status.as_str()));
        if let Some(reason) = &self.status_reason {
            out.push_str(&wire::element("StatusReason", reason));
        }
        out.push_str(&wire::element(
            "StartTime",
            &wire::timestamp(self.start_time),
        ));
        if let Some(end) = self.end_time {
            out.push_str(&wire::element("EndTime", &wire::timestamp(end)));
        }
        out.push_str(&wire::element(
            "PercentageComplete",
            &self.percentage_complete().to_string(),
        ));
        out.push_str(&wire::element(
            "InstancesToUpdate",
            &self.to_replace.len().to_string(),
        ));
        out.push_str(&format!(
            "<Preferences>{}{}{}{}</Preferences>",
            wire::element("MinHealthyPercentage", &p.min_healthy.to_string()),
            wire::element("MaxHealthyPercentage", &p.max_healthy.to_string()),
            wire::element("InstanceWarmup", &p.warmup.to_string()),
            wire::element("SkipMatching", &p.skip_matching.to_string()),
        ));
        out.push_str("</member>");
        out
    }
}

/// Reads and checks a start's preferences as AWS does.
fn preferences(params: &Params, grace_period: i32) -> Result<Preferences, FaithfulError> {
    if let Some(strategy) = params.get("Strategy") {
        if strategy != "Rolling" {
            return Err(FaithfulError::refused(
                "ValidationError",
                format!(
                    "1 validation error detected: Value '{strategy}' at 'strategy' failed to \
                     satisfy constraint: Member must satisfy enum value set: [Rolling]"
                ),
            ));
        }
    }
    let min_healthy = params.int("Preferences.MinHealthyPercentage").unwrap_or(90);
    let max_healthy = params.int("Preferences.MaxHealthyPercentage");
    if !(0..=100).contains(&min_healthy) {
        return Err(FaithfulError::refused(
            "ValidationError",
            "MinHealthyPercentage must be between 0 and 100.",
        ));
    }
    if let Some(max) = max_healthy {
        if !(100..=200).contains(&max) {
            return Err(FaithfulError::refused(
                "ValidationError",
                "MaxHealthyPercentage must be between 100 and 200.",
            ));
        }
        if max - min_healthy > 100 {
            return Err(FaithfulError::refused(
                "ValidationError",
                "The difference between MaxHealthyPercentage and MinHealthyPercentage cannot \
                 be greater than 100.",
            ));
        }
    }
    if min_healthy == 100 && max_healthy.unwrap_or(100) == 100 {
        return Err(FaithfulError::refused(
            "ValidationError",
            "MinHealthyPercentage and MaxHealthyPercentage cannot both be 100: the refresh \
             could neither launch nor terminate an instance.",
        ));
    }
    Ok(Preferences {
        min_healthy,
        max_healthy: max_healthy.unwrap_or(100),
        warmup: params
            .int("Preferences.InstanceWarmup")
            .unwrap_or(grace_period)
            .max(0),
        skip_matching: params.flag("Preferences.SkipMatching").unwrap_or(false),
    })
}

/// Every refresh, oldest first.
#[derive(Debug, Default)]
pub(super) struct Refreshes {
    pub(super) all: Vec<InstanceRefresh>,
}

impl Refreshes {
    fn active_mut(&mut self, group: &str) -> Option<&mut InstanceRefresh> {
        self.all
            .iter_mut()
            .rev()
            .find(|r| r.group == group && r.status.active())
    }
}

impl Faithful {
    pub(super) async fn answer_instance_refresh(
        &self,
        action: &str,
        params: &Params,
    ) -> Result<Verdict, FaithfulError> {
        let group = params.get("AutoScalingGroupName").ok_or_else(|| {
            FaithfulError::refused(
                "ValidationError",
                "1 validation error detected: Value null at 'autoScalingGroupName' failed to \
                 satisfy constraint: Member must not be null",
            )
        })?;
        let result = match action {
            "StartInstanceRefresh" => self.start_refresh(group, params).await?,
            "CancelInstanceRefresh" => {
                let id = {
                    let mut refreshes = self.refreshes();
                    let refresh = refreshes.active_mut(group).ok_or_else(|| {
                        FaithfulError::refused(
                            "ActiveInstanceRefreshNotFound",
                            format!(
                                "No in progress or pending Instance Refresh found for Auto \
                                 Scaling group {group}"
                            ),
                        )
                    })?;
                    refresh.cancel();
                    refresh.id.clone()
                };
                self.save();
                wire::element("InstanceRefreshId", &id)
            }
            _ => {
                let ids = params.list("InstanceRefreshIds");
                let all: Vec<InstanceRefresh> = self
                    .refreshes()
                    .all
                    .iter()
                    .rev()
                    .filter(|r| r.group == group)
                    .filter(|r| ids.is_empty() || ids.contains(&r.id.as_str()))
                    .cloned()
                    .collect();
                let max = usize::try_from(params.int("MaxRecords").unwrap_or(50).clamp(1, 100))
                    .unwrap_or(50);
                let start = wire::token_start(params.get("NextToken")).min(all.len());
                let page = &all[start..(start + max).min(all.len())];
                let members: String = page.iter().map(InstanceRefresh::xml).collect();
                let mut result = format!("<InstanceRefreshes>{members}</InstanceRefreshes>");
                if let Some(token) = wire::next_token(start, page.len(), all.len()) {
                    result.push_str(&wire::element("NextToken", &token));
                }
                result
            }
        };
        Ok(Verdict::Answer(wire::success(
            Service::AutoScaling,
            action,
            Some(&result),
        )))
    }

    async fn start_refresh(&self, group: &str, params: &Params) -> Result<String, FaithfulError> {
        let described = self
            .inner
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .map_err(FaithfulError::moto)?;
        let Some(found) = described
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(group))
        else {
            return Err(FaithfulError::refused(
                "ValidationError",
                format!("AutoScalingGroup name not found - AutoScalingGroup '{group}' not found"),
            ));
        };
        let preferences = preferences(params, found.health_check_grace_period().unwrap_or(0))?;
        if self.refreshes().active_mut(group).is_some() {
            return Err(FaithfulError::refused(
                "InstanceRefreshInProgress",
                "An Instance Refresh is already in progress and blocks the execution of this \
                 Instance Refresh.",
            ));
        }
        let in_service: Vec<String> = found
            .instances()
            .iter()
            .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        let to_replace = if preferences.skip_matching {
            self.not_matching(found, &in_service).await?
        } else {
            in_service
        };
        let refresh = InstanceRefresh {
            id: uuid::Uuid::new_v4().to_string(),
            group: group.to_string(),
            status: RefreshStatus::Pending,
            status_reason: None,
            start_time: Utc::now(),
            end_time: None,
            preferences,
            total: to_replace.len(),
            to_replace,
            taken_out: Vec::new(),
            batch: None,
        };
        let id = refresh.id.clone();
        self.refreshes().all.push(refresh);
        self.save();
        Ok(wire::element("InstanceRefreshId", &id))
    }

    /// Those of `instances` not launched from the group's launch template
    /// version as it resolves now (another instance type or image).
    async fn not_matching(
        &self,
        group: &aws_sdk_autoscaling::types::AutoScalingGroup,
        instances: &[String],
    ) -> Result<Vec<String>, FaithfulError> {
        let Some(template) = group.launch_template() else {
            return Ok(instances.to_vec());
        };
        let versions = self
            .inner
            .ec2
            .describe_launch_template_versions()
            .set_launch_template_id(template.launch_template_id().map(str::to_string))
            .versions(template.version().unwrap_or("$Default"))
            .send()
            .await
            .map_err(FaithfulError::moto)?;
        let Some(data) = versions
            .launch_template_versions()
            .first()
            .and_then(|v| v.launch_template_data())
        else {
            return Ok(instances.to_vec());
        };
        let wanted = (
            data.instance_type().map(|t| t.as_str().to_string()),
            data.image_id().map(str::to_string),
        );
        if instances.is_empty() {
            return Ok(Vec::new());
        }
        let described = self
            .inner
            .ec2
            .describe_instances()
            .set_instance_ids(Some(instances.to_vec()))
            .send()
            .await
            .map_err(FaithfulError::moto)?;
        let matching: HashSet<String> = described
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| {
                (
                    i.instance_type().map(|t| t.as_str().to_string()),
                    i.image_id().map(str::to_string),
                ) == wanted
            })
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        Ok(instances
            .iter()
            .filter(|id| !matching.contains(*id))
            .cloned()
            .collect())
    }

    /// The group's refresh under way, moved on by what the group looks like
    /// now: what it asks the group to do next, if anything. For the data
    /// plane, at each round.
    pub fn advance_refresh(&self, group: &str, now: &GroupNow<'_>) -> Option<RefreshMove> {
        let (changed, next) = {
            let mut refreshes = self.refreshes();
            let refresh = refreshes.active_mut(group)?;
            let warmup = chrono::Duration::from_std(self.cooldown(refresh.preferences.warmup))
                .unwrap_or(chrono::Duration::MAX);
            let before = refresh.clone();
            let next = refresh.advance(now, Utc::now(), warmup);
            (before != *refresh, next)
        };
        if changed {
            self.save();
        }
        next
    }

    /// Whether `group` has a refresh under way: the data plane looks at the
    /// group's health for it only then.
    pub fn refreshing(&self, group: &str) -> bool {
        self.refreshes().active_mut(group).is_some()
    }

    /// How many instances the group's refresh runs beyond its desired
    /// capacity right now (a launch-first batch under way): moto counts
    /// them in the desired capacity, AWS does not.
    pub(super) fn refresh_surplus(&self, group: &str) -> i32 {
        self.refreshes()
            .all
            .iter()
            .rev()
            .find(|r| r.group == group && r.status.active() && r.launches_first())
            .and_then(|r| r.batch.as_ref())
            .map_or(0, |b| i32::try_from(b.size).unwrap_or(0))
    }

    /// Ends the refreshes of a group that is deleted.
    pub(super) fn end_refreshes(&self, group: &str) {
        let ended = {
            let mut refreshes = self.refreshes();
            let mut ended = false;
            while let Some(refresh) = refreshes.active_mut(group) {
                refresh.status = RefreshStatus::Cancelled;
                refresh.status_reason = Some("The Auto Scaling group was deleted.".into());
                refresh.end_time = Some(Utc::now());
                ended = true;
            }
            ended
        };
        if ended {
            self.save();
        }
    }

    /// Every refresh of `group`, newest first.
    pub fn instance_refreshes(&self, group: &str) -> Vec<InstanceRefresh> {
        self.refreshes()
            .all
            .iter()
            .rev()
            .filter(|r| r.group == group)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refresh(to_replace: &[&str], min: i32, max: i32) -> InstanceRefresh {
        InstanceRefresh {
            id: "r".into(),
            group: "g".into(),
            status: RefreshStatus::Pending,
            status_reason: None,
            start_time: Utc::now(),
            end_time: None,
            preferences: Preferences {
                min_healthy: min,
                max_healthy: max,
                warmup: 60,
                skip_matching: true,
            },
            to_replace: to_replace.iter().map(|s| s.to_string()).collect(),
            total: to_replace.len(),
            taken_out: Vec::new(),
            batch: None,
        }
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn set(list: &[&str]) -> HashSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn batches_follow_the_percentages_and_move_at_least_one() {
        assert_eq!(refresh(&[], 100, 150).batch_size(2), 1);
        assert_eq!(refresh(&[], 100, 150).batch_size(4), 2);
        assert_eq!(refresh(&[], 100, 110).batch_size(2), 1);
        assert_eq!(refresh(&[], 90, 100).batch_size(2), 1);
        assert_eq!(refresh(&[], 50, 100).batch_size(4), 2);
    }

    #[test]
    fn launch_first_keeps_healthy_capacity_and_waits_for_the_warm_up() {
        let mut r = refresh(&["a", "b"], 100, 150);
        let warmup = chrono::Duration::seconds(60);
        let t0 = Utc::now();
        let old = ids(&["a", "b"]);
        let healthy = set(&["a", "b"]);
        let zones = zones(&[("a", "1a"), ("b", "1b"), ("c", "1a"), ("d", "1b")]);
        let group = |in_service, healthy, desired| GroupNow {
            in_service,
            members: in_service,
            healthy,
            desired,
            zones: &zones,
        };
        assert_eq!(
            r.advance(&group(&old, &healthy, 2), t0, warmup),
            Some(RefreshMove::Launch { desired: 3 })
        );
        assert_eq!(r.status, RefreshStatus::InProgress);
        // The new one is in service but not healthy yet: nothing moves.
        let three = ids(&["a", "b", "c"]);
        assert_eq!(r.advance(&group(&three, &healthy, 3), t0, warmup), None);
        let all = set(&["a", "b", "c"]);
        let t1 = t0 + chrono::Duration::seconds(10);
        assert_eq!(r.advance(&group(&three, &all, 3), t1, warmup), None);
        assert!(r
            .status_reason
            .as_deref()
            .unwrap()
            .contains("c is warming up"));
        let t2 = t1 + warmup;
        assert_eq!(
            r.advance(&group(&three, &all, 3), t2, warmup),
            Some(RefreshMove::Terminate {
                instances: ids(&["a"]),
                decrement: true
            })
        );
        assert_eq!(r.percentage_complete(), 50);
        let bc = ids(&["b", "c"]);
        let bc_healthy = set(&["b", "c"]);
        assert_eq!(
            r.advance(&group(&bc, &bc_healthy, 2), t2, warmup),
            Some(RefreshMove::Launch { desired: 3 })
        );
        let bcd = ids(&["b", "c", "d"]);
        let bcd_healthy = set(&["b", "c", "d"]);
        assert_eq!(r.advance(&group(&bcd, &bcd_healthy, 3), t2, warmup), None);
        let t3 = t2 + warmup;
        assert_eq!(
            r.advance(&group(&bcd, &bcd_healthy, 3), t3, warmup),
            Some(RefreshMove::Terminate {
                instances: ids(&["b"]),
                decrement: true
            })
        );
        let cd = ids(&["c", "d"]);
        let cd_healthy = set(&["c", "d"]);
        let draining = ids(&["b", "c", "d"]);
        let b_drains = GroupNow {
            members: &draining,
            ..group(&cd, &cd_healthy, 2)
        };
        assert_eq!(r.advance(&b_drains, t3, warmup), None);
        assert_eq!(r.status, RefreshStatus::InProgress, "b is still draining");
        assert!(r
            .status_reason
            .as_deref()
            .unwrap()
            .contains("b is terminating"));
        assert_eq!(r.advance(&group(&cd, &cd_healthy, 2), t3, warmup), None);
        assert_eq!(r.status, RefreshStatus::Successful);
        assert_eq!(r.percentage_complete(), 100);
        assert!(r.end_time.is_some());
    }

    fn zones(list: &[(&str, &str)]) -> HashMap<String, String> {
        list.iter()
            .map(|(id, zone)| (id.to_string(), zone.to_string()))
            .collect()
    }

    #[test]
    fn the_old_instance_goes_from_the_zone_the_new_one_joined() {
        let mut r = refresh(&["a", "b"], 100, 150);
        let warmup = chrono::Duration::zero();
        let t = Utc::now();
        let zones = zones(&[("a", "1a"), ("b", "1b"), ("c", "1b")]);
        let (old, healthy) = (ids(&["a", "b"]), set(&["a", "b", "c"]));
        let now = GroupNow {
            in_service: &old,
            members: &old,
            healthy: &healthy,
            desired: 2,
            zones: &zones,
        };
        assert!(matches!(
            r.advance(&now, t, warmup),
            Some(RefreshMove::Launch { desired: 3 })
        ));
        let three = ids(&["a", "b", "c"]);
        let grown = GroupNow {
            in_service: &three,
            members: &three,
            ..now
        };
        assert_eq!(
            r.advance(&grown, t, warmup),
            Some(RefreshMove::Terminate {
                instances: ids(&["b"]),
                decrement: true
            })
        );
    }

    #[test]
    fn terminate_first_takes_out_then_waits_for_the_replacement() {
        let mut r = refresh(&["a", "b"], 50, 100);
        let zones = HashMap::new();
        let warmup = chrono::Duration::zero();
        let t = Utc::now();
        let old = ids(&["a", "b"]);
        let healthy = set(&["a", "b"]);
        let now = GroupNow {
            in_service: &old,
            members: &old,
            healthy: &healthy,
            desired: 2,
            zones: &zones,
        };
        assert_eq!(
            r.advance(&now, t, warmup),
            Some(RefreshMove::Terminate {
                instances: ids(&["a"]),
                decrement: false
            })
        );
        let b = ids(&["b"]);
        let only_b = set(&["b"]);
        let waiting = GroupNow {
            in_service: &b,
            members: &b,
            healthy: &only_b,
            desired: 2,
            zones: &zones,
        };
        assert_eq!(r.advance(&waiting, t, warmup), None);
        assert!(r.batch.is_some(), "still waiting for a's replacement");
        let bc = ids(&["b", "c"]);
        let bc_healthy = set(&["b", "c"]);
        let replaced = GroupNow {
            in_service: &bc,
            members: &bc,
            healthy: &bc_healthy,
            desired: 2,
            zones: &zones,
        };
        assert_eq!(r.advance(&replaced, t, warmup), None);
        assert!(r.batch.is_none());
        assert_eq!(
            r.advance(&replaced, t, warmup),
            Some(RefreshMove::Terminate {
                instances: ids(&["b"]),
                decrement: false
            })
        );
    }

    #[test]
    fn a_launch_that_did_not_take_is_made_again() {
        let mut r = refresh(&["a", "b"], 100, 150);
        let zones = HashMap::new();
        let warmup = chrono::Duration::zero();
        let t = Utc::now();
        let (old, healthy) = (ids(&["a", "b"]), set(&["a", "b"]));
        let now = GroupNow {
            in_service: &old,
            members: &old,
            healthy: &healthy,
            desired: 2,
            zones: &zones,
        };
        assert_eq!(
            r.advance(&now, t, warmup),
            Some(RefreshMove::Launch { desired: 3 })
        );
        assert_eq!(
            r.advance(&now, t, warmup),
            Some(RefreshMove::Launch { desired: 3 }),
            "moto still says 2"
        );
        let raised = GroupNow { desired: 3, ..now };
        assert_eq!(r.advance(&raised, t, warmup), None, "now it waits");
    }

    #[test]
    fn a_batch_whose_old_instance_left_gives_its_surplus_back() {
        let mut r = refresh(&["a", "b"], 100, 150);
        let zones = HashMap::new();
        let warmup = chrono::Duration::zero();
        let t = Utc::now();
        let (old, healthy) = (ids(&["a", "b"]), set(&["a", "b", "c"]));
        let now = GroupNow {
            in_service: &old,
            members: &old,
            healthy: &healthy,
            desired: 2,
            zones: &zones,
        };
        assert!(r.advance(&now, t, warmup).is_some());
        // b left (a scale-in took it) while c warmed up; one old remains.
        let mut one = refresh(&["a"], 100, 150);
        one.batch = r.batch.clone();
        one.batch.as_mut().unwrap().size = 2;
        one.batch.as_mut().unwrap().launched_to = 4;
        let (ac, acd) = (ids(&["a", "c", "d"]), set(&["a", "c", "d"]));
        let grown = GroupNow {
            in_service: &ac,
            members: &ac,
            healthy: &acd,
            desired: 4,
            zones: &zones,
        };
        assert_eq!(
            one.advance(&grown, t, warmup),
            Some(RefreshMove::TerminateAndSet {
                instances: ids(&["a"]),
                desired: 2
            })
        );
    }

    #[test]
    fn a_cancel_finishes_the_batch_in_flight_first() {
        let mut r = refresh(&["a", "b"], 100, 150);
        let zones = HashMap::new();
        let warmup = chrono::Duration::zero();
        let t = Utc::now();
        let old = ids(&["a", "b"]);
        let healthy = set(&["a", "b"]);
        let now = GroupNow {
            in_service: &old,
            members: &old,
            healthy: &healthy,
            desired: 2,
            zones: &zones,
        };
        assert!(matches!(
            r.advance(&now, t, warmup),
            Some(RefreshMove::Launch { .. })
        ));
        r.cancel();
        let three = ids(&["a", "b", "c"]);
        let all = set(&["a", "b", "c"]);
        let grown = GroupNow {
            in_service: &three,
            members: &three,
            healthy: &all,
            desired: 3,
            zones: &zones,
        };
        assert!(matches!(
            r.advance(&grown, t, warmup),
            Some(RefreshMove::Terminate { .. })
        ));
        assert_eq!(r.status, RefreshStatus::Cancelling);
        let bc = ids(&["b", "c"]);
        let done = GroupNow {
            in_service: &bc,
            members: &bc,
            healthy: &all,
            desired: 2,
            zones: &zones,
        };
        assert_eq!(r.advance(&done, t, warmup), None);
        assert_eq!(r.status, RefreshStatus::Cancelled);
        assert_eq!(r.to_replace, ids(&["b"]), "b stays as it was");
    }

    #[test]
    fn preferences_are_checked_as_aws_does() {
        let parse = |body: &str| preferences(&Params::parse(body.as_bytes()), 300);
        let p = parse("Preferences.MinHealthyPercentage=100&Preferences.MaxHealthyPercentage=150")
            .unwrap();
        assert_eq!((p.min_healthy, p.max_healthy, p.warmup), (100, 150, 300));
        assert!(!p.skip_matching);
        let defaults = parse("").unwrap();
        assert_eq!((defaults.min_healthy, defaults.max_healthy), (90, 100));
        for bad in [
            "Preferences.MinHealthyPercentage=101",
            "Preferences.MaxHealthyPercentage=201",
            "Preferences.MinHealthyPercentage=10&Preferences.MaxHealthyPercentage=150",
            "Preferences.MinHealthyPercentage=100",
            "Strategy=ReplaceAll",
        ] {
            assert!(
                matches!(parse(bad), Err(FaithfulError::Refused { .. })),
                "{bad}"
            );
        }
    }
}
