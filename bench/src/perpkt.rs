//! Figure 1: what one packet costs in `lb_xdp`, path by path, under
//! BPF_PROG_TEST_RUN, next to the MAC-swap baseline.
//!
//! Method (see bench/README.md): with repeat > 1 the kernel reruns the
//! program on one buffer, so an encapsulating program would see its own
//! output. Every case therefore runs behind `lb_bench_harness`, which restores
//! the original frame and tail-calls `lb_xdp`; the same harness tail-calling
//! the baseline is timed in the same round, and so is the bare baseline. Per
//! round, `net = (harness + lb_xdp) - (harness + baseline) + baseline` is what
//! `lb_xdp` would cost if frames could be reset for free. After every run the
//! program's own counters must show exactly the claimed path, `repeat` times.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{bail, ensure};
use lb_common::{STAT_COUNT, Stat};
use serde::{Deserialize, Serialize};

use crate::{
    frames::{self, GW_MAC, L4, TCP_ACK, TCP_SYN},
    harness::{self, Bench, XDP_PASS, XDP_TX},
    lab::{Lab, VIP4, VIP4_TO6, VIP6, delta},
    stats::Summary,
};

/// How long and how often to measure.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Params {
    /// Runs per BPF_PROG_TEST_RUN call.
    pub repeat: u32,
    /// Rounds (each round times every case once).
    pub rounds: usize,
}

/// One path through `lb_xdp`.
struct Case {
    id: &'static str,
    label: &'static str,
    frame: Vec<u8>,
    /// Run once before timing so the flow is in the connection table.
    prime: bool,
    action: u32,
    /// Bytes the program prepends.
    grow: usize,
    /// Counters that must grow by exactly one per run; all others stay.
    per_run: &'static [Stat],
    /// Run with `encap = "gue"` (the lab's LbConfig switched for the case).
    gue: bool,
}

fn cases() -> Vec<Case> {
    let client4 = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 50));
    let client6: IpAddr = "fd00:18::50".parse().expect("literal");
    let vip4 = IpAddr::V4(VIP4);
    let vip6 = IpAddr::V6(VIP6);
    let hit: &'static [Stat] = &[Stat::Rx, Stat::ConnHit, Stat::Forwarded];
    vec![
        Case {
            id: "v4_tcp_hit",
            label: "IPv4 TCP, conn-table hit",
            frame: frames::frame(client4, vip4, 40000, 80, L4::Tcp(TCP_ACK), 64),
            prime: true,
            action: XDP_TX,
            grow: 20,
            per_run: hit,
            gue: false,
        },
        Case {
            id: "v4_tcp_syn",
            label: "IPv4 TCP SYN (Maglev ring)",
            frame: frames::frame(client4, vip4, 40001, 80, L4::Tcp(TCP_SYN), 64),
            prime: false,
            action: XDP_TX,
            grow: 20,
            per_run: &[Stat::Rx, Stat::RingLookup, Stat::NewFlow, Stat::Forwarded],
            gue: false,
        },
        Case {
            id: "v4_udp",
            label: "IPv4 UDP, conn-table hit",
            frame: frames::frame(client4, vip4, 40002, 53, L4::Udp, 64),
            prime: true,
            action: XDP_TX,
            grow: 20,
            per_run: hit,
            gue: false,
        },
        Case {
            id: "v6_tcp_hit",
            label: "IPv6 TCP, conn-table hit",
            frame: frames::frame(client6, vip6, 40003, 80, L4::Tcp(TCP_ACK), 80),
            prime: true,
            action: XDP_TX,
            grow: 40,
            per_run: hit,
            gue: false,
        },
        Case {
            id: "v4_to_v6_hit",
            label: "IPv4 VIP to IPv6 backend, hit",
            frame: frames::frame(
                client4,
                IpAddr::V4(VIP4_TO6),
                40004,
                80,
                L4::Tcp(TCP_ACK),
                64,
            ),
            prime: true,
            action: XDP_TX,
            grow: 40,
            per_run: hit,
            gue: false,
        },
        Case {
            id: "pass",
            label: "not for a VIP (XDP_PASS)",
            frame: frames::frame(
                client4,
                IpAddr::V4(Ipv4Addr::new(198, 18, 200, 1)),
                40005,
                80,
                L4::Tcp(TCP_ACK),
                64,
            ),
            prime: false,
            action: XDP_PASS,
            grow: 0,
            per_run: &[Stat::Rx, Stat::Pass],
            gue: false,
        },
        // The same hits with GUE: what the UDP header costs (8 more bytes,
        // the per-flow source port).
        Case {
            id: "v4_tcp_hit_gue",
            label: "IPv4 TCP, conn-table hit, GUE",
            frame: frames::frame(client4, vip4, 40006, 80, L4::Tcp(TCP_ACK), 64),
            prime: true,
            action: XDP_TX,
            grow: 28,
            per_run: hit,
            gue: true,
        },
        Case {
            id: "v6_tcp_hit_gue",
            label: "IPv6 TCP, conn-table hit, GUE",
            frame: frames::frame(client6, vip6, 40007, 80, L4::Tcp(TCP_ACK), 80),
            prime: true,
            action: XDP_TX,
            grow: 48,
            per_run: hit,
            gue: true,
        },
    ]
}

