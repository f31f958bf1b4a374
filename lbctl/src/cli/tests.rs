//! Error lines, exit statuses, and `lbctl` end to end against a fake
//! daemon on a real Unix socket.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
};

use lb_proto::v1::{
    load_balancer_server::{LoadBalancer, LoadBalancerServer},
    *,
};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, transport::Server};

use super::output::tests::{backend, vip};
use super::*;

#[test]
fn status_lines() {
    let s = Status::not_found("vip 198.18.0.10:80/tcp does not exist");
    assert_eq!(
        status_line(&s),
        "NOT_FOUND: vip 198.18.0.10:80/tcp does not exist"
    );
    let e = CliError::Status(s);
    assert_eq!(e.exit_code(), EXIT_REJECTED);
    assert_eq!(e.line(), "NOT_FOUND: vip 198.18.0.10:80/tcp does not exist");

    assert_eq!(
        status_line(&Status::invalid_argument("weight 70000\n  above 65535\n")),
        "INVALID_ARGUMENT: weight 70000 above 65535"
    );
    assert_eq!(
        status_line(&Status::resource_exhausted("")),
        "RESOURCE_EXHAUSTED"
    );

    // A status made on the client from a transport failure: the cause is
    // kept, and the call counts as a connection failure.
    let s = Status::from_error(Box::new(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection reset by peer",
    )));
    let line = status_line(&s);
    assert!(line.contains("connection reset by peer"), "{line}");
    assert!(!line.contains('\n'));
    assert_eq!(CliError::Status(s).exit_code(), EXIT_CONNECT);
    let s = Status::unavailable("daemon is shutting down");
    assert_eq!(CliError::Status(s).exit_code(), EXIT_CONNECT);
}

