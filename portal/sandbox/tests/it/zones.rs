//! Auto Scaling across Availability Zones and out of service, as on AWS:
//! a group spreads its instances evenly over the zones of its subnets (in
//! EC2, in Auto Scaling and in each instance's metadata), launches a
//! replacement in the zone with the fewest, scales in from the zone with
//! the most, replaces its instances in a zone it leaves, and a leaving
//! instance is `Terminating` while its target drains, terminated in EC2
//! only after the deregistration delay.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::InstanceStateName;
use common::*;

/// One instance of a group, as every API the portal reads describes it.
#[derive(Debug, Clone)]
struct Placed {
    id: String,
    lifecycle: String,
    /// DescribeAutoScalingGroups.
    group_zone: String,
    /// DescribeAutoScalingInstances.
    instance_zone: String,
    /// DescribeInstances: Placement.AvailabilityZone and SubnetId.
    ec2_zone: String,
    subnet: String,
}

impl Sandbox {
    /// The group's instances through the gateway, with each API's zone.
    async fn placed(&self, group: &str) -> Vec<Placed> {
        let described = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .expect("DescribeAutoScalingGroups");
        let members = described.auto_scaling_groups()[0].instances().to_vec();
        let ids: Vec<String> = members
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let asg_instances: HashMap<String, String> = self
            .asg
            .describe_auto_scaling_instances()
            .set_instance_ids(Some(ids.clone()))
            .send()
            .await
            .expect("DescribeAutoScalingInstances")
            .auto_scaling_instances()
            .iter()
            .map(|i| {
                (
                    i.instance_id().unwrap_or_default().to_string(),
                    i.availability_zone().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let ec2: HashMap<String, (String, String)> = self
            .ec2
            .describe_instances()
            .set_instance_ids(Some(ids))
            .send()
            .await
            .expect("DescribeInstances")
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| {
                (
                    i.instance_id().unwrap_or_default().to_string(),
                    (
                        i.placement()
                            .and_then(|p| p.availability_zone())
                            .unwrap_or_default()
                            .to_string(),
                        i.subnet_id().unwrap_or_default().to_string(),
                    ),
                )
            })
            .collect();
        members
            .iter()
            .map(|i| {
                let id = i.instance_id().unwrap_or_default().to_string();
                let (ec2_zone, subnet) = ec2.get(&id).cloned().unwrap_or_default();
                Placed {
                    lifecycle: i
                        .lifecycle_state()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    group_zone: i.availability_zone().unwrap_or_default().to_string(),
                    instance_zone: asg_instances.get(&id).cloned().unwrap_or_default(),
                    ec2_zone,
                    subnet,
                    id,
                }
            })
            .collect()
    }

    /// Subnet id → its zone, as EC2 describes the deployment's subnets.
    async fn subnet_zones(&self) -> HashMap<String, String> {
        self.ec2
            .describe_subnets()
            .send()
            .await
            .expect("DescribeSubnets")
            .subnets()
            .iter()
            .map(|s| {
                (
                    s.subnet_id().unwrap_or_default().to_string(),
                    s.availability_zone().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    async fn set_desired(&self, group: &str, desired: i32) {
        self.asg
            .set_desired_capacity()
            .auto_scaling_group_name(group)
            .desired_capacity(desired)
            .send()
            .await
            .expect("SetDesiredCapacity");
    }

    /// Waits until the group has `count` instances in service, every one
    /// of them a healthy target; returns them.
    async fn until_in_service(&self, group: &str, count: usize, limit: Duration) -> Vec<Placed> {
        let deadline = Instant::now() + limit;
        loop {
            let placed = self.placed(group).await;
            let in_service: Vec<Placed> = placed
                .iter()
                .filter(|p| p.lifecycle == "InService")
                .cloned()
                .collect();
            let health = self.health().await;
            let healthy = in_service.iter().all(|p| {
                health
                    .iter()
                    .any(|(id, state, _)| *id == p.id && state == "healthy")
            });
            if in_service.len() == count && healthy {
                return in_service;
            }
            assert!(
                Instant::now() < deadline,
                "never {count} healthy instances in service: {placed:?}; targets {health:?}; \
                 data plane problem: {:?}",
                self.dataplane.problem()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// How many of `placed` are in each zone (by EC2's placement).
fn per_zone(placed: &[Placed]) -> BTreeMap<String, usize> {
    let mut zones = BTreeMap::new();
    for p in placed {
        *zones.entry(p.ec2_zone.clone()).or_default() += 1;
    }
    zones
}

/// `path` under `/latest/meta-data/` from an instance's own IMDSv2.
async fn metadata(http: &reqwest::Client, endpoint: &str, path: &str) -> String {
    let token = http
        .put(format!("{endpoint}/latest/api/token"))
        .header("x-aws-ec2-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .expect("IMDS token")
        .text()
        .await
        .unwrap();
    let answer = http
        .get(format!("{endpoint}/latest/meta-data/{path}"))
        .header("x-aws-ec2-metadata-token", token)
        .send()
        .await
        .expect("IMDS read");
    assert!(answer.status().is_success(), "{path}: {}", answer.status());
    answer.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_spreads_over_its_zones_replaces_into_the_emptiest_and_scales_in_from_the_fullest()
{
    let started = Instant::now();
    let mut sandbox = Sandbox::start("spread").await;
    sandbox.deploy("spread").await;
    let group = "spread-asg";
    sandbox
        .until_in_service(group, 2, Duration::from_secs(20))
        .await;
    sandbox.set_desired(group, 4).await;
    let four = sandbox
        .until_in_service(group, 4, Duration::from_secs(30))
        .await;

    // Two per zone, and every API says the same zone for each instance,
    // the zone of the subnet it was launched in.
    let subnets = sandbox.subnet_zones().await;
    let expected: BTreeMap<String, usize> =
        [("us-east-1a".to_string(), 2), ("us-east-1b".to_string(), 2)].into();
    assert_eq!(per_zone(&four), expected, "{four:?}");
    for p in &four {
        assert_eq!(p.group_zone, p.ec2_zone, "{p:?}");
        assert_eq!(p.instance_zone, p.ec2_zone, "{p:?}");
        assert_eq!(subnets.get(&p.subnet), Some(&p.ec2_zone), "{p:?}");
        // The instance learns the same from its metadata service.
        let imds = sandbox
            .dataplane
            .imds_endpoint(&p.id)
            .expect("an IMDS endpoint");
        let zone = metadata(&sandbox.http, &imds, "placement/availability-zone").await;
        assert_eq!(zone, p.ec2_zone, "{p:?}");
        let mac = metadata(&sandbox.http, &imds, "mac").await;
        let subnet = metadata(
            &sandbox.http,
            &imds,
            &format!("network/interfaces/macs/{mac}/subnet-id"),
        )
        .await;
        assert_eq!(subnet, p.subnet, "{p:?}");
    }

    // A replacement goes to the zone that lost an instance: the second
    // subnet's, where moto would put it in the first.
    let victim = four
        .iter()
        .find(|p| p.ec2_zone == "us-east-1b")
        .expect("an instance in us-east-1b")
        .clone();
    sandbox
        .asg
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&victim.id)
        .should_decrement_desired_capacity(false)
        .send()
        .await
        .expect("TerminateInstanceInAutoScalingGroup");
    let after = sandbox
        .until_in_service(group, 4, Duration::from_secs(30))
        .await;
    let replacement = after
        .iter()
        .find(|p| !four.iter().any(|f| f.id == p.id))
        .expect("a replacement");
    assert_eq!(replacement.ec2_zone, "us-east-1b", "{after:?}");
    assert_eq!(per_zone(&after), expected, "{after:?}");

    // Scale in one at a time: each leaves from the zone with the most.
    sandbox.set_desired(group, 3).await;
    let three = sandbox
        .until_in_service(group, 3, Duration::from_secs(20))
        .await;
    let counts: Vec<usize> = per_zone(&three).into_values().collect();
    assert_eq!(counts.iter().sum::<usize>(), 3);
    assert!(counts.contains(&1) && counts.contains(&2), "{three:?}");
    sandbox.set_desired(group, 2).await;
    let two = sandbox
        .until_in_service(group, 2, Duration::from_secs(20))
        .await;
    let balanced: BTreeMap<String, usize> =
        [("us-east-1a".to_string(), 1), ("us-east-1b".to_string(), 1)].into();
    assert_eq!(per_zone(&two), balanced, "{two:?}");

    // The group leaves a zone: its instance there is replaced in the
    // other first, then drains and goes.
    let listed = sandbox
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .unwrap()
        .auto_scaling_groups()[0]
        .vpc_zone_identifier()
        .unwrap_or_default()
        .to_string();
    let kept: Vec<&str> = listed
        .split(',')
        .filter(|s| subnets.get(*s).map(String::as_str) == Some("us-east-1a"))
        .collect();
    sandbox
        .asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(group)
        .vpc_zone_identifier(kept.join(","))
        .send()
        .await
        .expect("UpdateAutoScalingGroup");
    let moved = sandbox
        .until_in_service(group, 2, Duration::from_secs(30))
        .await;
    let one_zone: BTreeMap<String, usize> = [("us-east-1a".to_string(), 2)].into();
    assert_eq!(per_zone(&moved), one_zone, "{moved:?}");
    assert!(
        moved.iter().any(|p| !two.iter().any(|t| t.id == p.id)),
        "a replacement launched: {two:?} → {moved:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let placed = sandbox.placed(group).await;
        if placed.iter().all(|p| p.ec2_zone == "us-east-1a") {
            break;
        }
        assert!(Instant::now() < deadline, "still in us-east-1b: {placed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("spread: {:?}", started.elapsed());
    sandbox.stop_and_check_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaled_in_instance_is_terminating_while_its_target_drains_then_terminated() {
    let started = Instant::now();
    let mut sandbox = Sandbox::start("leave").await;
    sandbox.deploy("leave").await;
    let group = "leave-asg";
    sandbox
        .until_in_service(group, 2, Duration::from_secs(20))
        .await;
    sandbox.set_desired(group, 3).await;
    let three = sandbox
        .until_in_service(group, 3, Duration::from_secs(20))
        .await;
    let url = sandbox.app_url().await;
    let load = Load::start(&url, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;

    sandbox.set_desired(group, 2).await;
    let scaled_in = Instant::now();
    // Auto Scaling takes one out of service: Terminating in both of its
    // APIs, still running in EC2, its target draining, its process serving
    // what it has.
    let victim = loop {
        let placed = sandbox.placed(group).await;
        if let Some(leaving) = placed.iter().find(|p| p.lifecycle != "InService") {
            break leaving.clone();
        }
        assert!(
            scaled_in.elapsed() < Duration::from_secs(5),
            "no instance left service: {placed:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(three.iter().any(|p| p.id == victim.id));
    assert_eq!(victim.lifecycle, "Terminating", "{victim:?}");
    let listed = sandbox
        .asg
        .describe_auto_scaling_instances()
        .instance_ids(&victim.id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.auto_scaling_instances()[0]
            .lifecycle_state()
            .map(|s| s.to_string()),
        Some("Terminating".to_string())
    );
    let pid = sandbox.dataplane.instance_pid(&victim.id).expect("its pid");
    let mut saw = Vec::new();
    let deadline = scaled_in + Duration::from_secs(20);
    loop {
        // Membership first, EC2 last: a termination between the reads
        // can then only show the instance still in the group.
        let member = sandbox
            .placed(group)
            .await
            .into_iter()
            .find(|p| p.id == victim.id)
            .map(|p| p.lifecycle);
        let target = sandbox
            .health()
            .await
            .into_iter()
            .find(|(id, _, _)| *id == victim.id)
            .map(|(_, state, _)| state);
        let state = sandbox.ec2_state(&victim.id).await;
        let seen = (
            state.as_ref().map(|s| s.as_str().to_string()),
            target,
            member,
        );
        if saw.last() != Some(&seen) {
            saw.push(seen.clone());
        }
        if state == Some(InstanceStateName::Terminated) && seen.2.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "never terminated: {saw:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let terminated_at = saw
        .iter()
        .position(|s| s.0.as_deref() == Some("terminated"))
        .expect("terminated");
    let drained_at = saw.iter().position(|s| {
        (s.0.as_deref(), s.1.as_deref(), s.2.as_deref())
            == (Some("running"), Some("draining"), Some("Terminating"))
    });
    assert!(
        drained_at.is_some_and(|at| at < terminated_at),
        "running and draining while Terminating, then terminated: {saw:?}"
    );
    assert!(
        saw[..terminated_at]
            .iter()
            .all(|s| s.2.as_deref() == Some("Terminating")),
        "in the group, Terminating, until EC2 terminates it: {saw:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "its process lives on");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (ok, _, failures) = load.finish().await;
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(ok > 20, "only {ok} requests");
    // Its termination is on the record, with the capacity change as cause.
    let activities = sandbox.gateway.faithful().scaling_activities(Some(group));
    let terminated = activities
        .iter()
        .find(|a| a.description == format!("Terminating EC2 instance: {}", victim.id))
        .expect("an activity for the scaled-in instance");
    assert!(
        terminated
            .cause
            .contains("shrinking the capacity from 3 to 2"),
        "{}",
        terminated.cause
    );
    eprintln!(
        "leave: terminated {:?} after the scale-in, {ok} requests, 0 failed; {saw:?}",
        scaled_in.elapsed()
    );
    sandbox.stop_and_check_clean().await;
    eprintln!("whole test {:?}", started.elapsed());
}
