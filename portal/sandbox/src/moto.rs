//! moto in server mode: the sandbox's AWS control plane.
//!
//! [`MotoServer::start`] runs moto from the project's virtualenv on a free
//! loopback port, waits until it accepts connections and stops it on drop.
//! moto keeps everything in memory, so every server is a clean, isolated AWS,
//! set up as an administrator sets up an account for CloudPulse: the
//! instance roles' permissions boundary ([`INSTANCE_BOUNDARY`], from
//! `policy/instance-boundary.json`) is there from the start, and again after
//! a [`MotoServer::reset`].
//!
//! moto checks every request's signature and permissions: only the
//! identities of [`crate::iam`] may sign, the portal's with the operator
//! policy ([`MotoServer::operator_sdk_config`]).
//!
//! moto answers the sandbox on this machine only: its launcher turns moto's
//! global CORS off and refuses what a browser or a rebound name sends (see
//! `moto_launcher.py`). A folder its state is kept in must be this user's
//! own, mode 0700, since the state is unpickled: anything else is refused
//! before moto starts ([`MotoError::UnsafeState`]).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::Instant;

/// The region every sandbox client uses.
pub const SANDBOX_REGION: &str = "us-east-1";

/// Environment variable naming the Python interpreter that has moto installed.
pub const PYTHON_ENV: &str = "CLOUDPULSE_MOTO_PYTHON";

const LAUNCHER: &str = include_str!("moto_launcher.py");

/// The name of the managed policy that bounds every instance role the
/// engine creates; on AWS an administrator creates it once per account.
pub const INSTANCE_BOUNDARY: &str = "cloudpulse-instance-boundary";
/// Its document, as `policy/README.md` has the administrator create it.
pub const INSTANCE_BOUNDARY_DOCUMENT: &str = include_str!("../../../policy/instance-boundary.json");
const LOG_LINES_KEPT: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error("moto is not installed: no Python with moto found at {looked}; run `cargo xtask setup` or set {PYTHON_ENV} to a python that has moto[server]")]
    NotInstalled { looked: String },
    #[error("cannot start moto with {python}: {source}")]
    Spawn {
        python: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("moto exited while starting ({status}): {last_line}")]
    Exited {
        status: ExitStatus,
        last_line: String,
    },
    #[error(
        "moto did not accept connections on {addr} within {seconds} s; last output: {last_line}"
    )]
    Timeout {
        addr: SocketAddr,
        seconds: u64,
        last_line: String,
    },
    #[error("cannot find a free loopback port: {0}")]
    NoPort(#[source] std::io::Error),
    #[error("moto request {path} failed: {reason}")]
    Request { path: String, reason: String },
    #[error("the sandbox's state folder {path} is not safe to read moto's state from: {reason}")]
    UnsafeState { path: PathBuf, reason: String },
    #[error("cannot give the sandbox's operator identity its policy: {0}")]
    Policy(String),
}

#[derive(Clone, Debug)]
pub struct MotoOptions {
    /// The Python interpreter with moto installed; found automatically if unset.
    pub python: Option<PathBuf>,
    /// The port to listen on; a free one is chosen if unset.
    pub port: Option<u16>,
    pub startup_timeout: Duration,
    /// A folder where moto's state is kept across restarts: read back at
    /// start, written every few seconds and at stop. `None`: memory only.
    pub state_dir: Option<PathBuf>,
    /// The operator policy's documents (name, JSON) the portal's identity
    /// holds, as sandbox copies ([`crate::iam::sandbox_copy`]): the real
    /// `policy/` files unless a test takes an action out.
    pub operator_policy: Vec<(String, String)>,
}

impl Default for MotoOptions {
    fn default() -> Self {
        MotoOptions {
            python: None,
            port: None,
            startup_timeout: Duration::from_secs(60),
            state_dir: None,
            operator_policy: crate::iam::operator_policy(),
        }
    }
}

