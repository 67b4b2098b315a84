//! moto through the real AWS SDK: the ground every other test stands on.

use cloudpulse_sandbox::MotoServer;

#[tokio::test]
async fn sts_answers_through_the_sdk() {
    let moto = MotoServer::start().await.expect("start moto");
    let sts = aws_sdk_sts::Client::new(&moto.sdk_config());
    let me = sts
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity");
    assert_eq!(me.account(), Some("123456789012"));
    moto.stop().await;
}

#[tokio::test]
async fn s3_works_with_path_style_and_reset_forgets_everything() {
    let moto = MotoServer::start().await.expect("start moto");
    let config = aws_sdk_s3::config::Builder::from(&moto.sdk_config())
        .force_path_style(true)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(config);
    s3.create_bucket()
        .bucket("cloudpulse-test")
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket("cloudpulse-test")
        .key("hello.txt")
        .body(b"hello".to_vec().into())
        .send()
        .await
        .unwrap();
    let body = s3
        .get_object()
        .bucket("cloudpulse-test")
        .key("hello.txt")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(&body[..], b"hello");

    moto.reset().await.unwrap();
    let buckets = s3.list_buckets().send().await.unwrap();
    assert!(buckets.buckets().is_empty(), "reset must forget the bucket");
    moto.stop().await;
}

/// moto 5.2.5 mixes namespaces when a query names dimensions; the launcher
/// keeps them apart, as AWS does.
#[tokio::test]
async fn metric_queries_keep_to_their_namespace() {
    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat};
    let moto = MotoServer::start().await.expect("start moto");
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&moto.sdk_config());
    let instance = Dimension::builder()
        .name("InstanceId")
        .value("i-0abc")
        .build();
    for (namespace, value) in [("AWS/EC2", 10.0), ("CloudPulse", 90.0)] {
        cloudwatch
            .put_metric_data()
            .namespace(namespace)
            .metric_data(
                MetricDatum::builder()
                    .metric_name("CPUUtilization")
                    .dimensions(instance.clone())
                    .value(value)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let query = |id: &str, namespace: &str| {
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace(namespace)
                            .metric_name("CPUUtilization")
                            .dimensions(instance.clone())
                            .build(),
                    )
                    .period(60)
                    .stat("Average")
                    .build(),
            )
            .build()
    };
    let now = std::time::SystemTime::now();
    let answer = cloudwatch
        .get_metric_data()
        .metric_data_queries(query("ec2", "AWS/EC2"))
        .metric_data_queries(query("own", "CloudPulse"))
        .start_time((now - std::time::Duration::from_secs(600)).into())
        .end_time((now + std::time::Duration::from_secs(60)).into())
        .send()
        .await
        .unwrap();
    let values: Vec<(&str, &[f64])> = answer
        .metric_data_results()
        .iter()
        .map(|r| (r.id().unwrap(), r.values()))
        .collect();
    assert_eq!(values, [("ec2", &[10.0][..]), ("own", &[90.0][..])]);
    moto.stop().await;
}

#[tokio::test]
async fn two_servers_are_isolated() {
    let (a, b) = tokio::join!(MotoServer::start(), MotoServer::start());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.endpoint(), b.endpoint());
    let s3 = |m: &MotoServer| {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&m.sdk_config())
                .force_path_style(true)
                .build(),
        )
    };
    s3(&a)
        .create_bucket()
        .bucket("only-in-a")
        .send()
        .await
        .unwrap();
    let in_b = s3(&b).list_buckets().send().await.unwrap();
    assert!(in_b.buckets().is_empty());
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_missing_python_is_a_clear_error() {
    let err = MotoServer::start_with(cloudpulse_sandbox::moto::MotoOptions {
        python: Some("/nonexistent/python".into()),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("cannot start moto"), "{err}");
}

#[tokio::test]
async fn state_kept_in_a_folder_survives_a_restart_and_a_torn_file_does_not_stop_it() {
    let dir = std::env::temp_dir().join(format!("cloudpulse-moto-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = || cloudpulse_sandbox::moto::MotoOptions {
        state_dir: Some(dir.clone()),
        ..Default::default()
    };
    let moto = MotoServer::start_with(options()).await.expect("start moto");
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let vpc = crate::common::vpc(&ec2, "10.9.0.0/16").await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.sdk_config())
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket("kept").send().await.unwrap();
    // Asked to stop, it writes what it has, then goes.
    moto.stop().await;
    assert!(dir.join("control.pickle").is_file());
    assert!(dir.join("s3.pickle").is_file());

    let moto = MotoServer::start_with(options())
        .await
        .expect("restart moto");
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let vpcs = ec2.describe_vpcs().vpc_ids(&vpc).send().await.unwrap();
    assert_eq!(vpcs.vpcs().len(), 1, "the VPC came back");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.sdk_config())
            .force_path_style(true)
            .build(),
    );
    s3.head_bucket()
        .bucket("kept")
        .send()
        .await
        .expect("the bucket came back");
    moto.stop().await;

    // A file that is not a snapshot is put aside and moto starts without it.
    std::fs::write(dir.join("control.pickle"), b"not a pickle").unwrap();
    let moto = MotoServer::start_with(options())
        .await
        .expect("start over a torn file");
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let vpcs = ec2.describe_vpcs().send().await.unwrap();
    assert!(vpcs.vpcs().iter().all(|v| v.vpc_id() != Some(vpc.as_str())));
    assert!(dir.join("control.pickle.unreadable").is_file());
    moto.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A state folder of `mode`, for a test of its own.
