//! CloudWatch's part of the data plane: EC2's and the load balancer's own
//! metrics, and alarm evaluation with its actions.
//!
//! Once a (scaled) minute the data plane measures every instance's CPU
//! ([`super::cpu`]) and publishes it to moto as EC2 would: `AWS/EC2
//! CPUUtilization` per `InstanceId` and, averaged, per
//! `AutoScalingGroupName` — every minute for an instance with detailed
//! monitoring, and for one with basic monitoring (EC2's default) one
//! datapoint every five minutes, the average of those five. Each local load
//! balancer's requests go out as `AWS/ApplicationELB RequestCount`, and
//! per target group `HealthyHostCount`, `UnHealthyHostCount` and
//! `HTTPCode_Target_5XX_Count`. A datapoint becomes visible (published, and
//! seen by the alarms) only after CloudWatch's ingestion delay
//! ([`super::DataPlaneConfig::metrics_delay`]), stamped with the minute it
//! was measured in. The same numbers are kept in memory and every alarm is
//! evaluated on them each minute, like CloudWatch: the alarm's statistic
//! over each period, the last `EvaluationPeriods` periods, `DatapointsToAlarm`
//! of them breaching → `ALARM`, otherwise `OK`, none at all →
//! `INSUFFICIENT_DATA`. A transition is made through
//! [`crate::faithful::Faithful::set_alarm_state`] (so it is in the alarm's
//! history) and runs the actions of the new state; an Auto Scaling action
//! runs again every period the alarm stays in that state, as on AWS, and the
//! group's cooldown and bounds decide whether it changes anything.
//!
//! Modelled: alarms on `AWS/EC2 CPUUtilization` with one
//! `AutoScalingGroupName` or `InstanceId` dimension, the statistics
//! `Average`, `Maximum`, `Minimum`, `Sum` and `SampleCount`, the four plain
//! comparison operators, and periods in whole minutes. Other alarms are left
//! as moto keeps them.

use std::collections::{HashMap, VecDeque};

use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, MetricAlarm, MetricDatum, StandardUnit, StateValue, Statistic,
};
use chrono::{DateTime, Utc};

use super::cpu::ProcSnapshot;
use super::Reconciler;
use crate::faithful::Trigger;

/// Minutes of samples kept: enough for any alarm this module evaluates.
const KEPT_TICKS: usize = 60;
/// Basic monitoring: one datapoint every this many minutes.
const BASIC_MINUTES: usize = 5;

/// One instance's CPU in one (scaled) minute.
#[derive(Clone, Debug)]
pub(crate) struct CpuSample {
    pub group: String,
    pub instance: String,
    pub percent: f64,
}

/// One load balancer metric of one (scaled) minute.
#[derive(Clone, Debug)]
pub(crate) struct ElbDatum {
    pub name: &'static str,
    /// `(name, value)` of each dimension.
    pub dimensions: Vec<(&'static str, String)>,
    pub value: f64,
}

/// One (scaled) minute's samples: the CPU datapoints EC2 sends for it
/// (none for a basic-monitoring instance between its five-minute
/// datapoints) and the load balancers' metrics.
#[derive(Clone, Debug)]
pub(crate) struct Tick {
    pub at: DateTime<Utc>,
    pub cpu: Vec<CpuSample>,
    pub elb: Vec<ElbDatum>,
}

/// The recent minutes, oldest first.
#[derive(Debug, Default)]
pub(crate) struct MetricLog {
    ticks: VecDeque<Tick>,
}

impl MetricLog {
    pub fn push(&mut self, tick: Tick) {
        if self.ticks.len() == KEPT_TICKS {
            self.ticks.pop_front();
        }
        self.ticks.push_back(tick);
    }

