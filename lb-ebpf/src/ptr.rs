//! The single bounds-checked way to touch packet memory.

use aya_ebpf::programs::XdpContext;

/// Pointer to a `T` at byte offset `off` of the frame, or `None` when the frame
/// is too short. The comparison against `data_end` is what the verifier needs
/// to see before any access through the returned pointer.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *mut T)
}

/// Frame length in bytes.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}

/// Grows (`delta < 0`) or shrinks the frame at its head. All packet pointers
/// are invalid afterwards. `None` if the kernel refused.
#[inline(always)]
pub fn adjust_head(ctx: &XdpContext, delta: i32) -> Option<()> {
    let rc = unsafe { aya_ebpf::helpers::bpf_xdp_adjust_head(ctx.ctx, delta) };
    if rc == 0 { Some(()) } else { None }
}

/// Grows or shrinks (`delta < 0`) the frame at its tail. All packet pointers
/// are invalid afterwards.
#[inline(always)]
pub fn adjust_tail(ctx: &XdpContext, delta: i32) -> Option<()> {
    let rc = unsafe { aya_ebpf::helpers::bpf_xdp_adjust_tail(ctx.ctx, delta) };
    if rc == 0 { Some(()) } else { None }
}
