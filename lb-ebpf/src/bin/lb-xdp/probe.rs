//! `lb_probe`: the TC egress program behind `via-vip` health checks.
//!
//! A `via-vip` probe must reach the backend the way a client's packet does:
//! addressed to the VIP, wrapped in an outer header to that one backend,
//! decapsulated there and answered by the service bound to the VIP. The
//! daemon opens an ordinary kernel socket to the VIP (so TCP handshakes,
//! retransmissions and HTTP are the kernel's, not ours) and sets its socket
//! mark to name the backend's slot ([`lb_common::probe_mark`]). The kernel
//! routes the probe like any packet to the VIP, out of the interface `lb_xdp`
//! serves; this program sits on that interface's *egress* hook (TC, the
//! traffic-control layer, which unlike XDP also sees packets the host itself
//! sends) and wraps every marked packet for the backend.
//!
//! The outer headers are built by the same code as `lb_xdp`'s
//! (`encap::Outer`): outer source from the configured prefix and the flow's
//! bits, TTL 64, the inner DSCP/ECN copied, IP-in-IP or GUE as configured;
//! Ethernet to the configured gateway MAC. A privileged
//! test feeds both programs the same inner packet and compares the results
//! byte for byte.
//!
//! Two differences from XDP are worth knowing:
//! * The packet is a socket buffer (`__sk_buff`), and it grows with
//!   `bpf_skb_adjust_room`, which also tells the kernel an encapsulation
//!   happened (the `ENCAP_*` flags): offloads (segmentation, checksums) then
//!   apply to the inner headers, and a change of family (IPv4 inside IPv6)
//!   changes the buffer's protocol too.
//! * The reply does not come back this way: the backend answers the probe's
//!   source (this host) directly from the VIP, as it answers clients.
//!
//! Verdicts: unmarked packets (everything else the host sends) pass
//! untouched after one load and compare; a marked packet is encapsulated, or
//! dropped (`TC_ACT_SHOT`) when it cannot be (the slot is free, the
//! destination is not a VIP address, the headers are not the plain TCP/UDP a
//! probe socket sends). A dropped probe fails with a timeout, which the
//! daemon reports; nothing else is affected.

use aya_ebpf::{
    bindings::{
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6, BPF_F_ADJ_ROOM_ENCAP_L4_UDP,
        TC_ACT_OK, TC_ACT_SHOT, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    },
    macros::classifier,
    programs::TcContext,
};
use lb_common::{
    AddrKey, BACKEND_F_VALID, FAMILY_V4, FAMILY_V6, PROTO_TCP, PROTO_UDP, encap_src_suffix,
    probe_slot,
};
use lb_ebpf::hdr::{
    ETH_P_IP, ETH_P_IPV6, EthHdr, IPV4_HDR_LEN, IPV6_HDR_LEN, Ipv4Hdr, Ipv6Hdr, UdpHdr,
};

use crate::{
    encap::{Outer, overhead},
    maps::{LB_BACKENDS, LB_CONFIG, LB_VIP_ADDRS},
};

/// Length of the Ethernet header the kernel built (egress buffers carry no
/// VLAN tag in their data: a tag travels in the buffer's metadata).
const ETH_LEN: usize = 14;

/// The facts of the inner packet the outer header is made from.
struct Inner {
    family: u8,
    /// Source address (map layout), as `lb_xdp`'s `Packet::src`.
    src: [u32; 4],
    /// Destination address (map layout): must be a VIP address.
    dst: [u32; 4],
    /// Source port (raw), for the flow bits of the outer source.
    sport: u16,
    /// DSCP/ECN byte.
    tos: u8,
    /// IP packet length (header + payload).
    l3_len: u32,
}

/// The TC egress hook on the balancer's interface.
#[classifier]
pub fn lb_probe(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is the context pointer the kernel passed; reading a
    // field of `__sk_buff` is what the verifier allows for this program type.
    let mark = unsafe { (*ctx.skb.skb).mark };
    let Some(slot) = probe_slot(mark) else {
        // Not a probe: everything else the host sends leaves untouched.
        return TC_ACT_OK as i32;
    };
    match encapsulate(&ctx, slot) {
        Some(()) => {
            // Cleared, so that a second copy of this program (a daemon
            // restarting while the old one's hook is still attached) does
            // not wrap the packet twice.
            ctx.set_mark(0);
            TC_ACT_OK as i32
        }
        None => TC_ACT_SHOT as i32,
    }
}

/// Pointer to a `T` at `off` of the linear packet data, bounds-checked for
/// the verifier (the TC twin of `lb_ebpf::ptr::ptr_at`).
#[inline(always)]
fn at<T>(ctx: &TcContext, off: usize) -> Option<*mut T> {
    let start = ctx.data();
    if start + off + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + off) as *mut T)
}

