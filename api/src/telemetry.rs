//! The API's own logs: one JSON object per line on stdout, the shape the sidecar ingests.
//!
//! Every event becomes `{"timestamp":"<RFC 3339 UTC>","level":"info","target":"..",
//! "message":"..", <fields>}`. The line is built in memory and written with a single
//! `write_all`, so concurrent requests never interleave half-lines.

use std::fmt;
use std::io::Write;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Identity, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

/// Installs the JSON layer as the global subscriber. Events below `max_level` are discarded.
pub fn init(max_level: Level) {
    init_with(max_level, Identity::new());
}

/// [`init`], with `extra` (the OpenTelemetry layer, or `None`) on the same registry. The JSON
/// output is the same either way.
pub fn init_with<L>(max_level: Level, extra: L)
where
    L: Layer<Registry> + Send + Sync + 'static,
{
    let subscriber = tracing_subscriber::registry()
        .with(extra)
        .with(JsonLayer::new(max_level, std::io::stdout));
    // A second call (tests) keeps the first subscriber; that is fine.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Formats events as JSON lines into any writer factory (stdout in production).
#[derive(Debug)]
pub struct JsonLayer<W> {
    max_level: Level,
    make_writer: W,
}

impl<W> JsonLayer<W> {
    /// A layer that writes events at `max_level` or more severe into `make_writer()`.
    pub fn new(max_level: Level, make_writer: W) -> Self {
        Self {
            max_level,
            make_writer,
        }
    }
}

impl<S, W, O> Layer<S> for JsonLayer<W>
where
    S: Subscriber,
    W: Fn() -> O + 'static,
    O: Write,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > self.max_level {
            return;
        }
        let mut line = format_event(meta.level(), meta.target(), event, SystemTime::now());
        line.push('\n');
        // Logging must never take the service down: a closed stdout loses the line only.
        let _ = (self.make_writer)().write_all(line.as_bytes());
    }
}

fn format_event(level: &Level, target: &str, event: &Event<'_>, now: SystemTime) -> String {
    let mut object = Map::new();
    object.insert(
        "timestamp".into(),
        Value::String(humantime::format_rfc3339_millis(now).to_string()),
    );
    object.insert("level".into(), Value::String(level_name(level).into()));
    object.insert("target".into(), Value::String(target.into()));
    event.record(&mut JsonVisitor(&mut object));
    Value::Object(object).to_string()
}

/// Lowercase level names, as the access-log contract documents them.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN/Inf: such a value becomes null rather than invalid output.
        let value = serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
        self.0.insert(field.name().into(), value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), error_chain(value).into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// `outer: inner: root`, so the log carries the cause without a backtrace.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(max_level: Level, emit: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber =
            tracing_subscriber::registry().with(JsonLayer::new(max_level, move || writer.clone()));
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).expect("every line is JSON"))
            .collect()
    }

    #[test]
    fn events_are_single_json_lines_with_typed_fields() {
        let lines = capture(Level::INFO, || {
            tracing::info!(
                status = 200u16,
                latency_ms = 1.5,
                route = "/health",
                "request"
            );
            tracing::error!(error_kind = "panic", "request failed");
        });
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["level"], "info");
        assert_eq!(lines[0]["message"], "request");
        assert_eq!(lines[0]["status"], 200);
        assert_eq!(lines[0]["latency_ms"], 1.5);
        assert_eq!(lines[0]["route"], "/health");
        assert!(lines[0]["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(lines[1]["level"], "error");
        assert_eq!(lines[1]["error_kind"], "panic");
    }

    #[test]
    fn events_below_the_level_are_dropped_and_nan_is_null() {
        let lines = capture(Level::INFO, || {
            tracing::debug!("hidden");
            tracing::warn!(value = f64::NAN, "shown");
        });
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["message"], "shown");
        assert!(lines[0]["value"].is_null());
    }
}
