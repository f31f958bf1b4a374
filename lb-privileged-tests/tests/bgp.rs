//! BGP announcement and ECMP over two LB nodes, end to end (root): the
//! `lab.sh --ecmp` lab, a BIRD 2 router learning the VIP from both nodes'
//! BIRD speakers, which each `lb-daemon` drives ([bgp]); real TCP through
//! the router's ECMP route. One lab for every section (labs are slow to
//! build), in an order where each leaves both nodes announcing, but the
//! last, which loses a node.
//!
//! Run: `cargo build --bins && cargo test -p lb-privileged-tests --test bgp`.

use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use lb_privileged_tests::{
    bins::lb_daemon_bin,
    lab::{self, B4, B6, Lab, LabOpts, vip_toml},
    require_root,
};
use lb_proto::v1 as pb;
use serde_json::Value;

const VIP: &str = "198.18.100.10";
const VIP6: &str = "fd00:100::10";
const NODE1: &str = "198.18.2.2";
const NODE2: &str = "198.18.5.2";
/// BFD 100 ms x 3 detects a dead node in 0.3 s; the bound for the
/// longest silence of a surviving stream is 3 s.
const MAX_GAP_MS: f64 = 3000.0;

fn vip_packets(l: &Lab, node: u8, port: u32) -> u64 {
    lab::vip_stats(&l.node_stats(node), VIP, port).packets
}

fn new_flows(l: &Lab, node: u8) -> u64 {
    lab::counter(&l.node_stats(node), "new_flow")
}

#[track_caller]
fn streams_all_ok(r: &Value, n: u64, what: &str) {
    assert_eq!(r["ok"].as_u64(), Some(n), "{what}: {r}");
    assert_eq!(r["resets"].as_u64(), Some(0), "{what}: {r}");
}

/// Drains or undrains a node with lbctl; returns how long the router took
/// to show the change in its kernel route (after lbctl returned).
fn node_drain(l: &Lab, node: u8, drain: bool, want_hops: &[&str]) -> Duration {
    let out = l.lbctl_ok(node, &["node", if drain { "drain" } else { "undrain" }]);
    let state = if drain { "withdrawn" } else { "announced" };
    assert!(out.contains(&format!("{VIP}/32  {state}")), "{out}");
    let t = l.wait_nexthops(VIP, want_hops.len(), Duration::from_secs(10));
    assert_eq!(l.router_nexthops(VIP), want_hops);
    t
}

