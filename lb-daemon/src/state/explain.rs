//! `lbctl route --explain`: the fate of one packet of a flow, step by step
//! as `lb_xdp` takes it (`lb-ebpf/src/bin/lb-xdp/flow.rs`, `encap.rs`), read
//! from the live maps, connection table included. [`super::route`] answers
//! the simpler question of where a *new* flow goes.

use std::net::{IpAddr, SocketAddr};

use lb_common::{
    BACKEND_F_DRAINING, BACKEND_F_VALID, FlowKey, FlowKey4, SLOT_NONE, VIP_F_DRAIN_FALLBACK,
    VIP_F_NO_CONNTRACK, VIP_F_NO_SPORT, addr, flow_hash,
};

use super::{StateError, model::Model};
use crate::{
    dataplane::Dataplane,
    vip::{VipSpec, map_addr, unmap_addr},
};

/// What the connection-table step did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnLookup {
    /// Not asked: a TCP SYN always takes the ring.
    SkippedSyn,
    /// Not asked: the VIP has `no-conntrack`.
    SkippedNoConntrack,
    /// No entry for the flow (or one naming no slot).
    Miss,
    /// An entry whose slot is valid and has the entry's generation: followed.
    Hit,
    /// An entry whose slot was freed or re-allocated since: the flow is
    /// re-hashed through the ring (and the entry replaced).
    Stale,
}

/// A connection-table entry as read from the live map, with the slot it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnView {
    /// The pinned slot.
    pub slot: u32,
    /// The generation the entry was made with.
    pub generation: u32,
    /// Whether the slot is allocated now.
    pub slot_valid: bool,
    /// The slot's generation now.
    pub slot_generation: u32,
    /// The slot's backend now, if valid.
    pub slot_backend: Option<IpAddr>,
}

/// The ring step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingStep {
    /// The flow hash.
    pub hash: u32,
    /// The source port that went into the hash (host order; 0 with `no-sport`).
    pub hash_sport: u16,
    /// Ring size M.
    pub ring_size: u32,
    /// `hash % M`.
    pub position: u32,
    /// The slot at that position of the live half (`SLOT_NONE`: empty).
    pub slot: u32,
    /// The slot's backend, if the slot is valid.
    pub backend: Option<IpAddr>,
    /// The slot's generation (what a new conn-table entry records).
    pub generation: u32,
}

/// The backend the pre-drain fallback chose (see `Explanation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainFallback {
    /// The draining backend's slot, as the standby half names it.
    pub slot: u32,
    /// Its address.
    pub backend: IpAddr,
    /// Its generation (what the re-created entry records).
    pub generation: u32,
}

/// The outer header the packet would get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encap {
    /// Outer source (crafted per flow from the configured prefix, or fixed).
    pub source: IpAddr,
    /// Outer destination: the backend.
    pub destination: IpAddr,
    /// Protocol / next header of the outer header: 4 (IPv4 inside) or 41
    /// (IPv6 inside).
    pub inner_protocol: u8,
    /// Bytes the outer header adds (20 or 40).
    pub overhead: u32,
    /// The largest client packet (IP length) that fits the configured MTU
    /// once encapsulated; larger ones get ICMP "too big" or are dropped.
    pub max_packet_length: u32,
}

/// What the data plane does with the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Encapsulated towards `backend` (slot `slot`) and sent with XDP_TX.
    Forward {
        /// The backend.
        backend: IpAddr,
        /// Its slot.
        slot: u32,
    },
    /// Dropped as `drop_no_backend`: the ring position names no valid slot.
    DropNoBackend,
}

/// Every step `lb_xdp` takes for one packet of a flow, predicted from the
/// live maps (VIP table, connection table, ring, backend slots, settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The VIP entry that matched.
    pub vip: VipSpec,
    /// Whether it was the all-ports (port 0) entry.
    pub all_ports: bool,
    /// The entry's `VIP_F_*` flags.
    pub flags: u32,
    /// The entry's index.
    pub vip_index: u32,
    /// The live ring half.
    pub ring_half: u32,
    /// The source port of the connection-table key (host order; 0 with
    /// `no-sport`).
    pub conn_key_sport: u16,
    /// What the connection table said.
    pub conn: ConnLookup,
    /// The entry found, for `Hit` and `Stale`.
    pub conn_entry: Option<ConnView>,
    /// The ring step, unless the connection table answered.
    pub ring: Option<RingStep>,
    /// The pre-drain fallback, when it took the packet: a TCP packet that
    /// is not a SYN, missed the connection table, and whose position in
    /// the VIP's pre-drain table (the standby ring half) names a backend
    /// that is still draining. The verdict then forwards there.
    pub drain_fallback: Option<DrainFallback>,
    /// The outcome.
    pub verdict: Verdict,
    /// The outer header, when forwarded.
    pub encap: Option<Encap>,
}

