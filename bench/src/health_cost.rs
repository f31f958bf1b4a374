//! Figure 6: what health checks cost the daemon. A real `lb-daemon run` in
//! a network namespace of its own, one VIP with N backends (default 1,000)
//! under an HTTP, TCP or UDP check every second, every backend an address
//! answered by one small asyncio server (HTTP, and for UDP checks an echo
//! socket per address; a separate process: its CPU is not the daemon's). After a warm-up, the daemon's CPU time (utime +
//! stime from /proc/PID/stat) over the window, its resident memory sampled
//! every 10 s, and the probes it sent (GetHealth), so the rate is checked,
//! not assumed.
//!
//! Where the backends live decides what the daemon is charged for:
//!
//! - [`Backends::Local`]: local addresses of the daemon's namespace
//!   (`ip route add local ... dev lo`). Loopback delivery runs in the
//!   sender's context, so the kernel's work for both ends of every probe
//!   (the backend's SYN-ACK, accept and close included) is the daemon's
//!   system time: an upper bound.
//! - [`Backends::Veth`]: a second namespace behind a veth pair whose two
//!   ends receive through threaded NAPI (GRO on, `threaded` = 1), so what
//!   a NIC's receive path would do runs in a `napi/<dev>` kernel thread,
//!   not in the daemon's context; the daemon keeps its own syscalls and
//!   transmit path. The receive thread of the daemon's end is reported
//!   beside it (the LB host's own share of the receive work).

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use lb_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::sys::{self, Netns};

/// The probe the VIP's check sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// HTTP/1.0 GET / (connect, request, status line, close).
    Http,
    /// A TCP connect, then close.
    Tcp,
    /// A datagram (`ping`) to a UDP VIP's backends, answered by an echo.
    Udp,
}

/// Where the probed backends are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backends {
    /// Local addresses in the daemon's namespace (loopback).
    Local,
    /// A second namespace behind a veth pair with threaded NAPI.
    Veth,
}

/// One run's settings.
#[derive(Clone, Debug)]
pub struct Params {
    /// The daemon binary.
    pub daemon: PathBuf,
    /// Backends probed (each once per second).
    pub backends: u32,
    /// Measured window.
    pub seconds: u64,
    /// Warm-up before the window.
    pub warmup: Duration,
    /// The probe.
    pub check: Check,
    /// Where the backends are.
    pub at: Backends,
}

/// One run's figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HealthCost {
    /// The probe (`http`, `tcp`, `udp`).
    pub check: String,
    /// Where the backends were (`local`, `veth`).
    pub backends_at: String,
    /// Backends probed.
    pub backends: u32,
    /// The measured window, seconds.
    pub window_s: f64,
    /// Probes sent per second over the window (GetHealth counters).
    pub probes_per_s: f64,
    /// Probes that failed over the window (a loaded host can make one
    /// miss its timeout).
    #[serde(default)]
    pub probes_failed: u64,
    /// Daemon user time over the window, seconds.
    pub user_s: f64,
    /// Daemon system time over the window, seconds.
    pub system_s: f64,
    /// The daemon's CPU as a percentage of one core.
    pub cpu_percent: f64,
    /// CPU of the receive thread of the daemon's veth end (veth only), as a
    /// percentage of one core.
    pub rx_thread_percent: Option<f64>,
    /// RSS every 10 s over the window, KiB.
    pub rss_kib: Vec<u64>,
    /// Busy share of the whole host over the window (all cores, all
    /// processes), percent: how loaded the machine was.
    pub host_busy_percent: f64,
    /// Load average at the end.
    pub load_after: [f64; 3],
}

const SERVER: &str = r#"
import asyncio, ipaddress, resource, sys
async def handle(r, w):
    try:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
        await w.drain()
    except Exception:
        pass
    w.close()
async def main():
    s = await asyncio.start_server(handle, "0.0.0.0", 80, backlog=4096, reuse_address=True)
    # UDP echo, one socket per backend address: a reply must come from the
    # address the probe went to (a wildcard socket would answer from the
    # interface's address, which the probe's connected socket ignores).
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, t):
            self.t = t
        def datagram_received(self, data, addr):
            self.t.sendto(data, addr)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1024, n + 1024))
    loop = asyncio.get_running_loop()
    for i in range(n):
        a = str(ipaddress.IPv4Address(0xC6130001 + i))
        await loop.create_datagram_endpoint(Echo, local_addr=(a, 80))
    print("ready", flush=True)
    await s.serve_forever()
asyncio.run(main())
"#;

/// (utime, stime) of a process or thread (`/proc/PID/stat` or
/// `/proc/PID/task/TID/stat`), seconds.
fn cpu_seconds(stat_path: &Path) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(stat_path)?;
    let after = stat.rsplit_once(") ").context("stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((f[11].parse::<f64>()? / hz, f[12].parse::<f64>()? / hz))
}

/// (busy, total) jiffies of the whole host, from /proc/stat.
fn host_jiffies() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let cpu = stat.lines().next().context("/proc/stat")?;
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle + iowait are not busy.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Ok((total - idle, total))
}

