//! State-layer tests over the in-memory data plane (no root).

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
};

use lb_common::{
    BACKEND_F_DRAINING, BACKEND_F_VALID, LbConfig, SLOT_NONE, VIP_F_DRAIN_FALLBACK, VIP_F_NO_SPORT,
    flow_hash, ring_index,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;
use crate::{
    dataplane::{FakeDataplane, FakeMaps, Sizes},
    maglev,
    vip::{map_addr, unmap_addr},
};

#[path = "health_tests.rs"]
mod health;

type St = LbState<FakeDataplane>;

const RING: u32 = 257;
const SEED: u32 = 0x5eed;

fn sizes() -> Sizes {
    Sizes {
        ring_size: RING,
        max_vips: 4,
        max_backends: 12,
        conn_table: 64,
    }
}

fn fake_with(sizes: Sizes) -> FakeDataplane {
    let mut f = FakeDataplane::new(sizes);
    f.set_config(&LbConfig {
        hash_seed: SEED,
        ..Default::default()
    })
    .unwrap();
    f
}

fn empty() -> St {
    LbState::new(fake_with(sizes()), Model::default(), None).unwrap()
}

fn v(s: &str) -> VipSpec {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn b(s: &str) -> BackendSpec {
    BackendSpec::new(ip(s))
}

fn bw(s: &str, w: u32) -> BackendSpec {
    BackendSpec::weighted(ip(s), w)
}

fn no_sport() -> VipFlags {
    VipFlags {
        no_sport: true,
        ..Default::default()
    }
}

const A: &str = "198.18.0.1:80/tcp";
const B6: &str = "[fd00::1]:443/tcp";

/// Two VIPs: A (IPv4, two backends) and B6 (IPv6, no-sport, one backend).
fn base() -> St {
    let mut st = empty();
    st.create_vip(v(A), VipFlags::default(), &[b("10.0.0.1"), b("10.0.0.2")])
        .unwrap();
    st.create_vip(v(B6), no_sport(), &[b("fd00:1::1")]).unwrap();
    st
}

use crate::dataplane::Dataplane as _;

/// The table a VIP should have, computed from its backends here rather than
/// by the code under test.
fn expected_table(vi: &VipInfo, m: u32) -> Vec<u32> {
    let mut backends = vi.backends.clone();
    backends.sort_by_key(|b| b.address);
    // Health: down backends take no positions, unless every weighted one is
    // down (fail open).
    let up = backends.iter().any(|b| b.weight > 0 && !b.health.is_down());
    for b in &mut backends {
        if up && b.health.is_down() {
            b.weight = 0;
        }
    }
    let keys: Vec<Vec<u8>> = backends
        .iter()
        .map(|b| match b.address {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        })
        .collect();
    let members: Vec<maglev::Member<'_>> = keys
        .iter()
        .zip(&backends)
        .map(|(k, b)| maglev::Member {
            key: k,
            weight: b.weight,
        })
        .collect();
    maglev::build(m, &members)
        .unwrap()
        .into_iter()
        .map(|i| {
            if i == maglev::EMPTY {
                SLOT_NONE
            } else {
                backends[i as usize].slot
            }
        })
        .collect()
}

/// The maps say exactly what the state says, and the audit saw no live ring
/// naming an invalid slot at any write so far.
#[track_caller]
fn assert_consistent(st: &St) {
    let dp = st.dataplane();
    let maps = dp.maps();
    assert!(dp.violations().is_empty(), "{:?}", dp.violations());
    let vips = st.list_vips();
    assert_eq!(maps.vips.len(), vips.len(), "VIP entries");
    let mut counts: HashMap<IpAddr, u32> = HashMap::new();
    let mut used = HashSet::new();
    for vi in &vips {
        *counts.entry(vi.spec.address).or_default() += 1;
        let meta = maps.vips[&vi.spec.key()];
        let model = &st.model().vips[&vi.spec];
        let draining: HashSet<IpAddr> = model
            .backends
            .iter()
            .filter(|(_, m)| m.draining())
            .map(|(a, _)| *a)
            .collect();
        let drain_flag = if draining.is_empty() {
            0
        } else {
            VIP_F_DRAIN_FALLBACK
        };
        assert_eq!(meta.index, vi.index);
        assert_eq!(meta.flags, vi.flags.bits() | drain_flag);
        let want = expected_table(vi, RING);
        let live = meta.ring_half & 1;
        assert!(
            dp.ring_half(vi.index, live) == want,
            "{} live half differs from its table",
            vi.spec
        );
        // The standby half: the pre-drain table while something drains
        // (draining backends at their weight before the drain).
        let mut pre = vi.clone();
        for be in &mut pre.backends {
            if draining.contains(&be.address) {
                be.weight = model.backends[&be.address].drain_weight;
            }
        }
        assert!(
            dp.ring_half(vi.index, live ^ 1) == expected_table(&pre, RING),
            "{} standby half differs from its pre-drain table",
            vi.spec
        );
        for be in &vi.backends {
            let e = maps.backends[be.slot as usize];
            let flags = if draining.contains(&be.address) {
                BACKEND_F_VALID | BACKEND_F_DRAINING
            } else {
                BACKEND_F_VALID
            };
            assert_eq!(e.flags, flags, "slot {} valid (draining?)", be.slot);
            assert_eq!(unmap_addr(e.addr, e.family), Some(be.address));
            assert!(used.insert(be.slot), "slot {} used twice", be.slot);
        }
    }
    for (slot, e) in maps.backends.iter().enumerate() {
        if e.flags & BACKEND_F_VALID != 0 {
            assert!(
                used.contains(&(slot as u32)),
                "slot {slot} valid but unused"
            );
        }
    }
    let want: HashMap<_, _> = counts
        .into_iter()
        .map(|(a, n)| (crate::vip::addr_key(a), n))
        .collect();
    assert_eq!(maps.vip_addrs, want, "address counts");
}

/// The maps are as `before`, except that free slots may have moved to a
/// later generation (generations never go back; see `Tx::undo_backend`).
#[track_caller]
fn assert_maps_restored(before: &FakeMaps, after: &FakeMaps) {
    assert_eq!(before.vips, after.vips, "VIP entries");
    assert_eq!(before.vip_addrs, after.vip_addrs, "address counts");
    assert!(before.ring == after.ring, "ring contents differ");
    assert_eq!(before.config, after.config);
    for (slot, (b, a)) in before.backends.iter().zip(&after.backends).enumerate() {
        if b.flags & BACKEND_F_VALID != 0 {
            assert_eq!(b, a, "valid slot {slot}");
        } else {
            assert_eq!((a.flags, a.addr, a.family), (b.flags, b.addr, b.family));
            assert!(
                a.generation >= b.generation,
                "slot {slot} generation went back"
            );
        }
    }
}

/// Runs an operation that must be refused with `StateError::$variant`
/// before anything is written.
macro_rules! refused {
    ($st:expr, $variant:ident, $s:ident => $op:expr) => {{
        let $s: &mut St = $st;
        let model = $s.model().clone();
        let maps = $s.dataplane().maps().clone();
        let writes = $s.dataplane().writes();
        let r = $op.map(|_| ());
        match r {
            Err(StateError::$variant(msg)) => assert!(!msg.is_empty()),
            other => panic!(
                "{}: expected {}, got {other:?}",
                stringify!($op),
                stringify!($variant)
            ),
        }
        assert_eq!($s.model(), &model, "state changed by {}", stringify!($op));
        assert!(
            $s.dataplane().maps() == &maps,
            "maps changed by {}",
            stringify!($op)
        );
        assert_eq!($s.dataplane().writes(), writes, "{} wrote", stringify!($op));
    }};
}

#[test]
fn invalid_operations_are_refused_and_change_nothing() {
    let mut st = base();
    let flags = VipFlags::default();
    // Addresses a VIP cannot have.
    refused!(&mut st, InvalidArgument, s => s.create_vip(v("0.0.0.0:80/tcp"), flags, &[]));
    refused!(&mut st, InvalidArgument, s => s.create_vip(v("224.0.0.9:80/tcp"), flags, &[]));
    refused!(&mut st, InvalidArgument, s => s.create_vip(v("[::1]:80/tcp"), flags, &[]));
    refused!(&mut st, InvalidArgument, s => s.create_vip(v("255.255.255.255:80/udp"), flags, &[]));
    // Family conflict: an IPv4 service written as IPv4-mapped IPv6.
    refused!(&mut st, InvalidArgument, s => s.create_vip(v("[::ffff:198.18.0.9]:80/tcp"), flags, &[]));
    // Bad backends in a create.
    refused!(&mut st, InvalidArgument, s => s.create_vip(v("198.18.0.9:80/tcp"), flags, &[bw("10.0.1.1", 65536)]));
    refused!(&mut st, InvalidArgument, s => s.create_vip(v("198.18.0.9:80/tcp"), flags, &[b("10.0.1.1"), bw("10.0.1.1", 5)]));
    refused!(&mut st, InvalidArgument, s => s.create_vip(v("198.18.0.9:80/tcp"), flags, &[b("198.18.0.9")]));
    refused!(&mut st, InvalidArgument, s => s.create_vip(v("198.18.0.9:80/tcp"), flags, &[b("ff02::1")]));
    refused!(&mut st, InvalidArgument, s => s.create_vip(v("[fd00::9]:80/tcp"), flags, &[b("::ffff:10.0.0.9")]));
    // Exists / conflicts with other VIPs.
    refused!(&mut st, AlreadyExists, s => s.create_vip(v(A), flags, &[]));
    refused!(&mut st, AlreadyExists, s => s.create_vip(v(A), no_sport(), &[b("10.0.9.9")]));
    refused!(&mut st, FailedPrecondition, s => s.create_vip(v("10.0.0.1:443/tcp"), flags, &[]));
    refused!(&mut st, FailedPrecondition, s => s.create_vip(v("198.18.0.9:80/tcp"), flags, &[b("198.18.0.1")]));
    // Unknown things.
    refused!(&mut st, NotFound, s => s.delete_vip(&v("198.18.0.1:81/tcp")));
    refused!(&mut st, NotFound, s => s.delete_vip(&v("198.18.0.1:80/udp")));
    refused!(&mut st, NotFound, s => s.get_vip(&v("198.18.0.2:80/tcp")));
    refused!(&mut st, NotFound, s => s.list_backends(&v("198.18.0.2:80/tcp")));
    refused!(&mut st, NotFound, s => s.add_backend(&v("198.18.0.2:80/tcp"), b("10.0.0.3")));
    refused!(&mut st, NotFound, s => s.remove_backend(&v(A), ip("10.0.0.3")));
    refused!(&mut st, NotFound, s => s.remove_backend(&v("198.18.0.2:80/tcp"), ip("10.0.0.1")));
    refused!(&mut st, NotFound, s => s.set_weight(&v(A), ip("10.0.0.9"), 5));
    refused!(&mut st, NotFound, s => s.replace_backends(&v("198.18.0.2:80/tcp"), &[]));
    // Bad backend operations.
    refused!(&mut st, AlreadyExists, s => s.add_backend(&v(A), b("10.0.0.1")));
    refused!(&mut st, InvalidArgument, s => s.add_backend(&v(A), bw("10.0.0.3", 70000)));
    refused!(&mut st, InvalidArgument, s => s.add_backend(&v(A), b("127.0.0.1")));
    refused!(&mut st, InvalidArgument, s => s.add_backend(&v(A), b("0.0.0.0")));
    refused!(&mut st, FailedPrecondition, s => s.add_backend(&v(A), b("fd00::1")));
    refused!(&mut st, InvalidArgument, s => s.set_weight(&v(A), ip("10.0.0.1"), 65536));
    refused!(&mut st, InvalidArgument, s => s.replace_backends(&v(A), &[b("10.0.0.5"), b("10.0.0.5")]));
    refused!(&mut st, FailedPrecondition, s => s.replace_backends(&v(A), &[b("10.0.0.5"), b("fd00::1")]));
    // Route questions that have no answer.
    refused!(&mut st, InvalidArgument, s => s.route(&v(A), "[fd00::9]:1000".parse().unwrap()));
    refused!(&mut st, NotFound, s => s.route(&v("198.18.0.1:81/tcp"), "10.9.0.1:1000".parse().unwrap()));
    // Syntax errors the API layer converts with `?`.
    let e: StateError = "198.18.0.1:70000/tcp"
        .parse::<VipSpec>()
        .unwrap_err()
        .into();
    assert!(matches!(e, StateError::InvalidArgument(_)), "{e:?}");
    let e: StateError = "198.18.0.1:80/sctp".parse::<VipSpec>().unwrap_err().into();
    assert!(matches!(e, StateError::InvalidArgument(_)), "{e:?}");
    let e: StateError = VipFlags::from_names(["no-sport", "turbo"])
        .unwrap_err()
        .into();
    assert!(matches!(e, StateError::InvalidArgument(_)), "{e:?}");
    assert_consistent(&st);
}

#[test]
fn capacity_is_resource_exhausted_and_changes_nothing() {
    let mut st = base();
    // VIP indices: 4, two used.
    st.create_vip(v("198.18.0.3:80/tcp"), VipFlags::default(), &[])
        .unwrap();
    st.create_vip(v("198.18.0.4:80/tcp"), VipFlags::default(), &[])
        .unwrap();
    refused!(&mut st, ResourceExhausted, s => s.create_vip(v("198.18.0.5:80/tcp"), VipFlags::default(), &[]));
    st.delete_vip(&v("198.18.0.4:80/tcp")).unwrap();
    // Slots: 11 usable, 3 used.
    let many: Vec<BackendSpec> = (1..=9).map(|i| b(&format!("10.0.2.{i}"))).collect();
    refused!(&mut st, ResourceExhausted, s => s.create_vip(v("198.18.0.4:80/tcp"), VipFlags::default(), &many));
    st.replace_backends(&v("198.18.0.3:80/tcp"), &many[..8])
        .unwrap();
    refused!(&mut st, ResourceExhausted, s => s.add_backend(&v(A), b("10.0.0.3")));
    // A swap needs room for old and new at once: the old slots are named by
    // the ring until the flip.
    refused!(&mut st, ResourceExhausted, s => s.replace_backends(&v(A), &[b("10.0.0.5"), b("10.0.0.6")]));
    assert_consistent(&st);

    // More weighted backends than ring positions.
    let tiny = Sizes {
        ring_size: 3,
        ..sizes()
    };
    let mut st = LbState::new(fake_with(tiny), Model::default(), None).unwrap();
    let four: Vec<BackendSpec> = (1..=4).map(|i| b(&format!("10.0.3.{i}"))).collect();
    refused!(&mut st, ResourceExhausted, s => s.create_vip(v(A), VipFlags::default(), &four));
    let mut three = four[..3].to_vec();
    three.push(bw("10.0.3.4", 0));
    st.create_vip(v(A), VipFlags::default(), &three).unwrap();
    refused!(&mut st, ResourceExhausted, s => s.set_weight(&v(A), ip("10.0.3.4"), 1));
    refused!(&mut st, ResourceExhausted, s => s.add_backend(&v(A), b("10.0.3.5")));
}

#[test]
fn operations_keep_maps_equal_to_the_state() {
    let mut st = base();
    assert_consistent(&st);
    st.add_backend(&v(A), bw("10.0.0.3", 300)).unwrap();
    assert_consistent(&st);
    st.set_weight(&v(A), ip("10.0.0.1"), 1).unwrap();
    assert_consistent(&st);
    st.replace_backends(&v(B6), &[b("fd00:1::2"), b("198.19.0.1")])
        .unwrap();
    assert_consistent(&st);
    st.remove_backend(&v(A), ip("10.0.0.2")).unwrap();
    assert_consistent(&st);
    st.delete_vip(&v(A)).unwrap();
    assert_consistent(&st);
    assert_eq!(st.list_vips().len(), 1);
    let info = st.get_vip(&v(B6)).unwrap();
    assert_eq!(info.flags, no_sport());
    let addrs: Vec<String> = info
        .backends
        .iter()
        .map(|b| b.address.to_string())
        .collect();
    assert_eq!(addrs, ["198.19.0.1", "fd00:1::2"], "address order");
}

#[test]
fn random_operations_never_expose_a_freed_slot() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut st = empty();
    let vips = [v(A), v("198.18.0.2:0/udp"), v(B6)];
    let pool = |six: bool, i: u8| -> IpAddr {
        if six {
            ip(&format!("fd00:2::{i}"))
        } else {
            ip(&format!("10.1.0.{i}"))
        }
    };
    for step in 0..400 {
        let spec = vips[rng.gen_range(0..vips.len())];
        let six = spec.address.is_ipv6();
        let addr = pool(six, rng.gen_range(1..8));
        let writes = st.dataplane().writes();
        let r = match rng.gen_range(0..10) {
            0 => st
                .create_vip(spec, VipFlags::default(), &[BackendSpec::new(addr)])
                .map(drop),
            1 => st.delete_vip(&spec),
            2..=4 => st
                .add_backend(&spec, BackendSpec::weighted(addr, rng.gen_range(0..4)))
                .map(drop),
            5 | 6 => st.remove_backend(&spec, addr),
            7 | 8 => st.set_weight(&spec, addr, rng.gen_range(0..4)).map(drop),
            _ => {
                let mut set = Vec::new();
                for i in 1..8u8 {
                    if rng.gen_bool(0.4) {
                        set.push(BackendSpec::weighted(pool(six, i), rng.gen_range(0..3)));
                    }
                }
                st.replace_backends(&spec, &set).map(drop)
            }
        };
        match r {
            Ok(()) => {}
            Err(StateError::Internal(m)) => panic!("step {step}: {m}"),
            // Refusals (unknown, exists, capacity) write nothing.
            Err(_) => assert_eq!(st.dataplane().writes(), writes, "step {step}"),
        }
        assert_consistent(&st);
    }
}

#[test]
fn drain_keeps_the_slot_valid_and_out_of_the_ring() {
    let mut st = base();
    let before = st.get_vip(&v(A)).unwrap();
    let slot = before.backends[0].slot;
    let entry = st.dataplane().maps().backends[slot as usize];
    let live_before = st.dataplane().ring_half(
        before.index,
        st.dataplane().maps().vips[&v(A).key()].ring_half,
    );
    let drained = st.set_weight(&v(A), ip("10.0.0.1"), 0).unwrap();
    assert_eq!((drained.slot, drained.weight), (slot, 0));
    let maps = st.dataplane().maps();
    // Same generation (pinned flows carry on), marked draining.
    assert_eq!(
        maps.backends[slot as usize],
        lb_common::Backend {
            flags: BACKEND_F_VALID | BACKEND_F_DRAINING,
            ..entry
        }
    );
    let index = before.index;
    let meta = maps.vips[&v(A).key()];
    assert_eq!(meta.flags & VIP_F_DRAIN_FALLBACK, VIP_F_DRAIN_FALLBACK);
    let live = st.dataplane().ring_half(index, meta.ring_half);
    assert!(!live.contains(&slot), "drained slot still in the live half");
    assert!(live.iter().all(|&s| s == before.backends[1].slot));
    // The standby half is the table as it was before the drain: the
    // drained backend's positions still name it there.
    assert_eq!(
        st.dataplane().ring_half(index, meta.ring_half ^ 1),
        live_before
    );
    assert_consistent(&st);
    for port in 0..50 {
        let r = st
            .route(&v(A), SocketAddr::new(ip("10.9.0.1"), 1000 + port))
            .unwrap();
        assert_eq!(r.backend, Some(ip("10.0.0.2")));
    }
    // Undrain: same slot, same generation (pinned flows never noticed),
    // the drain over: no mark, no flag, both halves the live table.
    st.set_weight(&v(A), ip("10.0.0.1"), 100).unwrap();
    assert_eq!(st.dataplane().maps().backends[slot as usize], entry);
    assert_eq!(st.get_vip(&v(A)).unwrap(), before);
    let meta = st.dataplane().maps().vips[&v(A).key()];
    assert_eq!(meta.flags & VIP_F_DRAIN_FALLBACK, 0);
    assert_consistent(&st);
}

#[test]
fn a_drain_lasts_until_the_backend_is_deleted_or_weighted_again() {
    let mut st = base();
    st.add_backend(&v(A), b("10.0.0.3")).unwrap();
    let slot = |st: &St, a: &str| st.model().vips[&v(A)].backends[&ip(a)].slot;
    let flags = |st: &St, a: &str| st.dataplane().maps().backends[slot(st, a) as usize].flags;
    let vip_flag =
        |st: &St| st.dataplane().maps().vips[&v(A).key()].flags & VIP_F_DRAIN_FALLBACK != 0;

    // A drain remembers the weight it started from, whatever path set 0.
    st.set_weight(&v(A), ip("10.0.0.1"), 70).unwrap();
    st.set_weight(&v(A), ip("10.0.0.1"), 0).unwrap();
    assert_eq!(
        st.model().vips[&v(A)].backends[&ip("10.0.0.1")].drain_weight,
        70
    );
    // Weight 0 again: still the same drain.
    st.set_weight(&v(A), ip("10.0.0.1"), 0).unwrap();
    assert_eq!(
        st.model().vips[&v(A)].backends[&ip("10.0.0.1")].drain_weight,
        70
    );
    st.replace_backends(
        &v(A),
        &[bw("10.0.0.1", 0), b("10.0.0.2"), bw("10.0.0.3", 0)],
    )
    .unwrap();
    assert_consistent(&st);
    assert_eq!(flags(&st, "10.0.0.3"), BACKEND_F_VALID | BACKEND_F_DRAINING);
    assert_eq!(
        st.model().vips[&v(A)].backends[&ip("10.0.0.1")].drain_weight,
        70
    );
    assert!(vip_flag(&st));

    // Deleting one draining backend ends its drain only.
    let freed = slot(&st, "10.0.0.3");
    st.remove_backend(&v(A), ip("10.0.0.3")).unwrap();
    assert_eq!(st.dataplane().maps().backends[freed as usize].flags, 0);
    assert!(vip_flag(&st));
    assert_consistent(&st);
    // Weighting the last one again ends the VIP's fallback.
    st.set_weight(&v(A), ip("10.0.0.1"), 10).unwrap();
    assert_eq!(flags(&st, "10.0.0.1"), BACKEND_F_VALID);
    assert!(!vip_flag(&st));
    assert_consistent(&st);

    // A backend that joins with weight 0 never had flows: not draining.
    st.add_backend(&v(A), bw("10.0.0.4", 0)).unwrap();
    assert_eq!(flags(&st, "10.0.0.4"), BACKEND_F_VALID);
    assert!(!vip_flag(&st));
    assert_consistent(&st);
}

#[test]
fn the_pre_drain_table_does_not_depend_on_the_order_of_changes() {
    // Two nodes given the same changes in another order hold the same
    // live and standby halves, slots aside (compared by address).
    let mut one = empty();
    one.create_vip(v(A), VipFlags::default(), &[b("10.0.0.1"), b("10.0.0.2")])
        .unwrap();
    one.add_backend(&v(A), b("10.0.0.3")).unwrap();
    one.set_weight(&v(A), ip("10.0.0.2"), 0).unwrap();
    let mut two = empty();
    two.create_vip(v("198.18.0.9:1/udp"), VipFlags::default(), &[b("10.0.9.9")])
        .unwrap();
    two.create_vip(v(A), VipFlags::default(), &[b("10.0.0.3"), b("10.0.0.2")])
        .unwrap();
    two.set_weight(&v(A), ip("10.0.0.2"), 0).unwrap();
    two.add_backend(&v(A), b("10.0.0.1")).unwrap();
    let halves = |st: &St| {
        let meta = st.dataplane().maps().vips[&v(A).key()];
        let by_addr: HashMap<u32, IpAddr> = st.model().vips[&v(A)]
            .backends
            .iter()
            .map(|(a, m)| (m.slot, *a))
            .collect();
        [meta.ring_half, meta.ring_half ^ 1].map(|h| {
            st.dataplane()
                .ring_half(meta.index, h)
                .iter()
                .map(|s| by_addr.get(s).copied())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(halves(&one), halves(&two));
    assert_consistent(&one);
    assert_consistent(&two);
}

#[test]
fn remove_frees_the_slot_only_after_the_ring_forgets_it() {
    let mut st = base();
    let slot = st.get_vip(&v(A)).unwrap().backends[0].slot;
    let generation = st.dataplane().maps().backends[slot as usize].generation;
    let half_before = st.dataplane().maps().vips[&v(A).key()].ring_half;
    st.remove_backend(&v(A), ip("10.0.0.1")).unwrap();
    // The audit checks every single write: a free before the flip and the
    // second-half write would have been recorded as a violation.
    assert!(st.dataplane().violations().is_empty());
    let e = st.dataplane().maps().backends[slot as usize];
    assert_eq!(e.flags, 0);
    assert_eq!(e.generation, generation + 1);
    let meta = st.dataplane().maps().vips[&v(A).key()];
    assert_eq!(meta.ring_half, half_before ^ 1, "exactly one flip");
    for half in 0..2 {
        assert!(!st.dataplane().ring_half(meta.index, half).contains(&slot));
    }
    assert_consistent(&st);
}

#[test]
fn generation_bumps_on_every_reuse() {
    let mut st = base();
    st.add_backend(&v(A), b("10.0.0.3")).unwrap();
    let slot = st.list_backends(&v(A)).unwrap()[2].slot;
    assert_eq!(st.dataplane().maps().backends[slot as usize].generation, 1);
    st.remove_backend(&v(A), ip("10.0.0.3")).unwrap();
    assert_eq!(st.dataplane().maps().backends[slot as usize].generation, 2);
    // Lowest free slot: the same one, for another server, a new generation,
    // so connections pinned to the old server re-hash instead of following.
    let info = st.add_backend(&v(B6), b("fd00:1::9")).unwrap();
    assert_eq!(info.slot, slot);
    let e = st.dataplane().maps().backends[slot as usize];
    assert_eq!((e.generation, e.flags), (3, BACKEND_F_VALID));
    assert_eq!(unmap_addr(e.addr, e.family), Some(ip("fd00:1::9")));

    // A new daemon over the same maps continues the sequence.
    let maps = st.dataplane().maps().clone();
    let mut fresh = fake_with(sizes());
    *fresh.maps_mut() = maps;
    let mut st2 = LbState::new(fresh, Model::default(), None).unwrap();
    st2.adopt().unwrap();
    assert_eq!(st2.dataplane().maps().backends[slot as usize].generation, 4);
    st2.create_vip(v(A), VipFlags::default(), &[b("10.0.0.1")])
        .unwrap();
    let s = st2.get_vip(&v(A)).unwrap().backends[0].slot;
    assert_eq!(s, 1);
    assert_eq!(st2.dataplane().maps().backends[1].generation, 3);
    assert_consistent(&st2);
}

/// What the data plane would do, computed from the fake's raw maps with the
/// shared hash, independently of `route`.
fn manual_route(st: &St, dst: &VipSpec, serving: &VipSpec, client: SocketAddr) -> Option<IpAddr> {
    let maps = st.dataplane().maps();
    let meta = maps.vips[&serving.key()];
    let src = map_addr(client.ip()).0;
    let dst_addr = map_addr(dst.address).0;
    let sport = if meta.flags & VIP_F_NO_SPORT != 0 {
        0
    } else {
        client.port().to_be()
    };
    let h = flow_hash(
        maps.config.hash_seed,
        &src,
        &dst_addr,
        sport,
        dst.port.to_be(),
        dst.proto.number(),
    );
    let slot = maps.ring[ring_index(meta.index, meta.ring_half, h % RING, RING) as usize];
    if slot == SLOT_NONE {
        return None;
    }
    let e = maps.backends[slot as usize];
    unmap_addr(e.addr, e.family)
}

#[test]
fn route_agrees_with_a_manual_hash_and_ring_lookup() {
    let mut st = base();
    st.add_backend(&v(A), bw("10.0.0.3", 50)).unwrap();
    st.add_backend(&v(B6), b("fd00:1::2")).unwrap();
    let all_ports = v("198.18.0.9:0/udp");
    st.create_vip(
        all_ports,
        VipFlags::default(),
        &[b("10.0.5.1"), b("10.0.5.2")],
    )
    .unwrap();
    st.create_vip(
        v("198.18.0.9:53/udp"),
        VipFlags::default(),
        &[b("10.0.6.1")],
    )
    .unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let mut seen: HashMap<String, HashSet<IpAddr>> = HashMap::new();
    for _ in 0..1000 {
        let port = rng.gen_range(1024..65535);
        let v4 = SocketAddr::new(IpAddr::from(rng.r#gen::<[u8; 4]>()), port);
        let v6 = SocketAddr::new(IpAddr::from(rng.r#gen::<[u8; 16]>()), port);
        let cases = [
            (v(A), v(A), v4),
            (v(B6), v(B6), v6),
            (v("198.18.0.9:5353/udp"), all_ports, v4),
            (v("198.18.0.9:53/udp"), v("198.18.0.9:53/udp"), v4),
        ];
        for (dst, serving, client) in cases {
            let r = st.route(&dst, client).unwrap();
            assert_eq!(r.vip, serving);
            assert_eq!(r.backend, manual_route(&st, &dst, &serving, client));
            assert!(r.backend.is_some());
            seen.entry(dst.to_string()).or_default().extend(r.backend);
        }
    }
    // Every weighted backend is reachable.
    assert_eq!(seen[A].len(), 3);
    assert_eq!(seen[B6].len(), 2);
    assert_eq!(seen["198.18.0.9:5353/udp"].len(), 2);
    // no-sport: the client port does not matter.
    let c = ip("fd00:9::1");
    let first = st.route(&v(B6), SocketAddr::new(c, 1)).unwrap().backend;
    for port in 2..200 {
        assert_eq!(
            st.route(&v(B6), SocketAddr::new(c, port)).unwrap().backend,
            first
        );
    }
    // The seed is the data plane's: change it and the prediction follows.
    let mut cfg = st.dataplane().config().unwrap();
    cfg.hash_seed ^= 1;
    st.set_node_config(cfg).unwrap();
    let client = "10.9.9.9:4242".parse().unwrap();
    let r = st.route(&v(A), client).unwrap();
    assert_eq!(r.backend, manual_route(&st, &v(A), &v(A), client));
    // An empty ring: the data plane drops, route says so.
    st.replace_backends(&v(A), &[]).unwrap();
    let r = st.route(&v(A), client).unwrap();
    assert_eq!((r.slot, r.backend), (SLOT_NONE, None));
}

/// The ring as backend addresses.
fn ring_addrs(st: &St, spec: &VipSpec) -> Vec<Option<IpAddr>> {
    let maps = st.dataplane().maps();
    let meta = maps.vips[&spec.key()];
    st.dataplane()
        .ring_half(meta.index, meta.ring_half)
        .into_iter()
        .map(|s| {
            (s != SLOT_NONE).then(|| {
                let e = maps.backends[s as usize];
                unmap_addr(e.addr, e.family).unwrap()
            })
        })
        .collect()
}

#[test]
fn insertion_order_does_not_change_the_ring() {
    let backends = [
        bw("10.0.0.4", 10),
        bw("10.0.0.1", 100),
        bw("10.0.0.3", 30),
        bw("10.0.0.2", 0),
        bw("10.0.0.5", 100),
    ];
    let mut rings = Vec::new();
    for order in [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]] {
        let mut st = empty();
        // A decoy VIP first, so slot numbers differ between runs.
        st.create_vip(
            v("198.18.0.7:80/tcp"),
            VipFlags::default(),
            &[b("10.7.0.1")],
        )
        .unwrap();
        st.create_vip(v(A), VipFlags::default(), &[]).unwrap();
        for i in order {
            st.add_backend(&v(A), backends[i]).unwrap();
        }
        rings.push(ring_addrs(&st, &v(A)));
        let mut once = empty();
        once.create_vip(v(A), VipFlags::default(), &backends)
            .unwrap();
        rings.push(ring_addrs(&once, &v(A)));
    }
    assert!(rings.windows(2).all(|w| w[0] == w[1]), "rings differ");
    assert!(
        !rings[0].contains(&Some(ip("10.0.0.2"))),
        "weight 0 in ring"
    );
}

#[test]
fn replace_is_one_flip_and_keeps_staying_backends() {
    let mut st = base();
    let old = st.get_vip(&v(A)).unwrap();
    let kept = old.backends[1];
    let entry = st.dataplane().maps().backends[kept.slot as usize];
    let half = st.dataplane().maps().vips[&v(A).key()].ring_half;
    let new = st
        .replace_backends(&v(A), &[bw("10.0.0.2", 7), b("10.0.0.8"), b("10.0.0.9")])
        .unwrap();
    assert_eq!(st.dataplane().maps().vips[&v(A).key()].ring_half, half ^ 1);
    assert_eq!(new.backends[0].slot, kept.slot);
    assert_eq!(new.backends[0].weight, 7);
    assert_eq!(st.dataplane().maps().backends[kept.slot as usize], entry);
    let freed = old.backends[0].slot;
    assert_eq!(st.dataplane().maps().backends[freed as usize].flags, 0);
    assert_consistent(&st);
    // Replacing with the same set writes nothing.
    let writes = st.dataplane().writes();
    st.replace_backends(&v(A), &[bw("10.0.0.2", 7), b("10.0.0.8"), b("10.0.0.9")])
        .unwrap();
    assert_eq!(st.dataplane().writes(), writes);
}

#[test]
fn flags_change_with_the_ring_in_one_vip_entry_write() {
    let mut st = base();
    let key = v(A).key();
    let before = st.dataplane().maps().vips[&key];
    assert_eq!(before.flags, 0);
    // Backends and flags together: one flip carries both.
    let new = st
        .replace_vip(&v(A), Some(no_sport()), &[b("10.0.0.2"), b("10.0.0.7")])
        .unwrap();
    let after = st.dataplane().maps().vips[&key];
    assert_eq!(new.flags, no_sport());
    assert_eq!(after.flags, no_sport().bits());
    assert_eq!(after.ring_half, before.ring_half ^ 1);
    assert_eq!((after.index, new.index), (before.index, before.index));
    assert_consistent(&st);
    // Flags alone: the same ring half, the entry rewritten with the flags.
    let same: Vec<_> = new
        .backends
        .iter()
        .map(|m| bw(&m.address.to_string(), m.weight))
        .collect();
    let back = st
        .replace_vip(&v(A), Some(VipFlags::default()), &same)
        .unwrap();
    assert_eq!(back.flags, VipFlags::default());
    assert_eq!(back.backends, new.backends, "slots kept");
    let entry = st.dataplane().maps().vips[&key];
    assert_eq!((entry.flags, entry.ring_half), (0, after.ring_half));
    assert_consistent(&st);
    // No flags given: they stay.
    st.replace_vip(&v(A), Some(no_sport()), &same).unwrap();
    assert_eq!(
        st.replace_vip(&v(A), None, &same).unwrap().flags,
        no_sport()
    );
    // A flags-only change that fails at any of its writes changes nothing.
    let two = [b("10.0.0.1"), b("10.0.0.2")];
    let setup = || {
        let mut st = base();
        st.replace_vip(&v(A), Some(no_sport()), &two).unwrap();
        st
    };
    let clear = |st: &mut St| {
        st.replace_vip(&v(A), Some(VipFlags::default()), &two)
            .map(drop)
    };
    let mut dry = setup();
    let w0 = dry.dataplane().writes();
    clear(&mut dry).unwrap();
    let total = dry.dataplane().writes() - w0;
    assert!(total > 0, "a flags change wrote nothing");
    for k in 0..total {
        let mut st = setup();
        let (model, maps) = (st.model().clone(), st.dataplane().maps().clone());
        st.dataplane_mut().fail_after(k, 1);
        clear(&mut st).expect_err("injected failure");
        assert_eq!(st.model(), &model, "flags change @{k}: state changed");
        assert_maps_restored(&maps, st.dataplane().maps());
        assert_consistent(&st);
    }
    // A refused call changes the flags no more than the backends.
    let model = st.model().clone();
    let e = st
        .replace_vip(
            &v(A),
            Some(VipFlags::default()),
            &[b("10.0.0.5"), b("10.0.0.5")],
        )
        .unwrap_err();
    assert!(matches!(e, StateError::InvalidArgument(_)), "{e:?}");
    assert_eq!(st.model(), &model);
}

#[test]
fn a_failure_while_a_drain_ends_leaves_state_and_maps_unchanged() {
    let setup = || {
        let mut st = base();
        st.add_backend(&v(A), b("10.0.0.3")).unwrap();
        st.set_weight(&v(A), ip("10.0.0.1"), 0).unwrap();
        st
    };
    let ends: [(&str, Op); 3] = [
        ("undrain", |s| {
            s.set_weight(&v(A), ip("10.0.0.1"), 5).map(drop)
        }),
        ("delete", |s| s.remove_backend(&v(A), ip("10.0.0.1"))),
        ("second drain", |s| {
            s.set_weight(&v(A), ip("10.0.0.2"), 0).map(drop)
        }),
    ];
    for (name, op) in ends {
        let mut dry = setup();
        let w0 = dry.dataplane().writes();
        op(&mut dry).unwrap();
        assert_consistent(&dry);
        let total = dry.dataplane().writes() - w0;
        for k in 0..total {
            let mut st = setup();
            let (model, maps) = (st.model().clone(), st.dataplane().maps().clone());
            st.dataplane_mut().fail_after(k, 1);
            op(&mut st).expect_err("injected failure");
            assert_eq!(st.model(), &model, "{name} @{k}: state changed");
            assert_maps_restored(&maps, st.dataplane().maps());
            assert_consistent(&st);
        }
    }
}

type Op = fn(&mut St) -> Result<(), StateError>;

fn mutations() -> Vec<(&'static str, Op)> {
    vec![
        ("create", |s| {
            s.create_vip(
                v("198.18.0.5:53/udp"),
                no_sport(),
                &[b("10.0.1.1"), b("10.0.1.2")],
            )
            .map(drop)
        }),
        ("create on a shared address", |s| {
            s.create_vip(
                v("198.18.0.1:443/tcp"),
                VipFlags::default(),
                &[b("10.0.1.1")],
            )
            .map(drop)
        }),
        ("delete", |s| s.delete_vip(&v(A))),
        ("add", |s| s.add_backend(&v(A), b("10.0.0.3")).map(drop)),
        ("remove", |s| s.remove_backend(&v(A), ip("10.0.0.1"))),
        ("drain", |s| {
            s.set_weight(&v(A), ip("10.0.0.1"), 0).map(drop)
        }),
        ("drain by replace", |s| {
            s.replace_backends(&v(A), &[bw("10.0.0.1", 0), b("10.0.0.2"), b("10.0.0.9")])
                .map(drop)
        }),
        ("replace", |s| {
            s.replace_backends(&v(A), &[b("10.0.0.2"), b("10.0.0.7"), b("10.0.0.8")])
                .map(drop)
        }),
        ("replace with flags", |s| {
            s.replace_vip(&v(A), Some(no_sport()), &[b("10.0.0.2"), b("10.0.0.7")])
                .map(drop)
        }),
    ]
}

#[test]
fn a_failure_at_any_write_leaves_state_and_maps_unchanged() {
    for (name, op) in mutations() {
        let mut dry = base();
        let w0 = dry.dataplane().writes();
        op(&mut dry).unwrap();
        let total = dry.dataplane().writes() - w0;
        assert!(total > 0, "{name} wrote nothing");
        for k in 0..total {
            let mut st = base();
            let model = st.model().clone();
            let maps = st.dataplane().maps().clone();
            st.dataplane_mut().fail_after(k, 1);
            let e = op(&mut st).expect_err(name);
            assert!(matches!(e, StateError::Internal(_)), "{name}@{k}: {e:?}");
            assert!(e.message().contains("injected"), "{name}@{k}: {e}");
            assert_eq!(st.dataplane().pending_failures(), 0);
            assert_eq!(st.model(), &model, "{name}@{k}: state changed");
            assert_maps_restored(&maps, st.dataplane().maps());
            assert_consistent(&st);
            // And the operation then succeeds.
            op(&mut st).unwrap();
            assert_consistent(&st);
        }
    }
}

#[test]
fn a_failed_rollback_is_reported_and_adoption_repairs_it() {
    for (name, op) in mutations() {
        let mut st = base();
        let model = st.model().clone();
        // The third write fails, and so does undoing the first two.
        st.dataplane_mut().fail_after(2, 5);
        let e = op(&mut st).expect_err(name);
        assert!(matches!(e, StateError::Internal(_)), "{name}: {e:?}");
        assert!(e.message().contains("rolling"), "{name}: {e}");
        assert_eq!(st.model(), &model);
        st.dataplane_mut().fail_after(0, 0);
        st.adopt().unwrap();
        assert_consistent(&st);
    }
}

#[test]
fn persistence_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("state"));
    assert_eq!(store.load().unwrap(), None);
    let mut st = LbState::new(fake_with(sizes()), Model::default(), Some(store.clone())).unwrap();
    st.create_vip(v(A), no_sport(), &[b("10.0.0.1"), bw("10.0.0.2", 0)])
        .unwrap();
    st.create_vip(v(B6), VipFlags::default(), &[b("fd00:1::1")])
        .unwrap();
    st.add_backend(&v(A), bw("10.0.0.3", 65535)).unwrap();
    // A drain in progress is state too: a restarted daemon keeps the
    // pre-drain table and the mark.
    st.set_weight(&v(A), ip("10.0.0.3"), 0).unwrap();
    let loaded = store.load().unwrap().unwrap();
    assert_eq!(&loaded, st.model());
    assert_eq!(
        loaded.vips[&v(A)].backends[&ip("10.0.0.3")].drain_weight,
        65535
    );
    let text = std::fs::read_to_string(store.path()).unwrap();
    assert!(text.contains("\"vip\": \"198.18.0.1:80/tcp\""), "{text}");
    assert!(
        text.contains("\"flags\": [\n        \"no-sport\"\n      ]"),
        "{text}"
    );
    assert!(!dir.path().join("state/.state.json.tmp").exists());

    // A restart over the same maps: nothing to repair, nothing written.
    let maps = st.dataplane().maps().clone();
    let mut dp = fake_with(sizes());
    *dp.maps_mut() = maps.clone();
    let writes = dp.writes();
    let mut st2 = LbState::new(dp, loaded, Some(store.clone())).unwrap();
    let report = st2.adopt().unwrap();
    assert!(report.unchanged(), "{report:?}");
    assert!(report.enumerated);
    assert_eq!(st2.dataplane().writes(), writes);
    assert!(st2.dataplane().maps() == &maps);
    // A drain mark lost from the maps is put back (same generation).
    let mut broken = maps.clone();
    let drained = st2.model().vips[&v(A)].backends[&ip("10.0.0.3")].slot as usize;
    broken.backends[drained].flags = BACKEND_F_VALID;
    let mut dp = fake_with(sizes());
    *dp.maps_mut() = broken;
    let mut st3 = LbState::new(dp, store.load().unwrap().unwrap(), None).unwrap();
    let report = st3.adopt().unwrap();
    assert_eq!(report.backends_written, 1, "{report:?}");
    assert_eq!(
        st3.dataplane().maps().backends[drained],
        maps.backends[drained]
    );
    assert_consistent(&st3);
    // Deleting everything persists an empty state.
    st2.delete_vip(&v(A)).unwrap();
    st2.delete_vip(&v(B6)).unwrap();
    assert!(store.load().unwrap().unwrap().is_empty());
}

#[test]
fn a_corrupt_state_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    for bad in [
        "{ not json",
        r#"{"version": 2, "vips": []}"#,
        r#"{"version": 1, "vips": [{"vip": "1.2.3.4:80/xyz", "index": 0}]}"#,
        r#"{"version": 1, "vips": [{"vip": "198.18.0.1:80/tcp", "index": 0, "backends": [
            {"address": "10.0.0.1", "weight": 1, "slot": 1},
            {"address": "10.0.0.1", "weight": 1, "slot": 2}]}]}"#,
    ] {
        std::fs::write(store.path(), bad).unwrap();
        let e = store.load().unwrap_err();
        assert!(matches!(e, StateError::FailedPrecondition(_)), "{e:?}");
        assert!(
            e.message().contains(&store.path().display().to_string()),
            "{e}"
        );
        assert!(e.message().contains("corrupt"), "{e}");
    }
    // Fits the file format but not the maps.
    std::fs::write(
        store.path(),
        r#"{"version": 1, "vips": [{"vip": "198.18.0.1:80/tcp", "index": 9}]}"#,
    )
    .unwrap();
    let model = store.load().unwrap().unwrap();
    let e = LbState::new(fake_with(sizes()), model, None).err().unwrap();
    assert!(matches!(e, StateError::FailedPrecondition(_)), "{e:?}");
}

