//! The validation table: each broken dashboard or alarm is rejected with its message at its
//! JSON path, and a definition with several problems reports them all.

use serde_json::{Value, json};

use super::*;

#[test]
fn good_definitions_pass() {
    assert_eq!(dashboard_problems(good_dashboard()), Vec::<String>::new());
    assert_eq!(alarm_problems(good_alarm()), Vec::<String>::new());
    assert_eq!(alarm_problems(math_alarm()), Vec::<String>::new());
}

#[test]
fn validate_rejects_broken_dashboards() {
    let base = good_dashboard();
    let many: Vec<Value> = (0..501)
        .map(|_| json!({"type": "text", "properties": {"markdown": "x"}}))
        .collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unknown widget type",
            patch(&base, "/widgets/1/type", Some(json!("graph"))),
            "d.json: $.widgets[1].type: unknown widget type \"graph\"",
        ),
        (
            "widget past the grid",
            patch(&base, "/widgets/0/x", Some(json!(14))),
            "$.widgets[0].x: x + width = 26 is past the 24-column grid",
        ),
        (
            "width over 24",
            patch(&base, "/widgets/1/width", Some(json!(25))),
            "$.widgets[1].width: 25 is not an integer from 1 to 24",
        ),
        (
            "negative y",
            patch(&base, "/widgets/1/y", Some(json!(-1))),
            "$.widgets[1].y: -1 is not an integer",
        ),
        (
            "metric widget without region",
            patch(&base, "/widgets/0/properties/region", None),
            "$.widgets[0].properties.region: required",
        ),
        (
            "metric widget without metrics",
            patch(&base, "/widgets/0/properties/metrics", None),
            "$.widgets[0].properties.metrics: required: at least one metric row",
        ),
        (
            "too many widgets",
            json!({ "widgets": many }),
            "$.widgets: 501 widgets; a dashboard holds at most 500",
        ),
        (
            "no widgets",
            json!({ "start": "-PT3H" }),
            "$.widgets: required",
        ),
        (
            "unknown top-level key",
            patch(&base, "/title", Some(json!("x"))),
            "$.title: unknown key",
        ),
        (
            "metric the sidecar does not emit",
            patch(
                &base,
                "/widgets/0/properties/metrics/0/1",
                Some(json!("RequestTotal")),
            ),
            "$.widgets[0].properties.metrics[0][1]: the sidecar does not emit \"RequestTotal\" in Test/Sidecar",
        ),
        (
            "searched metric the sidecar does not emit",
            patch(
                &base,
                "/widgets/0/properties/metrics/3/0/expression",
                Some(json!(
                    "SEARCH('{${Namespace},Reason} MetricName=\"EventsLost\"', 'Sum', 60)"
                )),
            ),
            "$.widgets[0].properties.metrics[3][0].expression: the sidecar does not emit \"EventsLost\"",
        ),
        (
            "\"...\" with nothing before",
            patch(
                &base,
                "/widgets/0/properties/metrics/0",
                Some(json!(["...", "x"])),
            ),
            "$.widgets[0].properties.metrics[0]: \".\" or \"...\" repeats the row before",
        ),
        (
            "dimension without a value",
            patch(
                &base,
                "/widgets/0/properties/metrics/4",
                Some(json!(["AWS/RDS", "CPUUtilization", "DBInstanceIdentifier"])),
            ),
            "$.widgets[0].properties.metrics[4]: a metric row is [Namespace, MetricName",
        ),
        (
            "bad statistic",
            patch(&base, "/widgets/0/properties/stat", Some(json!("Median"))),
            "$.widgets[0].properties.stat: \"Median\" is not a statistic",
        ),
        (
            "percentile over 100",
            patch(
                &base,
                "/widgets/0/properties/metrics/0/4/stat",
                Some(json!("p101")),
            ),
            "$.widgets[0].properties.metrics[0][4].stat: \"p101\" is not a statistic",
        ),
        (
            "bad graph period",
            patch(&base, "/widgets/0/properties/period", Some(json!(45))),
            "$.widgets[0].properties.period: 45 is not a period",
        ),
        (
            "unknown metric option",
            patch(
                &base,
                "/widgets/0/properties/metrics/0/4/colour",
                Some(json!("#fff")),
            ),
            "$.widgets[0].properties.metrics[0][4].colour: unknown key",
        ),
        (
            "text widget without markdown",
            patch(&base, "/widgets/1/properties/markdown", None),
            "$.widgets[1].properties.markdown: required",
        ),
        (
            "log query without SOURCE",
            patch(
                &base,
                "/widgets/2/properties/query",
                Some(json!("fields @message | limit 5")),
            ),
            "$.widgets[2].properties.query: a Logs Insights query of a dashboard starts with SOURCE",
        ),
        (
            "alarm widget with a name instead of an ARN",
            patch(
                &base,
                "/widgets/3/properties/alarms/0",
                Some(json!("app-dev-agent-api-down")),
            ),
            "$.widgets[3].properties.alarms[0]: must be an alarm ARN",
        ),
        (
            "explorer widget without metrics",
            patch(&base, "/widgets/4/properties/metrics", None),
            "$.widgets[4].properties.metrics: required",
        ),
        (
            "widget without properties",
            patch(&base, "/widgets/1/properties", None),
            "$.widgets[1].properties: required",
        ),
        (
            "unfilled placeholder",
            patch(
                &base,
                "/widgets/1/properties/markdown",
                Some(json!("# ${Nope} in ${Region}")),
            ),
            "d.json: $.widgets[1].properties.markdown: unfilled placeholder ${Nope}",
        ),
    ];
    for (case, body, expected) in cases {
        assert_rejected(&dashboard_problems(body), expected, case);
    }
}

