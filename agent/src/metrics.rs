//! The agent's own telemetry: counters and gauges in one place, rendered in the Prometheus
//! text format on the admin `/metrics`. Names come from this file only.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [Self; 5] = [
        Self::TooOld,
        Self::TooNew,
        Self::Rejected,
        Self::PermanentError,
        Self::ShutdownDeadline,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooOld => "too_old",
            Self::TooNew => "too_new",
            Self::Rejected => "rejected",
            Self::PermanentError => "permanent_error",
            Self::ShutdownDeadline => "shutdown_deadline",
        }
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

/// A point-in-time copy of the counters, for publishing them as CloudWatch metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Events accepted, per [`SourceKind::ALL`].
    pub received_events: [u64; 5],
    /// Events stored by CloudWatch Logs.
    pub sent_events: u64,
    /// Events dropped, per [`DropReason::ALL`].
    pub dropped: [u64; 5],
    /// Retries, per [`RetryReason::ALL`].
    pub retries: [u64; 6],
    /// Sentry outcomes, per [`SentryOutcome::ALL`].
    pub sentry: [u64; 6],
}

/// Upper bounds (ms) of the PutLogEvents latency histogram.
const LATENCY_BUCKETS_MS: [u64; 11] = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000];

/// All counters. Shared by reference (`Arc<Metrics>`), never global.
#[derive(Debug, Default)]
pub struct Metrics {
    received_events: [AtomicU64; 5],
    received_bytes: [AtomicU64; 5],
    sent_events: AtomicU64,
    sent_bytes: AtomicU64,
    dropped: [AtomicU64; 5],
    retries: [AtomicU64; 6],
    requests_ok: AtomicU64,
    requests_failed: AtomicU64,
    truncated: AtomicU64,
    invalid_utf8: AtomicU64,
    redacted: AtomicU64,
    input_errors: std::sync::Mutex<std::collections::BTreeMap<(&'static str, &'static str), u64>>,
    metric_datums_sent: AtomicU64,
    metric_datums_dropped: AtomicU64,
    metric_values_clamped: AtomicU64,
    sentry: [AtomicU64; 6],
    disk_replayed: AtomicU64,
    disk_corrupt: AtomicU64,
    disk_write_errors: AtomicU64,
    latency_buckets: [AtomicU64; 11],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

fn index<T: PartialEq>(all: &[T], item: &T) -> usize {
    all.iter().position(|x| x == item).unwrap_or(0)
}

impl Metrics {
    /// Lines accepted from a source.
    pub fn received(&self, source: SourceKind, events: u64, bytes: u64) {
        let i = index(&SourceKind::ALL, &source);
        self.received_events[i].fetch_add(events, Ordering::Relaxed);
        self.received_bytes[i].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Events CloudWatch Logs accepted.
    pub fn sent(&self, events: u64, bytes: u64) {
        self.sent_events.fetch_add(events, Ordering::Relaxed);
        self.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Events that will never be delivered.
    pub fn dropped(&self, reason: DropReason, events: u64) {
        self.dropped[index(&DropReason::ALL, &reason)].fetch_add(events, Ordering::Relaxed);
    }

    /// A request that will be tried again.
    pub fn retried(&self, reason: RetryReason) {
        self.retries[index(&RetryReason::ALL, &reason)].fetch_add(1, Ordering::Relaxed);
    }

    /// A finished PutLogEvents call.
    pub fn request(&self, ok: bool, latency: Duration) {
        if ok {
            &self.requests_ok
        } else {
            &self.requests_failed
        }
        .fetch_add(1, Ordering::Relaxed);
        let ms = latency.as_millis() as u64;
        for (bound, bucket) in LATENCY_BUCKETS_MS.iter().zip(&self.latency_buckets) {
            if ms <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// A rejected frame, request or connection on an input, by a fixed `kind` label.
    pub fn input_error(&self, source: SourceKind, kind: &'static str) {
        if let Ok(mut errors) = self.input_errors.lock() {
            *errors.entry((source.as_str(), kind)).or_default() += 1;
        }
    }

    /// PutMetricData datums published (`ok`) or given up.
    pub fn metric_datums(&self, ok: bool, count: u64) {
        if ok {
            &self.metric_datums_sent
        } else {
            &self.metric_datums_dropped
        }
        .fetch_add(count, Ordering::Relaxed);
    }

    /// Metric values or counts CloudWatch would refuse (NaN, beyond ±2^360, non-zero below
    /// 8.5e-109), clamped or dropped before sending.
    pub fn metric_values_clamped(&self, values: u64) {
        self.metric_values_clamped
            .fetch_add(values, Ordering::Relaxed);
    }

    /// Error events that reached Sentry, or why they did not.
    pub fn sentry(&self, outcome: SentryOutcome, events: u64) {
        self.sentry[index(&SentryOutcome::ALL, &outcome)].fetch_add(events, Ordering::Relaxed);
    }

    /// Current value of a Sentry outcome counter.
    pub fn sentry_events(&self, outcome: SentryOutcome) -> u64 {
        self.sentry[index(&SentryOutcome::ALL, &outcome)].load(Ordering::Relaxed)
    }

    /// Events found undelivered in the disk buffer at start (delivered again: the ones in
    /// flight at a crash arrive twice).
    pub fn disk_buffer_replayed(&self, events: u64) {
        self.disk_replayed.fetch_add(events, Ordering::Relaxed);
    }

    /// Damaged records found in the disk buffer (each costs only itself: replay resumes at
    /// the next good record).
    pub fn disk_buffer_corrupt(&self, records: u64) {
        self.disk_corrupt.fetch_add(records, Ordering::Relaxed);
    }

    /// A failed write to the disk buffer (retried).
    pub fn disk_buffer_write_error(&self) {
        self.disk_write_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as they are now.
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            received_events: self.received_events.each_ref().map(get),
            sent_events: get(&self.sent_events),
            dropped: self.dropped.each_ref().map(get),
            retries: self.retries.each_ref().map(get),
            sentry: self.sentry.each_ref().map(get),
        }
    }

    /// An event cut to the size CloudWatch accepts.
    pub fn truncated(&self, events: u64) {
        self.truncated.fetch_add(events, Ordering::Relaxed);
    }

    /// A line that was not valid UTF-8 (shipped lossily).
    pub fn invalid_utf8(&self) {
        self.invalid_utf8.fetch_add(1, Ordering::Relaxed);
    }

    /// A line that had secrets replaced.
    pub fn redacted(&self) {
        self.redacted.fetch_add(1, Ordering::Relaxed);
    }

    /// Current value of the sent-events counter (tests and the shutdown report).
    pub fn sent_events(&self) -> u64 {
        self.sent_events.load(Ordering::Relaxed)
    }

    /// Current value of a drop counter.
    pub fn dropped_events(&self, reason: DropReason) -> u64 {
        self.dropped[index(&DropReason::ALL, &reason)].load(Ordering::Relaxed)
    }

    /// Current value of a retry counter.
    pub fn retries(&self, reason: RetryReason) -> u64 {
        self.retries[index(&RetryReason::ALL, &reason)].load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, budget: BufferUsage) -> String {
        let mut out = String::with_capacity(4096);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        family(
            &mut out,
            "agent_events_received_total",
            "counter",
            "Log events accepted from each input.",
        );
        for (i, s) in SourceKind::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "agent_events_received_total{{source=\"{}\"}} {}",
                s.as_str(),
                get(&self.received_events[i])
            );
        }
        family(
            &mut out,
            "agent_bytes_received_total",
            "counter",
            "Bytes of log events accepted from each input.",
        );
        for (i, s) in SourceKind::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "agent_bytes_received_total{{source=\"{}\"}} {}",
                s.as_str(),
                get(&self.received_bytes[i])
            );
        }
        family(
            &mut out,
            "agent_events_sent_total",
            "counter",
            "Log events stored by CloudWatch Logs.",
        );
        let _ = writeln!(out, "agent_events_sent_total {}", get(&self.sent_events));
        family(
            &mut out,
            "agent_bytes_sent_total",
            "counter",
            "Message bytes stored by CloudWatch Logs.",
        );
        let _ = writeln!(out, "agent_bytes_sent_total {}", get(&self.sent_bytes));
        family(
            &mut out,
            "agent_events_dropped_total",
            "counter",
            "Log events that will not be delivered, by reason.",
        );
        for (i, r) in DropReason::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "agent_events_dropped_total{{reason=\"{}\"}} {}",
                r.as_str(),
                get(&self.dropped[i])
            );
        }
        family(
            &mut out,
            "agent_retries_total",
            "counter",
            "PutLogEvents calls retried, by reason.",
        );
        for (i, r) in RetryReason::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "agent_retries_total{{reason=\"{}\"}} {}",
                r.as_str(),
                get(&self.retries[i])
            );
        }
        family(
            &mut out,
            "agent_put_log_events_total",
            "counter",
            "PutLogEvents calls by outcome.",
        );
        let _ = writeln!(
            out,
            "agent_put_log_events_total{{outcome=\"ok\"}} {}",
            get(&self.requests_ok)
        );
        let _ = writeln!(
            out,
            "agent_put_log_events_total{{outcome=\"error\"}} {}",
            get(&self.requests_failed)
        );
        family(
            &mut out,
            "agent_put_log_events_duration_seconds",
            "histogram",
            "PutLogEvents call latency.",
        );
        for (bound, bucket) in LATENCY_BUCKETS_MS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                out,
                "agent_put_log_events_duration_seconds_bucket{{le=\"{}\"}} {}",
                *bound as f64 / 1000.0,
                get(bucket)
            );
        }
        let count = get(&self.latency_count);
        let _ = writeln!(
            out,
            "agent_put_log_events_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "agent_put_log_events_duration_seconds_sum {}",
            get(&self.latency_sum_us) as f64 / 1e6
        );
        let _ = writeln!(out, "agent_put_log_events_duration_seconds_count {count}");
        family(
            &mut out,
            "agent_events_truncated_total",
            "counter",
            "Events cut to the size CloudWatch Logs accepts.",
        );
        let _ = writeln!(out, "agent_events_truncated_total {}", get(&self.truncated));
        family(
            &mut out,
            "agent_lines_invalid_utf8_total",
            "counter",
            "Lines shipped with invalid UTF-8 replaced.",
        );
        let _ = writeln!(
            out,
            "agent_lines_invalid_utf8_total {}",
            get(&self.invalid_utf8)
        );
        family(
            &mut out,
            "agent_lines_redacted_total",
            "counter",
            "Lines in which secrets were replaced.",
        );
        let _ = writeln!(out, "agent_lines_redacted_total {}", get(&self.redacted));
        family(
            &mut out,
            "agent_input_errors_total",
            "counter",
            "Frames, requests or connections an input rejected, by kind.",
        );
        if let Ok(errors) = self.input_errors.lock() {
            for ((source, kind), count) in errors.iter() {
                let _ = writeln!(
                    out,
                    "agent_input_errors_total{{source=\"{source}\",kind=\"{kind}\"}} {count}"
                );
            }
        }
        family(
            &mut out,
            "agent_metric_datums_total",
            "counter",
            "CloudWatch metric datums by outcome.",
        );
        let _ = writeln!(
            out,
            "agent_metric_datums_total{{outcome=\"sent\"}} {}",
            get(&self.metric_datums_sent)
        );
        let _ = writeln!(
            out,
            "agent_metric_datums_total{{outcome=\"dropped\"}} {}",
            get(&self.metric_datums_dropped)
        );
        family(
            &mut out,
            "agent_sentry_events_total",
            "counter",
            "Error events forwarded to Sentry, or why not, by outcome.",
        );
        for (i, o) in SentryOutcome::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "agent_sentry_events_total{{outcome=\"{}\"}} {}",
                o.as_str(),
                get(&self.sentry[i])
            );
        }
        for (name, help, value) in [
            (
                "agent_disk_buffer_replayed_events_total",
                "Events found undelivered in the disk buffer at start and sent again.",
                &self.disk_replayed,
            ),
            (
                "agent_disk_buffer_corrupt_records_total",
                "Damaged disk buffer records (checksum or length); replay resumes after each.",
                &self.disk_corrupt,
            ),
            (
                "agent_metric_values_clamped_total",
                "Metric values CloudWatch would refuse, clamped or dropped before sending.",
                &self.metric_values_clamped,
            ),
            (
                "agent_disk_buffer_write_errors_total",
                "Failed disk buffer writes (retried; inputs wait meanwhile).",
                &self.disk_write_errors,
            ),
        ] {
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", get(value));
        }
        family(
            &mut out,
            "agent_buffer_bytes",
            "gauge",
            "Bytes of accepted events not yet delivered.",
        );
        let _ = writeln!(out, "agent_buffer_bytes {}", budget.in_use);
        family(
            &mut out,
            "agent_buffer_limit_bytes",
            "gauge",
            "The configured memory ceiling for buffered events.",
        );
        let _ = writeln!(out, "agent_buffer_limit_bytes {}", budget.limit);
        if let Some(rss) = resident_memory_bytes() {
            family(
                &mut out,
                "agent_resident_memory_bytes",
                "gauge",
                "Resident set size of the agent process.",
            );
            let _ = writeln!(out, "agent_resident_memory_bytes {rss}");
        }
        out
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a metric family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A Prometheus label value: backslash, quote and newline escaped.
pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
