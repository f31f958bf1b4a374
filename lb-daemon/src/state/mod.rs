//! The desired state (VIPs, backends, weights, the gateway MAC set over the
//! API) and how it reaches the data plane.
//!
//! Every mutation is validated in full before anything is written; then the
//! new state is applied to the maps in an order that keeps forwarding
//! correct at every instant (`apply`), and persisted (`persist`). A failure
//! while applying or persisting rolls the maps back, so the maps, the state
//! in memory and the state file always agree. After a restart, `adopt`
//! makes the pinned maps match the persisted state without disturbing what
//! already does.

mod adopt;
mod apply;
mod error;
mod explain;
mod fingerprint;
mod gateway;
mod model;
mod observe;
mod persist;
mod route;
mod servable;
mod slots;
pub mod validate;

#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, HashSet},
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use lb_api::{BackendHealth, HealthCheck, HealthState, MacAddr, Reason};
use lb_common::{LbConfig, PktBytes, STAT_COUNT};

pub use adopt::AdoptReport;
pub use error::StateError;
pub use explain::{
    ConnLookup, ConnView, DrainFallback, Encap, Explanation, FlowPacket, RingStep, Verdict,
};
pub use fingerprint::{RingParams, fingerprint};
pub use lb_api::{BackendInfo, BackendSpec, VipInfo};
pub use model::{Model, Serving};
pub use observe::RingObserver;
pub use persist::{STATE_FILE, Store};
pub use route::Route;
pub use servable::can_take_new_flows;

use crate::{
    dataplane::Dataplane,
    vip::{VipFlags, VipSpec},
};
use apply::Tx;
use model::{Member, Vip, backend_info};

/// Counters of one VIP and of each of its backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipCounters {
    /// The VIP's traffic.
    pub vip: PktBytes,
    /// Each backend's traffic, by address.
    pub backends: Vec<(IpAddr, PktBytes)>,
}

/// The control plane's core: the desired state and the data plane it drives.
/// Not synchronised; the API layer serialises access (one mutation at a time
/// is what makes validate-then-apply sound).
pub struct LbState<D: Dataplane> {
    dp: D,
    model: Model,
    store: Option<Store>,
    ring_observer: Option<Arc<dyn RingObserver>>,
}

impl<D: Dataplane> LbState<D> {
    /// Wraps a data plane and a state (empty, or loaded with
    /// [`Store::load`]). Writes nothing: call [`Self::adopt`] to make the
    /// maps match. `store`: where to persist mutations (`None`: nowhere).
    ///
    /// Fails with `FailedPrecondition` if the state does not fit the data
    /// plane's sizes (indices or slots out of range, e.g. after the map
    /// sizes were lowered in the configuration).
    pub fn new(dp: D, model: Model, store: Option<Store>) -> Result<Self, StateError> {
        model
            .check_fits(&dp.sizes())
            .map_err(StateError::FailedPrecondition)?;
        Ok(Self {
            dp,
            model,
            store,
            ring_observer: None,
        })
    }

    /// Tells `observer` about every ring rebuild committed from now on
    /// (the metrics module's histogram).
    pub fn set_ring_observer(&mut self, observer: Arc<dyn RingObserver>) {
        self.ring_observer = Some(observer);
    }

    /// Verifies and repairs the maps to match the state (see `adopt`):
    /// on start, over maps a previous daemon left pinned or fresh ones.
    pub fn adopt(&mut self) -> Result<AdoptReport, StateError> {
        adopt::adopt(&mut self.dp, &self.model)
    }

    /// The state.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Starts a packet capture with `filter` (not part of the desired
    /// state: nothing is persisted, and a restart ends it).
    pub fn start_capture(
        &mut self,
        filter: &lb_common::CaptureFilter,
    ) -> Result<crate::dataplane::CaptureRing, crate::dataplane::DataplaneError> {
        self.dp.start_capture(filter)
    }

