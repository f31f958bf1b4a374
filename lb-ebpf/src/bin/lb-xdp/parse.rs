//! Where a packet is parsed: from the frame to either a flow for a VIP, an
//! ICMP echo or ICMP error for a VIP address, "not ours" or a reasoned drop.
//!
//! Order matters: we first learn the destination address and ask the VIP
//! filter about it, so anything not for a VIP is passed untouched even if it
//! is odd (the kernel judges it), while a VIP packet we cannot handle exactly
//! (options, fragments, truncation) is a counted drop, never a guess.
//!
//! The filter answers "certainly not a VIP address" or "maybe" from one array
//! read. "Maybe" is settled by the exact maps only where the verdict depends
//! on it (malformed packets, ICMP); a TCP/UDP packet goes on to the
//! connection table and VIP lookups, which settle it anyway.
//!
//! Header fields are read one by one through the bounds-checked pointer
//! rather than by copying whole headers: a 20- or 40-byte copy to the stack
//! costs stores and loads the fields we never look at, and more live values
//! mean more register spills (BPF has only r6-r9 preserved across calls).

use aya_ebpf::programs::XdpContext;
use lb_common::{
    AddrKey, FAMILY_V4, FAMILY_V6, FILTER_VIP, FILTER_VIP_FIRST, PROTO_ICMP, PROTO_ICMPV6,
    PROTO_TCP, PROTO_UDP, Stat, VIP_FILTER_PER_WORD, vip_filter_bucket,
};
use lb_ebpf::{
    csum,
    eth::L2,
    hdr::{
        ETH_P_IP, ETH_P_IPV6, IP_DF, IP_MF_OFFSET, IPV4_HDR_LEN, IPV6_HDR_LEN, Ipv4Hdr, Ipv6Hdr,
        TCP_ACK, TCP_SYN, TcpHdr, UdpHdr,
    },
    ptr::{frame_len, ptr_at},
};

use crate::{
    maps::{LB_VIP_ADDRS, LB_VIP_FILTER},
    variant::{Stage, Variant, stop},
};

/// A TCP/UDP packet for a (possible) VIP address, with the facts forwarding
/// needs.
#[derive(Clone, Copy)]
pub struct Packet {
    /// Offset of the IP header in the frame.
    pub l3_off: usize,
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u8,
    /// Client address (map layout).
    pub src: [u32; 4],
    /// VIP address (map layout).
    pub dst: [u32; 4],
    /// Client port (raw).
    pub sport: u16,
    /// VIP port (raw).
    pub dport: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    /// DSCP/ECN byte, copied to the outer header.
    pub tos: u8,
    /// A TCP SYN without ACK: always takes the ring.
    pub syn: bool,
    /// IPv4 DF flag (IPv6 never fragments in flight, treated as set).
    pub df: bool,
    /// The filter asks for the VIP entry before the connection table
    /// (`FILTER_VIP_FIRST`: a VIP with flags may live on this address).
    pub vip_first: bool,
    /// IP packet length (header + payload).
    pub l3_len: u32,
}

/// What the parser decided.
pub enum Parsed {
    /// TCP or UDP over IPv4 for a possible VIP address.
    FlowV4(Packet),
    /// TCP or UDP over IPv6 for a possible VIP address.
    FlowV6(Packet),
    /// ICMP echo request (IPv4) for a VIP address; the IP header is at
    /// `l3_off`, the IP packet is `l3_len` bytes (the frame may carry more).
    EchoV4 { l3_off: usize, l3_len: usize },
    /// ICMPv6 echo request for a VIP address.
    EchoV6 { l3_off: usize, l3_len: usize },
    /// ICMP error (IPv4 "destination unreachable", ICMPv6 "destination
    /// unreachable" or "packet too big") for a VIP address: perhaps about a
    /// VIP flow, whose backend must hear of it (`icmp_error`).
    IcmpError { l3_off: usize, family: u8 },
    /// Not for a VIP: hand to the kernel untouched.
    Pass,
    /// For a VIP but unusable: drop and count this reason.
    Drop(Stat),
    /// A bench variant reached its checkpoint (never in production).
    Stopped,
}