    /// The alarm's datapoints for its last `evaluation_periods` periods,
    /// oldest first; `None` where a period has no sample.
    pub fn datapoints(&self, alarm: &AlarmSpec) -> Vec<Option<Datapoint>> {
        let per = alarm.period_ticks.max(1);
        let mut points: Vec<Option<Datapoint>> = self
            .ticks
            .iter()
            .rev()
            .collect::<Vec<_>>()
            .chunks(per)
            .take(alarm.evaluation_periods)
            .map(|period| {
                let values: Vec<f64> = period
                    .iter()
                    .flat_map(|tick| tick.cpu.iter())
                    .filter(|s| alarm.subject.covers(s))
                    .map(|s| s.percent)
                    .collect();
                let value = alarm.statistic.of(&values)?;
                // A period is stamped with its start, as CloudWatch does.
                Some(Datapoint {
                    value,
                    at: period.last().map_or_else(Utc::now, |t| t.at),
                })
            })
            .collect();
        points.resize(alarm.evaluation_periods, None);
        points.reverse();
        points
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Datapoint {
    pub value: f64,
    pub at: DateTime<Utc>,
}

/// Which samples an alarm's dimension selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Subject {
    Group(String),
    Instance(String),
}

impl Subject {
    fn covers(&self, sample: &CpuSample) -> bool {
        match self {
            Subject::Group(name) => sample.group == *name,
            Subject::Instance(id) => sample.instance == *id,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stat {
    Average,
    Maximum,
    Minimum,
    Sum,
    SampleCount,
}

impl Stat {
    fn of(self, values: &[f64]) -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        let sum: f64 = values.iter().sum();
        Some(match self {
            Stat::Average => sum / values.len() as f64,
            Stat::Maximum => values.iter().copied().fold(f64::MIN, f64::max),
            Stat::Minimum => values.iter().copied().fold(f64::MAX, f64::min),
            Stat::Sum => sum,
            Stat::SampleCount => values.len() as f64,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Stat::Average => "Average",
            Stat::Maximum => "Maximum",
            Stat::Minimum => "Minimum",
            Stat::Sum => "Sum",
            Stat::SampleCount => "SampleCount",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Comparison {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
}

impl Comparison {
    fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Greater => value > threshold,
            Comparison::GreaterOrEqual => value >= threshold,
            Comparison::Less => value < threshold,
            Comparison::LessOrEqual => value <= threshold,
        }
    }

    /// CloudWatch's wording in a state reason.
    fn words(self) -> &'static str {
        match self {
            Comparison::Greater => "greater than",
            Comparison::GreaterOrEqual => "greater than or equal to",
            Comparison::Less => "less than",
            Comparison::LessOrEqual => "less than or equal to",
        }
    }
}

/// An alarm this module evaluates, from `DescribeAlarms`.
#[derive(Clone, Debug)]
pub(crate) struct AlarmSpec {
    pub name: String,
    pub subject: Subject,
    pub statistic: Stat,
    /// The period in minutes, i.e. in samples.
    pub period_ticks: usize,
    pub period_seconds: i32,
    pub evaluation_periods: usize,
    pub datapoints_to_alarm: usize,
    pub threshold: f64,
    pub comparison: Comparison,
    pub actions_enabled: bool,
    pub alarm_actions: Vec<String>,
    pub ok_actions: Vec<String>,
    pub insufficient_data_actions: Vec<String>,
    pub state: StateValue,
}

impl AlarmSpec {
    /// `None` for an alarm outside what this module models.
    pub fn from_alarm(alarm: &MetricAlarm) -> Option<AlarmSpec> {
        if alarm.namespace() != Some("AWS/EC2") || alarm.metric_name() != Some("CPUUtilization") {
            return None;
        }
        let [dimension] = alarm.dimensions() else {
            return None;
        };
        let value = dimension.value()?.to_string();
        let subject = match dimension.name()? {
            "AutoScalingGroupName" => Subject::Group(value),
            "InstanceId" => Subject::Instance(value),
            _ => return None,
        };
        let statistic = match alarm.statistic()? {
            Statistic::Average => Stat::Average,
            Statistic::Maximum => Stat::Maximum,
            Statistic::Minimum => Stat::Minimum,
            Statistic::Sum => Stat::Sum,
            Statistic::SampleCount => Stat::SampleCount,
            _ => return None,
        };
        let comparison = match alarm.comparison_operator()? {
            ComparisonOperator::GreaterThanThreshold => Comparison::Greater,
            ComparisonOperator::GreaterThanOrEqualToThreshold => Comparison::GreaterOrEqual,
            ComparisonOperator::LessThanThreshold => Comparison::Less,
            ComparisonOperator::LessThanOrEqualToThreshold => Comparison::LessOrEqual,
            _ => return None,
        };
        let period = alarm.period()?;
        if period < 60 || period % 60 != 0 {
            return None;
        }
        let evaluation_periods = usize::try_from(alarm.evaluation_periods()?)
            .ok()
            .filter(|n| *n > 0)?;
        let datapoints_to_alarm = alarm
            .datapoints_to_alarm()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=evaluation_periods).contains(n))
            .unwrap_or(evaluation_periods);
        Some(AlarmSpec {
            name: alarm.alarm_name()?.to_string(),
            subject,
            statistic,
            period_ticks: (period / 60) as usize,
            period_seconds: period,
            evaluation_periods,
            datapoints_to_alarm,
            threshold: alarm.threshold()?,
            comparison,
            actions_enabled: alarm.actions_enabled().unwrap_or(true),
            alarm_actions: alarm.alarm_actions().to_vec(),
            ok_actions: alarm.ok_actions().to_vec(),
            insufficient_data_actions: alarm.insufficient_data_actions().to_vec(),
            state: alarm
                .state_value()
                .cloned()
                .unwrap_or(StateValue::InsufficientData),
        })
    }

    fn actions(&self, state: &StateValue) -> &[String] {
        match state {
            StateValue::Alarm => &self.alarm_actions,
            StateValue::Ok => &self.ok_actions,
            _ => &self.insufficient_data_actions,
        }
    }
}

/// The state an alarm should be in, with CloudWatch's reason and reason data.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Judgement {
    pub state: StateValue,
    pub reason: String,
    pub reason_data: String,
}

pub(crate) fn judge(alarm: &AlarmSpec, points: &[Option<Datapoint>]) -> Judgement {
    let known: Vec<Datapoint> = points.iter().rev().flatten().copied().collect();
    let breaching = known
        .iter()
        .filter(|p| alarm.comparison.breaches(p.value, alarm.threshold))
        .count();
    let state = if known.is_empty() {
        StateValue::InsufficientData
    } else if breaching >= alarm.datapoints_to_alarm {
        StateValue::Alarm
    } else {
        StateValue::Ok
    };
    let listed: Vec<String> = known
        .iter()
        .map(|p| format!("{:.1} ({})", p.value, p.at.format("%d/%m/%y %H:%M:%S")))
        .collect();
    let reason = match state {
        StateValue::InsufficientData => format!(
            "Insufficient Data: {} datapoints were unknown.",
            alarm.evaluation_periods
        ),
        StateValue::Alarm => format!(
            "Threshold Crossed: {breaching} out of the last {} datapoints [{}] were {} the threshold ({:.1}) (minimum {} datapoints for OK -> ALARM transition).",
            known.len(),
            listed.join(", "),
            alarm.comparison.words(),
            alarm.threshold,
            alarm.datapoints_to_alarm
        ),
        _ => format!(
            "Threshold Crossed: {} datapoints [{}] were not {} the threshold ({:.1}).",
            known.len(),
            listed.join(", "),
            alarm.comparison.words(),
            alarm.threshold
        ),
    };
    let reason_data = serde_json::json!({
        "version": "1.0",
        "queryDate": Utc::now().to_rfc3339(),
        "statistic": alarm.statistic.name(),
        "period": alarm.period_seconds,
        "recentDatapoints": known.iter().map(|p| (p.value * 10.0).round() / 10.0).collect::<Vec<_>>(),
        "threshold": alarm.threshold,
    })
    .to_string();
    Judgement {
        state,
        reason,
        reason_data,
    }
}

/// The `…/autoScalingGroupName/G:policyName/P` ARN of a scaling policy.
fn is_scaling_policy(action: &str) -> bool {
    action.starts_with("arn:aws:autoscaling:") && action.contains(":scalingPolicy:")
}

/// `app/NAME/ID`, the `LoadBalancer` dimension, from a load balancer ARN.
fn load_balancer_dimension(arn: &str) -> Option<&str> {
    arn.split_once(":loadbalancer/").map(|(_, rest)| rest)
}

/// `targetgroup/NAME/ID`, the `TargetGroup` dimension, from its ARN.
fn target_group_dimension(arn: &str) -> Option<&str> {
    arn.find(":targetgroup/").map(|at| &arn[at + 1..])
}

/// The datapoint a basic-monitoring instance sends after `minutes` more
/// measured minutes: the average of the last five once there are five,
/// else nothing yet.
fn basic_datapoint(minutes: &mut Vec<f64>, percent: f64) -> Option<f64> {
    minutes.push(percent);
    if minutes.len() < BASIC_MINUTES {
        return None;
    }
    let average = minutes.iter().sum::<f64>() / minutes.len() as f64;
    minutes.clear();
    Some(average)
}

impl Reconciler {
    /// Once a (scaled) minute: measure, let CloudWatch see what its
    /// ingestion delay has let through, evaluate.
    pub(super) async fn monitor(&mut self) {
        let snapshot = ProcSnapshot::take();
        let mut measured = Vec::new();
        let mut cpu = Vec::new();
        for (id, running) in &self.running {
            let meter = self.meters.entry(id.clone()).or_default();
            let Some(percent) = meter.sample(running.process.pid(), &snapshot) else {
                continue;
            };
            measured.push((id.clone(), percent));
            let sent = if running.detailed_monitoring {
                Some(percent)
            } else {
                basic_datapoint(self.basic_minutes.entry(id.clone()).or_default(), percent)
            };
            if let Some(percent) = sent {
                cpu.push(CpuSample {
                    group: running.asg_name.clone(),
                    instance: id.clone(),
                    percent,
                });
            }
        }
        self.meters.retain(|id, _| self.running.contains_key(id));
        self.basic_minutes
            .retain(|id, _| self.running.contains_key(id));
        *super::write(&self.board.cpu) = measured.into_iter().collect();
        let now = std::time::Instant::now();
        let tick = Tick {
            at: Utc::now(),
            cpu,
            elb: self.elb_metrics(),
        };
        let delay = self.config.scaled(self.config.metrics_delay);
        self.ingesting.push_back((now + delay, tick));
        // A little slack: a tick due within this round's own jitter counts.
        let slack = self.config.scaled(super::METRICS_PERIOD) / 10;
        while self
            .ingesting
            .front()
            .is_some_and(|(visible, _)| *visible <= now + slack)
        {
            let Some((_, tick)) = self.ingesting.pop_front() else {
                break;
            };
            if let Err(error) = self.publish(&tick).await {
                tracing::warn!(%error, "cannot publish the sandbox's EC2 and ELB metrics");
            }
            self.metrics.push(tick);
        }
        if let Err(error) = self.evaluate_alarms().await {
            tracing::warn!(%error, "cannot evaluate the sandbox's alarms");
        }
    }

