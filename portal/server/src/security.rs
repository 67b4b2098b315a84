//! Security headers, the Content-Security-Policy nonce, the `Host` check
//! every request passes first, and the cross-site request check every
//! state-changing request passes through.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand::RngCore as _;

use crate::api::ApiError;

/// The nonce of one response, for the inline scripts Leptos writes.
#[derive(Clone, Debug)]
pub struct CspNonce(pub String);

/// Adds the security headers to every response and a fresh CSP nonce to
/// every request, so the page's inline scripts and the policy agree.
pub async fn headers(mut request: Request, next: Next) -> Response {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    request.extensions_mut().insert(CspNonce(nonce.clone()));

    let mut response = next.run(request).await;
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    response
}

/// The `Host` names the portal answers to: `127.0.0.1`, `localhost` and
/// `[::1]` on its own port, the address it is bound to, and those named by
/// `--allowed-host`. A DNS-rebinding page (`rebind.example:3000` made to
/// resolve to 127.0.0.1) reaches the portal with its own name in `Host`, so
/// refusing every other name keeps such a page from reading or changing
/// anything, whatever `Origin` and `Sec-Fetch-Site` it makes the browser send.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    /// Lower-case `name:port` (or bare `name`) values, compared exactly.
    names: Vec<String>,
}

impl AllowedHosts {
    /// The names for a portal bound to `bound`, plus `extra` (entries as
    /// [`parse_allowed_host`] returns them; empty ones are skipped). An
    /// entry without a port stands for that name without a port (a proxy
    /// on the scheme's default port) and with the portal's own port.
    pub fn new(bound: SocketAddr, extra: &[String]) -> Self {
        let port = bound.port();
        let mut names: Vec<String> = ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .map(|name| format!("{name}:{port}"))
            .collect();
        // An address literal cannot be rebound to another site, so the
        // address the portal is bound to (say 192.0.2.7:3000) is as safe.
        let ip = bound.ip();
        if !ip.is_unspecified() && !ip.is_loopback() {
            names.push(host_of(ip, port));
        }
        if port == 80 {
            names.extend(["127.0.0.1", "localhost", "[::1]"].map(String::from));
        }
        for entry in extra.iter().filter(|e| !e.is_empty()) {
            if entry.ends_with(']') || !entry.contains(':') {
                names.push(entry.clone());
                names.push(format!("{entry}:{port}"));
            } else {
                names.push(entry.clone());
            }
        }
        names.sort();
        names.dedup();
        AllowedHosts { names }
    }

    /// Whether `host` (a `Host` header's value) is one of the names.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.names.contains(&host)
    }
}

fn host_of(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// Reads one `--allowed-host` value: a host name or address with an
/// optional port, as a `Host` header carries it (`portal.example.com`,
/// `portal.example.com:8443`, `192.0.2.7:3000`, `[2001:db8::7]:3000`).
/// Returns it in lower case; an empty value (from `a,,b`) stays empty and
/// counts for nothing.
pub fn parse_allowed_host(text: &str) -> Result<String, String> {
    let entry = text.trim().to_ascii_lowercase();
    if entry.is_empty() {
        return Ok(entry);
    }
    let usage = "give a host name or address with an optional port, as browsers send it \
                 in Host, like portal.example.com or portal.example.com:8443 \
                 (no scheme, path or wildcard)";
    let (name, port) = if let Some(rest) = entry.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(format!("{text:?} has no closing ]; {usage}"));
        };
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "{text:?} is not an IPv6 address in brackets; {usage}"
            ));
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err(format!("{text:?}: {usage}")),
            },
        }
    } else {
        match entry.rsplit_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(entry.as_str()), None),
        }
    };
    if let Some(port) = port {
        if !port.parse::<u16>().is_ok_and(|p| p > 0) || port.starts_with('0') {
            return Err(format!("{text:?} has no valid port; {usage}"));
        }
    }
    if let Some(name) = name {
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(format!("{text:?} is not a host name; {usage}"));
        }
    }
    Ok(entry)
}

/// Answers 421 to a request whose `Host` (or absolute request target) is
/// not one of the portal's names, before any other check or route: pages,
/// the API, `/login`, `/healthz` and static files alike.
pub async fn check_host(
    State(hosts): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    // Every name the request gives must be one of ours, and it must give one.
    let named: Vec<String> = request
        .headers()
        .get(header::HOST)
        .map(|value| value.to_str().unwrap_or("<not text>").to_string())
        .into_iter()
        .chain(request.uri().authority().map(|a| a.as_str().to_string()))
        .collect();
    let foreign = named.iter().find(|name| !hosts.allows(name));
    let message = match (named.first(), foreign) {
        (Some(_), None) => return next.run(request).await,
        (None, _) => "the request names no Host; send the one you reach the portal by".to_string(),
        (Some(_), Some(host)) => {
            let shown: String = host.chars().take(80).collect();
            format!(
                "this portal does not answer to the host {shown:?}; open it as \
                 127.0.0.1, localhost or [::1] on its port, or start it with \
                 --allowed-host {shown} if that name is meant to reach it"
            )
        }
    };
    tracing::debug!(%message, "request refused by the Host check");
    ApiError::new(StatusCode::MISDIRECTED_REQUEST, "wrong_host", message).into_response()
}

/// Gives Leptos the request's nonce so its inline scripts carry it.
pub fn provide_nonce_from_request() {
    let nonce = leptos::context::use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<CspNonce>().cloned());
    if let Some(CspNonce(value)) = nonce {
        leptos::context::provide_context(leptos::nonce::Nonce::from_value(value));
    }
}

