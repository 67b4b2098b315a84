//! The sandbox's data plane: what moto's control plane only describes.
//!
//! moto records instances, target groups and load balancers but runs none of
//! them. [`DataPlane`] makes them real on this machine: every running
//! instance of a sandbox deployment's Auto Scaling group becomes a
//! `cloudpulse-instance` process on a loopback port with its own IMDSv2
//! endpoint; each target group's health check probes those processes like an
//! ALB; each load balancer gets a local listener that routes to healthy
//! targets; and, as ELB health checks on an ASG do, an instance that stays
//! unhealthy after its grace period (counted from when its service starts,
//! that is from `InService`) is reported unhealthy and terminated through
//! Auto Scaling, so that the group launches a replacement.
//!
//! An instance Auto Scaling takes out (scale-in, a termination through Auto
//! Scaling, a failed health check) is `Terminating` in moto (see the
//! launcher's `_scale_like_auto_scaling`): here it keeps running while its
//! targets drain for their group's deregistration delay, and only then is
//! it terminated in EC2, which drops it from the group.
//!
//! It works by reconciliation: every half second (times the time scale) it
//! reads the tagged ASGs, their instances, target groups and load balancers
//! from moto *directly* (its own calls must not show up in, or be disrupted
//! by, the gateway) and starts or stops whatever differs. The instances
//! themselves talk to AWS through the gateway, like any other client.
//!
//! The time scale multiplies every interval the data plane owns: polling,
//! health check interval and timeout, the ASG grace period, deregistration
//! delay and the instance service's own drain and metrics intervals. Tests use
//! 0.1–0.2 to see minutes of AWS behaviour in seconds.
//!
//! What the portal sees of it comes through the gateway ([`DataPlaneView`]):
//! target health becomes this module's verdict and a load balancer's DNS name
//! becomes its local listener's address.

pub mod balancer;
pub mod commands;
pub mod cpu;
pub mod health;
pub mod imds;
mod monitoring;
pub(crate) mod overlay;
pub mod process;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::LifecycleState;
use aws_sdk_ec2::types::{Filter, InstanceStateName};
use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use tokio::sync::{mpsc, oneshot};

use crate::faithful::{Cause, Faithful, GroupNow, LaunchFailure, RefreshMove};
use crate::moto::SANDBOX_REGION;
pub use balancer::Balancer;
pub use commands::RunCommand;
pub use health::{HealthCheckSettings, Matcher, TargetReason, TargetState, TargetVerdict};
pub use imds::{ImdsEmulator, InstanceMetadata, RoleSource};
pub use process::{InstanceProcess, LaunchSpec, ProcessError};

use balancer::PortBook;
use health::{HealthChecker, TargetTable};

/// The tag that marks an Auto Scaling group as a CloudPulse deployment's.
pub use cloudpulse_core::tags::DEPLOYMENT as DEPLOYMENT_TAG;
/// The instance service's binary name.
pub const INSTANCE_BINARY: &str = "cloudpulse-instance";

const POLL: Duration = Duration::from_millis(500);
/// Faster than this, moto (single-threaded Python) becomes the bottleneck.
const MIN_POLL: Duration = Duration::from_millis(100);
/// ELB's default deregistration delay, for a target group whose
/// `deregistration_delay.timeout_seconds` cannot be read.
const DEREGISTRATION_DELAY: Duration = Duration::from_secs(300);
/// The data plane's metrics clock: EC2's detailed monitoring sends one
/// datapoint a minute (basic monitoring one every five of these), ELB its
/// metrics every minute, and CloudWatch evaluates alarms every minute (see
/// [`monitoring`]).
const METRICS_PERIOD: Duration = Duration::from_secs(60);
/// systemd's `RestartSec` in the instance's unit (`instance/deploy/user-data.sh`,
/// with `Restart=on-failure`): a crashed service starts again in place this
/// long after it died; the instance is not replaced.
const SERVICE_RESTART: Duration = Duration::from_secs(2);
/// How long Auto Scaling waits after a failed launch before it tries the
/// next one (AWS backs off from about ten seconds).
const LAUNCH_RETRY: Duration = Duration::from_secs(10);
/// How long CloudWatch takes to make a datapoint visible, by default: AWS
/// documents no figure; field reports say one to three minutes, the low
/// end modelled here.
pub const DEFAULT_METRICS_DELAY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error(
        "the instance binary {0} does not exist; run `cargo build -p cloudpulse-instance` first"
    )]
    MissingBinary(PathBuf),
    #[error("cannot locate the running executable to find the instance binary: {0}")]
    CurrentExe(#[source] std::io::Error),
    #[error("cannot prepare the sandbox work directory {path}: {source}")]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the time scale must be a positive number, got {0}")]
    TimeScale(f64),
}

/// How to start a [`DataPlane`].
#[derive(Clone, Debug)]
pub struct DataPlaneConfig {
    /// moto itself, for the data plane's own reads and writes.
    pub moto_endpoint: String,
    /// The gateway, which the instances use as their AWS endpoint.
    pub gateway_endpoint: String,
    /// Logs, the instances' env file and the load balancers' port book.
    pub work_dir: PathBuf,
    /// The `cloudpulse-instance` binary; `None` looks next to this program.
    pub instance_binary: Option<PathBuf>,
    /// Multiplies every interval; 1.0 is AWS's pace.
    pub time_scale: f64,
    /// How long a new instance boots (at AWS's pace, scaled like the rest)
    /// before its service starts: `pending` in EC2 and Auto Scaling until
    /// then. Zero starts it at once. Amazon Linux 2023 takes 25-40 s to a
    /// running service.
    pub boot_time: Duration,
    /// The gateway's record of scaling activities ([`crate::Gateway::faithful`]):
    /// a health replacement is recorded there, as AWS lists it.
    pub faithful: Option<Faithful>,
    /// How long (at AWS's pace, scaled) a datapoint takes to reach
    /// CloudWatch: neither `GetMetricData` nor the alarms see it sooner.
    pub metrics_delay: Duration,
}

impl DataPlaneConfig {
    pub fn new(
        moto_endpoint: impl Into<String>,
        gateway_endpoint: impl Into<String>,
        work_dir: impl Into<PathBuf>,
    ) -> Self {
        DataPlaneConfig {
            moto_endpoint: moto_endpoint.into(),
            gateway_endpoint: gateway_endpoint.into(),
            work_dir: work_dir.into(),
            instance_binary: None,
            time_scale: 1.0,
            boot_time: Duration::ZERO,
            faithful: None,
            metrics_delay: DEFAULT_METRICS_DELAY,
        }
    }

    fn scaled(&self, duration: Duration) -> Duration {
        duration.mul_f64(self.time_scale)
    }
}

/// Where the instance binary is by default: beside the running program, or
/// one folder up (a test binary runs from `target/debug/deps`).
pub fn default_instance_binary() -> Result<PathBuf, DataPlaneError> {
    let exe = std::env::current_exe().map_err(DataPlaneError::CurrentExe)?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let beside = dir.join(INSTANCE_BINARY);
    let candidates = [
        Some(beside.clone()),
        dir.parent().map(|d| d.join(INSTANCE_BINARY)),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|path| path.is_file())
        .ok_or(DataPlaneError::MissingBinary(beside))
}

