//! Encapsulation towards the chosen backend (all four combinations: the
//! outer family follows the backend, the inner stays what the client sent),
//! as IP-in-IP or as GUE.
//!
//! IP-in-IP puts the client's packet right behind an outer IP header
//! (protocol 4 for IPv4 inside, 41 for IPv6). GUE (Generic UDP
//! Encapsulation, "variant 1", as Katran and GLB emit it) puts a UDP header
//! in between: outer IP (protocol 17), UDP to the configured port, then the
//! inner packet, whose first nibble (4 or 6) tells the receiver its family.
//! It crosses networks that filter IP-in-IP, and NICs that spread only
//! TCP/UDP over their queues hash it by the UDP source port, which we derive
//! per flow ([`lb_common::gue_src_port`]).
//!
//! The outer UDP checksum is zero. Over IPv4 that means "no checksum" (RFC
//! 768). Over IPv6 a zero UDP checksum is normally invalid; RFC 6935 allows
//! it for tunnel encapsulations under the conditions of RFC 6936, which hold
//! here: the inner packet carries its own checksums (IPv4 header, TCP, UDP,
//! ICMP), the receiver is a decapsulator configured for this port
//! (`lb_decap` accepts zero and does not verify a non-zero one, the inner
//! checksums are what the backend's stack checks), and a corrupted outer
//! address can at worst deliver a packet to another decapsulator, whose
//! stack then checks the inner checksums. A real checksum would have to sum
//! the whole packet for every packet (or trust the inner checksum's sum),
//! which the hot path cannot afford.

use aya_ebpf::programs::XdpContext;
use lb_common::{
    ENCAP_GUE_OVERHEAD, ENCAP_V4_OVERHEAD, ENCAP_V6_OVERHEAD, FAMILY_V4, LbConfig, PROTO_IPIP,
    PROTO_IPV6, PROTO_UDP, encap_src_suffix, gue_src_port,
};
use lb_ebpf::{
    csum, eth,
    hdr::{ETH_P_IP, ETH_P_IPV6, IPV4_HDR_LEN, IPV6_HDR_LEN, Ipv4Hdr, Ipv6Hdr, UdpHdr},
    ptr::{adjust_head, adjust_tail, frame_len, ptr_at},
};

use crate::{flow::Chosen, parse::Packet};

const OUTER_TTL: u8 = 64;

