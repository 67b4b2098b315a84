//! Writes a large, realistic CloudPulse database for benchmarking the portal
//! (`bench/portal.sh`).
//!
//! ```text
//! cargo run --release -p cloudpulse-engine --example seed -- \
//!     --database /tmp/bench.db [--deployments 10000] [--steps 100000] [--seed 1]
//! ```
//!
//! The schema comes from the real `Store::open` (so it is migrated exactly as
//! the portal would); the rows are then bulk inserted with plain SQL, a few
//! thousand per transaction. The data are deterministic for a given `--seed`.
//!
//! What it writes, for N deployments created over two years:
//! - status mix about 13 % live (mostly recent ones; enough that
//!   `?status=live&page=40` still has rows), 12 % failed, 75 % torn down. No
//!   deployment is deploying or tearing down and no job is pending or
//!   running, so a portal started on the database resumes nothing and never
//!   calls the cloud;
//! - a deploy job for every deployment (its plan from the real `deploy_plan`:
//!   29 steps for 2 AZs with a NAT gateway each, 27 with one shared NAT, 35
//!   for 3 AZs), and a teardown job (the real `teardown_plan`) for every torn
//!   down one, with job sources and some idempotency keys;
//! - step rows: the issue asks for ~10 steps per deployment (100,000 for
//!   10,000), fewer than full history would hold, so every live and failed
//!   deployment keeps all its steps (failed ones: done steps, one failed step
//!   with an AWS error, the rest skipped) and the newest torn-down deployments
//!   keep theirs until `--steps` is reached; older torn-down jobs have no
//!   step rows, as if pruned;
//! - resources: every resource of a live deployment (~23), the ones a failed
//!   deployment left (~8), and deleted ones for torn-down deployments that
//!   kept their steps;
//! - events: requested/done/failed per job, and some scaling events on live
//!   deployments.
//!
//! It prints row counts, the time taken, and `DEPLOYMENT_ID=<id>`: the newest
//! live deployment with a 29-step deploy job, for the single-page benchmark.

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use cloudpulse_engine::params::{DeploymentParams, NatMode, INSTANCE_TYPES};
use cloudpulse_engine::plan::{deploy_plan, teardown_plan, PlannedStep};
use cloudpulse_engine::Store;
use serde_json::{json, Value};
use sqlx::{Sqlite, Transaction};

type BoxError = Box<dyn Error + Send + Sync>;

/// Deployments written per transaction (with their jobs, steps, resources, events).
const BATCH: usize = 250;

const USAGE: &str = "usage: seed --database PATH [--deployments N (10000)] \
                     [--steps N (10 per deployment)] [--seed N (1)]";

struct Args {
    database: PathBuf,
    deployments: usize,
    steps: Option<usize>,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut database = None;
    let mut deployments = 10_000usize;
    let mut steps = None;
    let mut seed = 1u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value; {USAGE}"))
        };
        let number = |name: &str, text: String| {
            text.parse::<u64>()
                .map_err(|_| format!("{name} must be a whole number, got {text:?}"))
        };
        match flag.as_str() {
            "--database" => database = Some(PathBuf::from(value("--database")?)),
            "--deployments" => {
                deployments = number("--deployments", value("--deployments")?)? as usize
            }
            "--steps" => steps = Some(number("--steps", value("--steps")?)? as usize),
            "--seed" => seed = number("--seed", value("--seed")?)?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    let database = database.ok_or_else(|| format!("--database is required; {USAGE}"))?;
    Ok(Args {
        database,
        deployments,
        steps,
        seed,
    })
}

/// SplitMix64: small, fast, deterministic; good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn uuid(&mut self) -> String {
        let bytes = (u128::from(self.next()) << 64 | u128::from(self.next())).to_be_bytes();
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }
    fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(len);
        s
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Live,
    Failed,
    TornDown,
}

/// One deployment and everything about it, decided before any row is written.
struct Plan {
    id: String,
    name: String,
    params: DeploymentParams,
    fate: Fate,
    created_at: DateTime<Utc>,
    deploy_steps: Vec<PlannedStep>,
    teardown_steps: Vec<PlannedStep>,
    /// Whether its jobs keep their step rows.
    keeps_steps: bool,
}

const REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-1",
    "us-east-1",
    "eu-west-1",
    "us-west-2",
    "eu-central-1",
    "ap-southeast-2",
];
const SOURCES: &[&str] = &["browser", "browser", "api", "api", "cli"];
const TEARDOWN_SOURCES: &[&str] = &["browser", "api", "cli", "ttl", "ttl", "cost_cap"];
/// Failures a deploy really meets: code, message, hint.
const FAILURES: &[(&str, &str, &str)] = &[
    (
        "AddressLimitExceeded",
        "The maximum number of addresses has been reached.",
        "release unused Elastic IPs or ask AWS for a higher limit, then retry",
    ),
    (
        "VpcLimitExceeded",
        "The maximum number of VPCs has been reached.",
        "delete an unused VPC in this region or ask AWS for a higher limit, then retry",
    ),
    (
        "InsufficientInstanceCapacity",
        "We currently do not have sufficient t3.micro capacity in the Availability Zone you requested.",
        "retry later or choose another instance type",
    ),
    (
        "UnauthorizedOperation",
        "You are not authorized to perform this operation.",
        "give the portal's credentials the operator policy (policy/operator-policy.json), then retry",
    ),
    (
        "RequestLimitExceeded",
        "Request limit exceeded.",
        "another tool is calling AWS heavily in this account; retry in a few minutes",
    ),
];

fn plan_all(rng: &mut Rng, count: usize, step_budget: usize) -> Vec<Plan> {
    // Two years of history, ending at a fixed instant so runs are identical.
    let end = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
    let span = Span::days(730).num_seconds();
    let spacing = (span / count.max(1) as i64).max(1);
    let start = end - Span::seconds(span);
    let mut plans: Vec<Plan> = (0..count)
        .map(|i| {
            let region = (*rng.pick(REGIONS)).to_string();
            let (azs, nat) = match rng.below(10) {
                0 => (3, NatMode::PerAz),
                1 => (2, NatMode::Single),
                _ => (2, NatMode::PerAz),
            };
            let desired = 2 + rng.below(2) as u32;
            let params = DeploymentParams {
                name: format!("svc-{i:05}"),
                region,
                azs,
                nat,
                instance_type: (*rng.pick(&INSTANCE_TYPES[..4])).to_string(),
                min: 2,
                desired,
                max: desired + 2,
                ..DeploymentParams::default()
            };
            // Live ones are mostly recent; the old ones are mostly gone.
            let recent = i * 10 >= count * 9;
            let roll = rng.below(100);
            let fate = match (recent, roll) {
                (true, 0..=44) | (false, 0..=9) => Fate::Live,
                (true, 45..=59) | (false, 10..=20) => Fate::Failed,
                _ => Fate::TornDown,
            };
            let jitter = rng.below(spacing as u64 / 2 + 1) as i64;
            Plan {
                id: rng.uuid(),
                name: params.name.clone(),
                deploy_steps: deploy_plan(&params),
                teardown_steps: if fate == Fate::TornDown {
                    teardown_plan(&params)
                } else {
                    Vec::new()
                },
                params,
                fate,
                created_at: start + Span::seconds(i as i64 * spacing + jitter),
                keeps_steps: false,
            }
        })
        .collect();
    // Live and failed deployments always keep their steps; the newest torn
    // down ones keep theirs while the budget lasts.
    let mut used = 0;
    for p in plans.iter_mut().filter(|p| p.fate != Fate::TornDown) {
        p.keeps_steps = true;
        used += p.deploy_steps.len();
    }
    for p in plans.iter_mut().rev().filter(|p| p.fate == Fate::TornDown) {
        let cost = p.deploy_steps.len() + p.teardown_steps.len();
        if used + cost > step_budget {
            break;
        }
        p.keeps_steps = true;
        used += cost;
    }
    plans
}

#[derive(Default)]
struct Counts {
    deployments: u64,
    jobs: u64,
    steps: u64,
    resources: u64,
    events: u64,
}

