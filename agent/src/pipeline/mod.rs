//! The pipeline between sources and sinks: parse once, redact, bound memory.
//!
//! Sources call [`EventSender::send`] with raw lines; it turns each into an [`Event`]
//! (timestamp and level from the line when it is JSON, the original text otherwise), takes
//! the events' bytes from the [`MemoryBudget`] (waiting when the ceiling is reached: that
//! is the back-pressure), and queues them for the sink. Returning `Ok` is the moment an
//! event counts as *accepted*: forward acks, HTTP answers 2xx and file tail checkpoints only
//! after it. The sink gives the bytes back once CloudWatch Logs has stored the events.

pub mod budget;
pub mod config;
pub mod ecs;
pub mod event;
pub mod fields;
pub mod filter;
pub mod multiline;
pub mod output;
pub mod parse;
pub mod redact;
pub mod timing;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::budget::MemoryBudget;
use self::event::{Event, RawLine};
use self::filter::Filters;
pub use self::output::{Closed, MemoryOutput, Output, TrySendError};
use self::parse::ParseFields;
use self::redact::Redactor;
use self::timing::RequestTiming;
use crate::metrics::{DropReason, Metrics, SourceKind};

/// Appended to an event cut to the size CloudWatch Logs accepts.
pub const TRUNCATION_MARKER: &str = "...[truncated by agent]";

/// Sees what the pipeline processes, on the source's task, before it is queued: the Sentry
/// sink's tap (error events and their breadcrumbs) and the request-timing recorder. Must be
/// quick and must not block: it runs on the hot path.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// Every processed event of a batch, in order.
    fn events(&self, _events: &[Event]) {}
    /// The request timings read from a batch's access-log events (only called when
    /// [`wants_timings`](Self::wants_timings)).
    fn timings(&self, _timings: Vec<RequestTiming>) {}
    /// Whether it takes timings: the others are never handed a copy.
    fn wants_timings(&self) -> bool {
        false
    }
}

/// Turns raw lines into events.
#[derive(Debug, Clone)]
pub struct Processor {
    fields: ParseFields,
    redactor: Option<Redactor>,
    max_event_bytes: usize,
    observers: Vec<Arc<dyn Observer>>,
    fields_request_id: Option<String>,
    multiline: Option<Arc<multiline::Multiline>>,
    filters: Option<Arc<Filters>>,
}

impl Processor {
    /// `redactor` is `None` when redaction is switched off; events longer than
    /// `max_event_bytes` are truncated with [`TRUNCATION_MARKER`].
    pub fn new(fields: ParseFields, redactor: Option<Redactor>, max_event_bytes: usize) -> Self {
        Self {
            fields,
            redactor,
            max_event_bytes: max_event_bytes.max(TRUNCATION_MARKER.len() + 4),
            observers: Vec::new(),
            fields_request_id: None,
            multiline: None,
            filters: None,
        }
    }

    /// Has the line sources (forward, stdin, file) join stack traces with `multiline`
    /// before sending.
    pub fn with_multiline(mut self, multiline: Arc<multiline::Multiline>) -> Self {
        self.multiline = Some(multiline);
        self
    }

    /// Also shows every batch to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Also reads each line's request id from `field` (Sentry's breadcrumbs group by it).
    pub fn with_request_id_field(mut self, field: String) -> Self {
        self.fields_request_id = Some(field);
        self
    }

    /// Also applies `filters` (none when empty).
    pub fn with_filters(mut self, filters: Filters) -> Self {
        self.filters = (!filters.is_empty()).then(|| Arc::new(filters));
        self
    }

    /// Whether `event` passes the filters; a rejected one is counted.
    fn admits(&self, event: &Event, metrics: &Metrics) -> bool {
        let admitted = self.filters.as_ref().is_none_or(|f| f.admits(event));
        if !admitted {
            metrics.dropped(DropReason::Filtered, 1);
        }
        admitted
    }

    /// Shows a batch of processed events to the observers.
    fn observe(&self, events: &[Event]) {
        for observer in &self.observers {
            observer.events(events);
        }
    }

