//! A small packet builder for tests, written from the RFCs and independent of
//! the code under test: it shares no code with lb-ebpf or lb-common, so the
//! expected frames are a second opinion, not a copy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// MAC of the test client (or the router in front of the LB).
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];
/// MAC of the LB's interface.
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x1b];
/// MAC of the gateway towards the backends.
pub const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x9a];

/// RFC 1071 checksum of `data` (odd length padded with zero).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u64;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet frame, optionally with one 802.1Q tag.
pub fn eth(
    dst: [u8; 6],
    src: [u8; 6],
    vlan: Option<u16>,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(tci) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// IPv4 header fields.
#[derive(Clone, Debug)]
pub struct Ip4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub tos: u8,
    pub ttl: u8,
    pub id: u16,
    /// Flags (DF = 0x4000, MF = 0x2000) and fragment offset in 8-byte units.
    pub flags_frag: u16,
    /// Options bytes (multiple of 4).
    pub options: Vec<u8>,
    /// Force a (wrong) IHL value.
    pub ihl: Option<u8>,
    /// Force a (wrong) total length.
    pub tot_len: Option<u16>,
}

impl Ip4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Self {
        Self {
            src,
            dst,
            proto,
            tos: 0,
            ttl: 64,
            id: 0x1234,
            flags_frag: 0x4000,
            options: Vec::new(),
            ihl: None,
            tot_len: None,
        }
    }
}

/// IPv4 packet with a correct header checksum.
pub fn ipv4(h: &Ip4, payload: &[u8]) -> Vec<u8> {
    let hl = 20 + h.options.len();
    let ihl = h.ihl.unwrap_or((hl / 4) as u8);
    let tot = h.tot_len.unwrap_or((hl + payload.len()) as u16);
    let mut p = vec![0x40 | ihl, h.tos];
    p.extend_from_slice(&tot.to_be_bytes());
    p.extend_from_slice(&h.id.to_be_bytes());
    p.extend_from_slice(&h.flags_frag.to_be_bytes());
    p.extend_from_slice(&[h.ttl, h.proto, 0, 0]);
    p.extend_from_slice(&h.src.octets());
    p.extend_from_slice(&h.dst.octets());
    p.extend_from_slice(&h.options);
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// IPv6 packet (fixed header, `tc` = traffic class byte).
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, tc: u8, hop: u8, payload: &[u8]) -> Vec<u8> {
    let first = (6u32 << 28) | ((tc as u32) << 20);
    let mut p = first.to_be_bytes().to_vec();
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, hop]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// The TCP/UDP/ICMPv6 checksum pseudo-header (RFC 793, RFC 8200 section 8.1).
pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => panic!("mixed address families"),
    }
    p
}

/// TCP flags.
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const PSH: u8 = 0x08;

/// TCP segment (20-byte header) with a correct checksum.
pub fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&1000u32.to_be_bytes());
    s.extend_from_slice(&(if flags & ACK != 0 { 2000u32 } else { 0 }).to_be_bytes());
    s.extend_from_slice(&[5 << 4, flags]);
    s.extend_from_slice(&64240u16.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]);
    s.extend_from_slice(payload);
    let mut c = pseudo_header(src, dst, 6, s.len());
    c.extend_from_slice(&s);
    let sum = checksum(&c);
    s[16..18].copy_from_slice(&sum.to_be_bytes());
    s
}

