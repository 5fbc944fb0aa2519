//! The last log events of each request, kept so an error can carry them as breadcrumbs.
//! Bounded three ways: crumbs per request, bytes per crumb (clipped), and request ids and
//! bytes in all (the oldest request is forgotten first).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::pipeline::event::{Event, Level};

/// One remembered log event: its time, level and (clipped) text, parsed only if it is ever
/// sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Crumb {
    /// Event time, ms since the epoch.
    pub(crate) time_ms: i64,
    /// The event's level, when it had one.
    pub(crate) level: Option<Level>,
    /// The (redacted) line, cut to the byte limit on a character boundary.
    pub(crate) text: Box<str>,
}

impl Crumb {
    /// The crumb of `event`, its text cut to `max_bytes`.
    pub(crate) fn of(event: &Event, max_bytes: usize) -> Self {
        Self {
            time_ms: event.time_ms,
            level: event.level,
            text: clip(&event.message, max_bytes).into(),
        }
    }

    fn cost(&self) -> usize {
        self.text.len() + CRUMB_OVERHEAD
    }
}

/// Bytes of bookkeeping per crumb (struct, deque slot, allocator rounding).
const CRUMB_OVERHEAD: usize = 48;

/// `text` cut to at most `max` bytes, on a character boundary.
pub(crate) fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// Bytes of bookkeeping per request id (map entry, order slot, the shared allocation).
const REQUEST_OVERHEAD: usize = 96;

/// What one request id holds against the byte cap (its text is stored once, shared by the
/// map and the eviction order).
fn request_cost(id: &str) -> usize {
    id.len() + REQUEST_OVERHEAD
}

/// Crumbs per request id, oldest request first out.
#[derive(Debug)]
pub(crate) struct BreadcrumbStore {
    by_request: HashMap<Arc<str>, VecDeque<Crumb>>,
    /// Request ids in the order they were first seen (eviction order).
    order: VecDeque<Arc<str>>,
    bytes: usize,
    per_request: usize,
    max_requests: usize,
    max_bytes: usize,
}

impl BreadcrumbStore {
    /// Keeps `per_request` crumbs for at most `max_requests` requests and `max_bytes` in all.
    pub(crate) fn new(per_request: usize, max_requests: usize, max_bytes: usize) -> Self {
        Self {
            by_request: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            per_request,
            max_requests: max_requests.max(1),
            max_bytes,
        }
    }

    /// Remembers `crumb` for `request_id`.
    pub(crate) fn push(&mut self, request_id: &str, crumb: Crumb) {
        if self.per_request == 0 {
            return;
        }
        self.bytes += crumb.cost();
        if let Some(crumbs) = self.by_request.get_mut(request_id) {
            crumbs.push_back(crumb);
            if crumbs.len() > self.per_request
                && let Some(old) = crumbs.pop_front()
            {
                self.bytes -= old.cost();
            }
        } else {
            while self.by_request.len() >= self.max_requests {
                self.evict_oldest();
            }
            let id: Arc<str> = request_id.into();
            self.bytes += request_cost(&id);
            self.order.push_back(id.clone());
            self.by_request.insert(id, VecDeque::from([crumb]));
        }
        while self.bytes > self.max_bytes && !self.order.is_empty() {
            self.evict_oldest();
        }
    }

    /// The crumbs of `request_id`, oldest first (they stay for the request's next error).
    pub(crate) fn get(&self, request_id: &str) -> Vec<Crumb> {
        self.by_request
            .get(request_id)
            .map(|crumbs| crumbs.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn evict_oldest(&mut self) {
        if let Some(id) = self.order.pop_front()
            && let Some(crumbs) = self.by_request.remove(&id)
        {
            self.bytes -= crumbs.iter().map(Crumb::cost).sum::<usize>() + request_cost(&id);
        }
    }

    /// Request ids tracked.
    #[cfg(test)]
    pub(crate) fn requests(&self) -> usize {
        self.by_request.len()
    }

    /// Bytes held (texts plus bookkeeping).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(text: &str, time_ms: i64) -> Event {
        Event {
            time_ms,
            message: text.to_owned(),
            level: Some(Level::Info),
            container: None,
            request_id: None,
            ack: None,
        }
    }

    #[test]
    fn keeps_the_last_n_per_request_in_order() {
        let mut store = BreadcrumbStore::new(3, 10, 1 << 20);
        for i in 0..5 {
            store.push("a", Crumb::of(&event(&format!("a{i}"), i), 1024));
            store.push("b", Crumb::of(&event(&format!("b{i}"), i), 1024));
        }
        let texts: Vec<_> = store.get("a").into_iter().map(|c| c.text).collect();
        assert_eq!(
            texts,
            ["a2".into(), "a3".into(), "a4".into()] as [Box<str>; 3]
        );
        assert_eq!(store.get("b").len(), 3);
        assert!(store.get("c").is_empty());
    }

    #[test]
    fn clips_crumbs_on_a_character_boundary() {
        let crumb = Crumb::of(&event(&"é".repeat(100), 1), 11);
        assert_eq!(&*crumb.text, "ééééé");
    }

    #[test]
    fn forgets_the_oldest_request_beyond_the_count_and_byte_limits() {
        let mut store = BreadcrumbStore::new(20, 3, 1 << 20);
        for id in ["r1", "r2", "r3", "r4"] {
            store.push(id, Crumb::of(&event("x", 1), 1024));
        }
        assert_eq!(store.requests(), 3);
        assert!(store.get("r1").is_empty());
        assert_eq!(store.get("r4").len(), 1);

        let mut store = BreadcrumbStore::new(20, 1000, 10 * (100 + CRUMB_OVERHEAD));
        for i in 0..1000 {
            store.push(
                &format!("req-{i}"),
                Crumb::of(&event(&"y".repeat(500), 1), 100),
            );
        }
        assert!(store.bytes() <= 10 * (100 + CRUMB_OVERHEAD));
        let per_request = 100 + CRUMB_OVERHEAD + request_cost("req-999");
        assert_eq!(store.requests(), 10 * (100 + CRUMB_OVERHEAD) / per_request);
        assert_eq!(store.get("req-999").len(), 1);
    }

    #[test]
    fn request_ids_count_against_the_byte_cap() {
        // Regression: ids were stored twice and not counted, so 1 MiB ids slipped past
        // every limit.
        let cap = 1 << 20;
        let mut store = BreadcrumbStore::new(20, 1000, cap);
        for i in 0..100 {
            let id = format!("{i:04}{}", "i".repeat(64 * 1024));
            store.push(&id, Crumb::of(&event("x", 1), 1024));
        }
        assert!(store.bytes() <= cap, "{}", store.bytes());
        assert!(
            store.requests() <= cap / (64 * 1024),
            "{}",
            store.requests()
        );
    }

    #[test]
    fn zero_breadcrumbs_keeps_nothing() {
        let mut store = BreadcrumbStore::new(0, 10, 1 << 20);
        store.push("a", Crumb::of(&event("x", 1), 1024));
        assert_eq!(store.requests(), 0);
        assert_eq!(store.bytes(), 0);
    }
}
