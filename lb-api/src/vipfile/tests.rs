use super::*;

const TWO_VIPS: &str = r#"
[[vip]]
address = "[fd00::10]:443/tcp"
flags = ["no-sport"]
backends = [
  { address = "fd00:1::12", weight = 50 },
  { address = "fd00:1::11" },
]

[[vip]]
address = "198.18.100.10:80/tcp"
backends = [{ address = "198.19.0.11", weight = 0 }]
"#;

#[test]
fn parses_vips_with_defaults() {
    let f = VipFile::parse(TWO_VIPS, "t.toml").unwrap();
    assert!(f.skipped.is_empty());
    assert_eq!(f.vips.len(), 2);
    let v6 = &f.vips[0];
    assert_eq!(v6.address.to_string(), "[fd00::10]:443/tcp");
    assert!(v6.flags.no_sport && !v6.flags.no_conntrack);
    assert_eq!(
        v6.backend_specs(),
        [
            BackendSpec::weighted("fd00:1::12".parse().unwrap(), 50),
            BackendSpec::weighted("fd00:1::11".parse().unwrap(), DEFAULT_WEIGHT),
        ]
    );
    assert_eq!(f.vips[1].backends[0].weight, 0);
    // No VIPs at all is a valid (empty) desired state.
    assert!(VipFile::parse("", "e.toml").unwrap().vips.is_empty());
}

#[test]
fn a_daemon_configuration_is_a_vip_file() {
    let text = format!(
        "[dataplane]\ninterface = \"eth0\"\ngateway_mac = \"02:00:00:00:00:01\"\n\
         [api]\nlisten = \"unix:///run/lb/lb.sock\"\n{TWO_VIPS}"
    );
    let f = VipFile::parse(&text, "lb.toml").unwrap();
    assert_eq!(f.skipped, ["dataplane", "api"]);
    assert_eq!(f.vips.len(), 2);
    for shipped in ["demo.toml", "production.toml"] {
        let path = format!("{}/../config/{shipped}", env!("CARGO_MANIFEST_DIR"));
        let f = VipFile::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!f.vips.is_empty(), "{shipped}");
        assert!(f.skipped.contains(&"dataplane"), "{shipped}");
    }
    // production.toml has every node table, [metrics] and [bgp] included.
    let path = format!("{}/../config/production.toml", env!("CARGO_MANIFEST_DIR"));
    let f = VipFile::read(&path).unwrap();
    assert_eq!(f.skipped, ["dataplane", "api", "state", "metrics", "bgp"]);
}

