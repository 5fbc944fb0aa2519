//! What FireLens and CloudWatch-agent users ask for (issue 16), black-box with the real
//! binary: filters, templated log group and stream names, and groups created as Terraform
//! would create them.

use std::time::Duration;

use crate::fake_cwl::FakeCwl;
use crate::support::{Agent, Options, eventually, logs_client};

#[tokio::test(flavor = "multi_thread")]
async fn filters_drop_keep_and_sample_and_count_what_they_drop() {
    let (fake, endpoint, _server) = FakeCwl::start().await;
    let mut options = Options::new(endpoint);
    options.extra = r#"
[[pipeline.filters]]
action = "drop"
field = "path"
regex = "^/health"
[[pipeline.filters]]
action = "sample"
levels = ["debug", "error"]
rate = 0.25
"#
    .into();
    let mut lines = Vec::new();
    for i in 0..40 {
        lines.push(format!(r#"{{"level":"debug","msg":"debug {i}"}}"#));
    }
    for i in 0..10 {
        lines.push(format!(
            r#"{{"level":"info","path":"/health","msg":"probe {i}"}}"#
        ));
        lines.push(format!(
            r#"{{"level":"info","path":"/api","msg":"api {i}"}}"#
        ));
        lines.push(format!(r#"{{"level":"error","msg":"error {i}"}}"#));
    }
    lines.push("a plain line /health".into());
    let mut agent = Agent::start(&options);
    agent.write_lines(&lines);
    // 10 of 40 debug lines, 10 api, 10 errors (never sampled), 1 plain.
    let expected = 10 + 10 + 10 + 1;
    assert!(
        eventually(Duration::from_secs(20), || async {
            fake.count() >= expected
        })
        .await,
        "{:?}",
        fake.messages()
    );
    let filtered = agent
        .metric(r#"agent_events_dropped_total{reason="filtered"}"#)
        .await;
    agent.close_stdin();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    let messages = fake.messages();
    assert_eq!(messages.len(), expected, "{messages:#?}");
    assert_eq!(filtered, Some((lines.len() - expected) as f64));
    let count = |needle: &str| messages.iter().filter(|m| m.contains(needle)).count();
    assert_eq!(count("\"debug "), 10);
    assert_eq!(count("probe"), 0);
    assert_eq!(count("api "), 10);
    assert_eq!(count("error "), 10);
    assert_eq!(count("a plain line"), 1, "not JSON: no field to match");
}

/// Every group under `/parity/`, with its retention and KMS key.
async fn groups(
    client: &aws_sdk_cloudwatchlogs::Client,
) -> Vec<(String, Option<i32>, Option<String>)> {
    let answer = client
        .describe_log_groups()
        .log_group_name_prefix("/parity/")
        .send()
        .await
        .unwrap();
    let mut groups: Vec<_> = answer
        .log_groups()
        .iter()
        .map(|g| {
            (
                g.log_group_name().unwrap_or_default().to_owned(),
                g.retention_in_days(),
                g.kms_key_id().map(str::to_owned),
            )
        })
        .collect();
    groups.sort();
    groups
}

async fn stream_events(
    client: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
) -> Vec<(String, String)> {
    // Empty until the agent has created the group.
    let Ok(streams) = client
        .describe_log_streams()
        .log_group_name(group)
        .send()
        .await
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for stream in streams.log_streams() {
        let name = stream.log_stream_name().unwrap_or_default();
        let events = client
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(name)
            .start_from_head(true)
            .send()
            .await
            .unwrap();
        for event in events.events() {
            out.push((
                name.to_owned(),
                event.message().unwrap_or_default().to_owned(),
            ));
        }
    }
    out.sort();
    out
}

const KMS_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/0f9e8d7c-6b5a-4321-8765-43210fedcba9";

#[tokio::test(flavor = "multi_thread")]
async fn templated_groups_are_created_with_retention_key_and_tags_and_capped() {
    let moto = crate::support::Moto::start();
    let mut options = Options::new(moto.endpoint.clone());
    options.log_group = "/parity/{field.service|shared}".into();
    options.log_stream = "{container}/{field.user|anon}".into();
    options.extra = format!(
        "retention_days = 14\nkms_key_id = \"{KMS_KEY}\"\ntags = {{ team = \"payments\", env = \"test\" }}\nmax_log_groups = 3\n"
    );
    let lines: Vec<String> = [
        r#"{"service":"billing","user":"u1","msg":"one"}"#,
        r#"{"service":"billing","user":"u2","msg":"two"}"#,
        r#"{"service":"search","msg":"three"}"#,
        "plain four",
        r#"{"service":"bad name!","user":"u1","msg":"five"}"#,
        r#"{"service":"late","msg":"six"}"#,
    ]
    .iter()
    .map(|l| (*l).to_owned())
    .collect();
    let mut agent = Agent::start(&options);
    agent.write_lines(&lines);
    let client = logs_client(&moto.endpoint);
    assert!(
        eventually(Duration::from_secs(20), || async {
            stream_events(&client, "/parity/shared").await.len() >= 3
        })
        .await
    );
    let rerouted = agent.metric("agent_events_rerouted_total").await;
    agent.close_stdin();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");

    let groups = groups(&client).await;
    let names: Vec<&str> = groups.iter().map(|g| g.0.as_str()).collect();
    // billing, search and shared (the plain line) reach the cap of 3: "bad name!" and
    // "late" go to the fallback, which is shared.
    assert_eq!(
        names,
        ["/parity/billing", "/parity/search", "/parity/shared"]
    );
    for (name, retention, key) in &groups {
        assert_eq!(
            *retention,
            Some(14),
            "{name}: every created group gets the retention"
        );
        assert_eq!(key.as_deref(), Some(KMS_KEY), "{name}");
    }
    let arn = "arn:aws:logs:us-east-1:123456789012:log-group:/parity/billing";
    let tags = client
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .unwrap();
    let tags = tags.tags().cloned().unwrap_or_default();
    assert_eq!(
        tags.get("team").map(String::as_str),
        Some("payments"),
        "{tags:?}"
    );
    assert_eq!(tags.get("env").map(String::as_str), Some("test"));

    let billing = stream_events(&client, "/parity/billing").await;
    let streams: Vec<&str> = billing.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(streams, ["app/u1", "app/u2"]);
    let shared = stream_events(&client, "/parity/shared").await;
    assert_eq!(shared.len(), 3, "{shared:?}");
    assert!(shared.iter().all(|(s, _)| s == "app/anon"), "{shared:?}");
    assert!(shared.iter().any(|(_, m)| m == "plain four"));
    assert!(
        shared.iter().any(|(_, m)| m.contains("five")),
        "over the cap: fallback"
    );
    assert!(
        shared.iter().any(|(_, m)| m.contains("six")),
        "over the cap: fallback"
    );
    assert_eq!(rerouted, Some(2.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn create_only_leaves_an_existing_groups_retention_alone() {
    let moto = crate::support::Moto::start();
    let client = logs_client(&moto.endpoint);
    for group in ["/parity/owned", "/parity/enforced"] {
        client
            .create_log_group()
            .log_group_name(group)
            .send()
            .await
            .unwrap();
        client
            .put_retention_policy()
            .log_group_name(group)
            .retention_in_days(365)
            .send()
            .await
            .unwrap();
    }
    for (group, policy) in [
        ("/parity/owned", "create-only"),
        ("/parity/enforced", "enforce"),
        ("/parity/new", "create-only"),
    ] {
        let mut options = Options::new(moto.endpoint.clone());
        options.log_group = group.into();
        options.extra = format!("retention_policy = \"{policy}\"\n");
        let mut agent = Agent::start(&options);
        agent.write_lines(&["hello".to_owned()]);
        agent.close_stdin();
        let (code, logs, _) =
            tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(30)))
                .await
                .unwrap();
        assert_eq!(code, Some(0), "{logs}");
    }
    let retention: Vec<(String, Option<i32>)> = groups(&client)
        .await
        .into_iter()
        .map(|(name, days, _)| (name, days))
        .collect();
    assert_eq!(
        retention,
        [
            ("/parity/enforced".to_owned(), Some(30)),
            ("/parity/new".to_owned(), Some(30)),
            ("/parity/owned".to_owned(), Some(365)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_log_group_carries_the_class_key_and_tags() {
    let (fake, endpoint, _server) = FakeCwl::start().await;
    let mut options = Options::new(endpoint);
    options.extra = format!(
        "log_group_class = \"INFREQUENT_ACCESS\"\nkms_key_id = \"{KMS_KEY}\"\ntags = {{ team = \"payments\" }}\n"
    );
    let mut agent = Agent::start(&options);
    agent.write_lines(&["hello".to_owned()]);
    agent.close_stdin();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    let requests = fake.recorded.lock().unwrap().create_group_requests.clone();
    let first = &requests[0];
    assert_eq!(first["logGroupName"], "/test/agent");
    assert_eq!(first["logGroupClass"], "INFREQUENT_ACCESS");
    assert_eq!(first["kmsKeyId"], KMS_KEY);
    assert_eq!(first["tags"]["team"], "payments");
}
