//! The real `cloudpulse` binary, started as a process on a free port.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn an_unreachable_aws_endpoint_does_not_stop_the_portal() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let (portal, _) = serve(dir.path(), &[], &[("AWS_ENDPOINT_URL", endpoint.clone())]);

    // The first check fails fast against a closed port; wait for its verdict.
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let (status, body) = get_json(&format!("{}/healthz", portal.url)).await;
        assert_eq!(status, 200, "the portal itself is healthy: {body}");
        if body["cloud"]["reachable"]["state"] != "unknown" || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(health["database"], "ok");
    assert_eq!(health["cloud"]["mode"], "aws");
    assert_eq!(
        health["cloud"]["reachable"]["state"], "unreachable",
        "{health}"
    );
    let reason = health["cloud"]["reachable"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&endpoint),
        "the reason names the endpoint: {reason}"
    );

    let page = reqwest::get(&portal.url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("CloudPulse cannot reach"),
        "every page says so"
    );
    assert!(page.contains("cloud-unreachable"));
}

#[tokio::test]
async fn the_sandbox_serves_pages_api_and_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sandbox.db");
    let portal = start(&on_free_port("sandbox", &db, &[]), dir.path(), &[]);

    // The sandbox's cloud answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = get_json(&format!("{}/healthz", portal.url)).await;
        if body["cloud"]["reachable"]["state"] == "reachable" {
            assert_eq!(body["cloud"]["mode"], "sandbox");
            assert_eq!(body["cloud"]["account"], "123456789012");
            break;
        }
        assert!(Instant::now() < deadline, "sandbox never reachable: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The first page renders on the server, with a nonce on its scripts
    // that matches the policy.
    let response = reqwest::get(&portal.url).await.unwrap();
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    let html = response.text().await.unwrap();
    assert!(html.contains("<h1>Deployments</h1>"), "{html}");
    assert!(html.contains("Sandbox cloud"));
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("nonce in the policy");
    assert!(
        html.contains(&format!("nonce=\"{nonce}\"")),
        "scripts carry the nonce"
    );
    assert!(
        html.contains("/pkg/cloudpulse.js"),
        "the page loads the bundle"
    );

    // The REST API lists the same (empty) history.
    let (status, body) = get_json(&format!("{}/api/v1/deployments", portal.url)).await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 0);
    let (status, body) =
        get_json(&format!("{}/api/v1/deployments?status=running", portal.url)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("torn_down"));
    let (status, body) = get_json(&format!("{}/api/v1/nothing-here", portal.url)).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");

    // A browser POST from another site is refused.
    let client = reqwest::Client::new();
    let refused = client
        .post(format!("{}/api/v1/deployments", portal.url))
        .header("sec-fetch-site", "cross-site")
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // Compression is on for clients that ask.
    let css = client
        .get(format!("{}/assets/cloudpulse.css", portal.url))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["content-encoding"], "gzip");
}

/// A sandbox portal whose moto listens on a port of its own; and that port.
fn sandbox_and_its_moto(dir: &std::path::Path) -> (Portal, u16) {
    let moto_port = closed_port();
    let portal = start(
        &on_free_port(
            "sandbox",
            &dir.join("sandbox.db"),
            &["--moto-port", &moto_port.to_string()],
        ),
        dir,
        &[],
    );
    (portal, moto_port)
}

#[tokio::test]
async fn sigterm_stops_the_sandbox_and_its_moto() {
    let dir = tempfile::tempdir().unwrap();
    let (mut portal, moto_port) = sandbox_and_its_moto(dir.path());
    assert!(std::net::TcpStream::connect(("127.0.0.1", moto_port)).is_ok());
    let status = Command::new("kill")
        .args(["-TERM", &portal.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = portal.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the portal did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "graceful exit: {exit:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", moto_port)).is_err(),
        "moto's port is free again"
    );
}

#[tokio::test]
async fn killing_the_portal_takes_moto_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut portal, moto_port) = sandbox_and_its_moto(dir.path());
    portal.child.kill().unwrap(); // SIGKILL: no chance to clean up
    portal.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", moto_port)).is_ok() {
        assert!(Instant::now() < deadline, "moto outlived a killed portal");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_bad_bind_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_to_end(&["serve", "--bind", "localhost:http"], dir.path());
    let line = one_line_error(&output);
    assert!(line.contains("expected IP:PORT"), "{line}");
    let output = run_to_end(&["serve", "--bind", "0.0.0.0:3000"], dir.path());
    assert!(one_line_error(&output).contains("loopback"));
}

#[test]
fn a_corrupt_database_is_one_clear_line_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("broken.db");
    std::fs::write(&db, vec![0x42u8; 4096]).unwrap();
    let output = run_to_end(&on_free_port("serve", &db, &[]), dir.path());
    let line = one_line_error(&output);
    assert!(line.contains("corrupt"), "{line}");
    assert!(line.contains("broken.db"), "{line}");
    assert_eq!(std::fs::read(&db).unwrap(), vec![0x42u8; 4096]);
}

#[test]
fn an_unwritable_database_path_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    // A folder where the file should be cannot be opened, whoever runs this.
    let output = run_to_end(&on_free_port("serve", dir.path(), &[]), dir.path());
    assert!(one_line_error(&output).contains("writable"));
    let output = run_to_end(
        &on_free_port("serve", std::path::Path::new("/no/such/folder/x.db"), &[]),
        dir.path(),
    );
    assert!(one_line_error(&output).contains("does not exist"));
}

#[test]
fn a_moto_that_cannot_start_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    for (python, said) in [
        (
            "/no/such/python",
            ["sandbox cloud did not start", "/no/such/python"],
        ),
        // A python without moto: moto's own words reach the line.
        ("/usr/bin/python3", ["moto exited", "no moto[server]"]),
    ] {
        let output = run_to_end(
            &on_free_port(
                "sandbox",
                &dir.path().join("s.db"),
                &["--moto-python", python],
            ),
            dir.path(),
        );
        let line = one_line_error(&output);
        for words in said {
            assert!(line.contains(words), "{line}");
        }
    }
}
