//! An IMDSv2 endpoint per sandbox instance.
//!
//! The instance service learns who it is from the instance metadata service,
//! through the AWS SDK's IMDS client and `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
//! Each emulated instance gets its own listener, so the answers need no
//! routing by caller: the listener *is* the instance's link-local address.
//!
//! Only the session-oriented protocol (IMDSv2) is served, as CloudPulse's
//! launch template requires it: a token comes from `PUT /latest/api/token`
//! with a TTL header, and every metadata read must present a live token.
//! Like AWS, a token request carrying `X-Forwarded-For` is refused, so a
//! proxy in front of an instance cannot mint tokens for a caller.
//!
//! An instance launched with an instance profile finds its role's
//! temporary credentials at `iam/security-credentials/<role>`, as on EC2:
//! STS's `AssumeRole` of the profile's role, made by the sandbox as EC2
//! makes it (the role's trust policy must name `ec2.amazonaws.com`), and
//! made again before they expire. There are no static keys: what the
//! instance may do is what its role grants.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use rand::Rng;
use tokio::sync::oneshot;

const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// AWS grants tokens for one second up to six hours.
const MAX_TTL_SECONDS: u64 = 21_600;

/// What an instance may learn about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceMetadata {
    pub instance_id: String,
    pub availability_zone: String,
    pub instance_type: String,
    pub local_ipv4: String,
    pub ami_id: String,
    /// The primary network interface's MAC address, the key under
    /// `network/interfaces/macs/`.
    pub mac: String,
    /// The subnet and VPC of that interface (the instance's own).
    pub subnet_id: String,
    pub vpc_id: String,
    /// The instance profile it was launched with, if any.
    pub instance_profile_arn: Option<String>,
}

impl InstanceMetadata {
    /// The value at a path under `/latest/meta-data/`, and the listing of
    /// them all for the directory itself.
    fn lookup(&self, path: &str) -> Option<String> {
        let path = path.trim_end_matches('/');
        if let Some(rest) = path.strip_prefix("network/interfaces/macs/") {
            return self.interface(rest);
        }
        let value = match path {
            "" => "ami-id\niam/\ninstance-id\ninstance-type\nlocal-ipv4\nmac\nnetwork/\nplacement/",
            "placement" => "availability-zone",
            "network" => "interfaces/",
            "network/interfaces" => "macs/",
            "network/interfaces/macs" => return Some(format!("{}/", self.mac)),
            "instance-id" => &self.instance_id,
            "placement/availability-zone" => &self.availability_zone,
            "instance-type" => &self.instance_type,
            "local-ipv4" => &self.local_ipv4,
            "ami-id" => &self.ami_id,
            "mac" => &self.mac,
            _ => return None,
        };
        Some(value.to_string())
    }

    /// `network/interfaces/macs/<mac>/…` of the instance's one interface.
    fn interface(&self, rest: &str) -> Option<String> {
        let (mac, key) = rest.split_once('/').unwrap_or((rest, ""));
        if mac != self.mac {
            return None;
        }
        let value = match key {
            "" => "local-ipv4s\nmac\nsubnet-id\nvpc-id",
            "local-ipv4s" => &self.local_ipv4,
            "mac" => &self.mac,
            "subnet-id" => &self.subnet_id,
            "vpc-id" => &self.vpc_id,
            _ => return None,
        };
        Some(value.to_string())
    }
}

/// A running metadata endpoint for one instance. Dropping it stops it.
#[derive(Debug)]
pub struct ImdsEmulator {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

/// Where an instance's role credentials come from: the sandbox's IAM and STS
/// (moto, asked as AWS's own services ask), and the last ones handed out.
#[derive(Debug)]
pub struct RoleSource {
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    last: tokio::sync::Mutex<Option<RoleCredentials>>,
}

#[derive(Clone, Debug)]
struct RoleCredentials {
    role: String,
    document: String,
    expires: chrono::DateTime<chrono::Utc>,
}

/// How long a role's credentials last; they are renewed when less than
/// [`RENEW_BEFORE`] is left, as EC2 renews them well before they expire.
const CREDENTIALS_SECONDS: i32 = 3_600;
const RENEW_BEFORE: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

impl RoleSource {
    pub fn new(sdk: &aws_config::SdkConfig) -> Arc<RoleSource> {
        Arc::new(RoleSource {
            iam: aws_sdk_iam::Client::new(sdk),
            sts: aws_sdk_sts::Client::new(sdk),
            last: tokio::sync::Mutex::new(None),
        })
    }

