//! The `lb.v1` gRPC API of the `lb` load balancer.
//!
//! The service is defined in `proto/lb/v1/lb.proto` (the reference for every
//! message, field and status code); this crate compiles it at build time and
//! exposes:
//!
//! * [`v1`]: the prost message types and enums, the client
//!   ([`v1::load_balancer_client::LoadBalancerClient`]) and the server
//!   ([`v1::load_balancer_server::LoadBalancerServer`] around an implementation
//!   of [`v1::load_balancer_server::LoadBalancer`]);
//! * [`FILE_DESCRIPTOR_SET`]: the encoded descriptor set, for server
//!   reflection so that `grpcurl` works without the `.proto` file.
//!
//! The build uses protox, a pure-Rust protobuf compiler: no `protoc` needed.
//!
//! # Health and reflection
//!
//! The daemon also serves `grpc.health.v1` and server reflection. The versions
//! that match this crate's tonic 0.14 are `tonic-health = "0.14.9"` and
//! `tonic-reflection = "0.14.9"` (both in the workspace dependencies; this
//! crate's tests build both services). Reflection setup:
//!
//! ```no_run
//! let reflection = tonic_reflection::server::Builder::configure()
//!     .register_encoded_file_descriptor_set(lb_proto::FILE_DESCRIPTOR_SET)
//!     .build_v1()?;
//! # Ok::<(), tonic_reflection::server::Error>(())
//! ```
//!
//! Serve `build_v1alpha()` as well: older grpcurl versions only speak
//! `grpc.reflection.v1alpha`.
//!
//! # Enums in messages
//!
//! prost stores enum fields as `i32`. Read them with the generated getters
//! (`vip.protocol()`, `info.flags()`), which map unknown numbers to the
//! `*_UNSPECIFIED` variant, or with `Protocol::try_from(i32)` to tell unknown
//! values apart (the server refuses those with `INVALID_ARGUMENT`).
//!
//! The domain types these messages carry (VIPs, weights and their limits,
//! MAC addresses) and the conversions to and from them live in `lb-api`.

#![warn(clippy::undocumented_unsafe_blocks)]

/// Messages, enums, client and server of package `lb.v1`.
pub mod v1 {
    #![allow(missing_docs)]
    tonic::include_proto!("lb.v1");
}

/// The encoded `google.protobuf.FileDescriptorSet` of `lb/v1/lb.proto`, with
/// source info (comments). Register it with `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/lb_v1_descriptor.bin"));

/// Fully qualified name of the announcement service (`lb.v1.Announcer`,
/// `proto/lb/v1/announce.proto`).
pub const ANNOUNCER_SERVICE_NAME: &str = v1::announcer_server::SERVICE_NAME;

/// Fully qualified name of the service (`lb.v1.LoadBalancer`), for health
/// status (`HealthReporter::set_service_status`) and logs.
pub const SERVICE_NAME: &str = v1::load_balancer_server::SERVICE_NAME;