    /// This minute's load balancer metrics: requests since the last
    /// minute, and for each of its target groups the healthy and unhealthy
    /// targets and the 5xx answers its targets gave.
    fn elb_metrics(&mut self) -> Vec<ElbDatum> {
        let counters: Vec<(String, u64, u64)> = super::read(&self.board.balancers)
            .iter()
            .map(|(arn, entry)| {
                (
                    arn.clone(),
                    entry.requests.load(std::sync::atomic::Ordering::Relaxed),
                    entry.target_5xx.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect();
        let mut out = Vec::new();
        for (arn, total, errors) in counters {
            let last = self.requests_seen.insert(arn.clone(), total).unwrap_or(0);
            let last_errors = self
                .target_5xx_seen
                .insert(arn.clone(), errors)
                .unwrap_or(0);
            let Some(lb) = load_balancer_dimension(&arn) else {
                continue;
            };
            out.push(ElbDatum {
                name: "RequestCount",
                dimensions: vec![("LoadBalancer", lb.to_string())],
                value: total.saturating_sub(last) as f64,
            });
            let groups = self.balancer_groups.get(&arn).cloned().unwrap_or_default();
            for tg in &groups {
                let (Some(checker), Some(tg_dim)) =
                    (self.checkers.get(tg), target_group_dimension(tg))
                else {
                    continue;
                };
                let verdicts = checker.table().verdicts();
                let count = |state: super::TargetState| {
                    verdicts.iter().filter(|v| v.state == state).count() as f64
                };
                let dims = vec![
                    ("TargetGroup", tg_dim.to_string()),
                    ("LoadBalancer", lb.to_string()),
                ];
                out.push(ElbDatum {
                    name: "HealthyHostCount",
                    dimensions: dims.clone(),
                    value: count(super::TargetState::Healthy),
                });
                out.push(ElbDatum {
                    name: "UnHealthyHostCount",
                    dimensions: dims.clone(),
                    value: count(super::TargetState::Unhealthy),
                });
                // The balancer counts its targets' 5xx answers as one; with
                // one target group behind each (CloudPulse's stack) that is
                // the group's count.
                if groups.len() == 1 {
                    out.push(ElbDatum {
                        name: "HTTPCode_Target_5XX_Count",
                        dimensions: dims,
                        value: errors.saturating_sub(last_errors) as f64,
                    });
                }
            }
        }
        out
    }

    async fn publish(&mut self, tick: &Tick) -> super::Moto<()> {
        let dimension =
            |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
        let datum = |name: &str, dim: Dimension, value: f64, unit: StandardUnit| {
            MetricDatum::builder()
                .metric_name(name)
                .dimensions(dim)
                .value(value)
                .unit(unit)
                .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
                    tick.at.timestamp(),
                ))
                .build()
        };
        let mut ec2 = Vec::new();
        let mut groups: HashMap<&str, Vec<f64>> = HashMap::new();
        for sample in &tick.cpu {
            ec2.push(datum(
                "CPUUtilization",
                dimension("InstanceId", &sample.instance),
                sample.percent,
                StandardUnit::Percent,
            ));
            groups
                .entry(&sample.group)
                .or_default()
                .push(sample.percent);
        }
        for (group, values) in groups {
            let average = values.iter().sum::<f64>() / values.len() as f64;
            ec2.push(datum(
                "CPUUtilization",
                dimension("AutoScalingGroupName", group),
                average,
                StandardUnit::Percent,
            ));
        }
        let elb: Vec<MetricDatum> = tick
            .elb
            .iter()
            .map(|d| {
                MetricDatum::builder()
                    .metric_name(d.name)
                    .set_dimensions(Some(
                        d.dimensions
                            .iter()
                            .map(|(name, value)| dimension(name, value))
                            .collect(),
                    ))
                    .value(d.value)
                    .unit(StandardUnit::Count)
                    .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
                        tick.at.timestamp(),
                    ))
                    .build()
            })
            .collect();
        for (namespace, data) in [("AWS/EC2", ec2), ("AWS/ApplicationELB", elb)] {
            // PutMetricData takes up to 1000 datums a call.
            for chunk in data.chunks(1000) {
                self.cloudwatch
                    .put_metric_data()
                    .namespace(namespace)
                    .set_metric_data(Some(chunk.to_vec()))
                    .send()
                    .await
                    .map_err(super::moto_error("PutMetricData"))?;
            }
        }
        Ok(())
    }

