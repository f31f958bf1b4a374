//! What the configuration file means to this daemon: the map sizes, the node
//! settings and the attach mode it asks of the data plane, and the checks of
//! its values against the data plane's limits (the state's rules for VIP
//! and backend values are the parser's, `lb_api::vipfile::check_vips`), so
//! that a file `lb-daemon check` accepts never fails when it is applied.
//! Errors name the line and the key, as the parser's do.

use std::path::Path;

use crate::{
    config::{
        Config, ConfigError, ConfigFile, DataplaneConfig, EncapKind, LayoutChangePolicy, XdpMode, k,
    },
    dataplane::{AttachMode, BalancerConfig, Encapsulation, OnLayoutChange, Sizes},
    maglev,
};

/// Reads, parses and checks a configuration file for this daemon.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = ConfigFile::read(path)?;
    check(&file)?;
    Ok(file.config)
}

/// [`load`] for a configuration held in a string; errors name `origin`.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let file = ConfigFile::parse(text, origin)?;
    check(&file)?;
    Ok(file.config)
}

/// The checks of a parsed file against the data plane and the state.
fn check(file: &ConfigFile) -> Result<(), ConfigError> {
    let (cfg, src) = (&file.config, &file.source);
    let dp = &cfg.dataplane;
    if !maglev::is_prime(dp.ring_size) {
        return Err(src.error(
            &[k("dataplane"), k("ring_size")],
            format!("ring size {} is not prime (e.g. 65537)", dp.ring_size),
        ));
    }
    if let Err(e) = sizes(dp).validate() {
        // The one combined limit: 2 x max_vips x ring_size positions.
        let key = if src.span(&[k("dataplane"), k("max_vips")]).is_some() {
            "max_vips"
        } else {
            "ring_size"
        };
        return Err(src.error(&[k("dataplane"), k(key)], e.to_string()));
    }
    Ok(())
}

/// `lb-daemon check` with `[bgp]`: the speaker must answer on its control
/// socket (an error names the line and the key of `control_socket`).
pub async fn probe_speaker(path: &Path) -> Result<(), ConfigError> {
    let file = ConfigFile::read(path)?;
    let Some(bgp) = &file.config.bgp else {
        return Ok(());
    };
    crate::announce::bird::probe(&bgp.control_socket)
        .await
        .map_err(|e| {
            file.source.error(
                &[k("bgp"), k("control_socket")],
                format!("the speaker does not answer: {e} (is bird running with -s on that path?)"),
            )
        })
}

/// The map sizes of `[dataplane]`.
pub fn sizes(dp: &DataplaneConfig) -> Sizes {
    Sizes {
        ring_size: dp.ring_size,
        max_vips: dp.max_vips,
        max_backends: dp.max_backends,
        conn_table: dp.conn_table_size,
    }
}

/// The node settings of `[dataplane]`; `if_mac` is the interface's own MAC,
/// which the file does not say.
pub fn balancer_config(dp: &DataplaneConfig, if_mac: [u8; 6]) -> BalancerConfig {
    BalancerConfig {
        gateway_mac: dp.gateway_mac.octets(),
        if_mac,
        mtu: dp.mtu,
        hash_seed: dp.hash_seed,
        v4_src: dp.encap_source_v4.addr,
        v4_src_len: dp.encap_source_v4.len,
        v6_src: dp.encap_source_v6.addr,
        v6_src_len: dp.encap_source_v6.len,
        icmp_too_big_rate: dp.icmp_too_big_rate,
        new_flow_rate: dp.max_new_flows_per_cpu,
        forward_icmp_errors: dp.forward_icmp_errors,
        encap: match dp.encap {
            EncapKind::Ipip => Encapsulation::Ipip,
            EncapKind::Gue => Encapsulation::Gue { port: dp.gue_port },
        },
    }
}

/// What the data plane does with pinned maps of another layout.
pub fn on_layout_change(policy: LayoutChangePolicy) -> OnLayoutChange {
    match policy {
        LayoutChangePolicy::Refuse => OnLayoutChange::Refuse,
        LayoutChangePolicy::Recreate => OnLayoutChange::Recreate,
    }
}

