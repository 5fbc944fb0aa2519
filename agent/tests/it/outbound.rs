//! Outbound plumbing with the real binary: every client goes through `HTTPS_PROXY` /
//! `HTTP_PROXY` (http targets as absolute-form requests, https targets through CONNECT
//! tunnels) unless `NO_PROXY` names the host; and sinks with `role_arn` deliver into the
//! role's account with credentials from STS AssumeRole, refreshed before they expire.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatchlogs::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_cloudwatchlogs::config::{ConfigBag, Credentials, Intercept, RuntimeComponents};
use aws_sdk_cloudwatchlogs::error::BoxError;

use crate::outbound_proxy::{Forwarded, OutboundProxy};
use crate::support::{Agent, Moto, Options, eventually, free_port, logs_client_as as logs_client};

fn testing() -> Credentials {
    Credentials::new("testing", "testing", None, None, "test")
}

/// Events stored in the agent's test group, as `credentials`' account sees it.
async fn stored(moto: &Moto, credentials: Credentials) -> usize {
    let client = logs_client(&moto.endpoint, credentials);
    let Ok(streams) = client
        .describe_log_streams()
        .log_group_name("/test/agent")
        .send()
        .await
    else {
        return 0;
    };
    let mut count = 0;
    for stream in streams.log_streams() {
        let events = client
            .get_log_events()
            .log_group_name("/test/agent")
            .log_stream_name(stream.log_stream_name().unwrap())
            .start_from_head(true)
            .send()
            .await
            .unwrap();
        count += events.events().len();
    }
    count
}