    /// Ends the capture holding `ring`.
    pub fn stop_capture(
        &mut self,
        ring: crate::dataplane::CaptureRing,
    ) -> Result<(), crate::dataplane::DataplaneError> {
        self.dp.stop_capture(ring)
    }

    /// The data plane (counters, settings).
    pub fn dataplane(&self) -> &D {
        &self.dp
    }

    /// The data plane, for tests that inject failures or traffic into the
    /// fake. Everything else changes the maps through this type's methods.
    #[cfg(test)]
    pub(crate) fn dataplane_mut(&mut self) -> &mut D {
        &mut self.dp
    }

    /// Writes the node-wide settings (`LB_CONFIG`: MACs, MTU, seed, outer
    /// sources), with the gateway set over the API, if any, in place of the
    /// configured one: one write, so a restarted daemon never forwards a
    /// packet to the configured gateway the operator had replaced.
    pub fn set_node_config(&mut self, cfg: LbConfig) -> Result<(), StateError> {
        let cfg = gateway::with_gateway(cfg, self.model.gateway);
        self.dp
            .set_config(&cfg)
            .map_err(|e| StateError::dataplane("writing the node settings", &e))
    }

    /// The gateway MAC in effect (the data plane's: set over the API, or
    /// the configured one).
    pub fn gateway(&self) -> Result<MacAddr, StateError> {
        Ok(MacAddr(gateway::read(&self.dp)?.gateway_mac))
    }

    /// Sets the gateway MAC of encapsulated packets, in place of the
    /// configured one from now on, restarts included (it is persisted).
    pub fn set_gateway(&mut self, mac: MacAddr) -> Result<(), StateError> {
        let mac = validate::check_gateway(mac)?;
        let mut new = self.model.clone();
        new.gateway = Some(mac);
        self.commit_with(new, |tx, _, new| gateway::sync(tx, new.gateway).map(drop))
    }

    /// Gives the data plane back.
    pub fn into_dataplane(self) -> D {
        self.dp
    }

    /// Creates a VIP with its backends (possibly none).
    pub fn create_vip(
        &mut self,
        spec: VipSpec,
        flags: VipFlags,
        backends: &[BackendSpec],
    ) -> Result<VipInfo, StateError> {
        self.create_vip_checked(spec, flags, backends, None)
    }

    /// Creates a VIP with its backends and, if given, its health check, in
    /// one change: the backends start in the check's `initial` state, and a
    /// refusal (of the check too) leaves no VIP behind.
    pub fn create_vip_checked(
        &mut self,
        spec: VipSpec,
        flags: VipFlags,
        backends: &[BackendSpec],
        check: Option<HealthCheck>,
    ) -> Result<VipInfo, StateError> {
        validate::check_vip(&spec)?;
        if let Some(c) = &check {
            c.check(&spec)
                .map_err(|e| StateError::InvalidArgument(format!("VIP {spec}: {e}")))?;
        }
        check_backend_list(&spec, backends)?;
        if self.model.vips.contains_key(&spec) {
            return Err(StateError::AlreadyExists(format!("VIP {spec} exists")));
        }
        if let Some(owner) = self.model.is_backend_anywhere(spec.address) {
            return Err(StateError::FailedPrecondition(format!(
                "VIP address {} is a backend of VIP {owner}",
                spec.address
            )));
        }
        for b in backends {
            self.check_not_vip_address(&spec, b.address)?;
        }
        let sizes = self.dp.sizes();
        let index = self.model.index_pool(&sizes).alloc().ok_or_else(|| {
            StateError::ResourceExhausted(format!(
                "all {} VIP indices are in use (dataplane.max_vips)",
                sizes.max_vips
            ))
        })?;
        let mut vip = Vip {
            spec,
            flags,
            index,
            backends: BTreeMap::new(),
            health: check,
        };
        self.add_members(&mut vip, backends)?;
        let mut new = self.model.clone();
        new.vips.insert(spec, vip);
        self.commit(new, spec)?;
        self.get_vip(&spec)
    }

