//! `lb` control plane: configuration, the Maglev ring builder, the kernel data
//! plane handle, the desired state and how it reaches the maps, the gRPC
//! API and the metrics endpoint. The CLI (`lbctl`) is a separate crate that speaks to it over that API.

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod announce;
pub mod capture;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod grpc;
pub mod health;
pub mod maglev;
pub mod metrics;
pub mod netif;
pub mod state;

/// The VIP vocabulary of the API (`lb-api`), re-exported because the state
/// and data-plane calls of this crate take and return it.
pub use lb_api::vip;
