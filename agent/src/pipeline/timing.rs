//! A request's timing, as read from an access-log event or an OTLP span or histogram.

/// One request (or `count` identical ones, from an OTLP histogram bucket).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestTiming {
    /// Route template; a value that looks like a raw path is not trusted as a label.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// HTTP status code.
    pub status: u16,
    /// Latency in milliseconds (finite, ≥ 0).
    pub latency_ms: f64,
    /// How many requests this stands for (1 for a single request).
    pub count: u64,
}
