//! Which VIP prefixes this node announces, and why (pure: the inputs are
//! the VIPs, whether XDP is attached and whether the node is drained).

use std::{collections::BTreeMap, net::IpAddr};

use lb_api::VipInfo;

use crate::state::can_take_new_flows;

/// One VIP address's prefix (/32 or /128) and this node's decision on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The address announced as a host prefix.
    pub address: IpAddr,
    /// Whether this node announces it.
    pub announced: bool,
    /// Why (both ways), for `lbctl announce list`.
    pub reason: String,
}

impl Announcement {
    /// `198.18.100.10/32`, `fd00:100::10/128`.
    pub fn prefix(&self) -> String {
        let len = if self.address.is_ipv4() { 32 } else { 128 };
        format!("{}/{len}", self.address)
    }
}

/// The decision for every VIP address. Routing is per address, not per
/// port: an address is announced while at least one of its VIPs can take
/// new flows (withdrawing it would cut the VIPs that can); the reason names
/// the ones that cannot.
pub fn plan(vips: &[VipInfo], attached: bool, drained: bool) -> Vec<Announcement> {
    let mut by_addr: BTreeMap<IpAddr, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for v in vips {
        let e = by_addr.entry(v.spec.address).or_default();
        if can_take_new_flows(v) {
            e.0.push(v.spec.to_string());
        } else {
            e.1.push(v.spec.to_string());
        }
    }
    by_addr
        .into_iter()
        .map(|(address, (ok, no))| {
            let (announced, reason) = if drained {
                (
                    false,
                    "node drained (lbctl node undrain announces again)".to_owned(),
                )
            } else if !attached {
                (
                    false,
                    "XDP program not attached: this node cannot forward".to_owned(),
                )
            } else if ok.is_empty() {
                (
                    false,
                    format!(
                        "no backend takes new flows (all drained, down or none): {}",
                        no.join(", ")
                    ),
                )
            } else if no.is_empty() {
                (true, format!("serving {}", ok.join(", ")))
            } else {
                (
                    true,
                    format!(
                        "serving {}; no backend takes new flows: {}",
                        ok.join(", "),
                        no.join(", ")
                    ),
                )
            };
            Announcement {
                address,
                announced,
                reason,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_api::BackendInfo;

    fn vip(spec: &str, weights: &[u32]) -> VipInfo {
        VipInfo {
            spec: spec.parse().unwrap(),
            flags: Default::default(),
            index: 0,
            backends: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| BackendInfo {
                    address: format!("198.19.0.{}", 11 + i).parse().unwrap(),
                    weight,
                    slot: 1 + i as u32,
                    health: Default::default(),
                })
                .collect(),
            health: None,
            fail_open: false,
        }
    }

    #[test]
    fn announced_only_while_servable_attached_and_not_drained() {
        let vips = [
            vip("198.18.100.10:80/tcp", &[100, 0]),
            vip("198.18.100.10:443/tcp", &[0]),
            vip("198.18.100.11:80/tcp", &[0, 0]),
            vip("[fd00:100::10]:80/tcp", &[]),
        ];
        let p = plan(&vips, true, false);
        let got: Vec<(String, bool)> = p.iter().map(|a| (a.prefix(), a.announced)).collect();
        assert_eq!(
            got,
            [
                ("198.18.100.10/32".to_owned(), true),
                ("198.18.100.11/32".to_owned(), false),
                ("fd00:100::10/128".to_owned(), false),
            ]
        );
        assert!(
            p[0].reason
                .contains("no backend takes new flows: 198.18.100.10:443/tcp"),
            "{p:?}"
        );
        assert!(p[1].reason.contains("all drained"), "{p:?}");
        for (attached, drained, why) in [(false, false, "not attached"), (true, true, "drained")] {
            let p = plan(&vips, attached, drained);
            assert!(
                p.iter().all(|a| !a.announced && a.reason.contains(why)),
                "{p:?}"
            );
        }
        assert!(plan(&[], true, false).is_empty());
    }
}
