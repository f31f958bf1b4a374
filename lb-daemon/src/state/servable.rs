//! Whether a VIP can be served by this node: the one predicate the BGP
//! announcement (`crate::announce`) asks before it tells the routers to
//! send the VIP's traffic here.

use lb_api::VipInfo;

/// Whether `vip` has at least one backend that may take *new* flows, so
/// that traffic the routers send here for it is not dropped as
/// `drop_no_backend`.
///
/// Today that means a weight above 0 (weight 0 drains: out of the ring).
/// When health checks land, a backend that is down must not count either:
/// extend the filter below with "and not down", nothing else changes.
pub fn can_take_new_flows(vip: &VipInfo) -> bool {
    vip.backends.iter().any(|b| b.weight > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_api::BackendInfo;

    fn vip(weights: &[u32]) -> VipInfo {
        VipInfo {
            spec: "198.18.100.10:80/tcp".parse().unwrap(),
            flags: Default::default(),
            index: 0,
            backends: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| BackendInfo {
                    address: format!("198.19.0.{}", 11 + i).parse().unwrap(),
                    weight,
                    slot: 1 + i as u32,
                })
                .collect(),
        }
    }

    #[test]
    fn one_weighted_backend_is_enough_drained_ones_are_not() {
        assert!(!can_take_new_flows(&vip(&[])));
        assert!(!can_take_new_flows(&vip(&[0, 0])));
        assert!(can_take_new_flows(&vip(&[0, 1])));
        assert!(can_take_new_flows(&vip(&[100])));
    }
}
