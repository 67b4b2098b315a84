//! Wiring and lifecycle: build the clients once, bind, serve, drain.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::group::Group;
use crate::host::Host;
use crate::http::{router, AppState};
use crate::identity::IdentitySource;
use crate::metrics::Publisher;
use crate::traffic::Traffic;

pub struct Application {
    listener: TcpListener,
    state: AppState,
    publisher: Arc<Publisher>,
    publishing: tokio::task::JoinHandle<()>,
}

impl Application {
    /// Builds the AWS clients and binds the listener; starts the background
    /// samplers. Must run inside a tokio runtime.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            // One quick retry for transient faults; the whole call is still
            // bounded by `aws_timeout`, so a dead endpoint fails fast.
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(2)
                    .with_initial_backoff(Duration::from_millis(100)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(1).min(config.aws_timeout))
                    .operation_timeout(config.aws_timeout)
                    .build(),
            );
        if let Some(endpoint) = &config.aws_endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = loader.load().await;

        let identity = IdentitySource::new(config.imds_endpoint.as_deref());
        identity.prefetch();
        let host = Host::start();
        let traffic = Traffic::default();
        let group = Group::new(
            aws_sdk_autoscaling::Client::new(&sdk),
            config.asg_name.clone(),
            config.aws_timeout,
            config.aws_cache_ttl,
        );
        let publisher = Arc::new(Publisher {
            client: aws_sdk_cloudwatch::Client::new(&sdk),
            namespace: config.metrics_namespace.clone(),
            asg_name: config.asg_name.clone(),
            interval: config.metrics_interval,
            retries: config.retry_max_attempts,
            retry_base: config.retry_base_delay,
            call_timeout: config.aws_timeout,
            traffic: traffic.clone(),
            host: host.clone(),
            identity: identity.clone(),
        });
        let publishing = Arc::clone(&publisher).spawn();

        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        Ok(Application {
            publisher,
            publishing,
            listener,
            state: AppState {
                config: Arc::new(config),
                started: Instant::now(),
                draining: Arc::new(AtomicBool::new(false)),
                identity,
                group,
                host,
                traffic,
            },
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGTERM or SIGINT, then drains: `/health` answers 503 at
    /// once, new connections are still accepted for the grace period (so
    /// the load balancer sees the 503), in-flight requests may finish, and
    /// this returns no later than the drain timeout after the signal.
    pub async fn run(self) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            publisher,
            publishing,
        } = self;
        let drain_grace = state.config.drain_grace;
        let drain_timeout = state.config.drain_timeout;
        let draining = Arc::clone(&state.draining);
        let (deadline_tx, mut deadline_rx) =
            tokio::sync::watch::channel(None::<tokio::time::Instant>);
        let signals = stop_signal();
        let orphanable = state.config.exit_with_parent;
        tokio::spawn(async move {
            tokio::select! {
                _ = signals => {}
                _ = parent_gone(), if orphanable => {
                    tracing::warn!("the parent process is gone: draining");
                }
            }
            draining.store(true, Ordering::SeqCst);
            let deadline = tokio::time::Instant::now() + drain_timeout;
            tracing::info!(
                grace_ms = drain_grace.as_millis() as u64,
                timeout_ms = drain_timeout.as_millis() as u64,
                "stop signal: draining"
            );
            let _ = deadline_tx.send(Some(deadline));
        });

        let mut stop_accepting = deadline_rx.clone();
        let graceful = async move {
            let deadline = stop_accepting
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|deadline| *deadline);
            match deadline {
                Some(deadline) => {
                    let until = (tokio::time::Instant::now() + drain_grace).min(deadline);
                    tokio::time::sleep_until(until).await;
                }
                None => std::future::pending().await,
            }
            tracing::info!("no longer accepting connections; finishing requests in flight");
        };
        let server = axum::serve(listener, router(state)).with_graceful_shutdown(graceful);
        let mut server = tokio::spawn(std::future::IntoFuture::into_future(server));

        let final_deadline = deadline_rx.clone();
        let deadline_passed = async move {
            let deadline = deadline_rx
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|deadline| *deadline);
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            finished = &mut server => {
                finished.context("server task failed")?.context("server failed")?;
                publishing.abort();
                // Whatever time the drain left is spent sending the last
                // partial interval's metrics.
                let remaining = (*final_deadline.borrow())
                    .map(|deadline| deadline.saturating_duration_since(tokio::time::Instant::now()))
                    .unwrap_or_default();
                publisher.publish_final(remaining).await;
                tracing::info!("drained; exiting");
            }
            () = deadline_passed => {
                tracing::warn!("drain timeout reached with requests in flight; exiting");
                server.abort();
            }
        }
        Ok(())
    }
}

/// Resolves once this process has a different parent than when it started
/// (the parent died and the process was adopted).
async fn parent_gone() {
    let parent = std::os::unix::process::parent_id();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        if std::os::unix::process::parent_id() != parent {
            return;
        }
    }
}

/// Registers the handlers now (a signal that arrives before the returned
/// future is first polled is not lost) and resolves on SIGTERM or SIGINT.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move { wait_for(handlers).await }
}

async fn wait_for(
    handlers: (
        std::io::Result<tokio::signal::unix::Signal>,
        std::io::Result<tokio::signal::unix::Signal>,
    ),
) {
    match handlers {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Without signal handlers only Ctrl-C remains; if even that
            // fails, never drain (the process is killed instead).
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
