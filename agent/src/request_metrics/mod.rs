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

use self::histogram::LogHistogram;
use crate::pipeline::Observer;
pub use crate::pipeline::timing::RequestTiming;

/// The route label that absorbs routes beyond the cardinality limit.
pub const OTHER_ROUTE: &str = "other";

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

/// The status class label of `status`.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
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
#[derive(Debug, Default)]
pub struct Aggregator {
    max_routes: usize,
    routes: std::collections::HashSet<String>,
    period: HashMap<TimingKey, Series>,
    /// Since start, for Prometheus (cumulative, never reset).
    cumulative: std::collections::BTreeMap<TimingKey, PromHistogram>,
    /// Requests whose route was folded into `other` (cumulative).
    pub folded: u64,
    /// Timings rejected as unusable (NaN, negative latency, empty method), cumulative.
    pub invalid: u64,
}

impl Aggregator {
    /// At most `max_routes` distinct routes; the rest become [`OTHER_ROUTE`].
    pub fn new(max_routes: usize) -> Self {
        Self {
            max_routes,
            ..Self::default()
        }
    }

    /// Adds a timing to the current period.
    pub fn record(&mut self, timing: RequestTiming) {
        if !timing.latency_ms.is_finite()
            || timing.latency_ms < 0.0
            || timing.method.is_empty()
            || timing.count == 0
        {
            self.invalid = self.invalid.saturating_add(1);
            return;
        }
        let route = if self.routes.contains(&timing.route) {
            timing.route
        } else if self.routes.len() < self.max_routes && is_route_template(&timing.route) {
            self.routes.insert(timing.route.clone());
            timing.route
        } else {
            self.folded = self.folded.saturating_add(timing.count);
            OTHER_ROUTE.to_owned()
        };
        let mut method = timing.method;
        method.make_ascii_uppercase();
        if method.len() > 16 || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            method = "OTHER".into();
        }
        let key = TimingKey {
            route,
            method,
            status_class: status_class(timing.status),
        };
        self.cumulative
            .entry(key.clone())
            .or_default()
            .record(timing.latency_ms / 1000.0, timing.count);
        let series = self.period.entry(key).or_default();
        series.count = series.count.saturating_add(timing.count);
        if (500..=599).contains(&timing.status) {
            series.errors = series.errors.saturating_add(timing.count);
        }
        series.latency.record_n(timing.latency_ms, timing.count);
    }

    /// Request counters and latency histograms in the Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP http_server_requests_total Requests seen by the sidecar, by route, method and status class."
        );
        let _ = writeln!(out, "# TYPE http_server_requests_total counter");
        for (key, histogram) in &self.cumulative {
            let _ = writeln!(
                out,
                "http_server_requests_total{{{}}} {}",
                labels(key),
                histogram.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP http_server_request_duration_seconds Request latency."
        );
        let _ = writeln!(out, "# TYPE http_server_request_duration_seconds histogram");
        for (key, histogram) in &self.cumulative {
            let labels = labels(key);
            let mut cumulative = 0;
            for (bound, count) in PROM_BUCKETS_SECONDS.iter().zip(&histogram.buckets) {
                cumulative = count.saturating_add(cumulative);
                let _ = writeln!(
                    out,
                    "http_server_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "http_server_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "http_server_request_duration_seconds_sum{{{labels}}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "http_server_request_duration_seconds_count{{{labels}}} {}",
                histogram.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP agent_routes_folded_total Requests whose route was folded into route=\"other\"."
        );
        let _ = writeln!(out, "# TYPE agent_routes_folded_total counter");
        let _ = writeln!(out, "agent_routes_folded_total {}", self.folded);
        let _ = writeln!(
            out,
            "# HELP agent_timings_invalid_total Request timings rejected as unusable."
        );
        let _ = writeln!(out, "# TYPE agent_timings_invalid_total counter");
        let _ = writeln!(out, "agent_timings_invalid_total {}", self.invalid);
    }

    /// Ends the period: returns what it accumulated and starts an empty one.
    pub fn take_period(&mut self) -> HashMap<TimingKey, Series> {
        std::mem::take(&mut self.period)
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
        if let Some(i) = PROM_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
        {
            self.buckets[i] = self.buckets[i].saturating_add(n);
        }
        self.count = self.count.saturating_add(n);
        self.sum += seconds * n as f64;
    }
}

/// Prometheus label set of a key, values escaped.
fn labels(key: &TimingKey) -> String {
    use crate::metrics::escape_label;
    format!(
        "route=\"{}\",method=\"{}\",status_class=\"{}\"",
        escape_label(&key.route),
        escape_label(&key.method),
        key.status_class
    )
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

    /// The aggregator; a panic elsewhere while it was held leaves plain counters behind,
    /// so a poisoned lock is still used rather than silently recording nothing forever.
    fn lock(&self) -> std::sync::MutexGuard<'_, Aggregator> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
}
