//! `lb_xdp`: the balancer. A frame is parsed (`parse`), its backend chosen
//! (`flow`), and it is encapsulated towards the backend (`encap`) and sent
//! back out with XDP_TX; ICMP the balancer owes the client is in `icmp`,
//! ICMP errors that belong to a backend in `icmp_error`, counters in
//! `stats`, maps in `maps`, per-CPU rate limits in `rate`, the bench's
//! cut-down builds of this path in `variant`, packet capture in `capture`.
#![no_std]
#![no_main]

mod capture;
mod encap;
mod flow;
mod icmp;
mod icmp_error;
mod maps;
mod parse;
mod probe;
mod rate;
mod stats;
mod variant;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{FAMILY_V4, LbConfig, Stat};

use crate::{
    flow::Choice,
    parse::{Packet, Parsed},
    stats::Tally,
    variant::{Full, STOPPED, Stage, Variant, stop},
};

#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    #[cfg(feature = "upgrade-test")]
    upgrade_test_mark();
    // The one question every packet asks of the capture: one array read,
    // answered once and kept across the packet path for `after`.
    // One call site of the (inlined) packet path: two would double the
    // program the verifier walks. A plain `bool` kept across the path is
    // known per branch, so LLVM threads the branch through the path and
    // makes two copies of it (twice the program, and a deeper stack); kept
    // in a stack slot written and read back with volatile accesses, its
    // value is opaque at the second test and the path stays one copy.
    let capturing: u64 = match capture::active() {
        Some(f) => {
            capture::before(&ctx, f);
            1
        }
        None => 0,
    };
    let mut slot = 0u64;
    // SAFETY: a write and a read of a local.
    unsafe { core::ptr::write_volatile(&mut slot, capturing) };
    let action = balance::<Full>(&ctx);
    if unsafe { core::ptr::read_volatile(&slot) } != 0 {
        capture::after(&ctx, action);
    }
    action
}

/// Only in the `upgrade-test` build: a volatile load of a global, which the
/// verifier sees as one more instruction pair (the kernel's tag of the
/// program changes) and which changes nothing a packet sees.
#[cfg(feature = "upgrade-test")]
#[inline(always)]
fn upgrade_test_mark() {
    static UPGRADE_TEST_MARK: u32 = 1;
    // SAFETY: a read of our own static; volatile so it is not folded away.
    unsafe { core::ptr::read_volatile(&UPGRADE_TEST_MARK) };
}

#[inline(always)]
fn drop<B: Variant>(t: &Tally<B>, reason: Stat) -> u32 {
    t.inc(reason);
    xdp_action::XDP_DROP
}

#[inline(always)]
fn pass<B: Variant>(t: &Tally<B>) -> u32 {
    t.inc(Stat::Pass);
    xdp_action::XDP_PASS
}

/// The whole packet path. `B` is [`Full`] in production; the bench builds
/// cut-down copies (see `variant`).
#[inline(always)]
fn balance<B: Variant>(ctx: &XdpContext) -> u32 {
    if stop::<B>(Stage::Entry, 0) {
        return STOPPED;
    }
    let t = Tally::<B>::get();
    t.inc(Stat::Rx);
    // The settings are read field by field where they are used, not copied
    // (64 bytes of loads and stores, and registers spilled to hold them). An
    // array-map update is a plain copy, so a packet racing a settings change
    // may see some fields old and some new; each field is still whole, and
    // any mix is a valid configuration for one packet.
    let Some(cfg) = maps::LB_CONFIG.get(0) else {
        return pass(&t);
    };
    if stop::<B>(Stage::Config, cfg.mtu as u64) {
        return STOPPED;
    }
    match parse::parse::<B>(ctx) {
        Parsed::Pass => pass(&t),
        Parsed::Drop(reason) => drop(&t, reason),
        Parsed::Stopped => STOPPED,
        Parsed::EchoV4 { l3_off, l3_len } => {
            replied(&t, icmp::echo_reply_v4(ctx, l3_off, l3_len, cfg))
        }
        Parsed::EchoV6 { l3_off, l3_len } => {
            replied(&t, icmp::echo_reply_v6(ctx, l3_off, l3_len, cfg))
        }
        Parsed::IcmpError { l3_off, family } => {
            icmp_error_verdict(&t, icmp_error::forward(ctx, l3_off, family, cfg))
        }
        // Two calls of one inlined function: each family gets its own copy,
        // in which the compiler knows the address width (the three zero
        // words of an IPv4 address fold away in the key and the hash).
        Parsed::FlowV4(pkt) => forward(ctx, &pkt, cfg, &t),
        Parsed::FlowV6(pkt) => forward(ctx, &pkt, cfg, &t),
    }
}

