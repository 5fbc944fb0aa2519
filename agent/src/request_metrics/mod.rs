//! Request metrics: timings from access-log events and OTLP, aggregated per (route, method,
//! status class) per period, published to CloudWatch Metrics and Prometheus.
//!
//! Inputs call [`Recorder::record`]; the aggregator keeps a log-bucketed latency histogram
//! per key (relative error under 1%, so percentiles computed from what we publish are
//! within 1% of the true ones) and folds routes beyond the cardinality limit into `other`.

pub mod config;
pub mod histogram;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{MetricFamily, MetricType};

use self::histogram::LogHistogram;
use crate::metrics::{self, names, names::labels};
use crate::pipeline::Observer;
pub use crate::pipeline::timing::RequestTiming;

/// The route label that absorbs routes beyond the cardinality limit.
pub const OTHER_ROUTE: &str = "other";

/// The method label of every method outside the registered set (OpenTelemetry's HTTP
/// semantic conventions), so an invented method (`BREW`) never becomes a series.
pub const OTHER_METHOD: &str = "_OTHER";

/// The registered methods by default: RFC 9110's and PATCH (OpenTelemetry's list).
pub const DEFAULT_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Longest latency believed (ms, a week): a larger value is a broken clock or a hostile
/// line, and would publish sums CloudWatch refuses (it accepts at most 2^360).
pub const MAX_LATENCY_MS: f64 = 7.0 * 24.0 * 3600.0 * 1000.0;

/// Most requests one timing may stand for (an OTLP histogram bucket): a count of 1e12
/// is clamped to this, and counted.
pub const MAX_TIMING_COUNT: u64 = 1_000_000_000;

/// Status class labels: with routes (`max_routes` + `other`) and methods (registered +
/// `_OTHER`), they bound the number of series by construction.
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

// The request families' help texts (the same in their descriptors and their samples).
const HELP_REQUESTS: &str = "Requests seen by the sidecar, by route, method and status class.";
const HELP_DURATION: &str = "Request latency.";
const HELP_FOLDED: &str = "Requests whose route was folded into route=\"other\".";
const HELP_INVALID: &str = "Request timings rejected as unusable.";
const HELP_CLAMPED: &str = "Request timings whose count was clamped.";

/// Identifies one aggregated series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimingKey {
    /// Route template (`/api/users/{id}`), never a raw path.
    pub route: String,
    /// HTTP method, upper case.
    pub method: String,
    /// `2xx`, `3xx`, `4xx` or `5xx` (`other` for anything else).
    pub status_class: &'static str,
}

/// The index in [`STATUS_CLASSES`] of `status`'s class (`other` for anything not 1xx-5xx).
fn status_class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => STATUS_CLASSES.len() - 1,
    }
}

/// The status class label of `status`.
pub fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[status_class_index(status)]
}

/// What one key accumulated over a period.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Requests.
    pub count: u64,
    /// Requests answered 5xx.
    pub errors: u64,
    /// Latency distribution (ms).
    pub latency: LogHistogram,
}

/// Aggregation state, behind [`Recorder`].
///
/// A timing finds its series through small integer ids, not by hashing and comparing
/// strings per request: the route's id (one lookup in a map of at most `max_routes`
/// entries), the method's and the status class's index, then a slot table. Label strings
/// are cloned once, when a series is created.
#[derive(Debug, Default)]
pub struct Aggregator {
    max_routes: usize,
    /// Registered methods (upper case); the rest become [`OTHER_METHOD`].
    methods: Vec<String>,
    /// Route → route id (`OTHER_ROUTE` has [`other_route`](Self::other_route)).
    routes: HashMap<String, u32>,
    /// The id of [`OTHER_ROUTE`], once something was folded.
    other_route: Option<u32>,
    /// Per route id, per method index, per status class: the series id + 1 (0 = none yet).
    slots: Vec<u32>,
    /// Every series since start: its key, its Prometheus histogram (cumulative, never
    /// reset) and this period's aggregate.
    series: Vec<SeriesState>,
    /// Requests whose route was folded into `other` (cumulative).
    pub folded: u64,
    /// Timings rejected as unusable (NaN, negative or above [`MAX_LATENCY_MS`] latency,
    /// empty method), cumulative.
    pub invalid: u64,
    /// Timings whose count was clamped to [`MAX_TIMING_COUNT`], cumulative.
    pub clamped: u64,
}

