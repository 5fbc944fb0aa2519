//! Alarm definitions (PutMetricAlarm's input): known keys, names, actions (at most 5 per
//! state), operators, TreatMissingData, DatapointsToAlarm, statistics, periods and
//! Period × EvaluationPeriods, and the metric-math form.

use serde_json::{Map, Value};

use super::{
    BASIC_STATISTICS, Checker, MAX_DIMENSIONS, MAX_NAME, child, integer_in, is_extended_statistic,
    is_query_id, one_of, optional_string, required_string, statistic, unfilled, unknown_keys,
};

/// Actions per alarm state.
const MAX_ACTIONS: usize = 5;

/// Period × EvaluationPeriods, in seconds: 7 days, or one day when the period is under an
/// hour.
const MAX_EVALUATION_SECS: i64 = 7 * 86_400;
const MAX_EVALUATION_SECS_SHORT_PERIOD: i64 = 86_400;

const COMPARISON_OPERATORS: [&str; 7] = [
    "GreaterThanOrEqualToThreshold",
    "GreaterThanThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
    "LessThanLowerOrGreaterThanUpperThreshold",
    "LessThanLowerThreshold",
    "GreaterThanUpperThreshold",
];
/// The operators of anomaly-detection alarms (they need `ThresholdMetricId`).
const ANOMALY_OPERATORS: [&str; 3] = [
    "LessThanLowerOrGreaterThanUpperThreshold",
    "LessThanLowerThreshold",
    "GreaterThanUpperThreshold",
];
const TREAT_MISSING_DATA: [&str; 4] = ["breaching", "notBreaching", "ignore", "missing"];
const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];
const ALARM_KEYS: [&str; 21] = [
    "AlarmName",
    "AlarmDescription",
    "ActionsEnabled",
    "OKActions",
    "AlarmActions",
    "InsufficientDataActions",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "Period",
    "Unit",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "EvaluateLowSampleCountPercentile",
    "Metrics",
    "ThresholdMetricId",
];
/// Keys of the one-metric form, not allowed next to `Metrics`.
const SINGLE_METRIC_KEYS: [&str; 7] = [
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "Period",
    "Unit",
];

