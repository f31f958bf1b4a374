//! Packet capture: while the daemon runs a capture, matching frames are
//! copied into the capture ring (`LB_CAPTURE_RING`) with the verdict and the
//! address they were sent to.
//!
//! Cost when no capture runs: [`active`] is one array lookup (inlined by the
//! verifier: a bounds check and an address) and one load of `flags`, asked
//! once per packet; `lb_xdp` keeps the answer across the packet path to
//! decide whether to call [`after`].
//!
//! How a frame is copied: `bpf_ringbuf_reserve` hands us a fixed-size record
//! in the ring (the verifier needs the size as a constant), and
//! `bpf_xdp_load_bytes` copies the first `n` bytes of the frame into it. `n`
//! is variable, so the verifier must be able to prove `1 <= n <= buffer` on
//! the very register passed to the helper (see `copy`). A frame gives two
//! records: [`before`] copies it as received (encapsulation overwrites it
//! later) and submits at once, [`after`] adds the verdict. Both are
//! subprograms with their own small stack frames: holding one reservation
//! across the inlined packet path, or inlining the path twice, made the
//! program's stack deeper than the verifier's 512 bytes.

use aya_ebpf::{
    bindings::xdp_action,
    bindings::xdp_md,
    cty::c_void,
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns},
    programs::XdpContext,
};
use lb_common::{
    CAPTURE_DIR_RECEIVED, CAPTURE_DIR_SENT, CAPTURE_DIR_VERDICT, CAPTURE_F_ACTIVE, CAPTURE_F_SENT,
    CAPTURE_F_VIP, CAPTURE_SNAP_MAX, CaptureFilter, CaptureHeader, CaptureRecord, FAMILY_V4,
    FAMILY_V6, Stat,
};

use crate::maps::{LB_CAPTURE, LB_CAPTURE_PENDING, LB_CAPTURE_RING, LB_STATS};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;

/// The capture filter, if a capture runs.
#[inline(always)]
pub fn active() -> Option<&'static CaptureFilter> {
    let f = LB_CAPTURE.get_ptr(0)?;
    // SAFETY: a valid array element; the daemon rewrites it whole, a racing
    // packet sees the old or the new flags, either is fine.
    let f = unsafe { &*f };
    if f.flags & CAPTURE_F_ACTIVE == 0 {
        None
    } else {
        Some(f)
    }
}

/// Before the packet path: copies the frame as received into the ring if
/// it matches the VIP filter, and leaves its time stamp (the pairing key)
/// in this CPU's `LB_CAPTURE_PENDING` for [`after`] (0: not captured). A
/// subprogram of its own, so the packet path's stack stays as it was.
#[inline(never)]
pub fn before(ctx: &XdpContext, f: &CaptureFilter) {
    let Some(pending) = LB_CAPTURE_PENDING.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's element; XDP runs with preemption off.
    unsafe { *pending = 0 };
    let Some(mut rx) = LB_CAPTURE_RING.reserve(0) else {
        lost();
        return;
    };
    // SAFETY: the reserved record is ours until submit/discard; only its
    // header and data are written, through this pointer.
    let rec = unsafe { &mut *rx.as_mut_ptr() };
    let orig_len = (ctx.data_end() - ctx.data()) as u32;
    rec.hdr.cap_len = copy(ctx, rec, f.snaplen, orig_len);
    if f.flags & CAPTURE_F_VIP != 0 && !vip_matches(f, rec) {
        rx.discard(0);
        return;
    }
    // SAFETY: helper calls without arguments.
    let ts = unsafe { bpf_ktime_get_ns() };
    rec.hdr.ts_ns = ts;
    rec.hdr.orig_len = orig_len;
    rec.hdr.action = 0;
    rec.hdr.cpu = unsafe { bpf_get_smp_processor_id() };
    rec.hdr.direction = CAPTURE_DIR_RECEIVED;
    rec.hdr.sent_family = 0;
    rec.hdr._pad = 0;
    rec.hdr._pad2 = 0;
    rec.hdr.sent_to = [0; 4];
    rx.submit(0);
    // SAFETY: as above.
    unsafe { *pending = ts };
}

