//! Who may use the portal: the access token, the sign-in page and the guard
//! every request passes when a token is configured.
//!
//! On loopback the portal is open unless a token is set; anywhere else a
//! token is required (see [`crate::config::ServeArgs::listen`]). Scripts and
//! the CLI send it as `Authorization: Bearer <token>`; browsers sign in once
//! at `/login` and then carry a session cookie derived from it. The token is
//! never logged, never stored, and only ever compared in constant time.

use std::collections::HashSet;

use axum::extract::rejection::FormRejection;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::ApiError;

/// The environment variable holding the access token.
pub const TOKEN_ENV: &str = "CLOUDPULSE_TOKEN";
/// The environment variable naming a file that holds it (`--token-file`).
pub const TOKEN_FILE_ENV: &str = "CLOUDPULSE_TOKEN_FILE";
/// The browser's session cookie.
pub const SESSION_COOKIE: &str = "cloudpulse_session";
/// How to make a good token, for every message that asks for one.
pub const MAKE_ONE: &str =
    "make one with `openssl rand -base64 32` (or `head -c 32 /dev/urandom | base64`)";

/// What the session cookie is derived from; a new value here signs every
/// browser out.
const SESSION_LABEL: &[u8] = b"cloudpulse-session v1";
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
/// digest and the session value derived from it.
#[derive(Clone)]
pub struct AccessToken {
    token_digest: [u8; 32],
    session: String,
    session_digest: [u8; 32],
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
        // HMAC keyed by the token: the cookie proves the token was known,
        // cannot be turned back into it, and survives a restart.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes())
            .map_err(|_| WeakToken::Empty)?;
        mac.update(SESSION_LABEL);
        let session = hex::encode(mac.finalize().into_bytes());
        Ok(AccessToken {
            token_digest: sha256(token.as_bytes()),
            session_digest: sha256(session.as_bytes()),
            session,
        })
    }

    /// Whether `candidate` is the token (surrounding spaces ignored).
    pub fn matches(&self, candidate: &str) -> bool {
        let candidate = candidate.trim_matches(|c: char| c.is_ascii_whitespace());
        secret_eq(candidate.as_bytes(), &self.token_digest)
    }

    /// The session cookie's value.
    pub fn session_value(&self) -> &str {
        &self.session
    }

    fn session_matches(&self, candidate: &str) -> bool {
        secret_eq(candidate.as_bytes(), &self.session_digest)
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

/// Adds the sign-in routes to `app` and puts every other route behind the
/// token. The sign-in routes are added after the guard, so it never wraps them.
pub fn guard(app: Router, token: AccessToken) -> Router {
    app.layer(axum::middleware::from_fn_with_state(token.clone(), require))
        .merge(
            Router::new()
                .route("/login", get(login_page).post(login))
                .route("/logout", post(logout))
                .with_state(token),
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
    WrongBearer,
    Missing,
}

fn credential(token: &AccessToken, headers: &HeaderMap) -> Credential {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let bearer = value.to_str().ok().and_then(|text| {
            let (scheme, rest) = text.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest)
        });
        if let Some(candidate) = bearer {
            return if token.matches(candidate) {
                Credential::Valid
            } else {
                Credential::WrongBearer
            };
        }
    }
    let mut valid = false;
    for cookie in session_cookies(headers) {
        // No early exit: every candidate costs the same.
        valid |= token.session_matches(cookie);
    }
    if valid {
        Credential::Valid
    } else {
        Credential::Missing
    }
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
/// else gets a 401 in the API's error shape.
async fn require(State(token): State<AccessToken>, mut request: Request, next: Next) -> Response {
    if is_public(request.uri().path()) {
        if !matches!(credential(&token, request.headers()), Credential::Valid) {
            request.extensions_mut().insert(Anonymous);
        }
        return next.run(request).await;
    }
    let path = request.uri().path();
    match credential(&token, request.headers()) {
        Credential::Valid => next.run(request).await,
        Credential::WrongBearer => unauthorized(
            "the bearer token is not this portal's access token; check CLOUDPULSE_TOKEN",
        ),
        Credential::Missing => {
            let page = matches!(*request.method(), Method::GET | Method::HEAD)
                && !path.starts_with("/api/");
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
    State(token): State<AccessToken>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return page(
            StatusCode::BAD_REQUEST,
            Some("Send the access token in the form below."),
        );
    };
    if !token.matches(&form.token) {
        return page(
            StatusCode::UNAUTHORIZED,
            Some("That is not this portal's access token. Nothing was signed in."),
        );
    }
    tracing::info!("a browser signed in");
    see_other(
        "/",
        Some(format!(
            "{SESSION_COOKIE}={}; {COOKIE_ATTRIBUTES}",
            token.session_value()
        )),
    )
}

async fn logout() -> Response {
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
    fn the_session_value_is_derived_not_the_token() {
        let token = AccessToken::parse(GOOD_BASE64).unwrap();
        let again = AccessToken::parse(GOOD_BASE64).unwrap();
        let other = AccessToken::parse(GOOD_HEX).unwrap();
        assert_eq!(token.session_value(), again.session_value(), "stable");
        assert_ne!(token.session_value(), other.session_value());
        assert!(!token
            .session_value()
            .contains(GOOD_BASE64.trim_end_matches('=')));
        assert_eq!(token.session_value().len(), 64);
        assert!(token.session_matches(again.session_value()));
        assert!(!token.session_matches(other.session_value()));
        assert!(token.matches(GOOD_BASE64) && !token.matches(GOOD_HEX));
        assert_eq!(format!("{token:?}"), "AccessToken(<redacted>)");
    }

    #[test]
    fn credentials_come_from_bearer_or_cookie() {
        let token = AccessToken::parse(GOOD_BASE64).unwrap();
        let check = |pairs: &[(header::HeaderName, String)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(name, HeaderValue::from_str(value).unwrap());
            }
            match credential(&token, &headers) {
                Credential::Valid => "valid",
                Credential::WrongBearer => "wrong",
                Credential::Missing => "missing",
            }
        };
        let session = token.session_value().to_string();
        assert_eq!(check(&[]), "missing");
        assert_eq!(
            check(&[(header::AUTHORIZATION, format!("Bearer {GOOD_BASE64}"))]),
            "valid"
        );
        assert_eq!(
            check(&[(header::AUTHORIZATION, format!("bearer {GOOD_BASE64}"))]),
            "valid"
        );
        assert_eq!(
            check(&[(header::AUTHORIZATION, format!("Bearer {GOOD_HEX}"))]),
            "wrong"
        );
        assert_eq!(
            check(&[(header::COOKIE, format!("a=b; {SESSION_COOKIE}={session}"))]),
            "valid"
        );
        assert_eq!(
            check(&[
                (header::COOKIE, format!("{SESSION_COOKIE}=stale")),
                (header::COOKIE, format!("{SESSION_COOKIE}={session}")),
            ]),
            "valid"
        );
        assert_eq!(
            check(&[(header::COOKIE, format!("{SESSION_COOKIE}={GOOD_BASE64}"))]),
            "missing",
            "the token itself is not a session"
        );
        assert_eq!(
            check(&[(header::COOKIE, format!("other_{SESSION_COOKIE}={session}"))]),
            "missing"
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