/// Switches the lab's balancer between IP-in-IP and GUE (default port).
fn set_gue(lab: &mut Lab, gue: bool) -> anyhow::Result<()> {
    let mut cfg = lab.lb.config()?;
    cfg.gue_port = if gue {
        lb_common::DEFAULT_GUE_PORT.to_be()
    } else {
        0
    };
    lab.lb.set_config(&cfg)?;
    Ok(())
}

/// Result for one path.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseResult {
    /// Short id (JSON key, chart label).
    pub id: String,
    /// What the path is.
    pub label: String,
    /// Harness + `lb_xdp`, kernel ns per packet.
    pub raw_ns: Summary,
    /// `lb_xdp` alone (harness subtracted, baseline added back), per round, ns.
    pub net_ns: Summary,
    /// `lb_xdp` alone without interference: `min(HX) − min(HB) + min(B)`
    /// over rounds (noise only adds time, so each minimum is that
    /// component's undisturbed cost), ns. Goals are judged on this.
    #[serde(default)]
    pub net_min_ns: f64,
    /// Median net cost over median baseline cost.
    pub ratio_to_baseline: f64,
    /// Harness + `lb_xdp`, wall-clock ns per packet (cross-check).
    pub raw_wall_ns: Summary,
    /// The counters that proved the path, per packet.
    pub verified: String,
}

/// Figure 1.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PerPacket {
    /// Measurement parameters.
    pub params: Params,
    /// CPU the runs were pinned to.
    pub cpu: usize,
    /// Bare baseline (MAC swap + XDP_TX), kernel ns per packet.
    pub baseline_ns: Summary,
    /// Harness + baseline, kernel ns per packet.
    pub harness_baseline_ns: Summary,
    /// Median cost of the harness itself (restore + tail call), ns.
    pub harness_overhead_ns: f64,
    /// `lb_xdp` on the pass frame run directly (no harness: the pass path
    /// leaves the frame untouched, so repeat is honest there), kernel ns. It
    /// checks the subtraction: it should match the "pass" case's net figure.
    pub pass_direct_ns: Summary,
    /// Cost of one `bpf_xdp_adjust_head` call, ns: half of what
    /// `lb_bench_adjust` (grow + shrink + baseline) costs over the baseline.
    /// The harness shrinks the frame before each encapsulating case and not
    /// before the baseline, so those cases' net figures are high by this much.
    pub adjust_head_ns: f64,
    /// Every path.
    pub cases: Vec<CaseResult>,
}

fn check_counters(
    case: &Case,
    before: &[u64; STAT_COUNT as usize],
    after: &[u64; STAT_COUNT as usize],
    repeat: u32,
) -> anyhow::Result<()> {
    for (stat, d) in delta(before, after) {
        let want = if case.per_run.contains(&stat) {
            u64::from(repeat)
        } else {
            0
        };
        ensure!(
            d == want,
            "{}: counter {} grew by {d}, expected {want} for {repeat} runs: \
             the measured path is not the one claimed",
            case.id,
            stat.name()
        );
    }
    Ok(())
}

