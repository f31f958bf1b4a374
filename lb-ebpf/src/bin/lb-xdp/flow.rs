//! Where a backend is chosen: the connection table, the VIP entry, the
//! Maglev ring.
//!
//! The order is the one that makes the common packet cheap. Most packets
//! belong to an established flow, so the connection table is asked first,
//! with the 5-tuple straight from the parser: a hit names the backend slot,
//! and the slot names its VIP (slots are per VIP/backend pair), so an
//! established flow costs one hash lookup. Only a miss, a SYN, or an address
//! whose VIPs have flags (the filter's `FILTER_VIP_FIRST`: "no source port"
//! changes the key, "no conntrack" skips the table) looks the VIP up first.
//!
//! Why a hit needs no VIP lookup to be safe: an entry is only ever followed
//! if its slot is valid *and* has the generation the entry was made with. A
//! deleted VIP frees its slots (invalid, new generation), so its flows are
//! stale before the VIP could be re-created; a drained backend keeps its slot
//! and generation, so its flows carry on. Counters of a miss or a stale entry
//! are only counted once the VIP is known to exist, exactly as before.
//!
//! Why a new flow may go unpinned: the table is an LRU of fixed size, and
//! every new flow's insert evicts the least recently used entry once it is
//! full. A SYN flood from random sources is a stream of new flows, so
//! without a limit it pushes established (especially idle) flows out; if
//! such a flow's backend is drained or the ring changed meanwhile, its next
//! packet is re-hashed to another server, which answers with a RST. So each
//! CPU may insert at most `LbConfig::new_flow_rate` entries per second (a
//! token bucket, `rate`); past that, a new flow is forwarded by the ring
//! alone and counted as `NewFlowUnpinned`. The ring sends it to the same
//! backend as the insert would have, so nothing changes for it unless the
//! ring changes before one of its later packets gets a budgeted insert.
//!
//! Why a miss may go to a drained backend: draining (weight 0) takes a
//! backend out of the ring but keeps its slot, so its pinned flows carry
//! on. A flow of it that misses the table anyway (it arrives at another LB
//! node after ECMP moved it, the table was lost in a restart, or the LRU
//! evicted it while idle) would be re-hashed on the current ring, which no
//! longer names that backend: the new one answers with a RST. So while a
//! VIP has a draining backend (`VIP_F_DRAIN_FALLBACK`), the daemon keeps
//! the VIP's *pre-drain* table in the standby half of the ring (the half
//! no packet forwards by), and a TCP packet that is not a SYN and misses
//! the table looks at its position there: if that names a backend that is
//! still draining (`BACKEND_F_DRAINING`), the flow goes there and its entry
//! is re-created. A SYN always takes the current ring, so new connections
//! still avoid the drained backend. Not for UDP: with no SYN to tell a new
//! flow from an established one, every new UDP flow at those positions
//! would be sent to the drained backend. What it cannot know: a flow that
//! *started* after the drain at such a position and then lost its entry is
//! sent to the drained backend too (docs/packet-path.md, "Drains").

use lb_common::{
    BACKEND_F_DRAINING, BACKEND_F_VALID, ConnEntry, FAMILY_V4, FlowKey, FlowKey4, LbConfig,
    PROTO_TCP, SLOT_NONE, Stat, VIP_F_DRAIN_FALLBACK, VIP_F_NO_CONNTRACK, VIP_F_NO_SPORT, VipKey,
    VipMeta, flow_hash, ring_index, ring_pos,
};

use crate::{
    maps::{
        LB_BACKENDS, LB_CONN, LB_CONN4, LB_NEW_FLOW_RATE, LB_RING, LB_VIPS,
        ring_reciprocal_of_size, ring_size,
    },
    parse::Packet,
    rate,
    stats::Tally,
    variant::{Stage, Variant, stop},
};