/// The packet of a flow `explain` predicts for.
#[derive(Clone, Copy, Debug)]
pub struct FlowPacket {
    /// Its destination: a VIP, or any port of an all-ports VIP.
    pub dst: VipSpec,
    /// The client's address and source port.
    pub client: SocketAddr,
    /// Whether it is a TCP SYN.
    pub syn: bool,
}

fn slot_view<D: Dataplane>(dp: &D, slot: u32) -> Result<Option<lb_common::Backend>, StateError> {
    if slot == SLOT_NONE || slot >= dp.sizes().max_backends {
        // Outside the map: the kernel's lookup fails, which it treats as
        // stale (conn table) or no backend (ring).
        return Ok(None);
    }
    dp.backend(slot)
        .map(Some)
        .map_err(|e| StateError::dataplane(&format!("reading backend slot {slot}"), &e))
}

/// Explains the fate of one packet of a flow, step by step as `lb_xdp`
/// takes it (`lb-ebpf/src/bin/lb-xdp/flow.rs`, `encap.rs`): VIP lookup
/// (exact, then all-port), connection table (unless SYN or no-conntrack;
/// followed only if the slot is valid with the entry's generation), ring,
/// encapsulation. Reads the live maps; changes nothing.
pub(crate) fn explain<D: Dataplane>(
    dp: &D,
    model: &Model,
    pkt: &FlowPacket,
) -> Result<Explanation, StateError> {
    let dst = &pkt.dst;
    let client = pkt.client;
    let (vip, meta) = super::route::serving_vip(dp, model, dst, client)?;
    let cfg = dp
        .config()
        .map_err(|e| StateError::dataplane("reading the data-plane settings", &e))?;
    let (src, family) = map_addr(client.ip());
    let (dst_addr, _) = map_addr(dst.address);
    let no_sport = meta.flags & VIP_F_NO_SPORT != 0;
    let key_sport = if no_sport { 0 } else { client.port() };
    let proto = dst.proto.number();
    let dport = addr::port_to_map(dst.port);

    let use_conn = meta.flags & VIP_F_NO_CONNTRACK == 0;
    let is_tcp_syn = pkt.syn && dst.proto.number() == lb_common::PROTO_TCP;
    let (conn, conn_entry) = if !use_conn {
        (ConnLookup::SkippedNoConntrack, None)
    } else if is_tcp_syn {
        (ConnLookup::SkippedSyn, None)
    } else {
        let sport = addr::port_to_map(key_sport);
        let found = if family == lb_common::FAMILY_V4 {
            dp.conn_entry4(&FlowKey4::new(src[0], dst_addr[0], sport, dport, proto))
        } else {
            dp.conn_entry6(&FlowKey::new(src, dst_addr, sport, dport, proto))
        }
        .map_err(|e| StateError::dataplane("reading the connection table", &e))?;
        match found {
            None => (ConnLookup::Miss, None),
            Some(e) if e.slot == SLOT_NONE => (ConnLookup::Miss, None),
            Some(e) => {
                let b = slot_view(dp, e.slot)?;
                let slot_valid = b.is_some_and(|b| b.flags & BACKEND_F_VALID != 0);
                let slot_generation = b.map_or(0, |b| b.generation);
                let view = ConnView {
                    slot: e.slot,
                    generation: e.generation,
                    slot_valid,
                    slot_generation,
                    slot_backend: b
                        .filter(|_| slot_valid)
                        .and_then(|b| unmap_addr(b.addr, b.family)),
                };
                let hit = slot_valid && slot_generation == e.generation;
                (
                    if hit {
                        ConnLookup::Hit
                    } else {
                        ConnLookup::Stale
                    },
                    Some(view),
                )
            }
        }
    };

    let mut drain_fallback = None;
    let (ring, verdict) = match (conn, conn_entry) {
        (ConnLookup::Hit, Some(v)) => (
            None,
            match v.slot_backend {
                Some(backend) => Verdict::Forward {
                    backend,
                    slot: v.slot,
                },
                None => Verdict::DropNoBackend,
            },
        ),
        _ => {
            let hash = flow_hash(
                cfg.hash_seed,
                &src,
                &dst_addr,
                addr::port_to_map(key_sport),
                dport,
                proto,
            );
            let m = dp.sizes().ring_size;
            let position = hash % m;
            let half = meta.ring_half & 1;
            let slot = dp.ring_slot(meta.index, half, position);
            let b = slot_view(dp, slot)?.filter(|b| b.flags & BACKEND_F_VALID != 0);
            let backend = b.and_then(|b| unmap_addr(b.addr, b.family));
            let step = RingStep {
                hash,
                hash_sport: key_sport,
                ring_size: m,
                position,
                slot,
                backend,
                generation: b.map_or(0, |b| b.generation),
            };
            // `flow.rs`: TCP, not a SYN, conn table in use, the VIP flagged;
            // the standby half's slot valid, draining and of this VIP.
            let tcp = proto == lb_common::PROTO_TCP;
            if use_conn && tcp && !is_tcp_syn && meta.flags & VIP_F_DRAIN_FALLBACK != 0 {
                let standby = dp.ring_slot(meta.index, half ^ 1, position);
                const LIVE_DRAIN: u8 = BACKEND_F_VALID | BACKEND_F_DRAINING;
                drain_fallback = slot_view(dp, standby)?
                    .filter(|b| b.flags & LIVE_DRAIN == LIVE_DRAIN && b.vip == meta.index)
                    .and_then(|b| {
                        Some(DrainFallback {
                            slot: standby,
                            backend: unmap_addr(b.addr, b.family)?,
                            generation: b.generation,
                        })
                    });
            }
            let verdict = match (drain_fallback, backend) {
                (Some(d), _) => Verdict::Forward {
                    backend: d.backend,
                    slot: d.slot,
                },
                (None, Some(backend)) => Verdict::Forward { backend, slot },
                (None, None) => Verdict::DropNoBackend,
            };
            (Some(step), verdict)
        }
    };

    let encap = match verdict {
        Verdict::Forward { backend, .. } => Some(encap_for(&cfg, &src, client, backend)),
        Verdict::DropNoBackend => None,
    };
    Ok(Explanation {
        vip,
        all_ports: vip.port == 0,
        flags: meta.flags,
        vip_index: meta.index,
        ring_half: meta.ring_half & 1,
        conn_key_sport: key_sport,
        conn,
        conn_entry,
        ring,
        drain_fallback,
        verdict,
        encap,
    })
}

