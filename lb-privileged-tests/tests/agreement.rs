//! The kernel and userspace agree on backend choice: for 10,000 random flows
//! over a VIP with 100 weighted backends, the backend `lb_xdp` encapsulates to
//! is the one predicted from lb-common's flow hash and the Maglev table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_daemon::maglev::{self, Member};
use lb_privileged_tests::{pkt::*, *};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn check(vip: IpAddr, backends_v6: bool, flows: usize, flags: u32) {
    let mut f = Fixture::with(|c| c.hash_seed = 0xC0FFEE);
    f.vip(vip, 443, 6, flags);
    let backends: Vec<IpAddr> = (0..100u32)
        .map(|i| {
            if backends_v6 {
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 1, i as u16 + 1))
            } else {
                IpAddr::V4(Ipv4Addr::new(198, 19, 2, i as u8 + 1))
            }
        })
        .collect();
    let keys: Vec<Vec<u8>> = backends
        .iter()
        .map(|a| match a {
            IpAddr::V4(v) => v.octets().to_vec(),
            IpAddr::V6(v) => v.octets().to_vec(),
        })
        .collect();
    let members: Vec<Member> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Member {
            key: k,
            weight: (i as u32 % 10 + 1) * 10,
        })
        .collect();
    let m = f.lb.sizes().ring_size;
    let table = maglev::build(m, &members).unwrap();
    for (i, a) in backends.iter().enumerate() {
        f.backend(i as u32 + 1, *a);
    }
    let slots: Vec<u32> = table.iter().map(|&i| i + 1).collect();
    f.ring_table(vip, 443, 6, &slots);

    let mut rng = StdRng::seed_from_u64(42);
    let mut used = std::collections::HashSet::new();
    for n in 0..flows {
        let client: IpAddr = match vip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(
                198,
                18,
                rng.gen_range(0..=255),
                rng.gen_range(1..=254),
            )),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(
                0xfd00,
                1,
                0,
                0,
                rng.r#gen(),
                rng.r#gen(),
                rng.r#gen(),
                rng.r#gen(),
            )),
        };
        let sport: u16 = rng.gen_range(1024..=65535);
        // Userspace prediction: lb-common's hash over the map-layout fields.
        let (src, _) = map_addr(client);
        let (dst, _) = map_addr(vip);
        let hashed_sport = if flags & lb_common::VIP_F_NO_SPORT != 0 {
            0
        } else {
            sport.to_be()
        };
        let h = lb_common::flow_hash(0xC0FFEE, &src, &dst, hashed_sport, 443u16.to_be(), 6);
        let predicted = backends[table[(h % m) as usize] as usize];

        let seg = tcp(client, vip, sport, 443, SYN, b"");
        let frame = match (client, vip) {
            (IpAddr::V4(c), IpAddr::V4(v)) => v4_frame(c, v, 6, 0, &seg),
            (IpAddr::V6(c), IpAddr::V6(v)) => v6_frame(c, v, 6, 0, &seg),
            _ => unreachable!(),
        };
        let (act, out) = f.run(&frame);
        assert_eq!(act, XDP_TX, "flow {n}");
        let got: IpAddr = if backends_v6 {
            let o: [u8; 16] = out[38..54].try_into().unwrap();
            Ipv6Addr::from(o).into()
        } else {
            Ipv4Addr::new(out[30], out[31], out[32], out[33]).into()
        };
        assert_eq!(got, predicted, "flow {n}: {client}:{sport} -> {vip}");
        used.insert(got);
    }
    // The flows exercised (nearly) every backend, so the check is not vacuous.
    assert!(used.len() >= 95, "only {} backends seen", used.len());
}

#[test]
fn kernel_choice_matches_userspace_prediction_v4() {
    require_root();
    check("198.18.100.10".parse().unwrap(), false, 10_000, 0);
}

#[test]
fn kernel_choice_matches_userspace_prediction_v6_vip_v6_backends() {
    require_root();
    check("fd00:100::10".parse().unwrap(), true, 3_000, 0);
}

#[test]
fn kernel_choice_matches_prediction_without_source_port() {
    require_root();
    check(
        "198.18.100.11".parse().unwrap(),
        false,
        3_000,
        lb_common::VIP_F_NO_SPORT,
    );
}
