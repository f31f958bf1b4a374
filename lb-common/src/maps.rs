//! Map names and the `#[repr(C)]` keys and values stored in them.
//!
//! Each struct spells out its padding and has a compile-time size assert: the
//! kernel compares key/value sizes byte for byte, and an implicit padding byte
//! left uninitialised would make two equal keys hash differently.

/// VIP table: [`VipKey`] -> [`VipMeta`].
pub const MAP_VIPS: &str = "LB_VIPS";
/// Addresses that carry at least one VIP: [`AddrKey`] -> `u32` (VIP count).
/// Lets the program tell "for a VIP but malformed" from "not ours".
pub const MAP_VIP_ADDRS: &str = "LB_VIP_ADDRS";
/// A bitmap over hashed destination addresses ([`vip_filter_bucket`]), two
/// bits per bucket ([`FILTER_VIP`], [`FILTER_VIP_FIRST`]), as an array of
/// `u64` words: the first question every packet asks, answered with one
/// array read instead of a hash lookup. A clear bucket means "certainly not a
/// VIP address"; a set one means "maybe" (two addresses may share a bucket),
/// and the exact maps decide. Kept by the daemon in step with
/// [`MAP_VIP_ADDRS`] and the VIP flags.
pub const MAP_VIP_FILTER: &str = "LB_VIP_FILTER";
/// Maglev rings, all VIPs, double-buffered, as one dense array of `u32`
/// backend slots addressed by [`crate::ring_index`]. Stored as `[u32; 2]`
/// elements (element `i / 2`, lane `i % 2`) because array map elements are
/// 8-byte aligned: a plain `u32` value would waste half the memory. The map is
/// `BPF_F_MMAPABLE`, so userspace sees exactly the dense `u32` array.
pub const MAP_RING: &str = "LB_RING";
/// Backend slots: `u32` slot -> [`Backend`].
pub const MAP_BACKENDS: &str = "LB_BACKENDS";
/// Connection table of IPv6 flows, one LRU hash shared by all CPUs:
/// [`FlowKey`] -> [`ConnEntry`], one entry per flow seen from every CPU.
pub const MAP_CONN: &str = "LB_CONN";
/// Connection table of IPv4 flows: [`FlowKey4`] -> [`ConnEntry`], otherwise
/// as [`MAP_CONN`].
pub const MAP_CONN4: &str = "LB_CONN4";
/// Single-entry control array: `0` -> [`LbConfig`].
pub const MAP_CONFIG: &str = "LB_CONFIG";
/// Per-CPU global counters: index 0 -> [`crate::Counters`] (one record per
/// CPU, indexed by [`crate::Stat`]).
pub const MAP_STATS: &str = "LB_STATS";
/// Per-CPU per-VIP traffic: VIP index -> [`PktBytes`].
pub const MAP_VIP_STATS: &str = "LB_VIP_STATS";
/// Per-CPU per-backend-slot traffic: slot -> [`PktBytes`].
pub const MAP_BACKEND_STATS: &str = "LB_BACKEND_STATS";
/// Per-CPU token bucket of the ICMP "too big" limit: index 0 -> [`RateState`].
pub const MAP_ICMP_RATE: &str = "LB_ICMP_RATE";
/// Per-CPU token bucket of new connection-table entries: index 0 -> [`RateState`].
pub const MAP_NEW_FLOW_RATE: &str = "LB_NEW_FLOW_RATE";
/// Host addresses `lb_decap` decapsulates for: [`AddrKey`] -> `u32` (unused).
pub const MAP_DECAP_ADDRS: &str = "LB_DECAP_ADDRS";
/// Per-CPU decap counters: [`crate::DecapStat`] index -> `u64`.
pub const MAP_DECAP_STATS: &str = "LB_DECAP_STATS";

/// Name of the load-time global holding the Maglev ring size.
pub const GLOBAL_RING_SIZE: &str = "LB_RING_SIZE";
/// Name of the load-time global holding [`crate::ring_reciprocal`] of the
/// ring size, which turns the per-flow `hash % M` into multiplications.
pub const GLOBAL_RING_RECIPROCAL: &str = "LB_RING_RECIPROCAL";

/// Name of `lb_decap`'s load-time global holding the GUE port it
/// decapsulates (raw network order in the low 16 bits; 0 = GUE off).
pub const GLOBAL_DECAP_GUE_PORT: &str = "LB_DECAP_GUE_PORT";

