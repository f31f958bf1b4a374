//! Types shared by the `lb` XDP programs and the userspace daemon.
//!
//! Everything that crosses the kernel/user boundary lives here, once: map keys
//! and values (`#[repr(C)]`, explicit padding, size asserted at compile time),
//! map names, counter indices and the flow hash. The kernel side and the daemon
//! both compile this crate, so they cannot drift apart.
//!
//! Address convention: IP addresses are `[u32; 4]` holding the raw network-order
//! bytes exactly as they sit in the packet (`u32::from_ne_bytes(octets)`); an
//! IPv4 address uses word 0 and leaves words 1..3 zero. Ports are likewise the
//! raw network-order `u16` from the header. The XDP program can then copy fields
//! from the packet without byte swaps, and userspace converts with [`addr`].
#![no_std]
#![deny(missing_docs)]

pub mod addr;
pub mod bench;
pub mod capture;
pub mod hash;
pub mod layout;
pub mod maps;
pub mod probe;
pub mod stats;

pub use capture::*;
pub use hash::{encap_src_suffix, flow_hash, gue_src_port, ring_index, ring_pos, ring_reciprocal};
pub use maps::*;
pub use probe::{PROBE_MARK_MASK, PROBE_MARK_TAG, PROG_PROBE, probe_mark, probe_slot};
pub use stats::*;

/// Address family tag used in keys and backend entries: IPv4.
pub const FAMILY_V4: u8 = 4;
/// Address family tag used in keys and backend entries: IPv6.
pub const FAMILY_V6: u8 = 6;

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IPv6 next-header number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;
/// IP protocol number of IPv4-in-IP encapsulation.
pub const PROTO_IPIP: u8 = 4;
/// IP protocol number of IPv6-in-IP encapsulation.
pub const PROTO_IPV6: u8 = 41;

/// Default Maglev ring size (prime), used when the configuration names none.
pub const DEFAULT_RING_SIZE: u32 = 65537;
/// Default connection-table capacity (flows).
pub const DEFAULT_CONN_TABLE_SIZE: u32 = 1 << 20;
/// Default number of VIPs the maps are sized for.
pub const DEFAULT_MAX_VIPS: u32 = 64;
/// Default number of backend slots (one slot per VIP/backend pair).
pub const DEFAULT_MAX_BACKENDS: u32 = 16384;

/// Backend slot 0 is never allocated: a zero ring entry means "no backend"
/// (and a zeroed connection entry "no flow").
pub const SLOT_NONE: u32 = 0;

/// Outer header overhead of an IPv4 outer header.
pub const ENCAP_V4_OVERHEAD: u32 = 20;
/// Outer header overhead of an IPv6 outer header.
pub const ENCAP_V6_OVERHEAD: u32 = 40;
/// What GUE adds to the outer IP header: the UDP header (GUE "variant 1"
/// has no GUE header of its own, the UDP payload is the inner IP packet).
pub const ENCAP_GUE_OVERHEAD: u32 = 8;
/// Default outer UDP destination port of GUE (Katran's default, so mixed
/// fleets agree without configuration).
pub const DEFAULT_GUE_PORT: u16 = 6080;
