//! The rules CloudWatch applies to dashboard bodies (`dashboards`) and PutMetricAlarm
//! (`alarms`), checked offline (pure, no I/O) so that `apply` never stops halfway on a bad
//! definition. Every problem is reported with its JSON path; checking goes on after the first.
//!
//! One more rule is the project's own: a metric of the sidecar's namespace must be one the
//! sidecar emits, by the catalog its publisher uses ([`names::ALL`]).

mod alarms;
mod dashboards;

use serde_json::{Map, Value};

pub(super) use self::alarms::alarm;
#[cfg(feature = "preview")]
pub(super) use self::dashboards::resolve_row;
pub(super) use self::dashboards::{dashboard, dashboard_name};
use super::{Location, Problem};
use crate::metrics::names::cloudwatch as names;

/// Characters in a dashboard or alarm name.
const MAX_NAME: usize = 255;
/// Dimensions per metric.
const MAX_DIMENSIONS: usize = 30;
const BASIC_STATISTICS: [&str; 5] = ["SampleCount", "Average", "Sum", "Minimum", "Maximum"];

/// Collects the problems of one file.
#[derive(Debug)]
pub(super) struct Checker<'a> {
    file: &'a str,
    /// The sidecar's metrics namespace.
    namespace: &'a str,
    problems: &'a mut Vec<Problem>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(file: &'a str, namespace: &'a str, problems: &'a mut Vec<Problem>) -> Self {
        Self {
            file,
            namespace,
            problems,
        }
    }

    fn report(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_owned(),
            location: Location::Path(path.to_owned()),
            message: message.into(),
        });
    }

    fn report_file(&mut self, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_owned(),
            location: Location::File,
            message: message.into(),
        });
    }

    /// A metric of the sidecar's namespace must be one it emits.
    fn sidecar_metric(&mut self, path: &str, namespace: &str, metric: &str) {
        if namespace == self.namespace && !names::ALL.contains(&metric) {
            self.report(
                path,
                format!(
                    "the sidecar does not emit {metric:?} in {namespace}; it emits {}",
                    names::ALL.join(", ")
                ),
            );
        }
    }

    /// Metric names a `SEARCH(...)` in `expression` looks for in the sidecar's namespace.
    fn searched(&mut self, path: &str, expression: &str) {
        for (namespace, metric) in searched_metrics(expression) {
            self.sidecar_metric(path, &namespace, &metric);
        }
    }
}

/// `path.key`, or `path["key"]` when the key is not an identifier.
pub(super) fn child(path: &str, key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{path}.{key}")
    } else {
        format!("{path}[{key:?}]")
    }
}

/// Any statistic a graph or a metric query accepts.
fn statistic(check: &mut Checker<'_>, path: &str, value: &Value) {
    if !value
        .as_str()
        .is_some_and(|s| BASIC_STATISTICS.contains(&s) || is_extended_statistic(s))
    {
        check.report(
            path,
            format!(
                "{value} is not a statistic: {}, or a percentile such as p99",
                BASIC_STATISTICS.join(", ")
            ),
        );
    }
}

/// `pNN`, `tmNN`, `wmNN`, `tcNN`, `tsNN` (0 to 100, decimals allowed), `IQM`, and the
/// ranges `TM(a:b)`, `WM(a:b)`, `TC(a:b)`, `TS(a:b)`, `PR(a:b)`.
pub(super) fn is_extended_statistic(stat: &str) -> bool {
    fn percent(n: &str) -> bool {
        !n.is_empty()
            && n.chars().all(|c| c.is_ascii_digit() || c == '.')
            && n.parse::<f64>().is_ok_and(|v| (0.0..=100.0).contains(&v))
    }
    fn bound(b: &str) -> bool {
        b.is_empty()
            || b.strip_suffix('%')
                .map_or_else(|| b.parse::<f64>().is_ok_and(f64::is_finite), percent)
    }
    if stat == "IQM" {
        return true;
    }
    for prefix in ["tm", "wm", "tc", "ts", "p"] {
        if let Some(n) = stat.strip_prefix(prefix) {
            return percent(n);
        }
    }
    for prefix in ["TM", "WM", "TC", "TS", "PR"] {
        if let Some(inner) = stat
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('('))
            .and_then(|r| r.strip_suffix(')'))
        {
            return inner
                .split_once(':')
                .is_some_and(|(a, b)| !(a.is_empty() && b.is_empty()) && bound(a) && bound(b));
        }
    }
    false
}

/// Whether `text` still holds a placeholder (already reported; no second problem for it).
fn unfilled(text: &str) -> bool {
    !super::vars::placeholders(text).is_empty()
}

fn is_query_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && id.len() <= 255
}

/// (namespace, metric name) of every `MetricName=` term in the `SEARCH('{Namespace,...} ...')`
/// calls of an expression; searches without a schema or a metric name yield nothing.
pub(super) fn searched_metrics(expression: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = expression;
    while let Some(at) = rest.find("SEARCH(") {
        rest = &rest[at + "SEARCH(".len()..];
        let Some(open) = rest.find('\'') else { break };
        let Some(len) = rest[open + 1..].find('\'') else {
            break;
        };
        let query = &rest[open + 1..open + 1 + len];
        rest = &rest[open + 1 + len + 1..];
        let Some(schema) = query.trim_start().strip_prefix('{') else {
            continue;
        };
        let namespace = schema
            .split([',', '}'])
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches('"');
        let mut terms = query;
        while let Some(at) = terms.find("MetricName=") {
            terms = &terms[at + "MetricName=".len()..];
            let name = match terms.strip_prefix('"') {
                Some(quoted) => quoted.split('"').next(),
                None => terms.split(|c: char| c.is_whitespace() || c == ')').next(),
            };
            if let Some(name) = name.filter(|n| !n.is_empty()) {
                out.push((namespace.to_owned(), name.to_owned()));
            }
        }
    }
    out
}

fn unknown_keys(check: &mut Checker<'_>, path: &str, map: &Map<String, Value>, known: &[&str]) {
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            check.report(
                &child(path, key),
                format!("unknown key; expected one of {}", known.join(", ")),
            );
        }
    }
}

fn required_string<'v>(
    check: &mut Checker<'_>,
    path: &str,
    map: &'v Map<String, Value>,
    key: &str,
) -> Option<&'v str> {
    match map.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        Some(Value::String(_)) => {
            check.report(&child(path, key), "must not be empty");
            None
        }
        Some(_) => {
            check.report(&child(path, key), "must be a string");
            None
        }
        None => {
            check.report(&child(path, key), "required");
            None
        }
    }
}

fn optional_string<'v>(
    check: &mut Checker<'_>,
    path: &str,
    map: &'v Map<String, Value>,
    key: &str,
) -> Option<&'v str> {
    match map.get(key) {
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            check.report(&child(path, key), "must be a string");
            None
        }
        None => None,
    }
}

fn one_of(
    check: &mut Checker<'_>,
    path: &str,
    map: &Map<String, Value>,
    key: &str,
    allowed: &[&str],
) {
    if let Some(value) = map.get(key)
        && !value.as_str().is_some_and(|v| allowed.contains(&v))
    {
        check.report(
            &child(path, key),
            format!("{value} is not one of {}", allowed.join(", ")),
        );
    }
}

fn integer_in(
    check: &mut Checker<'_>,
    path: &str,
    map: &Map<String, Value>,
    key: &str,
    min: i64,
    max: i64,
) -> Option<i64> {
    let value = map.get(key)?;
    match value.as_i64() {
        Some(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            check.report(
                &child(path, key),
                format!("{value} is not an integer from {min} to {max}"),
            );
            None
        }
    }
}
