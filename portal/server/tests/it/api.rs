//! The REST API of a real sandbox portal: deploy, follow, tear down.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn sandbox(dir: &std::path::Path) -> Portal {
    sandbox_at_a_fifth(dir, "api.db")
}

/// Command lines of the live processes named `name` whose parent is
/// `parent` (an exited one not yet reaped is no instance).
fn children_named(name: &str, parent: u32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let path = entry.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let mut fields = rest.split(' ');
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && state != Some("Z") && comm.ends_with(&name[..name.len().min(15)])
        {
            let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
            found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    found
}

#[tokio::test]
async fn deploy_follow_and_tear_down_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let portal = sandbox(dir.path());
    let url = &portal.url;
    let client = reqwest::Client::new();

    // Every violation at once, per field; nothing created.
    let bad = client
        .post(format!("{url}/api/v1/deployments"))
        .json(&json!({ "name": "X", "min": 5, "max": 2, "vpc_cidr": "10.0.0.0/8" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation");
    for field in ["name", "min", "desired", "vpc_cidr"] {
        assert!(
            body["error"]["fields"][field].is_string(),
            "{field}: {body}"
        );
    }
    let unknown = client
        .post(format!("{url}/api/v1/deployments"))
        .json(&json!({ "name": "demo", "instances": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400, "unknown fields are refused");
    let (_, list) = get_json(&format!("{url}/api/v1/deployments")).await;
    assert_eq!(list["total"], 0);

    // The same Idempotency-Key creates one deployment.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let accepted = client
            .post(format!("{url}/api/v1/deployments"))
            .header("idempotency-key", "demo-once")
            // A short grace period, so failed health checks count soon.
            .json(&json!({ "name": "api-demo", "grace_period": 10 }))
            .send()
            .await
            .unwrap();
        assert_eq!(accepted.status(), 202);
        let body: Value = accepted.json().await.unwrap();
        ids.push((body["deployment"]["id"].clone(), body["job"]["id"].clone()));
    }
    assert_eq!(ids[0], ids[1]);
    let (deployment, job) = (
        ids[0].0.as_str().unwrap().to_string(),
        ids[0].1.as_str().unwrap().to_string(),
    );

    // A second live deployment of the same name is refused.
    let dup = client
        .post(format!("{url}/api/v1/deployments"))
        .json(&json!({ "name": "api-demo" }))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 409);

    // Server-Sent Events follow the job to its end.
    let mut events = client
        .get(format!("{url}/api/v1/jobs/{job}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), events.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
        if text.contains("\"status\":\"done\"") || Instant::now() > deadline {
            break;
        }
    }
    assert!(text.contains("event: job"), "{text}");

    let done = wait_job(&client, url, &job).await;
    assert_eq!(done["status"], "done", "{done}");
    assert!(done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] == "done"));
    let (status, detail) = get_json(&format!("{url}/api/v1/deployments/{deployment}")).await;
    assert_eq!(status, 200);
    assert_eq!(detail["status"], "live");
    // The app answers through the sandbox's load balancer, from both
    // instances of the group, each a real process.
    let app = detail["outputs"]["app_url"].as_str().unwrap().to_string();
    assert!(app.starts_with("http://127.0.0.1:"), "{app}");
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let (status, body) = get_json(&format!("{app}/api/status")).await;
        assert_eq!(status, 200, "{body}");
        served.insert(body["instanceId"].as_str().unwrap().to_string());
    }
    assert_eq!(served.len(), 2, "served by {served:?}");
    // One process per instance of the group: the two serving, and any
    // replaced one while it drains (a slow boot on a busy machine fails
    // its first health checks).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let processes = children_named("cloudpulse-instance", portal.child.id());
        let (_, health) = get_json(&format!("{url}/api/v1/deployments/{deployment}/health")).await;
        let instances = health["group"]["instances"].as_array().unwrap().len();
        if processes.len() == instances && instances >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} processes for {instances} instances: {processes:?}; {health}",
            processes.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(detail["resources"].as_array().unwrap().len() > 20);

    // The poller has seen both instances and their targets.
    let before = eventually(
        &format!("{url}/api/v1/deployments/{deployment}/metrics?range=15m"),
        |m| {
            m["series"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["name"].as_str().unwrap().starts_with("target:"))
                .count()
                == 2
        },
    )
    .await;
    assert_eq!(points(&before, "healthy_targets").last().unwrap()[1], 2.0);
    chaos_and_recovery(&client, url, &deployment, &app).await;
    telemetry_while_live(url, &deployment).await;

    // Concurrent teardown requests make one job.
    let (a, b) = tokio::join!(
        client
            .post(format!("{url}/api/v1/deployments/{deployment}/teardown"))
            .send(),
        client
            .post(format!("{url}/api/v1/deployments/{deployment}/teardown"))
            .send(),
    );
    let (a, b): (Value, Value) = (
        a.unwrap().json().await.unwrap(),
        b.unwrap().json().await.unwrap(),
    );
    assert_eq!(a["job"]["id"], b["job"]["id"], "{a} {b}");
    let teardown = wait_job(&client, url, a["job"]["id"].as_str().unwrap()).await;
    assert_nothing_remains(&teardown);
    let (_, detail) = get_json(&format!("{url}/api/v1/deployments/{deployment}")).await;
    assert_eq!(detail["status"], "torn_down");
    // Nothing of the data plane is left: the instances' processes stopped
    // with their instances, and the load balancer's port is closed.
    let gone = Instant::now() + Duration::from_secs(15);
    while reqwest::get(&app).await.is_ok() {
        assert!(Instant::now() < gone, "{app} still answers after teardown");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        children_named("cloudpulse-instance", portal.child.id()),
        Vec::<String>::new()
    );
    telemetry_after_teardown(url, &deployment).await;

    // Unknown ids are a JSON 404.
    let (status, body) = get_json(&format!("{url}/api/v1/deployments/nope")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = get_json(&format!("{url}/api/v1/jobs/nope")).await;
    assert_eq!(status, 404);
}

/// Waits until `url` answers JSON for which `ready` holds (a minute at most).
async fn eventually(url: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get_json(url).await;
        assert_eq!(status, 200, "{url}: {body}");
        if ready(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{url} never got there: {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn points<'a>(metrics: &'a Value, series: &str) -> &'a [Value] {
    metrics["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == series)
        .and_then(|s| s["points"].as_array())
        .map_or(&[], Vec::as_slice)
}

/// What the poller and the probe recorded while the chaos ran: the series,
/// the changes on the timeline, the instances' records, uptime and cost.
async fn telemetry_while_live(url: &str, deployment: &str) {
    let base = format!("{url}/api/v1/deployments/{deployment}");
    let victim = events_of(url, deployment, "chaos")
        .await
        .iter()
        .find_map(|m| {
            m.strip_prefix("terminated ")
                .map(|r| r[..r.find(' ').unwrap()].to_string())
        })
        .unwrap();
    let metrics = eventually(&format!("{base}/metrics?range=15m"), |m| {
        ["desired", "in_service", "healthy_targets", "probe", "cpu"]
            .iter()
            .all(|s| !points(m, s).is_empty())
    })
    .await;
    assert_eq!(metrics["range"], "15m");
    assert_eq!(metrics["api_calls_per_poll"], 4);
    assert!(
        !points(&metrics, &format!("target:{victim}")).is_empty(),
        "{metrics}"
    );
    for point in points(&metrics, "cpu") {
        let cpu = point[1].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&cpu), "{point}");
    }
    let desired: Vec<f64> = points(&metrics, "desired")
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .collect();
    assert!(desired.iter().all(|d| *d == 2.0), "{desired:?}");
    let markers: Vec<&str> = metrics["markers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert!(
        markers.contains(&"chaos") && markers.contains(&"recovery"),
        "{markers:?}"
    );
    let (status, all) = get_json(&format!("{base}/metrics?range=all")).await;
    assert_eq!(status, 200);
    assert_eq!(all["range"], "all");
    let (status, body) = get_json(&format!("{base}/metrics?range=2h")).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("15m, 1h, 6h, 24h or all"));

    // Every change became an event: the victim leaving, the failing
    // target, the group's activities. The instance whose health checks
    // failed was replaced: it leaves too, once its target has drained
    // (it is Terminating meanwhile).
    let failed = events_of(url, deployment, "chaos")
        .await
        .iter()
        .find_map(|m| {
            m.strip_prefix("health checks failing for 600 s on ")
                .map(|r| r[..r.find(' ').unwrap()].to_string())
        })
        .unwrap();
    let instances = events_until(url, deployment, "instance", |events| {
        [&victim, &failed].iter().all(|id| {
            events
                .iter()
                .any(|m| m.starts_with(&format!("{id} left the group")))
        })
    })
    .await;
    assert!(
        instances.iter().any(|m| m.contains("joined the group")),
        "{instances:?}"
    );
    let targets = events_of(url, deployment, "target").await;
    assert!(
        targets
            .iter()
            .any(|m| m.contains(" is healthy (was initial)")),
        "{targets:?}"
    );
    let scaling = events_of(url, deployment, "scaling").await;
    assert!(
        scaling
            .iter()
            .any(|m| m.starts_with("Launching a new EC2 instance")),
        "{scaling:?}"
    );

    // The victim keeps its page after it is gone.
    let (status, page) = get_json(&format!("{base}/instances/{victim}?range=15m")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page["instance"]["gone_at"].is_string(), "{page}");
    assert!(page["instance"]["private_ip"].is_string(), "{page}");
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "chaos"),
        "{page}"
    );
    let (status, _) = get_json(&format!("{base}/instances/i-0000000000000000")).await;
    assert_eq!(status, 404);

    let uptime = eventually(&format!("{base}/uptime"), |u| {
        u["probes"].as_u64() > Some(0)
    })
    .await;
    assert!(
        uptime["availability_pct"].as_f64().unwrap() > 0.0,
        "{uptime}"
    );
    assert!(
        uptime["last_recovery_seconds"].as_f64().unwrap() > 0.0,
        "{uptime}"
    );

    let (status, cost) = get_json(&format!("{base}/cost")).await;
    assert_eq!(status, 200);
    assert_eq!(cost["priced"], true, "{cost}");
    // What runs now: two NAT gateways, their addresses and the ALB's, the
    // ALB, two t3.micro with detailed monitoring and their storage, alarms
    // and metrics, and the portal's own API calls (~$0.183/h).
    let hourly = cost["hourly_usd"].as_f64().unwrap();
    assert!((0.175..0.19).contains(&hourly), "{cost}");
    assert!((cost["monthly_usd"].as_f64().unwrap() - hourly * 730.0).abs() < 1e-6);
    let accrued = cost["accrued_usd"].as_f64().unwrap();
    let parts: f64 = cost["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["accrued_usd"].as_f64().unwrap())
        .sum();
    assert!(accrued > 0.0 && (parts - accrued).abs() < 1e-9, "{cost}");
    // Three instances have lived: the two first and the replacements.
    assert!(cost["instance_hours"].as_f64().unwrap() > 0.0, "{cost}");
    let (status, everything) = get_json(&format!("{url}/api/v1/cost")).await;
    assert_eq!(status, 200);
    assert!(everything["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["deployment_id"] == deployment));
    assert!(everything["accrued_usd"].as_f64().unwrap() >= accrued);
    // The deployments list carries the same figures.
    let (_, list) = get_json(&format!("{url}/api/v1/deployments")).await;
    let item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == deployment)
        .unwrap();
    assert!(item["cost_usd"].as_f64().unwrap() >= accrued, "{item}");
    assert!(item["availability_pct"].as_f64().unwrap() > 0.0, "{item}");
    let (status, uptimes) = get_json(&format!("{url}/api/v1/uptime")).await;
    assert_eq!(status, 200);
    assert!(uptimes["probes"].as_u64().unwrap() >= uptime["probes"].as_u64().unwrap());
}

/// A torn-down deployment costs nothing more, and nothing polls it.
async fn telemetry_after_teardown(url: &str, deployment: &str) {
    let base = format!("{url}/api/v1/deployments/{deployment}");
    let (_, first) = get_json(&format!("{base}/cost")).await;
    assert_eq!(first["hourly_usd"], 0.0, "{first}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, second) = get_json(&format!("{base}/cost")).await;
    assert_eq!(first["accrued_usd"], second["accrued_usd"]);
    // The poller stopped when the teardown began: no sample is newer.
    let (_, detail) = get_json(&base).await;
    let torn_down = chrono::DateTime::parse_from_rfc3339(detail["torn_down_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    let (_, metrics) = get_json(&format!("{base}/metrics?range=all")).await;
    let last = points(&metrics, "desired").last().unwrap()[0]
        .as_i64()
        .unwrap();
    assert!(
        last <= torn_down,
        "a sample at {last}, torn down at {torn_down}"
    );
    let (_, uptime) = get_json(&format!("{base}/uptime")).await;
    assert!(
        uptime["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["ended_at"].is_string()),
        "{uptime}"
    );
}

/// The deployment's timeline events of `kind`, newest first.
async fn events_of(url: &str, deployment: &str, kind: &str) -> Vec<String> {
    let (status, body) = get_json(&format!("{url}/api/v1/deployments/{deployment}/events")).await;
    assert_eq!(status, 200, "{body}");
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

/// The timeline's messages of `kind` once `done` holds for them (within a
/// minute).
async fn events_until(
    url: &str,
    deployment: &str,
    kind: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = events_of(url, deployment, kind).await;
        if done(&events) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "{kind} events never arrived: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits for the `n`th recovery on the timeline and returns its message.
async fn nth_recovery(url: &str, deployment: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let recoveries = events_of(url, deployment, "recovery").await;
        if recoveries.len() >= n {
            return recoveries[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no recovery #{n}: {recoveries:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The newest recovery event whose message contains `naming`.
async fn recovery_naming(url: &str, deployment: &str, naming: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let recoveries = events_of(url, deployment, "recovery").await;
        if let Some(found) = recoveries.iter().find(|r| r.contains(naming)) {
            return found.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no recovery {naming}: {recoveries:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Health, chaos actions and recovery timing against a live sandbox
/// deployment of two instances.
async fn chaos_and_recovery(client: &reqwest::Client, url: &str, deployment: &str, app: &str) {
    let base = format!("{url}/api/v1/deployments/{deployment}");
    let (status, health) = get_json(&format!("{base}/health")).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        (
            &health["group"]["min"],
            &health["group"]["desired"],
            &health["group"]["max"]
        ),
        (&json!(2), &json!(2), &json!(4)),
        "{health}"
    );
    let instances = health["group"]["instances"].as_array().unwrap().clone();
    assert_eq!(instances.len(), 2, "{health}");
    for instance in &instances {
        assert_eq!(instance["lifecycle"], "InService", "{instance}");
        assert_eq!(instance["target_state"], "healthy", "{instance}");
        assert!(instance["availability_zone"]
            .as_str()
            .unwrap()
            .starts_with("us-east-1"));
    }
    // Auto Scaling spreads the group over its subnets' zones, as the
    // topology then shows: one instance in each of the two.
    let mut zones: Vec<&str> = instances
        .iter()
        .map(|i| i["availability_zone"].as_str().unwrap())
        .collect();
    zones.sort();
    zones.dedup();
    assert_eq!(zones.len(), 2, "one instance per zone: {health}");
    assert_eq!(health["healthy_targets"], 2);
    let alarms: Vec<&str> = health["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(alarms.len(), 2, "{health}");

    // Bad requests say what to fix and change nothing.
    let victim = instances[0]["id"].as_str().unwrap().to_string();
    for (path, body, status, says) in [
        (
            format!("instances/{victim}/stress"),
            json!({ "seconds": 0 }),
            400,
            "from 1 to 3600",
        ),
        (
            format!("instances/{victim}/stress"),
            json!({ "secs": 5 }),
            400,
            "seconds",
        ),
        (
            format!("instances/{victim}/explode"),
            json!({}),
            404,
            "terminate, stress or fail-health",
        ),
        (
            "instances/i-0000000000000000/terminate".to_string(),
            json!({}),
            404,
            "i-0000000000000000",
        ),
        (
            "stress".to_string(),
            json!({ "seconds": 99999 }),
            400,
            "from 1 to 3600",
        ),
    ] {
        let response = client
            .post(format!("{base}/{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
        let text = response.text().await.unwrap();
        assert!(text.contains(says), "{path}: {text}");
    }
    let empty = client
        .post(format!("{base}/instances/{victim}/fail-health"))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);
    assert!(events_of(url, deployment, "chaos").await.is_empty());

    // Terminate one: the group replaces it and the portal times the
    // recovery until two healthy targets again, neither of them the victim.
    let accepted = client
        .post(format!("{base}/instances/{victim}/terminate"))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let accepted: Value = accepted.json().await.unwrap();
    assert_eq!(accepted["instance_ids"], json!([victim]));
    assert_eq!(accepted["watching_recovery"], true);
    let recovery = nth_recovery(url, deployment, 1).await;
    assert!(recovery.starts_with("recovered in "), "{recovery}");
    assert!(
        recovery.contains(&format!("after losing {victim}: 2 of 2 healthy")),
        "{recovery}"
    );
    let chaos = events_of(url, deployment, "chaos").await;
    assert_eq!(
        chaos,
        vec![format!("terminated {victim} (EC2 TerminateInstances)")]
    );
    let (_, health) = get_json(&format!("{base}/health")).await;
    assert_eq!(health["healthy_targets"], 2, "{health}");
    let now: Vec<String> = health["group"]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["lifecycle"] == "InService")
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!now.contains(&victim), "{now:?}");
    let (status, _) = get_json(&format!("{app}/api/status")).await;
    assert_eq!(status, 200);

    // Fail the health checks of another through Run Command: the load
    // balancer takes it out and the group replaces it.
    let second = now[0].clone();
    let accepted = client
        .post(format!("{base}/instances/{second}/fail-health"))
        .json(&json!({ "seconds": 600 }))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let accepted: Value = accepted.json().await.unwrap();
    assert!(accepted["command_id"].is_string(), "{accepted}");
    // Its own recovery: on a loaded machine another instance may have been
    // replaced in between, and that recovery is not this one.
    let losing = format!("after losing {second}:");
    let recovery = recovery_naming(url, deployment, &losing).await;
    assert!(
        recovery.contains(&format!("{losing} 2 of 2 healthy")),
        "{recovery}"
    );

    // A stress of the whole group reaches every instance in service.
    let accepted = client
        .post(format!("{base}/stress"))
        .json(&json!({ "seconds": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let accepted: Value = accepted.json().await.unwrap();
    assert_eq!(
        accepted["instance_ids"].as_array().unwrap().len(),
        2,
        "{accepted}"
    );
    assert_eq!(accepted["watching_recovery"], false);
    eprintln!(
        "recoveries: {:?}",
        events_of(url, deployment, "recovery").await
    );
}

#[tokio::test]
async fn the_cli_deploys_follows_and_tears_down_through_the_portal() {
    let dir = tempfile::tempdir().unwrap();
    let portal = sandbox(dir.path());
    let cli = |args: &[&str]| {
        let mut command = std::process::Command::new(BIN);
        command.args(args).env("CLOUDPULSE_URL", &portal.url);
        isolated(&mut command, dir.path());
        command.output().unwrap()
    };

    // Bad flags: every problem named, nothing created, exit status 1.
    let bad = cli(&["deploy", "--name", "cli-demo", "--min", "4", "--max", "2"]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--min:") && stderr.contains("--desired:"),
        "{stderr}"
    );

    let out = cli(&["deploy", "--name", "cli-demo", "--nat", "single", "--wait"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("done    vpc"),
        "progress per step: {stdout}"
    );
    assert!(stdout.contains("live at http://"), "{stdout}");
    let id = stdout
        .split_whitespace()
        .nth(1)
        .expect("deployment id on the first line")
        .to_string();

    let status = cli(&["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("cli-demo"));
    let detail = cli(&["status", &id]);
    assert!(String::from_utf8_lossy(&detail.stdout).contains("(live)"));

    let down = cli(&["teardown", &id, "--wait"]);
    let stdout = String::from_utf8_lossy(&down.stdout);
    assert!(down.status.success(), "{stdout}");
    assert!(stdout.contains("done    verify"), "{stdout}");

    // A portal that is not there is one clear line.
    let mut command = std::process::Command::new(BIN);
    command.args(["status"]).env(
        "CLOUDPULSE_URL",
        format!("http://127.0.0.1:{}", closed_port()),
    );
    isolated(&mut command, dir.path());
    let output = command.output().unwrap();
    assert!(one_line_error(&output).contains("cannot reach the portal"));
}

#[tokio::test]
async fn the_sandbox_can_hold_nat_gateways_pending_and_the_job_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let portal = start(
        &on_free_port(
            "sandbox",
            &dir.path().join("slow.db"),
            &[
                "--time-scale",
                "0.2",
                // 15 s of AWS's time: 3 s at this scale.
                "--nat-pending-secs",
                "15",
                "--alb-provisioning-secs",
                "10",
                "--instance-boot-secs",
                "5",
            ],
        ),
        dir.path(),
        &[],
    );
    let (_, job) = deploy(&portal.url, json!({ "name": "slow-nat", "nat": "single" })).await;
    let job = job.as_str();
    let mut saw_progress = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, view) = get_json(&format!("{}/api/v1/jobs/{job}", portal.url)).await;
        let nat = view["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == "nat_gateway:0")
            .unwrap()
            .clone();
        if let Some(progress) = nat["progress"].as_str() {
            saw_progress = Some(progress.to_string());
        }
        if view["status"] != "running" && view["status"] != "pending" {
            assert_eq!(view["status"], "done", "{view}");
            break;
        }
        assert!(Instant::now() < deadline, "{view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let progress = saw_progress.expect("the NAT step said what it waited for");
    assert!(progress.contains("pending"), "{progress}");
}
