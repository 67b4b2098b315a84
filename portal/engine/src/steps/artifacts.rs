//! The private bucket and the instance service artifact in it.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule, Tag, Tagging,
};
use serde_json::{json, Value};
use sha2::Digest;

use cloudpulse_core::resource::ResourceKind;

use super::{gone_ok, StepCtx};
use crate::error::{SdkResultExt, StepError, StepResult};
use crate::plan::StepKey;

/// The `cloudpulse-instance` binary a deployment installs on its instances.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl Artifact {
    pub fn new(bytes: Vec<u8>) -> Self {
        let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
        Artifact { bytes, sha256 }
    }

    pub fn from_file(path: &std::path::Path) -> std::io::Result<Self> {
        Ok(Self::new(std::fs::read(path)?))
    }

    /// Content-addressed, so a new version never overwrites an old one.
    pub fn key(&self) -> String {
        format!("instance/{}/cloudpulse-instance", self.sha256)
    }
}

/// The artifact, or why there is none.
#[derive(Clone, Debug)]
pub enum ArtifactSource {
    Ready(std::sync::Arc<Artifact>),
    Missing(String),
}

impl ArtifactSource {
    pub fn get(&self) -> StepResult<&Artifact> {
        match self {
            ArtifactSource::Ready(artifact) => Ok(artifact),
            ArtifactSource::Missing(reason) => {
                let mut error = StepError::fatal("ArtifactMissing", reason.clone());
                error.hint = Some("build the instance service (cargo build -p cloudpulse-instance), then retry the job".into());
                Err(error)
            }
        }
    }
}

fn built<T, E: std::fmt::Display>(result: Result<T, E>) -> StepResult<T> {
    result.map_err(|e| StepError::fatal("InvalidRequest", e.to_string()))
}

/// Denies any request that does not use TLS.
/// Right after `CreateBucket`, S3 may still answer `NoSuchBucket` to calls
/// on the new bucket (and an answer lost on the way can make a create look
/// done when it never ran). Either way the step should run again: it looks
/// the bucket up first and creates it if it is really missing.
fn on_new_bucket<T>(result: StepResult<T>) -> StepResult<T> {
    result.map_err(|e| {
        if e.code == "NoSuchBucket" {
            StepError {
                retryable: true,
                hint: Some("the new bucket is not visible yet; the step runs again".into()),
                ..e
            }
        } else {
            e
        }
    })
}

pub fn tls_only_policy(bucket: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "TlsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
            "Condition": { "Bool": { "aws:SecureTransport": "false" } }
        }]
    })
}

pub async fn bucket(ctx: &StepCtx) -> StepResult<Value> {
    let s3 = &ctx.aws.s3;
    let name = ctx.names.bucket();
    let exists = gone_ok(s3.head_bucket().bucket(&name).send().await.step())?.is_some();
    if !exists {
        let mut create = s3.create_bucket().bucket(&name);
        if ctx.aws.region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(ctx.aws.region.as_str()))
                    .build(),
            );
        }
        match create.send().await.step() {
            Ok(_) => {}
            Err(e) if e.code == "BucketAlreadyOwnedByYou" => {}
            Err(e) => return Err(e),
        }
    }
    ctx.record(
        ResourceKind::S3Bucket,
        &name,
        Some(&format!("arn:aws:s3:::{name}")),
        StepKey::Bucket,
    )
    .await?;
    on_new_bucket(
        s3.put_public_access_block()
            .bucket(&name)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .step(),
    )?;
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(built(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::Aes256)
                .build(),
        )?)
        .build();
    on_new_bucket(
        s3.put_bucket_encryption()
            .bucket(&name)
            .server_side_encryption_configuration(built(
                ServerSideEncryptionConfiguration::builder()
                    .rules(rule)
                    .build(),
            )?)
            .send()
            .await
            .step(),
    )?;
    // Over a plain-HTTP endpoint (the sandbox) a TLS-only policy would lock
    // the portal out of its own bucket; AWS endpoints are always TLS.
    if ctx.aws.tls {
        on_new_bucket(
            s3.put_bucket_policy()
                .bucket(&name)
                .policy(tls_only_policy(&name).to_string())
                .send()
                .await
                .step(),
        )?;
    }
    let tags = ctx
        .names
        .tags(&StepKey::Bucket.to_string(), "artifacts")
        .into_iter()
        .map(|(k, v)| built(Tag::builder().key(k).value(v).build()))
        .collect::<StepResult<Vec<_>>>()?;
    on_new_bucket(
        s3.put_bucket_tagging()
            .bucket(&name)
            .tagging(built(Tagging::builder().set_tag_set(Some(tags)).build())?)
            .send()
            .await
            .step(),
    )?;
    Ok(json!({ "bucket": name, "tls_only_policy": ctx.aws.tls }))
}

