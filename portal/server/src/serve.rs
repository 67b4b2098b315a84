//! Accepting connections. `axum::serve` (axum 0.8) takes no settings, so
//! the portal runs hyper's HTTP/1 server itself: at most `max_connections`
//! connections at once (more wait in the listen queue, so a flood of idle
//! ones cannot use up the process's file descriptors), each of which must
//! send a request's whole header within `header_timeout`, also while it
//! sits idle between two requests; a slow or silent client is closed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tower::ServiceExt as _;

/// How the server treats connections.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// How long a client may take to send a request's header.
    pub header_timeout: Duration,
    /// How long open connections may take to finish after shutdown begins.
    pub drain: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open
/// connections finish their requests (for at most `limits.drain`). Every
/// request carries the client's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    // Every connection holds a sender; when all are gone, `recv` ends.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a connection reset before it was
                    // taken: wait a little rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let mut stopping = stopping.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = open;
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(remote));
                router.clone().oneshot(request)
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let mut draining = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(%error, %remote, "connection ended");
                        }
                        break;
                    }
                    changed = stopping.changed(), if !draining => {
                        draining = true;
                        if changed.is_ok() {
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(open);
    if tokio::time::timeout(limits.drain, all_closed.recv())
        .await
        .is_err()
    {
        tracing::info!(
            "connections still open after {} s (event streams); closing them",
            limits.drain.as_secs()
        );
    }
}