    /// Deletes a VIP and frees its index and slots.
    pub fn delete_vip(&mut self, spec: &VipSpec) -> Result<(), StateError> {
        self.vip(spec)?;
        let mut new = self.model.clone();
        new.vips.remove(spec);
        self.commit(new, *spec)
    }

    /// One VIP.
    pub fn get_vip(&self, spec: &VipSpec) -> Result<VipInfo, StateError> {
        Ok(self.vip(spec)?.info())
    }

    /// Every VIP, in [`VipSpec`] order.
    pub fn list_vips(&self) -> Vec<VipInfo> {
        self.model.vips()
    }

    /// A VIP's backends, by address.
    pub fn list_backends(&self, spec: &VipSpec) -> Result<Vec<BackendInfo>, StateError> {
        Ok(self.vip(spec)?.info().backends)
    }

    /// Adds a backend to a VIP.
    pub fn add_backend(
        &mut self,
        spec: &VipSpec,
        backend: BackendSpec,
    ) -> Result<BackendInfo, StateError> {
        check_backend_list(spec, std::slice::from_ref(&backend))?;
        let old = self.vip(spec)?;
        if old.backends.contains_key(&backend.address) {
            return Err(StateError::AlreadyExists(format!(
                "backend {} of VIP {spec} exists",
                backend.address
            )));
        }
        self.check_not_vip_address(spec, backend.address)?;
        let mut vip = old.clone();
        self.add_members(&mut vip, &[backend])?;
        let mut new = self.model.clone();
        new.vips.insert(*spec, vip);
        self.commit(new, *spec)?;
        self.backend(spec, backend.address)
    }

    /// Removes a backend from a VIP. Its slot is freed once no ring names it.
    pub fn remove_backend(&mut self, spec: &VipSpec, address: IpAddr) -> Result<(), StateError> {
        let mut vip = self.vip(spec)?.clone();
        if vip.backends.remove(&address).is_none() {
            return Err(not_a_backend(spec, address));
        }
        let mut new = self.model.clone();
        new.vips.insert(*spec, vip);
        self.commit(new, *spec)
    }

    /// Sets a backend's weight. 0 drains it: out of the ring, so no new flow
    /// goes there, but the slot stays valid so pinned flows continue.
    pub fn set_weight(
        &mut self,
        spec: &VipSpec,
        address: IpAddr,
        weight: u32,
    ) -> Result<BackendInfo, StateError> {
        validate::check_weight(spec, address, weight)?;
        let mut vip = self.vip(spec)?.clone();
        let m = vip
            .backends
            .get_mut(&address)
            .ok_or_else(|| not_a_backend(spec, address))?;
        *m = Member::next(Some(m), weight, m.slot);
        self.check_ring_room(&vip)?;
        let mut new = self.model.clone();
        new.vips.insert(*spec, vip);
        self.commit(new, *spec)?;
        self.backend(spec, address)
    }

    /// Replaces a VIP's whole backend set in one ring flip. Backends that stay
    /// keep their slots (and so their pinned flows); new ones get slots
    /// before the old ones are released, so the transition needs room for
    /// both at once.
    pub fn replace_backends(
        &mut self,
        spec: &VipSpec,
        backends: &[BackendSpec],
    ) -> Result<VipInfo, StateError> {
        self.replace_vip(spec, None, backends)
    }

    /// [`Self::replace_backends`], and with `flags` the VIP's flags too, in
    /// the same step: the new ring and the new flags are published by one
    /// write of the VIP entry (`apply::publish`), so the data plane never
    /// pairs the flags of one version with the ring of the other.
    pub fn replace_vip(
        &mut self,
        spec: &VipSpec,
        flags: Option<VipFlags>,
        backends: &[BackendSpec],
    ) -> Result<VipInfo, StateError> {
        check_backend_list(spec, backends)?;
        let old = self.vip(spec)?;
        for b in backends {
            self.check_not_vip_address(spec, b.address)?;
        }
        let mut vip = Vip {
            backends: BTreeMap::new(),
            flags: flags.unwrap_or(old.flags),
            ..old.clone()
        };
        let mut fresh = Vec::new();
        for b in backends {
            match old.backends.get(&b.address) {
                Some(m) => {
                    vip.backends
                        .insert(b.address, Member::next(Some(m), b.weight, m.slot));
                }
                None => fresh.push(*b),
            }
        }
        self.add_members(&mut vip, &fresh)?;
        let mut new = self.model.clone();
        new.vips.insert(*spec, vip);
        self.commit(new, *spec)?;
        self.get_vip(spec)
    }

