//! Runs the probes: one thread (the [`engine`]) drives every probe of every
//! backend and keeps each backend's state machine; this task reconciles
//! with the state twice a second (a VIP given a check, a backend added or
//! removed, a check changed), hands the thread what to probe and reports
//! the transitions it sends back to the state, which rebuilds the ring.
//!
//! Why one thread and not a task per backend (nor one task with a future
//! per probe): with 1,000 backends probed every second, the runtime's part
//! of a probe (a timer, epoll registration, a wake-up per readiness event,
//! often a hop between worker threads) cost as much as the probe. Here a
//! [`Schedule`] (a heap of due times, pure and tested without I/O) says
//! which probes are due; the engine starts them and polls the sockets of
//! all running probes at once, every few milliseconds. The state lock is
//! taken only for a transition and for the reconcile pass, never per probe.
//!
//! Spread: a backend's first probe waits a fixed fraction of the interval
//! derived from its VIP and address, so 1,000 backends checked every second
//! are probed a millisecond apart, not in one burst; each later interval
//! varies by `jitter_percent` so they do not fall back into step. Probes
//! due within [`START_SLACK`] of each other start together (one wake-up
//! for several). A backend's probes never overlap: the next is scheduled when one ends, one
//! (jittered) interval after the previous one was due, or at once if that
//! has passed.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, HashSet},
    hash::{Hash, Hasher},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use lb_api::{BackendHealth, HealthCheck, HealthState, ProbeMode, VipSpec};
use tokio::sync::Mutex;

use super::{
    ProbeStats,
    engine::{self, Command},
    machine::{ProbeResult, Tracker, Transition},
    probe::Plan,
    unix_ms,
};
use crate::{dataplane::Dataplane, state::LbState};

/// How often the monitor looks for VIPs, backends and checks that changed.
pub const RECONCILE_EVERY: Duration = Duration::from_millis(500);

/// How early a probe may start: when the probe thread wakes for one probe,
/// it also starts those due within this much. 1,000 backends probed every
/// second are due a millisecond apart; waking for each costs a timer, a
/// context switch and a pass over the running probes, so they start in
/// groups of about ten instead (and the thread wakes about 100 times a
/// second). The interval of each backend is unchanged (the next probe is
/// due one interval after this one was due, not after it started); a probe
/// is at most this much early, never late.
pub const START_SLACK: Duration = Duration::from_millis(10);

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

/// Probes every backend the state says to until dropped: starts the probe
/// thread ([`engine`]), hands it the targets at every reconcile pass and
/// reports the transitions it sends back to the state. Dropping this future
/// drops the command channel, and the thread ends at its next wake-up.
pub async fn run<D: Dataplane + 'static>(state: Arc<Mutex<LbState<D>>>, stats: ProbeStats) {
    let (commands, inbox) = std::sync::mpsc::channel();
    let (changed, mut transitions) = tokio::sync::mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new()
        .name("lb-health".into())
        .spawn(move || engine::run(inbox, changed, stats));
    if let Err(e) = spawned {
        tracing::error!(cause = %e, "health checks not started: no probe thread");
        return;
    }
    let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
    reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(c) = transitions.recv() => {
                if !report(&state, &c.key.0, c.key.1, c.transition).await {
                    // Count again from the state the state has.
                    let _ = commands.send(Command::Restart {
                        prober: c.prober,
                        state: c.transition.from,
                    });
                }
            }
            _ = reconcile.tick() => {
                let want = targets(&*state.lock().await);
                if commands.send(Command::Reconcile(want)).is_err() {
                    tracing::error!("the health probe thread stopped: no more probes");
                    return;
                }
            }
        }
    }
}

/// A backend: its VIP and address.
pub(super) type Key = (VipSpec, IpAddr);

/// One probe to run.
pub(super) struct Due {
    /// Its backend.
    pub key: Key,
    /// Its prober: index and epoch (see [`Prober`]).
    pub prober: (u32, u64),
    /// What the probe does, built when the prober started.
    pub plan: Arc<Plan>,
}

