//! Changing a live deployment from its page: the New form, filled with its
//! parameters; "Review changes" shows the plan (what changes on which
//! resource, before and after, the cost and the disruption) and "Apply"
//! runs it, which the page then follows like any job.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::pages::new::{texts, DeploymentForm};
use crate::params::DeploymentParams;
#[cfg(feature = "ssr")]
use crate::params::FieldErrors;

/// A plan as the page shows it: as text (the cells of its table, five a
/// row: resource, action, field, before, after; and the lines under it),
/// so the browser needs no decoder of the plan's own types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanShown {
    pub id: String,
    pub deployment_id: String,
    pub cells: Vec<String>,
    pub lines: Vec<String>,
}

/// The Edit part of a live deployment's page; an apply the portal refused
/// comes back as `apply_error` in the page's query and is shown here.
#[component]
pub fn EditSection(id: String, params: DeploymentParams) -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    let refused = query.read_untracked().get("apply_error");
    view! {
        <section aria-labelledby="edit-title">
            {refused.map(|message| view! {
                <p class="error" role="alert" data-testid="apply-error">{message}</p>
            })}
            <details class="edit" data-testid="edit-panel">
                <summary><h2 id="edit-title">"Edit"</h2></summary>
                <p class="muted">
                    "Change the parameters, then review what that does to each resource before "
                    "anything changes. Sizes, scaling, health checks, draining, the NAT mode and the "
                    "budget change in place."
                </p>
                <DeploymentForm initial=texts(&params) from=None edit=Some(id)/>
            </details>
        </section>
    }
}

/// A plan, and the button that applies it: a plain form posted to the
/// portal, which answers with the deployment's page (the browser bundle
/// carries no code for it).
#[component]
pub fn PlanReview(plan: PlanShown) -> impl IntoView {
    view! {
        <div class="plan" data-testid="plan">
            <h3>"What changes"</h3>
            <table>
                <thead><tr>
                    <th scope="col">"Resource"</th><th scope="col">"Action"</th>
                    <th scope="col">"Field"</th><th scope="col">"Before"</th><th scope="col">"After"</th>
                </tr></thead>
                <tbody>
                    {plan.cells.chunks(5).map(|row| view! {
                        <tr>{row.iter().map(|cell| view! { <td>{cell.clone()}</td> }).collect_view()}</tr>
                    }).collect_view()}
                </tbody>
            </table>
            <ul class="plan-lines">
                {plan.lines.into_iter().map(|line| view! { <li>{line}</li> }).collect_view()}
            </ul>
            <form method="post" action=format!("/deployments/{}/apply", plan.deployment_id)>
                <input type="hidden" name="plan_id" value=plan.id/>
                <button type="submit" class="primary" data-testid="apply">"Apply"</button>
            </form>
        </div>
    }
}

/// Plans moving the deployment `id` to `params`, for the form's server
/// function; a change it cannot take comes back per field, like an invalid
/// value.
#[cfg(feature = "ssr")]
pub(crate) async fn plan(
    id: crate::ids::DeploymentId,
    params: DeploymentParams,
) -> Result<crate::pages::new::Submitted, ServerFnError> {
    use crate::backend::{use_backend, BackendError};
    use crate::model::Source;
    use crate::pages::new::Submitted;
    let backend = use_backend()?;
    let changes = serde_json::to_value(&params).map_err(|e| ServerFnError::new(e.to_string()))?;
    match backend.plan_change(&id, changes, Source::Browser).await {
        Ok(plan) => {
            let text = crate::change::plan_text(&plan);
            Ok(Submitted::Planned(PlanShown {
                id: plan.id.into_string(),
                deployment_id: plan.deployment_id.into_string(),
                cells: text.rows.into_iter().flatten().collect(),
                lines: text.lines,
            }))
        }
        Err(BackendError::Validation(fields) | BackendError::Refused { fields, .. }) => {
            Ok(Submitted::Invalid { fields })
        }
        Err(BackendError::Conflict(message)) => Ok(Submitted::Invalid {
            fields: FieldErrors::from([("form".to_string(), message)]),
        }),
        Err(error) => Err(ServerFnError::new(error.to_string())),
    }
}
