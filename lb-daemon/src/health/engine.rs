//! The probe engine: one thread that runs every probe. Each wake-up it
//! starts the probes the [`Schedule`] says are due (within
//! [`START_SLACK`]), polls the sockets of all probes in flight with one
//! `poll(2)`, advances those that are ready, expires those past their
//! deadline, feeds the results to the schedule (state machines, next due
//! times) and sends the transitions to the monitor task, which applies them
//! to the state. Then it sleeps until the next due probe, the next
//! deadline or [`POLL_EVERY`], whichever is first.
//!
//! Batching is the point: at 1,000 probes a second the thread wakes about
//! 200 times a second, not once per readiness event, and a probe's socket
//! is never registered with epoll. The price is that a probe's result is
//! seen up to [`POLL_EVERY`] after it arrived, which no rise/fall count
//! notices; deadlines are kept exactly (the thread wakes for them).

use std::{
    sync::mpsc::{Receiver, RecvTimeoutError},
    time::{Duration, Instant},
};

use lb_api::HealthState;

use super::{
    ProbeStats,
    machine::{ProbeResult, Transition},
    monitor::{Key, RECONCILE_EVERY, START_SLACK, Schedule, Target},
    probe::{self, IdleSockets, Probe, Progress},
};

/// How often the sockets of probes in flight are polled.
pub const POLL_EVERY: Duration = START_SLACK;

/// What the monitor task tells the engine.
pub enum Command {
    /// Probe exactly these backends (see [`Schedule::reconcile`]).
    Reconcile(Vec<Target>),
    /// The state refused a transition: count again from `state`.
    Restart {
        /// The backend's prober then (index, epoch).
        prober: (u32, u64),
        /// The health the state has.
        state: HealthState,
    },
}

/// A transition a backend's state machine made, for the state.
pub struct Changed {
    /// The backend.
    pub key: Key,
    /// Its prober (index, epoch).
    pub prober: (u32, u64),
    /// From, to and why.
    pub transition: Transition,
}

/// A probe in flight and whose it is.
struct Running {
    key: Key,
    prober: (u32, u64),
    probe: Probe,
}

