//! Packet-exact tests of `lb_probe`, the TC egress program that sends the
//! daemon's `via-vip` health probes: the real program against the real maps
//! (loaded with `lb_xdp`, sharing them), frames through BPF_PROG_TEST_RUN
//! with a socket mark. Every encapsulated probe is compared byte for byte
//! with the frame built independently (src/pkt.rs), and with what `lb_xdp`
//! itself emits for the same packet arriving from a client: the probe must
//! reach the backend exactly as a client's packet does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_common::probe_mark;
use lb_privileged_tests::{pkt::*, *};

const TCP: u8 = 6;
const UDP: u8 = 17;

const VIP4: &str = "198.18.100.10";
const VIP6: &str = "fd00:100::10";
/// The LB node's own addresses: a probe's source.
const NODE4: &str = "198.18.2.2";
const NODE6: &str = "fd00:2::2";
const BE4: &str = "198.19.0.11";
const BE6: &str = "fd00:19::11";
/// The next hop the kernel resolved for the probe (the router).
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A fixture whose VIP `vip:port/proto` has the one backend `backend` in
/// slot 1, optionally with GUE to `gue` instead of IP-in-IP.
fn fixture(vip: &str, port: u16, proto: u8, backend: &str, gue: Option<u16>) -> Fixture {
    let mut f = match gue {
        None => Fixture::new(),
        Some(port) => {
            Fixture::with(|c| c.encap = lb_daemon::dataplane::Encapsulation::Gue { port })
        }
    };
    f.vip(ip(vip), port, proto, 0);
    f.backend(1, ip(backend));
    f.ring(ip(vip), port, proto, &[1]);
    f
}

/// The frame the kernel hands to the egress hook for a probe from this node
/// to the VIP: Ethernet to the router (the route to the VIP), then the IP
/// packet with `l4`.
fn probe_frame(src: &str, vip: &str, proto: u8, tos: u8, l4: &[u8]) -> Vec<u8> {
    match (ip(src), ip(vip)) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = Ip4::new(s, d, proto);
            h.tos = tos;
            eth(ROUTER_MAC, LB_MAC, None, 0x0800, &ipv4(&h, l4))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => eth(
            ROUTER_MAC,
            LB_MAC,
            None,
            0x86DD,
            &ipv6(s, d, proto, tos, 64, l4),
        ),
        _ => panic!("mixed families"),
    }
}

/// The same IP packet as it would arrive at `lb_xdp` from a client.
fn as_received(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[0..6].copy_from_slice(&LB_MAC);
    f[6..12].copy_from_slice(&CLIENT_MAC);
    f
}

fn crafted(f: &Fixture, src: IpAddr, sport: u16, backend: IpAddr) -> IpAddr {
    match backend {
        IpAddr::V4(_) => crafted_v4(f.cfg.v4_src, f.cfg.v4_src_len, src, sport).into(),
        IpAddr::V6(_) => crafted_v6(f.cfg.v6_src, f.cfg.v6_src_len, src, sport).into(),
    }
}

/// Runs the probe through `lb_probe` with the mark of slot 1 and checks the
/// result byte for byte against the oracle and against `lb_xdp`'s output
/// for the same packet.
#[track_caller]
fn expect_probe_encap(vip: &str, src: &str, backend: &str, proto: u8, tos: u8, gue: Option<u16>) {
    let mut f = fixture(vip, 80, proto, backend, gue);
    let sport = 40_123;
    let l4 = match proto {
        TCP => tcp(ip(src), ip(vip), sport, 80, SYN, b""),
        _ => udp(ip(src), ip(vip), sport, 80, b"probe"),
    };
    let frame = probe_frame(src, vip, proto, tos, &l4);
    let (verdict, out) = run_tc(f.lb.probe_program(), &frame, probe_mark(1).unwrap());
    assert_eq!(verdict, TC_ACT_OK, "a probe is sent on");
    let be = ip(backend);
    let outer_src = crafted(&f, ip(src), sport, be);
    let want = match gue {
        None => encapsulated(l3_of(&frame), tos, outer_src, be, None),
        Some(port) => gue_encapsulated(
            l3_of(&frame),
            tos,
            outer_src,
            be,
            gue_sport(ip(src), sport),
            port,
            None,
        ),
    };
    assert_frame(&out, &want);
    // And exactly what the balancer sends for a client's packet.
    let (act, xdp_out) = f.run(&as_received(&frame));
    assert_eq!(act, XDP_TX);
    assert_frame(&out, &xdp_out);
}