/// An alarm definition (PutMetricAlarm's input). Returns whether it passed every rule.
pub(in crate::provision) fn alarm(
    check: &mut Checker<'_>,
    path: &str,
    value: &Value,
    prefix: &str,
) -> bool {
    let before = check.problems.len();
    let Some(alarm) = value.as_object() else {
        check.report(path, "an alarm is a JSON object (PutMetricAlarm's input)");
        return false;
    };
    unknown_keys(check, path, alarm, &ALARM_KEYS);
    if let Some(name) = required_string(check, path, alarm, "AlarmName") {
        let full = format!("{prefix}{name}");
        if name.is_empty() || full.len() > MAX_NAME || full.chars().any(char::is_control) {
            check.report(
                &child(path, "AlarmName"),
                format!(
                    "the alarm name {full:?} must be 1 to {MAX_NAME} characters (with the prefix), no control characters"
                ),
            );
        }
    }
    if let Some(description) = optional_string(check, path, alarm, "AlarmDescription")
        && description.len() > 1024
    {
        check.report(&child(path, "AlarmDescription"), "at most 1024 characters");
    }
    if alarm.get("ActionsEnabled").is_some_and(|v| !v.is_boolean()) {
        check.report(&child(path, "ActionsEnabled"), "must be true or false");
    }
    for key in ["AlarmActions", "OKActions", "InsufficientDataActions"] {
        actions(check, path, alarm, key);
    }

    let evaluation_periods = integer_in(check, path, alarm, "EvaluationPeriods", 1, 100_000);
    if !alarm.contains_key("EvaluationPeriods") {
        check.report(&child(path, "EvaluationPeriods"), "required (at least 1)");
    }
    if let (Some(datapoints), Some(evaluation)) = (
        integer_in(check, path, alarm, "DatapointsToAlarm", 1, 100_000),
        evaluation_periods,
    ) && datapoints > evaluation
    {
        check.report(
            &child(path, "DatapointsToAlarm"),
            format!(
                "DatapointsToAlarm ({datapoints}) is more than EvaluationPeriods ({evaluation})"
            ),
        );
    }
    let operator = match alarm.get("ComparisonOperator").and_then(Value::as_str) {
        Some(op) if COMPARISON_OPERATORS.contains(&op) => Some(op),
        Some(op) => {
            check.report(
                &child(path, "ComparisonOperator"),
                format!(
                    "unknown comparison operator {op:?}; one of {}",
                    COMPARISON_OPERATORS.join(", ")
                ),
            );
            None
        }
        None => {
            check.report(
                &child(path, "ComparisonOperator"),
                format!("required: one of {}", COMPARISON_OPERATORS.join(", ")),
            );
            None
        }
    };
    one_of(check, path, alarm, "TreatMissingData", &TREAT_MISSING_DATA);
    one_of(
        check,
        path,
        alarm,
        "EvaluateLowSampleCountPercentile",
        &["evaluate", "ignore"],
    );
    one_of(check, path, alarm, "Unit", &UNITS);
    let anomaly = operator.is_some_and(|op| ANOMALY_OPERATORS.contains(&op));
    let threshold_metric = optional_string(check, path, alarm, "ThresholdMetricId");
    match alarm.get("Threshold") {
        Some(t) if !t.as_f64().is_some_and(f64::is_finite) => {
            check.report(&child(path, "Threshold"), "must be a number");
        }
        None if !anomaly => {
            check.report(&child(path, "Threshold"), "required (a number)");
        }
        _ => {}
    }
    if anomaly && threshold_metric.is_none() {
        check.report(
            &child(path, "ThresholdMetricId"),
            "required with an anomaly-detection comparison operator",
        );
    }
    if threshold_metric.is_some() && !anomaly {
        check.report(
            &child(path, "ComparisonOperator"),
            "ThresholdMetricId needs an anomaly-detection operator",
        );
    }

    let period = if alarm.contains_key("Metrics") {
        if let Some(key) = SINGLE_METRIC_KEYS.iter().find(|k| alarm.contains_key(**k)) {
            check.report(
                &child(path, key),
                "not with Metrics: an alarm watches one metric (MetricName, Namespace, ...) or metric math (Metrics)",
            );
        }
        queries(check, &child(path, "Metrics"), &alarm["Metrics"])
    } else {
        single_metric(check, path, alarm)
    };
    if let (Some(period), Some(evaluation)) = (period, evaluation_periods) {
        let total = period * evaluation;
        if period < 3600 && total > MAX_EVALUATION_SECS_SHORT_PERIOD {
            check.report(
                &child(path, "EvaluationPeriods"),
                format!(
                    "Period × EvaluationPeriods = {total} s; at most one day (86400 s) when the period is under an hour"
                ),
            );
        } else if total > MAX_EVALUATION_SECS {
            check.report(
                &child(path, "EvaluationPeriods"),
                format!("Period × EvaluationPeriods = {total} s; at most 7 days (604800 s)"),
            );
        }
    }
    check.problems.len() == before
}

