//! Per-CPU counters: no atomics needed, userspace sums the CPUs.
//!
//! A packet looks its CPU's record of global counters up once ([`Tally::get`])
//! and then only adds through the pointer; the per-VIP and per-backend pairs
//! cost one lookup each, only for forwarded packets. Every lookup here is of
//! a per-CPU *array*, which the verifier inlines (no helper call).

use core::marker::PhantomData;

use lb_common::{Counters, PktBytes, Stat};

use crate::{
    maps::{LB_BACKEND_STATS, LB_STATS, LB_VIP_STATS},
    variant::Variant,
};

/// This CPU's global counters, for one packet. Counts nothing in bench
/// variants built without counters.
pub struct Tally<B: Variant> {
    rec: Option<*mut Counters>,
    _variant: PhantomData<B>,
}

impl<B: Variant> Tally<B> {
    /// Looks up this CPU's record.
    #[inline(always)]
    pub fn get() -> Self {
        Self {
            rec: if B::COUNT {
                LB_STATS.get_ptr_mut(0)
            } else {
                None
            },
            _variant: PhantomData,
        }
    }

    /// Bumps a global counter.
    #[inline(always)]
    pub fn inc(&self, stat: Stat) {
        if let Some(p) = self.rec {
            // SAFETY: a per-CPU map value of this CPU, written only by this
            // program on this CPU (XDP runs with preemption off). `stat` is a
            // constant below STAT_COUNT at every call, so the index check
            // folds away.
            unsafe { (*p).0[stat as usize] += 1 };
        }
    }

    /// Accounts a forwarded packet to its VIP and backend slot.
    #[inline(always)]
    pub fn forwarded(&self, vip_index: u32, slot: u32, l3_len: u32) {
        if !B::COUNT {
            return;
        }
        self.inc(Stat::Forwarded);
        add(LB_VIP_STATS.get_ptr_mut(vip_index), l3_len);
        add(LB_BACKEND_STATS.get_ptr_mut(slot), l3_len);
    }
}

#[inline(always)]
fn add(p: Option<*mut PktBytes>, bytes: u32) {
    if let Some(p) = p {
        // SAFETY: as in `Tally::inc`.
        unsafe {
            (*p).packets += 1;
            (*p).bytes += bytes as u64;
        }
    }
}
