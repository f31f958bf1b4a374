//! Benchmark frames: Ethernet + IPv4/IPv6 + TCP/UDP with correct checksums,
//! padded with payload to an exact length (the harness restores frames in
//! 8-byte words, so lengths are multiples of 8). Built with the packet tests'
//! builder (`lb_privileged_tests::pkt`, written from the RFCs, independent of
//! the code under test), so bench and tests share one.

use std::net::IpAddr;

use lb_privileged_tests::pkt;
pub use lb_privileged_tests::pkt::{CLIENT_MAC, GW_MAC, LB_MAC, checksum};

/// Ethernet header length.
pub const ETH_LEN: usize = 14;

/// TCP flag bits.
pub const TCP_SYN: u8 = pkt::SYN;
/// TCP ACK flag.
pub const TCP_ACK: u8 = pkt::ACK;

/// Transport of a benchmark frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// TCP with these flags.
    Tcp(u8),
    /// UDP.
    Udp,
}

/// A client-to-`dst` frame of exactly `len` bytes (payload fills the rest).
///
/// # Panics
///
/// When `len` is too short for the headers or the families differ.
pub fn frame(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, l4: L4, len: usize) -> Vec<u8> {
    let l3_hdr = if src.is_ipv4() { 20 } else { 40 };
    let l4_hdr = if matches!(l4, L4::Tcp(_)) { 20 } else { 8 };
    let payload: Vec<u8> = (0..len
        .checked_sub(ETH_LEN + l3_hdr + l4_hdr)
        .expect("frame too short for its headers"))
        .map(|i| i as u8)
        .collect();
    let (proto, seg) = match l4 {
        L4::Tcp(flags) => (6, pkt::tcp(src, dst, sport, dport, flags, &payload)),
        L4::Udp => (17, pkt::udp(src, dst, sport, dport, &payload)),
    };
    let f = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => pkt::v4_frame(s, d, proto, 0, &seg),
        (IpAddr::V6(s), IpAddr::V6(d)) => pkt::v6_frame(s, d, proto, 0, &seg),
        _ => panic!("source and destination families differ"),
    };
    assert_eq!(f.len(), len);
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

/// Byte offset of the IPv4 header checksum in a frame built by [`frame`]
/// from `src`; 0 (none) for IPv6.
pub fn ipv4_check_offset(src: IpAddr) -> usize {
    match src {
        IpAddr::V4(_) => ETH_LEN + 10,
        IpAddr::V6(_) => 0,
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
    fn exact_length_and_offsets() {
        let src: IpAddr = "198.18.0.50".parse().unwrap();
        let dst: IpAddr = "198.18.100.10".parse().unwrap();
        let f = frame(src, dst, 40000, 80, L4::Tcp(TCP_ACK), 64);
        assert_eq!(f.len(), 64);
        // A header with its checksum in place sums to zero (complemented).
        assert_eq!(checksum(&f[14..34]), 0);
        assert_eq!(&f[src_low16_offset(src)..][..2], &[0, 50]);
        assert_eq!(&f[sport_offset(src)..][..2], &40000u16.to_be_bytes());
    }

    #[test]
    fn ipv6_udp_frame() {
        let src: IpAddr = "fd00:18::50".parse().unwrap();
        let dst: IpAddr = "fd00:18::10".parse().unwrap();
        let f = frame(src, dst, 40000, 53, L4::Udp, 80);
        assert_eq!(f.len(), 80);
        assert_eq!(&f[src_low16_offset(src)..][..2], &[0, 0x50]);
        assert_eq!(&f[sport_offset(src)..][..2], &40000u16.to_be_bytes());
    }
}
