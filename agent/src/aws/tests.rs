//! The shared AWS keys: validation, and the endpoint each combination resolves to (read off
//! the signed request by an interceptor that stops it before it is sent: no network).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudwatchlogs::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_cloudwatchlogs::config::{ConfigBag, Credentials, Intercept, RuntimeComponents};
use aws_sdk_cloudwatchlogs::error::BoxError;

use super::AwsKeys;

fn us_east_1() -> AwsKeys<'static> {
    AwsKeys {
        region: Some("us-east-1"),
        ..AwsKeys::default()
    }
}

#[test]
fn validate_accepts_the_defaults_and_a_full_role() {
    assert!(us_east_1().validate("sinks.x").is_empty());
    let keys = AwsKeys {
        role_arn: Some("arn:aws:iam::111122223333:role/central-logging"),
        external_id: Some("a1b2-c3d4:e5/f6"),
        session_name: Some("agent@task.1"),
        use_fips: Some(true),
        use_dualstack: Some(true),
        ..us_east_1()
    };
    assert_eq!(keys.validate("sinks.x"), Vec::<String>::new());
}

#[test]
fn validate_rejects_every_bad_role_key() {
    let keys = AwsKeys {
        role_arn: Some("arn:aws:iam::123:role/x"),
        external_id: Some("x"),
        session_name: Some("has space"),
        ..us_east_1()
    };
    let errors = keys.validate("sinks.cloudwatch_logs");
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with("sinks.cloudwatch_logs.role_arn: an IAM role ARN"));
    assert!(errors[1].starts_with("sinks.cloudwatch_logs.external_id: 2-1224 characters"));
    assert!(errors[2].starts_with("sinks.cloudwatch_logs.session_name: 2-64 characters"));

    let long = AwsKeys {
        role_arn: Some("arn:aws:iam::111122223333:role/x"),
        external_id: Some(&"e".repeat(1225)),
        session_name: Some(&"s".repeat(65)),
        ..us_east_1()
    }
    .validate("m");
    assert_eq!(long.len(), 2, "{long:#?}");
}

#[test]
fn validate_rejects_role_options_without_a_role_and_flags_with_an_endpoint() {
    let keys = AwsKeys {
        external_id: Some("ext-id"),
        session_name: Some("agent"),
        endpoint: Some("https://vpce-1.logs.us-east-1.vpce.amazonaws.com"),
        use_fips: Some(true),
        use_dualstack: Some(true),
        ..us_east_1()
    };
    let errors = keys.validate("metrics");
    assert_eq!(
        errors
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect::<Vec<_>>(),
        [
            "metrics.external_id",
            "metrics.session_name",
            "metrics.use_fips",
            "metrics.use_dualstack"
        ],
        "{errors:#?}"
    );
    let bad_url = AwsKeys {
        endpoint: Some("logs.example.com"),
        ..us_east_1()
    };
    assert_eq!(
        bad_url.validate("m"),
        ["m.endpoint: an http:// or https:// URL"]
    );
}

/// Records the URL of the first request and stops it before it is sent.
#[derive(Debug, Clone, Default)]
struct StopAndRecord(Arc<Mutex<Option<String>>>);

impl Intercept for StopAndRecord {
    fn name(&self) -> &'static str {
        "StopAndRecord"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        *self.0.lock().unwrap() = Some(context.request().uri().to_owned());
        Err("recorded, not sent".into())
    }
}

/// The host a CloudWatch Logs and a CloudWatch client built from `keys` call, with the
/// process environment ignored (no AWS_ENDPOINT_URL, no AWS_USE_FIPS_ENDPOINT from the host).
async fn resolved(keys: AwsKeys<'_>) -> (String, String) {
    let sdk = keys
        .loader(Duration::from_secs(1))
        .empty_test_environment()
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    let logs = StopAndRecord::default();
    let client = aws_sdk_cloudwatchlogs::Client::from_conf(
        aws_sdk_cloudwatchlogs::config::Builder::from(&sdk)
            .interceptor(logs.clone())
            .build(),
    );
    assert!(client.describe_log_groups().send().await.is_err());
    let metrics = StopAndRecord::default();
    let client = aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::config::Builder::from(&sdk)
            .interceptor(metrics.clone())
            .build(),
    );
    assert!(client.list_dashboards().send().await.is_err());
    let host = |seen: StopAndRecord| {
        let url = seen.0.lock().unwrap().clone().expect("a request was built");
        url.split('/').take(3).collect::<Vec<_>>().join("/")
    };
    (host(logs), host(metrics))
}

#[tokio::test]
async fn fips_and_dual_stack_resolve_to_aws_endpoints_and_an_endpoint_is_used_as_given() {
    let cases = [
        (
            (None, None),
            "https://logs.us-east-1.amazonaws.com",
            "https://monitoring.us-east-1.amazonaws.com",
        ),
        (
            (Some(true), None),
            "https://logs-fips.us-east-1.amazonaws.com",
            "https://monitoring-fips.us-east-1.amazonaws.com",
        ),
        (
            (None, Some(true)),
            "https://logs.us-east-1.api.aws",
            "https://monitoring.us-east-1.api.aws",
        ),
        (
            (Some(true), Some(true)),
            "https://logs-fips.us-east-1.api.aws",
            "https://monitoring-fips.us-east-1.api.aws",
        ),
    ];
    for ((use_fips, use_dualstack), logs, metrics) in cases {
        let keys = AwsKeys {
            use_fips,
            use_dualstack,
            ..us_east_1()
        };
        assert_eq!(
            resolved(keys).await,
            (logs.to_owned(), metrics.to_owned()),
            "{keys:?}"
        );
    }
    let vpce = "https://vpce-0a1b-c2d3.logs.us-east-1.vpce.amazonaws.com";
    let keys = AwsKeys {
        endpoint: Some(vpce),
        use_fips: Some(false),
        ..us_east_1()
    };
    assert_eq!(resolved(keys).await.0, vpce);
}
