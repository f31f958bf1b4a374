//! The benchmark XDP programs (`lb_bench_*` in lb-ebpf) and the two ways of
//! running a program under BPF_PROG_TEST_RUN the benchmarks use.

use std::time::Instant;

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, PerCpuArray, ProgramArray},
    programs::{
        ProgramFd, TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId,
    },
};

use crate::layout::{FRAME_WORDS, MAX_FRAME, Template};

/// XDP_DROP.
pub const XDP_DROP: u32 = 1;
/// XDP_PASS.
pub const XDP_PASS: u32 = 2;
/// XDP_TX.
pub const XDP_TX: u32 = 3;

const HARNESS: &str = "lb_bench_harness";
const BASELINE: &str = "lb_bench_baseline";
const SINK: &str = "lb_bench_sink";
const ADJUST: &str = "lb_bench_adjust";

/// How the harness varies the client per run (live-frames flows).
#[derive(Clone, Copy, Debug)]
pub struct FlowRewrite {
    /// Distinct flows to cycle through.
    pub nflows: u32,
    /// Offset of the low 16 bits of the source address in the frame.
    pub addr_off: usize,
    /// Offset of the source port.
    pub port_off: usize,
    /// First low-16-bit address value.
    pub addr_base: u16,
    /// First source port.
    pub port_base: u16,
    /// Offset of the IPv4 header checksum (kept right), 0 for IPv6.
    pub csum_off: usize,
}

/// The harness template for `frame`, optionally cycling flows.
pub fn template(frame: &[u8], flows: Option<FlowRewrite>) -> anyhow::Result<Template> {
    if frame.len() > MAX_FRAME || !frame.len().is_multiple_of(8) {
        bail!(
            "benchmark frames must be a multiple of 8 bytes up to {MAX_FRAME}, got {}",
            frame.len()
        );
    }
    let mut words = [0u64; FRAME_WORDS];
    for (w, c) in words.iter_mut().zip(frame.chunks_exact(8)) {
        *w = u64::from_ne_bytes(c.try_into().expect("8-byte chunk"));
    }
    let f = flows.unwrap_or(FlowRewrite {
        nflows: 0,
        addr_off: 0,
        port_off: 0,
        addr_base: 0,
        port_base: 0,
        csum_off: 0,
    });
    Ok(Template {
        len: frame.len() as u32,
        nflows: f.nflows,
        addr_off: f.addr_off as u32,
        port_off: f.port_off as u32,
        addr_base: u32::from(f.addr_base),
        port_base: u32::from(f.port_base),
        csum_off: f.csum_off as u32,
        _pad: 0,
        words,
    })
}

/// The loaded `lb_bench_*` programs and their maps.
pub struct Bench {
    ebpf: Ebpf,
    baseline_fd: ProgramFd,
}

impl Bench {
    /// Loads the three programs (verifier included).
    pub fn load() -> anyhow::Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .load(crate::objects::BENCH)
            .context("loading the lb-bench object")?;
        for name in [HARNESS, BASELINE, SINK, ADJUST] {
            let p: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("{name} missing"))?
                .try_into()?;
            p.load().with_context(|| format!("loading {name}"))?;
        }
        let baseline_fd = Self::xdp(&mut ebpf, BASELINE)?.fd()?.try_clone()?;
        Ok(Self { ebpf, baseline_fd })
    }

    fn xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
        Ok(ebpf
            .program_mut(name)
            .with_context(|| format!("{name} missing"))?
            .try_into()?)
    }

    /// The frame-restoring harness.
    pub fn harness(&mut self) -> anyhow::Result<&mut Xdp> {
        Self::xdp(&mut self.ebpf, HARNESS)
    }

    /// The MAC-swap + XDP_TX baseline.
    pub fn baseline(&mut self) -> anyhow::Result<&mut Xdp> {
        Self::xdp(&mut self.ebpf, BASELINE)
    }

    /// The baseline with a 20-byte head grow and shrink in front.
    pub fn adjust(&mut self) -> anyhow::Result<&mut Xdp> {
        Self::xdp(&mut self.ebpf, ADJUST)
    }

    /// Attaches the counting sink to `iface` of the calling thread's network
    /// namespace (a bpf_link, so it goes with the device whoever drops it).
    pub fn attach_sink(&mut self, iface: &str) -> anyhow::Result<XdpLinkId> {
        Self::xdp(&mut self.ebpf, SINK)?
            .attach(iface, XdpMode::Driver)
            .with_context(|| format!("attaching {SINK} to {iface}"))
    }

    /// Detaches the sink again.
    pub fn detach_sink(&mut self, link: XdpLinkId) -> anyhow::Result<()> {
        Self::xdp(&mut self.ebpf, SINK)?.detach(link)?;
        Ok(())
    }

    /// Makes the harness tail-call `target`.
    pub fn set_target(&mut self, target: &ProgramFd) -> anyhow::Result<()> {
        let mut progs = ProgramArray::try_from(
            self.ebpf
                .map_mut("BENCH_PROGS")
                .context("BENCH_PROGS missing")?,
        )?;
        progs.set(0, target, 0)?;
        Ok(())
    }

    /// Makes the harness tail-call the baseline.
    pub fn target_baseline(&mut self) -> anyhow::Result<()> {
        let fd = self.baseline_fd.try_clone()?;
        self.set_target(&fd)
    }

    /// Sets what the harness writes before each run.
    pub fn set_template(&mut self, t: &Template) -> anyhow::Result<()> {
        let mut a: Array<_, Template> = Array::try_from(
            self.ebpf
                .map_mut("BENCH_TEMPLATE")
                .context("BENCH_TEMPLATE missing")?,
        )?;
        a.set(0, t, 0)?;
        Ok(())
    }

    /// Sets a per-CPU counter of the bench programs to `v` on `cpu` and to 0
    /// on the others (so [`Self::count`], the sum, reads `v` back).
    pub fn set_count(&mut self, index: u32, cpu: usize, v: u64) -> anyhow::Result<()> {
        let ncpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let mut values = vec![0u64; ncpus];
        *values.get_mut(cpu).context("CPU out of range")? = v;
        let mut a: PerCpuArray<_, u64> = PerCpuArray::try_from(
            self.ebpf
                .map_mut("BENCH_COUNT")
                .context("BENCH_COUNT missing")?,
        )?;
        a.set(index, aya::maps::PerCpuValues::try_from(values)?, 0)?;
        Ok(())
    }

    /// A per-CPU counter of the bench programs, summed over CPUs.
    pub fn count(&self, index: u32) -> anyhow::Result<u64> {
        let a: PerCpuArray<_, u64> = PerCpuArray::try_from(
            self.ebpf
                .map("BENCH_COUNT")
                .context("BENCH_COUNT missing")?,
        )?;
        Ok(a.get(&index, 0)?.iter().sum())
    }
}