    /// Which backends of a VIP may take new flows (see [`Serving`]): the
    /// ring holds exactly these.
    pub fn serving(&self, spec: &VipSpec) -> Result<Serving, StateError> {
        Ok(self.vip(spec)?.serving())
    }

    /// Sets (`Some`) or removes (`None`) a VIP's health check. Backends keep
    /// their current health under a new check (a restart or a changed
    /// interval does not flap them); removing the check brings every down
    /// backend back up (`Reason::NoCheck`).
    pub fn set_health_check(
        &mut self,
        spec: &VipSpec,
        check: Option<HealthCheck>,
        now_unix_ms: u64,
    ) -> Result<VipInfo, StateError> {
        if let Some(c) = &check {
            c.check(spec)
                .map_err(|e| StateError::InvalidArgument(format!("VIP {spec}: {e}")))?;
        }
        let mut vip = self.vip(spec)?.clone();
        if check.is_none() {
            for m in vip.backends.values_mut() {
                if m.health.is_down() {
                    m.health = BackendHealth {
                        state: HealthState::Up,
                        reason: Reason::NoCheck,
                        since_unix_ms: now_unix_ms,
                    };
                }
            }
        }
        vip.health = check;
        let mut new = self.model.clone();
        new.vips.insert(*spec, vip);
        self.commit(new, *spec)?;
        self.get_vip(spec)
    }

    /// Records a backend's new health, as the prober decided it: a backend
    /// going down leaves the ring (one flip) and its connection-table
    /// entries are invalidated; going up puts it back. Returns the VIP's
    /// serving set afterwards. FAILED_PRECONDITION if the VIP has no check
    /// (a prober that lost a race with the operator removing it).
    pub fn set_backend_health(
        &mut self,
        spec: &VipSpec,
        address: IpAddr,
        health: BackendHealth,
    ) -> Result<Serving, StateError> {
        let mut vip = self.vip(spec)?.clone();
        if vip.health.is_none() {
            return Err(StateError::FailedPrecondition(format!(
                "VIP {spec} has no health check"
            )));
        }
        let m = vip
            .backends
            .get_mut(&address)
            .ok_or_else(|| not_a_backend(spec, address))?;
        m.health = health;
        let mut new = self.model.clone();
        new.vips.insert(*spec, vip);
        self.commit(new, *spec)?;
        self.serving(spec)
    }

    /// The backend the data plane would choose for a *new* flow from
    /// `client` to `dst` (the packet's destination: a VIP, or any port of an
    /// all-ports VIP).
    pub fn route(&self, dst: &VipSpec, client: SocketAddr) -> Result<Route, StateError> {
        route::route(&self.dp, &self.model, dst, client)
    }

    /// Every step the data plane takes for one packet of a flow, read from
    /// the live maps, connection table included (`lbctl route --explain`).
    pub fn explain_route(&self, pkt: &FlowPacket) -> Result<Explanation, StateError> {
        explain::explain(&self.dp, &self.model, pkt)
    }

