//! The file format: values, defaults, and errors with line and key. What
//! the daemon checks beyond the format is tested in `daemon::settings`.

use super::*;
use lb_api::BackendSpec;

pub(crate) const FULL: &str = r#"
[dataplane]
interface = "eth1"
xdp_mode = "native"
gateway_mac = "02:00:00:00:00:fe"
pin_path = "/sys/fs/bpf/lb2"
mtu = 9000
ring_size = 257
max_vips = 8
max_backends = 100
conn_table_size = 4096
hash_seed = 12345
encap_source_v4 = "198.19.0.1/32"
encap_source_v6 = "fd00:5::/96"
forward_icmp_errors = false
encap = "gue"
gue_port = 9999
max_new_flows_per_cpu = 2000

[api]
listen = "tcp://127.0.0.1:50051"

[api.tls]
cert = "/etc/lb/cert.pem"
key = "/etc/lb/key.pem"
client_ca = "/etc/lb/ca.pem"

[state]
dir = "/var/lib/lb2"

[[vip]]
address = "198.18.100.10:80/tcp"
flags = ["no-sport", "no-conntrack"]
backends = [ { address = "198.19.0.11", weight = 100 }, { address = "198.19.0.12" } ]

[[vip]]
address = "[fd00::10]:0/udp"
backends = [ { address = "fd00:1::1", weight = 0 } ]
"#;

pub(crate) const MINIMAL: &str = r#"
[dataplane]
interface = "eth0"
gateway_mac = "02:00:00:00:00:01"
"#;

#[test]
fn full_file() {
    let c: Config = FULL.parse().unwrap();
    let dp = &c.dataplane;
    assert_eq!(dp.interface.as_str(), "eth1");
    assert_eq!(dp.xdp_mode, XdpMode::Native);
    assert_eq!(dp.gateway_mac, MacAddr([2, 0, 0, 0, 0, 0xfe]));
    assert_eq!(dp.pin_path, PathBuf::from("/sys/fs/bpf/lb2"));
    assert_eq!(
        (
            dp.ring_size,
            dp.max_vips,
            dp.max_backends,
            dp.conn_table_size
        ),
        (257, 8, 100, 4096)
    );
    assert_eq!((dp.mtu, dp.hash_seed), (9000, 12345));
    assert_eq!(dp.encap_source_v4.to_string(), "198.19.0.1/32");
    assert_eq!(dp.encap_source_v6.to_string(), "fd00:5::/96");
    assert!(!dp.forward_icmp_errors);
    assert_eq!((dp.encap, dp.gue_port), (EncapKind::Gue, 9999));
    assert_eq!(dp.max_new_flows_per_cpu, 2000);
    assert_eq!(
        c.api.listen,
        Listen::Tcp("127.0.0.1:50051".parse().unwrap())
    );
    let tls = c.api.tls.as_ref().unwrap();
    assert_eq!(tls.client_ca.as_deref(), Some(Path::new("/etc/lb/ca.pem")));
    assert_eq!(c.state.dir, PathBuf::from("/var/lib/lb2"));
    assert_eq!(c.vips.len(), 2);
    assert_eq!(c.vips[0].address.to_string(), "198.18.100.10:80/tcp");
    assert!(c.vips[0].flags.no_sport && c.vips[0].flags.no_conntrack);
    assert_eq!(c.vips[0].backends[1].weight, 100, "default weight");
    assert_eq!(c.vips[1].address.to_string(), "[fd00::10]:0/udp");
    assert_eq!(c.vips[1].backends[0].weight, 0);
    assert_eq!(
        c.vips[0].backend_specs(),
        [
            BackendSpec::weighted("198.19.0.11".parse().unwrap(), 100),
            BackendSpec::weighted("198.19.0.12".parse().unwrap(), 100),
        ]
    );
}

