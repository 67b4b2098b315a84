//! The budget guard: tears a deployment down when its time-to-live runs out
//! or its accrued cost reaches its cap, and tells an idle one apart.
//!
//! Deadlines and caps live in the database (`deployments.expires_at`,
//! `params.cost_cap_usd`), so the guard keeps no state of its own: a portal
//! that was not running when a deadline passed acts on it at its first look
//! and says how late it is. A teardown it starts is an ordinary teardown job
//! whose source is `ttl` or `cost_cap`, made under an idempotency key of the
//! deadline (or the cap), so however often the guard looks, one deadline
//! makes one job.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use cloudpulse_core::ids::{DeploymentId, JobId};
use cloudpulse_core::model::{BudgetChange, DeploymentStatus, EventKind, Idle, Source};
use cloudpulse_core::params::{check_cost_cap, check_ttl_minutes, FieldErrors, MAX_TTL_MINUTES};
use cloudpulse_engine::store::{BudgetRow, StoreError};
use cloudpulse_engine::{Engine, EngineError};
use serde_json::json;

use crate::db::{self, Db, DbResult};
use crate::{cost, metrics, TelemetryConfig};

/// What the guard did about one deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub deployment_id: DeploymentId,
    pub source: Source,
    pub job_id: JobId,
    pub message: String,
}

/// Looks at every guarded deployment once; returns the teardowns it started.
pub async fn check(engine: &Engine, db: &Db, now: DateTime<Utc>, tick: Duration) -> Vec<Decision> {
    let guarded = match engine.store().guarded().await {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(%error, "the budget guard cannot read the deadlines");
            return Vec::new();
        }
    };
    let mut decisions = Vec::new();
    for (id, budget) in guarded {
        // A deploy or a teardown under way is left to finish; the guard
        // acts once the deployment stands still (late, and says so).
        if !matches!(
            budget.status,
            DeploymentStatus::Live | DeploymentStatus::Failed
        ) {
            continue;
        }
        let Some((source, key, message, data)) = reason(db, &id, &budget, now, tick).await else {
            continue;
        };
        match engine.teardown(&id, source, Some(&key)).await {
            Ok(created) if created.fresh => {
                if let Err(error) = engine
                    .store()
                    .add_event_data(
                        &id,
                        EventKind::Budget,
                        Some(source.as_str()),
                        &message,
                        &data,
                    )
                    .await
                {
                    tracing::warn!(deployment = %id, %error, "cannot record why the guard tore down");
                }
                tracing::info!(deployment = %id, %message, "budget guard: tearing down");
                decisions.push(Decision {
                    deployment_id: id,
                    source,
                    job_id: created.job_id,
                    message,
                });
            }
            // The same deadline's job exists already (it may have failed:
            // its page offers the retry; the guard does not loop on it).
            Ok(_) => {}
            Err(
                error @ (EngineError::WrongState(_) | EngineError::Store(StoreError::Busy { .. })),
            ) => {
                tracing::debug!(deployment = %id, %error, "budget guard waits");
            }
            Err(error) => {
                tracing::warn!(deployment = %id, %error, "budget guard cannot start a teardown")
            }
        }
    }
    decisions
}

