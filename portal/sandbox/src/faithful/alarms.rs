//! Alarm history, which moto cannot serve at all.
//!
//! moto stores alarms and their state but answers `DescribeAlarmHistory`
//! with HTTP 500 (not implemented), which the SDK even retries. Here every
//! alarm change that passes the gateway is recorded as CloudWatch records
//! it: `PutMetricAlarm` and `DeleteAlarms` as a `ConfigurationUpdate`
//! ("Alarm "x" created/updated/deleted", with the alarm's settings as JSON),
//! a `SetAlarmState` that changes the state as a `StateUpdate` ("Alarm
//! updated from OK to ALARM", with old and new state as JSON). The data
//! plane's alarm evaluator changes states through
//! [`Faithful::set_alarm_state`] and reports the actions it executed with
//! [`Faithful::note_alarm_action`], so its transitions are in the same
//! history. `DescribeAlarmHistory` is then answered from the record, with
//! its filters and paging. A new alarm starts in `INSUFFICIENT_DATA`
//! ("Unchecked: Initial alarm creation") and an updated one keeps its
//! state, as on AWS; moto starts and resets both to `OK`.

use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
use aws_sdk_cloudwatch::types::{MetricAlarm, StateValue};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::wire::{self, Params, Service};
use super::{After, AfterStep, Faithful, FaithfulError, Verdict};

/// CloudWatch's state reason for an alarm no evaluation has reached yet.
const INITIAL_REASON: &str = "Unchecked: Initial alarm creation";

/// What kind of change a history item records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HistoryItemType {
    ConfigurationUpdate,
    StateUpdate,
    Action,
}

impl HistoryItemType {
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryItemType::ConfigurationUpdate => "ConfigurationUpdate",
            HistoryItemType::StateUpdate => "StateUpdate",
            HistoryItemType::Action => "Action",
        }
    }

    fn parse(text: &str) -> Option<HistoryItemType> {
        [
            HistoryItemType::ConfigurationUpdate,
            HistoryItemType::StateUpdate,
            HistoryItemType::Action,
        ]
        .into_iter()
        .find(|t| t.as_str() == text)
    }
}

/// One entry of an alarm's history, as `DescribeAlarmHistory` lists it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlarmHistoryItem {
    pub alarm_name: String,
    pub item_type: HistoryItemType,
    /// E.g. `Alarm updated from OK to ALARM`.
    pub summary: String,
    /// JSON, in CloudWatch's layout for the item type.
    pub data: String,
    pub timestamp: DateTime<Utc>,
}

/// Every recorded item, oldest first.
#[derive(Debug, Default)]
pub(super) struct History {
    items: Vec<AlarmHistoryItem>,
}

impl History {
    /// Every item, for the record on disk (see [`super::record`]).
    pub(super) fn items(&self) -> &[AlarmHistoryItem] {
        &self.items
    }

    /// Takes the record's items back after a restart.
    pub(super) fn restore(&mut self, items: Vec<AlarmHistoryItem>) {
        self.items = items;
    }

    fn push(
        &mut self,
        alarm: &str,
        item_type: HistoryItemType,
        summary: String,
        data: Value,
    ) -> AlarmHistoryItem {
        let item = AlarmHistoryItem {
            alarm_name: alarm.to_string(),
            item_type,
            summary,
            data: data.to_string(),
            timestamp: Utc::now(),
        };
        self.items.push(item.clone());
        item
    }

    /// Records a state change; nothing if the state stays the same.
    fn state_change(
        &mut self,
        alarm: &str,
        old: (&str, &str),
        new: (&str, &str),
        reason_data: Option<&str>,
    ) -> Option<AlarmHistoryItem> {
        if old.0 == new.0 {
            return None;
        }
        let mut new_state = json!({ "stateValue": new.0, "stateReason": new.1 });
        if let Some(data) = reason_data {
            // CloudWatch nests the reason data as JSON when it is JSON.
            new_state["stateReasonData"] =
                serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_string()));
        }
        let data = json!({
            "version": "1.0",
            "oldState": { "stateValue": old.0, "stateReason": old.1 },
            "newState": new_state,
        });
        Some(self.push(
            alarm,
            HistoryItemType::StateUpdate,
            format!("Alarm updated from {} to {}", old.0, new.0),
            data,
        ))
    }

    fn select(&self, filter: &Filter) -> Vec<AlarmHistoryItem> {
        let mut items: Vec<AlarmHistoryItem> = self
            .items
            .iter()
            .filter(|i| filter.alarm.as_deref().is_none_or(|a| i.alarm_name == a))
            .filter(|i| filter.item_type.is_none_or(|t| i.item_type == t))
            .filter(|i| filter.start.is_none_or(|s| i.timestamp >= s))
            .filter(|i| filter.end.is_none_or(|e| i.timestamp <= e))
            .cloned()
            .collect();
        if !filter.ascending {
            items.reverse();
        }
        items
    }
}

