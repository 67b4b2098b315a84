//! Knowing which cloud the portal talks to, and whether it can reach it.
//!
//! A background task asks STS who we are on a fixed cadence. The pages and
//! `/healthz` read the last answer and never wait on AWS, so an unreachable
//! endpoint makes the portal say so rather than hang or stop.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::Utc;
use cloudpulse_app::model::{CloudMode, CloudStatus, Reachability};
use tokio::sync::{watch, Mutex};

/// How long one check may take before the cloud counts as unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Clone)]
pub struct CloudProbe {
    sts: aws_sdk_sts::Client,
    status: watch::Sender<CloudStatus>,
    // One check at a time: a burst of "check again" clicks makes one call.
    in_flight: Arc<Mutex<()>>,
}

impl CloudProbe {
    pub fn new(mode: CloudMode, sdk: &SdkConfig) -> Self {
        let config = aws_sdk_sts::config::Builder::from(sdk)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_timeout(CHECK_TIMEOUT)
                    .build(),
            )
            .build();
        let initial = CloudStatus {
            mode,
            region: sdk
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "no region set".into()),
            endpoint: sdk.endpoint_url().map(str::to_string),
            account: None,
            reachable: Reachability::Unknown,
            checked_at: None,
        };
        CloudProbe {
            sts: aws_sdk_sts::Client::from_conf(config),
            status: watch::channel(initial).0,
            in_flight: Arc::new(Mutex::new(())),
        }
    }

    pub fn current(&self) -> CloudStatus {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<CloudStatus> {
        self.status.subscribe()
    }

    /// Asks the cloud now and records the answer.
    pub async fn check(&self) -> CloudStatus {
        let _one_at_a_time = self.in_flight.lock().await;
        let mut next = self.current();
        let answer = tokio::time::timeout(
            CHECK_TIMEOUT + Duration::from_secs(2),
            self.sts.get_caller_identity().send(),
        )
        .await;
        match answer {
            Ok(Ok(identity)) => {
                next.account = identity.account().map(str::to_string);
                next.reachable = Reachability::Reachable;
            }
            Ok(Err(error)) => {
                next.reachable = Reachability::Unreachable {
                    reason: explain(&next, &error),
                };
            }
            Err(_) => {
                next.reachable = Reachability::Unreachable {
                    reason: format!(
                        "no answer from {} within {} s",
                        endpoint_words(&next),
                        CHECK_TIMEOUT.as_secs()
                    ),
                };
            }
        }
        next.checked_at = Some(Utc::now());
        if next.reachable != self.status.borrow().reachable {
            match &next.reachable {
                Reachability::Unreachable { reason } => {
                    tracing::warn!(%reason, "cannot reach the cloud")
                }
                _ => tracing::info!(label = %next.label(), "cloud reachable"),
            }
        }
        self.status.send_replace(next.clone());
        next
    }

    /// Checks now and then every `every` until the process ends.
    pub fn spawn(self, every: Duration) {
        tokio::spawn(async move {
            loop {
                self.check().await;
                tokio::time::sleep(every).await;
            }
        });
    }
}

/// The root cause's own words, e.g. "Connection refused (os error 111)".
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

fn endpoint_words(status: &CloudStatus) -> String {
    status
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("AWS in {}", status.region))
}

/// One sentence a person can act on, with the SDK's own words after it.
fn explain(
    status: &CloudStatus,
    error: &aws_sdk_sts::error::SdkError<
        aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityError,
    >,
) -> String {
    use aws_sdk_sts::error::SdkError;
    let detail = DisplayErrorContext(error).to_string();
    match error {
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            format!(
                "cannot connect to {}: {}",
                endpoint_words(status),
                innermost(error)
            )
        }
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
            if detail.contains("credentials") =>
        {
            format!(
                "no usable AWS credentials (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY): {detail}"
            )
        }
        SdkError::ServiceError(service) => {
            use aws_sdk_sts::error::ProvideErrorMetadata;
            let inner = service.err();
            format!(
                "{} refused the credentials: {}: {}",
                endpoint_words(status),
                inner.code().unwrap_or("error"),
                inner.message().unwrap_or("no message")
            )
        }
        _ => format!("cannot reach {}: {detail}", endpoint_words(status)),
    }
}