/// Runs until the monitor drops its end of `commands` (or of `changed`).
pub fn run(
    commands: Receiver<Command>,
    changed: tokio::sync::mpsc::UnboundedSender<Changed>,
    stats: ProbeStats,
) {
    let mut schedule = Schedule::default();
    let mut running: Vec<Running> = Vec::new();
    let mut idle = IdleSockets::default();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut ended: Vec<(Key, (u32, u64), ProbeResult)> = Vec::new();
    let mut counted: Vec<(Key, ProbeResult, bool)> = Vec::new();
    let mut changes: Vec<Changed> = Vec::new();
    loop {
        let now = Instant::now();
        schedule.start_due(now + START_SLACK, |d| {
            match Probe::start(d.plan, now, &mut idle) {
                Progress::Pending(probe) => running.push(Running {
                    key: d.key,
                    prober: d.prober,
                    probe,
                }),
                Progress::Done(r) => ended.push((d.key, d.prober, r)),
            }
        });

        if !running.is_empty() {
            fds.clear();
            fds.extend(running.iter().map(|r| libc::pollfd {
                fd: r.probe.fd(),
                events: r.probe.events(),
                revents: 0,
            }));
            if let Err(e) = probe::poll(&mut fds, Duration::ZERO) {
                // Cannot happen with valid descriptors; the deadlines still
                // end every probe.
                tracing::error!(cause = %e, "poll of health probe sockets failed");
                fds.iter_mut().for_each(|f| f.revents = 0);
            }
            let now = Instant::now();
            // Backwards, so that `swap_remove` moves an entry already seen
            // into the hole and `fds[i]` stays the descriptor of entry i.
            for i in (0..running.len()).rev() {
                let revents = fds[i].revents;
                if revents == 0 && running[i].probe.deadline > now {
                    continue;
                }
                let Running { key, prober, probe } = running.swap_remove(i);
                let progress = if revents == 0 {
                    Progress::Pending(probe)
                } else {
                    probe.advance(revents, &mut idle)
                };
                match progress {
                    Progress::Done(r) => ended.push((key, prober, r)),
                    Progress::Pending(p) if p.deadline <= now => {
                        ended.push((key, prober, p.expire()));
                    }
                    Progress::Pending(probe) => running.push(Running { key, prober, probe }),
                }
            }
        }

        let now = Instant::now();
        for (key, prober, result) in ended.drain(..) {
            let Some(done) = schedule.finish(prober, result, now) else {
                // Its backend was removed or its check changed meanwhile.
                continue;
            };
            counted.push((key, result, done.transition.is_some()));
            if let Some(transition) = done.transition {
                changes.push(Changed {
                    key,
                    prober,
                    transition,
                });
            }
        }
        // Counted before the state hears of a transition, so that whoever
        // sees the transition sees the probe that made it.
        stats.record(&counted);
        counted.clear();
        for c in changes.drain(..) {
            if changed.send(c).is_err() {
                return;
            }
        }

        // Sleep until something is due, waking early for a command.
        let mut wake = now
            + if running.is_empty() {
                RECONCILE_EVERY
            } else {
                POLL_EVERY
            };
        if let Some(at) = schedule.next_due() {
            wake = wake.min(at);
        }
        if let Some(at) = running.iter().map(|r| r.probe.deadline).min() {
            wake = wake.min(at);
        }
        let mut wait = wake.saturating_duration_since(Instant::now());
        loop {
            match commands.recv_timeout(wait) {
                Ok(Command::Reconcile(want)) => {
                    schedule.reconcile(want, Instant::now());
                    stats.retain(|v, a| schedule.contains(&(*v, a)));
                }
                Ok(Command::Restart { prober, state }) => {
                    schedule.restart_count(prober, state);
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // Take what else is queued, then go round: a reconcile may
            // have made probes due now.
            wait = Duration::ZERO;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, TcpListener};

    use lb_api::{CheckKind, HealthCheck, Reason, VipSpec};

    use super::*;

    fn check() -> HealthCheck {
        let mut c = HealthCheck::new(CheckKind::Tcp);
        c.interval_ms = 50;
        c.timeout_ms = 30;
        c.rise = 1;
        c.fall = 2;
        c.jitter_percent = 0;
        c
    }

    /// The thread end to end on loopback: a listening backend stays up and
    /// is counted, a closed port goes down after `fall` refusals, a
    /// backend given a port that is then closed goes down too, a backend
    /// removed by a reconcile loses its counters, and dropping the command
    /// channel ends the thread.
    #[test]
    fn probes_count_transitions_and_stop_with_the_channel() {
        // Two VIPs with one backend each, both on loopback: the key is
        // (VIP, backend), the port an override.
        let vip: VipSpec = "198.18.100.1:80/tcp".parse().unwrap();
        let vip2: VipSpec = "198.18.100.2:80/tcp".parse().unwrap();
        let open = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let (open_port, closed_port) = (
            open.local_addr().unwrap().port(),
            closed.local_addr().unwrap().port(),
        );
        drop(closed);
        let backend = IpAddr::from(Ipv4Addr::LOCALHOST);
        let target = |vip: VipSpec, port: u16, slot: u32| {
            let mut c = check();
            c.port = Some(port);
            Target {
                vip,
                backend,
                check: c,
                state: HealthState::Up,
                slot,
            }
        };
        let (commands, inbox) = std::sync::mpsc::channel();
        let (changed, mut transitions) = tokio::sync::mpsc::unbounded_channel();
        let stats = ProbeStats::default();
        let thread = {
            let stats = stats.clone();
            std::thread::spawn(move || run(inbox, changed, stats))
        };
        commands
            .send(Command::Reconcile(vec![
                target(vip, open_port, 0),
                target(vip2, closed_port, 1),
            ]))
            .unwrap();

        let c = transitions.blocking_recv().expect("a transition");
        assert_eq!(c.key, (vip2, backend));
        assert_eq!(c.transition.to, HealthState::Down);
        assert_eq!(c.transition.reason, Reason::Refused);
        let counted = stats.get(&vip2, backend);
        assert!(
            counted.sent >= 2 && counted.failed == counted.sent,
            "{counted:?}"
        );
        assert_eq!(counted.transitions, 1);
        std::thread::sleep(Duration::from_millis(300));
        let ok = stats.get(&vip, backend);
        assert!(ok.sent >= 3 && ok.failed == 0, "{ok:?}");
        assert_eq!(ok.last, Some(Reason::Ok));
        assert!(transitions.try_recv().is_err(), "the open port stays up");

        // The listener goes: the other backend falls too.
        drop(open);
        let c = transitions.blocking_recv().expect("a transition");
        assert_eq!(
            (c.key, c.transition.to),
            ((vip, backend), HealthState::Down)
        );

        // Removed from the targets: no more probes, no counters.
        commands
            .send(Command::Reconcile(vec![target(vip, open_port, 0)]))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(stats.get(&vip2, backend).sent, 0);

        drop(commands);
        thread.join().unwrap();
    }
}
