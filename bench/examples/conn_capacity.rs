//! How many of `n` flows the connection table keeps when one CPU inserts
//! them all (root): `cargo run --release -p bench --example conn_capacity --
//! 1000000 1048576` inserts flows 0..n through the real `lb_xdp` (via the
//! harness, BPF_PROG_TEST_RUN, pinned to the last CPU) into a table of the
//! given size, then looks every flow up from userspace.
//!
//! Why it exists: with per-CPU LRU lists (BPF_F_NO_COMMON_LRU) each CPU's
//! list got `size / possible CPUs` of the entries, so a CPU that receives
//! every flow (one queue, veth, RSS skew) kept only that share. The table is
//! now one shared LRU; this checks it keeps (nearly) all `n` flows.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::Context as _;
use bench::{
    frames::{self, L4, TCP_ACK},
    harness::{self, Bench, FlowRewrite},
    lab::{Lab, VIP4, map_addr},
    layout::FLOWS_PER_ADDR,
    sys,
};
use lb_common::{FlowKey4, SLOT_NONE, Stat};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u32 = args
        .next()
        .context("usage: conn_capacity FLOWS TABLE_SIZE")?
        .parse()?;
    let size: u32 = args
        .next()
        .context("usage: conn_capacity FLOWS TABLE_SIZE")?
        .parse()?;
    sys::pin_thread(sys::bench_cpu())?;
    let mut lab = Lab::new(size)?;
    let mut bench = Bench::load()?;
    let client = Ipv4Addr::new(198, 18, 128, 0);
    let frame = frames::frame(client.into(), VIP4.into(), 10000, 80, L4::Tcp(TCP_ACK), 64);
    bench.set_template(&harness::template(
        &frame,
        Some(FlowRewrite {
            nflows: n,
            addr_off: frames::src_low16_offset(client.into()),
            port_off: frames::sport_offset(client.into()),
            addr_base: 0x8000,
            port_base: 10000,
            csum_off: frames::ipv4_check_offset(client.into()),
        }),
    )?)?;
    bench.set_target(lab.lb.program().fd()?)?;
    let before = lab.stats()?;
    harness::run(bench.harness()?, &frame, n)?;
    let after = lab.stats()?;
    let new = after[Stat::NewFlow as usize] - before[Stat::NewFlow as usize];
    let mut kept = 0u32;
    for f in 0..n {
        let src = IpAddr::V4(Ipv4Addr::from(u32::from(client) + f / FLOWS_PER_ADDR));
        let key = FlowKey4::new(
            map_addr(src).0[0],
            map_addr(VIP4.into()).0[0],
            ((10000 + f % FLOWS_PER_ADDR) as u16).to_be(),
            80u16.to_be(),
            lb_common::PROTO_TCP,
        );
        if lab
            .lb
            .conn_entry4(&key)
            .is_some_and(|e| e.slot != SLOT_NONE)
        {
            kept += 1;
        }
    }
    println!("table {size}, {n} flows inserted from one CPU ({new} new): {kept} kept");
    Ok(())
}