#[test]
fn minimal_file_takes_defaults() {
    let c: Config = MINIMAL.parse().unwrap();
    let dp = &c.dataplane;
    assert_eq!(dp.xdp_mode, XdpMode::Auto);
    assert_eq!(dp.pin_path, PathBuf::from("/sys/fs/bpf/lb"));
    assert_eq!(dp.mtu, 1500);
    assert_eq!(dp.hash_seed, 0);
    assert_eq!(dp.encap_source_v4.to_string(), "172.16.0.0/16");
    assert_eq!(dp.encap_source_v6.to_string(), "100::/96");
    assert_eq!(dp.icmp_too_big_rate, 1000);
    assert_eq!(
        dp.max_new_flows_per_cpu, 125_000,
        "new-flow budget on by default, at Katran's rate"
    );
    assert!(
        dp.forward_icmp_errors,
        "ICMP errors are forwarded by default"
    );
    assert_eq!((dp.encap, dp.gue_port), (EncapKind::Ipip, 6080));
    assert_eq!(c.api.listen.to_string(), "unix:///run/lb/lb.sock");
    assert_eq!(c.api.tls, None);
    assert_eq!(c.state.dir, PathBuf::from("/var/lib/lb"));
    assert!(c.vips.is_empty());
}

#[test]
fn shipped_files_parse() {
    let demo: Config = include_str!("../../../config/demo.toml").parse().unwrap();
    assert_eq!(demo.dataplane.interface.as_str(), "lblb0");
    assert_eq!(demo.dataplane.gateway_mac.to_string(), "02:00:00:00:00:01");
    assert_eq!(demo.api.listen.to_string(), "unix:///run/lb-lab/lb.sock");
    assert_eq!(demo.state.dir, PathBuf::from("/run/lb-lab/state"));
    assert_eq!(demo.dataplane.mtu, 1600);
    assert_eq!(demo.vips.len(), 1);
    assert_eq!(demo.vips[0].address.to_string(), "198.18.100.10:80/tcp");
    let backends: Vec<String> = demo.vips[0]
        .backends
        .iter()
        .map(|b| b.address.to_string())
        .collect();
    assert_eq!(backends, ["198.19.0.11", "198.19.0.12", "198.19.0.13"]);

    let prod: Config = include_str!("../../../config/production.toml")
        .parse()
        .unwrap();
    assert_eq!(prod.dataplane.ring_size, lb_common::DEFAULT_RING_SIZE);
    // The template lists every key with its default.
    assert_eq!(prod.dataplane.encap, EncapKind::Ipip);
    assert_eq!(prod.dataplane.gue_port, lb_common::DEFAULT_GUE_PORT);
    assert_eq!(prod.vips.len(), 2);
    assert_eq!(prod.metrics.listen, Some("127.0.0.1:9661".parse().unwrap()));
}

