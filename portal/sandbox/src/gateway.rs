//! A latency proxy in front of moto that gives slow resources their AWS pace.
//!
//! moto makes a NAT gateway `available` and a load balancer `active` at once,
//! so code that waits for them (and any benefit of waiting for them in
//! parallel) is never exercised. AWS takes minutes. [`Gateway`] forwards every
//! request to moto unchanged and answers with moto's response unchanged, except
//! that a NAT gateway or an application load balancer seen for the first time
//! less than its [`Latency`] ago is reported as still `pending` /
//! `provisioning`. Waiters and poll loops then wait for real, against real
//! moto state.
//!
//! The rewrite is deliberately textual: moto's query-protocol XML is small and
//! regular, and a proxy that re-serialised it could change what it must pass
//! through untouched. Only the state element of a young resource changes.
//!
//! It can also be told to disrupt a share of requests the way AWS does under
//! load ([`Disruption`]): throttling in each protocol's own words, a 5xx, or
//! a connection reset. A disrupted request never reaches moto, as a
//! throttled request never runs in AWS.
//!
//! Where moto is laxer than AWS in ways teardown order and scaling depend on
//! (dependency checks on delete, a group's bounds and cooldown, scaling
//! activities, alarm history), [`crate::faithful`] looks at each request
//! first: it may refuse it or answer it as AWS would, and it records what a
//! forwarded change did once moto has accepted it.
//!
//! It serves the AWS SDK on this machine and nothing else: a request that
//! carries what only a browser sends (`Origin`, any `Sec-Fetch-*`), names a
//! `Host` other than a loopback address (a DNS-rebinding page's own name), or
//! asks for moto's own API (`/moto-api/…`: reset, state, dashboard) is
//! answered 403 with the reason and never reaches moto ([`refusal`]). The
//! portal's own calls to moto's API go to moto's port directly
//! ([`crate::MotoServer::reset`]).
//!
//! Limits, acceptable for a sandbox: moto still applies a `state` filter to
//! its own (instant) states, so `DescribeNatGateways` filtered on
//! `state=available` lists a gateway this proxy then shows as `pending`; the
//! clocks are the faithful layer's, so a new gateway in front of the same
//! moto sees every resource as new unless that layer keeps its record on
//! disk ([`Faithful::persist_to`]); and the `Host` header is moto's, not the
//! client's (moto does not check signatures).

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_config::SdkConfig;
use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::oneshot;

use crate::dataplane::overlay::Overlay;
use crate::dataplane::DataPlaneView;
use crate::faithful::strict::{Decision, Strict, Strictness};
use crate::faithful::{Faithful, Verdict};

/// Requests larger than this are refused; moto's inputs are far smaller.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// How long AWS keeps a resource in its transient state. Zero turns the
/// rewrite off: the gateway is then a plain pass-through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// NAT gateway `pending` before `available` (AWS: typically 1–3 min).
    pub nat_pending: Duration,
    /// Load balancer `provisioning` before `active` (AWS: a few minutes).
    pub alb_provisioning: Duration,
}

