//! The metrics endpoint against the real thing: a real `lb-daemon` with the
//! real XDP program in the lab, real TCP streams through the VIP, and
//! Debian's Prometheus (2.42) started in the LB's namespace scraping the
//! daemon every second. The VIP packet rate Prometheus computes must match
//! the one two `lbctl stats --json` readings give within 5%, and
//! `promtool check metrics` must accept a scrape.

use std::{
    fs,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use lb_privileged_tests::{
    bins::{lb_daemon_bin, lbctl},
    daemon::DaemonEnv,
    lab::{B4, Lab, LabOpts, vip_toml},
    require_root,
};
use serde_json::Value;

const VIP: &str = "198.18.100.10";
const PORT: u16 = 9000;
/// The series' `vip` label.
const VIP_LABEL: &str = "198.18.100.10:9000/tcp";
/// Both listen inside the LB namespace only.
const METRICS_ADDR: &str = "127.0.0.1:9661";
const PROMETHEUS_ADDR: &str = "127.0.0.1:9090";

/// Prometheus, killed when dropped (declared after the lab, so it goes
/// first: a process outlives `ip netns del` of its namespace).
struct Prometheus {
    child: Child,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl` inside the LB namespace; None when it fails.
fn curl(lab: &Lab, url: &str) -> Option<String> {
    let out = lab
        .cmd("lb", &["curl", "-sf", "--max-time", "5", url])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An instant query at `time` (unix seconds): the single result's value.
fn query(lab: &Lab, promql: &str, time: f64) -> Option<f64> {
    let results = query_all(lab, promql, time)?;
    assert!(results.len() <= 1, "{promql}: several series: {results:?}");
    results.first()?["value"][1].as_str()?.parse().ok()
}

/// An instant query at `time`: every result (asserting Prometheus took it).
fn query_all(lab: &Lab, promql: &str, time: f64) -> Option<Vec<Value>> {
    let out = lab
        .cmd(
            "lb",
            &[
                "curl",
                "-sf",
                "--max-time",
                "5",
                &format!("http://{PROMETHEUS_ADDR}/api/v1/query"),
                "--data-urlencode",
                &format!("query={promql}"),
                "--data-urlencode",
                &format!("time={time:.3}"),
            ],
        )
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    assert_eq!(v["status"], "success", "{promql}: {v}");
    v["data"]["result"].as_array().cloned()
}

/// The `expr` of every panel target of the Grafana dashboard.
fn dashboard_queries() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/lb.json");
    let d: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `lbctl COMMAND --json` through the binary.
fn lbctl_json(lab: &Lab, command: &str) -> Value {
    let argv: Vec<String> = [
        "lbctl",
        "--api",
        &format!("unix://{}", lab.sock.display()),
        command,
        "--json",
    ]
    .map(String::from)
    .to_vec();
    let (code, out, err) = lbctl(&argv, true);
    assert_eq!(
        code,
        0,
        "lbctl {command}: {}",
        String::from_utf8_lossy(&err)
    );
    serde_json::from_slice(&out).expect("--json")
}

/// `lbctl stats --json`: (unix seconds, the VIP's packets).
fn lbctl_vip_packets(lab: &Lab) -> (f64, u64) {
    let v = lbctl_json(lab, "stats");
    let vip = v["vips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["vip"] == VIP_LABEL)
        .unwrap_or_else(|| panic!("{VIP_LABEL} not in {v}"));
    (
        v["unix_time_ms"].as_u64().unwrap() as f64 / 1000.0,
        vip["packets"].as_u64().unwrap(),
    )
}

#[track_caller]
fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool, log: impl Fn() -> String) {
    let t0 = Instant::now();
    while !ok() {
        assert!(
            t0.elapsed() < timeout,
            "{what}: not after {timeout:?}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_prometheus(lab: &Lab, dir: &Path) -> Prometheus {
    let config = dir.join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: lb\n    static_configs:\n      - targets: ['{METRICS_ADDR}']\n"
        ),
    )
    .unwrap();
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(&config)
        .output()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    assert!(
        check.status.success(),
        "promtool check config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let log = dir.join("prometheus.log");
    let child = lab
        .cmd(
            "lb",
            &[
                "prometheus",
                &format!("--config.file={}", config.display()),
                &format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
                &format!("--web.listen-address={PROMETHEUS_ADDR}"),
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("prometheus (Debian package prometheus; scripts/setup.sh installs it)");
    Prometheus { child }
}

#[test]
fn prometheus_rate_of_the_vip_counter_matches_lbctl_stats() {
    require_root();
    let mut lab = Lab::up(LabOpts {
        // An HTTP check on the backends' port 80 (which answers): the
        // health series exist, and every backend stays up (no transition,
        // no ring rebuild beyond the first).
        vips: vip_toml(&format!("{VIP}:{PORT}/tcp"), &B4).replace(
            "\nbackends",
            "\nhealth = { kind = \"http\", path = \"/\", port = 80, interval = \"1s\" }\nbackends",
        ),
        extra: format!("[metrics]\nlisten = \"{METRICS_ADDR}\"\n"),
        ..LabOpts::default()
    });
    assert!(lab.log().contains("metrics listening"), "{}", lab.log());
    let prom_dir = lab.tmp.path().join("prometheus");
    fs::create_dir_all(&prom_dir).unwrap();
    let prom_log = prom_dir.join("prometheus.log");
    let plog = || fs::read_to_string(&prom_log).unwrap_or_default();
    let _prometheus = start_prometheus(&lab, &prom_dir);
    wait_for(
        "prometheus ready",
        Duration::from_secs(30),
        || curl(&lab, &format!("http://{PROMETHEUS_ADDR}/-/ready")).is_some(),
        plog,
    );
    wait_for(
        "the daemon scraped",
        Duration::from_secs(15),
        || query(&lab, "up{job=\"lb\"}", now()) == Some(1.0),
        plog,
    );

    // 30 streams, each acknowledging a line every 50 ms: a steady flow of
    // packets to the VIP for 25 s.
    let mut streams = lab.streams_bg(VIP, PORT, 30, 25.0);
    streams.wait_ready();
    std::thread::sleep(Duration::from_secs(3));
    let (t_a, p_a) = lbctl_vip_packets(&lab);
    std::thread::sleep(Duration::from_secs(10));
    let (t_b, p_b) = lbctl_vip_packets(&lab);
    let lbctl_rate = (p_b - p_a) as f64 / (t_b - t_a);
    // Let Prometheus scrape past t_b before asking about the window.
    std::thread::sleep(Duration::from_secs(3));
    let window = (t_b - t_a).round() as u64;
    let series = format!("lb_vip_packets_total{{vip=\"{VIP_LABEL}\"}}");
    let prom_rate = query(&lab, &format!("rate({series}[{window}s])"), t_b)
        .unwrap_or_else(|| panic!("no rate for {series}\n{}", plog()));
    eprintln!(
        "VIP packets: lbctl {p_a} -> {p_b} in {:.3} s = {lbctl_rate:.1}/s; Prometheus rate over {window}s = {prom_rate:.1}/s",
        t_b - t_a
    );
    assert!(
        lbctl_rate > 100.0,
        "too little traffic to compare: {lbctl_rate}/s"
    );
    let off = (prom_rate - lbctl_rate).abs() / lbctl_rate;
    assert!(
        off <= 0.05,
        "Prometheus {prom_rate:.1}/s vs lbctl stats {lbctl_rate:.1}/s: {:.1}% apart",
        off * 100.0
    );

    // The other series, as Prometheus stored them. Every VIP packet was
    // forwarded to one backend: the per-backend counters add up to it.
    let at = now();
    let vip_total = query(&lab, &series, at).unwrap();
    let backends_total = query(
        &lab,
        &format!("sum(lb_backend_packets_total{{vip=\"{VIP_LABEL}\"}})"),
        at,
    )
    .unwrap();
    assert!(vip_total >= p_b as f64, "{vip_total} < {p_b}");
    assert_eq!(vip_total, backends_total, "VIP vs sum of its backends");
    let flows = query(&lab, "lb_xdp_new_flow_total", at).unwrap();
    assert!(flows >= 30.0, "new flows {flows}, 30 streams opened");
    let status = lbctl_json(&lab, "status");
    assert_eq!(
        query(
            &lab,
            &format!(
                "lb_dataplane_info{{interface=\"{}\",attach_mode={},program_id=\"{}\"}}",
                lab.lb_if(),
                status["attach_mode"],
                status["program_id"]
            ),
            at
        ),
        Some(1.0),
        "info metric vs lbctl status: {status}"
    );
    assert_eq!(query(&lab, "lb_conn_table_capacity", at), Some(4096.0));
    // The VIP came from the configuration with a check: created with its
    // check and backends in one change (one ring built and published;
    // daemon/run.rs), then one more per health transition (a backend whose
    // server was slow to start may go down and up again).
    let transitions = query(&lab, "sum(lb_health_transitions_total)", at).unwrap();
    assert_eq!(
        query(&lab, "lb_ring_rebuild_duration_seconds_count", at),
        Some(1.0 + transitions),
        "failed probes: {:?}",
        query_all(&lab, "lb_health_probe_failures_total > 0", at)
    );
    let calls = query(
        &lab,
        "lb_grpc_server_handled_total{grpc_service=\"lb.v1.LoadBalancer\",grpc_method=\"GetStats\",grpc_code=\"Ok\"}",
        at,
    )
    .unwrap();
    assert!(calls >= 2.0, "GetStats calls counted: {calls}");
    assert_eq!(
        query(&lab, "sum(lb_backend_state{state=\"active\"})", at),
        Some(3.0)
    );
    // Health: every backend up, probed about once a second.
    assert_eq!(
        query(&lab, "sum(lb_backend_health{state=\"up\"})", at),
        Some(3.0)
    );
    assert_eq!(query(&lab, "sum(lb_vip_fail_open)", at), Some(0.0));
    let probes = query(&lab, "sum(lb_health_probes_total)", at).unwrap();
    assert!(probes >= 3.0 * 10.0, "probes sent: {probes}");

    // Every query of the Grafana dashboard, as Grafana would send it
    // (its variables filled in), is valid PromQL and finds its series.
    let queries = dashboard_queries();
    assert!(queries.len() >= 10);
    for q in &queries {
        let q = q
            .replace("$__rate_interval", "10s")
            .replace("$instance", ".*");
        let results = query_all(&lab, &q, at).unwrap_or_else(|| panic!("{q}: no answer"));
        // The one comparison (`== 1`: draining backends) may be empty.
        assert!(
            !results.is_empty() || q.contains("== 1"),
            "dashboard query found nothing: {q}"
        );
    }

    // promtool on what the daemon serves.
    let text = curl(&lab, &format!("http://{METRICS_ADDR}/metrics")).expect("scrape");
    let scrape = prom_dir.join("scrape.txt");
    fs::write(&scrape, &text).unwrap();
    let check = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", scrape.display()))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool check metrics failed:\n{}{}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let report = streams.join();
    assert_eq!(report["failed"], 0, "streams: {report}");
    lab.kill_daemon();
}

/// The metrics port is bound before the data plane is touched: when it is
/// taken, the daemon exits naming the setting, with nothing loaded,
/// pinned or attached; once it is free the daemon starts and serves
/// `/metrics` (and nothing else) on it.
#[test]
fn a_taken_metrics_port_fails_the_start_with_nothing_changed() {
    require_root();
    let addr = "198.18.0.2:9661";
    let mut env = DaemonEnv::new(
        "mport",
        None,
        &format!("[metrics]\nlisten = \"{addr}\"\nallow_remote = true\n"),
    );
    // Taken by another socket in the LB's namespace.
    let ns = format!("/run/netns/{}", env.lb.name);
    let squatter = std::thread::spawn(move || {
        // This thread only: enter the namespace, bind, hand the socket back.
        let f = fs::File::open(&ns).unwrap();
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns");
        std::net::TcpListener::bind(addr).expect("bind the port first")
    })
    .join()
    .unwrap();
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", env.lb.name))
        .arg(lb_daemon_bin())
        .args(["run", "--config"])
        .arg(&env.config)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on a taken port:\n{err}");
    assert!(
        err.contains(&format!("[metrics] listen: binding {addr}")),
        "{err}"
    );
    assert!(!env.pin.exists(), "pins created: {}", env.pin.display());
    let link = env.lb.exec(&["ip", "link", "show", "lb0"]);
    assert!(!link.contains("xdp"), "XDP attached: {link}");

    drop(squatter);
    env.start();
    let url = format!("http://{addr}/metrics");
    let get = |url: &str| {
        let o = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", env.lb.name))
            .args(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(get(&url), "200", "{}", env.log());
    assert_eq!(get(&format!("http://{addr}/")), "404");
    env.stop();
}
