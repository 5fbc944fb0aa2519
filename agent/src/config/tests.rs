//! Configuration parsing and validation cases.

use std::collections::HashMap;

use super::*;

const MINIMAL: &str = r#"
[sources.stdin]
[sinks.cloudwatch_logs]
log_group = "/ecs/api"
"#;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let config = Config::parse(MINIMAL, &env(&[])).unwrap();
    let cw = &config.sinks.cloudwatch_logs;
    assert_eq!(cw.retention_days, 30);
    assert_eq!(cw.log_stream, "{container}/{task_id}");
    assert_eq!(cw.batch_timeout_ms, 1000);
    assert_eq!(config.admin.address, "127.0.0.1:9880");
    assert_eq!(config.shutdown_grace_secs, 25);
    assert!(config.pipeline.redaction.enabled);
}

#[test]
fn the_shipped_example_is_valid() {
    let text = include_str!("../../agent.example.toml");
    let config = Config::parse(text, &env(&[("AGENT_LOG_GROUP", "/ecs/api")])).unwrap();
    assert_eq!(config.sinks.cloudwatch_logs.log_group, "/ecs/api");
}

#[test]
fn the_example_with_every_commented_table_enabled_is_valid() {
    // Every `# [table]` and `# key = value` line uncommented: a key documented there
    // but misspelt, misplaced or mistyped would fail here. Two documented pairs are
    // alternatives and cannot be on together: the Sentry DSN from Secrets Manager, and
    // OTLP timings alongside access-log timings.
    let text: String = include_str!("../../agent.example.toml")
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if !rest.contains("dsn_secret_id")
                    && (rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        })) =>
            {
                format!("{rest}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect::<String>()
        .replace(
            "request_timings = \"metrics\"",
            "request_timings = \"none\"",
        );
    assert!(text.contains("\n[disk_buffer]\n") && text.contains("\n[sources.http]\n"));
    let env = env(&[
        ("AGENT_LOG_GROUP", "/ecs/api"),
        ("SENTRY_DSN", "https://abc@o1.ingest.sentry.io/42"),
        ("APP_ENV", "prod"),
        ("APP_VERSION", "1.2.3"),
    ]);
    let config = Config::parse(&text, &env).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.disk_buffer.is_some() && config.sinks.sentry.is_some());
    assert!(config.sources.http.is_some() && config.sources.otlp.is_some());
}

#[test]
fn values_from_the_environment_never_appear_in_errors() {
    let secret = "https://f00dfeedcafe4242@o1.ingest.sentry.io/42";
    let vars = env(&[("SENTRY_DSN", secret), ("MEM", "not-a-number")]);
    // Unquoted: a TOML syntax error that quotes the line; and a type error on a value.
    for text in [
        "[sources.stdin]\n[sinks.cloudwatch_logs]\nlog_group = \"g\"\n[sinks.sentry]\ndsn = ${SENTRY_DSN}\n",
        "memory_limit_mib = \"${SENTRY_DSN}\"\n[sources.stdin]\n[sinks.cloudwatch_logs]\nlog_group = \"g\"\n",
    ] {
        let errors = Config::parse(text, &vars).unwrap_err().to_string();
        assert!(!errors.contains("f00dfeedcafe4242"), "{errors}");
        assert!(
            errors.contains("[value from the environment]") || errors.contains("line"),
            "{errors}"
        );
    }
}

#[test]
fn interpolation_with_defaults_and_errors() {
    let vars = env(&[("GROUP", "/ecs/x"), ("EMPTY", "")]);
    assert_eq!(
        interpolate("a=${GROUP} b=${NOPE:-d} c=$$ d=${EMPTY:-e}", &vars).unwrap(),
        "a=/ecs/x b=d c=$ d=e"
    );
    assert_eq!(
        interpolate("# ${NOT_SET}\n", &vars).unwrap(),
        "# ${NOT_SET}\n"
    );
    let errors = interpolate("x\ny=${MISSING}\nz=${bad name}", &vars).unwrap_err();
    assert_eq!(
        errors,
        [
            "line 2: environment variable MISSING is not set",
            "line 3: invalid variable name in ${bad name}"
        ]
    );
}

