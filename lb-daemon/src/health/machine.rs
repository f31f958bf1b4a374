//! The rise/fall state machine of one backend: pure, no clock, no I/O.
//!
//! An up backend goes down after `fall` failed probes in a row; a down
//! backend comes up after `rise` successful probes in a row. One result of
//! the other kind restarts the count, so a flapping backend (fail, pass,
//! fail, ...) never reaches either threshold and stays where it is: what
//! keepalived and HAProxy do, and what keeps the ring from churning.

use lb_api::{HealthState, Reason};

/// The outcome of one probe: `Ok(())` or why it failed.
pub type ProbeResult = Result<(), Reason>;

/// A change of state a probe result caused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: HealthState,
    /// The state entered.
    pub to: HealthState,
    /// Why: the failure that completed the `fall` run, or `Ok`.
    pub reason: Reason,
}

/// One backend's counting state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracker {
    state: HealthState,
    /// Consecutive results that argue for leaving `state`.
    run: u32,
}

impl Tracker {
    /// Starts counting from `state` (the persisted one after a restart, so
    /// a down backend needs `rise` passes to come back, not a flap).
    pub fn new(state: HealthState) -> Self {
        Self { state, run: 0 }
    }

    /// The current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Counts one probe result; returns the transition it completes, if
    /// any.
    pub fn observe(&mut self, result: ProbeResult, rise: u32, fall: u32) -> Option<Transition> {
        let (needed, to, reason) = match (self.state, result) {
            // A result that agrees with the state ends any run against it.
            (HealthState::Up, Ok(())) | (HealthState::Down, Err(_)) => {
                self.run = 0;
                return None;
            }
            (HealthState::Up, Err(why)) => (fall, HealthState::Down, why),
            (HealthState::Down, Ok(())) => (rise, HealthState::Up, Reason::Ok),
        };
        self.run += 1;
        if self.run < needed.max(1) {
            return None;
        }
        let t = Transition {
            from: self.state,
            to,
            reason,
        };
        self.state = to;
        self.run = 0;
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthState::{Down, Up};

    const FAIL: ProbeResult = Err(Reason::Refused);

    fn run(t: &mut Tracker, results: &[ProbeResult]) -> Vec<Option<Transition>> {
        results.iter().map(|r| t.observe(*r, 2, 3)).collect()
    }

    #[test]
    fn fall_failures_in_a_row_take_it_down_with_the_last_reason() {
        let mut t = Tracker::new(Up);
        let out = run(&mut t, &[FAIL, FAIL, Err(Reason::Timeout)]);
        assert_eq!(out[..2], [None, None]);
        assert_eq!(
            out[2],
            Some(Transition {
                from: Up,
                to: Down,
                reason: Reason::Timeout
            })
        );
        assert_eq!(t.state(), Down);
        // Further failures change nothing.
        assert_eq!(run(&mut t, &[FAIL; 5]), vec![None; 5]);
    }

    #[test]
    fn rise_passes_in_a_row_bring_it_up() {
        let mut t = Tracker::new(Down);
        assert_eq!(t.observe(Ok(()), 2, 3), None);
        assert_eq!(
            t.observe(Ok(()), 2, 3),
            Some(Transition {
                from: Down,
                to: Up,
                reason: Reason::Ok
            })
        );
        assert_eq!(t.state(), Up);
    }

    #[test]
    fn a_result_of_the_other_kind_restarts_the_count() {
        let mut t = Tracker::new(Up);
        // Flapping: never three failures in a row, never goes down.
        let flap = [FAIL, FAIL, Ok(()), FAIL, FAIL, Ok(()), FAIL, FAIL, Ok(())];
        assert!(run(&mut t, &flap).iter().all(Option::is_none));
        assert_eq!(t.state(), Up);
        let mut t = Tracker::new(Down);
        let flap = [Ok(()), FAIL, Ok(()), FAIL, Ok(()), FAIL];
        assert!(run(&mut t, &flap).iter().all(Option::is_none));
        assert_eq!(t.state(), Down);
    }

    #[test]
    fn rise_and_fall_of_one_act_on_every_result() {
        let mut t = Tracker::new(Up);
        assert!(t.observe(FAIL, 1, 1).is_some());
        assert!(t.observe(Ok(()), 1, 1).is_some());
        assert_eq!(t.state(), Up);
    }
}
