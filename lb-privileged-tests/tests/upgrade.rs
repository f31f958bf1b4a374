//! Upgrading the XDP program in place, at the data-plane level: a restart
//! with the same build adopts the running program; another build's program
//! is swapped in on the kept link (BPF_LINK_UPDATE) over the kept maps; maps
//! of another layout are refused with nothing touched, and recreated only
//! with the operator's opt-in (or when the state rebuilds them whole).
//!
//! "Another build" is `lb-ebpf` built with its `upgrade-test` feature
//! (build.rs): the same maps and behaviour, one more instruction pair.

use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, Map, MapData, MapInfo};
use lb_common::{ConnEntry, FlowKey4, MAP_CONFIG, MAP_CONN4, MAP_STATS, layout::MapLayout};
use lb_daemon::dataplane::{
    AttachMode, Balancer, BalancerConfig, LAYOUT_PIN, MAP_NAMES, OnLayoutChange, OpenOptions,
    Origin, link_id, running_program, teardown,
};
use lb_privileged_tests::{UPGRADE_TEST_OBJECT, netns::*, *};

/// The pins of one test, removed even when an assertion fails.
struct Pins(PathBuf);
impl Drop for Pins {
    fn drop(&mut self) {
        let _ = teardown(&self.0);
    }
}

const VIP: &str = "198.18.100.10";

fn flow() -> FlowKey4 {
    FlowKey4::new(
        u32::from_ne_bytes([198, 18, 1, 2]),
        u32::from_ne_bytes([198, 18, 100, 10]),
        41000u16.to_be(),
        80u16.to_be(),
        lb_common::PROTO_TCP,
    )
}

fn conn4(dir: &Path) -> HashMap<MapData, FlowKey4, ConnEntry> {
    let data = MapData::from_pin(dir.join("maps").join(MAP_CONN4)).unwrap();
    HashMap::try_from(Map::from_map_data(data).unwrap()).unwrap()
}

/// Kernel ids of every pinned map and of the layout record.
fn pin_ids(dir: &Path) -> Vec<(String, u32)> {
    let mut ids: Vec<(String, u32)> = MAP_NAMES
        .iter()
        .map(|n| {
            let id = MapInfo::from_pin(dir.join("maps").join(n)).unwrap().id();
            (n.to_string(), id)
        })
        .collect();
    if let Ok(i) = MapInfo::from_pin(dir.join(LAYOUT_PIN)) {
        ids.push((LAYOUT_PIN.into(), i.id()));
    }
    ids
}

/// Makes the record say `name` had another field layout, as a record
/// written by a build whose type for that map differed.
fn forge_record(dir: &Path, name: &str) {
    let data = MapData::from_pin(dir.join(LAYOUT_PIN)).unwrap();
    let mut rec: Array<MapData, MapLayout> = Array::try_from(Map::Array(data)).unwrap();
    for i in 1..=lb_common::layout::MAP_LAYOUTS.len() as u32 {
        let mut e = rec.get(&i, 0).unwrap();
        if e.name_str() == name {
            e.fingerprint ^= 1;
            rec.set(i, e, 0).unwrap();
            return;
        }
    }
    panic!("{name} not in the record");
}

/// A balancer loaded (from `object`), pinned under `dir`, attached to `lb0`
/// of the namespace this thread is in, answering ping on the VIP, with one
/// connection-table entry; then its process "exits" (everything dropped).
fn first_start(dir: &Path, object: &[u8]) {
    let opts = OpenOptions {
        object,
        ..OpenOptions::default()
    };
    let (mut lb, origin) = Balancer::open_pinned_with(test_sizes(), dir, &opts).unwrap();
    assert_eq!(origin, Origin::Loaded);
    let cfg = BalancerConfig {
        gateway_mac: pkt::GW_MAC,
        ..Default::default()
    };
    lb.set_config(&cfg.to_map().unwrap()).unwrap();
    lb.set_vip_addr(&lb_daemon::vip::addr_key(VIP.parse().unwrap()), 1)
        .unwrap();
    lb.attach_pinned("lb0", AttachMode::Auto, dir).unwrap();
    conn4(dir)
        .insert(
            flow(),
            ConnEntry {
                slot: 7,
                generation: 3,
            },
            0,
        )
        .unwrap();
}

