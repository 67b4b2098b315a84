//! What a deployment costs: a dated price table per region, the estimate for a
//! set of parameters, the hourly rate of one resource, and accrual over time.
//!
//! Everything here is plain arithmetic over a static table, so the same numbers
//! appear in the browser (the form's live estimate) and on the server (the
//! orphan scanner, accrued cost of a live deployment). Prices are on-demand
//! list prices for Linux, taken at [`PRICES_AS_OF`]; they are estimates, not a
//! bill. A region missing from the table has no price: callers show
//! "unknown" rather than borrowing another region's numbers.
//!
//! Assumptions, each a named constant below: a month is
//! [`HOURS_PER_MONTH`] hours; the load balancer uses [`ALB_BASELINE_LCUS`]
//! LCU around the clock; NAT data processing ($/GB) and data transfer are
//! left out because they depend on traffic nobody has sent yet.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::params::{DeploymentParams, NatMode};
pub use crate::resource::{ResourceKind, UnknownResourceKind};

/// When the prices in [`PRICE_TABLE`] were taken (year-month).
pub const PRICES_AS_OF: &str = "2026-11";

/// Hours in a billing month, as AWS's own calculator counts them.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Load balancer capacity units assumed for an estimate: one LCU, every hour.
/// An idle or lightly used ALB consumes less than one, a busy one more.
pub const ALB_BASELINE_LCUS: f64 = 1.0;

/// Size of each instance's gp3 root volume, in GB.
pub const ROOT_VOLUME_GB: f64 = 8.0;

/// Size of the application artifact kept in the deployment's S3 bucket, in GB
/// (about 20 MB).
pub const ARTIFACT_GB: f64 = 0.02;

/// CloudWatch alarms per deployment: one to scale out, one to scale in.
pub const ALARMS_PER_DEPLOYMENT: u32 = 2;

/// Custom metrics each instance publishes. Each carries the dimensions
/// `InstanceId` and `AutoScalingGroupName`, so every instance adds this many
/// distinct billed metrics.
pub const METRICS_PER_INSTANCE: u32 = 7;

/// Metrics EC2's detailed monitoring sends every minute for each instance
/// (CPUUtilization, DiskReadOps, DiskWriteOps, DiskReadBytes,
/// DiskWriteBytes, NetworkIn, NetworkOut), each billed at the custom-metric
/// rate: $2.10 per instance-month at $0.30. The launch template turns it
/// on, since the alarms evaluate 60-second periods. Source: the CloudWatch
/// pricing page (aws.amazon.com/cloudwatch/pricing, "Detailed Monitoring
/// Metrics (at 1-minute frequency)" billed as metrics) and the seven
/// metrics it covers (EC2 User Guide, "Manage detailed monitoring").
pub const DETAILED_MONITORING_METRICS: u32 = 7;

/// What each instance adds to the metric bill: its own custom metrics and
/// its detailed monitoring.
pub const BILLED_METRICS_PER_INSTANCE: u32 = METRICS_PER_INSTANCE + DETAILED_MONITORING_METRICS;

/// Metrics the telemetry's `GetMetricData` asks for per live deployment
/// (the group's CPU, the load balancer's requests) and per instance (CPU,
/// requests, response time, memory).
pub const METRICS_READ_PER_DEPLOYMENT: u32 = 2;
pub const METRICS_READ_PER_INSTANCE: u32 = 4;
/// `GetMetricData` calls a live deployment gets an hour: one a minute, the
/// resolution of its data (detailed monitoring and the instances' own
/// metrics are per minute); reading faster only pays for the same numbers.
pub const METRIC_READS_PER_HOUR: f64 = 60.0;
/// `DescribeAlarms` requests the telemetry makes an hour: one a poll, every
/// 30 s (`--poll-secs`).
pub const ALARM_READS_PER_HOUR: f64 = 120.0;
/// `PutMetricData` requests an instance's service sends an hour: one a
/// minute.
pub const PUTS_PER_INSTANCE_HOUR: f64 = 60.0;

/// CloudWatch API units (requests, or metrics requested) CloudPulse's own
/// use adds each hour for a deployment, whatever its size: the
/// telemetry's group and load balancer metrics and its alarm reads.
pub fn api_units_per_deployment_hour() -> f64 {
    METRIC_READS_PER_HOUR * f64::from(METRICS_READ_PER_DEPLOYMENT) + ALARM_READS_PER_HOUR
}

/// CloudWatch API units each instance adds an hour: the telemetry reading
/// its metrics, and its service publishing them.
pub fn api_units_per_instance_hour() -> f64 {
    METRIC_READS_PER_HOUR * f64::from(METRICS_READ_PER_INSTANCE) + PUTS_PER_INSTANCE_HOUR
}

/// On-demand prices in one region, in US dollars.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegionPrices {
    /// Region code, e.g. `us-east-1`.
    pub region: &'static str,
    /// NAT gateway, per hour (data processing excluded).
    pub nat_gateway_hour: f64,
    /// Application Load Balancer, per hour, before capacity units.
    pub load_balancer_hour: f64,
    /// One load balancer capacity unit for one hour.
    pub lcu_hour: f64,
    /// One public IPv4 address (Elastic IP or AWS-assigned), per hour.
    pub public_ipv4_hour: f64,
    /// gp3 EBS storage, per GB-month.
    pub gp3_gb_month: f64,
    /// One standard-resolution CloudWatch alarm, per month.
    pub alarm_month: f64,
    /// One CloudWatch custom metric, per month (first pricing tier).
    pub custom_metric_month: f64,
    /// CloudWatch API use, per 1,000: requests (`PutMetricData`,
    /// `DescribeAlarms`) or metrics requested by `GetMetricData`.
    pub cloudwatch_per_1000: f64,
    /// S3 Standard storage, per GB-month (first pricing tier).
    pub s3_gb_month: f64,
    /// Linux on-demand price per hour of each type in
    /// [`INSTANCE_TYPES`](crate::params::INSTANCE_TYPES).
    pub instances: &'static [(&'static str, f64)],
}

