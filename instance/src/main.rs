//! Starts the service: configuration from the environment and the env file,
//! then serve until SIGTERM. Exit code 1 on a configuration or start-up error.

use std::io::IsTerminal;
use std::process::ExitCode;

use cloudpulse_instance::chaos;
use cloudpulse_instance::config::{Config, Vars};
use cloudpulse_instance::Application;

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let args: Vec<String> = std::env::args().skip(1).collect();
    match chaos::parse(&args) {
        Ok(Some(command)) => return run_chaos(command),
        Ok(None) if args.is_empty() => {}
        Ok(None) => {
            eprintln!(
                "unknown command {:?}; run with no arguments to serve, or use `stress --seconds N` or `fail-health --seconds N`",
                args[0]
            );
            return ExitCode::from(2);
        }
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    }

    let config = match Vars::from_process().and_then(|vars| Config::from_vars(&vars)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("Configuration error: {error}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let app = Application::build(config).await?;
        tracing::info!("listening on {}", app.local_addr()?);
        app.run().await
    });
    // In-flight work cut off by the drain deadline must not hold up exit.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cloudpulse-instance: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs `stress` or `fail-health` (see `cloudpulse_instance::chaos`).
fn run_chaos(command: chaos::Command) -> ExitCode {
    match command {
        chaos::Command::Stress { seconds, workers } => {
            let workers = workers.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            eprintln!("stressing {workers} CPU(s) for {seconds} s");
            chaos::stress(seconds, workers);
            ExitCode::SUCCESS
        }
        chaos::Command::FailHealth { seconds } => {
            let dir = match Vars::from_process() {
                Ok(vars) => chaos::control_dir(&vars),
                Err(error) => {
                    eprintln!("Configuration error: {error}");
                    return ExitCode::from(1);
                }
            };
            match chaos::fail_health(&dir, seconds) {
                Ok(()) => {
                    eprintln!("health checks fail for {seconds} s (see {})", dir.display());
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!(
                        "cannot write to the control directory {}: {error}",
                        dir.display()
                    );
                    ExitCode::from(1)
                }
            }
        }
    }
}
