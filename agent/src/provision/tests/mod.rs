//! Tests of provisioning without AWS: placeholders, loading whole directories, plans, the
//! alarm normal form, and the guard that keeps Terraform's names out of the managed prefix.
//! The table of broken definitions is in `validation`.

mod validation;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::plan::changed_paths;
use super::validate::{self, Checker};
use super::*;

const NAMESPACE: &str = "Test/Sidecar";

fn vars() -> Vars {
    Vars::from_pairs(&[
        ("Project", "app"),
        ("Environment", "dev"),
        ("Region", "us-east-1"),
        ("Namespace", NAMESPACE),
        ("AccountId", "123456789012"),
        ("Topic", "arn:aws:sns:${Region}:${AccountId}:app-dev-pager"),
    ])
}

fn dashboard_problems(mut body: Value) -> Vec<String> {
    let mut problems = Vec::new();
    vars().fill(&mut body, "d.json", &mut problems);
    validate::dashboard(&mut Checker::new("d.json", NAMESPACE, &mut problems), &body);
    problems.iter().map(ToString::to_string).collect()
}

fn alarm_problems(mut alarm: Value) -> Vec<String> {
    let mut problems = Vec::new();
    vars().fill(&mut alarm, "a.json", &mut problems);
    let mut check = Checker::new("a.json", NAMESPACE, &mut problems);
    let passed = validate::alarm(&mut check, "$", &alarm, "app-dev-agent-");
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(passed, problems.is_empty(), "{problems:?}");
    problems
}

fn good_dashboard() -> Value {
    json!({
        "widgets": [
            {
                "type": "metric", "x": 0, "y": 0, "width": 12, "height": 6,
                "properties": {
                    "region": "${Region}",
                    "title": "Requests ${LAST}",
                    "stat": "Sum",
                    "period": 60,
                    "metrics": [
                        ["${Namespace}", "RequestCount", "Service", "api", {"stat": "Sum", "id": "m1"}],
                        ["...", "web"],
                        [".", "ErrorCount", ".", ".", {"yAxis": "right"}],
                        [{"expression": "SEARCH('{\"${Namespace}\",Reason,Service} MetricName=\"EventsDropped\"', 'Sum', 60)", "id": "e1"}],
                        ["AWS/RDS", "AnythingGoes", "DBInstanceIdentifier", "db"]
                    ]
                }
            },
            {"type": "text", "x": 12, "y": 0, "width": 12, "height": 2, "properties": {"markdown": "# Hi"}},
            {"type": "log", "x": 0, "y": 6, "width": 24, "height": 6, "properties": {
                "region": "${Region}", "query": "SOURCE '/ecs/app-dev/api' | limit 5", "view": "table"}},
            {"type": "alarm", "width": 6, "height": 6, "properties": {
                "alarms": ["arn:aws:cloudwatch:${Region}:${AccountId}:alarm:app-dev-agent-api-down"]}},
            {"type": "explorer", "properties": {
                "metrics": [{"metricName": "CPUUtilization", "resourceType": "AWS::EC2::Instance", "stat": "Average"}]}}
        ]
    })
}

fn good_alarm() -> Value {
    json!({
        "AlarmName": "api-down",
        "AlarmDescription": "down",
        "Namespace": "${Namespace}",
        "MetricName": "HealthCheck",
        "Dimensions": [{"Name": "Service", "Value": "api"}, {"Name": "Endpoint", "Value": "/health"}],
        "Statistic": "Maximum",
        "Period": 60,
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 2,
        "Threshold": 1,
        "ComparisonOperator": "LessThanThreshold",
        "TreatMissingData": "breaching",
        "AlarmActions": ["${Topic}"],
        "OKActions": ["${Topic}"]
    })
}

fn math_alarm() -> Value {
    json!({
        "AlarmName": "rate",
        "Metrics": [
            {"Id": "rate", "Expression": "100 * errors / requests", "ReturnData": true},
            {"Id": "errors", "ReturnData": false, "MetricStat": {
                "Metric": {"Namespace": "${Namespace}", "MetricName": "ErrorCount"}, "Period": 300, "Stat": "Sum"}},
            {"Id": "requests", "ReturnData": false, "MetricStat": {
                "Metric": {"Namespace": "${Namespace}", "MetricName": "RequestCount"}, "Period": 300, "Stat": "Sum"}}
        ],
        "EvaluationPeriods": 2,
        "Threshold": 5,
        "ComparisonOperator": "GreaterThanThreshold"
    })
}

