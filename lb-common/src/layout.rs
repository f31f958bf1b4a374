//! The layout record: what the balancer's maps hold, byte for byte, as this
//! build defines them.
//!
//! Pinned maps outlive the program that made them, so a daemon of a newer
//! release may meet maps created by an older one. Loading a program against
//! maps whose keys or values changed shape would make it read one field as
//! another (or be refused by the verifier, if a value shrank). The daemon
//! therefore keeps this record beside the pins (a small array map, pinned as
//! `layout`: bpffs holds only BPF objects) and compares it with its own
//! before it adopts anything.
//!
//! Each map's fingerprint covers its kernel type and flags, its key and value
//! sizes, and every field of the `#[repr(C)]` types it stores: name, offset
//! and size. Reordering, renaming, resizing or retyping a field to another
//! size changes it; a change of *meaning* with the same shape (a counter
//! index reused for another counter) does not, which is why [`Stat`]
//! (crate::Stat) indices are only ever appended, and why
//! [`LAYOUT_REVISION`] exists: bump it when a field keeps its shape but
//! changes its meaning.

use core::mem::{offset_of, size_of};

use crate::{
    AddrKey, Backend, CaptureFilter, CaptureHeader, ConnEntry, Counters, FlowKey, FlowKey4,
    LbConfig, PktBytes, RateState, STAT_COUNT, VipKey, VipMeta,
};

/// Format of the record itself (entry 0's `kind`).
pub const LAYOUT_FORMAT: u32 = 1;

/// Bumped by hand when a map value keeps its shape but changes meaning.
pub const LAYOUT_REVISION: u64 = 1;

/// Name of the record's first entry, which describes the record.
pub const LAYOUT_HEADER_NAME: &str = "lb-layout";

/// Entries of the record map (the header and one per map, with room).
pub const LAYOUT_ENTRIES: u32 = 32;

/// Kernel map types (`enum bpf_map_type`) of the balancer's maps.
pub mod kind {
    /// `BPF_MAP_TYPE_HASH`.
    pub const HASH: u32 = 1;
    /// `BPF_MAP_TYPE_ARRAY`.
    pub const ARRAY: u32 = 2;
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    pub const PERCPU_ARRAY: u32 = 6;
    /// `BPF_MAP_TYPE_LRU_HASH`.
    pub const LRU_HASH: u32 = 9;
    /// `BPF_MAP_TYPE_RINGBUF`.
    pub const RINGBUF: u32 = 27;
}

/// One entry of the layout record: a map and the shape of what it holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapLayout {
    /// Map name, NUL-padded (the header entry: [`LAYOUT_HEADER_NAME`]).
    pub name: [u8; 24],
    /// Kernel map type ([`kind`]); the header: [`LAYOUT_FORMAT`].
    pub kind: u32,
    /// Key size in bytes; the header: the number of map entries after it.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Kernel map flags that change what the map is (`BPF_F_MMAPABLE`).
    pub flags: u32,
    /// FNV-1a over the above and every field of key and value.
    pub fingerprint: u64,
}
const _: () = assert!(size_of::<MapLayout>() == 48);

impl MapLayout {
    /// The map name as a string (up to the first NUL).
    pub fn name_str(&self) -> &str {
        let end = self.name.iter().position(|b| *b == 0).unwrap_or(24);
        core::str::from_utf8(&self.name[..end]).unwrap_or("?")
    }

    /// The record's header entry, for `maps` entries after it.
    pub const fn header(maps: u32) -> Self {
        Self {
            name: name24(LAYOUT_HEADER_NAME),
            kind: LAYOUT_FORMAT,
            key_size: maps,
            value_size: 0,
            flags: 0,
            fingerprint: LAYOUT_REVISION,
        }
    }
}

