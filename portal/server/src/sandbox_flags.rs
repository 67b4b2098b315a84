//! How strict and how slow the sandbox is: AWS's waits and refusals, each
//! on by default at AWS's figure times `--time-scale`, each with its own
//! flag (0 turns it off), and `--instant` for moto's world.
//!
//! The figures and where they come from are in docs/sandbox.md.

use std::time::Duration;

use clap::Args;
use cloudpulse_sandbox::{Disruption, Latency, LaunchFailure, Strictness};

/// The sandbox's AWS behaviours, given in AWS's seconds.
#[derive(Debug, Clone, Args)]
pub struct StrictArgs {
    /// Turn every behaviour below off (moto's instant world: nothing
    /// pending, nothing refused for being new or still in use), whatever
    /// the other flags say. For quick experiments; deploys that pass here
    /// may still fail on AWS.
    #[arg(long, env = "CLOUDPULSE_INSTANT")]
    pub instant: bool,

    /// Seconds a new instance profile is refused by RunInstances and
    /// CreateAutoScalingGroup, as IAM propagates (AWS: ~10 s, up to 2 min).
    #[arg(long, env = "CLOUDPULSE_IAM_PROPAGATION_SECS", default_value_t = 10)]
    pub iam_propagation_secs: u64,

    /// Seconds a new NAT gateway stays `pending` (AWS: 1 to 3.5 min).
    #[arg(long, env = "CLOUDPULSE_NAT_PENDING_SECS", default_value_t = 90)]
    pub nat_pending_secs: u64,

    /// Seconds a deleted NAT gateway stays `deleting`, holding its Elastic
    /// IP and subnet (AWS: about a minute).
    #[arg(long, env = "CLOUDPULSE_NAT_DELETING_SECS", default_value_t = 60)]
    pub nat_deleting_secs: u64,

    /// Seconds a `deleted` NAT gateway stays listed (AWS: about an hour);
    /// 0 lists it for ever, as moto does.
    #[arg(
        long,
        env = "CLOUDPULSE_NAT_DELETED_VISIBLE_SECS",
        default_value_t = 3600
    )]
    pub nat_deleted_visible_secs: u64,

    /// Make the next N NAT gateways created end `failed` (FailureCode
    /// InternalError), as AWS's occasionally do.
    #[arg(long, env = "CLOUDPULSE_FAIL_NEXT_NAT", default_value_t = 0)]
    pub fail_next_nat: u32,

    /// Seconds a new load balancer stays `provisioning` (AWS: 1 to 5 min).
    #[arg(long, env = "CLOUDPULSE_ALB_PROVISIONING_SECS", default_value_t = 90)]
    pub alb_provisioning_secs: u64,

    /// Seconds a deleted load balancer's network interfaces keep its
    /// security groups and subnets in use: DependencyViolation (AWS: minutes).
    #[arg(long, env = "CLOUDPULSE_ENI_LINGER_SECS", default_value_t = 120)]
    pub eni_linger_secs: u64,

    /// Seconds a new instance boots, `pending` in EC2 and Auto Scaling,
    /// before its service starts (AWS: AL2023 reaches user data in 25-40 s).
    #[arg(long, env = "CLOUDPULSE_INSTANCE_BOOT_SECS", default_value_t = 30)]
    pub instance_boot_secs: u64,

    /// Seconds after boot before an instance's SSM agent registers; until
    /// then SendCommand answers InvalidInstanceId (AWS: 1 to 3 min).
    #[arg(long, env = "CLOUDPULSE_SSM_REGISTRATION_SECS", default_value_t = 60)]
    pub ssm_registration_secs: u64,

    /// Seconds a datapoint takes to become visible in CloudWatch, to
    /// GetMetricData and to the alarms (AWS: one to three minutes).
    #[arg(long, env = "CLOUDPULSE_METRICS_DELAY_SECS", default_value_t = 60)]
    pub metrics_delay_secs: u64,

    /// Make the next launches of every deployment's Auto Scaling group fail
    /// as AWS fails them, each a `Failed` scaling activity with AWS's
    /// StatusMessage: KIND (insufficient-capacity, vcpu-limit or kms-grant)
    /// and optionally :N launches (default 1).
    #[arg(long, env = "CLOUDPULSE_FAIL_LAUNCHES", value_parser = fail_launches)]
    pub fail_launches: Option<(LaunchFailure, u32)>,

    /// Answer one request in N with a fault instead of forwarding it, in
    /// each service's own protocol: throttling (EC2 RequestLimitExceeded
    /// 503, ELB, Auto Scaling and CloudWatch Throttling 400, S3 SlowDown),
    /// and in turn a 5xx or a dropped connection. 0 (the default) is off;
    /// not affected by --instant.
    #[arg(long, env = "CLOUDPULSE_DISRUPT_EVERY", default_value_t = 0)]
    pub disrupt_every: u32,
}

/// What the sandbox's parts are given, on the sandbox's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Behaviours {
    /// The gateway's own clocks (load balancers `provisioning`; NAT
    /// gateways are the strict layer's).
    pub latency: Latency,
    pub strictness: Strictness,
    /// The data plane's boot time, in AWS's seconds (it scales it itself).
    pub boot_time: Duration,
    pub fail_next_nat: u32,
    pub disruption: Disruption,
    /// CloudWatch's ingestion delay, in AWS's seconds (the data plane
    /// scales it itself).
    pub metrics_delay: Duration,
    /// Launches to fail, and how many.
    pub fail_launches: Option<(LaunchFailure, u32)>,
}

