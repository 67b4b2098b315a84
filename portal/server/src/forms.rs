//! Plain HTML forms the pages post to, so the budget controls work before
//! (and without) the browser bundle, and a plan's Apply costs the bundle
//! nothing, and so do the Drift part's buttons: the answer is a redirect
//! back to the page, with `budget_error`, `apply_error` or `drift_error` in
//! its query when nothing was changed.

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use cloudpulse_app::backend::{BackendError, SharedBackend};
use cloudpulse_app::ids::{DeploymentId, PlanId};
use cloudpulse_app::model::{BudgetChange, Source};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The budget form's fields, as typed. A field that is absent is kept; an
/// empty one turns its limit off.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetForm {
    ttl_minutes: Option<String>,
    cost_cap_usd: Option<String>,
    extend_minutes: Option<String>,
    /// The page to go back to (a path on this portal).
    back: Option<String>,
}

impl BudgetForm {
    fn change(&self) -> Result<BudgetChange, String> {
        fn number<T: std::str::FromStr>(field: &str, text: &str) -> Result<Option<T>, String> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse()
                .map(Some)
                .map_err(|_| format!("{field}: {text:?} is not a number"))
        }
        Ok(BudgetChange {
            ttl_minutes: self
                .ttl_minutes
                .as_deref()
                .map(|t| number("time to live", t))
                .transpose()?,
            cost_cap_usd: self
                .cost_cap_usd
                .as_deref()
                .map(|t| number("cost cap", t))
                .transpose()?,
            extend_minutes: match self.extend_minutes.as_deref() {
                Some(text) => number("extend by", text)?,
                None => None,
            },
        })
    }

    /// Where to go afterwards: the deployment's page, or the list the form
    /// was sent from (`/`, with at most its `status` and `page`). Anything
    /// else (another site, `/\t/evil.example` that browsers read as
    /// `//evil.example`, another page of the portal) goes to the
    /// deployment's page.
    fn back(&self, id: &str) -> String {
        let own = format!("/deployments/{}", percent_encode(id));
        match self.back.as_deref() {
            Some(back) if back == own || is_list(back) => back.to_string(),
            _ => own,
        }
    }
}

/// `/`, `/?status=live`, `/?page=2`, `/?status=torn_down&page=3`: the list
/// with nothing but a status (letters and `_`) and a page number.
fn is_list(back: &str) -> bool {
    let Some(query) = back.strip_prefix('/') else {
        return false;
    };
    if query.is_empty() {
        return true;
    }
    let Some(query) = query.strip_prefix('?') else {
        return false;
    };
    query.split('&').all(|pair| match pair.split_once('=') {
        Some(("status", value)) => {
            !value.is_empty() && value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        }
        Some(("page", value)) => !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()),
        _ => false,
    })
}

/// A form body whose rejection is the portal's 413 for one too large, and
/// a plain 400 with the reason otherwise.
pub struct PageForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for PageForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        match Form::<T>::from_request(request, state).await {
            Ok(Form(value)) => Ok(PageForm(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(crate::limits::too_large())
            }
            Err(rejection) => Err((StatusCode::BAD_REQUEST, rejection.body_text()).into_response()),
        }
    }
}

pub async fn budget(
    State(backend): State<SharedBackend>,
    Path(id): Path<DeploymentId>,
    PageForm(form): PageForm<BudgetForm>,
) -> Response {
    let back = form.back(id.as_str());
    let outcome = match form.change() {
        Ok(change) => backend
            .set_budget(&id, change, Source::Browser)
            .await
            .map_err(|e| match e {
                BackendError::Validation(fields) => {
                    fields.values().cloned().collect::<Vec<_>>().join("; ")
                }
                other => other.to_string(),
            }),
        Err(message) => Err(message),
    };
    let location = match outcome {
        Ok(_) => back,
        Err(message) => {
            let joiner = if back.contains('?') { '&' } else { '?' };
            format!("{back}{joiner}budget_error={}", percent_encode(&message))
        }
    };
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// The plan form of a deployment's Edit part.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyForm {
    plan_id: String,
}

