//! `lab.sh --ecmp`: the second LB node (its own daemon, pins, socket and
//! BIRD speaker), and what the BGP tests ask of the router: its ECMP route
//! (`ip route`), its BIRD (`birdc`), and the loss of a whole node.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use lb_proto::v1 as pb;
use pb::load_balancer_client::LoadBalancerClient;
use tonic::transport::Channel;

use super::{Lab, LabOpts, spawn_daemon};
use crate::bins::{bin, lb_daemon_bin};

/// The second node's files and daemon.
pub struct Node2 {
    config: PathBuf,
    sock: PathBuf,
    pin: PathBuf,
    log: PathBuf,
    daemon: Option<Child>,
}

/// A node of the ECMP lab: 1 (namespace `lb`) or 2 (`lb2`).
pub type NodeId = u8;

impl Lab {
    pub(super) fn node2_up(&mut self, opts: &LabOpts) {
        let dir = PathBuf::from(format!("/run/{}-lab/daemon2", self.prefix));
        fs::create_dir_all(&dir).unwrap();
        let n = Node2 {
            config: dir.join("lb.toml"),
            sock: dir.join("lb.sock"),
            pin: PathBuf::from(self.var("LAB_LB2_PIN_DIR")),
            log: self.tmp.path().join("daemon2.log"),
            daemon: None,
        };
        let text = self.daemon_config(opts, "LAB_LB2_IF", &n.pin, &n.sock, &dir, "lb2");
        fs::write(&n.config, text).unwrap();
        self.node2 = Some(n);
        self.start_node(2);
    }

