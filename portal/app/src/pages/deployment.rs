//! One deployment: status, outputs, parameters, its resources and jobs, and
//! the current job's steps laid out in time, updating live.

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use leptos_meta::Title;

use crate::ids::{DeploymentId, JobId};
use crate::live::LiveView;
use crate::pages::live::{stamp, LiveTelemetry};
use crate::text::fixed;
use leptos_router::hooks::use_params_map;

use crate::model::{
    DeploymentDetail, DeploymentStatus, EventView, JobStatus, JobSummary, JobView, ResourceView,
    StepStatus, StepView,
};

#[component]
pub fn DeploymentPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || DeploymentId::from(params.read().get("id").unwrap_or_default());
    let detail = Resource::new(id, get_deployment);
    let live = Resource::new(id, |id| {
        crate::pages::live::get_live(id, crate::live::MetricsRange::Hour1.as_str().to_string())
    });
    let drift = Resource::new(id, crate::pages::drift::get_drift);
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading the deployment…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(detail) => {
                        let telemetry = live.await.ok();
                        let drift = drift.await.ok();
                        view! { <DeploymentView detail telemetry drift/> }.into_any()
                    }
                    Err(error) => view! {
                        <Title text="Deployment · CloudPulse"/>
                        <h1>"Deployment"</h1>
                        <p class="error" role="alert">{error.to_string()}</p>
                        <p><a href="/">"Back to the deployments"</a></p>
                    }
                    .into_any(),
                }
            })}
        </Suspense>
    }
}

/// The page of one deployment. Its live part (status, app link, actions and
/// the running job) is an island; the history below is rendered once by the
/// server, and the island reloads the page when a job ends so both agree.
#[component]
fn DeploymentView(
    detail: DeploymentDetail,
    telemetry: Option<LiveView>,
    drift: Option<crate::drift::DriftReport>,
) -> impl IntoView {
    let is_live = detail.status == DeploymentStatus::Live;
    let id = detail.id.clone();
    // A live deployment without a job under way can be changed.
    let idle = detail
        .current_job
        .as_ref()
        .is_none_or(|job| job.status.is_finished());
    let editable = (is_live && idle)
        .then(|| {
            serde_json::from_value::<crate::params::DeploymentParams>(detail.params.clone()).ok()
        })
        .flatten();
    let params = serde_json::to_string_pretty(&detail.params).unwrap_or_default();
    let live_resources = detail
        .resources
        .iter()
        .filter(|r| r.deleted_at.is_none())
        .count();
    view! {
        <Title text=format!("{} · CloudPulse", detail.name)/>
        <p class="crumbs"><a href="/">"Deployments"</a>" / "{detail.name.clone()}</p>
        // The island's props travel in the page as JSON: only what it shows.
        <LiveDeployment detail=DeploymentDetail {
            resources: Vec::new(),
            jobs: Vec::new(),
            events: Vec::new(),
            redeployed_as: Vec::new(),
            params: serde_json::Value::Null,
            ..detail.clone()
        }/>
        <crate::pages::budget::BudgetSection
            id=id.clone()
            status=detail.status
            budget=detail.budget.clone()
            redeployed_from=detail.redeployed_from.clone()
            redeployed_as=detail.redeployed_as.clone()/>
        {telemetry.map(|view| view! { <LiveTelemetry id=id.clone() view live=is_live/> })}
        {drift.filter(|_| is_live).map(|report| view! {
            <crate::pages::drift::DriftSection report/>
        })}
        {editable.map(|params| view! {
            <crate::pages::edit::EditSection id=id.to_string() params/>
        })}
        <section aria-labelledby="resources-title">
            <h2 id="resources-title">{format!("Resources ({live_resources} present)")}</h2>
            <ResourceTable resources=detail.resources.clone()/>
        </section>
        <section aria-labelledby="jobs-title">
            <h2 id="jobs-title">"Jobs"</h2>
            <JobList jobs=detail.jobs.clone()/>
        </section>
        <section aria-labelledby="timeline-title">
            <h2 id="timeline-title">"Timeline"</h2>
            <ol class="timeline" data-testid="timeline">
                {detail.events.iter().map(|e| view! {
                    <li>
                        {stamp(e.at)}" · "{e.message.clone()}
                        {e.source.clone().map(|s| view! { <span class="muted">" (from "{s}")"</span> })}
                    </li>
                }).collect_view()}
            </ol>
        </section>
        <section aria-labelledby="params-title">
            <h2 id="params-title">"Parameters"</h2>
            <ParamChanges events=detail.events.clone()/>
            <pre class="params" data-testid="params">{params}</pre>
        </section>
    }
}

