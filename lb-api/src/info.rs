//! Backends and VIPs as requests name them and as the daemon reports them.

use std::net::IpAddr;

use crate::{BackendHealth, DEFAULT_WEIGHT, HealthCheck, VipFlags, VipSpec};

/// A backend as a request names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    /// Backend address.
    pub address: IpAddr,
    /// Relative weight, 0..=[`crate::MAX_WEIGHT`]; 0 drains.
    pub weight: u32,
}

impl BackendSpec {
    /// A backend with the default weight ([`DEFAULT_WEIGHT`]).
    pub fn new(address: IpAddr) -> Self {
        Self {
            address,
            weight: DEFAULT_WEIGHT,
        }
    }

    /// A backend with an explicit weight.
    pub fn weighted(address: IpAddr, weight: u32) -> Self {
        Self { address, weight }
    }
}

/// A backend as the daemon holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// Backend address.
    pub address: IpAddr,
    /// Relative weight; 0 = drained (out of the ring, existing flows kept).
    pub weight: u32,
    /// Backend slot in the data plane (per VIP/backend pair).
    pub slot: u32,
    /// Its health (up unless the VIP's check took it down).
    pub health: BackendHealth,
}

/// A VIP as the daemon holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipInfo {
    /// The VIP.
    pub spec: VipSpec,
    /// Its flags.
    pub flags: VipFlags,
    /// Index of its ring pair and counters in the data plane.
    pub index: u32,
    /// Its backends, by address.
    pub backends: Vec<BackendInfo>,
    /// Its health check (`None`: none, every backend counts as up).
    pub health: Option<HealthCheck>,
    /// Whether every backend with a weight is down, so the VIP serves with
    /// all of them rather than with none (fail open).
    pub fail_open: bool,
}
