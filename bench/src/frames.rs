//! Benchmark frames: Ethernet + IPv4/IPv6 + TCP/UDP with correct checksums,
//! padded with payload to an exact length (the harness restores frames in
//! 8-byte words, so lengths are multiples of 8).

use std::net::IpAddr;

/// MAC of the (simulated) router in front of the balancer.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];
/// MAC of the balancer's interface.
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x1b];
/// MAC of the next hop towards the backends.
pub const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x9a];

/// Ethernet header length.
pub const ETH_LEN: usize = 14;

/// TCP flag bits.
pub const TCP_SYN: u8 = 0x02;
/// TCP ACK flag.
pub const TCP_ACK: u8 = 0x10;

/// Transport of a benchmark frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// TCP with these flags.
    Tcp(u8),
    /// UDP.
    Udp,
}

/// RFC 1071 Internet checksum.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u64 = data
        .chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
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
        _ => panic!("source and destination families differ"),
    }
    p
}

fn transport(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, l4: L4, payload: usize) -> Vec<u8> {
    let (proto, mut seg) = match l4 {
        L4::Tcp(flags) => {
            let mut s = Vec::with_capacity(20 + payload);
            s.extend_from_slice(&sport.to_be_bytes());
            s.extend_from_slice(&dport.to_be_bytes());
            s.extend_from_slice(&1000u32.to_be_bytes());
            let ack = if flags & TCP_ACK != 0 { 2000u32 } else { 0 };
            s.extend_from_slice(&ack.to_be_bytes());
            s.extend_from_slice(&[5 << 4, flags]);
            s.extend_from_slice(&64240u16.to_be_bytes());
            s.extend_from_slice(&[0; 4]);
            (6u8, s)
        }
        L4::Udp => {
            let mut d = Vec::with_capacity(8 + payload);
            d.extend_from_slice(&sport.to_be_bytes());
            d.extend_from_slice(&dport.to_be_bytes());
            d.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
            d.extend_from_slice(&[0; 2]);
            (17u8, d)
        }
    };
    seg.extend((0..payload).map(|i| i as u8));
    let mut c = pseudo_header(src, dst, proto, seg.len());
    c.extend_from_slice(&seg);
    let mut sum = checksum(&c);
    let at = if proto == 6 { 16 } else { 6 };
    if proto == 17 && sum == 0 {
        sum = 0xffff;
    }
    seg[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    seg
}

/// A client-to-`dst` frame of exactly `len` bytes (payload fills the rest).
///
/// # Panics
///
/// When `len` is too short for the headers or the families differ.
pub fn frame(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, l4: L4, len: usize) -> Vec<u8> {
    let l3_hdr = if src.is_ipv4() { 20 } else { 40 };
    let l4_hdr = if matches!(l4, L4::Tcp(_)) { 20 } else { 8 };
    let payload = len
        .checked_sub(ETH_LEN + l3_hdr + l4_hdr)
        .expect("frame too short for its headers");
    let seg = transport(src, dst, sport, dport, l4, payload);
    let proto = if matches!(l4, L4::Tcp(_)) { 6 } else { 17 };
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&LB_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&((20 + seg.len()) as u16).to_be_bytes());
            h.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&h);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&0x86DDu16.to_be_bytes());
            f.extend_from_slice(&(6u32 << 28).to_be_bytes());
            f.extend_from_slice(&(seg.len() as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => panic!("source and destination families differ"),
    }
    f.extend_from_slice(&seg);
    debug_assert_eq!(f.len(), len);
    f
}

/// Byte offset of the low 16 bits of the source address in a frame built by
/// [`frame`].
pub fn src_low16_offset(src: IpAddr) -> usize {
    match src {
        IpAddr::V4(_) => ETH_LEN + 12 + 2,
        IpAddr::V6(_) => ETH_LEN + 8 + 14,
    }
}

/// Byte offset of the source port in a frame built by [`frame`].
pub fn sport_offset(src: IpAddr) -> usize {
    ETH_LEN + if src.is_ipv4() { 20 } else { 40 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify_to_zero() {
        let src: IpAddr = "198.18.0.50".parse().unwrap();
        let dst: IpAddr = "198.18.100.10".parse().unwrap();
        let f = frame(src, dst, 40000, 80, L4::Tcp(TCP_ACK), 64);
        assert_eq!(f.len(), 64);
        // A header with its checksum in place sums to zero (complemented).
        assert_eq!(checksum(&f[14..34]), 0);
        let mut c = pseudo_header(src, dst, 6, 64 - 34);
        c.extend_from_slice(&f[34..]);
        assert_eq!(checksum(&c), 0);
        assert_eq!(&f[src_low16_offset(src)..][..2], &[0, 50]);
        assert_eq!(&f[sport_offset(src)..][..2], &40000u16.to_be_bytes());
    }

    #[test]
    fn ipv6_udp_frame() {
        let src: IpAddr = "fd00:18::50".parse().unwrap();
        let dst: IpAddr = "fd00:18::10".parse().unwrap();
        let f = frame(src, dst, 40000, 53, L4::Udp, 80);
        assert_eq!(f.len(), 80);
        let mut c = pseudo_header(src, dst, 17, 80 - 54);
        c.extend_from_slice(&f[54..]);
        assert_eq!(checksum(&c), 0);
        assert_eq!(&f[src_low16_offset(src)..][..2], &[0, 0x50]);
    }
}
