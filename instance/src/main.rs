//! Starts the service: configuration from the environment and the env file,
//! then serve until SIGTERM. Exit code 1 on a configuration or start-up error.

use std::io::IsTerminal;
use std::process::ExitCode;

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
