//! Health in the state: down backends leave the ring and their flows are
//! invalidated, drain and health are independent, fail open, bad checks
//! refused without a change, persistence (no root: the in-memory data
//! plane).

use lb_api::{BackendHealth, CheckKind, HealthCheck, HealthState, Reason};
use lb_common::BACKEND_F_VALID;

use super::*;

fn http() -> HealthCheck {
    HealthCheck::new(CheckKind::Http {
        path: "/healthz".into(),
        expect: 200,
        host: None,
    })
}

fn down(reason: Reason) -> BackendHealth {
    BackendHealth {
        state: HealthState::Down,
        reason,
        since_unix_ms: 1_000,
    }
}

fn up() -> BackendHealth {
    BackendHealth {
        state: HealthState::Up,
        reason: Reason::Ok,
        since_unix_ms: 2_000,
    }
}

/// VIP A with three backends and an HTTP check.
fn checked() -> LbState<crate::dataplane::FakeDataplane> {
    let mut st = empty();
    st.create_vip(
        v(A),
        VipFlags::default(),
        &[b("10.0.0.1"), b("10.0.0.2"), b("10.0.0.3")],
    )
    .unwrap();
    st.set_health_check(&v(A), Some(http()), 0).unwrap();
    st
}

fn slot_of(st: &LbState<crate::dataplane::FakeDataplane>, a: &str) -> u32 {
    st.model().vips[&v(A)].backends[&ip(a)].slot
}

fn generation(st: &LbState<crate::dataplane::FakeDataplane>, a: &str) -> (u32, bool) {
    let be = st.dataplane().backend(slot_of(st, a)).unwrap();
    (be.generation, be.flags & BACKEND_F_VALID != 0)
}

fn ring_slots(st: &LbState<crate::dataplane::FakeDataplane>) -> std::collections::BTreeSet<u32> {
    let vi = st.get_vip(&v(A)).unwrap();
    let meta = st.dataplane().maps().vips[&v(A).key()];
    st.dataplane()
        .ring_half(vi.index, meta.ring_half & 1)
        .into_iter()
        .filter(|s| *s != lb_common::SLOT_NONE)
        .collect()
}

#[test]
fn down_leaves_the_ring_and_invalidates_its_flows_up_comes_back() {
    let mut st = checked();
    let s1 = slot_of(&st, "10.0.0.1");
    let (g0, _) = generation(&st, "10.0.0.1");
    let serving = st
        .set_backend_health(&v(A), ip("10.0.0.1"), down(Reason::Refused))
        .unwrap();
    assert_eq!(serving.backends, [ip("10.0.0.2"), ip("10.0.0.3")]);
    assert!(!serving.fail_open);
    assert!(!ring_slots(&st).contains(&s1));
    let (g1, valid) = generation(&st, "10.0.0.1");
    assert!(valid, "the slot stays valid: the backend keeps its slot");
    assert_ne!(g1, g0, "a new generation: its conn-table entries go stale");
    // The others' flows are untouched.
    assert_consistent(&st);
    let info = st.get_vip(&v(A)).unwrap();
    let b1 = info
        .backends
        .iter()
        .find(|b| b.address == ip("10.0.0.1"))
        .unwrap();
    assert_eq!(b1.health, down(Reason::Refused));
    assert_eq!(b1.weight, 100, "a down backend keeps its weight");

    st.set_backend_health(&v(A), ip("10.0.0.1"), up()).unwrap();
    assert!(ring_slots(&st).contains(&s1));
    assert_eq!(generation(&st, "10.0.0.1").0, g1, "coming up bumps nothing");
    assert_consistent(&st);
}