/// The VIP serving this packet: the exact (address, port, protocol) entry, or
/// the all-port entry (port 0) of the address.
#[inline(always)]
fn vip_of(pkt: &Packet) -> Option<VipMeta> {
    let mut key = VipKey {
        addr: pkt.dst,
        port: pkt.dport,
        proto: pkt.proto,
        family: pkt.family,
    };
    // SAFETY: a pointer from a hash-map lookup stays valid for this program
    // run (RCU); VipMeta is 16 plain bytes.
    if let Some(v) = LB_VIPS.get_ptr(key) {
        return Some(unsafe { *v });
    }
    key.port = 0;
    LB_VIPS.get_ptr(key).map(|v| unsafe { *v })
}

/// The backend a packet goes to: what encapsulation and counters need.
#[derive(Clone, Copy)]
pub struct Chosen {
    /// The slot (index into `LB_BACKENDS` and the backend counters).
    pub slot: u32,
    /// The VIP's index (its counters).
    pub vip: u32,
    /// Backend address, map layout.
    pub addr: [u32; 4],
    /// Backend address family: picks the outer header.
    pub family: u8,
}

/// What [`choose`] found.
pub enum Choice {
    /// Forward to this backend.
    Backend(Chosen),
    /// No VIP on this address, port and protocol: not ours.
    NotServed,
    /// The VIP has no backend (empty ring).
    NoBackend,
    /// A bench variant reached its checkpoint (never in production).
    Stopped,
}

/// What the connection table said about a flow.
enum Lookup {
    Hit(Chosen),
    Miss,
    /// An entry whose slot was freed (or reused) since: re-hash the flow.
    Stale,
    Stopped,
}

/// A flow's key in the connection table of its family. The family is a
/// constant in each per-family copy of the packet path (see `main`), so the
/// `match`es below compile to one table each.
enum ConnKey {
    V4(FlowKey4),
    V6(FlowKey),
}

impl ConnKey {
    #[inline(always)]
    fn new(pkt: &Packet) -> Self {
        if pkt.family == FAMILY_V4 {
            ConnKey::V4(FlowKey4::new(
                pkt.src[0], pkt.dst[0], pkt.sport, pkt.dport, pkt.proto,
            ))
        } else {
            ConnKey::V6(FlowKey::new(
                pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.proto,
            ))
        }
    }

    #[inline(always)]
    fn sport(&self) -> u16 {
        match self {
            ConnKey::V4(k) => k.sport,
            ConnKey::V6(k) => k.sport,
        }
    }

    #[inline(always)]
    fn clear_sport(&mut self) {
        match self {
            ConnKey::V4(k) => k.sport = 0,
            ConnKey::V6(k) => k.sport = 0,
        }
    }

    #[inline(always)]
    fn get(&self) -> Option<*const ConnEntry> {
        match self {
            ConnKey::V4(k) => LB_CONN4.get_ptr(k),
            ConnKey::V6(k) => LB_CONN.get_ptr(k),
        }
    }

    #[inline(always)]
    fn insert(&self, e: &ConnEntry) -> bool {
        match self {
            ConnKey::V4(k) => LB_CONN4.insert(k, e, 0).is_ok(),
            ConnKey::V6(k) => LB_CONN.insert(k, e, 0).is_ok(),
        }
    }
}

/// Looks `key` up in the connection table and checks the pinned slot.
#[inline(always)]
fn lookup<B: Variant>(key: &ConnKey) -> Lookup {
    let found = key.get();
    if stop::<B>(Stage::Conn, found.map_or(0, |e| e as u64)) {
        return Lookup::Stopped;
    }
    let Some(e) = found else {
        return Lookup::Miss;
    };
    // SAFETY: the entry stays valid for this run (RCU); an update by another
    // CPU replaces the element instead of writing into it.
    let (slot, generation) = unsafe { ((*e).slot, (*e).generation) };
    if slot == SLOT_NONE {
        return Lookup::Miss;
    }
    let Some(b) = LB_BACKENDS.get_ptr(slot) else {
        return Lookup::Stale;
    };
    // SAFETY: an array-map value; `get_ptr` checked the index.
    let b = unsafe { &*b };
    if stop::<B>(Stage::Backend, b.addr[0] as u64) {
        return Lookup::Stopped;
    }
    if b.flags & BACKEND_F_VALID == 0 || b.generation != generation {
        return Lookup::Stale;
    }
    Lookup::Hit(Chosen {
        slot,
        vip: b.vip,
        addr: b.addr,
        family: b.family,
    })
}