/// What the gateway asks of the data plane to make moto's answers true.
pub trait DataPlaneView: Send + Sync + std::fmt::Debug {
    /// The verdict on every target of a target group the data plane
    /// checks; `None` if it does not check that group.
    fn target_health(&self, target_group_arn: &str) -> Option<Vec<TargetVerdict>>;
    /// The local listener standing in for a load balancer.
    fn balancer_address(&self, load_balancer_arn: &str) -> Option<SocketAddr>;
    /// A Run Command moto accepted, for the data plane to carry out.
    fn run_command(&self, command: RunCommand);
    /// Whether an instance is still booting: running in moto, but `pending`
    /// as AWS would say, its service not started yet.
    fn booting(&self, instance_id: &str) -> bool;
    /// Whether the data plane saw this member of `group` at its last pass
    /// (`None`: it has not looked at that group yet). One it has not seen
    /// was launched since, so it is not yet booting in its books, though
    /// AWS would call it `Pending` already.
    fn seen(&self, group: &str, instance_id: &str) -> Option<bool>;
}

#[derive(Clone, Debug)]
struct InstanceEntry {
    port: u16,
    pid: u32,
    /// Its IMDS endpoint, `http://127.0.0.1:PORT`.
    imds: String,
}

#[derive(Clone, Debug)]
struct BalancerEntry {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    /// Answers its targets gave with a 5xx status.
    target_5xx: Arc<AtomicU64>,
}

/// The data plane's state as readers see it; written by the reconciler.
#[derive(Debug, Default)]
struct Board {
    instances: RwLock<HashMap<String, InstanceEntry>>,
    groups: RwLock<HashMap<String, Arc<TargetTable>>>,
    balancers: RwLock<HashMap<String, BalancerEntry>>,
    problem: RwLock<Option<String>>,
    /// Each instance's CPU in percent over the last (scaled) minute.
    cpu: RwLock<HashMap<String, f64>>,
    /// To the reconciler, which owns the processes a command runs against.
    commands: RwLock<Option<mpsc::UnboundedSender<RunCommand>>>,
    /// Running instances without a service yet (booting, or about to start).
    booting: RwLock<HashSet<String>>,
    /// The groups the data plane runs, each with the members it saw at its
    /// last pass.
    seen: RwLock<HashMap<String, HashSet<String>>>,
    /// Launches to refuse, and how many more (see [`DataPlane::fail_launches`]).
    launch_failures: RwLock<Option<(LaunchFailure, u32)>>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Plain maps: a panic mid-write cannot leave them unsound.
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

impl DataPlaneView for Board {
    fn target_health(&self, target_group_arn: &str) -> Option<Vec<TargetVerdict>> {
        read(&self.groups)
            .get(target_group_arn)
            .map(|table| table.verdicts())
    }

    fn balancer_address(&self, load_balancer_arn: &str) -> Option<SocketAddr> {
        read(&self.balancers)
            .get(load_balancer_arn)
            .map(|entry| entry.addr)
    }

    fn run_command(&self, command: RunCommand) {
        if let Some(commands) = read(&self.commands).as_ref() {
            let _ = commands.send(command);
        }
    }

    fn booting(&self, instance_id: &str) -> bool {
        read(&self.booting).contains(instance_id)
    }