/// Buckets of [`MAP_VIP_FILTER`] (a power of two).
pub const VIP_FILTER_BUCKETS: u32 = 1 << 15;
/// Buckets per `u64` word of [`MAP_VIP_FILTER`] (two bits each).
pub const VIP_FILTER_PER_WORD: u32 = 32;
/// Words of [`MAP_VIP_FILTER`].
pub const VIP_FILTER_WORDS: u32 = VIP_FILTER_BUCKETS / VIP_FILTER_PER_WORD;
/// Filter bit (of a bucket's two): some VIP address hashes to this bucket.
pub const FILTER_VIP: u64 = 1;
/// Filter bit: some VIP on an address of this bucket has flags
/// ([`VIP_F_NO_SPORT`], [`VIP_F_NO_CONNTRACK`]) that need the VIP entry
/// before the connection table can be asked; packets to such buckets look
/// the VIP up first. Only a speed hint: either order forwards the same way.
pub const FILTER_VIP_FIRST: u64 = 2;

/// The [`MAP_VIP_FILTER`] bucket of an address (map layout, as in the
/// packet): the four words folded, then a multiplicative hash (Knuth) whose
/// top bits pick the bucket. Not a secret hash: a collision only costs the
/// colliding packet the exact lookups it would have needed anyway.
#[inline(always)]
pub const fn vip_filter_bucket(addr: &[u32; 4]) -> u32 {
    let fold = addr[0] ^ addr[1] ^ addr[2] ^ addr[3];
    fold.wrapping_mul(0x9e37_79b1) >> (32 - 15)
}

/// VIP flag: hash without the source port (all flows of a client address go
/// to one backend; e.g. for protocols with several related connections).
pub const VIP_F_NO_SPORT: u32 = 1 << 0;
/// VIP flag: never use the connection table, every packet takes the ring.
pub const VIP_F_NO_CONNTRACK: u32 = 1 << 1;
/// All VIP flags an operator sets (the API's, persisted with the VIP).
pub const VIP_F_ALL: u32 = VIP_F_NO_SPORT | VIP_F_NO_CONNTRACK;
/// VIP flag set by the daemon, never by an operator: some backend of the
/// VIP is being drained, and the *standby* half of its double-buffered ring
/// (`ring_half ^ 1`) holds the VIP's pre-drain table, in which the draining
/// backends keep the weight they had before the drain. A TCP packet that is
/// not a SYN and misses the connection table is sent to the backend that
/// table names at its position when that backend is still draining
/// ([`BACKEND_F_DRAINING`]), so an established flow of a draining backend
/// survives losing its entry (another node, a restart, an LRU eviction).
/// Written with the flip that publishes the ring, so it changes atomically
/// with the tables it describes.
pub const VIP_F_DRAIN_FALLBACK: u32 = 1 << 8;

/// Backend flag: the slot is allocated and may be forwarded to.
pub const BACKEND_F_VALID: u8 = 1 << 0;
/// Backend flag: the operator drained this backend (weight set to 0 from a
/// weight above 0) and the drain has not ended (the backend was neither
/// deleted nor given a weight again). Only such a slot is taken by the
/// pre-drain fallback ([`VIP_F_DRAIN_FALLBACK`]); a deleted backend's slot
/// is invalid, and a backend that is down (health checks) or was created
/// with weight 0 never carries it, so their flows go elsewhere.
pub const BACKEND_F_DRAINING: u8 = 1 << 1;

const _: () = assert!(
    VIP_FILTER_BUCKETS == 1 << 15,
    "vip_filter_bucket takes 15 bits"
);

/// Key of [`MAP_VIPS`]: a service address, port (0 = all ports) and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    /// Address, map layout.
    pub addr: [u32; 4],
    /// Port, raw network order; 0 for an all-port VIP.
    pub port: u16,
    /// IP protocol ([`crate::PROTO_TCP`] or [`crate::PROTO_UDP`]).
    pub proto: u8,
    /// [`crate::FAMILY_V4`] or [`crate::FAMILY_V6`].
    pub family: u8,
}
const _: () = assert!(core::mem::size_of::<VipKey>() == 20);

/// Value of [`MAP_VIPS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipMeta {
    /// Index of the VIP's ring pair and of its counters.
    pub index: u32,
    /// `VIP_F_*` flags.
    pub flags: u32,
    /// Which half of the VIP's double-buffered ring is live (0 or 1). Userspace
    /// writes the other half, then flips this in one map update.
    pub ring_half: u32,
    /// Explicit padding.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<VipMeta>() == 16);

