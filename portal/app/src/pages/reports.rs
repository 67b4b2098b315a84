//! The portal-wide reports: what every deployment has cost, torn-down ones
//! included, and how well each stayed up.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::live::{CostSummary, UptimeSummary};
use crate::pages::live::{refresh_every, span_words, IncidentList};
use crate::pricing::usd;
use crate::text::fixed;

#[component]
pub fn CostPage() -> impl IntoView {
    let summary = Resource::new(|| (), |_| get_cost_summary());
    view! {
        <Title text="Cost · CloudPulse"/>
        <h1>"Cost"</h1>
        <Suspense fallback=|| view! { <p class="muted">"Adding up…"</p> }>
            {move || Suspend::new(async move {
                match summary.await {
                    Ok(summary) => view! { <LiveCost summary/> }.into_any(),
                    Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[island]
fn LiveCost(summary: CostSummary) -> impl IntoView {
    let data = RwSignal::new(summary);
    refresh_every(move || {
        leptos::task::spawn_local(async move {
            if let Ok(fresh) = get_cost_summary().await {
                data.set(fresh);
            }
        });
    });
    view! {
        {move || data.with(|s| view! {
            <dl class="figures" data-testid="cost-totals">
                <div><dt>"Accrued, all deployments"</dt><dd data-testid="total-accrued">{usd(s.accrued_usd)}</dd></div>
                <div><dt>"Now, per hour"</dt><dd data-testid="total-hourly">{usd(s.hourly_usd)}</dd></div>
                <div><dt>"Per month at this rate"</dt><dd>{usd(s.monthly_usd)}</dd></div>
            </dl>
            {if s.deployments.is_empty() {
                view! { <p class="muted">"No deployment yet."</p> }.into_any()
            } else {
                view! {
                    <div class="table-scroll">
                    <table data-testid="cost-table">
                        <thead><tr>
                            <th scope="col">"Deployment"</th><th scope="col">"Status"</th><th scope="col">"Region"</th>
                            <th scope="col">"Accrued"</th><th scope="col">"Per hour now"</th><th scope="col">"Instance-hours"</th>
                        </tr></thead>
                        <tbody>
                            {s.deployments.iter().map(|d| view! {
                                <tr data-testid="cost-row" data-id=d.deployment_id.to_string()>
                                    <td><a href=format!("/deployments/{}", d.deployment_id)>{d.name.clone()}</a></td>
                                    <td><span class=format!("badge {}", d.status)>{d.status.replace('_', " ")}</span></td>
                                    <td>{d.region.clone()}</td>
                                    <td data-testid="row-accrued">{if d.priced { usd(d.accrued_usd) } else { "unknown".into() }}</td>
                                    <td>{if d.priced { usd(d.hourly_usd) } else { "unknown".into() }}</td>
                                    <td>{fixed(d.instance_hours, 2)}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                    </div>
                }.into_any()
            }}
        })}
    }
}

#[component]
pub fn UptimePage() -> impl IntoView {
    let summary = Resource::new(|| (), |_| get_uptime_summary());
    view! {
        <Title text="Uptime · CloudPulse"/>
        <h1>"Uptime"</h1>
        <p class="muted">"The portal asks every live deployment's app URL for its page on a fixed interval; a failed answer opens an incident, the next good one closes it."</p>
        <Suspense fallback=|| view! { <p class="muted">"Counting…"</p> }>
            {move || Suspend::new(async move {
                match summary.await {
                    Ok(summary) => view! { <LiveUptime summary/> }.into_any(),
                    Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

fn pct(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_string(), |v| format!("{} %", fixed(v, 2)))
}

#[island]
fn LiveUptime(summary: UptimeSummary) -> impl IntoView {
    let data = RwSignal::new(summary);
    refresh_every(move || {
        leptos::task::spawn_local(async move {
            if let Ok(fresh) = get_uptime_summary().await {
                data.set(fresh);
            }
        });
    });
    view! {
        {move || data.with(|s| view! {
            <dl class="figures" data-testid="uptime-totals">
                <div><dt>"Availability, all deployments"</dt><dd data-testid="total-availability">{pct(s.availability_pct)}</dd></div>
                <div><dt>"Probes"</dt><dd data-testid="total-probes">{s.probes.to_string()}</dd></div>
                <div><dt>"Failed probes"</dt><dd>{s.failed_probes.to_string()}</dd></div>
            </dl>
            {s.deployments.iter().map(|d| view! {
                <section class="uptime-deployment" data-testid="uptime-row" data-id=d.deployment_id.to_string()>
                    <h2><a href=format!("/deployments/{}", d.deployment_id)>{d.name.clone()}</a></h2>
                    <p>
                        <span data-testid="row-availability">{pct(d.availability_pct)}</span>
                        {format!(" since deploy · {} in the last 24 h · {} probes · last recovery {}",
                            pct(d.availability_24h_pct), d.probes,
                            d.last_recovery_seconds.map_or_else(|| "none measured".into(), span_words))}
                    </p>
                    <IncidentList incidents=d.incidents.clone()/>
                </section>
            }).collect_view()}
        })}
    }
}

#[server]
pub async fn get_cost_summary() -> Result<CostSummary, ServerFnError> {
    crate::backend::use_backend()?
        .cost_all()
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))
}

#[server]
pub async fn get_uptime_summary() -> Result<UptimeSummary, ServerFnError> {
    crate::backend::use_backend()?
        .uptime_all()
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))
}
