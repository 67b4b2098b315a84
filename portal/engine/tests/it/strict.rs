//! What a first real deploy meets, met in the strict sandbox: each test
//! turns on one AWS behaviour moto lacks (everything else instant, so the
//! test is about that behaviour alone) and shows the engine coping as it
//! must on AWS.

use crate::common;

use std::time::Duration;

use cloudpulse_core::model::{ChaosAction, Source};
use cloudpulse_engine::inventory;
use cloudpulse_engine::EngineError;
use cloudpulse_sandbox::Strictness;
use common::{params, strict_harness, Harness};

#[tokio::test]
async fn auto_scaling_is_retried_until_it_sees_a_fresh_instance_profile() {
    // Longer than the deploy takes from the profile to the group, with
    // nothing else waiting, even on a loaded machine (6 s was not: on a
    // machine running four builds the group came 7 s after the profile).
    let h = strict_harness(
        Strictness {
            iam_propagation: Duration::from_secs(20),
            ..Strictness::INSTANT
        },
        Duration::ZERO,
    )
    .await;
    let (_, job) = h.deploy(params("propagation")).await;
    let group = Harness::step(&job, "auto_scaling_group");
    assert!(
        group.attempts >= 2,
        "the group met the young profile: {group:?}"
    );
    let error = group.error.as_ref().expect("the refusal is kept");
    assert_eq!(error.code, "ValidationError");
    assert!(
        error.message.contains("Invalid IAM Instance Profile"),
        "{error:?}"
    );
    assert!(
        error.hint.as_deref().unwrap_or("").contains("retries"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_failed_nat_gateway_is_replaced_with_a_new_token() {
    let h = strict_harness(
        Strictness {
            nat_pending: Duration::from_millis(500),
            nat_deleting: Duration::from_millis(500),
            ..Strictness::INSTANT
        },
        Duration::ZERO,
    )
    .await;
    h.gateway().strict().fail_next_nat_gateways(1);
    let (deployment, job) = h.deploy(params("failed-nat")).await;
    let retried: Vec<_> = job
        .steps
        .iter()
        .filter(|s| s.key.starts_with("nat_gateway:") && s.attempts >= 2)
        .collect();
    assert_eq!(retried.len(), 1, "one gateway failed: {:?}", job.steps);
    let error = retried[0].error.as_ref().unwrap();
    assert_eq!(error.code, "NatGatewayFailed");
    assert!(
        error.message.contains("invalid state"),
        "AWS's reason: {error:?}"
    );

    // Undo, sweep and verification agree on the failed one: nothing left.
    h.teardown(&deployment).await;
    let names = h.names(&deployment).await;
    assert_eq!(inventory::remaining(&h.aws(), &names).await.unwrap(), []);
}

#[tokio::test]
async fn an_address_is_released_once_its_nat_gateway_is_deleted() {
    let h = strict_harness(
        Strictness {
            nat_deleting: Duration::from_secs(2),
            ..Strictness::INSTANT
        },
        Duration::ZERO,
    )
    .await;
    let (deployment, _) = h.deploy(params("eip-release")).await;
    // A teardown that stopped right after deleting the NAT gateways: they
    // are `deleting`, still holding their addresses, when the next one runs.
    let ec2 = &h.aws().ec2;
    let nats = ec2.describe_nat_gateways().send().await.unwrap();
    for nat in nats.nat_gateways() {
        ec2.delete_nat_gateway()
            .nat_gateway_id(nat.nat_gateway_id().unwrap())
            .send()
            .await
            .unwrap();
    }
    h.teardown(&deployment).await;
    let names = h.names(&deployment).await;
    assert_eq!(inventory::remaining(&h.aws(), &names).await.unwrap(), []);
}

#[tokio::test]
async fn teardown_waits_out_a_load_balancers_lingering_interfaces() {
    let h = strict_harness(
        Strictness {
            eni_linger: Duration::from_secs(2),
            ..Strictness::INSTANT
        },
        Duration::ZERO,
    )
    .await;
    let (deployment, _) = h.deploy(params("linger")).await;
    let job = h.teardown(&deployment).await;
    let waited: Vec<_> = job
        .steps
        .iter()
        .filter(|s| {
            s.error
                .as_ref()
                .is_some_and(|e| e.code == "DependencyViolation")
        })
        .collect();
    assert!(
        !waited.is_empty(),
        "a security group or subnet met the lingering interfaces: {:?}",
        job.steps
    );
    for step in waited {
        let hint = step.error.as_ref().and_then(|e| e.hint.as_deref());
        assert!(
            hint.is_some_and(|h| h.contains("linger") && h.contains("retries")),
            "{}: a clear note while it waits: {hint:?}",
            step.key
        );
    }
}

#[tokio::test]
async fn run_command_before_the_agent_registers_is_explained() {
    let h = strict_harness(
        Strictness {
            ssm_registration: Duration::from_secs(600),
            ..Strictness::INSTANT
        },
        Duration::ZERO,
    )
    .await;
    let (deployment, _) = h.deploy(params("agent")).await;
    let refused = h
        .engine
        .chaos(
            &deployment,
            None,
            ChaosAction::Stress { seconds: 5 },
            Source::Api,
        )
        .await
        .expect_err("no agent has registered yet");
    let EngineError::Aws(error) = refused else {
        panic!("an AWS refusal, got {refused:?}");
    };
    assert_eq!(error.code, "InvalidInstanceId");
    assert!(
        error.hint.as_deref().unwrap_or("").contains("SSM agent"),
        "{error:?}"
    );
}
