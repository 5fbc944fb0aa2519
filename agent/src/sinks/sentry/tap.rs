//! The pipeline's side: [`SentryTap::observe`] sees every batch on the hot path. It keeps
//! breadcrumbs (clipped copies, no parsing), and for the rare error events parses the JSON,
//! de-duplicates by fingerprint and queues them. One lock per call, none when the batch
//! has neither an error nor a request id; never waits: a full queue drops its oldest.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::breadcrumbs::{BreadcrumbStore, Crumb, clip};
use super::config::SentryConfig;
use super::dedup::{Admit, Dedup, Role};
use super::event::{Pending, lookup, parse_object, scalar_text};
use crate::metrics::{Metrics, SentryOutcome};
use crate::pipeline::event::{Event, Level};

/// Longest part of a message used to tell errors apart when no fingerprint field is there.
const MESSAGE_KEY_BYTES: usize = 256;
/// Longest line kept as a window's follow-up sample (without breadcrumbs): open windows
/// hold at most `max_fingerprints` × this.
pub(crate) const SAMPLE_MAX_BYTES: usize = 8 * 1024;

/// The pipeline's handle: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct SentryTap {
    pub(crate) shared: Arc<Shared>,
}

/// What the tap and the sink share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SentryConfig,
    min_level: Level,
    state: Mutex<State>,
    /// Wakes the sink when something is queued.
    pub(crate) wake: Notify,
    pub(crate) metrics: Arc<Metrics>,
}

#[derive(Debug)]
struct State {
    crumbs: BreadcrumbStore,
    dedup: Dedup<Pending>,
    queue: VecDeque<Pending>,
    /// Bytes held by `queue`.
    bytes: usize,
    capacity: usize,
    max_bytes: usize,
}

impl State {
    /// Queues `pending`, dropping the oldest beyond the count or byte ceiling (the newest
    /// always stays); returns how many were dropped.
    fn enqueue(&mut self, pending: Pending) -> u64 {
        self.bytes += pending.cost();
        self.queue.push_back(pending);
        let mut dropped = 0;
        while self.queue.len() > 1
            && (self.queue.len() > self.capacity || self.bytes > self.max_bytes)
        {
            if let Some(old) = self.queue.pop_front() {
                self.bytes -= old.cost();
                dropped += 1;
            }
        }
        dropped
    }

    fn pop(&mut self) -> Option<Pending> {
        let next = self.queue.pop_front()?;
        self.bytes -= next.cost();
        Some(next)
    }
}

fn follow_up((mut sample, count): (Pending, u64)) -> Pending {
    sample.suppressed = count;
    sample
}

/// What one `observe` did, counted after the lock is released.
#[derive(Debug, Default)]
struct Tally {
    queued: u64,
    deduplicated: u64,
    dropped: u64,
}

