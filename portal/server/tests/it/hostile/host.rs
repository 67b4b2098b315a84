//! DNS rebinding: a page at `rebind.example:PORT` made to resolve to
//! 127.0.0.1 reaches the portal with its own name in `Host`.

use super::*;

const ROUTES: &[&str] = &[
    "/healthz",
    "/",
    "/new",
    "/deployments/some-id",
    "/api/v1/deployments",
    "/api/v1/orphans",
    "/assets/cloudpulse.css",
    "/pkg/cloudpulse.js",
    "/login",
    "/no-such-page",
];

#[tokio::test]
async fn a_foreign_host_is_answered_421_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(dir.path(), &[], &[]);
    let evil = format!("rebind.example:{port}");
    for route in ROUTES {
        let answer = get(port, route, &evil, &["Sec-Fetch-Site: same-origin"]).await;
        assert_eq!(answer.status, 421, "GET {route}: {answer:?}");
        assert_eq!(answer.header("content-type"), Some("application/json"));
        let body = answer.json();
        assert_eq!(body["error"]["code"], "wrong_host", "{route}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--allowed-host"),
            "{body}"
        );
    }
    // The request: a rebound page's teardown, with every header a
    // same-origin request would carry.
    let origin = format!("Origin: http://{evil}");
    for path in [
        "/api/v1/deployments/some-id/teardown",
        "/api/v1/orphans/cleanup",
        "/api/v1/deployments",
        "/login",
    ] {
        let answer = post(
            port,
            path,
            &evil,
            &[&origin, "Sec-Fetch-Site: same-origin"],
            "application/json",
            "{}",
        )
        .await;
        assert_eq!(answer.status, 421, "POST {path}: {answer:?}");
    }
    // No Host at all, and an absolute target naming another host.
    let none = raw(port, "GET /healthz HTTP/1.0\r\n\r\n").await;
    assert_eq!(none.status, 421, "{none:?}");
    let absolute = raw(
        port,
        &format!(
            "GET http://rebind.example:{port}/healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Connection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(absolute.status, 421, "{absolute:?}");
    // Another port of loopback is another origin too.
    let other = get(port, "/healthz", &format!("localhost:{}", port + 1), &[]).await;
    assert_eq!(other.status, 421);
}

#[tokio::test]
async fn loopback_names_and_allowed_hosts_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(dir.path(), &["--allowed-host", "portal.example:8443"], &[]);
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        format!("[::1]:{port}"),
        "portal.example:8443".to_string(),
    ] {
        let answer = get(port, "/healthz", &host, &[]).await;
        assert_eq!(answer.status, 200, "{host}: {answer:?}");
        let page = get(port, "/", &host, &[]).await;
        assert_eq!(page.status, 200, "{host}: {page:?}");
    }
    assert_eq!(
        get(port, "/healthz", "portal.example", &[]).await.status,
        421,
        "a name with a port allows that port only"
    );

    // The variable, comma-separated (a flag would take its place).
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(
        dir.path(),
        &[],
        &[(
            "CLOUDPULSE_ALLOWED_HOSTS",
            "a.example, b.example:9000".to_string(),
        )],
    );
    for host in [
        "a.example".to_string(),
        format!("a.example:{port}"),
        "b.example:9000".to_string(),
        format!("localhost:{port}"),
    ] {
        assert_eq!(
            get(port, "/healthz", &host, &[]).await.status,
            200,
            "{host}"
        );
    }
    assert_eq!(get(port, "/healthz", "c.example", &[]).await.status, 421);
}

#[test]
fn a_malformed_allowed_host_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_to_end(
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--allowed-host",
            "https://portal.example/",
        ],
        dir.path(),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allowed-host"), "{stderr}");
    assert!(stderr.contains("portal.example.com:8443"), "{stderr}");
}
