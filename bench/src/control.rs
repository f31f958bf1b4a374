//! Figure 4: the control plane, against a real `lb-daemon run` in a network
//! namespace (XDP attached to a veth there, maps pinned under a bpffs
//! directory of its own, API on a Unix socket in a temp dir).
//!
//! "Map-visible" is the moment the data plane can see a change: for a
//! backend added to a VIP, when the VIP entry's `ring_half` flips to the
//! rebuilt half (the daemon's atomic publication step); for a new VIP, when
//! its entry appears (written after its ring). A poller thread reads the
//! pinned VIP map every ~10 µs (timer slack lowered so the sleeps are that
//! short without spinning a core the daemon needs); the gRPC round trip,
//! which also includes persisting the state with fsync, is reported beside it.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use lb_common::VipKey;
use lb_daemon::dataplane::{Balancer, Origin, Sizes};
use lb_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::{
    lab::vip_key,
    stats::{Summary, percentile},
    sys::{self, Netns},
};

/// How many samples to take.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Params {
    /// AddBackend calls timed.
    pub add_samples: usize,
    /// CreateVip calls (1,000 backends) timed.
    pub create_runs: usize,
}

impl Params {
    /// For results. The AddBackend p99 is judged against a goal, and by
    /// nearest rank it is the 10th-worst of 1,000 samples, a figure that
    /// holds still from run to run; over 300 it was the 3rd-worst, which one
    /// burst of noise on a shared host moves. About 15 s.
    pub const FULL: Self = Self {
        add_samples: 1000,
        create_runs: 21,
    };

    /// `--quick`: checks the bench itself, not for results.
    pub const QUICK: Self = Self {
        add_samples: 30,
        create_runs: 2,
    };
}

/// Resident memory of the daemon, from /proc/PID/status, KiB.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Rss {
    /// VmRSS: everything resident.
    pub vm_rss_kib: u64,
    /// RssAnon: heap and stacks.
    pub anon_kib: u64,
    /// RssFile: the binary and libraries.
    pub file_kib: u64,
    /// RssShmem: shared memory.
    pub shmem_kib: u64,
    /// Of VmRSS, the pages of BPF maps mapped into the daemon (the ring map's
    /// `mmap`, from /proc/PID/smaps): kernel memory of the map, counted in
    /// RssFile, not the daemon's own.
    pub bpf_map_kib: u64,
}

/// Latency percentiles of one operation, µs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Latency {
    /// Samples.
    pub samples: usize,
    /// Request sent -> change visible in the pinned maps: p50.
    pub visible_p50_us: f64,
    /// ... p99.
    pub visible_p99_us: f64,
    /// ... worst.
    pub visible_max_us: f64,
    /// Request sent -> response received: p50.
    pub rpc_p50_us: f64,
    /// ... p99.
    pub rpc_p99_us: f64,
}

/// Figure 4.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Control {
    /// Sample counts.
    pub params: Params,
    /// The data-plane sizes the daemon ran with (its production defaults).
    pub sizes: String,
    /// AddBackend on a VIP with 100 backends.
    pub add_backend: Latency,
    /// CreateVip with 1,000 backends: request -> VIP entry visible, ms.
    pub create_vip_1000_visible_ms: Summary,
    /// CreateVip with 1,000 backends: round trip, ms.
    pub create_vip_1000_rpc_ms: Summary,
    /// Daemon memory right after start, no VIPs.
    pub rss_idle: Rss,
    /// Daemon memory with 64 VIPs x 100 backends.
    pub rss_64x100: Rss,
}

/// A daemon in its own namespace; on drop (panics included) it is killed,
/// its pinned data plane torn down and the namespace deleted.
struct Daemon {
    bin: PathBuf,
    pin: PathBuf,
    sock: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
    // Declared last: dropped after the teardown in `Drop::drop`.
    _ns: Netns,
}

