//! How a change of the desired state reaches the maps: the write order that
//! keeps forwarding correct at every instant, and an undo log so a failure
//! part-way leaves the maps as they were.
//!
//! Write order, per VIP:
//!
//! 1. New backend slots are written (valid, generation + 1) before any ring
//!    names them.
//! 2. The new Maglev table goes into the VIP's inactive ring half; one VIP
//!    entry update flips `ring_half` to it (atomic for the data plane: a
//!    packet reads either the old or the new half, never a mix); then the
//!    now-inactive half is made equal too, so neither half names a slot about
//!    to be freed.
//! 3. Only then are slots that left the VIP freed (invalid, generation + 1),
//!    so a connection pinned to a freed slot re-hashes instead of following
//!    the slot to whatever it is reused for. A backend that went down (its
//!    health check, not the operator) keeps its slot valid but under a new
//!    generation, after the flip: its connection-table entries go stale, so
//!    the next packet of each broken connection takes the new ring, reaches
//!    a live server and gets a reset at once. Bumping before the flip would
//!    let such a packet re-pin itself to the dead backend through the old
//!    ring. A drain bumps nothing: drained flows keep going.
//!
//! Drains: while a VIP has a draining backend, its standby half holds the
//! pre-drain table (`Vip::drain_table`) instead of a copy of the live one,
//! and the VIP entry carries `VIP_F_DRAIN_FALLBACK` (written by the flip,
//! with the tables it describes). A backend starting to drain gets
//! `BACKEND_F_DRAINING` on its slot (same generation: its pinned flows stay)
//! *before* the flip, so from the flip on the old live half, now standby,
//! already sends its flows back to it; a drain that ends clears the flag
//! after the flip. The standby half never names a slot about to be freed
//! either: a deleted backend is in neither table.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_common::{AddrKey, BACKEND_F_DRAINING, BACKEND_F_VALID, Backend, LbConfig, VipKey, VipMeta};

use super::{
    StateError,
    model::{Model, Vip},
};
use crate::{
    dataplane::{Dataplane, DataplaneError},
    vip::{VipSpec, addr_key, map_addr},
};

/// How to undo one map write.
enum Undo {
    /// Put the VIP entry back as it was (`None`: absent).
    Vip { key: VipKey, prev: Option<VipMeta> },
    /// Put the address count back.
    VipAddr { key: AddrKey, prev: u32 },
    /// Put the slot back (see [`Tx::undo_backend`] for the generation).
    Backend { slot: u32, prev: Backend },
    /// Put a slot's flags back: a write that changed nothing but the
    /// flags (same generation), so nothing was pinned under a new pair.
    BackendFlags { slot: u32, prev: Backend },
    /// Put ring positions back: (position in the half, slot it held).
    Ring {
        index: u32,
        half: u32,
        prev: Vec<(u32, u32)>,
    },
    /// Put the node settings back.
    Config { prev: LbConfig },
}

/// Map writes with an undo log. Every write records how to undo it *before*
/// it is attempted, since a failed write may have half-happened.
pub(crate) struct Tx<'a, D: Dataplane> {
    pub dp: &'a mut D,
    undo: Vec<Undo>,
    /// Ring positions changed (for adoption's report).
    pub ring_positions: usize,
    /// Rings rebuilt and published, with how long each took, reported to
    /// the state's observer once the change is committed.
    rebuilds: Vec<(VipSpec, Duration)>,
}

impl<'a, D: Dataplane> Tx<'a, D> {
    pub fn new(dp: &'a mut D) -> Self {
        Self {
            dp,
            undo: Vec::new(),
            ring_positions: 0,
            rebuilds: Vec::new(),
        }
    }

