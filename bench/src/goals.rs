//! The headline figures of a run, the goals they are judged against (issue
//! 9: per-packet speed and control-plane latency), and the comparison with
//! an earlier run's results file.
//!
//! Every timing is judged on its minimum over rounds, with the median shown
//! beside it: these machines share their host, and interference only ever
//! adds time, so the minimum is the figure without it (and, with enough
//! rounds, the steadier one from run to run).

use serde::{Deserialize, Serialize};

use crate::report::Results;

/// One headline figure of a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Headline {
    /// Stable id (matches across runs).
    pub id: String,
    /// What it is.
    pub label: String,
    /// Unit of `min` and `median`.
    pub unit: String,
    /// Best round (for rates: the highest), the figure goals are judged on.
    pub min: f64,
    /// Median round.
    pub median: f64,
}

/// A goal on a headline figure.
struct Target {
    id: &'static str,
    /// Largest acceptable value (or smallest, for rates).
    bound: f64,
    /// True for rates (more is better).
    at_least: bool,
}

const TARGETS: [Target; 11] = [
    Target {
        id: "v4_tcp_hit",
        bound: 55.0,
        at_least: false,
    },
    Target {
        id: "v6_tcp_hit",
        bound: 60.0,
        at_least: false,
    },
    Target {
        id: "v4_to_v6_hit",
        bound: 60.0,
        at_least: false,
    },
    Target {
        id: "v4_tcp_syn",
        bound: 120.0,
        at_least: false,
    },
    Target {
        id: "v4_udp",
        bound: 55.0,
        at_least: false,
    },
    Target {
        id: "pass",
        bound: 15.0,
        at_least: false,
    },
    Target {
        id: "live_1",
        bound: 10.0,
        at_least: true,
    },
    Target {
        id: "live_1000000",
        bound: 4.0,
        at_least: true,
    },
    Target {
        id: "maglev_1000",
        bound: 0.7,
        at_least: false,
    },
    Target {
        id: "add_backend_p99",
        bound: 1500.0,
        at_least: false,
    },
    Target {
        id: "create_vip_1000",
        bound: 3.0,
        at_least: false,
    },
];

/// The headline figures of `r`, from whatever it measured. Works on results
/// files written before minima were recorded: the minimum is then derived
/// from the per-component summaries the file does have.
pub fn headlines(r: &Results) -> Vec<Headline> {
    let mut h = vec![];
    let mut push = |id: &str, label: &str, unit: &str, min: f64, median: f64| {
        h.push(Headline {
            id: id.into(),
            label: label.into(),
            unit: unit.into(),
            min,
            median,
        })
    };
    if let Some(p) = &r.per_packet {
        for c in &p.cases {
            let min = if c.net_min_ns > 0.0 {
                c.net_min_ns
            } else {
                c.raw_ns.min - p.harness_baseline_ns.min + p.baseline_ns.min
            };
            push(&c.id, &c.label, "ns", min, c.net_ns.median);
        }
    }
    if let Some(l) = &r.live {
        for row in &l.rows {
            let min_ns = if row.net_min_ns > 0.0 {
                row.net_min_ns
            } else {
                row.lb_ns.min - row.baseline_ns.min + l.baseline_direct_ns.min
            };
            push(
                &format!("live_{}", row.flows),
                &format!("live XDP_TX on veth, {} flows", row.flows),
                "Mpps",
                1e3 / min_ns,
                1e3 / row.net_ns.median,
            );
        }
    }
    if let Some(m) = &r.maglev {
        for b in &m.build_min {
            push(
                &format!("maglev_{}", b.backends),
                &format!(
                    "Maglev build, {} backends, M = 65537 ({} builds)",
                    b.backends, b.runs
                ),
                "ms",
                b.min_ms,
                b.median_ms,
            );
        }
        // Older results files have only criterion's figure.
        let timed = |n: usize| m.build_min.iter().any(|b| b.backends == n);
        for b in m
            .build
            .iter()
            .filter(|b| b.ring_size == 65537 && !timed(b.backends))
        {
            // Criterion's figure is already robust (a median over many
            // samples): it stands in both columns.
            push(
                &format!("maglev_{}", b.backends),
                &format!(
                    "Maglev build, {} backends, M = 65537 (criterion median)",
                    b.backends
                ),
                "ms",
                b.median_ns / 1e6,
                b.median_ns / 1e6,
            );
        }
    }
    if let Some(c) = &r.control {
        let a = &c.add_backend;
        push(
            "add_backend_p99",
            &format!(
                "AddBackend -> map-visible, {} samples: p99 (in the min column) and p50",
                a.samples
            ),
            "µs",
            a.visible_p99_us,
            a.visible_p50_us,
        );
        push(
            "create_vip_1000",
            "CreateVip with 1,000 backends -> map-visible",
            "ms",
            c.create_vip_1000_visible_ms.min,
            c.create_vip_1000_visible_ms.median,
        );
    }
    h
}

