//! The real binary against moto and an IMDSv2 emulator.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn assert_common_headers(headers: &reqwest::header::HeaderMap) {
    let id = headers["x-correlation-id"].to_str().unwrap();
    let id = uuid::Uuid::parse_str(id).expect("correlation id is a uuid");
    assert_eq!(id.get_version_num(), 4);
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn endpoints_answer_with_the_original_json_shapes() {
    let moto = moto_with_group("web-asg").await;
    let imds = Imds::start(21600).await;
    let service = Service::start(&[
        ("ASG_NAME", "web-asg"),
        ("AWS_ENDPOINT_URL", &moto.endpoint()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint),
    ])
    .await;

    let (status, headers, body) = get_json(&service.url("/health")).await;
    assert_eq!((status, &body), (200, &json!({"status": "healthy"})));
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
    assert_common_headers(&headers);

    let (status, headers, body) = get_json(&service.url("/api/status")).await;
    assert_eq!(status, 200, "{body}");
    assert_common_headers(&headers);
    assert_eq!(keys(&body), ["cpuUsage", "instanceId", "uptime"]);
    assert_eq!(body["instanceId"], INSTANCE_ID);
    assert!(body["uptime"].is_u64());
    let cpu = body["cpuUsage"].as_f64().expect("cpuUsage is a number");
    assert!((0.0..=100.0).contains(&cpu));
    assert_eq!((cpu * 10.0).round() / 10.0, cpu, "one decimal");

    let (status, _, body) = get_json(&service.url("/api/instances")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body), ["capacity", "instances"]);
    assert_eq!(
        body["capacity"],
        json!({"min": 1, "max": 3, "desired": 2, "actual": 2})
    );
    let instances = body["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2);
    for instance in instances {
        assert_eq!(
            keys(instance),
            ["availabilityZone", "healthStatus", "instanceId", "state"]
        );
        assert!(instance["instanceId"].as_str().unwrap().starts_with("i-"));
        assert_eq!(instance["state"], "running");
        assert_eq!(instance["healthStatus"], "Healthy");
        assert_eq!(instance["availabilityZone"], AZ);
    }

    let (status, headers, body) = get_json(&service.url("/no/such/page")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "Not found");
    assert_eq!(
        body["correlationId"],
        headers["x-correlation-id"].to_str().unwrap()
    );
    let response = client().post(service.url("/health")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert!(response.headers().contains_key("x-correlation-id"));

    let big = client()
        .get(service.url("/health"))
        .body(vec![b'x'; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status().as_u16(), 413);

    moto.stop().await;
}

#[tokio::test]
async fn dashboard_shows_instance_group_and_who_served_it() {
    let moto = moto_with_group("dash-asg").await;
    let imds = Imds::start(21600).await;
    let service = Service::start(&[
        ("ASG_NAME", "dash-asg"),
        ("AWS_ENDPOINT_URL", &moto.endpoint()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint),
        ("DASHBOARD_REFRESH_MS", "5000"),
    ])
    .await;
    let response = client().get(service.url("/")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_common_headers(response.headers());
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let html = response.text().await.unwrap();
    assert!(html.contains(&format!("Served by <strong>{INSTANCE_ID} ({AZ})</strong>")));
    assert!(html.contains("<dt>Desired</dt><dd>2</dd>"));
    assert!(html.contains(r#"data-refresh-ms="5000""#));
    assert_eq!(
        html.matches("<td class=\"status-healthy\">Healthy</td>")
            .count(),
        2
    );
    assert!(html.contains("Recent Scaling Events"));
    assert!(!html.contains("error-box"), "{html}");
    assert!(!html.contains("<script>"), "no inline script");

    let script = client()
        .get(service.url("/dashboard.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status().as_u16(), 200);
    assert!(script.text().await.unwrap().contains("DOMParser"));
    moto.stop().await;
}

#[tokio::test]
async fn unknown_group_is_an_empty_list_not_an_error() {
    let moto = moto_with_group("real-asg").await;
    let service = Service::start(&[
        ("ASG_NAME", "no-such-asg"),
        ("AWS_ENDPOINT_URL", &moto.endpoint()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &closed_port()),
    ])
    .await;
    let (status, _, body) = get_json(&service.url("/api/instances")).await;
    assert_eq!(
        (status, body),
        (200, json!({"instances": [], "capacity": null}))
    );
    moto.stop().await;
}

#[tokio::test]
async fn aws_down_fails_fast_and_the_dashboard_marks_sections() {
    let imds = Imds::start(21600).await;
    let service = Service::start(&[
        ("ASG_NAME", "web-asg"),
        ("AWS_ENDPOINT_URL", &closed_port()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint),
    ])
    .await;
    let started = Instant::now();
    let (status, headers, body) = get_json(&service.url("/api/instances")).await;
    assert_eq!(status, 500);
    assert_common_headers(&headers);
    assert_eq!(keys(&body), ["error"]);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .starts_with("Failed to describe instances"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let response = client().get(service.url("/")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains(r#"data-testid="instances-error""#));
    assert!(html.contains(r#"data-testid="capacity-error""#));
    assert!(html.contains(r#"data-testid="activities-error""#));
    assert!(html.contains(INSTANCE_ID), "identity still shown");

    let (status, _, _) = get_json(&service.url("/health")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_hanging_aws_call_is_bounded() {
    let service = Service::start(&[
        ("ASG_NAME", "web-asg"),
        ("AWS_ENDPOINT_URL", &hanging_endpoint().await),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &closed_port()),
        ("AWS_TIMEOUT_MS", "1000"),
    ])
    .await;
    let started = Instant::now();
    let (status, _, body) = get_json(&service.url("/api/instances")).await;
    assert_eq!(status, 500, "{body}");
    let response = client().get(service.url("/")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.text().await.unwrap().contains("instances-error"));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // /health never waits on AWS.
    let started = Instant::now();
    let (status, _, _) = get_json(&service.url("/health")).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn without_imds_health_stays_up_and_status_says_why() {
    let service = Service::without_aws(&[]).await;
    let (status, _, body) = get_json(&service.url("/health")).await;
    assert_eq!((status, body), (200, json!({"status": "healthy"})));
    let (status, _, body) = get_json(&service.url("/api/status")).await;
    assert_eq!(
        (status, body),
        (500, json!({"error": "Failed to acquire IMDSv2 token"}))
    );
}

#[tokio::test]
async fn imds_token_is_renewed_when_it_expires() {
    // Tokens live one second; metadata is broken for the first three, so the
    // identity can only be learned with a token fetched after the first ones
    // expired. The original's token-forever cache never recovers here.
    let imds = Imds::start(1).await;
    imds.state.lock().unwrap().broken_until = Some(Instant::now() + Duration::from_secs(3));
    let service = Service::start(&[
        ("ASG_NAME", "web-asg"),
        ("AWS_ENDPOINT_URL", &closed_port()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint),
    ])
    .await;
    let (status, _, _) = get_json(&service.url("/api/status")).await;
    assert_eq!(status, 500);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, body) = get_json(&service.url("/api/status")).await;
        if status == 200 {
            assert_eq!(body["instanceId"], INSTANCE_ID);
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let state = imds.state.lock().unwrap();
    assert!(state.tokens_issued >= 2, "{}", state.tokens_issued);
    assert_eq!(state.expired_rejected, 0, "used an expired token");
}

#[tokio::test]
async fn sigterm_turns_health_503_and_lets_requests_finish() {
    let mut service = Service::start(&[
        ("ASG_NAME", "web-asg"),
        ("AWS_ENDPOINT_URL", &hanging_endpoint().await),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &closed_port()),
        ("AWS_TIMEOUT_MS", "2000"),
        ("DRAIN_GRACE_MS", "1000"),
        ("DRAIN_TIMEOUT_MS", "6000"),
    ])
    .await;
    // A request that will be in flight when the signal arrives.
    let slow = tokio::spawn(get_json(service.url("/api/instances").leak()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    service.sigterm();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _, body) = get_json(&service.url("/health")).await;
    assert_eq!((status, body), (503, json!({"status": "unhealthy"})));

    let (status, _, body) = slow.await.unwrap();
    assert_eq!(status, 500, "the in-flight request got its answer: {body}");
    let exit = service
        .wait_exit(Duration::from_secs(8))
        .await
        .expect("exited");
    assert!(exit.success(), "{exit}");
    assert!(signalled.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn drain_timeout_bounds_the_exit() {
    let mut service = Service::start(&[
        ("ASG_NAME", "web-asg"),
        ("AWS_ENDPOINT_URL", &hanging_endpoint().await),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &closed_port()),
        ("AWS_TIMEOUT_MS", "30000"),
        ("REQUEST_TIMEOUT_MS", "30000"),
        ("DRAIN_GRACE_MS", "0"),
        ("DRAIN_TIMEOUT_MS", "700"),
    ])
    .await;
    let _slow = tokio::spawn(get_json(service.url("/api/instances").leak()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    service.sigterm();
    let exit = service
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exited within the drain time");
    let took = signalled.elapsed();
    assert!(exit.success(), "{exit}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(took >= Duration::from_millis(600), "{took:?}");
}

#[tokio::test]
async fn missing_asg_name_exits_1_with_a_clear_message() {
    let output = command(&[]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Configuration error: Missing required environment variable: ASG_NAME"),
        "{stderr}"
    );
    let output = command(&[("ASG_NAME", "a"), ("PORT", "abc")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("PORT must be a port number"));
}

#[tokio::test]
async fn env_file_is_read_and_the_real_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("instance.env");
    std::fs::write(
        &file,
        "# written by user data\nASG_NAME=from-file\nDASHBOARD_REFRESH_MS=7000\n",
    )
    .unwrap();
    let service = Service::start(&[
        ("CLOUDPULSE_ENV_FILE", file.to_str().unwrap()),
        ("DASHBOARD_REFRESH_MS", "9000"),
        ("AWS_ENDPOINT_URL", &closed_port()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &closed_port()),
    ])
    .await;
    let html = get_text(&service.url("/")).await;
    assert!(html.contains("<strong>from-file</strong>"));
    assert!(html.contains(r#"data-refresh-ms="9000""#));

    let output = command(&[("CLOUDPULSE_ENV_FILE", "/no/such/file.env")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/no/such/file.env"));
}

#[tokio::test]
async fn aws_answers_are_cached_between_refreshes() {
    let moto = moto_with_group("cache-asg").await;
    let service = Service::start(&[
        ("ASG_NAME", "cache-asg"),
        ("AWS_ENDPOINT_URL", &moto.endpoint()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &closed_port()),
        ("AWS_CACHE_TTL_MS", "60000"),
    ])
    .await;
    let (_, _, before) = get_json(&service.url("/api/instances")).await;
    // Change the group behind the service's back: the cached answer stays.
    aws_sdk_autoscaling::Client::new(&moto.sdk_config())
        .update_auto_scaling_group()
        .auto_scaling_group_name("cache-asg")
        .max_size(5)
        .send()
        .await
        .unwrap();
    let (_, _, after) = get_json(&service.url("/api/instances")).await;
    assert_eq!(before, after);
    assert_eq!(after["capacity"]["max"], 3);
    moto.stop().await;
}

#[tokio::test]
async fn fail_health_turns_health_503_for_the_time_asked_and_stress_exits() {
    let control = tempfile::tempdir().unwrap();
    let control_dir = control.path().to_str().unwrap();
    let service = Service::without_aws(&[("CONTROL_DIR", control_dir)]).await;
    let (status, _, _) = get_json(&service.url("/health")).await;
    assert_eq!(status, 200);

    // The command a Run Command carries: it returns at once and the
    // running service answers 503 until the time is up.
    let output = command(&[("CONTROL_DIR", control_dir)])
        .args(["fail-health", "--seconds", "2"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let failed_at = Instant::now();
    let (status, _, body) = get_json(&service.url("/health")).await;
    assert_eq!((status, body), (503, json!({"status": "unhealthy"})));
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let (status, _, _) = get_json(&service.url("/health")).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "health never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failed_at.elapsed() >= Duration::from_millis(1_800));

    let output = command(&[])
        .args(["stress", "--seconds", "1", "--workers", "1"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let output = command(&[])
        .args(["stress", "--seconds", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--seconds must be"));
    let output = command(&[]).arg("explode").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown command"));
}
