//! Where a packet is parsed: from the frame to either a flow for a VIP, an
//! ICMP echo for a VIP address, "not ours" or a reasoned drop.
//!
//! Order matters: we first learn the destination address and check it against
//! the VIP addresses, so anything not for a VIP is passed untouched even if it
//! is odd (the kernel judges it), while a VIP packet we cannot handle exactly
//! (options, fragments, truncation) is a counted drop, never a guess.

use aya_ebpf::programs::XdpContext;
use lb_common::{
    AddrKey, FAMILY_V4, FAMILY_V6, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Stat,
};
use lb_ebpf::{
    eth::L2,
    hdr::{ETH_P_IP, ETH_P_IPV6, IP_MF_OFFSET, Ipv4Hdr, Ipv6Hdr, TCP_ACK, TCP_SYN, TcpHdr, UdpHdr},
    ptr::{frame_len, ptr_at},
};

use crate::{
    maps::LB_VIP_ADDRS,
    variant::{Stage, Variant, stop},
};

/// A TCP/UDP packet for a VIP address, with the facts forwarding needs.
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
    /// IP packet length (header + payload).
    pub l3_len: u32,
}

/// What the parser decided.
pub enum Parsed {
    /// TCP or UDP for a VIP address.
    Flow(Packet),
    /// ICMP echo request (IPv4) for a VIP address; the IP header is at `l3_off`.
    EchoV4 { l3_off: usize },
    /// ICMPv6 echo request for a VIP address.
    EchoV6 { l3_off: usize },
    /// Not for a VIP: hand to the kernel untouched.
    Pass,
    /// For a VIP but unusable: drop and count this reason.
    Drop(Stat),
    /// A bench variant reached its checkpoint (never in production).
    Stopped,
}

const IPV6_HDR_LEN: usize = 40;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const NEXTHDR_FRAGMENT: u8 = 44;

#[inline(always)]
fn is_vip_addr(addr: [u32; 4], family: u8) -> bool {
    let key = AddrKey {
        addr,
        family,
        _pad: [0; 3],
    };
    LB_VIP_ADDRS.get_ptr(key).is_some()
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
    let ip = unsafe { *ip };
    if stop::<B>(Stage::L3, ip.daddr as u64 ^ ip.saddr as u64 ^ ip.tot_len as u64) {
        return Parsed::Stopped;
    }
    let dst = [ip.daddr, 0, 0, 0];
    if !is_vip_addr(dst, FAMILY_V4) {
        return Parsed::Pass;
    }
    if stop::<B>(Stage::VipAddr, 0) {
        return Parsed::Stopped;
    }
    let ihl = ip.version_ihl & 0x0f;
    if ip.version_ihl >> 4 != 4 || ihl < 5 {
        return Parsed::Drop(Stat::DropMalformed);
    }
    if ihl != 5 {
        return Parsed::Drop(Stat::DropIpOptions);
    }
    let frag = u16::from_be(ip.frag_off);
    if frag & IP_MF_OFFSET != 0 {
        return Parsed::Drop(Stat::DropFragment);
    }
    let tot_len = u16::from_be(ip.tot_len) as usize;
    if tot_len < 20 || l3_off + tot_len > frame_len(ctx) {
        return Parsed::Drop(Stat::DropMalformed);
    }
    let l4 = l3_off + 20;
    let l4_room = tot_len - 20;
    let (sport, dport, syn) = match ip.protocol {
        PROTO_TCP => match tcp_ports(ctx, l4, l4_room) {
            Some(p) => p,
            None => return Parsed::Drop(Stat::DropMalformed),
        },
        PROTO_UDP => match udp_ports(ctx, l4, l4_room) {
            Some(p) => p,
            None => return Parsed::Drop(Stat::DropMalformed),
        },
        PROTO_ICMP => {
            return match ptr_at::<[u8; 8]>(ctx, l4) {
                Some(h) if l4_room >= 8 => {
                    if unsafe { (*h)[0] } == ICMP_ECHO_REQUEST {
                        Parsed::EchoV4 { l3_off }
                    } else {
                        Parsed::Pass
                    }
                }
                _ => Parsed::Drop(Stat::DropMalformed),
            };
        }
        _ => return Parsed::Pass,
    };
    if stop::<B>(Stage::Ports, sport as u64 ^ dport as u64 ^ syn as u64) {
        return Parsed::Stopped;
    }
    Parsed::Flow(Packet {
        l3_off,
        family: FAMILY_V4,
        src: [ip.saddr, 0, 0, 0],
        dst,
        sport,
        dport,
        proto: ip.protocol,
        tos: ip.tos,
        syn,
        df: frag & lb_ebpf::hdr::IP_DF != 0,
        l3_len: tot_len as u32,
    })
}

