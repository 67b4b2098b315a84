//! The preflight against moto through the sandbox gateway: the defaults
//! pass, an unknown region, an instance type no zone offers and a quota
//! already used up fail, each with a hint, and nothing is created.

use crate::common;

use cloudpulse_core::model::{CheckStatus, Preflight};
use cloudpulse_engine::preflight::{
    CREDENTIALS, IMAGE, QUOTA_ALBS, QUOTA_EIPS, QUOTA_NAT, QUOTA_VCPUS, QUOTA_VPCS, REGION, ZONES,
};
use cloudpulse_sandbox::{Gateway, Latency, MotoServer};
use common::{harness_on, params};

fn check<'a>(preflight: &'a Preflight, name: &str) -> &'a cloudpulse_core::model::Check {
    preflight
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {preflight:#?}"))
}

fn status(preflight: &Preflight, name: &str) -> CheckStatus {
    check(preflight, name).status
}

#[tokio::test]
async fn preflight_passes_the_defaults_and_fails_what_cannot_deploy() {
    let moto = MotoServer::start().await.unwrap();
    let gateway = Gateway::start(&moto.endpoint(), Latency::default())
        .await
        .unwrap();
    let h = harness_on(moto, gateway.operator_sdk_config()).await;
    let aws = h.aws();

    // The defaults: everything moto can answer passes.
    let ok = h.engine.preflight(&params("defaults")).await;
    assert!(ok.ok, "{ok:#?}");
    for name in [
        CREDENTIALS,
        REGION,
        IMAGE,
        ZONES,
        QUOTA_VPCS,
        QUOTA_EIPS,
        QUOTA_NAT,
    ] {
        assert_eq!(status(&ok, name), CheckStatus::Pass, "{name}: {ok:#?}");
    }
    let identity = &check(&ok, CREDENTIALS).detail;
    assert!(identity.contains("123456789012"), "{identity}");
    assert!(identity.contains("arn:aws:"), "{identity}");
    // moto 5.2.5's Service Quotas knows the VPC quotas; EC2's account
    // attributes give the Elastic IPs.
    assert!(check(&ok, QUOTA_VPCS).detail.contains("L-F678F1CE"));
    assert!(check(&ok, QUOTA_NAT).detail.contains("L-FE5A380F"));
    assert!(check(&ok, QUOTA_EIPS)
        .detail
        .contains("vpc-max-elastic-ips"));
    // What moto does not expose is said to be unchecked, not made up.
    for name in [QUOTA_ALBS, QUOTA_VCPUS] {
        let line = check(&ok, name);
        assert_eq!(line.status, CheckStatus::Warn, "{name}: {line:#?}");
        assert!(line.detail.starts_with("not checked"), "{line:#?}");
    }
    assert!(check(&ok, QUOTA_VCPUS)
        .detail
        .contains("this deployment needs 8"));

    // A region EC2 does not know: the rest is not asked.
    let nowhere = h
        .engine
        .preflight(&cloudpulse_engine::params::DeploymentParams {
            region: "xx-nowhere-1".into(),
            ..params("nowhere")
        })
        .await;
    assert!(!nowhere.ok);
    let region = check(&nowhere, REGION);
    assert_eq!(region.status, CheckStatus::Fail);
    assert!(region.detail.contains("xx-nowhere-1"), "{region:#?}");
    assert!(
        region.hint.as_deref().unwrap().contains("us-east-1"),
        "{region:#?}"
    );
    assert_eq!(status(&nowhere, CREDENTIALS), CheckStatus::Pass);
    assert_eq!(status(&nowhere, IMAGE), CheckStatus::Warn);

    // An instance type no zone offers.
    let unknown = h
        .engine
        .preflight(&cloudpulse_engine::params::DeploymentParams {
            instance_type: "x9.nonexistent".into(),
            ..params("unknown")
        })
        .await;
    assert!(!unknown.ok);
    let zones = check(&unknown, ZONES);
    assert_eq!(zones.status, CheckStatus::Fail, "{zones:#?}");
    assert!(zones.detail.contains("x9.nonexistent"), "{zones:#?}");
    assert!(zones.hint.is_some());

    // Use up the VPC quota (the default VPC counts) and most Elastic IPs.
    let vpc_quota = 5;
    let existing = aws.ec2.describe_vpcs().send().await.unwrap().vpcs().len();
    for n in existing..vpc_quota {
        aws.ec2
            .create_vpc()
            .cidr_block(format!("10.{}.0.0/16", 100 + n))
            .send()
            .await
            .unwrap();
    }
    for _ in 0..4 {
        aws.ec2.allocate_address().send().await.unwrap();
    }
    let full = h.engine.preflight(&params("full")).await;
    assert!(!full.ok);
    let vpcs = check(&full, QUOTA_VPCS);
    assert_eq!(vpcs.status, CheckStatus::Fail, "{vpcs:#?}");
    assert!(vpcs.detail.contains("5 VPCs in use"), "{vpcs:#?}");
    assert!(
        vpcs.hint.as_deref().unwrap().contains("L-F678F1CE"),
        "{vpcs:#?}"
    );
    // 4 in use + 2 NAT gateways > 5; a single NAT gateway still fits.
    assert_eq!(status(&full, QUOTA_EIPS), CheckStatus::Fail);
    let single = h
        .engine
        .preflight(&cloudpulse_engine::params::DeploymentParams {
            nat: cloudpulse_engine::params::NatMode::Single,
            ..params("single")
        })
        .await;
    assert_eq!(
        status(&single, QUOTA_EIPS),
        CheckStatus::Pass,
        "{single:#?}"
    );

    // The preflight itself created nothing.
    let vpcs_after = aws.ec2.describe_vpcs().send().await.unwrap().vpcs().len();
    assert_eq!(vpcs_after, vpc_quota);
}
