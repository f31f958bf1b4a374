//! Whether a VIP can be served by this node: the one predicate the BGP
//! announcement (`crate::announce`) asks before it tells the routers to
//! send the VIP's traffic here.

use lb_api::VipInfo;

/// Whether `vip` has at least one backend that may take *new* flows, so
/// that traffic the routers send here for it is not dropped as
/// `drop_no_backend`.
///
/// That is a weight above 0 (weight 0 drains: out of the ring) *and* not
/// down by the VIP's health check. A VIP whose weighted backends are all
/// down fails open in the data plane (it keeps forwarding to all of them,
/// for traffic that still arrives), but this node stops attracting it:
/// withdrawn here, the routers send it to nodes that still see a backend
/// up. This is the rule of other BGP-driven balancers (a service with no
/// ready endpoint is not announced); its cost, when every node sees every
/// backend down, is that no node announces the VIP (docs/bgp.md).
pub fn can_take_new_flows(vip: &VipInfo) -> bool {
    vip.backends
        .iter()
        .any(|b| b.weight > 0 && !b.health.is_down())
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
                    health: Default::default(),
                })
                .collect(),
            health: None,
            fail_open: false,
        }
    }

    #[test]
    fn one_weighted_backend_is_enough_drained_ones_are_not() {
        assert!(!can_take_new_flows(&vip(&[])));
        assert!(!can_take_new_flows(&vip(&[0, 0])));
        assert!(can_take_new_flows(&vip(&[0, 1])));
        assert!(can_take_new_flows(&vip(&[100])));
    }

    #[test]
    fn a_down_backend_does_not_count_even_when_the_vip_fails_open() {
        let mut v = vip(&[100, 0]);
        v.backends[0].health.state = lb_api::HealthState::Down;
        // Every weighted backend down: the data plane fails open, the
        // announcement is withdrawn.
        assert!(!can_take_new_flows(&v));
        // A drained backend that is up does not take new flows either.
        v.backends[1].health.state = lb_api::HealthState::Up;
        assert!(!can_take_new_flows(&v));
        v.backends.push(v.backends[1]);
        v.backends[2].weight = 1;
        assert!(can_take_new_flows(&v));
    }
}
