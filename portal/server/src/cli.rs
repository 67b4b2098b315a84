//! `cloudpulse deploy | teardown | status | preflight | orphans`: a client of a running portal's
//! REST API, so the command line and the browser drive the same code
//! (`plan` and `apply` are in [`crate::cli_change`]).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use cloudpulse_app::model::{
    DeploymentDetail, DeploymentSummary, JobView, OrphanCleanup, OrphanReason, OrphanScan, Page,
    Preflight, StepStatus, StepView,
};
use cloudpulse_app::params::{DeploymentParams, NatMode};
use cloudpulse_app::pricing;
use serde_json::Value;

#[derive(Debug, Clone, Args)]
pub struct PortalArg {
    /// The portal to talk to.
    #[arg(long, env = "CLOUDPULSE_URL", default_value = "http://127.0.0.1:3000")]
    pub portal: String,
}

#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub portal: PortalArg,
    /// DNS-safe name, 3-32 characters.
    #[arg(long)]
    pub name: String,
    /// AWS region [default: us-east-1].
    #[arg(long)]
    pub region: Option<String>,
    /// Availability zones: 2 or 3.
    #[arg(long)]
    pub azs: Option<u8>,
    /// Private /16-/24 range [default: 10.0.0.0/16].
    #[arg(long)]
    pub vpc_cidr: Option<String>,
    /// EC2 instance type [default: t3.micro].
    #[arg(long)]
    pub instance_type: Option<String>,
    /// Fewest instances [default: 2].
    #[arg(long)]
    pub min: Option<u32>,
    /// Instances to start with [default: 2].
    #[arg(long)]
    pub desired: Option<u32>,
    /// Most instances, at most 10 [default: 4].
    #[arg(long)]
    pub max: Option<u32>,
    /// `per-az` (survives an AZ outage) or `single` (about half the NAT cost).
    #[arg(long, value_parser = parse_nat)]
    pub nat: Option<NatMode>,
    /// Load balancer health check path [default: /health].
    #[arg(long)]
    pub health_path: Option<String>,
    /// Seconds between health checks, 5-300 [default: 30].
    #[arg(long)]
    pub health_interval: Option<u32>,
    /// Average CPU % that adds an instance [default: 70].
    #[arg(long)]
    pub scale_out_cpu: Option<f64>,
    /// Average CPU % that removes one [default: 30].
    #[arg(long)]
    pub scale_in_cpu: Option<f64>,
    /// Seconds between scaling actions [default: 300].
    #[arg(long)]
    pub cooldown: Option<u32>,
    /// Seconds a new instance has before health checks count [default: 300].
    #[arg(long)]
    pub grace_period: Option<u32>,
    /// Seconds a target leaving the load balancer drains, 0-3600 [default: 30].
    #[arg(long)]
    pub deregistration_delay: Option<u32>,
    /// Minutes until the portal tears it down; 0 for never [default: 240 in
    /// the sandbox, none against AWS].
    #[arg(long)]
    pub ttl_minutes: Option<u32>,
    /// Accrued US dollars at which the portal tears it down [default: no cap].
    #[arg(long)]
    pub cost_cap_usd: Option<f64>,
    /// Follow the job until it ends, showing each step.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BudgetArgs {
    #[command(flatten)]
    pub portal: PortalArg,
    /// The deployment's id.
    pub id: String,
    /// Minutes from its creation until teardown; 0 turns the TTL off.
    #[arg(long)]
    pub ttl_minutes: Option<u32>,
    /// Adds minutes to the TTL.
    #[arg(long, value_name = "MINUTES")]
    pub extend: Option<u32>,
    /// Accrued US dollars at which it is torn down.
    #[arg(long, conflicts_with = "no_cost_cap")]
    pub cost_cap_usd: Option<f64>,
    /// Removes the cost cap.
    #[arg(long)]
    pub no_cost_cap: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RedeployArgs {
    #[command(flatten)]
    pub portal: PortalArg,
    /// The torn-down deployment's id.
    pub id: String,
    /// A new name (by default it keeps the old one).
    #[arg(long)]
    pub name: Option<String>,
    /// Follow the job until it ends, showing each step.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Clone, Args)]
pub struct TeardownArgs {
    #[command(flatten)]
    pub portal: PortalArg,
    /// The deployment's id.
    pub id: String,
    /// Follow the job until it ends, showing each step.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub portal: PortalArg,
    /// A deployment's id; without it, the list.
    pub id: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct PreflightArgs {
    #[command(flatten)]
    pub portal: PortalArg,
    /// AWS region [default: us-east-1].
    #[arg(long)]
    pub region: Option<String>,
    /// Availability zones: 2 or 3.
    #[arg(long)]
    pub azs: Option<u8>,
    /// EC2 instance type [default: t3.micro].
    #[arg(long)]
    pub instance_type: Option<String>,
    /// Most instances, at most 10 [default: 4].
    #[arg(long)]
    pub max: Option<u32>,
    /// `per-az` or `single`.
    #[arg(long, value_parser = parse_nat)]
    pub nat: Option<NatMode>,
}

#[derive(Debug, Clone, Args)]
pub struct OrphansArgs {
    #[command(flatten)]
    pub portal: PortalArg,
    /// The region to scan [default: the portal's].
    #[arg(long)]
    pub region: Option<String>,
    /// Tear every orphaned deployment down (dependency order, verified) and
    /// follow the jobs to the end.
    #[arg(long)]
    pub delete: bool,
}

fn parse_nat(text: &str) -> Result<NatMode, String> {
    match text {
        "per-az" => Ok(NatMode::PerAz),
        "single" => Ok(NatMode::Single),
        other => Err(format!("{other:?}: use per-az or single")),
    }
}

impl DeployArgs {
    fn params(&self) -> DeploymentParams {
        let mut p = DeploymentParams {
            name: self.name.clone(),
            ..Default::default()
        };
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field.clone() { p.$field = v; } )* };
        }
        set!(
            region,
            azs,
            vpc_cidr,
            instance_type,
            min,
            desired,
            max,
            nat,
            scale_out_cpu,
            scale_in_cpu,
            cooldown,
            grace_period,
            deregistration_delay
        );
        p.ttl_minutes = self.ttl_minutes;
        p.cost_cap_usd = self.cost_cap_usd;
        if let Some(path) = self.health_path.clone() {
            p.health_check.path = path;
        }
        if let Some(interval) = self.health_interval {
            p.health_check.interval = interval;
        }
        p
    }
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    /// How a refused field is named: `--desired` for a command's flags,
    /// `desired=` for `--set FIELD=VALUE`.
    sets: bool,
}

