//! Where an API call lands: the `lb.v1.LoadBalancer` gRPC service.
//! `lb_api::convert` turns proto messages into domain types (every malformed
//! field is an INVALID_ARGUMENT before anything is looked up), `status` maps
//! state errors to their precise gRPC codes, `service` runs each call against
//! the state under one lock, `stats` builds counter snapshots, `serve` puts
//! it all on a Unix socket or a TLS listener with health and reflection.

mod announce;
mod capture;
mod explain;
mod serve;
mod service;
mod stats;
mod status;

pub use announce::AnnounceService;
pub use serve::{Listener, ServeError, serve, serve_counted};
pub use service::{LbService, StatusInfo};
pub use status::to_status;
