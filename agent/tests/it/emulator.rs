//! Against the AWS emulator (moto) over the real SDK: events in = events read back with
//! GetLogEvents, in order, redacted, with 30-day retention on the group.

use std::io::Write;
use std::time::Duration;

use crate::support::{Agent, Moto, Options, logs_client as client};

#[tokio::test(flavor = "multi_thread")]
async fn events_in_equal_events_read_back_in_order() {
    let moto = Moto::start();
    let mut agent = Agent::start(&Options::new(moto.endpoint.clone()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut expected = Vec::new();
    let stdin = agent.child.stdin.as_mut().unwrap();
    for i in 0..300 {
        // Times go backwards in steps: the agent must sort each batch.
        let line = format!(
            r#"{{"timestamp":{},"level":"info","seq":{i},"msg":"hello"}}"#,
            now - 300 + i
        );
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        expected.push(line);
    }
    stdin.write_all(b"plain text line, not JSON\n").unwrap();
    stdin.write_all(b"bytes \xff\xfe invalid utf-8\n").unwrap();
    stdin
        .write_all(br#"{"timestamp":1,"password":"hunter2","msg":"too old but redacted first"}"#)
        .unwrap();
    stdin.write_all(b"\n").unwrap();
    stdin
        .write_all(br#"{"msg":"login","password":"hunter2","user":"bob"}"#)
        .unwrap();
    stdin.write_all(b"\n").unwrap();
    agent.close_stdin();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");

    let client = client(&moto.endpoint);
    let groups = client
        .describe_log_groups()
        .log_group_name_prefix("/test/agent")
        .send()
        .await
        .unwrap();
    let group = &groups.log_groups()[0];
    assert_eq!(group.log_group_name(), Some("/test/agent"));
    assert_eq!(group.retention_in_days(), Some(30));

    let streams = client
        .describe_log_streams()
        .log_group_name("/test/agent")
        .send()
        .await
        .unwrap();
    let names: Vec<_> = streams
        .log_streams()
        .iter()
        .filter_map(|s| s.log_stream_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names[0].starts_with("app/"),
        "default template {{container}}/{{task_id}}: {names:?}"
    );

    let mut messages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .get_log_events()
            .log_group_name("/test/agent")
            .log_stream_name(names[0])
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        let events = page.events();
        if events.is_empty() {
            break;
        }
        let mut last = i64::MIN;
        for event in events {
            assert!(event.timestamp().unwrap() >= last, "events out of order");
            last = event.timestamp().unwrap();
            messages.push(event.message().unwrap().to_owned());
        }
        if page.next_forward_token() == token.as_deref() {
            break;
        }
        token = page.next_forward_token().map(str::to_owned);
    }
    let json: Vec<&String> = messages.iter().filter(|m| m.contains("\"seq\"")).collect();
    assert_eq!(json.len(), 300);
    for (got, want) in json.iter().zip(&expected) {
        assert_eq!(*got, want, "original bytes must be kept");
    }
    assert!(messages.iter().any(|m| m == "plain text line, not JSON"));
    assert!(
        messages
            .iter()
            .any(|m| m == "bytes \u{fffd}\u{fffd} invalid utf-8")
    );
    assert!(
        messages
            .iter()
            .any(|m| m == r#"{"msg":"login","password":"[REDACTED]","user":"bob"}"#),
        "{messages:?}"
    );
    assert!(!messages.iter().any(|m| m.contains("hunter2")));
    assert!(
        !messages.iter().any(|m| m.contains("too old")),
        "an event from 1970 must not be sent"
    );
    assert_eq!(messages.len(), 303);
    assert!(
        logs.contains("\"reason\":\"too_old\""),
        "the too-old event is counted and logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn request_metrics_reach_cloudwatch_with_the_counts_and_latencies_of_the_traffic() {
    let moto = Moto::start();
    let mut options = Options::new(moto.endpoint.clone());
    options.metrics = format!(
        "[metrics]\nperiod_secs = 10\nnamespace = \"Test/Api\"\ndimensions = [\"Route\", \"Method\"]\n\
         static_dimensions = {{ Service = \"api\" }}\nendpoint = \"{}\"\nregion = \"us-east-1\"\n",
        moto.cloudwatch_endpoint
    );
    let mut agent = Agent::start(&options);
    let stdin = agent.child.stdin.as_mut().unwrap();
    let mut latency_sum = 0.0;
    for i in 0..110 {
        let (status, latency) = if i < 100 {
            (200, 1.0 + i as f64)
        } else {
            (503, 2_000.0)
        };
        latency_sum += latency;
        let line = format!(
            r#"{{"level":"info","target":"access","method":"GET","route":"/api/users/{{id}}","status":{status},"latency_ms":{latency},"request_id":"r{i}"}}"#
        );
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
    }
    agent.close_stdin();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");

    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
        .endpoint_url(&moto.cloudwatch_endpoint)
        .region(aws_sdk_cloudwatch::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    let cloudwatch = aws_sdk_cloudwatch::Client::from_conf(config);
    let now = std::time::SystemTime::now();
    let stats = |name: &'static str| {
        let cloudwatch = cloudwatch.clone();
        async move {
            use aws_sdk_cloudwatch::types::{Dimension, Statistic};
            let output = cloudwatch
                .get_metric_statistics()
                .namespace("Test/Api")
                .metric_name(name)
                .dimensions(Dimension::builder().name("Service").value("api").build())
                .dimensions(
                    Dimension::builder()
                        .name("Route")
                        .value("/api/users/{id}")
                        .build(),
                )
                .dimensions(Dimension::builder().name("Method").value("GET").build())
                .start_time(aws_sdk_cloudwatch::primitives::DateTime::from(
                    now - Duration::from_secs(600),
                ))
                .end_time(aws_sdk_cloudwatch::primitives::DateTime::from(
                    now + Duration::from_secs(600),
                ))
                .period(60)
                .statistics(Statistic::Sum)
                .statistics(Statistic::SampleCount)
                .statistics(Statistic::Minimum)
                .statistics(Statistic::Maximum)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GetMetricStatistics {name}: {e:?}"));
            let points = output.datapoints().to_vec();
            assert_eq!(points.len(), 1, "{name}: {points:?}");
            points[0].clone()
        }
    };
    let requests = stats("RequestCount").await;
    assert_eq!(requests.sum(), Some(110.0));
    let errors = stats("ErrorCount").await;
    assert_eq!(errors.sum(), Some(10.0));
    let latency = stats("Latency").await;
    assert_eq!(latency.sample_count(), Some(110.0));
    let sum = latency.sum().unwrap();
    assert!(
        (sum - latency_sum).abs() <= 0.005 * latency_sum,
        "latency sum {sum} vs {latency_sum}"
    );
    assert!((latency.minimum().unwrap() - 1.0).abs() < 0.01);
    assert!((latency.maximum().unwrap() - 2_000.0).abs() < 0.01);
    let heartbeat = cloudwatch
        .list_metrics()
        .namespace("Test/Api")
        .metric_name("Heartbeat")
        .send()
        .await
        .unwrap();
    assert!(
        !heartbeat.metrics().is_empty(),
        "the heartbeat is published"
    );
}