/// The portal's access token, as the server reads it: `CLOUDPULSE_TOKEN`,
/// else the file `CLOUDPULSE_TOKEN_FILE` names.
fn access_token() -> anyhow::Result<Option<String>> {
    use crate::access::{TOKEN_ENV, TOKEN_FILE_ENV};
    let text = match std::env::var(TOKEN_ENV) {
        Ok(value) if !value.is_empty() => value,
        Ok(_) | Err(std::env::VarError::NotPresent) => match std::env::var_os(TOKEN_FILE_ENV) {
            Some(path) if !path.is_empty() => {
                std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "cannot read {TOKEN_FILE_ENV}={}; point it at the portal's token file",
                        std::path::Path::new(&path).display()
                    )
                })?
            }
            _ => return Ok(None),
        },
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("{TOKEN_ENV} is not valid UTF-8 text; set it to the portal's access token")
        }
    };
    let token = text.trim().to_string();
    if reqwest::header::HeaderValue::from_str(&token).is_err() {
        bail!("{TOKEN_ENV} holds characters an HTTP header cannot carry; set it to the portal's access token");
    }
    Ok(Some(token))
}

impl Client {
    pub(crate) fn new(portal: &PortalArg) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Client {
            http,
            base: portal.portal.trim_end_matches('/').to_string(),
            sets: false,
        })
    }

    /// Names refused fields as `FIELD=` (the `--set` form).
    pub(crate) fn naming_sets(self) -> Self {
        Client { sets: true, ..self }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let mut request = request.header("x-cloudpulse-source", "cli");
        if let Some(token) = access_token()? {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach the portal at {}; start it with `cloudpulse serve` or `cargo xtask sandbox`, or pass --portal",
                    self.base
                )
            })?;
        let status = response.status();
        let body: Value = response.json().await.context("the portal sent no JSON")?;
        if status.is_success() {
            return Ok(body);
        }
        let error = &body["error"];
        let mut message = error["message"]
            .as_str()
            .unwrap_or("unknown error")
            .to_string();
        if let Some(fields) = error["fields"].as_object() {
            let details: Vec<String> = fields
                .iter()
                .map(|(field, why)| {
                    let why = why.as_str().unwrap_or("");
                    if self.sets {
                        format!("{field}=: {why}")
                    } else {
                        format!("--{}: {why}", field.replace(['_', '.'], "-"))
                    }
                })
                .collect();
            message = format!("{message}: {}", details.join("; "));
        }
        bail!("{message} (HTTP {})", status.as_u16())
    }

    pub(crate) async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> anyhow::Result<T> {
        let body = self
            .send(self.http.get(format!("{}{path}", self.base)))
            .await?;
        serde_json::from_value(body).context("unexpected answer from the portal")
    }

    pub(crate) async fn post(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let mut request = self.http.post(format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }
}

pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.portal)?;
    let params = serde_json::to_value(args.params()).context("cannot encode the parameters")?;
    let accepted = client.post("/api/v1/deployments", Some(&params)).await?;
    started(&client, &accepted, args.wait).await
}

/// Prints what a deploy or a redeploy started and, with `wait`, follows it.
async fn started(client: &Client, accepted: &Value, wait: bool) -> anyhow::Result<()> {
    let deployment: DeploymentDetail = serde_json::from_value(accepted["deployment"].clone())
        .context("unexpected answer from the portal")?;
    let job = accepted["job"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!(
        "deployment {} ({}) accepted; job {job}",
        deployment.id, deployment.name
    );
    if let Some(line) = budget_line(&deployment.budget) {
        println!("{line}");
    }
    if wait {
        follow(client, &job).await?;
        let detail: DeploymentDetail = client
            .get(&format!("/api/v1/deployments/{}", deployment.id))
            .await?;
        if let Some(url) = detail.outputs["app_url"].as_str() {
            println!("live at {url}");
        }
    }
    Ok(())
}

/// "ttl 4 h, tears down at 2026-12-01 14:00 UTC; cost cap $2.00".
fn budget_line(budget: &cloudpulse_app::model::Budget) -> Option<String> {
    let mut parts = Vec::new();
    if let (Some(minutes), Some(at)) = (budget.ttl_minutes, budget.expires_at) {
        parts.push(format!(
            "ttl {minutes} min, tears down at {}",
            at.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    if let Some(cap) = budget.cost_cap_usd {
        parts.push(format!("cost cap {}", pricing::usd(cap)));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

pub async fn budget(args: BudgetArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.portal)?;
    let mut change = serde_json::Map::new();
    if let Some(minutes) = args.ttl_minutes {
        change.insert("ttl_minutes".into(), minutes.into());
    }
    if let Some(minutes) = args.extend {
        change.insert("extend_minutes".into(), minutes.into());
    }
    if let Some(cap) = args.cost_cap_usd {
        change.insert("cost_cap_usd".into(), cap.into());
    }
    if args.no_cost_cap {
        change.insert("cost_cap_usd".into(), Value::Null);
    }
    if change.is_empty() {
        bail!("nothing to change: pass --ttl-minutes, --extend, --cost-cap-usd or --no-cost-cap");
    }
    let request = client
        .http
        .patch(format!("{}/api/v1/deployments/{}", client.base, args.id))
        .json(&Value::Object(change));
    let detail: DeploymentDetail = serde_json::from_value(client.send(request).await?)
        .context("unexpected answer from the portal")?;
    println!(
        "{} ({}): {}",
        detail.name,
        detail.id,
        budget_line(&detail.budget).unwrap_or_else(|| "no ttl, no cost cap".into())
    );
    Ok(())
}

pub async fn redeploy(args: RedeployArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.portal)?;
    let changes = args
        .name
        .as_ref()
        .map(|name| serde_json::json!({ "name": name }));
    let accepted = client
        .post(
            &format!("/api/v1/deployments/{}/redeploy", args.id),
            changes.as_ref(),
        )
        .await?;
    started(&client, &accepted, args.wait).await
}

pub async fn teardown(args: TeardownArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.portal)?;
    let accepted = client
        .post(&format!("/api/v1/deployments/{}/teardown", args.id), None)
        .await?;
    let job = accepted["job"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!("teardown of {} accepted; job {job}", args.id);
    if args.wait {
        follow(&client, &job).await?;
    }
    Ok(())
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.portal)?;
    match args.id {
        None => {
            let page: Page<DeploymentSummary> =
                client.get("/api/v1/deployments?per_page=100").await?;
            if page.items.is_empty() {
                println!("no deployments");
            }
            for d in page.items {
                println!(
                    "{}  {:<32} {:<13} {:<14} {}",
                    d.id,
                    d.name,
                    d.status.as_str(),
                    d.region,
                    d.created_at.format("%Y-%m-%d %H:%M UTC")
                );
            }
        }
        Some(id) => {
            let d: DeploymentDetail = client.get(&format!("/api/v1/deployments/{id}")).await?;
            println!(
                "{} {} ({}) in {}",
                d.id,
                d.name,
                d.status.as_str(),
                d.region
            );
            if let Some(url) = d.outputs["app_url"].as_str() {
                println!("app: {url}");
            }
            if let Some(line) = budget_line(&d.budget) {
                println!("budget: {line}");
            }
            if let Some(origin) = &d.redeployed_from {
                println!("deployed again from {} ({})", origin.name, origin.id);
            }
            println!(
                "resources: {}",
                d.resources
                    .iter()
                    .filter(|r| r.deleted_at.is_none())
                    .count()
            );
            if let Some(job) = d.current_job {
                print_job_summary(&job);
            }
        }
    }
    Ok(())
}

/// Prints the checklist; an error (exit status 1) when a check failed.
pub async fn preflight(args: PreflightArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.portal)?;
    // Only what was given: the portal fills in its defaults.
    let mut body = serde_json::Map::new();
    if let Some(region) = args.region {
        body.insert("region".into(), region.into());
    }
    if let Some(azs) = args.azs {
        body.insert("azs".into(), azs.into());
    }
    if let Some(instance_type) = args.instance_type {
        body.insert("instance_type".into(), instance_type.into());
    }
    if let Some(max) = args.max {
        body.insert("max".into(), max.into());
        // A smaller max than the defaults' min and desired lowers them too.
        let below = max.min(DeploymentParams::default().min);
        body.insert("min".into(), below.into());
        body.insert("desired".into(), below.into());
    }
    if let Some(nat) = args.nat {
        body.insert("nat".into(), serde_json::to_value(nat)?);
    }
    let answer = client
        .post("/api/v1/preflight", Some(&Value::Object(body)))
        .await?;
    let preflight: Preflight =
        serde_json::from_value(answer).context("unexpected answer from the portal")?;
    for check in &preflight.checks {
        println!(
            "{:<4}  {}: {}",
            check.status.label().to_uppercase(),
            check.name,
            check.detail
        );
        if let Some(hint) = &check.hint {
            println!("      -> {hint}");
        }
    }
    let failed = preflight.failed().count();
    if failed > 0 {
        bail!(
            "{failed} check{} failed; a deploy with these parameters would be refused",
            if failed == 1 { "" } else { "s" }
        );
    }
    println!("ready: nothing blocks a deploy with these parameters");
    Ok(())
}

pub async fn orphans(args: OrphansArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.portal)?;
    let query = match &args.region {
        Some(region) => format!("?region={region}"),
        None => String::new(),
    };
    let scan: OrphanScan = client.get(&format!("/api/v1/orphans{query}")).await?;
    print_orphans(&scan);
    if !args.delete || scan.orphans.is_empty() {
        return Ok(());
    }
    let started = client
        .post(&format!("/api/v1/orphans/cleanup{query}"), None)
        .await?;
    let started: Vec<OrphanCleanup> = serde_json::from_value(started["started"].clone())
        .context("unexpected answer from the portal")?;
    let mut failed = Vec::new();
    for cleanup in &started {
        println!(
            "tearing down {} (job {})",
            cleanup.deployment_id, cleanup.job_id
        );
        if let Err(error) = follow(&client, cleanup.job_id.as_str()).await {
            failed.push(format!("{}: {error:#}", cleanup.deployment_id));
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} cleanups failed: {}; see `cloudpulse status ID` and retry the job",
            failed.len(),
            started.len(),
            failed.join("; ")
        );
    }
    println!(
        "{} orphaned deployments removed; nothing left",
        started.len()
    );
    Ok(())
}

