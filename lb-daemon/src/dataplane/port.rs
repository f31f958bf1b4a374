//! The narrow set of map operations the control plane's state layer needs,
//! as a trait: [`Balancer`] implements it on the real maps, `FakeDataplane`
//! (feature `fake-dataplane`, for tests) in memory, so everything above
//! (state, gRPC) is testable without root (the adapter-as-dependency shape of
//! Katran's control library).

use lb_common::{
    AddrKey, Backend, ConnEntry, FlowKey, FlowKey4, LbConfig, PktBytes, STAT_COUNT, VipKey, VipMeta,
};

use super::{Balancer, DataplaneError, Sizes};

/// Map operations on a loaded balancer. Semantics are those of [`Balancer`]'s
/// methods of the same names.
pub trait Dataplane: Send {
    /// The sizes the maps were created with.
    fn sizes(&self) -> Sizes;

    /// Creates or replaces a VIP entry in one atomic map update.
    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), DataplaneError>;

    /// Removes a VIP entry.
    fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError>;

    /// Reads a VIP entry.
    fn vip(&self, key: &VipKey) -> Option<VipMeta>;

    /// Every VIP entry, if this data plane can enumerate them (`None`: it
    /// cannot, and adoption then cannot find entries the state does not know).
    fn vip_entries(&self) -> Option<Vec<(VipKey, VipMeta)>> {
        None
    }

    /// Sets how many VIPs an address carries (0 removes the address).
    fn set_vip_addr(&mut self, key: &AddrKey, count: u32) -> Result<(), DataplaneError>;

    /// Every VIP address with its count, if this data plane can enumerate
    /// them (see [`Self::vip_entries`]).
    fn vip_addr_entries(&self) -> Option<Vec<(AddrKey, u32)>> {
        None
    }

    /// Writes a backend slot.
    fn set_backend(&mut self, slot: u32, b: &Backend) -> Result<(), DataplaneError>;

    /// Reads a backend slot.
    fn backend(&self, slot: u32) -> Result<Backend, DataplaneError>;

    /// Makes one half of a VIP's ring equal `table` (`ring_size` slots),
    /// storing only the positions that differ, and appends each changed
    /// position with the slot it held to `changed` before storing it (so a
    /// write that fails part-way is still undone exactly); returns how many
    /// changed.
    fn write_ring_changes(
        &mut self,
        vip_index: u32,
        half: u32,
        table: &[u32],
        changed: &mut Vec<(u32, u32)>,
    ) -> Result<usize, DataplaneError>;

    /// Reads one half of a VIP's ring.
    fn ring_half(&self, vip_index: u32, half: u32) -> Vec<u32>;

    /// Whether one half of a VIP's ring holds `table` (`ring_size` slots).
    fn ring_half_equals(&self, vip_index: u32, half: u32, table: &[u32]) -> bool {
        self.ring_half(vip_index, half) == table
    }

    /// Reads one ring position (route prediction needs just one).
    fn ring_slot(&self, vip_index: u32, half: u32, pos: u32) -> u32 {
        self.ring_half(vip_index, half)
            .get(pos as usize)
            .copied()
            .unwrap_or(lb_common::SLOT_NONE)
    }

    /// Zeroes a VIP index's and/or a backend slot's counters.
    fn clear_stats(
        &mut self,
        vip_index: Option<u32>,
        slot: Option<u32>,
    ) -> Result<(), DataplaneError>;

    /// Global counters, indexed by [`lb_common::Stat`].
    fn stats(&self) -> Result<[u64; STAT_COUNT as usize], DataplaneError>;

    /// Traffic of a VIP index.
    fn vip_stats(&self, vip_index: u32) -> Result<PktBytes, DataplaneError>;

    /// Traffic of a backend slot.
    fn backend_stats(&self, slot: u32) -> Result<PktBytes, DataplaneError>;

    /// Writes the node-wide settings.
    fn set_config(&mut self, cfg: &LbConfig) -> Result<(), DataplaneError>;

    /// Reads the node-wide settings (the hash seed route prediction uses).
    fn config(&self) -> Result<LbConfig, DataplaneError>;

    /// The live connection-table entry of an IPv4 flow (`LB_CONN4`;
    /// `None`: no entry), for `lbctl route --explain`.
    fn conn_entry4(&self, key: &FlowKey4) -> Result<Option<ConnEntry>, DataplaneError>;

    /// The live connection-table entry of an IPv6 flow (`LB_CONN`).
    fn conn_entry6(&self, key: &FlowKey) -> Result<Option<ConnEntry>, DataplaneError>;

    /// Starts a packet capture (see `Balancer::start_capture`); data planes
    /// that cannot capture refuse.
    fn start_capture(
        &mut self,
        _filter: &lb_common::CaptureFilter,
    ) -> Result<super::CaptureRing, DataplaneError> {
        Err(DataplaneError::CaptureUnsupported)
    }

    /// Ends the capture holding `ring`.
    fn stop_capture(&mut self, _ring: super::CaptureRing) -> Result<(), DataplaneError> {
        Ok(())
    }
}