/// `base` with the value at JSON pointer `pointer` replaced (or removed with `None`).
fn patch(base: &Value, pointer: &str, new: Option<Value>) -> Value {
    let mut value = base.clone();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = value
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("{pointer}"));
    match (parent, new) {
        (Value::Object(map), Some(new)) => {
            map.insert(key.to_owned(), new);
        }
        (Value::Object(map), None) => {
            map.remove(key);
        }
        (Value::Array(items), Some(new)) => items[key.parse::<usize>().unwrap()] = new,
        (Value::Array(items), None) => {
            items.remove(key.parse::<usize>().unwrap());
        }
        _ => panic!("{pointer}"),
    }
    value
}

fn assert_rejected(problems: &[String], expected: &str, case: &str) {
    assert!(
        problems.iter().any(|p| p.contains(expected)),
        "{case}: expected a problem containing {expected:?}, got {problems:#?}"
    );
}

#[test]
fn placeholders_are_filled_and_cloudwatch_labels_kept() {
    let mut value = json!({
        "a": "${Project}-${Environment}",
        "b": ["${Topic}", "[max: ${MAX}] ${PROP('Dim.Route')}"],
        "c": "$${Project} ${ not one } ${}",
        "d": 7
    });
    let mut problems = Vec::new();
    vars().fill(&mut value, "f.json", &mut problems);
    assert_eq!(problems, []);
    assert_eq!(
        value,
        json!({
            "a": "app-dev",
            "b": ["arn:aws:sns:us-east-1:123456789012:app-dev-pager", "[max: ${MAX}] ${PROP('Dim.Route')}"],
            "c": "$app ${ not one } ${}",
            "d": 7
        })
    );
}

#[test]
fn vars_flags_override_the_file_and_env_sets_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dev.json");
    std::fs::write(
        &file,
        r#"{"Project": "app", "Environment": "x", "Cluster": "${Project}-${Environment}", "BAD": "y", "n": 1}"#,
    )
    .unwrap();
    let mut problems = Vec::new();
    let vars = Vars::load(
        Some(&file),
        Some("staging"),
        &["Project=shop".into(), "oops".into()],
        &mut problems,
    );
    assert_eq!(vars.get("Cluster"), Some("shop-staging"));
    assert_eq!(
        vars.prefix(&mut problems).as_deref(),
        Some("shop-staging-agent-")
    );
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 3, "{text:#?}");
    assert_rejected(&text, "$.BAD: a variable name is", "all-capital name");
    assert_rejected(&text, "$.n: must be a string", "number");
    assert_rejected(&text, "--var: \"oops\" is not KEY=VALUE", "flag");
}

#[test]
fn no_project_or_environment_can_own_a_prefix_that_starts_with_another_ones() {
    // `acme`/`prod` owns `acme-prod-agent-`; these would own names under it too, so
    // `--prune` for prod could delete their alarms: each is refused.
    for (project, environment) in [
        ("acme", "prod-agent-eu"),
        ("acme-prod", "agent"),
        ("acme-agent", "x"),
        ("acme", "prod-eu"),
    ] {
        let vars = Vars::from_pairs(&[("Project", project), ("Environment", environment)]);
        let mut problems = Vec::new();
        assert_eq!(
            vars.prefix(&mut problems),
            None,
            "{project}/{environment} must be refused"
        );
        assert!(!problems.is_empty());
    }
    let mut problems = Vec::new();
    assert_eq!(
        Vars::from_pairs(&[("Project", "acme-shop"), ("Environment", "prod2")])
            .prefix(&mut problems)
            .as_deref(),
        Some("acme-shop-prod2-agent-")
    );
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir.join(name).parent().unwrap()).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

fn inputs(dir: &Path) -> Inputs {
    std::fs::write(
        dir.join("vars.json"),
        r#"{"Project": "app", "Environment": "dev", "Region": "us-east-1", "Namespace": "Test/Sidecar",
            "AccountId": "123456789012", "Topic": "arn:aws:sns:${Region}:${AccountId}:app-dev-pager"}"#,
    )
    .unwrap();
    Inputs {
        dashboards: dir.join("dashboards"),
        alerts: dir.join("alerts"),
        env: None,
        vars: Some(dir.join("vars.json")),
        overrides: vec![],
    }
}

