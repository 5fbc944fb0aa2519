//! Every metric name the agent emits, in one table: the Prometheus families on `/metrics`
//! and the CloudWatch metrics the publisher sends (and `provision` checks dashboards and
//! alarms against). Label values come from the enums in [`super`] (`SourceKind`,
//! `DropReason`, ...), shared by both: a Prometheus `reason="throttled"` is the CloudWatch
//! `Reason=throttled`.

// Prometheus: the agent's own counters and gauges.

/// Log events accepted, per `source` (counter).
pub const EVENTS_RECEIVED: &str = "agent_events_received_total";
/// Bytes of log events accepted, per `source` (counter).
pub const BYTES_RECEIVED: &str = "agent_bytes_received_total";
/// Log events stored by CloudWatch Logs (counter).
pub const EVENTS_SENT: &str = "agent_events_sent_total";
/// Message bytes stored by CloudWatch Logs (counter).
pub const BYTES_SENT: &str = "agent_bytes_sent_total";
/// Log events that will not be delivered, per `reason` (counter).
pub const EVENTS_DROPPED: &str = "agent_events_dropped_total";
/// Calls retried, per `reason` (counter).
pub const RETRIES: &str = "agent_retries_total";
/// PutLogEvents calls, per `outcome` (counter).
pub const PUT_LOG_EVENTS: &str = "agent_put_log_events_total";
/// PutLogEvents latency (histogram, seconds).
pub const PUT_LOG_EVENTS_DURATION: &str = "agent_put_log_events_duration_seconds";
/// Events cut to the size CloudWatch Logs accepts (counter).
pub const EVENTS_TRUNCATED: &str = "agent_events_truncated_total";
/// Lines with invalid UTF-8 replaced (counter).
pub const LINES_INVALID_UTF8: &str = "agent_lines_invalid_utf8_total";
/// Events sent to a fallback log group or stream by the cardinality guard (counter).
pub const EVENTS_REROUTED: &str = "agent_events_rerouted_total";
/// Lines with secrets replaced (counter).
pub const LINES_REDACTED: &str = "agent_lines_redacted_total";
/// Stack traces joined from several lines into one event, per `source` (counter).
pub const MULTILINE_JOINED: &str = "agent_multiline_traces_joined_total";
/// Joined traces cut at `max_lines` or `max_bytes`, per `reason` (counter).
pub const MULTILINE_CUT: &str = "agent_multiline_traces_cut_total";
/// Frames, requests or connections an input rejected, per `source` and `kind` (counter).
pub const INPUT_ERRORS: &str = "agent_input_errors_total";
/// CloudWatch metric datums, per `outcome` (counter).
pub const METRIC_DATUMS: &str = "agent_metric_datums_total";
/// Metric values clamped or dropped before sending (counter).
pub const METRIC_VALUES_CLAMPED: &str = "agent_metric_values_clamped_total";
/// Error events on their way to Sentry, per `outcome` (counter).
pub const SENTRY_EVENTS: &str = "agent_sentry_events_total";
/// Events replayed from the disk buffer at start (counter).
pub const DISK_BUFFER_REPLAYED: &str = "agent_disk_buffer_replayed_events_total";
/// Damaged disk buffer records (counter).
pub const DISK_BUFFER_CORRUPT: &str = "agent_disk_buffer_corrupt_records_total";
/// Failed disk buffer writes (counter).
pub const DISK_BUFFER_WRITE_ERRORS: &str = "agent_disk_buffer_write_errors_total";
/// Bytes of undelivered events in the disk buffer (gauge).
pub const DISK_BUFFER_BYTES: &str = "agent_disk_buffer_bytes";
/// The disk buffer's size cap (gauge).
pub const DISK_BUFFER_LIMIT_BYTES: &str = "agent_disk_buffer_limit_bytes";
/// 1 while inputs wait on the disk buffer (gauge).
pub const DISK_BUFFER_BLOCKED: &str = "agent_disk_buffer_blocked";
/// Bytes of accepted events not yet delivered (gauge).
pub const BUFFER_BYTES: &str = "agent_buffer_bytes";
/// The memory ceiling for buffered events (gauge).
pub const BUFFER_LIMIT_BYTES: &str = "agent_buffer_limit_bytes";
/// Resident set size of the process (gauge).
pub const RESIDENT_MEMORY: &str = "agent_resident_memory_bytes";
/// 1 when an endpoint's last probe answered 2xx in time, per `endpoint` (gauge).
pub const HEALTH_CHECK_UP: &str = "agent_health_check_up";
/// An endpoint's last probe latency, per `endpoint` (gauge, seconds).
pub const HEALTH_CHECK_LATENCY: &str = "agent_health_check_latency_seconds";