/// Every `every`-th request (until `limit` of them) is answered with a fault
/// instead of being forwarded, in turn: throttling, throttling, a 5xx, a
/// connection reset. `every == 0` turns it off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Disruption {
    pub every: u32,
    pub limit: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on a loopback port: {0}")]
    Bind(#[source] std::io::Error),
    #[error("cannot build the HTTP client to moto: {0}")]
    Client(#[source] reqwest::Error),
}

/// A running latency proxy. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct Gateway {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Gateway {
    /// Starts the proxy on a free loopback port in front of `moto_endpoint`
    /// (e.g. [`crate::MotoServer::endpoint`]).
    pub async fn start(moto_endpoint: &str, latency: Latency) -> Result<Gateway, GatewayError> {
        Self::start_disrupted(moto_endpoint, latency, Disruption::default()).await
    }

    /// Like [`Gateway::start`], and disrupts requests as `disruption` says.
    pub async fn start_disrupted(
        moto_endpoint: &str,
        latency: Latency,
        disruption: Disruption,
    ) -> Result<Gateway, GatewayError> {
        Self::start_strict(moto_endpoint, latency, Strictness::INSTANT, disruption).await
    }

    /// Like [`Gateway::start_disrupted`], and as strict and as slow as AWS
    /// where `strictness` says (see [`crate::faithful::strict`]).
    pub async fn start_strict(
        moto_endpoint: &str,
        latency: Latency,
        strictness: Strictness,
        disruption: Disruption,
    ) -> Result<Gateway, GatewayError> {
        let client = reqwest::Client::builder()
            // The SDK must see moto's redirects and errors itself, and a proxy
            // set in the environment must not sit between us and loopback.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(GatewayError::Client)?;
        let state = Arc::new(Shared {
            upstream: moto_endpoint.trim_end_matches('/').to_string(),
            client,
            latency,
            disruption,
            requests: AtomicU32::new(0),
            disrupted: AtomicU32::new(0),
            faithful: Faithful::new(moto_endpoint),
            strict: Strict::new(moto_endpoint, strictness),
            dataplane: RwLock::new(None),
            calls: Default::default(),
        });
        let app = Router::new().fallback(forward).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(GatewayError::Bind)?;
        let addr = listener.local_addr().map_err(GatewayError::Bind)?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // A dropped sender means the same as a sent one: stop.
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "latency gateway stopped");
            }
        });
        tracing::info!(endpoint = %format!("http://{addr}"), upstream = moto_endpoint, ?latency, "latency gateway is up");
        Ok(Gateway {
            addr,
            shared: state,
            shutdown: Some(shutdown),
        })
    }

    /// The base URL to give the AWS SDK as its endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request that reached the gateway so far, by action (the query
    /// protocol's `Action`, else the JSON protocol's `X-Amz-Target`): what
    /// AWS would bill or throttle the caller for.
    pub fn calls(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many requests were answered with a fault so far.
    pub fn disrupted(&self) -> u32 {
        self.shared.disrupted.load(Ordering::Relaxed)
    }

    /// An SDK configuration that talks to moto through this gateway, as
    /// AWS's own services do (allowed everything; see [`crate::iam`]).
    pub fn sdk_config(&self) -> SdkConfig {
        crate::moto::sdk_config(&self.endpoint())
    }

    /// The same, signed as the portal: the operator policy only.
    pub fn operator_sdk_config(&self) -> SdkConfig {
        crate::moto::operator_sdk_config(&self.endpoint())
    }

    /// The AWS rules and records this gateway applies (see
    /// [`crate::faithful`]), for the data plane to scale and change alarm
    /// states through.
    pub fn faithful(&self) -> Faithful {
        self.shared.faithful.clone()
    }

    /// AWS's clocks this gateway keeps (see [`crate::faithful::strict`]):
    /// to inject a failed NAT gateway, say.
    pub fn strict(&self) -> Strict {
        self.shared.strict.clone()
    }

    /// From now on, target health and load balancer addresses come from
    /// this data plane (see [`crate::dataplane`]), not from moto.
    pub fn attach(&self, dataplane: Arc<dyn DataPlaneView>) {
        let mut slot = self
            .shared
            .dataplane
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *slot = Some(dataplane);
    }

    /// Back to moto's own answers.
    pub fn detach(&self) {
        let mut slot = self
            .shared
            .dataplane
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *slot = None;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    client: reqwest::Client,
    latency: Latency,
    disruption: Disruption,
    requests: AtomicU32,
    disrupted: AtomicU32,
    /// Where moto is laxer than AWS: refusals, limits and history.
    faithful: Faithful,
    /// Where moto is faster than AWS: propagation, lifecycles, lingering.
    strict: Strict,
    /// The data plane whose verdicts replace moto's, once attached.
    dataplane: RwLock<Option<Arc<dyn DataPlaneView>>>,
    /// Requests relayed so far, by action (`Action=` or `X-Amz-Target`).
    calls: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Shared {
    /// The fault this request gets instead of an answer, if it gets one.
    fn next_fault(&self) -> Option<Fault> {
        let Disruption { every, limit } = self.disruption;
        if every == 0 {
            return None;
        }
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if !n.is_multiple_of(every) {
            return None;
        }
        let taken = self
            .disrupted
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                (d < limit).then_some(d + 1)
            })
            .ok()?;
        Some(match taken % 4 {
            0 | 1 => Fault::Throttle,
            2 => Fault::ServerError,
            _ => Fault::Reset,
        })
    }

    /// Whether the resource `id` is still in its transient state; starts
    /// its clock if this is the first time it is seen. The clocks are the
    /// faithful layer's, kept across restarts once it persists its record.
    fn still_young(&self, id: &str, delay: Duration) -> bool {
        if delay.is_zero() {
            return false;
        }
        self.faithful.first_seen(id).elapsed() < delay
    }
}

