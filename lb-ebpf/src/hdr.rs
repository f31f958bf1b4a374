//! Wire layouts of the headers we read and write. Multi-byte fields hold raw
//! network-order values; convert with `from_be`/`to_be` where arithmetic needs it.

/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86DD;
/// EtherType of an 802.1Q VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;

/// Ethernet header without VLAN tag.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EthHdr {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// EtherType, network order.
    pub proto: u16,
}

/// IPv4 header without options.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv4Hdr {
    /// Version (high nibble) and IHL in 32-bit words (low nibble).
    pub version_ihl: u8,
    /// DSCP and ECN.
    pub tos: u8,
    /// Total length, network order.
    pub tot_len: u16,
    /// Identification.
    pub id: u16,
    /// Flags and fragment offset, network order.
    pub frag_off: u16,
    /// Time to live.
    pub ttl: u8,
    /// Protocol.
    pub protocol: u8,
    /// Header checksum.
    pub check: u16,
    /// Source address (raw).
    pub saddr: u32,
    /// Destination address (raw).
    pub daddr: u32,
}

/// IPv4 "don't fragment" flag in host-order `frag_off`.
pub const IP_DF: u16 = 0x4000;
/// Length of an IPv4 header without options (`size_of::<Ipv4Hdr>()`).
pub const IPV4_HDR_LEN: usize = core::mem::size_of::<Ipv4Hdr>();
/// Length of the fixed IPv6 header (`size_of::<Ipv6Hdr>()`).
pub const IPV6_HDR_LEN: usize = core::mem::size_of::<Ipv6Hdr>();
const _: () = assert!(IPV4_HDR_LEN == 20 && IPV6_HDR_LEN == 40);
/// IPv4 "more fragments" flag and offset mask in host-order `frag_off`.
pub const IP_MF_OFFSET: u16 = 0x3FFF;

/// IPv6 fixed header.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv6Hdr {
    /// Version, traffic class and flow label, raw bytes.
    pub vtc_flow: [u8; 4],
    /// Payload length, network order.
    pub payload_len: u16,
    /// Next header.
    pub nexthdr: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Source address (raw words).
    pub saddr: [u32; 4],
    /// Destination address (raw words).
    pub daddr: [u32; 4],
}

/// The fixed part of a TCP header we look at.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TcpHdr {
    /// Source port (raw).
    pub source: u16,
    /// Destination port (raw).
    pub dest: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack_seq: u32,
    /// Data offset and reserved bits.
    pub doff_res: u8,
    /// Flags (CWR ECE URG ACK PSH RST SYN FIN).
    pub flags: u8,
    /// Window.
    pub window: u16,
    /// Checksum.
    pub check: u16,
    /// Urgent pointer.
    pub urg_ptr: u16,
}

/// TCP SYN flag.
pub const TCP_SYN: u8 = 0x02;
/// TCP ACK flag.
pub const TCP_ACK: u8 = 0x10;

/// UDP header.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UdpHdr {
    /// Source port (raw).
    pub source: u16,
    /// Destination port (raw).
    pub dest: u16,
    /// Length.
    pub len: u16,
    /// Checksum.
    pub check: u16,
}

/// ICMP / ICMPv6 header (the 4-byte rest is type specific).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IcmpHdr {
    /// Type.
    pub kind: u8,
    /// Code.
    pub code: u8,
    /// Checksum (raw).
    pub check: u16,
    /// Rest of header (identifier/sequence, unused/MTU, ...), raw bytes.
    pub rest: [u8; 4],
}
