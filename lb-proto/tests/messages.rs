//! Message encoding and the descriptor set: prost round trips, and the
//! service's shape as reflection clients will see it.

use std::collections::HashMap;

use lb_proto::v1::{
    Backend, BackendInfo, BackendState, CreateVipRequest, Protocol, StatsSnapshot, Vip, VipFlag,
    VipStats, WatchStatsResponse,
};
use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet};

fn vip() -> Vip {
    Vip {
        address: "2001:db8::10".into(),
        port: 443,
        protocol: Protocol::Tcp.into(),
    }
}

#[test]
fn create_vip_request_round_trips() {
    let req = CreateVipRequest {
        vip: Some(vip()),
        flags: vec![VipFlag::NoSport.into(), VipFlag::NoConntrack.into()],
        backends: vec![
            Backend {
                address: "198.19.0.11".into(),
                weight: Some(0),
            },
            Backend {
                address: "198.19.0.12".into(),
                weight: None,
            },
        ],
        health_check: None,
    };
    let bytes = req.encode_to_vec();
    let back = CreateVipRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(back, req);
    assert_eq!(back.vip.as_ref().unwrap().protocol(), Protocol::Tcp);
    assert_eq!(
        back.flags().collect::<Vec<_>>(),
        [VipFlag::NoSport, VipFlag::NoConntrack]
    );
    // An explicit weight 0 (drain) stays distinguishable from "unset" (default).
    assert_eq!(back.backends[0].weight, Some(0));
    assert_eq!(back.backends[1].weight, None);
}

#[test]
fn unknown_enum_values_survive_and_are_detectable() {
    let v = Vip {
        address: "198.18.0.10".into(),
        port: 80,
        protocol: 99,
    };
    let back = Vip::decode(v.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back.protocol, 99);
    assert!(Protocol::try_from(back.protocol).is_err());
    // The getter maps unknown values to the default.
    assert_eq!(back.protocol(), Protocol::Unspecified);
}

#[test]
fn stats_snapshot_round_trips() {
    let counters: HashMap<String, u64> = [("rx", 10u64), ("drop_malformed", 2)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let msg = WatchStatsResponse {
        stats: Some(StatsSnapshot {
            unix_time_ms: 1_700_000_000_000,
            counter_rates: counters.keys().map(|k| (k.clone(), 1.5)).collect(),
            counters,
            vips: vec![VipStats {
                vip: Some(vip()),
                packets: 7,
                bytes: 700,
                packets_per_second: 7.0,
                bytes_per_second: 700.0,
                backends: vec![],
            }],
            interval_seconds: 1.0,
        }),
    };
    let back = WatchStatsResponse::decode(msg.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, msg);
    assert_eq!(back.stats.unwrap().counters["drop_malformed"], 2);
}

#[test]
fn backend_info_state_round_trips() {
    let b = BackendInfo {
        address: "198.19.0.11".into(),
        weight: 0,
        slot: 42,
        state: BackendState::Draining.into(),
        ..Default::default()
    };
    let back = BackendInfo::decode(b.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back.state(), BackendState::Draining);
    assert_eq!(back, b);
}

fn lb_file() -> FileDescriptorProto {
    let set = FileDescriptorSet::decode(lb_proto::FILE_DESCRIPTOR_SET).unwrap();
    set.file
        .into_iter()
        .find(|f| f.name() == "lb/v1/lb.proto")
        .expect("lb/v1/lb.proto in the descriptor set")
}

#[test]
fn descriptor_set_has_the_service() {
    let file = lb_file();
    assert_eq!(file.package(), "lb.v1");
    assert_eq!(file.service.len(), 1);
    let svc = &file.service[0];
    assert_eq!(
        format!("{}.{}", file.package(), svc.name()),
        lb_proto::SERVICE_NAME
    );
    let methods: Vec<(&str, &str, &str, bool)> = svc
        .method
        .iter()
        .map(|m| {
            (
                m.name(),
                m.input_type(),
                m.output_type(),
                m.server_streaming(),
            )
        })
        .collect();
    let expected = [
        "CreateVip",
        "DeleteVip",
        "GetVip",
        "ListVips",
        "AddBackend",
        "RemoveBackend",
        "SetBackendWeight",
        "ReplaceBackends",
        "ListBackends",
        "GetStats",
        "WatchStats",
        "Capture",
        "GetGateway",
        "SetGateway",
        "GetStatus",
        "Route",
        "SetHealthCheck",
        "GetHealth",
    ];
    assert_eq!(methods.len(), expected.len());
    for ((name, input, output, streaming), want) in methods.iter().zip(expected) {
        assert_eq!(*name, want);
        assert_eq!(*input, format!(".lb.v1.{want}Request"));
        assert_eq!(*output, format!(".lb.v1.{want}Response"));
        let server_streaming = want == "WatchStats" || want == "Capture";
        assert_eq!(*streaming, server_streaming, "{name} streaming");
        assert!(!svc.method.iter().any(|m| m.client_streaming()));
    }
}

/// Every service, method, message, field, enum and enum value carries a
/// leading comment (the API's documentation lives in the .proto file).
#[test]
fn every_element_is_documented() {
    let file = lb_file();
    let info = file.source_code_info.as_ref().expect("source info kept");
    let documented = |path: &[i32]| {
        info.location
            .iter()
            .any(|l| l.path == path && !l.leading_comments().trim().is_empty())
    };
    let mut missing = Vec::new();
    // FileDescriptorProto: message_type = 4, enum_type = 5, service = 6.
    // DescriptorProto: field = 2. EnumDescriptorProto: value = 2.
    // ServiceDescriptorProto: method = 2.
    for (i, m) in file.message_type.iter().enumerate() {
        let i = i as i32;
        if !documented(&[4, i]) {
            missing.push(m.name().to_string());
        }
        assert!(
            m.nested_type
                .iter()
                .all(|n| n.options.as_ref().is_some_and(|o| o.map_entry()))
        );
        for (j, f) in m.field.iter().enumerate() {
            if !documented(&[4, i, 2, j as i32]) {
                missing.push(format!("{}.{}", m.name(), f.name()));
            }
        }
    }
    for (i, e) in file.enum_type.iter().enumerate() {
        let i = i as i32;
        if !documented(&[5, i]) {
            missing.push(e.name().to_string());
        }
        for (j, v) in e.value.iter().enumerate() {
            if !documented(&[5, i, 2, j as i32]) {
                missing.push(format!("{}.{}", e.name(), v.name()));
            }
        }
    }
    for (i, s) in file.service.iter().enumerate() {
        let i = i as i32;
        if !documented(&[6, i]) {
            missing.push(s.name().to_string());
        }
        for (j, m) in s.method.iter().enumerate() {
            if !documented(&[6, i, 2, j as i32]) {
                missing.push(format!("{}.{}", s.name(), m.name()));
            }
        }
    }
    assert!(missing.is_empty(), "undocumented: {missing:?}");
}

/// Each RPC documents the status codes it returns.
#[test]
fn every_method_documents_its_errors() {
    let file = lb_file();
    let info = file.source_code_info.as_ref().unwrap();
    for (j, m) in file.service[0].method.iter().enumerate() {
        let comment = info
            .location
            .iter()
            .find(|l| l.path == [6, 0, 2, j as i32])
            .map(|l| l.leading_comments())
            .unwrap_or_default();
        assert!(
            comment.contains("Errors"),
            "{} has no Errors section",
            m.name()
        );
    }
}
