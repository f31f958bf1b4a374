//! Conversions between the map address layout (`[u32; 4]`, network-order bytes)
//! and plain octets. Pure byte shuffling so it also builds for the BPF target.

/// Packs IPv4 octets into the map layout.
#[inline(always)]
pub const fn from_v4(octets: [u8; 4]) -> [u32; 4] {
    [u32::from_ne_bytes(octets), 0, 0, 0]
}

/// Packs IPv6 octets into the map layout.
#[inline(always)]
pub const fn from_v6(o: [u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([o[0], o[1], o[2], o[3]]),
        u32::from_ne_bytes([o[4], o[5], o[6], o[7]]),
        u32::from_ne_bytes([o[8], o[9], o[10], o[11]]),
        u32::from_ne_bytes([o[12], o[13], o[14], o[15]]),
    ]
}

/// Unpacks the map layout into IPv4 octets (word 0).
#[inline(always)]
pub const fn to_v4(a: [u32; 4]) -> [u8; 4] {
    a[0].to_ne_bytes()
}

/// Unpacks the map layout into IPv6 octets.
#[inline(always)]
pub const fn to_v6(a: [u32; 4]) -> [u8; 16] {
    let w0 = a[0].to_ne_bytes();
    let w1 = a[1].to_ne_bytes();
    let w2 = a[2].to_ne_bytes();
    let w3 = a[3].to_ne_bytes();
    [
        w0[0], w0[1], w0[2], w0[3], w1[0], w1[1], w1[2], w1[3], w2[0], w2[1], w2[2], w2[3], w3[0],
        w3[1], w3[2], w3[3],
    ]
}

/// A host-order port as the raw network-order `u16` the maps hold.
#[inline(always)]
pub const fn port_to_map(port: u16) -> u16 {
    port.to_be()
}

/// A raw network-order map port back to host order.
#[inline(always)]
pub const fn port_from_map(port: u16) -> u16 {
    u16::from_be(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_round_trip() {
        let o: [u8; 16] = [0xfd, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0xff];
        assert_eq!(to_v6(from_v6(o)), o);
        assert_eq!(to_v4(from_v4([198, 18, 0, 1])), [198, 18, 0, 1]);
        // The first word holds the first four octets in memory order.
        assert_eq!(from_v4([198, 18, 0, 1])[0].to_ne_bytes(), [198, 18, 0, 1]);
    }
}