#[inline(always)]
fn ipv6<B: Variant>(ctx: &XdpContext, l3_off: usize) -> Parsed {
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, l3_off) else {
        return Parsed::Drop(Stat::DropMalformed);
    };
    let ip = unsafe { *ip };
    if stop::<B>(Stage::L3, ip.daddr[3] as u64 ^ ip.saddr[3] as u64) {
        return Parsed::Stopped;
    }
    if !is_vip_addr(ip.daddr, FAMILY_V6) {
        return Parsed::Pass;
    }
    if stop::<B>(Stage::VipAddr, 0) {
        return Parsed::Stopped;
    }
    if ip.vtc_flow[0] >> 4 != 6 {
        return Parsed::Drop(Stat::DropMalformed);
    }
    let payload = u16::from_be(ip.payload_len) as usize;
    if l3_off + IPV6_HDR_LEN + payload > frame_len(ctx) {
        return Parsed::Drop(Stat::DropMalformed);
    }
    let l4 = l3_off + IPV6_HDR_LEN;
    let (sport, dport, syn) = match ip.nexthdr {
        PROTO_TCP => match tcp_ports(ctx, l4, payload) {
            Some(p) => p,
            None => return Parsed::Drop(Stat::DropMalformed),
        },
        PROTO_UDP => match udp_ports(ctx, l4, payload) {
            Some(p) => p,
            None => return Parsed::Drop(Stat::DropMalformed),
        },
        PROTO_ICMPV6 => {
            return match ptr_at::<[u8; 8]>(ctx, l4) {
                Some(h) if payload >= 8 => {
                    if unsafe { (*h)[0] } == ICMPV6_ECHO_REQUEST {
                        Parsed::EchoV6 { l3_off }
                    } else {
                        Parsed::Pass
                    }
                }
                _ => Parsed::Drop(Stat::DropMalformed),
            };
        }
        NEXTHDR_FRAGMENT => return Parsed::Drop(Stat::DropFragment),
        nh if is_ipv6_ext(nh) => return Parsed::Drop(Stat::DropIpOptions),
        _ => return Parsed::Pass,
    };
    if stop::<B>(Stage::Ports, sport as u64 ^ dport as u64 ^ syn as u64) {
        return Parsed::Stopped;
    }
    Parsed::Flow(Packet {
        l3_off,
        family: FAMILY_V6,
        src: ip.saddr,
        dst: ip.daddr,
        sport,
        dport,
        proto: ip.nexthdr,
        tos: (ip.vtc_flow[0] << 4) | (ip.vtc_flow[1] >> 4),
        syn,
        df: true,
        l3_len: (IPV6_HDR_LEN + payload) as u32,
    })
}

/// (sport, dport, is_syn) of a TCP header at `l4` that must fit in `room`
/// bytes of IP payload.
#[inline(always)]
fn tcp_ports(ctx: &XdpContext, l4: usize, room: usize) -> Option<(u16, u16, bool)> {
    let th = ptr_at::<TcpHdr>(ctx, l4)?;
    if room < core::mem::size_of::<TcpHdr>() {
        return None;
    }
    let th = unsafe { *th };
    let syn = th.flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    Some((th.source, th.dest, syn))
}

#[inline(always)]
fn udp_ports(ctx: &XdpContext, l4: usize, room: usize) -> Option<(u16, u16, bool)> {
    let uh = ptr_at::<UdpHdr>(ctx, l4)?;
    if room < core::mem::size_of::<UdpHdr>() {
        return None;
    }
    let uh = unsafe { *uh };
    Some((uh.source, uh.dest, false))
}
