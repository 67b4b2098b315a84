//! The data plane with real moto, the real gateway and real
//! `cloudpulse-instance` processes: instances start and pass their health
//! checks, the local load balancer serves them, a terminated instance drains
//! without losing a request, a crashed one is found unhealthy and replaced,
//! and stopping the data plane leaves no process and no port behind.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag as AsgTag};
use aws_sdk_ec2::types::{InstanceStateName, RequestLaunchTemplateData};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ProtocolEnum, TargetHealthStateEnum,
};
use cloudpulse_sandbox::{DataPlane, DataPlaneConfig, Gateway, Latency, MotoServer};

/// Ten times AWS's pace: a 5 s health check interval becomes 0.5 s.
const TIME_SCALE: f64 = 0.1;

/// `target/debug/cloudpulse-instance`, beside the folder of this test binary.
fn instance_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let debug = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let binary = debug.join("cloudpulse-instance");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build -p cloudpulse-instance` first (`cargo xtask test` does)",
        binary.display()
    );
    binary
}

/// moto, the gateway with a data plane attached, and one deployment's stack.
struct Sandbox {
    moto: MotoServer,
    gateway: Gateway,
    dataplane: DataPlane,
    work_dir: PathBuf,
    ec2: aws_sdk_ec2::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    direct_elb: aws_sdk_elasticloadbalancingv2::Client,
    direct_ec2: aws_sdk_ec2::Client,
    target_group: String,
    load_balancer: String,
    http: reqwest::Client,
}

impl Sandbox {
    async fn start(name: &str) -> Sandbox {
        let binary = instance_binary();
        let moto = MotoServer::start().await.expect("start moto");
        let gateway = Gateway::start(&moto.endpoint(), Latency::default())
            .await
            .expect("start gateway");
        let work_dir = std::env::temp_dir().join(format!(
            "cloudpulse-dataplane-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&work_dir);
        let dataplane = DataPlane::start(DataPlaneConfig {
            instance_binary: Some(binary),
            time_scale: TIME_SCALE,
            faithful: Some(gateway.faithful()),
            ..DataPlaneConfig::new(moto.endpoint(), gateway.endpoint(), &work_dir)
        })
        .await
        .expect("start data plane");
        gateway.attach(dataplane.view());
        let through = gateway.sdk_config();
        Sandbox {
            ec2: aws_sdk_ec2::Client::new(&through),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&through),
            direct_elb: aws_sdk_elasticloadbalancingv2::Client::new(&moto.sdk_config()),
            direct_ec2: aws_sdk_ec2::Client::new(&moto.sdk_config()),
            moto,
            gateway,
            dataplane,
            work_dir,
            target_group: String::new(),
            load_balancer: String::new(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    /// VPC, two subnets, a security group, a launch template, a target group
    /// with a quick health check, an ALB with a listener, and an ASG of two
    /// tagged as a deployment's, with ELB health checks.
    async fn deploy(&mut self, name: &str) {
        let ec2 = &self.ec2;
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .unwrap()
            .vpc
            .unwrap()
            .vpc_id
            .unwrap();
        let mut subnets = Vec::new();
        for (i, zone) in ["us-east-1a", "us-east-1b"].into_iter().enumerate() {
            let subnet = ec2
                .create_subnet()
                .vpc_id(&vpc)
                .cidr_block(format!("10.0.{}.0/24", i + 1))
                .availability_zone(zone)
                .send()
                .await
                .unwrap()
                .subnet
                .unwrap()
                .subnet_id
                .unwrap();
            subnets.push(subnet);
        }
        let sg = ec2
            .create_security_group()
            .group_name(format!("{name}-sg"))
            .description("app")
            .vpc_id(&vpc)
            .send()
            .await
            .unwrap()
            .group_id
            .unwrap();
        let template = ec2
            .create_launch_template()
            .launch_template_name(format!("{name}-lt"))
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id("ami-12c6146b")
                    .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                    .security_group_ids(&sg)
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .launch_template
            .unwrap()
            .launch_template_id
            .unwrap();
        let tg = self
            .elb
            .create_target_group()
            .name(format!("{name}-tg"))
            .protocol(ProtocolEnum::Http)
            .port(3000)
            .vpc_id(&vpc)
            .health_check_protocol(ProtocolEnum::Http)
            .health_check_path("/health")
            .health_check_interval_seconds(5)
            .health_check_timeout_seconds(4)
            .healthy_threshold_count(2)
            .unhealthy_threshold_count(2)
            .send()
            .await
            .unwrap();
        self.target_group = tg.target_groups()[0]
            .target_group_arn()
            .unwrap()
            .to_string();
        let lb = self
            .elb
            .create_load_balancer()
            .name(format!("{name}-alb"))
            .set_subnets(Some(subnets.clone()))
            .security_groups(&sg)
            .send()
            .await
            .unwrap();
        self.load_balancer = lb.load_balancers()[0]
            .load_balancer_arn()
            .unwrap()
            .to_string();
        self.elb
            .create_listener()
            .load_balancer_arn(&self.load_balancer)
            .protocol(ProtocolEnum::Http)
            .port(80)
            .default_actions(
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .target_group_arn(&self.target_group)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let asg = aws_sdk_autoscaling::Client::new(&self.gateway.sdk_config());
        asg.create_auto_scaling_group()
            .auto_scaling_group_name(format!("{name}-asg"))
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(&template)
                    .version("$Latest")
                    .build(),
            )
            .min_size(2)
            .max_size(4)
            .desired_capacity(2)
            .vpc_zone_identifier(subnets.join(","))
            .target_group_arns(&self.target_group)
            .health_check_type("ELB")
            .health_check_grace_period(10)
            .tags(
                AsgTag::builder()
                    .key("cloudpulse:deployment")
                    .value(name)
                    .propagate_at_launch(true)
                    .resource_id(format!("{name}-asg"))
                    .resource_type("auto-scaling-group")
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// `(instance id, state, reason)` through the gateway.
    async fn health(&self) -> Vec<(String, String, Option<String>)> {
        health_of(&self.elb, &self.target_group).await
    }

    /// Waits until exactly `count` targets are healthy through the gateway;
    /// returns their ids and every state each target was seen in.
    async fn until_healthy(
        &self,
        count: usize,
        limit: Duration,
    ) -> (Vec<String>, HashMap<String, Vec<String>>) {
        let deadline = Instant::now() + limit;
        let mut seen: HashMap<String, Vec<String>> = HashMap::new();
        loop {
            let health = self.health().await;
            for (id, state, _) in &health {
                let states = seen.entry(id.clone()).or_default();
                if states.last() != Some(state) {
                    states.push(state.clone());
                }
            }
            let healthy: Vec<String> = health
                .iter()
                .filter(|(_, s, _)| s == "healthy")
                .map(|(id, _, _)| id.clone())
                .collect();
            if healthy.len() == count && health.len() == count {
                return (healthy, seen);
            }
            assert!(
                Instant::now() < deadline,
                "never {count} healthy targets; last {health:?}; data plane problem: {:?}",
                self.dataplane.problem()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The app URL as the engine builds it: `http://{DNSName}` via the gateway.
    async fn app_url(&self) -> String {
        let lb = self
            .elb
            .describe_load_balancers()
            .load_balancer_arns(&self.load_balancer)
            .send()
            .await
            .unwrap();
        format!(
            "http://{}",
            lb.load_balancers()[0].dns_name().expect("DNSName")
        )
    }

    /// Which instance answered a request through the load balancer.
    async fn served_by(&self, url: &str) -> Result<String, String> {
        let response = self
            .http
            .get(format!("{url}/api/status"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {body}"));
        }
        let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        json["instanceId"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no instanceId in {body}"))
    }

    async fn ec2_state(&self, instance_id: &str) -> Option<InstanceStateName> {
        let out = self
            .direct_ec2
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .ok()?;
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| i.state().and_then(|s| s.name()).cloned())
    }

    /// Stops the data plane and checks that it left nothing behind.
    async fn stop_and_check_clean(self) {
        let pids: Vec<u32> = self
            .dataplane
            .instances()
            .iter()
            .filter_map(|id| self.dataplane.instance_pid(id))
            .collect();
        assert!(!pids.is_empty());
        assert!(pids.iter().all(|pid| alive(*pid)));
        let balancer = self
            .dataplane
            .balancer_url(&self.load_balancer)
            .expect("balancer");
        let addr = balancer.trim_start_matches("http://").to_string();
        let started = Instant::now();
        self.dataplane.stop().await;
        let stop_took = started.elapsed();
        for pid in &pids {
            assert!(
                !alive(*pid),
                "instance process {pid} outlived the data plane"
            );
        }
        let endpoint = self.gateway.endpoint();
        assert!(
            instance_children(&endpoint).is_empty(),
            "children left: {:?}",
            instance_children(&endpoint)
        );
        assert!(
            tokio::net::TcpStream::connect(&addr).await.is_err(),
            "the balancer's port {addr} is still open"
        );
        eprintln!("data plane stopped in {stop_took:?}");
        assert!(stop_took < Duration::from_secs(5), "{stop_took:?}");
        self.gateway.detach();
        self.moto.stop().await;
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

async fn health_of(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    target_group: &str,
) -> Vec<(String, String, Option<String>)> {
    let out = elb
        .describe_target_health()
        .target_group_arn(target_group)
        .send()
        .await
        .expect("DescribeTargetHealth");
    let mut health: Vec<_> = out
        .target_health_descriptions()
        .iter()
        .map(|d| {
            let th = d.target_health().expect("TargetHealth");
            (
                d.target()
                    .and_then(|t| t.id())
                    .unwrap_or_default()
                    .to_string(),
                th.state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                th.reason().map(|r| r.as_str().to_string()),
            )
        })
        .collect();
    health.sort();
    health
}

/// Whether a process exists (signal 0; a reaped child does not).
fn alive(pid: u32) -> bool {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    rustix::process::test_kill_process(pid).is_ok()
}

/// `cloudpulse-instance` processes whose parent is this test process and
/// whose AWS endpoint is `gateway` (tests run side by side in one process).
fn instance_children(gateway: &str) -> Vec<u32> {
    let endpoint = format!("AWS_ENDPOINT_URL={gateway}");
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        if field("PPid:").as_deref() == Some(me.as_str())
            && field("Name:").is_some_and(|n| n.starts_with("cloudpulse-inst"))
            && field("State:").is_some_and(|s| !s.starts_with('Z'))
            && std::fs::read(entry.path().join("environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == endpoint.as_bytes()))
        {
            found.extend(field("Pid:").and_then(|p| p.parse::<u32>().ok()));
        }
    }
    found
}

/// Sends requests through the load balancer from `workers` loops until
/// told to stop; counts answers per instance and keeps every failure.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    by_instance: Arc<Mutex<HashMap<String, u64>>>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: &str, workers: usize) -> Load {
        let load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            ok: Arc::new(AtomicU64::new(0)),
            by_instance: Arc::new(Mutex::new(HashMap::new())),
            failures: Arc::new(Mutex::new(Vec::new())),
            tasks: Vec::new(),
        };
        let tasks = (0..workers)
            .map(|_| {
                let (stop, ok) = (Arc::clone(&load.stop), Arc::clone(&load.ok));
                let by_instance = Arc::clone(&load.by_instance);
                let failures = Arc::clone(&load.failures);
                let url = format!("{url}/api/status");
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .no_proxy()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        let answer = async {
                            let response =
                                http.get(&url).send().await.map_err(|e| e.to_string())?;
                            let status = response.status();
                            let body = response.text().await.map_err(|e| e.to_string())?;
                            if !status.is_success() {
                                return Err(format!("{status}: {body}"));
                            }
                            let json: serde_json::Value =
                                serde_json::from_str(&body).map_err(|e| e.to_string())?;
                            Ok(json["instanceId"].as_str().unwrap_or_default().to_string())
                        }
                        .await;
                        match answer {
                            Ok(id) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                *by_instance.lock().unwrap().entry(id).or_default() += 1;
                            }
                            Err(error) => failures.lock().unwrap().push(error),
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Load { tasks, ..load }
    }

    async fn finish(self) -> (u64, HashMap<String, u64>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let by_instance = self.by_instance.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), by_instance, failures)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_start_turn_healthy_and_serve_through_the_balancer() {
    let started = Instant::now();
    let mut sandbox = Sandbox::start("serve").await;
    sandbox.deploy("serve").await;

    // moto alone calls both targets healthy at once; nothing runs yet.
    let direct = health_of(&sandbox.direct_elb, &sandbox.target_group).await;
    assert_eq!(direct.len(), 2, "{direct:?}");
    assert!(direct.iter().all(|(_, s, _)| s == "healthy"), "{direct:?}");

    // Through the gateway: initial first, healthy after the checks pass.
    let (healthy, seen) = sandbox.until_healthy(2, Duration::from_secs(20)).await;
    let became_healthy = started.elapsed();
    for id in &healthy {
        let states = &seen[id];
        assert_eq!(
            states.first().map(String::as_str),
            Some("initial"),
            "{id}: {states:?}"
        );
        assert_eq!(
            states.last().map(String::as_str),
            Some("healthy"),
            "{id}: {states:?}"
        );
        let port = sandbox.dataplane.instance_port(id).expect("a port");
        assert!(port > 0);
    }
    let verdicts = sandbox.dataplane.target_health(&sandbox.target_group);
    assert!(verdicts.iter().all(|v| v.reason.is_none()));

    // The app URL the engine would build reaches both instances.
    let url = sandbox.app_url().await;
    assert_eq!(
        Some(url.clone()),
        sandbox.dataplane.balancer_url(&sandbox.load_balancer)
    );
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let mut served = HashSet::new();
    for _ in 0..20 {
        served.insert(sandbox.served_by(&url).await.expect("served"));
    }
    let expected: HashSet<String> = healthy.iter().cloned().collect();
    assert_eq!(served, expected, "round robin over both healthy instances");
    assert!(sandbox.dataplane.requests_served(&sandbox.load_balancer) >= 20);
    eprintln!("two instances healthy {became_healthy:?} after start");

    // Each instance's log is its own file.
    let logs = std::fs::read_dir(sandbox.work_dir.join("instances"))
        .unwrap()
        .count();
    assert_eq!(logs, 2);

    sandbox.stop_and_check_clean().await;
    eprintln!("whole test {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_instance_drains_without_losing_a_request_and_is_replaced() {
    let started = Instant::now();
    let mut sandbox = Sandbox::start("terminate").await;
    sandbox.deploy("terminate").await;
    let (first, _) = sandbox.until_healthy(2, Duration::from_secs(20)).await;
    let url = sandbox.app_url().await;

    let load = Load::start(&url, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = first[0].clone();
    let victim_pid = sandbox.dataplane.instance_pid(&victim).expect("pid");
    sandbox
        .ec2
        .terminate_instances()
        .instance_ids(&victim)
        .send()
        .await
        .expect("TerminateInstances");
    let terminated_at = Instant::now();

    // The data plane drains it (no more traffic) before the process goes.
    let mut saw_draining = false;
    while alive(victim_pid) {
        saw_draining |= sandbox
            .dataplane
            .target_health(&sandbox.target_group)
            .iter()
            .any(|v| v.instance_id == victim && v.state.as_str() == "draining");
        assert!(
            terminated_at.elapsed() < Duration::from_secs(10),
            "the terminated instance's process lives on"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let process_gone = terminated_at.elapsed();
    assert!(saw_draining, "the target was never draining");

    // moto's ASG launched a replacement; it starts, passes its checks and serves.
    let (now, _) = sandbox.until_healthy(2, Duration::from_secs(20)).await;
    let replaced = terminated_at.elapsed();
    assert!(!now.contains(&victim));
    let replacement = now.iter().find(|id| !first.contains(id)).expect("new id");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !load
        .by_instance
        .lock()
        .unwrap()
        .contains_key(replacement.as_str())
    {
        assert!(Instant::now() < deadline, "the replacement never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (ok, by_instance, failures) = load.finish().await;
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(ok > 50, "only {ok} requests");
    assert_eq!(
        sandbox.ec2_state(&victim).await,
        Some(InstanceStateName::Terminated)
    );
    eprintln!(
        "terminate: process gone after {process_gone:?}, replacement healthy after {replaced:?}; \
         {ok} requests, 0 failed, by instance {by_instance:?}"
    );
    sandbox.stop_and_check_clean().await;
    eprintln!("whole test {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_instance_is_found_unhealthy_terminated_and_replaced() {
    let started = Instant::now();
    let mut sandbox = Sandbox::start("crash").await;
    sandbox.deploy("crash").await;
    let (first, _) = sandbox.until_healthy(2, Duration::from_secs(20)).await;
    // Past the ASG's grace period (10 s × scale), so ELB health counts.
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let victim = first[0].clone();
    let pid = sandbox.dataplane.instance_pid(&victim).expect("pid");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .expect("kill -9");
    let killed_at = Instant::now();

    // The checker sees it fail; the gateway reports it unhealthy like AWS.
    let deadline = killed_at + Duration::from_secs(10);
    let reason = loop {
        let health = sandbox.health().await;
        if let Some((_, state, reason)) = health.iter().find(|(id, _, _)| *id == victim) {
            if state == "unhealthy" {
                break reason.clone();
            }
        }
        assert!(Instant::now() < deadline, "never unhealthy: {health:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let unhealthy_after = killed_at.elapsed();
    assert_eq!(reason.as_deref(), Some("Target.FailedHealthChecks"));

    // It is terminated in EC2 (so moto's ASG replaces it)...
    let deadline = killed_at + Duration::from_secs(10);
    while sandbox.ec2_state(&victim).await != Some(InstanceStateName::Terminated) {
        assert!(
            Instant::now() < deadline,
            "the crashed instance was never terminated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and its replacement becomes healthy and serves.
    let (now, _) = sandbox.until_healthy(2, Duration::from_secs(20)).await;
    let replaced = killed_at.elapsed();
    assert!(!now.contains(&victim));
    let url = sandbox.app_url().await;
    let mut served = HashSet::new();
    for _ in 0..10 {
        served.insert(sandbox.served_by(&url).await.expect("served"));
    }
    assert_eq!(served, now.iter().cloned().collect::<HashSet<_>>());
    let direct = health_of(&sandbox.direct_elb, &sandbox.target_group).await;
    assert!(direct
        .iter()
        .all(|(_, s, _)| s == TargetHealthStateEnum::Healthy.as_str()));
    // The replacement is on the group's activity record, as in AWS.
    let activities = sandbox
        .gateway
        .faithful()
        .scaling_activities(Some("crash-asg"));
    let terminated = activities
        .iter()
        .find(|a| a.description.ends_with(&victim))
        .expect("an activity for the terminated instance");
    assert!(
        terminated
            .cause
            .contains("in response to an ELB system health check failure"),
        "{}",
        terminated.cause
    );
    eprintln!("crash: unhealthy after {unhealthy_after:?}, replacement healthy after {replaced:?}");
    sandbox.stop_and_check_clean().await;
    eprintln!("whole test {:?}", started.elapsed());
}
