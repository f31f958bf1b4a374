//! Per-CPU token buckets: how many of something this CPU may do per second.
//!
//! Two limits use them: ICMP "too big" replies (`icmp`) and new
//! connection-table entries (`flow`). A bucket is one [`RateState`] in a
//! per-CPU array, so each CPU updates its own copy with plain loads and
//! stores: no atomics, no cache line bouncing between CPUs, and no lock
//! (XDP runs with preemption off, so nothing else on this CPU touches the
//! value mid-update). The price is that the limit is per CPU: N CPUs allow N
//! times the rate, which is also how Katran states its limit.
//!
//! The credit is kept as time, not tokens: `elapsed` nanoseconds since the
//! last call are added (capped at one second, the burst), and one event
//! costs `1e9 / rate` nanoseconds. That needs one `bpf_ktime_get_ns` call
//! and no division by a run-time value other than the cost itself.

use aya_ebpf::btf_maps::PerCpuArray;
use lb_common::RateState;

const NS_PER_SEC: u64 = 1_000_000_000;

/// Takes one event's worth of credit from this CPU's bucket in `map`, for a
/// limit of `rate` events per second (burst: one second's worth). `rate` 0
/// means unlimited. False when the bucket is empty (or, which cannot happen
/// for index 0 of a one-element array, the map has no element).
#[inline(always)]
pub fn take(map: &PerCpuArray<RateState, 1>, rate: u32) -> bool {
    if rate == 0 {
        return true;
    }
    let Some(st) = map.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a helper without arguments; the clock is CLOCK_MONOTONIC.
    let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() };
    let cost = NS_PER_SEC / rate as u64;
    // SAFETY: this CPU's element of a per-CPU array, valid for this run and
    // not shared with another CPU (see the module comment).
    unsafe {
        let elapsed = now.saturating_sub((*st).last_ns);
        let mut credit = (*st).credit_ns.saturating_add(elapsed);
        if credit > NS_PER_SEC {
            credit = NS_PER_SEC;
        }
        (*st).last_ns = now;
        if credit < cost {
            (*st).credit_ns = credit;
            return false;
        }
        (*st).credit_ns = credit - cost;
    }
    true
}
