//! The desired state: VIPs, their backends and weights, the data-plane
//! resources (VIP index, backend slots) each one holds, and the gateway MAC
//! set over the API. Plain data; how it reaches the maps is `apply`, how it
//! is stored is `persist`.

use std::{collections::BTreeMap, net::IpAddr};

use lb_api::{BackendHealth, BackendInfo, HealthCheck, MacAddr, VipInfo};

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
    /// Up or down, as the VIP's health check last decided (independent of
    /// the weight: a drained backend is still probed).
    pub health: BackendHealth,
}

impl Member {
    /// A member with `weight`, succeeding `old` (the same backend before
    /// the change, if it existed): carries the drain over or starts one,
    /// and keeps the backend's health (a weight change is not a probe).
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
            health: old.map(|o| o.health).unwrap_or_default(),
        }
    }

    /// Whether the backend is being drained and still takes its flows back:
    /// drained by the operator and not down. A drained backend that its
    /// health check finds down loses the drain fallback (its flows must
    /// reach a live server and be reset, not follow it); its
    /// `drain_weight` is kept, so the fallback returns if it comes back up
    /// while still drained.
    pub fn draining(&self) -> bool {
        self.weight == 0 && self.drain_weight > 0 && !self.health.is_down()
    }
}

/// Which backends of a VIP may take new flows: the answer every feature that
/// cares whether a VIP can serve asks (the ring is built from it; announcing
/// a VIP only while it is non-empty is the BGP speaker's rule).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Serving {
    /// The backends that take new flows, by address.
    pub backends: Vec<IpAddr>,
    /// Whether they are there only because every backend with a weight is
    /// down: the VIP fails open and serves with all of them, since a probe
    /// outage must not become a full outage.
    pub fail_open: bool,
}

impl Serving {
    /// Whether no backend takes new flows (the ring is empty; packets of new
    /// flows are dropped as `drop_no_backend`).
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
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
    /// Its health check (`None`: every backend counts as up).
    pub health: Option<HealthCheck>,
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
            health: self.health.clone(),
            fail_open: self.serving().fail_open,
        }
    }

    /// Which backends may take new flows: those with a weight above 0 that
    /// are not down; if that leaves none while some have a weight, all of
    /// those (fail open). The one place health and weight meet: the ring is
    /// built from this set and nothing else.
    pub fn serving(&self) -> Serving {
        let weighted = || self.backends.iter().filter(|(_, m)| m.weight > 0);
        let up: Vec<IpAddr> = weighted()
            .filter(|(_, m)| !m.health.is_down())
            .map(|(a, _)| *a)
            .collect();
        if up.is_empty() && weighted().next().is_some() {
            return Serving {
                backends: weighted().map(|(a, _)| *a).collect(),
                fail_open: true,
            };
        }
        Serving {
            backends: up,
            fail_open: false,
        }
    }

    /// The Maglev table of this VIP as backend slots (`SLOT_NONE` where the
    /// ring is empty).
    pub fn table(&self, ring_size: u32) -> Result<Vec<u32>, maglev::MaglevError> {
        let serving = self.serving();
        // Sorted by address, like `backends`.
        self.table_with(ring_size, |a, m| {
            if serving.backends.binary_search(a).is_ok() {
                m.weight
            } else {
                0
            }
        })
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
            let serving = self.serving();
            self.table_with(ring_size, |a, m| {
                if m.draining() {
                    m.drain_weight
                } else if serving.backends.binary_search(a).is_ok() {
                    m.weight
                } else {
                    0
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
        weight: impl Fn(&IpAddr, &Member) -> u32,
    ) -> Result<Vec<u32>, maglev::MaglevError> {
        let members: Vec<SlotMember> = self
            .backends
            .iter()
            .map(|(&address, m)| SlotMember {
                address,
                weight: weight(&address, m),
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
        health: m.health,
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
