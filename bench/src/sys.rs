//! Host plumbing: CPU pinning, network namespaces that clean up after
//! themselves, the machine description and load average for the report.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// Whether we run as root (every kernel figure needs it).
pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Pins the calling thread to `cpu`. One core on purpose: per-CPU maps
/// (the connection table, counters) and live-frames processing then stay on
/// that core, which is what "packets per second per core" means.
pub fn pin_thread(cpu: usize) -> anyhow::Result<()> {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "sched_setaffinity({cpu}): {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// The CPU the benchmarks pin to: the last one, which the kernel's
/// housekeeping and most interactive work leave alone more often than CPU 0.
pub fn bench_cpu() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() - 1)
        .unwrap_or(0)
}

/// Runs a command and returns its stdout; fails with its stderr.
pub fn sh(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A short tag unique to this process and call (interface and namespace
/// names are limited to 15 bytes).
pub fn unique_tag() -> String {
    format!(
        "{}{}",
        std::process::id() % 100_000,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A named network namespace, deleted on drop (also when unwinding from a
/// panic), which destroys the veths inside it as well.
pub struct Netns {
    /// Its name under /run/netns.
    pub name: String,
}

impl Netns {
    /// Creates `lbb<label><tag>` with loopback up.
    pub fn new(label: &str) -> anyhow::Result<Self> {
        let name = format!("lbb{label}{}", unique_tag());
        sh(&["ip", "netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n <ns> ARGS` (no remount of /sys, unlike `ip netns exec`).
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Moves the calling thread into the namespace. Only for a thread that is
    /// dedicated to work inside it and ends afterwards.
    pub fn enter(&self) -> anyhow::Result<()> {
        let f = File::open(format!("/run/netns/{}", self.name)).context("open netns")?;
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {}: {}", self.name, std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Index of interface `name` inside the namespace (read with `ip`, so
    /// the caller need not be inside).
    pub fn ifindex(&self, name: &str) -> anyhow::Result<u32> {
        let out = self.ip(&["-o", "link", "show", "dev", name])?;
        out.split(':')
            .next()
            .and_then(|s| s.trim().parse().ok())
            .with_context(|| format!("ifindex of {name} in {}: {out}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// What the numbers were measured on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    /// `lscpu` model name.
    pub cpu_model: String,
    /// Online CPUs.
    pub cores: usize,
    /// `lscpu` hypervisor vendor, empty on bare metal.
    pub hypervisor: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// rustc that built the userspace side.
    pub rustc: String,
}

impl Machine {
    /// Reads the description of this host.
    pub fn detect() -> Self {
        let lscpu = sh(&["lscpu"]).unwrap_or_default();
        let field = |k: &str| {
            lscpu
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim_start_matches(':').trim().to_string())
                .unwrap_or_default()
        };
        let mem_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        Self {
            cpu_model: field("Model name"),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            hypervisor: field("Hypervisor vendor"),
            kernel: sh(&["uname", "-r"]).unwrap_or_default().trim().to_string(),
            memory_mib: mem_kib / 1024,
            rustc: sh(&["rustc", "--version"])
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> [f64; 3] {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = s.split_whitespace().map(|v| v.parse().unwrap_or(f64::NAN));
    [
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
    ]
}

/// Today's local date as YYYY-MM-DD (the results file name).
pub fn today() -> String {
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        format!(
            "{:04}-{:02}-{:02}",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday
        )
    }
}

/// Lets `sleep` on this thread wake within ~1 µs of the request instead of
/// the default 50 µs slack, for polling loops that measure latency.
pub fn tight_timer_slack() {
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000u64, 0u64, 0u64, 0u64);
    }
}

/// The commit being measured (`git rev-parse --short HEAD`), with a note
/// when the working tree differs from it; "unknown" outside a git checkout.
pub fn commit() -> String {
    let Ok(head) = sh(&["git", "rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    let dirty = sh(&["git", "status", "--porcelain", "--untracked-files=no"])
        .map(|s| !s.trim().is_empty())
        .unwrap_or(false);
    format!(
        "commit {}{}",
        head.trim(),
        if dirty { " + uncommitted changes" } else { "" }
    )
}
