//! Command-line flags, each with an environment variable as fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

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
    /// Show deployments, or one deployment and its current job.
    Status(crate::cli::StatusArgs),
    /// List resources tagged by CloudPulse that no tracked deployment owns
    /// (a lost database, a torn-down deployment's leftovers); --delete removes them.
    Orphans(crate::cli::OrphansArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on. Only loopback addresses are served.
    #[arg(long, env = "CLOUDPULSE_BIND", default_value = "127.0.0.1:3000")]
    pub bind: String,

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

    /// Seconds a new NAT gateway stays `pending`, as on AWS (moto: none).
    #[arg(long, env = "CLOUDPULSE_NAT_PENDING_SECS", default_value_t = 0)]
    pub nat_pending_secs: u64,

    /// Seconds a new load balancer stays `provisioning`, as on AWS (moto: none).
    #[arg(long, env = "CLOUDPULSE_ALB_PROVISIONING_SECS", default_value_t = 0)]
    pub alb_provisioning_secs: u64,
}

impl ServeArgs {
    /// The address to bind, refusing anything but loopback: the portal holds
    /// the power to create and delete cloud resources.
    pub fn bind_addr(&self) -> anyhow::Result<SocketAddr> {
        let addr: SocketAddr = self.bind.parse().with_context(|| {
            format!(
                "invalid --bind {:?}: expected IP:PORT, for example 127.0.0.1:3000",
                self.bind
            )
        })?;
        if !addr.ip().is_loopback() {
            bail!(
                "refusing to serve on {addr}: the portal can create and delete cloud resources, \
                 so it only listens on loopback addresses such as 127.0.0.1:{}",
                addr.port()
            );
        }
        Ok(addr)
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
            database: None,
            log: "info".into(),
            site_root: "target/site".into(),
            cloud_check_secs: 30,
            instance_binary: None,
            concurrency: 8,
            resume_settle_secs: 5,
        }
    }

    #[test]
    fn loopback_binds_are_accepted() {
        assert_eq!(args("127.0.0.1:0").bind_addr().unwrap().port(), 0);
        assert!(args("[::1]:3000").bind_addr().is_ok());
    }

    #[test]
    fn bad_binds_say_what_to_fix() {
        let err = args("localhost").bind_addr().unwrap_err().to_string();
        assert!(err.contains("expected IP:PORT"), "{err}");
        let err = args("0.0.0.0:3000").bind_addr().unwrap_err().to_string();
        assert!(err.contains("only listens on loopback"), "{err}");
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