/// `KIND[:N]` of `--fail-launches`.
fn fail_launches(text: &str) -> Result<(LaunchFailure, u32), String> {
    let (kind, count) = match text.split_once(':') {
        Some((kind, count)) => (kind, Some(count)),
        None => (text, None),
    };
    let failure = LaunchFailure::parse(kind).ok_or_else(|| {
        format!(
            "{kind:?} is not a launch failure; use insufficient-capacity, vcpu-limit or kms-grant, \
             optionally with :N launches"
        )
    })?;
    let count = match count {
        None => 1,
        Some(n) => n.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
            format!("{n:?} is not a number of launches; use a whole number above 0")
        })?,
    };
    Ok((failure, count))
}

impl StrictArgs {
    /// Every behaviour at its figure times `time_scale`, or none with
    /// `--instant`.
    pub fn behaviours(&self, time_scale: f64) -> Behaviours {
        let secs = |s: u64| {
            if self.instant {
                Duration::ZERO
            } else {
                Duration::from_secs(s)
            }
        };
        let scaled = |s: u64| secs(s).mul_f64(time_scale);
        Behaviours {
            latency: Latency {
                nat_pending: Duration::ZERO,
                alb_provisioning: scaled(self.alb_provisioning_secs),
            },
            strictness: Strictness {
                iam_propagation: scaled(self.iam_propagation_secs),
                nat_pending: scaled(self.nat_pending_secs),
                nat_deleting: scaled(self.nat_deleting_secs),
                nat_deleted_visible: scaled(self.nat_deleted_visible_secs),
                eni_linger: scaled(self.eni_linger_secs),
                instance_boot: scaled(self.instance_boot_secs),
                ssm_registration: scaled(self.ssm_registration_secs),
            },
            boot_time: secs(self.instance_boot_secs),
            fail_next_nat: if self.instant { 0 } else { self.fail_next_nat },
            metrics_delay: secs(self.metrics_delay_secs),
            fail_launches: self.fail_launches.filter(|_| !self.instant),
            disruption: Disruption {
                every: self.disrupt_every,
                limit: if self.disrupt_every == 0 { 0 } else { u32::MAX },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        strict: StrictArgs,
    }

    fn parse(args: &[&str]) -> StrictArgs {
        let mut argv = vec!["cloudpulse"];
        argv.extend_from_slice(args);
        Flags::parse_from(argv).strict
    }

    #[test]
    fn every_behaviour_is_on_by_default_at_the_time_scale() {
        let b = parse(&[]).behaviours(0.1);
        assert_eq!(b.strictness, Strictness::AWS.scaled(0.1));
        assert_eq!(b.latency.alb_provisioning, Duration::from_secs(9));
        assert_eq!(
            b.latency.nat_pending,
            Duration::ZERO,
            "the strict layer keeps NAT time"
        );
        assert_eq!(b.boot_time, Duration::from_secs(30));
        assert_eq!(b.disruption.every, 0);
    }

    #[test]
    fn each_has_its_own_flag_and_instant_turns_them_all_off() {
        let b = parse(&["--eni-linger-secs", "0", "--fail-next-nat", "2"]).behaviours(1.0);
        assert_eq!(b.strictness.eni_linger, Duration::ZERO);
        assert_eq!(b.strictness.nat_pending, Duration::from_secs(90));
        assert_eq!(b.fail_next_nat, 2);
        let b =
            parse(&["--instant", "--fail-next-nat", "2", "--disrupt-every", "5"]).behaviours(1.0);
        assert_eq!(b.strictness, Strictness::INSTANT);
        assert_eq!(b.latency, Latency::default());
        assert_eq!(b.boot_time, Duration::ZERO);
        assert_eq!(b.fail_next_nat, 0);
        assert_eq!(
            b.disruption.every, 5,
            "throttling on demand is asked for, not a default"
        );
    }

    #[test]
    fn metrics_arrive_a_minute_late_and_launches_fail_on_demand() {
        let b = parse(&[]).behaviours(0.1);
        assert_eq!(b.metrics_delay, Duration::from_secs(60));
        assert_eq!(b.fail_launches, None);
        let b = parse(&["--fail-launches", "vcpu-limit:3"]).behaviours(1.0);
        assert_eq!(b.fail_launches, Some((LaunchFailure::VcpuLimit, 3)));
        let b = parse(&["--fail-launches", "insufficient-capacity"]).behaviours(1.0);
        assert_eq!(
            b.fail_launches,
            Some((LaunchFailure::InsufficientCapacity, 1))
        );
        let b = parse(&["--instant", "--fail-launches", "kms-grant"]).behaviours(1.0);
        assert_eq!((b.metrics_delay, b.fail_launches), (Duration::ZERO, None));
        assert!(fail_launches("bogus").unwrap_err().contains("vcpu-limit"));
        assert!(fail_launches("kms-grant:0")
            .unwrap_err()
            .contains("above 0"));
    }
}