    /// Hands collected timings to the observers (the recorder takes its lock once a batch).
    pub fn record(&self, timings: Vec<RequestTiming>) {
        if timings.is_empty() {
            return;
        }
        let mut takers = self.observers.iter().filter(|o| o.wants_timings());
        let Some(mut observer) = takers.next() else {
            return;
        };
        // Each taker but the last gets a copy; the last takes the vector itself.
        for next in takers {
            observer.timings(timings.clone());
            observer = next;
        }
        observer.timings(timings);
    }

    /// One line → one event. Never fails and never drops: a line that is not JSON, or not
    /// UTF-8, is shipped as it is (invalid bytes replaced by U+FFFD).
    pub fn process(&self, raw: RawLine, now_ms: i64, metrics: &Metrics) -> Event {
        let mut timings = Vec::new();
        let event = self.process_collecting(raw, now_ms, metrics, &mut timings);
        self.record(timings);
        event
    }

    /// Like [`process`](Self::process), but leaves an access-log event's timing in
    /// `timings`, so a batch takes the aggregator's lock once rather than per line.
    pub fn process_collecting(
        &self,
        raw: RawLine,
        now_ms: i64,
        metrics: &Metrics,
        timings: &mut Vec<RequestTiming>,
    ) -> Event {
        let mut bytes = raw.bytes;
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let mut message = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => {
                metrics.invalid_utf8();
                String::from_utf8_lossy(error.as_bytes()).into_owned()
            }
        };
        let mut parsed =
            parse::parse_with_request_id(&message, &self.fields, self.fields_request_id.as_deref());
        if let Some(timing) = parsed.timing.take() {
            timings.push(timing);
        }
        if let Some(redactor) = &self.redactor
            && redactor.redact(&mut message, parsed.is_json)
        {
            metrics.redacted();
        }
        if message.len() > self.max_event_bytes {
            truncate(&mut message, self.max_event_bytes);
            metrics.truncated(1);
        }
        Event {
            time_ms: parsed.time_ms.or(raw.time_ms).unwrap_or(now_ms),
            message,
            level: parsed.level,
            container: raw.container,
            request_id: parsed.request_id,
            ack: None,
        }
    }
}

/// Cuts `message` to at most `max` bytes (on a character boundary), marker included.
pub fn truncate(message: &mut String, max: usize) {
    let mut cut = max.saturating_sub(TRUNCATION_MARKER.len());
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str(TRUNCATION_MARKER);
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Events on their way to the sink, with the budget bytes they hold.
#[derive(Debug)]
pub struct Batch {
    /// The events.
    pub events: Vec<Event>,
}

impl Batch {
    /// Budget bytes these events hold (Σ [`Event::cost`]).
    pub fn cost(&self) -> usize {
        self.events.iter().map(Event::cost).sum()
    }
}

#[derive(Debug)]
struct Shared {
    output: Box<dyn Output>,
    budget: MemoryBudget,
    processor: Processor,
    metrics: Arc<Metrics>,
    /// Fires when inputs must stop: a source waiting in `send` gives up (its lines are not
    /// accepted, so not acknowledged).
    closed: CancellationToken,
}

/// A source's handle into the pipeline. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventSender {
    shared: Arc<Shared>,
    source: SourceKind,
}

/// Creates the in-memory pipeline: the sender side for sources and the receiver for the
/// sink (the budget bounds memory; the channel only bounds the number of batches).
pub fn channel(
    processor: Processor,
    budget: MemoryBudget,
    metrics: Arc<Metrics>,
) -> (EventSenders, mpsc::Receiver<Batch>) {
    let (output, rx) = MemoryOutput::new(budget.clone());
    let senders = EventSenders::new(
        processor,
        budget,
        metrics,
        Box::new(output),
        CancellationToken::new(),
    );
    (senders, rx)
}

/// Hands out one [`EventSender`] per source. Dropping it and every sender closes the
/// pipeline, which is how the sink learns that inputs have stopped.
#[derive(Debug, Clone)]
pub struct EventSenders {
    shared: Arc<Shared>,
}

