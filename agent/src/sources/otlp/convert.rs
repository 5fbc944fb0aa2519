//! OTLP → the agent's model. SERVER spans and `http.server.request.duration` histograms
//! become [`RequestTiming`]s; log records become JSON [`RawLine`]s. Pure functions (the only
//! state is the explicit [`CumulativeHistograms`]), so every rule is tested without a socket.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, HistogramDataPoint};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::{Map, Value as Json};

use crate::pipeline::event::{Level, RawLine};
use crate::request_metrics::RequestTiming;

/// Route label when neither `http.route` nor a `METHOD /template` span name gives one. Raw
/// paths (`url.path`, `http.target`) are never used: they would explode the label set.
pub const UNKNOWN_ROUTE: &str = "unknown";
/// Method label when the request's method is not known (the semantic conventions' value).
pub const OTHER_METHOD: &str = "_OTHER";
/// The semantic-conventions histogram of server request durations.
pub const DURATION_METRIC: &str = "http.server.request.duration";
/// Cumulative histogram series remembered for differencing; the least recently seen go first.
pub const MAX_CUMULATIVE_SERIES: usize = 10_000;

/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`: the point is a staleness marker.
const NO_RECORDED_VALUE: u32 = 1;
const HTTP_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// What a trace export held, for the debug log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanSummary {
    /// SERVER spans turned into timings.
    pub recorded: u64,
    /// Spans of another kind (client, internal, producer, consumer), ignored.
    pub not_server: u64,
    /// SERVER spans that were not HTTP, or had unusable times.
    pub skipped: u64,
}

/// Timings of the HTTP SERVER spans in `request`.
pub fn span_timings(request: &ExportTraceServiceRequest) -> (Vec<RequestTiming>, SpanSummary) {
    let mut timings = Vec::new();
    let mut summary = SpanSummary::default();
    let spans = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans);
    for span in spans {
        if span.kind != SpanKind::Server as i32 {
            summary.not_server += 1;
        } else if let Some(timing) = server_span_timing(span) {
            summary.recorded += 1;
            timings.push(timing);
        } else {
            summary.skipped += 1;
        }
    }
    (timings, summary)
}

/// One SERVER span → one timing. `None` for a span that is not HTTP (no `http.*`/`url.*`
/// attribute and no method in its name: a gRPC or messaging server span) or whose end
/// precedes its start.
pub fn server_span_timing(span: &Span) -> Option<RequestTiming> {
    let name_method = span
        .name
        .split(' ')
        .next()
        .filter(|token| HTTP_METHODS.contains(token));
    let is_http = name_method.is_some()
        || span
            .attributes
            .iter()
            .any(|kv| kv.key.starts_with("http.") || kv.key.starts_with("url."));
    if !is_http
        || span.start_time_unix_nano == 0
        || span.end_time_unix_nano < span.start_time_unix_nano
    {
        return None;
    }
    let labels = HttpLabels::of(&span.attributes);
    Some(RequestTiming {
        route: labels
            .route
            .or_else(|| route_from_name(&span.name))
            .unwrap_or(UNKNOWN_ROUTE)
            .to_owned(),
        method: labels
            .method
            .or(name_method)
            .unwrap_or(OTHER_METHOD)
            .to_owned(),
        status: labels.status.unwrap_or(0),
        latency_ms: (span.end_time_unix_nano - span.start_time_unix_nano) as f64 / 1e6,
        count: 1,
    })
}

/// `GET /users/{id}` → `/users/{id}`: the semantic conventions name server spans
/// `{method} {http.route}`. Anything else (`GET`, `handle request`) gives nothing.
fn route_from_name(name: &str) -> Option<&str> {
    let (method, route) = name.split_once(' ')?;
    (HTTP_METHODS.contains(&method)
        && route.starts_with('/')
        && !route.contains(char::is_whitespace))
    .then_some(route)
}

/// The request labels an HTTP span or data point carries, stable names first.
#[derive(Debug, Default)]
struct HttpLabels<'a> {
    route: Option<&'a str>,
    method: Option<&'a str>,
    status: Option<u16>,
}

impl<'a> HttpLabels<'a> {
    fn of(attributes: &'a [KeyValue]) -> Self {
        let text = |keys: &[&str]| {
            keys.iter()
                .find_map(|key| match attribute(attributes, key) {
                    Some(Value::StringValue(s)) if !s.is_empty() => Some(s.as_str()),
                    _ => None,
                })
        };
        let status = ["http.response.status_code", "http.status_code"]
            .iter()
            .find_map(|key| match attribute(attributes, key)? {
                Value::IntValue(code) => u16::try_from(*code).ok(),
                Value::StringValue(code) => code.trim().parse().ok(),
                _ => None,
            });
        Self {
            route: text(&["http.route"]),
            method: text(&["http.request.method", "http.method"]),
            status,
        }
    }

    fn timing(&self, latency_ms: f64, count: u64) -> RequestTiming {
        RequestTiming {
            route: self.route.unwrap_or(UNKNOWN_ROUTE).to_owned(),
            method: self.method.unwrap_or(OTHER_METHOD).to_owned(),
            status: self.status.unwrap_or(0),
            latency_ms,
            count,
        }
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

/// What a metrics export held, for the debug log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricSummary {
    /// Data points of the duration histogram seen.
    pub points: u64,
    /// Requests recorded (Σ of the timings' counts).
    pub requests: u64,
    /// First sightings of cumulative series that started before this receiver: they only
    /// set the baseline that later points are differenced against.
    pub baselines: u64,
    /// Points that could not be used (unknown unit or temporality, no buckets and no sum,
    /// out of order, counts that went down without a new start time).
    pub skipped: u64,
}

/// Timings from the `http.server.request.duration` histograms in `request`; other metrics
/// are ignored. Cumulative points are differenced against the previous point of their series
/// in `cumulative`, so each request is recorded once.
pub fn histogram_timings(
    request: &ExportMetricsServiceRequest,
    cumulative: &mut CumulativeHistograms,
) -> (Vec<RequestTiming>, MetricSummary) {
    let mut timings = Vec::new();
    let mut summary = MetricSummary::default();
    for resource_metrics in &request.resource_metrics {
        let resource = resource_metrics
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes[..]);
        for scope_metrics in &resource_metrics.scope_metrics {
            for metric in scope_metrics
                .metrics
                .iter()
                .filter(|m| m.name == DURATION_METRIC)
            {
                let Some(Data::Histogram(histogram)) = &metric.data else {
                    continue;
                };
                // The semantic conventions say seconds; older instrumentations used ms.
                let scale = match metric.unit.as_str() {
                    "s" | "" => 1000.0,
                    "ms" => 1.0,
                    _ => {
                        let points = histogram.data_points.len() as u64;
                        summary.points += points;
                        summary.skipped += points;
                        continue;
                    }
                };
                let temporality = histogram.aggregation_temporality;
                for point in &histogram.data_points {
                    summary.points += 1;
                    let counts = if point.flags & NO_RECORDED_VALUE != 0 {
                        Err(Unusable)
                    } else if temporality == AggregationTemporality::Delta as i32 {
                        Ok(Some(Counts::of(point)))
                    } else if temporality == AggregationTemporality::Cumulative as i32 {
                        let key = series_key(resource, scope_metrics.scope.as_ref(), point);
                        cumulative.increment(key, point)
                    } else {
                        Err(Unusable)
                    };
                    match counts {
                        Ok(Some(counts)) => {
                            let labels = HttpLabels::of(&point.attributes);
                            match push_timings(&counts, point, scale, &labels, &mut timings) {
                                Some(requests) => {
                                    summary.requests = summary.requests.saturating_add(requests);
                                }
                                None => summary.skipped += 1,
                            }
                        }
                        Ok(None) => summary.baselines += 1,
                        Err(Unusable) => summary.skipped += 1,
                    }
                }
            }
        }
    }
    (timings, summary)
}

/// A point (or the increment of a cumulative one) that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unusable;

/// Requests of one point, or of the interval between two cumulative points.
#[derive(Debug, Clone, PartialEq)]
struct Counts {
    count: u64,
    sum: Option<f64>,
    buckets: Vec<u64>,
}

impl Counts {
    fn of(point: &HistogramDataPoint) -> Self {
        Self {
            count: point.count,
            sum: point.sum,
            buckets: point.bucket_counts.clone(),
        }
    }
}

/// One timing per non-empty bucket, at the bucket's midpoint; without usable buckets, one
/// timing for all `count` requests at the mean. The requests recorded, `None` if neither is
/// possible (or the bucket counts overflow a `u64`: the point is nonsense).
fn push_timings(
    counts: &Counts,
    point: &HistogramDataPoint,
    scale: f64,
    labels: &HttpLabels<'_>,
    out: &mut Vec<RequestTiming>,
) -> Option<u64> {
    if counts.count == 0 {
        return Some(0);
    }
    let bounds = &point.explicit_bounds;
    let usable_buckets = !bounds.is_empty()
        && counts.buckets.len() == bounds.len() + 1
        && bounds.iter().all(|b| b.is_finite())
        && bounds.windows(2).all(|w| w[0] < w[1]);
    if usable_buckets {
        // Bucket counts that add up past u64 are no request counts at all.
        let total = counts
            .buckets
            .iter()
            .try_fold(0u64, |total, &count| total.checked_add(count))?;
        let last = bounds[bounds.len() - 1];
        for (i, &count) in counts.buckets.iter().enumerate().filter(|(_, c)| **c > 0) {
            let value = match i {
                0 => bounds[0].max(0.0) / 2.0,
                i if i < bounds.len() => (bounds[i - 1] + bounds[i]) / 2.0,
                // Overflow bucket: its values are at most `max`, and at least the last bound.
                _ => point
                    .max
                    .filter(|max| max.is_finite() && *max >= last)
                    .unwrap_or(last),
            };
            out.push(labels.timing(value * scale, count));
        }
        return Some(total);
    }
    match counts.sum {
        Some(sum) if sum.is_finite() && sum >= 0.0 => {
            out.push(labels.timing(sum / counts.count as f64 * scale, counts.count));
            Some(counts.count)
        }
        _ => None,
    }
}

/// Identifies a cumulative series: resource, scope, point attributes and start time. A
/// restarted process gets a new start time, hence a new series, never a negative difference.
fn series_key(
    resource: &[KeyValue],
    scope: Option<&InstrumentationScope>,
    point: &HistogramDataPoint,
) -> String {
    let mut key = String::new();
    let mut write_attributes = |attributes: &[KeyValue]| {
        let mut sorted: Vec<&KeyValue> = attributes.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        for kv in sorted {
            let _ = write!(key, "{:?}={:?};", kv.key, kv.value);
        }
        key.push('\n');
    };
    write_attributes(resource);
    write_attributes(&point.attributes);
    if let Some(scope) = scope {
        let _ = writeln!(key, "{:?} {:?}", scope.name, scope.version);
    }
    let _ = write!(key, "{}", point.start_time_unix_nano);
    key
}

/// The previous point of each cumulative series, bounded (least recently seen evicted).
#[derive(Debug)]
pub struct CumulativeHistograms {
    started_unix_nano: u64,
    max_series: usize,
    tick: u64,
    series: HashMap<String, Previous>,
    /// tick of last sighting → series, oldest first.
    by_age: BTreeMap<u64, String>,
}

#[derive(Debug)]
struct Previous {
    tick: u64,
    time_unix_nano: u64,
    bounds: Vec<f64>,
    counts: Counts,
}

impl CumulativeHistograms {
    /// `started_unix_nano`: when this receiver started. A series first seen with a start
    /// time after that is new, so its first point is recorded whole; one that started
    /// earlier holds requests from before, so its first point is only a baseline.
    pub fn new(started_unix_nano: u64, max_series: usize) -> Self {
        Self {
            started_unix_nano,
            max_series: max_series.max(1),
            tick: 0,
            series: HashMap::new(),
            by_age: BTreeMap::new(),
        }
    }

    /// Series remembered.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// No series remembered.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// What `point` adds to its series: `Ok(None)` for a baseline, `Err` for a point out of
    /// order or inconsistent with the previous one (which then becomes the baseline).
    fn increment(
        &mut self,
        key: String,
        point: &HistogramDataPoint,
    ) -> Result<Option<Counts>, Unusable> {
        self.tick += 1;
        let current = Counts::of(point);
        if let Some(previous) = self.series.get_mut(&key) {
            if point.time_unix_nano != 0 && point.time_unix_nano <= previous.time_unix_nano {
                // A retried or reordered export: its requests were counted already.
                return Err(Unusable);
            }
            self.by_age.remove(&previous.tick);
            self.by_age.insert(self.tick, key);
            previous.tick = self.tick;
            previous.time_unix_nano = point.time_unix_nano;
            let same_layout = previous.bounds == point.explicit_bounds
                && previous.counts.buckets.len() == current.buckets.len();
            let increment = same_layout
                .then(|| {
                    let count = current.count.checked_sub(previous.counts.count)?;
                    let buckets = current
                        .buckets
                        .iter()
                        .zip(&previous.counts.buckets)
                        .map(|(now, before)| now.checked_sub(*before))
                        .collect::<Option<Vec<u64>>>()?;
                    let sum = current
                        .sum
                        .zip(previous.counts.sum)
                        .map(|(now, before)| (now - before).max(0.0));
                    Some(Counts {
                        count,
                        sum,
                        buckets,
                    })
                })
                .flatten();
            previous.bounds.clone_from(&point.explicit_bounds);
            previous.counts = current;
            return increment.map(Some).ok_or(Unusable);
        }
        while self.series.len() >= self.max_series {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.series.remove(&oldest);
        }
        let fresh =
            point.start_time_unix_nano != 0 && point.start_time_unix_nano >= self.started_unix_nano;
        let increment = fresh.then(|| current.clone());
        self.by_age.insert(self.tick, key.clone());
        self.series.insert(
            key,
            Previous {
                tick: self.tick,
                time_unix_nano: point.time_unix_nano,
                bounds: point.explicit_bounds.clone(),
                counts: current,
            },
        );
        Ok(increment)
    }
}

/// One JSON line per log record.
pub fn log_lines(request: &ExportLogsServiceRequest) -> Vec<RawLine> {
    let mut lines = Vec::new();
    for resource_logs in &request.resource_logs {
        let resource = resource_logs
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes[..]);
        let text = |key| match attribute(resource, key) {
            Some(Value::StringValue(s)) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        };
        let service = text("service.name");
        let container: Option<Arc<str>> = text("container.name").map(Arc::from);
        for record in resource_logs.scope_logs.iter().flat_map(|s| &s.log_records) {
            lines.push(log_line(record, service, container.clone()));
        }
    }
    lines
}

/// `{"timestamp", "level", "message", "service", "trace_id", "span_id", ...attributes}`;
/// the pipeline then reads its time and level like any JSON line. An attribute whose key is
/// one of those fields is left out rather than overwrite it.
pub fn log_line(record: &LogRecord, service: Option<&str>, container: Option<Arc<str>>) -> RawLine {
    let mut object = Map::new();
    let time_unix_nano = match record.time_unix_nano {
        0 => record.observed_time_unix_nano,
        time => time,
    };
    if time_unix_nano != 0 {
        object.insert("timestamp".into(), Json::String(rfc3339(time_unix_nano)));
    }
    if let Some(level) = severity_level(&record.severity_text, record.severity_number) {
        object.insert("level".into(), Json::String(level));
    }
    let message = match record.body.as_ref().map(any_value_json) {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(text)) => text,
        Some(other) => other.to_string(),
    };
    object.insert("message".into(), Json::String(message));
    if let Some(service) = service {
        object.insert("service".into(), Json::String(service.to_owned()));
    }
    for (key, id) in [("trace_id", &record.trace_id), ("span_id", &record.span_id)] {
        if id.iter().any(|b| *b != 0) {
            object.insert(key.into(), Json::String(hex(id)));
        }
    }
    if !record.event_name.is_empty() {
        object.insert("event_name".into(), Json::String(record.event_name.clone()));
    }
    for kv in &record.attributes {
        if !object.contains_key(&kv.key) {
            let value = kv.value.as_ref().map_or(Json::Null, any_value_json);
            object.insert(kv.key.clone(), value);
        }
    }
    RawLine {
        bytes: Json::Object(object).to_string().into_bytes(),
        time_ms: (time_unix_nano != 0).then_some((time_unix_nano / 1_000_000) as i64),
        container,
        origin: None,
    }
}

/// The level the pipeline will read: the lowercased severity text when the pipeline knows
/// it as a level (or there is no severity number), else the level of the number's range
/// (so `Information` with number 10 becomes `info`).
pub fn severity_level(text: &str, number: i32) -> Option<String> {
    let text = text.trim();
    let from_number = match number {
        1..=4 => Some("trace"),
        5..=8 => Some("debug"),
        9..=12 => Some("info"),
        13..=16 => Some("warn"),
        17..=20 => Some("error"),
        21..=24 => Some("fatal"),
        _ => None,
    };
    // A recognised text wins, in its canonical spelling ("Information" → "info").
    if let Some(level) = Level::parse(text) {
        return Some(level.as_str().to_owned());
    }
    if !text.is_empty() && from_number.is_none() {
        return Some(text.to_lowercase());
    }
    from_number.map(str::to_owned)
}

/// An attribute value or body as JSON: maps become objects, arrays arrays, bytes base64 (as
/// in OTLP/JSON), and non-finite doubles strings.
pub fn any_value_json(value: &AnyValue) -> Json {
    match &value.value {
        None | Some(Value::StringValueStrindex(_)) => Json::Null,
        Some(Value::StringValue(text)) => Json::String(text.clone()),
        Some(Value::BoolValue(b)) => Json::Bool(*b),
        Some(Value::IntValue(i)) => Json::from(*i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map_or_else(|| Json::String(d.to_string()), Json::Number),
        Some(Value::ArrayValue(array)) => {
            Json::Array(array.values.iter().map(any_value_json).collect())
        }
        Some(Value::KvlistValue(list)) => Json::Object(
            list.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(Json::Null, any_value_json),
                    )
                })
                .collect(),
        ),
        Some(Value::BytesValue(bytes)) => Json::String(base64(bytes)),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub use crate::pipeline::parse::rfc3339;