/// Key of [`MAP_VIP_ADDRS`] and [`MAP_DECAP_ADDRS`]: an address alone.
///
/// Padding is a `u8` and a `u16`, not `[u8; 3]`: LLVM zeroes a 3-byte array
/// with a call to `memset`, which in BPF is a bpf-to-bpf call per key built.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrKey {
    /// Address, map layout.
    pub addr: [u32; 4],
    /// [`crate::FAMILY_V4`] or [`crate::FAMILY_V6`].
    pub family: u8,
    /// Explicit padding.
    pub _pad1: u8,
    /// Explicit padding.
    pub _pad2: u16,
}
const _: () = assert!(core::mem::size_of::<AddrKey>() == 20);

impl AddrKey {
    /// The key of `addr` (map layout) of `family`.
    #[inline(always)]
    pub const fn new(addr: [u32; 4], family: u8) -> Self {
        Self {
            addr,
            family,
            _pad1: 0,
            _pad2: 0,
        }
    }
}

/// Value of [`MAP_BACKENDS`]: where a backend slot forwards to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// Backend address, map layout.
    pub addr: [u32; 4],
    /// [`crate::FAMILY_V4`] or [`crate::FAMILY_V6`]: picks the outer header.
    pub family: u8,
    /// `BACKEND_F_*` flags.
    pub flags: u8,
    /// Explicit padding.
    pub _pad: u16,
    /// Bumped each time the slot is (re)allocated. A connection entry records
    /// the generation it was made with; a mismatch means the slot was freed
    /// (and maybe handed to another server) since, so the flow is re-hashed.
    pub generation: u32,
    /// Index of the VIP this slot serves (slots are per VIP/backend pair):
    /// a connection-table hit finds its VIP's counters here, without a VIP
    /// lookup.
    pub vip: u32,
    /// Explicit padding.
    pub _pad2: u32,
}
const _: () = assert!(core::mem::size_of::<Backend>() == 32);

impl Backend {
    /// A valid slot forwarding to `addr` (map layout) of `family` for VIP
    /// index `vip`, under `generation`.
    pub const fn valid(addr: [u32; 4], family: u8, generation: u32, vip: u32) -> Self {
        Self {
            addr,
            family,
            flags: BACKEND_F_VALID,
            _pad: 0,
            generation,
            vip,
            _pad2: 0,
        }
    }
}

/// Key of [`MAP_CONN`]: the flow's 5-tuple as seen on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Client address, map layout.
    pub src: [u32; 4],
    /// VIP address, map layout.
    pub dst: [u32; 4],
    /// Client port, raw network order.
    pub sport: u16,
    /// VIP port, raw network order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// Explicit padding (a `u8` and a `u16`: see [`AddrKey`]).
    pub _pad1: u8,
    /// Explicit padding.
    pub _pad2: u16,
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

impl FlowKey {
    /// The key of a flow (addresses in map layout, raw ports).
    #[inline(always)]
    pub const fn new(src: [u32; 4], dst: [u32; 4], sport: u16, dport: u16, proto: u8) -> Self {
        Self {
            src,
            dst,
            sport,
            dport,
            proto,
            _pad1: 0,
            _pad2: 0,
        }
    }
}

/// Key of [`MAP_CONN4`]: an IPv4 flow's 5-tuple as seen on the wire. A
/// table of its own because the kernel hashes (jhash) and compares the
/// whole key on every lookup and insert: 16 bytes instead of the 40 an IPv6
/// flow needs take two jhash rounds and 24 compared bytes off every IPv4
/// packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey4 {
    /// Client address, map layout.
    pub src: u32,
    /// VIP address, map layout.
    pub dst: u32,
    /// Client port, raw network order.
    pub sport: u16,
    /// VIP port, raw network order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// Explicit padding (a `u8` and a `u16`: see [`AddrKey`]).
    pub _pad1: u8,
    /// Explicit padding.
    pub _pad2: u16,
}
const _: () = assert!(core::mem::size_of::<FlowKey4>() == 16);

impl FlowKey4 {
    /// The key of an IPv4 flow (addresses in map layout, raw ports).
    #[inline(always)]
    pub const fn new(src: u32, dst: u32, sport: u16, dport: u16, proto: u8) -> Self {
        Self {
            src,
            dst,
            sport,
            dport,
            proto,
            _pad1: 0,
            _pad2: 0,
        }
    }
}

