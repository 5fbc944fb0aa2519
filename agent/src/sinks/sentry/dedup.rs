//! Per-fingerprint de-duplication: the first error of a fingerprint is sent at once, repeats
//! within the window are only counted, and when the window closes one follow-up event (the
//! first repeat) carries the count. An error storm costs two events per window, not
//! thousands.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One open window.
#[derive(Debug)]
struct Window<T> {
    until: Instant,
    suppressed: u64,
    /// The first repeat, sent as the follow-up.
    sample: Option<T>,
}

/// What an item is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// To be sent now.
    Send,
    /// To be kept as the follow-up of an open window (keep it small).
    Sample,
}

/// What to do with an error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit<T> {
    /// Send it (and, first, the follow-up of the window that had just closed, if any).
    Send {
        /// The item itself.
        item: T,
        /// The closed window's first repeat and how many repeats it stands for.
        follow_up: Option<(T, u64)>,
    },
    /// Counted into the open window.
    Suppressed,
}

/// Windows per fingerprint key, at most `max` of them.
#[derive(Debug)]
pub(crate) struct Dedup<T> {
    window: Duration,
    max: usize,
    windows: HashMap<u64, Window<T>>,
}

impl<T> Dedup<T> {
    /// `window` zero turns de-duplication off.
    pub(crate) fn new(window: Duration, max: usize) -> Self {
        Self {
            window,
            max: max.max(1),
            windows: HashMap::new(),
        }
    }

    /// Decides for an error of fingerprint `key` seen at `now`. `make` builds the item only
    /// when it is needed: to be sent, or kept as the window's follow-up sample (the first
    /// repeat); further repeats are only counted. Closing windows early to make room (the
    /// oldest first) adds their follow-ups to `evicted`.
    pub(crate) fn admit(
        &mut self,
        key: u64,
        now: Instant,
        make: impl FnOnce(Role) -> T,
        evicted: &mut Vec<(T, u64)>,
    ) -> Admit<T> {
        if self.window.is_zero() {
            return Admit::Send {
                item: make(Role::Send),
                follow_up: None,
            };
        }
        let until = now + self.window;
        if let Some(open) = self.windows.get_mut(&key) {
            if now < open.until {
                open.suppressed += 1;
                if open.sample.is_none() {
                    open.sample = Some(make(Role::Sample));
                }
                return Admit::Suppressed;
            }
            let closed = std::mem::replace(
                open,
                Window {
                    until,
                    suppressed: 0,
                    sample: None,
                },
            );
            return Admit::Send {
                item: make(Role::Send),
                follow_up: closed.sample.map(|sample| (sample, closed.suppressed)),
            };
        }
        if self.windows.len() >= self.max {
            evicted.extend(self.due(now));
        }
        if self.windows.len() >= self.max {
            let oldest = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.until)
                .map(|(k, _)| *k);
            if let Some(closed) = oldest.and_then(|k| self.windows.remove(&k)) {
                evicted.extend(closed.sample.map(|sample| (sample, closed.suppressed)));
            }
        }
        self.windows.insert(
            key,
            Window {
                until,
                suppressed: 0,
                sample: None,
            },
        );
        Admit::Send {
            item: make(Role::Send),
            follow_up: None,
        }
    }

    /// Closes the windows that have ended by `now`; returns their follow-ups.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<(T, u64)> {
        let mut out = Vec::new();
        self.windows.retain(|_, window| {
            if now < window.until {
                return true;
            }
            if let Some(sample) = window.sample.take() {
                out.push((sample, window.suppressed));
            }
            false
        });
        out
    }

    /// Closes every window (shutdown); returns the follow-ups.
    pub(crate) fn close_all(&mut self) -> Vec<(T, u64)> {
        self.windows
            .drain()
            .filter_map(|(_, w)| w.sample.map(|sample| (sample, w.suppressed)))
            .collect()
    }

    /// Open windows.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_storm_is_one_event_then_one_follow_up_with_the_count() {
        let mut dedup = Dedup::new(MINUTE, 10);
        let t0 = Instant::now();
        let mut evicted = Vec::new();
        assert_eq!(
            dedup.admit(1, t0, |_| 0, &mut evicted),
            Admit::Send {
                item: 0,
                follow_up: None
            }
        );
        for i in 1..10_000 {
            let at = t0 + Duration::from_millis(i);
            assert_eq!(dedup.admit(1, at, |_| i, &mut evicted), Admit::Suppressed);
        }
        assert!(dedup.due(t0 + Duration::from_secs(59)).is_empty());
        assert_eq!(dedup.due(t0 + MINUTE), [(1, 9_999)]);
        assert_eq!(dedup.len(), 0);
        assert!(evicted.is_empty());
    }

    #[test]
    fn a_repeat_after_the_window_is_sent_with_the_closed_windows_follow_up() {
        let mut dedup = Dedup::new(MINUTE, 10);
        let t0 = Instant::now();
        let mut evicted = Vec::new();
        dedup.admit(7, t0, |_| "first", &mut evicted);
        dedup.admit(7, t0 + Duration::from_secs(1), |_| "second", &mut evicted);
        dedup.admit(7, t0 + Duration::from_secs(2), |_| "third", &mut evicted);
        assert_eq!(
            dedup.admit(7, t0 + Duration::from_secs(61), |_| "late", &mut evicted),
            Admit::Send {
                item: "late",
                follow_up: Some(("second", 2))
            }
        );
        // Other fingerprints have their own windows.
        assert!(matches!(
            dedup.admit(8, t0 + Duration::from_secs(62), |_| "other", &mut evicted),
            Admit::Send { .. }
        ));
        assert_eq!(dedup.close_all().len(), 0);
    }

    #[test]
    fn items_are_built_only_to_be_sent_or_kept_as_the_sample() {
        let mut dedup = Dedup::new(MINUTE, 10);
        let t0 = Instant::now();
        let mut built = Vec::new();
        for i in 0..5 {
            dedup.admit(
                1,
                t0,
                |role| {
                    built.push(role);
                    i
                },
                &mut Vec::new(),
            );
        }
        assert_eq!(built, [Role::Send, Role::Sample]);
    }

    #[test]
    fn beyond_max_fingerprints_the_oldest_window_closes_early() {
        let mut dedup = Dedup::new(MINUTE, 2);
        let t0 = Instant::now();
        let mut evicted = Vec::new();
        dedup.admit(1, t0, |_| "a", &mut evicted);
        dedup.admit(1, t0, |_| "a2", &mut evicted);
        dedup.admit(2, t0 + Duration::from_secs(1), |_| "b", &mut evicted);
        dedup.admit(3, t0 + Duration::from_secs(2), |_| "c", &mut evicted);
        assert_eq!(evicted, [("a2", 1)]);
        assert_eq!(dedup.len(), 2);
    }

    #[test]
    fn a_zero_window_sends_everything() {
        let mut dedup = Dedup::new(Duration::ZERO, 2);
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(matches!(
                dedup.admit(1, t0, |_| i, &mut Vec::new()),
                Admit::Send { .. }
            ));
        }
        assert_eq!(dedup.len(), 0);
    }
}
