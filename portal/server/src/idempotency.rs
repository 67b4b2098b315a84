//! Idempotency keys, scoped to what they were sent with.
//!
//! A client's `Idempotency-Key` (or the new-deployment form's key) stands
//! for one request: an operation on one deployment with one set of
//! parameters. The engine stores the key's scope (operation, deployment,
//! digest of the key) as the job's key, so the same key on another
//! deployment or for another operation is another request; this module
//! also remembers the parameters' digest, so the same key with other
//! parameters is refused instead of answered with the first job.

use cloudpulse_app::ids::{DeploymentId, JobId};
use sha2::{Digest, Sha256};

use crate::db::ServerDb;

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 200;

/// What to say about a malformed key.
pub const KEY_RULE: &str = "Idempotency-Key must be 1 to 200 visible ASCII characters";

/// Whether `key` is 1 to [`MAX_KEY_LEN`] visible ASCII characters.
pub fn check_key(key: &str) -> Result<(), String> {
    if !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(KEY_RULE.to_string())
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A key where it was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scoped {
    /// What the engine stores as the job's key.
    pub stored: String,
    fingerprint: String,
}

impl Scoped {
    /// `key` sent for `operation` on `deployment` (none for a new one) with
    /// `request` (its parameters as JSON, or nothing).
    pub fn new(
        operation: &str,
        deployment: Option<&DeploymentId>,
        key: &str,
        request: &str,
    ) -> Self {
        Scoped {
            stored: format!(
                "{operation} {} {}",
                deployment.map_or("-", DeploymentId::as_str),
                sha256_hex(key)
            ),
            fingerprint: sha256_hex(request),
        }
    }
}

/// The same key came before with another request.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "this Idempotency-Key was sent before with other parameters; the first request's \
         job stands, and a new request needs a new key"
    )]
    Reused,
    #[error("the database failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// The keys of requests that started a job.
#[derive(Clone, Debug)]
pub struct Keys {
    db: ServerDb,
}

impl Keys {
    pub fn new(db: ServerDb) -> Self {
        Keys { db }
    }

    /// The job the first request under `scoped` started; an error when that
    /// request had other parameters.
    pub async fn seen(&self, scoped: &Scoped) -> Result<Option<JobId>, KeyError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT fingerprint, job_id FROM idempotency_keys WHERE scope = ?1")
                .bind(&scoped.stored)
                .fetch_optional(self.db.pool())
                .await?;
        match row {
            None => Ok(None),
            Some((fingerprint, job)) if fingerprint == scoped.fingerprint => Ok(Some(job.into())),
            Some(_) => Err(KeyError::Reused),
        }
    }

    /// Remembers that `scoped` started `job_id`.
    pub async fn record(&self, scoped: &Scoped, job_id: &JobId) -> Result<(), KeyError> {
        sqlx::query(
            "INSERT OR IGNORE INTO idempotency_keys (scope, fingerprint, job_id, created_at)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(&scoped.stored)
        .bind(&scoped.fingerprint)
        .bind(job_id.as_str())
        .bind(chrono::Utc::now().timestamp())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_up_to_200() {
        assert!(check_key("a").is_ok());
        assert!(check_key(&"k".repeat(200)).is_ok());
        for bad in ["", " ", "a b", "ké", "a\tb"] {
            assert_eq!(check_key(bad).unwrap_err(), KEY_RULE, "{bad:?}");
        }
        assert!(check_key(&"k".repeat(201)).is_err());
    }

    #[test]
    fn a_scope_names_operation_deployment_and_key() {
        let a = Scoped::new("teardown", Some(&"dep-a".into()), "k", "");
        let b = Scoped::new("teardown", Some(&"dep-b".into()), "k", "");
        let deploy = Scoped::new("deploy", None, "k", "");
        assert_ne!(a.stored, b.stored);
        assert_ne!(a.stored, deploy.stored);
        assert!(deploy.stored.starts_with("deploy - "), "{}", deploy.stored);
        assert!(!a.stored.contains(" k"), "the key itself is not stored");
        let other = Scoped::new("deploy", None, "k", "{\"name\":\"x\"}");
        assert_eq!(other.stored, deploy.stored);
        assert_ne!(other, deploy, "the parameters tell them apart");
    }
}