impl Shared {
    pub(crate) fn new(config: SentryConfig, metrics: Arc<Metrics>) -> Self {
        let min_level = config.min_level().unwrap_or(Level::Error);
        let state = State {
            crumbs: BreadcrumbStore::new(
                config.breadcrumbs,
                config.breadcrumb_max_requests,
                config.breadcrumb_max_total_bytes,
            ),
            dedup: Dedup::new(
                Duration::from_secs(config.dedup_window_secs),
                config.max_fingerprints,
            ),
            queue: VecDeque::new(),
            bytes: 0,
            capacity: config.queue_capacity.max(1),
            max_bytes: config.queue_max_bytes,
        };
        Self {
            config,
            min_level,
            state: Mutex::new(state),
            wake: Notify::new(),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (no invariant spans calls).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next error to send, after moving the follow-ups of windows closed by `now` into
    /// the queue. `closing` closes every window (shutdown).
    pub(crate) fn next(&self, now: Instant, closing: bool) -> Option<Pending> {
        let mut state = self.lock();
        let follow_ups = if closing {
            state.dedup.close_all()
        } else {
            state.dedup.due(now)
        };
        let mut dropped = 0;
        for closed in follow_ups {
            dropped += state.enqueue(follow_up(closed));
        }
        let next = state.pop();
        drop(state);
        if dropped > 0 {
            self.metrics.sentry(SentryOutcome::QueueFull, dropped);
        }
        next
    }

    /// Empties the queue and closes every window (the flush deadline has passed); returns
    /// how many events that was.
    pub(crate) fn abandon(&self) -> u64 {
        let mut state = self.lock();
        let follow_ups = state.dedup.close_all().len();
        let queued = state.queue.len();
        state.queue.clear();
        state.bytes = 0;
        (queued + follow_ups) as u64
    }

    fn fingerprint(
        &self,
        fields: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Vec<String> {
        let Some(fields) = fields else {
            return Vec::new();
        };
        self.config
            .fingerprint_fields
            .iter()
            .filter_map(|name| {
                let value = lookup(fields, name)?;
                let text = scalar_text(value).unwrap_or_else(|| value.to_string());
                Some(format!("{name}={text}"))
            })
            .collect()
    }
}

/// An error event, parsed before the lock is taken.
struct Candidate {
    index: usize,
    key: u64,
    fingerprint: Vec<String>,
    request_id: Option<Box<str>>,
}

impl crate::pipeline::Observer for SentryTap {
    fn events(&self, events: &[Event]) {
        self.observe(events);
    }
}

impl SentryTap {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Sees every processed event of a batch, in order, before the batch is queued for
    /// CloudWatch Logs.
    pub fn observe(&self, events: &[Event]) {
        self.observe_at(events, Instant::now());
    }

    pub(crate) fn observe_at(&self, events: &[Event], now: Instant) {
        let shared = &*self.shared;
        let config = &shared.config;
        let crumbs_on = config.breadcrumbs > 0;
        let mut candidates = Vec::new();
        let mut any_crumb = false;
        for (index, event) in events.iter().enumerate() {
            if event.level.is_some_and(|level| level >= shared.min_level) {
                // The rare case: parse the whole line, outside the lock.
                let fields = parse_object(&event.message);
                let fingerprint = shared.fingerprint(fields.as_ref());
                let request_id = event.request_id.clone().or_else(|| {
                    fields
                        .as_ref()
                        .and_then(|f| lookup(f, &config.request_id_field))
                        .and_then(scalar_text)
                        .map(String::into_boxed_str)
                });
                let key = dedup_key(&fingerprint, fields.as_ref(), event, config);
                candidates.push(Candidate {
                    index,
                    key,
                    fingerprint,
                    request_id,
                });
            } else if crumbs_on && event.request_id.is_some() {
                any_crumb = true;
            }
        }
        if candidates.is_empty() && !any_crumb {
            return;
        }

        let mut tally = Tally::default();
        let mut candidates = candidates.into_iter().peekable();
        {
            let mut guard = shared.lock();
            let state = &mut *guard;
            let mut evicted = Vec::new();
            for (index, event) in events.iter().enumerate() {
                let mut request_id = event.request_id.as_deref();
                if let Some(candidate) = candidates.next_if(|c| c.index == index) {
                    let crumbs = &state.crumbs;
                    let make = |role| {
                        let mut error = event.clone();
                        if error.request_id.is_none() {
                            error.request_id = candidate.request_id.clone();
                        }
                        let crumbs = match (&candidate.request_id, role) {
                            (Some(id), Role::Send) if crumbs_on => crumbs.get(id),
                            _ => Vec::new(),
                        };
                        if role == Role::Sample && error.message.len() > SAMPLE_MAX_BYTES {
                            // Only its count matters; a clipped line is sent as plain text.
                            let cut = clip(&error.message, SAMPLE_MAX_BYTES).len();
                            error.message.truncate(cut);
                        }
                        Pending {
                            event: error,
                            crumbs,
                            fingerprint: candidate.fingerprint,
                            suppressed: 0,
                        }
                    };
                    match state.dedup.admit(candidate.key, now, make, &mut evicted) {
                        Admit::Send {
                            item,
                            follow_up: closed,
                        } => {
                            if let Some(closed) = closed {
                                tally.dropped += state.enqueue(follow_up(closed));
                                tally.queued += 1;
                            }
                            tally.dropped += state.enqueue(item);
                            tally.queued += 1;
                        }
                        Admit::Suppressed => tally.deduplicated += 1,
                    }
                    for closed in evicted.drain(..) {
                        tally.dropped += state.enqueue(follow_up(closed));
                        tally.queued += 1;
                    }
                    if let (Some(id), true) = (&candidate.request_id, crumbs_on) {
                        state
                            .crumbs
                            .push(id, Crumb::of(event, config.breadcrumb_max_bytes));
                    }
                    request_id = None;
                }
                if let (Some(id), true) = (request_id, crumbs_on) {
                    state
                        .crumbs
                        .push(id, Crumb::of(event, config.breadcrumb_max_bytes));
                }
            }
        }
        if tally.deduplicated > 0 {
            shared
                .metrics
                .sentry(SentryOutcome::Deduplicated, tally.deduplicated);
        }
        if tally.dropped > 0 {
            shared
                .metrics
                .sentry(SentryOutcome::QueueFull, tally.dropped);
        }
        if tally.queued > 0 {
            shared.wake.notify_one();
        }
    }
}

/// The de-duplication key: the fingerprint, or (without one) the logger and the start of
/// the message, so unrelated errors do not fold into each other.
fn dedup_key(
    fingerprint: &[String],
    fields: Option<&serde_json::Map<String, serde_json::Value>>,
    event: &Event,
    config: &SentryConfig,
) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    if !fingerprint.is_empty() {
        fingerprint.hash(&mut hasher);
        return hasher.finish();
    }
    let pick = |names: &[String]| {
        fields.and_then(|f| {
            names
                .iter()
                .find_map(|n| lookup(f, n).and_then(scalar_text))
        })
    };
    match (pick(&config.logger_fields), pick(&config.message_fields)) {
        (logger, Some(message)) => {
            logger.hash(&mut hasher);
            clip(&message, MESSAGE_KEY_BYTES).hash(&mut hasher);
        }
        (_, None) => clip(&event.message, MESSAGE_KEY_BYTES).hash(&mut hasher),
    }
    hasher.finish()
}