/// Where a probe of `backend` under `check` goes, and its socket mark.
/// `direct`: the backend's own address. `via-vip`: the VIP, with the mark
/// that has `lb_probe` encapsulate every packet of the probe to this
/// backend's slot (a slot always fits the mark: the data plane has far
/// fewer than 2^24).
fn probe_target(
    check: &HealthCheck,
    vip: &VipSpec,
    backend: IpAddr,
    slot: u32,
) -> (SocketAddr, Option<u32>) {
    let port = check.port_for(vip);
    match check.mode {
        ProbeMode::Direct => (SocketAddr::new(backend, port), None),
        ProbeMode::ViaVip => (
            SocketAddr::new(vip.address, port),
            lb_common::probe_mark(slot),
        ),
    }
}

/// One probed backend: what its probes do, its state machine and when it
/// is probed next.
struct Prober {
    key: Key,
    plan: Arc<Plan>,
    slot: u32,
    tracker: Tracker,
    jitter: Jitter,
    /// Due time of the probe after the running one (set when one starts).
    next: Instant,
    /// Tells this prober from an earlier one at the same index (of the same
    /// backend, whose check or slot changed, or of a removed one), whose
    /// heap entries and results are then ignored.
    epoch: u64,
}

/// What a finished probe did.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Finished {
    /// The transition it completed, if any.
    pub transition: Option<Transition>,
}

/// Every prober and the order their probes are due in: pure (time is
/// passed in), so the spread, the jitter and the reconcile are tested
/// without sockets or a runtime.
///
/// Probers live at fixed indices of a vector while they run, and a due
/// probe, a running probe and a result name theirs by index and epoch: the
/// per-probe path (start, finish) indexes a vector and compares small heap
/// entries; only a reconcile pass looks backends up by VIP and address.
#[derive(Default)]
pub(super) struct Schedule {
    probers: Vec<Option<Prober>>,
    /// Indices of `probers` that are free.
    free: Vec<u32>,
    /// Each backend's index.
    index: HashMap<Key, u32>,
    /// Due probes, earliest first: (when, index, epoch). An entry whose
    /// epoch is not its prober's any more is stale and skipped.
    due: BinaryHeap<Reverse<(Instant, u32, u64)>>,
    epochs: u64,
}

impl Schedule {
    /// Starts probers for new backends and changed checks or slots, stops
    /// those of backends no longer in `want`.
    pub(super) fn reconcile(&mut self, want: Vec<Target>, now: Instant) {
        let keys: HashSet<Key> = want.iter().map(|t| (t.vip, t.backend)).collect();
        let Schedule {
            probers,
            free,
            index,
            due,
            epochs,
        } = self;
        index.retain(|k, i| {
            let keep = keys.contains(k);
            if !keep {
                probers[*i as usize] = None;
                free.push(*i);
            }
            keep
        });
        for t in want {
            let key = (t.vip, t.backend);
            let at = index.get(&key).copied();
            if let Some(i) = at
                && probers[i as usize]
                    .as_ref()
                    .is_some_and(|p| p.plan.check == t.check && p.slot == t.slot)
            {
                continue;
            }
            *epochs += 1;
            let i = at.unwrap_or_else(|| {
                let i = free.pop().unwrap_or_else(|| {
                    probers.push(None);
                    (probers.len() - 1) as u32
                });
                index.insert(key, i);
                i
            });
            let phase = phase(&t.vip, t.backend);
            let (target, mark) = probe_target(&t.check, &t.vip, t.backend, t.slot);
            let first = now + t.check.interval().mul_f64(phase);
            probers[i as usize] = Some(Prober {
                key,
                plan: Arc::new(Plan::new(t.check, target, mark)),
                slot: t.slot,
                tracker: Tracker::new(t.state),
                jitter: Jitter((phase * u64::MAX as f64) as u64 | 1),
                next: first,
                epoch: *epochs,
            });
            due.push(Reverse((first, i, *epochs)));
        }
        // Stale entries pile up only when checks change; drop them when
        // they outnumber the live ones.
        if self.due.len() > 2 * self.index.len() + 64 {
            let probers = &self.probers;
            self.due
                .retain(|Reverse((_, i, e))| live(probers, *i, *e).is_some());
        }
    }

