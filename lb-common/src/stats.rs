//! Indices of the global per-CPU counters. The arrays are indexed by these
//! numbers; userspace sums the per-CPU values.

/// Global counters of `lb_xdp` ([`crate::MAP_STATS`]).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Every frame the program saw.
    Rx = 0,
    /// Frames not for a VIP (or for a VIP address but not a served port or
    /// protocol), handed to the kernel untouched.
    Pass = 1,
    /// Frames encapsulated and transmitted to a backend.
    Forwarded = 2,
    /// Connection-table lookups that found a valid entry.
    ConnHit = 3,
    /// Connection-table lookups that found nothing.
    ConnMiss = 4,
    /// Entries found whose backend slot was freed or recycled: re-hashed.
    ConnStale = 5,
    /// Flows pinned by a ring lookup and inserted into the connection table.
    NewFlow = 6,
    /// Ring lookups (new flows, SYNs, and no-conntrack VIPs).
    RingLookup = 7,
    /// ICMP/ICMPv6 echo requests to a VIP answered.
    IcmpEchoReply = 8,
    /// ICMP "fragmentation needed" / ICMPv6 "packet too big" sent.
    IcmpTooBigSent = 9,
    /// Dropped: malformed (truncated, bad header length, bad version).
    DropMalformed = 10,
    /// Dropped: IPv4 fragment or IPv6 fragment header, for a VIP.
    DropFragment = 11,
    /// Dropped: IPv4 options or IPv6 extension headers, for a VIP.
    DropIpOptions = 12,
    /// Dropped: VIP has no backend (empty ring).
    DropNoBackend = 13,
    /// Dropped: too big after encapsulation and no ICMP could be sent (or an
    /// ICMP error to hand on to a backend would not fit the MTU).
    DropTooBig = 14,
    /// Dropped: the frame could not be grown/shrunk or rewritten.
    DropEncapFailed = 15,
    /// Connection-table inserts that failed (the flow is still forwarded).
    ConnInsertFailed = 16,
    /// Dropped: too big, and the ICMP reply was rate-limited.
    IcmpRateLimited = 17,
    /// ICMP "destination unreachable" (incl. "fragmentation needed") and
    /// ICMPv6 "destination unreachable" / "packet too big" about a VIP flow,
    /// encapsulated to the flow's backend (direct server return: the backend
    /// sent the packet the error is about, so it must learn of it).
    IcmpErrorForwarded = 18,
    /// Dropped: an ICMP error to a VIP address whose quoted packet is cut
    /// short (less than its IP header and 8 bytes of ports).
    DropIcmpQuoteTruncated = 19,
    /// Dropped: an ICMP error to a VIP address whose quoted IP header is
    /// malformed (wrong version, IPv4 header length other than 20).
    DropIcmpQuoteMalformed = 20,
    /// Dropped: an echo request to a VIP from a multicast, broadcast or
    /// reserved source (IPv4 224.0.0.0/3, IPv6 ff00::/8), which a host must
    /// not answer (RFC 1122 3.2.2.6): it would make the VIP an amplifier.
    DropEchoBadSource = 21,
    /// Dropped: an IPv4 packet to a VIP address whose header checksum is wrong.
    DropBadChecksum = 22,
    /// New flows forwarded by the ring alone, without a connection-table
    /// entry, because this CPU's budget of new entries per second
    /// (`LbConfig::new_flow_rate`) was spent: a SYN flood cannot churn the
    /// table and evict established flows. Such a flow is not pinned.
    NewFlowUnpinned = 23,
    /// TCP packets of an established flow (not a SYN) that missed the
    /// connection table (another node's flow, a restart, an eviction) and
    /// were sent to the *draining* backend the VIP's pre-drain ring names
    /// at their position, instead of being re-hashed onto the current ring
    /// (which would reset them). Their entry is re-created.
    ConnDrainFallback = 24,
    /// Capture records not written because the capture ring was full (the
    /// packet itself is handled as always: a capture never stalls or drops
    /// traffic).
    CaptureLost = 25,
}

