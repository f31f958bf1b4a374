//! Support for the privileged test tier (the tests are in `tests/`): the
//! root guard, a packet builder, and a fixture that loads the real
//! `lb_xdp` with small maps and runs frames through it with
//! BPF_PROG_TEST_RUN; network namespaces, a real daemon and the lab.

pub mod bins;
pub mod daemon;
pub mod fuzz;
pub mod kubevalidate;
pub mod lab;
pub mod netns;
pub mod pkt;
pub mod pyclient;
pub mod venv;

use std::net::IpAddr;

use aya::programs::{TestRun as _, TestRunOptions};
use lb_common::{AddrKey, Backend, Stat, VipKey, VipMeta};
use lb_daemon::dataplane::{Balancer, BalancerConfig, Sizes};

/// Fails the calling test unless it runs as root. Every test of this crate
/// calls it first: without root (CAP_BPF, CAP_NET_ADMIN, network namespaces,
/// bpffs) a privileged test cannot run, and a test that did not run must not
/// count as passed. The unprivileged tiers are plain `cargo test`.
#[track_caller]
pub fn require_root() {
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        panic!(
            "needs root (CAP_BPF, CAP_NET_ADMIN, netns), running as uid {euid}: \
             run scripts/test.sh as root \
             (or, as root, `cargo build --bins && cargo test -p lb-privileged-tests`)"
        );
    }
}

/// Pins the calling thread to the CPU it is on, so the per-CPU counters and
/// token bucket written by one test run are the ones the next run reads
/// (the connection table is shared by all CPUs).
pub fn pin_thread() {
    unsafe {
        let cpu = libc::sched_getcpu().max(0) as usize;
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

pub use lb_daemon::vip::map_addr;

/// VIP key for `addr:port/proto`.
pub fn vip_key(a: IpAddr, port: u16, proto: u8) -> VipKey {
    let proto = lb_daemon::vip::Proto::from_number(proto).expect("tcp or udp");
    lb_daemon::vip::VipSpec::new(a, port, proto).key()
}

/// The real balancer program with maps filled by test code.
pub struct Fixture {
    pub lb: Balancer,
    pub cfg: BalancerConfig,
    next_vip: u32,
    addr_counts: std::collections::HashMap<AddrKey, u32>,
}

/// Small sizes so many fixtures can coexist; the ring keeps the real default M.
pub fn test_sizes() -> Sizes {
    Sizes {
        ring_size: lb_common::DEFAULT_RING_SIZE,
        max_vips: 8,
        max_backends: 256,
        conn_table: 4096,
    }
}

impl Fixture {
    /// Loads the program with the default test configuration (crafted sources
    /// in 198.19.128.0/17 and fd00:5::/96, MTU 1500).
    #[allow(
        clippy::new_without_default,
        reason = "loading a program into the kernel is not a default value"
    )]
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    /// Loads the program after letting `f` adjust the configuration.
    pub fn with(f: impl FnOnce(&mut BalancerConfig)) -> Self {
        pin_thread();
        let mut cfg = BalancerConfig {
            gateway_mac: pkt::GW_MAC,
            if_mac: pkt::LB_MAC,
            mtu: 1500,
            hash_seed: 0x5eed,
            v4_src: "198.19.128.0".parse().unwrap(),
            v4_src_len: 17,
            v6_src: "fd00:5::".parse().unwrap(),
            v6_src_len: 96,
            // Unlimited unless a test is about the limit.
            icmp_too_big_rate: 0,
            new_flow_rate: 0,
            forward_icmp_errors: true,
            encap: lb_daemon::dataplane::Encapsulation::Ipip,
        };
        f(&mut cfg);
        let mut lb = Balancer::load(test_sizes()).expect("load lb_xdp");
        lb.set_config(&cfg.to_map().unwrap()).unwrap();
        Self {
            lb,
            cfg,
            next_vip: 0,
            addr_counts: Default::default(),
        }
    }

    /// Adds a VIP with an empty ring; returns its index.
    pub fn vip(&mut self, a: IpAddr, port: u16, proto: u8, flags: u32) -> u32 {
        let index = self.next_vip;
        self.next_vip += 1;
        let key = vip_key(a, port, proto);
        self.lb
            .set_vip(
                &key,
                &VipMeta {
                    index,
                    flags,
                    ring_half: 0,
                    _pad: 0,
                },
            )
            .unwrap();
        let ak = lb_daemon::vip::addr_key(a);
        let n = self.addr_counts.entry(ak).or_default();
        *n += 1;
        self.lb.set_vip_addr(&ak, *n).unwrap();
        index
    }

    /// Writes backend `slot` -> `a` with `generation` (for VIP index 0 until
    /// a ring of another VIP names it: see [`Fixture::ring_table`]).
    pub fn backend_gen(&mut self, slot: u32, a: IpAddr, generation: u32) {
        let (addr, family) = map_addr(a);
        self.lb
            .set_backend(slot, &Backend::valid(addr, family, generation, 0))
            .unwrap();
    }

    /// Writes backend `slot` -> `a` (generation 1).
    pub fn backend(&mut self, slot: u32, a: IpAddr) {
        self.backend_gen(slot, a, 1);
    }

    /// Frees a slot the way the daemon does: invalid, generation bumped.
    pub fn free_backend(&mut self, slot: u32) {
        let mut b = self.lb.backend(slot).unwrap();
        b.flags = 0;
        b.generation += 1;
        self.lb.set_backend(slot, &b).unwrap();
    }

    /// Publishes `table` as the VIP's ring: written into the inactive half,
    /// then the VIP entry flips to it.
    pub fn ring_table(&mut self, vip: IpAddr, port: u16, proto: u8, table: &[u32]) {
        let key = vip_key(vip, port, proto);
        let mut meta = self.lb.vip(&key).expect("VIP exists");
        // Slots are per VIP/backend pair and name their VIP, as the daemon
        // writes them: a slot in this VIP's ring belongs to this VIP.
        let slots: std::collections::BTreeSet<u32> = table.iter().copied().collect();
        for slot in slots {
            if slot == lb_common::SLOT_NONE {
                continue;
            }
            let mut b = self.lb.backend(slot).unwrap();
            if b.vip != meta.index {
                b.vip = meta.index;
                self.lb.set_backend(slot, &b).unwrap();
            }
        }
        let next = meta.ring_half ^ 1;
        self.lb.write_ring_half(meta.index, next, table).unwrap();
        meta.ring_half = next;
        self.lb.set_vip(&key, &meta).unwrap();
    }

    /// Fills the VIP's ring with `slots` repeated (one slot: every flow goes there).
    pub fn ring(&mut self, vip: IpAddr, port: u16, proto: u8, slots: &[u32]) {
        let m = self.lb.sizes().ring_size as usize;
        let table: Vec<u32> = (0..m)
            .map(|i| {
                if slots.is_empty() {
                    0
                } else {
                    slots[i % slots.len()]
                }
            })
            .collect();
        self.ring_table(vip, port, proto, &table);
    }

    /// Runs one frame through `lb_xdp`: (XDP action, output frame).
    pub fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        run_xdp(self.lb.program(), frame)
    }

    /// A global counter.
    pub fn stat(&self, s: Stat) -> u64 {
        self.lb.stats().unwrap()[s as usize]
    }
}