/// Runs `f` in a thread inside the LB namespace, with the client's veth
/// able to receive the LB's XDP_TX frames; returns a ping of the VIP from
/// the client (true: answered by `lb_xdp`).
fn in_lab(label: &str, f: impl FnOnce(&Path, &dyn Fn() -> bool) + Send + 'static) {
    let (lb_ns, client) = lb_and_client(label);
    let dir = PathBuf::from(format!("/sys/fs/bpf/lbtest-up-{}", unique_tag()));
    let _pins = Pins(dir.clone());
    let client_name = client.name.clone();
    let pass = std::thread::spawn(move || {
        let ns = Netns { name: client_name };
        ns.enter();
        std::mem::forget(ns);
        let mut d = lb_daemon::dataplane::Decap::load().unwrap();
        d.pass_program()
            .attach("peer0", aya::programs::XdpMode::Default)
            .unwrap();
        d
    })
    .join()
    .expect("client thread");
    let (lb_name, client_name) = (lb_ns.name.clone(), client.name.clone());
    std::thread::spawn(move || {
        pin_thread();
        let ns = Netns { name: lb_name };
        ns.enter();
        std::mem::forget(ns);
        let ping = move || {
            std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &client_name,
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "2",
                    VIP,
                ])
                .stdout(std::process::Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        f(&dir, &ping);
    })
    .join()
    .expect("test thread");
    drop(pass);
}

#[test]
fn the_same_build_is_adopted_without_a_swap() {
    require_root();
    in_lab("upsame", |dir, ping| {
        first_start(dir, lb_daemon::dataplane::BALANCER_OBJECT);
        let before = running_program(dir).expect("a program on the link");
        let link = link_id(dir).expect("a pinned link");
        let ids = pin_ids(dir);
        let (mut lb, origin) = Balancer::open_pinned(test_sizes(), dir).unwrap();
        assert_eq!(origin, Origin::Adopted);
        assert_eq!(
            lb.embedded_program().tag,
            before.tag,
            "same build, same tag"
        );
        assert!(lb.pending_upgrade().is_none());
        assert_eq!(lb.finish_upgrade(dir).unwrap(), None, "nothing to swap");
        assert_eq!(running_program(dir), Some(before), "the same program runs");
        assert_eq!(link_id(dir), Some(link));
        assert_eq!(pin_ids(dir), ids, "every map and the record kept");
        assert!(ping(), "still forwarding");
    });
}

#[test]
fn another_program_is_swapped_in_on_the_kept_link_with_the_conn_table() {
    require_root();
    in_lab("upswap", |dir, ping| {
        first_start(dir, UPGRADE_TEST_OBJECT);
        assert!(ping(), "the first build answers");
        let old = running_program(dir).expect("a program on the link");
        let link = link_id(dir).expect("a pinned link");
        let ids = pin_ids(dir);

        // The daemon's own build: another program over the same layout.
        let (mut lb, origin) = Balancer::open_pinned(test_sizes(), dir).unwrap();
        assert_eq!(origin, Origin::Upgraded);
        let embedded = lb.embedded_program();
        assert_ne!(embedded.tag, old.tag, "the test build differs");
        let pending = lb.pending_upgrade().cloned().expect("an upgrade");
        assert_eq!(pending.from, old);
        assert!(
            pending.recreated.is_empty(),
            "same layout: no map recreated"
        );
        // Nothing swapped before the daemon says so (maps first).
        assert_eq!(running_program(dir), Some(old));
        let up = lb.finish_upgrade(dir).unwrap().expect("swapped");
        assert_eq!(up.to, embedded);
        let now = running_program(dir).expect("a program on the link");
        assert_eq!(now.tag, embedded.tag, "the new program runs");
        assert_ne!(now.id, old.id);
        assert_eq!(link_id(dir), Some(link), "the same link, updated in place");
        assert_eq!(pin_ids(dir), ids, "maps kept");
        assert_eq!(
            conn4(dir).get(&flow(), 0).unwrap(),
            ConnEntry {
                slot: 7,
                generation: 3
            },
            "the connection table kept its entry"
        );
        let pinned = aya::programs::ProgramInfo::from_pin(dir.join("prog")).unwrap();
        assert_eq!(pinned.tag(), embedded.tag, "prog re-pinned");
        assert!(ping(), "forwarding with the new program");
        drop(lb);

        // And the next restart of the same build adopts it.
        let (_lb, origin) = Balancer::open_pinned(test_sizes(), dir).unwrap();
        assert_eq!(origin, Origin::Adopted);
        assert_eq!(running_program(dir), Some(now));
    });
}

