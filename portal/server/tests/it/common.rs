//! Starting the real `cloudpulse` binary as a process on a free port.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_cloudpulse");

/// A portal process; killed on drop.
pub struct Portal {
    pub child: Child,
    pub url: String,
    /// A sandbox's AWS endpoint, as it said at start.
    pub aws_endpoint: Option<String>,
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An environment that can only ever reach loopback.
pub fn isolated(command: &mut Command, dir: &Path) {
    command
        .env_remove("AWS_PROFILE")
        .env_remove("CLOUDPULSE_TOKEN")
        .env_remove("CLOUDPULSE_TOKEN_FILE")
        // The sandbox's operator identity: IAM is enforced there, and it
        // holds the operator policy, as the portal's keys do on AWS.
        .env("AWS_ACCESS_KEY_ID", cloudpulse_sandbox::iam::OPERATOR_KEY.0)
        .env(
            "AWS_SECRET_ACCESS_KEY",
            cloudpulse_sandbox::iam::OPERATOR_KEY.1,
        )
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env("CLOUDPULSE_LOG", "warn");
}

pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `cloudpulse <command>` on a free loopback port with its database at `db`,
/// then `more`: the arguments most portals here start with.
pub fn on_free_port<'a>(command: &'a str, db: &'a Path, more: &[&'a str]) -> Vec<&'a str> {
    let database = db.to_str().unwrap();
    [
        &[command, "--bind", "127.0.0.1:0", "--database", database][..],
        more,
    ]
    .concat()
}

pub fn start(args: &[&str], dir: &Path, extra_env: &[(&str, String)]) -> Portal {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    isolated(&mut command, dir);
    for (key, value) in extra_env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("spawn cloudpulse");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut aws_endpoint = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("The sandbox's AWS API is at ") {
                aws_endpoint = rest.split(' ').next().map(str::to_string);
            }
            if let Some(url) = line.strip_prefix("CloudPulse is listening on ") {
                let _ = tx.send((url.to_string(), aws_endpoint.clone()));
            }
        }
    });
    let (url, aws_endpoint) = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("the portal did not say where it listens");
    Portal {
        child,
        url,
        aws_endpoint,
    }
}

/// A portal against AWS whose endpoint refuses every connection, on a free
/// loopback port (unless `env` names another), with `args` added; and that
/// port.
pub fn serve(dir: &Path, args: &[&str], env: &[(&str, String)]) -> (Portal, u16) {
    let db = dir.join("portal.db");
    let mut env = env.to_vec();
    if !env.iter().any(|(name, _)| *name == "AWS_ENDPOINT_URL") {
        env.push((
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", closed_port()),
        ));
    }
    let portal = start(&on_free_port("serve", &db, args), dir, &env);
    let port = port_of(&portal);
    (portal, port)
}

pub fn port_of(portal: &Portal) -> u16 {
    portal.url.rsplit(':').next().unwrap().parse().unwrap()
}

/// A sandbox portal on `dir/database`. Its instances run the real
/// `cloudpulse-instance` built beside the portal binary, with every sandbox
/// interval at a fifth of AWS's, and the strict behaviours on with short
/// figures (a NAT gateway or load balancer pending 2 s, an instance booting
/// 1 s, interfaces lingering 2 s), so that every deploy meets them without
/// each test waiting AWS's minutes.
pub fn sandbox_at_a_fifth(dir: &Path, database: &str) -> Portal {
    sandbox_at_a_fifth_with(dir, database, &[])
}

/// [`sandbox_at_a_fifth`] with more of the portal's environment.
pub fn sandbox_at_a_fifth_with(dir: &Path, database: &str, env: &[(&str, String)]) -> Portal {
    let db = dir.join(database);
    start(
        &on_free_port(
            "sandbox",
            &db,
            &[
                "--time-scale",
                "0.2",
                "--nat-pending-secs",
                "10",
                "--alb-provisioning-secs",
                "10",
                "--instance-boot-secs",
                "5",
                "--nat-deleting-secs",
                "5",
                "--eni-linger-secs",
                "10",
                "--ssm-registration-secs",
                "5",
            ],
        ),
        dir,
        env,
    )
}

/// POSTs `body` (none when `Value::Null`) and returns the status and JSON answer.
pub async fn post_json(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let mut request = client.post(url);
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// POSTs a deploy with `body`, expects it accepted, and returns
/// (deployment id, job id).
pub async fn deploy(url: &str, body: Value) -> (String, String) {
    let client = reqwest::Client::new();
    let (status, accepted) = post_json(&client, &format!("{url}/api/v1/deployments"), body).await;
    assert_eq!(status, 202, "not accepted: {accepted}");
    let id = |part: &str| accepted[part]["id"].as_str().unwrap().to_string();
    (id("deployment"), id("job"))
}

pub fn run_to_end(args: &[&str], dir: &Path) -> Output {
    let mut command = Command::new(BIN);
    command.args(args);
    isolated(&mut command, dir);
    command.output().expect("run cloudpulse")
}

pub fn one_line_error(output: &Output) -> String {
    assert!(!output.status.success(), "expected failure: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<_> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected, got: {stderr}");
    errors[0].to_string()
}

pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Polls a job until it finishes (two minutes at most) and returns it.
pub async fn wait_job(client: &reqwest::Client, url: &str, job: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job: Value = client
            .get(format!("{url}/api/v1/jobs/{job}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ["done", "failed", "cancelled"].contains(&job["status"].as_str().unwrap()) {
            return job;
        }
        assert!(Instant::now() < deadline, "job did not finish: {job}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asks for the teardown of `deployment`, expects it accepted, and returns
/// its job once finished.
pub async fn tear_down(client: &reqwest::Client, url: &str, deployment: &str) -> Value {
    let (status, accepted) = post_json(
        client,
        &format!("{url}/api/v1/deployments/{deployment}/teardown"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    wait_job(client, url, accepted["job"]["id"].as_str().unwrap()).await
}

/// The step `key` of a job as the API shows it.
pub fn step<'a>(job: &'a Value, key: &str) -> &'a Value {
    job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no step {key}: {job}"))
}

/// A teardown that finished, and whose last look found nothing left.
pub fn assert_nothing_remains(teardown: &Value) {
    assert_eq!(teardown["status"], "done", "{teardown}");
    let verify = step(teardown, "verify");
    assert_eq!(
        verify["outputs"]["remaining"],
        serde_json::json!([]),
        "{verify}"
    );
}

/// `cloudpulse ARGS` against `url`; (success, stdout, stderr).
pub fn cli(dir: &std::path::Path, url: &str, args: &[&str]) -> (bool, String, String) {
    let mut command = std::process::Command::new(BIN);
    command.args(args).env("CLOUDPULSE_URL", url);
    isolated(&mut command, dir);
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The group's instances as the portal reads them: (id, type), sorted.
pub async fn instances_of(url: &str, deployment: &str) -> Vec<(String, String)> {
    let (_, health) = get_json(&format!("{url}/api/v1/deployments/{deployment}/health")).await;
    let mut found: Vec<(String, String)> = health["group"]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["instance_type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    found.sort();
    found
}
