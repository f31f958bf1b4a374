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

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{FAMILY_V4, LbConfig, Stat};

use crate::parse::{Packet, Parsed};

#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    stats::inc(Stat::Rx);
    balance(&ctx)
}

#[inline(always)]
fn drop(reason: Stat) -> u32 {
    stats::inc(reason);
    xdp_action::XDP_DROP
}

#[inline(always)]
fn pass() -> u32 {
    stats::inc(Stat::Pass);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn balance(ctx: &XdpContext) -> u32 {
    let Some(cfg) = maps::LB_CONFIG.get(0) else {
        return pass();
    };
    // One copy per packet on purpose: an array-map update is a plain memcpy,
    // so reading fields through the pointer at different times could mix two
    // settings blocks; the copy also made smaller code than the reference
    // did (2,362 vs 2,511 translated instructions, measured).
    let cfg = *cfg;
    match parse::parse(ctx) {
        Parsed::Pass => pass(),
        Parsed::Drop(reason) => drop(reason),
        Parsed::EchoV4 { l3_off } => replied(icmp::echo_reply_v4(ctx, l3_off, &cfg)),
        Parsed::EchoV6 { l3_off } => replied(icmp::echo_reply_v6(ctx, l3_off, &cfg)),
        Parsed::Flow(pkt) => forward(ctx, &pkt, &cfg),
    }
}

#[inline(always)]
fn replied(r: Option<()>) -> u32 {
    match r {
        Some(()) => {
            stats::inc(Stat::IcmpEchoReply);
            xdp_action::XDP_TX
        }
        None => drop(Stat::DropMalformed),
    }
}

#[inline(always)]
fn forward(ctx: &XdpContext, pkt: &Packet, cfg: &LbConfig) -> u32 {
    let Some(vip) = flow::vip_of(pkt) else {
        // A VIP address, but no service on this port/protocol.
        return pass();
    };
    let Some(chosen) = flow::choose(pkt, &vip, cfg.hash_seed) else {
        return drop(Stat::DropNoBackend);
    };
    let overhead = encap::overhead(&chosen.backend);
    if pkt.l3_len + overhead > cfg.mtu {
        let mtu = cfg.mtu.saturating_sub(overhead);
        if (pkt.family != FAMILY_V4 || pkt.df) && !icmp::too_big_allowed(cfg.icmp_too_big_rate) {
            return drop(Stat::IcmpRateLimited);
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
                stats::inc(Stat::IcmpTooBigSent);
                xdp_action::XDP_TX
            }
            None => drop(Stat::DropTooBig),
        };
    }
    match encap::encapsulate(ctx, pkt, &chosen.backend, cfg) {
        Some(()) => {
            stats::forwarded(vip.index, chosen.slot, pkt.l3_len);
            xdp_action::XDP_TX
        }
        None => drop(Stat::DropEncapFailed),
    }
}
