//! Who may sign requests to the sandbox, and with what permissions.
//!
//! moto checks every request's signature and permissions (its launcher is
//! started with `INITIAL_NO_AUTH_ACTION_COUNT=0`). Two IAM users exist in its
//! account from the start, again after a reset and after a restart from a
//! kept state, each with a fixed access key:
//!
//! - [`SERVICE_USER`], allowed everything: AWS's own services (the gateway's
//!   checks, the data plane launching instances, probing targets,
//!   publishing `AWS/EC2` metrics, handing an instance its role's
//!   credentials as EC2 does) and the administrator who set the account up
//!   ([`sdk_config`](crate::moto::sdk_config));
//! - [`OPERATOR_USER`], the portal's identity, holding the sandbox copy of
//!   the operator policy (`policy/operator-policy.json` and
//!   `policy/operator-iam-policy.json`), made from the real files at every
//!   start by [`sandbox_copy`]
//!   ([`operator_sdk_config`](crate::moto::operator_sdk_config)).
//!
//! moto 5.2.5 evaluates IAM only in part; [`sandbox_copy`] says exactly what
//! it changes and why.

use serde_json::{json, Map, Value};

/// The identity that stands for AWS's own services and the account's
/// administrator in the sandbox.
pub const SERVICE_USER: &str = "cloudpulse-sandbox-aws";
/// Its access key and secret, for a process that plays AWS's part outside
/// this crate (the instance service's tests).
pub const SERVICE_KEY: (&str, &str) = (
    "AKIACLOUDPULSESBXAWS",
    "cloudpulse-sandbox-aws-secret-not-for-aws",
);

/// The portal's identity in the sandbox: the operator policy, nothing else.
pub const OPERATOR_USER: &str = "cloudpulse-operator";
/// Its access key and secret, for a portal started against the sandbox's
/// endpoint with keys of its own (`AWS_ACCESS_KEY_ID`, as on AWS).
pub const OPERATOR_KEY: (&str, &str) = (
    "AKIACLOUDPULSESBXOPR",
    "cloudpulse-operator-secret-not-for-aws",
);

/// The operator policy as `policy/README.md` has it attached: its two
/// documents, by the name each is given on the operator's identity.
pub const OPERATOR_POLICY: [(&str, &str); 2] = [
    (
        "operator-policy",
        include_str!("../../../policy/operator-policy.json"),
    ),
    (
        "operator-iam-policy",
        include_str!("../../../policy/operator-iam-policy.json"),
    ),
];

/// The operator policy's documents, owned, for [`crate::moto::MotoOptions`].
pub fn operator_policy() -> Vec<(String, String)> {
    OPERATOR_POLICY
        .iter()
        .map(|(name, document)| (name.to_string(), document.to_string()))
        .collect()
}

