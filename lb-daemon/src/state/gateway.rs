//! The gateway MAC (next hop of encapsulated packets) as part of the state:
//! an operator who sets it over the API means it to outlive restarts, so it
//! is persisted with the rest of the state and takes the place of the
//! configured `gateway_mac` whenever the node settings are written.

use lb_api::MacAddr;
use lb_common::LbConfig;

use super::{StateError, apply::Tx};
use crate::dataplane::Dataplane;

/// The node settings with the state's gateway, if it holds one, in place of
/// the configured one.
pub(crate) fn with_gateway(mut cfg: LbConfig, gateway: Option<MacAddr>) -> LbConfig {
    if let Some(mac) = gateway {
        cfg.gateway_mac = mac.octets();
    }
    cfg
}

/// Makes `LB_CONFIG`'s gateway the state's, if the state holds one and the
/// map differs; returns whether it wrote.
pub(crate) fn sync<D: Dataplane>(
    tx: &mut Tx<'_, D>,
    gateway: Option<MacAddr>,
) -> Result<bool, StateError> {
    let cur = read(tx.dp)?;
    let want = with_gateway(cur, gateway);
    if want == cur {
        return Ok(false);
    }
    tx.set_config(&want)
        .map_err(|e| StateError::dataplane("writing the gateway MAC", &e))?;
    Ok(true)
}

/// The node settings the data plane holds.
pub(crate) fn read<D: Dataplane>(dp: &D) -> Result<LbConfig, StateError> {
    dp.config()
        .map_err(|e| StateError::dataplane("reading the node settings", &e))
}
