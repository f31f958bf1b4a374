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
//! The credit is kept in nanoseconds times the rate: every nanosecond since
//! the last call adds `rate` units (at most one second's worth is kept, the
//! burst), and one event costs 10^9 units. Kept this way, the bucket needs
//! only a multiplication, where the obvious form (credit in nanoseconds,
//! `10^9 / rate` per event) divides by a run-time value on every call.
//!
//! The clock is `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC_COARSE, advanced
//! once per timer tick, 1-4 ms): a read of the last tick's time, where
//! `bpf_ktime_get_ns` reads the clock source itself (in a virtual machine,
//! often a paravirtual clock page with a fence). A limit per second does
//! not need better than a tick: a tick's credit arrives at once, a burst
//! well inside the one second allowed anyway. Measured together on the SYN
//! path (bench/README.md): the obvious form cost 35 ns per new flow, this
//! one 9 ns.

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
    // SAFETY: a helper without arguments.
    let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_coarse_ns() };
    let rate = rate as u64;
    // SAFETY: this CPU's element of a per-CPU array, valid for this run and
    // not shared with another CPU (see the module comment).
    unsafe {
        let mut elapsed = now.saturating_sub((*st).last_ns);
        // Capped first, so `elapsed * rate` stays below 2^63 (10^9 * 2^32).
        if elapsed > NS_PER_SEC {
            elapsed = NS_PER_SEC;
        }
        let mut credit = (*st).credit_ns.saturating_add(elapsed * rate);
        let burst = NS_PER_SEC * rate;
        if credit > burst {
            credit = burst;
        }
        (*st).last_ns = now;
        if credit < NS_PER_SEC {
            (*st).credit_ns = credit;
            return false;
        }
        (*st).credit_ns = credit - NS_PER_SEC;
    }
    true
}
