//! Where a backend is chosen: VIP lookup, the connection table, the Maglev ring.

use lb_common::{
    BACKEND_F_VALID, Backend, ConnEntry, FlowKey, SLOT_NONE, Stat, VIP_F_NO_CONNTRACK,
    VIP_F_NO_SPORT, VipKey, VipMeta, flow_hash,
};

use crate::{
    maps::{LB_BACKENDS, LB_CONN, LB_RING, LB_VIPS, ring_size},
    parse::Packet,
    stats,
    variant::{Stage, Variant, stop},
};

/// The VIP serving this packet: the exact (address, port, protocol) entry, or
/// the all-port entry (port 0) of the address.
#[inline(always)]
pub fn vip_of(pkt: &Packet) -> Option<VipMeta> {
    let mut key = VipKey {
        addr: pkt.dst,
        port: pkt.dport,
        proto: pkt.proto,
        family: pkt.family,
    };
    if let Some(v) = LB_VIPS.get_ptr(key) {
        return Some(unsafe { *v });
    }
    key.port = 0;
    LB_VIPS.get_ptr(key).map(|v| unsafe { *v })
}

/// A backend slot that may be forwarded to.
#[derive(Clone, Copy)]
pub struct Chosen {
    /// The slot (index into `LB_BACKENDS` and the backend counters).
    pub slot: u32,
    /// Its entry.
    pub backend: Backend,
}

#[inline(always)]
fn backend_at(slot: u32) -> Option<Backend> {
    if slot == SLOT_NONE {
        return None;
    }
    let b = unsafe { *LB_BACKENDS.get_ptr(slot)? };
    if b.flags & BACKEND_F_VALID == 0 {
        return None;
    }
    Some(b)
}

/// What [`choose`] found.
pub enum Choice {
    /// Forward to this backend.
    Backend(Chosen),
    /// The VIP has no backend (empty ring).
    NoBackend,
    /// A bench variant reached its checkpoint (never in production).
    Stopped,
}

/// Picks the backend for `pkt` on `vip`.
#[inline(always)]
pub fn choose<B: Variant>(pkt: &Packet, vip: &VipMeta, seed: u32) -> Choice {
    // With "no source port" the port is left out of the hash *and* the
    // connection key, so every flow of a client shares one pinned backend.
    let sport = if vip.flags & VIP_F_NO_SPORT != 0 {
        0
    } else {
        pkt.sport
    };
    let key = FlowKey {
        src: pkt.src,
        dst: pkt.dst,
        sport,
        dport: pkt.dport,
        proto: pkt.proto,
        _pad: [0; 3],
    };
    let use_conn = vip.flags & VIP_F_NO_CONNTRACK == 0;

    // A SYN starts a new connection: it must follow the current ring even if a
    // stale entry for the same 5-tuple (port reuse) is still cached.
    if use_conn && !pkt.syn {
        let found = LB_CONN.get_ptr(key);
        if stop::<B>(Stage::Conn, found.map_or(0, |e| e as u64)) {
            return Choice::Stopped;
        }
        match found {
            Some(e) if unsafe { (*e).slot } != SLOT_NONE => {
                let e = unsafe { *e };
                let b = backend_at(e.slot);
                if stop::<B>(Stage::Backend, b.map_or(0, |b| b.addr[0] as u64)) {
                    return Choice::Stopped;
                }
                match b {
                    Some(b) if b.generation == e.generation => {
                        stats::inc::<B>(Stat::ConnHit);
                        return Choice::Backend(Chosen {
                            slot: e.slot,
                            backend: b,
                        });
                    }
                    // The slot was freed (and maybe reused for another
                    // server) since the flow was pinned: re-hash it.
                    _ => stats::inc::<B>(Stat::ConnStale),
                }
            }
            _ => stats::inc::<B>(Stat::ConnMiss),
        }
    }

    stats::inc::<B>(Stat::RingLookup);
    let m = ring_size();
    if m == 0 {
        return Choice::NoBackend;
    }
    let h = flow_hash(seed, &pkt.src, &pkt.dst, sport, pkt.dport, pkt.proto);
    let idx = (vip.index.wrapping_mul(2).wrapping_add(vip.ring_half & 1))
        .wrapping_mul(m)
        .wrapping_add(h % m);
    // Two ring positions per array element: see `lb_common::MAP_RING`.
    let Some(pair) = LB_RING.get_ptr(idx >> 1) else {
        return Choice::NoBackend;
    };
    let slot = unsafe { (*pair)[(idx & 1) as usize] };
    let Some(backend) = backend_at(slot) else {
        return Choice::NoBackend;
    };
    if stop::<B>(Stage::Ring, backend.addr[0] as u64) {
        return Choice::Stopped;
    }
    if use_conn {
        let entry = ConnEntry {
            slot,
            generation: backend.generation,
        };
        let r = LB_CONN.insert(key, entry, 0);
        if stop::<B>(Stage::Insert, r.is_ok() as u64) {
            return Choice::Stopped;
        }
        match r {
            Ok(()) => stats::inc::<B>(Stat::NewFlow),
            Err(_) => stats::inc::<B>(Stat::ConnInsertFailed),
        }
    }
    Choice::Backend(Chosen { slot, backend })
}
