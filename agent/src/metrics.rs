//! The agent's own telemetry: counters and gauges held in a `prometheus::Registry` and
//! rendered by its `TextEncoder` on the admin `/metrics`. Every metric name, Prometheus and
//! CloudWatch alike, comes from [`names`] in this file.
//!
//! Label handles are resolved once ([`Metrics::new`]), so counting on the hot path is one
//! atomic add, as it was before the registry.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::proto::{Bucket, Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub mod names;

/// The memory budget as `/metrics` shows it (`agent_buffer_bytes`, `agent_buffer_limit_bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferUsage {
    /// Bytes held by accepted, undelivered events.
    pub in_use: usize,
    /// The ceiling.
    pub limit: usize,
}

/// Where events came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// Fluent Forward (FireLens), TCP or Unix socket.
    Forward,
    /// Standard input.
    Stdin,
    /// Tailed files.
    File,
    /// `POST /v1/logs`.
    Http,
    /// OTLP log records.
    Otlp,
}

impl SourceKind {
    /// Every kind, in label order.
    pub const ALL: [Self; 5] = [
        Self::Forward,
        Self::Stdin,
        Self::File,
        Self::Http,
        Self::Otlp,
    ];

    /// The `source` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Stdin => "stdin",
            Self::File => "file",
            Self::Http => "http",
            Self::Otlp => "otlp",
        }
    }
}

/// Why events did not reach CloudWatch Logs. Every one is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Older than CloudWatch accepts (14 days, or the group's retention).
    TooOld,
    /// More than 2 hours in the future.
    TooNew,
    /// Rejected by CloudWatch in `rejectedLogEventsInfo`.
    Rejected,
    /// A non-retryable error for the whole request.
    PermanentError,
    /// Still unsent when the shutdown deadline passed.
    ShutdownDeadline,
    /// Dropped on purpose by a `[[pipeline.filters]]` rule: not a loss, so left out of the
    /// `EventsDropped` total the dropping-logs alarm watches.
    Filtered,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [Self; 6] = [
        Self::TooOld,
        Self::TooNew,
        Self::Rejected,
        Self::PermanentError,
        Self::ShutdownDeadline,
        Self::Filtered,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooOld => "too_old",
            Self::TooNew => "too_new",
            Self::Rejected => "rejected",
            Self::PermanentError => "permanent_error",
            Self::ShutdownDeadline => "shutdown_deadline",
            Self::Filtered => "filtered",
        }
    }

    /// Whether the event was lost (everything but a filter's decision).
    pub fn is_loss(self) -> bool {
        self != Self::Filtered
    }
}

/// Why a request was retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryReason {
    /// ThrottlingException or 429.
    Throttled,
    /// 5xx or ServiceUnavailable.
    ServerError,
    /// No answer in time.
    Timeout,
    /// Connection refused or reset.
    Connection,
    /// The group or stream was missing and has been created.
    ResourceNotFound,
    /// The credentials were refused (AccessDenied, ExpiredToken, UnrecognizedClient): a
    /// rotation or an IAM change in progress, retried until it settles.
    Auth,
}

impl RetryReason {
    /// Every reason, in label order.
    pub const ALL: [Self; 6] = [
        Self::Throttled,
        Self::ServerError,
        Self::Timeout,
        Self::Connection,
        Self::ResourceNotFound,
        Self::Auth,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::ServerError => "server_error",
            Self::Timeout => "timeout",
            Self::Connection => "connection",
            Self::ResourceNotFound => "resource_not_found",
            Self::Auth => "auth",
        }
    }
}

/// What became of an error event on its way to Sentry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SentryOutcome {
    /// Sentry accepted the envelope.
    Sent,
    /// Folded into an earlier event of the same fingerprint (de-duplication window).
    Deduplicated,
    /// Dropped while Sentry's rate limit for the category was in force.
    RateLimited,
    /// The oldest queued event, dropped to make room.
    QueueFull,
    /// Larger than Sentry accepts, even after trimming.
    TooLarge,
    /// Given up after the retries (network errors, 5xx) or refused (4xx).
    Failed,
}

impl SentryOutcome {
    /// Every outcome, in label order.
    pub const ALL: [Self; 6] = [
        Self::Sent,
        Self::Deduplicated,
        Self::RateLimited,
        Self::QueueFull,
        Self::TooLarge,
        Self::Failed,
    ];

    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Deduplicated => "deduplicated",
            Self::RateLimited => "rate_limited",
            Self::QueueFull => "queue_full",
            Self::TooLarge => "too_large",
            Self::Failed => "failed",
        }
    }
}