/// FNV-1a, 64 bits: a const-evaluable hash of a layout description.
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Fnv {
    /// The offset basis.
    pub const fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    /// Adds bytes.
    pub const fn bytes(mut self, b: &[u8]) -> Self {
        let mut i = 0;
        while i < b.len() {
            self.0 ^= b[i] as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            i += 1;
        }
        self
    }

    /// Adds a string and a separator (so "ab"+"c" differs from "a"+"bc").
    pub const fn str(self, s: &str) -> Self {
        self.bytes(s.as_bytes()).bytes(b"\0")
    }

    /// Adds a number.
    pub const fn num(self, n: u64) -> Self {
        self.bytes(&n.to_le_bytes())
    }

    /// The hash.
    pub const fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

/// Size of the field a projection points at.
const fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// Hashes a type's name, size and each listed field's name, offset and size.
macro_rules! shape {
    ($h:expr, $t:ident { $($f:ident),* $(,)? }) => {{
        let h = $h.str(stringify!($t)).num(size_of::<$t>() as u64);
        $(
            let h = h
                .str(stringify!($f))
                .num(offset_of!($t, $f) as u64)
                .num(field_size(|v: &$t| &v.$f) as u64);
        )*
        h
    }};
}

const fn name24(s: &str) -> [u8; 24] {
    let mut out = [0u8; 24];
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && i < 24 {
        out[i] = b[i];
        i += 1;
    }
    out
}

const fn entry(
    name: &str,
    kind: u32,
    key: usize,
    value: usize,
    flags: u32,
    fields: Fnv,
) -> MapLayout {
    let fp = fields
        .str(name)
        .num(kind as u64)
        .num(key as u64)
        .num(value as u64)
        .num(flags as u64)
        .num(LAYOUT_REVISION)
        .finish();
    MapLayout {
        name: name24(name),
        kind,
        key_size: key as u32,
        value_size: value as u32,
        flags,
        fingerprint: fp,
    }
}

/// `BPF_F_MMAPABLE`, which `LB_RING` is created with.
pub const BPF_F_MMAPABLE: u32 = 0x400;

const U32: Fnv = Fnv::new().str("u32").num(4);
const U64: Fnv = Fnv::new().str("u64").num(8);

const VIP_KEY: Fnv = shape!(
    Fnv::new(),
    VipKey {
        addr,
        port,
        proto,
        family
    }
);
const VIP_META: Fnv = shape!(
    VIP_KEY,
    VipMeta {
        index,
        flags,
        ring_half,
        _pad
    }
);
const ADDR_KEY: Fnv = shape!(
    Fnv::new(),
    AddrKey {
        addr,
        family,
        _pad1,
        _pad2
    }
);
const BACKEND: Fnv = shape!(
    U32,
    Backend {
        addr,
        family,
        flags,
        _pad,
        generation,
        vip,
        _pad2
    }
);
const CONN_ENTRY: Fnv = shape!(Fnv::new(), ConnEntry { slot, generation });
const FLOW_KEY: Fnv = shape!(
    CONN_ENTRY,
    FlowKey {
        src,
        dst,
        sport,
        dport,
        proto,
        _pad1,
        _pad2
    }
);
const FLOW_KEY4: Fnv = shape!(
    CONN_ENTRY,
    FlowKey4 {
        src,
        dst,
        sport,
        dport,
        proto,
        _pad1,
        _pad2
    }
);
const LB_CONFIG: Fnv = shape!(
    U32,
    LbConfig {
        gateway_mac,
        if_mac,
        mtu,
        hash_seed,
        v4_src,
        v4_src_mask,
        v6_src,
        v6_src_mask,
        icmp_too_big_rate,
        new_flow_rate,
        flags,
        gue_port,
        _pad
    }
);
const COUNTERS: Fnv = Fnv::new()
    .str("Counters")
    .num(size_of::<Counters>() as u64)
    .num(STAT_COUNT as u64);
const PKT_BYTES: Fnv = shape!(U32, PktBytes { packets, bytes });
const CAPTURE_FILTER: Fnv = shape!(
    U32,
    CaptureFilter {
        flags,
        snaplen,
        vip_addr,
        backend,
        vip_port,
        vip_proto,
        vip_family,
        backend_family,
        _pad1,
        _pad2
    }
);
const CAPTURE_RECORD: Fnv = shape!(
    Fnv::new().num(crate::CAPTURE_SNAP_MAX as u64),
    CaptureHeader {
        ts_ns,
        orig_len,
        cap_len,
        action,
        cpu,
        direction,
        sent_family,
        _pad,
        _pad2,
        sent_to
    }
);
const RATE_STATE: Fnv = shape!(U32, RateState { last_ns, credit_ns });

/// The layout of every map of the balancer object, as this build defines
/// it (the order of `lb-daemon`'s `MAP_NAMES`).
pub const MAP_LAYOUTS: [MapLayout; 16] = {
    use crate::maps::*;
    use kind::*;
    [
        entry(
            MAP_VIPS,
            HASH,
            size_of::<VipKey>(),
            size_of::<VipMeta>(),
            0,
            VIP_META,
        ),
        entry(
            MAP_VIP_ADDRS,
            HASH,
            size_of::<AddrKey>(),
            4,
            0,
            ADDR_KEY.str("count"),
        ),
        entry(MAP_VIP_FILTER, ARRAY, 4, 8, 0, U64.str("filter words")),
        entry(
            MAP_RING,
            ARRAY,
            4,
            8,
            BPF_F_MMAPABLE,
            U32.str("[u32; 2] ring slots"),
        ),
        entry(MAP_BACKENDS, ARRAY, 4, size_of::<Backend>(), 0, BACKEND),
        entry(
            MAP_CONN,
            LRU_HASH,
            size_of::<FlowKey>(),
            size_of::<ConnEntry>(),
            0,
            FLOW_KEY,
        ),
        entry(
            MAP_CONN4,
            LRU_HASH,
            size_of::<FlowKey4>(),
            size_of::<ConnEntry>(),
            0,
            FLOW_KEY4,
        ),
        entry(MAP_CONFIG, ARRAY, 4, size_of::<LbConfig>(), 0, LB_CONFIG),
        entry(
            MAP_STATS,
            PERCPU_ARRAY,
            4,
            size_of::<Counters>(),
            0,
            COUNTERS,
        ),
        entry(
            MAP_VIP_STATS,
            PERCPU_ARRAY,
            4,
            size_of::<PktBytes>(),
            0,
            PKT_BYTES,
        ),
        entry(
            MAP_BACKEND_STATS,
            PERCPU_ARRAY,
            4,
            size_of::<PktBytes>(),
            0,
            PKT_BYTES,
        ),
        entry(
            MAP_ICMP_RATE,
            PERCPU_ARRAY,
            4,
            size_of::<RateState>(),
            0,
            RATE_STATE,
        ),
        entry(
            MAP_NEW_FLOW_RATE,
            PERCPU_ARRAY,
            4,
            size_of::<RateState>(),
            0,
            RATE_STATE,
        ),
        entry(
            crate::MAP_CAPTURE,
            ARRAY,
            4,
            size_of::<CaptureFilter>(),
            0,
            CAPTURE_FILTER,
        ),
        entry(crate::MAP_CAPTURE_RING, RINGBUF, 0, 0, 0, CAPTURE_RECORD),
        entry(
            crate::MAP_CAPTURE_PENDING,
            PERCPU_ARRAY,
            4,
            8,
            0,
            U64.str("pending ts"),
        ),
    ]
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_distinct_and_fields_count() {
        for (i, a) in MAP_LAYOUTS.iter().enumerate() {
            for b in &MAP_LAYOUTS[i + 1..] {
                assert_ne!(
                    a.fingerprint,
                    b.fingerprint,
                    "{} {}",
                    a.name_str(),
                    b.name_str()
                );
            }
        }
        // Swapping two same-sized fields changes the shape's hash.
        fn ab() -> u64 {
            #[repr(C)]
            struct S {
                x: u32,
                y: u32,
            }
            let _ = S { x: 0, y: 0 }.x;
            shape!(Fnv::new(), S { x, y }).finish()
        }
        fn ba() -> u64 {
            #[repr(C)]
            struct S {
                y: u32,
                x: u32,
            }
            let _ = S { x: 0, y: 0 }.y;
            shape!(Fnv::new(), S { y, x }).finish()
        }
        assert_ne!(ab(), ba());
    }

    #[test]
    fn names_fit_and_round_trip() {
        for m in MAP_LAYOUTS {
            assert!(m.name_str().len() < 24);
            assert!(m.name_str().starts_with("LB_"));
        }
        assert_eq!(MapLayout::header(13).name_str(), LAYOUT_HEADER_NAME);
    }
}