#[test]
fn a_failure_to_persist_rolls_the_maps_back() {
    let dir = tempfile::tempdir().unwrap();
    // A state "directory" below a regular file cannot be created, even as root.
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let mut st = base();
    let model = st.model().clone();
    let maps = st.dataplane().maps().clone();
    st.store = Some(Store::new(file.join("state")));
    let e = st
        .add_backend(&v(A), b("10.0.0.3"))
        .expect_err("persisting must fail");
    assert!(matches!(e, StateError::Internal(_)), "{e:?}");
    assert_eq!(st.model(), &model);
    assert_maps_restored(&maps, st.dataplane().maps());
    assert_consistent(&st);
}

#[test]
fn adoption_repairs_only_what_differs() {
    let st = base();
    let model = st.model().clone();
    let good = st.dataplane().maps().clone();
    let restart = |maps: &FakeMaps| {
        let mut dp = fake_with(sizes());
        *dp.maps_mut() = maps.clone();
        LbState::new(dp, model.clone(), None).unwrap()
    };

    // Fresh maps (first start, or after teardown): everything written.
    let mut st1 = LbState::new(fake_with(sizes()), model.clone(), None).unwrap();
    let r = st1.adopt().unwrap();
    assert_eq!(
        (r.vips_written, r.backends_written, r.slots_freed),
        (2, 3, 0)
    );
    assert_consistent(&st1);

    // Only the inactive half is stale: it alone is rewritten, no flip.
    let mut maps = good.clone();
    let meta = maps.vips[&v(A).key()];
    let other = ring_index(meta.index, meta.ring_half ^ 1, 5, RING) as usize;
    maps.ring[other] = SLOT_NONE;
    let mut st2 = restart(&maps);
    let r = st2.adopt().unwrap();
    assert_eq!(
        (r.rings_published, r.vips_written, r.ring_positions_written),
        (0, 0, 1)
    );
    assert_eq!(st2.dataplane().maps().vips[&v(A).key()], meta);
    assert_consistent(&st2);

    // A crash after applying an add but before persisting it: the maps hold
    // a backend the state does not. It leaves the ring first, then its slot
    // is freed under a new generation; the other slots keep theirs.
    let mut ahead = base();
    ahead.add_backend(&v(A), b("10.0.0.3")).unwrap();
    let extra = ahead.list_backends(&v(A)).unwrap()[2].slot;
    let mut st3 = restart(ahead.dataplane().maps());
    let r = st3.adopt().unwrap();
    assert_eq!(
        (r.rings_published, r.slots_freed, r.backends_written),
        (1, 1, 0)
    );
    let e = st3.dataplane().maps().backends[extra as usize];
    assert_eq!((e.flags, e.generation), (0, 2));
    assert_consistent(&st3);

    // A crash after a create: the unknown VIP entry and its address go too.
    let mut ahead = base();
    ahead
        .create_vip(
            v("198.18.0.5:53/udp"),
            VipFlags::default(),
            &[b("10.0.1.1")],
        )
        .unwrap();
    let mut st4 = restart(ahead.dataplane().maps());
    let r = st4.adopt().unwrap();
    assert_eq!(
        (r.orphan_vips_removed, r.slots_freed, r.addrs_written),
        (1, 1, 1)
    );
    assert_consistent(&st4);

    // A crash after a remove: the state still has the backend; its slot is
    // valid again under a new generation and the ring names it again.
    let mut ahead = base();
    let gone = ahead.list_backends(&v(A)).unwrap()[0].slot;
    ahead.remove_backend(&v(A), ip("10.0.0.1")).unwrap();
    let mut st5 = restart(ahead.dataplane().maps());
    let r = st5.adopt().unwrap();
    assert_eq!((r.backends_written, r.rings_published), (1, 1));
    let e = st5.dataplane().maps().backends[gone as usize];
    assert_eq!((e.flags, e.generation), (BACKEND_F_VALID, 3));
    assert_consistent(&st5);

    // A failure during adoption leaves the maps as they were.
    let mut st6 = restart(ahead.dataplane().maps());
    let before = st6.dataplane().maps().clone();
    st6.dataplane_mut().fail_after(2, 1);
    assert!(matches!(st6.adopt(), Err(StateError::Internal(_))));
    assert_maps_restored(&before, st6.dataplane().maps());
}