    /// Whether `key` is probed.
    pub(super) fn contains(&self, key: &Key) -> bool {
        self.index.contains_key(key)
    }

    /// When the next probe is due (`None`: nothing to probe, or every
    /// backend's probe is running).
    pub(super) fn next_due(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, i, epoch))) = self.due.peek() {
            if live(&self.probers, i, epoch).is_some() {
                return Some(at);
            }
            self.due.pop();
        }
        None
    }

    /// Hands every probe due by `by` to `start`, and sets when each
    /// backend's following probe is due: one interval, jittered, after this
    /// one was due.
    pub(super) fn start_due(&mut self, by: Instant, mut start: impl FnMut(Due)) {
        while let Some(&Reverse((at, i, epoch))) = self.due.peek() {
            if at > by {
                break;
            }
            self.due.pop();
            let Some(p) = live_mut(&mut self.probers, i, epoch) else {
                continue;
            };
            let check = &p.plan.check;
            p.next = at
                + check
                    .interval()
                    .mul_f64(p.jitter.factor(check.jitter_percent));
            start(Due {
                key: p.key,
                prober: (i, epoch),
                plan: p.plan.clone(),
            });
        }
    }

    /// Counts a probe's result in its backend's state machine and schedules
    /// the backend's next probe; `None` if the result belongs to a prober
    /// that was stopped or replaced meanwhile.
    pub(super) fn finish(
        &mut self,
        (i, epoch): (u32, u64),
        result: ProbeResult,
        now: Instant,
    ) -> Option<Finished> {
        let p = live_mut(&mut self.probers, i, epoch)?;
        let transition = p
            .tracker
            .observe(result, p.plan.check.rise, p.plan.check.fall);
        // A probe that overran (it cannot: timeout < interval) or a stalled
        // thread: start again from now rather than firing a burst.
        p.next = p.next.max(now);
        self.due.push(Reverse((p.next, i, epoch)));
        Some(Finished { transition })
    }

    /// The state refused a transition: count again from `state`.
    pub(super) fn restart_count(&mut self, (i, epoch): (u32, u64), state: HealthState) {
        if let Some(p) = live_mut(&mut self.probers, i, epoch) {
            p.tracker = Tracker::new(state);
        }
    }
}

/// The prober at index `i` if it is still the one of `epoch`.
fn live(probers: &[Option<Prober>], i: u32, epoch: u64) -> Option<&Prober> {
    probers
        .get(i as usize)?
        .as_ref()
        .filter(|p| p.epoch == epoch)
}