#[test]
fn code_names_are_grpc_spelling() {
    let all = [
        (Code::Ok, "OK"),
        (Code::Cancelled, "CANCELLED"),
        (Code::Unknown, "UNKNOWN"),
        (Code::InvalidArgument, "INVALID_ARGUMENT"),
        (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
        (Code::NotFound, "NOT_FOUND"),
        (Code::AlreadyExists, "ALREADY_EXISTS"),
        (Code::PermissionDenied, "PERMISSION_DENIED"),
        (Code::ResourceExhausted, "RESOURCE_EXHAUSTED"),
        (Code::FailedPrecondition, "FAILED_PRECONDITION"),
        (Code::Aborted, "ABORTED"),
        (Code::OutOfRange, "OUT_OF_RANGE"),
        (Code::Unimplemented, "UNIMPLEMENTED"),
        (Code::Internal, "INTERNAL"),
        (Code::Unavailable, "UNAVAILABLE"),
        (Code::DataLoss, "DATA_LOSS"),
        (Code::Unauthenticated, "UNAUTHENTICATED"),
    ];
    for (i, (code, name)) in all.into_iter().enumerate() {
        assert_eq!(code as usize, i);
        assert_eq!(code_name(code), name);
    }
}

#[test]
fn connect_errors_exit_by_kind() {
    let e = CliError::Connect(ClientError::NoSocket {
        path: "/run/lb/lb.sock".into(),
    });
    assert_eq!(e.exit_code(), EXIT_CONNECT);
    assert_eq!(
        e.line(),
        "is lb-daemon running? no socket at /run/lb/lb.sock"
    );
    let e = CliError::Connect(ClientError::TlsRequired {
        uri: "tcp://h:1".into(),
    });
    assert_eq!(e.exit_code(), EXIT_USAGE);
    assert_eq!(CliError::BadResponse("x".into()).exit_code(), EXIT_REJECTED);
}

/// Runs lbctl synchronously, capturing its output.
fn lbctl(args: &[&str]) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = std::iter::once("lbctl").chain(args.iter().copied());
    let code = run_with(argv, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn usage_errors_exit_2_before_connecting() {
    // No daemon anywhere: these must fail on the command line alone.
    let api = "unix:///nonexistent/lb.sock";
    for args in [
        &["--api", api, "vip", "add", "198.18.0.10:80"][..],
        &[
            "--api",
            api,
            "backend",
            "weight",
            "1.2.3.4:80/tcp",
            "10.0.0.1",
            "65536",
        ],
        &["--api", api, "route", "198.18.0.10:0/tcp", "203.0.113.7:1"],
        &[
            "--api",
            api,
            "route",
            "198.18.0.10:80/tcp",
            "203.0.113.7:1",
            "--dport",
            "81",
        ],
        &[
            "--api",
            api,
            "route",
            "198.18.0.10:80/tcp",
            "[2001:db8::7]:1",
        ],
        &["--api", "http://x:1", "status"],
        // health set: one kind, and what the command line alone can tell.
        &["--api", api, "health", "set", "198.18.0.10:80/tcp"],
        &[
            "--api",
            api,
            "health",
            "set",
            "198.18.0.10:80/tcp",
            "--tcp",
            "--http",
            "/",
        ],
        &[
            "--api",
            api,
            "health",
            "set",
            "198.18.0.10:80/tcp",
            "--http",
            "/",
            "--expect",
            "ok",
        ],
        &[
            "--api",
            api,
            "health",
            "set",
            "198.18.0.10:80/tcp",
            "--tcp",
            "--expect",
            "200",
        ],
        &[
            "--api",
            api,
            "health",
            "set",
            "198.18.0.10:80/tcp",
            "--tcp",
            "--interval",
            "1",
        ],
        &[
            "--api",
            api,
            "health",
            "set",
            "198.18.0.10:80/tcp",
            "--tcp",
            "--host",
            "x",
        ],
        &[
            "--api",
            api,
            "health",
            "set",
            "198.18.0.10:80/tcp",
            "--tcp",
            "--initial",
            "maybe",
        ],
        &[
            "--api",
            api,
            "health",
            "set",
            "198.18.0.10:80/tcp",
            "--tcp",
            "--mode",
            "via-router",
        ],
        &[
            "--api",
            api,
            "health",
            "set",
            "198.18.0.10:80/tcp",
            "--tcp",
            "--override",
            "198.19.0.12,weight=1",
        ],
        &[
            "--api",
            api,
            "health",
            "set",
            "198.18.0.10:80/tcp",
            "--tcp",
            "--override",
            "198.19.0.12,port=eighty",
        ],
    ] {
        let (code, out, err) = lbctl(args);
        assert_eq!(code, EXIT_USAGE, "{args:?}: {err}");
        assert!(out.is_empty());
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    let (_, _, err) = lbctl(&["--api", api, "route", "198.18.0.10:0/tcp", "203.0.113.7:1"]);
    assert!(err.contains("--dport"), "{err}");

    let (code, out, err) = lbctl(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Usage: lbctl"), "{out}");
    assert!(err.is_empty());

    // TLS options with a Unix socket: refused by the client, still usage.
    let (code, _, err) = lbctl(&["--api", api, "--ca", "/x.pem", "status"]);
    assert_eq!(code, EXIT_USAGE);
    assert_eq!(
        err,
        format!(
            "lbctl: TLS options (--ca, --cert, --key, --tls-domain) apply to tcp:// APIs only, not {api}\n"
        )
    );
}

#[test]
fn missing_socket_exits_3_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("lb.sock");
    let api = format!("unix://{}", sock.display());
    let (code, out, err) = lbctl(&["--api", &api, "vip", "list"]);
    assert_eq!(code, EXIT_CONNECT);
    assert!(out.is_empty());
    assert_eq!(
        err,
        format!(
            "lbctl: is lb-daemon running? no socket at {}\n",
            sock.display()
        )
    );
}

// ---- a fake daemon -------------------------------------------------------

type Reply<T> = Result<Response<T>, Status>;

/// Answers from fixed data and records the mutating calls it received.
#[derive(Default)]
struct Fake {
    calls: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

fn not_found(vip: Option<&Vip>) -> Status {
    Status::not_found(format!("vip {} does not exist", output::vip_text(vip)))
}

#[tonic::async_trait]
impl LoadBalancer for Fake {
    async fn set_health_check(
        &self,
        _: Request<lb_proto::v1::SetHealthCheckRequest>,
    ) -> Reply<lb_proto::v1::SetHealthCheckResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_health(
        &self,
        _: Request<lb_proto::v1::GetHealthRequest>,
    ) -> Reply<lb_proto::v1::GetHealthResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn create_vip(&self, req: Request<CreateVipRequest>) -> Reply<CreateVipResponse> {
        let r = req.into_inner();
        self.record(format!(
            "create {} flags={:?} backends={}",
            output::vip_text(r.vip.as_ref()),
            r.flags,
            r.backends.len()
        ));
        Ok(Response::new(CreateVipResponse {
            vip: Some(VipInfo {
                vip: r.vip,
                flags: r.flags,
                backends: vec![],
                index: 0,
                ring_fingerprint: String::new(),
                ..Default::default()
            }),
        }))
    }
    async fn delete_vip(&self, req: Request<DeleteVipRequest>) -> Reply<DeleteVipResponse> {
        Err(not_found(req.get_ref().vip.as_ref()))
    }
    async fn get_vip(&self, _: Request<GetVipRequest>) -> Reply<GetVipResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_vips(&self, _: Request<ListVipsRequest>) -> Reply<ListVipsResponse> {
        Ok(Response::new(ListVipsResponse {
            vips: vec![
                VipInfo {
                    vip: vip("198.18.0.10", 80, Protocol::Tcp),
                    flags: vec![],
                    backends: vec![backend("198.19.0.11", 100, 0)],
                    index: 0,
                    ring_fingerprint: String::new(),
                    ..Default::default()
                },
                VipInfo {
                    vip: vip("2001:db8::10", 53, Protocol::Udp),
                    flags: vec![VipFlag::NoConntrack.into()],
                    backends: vec![backend("2001:db8::11", 0, 1)],
                    index: 1,
                    ring_fingerprint: String::new(),
                    ..Default::default()
                },
            ],
        }))
    }
    async fn add_backend(&self, req: Request<AddBackendRequest>) -> Reply<AddBackendResponse> {
        let r = req.into_inner();
        let b = r.backend.unwrap_or_default();
        self.record(format!(
            "add {} {} weight={:?}",
            output::vip_text(r.vip.as_ref()),
            b.address,
            b.weight
        ));
        Ok(Response::new(AddBackendResponse {
            backend: Some(backend(&b.address, b.weight.unwrap_or(100), 5)),
        }))
    }
    async fn remove_backend(
        &self,
        req: Request<RemoveBackendRequest>,
    ) -> Reply<RemoveBackendResponse> {
        let r = req.into_inner();
        self.record(format!(
            "remove {} {}",
            output::vip_text(r.vip.as_ref()),
            r.address
        ));
        Ok(Response::new(RemoveBackendResponse {}))
    }
    async fn set_backend_weight(
        &self,
        req: Request<SetBackendWeightRequest>,
    ) -> Reply<SetBackendWeightResponse> {
        let r = req.into_inner();
        self.record(format!(
            "weight {} {} {}",
            output::vip_text(r.vip.as_ref()),
            r.address,
            r.weight
        ));
        Ok(Response::new(SetBackendWeightResponse {
            backend: Some(backend(&r.address, r.weight, 5)),
        }))
    }
    async fn replace_backends(
        &self,
        _: Request<ReplaceBackendsRequest>,
    ) -> Reply<ReplaceBackendsResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_backends(
        &self,
        req: Request<ListBackendsRequest>,
    ) -> Reply<ListBackendsResponse> {
        Err(not_found(req.get_ref().vip.as_ref()))
    }
    async fn get_stats(&self, _: Request<GetStatsRequest>) -> Reply<GetStatsResponse> {
        Err(Status::unimplemented("fake"))
    }

    type WatchStatsStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<WatchStatsResponse, Status>> + Send>>;

    async fn watch_stats(&self, req: Request<WatchStatsRequest>) -> Reply<Self::WatchStatsStream> {
        let r = req.into_inner();
        self.record(format!(
            "watch {} {}",
            r.interval_seconds,
            output::vip_text(r.vip.as_ref())
        ));
        // Two samples, then the stream ends as when the daemon stops.
        let msgs = (1..=2u64).map(|i| {
            Ok(WatchStatsResponse {
                stats: Some(StatsSnapshot {
                    unix_time_ms: i * 1000,
                    counters: [("rx".to_owned(), i * 10)].into_iter().collect(),
                    counter_rates: [("rx".to_owned(), 10.0)].into_iter().collect(),
                    vips: vec![],
                    interval_seconds: 1.0,
                }),
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(msgs))))
    }
    type CaptureStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<CaptureResponse, Status>> + Send>>;

    async fn capture(&self, req: Request<CaptureRequest>) -> Reply<Self::CaptureStream> {
        let r = req.into_inner();
        self.record(format!(
            "capture {} backend={} count={} snaplen={} drops={} sent={}",
            output::vip_text(r.vip.as_ref()),
            r.backend,
            r.count,
            r.snaplen,
            r.drops_only,
            r.sent
        ));
        // A received frame and its sent copy, then the stream ends.
        let msgs = [false, true].map(|sent| {
            Ok(CaptureResponse {
                unix_time_ns: 1_700_000_000_000_000_000,
                sent,
                orig_len: 64,
                data: vec![0xab; 60],
                verdict: "tx".into(),
                sent_to: "198.19.0.11".into(),
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(msgs))))
    }
    async fn get_gateway(&self, _: Request<GetGatewayRequest>) -> Reply<GetGatewayResponse> {
        Ok(Response::new(GetGatewayResponse {
            mac: "02:00:00:00:00:01".into(),
        }))
    }
    async fn set_gateway(&self, req: Request<SetGatewayRequest>) -> Reply<SetGatewayResponse> {
        let mac = req.into_inner().mac;
        self.record(format!("gateway {mac}"));
        Ok(Response::new(SetGatewayResponse { mac }))
    }
    async fn get_status(&self, _: Request<GetStatusRequest>) -> Reply<GetStatusResponse> {
        Err(Status::unavailable("daemon is starting"))
    }
    async fn route(&self, req: Request<RouteRequest>) -> Reply<RouteResponse> {
        let r = req.into_inner();
        self.record(format!(
            "route {} {} {} {}",
            output::vip_text(r.vip.as_ref()),
            r.client_address,
            r.client_port,
            r.destination_port
        ));
        Ok(Response::new(RouteResponse {
            backend: Some(backend("198.19.0.11", 100, 0)),
            ring_position: 17,
            flow_hash: 65_554,
            explanation: None,
        }))
    }
}

/// The fake daemon on a Unix socket in a temporary directory, served by a
/// runtime of its own so that the synchronous `run_with` can be called from
/// the test thread.
struct Daemon {
    api: String,
    calls: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lb.sock");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = {
            let _ctx = runtime.enter();
            tokio::net::UnixListener::bind(&path).unwrap()
        };
        let fake = Fake::default();
        let calls = fake.calls.clone();
        runtime.spawn(
            Server::builder()
                .add_service(LoadBalancerServer::new(fake))
                .serve_with_incoming(UnixListenerStream::new(listener)),
        );
        Self {
            api: format!("unix://{}", path.display()),
            calls,
            _runtime: runtime,
            _dir: dir,
        }
    }

    fn lbctl(&self, args: &[&str]) -> (u8, String, String) {
        let mut all = vec!["--api", self.api.as_str()];
        all.extend_from_slice(args);
        lbctl(&all)
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

#[test]
fn end_to_end_over_a_unix_socket() {
    let d = Daemon::start();

    let (code, out, err) = d.lbctl(&["vip", "list", "--json"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        concat!(
            r#"[{"vip":"198.18.0.10:80/tcp","flags":[],"backends":["#,
            r#"{"address":"198.19.0.11","weight":100,"slot":0,"state":"active","health":"up","health_reason":"initial","health_since_unix_ms":0}],"ring_fingerprint":""},"#,
            r#"{"vip":"[2001:db8::10]:53/udp","flags":["no-conntrack"],"backends":["#,
            r#"{"address":"2001:db8::11","weight":0,"slot":1,"state":"draining","health":"up","health_reason":"initial","health_since_unix_ms":0}],"ring_fingerprint":""}]"#,
            "\n"
        )
    );

    let (code, out, err) = d.lbctl(&["vip", "list"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        concat!(
            "VIP                    FLAGS\n",
            "  -> BACKEND           WEIGHT  SLOT  STATE\n",
            "198.18.0.10:80/tcp     -\n",
            "  -> 198.19.0.11          100     0  active\n",
            "[2001:db8::10]:53/udp  no-conntrack\n",
            "  -> 2001:db8::11           0     1  draining\n",
        )
    );

    // The NOT_FOUND path: one line, the code name and the daemon's words.
    let (code, out, err) = d.lbctl(&["vip", "del", "198.18.0.99:80/tcp"]);
    assert_eq!(code, EXIT_REJECTED);
    assert!(out.is_empty());
    assert_eq!(
        err,
        "lbctl: NOT_FOUND: vip 198.18.0.99:80/tcp does not exist\n"
    );
    let (code, _, err) = d.lbctl(&["backend", "list", "[2001:db8::99]:80/tcp", "--json"]);
    assert_eq!(code, EXIT_REJECTED);
    assert_eq!(
        err,
        "lbctl: NOT_FOUND: vip [2001:db8::99]:80/tcp does not exist\n"
    );

    // UNAVAILABLE from the daemon counts with connection failures.
    let (code, _, err) = d.lbctl(&["status"]);
    assert_eq!(code, EXIT_CONNECT);
    assert_eq!(err, "lbctl: UNAVAILABLE: daemon is starting\n");

    // Mutations: silent on success; the daemon saw what was meant.
    for args in [
        &[
            "vip",
            "add",
            "[2001:db8::20]:0/tcp",
            "--no-conntrack",
            "--no-sport",
        ][..],
        &["backend", "add", "198.18.0.10:80/tcp", "[2001:db8::11]"],
        &[
            "backend",
            "add",
            "198.18.0.10:80/tcp",
            "198.19.0.12",
            "--weight",
            "7",
        ],
        &[
            "backend",
            "weight",
            "198.18.0.10:80/tcp",
            "198.19.0.12",
            "0",
        ],
        &["backend", "del", "198.18.0.10:80/tcp", "198.19.0.12"],
        &["gateway", "set", "02:AA:00:00:00:01"],
    ] {
        let (code, out, err) = d.lbctl(args);
        assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""), "{args:?}");
    }
    assert_eq!(
        d.calls(),
        [
            "create [2001:db8::20]:0/tcp flags=[1, 2] backends=0",
            "add 198.18.0.10:80/tcp 2001:db8::11 weight=Some(100)",
            "add 198.18.0.10:80/tcp 198.19.0.12 weight=Some(7)",
            "weight 198.18.0.10:80/tcp 198.19.0.12 0",
            "remove 198.18.0.10:80/tcp 198.19.0.12",
            "gateway 02:aa:00:00:00:01",
        ]
    );

    let (code, out, _) = d.lbctl(&["gateway", "get"]);
    assert_eq!((code, out.as_str()), (0, "02:00:00:00:00:01\n"));

    let (code, out, err) = d.lbctl(&[
        "route",
        "198.18.0.10:0/tcp",
        "203.0.113.7:40000",
        "--dport",
        "443",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        concat!(
            r#"{"vip":"198.18.0.10:0/tcp","client":"203.0.113.7:40000","destination_port":443,"#,
            r#""backend":"198.19.0.11","slot":0,"ring_position":17,"flow_hash":65554}"#,
            "\n"
        )
    );
    assert_eq!(d.calls(), ["route 198.18.0.10:0/tcp 203.0.113.7 40000 443"]);

    // --watch: one JSON object per line per message, until the stream ends.
    let (code, out, err) = d.lbctl(&["stats", "--watch", "1", "--json", "198.18.0.10:80/tcp"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[1]["counters"]["rx"], 20);
    assert_eq!(lines[1]["counter_rates"]["rx"], 10.0);
    assert_eq!(lines[1]["interval_seconds"], 1.0);
    assert_eq!(d.calls(), ["watch 1 198.18.0.10:80/tcp"]);
}

#[tokio::test]
async fn run_async_works_inside_a_runtime() {
    fn assert_send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let api = format!("unix://{}", dir.path().join("none.sock").display());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let fut = run_async(
        ["lbctl", "--api", &api, "gateway", "get"],
        &mut out,
        &mut err,
    );
    assert_send(&fut);
    assert_eq!(fut.await, EXIT_CONNECT);
    assert!(
        String::from_utf8(err)
            .unwrap()
            .starts_with("lbctl: is lb-daemon running?")
    );
}

// ---- TCP with TLS and mutual TLS ----------------------------------------

/// Makes a CA, a server certificate for 127.0.0.1 and `lb.test`, and a
/// client certificate, with the openssl command (scripts/setup.sh installs
/// it). Without it the test fails, saying so: it never passes by skipping.
fn make_pki(dir: &std::path::Path) {
    let out = std::process::Command::new("sh")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pki.sh"))
        .current_dir(dir)
        .output()
        .expect("sh tests/pki.sh");
    assert!(
        out.status.success(),
        "making test certificates needs openssl (scripts/setup.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tcp_with_mutual_tls() {
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};

    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
    let path = |f: &str| dir.path().join(f).display().to_string();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let api = format!("tcp://{}", listener.local_addr().unwrap());
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(read("server.pem"), read("server.key")))
        .client_ca_root(Certificate::from_pem(read("ca.pem")));
    let server = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(LoadBalancerServer::new(Fake::default()))
        .serve_with_incoming(TcpListenerStream::new(listener));
    runtime.spawn(server);

    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client.key"));
    let base = ["--api", &api, "--ca", &ca];

    // With the client certificate: served.
    let mut args = base.to_vec();
    args.extend(["--cert", &cert, "--key", &key, "gateway", "get"]);
    let (code, out, err) = lbctl(&args);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "02:00:00:00:00:01\n", "")
    );

    // Checked against the DNS name in the certificate instead of the IP.
    let mut args = base.to_vec();
    args.extend(["--cert", &cert, "--key", &key, "--tls-domain", "lb.test"]);
    args.extend(["gateway", "get"]);
    assert_eq!(lbctl(&args).0, 0);

    // A name the certificate does not carry: the daemon is not trusted.
    let mut args = base.to_vec();
    args.extend(["--cert", &cert, "--key", &key, "--tls-domain", "other.test"]);
    args.extend(["gateway", "get"]);
    let (code, _, err) = lbctl(&args);
    assert_eq!(code, EXIT_CONNECT, "{err}");
    assert!(
        err.starts_with(&format!("lbctl: cannot connect to {api}: ")),
        "{err}"
    );
    assert!(err.contains("certificate"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // Without a client certificate the mutual-TLS listener refuses us.
    let mut args = base.to_vec();
    args.extend(["gateway", "get"]);
    let (code, _, err) = lbctl(&args);
    assert_eq!(code, EXIT_CONNECT, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.ends_with("give --cert and --key)\n"), "{err}");
}

#[test]
fn every_api_counts_wherever_it_is_given() {
    let argv = |v: &[&str]| -> Vec<OsString> {
        std::iter::once("lbctl")
            .chain(v.iter().copied())
            .map(OsString::from)
            .collect()
    };
    let a = parse_args(argv(&[
        "--api",
        "unix:///a.sock",
        "apply",
        "f.toml",
        "--api=unix:///b.sock",
        "--api",
        "unix:///c.sock",
    ]))
    .unwrap();
    assert_eq!(
        a.api,
        ["unix:///a.sock", "unix:///b.sock", "unix:///c.sock"]
    );
    // Once, on either side, is still one node.
    for v in [
        &["--api", "unix:///a.sock", "export"][..],
        &["export", "--api", "unix:///a.sock"],
    ] {
        assert_eq!(parse_args(argv(v)).unwrap().api(), "unix:///a.sock");
    }
    // Twice for any other command: every node too, however it is spread.
    let a = parse_args(argv(&[
        "--api",
        "unix:///a.sock",
        "vip",
        "list",
        "--api",
        "unix:///b.sock",
    ]))
    .unwrap();
    assert_eq!(a.api, ["unix:///a.sock", "unix:///b.sock"]);
    // Except what streams or needs no node: a usage error.
    for v in [
        &[
            "--api",
            "unix:///a",
            "--api",
            "unix:///b",
            "stats",
            "--watch",
            "1",
        ][..],
        &[
            "--api",
            "unix:///a",
            "--api",
            "unix:///b",
            "completions",
            "bash",
        ],
        &["--api", "unix:///a", "man", "/tmp/x", "--api", "unix:///b"],
    ] {
        let e = parse_args(argv(v)).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{v:?}");
    }
}

#[test]
fn several_nodes_are_each_reported() {
    let (d1, d2) = (Daemon::start(), Daemon::start());
    let dir = tempfile::tempdir().unwrap();
    let gone = format!("unix://{}", dir.path().join("none.sock").display());

    // A change made on every node: each reported, each daemon called.
    let (code, out, err) = lbctl(&[
        "--api",
        &d1.api,
        "--api",
        &d2.api,
        "backend",
        "weight",
        "198.18.0.10:80/tcp",
        "198.19.0.12",
        "0",
    ]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        format!(
            "node {}: ok\nnode {}: ok\nnodes: 2: 2 ok, 0 failed\n",
            d1.api, d2.api
        )
    );
    for d in [&d1, &d2] {
        assert_eq!(d.calls(), ["weight 198.18.0.10:80/tcp 198.19.0.12 0"]);
    }

    // A node that refuses and one that cannot be reached do not stop the
    // others; the status is the first failure's, stderr says how many.
    let (code, out, err) = lbctl(&[
        "--api",
        &d1.api,
        "--api",
        &gone,
        "--api",
        &d2.api,
        "vip",
        "del",
        "198.18.0.99:80/tcp",
    ]);
    assert_eq!(code, EXIT_REJECTED);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "node {}: failed: NOT_FOUND: vip 198.18.0.99:80/tcp does not exist",
            d1.api
        )
    );
    assert!(lines[1].starts_with(&format!("node {gone}: failed: is lb-daemon running?")));
    assert_eq!(lines[3], "nodes: 3: 0 ok, 3 failed");
    assert_eq!(
        err,
        format!("lbctl: 3 of 3 nodes failed (first: {})\n", d1.api)
    );
    let (code, _, _) = lbctl(&[
        "--api",
        &gone,
        "--api",
        &d2.api,
        "backend",
        "weight",
        "198.18.0.10:80/tcp",
        "198.19.0.12",
        "0",
    ]);
    assert_eq!(
        code, EXIT_CONNECT,
        "the first failure was a connection failure"
    );
    assert_eq!(
        d2.calls(),
        ["weight 198.18.0.10:80/tcp 198.19.0.12 0"],
        "the reachable node was still called"
    );

    // Read commands: each node's own output, or one JSON report.
    let (code, out, _) = lbctl(&["--api", &d1.api, "--api", &d2.api, "vip", "list", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(v["nodes"][1]["api"], d2.api.as_str());
    assert_eq!(v["nodes"][1]["ok"], true);
    assert_eq!(v["nodes"][1]["output"][0]["vip"], "198.18.0.10:80/tcp");
    assert!(v.get("rings_agree").is_none());
}

#[test]
fn capture_writes_pcapng_with_comments_and_refuses_bad_arguments() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.pcapng");
    let f = file.to_str().unwrap();
    let (code, out, err) = d.lbctl(&[
        "capture",
        "198.18.0.10:80/tcp",
        "--backend",
        "198.19.0.11",
        "--count",
        "5",
        "--snaplen",
        "128",
        "--drops-only",
        "--sent",
        "-w",
        f,
    ]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, format!("2 frames written to {f}\n"));
    assert_eq!(
        d.calls(),
        ["capture 198.18.0.10:80/tcp backend=198.19.0.11 count=5 snaplen=128 drops=true sent=true"]
    );
    let bytes = std::fs::read(&file).unwrap();
    // Section header, interface, two packets.
    assert_eq!(&bytes[0..4], &0x0A0D_0D0Au32.to_le_bytes());
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("lb: received verdict=tx backend=198.19.0.11"));
    assert!(text.contains("lb: sent verdict=tx backend=198.19.0.11"));

    // Usage errors: exit 2, nothing sent to the daemon.
    for bad in [
        &["capture", "-w", f, "--snaplen", "0"][..],
        &["capture", "-w", f, "--snaplen", "4096"],
        &["capture", "-w", f, "--backend", "nope"],
        &["capture", "198.18.0.10"],
    ] {
        let (code, _, _) = d.lbctl(bad);
        assert_eq!(code, 2, "{bad:?}");
    }
    assert!(d.calls().is_empty());
    // A file that cannot be created: no capture started.
    let (code, _, err) = d.lbctl(&["capture", "-w", "/nonexistent/dir/c.pcapng"]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot write output"), "{err}");
    assert!(d.calls().is_empty());
}