#[test]
fn drain_and_health_are_independent() {
    let mut st = checked();
    let g0 = generation(&st, "10.0.0.2").0;
    // Drain: out of the ring, flows kept (no bump), still up.
    st.set_weight(&v(A), ip("10.0.0.2"), 0).unwrap();
    assert_eq!(generation(&st, "10.0.0.2").0, g0);
    assert!(!ring_slots(&st).contains(&slot_of(&st, "10.0.0.2")));
    // A drained backend that goes down: its (broken) flows are invalidated.
    st.set_backend_health(&v(A), ip("10.0.0.2"), down(Reason::Timeout))
        .unwrap();
    let g1 = generation(&st, "10.0.0.2").0;
    assert_ne!(g1, g0);
    // Undrained while down: keeps out of the ring (health says so).
    st.set_weight(&v(A), ip("10.0.0.2"), 100).unwrap();
    assert!(!ring_slots(&st).contains(&slot_of(&st, "10.0.0.2")));
    assert_eq!(generation(&st, "10.0.0.2").0, g1);
    // Up again: back in, with the weight the operator gave it.
    st.set_backend_health(&v(A), ip("10.0.0.2"), up()).unwrap();
    assert!(ring_slots(&st).contains(&slot_of(&st, "10.0.0.2")));
    // Down while drained, then up: still out (drained).
    st.set_weight(&v(A), ip("10.0.0.3"), 0).unwrap();
    st.set_backend_health(&v(A), ip("10.0.0.3"), down(Reason::Refused))
        .unwrap();
    st.set_backend_health(&v(A), ip("10.0.0.3"), up()).unwrap();
    assert!(!ring_slots(&st).contains(&slot_of(&st, "10.0.0.3")));
    assert_consistent(&st);
}

#[test]
fn all_down_fails_open_and_the_first_up_ends_it() {
    let mut st = checked();
    let all: Vec<u32> = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        .iter()
        .map(|a| slot_of(&st, a))
        .collect();
    st.set_backend_health(&v(A), ip("10.0.0.1"), down(Reason::Refused))
        .unwrap();
    st.set_backend_health(&v(A), ip("10.0.0.2"), down(Reason::Refused))
        .unwrap();
    let g3 = generation(&st, "10.0.0.3").0;
    let serving = st
        .set_backend_health(&v(A), ip("10.0.0.3"), down(Reason::Timeout))
        .unwrap();
    assert!(serving.fail_open);
    assert_eq!(serving.backends.len(), 3);
    assert_eq!(ring_slots(&st), all.iter().copied().collect());
    assert_eq!(
        generation(&st, "10.0.0.3").0,
        g3,
        "failing open keeps the last backend's flows: it stays in the ring"
    );
    assert!(st.get_vip(&v(A)).unwrap().fail_open);
    assert_consistent(&st);

    // A drained backend does not serve even when failing open.
    st.set_weight(&v(A), ip("10.0.0.1"), 0).unwrap();
    assert_eq!(st.serving(&v(A)).unwrap().backends.len(), 2);

    // One comes up: fail-open ends, the down ones leave the ring and their
    // flows are invalidated now.
    let g2 = generation(&st, "10.0.0.2").0;
    let serving = st.set_backend_health(&v(A), ip("10.0.0.3"), up()).unwrap();
    assert!(!serving.fail_open);
    assert_eq!(serving.backends, [ip("10.0.0.3")]);
    assert_ne!(generation(&st, "10.0.0.2").0, g2);
    assert!(!st.get_vip(&v(A)).unwrap().fail_open);
    assert_consistent(&st);

    // Every backend drained is not fail-open: an empty ring, the operator's.
    let mut st = checked();
    for a in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        st.set_weight(&v(A), ip(a), 0).unwrap();
    }
    st.set_backend_health(&v(A), ip("10.0.0.1"), down(Reason::Refused))
        .unwrap();
    let s = st.serving(&v(A)).unwrap();
    assert!(s.is_empty() && !s.fail_open);
}