/// VmRSS of a process, KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .context("VmRSS")
}

/// The `napi/<dev>-*` kernel thread of a device, as its stat path.
fn napi_thread(dev: &str) -> anyhow::Result<PathBuf> {
    let prefix = format!("napi/{dev}-");
    for e in std::fs::read_dir("/proc")? {
        let p = e?.path();
        if let Ok(comm) = std::fs::read_to_string(p.join("comm"))
            && comm.trim().starts_with(&prefix)
        {
            return Ok(p.join("stat"));
        }
    }
    bail!("no {prefix}* thread: threaded NAPI is not on for {dev}")
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ip netns exec NS CMD...` (which mounts the namespace's own /sys, where
/// its devices' `threaded` files are).
fn in_ns(ns: &Netns, cmd: &str) -> anyhow::Result<String> {
    sys::sh(&["ip", "netns", "exec", &ns.name, "sh", "-c", cmd])
}

/// Runs the daemon against the backends for the window; see the module doc.
pub fn run(p: &Params) -> anyhow::Result<HealthCost> {
    ensure!(sys::is_root(), "needs root (netns, XDP)");
    ensure!(p.daemon.is_file(), "{} missing", p.daemon.display());
    let ns = Netns::new("hc")?;
    ns.ip(&[
        "link", "add", "lb0", "type", "veth", "peer", "name", "peer0",
    ])?;
    ns.ip(&["addr", "add", "198.18.0.2/24", "dev", "lb0"])?;
    ns.ip(&["link", "set", "lb0", "up"])?;
    ns.ip(&["link", "set", "peer0", "up"])?;
    // Every address of 198.19.0.0/20 is a backend: local to the namespace
    // the server runs in.
    let backend_ns = match p.at {
        Backends::Local => {
            ns.ip(&["route", "add", "local", "198.19.0.0/20", "dev", "lo"])?;
            None
        }
        Backends::Veth => {
            let bns = Netns::new("hb")?;
            ns.ip(&[
                "link", "add", "hc0", "type", "veth", "peer", "name", "hb0", "netns", &bns.name,
            ])?;
            ns.ip(&["addr", "add", "198.18.1.1/30", "dev", "hc0"])?;
            bns.ip(&["addr", "add", "198.18.1.2/30", "dev", "hb0"])?;
            ns.ip(&["link", "set", "hc0", "up"])?;
            bns.ip(&["link", "set", "hb0", "up"])?;
            ns.ip(&["route", "add", "198.19.0.0/20", "via", "198.18.1.2"])?;
            bns.ip(&["route", "add", "local", "198.19.0.0/20", "dev", "lo"])?;
            // GRO on gives a veth end NAPI without XDP; threaded NAPI runs
            // it in a kernel thread of its own instead of the softirq of
            // whoever transmitted, which is where loopback runs it. veth
            // hands a socket's TCP segment to the peer's NAPI only when the
            // sending end has no TSO (`veth_skb_is_eligible_for_gro`), so
            // TSO goes off: probes are far below one segment anyway.
            for (n, dev) in [(&ns, "hc0"), (&bns, "hb0")] {
                in_ns(
                    n,
                    &format!(
                        "ethtool -K {dev} gro on tso off && echo 1 > /sys/class/net/{dev}/threaded"
                    ),
                )?;
            }
            Some(bns)
        }
    };
    let server_ns = backend_ns.as_ref().unwrap_or(&ns);
    let dir = tempfile::tempdir()?;
    let mut server = Kill(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", server_ns.name))
            .args(["python3", "-c", SERVER])
            // UDP checks: an echo socket on every backend address.
            .arg(if p.check == Check::Udp {
                p.backends.to_string()
            } else {
                "0".into()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    {
        use std::io::BufRead as _;
        let mut line = String::new();
        std::io::BufReader::new(server.0.stdout.take().context("stdout")?).read_line(&mut line)?;
        ensure!(line.trim() == "ready", "server: {line}");
    }
    let backends: Vec<String> = (0..p.backends)
        .map(|i| format!("{{ address = \"{}\" }}", Ipv4Addr::from(0xc613_0001 + i)))
        .collect();
    let pin = PathBuf::from(format!("/sys/fs/bpf/lbbench-hc-{}", sys::unique_tag()));
    let sock = dir.path().join("lb.sock");
    let (check, proto) = match p.check {
        Check::Http => (r#"kind = "http", path = "/""#, "tcp"),
        Check::Tcp => (r#"kind = "tcp""#, "tcp"),
        Check::Udp => (r#"kind = "udp", payload = "ping""#, "udp"),
    };
    let config = format!(
        "[dataplane]\ninterface = \"lb0\"\ngateway_mac = \"02:00:00:00:00:01\"\npin_path = \"{}\"\n\
         max_vips = 4\nmax_backends = {}\nconn_table_size = 4096\n\n[api]\nlisten = \"unix://{}\"\n\n\
         [state]\ndir = \"{}\"\n\n[[vip]]\naddress = \"198.18.100.1:80/{proto}\"\n\
         health = {{ {check}, interval = \"1s\", timeout = \"500ms\" }}\n\
         backends = [ {} ]\n",
        pin.display(),
        p.backends + 8,
        sock.display(),
        dir.path().join("state").display(),
        backends.join(", ")
    );
    let cfg = dir.path().join("lb.toml");
    std::fs::write(&cfg, config)?;
    let log = dir.path().join("daemon.log");
    let daemon = Kill(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name))
            .arg(&p.daemon)
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
    let pid = daemon.0.id();
    let result = measure(p, pid, &sock, &log);
    drop(daemon);
    let _ = Command::new(&p.daemon)
        .args(["teardown", "--pin-path"])
        .arg(&pin)
        .output();
    drop(server);
    result
}

/// The window itself, once the daemon runs.
fn measure(p: &Params, pid: u32, sock: &Path, log: &Path) -> anyhow::Result<HealthCost> {
    let t0 = Instant::now();
    while !sock.exists() {
        ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "daemon not ready: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let api = format!("unix://{}", sock.display());
    let health = || -> anyhow::Result<(u64, u64, usize)> {
        rt.block_on(async {
            let mut c = lbctl::client::connect(&api, None).await?;
            let h = c
                .get_health(pb::GetHealthRequest {
                    vip: Some(pb::Vip {
                        address: "198.18.100.1".into(),
                        port: 80,
                        protocol: if p.check == Check::Udp {
                            pb::Protocol::Udp
                        } else {
                            pb::Protocol::Tcp
                        } as i32,
                    }),
                })
                .await?
                .into_inner();
            let sent = h.backends.iter().map(|b| b.probes_sent).sum();
            let failed = h.backends.iter().map(|b| b.probes_failed).sum();
            let down = h
                .backends
                .iter()
                .filter(|b| b.state == pb::HealthState::Down as i32)
                .count();
            Ok((sent, failed, down))
        })
    };
    std::thread::sleep(p.warmup);
    let rx = match p.at {
        Backends::Veth => Some(napi_thread("hc0")?),
        Backends::Local => None,
    };
    let stat = PathBuf::from(format!("/proc/{pid}/stat"));
    let (sent0, failed0, _) = health()?;
    let (cpu0, host0, start) = (cpu_seconds(&stat)?, host_jiffies()?, Instant::now());
    let rx0 = rx.as_deref().map(cpu_seconds).transpose()?;
    let mut rss = vec![rss_kib(pid)?];
    let window = Duration::from_secs(p.seconds);
    while start.elapsed() < window {
        std::thread::sleep(Duration::from_secs(10).min(window.saturating_sub(start.elapsed())));
        rss.push(rss_kib(pid)?);
    }
    let wall = start.elapsed().as_secs_f64();
    let (cpu1, host1) = (cpu_seconds(&stat)?, host_jiffies()?);
    let rx1 = rx.as_deref().map(cpu_seconds).transpose()?;
    let (user, system) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
    let (sent1, failed1, down) = health()?;
    // A failed probe costs what a passed one does (a timeout a little
    // more): counted and shown. A backend down is probed all the same, but
    // the run is then not the steady state it claims.
    if down > 0 {
        bail!(
            "{down} backends down, {} probes failed in the window: not the steady state",
            failed1 - failed0
        );
    }
    Ok(HealthCost {
        check: format!("{:?}", p.check).to_lowercase(),
        backends_at: format!("{:?}", p.at).to_lowercase(),
        backends: p.backends,
        window_s: wall,
        probes_per_s: (sent1 - sent0) as f64 / wall,
        probes_failed: failed1 - failed0,
        user_s: user,
        system_s: system,
        cpu_percent: 100.0 * (user + system) / wall,
        rx_thread_percent: rx0
            .zip(rx1)
            .map(|(a, b)| 100.0 * ((b.0 - a.0) + (b.1 - a.1)) / wall),
        rss_kib: rss,
        host_busy_percent: 100.0 * (host1.0 - host0.0) as f64 / (host1.1 - host0.1).max(1) as f64,
        load_after: sys::loadavg(),
    })
}

impl HealthCost {
    /// One line for the terminal and the report.
    pub fn line(&self) -> String {
        let rss = &self.rss_kib;
        format!(
            "{} backends, {} every 1 s, backends {}: {:.0} probes/s over {:.0} s ({} failed); daemon CPU {:.2} % of one core \
             ({:.2} s user, {:.2} s system){}; RSS {} -> {} KiB (min {}, max {}, every 10 s: {:?}); \
             host busy {:.0} %, load {:.2}",
            self.backends,
            self.check,
            self.backends_at,
            self.probes_per_s,
            self.window_s,
            self.probes_failed,
            self.cpu_percent,
            self.user_s,
            self.system_s,
            self.rx_thread_percent
                .map(|r| format!(", its veth end's receive thread {r:.2} %"))
                .unwrap_or_default(),
            rss.first().unwrap_or(&0),
            rss.last().unwrap_or(&0),
            rss.iter().min().unwrap_or(&0),
            rss.iter().max().unwrap_or(&0),
            rss,
            self.host_busy_percent,
            self.load_after[0],
        )
    }
}
