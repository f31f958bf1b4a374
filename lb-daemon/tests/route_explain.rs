//! `Route` with `explain` over a real Unix socket, on the fake data plane
//! (whose connection table the test fills as `lb_xdp` would): each step of
//! the explanation (VIP entry exact or all-ports, connection-table hit, stale
//! entry after a removal, hit on a drained backend, miss, SYN, no-conntrack,
//! ring, encapsulation, verdict), the refused requests with their codes,
//! and `lbctl route --explain` (text and `--json`) showing the same answer.
//! That the explanation equals what the kernel does is
//! lb-privileged-tests/tests/explain.rs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use lb_common::{ConnEntry, FlowKey4, addr};
use lb_daemon::{
    dataplane::{BalancerConfig, FakeDataplane, Sizes},
    grpc::{LbService, Listener, StatusInfo, serve},
    state::{BackendSpec, LbState, Model},
    vip::{Proto, VipFlags, VipSpec, map_addr},
};
use lb_proto::v1::{self as pb, load_balancer_client::LoadBalancerClient};
use tonic::{Code, transport::Channel};

const VIP: &str = "198.18.100.10";
const VIP6: &str = "fd00:100::10";

fn sizes() -> Sizes {
    Sizes {
        ring_size: 13,
        max_vips: 4,
        max_backends: 16,
        conn_table: 64,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Api {
    client: LoadBalancerClient<Channel>,
    uri: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The settings `lb-daemon` would write (crafted outer sources).
fn node_config() -> lb_common::LbConfig {
    BalancerConfig {
        gateway_mac: [2, 0, 0, 0, 0, 1],
        if_mac: [2, 0, 0, 0, 0, 2],
        mtu: 1500,
        hash_seed: 4242,
        v4_src: "198.19.128.0".parse().unwrap(),
        v4_src_len: 17,
        v6_src: "fd00:5::".parse().unwrap(),
        v6_src_len: 96,
        icmp_too_big_rate: 0,
        ..Default::default()
    }
    .to_map()
    .unwrap()
}

/// A daemon over the fake with: VIP A 198.18.100.10:80/tcp (backends .11
/// and .12, weight 100), VIP B fd00:100::10 all ports, no-sport, backend
/// fd00:19::21, VIP C 198.18.100.10:53/udp no-conntrack, backend .31; and
/// connection-table entries made by `pin` before serving.
async fn start(pin: impl FnOnce(&LbState<FakeDataplane>, &mut FakeDataplane)) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let mut st = LbState::new(FakeDataplane::new(sizes()), Model::default(), None).unwrap();
    st.set_node_config(node_config()).unwrap();
    let be = |a: &str| BackendSpec {
        address: ip(a),
        weight: 100,
    };
    st.create_vip(
        VipSpec::new(ip(VIP), 80, Proto::Tcp),
        VipFlags::default(),
        &[be("198.19.0.11"), be("198.19.0.12")],
    )
    .unwrap();
    st.create_vip(
        VipSpec::new(ip(VIP6), 0, Proto::Tcp),
        VipFlags {
            no_sport: true,
            no_conntrack: false,
        },
        &[be("fd00:19::21")],
    )
    .unwrap();
    st.create_vip(
        VipSpec::new(ip(VIP), 53, Proto::Udp),
        VipFlags {
            no_sport: false,
            no_conntrack: true,
        },
        &[be("198.19.0.31")],
    )
    .unwrap();
    // Entries are written into the fake's table as lb_xdp would insert them.
    let model = st.model().clone();
    let mut dp = st.into_dataplane();
    let view = LbState::new(dp.clone(), model.clone(), None).unwrap();
    pin(&view, &mut dp);
    let st = LbState::new(dp, model, None).unwrap();

    let svc = LbService::new(st, StatusInfo::default());
    let sock = dir.path().join("lb.sock");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let s2 = sock.clone();
    tokio::spawn(async move {
        serve(svc, Listener::Unix(s2), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    for _ in 0..200 {
        if sock.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let uri = format!("unix://{}", sock.display());
    let client = lbctl::client::connect(&uri, None).await.unwrap();
    Api {
        client,
        uri,
        _dir: dir,
        _stop: tx,
    }
}

/// Pins the IPv4 flow `client -> VIP:dport/tcp` to `backend` of `vip` with
/// the slot's current generation, as a SYN through the ring would.
fn pin4(
    st: &LbState<FakeDataplane>,
    dp: &mut FakeDataplane,
    vip: VipSpec,
    client: SocketAddr,
    backend: &str,
) {
    let info = st.get_vip(&vip).unwrap();
    let b = info
        .backends
        .iter()
        .find(|b| b.address == ip(backend))
        .unwrap();
    let generation = st.dataplane().maps().backends[b.slot as usize].generation;
    let (src, _) = map_addr(client.ip());
    let (dst, _) = map_addr(vip.address);
    let key = FlowKey4::new(
        src[0],
        dst[0],
        addr::port_to_map(client.port()),
        addr::port_to_map(vip.port),
        vip.proto.number(),
    );
    dp.maps_mut().conn4.insert(
        key,
        ConnEntry {
            slot: b.slot,
            generation,
        },
    );
}

fn pvip(a: &str, port: u32, tcp: bool) -> Option<pb::Vip> {
    Some(pb::Vip {
        address: a.into(),
        port,
        protocol: if tcp {
            pb::Protocol::Tcp
        } else {
            pb::Protocol::Udp
        } as i32,
    })
}

async fn explain(
    api: &mut Api,
    vip: Option<pb::Vip>,
    client: SocketAddr,
    dport: u32,
    syn: bool,
) -> Result<pb::RouteResponse, tonic::Status> {
    api.client
        .route(pb::RouteRequest {
            vip,
            client_address: client.ip().to_string(),
            client_port: u32::from(client.port()),
            destination_port: dport,
            explain: true,
            syn,
        })
        .await
        .map(|r| r.into_inner())
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn every_step_of_the_explanation() {
    let pinned11 = sa("198.18.1.7:40000");
    let pinned12 = sa("198.18.1.8:40001");
    let a = VipSpec::new(ip(VIP), 80, Proto::Tcp);
    let mut api = start(|st, dp| {
        pin4(st, dp, a, pinned11, "198.19.0.11");
        pin4(st, dp, a, pinned12, "198.19.0.12");
    })
    .await;

    // Hit: the entry's slot is valid with its generation; no ring step.
    let r = explain(&mut api, pvip(VIP, 80, true), pinned11, 0, false)
        .await
        .unwrap();
    let e = r.explanation.clone().unwrap();
    assert_eq!(e.conn_lookup, pb::ConnLookup::Hit as i32);
    assert_eq!(e.verdict, pb::RouteVerdict::Forward as i32);
    assert_eq!(e.backend_address, "198.19.0.11");
    assert!(e.ring.is_none());
    let entry = e.conn_entry.clone().unwrap();
    assert!(entry.slot_valid && entry.slot_generation == entry.generation);
    assert_eq!(entry.slot, e.backend_slot);
    assert_eq!(r.backend.unwrap().address, "198.19.0.11");
    assert_eq!(e.matched_vip, pvip(VIP, 80, true));
    assert!(!e.all_ports && e.flags.is_empty());
    // Encapsulation: IPv4 in IPv4 to the backend, source crafted inside
    // 198.19.128.0/17 from the client address and port.
    let enc = e.encapsulation.unwrap();
    assert_eq!(enc.outer_destination, "198.19.0.11");
    assert_eq!(enc.inner_protocol, 4);
    assert_eq!((enc.overhead, enc.max_packet_length), (20, 1480));
    let src: Ipv4Addr = enc.outer_source.parse().unwrap();
    assert_eq!(
        u32::from(src) >> 15,
        u32::from(Ipv4Addr::new(198, 19, 128, 0)) >> 15
    );
    let fold = u32::from(Ipv4Addr::new(198, 18, 1, 7));
    let suffix = fold ^ (40000u32 << 16) ^ 40000;
    assert_eq!(u32::from(src) & 0x7fff, suffix & 0x7fff, "crafted suffix");

    // The same flow as a SYN: the table is not consulted, the ring decides.
    let syn = explain(&mut api, pvip(VIP, 80, true), pinned11, 0, true)
        .await
        .unwrap()
        .explanation
        .unwrap();
    assert_eq!(syn.conn_lookup, pb::ConnLookup::SkippedSyn as i32);
    let ring = syn.ring.unwrap();
    assert_eq!(ring.ring_size, 13);
    assert_eq!(ring.ring_position, ring.flow_hash % 13);
    assert_eq!(syn.backend_address, ring.address);

    // Miss: a flow without an entry takes the ring, like Route without
    // explain says for a new flow.
    let fresh = sa("198.18.1.9:41000");
    let r = explain(&mut api, pvip(VIP, 80, true), fresh, 0, false)
        .await
        .unwrap();
    let e = r.explanation.unwrap();
    assert_eq!(e.conn_lookup, pb::ConnLookup::Miss as i32);
    assert!(e.conn_entry.is_none());
    let plain = api
        .client
        .route(pb::RouteRequest {
            vip: pvip(VIP, 80, true),
            client_address: "198.18.1.9".into(),
            client_port: 41000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(plain.explanation.is_none());
    assert_eq!(plain.backend.unwrap().address, e.backend_address);
    assert_eq!(plain.flow_hash, e.ring.unwrap().flow_hash);

    // Add .13, drain .11, remove .12: the drained backend keeps its flow;
    // the removed one's entry is stale and its flow is re-hashed, to .13,
    // the only backend left in the ring.
    api.client
        .add_backend(pb::AddBackendRequest {
            vip: pvip(VIP, 80, true),
            backend: Some(pb::Backend {
                address: "198.19.0.13".into(),
                weight: Some(100),
            }),
        })
        .await
        .unwrap();
    api.client
        .set_backend_weight(pb::SetBackendWeightRequest {
            vip: pvip(VIP, 80, true),
            address: "198.19.0.11".into(),
            weight: 0,
        })
        .await
        .unwrap();
    api.client
        .remove_backend(pb::RemoveBackendRequest {
            vip: pvip(VIP, 80, true),
            address: "198.19.0.12".into(),
        })
        .await
        .unwrap();
    let e = explain(&mut api, pvip(VIP, 80, true), pinned11, 0, false)
        .await
        .unwrap()
        .explanation
        .unwrap();
    assert_eq!(
        e.conn_lookup,
        pb::ConnLookup::Hit as i32,
        "drained keeps flows"
    );
    assert_eq!(e.backend_address, "198.19.0.11");
    let e = explain(&mut api, pvip(VIP, 80, true), pinned12, 0, false)
        .await
        .unwrap()
        .explanation
        .unwrap();
    assert_eq!(e.conn_lookup, pb::ConnLookup::Stale as i32);
    let entry = e.conn_entry.unwrap();
    assert!(!entry.slot_valid, "the removed backend's slot is free");
    assert_eq!(entry.slot_address, "");
    assert_eq!(
        e.backend_address, "198.19.0.13",
        "re-hashed to the only active one"
    );
    assert_eq!(e.ring.unwrap().address, "198.19.0.13");

    // All-ports VIP with no-sport: matched through port 0, the key and the
    // hash without the source port, IPv6 in IPv6.
    let c6 = sa("[fd00:1::7]:5555");
    let e = explain(&mut api, pvip(VIP6, 0, true), c6, 8443, false)
        .await
        .unwrap()
        .explanation
        .unwrap();
    assert!(e.all_ports);
    assert_eq!(e.matched_vip, pvip(VIP6, 0, true));
    assert_eq!(e.flags, [pb::VipFlag::NoSport as i32]);
    assert_eq!(e.conn_key_source_port, 0);
    assert_eq!(e.conn_lookup, pb::ConnLookup::Miss as i32);
    assert_eq!(e.ring.unwrap().hashed_source_port, 0);
    let enc = e.encapsulation.unwrap();
    assert_eq!((enc.inner_protocol, enc.overhead), (41, 40));
    assert!(
        enc.outer_source.starts_with("fd00:5::"),
        "{}",
        enc.outer_source
    );
    assert_eq!(enc.outer_destination, "fd00:19::21");
    // No entry was written for it: explaining changes nothing.
    let again = explain(&mut api, pvip(VIP6, 0, true), c6, 8443, false)
        .await
        .unwrap();
    assert_eq!(
        again.explanation.unwrap().conn_lookup,
        pb::ConnLookup::Miss as i32
    );

    // no-conntrack: never consulted.
    let e = explain(&mut api, pvip(VIP, 53, false), pinned11, 0, false)
        .await
        .unwrap()
        .explanation
        .unwrap();
    assert_eq!(e.conn_lookup, pb::ConnLookup::SkippedNoConntrack as i32);
    assert_eq!(e.backend_address, "198.19.0.31");
}

#[tokio::test]
async fn empty_ring_is_a_drop_verdict_not_an_error() {
    let mut api = start(|_, _| {}).await;
    api.client
        .set_backend_weight(pb::SetBackendWeightRequest {
            vip: pvip(VIP, 53, false),
            address: "198.19.0.31".into(),
            weight: 0,
        })
        .await
        .unwrap();
    let client = sa("198.18.1.7:40000");
    let r = explain(&mut api, pvip(VIP, 53, false), client, 0, false)
        .await
        .unwrap();
    let e = r.explanation.unwrap();
    assert_eq!(e.verdict, pb::RouteVerdict::DropNoBackend as i32);
    assert!(r.backend.is_none() && e.encapsulation.is_none());
    assert_eq!(e.backend_address, "");
    // Without explain it stays FAILED_PRECONDITION, as documented.
    let err = api
        .client
        .route(pb::RouteRequest {
            vip: pvip(VIP, 53, false),
            client_address: "198.18.1.7".into(),
            client_port: 40000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn invalid_explain_requests_get_their_codes() {
    let mut api = start(|_, _| {}).await;
    let c4 = sa("198.18.1.7:40000");
    let cases: [(Option<pb::Vip>, SocketAddr, u32, Code); 5] = [
        (None, c4, 0, Code::InvalidArgument),
        (
            pvip(VIP, 80, true),
            sa("[fd00:1::7]:1"),
            0,
            Code::InvalidArgument,
        ),
        (
            pvip(VIP6, 0, true),
            sa("[fd00:1::7]:1"),
            0,
            Code::InvalidArgument,
        ),
        (pvip(VIP, 80, true), c4, 81, Code::InvalidArgument),
        (pvip("198.18.100.99", 80, true), c4, 0, Code::NotFound),
    ];
    for (vip, client, dport, code) in cases {
        let err = explain(&mut api, vip.clone(), client, dport, false)
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            code,
            "{vip:?} {client} {dport}: {}",
            err.message()
        );
    }
}

/// `lbctl route --explain` in-process against the daemon.
async fn lbctl(api: &Api, args: &[&str]) -> (u8, String, String) {
    let mut argv = vec!["lbctl", "--api", api.uri.as_str(), "route"];
    argv.extend(args);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = lbctl::run_async(argv, &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[tokio::test]
async fn lbctl_route_explain_prints_the_same_answer() {
    let pinned = sa("198.18.1.7:40000");
    let a = VipSpec::new(ip(VIP), 80, Proto::Tcp);
    let mut api = start(|st, dp| pin4(st, dp, a, pinned, "198.19.0.12")).await;
    let rpc = explain(&mut api, pvip(VIP, 80, true), pinned, 0, false)
        .await
        .unwrap()
        .explanation
        .unwrap();

    let (code, out, err) = lbctl(
        &api,
        &[
            "198.18.100.10:80/tcp",
            "198.18.1.7:40000",
            "--explain",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["verdict"], "forward");
    assert_eq!(j["backend"], "198.19.0.12");
    assert_eq!(j["slot"], rpc.backend_slot);
    assert_eq!(j["matched"]["vip"], "198.18.100.10:80/tcp");
    assert_eq!(j["matched"]["all_ports"], false);
    assert_eq!(j["conn_table"]["lookup"], "hit");
    assert_eq!(j["conn_table"]["entry"]["slot"], rpc.backend_slot);
    assert_eq!(j["conn_table"]["entry"]["slot_address"], "198.19.0.12");
    assert!(j["ring"].is_null());
    let enc = rpc.encapsulation.as_ref().unwrap();
    assert_eq!(j["encapsulation"]["outer_source"], enc.outer_source);
    assert_eq!(j["encapsulation"]["outer_destination"], "198.19.0.12");
    assert_eq!(j["encapsulation"]["outer"], "ipv4");
    assert_eq!(j["encapsulation"]["inner_protocol"], 4);
    assert_eq!(out.lines().count(), 1, "one JSON line");

    let (code, text, err) = lbctl(
        &api,
        &["198.18.100.10:80/tcp", "198.18.1.7:40000", "--explain"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    for want in [
        "packet 198.18.1.7:40000 -> 198.18.100.10:80/tcp",
        "1. VIP      198.18.100.10:80/tcp (exact entry), flags none",
        "2. conntab  hit: entry slot",
        "3. ring     not consulted",
        &format!(
            "4. encap    IPv4 outer {} -> 198.19.0.12, protocol 4",
            enc.outer_source
        ),
        &format!(
            "verdict     XDP_TX to 198.19.0.12 (slot {})",
            rpc.backend_slot
        ),
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }

    // A SYN, on the all-ports VIP: --dport required, --syn only with --explain.
    let (code, text, err) = lbctl(
        &api,
        &[
            "[fd00:100::10]:0/tcp",
            "[fd00:1::7]:5555",
            "--dport",
            "443",
            "--explain",
            "--syn",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("(all-ports entry), flags no-sport"), "{text}");
    assert!(
        text.contains("not consulted: a TCP SYN always takes the ring"),
        "{text}"
    );
    assert!(text.contains("3. ring     hash 0x"), "{text}");
    assert!(text.contains("IPv6 outer fd00:5::"), "{text}");
    let (code, _, err) = lbctl(&api, &["198.18.100.10:80/tcp", "198.18.1.7:40000", "--syn"]).await;
    assert_eq!(code, 2, "--syn without --explain is a usage error: {err}");
}
