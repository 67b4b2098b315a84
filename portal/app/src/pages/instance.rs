//! One instance of a deployment's group: who it is, how it lived, what it
//! measured, and the chaos actions, each confirmed before it runs.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::charts::{Line, Mark, TargetTimeline, TimeChart};
use crate::ids::DeploymentId;
use crate::live::{InstanceDetail, MetricsRange};
use crate::pages::live::{health_of, refresh_every, span_words, stamp, RecentEvents};

#[component]
pub fn InstancePage() -> impl IntoView {
    let params = use_params_map();
    let ids = move || {
        let p = params.read();
        (
            DeploymentId::from(p.get("id").unwrap_or_default()),
            p.get("instance").unwrap_or_default(),
        )
    };
    let detail = Resource::new(ids, |(id, instance)| {
        get_instance(id, instance, MetricsRange::Hour1.as_str().to_string())
    });
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading the instance…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(detail) => view! {
                        <Title text=format!("{} · {} · CloudPulse", detail.instance.id, detail.deployment_name)/>
                        <p class="crumbs">
                            <a href="/">"Deployments"</a>" / "
                            <a href=format!("/deployments/{}", detail.deployment_id)>{detail.deployment_name.clone()}</a>
                            " / "{detail.instance.id.clone()}
                        </p>
                        <LiveInstance detail/>
                    }.into_any(),
                    Err(error) => view! {
                        <Title text="Instance · CloudPulse"/>
                        <h1>"Instance"</h1>
                        <p class="error" role="alert">{error.to_string()}</p>
                        <p><a href="/">"Back to the deployments"</a></p>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// The instance's facts, charts, events and actions, refreshed while open.
#[island]
fn LiveInstance(detail: InstanceDetail) -> impl IntoView {
    let live = detail.deployment_live;
    let data = RwSignal::new(detail);
    let (id, instance) = data.with_untracked(|d| (d.deployment_id.clone(), d.instance.id.clone()));
    {
        let (id, instance) = (id.clone(), instance.clone());
        refresh_every(move || {
            let (id, instance) = (id.clone(), instance.clone());
            leptos::task::spawn_local(async move {
                if let Ok(fresh) =
                    get_instance(id, instance, MetricsRange::Hour1.as_str().to_string()).await
                {
                    data.set(fresh);
                }
            });
        });
    }
    view! {
        {move || data.with(|d| {
            let i = &d.instance;
            let (class, words) = health_of(i);
            let m = &d.metrics;
            let (from, to) = (m.from.timestamp(), m.to.timestamp());
            let series = |prefix: &str| m.series(&format!("{prefix}:{}", i.id)).map(|s| s.points.clone()).unwrap_or_default();
            let marks: Vec<Mark> = m.markers.iter().map(|k| Mark { at: k.at.timestamp(), text: k.text.clone() }).collect();
            view! {
                <div class="heading">
                    <h1><code>{i.id.clone()}</code></h1>
                    <span class=format!("badge {class}") data-testid="instance-state">{words}</span>
                </div>
                <dl class="facts" data-testid="identity">
                    <dt>"Availability zone"</dt><dd>{i.availability_zone.clone().unwrap_or_else(|| "unknown".into())}</dd>
                    <dt>"Type"</dt><dd>{i.instance_type.clone().unwrap_or_else(|| "unknown".into())}</dd>
                    <dt>"Private IP"</dt><dd>{i.private_ip.clone().unwrap_or_else(|| "unknown".into())}</dd>
                    <dt>"Launched"</dt><dd>{stamp(i.launched_at)}</dd>
                    <dt>{if i.gone_at.is_some() { "Last lifecycle" } else { "Lifecycle" }}</dt><dd data-testid="lifecycle">{i.lifecycle.clone().unwrap_or_default()}{" · "}{i.health.clone().unwrap_or_default()}</dd>
                    <dt>{if i.gone_at.is_some() { "Last target state" } else { "Target" }}</dt><dd data-testid="target">{i.target_state.clone().unwrap_or_else(|| "not registered".into())}
                        {i.target_reason.clone().map(|r| format!(" ({r})"))}</dd>
                    {i.gone_at.map(|gone| view! {
                        <dt>"Left the group"</dt>
                        <dd data-testid="gone">{stamp(gone)}
                            {format!(" after {}", span_words((gone - i.launched_at).num_milliseconds() as f64 / 1000.0))}</dd>
                    })}
                </dl>
                <div class="charts">
                    <TimeChart title="CPU".into() testid="chart-instance-cpu" from to y_max=100.0 unit=" %"
                        lines=vec![Line { label: "CPU (EC2)".into(), class: "cpu", points: series("cpu") }] marks=marks.clone()/>
                    <TimeChart title="Requests per period".into() testid="chart-instance-requests" from to
                        lines=vec![Line { label: "requests".into(), class: "requests", points: series("requests") }] marks=marks.clone()/>
                    <TimeChart title="Average response time".into() testid="chart-instance-latency" from to unit=" ms"
                        lines=vec![Line { label: "average".into(), class: "latency", points: series("latency") }]/>
                    <TimeChart title="Memory".into() testid="chart-instance-memory" from to y_max=100.0 unit=" %"
                        lines=vec![Line { label: "memory used".into(), class: "memory", points: series("memory") }]/>
                </div>
                <h2>"Target health"</h2>
                <TargetTimeline from to rows=m.series(&format!("target:{}", i.id)).map(|s| vec![(i.id.clone(), s.points.clone())]).unwrap_or_default()/>
            }
        })}
        {(live).then(|| view! { <InstanceActions id=id.clone() instance=instance.clone() data/> })}
        <section aria-labelledby="instance-events-title">
            <h2 id="instance-events-title">"Events"</h2>
            {move || data.with(|d| view! { <RecentEvents events=d.events.clone() testid="instance-events"/> })}
        </section>
    }
}

/// Terminate, stress and fail-health, each behind a confirmation.
#[component]
fn InstanceActions(
    id: DeploymentId,
    instance: String,
    data: RwSignal<InstanceDetail>,
) -> impl IntoView {
    let action = ServerAction::<ChaosInstance>::new();
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let stress_seconds = RwSignal::new(60u32);
    let fail_seconds = RwSignal::new(60u32);
    let gone = move || data.with(|d| d.instance.gone_at.is_some());
    let run = {
        let (id, instance) = (id.clone(), instance.clone());
        move |kind: &'static str, seconds: u32| {
            action.dispatch(ChaosInstance {
                id: id.clone(),
                instance: instance.clone(),
                action: kind.to_string(),
                seconds,
            });
        }
    };
    let (run_terminate, run_stress, run_fail) = (run.clone(), run.clone(), run);
    let disabled = move || !hydrated.get() || action.pending().get() || gone();
    view! {
        <section aria-labelledby="actions-title" class="chaos">
            <h2 id="actions-title">"Break it on purpose"</h2>
            <div class="actions">
                <details class="danger" data-testid="terminate-panel">
                    <summary>"Terminate"</summary>
                    <p>{format!("EC2 terminates {instance}; the Auto Scaling group launches a replacement and the portal times the recovery.")}</p>
                    <button type="button" class="destructive" data-testid="confirm-terminate" disabled=disabled
                        on:click=move |_| run_terminate("terminate", 0)>
                        {format!("Terminate {instance}")}
                    </button>
                </details>
                <details class="danger" data-testid="stress-panel">
                    <summary>"Stress CPU"</summary>
                    <label for="stress-seconds">"Seconds"</label>
                    <input id="stress-seconds" type="number" min="1" max="3600" data-testid="stress-seconds"
                        prop:value=move || stress_seconds.get().to_string()
                        on:input=move |ev| stress_seconds.set(event_target_value(&ev).parse().unwrap_or(0))/>
                    <button type="button" data-testid="confirm-stress" disabled=disabled
                        on:click=move |_| run_stress("stress", stress_seconds.get_untracked())>
                        "Run the stress (SSM Run Command)"
                    </button>
                </details>
                <details class="danger" data-testid="fail-panel">
                    <summary>"Fail health checks"</summary>
                    <label for="fail-seconds">"Seconds"</label>
                    <input id="fail-seconds" type="number" min="1" max="3600" data-testid="fail-seconds"
                        prop:value=move || fail_seconds.get().to_string()
                        on:input=move |ev| fail_seconds.set(event_target_value(&ev).parse().unwrap_or(0))/>
                    <button type="button" data-testid="confirm-fail" disabled=disabled
                        on:click=move |_| run_fail("fail-health", fail_seconds.get_untracked())>
                        "Make /health answer 503"
                    </button>
                </details>
            </div>
            {move || action.value().get().map(|r| match r {
                Ok(message) => view! { <p class="muted" role="status" data-testid="action-result">{message}</p> }.into_any(),
                Err(e) => view! { <p class="error" role="alert" data-testid="action-error">{e.to_string()}</p> }.into_any(),
            })}
        </section>
    }
}

#[server]
pub async fn get_instance(
    id: DeploymentId,
    instance: String,
    range: String,
) -> Result<InstanceDetail, ServerFnError> {
    let range: MetricsRange = range.parse().map_err(ServerFnError::new)?;
    crate::backend::use_backend()?
        .instance(&id, &instance, range)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))
}

#[server]
pub async fn chaos_instance(
    id: DeploymentId,
    instance: String,
    action: String,
    seconds: u32,
) -> Result<String, ServerFnError> {
    use crate::model::{ChaosAction, Source};
    let action = match action.as_str() {
        "terminate" => ChaosAction::Terminate,
        "stress" => ChaosAction::Stress { seconds },
        "fail-health" => ChaosAction::FailHealth { seconds },
        other => {
            return Err(ServerFnError::new(format!(
                "unknown action {other:?}; use terminate, stress or fail-health"
            )))
        }
    };
    let accepted = crate::backend::use_backend()?
        .chaos(&id, Some(&instance), action, Source::Browser)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    Ok(match action {
        ChaosAction::Terminate => format!(
            "{instance} is being terminated; the recovery is timed on the deployment's timeline"
        ),
        ChaosAction::Stress { seconds } => format!(
            "stressing {instance} for {seconds} s (Run Command {})",
            accepted.command_id.unwrap_or_default()
        ),
        ChaosAction::FailHealth { seconds } => format!(
            "{instance} fails its health checks for {seconds} s (Run Command {})",
            accepted.command_id.unwrap_or_default()
        ),
    })
}