#[derive(Debug)]
struct SeriesState {
    key: TimingKey,
    cumulative: PromHistogram,
    period: Series,
}

impl Aggregator {
    /// At most `max_routes` distinct routes; the rest become [`OTHER_ROUTE`]. Methods
    /// outside [`DEFAULT_METHODS`] become [`OTHER_METHOD`].
    pub fn new(max_routes: usize) -> Self {
        Self::with_methods(max_routes, &DEFAULT_METHODS.map(str::to_owned))
    }

    /// Like [`new`](Self::new) with its own registered `methods` (any case).
    pub fn with_methods(max_routes: usize, methods: &[String]) -> Self {
        Self {
            max_routes,
            methods: methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            ..Self::default()
        }
    }

    /// The index of `method`'s label: its place among the registered methods, or the
    /// last index (`_OTHER`).
    fn method_index(&self, method: &str) -> usize {
        self.methods
            .iter()
            .position(|m| m.eq_ignore_ascii_case(method))
            .unwrap_or(self.methods.len())
    }

    #[cfg(test)]
    fn method_label(&self, method: &str) -> &str {
        self.methods
            .get(self.method_index(method))
            .map_or(OTHER_METHOD, String::as_str)
    }

    /// Most series this aggregator can ever hold: routes × methods × status classes.
    pub fn max_series(&self) -> usize {
        (self.max_routes + 1) * (self.methods.len() + 1) * STATUS_CLASSES.len()
    }

    /// Series kept for Prometheus (cumulative, never pruned: bounded by
    /// [`max_series`](Self::max_series)).
    pub fn series(&self) -> usize {
        self.series.len()
    }

    /// Adds a timing to the current period.
    pub fn record(&mut self, mut timing: RequestTiming) {
        if !timing.latency_ms.is_finite()
            || !(0.0..=MAX_LATENCY_MS).contains(&timing.latency_ms)
            || timing.method.is_empty()
            || timing.count == 0
        {
            self.invalid = self.invalid.saturating_add(1);
            return;
        }
        if timing.count > MAX_TIMING_COUNT {
            timing.count = MAX_TIMING_COUNT;
            self.clamped = self.clamped.saturating_add(1);
        }
        let route = self.route_id(timing.route, timing.count);
        let method = self.method_index(&timing.method);
        let class = status_class_index(timing.status);
        let id = self.series_id(route, method, class);
        let state = &mut self.series[id];
        state
            .cumulative
            .record(timing.latency_ms / 1000.0, timing.count);
        let series = &mut state.period;
        series.count = series.count.saturating_add(timing.count);
        if (500..=599).contains(&timing.status) {
            series.errors = series.errors.saturating_add(timing.count);
        }
        series.latency.record_n(timing.latency_ms, timing.count);
    }

    /// The id of `route`: known, newly admitted (under `max_routes` and looking like a
    /// template), or `other` (its `count` requests counted as folded).
    fn route_id(&mut self, route: String, count: u64) -> u32 {
        if let Some(id) = self.routes.get(route.as_str()) {
            return *id;
        }
        let next = self.routes.len() as u32 + u32::from(self.other_route.is_some());
        if self.routes.len() < self.max_routes && is_route_template(&route) {
            self.routes.insert(route, next);
            return next;
        }
        self.folded = self.folded.saturating_add(count);
        *self.other_route.get_or_insert(next)
    }

    /// The series of (route id, method index, class index), created on first use.
    fn series_id(&mut self, route: u32, method: usize, class: usize) -> usize {
        let per_route = (self.methods.len() + 1) * STATUS_CLASSES.len();
        let slot = route as usize * per_route + method * STATUS_CLASSES.len() + class;
        if self.slots.len() <= slot {
            self.slots.resize((route as usize + 1) * per_route, 0);
        }
        if let Some(id) = self.slots[slot].checked_sub(1) {
            return id as usize;
        }
        let route_label = if Some(route) == self.other_route {
            OTHER_ROUTE.to_owned()
        } else {
            self.routes
                .iter()
                .find(|(_, id)| **id == route)
                .map(|(r, _)| r.clone())
                .unwrap_or_default()
        };
        let key = TimingKey {
            route: route_label,
            method: self
                .methods
                .get(method)
                .map_or_else(|| OTHER_METHOD.to_owned(), Clone::clone),
            status_class: STATUS_CLASSES[class],
        };
        self.series.push(SeriesState {
            key,
            cumulative: PromHistogram::default(),
            period: Series::default(),
        });
        self.slots[slot] = self.series.len() as u32;
        self.series.len() - 1
    }