/// Headers that describe one hop, not the message: the client recomputes
/// them for its own connection (and the body may change length).
const HOP_HEADERS: [HeaderName; 4] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
];

/// The request's headers for moto, with the `Host` and `Content-Length`
/// the caller signed: moto checks the signature (IAM is enforced), and the
/// body goes on unchanged (an empty one would otherwise lose its
/// `Content-Length: 0`).
fn signed_for_moto(headers: &HeaderMap) -> HeaderMap {
    let mut out = end_to_end(headers);
    for name in [header::HOST, header::CONTENT_LENGTH] {
        if let Some(value) = headers.get(&name) {
            out.insert(name, value.clone());
        }
    }
    out
}

fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for name in &HOP_HEADERS {
        out.remove(name);
    }
    out
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if let Some(reason) = refusal(request.headers(), request.uri(), &shared.upstream) {
        tracing::warn!(method = %request.method(), uri = %request.uri(), %reason, "refused a request");
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("403 Forbidden: {reason}\n"),
        )
            .into_response();
    }
    match relay(&shared, request).await {
        Ok(response) => response,
        Err(reason) => (StatusCode::BAD_GATEWAY, reason).into_response(),
    }
}

async fn relay(shared: &Shared, request: Request) -> Result<Response, String> {
    if let Some(fault) = shared.next_fault() {
        let service = signing_service(request.headers()).unwrap_or_default();
        tracing::debug!(?fault, %service, "disrupting a request");
        return Ok(fault_response(fault, &service));
    }
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, MAX_BODY)
        .await
        .map_err(|e| format!("cannot read the request body: {e}"))?;
    let target = match parts.uri.path_and_query() {
        Some(pq) => format!("{}{pq}", shared.upstream),
        None => format!("{}/", shared.upstream),
    };
    let action = query_action(&body);
    let called = action.clone().or_else(|| {
        parts
            .headers
            .get("x-amz-target")
            .and_then(|t| t.to_str().ok())
            .map(str::to_string)
    });
    *shared
        .calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(called.unwrap_or_else(|| parts.method.to_string()))
        .or_default() += 1;
    let dataplane = shared
        .dataplane
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let send_command = parts
        .headers
        .get("x-amz-target")
        .is_some_and(|target| target == "AmazonSSM.SendCommand")
        .then(|| body.clone());
    let overlay = Overlay::for_request(dataplane.clone(), action.as_deref(), &body);
    let strict = match shared.strict.before(&parts.headers, &body).await {
        Decision::Forward(pending) => pending,
        Decision::Answer(answer) => return Ok(answer),
    };
    let after = match shared.faithful.before(&body).await {
        Verdict::Answer(response) => return Ok(response),
        Verdict::Forward { after } => after,
    };
    let upstream = shared
        .client
        .request(parts.method, target)
        .headers(signed_for_moto(&parts.headers))
        .body(body)
        .send()
        .await
        .map_err(|e| format!("moto did not answer: {e}"))?;
    let status = upstream.status();
    let headers = end_to_end(upstream.headers());
    let mut body = upstream
        .bytes()
        .await
        .map_err(|e| format!("cannot read moto's answer: {e}"))?;
    if status.is_success() {
        if let Some(after) = after {
            shared.faithful.after(after).await;
        }
        body = shared.strict.after(strict, body).await;
        if let Some(action) = action.as_deref() {
            body = apply_latency(shared, action, body);
        }
        if let Some(overlay) = overlay {
            body = overlay.apply(body);
        }
        // moto only records a Run Command; the data plane carries it out.
        if let (Some(request), Some(dataplane)) = (send_command, dataplane) {
            match crate::dataplane::commands::from_send_command(&request, &body) {
                Some(command) => dataplane.run_command(command),
                None => tracing::warn!("a SendCommand moto accepted could not be read; not run"),
            }
        }
    }
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// Why the gateway will not forward this request, if it will not: it comes
/// from a web page, names a host that is not this machine, or asks for
/// moto's own API. The AWS SDK sends none of these.
fn refusal(headers: &HeaderMap, uri: &Uri, upstream: &str) -> Option<String> {
    const ONLY_THE_SDK: &str = "the sandbox gateway answers the AWS SDK on this machine only";
    if headers.contains_key(header::ORIGIN) {
        return Some(format!(
            "{ONLY_THE_SDK}; a request with an Origin header comes from a web page"
        ));
    }
    if let Some(name) = headers
        .keys()
        .find(|name| name.as_str().starts_with("sec-fetch-"))
    {
        return Some(format!(
            "{ONLY_THE_SDK}; a request with a {name} header comes from a browser"
        ));
    }
    let host = match headers.get(header::HOST) {
        Some(value) => Some(value.to_str().unwrap_or("(not text)")),
        // HTTP/2 carries the host in the request target instead.
        None => uri.authority().map(|a| a.as_str()),
    };
    match host {
        Some(host) if is_loopback_host(host) => {}
        Some(host) => {
            return Some(format!(
                "{ONLY_THE_SDK}; Host {host:?} is not 127.0.0.1, localhost or [::1] (a page on \
                 another name that resolves here is refused)"
            ))
        }
        None => return Some(format!("{ONLY_THE_SDK}; the request names no Host")),
    }
    // The path as moto will read it: dot segments resolved (as the client
    // to moto resolves them), then percent-decoded (as moto's WSGI server
    // decodes it); moto serves its own API on any path that starts so.
    let target = match uri.path_and_query() {
        Some(pq) => format!("{upstream}{pq}"),
        None => format!("{upstream}/"),
    };
    let path = reqwest::Url::parse(&target)
        .map(|url| percent_decoded(url.path()))
        .unwrap_or_else(|_| percent_decoded(uri.path()));
    if path
        .trim_start_matches(['/', '\\'])
        .get(..8)
        .is_some_and(|start| start.eq_ignore_ascii_case("moto-api"))
    {
        return Some(format!(
            "{} is moto's own API (reset, state, dashboard), which the gateway never forwards; \
             the portal calls it on moto's port directly",
            uri.path()
        ));
    }
    None
}