/// Why `budget` asks for a teardown now, if it does: the source, the
/// idempotency key, the timeline's words and their facts.
async fn reason(
    db: &Db,
    id: &DeploymentId,
    budget: &BudgetRow,
    now: DateTime<Utc>,
    tick: Duration,
) -> Option<(Source, String, String, serde_json::Value)> {
    if let Some(expires_at) = budget.expires_at.filter(|at| *at <= now) {
        let late = now - expires_at;
        let ttl = budget.ttl_minutes.map_or_else(
            || "its time-to-live".to_string(),
            |m| format!("its time-to-live of {}", cloudpulse_core::text::minutes(m)),
        );
        let mut message = format!(
            "{ttl} ran out at {} UTC; tearing down",
            expires_at.format("%Y-%m-%d %H:%M:%S")
        );
        // Within two looks (or ten seconds) it is on time; beyond, the
        // portal was not running (or a job was) and the timeline says so.
        let on_time = TimeDelta::from_std(tick * 2)
            .unwrap_or_default()
            .max(TimeDelta::seconds(10));
        if late > on_time {
            message.push_str(&format!(
                " {} late (the portal was not running then, or a job was)",
                duration_text(late.num_seconds())
            ));
        }
        let data = json!({
            "expires_at": expires_at,
            "late_seconds": late.num_milliseconds() as f64 / 1000.0,
            "ttl_minutes": budget.ttl_minutes,
        });
        return Some((
            Source::Ttl,
            format!("ttl:{id}:{}", expires_at.timestamp_millis()),
            message,
            data,
        ));
    }
    let cap = budget.cost_cap_usd?;
    let view = match cost::cost(db, id, now).await {
        Ok(Some(view)) if view.priced => view,
        Ok(_) => return None,
        Err(error) => {
            tracing::warn!(deployment = %id, %error, "the budget guard cannot price a deployment");
            return None;
        }
    };
    if view.accrued_usd < cap {
        return None;
    }
    let message = format!(
        "accrued cost {} reached the cap of {}; tearing down",
        cloudpulse_core::pricing::usd(view.accrued_usd),
        cloudpulse_core::pricing::usd(cap)
    );
    let data = json!({ "accrued_usd": view.accrued_usd, "cost_cap_usd": cap });
    Some((
        Source::CostCap,
        format!("cost_cap:{id}:{cap}"),
        message,
        data,
    ))
}

/// "45 s", "12 min 5 s", "3 h 2 min".
pub fn duration_text(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{s} s"),
    }
}

/// The guard's loop: one look at once (a restarted portal acts on what it
/// missed before anything else), then one every `tick`.
pub async fn guard(engine: Engine, db: Db, tick: Duration) {
    let mut every = tokio::time::interval(tick);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        check(&engine, &db, Utc::now(), tick).await;
    }
}

/// The live deployments among `ids` that look unused: live for at least the
/// idle window, polled throughout it, and whose load balancer counted no
/// more requests in it than the portal's own probes sent through it (with
/// one metric period of slack: a probe and the datum that counts it may
/// fall on either side of the window's edge). The window is the newest one
/// CloudWatch has published: its request counts arrive minutes after the
/// minute they count, so a window ending now would hold none of them.
pub async fn idle(
    db: &Db,
    config: &TelemetryConfig,
    live: &[DeploymentId],
    hourly_usd: &HashMap<DeploymentId, f64>,
    now: DateTime<Utc>,
) -> DbResult<HashMap<DeploymentId, Idle>> {
    let mut out = HashMap::new();
    if live.is_empty() {
        return Ok(out);
    }
    let window = TimeDelta::from_std(config.idle_after).unwrap_or(TimeDelta::hours(1));
    // ELB's metrics take up to about three minutes; the portal reads them
    // once a minute.
    let lag = TimeDelta::from_std(config.minutes(5)).unwrap_or(TimeDelta::minutes(5));
    let slack = i64::from(config.metric_period.max(1));
    let ids = serde_json::to_string(live).unwrap_or_else(|_| "[]".into());
    let rows = db::traffic_in_window(
        db,
        &ids,
        metrics::LB_REQUESTS,
        now.timestamp(),
        window.num_seconds(),
        (window + lag).num_seconds(),
        slack,
    )
    .await?;
    for (id, from, requests, probes, first_poll) in rows {
        let id = DeploymentId::from(id);
        // Watched for the whole window (polls start within a period of it).
        let watched = first_poll.is_some_and(|at| at <= from + slack);
        if watched && requests.unwrap_or(0.0) <= probes as f64 {
            out.insert(
                id.clone(),
                Idle {
                    seconds: config.idle_after.as_secs(),
                    daily_usd: hourly_usd.get(&id).map(|h| h * 24.0),
                },
            );
        }
    }
    Ok(out)
}

/// A budget after a change: what [`cloudpulse_engine::Store::set_budget`]
/// stores, and the words for the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct NewBudget {
    /// 0 for no TTL.
    pub ttl_minutes: u32,
    pub expires_at: Option<DateTime<Utc>>,
    pub cost_cap_usd: Option<f64>,
    pub message: String,
}