impl RegionPrices {
    /// Hourly price of an instance type, `None` if the table lacks it.
    pub fn instance_hour(&self, instance_type: &str) -> Option<f64> {
        self.instances
            .iter()
            .find(|(name, _)| *name == instance_type)
            .map(|&(_, price)| price)
    }

    /// The load balancer's hourly price including [`ALB_BASELINE_LCUS`].
    pub fn load_balancer_with_baseline_hour(&self) -> f64 {
        self.load_balancer_hour + ALB_BASELINE_LCUS * self.lcu_hour
    }
}

/// vCPUs of each type in [`INSTANCE_TYPES`](crate::params::INSTANCE_TYPES),
/// as EC2 lists them (the same in every region). The sandbox runs at most
/// this many stress workers on an instance of the type.
pub static INSTANCE_VCPUS: &[(&str, u32)] = &[
    ("t3.micro", 2),
    ("t3.small", 2),
    ("t3.medium", 2),
    ("t3.large", 2),
    ("t3a.micro", 2),
    ("t3a.small", 2),
    ("t3a.medium", 2),
    ("t4g.micro", 2),
    ("t4g.small", 2),
    ("m5.large", 2),
    ("c5.large", 2),
];

/// vCPUs of an instance type, `None` if the table lacks it.
pub fn instance_vcpus(instance_type: &str) -> Option<u32> {
    INSTANCE_VCPUS
        .iter()
        .find(|(name, _)| *name == instance_type)
        .map(|&(_, vcpus)| vcpus)
}

/// Every region CloudPulse can price, as of [`PRICES_AS_OF`].
///
/// Values are written out per region rather than derived from us-east-1 by a
/// multiplier, so each can be checked against AWS's price pages on its own.
pub static PRICE_TABLE: &[RegionPrices] = &[
    RegionPrices {
        region: "us-east-1",
        nat_gateway_hour: 0.045,
        load_balancer_hour: 0.0225,
        lcu_hour: 0.008,
        public_ipv4_hour: 0.005,
        gp3_gb_month: 0.08,
        alarm_month: 0.10,
        custom_metric_month: 0.30,
        cloudwatch_per_1000: 0.01,
        s3_gb_month: 0.023,
        instances: &[
            ("t3.micro", 0.0104),
            ("t3.small", 0.0208),
            ("t3.medium", 0.0416),
            ("t3.large", 0.0832),
            ("t3a.micro", 0.0094),
            ("t3a.small", 0.0188),
            ("t3a.medium", 0.0376),
            ("t4g.micro", 0.0084),
            ("t4g.small", 0.0168),
            ("m5.large", 0.096),
            ("c5.large", 0.085),
        ],
    },
    RegionPrices {
        region: "us-east-2",
        nat_gateway_hour: 0.045,
        load_balancer_hour: 0.0225,
        lcu_hour: 0.008,
        public_ipv4_hour: 0.005,
        gp3_gb_month: 0.08,
        alarm_month: 0.10,
        custom_metric_month: 0.30,
        cloudwatch_per_1000: 0.01,
        s3_gb_month: 0.023,
        instances: &[
            ("t3.micro", 0.0104),
            ("t3.small", 0.0208),
            ("t3.medium", 0.0416),
            ("t3.large", 0.0832),
            ("t3a.micro", 0.0094),
            ("t3a.small", 0.0188),
            ("t3a.medium", 0.0376),
            ("t4g.micro", 0.0084),
            ("t4g.small", 0.0168),
            ("m5.large", 0.096),
            ("c5.large", 0.085),
        ],
    },
    RegionPrices {
        region: "us-west-2",
        nat_gateway_hour: 0.045,
        load_balancer_hour: 0.0225,
        lcu_hour: 0.008,
        public_ipv4_hour: 0.005,
        gp3_gb_month: 0.08,
        alarm_month: 0.10,
        custom_metric_month: 0.30,
        cloudwatch_per_1000: 0.01,
        s3_gb_month: 0.023,
        instances: &[
            ("t3.micro", 0.0104),
            ("t3.small", 0.0208),
            ("t3.medium", 0.0416),
            ("t3.large", 0.0832),
            ("t3a.micro", 0.0094),
            ("t3a.small", 0.0188),
            ("t3a.medium", 0.0376),
            ("t4g.micro", 0.0084),
            ("t4g.small", 0.0168),
            ("m5.large", 0.096),
            ("c5.large", 0.085),
        ],
    },
    RegionPrices {
        region: "eu-west-1",
        nat_gateway_hour: 0.048,
        load_balancer_hour: 0.0252,
        lcu_hour: 0.008,
        public_ipv4_hour: 0.005,
        gp3_gb_month: 0.088,
        alarm_month: 0.10,
        custom_metric_month: 0.30,
        cloudwatch_per_1000: 0.01,
        s3_gb_month: 0.023,
        instances: &[
            ("t3.micro", 0.0114),
            ("t3.small", 0.0228),
            ("t3.medium", 0.0456),
            ("t3.large", 0.0912),
            ("t3a.micro", 0.0102),
            ("t3a.small", 0.0204),
            ("t3a.medium", 0.0408),
            ("t4g.micro", 0.0092),
            ("t4g.small", 0.0184),
            ("m5.large", 0.107),
            ("c5.large", 0.096),
        ],
    },
    RegionPrices {
        region: "eu-central-1",
        nat_gateway_hour: 0.052,
        load_balancer_hour: 0.027,
        lcu_hour: 0.008,
        public_ipv4_hour: 0.005,
        gp3_gb_month: 0.0952,
        alarm_month: 0.10,
        custom_metric_month: 0.30,
        cloudwatch_per_1000: 0.01,
        s3_gb_month: 0.0245,
        instances: &[
            ("t3.micro", 0.012),
            ("t3.small", 0.024),
            ("t3.medium", 0.048),
            ("t3.large", 0.096),
            ("t3a.micro", 0.0108),
            ("t3a.small", 0.0216),
            ("t3a.medium", 0.0432),
            ("t4g.micro", 0.0096),
            ("t4g.small", 0.0192),
            ("m5.large", 0.115),
            ("c5.large", 0.097),
        ],
    },
    RegionPrices {
        region: "ap-southeast-1",
        nat_gateway_hour: 0.059,
        load_balancer_hour: 0.0252,
        lcu_hour: 0.008,
        public_ipv4_hour: 0.005,
        gp3_gb_month: 0.096,
        alarm_month: 0.10,
        custom_metric_month: 0.30,
        cloudwatch_per_1000: 0.01,
        s3_gb_month: 0.025,
        instances: &[
            ("t3.micro", 0.0132),
            ("t3.small", 0.0264),
            ("t3.medium", 0.0528),
            ("t3.large", 0.1056),
            ("t3a.micro", 0.0118),
            ("t3a.small", 0.0236),
            ("t3a.medium", 0.0472),
            ("t4g.micro", 0.0106),
            ("t4g.small", 0.0212),
            ("m5.large", 0.12),
            ("c5.large", 0.098),
        ],
    },
    RegionPrices {
        region: "ap-northeast-1",
        nat_gateway_hour: 0.062,
        load_balancer_hour: 0.0243,
        lcu_hour: 0.008,
        public_ipv4_hour: 0.005,
        gp3_gb_month: 0.096,
        alarm_month: 0.10,
        custom_metric_month: 0.30,
        cloudwatch_per_1000: 0.01,
        s3_gb_month: 0.025,
        instances: &[
            ("t3.micro", 0.0136),
            ("t3.small", 0.0272),
            ("t3.medium", 0.0544),
            ("t3.large", 0.1088),
            ("t3a.micro", 0.0122),
            ("t3a.small", 0.0245),
            ("t3a.medium", 0.049),
            ("t4g.micro", 0.0108),
            ("t4g.small", 0.0216),
            ("m5.large", 0.124),
            ("c5.large", 0.107),
        ],
    },
];

