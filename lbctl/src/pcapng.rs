//! A minimal pcapng writer (one section, one Ethernet interface, enhanced
//! packet blocks with a comment each), enough for `tcpdump -r`, `tshark -r`
//! and Wireshark. pcapng rather than pcap because a packet comment is where
//! the verdict and the chosen backend go (`frame.comment` in Wireshark).
//! Format: <https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html>.

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const EPB: u32 = 6;
const LINKTYPE_ETHERNET: u16 = 1;
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const IF_TSRESOL: u16 = 9;

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

fn option(v: &mut Vec<u8>, code: u16, value: &[u8]) {
    v.extend_from_slice(&code.to_le_bytes());
    v.extend_from_slice(&(value.len() as u16).to_le_bytes());
    v.extend_from_slice(value);
    pad4(v);
}

/// A block: type, total length, body, total length again.
fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let len = (12 + body.len()) as u32;
    let mut v = Vec::with_capacity(len as usize);
    v.extend_from_slice(&kind.to_le_bytes());
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(body);
    v.extend_from_slice(&len.to_le_bytes());
    v
}

/// The file header: section header and the one interface (Ethernet,
/// nanosecond time stamps, `snaplen`).
pub fn header(snaplen: u32) -> Vec<u8> {
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    let mut idb = Vec::new();
    idb.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&snaplen.to_le_bytes());
    option(&mut idb, IF_TSRESOL, &[9]);
    option(&mut idb, OPT_END, &[]);
    let mut out = block(SHB, &shb);
    out.extend(block(IDB, &idb));
    out
}

/// One packet: nanoseconds since the Unix epoch, its length on the wire,
/// the captured bytes and a comment.
pub fn packet(unix_ns: u64, orig_len: u32, data: &[u8], comment: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&((unix_ns >> 32) as u32).to_le_bytes());
    b.extend_from_slice(&(unix_ns as u32).to_le_bytes());
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&orig_len.to_le_bytes());
    b.extend_from_slice(data);
    pad4(&mut b);
    option(&mut b, OPT_COMMENT, comment.as_bytes());
    option(&mut b, OPT_END, &[]);
    block(EPB, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_framed_and_padded() {
        let h = header(2048);
        // SHB: type, length at both ends, byte-order magic.
        assert_eq!(&h[0..4], &SHB.to_le_bytes());
        let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
        assert_eq!(&h[len - 4..len], &h[4..8]);
        assert_eq!(&h[8..12], &0x1A2B_3C4Du32.to_le_bytes());
        let p = packet(
            1_700_000_000_123_456_789,
            60,
            &[1, 2, 3, 4, 5],
            "verdict=tx",
        );
        assert_eq!(p.len() % 4, 0);
        let plen = u32::from_le_bytes(p[4..8].try_into().unwrap()) as usize;
        assert_eq!(plen, p.len());
        assert_eq!(&p[plen - 4..], &p[4..8]);
        // Captured and original lengths.
        assert_eq!(u32::from_le_bytes(p[20..24].try_into().unwrap()), 5);
        assert_eq!(u32::from_le_bytes(p[24..28].try_into().unwrap()), 60);
        assert!(p.windows(10).any(|w| w == b"verdict=tx"));
    }
}
