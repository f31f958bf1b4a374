//! A real `lb-daemon run` in a test network namespace: an LB namespace whose
//! `lb0` faces a client namespace's `peer0`, the daemon started with
//! `nsenter --net` (not `ip netns exec`, which hides the real bpffs), its API
//! on a Unix socket in a temp dir, everything removed on drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use lb_proto::v1::load_balancer_client::LoadBalancerClient;
use tonic::transport::Channel;

use super::{
    bins::lb_daemon_bin,
    netns::{Netns, unique_tag},
};

/// A daemon in its namespaces.
pub struct DaemonEnv {
    /// The LB host.
    pub lb: Netns,
    /// The client host.
    pub client: Netns,
    /// Temp dir with config, socket, state.
    pub dir: tempfile::TempDir,
    /// bpffs pin directory of the balancer.
    pub pin: PathBuf,
    /// bpffs pin directory of the client's pass program.
    pub pass_pin: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// The API socket.
    pub sock: PathBuf,
    child: Option<Child>,
}

/// Sizes used by daemon tests (small maps, real ring size).
pub const DAEMON_SIZES: &str = "max_vips = 8\nmax_backends = 512\nconn_table_size = 4096\n";

impl DaemonEnv {
    /// Creates the namespaces and the config; `extra` is appended to the
    /// config file (e.g. `[[vip]]` tables), `api` replaces the [api] table.
    pub fn new(label: &str, api: Option<&str>, extra: &str) -> Self {
        let (lb, client) = super::netns::lb_and_client(label);
        let dir = tempfile::tempdir().unwrap();
        let tag = unique_tag();
        let pin = PathBuf::from(format!("/sys/fs/bpf/lbt-{label}-{tag}"));
        let pass_pin = PathBuf::from(format!("/sys/fs/bpf/lbt-{label}-{tag}-pass"));
        let sock = dir.path().join("lb.sock");
        let api = api
            .map(str::to_string)
            .unwrap_or_else(|| format!("[api]\nlisten = \"unix://{}\"\n", sock.display()));
        let text = format!(
            "[dataplane]\ninterface = \"lb0\"\ngateway_mac = \"02:00:00:00:00:01\"\n\
             pin_path = \"{}\"\nhash_seed = 4242\nencap_source_v4 = \"198.19.128.0/17\"\n\
             encap_source_v6 = \"fd00:5::/96\"\n{DAEMON_SIZES}\n{api}\n[state]\ndir = \"{}\"\n{extra}",
            pin.display(),
            dir.path().join("state").display()
        );
        let config = dir.path().join("lb.toml");
        std::fs::write(&config, text).unwrap();
        // The client's veth must run XDP to receive the LB's XDP_TX frames.
        nsenter(
            &client.name,
            &[
                "decap",
                "attach",
                "--interface",
                "peer0",
                "--pass-only",
                "--pin-path",
                pass_pin.to_str().unwrap(),
            ],
        );
        Self {
            lb,
            client,
            dir,
            pin,
            pass_pin,
            config,
            sock,
            child: None,
        }
    }

    /// Starts `lb-daemon run` and waits until its API socket exists.
    pub fn start(&mut self) {
        let _ = std::fs::remove_file(&self.sock);
        self.spawn();
        self.wait_ready(&self.sock.clone());
    }

    /// Starts `lb-daemon run` with a TCP (TLS) listener and waits until the
    /// daemon logs that the API listens (there is no socket file to wait for).
    pub fn start_tcp(&mut self) {
        self.spawn();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log().contains("API listening") {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("lb-daemon exited with {st}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "lb-daemon not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn(&mut self) {
        self.spawn_with(&[], &[]);
    }

    /// Starts `lb-daemon run` under `wrap` (a command and its arguments run
    /// inside the namespace, e.g. `setpriv ...`) with extra environment
    /// `env`, without waiting: the caller decides what "ready" means.
    pub fn spawn_with(&mut self, wrap: &[&str], env: &[(&str, &std::ffi::OsStr)]) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.lb.name))
            .args(wrap)
            .arg(lb_daemon_bin())
            .envs(env.iter().copied())
            .args(["run", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn lb-daemon");
        self.child = Some(child);
    }

    /// Waits for a socket path to appear (or the daemon to die).
    pub fn wait_ready(&mut self, path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !path.exists() {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("lb-daemon exited with {st}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "lb-daemon not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's process id (that of the `nsenter` wrapper, which execs
    /// into what it runs) while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The daemon's exit status if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let st = c.wait().unwrap();
            assert!(st.success(), "clean exit on SIGTERM: {st}\n{}", self.log());
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// The API URI.
    pub fn api(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// A gRPC client on the socket.
    pub async fn client(&self) -> LoadBalancerClient<Channel> {
        super::bins::connect(&self.api(), None)
            .await
            .expect("connect")
    }

    /// Pings `addr` from the client namespace.
    pub fn ping(&self, addr: &str) -> bool {
        self.client.try_exec(&["ping", "-c", "1", "-W", "2", addr])
    }
}

/// Runs `lb-daemon ARGS` inside a namespace with nsenter.
pub fn nsenter(ns: &str, args: &[&str]) {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg(lb_daemon_bin())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lb-daemon {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for DaemonEnv {
    fn drop(&mut self) {
        self.kill9();
        let _ = Command::new(lb_daemon_bin())
            .args(["teardown", "--pin-path"])
            .arg(&self.pin)
            .output();
        let _ = Command::new(lb_daemon_bin())
            .args(["decap", "detach", "--pin-path"])
            .arg(&self.pass_pin)
            .output();
    }
}
