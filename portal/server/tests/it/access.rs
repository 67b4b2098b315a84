//! Access control beyond loopback: the real binary, real HTTP.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::StatusCode;

/// 32 random bytes, as `openssl rand -base64 32` writes them.
const TOKEN: &str = "N1v8o2rJk7QxWc0bYp5tZ3mHs9dLfA6eUgRiT4yKqXw=";
const OTHER_TOKEN: &str = "b7Yt2mQ9xK4pW0sLc8vN1fR5hJ3dZ6gA2eUoTiBqXyM=";

/// `cloudpulse` with no token from the caller's environment.
fn cloudpulse(args: &[&str], dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    isolated(&mut command, dir);
    command
        .env_remove("CLOUDPULSE_TOKEN")
        .env_remove("CLOUDPULSE_TOKEN_FILE");
    command
}

fn serve_args(db: &Path, bind: &str) -> Vec<String> {
    vec![
        "serve".into(),
        "--bind".into(),
        bind.into(),
        "--database".into(),
        db.to_str().unwrap().into(),
    ]
}

fn refused(bind: &str, token: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let args = serve_args(&dir.path().join("portal.db"), bind);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = cloudpulse(&args, dir.path());
    if let Some(token) = token {
        command.env("CLOUDPULSE_TOKEN", token);
    }
    let output: Output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        !dir.path().join("portal.db").exists(),
        "nothing is created before the check"
    );
    one_line_error(&output)
}

/// A portal on `bind` with `token`, its cloud unreachable, and its URL on 127.0.0.1.
fn portal(dir: &Path, bind: &str, token: &str) -> (Portal, String) {
    let args = serve_args(&dir.join("portal.db"), bind);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let portal = start(
        &args,
        dir,
        &[
            ("AWS_ENDPOINT_URL", endpoint),
            ("CLOUDPULSE_TOKEN", token.to_string()),
        ],
    );
    let port = portal.url.rsplit(':').next().unwrap().to_string();
    (portal, format!("http://127.0.0.1:{port}"))
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

#[test]
fn beyond_loopback_without_a_token_the_portal_refuses_to_start() {
    let line = refused("0.0.0.0:0", None);
    assert!(line.contains("without an access token"), "{line}");
    assert!(line.contains("CLOUDPULSE_TOKEN"), "{line}");
    assert!(line.contains("openssl rand -base64 32"), "{line}");
}

#[test]
fn a_weak_token_is_refused_without_echoing_it() {
    for weak in [
        "hunter2hunter2",
        &"A".repeat(64),
        &"0123456789abcdef".repeat(4),
    ] {
        let line = refused("0.0.0.0:0", Some(weak));
        assert!(line.contains("CLOUDPULSE_TOKEN is too weak"), "{line}");
        assert!(line.contains("openssl rand"), "{line}");
        assert!(!line.contains(weak), "the token is never printed: {line}");
    }
    // Also on loopback: a token that is set is checked.
    let line = refused("127.0.0.1:0", Some("short"));
    assert!(line.contains("too weak"), "{line}");
}

#[tokio::test]
async fn scripts_need_the_bearer_token_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, url) = portal(dir.path(), "0.0.0.0:0", TOKEN);
    let http = http();

    let health = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "health needs no token");
    let css = http
        .get(format!("{url}/assets/cloudpulse.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        css.status(),
        StatusCode::OK,
        "the stylesheet needs no token"
    );

    let api = format!("{url}/api/v1/deployments");
    let anonymous = http.get(&api).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Bearer"));

    let ok = http.get(&api).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(body["items"], serde_json::json!([]), "{body}");

    for wrong in [OTHER_TOKEN, "x", &TOKEN[..TOKEN.len() - 1]] {
        let response = http.get(&api).bearer_auth(wrong).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{wrong}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }

    // A state-changing call without the token changes nothing.
    let post = http
        .post(&api)
        .json(&serde_json::json!({ "name": "nope" }))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn browsers_sign_in_with_a_form_and_a_derived_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, url) = portal(dir.path(), "0.0.0.0:0", TOKEN);
    let http = http();

    let home = http.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(home.headers()[LOCATION], "/login");

    let form = http.get(format!("{url}/login")).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let csp = form.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self' 'nonce-"), "{csp}");
    let html = form.text().await.unwrap();
    assert!(
        html.contains(r#"<form method="post" action="/login""#),
        "{html}"
    );
    assert!(html.contains(r#"name="token""#));
    assert!(html.contains(r#"href="/assets/cloudpulse.css""#));
    assert!(!html.contains("<script"), "no inline script under the CSP");

    let wrong = http
        .post(format!("{url}/login"))
        .form(&[("token", OTHER_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none(), "nothing is set");
    let html = wrong.text().await.unwrap();
    assert!(html.contains("not this portal's access token"), "{html}");
    assert!(html.contains(r#"name="token""#), "the form again");

    let right = http
        .post(format!("{url}/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(right.headers()[LOCATION], "/");
    let set_cookie = right.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        set_cookie.starts_with("cloudpulse_session="),
        "{set_cookie}"
    );
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(set_cookie.contains("Path=/"), "{set_cookie}");
    assert!(
        !set_cookie.contains(TOKEN.trim_end_matches('=')),
        "the cookie is not the token: {set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_string();

    let home = http
        .get(format!("{url}/"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::OK);
    assert!(home.text().await.unwrap().contains("CloudPulse"));
    let api = http
        .get(format!("{url}/api/v1/deployments"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        api.status(),
        StatusCode::OK,
        "the page's own API calls pass"
    );

    // A forged cookie is no session.
    let forged = http
        .get(format!("{url}/api/v1/deployments"))
        .header(COOKIE, format!("cloudpulse_session={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    let logout = http
        .post(format!("{url}/logout"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let cleared = logout.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[tokio::test]
async fn sign_in_from_another_site_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, url) = portal(dir.path(), "0.0.0.0:0", TOKEN);
    let response = http()
        .post(format!("{url}/login"))
        .header("sec-fetch-site", "cross-site")
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get(SET_COOKIE).is_none());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "cross_site");
}

#[tokio::test]
async fn a_token_set_on_loopback_is_enforced_and_the_cli_sends_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_portal, url) = portal(dir.path(), "127.0.0.1:0", TOKEN);
    let anonymous = http()
        .get(format!("{url}/api/v1/deployments"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let status = |token: Option<&str>| {
        let mut command = cloudpulse(&["status", "--portal", &url], dir.path());
        if let Some(token) = token {
            command.env("CLOUDPULSE_TOKEN", token);
        }
        command.output().unwrap()
    };
    let output = status(Some(TOKEN));
    assert!(output.status.success(), "{output:?}");
    let line = one_line_error(&status(None));
    assert!(line.contains("HTTP 401"), "{line}");
    assert!(line.contains("CLOUDPULSE_TOKEN"), "{line}");
    let line = one_line_error(&status(Some(OTHER_TOKEN)));
    assert!(line.contains("HTTP 401"), "{line}");
}

#[tokio::test]
async fn the_token_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let args = serve_args(&dir.path().join("portal.db"), "0.0.0.0:0");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--token-file", file.to_str().unwrap()]);
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let portal = start(
        &args,
        dir.path(),
        &[
            ("AWS_ENDPOINT_URL", endpoint),
            ("CLOUDPULSE_TOKEN", String::new()),
        ],
    );
    let port = portal.url.rsplit(':').next().unwrap();
    let api = format!("http://127.0.0.1:{port}/api/v1/deployments");
    let http = http();
    assert_eq!(
        http.get(&api).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let ok = http
        .get(&api)
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}
