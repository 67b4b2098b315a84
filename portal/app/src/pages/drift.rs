//! The Drift part of a live deployment's page: where the stack differs
//! from its parameters (changed past the portal), since when, and what
//! that breaks; with "Check now", "Repair" and, where the parameters can
//! say the actual value, "Accept". The buttons are plain forms the portal
//! answers with this page again (the browser bundle carries no code for
//! them), `drift_error` in its query when it refused.

use leptos::prelude::*;

use crate::drift::DriftReport;
use crate::ids::DeploymentId;
use crate::pages::live::stamp;

#[component]
pub fn DriftSection(report: DriftReport) -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    let refused = query.read_untracked().get("drift_error");
    let action = format!("/deployments/{}/drift", report.deployment_id);
    let count = report.findings.len();
    let checked = match report.checked_at {
        Some(at) => view! { <span>"Checked "{stamp(at)}"."</span> }.into_any(),
        None => view! { <span>"Not checked yet."</span> }.into_any(),
    };
    let button = |what: &'static str, label: &'static str, class: &'static str| {
        let action = action.clone();
        view! {
            <form method="post" action=action class="inline">
                <input type="hidden" name="action" value=what/>
                <button type="submit" class=class data-testid=format!("drift-{what}")>{label}</button>
            </form>
        }
    };
    view! {
        <section aria-labelledby="drift-title" data-testid="drift">
            <h2 id="drift-title">
                "Drift"
                {(count > 0).then(|| view! {
                    " "<span class="badge drift" data-testid="drift-count">{count}</span>
                })}
            </h2>
            {refused.map(|message| view! {
                <p class="error" role="alert" data-testid="drift-error">{message}</p>
            })}
            <p class="muted">
                {checked}" "
                {if count == 0 {
                    "The stack matches its parameters."
                } else {
                    "Changed past the portal: Repair puts each back as the parameters say; \
                     Accept keeps the actual value in the parameters."
                }}
            </p>
            {(count > 0).then(|| view! {
                <table data-testid="drift-findings">
                    <thead><tr>
                        <th scope="col">"Resource"</th><th scope="col">"Field"</th>
                        <th scope="col">"Expected"</th><th scope="col">"Actual"</th>
                        <th scope="col">"Since"</th><th scope="col">"What it breaks"</th>
                        <th scope="col"><span class="visually-hidden">"Accept"</span></th>
                    </tr></thead>
                    <tbody>
                        {report.findings.iter().map(|f| view! {
                            <tr data-testid="drift-finding" data-finding=f.id.clone()>
                                <td>{f.resource_kind.replace('_', " ")}" "<code>{f.resource_id.clone()}</code></td>
                                <td>{f.field.clone()}</td>
                                <td>{f.expected.clone()}</td>
                                <td>{f.actual.clone()}</td>
                                <td>{stamp(f.first_seen)}</td>
                                <td>{f.breaks.clone()}</td>
                                <td>{f.acceptable.then(|| view! {
                                    <form method="post" action=action.clone() class="inline">
                                        <input type="hidden" name="action" value="accept"/>
                                        <input type="hidden" name="finding" value=f.id.clone()/>
                                        <button type="submit" data-testid="drift-accept">"Accept"</button>
                                    </form>
                                })}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            })}
            <div class="actions">
                {button("check", "Check now", "")}
                {(count > 0).then(|| button("repair", "Repair", "primary"))}
            </div>
        </section>
    }
}

#[server]
pub async fn get_drift(id: DeploymentId) -> Result<DriftReport, ServerFnError> {
    crate::backend::use_backend()?
        .drift(&id)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))
}
