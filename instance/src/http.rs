//! The HTTP surface: routes, the one error type, and the middleware every
//! response passes through (correlation id, security headers, timeout, body
//! limit, request accounting).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Serialize;

use crate::config::Config;
use crate::dashboard;
use crate::group::Group;
use crate::host::Host;
use crate::identity::IdentitySource;
use crate::traffic::Traffic;

/// Requests carry no body we read; anything larger than this is refused.
pub const BODY_LIMIT: u64 = 16 * 1024;
pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub started: Instant,
    pub draining: Arc<AtomicBool>,
    pub identity: IdentitySource,
    pub group: Group,
    pub host: Host,
    pub traffic: Traffic,
}

/// The id of this request, also sent back as `X-Correlation-ID`.
#[derive(Clone, Debug)]
pub struct CorrelationId(pub String);

/// Every failure a handler reports: a status and a JSON body
/// `{"error": message}` (the original's shape, which clients parse).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub correlation_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            correlation_id: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body {
            error: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            correlation_id: Option<String>,
        }
        let body = Body {
            error: self.message,
            correlation_id: self.correlation_id,
        };
        (self.status, Json(body)).into_response()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/status", get(status))
        .route("/api/instances", get(instances))
        .route("/", get(dashboard_page))
        .route("/dashboard.js", get(dashboard_script))
        .route("/dashboard.css", get(dashboard_style))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            every_request,
        ))
        .with_state(state)
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

async fn health(State(state): State<AppState>) -> Response {
    let healthy = !state.draining.load(Ordering::SeqCst)
        && state.host.sampler_alive()
        && crate::chaos::health_failing_for(&state.config.control_dir).is_none();
    if healthy {
        (StatusCode::OK, Json(Health { status: "healthy" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unhealthy",
            }),
        )
            .into_response()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    instance_id: String,
    uptime: u64,
    cpu_usage: f64,
}

async fn status(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    let identity = state
        .identity
        .get()
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(Status {
        instance_id: identity.instance_id,
        uptime: state.started.elapsed().as_secs(),
        cpu_usage: state.host.cpu_percent().unwrap_or(0.0),
    }))
}

async fn instances(State(state): State<AppState>) -> Result<Response, ApiError> {
    match state.group.view().await {
        Ok(view) => {
            if view.capacity.is_none() {
                tracing::warn!(asg = state.group.name(), "Auto Scaling group not found");
            }
            Ok(Json(view).into_response())
        }
        Err(error) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            error.to_string(),
        )),
    }
}

async fn dashboard_page(State(state): State<AppState>) -> Response {
    let (identity, view, activities) = tokio::join!(
        state.identity.get(),
        state.group.view(),
        state.group.activities()
    );
    let page = dashboard::Page {
        asg_name: state.group.name(),
        identity: identity.map_err(|e| e.to_string()),
        uptime: state.started.elapsed(),
        cpu_percent: state.host.cpu_percent(),
        memory: crate::host::read_memory(),
        rate: state.traffic.rate(),
        group: view.map_err(|e| e.to_string()),
        activities: activities.map_err(|e| e.to_string()),
        refresh: state.config.dashboard_refresh,
        draining: state.draining.load(Ordering::SeqCst),
    };
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        dashboard::render(&page),
    )
        .into_response()
}

async fn dashboard_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        dashboard::SCRIPT,
    )
        .into_response()
}

async fn dashboard_style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        dashboard::STYLE,
    )
        .into_response()
}

async fn not_found(Extension(id): Extension<CorrelationId>) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "Not found".into(),
        correlation_id: Some(id.0),
    }
}

async fn method_not_allowed(Extension(id): Extension<CorrelationId>) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "Method not allowed".into(),
        correlation_id: Some(id.0),
    }
}

const SECURITY_HEADERS: [(&str, &str); 6] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    ),
];

/// Wraps every request: correlation id, body limit, timeout, security
/// headers and accounting for metrics.
async fn every_request(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = uuid::Uuid::new_v4().to_string();
    request.extensions_mut().insert(CorrelationId(id.clone()));
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let limit = if path == "/health" {
        state.config.health_check_timeout
    } else {
        state.config.request_timeout
    };

    let too_large = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|length| length > BODY_LIMIT);
    let mut response = if too_large {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("Request body larger than {BODY_LIMIT} bytes"),
            correlation_id: Some(id.clone()),
        }
        .into_response()
    } else {
        match tokio::time::timeout(limit, next.run(request)).await {
            Ok(response) => response,
            Err(_) => timed_out(&path, limit, &id),
        }
    };

    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(CORRELATION_ID, value);
    }
    for (name, value) in SECURITY_HEADERS {
        headers
            .entry(HeaderName::from_static(name))
            .or_insert(HeaderValue::from_static(value));
    }
    // The original's exact type; some clients compare the whole string.
    if headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/json")
    {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));

    let elapsed = started.elapsed();
    let status = response.status();
    state.traffic.record(elapsed, status.is_server_error());
    let ms = elapsed.as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::warn!(%method, path, status = status.as_u16(), ms, correlation_id = id, "request failed");
    } else {
        tracing::debug!(%method, path, status = status.as_u16(), ms, correlation_id = id, "request");
    }
    response
}

fn timed_out(path: &str, limit: Duration, id: &str) -> Response {
    if path == "/health" {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unhealthy",
            }),
        )
            .into_response();
    }
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: format!("Request did not finish within {} ms", limit.as_millis()),
        correlation_id: Some(id.to_string()),
    }
    .into_response()
}