#[test]
fn from_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lb.toml");
    std::fs::write(
        &p,
        "[dataplane]\ninterface = \"eth0\"\ngateway_mac = \"nope\"\n",
    )
    .unwrap();
    let e = Config::from_file(&p).unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("{}: line 3", p.display())),
        "{text}"
    );
    let e = Config::from_file(dir.path().join("missing.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(e.to_string().contains("missing.toml"));
}

/// Parses `text` expecting an error at `line` on `key` whose message
/// contains `needle`.
#[track_caller]
fn bad(text: &str, line: usize, key: &str, needle: &str) {
    assert_invalid(text.parse::<Config>().unwrap_err(), line, key, needle);
}

/// Checks that `e` is about `key` at `line`, its message containing
/// `needle`, and that it says so when shown.
#[track_caller]
pub(crate) fn assert_invalid(e: ConfigError, line: usize, key: &str, needle: &str) {
    let shown = e.to_string();
    let ConfigError::Invalid {
        line: got_line,
        key: got_key,
        message,
        ..
    } = e
    else {
        panic!("not an Invalid error: {shown}");
    };
    assert_eq!(got_line, Some(line), "line, in: {shown}");
    assert_eq!(got_key.as_deref(), Some(key), "key, in: {shown}");
    assert!(
        message.contains(needle),
        "message lacks `{needle}`: {shown}"
    );
    assert!(shown.contains(&format!("line {line}")), "{shown}");
    assert!(shown.contains(&format!("`{key}`")), "{shown}");
}

pub(crate) const HEAD: &str =
    "[dataplane]\ninterface = \"eth0\"\ngateway_mac = \"02:00:00:00:00:01\"\n";

#[test]
fn bad_values_are_reported_with_line_and_key() {
    // Values refused by their own types (reported through the toml crate).
    bad(
        "[dataplane]\ninterface = \"eth0\"\ngateway_mac = \"02:00:00:00:01\"\n",
        3,
        "dataplane.gateway_mac",
        "not a MAC address",
    );
    bad(
        "[dataplane]\ninterface = \"eth0\"\ngateway_mac = \"01:00:5e:00:00:01\"\n",
        3,
        "dataplane.gateway_mac",
        "multicast",
    );
    bad(
        "[dataplane]\ninterface = \"a-very-long-interface\"\ngateway_mac = \"02:00:00:00:00:01\"\n",
        2,
        "dataplane.interface",
        "1 to 15",
    );
    bad(
        &format!("{HEAD}xdp_mode = \"turbo\"\n"),
        4,
        "dataplane.xdp_mode",
        "unknown variant",
    );
    bad(
        &format!("{HEAD}encap_source_v4 = \"172.16.0.1/16\"\n"),
        4,
        "dataplane.encap_source_v4",
        "host bits",
    );
    bad(&format!("{HEAD}mtu = -5\n"), 4, "dataplane.mtu", "u32");
    bad(
        &format!("{HEAD}forward_icmp_errors = \"yes\"\n"),
        4,
        "dataplane.forward_icmp_errors",
        "bool",
    );
    bad(
        &format!("{HEAD}encap = \"gre\"\n"),
        4,
        "dataplane.encap",
        "unknown variant",
    );
    bad(
        &format!("{HEAD}gue_port = 0\n"),
        4,
        "dataplane.gue_port",
        "1..=65535",
    );
    bad(
        &format!("{HEAD}gue_port = 70000\n"),
        4,
        "dataplane.gue_port",
        "u16",
    );
    bad(
        &format!("{HEAD}max_new_flows_per_cpu = -1\n"),
        4,
        "dataplane.max_new_flows_per_cpu",
        "u32",
    );
    bad(
        &format!("{HEAD}max_new_flows_per_cpu = \"off\"\n"),
        4,
        "dataplane.max_new_flows_per_cpu",
        "u32",
    );
    bad(
        &format!("{HEAD}mtu = 1500\nbogus = 1\n"),
        5,
        "dataplane.bogus",
        "unknown field",
    );
    bad(
        &format!("{HEAD}\n[api]\nlisten = \"http://x\"\n"),
        6,
        "api.listen",
        "not a listen address",
    );
    bad(
        &format!("{HEAD}\n[[vip]]\naddress = \"198.18.0.1:80/sctp\"\n"),
        6,
        "vip[0].address",
        "unknown protocol",
    );
    bad(
        &format!("{HEAD}\n[[vip]]\naddress = \"198.18.0.1:70000/tcp\"\n"),
        6,
        "vip[0].address",
        "out of range",
    );
    bad(
        &format!("{HEAD}\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\nflags = [\"fast\"]\n"),
        7,
        "vip[0].flags",
        "unknown VIP flag",
    );
    bad(
        &format!(
            "{HEAD}\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\nbackends = [\n  {{ address = \"198.19.0.1\" }},\n  {{ address = \"198.19.0.300\" }},\n]\n"
        ),
        9,
        "vip[0].backends[1].address",
        "invalid IP address",
    );
    // A TOML syntax error: line, and the key being defined.
    bad(&format!("{HEAD}mtu = 15 00\n"), 4, "dataplane.mtu", "");
}

#[test]
fn bad_combinations_are_reported_with_line_and_key() {
    bad(
        &format!("{HEAD}mtu = 100\n"),
        4,
        "dataplane.mtu",
        "out of range",
    );
    bad(
        &format!("{HEAD}max_backends = 1\n"),
        4,
        "dataplane.max_backends",
        "at least 2",
    );
    bad(
        &format!("{HEAD}encap_source_v6 = \"fd00::/64\"\n"),
        4,
        "dataplane.encap_source_v6",
        "96..=128",
    );
    bad(
        &format!("{HEAD}pin_path = \"bpf/lb\"\n"),
        4,
        "dataplane.pin_path",
        "absolute",
    );
    bad(
        &format!("{HEAD}\n[api]\nlisten = \"tcp://127.0.0.1:50051\"\n"),
        6,
        "api.listen",
        "requires [api.tls]",
    );
    bad(
        &format!(
            "{HEAD}\n[api]\nlisten = \"unix:///run/x.sock\"\n[api.tls]\ncert = \"/c\"\nkey = \"/k\"\n"
        ),
        7,
        "api.tls",
        "tcp:// listeners only",
    );
    bad(
        &format!("{HEAD}\n[state]\ndir = \"relative/dir\"\n"),
        6,
        "state.dir",
        "absolute",
    );
    let two_vips = format!(
        "{HEAD}\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\n\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\n"
    );
    bad(&two_vips, 9, "vip[1].address", "defined twice");
    bad(
        &format!(
            "{HEAD}\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\nbackends = [\n  {{ address = \"198.19.0.1\" }},\n  {{ address = \"198.19.0.1\" }},\n]\n"
        ),
        9,
        "vip[0].backends[1].address",
        "listed twice",
    );
    bad(
        &format!(
            "{HEAD}max_vips = 1\n\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\n\n[[vip]]\naddress = \"198.18.0.2:80/tcp\"\n"
        ),
        10,
        "vip[1].address",
        "max_vips",
    );
    bad(
        &format!(
            "{HEAD}max_backends = 2\n\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\nbackends = [ {{ address = \"198.19.0.1\" }}, {{ address = \"198.19.0.2\" }} ]\n"
        ),
        8,
        "vip[0].backends[1].address",
        "max_backends",
    );
    bad(
        &format!(
            "{HEAD}\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\n\n[[vip]]\naddress = \"198.18.0.2:80/tcp\"\nbackends = [ {{ address = \"198.18.0.1\" }} ]\n"
        ),
        10,
        "vip[1].backends[0].address",
        "also a VIP address",
    );
}

#[test]
fn missing_required_keys() {
    let e = "[dataplane]\ninterface = \"eth0\"\n"
        .parse::<Config>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("gateway_mac"), "{e}");
    assert!(e.contains("line 1"), "{e}");
    let e = "[api]\nlisten = \"unix:///x\"\n"
        .parse::<Config>()
        .unwrap_err();
    let ConfigError::Invalid {
        line, key, message, ..
    } = e
    else {
        panic!("{e}");
    };
    // About the whole file: no line or key to point at.
    assert_eq!((line, key), (None, None));
    assert!(message.contains("missing field `dataplane`"), "{message}");
}