#[test]
fn a_changed_layout_is_refused_untouched_and_recreated_only_on_request() {
    require_root();
    in_lab("uplayout", |dir, ping| {
        first_start(dir, lb_daemon::dataplane::BALANCER_OBJECT);
        let old = running_program(dir).unwrap();
        let link = link_id(dir).unwrap();
        forge_record(dir, MAP_STATS);
        let ids = pin_ids(dir);

        // Refused: the message names the map and the loss, nothing changes.
        let err = Balancer::open_pinned(test_sizes(), dir)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("LB_STATS"), "{err}");
        assert!(err.contains("the global counters"), "{err}");
        assert!(err.contains("on_layout_change = \"recreate\""), "{err}");
        assert!(!err.contains("LB_CONN4"), "only the changed map: {err}");
        assert_eq!(pin_ids(dir), ids, "no pin replaced");
        assert_eq!(running_program(dir), Some(old), "the old program runs");
        assert!(conn4(dir).get(&flow(), 0).is_ok());
        assert!(ping(), "still forwarding");

        // With the opt-in: only LB_STATS is recreated, the rest kept.
        let opts = OpenOptions {
            on_layout_change: OnLayoutChange::Recreate,
            ..OpenOptions::default()
        };
        let (mut lb, origin) = Balancer::open_pinned_with(test_sizes(), dir, &opts).unwrap();
        assert_eq!(origin, Origin::Upgraded, "same tag, new maps: swapped");
        let up = lb.finish_upgrade(dir).unwrap().expect("swapped");
        assert_eq!(up.recreated, vec![MAP_STATS]);
        let after = pin_ids(dir);
        for ((name, a), (_, b)) in ids.iter().zip(&after) {
            if name == MAP_STATS || name == LAYOUT_PIN {
                assert_ne!(a, b, "{name} recreated / rewritten");
            } else {
                assert_eq!(a, b, "{name} kept");
            }
        }
        assert_eq!(link_id(dir), Some(link));
        assert_ne!(running_program(dir).unwrap().id, old.id);
        assert!(conn4(dir).get(&flow(), 0).is_ok(), "flows kept");
        assert!(ping(), "forwarding on the new maps");
        drop(lb);

        // A map the state rebuilds whole (the settings) is recreated
        // without asking: nothing is lost.
        forge_record(dir, MAP_CONFIG);
        let (mut lb, origin) = Balancer::open_pinned(test_sizes(), dir).unwrap();
        assert_eq!(origin, Origin::Upgraded);
        assert_eq!(
            lb.pending_upgrade().unwrap().recreated,
            vec![MAP_CONFIG],
            "lossless: recreated"
        );
        lb.finish_upgrade(dir).unwrap();
        assert!(conn4(dir).get(&flow(), 0).is_ok(), "flows kept");
        drop(lb);

        // An older build's pins lack a map this build added: it is
        // created, the others adopted, nothing refused.
        let pending = dir.join("maps").join(lb_common::MAP_CAPTURE_PENDING);
        std::fs::remove_file(&pending).unwrap();
        let (mut lb, origin) = Balancer::open_pinned(test_sizes(), dir).unwrap();
        assert_eq!(origin, Origin::Upgraded);
        assert_eq!(
            lb.pending_upgrade().unwrap().recreated,
            vec![lb_common::MAP_CAPTURE_PENDING]
        );
        lb.finish_upgrade(dir).unwrap();
        assert!(pending.exists(), "the new map is pinned");
        assert!(conn4(dir).get(&flow(), 0).is_ok(), "flows kept");
    });
}

