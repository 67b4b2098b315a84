//! The preflight: what must hold before a deploy can succeed, asked of AWS
//! without changing anything.
//!
//! Who the credentials are, whether the region exists and is enabled,
//! whether the Amazon Linux image resolves, whether the zones the network
//! steps will pick offer the instance type, and whether the account's quotas
//! leave room for what this deployment creates. A quota the endpoint does
//! not expose is reported as not checked (a warning), never guessed.

use std::collections::BTreeSet;

use aws_config::SdkConfig;
use aws_credential_types::credential_feature::AwsCredentialFeature;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_ec2::types::{Filter, LocationType};
use chrono::Utc;
use cloudpulse_core::model::{Check, CheckStatus, Preflight};

use crate::aws::Aws;
use crate::error::{SdkResultExt, StepError, StepResult};
use crate::params::DeploymentParams;
use crate::runner::Engine;
use crate::steps::{self, AMI_PARAMETER};

mod quotas;

pub use quotas::*;

/// Region asked for DescribeRegions and STS when the SDK names none.
const FALLBACK_REGION: &str = "us-east-1";

fn pass(name: &str, detail: String) -> Check {
    Check {
        name: name.into(),
        status: CheckStatus::Pass,
        detail,
        hint: None,
    }
}

fn fail(name: &str, detail: String, hint: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        status: CheckStatus::Fail,
        detail,
        hint: Some(hint.into()),
    }
}

fn not_run(name: &str, because: &str) -> Check {
    Check {
        name: name.into(),
        status: CheckStatus::Warn,
        detail: format!("not checked: {because}"),
        hint: Some("fix the failed check above and run the preflight again".into()),
    }
}

pub const CREDENTIALS: &str = "Credentials";
pub const REGION: &str = "Region";
pub const IMAGE: &str = "Amazon Linux 2023 image";
pub const ZONES: &str = "Instance type in the zones";
pub const QUOTA_VPCS: &str = "Quota: VPCs per region";
pub const QUOTA_EIPS: &str = "Quota: Elastic IPs";
pub const QUOTA_NAT: &str = "Quota: NAT gateways per zone";
pub const QUOTA_ALBS: &str = "Quota: Application Load Balancers";
pub const QUOTA_VCPUS: &str = "Quota: On-Demand standard vCPUs";

const NEEDS_REGION: &[&str] = &[
    IMAGE,
    ZONES,
    QUOTA_VPCS,
    QUOTA_EIPS,
    QUOTA_NAT,
    QUOTA_ALBS,
    QUOTA_VCPUS,
];

impl Engine {
    /// Checks what a deploy of `params` needs, changing nothing. Never
    /// fails itself: what cannot be asked becomes a failed or unchecked line.
    pub async fn preflight(&self, params: &DeploymentParams) -> Preflight {
        let home_region = self
            .sdk()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| FALLBACK_REGION.into());
        let home = self.aws(&home_region);
        let (identity, region) = tokio::join!(
            credentials(self.sdk(), &home),
            region(&home, &params.region)
        );
        let mut checks = vec![identity, region];
        let blocked = if checks[0].status == CheckStatus::Fail {
            Some("the credentials do not work")
        } else if checks[1].status == CheckStatus::Fail {
            Some("the region cannot be used")
        } else {
            None
        };
        match blocked {
            Some(because) => checks.extend(NEEDS_REGION.iter().map(|n| not_run(n, because))),
            None => {
                let aws = self.aws(&params.region);
                let (image, zones, quotas) =
                    tokio::join!(image(&aws), zones(&aws, params), quotas(&aws, params));
                checks.push(image);
                checks.push(zones);
                checks.extend(quotas);
            }
        }
        Preflight::new(checks, Utc::now())
    }
}

// ---------------------------------------------------------------------------
// Identity