/// What `DescribeAlarmHistory` asks for.
#[derive(Debug, Default)]
struct Filter {
    alarm: Option<String>,
    item_type: Option<HistoryItemType>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    ascending: bool,
}

/// What to record once moto has made a forwarded alarm change.
pub(super) enum Pending {
    Configured {
        name: String,
        original: Option<Box<MetricAlarm>>,
    },
    State {
        name: String,
        old: (String, String),
        new: (String, String),
        reason_data: Option<String>,
    },
    Deleted(Vec<MetricAlarm>),
}

/// An alarm's settings in CloudWatch's history layout (camelCase keys,
/// absent settings left out).
fn alarm_json(alarm: &MetricAlarm) -> Value {
    let mut out = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            out.insert(key.to_string(), value);
        }
    };
    let text = |s: Option<&str>| s.map(|s| Value::String(s.to_string()));
    put("alarmName", text(alarm.alarm_name()));
    put("alarmArn", text(alarm.alarm_arn()));
    put("alarmDescription", text(alarm.alarm_description()));
    put("namespace", text(alarm.namespace()));
    put("metricName", text(alarm.metric_name()));
    put(
        "dimensions",
        Some(Value::Array(
            alarm
                .dimensions()
                .iter()
                .map(|d| json!({ "name": d.name(), "value": d.value() }))
                .collect(),
        )),
    );
    put("statistic", text(alarm.statistic().map(|s| s.as_str())));
    put("extendedStatistic", text(alarm.extended_statistic()));
    put("period", alarm.period().map(Value::from));
    put(
        "evaluationPeriods",
        alarm.evaluation_periods().map(Value::from),
    );
    put(
        "datapointsToAlarm",
        alarm.datapoints_to_alarm().map(Value::from),
    );
    put("threshold", alarm.threshold().map(Value::from));
    put(
        "comparisonOperator",
        text(alarm.comparison_operator().map(|c| c.as_str())),
    );
    put("treatMissingData", text(alarm.treat_missing_data()));
    put("actionsEnabled", alarm.actions_enabled().map(Value::from));
    put("alarmActions", Some(json!(alarm.alarm_actions())));
    put("okActions", Some(json!(alarm.ok_actions())));
    put(
        "insufficientDataActions",
        Some(json!(alarm.insufficient_data_actions())),
    );
    Value::Object(out)
}

fn state_of(alarm: &MetricAlarm) -> (String, String) {
    (
        alarm
            .state_value()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        alarm.state_reason().unwrap_or_default().to_string(),
    )
}

fn history_xml(item: &AlarmHistoryItem) -> String {
    format!(
        "<member>{}<AlarmType>MetricAlarm</AlarmType>{}{}{}{}</member>",
        wire::element("AlarmName", &item.alarm_name),
        wire::element("Timestamp", &wire::timestamp(item.timestamp)),
        wire::element("HistoryItemType", item.item_type.as_str()),
        wire::element("HistorySummary", &item.summary),
        wire::element("HistoryData", &item.data),
    )
}

fn date(text: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text?)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

