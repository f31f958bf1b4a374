//! Order statistics of a handful of rounds: median, quartiles, extremes.

use serde::{Deserialize, Serialize};

/// Summary of repeated measurements of one figure.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Number of rounds.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// First quartile (linear interpolation).
    pub q1: f64,
    /// Third quartile.
    pub q3: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Summary {
    /// Summarises `xs` (not empty).
    pub fn of(xs: &[f64]) -> Self {
        let mut s = xs.to_vec();
        s.sort_by(f64::total_cmp);
        Self {
            n: s.len(),
            median: quantile(&s, 0.5),
            q1: quantile(&s, 0.25),
            q3: quantile(&s, 0.75),
            min: s.first().copied().unwrap_or(f64::NAN),
            max: s.last().copied().unwrap_or(f64::NAN),
        }
    }

    /// Applies `f` to every statistic (e.g. ns -> packets per second; a
    /// decreasing `f` swaps min/max and the quartiles back into order).
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Self {
        let (a, b) = (f(self.min), f(self.max));
        let (c, d) = (f(self.q1), f(self.q3));
        Self {
            n: self.n,
            median: f(self.median),
            q1: c.min(d),
            q3: c.max(d),
            min: a.min(b),
            max: a.max(b),
        }
    }
}

/// Quantile `q` of sorted `s` by linear interpolation between closest ranks.
pub fn quantile(s: &[f64], q: f64) -> f64 {
    if s.is_empty() {
        return f64::NAN;
    }
    let pos = q * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Nearest-rank percentile `p` (0..=100) of sorted `s`: a value that was
/// actually observed, as latency percentiles usually are.
pub fn percentile(s: &[f64], p: f64) -> f64 {
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_odd_and_even_counts() {
        let s = Summary::of(&[5.0, 1.0, 3.0]);
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!(s.median, 2.5);
        assert_eq!(s.q1, 1.75);
        assert_eq!(s.q3, 3.25);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let s: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&s, 50.0), 100.0);
        assert_eq!(percentile(&s, 99.0), 198.0);
        assert_eq!(percentile(&s, 100.0), 200.0);
    }

    #[test]
    fn map_keeps_order_for_decreasing_functions() {
        let s = Summary::of(&[1.0, 2.0, 4.0]).map(|x| 1.0 / x);
        assert!(s.min <= s.q1 && s.q1 <= s.median && s.median <= s.q3 && s.q3 <= s.max);
    }
}
