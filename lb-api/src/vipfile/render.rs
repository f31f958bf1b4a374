//! `[[vip]]` tables as text, in the layout of the shipped configuration
//! files. Deterministic: VIPs sorted as listings sort them (IPv4 before
//! IPv6, then address, port, protocol), backends by address, every weight
//! written out; so the same VIPs always give the same bytes, whatever order
//! they were created in, and a file kept in version control only changes
//! where the VIPs did.

use std::fmt::Write;

use super::VipConfig;

/// The first line of a rendered file.
const HEADER: &str =
    "# lb VIPs, as `lbctl export` writes them; `lbctl apply FILE` makes a node match.\n";

/// `vips` as a file of `[[vip]]` tables that [`super::VipFile::parse`]
/// reads back to the same VIPs.
pub fn to_toml(vips: &[VipConfig]) -> String {
    let mut sorted: Vec<&VipConfig> = vips.iter().collect();
    sorted.sort_by_key(|v| v.address);
    let mut out = String::from(HEADER);
    for v in sorted {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "\n[[vip]]\naddress = \"{}\"", v.address);
        let flags = v.flags.names();
        if !flags.is_empty() {
            let quoted: Vec<String> = flags.iter().map(|f| format!("\"{f}\"")).collect();
            let _ = writeln!(out, "flags = [{}]", quoted.join(", "));
        }
        if let Some(h) = &v.health {
            let _ = writeln!(out, "health = {}", inline(h));
        }
        if v.backends.is_empty() {
            out.push_str("backends = []\n");
            continue;
        }
        let mut backends: Vec<_> = v.backends.iter().collect();
        backends.sort_by_key(|b| b.address);
        out.push_str("backends = [\n");
        for b in backends {
            let _ = writeln!(
                out,
                "  {{ address = \"{}\", weight = {} }},",
                b.address, b.weight
            );
        }
        out.push_str("]\n");
    }
    out
}

/// A value as one inline table, keys in the kind-first order of the docs.
fn inline(h: &super::HealthConfig) -> String {
    let Ok(toml::Value::Table(t)) = toml::Value::try_from(h) else {
        unreachable!("a HealthConfig is a table of plain values");
    };
    let order = [
        "kind",
        "path",
        "payload",
        "expect",
        "host",
        "port",
        "interval",
        "timeout",
        "rise",
        "fall",
        "jitter",
        "initial",
        "mode",
        "overrides",
    ];
    let parts: Vec<String> = order
        .iter()
        .filter_map(|k| t.get(*k).map(|v| format!("{k} = {v}")))
        .collect();
    format!("{{ {} }}", parts.join(", "))
}