/// Why a joined stack trace was cut (`agent_multiline_traces_cut_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MultilineCut {
    /// It reached `max_lines`.
    MaxLines,
    /// It reached `max_bytes`.
    MaxBytes,
}

impl MultilineCut {
    /// Every reason, in label order.
    pub const ALL: [Self; 2] = [Self::MaxLines, Self::MaxBytes];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxLines => "max_lines",
            Self::MaxBytes => "max_bytes",
        }
    }
}

/// A point-in-time copy of the counters, for publishing them as CloudWatch metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Events accepted, per [`SourceKind::ALL`].
    pub received_events: [u64; 5],
    /// Events stored by CloudWatch Logs.
    pub sent_events: u64,
    /// Events dropped, per [`DropReason::ALL`].
    pub dropped: [u64; 6],
    /// Retries, per [`RetryReason::ALL`].
    pub retries: [u64; 6],
    /// Sentry outcomes, per [`SentryOutcome::ALL`].
    pub sentry: [u64; 6],
}

/// Upper bounds (seconds) of the PutLogEvents latency histogram.
const LATENCY_BUCKETS_SECONDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// All counters, in a registry of their own. Shared by reference (`Arc<Metrics>`), never
/// global; other components add their collectors to [`registry`](Self::registry).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    received_events: [IntCounter; 5],
    received_bytes: [IntCounter; 5],
    sent_events: IntCounter,
    sent_bytes: IntCounter,
    dropped: [IntCounter; 6],
    retries: [IntCounter; 6],
    requests_ok: IntCounter,
    requests_failed: IntCounter,
    latency: Histogram,
    truncated: IntCounter,
    invalid_utf8: IntCounter,
    redacted: IntCounter,
    multiline_joined: [IntCounter; 5],
    multiline_cut: [IntCounter; 2],
    rerouted: IntCounter,
    /// Rare (a rejected frame or connection): the label lookup per call is acceptable.
    input_errors: IntCounterVec,
    metric_datums_sent: IntCounter,
    metric_datums_dropped: IntCounter,
    metric_values_clamped: IntCounter,
    sentry: [IntCounter; 6],
    disk_replayed: IntCounter,
    disk_corrupt: IntCounter,
    disk_write_errors: IntCounter,
    buffer_bytes: IntGauge,
    buffer_limit: IntGauge,
    resident_memory: Option<IntGauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `collector` (its name comes from [`names`]: a failure is a programming error
/// that every test constructing `Metrics` would show).
fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique and valid");
    collector
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        registry,
        IntCounter::new(name, help).expect("valid metric name"),
    )
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        registry,
        IntGauge::new(name, help).expect("valid metric name"),
    )
}

/// One family with one label, its series resolved for every value in `values`.
fn labelled<const N: usize>(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    values: [&str; N],
) -> [IntCounter; N] {
    let family = register(
        registry,
        IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric name"),
    );
    values.map(|value| family.with_label_values(&[value]))
}