/// [`live`], mutable.
fn live_mut(probers: &mut [Option<Prober>], i: u32, epoch: u64) -> Option<&mut Prober> {
    probers
        .get_mut(i as usize)?
        .as_mut()
        .filter(|p| p.epoch == epoch)
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

/// Hands a transition to the state; logs it with its fields. False if the
/// state did not take it.
async fn report<D: Dataplane>(
    state: &Mutex<LbState<D>>,
    vip: &VipSpec,
    backend: IpAddr,
    tr: Transition,
) -> bool {
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
            true
        }
        Err(e) => {
            // The state refused (the backend or check went away meanwhile:
            // the monitor stops its prober at its next pass) or failed (the
            // change was rolled back).
            tracing::error!(vip = %vip, backend = %backend, from = tr.from.name(),
                to = tr.to.name(), cause = %e, "health change not applied");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_api::{CheckKind, Reason};

    fn vip() -> VipSpec {
        "198.18.100.1:80/tcp".parse().unwrap()
    }

    fn check(jitter_percent: u32) -> HealthCheck {
        let mut c = HealthCheck::new(CheckKind::Tcp);
        c.interval_ms = 1000;
        c.timeout_ms = 500;
        c.rise = 2;
        c.fall = 3;
        c.jitter_percent = jitter_percent;
        c
    }

    fn target(i: u32, check: &HealthCheck) -> Target {
        Target {
            vip: vip(),
            backend: IpAddr::from(std::net::Ipv4Addr::from(0xc613_0001 + i)),
            check: check.clone(),
            state: HealthState::Up,
            slot: i,
        }
    }

    /// Every probe due by `now`.
    fn due(s: &mut Schedule, now: Instant) -> Vec<Due> {
        let mut out = Vec::new();
        s.start_due(now, |d| out.push(d));
        out
    }

    #[test]
    fn first_probes_are_spread_over_one_interval() {
        let (mut s, t0) = (Schedule::default(), Instant::now());
        let c = check(10);
        s.reconcile((0..1000).map(|i| target(i, &c)).collect(), t0);
        let mut per_10ms = [0u32; 100];
        let mut seen = 0;
        while let Some(at) = s.next_due() {
            let d = due(&mut s, at);
            let off = at - t0;
            assert!(off < Duration::from_secs(1), "{off:?}");
            per_10ms[(off.as_millis() / 10) as usize] += d.len() as u32;
            seen += d.len();
        }
        assert_eq!(seen, 1000, "each backend once, none again before it ends");
        // 10 per 10 ms on average; a burst would put hundreds in one.
        let max = per_10ms.iter().max().unwrap();
        assert!(*max <= 30, "{per_10ms:?}");
        assert!(per_10ms.iter().filter(|&&n| n == 0).count() < 5);
    }

    /// Probes one backend `n` times, each finishing `took` after it was
    /// due; returns the due times.
    fn drive(s: &mut Schedule, n: usize, took: Duration) -> Vec<Instant> {
        let mut at = Vec::new();
        for _ in 0..n {
            let t = s.next_due().unwrap();
            let d = due(s, t);
            assert_eq!(d.len(), 1);
            // Never a second probe of a backend while one runs.
            assert_eq!(s.next_due(), None);
            assert!(s.finish(d[0].prober, Ok(()), t + took).is_some());
            at.push(t);
        }
        at
    }

    #[test]
    fn intervals_vary_by_the_jitter_and_an_overrun_starts_from_now() {
        let (mut s, t0) = (Schedule::default(), Instant::now());
        s.reconcile(vec![target(0, &check(10))], t0);
        let at = drive(&mut s, 200, Duration::from_millis(1));
        let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        for g in &gaps {
            assert!(
                (Duration::from_millis(900)..=Duration::from_millis(1100)).contains(g),
                "{g:?}"
            );
        }
        let (lo, hi) = (gaps.iter().min().unwrap(), gaps.iter().max().unwrap());
        assert!(*hi - *lo > Duration::from_millis(100), "{lo:?}..{hi:?}");

        let mut s = Schedule::default();
        s.reconcile(vec![target(0, &check(0))], t0);
        let at = drive(&mut s, 5, Duration::from_millis(1));
        assert!(at.windows(2).all(|w| w[1] - w[0] == Duration::from_secs(1)));
        // A probe that ends after its successor was due: the next at once.
        let t = s.next_due().unwrap();
        assert_eq!(t, *at.last().unwrap() + Duration::from_secs(1));
        let late = t + Duration::from_millis(1500);
        let d = due(&mut s, t);
        s.finish(d[0].prober, Ok(()), late).unwrap();
        assert_eq!(s.next_due(), Some(late));
    }

    #[test]
    fn a_probe_started_early_keeps_its_backend_on_schedule() {
        let (mut s, t0) = (Schedule::default(), Instant::now());
        s.reconcile(vec![target(0, &check(0))], t0);
        let at = s.next_due().unwrap();
        // The monitor woken at `now` starts what is due by now + slack.
        let now = at - START_SLACK - Duration::from_millis(1);
        assert!(due(&mut s, now + START_SLACK).is_empty());
        let now = at - START_SLACK;
        let d = due(&mut s, now + START_SLACK);
        assert_eq!(d.len(), 1);
        s.finish(d[0].prober, Ok(()), at).unwrap();
        // One interval after it was due, not after it started.
        assert_eq!(s.next_due(), Some(at + Duration::from_secs(1)));
    }

    #[test]
    fn results_drive_rise_and_fall_and_a_refused_transition_counts_again() {
        let (mut s, t0) = (Schedule::default(), Instant::now());
        s.reconcile(vec![target(0, &check(0))], t0);
        let probe = |s: &mut Schedule, r: ProbeResult| {
            let t = s.next_due().unwrap();
            let d = due(s, t);
            let f = s.finish(d[0].prober, r, t).unwrap();
            (d[0].prober, f.transition)
        };
        let fail = Err(Reason::Refused);
        assert_eq!(probe(&mut s, fail).1, None);
        assert_eq!(probe(&mut s, fail).1, None);
        let (prober, tr) = probe(&mut s, Err(Reason::Timeout));
        assert_eq!(
            tr,
            Some(Transition {
                from: HealthState::Up,
                to: HealthState::Down,
                reason: Reason::Timeout
            })
        );
        // The state refused it: three more failures are needed again.
        s.restart_count(prober, HealthState::Up);
        assert_eq!(probe(&mut s, fail).1, None);
        assert_eq!(probe(&mut s, fail).1, None);
        assert!(probe(&mut s, fail).1.is_some());
        assert_eq!(probe(&mut s, Ok(())).1, None);
        assert_eq!(probe(&mut s, Ok(())).1.unwrap().to, HealthState::Up);
    }

    #[test]
    fn reconcile_keeps_restarts_and_stops_probers() {
        let (mut s, t0) = (Schedule::default(), Instant::now());
        let c = check(0);
        s.reconcile(vec![target(0, &c), target(1, &c)], t0);
        let running = due(&mut s, t0 + Duration::from_secs(1));
        assert_eq!(running.len(), 2);
        // The same targets again: nothing restarts, the running probes count.
        s.reconcile(vec![target(0, &c), target(1, &c)], t0);
        assert_eq!(s.next_due(), None);
        // Backend 0's check changes, backend 1 is removed, backend 2 added
        // (down, as a new backend of a check starting down would be).
        let mut changed = check(0);
        changed.fall = 1;
        let mut b2 = target(2, &c);
        b2.state = HealthState::Down;
        s.reconcile(vec![target(0, &changed), b2], t0);
        assert!(!s.contains(&running[1].key));
        assert!(s.contains(&running[0].key) && s.contains(&b2_key()));
        // Results of the old prober and of the removed backend: ignored.
        for d in &running {
            assert_eq!(s.finish(d.prober, Err(Reason::Refused), t0), None);
        }
        let now = t0 + Duration::from_secs(1);
        let d = due(&mut s, now);
        assert_eq!(d.len(), 2);
        for d in d {
            let f = s.finish(d.prober, Err(Reason::Refused), now).unwrap();
            if d.key == running[0].key {
                // The new check: fall = 1.
                assert_eq!(f.transition.unwrap().to, HealthState::Down);
            } else {
                assert_eq!(f.transition, None, "starts down, stays down");
            }
        }
        // A new slot (removed and added again between two passes) restarts
        // from the state the state has.
        let mut again = target(0, &changed);
        again.slot = 7;
        s.reconcile(vec![again, target(2, &c)], now);
        let t = s.next_due().unwrap();
        let d = due(&mut s, t);
        assert!(d.iter().all(|d| d.prober.1 > running[0].prober.1));
    }

    fn b2_key() -> Key {
        (vip(), IpAddr::from(std::net::Ipv4Addr::from(0xc613_0003)))
    }
}
