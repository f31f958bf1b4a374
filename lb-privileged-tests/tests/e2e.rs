//! End-to-end: the deploy/lab topology (client, router, LB, backends in
//! network namespaces), a real `lb-daemon run` on the LB host, real TCP and
//! UDP traffic from the client through the VIPs, backends answering the
//! client directly. Every assertion is on what the client, the servers or
//! the wire saw, checked against the daemon's own view where that helps.
//!
//! One lab at a time (see `lb_privileged_tests::lab`): each test brings its own up with a
//! unique prefix and takes it down on drop, also after a failure.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use lb_privileged_tests::{lab::*, require_root};
use lb_proto::v1 as pb;
use serde_json::Value;

const VIP4: &str = "198.18.100.10";
const VIP6: &str = "fd00:100::10";
/// The LB host's own addresses (not VIPs).
const LB_HOST4: &str = "198.18.2.2";
const LB_HOST6: &str = "fd00:2::2";

/// A gap between two lines of a stream (50 ms cadence) that counts as a stall.
const MAX_GAP_MS: f64 = 1000.0;

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Requests per backend name ("backend-1": k, ...).
fn by_backend(r: &Value) -> BTreeMap<String, u64> {
    r["by_backend"]
        .as_object()
        .expect("by_backend")
        .iter()
        .map(|(k, v)| (k.clone(), n(v)))
        .collect()
}

/// "backend-i" for the lab's backend address 198.19.0.(10+i) / fd00:19::(10+i).
fn backend_name(addr: &str) -> String {
    let last = addr.rsplit(['.', ':']).next().unwrap();
    let i: u32 = last.parse::<u32>().unwrap() - 10;
    format!("backend-{i}")
}

/// Asserts a traffic.py http/udp report: every request answered, `min_backends`
/// or more distinct backends answered.
#[track_caller]
fn assert_all_ok(what: &str, r: &Value, count: u64, min_backends: usize) {
    assert_eq!(
        (n(&r["ok"]), n(&r["failed"])),
        (count, 0),
        "{what}: every request answered: {r}"
    );
    let by = by_backend(r);
    assert!(
        by.len() >= min_backends,
        "{what}: at least {min_backends} backends answered: {by:?}"
    );
}

/// The streams of a report, each with a backend name.
fn streams(r: &Value) -> Vec<&Value> {
    r["streams"].as_array().expect("streams").iter().collect()
}

/// Asserts one stream ran to the end: connected, lines in sequence from one
/// backend, no reset, no early EOF, no gap of a second or more.
#[track_caller]
fn assert_stream_ran(what: &str, s: &Value) {
    assert!(
        s["ok"].as_bool() == Some(true)
            && n(&s["resets"]) == 0
            && s["eof"].as_bool() == Some(false)
            && s["error"].is_null(),
        "{what}: stream ran to completion without reset: {s}"
    );
    let gap = s["max_gap_ms"].as_f64().expect("max_gap_ms");
    assert!(gap < MAX_GAP_MS, "{what}: no gap >= 1 s ({gap} ms): {s}");
}

/// Seconds of lines a stream received (50 ms cadence): proves it kept
/// running after a disruptive step taken `after` seconds into the run.
#[track_caller]
fn assert_lines_after(what: &str, s: &Value, after: f64, seconds: f64) {
    let lines = n(&s["lines"]) as f64;
    let expect_after = (seconds - after) / 0.05;
    assert!(
        lines >= after / 0.05 + 0.5 * expect_after,
        "{what}: stream kept receiving after the change ({lines} lines): {s}"
    );
}

fn lab_with(vips: &[(&str, &[&str])]) -> Lab {
    lab_opts(3, 1600, vips)
}

fn lab_opts(backends: u32, mtu: u32, vips: &[(&str, &[&str])]) -> Lab {
    Lab::up(LabOpts {
        backends,
        mtu,
        vips: vips.iter().map(|(a, b)| vip_toml(a, b)).collect(),
        ..LabOpts::default()
    })
}

// ---------------------------------------------------------------- 1

