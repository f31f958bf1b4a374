//! The gRPC API over a real Unix socket, with the state on a fake data plane
//! (no root): every invalid call gets its precise status code and leaves the
//! state, the maps and the state file exactly as they were.

use std::path::PathBuf;

use lb_daemon::{
    dataplane::{FakeDataplane, Sizes},
    grpc::{LbService, Listener, StatusInfo, serve},
    state::{LbState, Model, Store},
};
use lb_proto::v1::{self as pb, load_balancer_client::LoadBalancerClient};
use tonic::{Code, transport::Channel};

struct Api {
    client: LoadBalancerClient<Channel>,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn sizes() -> Sizes {
    Sizes {
        ring_size: 13,
        max_vips: 3,
        max_backends: 8,
        conn_table: 16,
    }
}

async fn start() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let state = LbState::new(
        FakeDataplane::new(sizes()),
        Model::default(),
        Some(Store::new(dir.path())),
    )
    .unwrap();
    let svc = LbService::new(state, StatusInfo::default());
    let sock: PathBuf = dir.path().join("lb.sock");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let s2 = sock.clone();
    tokio::spawn(async move {
        serve(svc, Listener::Unix(s2), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let client = lbctl::client::connect(&format!("unix://{}", sock.display()), None)
        .await
        .expect("connect over the Unix socket");
    Api {
        client,
        dir,
        stop: Some(tx),
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn vip(addr: &str, port: u32, tcp: bool) -> Option<pb::Vip> {
    Some(pb::Vip {
        address: addr.into(),
        port,
        protocol: if tcp {
            pb::Protocol::Tcp
        } else {
            pb::Protocol::Udp
        } as i32,
    })
}

fn be(addr: &str, weight: Option<u32>) -> pb::Backend {
    pb::Backend {
        address: addr.into(),
        weight,
    }
}

/// Everything a rejected call must leave alone.
async fn snapshot(api: &mut Api) -> (Vec<pb::VipInfo>, String, Option<Vec<u8>>) {
    let vips = api
        .client
        .list_vips(pb::ListVipsRequest {})
        .await
        .unwrap()
        .into_inner()
        .vips;
    let gw = api
        .client
        .get_gateway(pb::GetGatewayRequest {})
        .await
        .unwrap()
        .into_inner()
        .mac;
    let state = std::fs::read(api.dir.path().join("state.json")).ok();
    (vips, gw, state)
}

macro_rules! rejected {
    ($api:expr, $code:expr, $call:expr) => {{
        let before = snapshot(&mut $api).await;
        let err = $call
            .await
            .expect_err(concat!("should be rejected: ", stringify!($call)));
        assert_eq!(
            err.code(),
            $code,
            "{}: {}",
            stringify!($call),
            err.message()
        );
        assert!(!err.message().is_empty(), "a reason is given");
        assert_eq!(
            snapshot(&mut $api).await,
            before,
            "state unchanged by {}",
            stringify!($call)
        );
    }};
}

#[tokio::test]
async fn invalid_calls_get_precise_codes_and_change_nothing() {
    let mut api = start().await;
    let c = api.client.clone();
    // Baseline: one VIP with two backends, one all-ports VIP fully drained.
    c.clone()
        .create_vip(pb::CreateVipRequest {
            vip: vip("198.18.100.10", 80, true),
            flags: vec![],
            backends: vec![be("198.19.0.11", None), be("198.19.0.12", Some(50))],
            health_check: None,
        })
        .await
        .unwrap();
    c.clone()
        .create_vip(pb::CreateVipRequest {
            vip: vip("198.18.100.20", 0, false),
            flags: vec![pb::VipFlag::NoSport as i32],
            backends: vec![be("198.19.0.21", Some(0))],
            health_check: None,
        })
        .await
        .unwrap();
    c.clone()
        .set_gateway(pb::SetGatewayRequest {
            mac: "02:00:00:00:00:01".into(),
        })
        .await
        .unwrap();

    let v1 = || vip("198.18.100.10", 80, true);
    let create = |v: Option<pb::Vip>, flags: Vec<i32>, backends: Vec<pb::Backend>| {
        let mut c = c.clone();
        async move {
            c.create_vip(pb::CreateVipRequest {
                vip: v,
                flags,
                backends,
                health_check: None,
            })
            .await
        }
    };
    use Code::*;
    rejected!(api, InvalidArgument, create(None, vec![], vec![]));
    rejected!(
        api,
        InvalidArgument,
        create(vip("not-an-ip", 80, true), vec![], vec![])
    );
    rejected!(
        api,
        InvalidArgument,
        create(vip("198.18.100.11", 70000, true), vec![], vec![])
    );
    rejected!(
        api,
        InvalidArgument,
        create(
            Some(pb::Vip {
                address: "198.18.100.11".into(),
                port: 80,
                protocol: 0
            }),
            vec![],
            vec![]
        )
    );
    rejected!(
        api,
        InvalidArgument,
        create(
            Some(pb::Vip {
                address: "198.18.100.11".into(),
                port: 80,
                protocol: 7
            }),
            vec![],
            vec![]
        )
    );
    rejected!(
        api,
        InvalidArgument,
        create(vip("198.18.100.11", 80, true), vec![99], vec![])
    );
    rejected!(
        api,
        InvalidArgument,
        create(vip("198.18.100.11", 80, true), vec![1, 1], vec![])
    );
    rejected!(api, AlreadyExists, create(v1(), vec![], vec![]));
    rejected!(
        api,
        InvalidArgument,
        create(vip("224.0.0.1", 80, true), vec![], vec![])
    );
    rejected!(
        api,
        InvalidArgument,
        create(vip("0.0.0.0", 80, true), vec![], vec![])
    );
    rejected!(
        api,
        InvalidArgument,
        create(vip("::ffff:198.18.100.11", 80, true), vec![], vec![])
    );
    rejected!(
        api,
        InvalidArgument,
        create(
            vip("198.18.100.11", 80, true),
            vec![],
            vec![be("198.19.0.11", Some(70000))]
        )
    );
    rejected!(
        api,
        InvalidArgument,
        create(
            vip("198.18.100.11", 80, true),
            vec![],
            vec![be("198.19.0.11", None), be("198.19.0.11", None)]
        )
    );
    rejected!(
        api,
        InvalidArgument,
        create(
            vip("198.18.100.11", 80, true),
            vec![],
            vec![be("not-ip", None)]
        )
    );

    let mut k = c.clone();
    rejected!(
        api,
        NotFound,
        k.delete_vip(pb::DeleteVipRequest {
            vip: vip("198.18.100.99", 80, true)
        })
    );
    rejected!(
        api,
        NotFound,
        k.get_vip(pb::GetVipRequest {
            vip: vip("198.18.100.10", 81, true)
        })
    );
    rejected!(
        api,
        NotFound,
        k.add_backend(pb::AddBackendRequest {
            vip: vip("198.18.100.99", 80, true),
            backend: Some(be("198.19.0.13", None)),
        })
    );
    rejected!(
        api,
        AlreadyExists,
        k.add_backend(pb::AddBackendRequest {
            vip: v1(),
            backend: Some(be("198.19.0.11", None))
        })
    );
    rejected!(
        api,
        InvalidArgument,
        k.add_backend(pb::AddBackendRequest {
            vip: v1(),
            backend: None
        })
    );
    rejected!(
        api,
        InvalidArgument,
        k.add_backend(pb::AddBackendRequest {
            vip: v1(),
            backend: Some(be("198.18.100.10", None))
        })
    );
    rejected!(
        api,
        FailedPrecondition,
        k.add_backend(pb::AddBackendRequest {
            vip: v1(),
            backend: Some(be("198.18.100.20", None))
        })
    );
    rejected!(
        api,
        NotFound,
        k.remove_backend(pb::RemoveBackendRequest {
            vip: v1(),
            address: "198.19.0.99".into()
        })
    );
    rejected!(
        api,
        InvalidArgument,
        k.set_backend_weight(pb::SetBackendWeightRequest {
            vip: v1(),
            address: "198.19.0.11".into(),
            weight: 65536,
        })
    );
    rejected!(
        api,
        NotFound,
        k.set_backend_weight(pb::SetBackendWeightRequest {
            vip: v1(),
            address: "198.19.0.99".into(),
            weight: 1,
        })
    );
    rejected!(
        api,
        InvalidArgument,
        k.replace_backends(pb::ReplaceBackendsRequest {
            vip: v1(),
            backends: vec![be("198.19.0.31", None), be("198.19.0.31", Some(3))],
            flags: None,
        })
    );
    for bad_flags in [vec![7], vec![0], vec![1, 1]] {
        rejected!(
            api,
            InvalidArgument,
            k.replace_backends(pb::ReplaceBackendsRequest {
                vip: v1(),
                backends: vec![be("198.19.0.31", None)],
                flags: Some(pb::VipFlagSet {
                    flags: bad_flags.clone()
                }),
            })
        );
    }
    rejected!(
        api,
        NotFound,
        k.list_backends(pb::ListBackendsRequest {
            vip: vip("198.18.100.10", 443, true)
        })
    );
    rejected!(
        api,
        InvalidArgument,
        k.set_gateway(pb::SetGatewayRequest {
            mac: "02:00:00:00:01".into()
        })
    );
    rejected!(
        api,
        InvalidArgument,
        k.set_gateway(pb::SetGatewayRequest {
            mac: "01:00:5e:00:00:01".into()
        })
    );
    rejected!(
        api,
        InvalidArgument,
        k.set_gateway(pb::SetGatewayRequest {
            mac: "00:00:00:00:00:00".into()
        })
    );
    rejected!(
        api,
        NotFound,
        k.get_stats(pb::GetStatsRequest {
            vip: vip("198.18.100.99", 80, true)
        })
    );
    rejected!(
        api,
        InvalidArgument,
        k.watch_stats(pb::WatchStatsRequest {
            interval_seconds: 4000,
            vip: None
        })
    );
    let route = |v: Option<pb::Vip>, client: &str, port: u32, dport: u32| {
        let mut c = c.clone();
        let client = client.to_string();
        async move {
            c.route(pb::RouteRequest {
                vip: v,
                client_address: client,
                client_port: port,
                destination_port: dport,
                ..Default::default()
            })
            .await
        }
    };
    rejected!(
        api,
        InvalidArgument,
        route(vip("198.18.100.20", 0, false), "198.18.1.7", 5000, 0)
    );
    rejected!(
        api,
        FailedPrecondition,
        route(vip("198.18.100.20", 0, false), "198.18.1.7", 5000, 53)
    );
    rejected!(
        api,
        NotFound,
        route(vip("198.18.100.30", 80, true), "198.18.1.7", 5000, 0)
    );
    rejected!(api, InvalidArgument, route(v1(), "fd00:1::7", 5000, 0));
    rejected!(api, InvalidArgument, route(v1(), "198.18.1.7", 70000, 0));
    rejected!(api, InvalidArgument, route(v1(), "198.18.1.7", 5000, 8080));

    // Capacity: the third VIP fits, the fourth does not; slots run out too.
    create(vip("198.18.100.30", 80, true), vec![], vec![])
        .await
        .unwrap();
    rejected!(
        api,
        ResourceExhausted,
        create(vip("198.18.100.40", 80, true), vec![], vec![])
    );
    for i in 0..4 {
        k.add_backend(pb::AddBackendRequest {
            vip: vip("198.18.100.30", 80, true),
            backend: Some(be(&format!("198.19.1.{}", i + 1), None)),
        })
        .await
        .unwrap();
    }
    rejected!(
        api,
        ResourceExhausted,
        k.add_backend(pb::AddBackendRequest {
            vip: vip("198.18.100.30", 80, true),
            backend: Some(be("198.19.1.9", None)),
        })
    );
}

#[tokio::test]
async fn valid_calls_do_what_they_say() {
    let api = start().await;
    let mut c = api.client.clone();
    let r = c
        .create_vip(pb::CreateVipRequest {
            vip: vip("fd00:100::10", 443, true),
            flags: vec![pb::VipFlag::NoConntrack as i32],
            backends: vec![be("fd00:19::12", None), be("198.19.0.11", Some(7))],
            health_check: None,
        })
        .await
        .unwrap()
        .into_inner()
        .vip
        .unwrap();
    assert_eq!(r.flags, vec![pb::VipFlag::NoConntrack as i32]);
    // Backends come back sorted by address; default weight 100.
    let addrs: Vec<_> = r
        .backends
        .iter()
        .map(|b| (b.address.as_str(), b.weight))
        .collect();
    assert_eq!(addrs, vec![("198.19.0.11", 7), ("fd00:19::12", 100)]);

    let v = vip("fd00:100::10", 443, true);
    let d = c
        .set_backend_weight(pb::SetBackendWeightRequest {
            vip: v.clone(),
            address: "fd00:19::12".into(),
            weight: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .backend
        .unwrap();
    assert_eq!(d.state, pb::BackendState::Draining as i32);
    // Only 198.19.0.11 is left in the ring: every route goes there.
    for port in [1000u32, 2000, 3000] {
        let r = c
            .route(pb::RouteRequest {
                vip: v.clone(),
                client_address: "fd00:1::7".into(),
                client_port: port,
                destination_port: 0,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.backend.unwrap().address, "198.19.0.11");
        assert!(r.ring_position < 13);
    }
    // Flags and backends in one ReplaceBackends: the VIP keeps its index and
    // its kept backends their slots; unset flags leave them as they are.
    let before = c
        .get_vip(pb::GetVipRequest { vip: v.clone() })
        .await
        .unwrap()
        .into_inner()
        .vip
        .unwrap();
    let same_backends = vec![be("198.19.0.11", Some(7)), be("fd00:19::12", Some(0))];
    c.replace_backends(pb::ReplaceBackendsRequest {
        vip: v.clone(),
        backends: same_backends.clone(),
        flags: Some(pb::VipFlagSet {
            flags: vec![pb::VipFlag::NoSport as i32],
        }),
    })
    .await
    .unwrap();
    let after = c
        .get_vip(pb::GetVipRequest { vip: v.clone() })
        .await
        .unwrap()
        .into_inner()
        .vip
        .unwrap();
    assert_eq!(after.flags, vec![pb::VipFlag::NoSport as i32]);
    assert_eq!(
        (after.index, &after.backends),
        (before.index, &before.backends)
    );
    c.replace_backends(pb::ReplaceBackendsRequest {
        vip: v.clone(),
        backends: same_backends,
        flags: None,
    })
    .await
    .unwrap();
    let kept = c
        .get_vip(pb::GetVipRequest { vip: v.clone() })
        .await
        .unwrap()
        .into_inner()
        .vip
        .unwrap();
    assert_eq!(kept.flags, vec![pb::VipFlag::NoSport as i32]);
    let mac = c
        .set_gateway(pb::SetGatewayRequest {
            mac: "02:AB:00:00:00:09".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .mac;
    assert_eq!(mac, "02:ab:00:00:00:09");
    let persisted = Store::new(api.dir.path()).load().unwrap().unwrap();
    assert_eq!(
        persisted.gateway().map(|m| m.to_string()).as_deref(),
        Some("02:ab:00:00:00:09"),
        "gateway persisted for the next start"
    );
    let st = c
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.vips.unwrap().used, 1);
    assert_eq!(st.backend_slots.unwrap().used, 2);
    assert_eq!(st.ring_size, 13);
    let stats = c
        .get_stats(pb::GetStatsRequest { vip: None })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert!(stats.counters.contains_key("drop_malformed"));
    assert_eq!(stats.vips.len(), 1);
    c.delete_vip(pb::DeleteVipRequest { vip: v }).await.unwrap();
    assert!(
        c.list_vips(pb::ListVipsRequest {})
            .await
            .unwrap()
            .into_inner()
            .vips
            .is_empty()
    );
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let api = start().await;
    let sock = api.dir.path().join("lb.sock");
    let channel = {
        let c = lbctl::client::connect(&format!("unix://{}", sock.display()), None)
            .await
            .unwrap();
        drop(c);
        // Reuse the connector through a fresh client for the health service.
        tonic::transport::Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_| {
                let p = sock.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(p).await?,
                    ))
                }
            }))
            .await
            .unwrap()
    };
    let mut h = tonic_health::pb::health_client::HealthClient::new(channel);
    let r = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: lb_proto::SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

/// SetHealthCheck: every invalid setting is refused with its precise code
/// and changes nothing (the check in effect, the backends' health, the
/// state file); GetHealth reports what was set.
#[tokio::test]
async fn health_checks_are_validated_and_reported() {
    let mut api = start().await;
    let c = api.client.clone();
    c.clone()
        .create_vip(pb::CreateVipRequest {
            vip: vip("198.18.100.10", 80, true),
            flags: vec![],
            backends: vec![be("198.19.0.11", None), be("198.19.0.12", Some(0))],
            health_check: None,
        })
        .await
        .unwrap();
    c.clone()
        .create_vip(pb::CreateVipRequest {
            vip: vip("198.18.100.20", 0, false),
            flags: vec![],
            backends: vec![be("198.19.0.21", None)],
            health_check: None,
        })
        .await
        .unwrap();
    let http = || pb::HealthCheck {
        kind: pb::HealthCheckKind::Http.into(),
        http_path: "/healthz".into(),
        ..Default::default()
    };
    let set = |v: Option<pb::Vip>, check: Option<pb::HealthCheck>| {
        let mut c = c.clone();
        async move {
            c.set_health_check(pb::SetHealthCheckRequest { vip: v, check })
                .await
        }
    };
    let v1 = || vip("198.18.100.10", 80, true);
    // A check in effect, so "changes nothing" means it stays.
    let set_ok = set(
        v1(),
        Some(pb::HealthCheck {
            interval_ms: Some(2000),
            ..http()
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(
        set_ok.vip.unwrap().health_check.unwrap().interval_ms,
        Some(2000)
    );

    use Code::*;
    let with = |f: fn(&mut pb::HealthCheck)| {
        let mut h = http();
        f(&mut h);
        Some(h)
    };
    let cases: Vec<(Code, Option<pb::Vip>, Option<pb::HealthCheck>)> = vec![
        (InvalidArgument, None, Some(http())),
        (InvalidArgument, v1(), with(|h| h.kind = 0)),
        (InvalidArgument, v1(), with(|h| h.kind = 99)),
        (InvalidArgument, v1(), with(|h| h.interval_ms = Some(0))),
        (
            InvalidArgument,
            v1(),
            with(|h| h.interval_ms = Some(3_600_001)),
        ),
        (InvalidArgument, v1(), with(|h| h.timeout_ms = Some(0))),
        (InvalidArgument, v1(), with(|h| h.timeout_ms = Some(1000))),
        (InvalidArgument, v1(), with(|h| h.rise = Some(0))),
        (InvalidArgument, v1(), with(|h| h.fall = Some(0))),
        (InvalidArgument, v1(), with(|h| h.fall = Some(101))),
        (InvalidArgument, v1(), with(|h| h.jitter_percent = Some(51))),
        (InvalidArgument, v1(), with(|h| h.mode = 9)),
        (
            InvalidArgument,
            v1(),
            with(|h| {
                h.overrides = vec![pb::HealthCheckOverride {
                    backend: "198.19.0.11".into(),
                    ..Default::default()
                }]
            }),
        ),
        (
            InvalidArgument,
            v1(),
            with(|h| {
                h.overrides = vec![pb::HealthCheckOverride {
                    backend: "not-an-address".into(),
                    port: Some(81),
                    ..Default::default()
                }]
            }),
        ),
        (
            InvalidArgument,
            v1(),
            with(|h| {
                h.overrides = vec![pb::HealthCheckOverride {
                    backend: "198.19.0.11".into(),
                    port: Some(70_000),
                    ..Default::default()
                }]
            }),
        ),
        (
            InvalidArgument,
            v1(),
            with(|h| {
                h.overrides = vec![pb::HealthCheckOverride {
                    backend: "198.19.0.11".into(),
                    http_path: Some("ready".into()),
                    ..Default::default()
                }]
            }),
        ),
        (
            InvalidArgument,
            v1(),
            with(|h| {
                let o = pb::HealthCheckOverride {
                    backend: "198.19.0.11".into(),
                    port: Some(81),
                    ..Default::default()
                };
                h.overrides = vec![o.clone(), o];
            }),
        ),
        (InvalidArgument, v1(), with(|h| h.port = Some(0))),
        (InvalidArgument, v1(), with(|h| h.port = Some(65_536))),
        (
            InvalidArgument,
            v1(),
            with(|h| h.http_path = "healthz".into()),
        ),
        (InvalidArgument, v1(), with(|h| h.http_path = "/a b".into())),
        (
            InvalidArgument,
            v1(),
            with(|h| h.http_expect_status = Some(600)),
        ),
        (
            InvalidArgument,
            v1(),
            with(|h| h.http_host = Some("x\r\nInjected: 1".into())),
        ),
        (
            InvalidArgument,
            v1(),
            with(|h| h.udp_payload = b"ping".to_vec()),
        ),
        (
            InvalidArgument,
            v1(),
            Some(pb::HealthCheck {
                kind: pb::HealthCheckKind::Udp.into(),
                ..Default::default()
            }),
        ),
        (
            InvalidArgument,
            v1(),
            Some(pb::HealthCheck {
                kind: pb::HealthCheckKind::Udp.into(),
                udp_payload: vec![b'x'; 1025],
                ..Default::default()
            }),
        ),
        (InvalidArgument, v1(), with(|h| h.initial = 7)),
        // An all-port VIP has no port of its own to probe.
        (
            InvalidArgument,
            vip("198.18.100.20", 0, false),
            Some(http()),
        ),
        // Checked before the VIP is looked up.
        (
            InvalidArgument,
            vip("198.18.100.99", 80, true),
            with(|h| h.rise = Some(0)),
        ),
        (NotFound, vip("198.18.100.99", 80, true), Some(http())),
    ];
    assert!(cases.len() >= 12);
    for (code, v, check) in cases {
        let desc = format!("{v:?} {check:?}");
        let before = snapshot(&mut api).await;
        let err = set(v, check).await.expect_err(&desc);
        assert_eq!(err.code(), code, "{desc}: {}", err.message());
        assert!(!err.message().is_empty());
        assert_eq!(
            snapshot(&mut api).await,
            before,
            "state unchanged by {desc}"
        );
    }
    rejected!(
        api,
        NotFound,
        c.clone().get_health(pb::GetHealthRequest {
            vip: vip("198.18.100.99", 80, true)
        })
    );
    rejected!(
        api,
        InvalidArgument,
        c.clone().get_health(pb::GetHealthRequest { vip: None })
    );

    // GetHealth: the check, everyone up and serving (the drained one not
    // serving), no probes yet (no monitor runs in this test).
    let h = c
        .clone()
        .get_health(pb::GetHealthRequest { vip: v1() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.check.as_ref().unwrap().interval_ms, Some(2000));
    assert!(!h.fail_open);
    let states: Vec<(&str, i32, bool)> = h
        .backends
        .iter()
        .map(|b| (b.address.as_str(), b.state, b.serving))
        .collect();
    let up = pb::HealthState::Up as i32;
    assert_eq!(
        states,
        [("198.19.0.11", up, true), ("198.19.0.12", up, false)]
    );
    let state_file = std::fs::read_to_string(api.dir.path().join("state.json")).unwrap();
    assert!(state_file.contains("\"kind\": \"http\""), "{state_file}");

    // CreateVip with a check: one change, the backends start in the
    // check's `initial` state; a refused check creates nothing.
    let v3 = || vip("198.18.100.30", 80, true);
    let bad = c
        .clone()
        .create_vip(pb::CreateVipRequest {
            vip: v3(),
            flags: vec![],
            backends: vec![be("198.19.0.31", None)],
            health_check: Some(pb::HealthCheck {
                interval_ms: Some(0),
                ..http()
            }),
        })
        .await
        .expect_err("interval 0");
    assert_eq!(bad.code(), InvalidArgument, "{}", bad.message());
    assert!(bad.message().contains("interval"), "{}", bad.message());
    rejected!(
        api,
        NotFound,
        c.clone().get_vip(pb::GetVipRequest { vip: v3() })
    );
    c.clone()
        .create_vip(pb::CreateVipRequest {
            vip: v3(),
            flags: vec![],
            backends: vec![be("198.19.0.31", None), be("198.19.0.32", None)],
            health_check: Some(pb::HealthCheck {
                initial: pb::HealthState::Down.into(),
                ..http()
            }),
        })
        .await
        .unwrap();
    let h3 = c
        .clone()
        .get_health(pb::GetHealthRequest { vip: v3() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h3.check.unwrap().http_path, "/healthz");
    assert!(
        h3.backends
            .iter()
            .all(|b| b.state == pb::HealthState::Down as i32),
        "{:?}",
        h3.backends
    );
    assert!(h3.fail_open, "every backend down: the VIP fails open");
    c.clone()
        .delete_vip(pb::DeleteVipRequest { vip: v3() })
        .await
        .unwrap();

    // Via the VIP, with one backend's port overridden: stored and
    // reported as given (the address in canonical form), and persisted.
    let with_override = pb::HealthCheck {
        mode: pb::ProbeMode::ViaVip.into(),
        overrides: vec![pb::HealthCheckOverride {
            backend: "198.19.0.12".into(),
            port: Some(8081),
            http_path: Some("/ready".into()),
            ..Default::default()
        }],
        interval_ms: Some(2000),
        ..http()
    };
    set(v1(), Some(with_override)).await.unwrap();
    let h = c
        .clone()
        .get_health(pb::GetHealthRequest { vip: v1() })
        .await
        .unwrap()
        .into_inner();
    let got = h.check.unwrap();
    assert_eq!(got.mode, pb::ProbeMode::ViaVip as i32);
    assert_eq!(
        got.overrides,
        [pb::HealthCheckOverride {
            backend: "198.19.0.12".into(),
            port: Some(8081),
            http_path: Some("/ready".into()),
            http_host: None,
        }]
    );
    let state_file = std::fs::read_to_string(api.dir.path().join("state.json")).unwrap();
    assert!(
        state_file.contains("via-vip") && state_file.contains("/ready"),
        "{state_file}"
    );

    // Kind NONE (or no check at all) removes it.
    set(
        v1(),
        Some(pb::HealthCheck {
            kind: pb::HealthCheckKind::None.into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let h = c
        .clone()
        .get_health(pb::GetHealthRequest { vip: v1() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.check, None);
}