impl Daemon {
    fn start(bin: &Path) -> anyhow::Result<Self> {
        let ns = Netns::new("cp")?;
        ns.ip(&[
            "link", "add", "lb0", "type", "veth", "peer", "name", "peer0",
        ])?;
        ns.ip(&["addr", "add", "198.18.0.2/24", "dev", "lb0"])?;
        ns.ip(&["link", "set", "lb0", "up"])?;
        ns.ip(&["link", "set", "peer0", "up"])?;
        let dir = tempfile::tempdir()?;
        let pin = PathBuf::from(format!("/sys/fs/bpf/lbbench-{}", sys::unique_tag()));
        let sock = dir.path().join("lb.sock");
        let s = Sizes::default();
        let config = format!(
            "[dataplane]\ninterface = \"lb0\"\ngateway_mac = \"02:00:00:00:00:01\"\n\
             pin_path = \"{}\"\nhash_seed = 4242\nencap_source_v4 = \"198.19.128.0/17\"\n\
             encap_source_v6 = \"fd00:5::/96\"\nring_size = {}\nmax_vips = {}\n\
             max_backends = {}\nconn_table_size = {}\n\n[api]\nlisten = \"unix://{}\"\n\n\
             [state]\ndir = \"{}\"\n",
            pin.display(),
            s.ring_size,
            s.max_vips,
            s.max_backends,
            s.conn_table,
            sock.display(),
            dir.path().join("state").display()
        );
        let cfg = dir.path().join("lb.toml");
        std::fs::write(&cfg, config)?;
        let log = std::fs::File::create(dir.path().join("daemon.log"))?;
        // nsenter, not `ip netns exec`: the latter remounts /sys and hides the
        // real bpffs, so the pins would vanish with it. nsenter execs the
        // daemon, so the child's PID is the daemon's.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name))
            .arg(bin)
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting lb-daemon")?;
        let mut d = Self {
            bin: bin.to_path_buf(),
            pin,
            sock,
            child: Some(child),
            dir,
            _ns: ns,
        };
        d.wait_ready()?;
        Ok(d)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.sock.exists() {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                bail!("lb-daemon exited with {st}:\n{}", self.log());
            }
            ensure!(
                Instant::now() < deadline,
                "lb-daemon not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    fn rss(&self) -> anyhow::Result<Rss> {
        let pid = self.pid();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
        ensure!(
            comm.trim() == "lb-daemon",
            "PID {pid} is {comm:?}, not lb-daemon"
        );
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        // Sum the Rss of every anon_inode:bpf-map mapping.
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
        let (mut in_map, mut bpf_map_kib) = (false, 0u64);
        for l in smaps.lines() {
            let mut f = l.split_whitespace();
            match f.next() {
                Some("Rss:") if in_map => {
                    bpf_map_kib += f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                }
                Some(first) if first.contains('-') && !first.ends_with(':') => {
                    in_map = l.ends_with("anon_inode:bpf-map");
                }
                _ => {}
            }
        }
        Ok(Rss {
            bpf_map_kib,
            vm_rss_kib: kib("VmRSS:"),
            anon_kib: kib("RssAnon:"),
            file_kib: kib("RssFile:"),
            shmem_kib: kib("RssShmem:"),
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(&self.bin)
            .args(["teardown", "--pin-path"])
            .arg(&self.pin)
            .output();
    }
}

/// What the poller waits for.
enum Watch {
    /// The VIP's `ring_half` differs from its value when the watch started.
    Flip(VipKey),
    /// The VIP entry exists.
    Appear(VipKey),
}

enum Seen {
    Ready,
    At(Instant),
    Failed(String),
}

/// Polls the pinned VIP map on its own thread until the watched change.
fn poller(pin: PathBuf, rx: mpsc::Receiver<Watch>, tx: mpsc::Sender<Seen>) {
    sys::tight_timer_slack();
    let lb = match Balancer::open_pinned(Sizes::default(), &pin) {
        Ok((lb, Origin::Adopted)) => lb,
        Ok((_, Origin::Loaded)) => {
            let _ = tx.send(Seen::Failed(
                "pins missing: loaded a fresh data plane".into(),
            ));
            return;
        }
        Ok((_, Origin::Upgraded)) => {
            let _ = tx.send(Seen::Failed(
                "the daemon runs another build's program".into(),
            ));
            return;
        }
        Err(e) => {
            let _ = tx.send(Seen::Failed(format!("open pins: {e}")));
            return;
        }
    };
    for w in rx {
        let (key, old) = match w {
            Watch::Flip(k) => (k, lb.vip(&k).map(|m| m.ring_half)),
            Watch::Appear(k) => (k, None),
        };
        if tx.send(Seen::Ready).is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let seen = loop {
            let now = lb.vip(&key).map(|m| m.ring_half);
            if now.is_some() && now != old {
                break Seen::At(Instant::now());
            }
            if Instant::now() > deadline {
                break Seen::Failed("change not visible within 10 s".into());
            }
            std::thread::sleep(Duration::from_micros(10));
        };
        if tx.send(seen).is_err() {
            return;
        }
    }
}

fn pvip(addr: Ipv4Addr) -> Option<pb::Vip> {
    Some(pb::Vip {
        address: addr.to_string(),
        port: 80,
        protocol: pb::Protocol::Tcp as i32,
    })
}

fn backends(third: u8, n: usize) -> Vec<pb::Backend> {
    (0..n)
        .map(|i| pb::Backend {
            address: Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, third, 0)) + 1 + i as u32)
                .to_string(),
            weight: None,
        })
        .collect()
}