    pub fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), DataplaneError> {
        let prev = self.dp.vip(key);
        self.undo.push(Undo::Vip { key: *key, prev });
        self.dp.set_vip(key, meta)
    }

    pub fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        let prev = self.dp.vip(key);
        self.undo.push(Undo::Vip { key: *key, prev });
        self.dp.remove_vip(key)
    }

    /// `prev` is the count the map holds now; the maps cannot be asked
    /// (the real hash map has no reader here), the model knows it.
    pub fn set_vip_addr(
        &mut self,
        key: &AddrKey,
        count: u32,
        prev: u32,
    ) -> Result<(), DataplaneError> {
        self.undo.push(Undo::VipAddr { key: *key, prev });
        self.dp.set_vip_addr(key, count)
    }

    /// `prev` is what the slot holds now, as the caller has just read it
    /// (one map read per slot rather than two: a VIP with a thousand
    /// backends writes a thousand slots).
    pub fn set_backend(
        &mut self,
        slot: u32,
        b: &Backend,
        prev: Backend,
    ) -> Result<(), DataplaneError> {
        self.undo.push(Undo::Backend { slot, prev });
        self.dp.set_backend(slot, b)
    }

    /// Rewrites only the flags of a valid slot, keeping its generation (and
    /// so its pinned flows); undone exactly.
    pub fn set_backend_flags(
        &mut self,
        slot: u32,
        flags: u8,
        prev: Backend,
    ) -> Result<(), DataplaneError> {
        self.undo.push(Undo::BackendFlags { slot, prev });
        self.dp.set_backend(slot, &Backend { flags, ..prev })
    }

    /// Makes a ring half equal `table`, storing only the positions that
    /// differ; returns how many did. The undo entry holds just those
    /// positions (a new backend moves about 1/N of the ring, not all of it).
    pub fn write_ring_half(
        &mut self,
        index: u32,
        half: u32,
        table: &[u32],
    ) -> Result<usize, DataplaneError> {
        let mut prev = Vec::new();
        let written = self.dp.write_ring_changes(index, half, table, &mut prev);
        // Logged whether or not the write failed: `prev` has every position
        // stored so far, so a write cut short is undone too.
        let n = prev.len();
        if n > 0 {
            self.ring_positions += n;
            self.undo.push(Undo::Ring { index, half, prev });
        }
        written.map(|_| n)
    }

    /// Writes the node settings (`LB_CONFIG`).
    pub fn set_config(&mut self, cfg: &LbConfig) -> Result<(), DataplaneError> {
        let prev = self.dp.config()?;
        self.undo.push(Undo::Config { prev });
        self.dp.set_config(cfg)
    }

    /// Zeroes counters. Not undone: counters of an index or slot being
    /// (re)allocated or freed carry no information worth restoring.
    pub fn clear_stats(
        &mut self,
        index: Option<u32>,
        slot: Option<u32>,
    ) -> Result<(), DataplaneError> {
        self.dp.clear_stats(index, slot)
    }

    /// Keeps the writes; returns the rings rebuilt (see
    /// [`super::RingObserver`]).
    pub fn commit(self) -> Vec<(VipSpec, Duration)> {
        self.rebuilds
    }

    /// Undoes every write, newest first (the reverse of a safe order is safe
    /// here: each step only ever pointed live structures at valid slots).
    /// Keeps going after a failure and reports the first one.
    pub fn rollback(self) -> Result<(), DataplaneError> {
        let Tx { dp, undo, .. } = self;
        let mut first_err = None;
        for u in undo.into_iter().rev() {
            let r = match u {
                Undo::Vip { key, prev: Some(m) } => dp.set_vip(&key, &m),
                Undo::Vip { key, prev: None } => {
                    if dp.vip(&key).is_some() {
                        dp.remove_vip(&key)
                    } else {
                        Ok(())
                    }
                }
                Undo::VipAddr { key, prev } => dp.set_vip_addr(&key, prev),
                Undo::Backend { slot, prev } => Self::undo_backend(dp, slot, prev),
                Undo::BackendFlags { slot, prev } => dp.set_backend(slot, &prev),
                Undo::Ring { index, half, prev } => {
                    let mut table = dp.ring_half(index, half);
                    for (pos, slot) in prev {
                        if let Some(t) = table.get_mut(pos as usize) {
                            *t = slot;
                        }
                    }
                    dp.write_ring_changes(index, half, &table, &mut Vec::new())
                        .map(drop)
                }
                Undo::Config { prev } => dp.set_config(&prev),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Restores a slot, keeping generations from ever going back to one that
    /// was live: while our write was in place and valid, flows may have been
    /// pinned to (slot, its generation). Restoring an older generation would
    /// let a later allocation hand that same pair to another server and
    /// those flows would follow it.
    fn undo_backend(dp: &mut D, slot: u32, prev: Backend) -> Result<(), DataplaneError> {
        let cur = dp.backend(slot)?;
        if cur == prev {
            return Ok(());
        }
        let mut restore = prev;
        if cur.flags & BACKEND_F_VALID != 0 {
            restore.generation = if prev.flags & BACKEND_F_VALID == 0 {
                // Invalid with the generation that was live: the next
                // allocation bumps past it.
                cur.generation
            } else {
                // Valid again, but never under the generation our entry had.
                next_generation(cur.generation)
            };
        }
        // A write that replaced a valid entry by an invalid one (a free) is
        // restored exactly: nothing can pin to an invalid slot, and the old
        // generation keeps the old flows pinned.
        dp.set_backend(slot, &restore)
    }
}

/// The generation after `g`; 0 is skipped so a zeroed entry never matches.
pub(crate) fn next_generation(g: u32) -> u32 {
    match g.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

fn internal(context: impl FnOnce() -> String) -> impl FnOnce(DataplaneError) -> StateError {
    move |e| StateError::dataplane(&context(), &e)
}

/// Makes `slot` a valid backend for `address` of VIP index `vip` under a new
/// generation, with zeroed counters.
pub(crate) fn alloc_slot<D: Dataplane>(
    tx: &mut Tx<'_, D>,
    slot: u32,
    address: std::net::IpAddr,
    vip: u32,
) -> Result<(), StateError> {
    let ctx = || format!("writing backend slot {slot} ({address})");
    let cur = tx.dp.backend(slot).map_err(internal(ctx))?;
    let (addr, family) = map_addr(address);
    tx.clear_stats(None, Some(slot)).map_err(internal(ctx))?;
    tx.set_backend(
        slot,
        &Backend::valid(addr, family, next_generation(cur.generation), vip),
        cur,
    )
    .map_err(internal(ctx))
}

/// Sets or clears `BACKEND_F_DRAINING` on a valid slot, keeping its
/// generation. Returns whether it wrote.
pub(crate) fn set_draining<D: Dataplane>(
    tx: &mut Tx<'_, D>,
    slot: u32,
    draining: bool,
) -> Result<bool, StateError> {
    let ctx = || format!("marking backend slot {slot} draining={draining}");
    let cur = tx.dp.backend(slot).map_err(internal(ctx))?;
    let want = if draining {
        cur.flags | BACKEND_F_DRAINING
    } else {
        cur.flags & !BACKEND_F_DRAINING
    };
    if cur.flags & BACKEND_F_VALID == 0 || want == cur.flags {
        return Ok(false);
    }
    tx.set_backend_flags(slot, want, cur)
        .map_err(internal(ctx))?;
    Ok(true)
}

/// Invalidates `slot` under a new generation (the address is kept, which
/// helps when reading map dumps).
pub(crate) fn free_slot<D: Dataplane>(tx: &mut Tx<'_, D>, slot: u32) -> Result<(), StateError> {
    let ctx = || format!("freeing backend slot {slot}");
    let cur = tx.dp.backend(slot).map_err(internal(ctx))?;
    let b = Backend {
        flags: 0,
        generation: next_generation(cur.generation),
        ..cur
    };
    tx.set_backend(slot, &b, cur).map_err(internal(ctx))
}

/// Moves a valid `slot` to a new generation, still valid: every
/// connection-table entry pinned to it goes stale and is re-hashed (a
/// backend that went down), while the ring may name the slot again later
/// (it comes back up) without those old entries following it.
pub(crate) fn retire_flows<D: Dataplane>(tx: &mut Tx<'_, D>, slot: u32) -> Result<(), StateError> {
    let ctx = || format!("invalidating the flows of backend slot {slot}");
    let cur = tx.dp.backend(slot).map_err(internal(ctx))?;
    let b = Backend {
        generation: next_generation(cur.generation),
        ..cur
    };
    tx.set_backend(slot, &b, cur).map_err(internal(ctx))
}

/// Backends of a VIP kept from `o` to `n` (same slot) whose flows must be
/// invalidated: down in `n` and out of its ring, having just gone down or
/// just left the ring (fail-open ended).
pub(crate) fn retired(o: &Vip, n: &Vip) -> Vec<u32> {
    let (os, ns) = (o.serving(), n.serving());
    let serves = |s: &super::Serving, a: &IpAddr| s.backends.binary_search(a).is_ok();
    n.backends
        .iter()
        .filter(|(a, m)| {
            let Some(om) = o.backends.get(a) else {
                return false;
            };
            om.slot == m.slot
                && m.health.is_down()
                && !serves(&ns, a)
                && (!om.health.is_down() || serves(&os, a))
        })
        .map(|(_, m)| m.slot)
        .collect()
}

/// What a VIP's two ring halves hold: the live table, and the standby
/// half's (the pre-drain table while a backend drains, else the live one).
pub(crate) struct Tables {
    pub live: Vec<u32>,
    pub standby: Option<Vec<u32>>,
}

impl Tables {
    /// The standby half's table.
    pub fn standby(&self) -> &[u32] {
        self.standby.as_deref().unwrap_or(&self.live)
    }
}

/// The VIP's tables, or an internal error (requests were validated against
/// every reason the builder could refuse).
pub(crate) fn table_of(vip: &Vip, ring_size: u32) -> Result<Tables, StateError> {
    let err = |e| StateError::Internal(format!("building the ring of {}: {e}", vip.spec));
    Ok(Tables {
        live: vip.table(ring_size).map_err(err)?,
        standby: vip.drain_table(ring_size).transpose().map_err(err)?,
    })
}

/// Publishes `tables` for a VIP whose entry exists: the live table into
/// the inactive half, flip, then the standby table into the other half.
/// Flags and index are (re)written by the flip. Returns whether the VIP
/// entry was written.
pub(crate) fn publish<D: Dataplane>(
    tx: &mut Tx<'_, D>,
    vip: &Vip,
    current: VipMeta,
    tables: &Tables,
) -> Result<bool, StateError> {
    let key = vip.spec.key();
    let ctx = || format!("publishing the ring of {}", vip.spec);
    let live = current.ring_half & 1;
    let want = |half: u32| VipMeta {
        index: vip.index,
        flags: vip.map_flags(),
        ring_half: half,
        _pad: 0,
    };
    let mut wrote_vip = false;
    if !tx.dp.ring_half_equals(vip.index, live, &tables.live) || current.index != vip.index {
        tx.write_ring_half(vip.index, live ^ 1, &tables.live)
            .map_err(internal(ctx))?;
        tx.set_vip(&key, &want(live ^ 1)).map_err(internal(ctx))?;
        wrote_vip = true;
        tx.write_ring_half(vip.index, live, tables.standby())
            .map_err(internal(ctx))?;
    } else {
        if current != want(live) {
            tx.set_vip(&key, &want(live)).map_err(internal(ctx))?;
            wrote_vip = true;
        }
        tx.write_ring_half(vip.index, live ^ 1, tables.standby())
            .map_err(internal(ctx))?;
    }
    Ok(wrote_vip)
}

/// Writes a VIP that the data plane does not serve yet: its ring (both
/// halves, which also wipes what a previous user of the index left), then the
/// entry, then the address count.
pub(crate) fn install_vip<D: Dataplane>(
    tx: &mut Tx<'_, D>,
    vip: &Vip,
    tables: &Tables,
    addr_count: (u32, u32),
) -> Result<(), StateError> {
    let ctx = || format!("creating VIP {}", vip.spec);
    tx.clear_stats(Some(vip.index), None)
        .map_err(internal(ctx))?;
    // Writing the tables straight into both halves, rather than clearing
    // them and then publishing, leaves no moment where the new VIP drops
    // packets for want of a ring. Nothing reads the halves before the entry
    // exists. (Half 1 is the standby: a VIP adopted from the state may
    // have a draining backend.)
    tx.write_ring_half(vip.index, 0, &tables.live)
        .map_err(internal(ctx))?;
    tx.write_ring_half(vip.index, 1, tables.standby())
        .map_err(internal(ctx))?;
    tx.set_vip(
        &vip.spec.key(),
        &VipMeta {
            index: vip.index,
            flags: vip.map_flags(),
            ring_half: 0,
            _pad: 0,
        },
    )
    .map_err(internal(ctx))?;
    let (new, old) = addr_count;
    tx.set_vip_addr(&addr_key(vip.spec.address), new, old)
        .map_err(internal(ctx))
}

/// Writes the slots in `fresh` (address, slot) for `vip` and builds its
/// table. With many slots the two run side by side, the build on a second
/// core: it needs only the model, and a thousand slot writes (three map
/// system calls each) take about as long as the build, so a 1,000-backend
/// VIP is visible that much sooner. With a few slots a thread would cost
/// more than it saves.
fn alloc_and_build<D: Dataplane>(
    tx: &mut Tx<'_, D>,
    vip: &Vip,
    fresh: &[(IpAddr, u32)],
    ring_size: u32,
) -> Result<Tables, StateError> {
    const SIDE_BY_SIDE_FROM: usize = 64;
    let alloc = |tx: &mut Tx<'_, D>| {
        fresh
            .iter()
            .try_for_each(|&(a, slot)| alloc_slot(tx, slot, a, vip.index))
    };
    if fresh.len() < SIDE_BY_SIDE_FROM {
        alloc(tx)?;
        return table_of(vip, ring_size);
    }
    std::thread::scope(|s| {
        let build = s.spawn(|| table_of(vip, ring_size));
        let allocated = alloc(tx);
        // A panic in the build is a bug: pass it on as it is.
        let table = build
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        allocated.and(table)
    })
}

/// Applies the change of one VIP from `old` to `new` (`None`: absent) to the
/// maps, in the order described in the module docs. `old_model`/`new_model`
/// give the address counts.
pub(crate) fn sync_vip<D: Dataplane>(
    tx: &mut Tx<'_, D>,
    old: Option<&Vip>,
    new: Option<&Vip>,
    old_model: &Model,
    new_model: &Model,
) -> Result<(), StateError> {
    let ring_size = tx.dp.sizes().ring_size;
    match (old, new) {
        (None, None) => Ok(()),
        (None, Some(v)) => {
            let started = Instant::now();
            let fresh: Vec<(IpAddr, u32)> = v.backends.iter().map(|(a, m)| (*a, m.slot)).collect();
            let table = alloc_and_build(tx, v, &fresh, ring_size)?;
            let counts = (
                new_model.addr_count(v.spec.address),
                old_model.addr_count(v.spec.address),
            );
            for m in v.backends.values().filter(|m| m.draining()) {
                set_draining(tx, m.slot, true)?;
            }
            install_vip(tx, v, &table, counts)?;
            tx.rebuilds.push((v.spec, started.elapsed()));
            Ok(())
        }
        (Some(v), None) => {
            let ctx = || format!("deleting VIP {}", v.spec);
            // Entry first: from then on no packet reads the ring or slots.
            tx.remove_vip(&v.spec.key()).map_err(internal(ctx))?;
            tx.set_vip_addr(
                &addr_key(v.spec.address),
                new_model.addr_count(v.spec.address),
                old_model.addr_count(v.spec.address),
            )
            .map_err(internal(ctx))?;
            for m in v.backends.values() {
                free_slot(tx, m.slot)?;
            }
            tx.clear_stats(Some(v.index), None).map_err(internal(ctx))?;
            for m in v.backends.values() {
                tx.clear_stats(None, Some(m.slot)).map_err(internal(ctx))?;
            }
            Ok(())
        }
        (Some(o), Some(n)) => {
            let started = Instant::now();
            let fresh: Vec<(IpAddr, u32)> = n
                .backends
                .iter()
                .filter(|(a, m)| o.backends.get(a).map(|om| om.slot) != Some(m.slot))
                .map(|(a, m)| (*a, m.slot))
                .collect();
            let table = alloc_and_build(tx, n, &fresh, ring_size)?;
            let current = tx.dp.vip(&n.spec.key()).ok_or_else(|| {
                StateError::Internal(format!(
                    "VIP {} is missing from the data plane (restart the daemon to repair)",
                    n.spec
                ))
            })?;
            // Drains that start are marked before the flip (see the module
            // docs), drains that end after it.
            for m in n.backends.values().filter(|m| m.draining()) {
                set_draining(tx, m.slot, true)?;
            }
            publish(tx, n, current, &table)?;
            tx.rebuilds.push((n.spec, started.elapsed()));
            for m in n.backends.values().filter(|m| !m.draining()) {
                set_draining(tx, m.slot, false)?;
            }
            // Backends that went down: their flows go stale after the
            // flip (see the module docs).
            for slot in retired(o, n) {
                retire_flows(tx, slot)?;
            }
            for (a, m) in &o.backends {
                if n.backends.get(a).map(|nm| nm.slot) != Some(m.slot) {
                    free_slot(tx, m.slot)?;
                }
            }
            Ok(())
        }
    }
}
