//! Fleet consistency with two real daemons (two namespaces, two pin
//! directories, two API sockets): what must match for every node to send a
//! flow to the same backend, checked end to end through `lbctl`.
//!
//! The nodes are given the same VIP and backends in a different order (and
//! one of them a backend it later loses, so its slots are numbered
//! differently): their ring fingerprints agree, and `lbctl route` for 1,000
//! flows names the same backend on both, whatever the slot numbers. Then a
//! drain is made on both with one `lbctl --api A --api B` call, reported per
//! node; a change that one node refuses is reported for that node, with a
//! non-zero status, and `lbctl status` over both nodes shows whether their
//! rings agree.

use lb_privileged_tests::{daemon::*, *};
use serde_json::Value;

const VIP: &str = "198.18.100.10:80/tcp";

/// Runs lbctl in-process (the binary's code): (status, stdout, stderr).
fn lbctl(args: &[&str]) -> (u8, String, String) {
    let argv: Vec<String> = std::iter::once("lbctl")
        .chain(args.iter().copied())
        .map(String::from)
        .collect();
    let (code, out, err) = bins::lbctl(&argv, false);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let (code, out, err) = lbctl(args);
    assert_eq!(code, 0, "lbctl {args:?}: {err}{out}");
    out
}

/// `lbctl --api A --api B status --json`: (exit status, report).
fn status(a: &str, b: &str) -> (u8, Value) {
    let (code, out, _) = lbctl(&["--api", a, "--api", b, "status", "--json"]);
    (code, serde_json::from_str(&out).expect("one JSON report"))
}

/// The fingerprint of VIP on node `i` of a multi-node status report.
fn fingerprint(report: &Value, i: usize) -> String {
    let rings = report["nodes"][i]["output"]["rings"].as_array().unwrap();
    rings
        .iter()
        .find(|r| r["vip"] == VIP)
        .map(|r| r["fingerprint"].as_str().unwrap().to_owned())
        .expect("the VIP has a fingerprint")
}

#[test]
fn two_nodes_agree_and_a_change_reaches_both() {
    require_root();
    let mut a = DaemonEnv::new("fleeta", None, "");
    let mut b = DaemonEnv::new("fleetb", None, "");
    a.start();
    b.start();
    let (na, nb) = (a.api(), b.api());
    let (na, nb) = (na.as_str(), nb.as_str());

    // Node A: the VIP, then backends .11, .12, .13 (weights 100, 100, 50).
    ok(&["--api", na, "vip", "add", VIP]);
    for (be, w) in [
        ("198.19.0.11", "100"),
        ("198.19.0.12", "100"),
        ("198.19.0.13", "50"),
    ] {
        ok(&["--api", na, "backend", "add", VIP, be, "--weight", w]);
    }
    // Node B: other order, first through another weight, and a backend
    // that comes and goes (so B's slots are numbered differently).
    ok(&["--api", nb, "vip", "add", VIP]);
    ok(&["--api", nb, "backend", "add", VIP, "198.19.0.99"]);
    ok(&[
        "--api",
        nb,
        "backend",
        "add",
        VIP,
        "198.19.0.13",
        "--weight",
        "7",
    ]);
    ok(&["--api", nb, "backend", "add", VIP, "198.19.0.12"]);
    ok(&["--api", nb, "backend", "del", VIP, "198.19.0.99"]);
    ok(&["--api", nb, "backend", "add", VIP, "198.19.0.11"]);
    ok(&["--api", nb, "backend", "weight", VIP, "198.19.0.13", "50"]);

    // The same rings: fingerprints agree, status says so and exits 0.
    let (code, report) = status(na, nb);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["rings_agree"], true);
    let (fa, fb) = (fingerprint(&report, 0), fingerprint(&report, 1));
    assert_eq!(fa, fb);
    // The text report says it too.
    let out = ok(&["--api", na, "--api", nb, "status"]);
    assert!(
        out.contains("rings: the 2 nodes that answered agree on every VIP (1 VIPs)"),
        "{out}"
    );

    // 1,000 flows: `lbctl route` on both nodes (one call, two nodes) names
    // the same backend for each, though the slots differ.
    let mut slots_differ = 0;
    let mut backends = std::collections::BTreeSet::new();
    for i in 0..1000u32 {
        let client = format!(
            "198.18.{}.{}:{}",
            i % 200,
            1 + i % 250,
            1024 + i * 61 % 60000
        );
        let (code, out, err) = lbctl(&["--api", na, "--api", nb, "route", VIP, &client, "--json"]);
        assert_eq!(code, 0, "{err}");
        let r: Value = serde_json::from_str(&out).unwrap();
        let (ra, rb) = (&r["nodes"][0]["output"], &r["nodes"][1]["output"]);
        assert_eq!(ra["backend"], rb["backend"], "flow {client}: {r}");
        assert_eq!(ra["ring_position"], rb["ring_position"]);
        slots_differ += usize::from(ra["slot"] != rb["slot"]);
        backends.insert(ra["backend"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        backends.len(),
        3,
        "the flows spread over the three backends"
    );
    assert!(
        slots_differ > 0,
        "the nodes' slot numbers differ, and it does not matter"
    );

    // A drain, on both nodes in one command, reported per node.
    let out = ok(&[
        "--api",
        na,
        "--api",
        nb,
        "backend",
        "weight",
        VIP,
        "198.19.0.12",
        "0",
    ]);
    assert_eq!(
        out,
        format!("node {na}: ok\nnode {nb}: ok\nnodes: 2: 2 ok, 0 failed\n")
    );
    let (code, report) = status(na, nb);
    assert_eq!((code, &report["rings_agree"]), (0, &Value::Bool(true)));
    assert_ne!(fingerprint(&report, 0), fa, "the drain changed the ring");

    // A node out of step: a backend added on A alone. Status shows the
    // nodes differ (exit 1) and names the VIP.
    ok(&["--api", na, "backend", "add", VIP, "198.19.0.14"]);
    let (code, report) = status(na, nb);
    assert_eq!((code, &report["rings_agree"]), (1, &Value::Bool(false)));
    assert_ne!(fingerprint(&report, 0), fingerprint(&report, 1));
    let (code, out, err) = lbctl(&["--api", na, "--api", nb, "status"]);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("rings: the nodes DIFFER\n  {VIP}: {na} ")),
        "{out}"
    );
    assert_eq!(err, "lbctl: the nodes' rings differ (see the report)\n");

    // The same add on both: A refuses it (it has it already), B applies
    // it; each reported, status 1 for the failure, and the nodes agree.
    let (code, out, err) = lbctl(&[
        "--api",
        na,
        "--api",
        nb,
        "backend",
        "add",
        VIP,
        "198.19.0.14",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        out,
        format!(
            "node {na}: failed: ALREADY_EXISTS: backend 198.19.0.14 of VIP {VIP} exists\n\
             node {nb}: ok\nnodes: 2: 1 ok, 1 failed\n"
        )
    );
    assert_eq!(err, format!("lbctl: 1 of 2 nodes failed (first: {na})\n"));
    let (code, report) = status(na, nb);
    assert_eq!(
        (code, &report["rings_agree"]),
        (0, &Value::Bool(true)),
        "{report}"
    );

    // And the VIP list shows the same fingerprint on each node.
    let (code, out, _) = lbctl(&["--api", na, "--api", nb, "vip", "list", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let fp = |i: usize| v["nodes"][i]["output"][0]["ring_fingerprint"].clone();
    assert_eq!(fp(0), fp(1));
    assert_eq!(fp(0).as_str().unwrap(), fingerprint(&report, 0));
    a.stop();
    b.stop();
}
