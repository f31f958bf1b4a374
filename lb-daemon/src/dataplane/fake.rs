//! An in-memory [`Dataplane`] with the real maps' semantics (capacities,
//! range checks, diff-only ring writes), for tests of everything above the
//! kernel without root. It can fail on demand, to prove a failed apply is
//! rolled back, and it audits every write for the one invariant the control
//! plane must never break: a live VIP's ring names only valid backend slots.

use std::collections::HashMap;

use aya::{maps::MapError, sys::SyscallError};
use lb_common::{
    AddrKey, BACKEND_F_VALID, Backend, ConnEntry, FlowKey, FlowKey4, LbConfig, PktBytes, SLOT_NONE,
    STAT_COUNT, VipKey, VipMeta,
};

use super::{Dataplane, DataplaneError, Sizes, ring};

/// Everything the fake's maps hold, comparable as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeMaps {
    /// `LB_VIPS`.
    pub vips: HashMap<VipKey, VipMeta>,
    /// `LB_VIP_ADDRS`.
    pub vip_addrs: HashMap<AddrKey, u32>,
    /// `LB_BACKENDS`, indexed by slot.
    pub backends: Vec<Backend>,
    /// `LB_RING` as the dense `u32` array (all VIPs, both halves).
    pub ring: Vec<u32>,
    /// `LB_CONFIG[0]`.
    pub config: LbConfig,
    /// `LB_CONN4` (only what tests put there: nothing forwards packets).
    pub conn4: HashMap<FlowKey4, ConnEntry>,
    /// `LB_CONN`.
    pub conn6: HashMap<FlowKey, ConnEntry>,
}

/// In-memory data plane. See the module docs.
#[derive(Clone, Debug)]
pub struct FakeDataplane {
    sizes: Sizes,
    maps: FakeMaps,
    stats: [u64; STAT_COUNT as usize],
    vip_stats: Vec<PktBytes>,
    backend_stats: Vec<PktBytes>,
    /// Mutations still allowed to succeed before injected failures start.
    ok_before_failure: usize,
    /// Injected failures still to deliver.
    failures: usize,
    writes: usize,
    ring_positions_written: usize,
    audit: bool,
    violations: Vec<String>,
}

impl FakeDataplane {
    /// Empty maps of the given sizes, auditing on.
    ///
    /// # Panics
    /// If the sizes are ones the real maps could not be created with.
    pub fn new(sizes: Sizes) -> Self {
        if let Err(e) = sizes.validate() {
            panic!("FakeDataplane::new: {e}");
        }
        let ring_len = 2 * sizes.max_vips as usize * sizes.ring_size as usize;
        Self {
            sizes,
            maps: FakeMaps {
                vips: HashMap::new(),
                vip_addrs: HashMap::new(),
                backends: vec![Backend::default(); sizes.max_backends as usize],
                ring: vec![SLOT_NONE; ring_len],
                config: LbConfig::default(),
                conn4: HashMap::new(),
                conn6: HashMap::new(),
            },
            stats: [0; STAT_COUNT as usize],
            vip_stats: vec![PktBytes::default(); sizes.max_vips as usize],
            backend_stats: vec![PktBytes::default(); sizes.max_backends as usize],
            ok_before_failure: 0,
            failures: 0,
            writes: 0,
            ring_positions_written: 0,
            audit: true,
            violations: Vec::new(),
        }
    }

    /// The maps' current contents.
    pub fn maps(&self) -> &FakeMaps {
        &self.maps
    }

    /// Mutable access to the maps, to set up a scenario (e.g. what a previous
    /// daemon left pinned) without going through the trait.
    pub fn maps_mut(&mut self) -> &mut FakeMaps {
        &mut self.maps
    }

    /// Lets the next `ok` mutations succeed, then fails the `failures` after
    /// them. `fail_after(0, n)` fails the next `n` mutations.
    pub fn fail_after(&mut self, ok: usize, failures: usize) {
        self.ok_before_failure = ok;
        self.failures = failures;
    }

