//! `lb_decap`: the backend side. Strips the outer IPv4/IPv6 header of IP-in-IP
//! frames addressed to this host (all four inner/outer combinations `lb_xdp`
//! emits), and the outer IP and UDP headers of GUE frames addressed to this
//! host and the GUE port, and passes the inner packet to the stack, for hosts
//! without ipip, ip6tnl or fou devices. Everything else passes untouched.
//!
//! GUE here is "variant 1", what `lb_xdp` emits: the UDP payload is the inner
//! IP packet itself, its first nibble (4 or 6) is its family. The outer UDP
//! checksum is not verified, zero or not (`lb_xdp` sends zero, RFC 6935 for
//! IPv6; see its `encap` module): the inner packet's own checksums are
//! checked by the stack it is passed to.
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
    AddrKey, DECAP_STAT_COUNT, DecapStat, FAMILY_V4, FAMILY_V6, PROTO_IPIP, PROTO_IPV6, PROTO_UDP,
};
use lb_ebpf::{
    eth,
    hdr::{
        ETH_P_IP, ETH_P_IPV6, IP_MF_OFFSET, IPV4_HDR_LEN, IPV6_HDR_LEN, Ipv4Hdr, Ipv6Hdr, UdpHdr,
    },
    ptr::{adjust_head, frame_len, ptr_at},
};

/// Local addresses to decapsulate for; the daemon fills it with the host's
/// addresses (or the ones configured).
#[btf_map]
static LB_DECAP_ADDRS: HashMap<AddrKey, u32, 256> = HashMap::new();

/// GUE destination port, raw network order in the low 16 bits; 0 = GUE off.
/// A load-time constant (`EbpfLoader::override_global`, name
/// [`lb_common::GLOBAL_DECAP_GUE_PORT`]): read with `read_volatile`, since a
/// plain read of a `static` would be folded to the compiled-in 0.
#[unsafe(no_mangle)]
static LB_DECAP_GUE_PORT: u32 = 0;

#[inline(always)]
fn gue_port() -> u32 {
    unsafe { core::ptr::read_volatile(&LB_DECAP_GUE_PORT) }
}

/// Length of the UDP header GUE puts between the outer IP header and the
/// inner packet.
const UDP_HDR_LEN: usize = core::mem::size_of::<UdpHdr>();

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

/// What follows the outer IP header of a frame for us.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tunnel {
    /// IP-in-IP: the inner packet, of this protocol number (4 or 41).
    Ipip(u8),
    /// GUE: a UDP header, then the inner packet.
    Gue,
}

/// Is this UDP datagram (header at `udp_off`) for the GUE port? A datagram
/// too short for its header is the stack's to judge, not ours.
#[inline(always)]
fn is_gue(ctx: &XdpContext, udp_off: usize) -> bool {
    let port = gue_port();
    if port == 0 {
        return false;
    }
    match ptr_at::<UdpHdr>(ctx, udp_off) {
        // SAFETY: `ptr_at` checked the 8 bytes.
        Some(u) => u32::from(unsafe { (*u).dest }) == port,
        None => false,
    }
}

#[inline(always)]
fn decap(ctx: &XdpContext) -> Verdict {
    let Some(l2) = eth::parse(ctx) else {
        return Verdict::Pass;
    };
    let l3 = l2.l3_off;
    // (outer header length incl. the UDP header of GUE, tunnel, outer is IPv4)
    // of a tunnelled frame for us.
    let (outer, tunnel, v4_outer) = match l2.proto {
        ETH_P_IP => {
            let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, l3) else {
                return Verdict::Pass;
            };
            let ip = unsafe { *ip };
            let tunnel = match ip.protocol {
                PROTO_IPIP | PROTO_IPV6 => Tunnel::Ipip(ip.protocol),
                // UDP with options has its header elsewhere; `lb_xdp` never
                // sends options, so such a datagram is not ours to look at.
                PROTO_UDP if ip.version_ihl == 0x45 && is_gue(ctx, l3 + IPV4_HDR_LEN) => {
                    Tunnel::Gue
                }
                _ => return Verdict::Pass,
            };
            if !is_local([ip.daddr, 0, 0, 0], FAMILY_V4) {
                return Verdict::Pass;
            }
            // An outer header with options or a fragment cannot be stripped
            // as a fixed 20 bytes, and there is no ipip device to reassemble.
            if ip.version_ihl != 0x45 || u16::from_be(ip.frag_off) & IP_MF_OFFSET != 0 {
                return Verdict::Drop;
            }
            (IPV4_HDR_LEN, tunnel, true)
        }
        ETH_P_IPV6 => {
            let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, l3) else {
                return Verdict::Pass;
            };
            let ip = unsafe { *ip };
            let tunnel = match ip.nexthdr {
                PROTO_IPIP | PROTO_IPV6 => Tunnel::Ipip(ip.nexthdr),
                PROTO_UDP if is_gue(ctx, l3 + IPV6_HDR_LEN) => Tunnel::Gue,
                _ => return Verdict::Pass,
            };
            if !is_local(ip.daddr, FAMILY_V6) {
                return Verdict::Pass;
            }
            (IPV6_HDR_LEN, tunnel, false)
        }
        _ => return Verdict::Pass,
    };
    let (outer, inner) = match tunnel {
        Tunnel::Ipip(p) => (outer, p),
        Tunnel::Gue => {
            let outer = outer + UDP_HDR_LEN;
            // GUE variant 1 has no header of its own: the version nibble of
            // the inner packet says what it is. Anything else on the GUE
            // port (a cut-off datagram, GUE variant 0, garbage) cannot be
            // decapsulated and is no service's traffic: a counted drop.
            let Some(v) = ptr_at::<u8>(ctx, l3 + outer) else {
                return Verdict::Drop;
            };
            match unsafe { *v } >> 4 {
                4 => (outer, PROTO_IPIP),
                6 => (outer, PROTO_IPV6),
                _ => return Verdict::Drop,
            }
        }
    };
    let (inner_len, ethertype) = if inner == PROTO_IPIP {
        (IPV4_HDR_LEN, ETH_P_IP)
    } else {
        (IPV6_HDR_LEN, ETH_P_IPV6)
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
    Verdict::Decapped(
        match (tunnel == Tunnel::Gue, v4_outer, inner == PROTO_IPIP) {
            (false, true, true) => DecapStat::V4InV4,
            (false, true, false) => DecapStat::V6InV4,
            (false, false, true) => DecapStat::V4InV6,
            (false, false, false) => DecapStat::V6InV6,
            (true, true, true) => DecapStat::GueV4InV4,
            (true, true, false) => DecapStat::GueV6InV4,
            (true, false, true) => DecapStat::GueV4InV6,
            (true, false, false) => DecapStat::GueV6InV6,
        },
    )
}