    /// The role of `profile_arn` and its current credentials, as IMDS
    /// serves them; `None` if the profile or its role is gone.
    async fn credentials(&self, profile_arn: &str, session: &str) -> Option<RoleCredentials> {
        let mut last = self.last.lock().await;
        if let Some(current) = last.as_ref() {
            if current.expires - chrono::Utc::now() > RENEW_BEFORE {
                return Some(current.clone());
            }
        }
        let profile_name = profile_arn.rsplit('/').next()?;
        let profile = self
            .iam
            .get_instance_profile()
            .instance_profile_name(profile_name)
            .send()
            .await
            .map_err(|e| tracing::warn!(profile_arn, error = %aws_sdk_iam::error::DisplayErrorContext(&e), "cannot read an instance's profile"))
            .ok()?;
        let role = profile.instance_profile()?.roles().first()?.clone();
        let assumed = self
            .sts
            .assume_role()
            .role_arn(role.arn())
            .role_session_name(session)
            .duration_seconds(CREDENTIALS_SECONDS)
            .send()
            .await
            .map_err(|e| tracing::warn!(role = role.role_name(), error = %aws_sdk_sts::error::DisplayErrorContext(&e), "cannot assume an instance's role"))
            .ok()?;
        let credentials = assumed.credentials()?;
        let expires = chrono::DateTime::from_timestamp(credentials.expiration().secs(), 0)?;
        let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let document = serde_json::json!({
            "Code": "Success",
            "LastUpdated": stamp(chrono::Utc::now()),
            "Type": "AWS-HMAC",
            "AccessKeyId": credentials.access_key_id(),
            "SecretAccessKey": credentials.secret_access_key(),
            "Token": credentials.session_token(),
            "Expiration": stamp(expires),
        })
        .to_string();
        let fresh = RoleCredentials {
            role: role.role_name().to_string(),
            document,
            expires,
        };
        *last = Some(fresh.clone());
        Some(fresh)
    }
}

#[derive(Debug)]
struct Shared {
    metadata: InstanceMetadata,
    roles: Option<Arc<RoleSource>>,
    /// Live tokens and when each expires. Expired ones are swept on issue.
    tokens: Mutex<HashMap<String, Instant>>,
}

impl ImdsEmulator {
    /// Starts answering for `metadata` on a free loopback port; `roles`
    /// hands out its instance profile's role credentials.
    pub async fn start(
        metadata: InstanceMetadata,
        roles: Option<Arc<RoleSource>>,
    ) -> std::io::Result<ImdsEmulator> {
        let shared = Arc::new(Shared {
            metadata,
            roles,
            tokens: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/latest/api/token", put(issue_token))
            .route("/latest/meta-data/", get(read_root))
            .route("/latest/meta-data/{*path}", get(read_metadata))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "IMDS emulator stopped");
            }
        });
        Ok(ImdsEmulator {
            addr,
            shutdown: Some(shutdown),
        })
    }

    /// The base URL for `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ImdsEmulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

async fn issue_token(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if headers.contains_key("x-forwarded-for") {
        return StatusCode::FORBIDDEN.into_response();
    }
    let ttl = headers
        .get(TTL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(ttl) = ttl.filter(|t| (1..=MAX_TTL_SECONDS).contains(t)) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let token: String = {
        let mut rng = rand::rng();
        (0..48)
            .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
            .collect()
    };
    let now = Instant::now();
    {
        // A poisoned lock only means a handler panicked; the map is intact.
        let mut tokens = shared.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, expiry| *expiry > now);
        tokens.insert(token.clone(), now + Duration::from_secs(ttl));
    }
    ([(TTL_HEADER, ttl.to_string())], token).into_response()
}

fn authorised(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let tokens = shared.tokens.lock().unwrap_or_else(|e| e.into_inner());
    tokens
        .get(token)
        .is_some_and(|expiry| *expiry > Instant::now())
}