/// Runs `frame` through an XDP program once with BPF_PROG_TEST_RUN.
pub fn run_xdp(prog: &mut aya::programs::Xdp, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

/// Runs a TC program (`lb_probe`) on one frame with socket mark `mark`
/// through BPF_PROG_TEST_RUN: its verdict and the frame as it left.
pub fn run_tc(
    prog: &mut aya::programs::SchedClassifier,
    frame: &[u8],
    mark: u32,
) -> (i32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    // The start of a `struct __sk_buff`: len, pkt_type, mark. The kernel
    // takes `mark` from here (len and pkt_type must be zero).
    let mut ctx = [0u8; 12];
    ctx[8..12].copy_from_slice(&mark.to_ne_bytes());
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value as i32, out)
}

/// TC verdicts.
pub const TC_ACT_OK: i32 = 0;
/// TC verdict: drop.
pub const TC_ACT_SHOT: i32 = 2;

/// XDP actions.
pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

/// Compares frames and prints a readable hex diff on mismatch.
#[track_caller]
pub fn assert_frame(got: &[u8], want: &[u8]) {
    if got != want {
        let hex = |b: &[u8]| {
            b.chunks(16)
                .map(|c| {
                    c.iter()
                        .map(|x| format!("{x:02x}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "frames differ (got {} bytes, want {} bytes)\n--- got\n{}\n--- want\n{}",
            got.len(),
            want.len(),
            hex(got),
            hex(want)
        );
    }
}

/// The `lb-xdp` object of the `upgrade-test` build (see build.rs): same
/// maps and behaviour as the embedded one, different instructions.
pub static UPGRADE_TEST_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-xdp"));

/// Writes [`UPGRADE_TEST_OBJECT`] to a file (for `LB_TEST_XDP_OBJECT`).
pub fn upgrade_test_object_file() -> tempfile::NamedTempFile {
    use std::io::Write as _;
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(UPGRADE_TEST_OBJECT).expect("write object");
    f
}