/// The prices of a region, `None` for a region missing from [`PRICE_TABLE`].
pub fn prices(region: &str) -> Option<&'static RegionPrices> {
    PRICE_TABLE.iter().find(|p| p.region == region)
}

/// Why something could not be priced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum PriceError {
    /// The region is not in [`PRICE_TABLE`]; its cost is unknown.
    #[error("no prices for region {region:?}; its cost is unknown")]
    UnknownRegion { region: String },
    /// The region is known but the instance type has no price there.
    #[error("no price for instance type {instance_type:?} in {region}; its cost is unknown")]
    UnknownInstanceType {
        region: String,
        instance_type: String,
    },
}

/// What a line of a [`CostEstimate`] pays for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostCategory {
    /// NAT gateways: one per AZ, or one shared.
    Nat,
    /// The Application Load Balancer with [`ALB_BASELINE_LCUS`].
    LoadBalancer,
    /// The Auto Scaling group's instances at the desired count.
    Instances,
    /// EBS root volumes and the S3 artifact.
    Storage,
    /// Public IPv4 addresses: NAT gateway EIPs and the ALB's addresses.
    PublicIpv4,
    /// CloudWatch alarms and the instances' custom metrics.
    Monitoring,
    /// CloudPulse's own CloudWatch API use: the telemetry's `GetMetricData`
    /// (per metric requested) and `DescribeAlarms`, the instances'
    /// `PutMetricData`.
    PortalApi,
}

impl CostCategory {
    /// Every category, in the order an estimate lists them.
    pub const ALL: [CostCategory; 7] = [
        CostCategory::Nat,
        CostCategory::LoadBalancer,
        CostCategory::Instances,
        CostCategory::Storage,
        CostCategory::PublicIpv4,
        CostCategory::Monitoring,
        CostCategory::PortalApi,
    ];

    /// Where the category stands in [`CostCategory::ALL`].
    pub fn index(self) -> usize {
        match self {
            CostCategory::Nat => 0,
            CostCategory::LoadBalancer => 1,
            CostCategory::Instances => 2,
            CostCategory::Storage => 3,
            CostCategory::PublicIpv4 => 4,
            CostCategory::Monitoring => 5,
            CostCategory::PortalApi => 6,
        }
    }

    /// Human wording for the breakdown table.
    pub fn label(self) -> &'static str {
        match self {
            CostCategory::Nat => "NAT gateways",
            CostCategory::LoadBalancer => "Load balancer",
            CostCategory::Instances => "Instances",
            CostCategory::Storage => "Storage",
            CostCategory::PublicIpv4 => "Public IPv4 addresses",
            CostCategory::Monitoring => "Monitoring",
            CostCategory::PortalApi => "CloudPulse's API use",
        }
    }
}

/// One category's share of an estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostLine {
    pub category: CostCategory,
    /// How the amount was reached, e.g. "2 × $0.045/h".
    pub detail: String,
    /// US dollars per hour.
    pub per_hour: f64,
    /// US dollars per month of [`HOURS_PER_MONTH`] hours.
    pub per_month: f64,
}

/// The expected cost of running a deployment, whole and by category.
///
/// `per_hour` is the sum of the lines' `per_hour`; every `per_month` is its
/// `per_hour` times [`HOURS_PER_MONTH`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostEstimate {
    pub region: String,
    /// The date of the prices used, see [`PRICES_AS_OF`].
    pub prices_as_of: String,
    /// US dollars per hour.
    pub per_hour: f64,
    /// US dollars per month of [`HOURS_PER_MONTH`] hours.
    pub per_month: f64,
    /// One line per [`CostCategory`], in [`CostCategory::ALL`] order.
    pub lines: Vec<CostLine>,
}

