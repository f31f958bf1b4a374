//! `lb_xdp`: the balancer. A frame is parsed (`parse`), its VIP and backend
//! chosen (`flow`), and it is encapsulated towards the backend (`encap`) and
//! sent back out with XDP_TX; ICMP the balancer owes the client is in `icmp`,
//! counters in `stats`, maps in `maps`.
#![no_std]
#![no_main]

mod encap;
mod flow;
mod icmp;
mod maps;
mod parse;
mod stats;
mod variant;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{FAMILY_V4, LbConfig, Stat};

use crate::{
    parse::{Packet, Parsed},
    variant::{Full, STOPPED, Stage, Variant, stop},
};

#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    balance::<Full>(&ctx)
}

#[inline(always)]
fn drop<B: Variant>(reason: Stat) -> u32 {
    stats::inc::<B>(reason);
    xdp_action::XDP_DROP
}

#[inline(always)]
fn pass<B: Variant>() -> u32 {
    stats::inc::<B>(Stat::Pass);
    xdp_action::XDP_PASS
}

/// The whole packet path. `B` is [`Full`] in production; the bench builds
/// cut-down copies (see `variant`).
#[inline(always)]
fn balance<B: Variant>(ctx: &XdpContext) -> u32 {
    if stop::<B>(Stage::Entry, 0) {
        return STOPPED;
    }
    stats::inc::<B>(Stat::Rx);
    let Some(cfg) = maps::LB_CONFIG.get(0) else {
        return pass::<B>();
    };
    // One copy per packet on purpose: an array-map update is a plain memcpy,
    // so reading fields through the pointer at different times could mix two
    // settings blocks; the copy also made smaller code than the reference
    // did (2,362 vs 2,511 translated instructions, measured).
    let cfg = *cfg;
    if stop::<B>(Stage::Config, cfg.mtu as u64) {
        return STOPPED;
    }
    match parse::parse::<B>(ctx) {
        Parsed::Pass => pass::<B>(),
        Parsed::Drop(reason) => drop::<B>(reason),
        Parsed::Stopped => STOPPED,
        Parsed::EchoV4 { l3_off } => replied::<B>(icmp::echo_reply_v4(ctx, l3_off, &cfg)),
        Parsed::EchoV6 { l3_off } => replied::<B>(icmp::echo_reply_v6(ctx, l3_off, &cfg)),
        Parsed::Flow(pkt) => forward::<B>(ctx, &pkt, &cfg),
    }
}

#[inline(always)]
fn replied<B: Variant>(r: Option<()>) -> u32 {
    match r {
        Some(()) => {
            stats::inc::<B>(Stat::IcmpEchoReply);
            xdp_action::XDP_TX
        }
        None => drop::<B>(Stat::DropMalformed),
    }
}

#[inline(always)]
fn forward<B: Variant>(ctx: &XdpContext, pkt: &Packet, cfg: &LbConfig) -> u32 {
    let Some(vip) = flow::vip_of(pkt) else {
        // A VIP address, but no service on this port/protocol.
        return pass::<B>();
    };
    if stop::<B>(Stage::Vip, vip.index as u64) {
        return STOPPED;
    }
    let chosen = match flow::choose::<B>(pkt, &vip, cfg.hash_seed) {
        flow::Choice::Backend(c) => c,
        flow::Choice::Stopped => return STOPPED,
        flow::Choice::NoBackend => return drop::<B>(Stat::DropNoBackend),
    };
    let overhead = encap::overhead(&chosen.backend);
    if pkt.l3_len + overhead > cfg.mtu {
        let mtu = cfg.mtu.saturating_sub(overhead);
        if (pkt.family != FAMILY_V4 || pkt.df) && !icmp::too_big_allowed(cfg.icmp_too_big_rate) {
            return drop::<B>(Stat::IcmpRateLimited);
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
        return match sent {
            Some(()) => {
                stats::inc::<B>(Stat::IcmpTooBigSent);
                xdp_action::XDP_TX
            }
            None => drop::<B>(Stat::DropTooBig),
        };
    }
    match encap::encapsulate(ctx, pkt, &chosen.backend, cfg) {
        Some(()) => {
            stats::forwarded::<B>(vip.index, chosen.slot, pkt.l3_len);
            xdp_action::XDP_TX
        }
        None => drop::<B>(Stat::DropEncapFailed),
    }
}
