//! The data plane with real moto, the real gateway and real
//! `cloudpulse-instance` processes: instances start and pass their health
//! checks, the local load balancer serves them, a terminated instance drains
//! without losing a request, a crashed one is found unhealthy and replaced,
//! and stopping the data plane leaves no process and no port behind.

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::InstanceStateName;
use common::*;

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
    // A delay far longer than the process takes to go: ELB keeps the
    // target draining for all of it.
    sandbox.set_deregistration_delay(600).await;
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
    let listed = sandbox.health().await;
    assert!(
        listed
            .iter()
            .any(|(id, state, _)| *id == victim && state == "draining"),
        "the target drains for its group's delay, not until its process is gone: {listed:?}"
    );
    // The delay is read from the target group: at 0 the drain ends.
    sandbox.set_deregistration_delay(0).await;

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
async fn a_crashed_service_is_restarted_in_place_not_replaced() {
    let started = Instant::now();
    let mut sandbox = Sandbox::start("crash").await;
    sandbox.deploy("crash").await;
    let (first, _) = sandbox.until_healthy(2, Duration::from_secs(20)).await;
    // Past the ASG's grace period (10 s × scale), so ELB health counts.
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let victim = first[0].clone();
    let pid = sandbox.dataplane.instance_pid(&victim).expect("pid");
    let port = sandbox.dataplane.instance_port(&victim).expect("port");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .expect("kill -9");
    let killed_at = Instant::now();

    // systemd (Restart=on-failure, RestartSec=2) starts the service again
    // on the same instance: a new process, the same port and identity.
    let deadline = killed_at + Duration::from_secs(10);
    loop {
        let now = sandbox.dataplane.instance_pid(&victim);
        if now.is_some_and(|p| p != pid && alive(p)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the service never came back: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restarted_after = killed_at.elapsed();
    assert_eq!(sandbox.dataplane.instance_port(&victim), Some(port));
    let (now, _) = sandbox.until_healthy(2, Duration::from_secs(20)).await;
    assert!(
        now.contains(&victim),
        "the same instance serves again: {now:?}"
    );
    assert_eq!(
        sandbox.ec2_state(&victim).await,
        Some(InstanceStateName::Running),
        "the instance was not replaced"
    );
    let activities = sandbox
        .gateway
        .faithful()
        .scaling_activities(Some("crash-asg"));
    assert!(
        activities
            .iter()
            .all(|a| !a.description.ends_with(&victim) || a.description.starts_with("Launching")),
        "no termination of the crashed instance: {activities:?}"
    );
    eprintln!("crash: service restarted in place after {restarted_after:?}");
    sandbox.stop_and_check_clean().await;
    eprintln!("whole test {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_checks_through_run_command_get_the_instance_replaced() {
    let started = Instant::now();
    let mut sandbox = Sandbox::start("failhealth").await;
    sandbox.deploy("failhealth").await;
    let (first, _) = sandbox.until_healthy(2, Duration::from_secs(20)).await;
    // Past the ASG's grace period (10 s × scale), so ELB health counts.
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let victim = first[0].clone();
    let pid = sandbox.dataplane.instance_pid(&victim).expect("pid");
    // The same Run Command the portal sends on AWS; the data plane runs it
    // against the instance's process, which then answers 503.
    sandbox
        .send_command(
            std::slice::from_ref(&victim),
            "cloudpulse-instance fail-health --seconds 60",
        )
        .await;
    let sent = Instant::now();
    let deadline = sent + Duration::from_secs(10);
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
    let unhealthy_after = sent.elapsed();
    // The process is alive and answering, just not with 200.
    assert!(alive(pid), "the process itself must not have died");
    assert_eq!(reason.as_deref(), Some("Target.ResponseCodeMismatch"));

    let deadline = sent + Duration::from_secs(10);
    while sandbox.ec2_state(&victim).await != Some(InstanceStateName::Terminated) {
        assert!(Instant::now() < deadline, "never terminated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (now, _) = sandbox.until_healthy(2, Duration::from_secs(20)).await;
    let replaced = sent.elapsed();
    assert!(!now.contains(&victim), "{now:?}");
    // The replacement goes to the zone that lost an instance: one per zone.
    let zone_of = |id: String| {
        let ec2 = sandbox.direct_ec2.clone();
        async move {
            ec2.describe_instances()
                .instance_ids(id)
                .send()
                .await
                .unwrap()
                .reservations()[0]
                .instances()[0]
                .placement()
                .and_then(|p| p.availability_zone())
                .map(str::to_string)
        }
    };
    let mut zones = vec![zone_of(now[0].clone()).await, zone_of(now[1].clone()).await];
    zones.sort();
    assert_eq!(
        zones,
        [
            Some("us-east-1a".to_string()),
            Some("us-east-1b".to_string())
        ]
    );
    // The replacement is on the group's activity record, as in AWS.
    let activities = sandbox
        .gateway
        .faithful()
        .scaling_activities(Some("failhealth-asg"));
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
    // A command the sandbox will not run changes nothing.
    sandbox.send_command(&now, "rm -rf /tmp/anything").await;
    let (still, _) = sandbox.until_healthy(2, Duration::from_secs(5)).await;
    assert_eq!(still, now);
    eprintln!(
        "fail-health: unhealthy after {unhealthy_after:?}, replacement healthy after {replaced:?}"
    );
    sandbox.stop_and_check_clean().await;
    eprintln!("whole test {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_is_pending_while_it_boots_then_running_and_healthy() {
    // 80 s of boot at a tenth of AWS's pace: 8 s, so a loaded machine still
    // looks while the instances boot.
    let mut sandbox = Sandbox::start_booting("boot", TIME_SCALE, Duration::from_secs(80)).await;
    sandbox.deploy("boot").await;
    let created = Instant::now();
    let states = |sandbox: &Sandbox| {
        let ec2 = sandbox.ec2.clone();
        let asg = sandbox.asg.clone();
        async move {
            let ec2_states: Vec<String> = ec2
                .describe_instances()
                .send()
                .await
                .unwrap()
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter_map(|i| {
                    i.state()
                        .and_then(|s| s.name())
                        .map(|n| n.as_str().to_string())
                })
                .collect();
            let lifecycle: Vec<String> = asg
                .describe_auto_scaling_groups()
                .auto_scaling_group_names("boot-asg")
                .send()
                .await
                .unwrap()
                .auto_scaling_groups()[0]
                .instances()
                .iter()
                .filter_map(|i| i.lifecycle_state().map(|l| l.as_str().to_string()))
                .collect();
            (ec2_states, lifecycle)
        }
    };
    // Through the gateway the new instances are pending, and no process runs.
    let (ec2_states, lifecycle) = states(&sandbox).await;
    assert_eq!(ec2_states, ["pending", "pending"], "{lifecycle:?}");
    assert_eq!(lifecycle, ["Pending", "Pending"]);
    assert!(sandbox.dataplane.instances().is_empty());
    let health = sandbox.health().await;
    assert!(health.iter().all(|(_, s, _)| s == "initial"), "{health:?}");
    // moto itself has them running all along.
    let direct = sandbox
        .direct_ec2
        .describe_instances()
        .send()
        .await
        .unwrap();
    assert!(direct
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .all(|i| i.state().and_then(|s| s.name()) == Some(&InstanceStateName::Running)));

    let (healthy, _) = sandbox.until_healthy(2, Duration::from_secs(20)).await;
    let took = created.elapsed();
    // moto keeps launch times to the second, so a boot may end up to 1 s
    // before its 8 s are up.
    assert!(
        took >= Duration::from_secs(7),
        "healthy before its boot time: {took:?}"
    );
    let (ec2_states, lifecycle) = states(&sandbox).await;
    assert_eq!(ec2_states, ["running", "running"]);
    assert_eq!(lifecycle, ["InService", "InService"]);
    assert_eq!(healthy.len(), 2);
    eprintln!("booted and healthy {took:?} after the group was created");
    sandbox.stop_and_check_clean().await;
}

/// `(pid, arguments)` of every `cloudpulse-instance` process in process
/// group `group` (an instance and the commands run on it) but its leader.
fn commands_in_group(group: u32) -> Vec<(u32, Vec<String>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command name: state, ppid, pgrp, ...
        let pgrp = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(2))
            .and_then(|g| g.parse::<u32>().ok());
        if pgrp != Some(group) || pid == group || stat.contains(") Z ") {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .skip(1)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        found.push((pid, args));
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stress_gets_one_worker_per_vcpu_and_an_hour_at_most_whatever_it_asks() {
    let mut sandbox = Sandbox::start("stresscap").await;
    sandbox.deploy("stresscap").await;
    let (healthy, _) = sandbox.until_healthy(2, Duration::from_secs(20)).await;
    let victim = healthy[0].clone();
    let pid = sandbox.dataplane.instance_pid(&victim).expect("pid");

    // What a page that found the gateway sent before it was closed to
    // pages: a day of 256 busy threads on a t3.micro (2 vCPUs).
    sandbox
        .send_command(
            std::slice::from_ref(&victim),
            "cloudpulse-instance stress --seconds 86400 --workers 256",
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let stresses = |pid| {
        commands_in_group(pid)
            .into_iter()
            .filter(|(_, args)| args.first().map(String::as_str) == Some("stress"))
            .collect::<Vec<_>>()
    };
    let running = loop {
        let found = stresses(pid);
        if !found.is_empty() {
            break found;
        }
        assert!(Instant::now() < deadline, "the stress never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        running[0].1,
        ["stress", "--seconds", "3600", "--workers", "2"],
        "cut to the instance type's vCPUs and to an hour"
    );

    // Every vCPU has its worker: a second stress is not started, while a
    // command after it in the same Run Command still is (one the binary
    // refuses, so that it leaves a line in the instance's log and nothing
    // else).
    let log = sandbox
        .work_dir
        .join("instances")
        .join(format!("{victim}.log"));
    let marked = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("\"after-the-second-stress\"")
    };
    assert!(!marked());
    sandbox
        .ssm
        .send_command()
        .document_name("AWS-RunShellScript")
        .instance_ids(&victim)
        .parameters(
            "commands",
            vec![
                "cloudpulse-instance stress --seconds 30 --workers 1".to_string(),
                "cloudpulse-instance after-the-second-stress".to_string(),
            ],
        )
        .send()
        .await
        .expect("SendCommand");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marked() {
        assert!(
            Instant::now() < deadline,
            "the command after the stress never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = stresses(pid);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].0, running[0].0);
    sandbox.stop_and_check_clean().await;
}
