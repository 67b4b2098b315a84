//! Step errors, split into what is worth retrying and what needs a person.

use std::time::Duration;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_smithy_types::error::display::DisplayErrorContext;

/// Why a step failed, with the AWS code and message kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    pub retryable: bool,
    pub code: String,
    pub message: String,
    pub hint: Option<String>,
    pub request_id: Option<String>,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for StepError {}

pub type StepResult<T> = Result<T, StepError>;

impl StepError {
    pub fn fatal(code: impl Into<String>, message: impl Into<String>) -> Self {
        let code = code.into();
        StepError {
            retryable: false,
            hint: hint_for(&code, ""),
            code,
            message: message.into(),
            request_id: None,
        }
    }

    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        StepError {
            retryable: true,
            ..Self::fatal(code, message)
        }
    }

    /// Classifies any AWS SDK error.
    pub fn from_sdk<E, R>(error: aws_sdk_ec2::error::SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + HttpStatus,
    {
        use aws_sdk_ec2::error::SdkError;
        match &error {
            SdkError::ServiceError(service) => {
                let err = service.err();
                let meta = err.meta();
                let code = meta
                    .code()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("Http{}", service.raw().status_code()));
                let message = meta.message().map(str::to_string).unwrap_or_else(|| {
                    format!("HTTP {} with no error details", service.raw().status_code())
                });
                let request_id =
                    aws_sdk_ec2::operation::RequestId::request_id(meta).map(str::to_string);
                let retryable = is_retryable(&code, &message);
                StepError {
                    retryable,
                    hint: hint_for(&code, &message),
                    code,
                    message,
                    request_id,
                }
            }
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => {
                StepError::retryable("NetworkError", DisplayErrorContext(&error).to_string())
            }
            _ => StepError::fatal("SdkError", DisplayErrorContext(&error).to_string()),
        }
    }
}

/// The HTTP status of a raw response, for errors that carry no code.
pub trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Lets `?` turn any SDK error into a classified step error.
pub trait SdkResultExt<T> {
    fn step(self) -> StepResult<T>;
}

impl<T, E, R> SdkResultExt<T> for Result<T, aws_sdk_ec2::error::SdkError<E, R>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    fn step(self) -> StepResult<T> {
        self.map_err(StepError::from_sdk)
    }
}

/// Errors that go away by themselves: throttling, AWS's own hiccups,
/// eventual consistency right after a create, dependencies still releasing.
pub fn is_retryable(code: &str, message: &str) -> bool {
    const RETRYABLE: &[&str] = &[
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "SlowDown",
        "ServiceUnavailable",
        "Unavailable",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "DependencyViolation",
        "ResourceInUse",
        "ScalingActivityInProgress",
        "IncorrectState",
        "InvalidIPAddress.InUse",
        "OperationAborted",
    ];
    if RETRYABLE.contains(&code) {
        return true;
    }
    // Right after a create, other calls may not see the resource yet.
    if code.ends_with(".NotFound") && code.starts_with("Invalid") {
        return true;
    }
    // A fresh instance profile is invisible to EC2 for a while (seconds to
    // about two minutes): EC2 says so as `InvalidParameterValue`, Auto
    // Scaling, checking the launch template, as `ValidationError`.
    let message = message.to_ascii_lowercase();
    match code {
        "InvalidParameterValue" => message.contains("instance profile"),
        "ValidationError" => message.contains("invalid iam instance profile"),
        _ => false,
    }
}

