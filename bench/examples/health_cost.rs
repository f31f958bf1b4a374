//! What health checks cost the daemon: a real `lb-daemon run` in a network
//! namespace of its own, one VIP with N backends (default 1,000) under an
//! HTTP check every second, each backend a local address (`ip route add
//! local 198.19.0.0/20 dev lo`) answered by one small asyncio HTTP server in
//! the namespace (a separate process: its CPU is not the daemon's). After a
//! warm-up, the daemon's CPU time (utime + stime from /proc/PID/stat) over
//! the window, its resident memory sampled every 10 s, and the probes it
//! sent (GetHealth), so the rate is checked, not assumed.
//!
//! The backends are local addresses, so the kernel's work for both ends of
//! each probe's TCP handshake (loopback delivery runs in the sender's
//! context) is charged to the daemon's system time: the figure is an upper
//! bound of what probing real hosts costs the LB.
//!
//! ```sh
//! cargo build --release -p lb-daemon -p bench --example health_cost
//! target/release/examples/health_cost --seconds 120 --daemon target/release/lb-daemon
//! ```

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use bench::sys::{self, Netns};
use clap::Parser;
use lb_proto::v1 as pb;

#[derive(Parser)]
struct Args {
    /// The daemon binary.
    #[arg(long, default_value = "target/release/lb-daemon")]
    daemon: PathBuf,
    /// Backends probed.
    #[arg(long, default_value_t = 1000)]
    backends: u32,
    /// Measured window, seconds (after a 15 s warm-up).
    #[arg(long, default_value_t = 120)]
    seconds: u64,
}

const SERVER: &str = r#"
import asyncio, sys
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
    print("ready", flush=True)
    await s.serve_forever()
asyncio.run(main())
"#;

/// (utime, stime) of a process, seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(") ").context("stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((f[11].parse::<f64>()? / hz, f[12].parse::<f64>()? / hz))
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

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(sys::is_root(), "needs root (netns, XDP)");
    ensure!(args.daemon.is_file(), "{} missing", args.daemon.display());
    let ns = Netns::new("hc")?;
    ns.ip(&[
        "link", "add", "lb0", "type", "veth", "peer", "name", "peer0",
    ])?;
    ns.ip(&["addr", "add", "198.18.0.2/24", "dev", "lb0"])?;
    ns.ip(&["link", "set", "lb0", "up"])?;
    ns.ip(&["link", "set", "peer0", "up"])?;
    // Every address of 198.19.0.0/20 is local: one per backend.
    ns.ip(&["route", "add", "local", "198.19.0.0/20", "dev", "lo"])?;
    let dir = tempfile::tempdir()?;
    let mut server = Kill(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name))
            .args(["python3", "-c", SERVER])
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
    let backends: Vec<String> = (0..args.backends)
        .map(|i| format!("{{ address = \"{}\" }}", Ipv4Addr::from(0xc613_0001 + i)))
        .collect();
    let pin = PathBuf::from(format!("/sys/fs/bpf/lbbench-hc-{}", sys::unique_tag()));
    let sock = dir.path().join("lb.sock");
    let config = format!(
        "[dataplane]\ninterface = \"lb0\"\ngateway_mac = \"02:00:00:00:00:01\"\npin_path = \"{}\"\n\
         max_vips = 4\nmax_backends = {}\nconn_table_size = 4096\n\n[api]\nlisten = \"unix://{}\"\n\n\
         [state]\ndir = \"{}\"\n\n[[vip]]\naddress = \"198.18.100.1:80/tcp\"\n\
         health = {{ kind = \"http\", path = \"/\", interval = \"1s\", timeout = \"500ms\" }}\n\
         backends = [ {} ]\n",
        pin.display(),
        args.backends + 8,
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
            .arg(&args.daemon)
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
    let pid = daemon.0.id();
    let t0 = Instant::now();
    while !sock.exists() {
        ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "daemon not ready: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
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
                        protocol: pb::Protocol::Tcp as i32,
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
    eprintln!("warm-up 15 s ...");
    std::thread::sleep(Duration::from_secs(15));
    let (sent0, failed0, _) = health()?;
    let (cpu0, start) = (cpu_seconds(pid)?, Instant::now());
    let mut rss = vec![rss_kib(pid)?];
    while start.elapsed() < Duration::from_secs(args.seconds) {
        std::thread::sleep(
            Duration::from_secs(10)
                .min(Duration::from_secs(args.seconds).saturating_sub(start.elapsed())),
        );
        rss.push(rss_kib(pid)?);
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds(pid)?;
    let (user, sys) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
    let cpu = user + sys;
    let (sent1, failed1, down) = health()?;
    let rate = (sent1 - sent0) as f64 / wall;
    if down > 0 || failed1 > failed0 {
        bail!(
            "{down} backends down, {} probes failed: the figure would not be the steady state",
            failed1 - failed0
        );
    }
    println!(
        "health checks: {} backends, HTTP every 1 s: {:.0} probes/s over {:.0} s; daemon CPU {:.2} % of one core \
         ({:.2} s CPU: {:.2} s user, {:.2} s system); RSS {} KiB at the start of the window, {} KiB at the end (min {}, max {}, every 10 s: {:?})",
        args.backends,
        rate,
        wall,
        100.0 * cpu / wall,
        cpu,
        user,
        sys,
        rss[0],
        rss[rss.len() - 1],
        rss.iter().min().unwrap(),
        rss.iter().max().unwrap(),
        rss
    );
    drop(daemon);
    let _ = Command::new(&args.daemon)
        .args(["teardown", "--pin-path"])
        .arg(&pin)
        .output();
    Ok(())
}