impl EventSenders {
    /// A pipeline writing to `output`; chunks are sized against `budget`; `closed` makes
    /// waiting senders give up.
    pub fn new(
        processor: Processor,
        budget: MemoryBudget,
        metrics: Arc<Metrics>,
        output: Box<dyn Output>,
        closed: CancellationToken,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                output,
                budget,
                processor,
                metrics,
                closed,
            }),
        }
    }

    /// A sender labelled with `source` in the metrics.
    pub fn for_source(&self, source: SourceKind) -> EventSender {
        EventSender {
            shared: self.shared.clone(),
            source,
        }
    }
}

impl EventSender {
    /// Processes `lines` and queues them, waiting while the memory ceiling is reached.
    /// Returns once every line is accepted, or `Closed` when the pipeline shut down first
    /// (then a suffix of the lines was not accepted).
    pub async fn send(&self, lines: Vec<RawLine>) -> Result<(), Closed> {
        let shared = &*self.shared;
        let now = now_ms();
        // Chunks of at most a quarter of the budget, so several sources can make progress
        // and no single acquisition can exceed the whole budget.
        let chunk_limit = self.max_batch_cost().max(1);
        let mut chunk: Vec<Event> = Vec::new();
        let mut cost = 0usize;
        let mut raw_bytes = 0u64;
        let mut timings = Vec::new();
        for line in lines {
            raw_bytes += line.bytes.len() as u64;
            let event =
                shared
                    .processor
                    .process_collecting(line, now, &shared.metrics, &mut timings);
            if !shared.processor.admits(&event, &shared.metrics) {
                continue;
            }
            if !chunk.is_empty() && cost + event.cost() > chunk_limit {
                shared.processor.observe(&chunk);
                self.push(std::mem::take(&mut chunk), cost, raw_bytes)
                    .await?;
                cost = 0;
                raw_bytes = 0;
            }
            cost += event.cost();
            chunk.push(event);
        }
        shared.processor.record(timings);
        if !chunk.is_empty() {
            shared.processor.observe(&chunk);
            self.push(chunk, cost, raw_bytes).await?;
        }
        Ok(())
    }

    async fn push(&self, events: Vec<Event>, cost: usize, raw_bytes: u64) -> Result<(), Closed> {
        let shared = &*self.shared;
        let count = events.len() as u64;
        // Outputs are cancel-safe: a push dropped while waiting gives its budget back.
        tokio::select! {
            biased;
            pushed = shared.output.push(events, cost) => pushed?,
            () = shared.closed.cancelled() => return Err(Closed),
        }
        shared.metrics.received(self.source, count, raw_bytes);
        Ok(())
    }

    /// Like [`send`](Self::send) but never waits for room: `Full` when the ceiling (or the
    /// disk buffer's cap) is reached (the HTTP source answers 503 then). All or nothing.
    /// With the disk buffer it does wait for the write itself, since that is what accepting
    /// means there.
    pub async fn try_send(&self, lines: Vec<RawLine>) -> Result<(), TrySendError> {
        let shared = &*self.shared;
        if shared.closed.is_cancelled() {
            return Err(TrySendError::Closed);
        }
        let now = now_ms();
        let raw_bytes: u64 = lines.iter().map(|l| l.bytes.len() as u64).sum();
        let events: Vec<Event> = lines
            .into_iter()
            .map(|l| shared.processor.process(l, now, &shared.metrics))
            .filter(|event| shared.processor.admits(event, &shared.metrics))
            .collect();
        let cost = events.iter().map(Event::cost).sum();
        if cost > self.max_batch_cost() {
            return Err(TrySendError::TooLarge);
        }
        let count = events.len() as u64;
        // Shown to the observers before the (rarely failing) queueing: a refused request is
        // retried by its client, and Sentry's de-duplication window absorbs the repeat.
        shared.processor.observe(&events);
        shared.output.try_push(events, cost).await?;
        shared.metrics.received(self.source, count, raw_bytes);
        Ok(())
    }