const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PKT_TOOBIG: u8 = 2;
const NEXTHDR_FRAGMENT: u8 = 44;

/// The filter's two bits for `addr`: 0 (certainly not a VIP address) or
/// `FILTER_VIP`, possibly with `FILTER_VIP_FIRST`.
#[inline(always)]
fn filter(addr: &[u32; 4]) -> u64 {
    let bucket = vip_filter_bucket(addr);
    let Some(word) = LB_VIP_FILTER.get(bucket / VIP_FILTER_PER_WORD) else {
        return 0;
    };
    (*word >> ((bucket % VIP_FILTER_PER_WORD) * 2)) & (FILTER_VIP | FILTER_VIP_FIRST)
}

/// The exact answer: is `addr` a VIP address?
#[inline(always)]
fn is_vip_addr(addr: [u32; 4], family: u8) -> bool {
    LB_VIP_ADDRS.get_ptr(AddrKey::new(addr, family)).is_some()
}

/// Drops `reason` if `addr` really is a VIP address, passes otherwise.
#[inline(always)]
fn drop_if_vip(addr: [u32; 4], family: u8, reason: Stat) -> Parsed {
    if is_vip_addr(addr, family) {
        Parsed::Drop(reason)
    } else {
        Parsed::Pass
    }
}

/// IPv6 extension headers we refuse to look past (RFC 8200 section 4, plus
/// the mobility/HIP/shim6/experimental ones of the IANA registry).
#[inline(always)]
fn is_ipv6_ext(nh: u8) -> bool {
    matches!(nh, 0 | 43 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254)
}

/// Parses from L2 onwards.
#[inline(always)]
pub fn parse<B: Variant>(ctx: &XdpContext) -> Parsed {
    let Some(L2 { proto, l3_off }) = lb_ebpf::eth::parse(ctx) else {
        // Shorter than an Ethernet header: nothing can use it.
        return Parsed::Drop(Stat::DropMalformed);
    };
    match proto {
        ETH_P_IP => ipv4::<B>(ctx, l3_off),
        ETH_P_IPV6 => ipv6::<B>(ctx, l3_off),
        _ => Parsed::Pass,
    }
}

#[inline(always)]
fn ipv4<B: Variant>(ctx: &XdpContext, l3_off: usize) -> Parsed {
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, l3_off) else {
        return Parsed::Drop(Stat::DropMalformed);
    };
    // SAFETY (all reads through `ip` below): `ptr_at` checked that the 20
    // bytes are inside the frame.
    let daddr = unsafe { (*ip).daddr };
    let dst = [daddr, 0, 0, 0];
    if stop::<B>(Stage::L3, daddr as u64) {
        return Parsed::Stopped;
    }
    let bits = filter(&dst);
    if bits == 0 {
        return Parsed::Pass;
    }
    if stop::<B>(Stage::VipAddr, bits) {
        return Parsed::Stopped;
    }
    let version_ihl = unsafe { (*ip).version_ihl };
    let ihl = version_ihl & 0x0f;
    if version_ihl >> 4 != 4 || ihl < 5 {
        return drop_if_vip(dst, FAMILY_V4, Stat::DropMalformed);
    }
    if ihl != 5 {
        return drop_if_vip(dst, FAMILY_V4, Stat::DropIpOptions);
    }
    let frag = u16::from_be(unsafe { (*ip).frag_off });
    if frag & IP_MF_OFFSET != 0 {
        return drop_if_vip(dst, FAMILY_V4, Stat::DropFragment);
    }
    // A corrupt header must not be answered (an echo reply or a "too big"
    // would carry a fresh, valid checksum) nor steered by its damaged fields.
    // SAFETY: the same 20 bytes `ptr_at` checked.
    if !csum::ipv4_header_valid(unsafe { &*(ip as *const [u32; 5]) }) {
        return drop_if_vip(dst, FAMILY_V4, Stat::DropBadChecksum);
    }
    let tot_len = u16::from_be(unsafe { (*ip).tot_len }) as usize;
    if tot_len < IPV4_HDR_LEN || l3_off + tot_len > frame_len(ctx) {
        return drop_if_vip(dst, FAMILY_V4, Stat::DropMalformed);
    }
    let l4 = l3_off + IPV4_HDR_LEN;
    let l4_room = tot_len - IPV4_HDR_LEN;
    let protocol = unsafe { (*ip).protocol };
    let ports = match protocol {
        PROTO_TCP => tcp_ports(ctx, l4, l4_room),
        PROTO_UDP => udp_ports(ctx, l4, l4_room),
        PROTO_ICMP => {
            let src = [unsafe { (*ip).saddr }, 0, 0, 0];
            return icmp(ctx, l3_off, l4, l4_room, src, dst, FAMILY_V4);
        }
        _ => return Parsed::Pass,
    };
    let Some((sport, dport, syn)) = ports else {
        return drop_if_vip(dst, FAMILY_V4, Stat::DropMalformed);
    };
    if stop::<B>(Stage::Ports, sport as u64 ^ dport as u64 ^ syn as u64) {
        return Parsed::Stopped;
    }
    Parsed::FlowV4(Packet {
        l3_off,
        family: FAMILY_V4,
        src: [unsafe { (*ip).saddr }, 0, 0, 0],
        dst,
        sport,
        dport,
        proto: protocol,
        tos: unsafe { (*ip).tos },
        syn,
        df: frag & IP_DF != 0,
        vip_first: bits & FILTER_VIP_FIRST != 0,
        l3_len: tot_len as u32,
    })
}

