//! A small log-linear latency histogram (nanoseconds, about 3% resolution).
//!
//! Values below 64 get their own bucket; above that each power of two is split into 32
//! equal sub-buckets. Recording is an index computation and an increment; the bucket
//! vector grows only up to the largest value seen.

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS; // 32 sub-buckets per octave
const LINEAR: u64 = SUB * 2; // values below this are exact

#[derive(Clone, Debug, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    sum_sq: u128,
    min: u64,
    max: u64,
}

fn index_of(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // floor(log2 v) >= SUB_BITS + 1
    let sub = (v >> (e - SUB_BITS)) - SUB;
    (LINEAR + (u64::from(e) - u64::from(SUB_BITS) - 1) * SUB + sub) as usize
}

/// Lowest value that falls in bucket `i`, and the bucket's width.
fn bucket_of(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, 1);
    }
    let octave = (i - LINEAR) / SUB;
    let sub = (i - LINEAR) % SUB;
    let shift = octave + 1; // e - SUB_BITS
    ((SUB + sub) << shift, 1 << shift)
}

impl Histogram {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        let i = index_of(v);
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        if self.total == 0 || v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
        self.total += 1;
        self.sum += u128::from(v);
        self.sum_sq += u128::from(v) * u128::from(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.total == 0 {
            return;
        }
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        if self.total == 0 || other.min < self.min {
            self.min = other.min;
        }
        self.max = self.max.max(other.max);
        self.total += other.total;
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn min(&self) -> u64 {
        self.min
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// Population standard deviation of the recorded values (exact, not from buckets).
    pub fn stddev(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let n = self.total as f64;
        let mean = self.sum as f64 / n;
        (self.sum_sq as f64 / n - mean * mean).max(0.0).sqrt()
    }

    /// The value at quantile `q` (0..=1): the middle of the bucket holding the rank,
    /// clamped to the observed min and max; exactly the max for the top rank. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        if rank >= self.total {
            return self.max;
        }
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, width) = bucket_of(i);
                return (lo + width / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Counts of values `<= bound` for each bound, non-cumulative (each value falls in the
    /// first bound that holds it; values above the last bound count in the last).
    /// Bucket granularity means a value within ~3% of a bound may land on either side.
    pub fn bins(&self, bounds: &[u64]) -> Vec<u64> {
        let mut out = vec![0; bounds.len()];
        if bounds.is_empty() {
            return out;
        }
        let mut j = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let (lo, _) = bucket_of(i);
            while j + 1 < bounds.len() && lo > bounds[j] {
                j += 1;
            }
            out[j] += c;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_bucket_agree() {
        let mut prev = 0;
        for v in (0..10_000u64).chain([1 << 20, (1 << 40) + 12345, u64::MAX / 2]) {
            let i = index_of(v);
            assert!(i >= prev || v > 10_000);
            prev = i;
            let (lo, width) = bucket_of(i);
            assert!(
                lo <= v && v < lo + width,
                "v={v} i={i} lo={lo} width={width}"
            );
            assert!(width == 1 || width * 32 <= lo, "resolution within 1/32");
        }
    }

    #[test]
    fn quantiles_of_uniform_values() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.count(), 100_000);
        assert_eq!(h.min(), 1000);
        assert_eq!(h.max(), 100_000_000);
        for (q, want) in [
            (0.5, 50_000_000f64),
            (0.9, 90e6),
            (0.99, 99e6),
            (0.999, 99.9e6),
        ] {
            let got = h.quantile(q) as f64;
            assert!(
                (got - want).abs() / want < 0.035,
                "q={q} got={got} want={want}"
            );
        }
        assert_eq!(h.quantile(1.0), 100_000_000);
        assert!((h.mean() - 50_000_500.0).abs() < 1.0);
    }

    #[test]
    fn stddev_is_exact_and_survives_merge() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        assert_eq!(a.stddev(), 0.0);
        // 2, 4, 4, 4, 5, 5, 7, 9 (ms): mean 5, population stddev 2
        for v in [2, 4, 4, 4] {
            a.record(v * 1_000_000);
        }
        for v in [5, 5, 7, 9] {
            b.record(v * 1_000_000);
        }
        a.merge(&b);
        assert!((a.stddev() - 2_000_000.0).abs() < 1e-3, "{}", a.stddev());
    }

    #[test]
    fn merge_adds_counts_and_extremes() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(5);
        b.record(1_000_000);
        b.record(3);
        a.merge(&b);
        assert_eq!((a.count(), a.min(), a.max()), (3, 3, 1_000_000));
        let mut empty = Histogram::new();
        empty.merge(&Histogram::new());
        assert_eq!(empty.quantile(0.5), 0);
    }

    #[test]
    fn bins_partition_all_values() {
        let mut h = Histogram::new();
        for v in [1u64, 10, 100, 1000, 10_000, 100_000] {
            h.record(v);
        }
        let bins = h.bins(&[50, 5000, 20_000]);
        assert_eq!(bins, vec![2, 2, 2]);
        assert_eq!(bins.iter().sum::<u64>(), h.count());
    }
}
