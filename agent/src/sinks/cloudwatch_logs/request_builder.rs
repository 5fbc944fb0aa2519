//! Pure batching under the PutLogEvents rules (no I/O): the limits live here as named
//! constants, and every batch this module emits obeys all of them.

use std::time::Instant;

use crate::pipeline::event::Event;

/// Σ(message bytes + [`EVENT_OVERHEAD_BYTES`]) per call.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// Bytes CloudWatch adds to each event when counting a batch.
pub const EVENT_OVERHEAD_BYTES: usize = 26;
/// Events per call.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Largest time span between the first and last event of one call.
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 60 * 60 * 1000;
/// Events older than this are rejected by CloudWatch.
pub const MAX_AGE_MS: i64 = 14 * 24 * 60 * 60 * 1000;
/// Events further in the future than this are rejected by CloudWatch.
pub const MAX_FUTURE_MS: i64 = 2 * 60 * 60 * 1000;

/// A batch being filled for one stream.
#[derive(Debug, Default)]
pub struct Batcher {
    events: Vec<Event>,
    bytes: usize,
    min_time: i64,
    max_time: i64,
    opened_at: Option<Instant>,
}

/// A batch ready to send: sorted by time, within every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyBatch {
    /// Events in chronological order (stable for equal times).
    pub events: Vec<Event>,
}

impl ReadyBatch {
    /// Σ(bytes + 26), as CloudWatch counts it.
    pub fn size(&self) -> usize {
        self.events
            .iter()
            .map(|e| e.message.len() + EVENT_OVERHEAD_BYTES)
            .sum()
    }

    /// Budget bytes the batch holds.
    pub fn cost(&self) -> usize {
        self.events.iter().map(Event::cost).sum()
    }

    /// Removes the events CloudWatch would reject for their time, relative to `now_ms`
    /// (older than `max_age_ms`, more than 2 h ahead). Returns (too old, too new).
    pub fn split_unacceptable(&mut self, now_ms: i64, max_age_ms: i64) -> (Vec<Event>, Vec<Event>) {
        let oldest = now_ms - max_age_ms;
        let newest = now_ms + MAX_FUTURE_MS;
        let mut too_old = Vec::new();
        let mut too_new = Vec::new();
        if self
            .events
            .iter()
            .all(|e| e.time_ms >= oldest && e.time_ms <= newest)
        {
            return (too_old, too_new);
        }
        let events = std::mem::take(&mut self.events);
        for event in events {
            if event.time_ms < oldest {
                too_old.push(event);
            } else if event.time_ms > newest {
                too_new.push(event);
            } else {
                self.events.push(event);
            }
        }
        (too_old, too_new)
    }
}

impl Batcher {
    /// Adds `event`. When it cannot join the current batch without breaking a rule, the
    /// current batch is returned (ready to send) and `event` starts the next one.
    /// `event.message` must already be within the single-event limit.
    pub fn push(&mut self, event: Event) -> Option<ReadyBatch> {
        let size = event.message.len() + EVENT_OVERHEAD_BYTES;
        debug_assert!(size <= MAX_BATCH_BYTES);
        let fits = self.events.is_empty()
            || (self.events.len() < MAX_BATCH_EVENTS
                && self.bytes + size <= MAX_BATCH_BYTES
                && event
                    .time_ms
                    .max(self.max_time)
                    .abs_diff(event.time_ms.min(self.min_time))
                    <= MAX_BATCH_SPAN_MS as u64);
        let ready = if fits { None } else { self.take() };
        if self.events.is_empty() {
            self.min_time = event.time_ms;
            self.max_time = event.time_ms;
            self.opened_at = Some(Instant::now());
        } else {
            self.min_time = self.min_time.min(event.time_ms);
            self.max_time = self.max_time.max(event.time_ms);
        }
        self.bytes += size;
        self.events.push(event);
        // A batch that just reached a hard limit goes out now rather than at the timeout.
        if ready.is_none()
            && (self.events.len() == MAX_BATCH_EVENTS
                || self.bytes + EVENT_OVERHEAD_BYTES >= MAX_BATCH_BYTES)
        {
            return self.take();
        }
        ready
    }