fn print_orphans(scan: &OrphanScan) {
    let cost = |usd: Option<f64>| usd.map_or_else(|| "unknown".to_string(), pricing::usd);
    if scan.orphans.is_empty() {
        println!("no orphans in {}", scan.region);
        return;
    }
    for orphan in &scan.orphans {
        let why = match orphan.reason {
            OrphanReason::Unknown => "unknown to this portal".to_string(),
            OrphanReason::TornDown => format!(
                "left after {} was torn down",
                orphan.name.as_deref().unwrap_or("it")
            ),
        };
        println!(
            "deployment {} ({why}): {}/h",
            orphan.deployment_id,
            cost(orphan.hourly_usd)
        );
        for r in &orphan.resources {
            let age = r
                .created
                .map_or_else(|| "age unknown".to_string(), |at| age(scan.scanned_at - at));
            println!(
                "  {:<19} {:<44} {:>12} {:>10}/h",
                r.kind,
                r.id,
                age,
                cost(r.hourly_usd)
            );
        }
    }
    println!(
        "{} orphaned deployments in {}: {}/h, {}/day (prices of {}); remove them with --delete",
        scan.orphans.len(),
        scan.region,
        cost(scan.hourly_usd),
        cost(scan.hourly_usd.map(|h| h * 24.0)),
        scan.prices_as_of
    );
}

