//! The live part of a deployment's page: health charts, topology, uptime,
//! cost, instances and the group's chaos control, redrawn as new samples
//! arrive without reloading the page.

use chrono::{DateTime, Utc};
use leptos::prelude::*;

use crate::charts::{spans_at_least, Band, Line, Mark, Rule, TargetTimeline, TimeChart};
use crate::ids::DeploymentId;
use crate::live::{
    CostView, InstanceRecord, LiveView, MetricsRange, MetricsView, Topology, UptimeView,
};
use crate::model::EventView;
use crate::pricing::usd;
use crate::text::{fixed, iso, utc};

/// How often an open page asks for fresh data at most.
pub const REFRESH_MS: u64 = 2_000;

/// Seconds from `from` to `to`, as a person reads them: `42 s`, `3 min`, `2 h 5 min`.
pub fn span_words(seconds: f64) -> String {
    let seconds = seconds.max(0.0);
    if seconds < 90.0 {
        format!("{} s", fixed(seconds, if seconds < 10.0 { 1 } else { 0 }))
    } else if seconds < 3600.0 {
        format!("{} min", fixed(seconds / 60.0, 0))
    } else {
        let minutes = (seconds / 60.0).round() as u64;
        format!("{} h {} min", minutes / 60, minutes % 60)
    }
}

/// A moment as the pages print it, machine-readable in `datetime`.
pub fn stamp(at: DateTime<Utc>) -> impl IntoView {
    view! { <time datetime=iso(at)>{utc(at, true)}</time> }
}

fn pct(value: Option<f64>) -> String {
    value.map_or_else(
        || "no probes yet".to_string(),
        |v| format!("{} %", fixed(v, 2)),
    )
}

/// The charts of a [`MetricsView`]: capacity, CPU against the alarm
/// thresholds with the alarms' bands, and target health per instance.
#[component]
pub fn HealthCharts(metrics: MetricsView) -> impl IntoView {
    let from = metrics.from.timestamp();
    let to = metrics.to.timestamp();
    let series = |name: &str| {
        metrics
            .series(name)
            .map(|s| s.points.clone())
            .unwrap_or_default()
    };
    let capacity = vec![
        Line {
            label: "desired".into(),
            class: "desired",
            points: series("desired"),
        },
        Line {
            label: "in service".into(),
            class: "in-service",
            points: series("in_service"),
        },
        Line {
            label: "healthy targets".into(),
            class: "healthy",
            points: series("healthy_targets"),
        },
    ];
    let mut bands = Vec::new();
    for s in metrics
        .series
        .iter()
        .filter(|s| s.name.starts_with("alarm:"))
    {
        let high = s.name.ends_with("-high");
        for (a, b) in spans_at_least(&s.points, 0.5, to) {
            bands.push(Band {
                from: a,
                to: b,
                class: if high { "alarm-high" } else { "alarm-low" },
                label: if high {
                    "high-CPU alarm firing".into()
                } else {
                    "low-CPU alarm firing".into()
                },
            });
        }
    }
    let rules = metrics
        .thresholds
        .iter()
        .map(|t| Rule {
            value: t.value,
            class: if t.comparison.starts_with("Greater") {
                "high"
            } else {
                "low"
            },
            label: format!("{} {} %", t.alarm, fixed(t.value, 0)),
        })
        .collect();
    let marks: Vec<Mark> = metrics
        .markers
        .iter()
        .map(|m| Mark {
            at: m.at.timestamp(),
            text: format!("{} · {}", crate::text::clock(m.at), m.text),
        })
        .collect();
    let targets: Vec<(String, Vec<(i64, f64)>)> = metrics
        .series
        .iter()
        .filter_map(|s| {
            s.name
                .strip_prefix("target:")
                .map(|id| (id.to_string(), s.points.clone()))
        })
        .collect();
    view! {
        <div class="charts">
            <TimeChart title="Capacity".into() testid="chart-capacity" from to lines=capacity marks=marks.clone()/>
            <TimeChart title="CPU, group average".into() testid="chart-cpu" from to y_max=100.0 unit=" %"
                lines=vec![Line { label: "CPU".into(), class: "cpu", points: series("cpu") }]
                rules bands marks/>
        </div>
        <h3>"Target health"</h3>
        <TargetTimeline from to rows=targets/>
    }
}

