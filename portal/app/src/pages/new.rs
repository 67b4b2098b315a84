//! The "New deployment" form: the article's defaults, grouped, every field
//! explained, a cost estimate that follows the fields, and validation by the
//! server with the API's own rules.

use leptos::prelude::*;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};

use crate::ids::DeploymentId;
use crate::params::{DeploymentParams, FieldErrors, NatMode, INSTANCE_TYPES};
use crate::pricing::{self, CostEstimate, PRICE_TABLE};

/// What the server made of a submitted form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Submitted {
    Created {
        deployment_id: DeploymentId,
    },
    /// A change of a live deployment, worked out and not applied.
    Planned(crate::pages::edit::PlanShown),
    /// Nothing was created; each field says what to fix.
    Invalid {
        fields: FieldErrors,
    },
}

/// Every input's text, as typed. Numbers stay text until submitted so a
/// half-typed value is never silently replaced.
#[derive(Clone, Copy)]
struct Form {
    name: RwSignal<String>,
    region: RwSignal<String>,
    azs: RwSignal<String>,
    vpc_cidr: RwSignal<String>,
    instance_type: RwSignal<String>,
    min: RwSignal<String>,
    desired: RwSignal<String>,
    max: RwSignal<String>,
    nat: RwSignal<NatMode>,
    health_path: RwSignal<String>,
    health_interval: RwSignal<String>,
    health_timeout: RwSignal<String>,
    healthy_threshold: RwSignal<String>,
    unhealthy_threshold: RwSignal<String>,
    scale_out_cpu: RwSignal<String>,
    scale_in_cpu: RwSignal<String>,
    cooldown: RwSignal<String>,
    grace_period: RwSignal<String>,
    deregistration_delay: RwSignal<String>,
    ttl_minutes: RwSignal<String>,
    cost_cap_usd: RwSignal<String>,
}

/// Every input's starting text, by field name: what the server hands the
/// form island (a map of strings costs the browser no new deserializer,
/// where the parameters' own structs would).
pub(crate) fn texts(p: &DeploymentParams) -> FieldErrors {
    let plain = |v: &dyn ToString| v.to_string();
    let hc = &p.health_check;
    [
        ("name", p.name.clone()),
        ("region", p.region.clone()),
        ("azs", plain(&p.azs)),
        ("vpc_cidr", p.vpc_cidr.clone()),
        ("instance_type", p.instance_type.clone()),
        ("min", plain(&p.min)),
        ("desired", plain(&p.desired)),
        ("max", plain(&p.max)),
        (
            "nat",
            match p.nat {
                NatMode::PerAz => "per-az",
                NatMode::Single => "single",
            }
            .to_string(),
        ),
        ("health_check.path", hc.path.clone()),
        ("health_check.interval", plain(&hc.interval)),
        ("health_check.timeout", plain(&hc.timeout)),
        (
            "health_check.healthy_threshold",
            plain(&hc.healthy_threshold),
        ),
        (
            "health_check.unhealthy_threshold",
            plain(&hc.unhealthy_threshold),
        ),
        ("scale_out_cpu", crate::text::plain(p.scale_out_cpu)),
        ("scale_in_cpu", crate::text::plain(p.scale_in_cpu)),
        ("cooldown", plain(&p.cooldown)),
        ("grace_period", plain(&p.grace_period)),
        ("deregistration_delay", plain(&p.deregistration_delay)),
        (
            "ttl_minutes",
            p.ttl_minutes
                .filter(|m| *m > 0)
                .map(|m| m.to_string())
                .unwrap_or_default(),
        ),
        (
            "cost_cap_usd",
            p.cost_cap_usd.map(crate::text::plain).unwrap_or_default(),
        ),
    ]
    .into_iter()
    .map(|(field, text)| (field.to_string(), text))
    .collect()
}