/// Checks `change` against the deployment as it stands (`accrued_usd` is
/// `None` when its region has no prices) and says what it becomes. Every
/// problem is reported, per field; a deadline already past or a cap
/// already reached is refused rather than acted on by surprise.
pub fn apply(
    row: &BudgetRow,
    change: &BudgetChange,
    config: &TelemetryConfig,
    accrued_usd: Option<f64>,
    now: DateTime<Utc>,
) -> Result<NewBudget, FieldErrors> {
    let mut errors = FieldErrors::new();
    if change.ttl_minutes.is_none()
        && change.cost_cap_usd.is_none()
        && change.extend_minutes.is_none()
    {
        errors.insert(
            "form".into(),
            "nothing to change: send ttl_minutes, cost_cap_usd or extend_minutes".into(),
        );
        return Err(errors);
    }
    let mut ttl = row.ttl_minutes.unwrap_or(0);
    if let Some(asked) = change.ttl_minutes {
        ttl = asked.unwrap_or(0);
        if let Some(message) = check_ttl_minutes(ttl) {
            errors.insert("ttl_minutes".into(), message);
        }
    }
    if let Some(more) = change.extend_minutes {
        if more == 0 || more > MAX_TTL_MINUTES {
            errors.insert(
                "extend_minutes".into(),
                format!("between 1 and {MAX_TTL_MINUTES} minutes"),
            );
        } else if ttl == 0 {
            errors.insert(
                "extend_minutes".into(),
                "there is no TTL to extend; set ttl_minutes instead".into(),
            );
        } else {
            ttl = ttl.saturating_add(more).min(MAX_TTL_MINUTES);
        }
    }
    let mut cap = row.cost_cap_usd;
    if let Some(asked) = change.cost_cap_usd {
        cap = asked;
        if let Some(message) = asked.and_then(check_cost_cap) {
            errors.insert("cost_cap_usd".into(), message);
        }
    }
    let expires_at = (ttl > 0).then(|| {
        row.created_at + TimeDelta::from_std(config.minutes(ttl)).unwrap_or(TimeDelta::MAX)
    });
    if let Some(at) = expires_at.filter(|at| *at <= now) {
        let lived = (now - row.created_at).to_std().unwrap_or_default();
        let needed = (lived.as_secs_f64() / config.time_scale.max(1e-9) / 60.0).ceil() as u32 + 1;
        errors.entry("ttl_minutes".into()).or_insert(format!(
            "a TTL of {} from its creation ended at {} UTC; to keep it, give at least {needed} minutes",
            cloudpulse_core::text::minutes(ttl),
            at.format("%H:%M:%S")
        ));
    }
    if change.cost_cap_usd.is_some_and(|c| c.is_some()) && !errors.contains_key("cost_cap_usd") {
        match (cap, accrued_usd) {
            (Some(_), None) => {
                errors.insert(
                    "cost_cap_usd".into(),
                    "its region has no prices, so a cap could not be checked; use a TTL".into(),
                );
            }
            (Some(cap), Some(accrued)) if cap <= accrued => {
                errors.insert(
                    "cost_cap_usd".into(),
                    format!(
                        "it has accrued {} already; set a cap above that, or none",
                        cloudpulse_core::pricing::usd(accrued)
                    ),
                );
            }
            _ => {}
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut parts = Vec::new();
    if change.ttl_minutes.is_some() || change.extend_minutes.is_some() {
        parts.push(match expires_at {
            Some(at) => {
                let verb = if change.extend_minutes.is_some() {
                    format!("TTL extended to {}", cloudpulse_core::text::minutes(ttl))
                } else {
                    format!("TTL set to {}", cloudpulse_core::text::minutes(ttl))
                };
                format!(
                    "{verb}; tears down at {} UTC",
                    at.format("%Y-%m-%d %H:%M:%S")
                )
            }
            None => "TTL turned off".to_string(),
        });
    }
    if change.cost_cap_usd.is_some() {
        parts.push(match cap {
            Some(cap) => format!("cost cap set to {}", cloudpulse_core::pricing::usd(cap)),
            None => "cost cap turned off".to_string(),
        });
    }
    Ok(NewBudget {
        ttl_minutes: ttl,
        expires_at,
        cost_cap_usd: cap,
        message: parts.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(ttl: Option<u32>, cap: Option<f64>) -> BudgetRow {
        let created_at = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        BudgetRow {
            name: "demo".into(),
            status: DeploymentStatus::Live,
            created_at,
            ttl_minutes: ttl,
            expires_at: ttl.map(|m| created_at + TimeDelta::minutes(i64::from(m))),
            cost_cap_usd: cap,
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn extend_moves_the_deadline_from_creation() {
        let row = standing(Some(240), None);
        let change = BudgetChange {
            extend_minutes: Some(60),
            ..Default::default()
        };
        let config = TelemetryConfig::default();
        let new = apply(
            &row,
            &change,
            &config,
            Some(0.5),
            at("2026-12-01T13:50:00Z"),
        )
        .unwrap();
        assert_eq!(new.ttl_minutes, 300);
        assert_eq!(new.expires_at, Some(at("2026-12-01T15:00:00Z")));
        assert!(new.message.contains("extended to 5 h"), "{}", new.message);
        // On a sandbox clock ten times faster, five hours last thirty minutes.
        let fast = TelemetryConfig {
            time_scale: 0.1,
            ..Default::default()
        };
        let new = apply(&row, &change, &fast, None, at("2026-12-01T10:10:00Z")).unwrap();
        assert_eq!(new.expires_at, Some(at("2026-12-01T10:30:00Z")));
    }

    #[test]
    fn a_deadline_already_past_or_a_cap_already_reached_is_refused() {
        let row = standing(Some(240), Some(5.0));
        let config = TelemetryConfig::default();
        let change = BudgetChange {
            ttl_minutes: Some(Some(60)),
            cost_cap_usd: Some(Some(0.25)),
            ..Default::default()
        };
        let errors = apply(
            &row,
            &change,
            &config,
            Some(0.5),
            at("2026-12-01T12:00:00Z"),
        )
        .unwrap_err();
        assert!(
            errors["ttl_minutes"].contains("at least 121 minutes"),
            "{errors:?}"
        );
        assert!(
            errors["cost_cap_usd"].contains("accrued $0.50"),
            "{errors:?}"
        );
        // Nothing to extend, nothing asked, no prices.
        let bare = standing(None, None);
        let extend = BudgetChange {
            extend_minutes: Some(30),
            ..Default::default()
        };
        let errors = apply(
            &bare,
            &extend,
            &config,
            Some(0.0),
            at("2026-12-01T11:00:00Z"),
        )
        .unwrap_err();
        assert!(errors["extend_minutes"].contains("no TTL"), "{errors:?}");
        assert!(apply(
            &bare,
            &BudgetChange::default(),
            &config,
            None,
            at("2026-12-01T11:00:00Z")
        )
        .is_err());
        let cap = BudgetChange {
            cost_cap_usd: Some(Some(1.0)),
            ..Default::default()
        };
        let errors = apply(&bare, &cap, &config, None, at("2026-12-01T11:00:00Z")).unwrap_err();
        assert!(errors["cost_cap_usd"].contains("no prices"), "{errors:?}");
    }

    #[test]
    fn null_turns_either_off() {
        let row = standing(Some(240), Some(5.0));
        let change: BudgetChange =
            serde_json::from_str(r#"{"ttl_minutes": null, "cost_cap_usd": null}"#).unwrap();
        let new = apply(
            &row,
            &change,
            &TelemetryConfig::default(),
            Some(1.0),
            at("2026-12-01T11:00:00Z"),
        )
        .unwrap();
        assert_eq!(
            (new.ttl_minutes, new.expires_at, new.cost_cap_usd),
            (0, None, None)
        );
        assert_eq!(new.message, "TTL turned off; cost cap turned off");
        // Absent fields are kept.
        let keep: BudgetChange = serde_json::from_str(r#"{"extend_minutes": 15}"#).unwrap();
        let new = apply(
            &row,
            &keep,
            &TelemetryConfig::default(),
            Some(1.0),
            at("2026-12-01T11:00:00Z"),
        )
        .unwrap();
        assert_eq!((new.ttl_minutes, new.cost_cap_usd), (255, Some(5.0)));
        assert!(serde_json::from_str::<BudgetChange>(r#"{"ttl": 5}"#).is_err());
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration_text(45), "45 s");
        assert_eq!(duration_text(725), "12 min 5 s");
        assert_eq!(duration_text(3 * 3600 + 120), "3 h 2 min");
        assert_eq!(duration_text(-3), "0 s");
    }
}
