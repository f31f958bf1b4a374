//! The results file: JSON (everything), Markdown (the tables a reader
//! wants), an SVG bar chart of the per-packet costs, and the goals.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::{
    breakdown::Breakdown, control::Control, goals::GoalRow, live::Live,
    maglev_report::MaglevResults, perpkt::PerPacket, sys::Machine,
};

/// Everything one run of the `bench` binary measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Results {
    /// Date of the run (YYYY-MM-DD, local).
    pub date: String,
    /// The command that produced it.
    pub command: String,
    /// The source measured: `git describe`-style commit, marked when the
    /// working tree had uncommitted changes.
    pub commit: String,
    /// The host.
    pub machine: Machine,
    /// Load average (1, 5, 15 min) when the run started.
    pub load_before: [f64; 3],
    /// ... and when it ended.
    pub load_after: [f64; 3],
    /// Figure 1.
    pub per_packet: Option<PerPacket>,
    /// Figure 1b: the per-stage breakdown.
    #[serde(default)]
    pub breakdown: Option<Breakdown>,
    /// Figure 2.
    pub live: Option<Live>,
    /// Figure 3.
    pub maglev: Option<MaglevResults>,
    /// Figure 4.
    pub control: Option<Control>,
    /// Figure 5: hostile input.
    #[serde(default)]
    pub fuzz: Option<crate::fuzz::Fuzz>,
    /// Figure 6: what health checks cost the daemon, one entry per run.
    #[serde(default)]
    pub health: Vec<crate::health_cost::HealthCost>,
    /// Figures that could not be measured, and why.
    pub errors: Vec<String>,
    /// The earlier results file the figures are compared with, if any.
    #[serde(default)]
    pub previous_source: Option<String>,
    /// Every headline figure with its goal and the earlier run's figure.
    /// Written for the reader of the JSON; recomputed, never read back
    /// (older files hold goals of another shape).
    #[serde(default, skip_deserializing)]
    pub goals: Vec<GoalRow>,
}

fn spread(s: &crate::stats::Summary, scale: f64, prec: usize) -> String {
    format!(
        "{:.p$}–{:.p$} ({:.p$}–{:.p$})",
        s.q1 / scale,
        s.q3 / scale,
        s.min / scale,
        s.max / scale,
        p = prec
    )
}