/// The VPC drawn as its AZs, subnets, NAT gateways, the load balancer and
/// every instance, coloured by its health.
#[component]
pub fn TopologyView(topology: Topology, instances: Vec<InstanceRecord>) -> impl IntoView {
    let present: Vec<InstanceRecord> = instances
        .into_iter()
        .filter(|i| i.gone_at.is_none())
        .collect();
    let known_zones: Vec<String> = topology.zones.iter().map(|z| z.name.clone()).collect();
    let elsewhere: Vec<InstanceRecord> = present
        .iter()
        .filter(|i| {
            i.availability_zone
                .as_ref()
                .is_none_or(|z| !known_zones.contains(z))
        })
        .cloned()
        .collect();
    view! {
        <div class="topology" data-testid="topology">
            <div class="vpc">
                <p class="vpc-title">
                    <strong>"VPC "</strong>
                    <code>{topology.vpc_id.clone().unwrap_or_else(|| "not made yet".into())}</code>
                    " · "{topology.vpc_cidr.clone()}
                    {topology.deleted_at.map(|at| view! {
                        <span class="muted" data-testid="topology-deleted">" · deleted with the stack "{stamp(at)}</span>
                    })}
                </p>
                <p class="alb">
                    <strong>"Load balancer "</strong>
                    {topology.load_balancer.clone().map_or_else(|| "none".to_string(), |arn| short_arn(&arn))}
                    <span class="muted">" · internet-facing, in every public subnet"</span>
                </p>
                <div class="zones">
                    {topology.zones.iter().map(|zone| {
                        let here: Vec<InstanceRecord> = present.iter()
                            .filter(|i| i.availability_zone.as_deref() == Some(zone.name.as_str()))
                            .cloned().collect();
                        view! {
                            <section class="zone" data-testid="zone">
                                <h4>{zone.name.clone()}</h4>
                                <div class="subnet public">
                                    <span class="subnet-title">"Public subnet"</span>
                                    <code>{zone.public_subnet.clone().unwrap_or_default()}</code>
                                    {zone.nat_gateway.clone().map(|nat| view! {
                                        <span class="nat">"NAT "<code>{nat}</code></span>
                                    })}
                                </div>
                                <div class="subnet private">
                                    <span class="subnet-title">"Private subnet"</span>
                                    <code>{zone.private_subnet.clone().unwrap_or_default()}</code>
                                    <InstanceNodes instances=here/>
                                </div>
                            </section>
                        }
                    }).collect_view()}
                </div>
                {(!elsewhere.is_empty()).then(|| view! {
                    <div class="subnet"><span class="subnet-title">"Zone not known yet"</span><InstanceNodes instances=elsewhere/></div>
                })}
            </div>
        </div>
    }
}

fn short_arn(arn: &str) -> String {
    arn.split_once("loadbalancer/")
        .map_or(arn, |(_, name)| name)
        .to_string()
}

/// How healthy an instance looks, as a CSS class and words.
pub fn health_of(instance: &InstanceRecord) -> (&'static str, String) {
    let target = instance.target_state.as_deref();
    let lifecycle = instance.lifecycle.as_deref().unwrap_or("unknown");
    if instance.gone_at.is_some() {
        return ("gone", "left the group".into());
    }
    match (target, instance.health.as_deref()) {
        (_, Some("Unhealthy")) | (Some("unhealthy"), _) => {
            ("unhealthy", format!("{lifecycle}, unhealthy"))
        }
        (Some("healthy"), _) => ("healthy", format!("{lifecycle}, healthy target")),
        (Some(state), _) => ("starting", format!("{lifecycle}, target {state}")),
        (None, _) => ("starting", lifecycle.to_string()),
    }
}

