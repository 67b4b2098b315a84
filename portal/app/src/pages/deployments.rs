//! The home page: every deployment, live and past.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::model::{DeploymentStatus, DeploymentSummary, Page};

pub const PER_PAGE: u32 = 25;

#[component]
pub fn DeploymentsPage() -> impl IntoView {
    let query = use_query_map();
    let status = move || query.read().get("status");
    let page = move || {
        query
            .read()
            .get("page")
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|p| *p >= 1)
            .unwrap_or(1)
    };
    let deployments = Resource::new(
        move || (status(), page()),
        |(status, page)| list_deployments(status, page),
    );

    view! {
        <Title text="Deployments · CloudPulse"/>
        <h1>"Deployments"</h1>
        <crate::pages::budget::BudgetError/>
        <StatusFilter current=Signal::derive(status)/>
        <Suspense fallback=|| view! { <p class="muted">"Loading deployments…"</p> }>
            {move || Suspend::new(async move {
                match deployments.await {
                    Ok(page) => {
                        let back = if page.page > 1 {
                            page_link(status().as_deref(), page.page)
                        } else {
                            status().map_or_else(|| "/".to_string(), |s| format!("/?status={s}"))
                        };
                        view! { <DeploymentTable page status=status() back/> }.into_any()
                    }
                    Err(error) => view! {
                        <p class="error" role="alert">{error.to_string()}</p>
                    }
                    .into_any(),
                }
            })}
        </Suspense>
    }
}

/// Plain links, so filtering works before (and without) JavaScript.
#[component]
fn StatusFilter(current: Signal<Option<String>>) -> impl IntoView {
    let link = move |value: Option<&'static str>, label: &'static str| {
        let href = value
            .map(|v| format!("/?status={v}"))
            .unwrap_or_else(|| "/".into());
        let active = move || current.get().as_deref() == value;
        view! {
            // A plain anchor: the router's <A> marks every "/?status=…" link
            // current, since it ignores the query. The router still turns
            // clicks on it into client-side navigation.
            <a href=href aria-current=move || active().then_some("page")>{label}</a>
        }
    };
    view! {
        <nav class="filters" aria-label="Filter by status">
            {link(None, "All")}
            {DeploymentStatus::ALL
                .into_iter()
                .map(|s| link(Some(s.as_str()), s.label()))
                .collect_view()}
        </nav>
    }
}