#[test]
fn value_types_round_trip() {
    assert!("0.0.0.0/0".parse::<Ipv4Prefix>().is_ok());
    assert!("1.2.3.4/33".parse::<Ipv4Prefix>().is_err());
    assert!("1.2.3.4/".parse::<Ipv4Prefix>().is_err());
    assert!("fd00::1/128".parse::<Ipv6Prefix>().is_ok());
    assert!("fd00::1/96".parse::<Ipv6Prefix>().is_err());
    assert_eq!(
        "tcp://[::1]:50051".parse::<Listen>().unwrap().to_string(),
        "tcp://[::1]:50051"
    );
    assert!("unix://relative.sock".parse::<Listen>().is_err());
    assert!(
        format!("unix:///{}", "x".repeat(107))
            .parse::<Listen>()
            .is_err()
    );
    assert!("tcp://localhost:1".parse::<Listen>().is_err());
}

/// A syntax error on the very first byte still names line 1 (found by the
/// property test in tests/config_props.rs: an error at offset 0 used to be
/// taken for an error about the whole document and lost its line).
#[test]
fn syntax_error_on_the_first_byte_names_line_1() {
    let e = ConfigFile::parse("}\n[dataplane]\ninterface = \"eth0\"\n", "x.toml").unwrap_err();
    let ConfigError::Invalid { line, .. } = &e else {
        panic!("{e}");
    };
    assert_eq!(*line, Some(1), "{e}");
    assert!(e.to_string().starts_with("x.toml: line 1"), "{e}");
}

