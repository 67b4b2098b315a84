#![recursion_limit = "256"]
//! The CloudPulse portal server: the `cloudpulse` binary's library.
//!
//! It wires the pieces together: configuration, the database, the cloud
//! connection, the Leptos pages, the REST API and the sandbox. Business rules
//! live in the engine and telemetry crates; this crate only serves them.

pub mod access;
pub mod api;
pub mod backend;
pub mod cli;
pub mod cli_change;
pub mod cloud;
pub mod config;
pub mod db;
pub mod forms;
pub mod idempotency;
pub mod limits;
pub mod sandbox_flags;
pub mod security;
pub mod serve;
pub mod sessions;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use axum::Router;
use cloudpulse_app::backend::SharedBackend;
use cloudpulse_app::model::CloudMode;
use cloudpulse_engine::steps::{Artifact, ArtifactSource, Timings};
use cloudpulse_engine::{Engine, EngineConfig, Store};
use cloudpulse_sandbox::dataplane::{DataPlane, DataPlaneConfig};
use cloudpulse_sandbox::moto::{MotoOptions, MotoServer};
use cloudpulse_sandbox::Gateway;
use cloudpulse_telemetry::{Telemetry, TelemetryConfig};
use leptos::config::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

use crate::api::ApiState;
use crate::backend::PortalBackend;
use crate::cloud::CloudProbe;
use crate::config::{Cli, Command, SandboxArgs, ServeArgs};

/// The name the browser bundle is built under (`pkg/cloudpulse.js`).
pub const BUNDLE_NAME: &str = "cloudpulse";

/// Runs a parsed command line to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            init_logging(&args.log)?;
            // Refuse a bad bind or token before loading any cloud configuration.
            args.listen()?;
            let stop = shutdown_signal();
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            let db = args.database_or("cloudpulse.db");
            let app =
                Application::build(&args, &db, CloudMode::Aws, sdk, args.telemetry(1.0)).await?;
            app.run_until_stopped(stop).await
        }
        Command::Sandbox(args) => run_sandbox(args).await,
        Command::Deploy(args) => cli::deploy(args).await,
        Command::Teardown(args) => cli::teardown(args).await,
        Command::Budget(args) => cli::budget(args).await,
        Command::Redeploy(args) => cli::redeploy(args).await,
        Command::Plan(args) => cli_change::plan(args).await,
        Command::Apply(args) => cli_change::apply(args).await,
        Command::Drift(args) => cli_change::drift(args).await,
        Command::Status(args) => cli::status(args).await,
        Command::Preflight(args) => cli::preflight(args).await,
        Command::Orphans(args) => cli::orphans(args).await,
    }
}