impl CostEstimate {
    /// The line of one category.
    pub fn line(&self, category: CostCategory) -> Option<&CostLine> {
        self.lines.iter().find(|line| line.category == category)
    }

    /// Dollars per hour of one category (0 if absent).
    pub fn per_hour_of(&self, category: CostCategory) -> f64 {
        self.line(category).map_or(0.0, |line| line.per_hour)
    }
}

/// Estimate what a deployment costs while it runs at its desired count.
///
/// The parameters need not have passed validation: whatever counts they hold
/// are priced. An unknown region or instance type is an error, never a guess.
pub fn estimate(params: &DeploymentParams) -> Result<CostEstimate, PriceError> {
    let p = prices(&params.region).ok_or_else(|| PriceError::UnknownRegion {
        region: params.region.clone(),
    })?;
    let instance_hour =
        p.instance_hour(&params.instance_type)
            .ok_or_else(|| PriceError::UnknownInstanceType {
                region: params.region.clone(),
                instance_type: params.instance_type.clone(),
            })?;

    let azs = u32::from(params.azs);
    let desired = params.desired;
    let nat_gateways = match params.nat {
        NatMode::PerAz => azs,
        NatMode::Single => 1,
    };
    // One Elastic IP per NAT gateway, and the internet-facing ALB holds one
    // public address in each AZ it spans.
    let public_ips = nat_gateways + azs;
    let ebs_gb = f64::from(desired) * ROOT_VOLUME_GB;
    let metrics = u64::from(desired) * u64::from(METRICS_PER_INSTANCE);
    let detailed = u64::from(desired) * u64::from(DETAILED_MONITORING_METRICS);

    let storage_month = ebs_gb * p.gp3_gb_month + ARTIFACT_GB * p.s3_gb_month;
    let api_units =
        api_units_per_deployment_hour() + f64::from(desired) * api_units_per_instance_hour();
    let monitoring_month = f64::from(ALARMS_PER_DEPLOYMENT) * p.alarm_month
        + (metrics + detailed) as f64 * p.custom_metric_month;

    let lines = vec![
        line(
            CostCategory::Nat,
            f64::from(nat_gateways) * p.nat_gateway_hour,
            format!("{nat_gateways} × {}/h", usd(p.nat_gateway_hour)),
        ),
        line(
            CostCategory::LoadBalancer,
            p.load_balancer_with_baseline_hour(),
            format!(
                "{}/h + {ALB_BASELINE_LCUS} LCU × {}/h",
                usd(p.load_balancer_hour),
                usd(p.lcu_hour)
            ),
        ),
        line(
            CostCategory::Instances,
            f64::from(desired) * instance_hour,
            format!(
                "{desired} × {} at {}/h",
                params.instance_type,
                usd(instance_hour)
            ),
        ),
        line(
            CostCategory::Storage,
            storage_month / HOURS_PER_MONTH,
            format!(
                "{ebs_gb} GB gp3 × {}/GB-month + {} GB S3 × {}/GB-month",
                usd(p.gp3_gb_month),
                crate::text::plain(ARTIFACT_GB),
                usd(p.s3_gb_month)
            ),
        ),
        line(
            CostCategory::PublicIpv4,
            f64::from(public_ips) * p.public_ipv4_hour,
            format!("{public_ips} × {}/h", usd(p.public_ipv4_hour)),
        ),
        line(
            CostCategory::Monitoring,
            monitoring_month / HOURS_PER_MONTH,
            format!(
                "{ALARMS_PER_DEPLOYMENT} alarms × {}/month + ({metrics} custom + {detailed} \
                 detailed monitoring) metrics × {}/month",
                usd(p.alarm_month),
                usd(p.custom_metric_month)
            ),
        ),
        line(
            CostCategory::PortalApi,
            api_units * p.cloudwatch_per_1000 / 1000.0,
            format!(
                "{} CloudWatch requests or metrics read an hour × {}/1,000 (GetMetricData once \
                 a minute, DescribeAlarms, the instances' PutMetricData)",
                crate::text::plain(api_units),
                usd(p.cloudwatch_per_1000)
            ),
        ),
    ];
    let per_hour: f64 = lines.iter().map(|l| l.per_hour).sum();
    Ok(CostEstimate {
        region: p.region.to_owned(),
        prices_as_of: PRICES_AS_OF.to_owned(),
        per_hour,
        per_month: per_hour * HOURS_PER_MONTH,
        lines,
    })
}

fn line(category: CostCategory, per_hour: f64, detail: String) -> CostLine {
    CostLine {
        category,
        detail,
        per_hour,
        per_month: per_hour * HOURS_PER_MONTH,
    }
}

/// What one resource of `kind` costs per hour in `region`, in US dollars.
///
/// `instance_type` is needed for [`ResourceKind::Instance`] and ignored
/// otherwise. [`ResourceKind::EbsVolume`] is per GB; a load balancer includes
/// [`ALB_BASELINE_LCUS`]; monthly prices are spread over [`HOURS_PER_MONTH`].
/// Free kinds give `Some(0.0)`. `None` means unknown: the region is not in
/// the table, or an instance's type is missing or has no price.
pub fn hourly(region: &str, kind: ResourceKind, instance_type: Option<&str>) -> Option<f64> {
    let p = prices(region)?;
    if kind.is_free() {
        return Some(0.0);
    }
    match kind {
        ResourceKind::Instance => p.instance_hour(instance_type?),
        ResourceKind::NatGateway => Some(p.nat_gateway_hour),
        ResourceKind::ElasticIp => Some(p.public_ipv4_hour),
        ResourceKind::LoadBalancer => Some(p.load_balancer_with_baseline_hour()),
        ResourceKind::EbsVolume => Some(p.gp3_gb_month / HOURS_PER_MONTH),
        ResourceKind::Alarm => Some(p.alarm_month / HOURS_PER_MONTH),
        ResourceKind::CustomMetric => Some(p.custom_metric_month / HOURS_PER_MONTH),
        ResourceKind::ApiRequests => Some(p.cloudwatch_per_1000 / 1000.0),
        _ => Some(0.0),
    }
}