#[inline(always)]
fn ipv6<B: Variant>(ctx: &XdpContext, l3_off: usize) -> Parsed {
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, l3_off) else {
        return Parsed::Drop(Stat::DropMalformed);
    };
    // SAFETY (all reads through `ip` below): `ptr_at` checked that the 40
    // bytes are inside the frame.
    let dst = unsafe { (*ip).daddr };
    if stop::<B>(Stage::L3, dst[3] as u64) {
        return Parsed::Stopped;
    }
    let bits = filter(&dst);
    if bits == 0 {
        return Parsed::Pass;
    }
    if stop::<B>(Stage::VipAddr, bits) {
        return Parsed::Stopped;
    }
    let vtc = unsafe { (*ip).vtc_flow };
    if vtc[0] >> 4 != 6 {
        return drop_if_vip(dst, FAMILY_V6, Stat::DropMalformed);
    }
    let payload = u16::from_be(unsafe { (*ip).payload_len }) as usize;
    if l3_off + IPV6_HDR_LEN + payload > frame_len(ctx) {
        return drop_if_vip(dst, FAMILY_V6, Stat::DropMalformed);
    }
    let l4 = l3_off + IPV6_HDR_LEN;
    let nexthdr = unsafe { (*ip).nexthdr };
    let ports = match nexthdr {
        PROTO_TCP => tcp_ports(ctx, l4, payload),
        PROTO_UDP => udp_ports(ctx, l4, payload),
        PROTO_ICMPV6 => {
            let src = unsafe { (*ip).saddr };
            return icmp(ctx, l3_off, l4, payload, src, dst, FAMILY_V6);
        }
        NEXTHDR_FRAGMENT => return drop_if_vip(dst, FAMILY_V6, Stat::DropFragment),
        nh if is_ipv6_ext(nh) => return drop_if_vip(dst, FAMILY_V6, Stat::DropIpOptions),
        _ => return Parsed::Pass,
    };
    let Some((sport, dport, syn)) = ports else {
        return drop_if_vip(dst, FAMILY_V6, Stat::DropMalformed);
    };
    if stop::<B>(Stage::Ports, sport as u64 ^ dport as u64 ^ syn as u64) {
        return Parsed::Stopped;
    }
    Parsed::FlowV6(Packet {
        l3_off,
        family: FAMILY_V6,
        src: unsafe { (*ip).saddr },
        dst,
        sport,
        dport,
        proto: nexthdr,
        tos: (vtc[0] << 4) | (vtc[1] >> 4),
        syn,
        df: true,
        vip_first: bits & FILTER_VIP_FIRST != 0,
        l3_len: (IPV6_HDR_LEN + payload) as u32,
    })
}

