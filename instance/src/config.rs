//! Configuration: the original app's environment variables and defaults, plus
//! an env file written by the user data.
//!
//! Unlike the original, a value that is set but not a number is an error, not
//! a silent fallback to the default: a typo in `PORT` should stop the service
//! at start, where systemd shows it, not make it listen somewhere unexpected.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the user data writes the service's settings.
pub const DEFAULT_ENV_FILE: &str = "/etc/cloudpulse/instance.env";
/// Names the env file to read instead of [`DEFAULT_ENV_FILE`].
pub const ENV_FILE_VAR: &str = "CLOUDPULSE_ENV_FILE";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("Missing required environment variable: {0}")]
    Missing(&'static str),
    #[error("{name} must be {expected}, got {value:?}")]
    Invalid {
        name: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("cannot read env file {path}: {reason}")]
    EnvFile { path: PathBuf, reason: String },
    #[error("{path}:{line}: expected KEY=VALUE")]
    EnvFileSyntax { path: PathBuf, line: usize },
}

#[derive(Clone, Debug)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub region: String,
    pub asg_name: String,
    pub metrics_namespace: String,
    pub metrics_interval: Duration,
    pub dashboard_refresh: Duration,
    pub health_check_timeout: Duration,
    pub retry_max_attempts: u32,
    pub retry_base_delay: Duration,
    /// After SIGTERM, how long the listener keeps accepting (with `/health`
    /// answering 503) so the load balancer sees the drain.
    pub drain_grace: Duration,
    /// After SIGTERM, the longest the process lives.
    pub drain_timeout: Duration,
    /// Bound on every AWS call, retries included.
    pub aws_timeout: Duration,
    /// How long AWS answers are reused; below the dashboard refresh.
    pub aws_cache_ttl: Duration,
    pub request_timeout: Duration,
    /// Override for every AWS endpoint (moto in tests); `AWS_ENDPOINT_URL`.
    pub aws_endpoint_url: Option<String>,
    /// IMDS base address; `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub imds_endpoint: Option<String>,
    /// Drain and exit when the parent process goes away; `EXIT_WITH_PARENT`.
    /// The sandbox sets it, so a portal killed outright leaves no instance
    /// process behind (on EC2 systemd is the parent and never goes).
    pub exit_with_parent: bool,
    /// Where chaos commands leave word for the service (see [`crate::chaos`]).
    pub control_dir: std::path::PathBuf,
}

/// The merged environment: real variables over the env file's.
#[derive(Debug, Default)]
pub struct Vars(HashMap<String, String>);

impl Vars {
    /// Reads the env file named by `CLOUDPULSE_ENV_FILE` (or the default,
    /// which may be absent) under the process environment.
    pub fn from_process() -> Result<Self, ConfigError> {
        let real: HashMap<String, String> = std::env::vars().collect();
        let (path, explicit) = match real.get(ENV_FILE_VAR) {
            Some(path) if !path.is_empty() => (PathBuf::from(path), true),
            _ => (PathBuf::from(DEFAULT_ENV_FILE), false),
        };
        let mut merged = match std::fs::read_to_string(&path) {
            Ok(text) => parse_env_file(&path, &text)?,
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => {
                return Err(ConfigError::EnvFile {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        merged.extend(real);
        Ok(Vars(merged))
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Vars(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// A set, non-empty value (the original treats empty as unset).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

/// Parses `KEY=VALUE` lines: `#` comments, blank lines, an optional `export `
/// prefix and one level of single or double quotes.
pub fn parse_env_file(path: &Path, text: &str) -> Result<HashMap<String, String>, ConfigError> {
    let mut vars = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfigError::EnvFileSyntax {
                path: path.to_path_buf(),
                line: index + 1,
            });
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ConfigError::EnvFileSyntax {
                path: path.to_path_buf(),
                line: index + 1,
            });
        }
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| {
                value
                    .strip_prefix(*q)
                    .and_then(|v| v.strip_suffix(*q))
                    .filter(|_| value.len() >= 2)
            })
            .unwrap_or(value);
        vars.insert(key.to_string(), unquoted.to_string());
    }
    Ok(vars)
}

impl Config {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let asg_name = vars
            .get("ASG_NAME")
            .ok_or(ConfigError::Missing("ASG_NAME"))?
            .to_string();
        let host = match vars.get("HOST") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(raw) => raw.parse().map_err(|_| ConfigError::Invalid {
                name: "HOST",
                expected: "an IP address to listen on",
                value: raw.to_string(),
            })?,
        };
        let port = match vars.get("PORT") {
            None => 3000,
            Some(raw) => raw.parse::<u16>().map_err(|_| ConfigError::Invalid {
                name: "PORT",
                expected: "a port number (0-65535)",
                value: raw.to_string(),
            })?,
        };
        let dashboard_refresh = millis(vars, "DASHBOARD_REFRESH_MS", 30_000, 1_000)?;
        // Half the refresh, at most five seconds: a page refresh sees new
        // data, and a load test costs at most one AWS call per five seconds.
        let default_ttl = (dashboard_refresh.as_millis() as u64 / 2).min(5_000);
        Ok(Config {
            host,
            port,
            region: vars.get("AWS_REGION").unwrap_or("us-east-1").to_string(),
            asg_name,
            metrics_namespace: vars
                .get("METRICS_NAMESPACE")
                .unwrap_or("CloudPulse")
                .to_string(),
            metrics_interval: millis(vars, "METRICS_INTERVAL_MS", 60_000, 100)?,
            dashboard_refresh,
            health_check_timeout: millis(vars, "HEALTH_CHECK_TIMEOUT_MS", 5_000, 1)?,
            retry_max_attempts: number(vars, "RETRY_MAX_ATTEMPTS", 3, 0)? as u32,
            retry_base_delay: millis(vars, "RETRY_BASE_DELAY_MS", 1_000, 0)?,
            drain_grace: millis(vars, "DRAIN_GRACE_MS", 2_000, 0)?,
            drain_timeout: millis(vars, "DRAIN_TIMEOUT_MS", 10_000, 0)?,
            aws_timeout: millis(vars, "AWS_TIMEOUT_MS", 3_000, 1)?,
            aws_cache_ttl: millis(vars, "AWS_CACHE_TTL_MS", default_ttl, 0)?,
            request_timeout: millis(vars, "REQUEST_TIMEOUT_MS", 10_000, 1)?,
            aws_endpoint_url: vars.get("AWS_ENDPOINT_URL").map(str::to_string),
            imds_endpoint: vars
                .get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                .map(str::to_string),
            exit_with_parent: flag(vars, "EXIT_WITH_PARENT")?,
            control_dir: crate::chaos::control_dir(vars),
        })
    }
}

