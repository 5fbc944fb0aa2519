//! Which AWS call failures to retry, and how long to wait: one policy for every sink.

use std::time::Duration;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_cloudwatchlogs::config::http::HttpResponse;
use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};

use crate::metrics::RetryReason;

/// What to do with a failed call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Try again after a backoff.
    #[error("retryable failure ({})", .0.as_str())]
    Retry(RetryReason),
    /// The group or stream is missing: create it, then try again.
    #[error("the log group or stream is missing")]
    MissingResource,
    /// Will never succeed: count the events as dropped and log the code once.
    #[error("refused for good: {code}")]
    Permanent {
        /// The error code (or `http_<status>`), for the log and for log-once.
        code: Box<str>,
    },
}

impl Failure {
    /// Whether trying again (after creating what is missing) may succeed.
    pub fn is_retriable(&self) -> bool {
        !matches!(self, Self::Permanent { .. })
    }

    /// A short fixed label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Retry(reason) => reason.as_str(),
            Self::MissingResource => "resource_not_found",
            Self::Permanent { .. } => "permanent",
        }
    }
}

/// Classifies an SDK error. Retryable: throttling, 5xx, timeouts, connection errors.
pub fn classify<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> Failure {
    match error {
        SdkError::TimeoutError(_) => Failure::Retry(RetryReason::Timeout),
        SdkError::DispatchFailure(failure) => {
            if failure.is_timeout() {
                Failure::Retry(RetryReason::Timeout)
            } else if failure
                .as_connector_error()
                .is_some_and(|e| caused_by_credentials(e))
            {
                // No credentials to sign with: an assumed role STS refused (or the default
                // chain found none). The operator's to fix; retried like refused credentials.
                Failure::Retry(RetryReason::Auth)
            } else {
                Failure::Retry(RetryReason::Connection)
            }
        }
        // A response that could not be read (cut connection, garbled body): try again.
        SdkError::ResponseError(_) => Failure::Retry(RetryReason::ServerError),
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let status = service.raw().status().as_u16();
            classify_code(code, status)
        }
        SdkError::ConstructionFailure(_) => Failure::Permanent {
            code: "construction_failure".into(),
        },
        _ => Failure::Permanent {
            code: "unknown".into(),
        },
    }
}

/// Whether credentials could not be had (the SDK reports it as a dispatch failure).
fn caused_by_credentials(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = error.source();
    while let Some(error) = cause {
        if error.is::<CredentialsError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Classification by error code and HTTP status.
pub fn classify_code(code: &str, status: u16) -> Failure {
    match code {
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded" => Failure::Retry(RetryReason::Throttled),
        "ServiceUnavailableException"
        | "ServiceUnavailable"
        | "InternalFailure"
        | "InternalServerError" => Failure::Retry(RetryReason::ServerError),
        "ResourceNotFoundException" => Failure::MissingResource,
        // Credentials refused: during a rotation or an IAM change these clear up; dropping
        // the data (or deleting its disk records) for them would lose it.
        "AccessDeniedException"
        | "AccessDenied"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "IncompleteSignature"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch" => Failure::Retry(RetryReason::Auth),
        _ if status == 429 => Failure::Retry(RetryReason::Throttled),
        _ if status >= 500 => Failure::Retry(RetryReason::ServerError),
        _ if status == 401 || status == 403 => Failure::Retry(RetryReason::Auth),
        "" => Failure::Permanent {
            code: format!("http_{status}").into(),
        },
        code => Failure::Permanent { code: code.into() },
    }
}

/// Exponential backoff with full jitter: attempt n waits a random time in
/// [0, min(cap, base · 2^n)].
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// Starts at `base`, never waits more than `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9, |d| d.as_nanos() as u64)
            ^ (&base as *const Duration as u64);
        Self {
            base,
            cap,
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64*: plenty for jitter.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let random = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
        ceiling.mul_f64(fraction.max(0.1))
    }

    /// Attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        assert_eq!(
            classify_code("ThrottlingException", 400),
            Failure::Retry(RetryReason::Throttled)
        );
        assert_eq!(
            classify_code("", 429),
            Failure::Retry(RetryReason::Throttled)
        );
        assert_eq!(
            classify_code("ServiceUnavailableException", 503),
            Failure::Retry(RetryReason::ServerError)
        );
        assert_eq!(
            classify_code("", 502),
            Failure::Retry(RetryReason::ServerError)
        );
        assert_eq!(
            classify_code("ResourceNotFoundException", 400),
            Failure::MissingResource
        );
        assert_eq!(
            classify_code("InvalidParameterException", 400),
            Failure::Permanent {
                code: "InvalidParameterException".into()
            }
        );
        assert_eq!(
            classify_code("", 400),
            Failure::Permanent {
                code: "http_400".into()
            }
        );
        assert!(!classify_code("DataAlreadyAcceptedException", 400).is_retriable());
    }

    #[test]
    fn credentials_that_cannot_be_had_are_auth_failures_not_connection_ones() {
        use aws_sdk_cloudwatchlogs::config::http::HttpResponse;
        use aws_sdk_cloudwatchlogs::error::ConnectorError;
        use aws_sdk_cloudwatchlogs::operation::put_log_events::PutLogEventsError;
        let dispatch = |source: Box<dyn std::error::Error + Send + Sync>| {
            SdkError::<PutLogEventsError, HttpResponse>::dispatch_failure(ConnectorError::other(
                source, None,
            ))
        };
        let refused = CredentialsError::provider_error("AssumeRole: AccessDenied");
        assert_eq!(
            classify(&dispatch(Box::new(refused))),
            Failure::Retry(RetryReason::Auth)
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(
            classify(&dispatch(Box::new(reset))),
            Failure::Retry(RetryReason::Connection)
        );
    }

    #[test]
    fn refused_credentials_are_retried_not_dropped() {
        for code in [
            "AccessDeniedException",
            "ExpiredTokenException",
            "UnrecognizedClientException",
        ] {
            let failure = classify_code(code, 400);
            assert_eq!(failure, Failure::Retry(RetryReason::Auth), "{code}");
            assert!(failure.is_retriable());
            assert_eq!(failure.kind(), "auth");
        }
        assert_eq!(classify_code("", 403), Failure::Retry(RetryReason::Auth));
    }

    #[test]
    fn backoff_grows_with_jitter_and_respects_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..12).map(|_| backoff.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(delays[0] <= Duration::from_millis(100));
        assert!(
            delays[8..].iter().any(|d| *d > Duration::from_millis(400)),
            "{delays:?}"
        );
        assert_eq!(backoff.attempts(), 12);
    }

    #[tokio::test]
    async fn a_role_that_cannot_be_assumed_fails_the_call_as_a_retryable_auth_failure() {
        // STS (here the same closed loopback port as the service) cannot be reached.
        let keys = crate::aws::AwsKeys {
            endpoint: Some("http://127.0.0.1:1"),
            region: Some("us-east-1"),
            ..crate::aws::AwsKeys::default()
        };
        let base = keys
            .loader(Duration::from_secs(2))
            .empty_test_environment()
            .credentials_provider(aws_sdk_cloudwatchlogs::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await;
        let role = crate::aws::AssumeRole {
            role_arn: "arn:aws:iam::111122223333:role/central-logging",
            external_id: None,
            session_name: None,
        };
        let config = crate::aws::assume_role(base.clone(), &base, role).await;
        let error = aws_sdk_cloudwatchlogs::Client::new(&config)
            .describe_log_groups()
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            classify(&error),
            Failure::Retry(RetryReason::Auth),
            "{error:?}"
        );
    }
}