/// Retryable errors that mean AWS has not finished something yet (an
/// interface still releasing, a resource not yet visible, a profile not yet
/// propagated), as opposed to AWS pushing back (throttling, its own 5xx).
/// The first kind is over at a moment the step cannot know, so it is looked
/// at again at the waits' steady pace; only push-back backs off further.
pub fn is_waiting(code: &str, message: &str) -> bool {
    const WAITING: &[&str] = &[
        "DependencyViolation",
        "ResourceInUse",
        "ScalingActivityInProgress",
        "IncorrectState",
        "InvalidIPAddress.InUse",
        "AuthFailure",
    ];
    let profile = message.to_ascii_lowercase().contains("instance profile");
    WAITING.contains(&code)
        || (code.starts_with("Invalid") && code.ends_with(".NotFound"))
        || (profile && matches!(code, "InvalidParameterValue" | "ValidationError"))
}

/// How long a step sleeps before trying again: the back-off `delay` (which
/// doubles after each try), but never more than `poll` for an error that
/// only waits on AWS (see [`is_waiting`]).
pub fn retry_pause(error: &StepError, delay: Duration, poll: Duration) -> Duration {
    if is_waiting(&error.code, &error.message) {
        delay.min(poll)
    } else {
        delay
    }
}

/// What a person can do about a fatal error.
pub fn hint_for(code: &str, message: &str) -> Option<String> {
    let hint = match code {
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => {
            return Some(match denied_action(message) {
                Some(action) => format!(
                    "the credentials lack {action}, which the operator policy grants ({}); attach both of its documents (policy/operator-policy.json and policy/operator-iam-policy.json, see docs/aws.md) to this identity",
                    policy_file(action)
                ),
                None => "the credentials lack a permission; attach the operator policy (policy/operator-policy.json and policy/operator-iam-policy.json, see docs/aws.md) to this identity".into(),
            });
        }
        "AddressLimitExceeded" => {
            "the region's Elastic IP quota is used up; release unused addresses or raise the quota in Service Quotas (EC2, EC2-VPC Elastic IPs)"
        }
        "VpcLimitExceeded" => "the region's VPC quota is used up; delete unused VPCs or raise the quota",
        "NatGatewayLimitExceeded" => "the NAT gateway quota per AZ is used up; use nat=single or raise the quota",
        "TooManyLoadBalancers" => "the load balancer quota is used up; delete unused ALBs or raise the quota",
        "VcpuLimitExceeded" | "InstanceLimitExceeded" => {
            "the running on-demand vCPU quota is too low; lower max or choose a smaller instance type"
        }
        "InvalidClientTokenId" | "UnrecognizedClientException" | "ExpiredToken" | "ExpiredTokenException" => {
            "the AWS credentials are invalid or expired; refresh them (aws sso login, or new keys)"
        }
        "OptInRequired" => "the account is not subscribed to this service or region; enable it in the console",
        "Unsupported" => "the instance type or feature is not offered in this AZ; choose another instance type",
        "DependencyViolation" => {
            "something AWS is still releasing holds this resource (a deleted load balancer's or NAT gateway's network interfaces linger for minutes); the step retries until it is free"
        }
        "ValidationError" | "InvalidParameterValue" if message.to_ascii_lowercase().contains("instance profile") => {
            "the new instance profile has not reached EC2 yet (IAM takes seconds to about two minutes); the step retries until it has"
        }
        _ if message.contains("timed out") => "the step ran past its deadline; check the AWS console for the resource's state, then retry",
        _ => return None,
    };
    Some(hint.to_string())
}

/// The action a denial names: IAM's messages say "… is not authorized to
/// perform: ec2:CreateVpc on resource: …" (S3's often say only "Access
/// Denied").
fn denied_action(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("to perform: ")?;
    let action = rest
        .split_whitespace()
        .next()?
        .trim_end_matches([',', '.', ';']);
    let (service, name) = action.split_once(':')?;
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    (word(service) && word(name)).then_some(action)
}