    fn seen(&self, group: &str, instance_id: &str) -> Option<bool> {
        read(&self.seen)
            .get(group)
            .map(|members| members.contains(instance_id))
    }
}

/// The running data plane. [`DataPlane::stop`] (or dropping it) stops every
/// process, listener and checker it started.
#[derive(Debug)]
pub struct DataPlane {
    board: Arc<Board>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DataPlane {
    /// Checks the configuration, prepares the work directory and starts
    /// reconciling in the background.
    pub async fn start(config: DataPlaneConfig) -> Result<DataPlane, DataPlaneError> {
        if !(config.time_scale.is_finite() && config.time_scale > 0.0) {
            return Err(DataPlaneError::TimeScale(config.time_scale));
        }
        let binary = match &config.instance_binary {
            Some(path) if path.is_file() => path.clone(),
            Some(path) => return Err(DataPlaneError::MissingBinary(path.clone())),
            None => default_instance_binary()?,
        };
        let work_dir_error = |source| DataPlaneError::WorkDir {
            path: config.work_dir.clone(),
            source,
        };
        std::fs::create_dir_all(config.work_dir.join("instances")).map_err(work_dir_error)?;
        // The service must not fall back to /etc/cloudpulse/instance.env (not
        // ours, and maybe a real machine's); an empty file of our own is safe.
        let env_file = config.work_dir.join("instance.env");
        if !env_file.is_file() {
            std::fs::write(
                &env_file,
                "# Settings for sandbox instances; the data plane sets the rest.\n",
            )
            .map_err(work_dir_error)?;
        }
        let board = Arc::new(Board::default());
        let (commands, command_queue) = mpsc::unbounded_channel();
        *write(&board.commands) = Some(commands);
        let sdk = crate::moto::sdk_config(&config.moto_endpoint);
        // Alarm actions scale through the gateway's rules when there is one,
        // so their activities and cooldowns are the ones the portal sees.
        let faithful = config
            .faithful
            .clone()
            .unwrap_or_else(|| Faithful::new(&config.moto_endpoint));
        faithful.set_time_scale(config.time_scale);
        let reconciler = Reconciler {
            book: PortBook::load(&config.work_dir.join("balancers.json")),
            ec2: aws_sdk_ec2::Client::new(&sdk),
            asg: aws_sdk_autoscaling::Client::new(&sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
            sdk: sdk.clone(),
            faithful,
            meters: HashMap::new(),
            metrics: monitoring::MetricLog::default(),
            ingesting: std::collections::VecDeque::new(),
            basic_minutes: HashMap::new(),
            template_monitoring: HashMap::new(),
            balancer_groups: HashMap::new(),
            deregistration_delays: HashMap::new(),
            requests_seen: HashMap::new(),
            target_5xx_seen: HashMap::new(),
            binary,
            env_file,
            board: Arc::clone(&board),
            running: HashMap::new(),
            leaving: HashMap::new(),
            checkers: HashMap::new(),
            balancers: HashMap::new(),
            replaced: HashSet::new(),
            spawn_failures: HashMap::new(),
            first_seen: HashMap::new(),
            judged: HashSet::new(),
            launch_retry: HashMap::new(),
            terminating_since: HashMap::new(),
            config,
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(reconciler.run(stopped, command_queue));
        Ok(DataPlane {
            board,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The view the gateway overlays on moto's answers.
    pub fn view(&self) -> Arc<dyn DataPlaneView> {
        Arc::clone(&self.board) as Arc<dyn DataPlaneView>
    }

    /// `(instance id, state, reason)` for each target of a target group, as
    /// `DescribeTargetHealth` through the gateway reports them.
    pub fn target_health(&self, target_group_arn: &str) -> Vec<TargetVerdict> {
        self.board
            .target_health(target_group_arn)
            .unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT` of a load balancer's local listener.
    pub fn balancer_url(&self, load_balancer_arn: &str) -> Option<String> {
        self.board
            .balancer_address(load_balancer_arn)
            .map(|addr| format!("http://{addr}"))
    }

    /// The loopback port an instance's process listens on.
    pub fn instance_port(&self, instance_id: &str) -> Option<u16> {
        read(&self.board.instances)
            .get(instance_id)
            .map(|entry| entry.port)
    }

    /// The process id of an instance's process (for chaos and checks).
    pub fn instance_pid(&self, instance_id: &str) -> Option<u32> {
        read(&self.board.instances)
            .get(instance_id)
            .map(|entry| entry.pid)
    }

    /// The IMDSv2 endpoint an instance's process reads its identity from.
    pub fn imds_endpoint(&self, instance_id: &str) -> Option<String> {
        read(&self.board.instances)
            .get(instance_id)
            .map(|entry| entry.imds.clone())
    }

    /// Instances that currently have a process.
    pub fn instances(&self) -> Vec<String> {
        let mut ids: Vec<String> = read(&self.board.instances).keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Requests a load balancer's listener has received (`RequestCount`).
    pub fn requests_served(&self, load_balancer_arn: &str) -> u64 {
        read(&self.board.balancers)
            .get(load_balancer_arn)
            .map(|entry| entry.requests.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// An instance's CPU utilisation in percent over the last (scaled)
    /// minute, as published to `AWS/EC2 CPUUtilization`.
    pub fn cpu(&self, instance_id: &str) -> Option<f64> {
        read(&self.board.cpu).get(instance_id).copied()
    }

    /// Makes the next `count` launches of every deployment's group fail as
    /// AWS would fail them (`u32::MAX`: until [`DataPlane::clear_launch_failures`]):
    /// each is recorded as a `Failed` scaling activity with AWS's
    /// StatusMessage and its instance never boots; Auto Scaling tries again
    /// about ten (scaled) seconds later.
    pub fn fail_launches(&self, failure: LaunchFailure, count: u32) {
        *write(&self.board.launch_failures) = (count > 0).then_some((failure, count));
    }

    /// Launches succeed again.
    pub fn clear_launch_failures(&self) {
        *write(&self.board.launch_failures) = None;
    }

    /// The latest thing that keeps the data plane from doing its job (an
    /// instance that cannot start, moto not answering), if any.
    pub fn problem(&self) -> Option<String> {
        read(&self.board.problem).clone()
    }

    /// Stops reconciling, lets instances drain (SIGTERM, then SIGKILL after a
    /// bound), closes every listener, and returns when all are gone.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            if let Err(error) = task.await {
                tracing::warn!(%error, "the data plane's reconciler ended abnormally");
            }
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        // Aborting drops the reconciler and everything it owns: processes
        // are killed on drop, listeners and checkers stop on drop.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A process the data plane runs for an instance in service.
#[derive(Debug)]
struct Running {
    process: InstanceProcess,
    imds: ImdsEmulator,
    asg_name: String,
    started: Instant,
    /// How it was started, for running commands on it.
    spec: LaunchSpec,
    /// Run Commands still running in its process group, each with the
    /// stress workers it keeps busy.
    commands: Vec<(tokio::process::Child, usize)>,
    /// Its type's vCPUs (one if the price table lacks the type): at most
    /// this many stress workers run on it at once.
    vcpus: usize,
    /// Detailed monitoring (a CPU datapoint every minute) rather than
    /// basic (one every five minutes).
    detailed_monitoring: bool,
    /// When its crashed process is started again, as systemd's
    /// `Restart=on-failure` does after `RestartSec`.
    restart_at: Option<Instant>,
}

/// One tagged Auto Scaling group, as far as the data plane cares.
#[derive(Debug)]
struct GroupSpec {
    name: String,
    instance_ids: Vec<String>,
    /// Those in the `InService` lifecycle state (not standby, not leaving).
    in_service: Vec<String>,
    /// Those Auto Scaling is taking out (`Terminating`): still running in
    /// EC2 while their targets drain.
    terminating: Vec<String>,
    target_group_arns: Vec<String>,
    elb_health_checks: bool,
    grace_period: Duration,
    /// The launch template (id, version) its instances are launched from.
    launch_template: Option<(String, String)>,
    desired: i32,
    /// Each instance's availability zone.
    zones: HashMap<String, String>,
}

/// One target group's settings, from `DescribeTargetGroups`.
#[derive(Debug)]
struct TargetGroupSpec {
    arn: String,
    settings: HealthCheckSettings,
    port: Option<i32>,
    load_balancer_arns: Vec<String>,
}

/// Whether EC2 reports detailed monitoring on for an instance.
fn monitoring_enabled(instance: &aws_sdk_ec2::types::Instance) -> bool {
    matches!(
        instance.monitoring().and_then(|m| m.state()),
        Some(
            aws_sdk_ec2::types::MonitoringState::Enabled
                | aws_sdk_ec2::types::MonitoringState::Pending
        )
    )
}

/// One EC2 instance's facts from `DescribeInstances`.
#[derive(Debug)]
struct Ec2Facts {
    running: bool,
    /// EC2 says detailed monitoring is on.
    detailed_monitoring: bool,
    /// EC2's launch time: a booting instance's clock starts there, also
    /// for a sandbox restarted while it booted.
    launched: Option<std::time::SystemTime>,
    metadata: InstanceMetadata,
}

struct Reconciler {
    config: DataPlaneConfig,
    binary: PathBuf,
    env_file: PathBuf,
    ec2: aws_sdk_ec2::Client,
    asg: aws_sdk_autoscaling::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    /// Signed as AWS's own services, for the instances' role credentials.
    sdk: aws_config::SdkConfig,
    faithful: Faithful,
    meters: HashMap<String, cpu::CpuMeter>,
    metrics: monitoring::MetricLog,
    /// Measured minutes not yet visible in CloudWatch (its ingestion
    /// delay), each with when it becomes visible.
    ingesting: std::collections::VecDeque<(Instant, monitoring::Tick)>,
    /// Each basic-monitoring instance's minutes since its last datapoint.
    basic_minutes: HashMap<String, Vec<f64>>,
    /// Whether each launch template version (id, version) turns detailed
    /// monitoring on.
    template_monitoring: HashMap<(String, String), bool>,
    /// Each load balancer's target groups, for its per-group metrics.
    balancer_groups: HashMap<String, Vec<String>>,
    /// Each checked target group's deregistration delay, scaled.
    deregistration_delays: HashMap<String, Duration>,
    /// Each load balancer's request counter at the last metrics tick.
    requests_seen: HashMap<String, u64>,
    /// Each load balancer's count of its targets' 5xx answers, likewise.
    target_5xx_seen: HashMap<String, u64>,
    board: Arc<Board>,
    running: HashMap<String, Running>,
    /// Processes of instances that are gone, draining until they exit.
    leaving: HashMap<String, Running>,
    checkers: HashMap<String, HealthChecker>,
    balancers: HashMap<String, Balancer>,
    book: PortBook,
    /// Instances already terminated for failing health checks.
    replaced: HashSet<String>,
    /// When each running instance without a launch time was first seen.
    first_seen: HashMap<String, Instant>,
    /// Instances whose launch was let through (not made to fail).
    judged: HashSet<String>,
    /// Per group, when Auto Scaling tries a launch again after a failure.
    launch_retry: HashMap<String, Instant>,
    /// When each `Terminating` instance was first seen so.
    terminating_since: HashMap<String, Instant>,
    spawn_failures: HashMap<String, String>,
}

/// Terminates `instances` through Auto Scaling (straight in moto), one by
/// one, lowering the desired capacity with each or not.
async fn terminate_each(
    asg: &aws_sdk_autoscaling::Client,
    instances: Vec<String>,
    decrement: bool,
) -> Moto<()> {
    for id in instances {
        asg.terminate_instance_in_auto_scaling_group()
            .instance_id(id)
            .should_decrement_desired_capacity(decrement)
            .send()
            .await
            .map_err(moto_error("TerminateInstanceInAutoScalingGroup"))?;
    }
    Ok(())
}

/// A failed read or write against moto, kept as text for [`Board::problem`].
type Moto<T> = Result<T, String>;

fn moto_error<E: std::fmt::Debug>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |error| format!("{what}: {error:?}")
}

impl Reconciler {
    async fn run(
        mut self,
        mut stopped: oneshot::Receiver<()>,
        mut commands: mpsc::UnboundedReceiver<RunCommand>,
    ) {
        let poll = self.config.scaled(POLL).max(MIN_POLL);
        let metrics_period = self.config.scaled(METRICS_PERIOD).max(MIN_POLL);
        let mut next_metrics = Instant::now() + metrics_period;
        tracing::info!(
            moto = %self.config.moto_endpoint,
            gateway = %self.config.gateway_endpoint,
            binary = %self.binary.display(),
            time_scale = self.config.time_scale,
            "sandbox data plane is up"
        );
        loop {
            let result = self.reconcile().await;
            let problem = match result {
                Ok(()) => self.spawn_failures.values().next().cloned(),
                Err(error) => {
                    tracing::warn!(%error, "data plane reconcile failed; keeping the current state");
                    Some(error)
                }
            };
            *write(&self.board.problem) = problem;
            if Instant::now() >= next_metrics {
                // From now, not from when it was due: a slow round must not
                // make two periods of one.
                next_metrics = Instant::now() + metrics_period;
                self.monitor().await;
            }
            tokio::select! {
                _ = &mut stopped => break,
                Some(command) = commands.recv() => self.run_command(command),
                () = tokio::time::sleep(poll) => {}
            }
        }
        self.shut_down().await;
    }

    async fn reconcile(&mut self) -> Moto<()> {
        let (groups, strays) = self.tagged_groups().await?;
        let terminating: HashSet<String> = groups
            .iter()
            .flat_map(|g| g.terminating.iter().cloned())
            .collect();
        let all_ids: Vec<String> = groups
            .iter()
            .flat_map(|g| g.instance_ids.iter().cloned())
            .collect();
        let facts = self.describe_instances(&all_ids).await?;

        // Instances: start what runs, drain what stopped running.
        let mut wanted: HashMap<String, &GroupSpec> = HashMap::new();
        for group in &groups {
            for id in &group.instance_ids {
                if facts.get(id).is_some_and(|f| f.running) {
                    wanted.insert(id.clone(), group);
                }
            }
        }
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|id| !wanted.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            self.begin_leaving(&id);
        }
        self.restart_crashed();
        let boot_time = self.config.scaled(self.config.boot_time);
        for (id, group) in &wanted {
            if self.running.contains_key(id) || terminating.contains(id) {
                continue;
            }
            if !self.judged.contains(id) {
                let retry_at = self.launch_retry.get(&group.name).copied();
                if retry_at.is_some_and(|at| Instant::now() < at) {
                    // Auto Scaling has not tried this launch yet.
                    continue;
                }
                if let Some(failure) = self.take_launch_failure() {
                    self.fail_launch(&group.name, id, failure).await;
                    self.launch_retry.insert(
                        group.name.clone(),
                        Instant::now() + self.config.scaled(LAUNCH_RETRY),
                    );
                    continue;
                }
                self.judged.insert(id.clone());
            }
            let age = match facts.get(id).and_then(|f| f.launched) {
                Some(launched) => launched.elapsed().unwrap_or(Duration::ZERO),
                None => self
                    .first_seen
                    .entry(id.clone())
                    .or_insert_with(Instant::now)
                    .elapsed(),
            };
            if age < boot_time {
                continue;
            }
            if let Some(facts) = facts.get(id) {
                let detailed =
                    facts.detailed_monitoring || self.enable_template_monitoring(id, group).await;
                self.launch(id, &group.name, &facts.metadata, detailed)
                    .await;
            }
        }
        self.spawn_failures.retain(|id, _| wanted.contains_key(id));
        self.judged.retain(|id| wanted.contains_key(id));
        self.first_seen.retain(|id, _| wanted.contains_key(id));
        *write(&self.board.seen) = groups
            .iter()
            .map(|g| (g.name.clone(), g.instance_ids.iter().cloned().collect()))
            .collect();
        // Booting: running in moto, no service yet (a service that could
        // not start is a running instance that fails its health checks).
        *write(&self.board.booting) = wanted
            .keys()
            .filter(|id| {
                !self.running.contains_key(*id)
                    && !self.spawn_failures.contains_key(*id)
                    && !terminating.contains(*id)
            })
            .cloned()
            .collect();

        // Target groups: settings, checkers, registrations.
        let wanted_groups: HashSet<&str> = groups
            .iter()
            .flat_map(|g| g.target_group_arns.iter().map(String::as_str))
            .collect();
        let mut load_balancers: HashMap<String, Vec<String>> = HashMap::new();
        for TargetGroupSpec {
            arn,
            settings,
            port,
            load_balancer_arns,
        } in self.describe_target_groups(&wanted_groups).await?
        {
            let delay = self.deregistration_delay(&arn).await;
            self.deregistration_delays.insert(arn.clone(), delay);
            let mut registered = self.registered_targets(&arn).await?;
            let unregistered: Vec<String> = groups
                .iter()
                .filter(|g| g.target_group_arns.contains(&arn))
                .flat_map(|g| g.in_service.iter())
                .filter(|id| wanted.contains_key(*id) && !registered.contains(*id))
                .cloned()
                .collect();
            if !unregistered.is_empty() {
                self.register_targets(&arn, port, &unregistered).await?;
                registered.extend(unregistered);
            }
            let checker = self
                .checkers
                .entry(arn.clone())
                .or_insert_with(|| HealthChecker::start(&arn, settings.clone()));
            checker.update_settings(settings);
            let table = Arc::clone(checker.table());
            for id in registered.iter().filter(|id| !terminating.contains(*id)) {
                if let Some(running) = self.running.get(id) {
                    table.register(id, running.process.port());
                }
            }
            for id in table.instance_ids() {
                if terminating.contains(&id)
                    || !(registered.contains(&id) && self.running.contains_key(&id))
                {
                    table.drain(&id);
                }
            }
            // An instance that left its group (scaled in, replaced) is taken
            // out of the target group once it has drained, as the ASG does
            // on AWS; moto leaves it registered for ever.
            let in_some_group: HashSet<&String> =
                groups.iter().flat_map(|g| g.instance_ids.iter()).collect();
            let departed: Vec<String> = registered
                .iter()
                .filter(|id| {
                    !in_some_group.contains(id)
                        && !wanted.contains_key(*id)
                        && !self.leaving.contains_key(*id)
                        && table.verdict(id).is_none()
                })
                .cloned()
                .collect();
            if !departed.is_empty() {
                self.deregister_targets(&arn, port, &departed).await?;
            }
            for lb in load_balancer_arns {
                load_balancers.entry(lb).or_default().push(arn.clone());
            }
        }
        self.checkers
            .retain(|arn, _| wanted_groups.contains(arn.as_str()));
        self.deregistration_delays
            .retain(|arn, _| wanted_groups.contains(arn.as_str()));
        self.finish_draining();
        self.finish_terminating(&groups, strays).await;
        *write(&self.board.groups) = self
            .checkers
            .iter()
            .map(|(arn, checker)| (arn.clone(), Arc::clone(checker.table())))
            .collect();

        self.sync_balancers(load_balancers).await;
        self.replace_unhealthy(&groups).await;
        self.advance_refreshes(&groups).await;
        self.publish_instances();
        Ok(())
    }

    /// Every ASG carrying the deployment tag, and the `Terminating`
    /// instances of the other groups (which no data plane drains).
    async fn tagged_groups(&self) -> Moto<(Vec<GroupSpec>, Vec<String>)> {
        let groups: Vec<_> = self
            .asg
            .describe_auto_scaling_groups()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(moto_error("DescribeAutoScalingGroups"))?;
        let leaving = |g: &aws_sdk_autoscaling::types::AutoScalingGroup| -> Vec<String> {
            g.instances()
                .iter()
                .filter(|i| {
                    i.lifecycle_state()
                        .is_some_and(|s| s.as_str().starts_with("Terminating"))
                })
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect()
        };
        let (tagged, untagged): (Vec<_>, Vec<_>) = groups
            .into_iter()
            .partition(|g| g.tags().iter().any(|t| t.key() == Some(DEPLOYMENT_TAG)));
        let strays = untagged.iter().flat_map(leaving).collect();
        let tagged = tagged
            .into_iter()
            .map(|g| GroupSpec {
                name: g.auto_scaling_group_name().unwrap_or_default().to_string(),
                instance_ids: g
                    .instances()
                    .iter()
                    .filter_map(|i| i.instance_id().map(str::to_string))
                    .collect(),
                in_service: g
                    .instances()
                    .iter()
                    .filter(|i| i.lifecycle_state() == Some(&LifecycleState::InService))
                    .filter_map(|i| i.instance_id().map(str::to_string))
                    .collect(),
                terminating: leaving(&g),
                target_group_arns: g.target_group_arns().to_vec(),
                elb_health_checks: g.health_check_type() == Some("ELB"),
                grace_period: self.config.scaled(Duration::from_secs(
                    g.health_check_grace_period().unwrap_or(0).max(0) as u64,
                )),
                launch_template: g.launch_template().and_then(|lt| {
                    Some((
                        lt.launch_template_id()?.to_string(),
                        lt.version().unwrap_or("$Default").to_string(),
                    ))
                }),
                desired: g.desired_capacity().unwrap_or(0),
                zones: g
                    .instances()
                    .iter()
                    .filter_map(|i| {
                        Some((
                            i.instance_id()?.to_string(),
                            i.availability_zone()?.to_string(),
                        ))
                    })
                    .collect(),
            })
            .collect();
        Ok((tagged, strays))
    }

    async fn describe_instances(&self, ids: &[String]) -> Moto<HashMap<String, Ec2Facts>> {
        let mut facts = HashMap::new();
        if ids.is_empty() {
            return Ok(facts);
        }
        // A filter, not InstanceIds: an id that vanished must not fail the call.
        let reservations: Vec<_> = self
            .ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("instance-id")
                    .set_values(Some(ids.to_vec()))
                    .build(),
            )
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(moto_error("DescribeInstances"))?;
        for instance in reservations.iter().flat_map(|r| r.instances()) {
            let Some(id) = instance.instance_id() else {
                continue;
            };
            let running = matches!(
                instance.state().and_then(|s| s.name()),
                Some(InstanceStateName::Pending | InstanceStateName::Running)
            );
            facts.insert(
                id.to_string(),
                Ec2Facts {
                    running,
                    detailed_monitoring: monitoring_enabled(instance),
                    launched: instance.launch_time().and_then(|t| {
                        std::time::UNIX_EPOCH.checked_add(Duration::new(
                            u64::try_from(t.secs()).ok()?,
                            t.subsec_nanos(),
                        ))
                    }),
                    metadata: InstanceMetadata {
                        instance_id: id.to_string(),
                        availability_zone: instance
                            .placement()
                            .and_then(|p| p.availability_zone())
                            .unwrap_or(SANDBOX_REGION)
                            .to_string(),
                        instance_type: instance
                            .instance_type()
                            .map(|t| t.as_str().to_string())
                            .unwrap_or_default(),
                        local_ipv4: instance
                            .private_ip_address()
                            .unwrap_or_default()
                            .to_string(),
                        ami_id: instance.image_id().unwrap_or_default().to_string(),
                        mac: instance
                            .network_interfaces()
                            .first()
                            .and_then(|n| n.mac_address())
                            .unwrap_or_default()
                            .to_string(),
                        subnet_id: instance.subnet_id().unwrap_or_default().to_string(),
                        vpc_id: instance.vpc_id().unwrap_or_default().to_string(),
                        instance_profile_arn: instance
                            .iam_instance_profile()
                            .and_then(|p| p.arn())
                            .map(str::to_string),
                    },
                },
            );
        }
        Ok(facts)
    }

    /// The wanted target groups' health checks and load balancers.
    async fn describe_target_groups(&self, wanted: &HashSet<&str>) -> Moto<Vec<TargetGroupSpec>> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        // All of them, filtered here: asking by ARN fails the whole call
        // when one of them was just deleted.
        let groups: Vec<_> = self
            .elb
            .describe_target_groups()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(moto_error("DescribeTargetGroups"))?;
        let defaults = HealthCheckSettings::default();
        let seconds = |value: Option<i32>, default: Duration| {
            value
                .filter(|v| *v > 0)
                .map(|v| Duration::from_secs(v as u64))
                .unwrap_or(default)
        };
        Ok(groups
            .into_iter()
            .filter_map(|g| {
                let arn = g.target_group_arn()?.to_string();
                if !wanted.contains(arn.as_str()) {
                    return None;
                }
                let settings = HealthCheckSettings {
                    path: g
                        .health_check_path()
                        .filter(|p| p.starts_with('/'))
                        .unwrap_or("/")
                        .to_string(),
                    interval: self
                        .config
                        .scaled(seconds(
                            g.health_check_interval_seconds(),
                            defaults.interval,
                        ))
                        .max(MIN_POLL),
                    timeout: self
                        .config
                        .scaled(seconds(g.health_check_timeout_seconds(), defaults.timeout))
                        .max(Duration::from_millis(50)),
                    healthy_threshold: g
                        .healthy_threshold_count()
                        .filter(|c| *c > 0)
                        .map_or(defaults.healthy_threshold, |c| c as u32),
                    unhealthy_threshold: g
                        .unhealthy_threshold_count()
                        .filter(|c| *c > 0)
                        .map_or(defaults.unhealthy_threshold, |c| c as u32),
                    matcher: g
                        .matcher()
                        .and_then(|m| m.http_code())
                        .map_or(defaults.matcher.clone(), Matcher::parse),
                };
                Some(TargetGroupSpec {
                    arn,
                    settings,
                    port: g.port(),
                    load_balancer_arns: g.load_balancer_arns().to_vec(),
                })
            })
            .collect())
    }

    /// A target group's deregistration delay, as its attribute says (ELB's
    /// default 300 s when it cannot be read), scaled.
    async fn deregistration_delay(&self, target_group_arn: &str) -> Duration {
        let seconds = self
            .elb
            .describe_target_group_attributes()
            .target_group_arn(target_group_arn)
            .send()
            .await
            .ok()
            .and_then(|out| {
                out.attributes()
                    .iter()
                    .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
                    .and_then(|a| a.value())
                    .and_then(|v| v.parse::<u64>().ok())
            });
        self.config
            .scaled(seconds.map_or(DEREGISTRATION_DELAY, Duration::from_secs))
    }

    /// The instance ids moto has registered in a target group.
    async fn registered_targets(&self, target_group_arn: &str) -> Moto<HashSet<String>> {
        let out = self
            .elb
            .describe_target_health()
            .target_group_arn(target_group_arn)
            .send()
            .await
            .map_err(moto_error("DescribeTargetHealth"))?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
            .collect())
    }

    /// Registers an ASG's in-service instances with its target group, as
    /// AWS's Auto Scaling does for every instance it launches. moto does so
    /// when the group is created or resized, but not for the replacement it
    /// launches after an instance is terminated, which would otherwise
    /// never receive traffic.
    async fn register_targets(
        &self,
        target_group_arn: &str,
        port: Option<i32>,
        instance_ids: &[String],
    ) -> Moto<()> {
        tracing::info!(target_group = %target_group_arn, ?instance_ids, "registering the group's new instances with its target group");
        let targets = instance_ids
            .iter()
            .map(|id| TargetDescription::builder().id(id).set_port(port).build())
            .collect();
        self.elb
            .register_targets()
            .target_group_arn(target_group_arn)
            .set_targets(Some(targets))
            .send()
            .await
            .map_err(moto_error("RegisterTargets"))?;
        Ok(())
    }

    async fn deregister_targets(
        &self,
        target_group_arn: &str,
        port: Option<i32>,
        instance_ids: &[String],
    ) -> Moto<()> {
        tracing::info!(target_group = %target_group_arn, ?instance_ids, "deregistering instances that left the group");
        let targets = instance_ids
            .iter()
            .map(|id| TargetDescription::builder().id(id).set_port(port).build())
            .collect();
        self.elb
            .deregister_targets()
            .target_group_arn(target_group_arn)
            .set_targets(Some(targets))
            .send()
            .await
            .map_err(moto_error("DeregisterTargets"))?;
        Ok(())
    }

    /// A service that died by itself (not asked to stop) and not cleanly is
    /// started again, on the same port with the same identity, after
    /// systemd's `RestartSec`: on EC2 the instance lives on, and only if
    /// its service stays down do the health checks get it replaced. A clean
    /// exit (status 0) stays down, as `Restart=on-failure` leaves it.
    fn restart_crashed(&mut self) {
        let delay = self.config.scaled(SERVICE_RESTART);
        let now = Instant::now();
        for (id, running) in &mut self.running {
            let Some(status) = running.process.exit_status() else {
                continue;
            };
            if status.success() {
                continue;
            }
            let due = *running.restart_at.get_or_insert(now + delay);
            if now < due {
                continue;
            }
            match InstanceProcess::spawn(&self.binary, &running.spec) {
                Ok(process) => {
                    tracing::info!(instance_id = %id, pid = process.pid(), ?status, "restarted the instance's crashed service in place, as systemd does");
                    running.process = process;
                    running.restart_at = None;
                }
                Err(error) => {
                    tracing::warn!(instance_id = %id, %error, "cannot restart the instance's service; trying again");
                    running.restart_at = Some(now + delay);
                }
            }
        }
    }

    /// One launch failure, if some are armed.
    fn take_launch_failure(&self) -> Option<LaunchFailure> {
        let mut armed = write(&self.board.launch_failures);
        let (failure, left) = (*armed)?;
        *armed = (left > 1).then(|| (failure, if left == u32::MAX { left } else { left - 1 }));
        Some(failure)
    }

    /// Makes the launch of `instance_id` fail: recorded as AWS records it
    /// when the gateway's rules are there, and its instance terminated.
    async fn fail_launch(&mut self, group: &str, instance_id: &str, failure: LaunchFailure) {
        tracing::info!(%instance_id, %group, ?failure, "failing the instance's launch, as asked");
        let failed = match &self.config.faithful {
            Some(faithful) => faithful
                .fail_launch(group, instance_id, failure)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => self
                .ec2
                .terminate_instances()
                .instance_ids(instance_id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:?}")),
        };
        if let Err(error) = failed {
            tracing::warn!(%instance_id, %error, "cannot fail the instance's launch");
        }
    }

    /// Whether the instance's launch template turns detailed monitoring on,
    /// as EC2 does for the instances it launches from it (moto records the
    /// template's `Monitoring` but launches every instance without it, and
    /// answers `MonitorInstances` with HTTP 500, so its `DescribeInstances`
    /// still says `disabled`). Read once per numbered version; `$Latest`
    /// and `$Default` are asked each time, since they move.
    async fn enable_template_monitoring(&mut self, _instance_id: &str, group: &GroupSpec) -> bool {
        let Some(template) = group.launch_template.clone() else {
            return false;
        };
        let wanted = match self.template_monitoring.get(&template) {
            Some(known) => *known,
            None => {
                let described = self
                    .ec2
                    .describe_launch_template_versions()
                    .launch_template_id(&template.0)
                    .versions(&template.1)
                    .send()
                    .await;
                let Ok(described) = described else {
                    // Asked again next round.
                    return false;
                };
                let enabled = described
                    .launch_template_versions()
                    .first()
                    .and_then(|v| v.launch_template_data())
                    .and_then(|d| d.monitoring())
                    .and_then(|m| m.enabled())
                    .unwrap_or(false);
                if !template.1.starts_with('$') {
                    self.template_monitoring.insert(template, enabled);
                }
                enabled
            }
        };
        wanted
    }

    /// Starts an instance's IMDS endpoint and process.
    async fn launch(
        &mut self,
        instance_id: &str,
        asg_name: &str,
        metadata: &InstanceMetadata,
        detailed_monitoring: bool,
    ) {
        match self
            .try_launch(instance_id, asg_name, metadata, detailed_monitoring)
            .await
        {
            Ok(running) => {
                self.spawn_failures.remove(instance_id);
                self.running.insert(instance_id.to_string(), running);
            }
            Err(error) => {
                // Said once per instance; retried every round.
                if self.spawn_failures.get(instance_id) != Some(&error) {
                    tracing::error!(%instance_id, %error, "cannot start the instance's process");
                }
                self.spawn_failures.insert(instance_id.to_string(), error);
            }
        }
    }

    async fn try_launch(
        &self,
        instance_id: &str,
        asg_name: &str,
        metadata: &InstanceMetadata,
        detailed_monitoring: bool,
    ) -> Result<Running, String> {
        let roles = metadata
            .instance_profile_arn
            .is_some()
            .then(|| RoleSource::new(&self.sdk));
        let imds = ImdsEmulator::start(metadata.clone(), roles)
            .await
            .map_err(|e| format!("cannot start the IMDS emulator: {e}"))?;
        let port = self.unused_port().map_err(|e| e.to_string())?;
        let spec = LaunchSpec {
            instance_id: instance_id.to_string(),
            asg_name: asg_name.to_string(),
            region: SANDBOX_REGION.to_string(),
            aws_endpoint: self.config.gateway_endpoint.clone(),
            imds_endpoint: imds.endpoint(),
            port,
            env_file: self.env_file.clone(),
            log_file: self
                .config
                .work_dir
                .join("instances")
                .join(format!("{instance_id}.log")),
            control_dir: self
                .config
                .work_dir
                .join("instances")
                .join(format!("{instance_id}.control")),
            time_scale: self.config.time_scale,
        };
        let process = InstanceProcess::spawn(&self.binary, &spec).map_err(|e| e.to_string())?;
        Ok(Running {
            process,
            imds,
            asg_name: asg_name.to_string(),
            started: Instant::now(),
            spec,
            commands: Vec::new(),
            vcpus: cloudpulse_core::pricing::instance_vcpus(&metadata.instance_type)
                .map_or(1, |n| n as usize),
            detailed_monitoring,
            restart_at: None,
        })
    }

    /// A free port that none of our own processes or listeners holds.
    fn unused_port(&self) -> Result<u16, ProcessError> {
        let ours: HashSet<u16> = self
            .running
            .values()
            .chain(self.leaving.values())
            .map(|r| r.process.port())
            .chain(self.balancers.values().map(|b| b.addr().port()))
            .collect();
        let mut port = process::free_port()?;
        for _ in 0..8 {
            if !ours.contains(&port) {
                break;
            }
            port = process::free_port()?;
        }
        Ok(port)
    }

    /// Carries out a Run Command on each of its instances that has a process.
    fn run_command(&mut self, command: RunCommand) {
        for id in &command.instance_ids {
            let Some(running) = self.running.get_mut(id) else {
                tracing::warn!(instance_id = %id, command_id = %command.command_id, "Run Command for an instance without a process; nothing run");
                continue;
            };
            running
                .commands
                .retain_mut(|(child, _)| matches!(child.try_wait(), Ok(None)));
            for line in &command.commands {
                let busy: usize = running.commands.iter().map(|(_, workers)| workers).sum();
                let planned = match commands::instance_args(
                    line,
                    running.vcpus.saturating_sub(busy),
                ) {
                    Ok(planned) => planned,
                    Err(refusal) => {
                        tracing::warn!(instance_id = %id, command_id = %command.command_id, %refusal, "Run Command not carried out");
                        continue;
                    }
                };
                let args = planned.args;
                match process::run_on_instance(
                    &self.binary,
                    &args,
                    &running.spec,
                    running.process.pid(),
                ) {
                    Ok(child) => {
                        tracing::info!(instance_id = %id, command_id = %command.command_id, ?args, "running a command on the instance");
                        running.commands.push((child, planned.stress_workers));
                    }
                    Err(error) => {
                        tracing::warn!(instance_id = %id, %error, "cannot run the command on the instance")
                    }
                }
            }
        }
    }

    /// The instance is no longer running: stop its traffic at once, then
    /// let the process drain.
    fn begin_leaving(&mut self, instance_id: &str) {
        let Some(mut running) = self.running.remove(instance_id) else {
            return;
        };
        for checker in self.checkers.values() {
            checker.table().drain(instance_id);
        }
        running
            .process
            .terminate(process::drain_bound(self.config.time_scale));
        tracing::info!(%instance_id, asg = %running.asg_name, "instance left service; draining its process");
        self.leaving.insert(instance_id.to_string(), running);
    }

    /// Drops drained processes, and draining targets once their target
    /// group's deregistration delay is over: ELB lists a deregistered
    /// target `draining` for the whole delay (its own connections to the
    /// target keep it there), however soon the instance itself has gone.
    fn finish_draining(&mut self) {
        let exited: Vec<String> = self
            .leaving
            .iter()
            .filter(|(_, r)| r.process.has_exited())
            .map(|(id, _)| id.clone())
            .collect();
        for id in &exited {
            self.leaving.remove(id);
            self.replaced.remove(id);
        }
        for (arn, checker) in &self.checkers {
            let delay = self
                .deregistration_delays
                .get(arn)
                .copied()
                .unwrap_or_else(|| self.config.scaled(DEREGISTRATION_DELAY));
            for id in checker.table().drained_longer_than(delay) {
                checker.table().remove(&id);
            }
        }
    }

    /// Auto Scaling's `Terminating`: a leaving instance runs on while its
    /// targets drain (the reconcile drains them), and is terminated in EC2
    /// once the longest deregistration delay of its group's target groups
    /// is over; moto then drops it from the group, without a replacement
    /// (it launched one when the instance went Terminating). `strays`, the
    /// leaving instances of groups that are not a deployment's, have no
    /// targets here and go at once.
    async fn finish_terminating(&mut self, groups: &[GroupSpec], strays: Vec<String>) {
        let now = Instant::now();
        let mut due = strays;
        // Each drained target leaves its target group first, so that no
        // answer lists it between its drain and its termination.
        let mut deregister: HashMap<&String, Vec<String>> = HashMap::new();
        for group in groups {
            let delay = group
                .target_group_arns
                .iter()
                .filter_map(|tg| self.deregistration_delays.get(tg))
                .max()
                .copied()
                .unwrap_or(Duration::ZERO);
            for id in &group.terminating {
                let since = *self.terminating_since.entry(id.clone()).or_insert(now);
                if now.duration_since(since) >= delay {
                    due.push(id.clone());
                    for tg in &group.target_group_arns {
                        deregister.entry(tg).or_default().push(id.clone());
                    }
                }
            }
        }
        let leaving: HashSet<&String> = groups.iter().flat_map(|g| &g.terminating).collect();
        self.terminating_since.retain(|id, _| leaving.contains(id));
        if due.is_empty() {
            return;
        }
        for (tg, ids) in deregister {
            if let Err(error) = self.deregister_targets(tg, None, &ids).await {
                // The instance goes anyway; the next round deregisters it.
                tracing::warn!(target_group = %tg, %error, "cannot deregister the drained targets");
            }
        }
        match self
            .ec2
            .terminate_instances()
            .set_instance_ids(Some(due.clone()))
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(instance_ids = ?due, "targets drained; terminated the leaving instances in EC2")
            }
            Err(error) => {
                tracing::warn!(instance_ids = ?due, error = ?error, "cannot terminate the leaving instances; will retry")
            }
        }
    }

    async fn sync_balancers(&mut self, load_balancers: HashMap<String, Vec<String>>) {
        self.balancer_groups = load_balancers.clone();
        let stale: Vec<String> = self
            .balancers
            .keys()
            .filter(|arn| !load_balancers.contains_key(*arn))
            .cloned()
            .collect();
        for arn in stale {
            if let Some(balancer) = self.balancers.remove(&arn) {
                balancer.stop().await;
            }
        }
        for (arn, target_groups) in load_balancers {
            let tables: Vec<Arc<TargetTable>> = target_groups
                .iter()
                .filter_map(|tg| self.checkers.get(tg).map(|c| Arc::clone(c.table())))
                .collect();
            if let Some(balancer) = self.balancers.get(&arn) {
                balancer.set_groups(tables);
                continue;
            }
            let name = arn.rsplit('/').nth(1).unwrap_or(&arn).to_string();
            match Balancer::start(&name, self.book.get(&arn), tables).await {
                Ok(balancer) => {
                    self.book.record(&arn, balancer.addr().port());
                    self.balancers.insert(arn, balancer);
                }
                Err(error) => {
                    tracing::error!(%error, %arn, "cannot start the local load balancer");
                }
            }
        }
        *write(&self.board.balancers) = self
            .balancers
            .iter()
            .map(|(arn, b)| {
                (
                    arn.clone(),
                    BalancerEntry {
                        addr: b.addr(),
                        requests: b.request_counter(),
                        target_5xx: b.target_5xx_counter(),
                    },
                )
            })
            .collect();
    }

    /// ELB health checks on an ASG: past its grace period (from when its
    /// service started, which is when Auto Scaling calls it `InService`),
    /// an instance in service that any of the group's target groups holds
    /// unhealthy is marked Unhealthy and terminated through Auto Scaling:
    /// `Terminating` while it drains, its replacement launched at once.
    async fn replace_unhealthy(&mut self, groups: &[GroupSpec]) {
        for group in groups.iter().filter(|g| g.elb_health_checks) {
            for id in &group.in_service {
                let Some(running) = self.running.get(id) else {
                    continue;
                };
                if self.replaced.contains(id) || running.started.elapsed() < group.grace_period {
                    continue;
                }
                let unhealthy = group.target_group_arns.iter().any(|tg| {
                    self.checkers
                        .get(tg)
                        .and_then(|c| c.table().verdict(id))
                        .is_some_and(|v| v.state == TargetState::Unhealthy)
                });
                if !unhealthy {
                    continue;
                }
                tracing::info!(instance_id = %id, asg = %group.name, "instance failed its ELB health checks; replacing it");
                match self.terminate_unhealthy(&group.name, id).await {
                    Ok(()) => {
                        self.replaced.insert(id.clone());
                    }
                    Err(error) => {
                        tracing::warn!(instance_id = %id, %error, "cannot replace the unhealthy instance; will retry")
                    }
                }
            }
        }
    }

    /// Carries out each group's instance refresh, as Auto Scaling does on
    /// AWS (the gateway keeps the refresh and decides its moves, see
    /// `crate::faithful`): a launch raises the desired capacity, a
    /// termination takes old instances out through Auto Scaling, where they
    /// drain like any other.
    async fn advance_refreshes(&mut self, groups: &[GroupSpec]) {
        let Some(faithful) = self.config.faithful.clone() else {
            return;
        };
        for group in groups.iter().filter(|g| faithful.refreshing(&g.name)) {
            let healthy: HashSet<String> = group
                .in_service
                .iter()
                .filter(|id| self.running.contains_key(*id))
                .filter(|id| {
                    group.target_group_arns.iter().all(|tg| {
                        self.checkers
                            .get(tg)
                            .and_then(|c| c.table().verdict(id))
                            .is_some_and(|v| v.state == TargetState::Healthy)
                    })
                })
                .cloned()
                .collect();
            let now = GroupNow {
                in_service: &group.in_service,
                members: &group.instance_ids,
                healthy: &healthy,
                desired: group.desired,
                zones: &group.zones,
            };
            let Some(next) = faithful.advance_refresh(&group.name, &now) else {
                continue;
            };
            tracing::info!(asg = %group.name, ?next, "instance refresh moves on");
            let asg = self.asg.clone();
            let change = async move {
                match next {
                    RefreshMove::Launch { desired } => asg
                        .set_desired_capacity()
                        .auto_scaling_group_name(&group.name)
                        .desired_capacity(desired)
                        .send()
                        .await
                        .map(drop)
                        .map_err(moto_error("SetDesiredCapacity")),
                    RefreshMove::Terminate {
                        instances,
                        decrement,
                    } => terminate_each(&asg, instances, decrement).await,
                    RefreshMove::TerminateAndSet { instances, desired } => {
                        terminate_each(&asg, instances, true).await?;
                        asg.set_desired_capacity()
                            .auto_scaling_group_name(&group.name)
                            .desired_capacity(desired)
                            .send()
                            .await
                            .map(drop)
                            .map_err(moto_error("SetDesiredCapacity"))
                    }
                }
            };
            match faithful
                .record_change(&group.name, Cause::InstanceRefresh, change)
                .await
            {
                Ok((Ok(()), _)) => {}
                Ok((Err(error), _)) => {
                    tracing::warn!(asg = %group.name, %error, "an instance refresh's move failed")
                }
                Err(error) => {
                    tracing::warn!(asg = %group.name, %error, "cannot record an instance refresh's move")
                }
            }
        }
    }

    async fn terminate_unhealthy(&self, asg_name: &str, instance_id: &str) -> Moto<()> {
        let Some(faithful) = &self.config.faithful else {
            return self.set_unhealthy_and_terminate(instance_id).await;
        };
        // Through the faithful layer, so the termination and the launch of
        // its replacement become scaling activities with AWS's wording.
        let cause = Cause::OutOfService("an ELB system health check failure".into());
        let change = self.set_unhealthy_and_terminate(instance_id);
        match faithful.record_change(asg_name, cause, change).await {
            Ok((made, _activities)) => made,
            Err(error) => Err(format!("recording the replacement: {error}")),
        }
    }

    async fn set_unhealthy_and_terminate(&self, instance_id: &str) -> Moto<()> {
        self.asg
            .set_instance_health()
            .instance_id(instance_id)
            .health_status("Unhealthy")
            .should_respect_grace_period(false)
            .send()
            .await
            .map_err(moto_error("SetInstanceHealth"))?;
        // As Auto Scaling does: Terminating while its targets drain (see
        // `finish_terminating`), its replacement launched at once.
        self.asg
            .terminate_instance_in_auto_scaling_group()
            .instance_id(instance_id)
            .should_decrement_desired_capacity(false)
            .send()
            .await
            .map_err(moto_error("TerminateInstanceInAutoScalingGroup"))?;
        Ok(())
    }

    fn publish_instances(&self) {
        *write(&self.board.instances) = self
            .running
            .iter()
            .map(|(id, r)| {
                (
                    id.clone(),
                    InstanceEntry {
                        port: r.process.port(),
                        pid: r.process.pid(),
                        imds: r.imds.endpoint(),
                    },
                )
            })
            .collect();
    }

    /// Drains every process, closes every listener, forgets everything.
    async fn shut_down(mut self) {
        *write(&self.board.instances) = HashMap::new();
        *write(&self.board.groups) = HashMap::new();
        *write(&self.board.balancers) = HashMap::new();
        *write(&self.board.booting) = HashSet::new();
        *write(&self.board.seen) = HashMap::new();
        let ids: Vec<String> = self.running.keys().cloned().collect();
        for id in ids {
            self.begin_leaving(&id);
        }
        for (_, balancer) in self.balancers.drain() {
            balancer.stop().await;
        }
        let waits = self.leaving.values().map(|r| r.process.exited());
        let bound = process::drain_bound(self.config.time_scale) + Duration::from_secs(1);
        if tokio::time::timeout(bound, futures_util::future::join_all(waits))
            .await
            .is_err()
        {
            tracing::warn!("instance processes outlived their drain bound; killing them");
        }
        // Dropping the handles kills whatever is left.
        self.leaving.clear();
        self.checkers.clear();
        tracing::info!("sandbox data plane stopped");
    }
}