#[test]
fn http_spreads_over_three_backends_and_replies_bypass_the_lb() {
    require_root();
    let lab = lab_with(&[("198.18.100.10:80/tcp", &B4)]);
    let lb_if = lab.lb_if();
    // Everything sent from a VIP address that shows up on the LB's link,
    // plus ICMP as a positive control that the capture works.
    let cap = lab.capture("lb", &lb_if, "src net 198.18.100.0/24 or icmp");
    // The same filter where the replies do arrive: proves the capture and
    // the parsing below would see them.
    let cap_client = lab.capture(
        "client",
        lab.var("LAB_CLIENT_IF"),
        "src net 198.18.100.0/24",
    );
    let r = lab.traffic(&["http", "--vip", VIP4, "--count", "300", "--parallel", "4"]);
    assert!(lab.ping(LB_HOST4, 2), "client pings the LB host");
    std::thread::sleep(Duration::from_millis(200));
    let lines = cap.stop();
    let client_lines = cap_client.stop();

    assert_all_ok("300 requests to the VIP", &r, 300, 3);
    let by = by_backend(&r);
    for (b, k) in &by {
        assert!(
            (60..=141).contains(k),
            "{b} served {k} of 300 (want 20-47%): {by:?}"
        );
    }

    // Direct server return: no packet from a VIP crossed the LB's link.
    let src = |l: &String| l.split_whitespace().nth(2).unwrap_or("").to_string();
    let from_vip: Vec<_> = lines
        .iter()
        .filter(|l| src(l).starts_with("198.18.100."))
        .collect();
    assert!(
        from_vip.is_empty(),
        "{} packets from a VIP on the LB's interface (replies must bypass it), e.g. {:?}",
        from_vip.len(),
        from_vip.first()
    );
    let at_client = client_lines
        .iter()
        .filter(|l| src(l).starts_with("198.18.100.10."))
        .count();
    assert!(
        at_client >= 2 * 300,
        "the client's capture saw the replies from the VIP ({at_client} packets)"
    );
    let control = lines
        .iter()
        .filter(|l| l.contains("198.18.1.2 > 198.18.2.2: ICMP echo request"))
        .count();
    assert!(
        control >= 2,
        "the capture saw the control pings ({control}): {lines:?}"
    );

    // The LB's counters: only client-to-VIP packets, all for this VIP, and
    // per backend in line with what the client saw.
    let s = lab.stats();
    let fwd = counter(&s, "forwarded");
    let v = vip_stats(&s, VIP4, 80);
    assert!(
        fwd >= 4 * 300,
        "forwarded {fwd}: at least SYN, ACK, request, FIN per request"
    );
    assert_eq!(
        v.packets, fwd,
        "every forwarded packet belongs to the only VIP"
    );
    assert_eq!(
        v.backends.iter().map(|b| b.packets).sum::<u64>(),
        v.packets,
        "per-backend packets add up to the VIP's"
    );
    assert!(
        counter(&s, "new_flow") >= 300,
        "300 distinct flows: {:?}",
        s.counters
    );
    for b in &v.backends {
        let served = by.get(&backend_name(&b.address)).copied().unwrap_or(0);
        assert!(
            b.packets >= 4 * served,
            "{}: {} packets for {served} requests",
            b.address,
            b.packets
        );
    }
    eprintln!(
        "e2e http: {:?} in {:.1} s",
        by,
        lab.started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------- 2

#[test]
fn udp_and_every_address_family_combination() {
    require_root();
    let lab = lab_with(&[
        ("198.18.100.10:5353/udp", &B4),
        ("[fd00:100::10]:5353/udp", &B6),
        ("[fd00:100::10]:80/tcp", &B6),
        ("198.18.100.11:80/tcp", &B6),
        ("[fd00:100::11]:80/tcp", &B4),
    ]);
    // (what, traffic.py kind, VIP, port, decap counter that must rise on
    // the backends: inner family in outer family)
    let cases = [
        ("UDP via IPv4 VIP", "udp", VIP4, 5353, "v4_in_v4"),
        ("UDP via IPv6 VIP", "udp", VIP6, 5353, "v6_in_v6"),
        ("IPv6 VIP -> IPv6 backends", "http", VIP6, 80, "v6_in_v6"),
        (
            "IPv4 VIP -> IPv6 backends",
            "http",
            "198.18.100.11",
            80,
            "v4_in_v6",
        ),
        (
            "IPv6 VIP -> IPv4 backends",
            "http",
            "fd00:100::11",
            80,
            "v6_in_v4",
        ),
    ];
    const COUNT: u64 = 60;
    let decap_all = |lab: &Lab| -> BTreeMap<String, u64> {
        let mut sum = BTreeMap::new();
        for i in 1..=3 {
            for (k, v) in lab.decap_stats(i) {
                *sum.entry(k).or_default() += v;
            }
        }
        sum
    };
    for (what, kind, vip, port, decap_kind) in cases {
        let before = decap_all(&lab);
        let vip_before = vip_stats(&lab.stats(), vip, port).packets;
        let r = lab.traffic(&[
            kind,
            "--vip",
            vip,
            "--port",
            &port.to_string(),
            "--count",
            &COUNT.to_string(),
        ]);
        assert_all_ok(what, &r, COUNT, 3);
        // The backends really received it encapsulated in the expected
        // family, and only that way.
        let after = decap_all(&lab);
        let vip_after = vip_stats(&lab.stats(), vip, port).packets;
        let delta: BTreeMap<&str, u64> = after
            .iter()
            .map(|(k, v)| (k.as_str(), v - before.get(k).copied().unwrap_or(0)))
            .collect();
        let per_request = if kind == "udp" { 1 } else { 4 };
        assert!(
            delta[decap_kind] >= per_request * COUNT,
            "{what}: backends decapsulated {decap_kind}: {delta:?}"
        );
        for k in ["v4_in_v4", "v4_in_v6", "v6_in_v4", "v6_in_v6"] {
            if k != decap_kind {
                assert_eq!(delta[k], 0, "{what}: nothing arrived as {k}: {delta:?}");
            }
        }
        assert!(
            vip_after - vip_before >= per_request * COUNT,
            "{what}: the LB forwarded it ({} packets)",
            vip_after - vip_before
        );
    }
    eprintln!("e2e families: {:.1} s", lab.started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------- 3

const STREAM_VIP: &str = "198.18.100.10:9000/tcp";

fn vip9000() -> Option<pb::Vip> {
    pvip(VIP4, 9000, pb::Protocol::Tcp)
}

/// 100 new connections to the stream VIP (1 s each): their backends.
fn new_connections(lab: &Lab, what: &str) -> BTreeMap<String, u64> {
    let r = lab.traffic(&[
        "streams",
        "--vip",
        VIP4,
        "--port",
        "9000",
        "--count",
        "100",
        "--seconds",
        "1",
    ]);
    assert_eq!(
        (n(&r["ok"]), n(&r["failed"])),
        (100, 0),
        "{what}: 100 new connections all served: {}",
        r["errors"]
    );
    by_backend(&r)
}

#[test]
fn removing_a_backend_leaves_streams_on_the_others_running() {
    require_root();
    // A fourth host, not in the VIP yet, is added right after the removal.
    // Maglev's minimal disruption means removing backend 2 alone moves only
    // ~0.07% of the other backends' ring positions, so a data plane that
    // ignored its connection table would pass unnoticed; with backend 4 added
    // ~25% of them move (about 8 of the ~33 surviving streams), and only the
    // connection table keeps those streams where they are.
    let lab = lab_opts(4, 1600, &[(STREAM_VIP, &B4)]);
    const SECONDS: f64 = 5.0;
    let mut bg = lab.streams_bg(VIP4, 9000, 50, SECONDS);
    bg.wait_ready();
    let changed_at = bg.elapsed();
    let removed = "198.19.0.12";
    let mut c = lab.client();
    lab.block_on(c.remove_backend(pb::RemoveBackendRequest {
        vip: vip9000(),
        address: removed.into(),
    }))
    .expect("RemoveBackend");
    lab.block_on(c.add_backend(pb::AddBackendRequest {
        vip: vip9000(),
        backend: Some(pb::Backend {
            address: "198.19.0.14".into(),
            weight: None,
        }),
    }))
    .expect("AddBackend");
    let changed_at = (changed_at + bg.elapsed()) / 2.0;
    let r = bg.join();

    let all = streams(&r);
    assert_eq!(all.len(), 50);
    let gone = backend_name(removed);
    let on_removed: Vec<_> = all
        .iter()
        .filter(|s| s["backend"].as_str() == Some(gone.as_str()))
        .collect();
    let survivors: Vec<_> = all
        .iter()
        .filter(|s| s["backend"].as_str() != Some(gone.as_str()))
        .collect();
    assert!(
        !on_removed.is_empty() && survivors.len() >= 20,
        "streams on every backend before the removal: {}",
        r["by_backend"]
    );
    for s in &survivors {
        assert_stream_ran("stream on a remaining backend", s);
        assert_lines_after("stream on a remaining backend", s, changed_at, SECONDS);
    }
    // RemoveBackend re-hashes the removed backend's flows (drain first to
    // keep them): the next ACK reaches another server, which resets it.
    for s in &on_removed {
        assert!(
            s["ok"].as_bool() == Some(false),
            "stream on the removed backend was cut over: {s}"
        );
    }
    // The ring alone now sends some surviving streams elsewhere: they kept
    // their backend only through the connection table.
    let mut moved = 0;
    for s in &survivors {
        let sport = n(&s["sport"]) as u32;
        let route = lab
            .block_on(c.route(pb::RouteRequest {
                vip: vip9000(),
                client_address: CLIENT_V4.into(),
                client_port: sport,
                destination_port: 0,
                ..Default::default()
            }))
            .expect("Route")
            .into_inner();
        let now = backend_name(&route.backend.unwrap().address);
        if Some(now.as_str()) != s["backend"].as_str() {
            moved += 1;
        }
    }
    assert!(
        moved > 0,
        "the ring change must move some running streams' hash positions, \
         else this run proves nothing about the connection table"
    );

    let by = new_connections(&lab, "after the removal");
    assert!(
        !by.contains_key(&gone),
        "no new connection reaches the removed backend: {by:?}"
    );
    assert!(
        by.contains_key("backend-4"),
        "the added backend takes new connections: {by:?}"
    );
    eprintln!(
        "e2e remove: {} survivors ({moved} kept only by the conn table), {} cut; new {by:?}; {:.1} s",
        survivors.len(),
        on_removed.len(),
        lab.started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------- 4

#[test]
fn draining_a_backend_keeps_its_streams_and_moves_new_connections() {
    require_root();
    let lab = lab_with(&[(STREAM_VIP, &B4)]);
    const SECONDS: f64 = 4.0;
    let mut bg = lab.streams_bg(VIP4, 9000, 50, SECONDS);
    bg.wait_ready();
    let changed_at = bg.elapsed();
    let drained = "198.19.0.12";
    let mut c = lab.client();
    let b = lab
        .block_on(c.set_backend_weight(pb::SetBackendWeightRequest {
            vip: vip9000(),
            address: drained.into(),
            weight: 0,
        }))
        .expect("SetBackendWeight 0")
        .into_inner()
        .backend
        .unwrap();
    assert_eq!(b.state, pb::BackendState::Draining as i32);
    let slot_packets = |lab: &Lab| {
        vip_stats(&lab.stats(), VIP4, 9000)
            .backends
            .iter()
            .find(|b| b.address == drained)
            .map(|b| b.packets)
            .expect("drained backend still listed")
    };
    let at_drain = slot_packets(&lab);
    let r = bg.join();

    let name = backend_name(drained);
    let mut on_drained = 0;
    for s in streams(&r) {
        assert_stream_ran("stream", s);
        assert_lines_after("stream", s, changed_at, SECONDS);
        if s["backend"].as_str() == Some(name.as_str()) {
            on_drained += 1;
        }
    }
    assert!(
        on_drained > 0,
        "some streams were on the drained backend: {}",
        r["by_backend"]
    );
    assert!(
        slot_packets(&lab) > at_drain,
        "the LB kept forwarding the drained backend's flows"
    );
    let by = new_connections(&lab, "after the drain");
    assert!(
        !by.contains_key(&name),
        "no new connection reaches the drained backend: {by:?}"
    );
    assert_eq!(by.len(), 2, "the other two take them: {by:?}");
    eprintln!(
        "e2e drain: {on_drained} streams on the drained backend ran to the end; new {by:?}; {:.1} s",
        lab.started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------- 4b

/// Issue #11: an established flow of a draining backend that reaches a node
/// with no entry for it (another LB node after ECMP moved it, a restart
/// that lost the table) must still reach its backend. 50 streams, a backend
/// drained, then the connection table emptied under them: the streams of
/// the drained backend miss, the pre-drain fallback sends them back to it
/// (`conn_drain_fallback`), none is reset; new connections still avoid it.
#[test]
fn draining_then_losing_the_connection_table_resets_no_stream() {
    require_root();
    let lab = lab_with(&[(STREAM_VIP, &B4)]);
    const SECONDS: f64 = 5.0;
    let mut bg = lab.streams_bg(VIP4, 9000, 50, SECONDS);
    bg.wait_ready();
    let drained = "198.19.0.12";
    let mut c = lab.client();
    lab.block_on(c.set_backend_weight(pb::SetBackendWeightRequest {
        vip: vip9000(),
        address: drained.into(),
        weight: 0,
    }))
    .expect("SetBackendWeight 0");
    std::thread::sleep(Duration::from_millis(500));
    let before = lab.stats();
    let cleared_at = bg.elapsed();
    let removed = lab.clear_conn_table();
    assert!(removed >= 50, "the streams' entries were there: {removed}");
    let r = bg.join();
    let after = lab.stats();

    let name = backend_name(drained);
    let mut on_drained = 0;
    for s in streams(&r) {
        // No reset, lines in sequence from one backend to the end: the
        // drained backend's streams stayed on it.
        assert_stream_ran("stream", s);
        assert_lines_after("stream", s, cleared_at, SECONDS);
        if s["backend"].as_str() == Some(name.as_str()) {
            on_drained += 1;
        }
    }
    assert!(
        on_drained > 0,
        "streams on the drained backend: {}",
        r["by_backend"]
    );
    let fallback = counter(&after, "conn_drain_fallback") - counter(&before, "conn_drain_fallback");
    assert!(
        fallback >= on_drained as u64,
        "each drained stream missed and fell back: {fallback} for {on_drained}"
    );
    let by = new_connections(&lab, "after the table was emptied");
    assert!(
        !by.contains_key(&name),
        "no new connection reaches the drained backend: {by:?}"
    );
    eprintln!(
        "e2e drain + empty table: {removed} entries removed; {on_drained} streams of the drained \
         backend, 0 reset, conn_drain_fallback {fallback}; new connections {by:?}"
    );
}

// ---------------------------------------------------------------- 5

#[test]
fn sigkill_of_the_daemon_disturbs_no_stream_and_restart_adopts() {
    require_root();
    let mut lab = lab_with(&[
        ("198.18.100.10:80/tcp", &B4),
        (STREAM_VIP, &B4),
        ("[fd00:100::10]:80/tcp", &B6),
    ]);
    // Some state changed over the API, so "as before" is more than the config.
    let mut c = lab.client();
    lab.block_on(c.set_backend_weight(pb::SetBackendWeightRequest {
        vip: pvip(VIP4, 80, pb::Protocol::Tcp),
        address: "198.19.0.13".into(),
        weight: 250,
    }))
    .expect("SetBackendWeight");
    drop(c);
    let vips_before = lab.list_vips();
    let status_before = lab.status();
    assert!(!status_before.adopted, "first start loads the data plane");

    const SECONDS: f64 = 6.0;
    let mut bg = lab.streams_bg(VIP4, 9000, 50, SECONDS);
    bg.wait_ready();
    let killed = Instant::now();
    lab.kill_daemon();
    assert!(!lab.daemon_running());

    // Nobody owns the data plane now; it keeps forwarding new connections.
    let r = lab.traffic(&["http", "--vip", VIP4, "--count", "60", "--parallel", "4"]);
    assert_all_ok("new connections while the daemon is dead", &r, 60, 3);
    let r6 = lab.traffic(&["http", "--vip", VIP6, "--count", "20", "--parallel", "4"]);
    assert_all_ok("IPv6 while the daemon is dead", &r6, 20, 2);
    if let Some(rest) = Duration::from_millis(1500).checked_sub(killed.elapsed()) {
        std::thread::sleep(rest);
    }
    let outage = killed.elapsed();
    let restart_at = bg.elapsed();
    lab.start_daemon();
    let status = lab.status();
    let vips = lab.list_vips();
    assert!(status.adopted, "restart adopts the pinned data plane");
    assert_eq!(
        status.program_id, status_before.program_id,
        "same program, not reloaded"
    );
    assert_eq!(
        vips, vips_before,
        "ListVips after the restart equals before"
    );
    assert!(
        bg.elapsed() < SECONDS - 1.0,
        "the restart left the streams at least a second to run ({:.1} s of {SECONDS})",
        bg.elapsed()
    );
    let r2 = lab.traffic(&["http", "--vip", VIP4, "--count", "30", "--parallel", "4"]);
    assert_all_ok("new connections after the restart", &r2, 30, 2);

    let s = bg.join();
    for st in streams(&s) {
        assert_stream_ran("stream across SIGKILL and restart", st);
        assert_lines_after("stream across SIGKILL and restart", st, restart_at, SECONDS);
    }
    eprintln!(
        "e2e sigkill: 50 streams ok across a {:.1} s outage, max gap {} ms; {:.1} s",
        outage.as_secs_f64(),
        s["max_gap_ms"],
        lab.started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------- 6

#[test]
fn lb_host_stays_reachable_and_vips_answer_ping() {
    require_root();
    let lab = lab_with(&[
        ("198.18.100.10:80/tcp", &B4),
        ("[fd00:100::10]:80/tcp", &B6),
    ]);
    let st = lab.status();
    assert_ne!(
        st.attach_mode,
        pb::AttachMode::Unspecified as i32,
        "XDP attached"
    );
    let link = lab.exec("lb", &["ip", "-details", "link", "show", &lab.lb_if()]);
    assert!(link.contains("prog/xdp"), "XDP on {}: {link}", lab.lb_if());

    // A service of the LB host itself, on its own address.
    let pidfile = lab.tmp.path().join("lbhost.pid");
    let server = format!("{LAB_DIR}/servers.py");
    let mut srv = lab
        .cmd(
            "lb",
            &[
                PYTHON,
                &server,
                "http",
                "--name",
                "lb-host",
                "--port",
                "8080",
                "--pidfile",
                pidfile.to_str().unwrap(),
                "--lab",
                &lab.prefix,
            ],
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the LB host's server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pidfile.exists() {
        assert!(Instant::now() < deadline, "LB host server did not start");
        assert!(srv.try_wait().unwrap().is_none(), "LB host server died");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = lab.stats();
    for host in [LB_HOST4, LB_HOST6] {
        assert!(lab.ping(host, 3), "client pings the LB host at {host}");
        let r = lab.traffic(&["http", "--vip", host, "--port", "8080", "--count", "20"]);
        assert_all_ok(&format!("TCP to the LB host at {host}"), &r, 20, 1);
        assert_eq!(by_backend(&r).get("lb-host"), Some(&20), "{r}");
    }
    for vip in [VIP4, VIP6] {
        assert!(lab.ping(vip, 3), "ping to the VIP {vip} is answered");
    }
    // The VIP still forwards in the same breath: XDP was live all along.
    let r = lab.traffic(&["http", "--vip", VIP4, "--count", "20"]);
    assert_all_ok("VIP", &r, 20, 2);
    let after = lab.stats();
    let d = |k: &str| counter(&after, k) - counter(&before, k);
    assert!(
        d("pass") >= 2 * (3 + 20 * 4),
        "the LB host's packets were passed: {}",
        d("pass")
    );
    assert!(
        d("icmp_echo_reply") >= 6,
        "the program answered the VIP pings: {}",
        d("icmp_echo_reply")
    );
    let _ = srv.kill();
    let _ = srv.wait();
    eprintln!(
        "e2e host traffic: {:.1} s",
        lab.started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------- 7

#[test]
fn too_big_packets_lower_the_clients_path_mtu() {
    require_root();
    let lab = lab_opts(
        3,
        1500,
        &[
            ("198.18.100.10:80/tcp", &B4),
            ("[fd00:100::10]:80/tcp", &B6),
            ("198.18.100.11:80/tcp", &B6),
        ],
    );
    let route = |vip: &str| {
        let fam = if vip.contains(':') { "-6" } else { "-4" };
        lab.exec("client", &["ip", fam, "route", "get", vip])
    };
    // (VIP, path MTU the client must learn: 1500 minus the outer header)
    let cases = [(VIP4, "1480"), (VIP6, "1460"), ("198.18.100.11", "1460")];
    for (vip, _) in cases {
        let r = route(vip);
        assert!(
            !r.contains(" mtu "),
            "no cached path MTU before the test: {r}"
        );
    }
    let before = counter(&lab.stats(), "icmp_too_big_sent");
    for (vip, mtu) in cases {
        let r = lab.traffic(&["http", "--vip", vip, "--count", "2", "--upload", "2000000"]);
        assert_all_ok(&format!("2 MB uploads via {vip}"), &r, 2, 1);
        let rt = route(vip);
        assert!(
            rt.contains(&format!(" mtu {mtu} ")) || rt.trim_end().ends_with(&format!(" mtu {mtu}")),
            "client learned path MTU {mtu} for {vip}: {rt}"
        );
    }
    let sent = counter(&lab.stats(), "icmp_too_big_sent") - before;
    assert!(sent >= 3, "the LB sent ICMP too-big ({sent})");
    eprintln!(
        "e2e pmtu: {sent} too-big sent; {:.1} s",
        lab.started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------- 8

/// The cached path MTU of `dst` on lab host `host` (`ip route get`), if any.
fn cached_mtu(lab: &Lab, host: &str, dst: &str) -> Option<u32> {
    let fam = if dst.contains(':') { "-6" } else { "-4" };
    let r = lab.exec(host, &["ip", fam, "route", "get", dst]);
    let words: Vec<&str> = r.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == "mtu")
        .map(|w| w[1].parse().expect("mtu value"))
}

/// Path MTU discovery with direct server return: a link on the way back
/// to the client is smaller than the backends' (1280 on the router's client
/// port), so the router answers the backend's full-size replies with
/// "fragmentation needed" / "packet too big", addressed to the VIP, which
/// routes to the LB. With `forward_icmp_errors` off the LB host's kernel
/// gets them and can do nothing: the download stalls (a PMTU black hole).
/// On, `lb_xdp` encapsulates them to the backend, whose kernel lowers its
/// path MTU for the client, and the download completes.
#[test]
fn icmp_errors_reach_the_backend_so_downloads_cross_a_smaller_link() {
    require_root();
    let mut lab = Lab::up(LabOpts {
        backends: 1,
        dataplane_extra: "forward_icmp_errors = false\n".into(),
        vips: [
            vip_toml("198.18.100.10:80/tcp", &B4[..1]),
            vip_toml("[fd00:100::10]:80/tcp", &B6[..1]),
        ]
        .concat(),
        ..LabOpts::default()
    });
    let r_cli = format!("{}r-cli", lab.prefix);
    lab.exec("router", &["ip", "link", "set", &r_cli, "mtu", "1280"]);
    const CLIENT_V6: &str = "fd00:1::2";
    let download = |lab: &Lab, vip: &str| {
        lab.traffic(&[
            "http",
            "--vip",
            vip,
            "--count",
            "1",
            "--path",
            "/bytes/300000",
            "--timeout",
            "4",
        ])
    };

    // Off: the errors reach the LB and go to its kernel; the transfer stalls.
    let cap = lab.capture(
        "lb",
        &lab.lb_if(),
        "(icmp and icmp[0] == 3 and icmp[1] == 4) or (icmp6 and ip6[40] == 2)",
    );
    for (vip, client) in [(VIP4, CLIENT_V4), (VIP6, CLIENT_V6)] {
        let r = download(&lab, vip);
        assert_eq!(
            (
                n(&r["ok"]),
                n(&r["failed"]),
                r["errors"]["timeout"].as_u64()
            ),
            (0, 1, Some(1)),
            "without ICMP forwarding the download via {vip} stalls: {r}"
        );
        assert_eq!(
            cached_mtu(&lab, "b1", client),
            None,
            "the backend never heard of the smaller link"
        );
    }
    let seen = cap.stop().join("\n");
    assert!(
        seen.contains("need to frag (mtu 1280)") && seen.contains("packet too big, mtu 1280"),
        "the router's errors reached the LB: {seen}"
    );
    let off = lab.stats();
    assert_eq!(counter(&off, "icmp_error_forwarded"), 0);

    // On (the same data plane, the daemon restarted with the switch on).
    let text = std::fs::read_to_string(&lab.config).unwrap();
    std::fs::write(
        &lab.config,
        text.replace("forward_icmp_errors = false", "forward_icmp_errors = true"),
    )
    .unwrap();
    lab.kill_daemon();
    lab.start_daemon();
    let t0 = Instant::now();
    for (vip, client) in [(VIP4, CLIENT_V4), (VIP6, CLIENT_V6)] {
        let r = download(&lab, vip);
        assert_all_ok(&format!("300 kB download via {vip}"), &r, 1, 1);
        assert_eq!(
            cached_mtu(&lab, "b1", client),
            Some(1280),
            "the backend learned the path MTU to {client}"
        );
    }
    let on = lab.stats();
    let fwd = counter(&on, "icmp_error_forwarded");
    assert!(fwd >= 2, "the LB forwarded the router's errors ({fwd})");
    eprintln!(
        "e2e pmtu-dsr: {fwd} ICMP errors forwarded, downloads in {:.1} s; {:.1} s in all",
        t0.elapsed().as_secs_f64(),
        lab.started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------- GUE

/// The whole path over GUE: the daemon runs with `encap = "gue"`, the
/// backends decapsulate with `lb-daemon decap` (its default GUE port is the
/// daemon's), and HTTP, UDP and long-lived streams pass through the VIPs in
/// every address-family combination, with the backends' counters showing
/// that everything arrived as GUE and nothing as IP-in-IP.
#[test]
fn http_udp_and_streams_pass_over_gue() {
    require_root();
    let lab = Lab::up(LabOpts {
        vips: [
            ("198.18.100.10:80/tcp", &B4),
            ("198.18.100.10:5353/udp", &B4),
            ("198.18.100.10:9000/tcp", &B4),
            ("[fd00:100::10]:5353/udp", &B6),
            ("[fd00:100::10]:80/tcp", &B6),
            ("198.18.100.11:80/tcp", &B6),
            ("[fd00:100::11]:80/tcp", &B4),
        ]
        .iter()
        .map(|(a, b)| vip_toml(a, *b))
        .collect(),
        dataplane_extra: "encap = \"gue\"\n".into(),
        ..LabOpts::default()
    });
    let decap_all = |lab: &Lab| -> BTreeMap<String, u64> {
        let mut sum = BTreeMap::new();
        for i in 1..=3 {
            for (k, v) in lab.decap_stats(i) {
                *sum.entry(k).or_default() += v;
            }
        }
        sum
    };
    // Streams run in the background while the other traffic goes through.
    let mut bg = lab.streams_bg(VIP4, 9000, 30, 6.0);
    bg.wait_ready();
    let cases = [
        ("HTTP via IPv4 VIP", "http", VIP4, 80, "gue_v4_in_v4"),
        ("UDP via IPv4 VIP", "udp", VIP4, 5353, "gue_v4_in_v4"),
        ("UDP via IPv6 VIP", "udp", VIP6, 5353, "gue_v6_in_v6"),
        ("HTTP via IPv6 VIP", "http", VIP6, 80, "gue_v6_in_v6"),
        (
            "IPv4 VIP -> IPv6 backends",
            "http",
            "198.18.100.11",
            80,
            "gue_v4_in_v6",
        ),
        (
            "IPv6 VIP -> IPv4 backends",
            "http",
            "fd00:100::11",
            80,
            "gue_v6_in_v4",
        ),
    ];
    const COUNT: u64 = 40;
    for (what, kind, vip, port, decap_kind) in cases {
        let before = decap_all(&lab);
        let r = lab.traffic(&[
            kind,
            "--vip",
            vip,
            "--port",
            &port.to_string(),
            "--count",
            &COUNT.to_string(),
        ]);
        assert_all_ok(what, &r, COUNT, 3);
        let after = decap_all(&lab);
        let delta: BTreeMap<&str, u64> = after
            .iter()
            .map(|(k, v)| (k.as_str(), v - before.get(k).copied().unwrap_or(0)))
            .collect();
        let per_request = if kind == "udp" { 1 } else { 4 };
        assert!(
            delta[decap_kind] >= per_request * COUNT,
            "{what}: backends decapsulated {decap_kind}: {delta:?}"
        );
        for k in ["v4_in_v4", "v4_in_v6", "v6_in_v4", "v6_in_v6", "drop"] {
            assert_eq!(delta[k], 0, "{what}: nothing arrived as {k}: {delta:?}");
        }
    }
    let r = bg.join();
    let ss = streams(&r);
    assert_eq!(ss.len(), 30, "30 streams: {r}");
    for s in &ss {
        assert_stream_ran("stream over GUE", s);
    }
    let by = by_backend(&r);
    assert!(by.len() >= 2, "streams spread over backends: {by:?}");
    // The daemon reports what it sends.
    let st = lab.status();
    assert_eq!(st.encapsulation, "gue:6080", "status: {st:?}");
    eprintln!("e2e gue: {:.1} s", lab.started.elapsed().as_secs_f64());
}

/// Path MTU discovery with direct server return over GUE: the router's
/// "fragmentation needed" / "packet too big" about the backend's replies
/// reach the LB, which encapsulates them in GUE like the flow's packets;
/// the backend's `lb-daemon decap` strips them, its kernel lowers the path
/// MTU and the downloads through a 1280-byte link complete.
#[test]
fn icmp_errors_reach_the_backend_over_gue() {
    require_root();
    let lab = Lab::up(LabOpts {
        backends: 1,
        dataplane_extra: "encap = \"gue\"\n".into(),
        vips: [
            vip_toml("198.18.100.10:80/tcp", &B4[..1]),
            vip_toml("[fd00:100::10]:80/tcp", &B6[..1]),
        ]
        .concat(),
        ..LabOpts::default()
    });
    let r_cli = format!("{}r-cli", lab.prefix);
    lab.exec("router", &["ip", "link", "set", &r_cli, "mtu", "1280"]);
    const CLIENT_V6: &str = "fd00:1::2";
    let before = lab.decap_stats(1);
    for (vip, client) in [(VIP4, CLIENT_V4), (VIP6, CLIENT_V6)] {
        let r = lab.traffic(&[
            "http",
            "--vip",
            vip,
            "--count",
            "1",
            "--path",
            "/bytes/300000",
            "--timeout",
            "4",
        ]);
        assert_all_ok(&format!("300 kB download via {vip} over GUE"), &r, 1, 1);
        assert_eq!(
            cached_mtu(&lab, "b1", client),
            Some(1280),
            "the backend learned the path MTU to {client}"
        );
    }
    let fwd = counter(&lab.stats(), "icmp_error_forwarded");
    assert!(fwd >= 2, "the LB forwarded the router's errors ({fwd})");
    let after = lab.decap_stats(1);
    let d = |k: &str| after[k] - before[k];
    assert!(
        d("gue_v4_in_v4") > 0 && d("gue_v6_in_v6") > 0,
        "the backend decapsulated GUE: {after:?}"
    );
    assert_eq!(
        (d("v4_in_v4"), d("v6_in_v6"), d("drop")),
        (0, 0, 0),
        "nothing as IP-in-IP, nothing dropped: {after:?}"
    );
}

// ---------------------------------------------------------------- 9

/// Connection-table size of the SYN-flood lab (issue #11 measured resets
/// with a table of this size).
const FLOOD_TABLE: u32 = 16_384;
/// Frames in the flood (SYN + ACK pairs: half as many flows), and the most
/// seconds it may take.
const FLOOD_FRAMES: u32 = 400_000;
const FLOOD_SECONDS: f64 = 5.0;
/// The streams go idle (no packet either way) from PAUSE_AT for PAUSE_FOR
/// seconds of their run: the flood runs inside that window, so the
/// streams' table entries are not refreshed by their own packets meanwhile,
/// as for any idle connection.
const PAUSE_AT: f64 = 2.5;
const PAUSE_FOR: f64 = 7.0;
const FLOOD_RUN_SECONDS: f64 = 12.0;

/// What one flood run saw.
struct FloodRun {
    /// traffic.py streams report.
    streams: Value,
    /// flood.py report.
    flood: Value,
    /// Name of the drained backend.
    drained: String,
    /// `new_flow` and `new_flow_unpinned` during the flood.
    new_flow: u64,
    unpinned: u64,
    /// `conn_drain_fallback` from the flood to the streams' end.
    fallback: u64,
}

/// 50 streams through the VIP; their backend 198.19.0.12 is drained (so a
/// stream of it that loses its table entry is re-hashed to another backend,
/// which resets it); the streams go idle; a bounded SYN flood from random
/// sources hits the VIP; the streams resume. `limit` is
/// `max_new_flows_per_cpu` (0 = unlimited).
///
/// Each flood flow is a SYN and then an ACK. Why the ACK: the kernel's LRU
/// keeps two lists, and an entry looked up after its insert is "active",
/// while one never looked up again stays "inactive" and is evicted first.
/// Our SYNs skip the lookup, so a flood of single SYNs only churns the
/// inactive list among itself: measured with this test, 400,000 single
/// SYNs unlimited reset 0 of 16 idle streams of the drained backend. Flood
/// flows that send a second packet (a botnet completing handshakes, or
/// spoofed ACKs after each SYN) become active; then the active list is
/// rotated and idle established flows are evicted.
///
/// The flood comes from every CPU in turn (`flood.py --per-cpu`): the LRU
/// keeps a CPU's new entries in a list of that CPU until it needs free
/// entries itself, so a flood on one CPU of the two here could not reach
/// streams set up on the other (measured before spreading it: between 1 of
/// 17 and 22 of 22 reset, depending on where the flood ran).
fn flood_against_idle_streams(limit: u32) -> FloodRun {
    let lab = Lab::up(LabOpts {
        vips: vip_toml(STREAM_VIP, &B4),
        conn_table_size: FLOOD_TABLE,
        dataplane_extra: format!("max_new_flows_per_cpu = {limit}\n"),
        ..LabOpts::default()
    });
    let (at, pause) = (PAUSE_AT.to_string(), PAUSE_FOR.to_string());
    let mut bg = lab.streams_bg_with(
        VIP4,
        9000,
        50,
        FLOOD_RUN_SECONDS,
        &["--pause-at", &at, "--pause-for", &pause],
    );
    bg.wait_ready();
    let drained = "198.19.0.12";
    let mut c = lab.client();
    lab.block_on(c.set_backend_weight(pb::SetBackendWeightRequest {
        vip: vip9000(),
        address: drained.into(),
        weight: 0,
    }))
    .expect("SetBackendWeight 0");
    assert!(
        bg.elapsed() < PAUSE_AT - 0.2,
        "streams ready and backend drained before they go idle ({:.1} s)",
        bg.elapsed()
    );
    // bg.elapsed() counts from the spawn of traffic.py, its run clock starts
    // a little later: wait past PAUSE_AT on the later clock too.
    while bg.elapsed() < PAUSE_AT + 0.6 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = lab.stats();
    let flood = lab.syn_flood(VIP4, 9000, FLOOD_FRAMES, FLOOD_SECONDS, true);
    let after = lab.stats();
    assert!(
        bg.elapsed() < PAUSE_AT + PAUSE_FOR,
        "the flood ended while the streams were idle ({:.1} s): {flood}",
        bg.elapsed()
    );
    let delta = |name: &str| counter(&after, name) - counter(&before, name);
    let (new_flow, unpinned) = (delta("new_flow"), delta("new_flow_unpinned"));
    let streams = bg.join();
    let fallback =
        counter(&lab.stats(), "conn_drain_fallback") - counter(&before, "conn_drain_fallback");
    for s in streams["streams"].as_array().expect("streams") {
        assert_eq!(s["paused"].as_bool(), Some(true), "stream went idle: {s}");
    }
    FloodRun {
        streams,
        flood,
        drained: backend_name(drained),
        new_flow,
        unpinned,
        fallback,
    }
}

impl FloodRun {
    /// (streams of the drained backend, how many of them were reset, the
    /// largest gap of any stream beyond the requested pause, ms).
    fn summary(&self) -> (usize, usize, f64) {
        let on: Vec<&Value> = streams(&self.streams)
            .into_iter()
            .filter(|s| s["backend"].as_str() == Some(self.drained.as_str()))
            .collect();
        let reset = on.iter().filter(|s| n(&s["resets"]) > 0).count();
        let gap = streams(&self.streams)
            .iter()
            .filter_map(|s| s["max_gap_ms"].as_f64())
            .fold(0.0, f64::max);
        (on.len(), reset, gap - PAUSE_FOR * 1000.0)
    }

    fn sent(&self) -> u64 {
        n(&self.flood["sent"])
    }
}

#[test]
fn syn_flood_does_not_evict_idle_streams_with_the_new_flow_limit() {
    require_root();
    // 100 new entries per second and CPU: the whole flood can insert a few
    // hundred, far below the table's 16,384, so nothing is evicted.
    let run = flood_against_idle_streams(100);
    let (on_drained, reset, extra_gap) = run.summary();
    for s in streams(&run.streams) {
        assert!(
            s["ok"].as_bool() == Some(true)
                && n(&s["resets"]) == 0
                && s["error"].is_null()
                && s["eof"].as_bool() == Some(false),
            "stream ran to completion without reset: {s}"
        );
        let gap = s["max_gap_ms"].as_f64().expect("max_gap_ms");
        assert!(
            gap < PAUSE_FOR * 1000.0 + MAX_GAP_MS,
            "no gap of 1 s or more beyond the pause ({gap} ms): {s}"
        );
    }
    assert!(on_drained > 0, "some streams on the drained backend");
    let cpus = std::thread::available_parallelism().map_or(64, |n| n.get()) as u64;
    assert!(
        run.new_flow <= cpus * 100 * (FLOOD_SECONDS as u64 + 2),
        "inserts bounded by the budget: {} new_flow",
        run.new_flow
    );
    assert!(
        run.unpinned > FLOOD_TABLE as u64,
        "more flood SYNs went unpinned than the table holds: {} of {}",
        run.unpinned,
        run.sent()
    );
    eprintln!(
        "e2e syn flood, limit 100/s/CPU, table {FLOOD_TABLE}: flood {}; new_flow {} \
         new_flow_unpinned {}; {reset} of {on_drained} streams on the drained backend reset; \
         max gap beyond the {PAUSE_FOR} s pause {extra_gap:.0} ms",
        run.flood, run.new_flow, run.unpinned
    );
}

#[test]
fn syn_flood_without_the_limit_evicts_idle_streams_but_drained_ones_survive() {
    require_root();
    let run = flood_against_idle_streams(0);
    let (on_drained, reset, extra_gap) = run.summary();
    eprintln!(
        "e2e syn flood, unlimited, table {FLOOD_TABLE}: flood {}; new_flow {} \
         new_flow_unpinned {}; {reset} of {on_drained} streams on the drained backend reset; \
         conn_drain_fallback {}; max gap beyond the {PAUSE_FOR} s pause {extra_gap:.0} ms",
        run.flood, run.new_flow, run.unpinned, run.fallback
    );
    assert_eq!(run.unpinned, 0, "no limit, nothing unpinned");
    assert!(
        run.new_flow > FLOOD_TABLE as u64,
        "the flood inserted more flows than the table holds: {}",
        run.new_flow
    );
    assert!(on_drained > 0, "some streams on the drained backend");
    // Evicted (before the pre-drain fallback, they were then re-hashed
    // away from their drained backend and reset: 15 of 15, 18 of 18, 19 of
    // 19, 21 of 21 measured), they miss when they resume and the fallback sends
    // them back to the drained backend: none is reset, each ran to the end
    // on its own backend.
    assert!(
        run.fallback > 0,
        "drained streams were evicted and fell back: conn_drain_fallback {}",
        run.fallback
    );
    for s in streams(&run.streams) {
        assert!(
            s["ok"].as_bool() == Some(true)
                && n(&s["resets"]) == 0
                && s["error"].is_null()
                && s["eof"].as_bool() == Some(false),
            "stream ran to completion without reset: {s}"
        );
    }
    assert_eq!(reset, 0, "no stream of the drained backend reset");
}

// ---------------------------------------------------------------- 10

/// An upgrade in place: the daemon runs another build's program (the
/// `upgrade-test` object, see lb-privileged-tests/build.rs) while 50 streams
/// flow through the VIP; it is stopped and the daemon of this build starts,
/// finds the maps of its own layout, and swaps its program in on the pinned
/// link. No stream is reset, none stalls for a second, the link keeps its
/// id, and `lbctl status` says which program runs and what it replaced.
#[test]
fn upgrading_the_program_in_place_resets_no_stream() {
    require_root();
    let object = lb_privileged_tests::upgrade_test_object_file();
    let mut lab = Lab::up(LabOpts {
        vips: vip_toml(STREAM_VIP, &B4),
        daemon_env: vec![(
            "LB_TEST_XDP_OBJECT".into(),
            object.path().display().to_string(),
        )],
        ..LabOpts::default()
    });
    let old = lab.status();
    assert!(
        old.program_current,
        "the running program is the daemon's: {old:?}"
    );
    let link = lb_daemon::dataplane::link_id(&lab.pin).expect("a pinned link");

    const SECONDS: f64 = 6.0;
    let mut bg = lab.streams_bg(VIP4, 9000, 50, SECONDS);
    bg.wait_ready();
    // `systemctl restart` after a package upgrade: SIGTERM, the new binary.
    lab.stop_daemon();
    lab.daemon_env.clear();
    let swap_at = bg.elapsed();
    lab.start_daemon();
    let new = lab.status();
    assert!(
        bg.elapsed() < SECONDS - 1.0,
        "the upgrade left the streams at least a second to run ({:.1} s of {SECONDS})",
        bg.elapsed()
    );
    assert_ne!(new.program_id, old.program_id, "another program runs");
    assert_ne!(new.program_tag, old.program_tag);
    assert!(new.program_current, "it is this build's: {new:?}");
    assert_eq!(new.program_tag, new.embedded_program_tag);
    assert_eq!(new.upgraded_from_tag, old.program_tag, "what it replaced");
    assert!(new.adopted, "maps adopted");
    assert_eq!(
        lb_daemon::dataplane::link_id(&lab.pin),
        Some(link),
        "the same link, updated in place"
    );
    assert!(
        lab.log().contains("XDP program replaced in place"),
        "{}",
        lab.log()
    );

    let s = bg.join();
    let all = streams(&s);
    assert_eq!(all.len(), 50, "50 streams: {s}");
    for st in &all {
        assert_stream_ran("stream across the upgrade", st);
        assert_lines_after("stream across the upgrade", st, swap_at, SECONDS);
    }
    eprintln!(
        "e2e upgrade: program {} -> {} (tags {} -> {}), link {link} kept; 50 streams, \
         0 resets, max gap {} ms; {:.1} s",
        old.program_id,
        new.program_id,
        old.program_tag,
        new.program_tag,
        s["max_gap_ms"],
        lab.started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------- 11

/// The blocks of a pcapng file: (block type, body).
fn pcapng_blocks(bytes: &[u8]) -> Vec<(u32, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let kind = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        assert!(
            len >= 12 && at + len <= bytes.len(),
            "block at {at}: length {len}"
        );
        out.push((kind, &bytes[at + 8..at + len - 4]));
        at += len;
    }
    assert_eq!(at, bytes.len(), "whole blocks only");
    out
}

/// The comment of an enhanced packet block's body.
fn epb_comment(body: &[u8]) -> String {
    let caplen = u32::from_le_bytes(body[12..16].try_into().unwrap()) as usize;
    let mut at = 20 + caplen.div_ceil(4) * 4;
    while at + 4 <= body.len() {
        let code = u16::from_le_bytes([body[at], body[at + 1]]);
        let len = u16::from_le_bytes([body[at + 2], body[at + 3]]) as usize;
        if code == 1 {
            return String::from_utf8_lossy(&body[at + 4..at + 4 + len]).into_owned();
        }
        if code == 0 {
            break;
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    String::new()
}

/// `lbctl capture VIP --count 100 --sent -w FILE` while HTTP traffic flows:
/// `tcpdump -r` reads 100 frames to the VIP as received and each as sent,
/// an IP-in-IP packet from the LB's encapsulation prefix to the backend that
/// the packet comment names, with verdict tx. A request with a bad filter
/// is INVALID_ARGUMENT and starts nothing.
#[test]
fn lbctl_capture_writes_frames_tcpdump_reads_with_verdict_and_outer_header() {
    require_root();
    let lab = lab_with(&[("198.18.100.10:80/tcp", &B4)]);
    let file = lab.tmp.path().join("vip.pcapng");
    let mut capture = std::process::Command::new(lb_privileged_tests::bins::bin("lbctl"))
        .args(["--api", &format!("unix://{}", lab.sock.display())])
        .args([
            "capture",
            "198.18.100.10:80/tcp",
            "--count",
            "100",
            "--sent",
            "-w",
        ])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lbctl capture");
    let t0 = Instant::now();
    while !lab.log().contains("capture started") {
        assert!(t0.elapsed() < Duration::from_secs(10), "{}", lab.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // A second capture while one runs: refused, the first unaffected.
    let busy = lab
        .block_on(lab.client().capture(pb::CaptureRequest::default()))
        .expect_err("busy");
    assert_eq!(busy.code(), tonic::Code::ResourceExhausted, "{busy:?}");
    let r = lab.traffic(&["http", "--vip", VIP4, "--count", "40", "--parallel", "4"]);
    assert_all_ok("HTTP while capturing", &r, 40, 2);
    let t0 = Instant::now();
    let st = loop {
        if let Some(st) = capture.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "lbctl capture did not end"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = capture.wait_with_output().unwrap();
    assert!(
        st.success(),
        "lbctl capture: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("200 frames written"));

    // tcpdump reads it: 100 frames to the VIP, 100 IP-in-IP to backends.
    let dump = std::process::Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(&file)
        .output()
        .expect("tcpdump");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let text = String::from_utf8_lossy(&dump.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 200, "{text}");
    let to_vip = lines
        .iter()
        .filter(|l| l.contains("> 198.18.100.10.80:") && !l.contains("> 198.19.0.1"))
        .count();
    assert_eq!(to_vip, 100, "received frames to the VIP:\n{text}");

    // The comments: verdict and backend; the outer header of each sent
    // frame goes to that backend, from the LB's encapsulation prefix.
    let bytes = std::fs::read(&file).unwrap();
    let blocks = pcapng_blocks(&bytes);
    let packets: Vec<&[u8]> = blocks
        .iter()
        .filter(|(k, _)| *k == 6)
        .map(|(_, b)| *b)
        .collect();
    assert_eq!(packets.len(), 200);
    for (i, body) in packets.iter().enumerate() {
        let c = epb_comment(body);
        assert!(c.contains("verdict=tx"), "packet {i}: {c}");
        let backend = c.split("backend=").nth(1).expect("a backend").to_string();
        assert!(B4.contains(&backend.as_str()), "packet {i}: {c}");
        let frame = &body[20..];
        if c.contains(" sent ") {
            // Outer IPv4: protocol 4 (IP-in-IP), destination the backend,
            // source inside encap_source_v4 198.18.3.0/24.
            assert_eq!(&frame[12..14], &[0x08, 0x00]);
            assert_eq!(frame[14 + 9], 4, "packet {i}: IP-in-IP");
            let dst = std::net::Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
            assert_eq!(dst.to_string(), backend, "packet {i}");
            assert_eq!(&frame[26..29], &[198, 18, 3], "packet {i}: crafted source");
            // Inner destination: the VIP.
            assert_eq!(&frame[14 + 20 + 16..14 + 20 + 20], &[198, 18, 100, 10]);
        } else {
            assert!(c.contains(" received "), "packet {i}: {c}");
            assert_eq!(
                &frame[30..34],
                &[198, 18, 100, 10],
                "packet {i}: to the VIP"
            );
        }
    }
    // Sent frames: tcpdump prints the outer header, then the inner packet.
    let outer = lines
        .iter()
        .filter(|l| l.contains("> 198.19.0.1") && l.contains("> 198.18.100.10.80:"))
        .count();
    assert_eq!(
        outer, 100,
        "sent frames, outer header to a backend:\n{text}"
    );

    // Bad filters: INVALID_ARGUMENT, nothing started (a good one runs).
    let bad = [
        pb::CaptureRequest {
            backend: "not-an-address".into(),
            ..Default::default()
        },
        pb::CaptureRequest {
            snaplen: 4096,
            ..Default::default()
        },
        pb::CaptureRequest {
            vip: Some(pb::Vip {
                address: "198.18.100.10".into(),
                port: 70000,
                protocol: pb::Protocol::Tcp as i32,
            }),
            ..Default::default()
        },
    ];
    for req in bad {
        let e = lab
            .block_on(lab.client().capture(req.clone()))
            .err()
            .unwrap_or_else(|| panic!("{req:?} accepted"));
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{req:?}: {e:?}");
    }
    let mut c = lab.client();
    let mut s = lab
        .block_on(c.capture(pb::CaptureRequest {
            count: 1,
            ..Default::default()
        }))
        .expect("no capture left running")
        .into_inner();
    assert!(lab.ping(VIP4, 1));
    let first = lab
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), s.message()).await })
        .expect("a frame within 5 s")
        .expect("stream ok");
    assert!(first.is_some());
    eprintln!(
        "e2e capture: 100 frames + 100 sent copies read by tcpdump; {:.1} s",
        lab.started.elapsed().as_secs_f64()
    );
}
