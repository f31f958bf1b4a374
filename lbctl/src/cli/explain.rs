//! `lbctl route VIP CLIENT --explain [--syn] [--json]`: the daemon's
//! step-by-step explanation of one packet of a flow, as text or JSON.
//!
//! JSON shape (stable within v1; absent steps are `null`):
//!
//! ```text
//! {"vip":"198.18.100.10:80/tcp","client":"198.18.1.7:40000","destination_port":80,"syn":false,
//!  "matched":{"vip":"198.18.100.10:80/tcp","all_ports":false,"flags":["no-sport"],"index":0,"ring_half":1},
//!  "conn_table":{"lookup":"hit"|"miss"|"stale"|"skipped-syn"|"skipped-no-conntrack","key_source_port":N,
//!                "entry":null|{"slot":N,"generation":N,"slot_valid":B,"slot_generation":N,"slot_address":"…"|null}},
//!  "ring":null|{"flow_hash":N,"hashed_source_port":N,"ring_size":N,"position":N,"slot":N,"backend":"…"|null,"generation":N},
//!  "drain_fallback":null|{"slot":N,"backend":"…","generation":N},
//!  "verdict":"forward"|"drop-no-backend","backend":"…"|null,"slot":N|null,
//!  "encapsulation":null|{"outer_source":"…","outer_destination":"…","outer":"ipv4"|"ipv6","inner_protocol":4|41,
//!                        "overhead":N,"max_packet_length":N}}
//! ```

use std::{fmt::Write as _, net::SocketAddr};

use lb_api::VipSpec;
use lb_proto::v1::{self as pb, ConnLookup, RouteExplanation, RouteVerdict, VipFlag};
use serde::Serialize;

/// What was asked, for the heading.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// The VIP asked about.
    pub vip: &'a VipSpec,
    /// Client address and source port.
    pub client: SocketAddr,
    /// The flow's destination port.
    pub destination_port: u16,
    /// Explained as a TCP SYN.
    pub syn: bool,
}

fn lookup_name(v: i32) -> &'static str {
    match ConnLookup::try_from(v) {
        Ok(ConnLookup::Hit) => "hit",
        Ok(ConnLookup::Miss) => "miss",
        Ok(ConnLookup::Stale) => "stale",
        Ok(ConnLookup::SkippedSyn) => "skipped-syn",
        Ok(ConnLookup::SkippedNoConntrack) => "skipped-no-conntrack",
        _ => "unknown",
    }
}

fn verdict_name(v: i32) -> &'static str {
    match RouteVerdict::try_from(v) {
        Ok(RouteVerdict::Forward) => "forward",
        Ok(RouteVerdict::DropNoBackend) => "drop-no-backend",
        _ => "unknown",
    }
}

fn flag_names(flags: &[i32]) -> Vec<&'static str> {
    flags
        .iter()
        .map(|f| match VipFlag::try_from(*f) {
            Ok(VipFlag::NoSport) => "no-sport",
            Ok(VipFlag::NoConntrack) => "no-conntrack",
            _ => "unknown",
        })
        .collect()
}

fn vip_name(v: Option<&pb::Vip>) -> String {
    v.and_then(|v| lb_api::convert::vip(Some(v)).ok())
        .map(|s| s.to_string())
        .unwrap_or_else(|| "?".into())
}

fn opt(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[derive(Serialize)]
struct Json<'a> {
    vip: String,
    client: String,
    destination_port: u16,
    syn: bool,
    matched: Matched,
    conn_table: ConnJson<'a>,
    ring: Option<RingJson<'a>>,
    drain_fallback: Option<DrainJson<'a>>,
    verdict: &'static str,
    backend: Option<&'a str>,
    slot: Option<u32>,
    encapsulation: Option<EncapJson<'a>>,
}

#[derive(Serialize)]
struct Matched {
    vip: String,
    all_ports: bool,
    flags: Vec<&'static str>,
    index: u32,
    ring_half: u32,
}

#[derive(Serialize)]
struct ConnJson<'a> {
    lookup: &'static str,
    key_source_port: u32,
    entry: Option<EntryJson<'a>>,
}

#[derive(Serialize)]
struct EntryJson<'a> {
    slot: u32,
    generation: u32,
    slot_valid: bool,
    slot_generation: u32,
    slot_address: Option<&'a str>,
}

#[derive(Serialize)]
struct RingJson<'a> {
    flow_hash: u32,
    hashed_source_port: u32,
    ring_size: u32,
    position: u32,
    slot: u32,
    backend: Option<&'a str>,
    generation: u32,
}

#[derive(Serialize)]
struct DrainJson<'a> {
    slot: u32,
    backend: &'a str,
    generation: u32,
}

#[derive(Serialize)]
struct EncapJson<'a> {
    outer_source: &'a str,
    outer_destination: &'a str,
    outer: &'static str,
    inner_protocol: u32,
    overhead: u32,
    max_packet_length: u32,
}

fn outer_family(e: &pb::Encapsulation) -> &'static str {
    if e.outer_destination.contains(':') {
        "ipv6"
    } else {
        "ipv4"
    }
}

