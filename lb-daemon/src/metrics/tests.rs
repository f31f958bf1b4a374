//! The exposition over the in-memory data plane: values as the maps hold
//! them, every global counter present, the daemon's own series.

use std::sync::Arc;

use lb_common::{Outcome, Stat};

use super::*;
use crate::{
    dataplane::{Attached, FakeDataplane, Sizes},
    state::{BackendSpec, Model},
    vip::VipFlags,
};

fn sizes() -> Sizes {
    Sizes {
        ring_size: 251,
        max_vips: 4,
        max_backends: 12,
        conn_table: 64,
    }
}

fn setup() -> (LbState<FakeDataplane>, Arc<Metrics>) {
    let info = StatusInfo {
        interface: "lblb0".into(),
        attached: Some(Attached::Generic),
        program_id: 42,
        conn_table_capacity: 64,
        ..StatusInfo::default()
    };
    let metrics = Arc::new(Metrics::new(&info));
    let mut st = LbState::new(FakeDataplane::new(sizes()), Model::default(), None).unwrap();
    st.set_ring_observer(metrics.clone());
    (st, metrics)
}

/// The value of the one sample line that starts with `series` + " ".
#[track_caller]
fn value(text: &str, series: &str) -> f64 {
    let hits: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .collect();
    assert_eq!(hits.len(), 1, "{series} in:\n{text}");
    hits[0].parse().unwrap()
}

#[test]
fn exposition_reads_the_maps() {
    let (mut st, metrics) = setup();
    let spec: VipSpec = "198.18.100.10:80/tcp".parse().unwrap();
    let (b1, b2) = ("198.19.0.11", "198.19.0.12");
    st.create_vip(
        spec,
        VipFlags::default(),
        &[
            BackendSpec::weighted(b1.parse().unwrap(), 100),
            BackendSpec::weighted(b2.parse().unwrap(), 0),
        ],
    )
    .unwrap();
    let info = st.get_vip(&spec).unwrap();
    let slot1 = info.backends[0].slot;
    for _ in 0..3 {
        st.dataplane_mut().record_traffic(info.index, slot1, 100);
    }
    let text = metrics.encode(&st).unwrap();
    let vip = r#"vip="198.18.100.10:80/tcp""#;
    assert_eq!(value(&text, &format!("lb_vip_packets_total{{{vip}}}")), 3.0);
    assert_eq!(value(&text, &format!("lb_vip_bytes_total{{{vip}}}")), 300.0);
    // The text format sorts labels by name.
    let be = |b: &str| format!(r#"backend="{b}",{vip}"#);
    assert_eq!(
        value(&text, &format!("lb_backend_packets_total{{{}}}", be(b1))),
        3.0
    );
    assert_eq!(
        value(&text, &format!("lb_backend_bytes_total{{{}}}", be(b1))),
        300.0
    );
    assert_eq!(
        value(&text, &format!("lb_backend_packets_total{{{}}}", be(b2))),
        0.0
    );
    assert_eq!(
        value(&text, &format!("lb_backend_weight{{{}}}", be(b1))),
        100.0
    );
    assert_eq!(
        value(&text, &format!("lb_backend_weight{{{}}}", be(b2))),
        0.0
    );
    let state =
        |b: &str, s: &str| format!(r#"lb_backend_state{{backend="{b}",state="{s}",{vip}}}"#);
    assert_eq!(value(&text, &state(b1, "active")), 1.0);
    assert_eq!(value(&text, &state(b1, "draining")), 0.0);
    assert_eq!(value(&text, &state(b2, "active")), 0.0);
    assert_eq!(value(&text, &state(b2, "draining")), 1.0);
    // The fake counts one `forwarded` per packet.
    assert_eq!(value(&text, "lb_xdp_forwarded_total"), 3.0);
    assert_eq!(
        value(
            &text,
            r#"lb_dataplane_info{adopted="false",attach_mode="generic",interface="lblb0",program_id="42"}"#
        ),
        1.0
    );
    assert_eq!(value(&text, "lb_conn_table_capacity"), 64.0);
}

#[test]
fn every_global_counter_is_exported_once() {
    let (st, metrics) = setup();
    let text = metrics.encode(&st).unwrap();
    let mut drops = 0;
    for s in Stat::ALL {
        if s.outcome() == Some(Outcome::Dropped) {
            drops += 1;
            let reason = s.name().strip_prefix(DROP_PREFIX).unwrap_or(s.name());
            value(
                &text,
                &format!(r#"lb_xdp_drops_total{{reason="{reason}"}}"#),
            );
            assert!(!text.contains(&format!("lb_xdp_{}_total", s.name())));
        } else {
            value(&text, &global_series_name(s));
        }
    }
    assert_eq!(drop_reasons().len(), drops);
    assert!(drops >= 7, "drop counters found: {drops}");
    // One descriptor per family: no name is declared twice.
    let mut types: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let n = types.len();
    types.sort();
    types.dedup();
    assert_eq!(types.len(), n, "{text}");
}

#[test]
fn ring_rebuilds_are_timed_when_committed_only() {
    let (mut st, metrics) = setup();
    let count = |st: &LbState<FakeDataplane>| {
        value(
            &metrics.encode(st).unwrap(),
            "lb_ring_rebuild_duration_seconds_count",
        )
    };
    assert_eq!(count(&st), 0.0);
    let spec: VipSpec = "198.18.100.10:80/tcp".parse().unwrap();
    let b = |a: &str, w| BackendSpec::weighted(a.parse().unwrap(), w);
    st.create_vip(spec, VipFlags::default(), &[b("198.19.0.11", 100)])
        .unwrap();
    assert_eq!(count(&st), 1.0);
    st.add_backend(&spec, b("198.19.0.12", 100)).unwrap();
    st.set_weight(&spec, "198.19.0.12".parse().unwrap(), 0)
        .unwrap();
    assert_eq!(count(&st), 3.0);
    // Refused before anything is written, and rolled back: not counted.
    st.add_backend(&spec, b("198.19.0.12", 100)).unwrap_err();
    st.dataplane_mut().fail_after(2, 1);
    st.add_backend(&spec, b("198.19.0.13", 100)).unwrap_err();
    assert_eq!(count(&st), 3.0);
    // Deleting a VIP rebuilds nothing.
    st.delete_vip(&spec).unwrap();
    assert_eq!(count(&st), 3.0);
    let text = metrics.encode(&st).unwrap();
    assert!(value(&text, "lb_ring_rebuild_duration_seconds_sum") > 0.0);
    assert!(
        !text.contains("lb_vip_packets_total{"),
        "deleted VIP still exported"
    );
}
