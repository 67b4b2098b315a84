//! Command-line flags, each with an environment variable as fallback.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::access::{AccessToken, MAKE_ONE, TOKEN_ENV};

#[derive(Debug, Parser)]
#[command(
    name = "cloudpulse",
    version,
    about = "Deploy, watch and tear down a self-healing web stack on AWS or in a local sandbox."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the portal against AWS (the standard SDK environment decides
    /// account, region and endpoint: AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...).
    Serve(ServeArgs),
    /// Start the local sandbox cloud (moto) and serve the portal against it.
    Sandbox(SandboxArgs),
    /// Ask a running portal to deploy a new stack.
    Deploy(crate::cli::DeployArgs),
    /// Ask a running portal to tear a deployment down.
    Teardown(crate::cli::TeardownArgs),
    /// Change a deployment's time-to-live or cost cap, or extend its TTL.
    Budget(crate::cli::BudgetArgs),
    /// Deploy a torn-down deployment again with the same parameters.
    Redeploy(crate::cli::RedeployArgs),
    /// Show what changing a live deployment's parameters does to each
    /// resource and its cost, changing nothing; prints a plan id to apply.
    Plan(crate::cli_change::PlanArgs),
    /// Apply a plan made by `cloudpulse plan` to its live deployment.
    Apply(crate::cli_change::ApplyArgs),
    /// Show where a live deployment differs from its parameters; check it
    /// now, repair it, or take the actual values into the parameters.
    Drift(crate::cli_change::DriftArgs),
    /// Show deployments, or one deployment and its current job.
    Status(crate::cli::StatusArgs),
    /// Check credentials, region, image, zones and quotas for a deploy,
    /// changing nothing; exits with 1 when a check fails.
    Preflight(crate::cli::PreflightArgs),
    /// List resources tagged by CloudPulse that no tracked deployment owns
    /// (a lost database, a torn-down deployment's leftovers); --delete removes them.
    Orphans(crate::cli::OrphansArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on. Any address but loopback (127.0.0.1, ::1)
    /// needs an access token: CLOUDPULSE_TOKEN or --token-file.
    #[arg(long, env = "CLOUDPULSE_BIND", default_value = "127.0.0.1:3000")]
    pub bind: String,

    /// A name (with an optional :port) the portal answers to besides
    /// 127.0.0.1, localhost and [::1] on its own port and the bound
    /// address, such as the name of a proxy in front of it; repeatable, or
    /// comma-separated in the variable. Any other Host is answered 421.
    #[arg(long = "allowed-host", env = "CLOUDPULSE_ALLOWED_HOSTS", value_delimiter = ',',
          value_parser = crate::security::parse_allowed_host)]
    pub allowed_hosts: Vec<String>,

    /// File holding the access token, instead of CLOUDPULSE_TOKEN. With a
    /// token set, every request but /healthz needs it, even on loopback.
    #[arg(long, env = "CLOUDPULSE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// SQLite database file [default: cloudpulse.db, or cloudpulse-sandbox.db in the sandbox].
    #[arg(long, env = "CLOUDPULSE_DATABASE")]
    pub database: Option<PathBuf>,

    /// Log filter, e.g. `info` or `cloudpulse_server=debug,info`.
    #[arg(long, env = "CLOUDPULSE_LOG", default_value = "info")]
    pub log: String,

    /// Folder holding the browser bundle (`pkg/cloudpulse.js`, `pkg/cloudpulse_bg.wasm`).
    #[arg(long, env = "CLOUDPULSE_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,

    /// Seconds between checks that the cloud is reachable.
    #[arg(long, env = "CLOUDPULSE_CLOUD_CHECK_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub cloud_check_secs: u64,

    /// The cloudpulse-instance binary deployments install on their instances
    /// [default: cloudpulse-instance beside this program].
    #[arg(long, env = "CLOUDPULSE_INSTANCE_BINARY")]
    pub instance_binary: Option<PathBuf>,

    /// Steps of one job that may run at once.
    #[arg(long, env = "CLOUDPULSE_CONCURRENCY", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Seconds to wait before resuming jobs a killed portal left running, so
    /// that requests it had in flight finish in AWS before the resumed steps
    /// look for what they made.
    #[arg(long, env = "CLOUDPULSE_RESUME_SETTLE_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=600))]
    pub resume_settle_secs: u64,

    /// Seconds between two telemetry polls of a live deployment (four AWS
    /// calls each; metrics are read once a minute whatever this says, so
    /// the default keeps a deployment at 9 calls a minute, within 12); in
    /// the sandbox multiplied by the time scale.
    #[arg(long, env = "CLOUDPULSE_POLL_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub poll_secs: u64,

    /// Seconds between two probes of a live deployment's app URL; in the
    /// sandbox multiplied by the time scale.
    #[arg(long, env = "CLOUDPULSE_PROBE_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub probe_secs: u64,

    /// Deployments that may stand at once (deploying, live or failed);
    /// more are refused with 429 until one is torn down.
    #[arg(long, env = "CLOUDPULSE_MAX_LIVE", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_live: u32,

    /// Deploys that create resources at once; more wait in turn, and their
    /// job and page say so. Teardowns never wait.
    #[arg(long, env = "CLOUDPULSE_MAX_CONCURRENT_DEPLOYS",
          default_value_t = cloudpulse_engine::DEFAULT_MAX_CONCURRENT_DEPLOYS as u16,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrent_deploys: u16,

    /// Hours a browser session lasts after its last use, when a token is
    /// set; logout ends it at once.
    #[arg(long, env = "CLOUDPULSE_SESSION_HOURS", default_value_t = 12,
          value_parser = clap::value_parser!(u64).range(1..=720))]
    pub session_hours: u64,

    /// Seconds a client may take to send a request's header, also while a
    /// kept-alive connection sits idle; slower ones are disconnected.
    #[arg(long, env = "CLOUDPULSE_HEADER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub header_timeout_secs: u64,

    /// Seconds a request (but an event stream) may take before it is
    /// answered 504; most of that is waiting on AWS.
    #[arg(long, env = "CLOUDPULSE_REQUEST_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout_secs: u64,

    /// Connections served at once; more wait until one closes.
    #[arg(long, env = "CLOUDPULSE_MAX_CONNECTIONS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub max_connections: u32,

    /// Minutes without requests (beyond the portal's own probes) after which
    /// a live deployment is flagged idle on the list; in the sandbox
    /// multiplied by the time scale.
    #[arg(long, env = "CLOUDPULSE_IDLE_MINUTES", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=10080))]
    pub idle_minutes: u64,

    /// Minutes between two full drift checks of each live deployment (the
    /// group's size and bounds are compared on every poll); in the sandbox
    /// on its clock, like the TTL. `POST /api/v1/deployments/{id}/drift`
    /// checks at once.
    #[arg(long, env = "CLOUDPULSE_DRIFT_MINUTES", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=1440))]
    pub drift_minutes: u64,
}