/// After the packet path: the verdict of the frame [`before`] captured
/// (if it did), alone or (with [`CAPTURE_F_SENT`] and XDP_TX) with the frame as
/// sent. Written straight into the reserved record, no temporaries: this
/// frame's stack adds to the packet path's, and the verifier allows 512
/// bytes for the deepest chain of calls.
#[inline(never)]
pub fn after(ctx: &XdpContext, action: u32) {
    let Some(f) = active() else { return };
    let Some(pending) = LB_CAPTURE_PENDING.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's element, written by `before` for this frame.
    let ts = unsafe { core::ptr::replace(pending, 0) };
    if ts == 0 {
        return;
    }
    let len = (ctx.data_end() - ctx.data()) as u32;
    let h = if f.flags & CAPTURE_F_SENT != 0 && action == xdp_action::XDP_TX {
        let Some(mut tx) = LB_CAPTURE_RING.reserve(0) else {
            lost();
            return;
        };
        // SAFETY: as in `before`.
        let rec = unsafe { &mut *tx.as_mut_ptr() };
        rec.hdr.cap_len = copy(ctx, rec, f.snaplen, len);
        rec.hdr.direction = CAPTURE_DIR_SENT;
        header(ctx, &mut rec.hdr, ts, len, action);
        tx.submit(0);
        return;
    } else {
        // The verdict alone: a header-sized record, not a whole frame's.
        LB_CAPTURE_RING.reserve_untyped::<CaptureHeader>(0)
    };
    let Some(mut v) = h else {
        lost();
        return;
    };
    // SAFETY: as in `before`.
    let hdr = unsafe { &mut *v.as_mut_ptr() };
    hdr.cap_len = 0;
    hdr.direction = CAPTURE_DIR_VERDICT;
    header(ctx, hdr, ts, len, action);
    v.submit(0);
}

/// The rest of a verdict record's header.
#[inline(always)]
fn header(ctx: &XdpContext, h: &mut CaptureHeader, ts: u64, len: u32, action: u32) {
    h.ts_ns = ts;
    h.orig_len = len;
    h.action = action;
    // SAFETY: a helper without arguments.
    h.cpu = unsafe { bpf_get_smp_processor_id() };
    h._pad = 0;
    h._pad2 = 0;
    h.sent_family = 0;
    h.sent_to = [0; 4];
    if action == xdp_action::XDP_TX {
        outer_dst(ctx, h);
    }
}

/// Counts a record the full ring could not take.
#[inline(always)]
fn lost() {
    if let Some(p) = LB_STATS.get_ptr_mut(0) {
        // SAFETY: this CPU's counters (see stats::Tally).
        unsafe { (*p).0[Stat::CaptureLost as usize] += 1 };
    }
}

/// Copies up to `snaplen` bytes of the frame into `rec.data`; returns how
/// many.
#[inline(always)]
fn copy(ctx: &XdpContext, rec: &mut CaptureRecord, snaplen: u32, len: u32) -> u32 {
    let mut n = if len < snaplen { len } else { snaplen };
    if n > CAPTURE_SNAP_MAX {
        n = CAPTURE_SNAP_MAX;
    }
    // The verifier needs a length it can prove to be 1..=buffer at the
    // helper call. Checked on a 64-bit value read back through a volatile
    // load: otherwise LLVM tests a zero-extended copy and passes the
    // original register, whose bounds the verifier never saw checked.
    let n = n as u64;
    // SAFETY: a read of a local.
    let n = unsafe { core::ptr::read_volatile(&n) };
    if n == 0 || n > CAPTURE_SNAP_MAX as u64 {
        return 0;
    }
    // bpf_xdp_load_bytes (helper 189) with a 64-bit length argument, so no
    // truncation sits between the check and the call.
    // SAFETY: the kernel's helper ABI: arguments in r1..r4, result in r0.
    let load_bytes: unsafe extern "C" fn(*mut xdp_md, u32, *mut c_void, u64) -> i64 =
        unsafe { core::mem::transmute(189usize) };
    // SAFETY: n bytes fit `data` (checked above); the helper bounds-checks
    // the frame side itself.
    let rc = unsafe { load_bytes(ctx.ctx, 0, rec.data.as_mut_ptr().cast(), n) };
    let n = n as u32;
    if rc < 0 { 0 } else { n }
}

