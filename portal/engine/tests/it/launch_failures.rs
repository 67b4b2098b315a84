//! A launch AWS refuses shows on the wait for healthy instances at its next
//! look, in AWS's words: a quota or a key nobody can fix by waiting fails
//! the step at once, a zone without capacity keeps it waiting (Auto Scaling
//! retries). The sandbox's data plane refuses the launches and records them
//! as `Failed` scaling activities, as AWS reports them; real instance
//! processes serve once launches succeed again.

use std::path::PathBuf;
use std::time::Duration;

use cloudpulse_core::model::{JobStatus, JobView, Source, StepStatus, StepView};
use cloudpulse_sandbox::{DataPlane, DataPlaneConfig, Gateway, Latency, LaunchFailure, MotoServer};

use crate::common::{harness_on, params, Harness};

fn wait_step(job: &JobView) -> &StepView {
    job.steps
        .iter()
        .find(|s| s.key == "wait_healthy")
        .expect("a wait_healthy step")
}

/// Ten times AWS's pace: health checks every 3 s, a launch retried after 1 s.
const TIME_SCALE: f64 = 0.1;

/// `target/debug/cloudpulse-instance`, beside the folder of this test binary.
fn instance_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let debug = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let binary = debug.join("cloudpulse-instance");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build -p cloudpulse-instance` first (`cargo xtask test` does)",
        binary.display()
    );
    binary
}

/// An engine on moto behind the gateway, with a data plane of real
/// instance processes attached.
async fn with_dataplane(name: &str) -> (Harness, Gateway, DataPlane, PathBuf) {
    let moto = MotoServer::start().await.expect("start moto");
    let gateway = Gateway::start(&moto.endpoint(), Latency::default())
        .await
        .expect("start gateway");
    let work_dir =
        std::env::temp_dir().join(format!("cloudpulse-engine-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work_dir);
    let dataplane = DataPlane::start(DataPlaneConfig {
        instance_binary: Some(instance_binary()),
        time_scale: TIME_SCALE,
        faithful: Some(gateway.faithful()),
        ..DataPlaneConfig::new(moto.endpoint(), gateway.endpoint(), &work_dir)
    })
    .await
    .expect("start data plane");
    gateway.attach(dataplane.view());
    gateway.faithful().set_time_scale(TIME_SCALE);
    let h = harness_on(moto, gateway.operator_sdk_config()).await;
    (h, gateway, dataplane, work_dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vcpu_quota_fails_the_wait_at_once_with_aws_words() {
    let (h, _gateway, dataplane, work_dir) = with_dataplane("vcpu").await;
    dataplane.fail_launches(LaunchFailure::VcpuLimit, u32::MAX);
    let created = h
        .engine
        .deploy(params("vcpu"), Source::Api, None)
        .await
        .unwrap();
    let job = h.engine.wait(&created.job_id).await.unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    let step = wait_step(&job);
    assert_eq!(step.status, StepStatus::Failed);
    let error = step.error.as_ref().expect("the step's error");
    assert_eq!(error.code, "VcpuLimitExceeded", "{error:?}");
    assert!(
        error.message.contains("vCPU limit of 32"),
        "AWS's StatusMessage verbatim: {error:?}"
    );
    assert!(
        error
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("Service Quotas")),
        "{error:?}"
    );
    dataplane.stop().await;
    let _ = std::fs::remove_dir_all(work_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_capacity_keeps_the_wait_going_and_says_why() {
    let (h, _gateway, dataplane, work_dir) = with_dataplane("capacity").await;
    dataplane.fail_launches(LaunchFailure::InsufficientCapacity, u32::MAX);
    let created = h
        .engine
        .deploy(params("capacity"), Source::Api, None)
        .await
        .unwrap();
    // The step says why it waits.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let job = h.engine.store().job(&created.job_id).await.unwrap();
        assert!(
            matches!(job.status, JobStatus::Pending | JobStatus::Running),
            "{:?}: {:?}",
            job.status,
            job.error
        );
        let step = wait_step(&job);
        if step
            .progress
            .as_deref()
            .is_some_and(|p| p.contains("We currently do not have sufficient t3.micro capacity"))
        {
            assert!(
                step.progress.as_deref().unwrap().contains("retries"),
                "{:?}",
                step.progress
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the wait never showed the failed launch: {:?}",
            step.progress
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Capacity comes back: the next launches succeed and the deploy ends.
    dataplane.clear_launch_failures();
    let job = h.engine.wait(&created.job_id).await.unwrap();
    crate::common::assert_done(&job);
    dataplane.stop().await;
    let _ = std::fs::remove_dir_all(work_dir);
}
