//! `lbctl export` and `lbctl apply` through the shipped binaries against
//! real `lb-daemon` processes (XDP attached in test namespaces): the export
//! of one node applied to an empty node exports the same bytes, a daemon
//! configuration file applies as it is, and a change applied to two nodes at
//! once reaches both nodes' maps (flags in the VIP entry, the ring made of
//! the file's backends only).

use std::collections::BTreeSet;

use lb_daemon::dataplane::{Balancer, Origin, Sizes};
use lb_privileged_tests::{daemon::*, *};
use lb_proto::v1 as pb;

fn sizes() -> Sizes {
    // DAEMON_SIZES and the default ring size.
    Sizes {
        ring_size: 65537,
        max_vips: 8,
        max_backends: 512,
        conn_table: 4096,
    }
}

/// Runs the real `lbctl` binary: (status, stdout, stderr).
fn lbctl(args: &[&str]) -> (u8, String, String) {
    let argv: Vec<String> = std::iter::once("lbctl")
        .chain(args.iter().copied())
        .map(String::from)
        .collect();
    let (code, out, err) = bins::lbctl(&argv, true);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

const SEED: &str = r#"
[[vip]]
address = "198.18.100.10:80/tcp"
backends = [{ address = "198.19.0.12" }, { address = "198.19.0.11", weight = 7 }, { address = "198.19.0.13", weight = 0 }]

[[vip]]
address = "[fd00:100::10]:0/udp"
flags = ["no-conntrack"]
backends = [{ address = "fd00:19::11" }]
"#;

/// The live VIPs of a node.
fn list(env: &DaemonEnv) -> Vec<pb::VipInfo> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        env.client()
            .await
            .list_vips(pb::ListVipsRequest {})
            .await
            .unwrap()
            .into_inner()
            .vips
    })
}

/// Asserts a node's pinned maps carry its VIPs' flags, and that each
/// active ring names exactly the slots of its weighted backends.
fn assert_maps_follow(env: &DaemonEnv) {
    let vips = list(env);
    let (lb, origin) = Balancer::open_pinned(sizes(), &env.pin).expect("open pins");
    assert_eq!(origin, Origin::Adopted);
    assert_eq!(lb.vip_entries().unwrap().len(), vips.len());
    for v in &vips {
        let pv = v.vip.as_ref().unwrap();
        let spec = lb_api::convert::vip(Some(pv)).unwrap();
        let meta = lb.vip(&spec.key()).expect("VIP entry in the map");
        let flags = lb_api::convert::flags(&v.flags).unwrap();
        assert_eq!(meta.flags, flags.bits(), "flags of {spec} in its entry");
        let ring: BTreeSet<u32> = lb
            .ring_half(meta.index, meta.ring_half)
            .into_iter()
            .filter(|&s| s != lb_common::SLOT_NONE)
            .collect();
        let weighted: BTreeSet<u32> = v
            .backends
            .iter()
            .filter(|b| b.weight > 0)
            .map(|b| b.slot)
            .collect();
        assert_eq!(ring, weighted, "ring of {spec}");
    }
}

#[test]
fn export_apply_round_trip_and_a_change_on_two_nodes_reach_the_maps() {
    require_root();
    pin_thread();
    let mut seeded = DaemonEnv::new("ap", None, SEED);
    seeded.start();
    let mut empty = DaemonEnv::new("aq", None, "");
    empty.start();
    let (a, b) = (seeded.api(), empty.api());
    let files = tempfile::tempdir().unwrap();

    let (code, exported, err) = lbctl(&["--api", &a, "export"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        exported.contains("flags = [\"no-conntrack\"]"),
        "{exported}"
    );
    let file = files.path().join("export.toml");
    std::fs::write(&file, &exported).unwrap();
    let file = file.to_str().unwrap();

    // Dry run on the empty node: differences, exit 2, nothing done.
    let (code, out, _) = lbctl(&["--api", &b, "apply", "--dry-run", file]);
    assert_eq!(code, 2, "{out}");
    assert!(list(&empty).is_empty());
    let (code, out, err) = lbctl(&["--api", &b, "apply", file]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied: 2 created"), "{out}");
    let (code, again, _) = lbctl(&["--api", &b, "export"]);
    assert_eq!(code, 0);
    assert_eq!(
        again, exported,
        "export -> apply -> export is byte-identical"
    );
    assert_maps_follow(&empty);
    // The same file through a pipe (`lbctl export | lbctl apply -`).
    let mut child = std::process::Command::new(bins::bin("lbctl"))
        .args(["--api", &b, "apply", "--dry-run", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(exported.as_bytes()).unwrap();
    }
    let piped = child.wait_with_output().unwrap();
    assert_eq!(piped.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&piped.stdout),
        "in sync: 2 VIPs match the file\n"
    );

    // The seeded node's own configuration file applies to it as it is.
    let config = seeded.config.to_str().unwrap().to_owned();
    let (code, out, err) = lbctl(&["--api", &a, "apply", "--dry-run", &config]);
    assert_eq!(
        (code, out.as_str()),
        (0, "in sync: 2 VIPs match the file\n"),
        "{err}"
    );
    assert!(
        err.contains("note: skipping [dataplane], [api], [state]"),
        "{err}"
    );

    // One change for both nodes: flags on, a backend out, one in, a drain
    // lifted; one VIP dropped with --prune.
    let changed = "[[vip]]\naddress = \"198.18.100.10:80/tcp\"\nflags = [\"no-sport\"]\n\
                   backends = [{ address = \"198.19.0.11\", weight = 7 }, \
                   { address = \"198.19.0.13\", weight = 5 }, { address = \"198.19.0.14\" }]\n";
    let file2 = files.path().join("changed.toml");
    std::fs::write(&file2, changed).unwrap();
    let file2 = file2.to_str().unwrap();
    let slots_before: Vec<(String, u32)> = list(&seeded)[0]
        .backends
        .iter()
        .map(|b| (b.address.clone(), b.slot))
        .collect();
    let (code, out, err) = lbctl(&["--api", &a, "--api", &b, "apply", "--prune", file2]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.ends_with("nodes: 2: 0 in sync, 2 changed, 0 failed\n"),
        "{out}"
    );
    for env in [&seeded, &empty] {
        let vips = list(env);
        assert_eq!(vips.len(), 1);
        assert_eq!(vips[0].flags, vec![pb::VipFlag::NoSport as i32]);
        assert_maps_follow(env);
    }
    // Kept backends kept their slots on the node that had them.
    let after = &list(&seeded)[0].backends;
    for (addr, slot) in &slots_before {
        if let Some(b) = after.iter().find(|b| &b.address == addr) {
            assert_eq!(b.slot, *slot, "{addr} kept its slot");
        }
    }
    let (code, _, _) = lbctl(&[
        "--api",
        &a,
        "--api",
        &b,
        "apply",
        "--prune",
        "--dry-run",
        file2,
    ]);
    assert_eq!(code, 0, "both nodes in sync");
    seeded.stop();
    empty.stop();
}