#[test]
fn validate_rejects_every_unknown_key_at_once() {
    let text = format!(
        "bogus = 1\n{MINIMAL}\nretention = 30\n[admin]\naddres = \"x\"\n[sinks.cloudwatch_logs.extra]\nk = 1\n"
    );
    let errors = Config::parse(&text, &env(&[])).unwrap_err().0;
    assert_eq!(
        errors,
        [
            "admin.addres: unknown key",
            "bogus: unknown key",
            "sinks.cloudwatch_logs.extra: unknown key",
            "sinks.cloudwatch_logs.retention: unknown key"
        ]
    );
}

#[test]
fn validate_rejects_bad_values_with_their_paths() {
    let text = r#"
memory_limit_mib = 1
log_level = "loud"
[admin]
address = "nowhere"
[sources.http]
address = "127.0.0.1:1"
max_body_bytes = 10
[sinks.cloudwatch_logs]
log_group = "bad group!"
retention_days = 31
max_in_flight = 0
"#;
    let errors = Config::parse(text, &env(&[])).unwrap_err().0;
    let paths: Vec<&str> = errors
        .iter()
        .map(|e| e.split(':').next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "memory_limit_mib",
            "log_level",
            "admin.address",
            "sources.http.max_body_bytes",
            "sinks.cloudwatch_logs.log_group",
            "sinks.cloudwatch_logs.retention_days",
            "sinks.cloudwatch_logs.max_in_flight",
            "sinks.cloudwatch_logs.max_event_bytes",
        ]
    );
}

#[test]
fn multiline_is_off_unless_its_table_is_present() {
    let config = Config::parse(MINIMAL, &env(&[])).unwrap();
    assert!(!config.pipeline.multiline.enabled);
    let on = format!("{MINIMAL}\n[pipeline.multiline]\n");
    let config = Config::parse(&on, &env(&[])).unwrap();
    let multiline = &config.pipeline.multiline;
    assert!(multiline.enabled);
    assert_eq!(multiline.rules.len(), 5, "every built-in rule by default");
    assert_eq!(
        (multiline.flush_ms, multiline.max_lines, multiline.max_bytes),
        (1000, 500, 256 * 1024)
    );
    let off = format!("{on}enabled = false\n");
    assert!(
        !Config::parse(&off, &env(&[]))
            .unwrap()
            .pipeline
            .multiline
            .enabled
    );
}

#[test]
fn validate_rejects_bad_multiline_keys_with_their_paths() {
    let text = format!(
        r#"{MINIMAL}
[pipeline.multiline]
rules = ["java", "cobol"]
flush_ms = 0
max_bytes = 12
colour = "red"
custom = [{{ name = "spring", start = "^(", continue = "^\\s", flavour = 1 }}]
"#
    );
    let errors = Config::parse(&text, &env(&[])).unwrap_err().0;
    let paths: Vec<&str> = errors
        .iter()
        .map(|e| e.split(':').next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "pipeline.multiline.colour",
            "pipeline.multiline.custom.0.flavour",
            "pipeline.multiline.flush_ms",
            "pipeline.multiline.max_bytes",
            "pipeline.multiline.rules[1]",
            "pipeline.multiline.custom[0].start",
        ],
        "{errors:#?}"
    );
}

