//! IP-in-IP encapsulation towards the chosen backend (all four combinations:
//! the outer family follows the backend, the inner stays what the client sent).

use aya_ebpf::programs::XdpContext;
use lb_common::{
    ENCAP_V4_OVERHEAD, ENCAP_V6_OVERHEAD, FAMILY_V4, LbConfig, PROTO_IPIP, PROTO_IPV6,
    encap_src_suffix,
};
use lb_ebpf::{
    csum, eth,
    hdr::{ETH_P_IP, ETH_P_IPV6, Ipv4Hdr, Ipv6Hdr},
    ptr::{adjust_head, adjust_tail, frame_len, ptr_at},
};

use crate::{flow::Chosen, parse::Packet};

const OUTER_TTL: u8 = 64;

/// Outer header length for a backend of `family`.
#[inline(always)]
pub fn overhead(family: u8) -> u32 {
    if family == FAMILY_V4 {
        ENCAP_V4_OVERHEAD
    } else {
        ENCAP_V6_OVERHEAD
    }
}

/// Source MAC for frames we transmit.
#[inline(always)]
pub fn our_mac(cfg: &LbConfig, received_dst: [u8; 6]) -> [u8; 6] {
    if cfg.if_mac == [0; 6] {
        received_dst
    } else {
        cfg.if_mac
    }
}

/// Cuts whatever follows the IP packet off the frame: Ethernet padding of a
/// minimum-size frame (a 40-byte TCP ACK travels in 60 bytes), a kept FCS,
/// trailing garbage. Encapsulated, those bytes would ride behind an outer
/// header whose length does not count them, and past the MTU the caller
/// checked with the IP length. Free for unpadded frames (one compare).
#[inline(always)]
pub fn trim_to_ip(ctx: &XdpContext, pkt: &Packet) -> Option<()> {
    trim_to(ctx, pkt.l3_off + pkt.l3_len as usize)
}

/// Cuts the frame to its first `end` bytes if it is longer (all packet
/// pointers are invalid afterwards when it was).
#[inline(always)]
pub fn trim_to(ctx: &XdpContext, end: usize) -> Option<()> {
    let len = frame_len(ctx);
    if len > end {
        adjust_tail(ctx, end as i32 - len as i32)?;
    }
    Some(())
}

/// Prepends the outer header. The caller has checked the size budget.
#[inline(always)]
pub fn encapsulate(ctx: &XdpContext, pkt: &Packet, backend: &Chosen, cfg: &LbConfig) -> Option<()> {
    let l3 = pkt.l3_off;
    let v4_outer = backend.family == FAMILY_V4;
    let grow = overhead(backend.family) as usize;
    trim_to_ip(ctx, pkt)?;
    adjust_head(ctx, -(grow as i32))?;
    // The received L2 header now starts at `grow`; the new one goes at 0.
    let (rx_dst, _, tci) = eth::read(ctx, grow, l3)?;
    let ethertype = if v4_outer { ETH_P_IP } else { ETH_P_IPV6 };
    eth::write(
        ctx,
        l3,
        &cfg.gateway_mac,
        &our_mac(cfg, rx_dst),
        tci,
        ethertype,
    )?;

    let inner_proto = if pkt.family == FAMILY_V4 {
        PROTO_IPIP
    } else {
        PROTO_IPV6
    };
    // Crafted per-flow source (RSS-friendly at the backend) unless the mask
    // is all ones, which makes it the fixed address.
    let suffix = encap_src_suffix(&pkt.src, pkt.sport).to_be();
    if v4_outer {
        let mut h = Ipv4Hdr {
            version_ihl: 0x45,
            tos: pkt.tos,
            tot_len: ((pkt.l3_len + ENCAP_V4_OVERHEAD) as u16).to_be(),
            id: 0,
            frag_off: 0,
            ttl: OUTER_TTL,
            protocol: inner_proto,
            check: 0,
            saddr: (cfg.v4_src & cfg.v4_src_mask) | (suffix & !cfg.v4_src_mask),
            daddr: backend.addr[0],
        };
        h.check = csum::ipv4_header(unsafe { &*(&h as *const Ipv4Hdr as *const [u16; 10]) });
        let p = ptr_at::<Ipv4Hdr>(ctx, l3)?;
        unsafe { *p = h };
    } else {
        let w3 = (cfg.v6_src[3] & cfg.v6_src_mask) | (suffix & !cfg.v6_src_mask);
        let h = Ipv6Hdr {
            vtc_flow: [0x60 | (pkt.tos >> 4), pkt.tos << 4, 0, 0],
            payload_len: (pkt.l3_len as u16).to_be(),
            nexthdr: inner_proto,
            hop_limit: OUTER_TTL,
            saddr: [cfg.v6_src[0], cfg.v6_src[1], cfg.v6_src[2], w3],
            daddr: backend.addr,
        };
        let p = ptr_at::<Ipv6Hdr>(ctx, l3)?;
        unsafe { *p = h };
    }
    Some(())
}
