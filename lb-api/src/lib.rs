//! The vocabulary of the `lb.v1` API as the daemon and `lbctl` both speak it:
//! VIPs (`ADDR:PORT/PROTO`), their flags, backends and weights, MAC
//! addresses, and every conversion between these and the protobuf messages
//! of [`lb_proto`].
//!
//! One crate for both sides, so a VIP printed by `lbctl` parses in the
//! daemon, a weight limit cannot differ between the CLI's checks and the
//! server's, and the CLI does not link the daemon (nor aya) to get them.
//!
//! * [`vip`]: [`VipSpec`], [`Proto`], [`VipFlags`], and their data-plane map
//!   keys (through `lb-common`, without aya);
//! * [`MacAddr`]: a unicast Ethernet address, as the configuration, the
//!   state file and the API write it;
//! * [`BackendSpec`], [`BackendInfo`], [`VipInfo`]: what a request asks for
//!   and what the daemon reports;
//! * [`convert`]: proto messages <-> these types, refusing every malformed
//!   field with a [`convert::FieldError`] (INVALID_ARGUMENT);
//! * [`health`]: health checks ([`HealthCheck`]) and a backend's health
//!   ([`BackendHealth`]);
//! * [`address_problem`]: which addresses a VIP or backend cannot have;
//! * [`vipfile`]: the `[[vip]]` tables of a TOML file (the daemon's
//!   configuration, `lbctl export` and `lbctl apply`), with errors that name
//!   the line and the key.

#![warn(clippy::undocumented_unsafe_blocks)]

/// Serde through `Display` and `FromStr`: the state file and the
/// configuration write these values as operators type them, and reading one
/// applies the same checks as parsing it anywhere else.
macro_rules! serde_via_str {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

mod address;
pub mod convert;
pub mod health;
mod info;
mod mac;
pub mod vip;
pub mod vipfile;

pub use address::address_problem;

pub use health::{
    BackendHealth, CheckKind, CheckOverride, HealthCheck, HealthState, ProbeCounters, ProbeMode,
    Reason,
};
pub use info::{BackendInfo, BackendSpec, VipInfo};
/// The global counters of the data plane, by name: `GetStats` reports them
/// under these names, and `lbctl` lists them in this order.
pub use lb_common::Stat;
pub use mac::{MacAddr, MacAddrError};
pub use vip::{Proto, VipFlags, VipSpec};

/// Weight of a backend added without one (the API's unset `Backend.weight`,
/// `lbctl backend add` without `--weight`, a `[[vip]]` backend without
/// `weight`).
pub const DEFAULT_WEIGHT: u32 = 100;

/// Largest backend weight. Weights travel as `u32` in the API, but Maglev
/// shares stay meaningful with 16 bits, and a bound keeps one mistyped huge
/// weight from starving every other backend of ring positions.
pub const MAX_WEIGHT: u32 = 65_535;