async fn run_sandbox(args: SandboxArgs) -> anyhow::Result<()> {
    init_logging(&args.serve.log)?;
    // A Ctrl-C while moto starts must still stop moto.
    let stop = shutdown_signal();
    // Check what we can before starting anything, so a bad flag stops nothing.
    args.serve.listen()?;
    tracing::info!("starting the sandbox cloud (moto)");
    let moto = MotoServer::start_with(MotoOptions {
        python: args.moto_python.clone(),
        port: args.moto_port,
        // Sandbox deployments outlive the portal: a restart finds them.
        state_dir: Some(args.moto_state_dir()),
        ..Default::default()
    })
    .await
    .context("the sandbox cloud did not start")?;
    let db = args.serve.database_or("cloudpulse-sandbox.db");
    let result = async {
        // The portal talks to moto through the sandbox gateway, which adds
        // AWS's pending states, propagation delays and lingering
        // dependencies, on the sandbox's clock (`sandbox_flags.rs`).
        let behaviours = args.strict.behaviours(args.time_scale);
        let gateway = Gateway::start_strict(
            &moto.endpoint(),
            behaviours.latency,
            behaviours.strictness,
            behaviours.disruption,
        )
        .await
        .context("the sandbox gateway did not start")?;
        gateway
            .strict()
            .fail_next_nat_gateways(behaviours.fail_next_nat);
        // Cooldowns run on the same clock as everything else.
        gateway.faithful().set_time_scale(args.time_scale);
        // Scaling activities, alarm history, cooldowns, first sightings and
        // the strict layer's clocks outlive the portal, as they do on AWS;
        // they are kept with moto's state, under the same checks.
        let records = args.moto_state_dir();
        move_old_record(&args.data_plane_dir(), &records);
        gateway
            .faithful()
            .persist_to(&records.join(GATEWAY_RECORD))
            .context("the sandbox gateway's record")?;
        gateway
            .strict()
            .persist_to(&records.join(GATEWAY_CLOCKS))
            .context("the sandbox gateway's clocks")?;
        // The data plane runs what moto only describes: instance processes,
        // health checks and a load balancer per deployment.
        let mut plane =
            DataPlaneConfig::new(moto.endpoint(), gateway.endpoint(), args.data_plane_dir());
        plane.instance_binary = Some(args.serve.instance_binary());
        plane.time_scale = args.time_scale;
        plane.boot_time = behaviours.boot_time;
        plane.metrics_delay = behaviours.metrics_delay;
        // Replacements after failed health checks become scaling activities.
        plane.faithful = Some(gateway.faithful());
        let dataplane = DataPlane::start(plane)
            .await
            .context("the sandbox data plane did not start")?;
        if let Some((failure, count)) = behaviours.fail_launches {
            dataplane.fail_launches(failure, count);
        }
        gateway.attach(dataplane.view());
        // What a person (or a test) uses to change the stack behind the
        // portal's back, as someone would in the console: the drift check
        // and the failure lab meet it there.
        let (key, secret) = cloudpulse_sandbox::iam::SERVICE_KEY;
        println!(
            "The sandbox's AWS API is at {} (an identity allowed everything: \
             AWS_ACCESS_KEY_ID={key} AWS_SECRET_ACCESS_KEY={secret})",
            gateway.endpoint()
        );
        let served = async {
            let app = Application::build(
                &args.serve,
                &db,
                CloudMode::Sandbox,
                // The portal signs as its own identity, which holds the
                // operator policy and nothing more (IAM is enforced).
                gateway.operator_sdk_config(),
                args.serve.telemetry(args.time_scale),
            )
            .await?;
            app.run_until_stopped(stop).await
        }
        .await;
        // Every instance process gets its drain and is stopped; every port
        // is freed.
        gateway.detach();
        dataplane.stop().await;
        served
    }
    .await;
    moto.stop().await;
    result
}

/// The faithful layer's record (activities, alarm history, cooldowns, first
/// sightings) and the strict layer's clocks, in moto's state folder.
const GATEWAY_RECORD: &str = "gateway-record.json";
const GATEWAY_CLOCKS: &str = "gateway-clocks.json";

/// Earlier sandboxes kept the gateway's record among the data plane's
/// files; it now lives with moto's state, whose folder is checked.
fn move_old_record(data_plane: &Path, records: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let (old, new) = (
        data_plane.join(GATEWAY_RECORD),
        records.join(GATEWAY_RECORD),
    );
    let is_plain = std::fs::symlink_metadata(&old).is_ok_and(|m| m.file_type().is_file());
    if !is_plain || new.exists() {
        return;
    }
    let moved = std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&old, &new));
    match moved {
        Ok(()) => {
            tracing::info!(from = %old.display(), to = %new.display(), "moved the gateway's record")
        }
        Err(error) => {
            tracing::warn!(from = %old.display(), %error, "cannot move the gateway's record; it starts empty")
        }
    }
}

/// A portal ready to serve: listener bound, database open, routes built.
pub struct Application {
    listener: tokio::net::TcpListener,
    router: Router,
    addr: SocketAddr,
    limits: serve::ServeLimits,
}