impl Metrics {
    /// Every family registered, every label series resolved.
    pub fn new() -> Self {
        use names::labels;
        let r = Registry::new();
        let sources = SourceKind::ALL.map(SourceKind::as_str);
        let outcomes = labelled(
            &r,
            names::PUT_LOG_EVENTS,
            "PutLogEvents calls by outcome.",
            labels::OUTCOME,
            ["ok", "error"],
        );
        let [requests_ok, requests_failed] = outcomes;
        let datums = labelled(
            &r,
            names::METRIC_DATUMS,
            "CloudWatch metric datums by outcome.",
            labels::OUTCOME,
            ["sent", "dropped"],
        );
        let [metric_datums_sent, metric_datums_dropped] = datums;
        let latency = register(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(names::PUT_LOG_EVENTS_DURATION, "PutLogEvents call latency.")
                    .buckets(LATENCY_BUCKETS_SECONDS.to_vec()),
            )
            .expect("valid histogram"),
        );
        Self {
            received_events: labelled(
                &r,
                names::EVENTS_RECEIVED,
                "Log events accepted from each input.",
                labels::SOURCE,
                sources,
            ),
            received_bytes: labelled(
                &r,
                names::BYTES_RECEIVED,
                "Bytes of log events accepted from each input.",
                labels::SOURCE,
                sources,
            ),
            sent_events: counter(
                &r,
                names::EVENTS_SENT,
                "Log events stored by CloudWatch Logs.",
            ),
            sent_bytes: counter(
                &r,
                names::BYTES_SENT,
                "Message bytes stored by CloudWatch Logs.",
            ),
            dropped: labelled(
                &r,
                names::EVENTS_DROPPED,
                "Log events that will not be delivered, by reason.",
                labels::REASON,
                DropReason::ALL.map(DropReason::as_str),
            ),
            retries: labelled(
                &r,
                names::RETRIES,
                "PutLogEvents calls retried, by reason.",
                labels::REASON,
                RetryReason::ALL.map(RetryReason::as_str),
            ),
            requests_ok,
            requests_failed,
            latency,
            truncated: counter(
                &r,
                names::EVENTS_TRUNCATED,
                "Events cut to the size CloudWatch Logs accepts.",
            ),
            invalid_utf8: counter(
                &r,
                names::LINES_INVALID_UTF8,
                "Lines shipped with invalid UTF-8 replaced.",
            ),
            rerouted: counter(
                &r,
                names::EVENTS_REROUTED,
                "Events sent to the fallback log group or stream: their templated name would have exceeded max_log_groups or max_log_streams.",
            ),
            redacted: counter(
                &r,
                names::LINES_REDACTED,
                "Lines in which secrets were replaced.",
            ),
            multiline_joined: labelled(
                &r,
                names::MULTILINE_JOINED,
                "Stack traces joined from several lines into one event, by input.",
                labels::SOURCE,
                sources,
            ),
            multiline_cut: labelled(
                &r,
                names::MULTILINE_CUT,
                "Joined stack traces cut at max_lines or max_bytes (the rest goes on in the next event).",
                labels::REASON,
                MultilineCut::ALL.map(MultilineCut::as_str),
            ),
            input_errors: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        names::INPUT_ERRORS,
                        "Frames, requests or connections an input rejected, by kind.",
                    ),
                    &[labels::SOURCE, labels::KIND],
                )
                .expect("valid metric name"),
            ),
            metric_datums_sent,
            metric_datums_dropped,
            metric_values_clamped: counter(
                &r,
                names::METRIC_VALUES_CLAMPED,
                "Metric values CloudWatch would refuse, clamped or dropped before sending.",
            ),
            sentry: labelled(
                &r,
                names::SENTRY_EVENTS,
                "Error events forwarded to Sentry, or why not, by outcome.",
                labels::OUTCOME,
                SentryOutcome::ALL.map(SentryOutcome::as_str),
            ),
            disk_replayed: counter(
                &r,
                names::DISK_BUFFER_REPLAYED,
                "Events found undelivered in the disk buffer at start and sent again.",
            ),
            disk_corrupt: counter(
                &r,
                names::DISK_BUFFER_CORRUPT,
                "Damaged disk buffer records (checksum or length); replay resumes after each.",
            ),
            disk_write_errors: counter(
                &r,
                names::DISK_BUFFER_WRITE_ERRORS,
                "Failed disk buffer writes (retried; inputs wait meanwhile).",
            ),
            buffer_bytes: gauge(
                &r,
                names::BUFFER_BYTES,
                "Bytes of accepted events not yet delivered.",
            ),
            buffer_limit: gauge(
                &r,
                names::BUFFER_LIMIT_BYTES,
                "The configured memory ceiling for buffered events.",
            ),
            resident_memory: resident_memory_bytes().map(|_| {
                gauge(
                    &r,
                    names::RESIDENT_MEMORY,
                    "Resident set size of the agent process.",
                )
            }),
            registry: r,
        }
    }

    /// The registry `/metrics` shows; components with gauges of their own (disk buffer,
    /// probes, request metrics) register a collector here.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Lines accepted from a source.
    pub fn received(&self, source: SourceKind, events: u64, bytes: u64) {
        let i = index(&SourceKind::ALL, &source);
        self.received_events[i].inc_by(events);
        self.received_bytes[i].inc_by(bytes);
    }

    /// Events CloudWatch Logs accepted.
    pub fn sent(&self, events: u64, bytes: u64) {
        self.sent_events.inc_by(events);
        self.sent_bytes.inc_by(bytes);
    }

    /// Events that will never be delivered.
    pub fn dropped(&self, reason: DropReason, events: u64) {
        self.dropped[index(&DropReason::ALL, &reason)].inc_by(events);
    }

    /// A request that will be tried again.
    pub fn retried(&self, reason: RetryReason) {
        self.retries[index(&RetryReason::ALL, &reason)].inc();
    }

    /// A finished PutLogEvents call.
    pub fn request(&self, ok: bool, latency: Duration) {
        if ok {
            &self.requests_ok
        } else {
            &self.requests_failed
        }
        .inc();
        self.latency.observe(latency.as_secs_f64());
    }

    /// A rejected frame, request or connection on an input, by a fixed `kind` label.
    pub fn input_error(&self, source: SourceKind, kind: &'static str) {
        self.input_errors
            .with_label_values(&[source.as_str(), kind])
            .inc();
    }

    /// PutMetricData datums published (`ok`) or given up.
    pub fn metric_datums(&self, ok: bool, count: u64) {
        if ok {
            &self.metric_datums_sent
        } else {
            &self.metric_datums_dropped
        }
        .inc_by(count);
    }

    /// Metric values or counts CloudWatch would refuse (NaN, beyond ±2^360, non-zero below
    /// 8.5e-109), clamped or dropped before sending.
    pub fn metric_values_clamped(&self, values: u64) {
        self.metric_values_clamped.inc_by(values);
    }

    /// Error events that reached Sentry, or why they did not.
    pub fn sentry(&self, outcome: SentryOutcome, events: u64) {
        self.sentry[index(&SentryOutcome::ALL, &outcome)].inc_by(events);
    }

    /// Current value of a Sentry outcome counter.
    pub fn sentry_events(&self, outcome: SentryOutcome) -> u64 {
        self.sentry[index(&SentryOutcome::ALL, &outcome)].get()
    }

    /// Events found undelivered in the disk buffer at start (delivered again: the ones in
    /// flight at a crash arrive twice).
    pub fn disk_buffer_replayed(&self, events: u64) {
        self.disk_replayed.inc_by(events);
    }

    /// Damaged records found in the disk buffer (each costs only itself: replay resumes at
    /// the next good record).
    pub fn disk_buffer_corrupt(&self, records: u64) {
        self.disk_corrupt.inc_by(records);
    }

    /// A failed write to the disk buffer (retried).
    pub fn disk_buffer_write_error(&self) {
        self.disk_write_errors.inc();
    }

    /// The counters as they are now.
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &IntCounter| c.get();
        Snapshot {
            received_events: self.received_events.each_ref().map(get),
            sent_events: self.sent_events.get(),
            dropped: self.dropped.each_ref().map(get),
            retries: self.retries.each_ref().map(get),
            sentry: self.sentry.each_ref().map(get),
        }
    }

    /// An event cut to the size CloudWatch accepts.
    pub fn truncated(&self, events: u64) {
        self.truncated.inc_by(events);
    }

    /// A line that was not valid UTF-8 (shipped lossily).
    pub fn invalid_utf8(&self) {
        self.invalid_utf8.inc();
    }

    /// Events routed to a fallback name by the cardinality guard.
    pub fn rerouted(&self, events: u64) {
        self.rerouted.inc_by(events);
    }

    /// Events routed to a fallback name so far.
    pub fn rerouted_events(&self) -> u64 {
        self.rerouted.get()
    }

    /// A line that had secrets replaced.
    pub fn redacted(&self) {
        self.redacted.inc();
    }

    /// Stack traces joined into one event each.
    pub fn multiline_joined(&self, source: SourceKind, traces: u64) {
        self.multiline_joined[index(&SourceKind::ALL, &source)].inc_by(traces);
    }

    /// Joined stack traces cut at a limit.
    pub fn multiline_cut(&self, reason: MultilineCut, traces: u64) {
        self.multiline_cut[index(&MultilineCut::ALL, &reason)].inc_by(traces);
    }

    /// Current value of the sent-events counter (tests and the shutdown report).
    pub fn sent_events(&self) -> u64 {
        self.sent_events.get()
    }

    /// Current value of a drop counter.
    pub fn dropped_events(&self, reason: DropReason) -> u64 {
        self.dropped[index(&DropReason::ALL, &reason)].get()
    }

    /// Current value of a retry counter.
    pub fn retries(&self, reason: RetryReason) -> u64 {
        self.retries[index(&RetryReason::ALL, &reason)].get()
    }

    /// The Prometheus text exposition of everything registered, with the memory budget's
    /// and the process's gauges as they are now.
    pub fn render(&self, budget: BufferUsage) -> String {
        self.buffer_bytes.set(clamp_i64(budget.in_use as u64));
        self.buffer_limit.set(clamp_i64(budget.limit as u64));
        if let (Some(gauge), Some(rss)) = (&self.resident_memory, resident_memory_bytes()) {
            gauge.set(clamp_i64(rss));
        }
        encode(&self.registry.gather())
    }
}