impl Faithful {
    /// Sets an alarm's state in moto, as `SetAlarmState` does, and records
    /// the transition; `None` if the alarm was already in `state`.
    pub async fn set_alarm_state(
        &self,
        alarm: &str,
        state: StateValue,
        reason: &str,
        reason_data: Option<&str>,
    ) -> Result<Option<AlarmHistoryItem>, FaithfulError> {
        let _held = self.inner.alarm_changes.lock().await;
        let old = self.describe_alarm(alarm).await?.ok_or_else(|| {
            FaithfulError::refused("ResourceNotFound", format!("Unknown alarm: {alarm}"))
        })?;
        self.inner
            .cloudwatch
            .set_alarm_state()
            .alarm_name(alarm)
            .state_value(state.clone())
            .state_reason(reason)
            .set_state_reason_data(reason_data.map(str::to_string))
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(refusal) => FaithfulError::refused(
                    refusal.code().unwrap_or("InternalFailure"),
                    refusal.message().unwrap_or_default(),
                ),
                None => FaithfulError::moto(e),
            })?;
        let (old_state, old_reason) = state_of(&old);
        let item = self.history().state_change(
            alarm,
            (&old_state, &old_reason),
            (state.as_str(), reason),
            reason_data,
        );
        self.save();
        Ok(item)
    }

    /// Records that the alarm's evaluator executed (or failed to execute)
    /// one of its actions, as CloudWatch's `Action` history items do.
    pub fn note_alarm_action(
        &self,
        alarm: &str,
        action: &str,
        outcome: Result<(), String>,
    ) -> AlarmHistoryItem {
        let (summary, data) = match outcome {
            Ok(()) => (
                format!("Successfully executed action {action}"),
                json!({ "actionState": "Succeeded", "notificationResource": action }),
            ),
            Err(error) => (
                format!("Failed to execute action {action}. Received error: \"{error}\""),
                json!({ "actionState": "Failed", "notificationResource": action, "error": error }),
            ),
        };
        let item = self
            .history()
            .push(alarm, HistoryItemType::Action, summary, data);
        self.save();
        item
    }

    /// Every recorded item (of `alarm`, if given), newest first.
    pub fn alarm_history(&self, alarm: Option<&str>) -> Vec<AlarmHistoryItem> {
        self.history().select(&Filter {
            alarm: alarm.map(str::to_string),
            ..Filter::default()
        })
    }

    pub(super) async fn before_cloudwatch(
        &self,
        action: &str,
        params: &Params,
    ) -> Result<Verdict, FaithfulError> {
        match action {
            "DescribeAlarmHistory" => Ok(Verdict::Answer(self.describe_alarm_history(params))),
            "PutMetricAlarm" => {
                let Some(name) = params.get("AlarmName") else {
                    return Ok(Verdict::pass());
                };
                let held = self.inner.alarm_changes.clone().lock_owned().await;
                let original = self.describe_alarm(name).await?.map(Box::new);
                Ok(self.alarm_then(
                    held,
                    Pending::Configured {
                        name: name.to_string(),
                        original,
                    },
                ))
            }
            "SetAlarmState" => {
                let (Some(name), Some(state)) = (params.get("AlarmName"), params.get("StateValue"))
                else {
                    return Ok(Verdict::pass());
                };
                let held = self.inner.alarm_changes.clone().lock_owned().await;
                let Some(alarm) = self.describe_alarm(name).await? else {
                    // moto refuses an unknown alarm itself.
                    return Ok(Verdict::pass());
                };
                let reason = params.get("StateReason").unwrap_or_default();
                Ok(self.alarm_then(
                    held,
                    Pending::State {
                        name: name.to_string(),
                        old: state_of(&alarm),
                        new: (state.to_string(), reason.to_string()),
                        reason_data: params.get("StateReasonData").map(str::to_string),
                    },
                ))
            }
            "DeleteAlarms" => {
                let names = params.list("AlarmNames");
                if names.is_empty() {
                    return Ok(Verdict::pass());
                }
                let held = self.inner.alarm_changes.clone().lock_owned().await;
                let mut alarms = Vec::new();
                for name in names {
                    alarms.extend(self.describe_alarm(name).await?);
                }
                Ok(self.alarm_then(held, Pending::Deleted(alarms)))
            }
            _ => Ok(Verdict::pass()),
        }
    }

    fn alarm_then(&self, held: tokio::sync::OwnedMutexGuard<()>, pending: Pending) -> Verdict {
        Verdict::Forward {
            after: Some(After {
                step: AfterStep::Alarm(pending),
                _held: held,
            }),
        }
    }

    pub(super) async fn after_alarm(&self, pending: &Pending) -> Result<(), FaithfulError> {
        match pending {
            Pending::Configured { name, original } => {
                let Some(mut current) = self.describe_alarm(name).await? else {
                    return Ok(());
                };
                if let Some(original) = original.as_deref() {
                    // An update leaves the state as it was on AWS; moto
                    // resets it to OK.
                    let (state, reason) = state_of(original);
                    if current.state_value() != original.state_value() && !state.is_empty() {
                        self.inner
                            .cloudwatch
                            .set_alarm_state()
                            .alarm_name(name)
                            .state_value(StateValue::from(state.as_str()))
                            .state_reason(reason)
                            .send()
                            .await
                            .map_err(FaithfulError::moto)?;
                        if let Some(now) = self.describe_alarm(name).await? {
                            current = now;
                        }
                    }
                }
                if original.is_none() {
                    // CloudWatch starts a new alarm in INSUFFICIENT_DATA
                    // until its first evaluation; moto starts it OK. Not a
                    // transition: nothing in the history but the creation.
                    self.inner
                        .cloudwatch
                        .set_alarm_state()
                        .alarm_name(name)
                        .state_value(StateValue::InsufficientData)
                        .state_reason(INITIAL_REASON)
                        .send()
                        .await
                        .map_err(FaithfulError::moto)?;
                    if let Some(now) = self.describe_alarm(name).await? {
                        current = now;
                    }
                }
                let (summary, data) = match original {
                    None => (
                        format!("Alarm \"{name}\" created"),
                        json!({ "version": "1.0", "type": "Create", "createdAlarm": alarm_json(&current) }),
                    ),
                    Some(original) => (
                        format!("Alarm \"{name}\" updated"),
                        json!({
                            "version": "1.0",
                            "type": "Update",
                            "updatedAlarm": alarm_json(&current),
                            "originalAlarm": alarm_json(original),
                        }),
                    ),
                };
                self.history()
                    .push(name, HistoryItemType::ConfigurationUpdate, summary, data);
            }
            Pending::State {
                name,
                old,
                new,
                reason_data,
            } => {
                self.history().state_change(
                    name,
                    (&old.0, &old.1),
                    (&new.0, &new.1),
                    reason_data.as_deref(),
                );
            }
            Pending::Deleted(alarms) => {
                let mut history = self.history();
                for alarm in alarms {
                    let name = alarm.alarm_name().unwrap_or_default();
                    history.push(
                        name,
                        HistoryItemType::ConfigurationUpdate,
                        format!("Alarm \"{name}\" deleted"),
                        json!({ "version": "1.0", "type": "Delete", "deletedAlarm": alarm_json(alarm) }),
                    );
                }
            }
        }
        Ok(())
    }

    fn describe_alarm_history(&self, params: &Params) -> axum::response::Response {
        let types = params.list("AlarmTypes");
        let item_type = params.get("HistoryItemType");
        let parsed_type = item_type.and_then(HistoryItemType::parse);
        // Composite alarms are not modelled, and neither is an item type
        // CloudWatch has but nothing here records: both select nothing.
        let nothing = (!types.is_empty() && !types.contains(&"MetricAlarm"))
            || (item_type.is_some() && parsed_type.is_none());
        let items = if nothing {
            Vec::new()
        } else {
            self.history().select(&Filter {
                alarm: params.get("AlarmName").map(str::to_string),
                item_type: parsed_type,
                start: date(params.get("StartDate")),
                end: date(params.get("EndDate")),
                ascending: params.get("ScanBy") == Some("TimestampAscending"),
            })
        };
        let max =
            usize::try_from(params.int("MaxRecords").unwrap_or(100).clamp(1, 100)).unwrap_or(100);
        let start = wire::token_start(params.get("NextToken")).min(items.len());
        let page = &items[start..(start + max).min(items.len())];
        let members: String = page.iter().map(history_xml).collect();
        let mut result = format!("<AlarmHistoryItems>{members}</AlarmHistoryItems>");
        if let Some(token) = wire::next_token(start, page.len(), items.len()) {
            result.push_str(&wire::element("NextToken", &token));
        }
        wire::success(Service::CloudWatch, "DescribeAlarmHistory", Some(&result))
    }

    async fn describe_alarm(&self, name: &str) -> Result<Option<MetricAlarm>, FaithfulError> {
        let out = self
            .inner
            .cloudwatch
            .describe_alarms()
            .alarm_names(name)
            .send()
            .await
            .map_err(FaithfulError::moto)?;
        Ok(out
            .metric_alarms()
            .iter()
            .find(|a| a.alarm_name() == Some(name))
            .cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_change_is_recorded_once_with_both_states() {
        let mut history = History::default();
        let item = history
            .state_change(
                "cpu-high",
                ("OK", "fine"),
                ("ALARM", "Threshold Crossed"),
                Some("{\"version\":\"1.0\"}"),
            )
            .unwrap();
        assert_eq!(item.summary, "Alarm updated from OK to ALARM");
        let data: Value = serde_json::from_str(&item.data).unwrap();
        assert_eq!(data["oldState"]["stateValue"], "OK");
        assert_eq!(data["newState"]["stateReason"], "Threshold Crossed");
        assert_eq!(data["newState"]["stateReasonData"]["version"], "1.0");
        assert!(history
            .state_change("cpu-high", ("ALARM", "x"), ("ALARM", "y"), None)
            .is_none());
    }

    #[test]
    fn selection_filters_and_orders() {
        let mut history = History::default();
        history.push(
            "a",
            HistoryItemType::ConfigurationUpdate,
            "1".into(),
            json!({}),
        );
        history.state_change("a", ("OK", ""), ("ALARM", ""), None);
        history.push(
            "b",
            HistoryItemType::ConfigurationUpdate,
            "3".into(),
            json!({}),
        );
        let newest_first = history.select(&Filter::default());
        assert_eq!(newest_first[0].summary, "3");
        let only_a = history.select(&Filter {
            alarm: Some("a".into()),
            ascending: true,
            ..Filter::default()
        });
        assert_eq!(only_a.len(), 2);
        assert_eq!(only_a[0].summary, "1");
        let states = history.select(&Filter {
            item_type: Some(HistoryItemType::StateUpdate),
            ..Filter::default()
        });
        assert_eq!(states.len(), 1);
        let future = history.select(&Filter {
            start: Some(Utc::now() + chrono::Duration::hours(1)),
            ..Filter::default()
        });
        assert!(future.is_empty());
    }
}