    /// Injected failures not delivered yet.
    pub fn pending_failures(&self) -> usize {
        self.failures
    }

    /// Successful mutating calls so far.
    pub fn writes(&self) -> usize {
        self.writes
    }

    /// Ring positions actually changed so far (over all `write_ring_half`).
    pub fn ring_positions_written(&self) -> usize {
        self.ring_positions_written
    }

    /// Turns the per-write audit on or off (on by default).
    pub fn set_audit(&mut self, on: bool) {
        self.audit = on;
    }

    /// Audit findings so far: moments at which a live VIP's ring named a
    /// slot that was not valid.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Adds traffic to a VIP's and a slot's counters, as the program would.
    ///
    /// # Panics
    /// If the index or slot is out of range.
    pub fn record_traffic(&mut self, vip_index: u32, slot: u32, bytes: u64) {
        for c in [
            &mut self.vip_stats[vip_index as usize],
            &mut self.backend_stats[slot as usize],
        ] {
            c.packets += 1;
            c.bytes += bytes;
        }
        self.stats[lb_common::Stat::Forwarded as usize] += 1;
    }

    /// Checks the ring invariant now; returns what is wrong.
    pub fn check_rings(&self) -> Vec<String> {
        let m = self.sizes.ring_size;
        let mut out = Vec::new();
        for (key, meta) in &self.maps.vips {
            if meta.index >= self.sizes.max_vips {
                out.push(format!("VIP {key:?} has index {} out of range", meta.index));
                continue;
            }
            for half in 0..2 {
                let base = lb_common::ring_index(meta.index, half, 0, m) as usize;
                let ring = &self.maps.ring[base..base + m as usize];
                if let Some((pos, &slot)) = ring.iter().enumerate().find(|&(_, &s)| {
                    s != SLOT_NONE
                        && self
                            .maps
                            .backends
                            .get(s as usize)
                            .is_none_or(|b| b.flags & BACKEND_F_VALID == 0)
                }) {
                    out.push(format!(
                        "VIP index {} half {half} (live half {}) position {pos} names invalid slot {slot}",
                        meta.index, meta.ring_half
                    ));
                }
            }
        }
        out
    }

    /// Decides whether the next mutation fails (injected) and counts it.
    fn mutation(&mut self, map: &'static str) -> Result<(), DataplaneError> {
        if self.ok_before_failure > 0 {
            self.ok_before_failure -= 1;
        } else if self.failures > 0 {
            self.failures -= 1;
            return Err(DataplaneError::Map {
                name: map,
                source: MapError::SyscallError(SyscallError {
                    call: "bpf_map_update_elem",
                    io_error: std::io::Error::other("injected failure"),
                }),
            });
        }
        Ok(())
    }

    fn written(&mut self) {
        self.writes += 1;
        if self.audit {
            let found = self.check_rings();
            self.violations.extend(found);
        }
    }
}

/// What a full BPF hash map answers to an insert of a new key.
fn full(name: &'static str) -> DataplaneError {
    DataplaneError::Map {
        name,
        source: MapError::SyscallError(SyscallError {
            call: "bpf_map_update_elem",
            io_error: std::io::Error::from_raw_os_error(libc::E2BIG),
        }),
    }
}