impl Application {
    pub async fn build(
        args: &ServeArgs,
        database: &Path,
        mode: CloudMode,
        sdk: aws_config::SdkConfig,
        telemetry: TelemetryConfig,
    ) -> anyhow::Result<Self> {
        let listen = args.listen()?;
        let addr = listen.addr;
        let store = Store::open(database).await?;
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} (is another portal running there? pass --bind 127.0.0.1:PORT)")
        })?;
        let addr = listener.local_addr()?;

        let cloud = CloudProbe::new(mode, &sdk);
        cloud
            .clone()
            .spawn(Duration::from_secs(args.cloud_check_secs));

        check_bundle(&args.site_root);
        let artifact = load_artifact(&args.instance_binary());
        let engine = Engine::new(
            store,
            sdk,
            EngineConfig {
                artifact,
                timings: Timings {
                    // A sandbox recovers in seconds; time it more finely.
                    recovery_poll: match mode {
                        CloudMode::Sandbox => Duration::from_millis(200),
                        CloudMode::Aws => Duration::from_secs(1),
                    },
                    ..Timings::default()
                },
                concurrency: usize::from(args.concurrency),
                retry_base: Duration::from_secs(1),
                resume_settle: Duration::from_secs(args.resume_settle_secs),
                max_concurrent_deploys: usize::from(args.max_concurrent_deploys),
            },
        );
        arm_test_faults(&engine)?;
        let resumed = engine.resume_unfinished().await?;
        if !resumed.is_empty() {
            tracing::info!(
                jobs = resumed.len(),
                "resumed jobs a previous run left unfinished"
            );
        }
        let telemetry = Telemetry::new(engine.clone(), telemetry).await?;
        telemetry.spawn();
        let server_db = db::ServerDb::open(database)
            .await
            .with_context(|| format!("cannot open {}", database.display()))?;
        let backend: SharedBackend = Arc::new(PortalBackend::new(
            engine.clone(),
            cloud,
            telemetry,
            idempotency::Keys::new(server_db.clone()),
            args.max_live,
        ));
        let access = listen.token.map(|token| {
            tracing::info!("an access token is required: CLOUDPULSE_TOKEN, bearer or /login");
            let tag = token.tag().to_string();
            let lifetime = Duration::from_secs(args.session_hours * 3600);
            access::Access::new(
                token,
                sessions::Sessions::new(server_db.clone(), tag, lifetime),
            )
        });
        let guards = Guards {
            access,
            hosts: security::AllowedHosts::new(addr, &args.allowed_hosts),
            request_timeout: Duration::from_secs(args.request_timeout_secs),
        };
        let state = ApiState {
            backend,
            engine,
            streams: Arc::default(),
        };
        let router = router(state, &args.site_root, guards);
        Ok(Application {
            listener,
            router,
            addr,
            limits: serve::ServeLimits {
                max_connections: args.max_connections as usize,
                header_timeout: Duration::from_secs(args.header_timeout_secs),
                drain: Duration::from_secs(10),
            },
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // Tests and scripts read this line to learn the port.
        println!("CloudPulse is listening on http://{}", self.addr);
        tracing::info!(url = %format!("http://{}", self.addr), "portal ready");
        serve::serve(self.listener, self.router, self.limits, shutdown).await;
        tracing::info!("portal stopped");
        Ok(())
    }
}

/// Names the faults a test build arms (see `cloudpulse_engine::faults`).
const FAULTS_ENV: &str = "CLOUDPULSE_TEST_FAULTS";

/// Arms the faults `CLOUDPULSE_TEST_FAULTS` asks for in a test build, and
/// refuses to start any other build that is asked to.
fn arm_test_faults(engine: &Engine) -> anyhow::Result<()> {
    let Some(spec) = std::env::var_os(FAULTS_ENV) else {
        return Ok(());
    };
    #[cfg(feature = "fault-injection")]
    {
        let spec = spec.to_string_lossy();
        engine
            .faults()
            .arm_spec(&spec)
            .map_err(|e| anyhow::anyhow!("{FAULTS_ENV}: {e}"))?;
        tracing::warn!(%spec, "test faults armed");
        Ok(())
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = (engine, spec);
        anyhow::bail!(
            "{FAULTS_ENV} is set, but this build of cloudpulse cannot inject faults \
             (only test builds can); unset it"
        )
    }
}

