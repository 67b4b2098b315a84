//! Test harness: the real binary on a free port, an IMDSv2 emulator, moto
//! with an Auto Scaling group, and endpoints that refuse or hang.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use cloudpulse_sandbox::MotoServer;

pub const INSTANCE_ID: &str = "i-0123456789abcdef0";
pub const AZ: &str = "us-east-1a";

/// The service under test, killed on drop.
pub struct Service {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts the binary with a clean environment plus `vars`; waits until
    /// it logs its address.
    pub async fn start(vars: &[(&str, &str)]) -> Service {
        let mut child = command(vars)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cloudpulse-instance");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[service] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = log.lock().unwrap().iter().find_map(|line| {
                line.split("listening on ")
                    .nth(1)
                    .and_then(|a| a.trim().parse::<SocketAddr>().ok())
            });
            if let Some(addr) = found {
                return Service { child, addr, log };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("service exited early ({status}): {:?}", log.lock().unwrap());
            }
            assert!(Instant::now() < deadline, "service did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// [`Service::start`] for `web-asg` with neither AWS nor the instance
    /// metadata in reach (both endpoints refuse every connection), and with
    /// `more` of its environment.
    pub async fn without_aws(more: &[(&str, &str)]) -> Service {
        let (aws, imds) = (closed_port(), closed_port());
        let unreachable = [
            ("ASG_NAME", "web-asg"),
            ("AWS_ENDPOINT_URL", aws.as_str()),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.as_str()),
        ];
        Service::start(&[&unreachable[..], more].concat()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary with a scrubbed environment: no real AWS settings leak in.
pub fn command(vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloudpulse-instance"));
    command.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    let defaults = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("AWS_REGION", "us-east-1"),
        // moto enforces IAM: the sandbox's own identity, allowed everything
        // (these tests are about the service, not its role; the sandbox's
        // instances get their role's credentials from IMDS).
        ("AWS_ACCESS_KEY_ID", cloudpulse_sandbox::iam::SERVICE_KEY.0),
        (
            "AWS_SECRET_ACCESS_KEY",
            cloudpulse_sandbox::iam::SERVICE_KEY.1,
        ),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("CLOUDPULSE_ENV_FILE", "/dev/null"),
        ("RUST_LOG", "info,cloudpulse_instance=debug"),
    ];
    for (name, value) in defaults {
        command.env(name, value);
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .unwrap()
}

pub async fn get_json(url: &str) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let response = client().get(url).send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (status, headers, json)
}

/// The body of a GET of `url`, as text.
pub async fn get_text(url: &str) -> String {
    let response = client().get(url).send().await.expect("request");
    response.text().await.expect("body")
}

/// moto with one Auto Scaling group (min 1, max 3, desired 2).
pub async fn moto_with_group(name: &str) -> MotoServer {
    let moto = MotoServer::start().await.expect("start moto");
    create_group(&moto.sdk_config(), name).await;
    moto
}

pub async fn create_group(sdk: &SdkConfig, name: &str) {
    let asg = aws_sdk_autoscaling::Client::new(sdk);
    let lc = format!("{name}-lc");
    asg.create_launch_configuration()
        .launch_configuration_name(&lc)
        .image_id("ami-12345678")
        .instance_type("t3.micro")
        .send()
        .await
        .expect("create launch configuration");
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_configuration_name(&lc)
        .min_size(1)
        .max_size(3)
        .desired_capacity(2)
        .availability_zones(AZ)
        .send()
        .await
        .expect("create auto scaling group");
}

/// An address nothing listens on.
pub fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// An endpoint that accepts connections and never answers.
pub async fn hanging_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}")
}

/// An IMDSv2 emulator: tokens expire, metadata needs a live token.
#[derive(Clone)]
pub struct Imds {
    pub endpoint: String,
    pub state: Arc<Mutex<ImdsState>>,
}

pub struct ImdsState {
    /// The longest TTL granted, seconds.
    pub max_ttl: u64,
    pub tokens: HashMap<String, Instant>,
    pub tokens_issued: u32,
    pub expired_rejected: u32,
    /// Metadata answers 503 until then.
    pub broken_until: Option<Instant>,
}

impl Imds {
    pub async fn start(max_ttl: u64) -> Imds {
        let state = Arc::new(Mutex::new(ImdsState {
            max_ttl,
            tokens: HashMap::new(),
            tokens_issued: 0,
            expired_rejected: 0,
            broken_until: None,
        }));
        let app = Router::new()
            .route("/latest/api/token", put(token))
            .route(
                "/latest/meta-data/instance-id",
                get(|s, h| metadata(s, h, INSTANCE_ID)),
            )
            .route(
                "/latest/meta-data/placement/availability-zone",
                get(|s, h| metadata(s, h, AZ)),
            )
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Imds {
            endpoint: format!("http://{addr}"),
            state,
        }
    }
}

type Shared = State<Arc<Mutex<ImdsState>>>;

async fn token(State(state): Shared, headers: HeaderMap) -> Response {
    let Some(requested) = headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return (StatusCode::BAD_REQUEST, "missing TTL").into_response();
    };
    let mut state = state.lock().unwrap();
    let ttl = requested.min(state.max_ttl);
    state.tokens_issued += 1;
    let token = format!("token-{}", state.tokens_issued);
    state
        .tokens
        .insert(token.clone(), Instant::now() + Duration::from_secs(ttl));
    (
        [("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_string())],
        token,
    )
        .into_response()
}

async fn metadata(State(state): Shared, headers: HeaderMap, value: &'static str) -> Response {
    let mut state = state.lock().unwrap();
    let token = headers
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match state.tokens.get(token) {
        None => return StatusCode::UNAUTHORIZED.into_response(),
        Some(expiry) if *expiry <= Instant::now() => {
            state.expired_rejected += 1;
            return StatusCode::UNAUTHORIZED.into_response();
        }
        Some(_) => {}
    }
    if state
        .broken_until
        .is_some_and(|until| Instant::now() < until)
    {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    value.into_response()
}
