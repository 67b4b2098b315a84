//! The orphan scan finds what no database tracks — a deployment whose
//! database was lost, leftovers of a torn-down one — prices it, and removes
//! it with ordinary teardown jobs, touching nothing that is tracked.

use crate::common;

use std::collections::BTreeMap;

use cloudpulse_core::model::{DeploymentStatus, OrphanReason, Source};
use cloudpulse_engine::aws::{Names, TAG_DEPLOYMENT, TAG_STEP};
use cloudpulse_engine::{inventory, Engine};
use common::{assert_done, engine_on, harness, params, DeploymentId};

async fn census(engine: &Engine, id: &DeploymentId) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for left in inventory::remaining(&engine.aws("us-east-1"), &Names::new(id, ""))
        .await
        .unwrap()
    {
        *kinds.entry(left.kind).or_insert(0) += 1;
    }
    kinds
}

async fn clean(engine: &Engine) -> usize {
    let started = engine
        .clean_orphans("us-east-1", Source::Cli)
        .await
        .unwrap();
    for cleanup in &started {
        assert_done(&engine.wait(&cleanup.job_id).await.unwrap());
    }
    started.len()
}

#[tokio::test]
async fn a_lost_database_leaves_orphans_that_the_scan_finds_prices_and_removes() {
    let h = harness().await;
    let (lost, _) = h.deploy(params("lost")).await;
    let lost_census = census(&h.engine, &lost).await;

    // A second portal with a fresh database: the first one's stack is
    // unknown to it, its own stack is not an orphan.
    let (portal, _dir) = engine_on(h.gateway().operator_sdk_config()).await;
    let created = portal
        .deploy(params("kept"), Source::Api, None)
        .await
        .unwrap();
    assert_done(&portal.wait(&created.job_id).await.unwrap());
    let kept = created.deployment_id;
    let kept_census = census(&portal, &kept).await;

    let scan = portal.scan_orphans("us-east-1").await.unwrap();
    assert_eq!(scan.orphans.len(), 1, "{scan:#?}");
    let orphan = &scan.orphans[0];
    assert_eq!(orphan.deployment_id, lost);
    assert_eq!(orphan.reason, OrphanReason::Unknown);
    assert_eq!(orphan.name, None);
    let mut kinds = BTreeMap::new();
    for resource in &orphan.resources {
        *kinds.entry(resource.kind.clone()).or_insert(0) += 1;
    }
    assert_eq!(kinds, lost_census, "every resource of the lost stack");
    // Two NAT gateways, their addresses, a load balancer, two instances.
    let hourly = orphan.hourly_usd.expect("us-east-1 prices are known");
    assert!(hourly > 0.1 && hourly < 0.3, "{hourly}");
    let nat = orphan
        .resources
        .iter()
        .find(|r| r.kind == "nat_gateway")
        .unwrap();
    assert!(nat.created.is_some(), "a NAT gateway's age is known");
    assert_eq!(scan.hourly_usd, orphan.hourly_usd);

    assert_eq!(clean(&portal).await, 1);
    assert!(
        census(&portal, &lost).await.is_empty(),
        "the lost stack is gone"
    );
    assert_eq!(
        census(&portal, &kept).await,
        kept_census,
        "the tracked one is untouched"
    );
    let recovered = portal.store().deployment(&lost).await.unwrap();
    assert_eq!(recovered.status, DeploymentStatus::TornDown);
    assert!(
        recovered.name.starts_with("recovered-"),
        "{}",
        recovered.name
    );
    assert!(portal
        .scan_orphans("us-east-1")
        .await
        .unwrap()
        .orphans
        .is_empty());
    // The first portal tracks its own deployment, so from there only the
    // second portal's stack is unknown: orphans are relative to a database.
    let from_first = h.engine.scan_orphans("us-east-1").await.unwrap();
    let unknown: Vec<&str> = from_first
        .orphans
        .iter()
        .map(|o| o.deployment_id.as_str())
        .collect();
    assert_eq!(unknown, [kept.as_str()]);
}

#[tokio::test]
async fn a_leftover_of_a_torn_down_deployment_is_found_and_removed() {
    let h = harness().await;
    let (id, _) = h.deploy(params("leaky")).await;
    h.teardown(&id).await;
    // Something made for it after all: an Elastic IP tagged as its step
    // tags them, as a late create racing the teardown could leave.
    let ec2 = &h.aws().ec2;
    let address = ec2
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::ElasticIp)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key(TAG_DEPLOYMENT)
                        .value(id.as_str())
                        .build(),
                )
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key(TAG_STEP)
                        .value("elastic_ip:1")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();

    let scan = h.engine.scan_orphans("us-east-1").await.unwrap();
    assert_eq!(scan.orphans.len(), 1, "{scan:#?}");
    let orphan = &scan.orphans[0];
    assert_eq!(orphan.reason, OrphanReason::TornDown);
    assert_eq!(orphan.name.as_deref(), Some("leaky"));
    assert_eq!(orphan.resources.len(), 1);
    assert_eq!(orphan.resources[0].id, address.allocation_id().unwrap());
    assert_eq!(orphan.hourly_usd, Some(0.005), "one public IPv4 address");

    // A new deployment may take the old name meanwhile; cleaning must not
    // collide with it.
    h.deploy(params("leaky")).await;
    assert_eq!(clean(&h.engine).await, 1);
    assert!(census(&h.engine, &id).await.is_empty());
    let detail = h.engine.store().deployment(&id).await.unwrap();
    assert_eq!(detail.status, DeploymentStatus::TornDown);
    assert_eq!(detail.jobs.len(), 3, "deploy, teardown, and the cleanup");
}