/// `route --explain --json`.
pub fn json(q: &Query<'_>, e: &RouteExplanation) -> String {
    let forward = e.verdict == RouteVerdict::Forward as i32;
    let out = Json {
        vip: q.vip.to_string(),
        client: q.client.to_string(),
        destination_port: q.destination_port,
        syn: q.syn,
        matched: Matched {
            vip: vip_name(e.matched_vip.as_ref()),
            all_ports: e.all_ports,
            flags: flag_names(&e.flags),
            index: e.vip_index,
            ring_half: e.ring_half,
        },
        conn_table: ConnJson {
            lookup: lookup_name(e.conn_lookup),
            key_source_port: e.conn_key_source_port,
            entry: e.conn_entry.as_ref().map(|c| EntryJson {
                slot: c.slot,
                generation: c.generation,
                slot_valid: c.slot_valid,
                slot_generation: c.slot_generation,
                slot_address: opt(&c.slot_address),
            }),
        },
        ring: e.ring.as_ref().map(|r| RingJson {
            flow_hash: r.flow_hash,
            hashed_source_port: r.hashed_source_port,
            ring_size: r.ring_size,
            position: r.ring_position,
            slot: r.slot,
            backend: opt(&r.address),
            generation: r.generation,
        }),
        drain_fallback: e.drain_fallback.as_ref().map(|d| DrainJson {
            slot: d.slot,
            backend: &d.address,
            generation: d.generation,
        }),
        verdict: verdict_name(e.verdict),
        backend: forward.then_some(e.backend_address.as_str()),
        slot: forward.then_some(e.backend_slot),
        encapsulation: e.encapsulation.as_ref().map(|x| EncapJson {
            outer_source: &x.outer_source,
            outer_destination: &x.outer_destination,
            outer: outer_family(x),
            inner_protocol: x.inner_protocol,
            overhead: x.overhead,
            max_packet_length: x.max_packet_length,
        }),
    };
    serde_json::to_string(&out).expect("lbctl output always serializes")
}

/// `route --explain`: one numbered line (or two) per step.
pub fn text(q: &Query<'_>, e: &RouteExplanation) -> String {
    let mut s = String::new();
    let dst = VipSpec::new(q.vip.address, q.destination_port, q.vip.proto);
    let _ = writeln!(
        s,
        "packet {} -> {dst}{}",
        q.client,
        if q.syn { " (TCP SYN)" } else { "" }
    );
    let flags = flag_names(&e.flags);
    let _ = writeln!(
        s,
        "1. VIP      {} ({} entry), flags {}, index {}, live ring half {}",
        vip_name(e.matched_vip.as_ref()),
        if e.all_ports { "all-ports" } else { "exact" },
        if flags.is_empty() {
            "none".to_string()
        } else {
            flags.join(",")
        },
        e.vip_index,
        e.ring_half
    );
    let lookup = lookup_name(e.conn_lookup);
    let _ = match (&e.conn_entry, lookup) {
        (_, "skipped-syn") => writeln!(
            s,
            "2. conntab  not consulted: a TCP SYN always takes the ring"
        ),
        (_, "skipped-no-conntrack") => {
            writeln!(s, "2. conntab  not consulted: the VIP has no-conntrack")
        }
        (None, _) => writeln!(
            s,
            "2. conntab  {lookup}: no entry for the flow (key source port {})",
            e.conn_key_source_port
        ),
        (Some(c), _) => writeln!(
            s,
            "2. conntab  {lookup}: entry slot {} generation {}; slot now {} generation {}{}",
            c.slot,
            c.generation,
            if c.slot_valid { "valid" } else { "free" },
            c.slot_generation,
            opt(&c.slot_address)
                .map(|a| format!(" ({a})"))
                .unwrap_or_default()
        ),
    };
    match &e.ring {
        Some(r) => {
            let _ = writeln!(
                s,
                "3. ring     hash {:#010x} (source port {}) % {} = position {} -> slot {} {}",
                r.flow_hash,
                r.hashed_source_port,
                r.ring_size,
                r.ring_position,
                r.slot,
                opt(&r.address)
                    .map(|a| format!("({a}, generation {})", r.generation))
                    .unwrap_or_else(|| "(no backend)".into())
            );
        }
        None => {
            let _ = writeln!(
                s,
                "3. ring     not consulted: the connection table answered"
            );
        }
    }
    if let Some(d) = &e.drain_fallback {
        let _ = writeln!(
            s,
            "3b. drain   pre-drain table names slot {} ({}, generation {}), still draining: \
             the flow goes back to it",
            d.slot, d.address, d.generation
        );
    }
    match &e.encapsulation {
        Some(x) => {
            let _ = writeln!(
                s,
                "4. encap    {} outer {} -> {}, protocol {} (+{} bytes; packets up to {} bytes fit the MTU)",
                if outer_family(x) == "ipv6" {
                    "IPv6"
                } else {
                    "IPv4"
                },
                x.outer_source,
                x.outer_destination,
                x.inner_protocol,
                x.overhead,
                x.max_packet_length
            );
        }
        None => {
            let _ = writeln!(s, "4. encap    none");
        }
    }
    let _ = if e.verdict == RouteVerdict::Forward as i32 {
        write!(
            s,
            "verdict     XDP_TX to {} (slot {})",
            e.backend_address, e.backend_slot
        )
    } else {
        write!(
            s,
            "verdict     XDP_DROP (drop_no_backend: the ring names no backend)"
        )
    };
    s
}