/// Reads what the outer header needs from the inner IP header and the TCP
/// or UDP source port behind it.
#[inline(always)]
fn inner(ctx: &TcContext) -> Option<Inner> {
    let eth: *const EthHdr = at(ctx, 0)?;
    // SAFETY (all dereferences below): `at` checked the bytes are there.
    let proto = u16::from_be(unsafe { (*eth).proto });
    if proto == ETH_P_IP {
        let ip: *const Ipv4Hdr = at(ctx, ETH_LEN)?;
        // A socket sends no IP options: anything else is not a probe.
        if unsafe { (*ip).version_ihl } != 0x45 {
            return None;
        }
        let next = unsafe { (*ip).protocol };
        if next != PROTO_TCP && next != PROTO_UDP {
            return None;
        }
        // TCP and UDP both start with the source port.
        let sport: *const u16 = at(ctx, ETH_LEN + IPV4_HDR_LEN)?;
        Some(Inner {
            family: FAMILY_V4,
            src: [unsafe { (*ip).saddr }, 0, 0, 0],
            dst: [unsafe { (*ip).daddr }, 0, 0, 0],
            sport: unsafe { *sport },
            tos: unsafe { (*ip).tos },
            l3_len: u16::from_be(unsafe { (*ip).tot_len }) as u32,
        })
    } else if proto == ETH_P_IPV6 {
        let ip: *const Ipv6Hdr = at(ctx, ETH_LEN)?;
        let next = unsafe { (*ip).nexthdr };
        if next != PROTO_TCP && next != PROTO_UDP {
            return None;
        }
        let sport: *const u16 = at(ctx, ETH_LEN + IPV6_HDR_LEN)?;
        let vtc = unsafe { (*ip).vtc_flow };
        Some(Inner {
            family: FAMILY_V6,
            src: unsafe { (*ip).saddr },
            dst: unsafe { (*ip).daddr },
            sport: unsafe { *sport },
            tos: (vtc[0] << 4) | (vtc[1] >> 4),
            l3_len: IPV6_HDR_LEN as u32 + u16::from_be(unsafe { (*ip).payload_len }) as u32,
        })
    } else {
        None
    }
}

#[inline(always)]
fn encapsulate(ctx: &TcContext, slot: u32) -> Option<()> {
    // Headers of a locally sent packet are in the linear part already; a
    // buffer that starts with less is made linear up to the ports.
    if at::<[u8; ETH_LEN + IPV6_HDR_LEN + 4]>(ctx, 0).is_none() {
        let want = (ETH_LEN + IPV6_HDR_LEN + 4) as u32;
        let len = ctx.len();
        ctx.pull_data(if len < want { len } else { want }).ok()?;
    }
    let pkt = inner(ctx)?;
    // Only to a VIP address of this node: a stray mark alone changes nothing.
    LB_VIP_ADDRS.get_ptr(AddrKey::new(pkt.dst, pkt.family))?;
    // SAFETY: `get_ptr` returned a pointer to a live array element.
    let backend = unsafe { *LB_BACKENDS.get_ptr(slot)? };
    if backend.flags & BACKEND_F_VALID == 0 {
        return None;
    }
    let cfg = *LB_CONFIG.get(0)?;
    let gue = cfg.gue_port;
    let v4_outer = backend.family == FAMILY_V4;
    let grow = overhead(backend.family, gue);

    // Room between the Ethernet and the inner IP header. The flags say what
    // the new bytes are, so the kernel keeps offloads right (inner headers
    // recorded, skb->protocol switched when the outer family differs).
    let mut flags = if v4_outer {
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
    } else {
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV6
    } as u64;
    if gue != 0 {
        flags |= BPF_F_ADJ_ROOM_ENCAP_L4_UDP as u64;
    }
    ctx.adjust_room(grow as i32, BPF_ADJ_ROOM_MAC, flags).ok()?;

    // Every packet pointer is invalid after the resize: fetch them again.
    let eth: *mut EthHdr = at(ctx, 0)?;
    // SAFETY (writes below): `at` checked the bytes are there.
    unsafe {
        (*eth).dst = cfg.gateway_mac;
        if cfg.if_mac != [0; 6] {
            (*eth).src = cfg.if_mac;
        }
        (*eth).proto = if v4_outer { ETH_P_IP } else { ETH_P_IPV6 }.to_be();
    }

    // The same outer headers as `lb_xdp` gives this flow (`encap::Outer`).
    let outer = Outer::new(
        pkt.family,
        pkt.tos,
        pkt.l3_len,
        grow,
        encap_src_suffix(&pkt.src, pkt.sport),
        gue,
    );
    if v4_outer {
        let p: *mut Ipv4Hdr = at(ctx, ETH_LEN)?;
        // SAFETY: `at` checked the 20 bytes.
        unsafe { *p = outer.ipv4(&cfg, backend.addr[0]) };
    } else {
        let p: *mut Ipv6Hdr = at(ctx, ETH_LEN)?;
        // SAFETY: `at` checked the 40 bytes.
        unsafe { *p = outer.ipv6(&cfg, backend.addr) };
    }
    if gue != 0 {
        let off = ETH_LEN + if v4_outer { IPV4_HDR_LEN } else { IPV6_HDR_LEN };
        let u: *mut UdpHdr = at(ctx, off)?;
        // SAFETY: `at` checked the 8 bytes.
        unsafe { *u = outer.gue() };
    }
    Some(())
}