#[test]
fn counters_follow_indices_and_slots() {
    let mut st = base();
    let vi = st.get_vip(&v(A)).unwrap();
    st.dataplane_mut()
        .record_traffic(vi.index, vi.backends[0].slot, 100);
    let c = st.vip_counters(&v(A)).unwrap();
    assert_eq!((c.vip.packets, c.vip.bytes), (1, 100));
    assert_eq!(c.backends[0], (ip("10.0.0.1"), c.vip));
    assert_eq!(c.backends[1].1.packets, 0);
    assert_eq!(
        st.global_counters().unwrap()[lb_common::Stat::Forwarded as usize],
        1
    );
    // The index and slot are reused by the next VIP, with zeroed counters.
    st.delete_vip(&v(A)).unwrap();
    st.create_vip(
        v("198.18.0.3:80/tcp"),
        VipFlags::default(),
        &[b("10.0.0.1")],
    )
    .unwrap();
    let c = st.vip_counters(&v("198.18.0.3:80/tcp")).unwrap();
    assert_eq!(st.get_vip(&v("198.18.0.3:80/tcp")).unwrap().index, vi.index);
    assert_eq!((c.vip.packets, c.backends[0].1.packets), (0, 0));
}

#[test]
fn error_codes_are_named() {
    assert_eq!(StateError::NotFound("x".into()).code_name(), "NOT_FOUND");
    assert_eq!(StateError::Internal("y".into()).to_string(), "y");
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

/// The node settings as the configuration gives them.
fn configured() -> LbConfig {
    LbConfig {
        gateway_mac: [2, 0, 0, 0, 0, 1],
        hash_seed: SEED,
        mtu: 1500,
        ..Default::default()
    }
}

#[test]
fn the_gateway_is_state_persisted_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let mut st = LbState::new(fake_with(sizes()), Model::default(), Some(store.clone())).unwrap();
    st.set_node_config(configured()).unwrap();
    assert_eq!(st.gateway().unwrap(), mac("02:00:00:00:00:01"));
    assert_eq!(st.model().gateway(), None);

    let gw = mac("02:ab:00:00:00:09");
    st.set_gateway(gw).unwrap();
    assert_eq!(st.gateway().unwrap(), gw);
    assert_eq!(st.model().gateway(), Some(gw));
    let cfg = st.dataplane().maps().config;
    assert_eq!(cfg.gateway_mac, gw.octets());
    assert_eq!(
        (cfg.hash_seed, cfg.mtu),
        (SEED, 1500),
        "other settings kept"
    );
    assert_eq!(store.load().unwrap().unwrap().gateway(), Some(gw));
    // Setting it again writes nothing.
    let w = st.dataplane().writes();
    st.set_gateway(gw).unwrap();
    assert_eq!(st.dataplane().writes(), w);

    // A restart: the configured settings go in with the state's gateway,
    // in one write.
    let reloaded = store.load().unwrap().unwrap();
    let mut again = LbState::new(fake_with(sizes()), reloaded.clone(), Some(store)).unwrap();
    let w = again.dataplane().writes();
    again.set_node_config(configured()).unwrap();
    assert_eq!(again.dataplane().writes(), w + 1);
    assert_eq!(again.gateway().unwrap(), gw);
    assert_eq!(again.dataplane().maps().config.hash_seed, SEED);

    // Maps that lost it (written by someone else) get it back on adoption.
    let mut lost = LbState::new(fake_with(sizes()), reloaded, None).unwrap();
    assert!(lost.adopt().unwrap().gateway_written);
    assert_eq!(lost.gateway().unwrap(), gw);
    assert_eq!(lost.dataplane().maps().config.hash_seed, SEED);
    assert!(lost.adopt().unwrap().unchanged());
}

