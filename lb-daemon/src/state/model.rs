//! The desired state: VIPs, their backends and weights, the data-plane
//! resources (VIP index, backend slots) each one holds, and the gateway MAC
//! set over the API. Plain data; how it reaches the maps is `apply`, how it
//! is stored is `persist`.

use std::{collections::BTreeMap, net::IpAddr};

use lb_api::{BackendInfo, MacAddr, VipInfo};

use super::slots::Pool;
use crate::{
    dataplane::Sizes,
    maglev::{self, SlotMember},
    vip::{VipFlags, VipSpec},
};

/// One backend of a VIP in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub weight: u32,
    pub slot: u32,
    /// While the backend is being drained: the weight it had before (its
    /// share of the VIP's pre-drain table); 0 when it is not draining. Set
    /// when an operator change takes the weight from above 0 to 0, kept
    /// while it stays 0, cleared when the weight rises again; a deleted
    /// backend takes it along. So a drain ends when the backend is deleted
    /// or given a weight again.
    pub drain_weight: u32,
}

impl Member {
    /// A member with `weight`, succeeding `old` (the same backend before
    /// the change, if it existed): carries the drain over or starts one.
    pub fn next(old: Option<&Member>, weight: u32, slot: u32) -> Self {
        let drain_weight = match old {
            _ if weight > 0 => 0,
            Some(o) if o.weight > 0 => o.weight,
            Some(o) => o.drain_weight,
            None => 0,
        };
        Self {
            weight,
            slot,
            drain_weight,
        }
    }

    /// Whether the backend is being drained.
    pub fn draining(&self) -> bool {
        self.weight == 0 && self.drain_weight > 0
    }
}

/// One VIP in the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Vip {
    pub spec: VipSpec,
    pub flags: VipFlags,
    pub index: u32,
    /// By address: the order Maglev takes turns in, whatever the order the
    /// backends were added in.
    pub backends: BTreeMap<IpAddr, Member>,
}

impl Vip {
    pub fn info(&self) -> VipInfo {
        VipInfo {
            spec: self.spec,
            flags: self.flags,
            index: self.index,
            backends: self
                .backends
                .iter()
                .map(|(a, m)| backend_info(*a, m))
                .collect(),
        }
    }

    /// The Maglev table of this VIP as backend slots (`SLOT_NONE` where the
    /// ring is empty).
    pub fn table(&self, ring_size: u32) -> Result<Vec<u32>, maglev::MaglevError> {
        self.table_with(ring_size, |m| m.weight)
    }

    /// Whether some backend is being drained (the data plane then keeps
    /// the pre-drain table in the ring's standby half).
    pub fn draining(&self) -> bool {
        self.backends.values().any(Member::draining)
    }

    /// The pre-drain table: the current backends with every draining one
    /// at the weight it had before its drain. Derived from the state alone
    /// (not a snapshot of an older ring), so every node given the same
    /// changes holds the same one, whatever order they came in. `None` when
    /// nothing is draining.
    pub fn drain_table(&self, ring_size: u32) -> Option<Result<Vec<u32>, maglev::MaglevError>> {
        self.draining().then(|| {
            self.table_with(ring_size, |m| {
                if m.draining() {
                    m.drain_weight
                } else {
                    m.weight
                }
            })
        })
    }

    /// Backends that take positions in the pre-drain table.
    pub fn drain_weighted(&self) -> usize {
        self.backends
            .values()
            .filter(|m| m.weight > 0 || m.draining())
            .count()
    }

    /// The `VIP_F_*` flags of the VIP's data-plane entry: the operator's,
    /// and [`lb_common::VIP_F_DRAIN_FALLBACK`] while a backend is draining.
    pub fn map_flags(&self) -> u32 {
        let drain = if self.draining() {
            lb_common::VIP_F_DRAIN_FALLBACK
        } else {
            0
        };
        self.flags.bits() | drain
    }

