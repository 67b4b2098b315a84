//! The sandbox as the data plane's tests use it: moto, the gateway with a
//! data plane attached, one deployment's stack built through the gateway,
//! and the checks that every test repeats.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag as AsgTag};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::NatGatewayState;
use aws_sdk_ec2::types::{InstanceStateName, RequestLaunchTemplateData};
use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, ProtocolEnum};
use cloudpulse_sandbox::{
    DataPlane, DataPlaneConfig, Disruption, Gateway, Latency, MotoServer, Strictness,
};

/// Ten times AWS's pace: a 5 s health check interval becomes 0.5 s.
pub const TIME_SCALE: f64 = 0.1;

/// Any image id does for moto.
pub const AMI: &str = "ami-12345678";

/// moto and a gateway in front of it, with a client of each for a service:
/// `(through the gateway, as the portal calls, straight to moto)`.
pub struct Clouds {
    pub moto: MotoServer,
    pub gateway: Gateway,
}

impl Clouds {
    pub async fn start() -> Clouds {
        Clouds::start_with(Latency::default()).await
    }

    pub async fn start_with(latency: Latency) -> Clouds {
        let moto = MotoServer::start().await.expect("start moto");
        let gateway = Gateway::start(&moto.endpoint(), latency)
            .await
            .expect("start gateway");
        Clouds { moto, gateway }
    }

    pub async fn start_strict(strictness: Strictness) -> Clouds {
        let moto = MotoServer::start().await.expect("start moto");
        let gateway = strict_gateway(&moto, strictness).await;
        Clouds { moto, gateway }
    }

    pub fn ec2(&self) -> (aws_sdk_ec2::Client, aws_sdk_ec2::Client) {
        (
            aws_sdk_ec2::Client::new(&self.gateway.sdk_config()),
            aws_sdk_ec2::Client::new(&self.moto.sdk_config()),
        )
    }

    pub fn asg(&self) -> (aws_sdk_autoscaling::Client, aws_sdk_autoscaling::Client) {
        (
            aws_sdk_autoscaling::Client::new(&self.gateway.sdk_config()),
            aws_sdk_autoscaling::Client::new(&self.moto.sdk_config()),
        )
    }

    pub fn cloudwatch(&self) -> (aws_sdk_cloudwatch::Client, aws_sdk_cloudwatch::Client) {
        (
            aws_sdk_cloudwatch::Client::new(&self.gateway.sdk_config()),
            aws_sdk_cloudwatch::Client::new(&self.moto.sdk_config()),
        )
    }

    /// Load balancing through the gateway.
    pub fn elb(&self) -> aws_sdk_elasticloadbalancingv2::Client {
        aws_sdk_elasticloadbalancingv2::Client::new(&self.gateway.sdk_config())
    }
}

/// A strict gateway in front of `moto`, with AWS's latency off.
pub async fn strict_gateway(moto: &MotoServer, strictness: Strictness) -> Gateway {
    Gateway::start_strict(
        &moto.endpoint(),
        Latency::default(),
        strictness,
        Disruption::default(),
    )
    .await
    .expect("start gateway")
}

/// The error code and message of a refused SDK call.
pub fn refusal<T, E, R>(result: Result<T, aws_sdk_ec2::error::SdkError<E, R>>) -> (String, String)
where
    T: std::fmt::Debug,
    E: ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    let error = result.expect_err("AWS refuses this");
    let service = error
        .as_service_error()
        .unwrap_or_else(|| panic!("not a service error: {error:?}"));
    (
        service.code().unwrap_or_default().to_string(),
        service.message().unwrap_or_default().to_string(),
    )
}

