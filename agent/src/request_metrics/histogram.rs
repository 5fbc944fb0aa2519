//! A log-bucketed histogram (the DDSketch mapping): every value lands in a bucket whose
//! representative is within [`RELATIVE_ACCURACY`] of it, so any percentile computed from
//! the (representative, count) pairs we publish is within that relative error of the true
//! percentile. Memory grows with the spread of values, not their number (about 2,000
//! buckets span 1 µs to 1 h).

/// Relative error of a bucket's representative value (0.5%, so percentiles stay within 1%).
pub const RELATIVE_ACCURACY: f64 = 0.005;

/// Values at or below this (ms) count as zero.
const MIN_VALUE: f64 = 1e-6;

/// Counts per logarithmic bucket, plus exact count, sum, min and max.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogHistogram {
    buckets: Buckets,
    zero: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// ln γ, precomputed (a test checks it against [`gamma`]): the index costs one `ln`.
const LN_GAMMA: f64 = 0.010_000_083_334_583_39;

fn index(value: f64) -> i32 {
    (value.ln() / LN_GAMMA).ceil() as i32
}

/// Counts of consecutive bucket indices from `offset`: one indexed add per value (a map
/// was a tree walk of cache misses per request), grown at either end as values spread.
#[derive(Debug, Clone, Default)]
struct Buckets {
    offset: i32,
    counts: Vec<u64>,
}

/// Most buckets kept (16 KiB): beyond, the lowest are collapsed into one, as DDSketch's
/// collapsing store does. 2,048 buckets span nine orders of magnitude (e.g. 4 µs to 1 h),
/// so only latencies a billion times below the largest lose their accuracy.
const MAX_BUCKETS: i32 = 2048;

impl Buckets {
    fn add(&mut self, i: i32, n: u64) {
        if self.counts.is_empty() {
            self.offset = i;
        }
        let top = self.offset + self.counts.len().max(1) as i32 - 1;
        // Too far below what is kept: counted in the lowest bucket that may be kept.
        let i = i.max(top - MAX_BUCKETS + 1);
        if i < self.offset {
            let grow = (self.offset - i) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = i;
        }
        if i - self.offset >= MAX_BUCKETS {
            // A new maximum: the lowest buckets fold into the lowest one kept.
            let shift = (i - self.offset - MAX_BUCKETS + 1) as usize;
            let folded: u64 = self.counts.drain(..shift.min(self.counts.len())).sum();
            self.offset = i - MAX_BUCKETS + 1;
            match self.counts.first_mut() {
                Some(lowest) => *lowest = lowest.saturating_add(folded),
                None => self.counts.push(folded),
            }
        }
        let at = (i - self.offset) as usize;
        if at >= self.counts.len() {
            self.counts.resize(at + 1, 0);
        }
        self.counts[at] = self.counts[at].saturating_add(n);
    }

    /// (index, count) of the non-empty buckets, in increasing order.
    fn iter(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        (self.offset..)
            .zip(self.counts.iter().copied())
            .filter(|(_, n)| *n > 0)
    }
}

impl PartialEq for Buckets {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

/// The representative value of bucket `i`: within the relative accuracy of every value in it.
fn representative(i: i32) -> f64 {
    let g = gamma();
    2.0 * g.powi(i) / (g + 1.0)
}

impl LogHistogram {
    /// Records `value` `n` times. Non-finite or negative values are ignored.
    pub fn record_n(&mut self, value: f64, n: u64) {
        if !value.is_finite() || value < 0.0 || n == 0 {
            return;
        }
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count = self.count.saturating_add(n);
        self.sum += value * n as f64;
        if value <= MIN_VALUE {
            self.zero = self.zero.saturating_add(n);
        } else {
            self.buckets.add(index(value), n);
        }
    }

    /// Records `value` once.
    pub fn record(&mut self, value: f64) {
        self.record_n(value, 1);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Self) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count = self.count.saturating_add(other.count);
        self.sum += other.sum;
        self.zero = self.zero.saturating_add(other.zero);
        for (i, n) in other.buckets.iter() {
            self.buckets.add(i, n);
        }
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Exact sum of the values.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Exact minimum (0 when empty).
    pub fn min(&self) -> f64 {
        self.min
    }

    /// Exact maximum (0 when empty).
    pub fn max(&self) -> f64 {
        self.max
    }

    /// (representative value, count) pairs in increasing order: what CloudWatch receives as
    /// `Values`/`Counts`. The extremes are clamped to the exact min and max.
    pub fn values_and_counts(&self) -> Vec<(f64, u64)> {
        let mut out = Vec::new();
        if self.zero > 0 {
            out.push((0.0, self.zero));
        }
        for (i, n) in self.buckets.iter() {
            out.push((representative(i).clamp(self.min, self.max), n));
        }
        out
    }