    /// The fingerprint of the tables VIP `spec` forwards with now, read
    /// from the data plane (`fingerprint`): equal on two nodes exactly when
    /// they send every flow of the VIP to the same backend.
    pub fn ring_fingerprint(&self, spec: &VipSpec) -> Result<String, StateError> {
        self.vip(spec)?;
        let meta = self.dp.vip(&spec.key()).ok_or_else(|| {
            StateError::Internal(format!(
                "VIP {spec} is missing from the data plane (restart the daemon to repair)"
            ))
        })?;
        let live = meta.ring_half & 1;
        let table = self.dp.ring_half(meta.index, live);
        let standby = (meta.flags & lb_common::VIP_F_DRAIN_FALLBACK != 0)
            .then(|| self.dp.ring_half(meta.index, live ^ 1));
        let addr_of = |slot: u32| {
            self.dp
                .backend(slot)
                .ok()
                .filter(|b| b.flags & lb_common::BACKEND_F_VALID != 0)
                .and_then(|b| crate::vip::unmap_addr(b.addr, b.family))
        };
        let hash_seed = self
            .dp
            .config()
            .map_err(|e| StateError::dataplane("reading the data-plane settings", &e))?
            .hash_seed;
        let params = RingParams {
            hash_seed,
            flags: meta.flags & lb_common::VIP_F_ALL,
            ring_size: self.dp.sizes().ring_size,
        };
        Ok(fingerprint(params, &table, standby.as_deref(), addr_of))
    }

    /// A VIP's counters and its backends'.
    pub fn vip_counters(&self, spec: &VipSpec) -> Result<VipCounters, StateError> {
        let vip = self.vip(spec)?;
        let read = |e| StateError::dataplane(&format!("reading the counters of {spec}"), &e);
        let mut backends = Vec::with_capacity(vip.backends.len());
        for (a, m) in &vip.backends {
            backends.push((*a, self.dp.backend_stats(m.slot).map_err(read)?));
        }
        Ok(VipCounters {
            vip: self.dp.vip_stats(vip.index).map_err(read)?,
            backends,
        })
    }

    /// The global counters, indexed by [`lb_common::Stat`].
    pub fn global_counters(&self) -> Result<[u64; STAT_COUNT as usize], StateError> {
        self.dp
            .stats()
            .map_err(|e| StateError::dataplane("reading the global counters", &e))
    }

    fn vip(&self, spec: &VipSpec) -> Result<&Vip, StateError> {
        self.model
            .vips
            .get(spec)
            .ok_or_else(|| StateError::NotFound(format!("VIP {spec} does not exist")))
    }

    fn backend(&self, spec: &VipSpec, address: IpAddr) -> Result<BackendInfo, StateError> {
        let m = self
            .vip(spec)?
            .backends
            .get(&address)
            .ok_or_else(|| not_a_backend(spec, address))?;
        Ok(backend_info(address, m))
    }

    /// A backend address must not be a VIP address (of this VIP: refused as
    /// invalid earlier; of another VIP: the encapsulated packets would be
    /// routed back to this balancer).
    fn check_not_vip_address(&self, spec: &VipSpec, address: IpAddr) -> Result<(), StateError> {
        match self.model.is_vip_address(address) {
            Some(other) => Err(StateError::FailedPrecondition(format!(
                "backend {address} of VIP {spec} is the address of VIP {other}"
            ))),
            None => Ok(()),
        }
    }

    fn check_ring_room(&self, vip: &Vip) -> Result<(), StateError> {
        let m = self.dp.sizes().ring_size;
        // The pre-drain table too: draining backends keep positions there.
        if vip.drain_weighted() > m as usize {
            return Err(StateError::ResourceExhausted(format!(
                "VIP {} would have {} weighted (or draining) backends, more than its {m} \
                 ring positions",
                vip.spec,
                vip.drain_weighted()
            )));
        }
        Ok(())
    }

    /// Adds `backends` (validated, not yet in `vip`) with fresh slots.
    fn add_members(&self, vip: &mut Vip, backends: &[BackendSpec]) -> Result<(), StateError> {
        let sizes = self.dp.sizes();
        let mut pool = self.model.slot_pool(&sizes);
        if (pool.free() as usize) < backends.len() {
            return Err(StateError::ResourceExhausted(format!(
                "{} backend slots needed, {} free (dataplane.max_backends {})",
                backends.len(),
                pool.free(),
                sizes.max_backends
            )));
        }
        // Address order, so the same request gets the same slots.
        let mut sorted = backends.to_vec();
        sorted.sort_by_key(|b| b.address);
        // A new backend starts up, unless the VIP's check says it must
        // prove itself first (`initial = "down"`).
        let initial = vip.health.as_ref().map_or(HealthState::Up, |c| c.initial);
        for b in sorted {
            let slot = pool
                .alloc()
                .ok_or_else(|| StateError::ResourceExhausted("no free backend slot".to_owned()))?;
            let mut m = Member::next(None, b.weight, slot);
            m.health.state = initial;
            vip.backends.insert(b.address, m);
        }
        self.check_ring_room(vip)
    }