/// `127.0.0.1`, `localhost` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    // The name, and what follows it: nothing, or `:` and the port.
    let (name, rest) = match host.strip_prefix('[') {
        Some(inside) => match inside.find(']') {
            Some(end) => host.split_at(end + 2),
            None => return false,
        },
        None => host.split_at(host.find(':').unwrap_or(host.len())),
    };
    let port_ok = rest.is_empty()
        || rest.strip_prefix(':').is_some_and(|port| {
            !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
        });
    port_ok && (name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost") || name == "[::1]")
}

/// `%XX` escapes decoded once, as a WSGI server decodes a path; anything
/// that is not a valid escape is kept as it is.
fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Throttle,
    ServerError,
    Reset,
}

/// The service a SigV4 request was signed for: the fourth part of the
/// credential scope, `KEY/DATE/REGION/SERVICE/aws4_request`.
fn signing_service(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    scope.split('/').nth(3).map(str::to_string)
}

/// What AWS answers in `service`'s protocol when it throttles or fails.
fn fault_response(fault: Fault, service: &str) -> Response {
    if fault == Fault::Reset {
        // The head goes out, then the connection dies mid-body.
        let broken = futures_util::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset (injected)",
            ))
        });
        return Response::new(Body::from_stream(broken));
    }
    let throttle = fault == Fault::Throttle;
    let xml = "text/xml";
    let (status, content_type, body) = match service {
        "ec2" => {
            let (status, code) = if throttle {
                (StatusCode::SERVICE_UNAVAILABLE, "RequestLimitExceeded")
            } else {
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
            };
            let body = format!(
                "<Response><Errors><Error><Code>{code}</Code><Message>Request limit exceeded \
                 (injected)</Message></Error></Errors><RequestID>injected</RequestID></Response>"
            );
            (status, xml, body)
        }
        "s3" => {
            let code = if throttle {
                "SlowDown"
            } else {
                "InternalError"
            };
            let body = format!(
                "<Error><Code>{code}</Code><Message>Please reduce your request rate \
                 (injected)</Message><RequestId>injected</RequestId></Error>"
            );
            (StatusCode::SERVICE_UNAVAILABLE, xml, body)
        }
        "ssm" => {
            let (status, kind) = if throttle {
                (StatusCode::BAD_REQUEST, "ThrottlingException")
            } else {
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError")
            };
            let body =
                format!("{{\"__type\":\"{kind}\",\"message\":\"Rate exceeded (injected)\"}}");
            (status, "application/x-amz-json-1.1", body)
        }
        _ => {
            let (status, kind, code) = if throttle {
                (StatusCode::BAD_REQUEST, "Sender", "Throttling")
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Receiver",
                    "ServiceUnavailable",
                )
            };
            let body = format!(
                "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>Rate \
                 exceeded (injected)</Message></Error><RequestId>injected</RequestId></ErrorResponse>"
            );
            (status, xml, body)
        }
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// The `Action` of a query-protocol request (EC2, ELBv2 and friends send it
/// in the form body). Other protocols have none and pass through.
fn query_action(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .map(str::to_string)
}