// Prometheus: request metrics (access log and OTLP timings).

/// Requests seen, per `route`, `method` and `status_class` (counter).
pub const HTTP_REQUESTS: &str = "http_server_requests_total";
/// Request latency, with the same labels (histogram, seconds).
pub const HTTP_REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// Requests whose route was folded into `route="other"` (counter).
pub const ROUTES_FOLDED: &str = "agent_routes_folded_total";
/// Request timings rejected as unusable (counter).
pub const TIMINGS_INVALID: &str = "agent_timings_invalid_total";
/// Request timings whose count was clamped (counter).
pub const TIMINGS_CLAMPED: &str = "agent_timings_clamped_total";

/// Prometheus label names.
pub mod labels {
    /// The input (`SourceKind`).
    pub const SOURCE: &str = "source";
    /// Why (`DropReason`, `RetryReason`).
    pub const REASON: &str = "reason";
    /// What became of it (`SentryOutcome`, call and datum outcomes).
    pub const OUTCOME: &str = "outcome";
    /// An input error's kind.
    pub const KIND: &str = "kind";
    /// The probed health route.
    pub const ENDPOINT: &str = "endpoint";
    /// Route template.
    pub const ROUTE: &str = "route";
    /// HTTP method.
    pub const METHOD: &str = "method";
    /// `2xx`, `5xx`, ...
    pub const STATUS_CLASS: &str = "status_class";
}

/// CloudWatch metric names (the publisher's catalog; `provision` checks dashboards and
/// alarms against [`cloudwatch::ALL`]).
pub mod cloudwatch {
    /// Requests per period (Count), per kept dimension set and rolled up to the static
    /// dimensions alone (what alarms use: they cannot search).
    pub const REQUEST_COUNT: &str = "RequestCount";
    /// Requests answered 5xx per period (Count), like `RequestCount`.
    pub const ERROR_COUNT: &str = "ErrorCount";
    /// Request latency distribution (Milliseconds, published as Values/Counts), like
    /// `RequestCount`.
    pub const LATENCY: &str = "Latency";
    /// 1 when a health probe answered 2xx in time, else 0 (None), per Endpoint.
    pub const HEALTH_CHECK: &str = "HealthCheck";
    /// Health probe latency (Milliseconds), per Endpoint.
    pub const PROBE_LATENCY: &str = "ProbeLatency";
    /// 1 per period while the sidecar runs (Count).
    pub const HEARTBEAT: &str = "Heartbeat";
    /// Log events accepted from every input during the period (Count).
    pub const EVENTS_IN: &str = "EventsIn";
    /// Log events CloudWatch Logs stored during the period (Count).
    pub const EVENTS_OUT: &str = "EventsOut";
    /// Log events that will never be delivered (Count): the total every period, and per
    /// `Reason` when non-zero.
    pub const EVENTS_DROPPED: &str = "EventsDropped";
    /// Calls retried (Count): the total every period, and per `Reason` when non-zero.
    pub const RETRIES: &str = "Retries";
    /// Bytes of accepted, undelivered events at the end of the period: the queue depth
    /// (Bytes).
    pub const BUFFERED_BYTES: &str = "BufferedBytes";
    /// Resident set size of the sidecar process (Bytes).
    pub const RESIDENT_MEMORY: &str = "ResidentMemory";
    /// Error events on their way to Sentry (Count): the total every period, and per
    /// `Outcome` (sent, rate_limited, ...) when non-zero.
    pub const SENTRY_EVENTS: &str = "SentryEvents";
    /// Every metric the sidecar publishes.
    pub const ALL: [&str; 13] = [
        REQUEST_COUNT,
        ERROR_COUNT,
        LATENCY,
        HEALTH_CHECK,
        PROBE_LATENCY,
        HEARTBEAT,
        EVENTS_IN,
        EVENTS_OUT,
        EVENTS_DROPPED,
        RETRIES,
        BUFFERED_BYTES,
        RESIDENT_MEMORY,
        SENTRY_EVENTS,
    ];

    /// Dimension names the sidecar adds to its metrics (besides the configured static and
    /// per-request ones).
    pub mod dimensions {
        /// The probed health route (`HealthCheck`, `ProbeLatency`).
        pub const ENDPOINT: &str = "Endpoint";
        /// Why events were dropped or a call retried (`EventsDropped`, `Retries`).
        pub const REASON: &str = "Reason";
        /// What became of a Sentry event (`SentryEvents`).
        pub const OUTCOME: &str = "Outcome";
    }
}
