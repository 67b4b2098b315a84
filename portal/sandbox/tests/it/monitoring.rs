//! CloudWatch as the data plane plays it: EC2's metrics at the instance's
//! monitoring resolution, visible only after the ingestion delay, and the
//! load balancer's per-target-group metrics.

use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use chrono::Utc;

use crate::common::*;

/// Fifty times AWS's pace: a minute is 1.2 s, basic monitoring's five 6 s.
const SCALE: f64 = 0.02;

/// `(timestamp in seconds, value)` of every datapoint of one metric in the
/// last hour, one per second (period 1), through the gateway.
async fn datapoints(
    sandbox: &Sandbox,
    namespace: &str,
    name: &str,
    dimensions: &[(&str, &str)],
) -> Vec<(i64, f64)> {
    let metric = Metric::builder()
        .namespace(namespace)
        .metric_name(name)
        .set_dimensions(Some(
            dimensions
                .iter()
                .map(|(n, v)| Dimension::builder().name(*n).value(*v).build())
                .collect(),
        ))
        .build();
    let now = Utc::now().timestamp();
    let out = sandbox
        .cloudwatch
        .get_metric_data()
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("m")
                .metric_stat(
                    MetricStat::builder()
                        .metric(metric)
                        .period(1)
                        .stat("Maximum")
                        .build(),
                )
                .build(),
        )
        .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
            now - 3600,
        ))
        .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
            now + 60,
        ))
        .send()
        .await
        .expect("GetMetricData");
    let mut points: Vec<(i64, f64)> = out
        .metric_data_results()
        .iter()
        .flat_map(|r| {
            r.timestamps()
                .iter()
                .map(|t| t.secs())
                .zip(r.values().iter().copied())
        })
        .collect();
    points.sort_by_key(|p| p.0);
    points
}

/// Waits until `done` holds for what `read` gives, up to `limit`.
async fn until<T: std::fmt::Debug, F, Fut>(
    limit: Duration,
    mut read: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        let value = read().await;
        if done(&value) {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "never: {value:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_metrics_follow_the_monitoring_choice_and_arrive_late() {
    // A launch template without detailed monitoring (EC2's default).
    let mut sandbox = Sandbox::start_at("metrics", SCALE).await;
    sandbox.basic_monitoring = true;
    sandbox.deploy("metrics").await;
    let (basic, _) = sandbox.until_healthy(2, Duration::from_secs(30)).await;
    let tg = sandbox
        .target_group
        .split_once(":targetgroup/")
        .map(|(_, rest)| format!("targetgroup/{rest}"))
        .unwrap();
    let lb = sandbox
        .load_balancer
        .split_once(":loadbalancer/")
        .map(|(_, rest)| rest.to_string())
        .unwrap();
    let elb_dims = [("TargetGroup", tg.as_str()), ("LoadBalancer", lb.as_str())];
    let cpu = |id: String| {
        let sandbox = &sandbox;
        async move { datapoints(sandbox, "AWS/EC2", "CPUUtilization", &[("InstanceId", &id)]).await }
    };

    // The load balancer's metrics come every minute: once six minutes are
    // in, a basic-monitoring instance has sent at most two datapoints.
    let healthy = until(
        Duration::from_secs(40),
        || {
            datapoints(
                &sandbox,
                "AWS/ApplicationELB",
                "HealthyHostCount",
                &elb_dims,
            )
        },
        |points| points.len() >= 6,
    )
    .await;
    let read_at = Utc::now().timestamp_millis() as f64 / 1000.0;
    assert!(
        healthy.iter().any(|p| p.1 == 2.0),
        "HealthyHostCount {healthy:?}"
    );
    let errors = datapoints(
        &sandbox,
        "AWS/ApplicationELB",
        "HTTPCode_Target_5XX_Count",
        &elb_dims,
    )
    .await;
    assert!(
        !errors.is_empty() && errors.iter().all(|p| p.1 == 0.0),
        "HTTPCode_Target_5XX_Count {errors:?}"
    );
    let basic_before = cpu(basic[0].clone()).await.len();
    assert!(
        basic_before <= 2,
        "basic monitoring sent {basic_before} in six minutes"
    );
    // Nothing is visible before the ingestion delay (a minute, 1.2 s) has
    // passed since the minute it was measured in.
    let newest = healthy.last().unwrap().0 as f64;
    assert!(
        read_at - newest >= 0.8 * 60.0 * SCALE,
        "a datapoint {:.2} s old is already visible",
        read_at - newest
    );

    // A new template version turns detailed monitoring on; the instance
    // the group launches from it sends every minute.
    sandbox
        .ec2
        .create_launch_template_version()
        .launch_template_name("metrics-lt")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id("ami-12c6146b")
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .monitoring(
                    aws_sdk_ec2::types::LaunchTemplatesMonitoringRequest::builder()
                        .enabled(true)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    sandbox
        .asg
        .set_desired_capacity()
        .auto_scaling_group_name("metrics-asg")
        .desired_capacity(3)
        .send()
        .await
        .unwrap();
    let (three, _) = sandbox.until_healthy(3, Duration::from_secs(30)).await;
    let detailed = three.iter().find(|id| !basic.contains(id)).unwrap().clone();
    let basic_at_start = cpu(basic[0].clone()).await.len();
    until(
        Duration::from_secs(40),
        || cpu(detailed.clone()),
        |p| p.len() >= 4,
    )
    .await;
    let basic_now = cpu(basic[0].clone()).await.len();
    // Four minutes of detailed datapoints: the basic instance sent one more
    // at most (one every five minutes).
    assert!(
        basic_now <= basic_at_start + 1,
        "basic {basic_at_start} -> {basic_now} while detailed sent four"
    );
    sandbox.stop_and_check_clean().await;
}
