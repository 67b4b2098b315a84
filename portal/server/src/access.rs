//! Who may use the portal: the access token, the sign-in page and the guard
//! every request passes when a token is configured.
//!
//! On loopback the portal is open unless a token is set; anywhere else a
//! token is required (see [`crate::config::ServeArgs::listen`]). Scripts and
//! the CLI send it as `Authorization: Bearer <token>`; browsers sign in once
//! at `/login` and then carry a random session cookie kept server-side (see
//! [`crate::sessions`]). The token is never logged, never stored, and only
//! ever compared in constant time.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::ApiError;
use crate::sessions::{Session, Sessions, Throttle};

/// The environment variable holding the access token.
pub const TOKEN_ENV: &str = "CLOUDPULSE_TOKEN";
/// The environment variable naming a file that holds it (`--token-file`).
pub const TOKEN_FILE_ENV: &str = "CLOUDPULSE_TOKEN_FILE";
/// The browser's session cookie.
pub const SESSION_COOKIE: &str = "cloudpulse_session";
/// How to make a good token, for every message that asks for one.
pub const MAKE_ONE: &str =
    "make one with `openssl rand -base64 32` (or `head -c 32 /dev/urandom | base64`)";

/// What the token's tag (which sessions belong to it) is derived from; a
/// new value here signs every browser out.
const SESSION_LABEL: &[u8] = b"cloudpulse-session v2";
/// 32 random bytes: 64 hex digits or 43 base64 characters.
const MIN_HEX_LEN: usize = 64;
const MIN_LEN: usize = 43;
/// Random tokens of the lengths above practically never fall below these.
const MIN_DISTINCT_CHARS: usize = 10;
const MAX_SEQUENTIAL_RUN: usize = 7;

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WeakToken {
    #[error("it is empty")]
    Empty,
    #[error("it may only hold printable ASCII without spaces, as base64 or hex do")]
    Characters,
    #[error("it is {len} hex digits long; 32 random bytes take {MIN_HEX_LEN}")]
    ShortHex { len: usize },
    #[error(
        "it is {len} characters long; 32 random bytes take at least {MIN_LEN} \
         (base64) or {MIN_HEX_LEN} (hex)"
    )]
    Short { len: usize },
    #[error("it uses only {distinct} different characters")]
    FewCharacters { distinct: usize },
    #[error("it repeats a short pattern")]
    Repetitive,
    #[error("it contains a run of consecutive characters such as abcdefgh or 12345678")]
    Sequential,
}

/// The configured access token, kept only as what the checks need: its
/// digest and the tag its sessions carry.
#[derive(Clone)]
pub struct AccessToken {
    token_digest: [u8; 32],
    tag: String,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

impl AccessToken {
    /// Accepts a token of at least 32 random bytes' worth of text; spaces
    /// and line ends around it (as `openssl` writes) are ignored.
    pub fn parse(text: &str) -> Result<Self, WeakToken> {
        let token = text.trim_matches(|c: char| c.is_ascii_whitespace());
        check_strength(token)?;
        // HMAC keyed by the token: names the token's sessions, cannot be
        // turned back into it, and is the same after a restart.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes())
            .map_err(|_| WeakToken::Empty)?;
        mac.update(SESSION_LABEL);
        Ok(AccessToken {
            token_digest: sha256(token.as_bytes()),
            tag: hex::encode(mac.finalize().into_bytes()),
        })
    }

    /// Whether `candidate` is the token (surrounding spaces ignored).
    pub fn matches(&self, candidate: &str) -> bool {
        let candidate = candidate.trim_matches(|c: char| c.is_ascii_whitespace());
        secret_eq(candidate.as_bytes(), &self.token_digest)
    }