/// The resources a deploy records, in creation order: (kind, step key, has ARN).
fn resource_list(params: &DeploymentParams) -> Vec<(&'static str, String, bool)> {
    let mut out = vec![
        ("iam_role", "iam_role".to_string(), true),
        ("instance_profile", "instance_profile".to_string(), true),
        ("bucket", "bucket".to_string(), false),
        ("vpc", "vpc".to_string(), false),
        ("internet_gateway", "internet_gateway".to_string(), false),
    ];
    for az in 0..params.azs {
        out.push(("subnet", format!("public_subnet:{az}"), false));
        out.push(("subnet", format!("private_subnet:{az}"), false));
    }
    for az in 0..params.azs {
        out.push(("route_table", format!("private_routes:{az}"), false));
    }
    let nats = if params.nat == NatMode::PerAz {
        params.azs
    } else {
        1
    };
    for n in 0..nats {
        out.push(("elastic_ip", format!("elastic_ip:{n}"), false));
        out.push(("nat_gateway", format!("nat_gateway:{n}"), false));
    }
    out.extend([
        ("network_acl", "network_acl".to_string(), false),
        ("security_group", "security_groups".to_string(), false),
        ("security_group", "security_groups".to_string(), false),
        ("target_group", "target_group".to_string(), true),
        ("load_balancer", "load_balancer".to_string(), true),
        ("listener", "listener".to_string(), true),
        ("launch_template", "launch_template".to_string(), false),
        (
            "auto_scaling_group",
            "auto_scaling_group".to_string(),
            false,
        ),
    ]);
    out
}

fn aws_id(rng: &mut Rng, kind: &str, name: &str) -> String {
    match kind {
        "iam_role" => format!("cloudpulse-{name}-role"),
        "instance_profile" => format!("cloudpulse-{name}-profile"),
        "bucket" => format!("cloudpulse-{name}-{}", rng.hex(8)),
        "vpc" => format!("vpc-{}", rng.hex(17)),
        "internet_gateway" => format!("igw-{}", rng.hex(17)),
        "subnet" => format!("subnet-{}", rng.hex(17)),
        "route_table" => format!("rtb-{}", rng.hex(17)),
        "elastic_ip" => format!("eipalloc-{}", rng.hex(17)),
        "nat_gateway" => format!("nat-{}", rng.hex(17)),
        "network_acl" => format!("acl-{}", rng.hex(17)),
        "security_group" => format!("sg-{}", rng.hex(17)),
        "target_group" => format!("cp-{name}-tg"),
        "load_balancer" => format!("cp-{name}-alb"),
        "launch_template" => format!("lt-{}", rng.hex(17)),
        "auto_scaling_group" => format!("cloudpulse-{name}-asg"),
        _ => format!("{kind}-{}", rng.hex(12)),
    }
}

fn arn(kind: &str, region: &str, id: &str, rng: &mut Rng) -> String {
    const ACCOUNT: &str = "123456789012";
    match kind {
        "iam_role" => format!("arn:aws:iam::{ACCOUNT}:role/{id}"),
        "instance_profile" => format!("arn:aws:iam::{ACCOUNT}:instance-profile/{id}"),
        "target_group" => format!(
            "arn:aws:elasticloadbalancing:{region}:{ACCOUNT}:targetgroup/{id}/{}",
            rng.hex(16)
        ),
        "load_balancer" => format!(
            "arn:aws:elasticloadbalancing:{region}:{ACCOUNT}:loadbalancer/app/{id}/{}",
            rng.hex(16)
        ),
        _ => format!(
            "arn:aws:elasticloadbalancing:{region}:{ACCOUNT}:listener/app/{id}/{}/{}",
            rng.hex(16),
            rng.hex(16)
        ),
    }
}

