//! Publishing to CloudWatch: one `PutMetricData` per interval, from a
//! background task, so a CloudWatch outage never slows a request.
//!
//! The original's three metrics keep their names and units, with the
//! `InstanceId` dimension (`"unknown"` until IMDS answers); p99 latency,
//! memory and CPU are added, and every metric is sent a second time with an
//! `AutoScalingGroupName` dimension so the group can be graphed as a whole.

use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_sdk_cloudwatch::Client as CloudWatchClient;
use rand::Rng;

use crate::host::{read_memory, Host};
use crate::identity::IdentitySource;
use crate::traffic::{Tally, Traffic};

/// The longest wait between two attempts, as in the original.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One interval's figures, before they become datums.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub request_count: f64,
    pub average_ms: f64,
    pub error_percent: f64,
    pub p99_ms: Option<f64>,
    pub memory_bytes: Option<f64>,
    pub memory_percent: Option<f64>,
    pub cpu_percent: Option<f64>,
}

impl Sample {
    pub fn from_tally(tally: &Tally, host: &Host) -> Self {
        let memory = read_memory();
        Sample {
            request_count: tally.count as f64,
            average_ms: tally.average_ms(),
            error_percent: tally.error_percent(),
            p99_ms: tally.latency.quantile_ms(0.99),
            memory_bytes: memory.process_rss.map(|b| b as f64),
            memory_percent: memory.used_percent(),
            cpu_percent: host.cpu_percent(),
        }
    }

    /// The datums for one `PutMetricData`: every metric once per dimension.
    pub fn datums(&self, instance_id: &str, asg_name: &str) -> Vec<MetricDatum> {
        let metrics: [(&str, StandardUnit, Option<f64>); 7] = [
            (
                "RequestCount",
                StandardUnit::Count,
                Some(self.request_count),
            ),
            (
                "AverageResponseTime",
                StandardUnit::Milliseconds,
                Some(self.average_ms),
            ),
            ("ErrorRate", StandardUnit::Percent, Some(self.error_percent)),
            ("P99ResponseTime", StandardUnit::Milliseconds, self.p99_ms),
            ("MemoryUsed", StandardUnit::Bytes, self.memory_bytes),
            (
                "MemoryUtilization",
                StandardUnit::Percent,
                self.memory_percent,
            ),
            ("CPUUtilization", StandardUnit::Percent, self.cpu_percent),
        ];
        let dimensions = [
            ("InstanceId", instance_id),
            ("AutoScalingGroupName", asg_name),
        ];
        dimensions
            .iter()
            .flat_map(|(dimension, value)| {
                metrics.iter().filter_map(move |(name, unit, metric)| {
                    metric.map(|metric| {
                        MetricDatum::builder()
                            .metric_name(*name)
                            .unit(unit.clone())
                            .value(metric)
                            .dimensions(Dimension::builder().name(*dimension).value(*value).build())
                            .build()
                    })
                })
            })
            .collect()
    }
}

/// Delay before retry number `attempt` (0-based): base·2^attempt plus up to
/// half a base of jitter, at most ten seconds.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exponential = base.saturating_mul(2u32.saturating_pow(attempt));
    let jitter = base.mul_f64(rand::rng().random_range(0.0..0.5));
    exponential.saturating_add(jitter).min(MAX_BACKOFF)
}

pub struct Publisher {
    pub client: CloudWatchClient,
    pub namespace: String,
    pub asg_name: String,
    pub interval: Duration,
    pub retries: u32,
    pub retry_base: Duration,
    pub call_timeout: Duration,
    pub traffic: Traffic,
    pub host: Host,
    pub identity: IdentitySource,
}

impl Publisher {
    /// Publishes every interval, the first one interval after start.
    pub fn spawn(self: std::sync::Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let start = tokio::time::Instant::now() + self.interval;
            let mut tick = tokio::time::interval_at(start, self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.publish_once().await;
            }
        })
    }

    /// Sends the partial interval at shutdown (the original dropped it):
    /// one attempt, no retries, within `limit`.
    pub async fn publish_final(&self, limit: Duration) {
        if limit < Duration::from_millis(50) {
            return;
        }
        let Some(tally) = self.traffic.take_interval() else {
            return;
        };
        let datums = self.datums(&tally);
        let call = self
            .client
            .put_metric_data()
            .namespace(&self.namespace)
            .set_metric_data(Some(datums))
            .send();
        match tokio::time::timeout(limit.min(self.call_timeout), call).await {
            Ok(Ok(_)) => tracing::info!("final metrics published"),
            Ok(Err(e)) => {
                tracing::warn!(error = %crate::group::sdk_message(&e), "final metrics lost")
            }
            Err(_) => tracing::warn!("final metrics lost: no answer in time"),
        }
    }

    fn datums(&self, tally: &Tally) -> Vec<MetricDatum> {
        let sample = Sample::from_tally(tally, &self.host);
        let instance_id = self
            .identity
            .known()
            .map(|i| i.instance_id)
            .unwrap_or_else(|| "unknown".into());
        sample.datums(&instance_id, &self.asg_name)
    }

    pub async fn publish_once(&self) {
        let Some(tally) = self.traffic.take_interval() else {
            return;
        };
        let datums = self.datums(&tally);
        let mut attempt = 0;
        loop {
            let call = self
                .client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(datums.clone()))
                .send();
            let error = match tokio::time::timeout(self.call_timeout, call).await {
                Ok(Ok(_)) => {
                    tracing::debug!(datums = datums.len(), "metrics published");
                    return;
                }
                Ok(Err(e)) => crate::group::sdk_message(&e),
                Err(_) => format!("no answer within {:?}", self.call_timeout),
            };
            if attempt >= self.retries {
                tracing::error!(%error, "Retry exhausted after {} attempts: metrics for this interval are lost", attempt);
                return;
            }
            tracing::warn!(%error, attempt, "PutMetricData failed; retrying");
            tokio::time::sleep(backoff(self.retry_base, attempt)).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datums_carry_both_dimensions() {
        let sample = Sample {
            request_count: 3.0,
            average_ms: 1.5,
            error_percent: 0.0,
            p99_ms: None,
            memory_bytes: Some(1024.0),
            memory_percent: Some(12.5),
            cpu_percent: Some(3.0),
        };
        let datums = sample.datums("i-1", "asg");
        assert_eq!(datums.len(), 12);
        let names: Vec<_> = datums
            .iter()
            .map(|d| {
                (
                    d.metric_name().unwrap_or_default(),
                    d.dimensions()[0].name().unwrap_or_default(),
                )
            })
            .collect();
        assert!(names.contains(&("RequestCount", "InstanceId")));
        assert!(names.contains(&("CPUUtilization", "AutoScalingGroupName")));
        assert!(!names.iter().any(|(n, _)| *n == "P99ResponseTime"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(1000);
        let first = backoff(base, 0);
        assert!(first >= base && first < base.mul_f64(1.5));
        let third = backoff(base, 2);
        assert!(third >= base * 4);
        assert_eq!(backoff(base, 20), MAX_BACKOFF);
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
    }
}
