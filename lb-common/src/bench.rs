//! The bench harness's template layout, shared by `lb_bench_harness` (in
//! lb-ebpf, built only with its `bench` feature) and the userspace benchmark
//! in bench/, so the two sides cannot disagree on it. Nothing in the daemon
//! or `lb_xdp` uses it.

/// Largest frame the harness restores, bytes. The benchmark frames are
/// 64–80 bytes; 128 leaves room without making the copy loop long.
pub const MAX_FRAME: usize = 128;

/// `MAX_FRAME` in 8-byte words (the harness copies whole words).
pub const FRAME_WORDS: usize = MAX_FRAME / 8;

/// Flows that share one client address in the per-flow rewrite: flow `f`
/// gets source port `port_base + f % FLOWS_PER_ADDR` and the low 16 bits of
/// its source address are `addr_base + f / FLOWS_PER_ADDR`.
pub const FLOWS_PER_ADDR: u32 = 64;

/// What the harness writes into the frame before every run of the program
/// under test (array map `BENCH_TEMPLATE`, index 0).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Template {
    /// Frame length in bytes; a multiple of 8, at most [`MAX_FRAME`].
    pub len: u32,
    /// Distinct flows to cycle through; 0 leaves the template's own flow.
    pub nflows: u32,
    /// Byte offset of the low 16 bits of the source address.
    pub addr_off: u32,
    /// Byte offset of the source port.
    pub port_off: u32,
    /// First value of the low 16 address bits (host order).
    pub addr_base: u32,
    /// First source port (host order).
    pub port_base: u32,
    /// Byte offset of the IPv4 header checksum, updated with the address so
    /// the rewritten header stays valid (`lb_xdp` drops VIP packets whose
    /// header checksum is wrong); 0 for IPv6, which has none.
    pub csum_off: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// The frame, as 8-byte words in memory order.
    pub words: [u64; FRAME_WORDS],
}

const _: () = assert!(core::mem::size_of::<Template>() == 32 + MAX_FRAME);

/// Index of the per-CPU counter the harness increments per run (`BENCH_COUNT`).
pub const COUNT_HARNESS: u32 = 0;
/// Index of the per-CPU counter `lb_bench_sink` increments per received frame.
pub const COUNT_SINK: u32 = 1;
