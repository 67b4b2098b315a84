//! This instance's Auto Scaling group as the dashboard and `/api/instances`
//! show it, read from AWS and cached briefly.
//!
//! One `DescribeAutoScalingGroups` call gives every instance (id, lifecycle
//! state, health, availability zone) and the capacity, so no EC2 call is
//! needed. The original asked EC2 for the instance state; here the state is
//! the ASG lifecycle state mapped onto EC2's names (`InService` → `running`,
//! see [`state_from_lifecycle`]), which keeps clients comparing with
//! `"running"` working.
//!
//! Answers (failures included) are reused for a short TTL, and only one
//! request at a time refreshes them, so a load test costs at most one AWS
//! call per TTL. Every call is bounded by a timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::Client as AutoScalingClient;
use aws_smithy_types::date_time::Format;
use serde::Serialize;
use tokio::sync::Mutex;

const SCALING_ACTIVITIES: i32 = 10;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupInstance {
    pub instance_id: String,
    pub state: String,
    pub health_status: String,
    pub availability_zone: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Capacity {
    pub min: i32,
    pub max: i32,
    pub desired: i32,
    pub actual: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupView {
    pub instances: Vec<GroupInstance>,
    /// `None` when the group does not exist.
    pub capacity: Option<Capacity>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalingActivity {
    pub start_time: String,
    pub description: String,
    pub status: String,
}

/// Why the group could not be read. What AWS said (an `AccessDenied`
/// names the instance role's ARN and the account) is logged where the call
/// fails and kept here for the log only: the text shown to whoever opens the
/// dashboard or `/api/instances` is generic.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum GroupError {
    #[error("Failed to describe instances: AWS refused or failed the request (the instance's log has the detail)")]
    Describe(String),
    #[error("Failed to describe scaling activities: AWS refused or failed the request (the instance's log has the detail)")]
    Activities(String),
    #[error("AWS did not answer within {0:?}")]
    Timeout(Duration),
}

/// EC2-style instance state from an ASG lifecycle state.
pub fn state_from_lifecycle(lifecycle: &str) -> String {
    match lifecycle {
        "Pending" | "Pending:Wait" | "Pending:Proceed" => "pending".into(),
        "InService" | "Standby" | "EnteringStandby" | "Detaching" | "Detached"
        | "Warmed:Running" => "running".into(),
        "Terminating" | "Terminating:Wait" | "Terminating:Proceed" => "shutting-down".into(),
        "Terminated" | "Warmed:Terminated" => "terminated".into(),
        "Warmed:Stopped" => "stopped".into(),
        "" => "unknown".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// A value shared by all requests and refreshed at most once per TTL.
struct Cache<T> {
    ttl: Duration,
    slot: Mutex<Option<(Instant, Result<T, GroupError>)>>,
}

impl<T: Clone> Cache<T> {
    fn new(ttl: Duration) -> Self {
        Cache {
            ttl,
            slot: Mutex::new(None),
        }
    }

    async fn get<F, Fut>(&self, fetch: F) -> Result<T, GroupError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, GroupError>>,
    {
        // Holding the lock while fetching makes concurrent callers wait for
        // this one fetch instead of each starting their own.
        let mut slot = self.slot.lock().await;
        if let Some((at, value)) = &*slot {
            if at.elapsed() < self.ttl {
                return value.clone();
            }
        }
        let value = fetch().await;
        *slot = Some((Instant::now(), value.clone()));
        value
    }
}

#[derive(Clone)]
pub struct Group {
    client: AutoScalingClient,
    name: String,
    timeout: Duration,
    view: Arc<Cache<GroupView>>,
    activities: Arc<Cache<Vec<ScalingActivity>>>,
}

impl Group {
    pub fn new(client: AutoScalingClient, name: String, timeout: Duration, ttl: Duration) -> Self {
        Group {
            client,
            name,
            timeout,
            view: Arc::new(Cache::new(ttl)),
            activities: Arc::new(Cache::new(ttl)),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn view(&self) -> Result<GroupView, GroupError> {
        self.view
            .get(|| bounded(self.timeout, self.describe()))
            .await
    }

    pub async fn activities(&self) -> Result<Vec<ScalingActivity>, GroupError> {
        self.activities
            .get(|| bounded(self.timeout, self.describe_activities()))
            .await
    }

    async fn describe(&self) -> Result<GroupView, GroupError> {
        let output = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.name)
            .send()
            .await
            .map_err(|e| {
                let detail = sdk_message(&e);
                tracing::warn!(asg = %self.name, error = %detail, "DescribeAutoScalingGroups failed");
                GroupError::Describe(detail)
            })?;
        let Some(group) = output
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(self.name.as_str()))
        else {
            return Ok(GroupView {
                instances: Vec::new(),
                capacity: None,
            });
        };
        let instances: Vec<GroupInstance> = group
            .instances()
            .iter()
            .map(|instance| GroupInstance {
                instance_id: instance.instance_id().unwrap_or("unknown").to_string(),
                state: state_from_lifecycle(
                    instance
                        .lifecycle_state()
                        .map(|s| s.as_str())
                        .unwrap_or_default(),
                ),
                health_status: instance
                    .health_status()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("Unknown")
                    .to_string(),
                availability_zone: instance
                    .availability_zone()
                    .unwrap_or("unknown")
                    .to_string(),
            })
            .collect();
        let capacity = Capacity {
            min: group.min_size().unwrap_or(0),
            max: group.max_size().unwrap_or(0),
            desired: group.desired_capacity().unwrap_or(0),
            actual: instances.len() as i32,
        };
        Ok(GroupView {
            instances,
            capacity: Some(capacity),
        })
    }

    async fn describe_activities(&self) -> Result<Vec<ScalingActivity>, GroupError> {
        let output = self
            .client
            .describe_scaling_activities()
            .auto_scaling_group_name(&self.name)
            .max_records(SCALING_ACTIVITIES)
            .send()
            .await
            .map_err(|e| {
                let detail = sdk_message(&e);
                tracing::warn!(asg = %self.name, error = %detail, "DescribeScalingActivities failed");
                GroupError::Activities(detail)
            })?;
        Ok(output
            .activities()
            .iter()
            .take(SCALING_ACTIVITIES as usize)
            .map(|activity| ScalingActivity {
                start_time: activity
                    .start_time()
                    .and_then(|t| t.fmt(Format::DateTime).ok())
                    .unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
                description: activity.description().unwrap_or_default().to_string(),
                status: activity
                    .status_code()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|| "Unknown".into()),
            })
            .collect())
    }
}

async fn bounded<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, GroupError>>,
) -> Result<T, GroupError> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or(Err(GroupError::Timeout(limit)))
}

/// The SDK error with its code and message, or its chain of sources for
/// transport failures (whose `Display` alone says only "dispatch failure").
pub fn sdk_message<E, R>(error: &aws_sdk_autoscaling::error::SdkError<E, R>) -> String
where
    E: aws_sdk_autoscaling::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_autoscaling::error::ProvideErrorMetadata;
    if let (Some(code), message) = (error.code(), error.message()) {
        return format!("{code}: {}", message.unwrap_or_default());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_maps_to_ec2_state_names() {
        assert_eq!(state_from_lifecycle("InService"), "running");
        assert_eq!(state_from_lifecycle("Pending:Wait"), "pending");
        assert_eq!(state_from_lifecycle("Terminating"), "shutting-down");
        assert_eq!(state_from_lifecycle("Terminated"), "terminated");
        assert_eq!(state_from_lifecycle(""), "unknown");
        assert_eq!(state_from_lifecycle("Something:New"), "something:new");
    }

    #[test]
    fn what_aws_said_is_not_in_the_text_shown() {
        let detail =
            "AccessDenied: User: arn:aws:sts::123456789012:assumed-role/cloudpulse-1-ec2-role/i-1 \
                      is not authorized to perform: autoscaling:DescribeAutoScalingGroups";
        for error in [
            GroupError::Describe(detail.into()),
            GroupError::Activities(detail.into()),
        ] {
            let shown = error.to_string();
            assert!(shown.starts_with("Failed to describe"), "{shown}");
            assert!(
                !shown.contains("arn:") && !shown.contains("123456789012"),
                "{shown}"
            );
        }
    }

    #[tokio::test]
    async fn cache_reuses_answers_and_failures_within_ttl() {
        let cache = Cache::new(Duration::from_secs(60));
        let calls = std::sync::atomic::AtomicU32::new(0);
        let fetch = || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err::<u32, _>(GroupError::Timeout(Duration::from_secs(1)))
        };
        assert!(cache.get(fetch).await.is_err());
        assert!(cache.get(fetch).await.is_err());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        let fresh = Cache::new(Duration::ZERO);
        assert_eq!(fresh.get(|| async { Ok(1) }).await, Ok(1));
        assert_eq!(fresh.get(|| async { Ok(2) }).await, Ok(2));
    }
}
