//! A burst of throttling, 5xx answers and dropped connections, injected by
//! the sandbox gateway into every service's own protocol, does not stop a
//! deploy or a teardown: the SDK's retries absorb most of it, step retries
//! the rest, and the result is the same stack an undisturbed deploy makes.

use crate::common;

use std::collections::BTreeMap;

use cloudpulse_engine::aws::Names;
use cloudpulse_engine::inventory;
use cloudpulse_sandbox::{Disruption, Gateway, Latency, MotoServer};
use common::{harness, harness_on, params, DeploymentId, Harness};

async fn census(h: &Harness, deployment: &DeploymentId) -> BTreeMap<String, usize> {
    let detail = h.engine.store().deployment(deployment).await.unwrap();
    let names = Names::new(deployment, &detail.name);
    let mut kinds = BTreeMap::new();
    for left in inventory::remaining(&h.aws(), &names).await.unwrap() {
        *kinds.entry(left.kind).or_insert(0) += 1;
    }
    kinds
}

#[tokio::test]
async fn a_burst_of_throttling_through_a_whole_deploy_and_teardown() {
    // The stack an undisturbed deploy makes, on a moto of its own.
    let calm = harness().await;
    let (reference, _) = calm.deploy(params("calm")).await;
    let expected = census(&calm, &reference).await;
    drop(calm);

    let moto = MotoServer::start().await.unwrap();
    // One request in two fails until 120 have. The SDK's five attempts
    // absorb nearly all of it; whatever gets through meets the step retries.
    let disruption = Disruption {
        every: 2,
        limit: 120,
    };
    let gateway = Gateway::start_disrupted(&moto.endpoint(), Latency::default(), disruption)
        .await
        .unwrap();
    let h = harness_on(moto, gateway.operator_sdk_config()).await;

    let (deployment, job) = h.deploy(params("throttled")).await;
    let during_deploy = gateway.disrupted();
    assert!(
        during_deploy >= 50,
        "the deploy met the burst: {during_deploy} requests disrupted"
    );
    let step_retries: u32 = job.steps.iter().map(|s| s.attempts.saturating_sub(1)).sum();
    assert_eq!(
        census(&h, &deployment).await,
        expected,
        "the throttled deploy made exactly the stack an undisturbed one makes"
    );

    h.teardown(&deployment).await;
    assert!(census(&h, &deployment).await.is_empty(), "nothing left");
    println!(
        "{during_deploy} requests disrupted during the deploy ({} in all); \
         {step_retries} reached a step's retries",
        gateway.disrupted()
    );
}
