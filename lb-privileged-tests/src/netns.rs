//! Network namespaces for tests: unique names per test, removed on drop even
//! when the test panics. Only 198.18.0.0/15 and fd00::/8 addresses are used,
//! and nothing is ever configured in the root namespace.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A short unique tag for names (interface names are at most 15 bytes).
pub fn unique_tag() -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{}{}", std::process::id() % 100_000, n)
}

/// Runs a command, panicking with its output on failure.
#[track_caller]
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    /// Its name under /run/netns.
    pub name: String,
}

impl Netns {
    /// Creates `lbt<prefix><tag>`.
    pub fn new(prefix: &str) -> Self {
        let name = format!("lbt{prefix}{}", unique_tag());
        sh(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace.
    #[track_caller]
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs a command inside the namespace and returns whether it succeeded.
    pub fn try_exec(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Moves the calling thread into the namespace (for netlink/XDP attach by
    /// interface name). The thread should not be reused afterwards.
    pub fn enter(&self) {
        let f = File::open(format!("/run/netns/{}", self.name)).expect("open netns");
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veths too.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Two hosts joined by a veth: `lb` gets `lb0` (198.18.0.2/24), `client` gets
/// `peer0` (198.18.0.1/24) and routes the VIP range 198.18.100.0/24 via the LB.
pub fn lb_and_client(label: &str) -> (Netns, Netns) {
    let lb = Netns::new(label);
    let client = Netns::new(&format!("{label}c"));
    client.exec(&[
        "ip", "link", "add", "peer0", "type", "veth", "peer", "name", "lb0",
    ]);
    client.exec(&["ip", "link", "set", "lb0", "netns", &lb.name]);
    lb.exec(&["ip", "addr", "add", "198.18.0.2/24", "dev", "lb0"]);
    client.exec(&["ip", "addr", "add", "198.18.0.1/24", "dev", "peer0"]);
    lb.exec(&["ip", "link", "set", "lb0", "up"]);
    client.exec(&["ip", "link", "set", "peer0", "up"]);
    client.exec(&["ip", "route", "add", "198.18.100.0/24", "via", "198.18.0.2"]);
    (lb, client)
}
