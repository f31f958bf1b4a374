//! Route prediction: which backend the data plane picks for a *new* flow,
//! computed exactly as `lb_xdp` does (same VIP lookup order, same hash and
//! seed, the ring half that is live now). Flows already in the connection
//! table stay where they were pinned.

use std::net::{IpAddr, SocketAddr};

use lb_common::{BACKEND_F_VALID, SLOT_NONE, VIP_F_NO_SPORT, addr, flow_hash};

use super::{StateError, model::Model};
use crate::{
    dataplane::Dataplane,
    vip::{VipSpec, map_addr, unmap_addr},
};

/// Where a new flow goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The VIP that serves the flow: the one asked for, or the all-ports VIP
    /// of the address when there is no VIP for that exact port.
    pub vip: VipSpec,
    /// The flow hash.
    pub hash: u32,
    /// Ring position (`hash % ring_size`).
    pub position: u32,
    /// Ring half that was live.
    pub ring_half: u32,
    /// Backend slot at that position (`SLOT_NONE`: empty ring).
    pub slot: u32,
    /// The backend, `None` when the data plane would drop the packet (empty
    /// ring or invalid slot).
    pub backend: Option<IpAddr>,
    /// The slot's generation.
    pub generation: u32,
}

/// The VIP a packet from `client` to `dst` meets, as the data plane looks
/// it up (exact port first, then the all-ports VIP of the address), with
/// its live entry. Shared by `route` and `explain` so the two cannot differ.
pub(crate) fn serving_vip<D: Dataplane>(
    dp: &D,
    model: &Model,
    dst: &VipSpec,
    client: SocketAddr,
) -> Result<(VipSpec, lb_common::VipMeta), StateError> {
    if client.is_ipv4() != dst.address.is_ipv4() {
        return Err(StateError::InvalidArgument(format!(
            "client {client} and VIP {dst} are of different address families"
        )));
    }
    let all_ports = VipSpec { port: 0, ..*dst };
    let vip = [*dst, all_ports]
        .into_iter()
        .find(|s| model.vips.contains_key(s))
        .ok_or_else(|| StateError::NotFound(format!("no VIP serves {dst}")))?;
    let meta = dp
        .vip(&vip.key())
        .ok_or_else(|| StateError::Internal(format!("VIP {vip} is missing from the data plane")))?;
    Ok((vip, meta))
}

pub(crate) fn route<D: Dataplane>(
    dp: &D,
    model: &Model,
    dst: &VipSpec,
    client: SocketAddr,
) -> Result<Route, StateError> {
    let (vip, meta) = serving_vip(dp, model, dst, client)?;
    let seed = dp
        .config()
        .map_err(|e| StateError::dataplane("reading the data-plane settings", &e))?
        .hash_seed;
    let (src, _) = map_addr(client.ip());
    let (dst_addr, _) = map_addr(dst.address);
    let sport = if meta.flags & VIP_F_NO_SPORT != 0 {
        0
    } else {
        addr::port_to_map(client.port())
    };
    let hash = flow_hash(
        seed,
        &src,
        &dst_addr,
        sport,
        addr::port_to_map(dst.port),
        dst.proto.number(),
    );
    let m = dp.sizes().ring_size;
    let position = hash % m;
    let half = meta.ring_half & 1;
    let slot = dp.ring_slot(meta.index, half, position);
    let (backend, generation) = if slot == SLOT_NONE {
        (None, 0)
    } else {
        let b = dp
            .backend(slot)
            .map_err(|e| StateError::dataplane(&format!("reading backend slot {slot}"), &e))?;
        let valid = b.flags & BACKEND_F_VALID != 0;
        (
            valid.then(|| unmap_addr(b.addr, b.family)).flatten(),
            b.generation,
        )
    };
    Ok(Route {
        vip,
        hash,
        position,
        ring_half: half,
        slot,
        backend,
        generation,
    })
}
