//! One real `cloudpulse-instance` process per running sandbox instance.
//!
//! The process is what "the instance" means in the sandbox: it answers the
//! load balancer's health checks, serves the dashboard and publishes metrics
//! through the gateway, exactly as the binary does on EC2. Its environment is
//! built from scratch, so nothing of the portal's (least of all real AWS
//! credentials or profiles) reaches it, and its output goes to a log file of
//! its own rather than into the portal's terminal.
//!
//! Lifetime rules: every child runs in a process group of its own, so a
//! signal reaches anything it may start; a child is killed when its handle
//! is dropped, so nothing outlives the portal; a terminated instance gets
//! SIGTERM, its drain time, then SIGKILL. A process that exits by itself is
//! not restarted: the instance stays "running" with nothing listening, its
//! health checks fail, and the ASG replaces it, as on EC2.

use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{kill_process_group, Pid, Signal};
use tokio::process::Command;
use tokio::sync::{oneshot, watch};

/// Everything a spawned instance needs to know about its world.
#[derive(Clone, Debug)]
pub struct LaunchSpec {
    pub instance_id: String,
    pub asg_name: String,
    pub region: String,
    /// Where the instance's AWS calls go: the sandbox gateway.
    pub aws_endpoint: String,
    /// The instance's own IMDS emulator.
    pub imds_endpoint: String,
    pub port: u16,
    /// Its settings file (may be empty); the default under /etc is not ours.
    pub env_file: PathBuf,
    pub log_file: PathBuf,
    /// Where chaos commands leave word for the service (`CONTROL_DIR`).
    pub control_dir: PathBuf,
    /// Multiplies the service's own intervals, as it does the data plane's.
    pub time_scale: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(
        "the instance binary {0} does not exist; run `cargo build -p cloudpulse-instance` first"
    )]
    MissingBinary(PathBuf),
    #[error("cannot open the instance log {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find a free loopback port: {0}")]
    NoPort(#[source] std::io::Error),
}

/// A running (or exited) instance process.
#[derive(Debug)]
pub struct InstanceProcess {
    pid: u32,
    port: u16,
    exit: watch::Receiver<Option<ExitStatus>>,
    stop: Option<oneshot::Sender<Duration>>,
}

impl InstanceProcess {
    /// Starts `binary` as the instance `spec` describes.
    pub fn spawn(binary: &Path, spec: &LaunchSpec) -> Result<InstanceProcess, ProcessError> {
        if !binary.is_file() {
            return Err(ProcessError::MissingBinary(binary.to_path_buf()));
        }
        let mut command = scrubbed_command(binary, &spec.log_file)?;
        for (name, value) in environment(spec) {
            command.env(name, value);
        }
        let mut child = command
            // Its own group: a Ctrl-C in the portal's terminal is the
            // portal's to handle, and a group signal reaches descendants.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                binary: binary.to_path_buf(),
                source,
            })?;
        let pid = child.id().unwrap_or_default();
        let (exit_tx, exit) = watch::channel(None);
        let (stop, stop_rx) = oneshot::channel::<Duration>();
        let instance_id = spec.instance_id.clone();
        tokio::spawn(async move {
            tokio::select! {
                status = child.wait() => {
                    let status = status.ok();
                    tracing::warn!(%instance_id, pid, ?status, "instance process exited by itself");
                    let _ = exit_tx.send(status);
                }
                bound = stop_rx => {
                    // A dropped handle (no bound) still means: stop now.
                    let bound = bound.unwrap_or(Duration::ZERO);
                    signal_group(pid, Signal::TERM);
                    let status = match tokio::time::timeout(bound, child.wait()).await {
                        Ok(status) => status.ok(),
                        Err(_) => {
                            tracing::warn!(%instance_id, pid, ?bound, "instance did not drain in time; killing it");
                            signal_group(pid, Signal::KILL);
                            let _ = child.start_kill();
                            child.wait().await.ok()
                        }
                    };
                    // Anything the service left behind in its group goes too.
                    signal_group(pid, Signal::KILL);
                    tracing::debug!(%instance_id, pid, ?status, "instance process stopped");
                    let _ = exit_tx.send(status);
                }
            }
        });
        tracing::info!(instance_id = %spec.instance_id, pid, port = spec.port, log = %spec.log_file.display(), "instance process started");
        Ok(InstanceProcess {
            pid,
            port: spec.port,
            exit,
            stop: Some(stop),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The exit status once the process has ended (by itself or stopped).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    pub fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Sends SIGTERM now; SIGKILL follows if the process still runs after
    /// `bound`. Returns at once; [`InstanceProcess::exited`] waits for it.
    pub fn terminate(&mut self, bound: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(bound);
        }
    }

    /// Waits until the process has exited.
    pub async fn exited(&self) {
        let mut exit = self.exit.clone();
        // An error means the supervising task is gone, and with it the child.
        let _ = exit.wait_for(Option::is_some).await;
    }
}

impl Drop for InstanceProcess {
    fn drop(&mut self) {
        // The supervising task kills the child when told to stop with no
        // bound; `kill_on_drop` covers a runtime that is already gone. A
        // drain still under way is cut short here, so that dropping the
        // handle always means the process is gone.
        self.terminate(Duration::ZERO);
        if !self.has_exited() {
            signal_group(self.pid, Signal::KILL);
        }
    }
}

