//! ICMP errors about VIP flows, handed on to the backend that caused them.
//!
//! With direct server return a backend answers the client itself, from the
//! VIP. When a router on the way back cannot forward such a reply (too big
//! for its next link: IPv4 "fragmentation needed", ICMPv6 "packet too big";
//! or no route), it reports to the reply's source address: the VIP, which
//! the network routes to us. Our kernel has no socket for that flow, so left
//! alone the report is lost, the backend keeps sending segments that cannot
//! pass and the connection stalls (a path MTU black hole). The host that
//! must hear of it is the backend that sent the reply. So we find the backend
//! exactly as the flow's next client packet would (connection table, else
//! the ring position of the same flow hash) and encapsulate the ICMP message,
//! unchanged, to it; after decapsulation its kernel sees the error it would
//! have received without a load balancer (Katran does the same).
//!
//! The quoted packet is the backend's reply, VIP -> client, so the client
//! flow's tuple is the quote's reversed: client = quoted destination and
//! port, VIP = quoted source and port. Only a quote whose source is the very
//! VIP address the error was sent to is ours; anything else (another
//! source, a protocol without ports, a later fragment) goes to the kernel
//! untouched, as before. A quote too short for its IP header and the 8 port
//! bytes, or with a header we do not parse, is a counted drop.
//!
//! The lookups are made with the [`Quiet`] variant: they count no flow
//! events and pin nothing, so an error message (perhaps forged) cannot add
//! connection-table entries. This whole step sits in the branch for ICMP to
//! a VIP address, after every TCP/UDP test, so TCP and UDP packets execute
//! none of it.
//!
//! Why inlined and not a BPF-to-BPF call like `too_big`: the verifier adds
//! up the stack frames along a call chain and allows 512 bytes. `lb_xdp`'s
//! own frame is 384 bytes and this step, which keeps a flow key, a VIP key
//! and the packet facts alive across map lookups, needs 256 of its own when
//! out of line (verifier: "combined stack size of 2 calls is 640. Too
//! large"). Inlined, its stack slots share the frame with the forwarding
//! path's (their lifetimes never overlap) and the frame stays at 384.

use aya_ebpf::programs::XdpContext;
use lb_common::{FAMILY_V4, LB_CFG_F_FORWARD_ICMP_ERRORS, LbConfig, PROTO_TCP, PROTO_UDP, Stat};
use lb_ebpf::{
    hdr::{IPV4_HDR_LEN, IPV6_HDR_LEN, Ipv4Hdr, Ipv6Hdr},
    ptr::ptr_at,
};

use crate::{
    encap,
    flow::{self, Choice},
    parse::Packet,
    stats::Tally,
    variant::Quiet,
};

/// Length of the ICMP/ICMPv6 header before the quoted packet.
const ICMP_HDR_LEN: usize = 8;
/// Quoted L4 bytes we need: the two ports.
const QUOTE_L4_LEN: usize = 8;
/// IPv4 fragment offset mask (host order): a later fragment has no ports.
const IP_OFFSET: u16 = 0x1fff;

/// Handles an ICMP error (type already checked by `parse`) addressed to a
/// VIP address, IP header at `l3_off`. Returns what became of it as the
/// counter to bump: [`Stat::IcmpErrorForwarded`] (transmit, the frame is
/// encapsulated), [`Stat::Pass`] (not about a VIP flow: the kernel's), or a
/// drop reason.
#[inline(always)]
pub fn forward(ctx: &XdpContext, l3_off: usize, family: u8, cfg: &LbConfig) -> Stat {
    if cfg.flags & LB_CFG_F_FORWARD_ICMP_ERRORS == 0 {
        return Stat::Pass;
    }
    let quoted = if family == FAMILY_V4 {
        quote_v4(ctx, l3_off)
    } else {
        quote_v6(ctx, l3_off)
    };
    let pkt = match quoted {
        Ok(p) => p,
        Err(verdict) => return verdict,
    };
    match flow::choose::<Quiet>(&pkt, cfg, &Tally::<Quiet>::get()) {
        Choice::Backend(c) => {
            // An ICMP error is at most 576 (IPv4) or 1280 (IPv6) bytes, so
            // this only trips with a very small configured MTU; no ICMP is
            // ever sent about an ICMP error.
            // Same encapsulation as the flow's own packets (GUE or
            // IP-in-IP), so the error arrives the way the backend expects.
            let gue_port = cfg.gue_port;
            if pkt.l3_len + encap::overhead(c.family, gue_port) > cfg.mtu {
                return Stat::DropTooBig;
            }
            match encap::encapsulate(ctx, &pkt, &c, cfg, gue_port) {
                Some(()) => Stat::IcmpErrorForwarded,
                None => Stat::DropEncapFailed,
            }
        }
        // No VIP serves the quoted port and protocol: not a VIP flow.
        Choice::NotServed | Choice::Stopped => Stat::Pass,
        Choice::NoBackend => Stat::DropNoBackend,
    }
}