fn apply_latency(shared: &Shared, action: &str, body: Bytes) -> Bytes {
    let Ok(xml) = std::str::from_utf8(&body) else {
        return body;
    };
    let rewritten = match action {
        "CreateNatGateway" | "DescribeNatGateways" => {
            rewrite_nat_gateways(xml, |id| shared.still_young(id, shared.latency.nat_pending))
        }
        "CreateLoadBalancer" | "DescribeLoadBalancers" => rewrite_load_balancers(xml, |arn| {
            shared.still_young(arn, shared.latency.alb_provisioning)
        }),
        _ => None,
    };
    rewritten.map(Bytes::from).unwrap_or(body)
}

/// Marks young NAT gateways `pending`. moto answers Create with one
/// `<natGateway>` and Describe with `<natGatewaySet><item>`s; the address
/// set and tag set nest further `<item>`s, so blocks are found by depth.
fn rewrite_nat_gateways(xml: &str, young: impl Fn(&str) -> bool) -> Option<String> {
    let blocks = match top_level_blocks(xml, "natGatewaySet", "item") {
        blocks if !blocks.is_empty() => blocks,
        _ => element(xml, "natGateway").into_iter().collect(),
    };
    rewrite_blocks(xml, &blocks, |block| {
        let id = text_of(block, "natGatewayId")?;
        young(id).then(|| block.replacen("<state>available</state>", "<state>pending</state>", 1))
    })
}

/// Marks young application load balancers `provisioning`. Both Create and
/// Describe list them as `<LoadBalancers><member>`s, with the availability
/// zones nested as further `<member>`s.
fn rewrite_load_balancers(xml: &str, young: impl Fn(&str) -> bool) -> Option<String> {
    let blocks = top_level_blocks(xml, "LoadBalancers", "member");
    rewrite_blocks(xml, &blocks, |block| {
        let arn = text_of(block, "LoadBalancerArn")?;
        young(arn).then(|| {
            block.replacen(
                "<State><Code>active</Code>",
                "<State><Code>provisioning</Code>",
                1,
            )
        })
    })
}