#[test]
fn a_rejected_gateway_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let mut st = LbState::new(fake_with(sizes()), Model::default(), Some(store.clone())).unwrap();
    st.create_vip(v(A), VipFlags::default(), &[b("10.0.0.1")])
        .unwrap();
    st.set_gateway(mac("02:00:00:00:00:07")).unwrap();
    let snapshot = |st: &St| {
        (
            st.model().clone(),
            st.dataplane().maps().clone(),
            std::fs::read(store.path()).unwrap(),
        )
    };
    let before = snapshot(&st);

    // Values parsing would have refused.
    for bad in [
        MacAddr([0; 6]),
        MacAddr([1, 0, 0x5e, 0, 0, 1]),
        MacAddr([0xff; 6]),
    ] {
        let e = st.set_gateway(bad).unwrap_err();
        assert!(matches!(e, StateError::InvalidArgument(_)), "{bad}: {e:?}");
        assert_eq!(snapshot(&st), before, "{bad}");
    }
    // The map write fails.
    st.dataplane_mut().fail_after(0, 1);
    let e = st.set_gateway(mac("02:00:00:00:00:08")).unwrap_err();
    assert!(matches!(e, StateError::Internal(_)), "{e:?}");
    assert_eq!(snapshot(&st), before);

    // Persisting fails: the map write is undone.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let model = st.model().clone();
    let maps = st.dataplane().clone();
    let mut st = LbState::new(maps, model.clone(), Some(Store::new(file.join("state")))).unwrap();
    let e = st.set_gateway(mac("02:00:00:00:00:08")).unwrap_err();
    assert!(matches!(e, StateError::Internal(_)), "{e:?}");
    assert_eq!(st.model(), &model);
    assert_eq!(st.dataplane().maps(), &before.1);
}

