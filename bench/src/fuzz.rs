//! Figure 5: hostile input at scale. A million random and mutated frames
//! through the real `lb_xdp` with a configured state, each judged by the
//! oracle of the privileged tests (`lb_privileged_tests::fuzz`, whose docs
//! list what it checks). Not a timing: the figure is the count of frames
//! judged wrong (it must be 0), what the frames came to, and the rate at
//! which the run went (generation, program run, two counter reads and the
//! checks per frame), so a slow-down of the harness shows.

use std::collections::BTreeMap;

use lb_privileged_tests::fuzz::{self, Target};
use serde::{Deserialize, Serialize};

/// Seed of the bench's run (the CI test uses another, so the two runs see
/// different frames).
pub const SEED: u64 = 0xbe4c_f022;

/// The result of the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Fuzz {
    /// Seed; `LB_FUZZ_SEED=<seed>` replays the first frames in the test.
    pub seed: u64,
    /// Frames run.
    pub frames: u64,
    /// Frames mutated from a valid VIP packet.
    pub mutated: u64,
    /// Frames not addressed to a VIP address (each must come out untouched).
    pub not_for_vip: u64,
    /// Frames per XDP verdict.
    pub verdicts: BTreeMap<String, u64>,
    /// Change of each global counter over the run.
    pub counters: BTreeMap<String, u64>,
    /// Frames judged wrong.
    pub violations: u64,
    /// Violations by kind.
    pub kinds: BTreeMap<String, u64>,
    /// The first violations, with their frames.
    pub examples: Vec<String>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Runs `frames` frames (as root).
pub fn run(frames: u64) -> anyhow::Result<Fuzz> {
    let mut target = Target::new();
    let r = fuzz::run(&mut target, SEED, frames);
    Ok(Fuzz {
        seed: SEED,
        frames: r.frames,
        mutated: r.mutated,
        not_for_vip: r.not_for_vip,
        verdicts: r
            .verdicts
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        counters: r
            .counters
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        violations: r.violations,
        kinds: r.kinds,
        examples: r.examples,
        seconds: r.elapsed.as_secs_f64(),
    })
}