#[test]
fn load_names_everything_under_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "dashboards/api.json",
        &good_dashboard().to_string(),
    );
    write(dir.path(), "dashboards/README.md", "not a definition");
    write(
        dir.path(),
        "alerts/list.json",
        &json!([good_alarm(), math_alarm()]).to_string(),
    );
    let definitions = load(&inputs(dir.path())).unwrap();
    assert_eq!(definitions.prefix, "app-dev-agent-");
    assert_eq!(definitions.region.as_deref(), Some("us-east-1"));
    let dashboards: Vec<_> = definitions.dashboards.iter().map(|d| &d.name).collect();
    assert_eq!(dashboards, ["app-dev-agent-api"]);
    let alarms: Vec<_> = definitions
        .alarms
        .iter()
        .map(|a| a.spec.alarm_name.as_str())
        .collect();
    assert_eq!(alarms, ["app-dev-agent-api-down", "app-dev-agent-rate"]);
    assert_eq!(
        definitions.alarms[0].spec.alarm_actions,
        ["arn:aws:sns:us-east-1:123456789012:app-dev-pager"]
    );
}

#[test]
fn account_and_region_stay_unfilled_offline_and_are_filled_with_what_was_found() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "dashboards/api.json",
        &good_dashboard().to_string(),
    );
    write(dir.path(), "alerts/a.json", &good_alarm().to_string());
    let mut inputs = inputs(dir.path());
    std::fs::write(
        dir.path().join("vars.json"),
        r#"{"Project": "app", "Environment": "dev", "Namespace": "Test/Sidecar",
            "Topic": "arn:aws:sns:${Region}:${AccountId}:app-dev-pager"}"#,
    )
    .unwrap();
    let strict: Vec<String> = load(&inputs)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        strict
            .iter()
            .any(|p| p.contains("unfilled placeholder ${AccountId}"))
            && strict
                .iter()
                .any(|p| p.contains("unfilled placeholder ${Region}")),
        "{strict:#?}"
    );

    let offline = load_with(&inputs, &Discovery::Deferred).unwrap();
    assert_eq!(
        offline.unfilled.iter().collect::<Vec<_>>(),
        ["AccountId", "Region"]
    );

    let found = Discovery::Found(vec![
        ("AccountId".into(), "111122223333".into()),
        ("Region".into(), "eu-west-1".into()),
    ]);
    let online = load_with(&inputs, &found).unwrap();
    assert!(online.unfilled.is_empty());
    assert_eq!(online.region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        online.alarms[0].spec.alarm_actions,
        ["arn:aws:sns:eu-west-1:111122223333:app-dev-pager"]
    );

    // A value given wins over one found; other placeholders are never deferred.
    inputs.overrides = vec!["Region=us-west-2".into(), "Other=${Nope}".into()];
    let given = load_with(&inputs, &found).unwrap();
    assert_eq!(given.region.as_deref(), Some("us-west-2"));
    write(
        dir.path(),
        "alerts/b.json",
        &patch(&good_alarm(), "/AlarmName", Some(json!("b-${Nope}"))).to_string(),
    );
    let problems: Vec<String> = load_with(&inputs, &Discovery::Deferred)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("unfilled placeholder ${Nope}"),
        "{problems:#?}"
    );
}

#[test]
fn load_reports_every_file_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "dashboards/broken.json",
        "{\n  \"widgets\": [\n    {\"type\": \"text\",}\n  ]\n}\n",
    );
    write(
        dir.path(),
        "dashboards/bad name.json",
        &good_dashboard().to_string(),
    );
    write(
        dir.path(),
        "alerts/a.json",
        &patch(&good_alarm(), "/Period", Some(json!(45))).to_string(),
    );
    write(dir.path(), "alerts/b.json", &good_alarm().to_string());
    write(dir.path(), "alerts/c.json", &good_alarm().to_string());
    let problems: Vec<String> = load(&inputs(dir.path()))
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    let root = dir.path().display();
    for expected in [
        format!("{root}/dashboards/broken.json:3:21: invalid JSON: trailing comma"),
        format!("{root}/dashboards/bad name.json: the file name gives the dashboard name"),
        format!("{root}/alerts/a.json: $.Period: 45 is not a period"),
        format!(
            "{root}/alerts/c.json: alarm app-dev-agent-api-down is also defined in {root}/alerts/b.json"
        ),
    ] {
        assert_rejected(&problems, &expected, "load");
    }
}