pub async fn upload(ctx: &StepCtx) -> StepResult<Value> {
    let bucket = ctx.names.bucket();
    let artifact = ctx.artifact.get()?;
    let key = artifact.key();
    ctx.progress(&format!(
        "uploading {} bytes to s3://{bucket}/{key}",
        artifact.bytes.len()
    ))
    .await;
    let s3 = &ctx.aws.s3;
    on_new_bucket(
        s3.put_object()
            .bucket(&bucket)
            .key(&key)
            .body(ByteStream::from(artifact.bytes.clone()))
            .content_type("application/octet-stream")
            .server_side_encryption(ServerSideEncryption::Aes256)
            .metadata("sha256", &artifact.sha256)
            .send()
            .await
            .step(),
    )?;
    on_new_bucket(
        s3.put_object()
            .bucket(&bucket)
            .key(format!("{key}.sha256"))
            .body(ByteStream::from(
                format!("{}  cloudpulse-instance\n", artifact.sha256).into_bytes(),
            ))
            .content_type("text/plain")
            .server_side_encryption(ServerSideEncryption::Aes256)
            .send()
            .await
            .step(),
    )?;
    // Instances refuse an artifact whose digest differs, and then never turn
    // healthy; a write that did not land is cheaper to find here.
    let stored = gone_ok(
        s3.head_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .step(),
    )?;
    let stored_sha = stored
        .as_ref()
        .and_then(|head| head.metadata())
        .and_then(|meta| meta.get("sha256"))
        .map(String::as_str);
    if stored_sha != Some(artifact.sha256.as_str()) {
        return Err(StepError::retryable(
            "ArtifactNotStored",
            format!(
                "s3://{bucket}/{key} {} after the upload",
                match stored_sha {
                    None if stored.is_none() => "is missing".to_string(),
                    None => "has no sha256 metadata".to_string(),
                    Some(other) => format!("has sha256 {other}, not {}", artifact.sha256),
                }
            ),
        ));
    }
    Ok(
        json!({ "bucket": bucket, "key": key, "sha256": artifact.sha256, "bytes": artifact.bytes.len() }),
    )
}

pub async fn undo_bucket(ctx: &StepCtx) -> StepResult<Value> {
    let s3 = &ctx.aws.s3;
    let name = ctx.names.bucket();
    let mut deleted = 0;
    loop {
        let Some(listing) = gone_ok(s3.list_objects_v2().bucket(&name).send().await.step())? else {
            break;
        };
        let keys: Vec<String> = listing
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        if keys.is_empty() {
            break;
        }
        for key in keys {
            gone_ok(
                s3.delete_object()
                    .bucket(&name)
                    .key(&key)
                    .send()
                    .await
                    .step(),
            )?;
            deleted += 1;
        }
    }
    gone_ok(s3.delete_bucket().bucket(&name).send().await.step())?;
    ctx.forget(ResourceKind::S3Bucket, &name).await?;
    Ok(json!({ "deleted": name, "objects": deleted }))
}
