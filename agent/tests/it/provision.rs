//! `agent provision`: the repository's own dashboards and alarms validate for every
//! environment; broken files exit 64 with file, line and column; and against the AWS
//! emulator a plan on an empty account creates everything, a second apply changes nothing,
//! one edited file is exactly one update, and a removed file is one delete with --prune,
//! while names outside the managed prefix (Terraform's) are never touched.

use std::path::Path;

use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};

use crate::support::{Moto, agent_command, repo_root};

fn cloudwatch(endpoint: &str) -> aws_sdk_cloudwatch::Client {
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build();
    aws_sdk_cloudwatch::Client::from_conf(config)
}

/// Runs `agent provision ARGS` in `dir`: (exit code, stdout, stderr).
fn provision(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = agent_command()
        .current_dir(dir)
        .arg("provision")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn the_repositorys_dashboards_and_alarms_validate_for_every_environment() {
    for env in ["dev", "staging", "prod"] {
        let (code, out, err) = provision(
            &repo_root(),
            &["validate", "--env", env, "--var", "AccountId=123456789012"],
        );
        assert_eq!(code, 0, "{env}: {err}");
        assert!(
            out.contains(&format!(
                "ok: 3 dashboards, 7 alarms, all named app-{env}-agent-*"
            )),
            "{env}: {out}"
        );
    }
}

#[test]
fn validate_reports_every_problem_with_its_place_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("dashboards")).unwrap();
    std::fs::create_dir_all(dir.path().join("alerts")).unwrap();
    std::fs::write(
        dir.path().join("dashboards/a.json"),
        "{\"widgets\": [\n  {\"type\": \"text\" \"x\": 0}\n]}",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("dashboards/b.json"),
        r#"{"widgets": [{"type": "metric", "x": 20, "width": 6, "properties": {"region": "us-east-1",
            "metrics": [["ServiceObservability", "Heartbeats"]]}}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("alerts/c.json"),
        r#"[{"AlarmName": "c", "Namespace": "AWS/RDS", "MetricName": "CPUUtilization",
             "Statistic": "Average", "Period": 90, "EvaluationPeriods": 2, "DatapointsToAlarm": 3,
             "Threshold": 1, "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "no",
             "AlarmActions": ["${PagerTopicArn}"]}]"#,
    )
    .unwrap();
    let (code, out, err) = provision(
        dir.path(),
        &[
            "validate",
            "--vars",
            "/nonexistent/vars.json",
            "--var",
            "Project=app",
            "--var",
            "Environment=dev",
        ],
    );
    assert_eq!(code, 64, "{out}{err}");
    for expected in [
        "/nonexistent/vars.json: cannot read the vars file",
        "dashboards/a.json:2:19: invalid JSON: expected `,` or `}`",
        "dashboards/b.json: $.widgets[0].x: x + width = 26 is past the 24-column grid",
        "dashboards/b.json: $.widgets[0].properties.metrics[0][1]: the sidecar does not emit \"Heartbeats\"",
        "alerts/c.json: $[0].Period: 90 is not a period",
        "alerts/c.json: $[0].DatapointsToAlarm: DatapointsToAlarm (3) is more than EvaluationPeriods (2)",
        "alerts/c.json: $[0].TreatMissingData:",
        "alerts/c.json: $[0].AlarmActions[0]: unfilled placeholder ${PagerTopicArn}",
        "problems; nothing was sent",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }

    // A usage error is 64 too, never 2 (which means "changes pending").
    let (code, _, err) = provision(dir.path(), &["plan", "--no-such-flag"]);
    assert_eq!(code, 64, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_apply_edit_and_prune_against_the_emulator() {
    let moto = Moto::start();
    let cw = cloudwatch(&moto.cloudwatch_endpoint);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    copy_dir(&repo_root().join("dashboards"), &dir.join("dashboards"));
    copy_dir(&repo_root().join("alerts"), &dir.join("alerts"));
    let vars = repo_root().join("provision/dev.json");
    let vars = vars.to_str().unwrap();
    let common = |extra: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        args.extend(
            [
                "--env",
                "dev",
                "--vars",
                vars,
                "--var",
                "AccountId=123456789012",
                "--endpoint",
                &moto.cloudwatch_endpoint,
            ]
            .map(str::to_owned),
        );
        args
    };
    let run = |extra: &[&'static str]| {
        let args = common(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        provision(dir, &args)
    };

    // What Terraform manages: same "<project>-<env>-" prefix, never the managed one.
    cw.put_metric_alarm()
        .alarm_name("app-dev-api-5xx")
        .namespace("AWS/ApplicationELB")
        .metric_name("HTTPCode_Target_5XX_Count")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(300)
        .evaluation_periods(2)
        .threshold(10.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap();
    cw.put_dashboard()
        .dashboard_name("app-dev-sidecar")
        .dashboard_body(r#"{"widgets":[]}"#)
        .send()
        .await
        .unwrap();

    // An empty account: everything is a create.
    let (code, out, err) = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(lines_with(&out, "+ create").len(), 10, "{out}");
    assert!(
        out.contains("Plan: 10 to create, 0 to update, 0 to delete, 0 unchanged."),
        "{out}"
    );

    let (code, out, err) = run(&["apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Apply complete: 10 created, 0 updated, 0 deleted."),
        "{out}"
    );
    let dashboards = cw
        .list_dashboards()
        .dashboard_name_prefix("app-dev-agent-")
        .send()
        .await
        .unwrap();
    let mut names: Vec<_> = dashboards
        .dashboard_entries()
        .iter()
        .filter_map(|d| d.dashboard_name())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "app-dev-agent-api-overview",
            "app-dev-agent-infrastructure",
            "app-dev-agent-sidecar"
        ]
    );
    let body = cw
        .get_dashboard()
        .dashboard_name("app-dev-agent-api-overview")
        .send()
        .await
        .unwrap();
    let body = body.dashboard_body().unwrap();
    assert!(
        body.contains("SOURCE '/ecs/app-dev/api'") && !body.contains("${"),
        "placeholders filled: {body}"
    );
    let alarms = cw
        .describe_alarms()
        .alarm_names("app-dev-agent-api-down")
        .send()
        .await
        .unwrap();
    let down = &alarms.metric_alarms()[0];
    assert_eq!(down.metric_name(), Some("HealthCheck"));
    assert_eq!(down.treat_missing_data(), Some("breaching"));
    assert_eq!(
        (down.evaluation_periods(), down.datapoints_to_alarm()),
        (Some(3), Some(2))
    );
    assert_eq!(
        down.alarm_actions(),
        ["arn:aws:sns:us-east-1:123456789012:app-dev-pager"]
    );
    assert_eq!(down.ok_actions(), down.alarm_actions());

    // Nothing changed: a second apply changes nothing.
    let (code, out, err) = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Plan: 0 to create, 0 to update, 0 to delete, 10 unchanged."),
        "{out}"
    );
    // Without --endpoint the SDK's per-service variable wins over AWS_ENDPOINT_URL (the demo
    // relies on it): CloudWatch goes to the front, and the plan reads the same account.
    let output = agent_command()
        .current_dir(dir)
        .args(["provision", "plan", "--env", "dev", "--vars", vars])
        .args(["--var", "AccountId=123456789012"])
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", &moto.cloudwatch_endpoint)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && out.contains("0 to create, 0 to update, 0 to delete"),
        "{out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (code, out, err) = run(&["apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Apply complete: 0 created, 0 updated, 0 deleted."),
        "{out}"
    );

    // One edited file: exactly one update, naming the changed field.
    let path = dir.join("alerts/api-latency-p99.json");
    let edited = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"Threshold\": 2000", "\"Threshold\": 1500");
    std::fs::write(&path, edited).unwrap();
    let (code, out, err) = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        lines_with(&out, "~ update"),
        ["  ~ update    alarm     app-dev-agent-api-latency-p99  (Threshold)"],
        "{out}"
    );
    assert!(
        out.contains("0 to create, 1 to update, 0 to delete, 9 unchanged"),
        "{out}"
    );
    let (code, out, err) = run(&["apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Apply complete: 0 created, 1 updated, 0 deleted."),
        "{out}"
    );
    let latency = cw
        .describe_alarms()
        .alarm_names("app-dev-agent-api-latency-p99")
        .send()
        .await
        .unwrap();
    assert_eq!(latency.metric_alarms()[0].threshold(), Some(1500.0));

    // One removed file: kept without --prune, one delete with it.
    std::fs::remove_file(dir.join("dashboards/infrastructure.json")).unwrap();
    let (code, out, err) = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        code, 0,
        "an undefined resource is not a change without --prune: {out}{err}"
    );
    assert!(out.contains("1 undefined kept (without --prune)"), "{out}");
    let (code, out, err) = run(&["plan", "--prune", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        lines_with(&out, "- delete"),
        ["  - delete    dashboard app-dev-agent-infrastructure"],
        "{out}"
    );
    let (code, out, err) = run(&["apply", "--prune"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Apply complete: 0 created, 0 updated, 1 deleted."),
        "{out}"
    );
    let (code, out, err) = run(&["plan", "--prune", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}{err}");

    // Terraform's alarm and dashboard were never listed, let alone deleted.
    let tf = cw
        .describe_alarms()
        .alarm_names("app-dev-api-5xx")
        .send()
        .await
        .unwrap();
    assert_eq!(tf.metric_alarms().len(), 1);
    cw.get_dashboard()
        .dashboard_name("app-dev-sidecar")
        .send()
        .await
        .expect("Terraform's dashboard is still there");
    assert!(
        !out.contains("app-dev-api-5xx") && !out.contains("app-dev-sidecar "),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_and_apply_find_the_account_with_sts_and_validate_stays_offline() {
    let moto = Moto::start();
    let proxy = crate::outbound_proxy::OutboundProxy::start().await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    copy_dir(&repo_root().join("dashboards"), &dir.join("dashboards"));
    copy_dir(&repo_root().join("alerts"), &dir.join("alerts"));
    let vars = repo_root().join("provision/dev.json");
    // No AccountId anywhere; every AWS call through the proxy, which counts them.
    let provision = |args: &[&str]| {
        let output = agent_command()
            .current_dir(dir)
            .arg("provision")
            .args(args)
            .args(["--env", "dev", "--vars", vars.to_str().unwrap()])
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .env("AWS_ENDPOINT_URL_CLOUDWATCH", &moto.cloudwatch_endpoint)
            .env("HTTP_PROXY", &proxy.url)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let sts_calls = || {
        proxy
            .forwarded()
            .iter()
            .filter(|f| f.service() == Some("sts"))
            .count()
    };

    let (code, out, err) = provision(&["validate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok: 3 dashboards, 7 alarms"), "{out}");
    assert!(proxy.forwarded().is_empty(), "validate sends nothing");

    let (code, out, err) = provision(&["apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("AccountId = 123456789012 (not in the vars: found with the AWS credentials)")
            && out.contains("Apply complete: 10 created"),
        "{out}"
    );
    assert_eq!(sts_calls(), 1);
    let alarms = cloudwatch(&moto.cloudwatch_endpoint)
        .describe_alarms()
        .alarm_names("app-dev-agent-api-down")
        .send()
        .await
        .unwrap();
    assert_eq!(
        alarms.metric_alarms()[0].alarm_actions(),
        ["arn:aws:sns:us-east-1:123456789012:app-dev-pager"]
    );

    // A given AccountId is used as it is: no STS call.
    let (code, out, err) = provision(&["plan", "--var", "AccountId=123456789012"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("0 to create, 0 to update, 0 to delete, 10 unchanged"),
        "{out}"
    );
    assert_eq!(sts_calls(), 1);
}
