//! The instance role, its policies and its instance profile.

use serde_json::{json, Value};

use super::{gone_ok, StepCtx};
use crate::error::{SdkResultExt, StepError, StepResult};
use crate::plan::StepKey;
use cloudpulse_core::resource::ResourceKind;

const SSM_MANAGED_POLICY: &str = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore";
const INLINE_POLICY: &str = "cloudpulse-instance";

/// The customer managed policy (`policy/instance-boundary.json`) every
/// instance role is created with as its permissions boundary. An
/// administrator creates it once per account (policy/README.md); the
/// operator policy lets the portal create and change `cloudpulse-*` roles
/// only with it, and has no right to create or edit it.
pub const INSTANCE_BOUNDARY: &str = "cloudpulse-instance-boundary";

/// The boundary's ARN in the credentials' own account, once it is known
/// to exist.
async fn instance_boundary(ctx: &StepCtx) -> StepResult<String> {
    let me = ctx.aws.sts.get_caller_identity().send().await.step()?;
    let account = me.account().unwrap_or_default();
    let partition = me
        .arn()
        .and_then(|arn| arn.split(':').nth(1))
        .unwrap_or("aws");
    let arn = format!("arn:{partition}:iam::{account}:policy/{INSTANCE_BOUNDARY}");
    let found = gone_ok(
        ctx.aws
            .iam
            .get_policy()
            .policy_arn(&arn)
            .send()
            .await
            .step(),
    )?;
    if found.is_none() {
        return Err(StepError {
            hint: Some(format!(
                "an administrator creates it once per account: aws iam create-policy \
                 --policy-name {INSTANCE_BOUNDARY} --policy-document \
                 file://policy/instance-boundary.json (see policy/README.md)"
            )),
            ..StepError::fatal(
                "NoSuchEntity",
                format!("the instance roles' permissions boundary {arn} does not exist"),
            )
        });
    }
    Ok(arn)
}

fn iam_tags(ctx: &StepCtx, step: StepKey) -> Vec<aws_sdk_iam::types::Tag> {
    ctx.names
        .tags(&step.to_string(), "ec2-role")
        .into_iter()
        .filter_map(|(k, v)| {
            aws_sdk_iam::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .ok()
        })
        .collect()
}

