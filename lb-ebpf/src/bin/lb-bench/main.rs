//! Benchmark-only XDP programs (never attached by the daemon):
//!
//! * `lb_bench_baseline`: swaps the MAC addresses and returns XDP_TX, the
//!   least a forwarding XDP program can do; the floor every figure is
//!   compared with.
//! * `lb_bench_harness`: puts the benchmark frame back exactly as the
//!   userspace template says, optionally with a per-run client address and
//!   port, then tail-calls the program under test (`BENCH_PROGS[0]`).
//!   BPF_PROG_TEST_RUN with repeat > 1 reruns a program on the same buffer
//!   (an encapsulating program would see its own output and grow the frame
//!   every run), and live-frames mode resets only the frame's bounds, not
//!   its bytes. Restoring the frame in front of the program is what makes
//!   every run process the packet we claim it processes; timing the same
//!   harness in front of the baseline lets the bench subtract its cost.
//! * `lb_bench_adjust`: the baseline plus one 20-byte grow and one shrink of
//!   the head, i.e. what the harness adds in front of an encapsulating case
//!   (its shrink) plus the matching grow; it sizes that bias.
//! * `lb_bench_sink`: counts and drops what arrives on the veth peer in the
//!   live-frames benchmark (a veth only delivers XDP_TX frames to a peer that
//!   runs XDP, and dropping there keeps the "wire" cheap and proves delivery).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, PerCpuArray, ProgramArray},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use lb_ebpf::{
    csum,
    hdr::EthHdr,
    ptr::{adjust_head, frame_len, ptr_at},
};

use lb_common::bench::{
    COUNT_HARNESS, COUNT_SINK, FLOWS_PER_ADDR, FRAME_WORDS, MAX_FRAME, Template,
};

/// Index 0: the program under test.
#[btf_map]
static BENCH_PROGS: ProgramArray<1> = ProgramArray::new();

#[btf_map]
static BENCH_TEMPLATE: Array<Template, 1> = Array::new();

/// Per-CPU counters, indexed by `COUNT_*`.
#[btf_map]
static BENCH_COUNT: PerCpuArray<u64, 2> = PerCpuArray::new();

#[xdp]
pub fn lb_bench_baseline(ctx: XdpContext) -> u32 {
    swap_macs_tx(&ctx)
}

#[inline(always)]
fn swap_macs_tx(ctx: &XdpContext) -> u32 {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    unsafe {
        let dst = (*eth).dst;
        (*eth).dst = (*eth).src;
        (*eth).src = dst;
    }
    xdp_action::XDP_TX
}

#[xdp]
pub fn lb_bench_adjust(ctx: XdpContext) -> u32 {
    if adjust_head(&ctx, -20).is_none() || adjust_head(&ctx, 20).is_none() {
        return xdp_action::XDP_ABORTED;
    }
    swap_macs_tx(&ctx)
}

#[xdp]
pub fn lb_bench_harness(ctx: XdpContext) -> u32 {
    if restore(&ctx).is_none() {
        return xdp_action::XDP_ABORTED;
    }
    unsafe { BENCH_PROGS.tail_call(&ctx, 0) };
    // Only reached when the slot is empty: userspace reads ABORTED as a setup error.
    xdp_action::XDP_ABORTED
}

#[xdp]
pub fn lb_bench_sink(_ctx: XdpContext) -> u32 {
    if let Some(c) = BENCH_COUNT.get_ptr_mut(COUNT_SINK) {
        unsafe { *c += 1 };
    }
    xdp_action::XDP_DROP
}

#[inline(always)]
fn restore(ctx: &XdpContext) -> Option<()> {
    let tpl = BENCH_TEMPLATE.get_ptr(0)?;
    let len = unsafe { (*tpl).len } as usize;
    if len > MAX_FRAME {
        return None;
    }
    // The previous run may have grown the head (encapsulation); with repeat
    // > 1 the kernel hands us that same buffer, so cut it back to the
    // template's length. Growth is at the head only, so this also puts
    // `data` back where the original frame started.
    let cur = frame_len(ctx);
    if cur > len {
        adjust_head(ctx, (cur - len) as i32)?;
    } else if cur < len {
        return None;
    }
    // Constant bound so the loop unrolls; the length check ends it early.
    for i in 0..FRAME_WORDS {
        if i * 8 >= len {
            break;
        }
        let p = ptr_at::<u64>(ctx, i * 8)?;
        unsafe { p.write_unaligned((*tpl).words[i]) };
    }
    let nflows = unsafe { (*tpl).nflows };
    if nflows == 0 {
        return Some(());
    }
    let count = BENCH_COUNT.get_ptr_mut(COUNT_HARNESS)?;
    let k = unsafe { *count };
    unsafe { *count = k + 1 };
    let flow = (k % nflows as u64) as u32;
    let (addr_off, port_off, csum_off, addr, port) = unsafe {
        (
            (*tpl).addr_off as usize,
            (*tpl).port_off as usize,
            (*tpl).csum_off as usize,
            (*tpl).addr_base + flow / FLOWS_PER_ADDR,
            (*tpl).port_base + flow % FLOWS_PER_ADDR,
        )
    };
    // Masked so the verifier sees a bounded variable packet offset.
    let a = ptr_at::<u16>(ctx, addr_off & (MAX_FRAME - 1))?;
    let new = (addr as u16).to_be();
    let old = unsafe { a.read_unaligned() };
    unsafe { a.write_unaligned(new) };
    if csum_off != 0 {
        // RFC 1624: the IPv4 header checksum follows the changed word.
        let c = ptr_at::<u16>(ctx, csum_off & (MAX_FRAME - 1))?;
        unsafe { c.write_unaligned(csum::replace16(c.read_unaligned(), old, new)) };
    }
    let p = ptr_at::<u16>(ctx, port_off & (MAX_FRAME - 1))?;
    unsafe { p.write_unaligned((port as u16).to_be()) };
    Some(())
}
