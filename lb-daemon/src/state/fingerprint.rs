//! Ring fingerprints: one short value per VIP that says, at a glance,
//! whether two LB nodes send every flow of that VIP to the same backend.
//!
//! ECMP moves flows between nodes (a node added, lost, a route changed),
//! and a moved flow that misses the new node's connection table is re-hashed
//! there: it stays on its backend only if both nodes hold the same Maglev
//! table. Comparing tables means comparing *backends by position*, not slot
//! numbers: slots are node-local (allocated in the order a node saw the
//! changes), so two nodes with identical tables often name different slots.
//!
//! The fingerprint is read from the data plane, not computed from the
//! state: it says what the node forwards with now. It covers everything
//! that decides a new flow's backend: the flow hash seed, the VIP's flags
//! (`no-sport` changes the hash), the ring size and the backend address at
//! every position of the live half, and, while
//! a backend drains, the pre-drain table in the standby half too (the drain
//! fallback forwards by it, so nodes must agree on it as well). The hash is
//! xxHash64 with a fixed seed over a fixed byte encoding: the same on every
//! node and release (part of the API's contract; a change would make nodes
//! of different releases look different).

use std::{collections::HashMap, net::IpAddr};

use lb_common::SLOT_NONE;
use xxhash_rust::xxh64::Xxh64;

/// Seed of the fingerprint hash ("lb_ring1"). Never change it in place.
const SEED: u64 = 0x6c62_5f72_696e_6731;

/// Marks the start of the pre-drain table in the hashed bytes.
const STANDBY_MARK: &[u8] = b"\xffpre-drain";

/// What a fingerprint covers besides the tables.
#[derive(Clone, Copy, Debug)]
pub struct RingParams {
    /// The node's flow hash seed.
    pub hash_seed: u32,
    /// The VIP's operator flags (`VIP_F_NO_SPORT`, `VIP_F_NO_CONNTRACK`).
    pub flags: u32,
    /// Ring size M.
    pub ring_size: u32,
}

/// The fingerprint of a VIP's tables: `params`, the `live` table and,
/// while a backend drains, the `standby` (pre-drain) table, each position
/// as the address `addr_of` gives its slot (`None`: no backend, as for
/// [`SLOT_NONE`]). 16 lowercase hex digits.
pub fn fingerprint(
    params: RingParams,
    live: &[u32],
    standby: Option<&[u32]>,
    addr_of: impl Fn(u32) -> Option<IpAddr>,
) -> String {
    let mut h = Xxh64::new(SEED);
    for word in [params.hash_seed, params.flags, params.ring_size] {
        h.update(&word.to_le_bytes());
    }
    // Each distinct slot is encoded once: a VIP has a few backends and
    // tens of thousands of positions.
    let mut encoded: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut table = |h: &mut Xxh64, t: &[u32]| {
        for &slot in t {
            let bytes = encoded.entry(slot).or_insert_with(|| {
                let addr = if slot == SLOT_NONE {
                    None
                } else {
                    addr_of(slot)
                };
                encode(addr)
            });
            h.update(bytes);
        }
    };
    table(&mut h, live);
    if let Some(standby) = standby {
        h.update(STANDBY_MARK);
        table(&mut h, standby);
    }
    format!("{:016x}", h.digest())
}

/// One position: `0` for none, `4` and 4 octets, `6` and 16 octets.
fn encode(addr: Option<IpAddr>) -> Vec<u8> {
    match addr {
        None => vec![0],
        Some(IpAddr::V4(a)) => std::iter::once(4).chain(a.octets()).collect(),
        Some(IpAddr::V6(a)) => std::iter::once(6).chain(a.octets()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn p(ring_size: u32) -> RingParams {
        RingParams {
            hash_seed: 1,
            flags: 0,
            ring_size,
        }
    }

    #[test]
    fn positions_count_by_address_not_slot() {
        let a = |slot| {
            [(1, ip("10.0.0.1")), (2, ip("10.0.0.2"))]
                .iter()
                .find(|(s, _)| *s == slot)
                .map(|(_, a)| *a)
        };
        let b = |slot| {
            [(7, ip("10.0.0.1")), (3, ip("10.0.0.2"))]
                .iter()
                .find(|(s, _)| *s == slot)
                .map(|(_, a)| *a)
        };
        let one = fingerprint(p(5), &[1, 2, 1, 2, 2], None, a);
        // The same backends by position under other slot numbers: equal.
        assert_eq!(one, fingerprint(p(5), &[7, 3, 7, 3, 3], None, b));
        assert_eq!(one.len(), 16);
        assert!(
            one.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        // One position moved to the other backend: different.
        assert_ne!(one, fingerprint(p(5), &[1, 2, 1, 2, 1], None, a));
        // Another ring size with the same table bytes: different.
        assert_ne!(one, fingerprint(p(7), &[1, 2, 1, 2, 2], None, a));
        // Another seed or other flags: different (flows hash differently).
        let other = RingParams {
            hash_seed: 2,
            ..p(5)
        };
        assert_ne!(one, fingerprint(other, &[1, 2, 1, 2, 2], None, a));
        let no_sport = RingParams { flags: 1, ..p(5) };
        assert_ne!(one, fingerprint(no_sport, &[1, 2, 1, 2, 2], None, a));
        // An empty position is not any backend.
        assert_ne!(one, fingerprint(p(5), &[1, 2, 1, 2, SLOT_NONE], None, a));
        // A pre-drain table makes it differ, and takes part by content.
        let drain = fingerprint(p(5), &[2, 2, 2, 2, 2], Some(&[1, 2, 1, 2, 2]), a);
        assert_ne!(drain, fingerprint(p(5), &[2, 2, 2, 2, 2], None, a));
        assert_eq!(
            drain,
            fingerprint(p(5), &[3, 3, 3, 3, 3], Some(&[7, 3, 7, 3, 3]), b)
        );
        assert_ne!(
            drain,
            fingerprint(p(5), &[2, 2, 2, 2, 2], Some(&[1, 2, 2, 2, 2]), a)
        );
    }

    #[test]
    fn the_value_is_fixed_across_releases() {
        // Nodes of different releases must agree: the encoding and the
        // seed are part of the contract. (Computed once with this code.)
        let addr = |slot| (slot == 1).then(|| ip("198.19.0.11"));
        let f = fingerprint(p(3), &[1, 1, SLOT_NONE], None, addr);
        assert_eq!(f, FIXED);
    }

    const FIXED: &str = "55f542ee5e87c94d";
}