/// The outer header `lb-ebpf`'s `encap::encapsulate` writes: the source is
/// the configured prefix with the per-flow suffix (the client's real source
/// port, even for `no-sport` VIPs) in the bits the mask leaves free.
fn encap_for(
    cfg: &lb_common::LbConfig,
    src: &[u32; 4],
    client: SocketAddr,
    backend: IpAddr,
) -> Encap {
    let suffix = lb_common::encap_src_suffix(src, addr::port_to_map(client.port())).to_be();
    let inner_protocol = if client.is_ipv4() {
        lb_common::PROTO_IPIP
    } else {
        lb_common::PROTO_IPV6
    };
    let (source, overhead) = match backend {
        IpAddr::V4(_) => {
            let w = (cfg.v4_src & cfg.v4_src_mask) | (suffix & !cfg.v4_src_mask);
            (
                unmap_addr([w, 0, 0, 0], lb_common::FAMILY_V4).expect("an IPv4 address"),
                lb_common::ENCAP_V4_OVERHEAD,
            )
        }
        IpAddr::V6(_) => {
            let w3 = (cfg.v6_src[3] & cfg.v6_src_mask) | (suffix & !cfg.v6_src_mask);
            let a = [cfg.v6_src[0], cfg.v6_src[1], cfg.v6_src[2], w3];
            (
                unmap_addr(a, lb_common::FAMILY_V6).expect("an IPv6 address"),
                lb_common::ENCAP_V6_OVERHEAD,
            )
        }
    };
    Encap {
        source,
        destination: backend,
        inner_protocol,
        overhead,
        max_packet_length: cfg.mtu.saturating_sub(overhead),
    }
}
