//! The article's scaling experiment in the sandbox, end to end: stress CPU
//! through SSM Run Command, watch the high-CPU alarm fire and the group grow
//! to three, then, when the stress ends, the low-CPU alarm shrink it back to
//! two. Everything goes through the same AWS calls as on AWS; the data plane
//! measures the processes' real CPU, publishes it and evaluates the alarms.
//!
//! This binary holds this one test, so that no other test competes for the
//! machine's CPU while the stress runs: the alarm is about real load. (The
//! rest of the sandbox's tests share the binary `tests/it`.)

// The harness of `tests/it`; this binary uses a part of it.
#[allow(dead_code)]
#[path = "it/common.rs"]
mod common;

use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use common::*;

/// What only this test reads, through the gateway as the portal does.
impl Sandbox {
    /// The group's desired capacity, through the gateway.
    pub async fn desired(&self, group: &str) -> i32 {
        self.asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .expect("DescribeAutoScalingGroups")
            .auto_scaling_groups()[0]
            .desired_capacity()
            .unwrap_or_default()
    }

    /// An alarm's state, through the gateway.
    pub async fn alarm_state(&self, alarm: &str) -> String {
        self.cloudwatch
            .describe_alarms()
            .alarm_names(alarm)
            .send()
            .await
            .expect("DescribeAlarms")
            .metric_alarms()
            .first()
            .and_then(|a| a.state_value())
            .map(|s| s.as_str().to_string())
            .unwrap_or_default()
    }
}

/// Twenty times AWS's pace: a minute is 3 s, the 300 s cooldown 15 s.
const SCALE: f64 = 0.05;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_fires_the_high_cpu_alarm_scales_out_and_back_in() {
    let started = Instant::now();
    let mut sandbox = Sandbox::start_at("scale", SCALE).await;
    sandbox.deploy("scale").await;
    let group = "scale-asg";
    let (first, _) = sandbox.until_healthy(2, Duration::from_secs(30)).await;
    assert_eq!(sandbox.desired(group).await, 2);

    // Idle, the group's average is far below both thresholds.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sandbox.alarm_state("scale-low-cpu").await != "ALARM" {
        assert!(Instant::now() < deadline, "an idle group never read idle");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(sandbox.alarm_state("scale-high-cpu").await, "OK");

    // Stress both instances (one of two at 100 % is an average of 50, which
    // does not cross 70, on AWS as here).
    let command = sandbox
        .send_command(&first, "cloudpulse-instance stress --seconds 15")
        .await;
    let stressed = Instant::now();
    let deadline = stressed + Duration::from_secs(30);
    let mut busiest = 0.0f64;
    while sandbox.desired(group).await < 3 {
        for id in &first {
            busiest = busiest.max(sandbox.dataplane.cpu(id).unwrap_or(0.0));
        }
        assert!(
            Instant::now() < deadline,
            "never scaled out; high alarm {}, busiest instance read {busiest:.0} %",
            sandbox.alarm_state("scale-high-cpu").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scaled_out = stressed.elapsed();
    assert!(busiest > 70.0, "{busiest}");
    assert_eq!(sandbox.alarm_state("scale-high-cpu").await, "ALARM");
    let (three, _) = sandbox.until_healthy(3, Duration::from_secs(30)).await;
    let third_healthy = stressed.elapsed();

    // When the stress is over the low alarm brings it back to two, once the
    // scale-out's cooldown has passed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sandbox.desired(group).await != 2 {
        assert!(
            Instant::now() < deadline,
            "never scaled back in; low alarm {}",
            sandbox.alarm_state("scale-low-cpu").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scaled_in = stressed.elapsed();
    let (two, _) = sandbox.until_healthy(2, Duration::from_secs(30)).await;
    assert!(two.iter().all(|id| three.contains(id)));

    // The record, through the gateway, as the portal reads it.
    let activities = sandbox
        .asg
        .describe_scaling_activities()
        .auto_scaling_group_name(group)
        .send()
        .await
        .unwrap();
    let causes: Vec<&str> = activities
        .activities()
        .iter()
        .filter_map(|a| a.cause())
        .collect();
    for wanted in [
        "a monitor alarm scale-high-cpu in state ALARM triggered policy scale-out changing the desired capacity from 2 to 3",
        "a monitor alarm scale-low-cpu in state ALARM triggered policy scale-in changing the desired capacity from 3 to 2",
    ] {
        assert!(
            causes.iter().any(|c| c.contains(wanted)),
            "no activity says {wanted:?}: {causes:#?}"
        );
    }
    let history = sandbox
        .cloudwatch
        .describe_alarm_history()
        .alarm_name("scale-high-cpu")
        .send()
        .await
        .unwrap();
    let summaries: Vec<&str> = history
        .alarm_history_items()
        .iter()
        .filter_map(|h| h.history_summary())
        .collect();
    assert!(
        summaries.iter().any(|s| s.ends_with("to ALARM")),
        "{summaries:?}"
    );
    assert!(
        summaries
            .iter()
            .any(|s| s.starts_with("Successfully executed action")),
        "{summaries:?}"
    );
    // EC2's metric is in CloudWatch, per group and per instance.
    let now = aws_sdk_cloudwatch::primitives::DateTime::from_secs(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    );
    let hour_ago = aws_sdk_cloudwatch::primitives::DateTime::from_secs(now.secs() - 3600);
    for (name, value) in [("AutoScalingGroupName", group), ("InstanceId", &first[0])] {
        let stats = sandbox
            .cloudwatch
            .get_metric_statistics()
            .namespace("AWS/EC2")
            .metric_name("CPUUtilization")
            .dimensions(Dimension::builder().name(name).value(value).build())
            .start_time(hour_ago)
            .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
                now.secs() + 60,
            ))
            .period(60)
            .statistics(Statistic::Maximum)
            .send()
            .await
            .unwrap();
        let peak = stats
            .datapoints()
            .iter()
            .filter_map(|d| d.maximum())
            .fold(0.0, f64::max);
        assert!(peak > 70.0, "{name}={value}: peak {peak}");
    }
    eprintln!(
        "command {command}: scaled out {scaled_out:?} after the stress began, third instance healthy at {third_healthy:?}, back to two at {scaled_in:?}"
    );
    sandbox.stop_and_check_clean().await;
    eprintln!("whole test {:?}", started.elapsed());
}