    async fn evaluate_alarms(&mut self) -> super::Moto<()> {
        let alarms: Vec<MetricAlarm> = self
            .cloudwatch
            .describe_alarms()
            .into_paginator()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(super::moto_error("DescribeAlarms"))?
            .into_iter()
            .flat_map(|page| page.metric_alarms.unwrap_or_default())
            .collect();
        let ours: std::collections::HashSet<&str> =
            self.running.values().map(|r| r.asg_name.as_str()).collect();
        let specs: Vec<AlarmSpec> = alarms
            .iter()
            .filter_map(AlarmSpec::from_alarm)
            .filter(|spec| match &spec.subject {
                Subject::Group(name) => ours.contains(name.as_str()),
                Subject::Instance(id) => self.running.contains_key(id),
            })
            .collect();
        for spec in specs {
            // CloudWatch evaluates every alarm each minute, whatever its
            // period.
            let judgement = judge(&spec, &self.metrics.datapoints(&spec));
            let changed = judgement.state != spec.state;
            if changed {
                tracing::info!(alarm = %spec.name, from = %spec.state, to = %judgement.state, reason = %judgement.reason, "alarm changed state");
                if let Err(error) = self
                    .faithful
                    .set_alarm_state(
                        &spec.name,
                        judgement.state.clone(),
                        &judgement.reason,
                        Some(&judgement.reason_data),
                    )
                    .await
                {
                    tracing::warn!(alarm = %spec.name, %error, "cannot change the alarm's state");
                    continue;
                }
            }
            if !spec.actions_enabled {
                continue;
            }
            for action in spec.actions(&judgement.state) {
                if !is_scaling_policy(action) {
                    // Notifications and the like: nowhere to send them here.
                    continue;
                }
                // Auto Scaling actions run again every period the alarm
                // stays in the state; only the transition's run is history.
                let outcome = self
                    .faithful
                    .execute_policy(None, action, true, Trigger::Alarm(spec.name.clone()))
                    .await;
                match &outcome {
                    Ok(done) => {
                        tracing::info!(alarm = %spec.name, group = %done.group, from = done.from, to = done.to, "alarm action executed the scaling policy")
                    }
                    Err(error) => {
                        tracing::debug!(alarm = %spec.name, %error, "alarm action did not scale")
                    }
                }
                if changed {
                    self.faithful.note_alarm_action(
                        &spec.name,
                        action,
                        outcome.map(|_| ()).map_err(|e| e.to_string()),
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(comparison: Comparison, threshold: f64) -> AlarmSpec {
        AlarmSpec {
            name: "high".into(),
            subject: Subject::Group("g".into()),
            statistic: Stat::Average,
            period_ticks: 1,
            period_seconds: 60,
            evaluation_periods: 2,
            datapoints_to_alarm: 2,
            threshold,
            comparison,
            actions_enabled: true,
            alarm_actions: vec![],
            ok_actions: vec![],
            insufficient_data_actions: vec![],
            state: StateValue::InsufficientData,
        }
    }

    fn tick(minute: u32, samples: &[(&str, &str, f64)]) -> Tick {
        Tick {
            at: DateTime::parse_from_rfc3339(&format!("2026-11-30T07:{minute:02}:00Z"))
                .unwrap()
                .with_timezone(&Utc),
            cpu: samples
                .iter()
                .map(|(group, instance, percent)| CpuSample {
                    group: group.to_string(),
                    instance: instance.to_string(),
                    percent: *percent,
                })
                .collect(),
            elb: Vec::new(),
        }
    }

    #[test]
    fn basic_monitoring_sends_one_average_every_five_minutes() {
        let mut minutes = Vec::new();
        let sent: Vec<Option<f64>> = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
            .into_iter()
            .map(|p| basic_datapoint(&mut minutes, p))
            .collect();
        assert_eq!(sent, [None, None, None, None, Some(30.0), None]);
        assert_eq!(minutes, [60.0]);
    }

    #[test]
    fn basic_monitoring_leaves_a_one_minute_alarm_without_its_two_datapoints() {
        // A minute-by-minute log in which the group's one instance sends
        // a datapoint only every fifth minute, all of them at 95 %.
        let high = alarm(Comparison::Greater, 70.0);
        let mut log = MetricLog::default();
        for minute in 1..=4 {
            log.push(tick(minute, &[]));
            assert_eq!(
                judge(&high, &log.datapoints(&high)).state,
                StateValue::InsufficientData,
                "minute {minute}"
            );
        }
        log.push(tick(5, &[("g", "i-1", 95.0)]));
        // One of the two datapoints it needs: never ALARM on basic data.
        assert_eq!(judge(&high, &log.datapoints(&high)).state, StateValue::Ok);
        log.push(tick(6, &[]));
        assert_eq!(judge(&high, &log.datapoints(&high)).state, StateValue::Ok);
        log.push(tick(7, &[]));
        assert_eq!(
            judge(&high, &log.datapoints(&high)).state,
            StateValue::InsufficientData
        );
    }

    #[test]
    fn the_group_average_over_two_periods_decides() {
        let high = alarm(Comparison::Greater, 70.0);
        let low = alarm(Comparison::Less, 30.0);
        let mut log = MetricLog::default();
        assert_eq!(
            judge(&high, &log.datapoints(&high)).state,
            StateValue::InsufficientData
        );
        // One instance of two at 100 %: the group's average is 50.
        log.push(tick(
            1,
            &[("g", "i-1", 100.0), ("g", "i-2", 0.0), ("x", "i-9", 100.0)],
        ));
        log.push(tick(2, &[("g", "i-1", 100.0), ("g", "i-2", 0.0)]));
        let judged = judge(&high, &log.datapoints(&high));
        assert_eq!(judged.state, StateValue::Ok);
        assert!(
            judged.reason.contains("[50.0 (30/11/26 07:02:00), 50.0"),
            "{}",
            judged.reason
        );
        assert_eq!(judge(&low, &log.datapoints(&low)).state, StateValue::Ok);
        // Both busy for one period: not yet; for two: ALARM.
        log.push(tick(3, &[("g", "i-1", 95.0), ("g", "i-2", 90.0)]));
        assert_eq!(judge(&high, &log.datapoints(&high)).state, StateValue::Ok);
        log.push(tick(4, &[("g", "i-1", 95.0), ("g", "i-2", 90.0)]));
        let judged = judge(&high, &log.datapoints(&high));
        assert_eq!(judged.state, StateValue::Alarm);
        assert!(
            judged
                .reason
                .starts_with("Threshold Crossed: 2 out of the last 2 datapoints [92.5"),
            "{}",
            judged.reason
        );
        let data: serde_json::Value = serde_json::from_str(&judged.reason_data).unwrap();
        assert_eq!(data["recentDatapoints"], serde_json::json!([92.5, 92.5]));
        // Idle again for two periods: the low alarm fires.
        log.push(tick(
            5,
            &[("g", "i-1", 1.0), ("g", "i-2", 2.0), ("g", "i-3", 3.0)],
        ));
        log.push(tick(
            6,
            &[("g", "i-1", 1.0), ("g", "i-2", 2.0), ("g", "i-3", 3.0)],
        ));
        assert_eq!(judge(&high, &log.datapoints(&high)).state, StateValue::Ok);
        assert_eq!(judge(&low, &log.datapoints(&low)).state, StateValue::Alarm);
    }

    #[test]
    fn statistics_periods_and_m_of_n() {
        let mut max = alarm(Comparison::GreaterOrEqual, 90.0);
        max.statistic = Stat::Maximum;
        max.evaluation_periods = 3;
        max.datapoints_to_alarm = 2;
        let mut log = MetricLog::default();
        log.push(tick(1, &[("g", "i-1", 95.0), ("g", "i-2", 0.0)]));
        log.push(tick(2, &[("g", "i-1", 10.0), ("g", "i-2", 0.0)]));
        assert_eq!(judge(&max, &log.datapoints(&max)).state, StateValue::Ok);
        log.push(tick(3, &[("g", "i-1", 10.0), ("g", "i-2", 90.0)]));
        assert_eq!(judge(&max, &log.datapoints(&max)).state, StateValue::Alarm);
        // Two-minute periods: minutes 2+3 and then 1 alone (4 is missing).
        let mut two = alarm(Comparison::Greater, 40.0);
        two.period_ticks = 2;
        let points = log.datapoints(&two);
        assert_eq!(points.len(), 2);
        assert_eq!(points[1].map(|p| p.value), Some(27.5));
        assert_eq!(points[0].map(|p| p.value), Some(47.5));
        // An instance alarm sees only its instance.
        let mut one = alarm(Comparison::Greater, 50.0);
        one.subject = Subject::Instance("i-2".into());
        one.evaluation_periods = 1;
        one.datapoints_to_alarm = 1;
        assert_eq!(judge(&one, &log.datapoints(&one)).state, StateValue::Alarm);
        assert_eq!(Stat::SampleCount.of(&[1.0, 2.0]), Some(2.0));
        assert_eq!(Stat::Minimum.of(&[3.0, 2.0]), Some(2.0));
        assert_eq!(Stat::Sum.of(&[]), None);
    }

    #[test]
    fn dimensions_and_policies_are_read_from_arns() {
        assert_eq!(
            load_balancer_dimension(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188"
            ),
            Some("app/web/50dc6c495c0c9188")
        );
        assert!(is_scaling_policy(
            "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:1b2c:autoScalingGroupName/g:policyName/out"
        ));
        assert!(!is_scaling_policy(
            "arn:aws:sns:us-east-1:123456789012:topic"
        ));
        assert_eq!(
            target_group_dimension(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-tg/943f017f100becff"
            ),
            Some("targetgroup/web-tg/943f017f100becff")
        );
    }
}
