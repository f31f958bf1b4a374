//! Figure 1b: where the nanoseconds of a packet go, stage by stage.
//!
//! The bench build of the balancer object holds, besides `lb_xdp`, copies of
//! the same packet path cut short after one stage (`lb_xdp_upto_<stage>`,
//! counting nothing) and one that runs everything but the counters
//! (`lb_xdp_nocount`); see `lb-ebpf/src/bin/lb-xdp/variant.rs`. Each is timed
//! exactly like figure 1 (harness in front, `net = HX − HB + B` per round)
//! on the same frame, in the same round as the full program, so a stage's
//! cost is the difference between a variant and the one before it.
//!
//! Checks: a cut-down variant must return `STOPPED` (XDP_REDIRECT, which
//! nothing else in `lb_xdp` returns), i.e. it really reached its checkpoint on
//! this frame, and must leave every counter unchanged; `lb_xdp_nocount` must
//! return XDP_TX with no counter change; `lb_xdp` itself must show the path's
//! counters, as in figure 1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, ensure};
use lb_common::Stat;
use serde::{Deserialize, Serialize};

use crate::{
    frames::{self, L4, TCP_ACK, TCP_SYN},
    harness::{self, Bench, XDP_TX},
    lab::{Lab, VIP4, VIP6, delta},
    perpkt::Params,
    stats::Summary,
};

/// XDP_REDIRECT: what a cut-down variant returns at its checkpoint.
const STOPPED: u32 = 4;

/// One program of the chain: a cut-down variant, or the full program.
struct Step {
    /// The XDP program (function) name in the bench's balancer object.
    prog: &'static str,
    /// What this step adds over the previous one.
    stage: &'static str,
}

/// The variants a path goes through, in the order its code meets them.
fn chain(syn: bool) -> Vec<Step> {
    let mut v = vec![
        Step {
            prog: "lb_xdp_upto_entry",
            stage: "program entry (tail call from the harness)",
        },
        Step {
            prog: "lb_xdp_upto_config",
            stage: "config read",
        },
        Step {
            prog: "lb_xdp_upto_l3",
            stage: "parse Ethernet + IP header",
        },
        Step {
            prog: "lb_xdp_upto_vip_addr",
            stage: "VIP-address filter",
        },
        Step {
            prog: "lb_xdp_upto_ports",
            stage: "parse ports / flags",
        },
    ];
    if syn {
        v.push(Step {
            prog: "lb_xdp_upto_vip",
            stage: "VIP lookup",
        });
        v.push(Step {
            prog: "lb_xdp_upto_ring",
            stage: "flow hash + ring position + backend read",
        });
        v.push(Step {
            prog: "lb_xdp_upto_insert",
            stage: "conn-table insert",
        });
    } else {
        v.push(Step {
            prog: "lb_xdp_upto_conn",
            stage: "conn-table lookup",
        });
        v.push(Step {
            prog: "lb_xdp_upto_backend",
            stage: "backend read + generation check",
        });
    }
    v.push(Step {
        prog: "lb_xdp_nocount",
        stage: "MTU check + encapsulation + checksum",
    });
    v.push(Step {
        prog: "lb_xdp",
        stage: "counters",
    });
    v
}

/// One stage of one path.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageCost {
    /// The program measured.
    pub program: String,
    /// What it adds over the previous row.
    pub stage: String,
    /// Net cost of the program up to and including this stage, per round
    /// (`HX − HB + B`), ns.
    pub cumulative_ns: Summary,
    /// The same without interference: `min(HX) − min(HB) + min(B)` over
    /// rounds (noise only ever adds time, so each minimum is its component's
    /// undisturbed cost), ns.
    pub cumulative_min_ns: f64,
    /// This stage alone: median of the per-round differences, ns.
    pub stage_ns_median: f64,
    /// This stage alone: `min(HX) − min(HX of the row above)`, ns.
    pub stage_ns_min: f64,
}

/// The breakdown of one path.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PathBreakdown {
    /// Short id.
    pub id: String,
    /// What the path is.
    pub label: String,
    /// The stages, in order.
    pub stages: Vec<StageCost>,
}

/// Figure 1b.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Breakdown {
    /// Measurement parameters.
    pub params: Params,
    /// CPU the runs were pinned to.
    pub cpu: usize,
    /// Bare baseline per round, ns.
    pub baseline_ns: Summary,
    /// The paths.
    pub paths: Vec<PathBreakdown>,
}

struct PathCase {
    id: &'static str,
    label: &'static str,
    frame: Vec<u8>,
    syn: bool,
    prime: bool,
    full_counts: &'static [Stat],
}

