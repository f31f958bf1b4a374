//! The deploy/lab testbed for end-to-end tests: `lab.sh up` with a unique
//! prefix per test, a real `lb-daemon run` in the LB namespace (started with
//! nsenter, not `ip netns exec`, which hides the real bpffs), traffic.py in
//! the client namespace with its JSON parsed, tcpdump captures, and a guard
//! that kills the daemon, removes its pins and runs `lab.sh down` on drop,
//! also when the test panicked.
//!
//! Labs are heavy (nine Python servers for three backends), so the tests of
//! one binary take a lab one at a time: [`Lab::up`] holds a process-wide lock
//! until the lab is down again.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use lb_proto::v1 as pb;
use pb::load_balancer_client::LoadBalancerClient;
use serde_json::Value;
use tonic::transport::Channel;

use super::bins::lb_daemon_bin;

pub mod ecmp;

/// The lab scripts.
pub const LAB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/lab");
/// Debian's interpreter: a pyenv/venv `python3` first on PATH lacks scapy.
pub const PYTHON: &str = "/usr/bin/python3";

/// The lab's backends, as `config/demo.toml` and the lab README list them.
pub const B4: [&str; 3] = ["198.19.0.11", "198.19.0.12", "198.19.0.13"];
pub const B6: [&str; 3] = ["fd00:19::11", "fd00:19::12", "fd00:19::13"];
/// The client's own address (the source of every test flow).
pub const CLIENT_V4: &str = "198.18.1.2";

static SERIAL: Mutex<()> = Mutex::new(());
static SEQ: AtomicU32 = AtomicU32::new(0);

/// A lab prefix unique to this process and call: "e" + 3 base-36 digits of
/// the pid + 1 of a counter (lab.sh allows at most 6 characters).
fn unique_prefix() -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let pid = std::process::id() % (36 * 36 * 36);
    let n = SEQ.fetch_add(1, Ordering::Relaxed) % 36;
    let d = |v: u32| DIGITS[v as usize] as char;
    format!(
        "e{}{}{}{}",
        d(pid / (36 * 36)),
        d(pid / 36 % 36),
        d(pid % 36),
        d(n)
    )
}