#[test]
fn pins_without_a_layout_record_are_an_unknown_layout() {
    require_root();
    in_lab("upnorec", |dir, ping| {
        first_start(dir, lb_daemon::dataplane::BALANCER_OBJECT);
        // What a build before layout records leaves behind.
        std::fs::remove_file(dir.join(LAYOUT_PIN)).unwrap();
        let ids = pin_ids(dir);
        let err = Balancer::open_pinned(test_sizes(), dir)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("no layout record"), "{err}");
        assert!(err.contains("LB_CONN4"), "{err}");
        assert!(err.contains("every established flow"), "{err}");
        assert_eq!(pin_ids(dir), ids, "nothing touched");
        assert!(!dir.join(LAYOUT_PIN).exists(), "no record written");
        assert!(ping());

        let opts = OpenOptions {
            on_layout_change: OnLayoutChange::Recreate,
            ..OpenOptions::default()
        };
        let (mut lb, origin) = Balancer::open_pinned_with(test_sizes(), dir, &opts).unwrap();
        assert_eq!(origin, Origin::Upgraded);
        let up = lb.finish_upgrade(dir).unwrap().unwrap();
        assert_eq!(up.recreated.len(), MAP_NAMES.len(), "every map recreated");
        assert!(
            conn4(dir).get(&flow(), 0).is_err(),
            "the table starts empty"
        );
        assert!(dir.join(LAYOUT_PIN).exists(), "the record is written");
        drop(lb);
        let (_lb, origin) = Balancer::open_pinned(test_sizes(), dir).unwrap();
        assert_eq!(origin, Origin::Adopted, "and the next start adopts");
    });
}

/// The daemon itself: pins of another layout make `lb-daemon run` exit with
/// the message and touch nothing; `[dataplane] on_layout_change =
/// "recreate"` lets it start, recreating only the changed map.
#[test]
fn the_daemon_refuses_a_changed_layout_unless_configured_to_recreate() {
    require_root();
    let mut env = lb_privileged_tests::daemon::DaemonEnv::new("uplay", None, "");
    env.start();
    env.stop();
    forge_record(&env.pin, MAP_STATS);
    let ids = pin_ids(&env.pin);
    let prog = running_program(&env.pin).expect("a program");

    env.spawn_with(&[], &[]);
    let t0 = std::time::Instant::now();
    let st = loop {
        if let Some(st) = env.exited() {
            break st;
        }
        assert!(t0.elapsed().as_secs() < 20, "still running:\n{}", env.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!st.success());
    env.kill9(); // reaps it
    let log = env.log();
    assert!(log.contains("LB_STATS"), "{log}");
    assert!(log.contains("on_layout_change"), "{log}");
    assert_eq!(pin_ids(&env.pin), ids, "nothing touched");
    assert_eq!(running_program(&env.pin), Some(prog));

    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        text.replacen(
            "[dataplane]\n",
            "[dataplane]\non_layout_change = \"recreate\"\n",
            1,
        ),
    )
    .unwrap();
    env.start();
    let after = pin_ids(&env.pin);
    for ((name, a), (_, b)) in ids.iter().zip(&after) {
        if name == MAP_STATS || name == LAYOUT_PIN {
            assert_ne!(a, b, "{name} recreated");
        } else {
            assert_eq!(a, b, "{name} kept");
        }
    }
    assert!(
        env.log().contains("XDP program replaced in place"),
        "{}",
        env.log()
    );
    env.stop();
}