/// Applies a plan of this deployment and goes back to its page, which
/// follows the job; a refusal (a stale plan, a busy deployment) comes back
/// as `apply_error` in the page's query.
pub async fn apply(
    State(backend): State<SharedBackend>,
    Path(id): Path<DeploymentId>,
    PageForm(form): PageForm<ApplyForm>,
) -> Response {
    let back = format!("/deployments/{}", percent_encode(id.as_str()));
    let plan_id = PlanId::from(form.plan_id);
    let location = match backend.apply_plan(&id, &plan_id, Source::Browser).await {
        Ok(_) => back,
        Err(e) => format!("{back}?apply_error={}", percent_encode(&e.to_string())),
    };
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// A button of a deployment's Drift part.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftForm {
    /// `check`, `repair` or `accept`.
    action: String,
    /// With `accept`: the finding whose actual value to keep.
    finding: Option<String>,
}

/// Checks, repairs or accepts a deployment's drift and goes back to its
/// page (a repair's job is followed there); a refusal comes back as
/// `drift_error` in the page's query.
pub async fn drift(
    State(backend): State<SharedBackend>,
    Path(id): Path<DeploymentId>,
    PageForm(form): PageForm<DriftForm>,
) -> Response {
    let back = format!("/deployments/{}", percent_encode(id.as_str()));
    let outcome = match (form.action.as_str(), form.finding) {
        ("check", _) => backend.check_drift(&id).await.map(drop),
        ("repair", _) => backend.repair_drift(&id, Source::Browser).await.map(drop),
        ("accept", Some(finding)) => backend
            .accept_drift(&id, vec![finding], Source::Browser)
            .await
            .map(drop),
        ("accept", None) => Err(BackendError::Invalid(
            "name the finding to accept".to_string(),
        )),
        (other, _) => Err(BackendError::Invalid(format!(
            "unknown drift action {other:?}: check, repair or accept"
        ))),
    };
    let location = match outcome {
        Ok(()) => format!("{back}#drift-title"),
        Err(e) => {
            let message = match e {
                BackendError::Refused { fields, .. } => {
                    fields.values().cloned().collect::<Vec<_>>().join("; ")
                }
                other => other.to_string(),
            };
            format!(
                "{back}?drift_error={}#drift-title",
                percent_encode(&message)
            )
        }
    };
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_as_typed_and_empty_turns_off() {
        let form = BudgetForm {
            ttl_minutes: Some(" 90 ".into()),
            cost_cap_usd: Some(String::new()),
            ..Default::default()
        };
        let change = form.change().unwrap();
        assert_eq!(change.ttl_minutes, Some(Some(90)));
        assert_eq!(change.cost_cap_usd, Some(None));
        assert_eq!(change.extend_minutes, None);
        let bad = BudgetForm {
            cost_cap_usd: Some("two".into()),
            ..Default::default()
        };
        assert_eq!(
            bad.change().unwrap_err(),
            "cost cap: \"two\" is not a number"
        );
    }

    #[test]
    fn back_stays_on_this_portal() {
        let to = |back: &str| {
            BudgetForm {
                back: Some(back.into()),
                ..Default::default()
            }
            .back("d1")
        };
        assert_eq!(to("/?status=live"), "/?status=live");
        assert_eq!(to("/?status=live&page=2"), "/?status=live&page=2");
        assert_eq!(to("/"), "/");
        assert_eq!(to("/deployments/d1"), "/deployments/d1");
        for hostile in [
            "//evil.example/",
            "https://evil.example/",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\\evil.example",
            "/deployments/d2",
            "/deployments/d1/../../evil",
            "/?status=live&next=//evil.example",
            "/?status=<script>",
            "/?page=1e9x",
            "",
        ] {
            assert_eq!(to(hostile), "/deployments/d1", "{hostile:?}");
        }
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
    }
}