fn paths() -> Vec<PathCase> {
    let client4 = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 60));
    let client6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 0x60));
    vec![
        PathCase {
            id: "v4_tcp_hit",
            label: "IPv4 TCP, conn-table hit",
            frame: frames::frame(client4, IpAddr::V4(VIP4), 41000, 80, L4::Tcp(TCP_ACK), 64),
            syn: false,
            prime: true,
            full_counts: &[Stat::Rx, Stat::ConnHit, Stat::Forwarded],
        },
        PathCase {
            id: "v6_tcp_hit",
            label: "IPv6 TCP, conn-table hit",
            frame: frames::frame(client6, IpAddr::V6(VIP6), 41001, 80, L4::Tcp(TCP_ACK), 80),
            syn: false,
            prime: true,
            full_counts: &[Stat::Rx, Stat::ConnHit, Stat::Forwarded],
        },
        PathCase {
            id: "v4_tcp_syn",
            label: "IPv4 TCP SYN (ring + conn-table insert)",
            frame: frames::frame(client4, IpAddr::V4(VIP4), 41002, 80, L4::Tcp(TCP_SYN), 64),
            syn: true,
            prime: false,
            full_counts: &[Stat::Rx, Stat::RingLookup, Stat::NewFlow, Stat::Forwarded],
        },
    ]
}

/// Runs figure 1b. The calling thread must be pinned.
pub fn run(lab: &mut Lab, bench: &mut Bench, p: Params, cpu: usize) -> anyhow::Result<Breakdown> {
    let cases = paths();
    for c in cases.iter().filter(|c| c.prime) {
        let r = harness::run(lab.lb.program(), &c.frame, 1)?;
        ensure!(
            r.action == XDP_TX,
            "{}: priming run returned {}",
            c.id,
            r.action
        );
    }
    let chains: Vec<Vec<Step>> = cases.iter().map(|c| chain(c.syn)).collect();
    // Load every variant once (the verifier runs here, not in the rounds).
    for step in chains.iter().flatten() {
        lab.lb
            .load_variant(step.prog)
            .with_context(|| format!("loading {}", step.prog))?;
    }
    let (mut base, mut hbase) = (vec![], vec![]);
    // raw[path][step][round] = HX, net[path][step][round] = HX − HB + B
    let mut raw: Vec<Vec<Vec<f64>>> = chains.iter().map(|c| vec![vec![]; c.len()]).collect();
    let mut net = raw.clone();
    for round in 0..p.rounds {
        let frame0 = &cases[0].frame;
        let tpl = harness::template(frame0, None)?;
        let (b, hb) = harness::baselines(bench, frame0, &tpl, p.repeat)?;
        base.push(b.kernel_ns);
        hbase.push(hb.kernel_ns);
        for (ci, c) in cases.iter().enumerate() {
            bench.set_template(&harness::template(&c.frame, None)?)?;
            for (si, step) in chains[ci].iter().enumerate() {
                let fd = lab.lb.load_variant(step.prog)?.fd()?.try_clone()?;
                bench.set_target(&fd)?;
                let before = lab.stats()?;
                let r = harness::run(bench.harness()?, &c.frame, p.repeat)?;
                let after = lab.stats()?;
                let full = step.prog == "lb_xdp";
                let want_action = if full || step.prog == "lb_xdp_nocount" {
                    XDP_TX
                } else {
                    STOPPED
                };
                ensure!(
                    r.action == want_action,
                    "{} / {}: returned {}, expected {want_action}: the variant did not \
                     take the path claimed",
                    c.id,
                    step.prog,
                    r.action
                );
                for (stat, d) in delta(&before, &after) {
                    let want = if full && c.full_counts.contains(&stat) {
                        u64::from(p.repeat)
                    } else {
                        0
                    };
                    ensure!(
                        d == want,
                        "{} / {}: counter {} grew by {d}, expected {want}",
                        c.id,
                        step.prog,
                        stat.name()
                    );
                }
                raw[ci][si].push(r.kernel_ns);
                net[ci][si].push(r.kernel_ns - hb.kernel_ns + b.kernel_ns);
            }
        }
        eprintln!("  breakdown round {}/{}", round + 1, p.rounds);
    }
    let min = |xs: &[f64]| xs.iter().copied().fold(f64::INFINITY, f64::min);
    let floor = min(&base) - min(&hbase);
    let paths = cases
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            let mut stages = vec![];
            for (si, step) in chains[ci].iter().enumerate() {
                let cum = Summary::of(&net[ci][si]);
                let cum_min = min(&raw[ci][si]) + floor;
                let (d_med, d_min) = if si == 0 {
                    (cum.median, cum_min)
                } else {
                    let diffs: Vec<f64> = net[ci][si]
                        .iter()
                        .zip(&net[ci][si - 1])
                        .map(|(a, b)| a - b)
                        .collect();
                    (
                        Summary::of(&diffs).median,
                        min(&raw[ci][si]) - min(&raw[ci][si - 1]),
                    )
                };
                stages.push(StageCost {
                    program: step.prog.into(),
                    stage: step.stage.into(),
                    cumulative_ns: cum,
                    cumulative_min_ns: cum_min,
                    stage_ns_median: d_med,
                    stage_ns_min: d_min,
                });
            }
            PathBreakdown {
                id: c.id.into(),
                label: c.label.into(),
                stages,
            }
        })
        .collect();
    Ok(Breakdown {
        params: p,
        cpu,
        baseline_ns: Summary::of(&base),
        paths,
    })
}
