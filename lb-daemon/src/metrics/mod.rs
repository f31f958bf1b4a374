//! The Prometheus/OpenMetrics endpoint (`[metrics] listen`).
//!
//! One count, two views: every packet and byte counter is read from the
//! data plane's per-CPU maps, summed over CPUs, at each scrape, through the
//! same [`LbState`] methods `lbctl stats` uses (`series`); the daemon keeps
//! no second count of traffic. What only the daemon knows it counts itself,
//! in [`Metrics`]: the ring rebuilds the state reports (a
//! [`RingObserver`]), the API calls (`api_calls`, a tower layer on the
//! gRPC server), and the data plane's attach facts. `http` serves the text.

mod api_calls;
mod http;
mod series;

use std::time::Duration;

use prometheus_client::{
    encoding::text::{encode_eof, encode_registry},
    metrics::{
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
        info::Info,
    },
    registry::{Registry, Unit},
};
use thiserror::Error;

pub use api_calls::{ApiCalls, ApiCallsLayer};
pub use http::{CONTENT_TYPE, serve};
pub use series::{DROP_PREFIX, drop_reasons, global_series_name};

use crate::{
    dataplane::Dataplane,
    grpc::StatusInfo,
    state::{LbState, RingObserver, StateError},
    vip::VipSpec,
};

/// Why a scrape failed.
#[derive(Debug, Error)]
pub enum MetricsError {
    /// The counters could not be read from the maps.
    #[error("reading the counters: {0}")]
    State(#[from] StateError),
    /// The text could not be written (a bug in a label or a name).
    #[error("encoding the exposition: {0}")]
    Encode(#[from] std::fmt::Error),
}

/// The series the daemon owns (everything but the map counters, which
/// `series` reads at each scrape). Shared by the HTTP handler, the gRPC
/// layer and the state.
pub struct Metrics {
    registry: Registry,
    ring_rebuild: Histogram,
    api_calls: Family<api_calls::Labels, prometheus_client::metrics::counter::Counter>,
}

impl Metrics {
    /// The daemon's own series, with the data plane's facts from `info`.
    pub fn new(info: &StatusInfo) -> Self {
        let mut registry = Registry::default();
        // 50 µs .. 1.6 s: a small VIP's rebuild takes well under a
        // millisecond, a thousand backends a few (README, Performance).
        let ring_rebuild = Histogram::new(exponential_buckets(50e-6, 2.0, 16));
        registry.register_with_unit(
            "lb_ring_rebuild_duration",
            "Maglev ring rebuilds committed (build and publication of a VIP's table), by duration",
            Unit::Seconds,
            ring_rebuild.clone(),
        );
        let api_calls = Family::default();
        registry.register(
            "lb_grpc_server_handled",
            "gRPC API calls answered, by service, method and status code",
            api_calls.clone(),
        );
        let attach_mode = info.attached.map(|a| a.as_str()).unwrap_or("none");
        registry.register(
            "lb_dataplane",
            "The XDP program serving the VIPs: interface, attach mode, kernel program id, adopted from pins",
            Info::new(vec![
                ("interface", info.interface.clone()),
                ("attach_mode", attach_mode.to_string()),
                ("program_id", info.program_id.to_string()),
                ("adopted", info.adopted.to_string()),
            ]),
        );
        let capacity: Gauge = Gauge::default();
        capacity.set(i64::try_from(info.conn_table_capacity).unwrap_or(i64::MAX));
        registry.register(
            "lb_conn_table_capacity",
            "Connection-table capacity in flows, of each address family's table",
            capacity,
        );
        Self {
            registry,
            ring_rebuild,
            api_calls,
        }
    }

    /// The tower layer that counts API calls into this registry.
    pub fn api_layer(&self) -> ApiCallsLayer {
        ApiCallsLayer::new(self.api_calls.clone())
    }

    /// The whole exposition (OpenMetrics text): the map counters read from
    /// `st` now, then the daemon's own series.
    pub fn encode<D: Dataplane>(&self, st: &LbState<D>) -> Result<String, MetricsError> {
        let snapshot = series::Snapshot::read(st)?;
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(snapshot));
        let mut out = String::new();
        encode_registry(&mut out, &scrape)?;
        encode_registry(&mut out, &self.registry)?;
        encode_eof(&mut out)?;
        Ok(out)
    }
}

impl RingObserver for Metrics {
    fn ring_rebuilt(&self, vip: &VipSpec, took: Duration) {
        tracing::debug!(vip = %vip, micros = took.as_micros() as u64, "ring rebuilt");
        self.ring_rebuild.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests;