#[test]
fn validate_rejects_broken_alarms() {
    let base = good_alarm();
    let math = math_alarm();
    let six: Vec<Value> = (0..6)
        .map(|i| json!(format!("arn:aws:sns:us-east-1:1:t{i}")))
        .collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "period not 10/20/30 or a multiple of 60",
            patch(&base, "/Period", Some(json!(45))),
            "a.json: $.Period: 45 is not a period: 10, 20, 30 or a multiple of 60",
        ),
        (
            "more than a day with a short period",
            patch(&base, "/EvaluationPeriods", Some(json!(1441))),
            "$.EvaluationPeriods: Period × EvaluationPeriods = 86460 s; at most one day",
        ),
        (
            "more than seven days",
            patch(
                &patch(&base, "/Period", Some(json!(3600))),
                "/EvaluationPeriods",
                Some(json!(169)),
            ),
            "$.EvaluationPeriods: Period × EvaluationPeriods = 608400 s; at most 7 days",
        ),
        (
            "six actions",
            patch(&base, "/AlarmActions", Some(json!(six))),
            "$.AlarmActions: 6 actions; at most 5 per state",
        ),
        (
            "an action that is not an ARN",
            patch(&base, "/OKActions", Some(json!(["pager"]))),
            "$.OKActions[0]: an action is an ARN",
        ),
        (
            "unknown comparison operator",
            patch(&base, "/ComparisonOperator", Some(json!("LessThan"))),
            "$.ComparisonOperator: unknown comparison operator \"LessThan\"",
        ),
        (
            "bad TreatMissingData",
            patch(&base, "/TreatMissingData", Some(json!("ignoring"))),
            "$.TreatMissingData: \"ignoring\" is not one of breaching, notBreaching, ignore, missing",
        ),
        (
            "more datapoints than periods",
            patch(&base, "/DatapointsToAlarm", Some(json!(4))),
            "$.DatapointsToAlarm: DatapointsToAlarm (4) is more than EvaluationPeriods (3)",
        ),
        (
            "percentile as Statistic",
            patch(&base, "/Statistic", Some(json!("p99"))),
            "$.Statistic: \"p99\" is not a statistic",
        ),
        (
            "bad extended statistic",
            patch(
                &patch(&base, "/Statistic", None),
                "/ExtendedStatistic",
                Some(json!("p100.5")),
            ),
            "$.ExtendedStatistic: \"p100.5\" is not an extended statistic",
        ),
        (
            "Statistic and ExtendedStatistic",
            patch(&base, "/ExtendedStatistic", Some(json!("p99"))),
            "$.ExtendedStatistic: Statistic or ExtendedStatistic, not both",
        ),
        (
            "no statistic",
            patch(&base, "/Statistic", None),
            "$.Statistic: required",
        ),
        (
            "sidecar metric that does not exist",
            patch(&base, "/MetricName", Some(json!("Heartbeats"))),
            "$.MetricName: the sidecar does not emit \"Heartbeats\"",
        ),
        (
            "no threshold",
            patch(&base, "/Threshold", None),
            "$.Threshold: required",
        ),
        (
            "no evaluation periods",
            patch(&base, "/EvaluationPeriods", None),
            "$.EvaluationPeriods: required",
        ),
        (
            "unknown key",
            patch(&base, "/Tags", Some(json!([]))),
            "$.Tags: unknown key",
        ),
        (
            "too many dimensions",
            patch(
                &base,
                "/Dimensions",
                Some(json!(
                    (0..31)
                        .map(|i| json!({"Name": format!("D{i}"), "Value": "v"}))
                        .collect::<Vec<_>>()
                )),
            ),
            "$.Dimensions: at most 30 dimensions",
        ),
        (
            "one metric and metric math",
            patch(&math, "/MetricName", Some(json!("ErrorCount"))),
            "$.MetricName: not with Metrics",
        ),
        (
            "two queries returning data",
            patch(&math, "/Metrics/1/ReturnData", Some(json!(true))),
            "$.Metrics: 2 queries return data; exactly one must",
        ),
        (
            "SEARCH in an alarm",
            patch(
                &math,
                "/Metrics/0/Expression",
                Some(json!("SEARCH('{AWS/EC2} CPUUtilization', 'Average', 300)")),
            ),
            "$.Metrics[0].Expression: alarms cannot use SEARCH",
        ),
        (
            "bad query id",
            patch(&math, "/Metrics/1/Id", Some(json!("Errors"))),
            "$.Metrics[1].Id: an id starts with a lower-case letter",
        ),
        (
            "query with both MetricStat and Expression",
            patch(&math, "/Metrics/1/Expression", Some(json!("m1 * 2"))),
            "$.Metrics[1]: a metric query has either MetricStat or Expression",
        ),
        (
            "bad MetricStat period",
            patch(&math, "/Metrics/2/MetricStat/Period", Some(json!(90))),
            "$.Metrics[2].MetricStat.Period: 90 is not a period",
        ),
        (
            "sidecar metric in a query that does not exist",
            patch(
                &math,
                "/Metrics/2/MetricStat/Metric/MetricName",
                Some(json!("Requests")),
            ),
            "$.Metrics[2].MetricStat.Metric.MetricName: the sidecar does not emit \"Requests\"",
        ),
        (
            "anomaly operator without a band",
            patch(
                &base,
                "/ComparisonOperator",
                Some(json!("GreaterThanUpperThreshold")),
            ),
            "$.ThresholdMetricId: required with an anomaly-detection comparison operator",
        ),
        (
            "name too long with the prefix",
            patch(&base, "/AlarmName", Some(json!("x".repeat(250)))),
            "$.AlarmName: the alarm name",
        ),
    ];
    for (case, alarm, expected) in cases {
        assert_rejected(&alarm_problems(alarm), expected, case);
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let alarm = json!({"AlarmName": "x", "Period": 7, "ComparisonOperator": "Bigger",
                       "TreatMissingData": "maybe", "EvaluationPeriods": 0});
    let problems = alarm_problems(alarm);
    for expected in [
        "$.Period: 7 is not a period",
        "$.ComparisonOperator: unknown comparison operator",
        "$.TreatMissingData:",
        "$.EvaluationPeriods: 0 is not an integer",
        "$.Namespace: required",
        "$.MetricName: required",
        "$.Threshold: required",
    ] {
        assert_rejected(&problems, expected, "several at once");
    }
}

#[test]
fn extended_statistics() {
    for ok in [
        "p99",
        "p99.9",
        "p0",
        "p100",
        "tm90",
        "wm99",
        "tc90",
        "ts99.5",
        "IQM",
        "TM(10%:90%)",
        "PR(:300)",
        "TC(0.005:0.030)",
    ] {
        assert!(validate::is_extended_statistic(ok), "{ok}");
    }
    for bad in [
        "p", "p101", "P99", "x99", "TM()", "TM(:)", "TM(10%)", "Average", "p9x",
    ] {
        assert!(!validate::is_extended_statistic(bad), "{bad}");
    }
}

#[test]
fn searched_metrics_are_found_in_expressions() {
    let found = validate::searched_metrics(
        "SUM(SEARCH('{\"Demo/Api\",Route} MetricName=\"RequestCount\" Route=\"/a\"', 'Sum', 60)) + \
         SEARCH('{Other,Dim} MetricName=Foo', 'Sum') + SEARCH('free text', 'Sum')",
    );
    assert_eq!(
        found,
        [
            ("Demo/Api".to_owned(), "RequestCount".to_owned()),
            ("Other".to_owned(), "Foo".to_owned())
        ]
    );
}
