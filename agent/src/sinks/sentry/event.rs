//! The request builder: an error log event (with its breadcrumbs) → a Sentry event
//! (sentry-types' protocol `Event`). Pure and synchronous; owns Sentry's limits as named
//! consts.
//!
//! From the line's JSON: `message`, `logger`, the exception (`type` = error kind, `value` =
//! error message, frames from the stack text), tags (route, method, status, request_id,
//! service; plus cluster and container), and `extra` = every field not used above. The line
//! was redacted by the pipeline before it got here.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sentry_types::protocol::v7::{
    self as protocol, Breadcrumb, ClientSdkInfo, Exception, Map as ProtoMap, Stacktrace, Uuid,
    Values,
};
use serde_json::{Map, Value};

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

/// The event the sink sends.
pub(crate) type SentryEvent = protocol::Event<'static>;

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

/// Sentry's level of a log level.
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

/// Builds events; one per sink.
#[derive(Debug)]
pub(crate) struct EventBuilder<'a> {
    pub(crate) config: &'a SentryConfig,
    /// ECS task metadata, once known (server_name, cluster, service).
    pub(crate) task: Option<&'a TaskInfo>,
    /// The server name when the task id is not known.
    pub(crate) hostname: &'a str,
}

/// Why an event cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EncodeError {
    /// Larger than [`MAX_EVENT_BYTES`] even without breadcrumbs and `extra`.
    #[error("event larger than Sentry accepts, even trimmed")]
    TooLarge,
    /// Not serializable (cannot happen with the values the builder sets).
    #[error("event not serializable: {0}")]
    Invalid(String),
}

/// Counts what is written and keeps none of it: an event's serialized size without
/// allocating it.
#[derive(Debug, Default)]
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes of `event` as JSON: the size of its envelope item's payload.
pub(crate) fn serialized_len(event: &SentryEvent) -> Result<usize, EncodeError> {
    let mut count = ByteCount::default();
    serde_json::to_writer(&mut count, event).map_err(|e| EncodeError::Invalid(e.to_string()))?;
    Ok(count.0)
}

/// The SDK the events (and envelope headers) name: this sink.
pub(crate) fn sdk_info() -> ClientSdkInfo {
    ClientSdkInfo {
        name: SDK_NAME.into(),
        version: crate::VERSION.into(),
        integrations: Vec::new(),
        packages: Vec::new(),
    }
}

/// What the line's fields say, taken out of them (the rest is `extra`).
#[derive(Debug, Default)]
struct Parts {
    /// The event's message (clipped later).
    text: String,
    logger: Option<String>,
    exception: Option<Exception>,
    /// Fields not used: `extra`.
    fields: Map<String, Value>,
}

