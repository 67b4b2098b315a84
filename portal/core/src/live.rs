//! What the portal has measured of a deployment: its time series, its
//! uptime, its cost and its instances. The telemetry poller writes them; the
//! pages and the REST API read them in these shapes.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::DeploymentId;
use crate::model::EventView;
use crate::pricing::CostCategory;

/// How far back a chart looks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MetricsRange {
    #[serde(rename = "15m")]
    Minutes15,
    #[default]
    #[serde(rename = "1h")]
    Hour1,
    #[serde(rename = "6h")]
    Hours6,
    #[serde(rename = "24h")]
    Hours24,
    /// Since the deployment was created.
    #[serde(rename = "all")]
    All,
}

impl MetricsRange {
    pub const ALL: [MetricsRange; 5] = [
        MetricsRange::Minutes15,
        MetricsRange::Hour1,
        MetricsRange::Hours6,
        MetricsRange::Hours24,
        MetricsRange::All,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MetricsRange::Minutes15 => "15m",
            MetricsRange::Hour1 => "1h",
            MetricsRange::Hours6 => "6h",
            MetricsRange::Hours24 => "24h",
            MetricsRange::All => "all",
        }
    }

    /// The span, or `None` for everything.
    pub fn span(self) -> Option<TimeDelta> {
        match self {
            MetricsRange::Minutes15 => Some(TimeDelta::minutes(15)),
            MetricsRange::Hour1 => Some(TimeDelta::hours(1)),
            MetricsRange::Hours6 => Some(TimeDelta::hours(6)),
            MetricsRange::Hours24 => Some(TimeDelta::hours(24)),
            MetricsRange::All => None,
        }
    }
}

impl fmt::Display for MetricsRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MetricsRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        MetricsRange::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or_else(|| format!("unknown range {text:?}; use one of 15m, 1h, 6h, 24h or all"))
    }
}

/// One time series: `[unix seconds, value]` pairs in time order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// `desired`, `in_service`, `healthy_targets`, `cpu`, `cpu:i-…`, …
    pub name: String,
    pub points: Vec<(i64, f64)>,
}

/// Something that happened at one moment, drawn as a marker on a chart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub text: String,
}

/// An alarm's threshold, drawn as a line on the CPU chart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub alarm: String,
    pub value: f64,
    /// `GreaterThanThreshold`, `LessThanThreshold`, …
    pub comparison: String,
}

/// The charts' data for one range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsView {
    pub deployment_id: DeploymentId,
    pub range: MetricsRange,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Seconds each point stands for (0: every raw sample).
    pub step_seconds: i64,
    pub series: Vec<Series>,
    pub thresholds: Vec<Threshold>,
    pub markers: Vec<Marker>,
    /// Seconds between two polls of the deployment.
    pub poll_seconds: f64,
    /// AWS calls one poll makes, and so per minute.
    pub api_calls_per_poll: u32,
    pub api_calls_per_minute: f64,
}

impl MetricsView {
    pub fn series(&self, name: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.name == name)
    }
}

/// A time the app URL did not answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub started_at: DateTime<Utc>,
    /// `None` while it lasts.
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: f64,
    pub cause: String,
}

/// How well a deployment stayed up, from the portal's probes of its app URL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UptimeView {
    pub deployment_id: DeploymentId,
    pub name: String,
    /// Good probes out of all, since deploy; `None` before the first probe.
    pub availability_pct: Option<f64>,
    pub availability_24h_pct: Option<f64>,
    pub probes: u64,
    pub failed_probes: u64,
    pub incidents: Vec<Incident>,
    /// The last measured recovery: seconds until the group had its desired
    /// number of healthy targets again.
    pub last_recovery_seconds: Option<f64>,
    pub last_recovery_at: Option<DateTime<Utc>>,
}

/// Uptime of every deployment that was ever probed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UptimeSummary {
    pub availability_pct: Option<f64>,
    pub probes: u64,
    pub failed_probes: u64,
    pub deployments: Vec<UptimeView>,
}

/// One category's share of a deployment's cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostShare {
    pub category: CostCategory,
    pub label: String,
    pub accrued_usd: f64,
    pub hourly_usd: f64,
}

/// What a deployment has cost so far and costs now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostView {
    pub deployment_id: DeploymentId,
    pub name: String,
    pub status: String,
    pub region: String,
    pub prices_as_of: String,
    /// Known when the region is in the price table.
    pub priced: bool,
    /// Dollars per hour of what exists now.
    pub hourly_usd: f64,
    /// `hourly_usd` over a month of 730 hours.
    pub monthly_usd: f64,
    /// Dollars since the first resource was made.
    pub accrued_usd: f64,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub breakdown: Vec<CostShare>,
    /// Instance-hours counted, from the instances' actual lifetimes.
    pub instance_hours: f64,
    /// Why a part could not be priced, if one could not.
    pub notes: Vec<String>,
}

/// Every deployment's cost, torn-down ones included.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostSummary {
    pub accrued_usd: f64,
    pub hourly_usd: f64,
    pub monthly_usd: f64,
    pub deployments: Vec<CostView>,
}

/// An instance of a deployment's group as the portal has seen it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub id: String,
    pub instance_type: Option<String>,
    pub availability_zone: Option<String>,
    pub private_ip: Option<String>,
    pub launched_at: DateTime<Utc>,
    /// When a poll first found it gone from the group.
    pub gone_at: Option<DateTime<Utc>>,
    pub lifecycle: Option<String>,
    pub health: Option<String>,
    pub target_state: Option<String>,
    pub target_reason: Option<String>,
}

/// One instance's page: who it is, how it lived, what it measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceDetail {
    pub deployment_id: DeploymentId,
    pub deployment_name: String,
    pub deployment_live: bool,
    pub instance: InstanceRecord,
    /// Newest first.
    pub events: Vec<EventView>,
    pub metrics: MetricsView,
}

/// Everything the live part of a deployment page shows, in one answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveView {
    pub metrics: MetricsView,
    pub instances: Vec<InstanceRecord>,
    pub uptime: UptimeView,
    pub cost: CostView,
    /// Newest first.
    pub events: Vec<EventView>,
    /// Subnets and NAT gateways per AZ, for the topology.
    pub topology: Topology,
}

/// The VPC as drawn: its AZs, each with its subnets and NAT gateway.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub vpc_id: Option<String>,
    pub vpc_cidr: String,
    pub load_balancer: Option<String>,
    pub zones: Vec<Zone>,
    /// When the stack was torn down: then this is the stack as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Zone {
    pub name: String,
    pub public_subnet: Option<String>,
    pub private_subnet: Option<String>,
    pub nat_gateway: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip_and_refuse_others() {
        for range in MetricsRange::ALL {
            assert_eq!(range.as_str().parse::<MetricsRange>(), Ok(range));
            assert_eq!(
                serde_json::to_string(&range).unwrap(),
                format!("\"{range}\"")
            );
        }
        let error = "2h".parse::<MetricsRange>().unwrap_err();
        assert!(error.contains("15m, 1h, 6h, 24h or all"), "{error}");
    }
}
