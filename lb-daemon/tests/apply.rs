//! `lbctl export` and `lbctl apply` against the real gRPC service on real
//! Unix sockets, with the state on a fake data plane (no root): the
//! export -> apply -> export round trip, exit statuses, bad files that
//! change nothing, several nodes, and that a concurrent reader never sees
//! a VIP half changed.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use lb_daemon::{
    dataplane::{FakeDataplane, Sizes},
    grpc::{LbService, Listener, StatusInfo, serve},
    state::{LbState, Model, Store},
};
use lb_proto::v1::{self as pb, load_balancer_client::LoadBalancerClient};
use lbctl::client::ClientTls;
use tonic::transport::Channel;

/// A daemon (the real service over a fake data plane) on its own socket.
struct Node {
    api: String,
    client: LoadBalancerClient<Channel>,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn node() -> Node {
    node_on(None).await
}

/// Test certificates (lbctl's pki.sh): ca.pem, server.pem/key for
/// 127.0.0.1, client.pem/key. Fails, saying why, without openssl.
fn make_pki(dir: &Path) {
    let out = std::process::Command::new("sh")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../lbctl/tests/pki.sh"
        ))
        .current_dir(dir)
        .output()
        .expect("sh pki.sh");
    assert!(
        out.status.success(),
        "making test certificates needs openssl (scripts/setup.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A node on its Unix socket, or with `pki` (a directory made by
/// [`make_pki`]) on 127.0.0.1 with mutual TLS.
async fn node_on(pki: Option<&Path>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let sizes = Sizes {
        ring_size: 13,
        max_vips: 4,
        max_backends: 32,
        conn_table: 16,
    };
    let state = LbState::new(
        FakeDataplane::new(sizes),
        Model::default(),
        Some(Store::new(dir.path())),
    )
    .unwrap();
    let svc = LbService::new(state, StatusInfo::default());
    let sock: PathBuf = dir.path().join("lb.sock");
    let (listener, api, tls) = match pki {
        None => (
            Listener::Unix(sock.clone()),
            format!("unix://{}", sock.display()),
            None,
        ),
        Some(pki) => {
            // A free port: bound, read and released (the server binds it
            // again at once).
            let addr = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let listener = Listener::Tls {
                addr,
                cert: pki.join("server.pem"),
                key: pki.join("server.key"),
                client_ca: Some(pki.join("ca.pem")),
            };
            let tls = ClientTls {
                ca: pki.join("ca.pem"),
                cert: Some(pki.join("client.pem")),
                key: Some(pki.join("client.key")),
                domain: None,
            };
            (listener, format!("tcp://{addr}"), Some(tls))
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        serve(svc, listener, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    let mut client = None;
    for _ in 0..200 {
        if let Ok(c) = lbctl::client::connect(&api, tls.as_ref()).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let client = client.expect("the node serves");
    Node {
        api,
        client,
        dir,
        stop: Some(tx),
    }
}

/// Runs lbctl in-process: (status, stdout, stderr).
async fn lbctl(args: &[&str]) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = std::iter::once("lbctl").chain(args.iter().copied());
    let code = lbctl::run_async(argv, &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// What a refused apply must leave alone: the VIPs as listed and the
/// state file's bytes.
async fn snapshot(n: &mut Node) -> (Vec<pb::VipInfo>, Option<Vec<u8>>) {
    let vips = n
        .client
        .list_vips(pb::ListVipsRequest {})
        .await
        .unwrap()
        .into_inner()
        .vips;
    (vips, std::fs::read(n.dir.path().join("state.json")).ok())
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// A varied live state: both families, flags, a drained backend, a VIP
/// without backends; created in an order that is not the sorted one.
const VARIED: &str = r#"
[[vip]]
address = "[fd00:100::10]:443/tcp"
flags = ["no-sport"]
backends = [{ address = "fd00:19::12", weight = 50 }, { address = "198.19.0.13", weight = 0 }, { address = "fd00:19::11" }]

[[vip]]
address = "198.18.100.20:0/udp"
flags = ["no-conntrack", "no-sport"]

[[vip]]
address = "198.18.100.10:80/tcp"
backends = [{ address = "198.19.0.12" }, { address = "198.19.0.11", weight = 7 }]
"#;

#[tokio::test]
async fn export_apply_export_round_trips_byte_for_byte() {
    let first = node().await;
    let files = tempfile::tempdir().unwrap();
    let seed = write(files.path(), "seed.toml", VARIED);
    let (code, _, err) = lbctl(&["--api", &first.api, "apply", &seed]).await;
    assert_eq!(code, 0, "{err}");

    let (code, exported, err) = lbctl(&["--api", &first.api, "export"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(exported.contains("address = \"[fd00:100::10]:443/tcp\""));
    // Sorted: IPv4 VIPs first, backends by address, weights spelled out.
    let p10 = exported.find("198.18.100.10:80/tcp").unwrap();
    let p20 = exported.find("198.18.100.20:0/udp").unwrap();
    let p6 = exported.find("[fd00:100::10]").unwrap();
    assert!(p10 < p20 && p20 < p6, "{exported}");
    assert!(
        exported.contains(
            "backends = [\n  { address = \"198.19.0.11\", weight = 7 },\n  { address = \"198.19.0.12\", weight = 100 },\n]"
        ),
        "{exported}"
    );

    // Onto an empty daemon, and back out.
    let second = node().await;
    let file = write(files.path(), "export.toml", &exported);
    let (code, out, err) = lbctl(&["--api", &second.api, "apply", &file]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("applied: 3 created, 0 changed, 0 deleted"),
        "{out}"
    );
    let (code, again, _) = lbctl(&["--api", &second.api, "export"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        again, exported,
        "export -> apply -> export is byte-identical"
    );

    // The JSON form carries the same VIPs.
    let (code, json, _) = lbctl(&["--api", &second.api, "export", "--format", "json"]).await;
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let vips = doc["vip"].as_array().unwrap();
    assert_eq!(vips.len(), 3);
    assert_eq!(vips[1]["address"], "198.18.100.20:0/udp");
    assert_eq!(
        vips[1]["flags"],
        serde_json::json!(["no-sport", "no-conntrack"])
    );
    assert_eq!(vips[2]["backends"][0]["address"], "198.19.0.13");
    assert_eq!(vips[2]["backends"][0]["weight"], 0);
}

#[tokio::test]
async fn exit_statuses_dry_run_and_prune() {
    let mut n = node().await;
    let files = tempfile::tempdir().unwrap();
    let file = write(files.path(), "vips.toml", VARIED);

    // Differences found by a dry run: 2, and nothing changed.
    let before = snapshot(&mut n).await;
    let (code, out, _) = lbctl(&["--api", &n.api, "apply", "--dry-run", &file]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("plan: 3 to create"), "{out}");
    assert!(out.ends_with("dry run: nothing changed\n"), "{out}");
    assert_eq!(snapshot(&mut n).await, before);

    // Applied: 0. In sync afterwards: 0 for a dry run too.
    assert_eq!(lbctl(&["--api", &n.api, "apply", &file]).await.0, 0);
    let (code, out, _) = lbctl(&["--api", &n.api, "apply", "--dry-run", &file]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "in sync: 3 VIPs match the file\n")
    );

    // A flag change and a reweight: one change, applied in place (the
    // VIP keeps its index, kept backends their slots).
    let live = snapshot(&mut n).await.0;
    let changed = VARIED
        .replace("flags = [\"no-sport\"]", "flags = []")
        .replace("weight = 50", "weight = 60");
    let file2 = write(files.path(), "changed.toml", &changed);
    let (code, out, _) = lbctl(&["--api", &n.api, "apply", &file2]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "~ change VIP [fd00:100::10]:443/tcp\n    ~ flags no-sport -> (none) (with the backends, in one step)\n    ~ backend fd00:19::12 weight 50 -> 60\n"
        ),
        "{out}"
    );
    let now = snapshot(&mut n).await.0;
    let (old6, new6) = (&live[2], &now[2]);
    assert!(new6.flags.is_empty());
    assert_eq!(new6.index, old6.index);
    let slots = |v: &pb::VipInfo| v.backends.iter().map(|b| b.slot).collect::<Vec<_>>();
    assert_eq!(slots(new6), slots(old6));

    // A VIP not in the file: left and listed, deleted with --prune.
    let two = changed.replace(
        "address = \"198.18.100.20:0/udp\"",
        "address = \"198.18.100.30:0/udp\"",
    );
    let file3 = write(files.path(), "two.toml", &two);
    let (code, out, _) = lbctl(&["--api", &n.api, "apply", &file3]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("  leave VIP 198.18.100.20:0/udp: not in the file (--prune deletes it)"),
        "{out}"
    );
    assert_eq!(snapshot(&mut n).await.0.len(), 4);
    let (code, out, _) = lbctl(&["--api", &n.api, "apply", "--prune", "--dry-run", &file3]).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("- delete VIP 198.18.100.20:0/udp [no-sport,no-conntrack] (0 backends)"),
        "{out}"
    );
    assert_eq!(
        lbctl(&["--api", &n.api, "apply", "--prune", &file3])
            .await
            .0,
        0
    );
    let (code, out, _) = lbctl(&["--api", &n.api, "apply", "--prune", "--dry-run", &file3]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "in sync: 3 VIPs match the file\n")
    );

    // A full daemon configuration applies too, its node settings skipped.
    let config =
        format!("[dataplane]\ninterface = \"eth0\"\ngateway_mac = \"02:00:00:00:00:01\"\n{two}");
    let file4 = write(files.path(), "lb.toml", &config);
    let (code, out, err) = lbctl(&["--api", &n.api, "apply", "--dry-run", &file4]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("note: skipping [dataplane]"), "{err}");
}

#[tokio::test]
async fn a_bad_file_applies_nothing_and_names_the_line_and_key() {
    let mut n = node().await;
    let files = tempfile::tempdir().unwrap();
    let seed = write(files.path(), "seed.toml", VARIED);
    assert_eq!(lbctl(&["--api", &n.api, "apply", &seed]).await.0, 0);
    let good =
        "[[vip]]\naddress = \"198.18.100.40:80/tcp\"\nbackends = [{ address = \"198.19.0.41\" }]\n";
    let cases = [
        (
            "duplicate VIP",
            format!("{good}{good}"),
            "line 5: key `vip[1].address`: VIP 198.18.100.40:80/tcp is defined twice",
        ),
        (
            "unknown key",
            format!("{good}[[vip]]\naddress = \"198.18.100.41:80/tcp\"\nbackend = []\n"),
            "line 6: key `vip[1].backend`: unknown field `backend`, expected one of `address`, `flags`, `backends`, `health`",
        ),
        (
            "bad backend address",
            format!(
                "{good}[[vip]]\naddress = \"198.18.100.41:80/tcp\"\nbackends = [\n  {{ address = \"198.19.0.300\" }},\n]\n"
            ),
            "line 7: key `vip[1].backends[0].address`: invalid IP address syntax",
        ),
        (
            "bad VIP address",
            format!("{good}[[vip]]\naddress = \"198.18.100:80/tcp\"\n"),
            "line 5: key `vip[1].address`: `198.18.100` is not an IP address",
        ),
    ];
    for (name, text, want) in cases {
        let before = snapshot(&mut n).await;
        let file = write(files.path(), "bad.toml", &text);
        for prune in [false, true] {
            let mut args = vec!["--api", n.api.as_str(), "apply", file.as_str()];
            if prune {
                args.push("--prune");
            }
            let (code, out, err) = lbctl(&args).await;
            assert_eq!(code, 1, "{name}: {out}{err}");
            assert_eq!(out, "", "{name}: no plan is printed");
            assert_eq!(
                err,
                format!("lbctl: {file}: {want}; nothing applied\n"),
                "{name}"
            );
            assert_eq!(snapshot(&mut n).await, before, "{name}: nothing changed");
        }
    }
    // A missing file is an error too.
    let (code, _, err) = lbctl(&["--api", &n.api, "apply", "/nonexistent/vips.toml"]).await;
    assert_eq!(code, 1);
    assert!(
        err.starts_with("lbctl: reading /nonexistent/vips.toml: "),
        "{err}"
    );
    // A malformed apply command line is 1 (2 would read as "differences").
    assert_eq!(lbctl(&["--api", &n.api, "apply"]).await.0, 1);
    assert_eq!(
        lbctl(&["--api", &n.api, "apply", "--dry-runn", &seed])
            .await
            .0,
        1
    );
    // Other commands keep usage status 2; with --api twice they run on
    // each node and report per node (`stats --watch` only takes one).
    assert_eq!(
        lbctl(&["--api", &n.api, "export", "--format", "yaml"])
            .await
            .0,
        2
    );
    let (code, out, err) = lbctl(&["--api", &n.api, "--api", &n.api, "export"]).await;
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out.matches(&format!("node {}: ok\n", n.api)).count(),
        2,
        "{out}"
    );
    assert!(out.ends_with("nodes: 2: 2 ok, 0 failed\n"), "{out}");
    let (code, _, err) = lbctl(&["--api", &n.api, "--api", &n.api, "stats", "--watch", "1"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("works on one node only"), "{err}");
}

#[tokio::test]
async fn a_refused_step_stops_that_node_and_says_how_far_it_got() {
    let mut n = node().await;
    let files = tempfile::tempdir().unwrap();
    // Five VIPs for a daemon with room for four: the fifth creation fails
    // with the daemon's RESOURCE_EXHAUSTED; the four before it stay.
    let text: String = (1..=5)
        .map(|i| format!("[[vip]]\naddress = \"198.18.100.{i}:80/tcp\"\n"))
        .collect();
    let file = write(files.path(), "five.toml", &text);
    let (code, _, err) = lbctl(&["--api", &n.api, "apply", &file]).await;
    assert_eq!(code, 1);
    assert!(
        err.starts_with("lbctl: creating VIP 198.18.100.5:80/tcp: RESOURCE_EXHAUSTED: "),
        "{err}"
    );
    assert!(
        err.contains("; 4 of 5 steps were applied before it, the rest not attempted"),
        "{err}"
    );
    assert_eq!(snapshot(&mut n).await.0.len(), 4);
}

#[tokio::test]
async fn several_nodes_each_reported_and_one_failing_does_not_stop_the_others() {
    let (mut a, mut b) = (node().await, node().await);
    let files = tempfile::tempdir().unwrap();
    let file = write(files.path(), "vips.toml", VARIED);
    let dead = "unix:///nonexistent/lb.sock";
    let args = [
        "--api", &a.api, "--api", dead, "--api", &b.api, "apply", &file,
    ];
    let (code, out, err) = lbctl(&args).await;
    assert_eq!(code, 1, "some node failed: {out}{err}");
    assert_eq!(
        err,
        format!("lbctl: {dead}: is lb-daemon running? no socket at /nonexistent/lb.sock\n")
    );
    assert!(out.starts_with(&format!("node {}:\n", a.api)), "{out}");
    assert!(
        out.contains(&format!("node {dead}:\nnode {}:\n", b.api)),
        "{out}"
    );
    assert!(
        out.ends_with("nodes: 3: 0 in sync, 2 changed, 1 failed\n"),
        "{out}"
    );
    let (va, vb) = (snapshot(&mut a).await.0, snapshot(&mut b).await.0);
    assert_eq!(va.len(), 3);
    assert_eq!(va, vb, "both live nodes got the file");

    // All in sync: 0; a dry run where one node drifted: 2.
    let both = [
        "--api",
        &a.api,
        "--api",
        &b.api,
        "apply",
        "--dry-run",
        &file,
    ];
    let (code, out, _) = lbctl(&both).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.ends_with("nodes: 2: 2 in sync, 0 differ, 0 failed\n"),
        "{out}"
    );
    b.client
        .delete_vip(pb::DeleteVipRequest {
            vip: va[0].vip.clone(),
        })
        .await
        .unwrap();
    let (code, out, _) = lbctl(&both).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.ends_with("nodes: 2: 1 in sync, 1 differ, 0 failed\n"),
        "{out}"
    );
}

#[tokio::test]
async fn tls_options_apply_to_every_node() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let (mut a, mut b) = (
        node_on(Some(pki.path())).await,
        node_on(Some(pki.path())).await,
    );
    let files = tempfile::tempdir().unwrap();
    let file = write(files.path(), "vips.toml", VARIED);
    let path = |f: &str| pki.path().join(f).display().to_string();
    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client.key"));
    let (api_a, api_b) = (a.api.clone(), b.api.clone());
    let nodes = ["--api", api_a.as_str(), "--api", api_b.as_str()];

    // Without the client certificate both mutual-TLS nodes refuse, each
    // reported, nothing applied.
    let mut args = nodes.to_vec();
    args.extend(["--ca", &ca, "apply", &file]);
    let (code, out, err) = lbctl(&args).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
    for (line, api) in err.lines().zip([&api_a, &api_b]) {
        assert!(line.starts_with(&format!("lbctl: {api}: ")), "{line}");
        assert!(line.ends_with("give --cert and --key)"), "{line}");
    }
    assert!(
        out.ends_with("nodes: 2: 0 in sync, 0 changed, 2 failed\n"),
        "{out}"
    );
    assert!(snapshot(&mut a).await.0.is_empty() && snapshot(&mut b).await.0.is_empty());

    // With it, one set of TLS options serves both.
    let mut args = nodes.to_vec();
    args.extend(["--ca", &ca, "--cert", &cert, "--key", &key, "apply", &file]);
    let (code, out, err) = lbctl(&args).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.ends_with("nodes: 2: 0 in sync, 2 changed, 0 failed\n"),
        "{out}"
    );
    assert_eq!(snapshot(&mut a).await.0.len(), 3);
    assert_eq!(snapshot(&mut a).await.0, snapshot(&mut b).await.0);
}

/// One VIP's backends as a reader sees them: (address, weight) and flags.
type Seen = (BTreeSet<(String, u32)>, Vec<i32>);

fn seen(v: &pb::VipInfo) -> Seen {
    (
        v.backends
            .iter()
            .map(|b| (b.address.clone(), b.weight))
            .collect(),
        v.flags.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_reader_never_sees_a_vip_half_changed() {
    const ROUNDS: usize = 100;
    let n = node().await;
    let files = tempfile::tempdir().unwrap();
    // Two versions of one VIP that differ in every way apply can change
    // it: backends added and removed, weights, a drain, and the flags.
    let old = "[[vip]]\naddress = \"198.18.100.10:80/tcp\"\nbackends = [\n\
               { address = \"198.19.0.11\" }, { address = \"198.19.0.12\", weight = 50 },\n\
               { address = \"198.19.0.13\" }, { address = \"198.19.0.14\", weight = 0 },\n]\n";
    let new = "[[vip]]\naddress = \"198.18.100.10:80/tcp\"\nflags = [\"no-sport\"]\nbackends = [\n\
               { address = \"198.19.0.12\", weight = 20 }, { address = \"198.19.0.14\", weight = 30 },\n\
               { address = \"198.19.0.15\" }, { address = \"198.19.0.16\" }, { address = \"198.19.0.13\", weight = 0 },\n]\n";
    let old_file = write(files.path(), "old.toml", old);
    let new_file = write(files.path(), "new.toml", new);
    assert_eq!(lbctl(&["--api", &n.api, "apply", &old_file]).await.0, 0);
    let first = n
        .client
        .clone()
        .list_vips(pb::ListVipsRequest {})
        .await
        .unwrap()
        .into_inner()
        .vips;
    let old_seen = seen(&first[0]);
    let vip = first[0].vip.clone();

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (mut c, done, vip) = (n.client.clone(), done.clone(), vip.clone());
        tokio::spawn(async move {
            let mut views = Vec::new();
            let mut i = 0u64;
            while !done.load(Ordering::Relaxed) {
                // Both ways of reading a VIP, in turn.
                let v = if i.is_multiple_of(2) {
                    c.get_vip(pb::GetVipRequest { vip: vip.clone() })
                        .await
                        .unwrap()
                        .into_inner()
                        .vip
                        .unwrap()
                } else {
                    c.list_vips(pb::ListVipsRequest {})
                        .await
                        .unwrap()
                        .into_inner()
                        .vips
                        .remove(0)
                };
                views.push(seen(&v));
                i += 1;
            }
            views
        })
    };
    for _ in 0..ROUNDS {
        for f in [&new_file, &old_file] {
            let (code, out, err) = lbctl(&["--api", &n.api, "apply", f]).await;
            assert_eq!(code, 0, "{out}{err}");
        }
    }
    done.store(true, Ordering::Relaxed);
    let views = reader.await.unwrap();
    let last = n
        .client
        .clone()
        .list_vips(pb::ListVipsRequest {})
        .await
        .unwrap()
        .into_inner()
        .vips;
    let mut c = n.client.clone();
    c.replace_backends(pb::ReplaceBackendsRequest {
        vip,
        backends: vec![],
        flags: None,
    })
    .await
    .unwrap();
    // The new version, as the daemon reports it, from a fresh apply.
    assert_eq!(lbctl(&["--api", &n.api, "apply", &new_file]).await.0, 0);
    let new_seen = seen(
        &c.list_vips(pb::ListVipsRequest {})
            .await
            .unwrap()
            .into_inner()
            .vips[0],
    );
    assert_ne!(old_seen, new_seen);
    assert_eq!(seen(&last[0]), old_seen, "the last apply was the old file");

    let (mut n_old, mut n_new) = (0, 0);
    for v in &views {
        if *v == old_seen {
            n_old += 1;
        } else if *v == new_seen {
            n_new += 1;
        } else {
            panic!("a reader saw a VIP half changed: {v:?}\nold {old_seen:?}\nnew {new_seen:?}");
        }
    }
    // Not vacuous: the reader ran throughout and saw both versions.
    assert!(n_old > 0 && n_new > 0, "old {n_old}, new {n_new}");
    eprintln!(
        "{} reads over {} applies: {n_old} old, {n_new} new",
        views.len(),
        2 * ROUNDS
    );
}
