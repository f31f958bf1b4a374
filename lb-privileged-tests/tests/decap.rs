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

// ---- GUE (IP in UDP, `lb-daemon decap --gue-port`) ----

/// A GUE frame for `host` on UDP `port` carrying `inner`, as `lb_xdp` sends it.
fn gue(inner: &[u8], outer_src: &str, host: &str, port: u16) -> Vec<u8> {
    gue_encapsulated(inner, 0, ip(outer_src), ip(host), 50000, port, None)
}

/// Sets an IPv4 header's checksum (header at `off`, no options).
fn fix_ip_checksum(f: &mut [u8], off: usize) {
    f[off + 10..off + 12].copy_from_slice(&[0, 0]);
    let c = checksum(&f[off..off + 20]);
    f[off + 10..off + 12].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn decap_gue_all_four_combinations_give_back_the_inner_packet() {
    require_root();
    let mut d = decap();
    for (inner, outer_src, host) in [
        (inner_v4(), "198.19.200.1", HOST4),
        (inner_v6(), "198.19.200.1", HOST4),
        (inner_v4(), "fd00:5::1", HOST6),
        (inner_v6(), "fd00:5::1", HOST6),
    ] {
        let frame = gue(&inner, outer_src, host, lb_common::DEFAULT_GUE_PORT);
        let (act, out) = run_xdp(d.decap_program(), &frame);
        assert_eq!(act, XDP_PASS);
        let ethertype = if inner[0] >> 4 == 4 { 0x0800 } else { 0x86DD };
        assert_frame(&out, &eth(GW_MAC, LB_MAC, None, ethertype, &inner));
    }
    // A non-zero outer UDP checksum is accepted too (not verified: the
    // inner packet's own checksums are the stack's to check).
    let mut frame = gue(&inner_v4(), "198.19.200.1", HOST4, 6080);
    frame[14 + 20 + 6] = 0x12;
    let (act, out) = run_xdp(d.decap_program(), &frame);
    assert_eq!(act, XDP_PASS);
    assert_frame(&out, &eth(GW_MAC, LB_MAC, None, 0x0800, &inner_v4()));
    let s = d.stats().unwrap();
    assert_eq!(s[DecapStat::GueV4InV4 as usize], 2);
    assert_eq!(s[DecapStat::GueV6InV4 as usize], 1);
    assert_eq!(s[DecapStat::GueV4InV6 as usize], 1);
    assert_eq!(s[DecapStat::GueV6InV6 as usize], 1);
    assert_eq!(s[DecapStat::V4InV4 as usize], 0, "GUE is counted as GUE");
    assert_eq!(s[DecapStat::Pass as usize], 0);
    assert_eq!(s[DecapStat::Drop as usize], 0);
}

#[test]
fn decap_gue_on_a_configured_port_passes_other_udp_untouched() {
    require_root();
    pin_thread();
    let mut d = Decap::load_with_gue_port(9999).expect("load lb_decap");
    for a in [HOST4, HOST6] {
        d.add_address(&lb_daemon::vip::addr_key(ip(a))).unwrap();
    }
    let on_port = gue(&inner_v6(), "fd00:5::1", HOST6, 9999);
    let (act, out) = run_xdp(d.decap_program(), &on_port);
    assert_eq!(act, XDP_PASS);
    assert_frame(&out, &eth(GW_MAC, LB_MAC, None, 0x86DD, &inner_v6()));
    // UDP to another port of this host (the default GUE port included,
    // which this program was not loaded for), GUE for another host, and a
    // plain UDP datagram whose payload happens to look like an IP packet:
    // all untouched.
    let plain_udp = {
        let d = udp(ip("198.18.1.7"), ip(HOST4), 5353, 53, &inner_v4());
        let h = Ip4::new("198.18.1.7".parse().unwrap(), HOST4.parse().unwrap(), 17);
        eth(GW_MAC, LB_MAC, None, 0x0800, &ipv4(&h, &d))
    };
    for frame in [
        gue(&inner_v4(), "198.19.200.1", HOST4, 6080),
        gue(&inner_v4(), "198.19.200.1", "198.19.0.99", 9999),
        plain_udp,
    ] {
        let (act, out) = run_xdp(d.decap_program(), &frame);
        assert_eq!(act, XDP_PASS);
        assert_frame(&out, &frame);
    }
    let s = d.stats().unwrap();
    assert_eq!(s[DecapStat::GueV6InV6 as usize], 1);
    assert_eq!(s[DecapStat::Pass as usize], 3);
    // Port 0: GUE off, only IP-in-IP.
    let mut off = Decap::load_with_gue_port(0).expect("load lb_decap");
    off.add_address(&lb_daemon::vip::addr_key(ip(HOST4)))
        .unwrap();
    let frame = gue(&inner_v4(), "198.19.200.1", HOST4, 6080);
    let (act, out) = run_xdp(off.decap_program(), &frame);
    assert_eq!(act, XDP_PASS);
    assert_frame(&out, &frame);
    assert_eq!(off.stats().unwrap()[DecapStat::Pass as usize], 1);
}

#[test]
fn truncated_or_non_ip_gue_is_a_counted_drop() {
    require_root();
    let mut d = decap();
    let full = gue(&inner_v4(), "198.19.200.1", HOST4, 6080);
    // Cut inside the inner IPv4 header (UDP header complete), and right
    // after the UDP header; the IP and UDP lengths are fixed up so only the
    // GUE payload is short.
    let mut cases = Vec::new();
    for keep in [14 + 20 + 8 + 12, 14 + 20 + 8] {
        let mut f = full[..keep].to_vec();
        let ip_len = (keep - 14) as u16;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        fix_ip_checksum(&mut f, 14);
        f[14 + 24..14 + 26].copy_from_slice(&(ip_len - 20).to_be_bytes());
        cases.push(f);
    }
    // IPv6 outer, inner IPv6 header cut at 30 of its 40 bytes.
    let mut v6 = gue(&inner_v6(), "fd00:5::1", HOST6, 6080)[..14 + 40 + 8 + 30].to_vec();
    v6[18..20].copy_from_slice(&38u16.to_be_bytes());
    v6[14 + 44..14 + 46].copy_from_slice(&38u16.to_be_bytes());
    cases.push(v6);
    // A payload that is no IP packet (a GUE variant 0 header: first bits 00).
    let mut not_ip = full.clone();
    not_ip[14 + 28] = 0x00;
    cases.push(not_ip);
    // A fragmented outer IPv4 header (MF set): no reassembly here.
    let mut frag = full.clone();
    frag[14 + 6] = 0x20;
    fix_ip_checksum(&mut frag, 14);
    cases.push(frag);
    for (i, frame) in cases.iter().enumerate() {
        let (act, _) = run_xdp(d.decap_program(), frame);
        assert_eq!(act, XDP_DROP, "case {i}");
    }
    let s = d.stats().unwrap();
    assert_eq!(s[DecapStat::Drop as usize], cases.len() as u64);
    assert_eq!(s[DecapStat::Pass as usize], 0);
}

#[test]
fn balancer_gue_output_decapsulates_to_the_client_packet() {
    require_root();
    // lb_xdp (encap = "gue") -> lb_decap round trip for every family
    // combination, TCP and UDP.
    for (vip, client, backend) in [
        ("198.18.100.10", "198.18.1.7", HOST4),
        ("198.18.100.10", "198.18.1.7", HOST6),
        ("fd00:100::10", "fd00:1::7", HOST4),
        ("fd00:100::10", "fd00:1::7", HOST6),
    ] {
        for proto in [6u8, 17] {
            let mut f = Fixture::with(|c| {
                c.encap = lb_daemon::dataplane::Encapsulation::Gue {
                    port: lb_common::DEFAULT_GUE_PORT,
                }
            });
            f.vip(ip(vip), 80, proto, 0);
            f.backend(1, ip(backend));
            f.ring(ip(vip), 80, proto, &[1]);
            let l4 = if proto == 6 {
                tcp(ip(client), ip(vip), 999, 80, SYN, b"")
            } else {
                udp(ip(client), ip(vip), 999, 80, b"query")
            };
            let frame = match (ip(client), ip(vip)) {
                (IpAddr::V4(c), IpAddr::V4(v)) => v4_frame(c, v, proto, 0, &l4),
                (IpAddr::V6(c), IpAddr::V6(v)) => v6_frame(c, v, proto, 0, &l4),
                _ => unreachable!(),
            };
            let (act, encapped) = f.run(&frame);
            assert_eq!(act, XDP_TX);
            let mut d = decap();
            let (act, out) = run_xdp(d.decap_program(), &encapped);
            assert_eq!(act, XDP_PASS);
            assert_eq!(&out[14..], l3_of(&frame), "{vip} via {backend}");
            let s = d.stats().unwrap();
            let gue: u64 = [
                DecapStat::GueV4InV4,
                DecapStat::GueV6InV4,
                DecapStat::GueV4InV6,
                DecapStat::GueV6InV6,
            ]
            .iter()
            .map(|k| s[*k as usize])
            .sum();
            assert_eq!(gue, 1, "{vip} via {backend}");
        }
    }
}