fn check_output(case: &Case, out: &[u8]) -> anyhow::Result<()> {
    ensure!(
        out.len() == case.frame.len() + case.grow,
        "{}: output frame is {} bytes, expected {}",
        case.id,
        out.len(),
        case.frame.len() + case.grow
    );
    if case.grow == 0 {
        ensure!(out == case.frame, "{}: passed frame was modified", case.id);
    } else {
        ensure!(
            out[..6] == GW_MAC,
            "{}: not sent to the gateway MAC",
            case.id
        );
        ensure!(
            out[frames::ETH_LEN + case.grow..] == case.frame[frames::ETH_LEN..],
            "{}: inner packet differs from the client's",
            case.id
        );
    }
    Ok(())
}

/// Runs figure 1. The calling thread must be pinned (per-CPU counters and
/// the kernel's per-CPU LRU free lists: one CPU keeps the figures comparable).
pub fn run(lab: &mut Lab, bench: &mut Bench, p: Params, cpu: usize) -> anyhow::Result<PerPacket> {
    let cases = cases();
    for c in cases.iter().filter(|c| c.prime) {
        let r = harness::run(lab.lb.program(), &c.frame, 1)?;
        ensure!(
            r.action == c.action,
            "{}: priming run returned {}",
            c.id,
            r.action
        );
    }
    let baseline_frame = &cases[0].frame;
    let (mut base, mut hbase, mut pass_direct, mut adjust) = (vec![], vec![], vec![], vec![]);
    let mut raw = vec![vec![]; cases.len()];
    let mut wall = vec![vec![]; cases.len()];
    let mut net = vec![vec![]; cases.len()];
    for round in 0..p.rounds {
        let tpl = harness::template(baseline_frame, None)?;
        let (b, hb) = harness::baselines(bench, baseline_frame, &tpl, p.repeat)?;
        base.push(b.kernel_ns);
        hbase.push(hb.kernel_ns);
        let a = harness::run(bench.adjust()?, baseline_frame, p.repeat)?;
        ensure!(a.action == XDP_TX, "adjust program returned {}", a.action);
        adjust.push((a.kernel_ns - b.kernel_ns) / 2.0);

        bench.set_target(lab.lb.program().fd()?)?;
        for (i, c) in cases.iter().enumerate() {
            set_gue(lab, c.gue)?;
            bench.set_template(&harness::template(&c.frame, None)?)?;
            let before = lab.stats()?;
            let r = harness::run(bench.harness()?, &c.frame, p.repeat)?;
            let after = lab.stats()?;
            if r.action != c.action {
                bail!("{}: harness + lb_xdp returned {}", c.id, r.action);
            }
            check_counters(c, &before, &after, p.repeat)?;
            check_output(c, &r.out)?;
            raw[i].push(r.kernel_ns);
            wall[i].push(r.wall_ns);
            net[i].push(r.kernel_ns - hb.kernel_ns + b.kernel_ns);
        }
        set_gue(lab, false)?;
        let pass = cases.iter().find(|c| c.id == "pass").expect("pass case");
        let before = lab.stats()?;
        let d = harness::run(lab.lb.program(), &pass.frame, p.repeat)?;
        let after = lab.stats()?;
        check_counters(pass, &before, &after, p.repeat)?;
        pass_direct.push(d.kernel_ns);
        eprintln!(
            "  per-packet round {}/{}: baseline {} ns, harness+baseline {} ns, conn hit {} ns",
            round + 1,
            p.rounds,
            b.kernel_ns,
            hb.kernel_ns,
            raw[0].last().copied().unwrap_or(f64::NAN)
        );
    }
    let baseline_ns = Summary::of(&base);
    let harness_baseline_ns = Summary::of(&hbase);
    let results = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let net_ns = Summary::of(&net[i]);
            let raw_ns = Summary::of(&raw[i]);
            CaseResult {
                id: c.id.into(),
                label: c.label.into(),
                net_min_ns: raw_ns.min - harness_baseline_ns.min + baseline_ns.min,
                raw_ns,
                ratio_to_baseline: net_ns.median / baseline_ns.median,
                net_ns,
                raw_wall_ns: Summary::of(&wall[i]),
                verified: c
                    .per_run
                    .iter()
                    .map(|s| format!("{} +1", s.name()))
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        })
        .collect();
    Ok(PerPacket {
        params: p,
        cpu,
        harness_overhead_ns: harness_baseline_ns.median - baseline_ns.median,
        baseline_ns,
        harness_baseline_ns,
        pass_direct_ns: Summary::of(&pass_direct),
        adjust_head_ns: Summary::of(&adjust).median,
        cases: results,
    })
}