#[test]
fn templated_names_and_created_groups_are_checked_key_by_key() {
    let text = r#"
[sources.stdin]
[sinks.cloudwatch_logs]
log_group = "/ecs/{family}/{nope}"
log_stream = "a:{container}"
retention_policy = "sometimes"
kms_key_id = "alias/logs"
log_group_class = "COLD"
tags = { "aws:reserved" = "x", ok = "fine" }
max_log_groups = 0
[metrics]
publish = "emf"
[[pipeline.filters]]
action = "drop"
"#;
    let errors = Config::parse(text, &env(&[])).unwrap_err().0;
    let all = errors.join("\n");
    for expected in [
        "pipeline.filters[0]: needs `levels` or `regex`",
        "sinks.cloudwatch_logs.log_group: unknown placeholder {nope}",
        "sinks.cloudwatch_logs.log_stream: `:` and `*`",
        "sinks.cloudwatch_logs.retention_policy",
        "sinks.cloudwatch_logs.log_group_class",
        "sinks.cloudwatch_logs.kms_key_id",
        "sinks.cloudwatch_logs.tags: key \"aws:reserved\"",
        "sinks.cloudwatch_logs.max_log_groups",
        "metrics.publish: \"emf\"",
    ] {
        assert!(all.contains(expected), "{expected} in:\n{all}");
    }
    assert_eq!(errors.len(), 9, "{all}");
    let good = r#"
[sources.stdin]
[sinks.cloudwatch_logs]
log_group = "/ecs/{family}/{field.service|shared}"
log_stream = "{container}/{field.user}"
retention_policy = "create-only"
kms_key_id = "arn:aws:kms:us-east-1:123456789012:key/abc"
log_group_class = "INFREQUENT_ACCESS"
tags = { team = "payments" }
"#;
    let config = Config::parse(good, &env(&[])).unwrap();
    assert_eq!(
        config.sinks.cloudwatch_logs.retention_policy,
        crate::sinks::cloudwatch_logs::RetentionPolicy::CreateOnly
    );
}

#[test]
fn validate_rejects_counting_requests_twice() {
    let both = format!("{MINIMAL}\n[sources.otlp]\n");
    let errors = Config::parse(&both, &env(&[])).unwrap_err().0;
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("sources.otlp.request_timings:"),
        "{errors:?}"
    );
    for fix in [
        "[sources.otlp]\nrequest_timings = \"none\"\n",
        "[sources.otlp]\n[metrics.access_log]\nenabled = false\n",
    ] {
        assert!(
            Config::parse(&format!("{MINIMAL}\n{fix}"), &env(&[])).is_ok(),
            "{fix}"
        );
    }
}

#[test]
fn validate_rejects_no_sources_and_wrong_types() {
    let errors = Config::parse("[sinks.cloudwatch_logs]\nlog_group = \"g\"\n", &env(&[]))
        .unwrap_err()
        .0;
    assert_eq!(
        errors,
        ["sources: at least one of forward, stdin, file, http, otlp must be configured"]
    );
    let errors = Config::parse(
        &format!("{MINIMAL}\nmemory_limit_mib = \"lots\"\n"),
        &env(&[]),
    )
    .unwrap_err()
    .0;
    assert!(errors[0].contains("memory_limit_mib"), "{errors:?}");
    assert!(Config::parse("[[[", &env(&[])).is_err());
}

#[test]
fn the_documented_sentry_example_block_parses_with_every_key() {
    let example = include_str!("../../agent.example.toml");
    let block: String = example
        .lines()
        .skip_while(|l| *l != "# [sinks.sentry]")
        .take_while(|l| l.starts_with('#'))
        .filter(|l| !l.contains("dsn_secret_id"))
        .map(|l| format!("{}\n", l.trim_start_matches("# ")))
        .collect();
    assert!(block.lines().count() > 25, "{block}");
    let text =
        format!("[sources.stdin]\n[sinks.cloudwatch_logs]\nlog_group = \"/ecs/api\"\n{block}");
    let env: std::collections::HashMap<String, String> = [
        ("SENTRY_DSN", "https://abc@o1.ingest.sentry.io/42"),
        ("APP_ENV", "prod"),
        ("APP_VERSION", "1.2.3"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::parse(&text, &env).unwrap();
    let sentry = config.sinks.sentry.unwrap();
    assert_eq!(sentry.release.as_deref(), Some("api@1.2.3"));
    assert_eq!(sentry.breadcrumbs, 20);
}
