//! `lbctl route --explain` agrees with the kernel. The daemon's state layer
//! drives the real `lb_xdp` maps (VIPs, backends, drain, removal: the code
//! the API runs); for 1,000 flows over three VIPs (exact TCP, an IPv6
//! all-ports VIP with no-sport, UDP with no-conntrack), some established by a
//! SYN before a backend was drained and another removed, the explanation
//! read from the live maps (connection table included) names the backend
//! `lb_xdp` then encapsulates to under BPF_PROG_TEST_RUN, with the same outer
//! source, outer family and protocol, and the same verdict. Flows that miss
//! the table at a position the drained backend held are explained, and
//! forwarded, back to it (the pre-drain fallback).

use std::{
    collections::{BTreeMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use aya::programs::{TestRun as _, TestRunOptions};
use lb_daemon::{
    dataplane::{Balancer, BalancerConfig},
    state::{BackendSpec, ConnLookup, Explanation, FlowPacket, LbState, Model, Verdict},
    vip::{Proto, VipFlags, VipSpec},
};
use lb_privileged_tests::{pkt::*, *};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// One packet through `lb_xdp`: (action, output frame).
fn run(lb: &Balancer, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    let r = lb
        .program_ref()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

/// Outer (source, destination, protocol) of an encapsulated frame.
fn outer(out: &[u8]) -> (IpAddr, IpAddr, u8) {
    match u16::from_be_bytes([out[12], out[13]]) {
        0x0800 => (
            Ipv4Addr::new(out[26], out[27], out[28], out[29]).into(),
            Ipv4Addr::new(out[30], out[31], out[32], out[33]).into(),
            out[23],
        ),
        0x86dd => {
            let s: [u8; 16] = out[22..38].try_into().unwrap();
            let d: [u8; 16] = out[38..54].try_into().unwrap();
            (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into(), out[20])
        }
        t => panic!("not an IP frame: ethertype {t:#06x}"),
    }
}

fn frame(client: SocketAddr, dst: &VipSpec, syn: bool) -> Vec<u8> {
    let (c, v) = (client.ip(), dst.address);
    let l4 = match dst.proto {
        Proto::Tcp => tcp(
            c,
            v,
            client.port(),
            dst.port,
            if syn { SYN } else { ACK },
            b"x",
        ),
        Proto::Udp => udp(c, v, client.port(), dst.port, b"q"),
    };
    let proto = dst.proto.number();
    match (c, v) {
        (IpAddr::V4(c), IpAddr::V4(v)) => v4_frame(c, v, proto, 0, &l4),
        (IpAddr::V6(c), IpAddr::V6(v)) => v6_frame(c, v, proto, 0, &l4),
        _ => unreachable!(),
    }
}

/// Explains, then runs the packet, and checks they agree; returns the
/// explanation.
fn check(st: &LbState<Balancer>, pkt: &FlowPacket, what: &str) -> Explanation {
    let e = st.explain_route(pkt).expect("explain");
    let (act, out) = run(st.dataplane(), &frame(pkt.client, &pkt.dst, pkt.syn));
    match e.verdict {
        Verdict::Forward { backend, .. } => {
            assert_eq!(act, XDP_TX, "{what}: {e:?}");
            let (src, dst, proto) = outer(&out);
            let enc = e.encap.expect("encapsulation when forwarded");
            assert_eq!(dst, backend, "{what}: backend\n{e:?}");
            assert_eq!(enc.destination, backend, "{what}");
            assert_eq!(src, enc.source, "{what}: outer source\n{e:?}");
            assert_eq!(proto, enc.inner_protocol, "{what}: outer protocol");
        }
        Verdict::DropNoBackend => assert_eq!(act, XDP_DROP, "{what}: {e:?}"),
    }
    e
}

fn v4(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 19, 0, d))
}

fn v6(d: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x19, 0, 0, 0, 0, 0, d))
}