/// Status, facts, actions and the current job, following it live.
#[island]
fn LiveDeployment(detail: DeploymentDetail) -> impl IntoView {
    let job = RwSignal::new(detail.current_job.clone());
    let connected = RwSignal::new(false);
    // Bumped when a job ends or an action starts one: the whole page is
    // fetched again, history included.
    let version = RwSignal::new(0u32);
    Effect::new(move |_| {
        if version.get() > 0 {
            reload_page();
        }
    });
    if let Some(current) = &detail.current_job {
        if !current.status.is_finished() {
            follow_job(current.id.clone(), job, connected, version);
        }
    }
    let app_url = detail.outputs["app_url"].as_str().map(str::to_string);
    view! {
        <div class="heading">
            <h1>{detail.name.clone()}</h1>
            <span class=format!("badge {}", detail.status.as_str()) data-testid="deployment-status">
                {detail.status.label()}
            </span>
        </div>
        <dl class="facts">
            <dt>"Region"</dt><dd>{detail.region.clone()}</dd>
            <dt>"Created"</dt><dd>{stamp(detail.created_at)}</dd>
            {detail.torn_down_at.map(|at| view! { <dt>"Torn down"</dt><dd>{stamp(at)}</dd> })}
            <dt>"App"</dt>
            <dd>
                {match app_url {
                    Some(url) if detail.status == DeploymentStatus::Live => view! {
                        <a href=url.clone() data-testid="app-url" rel="noopener">{url.clone()}</a>
                    }.into_any(),
                    _ => view! { <span class="muted">"not live"</span> }.into_any(),
                }}
            </dd>
            <dt>"Id"</dt><dd><code>{detail.id.to_string()}</code></dd>
        </dl>
        <Actions detail=detail.clone() job version/>
        <section aria-labelledby="job-title">
            <h2 id="job-title">
                {move || job.with(|j| j.as_ref().map(|j| format!("{} job: {}", title_case(j.kind.as_str()), j.status.as_str()))
                    .unwrap_or_else(|| "No job yet".into()))}
                {move || connected.get().then(|| view! { <span class="live-dot" title="updating live">" ● live"</span> })}
            </h2>
            // A finished deploy folds its steps away, so the live health
            // comes first; they stay one click away.
            {move || job.get().map(|j| {
                let open = j.status != JobStatus::Done;
                view! {
                    <details class="job-steps" open=open>
                        <summary>"Steps"</summary>
                        <JobTimeline job=j/>
                    </details>
                }
            })}
        </section>
    }
}

/// Fetches the page again from the server.
fn reload_page() {
    #[cfg(feature = "hydrate")]
    if let Some(window) = web_sys::window() {
        let _ = window.location().reload();
    }
}