/// Picks the backend for `pkt`.
#[inline(always)]
pub fn choose<B: Variant>(pkt: &Packet, cfg: &LbConfig, t: &Tally<B>) -> Choice {
    let mut key = ConnKey::new(pkt);
    // A SYN starts a new connection: it must follow the current ring even if
    // a stale entry for the same 5-tuple (port reuse) is still cached.
    let mut asked = false;
    let mut outcome = Lookup::Miss;
    if !pkt.syn && !pkt.vip_first {
        match lookup::<B>(&key) {
            Lookup::Hit(c) => {
                t.inc(Stat::ConnHit);
                return Choice::Backend(c);
            }
            Lookup::Stopped => return Choice::Stopped,
            other => {
                outcome = other;
                asked = true;
            }
        }
    }

    let Some(vip) = vip_of(pkt) else {
        return Choice::NotServed;
    };
    if stop::<B>(Stage::Vip, vip.index as u64) {
        return Choice::Stopped;
    }
    // With "no source port" the port is left out of the hash *and* the
    // connection key, so every flow of a client shares one pinned backend.
    if vip.flags & VIP_F_NO_SPORT != 0 && key.sport() != 0 {
        key.clear_sport();
        asked = false;
    }
    let use_conn = vip.flags & VIP_F_NO_CONNTRACK == 0;
    if use_conn && !pkt.syn {
        if !asked {
            match lookup::<B>(&key) {
                Lookup::Hit(c) => {
                    t.inc(Stat::ConnHit);
                    return Choice::Backend(c);
                }
                Lookup::Stopped => return Choice::Stopped,
                other => outcome = other,
            }
        }
        t.inc(match outcome {
            Lookup::Stale => Stat::ConnStale,
            _ => Stat::ConnMiss,
        });
    }

    t.inc(Stat::RingLookup);
    let m = ring_size();
    if m == 0 {
        return Choice::NoBackend;
    }
    let h = flow_hash(
        cfg.hash_seed,
        &pkt.src,
        &pkt.dst,
        key.sport(),
        pkt.dport,
        pkt.proto,
    );
    let pos = ring_pos(h, m, ring_reciprocal_of_size());
    // The pre-drain fallback (see the module docs): only for TCP, whose SYN
    // tells a new flow from an established one, and only where entries are
    // kept (a no-conntrack VIP would send every packet of a new flow there).
    let drain_fallback =
        use_conn && pkt.proto == PROTO_TCP && vip.flags & VIP_F_DRAIN_FALLBACK != 0;
    if drain_fallback && !pkt.syn {
        if let Some((chosen, generation)) = draining_at(&vip, pos, m) {
            t.inc(Stat::ConnDrainFallback);
            return pin::<B>(&key, cfg, t, chosen, generation);
        }
    }
    let idx = ring_index(vip.index, vip.ring_half, pos, m);
    // Two ring positions per array element: see `lb_common::MAP_RING`.
    let Some(pair) = LB_RING.get_ptr(idx >> 1) else {
        return Choice::NoBackend;
    };
    // SAFETY: an array-map value; the lane index is 0 or 1.
    let slot = unsafe { (*pair)[(idx & 1) as usize] };
    if slot == SLOT_NONE {
        return Choice::NoBackend;
    }
    let Some(b) = LB_BACKENDS.get_ptr(slot) else {
        return Choice::NoBackend;
    };
    // SAFETY: an array-map value; `get_ptr` checked the index.
    let b = unsafe { &*b };
    if b.flags & BACKEND_F_VALID == 0 {
        return Choice::NoBackend;
    }
    let chosen = Chosen {
        slot,
        vip: vip.index,
        addr: b.addr,
        family: b.family,
    };
    if stop::<B>(Stage::Ring, b.addr[0] as u64) {
        return Choice::Stopped;
    }
    if !use_conn {
        return Choice::Backend(chosen);
    }
    // The new-flow budget holds at the drained positions too, although an
    // unpinned new flow there falls back to the drained backend on its
    // next packet (and is reset): letting SYNs there skip the budget would
    // let the drained backend's share of a SYN flood evict established
    // flows again (measured: 67,448 entries inserted by a flood the budget
    // holds to a few hundred).
    pin::<B>(&key, cfg, t, chosen, b.generation)
}

