//! The local stand-in for an application load balancer's listener.
//!
//! Each sandbox ALB gets an HTTP listener on 127.0.0.1 that forwards every
//! request, round robin, to the instances its target groups currently hold
//! `healthy`. The health tables are read per request, so a target that leaves
//! `healthy` (failed checks, or draining after a terminate) gets no further
//! requests from that moment.
//!
//! Like an ALB it **fails open**: when a load balancer has registered targets
//! but none is healthy and some are `unhealthy`, AWS routes to all of those
//! rather than refuse everything (a health check that is wrong for every
//! target should not take the site down). Targets still in `initial` or
//! `draining` never get traffic, and with no routable target at all the answer
//! is a 503 that says why.
//!
//! One liberty ALBs do not take: a request whose connection was *refused* is
//! tried once more on another target. Nothing was sent, so this is safe for
//! any method, and it closes the window between an instance dying and its
//! health checks noticing. A request that failed after being sent is never
//! repeated (it may have had an effect); it gets a 502, as from an ALB.
//!
//! Listeners are all port 80 in AWS; here each load balancer has its own
//! port, kept in a small JSON file in the sandbox's work directory so that a
//! restarted portal serves the same URL again when it can.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::oneshot;

use super::health::TargetTable;

/// Bodies above this are refused (ALBs allow far more, our service far less).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// An ALB's default idle timeout: the longest one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts per request when connections are refused.
const MAX_ATTEMPTS: usize = 3;

/// Headers that belong to one connection, not to the message.
const HOP_HEADERS: [HeaderName; 7] = [
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

#[derive(Debug)]
struct Shared {
    name: String,
    port: u16,
    client: reqwest::Client,
    groups: RwLock<Vec<Arc<TargetTable>>>,
    next: AtomicUsize,
    requests: Arc<AtomicU64>,
    /// Answers from targets with a 5xx status (`HTTPCode_Target_5XX_Count`;
    /// the balancer's own 502/503/504 are ELB's, not the targets').
    target_5xx: Arc<AtomicU64>,
}

/// A running listener for one load balancer. Dropping it closes the port.
#[derive(Debug)]
pub struct Balancer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Balancer {
    /// Listens on `preferred` if it is free, else on any free port, and
    /// routes to the targets of `groups`.
    pub async fn start(
        name: &str,
        preferred: Option<u16>,
        groups: Vec<Arc<TargetTable>>,
    ) -> std::io::Result<Balancer> {
        let listener = match preferred {
            Some(port) => match tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::info!(%error, port, name, "the load balancer's previous port is taken; choosing another");
                    tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?
                }
            },
            None => tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?,
        };
        let addr = listener.local_addr()?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            name: name.to_string(),
            port: addr.port(),
            client,
            groups: RwLock::new(groups),
            next: AtomicUsize::new(0),
            requests: Arc::new(AtomicU64::new(0)),
            target_5xx: Arc::new(AtomicU64::new(0)),
        });
        let app = Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&shared))
            .into_make_service_with_connect_info::<SocketAddr>();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "load balancer listener stopped");
            }
        });
        tracing::info!(name, %addr, "sandbox load balancer is up");
        Ok(Balancer {
            addr,
            shared,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL clients use, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far (ELB's `RequestCount`), whatever their fate.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// The live counter, for whoever publishes metrics or detects idleness.
    pub fn request_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.shared.requests)
    }

    /// The count of 5xx answers its targets gave, shared.
    pub fn target_5xx_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.shared.target_5xx)
    }

    /// Replaces the target groups routed to (listener rules changed).
    pub fn set_groups(&self, groups: Vec<Arc<TargetTable>>) {
        *self
            .shared
            .groups
            .write()
            .unwrap_or_else(|e| e.into_inner()) = groups;
    }

    /// Stops accepting, lets requests in flight finish (bounded), and
    /// returns once the port is closed.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            // A drop cannot wait; aborting the serve task closes the port.
            task.abort();
        }
    }
}

/// Where the next attempt goes, or why there is none.
enum Choice {
    Port(u16),
    NoTargets,
    NoneHealthy { initial: usize },
}

