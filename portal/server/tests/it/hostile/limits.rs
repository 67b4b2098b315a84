//! Slow clients and floods: half-sent headers, idle connections, requests
//! that wait forever on the cloud, too many event streams, huge bodies.

use super::*;

use std::time::Instant;

use serde_json::json;

/// Reads from `stream` until the portal closes it; panics after a minute.
async fn closed_by_the_portal(mut stream: tokio::net::TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut bytes))
        .await
        .expect("the portal closes a connection whose headers never end")
        .ok();
    bytes
}

#[tokio::test]
async fn headers_that_never_end_and_idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(dir.path(), &["--header-timeout-secs", "1"], &[]);

    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    slow.write_all(
        format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ").as_bytes(),
    )
    .await
    .unwrap();
    let said = closed_by_the_portal(slow).await;
    assert!(
        said.is_empty() || String::from_utf8_lossy(&said).starts_with("HTTP/1.1 408"),
        "nothing but a timeout is answered: {:?}",
        String::from_utf8_lossy(&said)
    );

    // A connection that never sends a byte goes the same way.
    let idle = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    closed_by_the_portal(idle).await;

    // And a kept-alive connection that goes quiet after its request.
    let mut kept = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    kept.write_all(format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let said = closed_by_the_portal(kept).await;
    assert!(
        String::from_utf8_lossy(&said).starts_with("HTTP/1.1 200"),
        "{said:?}"
    );
}

/// A cloud endpoint that accepts connections and never answers.
async fn black_hole() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (port, task)
}

#[tokio::test]
async fn a_request_that_waits_on_a_silent_cloud_times_out_with_an_error() {
    let (cloud, _held) = black_hole().await;
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(
        dir.path(),
        &["--request-timeout-secs", "2"],
        &[("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{cloud}"))],
    );
    let host = format!("127.0.0.1:{port}");
    for (method, path) in [("GET", "/api/v1/orphans"), ("POST", "/api/v1/preflight")] {
        let answer = match method {
            "GET" => get(port, path, &host, &[]).await,
            _ => post(port, path, &host, &[], "application/json", "{}").await,
        };
        assert_eq!(answer.status, 504, "{path}: {answer:?}");
        let body = answer.json();
        assert_eq!(body["error"]["code"], "timeout", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("2 s"),
            "{body}"
        );
    }
    // What needs no cloud is still answered at once.
    assert_eq!(
        get(port, "/api/v1/deployments", &host, &[]).await.status,
        200
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(
        dir.path(),
        &["--max-connections", "2", "--header-timeout-secs", "120"],
        &[],
    );
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    // Let the portal accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let third =
        tokio::spawn(async move { get(port, "/healthz", &format!("127.0.0.1:{port}"), &[]).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !third.is_finished(),
        "a third connection is not served while two are open"
    );
    drop(idle.pop());
    let answer = tokio::time::timeout(Duration::from_secs(60), third)
        .await
        .expect("served once a connection is free")
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test]
async fn bodies_over_the_limit_are_answered_413() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(dir.path(), &[], &[]);
    let host = format!("127.0.0.1:{port}");
    let server_fn =
        <cloudpulse_app::pages::new::CreateDeployment as leptos::server_fn::ServerFn>::PATH;
    for (path, content_type) in [
        ("/api/v1/deployments", "application/json"),
        ("/api/v1/preflight", "application/json"),
        ("/api/v1/deployments/some-id/redeploy", "application/json"),
        ("/api/v1/deployments/some-id/stress", "application/json"),
        (
            "/deployments/some-id/budget",
            "application/x-www-form-urlencoded",
        ),
        (
            "/deployments/some-id/apply",
            "application/x-www-form-urlencoded",
        ),
        ("/api/v1/deployments/some-id/plan", "application/json"),
        (server_fn, "application/json"),
    ] {
        // Announced at 3 MB and never sent: the length alone is refused.
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            3 << 20
        );
        let answer = raw(port, &head).await;
        assert_eq!(
            answer.status, 413,
            "{path}: {} {}",
            answer.status, answer.body
        );
        assert_eq!(answer.json()["error"]["code"], "too_large", "{path}");
    }
    // Sent in chunks, with no length to refuse it by up front.
    let chunk = "y".repeat(32 << 10);
    let head = format!(
        "POST /api/v1/deployments HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let start = r#"{"name": "big", "padding": ""#;
    let mut body = vec![format!("{:x}\r\n{start}\r\n", start.len())];
    for _ in 0..8 {
        body.push(format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    body.push("2\r\n\"}\r\n0\r\n\r\n".to_string());
    let answer = raw_while_sending(port, &head, body).await;
    assert_eq!(answer.status, 413, "{} {}", answer.status, answer.body);
    assert_eq!(answer.json()["error"]["code"], "too_large");
    // A body of a normal size is read as before.
    let answer = post(
        port,
        "/api/v1/deployments",
        &host,
        &[],
        "application/json",
        "{",
    )
    .await;
    assert_eq!(answer.status, 400);
}

#[tokio::test]
async fn event_streams_are_capped_per_job_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("streams.db");
    // A NAT gateway pending for ten (sandbox) minutes keeps the job running.
    let portal = start(
        &on_free_port(
            "sandbox",
            &db,
            &["--time-scale", "0.2", "--nat-pending-secs", "3000"],
        ),
        dir.path(),
        &[],
    );
    let client = reqwest::Client::new();
    let (status, accepted) = post_json(
        &client,
        &format!("{}/api/v1/deployments", portal.url),
        json!({ "name": "streams", "nat": "single" }),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let job = accepted["job"]["id"].as_str().unwrap().to_string();
    let events = format!("{}/api/v1/jobs/{job}/events", portal.url);

    let mut open = Vec::new();
    for _ in 0..8 {
        let stream = client.get(&events).send().await.unwrap();
        assert_eq!(stream.status(), 200);
        open.push(stream);
    }
    let refused = client.get(&events).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(retry.parse::<u32>().is_ok_and(|s| s > 0), "{retry}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams", "{body}");
    // The job itself is still served, and a closed stream frees its place.
    let (status, _) = get_json(&format!("{}/api/v1/jobs/{job}", portal.url)).await;
    assert_eq!(status, 200);
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let again = client.get(&events).send().await.unwrap();
        if again.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed stream never freed its place"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
