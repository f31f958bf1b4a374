//! The balancer's maps. Sizes here are compile-time defaults; the daemon sets
//! the real ones at load time (`EbpfLoader::map_max_entries`).
//!
//! Why each type (the costs are measured in bench/README.md, "Per-stage
//! cost"):
//! * array maps (`Array`, `PerCpuArray`) for everything indexed by a small
//!   integer: the verifier inlines their lookup into a bounds check and an
//!   address computation, no function call;
//! * hash maps only where the key is sparse (addresses, 5-tuples): a lookup
//!   hashes the whole key (jhash) and compares it, some 15-40 ns;
//! * per-CPU arrays for counters: each CPU adds to its own copy without
//!   atomics, and userspace sums the copies.

use aya_ebpf::{
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    macros::btf_map,
};
use lb_common::{
    AddrKey, Backend, CAPTURE_RING_BYTES, CaptureFilter, CaptureRecord, ConnEntry, Counters,
    DEFAULT_CONN_TABLE_SIZE, DEFAULT_MAX_BACKENDS, DEFAULT_MAX_VIPS, DEFAULT_RING_SIZE, FlowKey,
    FlowKey4, LbConfig, PktBytes, RateState, VIP_FILTER_WORDS, VipKey, VipMeta, ring_reciprocal,
};

const MAX_VIPS: usize = DEFAULT_MAX_VIPS as usize;
const MAX_BACKENDS: usize = DEFAULT_MAX_BACKENDS as usize;

/// "Could this destination be a VIP address?" in one array read (see
/// `lb_common::MAP_VIP_FILTER`). Most traffic an LB host sees is not for a
/// VIP; this answers it for the price of a multiply and a load.
#[btf_map]
pub static LB_VIP_FILTER: Array<u64, { VIP_FILTER_WORDS as usize }> = Array::new();

#[btf_map]
pub static LB_VIPS: HashMap<VipKey, VipMeta, MAX_VIPS> = HashMap::new();

/// The exact set of VIP addresses, asked only when the filter says "maybe"
/// and the answer matters: a malformed packet (drop it if for a VIP, pass it
/// otherwise) and ICMP echo.
#[btf_map]
pub static LB_VIP_ADDRS: HashMap<AddrKey, u32, MAX_VIPS> = HashMap::new();

#[btf_map]
pub static LB_RING: Array<[u32; 2], { MAX_VIPS * DEFAULT_RING_SIZE as usize }, BPF_F_MMAPABLE> =
    Array::new();

/// `BPF_F_MMAPABLE`: the daemon writes ring halves through a shared mapping,
/// one store per changed position instead of one syscall each.
const BPF_F_MMAPABLE: usize = 0x400;

#[btf_map]
pub static LB_BACKENDS: Array<Backend, MAX_BACKENDS> = Array::new();

/// The connection table: one entry per flow, visible from every CPU, in one
/// LRU of the full size (the kernel still keeps per-CPU free lists, so inserts
/// rarely touch the shared list). Not a per-CPU *value* map: a flow whose
/// packets move to another CPU (RSS table change, veth, generic XDP) would
/// miss there and be re-hashed, which after a drain or ring change sends an
/// established connection to another server. Not `BPF_F_NO_COMMON_LRU`
/// either: that splits the capacity per CPU, so traffic concentrated on one
/// CPU could use only 1/ncpus of the table (measured in bench/).
#[btf_map]
pub static LB_CONN: LruHashMap<FlowKey, ConnEntry, { DEFAULT_CONN_TABLE_SIZE as usize }> =
    LruHashMap::new();

/// The same for IPv4 flows, with a 16-byte key (see `lb_common::FlowKey4`).
#[btf_map]
pub static LB_CONN4: LruHashMap<FlowKey4, ConnEntry, { DEFAULT_CONN_TABLE_SIZE as usize }> =
    LruHashMap::new();

#[btf_map]
pub static LB_CONFIG: Array<LbConfig, 1> = Array::new();

#[btf_map]
pub static LB_ICMP_RATE: PerCpuArray<RateState, 1> = PerCpuArray::new();

/// This CPU's budget of new connection-table entries (`rate`, `flow`).
#[btf_map]
pub static LB_NEW_FLOW_RATE: PerCpuArray<RateState, 1> = PerCpuArray::new();

/// One record of every global counter per CPU: looked up once per packet.
#[btf_map]
pub static LB_STATS: PerCpuArray<Counters, 1> = PerCpuArray::new();

/// The capture switch and filter (see `capture`): every packet reads its
/// `flags` once; everything else only while a capture runs.
#[btf_map]
pub static LB_CAPTURE: Array<CaptureFilter, 1> = Array::new();

/// Where captured frames go: a BPF ring buffer, one for all CPUs (records
/// keep their order, the daemon waits on one fd). `bpf_ringbuf_reserve`
/// fails instead of blocking when it is full, so a slow reader costs
/// capture records, never packets.
#[btf_map]
pub static LB_CAPTURE_RING: RingBuf<CaptureRecord, { CAPTURE_RING_BYTES as usize }> =
    RingBuf::new();

/// The frame this CPU is capturing (see `lb_common::MAP_CAPTURE_PENDING`).
#[btf_map]
pub static LB_CAPTURE_PENDING: PerCpuArray<u64, 1> = PerCpuArray::new();

#[btf_map]
pub static LB_VIP_STATS: PerCpuArray<PktBytes, MAX_VIPS> = PerCpuArray::new();

#[btf_map]
pub static LB_BACKEND_STATS: PerCpuArray<PktBytes, MAX_BACKENDS> = PerCpuArray::new();

/// Maglev ring size, set at load time (`EbpfLoader::override_global`). Read it
/// only through [`ring_size`]: a plain read would be constant-folded to the
/// default at compile time.
#[unsafe(no_mangle)]
static LB_RING_SIZE: u32 = DEFAULT_RING_SIZE;

/// `lb_common::ring_reciprocal(LB_RING_SIZE)`, set at load time with it.
#[unsafe(no_mangle)]
static LB_RING_RECIPROCAL: u64 = ring_reciprocal(DEFAULT_RING_SIZE);

/// The ring size the program was loaded with.
#[inline(always)]
pub fn ring_size() -> u32 {
    // SAFETY: a read of our own static; volatile so the load-time value is used.
    unsafe { core::ptr::read_volatile(&LB_RING_SIZE) }
}

/// The reciprocal of the ring size the program was loaded with.
#[inline(always)]
pub fn ring_reciprocal_of_size() -> u64 {
    // SAFETY: as in `ring_size`.
    unsafe { core::ptr::read_volatile(&LB_RING_RECIPROCAL) }
}