/// Reads a byte of the record's data (offset bounded by the caller's mask).
#[inline(always)]
fn byte(rec: &CaptureRecord, off: usize) -> u8 {
    match rec.data.get(off) {
        Some(b) => *b,
        None => 0,
    }
}

#[inline(always)]
fn word(rec: &CaptureRecord, off: usize) -> u32 {
    u32::from_ne_bytes([
        byte(rec, off),
        byte(rec, off + 1),
        byte(rec, off + 2),
        byte(rec, off + 3),
    ])
}

/// Whether the captured frame (as received) is for the filter's VIP.
/// Compared field by field, without temporaries (see [`after`] on stack).
#[inline(always)]
fn vip_matches(f: &CaptureFilter, rec: &CaptureRecord) -> bool {
    let mut l3 = 14usize;
    let mut ethertype = u16::from_be_bytes([byte(rec, 12), byte(rec, 13)]);
    if ethertype == ETH_P_8021Q {
        ethertype = u16::from_be_bytes([byte(rec, 16), byte(rec, 17)]);
        l3 = 18;
    }
    let l4 = if ethertype == ETH_P_IP {
        if f.vip_family != FAMILY_V4
            || word(rec, l3 + 16) != f.vip_addr[0]
            || (f.vip_proto != 0 && byte(rec, l3 + 9) != f.vip_proto)
        {
            return false;
        }
        l3 + ((byte(rec, l3) & 0x0f) as usize) * 4
    } else if ethertype == ETH_P_IPV6 {
        if f.vip_family != FAMILY_V6
            || word(rec, l3 + 24) != f.vip_addr[0]
            || word(rec, l3 + 28) != f.vip_addr[1]
            || word(rec, l3 + 32) != f.vip_addr[2]
            || word(rec, l3 + 36) != f.vip_addr[3]
            || (f.vip_proto != 0 && byte(rec, l3 + 6) != f.vip_proto)
        {
            return false;
        }
        l3 + 40
    } else {
        return false;
    };
    f.vip_port == 0 || u16::from_ne_bytes([byte(rec, l4 + 2), byte(rec, l4 + 3)]) == f.vip_port
}

/// The outer destination of the frame as sent (after `lb_xdp` rewrote it),
/// into `h`.
#[inline(always)]
fn outer_dst(ctx: &XdpContext, h: &mut CaptureHeader) {
    let (start, end) = (ctx.data(), ctx.data_end());
    // Ethernet as we write it: no VLAN tag on what we send.
    if start + 14 + 40 > end && start + 14 + 20 > end {
        return;
    }
    // SAFETY: bounds checked against data_end before each read.
    let ethertype = u16::from_be(unsafe { *((start + 12) as *const u16) });
    if ethertype == ETH_P_IP && start + 14 + 20 <= end {
        h.sent_family = FAMILY_V4;
        h.sent_to[0] = unsafe { core::ptr::read_unaligned((start + 14 + 16) as *const u32) };
    } else if ethertype == ETH_P_IPV6 && start + 14 + 40 <= end {
        h.sent_family = FAMILY_V6;
        h.sent_to = unsafe { core::ptr::read_unaligned((start + 14 + 24) as *const [u32; 4]) };
    }
}