impl Shared {
    fn choose(&self, avoid: &[u16]) -> Choice {
        let groups = self.groups.read().unwrap_or_else(|e| e.into_inner());
        let mut healthy = Vec::new();
        let mut unhealthy = Vec::new();
        let mut initial = 0;
        for group in groups.iter() {
            let routable = group.routable();
            healthy.extend(routable.healthy);
            unhealthy.extend(routable.unhealthy);
            initial += routable.initial;
        }
        drop(groups);
        // Fail open: all-unhealthy means route to all of them.
        let pool = if healthy.is_empty() {
            unhealthy
        } else {
            healthy
        };
        if pool.is_empty() {
            return if initial == 0 {
                Choice::NoTargets
            } else {
                Choice::NoneHealthy { initial }
            };
        }
        let untried: Vec<u16> = pool
            .iter()
            .copied()
            .filter(|p| !avoid.contains(p))
            .collect();
        let candidates = if untried.is_empty() { pool } else { untried };
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        Choice::Port(candidates[turn % candidates.len()])
    }
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "413 Request Entity Too Large",
            )
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let mut headers = parts.headers.clone();
    for name in &HOP_HEADERS {
        headers.remove(name);
    }
    add_forwarded_headers(&mut headers, client, shared.port);

    let mut refused = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        let port = match shared.choose(&refused) {
            Choice::Port(port) => port,
            Choice::NoTargets if refused.is_empty() => {
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "503 Service Temporarily Unavailable: load balancer {} has no registered targets",
                        shared.name
                    ),
                );
            }
            Choice::NoneHealthy { initial } if refused.is_empty() => {
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "503 Service Temporarily Unavailable: load balancer {} has no healthy target yet ({initial} in initial health checks)",
                        shared.name
                    ),
                );
            }
            // Every target was refused or left meanwhile.
            _ => break,
        };
        let sent = shared
            .client
            .request(
                parts.method.clone(),
                format!("http://127.0.0.1:{port}{path}"),
            )
            .headers(headers.clone())
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(upstream) => {
                if upstream.status().is_server_error() {
                    shared.target_5xx.fetch_add(1, Ordering::Relaxed);
                }
                return relay(upstream).await;
            }
            Err(error) if error.is_connect() => {
                tracing::debug!(lb = %shared.name, port, %error, "target refused the connection; trying another");
                refused.push(port);
            }
            Err(error) if error.is_timeout() => {
                return plain(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out");
            }
            Err(error) => {
                tracing::debug!(lb = %shared.name, port, %error, "target failed mid-request");
                return plain(StatusCode::BAD_GATEWAY, "502 Bad Gateway");
            }
        }
    }
    plain(
        StatusCode::BAD_GATEWAY,
        "502 Bad Gateway: no target accepted the connection",
    )
}

async fn relay(upstream: reqwest::Response) -> Response {
    let status = upstream.status();
    let mut headers = upstream.headers().clone();
    for name in &HOP_HEADERS {
        headers.remove(name);
    }
    match upstream.bytes().await {
        Ok(bytes) => {
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Err(_) => plain(StatusCode::BAD_GATEWAY, "502 Bad Gateway"),
    }
}

fn add_forwarded_headers(headers: &mut HeaderMap, client: SocketAddr, port: u16) {
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {}", client.ip()),
        None => client.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    headers.insert("x-forwarded-port", HeaderValue::from(port));
}

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{text}\n"),
    )
        .into_response()
}

/// Load balancer ARN → the port its listener had, kept across restarts.
#[derive(Debug)]
pub struct PortBook {
    path: PathBuf,
    ports: HashMap<String, u16>,
}

impl PortBook {
    /// Reads the book at `path`; a missing or unreadable one starts empty
    /// (a lost port only changes a local URL).
    pub fn load(path: &Path) -> PortBook {
        let ports = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        PortBook {
            path: path.to_path_buf(),
            ports,
        }
    }

    pub fn get(&self, load_balancer_arn: &str) -> Option<u16> {
        self.ports.get(load_balancer_arn).copied()
    }