/// What an instance may do, scoped to this deployment: publish metrics in
/// the CloudPulse namespace only, read its Auto Scaling group (the instance
/// service's one source for instances, capacity and activities), and fetch
/// its own binary from this deployment's bucket (the user data's single
/// `aws s3 cp` of `instance/<sha256>/cloudpulse-instance`). It makes no EC2
/// call and lists nothing in S3.
pub fn instance_policy(bucket: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublishMetrics",
                "Effect": "Allow",
                "Action": "cloudwatch:PutMetricData",
                "Resource": "*",
                "Condition": { "StringEquals": { "cloudwatch:namespace": "CloudPulse" } }
            },
            {
                "Sid": "ReadGroup",
                "Effect": "Allow",
                "Action": [
                    "autoscaling:DescribeAutoScalingGroups",
                    "autoscaling:DescribeScalingActivities"
                ],
                "Resource": "*"
            },
            {
                "Sid": "ReadArtifact",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": format!("arn:aws:s3:::{bucket}/instance/*")
            }
        ]
    })
}

pub async fn role(ctx: &StepCtx) -> StepResult<Value> {
    let name = ctx.names.role();
    let boundary = instance_boundary(ctx).await?;
    let existing = gone_ok(ctx.aws.iam.get_role().role_name(&name).send().await.step())?;
    let existing = existing.and_then(|out| out.role().cloned());
    let arn = match existing {
        Some(role) => {
            // A role made before roles were bounded gets the boundary now.
            let bounded = role
                .permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn())
                == Some(boundary.as_str());
            if !bounded {
                ctx.aws
                    .iam
                    .put_role_permissions_boundary()
                    .role_name(&name)
                    .permissions_boundary(&boundary)
                    .send()
                    .await
                    .step()?;
            }
            role.arn().to_string()
        }
        None => {
            let trust = json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": { "Service": "ec2.amazonaws.com" },
                    "Action": "sts:AssumeRole"
                }]
            });
            let out = ctx
                .aws
                .iam
                .create_role()
                .role_name(&name)
                .description(format!(
                    "CloudPulse instances of deployment {}",
                    ctx.names.display
                ))
                .assume_role_policy_document(trust.to_string())
                .permissions_boundary(&boundary)
                .set_tags(Some(iam_tags(ctx, StepKey::IamRole)))
                .send()
                .await
                .step()?;
            out.role().map(|r| r.arn().to_string()).unwrap_or_default()
        }
    };
    ctx.record(ResourceKind::IamRole, &name, Some(&arn), StepKey::IamRole)
        .await?;
    ctx.aws
        .iam
        .put_role_policy()
        .role_name(&name)
        .policy_name(INLINE_POLICY)
        .policy_document(instance_policy(&ctx.names.bucket()).to_string())
        .send()
        .await
        .step()?;
    ctx.aws
        .iam
        .attach_role_policy()
        .role_name(&name)
        .policy_arn(SSM_MANAGED_POLICY)
        .send()
        .await
        .step()?;
    Ok(json!({ "role": name, "arn": arn, "boundary": boundary }))
}

/// The deployment's instance profile, found by its deterministic name.
async fn find_instance_profile(
    ctx: &StepCtx,
) -> StepResult<Option<aws_sdk_iam::types::InstanceProfile>> {
    let found = gone_ok(
        ctx.aws
            .iam
            .get_instance_profile()
            .instance_profile_name(ctx.names.instance_profile())
            .send()
            .await
            .step(),
    )?;
    Ok(found.and_then(|o| o.instance_profile().cloned()))
}

pub async fn instance_profile(ctx: &StepCtx) -> StepResult<Value> {
    let name = ctx.names.instance_profile();
    let role = ctx.names.role();
    let (arn, has_role) = match find_instance_profile(ctx).await? {
        Some(profile) => (
            profile.arn().to_string(),
            profile.roles().iter().any(|r| r.role_name() == role),
        ),
        None => {
            let out = ctx
                .aws
                .iam
                .create_instance_profile()
                .instance_profile_name(&name)
                .set_tags(Some(iam_tags(ctx, StepKey::InstanceProfile)))
                .send()
                .await
                .step()?;
            (
                out.instance_profile()
                    .map(|p| p.arn().to_string())
                    .unwrap_or_default(),
                false,
            )
        }
    };
    ctx.record(
        ResourceKind::InstanceProfile,
        &name,
        Some(&arn),
        StepKey::InstanceProfile,
    )
    .await?;
    if !has_role {
        ctx.aws
            .iam
            .add_role_to_instance_profile()
            .instance_profile_name(&name)
            .role_name(&role)
            .send()
            .await
            .step()?;
    }
    Ok(json!({ "instance_profile": name, "arn": arn }))
}

pub async fn undo_instance_profile(ctx: &StepCtx) -> StepResult<Value> {
    let name = ctx.names.instance_profile();
    if let Some(profile) = find_instance_profile(ctx).await? {
        for role in profile.roles() {
            gone_ok(
                ctx.aws
                    .iam
                    .remove_role_from_instance_profile()
                    .instance_profile_name(&name)
                    .role_name(role.role_name())
                    .send()
                    .await
                    .step(),
            )?;
        }
        gone_ok(
            ctx.aws
                .iam
                .delete_instance_profile()
                .instance_profile_name(&name)
                .send()
                .await
                .step(),
        )?;
    }
    ctx.forget(ResourceKind::InstanceProfile, &name).await?;
    Ok(json!({ "deleted": name }))
}

pub async fn undo_role(ctx: &StepCtx) -> StepResult<Value> {
    let name = ctx.names.role();
    if let Some(attached) = gone_ok(
        ctx.aws
            .iam
            .list_attached_role_policies()
            .role_name(&name)
            .send()
            .await
            .step(),
    )? {
        for policy in attached.attached_policies() {
            if let Some(arn) = policy.policy_arn() {
                gone_ok(
                    ctx.aws
                        .iam
                        .detach_role_policy()
                        .role_name(&name)
                        .policy_arn(arn)
                        .send()
                        .await
                        .step(),
                )?;
            }
        }
    }
    if let Some(inline) = gone_ok(
        ctx.aws
            .iam
            .list_role_policies()
            .role_name(&name)
            .send()
            .await
            .step(),
    )? {
        for policy in inline.policy_names() {
            gone_ok(
                ctx.aws
                    .iam
                    .delete_role_policy()
                    .role_name(&name)
                    .policy_name(policy)
                    .send()
                    .await
                    .step(),
            )?;
        }
    }
    gone_ok(
        ctx.aws
            .iam
            .delete_role()
            .role_name(&name)
            .send()
            .await
            .step(),
    )?;
    ctx.forget(ResourceKind::IamRole, &name).await?;
    Ok(json!({ "deleted": name }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions(statement: &Value) -> Vec<String> {
        match &statement["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(list) => list
                .iter()
                .map(|a| a.as_str().expect("action").to_string())
                .collect(),
            other => panic!("Action {other}"),
        }
    }

    /// Read-only by their names: Describe, Get, List.
    fn reads_only(action: &str) -> bool {
        let (_, name) = action.split_once(':').expect("service:Action");
        ["Describe", "Get", "List"]
            .iter()
            .any(|verb| name.starts_with(verb))
    }

    #[test]
    fn instance_policy_is_scoped_to_its_deployment() {
        let bucket = "cloudpulse-0f1e2d3c4b5a69788796a5b4c3d2e1f0";
        let policy = instance_policy(bucket);
        assert_eq!(policy["Version"], "2012-10-17");
        let statements = policy["Statement"].as_array().expect("statements");

        for statement in statements {
            assert_eq!(statement["Effect"], "Allow");
            assert!(statement.get("NotAction").is_none());
            assert!(statement.get("NotResource").is_none());
            for action in actions(statement) {
                assert!(!action.contains('*'), "wildcard action {action}");
                if action == "cloudwatch:PutMetricData" {
                    // Only into our own namespace.
                    assert_eq!(
                        statement["Condition"],
                        json!({ "StringEquals": { "cloudwatch:namespace": "CloudPulse" } }),
                    );
                    assert_eq!(actions(statement), ["cloudwatch:PutMetricData"]);
                } else {
                    assert!(reads_only(&action), "{action} writes");
                }
                if action.starts_with("s3:") {
                    assert_eq!(action, "s3:GetObject");
                    assert_eq!(
                        statement["Resource"],
                        format!("arn:aws:s3:::{bucket}/instance/*")
                    );
                }
            }
        }

        let all: Vec<String> = statements.iter().flat_map(actions).collect();
        assert!(all.contains(&"cloudwatch:PutMetricData".to_string()));
        // Exactly what the instance service and its user data call.
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "autoscaling:DescribeAutoScalingGroups",
                "autoscaling:DescribeScalingActivities",
                "cloudwatch:PutMetricData",
                "s3:GetObject",
            ]
        );
    }
}
