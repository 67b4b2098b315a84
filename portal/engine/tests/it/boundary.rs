//! The instance role's permissions boundary against moto: the engine
//! creates every role with it, the boundary covers what the role's own
//! policies grant, an account without it gets a clear refusal, and a role
//! made before roles were bounded gets it.

use crate::common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

const BOUNDARY: &str = "arn:aws:iam::123456789012:policy/cloudpulse-instance-boundary";

fn actions(document: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for statement in document["Statement"].as_array().expect("statements") {
        match &statement["Action"] {
            Value::String(a) => {
                out.insert(a.clone());
            }
            Value::Array(list) => out.extend(list.iter().map(|a| a.as_str().unwrap().to_string())),
            other => panic!("Action {other}"),
        }
    }
    out
}

/// IAM answers policy documents URL-encoded (moto sometimes does not).
fn document(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
        serde_json::from_slice(&out).expect("a JSON policy document")
    })
}

async fn managed_document(iam: &aws_sdk_iam::Client, arn: &str) -> Value {
    let policy = iam
        .get_policy()
        .policy_arn(arn)
        .send()
        .await
        .unwrap()
        .policy
        .unwrap();
    let version = iam
        .get_policy_version()
        .policy_arn(arn)
        .version_id(policy.default_version_id().unwrap())
        .send()
        .await
        .unwrap()
        .policy_version
        .unwrap();
    document(version.document().unwrap())
}

#[tokio::test]
async fn every_instance_role_is_bounded_and_the_boundary_covers_its_policies() {
    let h = harness().await;
    let (id, _) = h.deploy(params("bounded")).await;
    let names = h.names(&id).await;
    let iam = h.aws().iam;
    let role = iam
        .get_role()
        .role_name(names.role())
        .send()
        .await
        .unwrap()
        .role
        .unwrap();
    assert_eq!(
        role.permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn()),
        Some(BOUNDARY),
        "the instance role has no permissions boundary"
    );
    // Whatever the role is given, it can do no more than the boundary
    // allows: so the boundary must allow all it is given.
    let bounded = actions(&managed_document(&iam, BOUNDARY).await);
    let inline = iam
        .get_role_policy()
        .role_name(names.role())
        .policy_name("cloudpulse-instance")
        .send()
        .await
        .unwrap();
    let mut given = actions(&document(inline.policy_document()));
    for attached in iam
        .list_attached_role_policies()
        .role_name(names.role())
        .send()
        .await
        .unwrap()
        .attached_policies()
    {
        given.extend(actions(
            &managed_document(&iam, attached.policy_arn().unwrap()).await,
        ));
    }
    let outside: Vec<&String> = given.difference(&bounded).collect();
    assert!(
        outside.is_empty(),
        "the role is given actions its boundary denies: {outside:?}"
    );
    h.teardown(&id).await;
}

#[tokio::test]
async fn an_account_without_the_boundary_is_told_how_to_make_it_and_an_old_role_gets_it() {
    let h = harness().await;
    let iam = h.aws().iam;
    iam.delete_policy()
        .policy_arn(BOUNDARY)
        .send()
        .await
        .unwrap();
    let created = h
        .engine
        .deploy(
            params("unbounded"),
            cloudpulse_core::model::Source::Api,
            None,
        )
        .await
        .expect("deploy accepted");
    let job = h.engine.wait(&created.job_id).await.unwrap();
    assert_ne!(job.status, cloudpulse_core::model::JobStatus::Done);
    // Every step's error and the job's, as they are kept.
    let said = format!("{:?} {:?}", job.error, job.steps);
    assert!(
        said.contains("cloudpulse-instance-boundary")
            && said.contains("does not exist")
            && said.contains("policy/instance-boundary.json"),
        "{said}"
    );
    // No role was made without it.
    let names = h.names(&created.deployment_id).await;
    assert!(iam.get_role().role_name(names.role()).send().await.is_err());

    // A role left unbounded (as one made before roles were bounded) gets
    // the boundary once the administrator has made it.
    iam.create_role()
        .role_name(names.role())
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
    iam.create_policy()
        .policy_name("cloudpulse-instance-boundary")
        .policy_document(cloudpulse_sandbox::moto::INSTANCE_BOUNDARY_DOCUMENT)
        .send()
        .await
        .unwrap();
    h.engine
        .retry(&created.job_id, cloudpulse_core::model::Source::Api)
        .await
        .expect("retry accepted");
    let job = h.engine.wait(&created.job_id).await.unwrap();
    assert_done(&job);
    let role = iam
        .get_role()
        .role_name(names.role())
        .send()
        .await
        .unwrap()
        .role
        .unwrap();
    assert_eq!(
        role.permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn()),
        Some(BOUNDARY)
    );
    h.teardown(&created.deployment_id).await;
}