#[test]
fn v4_probe_to_v4_backend_is_v4_in_v4_as_lb_xdp_sends_it() {
    require_root();
    pin_thread();
    expect_probe_encap(VIP4, NODE4, BE4, TCP, 0, None);
}

#[test]
fn v4_probe_to_v6_backend_is_v4_in_v6_as_lb_xdp_sends_it() {
    require_root();
    pin_thread();
    expect_probe_encap(VIP4, NODE4, BE6, TCP, 0, None);
}

#[test]
fn v6_probe_to_v4_backend_is_v6_in_v4_as_lb_xdp_sends_it() {
    require_root();
    pin_thread();
    expect_probe_encap(VIP6, NODE6, BE4, TCP, 0, None);
}

#[test]
fn v6_probe_to_v6_backend_is_v6_in_v6_as_lb_xdp_sends_it() {
    require_root();
    pin_thread();
    expect_probe_encap(VIP6, NODE6, BE6, TCP, 0, None);
}

#[test]
fn udp_probes_keep_their_dscp_ecn_in_the_outer_header() {
    require_root();
    pin_thread();
    expect_probe_encap(VIP4, NODE4, BE4, UDP, 0x2a, None);
    expect_probe_encap(VIP6, NODE6, BE6, UDP, 0x2a, None);
}

#[test]
fn with_gue_the_probe_gets_the_same_udp_header_as_clients() {
    require_root();
    pin_thread();
    expect_probe_encap(VIP4, NODE4, BE4, TCP, 0, Some(6080));
    expect_probe_encap(VIP6, NODE6, BE4, UDP, 0, Some(6080));
}

#[test]
fn unmarked_and_foreign_marked_packets_leave_untouched() {
    require_root();
    pin_thread();
    let mut f = fixture(VIP4, 80, TCP, BE4, None);
    let l4 = tcp(ip(NODE4), ip(VIP4), 40_000, 80, SYN, b"");
    let frame = probe_frame(NODE4, VIP4, TCP, 0, &l4);
    // kube-proxy's masquerade and drop bits, a firewall mark, a mark one
    // bit off the probe tag: none is a probe.
    for mark in [0, 0x4000, 0x8000, 0x0f00, 0x4d00_0001, 0x0c00_0001] {
        let (verdict, out) = run_tc(f.lb.probe_program(), &frame, mark);
        assert_eq!(verdict, TC_ACT_OK, "mark {mark:#x}");
        assert_frame(&out, &frame);
    }
}

#[test]
fn a_marked_packet_that_cannot_be_a_probe_is_dropped() {
    require_root();
    pin_thread();
    let mut f = fixture(VIP4, 80, TCP, BE4, None);
    let mark = probe_mark(1).unwrap();
    // Not to a VIP address.
    let other: Ipv4Addr = "198.18.1.9".parse().unwrap();
    let l4 = tcp(ip(NODE4), other.into(), 40_000, 80, SYN, b"");
    let frame = probe_frame(NODE4, "198.18.1.9", TCP, 0, &l4);
    assert_eq!(run_tc(f.lb.probe_program(), &frame, mark).0, TC_ACT_SHOT);
    // To the VIP, but naming a free slot.
    let l4 = tcp(ip(NODE4), ip(VIP4), 40_000, 80, SYN, b"");
    let frame = probe_frame(NODE4, VIP4, TCP, 0, &l4);
    let free = probe_mark(7).unwrap();
    assert_eq!(run_tc(f.lb.probe_program(), &frame, free).0, TC_ACT_SHOT);
    // ICMP is not what a probe socket sends.
    let echo = icmp4(8, 0, [0, 1, 0, 1], b"ping");
    let frame = probe_frame(NODE4, VIP4, 1, 0, &echo);
    assert_eq!(run_tc(f.lb.probe_program(), &frame, mark).0, TC_ACT_SHOT);
    // The same packet with the slot's mark goes out: the refusals above
    // were about the packet, not the fixture.
    let frame = probe_frame(NODE4, VIP4, TCP, 0, &l4);
    assert_eq!(run_tc(f.lb.probe_program(), &frame, mark).0, TC_ACT_OK);
    // An IPv6 destination that is not a VIP address.
    let not_vip: Ipv6Addr = "fd00:1::9".parse().unwrap();
    let l4 = tcp(ip(NODE6), not_vip.into(), 40_000, 80, SYN, b"");
    let frame = probe_frame(NODE6, "fd00:1::9", TCP, 0, &l4);
    assert_eq!(run_tc(f.lb.probe_program(), &frame, mark).0, TC_ACT_SHOT);
}
