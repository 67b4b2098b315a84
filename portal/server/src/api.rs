//! The REST API under `/api/v1`, and `/healthz`.
//!
//! Handlers are thin: they parse, call the same [`Backend`] the pages use,
//! and map errors to `{ "error": { "code", "message" } }`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use cloudpulse_app::backend::{BackendError, DeploymentFilter, SharedBackend};
use cloudpulse_app::ids::{DeploymentId, JobId, PlanId};
use cloudpulse_app::live::MetricsRange;
use cloudpulse_app::model::{BudgetChange, ChaosAction, DeploymentStatus, Preflight, Source};
use cloudpulse_app::params::{DeploymentParams, FieldErrors};
use cloudpulse_engine::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

/// What the API's handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub backend: SharedBackend,
    pub engine: Engine,
    /// The event streams open now.
    pub streams: std::sync::Arc<crate::limits::Streams>,
}

impl FromRef<ApiState> for SharedBackend {
    fn from_ref(state: &ApiState) -> Self {
        state.backend.clone()
    }
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/deployments",
            get(list_deployments).post(create_deployment),
        )
        .route(
            "/deployments/{id}",
            get(get_deployment).merge(patch(change_budget)),
        )
        .route("/deployments/{id}/teardown", post(teardown))
        .route("/deployments/{id}/redeploy", post(redeploy))
        .route("/deployments/{id}/plan", post(plan_change))
        .route("/deployments/{id}/apply", post(apply_plan))
        .route("/plans/{id}", get(get_plan))
        .route("/deployments/{id}/drift", get(drift).post(check_drift))
        .route("/deployments/{id}/drift/repair", post(repair_drift))
        .route("/deployments/{id}/drift/accept", post(accept_drift))
        .route("/deployments/{id}/health", get(health))
        .route("/deployments/{id}/events", get(events))
        .route("/deployments/{id}/metrics", get(metrics))
        .route("/deployments/{id}/uptime", get(uptime))
        .route("/deployments/{id}/cost", get(cost))
        .route("/deployments/{id}/live", get(live))
        .route("/deployments/{id}/instances/{instance_id}", get(instance))
        .route("/cost", get(cost_all))
        .route("/uptime", get(uptime_all))
        .route("/deployments/{id}/stress", post(stress_group))
        .route(
            "/deployments/{id}/instances/{instance_id}/{action}",
            post(instance_chaos),
        )
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/retry", post(retry_job))
        .route("/jobs/{id}/cancel", post(cancel_job))
        .route("/jobs/{id}/events", get(job_events))
        .route("/orphans", get(list_orphans))
        .route("/orphans/cleanup", post(clean_orphans))
        .route("/preflight", post(preflight))
}

/// The checklist for a (partial) set of parameters; the defaults fill the
/// rest. 200 whatever the checks found; a deploy is what a failure blocks.
async fn preflight(
    State(state): State<ApiState>,
    ApiJson(params): ApiJson<DeploymentParams>,
) -> Result<Response, ApiError> {
    let checklist = state.backend.preflight(params).await?;
    Ok(Json(checklist).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionQuery {
    region: Option<String>,
}

async fn list_orphans(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<RegionQuery>,
) -> Result<Response, ApiError> {
    let scan = state.backend.orphans(query.region.as_deref()).await?;
    Ok(Json(scan).into_response())
}

/// Starts one teardown job per orphaned deployment; 202 with their ids.
async fn clean_orphans(
    State(state): State<ApiState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<RegionQuery>,
) -> Result<Response, ApiError> {
    let started = state
        .backend
        .clean_orphans(query.region.as_deref(), source(&headers))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "started": started }))).into_response())
}

/// Who is asking: the CLI says so in a header; anything else is the API.
fn source(headers: &HeaderMap) -> Source {
    match headers
        .get("x-cloudpulse-source")
        .and_then(|v| v.to_str().ok())
    {
        Some("cli") => Source::Cli,
        Some("browser") => Source::Browser,
        _ => Source::Api,
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .filter(|k| crate::idempotency::check_key(k).is_ok())
                .ok_or_else(|| ApiError::bad_request(crate::idempotency::KEY_RULE))?;
            Ok(Some(key.to_string()))
        }
    }
}

