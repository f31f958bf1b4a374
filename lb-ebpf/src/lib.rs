//! Pieces shared by the `lb` XDP programs: wire header layouts, the one
//! bounds-checked packet accessor, Ethernet parsing and checksum arithmetic.
//! The programs themselves are the binaries under `src/bin/`: `lb-xdp` (the
//! balancer), `lb-decap` (the backend side) and, with the `bench` feature,
//! `lb-bench` (the benchmark harness). `docs/packet-path.md` follows one
//! packet through them.
//!
//! # Rules of this crate
//!
//! Code here is compiled to BPF and then checked by the kernel's verifier,
//! which proves, before the program may run, that every path ends, every
//! memory access is in bounds and every helper gets the arguments it
//! expects. The verifier reads the *compiled* instructions, not the Rust, so
//! a few habits keep the compiled shape one it can follow:
//!
//! * **`#[inline(always)]` on everything a program calls.** A real BPF-to-BPF
//!   call costs a call frame (registers saved, at most five arguments, each a
//!   scalar or a pointer), and the verifier re-walks the callee for every
//!   call site. Inlining avoids both and lets the compiler fold constants
//!   across what reads as separate functions (see the per-family copies in
//!   `lb-xdp/main.rs`). The one deliberate exception is the rare "packet too
//!   big" path, kept out of line so it does not crowd the hot path's
//!   registers.
//! * **Loops have constant bounds.** The verifier must see that a loop ends.
//!   A loop over a constant count (`while i < 10`) is unrolled by the
//!   compiler or bounded for the verifier; a loop whose count comes from the
//!   packet (an IHL, a length) would have to re-read and re-check `data` and
//!   `data_end` on every iteration, so we avoid them: IPv4 options and IPv6
//!   extension headers are refused, not walked.
//! * **Every packet access goes through [`ptr::ptr_at`].** It compares
//!   `data + offset + size_of::<T>()` with `data_end` and only then returns
//!   the pointer. That comparison is exactly the fact the verifier needs:
//!   after it, accesses of `size_of::<T>()` bytes through the pointer are
//!   proven in bounds. Reading past it (or computing an offset the verifier
//!   cannot bound) is rejected at load time, not discovered in production.
//! * **Read the fields you need; copy small headers only when you keep
//!   them.** A header copied to the stack (`let h = unsafe { *p }`) is safe
//!   from later packet writes and cheap for a 14-byte Ethernet header, but a
//!   40-byte IPv6 header copied whole costs loads and stores of fields we
//!   never use, and every extra live value competes for the four registers
//!   (r6-r9) that survive a helper call: the rest are spilled to the stack.
//!   After `bpf_xdp_adjust_head` every packet pointer is invalid (the
//!   verifier forgets them): values needed afterwards must already be copied.
//! * **Named header lengths** ([`hdr::IPV4_HDR_LEN`], [`hdr::IPV6_HDR_LEN`],
//!   [`eth::ETH_LEN`], [`eth::ETH_VLAN_LEN`]) instead of bare 14/18/20/40:
//!   each is tied to the struct whose size it is, so an offset and the
//!   layout it skips cannot disagree silently.
//! * **No padding arrays in keys.** Map keys are compared byte for byte, so
//!   their padding must be zero; `lb-common` spells padding as `u8`/`u16`
//!   fields rather than `[u8; 3]`, which LLVM zeroes with a call to `memset`
//!   (a BPF-to-BPF call per key built, measured on the hot path).
//! * **No `unwrap`, no slice indexing with a run-time index, no panics.** A
//!   panic path that survives optimisation makes the verifier reject the
//!   program (the panic handler below loops forever). Indexing is by
//!   constant or after an explicit check the compiler can see.
#![no_std]

pub mod csum;
pub mod eth;
pub mod hdr;
pub mod ptr;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: every panic path must be optimised
    // away, otherwise the verifier rejects the loop below.
    loop {}
}