#[test]
fn metrics_listener_is_off_unless_set() {
    let c: Config = MINIMAL.parse().unwrap();
    assert_eq!(
        c.metrics,
        MetricsConfig {
            listen: None,
            allow_remote: false
        }
    );
    let c: Config = format!("{HEAD}\n[metrics]\nlisten = \"127.0.0.1:9661\"\n")
        .parse()
        .unwrap();
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9661".parse().unwrap()));
    let c: Config = format!("{HEAD}\n[metrics]\nlisten = \"[::1]:9661\"\n")
        .parse()
        .unwrap();
    assert_eq!(c.metrics.listen, Some("[::1]:9661".parse().unwrap()));
    let c: Config =
        format!("{HEAD}\n[metrics]\nlisten = \"[fd00::2]:9661\"\nallow_remote = true\n")
            .parse()
            .unwrap();
    assert_eq!(c.metrics.listen, Some("[fd00::2]:9661".parse().unwrap()));
    assert!(c.metrics.allow_remote);
}

#[test]
fn a_remote_metrics_listener_needs_the_explicit_opt_in() {
    for addr in [
        "198.18.0.2:9661",
        "0.0.0.0:9661",
        "[fd00::2]:9661",
        "[::]:9661",
    ] {
        bad(
            &format!("{HEAD}\n[metrics]\nlisten = \"{addr}\"\n"),
            6,
            "metrics.listen",
            "allow_remote = true",
        );
        // `false` written out is no opt-in either.
        bad(
            &format!("{HEAD}\n[metrics]\nallow_remote = false\nlisten = \"{addr}\"\n"),
            7,
            "metrics.listen",
            "not a loopback address",
        );
    }
    bad(
        &format!("{HEAD}\n[metrics]\nlisten = \"127.0.0.1:9661\"\nallow_remote = \"yes\"\n"),
        7,
        "metrics.allow_remote",
        "invalid type",
    );
}

#[test]
fn bad_metrics_settings_name_line_and_key() {
    bad(
        &format!("{HEAD}\n[metrics]\nlisten = \"localhost:9661\"\n"),
        6,
        "metrics.listen",
        "invalid socket address",
    );
    bad(
        &format!("{HEAD}\n[metrics]\nlisten = \"127.0.0.1\"\n"),
        6,
        "metrics.listen",
        "invalid socket address",
    );
    bad(
        &format!("{HEAD}\n[metrics]\nlisten = \"127.0.0.1:9661\"\npath = \"/m\"\n"),
        7,
        "metrics.path",
        "unknown field",
    );
    bad(
        &format!("{HEAD}\n[metrics]\nlisten = \"127.0.0.1:0\"\n"),
        6,
        "metrics.listen",
        "port 0",
    );
    bad(
        &format!(
            "{HEAD}\n[api]\nlisten = \"tcp://127.0.0.1:9661\"\n[api.tls]\ncert = \"/c\"\nkey = \"/k\"\n\n[metrics]\nlisten = \"127.0.0.1:9661\"\n"
        ),
        12,
        "metrics.listen",
        "also the API's address",
    );
}

#[test]
fn health_probe_listener_is_off_unless_set_and_local_unless_opted_in() {
    let c: Config = MINIMAL.parse().unwrap();
    assert_eq!(c.api.health_listen, None);
    let c: Config = format!("{HEAD}\n[api]\nhealth_listen = \"127.0.0.1:9662\"\n")
        .parse()
        .unwrap();
    assert_eq!(c.api.health_listen, Some("127.0.0.1:9662".parse().unwrap()));
    let c: Config =
        format!("{HEAD}\n[api]\nhealth_listen = \"0.0.0.0:9662\"\nhealth_allow_remote = true\n")
            .parse()
            .unwrap();
    assert!(c.api.health_allow_remote);
    for addr in ["198.18.0.2:9662", "0.0.0.0:9662", "[::]:9662"] {
        bad(
            &format!("{HEAD}\n[api]\nhealth_listen = \"{addr}\"\n"),
            6,
            "api.health_listen",
            "health_allow_remote = true",
        );
    }
    bad(
        &format!("{HEAD}\n[api]\nhealth_listen = \"127.0.0.1:0\"\n"),
        6,
        "api.health_listen",
        "port 0",
    );
    bad(
        &format!(
            "{HEAD}\n[api]\nhealth_listen = \"127.0.0.1:9661\"\n[metrics]\nlisten = \"127.0.0.1:9661\"\n"
        ),
        6,
        "api.health_listen",
        "metrics address",
    );
    bad(
        &format!("{HEAD}\n[api]\nhealth_listen = \"localhost:9662\"\n"),
        6,
        "api.health_listen",
        "invalid socket address",
    );
}