/// Number of [`Stat`] counters.
pub const STAT_COUNT: u32 = 26;

/// The value of [`crate::MAP_STATS`] (a per-CPU array of one element): every
/// global counter of one CPU, indexed by [`Stat`]. One record rather than one
/// array element per counter so the program looks the CPU's record up once
/// per packet and then only adds.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters(pub [u64; STAT_COUNT as usize]);
const _: () = assert!(core::mem::size_of::<Counters>() == 8 * STAT_COUNT as usize);

impl Stat {
    /// Every counter, in index order.
    pub const ALL: [Stat; STAT_COUNT as usize] = [
        Stat::Rx,
        Stat::Pass,
        Stat::Forwarded,
        Stat::ConnHit,
        Stat::ConnMiss,
        Stat::ConnStale,
        Stat::NewFlow,
        Stat::RingLookup,
        Stat::IcmpEchoReply,
        Stat::IcmpTooBigSent,
        Stat::DropMalformed,
        Stat::DropFragment,
        Stat::DropIpOptions,
        Stat::DropNoBackend,
        Stat::DropTooBig,
        Stat::DropEncapFailed,
        Stat::ConnInsertFailed,
        Stat::IcmpRateLimited,
        Stat::IcmpErrorForwarded,
        Stat::DropIcmpQuoteTruncated,
        Stat::DropIcmpQuoteMalformed,
        Stat::DropEchoBadSource,
        Stat::DropBadChecksum,
        Stat::NewFlowUnpinned,
        Stat::ConnDrainFallback,
        Stat::CaptureLost,
    ];

    /// Stable snake_case name, used in the API and JSON output.
    pub const fn name(self) -> &'static str {
        match self {
            Stat::Rx => "rx",
            Stat::Pass => "pass",
            Stat::Forwarded => "forwarded",
            Stat::ConnHit => "conn_hit",
            Stat::ConnMiss => "conn_miss",
            Stat::ConnStale => "conn_stale",
            Stat::NewFlow => "new_flow",
            Stat::RingLookup => "ring_lookup",
            Stat::IcmpEchoReply => "icmp_echo_reply",
            Stat::IcmpTooBigSent => "icmp_too_big_sent",
            Stat::DropMalformed => "drop_malformed",
            Stat::DropFragment => "drop_fragment",
            Stat::DropIpOptions => "drop_ip_options",
            Stat::DropNoBackend => "drop_no_backend",
            Stat::DropTooBig => "drop_too_big",
            Stat::DropEncapFailed => "drop_encap_failed",
            Stat::ConnInsertFailed => "conn_insert_failed",
            Stat::IcmpRateLimited => "icmp_rate_limited",
            Stat::IcmpErrorForwarded => "icmp_error_forwarded",
            Stat::DropIcmpQuoteTruncated => "drop_icmp_quote_truncated",
            Stat::DropIcmpQuoteMalformed => "drop_icmp_quote_malformed",
            Stat::DropEchoBadSource => "drop_echo_bad_source",
            Stat::DropBadChecksum => "drop_bad_checksum",
            Stat::NewFlowUnpinned => "new_flow_unpinned",
            Stat::ConnDrainFallback => "conn_drain_fallback",
            Stat::CaptureLost => "capture_lost",
        }
    }
}

/// The fate of a frame, as the counters record it. Every frame `lb_xdp`
/// sees (`rx`) ends in exactly one counter that has an outcome; the other
/// counters (connection-table hits and misses, ring lookups, ...) describe
/// how it got there. So `rx` equals the sum of the outcome counters, which
/// is what the fuzz test reconciles frame by frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// XDP_PASS: handed to the kernel untouched.
    Passed,
    /// XDP_TX: encapsulated towards a backend.
    Forwarded,
    /// XDP_TX: answered by the balancer itself (ICMP).
    Answered,
    /// XDP_DROP, for the counter's reason.
    Dropped,
}