    /// Applies `new` (which differs from the current state in VIP `spec`
    /// only), persists it and makes it current; or rolls the maps back.
    fn commit(&mut self, new: Model, spec: VipSpec) -> Result<(), StateError> {
        let was_open = self
            .model
            .vips
            .get(&spec)
            .is_some_and(|v| v.serving().fail_open);
        let now_open = new.vips.get(&spec).is_some_and(|v| v.serving().fail_open);
        self.commit_with(new, |tx, old, new| {
            apply::sync_vip(tx, old.vips.get(&spec), new.vips.get(&spec), old, new)
        })?;
        // Loud on purpose: a VIP failing open serves on backends its checks
        // call dead, which an operator must hear about.
        match (was_open, now_open) {
            (false, true) => tracing::error!(
                vip = %spec,
                "every backend with a weight is down: failing open, serving with all of them"
            ),
            (true, false) => {
                tracing::warn!(vip = %spec, "fail-open ended: serving with the backends that are up")
            }
            _ => {}
        }
        Ok(())
    }

    /// Makes the maps match `new` with `apply` (given the current and the
    /// new state), persists it and makes it current; or rolls the maps back.
    fn commit_with(
        &mut self,
        new: Model,
        apply: impl FnOnce(&mut Tx<'_, D>, &Model, &Model) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        if new == self.model {
            return Ok(());
        }
        let mut tx = Tx::new(&mut self.dp);
        let applied = apply(&mut tx, &self.model, &new).and_then(|()| match &self.store {
            Some(store) => store.save(&new),
            None => Ok(()),
        });
        match applied {
            Ok(()) => {
                let rebuilds = tx.commit();
                self.model = new;
                if let Some(o) = &self.ring_observer {
                    for (vip, took) in &rebuilds {
                        o.ring_rebuilt(vip, *took);
                    }
                }
                Ok(())
            }
            Err(e) => match tx.rollback() {
                Ok(()) => Err(e),
                Err(rb) => Err(StateError::Internal(format!(
                    "{e}; rolling the data plane back also failed ({}); \
                     restart the daemon to repair the maps from the state",
                    error::chain(&rb)
                ))),
            },
        }
    }
}

fn not_a_backend(spec: &VipSpec, address: IpAddr) -> StateError {
    StateError::NotFound(format!("{address} is not a backend of VIP {spec}"))
}

/// Checks each backend of a request on its own, and that none is listed twice.
fn check_backend_list(spec: &VipSpec, backends: &[BackendSpec]) -> Result<(), StateError> {
    let mut seen = HashSet::new();
    for b in backends {
        validate::check_backend_address(spec, b.address)?;
        validate::check_weight(spec, b.address, b.weight)?;
        if !seen.insert(b.address) {
            return Err(StateError::InvalidArgument(format!(
                "backend {} is listed twice for VIP {spec}",
                b.address
            )));
        }
    }
    Ok(())
}

impl LbState<crate::dataplane::Balancer> {
    /// Completes an in-place upgrade of the XDP program prepared when the
    /// data plane was opened ([`crate::dataplane::Balancer::finish_upgrade`]):
    /// call it once [`Self::adopt`] made the maps hold the state.
    pub fn finish_upgrade(
        &mut self,
        pin_dir: &std::path::Path,
    ) -> Result<Option<crate::dataplane::Upgrade>, crate::dataplane::DataplaneError> {
        self.dp.finish_upgrade(pin_dir)
    }
}