/// Where the credential chain found the credentials, in a person's words,
/// and the last four characters of the key id (never more of it).
async fn credential_source(sdk: &SdkConfig) -> Result<(String, String), String> {
    let provider = sdk
        .credentials_provider()
        .ok_or("no credential provider is configured")?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| aws_smithy_types::error::display::DisplayErrorContext(e).to_string())?;
    let profile = std::env::var("AWS_PROFILE")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "default".into());
    let features = credentials
        .get_property::<Vec<AwsCredentialFeature>>()
        .cloned()
        .unwrap_or_default();
    let has = |f: AwsCredentialFeature| features.contains(&f);
    use AwsCredentialFeature as F;
    let source = if has(F::CredentialsEnvVarsStsWebIdToken)
        || has(F::CredentialsProfileStsWebIdToken)
        || has(F::CredentialsStsAssumeRoleWebId)
    {
        "a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE)".to_string()
    } else if has(F::CredentialsEnvVars) {
        "environment variables (AWS_ACCESS_KEY_ID)".to_string()
    } else if has(F::CredentialsSso) || has(F::CredentialsProfileSso) {
        format!("SSO, profile {profile}")
    } else if has(F::CredentialsStsAssumeRole) {
        format!("an assumed role, profile {profile}")
    } else if has(F::CredentialsProcess) || has(F::CredentialsProfileProcess) {
        format!("credential_process, profile {profile}")
    } else if has(F::CredentialsProfile) {
        format!("the shared credentials file, profile {profile}")
    } else if has(F::CredentialsHttp) {
        "the container's role (ECS/EKS credentials endpoint)".to_string()
    } else if has(F::CredentialsImds) {
        "the EC2 instance's role (instance metadata)".to_string()
    } else if let Some(endpoint) = sdk.endpoint_url() {
        format!("static credentials set by the portal for {endpoint}")
    } else {
        "static credentials set by the portal".to_string()
    };
    let key = credentials.access_key_id();
    let tail: String = key
        .chars()
        .skip(key.chars().count().saturating_sub(4))
        .collect();
    Ok((source, tail))
}

async fn credentials(sdk: &SdkConfig, home: &Aws) -> Check {
    let (source, key_tail) = match credential_source(sdk).await {
        Ok(found) => found,
        Err(why) => {
            return fail(
                CREDENTIALS,
                format!("no usable credentials: {why}"),
                "set AWS_PROFILE (after `aws sso login --profile NAME` for SSO), or \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run the portal where an \
                 instance or container role is available",
            )
        }
    };
    match home.sts.get_caller_identity().send().await.step() {
        Ok(me) => pass(
            CREDENTIALS,
            format!(
                "{} in account {}; credentials from {source}, key id ending in {key_tail}",
                me.arn().unwrap_or("an unnamed identity"),
                me.account().unwrap_or("unknown"),
            ),
        ),
        Err(error) => fail(
            CREDENTIALS,
            format!("STS refused the credentials from {source}: {error}"),
            "the credentials may have expired or been revoked: refresh them (`aws sso login`, \
             new access keys) and check again",
        ),
    }
}

// ---------------------------------------------------------------------------
// Region and image

async fn region(home: &Aws, region: &str) -> Check {
    let answer = home
        .ec2
        .describe_regions()
        .all_regions(true)
        .send()
        .await
        .step();
    let out = match answer {
        Ok(out) => out,
        Err(error) => {
            return fail(
                REGION,
                format!("DescribeRegions failed: {error}"),
                error.hint.clone().unwrap_or_else(|| {
                    "allow ec2:DescribeRegions (see policy/operator-policy.json)".into()
                }),
            )
        }
    };
    let usable: Vec<&str> = out
        .regions()
        .iter()
        .filter(|r| r.opt_in_status() != Some("not-opted-in"))
        .filter_map(|r| r.region_name())
        .collect();
    match out
        .regions()
        .iter()
        .find(|r| r.region_name() == Some(region))
    {
        None => fail(
            REGION,
            format!("{region} is not a region EC2 knows"),
            format!("choose one of: {}", usable.join(", ")),
        ),
        Some(r) if r.opt_in_status() == Some("not-opted-in") => fail(
            REGION,
            format!("{region} is not enabled for this account"),
            format!(
                "enable it under Account > AWS Regions in the console (it takes a few \
                 minutes), or choose an enabled one: {}",
                usable.join(", ")
            ),
        ),
        Some(r) => pass(
            REGION,
            format!(
                "{region} is {}",
                match r.opt_in_status() {
                    Some("opted-in") => "enabled (opted in)",
                    _ => "enabled",
                }
            ),
        ),
    }
}