#[test]
fn initial_down_and_removing_the_check() {
    let mut st = checked();
    let mut c = http();
    c.initial = HealthState::Down;
    st.set_health_check(&v(A), Some(c), 0).unwrap();
    let info = st.add_backend(&v(A), b("10.0.0.4")).unwrap();
    assert_eq!(info.health.state, HealthState::Down);
    assert!(!ring_slots(&st).contains(&info.slot));
    // A new check keeps health; removing it brings everyone up.
    st.set_health_check(&v(A), Some(http()), 5).unwrap();
    assert!(
        st.model().vips[&v(A)].backends[&ip("10.0.0.4")]
            .health
            .is_down()
    );
    st.set_health_check(&v(A), None, 7).unwrap();
    let h = st.model().vips[&v(A)].backends[&ip("10.0.0.4")].health;
    assert_eq!(
        h,
        BackendHealth {
            state: HealthState::Up,
            reason: Reason::NoCheck,
            since_unix_ms: 7
        }
    );
    assert!(ring_slots(&st).contains(&info.slot));
    // Without a check the prober's word is refused.
    let e = st
        .set_backend_health(&v(A), ip("10.0.0.4"), down(Reason::Refused))
        .unwrap_err();
    assert!(matches!(e, StateError::FailedPrecondition(_)), "{e}");
    assert_consistent(&st);
}

#[test]
fn bad_checks_are_refused_and_change_nothing() {
    let mut st = checked();
    st.create_vip(v("198.18.0.9:0/udp"), VipFlags::default(), &[b("10.0.0.9")])
        .unwrap();
    let before = st.model().clone();
    let writes = st.dataplane().writes();
    let mut bad = Vec::new();
    for f in [
        (|c: &mut HealthCheck| c.interval_ms = 0) as fn(&mut HealthCheck),
        |c| c.timeout_ms = c.interval_ms,
        |c| c.rise = 0,
        |c| c.fall = 0,
        |c| c.jitter_percent = 90,
        |c| c.port = Some(0),
        |c| {
            c.kind = CheckKind::Http {
                path: "x".into(),
                expect: 200,
                host: None,
            }
        },
    ] {
        let mut c = http();
        f(&mut c);
        bad.push((v(A), c));
    }
    bad.push((v("198.18.0.9:0/udp"), http()));
    for (spec, c) in bad {
        let e = st.set_health_check(&spec, Some(c.clone()), 0).unwrap_err();
        assert!(matches!(e, StateError::InvalidArgument(_)), "{c:?}: {e}");
    }
    let e = st
        .set_health_check(&v("198.18.0.77:80/tcp"), Some(http()), 0)
        .unwrap_err();
    assert!(matches!(e, StateError::NotFound(_)), "{e}");
    let e = st
        .set_backend_health(&v(A), ip("10.0.0.99"), down(Reason::Refused))
        .unwrap_err();
    assert!(matches!(e, StateError::NotFound(_)), "{e}");
    assert_eq!(st.model(), &before);
    assert_eq!(st.dataplane().writes(), writes);
}

#[test]
fn health_persists_and_a_restart_keeps_a_down_backend_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("state"));
    let mut st = LbState::new(fake_with(sizes()), Model::default(), Some(store.clone())).unwrap();
    st.create_vip(
        v(A),
        VipFlags::default(),
        &[b("10.0.0.1"), bw("10.0.0.2", 7)],
    )
    .unwrap();
    st.set_health_check(&v(A), Some(http()), 0).unwrap();
    st.set_backend_health(&v(A), ip("10.0.0.1"), down(Reason::Status(503)))
        .unwrap();
    let loaded = store.load().unwrap().unwrap();
    assert_eq!(&loaded, st.model());
    let text = std::fs::read_to_string(store.path()).unwrap();
    assert!(text.contains("\"reason\": \"status 503\""), "{text}");
    // A restart over the same maps: nothing to repair, the down backend
    // stays out of the ring.
    let maps = st.dataplane().maps().clone();
    let mut dp = fake_with(sizes());
    *dp.maps_mut() = maps.clone();
    let mut st2 = LbState::new(dp, loaded, Some(store)).unwrap();
    assert!(st2.adopt().unwrap().unchanged());
    assert!(st2.dataplane().maps() == &maps);
    assert_eq!(st2.serving(&v(A)).unwrap().backends, [ip("10.0.0.2")]);
}