/// ICMP (`FAMILY_V4`) or ICMPv6 at `l4`, `room` bytes of IP payload: an
/// echo request to a VIP address is ours to answer (unless its source is a
/// group or broadcast address), a "destination unreachable" or "packet too
/// big" may concern a VIP flow; anything else, or any ICMP to an address that
/// only shares the filter bucket of a VIP, is the kernel's.
#[inline(always)]
fn icmp(
    ctx: &XdpContext,
    l3_off: usize,
    l4: usize,
    room: usize,
    src: [u32; 4],
    dst: [u32; 4],
    family: u8,
) -> Parsed {
    if !is_vip_addr(dst, family) {
        return Parsed::Pass;
    }
    let Some(h) = ptr_at::<[u8; 8]>(ctx, l4) else {
        return Parsed::Drop(Stat::DropMalformed);
    };
    if room < 8 {
        return Parsed::Drop(Stat::DropMalformed);
    }
    // SAFETY: bounds checked by `ptr_at`.
    let kind = unsafe { (*h)[0] };
    let l3_len = l4 - l3_off + room;
    match (family, kind) {
        (FAMILY_V4, ICMP_ECHO_REQUEST) | (FAMILY_V6, ICMPV6_ECHO_REQUEST)
            if !unicast_source(&src, family) =>
        {
            Parsed::Drop(Stat::DropEchoBadSource)
        }
        (FAMILY_V4, ICMP_ECHO_REQUEST) => Parsed::EchoV4 { l3_off, l3_len },
        (FAMILY_V6, ICMPV6_ECHO_REQUEST) => Parsed::EchoV6 { l3_off, l3_len },
        (FAMILY_V4, ICMP_DEST_UNREACH)
        | (FAMILY_V6, ICMPV6_DEST_UNREACH)
        | (FAMILY_V6, ICMPV6_PKT_TOOBIG) => Parsed::IcmpError { l3_off, family },
        _ => Parsed::Pass,
    }
}

/// False for sources a host must not answer (IPv4: RFC 1122 3.2.2.6; IPv6:
/// RFC 4291 2.7, a multicast address is never a source): IPv4 224.0.0.0/3
/// (multicast, the reserved class E and the limited broadcast
/// 255.255.255.255), IPv6 ff00::/8 (multicast). A directed broadcast cannot
/// be told from a host address without the sender's prefix length, which we
/// do not know.
#[inline(always)]
fn unicast_source(src: &[u32; 4], family: u8) -> bool {
    // Map layout: the first address byte is the first byte in memory.
    let first = src[0].to_ne_bytes()[0];
    if family == FAMILY_V4 {
        first < 224
    } else {
        first != 0xff
    }
}

/// (sport, dport, is_syn) of a TCP header at `l4` that must fit in `room`
/// bytes of IP payload.
#[inline(always)]
fn tcp_ports(ctx: &XdpContext, l4: usize, room: usize) -> Option<(u16, u16, bool)> {
    let th = ptr_at::<TcpHdr>(ctx, l4)?;
    if room < core::mem::size_of::<TcpHdr>() {
        return None;
    }
    // SAFETY: bounds checked by `ptr_at`.
    let (source, dest, flags) = unsafe { ((*th).source, (*th).dest, (*th).flags) };
    Some((source, dest, flags & (TCP_SYN | TCP_ACK) == TCP_SYN))
}

#[inline(always)]
fn udp_ports(ctx: &XdpContext, l4: usize, room: usize) -> Option<(u16, u16, bool)> {
    let uh = ptr_at::<UdpHdr>(ctx, l4)?;
    if room < core::mem::size_of::<UdpHdr>() {
        return None;
    }
    // SAFETY: bounds checked by `ptr_at`.
    let (source, dest) = unsafe { ((*uh).source, (*uh).dest) };
    Some((source, dest, false))
}