impl Form {
    fn new(texts: &FieldErrors) -> Self {
        let text = |field: &str| RwSignal::new(texts.get(field).cloned().unwrap_or_default());
        Form {
            name: text("name"),
            region: text("region"),
            azs: text("azs"),
            vpc_cidr: text("vpc_cidr"),
            instance_type: text("instance_type"),
            min: text("min"),
            desired: text("desired"),
            max: text("max"),
            nat: RwSignal::new(if texts.get("nat").is_some_and(|n| n == "single") {
                NatMode::Single
            } else {
                NatMode::PerAz
            }),
            health_path: text("health_check.path"),
            health_interval: text("health_check.interval"),
            health_timeout: text("health_check.timeout"),
            healthy_threshold: text("health_check.healthy_threshold"),
            unhealthy_threshold: text("health_check.unhealthy_threshold"),
            scale_out_cpu: text("scale_out_cpu"),
            scale_in_cpu: text("scale_in_cpu"),
            cooldown: text("cooldown"),
            grace_period: text("grace_period"),
            deregistration_delay: text("deregistration_delay"),
            ttl_minutes: text("ttl_minutes"),
            cost_cap_usd: text("cost_cap_usd"),
        }
    }

    /// The parameters, and what cannot even be read as a number.
    fn params(&self) -> (DeploymentParams, FieldErrors) {
        let mut errors = FieldErrors::new();
        let mut p = DeploymentParams {
            name: self.name.get().trim().to_string(),
            region: self.region.get().trim().to_string(),
            vpc_cidr: self.vpc_cidr.get().trim().to_string(),
            instance_type: self.instance_type.get(),
            nat: self.nat.get(),
            ..Default::default()
        };
        p.health_check.path = self.health_path.get().trim().to_string();
        fn number<T: std::str::FromStr>(
            errors: &mut FieldErrors,
            field: &str,
            text: String,
            into: &mut T,
        ) {
            match text.trim().parse() {
                Ok(value) => *into = value,
                Err(_) => {
                    errors.insert(field.into(), format!("{text:?} is not a number"));
                }
            }
        }
        number(&mut errors, "azs", self.azs.get(), &mut p.azs);
        number(&mut errors, "min", self.min.get(), &mut p.min);
        number(&mut errors, "desired", self.desired.get(), &mut p.desired);
        number(&mut errors, "max", self.max.get(), &mut p.max);
        let hc = &mut p.health_check;
        number(
            &mut errors,
            "health_check.interval",
            self.health_interval.get(),
            &mut hc.interval,
        );
        number(
            &mut errors,
            "health_check.timeout",
            self.health_timeout.get(),
            &mut hc.timeout,
        );
        number(
            &mut errors,
            "health_check.healthy_threshold",
            self.healthy_threshold.get(),
            &mut hc.healthy_threshold,
        );
        number(
            &mut errors,
            "health_check.unhealthy_threshold",
            self.unhealthy_threshold.get(),
            &mut hc.unhealthy_threshold,
        );
        number(
            &mut errors,
            "scale_out_cpu",
            self.scale_out_cpu.get(),
            &mut p.scale_out_cpu,
        );
        number(
            &mut errors,
            "scale_in_cpu",
            self.scale_in_cpu.get(),
            &mut p.scale_in_cpu,
        );
        number(
            &mut errors,
            "cooldown",
            self.cooldown.get(),
            &mut p.cooldown,
        );
        number(
            &mut errors,
            "grace_period",
            self.grace_period.get(),
            &mut p.grace_period,
        );
        number(
            &mut errors,
            "deregistration_delay",
            self.deregistration_delay.get(),
            &mut p.deregistration_delay,
        );
        // Empty means none: no TTL (0, not the portal's default), no cap.
        let mut ttl = 0u32;
        if !self.ttl_minutes.get().trim().is_empty() {
            number(&mut errors, "ttl_minutes", self.ttl_minutes.get(), &mut ttl);
        }
        p.ttl_minutes = Some(ttl);
        if !self.cost_cap_usd.get().trim().is_empty() {
            let mut cap = 0.0f64;
            number(
                &mut errors,
                "cost_cap_usd",
                self.cost_cap_usd.get(),
                &mut cap,
            );
            p.cost_cap_usd = Some(cap);
        }
        (p, errors)
    }
}

