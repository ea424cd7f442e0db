//! Latency statistics: exact percentiles of a sample, and a fixed-size
//! histogram for streams too long to keep every value.

/// The `q`-quantile (`0.0..=1.0`) of `sorted` (ascending) by the
/// nearest-rank method: the smallest value with at least `q × n` values at
/// or below it. `None` for an empty sample.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// The p50 and p99 of an unsorted sample (sorts it).
pub fn p50_p99(sample: &mut [f64]) -> (Option<f64>, Option<f64>) {
    sample.sort_by(f64::total_cmp);
    (percentile(sample, 0.50), percentile(sample, 0.99))
}

/// Values below this are counted exactly, one bucket each.
const LINEAR: u64 = 128;
/// Sub-buckets per power of two above [`LINEAR`] (6 bits under the top bit).
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// 128 exact buckets, then 64 for each power of two from 2^7 to 2^63.
const BUCKETS: usize = LINEAR as usize + (64 - 7) * SUB;

/// A log-linear histogram of `u64` values (nanoseconds, say) in 30 KiB:
/// exact below 128, and within 1/128 (0.8 %) of the true value above, like
/// HdrHistogram with two significant digits.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.total)
            .field("min", &self.min())
            .field("max", &self.max())
            .finish()
    }
}

fn bucket(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let top = 63 - v.leading_zeros(); // >= 7
    let shift = top - SUB_BITS;
    let sub = ((v >> shift) as usize) & (SUB - 1);
    LINEAR as usize + (top as usize - 7) * SUB + sub
}

/// The lowest value and the width of bucket `i`.
fn bucket_range(i: usize) -> (u64, u64) {
    if i < LINEAR as usize {
        return (i as u64, 1);
    }
    let j = i - LINEAR as usize;
    let top = (j / SUB) as u32 + 7;
    let sub = (j % SUB) as u64;
    let shift = top - SUB_BITS;
    (((SUB as u64) + sub) << shift, 1u64 << shift)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one value.
    pub fn record(&mut self, v: u64) {
        self.counts[bucket(v)] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    /// The smallest value counted.
    pub fn min(&self) -> Option<u64> {
        (self.total > 0).then_some(self.min)
    }

    /// The largest value counted.
    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// The mean of the values counted.
    pub fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum as f64 / self.total as f64)
    }

    /// The nearest-rank `q`-quantile, as the middle of its bucket (clamped
    /// to the smallest and largest values seen). `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = bucket_range(i);
                let mid = low + (width - 1) / 2;
                return Some(mid.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7.0], 0.0), Some(7.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.50), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 0.001), Some(1.0));
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), Some(2.0));
        assert_eq!(percentile(&v, 0.51), Some(3.0));
        let mut u = [3.0, 1.0, 2.0];
        assert_eq!(p50_p99(&mut u), (Some(2.0), Some(3.0)));
        assert_eq!(p50_p99(&mut []), (None, None));
    }

    #[test]
    fn buckets_tile_the_range() {
        let mut expect_low = 0u64;
        for i in 0..BUCKETS {
            let (low, width) = bucket_range(i);
            assert_eq!(low, expect_low, "bucket {i}");
            assert_eq!(bucket(low), i);
            assert_eq!(bucket(low + (width - 1)), i);
            expect_low = low.wrapping_add(width);
        }
        assert_eq!(expect_low, 0, "the last bucket ends at u64::MAX");
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn histogram_is_exact_for_small_values() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!((h.min(), h.max(), h.mean()), (None, None, None));
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.total, 100);
        assert_eq!(h.quantile(0.5), Some(50));
        assert_eq!(h.quantile(0.99), Some(99));
        assert_eq!((h.min(), h.max()), (Some(1), Some(100)));
        assert_eq!(h.mean(), Some(50.5));
    }

    #[test]
    fn histogram_is_within_one_percent_of_exact() {
        // A skewed sample spanning microseconds to seconds (in ns).
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut values = Vec::new();
        let mut h = Histogram::new();
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = 1_000 + (state % 1_000_000) * (state % 997 + 1);
            values.push(v as f64);
            h.record(v);
        }
        values.sort_by(f64::total_cmp);
        for q in [0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let exact = percentile(&values, q).unwrap();
            let approx = h.quantile(q).unwrap() as f64;
            assert!(
                (approx - exact).abs() <= exact / 100.0,
                "q {q}: exact {exact}, histogram {approx}"
            );
        }
    }
}