    /// The `q` quantile (0..=1) by nearest rank over the published pairs.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        quantile_of(&self.values_and_counts(), q)
    }

    /// Count of values ≤ `bound`, by bucket representative (for Prometheus buckets).
    pub fn count_le(&self, bound: f64) -> u64 {
        self.values_and_counts()
            .iter()
            .filter(|(v, _)| *v <= bound)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Nearest-rank quantile of sorted (value, count) pairs.
pub fn quantile_of(pairs: &[(f64, u64)], q: f64) -> Option<f64> {
    let total: u64 = pairs.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (value, n) in pairs {
        seen = n.saturating_add(seen);
        if seen >= rank {
            return Some(*value);
        }
    }
    pairs.last().map(|(v, _)| *v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_precomputed_ln_gamma_is_ln_gamma() {
        assert!((LN_GAMMA - gamma().ln()).abs() < 1e-15, "{}", gamma().ln());
    }

    #[test]
    fn the_span_is_capped_by_collapsing_the_lowest_buckets() {
        let mut h = LogHistogram::default();
        h.record(1e-5);
        h.record(1e9);
        h.record(1e-5);
        assert!(h.buckets.counts.len() <= MAX_BUCKETS as usize);
        let pairs = h.values_and_counts();
        assert_eq!(pairs.iter().map(|p| p.1).sum::<u64>(), 3, "nothing lost");
        assert_eq!(pairs.last().unwrap().1, 1);
        let q99 = h.quantile(0.99).unwrap();
        assert!((q99 - 1e9).abs() / 1e9 < 0.01, "{q99}");
        let mut wide = LogHistogram::default();
        for i in 0..5000 {
            wide.record(1e-4 * 1.02f64.powi(i));
        }
        assert!(wide.buckets.counts.len() <= MAX_BUCKETS as usize);
        assert_eq!(
            wide.values_and_counts().iter().map(|p| p.1).sum::<u64>(),
            5000
        );
    }

    #[test]
    fn buckets_grow_at_both_ends_and_compare_by_content() {
        let mut a = LogHistogram::default();
        for v in [5.0, 1.0, 100.0, 0.01, 5.0] {
            a.record(v);
        }
        let mut b = LogHistogram::default();
        for v in [0.01, 100.0, 5.0, 5.0, 1.0] {
            b.record(v);
        }
        assert_eq!(a, b);
        let pairs = a.values_and_counts();
        assert_eq!(pairs.iter().map(|p| p.1).collect::<Vec<_>>(), [1, 1, 2, 1]);
        assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0));
    }

    use proptest::prelude::*;

    use super::*;

    fn exact_quantile(values: &mut [f64], q: f64) -> f64 {
        values.sort_by(f64::total_cmp);
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// p50, p90 and p99 from the published pairs are within 1% of the exact ones, and
        /// count, sum, min and max are exact.
        #[test]
        fn percentiles_within_one_percent(
            mut values in prop::collection::vec(prop_oneof![0.001f64..5.0, 5.0f64..500.0, 500.0f64..60_000.0], 1..3_000)
        ) {
            let mut h = LogHistogram::default();
            for v in &values {
                h.record(*v);
            }
            prop_assert_eq!(h.count(), values.len() as u64);
            let sum: f64 = values.iter().sum();
            prop_assert!((h.sum() - sum).abs() <= 1e-9 * sum.max(1.0));
            for q in [0.5, 0.9, 0.99] {
                let exact = exact_quantile(&mut values, q);
                let got = h.quantile(q).unwrap();
                prop_assert!((got - exact).abs() <= 0.01 * exact, "q{} exact {} got {}", q, exact, got);
            }
        }
    }

    #[test]
    fn zero_min_max_and_merge() {
        let mut a = LogHistogram::default();
        a.record(0.0);
        a.record(10.0);
        let mut b = LogHistogram::default();
        b.record_n(100.0, 3);
        a.merge(&b);
        assert_eq!((a.count(), a.min(), a.max()), (5, 0.0, 100.0));
        assert_eq!(a.values_and_counts()[0], (0.0, 1));
        let top = a.quantile(1.0).unwrap();
        assert!((top - 100.0).abs() <= 100.0 * RELATIVE_ACCURACY, "{top}");
        assert_eq!(a.count_le(50.0), 2);
    }

    #[test]
    fn bucket_count_stays_small_for_a_wide_range() {
        let mut h = LogHistogram::default();
        let mut v = 0.001;
        while v < 3_600_000.0 {
            h.record(v);
            v *= 1.001;
        }
        // ln(3.6e9 / 1e-3) / ln(γ) ≈ 2,200 buckets for nine orders of magnitude.
        assert!(
            h.values_and_counts().len() <= 2_250,
            "{}",
            h.values_and_counts().len()
        );
    }
}
