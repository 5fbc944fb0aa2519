//! The request builder: an error log event (with its breadcrumbs) → a Sentry event payload.
//! Pure and synchronous; owns Sentry's limits as named consts.
//!
//! From the line's JSON: `message`, `logger`, the exception (`type` = error kind, `value` =
//! error message, frames from the stack text), tags (route, method, status, request_id,
//! service; plus cluster and container), and `extra` = every field not used above. The line
//! was redacted by the pipeline before it got here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sentry_types::protocol::v7::{self as protocol, Breadcrumb};
use serde_json::{Map, Value, json};

use super::breadcrumbs::Crumb;
use super::config::{MAX_TAG_KEY_CHARS, SentryConfig};
use super::stack;
use crate::pipeline::ecs::TaskInfo;
use crate::pipeline::event::{Event, Level};

/// Largest event payload Sentry accepts (1 MB); larger ones are trimmed (breadcrumbs, then
/// `extra`) or dropped.
pub const MAX_EVENT_BYTES: usize = 1_000_000;
/// Longest message (and exception value) sent.
pub(crate) const MAX_MESSAGE_BYTES: usize = 8192;
/// Longest string value in `extra` or breadcrumb data.
pub(crate) const MAX_EXTRA_STRING_BYTES: usize = 16 * 1024;
/// Sentry's longest tag value.
pub(crate) const MAX_TAG_VALUE_CHARS: usize = 200;
/// The `sdk.name` the events carry.
pub const SDK_NAME: &str = "agent.sentry";
/// The platform of events built from log lines.
pub(crate) const PLATFORM: &str = "other";
/// Keys the pipeline already read (time and level); never repeated in `extra`.
const PIPELINE_KEYS: [&str; 5] = ["timestamp", "level", "time", "@timestamp", "severity"];

/// An error waiting to be sent.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// The error log event (redacted line, level, time, container, request id).
    pub(crate) event: Event,
    /// Log events of the same request seen before it, oldest first.
    pub(crate) crumbs: Vec<Crumb>,
    /// `field=value` of each fingerprint field present; empty = Sentry's default grouping.
    pub(crate) fingerprint: Vec<String>,
    /// For a de-duplication follow-up: how many errors it stands for.
    pub(crate) suppressed: u64,
}

impl Pending {
    /// Bytes held while queued (texts plus bookkeeping).
    pub(crate) fn cost(&self) -> usize {
        self.event.message.len()
            + self.crumbs.iter().map(|c| c.text.len() + 48).sum::<usize>()
            + self.fingerprint.iter().map(String::len).sum::<usize>()
            + 160
    }
}

/// A field by name: the key as written first (OTLP attributes are flat: `exception.type`),
/// else a path through nested objects (`error.kind` → `{"error":{"kind":..}}`).
pub(crate) fn lookup<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(value) = map.get(name) {
        return Some(value);
    }
    let mut parts = name.split('.');
    let mut value = map.get(parts.next()?)?;
    let mut nested = false;
    for part in parts {
        value = value.as_object()?.get(part)?;
        nested = true;
    }
    nested.then_some(value)
}

/// A scalar as text (`null`, objects and arrays: none); strings as they are.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Any value as text: strings as they are, the rest as JSON.
fn any_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Removes and returns the first of `names` present: a top-level key is removed; a nested
/// path is only read.
fn take_first(map: &mut Map<String, Value>, names: &[String]) -> Option<Value> {
    names.iter().find_map(|name| {
        map.remove(name)
            .or_else(|| lookup(map, name).cloned())
            .filter(|v| !v.is_null())
    })
}

/// The line as a JSON object, if it is one.
pub(crate) fn parse_object(line: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Sentry's name of a level.
pub(crate) fn sentry_level(level: Option<Level>) -> &'static str {
    match level {
        Some(Level::Trace | Level::Debug) => "debug",
        Some(Level::Info) | None => "info",
        Some(Level::Warn) => "warning",
        Some(Level::Error) => "error",
        Some(Level::Fatal) => "fatal",
    }
}

/// Sentry's level type for a log level (what [`sentry_level`] names).
fn protocol_level(level: Option<Level>) -> protocol::Level {
    match level {
        Some(Level::Trace | Level::Debug) => protocol::Level::Debug,
        Some(Level::Info) | None => protocol::Level::Info,
        Some(Level::Warn) => protocol::Level::Warning,
        Some(Level::Error) => protocol::Level::Error,
        Some(Level::Fatal) => protocol::Level::Fatal,
    }
}