/// Replaces each block for which `rewrite` gives new text; `None` if no
/// block changed, so the original bytes are passed on untouched.
pub(crate) fn rewrite_blocks(
    xml: &str,
    blocks: &[Range<usize>],
    mut rewrite: impl FnMut(&str) -> Option<String>,
) -> Option<String> {
    let mut out = String::with_capacity(xml.len());
    let mut copied = 0;
    let mut changed = false;
    for range in blocks {
        if let Some(new) = rewrite(&xml[range.clone()]) {
            out.push_str(&xml[copied..range.start]);
            out.push_str(&new);
            copied = range.end;
            changed = true;
        }
    }
    out.push_str(&xml[copied..]);
    changed.then_some(out)
}

/// The byte ranges of the `<tag>…</tag>` blocks directly inside the first
/// `<container>`, skipping same-named tags nested deeper.
pub(crate) fn top_level_blocks(xml: &str, container: &str, tag: &str) -> Vec<Range<usize>> {
    let Some(inside) = element_inner(xml, container) else {
        return Vec::new();
    };
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut blocks = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut at = inside.start;
    while at < inside.end {
        let rest = &xml[at..inside.end];
        let next_open = rest.find(&open);
        let next_close = rest.find(&close);
        match (next_open, next_close) {
            (Some(o), Some(c)) if o < c => {
                if depth == 0 {
                    start = at + o;
                }
                depth += 1;
                at += o + open.len();
            }
            (_, Some(c)) => {
                at += c + close.len();
                // A stray close tag at depth 0 is malformed; leave it alone.
                if depth > 0 {
                    depth -= 1;
                    if depth == 0 {
                        blocks.push(start..at);
                    }
                }
            }
            _ => break,
        }
    }
    blocks
}

/// The range of the first `<tag>…</tag>` element, tags included.
fn element(xml: &str, tag: &str) -> Option<Range<usize>> {
    let inner = element_inner(xml, tag)?;
    Some(inner.start - tag.len() - 2..inner.end + tag.len() + 3)
}

/// The range between the first `<tag>` and the last `</tag>`, so that
/// same-named tags nested inside stay inside.
fn element_inner(xml: &str, tag: &str) -> Option<Range<usize>> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = xml.rfind(&format!("</{tag}>"))?;
    (start <= end).then_some(start..end)
}

