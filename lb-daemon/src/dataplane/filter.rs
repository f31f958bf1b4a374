//! The VIP filter (`LB_VIP_FILTER`): a bitmap over hashed destination
//! addresses that lets `lb_xdp` pass traffic for other addresses after one
//! array read, and tells it which addresses may carry VIPs with flags (see
//! `lb_common::MAP_VIP_FILTER`).
//!
//! The filter is derived data: a function of the VIP addresses in
//! `LB_VIP_ADDRS` and the flags of the entries in `LB_VIPS`. The balancer
//! keeps this model next to those maps and, whenever one of them changes,
//! rewrites the one filter word that changes with it. Derived here rather
//! than in the state layer so that everything that writes the two maps (the
//! daemon, the tests, the bench) keeps the filter right without knowing it
//! exists.
//!
//! Ordering is inherited from the writes that drive it: an address's bucket
//! is set when the address is added (after its VIP entry) and cleared when
//! it is removed (after the entry), as `LB_VIP_ADDRS` always was.

use std::collections::{HashMap, HashSet};

use lb_common::{
    AddrKey, FILTER_VIP, FILTER_VIP_FIRST, VIP_F_NO_CONNTRACK, VIP_F_NO_SPORT, VIP_FILTER_PER_WORD,
    VIP_FILTER_WORDS, VipKey, vip_filter_bucket,
};

/// VIP flags that make the data plane look the VIP up before the
/// connection table.
const VIP_FIRST_FLAGS: u32 = VIP_F_NO_SPORT | VIP_F_NO_CONNTRACK;

/// The model behind `LB_VIP_FILTER`.
#[derive(Clone, Debug)]
pub struct VipFilter {
    words: Vec<u64>,
    /// VIP addresses, by bucket.
    buckets: HashMap<u32, HashSet<AddrKey>>,
    /// Flags of every VIP entry.
    vip_flags: HashMap<VipKey, u32>,
    /// Per address: how many of its VIP entries have [`VIP_FIRST_FLAGS`].
    flagged: HashMap<AddrKey, u32>,
}

impl Default for VipFilter {
    fn default() -> Self {
        Self {
            words: vec![0; VIP_FILTER_WORDS as usize],
            buckets: HashMap::new(),
            vip_flags: HashMap::new(),
            flagged: HashMap::new(),
        }
    }
}

/// A filter word to write: (index, value).
pub type WordWrite = (u32, u64);

fn addr_of(key: &VipKey) -> AddrKey {
    AddrKey::new(key.addr, key.family)
}

impl VipFilter {
    /// The filter of a set of addresses and VIP entries (adoption).
    pub fn from_entries(
        addrs: impl IntoIterator<Item = AddrKey>,
        vips: impl IntoIterator<Item = (VipKey, u32)>,
    ) -> Self {
        let mut f = Self::default();
        for (k, flags) in vips {
            f.set_vip(&k, flags);
        }
        for a in addrs {
            f.set_addr(&a, true);
        }
        f
    }

    /// Every word (index = position).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// The two bits of `addr`'s bucket.
    pub fn bits(&self, addr: &AddrKey) -> u64 {
        let b = vip_filter_bucket(&addr.addr);
        (self.words[(b / VIP_FILTER_PER_WORD) as usize] >> ((b % VIP_FILTER_PER_WORD) * 2)) & 3
    }

    /// A VIP entry was written with `flags`.
    pub fn set_vip(&mut self, key: &VipKey, flags: u32) -> Option<WordWrite> {
        let old = self.vip_flags.insert(*key, flags).unwrap_or(0);
        self.flag_change(key, old, flags)
    }

    /// A VIP entry was removed.
    pub fn remove_vip(&mut self, key: &VipKey) -> Option<WordWrite> {
        let old = self.vip_flags.remove(key).unwrap_or(0);
        self.flag_change(key, old, 0)
    }