/// A running moto server. Dropping it stops the server.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    // Held open for the server's life: closing it tells the launcher to exit.
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl MotoServer {
    /// Starts moto with default options.
    pub async fn start() -> Result<Self, MotoError> {
        Self::start_with(MotoOptions::default()).await
    }

    pub async fn start_with(options: MotoOptions) -> Result<Self, MotoError> {
        let python = match &options.python {
            Some(path) => path.clone(),
            None => locate_python()?,
        };
        if let Some(dir) = &options.state_dir {
            own_private_folder(dir)?;
        }
        let identities =
            crate::iam::identities(&options.operator_policy).map_err(MotoError::Policy)?;
        // Another process may take a port between our probe and moto's bind;
        // when the port was ours to choose, choose again.
        let attempts = if options.port.is_some() { 1 } else { 3 };
        let mut last = None;
        for _ in 0..attempts {
            let port = match options.port {
                Some(port) => port,
                None => free_port().map_err(MotoError::NoPort)?,
            };
            match Self::spawn(&python, port, &options, &identities).await {
                Err(MotoError::Exited { status, last_line })
                    if last_line.contains("Address already in use") =>
                {
                    last = Some(MotoError::Exited { status, last_line });
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| MotoError::NoPort(std::io::Error::other("no attempt made"))))
    }

    async fn spawn(
        python: &Path,
        port: u16,
        options: &MotoOptions,
        identities: &str,
    ) -> Result<Self, MotoError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut command = Command::new(python);
        if let Some(state) = &options.state_dir {
            command.env("CLOUDPULSE_MOTO_STATE", state);
        }
        let mut child = command
            .arg("-c")
            .arg(LAUNCHER)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // Without this, attaching AWS-managed policies (SSM for instances) fails.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            // Every request is checked against IAM, from the first: only
            // the identities the launcher installs may sign (`crate::iam`).
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "0")
            .env("CLOUDPULSE_SANDBOX_IDENTITIES", identities)
            .env("CLOUDPULSE_SANDBOX_SERVICE_USER", crate::iam::SERVICE_USER)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| MotoError::Spawn {
                python: python.to_path_buf(),
                source,
            })?;
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_LINES_KEPT)));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(drain(out, Arc::clone(&log)));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(drain(err, Arc::clone(&log)));
        }
        let stdin = child.stdin.take();
        let mut server = MotoServer {
            child,
            stdin,
            addr,
            log,
        };
        server.wait_until_ready(options.startup_timeout).await?;
        server.set_up_account().await?;
        tracing::info!(endpoint = %server.endpoint(), "moto is up");
        Ok(server)
    }

    async fn wait_until_ready(&mut self, timeout: Duration) -> Result<(), MotoError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Give the drain tasks a moment to collect the last words.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(MotoError::Exited {
                    status,
                    last_line: self.last_line(),
                });
            }
            if TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(MotoError::Timeout {
                    addr: self.addr,
                    seconds: timeout.as_secs(),
                    last_line: self.last_line(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The base URL to give the AWS SDK as its endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An SDK configuration for this server: its endpoint, the sandbox region
    /// and the keys of [`crate::iam::SERVICE_USER`], allowed everything.
    pub fn sdk_config(&self) -> SdkConfig {
        sdk_config(&self.endpoint())
    }

    /// The same, signed as the portal: [`crate::iam::OPERATOR_USER`], with
    /// the operator policy only.
    pub fn operator_sdk_config(&self) -> SdkConfig {
        operator_sdk_config(&self.endpoint())
    }

    /// Forgets every resource: the server is as new (the account's
    /// permissions boundary included, so it is made again).
    pub async fn reset(&self) -> Result<(), MotoError> {
        self.post("/moto-api/reset").await?;
        self.set_up_account().await
    }

    /// What an administrator does once in an account before CloudPulse
    /// deploys to it: creates the instance roles' permissions boundary
    /// (kept if a restored state already has it).
    async fn set_up_account(&self) -> Result<(), MotoError> {
        let iam = aws_sdk_iam::Client::new(&self.sdk_config());
        // A moto just up and busy (a loaded machine) has been seen to
        // answer this first request with an empty body: asked again a few
        // times before the start fails.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let created = iam
                .create_policy()
                .policy_name(INSTANCE_BOUNDARY)
                .policy_document(INSTANCE_BOUNDARY_DOCUMENT)
                .description(
                    "The most a CloudPulse instance role may do (policy/instance-boundary.json)",
                )
                .send()
                .await;
            match created {
                Ok(_) => return Ok(()),
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_entity_already_exists_exception()) =>
                {
                    return Ok(())
                }
                Err(_) if attempts < 5 => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    return Err(MotoError::Request {
                        path: format!("IAM CreatePolicy {INSTANCE_BOUNDARY}"),
                        reason: aws_sdk_iam::error::DisplayErrorContext(&error).to_string(),
                    })
                }
            }
        }
    }

    async fn post(&self, path: &str) -> Result<String, MotoError> {
        let failed = |reason: String| MotoError::Request {
            path: path.to_string(),
            reason,
        };
        let mut stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let request = format!(
            "POST {path} HTTP/1.0\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
            self.addr
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status_ok = response
            .split_whitespace()
            .nth(1)
            .is_some_and(|code| code.starts_with('2'));
        if status_ok {
            Ok(response)
        } else {
            Err(failed(
                response.lines().next().unwrap_or("no answer").to_string(),
            ))
        }
    }

    /// The last line moto printed, for error messages.
    pub fn last_line(&self) -> String {
        self.log
            .lock()
            .map(|log| log.back().cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Stops the server and waits for it to exit: closing its pipe tells it
    /// to go (saving its state first, if it keeps one); a server that does
    /// not go within ten seconds is killed.
    pub async fn stop(mut self) {
        self.stdin.take();
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!("moto did not exit when asked; killing it");
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        }
    }
}

/// An SDK configuration that talks to the sandbox at `endpoint`, never to
/// AWS, as AWS's own services and the account's administrator do
/// ([`crate::iam::SERVICE_USER`]: allowed everything).
pub fn sdk_config(endpoint: &str) -> SdkConfig {
    signed_as(endpoint, crate::iam::SERVICE_KEY)
}

/// The public parameter that names the newest Amazon Linux 2023 AMI.
pub const AMI_PARAMETER: &str =
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";

/// Publishes a newer Amazon Linux 2023 in the sandbox at `endpoint`, as AWS
/// does: an image made from `instance` (`CreateImage`), then
/// [`AMI_PARAMETER`] moved to it by AWS's own services (the sandbox lets
/// only them write under `/aws/service/`). Returns the new AMI.
pub async fn publish_newer_image(endpoint: &str, instance: &str) -> Result<String, String> {
    let sdk = sdk_config(endpoint);
    let image = aws_sdk_ec2::Client::new(&sdk)
        .create_image()
        .instance_id(instance)
        .name(format!("al2023-ami-{instance}-x86_64"))
        .send()
        .await
        .map_err(|e| {
            format!(
                "CreateImage: {}",
                aws_sdk_ec2::error::DisplayErrorContext(e)
            )
        })?
        .image_id()
        .map(str::to_string)
        .ok_or("CreateImage answered no image id")?;
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name(AMI_PARAMETER)
        .value(&image)
        .overwrite(true)
        .send()
        .await
        .map_err(|e| {
            format!(
                "PutParameter: {}",
                aws_sdk_ssm::error::DisplayErrorContext(e)
            )
        })?;
    Ok(image)
}

/// An SDK configuration that talks to the sandbox at `endpoint` as the
/// portal's identity ([`crate::iam::OPERATOR_USER`]: the operator policy).
pub fn operator_sdk_config(endpoint: &str) -> SdkConfig {
    signed_as(endpoint, crate::iam::OPERATOR_KEY)
}

fn signed_as(endpoint: &str, (key, secret): (&str, &str)) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(SANDBOX_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                key,
                secret,
                None,
                None,
                "cloudpulse-sandbox",
            )),
        )
        .build()
}

