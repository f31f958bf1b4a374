//! Packet capture: the filter the daemon writes while a capture runs and the
//! record `lb_xdp` puts in the capture ring for each matching frame.
//!
//! XDP sees frames before the kernel's packet taps do, so `tcpdump` on the
//! LB host never sees what `lb_xdp` forwards or drops. While a capture is
//! active (flag [`CAPTURE_F_ACTIVE`] in [`MAP_CAPTURE`]), the program copies
//! each frame as received (and, with [`CAPTURE_F_SENT`], as sent) into a BPF
//! ring buffer ([`MAP_CAPTURE_RING`]); the daemon streams the records over
//! the API. A full ring drops the record (counted as
//! [`crate::Stat::CaptureLost`]), never the packet.

/// Single-entry array: `0` -> [`CaptureFilter`]. Its `flags` are the one read
/// every packet pays when no capture runs.
pub const MAP_CAPTURE: &str = "LB_CAPTURE";
/// Per-CPU single-entry array: the `ts_ns` of the frame this CPU is
/// capturing (0: none), from the received record to the verdict record.
/// Kept in a map rather than in a variable of the program: a variable alive
/// across the whole packet path costs stack the verifier does not have.
pub const MAP_CAPTURE_PENDING: &str = "LB_CAPTURE_PENDING";
/// BPF ring buffer of [`CaptureRecord`]s.
pub const MAP_CAPTURE_RING: &str = "LB_CAPTURE_RING";
/// Bytes of the capture ring (a power-of-two multiple of the page size):
/// about a thousand full frames.
pub const CAPTURE_RING_BYTES: u32 = 1 << 21;

/// A capture is running: copy matching frames.
pub const CAPTURE_F_ACTIVE: u32 = 1 << 0;
/// Only frames to [`CaptureFilter::vip_addr`] (and port/protocol if set).
pub const CAPTURE_F_VIP: u32 = 1 << 1;
/// Only frames sent to [`CaptureFilter::backend`] (forwarded to it).
/// Applied by the reader (the daemon): the verdict is known only after the
/// received copy is in the ring.
pub const CAPTURE_F_BACKEND: u32 = 1 << 2;
/// Only frames the program dropped (applied by the reader, as
/// [`CAPTURE_F_BACKEND`]).
pub const CAPTURE_F_DROPS_ONLY: u32 = 1 << 3;
/// Also copy each transmitted frame as sent (after encapsulation).
pub const CAPTURE_F_SENT: u32 = 1 << 4;

/// Largest number of bytes copied per frame (the snap length's ceiling).
pub const CAPTURE_SNAP_MAX: u32 = 2048;

/// Value of [`MAP_CAPTURE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureFilter {
    /// `CAPTURE_F_*`.
    pub flags: u32,
    /// Bytes to copy per frame, 1..=[`CAPTURE_SNAP_MAX`].
    pub snaplen: u32,
    /// VIP address (map layout) with [`CAPTURE_F_VIP`].
    pub vip_addr: [u32; 4],
    /// Backend address (map layout) with [`CAPTURE_F_BACKEND`].
    pub backend: [u32; 4],
    /// VIP port (raw network order); 0 = any.
    pub vip_port: u16,
    /// VIP protocol; 0 = any.
    pub vip_proto: u8,
    /// [`crate::FAMILY_V4`] or [`crate::FAMILY_V6`] of `vip_addr`.
    pub vip_family: u8,
    /// Family of `backend`.
    pub backend_family: u8,
    /// Explicit padding.
    pub _pad1: u8,
    /// Explicit padding.
    pub _pad2: u16,
}
const _: () = assert!(core::mem::size_of::<CaptureFilter>() == 48);

/// [`CaptureHeader::direction`]: the frame as it arrived, before the
/// program handled it (`action` not known yet: the record that follows
/// from the same `cpu` with the same `ts_ns` carries it).
pub const CAPTURE_DIR_RECEIVED: u8 = 0;
/// [`CaptureHeader::direction`]: the frame as `lb_xdp` sent it (XDP_TX),
/// with the verdict of the received record of the same `cpu` and `ts_ns`.
pub const CAPTURE_DIR_SENT: u8 = 1;
/// [`CaptureHeader::direction`]: the verdict alone (no frame bytes) of the
/// received record of the same `cpu` and `ts_ns`.
pub const CAPTURE_DIR_VERDICT: u8 = 2;

/// The header of a capture record. A frame gives two records: the frame as
/// received, copied before the program handles it, then its verdict
/// (alone, or with the frame as sent). Holding one ring reservation across
/// the whole packet path would make the program's stack too deep for the
/// verifier, and copying after it would see the frame already rewritten.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureHeader {
    /// `bpf_ktime_get_ns` (monotonic clock) when the frame arrived; with
    /// `cpu`, what pairs a frame's records.
    pub ts_ns: u64,
    /// The frame's length.
    pub orig_len: u32,
    /// Bytes of it in `data` (0 for [`CAPTURE_DIR_VERDICT`]).
    pub cap_len: u32,
    /// The XDP action the program returned (`XDP_ABORTED` 0, `XDP_DROP` 1,
    /// `XDP_PASS` 2, `XDP_TX` 3); unset in a received record.
    pub action: u32,
    /// The CPU that handled the frame.
    pub cpu: u32,
    /// [`CAPTURE_DIR_RECEIVED`], [`CAPTURE_DIR_SENT`] or [`CAPTURE_DIR_VERDICT`].
    pub direction: u8,
    /// Family of `sent_to` (0: not transmitted).
    pub sent_family: u8,
    /// Explicit padding.
    pub _pad: u16,
    /// Explicit padding.
    pub _pad2: u32,
    /// Outer destination of a transmitted frame, map layout: the backend of
    /// a forwarded packet (the client, for an ICMP reply the LB sent).
    pub sent_to: [u32; 4],
}
const _: () = assert!(core::mem::size_of::<CaptureHeader>() == 48);

/// One record of [`MAP_CAPTURE_RING`]: the header and the frame's first
/// `cap_len` bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CaptureRecord {
    /// What happened to the frame.
    pub hdr: CaptureHeader,
    /// The frame's bytes (the first `hdr.cap_len` are valid).
    pub data: [u8; CAPTURE_SNAP_MAX as usize],
}
const _: () = assert!(core::mem::size_of::<CaptureRecord>().is_multiple_of(8));