#[component]
pub fn NewDeploymentPage() -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    let start = Resource::new(
        move || query.read().get("from"),
        |from| form_params(from.unwrap_or_default()),
    );
    view! {
        <Title text="New deployment · CloudPulse"/>
        <h1>"New deployment"</h1>
        <Suspense fallback=|| view! { <p class="muted">"Loading the form…"</p> }>
            {move || Suspend::new(async move {
                match start.await {
                    Ok((params, from)) => view! {
                        {match &from {
                            Some(origin) => view! {
                                <p class="muted" data-testid="redeploy-from">
                                    "Deploying again with the parameters of "
                                    <a href=format!("/deployments/{}", origin.id)>{origin.name.clone()}</a>
                                    ", torn down; change any of them first."
                                </p>
                            }.into_any(),
                            None => view! {
                                <p class="muted">
                                    "The article's stack, with its defaults. Every value is checked by the portal "
                                    "before anything is created."
                                </p>
                            }.into_any(),
                        }}
                        <DeploymentForm initial=texts(&params) from=from.map(|o| o.id.into_string()) edit=None/>
                        <PreflightSection/>
                    }.into_any(),
                    Err(error) => view! {
                        <p class="error" role="alert">{error.to_string()}</p>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// The preflight of the portal's defaults, rendered by the server: no
/// island code, and a deploy checks its own parameters again anyway.
#[component]
fn PreflightSection() -> impl IntoView {
    let checklist = Resource::new(|| (), |_| preflight_defaults());
    view! {
        <section class="preflight" data-testid="preflight" aria-labelledby="preflight-title">
            <h2 id="preflight-title">"Preflight"</h2>
            <Suspense fallback=|| view! { <p class="muted">"Checking the account…"</p> }>
                {move || Suspend::new(async move {
                    match checklist.await {
                        Ok(preflight) => view! {
                            <p class="muted" data-testid="preflight-summary">
                                {if preflight.ok {
                                    "For the default parameters, nothing blocks a deploy."
                                } else {
                                    "For the default parameters, a deploy would be refused: fix the failed checks first."
                                }}
                                " Checked at " {preflight.checked_at.format("%H:%M:%S UTC").to_string()} "."
                            </p>
                            <ul class="checklist">
                                {preflight.checks.into_iter().map(|check| view! {
                                    <li data-testid="preflight-check" data-status=check.status.label()>
                                        <span class=format!("badge {}", check.status.label())>{check.status.label()}</span>
                                        " " <strong>{check.name}</strong> ": " {check.detail}
                                        {check.hint.map(|hint| view! { <br/><span class="muted">{hint}</span> })}
                                    </li>
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(error) => view! {
                            <p class="error" role="alert">{error.to_string()}</p>
                        }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// The form and its estimate: an island, the page around it is static.
/// `from` is the torn-down deployment it deploys again, if any.
/// The parameters form: a new deployment (or a torn-down one's again, with
/// `from`), or, with `edit` (a live deployment's id), a change of that
/// deployment, reviewed as a plan before it is applied.
#[island]
pub(crate) fn DeploymentForm(
    initial: FieldErrors,
    from: Option<String>,
    edit: Option<String>,
) -> impl IntoView {
    let form = Form::new(&initial);
    let errors = RwSignal::new(FieldErrors::new());
    let submit = ServerAction::<CreateDeployment>::new();
    let editing = edit.is_some();
    let hydrated = RwSignal::new(false);
    // One key per form: a double click or a resubmission makes one deployment.
    let key = RwSignal::new(String::new());
    Effect::new(move |_| {
        hydrated.set(true);
        if key.get_untracked().is_empty() {
            key.set(form_key());
        }
    });
    let estimate =
        Memo::new(move |_| pricing::estimate(&form.params().0).map_err(|e| e.to_string()));

    Effect::new(move |_| match submit.value().get() {
        Some(Ok(Submitted::Created { deployment_id })) => {
            open_page(&format!("/deployments/{deployment_id}"));
        }
        Some(Ok(Submitted::Invalid { fields })) => errors.set(fields),
        Some(Ok(Submitted::Planned(_))) => {}
        Some(Err(error)) => {
            errors.set(FieldErrors::from([("form".to_string(), error.to_string())]));
        }
        None => {}
    });

    let on_submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let (params, unreadable) = form.params();
        if !unreadable.is_empty() {
            errors.set(unreadable);
            return;
        }
        errors.set(FieldErrors::new());
        submit.dispatch(CreateDeployment {
            params,
            key: key.get_untracked(),
            from: from.clone().unwrap_or_default(),
            edit: edit.clone().unwrap_or_default(),
        });
    };
    let pending = move || submit.pending().get();
    let button = move || match (editing, pending()) {
        (true, true) => "Working out the changes…",
        (true, false) => "Review changes",
        (false, true) => "Deploying…",
        (false, false) => "Deploy",
    };

    view! {
        <div class="new-deployment">
            <form on:submit=on_submit data-testid="new-deployment-form" novalidate>
                <FormError errors/>
                <fieldset>
                    <legend>"Deployment"</legend>
                    <TextField form_field=form.name field="name" label="Name" errors
                        help="3-32 lower-case letters, digits and hyphens; names the stack's resources."/>
                    <SelectField form_field=form.region field="region" label="Region" errors
                        help="Where the stack runs; prices are known for these regions."
                        options=PRICE_TABLE.iter().map(|p| p.region.to_string()).collect()/>
                </fieldset>
                <fieldset>
                    <legend>"Network"</legend>
                    <SelectField form_field=form.azs field="azs" label="Availability zones" errors
                        help="Each zone gets a public and a private subnet."
                        options=vec!["2".into(), "3".into()]/>
                    <TextField form_field=form.vpc_cidr field="vpc_cidr" label="VPC range" errors
                        help="A private /16 to /24; subnets are /24 blocks carved from it."/>
                    <div class="field" role="radiogroup" aria-labelledby="nat-label">
                        <span id="nat-label" class="label">"NAT gateways"</span>
                        <label class="choice">
                            <input type="radio" name="nat" value="per-az" data-testid="nat-per-az"
                                prop:checked=move || form.nat.get() == NatMode::PerAz
                                on:change=move |_| form.nat.set(NatMode::PerAz)/>
                            " One per zone: egress survives the loss of a zone."
                        </label>
                        <label class="choice">
                            <input type="radio" name="nat" value="single" data-testid="nat-single"
                                prop:checked=move || form.nat.get() == NatMode::Single
                                on:change=move |_| form.nat.set(NatMode::Single)/>
                            " A single one: about half the NAT cost; one zone's outage cuts egress for all."
                        </label>
                        <FieldError field="nat" errors/>
                    </div>
                </fieldset>
                <fieldset>
                    <legend>"Load balancer"</legend>
                    <TextField form_field=form.health_path field="health_check.path" label="Health check path" errors
                        help="The instance service answers 200 here while it is healthy."/>
                    <TextField numeric=true form_field=form.health_interval field="health_check.interval" label="Check interval (s)" errors
                        help="Seconds between checks, 5-300."/>
                    <TextField numeric=true form_field=form.health_timeout field="health_check.timeout" label="Check timeout (s)" errors
                        help="A check that takes longer fails; 2-120 and below the interval."/>
                    <TextField numeric=true form_field=form.healthy_threshold field="health_check.healthy_threshold" label="Healthy after" errors
                        help="Passed checks in a row before a target takes traffic (2-10)."/>
                    <TextField numeric=true form_field=form.unhealthy_threshold field="health_check.unhealthy_threshold" label="Unhealthy after" errors
                        help="Failed checks in a row before a target is taken out (2-10)."/>
                    <TextField numeric=true form_field=form.deregistration_delay field="deregistration_delay" label="Deregistration delay (s)" errors
                        help="How long a target leaving the load balancer finishes its requests, 0-3600; every scale-in and teardown waits this long (AWS's own default is 300)."/>
                </fieldset>
                <fieldset>
                    <legend>"Compute"</legend>
                    <SelectField form_field=form.instance_type field="instance_type" label="Instance type" errors
                        help="The EC2 type every instance of the group runs."
                        options=INSTANCE_TYPES.iter().map(|t| t.to_string()).collect()/>
                    <TextField numeric=true form_field=form.min field="min" label="Minimum" errors
                        help="The group never has fewer instances."/>
                    <TextField numeric=true form_field=form.desired field="desired" label="Desired" errors
                        help="Instances at the start; between minimum and maximum."/>
                    <TextField numeric=true form_field=form.max field="max" label="Maximum" errors
                        help="The group never has more; at most 10."/>
                    <TextField numeric=true form_field=form.grace_period field="grace_period" label="Grace period (s)" errors
                        help="Time a new instance has to boot before health checks count."/>
                </fieldset>
                <fieldset>
                    <legend>"Scaling"</legend>
                    <TextField numeric=true form_field=form.scale_out_cpu field="scale_out_cpu" label="Scale out above (% CPU)" errors
                        help="Average CPU that adds an instance."/>
                    <TextField numeric=true form_field=form.scale_in_cpu field="scale_in_cpu" label="Scale in below (% CPU)" errors
                        help="Average CPU that removes one; below the scale-out threshold."/>
                    <TextField numeric=true form_field=form.cooldown field="cooldown" label="Cooldown (s)" errors
                        help="Seconds between scaling actions."/>
                </fieldset>
                <fieldset>
                    <legend>"Budget"</legend>
                    <TextField numeric=true form_field=form.ttl_minutes field="ttl_minutes" label="Time to live (min)" errors
                        help="Torn down this many minutes after it is created; can be extended while it runs. Empty: never (240, four hours, is a good habit)."/>
                    <TextField numeric=true form_field=form.cost_cap_usd field="cost_cap_usd" label="Cost cap (USD)" errors
                        help="Torn down once its accrued cost reaches this. Empty: no cap."/>
                </fieldset>
                <button type="submit" class="primary"
                    data-testid={if editing { "review-changes" } else { "deploy" }}
                    disabled=move || !hydrated.get() || pending()>
                    {button}
                </button>
                <noscript><p class="muted">"Deploying from this page needs JavaScript; the API and the command line do not."</p></noscript>
            </form>
            {move || match submit.value().get() {
                Some(Ok(Submitted::Planned(plan))) => {
                    view! { <crate::pages::edit::PlanReview plan/> }.into_any()
                }
                _ => ().into_any(),
            }}
            <EstimatePanel estimate/>
        </div>
    }
}

fn form_key() -> String {
    #[cfg(feature = "hydrate")]
    {
        format!(
            "form-{:x}-{:x}",
            js_sys::Date::now() as u64,
            (js_sys::Math::random() * 1e15) as u64
        )
    }
    #[cfg(not(feature = "hydrate"))]
    {
        String::new()
    }
}

#[component]
fn EstimatePanel(estimate: Memo<Result<CostEstimate, String>>) -> impl IntoView {
    view! {
        <aside class="estimate" aria-labelledby="estimate-title" aria-live="polite" data-testid="estimate">
            <h2 id="estimate-title">"Cost estimate"</h2>
            {move || match estimate.get() {
                Ok(e) => view! {
                    <p class="total">
                        <strong data-testid="estimate-hour">{pricing::usd(e.per_hour)}</strong>" per hour · "
                        <strong data-testid="estimate-month">{pricing::usd(e.per_month)}</strong>" per month"
                    </p>
                    <table>
                        <tbody>
                            {e.lines.iter().map(|line| view! {
                                <tr>
                                    <th scope="row">{line.category.label()}<br/><span class="muted">{line.detail.clone()}</span></th>
                                    <td class="num">{pricing::usd(line.per_hour)}"/h"</td>
                                    <td class="num">{pricing::usd(line.per_month)}"/mo"</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                    <p class="muted">{format!("On-demand prices for {} as of {}; a month is 730 hours.", e.region, e.prices_as_of)}</p>
                }.into_any(),
                Err(why) => view! { <p class="muted" data-testid="estimate-unknown">"No estimate: "{why}</p> }.into_any(),
            }}
        </aside>
    }
}

/// Goes to `path` (a page the server renders; islands have no client router).
#[allow(unused_variables)]
pub(crate) fn open_page(path: &str) {
    #[cfg(feature = "hydrate")]
    if let Some(window) = web_sys::window() {
        let _ = window.location().assign(path);
    }
}

#[component]
fn FormError(errors: RwSignal<FieldErrors>) -> impl IntoView {
    move || {
        let errors = errors.get();
        (!errors.is_empty()).then(|| {
            let general = errors.get("form").cloned();
            view! {
                <div class="form-errors" role="alert" data-testid="form-errors">
                    {general.unwrap_or_else(|| {
                        format!(
                            "Nothing was created: {} field{} to fix.",
                            errors.len(),
                            if errors.len() == 1 { "" } else { "s" }
                        )
                    })}
                </div>
            }
        })
    }
}

#[component]
fn FieldError(field: &'static str, errors: RwSignal<FieldErrors>) -> impl IntoView {
    move || {
        errors.with(|e| e.get(field).cloned()).map(|message| {
            view! { <p class="field-error" id=format!("{field}-error") data-testid=format!("error-{field}")>{message}</p> }
        })
    }
}

fn input_id(field: &str) -> String {
    format!("f-{}", field.replace('.', "-"))
}

/// A labelled input with its one-line help and its error; `numeric` asks
/// phones for a number pad (the value stays text until submitted).
#[component]
fn TextField(
    form_field: RwSignal<String>,
    field: &'static str,
    label: &'static str,
    help: &'static str,
    errors: RwSignal<FieldErrors>,
    #[prop(optional)] numeric: bool,
) -> impl IntoView {
    let id = input_id(field);
    let inputmode = if numeric { "decimal" } else { "text" };
    view! {
        <div class="field">
            <label for=id.clone()>{label}</label>
            <input id=id type="text" inputmode=inputmode name=field data-testid=format!("field-{field}")
                aria-describedby=format!("{field}-help {field}-error")
                aria-invalid=move || errors.with(|e| e.contains_key(field)).to_string()
                prop:value=move || form_field.get()
                on:input=move |ev| form_field.set(event_target_value(&ev))/>
            <p class="help" id=format!("{field}-help")>{help}</p>
            <FieldError field errors/>
        </div>
    }
}

#[component]
fn SelectField(
    form_field: RwSignal<String>,
    field: &'static str,
    label: &'static str,
    help: &'static str,
    options: Vec<String>,
    errors: RwSignal<FieldErrors>,
) -> impl IntoView {
    let id = input_id(field);
    view! {
        <div class="field">
            <label for=id.clone()>{label}</label>
            <select id=id name=field data-testid=format!("field-{field}")
                aria-describedby=format!("{field}-help {field}-error")
                on:change=move |ev| form_field.set(event_target_value(&ev))>
                {options.into_iter().map(|option| {
                    let selected = option == form_field.get_untracked();
                    view! { <option value=option.clone() selected=selected>{option.clone()}</option> }
                }).collect_view()}
            </select>
            <p class="help" id=format!("{field}-help")>{help}</p>
            <FieldError field errors/>
        </div>
    }
}

/// Validates with the API's rules and starts the deploy; invalid parameters
/// come back per field and create nothing. With `edit` (a live
/// deployment's id), plans that deployment's change to `params` instead,
/// changing nothing.
#[server(input = leptos::server_fn::codec::Json)]
pub async fn create_deployment(
    params: DeploymentParams,
    key: String,
    from: String,
    #[server(default)] edit: String,
) -> Result<Submitted, ServerFnError> {
    use crate::backend::{use_backend, BackendError};
    use crate::model::Source;
    if !edit.is_empty() {
        return crate::pages::edit::plan(DeploymentId::from(edit), params).await;
    }
    let key = (!key.is_empty()).then_some(key);
    let backend = use_backend()?;
    let accepted = if from.is_empty() {
        backend.deploy(params, Source::Browser, key).await
    } else {
        backend
            .redeploy(
                &DeploymentId::from(from),
                Some(params),
                Source::Browser,
                key,
            )
            .await
    };
    match accepted {
        Ok(accepted) => Ok(Submitted::Created {
            deployment_id: accepted.deployment.id,
        }),
        Err(BackendError::Validation(fields)) => Ok(Submitted::Invalid { fields }),
        // A name in use belongs to the name field; a redeploy refused
        // (the old one stands again) to the whole form.
        Err(BackendError::Conflict(message)) => {
            let field = if message.contains("named") {
                "name"
            } else {
                "form"
            };
            Ok(Submitted::Invalid {
                fields: FieldErrors::from([(field.to_string(), message)]),
            })
        }
        // A failed preflight belongs to the whole form: its message names
        // each failed check and what to do about it.
        Err(error @ BackendError::Preflight(_)) => Ok(Submitted::Invalid {
            fields: FieldErrors::from([("form".to_string(), error.to_string())]),
        }),
        Err(error) => Err(ServerFnError::new(error.to_string())),
    }
}

/// The preflight of the default parameters, for the page.
#[server]
pub async fn preflight_defaults() -> Result<crate::model::Preflight, ServerFnError> {
    let backend = crate::backend::use_backend()?;
    let (params, _) = backend
        .form_params(None)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    backend
        .preflight(params)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))
}

/// The form's starting values: the defaults with this portal's TTL, or the
/// parameters of the torn-down deployment `from`.
#[server]
pub async fn form_params(
    from: String,
) -> Result<(DeploymentParams, Option<crate::model::Link>), ServerFnError> {
    let from = (!from.is_empty()).then(|| DeploymentId::from(from));
    crate::backend::use_backend()?
        .form_params(from.as_ref())
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_gives_back_the_parameters_it_started_from() {
        // Signals live in a reactive owner, as on a page.
        Owner::new().with(the_form_round_trips);
    }

    fn the_form_round_trips() {
        let old = DeploymentParams {
            name: "demo".into(),
            nat: NatMode::Single,
            desired: 3,
            scale_out_cpu: 72.5,
            deregistration_delay: 120,
            ttl_minutes: Some(90),
            cost_cap_usd: Some(2.5),
            ..Default::default()
        };
        let (params, unreadable) = Form::new(&texts(&old)).params();
        assert!(unreadable.is_empty(), "{unreadable:?}");
        assert_eq!(params, old);
        // An empty TTL field means none (0), not the portal's default.
        let none = DeploymentParams {
            name: "demo".into(),
            ..Default::default()
        };
        let (params, _) = Form::new(&texts(&none)).params();
        assert_eq!(params.ttl_minutes, Some(0));
        assert_eq!(params.cost_cap_usd, None);
    }
}