pub(crate) fn text_of<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let inner = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = xml[inner..].find(&format!("</{tag}>"))?;
    Some(&xml[inner..inner + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    // Trimmed from moto 5.2.5's real answers.
    const DESCRIBE_NATS: &str = "<DescribeNatGatewaysResponse><natGatewaySet>\
        <item><natGatewayAddressSet><item><allocationId>eipalloc-1</allocationId></item></natGatewayAddressSet>\
        <natGatewayId>nat-young</natGatewayId><state>available</state>\
        <tagSet><item><key>Name</key><value>a</value></item></tagSet></item>\
        <item><natGatewayAddressSet><item><allocationId>eipalloc-2</allocationId></item></natGatewayAddressSet>\
        <natGatewayId>nat-old</natGatewayId><state>available</state><tagSet/></item>\
        </natGatewaySet><requestId>r</requestId></DescribeNatGatewaysResponse>";

    #[test]
    fn only_the_young_nat_gateway_is_pending() {
        let out = rewrite_nat_gateways(DESCRIBE_NATS, |id| id == "nat-young").unwrap();
        assert_eq!(
            out,
            DESCRIBE_NATS.replacen("<state>available</state>", "<state>pending</state>", 1)
        );
        assert!(out.contains("<natGatewayId>nat-old</natGatewayId><state>available</state>"));
        assert_eq!(rewrite_nat_gateways(DESCRIBE_NATS, |_| false), None);
    }

    #[test]
    fn create_nat_gateway_answer_is_rewritten() {
        let create = "<CreateNatGatewayResponse><natGateway><natGatewayAddressSet><item>\
            <allocationId>e</allocationId></item></natGatewayAddressSet><natGatewayId>nat-1</natGatewayId>\
            <state>available</state></natGateway><requestId>r</requestId></CreateNatGatewayResponse>";
        let out = rewrite_nat_gateways(create, |id| id == "nat-1").unwrap();
        assert!(out.contains("<natGatewayId>nat-1</natGatewayId><state>pending</state>"));
    }

    #[test]
    fn load_balancer_nested_members_do_not_confuse_blocks() {
        let xml = "<R><LoadBalancers>\
            <member><LoadBalancerArn>arn-a</LoadBalancerArn><State><Code>active</Code></State>\
            <AvailabilityZones><member><ZoneName>z</ZoneName></member></AvailabilityZones></member>\
            <member><LoadBalancerArn>arn-b</LoadBalancerArn><State><Code>active</Code></State>\
            <AvailabilityZones><member><ZoneName>z</ZoneName></member></AvailabilityZones></member>\
            </LoadBalancers></R>";
        let out = rewrite_load_balancers(xml, |arn| arn == "arn-b").unwrap();
        assert!(out.contains("arn-a</LoadBalancerArn><State><Code>active</Code>"));
        assert!(out.contains("arn-b</LoadBalancerArn><State><Code>provisioning</Code>"));
    }

    #[test]
    fn the_signing_service_comes_from_the_credential_scope() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=AKID/20261125/us-east-1/elasticloadbalancing/aws4_request, \
             SignedHeaders=host, Signature=abc"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            signing_service(&headers).as_deref(),
            Some("elasticloadbalancing")
        );
        assert_eq!(signing_service(&HeaderMap::new()), None);
    }

    #[test]
    fn faults_come_in_turn_and_stop_at_the_limit() {
        let shared = Shared {
            upstream: String::new(),
            client: reqwest::Client::new(),
            latency: Latency::default(),
            disruption: Disruption { every: 2, limit: 5 },
            requests: AtomicU32::new(0),
            disrupted: AtomicU32::new(0),
            faithful: Faithful::new("http://127.0.0.1:9"),
            strict: Strict::new("http://127.0.0.1:9", Strictness::INSTANT),
            dataplane: RwLock::new(None),
            calls: Default::default(),
        };
        let faults: Vec<Option<Fault>> = (0..14).map(|_| shared.next_fault()).collect();
        let expected = [
            Fault::Throttle,
            Fault::Throttle,
            Fault::ServerError,
            Fault::Reset,
            Fault::Throttle,
        ];
        let injected: Vec<Fault> = faults.iter().flatten().copied().collect();
        assert_eq!(injected, expected);
        assert!(
            faults.iter().step_by(2).all(Option::is_none),
            "only every second request"
        );
        assert_eq!(shared.disrupted.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn only_loopback_names_are_this_machine() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:4566",
            "localhost:80",
            "LocalHost",
            "[::1]",
            "[::1]:9",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "127.0.0.1.nip.io:80",
            "localhost.evil.example",
            "127.0.0.2:80",
            "0.0.0.0:80",
            "[::1",
            "[::1]x",
            "127.0.0.1:",
            "127.0.0.1:123456",
            "127.0.0.1:80:80",
            "localhost:8o",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn paths_are_decoded_as_moto_reads_them() {
        assert_eq!(percent_decoded("/%6Doto-api/reset"), "/moto-api/reset");
        assert_eq!(percent_decoded("/a%2Fb%"), "/a/b%");
        assert_eq!(percent_decoded("/%zz%4"), "/%zz%4");
        let refused = |path: &str| {
            let uri: Uri = path.parse().unwrap();
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, "127.0.0.1:1".parse().unwrap());
            refusal(&headers, &uri, "http://127.0.0.1:2").is_some()
        };
        for path in [
            "/moto-api/reset",
            "/moto-api",
            "/MOTO-API/",
            "/%6doto-api/seed",
            "/a/../moto-api/reset",
            "/a/%2e%2e/moto-api/reset",
            "//moto-api/reset",
        ] {
            assert!(refused(path), "{path}");
        }
        for path in [
            "/",
            "/?Action=DescribeVpcs",
            "/cloudpulse-bucket/moto-api",
            "/motorway",
        ] {
            assert!(!refused(path), "{path}");
        }
    }

    #[test]
    fn action_is_read_from_the_form_body() {
        assert_eq!(
            query_action(b"Version=2016-11-15&Action=DescribeNatGateways&NatGatewayId.1=nat-1"),
            Some("DescribeNatGateways".into())
        );
        assert_eq!(query_action(b"{\"json\":true}"), None);
    }
}
