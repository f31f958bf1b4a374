//! Figure 3 (quality half; build time is the criterion bench in
//! `benches/maglev.rs`): how evenly the Maglev table spreads positions over
//! equal-weight backends, and how many positions of surviving backends move
//! when one backend is removed (Maglev's promise is "few", not "none").

use lb_daemon::maglev::{self, Member};
use serde::{Deserialize, Serialize};

/// Ring sizes measured: the default and the next size up the daemon documents.
pub const RING_SIZES: [u32; 2] = [65537, 655373];
/// Backend counts measured.
pub const BACKEND_COUNTS: [usize; 4] = [10, 100, 1000, 5000];
/// Removals averaged per configuration (backends spread over the key order).
pub const REMOVALS: usize = 5;

/// Distinct backend keys: IPv4 addresses counting up from 198.19.0.1.
pub fn keys(n: usize) -> Vec<[u8; 4]> {
    (1..=n as u32)
        .map(|i| {
            let a = 0xC613_0000u32 + i; // 198.19.0.0 + i
            a.to_be_bytes()
        })
        .collect()
}

/// Equal-weight members over `keys`.
pub fn members(keys: &[[u8; 4]]) -> Vec<Member<'_>> {
    keys.iter()
        .map(|k| Member {
            key: k,
            weight: 100,
        })
        .collect()
}

/// Balance and disruption of one (M, N).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Quality {
    /// Ring size M.
    pub ring_size: u32,
    /// Backends N.
    pub backends: usize,
    /// Most positions held by one backend.
    pub max_slots: usize,
    /// Fewest positions held by one backend.
    pub min_slots: usize,
    /// `max_slots / min_slots` (1.0 = perfect).
    pub max_min_ratio: f64,
    /// Mean over the removals of: positions that belonged to a surviving
    /// backend and now belong to another, over all survivor positions.
    pub disruption_mean: f64,
    /// Worst of those removals.
    pub disruption_max: f64,
    /// The share of the ring the removed backend held (what must move).
    pub removed_share: f64,
}

/// Computes [`Quality`] for ring size `m` and `n` backends.
pub fn quality(m: u32, n: usize) -> anyhow::Result<Quality> {
    let keys = keys(n);
    let table = maglev::build(m, &members(&keys))?;
    let mut counts = vec![0usize; n];
    for &i in &table {
        counts[i as usize] += 1;
    }
    let max_slots = counts.iter().copied().max().unwrap_or(0);
    let min_slots = counts.iter().copied().min().unwrap_or(0);
    let mut fractions = Vec::with_capacity(REMOVALS);
    for k in 0..REMOVALS {
        let removed = k * n / REMOVALS + n / (2 * REMOVALS);
        let rest: Vec<[u8; 4]> = keys
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != removed)
            .map(|(_, k)| *k)
            .collect();
        let after = maglev::build(m, &members(&rest))?;
        // Caller indices shift down by one past the removed backend.
        let original = |j: u32| if (j as usize) < removed { j } else { j + 1 };
        let (mut survivors, mut moved) = (0usize, 0usize);
        for (&old, &new) in table.iter().zip(&after) {
            if old as usize == removed {
                continue;
            }
            survivors += 1;
            if original(new) != old {
                moved += 1;
            }
        }
        fractions.push(moved as f64 / survivors as f64);
    }
    Ok(Quality {
        ring_size: m,
        backends: n,
        max_slots,
        min_slots,
        max_min_ratio: max_slots as f64 / min_slots.max(1) as f64,
        disruption_mean: fractions.iter().sum::<f64>() / fractions.len() as f64,
        disruption_max: fractions.iter().copied().fold(0.0, f64::max),
        removed_share: 1.0 / n as f64,
    })
}

/// Figure 3: build times (from criterion's output) and quality.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MaglevResults {
    /// Build time per (M, N), from criterion; empty when it was not run.
    pub build: Vec<BuildTime>,
    /// Build time per (M = 65537, N) timed by the bench: min and median.
    #[serde(default)]
    pub build_min: Vec<BuildMin>,
    /// Balance and disruption per (M, N).
    pub quality: Vec<Quality>,
}

/// One criterion measurement of `maglev::build`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BuildTime {
    /// Ring size M.
    pub ring_size: u32,
    /// Backends N.
    pub backends: usize,
    /// Criterion's median estimate, ns.
    pub median_ns: f64,
    /// Lower bound of its 95% confidence interval, ns.
    pub ci_low_ns: f64,
    /// Upper bound, ns.
    pub ci_high_ns: f64,
}

/// Criterion benchmark group name for ring size `m` (shared with the bench).
pub fn group_name(m: u32) -> String {
    format!("maglev_build_m{m}")
}

/// Reads criterion's estimates for every (M, N) under `dir` (normally
/// `target/criterion`); missing ones are skipped.
pub fn read_criterion(dir: &std::path::Path) -> Vec<BuildTime> {
    let mut out = vec![];
    for m in RING_SIZES {
        for n in BACKEND_COUNTS {
            let p = dir
                .join(group_name(m))
                .join(n.to_string())
                .join("new/estimates.json");
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            let med = &v["median"];
            let get = |x: &serde_json::Value| x.as_f64().unwrap_or(f64::NAN);
            out.push(BuildTime {
                ring_size: m,
                backends: n,
                median_ns: get(&med["point_estimate"]),
                ci_low_ns: get(&med["confidence_interval"]["lower_bound"]),
                ci_high_ns: get(&med["confidence_interval"]["upper_bound"]),
            });
        }
    }
    out
}

/// Build time of one (M, N) measured by the bench itself: the minimum (and
/// median) over `runs` builds on the calling thread, ms. Criterion's median
/// is the steadier estimate on a quiet machine; on a shared host, where
/// interference only ever adds time, the minimum is the cost of the code.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BuildMin {
    /// Ring size M.
    pub ring_size: u32,
    /// Backends N.
    pub backends: usize,
    /// Builds timed.
    pub runs: usize,
    /// Fastest build, ms.
    pub min_ms: f64,
    /// Median build, ms.
    pub median_ms: f64,
}

/// Times `runs` builds of an equal-weight table of `n` backends, ring `m`.
pub fn build_min(m: u32, n: usize, runs: usize) -> anyhow::Result<BuildMin> {
    let k = keys(n);
    let members = members(&k);
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = std::time::Instant::now();
        let table = maglev::build(m, &members)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(table);
    }
    let s = crate::stats::Summary::of(&ms);
    Ok(BuildMin {
        ring_size: m,
        backends: n,
        runs,
        min_ms: s.min,
        median_ms: s.median,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ring_quality_is_sane() {
        let q = quality(65537, 10).unwrap();
        assert!(q.max_min_ratio >= 1.0);
        assert!(q.disruption_mean >= 0.0 && q.disruption_max < 1.0);
        assert_eq!(q.removed_share, 0.1);
    }

    #[test]
    fn keys_are_distinct() {
        let k = keys(5000);
        let mut s = k.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 5000);
        assert_eq!(k[0], [198, 19, 0, 1]);
    }
}
