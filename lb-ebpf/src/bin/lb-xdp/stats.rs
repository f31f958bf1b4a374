//! Per-CPU counters: no atomics needed, userspace sums the CPUs.

use lb_common::{PktBytes, Stat};

use crate::{
    maps::{LB_BACKEND_STATS, LB_STATS, LB_VIP_STATS},
    variant::Variant,
};

/// Bumps a global counter.
#[inline(always)]
pub fn inc<B: Variant>(stat: Stat) {
    if !B::COUNT {
        return;
    }
    if let Some(p) = LB_STATS.get_ptr_mut(stat as u32) {
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn add(p: Option<*mut PktBytes>, bytes: u32) {
    if let Some(p) = p {
        unsafe {
            (*p).packets += 1;
            (*p).bytes += bytes as u64;
        }
    }
}

/// Accounts a forwarded packet to its VIP and backend slot.
#[inline(always)]
pub fn forwarded<B: Variant>(vip_index: u32, slot: u32, l3_len: u32) {
    if !B::COUNT {
        return;
    }
    inc::<B>(Stat::Forwarded);
    add(LB_VIP_STATS.get_ptr_mut(vip_index), l3_len);
    add(LB_BACKEND_STATS.get_ptr_mut(slot), l3_len);
}
