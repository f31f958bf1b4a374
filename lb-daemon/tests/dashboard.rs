//! `deploy/grafana/lb.json` asks only for series the daemon exports: every
//! `lb_*` name in a PromQL expression of the dashboard (panels and template
//! variables) is one the metrics module writes, and every label it groups
//! or matches by is one those series carry. The exported names come from
//! the module itself, encoding a state over the in-memory data plane.

use std::{collections::BTreeSet, convert::Infallible};

use lb_api::{CheckKind, HealthCheck};
use lb_daemon::{
    dataplane::{FakeDataplane, Sizes},
    grpc::StatusInfo,
    metrics::Metrics,
    state::{BackendSpec, LbState, Model},
    vip::VipFlags,
};
use serde_json::Value;
use tonic::codegen::http;
use tower::{Layer as _, ServiceExt as _};

const DASHBOARD: &str = include_str!("../../deploy/grafana/lb.json");

/// The exposition of a daemon with one VIP (with a health check), one
/// backend and one API call, so that every family has a series.
fn exposition() -> String {
    let metrics = std::sync::Arc::new(Metrics::new(&StatusInfo::default()));
    let mut st =
        LbState::new(FakeDataplane::new(Sizes::default()), Model::default(), None).expect("state");
    st.set_ring_observer(metrics.clone());
    let vip = "198.18.100.10:80/tcp".parse().unwrap();
    st.create_vip(
        vip,
        VipFlags::default(),
        &[BackendSpec::weighted("198.19.0.11".parse().unwrap(), 100)],
    )
    .unwrap();
    // The health series exist only for VIPs with a check.
    st.set_health_check(&vip, Some(HealthCheck::new(CheckKind::Tcp)), 0)
        .unwrap();
    let routes = tower::service_fn(|_: http::Request<()>| async {
        Ok::<_, Infallible>(http::Response::new(()))
    });
    let req = http::Request::builder()
        .uri("/lb.v1.LoadBalancer/ListVips")
        .body(())
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(metrics.api_layer().layer(routes).oneshot(req))
        .unwrap();
    metrics.encode(&st).unwrap()
}

/// Series names (histograms: `_bucket`, `_sum`, `_count`) and label names.
fn exported(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut names = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').unwrap();
            if kind == "histogram" {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            } else {
                names.insert(name.to_string());
            }
        } else if let Some((_, rest)) = line.split_once('{') {
            for pair in rest.split("\",") {
                if let Some((k, _)) = pair.split_once("=\"") {
                    labels.insert(k.to_string());
                }
            }
        }
    }
    (names, labels)
}

/// Every PromQL expression of the dashboard: panel targets' `expr` and
/// query variables' `query`.
fn expressions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    ("query", Value::String(s)) if s.contains("lb_") => out.push(s.clone()),
                    _ => expressions(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| expressions(x, out)),
        _ => {}
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Identifiers outside string literals.
fn identifiers(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_str = false;
    for c in expr.chars() {
        if c == '"' {
            in_str = !in_str;
        }
        if !in_str && is_ident(c) {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Label names a query uses: in `by (...)`, `on (...)`, `label_values(_, L)`
/// and before `=`, `=~`, `!=` in matchers.
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for kw in ["by (", "on (", "without ("] {
        for part in expr.split(kw).skip(1) {
            let inside = part.split(')').next().unwrap();
            out.extend(inside.split(',').map(|l| l.trim().to_string()));
        }
    }
    for part in expr.split('{').skip(1) {
        let inside = part.split('}').next().unwrap();
        for m in inside.split(',') {
            if let Some(i) = m.find(['=', '!']) {
                out.insert(m[..i].trim().to_string());
            }
        }
    }
    if let Some(rest) = expr.strip_prefix("label_values(") {
        let l = rest.trim_end_matches(')').rsplit(',').next().unwrap();
        out.insert(l.trim().to_string());
    }
    out.retain(|l| !l.is_empty());
    out
}

#[test]
fn every_dashboard_query_names_an_exported_series() {
    let (names, labels) = exported(&exposition());
    assert!(names.contains("lb_vip_packets_total"), "{names:?}");
    assert!(names.contains("lb_grpc_server_handled_total"), "{names:?}");
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("lb.json is JSON");
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{} queries", exprs.len());
    let mut used = BTreeSet::new();
    for e in &exprs {
        let series: Vec<String> = identifiers(e)
            .into_iter()
            .filter(|i| i.starts_with("lb_"))
            .collect();
        assert!(!series.is_empty(), "query names no lb_ series: {e}");
        for s in series {
            assert!(names.contains(&s), "{s} is not exported (query: {e})");
            used.insert(s);
        }
        for l in label_names(e) {
            // Prometheus adds `instance` and `job`; `le` is a histogram's.
            let known = labels.contains(&l) || ["instance", "job", "le"].contains(&l.as_str());
            assert!(known, "label {l} is on no exported series (query: {e})");
        }
    }
    // What the issue asks the dashboard to show.
    for s in [
        "lb_vip_packets_total",
        "lb_backend_packets_total",
        "lb_xdp_drops_total",
        "lb_xdp_new_flow_total",
        "lb_ring_rebuild_duration_seconds_count",
        // Health (issue 10): down backends, failing-open VIPs, probe
        // failures and transitions.
        "lb_backend_health",
        "lb_vip_fail_open",
        "lb_health_probes_total",
        "lb_health_probe_failures_total",
        "lb_health_transitions_total",
    ] {
        assert!(used.contains(s), "the dashboard does not show {s}");
    }
}

#[test]
fn the_checks_catch_a_wrong_name_or_label() {
    let (names, labels) = exported(&exposition());
    let ids = identifiers(r#"sum by (vip) (rate(lb_vip_packetz_total{reason="lb_x"}[5m]))"#);
    assert!(ids.contains(&"lb_vip_packetz_total".to_string()));
    assert!(!names.contains("lb_vip_packetz_total"));
    // A label value is not a series name.
    assert!(!ids.contains(&"lb_x".to_string()));
    let ls = label_names(r#"sum by (vip, backnd) (x{state="a", reason=~"b"})"#);
    assert_eq!(
        ls,
        ["backnd", "reason", "state", "vip"]
            .map(String::from)
            .into()
    );
    assert!(!labels.contains("backnd"));
    assert!(labels.contains("vip") && labels.contains("backend"));
}