/// The data plane's attach mode for `xdp_mode`.
pub fn attach_mode(mode: XdpMode) -> AttachMode {
    match mode {
        XdpMode::Auto => AttachMode::Auto,
        XdpMode::Native => AttachMode::Native,
        XdpMode::Generic => AttachMode::Generic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{FULL, HEAD, MINIMAL, assert_invalid};

    #[track_caller]
    fn bad(text: &str, line: usize, key: &str, needle: &str) {
        assert_invalid(parse(text, "<config>").unwrap_err(), line, key, needle);
    }

    #[test]
    fn full_file_to_the_data_plane() {
        let c = parse(FULL, "<config>").unwrap();
        let dp = &c.dataplane;
        assert_eq!(
            sizes(dp),
            Sizes {
                ring_size: 257,
                max_vips: 8,
                max_backends: 100,
                conn_table: 4096
            }
        );
        assert_eq!(attach_mode(dp.xdp_mode), AttachMode::Native);
        let bc = balancer_config(dp, [2, 0, 0, 0, 0, 9]);
        assert_eq!(bc.gateway_mac, [2, 0, 0, 0, 0, 0xfe]);
        assert_eq!(bc.if_mac, [2, 0, 0, 0, 0, 9]);
        assert_eq!((bc.mtu, bc.hash_seed), (9000, 12345));
        assert_eq!(
            (bc.v4_src.to_string(), bc.v4_src_len),
            ("198.19.0.1".into(), 32)
        );
        assert_eq!(
            (bc.v6_src.to_string(), bc.v6_src_len),
            ("fd00:5::".into(), 96)
        );
        assert!(!bc.forward_icmp_errors);
        assert_eq!(bc.to_map().unwrap().flags, 0);
        assert_eq!(bc.encap, Encapsulation::Gue { port: 9999 });
        // The data plane's form: the port in network order, one field.
        assert_eq!(bc.to_map().unwrap().gue_port, 9999u16.to_be());
        assert_eq!(bc.new_flow_rate, 2000);
        assert_eq!(bc.to_map().unwrap().new_flow_rate, 2000);
    }

    #[test]
    fn defaults_are_the_data_planes() {
        let c = parse(MINIMAL, "<config>").unwrap();
        assert_eq!(sizes(&c.dataplane), Sizes::default());
        assert_eq!(
            balancer_config(&c.dataplane, [0; 6]),
            BalancerConfig {
                gateway_mac: [2, 0, 0, 0, 0, 1],
                ..BalancerConfig::default()
            }
        );
        assert_eq!(
            balancer_config(&c.dataplane, [0; 6])
                .to_map()
                .unwrap()
                .flags,
            lb_common::LB_CFG_F_FORWARD_ICMP_ERRORS,
            "ICMP errors are forwarded unless the file says otherwise"
        );
        let prod = parse(
            include_str!("../../../config/production.toml"),
            "production.toml",
        )
        .unwrap();
        assert_eq!(sizes(&prod.dataplane), Sizes::default());
        parse(include_str!("../../../config/demo.toml"), "demo.toml").unwrap();
    }

    #[test]
    fn data_plane_and_state_rules_are_reported_with_line_and_key() {
        bad(
            &format!("{HEAD}ring_size = 65536\n"),
            4,
            "dataplane.ring_size",
            "not prime",
        );
        bad(
            &format!("{HEAD}max_vips = 100000\n"),
            4,
            "dataplane.max_vips",
            "2^32",
        );
        bad(
            &format!("{HEAD}\n[[vip]]\naddress = \"127.0.0.1:80/tcp\"\n"),
            6,
            "vip[0].address",
            "loopback",
        );
        bad(
            &format!(
                "{HEAD}\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\nbackends = [\n  {{ address = \"198.19.0.1\", weight = 70000 }},\n]\n"
            ),
            8,
            "vip[0].backends[0].weight",
            "out of range",
        );
        bad(
            &format!(
                "{HEAD}\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\nbackends = [ {{ address = \"127.0.0.1\" }} ]\n"
            ),
            7,
            "vip[0].backends[0].address",
            "loopback",
        );
    }
}