    /// What the sessions signed in with this token carry.
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compares a secret with the digest of the expected one in constant time.
/// Hashing first makes the comparison equal-length, so neither the content
/// nor the length of the candidate shows in the time it takes.
pub fn secret_eq(candidate: &[u8], expected_digest: &[u8; 32]) -> bool {
    sha256(candidate).ct_eq(expected_digest).into()
}

fn check_strength(token: &str) -> Result<(), WeakToken> {
    if token.is_empty() {
        return Err(WeakToken::Empty);
    }
    let bytes = token.as_bytes();
    if !bytes.iter().all(u8::is_ascii_graphic) {
        return Err(WeakToken::Characters);
    }
    let len = bytes.len();
    if bytes.iter().all(u8::is_ascii_hexdigit) {
        if len < MIN_HEX_LEN {
            return Err(WeakToken::ShortHex { len });
        }
    } else if len < MIN_LEN {
        return Err(WeakToken::Short { len });
    }
    let distinct = bytes.iter().collect::<HashSet<_>>().len();
    if distinct < MIN_DISTINCT_CHARS {
        return Err(WeakToken::FewCharacters { distinct });
    }
    // Random text has nearly as many different pairs as pairs; a repeated
    // pattern has no more than its period.
    let pairs = bytes.windows(2).collect::<HashSet<_>>().len();
    if pairs * 2 < len - 1 {
        return Err(WeakToken::Repetitive);
    }
    let mut run = 1;
    for window in bytes.windows(3) {
        let step = i16::from(window[1]) - i16::from(window[0]);
        let next = i16::from(window[2]) - i16::from(window[1]);
        run = if step.abs() == 1 && step == next {
            run + 1
        } else {
            1
        };
        // `run` counts equal steps; a run of n steps spans n + 1 characters.
        if run + 1 > MAX_SEQUENTIAL_RUN {
            return Err(WeakToken::Sequential);
        }
    }
    Ok(())
}

/// The token, its sessions and the throttle of failed attempts: what the
/// guard and the sign-in routes share.
#[derive(Clone)]
pub struct Access {
    token: AccessToken,
    sessions: Sessions,
    throttle: Arc<Throttle>,
}

impl Access {
    pub fn new(token: AccessToken, sessions: Sessions) -> Self {
        Access {
            token,
            sessions,
            throttle: Arc::default(),
        }
    }

    async fn credential(&self, headers: &HeaderMap) -> Credential {
        if let Some(candidate) = bearer(headers) {
            return if self.token.matches(candidate) {
                Credential::Valid
            } else {
                Credential::WrongBearer
            };
        }
        for cookie in session_cookies(headers) {
            match self.sessions.check(cookie).await {
                Ok(Some(Session::Valid)) => return Credential::Valid,
                Ok(Some(Session::Slid)) => return Credential::Slid(cookie.to_string()),
                Ok(None) => {}
                Err(error) => tracing::error!(%error, "cannot read the sessions"),
            }
        }
        Credential::Missing
    }

    fn cookie(&self, value: &str) -> String {
        format!(
            "{SESSION_COOKIE}={value}; {COOKIE_ATTRIBUTES}; Max-Age={}",
            self.sessions.max_age()
        )
    }
}

/// Adds the sign-in routes to `app` and puts every other route behind the
/// token. The sign-in routes are added after the guard, so it never wraps them.
pub fn guard(app: Router, access: Access) -> Router {
    app.layer(axum::middleware::from_fn_with_state(
        access.clone(),
        require,
    ))
    .merge(
        Router::new()
            .route("/login", get(login_page).post(login))
            .route("/logout", post(logout))
            .with_state(access),
    )
}

/// Paths anyone may fetch: the health check and the static files the
/// sign-in page needs. Exact paths, matched as the router matches them.
fn is_public(path: &str) -> bool {
    path == "/healthz"
        || path == cloudpulse_app::shell::STYLESHEET_PATH
        || path.starts_with("/pkg/")
}

enum Credential {
    Valid,
    /// A session whose expiry moved: its cookie is set again.
    Slid(String),
    WrongBearer,
    Missing,
}

impl Credential {
    fn valid(&self) -> bool {
        matches!(self, Credential::Valid | Credential::Slid(_))
    }
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let text = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = text.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest)
}

/// The address a request came from (as the server saw it: behind a proxy,
/// the proxy's).
fn client(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip())
}

fn throttled(wait: Duration) -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!(
            "too many wrong access tokens from this address; try again in {} s",
            wait.as_secs()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs()));
    response
}

fn session_cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// Marks a request to a public path that carries no valid credential, so
/// `/healthz` knows to say no more than whether the portal is up.
#[derive(Clone, Copy, Debug)]
pub struct Anonymous;

