//! Cut-down builds of the balancer, for the bench's cost breakdown.
//!
//! The packet path is generic over a [`Variant`]: the production program
//! `lb_xdp` is `balance::<Full>`, and with the `bench` cargo feature the same
//! object also holds `lb_xdp_upto_*` programs that stop right after one stage
//! (and count nothing), plus `lb_xdp_nocount` (everything but the counters).
//! Timing each of them in front of the same frame and subtracting neighbours
//! gives what each stage costs *in this code*, not in a re-implementation.
//!
//! Why generics and not a run-time switch: `B::STOP` and `B::COUNT` are
//! constants of each monomorphised copy, so `lb_xdp` compiles to exactly the
//! code it would have without this module (every `stop` test folds to
//! `false`); a switch read from a map would cost a load and a branch per
//! checkpoint in production.

/// The stages of the packet path, in the order the hit path meets them.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Program entry, nothing done yet.
    Entry,
    /// The settings block has been read.
    Config,
    /// Ethernet and the IP header are parsed.
    L3,
    /// The destination is known to be a VIP address (or not).
    VipAddr,
    /// The TCP/UDP ports (and SYN flag) are read.
    Ports,
    /// The VIP entry has been looked up.
    Vip,
    /// The connection table has been looked up (hit path).
    Conn,
    /// The pinned backend's entry has been read and checked (hit path).
    Backend,
    /// Flow hash and Maglev ring position read (new flows).
    Ring,
    /// The connection-table entry of a new flow is inserted.
    Insert,
    /// Never stops: the whole path runs.
    Never,
}

/// What one build of the packet path does.
pub trait Variant {
    /// The stage after which the program returns [`STOPPED`].
    const STOP: Stage;
    /// Whether counters are updated.
    const COUNT: bool;
    /// Whether a ring choice is pinned in the connection table.
    const PIN: bool = true;
}

/// The production balancer.
pub struct Full;
impl Variant for Full {
    const STOP: Stage = Stage::Never;
    const COUNT: bool = true;
}

/// The backend choice made on behalf of an ICMP error (`icmp_error`): the
/// production path, but the lookups count nothing (they are not flow events)
/// and a ring choice is not pinned (an error message, perhaps forged, must
/// not create flow state; the flow's own next packet takes the same ring
/// position anyway).
pub struct Quiet;
impl Variant for Quiet {
    const STOP: Stage = Stage::Never;
    const COUNT: bool = false;
    const PIN: bool = false;
}

/// The verdict of a program that stopped at its checkpoint. `XDP_REDIRECT`
/// because nothing else in `lb_xdp` returns it: the bench can tell "reached
/// the checkpoint" from every real verdict. (BPF_PROG_TEST_RUN without live
/// frames only reports the value, it redirects nothing.)
pub const STOPPED: u32 = aya_ebpf::bindings::xdp_action::XDP_REDIRECT;

/// True when variant `B` stops after `at`. `keep` is a value derived from
/// what the stage produced: it is stored (volatile) so the compiler cannot
/// delete the stage's work as unused once the rest of the path is gone.
#[inline(always)]
pub fn stop<B: Variant>(at: Stage, keep: u64) -> bool {
    if B::STOP as u8 != at as u8 {
        return false;
    }
    let mut sink = 0u64;
    // SAFETY: a store to a local; volatile only to keep `keep` alive.
    unsafe { core::ptr::write_volatile(&mut sink, keep) };
    true
}

/// Declares the bench variants: one struct and one XDP program each.
#[cfg(feature = "bench")]
macro_rules! variants {
    ($($prog:ident, $ty:ident, $stop:ident, $count:literal;)*) => {$(
        #[doc = concat!("Bench variant: stops after `", stringify!($stop), "`.")]
        pub struct $ty;
        impl Variant for $ty {
            const STOP: Stage = Stage::$stop;
            const COUNT: bool = $count;
        }
        #[aya_ebpf::macros::xdp]
        pub fn $prog(ctx: aya_ebpf::programs::XdpContext) -> u32 {
            crate::balance::<$ty>(&ctx)
        }
    )*};
}

#[cfg(feature = "bench")]
variants! {
    lb_xdp_upto_entry, UptoEntry, Entry, false;
    lb_xdp_upto_config, UptoConfig, Config, false;
    lb_xdp_upto_l3, UptoL3, L3, false;
    lb_xdp_upto_vip_addr, UptoVipAddr, VipAddr, false;
    lb_xdp_upto_ports, UptoPorts, Ports, false;
    lb_xdp_upto_vip, UptoVip, Vip, false;
    lb_xdp_upto_conn, UptoConn, Conn, false;
    lb_xdp_upto_backend, UptoBackend, Backend, false;
    lb_xdp_upto_ring, UptoRing, Ring, false;
    lb_xdp_upto_insert, UptoInsert, Insert, false;
    lb_xdp_nocount, NoCount, Never, false;
}
