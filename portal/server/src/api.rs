//! The REST API under `/api/v1`, and `/healthz`.
//!
//! Handlers are thin: they parse, call the same [`Backend`] the pages use,
//! and map errors to `{ "error": { "code", "message" } }`.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cloudpulse_app::backend::{BackendError, DeploymentFilter, SharedBackend};
use cloudpulse_app::model::DeploymentStatus;
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<SharedBackend> {
    Router::new().route("/deployments", get(list_deployments))
}

/// Liveness and what the portal depends on. 200 while the portal can serve,
/// even when the cloud is unreachable (the body says so); 503 when its own
/// database fails.
pub async fn healthz(State(backend): State<SharedBackend>) -> Response {
    let database = backend.database_ok().await;
    let cloud = backend.cloud_status();
    let (code, database) = match database {
        Ok(()) => (StatusCode::OK, json!("ok")),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": e.to_string() }),
        ),
    };
    let status = if code == StatusCode::OK {
        "ok"
    } else {
        "failing"
    };
    (
        code,
        Json(json!({ "status": status, "database": database, "cloud": cloud })),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    page: Option<u32>,
    per_page: Option<u32>,
}

async fn list_deployments(
    State(backend): State<SharedBackend>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(DeploymentStatus::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown status {text:?}; use one of deploying, live, failed, tearing_down, torn_down"
            ))
        })?),
    };
    let filter = DeploymentFilter {
        status,
        page: query.page.unwrap_or(1),
        per_page: query.per_page.unwrap_or(25),
    };
    let page = backend.list_deployments(filter).await?;
    Ok(Json(page).into_response())
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "there is nothing at this address",
    )
}

/// The one error shape of the API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<BackendError> for ApiError {
    fn from(error: BackendError) -> Self {
        match error {
            BackendError::Invalid(message) => ApiError::bad_request(message),
            BackendError::Database(message) => {
                tracing::error!(%message, "database error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "database", message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}