/// Frames per call of the "table filling" new-flow case (at most): all its
/// rounds together must insert fewer flows than the table holds.
const FILL_REPEAT: u32 = 50_000;

/// Flows the "table full" new-flow case cycles through: twice a
/// 1,048,576-entry table, so every flow has been evicted by the time it
/// comes round again and every SYN inserts a new entry over an evicted one.
const EVICT_FLOWS: u32 = 2 * 1_048_576;

/// Runs per round of the miss cases: each run a flow never seen, so all
/// rounds together stay within their 0x4000 client addresses.
const MISS_REPEAT: u32 = 40_000;

/// New connections, the honest way: the figure-1 SYN case re-sends one
/// 5-tuple, so every run *replaces* its own entry, which is not what a
/// new flow costs. Here the harness gives every run the next of many client
/// addresses/ports (as in the live figure), so every SYN is a flow the
/// table has never seen: first into a table with free entries ("filling"),
/// then into a full one, where every insert evicts the least recently used
/// flow ("full"). `lab` must be a balancer of its own (its table is filled).
pub fn new_flows(
    lab: &mut Lab,
    bench: &mut Bench,
    p: Params,
    cpu: usize,
) -> anyhow::Result<Vec<CaseResult>> {
    use crate::{harness::FlowRewrite, layout::COUNT_HARNESS};
    let client = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 70));
    let syn = frames::frame(client, IpAddr::V4(VIP4), 40000, 80, L4::Tcp(TCP_SYN), 64);
    let ack = frames::frame(client, IpAddr::V4(VIP4), 40000, 80, L4::Tcp(TCP_ACK), 64);
    let rewrite = |nflows: u32, addr_base: u16| FlowRewrite {
        nflows,
        addr_off: frames::src_low16_offset(client),
        port_off: frames::sport_offset(client),
        addr_base,
        port_base: 10000,
        csum_off: frames::ipv4_check_offset(client),
    };
    let table = lab.lb.sizes().conn_table;
    let syn_run: &'static [Stat] = &[Stat::Rx, Stat::RingLookup, Stat::NewFlow, Stat::Forwarded];
    let miss_run: &'static [Stat] = &[
        Stat::Rx,
        Stat::ConnMiss,
        Stat::RingLookup,
        Stat::NewFlow,
        Stat::Forwarded,
    ];
    let fallback_run: &'static [Stat] = &[
        Stat::Rx,
        Stat::ConnMiss,
        Stat::RingLookup,
        Stat::ConnDrainFallback,
        Stat::NewFlow,
        Stat::Forwarded,
    ];
    let mut out = vec![];
    // Four fifths of the table for all rounds of the filling case together.
    let fill_repeat = FILL_REPEAT.min(table / 5 * 4 / p.rounds.max(1) as u32);
    // The miss cases run in the full table after the SYN case, every ACK
    // from a client never seen (their own client addresses, below the SYN
    // cases' 0x8000.., no flow repeated: a flow that comes back after a
    // cycle may still be in the table, the kernel's LRU being approximate):
    // first plain (the current ring decides), then with the VIP draining a
    // backend that the pre-drain table names at every position, so every
    // miss takes the drain fallback (`flow.rs`, `draining_at`).
    let miss_repeat = MISS_REPEAT.min(p.repeat);
    let miss_flows = miss_repeat * p.rounds as u32;
    ensure!(
        miss_flows / lb_common::bench::FLOWS_PER_ADDR < 0x4000,
        "miss cases: {miss_flows} flows do not fit their client addresses"
    );
    for (id, label, nflows, repeat, frame, per_run, drain, base) in [
        (
            "v4_syn_new_filling",
            "IPv4 TCP SYN, new flow each packet, table filling",
            u32::MAX,
            fill_repeat,
            &syn,
            syn_run,
            false,
            0x8000,
        ),
        (
            "v4_syn_new_full",
            "IPv4 TCP SYN, new flow each packet, table full (evicts)",
            EVICT_FLOWS,
            p.repeat,
            &syn,
            syn_run,
            false,
            0x8000,
        ),
        (
            "v4_ack_miss_full",
            "IPv4 TCP ACK missing its entry, table full (evicts)",
            miss_flows,
            miss_repeat,
            &ack,
            miss_run,
            false,
            0x0000,
        ),
        (
            "v4_ack_miss_drain_full",
            "IPv4 TCP ACK missing its entry, drain fallback, table full (evicts)",
            miss_flows,
            miss_repeat,
            &ack,
            fallback_run,
            true,
            0x4000,
        ),
    ] {
        let frame: &Vec<u8> = frame;
        let case = Case {
            id: "",
            label: "",
            frame: frame.clone(),
            prime: false,
            action: XDP_TX,
            grow: 20,
            per_run,
            gue: false,
        };
        if drain {
            drain_everything(lab)?;
        }
        let nflows = if nflows == u32::MAX {
            // Distinct flows for every run of every round, fewer than the table holds.
            let need = fill_repeat * p.rounds as u32;
            ensure!(
                need < table,
                "filling case needs a table above {need} entries"
            );
            need
        } else {
            nflows
        };
        let tpl = harness::template(frame, Some(rewrite(nflows, base)))?;
        bench.set_count(COUNT_HARNESS, cpu, 0)?;
        if id == "v4_syn_new_full" {
            // Fill the table (and then some) before timing.
            bench.set_template(&tpl)?;
            bench.set_target(lab.lb.program().fd()?)?;
            let mut done = 0u32;
            while done < table + table / 4 {
                let r = harness::run(bench.harness()?, frame, 1_000_000)?;
                ensure!(
                    r.action == XDP_TX,
                    "{id}: filling run returned {}",
                    r.action
                );
                done += 1_000_000;
            }
        }
        let (mut base, mut hbase, mut raw, mut net, mut wall) =
            (vec![], vec![], vec![], vec![], vec![]);
        let mut pos = bench.count(COUNT_HARNESS)?;
        for _ in 0..p.rounds {
            let (b, hb) = harness::baselines(bench, frame, &tpl, repeat)?;
            // The baseline runs advanced the flow counter: resume the cycle.
            bench.set_count(COUNT_HARNESS, cpu, pos)?;
            bench.set_target(lab.lb.program().fd()?)?;
            let before = lab.stats()?;
            let r = harness::run(bench.harness()?, frame, repeat)?;
            let after = lab.stats()?;
            pos = bench.count(COUNT_HARNESS)?;
            ensure!(r.action == XDP_TX, "{id}: returned {}", r.action);
            check_counters(&case, &before, &after, repeat)?;
            base.push(b.kernel_ns);
            hbase.push(hb.kernel_ns);
            raw.push(r.kernel_ns);
            wall.push(r.wall_ns);
            net.push(r.kernel_ns - hb.kernel_ns + b.kernel_ns);
        }
        let (b, hb, raw_ns) = (Summary::of(&base), Summary::of(&hbase), Summary::of(&raw));
        let net_ns = Summary::of(&net);
        out.push(CaseResult {
            id: id.into(),
            label: label.into(),
            net_min_ns: raw_ns.min - hb.min + b.min,
            ratio_to_baseline: net_ns.median / b.median,
            raw_ns,
            net_ns,
            raw_wall_ns: Summary::of(&wall),
            verified: per_run
                .iter()
                .map(|s| format!("{} +1", s.name()))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(out)
}

/// Makes every miss of VIP4:80 take the drain fallback: its first backend's
/// slot is marked draining, the standby ring half names that slot at every
/// position, and the VIP entry is flagged, as the daemon leaves them while
/// a backend drains (here with the backend still in the live half too:
/// only the path is timed).
fn drain_everything(lab: &mut Lab) -> anyhow::Result<()> {
    use lb_common::{BACKEND_F_DRAINING, VIP_F_DRAIN_FALLBACK};
    let key = crate::lab::vip_key(IpAddr::V4(VIP4), 80, lb_common::PROTO_TCP);
    let mut meta = lab.lb.vip(&key).ok_or_else(|| anyhow::anyhow!("VIP4:80"))?;
    let m = lab.lb.sizes().ring_size;
    let live = lab.lb.ring_half(meta.index, meta.ring_half & 1);
    let slot = live[0];
    let mut b = lab.lb.backend(slot)?;
    b.flags |= BACKEND_F_DRAINING;
    lab.lb.set_backend(slot, &b)?;
    let standby = vec![slot; m as usize];
    lab.lb
        .write_ring_half(meta.index, (meta.ring_half & 1) ^ 1, &standby)?;
    meta.flags |= VIP_F_DRAIN_FALLBACK;
    lab.lb.set_vip(&key, &meta)?;
    Ok(())
}