#[test]
fn load_without_project_or_environment_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("dashboards")).unwrap();
    std::fs::create_dir_all(dir.path().join("alerts")).unwrap();
    let mut inputs = inputs(dir.path());
    std::fs::write(dir.path().join("vars.json"), r#"{"Project": "App"}"#).unwrap();
    inputs.dashboards = dir.path().join("dashboards");
    let problems: Vec<String> = load(&inputs)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_rejected(&problems, "$.Project: \"App\": 2-16 lower-case", "project");
    assert_rejected(&problems, "$.Environment: not set", "environment");
}

fn definitions() -> Definitions {
    Definitions {
        prefix: "app-dev-agent-".into(),
        region: None,
        unfilled: Default::default(),
        dashboards: vec![
            DashboardDef {
                name: "app-dev-agent-a".into(),
                file: "a.json".into(),
                body: json!({"widgets": [{"type": "text", "properties": {"markdown": "a"}}]}),
            },
            DashboardDef {
                name: "app-dev-agent-b".into(),
                file: "b.json".into(),
                body: json!({"widgets": []}),
            },
        ],
        alarms: vec![AlarmDef {
            file: "x.json".into(),
            spec: serde_json::from_value(patch(
                &good_alarm(),
                "/AlarmName",
                Some(json!("app-dev-agent-down")),
            ))
            .unwrap(),
        }],
    }
}

#[test]
fn plan_lists_creates_updates_and_deletes_only_under_the_prefix() {
    let definitions = definitions();
    let empty = plan(&definitions, &Current::default(), true);
    assert!(empty.changes.iter().all(|c| c.action == Action::Create));
    assert_eq!(empty.changes.len(), 3);

    let mut changed_alarm = definitions.alarms[0].spec.clone();
    changed_alarm.threshold = Some(0.5);
    changed_alarm.evaluation_periods = 5;
    let current = Current {
        dashboards: [
            (
                "app-dev-agent-a".to_owned(),
                Some(r#"{"widgets":[{"properties":{"markdown":"a"},"type":"text"}]}"#.to_owned()),
            ),
            (
                "app-dev-agent-b".to_owned(),
                Some(r#"{"widgets":[{}]}"#.to_owned()),
            ),
            ("app-dev-agent-old".to_owned(), None),
            ("app-dev-api-5xx".to_owned(), None),
        ]
        .into(),
        alarms: [
            ("app-dev-agent-down".to_owned(), changed_alarm),
            (
                "app-dev-db-cpu-high".to_owned(),
                definitions.alarms[0].spec.clone(),
            ),
        ]
        .into(),
    };
    let kept = plan(&definitions, &current, false);
    let pruned = plan(&definitions, &current, true);
    let actions = |p: &Plan| -> Vec<(String, Action)> {
        p.changes
            .iter()
            .map(|c| (c.name.clone(), c.action.clone()))
            .collect()
    };
    assert_eq!(
        actions(&pruned),
        [
            ("app-dev-agent-a".to_owned(), Action::Unchanged),
            (
                "app-dev-agent-b".to_owned(),
                Action::Update(vec!["widgets[0]".to_owned()])
            ),
            ("app-dev-agent-old".to_owned(), Action::Delete),
            (
                "app-dev-agent-down".to_owned(),
                Action::Update(vec!["EvaluationPeriods".to_owned(), "Threshold".to_owned()])
            ),
        ],
        "names outside the prefix (Terraform's) never appear"
    );
    assert_eq!(kept.changes[2].action, Action::Orphan);
    assert!(pruned.has_changes());
    let text = pruned.to_string();
    assert!(
        text.contains("~ update    alarm     app-dev-agent-down  (EvaluationPeriods, Threshold)"),
        "{text}"
    );
    assert!(
        text.ends_with("Plan: 0 to create, 2 to update, 1 to delete, 1 unchanged.\n"),
        "{text}"
    );
    assert!(
        kept.to_string()
            .contains("1 undefined kept (without --prune)"),
        "{kept}"
    );
}

#[test]
fn changed_paths_name_the_keys_that_differ() {
    let ours =
        json!({"widgets": [{"x": 0, "properties": {"title": "a", "stat": "Sum"}}, {"x": 1}]});
    let theirs = json!({"widgets": [{"x": 0, "properties": {"title": "b"}}], "start": "-PT1H"});
    assert_eq!(
        changed_paths(&ours, &theirs),
        [
            "widgets[0].properties.title",
            "widgets[0].properties.stat",
            "widgets[1]",
            "start"
        ]
    );
}

#[test]
fn an_alarm_read_back_with_cloudwatch_defaults_is_unchanged() {
    use aws_sdk_cloudwatch::types::{
        ComparisonOperator, Dimension, MetricAlarm, StandardUnit, Statistic,
    };
    let mut spec: AlarmSpec = serde_json::from_value(good_alarm()).unwrap();
    spec.alarm_actions = vec!["arn:b".into(), "arn:a".into()];
    spec.datapoints_to_alarm = None;
    spec.treat_missing_data = None;
    spec.unit = Some("Count".into());
    // What DescribeAlarms answers: defaults filled, lists in another order.
    let described = MetricAlarm::builder()
        .alarm_name(&spec.alarm_name)
        .alarm_description("down")
        .actions_enabled(true)
        .alarm_actions("arn:a")
        .alarm_actions("arn:b")
        .ok_actions("${Topic}")
        .namespace("${Namespace}")
        .metric_name("HealthCheck")
        .dimensions(
            Dimension::builder()
                .name("Endpoint")
                .value("/health")
                .build(),
        )
        .dimensions(Dimension::builder().name("Service").value("api").build())
        .statistic(Statistic::Maximum)
        .period(60)
        .unit(StandardUnit::Count)
        .evaluation_periods(3)
        .datapoints_to_alarm(3)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::LessThanThreshold)
        .treat_missing_data("missing")
        .evaluate_low_sample_count_percentile("")
        .build();
    let read_back = AlarmSpec::from_sdk(&described);
    assert_eq!(spec.changed_fields(&read_back), Vec::<String>::new());
    let mut other = read_back;
    other.treat_missing_data = Some("breaching".into());
    assert_eq!(spec.changed_fields(&other), ["TreatMissingData"]);
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn tf_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.ends_with(".terraform") {
            tf_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "tf") {
            out.push(path);
        }
    }
}

