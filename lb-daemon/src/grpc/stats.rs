//! Counter snapshots for GetStats/WatchStats, with rates between two samples.

use std::{collections::HashMap, time::SystemTime};

use lb_api::convert::vip_out;
use lb_common::Stat;
use lb_proto::v1 as pb;

use crate::{
    dataplane::Dataplane,
    state::{LbState, StateError},
    vip::VipSpec,
};

/// A snapshot without rates.
pub fn snapshot<D: Dataplane>(
    st: &LbState<D>,
    only: Option<&VipSpec>,
) -> Result<pb::StatsSnapshot, StateError> {
    let global = st.global_counters()?;
    let counters: HashMap<String, u64> = Stat::ALL
        .iter()
        .map(|s| (s.name().to_string(), global[*s as usize]))
        .collect();
    let mut vips = Vec::new();
    let mut specs: Vec<VipSpec> = match only {
        Some(v) => vec![st.get_vip(v)?.spec],
        None => st.list_vips().into_iter().map(|v| v.spec).collect(),
    };
    specs.sort();
    for spec in specs {
        let info = st.get_vip(&spec)?;
        let c = st.vip_counters(&spec)?;
        let backends = c
            .backends
            .iter()
            .map(|(addr, pb_)| pb::BackendStats {
                address: addr.to_string(),
                slot: info
                    .backends
                    .iter()
                    .find(|b| b.address == *addr)
                    .map(|b| b.slot)
                    .unwrap_or(0),
                packets: pb_.packets,
                bytes: pb_.bytes,
                packets_per_second: 0.0,
                bytes_per_second: 0.0,
            })
            .collect();
        vips.push(pb::VipStats {
            vip: Some(vip_out(&spec)),
            packets: c.vip.packets,
            bytes: c.vip.bytes,
            packets_per_second: 0.0,
            bytes_per_second: 0.0,
            backends,
        });
    }
    let unix_time_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Ok(pb::StatsSnapshot {
        unix_time_ms,
        counters,
        counter_rates: HashMap::new(),
        vips,
        interval_seconds: 0.0,
    })
}

fn rate(now: u64, before: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    now.saturating_sub(before) as f64 / secs
}

/// Fills `now`'s rates from the previous snapshot.
pub fn with_rates(mut now: pb::StatsSnapshot, prev: &pb::StatsSnapshot) -> pb::StatsSnapshot {
    let secs = now.unix_time_ms.saturating_sub(prev.unix_time_ms) as f64 / 1000.0;
    now.interval_seconds = secs;
    now.counter_rates = now
        .counters
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                rate(*v, prev.counters.get(k).copied().unwrap_or(0), secs),
            )
        })
        .collect();
    for v in &mut now.vips {
        let Some(p) = prev.vips.iter().find(|p| p.vip == v.vip) else {
            continue;
        };
        v.packets_per_second = rate(v.packets, p.packets, secs);
        v.bytes_per_second = rate(v.bytes, p.bytes, secs);
        for b in &mut v.backends {
            if let Some(pbk) = p.backends.iter().find(|x| x.address == b.address) {
                b.packets_per_second = rate(b.packets, pbk.packets, secs);
                b.bytes_per_second = rate(b.bytes, pbk.bytes, secs);
            }
        }
    }
    now
}