/// A `[[vip]]` table for the daemon's configuration.
pub fn vip_toml(address: &str, backends: &[&str]) -> String {
    let list = backends
        .iter()
        .map(|b| format!("{{ address = \"{b}\" }}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("[[vip]]\naddress = \"{address}\"\nbackends = [ {list} ]\n")
}

/// A `Vip` message for gRPC calls.
pub fn pvip(address: &str, port: u32, protocol: pb::Protocol) -> Option<pb::Vip> {
    Some(pb::Vip {
        address: address.into(),
        port,
        protocol: protocol as i32,
    })
}

/// What a test wants from its lab.
pub struct LabOpts {
    /// Backend hosts (lab.sh --backends).
    pub backends: u32,
    /// `[dataplane] mtu` of the daemon.
    pub mtu: u32,
    /// `[[vip]]` tables (see [`vip_toml`]).
    pub vips: String,
    /// More `[dataplane]` lines ("key = value\n"), e.g. a switch under test.
    pub dataplane_extra: String,
    /// `[dataplane] conn_table_size`.
    pub conn_table_size: u32,
    /// More node tables for the daemon's configuration (e.g. `[metrics]`).
    pub extra: String,
    /// `lab.sh --ecmp`: two LB nodes behind a BIRD router, each with its
    /// daemon (`[bgp]` towards the router) and BIRD speaker ([`ecmp`]).
    pub ecmp: bool,
    /// Environment of the daemon (e.g. `LB_TEST_XDP_OBJECT`).
    pub daemon_env: Vec<(String, String)>,
}

impl Default for LabOpts {
    fn default() -> Self {
        Self {
            backends: 3,
            mtu: 1600,
            vips: String::new(),
            dataplane_extra: String::new(),
            conn_table_size: 4096,
            extra: String::new(),
            ecmp: false,
            daemon_env: Vec::new(),
        }
    }
}

/// One lab with its daemon.
pub struct Lab {
    /// lab.sh prefix.
    pub prefix: String,
    /// `lab.sh env` as a map (LAB_LB_IF, LAB_NS_LB, ...).
    pub env: BTreeMap<String, String>,
    /// The test's own files: lab.sh output, daemon log, traffic output, captures.
    pub tmp: tempfile::TempDir,
    /// Daemon configuration file.
    pub config: PathBuf,
    /// The daemon's API socket (under /run/${P}-lab/).
    pub sock: PathBuf,
    /// The daemon's pin directory.
    pub pin: PathBuf,
    /// When this test got its turn (after waiting for the previous lab).
    pub started: Instant,
    /// Environment each `start_daemon` gives the daemon.
    pub daemon_env: Vec<(String, String)>,
    daemon: Option<Child>,
    /// `--ecmp`: the second node's files and daemon.
    node2: Option<ecmp::Node2>,
    rt: tokio::runtime::Runtime,
    // Last: released only after Drop::drop has taken the lab down.
    _serial: MutexGuard<'static, ()>,
}

impl Lab {
    /// Brings a lab up and starts the daemon in it.
    pub fn up(opts: LabOpts) -> Self {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let prefix = unique_prefix();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("lb-e2e-{prefix}-"))
            .tempdir()
            .unwrap();
        let started = Instant::now();
        // Output to a file, not a pipe: the servers `up` leaves running
        // inherit lab.sh's stderr (its fd 3), so a pipe would never see EOF.
        let log = tmp.path().join("lab-up.log");
        let mut up = lab_cmd(&prefix);
        if opts.ecmp {
            up.arg("--ecmp");
        }
        let st = up
            .args(["--backends", &opts.backends.to_string(), "up"])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(tmp.path().join("lab-up.err")).unwrap())
            .status()
            .expect("run lab.sh");
        let run_dir = PathBuf::from(format!("/run/{prefix}-lab"));
        let pin = PathBuf::from(format!("/sys/fs/bpf/{prefix}-lb"));
        let dir = run_dir.join("daemon");
        let mut lab = Self {
            env: BTreeMap::new(),
            config: dir.join("lb.toml"),
            sock: dir.join("lb.sock"),
            pin,
            started,
            tmp,
            daemon_env: opts.daemon_env.clone(),
            daemon: None,
            node2: None,
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
            prefix,
            _serial: serial,
        };
        assert!(
            st.success(),
            "lab.sh up failed ({st}):\n{}\n{}",
            fs::read_to_string(&log).unwrap_or_default(),
            fs::read_to_string(lab.tmp.path().join("lab-up.err")).unwrap_or_default()
        );
        let env = lab_cmd(&lab.prefix).arg("env").output().unwrap();
        assert!(env.status.success(), "lab.sh env");
        for word in String::from_utf8_lossy(&env.stdout).split_whitespace() {
            if let Some((k, v)) = word.split_once('=') {
                lab.env.insert(k.into(), v.into());
            }
        }
        eprintln!(
            "[lab {}] up in {:.1} s ({} backends)",
            lab.prefix,
            started.elapsed().as_secs_f64(),
            opts.backends
        );
        fs::create_dir_all(&dir).unwrap();
        let text = lab.daemon_config(&opts, "LAB_LB_IF", &lab.pin, &lab.sock, &dir, "lb");
        fs::write(&lab.config, text).unwrap();
        lab.start_daemon();
        if opts.ecmp {
            lab.node2_up(&opts);
        }
        lab
    }

    /// A node's configuration: its interface (a `lab.sh env` key), pins,
    /// socket and state dir; with `--ecmp`, `[bgp]` towards the router
    /// through the node's BIRD (`node`: lb or lb2).
    fn daemon_config(
        &self,
        opts: &LabOpts,
        if_var: &str,
        pin: &Path,
        sock: &Path,
        dir: &Path,
        node: &str,
    ) -> String {
        let bgp = if opts.ecmp {
            let up = node.to_uppercase();
            let (r4, r6) = if node == "lb" {
                ("LAB_ROUTER_V4_LB", "LAB_ROUTER_V6_LB")
            } else {
                ("LAB_ROUTER_V4_LB2", "LAB_ROUTER_V6_LB2")
            };
            format!(
                "[bgp]\ncontrol_socket = \"{}\"\nconfig_file = \"{}\"\nlocal_asn = {}\n\
                 [[bgp.peer]]\naddress = \"{}\"\nasn = {}\n[[bgp.peer]]\naddress = \"{}\"\nasn = {}\n",
                self.var(&format!("LAB_{up}_BIRD_CTL")),
                self.var(&format!("LAB_{up}_BIRD_FILE")),
                self.var("LAB_ASN_LB"),
                self.var(r4),
                self.var("LAB_ASN_ROUTER"),
                self.var(r6),
                self.var("LAB_ASN_ROUTER"),
            )
        } else {
            String::new()
        };
        format!(
            "[dataplane]\ninterface = \"{}\"\ngateway_mac = \"02:00:00:00:00:01\"\n\
             pin_path = \"{}\"\nmtu = {}\nencap_source_v4 = \"198.18.3.0/24\"\n\
             encap_source_v6 = \"fd00:3::/96\"\nmax_vips = 16\nmax_backends = 64\n\
             conn_table_size = {}\n{}\n[api]\nlisten = \"unix://{}\"\n\n[state]\ndir = \"{}\"\n\n{}\n{}\n{}",
            self.var(if_var),
            pin.display(),
            opts.mtu,
            opts.conn_table_size,
            opts.dataplane_extra,
            sock.display(),
            dir.join("state").display(),
            bgp,
            opts.extra,
            opts.vips
        )
    }

    /// A value of `lab.sh env`.
    pub fn var(&self, k: &str) -> &str {
        self.env
            .get(k)
            .unwrap_or_else(|| panic!("lab.sh env has no {k}"))
    }

    /// The namespace of a lab host: client, router, lb, b1, ...
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// The LB's interface.
    pub fn lb_if(&self) -> String {
        self.var("LAB_LB_IF").to_string()
    }

    fn daemon_log(&self) -> PathBuf {
        self.tmp.path().join("daemon.log")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.daemon_log()).unwrap_or_default()
    }

    /// Starts `lb-daemon run` and waits until it serves its API (a new
    /// "API listening" line: after a SIGKILL the old socket file is still
    /// there, and the daemon replaces it).
    pub fn start_daemon(&mut self) {
        assert!(self.daemon.is_none(), "daemon already running");
        let child = spawn_daemon(
            &self.ns("lb"),
            &self.config,
            &self.daemon_log(),
            &self.daemon_env,
        );
        self.daemon = Some(child);
    }

    /// SIGTERM, and waits for a clean exit (what `systemctl restart` does
    /// before it starts the new binary).
    pub fn stop_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let st = c.wait().expect("wait for lb-daemon");
            assert!(st.success(), "clean exit on SIGTERM: {st}\n{}", self.log());
        }
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// True while the daemon process we started is alive.
    pub fn daemon_running(&mut self) -> bool {
        self.daemon
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    // ------------------------------------------------------------ commands

    /// A command run in a lab host's namespace with nsenter (bpffs stays visible).
    pub fn cmd(&self, host: &str, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns(host)))
            .arg("--")
            .args(args);
        c
    }

    /// Runs a command in a lab host, panicking with its output on failure.
    #[track_caller]
    pub fn exec(&self, host: &str, args: &[&str]) -> String {
        let out = self
            .cmd(host, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{host}: {args:?}: {e}"));
        assert!(
            out.status.success(),
            "{host}: {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command in a lab host; whether it succeeded.
    pub fn try_exec(&self, host: &str, args: &[&str]) -> bool {
        self.cmd(host, args)
            .stdin(Stdio::null())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Pings `addr` from the client (`count` echo requests, all must be answered).
    pub fn ping(&self, addr: &str, count: u32) -> bool {
        self.try_exec(
            "client",
            &[
                "ping",
                "-c",
                &count.to_string(),
                "-i",
                "0.2",
                "-W",
                "2",
                addr,
            ],
        )
    }

    /// `traffic.py ARGS` in the client namespace: its JSON report. The exit
    /// status is not checked; tests assert on the report.
    #[track_caller]
    pub fn traffic(&self, args: &[&str]) -> Value {
        let out = self
            .traffic_cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run traffic.py");
        parse_report(args, &out.stdout, &String::from_utf8_lossy(&out.stderr))
    }

    fn traffic_cmd(&self, args: &[&str]) -> Command {
        let script = format!("{LAB_DIR}/traffic.py");
        let mut full = vec![PYTHON, script.as_str()];
        full.extend_from_slice(args);
        self.cmd("client", &full)
    }

    /// `traffic.py streams ...` in the background, with a ready file.
    pub fn streams_bg(&self, vip: &str, port: u16, count: u32, seconds: f64) -> Background {
        self.streams_bg_with(vip, port, count, seconds, &[])
    }

    /// [`Lab::streams_bg`] with more `traffic.py streams` arguments.
    pub fn streams_bg_with(
        &self,
        vip: &str,
        port: u16,
        count: u32,
        seconds: f64,
        extra: &[&str],
    ) -> Background {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let ready = self.tmp.path().join(format!("ready-{n}"));
        let out = self.tmp.path().join(format!("streams-{n}.json"));
        let err = self.tmp.path().join(format!("streams-{n}.err"));
        let args = vec![
            "streams".to_string(),
            "--vip".into(),
            vip.into(),
            "--port".into(),
            port.to_string(),
            "--count".into(),
            count.to_string(),
            "--seconds".into(),
            seconds.to_string(),
            "--ready-file".into(),
            ready.display().to_string(),
        ];
        let args: Vec<String> = args
            .into_iter()
            .chain(extra.iter().map(|a| a.to_string()))
            .collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = self
            .traffic_cmd(&argv)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn traffic.py streams");
        Background {
            child: Some(child),
            args,
            ready,
            out,
            err,
            started: Instant::now(),
        }
    }

    /// `flood.py` in the router: `count` TCP frames from random sources in
    /// 198.19.128.0/17 to `vip:port`, written on the router's link to the
    /// LB, for at most `seconds`: SYNs, or with `ack` SYN + ACK pairs (a
    /// flow each); an equal share pinned to each CPU in turn (`--per-cpu`).
    /// Its JSON report (sent, seconds, pps, per_cpu).
    #[track_caller]
    pub fn syn_flood(&self, vip: &str, port: u16, count: u32, seconds: f64, ack: bool) -> Value {
        let script = format!("{LAB_DIR}/flood.py");
        let args = [
            PYTHON,
            script.as_str(),
            "--iface",
            self.var("LAB_ROUTER_LB_IF"),
            "--src-mac",
            self.var("LAB_GATEWAY_MAC"),
            "--dst-mac",
            self.var("LAB_LB_MAC"),
            "--dst",
            vip,
            "--dport",
            &port.to_string(),
            "--count",
            &count.to_string(),
            "--seconds",
            &seconds.to_string(),
        ];
        // An equal share from every CPU, as RSS spreads a real flood.
        let mut args = [&args[..], &["--per-cpu"]].concat();
        if ack {
            args.push("--ack");
        }
        let out = self
            .cmd("router", &args)
            .stdin(Stdio::null())
            .output()
            .expect("run flood.py");
        assert!(
            out.status.success(),
            "flood.py failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "flood.py report: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Starts tcpdump in a lab host and waits until it captures.
    pub fn capture(&self, host: &str, iface: &str, filter: &str) -> Capture {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let out = self.tmp.path().join(format!("tcpdump-{n}.txt"));
        let err = self.tmp.path().join(format!("tcpdump-{n}.err"));
        // --immediate-mode: otherwise libpcap hands packets over in blocks
        // and a capture stopped right after the last packet may lose it.
        let child = self
            .cmd(
                host,
                &[
                    "tcpdump",
                    "-i",
                    iface,
                    "-n",
                    "-l",
                    "--immediate-mode",
                    filter,
                ],
            )
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn tcpdump");
        let mut cap = Capture {
            child: Some(child),
            out,
            err,
        };
        let t0 = Instant::now();
        while !fs::read_to_string(&cap.err)
            .unwrap_or_default()
            .contains("listening on")
        {
            if let Some(Ok(Some(st))) = cap.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "tcpdump exited with {st}: {}",
                    fs::read_to_string(&cap.err).unwrap_or_default()
                );
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "tcpdump not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        cap
    }

    /// Per-kind decap counters of backend `i` (1-based), as `lb-daemon decap stats --json`.
    pub fn decap_stats(&self, i: u32) -> BTreeMap<String, u64> {
        let pin = format!("/sys/fs/bpf/{}-b{i}-decap", self.prefix);
        let out = Command::new(lb_daemon_bin())
            .args(["decap", "stats", "--json", "--pin-path", &pin])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "decap stats b{i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("decap stats --json")
    }

    // ------------------------------------------------------------ API

    /// Empties the daemon's connection tables (both families) through their
    /// pins, as a node that never saw the flows, or a restart that lost the
    /// table, would have it; returns how many entries were removed.
    pub fn clear_conn_table(&self) -> usize {
        use aya::maps::{HashMap, MapData};
        use lb_common::{ConnEntry, FlowKey, FlowKey4, MAP_CONN, MAP_CONN4};
        let open = |name: &str| {
            MapData::from_pin(self.pin.join("maps").join(name))
                .unwrap_or_else(|e| panic!("open pinned {name}: {e}"))
        };
        let mut removed = 0;
        let mut t4: HashMap<MapData, FlowKey4, ConnEntry> =
            HashMap::try_from(aya::maps::Map::from_map_data(open(MAP_CONN4)).expect("LB_CONN4"))
                .expect("LB_CONN4");
        let keys: Vec<FlowKey4> = t4.keys().filter_map(Result::ok).collect();
        for k in keys {
            removed += usize::from(t4.remove(&k).is_ok());
        }
        let mut t6: HashMap<MapData, FlowKey, ConnEntry> =
            HashMap::try_from(aya::maps::Map::from_map_data(open(MAP_CONN)).expect("LB_CONN"))
                .expect("LB_CONN");
        let keys: Vec<FlowKey> = t6.keys().filter_map(Result::ok).collect();
        for k in keys {
            removed += usize::from(t6.remove(&k).is_ok());
        }
        removed
    }

    /// Runs a future on the lab's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A gRPC client on the daemon's socket.
    pub fn client(&self) -> LoadBalancerClient<Channel> {
        let api = format!("unix://{}", self.sock.display());
        self.block_on(super::bins::connect(&api, None))
            .unwrap_or_else(|e| panic!("connect {api}: {e}\n{}", self.log()))
    }

    /// ListVips.
    pub fn list_vips(&self) -> Vec<pb::VipInfo> {
        let mut c = self.client();
        self.block_on(c.list_vips(pb::ListVipsRequest {}))
            .expect("ListVips")
            .into_inner()
            .vips
    }

    /// GetStatus.
    pub fn status(&self) -> pb::GetStatusResponse {
        let mut c = self.client();
        self.block_on(c.get_status(pb::GetStatusRequest {}))
            .expect("GetStatus")
            .into_inner()
    }

    /// GetHealth of one VIP.
    pub fn health(&self, vip: Option<pb::Vip>) -> pb::GetHealthResponse {
        let mut c = self.client();
        self.block_on(c.get_health(pb::GetHealthRequest { vip }))
            .expect("GetHealth")
            .into_inner()
    }

    fn server_pidfile(&self, i: u32, kind: &str) -> PathBuf {
        PathBuf::from(format!("/run/{}-lab/b{i}-{kind}.pid", self.prefix))
    }

    /// Stops the `kind` server (http, udp, stream) of backend `i` (1-based)
    /// as a crash would (SIGKILL), and waits until it is gone: its port is
    /// closed from then on.
    pub fn stop_server(&self, i: u32, kind: &str) {
        let f = self.server_pidfile(i, kind);
        let pid: i32 = fs::read_to_string(&f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .trim()
            .parse()
            .expect("a pid");
        // SAFETY: plain kill(2) of a pid we read from our own lab's pid file.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
        let t0 = Instant::now();
        while Path::new(&format!("/proc/{pid}/cmdline")).exists()
            && fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| !st.contains(") Z "))
        {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "{kind} server {pid} still running"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = fs::remove_file(&f);
    }

    /// Starts the `kind` server of backend `i` again, as `lab.sh up` does
    /// (with the lab's marker, so `lab.sh down` stops it), and waits until
    /// it is bound (its pid file exists).
    pub fn start_server(&self, i: u32, kind: &str) {
        let f = self.server_pidfile(i, kind);
        let log = fs::File::create(self.tmp.path().join(format!("b{i}-{kind}.log"))).unwrap();
        let child = Command::new("setsid")
            .arg("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns(&format!("b{i}"))))
            .arg("--")
            .arg(PYTHON)
            .arg(format!("{LAB_DIR}/servers.py"))
            .args([kind, "--name", &format!("backend-{i}"), "--pidfile"])
            .arg(&f)
            .args(["--lab", &self.prefix])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn servers.py");
        // The server outlives this call; a thread reaps it when it is
        // stopped, so no zombie is left (lab.sh down stops it otherwise).
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        let t0 = Instant::now();
        while !f.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{kind} server {i} did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// GetStats (all VIPs).
    pub fn stats(&self) -> pb::StatsSnapshot {
        let mut c = self.client();
        self.block_on(c.get_stats(pb::GetStatsRequest { vip: None }))
            .expect("GetStats")
            .into_inner()
            .stats
            .expect("stats snapshot")
    }
}

/// A global counter by name (absent = 0, as the API documents).
pub fn counter(s: &pb::StatsSnapshot, name: &str) -> u64 {
    s.counters.get(name).copied().unwrap_or(0)
}

/// The counters of one VIP.
pub fn vip_stats<'a>(s: &'a pb::StatsSnapshot, address: &str, port: u32) -> &'a pb::VipStats {
    s.vips
        .iter()
        .find(|v| {
            v.vip
                .as_ref()
                .is_some_and(|p| p.address == address && p.port == port)
        })
        .unwrap_or_else(|| panic!("no stats for {address}:{port}"))
}

/// Starts `lb-daemon run --config CONFIG` in namespace `ns`, logging to
/// `log`, and waits until it serves its API (a new "API listening" line:
/// after a SIGKILL the old socket file is still there, and the daemon
/// replaces it).
fn spawn_daemon(ns: &str, config: &Path, log: &Path, env: &[(String, String)]) -> Child {
    let read = || fs::read_to_string(log).unwrap_or_default();
    let before = read().matches("API listening").count();
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg(lb_daemon_bin())
        .args(["run", "--config"])
        .arg(config)
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn lb-daemon");
    let t0 = Instant::now();
    while read().matches("API listening").count() <= before {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("lb-daemon exited with {st}:\n{}", read());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "lb-daemon not ready after 30 s:\n{}",
            read()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn lab_cmd(prefix: &str) -> Command {
    let mut c = Command::new(format!("{LAB_DIR}/lab.sh"));
    c.args(["--prefix", prefix])
        .env("LB_DAEMON", lb_daemon_bin())
        .env("LAB_PYTHON", PYTHON);
    c
}

#[track_caller]
fn parse_report(args: &[impl AsRef<str>], stdout: &[u8], stderr: &str) -> Value {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "traffic.py {args:?}: no JSON report ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(stdout)
        )
    })
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- [lab {}] daemon log (last 40 lines)\n{}",
                self.prefix,
                tail(&self.daemon_log(), 40)
            );
            if let Ok(o) = lab_cmd(&self.prefix).arg("status").output() {
                eprintln!(
                    "--- [lab {}] lab.sh status\n{}",
                    self.prefix,
                    String::from_utf8_lossy(&o.stdout)
                );
            }
        }
        self.kill_daemon();
        self.node2_drop();
        let _ = Command::new(lb_daemon_bin())
            .args(["teardown", "--pin-path"])
            .arg(&self.pin)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let down = lab_cmd(&self.prefix)
            .arg("down")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match down {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "[lab {}] lab.sh down failed: {}",
                self.prefix,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("[lab {}] lab.sh down: {e}", self.prefix),
        }
        eprintln!(
            "[lab {}] down; {:.1} s from up to down",
            self.prefix,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// A background `traffic.py streams` run.
pub struct Background {
    child: Option<Child>,
    args: Vec<String>,
    ready: PathBuf,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
}

impl Background {
    /// Seconds since the run started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Waits for the ready file: every stream has its first line (or failed).
    #[track_caller]
    pub fn wait_ready(&mut self) {
        while !self.ready.exists() {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "traffic.py exited ({st}) before it was ready:\n{}\n{}",
                    fs::read_to_string(&self.out).unwrap_or_default(),
                    fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            assert!(
                self.started.elapsed() < Duration::from_secs(20),
                "streams not ready after 20 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the end of the run: its JSON report.
    #[track_caller]
    pub fn join(mut self) -> Value {
        let mut c = self.child.take().expect("not joined yet");
        let _ = c.wait();
        parse_report(
            &self.args,
            &fs::read(&self.out).unwrap_or_default(),
            &fs::read_to_string(&self.err).unwrap_or_default(),
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running tcpdump.
pub struct Capture {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl Capture {
    /// Stops it (SIGINT, so it flushes) and returns the packet lines.
    pub fn stop(mut self) -> Vec<String> {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let _ = c.wait();
        }
        fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