impl Dataplane for Balancer {
    fn sizes(&self) -> Sizes {
        Balancer::sizes(self)
    }

    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), DataplaneError> {
        Balancer::set_vip(self, key, meta)
    }

    fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        Balancer::remove_vip(self, key)
    }

    fn vip_entries(&self) -> Option<Vec<(VipKey, VipMeta)>> {
        Balancer::vip_entries(self).ok()
    }

    fn vip_addr_entries(&self) -> Option<Vec<(AddrKey, u32)>> {
        Balancer::vip_addr_entries(self).ok()
    }

    fn ring_slot(&self, vip_index: u32, half: u32, pos: u32) -> u32 {
        Balancer::ring_slot(self, vip_index, half, pos)
    }

    fn vip(&self, key: &VipKey) -> Option<VipMeta> {
        Balancer::vip(self, key)
    }

    fn set_vip_addr(&mut self, key: &AddrKey, count: u32) -> Result<(), DataplaneError> {
        Balancer::set_vip_addr(self, key, count)
    }

    fn set_backend(&mut self, slot: u32, b: &Backend) -> Result<(), DataplaneError> {
        Balancer::set_backend(self, slot, b)
    }

    fn backend(&self, slot: u32) -> Result<Backend, DataplaneError> {
        Balancer::backend(self, slot)
    }

    fn write_ring_changes(
        &mut self,
        vip_index: u32,
        half: u32,
        table: &[u32],
        changed: &mut Vec<(u32, u32)>,
    ) -> Result<usize, DataplaneError> {
        Balancer::write_ring_changes(self, vip_index, half, table, changed)
    }

    fn ring_half(&self, vip_index: u32, half: u32) -> Vec<u32> {
        Balancer::ring_half(self, vip_index, half)
    }

    fn ring_half_equals(&self, vip_index: u32, half: u32, table: &[u32]) -> bool {
        Balancer::ring_half_equals(self, vip_index, half, table)
    }

    fn clear_stats(
        &mut self,
        vip_index: Option<u32>,
        slot: Option<u32>,
    ) -> Result<(), DataplaneError> {
        Balancer::clear_stats(self, vip_index, slot)
    }

    fn stats(&self) -> Result<[u64; STAT_COUNT as usize], DataplaneError> {
        Balancer::stats(self)
    }

    fn vip_stats(&self, vip_index: u32) -> Result<PktBytes, DataplaneError> {
        Balancer::vip_stats(self, vip_index)
    }

    fn backend_stats(&self, slot: u32) -> Result<PktBytes, DataplaneError> {
        Balancer::backend_stats(self, slot)
    }

    fn set_config(&mut self, cfg: &LbConfig) -> Result<(), DataplaneError> {
        Balancer::set_config(self, cfg)
    }

    fn config(&self) -> Result<LbConfig, DataplaneError> {
        Balancer::config(self)
    }

    fn conn_entry4(&self, key: &FlowKey4) -> Result<Option<ConnEntry>, DataplaneError> {
        Balancer::lookup_conn4(self, key)
    }

    fn conn_entry6(&self, key: &FlowKey) -> Result<Option<ConnEntry>, DataplaneError> {
        Balancer::lookup_conn6(self, key)
    }

    fn start_capture(
        &mut self,
        filter: &lb_common::CaptureFilter,
    ) -> Result<super::CaptureRing, DataplaneError> {
        Balancer::start_capture(self, filter)
    }

    fn stop_capture(&mut self, ring: super::CaptureRing) -> Result<(), DataplaneError> {
        Balancer::stop_capture(self, ring)
    }
}