/// Lets a request through with a valid bearer token or session cookie.
/// Otherwise a browser asking for a page is sent to sign in, and everything
/// else gets a 401 in the API's error shape. A wrong bearer token counts as
/// a failed attempt of its address, as a wrong token at `/login` does.
async fn require(State(access): State<Access>, mut request: Request, next: Next) -> Response {
    let ip = client(&request);
    if bearer(request.headers()).is_some() {
        if let Some(wait) = access.throttle.wait(ip) {
            return throttled(wait);
        }
    }
    let credential = access.credential(request.headers()).await;
    if matches!(credential, Credential::WrongBearer) {
        access.throttle.failed(ip);
    }
    if is_public(request.uri().path()) {
        if !credential.valid() {
            request.extensions_mut().insert(Anonymous);
        }
        return next.run(request).await;
    }
    match credential {
        Credential::Valid => next.run(request).await,
        Credential::Slid(value) => {
            let mut response = next.run(request).await;
            if let Ok(cookie) = HeaderValue::from_str(&access.cookie(&value)) {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
        Credential::WrongBearer => unauthorized(
            "the bearer token is not this portal's access token; check CLOUDPULSE_TOKEN",
        ),
        Credential::Missing => {
            let page = matches!(*request.method(), Method::GET | Method::HEAD)
                && !request.uri().path().starts_with("/api/");
            if page {
                see_other("/login", None)
            } else {
                unauthorized(
                    "this portal needs its access token: send `Authorization: Bearer <token>` \
                     (the cloudpulse CLI sends CLOUDPULSE_TOKEN) or sign in at /login",
                )
            }
        }
    }
}

fn unauthorized(message: &'static str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"cloudpulse\""),
    );
    response
}

fn see_other(location: &'static str, cookie: Option<String>) -> Response {
    let mut response = (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store"),
        ],
    )
        .into_response();
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The cookie's attributes. `Secure` is left out on purpose: the portal
/// itself speaks plain HTTP, and a browser never sends a `Secure` cookie back
/// over plain HTTP, so signing in would loop forever. Behind a TLS proxy the
/// cookie still only travels inside TLS.
const COOKIE_ATTRIBUTES: &str = "HttpOnly; SameSite=Strict; Path=/";

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login_page() -> Response {
    page(StatusCode::OK, None)
}

async fn login(
    State(access): State<Access>,
    connected: Option<Extension<ConnectInfo<SocketAddr>>>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let ip = connected.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0 .0.ip());
    if let Some(wait) = access.throttle.wait(ip) {
        let secs = wait.as_secs();
        let mut response = page(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Too many failed sign-ins from your address. Try again in {secs} s."
            )),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return response;
    }
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return crate::limits::too_large();
        }
        Err(_) => {
            return page(
                StatusCode::BAD_REQUEST,
                Some("Send the access token in the form below."),
            );
        }
    };
    if !access.token.matches(&form.token) {
        access.throttle.failed(ip);
        return page(
            StatusCode::UNAUTHORIZED,
            Some("That is not this portal's access token. Nothing was signed in."),
        );
    }
    match access.sessions.create().await {
        Ok(value) => {
            tracing::info!("a browser signed in");
            see_other("/", Some(access.cookie(&value)))
        }
        Err(error) => {
            tracing::error!(%error, "cannot store a session");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The portal cannot store the session in its database; see its log."),
            )
        }
    }
}

/// Ends the sessions the browser holds, on the server too: a copy of the
/// cookie is no longer a way in.
async fn logout(State(access): State<Access>, headers: HeaderMap) -> Response {
    for value in session_cookies(&headers) {
        if let Err(error) = access.sessions.end(value).await {
            tracing::error!(%error, "cannot end a session");
        }
    }
    see_other(
        "/login",
        Some(format!("{SESSION_COOKIE}=; {COOKIE_ATTRIBUTES}; Max-Age=0")),
    )
}

