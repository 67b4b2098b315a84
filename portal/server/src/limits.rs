//! What one client may take of the portal: a body of at most
//! [`MAX_BODY`], a request that ends within the request timeout, and a
//! share of the event streams. The connection limit and the header-read
//! timeout are the server's (see [`crate::serve`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;

/// The largest request body read: a deployment's parameters take about a
/// kilobyte; every form and server function less.
pub const MAX_BODY: usize = 64 * 1024;

/// Event streams one job may have open at once.
pub const STREAMS_PER_JOB: usize = 8;
/// Event streams open at once in all.
pub const STREAMS_TOTAL: usize = 64;
/// What a refused stream is told to wait, in seconds.
const STREAM_RETRY_SECS: u64 = 10;

/// The 413 every route answers for a body over [`MAX_BODY`].
pub fn too_large() -> Response {
    ApiError::too_large().into_response()
}

/// Refuses a body announced larger than [`MAX_BODY`] before reading it,
/// and cuts off one sent in chunks once it passes the limit (the extractors
/// then answer [`too_large`]).
pub async fn limit_body(request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > MAX_BODY as u64) {
        return too_large();
    }
    let request = request.map(|body| Body::new(http_body_util::Limited::new(body, MAX_BODY)));
    next.run(request).await
}

/// Event streams stay open for as long as a job runs; they are the only
/// routes without the request timeout.
pub fn is_stream(path: &str) -> bool {
    path.starts_with("/api/v1/jobs/") && path.ends_with("/events")
}

/// Answers 504 to a request (but an event stream) that has not been
/// answered within the timeout; most likely it waits on AWS. What it was
/// doing is dropped: reads change nothing, and the engine's jobs run on
/// their own tasks, not on the request's.
pub async fn time_out(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    if is_stream(request.uri().path()) {
        return next.run(request).await;
    }
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "no answer within {} s: what the portal waited on (most likely AWS) did not \
                 answer in time; try again, or raise --request-timeout-secs",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

/// Counts the open event streams, per job and in all.
#[derive(Debug, Default)]
pub struct Streams {
    open: Mutex<HashMap<String, usize>>,
}

/// Why a stream was refused: answered 429 with `Retry-After`.
#[derive(Debug)]
pub struct StreamsFull(String);

impl IntoResponse for StreamsFull {
    fn into_response(self) -> Response {
        let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_streams", self.0)
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(STREAM_RETRY_SECS));
        response
    }
}

/// One open stream's place; dropping it (the stream ended or its client
/// went away) frees the place.
#[derive(Debug)]
pub struct StreamSlot {
    streams: Arc<Streams>,
    job: String,
}

impl Streams {
    /// A place for one more stream of `job`, or the 429 that says why not.
    pub fn open(self: &Arc<Self>, job: &str) -> Result<StreamSlot, StreamsFull> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = open.values().sum();
        let of_job = open.get(job).copied().unwrap_or(0);
        let refusal = if of_job >= STREAMS_PER_JOB {
            Some(format!(
                "job {job} already has {of_job} event streams open, the most one job may \
                 have; close one, or poll GET /api/v1/jobs/{job}"
            ))
        } else if total >= STREAMS_TOTAL {
            Some(format!(
                "{total} event streams are open, the most the portal serves at once; close \
                 one, or poll GET /api/v1/jobs/{job}"
            ))
        } else {
            None
        };
        if let Some(message) = refusal {
            return Err(StreamsFull(message));
        }
        *open.entry(job.to_string()).or_insert(0) += 1;
        Ok(StreamSlot {
            streams: self.clone(),
            job: job.to_string(),
        })
    }

    /// Streams open now, of every job.
    pub fn total(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.job) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.job);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_capped_per_job_and_in_all() {
        let streams = Arc::new(Streams::default());
        let mut held: Vec<StreamSlot> = (0..STREAMS_PER_JOB)
            .map(|_| streams.open("a").unwrap())
            .collect();
        let refused = streams.open("a").unwrap_err().into_response();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "10");
        held.pop();
        held.push(streams.open("a").unwrap());
        // Other jobs fill the rest, then nobody gets one.
        let mut n = 0;
        while held.len() < STREAMS_TOTAL {
            held.push(
                streams
                    .open(&format!("job-{}", n / STREAMS_PER_JOB))
                    .unwrap(),
            );
            n += 1;
        }
        assert!(streams.open("fresh").is_err());
        assert_eq!(streams.total(), STREAMS_TOTAL);
        drop(held);
        assert_eq!(streams.total(), 0);
        assert!(streams.open("fresh").is_ok());
    }

    #[test]
    fn only_event_streams_go_without_the_timeout() {
        assert!(is_stream("/api/v1/jobs/abc/events"));
        assert!(!is_stream("/api/v1/deployments/abc/events"));
        assert!(!is_stream("/api/v1/jobs/abc"));
    }
}
