//! Rules for VIP and backend values that hold whatever the rest of the state
//! is. The daemon checks its configuration file with the same rules at
//! start-up (with line numbers, `daemon::settings`), so a file it accepts
//! never fails when it is applied.

use std::net::IpAddr;

use lb_api::{MAX_WEIGHT, MacAddr};

use super::StateError;
use crate::vip::VipSpec;

pub use lb_api::address_problem;

/// Checks a VIP's own values.
pub fn check_vip(spec: &VipSpec) -> Result<(), StateError> {
    match address_problem(spec.address) {
        Some(p) => Err(StateError::InvalidArgument(format!(
            "VIP {spec}: address {} {p}",
            spec.address
        ))),
        None => Ok(()),
    }
}

/// Checks a backend address for `vip` on its own.
pub fn check_backend_address(vip: &VipSpec, ip: IpAddr) -> Result<(), StateError> {
    if let Some(p) = address_problem(ip) {
        return Err(StateError::InvalidArgument(format!(
            "backend {ip} of VIP {vip}: address {p}"
        )));
    }
    if ip == vip.address {
        // The encapsulated packet would be addressed to the VIP itself and
        // come straight back to the balancer.
        return Err(StateError::InvalidArgument(format!(
            "backend {ip} of VIP {vip}: a backend cannot be the VIP's own address"
        )));
    }
    Ok(())
}

/// Checks a weight.
pub fn check_weight(vip: &VipSpec, ip: IpAddr, weight: u32) -> Result<(), StateError> {
    if weight > MAX_WEIGHT {
        return Err(StateError::InvalidArgument(format!(
            "backend {ip} of VIP {vip}: weight {weight} out of range 0..={MAX_WEIGHT}"
        )));
    }
    Ok(())
}

/// Checks a gateway MAC (a value built from octets may be one parsing
/// would have refused).
pub fn check_gateway(mac: MacAddr) -> Result<MacAddr, StateError> {
    mac.check_unicast()
        .map_err(|e| StateError::InvalidArgument(format!("gateway: {e}")))
}
