//! A log-bucketed histogram (the DDSketch mapping): every value lands in a bucket whose
//! representative is within [`RELATIVE_ACCURACY`] of it, so any percentile computed from
//! the (representative, count) pairs we publish is within that relative error of the true
//! percentile. Memory grows with the spread of values, not their number (about 2,000
//! buckets span 1 µs to 1 h).

use std::collections::BTreeMap;

/// Relative error of a bucket's representative value (0.5%, so percentiles stay within 1%).
pub const RELATIVE_ACCURACY: f64 = 0.005;

/// Values at or below this (ms) count as zero.
const MIN_VALUE: f64 = 1e-6;

/// Counts per logarithmic bucket, plus exact count, sum, min and max.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogHistogram {
    buckets: BTreeMap<i32, u64>,
    zero: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

fn index(value: f64) -> i32 {
    (value.ln() / gamma().ln()).ceil() as i32
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
            let bucket = self.buckets.entry(index(value)).or_default();
            *bucket = bucket.saturating_add(n);
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
        for (i, n) in &other.buckets {
            let bucket = self.buckets.entry(*i).or_default();
            *bucket = bucket.saturating_add(*n);
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
        let mut out = Vec::with_capacity(self.buckets.len() + 1);
        if self.zero > 0 {
            out.push((0.0, self.zero));
        }
        for (i, n) in &self.buckets {
            out.push((representative(*i).clamp(self.min, self.max), *n));
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