/// Off unless set: `1`/`true` turn it on, `0`/`false` off, anything else is
/// an error.
fn flag(vars: &Vars, name: &'static str) -> Result<bool, ConfigError> {
    match vars.get(name) {
        None => Ok(false),
        Some("1" | "true") => Ok(true),
        Some("0" | "false") => Ok(false),
        Some(other) => Err(ConfigError::Invalid {
            name,
            expected: "1, true, 0 or false",
            value: other.to_string(),
        }),
    }
}

fn number(vars: &Vars, name: &'static str, default: u64, min: u64) -> Result<u64, ConfigError> {
    let Some(raw) = vars.get(name) else {
        return Ok(default);
    };
    match raw.parse::<u64>() {
        Ok(value) if value >= min && value <= u32::MAX as u64 => Ok(value),
        _ => Err(ConfigError::Invalid {
            name,
            expected: if min == 0 {
                "a whole number"
            } else {
                "a whole number above its minimum"
            },
            value: raw.to_string(),
        }),
    }
}

fn millis(
    vars: &Vars,
    name: &'static str,
    default: u64,
    min: u64,
) -> Result<Duration, ConfigError> {
    number(vars, name, default, min).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_original() {
        let config = Config::from_vars(&Vars::from_pairs([("ASG_NAME", "g")])).unwrap();
        assert_eq!(config.port, 3000);
        assert_eq!(config.region, "us-east-1");
        assert_eq!(config.metrics_namespace, "CloudPulse");
        assert_eq!(config.metrics_interval, Duration::from_secs(60));
        assert_eq!(config.dashboard_refresh, Duration::from_secs(30));
        assert_eq!(config.health_check_timeout, Duration::from_secs(5));
        assert_eq!(config.retry_max_attempts, 3);
        assert_eq!(config.retry_base_delay, Duration::from_secs(1));
        assert_eq!(config.host.to_string(), "0.0.0.0");
        assert!(config.aws_cache_ttl < config.dashboard_refresh);
    }

    #[test]
    fn missing_asg_name_is_an_error() {
        let err = Config::from_vars(&Vars::from_pairs([("ASG_NAME", " ")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Missing required environment variable: ASG_NAME"
        );
    }

    #[test]
    fn bad_numbers_are_errors_not_defaults() {
        for (name, value) in [
            ("EXIT_WITH_PARENT", "yes"),
            ("PORT", "abc"),
            ("PORT", "70000"),
            ("METRICS_INTERVAL_MS", "-1"),
            ("RETRY_MAX_ATTEMPTS", "1.5"),
            ("DASHBOARD_REFRESH_MS", "10"),
        ] {
            let err = Config::from_vars(&Vars::from_pairs([("ASG_NAME", "g"), (name, value)]))
                .unwrap_err();
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }

    #[test]
    fn env_file_syntax() {
        let path = Path::new("x.env");
        let vars = parse_env_file(
            path,
            "# comment\n\nexport ASG_NAME=\"my-asg\"\nPORT = 8080\nEMPTY=\nQ='a=b'\n",
        )
        .unwrap();
        assert_eq!(vars["ASG_NAME"], "my-asg");
        assert_eq!(vars["PORT"], "8080");
        assert_eq!(vars["EMPTY"], "");
        assert_eq!(vars["Q"], "a=b");
        assert_eq!(
            parse_env_file(path, "ok=1\nnot a pair\n").unwrap_err(),
            ConfigError::EnvFileSyntax {
                path: path.to_path_buf(),
                line: 2
            }
        );
    }
}