impl Dataplane for FakeDataplane {
    fn sizes(&self) -> Sizes {
        self.sizes
    }

    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), DataplaneError> {
        self.mutation(lb_common::MAP_VIPS)?;
        if !self.maps.vips.contains_key(key) && self.maps.vips.len() >= self.sizes.max_vips as usize
        {
            return Err(full(lb_common::MAP_VIPS));
        }
        self.maps.vips.insert(*key, *meta);
        self.written();
        Ok(())
    }

    fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        self.mutation(lb_common::MAP_VIPS)?;
        if self.maps.vips.remove(key).is_none() {
            return Err(DataplaneError::Map {
                name: lb_common::MAP_VIPS,
                source: MapError::KeyNotFound,
            });
        }
        self.written();
        Ok(())
    }

    fn vip(&self, key: &VipKey) -> Option<VipMeta> {
        self.maps.vips.get(key).copied()
    }

    fn vip_entries(&self) -> Option<Vec<(VipKey, VipMeta)>> {
        Some(self.maps.vips.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn set_vip_addr(&mut self, key: &AddrKey, count: u32) -> Result<(), DataplaneError> {
        self.mutation(lb_common::MAP_VIP_ADDRS)?;
        if count == 0 {
            self.maps.vip_addrs.remove(key);
        } else {
            if !self.maps.vip_addrs.contains_key(key)
                && self.maps.vip_addrs.len() >= self.sizes.max_vips as usize
            {
                return Err(full(lb_common::MAP_VIP_ADDRS));
            }
            self.maps.vip_addrs.insert(*key, count);
        }
        self.written();
        Ok(())
    }

    fn vip_addr_entries(&self) -> Option<Vec<(AddrKey, u32)>> {
        Some(self.maps.vip_addrs.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn set_backend(&mut self, slot: u32, b: &Backend) -> Result<(), DataplaneError> {
        self.sizes.check_slot(slot)?;
        self.mutation(lb_common::MAP_BACKENDS)?;
        self.maps.backends[slot as usize] = *b;
        self.written();
        Ok(())
    }

    fn backend(&self, slot: u32) -> Result<Backend, DataplaneError> {
        self.sizes.check_slot(slot)?;
        Ok(self.maps.backends[slot as usize])
    }

    fn write_ring_changes(
        &mut self,
        vip_index: u32,
        half: u32,
        table: &[u32],
        changed: &mut Vec<(u32, u32)>,
    ) -> Result<usize, DataplaneError> {
        let start = ring::half_start(&self.sizes, vip_index, half, table.len())?;
        if self.maps.ring[start..start + table.len()] == *table {
            // Nothing to store, so no write: the real map is not touched
            // either, and a failure cannot happen.
            return Ok(0);
        }
        self.mutation(lb_common::MAP_RING)?;
        let mem = &mut self.maps.ring[start..start + table.len()];
        let n = ring::write_diff(mem, table, changed);
        self.ring_positions_written += n;
        self.written();
        Ok(n)
    }

    fn ring_half(&self, vip_index: u32, half: u32) -> Vec<u32> {
        let m = self.sizes.ring_size as usize;
        if vip_index >= self.sizes.max_vips {
            // Like the real map: positions past the end read as empty.
            return vec![SLOT_NONE; m];
        }
        let base = lb_common::ring_index(vip_index, half, 0, m as u32) as usize;
        self.maps.ring[base..base + m].to_vec()
    }

    fn ring_half_equals(&self, vip_index: u32, half: u32, table: &[u32]) -> bool {
        ring::half_start(&self.sizes, vip_index, half, table.len())
            .is_ok_and(|start| self.maps.ring[start..start + table.len()] == *table)
    }

    fn ring_slot(&self, vip_index: u32, half: u32, pos: u32) -> u32 {
        let m = self.sizes.ring_size;
        if vip_index >= self.sizes.max_vips || pos >= m {
            return SLOT_NONE;
        }
        self.maps.ring[lb_common::ring_index(vip_index, half, pos, m) as usize]
    }

    fn clear_stats(
        &mut self,
        vip_index: Option<u32>,
        slot: Option<u32>,
    ) -> Result<(), DataplaneError> {
        if let Some(i) = vip_index {
            self.sizes.check_vip_index(i)?;
        }
        if let Some(s) = slot {
            self.sizes.check_slot(s)?;
        }
        self.mutation(lb_common::MAP_VIP_STATS)?;
        if let Some(i) = vip_index {
            self.vip_stats[i as usize] = PktBytes::default();
        }
        if let Some(s) = slot {
            self.backend_stats[s as usize] = PktBytes::default();
        }
        self.written();
        Ok(())
    }

    fn stats(&self) -> Result<[u64; STAT_COUNT as usize], DataplaneError> {
        Ok(self.stats)
    }

    fn vip_stats(&self, vip_index: u32) -> Result<PktBytes, DataplaneError> {
        self.sizes.check_vip_index(vip_index)?;
        Ok(self.vip_stats[vip_index as usize])
    }

    fn backend_stats(&self, slot: u32) -> Result<PktBytes, DataplaneError> {
        self.sizes.check_slot(slot)?;
        Ok(self.backend_stats[slot as usize])
    }

    fn set_config(&mut self, cfg: &LbConfig) -> Result<(), DataplaneError> {
        self.mutation(lb_common::MAP_CONFIG)?;
        self.maps.config = *cfg;
        self.written();
        Ok(())
    }

    fn config(&self) -> Result<LbConfig, DataplaneError> {
        Ok(self.maps.config)
    }

    fn conn_entry4(&self, key: &FlowKey4) -> Result<Option<ConnEntry>, DataplaneError> {
        Ok(self.maps.conn4.get(key).copied())
    }

    fn conn_entry6(&self, key: &FlowKey) -> Result<Option<ConnEntry>, DataplaneError> {
        Ok(self.maps.conn6.get(key).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes() -> Sizes {
        Sizes {
            ring_size: 13,
            max_vips: 2,
            max_backends: 4,
            conn_table: 16,
        }
    }

    #[test]
    fn behaves_like_the_maps() {
        let mut f = FakeDataplane::new(sizes());
        let k = |p: u16| VipKey {
            port: p,
            ..Default::default()
        };
        f.set_vip(&k(1), &VipMeta::default()).unwrap();
        f.set_vip(&k(2), &VipMeta::default()).unwrap();
        // Full hash map: a new key is refused, an existing one replaced.
        assert!(f.set_vip(&k(3), &VipMeta::default()).is_err());
        f.set_vip(&k(2), &VipMeta::default()).unwrap();
        f.remove_vip(&k(2)).unwrap();
        assert!(f.remove_vip(&k(2)).is_err());
        assert!(f.backend(4).is_err());
        let mut changed = Vec::new();
        assert!(f.write_ring_changes(2, 0, &[0; 13], &mut changed).is_err());
        assert!(f.write_ring_changes(0, 0, &[0; 12], &mut changed).is_err());
        assert_eq!(f.ring_half(5, 0), vec![0; 13]);
        // Only differing positions count.
        let mut t = [0u32; 13];
        t[3] = 1;
        f.set_backend(
            1,
            &Backend {
                flags: BACKEND_F_VALID,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(f.write_ring_changes(1, 1, &t, &mut changed).unwrap(), 1);
        assert_eq!(f.write_ring_changes(1, 1, &t, &mut changed).unwrap(), 0);
        assert_eq!(changed, [(3, 0)], "position 3 held slot 0 before");
        assert_eq!(f.ring_slot(1, 1, 3), 1);
        assert!(f.ring_half_equals(1, 1, &t) && !f.ring_half_equals(1, 0, &t));
        assert!(f.violations().is_empty());
    }

    #[test]
    fn injected_failures_then_recovery() {
        let mut f = FakeDataplane::new(sizes());
        f.fail_after(1, 2);
        let b = Backend::default();
        f.set_backend(1, &b).unwrap();
        assert!(f.set_backend(1, &b).is_err());
        assert!(f.set_backend(1, &b).is_err());
        f.set_backend(1, &b).unwrap();
        assert_eq!(f.writes(), 2);
    }

    #[test]
    fn audit_catches_a_live_ring_naming_a_free_slot() {
        let mut f = FakeDataplane::new(sizes());
        f.write_ring_changes(0, 0, &[3; 13], &mut Vec::new())
            .unwrap();
        assert!(f.violations().is_empty(), "no VIP uses index 0 yet");
        f.set_vip(&VipKey::default(), &VipMeta::default()).unwrap();
        assert_eq!(f.violations().len(), 1);
    }
}