impl ServeArgs {
    /// The telemetry's cadence on a clock `time_scale` times AWS's (1 on
    /// AWS), never faster than twice a second.
    pub fn telemetry(&self, time_scale: f64) -> cloudpulse_telemetry::TelemetryConfig {
        let scaled = |secs: u64| {
            std::time::Duration::from_secs(secs)
                .mul_f64(time_scale)
                .max(std::time::Duration::from_millis(500))
        };
        cloudpulse_telemetry::TelemetryConfig {
            poll: scaled(self.poll_secs),
            probe: scaled(self.probe_secs),
            metric_period: cloudpulse_telemetry::metrics::period_for(time_scale),
            time_scale,
            // The guard looks at least once a (sandbox) minute's twelfth.
            budget_tick: scaled(5).min(std::time::Duration::from_secs(5)),
            warn_before: std::time::Duration::from_secs(15 * 60).mul_f64(time_scale),
            idle_after: scaled(self.idle_minutes * 60),
            drift: scaled(self.drift_minutes * 60),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct SandboxArgs {
    #[command(flatten)]
    pub serve: ServeArgs,

    /// Python interpreter with moto[server] installed [default: the project's .venv].
    #[arg(long, env = "CLOUDPULSE_MOTO_PYTHON")]
    pub moto_python: Option<PathBuf>,

    /// Port for moto [default: a free one].
    #[arg(long, env = "CLOUDPULSE_MOTO_PORT")]
    pub moto_port: Option<u16>,

    /// AWS's waits and refusals: pending times, propagation, lingering
    /// interfaces, `--instant` (see `sandbox_flags.rs`).
    #[command(flatten)]
    pub strict: crate::sandbox_flags::StrictArgs,

    /// Multiplies every interval of the sandbox (health checks, grace
    /// periods, instance drain, metric periods, cooldowns, pending times,
    /// every figure of the strict behaviours): 0.1 runs ten times faster
    /// than AWS.
    #[arg(long, env = "CLOUDPULSE_TIME_SCALE", default_value_t = 1.0, value_parser = time_scale)]
    pub time_scale: f64,
}

fn time_scale(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(scale) if scale.is_finite() && scale > 0.0 && scale <= 10.0 => Ok(scale),
        _ => Err(format!(
            "{text:?} is not a time scale; use a number above 0 and at most 10 (1 is AWS's pace, 0.1 ten times faster)"
        )),
    }
}

impl SandboxArgs {
    /// Where the data plane keeps instance logs and its port book: beside
    /// the database, so two sandboxes with two databases never share one.
    pub fn data_plane_dir(&self) -> PathBuf {
        self.beside_database("dataplane")
    }

    /// Where moto's state is kept between runs: beside the database, so
    /// that the two always belong together.
    pub fn moto_state_dir(&self) -> PathBuf {
        self.beside_database("moto")
    }

    /// `<database stem>-<suffix>` in the database's folder.
    fn beside_database(&self, suffix: &str) -> PathBuf {
        let db = self.serve.database_or("cloudpulse-sandbox.db");
        let stem = db
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cloudpulse-sandbox".into());
        db.with_file_name(format!("{stem}-{suffix}"))
    }
}

/// Where the portal listens and the token that guards it, if any.
#[derive(Debug)]
pub struct Listen {
    pub addr: SocketAddr,
    pub token: Option<AccessToken>,
}

impl ServeArgs {
    /// The address to bind and the access token. Loopback is open unless a
    /// token is set; any other address needs one, because the portal holds
    /// the power to create and delete cloud resources.
    pub fn listen(&self) -> anyhow::Result<Listen> {
        self.listen_with(std::env::var_os(TOKEN_ENV))
    }

    /// [`Self::listen`] with the value of `CLOUDPULSE_TOKEN` given, for tests.
    pub fn listen_with(&self, env_token: Option<OsString>) -> anyhow::Result<Listen> {
        let addr: SocketAddr = self.bind.parse().with_context(|| {
            format!(
                "invalid --bind {:?}: expected IP:PORT, for example 127.0.0.1:3000",
                self.bind
            )
        })?;
        let token = self.access_token(env_token.filter(|value| !value.is_empty()))?;
        if token.is_none() && !addr.ip().is_loopback() {
            bail!(
                "refusing to serve on {addr} without an access token: the portal can create and \
                 delete cloud resources, so beyond loopback it needs {TOKEN_ENV} (or --token-file) \
                 holding 32 random bytes; {MAKE_ONE}, or bind a loopback address such as 127.0.0.1:{}",
                addr.port()
            );
        }
        Ok(Listen { addr, token })
    }

    fn access_token(&self, env_token: Option<OsString>) -> anyhow::Result<Option<AccessToken>> {
        let (text, source) = match (env_token, &self.token_file) {
            (Some(_), Some(_)) => {
                bail!("both {TOKEN_ENV} and --token-file are set; keep one of them")
            }
            (None, None) => return Ok(None),
            (Some(value), None) => (value, TOKEN_ENV.to_string()),
            (None, Some(path)) => {
                let bytes = std::fs::read(path).with_context(|| {
                    format!(
                        "cannot read --token-file {}; write the token there, {MAKE_ONE}",
                        path.display()
                    )
                })?;
                let text = OsString::from(String::from_utf8_lossy(&bytes).into_owned());
                (text, format!("the token in {}", path.display()))
            }
        };
        let Some(text) = text.to_str() else {
            bail!("{source} is not valid UTF-8 text; {MAKE_ONE}");
        };
        let token = AccessToken::parse(text)
            .map_err(|why| anyhow::anyhow!("{source} is too weak: {why}; {MAKE_ONE}"))?;
        Ok(Some(token))
    }

    /// The instance binary to ship: the flag, or the one beside this program.
    pub fn instance_binary(&self) -> PathBuf {
        self.instance_binary.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join("cloudpulse-instance")))
                .unwrap_or_else(|| PathBuf::from("cloudpulse-instance"))
        })
    }

    pub fn database_or(&self, default: &str) -> PathBuf {
        self.database
            .clone()
            .unwrap_or_else(|| PathBuf::from(default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(bind: &str) -> ServeArgs {
        ServeArgs {
            bind: bind.into(),
            allowed_hosts: Vec::new(),
            token_file: None,
            database: None,
            log: "info".into(),
            site_root: "target/site".into(),
            cloud_check_secs: 30,
            instance_binary: None,
            concurrency: 8,
            resume_settle_secs: 5,
            poll_secs: 10,
            probe_secs: 10,
            idle_minutes: 60,
            drift_minutes: 5,
            max_live: 20,
            max_concurrent_deploys: 4,
            session_hours: 12,
            header_timeout_secs: 10,
            request_timeout_secs: 60,
            max_connections: 256,
        }
    }

    #[test]
    fn telemetry_follows_the_sandbox_clock_but_not_below_half_a_second() {
        let aws = args("127.0.0.1:0").telemetry(1.0);
        assert_eq!(aws.poll, std::time::Duration::from_secs(10));
        assert_eq!(aws.metric_period, 60);
        let fast = args("127.0.0.1:0").telemetry(0.1);
        assert_eq!(fast.poll, std::time::Duration::from_secs(1));
        assert_eq!(fast.metric_period, 5);
        let fastest = args("127.0.0.1:0").telemetry(0.01);
        assert_eq!(fastest.probe, std::time::Duration::from_millis(500));
    }

    const GOOD: &str = "q3Zb0x9Vt7yR2mKcW5pLhN8sJfD4aE1uGoXiT6vYzQk=";

    #[test]
    fn loopback_binds_are_open_without_a_token() {
        let listen = args("127.0.0.1:0").listen_with(None).unwrap();
        assert_eq!(listen.addr.port(), 0);
        assert!(listen.token.is_none());
        assert!(args("[::1]:3000").listen_with(None).is_ok());
        assert!(args("127.0.0.1:0")
            .listen_with(Some("".into()))
            .unwrap()
            .token
            .is_none());
    }

    #[test]
    fn a_token_on_loopback_is_enforced_too() {
        let listen = args("127.0.0.1:0").listen_with(Some(GOOD.into())).unwrap();
        assert!(listen.token.is_some());
        let err = args("127.0.0.1:0")
            .listen_with(Some("hunter2".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("CLOUDPULSE_TOKEN is too weak"), "{err}");
    }

    #[test]
    fn other_addresses_need_a_strong_token() {
        let err = args("0.0.0.0:3000")
            .listen_with(None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("without an access token"), "{err}");
        assert!(err.contains("openssl rand -base64 32"), "{err}");
        assert!(err.contains("loopback"), "{err}");
        let err = args("0.0.0.0:3000")
            .listen_with(Some("x".repeat(64).into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("too weak"), "{err}");
        assert!(
            !err.contains(&"x".repeat(64)),
            "the token is never echoed: {err}"
        );
        let listen = args("0.0.0.0:3000").listen_with(Some(GOOD.into())).unwrap();
        assert!(listen.token.is_some());
    }

    #[test]
    fn the_token_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, format!("{GOOD}\n")).unwrap();
        let mut with_file = args("0.0.0.0:0");
        with_file.token_file = Some(file.clone());
        assert!(with_file.listen_with(None).unwrap().token.is_some());
        let err = with_file
            .listen_with(Some(GOOD.into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("keep one"), "{err}");
        std::fs::write(&file, "short\n").unwrap();
        let err = with_file.listen_with(None).unwrap_err().to_string();
        assert!(err.contains("is too weak"), "{err}");
        with_file.token_file = Some(dir.path().join("missing"));
        let err = with_file.listen_with(None).unwrap_err().to_string();
        assert!(err.contains("cannot read --token-file"), "{err}");
    }

    #[test]
    fn bad_binds_say_what_to_fix() {
        let err = args("localhost").listen_with(None).unwrap_err().to_string();
        assert!(err.contains("expected IP:PORT"), "{err}");
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
