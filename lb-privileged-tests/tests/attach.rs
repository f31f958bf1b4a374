//! `lb_xdp` loads on this kernel and attaches to a veth in native (driver)
//! and generic (skb) mode, and then handles real packets there: a ping to a
//! VIP address from the peer side is answered by the XDP program itself.

use std::net::IpAddr;

use aya::programs::XdpMode;
use lb_privileged_tests::{netns::Netns, *};

fn attach_and_ping(mode: XdpMode, label: &str) {
    // Two hosts: the LB (XDP on lb0) and a client on the other end (peer0).
    let (ns, client) = lb_privileged_tests::netns::lb_and_client(label);
    let client_name = client.name.clone();

    // Load + attach happen from inside the namespace (interface by name).
    let handle = std::thread::spawn({
        let name = ns.name.clone();
        move || {
            let ns = Netns { name };
            ns.enter();
            let mut f = Fixture::with(|c| c.if_mac = [0; 6]);
            f.vip("198.18.100.10".parse::<IpAddr>().unwrap(), 80, 6, 0);
            f.lb.program().attach("lb0", mode).expect("attach lb_xdp");
            let link = ns.exec(&["ip", "-d", "link", "show", "lb0"]);
            // XDP_TX on a veth is only delivered if the peer runs XDP too.
            let client = Netns { name: client_name };
            client.enter();
            let mut d = lb_daemon::dataplane::Decap::load().unwrap();
            d.pass_program()
                .attach("peer0", XdpMode::Default)
                .expect("attach lb_pass");
            let ok = client.try_exec(&["ping", "-c", "2", "-W", "2", "198.18.100.10"]);
            std::mem::forget(client);
            let echo = f.stat(lb_common::Stat::IcmpEchoReply);
            std::mem::forget(ns); // the outer guard deletes it
            (link, ok, echo, f, d)
        }
    });
    let (link, ok, echo, f, d) = handle.join().expect("attach thread");
    let flag = if mode == XdpMode::Skb {
        "xdpgeneric"
    } else {
        "xdp "
    };
    assert!(link.contains(flag), "expected {flag} in:\n{link}");
    assert!(ok, "ping to the VIP through {label} XDP failed");
    assert!(echo >= 2, "replies came from lb_xdp: {echo}");
    drop((f, d, client));
}

#[test]
fn attaches_in_native_mode_and_answers_on_the_wire() {
    require_root();
    attach_and_ping(XdpMode::Driver, "nat");
}

#[test]
fn attaches_in_generic_mode_and_answers_on_the_wire() {
    require_root();
    attach_and_ping(XdpMode::Skb, "gen");
}

#[test]
fn programs_pass_the_verifier_with_room_to_spare() {
    require_root();
    let mut f = Fixture::new();
    let info = f.lb.program().info().expect("program info");
    let verified = info
        .verified_instruction_count()
        .expect("kernel reports verified_insns");
    let xlated = info.size_translated().expect("xlated size") / 8;
    println!("lb_xdp: verified_insns={verified} xlated_insns={xlated}");
    // The kernel's limit is 1,000,000 processed instructions; stay far below
    // it so new features do not run into the wall.
    assert!(
        verified > 100 && verified < 200_000,
        "verified_insns={verified}"
    );
    let mut d = lb_daemon::dataplane::Decap::load().unwrap();
    let dv = d
        .decap_program()
        .info()
        .unwrap()
        .verified_instruction_count()
        .unwrap();
    println!("lb_decap: verified_insns={dv}");
    assert!(dv > 10 && dv < 50_000);
}