/// Calls `attempt` until it says yes; a minute is far past any figure in
/// these tests.
pub async fn eventually<F, Fut>(what: &str, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !attempt().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A VPC and its two subnets, one in each of two zones.
pub struct Network {
    pub vpc: String,
    pub subnets: Vec<String>,
}

/// `10.{second_octet}.0.0/16` with a /24 in us-east-1a and one in us-east-1b.
pub async fn network(ec2: &aws_sdk_ec2::Client, second_octet: u8) -> Network {
    let vpc = vpc(ec2, &format!("10.{second_octet}.0.0/16")).await;
    let mut subnets = Vec::new();
    for (i, zone) in ["us-east-1a", "us-east-1b"].into_iter().enumerate() {
        subnets.push(
            ec2.create_subnet()
                .vpc_id(&vpc)
                .cidr_block(format!("10.{second_octet}.{}.0/24", i + 1))
                .availability_zone(zone)
                .send()
                .await
                .unwrap()
                .subnet
                .unwrap()
                .subnet_id
                .unwrap(),
        );
    }
    Network { vpc, subnets }
}

/// A new VPC's id.
pub async fn vpc(ec2: &aws_sdk_ec2::Client, cidr: &str) -> String {
    let created = ec2.create_vpc().cidr_block(cidr).send().await.unwrap();
    created.vpc.and_then(|v| v.vpc_id).expect("a VPC id")
}

/// A NAT gateway's state, `None` once it is no longer listed.
pub async fn nat_state(ec2: &aws_sdk_ec2::Client, id: &str) -> Option<NatGatewayState> {
    ec2.describe_nat_gateways()
        .nat_gateway_ids(id)
        .send()
        .await
        .unwrap()
        .nat_gateways()
        .first()
        .and_then(|n| n.state().cloned())
}

/// `target/debug/cloudpulse-instance`, beside the folder of this test binary.
pub fn instance_binary() -> PathBuf {
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
pub struct Sandbox {
    pub moto: MotoServer,
    pub gateway: Gateway,
    pub dataplane: DataPlane,
    pub work_dir: PathBuf,
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub direct_elb: aws_sdk_elasticloadbalancingv2::Client,
    pub direct_ec2: aws_sdk_ec2::Client,
    pub target_group: String,
    pub load_balancer: String,
    pub http: reqwest::Client,
    /// Through the gateway, as the portal reaches them.
    pub asg: aws_sdk_autoscaling::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub ssm: aws_sdk_ssm::Client,
    /// [`Sandbox::deploy`]'s launch template leaves detailed monitoring
    /// off (EC2's default); the engine's turns it on.
    pub basic_monitoring: bool,
}

impl Sandbox {
    pub async fn start(name: &str) -> Sandbox {
        Sandbox::start_at(name, TIME_SCALE).await
    }

    pub async fn start_at(name: &str, time_scale: f64) -> Sandbox {
        Sandbox::start_booting(name, time_scale, Duration::ZERO).await
    }

    /// With instances that boot for `boot_time` (AWS seconds) first.
    pub async fn start_booting(name: &str, time_scale: f64, boot_time: Duration) -> Sandbox {
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
            time_scale,
            boot_time,
            faithful: Some(gateway.faithful()),
            ..DataPlaneConfig::new(moto.endpoint(), gateway.endpoint(), &work_dir)
        })
        .await
        .expect("start data plane");
        gateway.attach(dataplane.view());
        gateway.faithful().set_time_scale(time_scale);
        let through = gateway.sdk_config();
        Sandbox {
            asg: aws_sdk_autoscaling::Client::new(&through),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&through),
            ssm: aws_sdk_ssm::Client::new(&through),
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
            basic_monitoring: false,
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
    pub async fn deploy(&mut self, name: &str) {
        let ec2 = &self.ec2;
        let Network { vpc, subnets } = network(ec2, 0).await;
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
                    .monitoring(
                        aws_sdk_ec2::types::LaunchTemplatesMonitoringRequest::builder()
                            .enabled(!self.basic_monitoring)
                            .build(),
                    )
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
        // As the engine sets it: 30 s, not ELB's default five minutes.
        self.set_deregistration_delay(30).await;
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
        // As the engine makes them: simple scaling ±1 with a 300 s
        // cooldown, each run by an alarm on the group's average CPU.
        let group = format!("{name}-asg");
        for (policy, adjustment, alarm, threshold, comparison) in [
            (
                "out",
                1,
                "high-cpu",
                70.0,
                aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold,
            ),
            (
                "in",
                -1,
                "low-cpu",
                30.0,
                aws_sdk_cloudwatch::types::ComparisonOperator::LessThanThreshold,
            ),
        ] {
            let policy = format!("{name}-{policy}");
            self.asg
                .put_scaling_policy()
                .auto_scaling_group_name(&group)
                .policy_name(&policy)
                .policy_type("SimpleScaling")
                .adjustment_type("ChangeInCapacity")
                .scaling_adjustment(adjustment)
                .cooldown(300)
                .send()
                .await
                .unwrap();
            // moto leaves PolicyARN out of PutScalingPolicy's answer.
            let arn = self
                .asg
                .describe_policies()
                .auto_scaling_group_name(&group)
                .policy_names(&policy)
                .send()
                .await
                .unwrap()
                .scaling_policies()[0]
                .policy_arn()
                .unwrap()
                .to_string();
            self.cloudwatch
                .put_metric_alarm()
                .alarm_name(format!("{name}-{alarm}"))
                .namespace("AWS/EC2")
                .metric_name("CPUUtilization")
                .dimensions(
                    aws_sdk_cloudwatch::types::Dimension::builder()
                        .name("AutoScalingGroupName")
                        .value(&group)
                        .build(),
                )
                .statistic(aws_sdk_cloudwatch::types::Statistic::Average)
                .period(60)
                .evaluation_periods(2)
                .threshold(threshold)
                .comparison_operator(comparison)
                .alarm_actions(arn)
                .send()
                .await
                .unwrap();
        }
    }

    /// Runs a command line on instances through SSM, as the portal does.
    pub async fn send_command(&self, instance_ids: &[String], line: &str) -> String {
        self.ssm
            .send_command()
            .document_name("AWS-RunShellScript")
            .set_instance_ids(Some(instance_ids.to_vec()))
            .parameters("commands", vec![line.to_string()])
            .send()
            .await
            .expect("SendCommand")
            .command
            .and_then(|c| c.command_id)
            .expect("a command id")
    }

    /// `(instance id, state, reason)` through the gateway.
    pub async fn health(&self) -> Vec<(String, String, Option<String>)> {
        health_of(&self.elb, &self.target_group).await
    }

    /// Waits until exactly `count` targets are healthy through the gateway;
    /// returns their ids and every state each target was seen in.
    pub async fn until_healthy(
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

    /// Sets the target group's `deregistration_delay.timeout_seconds`.
    pub async fn set_deregistration_delay(&self, seconds: u32) {
        self.elb
            .modify_target_group_attributes()
            .target_group_arn(&self.target_group)
            .attributes(
                aws_sdk_elasticloadbalancingv2::types::TargetGroupAttribute::builder()
                    .key("deregistration_delay.timeout_seconds")
                    .value(seconds.to_string())
                    .build(),
            )
            .send()
            .await
            .expect("ModifyTargetGroupAttributes");
    }

    /// The app URL as the engine builds it: `http://{DNSName}` via the gateway.
    pub async fn app_url(&self) -> String {
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
    pub async fn served_by(&self, url: &str) -> Result<String, String> {
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

    pub async fn ec2_state(&self, instance_id: &str) -> Option<InstanceStateName> {
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
    pub async fn stop_and_check_clean(self) {
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

pub async fn health_of(
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
pub fn alive(pid: u32) -> bool {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    rustix::process::test_kill_process(pid).is_ok()
}

/// `cloudpulse-instance` processes whose parent is this test process and
/// whose AWS endpoint is `gateway` (tests run side by side in one process).
pub fn instance_children(gateway: &str) -> Vec<u32> {
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
pub struct Load {
    pub stop: Arc<AtomicBool>,
    pub ok: Arc<AtomicU64>,
    pub by_instance: Arc<Mutex<HashMap<String, u64>>>,
    pub failures: Arc<Mutex<Vec<String>>>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(url: &str, workers: usize) -> Load {
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

    pub async fn finish(self) -> (u64, HashMap<String, u64>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let by_instance = self.by_instance.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), by_instance, failures)
    }
}