#[test]
fn explanation_matches_the_kernel_for_1000_flows() {
    require_root();
    pin_thread();
    let cfg = BalancerConfig {
        gateway_mac: GW_MAC,
        if_mac: LB_MAC,
        mtu: 1500,
        hash_seed: 0xE7_91A1,
        v4_src: "198.19.128.0".parse().unwrap(),
        v4_src_len: 17,
        v6_src: "fd00:5::".parse().unwrap(),
        v6_src_len: 96,
        icmp_too_big_rate: 0,
        ..Default::default()
    };
    let lb = Balancer::load(test_sizes()).expect("load lb_xdp");
    let mut st = LbState::new(lb, Model::default(), None).unwrap();
    st.set_node_config(cfg.to_map().unwrap()).unwrap();

    let a = VipSpec::new("198.18.100.10".parse().unwrap(), 80, Proto::Tcp);
    let b = VipSpec::new("fd00:100::10".parse().unwrap(), 0, Proto::Tcp);
    let c = VipSpec::new("198.18.100.20".parse().unwrap(), 53, Proto::Udp);
    let be = |address, weight| BackendSpec { address, weight };
    st.create_vip(
        a,
        VipFlags::default(),
        &[
            be(v4(11), 100),
            be(v4(12), 100),
            be(v4(13), 50),
            be(v6(14), 100),
            be(v6(15), 200),
        ],
    )
    .unwrap();
    st.create_vip(
        b,
        VipFlags {
            no_sport: true,
            no_conntrack: false,
        },
        &[
            be(v6(21), 100),
            be(v6(22), 100),
            be(v4(23), 100),
            be(v4(24), 100),
        ],
    )
    .unwrap();
    st.create_vip(
        c,
        VipFlags {
            no_sport: false,
            no_conntrack: true,
        },
        &[be(v4(31), 100), be(v6(32), 100), be(v4(33), 100)],
    )
    .unwrap();

    // 1,000 distinct flows: 450 to A, 350 to B (any port), 200 to C; about
    // half of A's and B's established by a SYN before the changes.
    let mut rng = StdRng::seed_from_u64(14);
    let mut seen = HashSet::new();
    let mut flows: Vec<(FlowPacket, bool)> = Vec::new();
    while flows.len() < 1000 {
        let n = flows.len();
        let (vip, dport) = match n {
            0..450 => (a, 80),
            450..800 => (b, rng.gen_range(1..=65535)),
            _ => (c, 53),
        };
        let ip: IpAddr = if vip.address.is_ipv4() {
            Ipv4Addr::new(198, 18, rng.gen_range(0..=255), rng.gen_range(1..=254)).into()
        } else {
            Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, rng.r#gen(), rng.r#gen()).into()
        };
        let client = SocketAddr::new(ip, rng.gen_range(1024..=65535));
        if !seen.insert((client, vip, dport)) {
            continue;
        }
        let dst = VipSpec::new(vip.address, dport, vip.proto);
        let established = vip != c && rng.gen_bool(0.5);
        flows.push((
            FlowPacket {
                dst,
                client,
                syn: false,
            },
            established,
        ));
    }

    // Phase 1: the SYNs (explained as SYNs: the ring, never the table).
    let mut pinned: BTreeMap<usize, IpAddr> = BTreeMap::new();
    for (i, (pkt, established)) in flows.iter().enumerate() {
        if !established {
            continue;
        }
        let syn = FlowPacket { syn: true, ..*pkt };
        let e = check(&st, &syn, &format!("SYN of flow {i}"));
        assert_eq!(e.conn, ConnLookup::SkippedSyn);
        let Verdict::Forward { backend, .. } = e.verdict else {
            panic!("SYN of flow {i} dropped: {e:?}")
        };
        pinned.insert(i, backend);
    }

    // Changes: in A, drain 198.19.0.11 and remove 198.19.0.12; in B,
    // remove fd00:19::21. Pick them among backends that hold flows, so the
    // drained-hit and stale cases really occur.
    let held = |addr: IpAddr| pinned.values().filter(|&&b| b == addr).count();
    assert!(held(v4(11)) > 0 && held(v4(12)) > 0 && held(v6(21)) > 0);
    st.set_weight(&a, v4(11), 0).unwrap();
    st.remove_backend(&a, v4(12)).unwrap();
    st.remove_backend(&b, v6(21)).unwrap();

    // Phase 2: one non-SYN packet of every flow.
    let mut tally: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (i, (pkt, _)) in flows.iter().enumerate() {
        let e = check(
            &st,
            pkt,
            &format!("flow {i} ({} -> {})", pkt.client, pkt.dst),
        );
        let got = match e.verdict {
            Verdict::Forward { backend, .. } => backend,
            Verdict::DropNoBackend => panic!("flow {i} dropped: {e:?}"),
        };
        // The pre-drain fallback: a non-SYN TCP packet that the table does
        // not answer, at a position the drained backend held before.
        if let Some(d) = e.drain_fallback {
            assert!(matches!(e.conn, ConnLookup::Miss | ConnLookup::Stale));
            assert_eq!((got, d.backend), (v4(11), v4(11)), "flow {i}: {e:?}");
            *tally
                .entry("miss, back to the draining backend")
                .or_default() += 1;
            continue;
        }
        let kind = match (e.conn, pinned.get(&i)) {
            (ConnLookup::Hit, Some(&p)) if p == v4(11) => {
                assert_eq!(got, p, "a drained backend keeps its flows");
                "hit, drained backend"
            }
            (ConnLookup::Hit, _) => "hit",
            (ConnLookup::Stale, _) => {
                let entry = e.conn_entry.expect("stale entry shown");
                assert!(!entry.slot_valid || entry.slot_generation != entry.generation);
                assert!(
                    got != v4(12) && got != v6(21),
                    "re-hashed off the removed backend"
                );
                "stale (removed backend), re-hashed"
            }
            (ConnLookup::Miss, _) => {
                assert!(
                    got != v4(11) && got != v4(12) && got != v6(21),
                    "new flow {i} to a drained or removed backend"
                );
                "miss"
            }
            (ConnLookup::SkippedNoConntrack, _) => "no-conntrack",
            (ConnLookup::SkippedSyn, _) => unreachable!("not a SYN"),
        };
        if kind.starts_with("hit") {
            assert_eq!(
                pinned.get(&i),
                Some(&got),
                "flow {i} hit, not where its SYN went"
            );
            assert!(e.ring.is_none(), "a hit does not take the ring");
        } else {
            assert!(e.ring.is_some(), "{kind} takes the ring");
        }
        *tally.entry(kind).or_default() += 1;
    }
    eprintln!("{tally:?}");
    assert_eq!(tally.values().sum::<usize>(), 1000);
    for kind in [
        "hit",
        "hit, drained backend",
        "stale (removed backend), re-hashed",
        "miss",
        "miss, back to the draining backend",
        "no-conntrack",
    ] {
        assert!(
            tally.get(kind).copied().unwrap_or(0) >= 5,
            "too few {kind}: {tally:?}"
        );
    }
}