    /// Records a port and writes the book (atomically, via a rename).
    pub fn record(&mut self, load_balancer_arn: &str, port: u16) {
        if self.ports.get(load_balancer_arn) == Some(&port) {
            return;
        }
        self.ports.insert(load_balancer_arn.to_string(), port);
        let written = serde_json::to_string_pretty(&self.ports)
            .map_err(std::io::Error::other)
            .and_then(|text| {
                let temporary = self.path.with_extension("json.tmp");
                std::fs::write(&temporary, text)?;
                std::fs::rename(&temporary, &self.path)
            });
        if let Err(error) = written {
            tracing::warn!(%error, path = %self.path.display(), "cannot record the load balancer's port");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::super::health::{HealthCheckSettings, Probe, TargetReason};
    use super::*;

    /// What `lb` answers to six requests in a row.
    async fn six_answers(http: &reqwest::Client, lb: &Balancer) -> Vec<String> {
        let mut answers = Vec::new();
        for _ in 0..6 {
            let answer = http.get(lb.url()).send().await.unwrap();
            answers.push(answer.text().await.unwrap());
        }
        answers
    }

    /// A target that answers its own name.
    async fn target(name: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = Router::new().fallback(move || async move { name });
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    fn set(table: &TargetTable, id: &str, port: u16, healthy: bool) {
        let settings = HealthCheckSettings {
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            ..HealthCheckSettings::default()
        };
        table.register(id, port);
        let outcome = if healthy {
            Probe::Pass
        } else {
            Probe::Fail(TargetReason::Timeout)
        };
        table.record(id, port, outcome, &settings);
    }

    #[tokio::test]
    async fn healthy_targets_only_and_fail_open_when_all_are_unhealthy() {
        let (a, b) = (target("a").await, target("b").await);
        let table = Arc::new(TargetTable::default());
        set(&table, "i-a", a, true);
        set(&table, "i-b", b, false);
        let lb = Balancer::start("lb", None, vec![Arc::clone(&table)])
            .await
            .unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let answers = six_answers(&http, &lb).await;
        assert!(answers.iter().all(|a| a == "a"), "{answers:?}");

        // Both unhealthy: like an ALB, route to all rather than to none.
        set(&table, "i-a", a, false);
        let seen: HashSet<_> = six_answers(&http, &lb).await.into_iter().collect();
        assert_eq!(seen, HashSet::from(["a".to_string(), "b".to_string()]));

        // A refused connection is retried on another target.
        let closed = {
            let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        let table = Arc::new(TargetTable::default());
        set(&table, "i-dead", closed, true);
        set(&table, "i-b", b, true);
        lb.set_groups(vec![table]);
        for _ in 0..6 {
            let answer = http.get(lb.url()).send().await.unwrap();
            assert_eq!(answer.status(), 200);
            assert_eq!(answer.text().await.unwrap(), "b");
        }
        assert_eq!(lb.requests(), 18);
        lb.stop().await;
    }

    #[test]
    fn port_book_survives_a_reload() {
        let dir = std::env::temp_dir().join(format!("cloudpulse-portbook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("balancers.json");
        let mut book = PortBook::load(&path);
        assert_eq!(book.get("arn:a"), None);
        book.record("arn:a", 40123);
        assert_eq!(PortBook::load(&path).get("arn:a"), Some(40123));
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(PortBook::load(&path).get("arn:a"), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn no_targets_is_a_clear_503_and_requests_are_counted() {
        let table = Arc::new(TargetTable::default());
        let lb = Balancer::start("empty-lb", None, vec![Arc::clone(&table)])
            .await
            .unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let answer = http.get(lb.url()).send().await.unwrap();
        assert_eq!(answer.status(), 503);
        assert!(answer
            .text()
            .await
            .unwrap()
            .contains("has no registered targets"));
        table.register("i-1", 1);
        let answer = http.get(lb.url()).send().await.unwrap();
        assert_eq!(answer.status(), 503);
        assert!(answer.text().await.unwrap().contains("initial"));
        assert_eq!(lb.requests(), 2);
        let addr = lb.addr();
        lb.stop().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
