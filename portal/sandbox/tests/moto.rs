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
