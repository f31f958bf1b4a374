//! ICMP the balancer answers itself: echo requests to a VIP address, and
//! "fragmentation needed" / "packet too big" when a packet would not fit the
//! path to the backend once encapsulated (RFC 1191, RFC 8201). Replies go back
//! out of the interface they came in on (XDP_TX) to the sender's MAC.

use aya_ebpf::programs::XdpContext;
use lb_common::{LbConfig, PROTO_ICMP, PROTO_ICMPV6};
use lb_ebpf::{
    csum, eth,
    hdr::{ETH_P_IP, ETH_P_IPV6, IcmpHdr, Ipv4Hdr, Ipv6Hdr},
    ptr::{adjust_head, ptr_at},
};

use crate::{
    encap::{our_mac, trim_to},
    maps::LB_ICMP_RATE,
    rate,
};

/// Takes one token from this CPU's "too big" bucket (`rate` per second,
/// burst one second; see `rate`).
#[inline(always)]
pub fn too_big_allowed(per_sec: u32) -> bool {
    rate::take(&LB_ICMP_RATE, per_sec)
}

const TTL: u8 = 64;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PKT_TOOBIG: u8 = 2;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// New IPv4 + ICMP header bytes in front of the quoted packet.
const V4_ROOM: usize = 20 + 8;
/// Quoted bytes of the offending IPv4 packet: its header and 8 payload bytes.
const V4_QUOTE: usize = 20 + 8;
/// New IPv6 + ICMPv6 header bytes in front of the quoted packet.
const V6_ROOM: usize = 40 + 8;
/// Quoted bytes of the offending IPv6 packet: its header and 8 payload bytes,
/// enough for the client to find the socket (ports).
const V6_QUOTE: usize = 40 + 8;

#[inline(always)]
fn ipv4_checksum(h: &Ipv4Hdr) -> u16 {
    csum::ipv4_header(unsafe { &*(h as *const Ipv4Hdr as *const [u16; 10]) })
}

/// Turns an ICMP echo request (an `l3_len`-byte IP packet at `l3`) into the
/// reply, in place. Bytes after the IP packet (Ethernet padding, a kept FCS)
/// are cut first: the reply is the IP packet alone, the wire pads it again if
/// it needs to.
#[inline(always)]
pub fn echo_reply_v4(ctx: &XdpContext, l3: usize, l3_len: usize, cfg: &LbConfig) -> Option<()> {
    trim_to(ctx, l3 + l3_len)?;
    let (dst, src, tci) = eth::read(ctx, 0, l3)?;
    let ip = ptr_at::<Ipv4Hdr>(ctx, l3)?;
    let icmp = ptr_at::<IcmpHdr>(ctx, l3 + 20)?;
    unsafe {
        let mut h = *ip;
        h.saddr = (*ip).daddr;
        h.daddr = (*ip).saddr;
        h.ttl = TTL;
        h.check = 0;
        h.check = ipv4_checksum(&h);
        *ip = h;
        let code = (*icmp).code;
        let old = u16::from_ne_bytes([(*icmp).kind, code]);
        let new = u16::from_ne_bytes([ICMP_ECHO_REPLY, code]);
        (*icmp).check = csum::replace16((*icmp).check, old, new);
        (*icmp).kind = ICMP_ECHO_REPLY;
    }
    eth::write(ctx, l3, &src, &our_mac(cfg, dst), tci, ETH_P_IP)
}

/// Turns an ICMPv6 echo request into the reply, in place, trailer cut as for
/// IPv4. Swapping source and destination leaves the pseudo-header sum
/// unchanged, so only the type word enters the checksum update.
#[inline(always)]
pub fn echo_reply_v6(ctx: &XdpContext, l3: usize, l3_len: usize, cfg: &LbConfig) -> Option<()> {
    trim_to(ctx, l3 + l3_len)?;
    let (dst, src, tci) = eth::read(ctx, 0, l3)?;
    let ip = ptr_at::<Ipv6Hdr>(ctx, l3)?;
    let icmp = ptr_at::<IcmpHdr>(ctx, l3 + 40)?;
    unsafe {
        let s = (*ip).saddr;
        (*ip).saddr = (*ip).daddr;
        (*ip).daddr = s;
        (*ip).hop_limit = TTL;
        let code = (*icmp).code;
        let old = u16::from_ne_bytes([(*icmp).kind, code]);
        let new = u16::from_ne_bytes([ICMPV6_ECHO_REPLY, code]);
        (*icmp).check = csum::replace16((*icmp).check, old, new);
        (*icmp).kind = ICMPV6_ECHO_REPLY;
    }
    eth::write(ctx, l3, &src, &our_mac(cfg, dst), tci, ETH_P_IPV6)
}