impl EventBuilder<'_> {
    /// The event, trimmed to [`MAX_EVENT_BYTES`] when needed (breadcrumbs go first, then
    /// `extra`).
    pub(crate) fn encode(
        &self,
        pending: &Pending,
        event_id: Uuid,
    ) -> Result<SentryEvent, EncodeError> {
        let mut event = self.build(pending, event_id);
        if serialized_len(&event)? > MAX_EVENT_BYTES {
            event.breadcrumbs = Values::new();
        }
        if serialized_len(&event)? > MAX_EVENT_BYTES {
            event.extra.clear();
        }
        if serialized_len(&event)? > MAX_EVENT_BYTES {
            return Err(EncodeError::TooLarge);
        }
        Ok(event)
    }

    /// The event. Fields equal to Sentry's defaults (level `error`, platform `other`, the
    /// default fingerprint) are left out of the JSON by sentry-types; Relay fills them in.
    pub(crate) fn build(&self, pending: &Pending, event_id: Uuid) -> SentryEvent {
        let config = self.config;
        let source = &pending.event;
        let mut parts = self.parts(source);
        let tags = self.tags(source, &mut parts.fields);
        if pending.suppressed > 0 {
            let fields = &mut parts.fields;
            fields.insert("suppressed_count".into(), pending.suppressed.into());
            fields.insert("dedup_window_secs".into(), config.dedup_window_secs.into());
        }
        let task = self.task.filter(|t| !t.task_id.is_empty());
        let server_name = task.map_or(self.hostname, |t| t.task_id.as_str());
        protocol::Event {
            event_id,
            level: protocol_level(source.level),
            fingerprint: fingerprint(&pending.fingerprint),
            message: Some(clip_string(parts.text, MAX_MESSAGE_BYTES)),
            logger: parts.logger.map(|logger| clip_string(logger, 128)),
            platform: Cow::Borrowed(PLATFORM),
            timestamp: system_time(source.time_ms),
            server_name: (!server_name.is_empty()).then(|| server_name.to_owned().into()),
            release: config.release.clone().map(Cow::Owned),
            environment: config.environment.clone().map(Cow::Owned),
            breadcrumbs: pending.crumbs.iter().map(|c| self.crumb(c)).collect(),
            exception: parts.exception.into_iter().collect(),
            tags,
            extra: parts
                .fields
                .into_iter()
                .map(|(key, mut value)| {
                    clip_strings(&mut value);
                    (key, value)
                })
                .collect(),
            sdk: Some(Cow::Owned(sdk_info())),
            ..protocol::Event::default()
        }
    }

    /// Message, logger and exception, taken out of the line's fields; the pipeline's keys
    /// (time, level) removed too.
    fn parts(&self, source: &Event) -> Parts {
        let config = self.config;
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
        // Sentry shows an exception as `type: value`: without the error's own message, the
        // log message is the value.
        let exception_value = error_message.clone().or_else(|| message.clone());
        let exception = (error_kind.is_some() || stack.is_some()).then(|| Exception {
            ty: clip_string(
                error_kind.clone().unwrap_or_else(|| "Error".into()),
                MAX_MESSAGE_BYTES,
            ),
            value: exception_value.map(|value| clip_string(value, MAX_MESSAGE_BYTES)),
            stacktrace: stack
                .as_deref()
                .map(stack::frames)
                .filter(|frames| !frames.is_empty())
                .map(|frames| Stacktrace {
                    frames,
                    ..Stacktrace::default()
                }),
            ..Exception::default()
        });
        let text = message
            .or(error_message)
            .unwrap_or_else(|| match error_kind {
                Some(kind) if is_json => kind,
                _ => source.message.clone(),
            });
        Parts {
            text,
            logger,
            exception,
            fields,
        }
    }

    /// Tags: the request id, `tag_fields` (taken out of `fields`), then cluster, service
    /// and container from the task metadata.
    fn tags(&self, source: &Event, fields: &mut Map<String, Value>) -> ProtoMap<String, String> {
        let config = self.config;
        let mut tags = ProtoMap::new();
        let request_id = source
            .request_id
            .as_deref()
            .map(str::to_owned)
            .or_else(|| lookup(fields, &config.request_id_field).and_then(scalar_text));
        fields.remove(&config.request_id_field);
        if let Some(id) = request_id.as_deref().and_then(tag_value) {
            tags.insert("request_id".into(), id);
        }
        for name in &config.tag_fields {
            let key = tag_key(name);
            if tags.contains_key(&key) {
                continue;
            }
            let value = fields
                .remove(name)
                .or_else(|| lookup(fields, name).cloned());
            if let Some(value) = value
                .as_ref()
                .and_then(scalar_text)
                .as_deref()
                .and_then(tag_value)
            {
                tags.insert(key, value);
            }
        }
        if let Some(cluster) = self.task.map(|t| t.cluster.as_str()).and_then(tag_value) {
            tags.insert("cluster".into(), cluster);
        }
        if !tags.contains_key("service") {
            let family = self
                .task
                .and_then(|t| t.family_revision.split(':').next())
                .filter(|f| !f.is_empty());
            if let Some(service) = config.service.as_deref().or(family).and_then(tag_value) {
                tags.insert("service".into(), service);
            }
        }
        if let Some(container) = source.container.as_deref().and_then(tag_value) {
            tags.entry("container".into()).or_insert(container);
        }
        tags
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

/// Sentry's default grouping, as a fingerprint.
static DEFAULT_FINGERPRINT: [Cow<'static, str>; 1] = [Cow::Borrowed("{{ default }}")];

/// The fingerprint fields as Sentry's fingerprint; none: Sentry's default grouping.
fn fingerprint(fields: &[String]) -> Cow<'static, [Cow<'static, str>]> {
    if fields.is_empty() {
        Cow::Borrowed(&DEFAULT_FINGERPRINT)
    } else {
        fields.iter().map(|f| Cow::Owned(f.clone())).collect()
    }
}
