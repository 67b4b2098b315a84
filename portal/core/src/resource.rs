//! The kinds of AWS resource a deployment is made of, as the engine records
//! them (the `resources` table's `kind` column), the cost view prices them
//! and the orphan scan reports them. A kind that is not here cannot be
//! recorded: the engine's `record` takes this type, not a string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A kind of AWS resource CloudPulse creates, named as in the `resources`
/// table (`kind` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Instance,
    NatGateway,
    /// An Elastic IP, or any other public IPv4 address.
    ElasticIp,
    Subnet,
    RouteTable,
    InternetGateway,
    SecurityGroup,
    NetworkAcl,
    Vpc,
    LaunchTemplate,
    LoadBalancer,
    TargetGroup,
    AutoScalingGroup,
    Alarm,
    IamRole,
    InstanceProfile,
    S3Bucket,
    /// A gp3 EBS volume, priced per GB.
    EbsVolume,
    /// One CloudWatch custom metric (one name and set of dimensions).
    CustomMetric,
    /// A load balancer's listener (billed with its load balancer).
    Listener,
    /// An Auto Scaling policy (free).
    ScalingPolicy,
    /// CloudWatch API use billed per thousand (requests, or metrics a
    /// `GetMetricData` asks for); its quantity is units an hour. Never a
    /// recorded resource: the cost view derives it from what is live.
    ApiRequests,
}

impl ResourceKind {
    /// Every kind.
    pub const ALL: [ResourceKind; 22] = [
        ResourceKind::Instance,
        ResourceKind::NatGateway,
        ResourceKind::ElasticIp,
        ResourceKind::Subnet,
        ResourceKind::RouteTable,
        ResourceKind::InternetGateway,
        ResourceKind::SecurityGroup,
        ResourceKind::NetworkAcl,
        ResourceKind::Vpc,
        ResourceKind::LaunchTemplate,
        ResourceKind::LoadBalancer,
        ResourceKind::TargetGroup,
        ResourceKind::AutoScalingGroup,
        ResourceKind::Alarm,
        ResourceKind::IamRole,
        ResourceKind::InstanceProfile,
        ResourceKind::S3Bucket,
        ResourceKind::EbsVolume,
        ResourceKind::CustomMetric,
        ResourceKind::Listener,
        ResourceKind::ScalingPolicy,
        ResourceKind::ApiRequests,
    ];

    /// The snake_case name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Instance => "instance",
            ResourceKind::NatGateway => "nat_gateway",
            ResourceKind::ElasticIp => "elastic_ip",
            ResourceKind::Subnet => "subnet",
            ResourceKind::RouteTable => "route_table",
            ResourceKind::InternetGateway => "internet_gateway",
            ResourceKind::SecurityGroup => "security_group",
            ResourceKind::NetworkAcl => "network_acl",
            ResourceKind::Vpc => "vpc",
            ResourceKind::LaunchTemplate => "launch_template",
            ResourceKind::LoadBalancer => "load_balancer",
            ResourceKind::TargetGroup => "target_group",
            ResourceKind::AutoScalingGroup => "auto_scaling_group",
            ResourceKind::Alarm => "alarm",
            ResourceKind::IamRole => "iam_role",
            ResourceKind::InstanceProfile => "instance_profile",
            ResourceKind::S3Bucket => "s3_bucket",
            ResourceKind::EbsVolume => "ebs_volume",
            ResourceKind::CustomMetric => "custom_metric",
            ResourceKind::Listener => "listener",
            ResourceKind::ScalingPolicy => "scaling_policy",
            ResourceKind::ApiRequests => "api_requests",
        }
    }

    /// Whether the resource costs nothing merely by existing. An S3 bucket
    /// counts as free: its storage is priced by size, not per bucket.
    pub fn is_free(self) -> bool {
        matches!(
            self,
            ResourceKind::Subnet
                | ResourceKind::RouteTable
                | ResourceKind::InternetGateway
                | ResourceKind::SecurityGroup
                | ResourceKind::NetworkAcl
                | ResourceKind::Vpc
                | ResourceKind::LaunchTemplate
                | ResourceKind::TargetGroup
                | ResourceKind::AutoScalingGroup
                | ResourceKind::IamRole
                | ResourceKind::InstanceProfile
                | ResourceKind::S3Bucket
                | ResourceKind::Listener
                | ResourceKind::ScalingPolicy
        )
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource kind name that [`ResourceKind`] does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown resource kind {0:?}")]
pub struct UnknownResourceKind(pub String);

impl FromStr for ResourceKind {
    type Err = UnknownResourceKind;

    /// Parses the exact snake_case name, e.g. `nat_gateway`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ResourceKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownResourceKind(text.to_owned()))
    }
}
