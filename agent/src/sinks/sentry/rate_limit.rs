//! Sentry's rate limits (<https://develop.sentry.dev/sdk/expected-features/rate-limiting/>):
//! `X-Sentry-Rate-Limits: retry_after:categories:scope:reason[:namespaces], ...` on any
//! response (a 200 too), else `Retry-After` on a 429, else 60 s for everything. While a
//! category is limited its events are dropped and counted, never sent or retried.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A 429 that says nothing more means this long, for every category.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest limit honoured (a misbehaving server cannot silence errors for longer).
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The limits in force.
#[derive(Debug, Default)]
pub(crate) struct RateLimits {
    all: Option<Instant>,
    categories: HashMap<String, Instant>,
}

fn seconds(text: &str) -> Option<Duration> {
    let value: f64 = text.trim().parse().ok()?;
    // Capped before the conversion: `from_secs_f64` panics on values a u64 cannot hold.
    (value.is_finite() && value >= 0.0)
        .then(|| Duration::from_secs_f64(value.min(MAX_RETRY_AFTER.as_secs_f64())))
}

impl RateLimits {
    /// Applies the headers of any response. `too_many` is a 429.
    pub(crate) fn update(
        &mut self,
        rate_limits: Option<&str>,
        retry_after: Option<&str>,
        too_many: bool,
        now: Instant,
    ) {
        if let Some(header) = rate_limits.filter(|h| !h.trim().is_empty()) {
            for limit in header.split(',') {
                let mut parts = limit.trim().split(':');
                let Some(after) = parts.next().and_then(seconds) else {
                    continue;
                };
                let until = now + after;
                let categories = parts.next().unwrap_or("");
                if categories.trim().is_empty() {
                    self.extend_all(until);
                } else {
                    for category in categories.split(';').map(str::trim) {
                        if !category.is_empty() {
                            let entry = self.categories.entry(category.to_owned()).or_insert(until);
                            *entry = (*entry).max(until);
                        }
                    }
                }
            }
        } else if too_many {
            // Retry-After in seconds; an HTTP date (or nothing) means the default.
            let after = retry_after.and_then(seconds).unwrap_or(DEFAULT_RETRY_AFTER);
            self.extend_all(now + after);
        }
    }

    fn extend_all(&mut self, until: Instant) {
        self.all = Some(self.all.map_or(until, |old| old.max(until)));
    }

    /// Whether `category` (`error` for events) is limited at `now`.
    pub(crate) fn is_limited(&self, category: &str, now: Instant) -> bool {
        self.all.is_some_and(|until| now < until)
            || self
                .categories
                .get(category)
                .is_some_and(|until| now < *until)
    }

    /// When the limit on `category` ends, if one is in force.
    pub(crate) fn until(&self, category: &str, now: Instant) -> Option<Instant> {
        [self.all, self.categories.get(category).copied()]
            .into_iter()
            .flatten()
            .filter(|until| now < *until)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_durations_are_capped_not_a_crash() {
        for text in ["1e20", "18446744073709551616", "1e308"] {
            assert_eq!(seconds(text), Some(MAX_RETRY_AFTER), "{text}");
        }
        assert_eq!(seconds("-1"), None);
        assert_eq!(seconds("NaN"), None);
    }

    #[test]
    fn a_bare_429_limits_everything_for_60_seconds() {
        let mut limits = RateLimits::default();
        let t0 = Instant::now();
        limits.update(None, None, true, t0);
        assert!(limits.is_limited("error", t0 + Duration::from_secs(59)));
        assert!(limits.is_limited("transaction", t0));
        assert!(!limits.is_limited("error", t0 + DEFAULT_RETRY_AFTER));
    }

    #[test]
    fn retry_after_seconds_and_http_dates() {
        let mut limits = RateLimits::default();
        let t0 = Instant::now();
        limits.update(None, Some("5"), true, t0);
        assert_eq!(limits.until("error", t0), Some(t0 + Duration::from_secs(5)));
        let mut limits = RateLimits::default();
        limits.update(None, Some("Wed, 21 Oct 2015 07:28:00 GMT"), true, t0);
        assert_eq!(limits.until("error", t0), Some(t0 + DEFAULT_RETRY_AFTER));
        // Retry-After on a success means nothing.
        let mut limits = RateLimits::default();
        limits.update(None, Some("5"), false, t0);
        assert!(!limits.is_limited("error", t0));
    }

    #[test]
    fn the_rate_limits_header_wins_and_is_per_category() {
        let mut limits = RateLimits::default();
        let t0 = Instant::now();
        limits.update(
            Some("60:transaction;session:organization:quota, 2.5:error:project:, junk, 10::key"),
            Some("999"),
            true,
            t0,
        );
        assert_eq!(
            limits.until("error", t0),
            Some(t0 + Duration::from_secs(10))
        );
        assert!(limits.is_limited("error", t0 + Duration::from_secs(3)));
        assert!(!limits.is_limited("error", t0 + Duration::from_secs(11)));
        assert!(limits.is_limited("transaction", t0 + Duration::from_secs(30)));
        assert!(limits.is_limited("attachment", t0 + Duration::from_secs(9)));
    }

    #[test]
    fn limits_arrive_on_a_200_too_and_are_capped() {
        let mut limits = RateLimits::default();
        let t0 = Instant::now();
        limits.update(Some("30:error:project"), None, false, t0);
        assert!(limits.is_limited("error", t0 + Duration::from_secs(29)));
        assert!(!limits.is_limited("transaction", t0));
        limits.update(Some("99999999:error"), None, false, t0);
        assert_eq!(limits.until("error", t0), Some(t0 + MAX_RETRY_AFTER));
    }
}