    /// Request counters and latency histograms, and the fold/invalid/clamp counters, as
    /// Prometheus families (cumulative since start).
    pub fn families(&self) -> Vec<MetricFamily> {
        let mut requests = Vec::with_capacity(self.series.len());
        let mut durations = Vec::with_capacity(self.series.len());
        let mut sorted: Vec<&SeriesState> = self.series.iter().collect();
        sorted.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        for SeriesState {
            key,
            cumulative: histogram,
            ..
        } in sorted
        {
            let labels = [
                (labels::ROUTE, key.route.as_str()),
                (labels::METHOD, key.method.as_str()),
                (labels::STATUS_CLASS, key.status_class),
            ];
            requests.push(metrics::counter_metric(&labels, histogram.count));
            durations.push(metrics::histogram_metric(
                &labels,
                &PROM_BUCKETS_SECONDS,
                &histogram.buckets,
                histogram.count,
                histogram.sum,
            ));
        }
        let mut families = Vec::with_capacity(5);
        if !requests.is_empty() {
            families.push(metrics::family(
                names::HTTP_REQUESTS,
                HELP_REQUESTS,
                MetricType::COUNTER,
                requests,
            ));
            families.push(metrics::family(
                names::HTTP_REQUEST_DURATION,
                HELP_DURATION,
                MetricType::HISTOGRAM,
                durations,
            ));
        }
        for (name, help, value) in [
            (names::ROUTES_FOLDED, HELP_FOLDED, self.folded),
            (names::TIMINGS_INVALID, HELP_INVALID, self.invalid),
            (names::TIMINGS_CLAMPED, HELP_CLAMPED, self.clamped),
        ] {
            families.push(metrics::family(
                name,
                help,
                MetricType::COUNTER,
                vec![metrics::counter_metric(&[], value)],
            ));
        }
        families
    }

    /// [`families`](Self::families) in the Prometheus text format, appended to `out`.
    pub fn render_prometheus(&self, out: &mut String) {
        out.push_str(&metrics::encode(&self.families()));
    }

    /// Ends the period: returns what it accumulated and starts an empty one.
    pub fn take_period(&mut self) -> HashMap<TimingKey, Series> {
        self.series
            .iter_mut()
            .filter(|s| s.period.count > 0)
            .map(|s| (s.key.clone(), std::mem::take(&mut s.period)))
            .collect()
    }
}

/// Upper bounds (seconds) of the Prometheus latency buckets.
pub const PROM_BUCKETS_SECONDS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Non-cumulative bucket counts; rendering accumulates them.
#[derive(Debug, Clone, Default)]
struct PromHistogram {
    buckets: [u64; 12],
    count: u64,
    sum: f64,
}

impl PromHistogram {
    fn record(&mut self, seconds: f64, n: u64) {
        // The first bucket whose bound is ≥ seconds (none past the last bound).
        let i = PROM_BUCKETS_SECONDS.partition_point(|bound| *bound < seconds);
        if let Some(bucket) = self.buckets.get_mut(i) {
            *bucket = bucket.saturating_add(n);
        }
        self.count = self.count.saturating_add(n);
        self.sum += seconds * n as f64;
    }
}

/// A route label must look like a template: starts with `/`, short, printable ASCII, and
/// no segment that is obviously an id (all digits, or a long hex/uuid run), so a raw path
/// that slipped through never becomes a dimension.
pub fn is_route_template(route: &str) -> bool {
    if !route.starts_with('/')
        || route.len() > 256
        || !route.bytes().all(|b| b.is_ascii_graphic())
        || route.contains('?')
    {
        return false;
    }
    route.split('/').filter(|s| !s.is_empty()).all(|segment| {
        let digits = segment.bytes().all(|b| b.is_ascii_digit());
        let hexish =
            segment.len() >= 16 && segment.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        !digits && !hexish
    })
}

impl Observer for Recorder {
    fn wants_timings(&self) -> bool {
        true
    }

    fn timings(&self, timings: Vec<RequestTiming>) {
        self.record_all(timings);
    }
}

/// A cheap, cloneable handle that inputs record into.
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Aggregator>>,
}