/// Outer header length for a backend of `family`: the outer IP header, plus
/// the UDP header when `gue_port` (the raw [`LbConfig::gue_port`]) is set.
#[inline(always)]
pub fn overhead(family: u8, gue_port: u16) -> u32 {
    let ip = if family == FAMILY_V4 {
        ENCAP_V4_OVERHEAD
    } else {
        ENCAP_V6_OVERHEAD
    };
    if gue_port != 0 {
        ip + ENCAP_GUE_OVERHEAD
    } else {
        ip
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

/// The outer headers of one packet, ready to be built. `lb_xdp` (below) and
/// the TC program `lb_probe` (`probe.rs`, which wraps `via-vip` health
/// probes) both make their outer headers with this, so a probe reaches its
/// backend exactly as a client's packet of the same flow would; each writes
/// them with its own bounds-checked pointers. Everything here only computes
/// (it is inlined into each program and touches no packet).
pub struct Outer {
    /// The outer IP header's protocol: UDP for GUE, else the inner family's
    /// IP-in-IP protocol (4 or 41).
    next_proto: u8,
    /// The inner DSCP/ECN byte, copied to the outer header so the network
    /// keeps the client's traffic class.
    tos: u8,
    /// Length of the inner IP packet.
    l3_len: u32,
    /// Bytes the outer headers add ([`overhead`]).
    grow: u32,
    /// The flow's bits ([`encap_src_suffix`]): the GUE source port.
    flow_bits: u32,
    /// The same bits in network order: the outer source's varying part.
    suffix: u32,
    /// The raw [`LbConfig::gue_port`] (0: IP-in-IP).
    gue_port: u16,
}

impl Outer {
    /// The outer headers for an inner packet of `inner_family` (its
    /// DSCP/ECN byte `tos`, IP length `l3_len`, flow bits `flow_bits`),
    /// growing the frame by `grow`, as IP-in-IP or, when `gue_port` is set,
    /// GUE.
    #[inline(always)]
    pub fn new(
        inner_family: u8,
        tos: u8,
        l3_len: u32,
        grow: u32,
        flow_bits: u32,
        gue_port: u16,
    ) -> Outer {
        let next_proto = if gue_port != 0 {
            PROTO_UDP
        } else if inner_family == FAMILY_V4 {
            PROTO_IPIP
        } else {
            PROTO_IPV6
        };
        Outer {
            next_proto,
            tos,
            l3_len,
            grow,
            flow_bits,
            suffix: flow_bits.to_be(),
            gue_port,
        }
    }

    /// The outer IPv4 header to `daddr` (raw), checksum included. Its
    /// source is the configured prefix with the flow's bits in the host
    /// part (RSS-friendly at the backend), or the fixed address when the
    /// mask is all ones.
    #[inline(always)]
    pub fn ipv4(&self, cfg: &LbConfig, daddr: u32) -> Ipv4Hdr {
        let mut h = Ipv4Hdr {
            version_ihl: 0x45,
            tos: self.tos,
            tot_len: ((self.l3_len + self.grow) as u16).to_be(),
            id: 0,
            frag_off: 0,
            ttl: OUTER_TTL,
            protocol: self.next_proto,
            check: 0,
            saddr: (cfg.v4_src & cfg.v4_src_mask) | (self.suffix & !cfg.v4_src_mask),
            daddr,
        };
        // SAFETY: `Ipv4Hdr` is 20 bytes of plain data, ten 16-bit words.
        h.check = csum::ipv4_header(unsafe { &*(&h as *const Ipv4Hdr as *const [u16; 10]) });
        h
    }

    /// The outer IPv6 header to `daddr` (map layout); the source is made
    /// as for IPv4, in the last word of the configured prefix.
    #[inline(always)]
    pub fn ipv6(&self, cfg: &LbConfig, daddr: [u32; 4]) -> Ipv6Hdr {
        let w3 = (cfg.v6_src[3] & cfg.v6_src_mask) | (self.suffix & !cfg.v6_src_mask);
        Ipv6Hdr {
            vtc_flow: [0x60 | (self.tos >> 4), self.tos << 4, 0, 0],
            payload_len: ((self.l3_len + self.grow - ENCAP_V6_OVERHEAD) as u16).to_be(),
            nexthdr: self.next_proto,
            hop_limit: OUTER_TTL,
            saddr: [cfg.v6_src[0], cfg.v6_src[1], cfg.v6_src[2], w3],
            daddr,
        }
    }

    /// The GUE UDP header (only when `gue_port` is set).
    #[inline(always)]
    pub fn gue(&self) -> UdpHdr {
        UdpHdr {
            source: gue_src_port(self.flow_bits).to_be(),
            dest: self.gue_port,
            len: ((self.l3_len + ENCAP_GUE_OVERHEAD) as u16).to_be(),
            // Zero: see the module documentation (RFC 768, 6935, 6936).
            check: 0,
        }
    }
}

/// Prepends the outer header(s): IP-in-IP, or GUE when `gue_port` (the raw
/// [`LbConfig::gue_port`], read once by the caller, which sized the MTU
/// check with it) is set. The caller has checked the size budget.
#[inline(always)]
pub fn encapsulate(
    ctx: &XdpContext,
    pkt: &Packet,
    backend: &Chosen,
    cfg: &LbConfig,
    gue_port: u16,
) -> Option<()> {
    let l3 = pkt.l3_off;
    let v4_outer = backend.family == FAMILY_V4;
    let grow = overhead(backend.family, gue_port);
    trim_to_ip(ctx, pkt)?;
    adjust_head(ctx, -(grow as i32))?;
    // The received L2 header now starts at `grow`; the new one goes at 0.
    let (rx_dst, _, tci) = eth::read(ctx, grow as usize, l3)?;
    let ethertype = if v4_outer { ETH_P_IP } else { ETH_P_IPV6 };
    eth::write(
        ctx,
        l3,
        &cfg.gateway_mac,
        &our_mac(cfg, rx_dst),
        tci,
        ethertype,
    )?;

    let outer = Outer::new(
        pkt.family,
        pkt.tos,
        pkt.l3_len,
        grow,
        encap_src_suffix(&pkt.src, pkt.sport),
        gue_port,
    );
    if v4_outer {
        let h = outer.ipv4(cfg, backend.addr[0]);
        let p = ptr_at::<Ipv4Hdr>(ctx, l3)?;
        // SAFETY: `ptr_at` checked the 20 bytes.
        unsafe { *p = h };
    } else {
        let h = outer.ipv6(cfg, backend.addr);
        let p = ptr_at::<Ipv6Hdr>(ctx, l3)?;
        // SAFETY: `ptr_at` checked the 40 bytes.
        unsafe { *p = h };
    }
    if gue_port != 0 {
        let off = l3 + if v4_outer { IPV4_HDR_LEN } else { IPV6_HDR_LEN };
        let u = ptr_at::<UdpHdr>(ctx, off)?;
        // SAFETY: `ptr_at` checked the 8 bytes.
        unsafe { *u = outer.gue() };
    }
    Some(())
}