/// Value of [`MAP_CONN`] and [`MAP_CONN4`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnEntry {
    /// Backend slot the flow is pinned to ([`crate::SLOT_NONE`] = none).
    pub slot: u32,
    /// The slot's generation when the flow was pinned.
    pub generation: u32,
}
const _: () = assert!(core::mem::size_of::<ConnEntry>() == 8);

/// Value of [`MAP_CONFIG`] index 0: node-wide data-plane settings.
///
/// Outer source addresses: IPv4 `src = (v4_src & v4_src_mask) | (suffix &
/// !v4_src_mask)` with the per-flow suffix of [`crate::encap_src_suffix`]; a
/// /32 mask gives a fixed source. IPv6 takes words 0..2 of `v6_src` and crafts
/// word 3 the same way with `v6_src_mask` (a /96 prefix crafts, /128 is fixed).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbConfig {
    /// Next-hop MAC all encapsulated packets are sent to.
    pub gateway_mac: [u8; 6],
    /// The interface's own MAC (source of everything we transmit). All zero:
    /// use the received frame's destination MAC instead.
    pub if_mac: [u8; 6],
    /// Largest outer IP packet (bytes, L3) the path to backends carries.
    pub mtu: u32,
    /// Fleet-wide flow hash seed.
    pub hash_seed: u32,
    /// Outer IPv4 source prefix (map layout word).
    pub v4_src: u32,
    /// Mask of the fixed part of `v4_src` (network order bytes, map layout).
    pub v4_src_mask: u32,
    /// Outer IPv6 source prefix, map layout.
    pub v6_src: [u32; 4],
    /// Mask of the fixed part of `v6_src` word 3 (map layout).
    pub v6_src_mask: u32,
    /// ICMP "too big" replies allowed per second and CPU (burst: one
    /// second's worth); 0 = unlimited. Without a limit, a client (or a
    /// spoofer) sending large DF packets gets one reply per packet.
    pub icmp_too_big_rate: u32,
    /// New connection-table entries allowed per second and CPU (burst: one
    /// second's worth); 0 = unlimited. Past it a new flow is forwarded by
    /// the ring alone, unpinned ([`crate::Stat::NewFlowUnpinned`]), so a SYN
    /// flood cannot evict established flows from the LRU table.
    pub new_flow_rate: u32,
    /// Switches, `LB_CFG_F_*` bits.
    pub flags: u32,
    /// Encapsulation: 0 = IP-in-IP; otherwise GUE (IP in UDP) to this outer
    /// UDP destination port, raw network order. One field for both, so the
    /// packet path decides with one load.
    pub gue_port: u16,
    /// Explicit padding.
    pub _pad: u16,
}

/// [`LbConfig::flags`]: ICMP errors about VIP flows (IPv4 "destination
/// unreachable", ICMPv6 "destination unreachable" and "packet too big") that
/// reach the LB are encapsulated to the backend of the flow they quote, so
/// path MTU discovery works with direct server return. Clear: they are passed
/// to the LB host's kernel, which cannot use them.
pub const LB_CFG_F_FORWARD_ICMP_ERRORS: u32 = 1;
const _: () = assert!(core::mem::size_of::<LbConfig>() == 64);

/// State of a per-CPU token bucket (`LB_ICMP_RATE`, `LB_NEW_FLOW_RATE`):
/// credit in nanoseconds times the bucket's rate, one event costs 10^9.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateState {
    /// `bpf_ktime_get_coarse_ns` of the last refill.
    pub last_ns: u64,
    /// Unspent credit (nanoseconds x rate), at most one second's worth.
    pub credit_ns: u64,
}
const _: () = assert!(core::mem::size_of::<RateState>() == 16);

/// Packet and byte counter pair (bytes are L3 lengths as received).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PktBytes {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<PktBytes>() == 16);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are #[repr(C)], contain only integers and have no
    // implicit padding (sizes asserted above).
    unsafe impl aya::Pod for VipKey {}
    unsafe impl aya::Pod for VipMeta {}
    unsafe impl aya::Pod for AddrKey {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowKey4 {}
    unsafe impl aya::Pod for ConnEntry {}
    unsafe impl aya::Pod for LbConfig {}
    unsafe impl aya::Pod for PktBytes {}
    unsafe impl aya::Pod for crate::Counters {}
    unsafe impl aya::Pod for RateState {}
    unsafe impl aya::Pod for crate::layout::MapLayout {}
    unsafe impl aya::Pod for crate::capture::CaptureFilter {}
    unsafe impl aya::Pod for crate::capture::CaptureHeader {}
    unsafe impl aya::Pod for crate::bench::Template {}
}
