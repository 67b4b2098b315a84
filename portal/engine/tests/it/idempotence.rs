//! Every action and every undo, run twice: no duplicates, no errors. And two
//! deployments side by side stay apart.

use crate::common;

use cloudpulse_engine::aws::Names;
use cloudpulse_engine::inventory;
use cloudpulse_engine::plan::{deploy_dag, StepId};
use cloudpulse_engine::steps::{run_action, run_undo, ArtifactSource, StepCtx, Timings};
use common::{artifact, harness, params, DeploymentId, Harness};

fn ctx(h: &Harness, deployment_id: &DeploymentId, names: &Names, step: StepId) -> StepCtx {
    StepCtx {
        store: h.engine.store().clone(),
        aws: h.aws(),
        names: names.clone(),
        params: params(&names.display),
        deployment_id: deployment_id.clone(),
        job_id: "idempotence-check".into(),
        step,
        timings: Timings::for_tests(),
        artifact: ArtifactSource::Ready(artifact()),
        app_url_override: None,
    }
}

fn sorted(mut left: Vec<inventory::Leftover>) -> Vec<inventory::Leftover> {
    left.sort_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
    left
}

#[tokio::test]
async fn every_action_and_every_undo_can_run_twice() {
    let h = harness().await;
    let (id, _) = h.deploy(params("twice")).await;
    let names = h.names(&id).await;
    let aws = h.aws();
    let once = sorted(inventory::remaining(&aws, &names).await.unwrap());
    assert!(once.len() > 25, "{once:?}");

    // The second run of each action adopts what the first made.
    for (key, _) in deploy_dag(&params("twice")) {
        let result = run_action(&ctx(&h, &id, &names, StepId::Do(key)), key).await;
        assert!(result.is_ok(), "second run of {key}: {result:?}");
    }
    let twice = sorted(inventory::remaining(&aws, &names).await.unwrap());
    assert_eq!(
        once, twice,
        "a second run of every action created nothing new"
    );

    h.teardown(&id).await;
    // Every undo again, on nothing: still fine.
    let mut order: Vec<_> = deploy_dag(&params("twice"))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    order.reverse();
    for key in order {
        let result = run_undo(&ctx(&h, &id, &names, StepId::Undo(key)), key).await;
        assert!(result.is_ok(), "second undo of {key}: {result:?}");
    }
    assert_eq!(inventory::remaining(&aws, &names).await.unwrap(), []);
}

#[tokio::test]
async fn two_deployments_stay_apart() {
    let h = harness().await;
    let (a, b) = tokio::join!(h.deploy(params("alpha")), h.deploy(params("bravo")));
    let (a, b) = (a.0, b.0);
    let aws = h.aws();
    let (names_a, names_b) = (h.names(&a).await, h.names(&b).await);
    let b_before = sorted(inventory::remaining(&aws, &names_b).await.unwrap());
    let a_before = inventory::remaining(&aws, &names_a).await.unwrap();
    assert_eq!(a_before.len(), b_before.len(), "both whole");
    assert!(
        a_before.iter().all(|r| !b_before.contains(r)),
        "nothing shared"
    );

    h.teardown(&a).await;
    assert_eq!(inventory::remaining(&aws, &names_a).await.unwrap(), []);
    let b_after = sorted(inventory::remaining(&aws, &names_b).await.unwrap());
    assert_eq!(b_before, b_after, "tearing down alpha left bravo whole");
    h.teardown(&b).await;
}