impl Recorder {
    /// A recorder over a fresh aggregator with the given route limit.
    pub fn new(max_routes: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Aggregator::new(max_routes))),
        }
    }

    /// A recorder with the route limit and registered methods of `config`.
    pub fn from_config(config: &config::MetricsConfig) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Aggregator::with_methods(
                config.max_routes,
                &config.methods,
            ))),
        }
    }

    /// Records one timing (or `count` identical ones).
    pub fn record(&self, timing: RequestTiming) {
        self.lock().record(timing);
    }

    /// Records a batch under one lock.
    pub fn record_all(&self, timings: Vec<RequestTiming>) {
        let mut aggregator = self.lock();
        for timing in timings {
            aggregator.record(timing);
        }
    }

    /// Runs `f` on the aggregator (the publisher takes periods this way).
    pub fn with<T>(&self, f: impl FnOnce(&mut Aggregator) -> T) -> Option<T> {
        Some(f(&mut self.lock()))
    }

    /// A collector for the agent's registry: `/metrics` shows the request families.
    pub fn collector(&self) -> RecorderCollector {
        let desc = |name: &str, help: &str, variable: &[&str]| {
            Desc::new(
                name.to_owned(),
                help.to_owned(),
                variable.iter().map(|l| (*l).to_owned()).collect(),
                std::collections::HashMap::new(),
            )
            .expect("valid metric name")
        };
        let keyed = [labels::ROUTE, labels::METHOD, labels::STATUS_CLASS];
        RecorderCollector {
            recorder: self.clone(),
            descs: vec![
                desc(names::HTTP_REQUESTS, HELP_REQUESTS, &keyed),
                desc(names::HTTP_REQUEST_DURATION, HELP_DURATION, &keyed),
                desc(names::ROUTES_FOLDED, HELP_FOLDED, &[]),
                desc(names::TIMINGS_INVALID, HELP_INVALID, &[]),
                desc(names::TIMINGS_CLAMPED, HELP_CLAMPED, &[]),
            ],
        }
    }

    /// The aggregator; a panic elsewhere while it was held leaves plain counters behind,
    /// so a poisoned lock is still used rather than silently recording nothing forever.
    fn lock(&self) -> std::sync::MutexGuard<'_, Aggregator> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The request families for a `prometheus::Registry`: the aggregator keeps its own
/// histograms because one timing can stand for many requests (an OTLP bucket, up to
/// [`MAX_TIMING_COUNT`]), which `prometheus::Histogram::observe` cannot record in one step;
/// route folding keeps their series bounded.
#[derive(Debug)]
pub struct RecorderCollector {
    recorder: Recorder,
    descs: Vec<Desc>,
}

