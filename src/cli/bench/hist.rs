//! The harness's arithmetic: a mergeable latency histogram (each reader
//! process records one, the harness merges them), nearest-rank
//! percentiles, and CPU per frame.

use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two (6 bits: within 1/64 = 1.6 % above 64 ns,
/// reported as the bucket's middle, so within 0.8 %).
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;

/// A log-linear histogram of nanosecond values: exact below 64, then 64
/// buckets per power of two. Only non-empty buckets are kept, so it
/// travels between processes as a short JSON list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatHist {
    /// (bucket, count) for every non-empty bucket, bucket ascending.
    buckets: Vec<(u32, u64)>,
    /// Values recorded.
    pub count: u64,
    /// Sum of the values recorded (for the mean).
    pub sum_ns: u64,
    /// Largest value recorded.
    pub max_ns: u64,
    /// Smallest value recorded (`u64::MAX` when empty).
    pub min_ns: u64,
    #[serde(skip)]
    dense: Vec<u64>,
}

/// The bucket of `v`.
fn bucket(v: u64) -> u32 {
    if v < SUB {
        return v as u32;
    }
    let top = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = top - SUB_BITS;
    let sub = ((v >> shift) & (SUB - 1)) as u32;
    SUB as u32 + (top - SUB_BITS) * SUB as u32 + sub
}

/// The lowest value of bucket `b` and its width.
fn bucket_range(b: u32) -> (u64, u64) {
    if u64::from(b) < SUB {
        return (u64::from(b), 1);
    }
    let j = b - SUB as u32;
    let top = j / SUB as u32 + SUB_BITS;
    let sub = u64::from(j % SUB as u32);
    let shift = top - SUB_BITS;
    ((SUB + sub) << shift, 1u64 << shift)
}

impl LatHist {
    /// An empty histogram.
    pub fn new() -> LatHist {
        LatHist {
            min_ns: u64::MAX,
            ..LatHist::default()
        }
    }

    /// Counts one value (ns).
    pub fn record(&mut self, v: u64) {
        let b = bucket(v) as usize;
        if self.dense.len() <= b {
            self.dense.resize(b + 1, 0);
        }
        self.dense[b] += 1;
        self.count += 1;
        self.sum_ns = self.sum_ns.saturating_add(v);
        self.max_ns = self.max_ns.max(v);
        self.min_ns = self.min_ns.min(v);
    }

    /// Moves the values recorded into the compact form (call before
    /// serialising).
    pub fn seal(&mut self) {
        if self.dense.is_empty() {
            return;
        }
        let mut merged = std::mem::take(&mut self.buckets);
        for (b, &c) in self.dense.iter().enumerate() {
            if c > 0 {
                merged.push((b as u32, c));
            }
        }
        self.dense.clear();
        self.buckets = compact(merged);
    }

    /// Adds every value of `other` to this one.
    pub fn merge(&mut self, other: &LatHist) {
        self.seal();
        let mut o = other.clone();
        o.seal();
        let mut all = std::mem::take(&mut self.buckets);
        all.extend_from_slice(&o.buckets);
        self.buckets = compact(all);
        self.count += o.count;
        self.sum_ns = self.sum_ns.saturating_add(o.sum_ns);
        self.max_ns = self.max_ns.max(o.max_ns);
        self.min_ns = self.min_ns.min(o.min_ns);
    }

    /// The nearest-rank `q`-quantile (the smallest value with at least
    /// `q × count` values at or below it), as its bucket's middle clamped
    /// to the smallest and largest values seen. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let mut s = self.clone();
        s.seal();
        if s.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * s.count as f64).ceil() as u64).clamp(1, s.count);
        let mut seen = 0;
        for &(b, c) in &s.buckets {
            seen += c;
            if seen >= rank {
                let (low, width) = bucket_range(b);
                return Some((low + (width - 1) / 2).clamp(s.min_ns, s.max_ns));
            }
        }
        Some(s.max_ns)
    }

    /// The mean, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ns as f64 / self.count as f64)
    }

    /// Points of the cumulative distribution, (value ns, fraction at or
    /// below), one per non-empty bucket: for plots.
    pub fn cdf(&self) -> Vec<(u64, f64)> {
        let mut s = self.clone();
        s.seal();
        let mut seen = 0;
        s.buckets
            .iter()
            .map(|&(b, c)| {
                seen += c;
                let (low, width) = bucket_range(b);
                (
                    (low + (width - 1) / 2).clamp(s.min_ns, s.max_ns),
                    seen as f64 / s.count as f64,
                )
            })
            .collect()
    }
}