/// Shrinks the frame to L2 + `quote` bytes, then makes `room` bytes of head
/// room. Afterwards the old L2 header sits at `room` and the quoted packet at
/// `l3 + room`, which is exactly where it belongs after the new headers.
#[inline(always)]
fn reshape(ctx: &XdpContext, l3: usize, quote: usize, room: usize) -> Option<()> {
    trim_to(ctx, l3 + quote)?;
    adjust_head(ctx, -(room as i32))
}

/// Replaces the packet with an ICMP "fragmentation needed" to its sender,
/// advertising `mtu` as the next-hop MTU. The caller checked it is IPv4 with
/// DF set, with a 20-byte header and at least 8 bytes of L4 header.
#[inline(always)]
pub fn frag_needed_v4(ctx: &XdpContext, l3: usize, mtu: u16, cfg: &LbConfig) -> Option<()> {
    reshape(ctx, l3, V4_QUOTE, V4_ROOM)?;
    let (rx_dst, rx_src, tci) = eth::read(ctx, V4_ROOM, l3)?;
    let quoted = ptr_at::<Ipv4Hdr>(ctx, l3 + V4_ROOM)?;
    let (client, vip) = unsafe { ((*quoted).saddr, (*quoted).daddr) };

    eth::write(ctx, l3, &rx_src, &our_mac(cfg, rx_dst), tci, ETH_P_IP)?;
    let mut h = Ipv4Hdr {
        version_ihl: 0x45,
        tos: 0,
        tot_len: ((V4_ROOM + V4_QUOTE) as u16).to_be(),
        id: 0,
        frag_off: 0,
        ttl: TTL,
        protocol: PROTO_ICMP,
        check: 0,
        saddr: vip,
        daddr: client,
    };
    h.check = ipv4_checksum(&h);
    let ip = ptr_at::<Ipv4Hdr>(ctx, l3)?;
    unsafe { *ip = h };

    let icmp = ptr_at::<IcmpHdr>(ctx, l3 + 20)?;
    let m = mtu.to_be_bytes();
    unsafe {
        *icmp = IcmpHdr {
            kind: ICMP_DEST_UNREACH,
            code: ICMP_FRAG_NEEDED,
            check: 0,
            rest: [0, 0, m[0], m[1]],
        };
    }
    // ICMP checksum: header + quote, 36 bytes, a fixed window.
    let words = ptr_at::<[u16; (8 + V4_QUOTE) / 2]>(ctx, l3 + 20)?;
    let mut s = 0u32;
    let mut i = 0;
    while i < (8 + V4_QUOTE) / 2 {
        s += unsafe { (*words)[i] } as u32;
        i += 1;
    }
    unsafe { (*icmp).check = !csum::fold(s) };
    Some(())
}

/// Replaces the packet with an ICMPv6 "packet too big" to its sender.
#[inline(always)]
pub fn too_big_v6(ctx: &XdpContext, l3: usize, mtu: u32, cfg: &LbConfig) -> Option<()> {
    reshape(ctx, l3, V6_QUOTE, V6_ROOM)?;
    let (rx_dst, rx_src, tci) = eth::read(ctx, V6_ROOM, l3)?;
    let quoted = ptr_at::<Ipv6Hdr>(ctx, l3 + V6_ROOM)?;
    let (client, vip) = unsafe { ((*quoted).saddr, (*quoted).daddr) };

    eth::write(ctx, l3, &rx_src, &our_mac(cfg, rx_dst), tci, ETH_P_IPV6)?;
    let payload = (8 + V6_QUOTE) as u32;
    let h = Ipv6Hdr {
        vtc_flow: [0x60, 0, 0, 0],
        payload_len: (payload as u16).to_be(),
        nexthdr: PROTO_ICMPV6,
        hop_limit: TTL,
        saddr: vip,
        daddr: client,
    };
    let ip = ptr_at::<Ipv6Hdr>(ctx, l3)?;
    unsafe { *ip = h };

    let icmp = ptr_at::<IcmpHdr>(ctx, l3 + 40)?;
    unsafe {
        *icmp = IcmpHdr {
            kind: ICMPV6_PKT_TOOBIG,
            code: 0,
            check: 0,
            rest: mtu.to_be_bytes(),
        };
    }
    // Pseudo-header (RFC 8200 section 8.1) + message, 56 bytes.
    let mut s = 0u32;
    let mut i = 0;
    while i < 4 {
        s = csum::add32(s, vip[i]);
        s = csum::add32(s, client[i]);
        i += 1;
    }
    s = csum::add32(s, u32::from_ne_bytes(payload.to_be_bytes()));
    s = csum::add32(s, u32::from_ne_bytes((PROTO_ICMPV6 as u32).to_be_bytes()));
    let words = ptr_at::<[u16; (8 + V6_QUOTE) / 2]>(ctx, l3 + 40)?;
    let mut j = 0;
    while j < (8 + V6_QUOTE) / 2 {
        s += unsafe { (*words)[j] } as u32;
        j += 1;
    }
    unsafe { (*icmp).check = !csum::fold(s) };
    Some(())
}
