//! The data behind a preview, read from CloudWatch: GetMetricData for metric rows (SEARCH
//! and metric math as the data source answers them; where it returns nothing, SEARCH is
//! expanded here with ListMetrics and math evaluated by `math`), DescribeAlarms for alarm
//! widgets, and for log widgets FilterLogEvents with the query's simple `filter`s applied
//! here: an approximation of Logs Insights, and the widget says so.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricDataResult, MetricStat};
use serde_json::Value;

use super::super::api::{PREVIEW_ATTEMPTS, Pacer, READ_INTERVAL, call};
use super::super::{Api, ProvisionError};
use super::data::{AlarmState, DashboardData, Fetched, LogLines, Series, Window};
use super::math::{self, Points};
use super::model::{Kind, MetricWidget, Query, Row, Widget, alarm_name};

/// Metrics one SEARCH expands to, at most (CloudWatch's own cap is 500).
const MAX_SEARCH_RESULTS: usize = 100;
/// Queries per GetMetricData call.
const MAX_QUERIES: usize = 500;
/// Log events read per widget before filtering.
const MAX_LOG_EVENTS: usize = 5000;
/// Lines shown per log widget.
const MAX_LOG_LINES: usize = 50;

/// CloudWatch and CloudWatch Logs, read only.
#[derive(Debug)]
pub(crate) struct Source {
    api: Api,
    logs: aws_sdk_cloudwatchlogs::Client,
    log_reads: Pacer,
}

impl Source {
    pub(crate) async fn new(region: Option<&str>, endpoint: Option<&str>) -> Self {
        let config =
            crate::sinks::sdk_config(region, endpoint, crate::provision::api::CALL_TIMEOUT).await;
        Self {
            api: Api::for_preview(aws_sdk_cloudwatch::Client::new(&config)),
            logs: aws_sdk_cloudwatchlogs::Client::new(&config),
            log_reads: Pacer::new(READ_INTERVAL).attempts(PREVIEW_ATTEMPTS),
        }
    }

    /// Everything one dashboard's widgets draw, over `window`.
    pub(crate) async fn dashboard(&mut self, widgets: &[Widget], window: Window) -> DashboardData {
        let mut fetched = Vec::with_capacity(widgets.len());
        for widget in widgets {
            fetched.push(match &widget.kind {
                Kind::Metric(metric) => self.metric(metric, window).await,
                Kind::Alarms { arns } => self.alarms(arns).await,
                Kind::Log { query, .. } => self.log(query, window).await,
                _ => Fetched::Nothing,
            });
        }
        DashboardData {
            window: Some(window),
            widgets: fetched,
        }
    }