/// The two reference runs of every round: the bare baseline `B` on `frame`,
/// then the harness in front of the baseline `HB` with `tpl` (which must be
/// the template the measured program will run with: the harness's own work
/// depends on it). Leaves `tpl` set and the harness pointing at the
/// baseline. Returns (B, HB).
pub fn baselines(
    bench: &mut Bench,
    frame: &[u8],
    tpl: &Template,
    repeat: u32,
) -> anyhow::Result<(Run, Run)> {
    let b = run(bench.baseline()?, frame, repeat)?;
    anyhow::ensure!(b.action == XDP_TX, "baseline returned {}", b.action);
    bench.target_baseline()?;
    bench.set_template(tpl)?;
    let hb = run(bench.harness()?, frame, repeat)?;
    anyhow::ensure!(
        hb.action == XDP_TX,
        "harness + baseline returned {}",
        hb.action
    );
    Ok((b, hb))
}

/// One BPF_PROG_TEST_RUN call.
#[derive(Clone, Debug)]
pub struct Run {
    /// The kernel's own average per run, ns (`duration`, whole ns).
    pub kernel_ns: f64,
    /// Wall-clock time of the syscall divided by the repeat count, ns.
    pub wall_ns: f64,
    /// Return value of the last run (always 0 in live-frames mode, where
    /// the kernel does not report it: check counters instead).
    pub action: u32,
    /// Output frame of the last run (empty in live-frames mode).
    pub out: Vec<u8>,
}

/// Runs `prog` `repeat` times on one buffer initialised with `frame`.
pub fn run(prog: &Xdp, frame: &[u8], repeat: u32) -> anyhow::Result<Run> {
    let mut out = vec![0u8; frame.len() + 256];
    let t = Instant::now();
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    let wall = t.elapsed();
    out.truncate(r.data_size_out as usize);
    Ok(Run {
        kernel_ns: r.duration.as_nanos() as f64,
        wall_ns: wall.as_nanos() as f64 / f64::from(repeat),
        action: r.return_value,
        out,
    })
}

/// `struct xdp_md` as BPF_PROG_TEST_RUN takes it in `ctx_in`.
#[repr(C)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// Runs `prog` on `repeat` live frames built from `frame`, received on
/// interface `ifindex` of the calling thread's namespace: XDP_TX really
/// transmits there. `batch` frames per kernel batch (the kernel caps it).
pub fn run_live(
    prog: &Xdp,
    frame: &[u8],
    repeat: u32,
    ifindex: u32,
    batch: u32,
) -> anyhow::Result<Run> {
    let md = XdpMd {
        data: 0,
        // The kernel insists that data_end equals the frame's length.
        data_end: frame.len() as u32,
        data_meta: 0,
        ingress_ifindex: ifindex,
        rx_queue_index: 0,
        egress_ifindex: 0,
    };
    // SAFETY: XdpMd is repr(C) plain u32s, no padding.
    let ctx = unsafe {
        std::slice::from_raw_parts(
            (&md as *const XdpMd).cast::<u8>(),
            std::mem::size_of::<XdpMd>(),
        )
    };
    let t = Instant::now();
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(ctx),
            repeat,
            attrs: TestRunAttrs::new().xdp_live_frames(batch),
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN (live frames)")?;
    let wall = t.elapsed();
    Ok(Run {
        kernel_ns: r.duration.as_nanos() as f64,
        wall_ns: wall.as_nanos() as f64 / f64::from(repeat),
        action: r.return_value,
        out: Vec::new(),
    })
}