/// The sign-in page: plain HTML and the portal's stylesheet, no script, so
/// it works under the strict Content-Security-Policy and without the bundle.
fn page(status: StatusCode, message: Option<&str>) -> Response {
    let message = message
        .map(|m| format!(r#"<p class="error" role="alert" data-testid="login-error">{m}</p>"#))
        .unwrap_or_default();
    let html = format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · CloudPulse</title>
<link rel="stylesheet" href="{stylesheet}">
<link rel="icon" href="data:,">
</head>
<body>
<header class="topbar"><span class="brand">CloudPulse</span></header>
<main>
<h1>Sign in</h1>
<p class="muted">This portal is reachable beyond this machine, so it asks for its access token: the value of CLOUDPULSE_TOKEN where it was started.</p>
{message}
<form method="post" action="/login" data-testid="login-form">
<p><label for="token">Access token</label><br>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus></p>
<p><button type="submit">Sign in</button></p>
</form>
</main>
</body>
</html>
"#,
        stylesheet = cloudpulse_app::shell::STYLESHEET_PATH,
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD_BASE64: &str = "q3Zb0x9Vt7yR2mKcW5pLhN8sJfD4aE1uGoXiT6vYzQk=";
    const GOOD_HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        let expected = sha256(b"correct secret");
        assert!(secret_eq(b"correct secret", &expected));
        assert!(!secret_eq(b"correct secreT", &expected));
        assert!(!secret_eq(b"correct secre", &expected), "a prefix");
        assert!(!secret_eq(b"correct secret!", &expected), "an extension");
        assert!(!secret_eq(b"", &expected));
    }

    #[test]
    fn generated_tokens_are_accepted() {
        assert!(AccessToken::parse(GOOD_BASE64).is_ok());
        assert!(AccessToken::parse(&format!("{GOOD_BASE64}\n")).is_ok());
        assert!(AccessToken::parse(GOOD_HEX).is_ok());
        assert!(AccessToken::parse(&GOOD_BASE64.replace(['+', '/'], "-")).is_ok());
        // Many generated tokens, so the pattern checks cannot be flaky.
        use base64::Engine as _;
        use rand::RngCore as _;
        for _ in 0..2000 {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            for text in [
                base64::engine::general_purpose::STANDARD.encode(bytes),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
                hex::encode(bytes),
            ] {
                assert_eq!(check_strength(&text), Ok(()), "{text}");
            }
        }
    }

    #[test]
    fn weak_tokens_are_refused_with_the_reason() {
        let cases = [
            ("", WeakToken::Empty),
            ("  \n", WeakToken::Empty),
            ("secret", WeakToken::Short { len: 6 }),
            (&GOOD_HEX[..40], WeakToken::ShortHex { len: 40 }),
            (&GOOD_BASE64[..42], WeakToken::Short { len: 42 }),
            (&"x".repeat(64), WeakToken::FewCharacters { distinct: 1 }),
            (&"0123456789abcdef".repeat(4), WeakToken::Repetitive),
            (&"Kx9-pQ2_zW".repeat(5), WeakToken::Repetitive),
            (
                &format!("{}0123456789", &GOOD_BASE64[..40]),
                WeakToken::Sequential,
            ),
            (
                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ",
                WeakToken::Sequential,
            ),
            (&format!("{} tail", GOOD_BASE64), WeakToken::Characters),
            (&format!("{GOOD_BASE64}é"), WeakToken::Characters),
        ];
        for (text, want) in cases {
            assert_eq!(check_strength(text.trim()), Err(want), "{text:?}");
        }
    }

    #[test]
    fn a_64_char_run_of_one_hex_digit_is_refused() {
        // All hex, long enough, but one character: the distinct check catches it.
        assert_eq!(
            check_strength(&"a".repeat(64)),
            Err(WeakToken::FewCharacters { distinct: 1 })
        );
    }

    #[test]
    fn the_tag_is_derived_not_the_token() {
        let token = AccessToken::parse(GOOD_BASE64).unwrap();
        let again = AccessToken::parse(GOOD_BASE64).unwrap();
        let other = AccessToken::parse(GOOD_HEX).unwrap();
        assert_eq!(token.tag(), again.tag(), "stable");
        assert_ne!(token.tag(), other.tag());
        assert!(!token.tag().contains(GOOD_BASE64.trim_end_matches('=')));
        assert_eq!(token.tag().len(), 64);
        assert!(token.matches(GOOD_BASE64) && !token.matches(GOOD_HEX));
        assert_eq!(format!("{token:?}"), "AccessToken(<redacted>)");
    }

    #[test]
    fn credentials_come_from_bearer_or_cookie() {
        let headers = |pairs: &[(header::HeaderName, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(name, HeaderValue::from_str(value).unwrap());
            }
            headers
        };
        assert_eq!(bearer(&headers(&[])), None);
        assert_eq!(
            bearer(&headers(&[(header::AUTHORIZATION, "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer(&headers(&[(header::AUTHORIZATION, "bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer(&headers(&[(header::AUTHORIZATION, "Basic abc")])),
            None
        );
        let cookies = headers(&[
            (header::COOKIE, "a=b; cloudpulse_session=one"),
            (
                header::COOKIE,
                "other_cloudpulse_session=x;cloudpulse_session=two",
            ),
        ]);
        assert_eq!(
            session_cookies(&cookies).collect::<Vec<_>>(),
            ["one", "two"]
        );
    }

    #[test]
    fn only_health_and_static_files_are_public() {
        assert!(is_public("/healthz"));
        assert!(is_public("/assets/cloudpulse.css"));
        assert!(is_public("/pkg/cloudpulse.js"));
        for path in [
            "/",
            "/api/v1/deployments",
            "/healthz/x",
            "/pkg",
            "/deployments/1",
        ] {
            assert!(!is_public(path), "{path}");
        }
    }
}