/// A file that must be refused, with the line and key of the error.
#[track_caller]
fn refused(text: &str, line: usize, key: &str, needle: &str) {
    match VipFile::parse(text, "bad.toml") {
        Ok(f) => panic!("accepted: {text}\n{:?}", f.vips),
        Err(FileError::Invalid {
            origin,
            line: l,
            key: k,
            message,
        }) => {
            assert_eq!(origin, "bad.toml");
            assert_eq!(
                (l, k.as_deref()),
                (Some(line), Some(key)),
                "{message}\n{text}"
            );
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            let shown = VipFile::parse(text, "bad.toml").unwrap_err().to_string();
            assert!(
                shown.starts_with(&format!("bad.toml: line {line}: key `{key}`: ")),
                "{shown}"
            );
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn bad_files_name_the_line_and_the_key() {
    let vip = |addr: &str, backends: &str| {
        format!("[[vip]]\naddress = \"{addr}\"\nbackends = [\n{backends}]\n")
    };
    let ok = vip("198.18.100.10:80/tcp", "  { address = \"198.19.0.11\" },\n");
    let cases: Vec<(String, usize, &str, &str)> =
        vec![
        // The same VIP twice, written differently.
        (
            format!("{ok}{}", vip("198.18.100.10:080/TCP", "")),
            7,
            "vip[1].address",
            "defined twice",
        ),
        (
            format!("{ok}[[vip]]\nadress = \"198.18.100.11:80/tcp\"\n"),
            7,
            "vip[1].adress",
            "unknown field",
        ),
        (
            vip("198.18.100.10:80/tcp", "  { address = \"198.19.0.11\", wieght = 5 },\n"),
            4,
            "vip[0].backends[0].wieght",
            "unknown field",
        ),
        ("frontends = 3\n".into(), 1, "frontends", "unknown field"),
        (
            vip("198.18.100.10:80/tcp", "  { address = \"198.19.0\" },\n"),
            4,
            "vip[0].backends[0].address",
            "invalid IP address",
        ),
        (vip("198.18.100:80/tcp", ""), 2, "vip[0].address", "not an IP address"),
        (vip("fd00::10:80/tcp", ""), 2, "vip[0].address", "brackets"),
        (vip("198.18.100.10:80/sctp", ""), 2, "vip[0].address", "unknown protocol"),
        (vip("127.0.0.1:80/tcp", ""), 2, "vip[0].address", "loopback"),
        (
            vip("198.18.100.10:80/tcp", "  { address = \"224.0.0.1\" },\n"),
            4,
            "vip[0].backends[0].address",
            "multicast",
        ),
        (
            vip("198.18.100.10:80/tcp", "  { address = \"198.18.100.10\" },\n"),
            4,
            "vip[0].backends[0].address",
            "own address",
        ),
        (
            vip(
                "198.18.100.10:80/tcp",
                "  { address = \"198.19.0.11\" },\n  { address = \"198.19.0.11\", weight = 1 },\n",
            ),
            5,
            "vip[0].backends[1].address",
            "listed twice",
        ),
        (
            vip("198.18.100.10:80/tcp", "  { address = \"198.19.0.11\", weight = 65536 },\n"),
            4,
            "vip[0].backends[0].weight",
            "out of range 0..=65535",
        ),
        (
            vip("198.18.100.10:80/tcp", "  { address = \"198.19.0.11\", weight = -1 },\n"),
            4,
            "vip[0].backends[0].weight",
            "",
        ),
        (
            format!(
                "{ok}{}",
                vip("198.18.100.20:80/tcp", "  { address = \"198.18.100.10\" },\n")
            ),
            9,
            "vip[1].backends[0].address",
            "also a VIP address",
        ),
        (
            "[[vip]]\naddress = \"198.18.100.10:80/tcp\"\nflags = [\"no-sport\", \"nosport\"]\n"
                .into(),
            3,
            "vip[0].flags",
            "unknown VIP flag `nosport`",
        ),
        (
            "[[vip]]\naddress = \"198.18.100.10:80/tcp\"\nbackends = [\n".into(),
            3,
            "vip[0].backends",
            "unclosed array",
        ),
    ];
    for (text, line, key, needle) in cases {
        refused(&text, line, key, needle);
    }
}

#[test]
fn rendering_is_sorted_and_reads_back() {
    let f = VipFile::parse(TWO_VIPS, "t.toml").unwrap();
    let text = to_toml(&f.vips);
    assert_eq!(
        text,
        "# lb VIPs, as `lbctl export` writes them; `lbctl apply FILE` makes a node match.\n\
         \n[[vip]]\naddress = \"198.18.100.10:80/tcp\"\nbackends = [\n  { address = \"198.19.0.11\", weight = 0 },\n]\n\
         \n[[vip]]\naddress = \"[fd00::10]:443/tcp\"\nflags = [\"no-sport\"]\nbackends = [\n  \
         { address = \"fd00:1::11\", weight = 100 },\n  { address = \"fd00:1::12\", weight = 50 },\n]\n"
    );
    let back = VipFile::parse(&text, "export.toml").unwrap();
    assert_eq!(
        to_toml(&back.vips),
        text,
        "render(parse(render(x))) == render(x)"
    );
    // Order-independent: the same VIPs in another order give the same bytes.
    let mut reversed = f.vips.clone();
    reversed.reverse();
    for v in &mut reversed {
        v.backends.reverse();
    }
    assert_eq!(to_toml(&reversed), text);
    // A VIP without backends, and both flags.
    let bare = VipConfig {
        health: None,
        address: "[fd00::20]:0/udp".parse().unwrap(),
        flags: VipFlags {
            no_sport: true,
            no_conntrack: true,
        },
        backends: vec![],
    };
    let text = to_toml(std::slice::from_ref(&bare));
    assert!(
        text.ends_with("flags = [\"no-sport\", \"no-conntrack\"]\nbackends = []\n"),
        "{text}"
    );
    assert_eq!(VipFile::parse(&text, "x").unwrap().vips, [bare]);
}

#[test]
fn health_tables_parse_render_and_bad_values_name_line_and_key() {
    let text = r#"
[[vip]]
address = "198.18.100.10:80/tcp"
health = { kind = "http", path = "/healthz", expect = 200, interval = "1s", timeout = "500ms", rise = 2, fall = 3, overrides = [{ backend = "198.19.0.12", port = 8081, path = "/ready" }] }
backends = [{ address = "198.19.0.11" }]

[[vip]]
address = "198.18.100.10:5353/udp"
health = { kind = "udp", payload = "ping", expect = "backend", initial = "down", mode = "via-vip" }
"#;
    let f = VipFile::parse(text, "v.toml").unwrap();
    let c = f.vips[0].health_check().unwrap().unwrap();
    assert_eq!(c.interval_ms, 1000);
    assert_eq!(c.timeout_ms, 500);
    let u = f.vips[1].health_check().unwrap().unwrap();
    assert_eq!(u.initial, crate::HealthState::Down);
    assert_eq!(u.mode, crate::ProbeMode::ViaVip);
    assert_eq!(c.mode, crate::ProbeMode::Direct, "direct unless asked");
    // The override applies to its backend only.
    let b2 = c.for_backend("198.19.0.12".parse().unwrap());
    assert_eq!(b2.port, Some(8081));
    assert!(matches!(&b2.kind, crate::CheckKind::Http { path, .. } if path == "/ready"));
    assert!(b2.overrides.is_empty());
    let b1 = c.for_backend("198.19.0.11".parse().unwrap());
    assert_eq!(b1.port, None);
    assert!(matches!(&b1.kind, crate::CheckKind::Http { path, .. } if path == "/healthz"));
    // Rendered and read back: the same checks.
    let again = VipFile::parse(&to_toml(&f.vips), "again").unwrap();
    assert_eq!(again.vips[0].health_check().unwrap(), Some(c));
    assert_eq!(again.vips[1].health_check().unwrap(), Some(u));

    let bad = |health: &str, vip: &str| {
        let text = format!("[[vip]]\naddress = \"{vip}\"\nhealth = {{ {health} }}\n");
        VipFile::parse(&text, "v.toml").unwrap_err().to_string()
    };
    let tcp = "198.18.100.10:80/tcp";
    for (health, vip, want) in [
        (
            r#"kind = "http", path = "/", interval = "0s""#,
            tcp,
            "line 3: key `vip[0].health.interval`",
        ),
        (
            r#"kind = "tcp", timeout = "1s""#,
            tcp,
            "key `vip[0].health.timeout`",
        ),
        (r#"kind = "tcp", rise = 0"#, tcp, "key `vip[0].health.rise`"),
        (
            r#"kind = "tcp""#,
            "198.18.100.10:0/tcp",
            "key `vip[0].health`: VIP 198.18.100.10:0/tcp: health.port: required",
        ),
        (r#"kind = "smtp""#, tcp, "line 3"),
        (
            r#"kind = "http", path = "healthz""#,
            tcp,
            "key `vip[0].health.path`",
        ),
        (r#"kind = "http""#, tcp, "key `vip[0].health`"),
        (r#"kind = "tcp", interval = "1""#, tcp, "line 3"),
        (
            r#"kind = "udp", payload = "x", expect = 200"#,
            tcp,
            "key `vip[0].health.expect`",
        ),
        (r#"kind = "tcp", colour = "red""#, tcp, "line 3"),
        (r#"kind = "tcp", mode = "via-router""#, tcp, "line 3"),
        (
            r#"kind = "tcp", overrides = [{ backend = "198.19.0.12", path = "/x" }]"#,
            tcp,
            "198.19.0.12: path and host belong to http checks",
        ),
        (
            r#"kind = "tcp", overrides = [{ backend = "backend-2", port = 81 }]"#,
            tcp,
            "key `vip[0].health.overrides`",
        ),
        (
            r#"kind = "tcp", overrides = [{ backend = "198.19.0.12" }]"#,
            tcp,
            "overrides nothing",
        ),
        (
            r#"kind = "tcp", overrides = [{ backend = "198.19.0.12", port = 0 }]"#,
            tcp,
            "198.19.0.12: port must be",
        ),
        (
            r#"kind = "tcp", overrides = [{ backend = "198.19.0.12", port = 81 }, { backend = "198.19.0.12", port = 82 }]"#,
            tcp,
            "named twice",
        ),
        (
            r#"kind = "tcp", overrides = [{ backend = "198.19.0.12", weight = 1 }]"#,
            tcp,
            "line 3",
        ),
    ] {
        let e = bad(health, vip);
        assert!(e.contains(want), "{health}: {e}");
    }
}