async fn create_deployment(
    State(state): State<ApiState>,
    headers: HeaderMap,
    ApiJson(params): ApiJson<DeploymentParams>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let accepted = state.backend.deploy(params, source(&headers), key).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

async fn get_deployment(
    State(state): State<ApiState>,
    Path(id): Path<DeploymentId>,
) -> Result<Response, ApiError> {
    Ok(Json(state.backend.deployment(&id).await?).into_response())
}

/// `PATCH`: the TTL (`ttl_minutes`, `null` or 0 for none), the cost cap
/// (`cost_cap_usd`, `null` for none) or `extend_minutes`; 200 with the
/// deployment, 400 with every field's problem and nothing changed.
async fn change_budget(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<DeploymentId>,
    ApiJson(change): ApiJson<BudgetChange>,
) -> Result<Response, ApiError> {
    let detail = state
        .backend
        .set_budget(&id, change, source(&headers))
        .await?;
    Ok(Json(detail).into_response())
}

/// Deploys a torn-down deployment again. The body is optional: a partial
/// parameters object merged over the old ones (`{"desired": 3}`).
async fn redeploy(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<DeploymentId>,
    ApiBytes(body): ApiBytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let params = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let changes: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
        if !changes.is_object() {
            return Err(ApiError::bad_request(
                "the body must be a JSON object of the parameters to change, like {\"desired\": 3}",
            ));
        }
        let mut params = state.backend.deployment(&id).await?.params;
        cloudpulse_app::change::merge_patch(&mut params, changes);
        Some(
            serde_json::from_value::<DeploymentParams>(params).map_err(|e| {
                ApiError::bad_request(format!("the parameters cannot be read: {e}"))
            })?,
        )
    };
    let accepted = state
        .backend
        .redeploy(&id, params, source(&headers), key)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// What a change does, without doing it: the body is a partial parameters
/// object merged over the current ones (`{"desired": 3}`); 200 with
/// `{"plan": …}`, 422 for a change the live stack cannot take.
async fn plan_change(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<DeploymentId>,
    ApiJson(changes): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    if !changes.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a JSON object of the parameters to change, like {\"desired\": 3}",
        ));
    }
    let plan = state
        .backend
        .plan_change(&id, changes, source(&headers))
        .await?;
    Ok(Json(json!({ "plan": plan })).into_response())
}

async fn get_plan(
    State(state): State<ApiState>,
    Path(id): Path<PlanId>,
) -> Result<Response, ApiError> {
    Ok(Json(json!({ "plan": state.backend.plan(&id).await? })).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyBody {
    plan_id: PlanId,
}

/// Runs a plan of this deployment; 202 with the job.
async fn apply_plan(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<DeploymentId>,
    ApiJson(body): ApiJson<ApplyBody>,
) -> Result<Response, ApiError> {
    let accepted = state
        .backend
        .apply_plan(&id, &body.plan_id, source(&headers))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// The findings as last checked: `{"checked_at", "findings": [...]}`.
async fn drift(
    State(state): State<ApiState>,
    Path(id): Path<DeploymentId>,
) -> Result<Response, ApiError> {
    Ok(Json(state.backend.drift(&id).await?).into_response())
}

/// Checks now; answers as `GET`.
async fn check_drift(
    State(state): State<ApiState>,
    Path(id): Path<DeploymentId>,
) -> Result<Response, ApiError> {
    Ok(Json(state.backend.check_drift(&id).await?).into_response())
}

/// Puts every drifted resource back; 202 with the job.
async fn repair_drift(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<DeploymentId>,
) -> Result<Response, ApiError> {
    let accepted = state.backend.repair_drift(&id, source(&headers)).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptBody {
    findings: Vec<String>,
}

/// Takes the findings' actual values into the parameters; 200 with the
/// drift left, 422 naming each finding that cannot be.
async fn accept_drift(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<DeploymentId>,
    ApiJson(body): ApiJson<AcceptBody>,
) -> Result<Response, ApiError> {
    let report = state
        .backend
        .accept_drift(&id, body.findings, source(&headers))
        .await?;
    Ok(Json(report).into_response())
}

async fn teardown(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<DeploymentId>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let accepted = state.backend.teardown(&id, source(&headers), key).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "job": accepted.job, "fresh": accepted.fresh })),
    )
        .into_response())
}

async fn health(
    State(state): State<ApiState>,
    Path(id): Path<DeploymentId>,
) -> Result<Response, ApiError> {
    Ok(Json(state.backend.health(&id).await?).into_response())
}