/// Milliseconds since the epoch as a `SystemTime` (before the epoch: the epoch).
fn system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn clip_string(mut text: String, max: usize) -> String {
    if text.len() > max {
        let cut = super::breadcrumbs::clip(&text, max).len();
        text.truncate(cut);
    }
    text
}

/// Long strings in `value` (recursively) cut to [`MAX_EXTRA_STRING_BYTES`].
fn clip_strings(value: &mut Value) {
    match value {
        Value::String(text) if text.len() > MAX_EXTRA_STRING_BYTES => {
            *text = clip_string(std::mem::take(text), MAX_EXTRA_STRING_BYTES);
        }
        Value::Array(values) => values.iter_mut().for_each(clip_strings),
        Value::Object(map) => map.values_mut().for_each(clip_strings),
        _ => {}
    }
}

/// A tag value by Sentry's rules: one line, at most 200 characters, not empty.
fn tag_value(text: &str) -> Option<String> {
    let value: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_TAG_VALUE_CHARS)
        .collect();
    (!value.is_empty()).then_some(value)
}

/// A tag key by Sentry's rules: `[A-Za-z0-9_.:-]`, at most 32 characters.
fn tag_key(name: &str) -> String {
    name.chars()
        .take(MAX_TAG_KEY_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.:-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Builds event payloads; one per sink.
#[derive(Debug)]
pub(crate) struct EventBuilder<'a> {
    pub(crate) config: &'a SentryConfig,
    /// ECS task metadata, once known (server_name, cluster, service).
    pub(crate) task: Option<&'a TaskInfo>,
    /// The server name when the task id is not known.
    pub(crate) hostname: &'a str,
}

/// The event would exceed [`MAX_EVENT_BYTES`] even without breadcrumbs and `extra`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event larger than Sentry accepts, even trimmed")]
pub(crate) struct TooLarge;

impl EventBuilder<'_> {
    /// The serialized payload, trimmed to [`MAX_EVENT_BYTES`] when needed.
    pub(crate) fn encode(&self, pending: &Pending, event_id: &str) -> Result<Vec<u8>, TooLarge> {
        let mut event = self.build(pending, event_id);
        let mut bytes = serde_json::to_vec(&event).unwrap_or_default();
        for key in ["breadcrumbs", "extra"] {
            if bytes.len() <= MAX_EVENT_BYTES {
                break;
            }
            if let Some(object) = event.as_object_mut() {
                object.remove(key);
            }
            bytes = serde_json::to_vec(&event).unwrap_or_default();
        }
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(TooLarge);
        }
        Ok(bytes)
    }

    /// The event payload.
    pub(crate) fn build(&self, pending: &Pending, event_id: &str) -> Value {
        let config = self.config;
        let source = &pending.event;
        let parsed = parse_object(&source.message);
        let is_json = parsed.is_some();
        let mut fields = parsed.unwrap_or_default();

        let message = take_first(&mut fields, &config.message_fields).map(|v| any_text(&v));
        let logger = take_first(&mut fields, &config.logger_fields)
            .map(|v| any_text(&v))
            .or_else(|| source.container.as_deref().map(str::to_owned));
        let error_kind = take_first(&mut fields, &config.error_kind_fields).map(|v| any_text(&v));
        let error_message =
            take_first(&mut fields, &config.error_message_fields).map(|v| any_text(&v));
        let stack = take_first(&mut fields, &config.stack_fields).map(|v| any_text(&v));
        for key in PIPELINE_KEYS {
            fields.remove(key);
        }

        let mut tags = Map::new();
        let request_id = source
            .request_id
            .as_deref()
            .map(str::to_owned)
            .or_else(|| lookup(&fields, &config.request_id_field).and_then(scalar_text));
        fields.remove(&config.request_id_field);
        if let Some(id) = request_id.as_deref().and_then(tag_value) {
            tags.insert("request_id".into(), Value::String(id));
        }
        for name in &config.tag_fields {
            let key = tag_key(name);
            if tags.contains_key(&key) {
                continue;
            }
            let value = fields
                .remove(name)
                .or_else(|| lookup(&fields, name).cloned());
            if let Some(value) = value
                .as_ref()
                .and_then(scalar_text)
                .as_deref()
                .and_then(tag_value)
            {
                tags.insert(key, Value::String(value));
            }
        }
        let task = self.task.filter(|t| !t.task_id.is_empty());
        if let Some(cluster) = self.task.map(|t| t.cluster.as_str()).and_then(tag_value) {
            tags.insert("cluster".into(), Value::String(cluster));
        }
        if !tags.contains_key("service") {
            let family = self
                .task
                .and_then(|t| t.family_revision.split(':').next())
                .filter(|f| !f.is_empty());
            if let Some(service) = config.service.as_deref().or(family).and_then(tag_value) {
                tags.insert("service".into(), Value::String(service));
            }
        }
        if let Some(container) = source.container.as_deref().and_then(tag_value) {
            tags.entry("container").or_insert(Value::String(container));
        }

        // Sentry shows an exception as `type: value`: without the error's own message, the
        // log message is the value.
        let exception_value = error_message.clone().or_else(|| message.clone());
        let text = message
            .or_else(|| error_message.clone())
            .unwrap_or_else(|| {
                if is_json {
                    error_kind.clone().unwrap_or_else(|| source.message.clone())
                } else {
                    source.message.clone()
                }
            });
        let mut event = Map::new();
        event.insert("event_id".into(), Value::String(event_id.to_owned()));
        event.insert("timestamp".into(), json!(source.time_ms as f64 / 1000.0));
        event.insert("platform".into(), Value::String(PLATFORM.into()));
        event.insert(
            "level".into(),
            Value::String(sentry_level(source.level).into()),
        );
        if let Some(logger) = logger {
            event.insert("logger".into(), Value::String(clip_string(logger, 128)));
        }
        event.insert(
            "message".into(),
            json!({ "formatted": clip_string(text, MAX_MESSAGE_BYTES) }),
        );
        if let Some(environment) = &config.environment {
            event.insert("environment".into(), Value::String(environment.clone()));
        }
        if let Some(release) = &config.release {
            event.insert("release".into(), Value::String(release.clone()));
        }
        let server_name = task.map_or(self.hostname, |t| t.task_id.as_str());
        if !server_name.is_empty() {
            event.insert("server_name".into(), Value::String(server_name.to_owned()));
        }
        event.insert("tags".into(), Value::Object(tags));
        if error_kind.is_some() || stack.is_some() {
            let mut exception = Map::new();
            exception.insert(
                "type".into(),
                Value::String(clip_string(
                    error_kind.unwrap_or_else(|| "Error".into()),
                    MAX_MESSAGE_BYTES,
                )),
            );
            if let Some(value) = exception_value {
                exception.insert(
                    "value".into(),
                    Value::String(clip_string(value, MAX_MESSAGE_BYTES)),
                );
            }
            let frames = stack.as_deref().map(stack::frames).unwrap_or_default();
            if !frames.is_empty() {
                exception.insert("stacktrace".into(), json!({ "frames": frames }));
            }
            event.insert(
                "exception".into(),
                json!({ "values": [Value::Object(exception)] }),
            );
        }
        if pending.suppressed > 0 {
            fields.insert("suppressed_count".into(), pending.suppressed.into());
            fields.insert("dedup_window_secs".into(), config.dedup_window_secs.into());
        }
        if !fields.is_empty() {
            let mut extra = Value::Object(fields);
            clip_strings(&mut extra);
            event.insert("extra".into(), extra);
        }
        let fingerprint: Vec<Value> = if pending.fingerprint.is_empty() {
            vec![Value::String("{{ default }}".into())]
        } else {
            pending
                .fingerprint
                .iter()
                .map(|f| Value::String(f.clone()))
                .collect()
        };
        event.insert("fingerprint".into(), Value::Array(fingerprint));
        if !pending.crumbs.is_empty() {
            let values: Vec<Breadcrumb> = pending.crumbs.iter().map(|c| self.crumb(c)).collect();
            event.insert("breadcrumbs".into(), json!({ "values": values }));
        }
        event.insert(
            "sdk".into(),
            json!({ "name": SDK_NAME, "version": crate::VERSION }),
        );
        Value::Object(event)
    }

    /// One breadcrumb: its message and category from the line when it parses (a clipped
    /// line does not: its text is the message then), the other fields as `data`.
    fn crumb(&self, crumb: &Crumb) -> Breadcrumb {
        let config = self.config;
        let mut breadcrumb = Breadcrumb {
            timestamp: system_time(crumb.time_ms),
            ty: "default".into(),
            level: protocol_level(crumb.level),
            category: Some("log".into()),
            message: Some(crumb.text.to_string()),
            data: Default::default(),
        };
        if let Some(mut fields) = parse_object(&crumb.text) {
            let message = take_first(&mut fields, &config.message_fields)
                .map_or_else(|| crumb.text.to_string(), |v| any_text(&v));
            let category = take_first(&mut fields, &config.logger_fields)
                .map_or_else(|| "log".to_owned(), |v| any_text(&v));
            for key in PIPELINE_KEYS {
                fields.remove(key);
            }
            breadcrumb.category = Some(clip_string(category, 128));
            breadcrumb.message = Some(message);
            breadcrumb.data = fields.into_iter().collect();
        }
        breadcrumb
    }
}