/// Refuses what a browser says comes from another site: any request that
/// changes something, and any request at all of the API (`/api/`, the
/// pages' server functions included) or of a page that calls AWS as it
/// renders (`/new` runs the preflight). Without the second rule an
/// `<img src>` on any site could make the portal call AWS, or read its
/// state through timing. Scripts and the CLI send neither header and pass;
/// browsers send `Sec-Fetch-Site` on every request and `Origin` on every
/// cross-origin POST. A link from another site to `/new` lands on the list.
pub async fn reject_cross_site(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let api = request.uri().path().starts_with("/api/");
    let reads = api || request.uri().path() == "/new";
    if (safe && !reads) || !is_cross_site(&request) {
        return next.run(request).await;
    }
    if safe {
        let navigates = request
            .headers()
            .get("sec-fetch-mode")
            .is_some_and(|mode| mode == "navigate");
        if navigates && !api {
            return (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, "/"), (header::CACHE_CONTROL, "no-store")],
            )
                .into_response();
        }
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site",
            "cross-site requests may not read the API or make the portal call AWS; use the \
             portal's own pages or the API without a browser",
        )
        .into_response();
    }
    ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_site",
        "cross-site requests may not change anything; use the portal's own pages or the API without a browser",
    )
    .into_response()
}

fn is_cross_site(request: &Request<Body>) -> bool {
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin);
    Some(origin_host) != host
}

pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        cloudpulse_app::shell::STYLESHEET,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(headers: &[(&str, &str)]) -> Request<Body> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/x")
            .header(header::HOST, "127.0.0.1:3000");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn same_origin_and_scripts_pass() {
        assert!(!is_cross_site(&post(&[])));
        assert!(!is_cross_site(&post(&[("sec-fetch-site", "same-origin")])));
        assert!(!is_cross_site(&post(&[(
            "origin",
            "http://127.0.0.1:3000"
        )])));
    }

    #[test]
    fn gets_say_where_they_come_from_too() {
        let get = |headers: &[(&str, &str)]| {
            let mut builder = Request::builder()
                .uri("/api/v1/orphans")
                .header(header::HOST, "127.0.0.1:3000");
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(Body::empty()).unwrap()
        };
        assert!(is_cross_site(&get(&[("sec-fetch-site", "cross-site")])));
        assert!(is_cross_site(&get(&[("sec-fetch-site", "same-site")])));
        assert!(!is_cross_site(&get(&[("sec-fetch-site", "none")])));
        assert!(!is_cross_site(&get(&[])));
    }

    #[test]
    fn other_sites_are_refused() {
        assert!(is_cross_site(&post(&[("sec-fetch-site", "cross-site")])));
        assert!(is_cross_site(&post(&[("sec-fetch-site", "same-site")])));
        assert!(is_cross_site(&post(&[("origin", "http://evil.example")])));
        assert!(is_cross_site(&post(&[("origin", "null")])));
    }

    fn hosts(bind: &str, extra: &[&str]) -> AllowedHosts {
        let extra: Vec<String> = extra
            .iter()
            .map(|e| parse_allowed_host(e).unwrap())
            .collect();
        AllowedHosts::new(bind.parse().unwrap(), &extra)
    }

    #[test]
    fn loopback_names_on_the_portals_port_are_allowed() {
        let hosts = hosts("127.0.0.1:3000", &[]);
        for good in [
            "127.0.0.1:3000",
            "localhost:3000",
            "LOCALHOST:3000",
            "[::1]:3000",
        ] {
            assert!(hosts.allows(good), "{good}");
        }
        for bad in [
            "evil.example:3000",
            "localhost:3001",
            "localhost",
            "127.0.0.1",
            "127.0.0.1:3000.evil.example",
            "localhost.:3000",
            "",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
        // On port 80 browsers leave the port out.
        assert!(self::hosts("127.0.0.1:80", &[]).allows("localhost"));
    }

    #[test]
    fn the_bound_address_and_named_hosts_are_allowed() {
        let hosts = hosts(
            "192.0.2.7:3000",
            &[
                "Portal.Example.com",
                "proxy.example:8443",
                "[2001:db8::7]:3000",
                "",
            ],
        );
        for good in [
            "192.0.2.7:3000",
            "portal.example.com",
            "portal.example.com:3000",
            "proxy.example:8443",
            "[2001:db8::7]:3000",
        ] {
            assert!(hosts.allows(good), "{good}");
        }
        for bad in ["proxy.example", "proxy.example:3000", "192.0.2.8:3000"] {
            assert!(!hosts.allows(bad), "{bad}");
        }
        assert!(!self::hosts("0.0.0.0:3000", &[]).allows("0.0.0.0:3000"));
    }

    #[test]
    fn allowed_hosts_are_names_not_urls_or_patterns() {
        assert_eq!(parse_allowed_host(" A.example ").unwrap(), "a.example");
        assert_eq!(parse_allowed_host("").unwrap(), "");
        for bad in [
            "http://a.example",
            "a.example/path",
            "*.example",
            "a.example:0",
            "a.example:70000",
            "a.example:",
            "a..example",
            "-a.example",
            "[::1",
            "[nope]:3000",
            "a_b.example",
        ] {
            let err = parse_allowed_host(bad).unwrap_err();
            assert!(err.contains("portal.example.com:8443"), "{bad}: {err}");
        }
    }
}
