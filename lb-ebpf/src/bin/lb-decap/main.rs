//! `lb_decap`: the backend side. Strips the outer IPv4/IPv6 header of IP-in-IP
//! frames addressed to this host (all four inner/outer combinations `lb_xdp`
//! emits) and passes the inner packet to the stack, for hosts without ipip or
//! ip6tnl devices. Everything else passes untouched.
//!
//! `lb_pass` is a bare XDP_PASS program: a veth peer needs an XDP program of
//! its own to receive frames sent with XDP_TX (on kernel 6.18 veth, frames
//! queued for a peer without one are counted as `xdp_tx_errors` and lost).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{HashMap, PerCpuArray},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use lb_common::{
    AddrKey, DECAP_STAT_COUNT, DecapStat, FAMILY_V4, FAMILY_V6, PROTO_IPIP, PROTO_IPV6,
};
use lb_ebpf::{
    eth,
    hdr::{ETH_P_IP, ETH_P_IPV6, IP_MF_OFFSET, Ipv4Hdr, Ipv6Hdr},
    ptr::{adjust_head, frame_len, ptr_at},
};

/// Local addresses to decapsulate for; the daemon fills it with the host's
/// addresses (or the ones configured).
#[btf_map]
static LB_DECAP_ADDRS: HashMap<AddrKey, u32, 256> = HashMap::new();

#[btf_map]
static LB_DECAP_STATS: PerCpuArray<u64, { DECAP_STAT_COUNT as usize }> = PerCpuArray::new();

#[inline(always)]
fn count(s: DecapStat) {
    if let Some(p) = LB_DECAP_STATS.get_ptr_mut(s as u32) {
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn is_local(addr: [u32; 4], family: u8) -> bool {
    LB_DECAP_ADDRS.get_ptr(AddrKey::new(addr, family)).is_some()
}

#[xdp]
pub fn lb_decap(ctx: XdpContext) -> u32 {
    match decap(&ctx) {
        Verdict::Pass => {
            count(DecapStat::Pass);
            xdp_action::XDP_PASS
        }
        Verdict::Decapped(s) => {
            count(s);
            xdp_action::XDP_PASS
        }
        Verdict::Drop => {
            count(DecapStat::Drop);
            xdp_action::XDP_DROP
        }
    }
}

#[xdp]
pub fn lb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

enum Verdict {
    Pass,
    Decapped(DecapStat),
    Drop,
}

#[inline(always)]
fn decap(ctx: &XdpContext) -> Verdict {
    let Some(l2) = eth::parse(ctx) else {
        return Verdict::Pass;
    };
    let l3 = l2.l3_off;
    // (outer header length, inner protocol) of an IP-in-IP frame for us.
    let (outer, inner, v4_outer) = match l2.proto {
        ETH_P_IP => {
            let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, l3) else {
                return Verdict::Pass;
            };
            let ip = unsafe { *ip };
            if (ip.protocol != PROTO_IPIP && ip.protocol != PROTO_IPV6)
                || !is_local([ip.daddr, 0, 0, 0], FAMILY_V4)
            {
                return Verdict::Pass;
            }
            // An outer header with options or a fragment cannot be stripped
            // as a fixed 20 bytes, and there is no ipip device to reassemble.
            if ip.version_ihl != 0x45 || u16::from_be(ip.frag_off) & IP_MF_OFFSET != 0 {
                return Verdict::Drop;
            }
            (20usize, ip.protocol, true)
        }
        ETH_P_IPV6 => {
            let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, l3) else {
                return Verdict::Pass;
            };
            let ip = unsafe { *ip };
            if (ip.nexthdr != PROTO_IPIP && ip.nexthdr != PROTO_IPV6)
                || !is_local(ip.daddr, FAMILY_V6)
            {
                return Verdict::Pass;
            }
            (40usize, ip.nexthdr, false)
        }
        _ => return Verdict::Pass,
    };
    let (inner_len, ethertype) = if inner == PROTO_IPIP {
        (20usize, ETH_P_IP)
    } else {
        (40usize, ETH_P_IPV6)
    };
    if frame_len(ctx) < l3 + outer + inner_len {
        return Verdict::Drop;
    }
    // Move the L2 header forward over the outer header, then cut the head.
    let Some((dst, src, tci)) = eth::read(ctx, 0, l3) else {
        return Verdict::Drop;
    };
    if adjust_head(ctx, outer as i32).is_none() {
        return Verdict::Drop;
    }
    if eth::write(ctx, l3, &dst, &src, tci, ethertype).is_none() {
        return Verdict::Drop;
    }
    Verdict::Decapped(match (v4_outer, inner == PROTO_IPIP) {
        (true, true) => DecapStat::V4InV4,
        (true, false) => DecapStat::V6InV4,
        (false, true) => DecapStat::V4InV6,
        (false, false) => DecapStat::V6InV6,
    })
}