impl Stat {
    /// The outcome this counter records, or `None` for a counter that
    /// describes the path rather than the end (`rx`, conn-table and ring
    /// counters, failed inserts of forwarded flows).
    pub const fn outcome(self) -> Option<Outcome> {
        match self {
            Stat::Pass => Some(Outcome::Passed),
            Stat::Forwarded | Stat::IcmpErrorForwarded => Some(Outcome::Forwarded),
            Stat::IcmpEchoReply | Stat::IcmpTooBigSent => Some(Outcome::Answered),
            Stat::DropMalformed
            | Stat::DropFragment
            | Stat::DropIpOptions
            | Stat::DropNoBackend
            | Stat::DropTooBig
            | Stat::DropEncapFailed
            | Stat::IcmpRateLimited
            | Stat::DropIcmpQuoteTruncated
            | Stat::DropIcmpQuoteMalformed
            | Stat::DropEchoBadSource
            | Stat::DropBadChecksum => Some(Outcome::Dropped),
            Stat::Rx
            | Stat::ConnHit
            | Stat::ConnMiss
            | Stat::ConnStale
            | Stat::NewFlow
            | Stat::RingLookup
            | Stat::ConnInsertFailed
            | Stat::NewFlowUnpinned
            | Stat::ConnDrainFallback
            | Stat::CaptureLost => None,
        }
    }
}

/// Counters of `lb_decap` ([`crate::MAP_DECAP_STATS`]).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecapStat {
    /// IPv4 inside IPv4 decapsulated.
    V4InV4 = 0,
    /// IPv6 inside IPv4 decapsulated.
    V6InV4 = 1,
    /// IPv4 inside IPv6 decapsulated.
    V4InV6 = 2,
    /// IPv6 inside IPv6 decapsulated.
    V6InV6 = 3,
    /// Frames passed untouched (not IP-in-IP, or not for a local address).
    Pass = 4,
    /// IP-in-IP for a local address that could not be decapsulated
    /// (truncated, outer options or fragments), or a GUE packet for a local
    /// address and the GUE port that is not one (cut short, fragmented, a
    /// payload that is not an IPv4/IPv6 packet): dropped.
    Drop = 5,
    /// GUE: IPv4 inside UDP inside IPv4 decapsulated.
    GueV4InV4 = 6,
    /// GUE: IPv6 inside UDP inside IPv4 decapsulated.
    GueV6InV4 = 7,
    /// GUE: IPv4 inside UDP inside IPv6 decapsulated.
    GueV4InV6 = 8,
    /// GUE: IPv6 inside UDP inside IPv6 decapsulated.
    GueV6InV6 = 9,
}

/// Number of [`DecapStat`] counters.
pub const DECAP_STAT_COUNT: u32 = 10;

impl DecapStat {
    /// Every counter, in index order.
    pub const ALL: [DecapStat; DECAP_STAT_COUNT as usize] = [
        DecapStat::V4InV4,
        DecapStat::V6InV4,
        DecapStat::V4InV6,
        DecapStat::V6InV6,
        DecapStat::Pass,
        DecapStat::Drop,
        DecapStat::GueV4InV4,
        DecapStat::GueV6InV4,
        DecapStat::GueV4InV6,
        DecapStat::GueV6InV6,
    ];

    /// Stable snake_case name.
    pub const fn name(self) -> &'static str {
        match self {
            DecapStat::V4InV4 => "v4_in_v4",
            DecapStat::V6InV4 => "v6_in_v4",
            DecapStat::V4InV6 => "v4_in_v6",
            DecapStat::V6InV6 => "v6_in_v6",
            DecapStat::Pass => "pass",
            DecapStat::Drop => "drop",
            DecapStat::GueV4InV4 => "gue_v4_in_v4",
            DecapStat::GueV6InV4 => "gue_v6_in_v4",
            DecapStat::GueV4InV6 => "gue_v4_in_v6",
            DecapStat::GueV6InV6 => "gue_v6_in_v6",
        }
    }
}