/// Step outputs the engine records for the steps later pages read.
fn step_outputs(key: &str, name: &str, region: &str, rng: &mut Rng) -> Value {
    match key {
        "vpc" => json!({ "vpc_id": format!("vpc-{}", rng.hex(17)) }),
        "load_balancer" => json!({
            "dns_name": format!("cp-{name}-alb-{}.{region}.elb.amazonaws.com", rng.below(1_000_000_000)),
            "arn": arn("load_balancer", region, &format!("cp-{name}-alb"), rng),
        }),
        "target_group" => {
            json!({ "arn": arn("target_group", region, &format!("cp-{name}-tg"), rng) })
        }
        "verify" => json!({ "remaining": [] }),
        _ => json!({}),
    }
}

/// Inserts one job and, if kept, its steps. `fail_at` marks the failed step;
/// the steps after it are skipped.
#[allow(clippy::too_many_arguments)]
async fn insert_job(
    tx: &mut Transaction<'_, Sqlite>,
    rng: &mut Rng,
    counts: &mut Counts,
    plan: &Plan,
    kind: &str,
    source: &str,
    created_at: DateTime<Utc>,
    steps: &[PlannedStep],
    fail_at: Option<(usize, (&str, &str, &str))>,
) -> Result<DateTime<Utc>, BoxError> {
    let job_id = rng.uuid();
    let started = created_at + Span::seconds(1);
    // Steps run about one every 12 s along the plan (the DAG overlaps some).
    let mut at = started;
    let mut finished = started;
    let mut error = None;
    for (index, step) in steps.iter().enumerate() {
        let key = step.key.to_string();
        let (status, attempts, start, end) = match fail_at {
            Some((k, _)) if index > k => ("skipped", 0, None, None),
            Some((k, _)) if index == k => {
                let end = at + Span::seconds(3 + rng.below(40) as i64);
                ("failed", 1 + rng.below(3) as i64, Some(at), Some(end))
            }
            _ => {
                let slow = key.starts_with("nat_gateway")
                    || key.starts_with("load_balancer")
                    || key == "wait_healthy"
                    || key.starts_with("undo:nat_gateway");
                let took = if slow {
                    60 + rng.below(120)
                } else {
                    1 + rng.below(8)
                } as i64;
                let attempts = if rng.chance(0.03) { 2 } else { 1 };
                ("done", attempts, Some(at), Some(at + Span::seconds(took)))
            }
        };
        if let Some(end) = end {
            finished = finished.max(end);
            at += Span::seconds(2 + rng.below(12) as i64);
        }
        let failure = match fail_at {
            Some((k, (code, message, hint))) if index == k => {
                error = Some(format!("step {} failed: {code}: {message}", step.key));
                Some((code, message, hint, rng.uuid()))
            }
            _ => None,
        };
        if plan.keeps_steps {
            let outputs = if status == "done" {
                step_outputs(&key, &plan.name, &plan.params.region, rng).to_string()
            } else {
                "{}".to_string()
            };
            sqlx::query(
                "INSERT INTO steps (job_id, key, depends_on, status, attempts, started_at,
                     finished_at, error_code, error_message, error_hint, request_id, outputs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .bind(&job_id)
            .bind(step.key.to_string())
            .bind(serde_json::to_string(&step.depends_on)?)
            .bind(status)
            .bind(attempts)
            .bind(start)
            .bind(end)
            .bind(failure.as_ref().map(|f| f.0))
            .bind(failure.as_ref().map(|f| f.1))
            .bind(failure.as_ref().map(|f| f.2))
            .bind(failure.as_ref().map(|f| f.3.clone()))
            .bind(outputs)
            .execute(&mut **tx)
            .await?;
            counts.steps += 1;
        }
    }
    let status = if error.is_some() { "failed" } else { "done" };
    let key = (source == "api" && rng.chance(0.7)).then(|| rng.uuid());
    sqlx::query(
        "INSERT INTO jobs (id, deployment_id, kind, status, source, idempotency_key, error,
             created_at, started_at, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .bind(&job_id)
    .bind(&plan.id)
    .bind(kind)
    .bind(status)
    .bind(source)
    .bind(key)
    .bind(&error)
    .bind(created_at)
    .bind(started)
    .bind(finished)
    .execute(&mut **tx)
    .await?;
    counts.jobs += 1;
    event(
        tx,
        counts,
        &plan.id,
        created_at,
        "job",
        Some(source),
        &format!("{kind} requested"),
    )
    .await?;
    let message = match &error {
        Some(e) => format!("{kind} failed: {e}"),
        None => format!("{kind} done"),
    };
    event(tx, counts, &plan.id, finished, "job", None, &message).await?;
    Ok(finished)
}

async fn event(
    tx: &mut Transaction<'_, Sqlite>,
    counts: &mut Counts,
    deployment_id: &str,
    at: DateTime<Utc>,
    kind: &str,
    source: Option<&str>,
    message: &str,
) -> Result<(), BoxError> {
    sqlx::query(
        "INSERT INTO events (deployment_id, at, kind, source, message) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(deployment_id)
    .bind(at)
    .bind(kind)
    .bind(source)
    .bind(message)
    .execute(&mut **tx)
    .await?;
    counts.events += 1;
    Ok(())
}

async fn insert_deployment(
    tx: &mut Transaction<'_, Sqlite>,
    rng: &mut Rng,
    counts: &mut Counts,
    plan: &Plan,
) -> Result<(), BoxError> {
    let region = plan.params.region.as_str();
    let status = match plan.fate {
        Fate::Live => "live",
        Fate::Failed => "failed",
        Fate::TornDown => "torn_down",
    };
    // The deployment row first: jobs, resources and events refer to it.
    sqlx::query(
        "INSERT INTO deployments (id, name, region, status, params, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )
    .bind(&plan.id)
    .bind(&plan.name)
    .bind(region)
    .bind(status)
    .bind(serde_json::to_string(&plan.params)?)
    .bind(plan.created_at)
    .execute(&mut **tx)
    .await?;
    counts.deployments += 1;

    let fail_at = (plan.fate == Fate::Failed).then(|| {
        let k = 4 + rng.below(plan.deploy_steps.len() as u64 - 4) as usize;
        (k, *rng.pick(FAILURES))
    });
    let source = rng_source(rng, SOURCES);
    let deployed = insert_job(
        tx,
        rng,
        counts,
        plan,
        "deploy",
        source,
        plan.created_at,
        &plan.deploy_steps,
        fail_at,
    )
    .await?;

    let resources = resource_list(&plan.params);
    let (made, deleted_at, mut updated, mut torn_down_at) = match plan.fate {
        Fate::Live => (resources.len(), None, deployed, None),
        Fate::Failed => (8.min(resources.len()), None, deployed, None),
        Fate::TornDown => {
            let lived = Span::hours(1 + rng.below(24 * 14) as i64);
            let source = rng_source(rng, TEARDOWN_SOURCES);
            let done = insert_job(
                tx,
                rng,
                counts,
                plan,
                "teardown",
                source,
                deployed + lived,
                &plan.teardown_steps,
                None,
            )
            .await?;
            let made = if plan.keeps_steps { resources.len() } else { 0 };
            (made, Some(done), done, Some(done))
        }
    };
    let mut at = plan.created_at + Span::seconds(2);
    for (kind, step_key, has_arn) in resources.iter().take(made) {
        let id = aws_id(rng, kind, &plan.name);
        let arn = has_arn.then(|| arn(kind, region, &id, rng));
        // Security groups: the load balancer's and the instances'.
        let id = if *kind == "security_group" {
            format!("sg-{}", rng.hex(17))
        } else {
            id
        };
        sqlx::query(
            "INSERT INTO resources (deployment_id, kind, aws_id, arn, step_key, region,
                 created_at, deleted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(&plan.id)
        .bind(kind)
        .bind(id)
        .bind(arn)
        .bind(step_key)
        .bind(region)
        .bind(at)
        .bind(deleted_at)
        .execute(&mut **tx)
        .await?;
        counts.resources += 1;
        at += Span::seconds(5 + rng.below(20) as i64);
    }

    // Live deployments scale now and then.
    if plan.fate == Fate::Live {
        let mut desired = plan.params.desired;
        let mut when = deployed;
        for _ in 0..rng.below(5) {
            when += Span::minutes(10 + rng.below(600) as i64);
            let (next, why) = if desired < plan.params.max && rng.chance(0.6) {
                (desired + 1, "average CPU above the scale-out threshold")
            } else if desired > plan.params.min {
                (desired - 1, "average CPU below the scale-in threshold")
            } else {
                continue;
            };
            let message = format!("desired capacity {desired} → {next}: {why}");
            event(
                tx,
                counts,
                &plan.id,
                when,
                "scaling",
                Some("autoscaling"),
                &message,
            )
            .await?;
            desired = next;
        }
        updated = updated.max(when);
    }

    let outputs = match plan.fate {
        Fate::Live => json!({
            "app_url": format!("http://cp-{}-alb-{}.{region}.elb.amazonaws.com", plan.name, rng.below(1_000_000_000)),
            "region": region,
            "vpc_id": format!("vpc-{}", rng.hex(17)),
            "auto_scaling_group": format!("cloudpulse-{}-asg", plan.name),
            "bucket": format!("cloudpulse-{}-{}", plan.name, rng.hex(8)),
        }),
        _ => json!({}),
    };
    if plan.fate != Fate::TornDown {
        torn_down_at = None;
    }
    sqlx::query(
        "UPDATE deployments SET outputs = ?2, updated_at = ?3, torn_down_at = ?4 WHERE id = ?1",
    )
    .bind(&plan.id)
    .bind(outputs.to_string())
    .bind(updated)
    .bind(torn_down_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn rng_source(rng: &mut Rng, from: &[&'static str]) -> &'static str {
    from[rng.below(from.len() as u64) as usize]
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    if args.database.exists() {
        return Err(format!(
            "{} already exists; seed writes a new database, so pass a path that does not exist",
            args.database.display()
        )
        .into());
    }
    let started = Instant::now();
    let store = Store::open(&args.database).await?;
    // Bulk rows go in on a pool of the seeder's own, with the portal's settings.
    let pool = cloudpulse_engine::store::connect(&args.database, 1).await?;
    let mut rng = Rng(args.seed);
    let budget = args.steps.unwrap_or(args.deployments * 10);
    let plans = plan_all(&mut rng, args.deployments, budget);

    let mut counts = Counts::default();
    for batch in plans.chunks(BATCH) {
        let mut tx = pool.begin().await?;
        // A job's steps are written before the job row (whose status and
        // times follow from them); foreign keys are checked at commit.
        sqlx::query("PRAGMA defer_foreign_keys = ON")
            .execute(&mut *tx)
            .await?;
        for plan in batch {
            insert_deployment(&mut tx, &mut rng, &mut counts, plan).await?;
        }
        tx.commit().await?;
    }
    sqlx::query("ANALYZE").execute(&pool).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await?;
    let took = started.elapsed();

    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM deployments GROUP BY status ORDER BY status")
            .fetch_all(&pool)
            .await?;
    println!(
        "seeded {} in {:.1} s: {} deployments ({}), {} jobs, {} steps, {} resources, {} events",
        args.database.display(),
        took.as_secs_f64(),
        counts.deployments,
        by_status
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", "),
        counts.jobs,
        counts.steps,
        counts.resources,
        counts.events,
    );
    let size = std::fs::metadata(&args.database)
        .map(|m| m.len())
        .unwrap_or(0);
    println!("database size: {:.1} MB", size as f64 / 1e6);

    // The single-page benchmark: the newest live deployment with 29 steps.
    let pick = plans
        .iter()
        .rev()
        .find(|p| p.fate == Fate::Live && p.deploy_steps.len() == 29)
        .or_else(|| plans.iter().rev().find(|p| p.fate == Fate::Live))
        .or(plans.last());
    if let Some(p) = pick {
        println!(
            "DEPLOYMENT_ID={} ({}, {}, {} steps, {} resources)",
            p.id,
            p.name,
            match p.fate {
                Fate::Live => "live",
                Fate::Failed => "failed",
                Fate::TornDown => "torn_down",
            },
            p.deploy_steps.len(),
            resource_list(&p.params).len(),
        );
    }
    pool.close().await;
    store.close().await;
    Ok(())
}
