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
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.9.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc
        .unwrap()
        .vpc_id
        .unwrap();
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