#[test]
fn fingerprints_agree_across_orders_and_weight_scales_only() {
    // Node one and node two get the same backends in another order, with
    // other slot numbers (two has a VIP more, created first), and weights of
    // the same ratios: the Maglev table depends on the addresses and the
    // weights' ratios only, so every flow meets the same backend.
    let mut one = empty();
    one.create_vip(
        v(A),
        VipFlags::default(),
        &[bw("10.0.0.1", 100), bw("10.0.0.2", 100)],
    )
    .unwrap();
    one.add_backend(&v(A), bw("10.0.0.3", 50)).unwrap();
    let mut two = empty();
    two.create_vip(v(B6), no_sport(), &[b("fd00:1::1")])
        .unwrap();
    two.create_vip(v(A), VipFlags::default(), &[bw("10.0.0.3", 1)])
        .unwrap();
    two.add_backend(&v(A), bw("10.0.0.2", 2)).unwrap();
    two.add_backend(&v(A), bw("10.0.0.1", 2)).unwrap();
    let fp = |st: &St| st.ring_fingerprint(&v(A)).unwrap();
    assert_ne!(
        one.model().vips[&v(A)].backends[&ip("10.0.0.1")].slot,
        two.model().vips[&v(A)].backends[&ip("10.0.0.1")].slot
    );
    assert_eq!(fp(&one), fp(&two));

    // Drained on both: still equal (the pre-drain tables too), and not
    // what it was.
    let before = fp(&one);
    one.set_weight(&v(A), ip("10.0.0.2"), 0).unwrap();
    two.set_weight(&v(A), ip("10.0.0.2"), 0).unwrap();
    assert_eq!(fp(&one), fp(&two));
    assert_ne!(fp(&one), before);
    // Removed instead of drained on one node: the live tables are equal,
    // the fingerprints are not (only the drained node falls back).
    let mut three = empty();
    three
        .create_vip(
            v(A),
            VipFlags::default(),
            &[bw("10.0.0.1", 2), bw("10.0.0.3", 1)],
        )
        .unwrap();
    assert_ne!(fp(&three), fp(&one));
    // Another weight ratio, other flags, another seed: different.
    two.set_weight(&v(A), ip("10.0.0.3"), 2).unwrap();
    assert_ne!(fp(&one), fp(&two));
    let mut four = empty();
    four.create_vip(
        v(A),
        no_sport(),
        &[bw("10.0.0.1", 2), bw("10.0.0.2", 0), bw("10.0.0.3", 1)],
    )
    .unwrap();
    let mut five = LbState::new(fake_with(sizes()), Model::default(), None).unwrap();
    five.set_node_config(LbConfig {
        hash_seed: SEED + 1,
        ..Default::default()
    })
    .unwrap();
    five.create_vip(
        v(A),
        VipFlags::default(),
        &[bw("10.0.0.1", 2), bw("10.0.0.3", 1)],
    )
    .unwrap();
    assert_ne!(fp(&three), fp(&four));
    assert_ne!(fp(&three), fp(&five));
    // Unknown VIP: NOT_FOUND.
    assert!(matches!(
        one.ring_fingerprint(&v("198.18.0.77:1/tcp")),
        Err(StateError::NotFound(_))
    ));
}
