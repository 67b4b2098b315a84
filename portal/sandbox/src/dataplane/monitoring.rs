//! CloudWatch's part of the data plane: EC2's and the load balancer's own
//! metrics, and alarm evaluation with its actions.
//!
//! Once a (scaled) minute the data plane measures every instance's CPU
//! ([`super::cpu`]) and publishes it to moto as EC2 would: `AWS/EC2
//! CPUUtilization` per `InstanceId` and, averaged, per
//! `AutoScalingGroupName`; each local load balancer's requests go out as
//! `AWS/ApplicationELB RequestCount`. It keeps the same numbers in memory
//! and evaluates every alarm on them like CloudWatch: the alarm's statistic
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

/// One instance's CPU in one (scaled) minute.
#[derive(Clone, Debug)]
pub(crate) struct CpuSample {
    pub group: String,
    pub instance: String,
    pub percent: f64,
}

/// One (scaled) minute's samples.
#[derive(Clone, Debug)]
pub(crate) struct Tick {
    pub at: DateTime<Utc>,
    pub cpu: Vec<CpuSample>,
}

/// The recent minutes, oldest first.
#[derive(Debug, Default)]
pub(crate) struct MetricLog {
    ticks: VecDeque<Tick>,
    /// Ticks recorded so far, for alarms whose period spans several.
    count: u64,
}

impl MetricLog {
    pub fn push(&mut self, tick: Tick) {
        if self.ticks.len() == KEPT_TICKS {
            self.ticks.pop_front();
        }
        self.ticks.push_back(tick);
        self.count += 1;
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

impl Reconciler {
    /// Once a (scaled) minute: measure, publish, evaluate.
    pub(super) async fn monitor(&mut self) {
        let snapshot = ProcSnapshot::take();
        let mut cpu = Vec::new();
        for (id, running) in &self.running {
            let meter = self.meters.entry(id.clone()).or_default();
            if let Some(percent) = meter.sample(running.process.pid(), &snapshot) {
                cpu.push(CpuSample {
                    group: running.asg_name.clone(),
                    instance: id.clone(),
                    percent,
                });
            }
        }
        self.meters.retain(|id, _| self.running.contains_key(id));
        *super::write(&self.board.cpu) = cpu
            .iter()
            .map(|s| (s.instance.clone(), s.percent))
            .collect();
        let tick = Tick {
            at: Utc::now(),
            cpu,
        };
        if let Err(error) = self.publish(&tick).await {
            tracing::warn!(%error, "cannot publish the sandbox's EC2 and ELB metrics");
        }
        self.metrics.push(tick);
        if let Err(error) = self.evaluate_alarms().await {
            tracing::warn!(%error, "cannot evaluate the sandbox's alarms");
        }
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
        let mut elb = Vec::new();
        let counters: Vec<(String, u64)> = super::read(&self.board.balancers)
            .iter()
            .map(|(arn, entry)| {
                (
                    arn.clone(),
                    entry.requests.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect();
        for (arn, total) in counters {
            let last = self.requests_seen.insert(arn.clone(), total).unwrap_or(0);
            if let Some(name) = load_balancer_dimension(&arn) {
                elb.push(datum(
                    "RequestCount",
                    dimension("LoadBalancer", name),
                    total.saturating_sub(last) as f64,
                    StandardUnit::Count,
                ));
            }
        }
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
            // An alarm is evaluated once per period of its own.
            if !self
                .metrics
                .count
                .is_multiple_of(spec.period_ticks.max(1) as u64)
            {
                continue;
            }
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
        }
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
    }
}
