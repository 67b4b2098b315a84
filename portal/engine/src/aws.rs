//! The AWS clients a deployment uses, and how its resources are named and tagged.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{Region, SdkConfig};
use cloudpulse_core::ids::DeploymentId;

pub use cloudpulse_core::tags::{DEPLOYMENT as TAG_DEPLOYMENT, STEP as TAG_STEP};

/// Clients for one region, built once from one `SdkConfig` and cloned.
#[derive(Clone, Debug)]
pub struct Aws {
    pub region: String,
    /// False when the endpoint is plain HTTP (the sandbox); AWS is always TLS.
    pub tls: bool,
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub asg: aws_sdk_autoscaling::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub iam: aws_sdk_iam::Client,
    pub s3: aws_sdk_s3::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub sts: aws_sdk_sts::Client,
    pub quotas: aws_sdk_servicequotas::Client,
}

impl Aws {
    /// Clients for `region`. With an endpoint override (the sandbox, or any
    /// AWS-compatible endpoint) S3 uses path-style addressing.
    pub fn new(sdk: &SdkConfig, region: &str) -> Self {
        let sdk = sdk
            .to_builder()
            .region(Region::new(region.to_string()))
            .retry_config(retry_config())
            .build();
        let s3_config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        Aws {
            region: region.to_string(),
            tls: sdk
                .endpoint_url()
                .is_none_or(|url| url.starts_with("https://")),
            ec2: aws_sdk_ec2::Client::new(&sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
            asg: aws_sdk_autoscaling::Client::new(&sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
            iam: aws_sdk_iam::Client::new(&sdk),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            ssm: aws_sdk_ssm::Client::new(&sdk),
            sts: aws_sdk_sts::Client::new(&sdk),
            quotas: aws_sdk_servicequotas::Client::new(&sdk),
        }
    }
}

/// The most regions whose clients are kept: more than AWS has (see
/// `cloudpulse_core::params::AWS_REGIONS`), so only a name that slipped past
/// the region check finds the cache full.
pub const MAX_CACHED_REGIONS: usize = 64;

/// The clients for `region` from `cache`, built and kept on first use while
/// fewer than [`MAX_CACHED_REGIONS`] are kept; beyond that they are built
/// for the call and dropped, so the cache never grows without end.
pub fn cached(cache: &mut HashMap<String, Aws>, sdk: &SdkConfig, region: &str) -> Aws {
    if let Some(aws) = cache.get(region) {
        return aws.clone();
    }
    let aws = Aws::new(sdk, region);
    if cache.len() < MAX_CACHED_REGIONS {
        cache.insert(region.to_string(), aws.clone());
    } else {
        tracing::warn!(
            region,
            "the AWS client cache is full; clients built for one call"
        );
    }
    aws
}

/// The SDK's own retries: throttling, 5xx and dropped connections are tried
/// again with jittered exponential backoff before a step sees an error; what
/// still fails goes to the step's retries, which wait longer.
fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(5)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(10))
}

/// Deterministic names, so an action can find what an earlier attempt made.
#[derive(Clone, Debug)]
pub struct Names {
    /// The deployment's UUID.
    pub deployment: DeploymentId,
    /// The person's name for it.
    pub display: String,
    /// First 8 hex digits of the UUID: short enough for 32-character names.
    pub short: String,
}

impl Names {
    pub fn new(deployment_id: &DeploymentId, display: &str) -> Self {
        let short: String = deployment_id
            .as_str()
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase();
        Names {
            deployment: deployment_id.clone(),
            display: display.to_string(),
            short,
        }
    }

    pub fn prefix(&self) -> String {
        format!("cloudpulse-{}", self.short)
    }

    pub fn role(&self) -> String {
        format!("{}-ec2-role", self.prefix())
    }

    pub fn instance_profile(&self) -> String {
        format!("{}-ec2-profile", self.prefix())
    }

    /// Globally unique enough: the whole UUID, without hyphens.
    pub fn bucket(&self) -> String {
        let hex: String = self
            .deployment
            .as_str()
            .chars()
            .filter(char::is_ascii_hexdigit)
            .collect();
        format!("cloudpulse-{}", hex.to_ascii_lowercase())
    }

    pub fn alb_security_group(&self) -> String {
        format!("{}-alb", self.prefix())
    }

    pub fn app_security_group(&self) -> String {
        format!("{}-app", self.prefix())
    }

    /// ELB names: at most 32 characters.
    pub fn load_balancer(&self) -> String {
        format!("cp-{}-alb", self.short)
    }

    pub fn target_group(&self) -> String {
        format!("cp-{}-tg", self.short)
    }

    pub fn launch_template(&self) -> String {
        format!("{}-lt", self.prefix())
    }

    pub fn auto_scaling_group(&self) -> String {
        format!("{}-asg", self.prefix())
    }

    pub fn scale_out_policy(&self) -> String {
        format!("{}-scale-out", self.prefix())
    }

    pub fn scale_in_policy(&self) -> String {
        format!("{}-scale-in", self.prefix())
    }

    pub fn high_cpu_alarm(&self) -> String {
        format!("{}-cpu-high", self.prefix())
    }

    pub fn low_cpu_alarm(&self) -> String {
        format!("{}-cpu-low", self.prefix())
    }

    /// The Name tag: readable in the AWS console.
    pub fn name_tag(&self, what: &str) -> String {
        format!("{}-{what}", self.display)
    }

    /// The tags every resource of step `step` carries, plus its Name.
    pub fn tags(&self, step: &str, what: &str) -> Vec<(String, String)> {
        vec![
            (TAG_DEPLOYMENT.to_string(), self.deployment.to_string()),
            (TAG_STEP.to_string(), step.to_string()),
            ("Name".to_string(), self.name_tag(what)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_aws_limits() {
        let names = Names::new(
            &"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
            "a-rather-long-name-of-32-chars-x",
        );
        assert_eq!(names.short, "0f1e2d3c");
        assert!(names.load_balancer().len() <= 32);
        assert!(names.target_group().len() <= 32);
        assert!(names.bucket().len() <= 63);
        assert_eq!(
            names.bucket(),
            "cloudpulse-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
        );
        assert!(names.role().len() <= 64);
    }

    #[test]
    fn the_client_cache_keeps_at_most_its_bound() {
        let sdk = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let mut cache = HashMap::new();
        for n in 0..MAX_CACHED_REGIONS + 10 {
            let aws = cached(&mut cache, &sdk, &format!("xx-test-{n}"));
            assert_eq!(aws.region, format!("xx-test-{n}"));
        }
        assert_eq!(cache.len(), MAX_CACHED_REGIONS);
        // What is kept is reused.
        cached(&mut cache, &sdk, "xx-test-0");
        assert_eq!(cache.len(), MAX_CACHED_REGIONS);
    }
}
