//! Instance refresh, which moto lacks: the gateway answers it as AWS does
//! and the data plane carries it out. A group of two on a new launch
//! template version is replaced launch first, never with fewer than two
//! healthy targets and without a failed request; a second start is refused
//! while one runs, a scale-in policy at the group's minimum does not take
//! the batch's extra instance, one with `SkipMatching` and nothing to
//! replace succeeds at once, and cancelling with none under way is refused.

use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::{InstanceRefreshStatus, RefreshPreferences};
use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData};

use crate::common::{refusal, Load, Sandbox};

fn launch_first() -> RefreshPreferences {
    RefreshPreferences::builder()
        .min_healthy_percentage(100)
        .max_healthy_percentage(150)
        .instance_warmup(10)
        .skip_matching(true)
        .build()
}

async fn refresh_of(
    sandbox: &Sandbox,
    group: &str,
    id: &str,
) -> aws_sdk_autoscaling::types::InstanceRefresh {
    sandbox
        .asg
        .describe_instance_refreshes()
        .auto_scaling_group_name(group)
        .instance_refresh_ids(id)
        .send()
        .await
        .expect("DescribeInstanceRefreshes")
        .instance_refreshes()
        .first()
        .cloned()
        .expect("the refresh is listed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_refresh_replaces_every_instance_launch_first() {
    let mut sandbox = Sandbox::start("refresh").await;
    sandbox.deploy("refresh").await;
    let group = "refresh-asg";
    let (first, _) = sandbox.until_healthy(2, Duration::from_secs(20)).await;

    let (code, message) = refusal(
        sandbox
            .asg
            .cancel_instance_refresh()
            .auto_scaling_group_name(group)
            .send()
            .await,
    );
    assert_eq!(code, "ActiveInstanceRefreshNotFound", "{message}");
    assert!(message.contains(group), "{message}");
    let (code, _) = refusal(
        sandbox
            .asg
            .start_instance_refresh()
            .auto_scaling_group_name(group)
            .preferences(
                RefreshPreferences::builder()
                    .min_healthy_percentage(100)
                    .build(),
            )
            .send()
            .await,
    );
    assert_eq!(code, "ValidationError", "neither launch nor terminate");

    let template = sandbox
        .ec2
        .describe_launch_templates()
        .launch_template_names("refresh-lt")
        .send()
        .await
        .unwrap()
        .launch_templates()[0]
        .launch_template_id()
        .unwrap()
        .to_string();
    sandbox
        .ec2
        .create_launch_template_version()
        .launch_template_id(&template)
        .source_version("1")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("ami-12c6146b")
                .instance_type(InstanceType::T3Small)
                .build(),
        )
        .send()
        .await
        .expect("CreateLaunchTemplateVersion");

    let url = sandbox.app_url().await;
    let load = Load::start(&url, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = sandbox
        .asg
        .start_instance_refresh()
        .auto_scaling_group_name(group)
        .preferences(launch_first())
        .send()
        .await
        .expect("StartInstanceRefresh");
    let id = started.instance_refresh_id().unwrap().to_string();
    let (code, _) = refusal(
        sandbox
            .asg
            .start_instance_refresh()
            .auto_scaling_group_name(group)
            .preferences(launch_first())
            .send()
            .await,
    );
    assert_eq!(code, "InstanceRefreshInProgress");

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut fewest_healthy = usize::MAX;
    let mut most_in_group = 0;
    let mut statuses = Vec::new();
    let mut scaled_in = false;
    let done = loop {
        let healthy = sandbox
            .dataplane
            .target_health(&sandbox.target_group)
            .iter()
            .filter(|v| v.state.as_str() == "healthy")
            .count();
        fewest_healthy = fewest_healthy.min(healthy);
        let refresh = refresh_of(&sandbox, group, &id).await;
        let status = refresh.status().cloned().unwrap();
        if statuses.last() != Some(&status) {
            statuses.push(status.clone());
        }
        let instances = sandbox
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .unwrap()
            .auto_scaling_groups()[0]
            .instances()
            .len();
        most_in_group = most_in_group.max(instances);
        if instances == 3 && !scaled_in {
            // The batch's extra instance is not part of the desired
            // capacity: a scale-in at the minimum changes nothing.
            scaled_in = true;
            sandbox
                .asg
                .execute_policy()
                .auto_scaling_group_name(group)
                .policy_name("refresh-in")
                .honor_cooldown(false)
                .send()
                .await
                .expect("ExecutePolicy");
            let desired = sandbox
                .asg
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(group)
                .send()
                .await
                .unwrap()
                .auto_scaling_groups()[0]
                .desired_capacity();
            assert_eq!(desired, Some(3), "the scale-in took the batch's instance");
        }
        if status == InstanceRefreshStatus::Successful {
            break refresh;
        }
        assert!(
            Instant::now() < deadline,
            "the refresh never finished: {refresh:?}; data plane problem: {:?}",
            sandbox.dataplane.problem()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done.percentage_complete(), Some(100));
    assert_eq!(done.instances_to_update(), Some(0));
    assert!(done.end_time().is_some());
    assert_eq!(
        statuses.last(),
        Some(&InstanceRefreshStatus::Successful),
        "{statuses:?}"
    );
    assert!(
        fewest_healthy >= 2,
        "healthy capacity fell to {fewest_healthy}"
    );
    assert!(most_in_group >= 3, "no instance was launched first");
    assert!(scaled_in, "the scale-in was tried during a batch");

    let (now, _) = sandbox.until_healthy(2, Duration::from_secs(30)).await;
    assert!(
        now.iter().all(|id| !first.contains(id)),
        "every old instance is replaced: {first:?} → {now:?}"
    );
    let described = sandbox
        .ec2
        .describe_instances()
        .set_instance_ids(Some(now.clone()))
        .send()
        .await
        .unwrap();
    for instance in described.reservations().iter().flat_map(|r| r.instances()) {
        assert_eq!(instance.instance_type(), Some(&InstanceType::T3Small));
    }
    let activities = sandbox.gateway.faithful().scaling_activities(Some(group));
    assert!(activities
        .iter()
        .any(|a| a.cause.contains("launched to aid in instance refresh")));
    assert!(
        activities
            .iter()
            .filter(|a| a.cause.contains("in response to an instance refresh"))
            .count()
            >= 2,
        "each old instance's termination: {activities:#?}"
    );
    let (ok, _, failures) = load.finish().await;
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(ok > 50, "only {ok} requests");

    // Everything matches now: a new refresh has nothing to replace.
    let again = sandbox
        .asg
        .start_instance_refresh()
        .auto_scaling_group_name(group)
        .preferences(launch_first())
        .send()
        .await
        .unwrap()
        .instance_refresh_id()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let refresh = refresh_of(&sandbox, group, &again).await;
        if refresh.status() == Some(&InstanceRefreshStatus::Successful) {
            assert_eq!(refresh.instances_to_update(), Some(0));
            break;
        }
        assert!(Instant::now() < deadline, "{refresh:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed = sandbox
        .asg
        .describe_instance_refreshes()
        .auto_scaling_group_name(group)
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = listed
        .instance_refreshes()
        .iter()
        .filter_map(|r| r.instance_refresh_id())
        .collect();
    assert_eq!(ids, [again.as_str(), id.as_str()], "newest first");
    let (same, _) = sandbox.until_healthy(2, Duration::from_secs(5)).await;
    assert_eq!(
        same.iter().collect::<std::collections::BTreeSet<_>>(),
        now.iter().collect(),
        "nothing replaced twice"
    );

    sandbox.stop_and_check_clean().await;
}
