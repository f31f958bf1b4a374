//! The balancer's maps. Sizes here are compile-time defaults; the daemon sets
//! the real ones at load time (`EbpfLoader::map_max_entries`).

use aya_ebpf::{
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
};
use lb_common::{
    AddrKey, Backend, ConnEntry, DEFAULT_CONN_TABLE_SIZE, DEFAULT_MAX_BACKENDS, DEFAULT_MAX_VIPS,
    DEFAULT_RING_SIZE, FlowKey, LbConfig, PktBytes, RateState, STAT_COUNT, VipKey, VipMeta,
};

const MAX_VIPS: usize = DEFAULT_MAX_VIPS as usize;
const MAX_BACKENDS: usize = DEFAULT_MAX_BACKENDS as usize;

#[btf_map]
pub static LB_VIPS: HashMap<VipKey, VipMeta, MAX_VIPS> = HashMap::new();

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

#[btf_map]
pub static LB_CONFIG: Array<LbConfig, 1> = Array::new();

#[btf_map]
pub static LB_ICMP_RATE: PerCpuArray<RateState, 1> = PerCpuArray::new();

#[btf_map]
pub static LB_STATS: PerCpuArray<u64, { STAT_COUNT as usize }> = PerCpuArray::new();

#[btf_map]
pub static LB_VIP_STATS: PerCpuArray<PktBytes, MAX_VIPS> = PerCpuArray::new();

#[btf_map]
pub static LB_BACKEND_STATS: PerCpuArray<PktBytes, MAX_BACKENDS> = PerCpuArray::new();

/// Maglev ring size, set at load time (`EbpfLoader::override_global`). Read it
/// only through [`ring_size`]: a plain read would be constant-folded to the
/// default at compile time.
#[unsafe(no_mangle)]
static LB_RING_SIZE: u32 = DEFAULT_RING_SIZE;

/// The ring size the program was loaded with.
#[inline(always)]
pub fn ring_size() -> u32 {
    unsafe { core::ptr::read_volatile(&LB_RING_SIZE) }
}