#[test]
fn a_failure_at_any_write_of_a_transition_changes_nothing() {
    type Op = fn(&mut LbState<crate::dataplane::FakeDataplane>) -> Result<(), StateError>;
    let ops: [(&str, Op); 2] = [
        ("down", |s| {
            s.set_backend_health(&v(A), ip("10.0.0.1"), down(Reason::Refused))
                .map(drop)
        }),
        ("check removed", |s| {
            s.set_health_check(&v(A), None, 9).map(drop)
        }),
    ];
    for (name, op) in ops {
        let prepare = || {
            let mut st = checked();
            st.set_backend_health(&v(A), ip("10.0.0.2"), down(Reason::Timeout))
                .unwrap();
            st
        };
        let mut dry = prepare();
        let w0 = dry.dataplane().writes();
        op(&mut dry).unwrap();
        let total = dry.dataplane().writes() - w0;
        assert!(total > 0, "{name} wrote nothing");
        for k in 0..total {
            let mut st = prepare();
            let model = st.model().clone();
            let maps = st.dataplane().maps().clone();
            st.dataplane_mut().fail_after(k, 1);
            let e = op(&mut st).expect_err(name);
            assert!(matches!(e, StateError::Internal(_)), "{name}@{k}: {e:?}");
            assert_eq!(st.model(), &model, "{name}@{k}: state changed");
            assert_maps_restored(&maps, st.dataplane().maps());
            assert_consistent(&st);
            op(&mut st).unwrap();
            assert_consistent(&st);
        }
    }
}

/// A drained backend keeps its flows through the pre-drain fallback (the
/// slot marked draining, the VIP flagged) only while it is up: once its
/// check finds it down, the mark and the flag go (its flows must reach a
/// live server and be reset) and its flows are invalidated; coming back
/// up while still drained brings the fallback back.
#[test]
fn a_drained_backend_that_goes_down_loses_the_drain_fallback() {
    use lb_common::{BACKEND_F_DRAINING, VIP_F_DRAIN_FALLBACK};
    let mut st = checked();
    st.set_weight(&v(A), ip("10.0.0.1"), 0).unwrap();
    let s1 = slot_of(&st, "10.0.0.1");
    let marks = |st: &LbState<crate::dataplane::FakeDataplane>| {
        let be = st.dataplane().backend(s1).unwrap();
        let meta = st.dataplane().maps().vips[&v(A).key()];
        (
            be.flags & BACKEND_F_DRAINING != 0,
            meta.flags & VIP_F_DRAIN_FALLBACK != 0,
        )
    };
    assert_eq!(marks(&st), (true, true), "drained and up: fallback on");
    let (g0, _) = generation(&st, "10.0.0.1");

    st.set_backend_health(&v(A), ip("10.0.0.1"), down(Reason::Refused))
        .unwrap();
    assert_eq!(marks(&st), (false, false), "drained and down: fallback off");
    let (g1, valid) = generation(&st, "10.0.0.1");
    assert!(valid);
    assert_ne!(g1, g0, "its pinned flows go stale");
    // The drain itself is kept: still weight 0, still remembering its
    // pre-drain weight.
    let m = st.model().vips[&v(A)].backends[&ip("10.0.0.1")];
    assert_eq!((m.weight, m.drain_weight), (0, 100));

    st.set_backend_health(&v(A), ip("10.0.0.1"), up()).unwrap();
    assert_eq!(
        marks(&st),
        (true, true),
        "up again, still drained: fallback on"
    );
    assert!(
        !ring_slots(&st).contains(&s1),
        "a drained backend takes no new flow"
    );
}