fn key(addr: Ipv4Addr) -> VipKey {
    vip_key(IpAddr::V4(addr), 80, lb_common::PROTO_TCP)
}

/// Runs figure 4 against the daemon binary `bin`.
pub fn run(bin: &Path, p: Params) -> anyhow::Result<Control> {
    ensure!(bin.exists(), "{} not built", bin.display());
    let daemon = Daemon::start(bin)?;
    // Let start-up allocations settle before the idle reading.
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle = daemon.rss()?;

    let (wtx, wrx) = mpsc::channel();
    let (stx, srx) = mpsc::channel();
    let pin = daemon.pin.clone();
    let poll = std::thread::spawn(move || poller(pin, wrx, stx));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let api = format!("unix://{}", daemon.sock.display());
    let checker = Balancer::open_pinned(Sizes::default(), &daemon.pin)?.0;

    let result = rt.block_on(async {
        let mut c = lbctl::client::connect(&api, None).await?;
        let vip_a = Ipv4Addr::new(198, 18, 100, 10);
        c.create_vip(pb::CreateVipRequest {
            vip: pvip(vip_a),
            flags: vec![],
            backends: backends(0, 100),
            health_check: None,
        })
        .await?;

        // AddBackend on a 100-backend VIP, removed again (untimed) so every
        // sample starts from 100.
        let (mut vis, mut rpc) = (vec![], vec![]);
        for i in 0..p.add_samples {
            let addr = Ipv4Addr::new(198, 19, 1, 1 + (i % 250) as u8).to_string();
            let call = c.add_backend(pb::AddBackendRequest {
                vip: pvip(vip_a),
                backend: Some(pb::Backend {
                    address: addr.clone(),
                    weight: None,
                }),
            });
            let (v, r, resp) = timed(Watch::Flip(key(vip_a)), &wtx, &srx, call).await?;
            let slot = resp.into_inner().backend.map(|b| b.slot).unwrap_or(0);
            // The flip seen must have published a ring that names the new slot.
            let meta = checker.vip(&key(vip_a)).context("VIP entry gone")?;
            ensure!(
                checker
                    .ring_half(meta.index, meta.ring_half)
                    .contains(&slot),
                "sample {i}: the published ring does not contain the new slot {slot}"
            );
            vis.push(v.as_secs_f64() * 1e6);
            rpc.push(r.as_secs_f64() * 1e6);
            c.remove_backend(pb::RemoveBackendRequest {
                vip: pvip(vip_a),
                address: addr,
            })
            .await?;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        vis.sort_by(f64::total_cmp);
        rpc.sort_by(f64::total_cmp);
        let add_backend = Latency {
            samples: vis.len(),
            visible_p50_us: percentile(&vis, 50.0),
            visible_p99_us: percentile(&vis, 99.0),
            visible_max_us: vis.last().copied().unwrap_or(f64::NAN),
            rpc_p50_us: percentile(&rpc, 50.0),
            rpc_p99_us: percentile(&rpc, 99.0),
        };
        eprintln!("  add-backend: {add_backend:?}");

        // One CreateVip with 1,000 backends, deleted again between runs.
        let vip_b = Ipv4Addr::new(198, 18, 100, 20);
        let (mut cvis, mut crpc) = (vec![], vec![]);
        for _ in 0..p.create_runs {
            let call = c.create_vip(pb::CreateVipRequest {
                vip: pvip(vip_b),
                flags: vec![],
                backends: backends(8, 1000),
                health_check: None,
            });
            let (v, r, _) = timed(Watch::Appear(key(vip_b)), &wtx, &srx, call).await?;
            cvis.push(v.as_secs_f64() * 1e3);
            crpc.push(r.as_secs_f64() * 1e3);
            c.delete_vip(pb::DeleteVipRequest { vip: pvip(vip_b) })
                .await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("  create 1000-backend VIP: visible {cvis:?} ms, rpc {crpc:?} ms");

        // 64 VIPs x 100 backends (the first one exists already).
        for v in 1..64u8 {
            c.create_vip(pb::CreateVipRequest {
                vip: pvip(Ipv4Addr::new(198, 18, 101, v)),
                flags: vec![],
                backends: backends(16 + v, 100),
                health_check: None,
            })
            .await?;
        }
        let n = c
            .list_vips(pb::ListVipsRequest {})
            .await?
            .into_inner()
            .vips
            .len();
        ensure!(n == 64, "expected 64 VIPs, the daemon has {n}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_64x100 = daemon.rss()?;
        anyhow::Ok(Control {
            params: p,
            sizes: format!(
                "ring {} x 64 VIPs, 16384 backend slots, 1,048,576-flow connection table",
                Sizes::default().ring_size
            ),
            add_backend,
            create_vip_1000_visible_ms: Summary::of(&cvis),
            create_vip_1000_rpc_ms: Summary::of(&crpc),
            rss_idle,
            rss_64x100,
        })
    });
    drop(wtx);
    let _ = poll.join();
    drop(daemon);
    result
}

/// Times one call: the poller arms first (reads the current state), then
/// the clock starts and the request goes out (a future does nothing until
/// awaited). Returns (request -> visible, request -> response, response).
async fn timed<T>(
    w: Watch,
    wtx: &mpsc::Sender<Watch>,
    srx: &mpsc::Receiver<Seen>,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> anyhow::Result<(Duration, Duration, T)> {
    wtx.send(w).context("poller gone")?;
    // Blocking receives are fine here: nothing else has to run meanwhile.
    match srx.recv()? {
        Seen::Ready => {}
        Seen::Failed(e) => bail!("poller: {e}"),
        Seen::At(_) => bail!("poller out of step"),
    }
    let t0 = Instant::now();
    let resp = call.await?;
    let rpc = t0.elapsed();
    match srx.recv()? {
        Seen::At(t) => Ok((t.saturating_duration_since(t0), rpc, resp)),
        Seen::Failed(e) => bail!("poller: {e}"),
        Seen::Ready => bail!("poller out of step"),
    }
}