fn index<T: PartialEq>(all: &[T], item: &T) -> usize {
    all.iter().position(|x| x == item).unwrap_or(0)
}

/// A gauge value: `u64` quantities saturate at `i64::MAX` rather than wrap.
pub fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `families` in the Prometheus text format (the encoder escapes names, help and labels).
pub fn encode(families: &[MetricFamily]) -> String {
    use prometheus::Encoder as _;
    let mut out = Vec::with_capacity(8192);
    // Only an empty family fails to encode, and `Registry::gather` leaves those out.
    if let Err(error) = prometheus::TextEncoder::new().encode(families, &mut out) {
        tracing::warn!(%error, "could not encode /metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// A family built at collection time (request histograms, probe results): what a
/// [`Collector`] that keeps its own state returns.
pub fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

/// One series' labels, in the order given.
fn label_pairs(labels: &[(&str, &str)]) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).to_owned());
            pair.set_value((*value).to_owned());
            pair
        })
        .collect()
}

/// A counter series.
pub fn counter_metric(labels: &[(&str, &str)], value: u64) -> Metric {
    let mut counter = Counter::default();
    counter.set_value(value as f64);
    let mut metric = Metric::default();
    metric.set_label(label_pairs(labels));
    metric.set_counter(counter);
    metric
}

/// A gauge series.
pub fn gauge_metric(labels: &[(&str, &str)], value: f64) -> Metric {
    let mut gauge = Gauge::default();
    gauge.set_value(value);
    let mut metric = Metric::default();
    metric.set_label(label_pairs(labels));
    metric.set_gauge(gauge);
    metric
}

