//! The `cloudpulse` command. All the work happens in the library; this only
//! turns an error into one line and an exit code, and answers the container
//! image's health check (`healthcheck.rs`).

use std::process::ExitCode;

use clap::Parser;

mod healthcheck;

#[tokio::main]
async fn main() -> ExitCode {
    // Before the flags: the container's health probe, not a portal command.
    if std::env::args().nth(1).as_deref() == Some(healthcheck::COMMAND) {
        return healthcheck::run(std::env::args().skip(2)).await;
    }
    let cli = cloudpulse_server::config::Cli::parse();
    match cloudpulse_server::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