    /// The current batch, sorted, leaving the batcher empty; `None` if empty.
    pub fn take(&mut self) -> Option<ReadyBatch> {
        if self.events.is_empty() {
            return None;
        }
        let mut events = std::mem::take(&mut self.events);
        self.bytes = 0;
        self.opened_at = None;
        events.sort_by_key(|e| e.time_ms);
        Some(ReadyBatch { events })
    }

    /// When the current batch received its first event.
    pub fn opened_at(&self) -> Option<Instant> {
        self.opened_at
    }

    /// Events waiting in the current batch.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// No events waiting.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn event(time_ms: i64, len: usize, id: usize) -> Event {
        let mut message = format!("{id}:");
        message.push_str(&"x".repeat(len.saturating_sub(message.len())));
        Event {
            time_ms,
            message,
            level: None,
            container: None,
            request_id: None,
            ack: None,
        }
    }

    fn check_rules(batch: &ReadyBatch) {
        assert!(!batch.events.is_empty());
        assert!(batch.events.len() <= MAX_BATCH_EVENTS);
        assert!(batch.size() <= MAX_BATCH_BYTES, "size {}", batch.size());
        assert!(
            batch
                .events
                .windows(2)
                .all(|w| w[0].time_ms <= w[1].time_ms),
            "not sorted"
        );
        let span = batch.events.last().unwrap().time_ms - batch.events[0].time_ms;
        assert!(span <= MAX_BATCH_SPAN_MS, "span {span}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Random sizes, times and orders: no batch breaks a rule, every event is emitted
        /// exactly once.
        #[test]
        fn batches_obey_every_rule_and_lose_nothing(
            specs in prop::collection::vec((0i64..(3 * MAX_BATCH_SPAN_MS), 0usize..300_000), 1..400),
            small in prop::collection::vec((0i64..1_000, 0usize..200), 0..12_000),
        ) {
            let mut batcher = Batcher::default();
            let mut out = Vec::new();
            let mut sent = 0;
            for (i, (time, len)) in specs.iter().chain(small.iter()).enumerate() {
                if let Some(batch) = batcher.push(event(*time, *len, i)) {
                    out.push(batch);
                }
                sent += 1;
            }
            out.extend(batcher.take());
            let mut seen: Vec<usize> = Vec::new();
            for batch in &out {
                check_rules(batch);
                seen.extend(batch.events.iter().map(|e| e.message.split(':').next().unwrap().parse::<usize>().unwrap()));
            }
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..sent).collect::<Vec<_>>());
        }
    }

    #[test]
    fn count_limit_closes_a_batch_at_exactly_10000() {
        let mut batcher = Batcher::default();
        let mut ready = Vec::new();
        for i in 0..25_000 {
            ready.extend(batcher.push(event(0, 10, i)));
        }
        assert_eq!(
            ready.iter().map(|b| b.events.len()).collect::<Vec<_>>(),
            [10_000, 10_000]
        );
        assert_eq!(batcher.len(), 5_000);
    }

    #[test]
    fn byte_limit_counts_26_per_event() {
        let mut batcher = Batcher::default();
        // 4 events of (262_118 + 26) = 262_144 bytes fill exactly 1 MiB.
        let mut ready = Vec::new();
        for i in 0..5 {
            ready.extend(batcher.push(event(0, 262_118, i)));
        }
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].events.len(), 4);
        assert_eq!(ready[0].size(), MAX_BATCH_BYTES);
    }

    #[test]
    fn unacceptable_times_are_split_off() {
        let now = 100 * MAX_AGE_MS;
        let mut batch = ReadyBatch {
            events: vec![
                event(now - MAX_AGE_MS - 1, 1, 0),
                event(now, 1, 1),
                event(now + MAX_FUTURE_MS + 1, 1, 2),
            ],
        };
        let (old, new) = batch.split_unacceptable(now, MAX_AGE_MS);
        assert_eq!((old.len(), new.len(), batch.events.len()), (1, 1, 1));
        assert_eq!(batch.events[0].time_ms, now);
    }
}
