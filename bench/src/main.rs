//! `bench`: runs the lb benchmark suite and writes the results files.
//! `scripts/bench.sh` is the intended entry point (it builds and runs the
//! criterion Maglev bench first); see bench/README.md for the method.

use std::path::PathBuf;

use anyhow::Context as _;
use bench::{
    breakdown, control, fuzz, goals, harness::Bench, health_cost, lab::Lab, live, maglev_report,
    perpkt, report, report::Results, sys,
};
use clap::{Parser, ValueEnum};

#[derive(Parser)]
#[command(about = "lb benchmarks: per-packet cost, live forwarding, Maglev, control plane")]
struct Args {
    /// Where to write <date>.md, <date>.json and <date>.svg.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Criterion's output directory (for the Maglev build times).
    #[arg(long, default_value = "target/criterion")]
    criterion: PathBuf,
    /// The daemon binary (default: lb-daemon next to this binary).
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Figures to run (default: all but `health`, which takes minutes and
    /// runs only when named).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Figure>,
    /// Fewer and shorter rounds: for checking the bench itself, not for results.
    #[arg(long)]
    quick: bool,
    /// Print the report but do not write files.
    #[arg(long)]
    no_write: bool,
    /// Re-render the Markdown and SVG of an earlier run from its JSON (no
    /// measuring; goals are judged again), into --out.
    #[arg(long)]
    render: Option<PathBuf>,
    /// An earlier results file (JSON) whose figures the report shows beside
    /// this run's.
    #[arg(long)]
    previous: Option<PathBuf>,
    /// Per-packet and breakdown figures: rounds (default 21; --quick 5). More
    /// rounds make the minimum, on which the goals are judged, steadier.
    #[arg(long)]
    rounds: Option<usize>,
    /// Live figure: frames per call (default 2,000,000; --quick 500,000).
    #[arg(long)]
    live_repeat: Option<u32>,
    /// Live figure: rounds per flow count (default 7; --quick 3).
    #[arg(long)]
    live_rounds: Option<usize>,
    /// Live figure: flow counts (default 1,10000,1000000), each run against a
    /// connection table whose per-CPU share holds 1,000,000 flows.
    #[arg(long, value_delimiter = ',')]
    live_flows: Vec<u32>,
    /// Health figure: measured window of each run, seconds (default 120;
    /// --quick 20). The memory figure asks for 600.
    #[arg(long)]
    health_seconds: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Figure {
    Perpkt,
    Breakdown,
    Live,
    Maglev,
    Control,
    Fuzz,
    /// What health checks cost the daemon (figure 6).
    Health,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(json) = &args.render {
        let mut r: Results = serde_json::from_str(&std::fs::read_to_string(json)?)
            .with_context(|| format!("reading {}", json.display()))?;
        let prev = previous(&args, &mut r)?;
        r.goals = goals::judge(&r, prev.as_ref());
        return write_report(&args, &r);
    }
    let want = |f: Figure| args.only.is_empty() || args.only.contains(&f);
    let mut r = Results {
        date: sys::today(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: sys::Machine::detect(),
        commit: sys::commit(),
        load_before: sys::loadavg(),
        ..Default::default()
    };
    if let Ok(cmd) = std::env::var("LB_BENCH_COMMAND") {
        r.command = cmd;
    }
    let cpu = sys::bench_cpu();
    let root = sys::is_root();

    if want(Figure::Perpkt) || want(Figure::Breakdown) || want(Figure::Live) {
        if !root {
            r.errors
                .push("per-packet and live figures: need root (BPF, netns)".into());
        } else {
            let on = KernelFigures {
                perpkt: want(Figure::Perpkt),
                breakdown: want(Figure::Breakdown),
                live: want(Figure::Live),
            };
            kernel_figures(&args, &mut r, cpu, on)?;
        }
    }
    if want(Figure::Maglev) {
        eprintln!("== Maglev balance and disruption");
        let mut m = maglev_report::MaglevResults {
            build: maglev_report::read_criterion(&args.criterion),
            build_min: vec![],
            quality: vec![],
        };
        if m.build.is_empty() {
            r.errors.push(format!(
                "Maglev build time: no criterion results under {} (cargo bench -p bench --bench maglev)",
                args.criterion.display()
            ));
        }
        for ring in maglev_report::RING_SIZES {
            for n in maglev_report::BACKEND_COUNTS {
                m.quality.push(maglev_report::quality(ring, n)?);
            }
        }
        let runs = if args.quick { 50 } else { 1000 };
        for n in maglev_report::BACKEND_COUNTS {
            m.build_min.push(maglev_report::build_min(65537, n, runs)?);
        }
        r.maglev = Some(m);
    }
    if want(Figure::Control) {
        if !root {
            r.errors
                .push("control plane: needs root (netns, XDP attach)".into());
        } else {
            eprintln!("== control plane (lb-daemon in a namespace)");
            let bin = match &args.daemon {
                Some(b) => b.clone(),
                None => std::env::current_exe()?
                    .parent()
                    .context("exe dir")?
                    .join("lb-daemon"),
            };
            let p = if args.quick {
                control::Params::QUICK
            } else {
                control::Params::FULL
            };
            match control::run(&bin, p) {
                Ok(c) => r.control = Some(c),
                Err(e) => r.errors.push(format!("control plane: {e:#}")),
            }
        }
    }
    if want(Figure::Fuzz) {
        if !root {
            r.errors.push("hostile input: needs root (BPF)".into());
        } else {
            let frames = if args.quick { 100_000 } else { 1_000_000 };
            eprintln!("== hostile input: {frames} frames through lb_xdp");
            match fuzz::run(frames) {
                Ok(f) => r.fuzz = Some(f),
                Err(e) => r.errors.push(format!("hostile input: {e:#}")),
            }
        }
    }
    if args.only.contains(&Figure::Health) {
        if !root {
            r.errors
                .push("health checks: need root (netns, XDP attach)".into());
        } else {
            health_figure(&args, &mut r)?;
        }
    }
    r.load_after = sys::loadavg();
    let prev = previous(&args, &mut r)?;
    r.goals = goals::judge(&r, prev.as_ref());
    write_report(&args, &r)
}

/// The earlier results named by --previous (also recorded in `r`).
fn previous(args: &Args, r: &mut Results) -> anyhow::Result<Option<Results>> {
    let Some(p) = &args.previous else {
        return Ok(None);
    };
    let prev: Results = serde_json::from_str(&std::fs::read_to_string(p)?)
        .with_context(|| format!("reading {}", p.display()))?;
    r.previous_source = Some(format!("{} ({})", p.display(), prev.commit));
    Ok(Some(prev))
}

/// Prints the Markdown report and, unless --no-write, writes the files.
fn write_report(args: &Args, r: &Results) -> anyhow::Result<()> {
    let md = report::markdown(r);
    println!("{md}");
    if !args.no_write {
        std::fs::create_dir_all(&args.out)?;
        let base = args.out.join(&r.date);
        std::fs::write(
            base.with_extension("json"),
            serde_json::to_string_pretty(&r)?,
        )?;
        std::fs::write(base.with_extension("md"), &md)?;
        if let Some(p) = &r.per_packet {
            let title = format!(
                "lb_xdp per-packet cost, BPF_PROG_TEST_RUN, {} ({})",
                r.machine.cpu_model, r.date
            );
            std::fs::write(base.with_extension("svg"), report::svg(p, &title))?;
        }
        eprintln!("wrote {}.{{md,json,svg}}", base.display());
    }
    Ok(())
}

/// Figure 6: 1,000 backends probed every second, HTTP and TCP, with the
/// backends behind a veth pair (what the daemon itself costs) and on
/// loopback (an upper bound: their kernel work is charged to the daemon).
fn health_figure(args: &Args, r: &mut Results) -> anyhow::Result<()> {
    let daemon = match &args.daemon {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("exe dir")?
            .join("lb-daemon"),
    };
    let seconds = args
        .health_seconds
        .unwrap_or(if args.quick { 20 } else { 120 });
    for (check, at) in [
        (health_cost::Check::Http, health_cost::Backends::Veth),
        (health_cost::Check::Tcp, health_cost::Backends::Veth),
        (health_cost::Check::Udp, health_cost::Backends::Veth),
        (health_cost::Check::Http, health_cost::Backends::Local),
    ] {
        eprintln!("== health checks: {check:?}, backends {at:?}, {seconds} s");
        let p = health_cost::Params {
            daemon: daemon.clone(),
            backends: 1000,
            seconds,
            warmup: std::time::Duration::from_secs(15),
            check,
            at,
        };
        match health_cost::run(&p) {
            Ok(h) => r.health.push(h),
            Err(e) => r
                .errors
                .push(format!("health checks ({check:?}, {at:?}): {e:#}")),
        }
    }
    Ok(())
}

/// Which of the figures that load `lb_xdp` to run.
struct KernelFigures {
    perpkt: bool,
    breakdown: bool,
    live: bool,
}

/// Figures 1, 1b and 2 share one loaded `lb_xdp` and the bench programs.
fn kernel_figures(
    args: &Args,
    r: &mut Results,
    cpu: usize,
    on: KernelFigures,
) -> anyhow::Result<()> {
    lb_daemon::dataplane::ensure_bpffs()?;
    let default_table = lb_common::DEFAULT_CONN_TABLE_SIZE;
    // The connection table is one LRU shared by all CPUs, so the default
    // 1,048,576 entries hold the 1,000,000 flows even with every packet on
    // one core (an earlier per-CPU-LRU-lists layout could not: see git log).
    let fitted_table = default_table;
    let mut labs = vec![Lab::new(default_table)?];
    let mut bench = Bench::load()?;
    let p = if args.quick {
        perpkt::Params {
            repeat: 200_000,
            rounds: args.rounds.unwrap_or(5),
        }
    } else {
        perpkt::Params {
            repeat: 1_000_000,
            rounds: args.rounds.unwrap_or(21),
        }
    };
    if on.perpkt {
        eprintln!("== per-packet cost (CPU {cpu})");
        // A thread of its own, pinned: the main thread's affinity would be
        // inherited by the daemon the control-plane figure starts.
        // New flows fill a table: they get a balancer of their own.
        let mut churn = Lab::new(default_table)?;
        let res = std::thread::scope(|s| {
            s.spawn(|| {
                sys::pin_thread(cpu)?;
                let mut v = perpkt::run(&mut labs[0], &mut bench, p, cpu)?;
                v.cases
                    .extend(perpkt::new_flows(&mut churn, &mut bench, p, cpu)?);
                anyhow::Ok(v)
            })
            .join()
        });
        drop(churn);
        match res {
            Ok(Ok(v)) => r.per_packet = Some(v),
            Ok(Err(e)) => r.errors.push(format!("per-packet: {e:#}")),
            Err(_) => r.errors.push("per-packet: thread panicked".into()),
        }
    }
    if on.breakdown {
        eprintln!("== per-stage breakdown (CPU {cpu})");
        let res = std::thread::scope(|s| {
            s.spawn(|| {
                sys::pin_thread(cpu)?;
                breakdown::run(&mut labs[0], &mut bench, p, cpu)
            })
            .join()
        });
        match res {
            Ok(Ok(v)) => r.breakdown = Some(v),
            Ok(Err(e)) => r.errors.push(format!("breakdown: {e:#}")),
            Err(_) => r.errors.push("breakdown: thread panicked".into()),
        }
    }
    if on.live {
        eprintln!("== live forwarding (CPU {cpu})");
        let p = live::Params {
            repeat: args
                .live_repeat
                .unwrap_or(if args.quick { 500_000 } else { 2_000_000 }),
            rounds: args.live_rounds.unwrap_or(if args.quick { 3 } else { 7 }),
            batch: 64,
            runs: if args.live_flows.is_empty() {
                vec![
                    (1, fitted_table),
                    (10_000, fitted_table),
                    (1_000_000, fitted_table),
                ]
            } else {
                args.live_flows.iter().map(|&n| (n, fitted_table)).collect()
            },
        };
        if fitted_table != default_table {
            labs.push(Lab::new(fitted_table)?);
        }
        match live::run(&mut labs, &mut bench, &p, cpu) {
            Ok(v) => r.live = Some(v),
            Err(e) => r.errors.push(format!("live forwarding: {e:#}")),
        }
    }
    Ok(())
}