/// Which of the operator policy's two documents grants `action`.
fn policy_file(action: &str) -> &'static str {
    if action.starts_with("iam:") {
        "policy/operator-iam-policy.json"
    } else {
        "policy/operator-policy.json"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_on_aws_is_looked_at_at_the_waits_pace_and_push_back_backs_off() {
        let poll = Duration::from_secs(5);
        let late = Duration::from_secs(30);
        let error = |code: &str, message: &str| StepError::retryable(code, message);
        for (code, message) in [
            (
                "DependencyViolation",
                "resource sg-1 has a dependent object",
            ),
            ("InvalidIPAddress.InUse", "Address eipalloc-1 is in use"),
            (
                "InvalidSubnetID.NotFound",
                "The subnet ID 'subnet-1' does not exist",
            ),
            ("ValidationError", "Invalid IAM Instance Profile name"),
            (
                "ResourceInUse",
                "Target group is currently in use by a listener",
            ),
        ] {
            assert_eq!(
                retry_pause(&error(code, message), late, poll),
                poll,
                "{code} waits on AWS: look again within the poll"
            );
        }
        for code in [
            "Throttling",
            "RequestLimitExceeded",
            "SlowDown",
            "InternalError",
        ] {
            assert_eq!(
                retry_pause(&error(code, "slow down"), late, poll),
                late,
                "{code} is push-back: the full back-off"
            );
        }
        assert_eq!(
            retry_pause(
                &error("DependencyViolation", "x"),
                Duration::from_secs(1),
                poll
            ),
            Duration::from_secs(1),
            "an early retry stays early"
        );
    }

    #[test]
    fn classification() {
        assert!(is_retryable("Throttling", ""));
        assert!(is_retryable("RequestLimitExceeded", ""));
        assert!(is_retryable("DependencyViolation", "has dependent object"));
        assert!(is_retryable("InvalidNatGatewayID.NotFound", ""));
        assert!(is_retryable(
            "InvalidParameterValue",
            "Invalid IAM Instance Profile name"
        ));
        assert!(!is_retryable(
            "InvalidParameterValue",
            "Value (x) for parameter cidrBlock is invalid"
        ));
        assert!(is_retryable(
            "ValidationError",
            "You must use a valid fully-formed launch template. Value (arn:aws:iam::1:instance-profile/p) \
             for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN"
        ));
        assert!(!is_retryable(
            "ValidationError",
            "Max bound, 2, must be greater than or equal to min bound, 3"
        ));
        assert!(!is_retryable("UnauthorizedOperation", ""));
        assert!(!is_retryable("AddressLimitExceeded", ""));
    }

    #[test]
    fn a_denial_names_the_action_it_lacks() {
        let hint = hint_for(
            "UnauthorizedOperation",
            "You are not authorized to perform this operation. User: arn:aws:iam::1:user/op is \
             not authorized to perform: ec2:CreateVpc on resource: arn:aws:ec2:us-east-1:1:vpc/* \
             because no identity-based policy allows the ec2:CreateVpc action.",
        )
        .unwrap();
        assert!(
            hint.starts_with("the credentials lack ec2:CreateVpc,"),
            "{hint}"
        );
        assert!(hint.contains("(policy/operator-policy.json)"), "{hint}");
        let hint = hint_for(
            "AccessDenied",
            "User: arn:aws:iam::1:user/op is not authorized to perform: iam:CreateRole",
        )
        .unwrap();
        assert!(hint.contains("lack iam:CreateRole, which the operator policy grants (policy/operator-iam-policy.json)"), "{hint}");
        let hint = hint_for("AccessDenied", "Access Denied").unwrap();
        assert!(
            hint.starts_with("the credentials lack a permission;"),
            "{hint}"
        );
        assert!(hint.contains("policy/operator-policy.json"), "{hint}");
    }

    #[test]
    fn fatal_errors_carry_a_hint() {
        let err = StepError::fatal(
            "AddressLimitExceeded",
            "The maximum number of addresses has been reached.",
        );
        assert!(err.hint.as_deref().unwrap().contains("Elastic IP quota"));
        assert!(err
            .to_string()
            .starts_with("AddressLimitExceeded: The maximum"));
    }
}