/// Dollars accrued at `rate_per_hour` from `from` to `to`.
///
/// Zero when `to` is not after `from`, and when the rate is negative or not a
/// number: a cost never runs backwards.
pub fn accrued(rate_per_hour: f64, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    if to <= from || !(rate_per_hour.is_finite() && rate_per_hour > 0.0) {
        return 0.0;
    }
    let span = to - from;
    let hours = (span.num_seconds() as f64 + f64::from(span.subsec_nanos()) / 1e9) / 3600.0;
    rate_per_hour * hours
}

impl ResourceKind {
    /// The line of an estimate or an accrual this kind is billed under, or
    /// `None` for what is free.
    pub fn category(self) -> Option<CostCategory> {
        match self {
            ResourceKind::Instance => Some(CostCategory::Instances),
            ResourceKind::NatGateway => Some(CostCategory::Nat),
            ResourceKind::ElasticIp => Some(CostCategory::PublicIpv4),
            ResourceKind::LoadBalancer => Some(CostCategory::LoadBalancer),
            ResourceKind::EbsVolume | ResourceKind::S3Bucket => Some(CostCategory::Storage),
            ResourceKind::Alarm | ResourceKind::CustomMetric => Some(CostCategory::Monitoring),
            ResourceKind::ApiRequests => Some(CostCategory::PortalApi),
            _ => None,
        }
    }
}

/// Something billed by the hour, from when it was made until it was
/// deleted (or until now, while it exists): an instance, a NAT gateway,
/// 8 GB of EBS, one of the ALB's public addresses, ...
#[derive(Clone, Debug, PartialEq)]
pub struct Lifetime {
    pub kind: ResourceKind,
    /// Needed for instances.
    pub instance_type: Option<String>,
    /// How many units the kind's price is for: GB for EBS, metrics for
    /// custom metrics, 1 for the rest.
    pub quantity: f64,
    pub from: DateTime<Utc>,
    /// `None` while it exists.
    pub to: Option<DateTime<Utc>>,
}

/// One category of an [`Accrual`].
#[derive(Clone, Debug, PartialEq)]
pub struct AccrualLine {
    pub category: CostCategory,
    /// Dollars from the lifetimes' starts until their ends (or `now`).
    pub accrued: f64,
    /// Dollars per hour of the lifetimes that are still open at `now`.
    pub per_hour: f64,
}

/// What a set of lifetimes has cost up to a moment, and costs per hour then.
#[derive(Clone, Debug, PartialEq)]
pub struct Accrual {
    pub accrued: f64,
    pub per_hour: f64,
    /// One line per [`CostCategory`], in [`CostCategory::ALL`] order.
    pub lines: Vec<AccrualLine>,
}

/// The hourly rate of one unit of `kind` for accrual: as [`hourly`], and the
/// bucket pays for the artifact it stores.
fn accrual_rate(region: &str, kind: ResourceKind, instance_type: Option<&str>) -> Option<f64> {
    match kind {
        ResourceKind::S3Bucket => {
            prices(region).map(|p| ARTIFACT_GB * p.s3_gb_month / HOURS_PER_MONTH)
        }
        _ => hourly(region, kind, instance_type),
    }
}

/// The cost of `lifetimes` in `region` from their starts up to `now`, with
/// the same prices as [`estimate`]. Time after `now` is not counted, so a
/// lifetime that ends in the future costs what it has cost so far. An
/// unknown region or instance type is an error, never a guess.
pub fn accrue(
    region: &str,
    lifetimes: &[Lifetime],
    now: DateTime<Utc>,
) -> Result<Accrual, PriceError> {
    if prices(region).is_none() {
        return Err(PriceError::UnknownRegion {
            region: region.to_owned(),
        });
    }
    let mut lines: Vec<AccrualLine> = CostCategory::ALL
        .into_iter()
        .map(|category| AccrualLine {
            category,
            accrued: 0.0,
            per_hour: 0.0,
        })
        .collect();
    for life in lifetimes {
        let Some(category) = life.kind.category() else {
            continue;
        };
        let unit =
            accrual_rate(region, life.kind, life.instance_type.as_deref()).ok_or_else(|| {
                PriceError::UnknownInstanceType {
                    region: region.to_owned(),
                    instance_type: life.instance_type.clone().unwrap_or_default(),
                }
            })?;
        let rate = unit * life.quantity.max(0.0);
        let end = life.to.map_or(now, |to| to.min(now));
        let line = &mut lines[category.index()];
        line.accrued += accrued(rate, life.from, end);
        if life.from <= now && life.to.is_none_or(|to| to > now) {
            line.per_hour += rate;
        }
    }
    Ok(Accrual {
        accrued: lines.iter().map(|l| l.accrued).sum(),
        per_hour: lines.iter().map(|l| l.per_hour).sum(),
        lines,
    })
}

/// Dollars for display: `$0.15`, `$1,234.56`, and for amounts under a cent
/// four decimals, `$0.0045` (`<$0.0001` below that, so a tiny cost never
/// reads as free). Not-a-number reads `n/a`.
pub fn usd(amount: f64) -> String {
    if !amount.is_finite() {
        return "n/a".to_owned();
    }
    let sign = if amount < 0.0 { "-" } else { "" };
    let abs = amount.abs();
    if abs == 0.0 {
        return "$0.00".to_owned();
    }
    // Decide on the rounded value, so 0.009999 reads $0.01, not $0.0100.
    if (abs * 100.0).round() >= 1.0 {
        let text = crate::text::fixed(abs, 2);
        let (whole, cents) = text.split_once('.').unwrap_or((&text, "00"));
        return format!("{sign}${}.{cents}", group_thousands(whole));
    }
    if (abs * 10_000.0).round() < 1.0 {
        return format!("{sign}<$0.0001");
    }
    format!("{sign}${}", crate::text::fixed(abs, 4))
}

fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::INSTANCE_TYPES;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn the_default_stack_in_us_east_1_costs_what_the_reference_says() {
        let estimate = estimate(&DeploymentParams::default()).unwrap();
        let sum: f64 = estimate.lines.iter().map(|l| l.per_hour).sum();
        assert!(close(sum, estimate.per_hour));
        assert!(close(estimate.per_month, estimate.per_hour * 730.0));
        // infrastructure.md: "roughly $0.15/h (about $105-120/month)". With the
        // baseline LCU, the ALB's public addresses, detailed monitoring and
        // CloudPulse's own CloudWatch use this comes to ~$0.183/h.
        assert!(
            (0.15..0.19).contains(&estimate.per_hour),
            "{}",
            estimate.per_hour
        );
        assert!(close(estimate.per_hour_of(CostCategory::Nat), 0.09));
        assert!(close(
            estimate.per_hour_of(CostCategory::LoadBalancer),
            0.0305
        ));
        assert!(close(estimate.per_hour_of(CostCategory::Instances), 0.0208));
        assert!(close(estimate.per_hour_of(CostCategory::PublicIpv4), 0.02));
        // 2 alarms + 14 custom metrics + 2 instances' detailed monitoring
        // (7 metrics each, at the custom-metric rate) = $8.60 a month.
        let monitoring = estimate.line(CostCategory::Monitoring).unwrap();
        assert!(
            close(monitoring.per_month, 8.60),
            "{}",
            monitoring.per_month
        );
        assert!(
            monitoring.detail.contains("detailed monitoring"),
            "{}",
            monitoring.detail
        );
        // CloudPulse's own API use: one GetMetricData a minute for 2 + 4 × 2
        // metrics, DescribeAlarms every 30 s, each instance's PutMetricData
        // a minute: 840 units an hour at $0.01 per 1,000.
        assert!(close(estimate.per_hour_of(CostCategory::PortalApi), 0.0084));
        // "~60% of it NAT": the gateways alone are 49%; with their Elastic
        // IPs (billed under public IPv4) 55%.
        let nat_share = estimate.per_hour_of(CostCategory::Nat) / estimate.per_hour;
        assert!((0.45..0.65).contains(&nat_share), "{nat_share}");
        let with_eips = (estimate.per_hour_of(CostCategory::Nat) + 2.0 * 0.005) / estimate.per_hour;
        assert!((0.5..0.65).contains(&with_eips), "{with_eips}");
        let categories: Vec<_> = estimate.lines.iter().map(|l| l.category).collect();
        assert_eq!(categories, CostCategory::ALL);
    }

    #[test]
    fn single_nat_halves_the_gateways_and_their_addresses() {
        let per_az = estimate(&DeploymentParams::default()).unwrap();
        let single = estimate(&DeploymentParams {
            nat: NatMode::Single,
            ..Default::default()
        })
        .unwrap();
        assert!(close(single.per_hour_of(CostCategory::Nat), 0.045));
        assert!(close(single.per_hour_of(CostCategory::PublicIpv4), 0.015));
        assert!(single.per_hour < per_az.per_hour);
    }

    #[test]
    fn unknown_region_and_instance_type_are_errors_not_guesses() {
        let mars = DeploymentParams {
            region: "mars-north-1".into(),
            ..Default::default()
        };
        assert_eq!(
            estimate(&mars),
            Err(PriceError::UnknownRegion {
                region: "mars-north-1".into()
            })
        );
        let huge = DeploymentParams {
            instance_type: "x1.huge".into(),
            ..Default::default()
        };
        assert!(matches!(
            estimate(&huge),
            Err(PriceError::UnknownInstanceType { .. })
        ));
        assert!(prices("mars-north-1").is_none());
        assert_eq!(hourly("mars-north-1", ResourceKind::Vpc, None), None);
    }

    #[test]
    fn every_instance_type_has_its_vcpus_once() {
        assert_eq!(INSTANCE_VCPUS.len(), INSTANCE_TYPES.len());
        for ty in INSTANCE_TYPES {
            assert!(
                instance_vcpus(ty).is_some_and(|n| (1..=96).contains(&n)),
                "{ty}"
            );
        }
        assert_eq!(instance_vcpus("t3.micro"), Some(2));
        assert_eq!(instance_vcpus("x1e.32xlarge"), None);
    }

    #[test]
    fn every_region_prices_every_instance_type_once() {
        for (i, region) in PRICE_TABLE.iter().enumerate() {
            assert!(
                PRICE_TABLE[..i].iter().all(|r| r.region != region.region),
                "{} twice",
                region.region
            );
            assert_eq!(
                region.instances.len(),
                INSTANCE_TYPES.len(),
                "{}",
                region.region
            );
            for ty in INSTANCE_TYPES {
                let price = region.instance_hour(ty);
                assert!(
                    price.is_some_and(|p| p > 0.0 && p < 1.0),
                    "{} {ty}",
                    region.region
                );
            }
        }
        for wanted in [
            "us-east-1",
            "us-east-2",
            "us-west-2",
            "eu-west-1",
            "eu-central-1",
            "ap-southeast-1",
            "ap-northeast-1",
        ] {
            assert!(prices(wanted).is_some(), "{wanted}");
        }
    }

    #[test]
    fn hourly_rates_of_single_resources() {
        let r = "us-east-1";
        assert_eq!(hourly(r, ResourceKind::NatGateway, None), Some(0.045));
        assert_eq!(hourly(r, ResourceKind::ElasticIp, None), Some(0.005));
        assert_eq!(
            hourly(r, ResourceKind::Instance, Some("t3.micro")),
            Some(0.0104)
        );
        assert_eq!(hourly(r, ResourceKind::Instance, None), None);
        assert_eq!(hourly(r, ResourceKind::Instance, Some("x1.huge")), None);
        assert!(close(
            hourly(r, ResourceKind::LoadBalancer, None).unwrap(),
            0.0305
        ));
        assert!(close(
            hourly(r, ResourceKind::Alarm, None).unwrap() * HOURS_PER_MONTH,
            0.10
        ));
        assert!(close(
            hourly(r, ResourceKind::EbsVolume, None).unwrap() * HOURS_PER_MONTH,
            0.08
        ));
        for kind in ResourceKind::ALL.into_iter().filter(|k| k.is_free()) {
            assert_eq!(hourly(r, kind, None), Some(0.0), "{kind}");
        }
    }

    #[test]
    fn resource_kind_names_round_trip() {
        for name in [
            "instance",
            "nat_gateway",
            "elastic_ip",
            "subnet",
            "route_table",
            "internet_gateway",
            "security_group",
            "network_acl",
            "vpc",
            "launch_template",
            "load_balancer",
            "target_group",
            "auto_scaling_group",
            "alarm",
            "iam_role",
            "instance_profile",
            "s3_bucket",
        ] {
            let kind: ResourceKind = name.parse().unwrap();
            assert_eq!(kind.as_str(), name);
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{name}\""));
        }
        assert!("NatGateway".parse::<ResourceKind>().is_err());
        assert!("".parse::<ResourceKind>().is_err());
    }

    #[test]
    fn dollars_read_naturally() {
        assert_eq!(usd(0.15), "$0.15");
        assert_eq!(usd(0.1691), "$0.17");
        assert_eq!(usd(0.01), "$0.01");
        assert_eq!(usd(0.009999), "$0.01");
        assert_eq!(usd(0.0045), "$0.0045");
        assert_eq!(usd(0.0104 / 60.0), "$0.0002");
        assert_eq!(usd(0.000_001), "<$0.0001");
        assert_eq!(usd(0.0), "$0.00");
        assert_eq!(usd(123.4), "$123.40");
        assert_eq!(usd(1234.5), "$1,234.50");
        assert_eq!(usd(1_234_567.891), "$1,234,567.89");
        assert_eq!(usd(-2.5), "-$2.50");
        assert_eq!(usd(f64::NAN), "n/a");
    }

    #[test]
    fn accrual_counts_hours_and_never_runs_backwards() {
        let start = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let later = start + chrono::Duration::minutes(90);
        assert!(close(accrued(0.045, start, later), 0.0675));
        assert_eq!(accrued(0.045, later, start), 0.0);
        assert_eq!(accrued(0.045, start, start), 0.0);
        assert_eq!(accrued(-1.0, start, later), 0.0);
        assert_eq!(accrued(f64::NAN, start, later), 0.0);
    }

    #[test]
    fn an_estimate_travels_as_json() {
        let estimate = estimate(&DeploymentParams::default()).unwrap();
        let json = serde_json::to_string(&estimate).unwrap();
        assert!(json.contains(r#""category":"public_ipv4""#), "{json}");
        // serde_json may round a float's last bit on the way back.
        let back: CostEstimate = serde_json::from_str(&json).unwrap();
        assert_eq!(back.lines.len(), estimate.lines.len());
        assert!(close(back.per_hour, estimate.per_hour));
        assert_eq!(back.lines[0].detail, estimate.lines[0].detail);
    }

    mod accrual {
        use super::super::*;
        use super::close;
        use crate::params::{DeploymentParams, NatMode, INSTANCE_TYPES};
        use chrono::TimeDelta;
        use proptest::prelude::*;

        fn at(seconds: i64) -> DateTime<Utc> {
            DateTime::from_timestamp(1_790_000_000 + seconds, 0).unwrap()
        }

        /// What a deployment of `params` runs, each thing alive from `from`.
        fn running(params: &DeploymentParams, from: DateTime<Utc>) -> Vec<Lifetime> {
            let one = |kind, quantity: f64| Lifetime {
                kind,
                instance_type: None,
                quantity,
                from,
                to: None,
            };
            let azs = u32::from(params.azs);
            let nats = match params.nat {
                NatMode::PerAz => azs,
                NatMode::Single => 1,
            };
            let mut all = vec![
                one(ResourceKind::LoadBalancer, 1.0),
                one(ResourceKind::S3Bucket, 1.0),
            ];
            for _ in 0..nats {
                all.push(one(ResourceKind::NatGateway, 1.0));
                all.push(one(ResourceKind::ElasticIp, 1.0));
            }
            for _ in 0..azs {
                all.push(one(ResourceKind::ElasticIp, 1.0));
            }
            for _ in 0..ALARMS_PER_DEPLOYMENT {
                all.push(one(ResourceKind::Alarm, 1.0));
            }
            for _ in 0..params.desired {
                all.push(Lifetime {
                    instance_type: Some(params.instance_type.clone()),
                    ..one(ResourceKind::Instance, 1.0)
                });
                all.push(one(ResourceKind::EbsVolume, ROOT_VOLUME_GB));
                all.push(one(
                    ResourceKind::CustomMetric,
                    f64::from(BILLED_METRICS_PER_INSTANCE),
                ));
                all.push(one(
                    ResourceKind::ApiRequests,
                    api_units_per_instance_hour(),
                ));
            }
            all.push(one(
                ResourceKind::ApiRequests,
                api_units_per_deployment_hour(),
            ));
            // Free things are listed too, and must cost nothing.
            all.push(one(ResourceKind::Vpc, 1.0));
            all.push(one(ResourceKind::SecurityGroup, 3.0));
            all
        }

        fn lifetime() -> impl Strategy<Value = Lifetime> {
            (
                prop::sample::select(ResourceKind::ALL.to_vec()),
                prop::sample::select(INSTANCE_TYPES.to_vec()),
                0.0..16.0f64,
                0i64..200_000,
                prop::option::of(0i64..400_000),
            )
                .prop_map(|(kind, ty, quantity, from, span)| Lifetime {
                    kind,
                    instance_type: Some(ty.to_string()),
                    quantity,
                    from: at(from),
                    to: span.map(|s| at(from + s)),
                })
        }

        fn region() -> impl Strategy<Value = &'static str> {
            prop::sample::select(PRICE_TABLE.iter().map(|p| p.region).collect::<Vec<_>>())
        }

        proptest! {
            #[test]
            fn a_running_stack_accrues_its_estimate_by_the_hour(
                region in region(),
                azs in 2u8..=3,
                desired in 1u32..=6,
                single_nat in any::<bool>(),
                ty in prop::sample::select(INSTANCE_TYPES.to_vec()),
                seconds in 0i64..2_000_000,
            ) {
                let params = DeploymentParams {
                    region: region.to_string(),
                    azs,
                    desired,
                    nat: if single_nat { NatMode::Single } else { NatMode::PerAz },
                    instance_type: ty.to_string(),
                    ..Default::default()
                };
                let estimate = estimate(&params).unwrap();
                let accrual = accrue(region, &running(&params, at(0)), at(seconds)).unwrap();
                prop_assert!(close(accrual.per_hour, estimate.per_hour));
                for line in &estimate.lines {
                    prop_assert!(close(accrual.lines[line.category.index()].per_hour, line.per_hour),
                        "{:?}", line.category);
                }
                prop_assert!(close(accrual.accrued, estimate.per_hour * seconds as f64 / 3600.0));
            }

            #[test]
            fn lines_add_up_to_the_totals(
                region in region(),
                lifetimes in prop::collection::vec(lifetime(), 0..24),
                now in 0i64..600_000,
            ) {
                let accrual = accrue(region, &lifetimes, at(now)).unwrap();
                let accrued: f64 = accrual.lines.iter().map(|l| l.accrued).sum();
                let per_hour: f64 = accrual.lines.iter().map(|l| l.per_hour).sum();
                prop_assert!(close(accrued, accrual.accrued));
                prop_assert!(close(per_hour, accrual.per_hour));
                prop_assert_eq!(accrual.lines.len(), CostCategory::ALL.len());
                for (i, line) in accrual.lines.iter().enumerate() {
                    prop_assert_eq!(line.category.index(), i);
                    prop_assert!(line.accrued >= 0.0 && line.per_hour >= 0.0);
                }
            }

            #[test]
            fn cost_never_runs_backwards(
                region in region(),
                lifetimes in prop::collection::vec(lifetime(), 0..24),
                now in 0i64..600_000,
                later in 0i64..600_000,
            ) {
                let before = accrue(region, &lifetimes, at(now)).unwrap().accrued;
                let after = accrue(region, &lifetimes, at(now + later)).unwrap().accrued;
                prop_assert!(after >= before - 1e-9 * before.max(1.0));
            }

            #[test]
            fn cutting_a_lifetime_in_two_costs_the_same(
                region in region(),
                life in lifetime(),
                cut in 0.0..1.0f64,
                now in 0i64..600_000,
            ) {
                let end = life.to.unwrap_or(at(now));
                let middle = life.from + TimeDelta::seconds(((end - life.from).num_seconds() as f64 * cut) as i64);
                let halves = [
                    Lifetime { to: Some(middle), ..life.clone() },
                    Lifetime { from: middle, ..life.clone() },
                ];
                let whole = accrue(region, std::slice::from_ref(&life), at(now)).unwrap();
                let split = accrue(region, &halves, at(now)).unwrap();
                prop_assert!(close(whole.accrued, split.accrued), "{} vs {}", whole.accrued, split.accrued);
                prop_assert!(close(whole.per_hour, split.per_hour));
            }

            #[test]
            fn the_order_of_lifetimes_does_not_matter(
                region in region(),
                lifetimes in prop::collection::vec(lifetime(), 0..24),
                now in 0i64..600_000,
            ) {
                let mut reversed = lifetimes.clone();
                reversed.reverse();
                let a = accrue(region, &lifetimes, at(now)).unwrap();
                let b = accrue(region, &reversed, at(now)).unwrap();
                prop_assert!(close(a.accrued, b.accrued));
                prop_assert!(close(a.per_hour, b.per_hour));
            }
        }

        #[test]
        fn an_unknown_region_or_type_is_refused_not_guessed() {
            let life = Lifetime {
                kind: ResourceKind::Instance,
                instance_type: Some("x9.huge".into()),
                quantity: 1.0,
                from: at(0),
                to: None,
            };
            assert!(matches!(
                accrue("mars-north-1", &[], at(10)),
                Err(PriceError::UnknownRegion { .. })
            ));
            assert!(matches!(
                accrue("us-east-1", &[life], at(10)),
                Err(PriceError::UnknownInstanceType { .. })
            ));
        }

        #[test]
        fn an_hour_of_a_nat_gateway_costs_its_hourly_price() {
            let life = Lifetime {
                kind: ResourceKind::NatGateway,
                instance_type: None,
                quantity: 1.0,
                from: at(0),
                to: Some(at(3600)),
            };
            let accrual = accrue("us-east-1", &[life], at(7200)).unwrap();
            assert!(close(accrual.accrued, 0.045));
            assert_eq!(accrual.per_hour, 0.0, "a deleted gateway costs nothing now");
        }
    }
}
