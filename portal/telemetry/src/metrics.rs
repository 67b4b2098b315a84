//! One `GetMetricData` per poll: the group's CPU, each instance's CPU and
//! each instance's own `CloudPulse` metrics, as samples at CloudWatch's
//! timestamps.

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use chrono::{DateTime, TimeDelta, Utc};

use crate::db::Sample;

/// The instance service's namespace.
pub const INSTANCE_NAMESPACE: &str = "CloudPulse";

/// `(series prefix, namespace, metric, statistic)` read for every instance.
const PER_INSTANCE: [(&str, &str, &str, &str); 4] = [
    ("cpu", "AWS/EC2", "CPUUtilization", "Average"),
    ("requests", INSTANCE_NAMESPACE, "RequestCount", "Sum"),
    (
        "latency",
        INSTANCE_NAMESPACE,
        "AverageResponseTime",
        "Average",
    ),
    ("memory", INSTANCE_NAMESPACE, "MemoryUtilization", "Average"),
];

/// A CloudWatch period for a sandbox whose minute lasts `60 × scale`
/// seconds: the nearest allowed one (1, 5, 10, 30 or a multiple of 60).
pub fn period_for(scale: f64) -> i32 {
    let seconds = 60.0 * scale;
    if seconds >= 60.0 {
        return ((seconds / 60.0).round() as i32).max(1) * 60;
    }
    [1, 5, 10, 30, 60]
        .into_iter()
        .min_by(|a, b| {
            (f64::from(*a) - seconds)
                .abs()
                .total_cmp(&(f64::from(*b) - seconds).abs())
        })
        .unwrap_or(60)
}

fn query(
    id: String,
    namespace: &str,
    name: &str,
    stat: &str,
    dimension: (&str, &str),
    period: i32,
) -> MetricDataQuery {
    let metric = Metric::builder()
        .namespace(namespace)
        .metric_name(name)
        .dimensions(
            Dimension::builder()
                .name(dimension.0)
                .value(dimension.1)
                .build(),
        )
        .build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(period)
                .stat(stat)
                .build(),
        )
        .return_data(true)
        .build()
}

/// The load balancer's requests, health checks excluded (what tells an idle
/// deployment from a used one).
pub const LB_REQUESTS: &str = "lb_requests";

/// The `LoadBalancer` dimension of an ALB: its ARN after `loadbalancer/`.
pub fn load_balancer_dimension(arn: &str) -> Option<&str> {
    arn.split_once(":loadbalancer/").map(|(_, rest)| rest)
}

/// The queries of one poll and, by query id, the series each one fills.
pub fn queries(
    group: &str,
    load_balancer: Option<&str>,
    instances: &[String],
    period: i32,
) -> (Vec<MetricDataQuery>, Vec<(String, String)>) {
    let mut queries = vec![query(
        "group_cpu".into(),
        "AWS/EC2",
        "CPUUtilization",
        "Average",
        ("AutoScalingGroupName", group),
        period,
    )];
    let mut series = vec![("group_cpu".to_string(), "cpu".to_string())];
    if let Some(name) = load_balancer {
        queries.push(query(
            "lb_requests".into(),
            "AWS/ApplicationELB",
            "RequestCount",
            "Sum",
            ("LoadBalancer", name),
            period,
        ));
        series.push(("lb_requests".into(), LB_REQUESTS.into()));
    }
    for (n, instance) in instances.iter().enumerate() {
        for (prefix, namespace, name, stat) in PER_INSTANCE {
            // Ids must start with a lower-case letter and hold only
            // letters, digits and underscores.
            let id = format!("{prefix}_{n}");
            queries.push(query(
                id.clone(),
                namespace,
                name,
                stat,
                ("InstanceId", instance),
                period,
            ));
            series.push((id, format!("{prefix}:{instance}")));
        }
    }
    (queries, series)
}

/// The window one poll asks for: enough periods back to fill the buckets
/// that were still open at the previous poll, starting on a period's
/// boundary so that every poll sees the same buckets.
pub fn window(now: DateTime<Utc>, period: i32) -> (DateTime<Utc>, DateTime<Utc>) {
    let period = i64::from(period.max(1));
    let start = (now.timestamp() - period * 5).div_euclid(period) * period;
    (
        DateTime::from_timestamp(start, 0).unwrap_or(now - TimeDelta::seconds(period * 5)),
        now,
    )
}

/// The samples in a `GetMetricData` answer.
pub fn samples(
    results: &[aws_sdk_cloudwatch::types::MetricDataResult],
    series: &[(String, String)],
) -> Vec<Sample> {
    let mut out = Vec::new();
    for result in results {
        let Some(name) = result
            .id()
            .and_then(|id| series.iter().find(|(q, _)| q == id))
            .map(|(_, s)| s)
        else {
            continue;
        };
        for (at, value) in result.timestamps().iter().zip(result.values()) {
            if value.is_finite() {
                out.push(Sample::new(name.clone(), at.secs(), *value));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_start_on_a_period_boundary() {
        let now = DateTime::from_timestamp(1_000_007, 500_000_000).unwrap();
        let (from, to) = window(now, 5);
        assert_eq!(from.timestamp(), 999_980);
        assert_eq!(to, now);
        assert_eq!(window(now, 60).0.timestamp() % 60, 0);
    }

    #[test]
    fn periods_are_ones_cloudwatch_accepts() {
        assert_eq!(period_for(1.0), 60);
        assert_eq!(period_for(5.0), 300);
        assert_eq!(period_for(0.2), 10);
        assert_eq!(period_for(0.1), 5);
        assert_eq!(period_for(0.01), 1);
        assert_eq!(period_for(0.5), 30);
    }

    #[test]
    fn one_query_for_the_group_and_four_per_instance() {
        let (queries, series) = queries("g", None, &["i-a".into(), "i-b".into()], 60);
        assert_eq!(queries.len(), 9);
        assert_eq!(series.len(), 9);
        assert!(series.contains(&("memory_1".into(), "memory:i-b".into())));
        for q in &queries {
            let id = q.id().unwrap();
            assert!(id.starts_with(|c: char| c.is_ascii_lowercase()), "{id}");
        }
        let arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/demo-alb/50dc6c495c0c9188";
        let name = load_balancer_dimension(arn);
        assert_eq!(name, Some("app/demo-alb/50dc6c495c0c9188"));
        let (with_lb, series) = super::queries("g", name, &["i-a".into()], 60);
        assert_eq!(with_lb.len(), 6);
        assert!(series.contains(&("lb_requests".into(), LB_REQUESTS.into())));
    }
}
