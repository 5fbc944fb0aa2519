//! The event model: what sources hand over and what sinks ship.

use std::sync::Arc;

/// A line as a source received it, before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// The original bytes, without the line terminator. May be invalid UTF-8.
    pub bytes: Vec<u8>,
    /// Time the source attached (Fluent Forward's event time), in ms since the epoch.
    pub time_ms: Option<i64>,
    /// The container that wrote the line, when the source knows it (FireLens does).
    pub container: Option<Arc<str>>,
    /// Which of the container's outputs wrote it, when the source knows it (FireLens's
    /// `source`: `stdout` or `stderr`): multiline traces are joined per container and origin.
    pub origin: Option<Arc<str>>,
}

impl RawLine {
    /// A line with no source-provided time or container.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: bytes.into(),
            time_ms: None,
            container: None,
            origin: None,
        }
    }
}

/// Severity, when the line said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// trace
    Trace,
    /// debug
    Debug,
    /// info, notice
    Info,
    /// warn, warning
    Warn,
    /// error, err
    Error,
    /// fatal, critical, panic, alert, emerg
    Fatal,
}

impl Level {
    /// The canonical lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
            Self::Fatal => "fatal",
        }
    }

    /// Reads the usual spellings, case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        let level = match text.len() {
            0..=11 => text.to_ascii_lowercase(),
            _ => return None,
        };
        Some(match level.as_str() {
            "trace" => Self::Trace,
            "debug" => Self::Debug,
            "info" | "notice" | "information" => Self::Info,
            "warn" | "warning" => Self::Warn,
            "error" | "err" => Self::Error,
            "fatal" | "critical" | "crit" | "panic" | "alert" | "emerg" => Self::Fatal,
            _ => return None,
        })
    }
}

/// One log event inside the pipeline. `message` is the original line (lossy UTF-8 only if it
/// was not UTF-8; redacted when it carried secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Event time in ms since the epoch: the line's own timestamp when it had one, else the
    /// source's time, else the time it was received.
    pub time_ms: i64,
    /// The text shipped to CloudWatch Logs.
    pub message: String,
    /// The severity, when the line carried a recognised level.
    pub level: Option<Level>,
    /// The container that wrote it, when known.
    pub container: Option<Arc<str>>,
    /// The line's request id (read only when a sink wants it: Sentry's breadcrumbs).
    pub request_id: Option<Box<str>>,
    /// With the disk buffer: the acknowledgement of the record this event was read from,
    /// given when the last of its events is settled.
    pub ack: Option<Ack>,
}

impl Event {
    /// Bytes this event holds against the memory ceiling: its text and request id plus a
    /// fixed overhead for the struct and its place in a batch.
    pub fn cost(&self) -> usize {
        self.message.len() + self.request_id.as_deref().map_or(0, str::len) + EVENT_OVERHEAD
    }
}

/// What a stored record does once its events reach a final outcome: implemented by the disk
/// buffer, whose record is acknowledged (deleted) when every event was settled and the last
/// [`Ack`] is dropped. Sinks only call [`Ack::settled`]; they never know what stores it.
pub trait Acknowledge: Send + Sync + std::fmt::Debug {
    /// `events` of the record were stored by the sink, or dropped for a final reason.
    fn settled(&self, events: usize);
}

/// The acknowledgement of the record an event was read from, shared by the record's events.
#[derive(Debug, Clone)]
pub struct Ack(Arc<dyn Acknowledge>);

impl Ack {
    /// Wraps a record's acknowledgement.
    pub fn new(record: Arc<dyn Acknowledge>) -> Self {
        Self(record)
    }

    /// `events` of this record reached a final outcome.
    pub fn settled(&self, events: usize) {
        self.0.settled(events);
    }

    /// Whether both are the acknowledgement of the same record.
    pub fn same_record(&self, other: &Self) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.0), Arc::as_ptr(&other.0))
    }
}

impl PartialEq for Ack {
    fn eq(&self, other: &Self) -> bool {
        self.same_record(other)
    }
}

impl Eq for Ack {}

/// Longest request id kept (Sentry's limit on a tag value): a longer value is not an id and
/// is not read, so it cannot double an event's memory outside the text's limits.
pub const MAX_REQUEST_ID_BYTES: usize = 200;

/// Approximate bytes of bookkeeping per event (struct, vector slot, allocator rounding).
pub const EVENT_OVERHEAD: usize = 64;