    /// The most budget bytes one `try_send` may take (a quarter of the ceiling): a source
    /// can refuse a request that could never fit before materialising its lines.
    pub fn max_batch_cost(&self) -> usize {
        self.shared.budget.limit() / 4
    }

    /// A new stack-trace joiner (one per connection, file or stdin), when multiline is on.
    pub fn joiner(&self) -> Option<multiline::Joiner> {
        let multiline = self.shared.processor.multiline.clone()?;
        Some(multiline::Joiner::new(multiline))
    }

    /// The source this sender counts for.
    pub fn source(&self) -> SourceKind {
        self.source
    }

    /// The shared metrics (sources count their own errors).
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processor(max: usize) -> Processor {
        let keys: Vec<String> = redact::DEFAULT_KEYS
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        Processor::new(
            ParseFields {
                timestamp: "timestamp".into(),
                level: "level".into(),
                timing: None,
            },
            Some(Redactor::new(&keys)),
            max,
        )
    }

    #[test]
    fn json_time_wins_then_source_time_then_now() {
        let p = processor(1024);
        let m = Metrics::default();
        let json = RawLine {
            bytes: br#"{"timestamp":"1970-01-01T00:00:01Z","level":"error"}"#.to_vec(),
            time_ms: Some(5),
            container: None,
            origin: None,
        };
        let event = p.process(json, 99, &m);
        assert_eq!(event.time_ms, 1000);
        assert_eq!(event.level, Some(event::Level::Error));
        let plain = RawLine {
            bytes: b"hello\r".to_vec(),
            time_ms: Some(5),
            container: None,
            origin: None,
        };
        let event = p.process(plain, 99, &m);
        assert_eq!((event.time_ms, event.message.as_str()), (5, "hello"));
        assert_eq!(p.process(RawLine::new("x"), 99, &m).time_ms, 99);
    }

    #[test]
    fn the_request_id_is_read_only_when_asked_for() {
        let fields = ParseFields {
            timestamp: "timestamp".into(),
            level: "level".into(),
            timing: None,
        };
        let line = r#"{"level":"error","request_id":"r-\u0031","x":{"request_id":"inner"}}"#;
        assert_eq!(parse::parse(line, &fields).request_id, None);
        let parsed = parse::parse_with_request_id(line, &fields, Some("request_id"));
        assert_eq!(parsed.request_id.as_deref(), Some("r-1"));
        assert_eq!(parsed.level, Some(event::Level::Error));
        let number = r#"{"request_id":42}"#;
        assert_eq!(
            parse::parse_with_request_id(number, &fields, Some("request_id")).request_id,
            None,
            "only strings are ids"
        );
    }

    #[test]
    fn invalid_utf8_is_shipped_lossily_and_counted() {
        let m = Metrics::default();
        let event = processor(1024).process(RawLine::new(vec![b'a', 0xff, b'b', 0]), 1, &m);
        assert_eq!(event.message, "a\u{fffd}b\0");
        assert!(
            m.render(MemoryBudget::new(10).usage())
                .contains("agent_lines_invalid_utf8_total 1")
        );
    }

    #[test]
    fn long_lines_are_truncated_on_a_char_boundary_with_a_marker() {
        let m = Metrics::default();
        let line = "é".repeat(100);
        let event = processor(64).process(RawLine::new(line), 1, &m);
        assert!(event.message.len() <= 64);
        assert!(event.message.ends_with(TRUNCATION_MARKER));
        assert!(event.message.starts_with("éé"));
    }