/// The one-metric form; returns its period.
fn single_metric(check: &mut Checker<'_>, path: &str, alarm: &Map<String, Value>) -> Option<i64> {
    let namespace = required_string(check, path, alarm, "Namespace");
    let metric = required_string(check, path, alarm, "MetricName");
    if let (Some(namespace), Some(metric)) = (namespace, metric) {
        check.sidecar_metric(&child(path, "MetricName"), namespace, metric);
    }
    match (alarm.get("Statistic"), alarm.get("ExtendedStatistic")) {
        (Some(_), Some(_)) => check.report(
            &child(path, "ExtendedStatistic"),
            "Statistic or ExtendedStatistic, not both",
        ),
        (None, None) => check.report(
            &child(path, "Statistic"),
            "required: Statistic (SampleCount, Average, Sum, Minimum, Maximum) or ExtendedStatistic (p99, ...)",
        ),
        (Some(stat), None) => {
            if !stat.as_str().is_some_and(|s| BASIC_STATISTICS.contains(&s)) {
                check.report(
                    &child(path, "Statistic"),
                    format!(
                        "{stat} is not a statistic: one of {} (percentiles go in ExtendedStatistic)",
                        BASIC_STATISTICS.join(", ")
                    ),
                );
            }
        }
        (None, Some(stat)) => {
            if !stat.as_str().is_some_and(is_extended_statistic) {
                check.report(
                    &child(path, "ExtendedStatistic"),
                    format!("{stat} is not an extended statistic such as p99, p99.9, tm90, IQM, TM(10%:90%)"),
                );
            }
        }
    }
    if let Some(dimensions) = alarm.get("Dimensions") {
        self::dimensions(check, &child(path, "Dimensions"), dimensions);
    }
    match alarm.get("Period") {
        Some(period) => alarm_period(check, &child(path, "Period"), period),
        None => {
            check.report(
                &child(path, "Period"),
                "required: 10, 20, 30 or a multiple of 60 (seconds)",
            );
            None
        }
    }
}

/// The metric-math form; returns the longest period of its metrics.
fn queries(check: &mut Checker<'_>, path: &str, value: &Value) -> Option<i64> {
    let Some(queries) = value.as_array().filter(|q| !q.is_empty()) else {
        check.report(path, "a non-empty array of metric queries");
        return None;
    };
    let mut period: Option<i64> = None;
    let mut returning = 0;
    let mut ids = std::collections::BTreeSet::new();
    for (i, query) in queries.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let Some(query) = query.as_object() else {
            check.report(&path, "a metric query is an object");
            continue;
        };
        unknown_keys(
            check,
            &path,
            query,
            &[
                "Id",
                "MetricStat",
                "Expression",
                "Label",
                "ReturnData",
                "Period",
                "AccountId",
            ],
        );
        if let Some(id) = required_string(check, &path, query, "Id") {
            if !is_query_id(id) {
                check.report(
                    &child(&path, "Id"),
                    "an id starts with a lower-case letter, then letters, digits and _",
                );
            } else if !ids.insert(id) {
                check.report(&child(&path, "Id"), format!("id {id:?} is used twice"));
            }
        }
        optional_string(check, &path, query, "Label");
        match query.get("ReturnData") {
            None => returning += 1,
            Some(Value::Bool(true)) => returning += 1,
            Some(Value::Bool(false)) => {}
            Some(_) => check.report(&child(&path, "ReturnData"), "must be true or false"),
        }
        if let Some(p) = query.get("Period") {
            period = period.max(alarm_period(check, &child(&path, "Period"), p));
        }
        match (query.get("MetricStat"), query.get("Expression")) {
            (Some(_), Some(_)) | (None, None) => {
                check.report(&path, "a metric query has either MetricStat or Expression")
            }
            (Some(stat), None) => {
                period = period.max(metric_stat(check, &child(&path, "MetricStat"), stat));
            }
            (None, Some(expression)) => match expression.as_str() {
                Some(e) if e.contains("SEARCH(") => check.report(
                    &child(&path, "Expression"),
                    "alarms cannot use SEARCH expressions (dashboards can)",
                ),
                Some(e) if !e.trim().is_empty() => {}
                _ => check.report(&child(&path, "Expression"), "must be a non-empty string"),
            },
        }
    }
    if returning != 1 {
        check.report(
            path,
            format!(
                "{returning} queries return data; exactly one must (set ReturnData false on the others)"
            ),
        );
    }
    period
}

