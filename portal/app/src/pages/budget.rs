//! The budget on a deployment's page and in the list: time-to-live, cost
//! cap, the countdown before a TTL runs out with its extend control, and
//! the lineage of a deployment made again from a torn-down one.
//!
//! The controls are plain forms posting to `/deployments/{id}/budget` (the
//! server redirects back), so they work before the bundle loads; only the
//! countdown is an island, to tick.

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::ids::DeploymentId;
use crate::model::{Budget, DeploymentStatus, Link};
use crate::pages::live::stamp;

/// Minutes the extend control adds.
pub const EXTEND_MINUTES: u32 = 60;

/// "14:32" (minutes and seconds), "1:02:05" past an hour.
fn left_text(seconds: i64) -> String {
    let s = seconds.max(0);
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Time left until the TTL runs out, ticking each second. When it runs out
/// while the page is open, the page is loaded again a little later, to show
/// the teardown the guard started.
#[island]
pub fn Countdown(expires_at: DateTime<Utc>) -> impl IntoView {
    let now = RwSignal::new(Utc::now());
    #[cfg(feature = "hydrate")]
    {
        let was_running = Utc::now() < expires_at;
        if let Ok(handle) = set_interval_with_handle(
            move || {
                let t = Utc::now();
                now.set(t);
                if was_running && (t - expires_at).num_seconds() >= 6 {
                    if let Some(window) = web_sys::window() {
                        let _ = window.location().reload();
                    }
                }
            },
            std::time::Duration::from_secs(1),
        ) {
            on_cleanup(move || handle.clear());
        }
    }
    view! {
        <strong data-testid="ttl-countdown">
            {move || {
                let left = (expires_at - now.get()).num_seconds();
                if left > 0 {
                    format!("Tears down in {}", left_text(left))
                } else {
                    "Time to live ran out; tearing down".to_string()
                }
            }}
        </strong>
    }
}

/// The "Extend 1 h" button: a form of its own.
#[component]
pub fn ExtendForm(id: DeploymentId, back: String) -> impl IntoView {
    view! {
        <form method="post" action=format!("/deployments/{id}/budget") class="inline">
            <input type="hidden" name="extend_minutes" value=EXTEND_MINUTES.to_string()/>
            <input type="hidden" name="back" value=back/>
            <button type="submit" data-testid="extend">
                {format!("Extend {}", crate::text::minutes(EXTEND_MINUTES))}
            </button>
        </form>
    }
}

/// The error of a budget form that changed nothing, from the redirect.
#[component]
pub fn BudgetError() -> impl IntoView {
    let query = use_query_map();
    move || {
        query.read().get("budget_error").map(|message| {
            view! {
                <p class="error" role="alert" data-testid="budget-error">
                    "Nothing was changed: "{message}
                </p>
            }
        })
    }
}

/// A deployment's budget on its page: limits, countdown, extend and edit,
/// or, once torn down, the way to deploy it again.
#[component]
pub fn BudgetSection(
    id: DeploymentId,
    status: DeploymentStatus,
    budget: Budget,
    redeployed_from: Option<Link>,
    redeployed_as: Vec<Link>,
) -> impl IntoView {
    let back = format!("/deployments/{id}");
    let guarded = status.guarded();
    let warning = guarded && budget.warning(Utc::now());
    let lineage = (redeployed_from.is_some() || !redeployed_as.is_empty()).then(|| {
        view! {
            <p data-testid="lineage">
                {redeployed_from.map(|o| view! {
                    "Deployed again from "<a href=format!("/deployments/{}", o.id) data-testid="redeployed-from">{o.name}</a>". "
                })}
                {(!redeployed_as.is_empty()).then(|| view! {
                    "Deployed again as "
                    {redeployed_as.into_iter().map(|l| view! {
                        <a href=format!("/deployments/{}", l.id) data-testid="redeployed-as">{l.name}</a>" "
                    }).collect_view()}
                })}
            </p>
        }
    });
    view! {
        <section aria-labelledby="budget-title" id="budget" data-testid="budget">
            <h2 id="budget-title">"Budget"</h2>
            <BudgetError/>
            {lineage}
            <dl class="facts">
                <dt>"Time to live"</dt>
                <dd data-testid="ttl">
                    {match (budget.ttl_minutes, budget.expires_at) {
                        (Some(minutes), Some(at)) => view! {
                            {crate::text::minutes(minutes)}" · tears down "{stamp(at)}
                        }.into_any(),
                        _ => view! { <span class="muted">"none: it stands until torn down"</span> }.into_any(),
                    }}
                </dd>
                <dt>"Cost cap"</dt>
                <dd data-testid="cost-cap">
                    {match budget.cost_cap_usd {
                        Some(cap) => crate::pricing::usd(cap).into_any(),
                        None => view! { <span class="muted">"none"</span> }.into_any(),
                    }}
                </dd>
            </dl>
            {budget.expires_at.filter(|_| warning).map(|at| view! {
                <div class="ttl-warning" role="status">
                    <Countdown expires_at=at/>
                    <ExtendForm id=id.clone() back=back.clone()/>
                </div>
            })}
            {guarded.then(|| view! {
                <details class="budget-edit">
                    <summary>"Change the time to live or the cost cap"</summary>
                    <form method="post" action=format!("/deployments/{id}/budget") data-testid="budget-form">
                        <input type="hidden" name="back" value=back.clone()/>
                        <div class="field">
                            <label for="budget-ttl">"Time to live (min, from creation)"</label>
                            <input id="budget-ttl" name="ttl_minutes" type="text" inputmode="numeric"
                                value=budget.ttl_minutes.map(|m| m.to_string()).unwrap_or_default()/>
                            <p class="help">"Empty: no time to live."</p>
                        </div>
                        <div class="field">
                            <label for="budget-cap">"Cost cap (USD)"</label>
                            <input id="budget-cap" name="cost_cap_usd" type="text" inputmode="decimal"
                                value=budget.cost_cap_usd.map(crate::text::plain).unwrap_or_default()/>
                            <p class="help">"Empty: no cap."</p>
                        </div>
                        <button type="submit" data-testid="budget-save">"Save"</button>
                    </form>
                </details>
            })}
            {(status == DeploymentStatus::TornDown).then(|| view! {
                <p>
                    <a class="button primary" href=format!("/new?from={id}") data-testid="redeploy">
                        "Deploy again"
                    </a>
                    " with the same parameters, which you can change first."
                </p>
            })}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_left_read_like_a_clock() {
        assert_eq!(left_text(872), "14:32");
        assert_eq!(left_text(3725), "1:02:05");
        assert_eq!(left_text(-4), "0:00");
        assert_eq!(crate::text::minutes(240), "4 h");
        assert_eq!(crate::text::minutes(90), "1 h 30 min");
        assert_eq!(crate::text::minutes(15), "15 min");
    }
}