async fn image(aws: &Aws) -> Check {
    match steps::latest_ami(aws).await {
        Ok(ami) => pass(IMAGE, format!("{ami}, from {AMI_PARAMETER}")),
        Err(error) => fail(
            IMAGE,
            format!("{AMI_PARAMETER} did not resolve: {error}"),
            error.hint.clone().unwrap_or_else(|| {
                "allow ssm:GetParameter on the public Amazon Linux parameters \
                 (see policy/operator-policy.json), or choose another region"
                    .into()
            }),
        ),
    }
}

// ---------------------------------------------------------------------------
// Zones

/// The zones a deployment of `params` uses: the first `azs` in name order,
/// as the subnet steps pick them.
async fn chosen_zones(aws: &Aws, params: &DeploymentParams) -> StepResult<Vec<String>> {
    let all = steps::zones(aws).await?;
    let wanted = usize::from(params.azs);
    if all.len() < wanted {
        return Err(StepError::fatal(
            "NotEnoughZones",
            format!(
                "{} offers {} availability zones and the deployment asks for {wanted}",
                aws.region,
                all.len()
            ),
        ));
    }
    Ok(all.into_iter().take(wanted).collect())
}

async fn zones(aws: &Aws, params: &DeploymentParams) -> Check {
    let chosen = match chosen_zones(aws, params).await {
        Ok(chosen) => chosen,
        Err(error) => {
            return fail(
                ZONES,
                error.to_string(),
                "use fewer availability zones (--azs 2), or another region",
            )
        }
    };
    let offered = aws
        .ec2
        .describe_instance_type_offerings()
        .location_type(LocationType::AvailabilityZone)
        .filters(
            Filter::builder()
                .name("instance-type")
                .values(&params.instance_type)
                .build(),
        )
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .step();
    let offered: BTreeSet<String> = match offered {
        Ok(offerings) => offerings
            .iter()
            .filter_map(|o| o.location().map(str::to_string))
            .collect(),
        Err(error) => {
            return fail(
                ZONES,
                format!("DescribeInstanceTypeOfferings failed: {error}"),
                error.hint.clone().unwrap_or_else(|| {
                    "allow ec2:DescribeInstanceTypeOfferings (see policy/operator-policy.json)"
                        .into()
                }),
            )
        }
    };
    let missing: Vec<&str> = chosen
        .iter()
        .filter(|z| !offered.contains(*z))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        pass(
            ZONES,
            format!(
                "{} is offered in {}",
                params.instance_type,
                chosen.join(", ")
            ),
        )
    } else if offered.is_empty() {
        fail(
            ZONES,
            format!(
                "{} is offered in no availability zone of {}",
                params.instance_type, aws.region
            ),
            "choose another instance type, such as t3.micro, or another region",
        )
    } else {
        fail(
            ZONES,
            format!(
                "{} is not offered in {} (the deployment uses {})",
                params.instance_type,
                missing.join(", "),
                chosen.join(", ")
            ),
            format!(
                "choose another instance type, such as t3.micro, or a region where it is \
                 offered in every zone used; it is offered in {}",
                offered.into_iter().collect::<Vec<_>>().join(", ")
            ),
        )
    }
}
