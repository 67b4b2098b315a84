//! CloudWatch against moto. These fail if an `aws-sdk-cloudwatch` bump
//! changes the wire protocol to one moto cannot parse (1.100.0 and later
//! speak Smithy RPC v2 CBOR; the workspace pins `=1.99.0`, AWS query).

use crate::common;

use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::{
    Dimension, DimensionFilter, Metric, MetricDataQuery, MetricDatum, MetricStat, StandardUnit,
};
use aws_smithy_types::DateTime;
use cloudpulse_sandbox::MotoServer;
use common::*;

/// The sum of `RequestCount` in `namespace` for one dimension over the last
/// ten minutes, by the minute.
async fn request_count(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    (name, value): (&str, &str),
) -> f64 {
    let now = std::time::SystemTime::now();
    let stats = cloudwatch
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name("RequestCount")
        .dimensions(Dimension::builder().name(name).value(value).build())
        .start_time(DateTime::from(now - Duration::from_secs(600)))
        .end_time(DateTime::from(now + Duration::from_secs(60)))
        .period(60)
        .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
        .send()
        .await
        .expect("GetMetricStatistics");
    stats.datapoints().iter().filter_map(|d| d.sum()).sum()
}

#[tokio::test]
async fn pinned_cloudwatch_sdk_round_trips_through_moto() {
    let moto = MotoServer::start().await.expect("start moto");
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&moto.sdk_config());
    let dimension = Dimension::builder().name("InstanceId").value("i-1").build();
    cloudwatch
        .put_metric_data()
        .namespace("PinCheck")
        .metric_data(
            MetricDatum::builder()
                .metric_name("RequestCount")
                .unit(StandardUnit::Count)
                .value(7.0)
                .dimensions(dimension.clone())
                .build(),
        )
        .send()
        .await
        .expect("PutMetricData accepted by moto");
    let listed = cloudwatch
        .list_metrics()
        .namespace("PinCheck")
        .send()
        .await
        .expect("ListMetrics parsed");
    assert_eq!(listed.metrics().len(), 1);
    assert_eq!(listed.metrics()[0].metric_name(), Some("RequestCount"));

    let now = std::time::SystemTime::now();
    let data = cloudwatch
        .get_metric_data()
        .start_time(DateTime::from(now - Duration::from_secs(600)))
        .end_time(DateTime::from(now + Duration::from_secs(60)))
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("q")
                .metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace("PinCheck")
                                .metric_name("RequestCount")
                                .dimensions(dimension)
                                .build(),
                        )
                        .period(60)
                        .stat("Sum")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("GetMetricData parsed");
    let values: f64 = data.metric_data_results()[0].values().iter().sum();
    assert_eq!(values, 7.0);
    moto.stop().await;
}

#[tokio::test]
async fn the_service_publishes_its_metrics_to_moto() {
    let moto = moto_with_group("metrics-asg").await;
    let imds = Imds::start(21600).await;
    let service = Service::start(&[
        ("ASG_NAME", "metrics-asg"),
        ("AWS_ENDPOINT_URL", &moto.endpoint()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint),
        ("METRICS_INTERVAL_MS", "700"),
        ("METRICS_NAMESPACE", "CloudPulseTest"),
    ])
    .await;
    for _ in 0..5 {
        client().get(service.url("/health")).send().await.unwrap();
    }
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&moto.sdk_config());
    let deadline = Instant::now() + Duration::from_secs(20);
    let wanted = [
        "RequestCount",
        "AverageResponseTime",
        "ErrorRate",
        "P99ResponseTime",
        "MemoryUsed",
        "MemoryUtilization",
        "CPUUtilization",
    ];
    loop {
        let mut found = Vec::new();
        for (name, value) in [
            ("InstanceId", INSTANCE_ID),
            ("AutoScalingGroupName", "metrics-asg"),
        ] {
            let listed = cloudwatch
                .list_metrics()
                .namespace("CloudPulseTest")
                .dimensions(DimensionFilter::builder().name(name).value(value).build())
                .send()
                .await
                .expect("ListMetrics");
            for metric in listed.metrics() {
                found.push((name, metric.metric_name().unwrap_or_default().to_string()));
            }
        }
        let complete = wanted.iter().all(|metric| {
            found.contains(&("InstanceId", metric.to_string()))
                && found.contains(&("AutoScalingGroupName", metric.to_string()))
        });
        if complete {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics missing; found {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The requests made above were counted.
    let sum = request_count(&cloudwatch, "CloudPulseTest", ("InstanceId", INSTANCE_ID)).await;
    assert!(sum >= 5.0, "{sum}");
    drop(service);
    moto.stop().await;
}

#[tokio::test]
async fn sigterm_publishes_the_partial_interval() {
    let moto = moto_with_group("final-asg").await;
    let imds = Imds::start(21600).await;
    let mut service = Service::start(&[
        ("ASG_NAME", "final-asg"),
        ("AWS_ENDPOINT_URL", &moto.endpoint()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint),
        ("METRICS_INTERVAL_MS", "600000"),
        ("METRICS_NAMESPACE", "CloudPulseFinal"),
        ("DRAIN_GRACE_MS", "0"),
        ("DRAIN_TIMEOUT_MS", "5000"),
    ])
    .await;
    for _ in 0..3 {
        client().get(service.url("/health")).send().await.unwrap();
    }
    // The identity must be known for the InstanceId dimension.
    client()
        .get(service.url("/api/status"))
        .send()
        .await
        .unwrap();
    service.sigterm();
    let exit = service
        .wait_exit(Duration::from_secs(8))
        .await
        .expect("exit");
    assert!(exit.success());

    let cloudwatch = aws_sdk_cloudwatch::Client::new(&moto.sdk_config());
    let sum = request_count(
        &cloudwatch,
        "CloudPulseFinal",
        ("AutoScalingGroupName", "final-asg"),
    )
    .await;
    assert_eq!(sum, 4.0, "{:?}", service.log());
    moto.stop().await;
}
