//! Packet-exact tests of `lb_decap`: each of the four IP-in-IP combinations
//! gives back exactly the inner packet, anything else passes untouched.

use std::net::IpAddr;

use lb_common::DecapStat;
use lb_daemon::dataplane::Decap;
use lb_privileged_tests::{pkt::*, *};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const HOST4: &str = "198.19.0.11";
const HOST6: &str = "fd00:200::11";

fn decap() -> Decap {
    pin_thread();
    let mut d = Decap::load().expect("load lb_decap");
    for a in [HOST4, HOST6] {
        d.add_address(&lb_daemon::vip::addr_key(ip(a))).unwrap();
    }
    d
}

fn inner_v4() -> Vec<u8> {
    let seg = tcp(
        ip("198.18.1.7"),
        ip("198.18.100.10"),
        1234,
        80,
        ACK,
        b"inner payload",
    );
    let mut h = Ip4::new(
        "198.18.1.7".parse().unwrap(),
        "198.18.100.10".parse().unwrap(),
        6,
    );
    h.tos = 0x28;
    ipv4(&h, &seg)
}

fn inner_v6() -> Vec<u8> {
    let d = udp(ip("fd00:1::7"), ip("fd00:100::10"), 5353, 53, b"inner6");
    ipv6(
        "fd00:1::7".parse().unwrap(),
        "fd00:100::10".parse().unwrap(),
        17,
        0,
        64,
        &d,
    )
}

#[track_caller]
fn check(d: &mut Decap, inner: &[u8], outer_src: &str, host: &str, vlan: Option<u16>) {
    let frame = encapsulated(inner, 0, ip(outer_src), ip(host), vlan);
    let (act, out) = run_xdp(d.decap_program(), &frame);
    assert_eq!(act, XDP_PASS);
    let ethertype = if inner[0] >> 4 == 4 { 0x0800 } else { 0x86DD };
    assert_frame(&out, &eth(GW_MAC, LB_MAC, vlan, ethertype, inner));
}

#[test]
fn decap_all_four_combinations_give_back_the_inner_packet() {
    require_root();
    let mut d = decap();
    check(&mut d, &inner_v4(), "198.19.200.1", HOST4, None);
    check(&mut d, &inner_v6(), "198.19.200.1", HOST4, None);
    check(&mut d, &inner_v4(), "fd00:5::1", HOST6, None);
    check(&mut d, &inner_v6(), "fd00:5::1", HOST6, None);
    check(&mut d, &inner_v4(), "198.19.200.1", HOST4, Some(0x0123));
    let s = d.stats().unwrap();
    assert_eq!(s[DecapStat::V4InV4 as usize], 2);
    assert_eq!(s[DecapStat::V6InV4 as usize], 1);
    assert_eq!(s[DecapStat::V4InV6 as usize], 1);
    assert_eq!(s[DecapStat::V6InV6 as usize], 1);
    assert_eq!(s[DecapStat::Pass as usize], 0);
}

#[test]
fn decap_passes_what_is_not_ipip_for_this_host() {
    require_root();
    let mut d = decap();
    // IP-in-IP for another host.
    let other = encapsulated(&inner_v4(), 0, ip("198.19.200.1"), ip("198.19.0.99"), None);
    // Plain traffic to this host.
    let plain = eth(LB_MAC, CLIENT_MAC, None, 0x0800, &inner_v4());
    for frame in [other, plain] {
        let (act, out) = run_xdp(d.decap_program(), &frame);
        assert_eq!(act, XDP_PASS);
        assert_frame(&out, &frame);
    }
    assert_eq!(d.stats().unwrap()[DecapStat::Pass as usize], 2);
    // Outer header with options cannot be stripped as 20 bytes: counted drop.
    let mut h = Ip4::new("198.19.200.1".parse().unwrap(), HOST4.parse().unwrap(), 4);
    h.options = vec![1, 1, 1, 1];
    let frame = eth(GW_MAC, LB_MAC, None, 0x0800, &ipv4(&h, &inner_v4()));
    assert_eq!(run_xdp(d.decap_program(), &frame).0, XDP_DROP);
    assert_eq!(d.stats().unwrap()[DecapStat::Drop as usize], 1);
}

#[test]
fn balancer_output_decapsulates_to_the_client_packet() {
    require_root();
    // lb_xdp -> lb_decap round trip for every family combination.
    for (vip, client, backend) in [
        ("198.18.100.10", "198.18.1.7", HOST4),
        ("198.18.100.10", "198.18.1.7", HOST6),
        ("fd00:100::10", "fd00:1::7", HOST4),
        ("fd00:100::10", "fd00:1::7", HOST6),
    ] {
        let mut f = Fixture::new();
        f.vip(ip(vip), 80, 6, 0);
        f.backend(1, ip(backend));
        f.ring(ip(vip), 80, 6, &[1]);
        let seg = tcp(ip(client), ip(vip), 999, 80, SYN, b"");
        let frame = match (ip(client), ip(vip)) {
            (IpAddr::V4(c), IpAddr::V4(v)) => v4_frame(c, v, 6, 0, &seg),
            (IpAddr::V6(c), IpAddr::V6(v)) => v6_frame(c, v, 6, 0, &seg),
            _ => unreachable!(),
        };
        let (act, encapped) = f.run(&frame);
        assert_eq!(act, XDP_TX);
        let mut d = decap();
        let (act, out) = run_xdp(d.decap_program(), &encapped);
        assert_eq!(act, XDP_PASS);
        assert_eq!(&out[14..], l3_of(&frame), "{vip} via {backend}");
    }
}