/// One row of the goals table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GoalRow {
    /// The figure.
    pub figure: Headline,
    /// The goal, as text ("≤ 55 ns").
    pub goal: String,
    /// Met (judged on `figure.min`), or `None` if the figure has no goal.
    pub met: Option<bool>,
    /// The same figure in the earlier results file, if any.
    pub previous: Option<Headline>,
}

/// Every headline of `r`, with its goal and the earlier run's figure.
pub fn judge(r: &Results, previous: Option<&Results>) -> Vec<GoalRow> {
    let before = previous.map(headlines).unwrap_or_default();
    headlines(r)
        .into_iter()
        .map(|f| {
            let t = TARGETS.iter().find(|t| t.id == f.id);
            GoalRow {
                goal: t.map_or_else(String::new, |t| {
                    format!(
                        "{} {} {}",
                        if t.at_least { "≥" } else { "≤" },
                        t.bound,
                        f.unit
                    )
                }),
                met: t.map(|t| {
                    if t.at_least {
                        f.min >= t.bound
                    } else {
                        f.min <= t.bound
                    }
                }),
                previous: before.iter().find(|b| b.id == f.id).cloned(),
                figure: f,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        perpkt::{CaseResult, Params, PerPacket},
        stats::Summary,
    };

    fn s(min: f64, median: f64) -> Summary {
        Summary {
            n: 3,
            median,
            q1: median,
            q3: median,
            min,
            max: median,
        }
    }

    fn run(raw_min: f64, net_min: f64) -> Results {
        Results {
            per_packet: Some(PerPacket {
                params: Params {
                    repeat: 1,
                    rounds: 3,
                },
                cpu: 0,
                baseline_ns: s(7.0, 8.0),
                harness_baseline_ns: s(24.0, 25.0),
                harness_overhead_ns: 17.0,
                pass_direct_ns: s(0.0, 0.0),
                adjust_head_ns: 3.0,
                cases: vec![CaseResult {
                    id: "v4_tcp_hit".into(),
                    label: "hit".into(),
                    raw_ns: s(raw_min, 80.0),
                    net_ns: s(0.0, 63.0),
                    net_min_ns: net_min,
                    ratio_to_baseline: 0.0,
                    raw_wall_ns: s(0.0, 0.0),
                    verified: String::new(),
                }],
            }),
            ..Default::default()
        }
    }

    #[test]
    fn judged_on_the_minimum_and_compared_with_the_previous_run() {
        // Old file: no recorded minimum, derived as 115 - 24 + 7 = 98.
        let old = run(115.0, 0.0);
        let new = run(0.0, 54.0);
        let rows = judge(&new, Some(&old));
        let hit = &rows[0];
        assert_eq!(hit.figure.min, 54.0);
        assert_eq!(hit.goal, "≤ 55 ns");
        assert_eq!(hit.met, Some(true));
        assert_eq!(hit.previous.as_ref().map(|p| p.min), Some(98.0));
        // Same median, a minimum over the bound: not met.
        let rows = judge(&run(0.0, 56.0), None);
        assert_eq!(rows[0].met, Some(false));
        assert!(rows[0].previous.is_none());
    }
}
