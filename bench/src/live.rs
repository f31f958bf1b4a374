//! Figure 2: forwarding rate with frames really transmitted.
//!
//! BPF_PROG_TEST_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES) turns
//! XDP_TX into a real transmit on the interface named in `ctx_in`: here one
//! end of a veth pair inside a namespace the bench creates, whose peer runs
//! `lb_bench_sink` (counts and drops). One pinned core does everything: the
//! program, the transmit, and the peer's receive (veth runs the peer's NAPI
//! on the sending CPU). `lb_bench_harness` runs in front of `lb_xdp` and of
//! the baseline alike: it rewrites the frame (live frames keep the previous
//! run's bytes) and gives each run the next of `n` client address/port
//! pairs, so the connection table sees `n` distinct flows.
//!
//! The connection table is one LRU per address family shared by all CPUs,
//! so the default 1,048,576 entries hold the 1,000,000 flows even though
//! everything here runs on one core (an earlier layout with per-CPU LRU
//! lists gave one CPU only `size / possible CPUs` of them: see README.md).

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context as _, ensure};
use lb_common::Stat;
use serde::{Deserialize, Serialize};

use crate::{
    frames::{self, L4, TCP_ACK},
    harness::{self, Bench, FlowRewrite},
    lab::{Lab, VIP4},
    layout::{COUNT_HARNESS, COUNT_SINK, FLOWS_PER_ADDR},
    stats::Summary,
    sys::{self, Netns},
};

/// How long and how often to measure.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    /// Frames per BPF_PROG_TEST_RUN call.
    pub repeat: u32,
    /// Rounds per flow count (lb_xdp and baseline alternate).
    pub rounds: usize,
    /// Live-frames batch size.
    pub batch: u32,
    /// Flow counts, each with the connection-table size (entries) it runs
    /// against.
    pub runs: Vec<(u32, u32)>,
}

/// One flow count.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// Distinct client flows cycled through.
    pub flows: u32,
    /// Connection-table size, entries.
    pub conn_table: u32,
    /// What one CPU can hold of it: all of it, the LRU is shared.
    pub conn_table_per_cpu: u32,
    /// Harness + `lb_xdp`, kernel ns per frame.
    pub lb_ns: Summary,
    /// Harness + baseline, kernel ns per frame.
    pub baseline_ns: Summary,
    /// Harness + `lb_xdp`, frames per second.
    pub lb_pps: Summary,
    /// Harness + baseline, frames per second.
    pub baseline_pps: Summary,
    /// `lb_xdp` rate over baseline rate (medians), both behind the harness.
    pub rate_vs_baseline: f64,
    /// `lb_xdp` with the harness subtracted (baseline added back), ns.
    pub net_ns: Summary,
    /// Frames per second of that net cost.
    pub net_pps: Summary,
    /// The net cost without interference: `min(HX) − min(HB) + min(B)`
    /// over rounds (noise only adds time), ns. Goals are judged on this.
    #[serde(default)]
    pub net_min_ns: f64,
    /// Share of lb_xdp frames that hit the connection table.
    pub conn_hit_share: f64,
    /// Share of transmitted frames the peer's sink received (lb_xdp runs).
    pub delivered_share: f64,
}

/// Figure 2.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Live {
    /// Measurement parameters.
    pub params: Params,
    /// CPU the runs were pinned to.
    pub cpu: usize,
    /// Bare baseline in live-frames mode (no harness), ns per frame.
    pub baseline_direct_ns: Summary,
    /// One row per flow count.
    pub rows: Vec<Row>,
}

/// The rewrite that gives run `k` flow `k % nflows`: 64 ports per client
/// address, addresses counting up from 198.18.128.0 (inside 198.18.0.0/15
/// for up to 2,097,152 flows).
fn rewrite(client: IpAddr, nflows: u32) -> FlowRewrite {
    debug_assert!(nflows / FLOWS_PER_ADDR < 0x8000);
    FlowRewrite {
        nflows,
        addr_off: frames::src_low16_offset(client),
        port_off: frames::sport_offset(client),
        addr_base: 0x8000,
        port_base: 10000,
        csum_off: frames::ipv4_check_offset(client),
    }
}

struct Counts {
    forwarded: u64,
    rx: u64,
    hit: u64,
    miss: u64,
    insert_failed: u64,
    sink: u64,
}

fn counts(lab: &Lab, bench: &Bench) -> anyhow::Result<Counts> {
    let s = lab.stats()?;
    Ok(Counts {
        forwarded: s[Stat::Forwarded as usize],
        rx: s[Stat::Rx as usize],
        hit: s[Stat::ConnHit as usize],
        miss: s[Stat::ConnMiss as usize],
        insert_failed: s[Stat::ConnInsertFailed as usize],
        sink: bench.count(COUNT_SINK)?,
    })
}

