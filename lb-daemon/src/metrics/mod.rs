//! The Prometheus endpoint (`[metrics] listen`).
//!
//! One count, two views: every packet and byte counter is read from the
//! data plane's per-CPU maps, summed over CPUs, at each scrape, through the
//! same [`LbState`] methods `lbctl stats` uses (`series`); the daemon keeps
//! no second count of traffic. What only the daemon knows it counts itself,
//! in [`Metrics`]: the ring rebuilds the state reports (a
//! [`RingObserver`]), the API calls (`api_calls`, a tower layer on the
//! gRPC server), and the data plane's attach facts. `http` serves the text
//! (the Prometheus text format 0.0.4, which Prometheus and promtool read).

mod api_calls;
mod http;
mod series;

use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
    exponential_buckets,
};
use thiserror::Error;

pub use api_calls::{ApiCalls, ApiCallsLayer};
pub use http::{CONTENT_TYPE, serve};
pub use series::{DROP_PREFIX, drop_reasons, global_series_name};

use crate::{
    dataplane::Dataplane,
    grpc::StatusInfo,
    health::ProbeStats,
    state::{LbState, RingObserver, StateError},
    vip::VipSpec,
};

/// Why a scrape failed.
#[derive(Debug, Error)]
pub enum MetricsError {
    /// The counters could not be read from the maps.
    #[error("reading the counters: {0}")]
    State(#[from] StateError),
    /// A series could not be built or encoded (a bug in a name or a label).
    #[error("encoding the exposition: {0}")]
    Encode(#[from] prometheus::Error),
}

/// The series the daemon owns (everything but the map counters, which
/// `series` reads at each scrape). Shared by the HTTP handler, the gRPC
/// layer and the state.
pub struct Metrics {
    registry: Registry,
    ring_rebuild: Histogram,
    api_calls: IntCounterVec,
    bgp_announced: IntGaugeVec,
    bgp_speaker_up: IntGaugeVec,
    probes: ProbeStats,
}

impl Metrics {
    /// The daemon's own series, with the data plane's facts from `info`.
    pub fn new(info: &StatusInfo) -> Self {
        Self::build(info).expect("the daemon's own series are well-formed (metrics::tests)")
    }

    fn build(info: &StatusInfo) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        // 50 µs .. 1.6 s: a small VIP's rebuild takes well under a
        // millisecond, a thousand backends a few (README, Performance).
        let ring_rebuild = Histogram::with_opts(
            HistogramOpts::new(
                "lb_ring_rebuild_duration_seconds",
                "Maglev ring rebuilds committed (build and publication of a VIP's table), by duration",
            )
            .buckets(exponential_buckets(50e-6, 2.0, 16)?),
        )?;
        registry.register(Box::new(ring_rebuild.clone()))?;
        let api_calls = IntCounterVec::new(
            Opts::new(
                "lb_grpc_server_handled_total",
                "gRPC API calls answered, by service, method and status code",
            ),
            &api_calls::LABELS,
        )?;
        registry.register(Box::new(api_calls.clone()))?;
        // An info metric the Prometheus way: a gauge `*_info` = 1 whose
        // labels are the facts (like `prometheus_build_info`).
        let dataplane = IntGaugeVec::new(
            Opts::new(
                "lb_dataplane_info",
                "The XDP program serving the VIPs (always 1): interface, attach mode, kernel program id, adopted from pins",
            ),
            &["interface", "attach_mode", "program_id", "adopted"],
        )?;
        let attach_mode = info.attached.map(|a| a.as_str()).unwrap_or("none");
        dataplane
            .with_label_values(&[
                info.interface.as_str(),
                attach_mode,
                &info.program_id.to_string(),
                &info.adopted.to_string(),
            ])
            .set(1);
        registry.register(Box::new(dataplane))?;
        let capacity = IntGauge::new(
            "lb_conn_table_capacity",
            "Connection-table capacity in flows, of each address family's table",
        )?;
        capacity.set(i64::try_from(info.conn_table_capacity).unwrap_or(i64::MAX));
        registry.register(Box::new(capacity))?;
        // Only with [bgp]: no series at all until the announcer reports.
        let bgp_announced = IntGaugeVec::new(
            Opts::new(
                "lb_bgp_announced",
                "1 while this node announces the VIP prefix over BGP, 0 while it is withdrawn (lbctl announce list says why)",
            ),
            &["prefix"],
        )?;
        registry.register(Box::new(bgp_announced.clone()))?;
        let bgp_speaker_up = IntGaugeVec::new(
            Opts::new(
                "lb_bgp_speaker_up",
                "1 when the BGP speaker took the last announcement change, 0 while it cannot be reached or refuses it",
            ),
            &["speaker"],
        )?;
        registry.register(Box::new(bgp_speaker_up.clone()))?;
        Ok(Self {
            registry,
            ring_rebuild,
            api_calls,
            bgp_announced,
            bgp_speaker_up,
            probes: ProbeStats::default(),
        })
    }

    /// Exports the health monitor's probe counters from `probes`.
    pub fn with_probe_stats(mut self, probes: ProbeStats) -> Self {
        self.probes = probes;
        self
    }

    /// The tower layer that counts API calls into this registry.
    pub fn api_layer(&self) -> ApiCallsLayer {
        ApiCallsLayer::new(self.api_calls.clone())
    }

    /// The whole exposition (Prometheus text format 0.0.4): the map
    /// counters read from `st` now, and the daemon's own series.
    pub fn encode<D: Dataplane>(&self, st: &LbState<D>) -> Result<String, MetricsError> {
        let scrape = series::Snapshot::read(st, &self.probes)?.registry()?;
        let mut families = scrape.gather();
        families.extend(self.registry.gather());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = String::new();
        TextEncoder::new().encode_utf8(&families, &mut out)?;
        Ok(out)
    }
}

impl crate::announce::AnnounceObserver for Metrics {
    fn announcements(&self, plan: &[crate::announce::Announcement], speaker_ok: bool) {
        // Reset first: a deleted VIP's prefix disappears from the series.
        self.bgp_announced.reset();
        for a in plan {
            self.bgp_announced
                .with_label_values(&[a.prefix().as_str()])
                .set(i64::from(a.announced));
        }
        self.bgp_speaker_up
            .with_label_values(&["bird"])
            .set(i64::from(speaker_ok));
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
