//! The `cloudpulse` command. All the work happens in the library; this only
//! turns an error into one line and an exit code.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cloudpulse_server::config::Cli::parse();
    match cloudpulse_server::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