/// Runs figure 2 in a fresh namespace on a thread pinned to `cpu`. `labs`
/// must hold one balancer per connection-table size named in `p.runs`.
pub fn run(labs: &mut [Lab], bench: &mut Bench, p: &Params, cpu: usize) -> anyhow::Result<Live> {
    let ns = Netns::new("live")?;
    ns.ip(&[
        "link", "add", "lb0", "type", "veth", "peer", "name", "peer0",
    ])?;
    ns.ip(&["link", "set", "lb0", "up"])?;
    ns.ip(&["link", "set", "peer0", "up"])?;
    let ifindex = ns.ifindex("lb0")?;
    std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<Live> {
            sys::pin_thread(cpu)?;
            ns.enter()?;
            let link = bench.attach_sink("peer0")?;
            let r = measure(labs, bench, p, cpu, ifindex);
            bench.detach_sink(link)?;
            r
        })
        .join()
        .map_err(|_| anyhow::anyhow!("live-frames thread panicked"))?
    })
}

fn measure(
    labs: &mut [Lab],
    bench: &mut Bench,
    p: &Params,
    cpu: usize,
    ifindex: u32,
) -> anyhow::Result<Live> {
    let client = IpAddr::V4(Ipv4Addr::new(198, 18, 128, 0));
    let frame = frames::frame(client, IpAddr::V4(VIP4), 10000, 80, L4::Tcp(TCP_ACK), 64);
    let mut direct = vec![];
    let mut rows = vec![];
    for &(n, table) in &p.runs {
        let lab = labs
            .iter_mut()
            .find(|l| l.lb.sizes().conn_table == table)
            .with_context(|| format!("no balancer with a {table}-entry connection table"))?;
        bench.set_template(&harness::template(&frame, Some(rewrite(client, n)))?)?;
        // One pass over every flow first: the first packet of a flow misses
        // and takes the ring; the figure is about established flows.
        bench.set_target(lab.lb.program().fd()?)?;
        // The baseline runs advance the harness's flow counter too; the
        // lb_xdp runs resume where the previous one stopped, so together
        // they walk the flows in one continuous cycle.
        bench.set_count(COUNT_HARNESS, cpu, 0)?;
        let warm = n.max(p.repeat / 4);
        harness::run_live(bench.harness()?, &frame, warm, ifindex, p.batch).context("warm-up")?;
        let mut lb_pos = bench.count(COUNT_HARNESS)?;
        let (mut lb, mut base, mut net) = (vec![], vec![], vec![]);
        let (mut hits, mut sent, mut delivered) = (0u64, 0u64, 0u64);
        for round in 0..p.rounds {
            let d = harness::run_live(bench.baseline()?, &frame, p.repeat, ifindex, p.batch)?;
            direct.push(d.kernel_ns);

            bench.target_baseline()?;
            let b = harness::run_live(bench.harness()?, &frame, p.repeat, ifindex, p.batch)?;

            bench.set_target(lab.lb.program().fd()?)?;
            bench.set_count(COUNT_HARNESS, cpu, lb_pos)?;
            let before = counts(lab, bench)?;
            let r = harness::run_live(bench.harness()?, &frame, p.repeat, ifindex, p.batch)?;
            let after = counts(lab, bench)?;
            lb_pos = bench.count(COUNT_HARNESS)?;
            let fwd = after.forwarded - before.forwarded;
            ensure!(
                after.rx - before.rx == u64::from(p.repeat) && fwd == u64::from(p.repeat),
                "{n} flows: lb_xdp saw {} frames and forwarded {fwd}, expected {} of each",
                after.rx - before.rx,
                p.repeat
            );
            hits += after.hit - before.hit;
            sent += fwd;
            delivered += after.sink - before.sink;
            lb.push(r.kernel_ns);
            base.push(b.kernel_ns);
            net.push(r.kernel_ns - b.kernel_ns + d.kernel_ns);
            eprintln!(
                "  live {n} flows (table {table}) round {}/{}: lb_xdp {} ns, baseline {} ns, bare baseline {} ns; \
                 conn hit {} miss {} insert failed {}",
                round + 1,
                p.rounds,
                r.kernel_ns,
                b.kernel_ns,
                d.kernel_ns,
                after.hit - before.hit,
                after.miss - before.miss,
                after.insert_failed - before.insert_failed
            );
        }
        ensure!(delivered > 0, "the veth peer received nothing");
        let lb_ns = Summary::of(&lb);
        let baseline_ns = Summary::of(&base);
        let net_ns = Summary::of(&net);
        let pps = |ns: f64| 1e9 / ns;
        let bare_min = direct.iter().copied().fold(f64::INFINITY, f64::min);
        rows.push(Row {
            net_min_ns: lb_ns.min - baseline_ns.min + bare_min,
            flows: n,
            conn_table: table,
            conn_table_per_cpu: table,
            lb_pps: lb_ns.map(pps),
            baseline_pps: baseline_ns.map(pps),
            rate_vs_baseline: baseline_ns.median / lb_ns.median,
            net_pps: net_ns.map(pps),
            lb_ns,
            baseline_ns,
            net_ns,
            conn_hit_share: hits as f64 / sent as f64,
            delivered_share: delivered as f64 / sent as f64,
        });
    }
    Ok(Live {
        params: p.clone(),
        cpu,
        baseline_direct_ns: Summary::of(&direct),
        rows,
    })
}
