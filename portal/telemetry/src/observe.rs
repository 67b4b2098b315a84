//! Turning two looks at a group into what changed between them.
//!
//! Pure: [`Known`] is what the previous poll saw (or, after a restart, what
//! the database says it saw), [`observe`] compares a fresh snapshot with it,
//! updates it and returns the timeline's new events.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use cloudpulse_core::model::{EventKind, HealthSnapshot, InstanceHealth};
use serde_json::{json, Value};

/// What was last seen of one instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub lifecycle: Option<String>,
    pub health: Option<String>,
    pub target_state: Option<String>,
    pub target_reason: Option<String>,
}

impl Seen {
    pub fn of(instance: &InstanceHealth) -> Self {
        Seen {
            lifecycle: Some(instance.lifecycle.clone()).filter(|s| !s.is_empty()),
            health: Some(instance.health.clone()).filter(|s| !s.is_empty()),
            target_state: instance.target_state.clone(),
            target_reason: instance.target_reason.clone(),
        }
    }
}

/// What the poller knows of a deployment between two polls.
#[derive(Clone, Debug, Default)]
pub struct Known {
    /// Instances in the group, by id.
    pub instances: HashMap<String, Seen>,
    /// Alarm name → state.
    pub alarms: HashMap<String, String>,
    /// Scaling activities already on the timeline.
    pub activities: HashSet<String>,
    pub desired: Option<i32>,
    /// Since when the group has been short of healthy targets after losing
    /// one, and why.
    pub degraded: Option<(DateTime<Utc>, String)>,
}

/// A new event for the deployment's timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub message: String,
    pub data: Value,
}

fn event(kind: EventKind, message: String, data: Value) -> NewEvent {
    NewEvent {
        kind,
        message,
        data,
    }
}

fn or_none(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("none")
}