    #[tokio::test]
    async fn send_waits_for_the_budget_and_try_send_reports_full() {
        let metrics = Arc::new(Metrics::default());
        let budget = MemoryBudget::new(4 * (EVENT_COST_10));
        let (senders, mut rx) = channel(processor(1024), budget.clone(), metrics);
        let sender = senders.for_source(SourceKind::Stdin);
        sender
            .send(vec![RawLine::new("0123456789"); 4])
            .await
            .unwrap();
        assert_eq!(budget.in_use(), 4 * EVENT_COST_10);
        assert_eq!(
            sender.try_send(vec![RawLine::new("0123456789")]).await,
            Err(TrySendError::Full)
        );
        let blocked = {
            let sender = sender.clone();
            tokio::spawn(async move { sender.send(vec![RawLine::new("0123456789")]).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            !blocked.is_finished(),
            "send must wait while the ceiling is reached"
        );
        let mut received = 0;
        while received < 4 {
            let batch = rx.recv().await.unwrap();
            received += batch.events.len();
            budget.release(batch.cost());
        }
        blocked.await.unwrap().unwrap();
        assert_eq!(rx.recv().await.unwrap().events.len(), 1);
    }

    #[test]
    fn request_ids_are_capped_and_counted_in_the_cost() {
        let fields = ParseFields {
            timestamp: "timestamp".into(),
            level: "level".into(),
            timing: None,
        };
        let p = Processor::new(fields, None, 1 << 20).with_request_id_field("rid".into());
        let m = Metrics::default();
        let short = p.process(RawLine::new(r#"{"rid":"abc"}"#), 1, &m);
        assert_eq!(short.request_id.as_deref(), Some("abc"));
        assert_eq!(
            short.cost(),
            short.message.len() + 3 + event::EVENT_OVERHEAD
        );
        let long = format!(
            r#"{{"rid":"{}"}}"#,
            "x".repeat(event::MAX_REQUEST_ID_BYTES + 1)
        );
        let long = p.process(RawLine::new(long), 1, &m);
        assert_eq!(long.request_id, None, "an over-long id is not read");
    }

    #[tokio::test]
    async fn senders_cancelled_mid_send_leave_the_budget_exactly_as_it_was() {
        // Regression: bytes taken from the budget and then dropped with a cancelled send
        // (an OTLP client gone, a gRPC deadline) were never given back.
        let metrics = Arc::new(Metrics::default());
        let budget = MemoryBudget::new(1 << 20);
        let (senders, mut rx) = channel(processor(1024), budget.clone(), metrics);
        let sender = senders.for_source(SourceKind::Otlp);
        // Fill the channel's slots (not the budget): the next sends take their bytes, then
        // wait for a slot.
        for _ in 0..output::CHANNEL_BATCHES {
            sender.send(vec![RawLine::new("x")]).await.unwrap();
        }
        let accepted = budget.in_use();
        let waiting: Vec<_> = (0..16)
            .map(|_| {
                let sender = sender.clone();
                tokio::spawn(async move { sender.send(vec![RawLine::new("0123456789")]).await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(
            budget.in_use(),
            accepted + 16 * EVENT_COST_10,
            "the waiting sends hold their bytes"
        );
        for task in &waiting {
            task.abort();
        }
        for task in waiting {
            assert!(task.await.unwrap_err().is_cancelled());
        }
        assert_eq!(
            budget.in_use(),
            accepted,
            "cancelled sends gave their bytes back"
        );
        while let Ok(batch) = rx.try_recv() {
            budget.release(batch.cost());
        }
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn timings_go_only_to_the_observers_that_take_them() {
        #[derive(Debug, Default)]
        struct Counting {
            wants: bool,
            got: std::sync::atomic::AtomicUsize,
        }
        impl Observer for Counting {
            fn timings(&self, timings: Vec<RequestTiming>) {
                self.got
                    .fetch_add(timings.len(), std::sync::atomic::Ordering::Relaxed);
            }
            fn wants_timings(&self) -> bool {
                self.wants
            }
        }
        let taker = Arc::new(Counting {
            wants: true,
            ..Counting::default()
        });
        let bystander = Arc::new(Counting::default());
        let p = processor(1024)
            .with_observer(bystander.clone())
            .with_observer(taker.clone());
        let timing = RequestTiming {
            route: "/x".into(),
            method: "GET".into(),
            status: 200,
            latency_ms: 1.0,
            count: 1,
        };
        p.record(vec![timing.clone(), timing]);
        assert_eq!(taker.got.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(bystander.got.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    const EVENT_COST_10: usize = 10 + event::EVENT_OVERHEAD;
}
