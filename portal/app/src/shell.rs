//! The HTML document and the application's routes.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::{
    components::{Route, Router, Routes, A},
    path, SsrMode,
};

use crate::model::{CloudMode, CloudStatus, Reachability};
use crate::pages::deployment::DeploymentPage;
use crate::pages::deployments::DeploymentsPage;
use crate::pages::instance::InstancePage;
use crate::pages::new::NewDeploymentPage;
use crate::pages::reports::{CostPage, UptimePage};

/// Where the server serves the portal's own stylesheet.
pub const STYLESHEET_PATH: &str = "/assets/cloudpulse.css";

/// The stylesheet's text, for the server to serve.
pub const STYLESHEET: &str = include_str!("../style/cloudpulse.css");

/// The whole document, rendered on the server around [`App`].
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="stylesheet" href=STYLESHEET_PATH/>
                <link rel="icon" href="data:,"/>
                <HydrationScripts options islands=true/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title text="CloudPulse"/>
        <Router>
            <a class="skip" href="#main">"Skip to content"</a>
            <TopBar/>
            <main id="main">
                <Routes fallback=NotFound>
                    // Async: the whole page arrives rendered, readable
                    // without JavaScript; hydration then takes over.
                    <Route path=path!("/") view=DeploymentsPage ssr=SsrMode::Async/>
                    <Route path=path!("/new") view=NewDeploymentPage ssr=SsrMode::Async/>
                    <Route path=path!("/deployments/:id") view=DeploymentPage ssr=SsrMode::Async/>
                    <Route path=path!("/deployments/:id/instances/:instance") view=InstancePage ssr=SsrMode::Async/>
                    <Route path=path!("/cost") view=CostPage ssr=SsrMode::Async/>
                    <Route path=path!("/uptime") view=UptimePage ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http_not_found());
    }
    view! {
        <Title text="Not found · CloudPulse"/>
        <h1>"Not found"</h1>
        <p>"There is no page at this address. " <A href="/">"Back to the deployments"</A></p>
    }
}

#[cfg(feature = "ssr")]
fn http_not_found() -> http::StatusCode {
    http::StatusCode::NOT_FOUND
}

/// The bar on every page: which cloud this portal talks to, whether it can
/// reach it, and a control to check again.
#[component]
fn TopBar() -> impl IntoView {
    let initial = Resource::new(|| (), |_| get_cloud_status());
    view! {
        <header class="topbar">
            <A href="/" attr:class="brand">"CloudPulse"</A>
            <nav class="primary-nav" aria-label="Portal">
                <a href="/">"Deployments"</a>
                <a href="/new" data-testid="new-deployment">"New deployment"</a>
                <a href="/cost" data-testid="nav-cost">"Cost"</a>
                <a href="/uptime" data-testid="nav-uptime">"Uptime"</a>
            </nav>
            <Suspense fallback=|| view! { <span class="cloud">"Checking the cloud…"</span> }>
                {move || Suspend::new(async move {
                    initial.await.ok().map(|status| view! { <CloudControl status/> })
                })}
            </Suspense>
        </header>
        <Suspense>
            {move || Suspend::new(async move {
                initial.await.ok().and_then(|status| match status.reachable {
                    Reachability::Unreachable { reason } => Some(view! {
                        <div class="banner" role="alert" data-testid="cloud-unreachable">
                            <strong>"CloudPulse cannot reach "{cloud_word(status.mode)}". "</strong>
                            {reason}
                        </div>
                    }),
                    _ => None,
                })
            })}
        </Suspense>
    }
}

/// The live part of the top bar: the cloud's badge and the "check again"
/// control. An island, so it is the only part of the bar in the browser's
/// bundle.
#[island]
fn CloudControl(status: CloudStatus) -> impl IntoView {
    let recheck = ServerAction::<RecheckCloud>::new();
    // Effects run only in the browser, so this turns true once the island
    // has hydrated; until then the button stays disabled rather than dead.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let current = move || {
        recheck
            .value()
            .get()
            .and_then(Result::ok)
            .unwrap_or_else(|| status.clone())
    };
    view! {
        {move || view! { <CloudBadge status=current()/> }}
        {move || {
            recheck
                .value()
                .get()
                .map(|answer| {
                    let words = match answer {
                        Ok(status) => match status.reachable {
                            Reachability::Reachable => "reachable".to_string(),
                            Reachability::Unreachable { .. } => "unreachable".to_string(),
                            Reachability::Unknown => "not checked".to_string(),
                        },
                        Err(error) => format!("check failed: {error}"),
                    };
                    view! {
                        <span class="muted" role="status" data-testid="recheck-result">
                            "Checked just now: "
                            {words}
                        </span>
                    }
                })
        }}
        <button
            type="button"
            data-testid="recheck-cloud"
            disabled=move || !hydrated.get() || recheck.pending().get()
            on:click=move |_| {
                recheck.dispatch(RecheckCloud {});
            }
        >
            {move || if recheck.pending().get() { "Checking…" } else { "Check connection" }}
        </button>
    }
}

fn cloud_word(mode: CloudMode) -> &'static str {
    match mode {
        CloudMode::Sandbox => "the sandbox cloud",
        CloudMode::Aws => "AWS",
    }
}

#[component]
fn CloudBadge(status: CloudStatus) -> impl IntoView {
    let (class, state) = match &status.reachable {
        Reachability::Reachable => ("cloud ok", "connected"),
        Reachability::Unreachable { .. } => ("cloud down", "unreachable"),
        Reachability::Unknown => ("cloud", "not checked yet"),
    };
    let checked = status
        .checked_at
        .map(|at| format!("checked {} UTC", crate::text::clock(at)))
        .unwrap_or_default();
    view! {
        <span class=class data-testid="cloud-status" title=checked>
            <span class="cloud-label">{status.label()}</span>
            " · "
            <span class="cloud-state">{state}</span>
        </span>
    }
}

/// The last known cloud status (never waits on AWS).
#[server]
pub async fn get_cloud_status() -> Result<CloudStatus, ServerFnError> {
    Ok(crate::backend::use_backend()?.cloud_status())
}

/// Asks the cloud again and returns the fresh status.
#[server]
pub async fn recheck_cloud() -> Result<CloudStatus, ServerFnError> {
    Ok(crate::backend::use_backend()?.recheck_cloud().await)
}