/// The instance binary deployments upload. A missing one does not stop the
/// portal; the artifact step fails and says how to build it.
fn load_artifact(path: &Path) -> ArtifactSource {
    match Artifact::from_file(path) {
        Ok(artifact) => {
            tracing::info!(path = %path.display(), sha256 = %artifact.sha256, "instance artifact");
            ArtifactSource::Ready(Arc::new(artifact))
        }
        Err(error) => {
            let reason = format!(
                "cannot read the instance binary {}: {error}; build it with \
                 `cargo build -p cloudpulse-instance` or pass --instance-binary",
                path.display()
            );
            tracing::warn!("{reason}");
            ArtifactSource::Missing(reason)
        }
    }
}

/// What stands between a request and the routes.
pub struct Guards {
    /// The access token and its sessions, when a token is set.
    pub access: Option<access::Access>,
    /// The `Host` names the portal answers to.
    pub hosts: security::AllowedHosts,
    /// How long a request but an event stream may take.
    pub request_timeout: Duration,
}

/// Every route of the portal.
pub fn router(state: ApiState, site_root: &Path, guards: Guards) -> Router {
    let backend = state.backend.clone();
    let options = LeptosOptions::builder()
        .output_name(BUNDLE_NAME)
        .site_root(site_root.to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .env(leptos::config::Env::PROD)
        .build();
    let routes = generate_route_list(cloudpulse_app::App);
    let context_backend = backend.clone();
    let pages = Router::new()
        .leptos_routes_with_context(
            &options,
            routes,
            move || {
                leptos::context::provide_context(context_backend.clone());
                security::provide_nonce_from_request();
            },
            {
                let options = options.clone();
                move || cloudpulse_app::shell(options.clone())
            },
        )
        .with_state(options);

    let app = Router::new()
        .route("/healthz", get(api::healthz))
        .nest("/api/v1", api::routes())
        .route(
            "/deployments/{id}/budget",
            axum::routing::post(forms::budget),
        )
        .route("/deployments/{id}/apply", axum::routing::post(forms::apply))
        .route("/deployments/{id}/drift", axum::routing::post(forms::drift))
        .with_state(state)
        .route(
            cloudpulse_app::shell::STYLESHEET_PATH,
            get(security::stylesheet),
        )
        .nest_service("/pkg", ServeDir::new(site_root.join("pkg")))
        .merge(pages)
        .fallback(api::not_found);
    let app = match guards.access {
        Some(access) => access::guard(app, access),
        None => app,
    };
    // The last layer added runs first: the Host check before anything else.
    app.layer(axum::middleware::from_fn_with_state(
        guards.request_timeout,
        limits::time_out,
    ))
    .layer(axum::middleware::from_fn(security::reject_cross_site))
    .layer(axum::middleware::from_fn(limits::limit_body))
    .layer(axum::middleware::from_fn_with_state(
        Arc::new(guards.hosts),
        security::check_host,
    ))
    .layer(axum::middleware::from_fn(security::headers))
    .layer(CompressionLayer::new())
    .layer(TraceLayer::new_for_http())
}

fn check_bundle(site_root: &Path) {
    let js: PathBuf = site_root.join("pkg").join(format!("{BUNDLE_NAME}.js"));
    if !js.is_file() {
        tracing::warn!(
            path = %js.display(),
            "no browser bundle: pages render but stay inert; build it with `cargo xtask build` \
             or pass --site-root"
        );
    }
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid --log {filter:?}: use a level such as info or debug"))?;
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    Ok(())
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are registered when
/// this is called, not when the future is first polled, so a signal that
/// arrives while the server is still starting is not lost.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (terminate, interrupt) {
            (Ok(mut terminate), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = terminate.recv() => {},
                    _ = interrupt.recv() => {},
                }
            }
            _ => {
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
        tracing::info!("shutting down");
    }
}
