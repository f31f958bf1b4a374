//! `lb` control plane: configuration, the Maglev ring builder, the kernel data
//! plane handle, the desired state and how it reaches the maps, and (in later
//! modules) the gRPC API.

pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod grpc;
pub mod maglev;
pub mod state;
pub mod vip;
