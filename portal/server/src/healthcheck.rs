//! `cloudpulse healthcheck [URL]`: exit 0 if the portal answers `/healthz`
//! with 200, 1 otherwise, with one line saying which.
//!
//! The container image has no shell and no curl, so its HEALTHCHECK runs the
//! portal's own binary. Without a URL it asks the address the portal itself
//! binds (`CLOUDPULSE_BIND`, default 127.0.0.1:3000), with a wildcard
//! address (0.0.0.0, ::) replaced by loopback. `/healthz` needs no token.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

/// The first argument that selects this command.
pub const COMMAND: &str = "healthcheck";

/// Docker stops waiting after its own timeout; answer well before it.
const TIMEOUT: Duration = Duration::from_secs(3);

pub async fn run(mut args: impl Iterator<Item = String>) -> ExitCode {
    let url = match (args.next(), args.next()) {
        (None, _) => default_url(std::env::var("CLOUDPULSE_BIND").ok().as_deref()),
        (Some(url), None) if !url.starts_with('-') => url,
        _ => {
            eprintln!("usage: cloudpulse healthcheck [URL of /healthz]");
            return ExitCode::from(2);
        }
    };
    match check(&url).await {
        Ok(()) => {
            println!("healthy: {url} answered 200");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("unhealthy: {url}: {reason}");
            ExitCode::FAILURE
        }
    }
}

async fn check(url: &str) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        let body = response.text().await.unwrap_or_default();
        Err(format!("{status}: {}", body.trim()))
    }
}

/// `/healthz` on the address the portal binds, reachable from this host.
fn default_url(bind: Option<&str>) -> String {
    let bind = bind.unwrap_or("127.0.0.1:3000");
    match bind.parse::<SocketAddr>() {
        Ok(mut addr) => {
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr.ip() {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                });
            }
            format!("http://{addr}/healthz")
        }
        // The portal refuses such a bind anyway; let the request say why.
        Err(_) => format!("http://{bind}/healthz"),
    }
}

#[cfg(test)]
mod tests {
    use super::default_url;

    #[test]
    fn wildcard_binds_are_asked_on_loopback() {
        assert_eq!(default_url(None), "http://127.0.0.1:3000/healthz");
        assert_eq!(
            default_url(Some("0.0.0.0:8080")),
            "http://127.0.0.1:8080/healthz"
        );
        assert_eq!(default_url(Some("[::]:3000")), "http://[::1]:3000/healthz");
        assert_eq!(
            default_url(Some("192.0.2.7:3000")),
            "http://192.0.2.7:3000/healthz"
        );
    }
}