fn title_case(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Teardown (confirmed by typing the name), Retry and Cancel, where they apply.
#[component]
fn Actions(
    detail: DeploymentDetail,
    job: RwSignal<Option<JobView>>,
    version: RwSignal<u32>,
) -> impl IntoView {
    let teardown = ServerAction::<TeardownDeployment>::new();
    let retry = ServerAction::<RetryJob>::new();
    let cancel = ServerAction::<CancelJob>::new();
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let typed = RwSignal::new(String::new());
    let name = detail.name.clone();
    let id = detail.id.clone();
    // A finished action changes the deployment: fetch it again.
    Effect::new(move |_| {
        let done = [
            teardown.version().get(),
            retry.version().get(),
            cancel.version().get(),
        ];
        if done.iter().any(|v| *v > 0) {
            version.update(|v| *v += 1);
        }
    });
    let error = move || {
        [
            teardown.value().get(),
            retry.value().get(),
            cancel.value().get(),
        ]
        .into_iter()
        .flatten()
        .find_map(Result::err)
        .map(|e| e.to_string())
    };
    let running = move || job.with(|j| j.as_ref().is_some_and(|j| !j.status.is_finished()));
    let retryable = move || {
        job.with(|j| {
            j.as_ref()
                .filter(|j| matches!(j.status, JobStatus::Failed | JobStatus::Cancelled))
                .map(|j| j.id.clone())
        })
    };
    let can_teardown = !matches!(detail.status, DeploymentStatus::TornDown);
    let name_for_check = name.clone();
    let id_for_teardown = id.clone();
    view! {
        <div class="actions">
            {move || retryable().map(|job_id| view! {
                <button type="button" data-testid="retry" disabled=move || !hydrated.get() || retry.pending().get()
                    on:click=move |_| { retry.dispatch(RetryJob { id: job_id.clone() }); }>
                    "Retry from the failed step"
                </button>
            })}
            {move || job.get().filter(|j| !j.status.is_finished()).map(|j| view! {
                <button type="button" data-testid="cancel"
                    disabled=move || !hydrated.get() || cancel.pending().get() || j.cancel_requested
                    on:click=move |_| { cancel.dispatch(CancelJob { id: j.id.clone() }); }>
                    {if j.cancel_requested { "Cancelling…" } else { "Cancel" }}
                </button>
            })}
            {can_teardown.then(|| view! {
                <details class="danger" data-testid="teardown-panel">
                    <summary>"Tear down"</summary>
                    <p>
                        "Removes every resource of this deployment and checks that nothing is left. "
                        "Type the deployment's name, "<strong>{name.clone()}</strong>", to confirm."
                    </p>
                    <label for="confirm-name">"Deployment name"</label>
                    <input id="confirm-name" type="text" autocomplete="off" data-testid="confirm-name"
                        prop:value=move || typed.get()
                        on:input=move |ev| typed.set(event_target_value(&ev))/>
                    <button type="button" class="destructive" data-testid="teardown"
                        disabled=move || !hydrated.get() || teardown.pending().get() || running()
                            || typed.get() != name_for_check
                        on:click=move |_| { teardown.dispatch(TeardownDeployment { id: id_for_teardown.clone() }); }>
                        "Tear down"
                    </button>
                    {move || running().then(|| view! { <p class="muted">"Wait for the running job to end, or cancel it."</p> })}
                </details>
            })}
            {move || error().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </div>
    }
}

/// The steps in time: one bar per step from its start to its end (or now),
/// so work that ran in parallel is seen side by side.
#[component]
fn JobTimeline(job: JobView) -> impl IntoView {
    let now = Utc::now();
    let start = job
        .steps
        .iter()
        .filter_map(|s| s.started_at)
        .min()
        .or(job.started_at)
        .unwrap_or(job.created_at);
    let end = job
        .steps
        .iter()
        .map(|s| s.finished_at.or(s.started_at.map(|_| now)))
        .max()
        .flatten()
        .unwrap_or(now)
        .max(start + chrono::TimeDelta::milliseconds(1));
    let span = (end - start).num_milliseconds().max(1) as f64;
    let done = job
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Done)
        .count();
    let total = job.steps.len();
    let at = move |t: DateTime<Utc>| {
        ((t - start).num_milliseconds() as f64 / span * 1000.0).clamp(0.0, 1000.0)
    };
    view! {
        <p class="muted" data-testid="job-progress">
            {format!("{done} of {total} steps done · {} s", fixed(span / 1000.0, 1))}
            {job.error.clone().map(|e| view! { <span class="error">" · "{e}</span> })}
        </p>
        {job.waiting.clone().map(|w| view! { <p class="notice" role="status" data-testid="job-waiting">{w}</p> })}
        <div class="table-scroll">
        <table class="steps" data-testid="steps">
            <thead>
                <tr>
                    <th scope="col">"Step"</th>
                    <th scope="col">"State"</th>
                    <th scope="col" class="timeline-col">"Timeline"</th>
                    <th scope="col">"Took"</th>
                    <th scope="col">"Attempts"</th>
                </tr>
            </thead>
            <tbody>
                {job.steps.into_iter().map(|step| {
                    let bar = step.started_at.map(|s| {
                        let x = at(s);
                        let w = (at(step.finished_at.unwrap_or(now)) - x).max(4.0);
                        (x, w)
                    });
                    let took = duration(&step, now);
                    let detail = step_detail(&step);
                    view! {
                        <tr data-testid=format!("step-{}", step.key) data-status=step.status.as_str()>
                            <th scope="row"><code>{step.key.clone()}</code></th>
                            <td><span class=format!("state {}", step.status.as_str())>{step.status.as_str()}</span></td>
                            <td class="timeline-col">
                                <svg class="bar" viewBox="0 0 1000 10" preserveAspectRatio="none" role="img"
                                    aria-label=format!("{} {}", step.key, took)>
                                    <rect class="track" x="0" y="0" width="1000" height="10"/>
                                    {bar.map(|(x, w)| view! {
                                        <rect class=format!("fill {}", step.status.as_str()) x=fixed(x, 1) y="0" width=fixed(w, 1) height="10"/>
                                    })}
                                </svg>
                            </td>
                            <td>{took}</td>
                            <td>{step.attempts}</td>
                        </tr>
                        {detail}
                    }
                }).collect_view()}
            </tbody>
        </table>
        </div>
    }
}

fn duration(step: &StepView, now: DateTime<Utc>) -> String {
    match (step.started_at, step.finished_at) {
        (Some(a), Some(b)) => format!("{} s", fixed((b - a).num_milliseconds() as f64 / 1000.0, 1)),
        (Some(a), None) if step.status == StepStatus::Running => {
            format!(
                "{} s…",
                fixed((now - a).num_milliseconds() as f64 / 1000.0, 0)
            )
        }
        _ => "—".into(),
    }
}

/// The row under a step that says what it waits for or why it failed.
fn step_detail(step: &StepView) -> Option<impl IntoView> {
    let progress = step
        .progress
        .clone()
        .filter(|_| step.status == StepStatus::Running);
    let error = step
        .error
        .clone()
        .filter(|_| step.status != StepStatus::Done);
    if progress.is_none() && error.is_none() {
        return None;
    }
    Some(view! {
        <tr class="step-detail">
            <td colspan="5">
                {progress.map(|p| view! { <span class="muted">{p}</span> })}
                {error.map(|e| view! {
                    <div class="step-error" data-testid=format!("error-{}", step.key)>
                        <strong>{e.code}</strong>": "{e.message}
                        {e.hint.map(|h| view! { <br/><span>"What to do: "{h}</span> })}
                        {e.request_id.map(|r| view! { <br/><span class="muted">"Request id: "{r}</span> })}
                    </div>
                })}
            </td>
        </tr>
    })
}

#[component]
fn ResourceTable(resources: Vec<ResourceView>) -> impl IntoView {
    if resources.is_empty() {
        return view! { <p class="muted">"None recorded yet."</p> }.into_any();
    }
    view! {
        <div class="table-scroll">
        <table data-testid="resources">
            <thead><tr>
                <th scope="col">"Kind"</th><th scope="col">"AWS id"</th>
                <th scope="col">"Made by"</th><th scope="col">"State"</th>
            </tr></thead>
            <tbody>
                {resources.into_iter().map(|r| view! {
                    <tr>
                        <td>{r.kind.replace('_', " ")}</td>
                        <td><code>{r.aws_id}</code></td>
                        <td><code>{r.step_key}</code></td>
                        <td>{match r.deleted_at {
                            Some(at) => view! { <span class="muted">"made "{stamp(r.created_at)}", deleted "{stamp(at)}</span> }.into_any(),
                            None => view! { <span>"present since "{stamp(r.created_at)}</span> }.into_any(),
                        }}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
        </div>
    }
    .into_any()
}

/// When the parameters changed since the deploy, and how: each apply's
/// fields before and after, and each drift finding taken in.
#[component]
fn ParamChanges(events: Vec<EventView>) -> impl IntoView {
    let changes: Vec<(DateTime<Utc>, String)> = events
        .iter()
        .filter_map(|e| {
            let what = e
                .message
                .strip_prefix("apply requested: ")
                .or_else(|| e.message.strip_prefix("drift accepted: "))?;
            Some((e.at, what.to_string()))
        })
        .collect();
    if changes.is_empty() {
        return view! { <p class="muted" data-testid="param-changes">"As deployed: never changed."</p> }
            .into_any();
    }
    view! {
        <ul class="param-changes" data-testid="param-changes">
            {changes.into_iter().map(|(at, what)| view! {
                <li>"changed "{stamp(at)}": "{what}</li>
            }).collect_view()}
        </ul>
    }
    .into_any()
}

#[component]
fn JobList(jobs: Vec<JobSummary>) -> impl IntoView {
    view! {
        <ul class="jobs" data-testid="jobs">
            {jobs.into_iter().map(|j| view! {
                <li>
                    <span class=format!("state {}", j.status.as_str())>{j.status.as_str()}</span>" "
                    {title_case(j.kind.as_str())}" · "{stamp(j.created_at)}" · from "{j.source}
                </li>
            }).collect_view()}
        </ul>
    }
}

/// Follows the job over Server-Sent Events. The browser reconnects by itself
/// after a dropped connection; the stream is closed once the job ends, and
/// the page is loaded again.
#[allow(unused_variables)]
fn follow_job(
    job_id: JobId,
    job: RwSignal<Option<JobView>>,
    connected: RwSignal<bool>,
    version: RwSignal<u32>,
) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::closure::Closure;
        use wasm_bindgen::JsCast;

        let Ok(source) = web_sys::EventSource::new(&format!("/api/v1/jobs/{job_id}/events")) else {
            return;
        };
        let stream = StoredValue::new_local(source.clone());
        let on_job = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
            move |event: web_sys::MessageEvent| {
                let Some(text) = event.data().as_string() else {
                    return;
                };
                let Ok(view) = serde_json::from_str::<JobView>(&text) else {
                    return;
                };
                let finished = view.status.is_finished();
                connected.set(!finished);
                job.set(Some(view));
                if finished {
                    stream.with_value(|s| s.close());
                    version.update(|v| *v += 1);
                }
            },
        );
        let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| connected.set(true));
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| connected.set(false));
        let _ = source.add_event_listener_with_callback("job", on_job.as_ref().unchecked_ref());
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        on_job.forget();
        on_open.forget();
        on_error.forget();
        on_cleanup(move || stream.with_value(|s| s.close()));
    }
}

#[server]
pub async fn get_deployment(id: DeploymentId) -> Result<DeploymentDetail, ServerFnError> {
    crate::backend::use_backend()?
        .deployment(&id)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))
}

#[server]
pub async fn teardown_deployment(id: DeploymentId) -> Result<JobId, ServerFnError> {
    use crate::model::Source;
    let accepted = crate::backend::use_backend()?
        .teardown(&id, Source::Browser, None)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    Ok(accepted.job.id)
}

#[server]
pub async fn retry_job(id: JobId) -> Result<JobId, ServerFnError> {
    let job = crate::backend::use_backend()?
        .retry_job(&id, crate::model::Source::Browser)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    Ok(job.id)
}

#[server]
pub async fn cancel_job(id: JobId) -> Result<JobId, ServerFnError> {
    let job = crate::backend::use_backend()?
        .cancel_job(&id, crate::model::Source::Browser)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    Ok(job.id)
}