/// The prune rule rests on this: Terraform never names an alarm or dashboard
/// `<project>-<env>-agent-...`, so nothing it manages is under the managed prefix.
#[test]
fn terraform_names_stay_out_of_the_managed_prefix() {
    let mut files = Vec::new();
    tf_files(&repo().join("terraform"), &mut files);
    assert!(!files.is_empty());
    let mut names = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            let line = line.trim();
            let Some(value) = ["alarm_name", "dashboard_name"]
                .iter()
                .find_map(|key| line.strip_prefix(key))
                .and_then(|rest| rest.trim_start().strip_prefix('='))
            else {
                continue;
            };
            names += 1;
            let value = value.trim().trim_matches('"');
            // "${local.prefix}api-5xx", "${var.name}-..." or a key built from file names.
            let rest = value
                .strip_prefix("${local.prefix}")
                .or_else(|| value.strip_prefix("${var.name}-"))
                .unwrap_or(value);
            assert!(
                !rest.starts_with(&format!("{MARKER}-")),
                "{}: {line}: Terraform must not use the managed prefix",
                file.display()
            );
        }
    }
    assert!(names >= 5, "found only {names} Terraform alarm names");
}

/// The vars files follow Terraform's naming (terraform/modules/*: cluster `<name>`, service
/// `<name>-api`, log group `/ecs/<name>/api`, topic `<name>-pager`, `<name>-postgres`,
/// `<name>-redis`, `<name>-alb`).
#[test]
fn vars_files_match_terraform_naming() {
    for env in ["dev", "staging", "prod"] {
        let mut problems = Vec::new();
        let file = repo().join(format!("provision/{env}.json"));
        let vars = Vars::load(
            Some(&file),
            Some(env),
            &["AccountId=123456789012".into()],
            &mut problems,
        );
        assert_eq!(problems, []);
        let name = format!("{}-{env}", vars.get("Project").unwrap());
        let region = vars.get("Region").unwrap();
        for (key, expected) in [
            ("Environment", env.to_owned()),
            ("Cluster", name.clone()),
            ("Service", format!("{name}-api")),
            ("LogGroup", format!("/ecs/{name}/api")),
            ("AgentLogGroup", format!("/ecs/{name}/agent")),
            (
                "PagerTopicArn",
                format!("arn:aws:sns:{region}:123456789012:{name}-pager"),
            ),
            ("DbInstance", format!("{name}-postgres")),
            ("CacheReplicationGroup", format!("{name}-redis")),
            ("LoadBalancer", format!("{name}-alb")),
            ("Namespace", "ServiceObservability".to_owned()),
            ("ServiceDimension", "api".to_owned()),
        ] {
            assert_eq!(vars.get(key), Some(expected.as_str()), "{env}: {key}");
        }
    }
}