    async fn alarms(&mut self, arns: &[String]) -> Fetched {
        let names: Vec<String> = arns.iter().map(|a| alarm_name(a).to_owned()).collect();
        match self.api.alarm_states(&names).await {
            Ok(states) => Fetched::Alarms(
                names
                    .into_iter()
                    .map(|name| AlarmState {
                        state: states
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, s)| s.clone()),
                        name,
                    })
                    .collect(),
            ),
            Err(error) => Fetched::Failed(short(&error)),
        }
    }

    async fn metric(&mut self, widget: &MetricWidget, window: Window) -> Fetched {
        // Alignment to the period keeps every series on the same timestamps (math needs it).
        let period = widget.period.max(60);
        let window = Window {
            start: window.start.div_euclid(period) * period,
            end: window.end.div_euclid(period) * period + period,
        };
        let queries: Vec<MetricDataQuery> = widget.rows.iter().map(query).collect();
        let mut notes = Vec::new();
        let results = match self
            .api
            .metric_data(queries.clone(), window.start, window.end)
            .await
        {
            Ok(results) => results,
            // The emulator fails a whole request that asks for a percentile of data it has
            // (a 500, or a body the SDK cannot read): ask again without them, and those rows
            // say why they are empty.
            Err(error) => {
                let kept: Vec<MetricDataQuery> = queries
                    .into_iter()
                    .zip(&widget.rows)
                    .filter(|(_, row)| !percentile_row(row))
                    .map(|(query, _)| query)
                    .collect();
                let retried = if kept.len() < widget.rows.len() && !kept.is_empty() {
                    self.api.metric_data(kept, window.start, window.end).await
                } else {
                    Err(error)
                };
                match retried {
                    Ok(results) => results,
                    Err(error) => {
                        // Rows asking for percentiles say why they are empty themselves.
                        if !widget.rows.iter().all(percentile_row) {
                            notes.push(short(&error));
                        }
                        Vec::new()
                    }
                }
            }
        };
        // Every query's series by id (hidden ones too: math refers to them).
        let mut by_id: BTreeMap<String, Vec<(String, Points)>> = BTreeMap::new();
        for result in &results {
            let points: Points = result
                .timestamps()
                .iter()
                .zip(result.values())
                .map(|(t, v)| (t.secs(), *v))
                .filter(|(_, v)| v.is_finite())
                .collect();
            by_id
                .entry(result.id().unwrap_or_default().to_owned())
                .or_default()
                .push((result.label().unwrap_or_default().to_owned(), points));
        }
        let has_data = |by_id: &BTreeMap<String, Vec<(String, Points)>>, id: &str| {
            by_id
                .get(id)
                .is_some_and(|list| list.iter().any(|(_, p)| !p.is_empty()))
        };
        // Metric rows first (math refers to them), then expressions, each in row order.
        let mut unanswered: BTreeMap<String, String> = BTreeMap::new();
        for pass in [false, true] {
            for row in &widget.rows {
                if matches!(row.query, Query::Expression(_)) != pass || has_data(&by_id, &row.id) {
                    continue;
                }
                let answer = match &row.query {
                    // The emulator matches dimensions only in the order they were
                    // published; ListMetrics gives that order.
                    Query::Metric { stat, .. } if is_percentile(stat) => Err(format!(
                        "no {stat} values (the emulator computes no percentiles)"
                    )),
                    Query::Metric {
                        namespace,
                        name,
                        dimensions,
                        stat,
                    } => {
                        let search = Search {
                            namespace: namespace.clone(),
                            schema: Some(dimensions.iter().map(|(k, _)| k.clone()).collect()),
                            metric: Some(name.clone()),
                            equals: dimensions.clone(),
                            words: Vec::new(),
                            stat: stat.clone(),
                        };
                        match self.search(&search, row.period, window).await {
                            Ok(list) if list.iter().any(|(_, p)| !p.is_empty()) => Ok(list
                                .into_iter()
                                .map(|(_, points)| (String::new(), points))
                                .collect()),
                            _ => Err("no data".to_owned()),
                        }
                    }
                    Query::Expression(expression) => {
                        self.local(row, expression, &by_id, window).await
                    }
                };
                match answer {
                    Ok(list) => {
                        by_id.insert(row.id.clone(), list);
                    }
                    Err(why) => {
                        unanswered.insert(row.id.clone(), why);
                    }
                }
            }
        }
        let mut series = Vec::new();
        for row in widget.rows.iter().filter(|r| r.visible) {
            if let Some(why) = unanswered.get(&row.id)
                && why != "no data"
            {
                let what = match (&row.query, &row.label) {
                    (Query::Expression(e), _) if !is_search(&row.query) => short_expression(e),
                    _ => row.default_label(),
                };
                notes.push(format!("{what}: {why}"));
            }
            let list = by_id
                .get(&row.id)
                .cloned()
                .unwrap_or_else(|| vec![(String::new(), Points::new())]);
            for (label, points) in list {
                series.push(Series {
                    label: match (&row.label, label.is_empty()) {
                        (Some(own), false) if is_search(&row.query) => format!("{own} {label}"),
                        (Some(own), _) => own.clone(),
                        (None, false) => label,
                        (None, true) => row.default_label(),
                    },
                    points: points.into_iter().collect(),
                    right: row.right,
                    color: row.color.clone(),
                });
            }
        }
        Fetched::Metric { series, notes }
    }

    /// An expression the data source left empty: SEARCH expanded with ListMetrics, math
    /// evaluated over the other rows' series.
    async fn local(
        &mut self,
        row: &Row,
        expression: &str,
        by_id: &BTreeMap<String, Vec<(String, Points)>>,
        window: Window,
    ) -> Result<Vec<(String, Points)>, String> {
        if let Some(search) = Search::parse(expression) {
            return self.search(&search, row.period, window).await;
        }
        let single: BTreeMap<String, Points> = by_id
            .iter()
            .filter_map(|(id, list)| match list.as_slice() {
                [(_, points)] => Some((id.clone(), points.clone())),
                _ => None,
            })
            .collect();
        let points = math::evaluate(expression, &single)
            .map_err(|why| format!("would show this expression ({why})"))?;
        Ok(vec![(String::new(), points)])
    }

    async fn search(
        &mut self,
        search: &Search,
        period: i64,
        window: Window,
    ) -> Result<Vec<(String, Points)>, String> {
        let found = self
            .api
            .list_metrics(
                &search.namespace,
                search.metric.as_deref(),
                &search.equals,
                MAX_SEARCH_RESULTS * 4,
            )
            .await
            .map_err(|e| format!("ListMetrics: {}", short(&e)))?;
        let mut metrics: Vec<Metric> = found.into_iter().filter(|m| search.matches(m)).collect();
        metrics.sort_by_key(dimensions);
        metrics.dedup_by_key(|m| (m.metric_name().map(str::to_owned), dimensions(m)));
        metrics.truncate(MAX_SEARCH_RESULTS);
        if metrics.is_empty() {
            return Err("SEARCH found no metric".to_owned());
        }
        // Labels: the dimension values that differ between the metrics found.
        let all: Vec<Vec<(String, String)>> = metrics.iter().map(dimensions).collect();
        let varying: Vec<&String> = all[0]
            .iter()
            .map(|(k, _)| k)
            .filter(|k| {
                let values: std::collections::BTreeSet<Option<&String>> = all
                    .iter()
                    .map(|dims| dims.iter().find(|(n, _)| n == *k).map(|(_, v)| v))
                    .collect();
                values.len() > 1
            })
            .collect();
        let mut out = Vec::new();
        for chunk in metrics.chunks(MAX_QUERIES) {
            let queries: Vec<MetricDataQuery> = chunk
                .iter()
                .enumerate()
                .map(|(i, metric)| {
                    MetricDataQuery::builder()
                        .id(format!("s{i}"))
                        .metric_stat(
                            MetricStat::builder()
                                .metric(metric.clone())
                                .period(period as i32)
                                .stat(&search.stat)
                                .build(),
                        )
                        .return_data(true)
                        .build()
                })
                .collect();
            let results = self
                .api
                .metric_data(queries, window.start, window.end)
                .await
                .map_err(|e| format!("GetMetricData: {}", short(&e)))?;
            for (i, metric) in chunk.iter().enumerate() {
                let id = format!("s{i}");
                let points: Points = results
                    .iter()
                    .filter(|r| r.id() == Some(id.as_str()))
                    .flat_map(result_points)
                    .collect();
                let dims = dimensions(metric);
                let label = if varying.is_empty() {
                    dims.iter()
                        .map(|(_, v)| v.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                } else {
                    dims.iter()
                        .filter(|(k, _)| varying.contains(&k))
                        .map(|(_, v)| v.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                out.push((label, points));
            }
        }
        Ok(out)
    }

    async fn log(&mut self, query: &str, window: Window) -> Fetched {
        let parsed = LogQuery::parse(query);
        let Some(group) = parsed.group.clone() else {
            return Fetched::Failed("no SOURCE '<log group>' in the query".to_owned());
        };
        let mut events: Vec<(i64, String)> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let client = &self.logs;
            let page = call(&mut self.log_reads, "FilterLogEvents", &group, || {
                client
                    .filter_log_events()
                    .log_group_name(&group)
                    .start_time(window.start * 1000)
                    .end_time(window.end * 1000)
                    .set_next_token(token.clone())
                    .send()
            })
            .await;
            let page = match page {
                Ok(page) => page,
                Err(error) if error.code.contains("NotFound") => {
                    return Fetched::Logs(LogLines {
                        columns: parsed.columns(),
                        rows: Vec::new(),
                        note: format!("log group {group} does not exist"),
                    });
                }
                Err(error) => return Fetched::Failed(short(&error)),
            };
            events.extend(page.events().iter().map(|e| {
                (
                    e.timestamp().unwrap_or(0),
                    e.message().unwrap_or_default().to_owned(),
                )
            }));
            match page.next_token() {
                Some(next)
                    if !next.is_empty()
                        && token.as_deref() != Some(next)
                        && events.len() < MAX_LOG_EVENTS =>
                {
                    token = Some(next.to_owned());
                }
                _ => break,
            }
        }
        Fetched::Logs(parsed.apply(&group, events))
    }
}

fn query(row: &Row) -> MetricDataQuery {
    // Hidden rows are returned too: the emulator evaluates no math, so `math` needs them.
    let builder = MetricDataQuery::builder().id(&row.id).return_data(true);
    let builder = match &row.query {
        Query::Expression(expression) => builder.expression(expression).period(row.period as i32),
        Query::Metric {
            namespace,
            name,
            dimensions,
            stat,
        } => {
            let mut metric = Metric::builder().namespace(namespace).metric_name(name);
            for (key, value) in dimensions {
                metric = metric.dimensions(Dimension::builder().name(key).value(value).build());
            }
            builder.metric_stat(
                MetricStat::builder()
                    .metric(metric.build())
                    .period(row.period as i32)
                    .stat(stat)
                    .build(),
            )
        }
    };
    builder.build()
}

fn result_points(result: &MetricDataResult) -> Vec<(i64, f64)> {
    result
        .timestamps()
        .iter()
        .zip(result.values())
        .map(|(t, v)| (t.secs(), *v))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

fn dimensions(metric: &Metric) -> Vec<(String, String)> {
    let mut dims: Vec<(String, String)> = metric
        .dimensions()
        .iter()
        .map(|d| {
            (
                d.name().unwrap_or_default().to_owned(),
                d.value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    dims.sort();
    dims
}

fn percentile_row(row: &Row) -> bool {
    matches!(&row.query, Query::Metric { stat, .. } if is_percentile(stat))
}

fn is_percentile(stat: &str) -> bool {
    stat.starts_with(['p', 'P']) && stat[1..].parse::<f64>().is_ok()
}

fn is_search(query: &Query) -> bool {
    matches!(query, Query::Expression(e) if e.trim_start().starts_with("SEARCH("))
}

fn short(error: &ProvisionError) -> String {
    let mut text = format!("{} failed: {}", error.operation, error.message);
    text.truncate(160);
    text
}

fn short_expression(expression: &str) -> String {
    let mut text: String = expression.chars().take(60).collect();
    if text.len() < expression.len() {
        text.push('…');
    }
    text
}

/// What a SEARCH shows, for a legend drawn without data: `RequestCount per Method, Route`.
pub(super) fn describe_search(expression: &str) -> Option<String> {
    let search = Search::parse(expression)?;
    let fixed: Vec<&String> = search.equals.iter().map(|(k, _)| k).collect();
    let per: Vec<&str> = search
        .schema
        .iter()
        .flatten()
        .filter(|d| !fixed.contains(d))
        .map(String::as_str)
        .collect();
    let what = search.metric.as_deref().unwrap_or("metrics");
    Some(match (per.is_empty(), search.words.is_empty()) {
        (true, true) => format!("SEARCH: {what}"),
        (true, false) => format!("SEARCH: {what} matching {}", search.words.join(" ")),
        (false, _) => format!("SEARCH: {what} per {}", per.join(", ")),
    })
}

/// A `SEARCH('{Namespace,Dim,...} MetricName="X" Dim="v" token', 'Stat', period)`.
#[derive(Debug, Clone, PartialEq)]
struct Search {
    namespace: String,
    /// The schema's dimension names: a match has exactly these.
    schema: Option<Vec<String>>,
    metric: Option<String>,
    /// `Name="value"` terms.
    equals: Vec<(String, String)>,
    /// Free-text terms: each must appear in the name, a dimension value or the namespace.
    words: Vec<String>,
    stat: String,
}

impl Search {
    fn parse(expression: &str) -> Option<Self> {
        let inner = expression.trim().strip_prefix("SEARCH(")?;
        let (text, rest) = quoted(inner)?;
        let rest = rest.trim_start().strip_prefix(',')?;
        let (stat, _) = quoted(rest)?;
        let mut text = text.trim();
        let mut namespace = None;
        let mut schema = None;
        if let Some(body) = text.strip_prefix('{') {
            let (inside, after) = body.split_once('}')?;
            let mut parts = inside
                .split(',')
                .map(|p| p.trim().trim_matches('"').to_owned());
            namespace = parts.next();
            schema = Some(parts.collect());
            text = after;
        }
        let mut search = Self {
            namespace: namespace.unwrap_or_default(),
            schema,
            metric: None,
            equals: Vec::new(),
            words: Vec::new(),
            stat: stat.to_owned(),
        };
        for term in terms(text) {
            match term.split_once('=') {
                Some((key, value)) => {
                    let value = value.trim_matches('"').to_owned();
                    match key.trim_matches('"') {
                        "MetricName" => search.metric = Some(value),
                        "Namespace" => search.namespace = value,
                        key => search.equals.push((key.to_owned(), value)),
                    }
                }
                None => search.words.push(term.trim_matches('"').to_owned()),
            }
        }
        // ListMetrics needs a namespace: a SEARCH without a schema is left to CloudWatch.
        (!search.namespace.is_empty()).then_some(search)
    }

    fn matches(&self, metric: &Metric) -> bool {
        let dims = dimensions(metric);
        if let Some(schema) = &self.schema {
            let mut names: Vec<&str> = dims.iter().map(|(k, _)| k.as_str()).collect();
            let mut wanted: Vec<&str> = schema.iter().map(String::as_str).collect();
            names.sort_unstable();
            wanted.sort_unstable();
            if names != wanted {
                return false;
            }
        }
        let haystack: Vec<String> = dims
            .iter()
            .map(|(_, v)| v.to_lowercase())
            .chain(metric.metric_name().map(str::to_lowercase))
            .chain(std::iter::once(self.namespace.to_lowercase()))
            .collect();
        self.equals
            .iter()
            .all(|(k, v)| dims.iter().any(|(n, value)| n == k && value == v))
            && self
                .words
                .iter()
                .all(|w| haystack.iter().any(|h| h.contains(&w.to_lowercase())))
    }
}

/// The text between the first pair of single quotes, and what follows it.
fn quoted(text: &str) -> Option<(&str, &str)> {
    let start = text.find('\'')? + 1;
    let end = start + text[start..].find('\'')?;
    Some((&text[start..end], &text[end + 1..]))
}

/// Space-separated terms, double quotes keeping spaces.
fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The parts of a Logs Insights query the approximation understands.
#[derive(Debug, Clone, Default, PartialEq)]
struct LogQuery {
    group: Option<String>,
    fields: Vec<String>,
    /// OR of ANDs of (field, equal?, value); `None`: a filter it cannot read (not applied).
    filter: Option<Vec<Vec<(String, bool, String)>>>,
    has_filter: bool,
    descending: bool,
    limit: usize,
}

impl LogQuery {
    fn parse(query: &str) -> Self {
        let mut parsed = Self {
            descending: true,
            limit: MAX_LOG_LINES,
            filter: Some(Vec::new()),
            ..Self::default()
        };
        for command in query.split('|') {
            let command = command.trim();
            let (verb, rest) = command
                .split_once(char::is_whitespace)
                .unwrap_or((command, ""));
            let rest = rest.trim();
            match verb.to_ascii_lowercase().as_str() {
                "source" => parsed.group = quoted(rest).map(|(g, _)| g.to_owned()),
                "fields" | "display" => {
                    parsed.fields = rest
                        .split(',')
                        .map(|f| f.trim().to_owned())
                        .filter(|f| !f.is_empty())
                        .collect();
                }
                "filter" => {
                    parsed.has_filter = true;
                    parsed.filter = parsed.filter.take().and(filter(rest));
                }
                "sort" => parsed.descending = !rest.ends_with("asc"),
                "limit" => {
                    parsed.limit = rest.parse().unwrap_or(MAX_LOG_LINES).min(MAX_LOG_LINES);
                }
                _ => {}
            }
        }
        parsed
    }

    fn columns(&self) -> Vec<String> {
        if self.fields.is_empty() {
            vec!["@timestamp".to_owned(), "@message".to_owned()]
        } else {
            self.fields.clone()
        }
    }

    fn apply(&self, group: &str, mut events: Vec<(i64, String)>) -> LogLines {
        let read = events.len();
        events.sort_by_key(|(t, _)| *t);
        if self.descending {
            events.reverse();
        }
        let columns = self.columns();
        let mut rows = Vec::new();
        for (timestamp, message) in &events {
            let json: Option<Value> = serde_json::from_str(message).ok();
            let field = |name: &str| -> String {
                match name {
                    "@timestamp" => stamp(*timestamp),
                    "@message" => message.clone(),
                    name => match json.as_ref().and_then(|j| j.get(name)) {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Null) | None => String::new(),
                        Some(other) => other.to_string(),
                    },
                }
            };
            let keep = match &self.filter {
                Some(any) if self.has_filter => any
                    .iter()
                    .any(|all| all.iter().all(|(f, equal, v)| (field(f) == *v) == *equal)),
                _ => true,
            };
            if keep {
                rows.push(columns.iter().map(|c| field(c)).collect());
                if rows.len() >= self.limit {
                    break;
                }
            }
        }
        let filter_note = match (&self.filter, self.has_filter) {
            (_, false) => "",
            (Some(_), true) => ", its filter applied here",
            (None, true) => ", its filter NOT applied (too complex for the approximation)",
        };
        LogLines {
            columns,
            rows,
            note: format!(
                "approximation, not Logs Insights: FilterLogEvents on {group} ({read} events read{filter_note})"
            ),
        }
    }
}

/// `a = 'x' or b != "y" and ...` → OR of ANDs; `None` for anything else.
fn filter(text: &str) -> Option<Vec<Vec<(String, bool, String)>>> {
    let lower = text.to_ascii_lowercase();
    let mut any = Vec::new();
    for part in split_words(text, &lower, " or ") {
        let lower_part = part.to_ascii_lowercase();
        let mut all = Vec::new();
        for clause in split_words(part, &lower_part, " and ") {
            let (field, equal, value) = if let Some((f, v)) = clause.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = clause.split_once('=') {
                (f.trim_end_matches('='), true, v.trim_start_matches('='))
            } else {
                return None;
            };
            let value = value.trim();
            let unquoted = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))?;
            let field = field.trim();
            if field.is_empty() || field.contains(' ') {
                return None;
            }
            all.push((field.to_owned(), equal, unquoted.to_owned()));
        }
        any.push(all);
    }
    Some(any)
}

fn split_words<'a>(text: &'a str, lower: &str, separator: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find(separator) {
        parts.push(&text[from..from + at]);
        from += at + separator.len();
    }
    parts.push(&text[from..]);
    parts
}

/// `HH:MM:SS` (UTC) of a millisecond timestamp.
fn stamp(millis: i64) -> String {
    let seconds = millis.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_expressions_of_the_dashboards_parse() {
        let search = Search::parse(
            "SEARCH('{\"Demo/Api\",Environment,Method,Route,Service} MetricName=\"RequestCount\" \
             Environment=\"dev\" Service=\"api\"', 'Sum', 60)",
        )
        .unwrap();
        assert_eq!(search.namespace, "Demo/Api");
        assert_eq!(
            search.schema.as_deref().unwrap(),
            ["Environment", "Method", "Route", "Service"]
        );
        assert_eq!(search.metric.as_deref(), Some("RequestCount"));
        assert_eq!(search.equals.len(), 2);
        assert_eq!(search.stat, "Sum");
        let search = Search::parse(
            "SEARCH('{AWS/ApplicationELB,LoadBalancer} MetricName=\"HTTPCode_ELB_5XX_Count\" app-dev-alb', 'Sum', 60)",
        )
        .unwrap();
        assert_eq!(search.words, ["app-dev-alb"]);
    }

    #[test]
    fn log_queries_become_a_filter_and_columns() {
        let query = LogQuery::parse(
            "SOURCE '/demo/api' | fields @timestamp, level, message\n| filter level = 'error' or level = 'ERROR'\n| sort @timestamp desc\n| limit 2",
        );
        assert_eq!(query.group.as_deref(), Some("/demo/api"));
        let lines = query.apply(
            "/demo/api",
            vec![
                (1000, r#"{"level":"error","message":"a"}"#.to_owned()),
                (2000, r#"{"level":"info","message":"b"}"#.to_owned()),
                (3000, r#"{"level":"ERROR","message":"c"}"#.to_owned()),
                (4000, "not json".to_owned()),
            ],
        );
        assert_eq!(lines.columns, ["@timestamp", "level", "message"]);
        assert_eq!(
            lines.rows,
            [["00:00:03", "ERROR", "c"], ["00:00:01", "error", "a"]]
        );
        assert!(lines.note.contains("approximation"), "{}", lines.note);
    }

    #[test]
    fn a_filter_it_cannot_read_is_not_applied_and_says_so() {
        let query = LogQuery::parse("SOURCE 'g' | filter @message like /x/");
        let lines = query.apply("g", vec![(0, "y".to_owned())]);
        assert_eq!(lines.rows.len(), 1);
        assert!(lines.note.contains("NOT applied"), "{}", lines.note);
    }
}