/// Compares `snapshot` with `known`, brings `known` up to date and returns
/// what changed, oldest kind of change first. A recovery is reported when
/// the group, degraded by a lost or failing instance, has its desired number
/// of healthy targets again.
pub fn observe(known: &mut Known, snapshot: &HealthSnapshot) -> Vec<NewEvent> {
    let now = snapshot.taken_at;
    let mut events = Vec::new();
    let group = &snapshot.group;
    let mut lost: Option<String> = None;

    for instance in &group.instances {
        let seen = Seen::of(instance);
        let id = &instance.id;
        match known.instances.get(id) {
            None => events.push(event(
                EventKind::Instance,
                format!(
                    "{id} joined the group in {} ({}, {})",
                    instance.availability_zone,
                    instance.instance_type.as_deref().unwrap_or("unknown type"),
                    instance.lifecycle
                ),
                json!({ "instance_id": id, "lifecycle": instance.lifecycle }),
            )),
            Some(before) => {
                if before.lifecycle != seen.lifecycle || before.health != seen.health {
                    events.push(event(
                        EventKind::Instance,
                        format!(
                            "{id} is {} and {} (was {} and {})",
                            or_none(&seen.lifecycle),
                            or_none(&seen.health),
                            or_none(&before.lifecycle),
                            or_none(&before.health)
                        ),
                        json!({ "instance_id": id, "lifecycle": seen.lifecycle, "health": seen.health }),
                    ));
                }
                if before.target_state != seen.target_state {
                    let reason = seen
                        .target_reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default();
                    events.push(event(
                        EventKind::Target,
                        format!(
                            "target {id} is {}{reason} (was {})",
                            or_none(&seen.target_state),
                            or_none(&before.target_state)
                        ),
                        json!({ "instance_id": id, "state": seen.target_state, "reason": seen.target_reason }),
                    ));
                    if seen.target_state.as_deref() == Some("unhealthy") {
                        lost.get_or_insert_with(|| format!("target {id} turned unhealthy{reason}"));
                    }
                }
            }
        }
        known.instances.insert(id.clone(), seen);
    }

    let present: HashSet<&str> = group.instances.iter().map(|i| i.id.as_str()).collect();
    let mut gone: Vec<String> = known
        .instances
        .keys()
        .filter(|id| !present.contains(id.as_str()))
        .cloned()
        .collect();
    gone.sort();
    let desired_dropped = known.desired.is_some_and(|d| group.desired < d);
    for id in gone {
        let before = known.instances.remove(&id).unwrap_or_default();
        events.push(event(
            EventKind::Instance,
            format!(
                "{id} left the group (last {} and {})",
                or_none(&before.lifecycle),
                or_none(&before.health)
            ),
            json!({ "instance_id": id, "gone": true }),
        ));
        if !desired_dropped {
            lost.get_or_insert_with(|| format!("{id} left the group"));
        }
    }

    for alarm in &snapshot.alarms {
        let before = known.alarms.insert(alarm.name.clone(), alarm.state.clone());
        match before {
            Some(before) if before != alarm.state => events.push(event(
                EventKind::Alarm,
                format!(
                    "alarm {} went from {before} to {}{}",
                    alarm.name,
                    alarm.state,
                    alarm
                        .reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                json!({ "alarm": alarm.name, "from": before, "to": alarm.state }),
            )),
            _ => {}
        }
    }

    // Activities come newest first; the timeline wants them in order.
    for activity in snapshot.activities.iter().rev() {
        if activity.id.is_empty() || !known.activities.insert(activity.id.clone()) {
            continue;
        }
        events.push(event(
            EventKind::Scaling,
            format!("{} ({})", activity.description, activity.status),
            json!({ "activity_id": activity.id, "cause": activity.cause }),
        ));
    }

    if known.desired.is_some_and(|d| d != group.desired) {
        events.push(event(
            EventKind::Capacity,
            format!(
                "desired capacity {} → {}",
                known.desired.unwrap_or_default(),
                group.desired
            ),
            json!({ "from": known.desired, "to": group.desired }),
        ));
    }
    known.desired = Some(group.desired);

    let failing = group
        .instances
        .iter()
        .any(|i| i.target_state.as_deref() == Some("unhealthy"));
    let whole = i64::from(snapshot.healthy_targets) >= i64::from(group.desired);
    // A loss the group does not feel (an instance leaving after its
    // replacement already serves) degrades nothing.
    if let (None, Some(cause), false) = (&known.degraded, lost, whole && !failing) {
        known.degraded = Some((now, cause));
    }
    if let Some((since, cause)) = known.degraded.clone() {
        if whole && !failing {
            known.degraded = None;
            let seconds = (now - since).num_milliseconds() as f64 / 1000.0;
            events.push(event(
                EventKind::Recovery,
                format!(
                    "back to {} of {} healthy targets {seconds:.1} s after {cause}",
                    snapshot.healthy_targets, group.desired
                ),
                json!({ "seconds": seconds, "cause": cause, "measured_by": "telemetry" }),
            ));
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use cloudpulse_core::model::{ActivityView, AlarmView, GroupHealth};

    fn instance(id: &str, lifecycle: &str, target: Option<&str>) -> InstanceHealth {
        InstanceHealth {
            id: id.into(),
            lifecycle: lifecycle.into(),
            health: "Healthy".into(),
            availability_zone: "us-east-1a".into(),
            instance_type: Some("t3.micro".into()),
            launched_at: None,
            private_ip: None,
            target_state: target.map(str::to_string),
            target_reason: None,
        }
    }

    fn snapshot(at: i64, desired: i32, instances: Vec<InstanceHealth>) -> HealthSnapshot {
        let healthy = instances
            .iter()
            .filter(|i| i.target_state.as_deref() == Some("healthy"))
            .count() as u32;
        HealthSnapshot {
            deployment_id: "d".into(),
            taken_at: DateTime::from_timestamp(1_790_000_000, 0).unwrap() + TimeDelta::seconds(at),
            group: GroupHealth {
                name: "g".into(),
                min: 2,
                desired,
                max: 4,
                instances,
            },
            healthy_targets: healthy,
            alarms: vec![],
            activities: vec![],
        }
    }

    fn kinds(events: &[NewEvent]) -> Vec<&str> {
        events.iter().map(|e| e.kind.as_str()).collect()
    }

    #[test]
    fn a_lost_instance_is_timed_until_the_group_is_whole_again() {
        let mut known = Known::default();
        let first = observe(
            &mut known,
            &snapshot(
                0,
                2,
                vec![
                    instance("i-a", "InService", Some("healthy")),
                    instance("i-b", "InService", Some("healthy")),
                ],
            ),
        );
        assert_eq!(kinds(&first), ["instance", "instance"]);
        assert!(first[0]
            .message
            .starts_with("i-a joined the group in us-east-1a"));

        let lost = observe(
            &mut known,
            &snapshot(10, 2, vec![instance("i-b", "InService", Some("healthy"))]),
        );
        assert_eq!(kinds(&lost), ["instance"]);
        assert!(lost[0].message.starts_with("i-a left the group"));
        assert!(known.degraded.is_some());

        let booting = observe(
            &mut known,
            &snapshot(
                20,
                2,
                vec![
                    instance("i-b", "InService", Some("healthy")),
                    instance("i-c", "Pending", None),
                ],
            ),
        );
        assert_eq!(kinds(&booting), ["instance"]);

        let back = observe(
            &mut known,
            &snapshot(
                35,
                2,
                vec![
                    instance("i-b", "InService", Some("healthy")),
                    instance("i-c", "InService", Some("healthy")),
                ],
            ),
        );
        assert_eq!(kinds(&back), ["instance", "target", "recovery"]);
        assert_eq!(back[2].data["seconds"], 25.0);
        assert!(
            back[2].message.contains("25.0 s after i-a left the group"),
            "{}",
            back[2].message
        );
        assert!(known.degraded.is_none());
    }

    #[test]
    fn a_failing_target_is_reported_and_timed() {
        let mut known = Known::default();
        let two = |b: &str| {
            vec![
                instance("i-a", "InService", Some("healthy")),
                instance("i-b", "InService", Some(b)),
            ]
        };
        observe(&mut known, &snapshot(0, 2, two("healthy")));
        let mut failing = snapshot(5, 2, two("unhealthy"));
        failing.group.instances[1].target_reason = Some("Target.ResponseCodeMismatch".into());
        failing.healthy_targets = 1;
        let events = observe(&mut known, &failing);
        assert_eq!(kinds(&events), ["target"]);
        assert_eq!(
            events[0].message,
            "target i-b is unhealthy (Target.ResponseCodeMismatch) (was healthy)"
        );
        let back = observe(&mut known, &snapshot(12, 2, two("healthy")));
        assert_eq!(kinds(&back), ["target", "recovery"]);
        assert_eq!(back[1].data["seconds"], 7.0);
    }

    #[test]
    fn a_scale_in_is_not_a_loss() {
        let mut known = Known::default();
        let three = vec![
            instance("i-a", "InService", Some("healthy")),
            instance("i-b", "InService", Some("healthy")),
            instance("i-c", "InService", Some("healthy")),
        ];
        observe(&mut known, &snapshot(0, 3, three.clone()));
        let events = observe(&mut known, &snapshot(10, 2, three[..2].to_vec()));
        assert_eq!(kinds(&events), ["instance", "capacity"]);
        assert!(known.degraded.is_none());
    }

    #[test]
    fn a_replaced_instance_leaving_a_whole_group_is_no_recovery() {
        // The instance whose health checks failed drains while its
        // replacement already serves: when it finally leaves, the group has
        // been whole for a while, so nothing recovers (and no recovery of
        // 0 s hides the real one before it).
        let mut known = Known::default();
        observe(
            &mut known,
            &snapshot(
                0,
                2,
                vec![
                    instance("i-a", "InService", Some("healthy")),
                    instance("i-b", "InService", Some("healthy")),
                    instance("i-c", "Terminating", Some("draining")),
                ],
            ),
        );
        let left = observe(
            &mut known,
            &snapshot(
                10,
                2,
                vec![
                    instance("i-a", "InService", Some("healthy")),
                    instance("i-b", "InService", Some("healthy")),
                ],
            ),
        );
        assert_eq!(kinds(&left), ["instance"]);
        assert!(left[0].message.starts_with("i-c left the group"));
        assert!(known.degraded.is_none());
    }

    #[test]
    fn alarms_and_activities_are_reported_once() {
        let mut known = Known::default();
        let mut snap = snapshot(0, 2, vec![]);
        snap.alarms = vec![AlarmView {
            name: "high".into(),
            state: "OK".into(),
            reason: None,
            updated_at: None,
            threshold: Some(70.0),
            comparison: None,
        }];
        snap.activities = vec![ActivityView {
            id: "act-1".into(),
            description: "Launching a new EC2 instance: i-c".into(),
            cause: "an alarm".into(),
            status: "Successful".into(),
            started_at: None,
            ended_at: None,
        }];
        assert_eq!(kinds(&observe(&mut known, &snap)), ["scaling"]);
        assert!(observe(&mut known, &snap).is_empty());
        snap.alarms[0].state = "ALARM".into();
        snap.alarms[0].reason = Some("Threshold Crossed".into());
        let fired = observe(&mut known, &snap);
        assert_eq!(kinds(&fired), ["alarm"]);
        assert_eq!(
            fired[0].message,
            "alarm high went from OK to ALARM: Threshold Crossed"
        );
    }
}