impl Collector for RecorderCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.recorder.lock().families()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(route: &str, status: u16, latency_ms: f64) -> RequestTiming {
        RequestTiming {
            route: route.into(),
            method: "get".into(),
            status,
            latency_ms,
            count: 1,
        }
    }

    #[test]
    fn counts_errors_and_status_classes() {
        let mut aggregator = Aggregator::new(10);
        aggregator.record(timing("/health", 200, 1.0));
        aggregator.record(timing("/health", 503, 2.0));
        aggregator.record(timing("/health", 503, 3.0));
        let period = aggregator.take_period();
        let ok = &period[&TimingKey {
            route: "/health".into(),
            method: "GET".into(),
            status_class: "2xx",
        }];
        let failed = &period[&TimingKey {
            route: "/health".into(),
            method: "GET".into(),
            status_class: "5xx",
        }];
        assert_eq!((ok.count, ok.errors), (1, 0));
        assert_eq!((failed.count, failed.errors), (2, 2));
        assert!(
            aggregator.take_period().is_empty(),
            "a new period starts empty"
        );
    }

    #[test]
    fn routes_beyond_the_limit_and_raw_paths_fold_into_other() {
        let mut aggregator = Aggregator::new(2);
        for route in [
            "/a",
            "/b",
            "/c",
            "/users/12345",
            "/x/0b8f9e2c-1d2e-4f3a-9b8c-7d6e5f4a3b2c",
            "/q?token=1",
        ] {
            aggregator.record(timing(route, 200, 1.0));
        }
        let routes: std::collections::BTreeSet<_> = aggregator
            .take_period()
            .into_keys()
            .map(|k| k.route)
            .collect();
        assert_eq!(
            routes,
            ["/a", "/b", "other"]
                .into_iter()
                .map(String::from)
                .collect()
        );
        assert_eq!(aggregator.folded, 4);
    }

    #[test]
    fn prometheus_histograms_are_cumulative_with_help_and_type() {
        let mut aggregator = Aggregator::new(10);
        for ms in [0.5, 3.0, 3.0, 40.0, 20_000.0] {
            aggregator.record(timing("/a\"b", 200, ms));
        }
        aggregator.take_period();
        let mut text = String::new();
        aggregator.render_prometheus(&mut text);
        let labels = r#"route="/a\"b",method="GET",status_class="2xx""#;
        assert!(
            text.contains(&format!("http_server_requests_total{{{labels}}} 5\n")),
            "{text}"
        );
        assert!(text.contains(&format!(
            "http_server_request_duration_seconds_bucket{{{labels},le=\"0.001\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "http_server_request_duration_seconds_bucket{{{labels},le=\"0.005\"}} 3\n"
        )));
        assert!(text.contains(&format!(
            "http_server_request_duration_seconds_bucket{{{labels},le=\"0.05\"}} 4\n"
        )));
        assert!(text.contains(&format!(
            "http_server_request_duration_seconds_bucket{{{labels},le=\"10\"}} 4\n"
        )));
        assert!(text.contains(&format!(
            "http_server_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 5\n"
        )));
        assert!(text.contains(&format!(
            "http_server_request_duration_seconds_count{{{labels}}} 5\n"
        )));
        assert!(text.contains("# TYPE http_server_request_duration_seconds histogram\n"));
    }

    #[test]
    fn unusable_timings_are_counted_not_recorded() {
        let mut aggregator = Aggregator::new(2);
        aggregator.record(timing("/a", 200, f64::NAN));
        aggregator.record(timing("/a", 200, -1.0));
        assert_eq!(aggregator.invalid, 2);
        assert!(aggregator.take_period().is_empty());
    }

    #[test]
    fn invented_methods_become_other_and_series_are_bounded_by_construction() {
        // Regression: `BREW /health` used to become its own Method dimension and series.
        let mut aggregator = Aggregator::new(3);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..20_000u32 {
            let method = match i % 4 {
                0 => "get".to_owned(),
                1 => format!("BREW{i}"),
                2 => "PATCH".to_owned(),
                _ => format!("x-{i}"),
            };
            aggregator.record(RequestTiming {
                route: format!("/r{}", i % 50),
                method,
                status: (i % 700) as u16,
                latency_ms: 1.0,
                count: 1,
            });
            for state in &aggregator.series {
                seen.insert(state.key.method.clone());
            }
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            ["GET", "PATCH", OTHER_METHOD]
        );
        assert!(aggregator.series() <= aggregator.max_series());
        assert_eq!(aggregator.max_series(), (3 + 1) * (9 + 1) * 6);
        let mut text = String::new();
        aggregator.render_prometheus(&mut text);
        let series = text
            .lines()
            .filter(|l| l.starts_with("http_server_requests_total{"))
            .count();
        assert!(series <= aggregator.max_series(), "{series}");
        assert!(!text.contains("BREW") && !text.contains("x-1"), "{text}");

        let custom = Aggregator::with_methods(1, &["get".to_owned(), "BREW".to_owned()]);
        assert_eq!(custom.method_label("brew"), "BREW");
        assert_eq!(custom.method_label("POST"), OTHER_METHOD);
    }

    #[test]
    fn absurd_latencies_are_dropped_and_huge_counts_clamped() {
        // Regression: a latency_ms of 1e308 was recorded, shown on /metrics as a 306-digit
        // sum and published next to every other route's data.
        let mut aggregator = Aggregator::new(10);
        aggregator.record(timing("/a", 200, 1e308));
        aggregator.record(timing("/a", 200, MAX_LATENCY_MS * 2.0));
        aggregator.record(timing("/a", 200, 5.0));
        aggregator.record(RequestTiming {
            count: 1_000_000_000_000,
            ..timing("/a", 200, 7.0)
        });
        assert_eq!((aggregator.invalid, aggregator.clamped), (2, 1));
        let mut text = String::new();
        aggregator.render_prometheus(&mut text);
        let sum = text
            .lines()
            .find(|l| l.starts_with("http_server_request_duration_seconds_sum"))
            .unwrap();
        let value: f64 = sum.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value < 1e10 && sum.len() < 200, "{sum}");
        let period = aggregator.take_period();
        let series = period.values().next().unwrap();
        assert_eq!(series.count, 1 + MAX_TIMING_COUNT);
        assert!(series.latency.max() <= 7.0);
    }
}
