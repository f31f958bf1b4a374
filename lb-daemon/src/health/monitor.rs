//! Runs the probes: one tokio task per probed backend, reconciled with the
//! state twice a second (a VIP given a check, a backend added or removed, a
//! check changed), each reporting the transitions its state machine makes
//! to the state, which rebuilds the ring.
//!
//! Spread: a backend's first probe waits a fixed fraction of the interval
//! derived from its VIP and address, so 1,000 backends checked every second
//! are probed a millisecond apart, not in one burst; each later interval
//! varies by `jitter_percent` so they do not fall back into step.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use lb_api::{BackendHealth, HealthCheck, HealthState, ProbeMode, VipSpec};
use tokio::{sync::Mutex, task::JoinHandle, time::Instant};

use super::{
    ProbeStats,
    machine::{Tracker, Transition},
    probe, unix_ms,
};
use crate::{dataplane::Dataplane, state::LbState};

/// How often the monitor looks for VIPs, backends and checks that changed.
pub const RECONCILE_EVERY: Duration = Duration::from_millis(500);

/// One backend to probe, as the state has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its VIP.
    pub vip: VipSpec,
    /// The backend.
    pub backend: IpAddr,
    /// The VIP's check, as this backend is probed
    /// ([`HealthCheck::for_backend`]).
    pub check: HealthCheck,
    /// Its health now (the state machine starts from it).
    pub state: HealthState,
    /// Its slot: a backend removed and added again between two passes has a
    /// new one, and its prober starts again from its new (initial) state.
    pub slot: u32,
}

/// Every backend of every VIP that has a check.
pub fn targets<D: Dataplane>(st: &LbState<D>) -> Vec<Target> {
    let mut out = Vec::new();
    for v in st.model().vips.values() {
        let Some(check) = &v.health else { continue };
        for (a, m) in &v.backends {
            out.push(Target {
                vip: v.spec,
                backend: *a,
                // As this backend is probed: its override applied, so a
                // change of its override restarts its prober only.
                check: check.for_backend(*a),
                state: m.health.state,
                slot: m.slot,
            });
        }
    }
    out
}

/// Probes every backend the state says to until dropped (the tasks are
/// aborted with it).
pub async fn run<D: Dataplane + 'static>(state: Arc<Mutex<LbState<D>>>, stats: ProbeStats) {
    let mut probers = Probers::default();
    let tasks = &mut probers.0;
    let mut tick = tokio::time::interval(RECONCILE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let want = targets(&*state.lock().await);
        let keys: std::collections::HashSet<_> = want.iter().map(|t| (t.vip, t.backend)).collect();
        tasks.retain(|k, (_, _, h)| {
            let keep = keys.contains(k);
            if !keep {
                h.abort();
            }
            keep
        });
        stats.retain(|v, a| keys.contains(&(*v, a)));
        for t in want {
            let key = (t.vip, t.backend);
            if tasks
                .get(&key)
                .is_some_and(|(c, slot, _)| *c == t.check && *slot == t.slot)
            {
                continue;
            }
            if let Some((_, _, h)) = tasks.remove(&key) {
                h.abort();
            }
            let (check, slot) = (t.check.clone(), t.slot);
            let h = tokio::spawn(probe_loop(state.clone(), stats.clone(), t));
            tasks.insert(key, (check, slot, h));
        }
    }
}

/// The probe task of each backend, with the check it runs and the slot it
/// was started for; dropping it (the monitor's future dropped) stops them
/// all.
#[derive(Default)]
struct Probers(HashMap<(VipSpec, IpAddr), (HealthCheck, u32, JoinHandle<()>)>);

impl Drop for Probers {
    fn drop(&mut self) {
        for (_, _, h) in self.0.values() {
            h.abort();
        }
    }
}

/// A stable fraction in [0, 1) of the interval for this backend's first
/// probe.
fn phase(vip: &VipSpec, backend: IpAddr) -> f64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (vip, backend).hash(&mut h);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// A small generator for jitter (xorshift64*): the spread needs no more.
struct Jitter(u64);

impl Jitter {
    /// A factor in [1 - pct/100, 1 + pct/100].
    fn factor(&mut self, pct: u32) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let u = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
        1.0 + (u * 2.0 - 1.0) * f64::from(pct) / 100.0
    }
}

async fn probe_loop<D: Dataplane + 'static>(
    state: Arc<Mutex<LbState<D>>>,
    stats: ProbeStats,
    t: Target,
) {
    let Target {
        vip,
        backend,
        check,
        state: start,
        slot,
    } = t;
    // `direct`: the backend's own address. `via-vip`: the VIP, with the
    // mark that has `lb_probe` encapsulate every packet of the probe to
    // this backend's slot (a slot always fits the mark: the data plane has
    // far fewer than 2^24).
    let (target, mark) = match check.mode {
        ProbeMode::Direct => (SocketAddr::new(backend, check.port_for(&vip)), None),
        ProbeMode::ViaVip => (
            SocketAddr::new(vip.address, check.port_for(&vip)),
            lb_common::probe_mark(slot),
        ),
    };
    let interval = check.interval();
    let mut tracker = Tracker::new(start);
    let p = phase(&vip, backend);
    let mut jitter = Jitter((p * u64::MAX as f64) as u64 | 1);
    let mut next = Instant::now() + interval.mul_f64(p);
    loop {
        tokio::time::sleep_until(next).await;
        next += interval.mul_f64(jitter.factor(check.jitter_percent));
        let result = probe::probe(&check, target, mark).await;
        let transition = tracker.observe(result, check.rise, check.fall);
        stats.record(&vip, backend, result, transition.is_some());
        if let Some(tr) = transition {
            report(&state, &vip, backend, tr, &mut tracker).await;
        }
        // A probe that overran (it cannot: timeout < interval) or a stalled
        // runtime: start again from now rather than firing a burst.
        let now = Instant::now();
        if next < now {
            next = now;
        }
    }
}

/// Hands a transition to the state; logs it with its fields.
async fn report<D: Dataplane>(
    state: &Mutex<LbState<D>>,
    vip: &VipSpec,
    backend: IpAddr,
    tr: Transition,
    tracker: &mut Tracker,
) {
    let health = BackendHealth {
        state: tr.to,
        reason: tr.reason,
        since_unix_ms: unix_ms(),
    };
    let applied = state.lock().await.set_backend_health(vip, backend, health);
    match applied {
        Ok(serving) => {
            let (from, to, reason) = (tr.from.name(), tr.to.name(), tr.reason.to_string());
            if tr.to == HealthState::Down {
                tracing::warn!(vip = %vip, backend = %backend, from, to, reason = %reason,
                    serving = serving.backends.len(), fail_open = serving.fail_open,
                    "backend health changed");
            } else {
                tracing::info!(vip = %vip, backend = %backend, from, to, reason = %reason,
                    serving = serving.backends.len(), fail_open = serving.fail_open,
                    "backend health changed");
            }
        }
        Err(e) => {
            // The state refused (the backend or check went away meanwhile:
            // the monitor stops this task at its next pass) or failed (the
            // change was rolled back): count again from the state it has.
            tracing::error!(vip = %vip, backend = %backend, from = tr.from.name(),
                to = tr.to.name(), cause = %e, "health change not applied");
            *tracker = Tracker::new(tr.from);
        }
    }
}