/// Runs the agent over `lines` (one an error, for Sentry) until it exits by itself.
async fn run(options: &Options, lines: usize) -> String {
    let mut agent = Agent::start(options);
    let mut batch: Vec<String> = (0..lines)
        .map(|i| format!(r#"{{"level":"info","message":"line {i}"}}"#))
        .collect();
    batch.push(r#"{"level":"error","message":"boom","error_kind":"test"}"#.into());
    agent.write_lines(&batch);
    agent.close_stdin();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(40)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    logs
}

fn with_target<'a>(forwarded: &'a [Forwarded], needle: &str) -> Vec<&'a Forwarded> {
    forwarded
        .iter()
        .filter(|f| f.head.contains(needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_client_goes_through_the_proxy_and_no_proxy_bypasses_it() {
    let moto = Moto::start();
    let proxy = OutboundProxy::start().await;
    // The Sentry DSN is fetched from Secrets Manager; it names an https receiver on a
    // loopback port where nothing listens: the envelope's CONNECT is what is counted.
    let sentry = format!("127.0.0.1:{}", free_port());
    let secrets = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .endpoint_url(&moto.endpoint)
            .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
            .credentials_provider(testing())
            .build(),
    );
    secrets
        .create_secret()
        .name("agent/sentry")
        .secret_string(format!("https://key@{sentry}/42"))
        .send()
        .await
        .unwrap();
    let mut options = Options::new(moto.endpoint.clone());
    options.extra = format!(
        "[sinks.sentry]\ndsn_secret_id = \"agent/sentry\"\nsecrets_manager_endpoint = \"{}\"\n\
         secrets_manager_region = \"us-east-1\"\nmax_retries = 0\nflush_timeout_ms = 1000\n",
        moto.endpoint
    );
    options.metrics = format!(
        "[metrics]\nnamespace = \"Test/Proxy\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n",
        moto.cloudwatch_endpoint
    );
    options.env = vec![
        ("HTTPS_PROXY".into(), proxy.url.clone()),
        ("http_proxy".into(), proxy.url.clone()),
    ];
    let logs = run(&options, 20).await;

    let forwarded = proxy.forwarded();
    let puts = with_target(&forwarded, "x-amz-target: logs_20140328.putlogevents");
    let metrics = with_target(&forwarded, "/operation/putmetricdata http/1.1");
    let secret = with_target(&forwarded, "x-amz-target: secretsmanager.getsecretvalue");
    assert!(
        !puts.is_empty() && !metrics.is_empty() && secret.len() == 1,
        "PutLogEvents {}, PutMetricData {}, GetSecretValue {}: {forwarded:#?}\n{logs}",
        puts.len(),
        metrics.len(),
        secret.len()
    );
    // http targets: absolute-form requests to the proxy, never a tunnel.
    assert!(
        puts[0]
            .head
            .starts_with(&format!("post {}/ http/1.1", moto.endpoint))
    );
    assert_eq!(proxy.tunnels(), [sentry], "{logs}");
    assert_eq!(stored(&moto, testing()).await, 21);

    let before = (proxy.forwarded().len(), proxy.tunnels().len());
    options
        .env
        .push(("NO_PROXY".into(), "localhost,127.0.0.1".into()));
    let logs = run(&options, 20).await;
    assert_eq!(
        (proxy.forwarded().len(), proxy.tunnels().len()),
        before,
        "NO_PROXY=127.0.0.1: nothing through the proxy\n{logs}"
    );
    assert_eq!(stored(&moto, testing()).await, 42);
}

#[tokio::test(flavor = "multi_thread")]
async fn https_endpoints_are_reached_through_connect_tunnels() {
    let proxy = OutboundProxy::start().await;
    // Nothing listens there: the proxy answers the CONNECT with 403 and the sink retries.
    let logs = format!("127.0.0.1:{}", free_port());
    let mut options = Options::new(format!("https://{logs}"));
    options.env = vec![("https_proxy".into(), proxy.url.clone())];
    let mut agent = Agent::start(&options);
    agent.write_lines(&[r#"{"level":"info","message":"hello"}"#.into()]);
    let tunnelled = eventually(Duration::from_secs(15), || {
        let tunnels = proxy.tunnels();
        let logs = logs.clone();
        async move { tunnels.contains(&logs) }
    })
    .await;
    assert!(tunnelled, "tunnels: {:?}", proxy.tunnels());
    assert!(proxy.forwarded().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn sinks_with_role_arn_deliver_into_the_roles_account_as_the_assumed_role() {
    let moto = Moto::start();
    let proxy = OutboundProxy::start().await;
    let mut options = Options::new(moto.endpoint.clone());
    options.extra = "role_arn = \"arn:aws:iam::111111111111:role/central-logging\"\n\
                     external_id = \"ext-1234\"\nsession_name = \"agent-test\"\n"
        .into();
    options.metrics = format!(
        "[metrics]\nnamespace = \"Test/Role\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
         role_arn = \"arn:aws:iam::222222222222:role/central-metrics\"\n",
        moto.cloudwatch_endpoint
    );
    // STS is reached as the environment says (here the emulator), through the proxy, which
    // lets the test read who signed each call.
    options.env = vec![
        ("AWS_ENDPOINT_URL".into(), moto.endpoint.clone()),
        ("HTTP_PROXY".into(), proxy.url.clone()),
    ];
    let logs = run(&options, 30).await;

    let forwarded = proxy.forwarded();
    let by = |service: &str| -> Vec<&Forwarded> {
        forwarded
            .iter()
            .filter(|f| f.service() == Some(service))
            .collect()
    };
    let sts = by("sts");
    let assumed = |role: &str| {
        sts.iter()
            .find(|f| {
                f.body
                    .contains(&format!("RoleArn=arn%3Aaws%3Aiam%3A%3A{role}"))
            })
            .unwrap_or_else(|| panic!("AssumeRole {role}: {sts:#?}\n{logs}"))
    };
    let logging = assumed("111111111111%3Arole%2Fcentral-logging");
    let has = |call: &Forwarded, param: &str| call.body.split('&').any(|p| p == param);
    for param in [
        "Action=AssumeRole",
        "ExternalId=ext-1234",
        "RoleSessionName=agent-test",
    ] {
        assert!(has(logging, param), "{param}: {logging:?}");
    }
    let metrics = assumed("222222222222%3Arole%2Fcentral-metrics");
    assert!(has(metrics, "RoleSessionName=agent"), "{metrics:?}");
    // The task role (the default chain) signs AssumeRole; the assumed roles sign the rest.
    assert!(sts.iter().all(|f| f.access_key() == Some("testing")));
    for service in ["logs", "monitoring"] {
        let calls = by(service);
        assert!(!calls.is_empty(), "{service}: {forwarded:#?}");
        for call in calls {
            let key = call.access_key().unwrap();
            assert!(
                key != "testing" && key.starts_with("asia"),
                "{service}: {key}"
            );
        }
    }

    // The events are in the role's account (the emulator keys accounts by access key), not
    // in the task's.
    let sts_client = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::Config::builder()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .endpoint_url(&moto.endpoint)
            .region(aws_sdk_sts::config::Region::new("us-east-1"))
            .credentials_provider(testing())
            .build(),
    );
    let role = sts_client
        .assume_role()
        .role_arn("arn:aws:iam::111111111111:role/central-logging")
        .role_session_name("reader")
        .send()
        .await
        .unwrap();
    let creds = role.credentials().unwrap();
    let reader = Credentials::new(
        creds.access_key_id(),
        creds.secret_access_key(),
        Some(creds.session_token().to_owned()),
        None,
        "assumed",
    );
    assert_eq!(stored(&moto, reader).await, 31, "{logs}");
    assert_eq!(stored(&moto, testing()).await, 0);
}

/// A clock the test moves forward.
#[derive(Debug, Clone, Default)]
struct Clock(Arc<Mutex<Duration>>);

impl aws_smithy_async::time::TimeSource for Clock {
    fn now(&self) -> SystemTime {
        SystemTime::now() + *self.0.lock().unwrap()
    }
}

/// Records the access key that signed each request.
#[derive(Debug, Clone, Default)]
struct Signers(Arc<Mutex<Vec<String>>>);

impl Intercept for Signers {
    fn name(&self) -> &'static str {
        "Signers"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let head = Forwarded {
            head: context
                .request()
                .headers()
                .get("authorization")
                .unwrap_or_default()
                .to_lowercase(),
            body: String::new(),
        };
        let key = head.access_key().unwrap_or_default().to_owned();
        self.0.lock().unwrap().push(key);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn assumed_credentials_are_refreshed_before_they_expire() {
    let moto = Moto::start();
    let clock = Clock::default();
    let keys = agent::aws::AwsKeys {
        region: Some("us-east-1"),
        endpoint: Some(&moto.endpoint),
        ..agent::aws::AwsKeys::default()
    };
    let base = keys
        .loader(Duration::from_secs(5))
        .empty_test_environment()
        .credentials_provider(testing())
        .time_source(clock.clone())
        .load()
        .await;
    let role = agent::aws::AssumeRole {
        role_arn: "arn:aws:iam::111111111111:role/central-logging",
        external_id: None,
        session_name: None,
    };
    let config = agent::aws::assume_role(base.clone(), &base, role).await;
    let signers = Signers::default();
    let client = aws_sdk_cloudwatchlogs::Client::from_conf(
        aws_sdk_cloudwatchlogs::config::Builder::from(&config)
            .interceptor(signers.clone())
            .build(),
    );
    let session = Duration::from_secs(3600); // STS's default, which the emulator applies
    let refresh = agent::aws::REFRESH_BEFORE_EXPIRY;
    for at in [
        Duration::ZERO,
        session - refresh - Duration::from_secs(60),
        session - refresh / 3,
    ] {
        *clock.0.lock().unwrap() = at;
        client.describe_log_groups().send().await.unwrap();
    }
    let signers = signers.0.lock().unwrap().clone();
    assert_eq!(signers.len(), 3);
    assert!(signers[0].starts_with("asia"), "{signers:?}");
    assert_eq!(signers[0], signers[1], "cached while far from expiry");
    assert_ne!(
        signers[1], signers[2],
        "new credentials {refresh:?} before expiry"
    );
}
