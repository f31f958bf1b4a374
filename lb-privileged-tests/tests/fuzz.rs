//! 100,000 hostile frames through the real `lb_xdp` (random, and mutated
//! from valid VIP packets), each judged by the oracle in
//! `lb_privileged_tests::fuzz`: defined verdicts, untouched frames not for a
//! VIP, well-formed encapsulations and answers, counters that reconcile
//! exactly. The bench runs the same with 1,000,000 frames (`bench --only fuzz`).

use lb_common::Stat;
use lb_daemon::dataplane::Encapsulation;
use lb_privileged_tests::{
    fuzz::{self, Target},
    require_root,
};

/// Seed of the CI run; a failure prints it, and `LB_FUZZ_SEED` replays or
/// varies it.
const SEED: u64 = 0x001b_f022;

#[test]
fn hostile_frames_get_defined_verdicts_and_counters_reconcile() {
    require_root();
    let seed = std::env::var("LB_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    let mut target = Target::new();
    let r = fuzz::run(&mut target, seed, 100_000);
    eprintln!("seed {seed}: {r:#?}");
    assert_eq!(
        r.violations,
        0,
        "seed {seed}: {} frames judged wrong, first ones:\n{}",
        r.violations,
        r.examples.join("\n")
    );
    assert_eq!(r.frames, 100_000);
    assert_eq!(r.counters[Stat::Rx.name()], r.frames);
    // The run must reach every outcome and the interesting drop reasons, or
    // it proves little: a generator that only made noise would pass the
    // oracle trivially.
    for s in [
        Stat::Pass,
        Stat::Forwarded,
        Stat::IcmpEchoReply,
        Stat::IcmpTooBigSent,
        Stat::IcmpRateLimited,
        Stat::DropMalformed,
        Stat::DropFragment,
        Stat::DropIpOptions,
        Stat::DropNoBackend,
        Stat::DropTooBig,
        Stat::NewFlow,
        Stat::ConnHit,
        Stat::ConnStale,
        Stat::IcmpErrorForwarded,
        Stat::DropIcmpQuoteTruncated,
        Stat::DropIcmpQuoteMalformed,
        Stat::DropBadChecksum,
        Stat::DropEchoBadSource,
    ] {
        assert!(
            r.counters[s.name()] >= 50,
            "seed {seed}: only {} frames counted as {}",
            r.counters[s.name()],
            s.name()
        );
    }
    assert!(
        r.not_for_vip >= 10_000,
        "{} frames not for a VIP",
        r.not_for_vip
    );
    assert!(r.mutated >= 50_000, "{} mutated frames", r.mutated);
}

/// The same oracle over GUE encapsulation with a small new-flow budget, so
/// GUE framing and unpinned new flows are judged as well.
#[test]
fn hostile_frames_over_gue_with_a_new_flow_budget() {
    require_root();
    let mut target = Target::with(Encapsulation::Gue { port: 6080 }, 1000);
    let r = fuzz::run(&mut target, SEED ^ 0x6e0e, 50_000);
    eprintln!("{r:#?}");
    assert_eq!(
        r.violations,
        0,
        "{} frames judged wrong, first ones:\n{}",
        r.violations,
        r.examples.join("\n")
    );
    for s in [
        Stat::Forwarded,
        Stat::NewFlow,
        Stat::NewFlowUnpinned,
        Stat::IcmpErrorForwarded,
    ] {
        assert!(
            r.counters[s.name()] >= 50,
            "only {} frames counted as {}",
            r.counters[s.name()],
            s.name()
        );
    }
}