/// `binary` with nothing of our environment but `PATH`, no input, and its
/// output appended to `log_file`.
fn scrubbed_command(binary: &Path, log_file: &Path) -> Result<Command, ProcessError> {
    let log = open_log(log_file)?;
    let log_err = log.try_clone().map_err(|source| ProcessError::Log {
        path: log_file.to_path_buf(),
        source,
    })?;
    let mut command = Command::new(binary);
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    Ok(command)
}

fn signal_group(pid: u32, signal: Signal) {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    // ESRCH (already gone) is the common, harmless case.
    let _ = kill_process_group(pid, signal);
}

fn open_log(path: &Path) -> Result<File, ProcessError> {
    let failed = |source| ProcessError::Log {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(failed)
}

/// The service's whole environment. Its intervals are scaled with the rest
/// of the sandbox, but never below what the service accepts.
pub fn environment(spec: &LaunchSpec) -> Vec<(&'static str, String)> {
    let scaled = |millis: f64, floor: f64| ((millis * spec.time_scale).max(floor)).round() as u64;
    vec![
        ("HOST", "127.0.0.1".into()),
        ("PORT", spec.port.to_string()),
        ("ASG_NAME", spec.asg_name.clone()),
        ("AWS_REGION", spec.region.clone()),
        ("AWS_ENDPOINT_URL", spec.aws_endpoint.clone()),
        // No keys and no shared config or profile of the developer's: the
        // SDK finds the instance role's credentials in IMDS, as on EC2.
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            spec.imds_endpoint.clone(),
        ),
        (
            "CLOUDPULSE_ENV_FILE",
            spec.env_file.to_string_lossy().into_owned(),
        ),
        ("METRICS_INTERVAL_MS", scaled(60_000.0, 1_000.0).to_string()),
        ("DRAIN_GRACE_MS", scaled(2_000.0, 100.0).to_string()),
        ("DRAIN_TIMEOUT_MS", scaled(10_000.0, 500.0).to_string()),
        (
            "CONTROL_DIR",
            spec.control_dir.to_string_lossy().into_owned(),
        ),
        ("RUST_LOG", "info".into()),
        // A portal killed outright must not leave instances running.
        ("EXIT_WITH_PARENT", "1".into()),
    ]
}

/// Runs a command "on" an instance, as SSM Run Command would on EC2: the
/// instance binary with `args`, in the instance process's own process group
/// (so its CPU counts as the instance's, and terminating the instance stops
/// it too), with the instance's settings and control directory, its output
/// appended to the instance's log.
pub fn run_on_instance(
    binary: &Path,
    args: &[String],
    spec: &LaunchSpec,
    instance_pid: u32,
) -> Result<tokio::process::Child, ProcessError> {
    scrubbed_command(binary, &spec.log_file)?
        .args(args)
        .env("CLOUDPULSE_ENV_FILE", &spec.env_file)
        .env("CONTROL_DIR", &spec.control_dir)
        .process_group(i32::try_from(instance_pid).unwrap_or(0))
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ProcessError::Spawn {
            binary: binary.to_path_buf(),
            source,
        })
}

/// How long a terminated instance may drain before it is killed: the
/// service's own drain timeout plus a margin for its exit.
pub fn drain_bound(time_scale: f64) -> Duration {
    Duration::from_millis((10_000.0 * time_scale).max(500.0).round() as u64)
        + Duration::from_millis(1_000)
}

/// A loopback port nothing listens on right now. Another program could take
/// it before the instance binds it; the instance would then exit, fail its
/// health checks and be replaced, as a broken instance is.
pub fn free_port() -> Result<u16, ProcessError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(ProcessError::NoPort)?;
    Ok(listener.local_addr().map_err(ProcessError::NoPort)?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(scale: f64) -> LaunchSpec {
        LaunchSpec {
            instance_id: "i-1".into(),
            asg_name: "g".into(),
            region: "us-east-1".into(),
            aws_endpoint: "http://127.0.0.1:1".into(),
            imds_endpoint: "http://127.0.0.1:2".into(),
            port: 4321,
            env_file: "/tmp/x.env".into(),
            log_file: "/tmp/x.log".into(),
            control_dir: "/tmp/x.control".into(),
            time_scale: scale,
        }
    }

    #[test]
    fn intervals_scale_but_respect_the_service_minimums() {
        let env: std::collections::HashMap<_, _> = environment(&spec(0.1)).into_iter().collect();
        assert_eq!(env["METRICS_INTERVAL_MS"], "6000");
        assert_eq!(env["DRAIN_GRACE_MS"], "200");
        assert_eq!(env["DRAIN_TIMEOUT_MS"], "1000");
        assert_eq!(env["PORT"], "4321");
        let tiny: std::collections::HashMap<_, _> =
            environment(&spec(0.0001)).into_iter().collect();
        assert_eq!(tiny["METRICS_INTERVAL_MS"], "1000");
        assert_eq!(tiny["DRAIN_GRACE_MS"], "100");
    }

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let err = InstanceProcess::spawn(Path::new("/nonexistent/cloudpulse-instance"), &spec(1.0))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("cargo build -p cloudpulse-instance"),
            "{err}"
        );
    }
}