/// The client flow an ICMPv4 error quotes, as a [`Packet`] that describes
/// the error itself for encapsulation (`l3_off`, `l3_len`, `tos`) and the
/// flow for the backend choice (addresses, ports, protocol). The client's
/// address and port also make the crafted outer source, so the error reaches
/// the backend with the same outer header as the flow's packets (same NIC
/// queue there).
#[inline(always)]
fn quote_v4(ctx: &XdpContext, l3_off: usize) -> Result<Packet, Stat> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, l3_off).ok_or(Stat::DropMalformed)?;
    // SAFETY: `ptr_at` checked the 20 bytes; `parse` checked IHL 5, the
    // header checksum and that the frame holds `tot_len` bytes.
    let (tot_len, tos, vip) =
        unsafe { (u16::from_be((*ip).tot_len) as usize, (*ip).tos, (*ip).daddr) };
    let q = l3_off + IPV4_HDR_LEN + ICMP_HDR_LEN;
    if tot_len < IPV4_HDR_LEN + ICMP_HDR_LEN + IPV4_HDR_LEN + QUOTE_L4_LEN {
        return Err(Stat::DropIcmpQuoteTruncated);
    }
    let qh = ptr_at::<Ipv4Hdr>(ctx, q).ok_or(Stat::DropIcmpQuoteTruncated)?;
    // SAFETY: checked by `ptr_at` just above.
    let (vihl, frag, proto, qsrc, qdst) = unsafe {
        (
            (*qh).version_ihl,
            u16::from_be((*qh).frag_off),
            (*qh).protocol,
            (*qh).saddr,
            (*qh).daddr,
        )
    };
    // Version 4, 20-byte header: options would put the ports at an offset
    // from the packet, which we do not walk (see `lb_ebpf`'s rules).
    if vihl != 0x45 {
        return Err(Stat::DropIcmpQuoteMalformed);
    }
    if qsrc != vip || (proto != PROTO_TCP && proto != PROTO_UDP) || frag & IP_OFFSET != 0 {
        return Err(Stat::Pass);
    }
    let ports = ptr_at::<[u16; 2]>(ctx, q + IPV4_HDR_LEN).ok_or(Stat::DropIcmpQuoteTruncated)?;
    // SAFETY: checked by `ptr_at`.
    let (vip_port, client_port) = unsafe { ((*ports)[0], (*ports)[1]) };
    Ok(Packet {
        l3_off,
        family: FAMILY_V4,
        src: [qdst, 0, 0, 0],
        dst: [vip, 0, 0, 0],
        sport: client_port,
        dport: vip_port,
        proto,
        tos,
        syn: false,
        df: true,
        vip_first: true,
        l3_len: tot_len as u32,
    })
}

/// [`quote_v4`] for ICMPv6: the quote is a fixed IPv6 header and the ports
/// right after it (a quote with extension headers is not ours to walk).
#[inline(always)]
fn quote_v6(ctx: &XdpContext, l3_off: usize) -> Result<Packet, Stat> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, l3_off).ok_or(Stat::DropMalformed)?;
    // SAFETY: `ptr_at` checked the 40 bytes; `parse` checked that the frame
    // holds the payload length.
    let (payload, vtc, vip) = unsafe {
        (
            u16::from_be((*ip).payload_len) as usize,
            (*ip).vtc_flow,
            (*ip).daddr,
        )
    };
    let q = l3_off + IPV6_HDR_LEN + ICMP_HDR_LEN;
    if payload < ICMP_HDR_LEN + IPV6_HDR_LEN + QUOTE_L4_LEN {
        return Err(Stat::DropIcmpQuoteTruncated);
    }
    let qh = ptr_at::<Ipv6Hdr>(ctx, q).ok_or(Stat::DropIcmpQuoteTruncated)?;
    // SAFETY: checked by `ptr_at` just above.
    let (qv, proto, qsrc, qdst) = unsafe {
        (
            (*qh).vtc_flow[0] >> 4,
            (*qh).nexthdr,
            (*qh).saddr,
            (*qh).daddr,
        )
    };
    if qv != 6 {
        return Err(Stat::DropIcmpQuoteMalformed);
    }
    if qsrc != vip || (proto != PROTO_TCP && proto != PROTO_UDP) {
        return Err(Stat::Pass);
    }
    let ports = ptr_at::<[u16; 2]>(ctx, q + IPV6_HDR_LEN).ok_or(Stat::DropIcmpQuoteTruncated)?;
    // SAFETY: checked by `ptr_at`.
    let (vip_port, client_port) = unsafe { ((*ports)[0], (*ports)[1]) };
    Ok(Packet {
        l3_off,
        family: lb_common::FAMILY_V6,
        src: qdst,
        dst: vip,
        sport: client_port,
        dport: vip_port,
        proto,
        tos: (vtc[0] << 4) | (vtc[1] >> 4),
        syn: false,
        df: true,
        vip_first: true,
        l3_len: (IPV6_HDR_LEN + payload) as u32,
    })
}