/// UDP datagram with a correct checksum.
pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut d = Vec::new();
    d.extend_from_slice(&sport.to_be_bytes());
    d.extend_from_slice(&dport.to_be_bytes());
    d.extend_from_slice(&(len as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    let mut c = pseudo_header(src, dst, 17, len);
    c.extend_from_slice(&d);
    let mut sum = checksum(&c);
    if sum == 0 {
        sum = 0xffff;
    }
    d[6..8].copy_from_slice(&sum.to_be_bytes());
    d
}

/// ICMP message (IPv4) with a correct checksum: type, code, 4 "rest" bytes, data.
pub fn icmp4(kind: u8, code: u8, rest: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(data);
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// ICMPv6 message with a correct checksum over the pseudo-header.
pub fn icmp6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    kind: u8,
    code: u8,
    rest: [u8; 4],
    data: &[u8],
) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(data);
    let mut c = pseudo_header(IpAddr::V6(src), IpAddr::V6(dst), 58, m.len());
    c.extend_from_slice(&m);
    let sum = checksum(&c);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// A client-to-VIP IPv4 frame carrying `l4` (already built for these addresses).
pub fn v4_frame(client: Ipv4Addr, vip: Ipv4Addr, proto: u8, tos: u8, l4: &[u8]) -> Vec<u8> {
    let mut h = Ip4::new(client, vip, proto);
    h.tos = tos;
    eth(LB_MAC, CLIENT_MAC, None, 0x0800, &ipv4(&h, l4))
}

/// A client-to-VIP IPv6 frame carrying `l4`.
pub fn v6_frame(client: Ipv6Addr, vip: Ipv6Addr, next: u8, tc: u8, l4: &[u8]) -> Vec<u8> {
    eth(
        LB_MAC,
        CLIENT_MAC,
        None,
        0x86DD,
        &ipv6(client, vip, next, tc, 64, l4),
    )
}

/// IPv4 TCP frame client -> VIP.
pub fn v4_tcp(
    client: Ipv4Addr,
    vip: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let seg = tcp(client.into(), vip.into(), sport, dport, flags, payload);
    v4_frame(client, vip, 6, 0, &seg)
}

/// IPv6 TCP frame client -> VIP.
pub fn v6_tcp(
    client: Ipv6Addr,
    vip: Ipv6Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let seg = tcp(client.into(), vip.into(), sport, dport, flags, payload);
    v6_frame(client, vip, 6, 0, &seg)
}

/// The L3 packet inside an Ethernet frame (no VLAN).
pub fn l3_of(frame: &[u8]) -> &[u8] {
    &frame[14..]
}

/// The outer source a crafted-source LB must use, computed from the spec in
/// the docs of `lb_common::hash`: client address folded to 32 bits (XOR of its
/// big-endian words), XOR (port << 16), XOR port, masked into the prefix.
pub fn crafted_suffix(client: IpAddr, sport: u16) -> u32 {
    let fold = match client {
        IpAddr::V4(a) => u32::from_be_bytes(a.octets()),
        IpAddr::V6(a) => {
            let o = a.octets();
            (0..4).fold(0u32, |acc, i| {
                acc ^ u32::from_be_bytes([o[i * 4], o[i * 4 + 1], o[i * 4 + 2], o[i * 4 + 3]])
            })
        }
    };
    let port = sport as u32;
    fold ^ (port << 16) ^ port
}

/// Crafted IPv4 outer source inside `prefix/len`.
pub fn crafted_v4(prefix: Ipv4Addr, len: u8, client: IpAddr, sport: u16) -> Ipv4Addr {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let p = u32::from_be_bytes(prefix.octets());
    Ipv4Addr::from((p & mask) | (crafted_suffix(client, sport) & !mask))
}

/// Crafted IPv6 outer source: `prefix/len` (len >= 96) with the low bits crafted.
pub fn crafted_v6(prefix: Ipv6Addr, len: u8, client: IpAddr, sport: u16) -> Ipv6Addr {
    let bits = len - 96;
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    let mut o = prefix.octets();
    let low = u32::from_be_bytes([o[12], o[13], o[14], o[15]]);
    let w = (low & mask) | (crafted_suffix(client, sport) & !mask);
    o[12..16].copy_from_slice(&w.to_be_bytes());
    Ipv6Addr::from(o)
}

/// What `lb_xdp` must emit for `inner` (an L3 packet with DSCP/ECN byte `tos`)
/// sent to `backend` from outer source `outer_src`.
pub fn encapsulated(
    inner: &[u8],
    tos: u8,
    outer_src: IpAddr,
    backend: IpAddr,
    vlan: Option<u16>,
) -> Vec<u8> {
    let inner_v4 = inner[0] >> 4 == 4;
    let proto = if inner_v4 { 4 } else { 41 };
    match (outer_src, backend) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = Ip4::new(s, d, proto);
            h.tos = tos;
            h.id = 0;
            h.flags_frag = 0;
            eth(GW_MAC, LB_MAC, vlan, 0x0800, &ipv4(&h, inner))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => eth(
            GW_MAC,
            LB_MAC,
            vlan,
            0x86DD,
            &ipv6(s, d, proto, tos, 64, inner),
        ),
        _ => panic!("outer source and backend families differ"),
    }
}

/// The outer UDP source port GUE must carry for a flow, from the spec in the
/// docs of `lb_common::gue_src_port`: the crafted-source suffix times
/// 0x9e3779b1 (mod 2^32), its top 14 bits, in 49152..=65535.
pub fn gue_sport(client: IpAddr, sport: u16) -> u16 {
    0xc000 | (crafted_suffix(client, sport).wrapping_mul(0x9e37_79b1) >> 18) as u16
}

/// What `lb_xdp` must emit with `encap = "gue"` for `inner` (an L3 packet
/// with DSCP/ECN byte `tos`) sent to `backend` from outer source
/// `outer_src`: outer IP (protocol 17, DSCP/ECN copied, TTL 64), UDP from
/// `udp_sport` to `udp_dport` with length 8 + inner and checksum zero (RFC
/// 768 for IPv4; RFC 6935 for IPv6), then `inner` unchanged.
pub fn gue_encapsulated(
    inner: &[u8],
    tos: u8,
    outer_src: IpAddr,
    backend: IpAddr,
    udp_sport: u16,
    udp_dport: u16,
    vlan: Option<u16>,
) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&udp_sport.to_be_bytes());
    d.extend_from_slice(&udp_dport.to_be_bytes());
    d.extend_from_slice(&((8 + inner.len()) as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(inner);
    match (outer_src, backend) {
        (IpAddr::V4(s), IpAddr::V4(dst)) => {
            let mut h = Ip4::new(s, dst, 17);
            h.tos = tos;
            h.id = 0;
            h.flags_frag = 0;
            eth(GW_MAC, LB_MAC, vlan, 0x0800, &ipv4(&h, &d))
        }
        (IpAddr::V6(s), IpAddr::V6(dst)) => {
            eth(GW_MAC, LB_MAC, vlan, 0x86DD, &ipv6(s, dst, 17, tos, 64, &d))
        }
        _ => panic!("outer source and backend families differ"),
    }
}