#[test]
fn two_nodes_behind_ecmp() {
    require_root();
    let vips = [
        vip_toml(&format!("{VIP}:80/tcp"), &B4),
        vip_toml(&format!("{VIP}:9000/tcp"), &B4),
        vip_toml(&format!("[{VIP6}]:80/tcp"), &B6),
    ]
    .concat();
    let mut l = Lab::up(LabOpts {
        ecmp: true,
        vips,
        ..Default::default()
    });
    // Both nodes' speakers establish BGP with the router and announce the
    // VIP; the router merges the two paths into one ECMP route.
    let t = l.wait_nexthops(VIP, 2, Duration::from_secs(30));
    eprintln!(
        "[bgp] both nodes announced, router route after {:.1} s",
        t.as_secs_f64()
    );
    assert_eq!(l.router_nexthops(VIP), [NODE1, NODE2]);
    // IPv6: announced over the IPv6 sessions, the same ECMP.
    l.wait_nexthops(VIP6, 2, Duration::from_secs(30));
    assert_eq!(l.router_nexthops(VIP6), ["fd00:2::2", "fd00:5::2"]);
    let r = l.traffic(&["http", "--vip", VIP6, "--count", "60", "--parallel", "4"]);
    assert_eq!(r["ok"].as_u64(), Some(60), "IPv6 through both nodes: {r}");
    let list: Value =
        serde_json::from_str(&l.lbctl_ok(1, &["announce", "list", "--json"])).unwrap();
    assert_eq!(
        list["announcements"][0]["prefix"],
        format!("{VIP}/32"),
        "{list}"
    );
    assert_eq!(list["announcements"][0]["state"], "announced", "{list}");
    assert_eq!(list["drained"], false);
    assert_eq!(list["speaker_error"], "", "{list}");
    let peers = list["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2, "{list}");
    assert_eq!(peers[0]["address"], "198.18.2.1");
    assert_eq!(peers[0]["state"], "up", "{list}");
    assert!(
        peers[0]["info"]
            .as_str()
            .unwrap()
            .starts_with("Established"),
        "{list}"
    );

    // ---- 1. Both nodes carry flows: each at least 25% of 300 connections.
    let (a0, b0) = (new_flows(&l, 1), new_flows(&l, 2));
    let r = l.traffic(&["http", "--vip", VIP, "--count", "300", "--parallel", "8"]);
    assert_eq!(r["ok"].as_u64(), Some(300), "{r}");
    let (a, b) = (new_flows(&l, 1) - a0, new_flows(&l, 2) - b0);
    eprintln!(
        "[bgp] 300 connections: node 1 took {a}, node 2 {b}; backends {}",
        r["by_backend"]
    );
    assert!(a >= 75 && b >= 75, "each node >= 25% of 300: {a} / {b}");
    assert!(
        a + b >= 300,
        "every connection was a new flow on one node: {a} + {b}"
    );

    // ---- 2. Same backend whichever node: 1,000 flows asked of both.
    let (mut c1, mut c2) = (l.node_client(1), l.node_client(2));
    let mut agree = 0;
    for i in 0..1000u32 {
        let req = pb::RouteRequest {
            vip: lab::pvip(VIP, 80, pb::Protocol::Tcp),
            client_address: format!("198.18.1.{}", 2 + i % 200),
            client_port: 10_000 + i * 37 % 50_000,
            ..Default::default()
        };
        let ask = |c: &mut pb::load_balancer_client::LoadBalancerClient<_>| {
            l.block_on(c.route(req.clone()))
                .expect("Route")
                .into_inner()
                .backend
                .expect("a backend")
                .address
        };
        let (x, y) = (ask(&mut c1), ask(&mut c2));
        assert_eq!(x, y, "flow {req:?}: node 1 says {x}, node 2 {y}");
        agree += 1;
    }
    eprintln!("[bgp] route agreement: {agree} of 1000 flows");

    // ---- 3. Graceful drain: 100 streams over both nodes; node 2 drained:
    // its routes are withdrawn, its streams move to node 1 and reach the
    // same backends (any other would reset them); none is lost.
    let mut s = l.streams_bg(VIP, 9000, 100, 7.0);
    s.wait_ready();
    std::thread::sleep(Duration::from_millis(800));
    let took = node_drain(&l, 2, true, &[NODE1]);
    eprintln!(
        "[bgp] node 2 drained: router down to node 1 {:.0} ms after lbctl returned",
        took.as_secs_f64() * 1e3
    );
    std::thread::sleep(Duration::from_millis(1000));
    let p1 = vip_packets(&l, 2, 9000);
    std::thread::sleep(Duration::from_millis(1500));
    let p2 = vip_packets(&l, 2, 9000);
    assert!(
        p2 - p1 <= 2,
        "node 2 still gets the streams' packets after its drain: {p1} -> {p2}"
    );
    let r = s.join();
    streams_all_ok(&r, 100, "graceful drain of node 2");
    eprintln!(
        "[bgp] graceful drain: {} of 100 streams survived, max gap {} ms",
        r["ok"], r["max_gap_ms"]
    );

    // ---- 4. Forced through node 1, then through node 2 only: the same
    // connections (same 5-tuples) reach the same backend through both.
    let mut s = l.streams_bg(VIP, 9000, 40, 6.0);
    s.wait_ready();
    std::thread::sleep(Duration::from_millis(500));
    let b_before = vip_packets(&l, 2, 9000);
    node_drain(&l, 2, false, &[NODE1, NODE2]);
    node_drain(&l, 1, true, &[NODE2]);
    std::thread::sleep(Duration::from_millis(1000));
    let a1 = vip_packets(&l, 1, 9000);
    std::thread::sleep(Duration::from_millis(1500));
    let (a2, b_after) = (vip_packets(&l, 1, 9000), vip_packets(&l, 2, 9000));
    assert!(
        a2 - a1 <= 2,
        "node 1 drained but still carries: {a1} -> {a2}"
    );
    assert!(
        b_after - b_before >= 40,
        "node 2 took over the 40 streams: {b_before} -> {b_after}"
    );
    let r = s.join();
    streams_all_ok(&r, 40, "moved from node 1 to node 2");
    node_drain(&l, 1, false, &[NODE1, NODE2]);

    // ---- 5. Daemon SIGKILL and restart on node 1: the speaker keeps the
    // route (no flap in the router's log or table), no stream is lost.
    let mut s = l.streams_bg(VIP, 9000, 60, 6.0);
    s.wait_ready();
    let route_before = l.router_birdc(&["show", "route", "all", &format!("{VIP}/32")]);
    let log_mark = l.router_bird_log().len();
    let mut samples = Vec::new();
    l.kill_node_daemon(1);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) {
        samples.push(l.router_nexthops(VIP).len());
        std::thread::sleep(Duration::from_millis(50));
    }
    l.start_node(1);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) {
        samples.push(l.router_nexthops(VIP).len());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        samples.iter().all(|&n| n == 2),
        "router's next hops during the restart: {samples:?}"
    );
    let route_after = l.router_birdc(&["show", "route", "all", &format!("{VIP}/32")]);
    assert_eq!(
        route_before, route_after,
        "the router's routes changed (a flap)"
    );
    let log = l.router_bird_log();
    let new_log = &log[log_mark..];
    assert!(
        !new_log.contains("removed") && !new_log.contains("State changed"),
        "router log during the restart:\n{new_log}"
    );
    let r = s.join();
    streams_all_ok(&r, 60, "daemon restart on node 1");
    eprintln!(
        "[bgp] daemon SIGKILL+restart: {} route samples all 2 next hops, router log quiet, 60/60 streams",
        samples.len()
    );
    assert!(l.node_log(1).contains("announcing over BGP"));

    // ---- 6. A VIP whose backends are all drained is withdrawn by that
    // node and announced again when one comes back (the router's BIRD).
    let vip2 = "198.18.100.20";
    let spec = format!("{vip2}:80/tcp");
    l.lbctl_ok(1, &["vip", "add", &spec]);
    l.lbctl_ok(1, &["backend", "add", &spec, B4[0]]);
    let shown = |l: &Lab| {
        l.router_birdc(&["show", "route", &format!("{vip2}/32")])
            .contains(&format!("via {NODE1}"))
    };
    let wait_shown = |l: &Lab, want: bool| {
        let t0 = Instant::now();
        while shown(l) != want {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "router: {vip2}/32 shown = {}, want {want}\n{}",
                !want,
                l.lbctl_ok(1, &["announce", "list"])
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    };
    wait_shown(&l, true);
    l.lbctl_ok(1, &["backend", "weight", &spec, B4[0], "0"]);
    wait_shown(&l, false);
    let list = l.lbctl_ok(1, &["announce", "list"]);
    assert!(
        list.contains(&format!("{vip2}/32  withdrawn  no backend takes new flows")),
        "{list}"
    );
    l.lbctl_ok(1, &["backend", "weight", &spec, B4[0], "100"]);
    wait_shown(&l, true);
    l.lbctl_ok(1, &["vip", "del", &spec]);
    wait_shown(&l, false);
    eprintln!("[bgp] all-drained VIP withdrawn and announced again (router's birdc)");

    // ---- 7. Drain, then node loss: 100 long streams; one backend is
    // drained on both nodes (its streams stay pinned to it); then node 2
    // dies (daemon and speaker SIGKILLed, data plane gone, addresses
    // removed, carrier up: nothing withdrawn, nothing answered). Only BFD
    // tells the router; node 1's ring sends node 2's flows to the same
    // backends, and those of the drained backend, which node 1's ring no
    // longer names and its table never saw, go back to it through the
    // pre-drain fallback (`conn_drain_fallback` on node 1): 0 resets.
    let per_node = |l: &Lab| (vip_packets(l, 1, 9000), vip_packets(l, 2, 9000));
    let mut s = l.streams_bg(VIP, 9000, 100, 8.0);
    s.wait_ready();
    let (x0, y0) = per_node(&l);
    std::thread::sleep(Duration::from_millis(1500));
    let (x1, y1) = per_node(&l);
    assert!(
        x1 > x0 && y1 > y0,
        "both nodes carry the streams before the loss: {x0}->{x1}, {y0}->{y1}"
    );
    let drained = B4[1];
    let spec = format!("{VIP}:9000/tcp");
    for node in [1, 2] {
        l.lbctl_ok(node, &["backend", "weight", &spec, drained, "0"]);
    }
    std::thread::sleep(Duration::from_millis(300));
    let fallback0 = lab::counter(&l.node_stats(1), "conn_drain_fallback");
    let log_mark = l.router_bird_log().len();
    let t_kill = Instant::now();
    l.kill_node(2);
    let killing = t_kill.elapsed();
    let gone = l.wait_nexthops(VIP, 1, Duration::from_secs(5));
    eprintln!(
        "[bgp] node 2 killed (took {:.0} ms): router down to node 1 {:.0} ms later",
        killing.as_secs_f64() * 1e3,
        gone.as_secs_f64() * 1e3
    );
    assert_eq!(l.router_nexthops(VIP), [NODE1]);
    // BFD, not a carrier loss or a closed TCP session, told the router.
    let log = l.router_bird_log();
    assert!(
        log[log_mark..].contains("BFD session down"),
        "router log:\n{}",
        &log[log_mark..]
    );
    let r = s.join();
    let ok = r["ok"].as_u64().unwrap();
    let gap = r["max_gap_ms"].as_f64().unwrap();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for st in r["streams"].as_array().unwrap() {
        if st["ok"] != true {
            *errors.entry(format!("{}", st["error"])).or_default() += 1;
        }
    }
    eprintln!(
        "[bgp] NODE LOSS: {ok} of 100 streams survived ({} resets), longest gap without progress \
         {gap:.0} ms, router's route down to node 1 {:.0} ms after the kill began; failures {errors:?}",
        r["resets"],
        (killing + gone).as_secs_f64() * 1e3
    );
    assert!(ok >= 99, "at least 99 of 100 streams survive: {r}");
    assert!(gap < MAX_GAP_MS, "longest gap {gap} ms >= {MAX_GAP_MS} ms");
    // Some of node 2's streams were the drained backend's: they reached
    // node 1 with no entry and were sent back to it, not reset. (A stream
    // of a backend that stays may be reset: removing a backend from a
    // Maglev table also moves a few positions between the others, and the
    // fallback answers only for positions of a draining backend; see
    // docs/packet-path.md, 3b.)
    let drained_name = format!(
        "backend-{}",
        drained.rsplit('.').next().unwrap().parse::<u32>().unwrap() - 10
    );
    let drained_streams: Vec<&Value> = r["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|st| st["backend"].as_str() == Some(drained_name.as_str()))
        .collect();
    let on_drained = drained_streams.len();
    for st in &drained_streams {
        assert_eq!(
            st["ok"], true,
            "a stream of the drained backend failed: {st}"
        );
    }
    let fallback = lab::counter(&l.node_stats(1), "conn_drain_fallback") - fallback0;
    eprintln!(
        "[bgp] DRAIN THEN NODE LOSS: {on_drained} streams on the drained backend {drained}, \
         node 1 took node 2's share of them through the pre-drain fallback ({fallback} packets), \
         none of them reset"
    );
    assert!(on_drained > 0, "no stream on the drained backend: {r}");
    assert!(
        fallback > 0,
        "node 1 never fell back for the drained backend's streams of node 2"
    );

    // ---- 8. `lb-daemon teardown` withdraws before it detaches: with the
    // daemon gone (SIGKILL keeps the routes), teardown empties the file,
    // BIRD withdraws, the router is left with no route to the VIP.
    l.kill_node_daemon(1);
    assert_eq!(
        l.router_nexthops(VIP),
        [NODE1],
        "a killed daemon withdraws nothing"
    );
    let out = Command::new(lb_daemon_bin())
        .args(["teardown", "--config"])
        .arg(&l.config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "teardown: {err}");
    let at = |what: &str| {
        err.find(what)
            .unwrap_or_else(|| panic!("teardown did not log {what:?}: {err}"))
    };
    assert!(
        at("every prefix withdrawn") < at("data plane removed"),
        "withdrawn first: {err}"
    );
    l.wait_nexthops(VIP, 0, Duration::from_secs(5));
    let file = std::fs::read_to_string(l.var("LAB_LB_BIRD_FILE")).unwrap();
    assert!(!file.contains("route "), "{file}");
    eprintln!("[bgp] lb-daemon teardown: withdrawn, then detached; router has no route left");
}

/// `lb-daemon check` refuses bad [bgp] settings, naming the line and key.
#[test]
fn bad_bgp_settings_are_refused_at_check() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let head = "[dataplane]\ninterface = \"eth0\"\ngateway_mac = \"02:00:00:00:00:01\"\n\n[bgp]\n";
    let peer = "[[bgp.peer]]\naddress = \"198.18.2.1\"\nasn = 65000\n";
    let missing = dir.path().join("no-bird.ctl");
    let cases = [
        (
            "no peer",
            "local_asn = 65001\n".to_string(),
            "line 5",
            "bgp",
            "no peer",
        ),
        (
            "bad ASN",
            format!("local_asn = 23456\n{peer}"),
            "line 6",
            "bgp.local_asn",
            "AS_TRANS",
        ),
        (
            "peer ASN",
            "local_asn = 65001\n[[bgp.peer]]\naddress = \"198.18.2.1\"\nasn = 0\n".to_string(),
            "line 9",
            "bgp.peer[0].asn",
            "reserved",
        ),
        (
            "unknown speaker",
            format!("speaker = \"exabgp\"\nlocal_asn = 65001\n{peer}"),
            "line 6",
            "bgp.speaker",
            "unknown speaker",
        ),
        (
            "unreachable control socket",
            format!(
                "control_socket = \"{}\"\nlocal_asn = 65001\n{peer}",
                missing.display()
            ),
            "line 6",
            "bgp.control_socket",
            "does not answer",
        ),
    ];
    for (what, body, line, key, needle) in cases {
        let f = dir.path().join("lb.toml");
        std::fs::write(&f, format!("{head}{body}")).unwrap();
        let out = Command::new(lb_daemon_bin())
            .args(["check", "--config"])
            .arg(&f)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(
            err.contains(line) && err.contains(key) && err.contains(needle),
            "{what}: {err}"
        );
    }
}