/// The Markdown report.
pub fn markdown(r: &Results) -> String {
    let mut o = String::new();
    let m = &r.machine;
    let _ = writeln!(o, "# lb benchmark results, {}\n", r.date);
    let _ = writeln!(
        o,
        "Machine: {} ({} cores{}), {} MiB, Linux {}, {}.  ",
        m.cpu_model,
        m.cores,
        if m.hypervisor.is_empty() {
            String::new()
        } else {
            format!(", {} guest", m.hypervisor)
        },
        m.memory_mib,
        m.kernel,
        m.rustc
    );
    let _ = writeln!(
        o,
        "Load average at start {:.2} / {:.2} / {:.2}, at end {:.2} / {:.2} / {:.2} (1/5/15 min).  ",
        r.load_before[0],
        r.load_before[1],
        r.load_before[2],
        r.load_after[0],
        r.load_after[1],
        r.load_after[2]
    );
    let _ = writeln!(
        o,
        "Source: {}. Command: `{}`. Method: bench/README.md.\n",
        r.commit, r.command
    );

    goals_md(&mut o, r);

    if let Some(p) = &r.per_packet {
        let _ = writeln!(
            o,
            "## 1. Per-packet cost (BPF_PROG_TEST_RUN, {} runs x {} rounds, CPU {})\n",
            p.params.repeat, p.params.rounds, p.cpu
        );
        let _ = writeln!(
            o,
            "ns per packet, kernel-timed; `lb_xdp` = (harness + lb_xdp) − (harness + baseline) + baseline, \
             per round. Spread: IQR (min–max).\n"
        );
        let _ = writeln!(
            o,
            "| path | lb_xdp ns (min) | lb_xdp ns (median) | spread | x baseline | harness + lb_xdp ns | verified per packet |\n|---|---:|---:|---|---:|---:|---|"
        );
        let _ = writeln!(
            o,
            "| baseline: MAC swap + XDP_TX | {:.1} | {:.1} | {} | 1.00 | {:.1} (harness + baseline) | |",
            p.baseline_ns.min,
            p.baseline_ns.median,
            spread(&p.baseline_ns, 1.0, 1),
            p.harness_baseline_ns.median
        );
        for c in &p.cases {
            let _ = writeln!(
                o,
                "| {} | {:.1} | {:.1} | {} | {:.2} | {:.1} | {} |",
                c.label,
                c.net_min_ns,
                c.net_ns.median,
                spread(&c.net_ns, 1.0, 1),
                c.ratio_to_baseline,
                c.raw_ns.median,
                c.verified
            );
        }
        let _ = writeln!(
            o,
            "\nHarness overhead (restore + tail call): {:.1} ns. Encapsulating paths also carry the \
             harness's head shrink, one bpf_xdp_adjust_head ≈ {:.1} ns, so their figures are upper \
             bounds by that much. Check of the subtraction: the pass path run directly (no harness, \
             honest there because it does not modify the frame) costs {:.1} ns, against {:.1} ns \
             derived.\n",
            p.harness_overhead_ns,
            p.adjust_head_ns,
            p.pass_direct_ns.median,
            p.cases
                .iter()
                .find(|c| c.id == "pass")
                .map(|c| c.net_ns.median)
                .unwrap_or(f64::NAN)
        );
        let _ = writeln!(o, "![per-packet cost]({}.svg)\n", r.date);
    }

    if let Some(b) = &r.breakdown {
        breakdown_md(&mut o, b);
    }

    if let Some(l) = &r.live {
        let _ = writeln!(
            o,
            "## 2. Live forwarding (XDP_TX on a veth, live frames, batch {}, {} frames x {} rounds, CPU {})\n",
            l.params.batch, l.params.repeat, l.params.rounds, l.cpu
        );
        let _ = writeln!(
            o,
            "| flows | conn table (usable by one CPU) | lb_xdp Mpps (net) | spread | lb_xdp ns (net) | harness + lb_xdp Mpps | harness + baseline Mpps | rate vs baseline | conn hits | delivered |\n|---:|---|---:|---|---:|---:|---:|---:|---:|---:|"
        );
        for row in &l.rows {
            let _ = writeln!(
                o,
                "| {} | {} ({}) | {:.2} | {} | {:.1} | {:.2} | {:.2} | {:.0}% | {:.1}% | {:.1}% |",
                row.flows,
                row.conn_table,
                row.conn_table_per_cpu,
                row.net_pps.median / 1e6,
                spread(&row.net_pps, 1e6, 2),
                row.net_ns.median,
                row.lb_pps.median / 1e6,
                row.baseline_pps.median / 1e6,
                row.rate_vs_baseline * 100.0,
                row.conn_hit_share * 100.0,
                row.delivered_share * 100.0
            );
        }
        let _ = writeln!(
            o,
            "\nBare baseline (no harness) in live mode: {:.1} ns/frame ({:.2} Mpps).\n",
            l.baseline_direct_ns.median,
            1e3 / l.baseline_direct_ns.median
        );
    }

    if let Some(mg) = &r.maglev {
        let _ = writeln!(o, "## 3. Maglev\n");
        if !mg.build.is_empty() {
            let _ = writeln!(
                o,
                "Table build time (criterion median, 95% CI):\n\n| backends | M = 65537 | M = 655373 |\n|---:|---|---|"
            );
            for n in crate::maglev_report::BACKEND_COUNTS {
                let cell = |m: u32| {
                    mg.build
                        .iter()
                        .find(|b| b.ring_size == m && b.backends == n)
                        .map(|b| {
                            format!(
                                "{:.3} ms ({:.3}–{:.3})",
                                b.median_ns / 1e6,
                                b.ci_low_ns / 1e6,
                                b.ci_high_ns / 1e6
                            )
                        })
                        .unwrap_or_else(|| "-".into())
                };
                let _ = writeln!(o, "| {n} | {} | {} |", cell(65537), cell(655373));
            }
            o.push('\n');
        }
        if !mg.build_min.is_empty() {
            let _ = writeln!(
                o,
                "Table build time timed by the bench (M = 65537, one thread, min and median over \
                 the builds; the goal is judged on the minimum):\n\n| backends | builds | min | median |\n|---:|---:|---:|---:|"
            );
            for b in &mg.build_min {
                let _ = writeln!(
                    o,
                    "| {} | {} | {:.3} ms | {:.3} ms |",
                    b.backends, b.runs, b.min_ms, b.median_ms
                );
            }
            o.push('\n');
        }
        let _ = writeln!(
            o,
            "Balance and disruption (equal weights; disruption = share of survivors' positions that \
             move when one backend is removed, mean and worst of 5 removals):\n"
        );
        let _ = writeln!(
            o,
            "| M | backends | slots per backend min–max | max/min | disruption mean | worst | removed backend's share |\n|---:|---:|---|---:|---:|---:|---:|"
        );
        for q in &mg.quality {
            let _ = writeln!(
                o,
                "| {} | {} | {}–{} | {:.3} | {:.3}% | {:.3}% | {:.3}% |",
                q.ring_size,
                q.backends,
                q.min_slots,
                q.max_slots,
                q.max_min_ratio,
                q.disruption_mean * 100.0,
                q.disruption_max * 100.0,
                q.removed_share * 100.0
            );
        }
        o.push('\n');
    }

    if let Some(c) = &r.control {
        let _ = writeln!(
            o,
            "## 4. Control plane (real `lb-daemon run`; {})\n",
            c.sizes
        );
        let a = &c.add_backend;
        let _ = writeln!(
            o,
            "| measurement | p50 / median | p99 (or min) | worst |\n|---|---:|---:|---:|"
        );
        let _ = writeln!(
            o,
            "| AddBackend (VIP with 100) -> map-visible, {} samples | {:.0} µs | {:.0} µs | {:.0} µs |",
            a.samples, a.visible_p50_us, a.visible_p99_us, a.visible_max_us
        );
        let _ = writeln!(
            o,
            "| AddBackend gRPC round trip (incl. state fsync) | {:.0} µs | {:.0} µs | |",
            a.rpc_p50_us, a.rpc_p99_us
        );
        let _ = writeln!(
            o,
            "| CreateVip with 1,000 backends -> map-visible, {} runs | {:.1} ms | min {:.1} ms | {:.1} ms |",
            c.create_vip_1000_visible_ms.n,
            c.create_vip_1000_visible_ms.median,
            c.create_vip_1000_visible_ms.min,
            c.create_vip_1000_visible_ms.max
        );
        let _ = writeln!(
            o,
            "| CreateVip with 1,000 backends, gRPC round trip | {:.1} ms | min {:.1} ms | {:.1} ms |",
            c.create_vip_1000_rpc_ms.median,
            c.create_vip_1000_rpc_ms.min,
            c.create_vip_1000_rpc_ms.max
        );
        let rss = |x: &crate::control::Rss| {
            format!(
                "{:.1} MiB, of which {:.1} MiB are the mmapped ring map (kernel memory) and {:.1} MiB \
                 the daemon's own (anon {:.1}, binary and libraries {:.1})",
                x.vm_rss_kib as f64 / 1024.0,
                x.bpf_map_kib as f64 / 1024.0,
                x.vm_rss_kib.saturating_sub(x.bpf_map_kib) as f64 / 1024.0,
                x.anon_kib as f64 / 1024.0,
                x.file_kib.saturating_sub(x.bpf_map_kib) as f64 / 1024.0
            )
        };
        let _ = writeln!(
            o,
            "\nDaemon resident memory (VmRSS): idle {}; with 64 VIPs x 100 backends {}.\n",
            rss(&c.rss_idle),
            rss(&c.rss_64x100)
        );
    }

    if let Some(f) = &r.fuzz {
        let _ = writeln!(
            o,
            "## 5. Hostile input ({} frames through `lb_xdp`, seed {:#x}, {:.1} s)\n\n\
             Random frames and frames mutated from valid VIP packets, each judged by the oracle of \
             `lb_privileged_tests::fuzz` (defined verdict, exactly one outcome counter of the \
             verdict's kind, frames not for a VIP untouched, encapsulations and ICMP answers \
             well-formed). {} mutated, {} not addressed to a VIP address.\n\n\
             **Frames judged wrong: {}**\n",
            f.frames, f.seed, f.seconds, f.mutated, f.not_for_vip, f.violations
        );
        for (k, n) in &f.kinds {
            let _ = writeln!(o, "* {n} x {k}");
        }
        let _ = writeln!(o, "\n| verdict | frames |\n|---|---:|");
        for (k, n) in &f.verdicts {
            let _ = writeln!(o, "| {k} | {n} |");
        }
        let _ = writeln!(o, "\n| counter | change |\n|---|---:|");
        for (k, n) in &f.counters {
            let _ = writeln!(o, "| {k} | {n} |");
        }
        o.push('\n');
    }

    if !r.health.is_empty() {
        let _ = writeln!(
            o,
            "## 6. Health checks: what probing costs the daemon\n\n\
             `lb-daemon run`, one VIP with N backends probed every second (timeout 500 ms, jitter \
             10 %); the daemon's CPU time (utime + stime) over the window, its RSS every 10 s. \
             Goal (issue 10): 1,000 backends under 5 % of one core, no growth in memory. \
             `veth`: backends in a second namespace, receive work in threaded NAPI (its \
             daemon-side thread shown apart); `local`: loopback, their kernel work charged to \
             the daemon (an upper bound).\n\n\
             | check | backends | probes/s (failed) | window | daemon CPU | user / system | veth rx thread | RSS first -> last (min..max) KiB | host busy |\n\
             |---|---|---:|---:|---:|---:|---:|---|---:|"
        );
        for h in &r.health {
            let rss = &h.rss_kib;
            let _ = writeln!(
                o,
                "| {} | {} x {} | {:.0} ({}) | {:.0} s | **{:.2} %** | {:.2} / {:.2} s | {} | {} -> {} ({}..{}) | {:.0} % |",
                h.check,
                h.backends,
                h.backends_at,
                h.probes_per_s,
                h.probes_failed,
                h.window_s,
                h.cpu_percent,
                h.user_s,
                h.system_s,
                h.rx_thread_percent
                    .map_or_else(|| "-".into(), |x| format!("{x:.2} %")),
                rss.first().unwrap_or(&0),
                rss.last().unwrap_or(&0),
                rss.iter().min().unwrap_or(&0),
                rss.iter().max().unwrap_or(&0),
                h.host_busy_percent
            );
        }
        o.push('\n');
    }

    if !r.errors.is_empty() {
        let _ = writeln!(o, "## Not measured\n");
        for e in &r.errors {
            let _ = writeln!(o, "* {e}");
        }
        o.push('\n');
    }
    o
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Horizontal bar chart of the per-packet costs (medians, min–max whiskers),
/// with the 2x-baseline goal marked. Plain SVG, no plotting library.
pub fn svg(p: &PerPacket, title: &str) -> String {
    let mut rows: Vec<(String, &crate::stats::Summary, bool)> =
        vec![("baseline (MAC swap + XDP_TX)".into(), &p.baseline_ns, true)];
    rows.extend(p.cases.iter().map(|c| (c.label.clone(), &c.net_ns, false)));
    let (left, right, top, row_h, bar_h) = (250.0, 90.0, 48.0, 30.0, 18.0);
    let plot_w = 460.0;
    let width = left + plot_w + right;
    let height = top + row_h * rows.len() as f64 + 40.0;
    let max = rows
        .iter()
        .map(|r| r.1.max)
        .fold(p.baseline_ns.median * 2.0, f64::max)
        * 1.08;
    let x = |v: f64| left + v / max * plot_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="22" font-size="14" font-weight="bold">{}</text>"#,
        10,
        esc(title)
    );
    // Grid every "nice" step.
    let step = [1.0, 2.0, 5.0, 10.0, 20.0, 25.0, 50.0, 100.0]
        .into_iter()
        .find(|st| max / st <= 8.0)
        .unwrap_or(200.0);
    let mut v = 0.0;
    while v <= max {
        let gx = x(v);
        let _ = writeln!(
            s,
            r##"<line x1="{gx:.1}" y1="{}" x2="{gx:.1}" y2="{}" stroke="#ddd"/><text x="{gx:.1}" y="{}" text-anchor="middle" fill="#555">{v}</text>"##,
            top - 6.0,
            height - 34.0,
            height - 20.0
        );
        v += step;
    }
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">ns per packet (median; whiskers min–max)</text>"##,
        left + plot_w / 2.0,
        height - 4.0
    );
    let goal = x(p.baseline_ns.median * 2.0);
    let _ = writeln!(
        s,
        r##"<line x1="{goal:.1}" y1="{}" x2="{goal:.1}" y2="{}" stroke="#c33" stroke-dasharray="4 3"/><text x="{goal:.1}" y="{}" text-anchor="middle" fill="#c33">2x baseline</text>"##,
        top - 6.0,
        height - 34.0,
        top - 10.0
    );
    for (i, (label, sm, is_base)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64 + (row_h - bar_h) / 2.0;
        let fill = if *is_base { "#999" } else { "#3a6ea5" };
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end">{}</text><rect x="{left}" y="{y:.1}" width="{:.1}" height="{bar_h}" fill="{fill}"/>"##,
            left - 8.0,
            y + bar_h - 4.0,
            esc(label),
            (x(sm.median) - left).max(0.5)
        );
        let cy = y + bar_h / 2.0;
        let _ = writeln!(
            s,
            r##"<line x1="{:.1}" y1="{cy:.1}" x2="{:.1}" y2="{cy:.1}" stroke="#222"/><text x="{:.1}" y="{:.1}">{:.1} ns</text>"##,
            x(sm.min),
            x(sm.max),
            x(sm.max).max(x(sm.median)) + 6.0,
            y + bar_h - 4.0,
            sm.median
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Figure 1b as tables: one per path, a row per stage.
fn breakdown_md(o: &mut String, b: &Breakdown) {
    let _ = writeln!(
        o,
        "## 1b. Per-stage cost (cut-down variants of lb_xdp, {} runs x {} rounds, CPU {})\n",
        b.params.repeat, b.params.rounds, b.cpu
    );
    let _ = writeln!(
        o,
        "Each row is a build of the same packet path that stops after the stage named \
         (`lb_xdp_upto_*`, no counters), then everything but the counters, then `lb_xdp`; \
         net ns as in figure 1, min = min(HX) − min(HB) + min(B) over rounds. \
         \"stage\" is the difference to the row above: min = difference of the \
         two min(HX), median = median of the per-round differences. Baseline this run: {:.1} ns (min {:.1}).\n",
        b.baseline_ns.median, b.baseline_ns.min
    );
    for p in &b.paths {
        let _ = writeln!(o, "**{}**\n", p.label);
        let _ = writeln!(
            o,
            "| stage | program | cumulative ns min | cumulative ns median | stage ns min | stage ns median |\n|---|---|---:|---:|---:|---:|"
        );
        for s in &p.stages {
            let _ = writeln!(
                o,
                "| {} | `{}` | {:.1} | {:.1} | {:.1} | {:.1} |",
                s.stage,
                s.program,
                s.cumulative_min_ns,
                s.cumulative_ns.median,
                s.stage_ns_min,
                s.stage_ns_median
            );
        }
        o.push('\n');
    }
}

/// The headline figures: previous run, this run, goal, verdict.
fn goals_md(o: &mut String, r: &Results) {
    let _ = writeln!(o, "## Headline figures and goals\n");
    let _ = writeln!(
        o,
        "Judged on the minimum over rounds (interference only adds time), median beside it. \
         Previous: {}.\n",
        r.previous_source
            .as_deref()
            .unwrap_or("none given (`--previous FILE.json`)")
    );
    let _ = writeln!(
        o,
        "| figure | previous min / median | today min / median | goal | verdict |\n|---|---:|---:|---|---|"
    );
    for g in &r.goals {
        let f = &g.figure;
        let prev = g.previous.as_ref().map_or_else(
            || "-".to_string(),
            |p| format!("{:.2} / {:.2} {}", p.min, p.median, p.unit),
        );
        let verdict = match g.met {
            Some(true) => "**met**",
            Some(false) => "**not met**",
            None => "",
        };
        let _ = writeln!(
            o,
            "| {} | {} | {:.2} / {:.2} {} | {} | {} |",
            f.label, prev, f.min, f.median, f.unit, g.goal, verdict
        );
    }
    o.push('\n');
}