#[component]
fn DeploymentTable(
    page: Page<DeploymentSummary>,
    status: Option<String>,
    back: String,
) -> impl IntoView {
    if page.items.is_empty() {
        return view! {
            <section class="empty" data-testid="deployments-empty">
                <h2>"No deployments here yet"</h2>
                <p>
                    "A deployment is one self-healing web stack: a VPC over two availability "
                    "zones, NAT gateways, a load balancer and an Auto Scaling group of instances "
                    "that scales on CPU. Deploy one to watch it heal."
                </p>
                <p><a class="button primary" href="/new" data-testid="empty-new">"New deployment"</a></p>
            </section>
        }
        .into_any();
    }
    let pages = page.total.div_ceil(u64::from(page.per_page.max(1))).max(1);
    let now = chrono::Utc::now();
    view! {
        <table class="deployments" data-testid="deployments-table">
            <thead>
                <tr>
                    <th scope="col">"Name"</th>
                    <th scope="col">"Status"</th>
                    <th scope="col">"Region"</th>
                    <th scope="col">"Size"</th>
                    <th scope="col">"Created"</th>
                    <th scope="col">"Age / lifetime"</th>
                    <th scope="col">"Cost so far"</th>
                    <th scope="col">"Uptime"</th>
                    <th scope="col">"Time to live"</th>
                </tr>
            </thead>
            <tbody>
                {page
                    .items
                    .into_iter()
                    .map(|d| {
                        let guarded = d.status.guarded();
                        let warning = guarded && d.budget.warning(now);
                        let row = format!("row-{}", d.name);
                        view! {
                            <tr data-testid=row>
                                <td>
                                    <a href=format!("/deployments/{}", d.id)>{d.name}</a>
                                    {d.redeployed_from.map(|o| view! {
                                        <br/><span class="muted">"again from "
                                        <a href=format!("/deployments/{}", o.id)>{o.name}</a></span>
                                    })}
                                </td>
                                <td>
                                    <span class=format!("badge {}", d.status.as_str())>
                                        {d.status.label()}
                                    </span>
                                    {(d.drift > 0).then(|| view! {
                                        " "<a class="badge drift" data-testid="drift-badge"
                                            href=format!("/deployments/{}#drift-title", d.id)
                                            title="Changed past the portal: see its Drift part">
                                            {format!("drift · {}", d.drift)}
                                        </a>
                                    })}
                                    {d.idle.map(|idle| view! {
                                        " "<span class="badge idle" data-testid="idle"
                                            title=format!("No requests but the portal's probes for {} min", idle.seconds / 60)>
                                            {match idle.daily_usd {
                                                Some(usd) => format!("idle · {}/day", crate::pricing::usd(usd)),
                                                None => "idle".to_string(),
                                            }}
                                        </span>
                                    })}
                                </td>
                                <td>{d.region}</td>
                                <td>{d.size.unwrap_or_else(|| "—".into())}</td>
                                <td>
                                    <time datetime=crate::text::iso(d.created_at)>
                                        {crate::text::utc(d.created_at, false)}
                                    </time>
                                </td>
                                <td>{lifetime(d.created_at, d.torn_down_at, now)}</td>
                                <td data-testid="list-cost">{d.cost_usd.map_or_else(|| "—".to_string(), crate::pricing::usd)}</td>
                                <td data-testid="list-uptime">{d.availability_pct.map_or_else(
                                    || "—".to_string(),
                                    |p| format!("{} %", crate::text::fixed(p, 2)),
                                )}</td>
                                <td data-testid="list-ttl">
                                    {match d.budget.expires_at.filter(|_| guarded) {
                                        Some(at) if warning => view! {
                                            <crate::pages::budget::Countdown expires_at=at/>
                                            " "<crate::pages::budget::ExtendForm id=d.id.clone() back=back.clone()/>
                                        }.into_any(),
                                        Some(at) => view! {
                                            "until "<time datetime=crate::text::iso(at)>{crate::text::utc(at, false)}</time>
                                        }.into_any(),
                                        None => "—".into_any(),
                                    }}
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
        <nav class="pager" aria-label="Pages">
            {(page.page > 1).then(|| view! {
                <a href=page_link(status.as_deref(), page.page - 1) rel="prev">"← Newer"</a>
            })}
            <span class="muted">
                {format!(
                    "Page {} of {pages} · {} deployment{}",
                    page.page,
                    page.total,
                    if page.total == 1 { "" } else { "s" },
                )}
            </span>
            {(u64::from(page.page) < pages).then(|| view! {
                <a href=page_link(status.as_deref(), page.page + 1) rel="next">"Older →"</a>
            })}
        </nav>
    }
    .into_any()
}

fn page_link(status: Option<&str>, page: u32) -> String {
    match status {
        Some(status) => format!("/?status={status}&page={page}"),
        None => format!("/?page={page}"),
    }
}

/// How long it has lived: "3 h 12 min" while it stands, its whole lifetime
/// once torn down.
fn lifetime(
    created: chrono::DateTime<chrono::Utc>,
    torn_down: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let secs = (torn_down.unwrap_or(now) - created).num_seconds().max(0);
    let text = match secs {
        s if s >= 86_400 => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    };
    match torn_down {
        Some(_) => format!("lived {text}"),
        None => text,
    }
}

/// Deployments, newest first, optionally filtered by status.
#[server]
pub async fn list_deployments(
    status: Option<String>,
    page: u32,
) -> Result<Page<DeploymentSummary>, ServerFnError> {
    use crate::backend::{use_backend, DeploymentFilter};
    let status = match status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(DeploymentStatus::parse(text).ok_or_else(|| {
            ServerFnError::new(format!(
                "unknown status {text:?}; use one of deploying, live, failed, tearing_down, torn_down"
            ))
        })?),
    };
    let filter = DeploymentFilter {
        status,
        page: page.max(1),
        per_page: PER_PAGE,
    };
    use_backend()?
        .list_deployments(filter)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))
}