/// The backend that the VIP's pre-drain table names at ring position `pos`,
/// with its generation, if that backend is still draining. The table is the
/// standby half of the double-buffered ring (`ring_half ^ 1`): while a VIP
/// has a draining backend the daemon keeps it there instead of a copy of
/// the live half. During a publication the daemon rewrites the standby half
/// position by position; each position then holds the old or the new
/// pre-drain table or the new live table, and the latter never names a
/// draining backend (weight 0 takes no position), so this never picks a
/// backend that is not draining.
#[inline(always)]
fn draining_at(vip: &VipMeta, pos: u32, m: u32) -> Option<(Chosen, u32)> {
    let idx = ring_index(vip.index, vip.ring_half ^ 1, pos, m);
    let pair = LB_RING.get_ptr(idx >> 1)?;
    // SAFETY: an array-map value; the lane index is 0 or 1.
    let slot = unsafe { (*pair)[(idx & 1) as usize] };
    if slot == SLOT_NONE {
        return None;
    }
    // SAFETY: an array-map value; `get_ptr` checked the index.
    let b = unsafe { &*LB_BACKENDS.get_ptr(slot)? };
    // Valid *and* draining: a deleted backend's slot is invalid, an active
    // one is not draining. The VIP check is defence in depth: a slot names
    // its VIP, and a slot freed and reused for another VIP is no longer
    // draining.
    const LIVE_DRAIN: u8 = BACKEND_F_VALID | BACKEND_F_DRAINING;
    if b.flags & LIVE_DRAIN != LIVE_DRAIN || b.vip != vip.index {
        return None;
    }
    Some((
        Chosen {
            slot,
            vip: vip.index,
            addr: b.addr,
            family: b.family,
        },
        b.generation,
    ))
}

/// Pins a flow chosen by the ring (or the drain fallback) in the connection
/// table, within this CPU's budget of new entries, and forwards it.
#[inline(always)]
fn pin<B: Variant>(
    key: &ConnKey,
    cfg: &LbConfig,
    t: &Tally<B>,
    chosen: Chosen,
    generation: u32,
) -> Choice {
    if !B::PIN {
        return Choice::Backend(chosen);
    }
    // The budget is asked only here, for a flow that would be inserted:
    // established flows (hits) and no-conntrack VIPs never pay for the
    // clock read. `new_flow_rate` is read from the settings here, not
    // earlier, so the hit path does not carry it in a register.
    if !rate::take(&LB_NEW_FLOW_RATE, cfg.new_flow_rate) {
        t.inc(Stat::NewFlowUnpinned);
        return Choice::Backend(chosen);
    }
    let entry = ConnEntry {
        slot: chosen.slot,
        generation,
    };
    let ok = key.insert(&entry);
    if stop::<B>(Stage::Insert, ok as u64) {
        return Choice::Stopped;
    }
    t.inc(if ok {
        Stat::NewFlow
    } else {
        Stat::ConnInsertFailed
    });
    Choice::Backend(chosen)
}