async fn drain(stream: impl AsyncRead + Unpin, log: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(target: "moto", "{line}");
        if let Ok(mut log) = log.lock() {
            if log.len() == LOG_LINES_KEPT {
                log.pop_front();
            }
            log.push_back(line);
        }
    }
}

/// Makes `dir` (mode 0700) if it is missing; refuses one that is a link,
/// not a folder, another user's, or open to other users: moto unpickles
/// what it finds there, and unpickling runs code.
pub(crate) fn own_private_folder(dir: &Path) -> Result<(), MotoError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let unsafe_state = |reason: String| MotoError::UnsafeState {
        path: dir.to_path_buf(),
        reason,
    };
    let metadata = match std::fs::symlink_metadata(dir) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| unsafe_state(format!("cannot create it: {e}")))?;
            std::fs::symlink_metadata(dir).map_err(|e| unsafe_state(e.to_string()))?
        }
        Err(error) => return Err(unsafe_state(format!("cannot look at it: {error}"))),
    };
    if !metadata.file_type().is_dir() {
        return Err(unsafe_state(
            "it is not a folder (a symbolic link or a file); remove it, or point the sandbox at \
             another database"
                .into(),
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if metadata.uid() != me {
        return Err(unsafe_state(format!(
            "it belongs to user {}, not to this user ({me}); remove it, or point the sandbox at \
             another database",
            metadata.uid()
        )));
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(unsafe_state(format!(
            "it is open to other users (mode {mode:04o}); run `chmod 700 {}`",
            dir.display()
        )));
    }
    Ok(())
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Finds a Python that has moto: `$CLOUDPULSE_MOTO_PYTHON`, else the
/// project's `.venv` in this folder or any folder above it (also above this
/// crate's source, for tests run from anywhere).
pub fn locate_python() -> Result<PathBuf, MotoError> {
    if let Some(path) = std::env::var_os(PYTHON_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(MotoError::NotInstalled {
                looked: path.display().to_string(),
            })
        };
    }
    let mut looked = Vec::new();
    let starts = [
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors() {
            let candidate = dir.join(".venv/bin/python");
            if candidate.is_file() {
                return Ok(candidate);
            }
            looked.push(candidate.display().to_string());
        }
    }
    looked.dedup();
    Err(MotoError::NotInstalled {
        looked: looked.join(", "),
    })
}