/// The deployment's timeline, newest first.
async fn events(
    State(state): State<ApiState>,
    Path(id): Path<DeploymentId>,
) -> Result<Response, ApiError> {
    let detail = state.backend.deployment(&id).await?;
    Ok(Json(json!({ "events": detail.events })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    range: Option<String>,
}

/// `?range=` as a [`MetricsRange`], 1 h when absent.
fn range(query: RangeQuery) -> Result<MetricsRange, ApiError> {
    match query.range {
        None => Ok(MetricsRange::default()),
        Some(text) => text.parse().map_err(ApiError::bad_request),
    }
}

/// The charts' series over `?range=` (15m, 1h, 6h, 24h, all).
async fn metrics(
    State(state): State<ApiState>,
    Path(id): Path<DeploymentId>,
    ApiQuery(query): ApiQuery<RangeQuery>,
) -> Result<Response, ApiError> {
    let range = range(query)?;
    Ok(Json(state.backend.metrics(&id, range).await?).into_response())
}

async fn uptime(
    State(state): State<ApiState>,
    Path(id): Path<DeploymentId>,
) -> Result<Response, ApiError> {
    Ok(Json(state.backend.uptime(&id).await?).into_response())
}

async fn uptime_all(State(state): State<ApiState>) -> Result<Response, ApiError> {
    Ok(Json(state.backend.uptime_all().await?).into_response())
}

async fn cost(
    State(state): State<ApiState>,
    Path(id): Path<DeploymentId>,
) -> Result<Response, ApiError> {
    Ok(Json(state.backend.cost(&id).await?).into_response())
}

async fn cost_all(State(state): State<ApiState>) -> Result<Response, ApiError> {
    Ok(Json(state.backend.cost_all().await?).into_response())
}

/// Everything the deployment page's live part shows, in one answer.
async fn live(
    State(state): State<ApiState>,
    Path(id): Path<DeploymentId>,
    ApiQuery(query): ApiQuery<RangeQuery>,
) -> Result<Response, ApiError> {
    let range = range(query)?;
    Ok(Json(state.backend.live_view(&id, range).await?).into_response())
}

async fn instance(
    State(state): State<ApiState>,
    Path((id, instance_id)): Path<(DeploymentId, String)>,
    ApiQuery(query): ApiQuery<RangeQuery>,
) -> Result<Response, ApiError> {
    let range = range(query)?;
    Ok(Json(state.backend.instance(&id, &instance_id, range).await?).into_response())
}

/// `{"seconds": N}`, the body of a stress or fail-health.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Seconds {
    seconds: u32,
}

fn seconds(body: &[u8]) -> Result<u32, ApiError> {
    let usage = format!(
        "send {{\"seconds\": N}} with N from 1 to {}",
        ChaosAction::MAX_SECONDS
    );
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(usage));
    }
    serde_json::from_slice::<Seconds>(body)
        .map(|body| body.seconds)
        .map_err(|error| ApiError::bad_request(format!("{error}; {usage}")))
}

/// `terminate`, `stress` or `fail-health` one instance of the deployment.
async fn instance_chaos(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((id, instance_id, action)): Path<(DeploymentId, String, String)>,
    ApiBytes(body): ApiBytes,
) -> Result<Response, ApiError> {
    let action = match action.as_str() {
        "terminate" => ChaosAction::Terminate,
        "stress" => ChaosAction::Stress {
            seconds: seconds(&body)?,
        },
        "fail-health" => ChaosAction::FailHealth {
            seconds: seconds(&body)?,
        },
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no instance action {other:?}; use terminate, stress or fail-health"),
            ))
        }
    };
    let accepted = state
        .backend
        .chaos(&id, Some(&instance_id), action, source(&headers))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// Stresses every instance in service: what makes the group's average CPU
/// cross the scale-out alarm's threshold.
async fn stress_group(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<DeploymentId>,
    ApiBytes(body): ApiBytes,
) -> Result<Response, ApiError> {
    let action = ChaosAction::Stress {
        seconds: seconds(&body)?,
    };
    let accepted = state
        .backend
        .chaos(&id, None, action, source(&headers))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

async fn get_job(
    State(state): State<ApiState>,
    Path(id): Path<JobId>,
) -> Result<Response, ApiError> {
    Ok(Json(state.backend.job(&id).await?).into_response())
}

async fn retry_job(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<JobId>,
) -> Result<Response, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(state.backend.retry_job(&id, source(&headers)).await?),
    )
        .into_response())
}

async fn cancel_job(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<JobId>,
) -> Result<Response, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(state.backend.cancel_job(&id, source(&headers)).await?),
    )
        .into_response())
}

