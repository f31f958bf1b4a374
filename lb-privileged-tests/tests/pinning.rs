//! Hot restart at the data-plane level: a balancer pinned under bpffs keeps
//! forwarding after its process lets go of it, the next open adopts the same
//! program and maps (connection table included), and teardown removes it all.

use std::{net::IpAddr, path::PathBuf};

use aya::programs::XdpMode;
use lb_daemon::dataplane::{AttachMode, Attached, Balancer, Origin, teardown};
use lb_privileged_tests::{netns::*, *};

#[test]
fn pinned_balancer_survives_its_process_and_is_adopted() {
    require_root();
    let (lb_ns, client) = lb_and_client("pin");
    let dir = PathBuf::from(format!("/sys/fs/bpf/lbtest-{}", unique_tag()));
    // Remove the pins even if an assertion fails.
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = teardown(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone());

    let (lb_name, client_name) = (lb_ns.name.clone(), client.name.clone());
    let d2 = dir.clone();
    std::thread::spawn(move || {
        pin_thread();
        let lb_ns = Netns { name: lb_name };
        lb_ns.enter();
        std::mem::forget(lb_ns);
        let sizes = test_sizes();
        let vip: IpAddr = "198.18.100.10".parse().unwrap();

        // First "daemon": loads, pins, attaches, configures a VIP address.
        {
            let (mut lb, origin) = Balancer::open_pinned(sizes, &d2).unwrap();
            assert_eq!(origin, Origin::Loaded);
            let cfg = lb_daemon::dataplane::BalancerConfig {
                gateway_mac: pkt::GW_MAC,
                ..Default::default()
            };
            lb.set_config(&cfg.to_map().unwrap()).unwrap();
            lb.set_vip_addr(&lb_daemon::vip::addr_key(vip), 1).unwrap();
            let attached = lb.attach_pinned("lb0", AttachMode::Auto, &d2).unwrap();
            assert_eq!(attached, Attached::Native, "veth supports native XDP");
        } // the process "exits": every fd we held is closed.

        let client = Netns { name: client_name };
        client.enter();
        std::mem::forget(client);
        let mut d = lb_daemon::dataplane::Decap::load().unwrap();
        d.pass_program().attach("peer0", XdpMode::Default).unwrap();
        let ping = |ns: &str| {
            std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    ns,
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "2",
                    "198.18.100.10",
                ])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        (ping, d)
    })
    .join()
    .map(|(ping, d)| {
        // Forwarding goes on with no process holding the program.
        assert!(
            ping(&client.name),
            "program kept answering after its owner exited"
        );

        // Second "daemon" (in the LB's namespace): adopts the same program
        // and maps, counters included.
        let (d3, lb_name) = (dir.clone(), lb_ns.name.clone());
        let lb = std::thread::spawn(move || {
            let ns = Netns { name: lb_name };
            ns.enter();
            std::mem::forget(ns);
            let (mut lb, origin) = Balancer::open_pinned(test_sizes(), &d3).unwrap();
            assert_eq!(origin, Origin::Adopted);
            assert!(lb.stats().unwrap()[lb_common::Stat::IcmpEchoReply as usize] >= 1);
            assert_eq!(lb.config().unwrap().gateway_mac, pkt::GW_MAC);
            assert_eq!(
                lb.attach_pinned("lb0", AttachMode::Auto, &d3).unwrap(),
                Attached::Native,
                "the existing link is kept"
            );
            // Different sizes are refused instead of silently recreating maps.
            let mut other = test_sizes();
            other.conn_table *= 2;
            assert!(Balancer::open_pinned(other, &d3).is_err());
            lb
        })
        .join()
        .expect("adopting thread");
        assert!(ping(&client.name), "still forwarding after adoption");
        drop(lb);

        teardown(&dir).unwrap();
        assert!(!dir.exists(), "pins removed");
        assert!(!ping(&client.name), "no program answers after teardown");
        drop(d);
    })
    .expect("pinning thread");
}