#[component]
fn InstanceNodes(instances: Vec<InstanceRecord>) -> impl IntoView {
    view! {
        <ul class="nodes">
            {instances.into_iter().map(|i| {
                let (class, words) = health_of(&i);
                view! {
                    <li class=format!("node {class}") title=words.clone() data-testid="topology-instance">
                        <code>{i.id.clone()}</code><span class="sr-only">{format!(" {words}")}</span>
                    </li>
                }
            }).collect_view()}
        </ul>
    }
}

/// The group's instances, linked to their pages.
#[component]
pub fn InstancesTable(
    deployment_id: DeploymentId,
    instances: Vec<InstanceRecord>,
) -> impl IntoView {
    if instances.is_empty() {
        return view! { <p class="muted">"No instance seen yet."</p> }.into_any();
    }
    view! {
        <div class="table-scroll">
        <table data-testid="instances">
            <thead><tr>
                <th scope="col">"Instance"</th><th scope="col">"State"</th><th scope="col">"AZ"</th>
                <th scope="col">"Type"</th><th scope="col">"Launched"</th>
            </tr></thead>
            <tbody>
                {instances.into_iter().map(|i| {
                    let (class, words) = health_of(&i);
                    let href = format!("/deployments/{deployment_id}/instances/{}", i.id);
                    view! {
                        <tr data-testid="instance-row" data-instance=i.id.clone() data-state=class>
                            <td><a href=href><code>{i.id.clone()}</code></a></td>
                            <td><span class=format!("dot {class}")></span>{words}
                                {i.gone_at.map(|at| view! { " "{stamp(at)} })}</td>
                            <td>{i.availability_zone.clone().unwrap_or_default()}</td>
                            <td>{i.instance_type.clone().unwrap_or_default()}</td>
                            <td>{stamp(i.launched_at)}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        </div>
    }
    .into_any()
}

/// Availability and incidents.
#[component]
pub fn UptimePanel(uptime: UptimeView) -> impl IntoView {
    view! {
        <dl class="figures" data-testid="uptime">
            <div><dt>"Availability since deploy"</dt><dd data-testid="availability">{pct(uptime.availability_pct)}</dd></div>
            <div><dt>"Last 24 h"</dt><dd>{pct(uptime.availability_24h_pct)}</dd></div>
            <div><dt>"Probes"</dt><dd>{format!("{} ({} failed)", uptime.probes, uptime.failed_probes)}</dd></div>
            <div><dt>"Last recovery"</dt><dd data-testid="last-recovery">
                {uptime.last_recovery_seconds.map_or_else(|| "none measured".to_string(), span_words)}
            </dd></div>
        </dl>
        <IncidentList incidents=uptime.incidents/>
    }
}

#[component]
pub fn IncidentList(incidents: Vec<crate::live::Incident>) -> impl IntoView {
    if incidents.is_empty() {
        return view! { <p class="muted">"No incident: every probe of the app URL was answered."</p> }.into_any();
    }
    view! {
        <table data-testid="incidents">
            <thead><tr><th scope="col">"Started"</th><th scope="col">"Lasted"</th><th scope="col">"Cause"</th></tr></thead>
            <tbody>
                {incidents.into_iter().map(|i| view! {
                    <tr>
                        <td>{stamp(i.started_at)}</td>
                        <td>{if i.ended_at.is_some() { span_words(i.duration_seconds) } else { format!("{}, ongoing", span_words(i.duration_seconds)) }}</td>
                        <td>{i.cause}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// Accrued, hourly and monthly cost, and the breakdown as bars.
#[component]
pub fn CostPanel(cost: CostView) -> impl IntoView {
    let top = cost
        .breakdown
        .iter()
        .map(|s| s.accrued_usd)
        .fold(0.0f64, f64::max);
    view! {
        <dl class="figures" data-testid="cost">
            <div><dt>"Accrued"</dt><dd data-testid="accrued">{usd(cost.accrued_usd)}</dd></div>
            <div><dt>"Now, per hour"</dt><dd data-testid="hourly">{usd(cost.hourly_usd)}</dd></div>
            <div><dt>"Per month at this rate"</dt><dd>{usd(cost.monthly_usd)}</dd></div>
            <div><dt>"Instance-hours"</dt><dd>{fixed(cost.instance_hours, 2)}</dd></div>
        </dl>
        {cost.notes.iter().map(|n| view! { <p class="muted">{n.clone()}</p> }).collect_view()}
        <table class="breakdown" data-testid="cost-breakdown">
            <thead><tr><th scope="col">"What"</th><th scope="col">"Accrued"</th><th scope="col">"Per hour"</th><th scope="col" class="bar-col">"Share"</th></tr></thead>
            <tbody>
                {cost.breakdown.into_iter().map(|s| {
                    let width = if top > 0.0 { s.accrued_usd / top * 100.0 } else { 0.0 };
                    view! {
                        <tr>
                            <td>{s.label}</td>
                            <td>{usd(s.accrued_usd)}</td>
                            <td>{usd(s.hourly_usd)}</td>
                            <td class="bar-col">
                                <svg class="share" viewBox="0 0 100 10" preserveAspectRatio="none" role="img"
                                    aria-label=format!("{} % of the largest", fixed(width, 0))>
                                    <rect x="0" y="0" width=fixed(width, 2) height="10"/>
                                </svg>
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        <p class="muted">{format!("Prices of {} ({}); cost counts each resource from its creation to its deletion, each instance from its launch until it left the group.", cost.region, cost.prices_as_of)}</p>
    }
}

/// Events, newest first, each with its kind.
#[component]
pub fn RecentEvents(events: Vec<EventView>, testid: &'static str) -> impl IntoView {
    view! {
        <ol class="timeline" data-testid=testid>
            {events.into_iter().map(|e| view! {
                <li data-kind=e.kind.clone()>
                    {stamp(e.at)}" · "<span class="muted">{e.kind.clone()}</span>" · "{e.message.clone()}
                </li>
            }).collect_view()}
        </ol>
    }
}

/// Everything live on the deployment's page, refreshed while it is open.
#[island]
pub fn LiveTelemetry(id: DeploymentId, view: LiveView, live: bool) -> impl IntoView {
    let data = RwSignal::new(view);
    let range = RwSignal::new(data.with_untracked(|v| v.metrics.range));
    let refresh = move || {
        let id = id.clone();
        let range = range.get_untracked();
        leptos::task::spawn_local(async move {
            if let Ok(fresh) = get_live(id, range.as_str().to_string()).await {
                data.set(fresh);
            }
        });
    };
    let now_refresh = refresh.clone();
    Effect::new(move |previous: Option<()>| {
        range.track();
        // The first run is the page as the server drew it.
        if previous.is_some() {
            now_refresh();
        }
    });
    if live {
        refresh_every(refresh);
    }
    let stress = ServerAction::<StressGroup>::new();
    let seconds = RwSignal::new(60u32);
    let deployment = data.with_untracked(|v| v.metrics.deployment_id.clone());
    view! {
        <section aria-labelledby="health-title" class="live-telemetry">
            <div class="heading">
                <h2 id="health-title">"Health"</h2>
                <div class="ranges" role="group" aria-label="Chart range">
                    {MetricsRange::ALL.into_iter().map(|r| view! {
                        <button type="button" data-testid=format!("range-{}", r.as_str())
                            aria-pressed=move || (range.get() == r).to_string()
                            on:click=move |_| range.set(r)>
                            {r.as_str()}
                        </button>
                    }).collect_view()}
                </div>
            </div>
            {move || data.with(|v| {
                let m = &v.metrics;
                let healthy = m.series("healthy_targets").and_then(|s| s.points.last()).map(|p| p.1);
                let desired = m.series("desired").and_then(|s| s.points.last()).map(|p| p.1);
                view! {
                    <p class="muted" data-testid="poll-note">
                        {match (healthy, desired) {
                            (Some(h), Some(d)) if live => format!("{} of {} healthy targets · ", fixed(h, 0), fixed(d, 0)),
                            (Some(h), Some(d)) => format!("last reading: {} of {} healthy targets · ", fixed(h, 0), fixed(d, 0)),
                            _ => String::new(),
                        }}
                        {format!("polled every {} s ({} AWS calls a minute) · points of {} s",
                            fixed(m.poll_seconds, 1), fixed(m.api_calls_per_minute, 0), m.step_seconds.max(1))}
                    </p>
                    <HealthCharts metrics=m.clone()/>
                }
            })}
            {live.then(|| view! {
                <form class="inline-form" on:submit=move |ev| {
                    ev.prevent_default();
                    stress.dispatch(StressGroup { id: deployment.clone(), seconds: seconds.get_untracked() });
                }>
                    <label for="stress-all-seconds">"Stress every instance in service for"</label>
                    <input id="stress-all-seconds" type="number" min="1" max="3600" data-testid="stress-all-seconds"
                        prop:value=move || seconds.get().to_string()
                        on:input=move |ev| seconds.set(event_target_value(&ev).parse().unwrap_or(60))/>
                    " s "
                    <button type="submit" data-testid="stress-all" disabled=move || stress.pending().get()>"Stress CPU"</button>
                    {move || stress.value().get().map(|r| match r {
                        Ok(message) => view! { <span class="muted" role="status">{message}</span> }.into_any(),
                        Err(e) => view! { <span class="error" role="alert">{e.to_string()}</span> }.into_any(),
                    })}
                </form>
            })}
        </section>
        {move || data.with(|v| view! {
            <section aria-labelledby="topology-title">
                <h2 id="topology-title">"Topology"</h2>
                <TopologyView topology=v.topology.clone() instances=v.instances.clone()/>
            </section>
            <section aria-labelledby="instances-title">
                <h2 id="instances-title">"Instances"</h2>
                <InstancesTable deployment_id=v.metrics.deployment_id.clone() instances=v.instances.clone()/>
            </section>
            <div class="two-columns">
                <section aria-labelledby="uptime-title">
                    <h2 id="uptime-title">"Uptime"</h2>
                    <UptimePanel uptime=v.uptime.clone()/>
                </section>
                <section aria-labelledby="cost-title">
                    <h2 id="cost-title">"Cost"</h2>
                    <CostPanel cost=v.cost.clone()/>
                </section>
            </div>
            <section aria-labelledby="recent-title">
                <h2 id="recent-title">"Latest events"</h2>
                <RecentEvents events=v.events.clone() testid="live-events"/>
            </section>
        })}
    }
}

/// Runs `refresh` every [`REFRESH_MS`] while the page is open (browser only).
#[allow(unused_variables)]
pub fn refresh_every(refresh: impl Fn() + 'static) {
    #[cfg(feature = "hydrate")]
    {
        let _ = set_interval_with_handle(refresh, std::time::Duration::from_millis(REFRESH_MS));
    }
}

#[server]
pub async fn get_live(id: DeploymentId, range: String) -> Result<LiveView, ServerFnError> {
    let range: MetricsRange = range.parse().map_err(ServerFnError::new)?;
    crate::backend::use_backend()?
        .live_view(&id, range)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))
}

#[server]
pub async fn stress_group(id: DeploymentId, seconds: u32) -> Result<String, ServerFnError> {
    use crate::model::{ChaosAction, Source};
    let accepted = crate::backend::use_backend()?
        .chaos(&id, None, ChaosAction::Stress { seconds }, Source::Browser)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    Ok(format!(
        "stressing {} for {seconds} s",
        accepted.instance_ids.join(", ")
    ))
}
