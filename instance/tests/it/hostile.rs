//! Hostile input to the instance service: what a stranger who reaches its
//! port (open to the load balancer, and so to the internet through it) can
//! send or learn, and what the service user (who owns the control
//! directory that root's `fail-health` writes to) can plant there.

use crate::common;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::*;

const ACCOUNT: &str = "123456789012";
const ROLE_ARN: &str =
    "arn:aws:sts::123456789012:assumed-role/cloudpulse-0f1e2d3c-ec2-role/i-0123456789abcdef0";

/// An AWS endpoint that refuses every call as IAM refuses an instance role
/// that lacks a permission: the message names the role and the account.
async fn denying_endpoint() -> String {
    let denied = || async {
        (
            StatusCode::FORBIDDEN,
            [("content-type", "text/xml")],
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\
                 <Message>User: {ROLE_ARN} is not authorized to perform: \
                 autoscaling:DescribeAutoScalingGroups because no identity-based policy allows \
                 the autoscaling:DescribeAutoScalingGroups action</Message></Error>\
                 <RequestId>4c2a9f5e-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
            ),
        )
            .into_response()
    };
    let app = axum::Router::new().fallback(denied);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn what_aws_refused_is_logged_but_never_shown() {
    let imds = Imds::start(21600).await;
    let service = Service::start(&[
        ("ASG_NAME", "web-asg"),
        ("AWS_ENDPOINT_URL", &denying_endpoint().await),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint),
    ])
    .await;
    let (status, _, body) = get_json(&service.url("/api/instances")).await;
    assert_eq!(status, 500, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.starts_with("Failed to describe instances"), "{error}");
    let html = get_text(&service.url("/")).await;
    assert!(html.contains(r#"data-testid="instances-error""#), "{html}");
    for shown in [error, html.as_str()] {
        assert!(
            !shown.contains(ACCOUNT)
                && !shown.contains("arn:aws")
                && !shown.contains("assumed-role"),
            "AWS's words reach the page: {shown}"
        );
    }
    // Whoever runs the instance still learns what went wrong.
    let log = service.log().join("\n");
    assert!(
        log.contains(ROLE_ARN) && log.contains("AccessDenied"),
        "{log}"
    );
}

/// Milliseconds since the epoch, `seconds` from now.
fn in_seconds(seconds: u64) -> u128 {
    (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + seconds) as u128
        * 1000
}

#[tokio::test]
async fn what_the_service_user_plants_in_the_control_directory_breaks_nothing() {
    let control = tempfile::tempdir().unwrap();
    let dir = control.path();
    let control_dir = dir.to_str().unwrap();
    let service = Service::without_aws(&[("CONTROL_DIR", control_dir)]).await;
    let health = || async { get_json(&service.url("/health")).await.0 };
    let file = dir.join("fail-health-until");

    // A link to a deadline elsewhere, and a file far longer than a
    // deadline, are not the command's: health passes.
    let elsewhere = dir.join("elsewhere");
    std::fs::write(&elsewhere, format!("{}\n", in_seconds(600))).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
    assert_eq!(health().await, 200);
    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, format!("{}{}\n", "0".repeat(64), in_seconds(600))).unwrap();
    assert_eq!(health().await, 200);
    std::fs::remove_file(&file).unwrap();

    // Root's command (the SSM agent runs it as root) writes through no link
    // the service's user left for it: not at the name it used to write
    // first, nor at the file's own name.
    let victim = dir.join("victim");
    std::fs::write(&victim, "root's own file\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("fail-health-until.partial")).unwrap();
    std::os::unix::fs::symlink(&victim, &file).unwrap();
    let output = command(&[("CONTROL_DIR", control_dir)])
        .args(["fail-health", "--seconds", "60"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "root's own file\n"
    );
    assert!(std::fs::symlink_metadata(&file).unwrap().is_file());
    assert_eq!(health().await, 503);
}

#[tokio::test]
async fn oversized_and_odd_requests_get_an_answer_and_the_service_stays_up() {
    let service = Service::without_aws(&[]).await;
    let http = client();
    // A header far past what any browser sends.
    let huge = http
        .get(service.url("/health"))
        .header("x-filler", "a".repeat(1024 * 1024))
        .send()
        .await;
    if let Ok(response) = huge {
        assert!(
            response.status().is_client_error(),
            "{:?}",
            response.status()
        );
    }
    // A path that climbs out of the site, and one full of escapes.
    for path in [
        "/dashboard.js/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%00",
        "/api/%ff",
    ] {
        let response = http.get(service.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert!(status == 404 || status == 400, "{path}: {status} {body}");
        assert!(!body.contains("root:"), "{path}: {body}");
    }
    // A body over the limit on a route that takes none.
    let big = http
        .post(service.url("/health"))
        .body(vec![b'x'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert!(big.status().is_client_error(), "{:?}", big.status());
    // Through all of it the service kept answering.
    let (status, _, _) = get_json(&service.url("/health")).await;
    assert_eq!(status, 200);
}
