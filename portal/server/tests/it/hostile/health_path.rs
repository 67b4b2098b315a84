//! A deployment's health-check path reaches the load balancer's API as it
//! is; anything but RFC 3986 path characters is refused before anything is
//! checked or created.

use super::*;

#[tokio::test]
async fn health_check_paths_take_rfc_3986_characters_only() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(dir.path(), &[], &[]);
    let host = format!("127.0.0.1:{port}");
    for path in [
        "/he\u{0}alth",
        "/he\u{1b}[31malth",
        "/santé",
        "/a b",
        "/a\tb",
        "/a\"b",
        "/a<b>",
        "/a#b",
        "/50%",
        "/%zz",
        "/a\\b",
        "/a{b}",
        "health",
    ] {
        let body = serde_json::json!({ "health_check": { "path": path } }).to_string();
        let answer = post(
            port,
            "/api/v1/preflight",
            &host,
            &[],
            "application/json",
            &body,
        )
        .await;
        assert_eq!(answer.status, 400, "{path:?}: {answer:?}");
        let body = answer.json();
        let message = body["error"]["fields"]["health_check.path"]
            .as_str()
            .unwrap_or_else(|| panic!("{path:?}: {body}"));
        assert!(message.contains("like /health"), "{message}");
    }
}