/// `[bgp]` after HEAD (lines 1-3): `[bgp]` is line 5.
fn bgp(body: &str) -> String {
    format!("{HEAD}\n[bgp]\n{body}")
}

const PEER: &str = "[[bgp.peer]]\naddress = \"198.18.2.1\"\nasn = 65000\n";

#[test]
fn bgp_section() {
    let c: Config = bgp(&format!(
        "local_asn = 4200000001\nconfig_file = \"/run/lb/bird-lb.conf\"\n\
         control_socket = \"/run/lb/bird.ctl\"\nbfd_interval_ms = 50\n{PEER}\
         [[bgp.peer]]\naddress = \"fd00:2::1\"\nasn = 65000\n"
    ))
    .parse()
    .unwrap();
    let b = c.bgp.unwrap();
    assert_eq!(b.speaker, Speaker::Bird);
    assert_eq!(b.local_asn, 4_200_000_001);
    assert_eq!(b.control_socket, PathBuf::from("/run/lb/bird.ctl"));
    assert_eq!(b.config_file, PathBuf::from("/run/lb/bird-lb.conf"));
    assert_eq!(
        (b.hold_time, b.bfd, b.bfd_interval_ms, b.bfd_multiplier),
        (9, true, 50, 3)
    );
    assert_eq!(b.peers.len(), 2);
    assert_eq!(b.peers[1].address.to_string(), "fd00:2::1");
    // Absent: nothing is announced.
    assert!(MINIMAL.parse::<Config>().unwrap().bgp.is_none());
}

#[test]
fn bad_bgp_settings_are_reported_with_line_and_key() {
    // No peer: the table itself is named.
    bad(&bgp("local_asn = 65001\n"), 5, "bgp", "no peer");
    // Bad ASNs, ours and a peer's; one that does not fit 32 bits.
    bad(
        &bgp(&format!("local_asn = 0\n{PEER}")),
        6,
        "bgp.local_asn",
        "reserved",
    );
    bad(
        &bgp(&format!("local_asn = 23456\n{PEER}")),
        6,
        "bgp.local_asn",
        "AS_TRANS",
    );
    bad(
        &bgp(&format!("local_asn = 4294967296\n{PEER}")),
        6,
        "bgp.local_asn",
        "u32",
    );
    bad(
        &bgp("local_asn = 65001\n[[bgp.peer]]\naddress = \"198.18.2.1\"\nasn = 65535\n"),
        9,
        "bgp.peer[0].asn",
        "reserved",
    );
    bad(&bgp(PEER), 5, "bgp", "local_asn");
    // Unknown speakers, by name.
    bad(
        &bgp(&format!("speaker = \"gobgp\"\nlocal_asn = 65001\n{PEER}")),
        6,
        "bgp.speaker",
        "unknown speaker `gobgp`",
    );
    bad(
        &bgp(&format!("local_asn = 65001\nhold_time = 2\n{PEER}")),
        7,
        "bgp.hold_time",
        "RFC 4271",
    );
    bad(
        &bgp(&format!(
            "local_asn = 65001\ncontrol_socket = \"bird.ctl\"\n{PEER}"
        )),
        7,
        "bgp.control_socket",
        "absolute",
    );
    bad(
        &bgp(&format!("local_asn = 65001\n{PEER}{PEER}")),
        11,
        "bgp.peer[1].address",
        "twice",
    );
    bad(
        &bgp(&format!("local_asn = 65001\nneighbour = \"x\"\n{PEER}")),
        7,
        "bgp.neighbour",
        "unknown field",
    );
}