    fn flag_change(&mut self, key: &VipKey, old: u32, new: u32) -> Option<WordWrite> {
        let (was, is) = (old & VIP_FIRST_FLAGS != 0, new & VIP_FIRST_FLAGS != 0);
        if was == is {
            return None;
        }
        let a = addr_of(key);
        let n = self.flagged.entry(a).or_default();
        if is {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.flagged.remove(&a);
            }
        }
        self.refresh(vip_filter_bucket(&a.addr))
    }

    /// An address gained its first VIP (`present`) or lost its last.
    pub fn set_addr(&mut self, addr: &AddrKey, present: bool) -> Option<WordWrite> {
        let b = vip_filter_bucket(&addr.addr);
        let set = self.buckets.entry(b).or_default();
        let changed = if present {
            set.insert(*addr)
        } else {
            set.remove(addr)
        };
        if set.is_empty() {
            self.buckets.remove(&b);
        }
        if !changed {
            return None;
        }
        self.refresh(b)
    }

    /// Recomputes bucket `b`; the word to write if it changed.
    fn refresh(&mut self, b: u32) -> Option<WordWrite> {
        let mut bits = 0;
        for a in self.buckets.get(&b).into_iter().flatten() {
            bits |= FILTER_VIP;
            if self.flagged.contains_key(a) {
                bits |= FILTER_VIP_FIRST;
            }
        }
        let w = (b / VIP_FILTER_PER_WORD) as usize;
        let shift = (b % VIP_FILTER_PER_WORD) * 2;
        let new = (self.words[w] & !(3 << shift)) | (bits << shift);
        if new == self.words[w] {
            return None;
        }
        self.words[w] = new;
        Some((w as u32, new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u8) -> AddrKey {
        AddrKey::new([u32::from_ne_bytes([198, 18, 100, last]), 0, 0, 0], 4)
    }

    fn vip(a: &AddrKey, port: u16) -> VipKey {
        VipKey {
            addr: a.addr,
            port: port.to_be(),
            proto: 6,
            family: a.family,
        }
    }

    #[test]
    fn address_sets_and_clears_its_bucket() {
        let mut f = VipFilter::default();
        let a = v4(10);
        assert_eq!(f.bits(&a), 0);
        assert!(f.set_vip(&vip(&a, 80), 0).is_none(), "no address yet");
        let (w, word) = f.set_addr(&a, true).expect("bucket set");
        assert_eq!(f.words()[w as usize], word);
        assert_eq!(f.bits(&a), FILTER_VIP);
        assert!(f.set_addr(&a, true).is_none(), "idempotent");
        f.remove_vip(&vip(&a, 80));
        f.set_addr(&a, false).expect("bucket cleared");
        assert_eq!(f.bits(&a), 0);
        assert!(f.words().iter().all(|w| *w == 0));
    }

    #[test]
    fn flags_set_vip_first_until_the_last_flagged_vip_goes() {
        let mut f = VipFilter::default();
        let a = v4(11);
        f.set_vip(&vip(&a, 80), 0);
        f.set_addr(&a, true);
        assert_eq!(f.bits(&a), FILTER_VIP);
        f.set_vip(&vip(&a, 53), VIP_F_NO_SPORT)
            .expect("flag bit set");
        f.set_vip(&vip(&a, 54), VIP_F_NO_CONNTRACK);
        assert_eq!(f.bits(&a), FILTER_VIP | FILTER_VIP_FIRST);
        // Rewriting an entry with the same flags (a ring flip) changes nothing.
        assert!(f.set_vip(&vip(&a, 53), VIP_F_NO_SPORT).is_none());
        f.remove_vip(&vip(&a, 53));
        assert_eq!(
            f.bits(&a),
            FILTER_VIP | FILTER_VIP_FIRST,
            "54 still flagged"
        );
        f.remove_vip(&vip(&a, 54)).expect("flag bit cleared");
        assert_eq!(f.bits(&a), FILTER_VIP);
    }

    #[test]
    fn addresses_sharing_a_bucket_keep_it_set() {
        // Find two addresses in one bucket.
        let a = v4(1);
        let b = (2..=255u8)
            .flat_map(|x| (0..=255u8).map(move |y| (x, y)))
            .map(|(x, y)| AddrKey::new([u32::from_ne_bytes([198, 19, x, y]), 0, 0, 0], 4))
            .find(|k| vip_filter_bucket(&k.addr) == vip_filter_bucket(&a.addr))
            .expect("a colliding address among 65,000");
        let mut f = VipFilter::default();
        f.set_addr(&a, true);
        f.set_addr(&b, true);
        f.set_vip(&vip(&b, 80), VIP_F_NO_SPORT);
        assert_eq!(f.bits(&a), FILTER_VIP | FILTER_VIP_FIRST, "shared bucket");
        f.set_addr(&b, false);
        assert_eq!(f.bits(&a), FILTER_VIP, "a's own bits remain");
    }

    #[test]
    fn from_entries_matches_step_by_step() {
        let (a, b) = (v4(20), v4(21));
        let step = {
            let mut f = VipFilter::default();
            f.set_vip(&vip(&a, 80), 0);
            f.set_vip(&vip(&b, 80), VIP_F_NO_CONNTRACK);
            f.set_addr(&a, true);
            f.set_addr(&b, true);
            f
        };
        let bulk = VipFilter::from_entries(
            [a, b],
            [(vip(&a, 80), 0), (vip(&b, 80), VIP_F_NO_CONNTRACK)],
        );
        assert_eq!(step.words(), bulk.words());
    }
}
