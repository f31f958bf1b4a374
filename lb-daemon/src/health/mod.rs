//! Backend health checks: the rise/fall state machine (`machine`), one
//! probe over a non-blocking socket (`probe`), the thread that runs every
//! probe (`engine`) and the task that feeds it and reports transitions to
//! the state (`monitor`). Health never writes a map itself: a transition
//! is a state change (`LbState::set_backend_health`), applied and persisted
//! like any other, and the ring is built from `Vip::serving`, the one place
//! where health and weight meet.

pub mod engine;
pub mod machine;
pub mod monitor;
pub mod probe;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use lb_api::{ProbeCounters, VipSpec};

use machine::ProbeResult;

/// Probe counters of every probed backend, shared by the monitor (which
/// counts) and the API and metrics (which read). Kept apart from the state:
/// they change every second per backend, and a restart may start them at 0.
#[derive(Clone, Debug, Default)]
pub struct ProbeStats(Arc<Mutex<HashMap<(VipSpec, IpAddr), ProbeCounters>>>);

impl ProbeStats {
    /// The counters of one backend (zero if never probed).
    pub fn get(&self, vip: &VipSpec, backend: IpAddr) -> ProbeCounters {
        self.lock()
            .get(&(*vip, backend))
            .copied()
            .unwrap_or_default()
    }

    /// Every backend's counters.
    pub fn all(&self) -> Vec<((VipSpec, IpAddr), ProbeCounters)> {
        self.lock().iter().map(|(k, c)| (*k, *c)).collect()
    }

    /// Counts probes: each one's backend, result and whether it completed a
    /// transition. The probe thread hands over every result of a wake-up
    /// at once (one lock, not one per probe).
    pub fn record(&self, probes: &[((VipSpec, IpAddr), ProbeResult, bool)]) {
        if probes.is_empty() {
            return;
        }
        let mut m = self.lock();
        for (key, result, transition) in probes {
            let c = m.entry(*key).or_default();
            c.sent += 1;
            if result.is_err() {
                c.failed += 1;
            }
            if *transition {
                c.transitions += 1;
            }
            c.last = Some(match result {
                Ok(()) => lb_api::Reason::Ok,
                Err(r) => *r,
            });
        }
    }

    /// Forgets backends `keep` says no (removed backends, VIPs without a
    /// check), so memory follows the configuration.
    pub fn retain(&self, mut keep: impl FnMut(&VipSpec, IpAddr) -> bool) {
        self.lock().retain(|(v, a), _| keep(v, *a));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(VipSpec, IpAddr), ProbeCounters>> {
        // The map holds plain counters: a panic elsewhere cannot leave it
        // half-updated in a way that matters.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Now as Unix milliseconds (health transitions are stamped with it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