fn state_folder(name: &str, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!(
        "cloudpulse-moto-unsafe-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&dir);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

async fn start_on(dir: &std::path::Path) -> Result<MotoServer, cloudpulse_sandbox::MotoError> {
    MotoServer::start_with(cloudpulse_sandbox::moto::MotoOptions {
        state_dir: Some(dir.to_path_buf()),
        ..Default::default()
    })
    .await
}

/// moto's state is unpickled, and unpickling runs code: a folder or a file
/// someone else could have written is refused, with what to do about it.
#[tokio::test]
async fn state_is_read_only_from_a_private_folder_of_this_user() {
    use std::os::unix::fs::PermissionsExt;

    // Open to others: refused before moto starts.
    let open = state_folder("open", 0o755);
    let error = start_on(&open)
        .await
        .expect_err("an open folder is refused");
    let text = error.to_string();
    assert!(
        text.contains("mode 0755") && text.contains("chmod 700"),
        "{text}"
    );

    // Another user's folder (the tests may run as root, who can make one).
    let theirs = state_folder("theirs", 0o700);
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).unwrap();
        let text = start_on(&theirs).await.expect_err("refused").to_string();
        assert!(text.contains("belongs to user 4242"), "{text}");
    }

    // A link to a folder, rather than the folder.
    let target = state_folder("target", 0o700);
    let link = target.with_file_name(format!("cloudpulse-moto-link-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let text = start_on(&link).await.expect_err("refused").to_string();
    assert!(text.contains("not a folder"), "{text}");

    // A private folder whose snapshot others could have written.
    let private = state_folder("private", 0o700);
    let moto = start_on(&private).await.expect("a private folder is fine");
    moto.stop().await;
    let snapshot = private.join("control.pickle");
    assert!(snapshot.is_file());
    assert_eq!(
        std::fs::metadata(&snapshot).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&snapshot, std::fs::Permissions::from_mode(0o666)).unwrap();
    let text = start_on(&private).await.expect_err("refused").to_string();
    assert!(
        text.contains("control.pickle") && text.contains("open to other users"),
        "{text}"
    );
    // Or a link in its place.
    std::fs::rename(&snapshot, private.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(private.join("elsewhere"), &snapshot).unwrap();
    let text = start_on(&private).await.expect_err("refused").to_string();
    assert!(text.contains("control.pickle"), "{text}");

    for dir in [&open, &theirs, &target, &private] {
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = std::fs::remove_file(&link);
}

/// Every sandbox account has the instance roles' permissions boundary, as
/// an administrator makes it once on AWS, and keeps it across a reset.
#[tokio::test]
async fn the_account_has_the_instance_boundary_from_the_start() {
    let moto = MotoServer::start().await.expect("start moto");
    let iam = aws_sdk_iam::Client::new(&moto.sdk_config());
    let arn = format!(
        "arn:aws:iam::123456789012:policy/{}",
        cloudpulse_sandbox::moto::INSTANCE_BOUNDARY
    );
    for _ in 0..2 {
        let policy = iam
            .get_policy()
            .policy_arn(&arn)
            .send()
            .await
            .expect("the boundary exists")
            .policy
            .unwrap();
        let version = iam
            .get_policy_version()
            .policy_arn(&arn)
            .version_id(policy.default_version_id().unwrap())
            .send()
            .await
            .unwrap()
            .policy_version
            .unwrap();
        let document = version.document().unwrap();
        let decoded: String = form_urlencoded::parse(format!("d={document}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let stored: serde_json::Value = serde_json::from_str(&decoded)
            .unwrap_or_else(|_| serde_json::from_str(document).expect("the document is JSON"));
        let file: serde_json::Value =
            serde_json::from_str(cloudpulse_sandbox::moto::INSTANCE_BOUNDARY_DOCUMENT).unwrap();
        assert_eq!(stored, file);
        moto.reset().await.expect("reset");
    }
    moto.stop().await;
}