async fn read_root(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    answer(&shared, &headers, "")
}

async fn read_metadata(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(rest) = path.strip_prefix("iam/") {
        if !authorised(&shared, &headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        return match role_answer(&shared, rest).await {
            Some(value) => value.into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    answer(&shared, &headers, &path)
}

/// `iam/security-credentials/` (the role's name) and
/// `iam/security-credentials/<role>` (its credentials).
async fn role_answer(shared: &Shared, rest: &str) -> Option<String> {
    let profile = shared.metadata.instance_profile_arn.as_deref()?;
    if rest.trim_end_matches('/').is_empty() {
        return Some("security-credentials/".into());
    }
    let asked = rest.strip_prefix("security-credentials")?.trim_matches('/');
    let credentials = shared
        .roles
        .as_ref()?
        .credentials(profile, &shared.metadata.instance_id)
        .await?;
    if asked.is_empty() {
        Some(credentials.role)
    } else if asked == credentials.role {
        Some(credentials.document)
    } else {
        None
    }
}

fn answer(shared: &Shared, headers: &HeaderMap, path: &str) -> Response {
    if !authorised(shared, headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match shared.metadata.lookup(path) {
        Some(value) => value.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata() -> InstanceMetadata {
        InstanceMetadata {
            instance_id: "i-0abc".into(),
            availability_zone: "us-east-1b".into(),
            instance_type: "t3.micro".into(),
            local_ipv4: "10.0.1.7".into(),
            ami_id: "ami-1234".into(),
            mac: "0e:12:34:56:78:9a".into(),
            subnet_id: "subnet-0b".into(),
            vpc_id: "vpc-01".into(),
            instance_profile_arn: None,
        }
    }

    #[tokio::test]
    async fn metadata_needs_a_token_and_the_sdk_client_gets_one() {
        let imds = ImdsEmulator::start(metadata(), None).await.unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let base = imds.endpoint();

        let bare = http
            .get(format!("{base}/latest/meta-data/instance-id"))
            .send()
            .await
            .unwrap();
        assert_eq!(bare.status(), 401, "IMDSv1 reads are refused");
        let no_ttl = http
            .put(format!("{base}/latest/api/token"))
            .send()
            .await
            .unwrap();
        assert_eq!(no_ttl.status(), 400);
        let forwarded = http
            .put(format!("{base}/latest/api/token"))
            .header(TTL_HEADER, "60")
            .header("x-forwarded-for", "10.0.0.1")
            .send()
            .await
            .unwrap();
        assert_eq!(forwarded.status(), 403);
        let bogus = http
            .get(format!("{base}/latest/meta-data/instance-id"))
            .header(TOKEN_HEADER, "made-up")
            .send()
            .await
            .unwrap();
        assert_eq!(bogus.status(), 401);

        // The SDK's own client, as the instance service uses it.
        let client = aws_config::imds::Client::builder()
            .endpoint(&base)
            .unwrap()
            .build();
        let read = |path: &'static str| {
            let client = client.clone();
            async move { client.get(path).await.unwrap().as_ref().to_string() }
        };
        assert_eq!(read("/latest/meta-data/instance-id").await, "i-0abc");
        assert_eq!(
            read("/latest/meta-data/placement/availability-zone").await,
            "us-east-1b"
        );
        assert_eq!(read("/latest/meta-data/instance-type").await, "t3.micro");
        assert_eq!(read("/latest/meta-data/local-ipv4").await, "10.0.1.7");
        assert_eq!(read("/latest/meta-data/ami-id").await, "ami-1234");
        assert_eq!(read("/latest/meta-data/mac").await, "0e:12:34:56:78:9a");
        assert_eq!(
            read("/latest/meta-data/network/interfaces/macs/0e:12:34:56:78:9a/subnet-id").await,
            "subnet-0b"
        );
        assert_eq!(
            read("/latest/meta-data/network/interfaces/macs/0e:12:34:56:78:9a/vpc-id").await,
            "vpc-01"
        );
        assert!(client.get("/latest/meta-data/no-such-key").await.is_err());
        assert!(client
            .get("/latest/meta-data/network/interfaces/macs/0e:00:00:00:00:00/subnet-id")
            .await
            .is_err());
    }
}