fn metric_stat(check: &mut Checker<'_>, path: &str, value: &Value) -> Option<i64> {
    let Some(stat) = value.as_object() else {
        check.report(path, "MetricStat is an object: {Metric, Period, Stat}");
        return None;
    };
    unknown_keys(check, path, stat, &["Metric", "Period", "Stat", "Unit"]);
    one_of(check, path, stat, "Unit", &UNITS);
    match stat.get("Stat") {
        Some(s) => statistic(check, &child(path, "Stat"), s),
        None => check.report(&child(path, "Stat"), "required"),
    }
    let metric_path = child(path, "Metric");
    match stat.get("Metric").and_then(Value::as_object) {
        Some(metric) => {
            unknown_keys(
                check,
                &metric_path,
                metric,
                &["Namespace", "MetricName", "Dimensions"],
            );
            let namespace = required_string(check, &metric_path, metric, "Namespace");
            let name = required_string(check, &metric_path, metric, "MetricName");
            if let (Some(namespace), Some(name)) = (namespace, name) {
                check.sidecar_metric(&child(&metric_path, "MetricName"), namespace, name);
            }
            if let Some(dimensions) = metric.get("Dimensions") {
                self::dimensions(check, &child(&metric_path, "Dimensions"), dimensions);
            }
        }
        None => check.report(
            &metric_path,
            "required: {Namespace, MetricName, Dimensions}",
        ),
    }
    match stat.get("Period") {
        Some(period) => alarm_period(check, &child(path, "Period"), period),
        None => {
            check.report(&child(path, "Period"), "required");
            None
        }
    }
}

fn dimensions(check: &mut Checker<'_>, path: &str, value: &Value) {
    let Some(dimensions) = value.as_array() else {
        check.report(path, "an array of {\"Name\": ..., \"Value\": ...}");
        return;
    };
    if dimensions.len() > MAX_DIMENSIONS {
        check.report(path, format!("at most {MAX_DIMENSIONS} dimensions"));
    }
    for (i, dimension) in dimensions.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let Some(dimension) = dimension.as_object() else {
            check.report(&path, "a dimension is {\"Name\": ..., \"Value\": ...}");
            continue;
        };
        unknown_keys(check, &path, dimension, &["Name", "Value"]);
        for (key, max) in [("Name", 255), ("Value", 1024)] {
            if let Some(text) = required_string(check, &path, dimension, key)
                && (text.is_empty() || text.len() > max)
            {
                check.report(&child(&path, key), format!("1 to {max} characters"));
            }
        }
    }
}

fn actions(check: &mut Checker<'_>, path: &str, alarm: &Map<String, Value>, key: &str) {
    let Some(value) = alarm.get(key) else { return };
    let path = child(path, key);
    let Some(actions) = value.as_array() else {
        check.report(&path, "must be an array of ARNs");
        return;
    };
    if actions.len() > MAX_ACTIONS {
        check.report(
            &path,
            format!("{} actions; at most {MAX_ACTIONS} per state", actions.len()),
        );
    }
    for (i, action) in actions.iter().enumerate() {
        if !action
            .as_str()
            .is_some_and(|a| a.starts_with("arn:") || unfilled(a))
        {
            check.report(
                &format!("{path}[{i}]"),
                "an action is an ARN (SNS topic, Auto Scaling policy, EC2 action, ...)",
            );
        }
    }
}

/// Alarm periods: 10, 20, 30 or a multiple of 60 seconds.
fn alarm_period(check: &mut Checker<'_>, path: &str, value: &Value) -> Option<i64> {
    match value.as_i64() {
        Some(p)
            if matches!(p, 10 | 20 | 30) || (p > 0 && p % 60 == 0 && p <= i64::from(i32::MAX)) =>
        {
            Some(p)
        }
        _ => {
            check.report(
                path,
                format!("{value} is not a period: 10, 20, 30 or a multiple of 60 (seconds)"),
            );
            None
        }
    }
}