    pub(super) fn node2_drop(&mut self) {
        if let Some(n) = self.node2.as_mut() {
            if let Some(mut c) = n.daemon.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            if std::thread::panicking() {
                eprintln!(
                    "--- [lab {}] node 2 daemon log (last lines)\n{}",
                    self.prefix,
                    fs::read_to_string(&n.log).unwrap_or_default()
                );
            }
            let _ = Command::new(lb_daemon_bin())
                .args(["teardown", "--pin-path"])
                .arg(&n.pin)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    fn node2(&self) -> &Node2 {
        self.node2.as_ref().expect("an --ecmp lab")
    }

    /// The lab host (namespace suffix) of a node.
    pub fn node_host(node: NodeId) -> &'static str {
        if node == 1 { "lb" } else { "lb2" }
    }

    /// A node's API address.
    pub fn node_api(&self, node: NodeId) -> String {
        let sock = if node == 1 {
            &self.sock
        } else {
            &self.node2().sock
        };
        format!("unix://{}", sock.display())
    }

    /// A node's daemon log.
    pub fn node_log(&self, node: NodeId) -> String {
        if node == 1 {
            self.log()
        } else {
            fs::read_to_string(&self.node2().log).unwrap_or_default()
        }
    }

    /// (Re)starts a node's daemon and waits for its API.
    pub fn start_node(&mut self, node: NodeId) {
        if node == 1 {
            return self.start_daemon();
        }
        let ns = self.ns("lb2");
        let n = self.node2.as_mut().expect("an --ecmp lab");
        assert!(n.daemon.is_none(), "node 2 daemon already running");
        n.daemon = Some(spawn_daemon(&ns, &n.config, &n.log, &[]));
    }

    /// SIGKILLs a node's daemon (a crash: nothing withdrawn, XDP stays).
    pub fn kill_node_daemon(&mut self, node: NodeId) {
        if node == 1 {
            return self.kill_daemon();
        }
        if let Some(mut c) = self.node2.as_mut().and_then(|n| n.daemon.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A gRPC client of a node's `lb.v1.LoadBalancer`.
    pub fn node_client(&self, node: NodeId) -> LoadBalancerClient<Channel> {
        let api = self.node_api(node);
        self.block_on(crate::bins::connect(&api, None))
            .unwrap_or_else(|e| panic!("connect {api}: {e}"))
    }

    /// GetStats of a node.
    pub fn node_stats(&self, node: NodeId) -> pb::StatsSnapshot {
        let mut c = self.node_client(node);
        self.block_on(c.get_stats(pb::GetStatsRequest { vip: None }))
            .expect("GetStats")
            .into_inner()
            .stats
            .expect("stats snapshot")
    }

    /// Runs `lbctl --api NODE ARGS...`: (exit status, stdout, stderr).
    pub fn lbctl_on(&self, node: NodeId, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin("lbctl"))
            .arg("--api")
            .arg(self.node_api(node))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run lbctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `lbctl ARGS` on a node, which must succeed: its stdout.
    #[track_caller]
    pub fn lbctl_ok(&self, node: NodeId, args: &[&str]) -> String {
        let (code, out, err) = self.lbctl_on(node, args);
        assert_eq!(code, 0, "lbctl {args:?} on node {node}: {out}{err}");
        out
    }

    /// `birdc ARGS` on the router's BIRD.
    pub fn router_birdc(&self, args: &[&str]) -> String {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(self.var("LAB_ROUTER_BIRD_CTL"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run birdc");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The router's BIRD log so far.
    pub fn router_bird_log(&self) -> String {
        fs::read_to_string(self.var("LAB_ROUTER_BIRD_LOG")).unwrap_or_default()
    }

    /// The LB nodes' addresses the router's kernel forwards `addr` to (the
    /// ECMP next hops), from `ip route show ADDR`.
    pub fn router_nexthops(&self, addr: &str) -> Vec<String> {
        // `ip route show` does not infer the family from the address.
        let family = if addr.contains(':') { "-6" } else { "-4" };
        let out = self
            .cmd("router", &["ip", family, "route", "show", addr])
            .stdin(Stdio::null())
            .output()
            .expect("ip route");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut hops: Vec<String> = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_string())
            .collect();
        hops.sort();
        hops
    }

    /// Waits until the router forwards `addr` to exactly `n` next hops;
    /// how long that took. Panics after `timeout`.
    #[track_caller]
    pub fn wait_nexthops(&self, addr: &str, n: usize, timeout: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            let hops = self.router_nexthops(addr);
            if hops.len() == n {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < timeout,
                "router: {addr} via {hops:?}, not {n} next hops after {timeout:?}\n{}\n{}",
                self.router_birdc(&["show", "protocols"]),
                self.lbctl_on(1, &["announce", "list"]).1,
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Loses a node at once, as a dead host behind a switch would: its
    /// daemon and BIRD SIGKILLed (no BGP notification, no BFD "admin
    /// down"), its data plane gone (XDP detached, as with the host), and its
    /// addresses removed so that it answers nothing, not even a TCP reset to
    /// a BGP keepalive; but its link stays up, so the router sees no carrier
    /// loss and only BFD can tell it. Nothing is withdrawn.
    pub fn kill_node(&mut self, node: NodeId) {
        let host = Self::node_host(node);
        let pidf = format!("{}/{host}-bird.pid", self.var("LAB_RUN_DIR"));
        let pid: i32 = fs::read_to_string(&pidf)
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no BIRD pid in {pidf}"));
        let (ifc, pin) = if node == 1 {
            (self.var("LAB_LB_IF").to_string(), self.pin.clone())
        } else {
            (self.var("LAB_LB2_IF").to_string(), self.node2().pin.clone())
        };
        // Frozen first, so BIRD cannot react to what follows (a speaker
        // that sees its address go closes its sessions at once); then
        // silent: without its data plane and addresses (and so its routes)
        // the node cannot send anything, not even the FIN the kernel sends
        // for the sockets of a killed process.
        // SAFETY: kill(2) on a pid we read from our own lab's pid file.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let st = Command::new(lb_daemon_bin())
            .args(["teardown", "--pin-path"])
            .arg(&pin)
            .stdin(Stdio::null())
            .output()
            .expect("lb-daemon teardown");
        assert!(st.status.success(), "teardown of node {node}: {st:?}");
        self.exec(host, &["ip", "addr", "flush", "dev", &ifc]);
        // IPv6 keeps a route through a gateway whose prefix is gone: the
        // FIN of a killed BIRD would still leave through it.
        self.exec(host, &["ip", "-4", "route", "flush", "dev", &ifc]);
        self.exec(host, &["ip", "-6", "route", "flush", "dev", &ifc]);
        // SAFETY: kill(2) on a pid we read from our own lab's pid file.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        self.kill_node_daemon(node);
    }
}