/// A histogram series from non-cumulative `counts` per upper bound in `bounds` (the `+Inf`
/// bucket is `count`).
pub fn histogram_metric(
    labels: &[(&str, &str)],
    bounds: &[f64],
    counts: &[u64],
    count: u64,
    sum: f64,
) -> Metric {
    let mut cumulative = 0u64;
    let buckets = bounds
        .iter()
        .zip(counts)
        .map(|(bound, n)| {
            cumulative = cumulative.saturating_add(*n);
            let mut bucket = Bucket::default();
            bucket.set_upper_bound(*bound);
            bucket.set_cumulative_count(cumulative);
            bucket
        })
        .collect();
    let mut histogram = prometheus::proto::Histogram::default();
    histogram.set_bucket(buckets);
    histogram.set_sample_count(count);
    histogram.set_sample_sum(sum);
    let mut metric = Metric::default();
    metric.set_label(label_pairs(labels));
    metric.set_histogram(histogram);
    metric
}

/// RSS from /proc (Linux); `None` elsewhere.
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_valid_prometheus_text() {
        let metrics = Metrics::default();
        metrics.received(SourceKind::Stdin, 3, 30);
        metrics.dropped(DropReason::TooOld, 2);
        metrics.request(true, Duration::from_millis(30));
        let text = metrics.render(BufferUsage {
            in_use: 0,
            limit: 1000,
        });
        assert!(text.contains("agent_events_received_total{source=\"stdin\"} 3\n"));
        assert!(text.contains("agent_events_dropped_total{reason=\"too_old\"} 2\n"));
        assert!(text.contains("agent_put_log_events_duration_seconds_bucket{le=\"0.025\"} 0\n"));
        assert!(text.contains("agent_put_log_events_duration_seconds_bucket{le=\"0.05\"} 1\n"));
        assert!(text.contains("agent_put_log_events_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
        // Every sample line belongs to a family declared by HELP and TYPE before it.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = name
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count");
                assert!(
                    declared.contains(name) || declared.contains(base),
                    "undeclared: {line}"
                );
            }
        }
    }
}
