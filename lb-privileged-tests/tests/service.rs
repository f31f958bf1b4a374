//! The daemon as a service manager runs it: readiness over `sd_notify`
//! (READY=1 once XDP is attached and the API answers, STOPPING=1 on
//! SIGTERM) and the least capability set, the one the systemd unit and the
//! DaemonSet grant: with it the daemon starts, attaches and serves a VIP;
//! without any one of it the start fails.

use std::{
    os::unix::net::UnixDatagram,
    path::Path,
    time::{Duration, Instant},
};

use lb_privileged_tests::{daemon::*, *};
use lb_proto::v1 as pb;

const VIP: &str = "198.18.100.10";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn vip_extra() -> String {
    format!("[[vip]]\naddress = \"{VIP}:80/tcp\"\nbackends = [{{ address = \"198.19.0.11\" }}]\n")
}

/// The API answers GetStatus (attached to lb0) right now.
fn api_answers(env: &DaemonEnv) -> bool {
    rt().block_on(async {
        let Ok(mut c) = lb_privileged_tests::bins::connect(&env.api(), None).await else {
            return false;
        };
        c.get_status(pb::GetStatusRequest {})
            .await
            .is_ok_and(|s| s.into_inner().interface == "lb0")
    })
}

#[test]
fn ready_is_notified_once_the_api_answers_and_stopping_on_sigterm() {
    require_root();
    let mut env = DaemonEnv::new("sdn", None, &vip_extra());
    let sock_path = env.dir.path().join("notify.sock");
    let rx = UnixDatagram::bind(&sock_path).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    env.spawn_with(&[], &[("NOTIFY_SOCKET", sock_path.as_os_str())]);

    let mut buf = [0u8; 256];
    let n = rx
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notification: {e}\n{}", env.log()));
    assert_eq!(&buf[..n], b"READY=1", "{}", env.log());
    // At READY=1 the promise holds without retrying: XDP attached, the API
    // answers, the VIP of the configuration is served.
    assert!(env.log().contains("XDP attached"), "{}", env.log());
    assert!(
        api_answers(&env),
        "READY=1 before the API answers\n{}",
        env.log()
    );
    assert!(env.ping(VIP), "VIP not served at READY=1");

    unsafe { libc::kill(env_pid(&env), libc::SIGTERM) };
    let n = rx.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    env.stop();
    // Nothing more: READY=1 was sent once.
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(rx.recv(&mut buf).is_err());
}

/// Another XDP program on the LB's interface, detached on drop.
struct Squatter(std::path::PathBuf);

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = std::process::Command::new(bins::lb_daemon_bin())
            .args(["decap", "detach", "--pin-path"])
            .arg(&self.0)
            .output();
    }
}

#[test]
fn a_failed_start_never_notifies_ready() {
    require_root();
    // A start that fails after the config check: the interface already has
    // an XDP link of someone else's.
    let mut env = DaemonEnv::new("sdf", None, &vip_extra());
    // bpffs names may not contain a dot.
    let squatter = Squatter(std::path::PathBuf::from(format!(
        "{}-squat",
        env.pass_pin.display()
    )));
    nsenter(
        &env.lb.name,
        &[
            "decap",
            "attach",
            "--interface",
            "lb0",
            "--pass-only",
            "--pin-path",
            squatter.0.to_str().unwrap(),
        ],
    );
    let sock_path = env.dir.path().join("notify.sock");
    let rx = UnixDatagram::bind(&sock_path).unwrap();
    env.spawn_with(&[], &[("NOTIFY_SOCKET", sock_path.as_os_str())]);
    let st = wait_exit(&mut env);
    assert!(!st.success(), "{}", env.log());
    assert!(env.log().contains("lb0"), "{}", env.log());
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        rx.recv(&mut buf).is_err(),
        "notified although the start failed"
    );
    drop(squatter);
}

fn env_pid(env: &DaemonEnv) -> i32 {
    env.pid().expect("running") as i32
}

fn wait_exit(env: &mut DaemonEnv) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = env.exited() {
            return st;
        }
        assert!(Instant::now() < deadline, "still running:\n{}", env.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `CAP_*` names the unit grants (bounding set = ambient set).
fn unit_caps() -> Vec<String> {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/lb-daemon.service");
    let text = std::fs::read_to_string(unit).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities=")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The unprivileged uid the daemon runs as here, with only `caps`.
const NOBODY: u32 = 65534;

/// Starts the daemon as uid 65534 with exactly `caps` (bounding,
/// inheritable and ambient set; nothing else), and returns whether it came
/// up: socket, API, VIP answered.
fn starts_with(label: &str, caps: &[String]) -> (bool, String) {
    let set: Vec<String> = caps
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let list = format!("-all,{}", set.join(","));
    let mut env = DaemonEnv::new(label, None, &vip_extra());
    for p in [env.dir.path(), env.config.as_path()] {
        std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let uid = NOBODY.to_string();
    let bset = format!("--bounding-set={list}");
    let inh = format!("--inh-caps={list}");
    let amb = format!("--ambient-caps={list}");
    env.spawn_with(
        &[
            "setpriv",
            "--reuid",
            &uid,
            "--regid",
            &uid,
            "--clear-groups",
            &bset,
            &inh,
            &amb,
            "--",
        ],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if env.exited().is_some() {
            return (false, env.log());
        }
        if env.sock.exists() && api_answers(&env) {
            let served = env.ping(VIP);
            let status = std::fs::read_to_string(format!("/proc/{}/status", env.pid().unwrap()))
                .unwrap_or_default();
            env.stop();
            return (served, format!("{status}\n{}", env.log()));
        }
        assert!(
            Instant::now() < deadline,
            "neither up nor failed:\n{}",
            env.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_least_capability_set_is_enough_and_each_cap_is_needed() {
    require_root();
    let caps = unit_caps();
    assert!(!caps.is_empty());
    let (up, log) = starts_with("cap", &caps);
    assert!(up, "not up with {caps:?}:\n{log}");
    // It really ran unprivileged, with exactly that set effective.
    let want: u64 = caps.iter().map(|c| 1u64 << cap_number(c)).sum();
    assert!(log.contains(&format!("Uid:\t{NOBODY}\t{NOBODY}")), "{log}");
    assert!(log.contains(&format!("CapEff:\t{want:016x}")), "{log}");
    for (i, c) in caps.iter().enumerate() {
        let fewer: Vec<String> = caps.iter().filter(|x| *x != c).cloned().collect();
        let (up, log) = starts_with(&format!("cap{i}"), &fewer);
        assert!(!up, "up without {c}: it is not needed\n{log}");
        assert!(
            log.contains("Operation not permitted") || log.contains("Permission denied"),
            "failed without {c}, but not for want of it:\n{log}"
        );
    }
}

/// `linux/capability.h` numbers of the capabilities the unit may name.
fn cap_number(name: &str) -> u32 {
    match name {
        "CAP_NET_ADMIN" => 12,
        "CAP_SYS_ADMIN" => 21,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        other => panic!("add {other} to cap_number"),
    }
}
