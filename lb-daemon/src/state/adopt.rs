//! Adoption: after a daemon restart the pinned maps are still forwarding.
//! Make them match the persisted state while touching only what differs: a
//! slot that already holds the right backend keeps its generation (so pinned
//! connections carry on), a ring half that already holds the right table is
//! not rewritten, and every repaired slot gets the next generation of the
//! sequence the maps hold. The gateway MAC set over the API, if any, is put
//! back in the node settings too.

use std::collections::{HashMap, HashSet};

use lb_common::{AddrKey, BACKEND_F_VALID};

use super::{
    StateError,
    apply::{Tx, alloc_slot, free_slot, install_vip, publish, set_draining, table_of},
    gateway,
    model::Model,
};
use crate::{
    dataplane::Dataplane,
    vip::{VipSpec, addr_key, map_addr},
};

/// What adoption changed. All zero: the maps already matched the state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdoptReport {
    /// VIP entries created or rewritten (missing, wrong index or flags).
    pub vips_written: usize,
    /// Rings republished through the flip protocol.
    pub rings_published: usize,
    /// Ring positions changed in total.
    pub ring_positions_written: usize,
    /// Backend slots (re)written for the state's backends.
    pub backends_written: usize,
    /// Valid slots the state does not use, freed.
    pub slots_freed: usize,
    /// VIP entries the state does not know, removed.
    pub orphan_vips_removed: usize,
    /// VIP address counts written.
    pub addrs_written: usize,
    /// Whether the node settings were rewritten with the state's gateway.
    pub gateway_written: bool,
    /// Whether the data plane could list its VIP entries and addresses; if
    /// not, entries unknown to the state cannot have been found.
    pub enumerated: bool,
}

impl AdoptReport {
    /// Whether adoption changed nothing.
    pub fn unchanged(&self) -> bool {
        Self {
            enumerated: self.enumerated,
            ..Self::default()
        } == *self
    }
}

/// Repairs the maps to match `model`. On a failure, rolls back what it wrote.
pub(crate) fn adopt<D: Dataplane>(dp: &mut D, model: &Model) -> Result<AdoptReport, StateError> {
    let sizes = dp.sizes();
    model
        .check_fits(&sizes)
        .map_err(StateError::FailedPrecondition)?;
    let mut tx = Tx::new(dp);
    let mut report = AdoptReport::default();
    match repair(&mut tx, model, &mut report) {
        Ok(()) => {
            report.ring_positions_written = tx.ring_positions;
            tx.commit();
            Ok(report)
        }
        Err(e) => match tx.rollback() {
            Ok(()) => Err(e),
            Err(rb) => Err(StateError::Internal(format!(
                "{e}; rolling back also failed: {}",
                super::error::chain(&rb)
            ))),
        },
    }
}

fn repair<D: Dataplane>(
    tx: &mut Tx<'_, D>,
    model: &Model,
    report: &mut AdoptReport,
) -> Result<(), StateError> {
    let sizes = tx.dp.sizes();
    let read_err =
        |slot: u32| move |e| StateError::dataplane(&format!("reading backend slot {slot}"), &e);

    // 0. The gateway: first, since every VIP forwards through it.
    report.gateway_written = gateway::sync(tx, model.gateway)?;

    // 1. Slots of the state's backends, before any ring names them.
    for v in model.vips.values() {
        for (a, m) in &v.backends {
            let cur = tx.dp.backend(m.slot).map_err(read_err(m.slot))?;
            let (addr, family) = map_addr(*a);
            if cur.flags & BACKEND_F_VALID == 0
                || cur.addr != addr
                || cur.family != family
                || cur.vip != v.index
            {
                alloc_slot(tx, m.slot, *a, v.index)?;
                report.backends_written += 1;
            }
            // The drain mark, before any standby half names the slot.
            if set_draining(tx, m.slot, m.draining())? {
                report.backends_written += 1;
            }
        }
    }

    // 2. Rings and VIP entries.
    for v in model.vips.values() {
        let table = table_of(v, sizes.ring_size)?;
        match tx.dp.vip(&v.spec.key()) {
            Some(cur) if cur.index == v.index => {
                let live_ok = tx
                    .dp
                    .ring_half_equals(v.index, cur.ring_half & 1, &table.live);
                if publish(tx, v, cur, &table)? {
                    report.vips_written += 1;
                }
                if !live_ok {
                    report.rings_published += 1;
                }
            }
            _ => {
                // Missing, or pointing at another index (a state file older
                // than the maps): install as new. Counts are written below.
                let n = model.addr_count(v.spec.address);
                install_vip(tx, v, &table, (n, n))?;
                report.vips_written += 1;
                report.rings_published += 1;
                report.addrs_written += 1;
            }
        }
    }

    // 3. Entries the state does not know (a crash between applying and
    //    persisting). Removed before their slots are freed, as for a delete.
    let mut enumerated = true;
    match tx.dp.vip_entries() {
        Some(entries) => {
            for (key, _) in entries {
                let known = VipSpec::from_key(&key).is_some_and(|s| model.vips.contains_key(&s));
                if !known {
                    tx.remove_vip(&key).map_err(|e| {
                        StateError::dataplane("removing a VIP entry the state does not know", &e)
                    })?;
                    report.orphan_vips_removed += 1;
                }
            }
        }
        None => enumerated = false,
    }

    // 4. Address counts.
    let mut want: HashMap<AddrKey, u32> = HashMap::new();
    for s in model.vips.keys() {
        *want.entry(addr_key(s.address)).or_default() += 1;
    }
    let addr_err = |e| StateError::dataplane("writing a VIP address count", &e);
    match tx.dp.vip_addr_entries() {
        Some(have) => {
            let have: HashMap<AddrKey, u32> = have.into_iter().collect();
            for (key, n) in &have {
                if !want.contains_key(key) {
                    tx.set_vip_addr(key, 0, *n).map_err(addr_err)?;
                    report.addrs_written += 1;
                }
            }
            for (key, n) in &want {
                let cur = have.get(key).copied().unwrap_or(0);
                if cur != *n {
                    tx.set_vip_addr(key, *n, cur).map_err(addr_err)?;
                    report.addrs_written += 1;
                }
            }
        }
        None => {
            enumerated = false;
            // Cannot compare: write every count (idempotent map updates; the
            // undo value is a guess, the model's).
            for (key, n) in &want {
                tx.set_vip_addr(key, *n, *n).map_err(addr_err)?;
                report.addrs_written += 1;
            }
        }
    }
    report.enumerated = enumerated;

    // 5. Slots nobody in the state uses: freed last, once no ring of a known
    //    VIP names them and unknown VIPs are gone.
    let used: HashSet<u32> = model
        .vips
        .values()
        .flat_map(|v| v.backends.values().map(|m| m.slot))
        .collect();
    for slot in 1..sizes.max_backends {
        if used.contains(&slot) {
            continue;
        }
        let cur = tx.dp.backend(slot).map_err(read_err(slot))?;
        if cur.flags & BACKEND_F_VALID != 0 {
            free_slot(tx, slot)?;
            report.slots_freed += 1;
        }
    }
    Ok(())
}