/// The sandbox copy of an operator policy document: what moto can evaluate
/// of it, and no more than that widened.
///
/// moto 5.2.5 checks a request's action against each statement's `Action`
/// exactly (the sandbox's launcher first names CloudWatch's and S3's
/// actions as IAM does), but of `Resource` and `Condition` it knows little:
///
/// - **Conditions are never evaluated.** moto gives a request no condition
///   keys (only `AssumeRole` has one, `sts:ExternalId`), and a condition
///   with no value to compare passes, so every condition of the policy
///   (`iam:PermissionsBoundary`, `iam:PassedToService`, `ec2:InstanceType`,
///   `ec2:LaunchTemplate`, `ec2:ResourceTag/…`, `ec2:CreateAction`,
///   `elasticloadbalancing:CreateAction`, `ssm:resourceTag/…`) would hold
///   whatever the request. The copy leaves them out, so that it says what
///   moto does.
/// - **Resources are checked for S3 only.** moto checks S3 requests against
///   the bucket's or object's ARN, IAM requests that name an existing role
///   against its ARN (one naming a role that does not exist yet, a
///   `CreateRole` or the `GetRole` that looks for it, against `*`), and
///   every other request against `*`. A statement scoped to ARNs would
///   therefore grant nothing outside S3, and refuse `CreateRole`; the copy
///   gives every statement that is not all S3 the resource `*`, and keeps
///   S3's ARNs (`cloudpulse-*` buckets and their objects) as they are.
///
/// So the sandbox enforces, per service, which actions the operator policy
/// grants, and S3's resource scoping; the conditions and the other
/// resource scopes are proven only by reading (`operator_policy.rs`) and on
/// a real account. `Deny` statements are copied the same way.
pub fn sandbox_copy(document: &str) -> Result<String, String> {
    let mut policy: Value =
        serde_json::from_str(document).map_err(|e| format!("not a policy document: {e}"))?;
    let statements = match policy.get_mut("Statement") {
        Some(Value::Array(statements)) => statements,
        _ => return Err("the policy has no Statement list".into()),
    };
    for statement in statements.iter_mut() {
        let Some(fields) = statement.as_object_mut() else {
            return Err("a statement is not an object".into());
        };
        fields.remove("Condition");
        if !only_s3(fields) {
            fields.insert("Resource".into(), json!("*"));
        }
    }
    serde_json::to_string_pretty(&policy).map_err(|e| e.to_string())
}

fn only_s3(statement: &Map<String, Value>) -> bool {
    let actions: Vec<&str> = match statement.get("Action") {
        Some(Value::String(action)) => vec![action.as_str()],
        Some(Value::Array(actions)) => actions.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    !actions.is_empty() && actions.iter().all(|a| a.starts_with("s3:"))
}

/// The launcher's `CLOUDPULSE_SANDBOX_IDENTITIES`: both users, their keys and
/// their inline policies (the operator's already made into sandbox copies).
pub(crate) fn identities(operator_policy: &[(String, String)]) -> Result<String, String> {
    let everything = json!({
        "Version": "2012-10-17",
        "Statement": [{ "Sid": "AwsItself", "Effect": "Allow", "Action": "*", "Resource": "*" }]
    });
    let mut operator = Map::new();
    for (name, document) in operator_policy {
        let copy = sandbox_copy(document).map_err(|e| format!("{name}: {e}"))?;
        operator.insert(name.clone(), Value::String(copy));
    }
    let identities = json!([
        {
            "user": SERVICE_USER,
            "access_key_id": SERVICE_KEY.0,
            "secret_access_key": SERVICE_KEY.1,
            "policies": { "everything": everything.to_string() },
        },
        {
            "user": OPERATOR_USER,
            "access_key_id": OPERATOR_KEY.0,
            "secret_access_key": OPERATOR_KEY.1,
            "policies": operator,
        },
    ]);
    Ok(identities.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_keeps_every_action_and_only_s3_resources() {
        for (name, document) in OPERATOR_POLICY {
            let real: Value = serde_json::from_str(document).unwrap();
            let copy: Value = serde_json::from_str(&sandbox_copy(document).unwrap()).unwrap();
            let (real, copy) = (
                real["Statement"].as_array().unwrap(),
                copy["Statement"].as_array().unwrap(),
            );
            assert_eq!(real.len(), copy.len(), "{name}");
            for (real, copy) in real.iter().zip(copy) {
                assert_eq!(real["Action"], copy["Action"], "{name}");
                assert_eq!(real["Effect"], copy["Effect"], "{name}");
                assert!(copy.get("Condition").is_none(), "{name}");
                let s3 = only_s3(real.as_object().unwrap());
                if s3 {
                    assert_eq!(real["Resource"], copy["Resource"], "{name}");
                } else {
                    assert_eq!(copy["Resource"], "*", "{name}");
                }
            }
        }
    }

    #[test]
    fn a_broken_document_is_an_error() {
        assert!(sandbox_copy("{").is_err());
        assert!(sandbox_copy(r#"{"Version":"2012-10-17"}"#).is_err());
    }
}
