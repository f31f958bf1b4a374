//! The API answers a standard gRPC client of another language: the stock
//! Python `grpcio` 1.85 (C-core) from PyPI, with default channel options, on
//! a real `lb-daemon`'s Unix socket and on its TCP listener with (mutual)
//! TLS. The C-core sends the socket path as `:authority`, which plain h2
//! refuses with RST_STREAM(PROTOCOL_ERROR) on every call (issue #14; the
//! vendored, patched h2 in third_party/h2 accepts it).
//!
//! The script (`python/lb_client_check.py`) lists the services by reflection,
//! checks health, drives CreateVip/AddBackend/SetBackendWeight/ListVips with
//! types resolved by reflection, and makes three refused calls with their
//! exact codes (ALREADY_EXISTS, NOT_FOUND, INVALID_ARGUMENT), checking that
//! they changed nothing. This test then checks the daemon's state itself.
//! `python/raw_authority_check.py` sends the authorities of grpc-java,
//! grpc-swift and grpc-go by hand (the Python `h2` library) and one
//! malformed authority that must still be refused.

use std::process::Command;

use lb_privileged_tests::{bins, daemon::DaemonEnv, pyclient, require_root};

/// Runs the script (in the LB namespace, where the daemon's loopback is) and
/// returns its output, failing with everything it printed.
fn run_script(env: &DaemonEnv, args: &[&str]) -> String {
    let py = pyclient::python();
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", env.lb.name))
        .arg(&py)
        .arg(pyclient::script())
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("ALL OK"),
        "python client {args:?} failed ({}):\n{text}\ndaemon log:\n{}",
        out.status,
        env.log()
    );
    for code in ["ALREADY_EXISTS", "NOT_FOUND", "INVALID_ARGUMENT"] {
        assert!(
            text.contains(&format!("-> {code}")),
            "{code} missing:\n{text}"
        );
    }
    text
}

/// Checks with lbctl (not Python) that the daemon holds exactly what the
/// script's accepted calls made: `vip` with a drained IPv4 backend of slot
/// kept and an IPv6 backend of the default weight, nothing else.
fn assert_state(env: &DaemonEnv, api: &str, tls: &[String], vips: &[&str]) {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", env.lb.name))
        .arg(bins::bin("lbctl"))
        .args(["--api", api])
        .args(tls)
        .args(["vip", "list", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lbctl vip list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = v.as_array().expect("vip list --json is an array");
    let names: Vec<&str> = list.iter().map(|x| x["vip"].as_str().unwrap()).collect();
    assert_eq!(names, vips, "{v}");
    for x in list {
        let be: Vec<(&str, u64, &str)> = x["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["address"].as_str().unwrap(),
                    b["weight"].as_u64().unwrap(),
                    b["state"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            be,
            [
                ("198.19.0.11", 0, "draining"),
                ("fd00:19::12", 100, "active")
            ],
            "{x}"
        );
    }
}

#[test]
fn python_grpcio_with_default_options_on_the_unix_socket() {
    require_root();
    let mut env = DaemonEnv::new("py", None, "");
    env.start();
    let sock = env.sock.display().to_string();
    // Both spellings of a Unix target that C-core accepts; they send
    // different authorities ("tmp%2F..." and "%2Ftmp%2F...").
    let targets = [format!("unix://{sock}"), format!("unix:{sock}")];
    for (target, vip) in targets.iter().zip(["198.18.100.10", "198.18.100.11"]) {
        let text = run_script(&env, &[target, "--vip", vip]);
        assert!(text.contains("grpcio 1.85.3"), "{text}");
    }
    assert_state(
        &env,
        &env.api(),
        &[],
        &["198.18.100.10:80/tcp", "198.18.100.11:80/tcp"],
    );
    // The other clients' spellings (Java's raw path, Swift's encoded one,
    // Go's localhost) are accepted too, and a malformed authority is still
    // refused: the h2 patch is no blanket acceptance.
    let out = Command::new(pyclient::python())
        .arg(pyclient::authority_script())
        .arg(&env.sock)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("ALL OK"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.stop();
}

#[test]
fn python_grpcio_with_default_options_over_tls() {
    require_root();
    let pki = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .arg(bins::pki_script())
        .current_dir(pki.path())
        .output()
        .expect("openssl (installed by setup.sh)");
    assert!(
        out.status.success(),
        "pki.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = |f: &str| pki.path().join(f).display().to_string();
    // Loopback inside the LB namespace only; mutual TLS.
    let api = format!(
        "[api]\nlisten = \"tcp://127.0.0.1:50161\"\n[api.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
        p("server.pem"),
        p("server.key"),
        p("ca.pem")
    );
    let mut env = DaemonEnv::new("pyt", Some(&api), "");
    env.lb.exec(&["ip", "link", "set", "lo", "up"]);
    env.start_tcp();
    let (ca, cert, key) = (p("ca.pem"), p("client.pem"), p("client.key"));
    let text = run_script(
        &env,
        &[
            "127.0.0.1:50161",
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "--vip",
            "fd00:100::10",
        ],
    );
    assert!(text.contains("grpcio 1.85.3"), "{text}");
    let tls = ["--ca", &ca, "--cert", &cert, "--key", &key].map(String::from);
    assert_state(
        &env,
        "tcp://127.0.0.1:50161",
        &tls,
        &["[fd00:100::10]:80/tcp"],
    );
    env.stop();
}

/// `[api] health_listen`: a plaintext listener serving grpc.health.v1 alone
/// (for kubelet's `grpc` probe, which speaks neither Unix sockets nor TLS).
/// The stock grpcio health client gets SERVING for the server and the API
/// service, NOT_FOUND for an unknown service, UNIMPLEMENTED for the API's
/// own methods and reflection; the API stays on its Unix socket; once the
/// daemon stops, the probe port refuses connections.
#[test]
fn the_health_probe_listener_serves_grpc_health_alone() {
    require_root();
    let mut env = DaemonEnv::new("hpr", None, "");
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        config.replace("[api]\n", "[api]\nhealth_listen = \"127.0.0.1:50162\"\n"),
    )
    .unwrap();
    env.lb.exec(&["ip", "link", "set", "lo", "up"]);
    env.start();
    assert!(
        env.log().contains("health probe listening"),
        "{}",
        env.log()
    );
    let netns = format!("--net=/run/netns/{}", env.lb.name);
    let probe = |what: &str| {
        Command::new("nsenter")
            .arg(&netns)
            .arg(pyclient::python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/python/health_probe_check.py"
            ))
            .arg(what)
            .output()
            .unwrap()
    };
    let out = probe("127.0.0.1:50162");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("ALL OK"),
        "health probe check failed ({}):\n{text}\ndaemon log:\n{}",
        out.status,
        env.log()
    );
    assert!(text.contains("health (server) SERVING"), "{text}");
    // The API is where it was, on its socket.
    let argv = ["lbctl", "--api", &env.api(), "status"].map(String::from);
    let (code, _, err) = bins::lbctl(&argv, true);
    assert_eq!(code, 0, "lbctl status: {}", String::from_utf8_lossy(&err));
    env.stop();
    let out = probe("127.0.0.1:50162");
    assert!(
        !out.status.success(),
        "probe still answered after the daemon stopped:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