/// Sorts (bucket, count) pairs and adds up the counts of equal buckets.
fn compact(mut v: Vec<(u32, u64)>) -> Vec<(u32, u64)> {
    v.sort_unstable_by_key(|&(b, _)| b);
    let mut out: Vec<(u32, u64)> = Vec::with_capacity(v.len());
    for (b, c) in v {
        match out.last_mut() {
            Some((lb, lc)) if *lb == b => *lc += c,
            _ => out.push((b, c)),
        }
    }
    out
}

/// Milliseconds of CPU per frame: `cpu_ns` spent over `frames` frames;
/// `None` when no frame was handled.
pub fn cpu_ms_per_frame(cpu_ns: u64, frames: u64) -> Option<f64> {
    (frames > 0).then(|| cpu_ns as f64 / 1e6 / frames as f64)
}

/// CPU time spent between two readings of a cumulative counter (ns); a
/// counter that went backwards (it cannot, but a reading may be missing)
/// counts as zero.
pub fn cpu_between(start_ns: u64, end_ns: u64) -> u64 {
    end_ns.saturating_sub(start_ns)
}

/// The mean of `v`, `None` when empty.
pub fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The median of `v` (the mean of the middle two for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_range() {
        let mut expect = 0u64;
        for b in 0..(SUB as u32 + (64 - SUB_BITS) * SUB as u32) {
            let (low, width) = bucket_range(b);
            assert_eq!(low, expect, "bucket {b}");
            assert_eq!(bucket(low), b);
            assert_eq!(bucket(low + (width - 1)), b);
            expect = low.wrapping_add(width);
        }
        assert_eq!(expect, 0, "the last bucket ends at u64::MAX");
    }

    #[test]
    fn exact_percentiles_for_small_values() {
        let mut h = LatHist::new();
        assert_eq!(h.quantile(0.5), None);
        for v in 1..=50 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), Some(25));
        assert_eq!(h.quantile(0.99), Some(50));
        assert_eq!(h.quantile(0.0), Some(1));
        assert_eq!(h.quantile(1.0), Some(50));
        assert_eq!(h.mean(), Some(25.5));
    }

    #[test]
    fn within_one_percent_and_merge_is_exact() {
        // Two readers' samples, microseconds to tens of ms (in ns).
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut all = Vec::new();
        let (mut a, mut b) = (LatHist::new(), LatHist::new());
        for i in 0..30_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = 2_000 + state % 5_000_000 * (state % 7 + 1);
            all.push(v);
            if i % 3 == 0 {
                a.record(v);
            } else {
                b.record(v);
            }
        }
        a.seal();
        // Through JSON, as from a reader process.
        let a: LatHist = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        let mut merged = LatHist::new();
        merged.merge(&a);
        merged.merge(&b);
        assert_eq!(merged.count, 30_000);
        all.sort_unstable();
        for q in [0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let rank = ((q * all.len() as f64).ceil() as usize).clamp(1, all.len());
            let exact = all[rank - 1] as f64;
            let approx = merged.quantile(q).unwrap() as f64;
            assert!(
                (approx - exact).abs() <= exact / 100.0,
                "q {q}: exact {exact}, histogram {approx}"
            );
        }
        assert_eq!(merged.max_ns, *all.last().unwrap());
        let cdf = merged.cdf();
        assert_eq!(cdf.last().unwrap().1, 1.0);
        assert!(cdf.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1));
    }

    #[test]
    fn cpu_accounting() {
        assert_eq!(cpu_ms_per_frame(3_000_000, 0), None);
        assert_eq!(cpu_ms_per_frame(3_000_000, 1000), Some(0.003));
        assert_eq!(cpu_between(10, 25), 15);
        assert_eq!(cpu_between(25, 10), 0);
        assert_eq!(mean(&[]), None);
        assert_eq!(mean(&[1.0, 2.0, 6.0]), Some(3.0));
    }
}
