//! `/healthz` answers anyone, so without the token it says only whether the
//! portal is up: not the account, the region or the endpoint.

use super::*;

/// 32 random bytes, as `openssl rand -base64 32` writes them.
pub const TOKEN: &str = "N1v8o2rJk7QxWc0bYp5tZ3mHs9dLfA6eUgRiT4yKqXw=";

fn keys(body: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn without_the_token_healthz_answers_only_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(dir.path(), &[], &[("CLOUDPULSE_TOKEN", TOKEN.into())]);
    let host = format!("127.0.0.1:{port}");

    let anonymous = get(port, "/healthz", &host, &[]).await;
    assert_eq!(anonymous.status, 200, "{anonymous:?}");
    assert_eq!(anonymous.json(), serde_json::json!({ "status": "ok" }));
    // A wrong token or a forged cookie is anonymous too.
    for header in [
        "Authorization: Bearer b7Yt2mQ9xK4pW0sLc8vN1fR5hJ3dZ6gA2eUoTiBqXyM=".to_string(),
        format!("Cookie: cloudpulse_session={TOKEN}"),
    ] {
        let answer = get(port, "/healthz", &host, &[&header]).await;
        assert_eq!(keys(&answer.json()), ["status"], "{header}");
    }

    let bearer = format!("Authorization: Bearer {TOKEN}");
    let detailed = get(port, "/healthz", &host, &[&bearer]).await.json();
    assert_eq!(
        keys(&detailed),
        ["cloud", "database", "status"],
        "{detailed}"
    );
    assert_eq!(detailed["cloud"]["mode"], "aws");
}

#[tokio::test]
async fn on_loopback_without_a_token_healthz_has_the_details() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, port) = serve(dir.path(), &[], &[]);
    let body = get(port, "/healthz", &format!("localhost:{port}"), &[])
        .await
        .json();
    assert_eq!(keys(&body), ["cloud", "database", "status"], "{body}");
}
