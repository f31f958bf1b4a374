//! `Route` with `explain`: the state layer's [`Explanation`] of one packet
//! as the `RouteExplanation` message (and the classic `RouteResponse` fields
//! filled from it, so old clients reading only those still get where the
//! packet goes).

use lb_api::{VipFlags, convert};
use lb_proto::v1 as pb;

use crate::state::{ConnLookup, Explanation, Verdict};

fn conn_lookup_out(c: ConnLookup) -> pb::ConnLookup {
    match c {
        ConnLookup::SkippedSyn => pb::ConnLookup::SkippedSyn,
        ConnLookup::SkippedNoConntrack => pb::ConnLookup::SkippedNoConntrack,
        ConnLookup::Miss => pb::ConnLookup::Miss,
        ConnLookup::Hit => pb::ConnLookup::Hit,
        ConnLookup::Stale => pb::ConnLookup::Stale,
    }
}

fn addr_or_empty(a: Option<std::net::IpAddr>) -> String {
    a.map(|a| a.to_string()).unwrap_or_default()
}

/// The message for an explanation.
pub(super) fn explanation_out(e: &Explanation) -> pb::RouteExplanation {
    // Only the operator's flags: the daemon's own (`VIP_F_DRAIN_FALLBACK`)
    // are not VIP flags of the API.
    let flags = VipFlags::from_bits(e.flags & lb_common::VIP_F_ALL).unwrap_or_default();
    let (verdict, backend_address, backend_slot) = match e.verdict {
        Verdict::Forward { backend, slot } => {
            (pb::RouteVerdict::Forward, backend.to_string(), slot)
        }
        Verdict::DropNoBackend => (pb::RouteVerdict::DropNoBackend, String::new(), 0),
    };
    pb::RouteExplanation {
        matched_vip: Some(convert::vip_out(&e.vip)),
        all_ports: e.all_ports,
        flags: convert::flags_out(&flags),
        vip_index: e.vip_index,
        ring_half: e.ring_half,
        conn_key_source_port: u32::from(e.conn_key_sport),
        conn_lookup: conn_lookup_out(e.conn).into(),
        conn_entry: e.conn_entry.map(|c| pb::ConnEntryInfo {
            slot: c.slot,
            generation: c.generation,
            slot_valid: c.slot_valid,
            slot_generation: c.slot_generation,
            slot_address: addr_or_empty(c.slot_backend),
        }),
        ring: e.ring.map(|r| pb::RingStep {
            flow_hash: r.hash,
            hashed_source_port: u32::from(r.hash_sport),
            ring_size: r.ring_size,
            ring_position: r.position,
            slot: r.slot,
            address: addr_or_empty(r.backend),
            generation: r.generation,
        }),
        drain_fallback: e.drain_fallback.map(|d| pb::DrainFallback {
            slot: d.slot,
            address: d.backend.to_string(),
            generation: d.generation,
        }),
        verdict: verdict.into(),
        backend_address,
        backend_slot,
        encapsulation: e.encap.map(|x| pb::Encapsulation {
            outer_source: x.source.to_string(),
            outer_destination: x.destination.to_string(),
            inner_protocol: u32::from(x.inner_protocol),
            overhead: x.overhead,
            max_packet_length: x.max_packet_length,
        }),
    }
}