#[inline(always)]
fn replied<B: Variant>(t: &Tally<B>, r: Option<()>) -> u32 {
    match r {
        Some(()) => {
            t.inc(Stat::IcmpEchoReply);
            xdp_action::XDP_TX
        }
        None => drop(t, Stat::DropMalformed),
    }
}

/// Counts and acts on what `icmp_error::forward` made of an ICMP error. Each
/// arm names its counter as a constant: `Tally::inc` relies on that for its
/// index check to fold away (a run-time index would leave a panic path the
/// verifier rejects).
#[inline(always)]
fn icmp_error_verdict<B: Variant>(t: &Tally<B>, s: Stat) -> u32 {
    match s {
        Stat::IcmpErrorForwarded => {
            t.inc(Stat::IcmpErrorForwarded);
            xdp_action::XDP_TX
        }
        Stat::Pass => pass(t),
        Stat::DropIcmpQuoteTruncated => drop(t, Stat::DropIcmpQuoteTruncated),
        Stat::DropIcmpQuoteMalformed => drop(t, Stat::DropIcmpQuoteMalformed),
        Stat::DropNoBackend => drop(t, Stat::DropNoBackend),
        Stat::DropTooBig => drop(t, Stat::DropTooBig),
        Stat::DropEncapFailed => drop(t, Stat::DropEncapFailed),
        _ => drop(t, Stat::DropMalformed),
    }
}

#[inline(always)]
fn forward<B: Variant>(ctx: &XdpContext, pkt: &Packet, cfg: &LbConfig, t: &Tally<B>) -> u32 {
    let chosen = match flow::choose::<B>(pkt, cfg, t) {
        Choice::Backend(c) => c,
        // A VIP address, but no service on this port/protocol.
        Choice::NotServed => return pass(t),
        Choice::NoBackend => return drop(t, Stat::DropNoBackend),
        Choice::Stopped => return STOPPED,
    };
    // One load decides the encapsulation for the MTU check, the MTU we
    // advertise if it fails, and the header we write.
    let gue_port = cfg.gue_port;
    let overhead = encap::overhead(chosen.family, gue_port);
    if pkt.l3_len + overhead > cfg.mtu {
        return too_big(ctx, pkt, cfg, t, cfg.mtu.saturating_sub(overhead));
    }
    match encap::encapsulate(ctx, pkt, &chosen, cfg, gue_port) {
        Some(()) => {
            t.forwarded(chosen.vip, chosen.slot, pkt.l3_len);
            xdp_action::XDP_TX
        }
        None => drop(t, Stat::DropEncapFailed),
    }
}

/// The packet would not fit the path to the backend once encapsulated.
#[inline(never)]
fn too_big<B: Variant>(
    ctx: &XdpContext,
    pkt: &Packet,
    cfg: &LbConfig,
    t: &Tally<B>,
    mtu: u32,
) -> u32 {
    if (pkt.family != FAMILY_V4 || pkt.df) && !icmp::too_big_allowed(cfg.icmp_too_big_rate) {
        return drop(t, Stat::IcmpRateLimited);
    }
    let sent = if pkt.family == FAMILY_V4 {
        if pkt.df {
            icmp::frag_needed_v4(ctx, pkt.l3_off, mtu as u16, cfg)
        } else {
            // Without DF the client expects routers to fragment, which
            // XDP cannot do: count it so operators see the MTU mismatch.
            None
        }
    } else {
        icmp::too_big_v6(ctx, pkt.l3_off, mtu, cfg)
    };
    match sent {
        Some(()) => {
            t.inc(Stat::IcmpTooBigSent);
            xdp_action::XDP_TX
        }
        None => drop(t, Stat::DropTooBig),
    }
}