/// "3 d 4 h", "2 h 5 min", "40 s".
fn age(span: chrono::TimeDelta) -> String {
    let secs = span.num_seconds().max(0);
    match secs {
        s if s >= 86_400 => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn print_job_summary(job: &JobView) {
    let done = job
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Done)
        .count();
    println!(
        "{} job {}: {} ({done}/{} steps done)",
        job.kind.as_str(),
        job.id,
        job.status.as_str(),
        job.steps.len()
    );
    if let Some(error) = &job.error {
        println!("  {error}");
    }
    if let Some(waiting) = &job.waiting {
        println!("  {waiting}");
    }
}

/// A running step's progress when it says something new, without the
/// seconds waited (`waiting for the instance refresh: 50 % done, 1 to
/// replace (12 s)` is said once, not every second).
fn new_progress(step: &StepView, said: &mut HashMap<String, String>) -> Option<String> {
    if step.status != StepStatus::Running {
        return None;
    }
    let progress = step.progress.as_deref()?;
    let gist = match progress.rsplit_once(" (") {
        Some((gist, rest)) if rest.ends_with(" s)") => gist,
        _ => progress,
    };
    if said.get(&step.key).map(String::as_str) == Some(gist) {
        return None;
    }
    said.insert(step.key.clone(), gist.to_string());
    Some(gist.to_string())
}

/// Polls the job, printing one line per step change and per new progress
/// of a running step, until it ends; fails (exit status 1) unless it ended
/// done.
pub(crate) async fn follow(client: &Client, job_id: &str) -> anyhow::Result<()> {
    let mut seen: HashMap<String, (StepStatus, u32)> = HashMap::new();
    let mut said: HashMap<String, String> = HashMap::new();
    let mut waited: Option<String> = None;
    loop {
        let job: JobView = client.get(&format!("/api/v1/jobs/{job_id}")).await?;
        if job.waiting.is_some() && job.waiting != waited {
            println!("{}", job.waiting.as_deref().unwrap_or_default());
        }
        waited = job.waiting.clone();
        let total = job.steps.len();
        let done = job
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Done)
            .count();
        for step in &job.steps {
            if let Some(gist) = new_progress(step, &mut said) {
                println!("          {gist}");
            }
            let now = (step.status, step.attempts);
            if seen.get(&step.key) == Some(&now) || step.status == StepStatus::Pending {
                continue;
            }
            seen.insert(step.key.clone(), now);
            let took = match (step.started_at, step.finished_at) {
                (Some(a), Some(b)) => {
                    format!(" ({:.1} s)", (b - a).num_milliseconds() as f64 / 1000.0)
                }
                _ => String::new(),
            };
            let mark = match step.status {
                StepStatus::Done => "done   ",
                StepStatus::Running if step.attempts > 1 => "retry  ",
                StepStatus::Running => "running",
                StepStatus::Failed => "FAILED ",
                StepStatus::Skipped => "skipped",
                StepStatus::Pending => "pending",
            };
            println!("[{done:>2}/{total}] {mark} {}{took}", step.key);
            if let Some(error) = &step.error {
                if step.status != StepStatus::Done {
                    println!("          {}: {}", error.code, error.message);
                    if let Some(hint) = &error.hint {
                        println!("          hint: {hint}");
                    }
                }
            }
        }
        if job.status.is_finished() {
            print_job_summary(&job);
            if job.status.as_str() != "done" {
                bail!(
                    "the {} job ended {}",
                    job.kind.as_str(),
                    job.status.as_str()
                );
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steps_progress_is_said_once_without_its_seconds() {
        let step = |status: &str, progress: &str| -> StepView {
            serde_json::from_value(serde_json::json!({
                "key": "instance_refresh", "status": status, "attempts": 1,
                "depends_on": [], "outputs": {}, "error": null,
                "started_at": null, "finished_at": null, "progress": progress,
            }))
            .unwrap()
        };
        let mut said = HashMap::new();
        let first = "waiting for the instance refresh: 0 % done, 2 to replace";
        assert_eq!(
            new_progress(&step("running", &format!("{first} (1 s)")), &mut said).as_deref(),
            Some(first)
        );
        assert_eq!(
            new_progress(&step("running", &format!("{first} (2 s)")), &mut said),
            None,
            "only the seconds moved"
        );
        assert!(new_progress(
            &step(
                "running",
                "waiting for the instance refresh: 50 % done, 1 to replace (9 s)"
            ),
            &mut said
        )
        .is_some());
        assert_eq!(new_progress(&step("done", "anything"), &mut said), None);
    }

    #[test]
    fn ages_read_in_the_largest_units() {
        assert_eq!(age(chrono::TimeDelta::seconds(40)), "40 s");
        assert_eq!(age(chrono::TimeDelta::seconds(125)), "2 min");
        assert_eq!(age(chrono::TimeDelta::seconds(7_500)), "2 h 5 min");
        assert_eq!(
            age(chrono::TimeDelta::seconds(3 * 86_400 + 4 * 3600)),
            "3 d 4 h"
        );
        assert_eq!(age(chrono::TimeDelta::seconds(-5)), "0 s");
    }
}
