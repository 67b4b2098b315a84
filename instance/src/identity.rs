//! Who this instance is, from IMDSv2: instance id and availability zone.
//!
//! The IMDS client is the AWS SDK's own: it asks for a session token with a
//! TTL and fetches a new one before the old expires (the original cached its
//! token forever, so `/api/status` failed for good six hours after boot). It
//! honours `AWS_EC2_METADATA_SERVICE_ENDPOINT`, which tests and benchmarks
//! point at an emulator. A learned identity is kept for the process's life;
//! a failure is remembered for a second so a load test against an instance
//! without IMDS does not become a connection storm.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::imds::client::error::ImdsError;
use aws_config::imds::Client as ImdsClient;
use tokio::sync::Mutex;

const INSTANCE_ID: &str = "/latest/meta-data/instance-id";
const AVAILABILITY_ZONE: &str = "/latest/meta-data/placement/availability-zone";
const FAILURE_REMEMBERED: Duration = Duration::from_secs(1);
/// Bound on one identity lookup (token plus two reads, retries included).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub instance_id: String,
    pub availability_zone: String,
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("Failed to acquire IMDSv2 token")]
    Token,
    #[error("Failed to retrieve instance metadata: {path} (HTTP {status})")]
    Status { path: &'static str, status: u16 },
    #[error("Failed to retrieve instance metadata: {path}: {reason}")]
    Other { path: &'static str, reason: String },
    #[error("Instance metadata service did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Instance metadata service endpoint is invalid: {0}")]
    Endpoint(String),
}

enum Cached {
    Empty,
    Known(Identity),
    Failed(IdentityError, Instant),
}

#[derive(Clone)]
pub struct IdentitySource {
    client: Option<ImdsClient>,
    setup_error: Option<IdentityError>,
    cached: Arc<Mutex<Cached>>,
}

impl IdentitySource {
    /// `endpoint` overrides the address (else the SDK's usual lookup:
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT`, profile, 169.254.169.254).
    pub fn new(endpoint: Option<&str>) -> Self {
        let mut builder = ImdsClient::builder()
            .max_attempts(2)
            .connect_timeout(Duration::from_millis(500))
            .read_timeout(Duration::from_millis(1000));
        let mut setup_error = None;
        if let Some(endpoint) = endpoint {
            match builder.clone().endpoint(endpoint) {
                Ok(with_endpoint) => builder = with_endpoint,
                Err(e) => setup_error = Some(IdentityError::Endpoint(e.to_string())),
            }
        }
        IdentitySource {
            client: setup_error.is_none().then(|| builder.build()),
            setup_error,
            cached: Arc::new(Mutex::new(Cached::Empty)),
        }
    }

    /// The identity if it is already known; never waits on IMDS.
    pub fn known(&self) -> Option<Identity> {
        self.cached.try_lock().ok()?.as_known().cloned()
    }

    /// The identity, asking IMDS if it is not yet known.
    pub async fn get(&self) -> Result<Identity, IdentityError> {
        let mut cached = self.cached.lock().await;
        match &*cached {
            Cached::Known(identity) => return Ok(identity.clone()),
            Cached::Failed(error, at) if at.elapsed() < FAILURE_REMEMBERED => {
                return Err(error.clone())
            }
            _ => {}
        }
        let result = match tokio::time::timeout(LOOKUP_TIMEOUT, self.lookup()).await {
            Ok(result) => result,
            Err(_) => Err(IdentityError::Timeout(LOOKUP_TIMEOUT)),
        };
        *cached = match &result {
            Ok(identity) => {
                tracing::info!(instance_id = %identity.instance_id, az = %identity.availability_zone, "identity learned from IMDS");
                Cached::Known(identity.clone())
            }
            Err(error) => {
                tracing::warn!(%error, "cannot learn identity from IMDS");
                Cached::Failed(error.clone(), Instant::now())
            }
        };
        result
    }

    async fn lookup(&self) -> Result<Identity, IdentityError> {
        let client = match (&self.client, &self.setup_error) {
            (Some(client), _) => client,
            (None, Some(error)) => return Err(error.clone()),
            (None, None) => return Err(IdentityError::Endpoint("no client".into())),
        };
        let instance_id = read(client, INSTANCE_ID).await?;
        let availability_zone = read(client, AVAILABILITY_ZONE).await?;
        Ok(Identity {
            instance_id,
            availability_zone,
        })
    }

    /// Learns the identity in the background, retrying with backoff, so
    /// metrics carry the instance id from the first publish.
    pub fn prefetch(&self) {
        let source = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(1);
            while source.get().await.is_err() {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        });
    }
}

impl Cached {
    fn as_known(&self) -> Option<&Identity> {
        match self {
            Cached::Known(identity) => Some(identity),
            _ => None,
        }
    }
}

async fn read(client: &ImdsClient, path: &'static str) -> Result<String, IdentityError> {
    match client.get(path).await {
        Ok(value) => {
            let value = value.as_ref().trim().to_string();
            if value.is_empty() {
                Err(IdentityError::Other {
                    path,
                    reason: "empty answer".into(),
                })
            } else {
                Ok(value)
            }
        }
        Err(ImdsError::FailedToLoadToken(_)) => Err(IdentityError::Token),
        Err(ImdsError::ErrorResponse(response)) => Err(IdentityError::Status {
            path,
            status: response.response().status().as_u16(),
        }),
        Err(other) => Err(IdentityError::Other {
            path,
            reason: other.to_string(),
        }),
    }
}