/// Server-Sent Events: the whole job as `job` events, one now and one after
/// every change, ending with the event that shows it finished.
/// At most [`crate::limits::STREAMS_PER_JOB`] per job and
/// [`crate::limits::STREAMS_TOTAL`] in all; more are answered 429 with
/// `Retry-After`.
async fn job_events(
    State(state): State<ApiState>,
    Path(id): Path<JobId>,
) -> Result<Response, ApiError> {
    let first = state.backend.job(&id).await?;
    let slot = match state.streams.open(id.as_str()) {
        Ok(slot) => slot,
        Err(refusal) => return Ok(refusal.into_response()),
    };
    let events = state.engine.subscribe();
    let stream = futures_util::stream::unfold(
        (Some(first), events, state, id, false),
        |(pending, mut events, state, id, ended)| async move {
            if ended {
                return None;
            }
            let job = match pending {
                Some(job) => job,
                None => loop {
                    match tokio::time::timeout(Duration::from_secs(2), events.recv()).await {
                        Ok(Ok(event)) if event.job_id != id => continue,
                        Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return None,
                        // Our event, a lag, or a quiet period: look at the job.
                        _ => {}
                    }
                    match state.backend.job(&id).await {
                        Ok(job) => break job,
                        Err(_) => return None,
                    }
                },
            };
            let finished = job.status.is_finished();
            let event = Event::default()
                .event("job")
                .json_data(&job)
                .unwrap_or_else(|_| Event::default().comment("unserializable"));
            Some((
                Ok::<_, Infallible>(event),
                (None, events, state, id, finished),
            ))
        },
    );
    // The slot lives as long as the stream: dropped with it when the job
    // has finished or the client has gone.
    let stream = futures_util::StreamExt::map(stream, move |event| {
        let _held = &slot;
        event
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Liveness and what the portal depends on. 200 while the portal can serve,
/// even when the cloud is unreachable (the body says so); 503 when its own
/// database fails. Anyone may ask, so a request without the access token
/// (when one is set) gets only `{"status": ...}`: the account, region and
/// endpoint are for those who hold it.
pub async fn healthz(
    State(backend): State<SharedBackend>,
    anonymous: Option<axum::Extension<crate::access::Anonymous>>,
) -> Response {
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
    if anonymous.is_some() {
        return (code, Json(json!({ "status": status }))).into_response();
    }
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
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
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
    let page = state.backend.list_deployments(filter).await?;
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
/// A JSON body whose rejection is the API's own 400 with the reason.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::too_large())
            }
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// A raw body, cut off at [`crate::limits::MAX_BODY`] with the API's 413.
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::body::Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(ApiBytes(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::too_large())
            }
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// A query string whose rejection is the API's own 400 with the reason.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    fields: Option<FieldErrors>,
    /// A failed preflight's checklist.
    preflight: Option<Preflight>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: None,
            preflight: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A body over [`crate::limits::MAX_BODY`].
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the request body is larger than the {} KiB the portal reads; send only the \
                 parameters, without padding",
                crate::limits::MAX_BODY / 1024
            ),
        )
    }
}

impl From<BackendError> for ApiError {
    fn from(error: BackendError) -> Self {
        match error {
            BackendError::Invalid(message) => ApiError::bad_request(message),
            BackendError::Validation(fields) => ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "validation",
                message: "the parameters are invalid; see fields".into(),
                fields: Some(fields),
                preflight: None,
            },
            BackendError::Preflight(preflight) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "preflight_failed",
                message: BackendError::Preflight(preflight.clone()).to_string(),
                fields: None,
                preflight: Some(preflight),
            },
            BackendError::NotFound(message) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            BackendError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            BackendError::Refused { code, fields } => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code,
                message: if code == "drift_not_accepted" {
                    "the parameters cannot take these findings in; see fields".into()
                } else {
                    "the stack cannot take these changes in place; see fields".into()
                },
                fields: Some(fields),
                preflight: None,
            },
            BackendError::TooMany(message) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_deployments",
                message,
            ),
            BackendError::KeyReused(message) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                message,
            ),
            BackendError::Cloud(message) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "cloud", message)
            }
            BackendError::Database(message) => {
                tracing::error!(%message, "database error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "database", message)
            }
            BackendError::Internal(message) => {
                tracing::error!(%message, "internal error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(fields) = self.fields {
            error["fields"] = json!(fields);
        }
        if let Some(preflight) = self.preflight {
            error["preflight"] = json!(preflight);
        }
        let body = json!({ "error": error });
        (self.status, Json(body)).into_response()
    }
}
