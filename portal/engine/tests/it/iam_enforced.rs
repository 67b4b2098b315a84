//! The sandbox enforces IAM: the engine signs as the operator, holding the
//! operator policy's sandbox copy. Take one action out of the policy and the
//! deploy step that needs it fails with the service's own denial and a hint
//! that names the action and the operator policy; nothing else is denied
//! (every other test deploys under the whole policy).

use std::time::Duration;

use cloudpulse_core::model::{JobStatus, Source, StepStatus};
use cloudpulse_engine::params::DeploymentParams;
use cloudpulse_engine::Engine;
use cloudpulse_sandbox::iam::operator_policy;
use cloudpulse_sandbox::moto::{MotoOptions, MotoServer};
use cloudpulse_sandbox::{Disruption, Gateway, Latency, Strictness};
use serde_json::Value;

use crate::common::{engine_on, TIME_SCALE};

/// The operator policy's documents with `action` taken out of every
/// statement that names it (a statement left with no action goes).
fn without(action: &str) -> Vec<(String, String)> {
    let mut found = false;
    let documents = operator_policy()
        .into_iter()
        .map(|(name, document)| {
            let mut policy: Value = serde_json::from_str(&document).unwrap();
            let statements = policy["Statement"].as_array_mut().unwrap();
            statements.retain_mut(|statement| match &mut statement["Action"] {
                Value::String(one) if one == action => {
                    found = true;
                    false
                }
                Value::Array(many) => {
                    let before = many.len();
                    many.retain(|a| a != action);
                    found |= many.len() < before;
                    !many.is_empty()
                }
                _ => true,
            });
            (name, policy.to_string())
        })
        .collect();
    assert!(found, "the operator policy does not grant {action}");
    documents
}

/// Deploys with `action` denied, on the strict sandbox at the tests' time
/// scale, and checks that step `step` fails with `code`, its hint naming the
/// action when the denial names it.
async fn denied(action: &str, step: &str, code: &str) {
    let moto = MotoServer::start_with(MotoOptions {
        operator_policy: without(action),
        ..Default::default()
    })
    .await
    .expect("start moto");
    let latency = Latency {
        nat_pending: Duration::ZERO,
        alb_provisioning: Duration::from_secs(90).mul_f64(TIME_SCALE),
    };
    let gateway = Gateway::start_strict(
        &moto.endpoint(),
        latency,
        Strictness::AWS.scaled(TIME_SCALE),
        Disruption::default(),
    )
    .await
    .expect("start the gateway");
    gateway.faithful().set_time_scale(TIME_SCALE);
    let (engine, _dir): (Engine, _) = engine_on(gateway.operator_sdk_config()).await;
    let created = engine
        .deploy(
            DeploymentParams {
                name: format!("denied-{}", step.replace('_', "-")),
                ..Default::default()
            },
            Source::Api,
            None,
        )
        .await
        .expect("deploy accepted");
    let job = engine.wait(&created.job_id).await.unwrap();
    assert_eq!(job.status, JobStatus::Failed, "{action}: {job:?}");
    let failed: Vec<_> = job
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Failed)
        .collect();
    let culprit = failed
        .iter()
        .find(|s| s.key == step)
        .unwrap_or_else(|| panic!("{action}: step {step} did not fail; failed: {failed:?}"));
    let failure = culprit.error.as_ref().expect("a failure");
    assert_eq!(failure.code, code, "{action}: {failure:?}");
    let hint = failure.hint.as_deref().expect("a hint");
    assert!(hint.contains("policy/operator-policy.json"), "{hint}");
    if failure.message.contains(action) {
        assert!(
            hint.starts_with(&format!("the credentials lack {action},")),
            "{hint}"
        );
    }
    // Denied is denied: no step took it for a hiccup and tried again.
    assert_eq!(culprit.attempts, 1, "{action}: {culprit:?}");
    moto.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ec2_create_vpc_the_vpc_step_is_unauthorized() {
    denied("ec2:CreateVpc", "vpc", "UnauthorizedOperation").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_elb_create_target_group_the_target_group_step_is_denied() {
    denied(
        "elasticloadbalancing:CreateTargetGroup",
        "target_group",
        "AccessDenied",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_autoscaling_create_group_the_group_step_is_denied() {
    denied(
        "autoscaling:CreateAutoScalingGroup",
        "auto_scaling_group",
        "AccessDenied",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cloudwatch_put_metric_alarm_the_alarms_step_is_denied() {
    denied("cloudwatch:PutMetricAlarm", "alarms", "AccessDenied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_iam_create_role_the_role_step_is_denied() {
    denied("iam:CreateRole", "iam_role", "AccessDenied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_s3_create_bucket_the_bucket_step_is_denied() {
    denied("s3:CreateBucket", "bucket", "AccessDenied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ssm_get_parameter_the_launch_template_step_is_denied() {
    denied(
        "ssm:GetParameter",
        "launch_template",
        "AccessDeniedException",
    )
    .await;
}