    fn table_with(
        &self,
        ring_size: u32,
        weight: impl Fn(&Member) -> u32,
    ) -> Result<Vec<u32>, maglev::MaglevError> {
        let members: Vec<SlotMember> = self
            .backends
            .iter()
            .map(|(&address, m)| SlotMember {
                address,
                weight: weight(m),
                slot: m.slot,
            })
            .collect();
        maglev::slot_table(ring_size, &members)
    }
}

pub(crate) fn backend_info(address: IpAddr, m: &Member) -> BackendInfo {
    BackendInfo {
        address,
        weight: m.weight,
        slot: m.slot,
    }
}

/// The whole desired state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub(crate) vips: BTreeMap<VipSpec, Vip>,
    /// The gateway set over the API, in place of the configured one
    /// (`None`: the configuration's `gateway_mac` applies).
    pub(crate) gateway: Option<MacAddr>,
}

impl Model {
    /// The gateway MAC set over the API, if one was.
    pub fn gateway(&self) -> Option<MacAddr> {
        self.gateway
    }

    /// Every VIP, in [`VipSpec`] order.
    pub fn vips(&self) -> Vec<VipInfo> {
        self.vips.values().map(Vip::info).collect()
    }

    /// Whether there are no VIPs.
    pub fn is_empty(&self) -> bool {
        self.vips.is_empty()
    }

    /// VIP indices in use.
    pub(crate) fn index_pool(&self, sizes: &Sizes) -> Pool {
        let mut p = Pool::new(0, sizes.max_vips);
        for v in self.vips.values() {
            p.mark(v.index);
        }
        p
    }

    /// Backend slots in use (slot 0 is never handed out).
    pub(crate) fn slot_pool(&self, sizes: &Sizes) -> Pool {
        let mut p = Pool::new(1, sizes.max_backends);
        for m in self.vips.values().flat_map(|v| v.backends.values()) {
            p.mark(m.slot);
        }
        p
    }

    /// How many VIPs use `addr` (the `LB_VIP_ADDRS` count).
    pub(crate) fn addr_count(&self, addr: IpAddr) -> u32 {
        self.vips.keys().filter(|s| s.address == addr).count() as u32
    }

    /// Whether `addr` is a backend of any VIP.
    pub(crate) fn is_backend_anywhere(&self, addr: IpAddr) -> Option<VipSpec> {
        self.vips
            .values()
            .find(|v| v.backends.contains_key(&addr))
            .map(|v| v.spec)
    }

    /// Whether `addr` is the address of any VIP.
    pub(crate) fn is_vip_address(&self, addr: IpAddr) -> Option<VipSpec> {
        self.vips.keys().find(|s| s.address == addr).copied()
    }

    /// Checks that the model fits the data plane and is self-consistent:
    /// indices and slots in range and unique, slot 0 unused, ring room for
    /// every VIP. Returns what is wrong.
    pub(crate) fn check_fits(&self, sizes: &Sizes) -> Result<(), String> {
        let mut idx = Pool::new(0, sizes.max_vips);
        let mut slots = Pool::new(1, sizes.max_backends);
        for v in self.vips.values() {
            if !idx.mark(v.index) {
                return Err(format!(
                    "VIP {} has index {}, which is out of range (max_vips {}) or used twice",
                    v.spec, v.index, sizes.max_vips
                ));
            }
            for (a, m) in &v.backends {
                if !slots.mark(m.slot) {
                    return Err(format!(
                        "backend {a} of VIP {} has slot {}, which is 0, out of range \
                         (max_backends {}) or used twice",
                        v.spec, m.slot, sizes.max_backends
                    ));
                }
            }
            if v.drain_weighted() > sizes.ring_size as usize {
                return Err(format!(
                    "VIP {} has more weighted backends than ring positions ({})",
                    v.spec, sizes.ring_size
                ));
            }
        }
        Ok(())
    }
}
