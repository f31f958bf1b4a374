//! Hostile input for `lb_xdp`: random frames and frames mutated from valid
//! VIP packets, run one by one through the real program (BPF_PROG_TEST_RUN)
//! with a configured state, each judged by an oracle written from the
//! outside (it shares no code with lb-ebpf):
//!
//! * the verdict is XDP_PASS, XDP_TX or XDP_DROP, nothing else;
//! * the counters move exactly once per frame: `rx` by one and exactly one
//!   counter that records an outcome ([`Stat::outcome`]), whose kind
//!   matches the verdict (so the global counters reconcile exactly);
//! * a frame that is not addressed to a VIP address, and any passed frame,
//!   comes out byte for byte as it went in;
//! * a forwarded frame is a well-formed encapsulation (outer header lengths
//!   and checksum right, outer destination one of the VIP's backends, outer
//!   source inside the configured prefix) whose payload is exactly the IP
//!   packet received, without any Ethernet padding or trailer;
//! * an answered frame (ICMP) goes back to the sender with valid checksums;
//! * per-VIP and per-backend packet counters add up to `forwarded`.
//!
//! Used by `tests/fuzz.rs` (100,000 frames in CI) and by the bench's `fuzz`
//! figure (1,000,000 frames).

use std::{
    collections::{BTreeMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use lb_common::{Outcome, SLOT_NONE, STAT_COUNT, Stat, VIP_F_NO_CONNTRACK, VIP_F_NO_SPORT};
use lb_daemon::dataplane::Encapsulation;

use crate::{
    Fixture, XDP_DROP, XDP_PASS, XDP_TX,
    pkt::{self, CLIENT_MAC, GW_MAC, Ip4, LB_MAC},
};

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// SplitMix64: a small, seedable generator, so a failing run can be
/// replayed from its seed.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    fn u16(&mut self) -> u16 {
        self.next_u64() as u16
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    /// `min` to `min + spread - 1` random bytes.
    fn some_bytes(&mut self, min: usize, spread: usize) -> Vec<u8> {
        let n = min + self.below(spread);
        self.bytes(n)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One service of the configured state.
#[derive(Clone, Debug)]
struct Service {
    addr: IpAddr,
    /// 0 = all ports.
    port: u16,
    proto: u8,
    backends: Vec<IpAddr>,
}

/// The real `lb_xdp` with a state of several VIPs: both families, TCP and
/// UDP, cross-family backends, an all-port VIP without source ports, a VIP
/// without connection tracking, and a VIP with no backend.
pub struct Target {
    fixture: Fixture,
    services: Vec<Service>,
    vip_addrs: HashSet<IpAddr>,
    backends: Vec<IpAddr>,
    /// VIP index of each service, for the per-VIP counters.
    vip_indices: Vec<u32>,
    /// Backend slots in use.
    slots: Vec<u32>,
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

impl Target {
    /// Loads the program and configures the state. The ICMP "too big" rate
    /// limit is low so both the reply and the rate-limited drop happen.
    #[allow(
        clippy::new_without_default,
        reason = "loading a program into the kernel is not a default value"
    )]
    pub fn new() -> Self {
        Self::with(Encapsulation::Ipip, 0)
    }

    /// [`Target::new`] encapsulating with `encap`, inserting at most
    /// `new_flow_rate` new flows per second and CPU (0 = unlimited), so the
    /// GUE path and unpinned new flows are judged too.
    pub fn with(encap: Encapsulation, new_flow_rate: u32) -> Self {
        let mut fixture = Fixture::with(|c| {
            c.icmp_too_big_rate = 50;
            c.encap = encap;
            c.new_flow_rate = new_flow_rate;
        });
        let be4 = [ip("198.19.0.11"), ip("198.19.0.12"), ip("198.19.0.13")];
        let be6 = [ip("fd00:200::11"), ip("fd00:200::12")];
        let mut slot = 0u32;
        let mut slots = Vec::new();
        let mut services = Vec::new();
        let mut vip_indices = Vec::new();
        // (address, port, protocol, flags, backends)
        let plan: Vec<(&str, u16, u8, u32, Vec<IpAddr>)> = vec![
            ("198.18.100.10", 80, TCP, 0, be4.to_vec()),
            ("198.18.100.10", 53, UDP, 0, vec![be6[0]]),
            ("fd00:100::10", 443, TCP, 0, be6.to_vec()),
            ("fd00:100::10", 53, UDP, 0, vec![be4[0]]),
            ("198.18.100.11", 0, TCP, VIP_F_NO_SPORT, be4[..2].to_vec()),
            ("198.18.100.13", 4789, UDP, VIP_F_NO_CONNTRACK, vec![be4[2]]),
            ("198.18.100.12", 80, TCP, 0, vec![]),
        ];
        for (addr, port, proto, flags, backends) in plan {
            let a = ip(addr);
            let index = fixture.vip(a, port, proto, flags);
            let mut ring_slots = Vec::new();
            for b in &backends {
                slot += 1;
                fixture.backend(slot, *b);
                ring_slots.push(slot);
                slots.push(slot);
            }
            if ring_slots.is_empty() {
                let m = fixture.lb.sizes().ring_size as usize;
                fixture.ring_table(a, port, proto, &vec![SLOT_NONE; m]);
            } else {
                fixture.ring(a, port, proto, &ring_slots);
            }
            vip_indices.push(index);
            services.push(Service {
                addr: a,
                port,
                proto,
                backends,
            });
        }
        let vip_addrs = services.iter().map(|s| s.addr).collect();
        let mut backends: Vec<IpAddr> = be4.iter().chain(be6.iter()).copied().collect();
        backends.sort();
        Self {
            fixture,
            services,
            vip_addrs,
            backends,
            vip_indices,
            slots,
        }
    }

    /// Recycles a random backend slot: same address, next generation, as
    /// the daemon does when a slot is freed and reused.
    fn recycle(&mut self, rng: &mut Rng) {
        let slot = *rng.pick(&self.slots);
        let mut b = self.fixture.lb.backend(slot).expect("backend");
        b.generation = b.generation.wrapping_add(1);
        self.fixture
            .lb
            .set_backend(slot, &b)
            .expect("write backend");
    }

    fn stats(&self) -> [u64; STAT_COUNT as usize] {
        self.fixture.lb.stats().expect("read counters")
    }

    fn vip_packets(&self) -> u64 {
        self.vip_indices
            .iter()
            .map(|&i| self.fixture.lb.vip_stats(i).expect("VIP counters").packets)
            .sum()
    }

    fn backend_packets(&self) -> u64 {
        self.slots
            .iter()
            .map(|&s| {
                self.fixture
                    .lb
                    .backend_stats(s)
                    .expect("backend counters")
                    .packets
            })
            .sum()
    }
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Frames run.
    pub frames: u64,
    /// Frames per XDP verdict name.
    pub verdicts: BTreeMap<&'static str, u64>,
    /// Change of every global counter over the run, by name.
    pub counters: BTreeMap<&'static str, u64>,
    /// Frames the oracle found wrong.
    pub violations: u64,
    /// Violations by kind (the oracle's message up to the first digit).
    pub kinds: BTreeMap<String, u64>,
    /// The first violations, with the frame in hex, to replay.
    pub examples: Vec<String>,
    /// Frames whose destination was not a VIP address (each checked to come
    /// out untouched).
    pub not_for_vip: u64,
    /// Frames mutated from a valid VIP packet.
    pub mutated: u64,
    /// Wall time of the run (generation, program runs, counter reads, checks).
    pub elapsed: Duration,
}

impl Report {
    fn violation(&mut self, why: String, frame: &[u8]) {
        self.violations += 1;
        // Numbers and addresses vary from frame to frame: the kind is the
        // message's words.
        let kind: String = why
            .split_whitespace()
            .filter(|w| {
                !w.chars().any(|c| c.is_ascii_digit())
                    || w.starts_with("IPv")
                    || w.starts_with("ICMPv")
            })
            .collect::<Vec<_>>()
            .join(" ");
        *self.kinds.entry(kind).or_default() += 1;
        if self.examples.len() < 10 {
            let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
            self.examples.push(format!("{why}; frame {hex}"));
        }
    }
}

/// Runs `frames` frames from `seed` through `target` and judges each.
pub fn run(target: &mut Target, seed: u64, frames: u64) -> Report {
    let mut rng = Rng::new(seed);
    let mut report = Report::default();
    let start_counters = target.stats();
    let (vip0, be0) = (target.vip_packets(), target.backend_packets());
    let mut before = start_counters;
    let t0 = Instant::now();
    for n in 0..frames {
        if n % 2000 == 1999 {
            // Concurrent management: a backend slot is recycled (same
            // address, next generation), so the flows pinned to it become
            // stale and are hashed again.
            let before_churn = target.stats();
            target.recycle(&mut rng);
            debug_assert_eq!(before_churn, target.stats());
        }
        let (frame, mutated) = generate(&mut rng, target);
        report.mutated += u64::from(mutated);
        let (verdict, out) = target.fixture.run(&frame);
        let after = target.stats();
        report.frames += 1;
        *report.verdicts.entry(verdict_name(verdict)).or_default() += 1;
        if let Err(why) = judge(target, &frame, verdict, &out, &before, &after, &mut report) {
            report.violation(why, &frame);
        }
        before = after;
    }
    report.elapsed = t0.elapsed();
    for s in Stat::ALL {
        report
            .counters
            .insert(s.name(), before[s as usize] - start_counters[s as usize]);
    }
    let forwarded = report.counters[Stat::Forwarded.name()];
    let (vip, be) = (target.vip_packets() - vip0, target.backend_packets() - be0);
    if vip != forwarded || be != forwarded {
        report.violation(
            format!("per-VIP packets {vip} and per-backend packets {be} != forwarded {forwarded}"),
            &[],
        );
    }
    report
}

fn verdict_name(v: u32) -> &'static str {
    match v {
        0 => "XDP_ABORTED",
        XDP_DROP => "XDP_DROP",
        XDP_PASS => "XDP_PASS",
        XDP_TX => "XDP_TX",
        4 => "XDP_REDIRECT",
        _ => "other",
    }
}

// ---------------------------------------------------------------- oracle

/// Where the IP header starts and which family the frame claims, read the
/// way any Ethernet receiver would (one optional 802.1Q tag).
fn l3_of(frame: &[u8]) -> Option<(usize, u16)> {
    let et = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if et == 0x8100 {
        let inner = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        Some((18, inner))
    } else {
        Some((14, et))
    }
}

/// The IP destination of a frame: `Some(None)` when the frame is not IP (so
/// not for a VIP), `None` when it is too short to say.
fn destination(frame: &[u8]) -> Option<Option<IpAddr>> {
    let (l3, et) = l3_of(frame)?;
    match et {
        0x0800 => {
            let d: [u8; 4] = frame.get(l3 + 16..l3 + 20)?.try_into().ok()?;
            // The program reads the destination only once the whole fixed
            // header is there.
            frame.get(l3 + 19)?;
            Some(Some(Ipv4Addr::from(d).into()))
        }
        0x86DD => {
            let d: [u8; 16] = frame.get(l3 + 24..l3 + 40)?.try_into().ok()?;
            Some(Some(Ipv6Addr::from(d).into()))
        }
        _ => Some(None),
    }
}

fn judge(
    t: &Target,
    frame: &[u8],
    verdict: u32,
    out: &[u8],
    before: &[u64; STAT_COUNT as usize],
    after: &[u64; STAT_COUNT as usize],
    report: &mut Report,
) -> Result<(), String> {
    if ![XDP_PASS, XDP_TX, XDP_DROP].contains(&verdict) {
        return Err(format!("verdict {}", verdict_name(verdict)));
    }
    // The counters: rx once, exactly one outcome, of the verdict's kind.
    let delta = |s: Stat| after[s as usize].wrapping_sub(before[s as usize]);
    if delta(Stat::Rx) != 1 {
        return Err(format!("rx moved by {}", delta(Stat::Rx)));
    }
    let outcomes: Vec<(Stat, u64)> = Stat::ALL
        .iter()
        .filter(|s| s.outcome().is_some() && delta(**s) != 0)
        .map(|s| (*s, delta(*s)))
        .collect();
    let [(stat, 1)] = outcomes[..] else {
        return Err(format!("outcome counters moved: {outcomes:?}"));
    };
    let outcome = stat.outcome().expect("filtered on outcome");
    let agrees = match verdict {
        XDP_PASS => outcome == Outcome::Passed,
        XDP_DROP => outcome == Outcome::Dropped,
        _ => matches!(outcome, Outcome::Forwarded | Outcome::Answered),
    };
    if !agrees {
        return Err(format!(
            "verdict {} counted as {}",
            verdict_name(verdict),
            stat.name()
        ));
    }
    if verdict == XDP_PASS && out != frame {
        return Err("passed frame was modified".into());
    }
    match destination(frame) {
        Some(None) => {
            report.not_for_vip += 1;
            if verdict != XDP_PASS {
                return Err(format!("non-IP frame got {}", verdict_name(verdict)));
            }
        }
        Some(Some(d)) if !t.vip_addrs.contains(&d) => {
            report.not_for_vip += 1;
            if verdict != XDP_PASS {
                return Err(format!(
                    "frame for {d} (not a VIP) got {}",
                    verdict_name(verdict)
                ));
            }
        }
        _ => {}
    }
    match outcome {
        Outcome::Forwarded => check_encap(t, frame, out),
        Outcome::Answered => check_answer(frame, out, stat == Stat::IcmpEchoReply),
        _ => Ok(()),
    }
}

/// The IP packet of `frame` by its own length field, and its family.
fn ip_packet(frame: &[u8]) -> Option<(&[u8], bool)> {
    let (l3, et) = l3_of(frame)?;
    let p = frame.get(l3..)?;
    let len = match et {
        0x0800 => usize::from(u16::from_be_bytes([*p.get(2)?, *p.get(3)?])),
        0x86DD => 40 + usize::from(u16::from_be_bytes([*p.get(4)?, *p.get(5)?])),
        _ => return None,
    };
    Some((p.get(..len)?, et == 0x0800))
}

fn in_prefix(a: IpAddr, prefix: IpAddr, len: u8) -> bool {
    match (a, prefix) {
        (IpAddr::V4(a), IpAddr::V4(p)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(p) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(p)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(p) & mask
        }
        _ => false,
    }
}

/// The backends a packet may be sent to: its service's, or any backend when
/// the inner packet is not a plain TCP/UDP packet to a service (an ICMP
/// error quoting a flow names the flow's backend).
fn allowed_backends(t: &Target, inner: &[u8], v4: bool) -> Vec<IpAddr> {
    let (proto, dst, l4) = if v4 {
        let ihl = usize::from(inner[0] & 0x0f) * 4;
        let d: [u8; 4] = inner[16..20].try_into().unwrap();
        (inner[9], IpAddr::from(d), ihl)
    } else {
        let d: [u8; 16] = inner[24..40].try_into().unwrap();
        (inner[6], IpAddr::from(d), 40)
    };
    if (proto == TCP || proto == UDP) && inner.len() >= l4 + 4 {
        let dport = u16::from_be_bytes([inner[l4 + 2], inner[l4 + 3]]);
        let svc = t
            .services
            .iter()
            .find(|s| s.addr == dst && s.proto == proto && (s.port == dport || s.port == 0));
        if let Some(s) = svc {
            return s.backends.clone();
        }
    }
    t.backends.clone()
}

fn check_encap(t: &Target, frame: &[u8], out: &[u8]) -> Result<(), String> {
    let (inner, inner_v4) = ip_packet(frame).ok_or("forwarded a frame with no IP packet")?;
    let (l3, _) = l3_of(frame).unwrap();
    if out.get(..6) != Some(&GW_MAC[..]) || out.get(6..12) != Some(&LB_MAC[..]) {
        return Err("encapsulated frame: wrong MACs".into());
    }
    if l3 == 18 && out.get(12..16) != frame.get(12..16) {
        return Err("encapsulated frame lost its VLAN tag".into());
    }
    let (ol3, et) = l3_of(out).ok_or("short output")?;
    if ol3 != l3 {
        return Err("encapsulated frame: L2 header changed length".into());
    }
    let o = &out[ol3..];
    let gue_port = match t.fixture.cfg.encap {
        Encapsulation::Gue { port } => Some(port),
        Encapsulation::Ipip => None,
    };
    let want_proto = match gue_port {
        Some(_) => UDP,
        None if inner_v4 => 4,
        None => 41,
    };
    let (outer_src, outer_dst, payload) = match et {
        0x0800 => {
            if o.len() < 20 || o[0] != 0x45 {
                return Err("outer IPv4 header malformed".into());
            }
            if usize::from(u16::from_be_bytes([o[2], o[3]])) != o.len() {
                return Err(format!(
                    "outer IPv4 total length {} but {} bytes follow",
                    u16::from_be_bytes([o[2], o[3]]),
                    o.len()
                ));
            }
            if pkt::checksum(&o[..20]) != 0 {
                return Err("outer IPv4 header checksum wrong".into());
            }
            if o[9] != want_proto {
                return Err(format!("outer protocol {} for this inner packet", o[9]));
            }
            let s: [u8; 4] = o[12..16].try_into().unwrap();
            let d: [u8; 4] = o[16..20].try_into().unwrap();
            (IpAddr::from(s), IpAddr::from(d), &o[20..])
        }
        0x86DD => {
            if o.len() < 40 || o[0] >> 4 != 6 {
                return Err("outer IPv6 header malformed".into());
            }
            if usize::from(u16::from_be_bytes([o[4], o[5]])) + 40 != o.len() {
                return Err("outer IPv6 payload length does not match the frame".into());
            }
            if o[6] != want_proto {
                return Err(format!("outer next header {} for this inner packet", o[6]));
            }
            let s: [u8; 16] = o[8..24].try_into().unwrap();
            let d: [u8; 16] = o[24..40].try_into().unwrap();
            (IpAddr::from(s), IpAddr::from(d), &o[40..])
        }
        other => return Err(format!("encapsulated frame has EtherType {other:#06x}")),
    };
    // GUE (variant 1): UDP to the configured port from a per-flow port in
    // the dynamic range, its length covering the inner packet, then the
    // packet itself.
    let payload = match gue_port {
        None => payload,
        Some(port) => {
            if payload.len() < 8 {
                return Err("GUE frame shorter than its UDP header".into());
            }
            let sport = u16::from_be_bytes([payload[0], payload[1]]);
            let dport = u16::from_be_bytes([payload[2], payload[3]]);
            let len = usize::from(u16::from_be_bytes([payload[4], payload[5]]));
            if dport != port || sport < 49152 || len != payload.len() {
                return Err(format!(
                    "GUE header wrong: ports {sport} -> {dport}, length {len} of {}",
                    payload.len()
                ));
            }
            &payload[8..]
        }
    };
    if payload != inner {
        return Err(format!(
            "inner packet differs from the one received ({} vs {} bytes)",
            payload.len(),
            inner.len()
        ));
    }
    let cfg = &t.fixture.cfg;
    let src_ok = match outer_src {
        IpAddr::V4(_) => in_prefix(outer_src, cfg.v4_src.into(), cfg.v4_src_len),
        IpAddr::V6(_) => in_prefix(outer_src, cfg.v6_src.into(), cfg.v6_src_len),
    };
    if !src_ok {
        return Err(format!(
            "outer source {outer_src} outside the configured prefix"
        ));
    }
    if !allowed_backends(t, inner, inner_v4).contains(&outer_dst) {
        return Err(format!("sent to {outer_dst}, not a backend of this VIP"));
    }
    Ok(())
}

/// The ICMP message of an IP packet (by the packet's own lengths) has a
/// valid checksum.
fn icmp_checksum_ok(p: &[u8], v4: bool) -> bool {
    if v4 {
        let ihl = usize::from(p[0] & 0x0f) * 4;
        let len = usize::from(u16::from_be_bytes([p[2], p[3]]));
        p.get(ihl..len).is_some_and(|m| pkt::checksum(m) == 0)
    } else {
        let len = 40 + usize::from(u16::from_be_bytes([p[4], p[5]]));
        let (Ok(s), Ok(d)) = (
            <[u8; 16]>::try_from(&p[8..24]),
            <[u8; 16]>::try_from(&p[24..40]),
        ) else {
            return false;
        };
        let Some(m) = p.get(40..len) else {
            return false;
        };
        let mut c = pkt::pseudo_header(s.into(), d.into(), ICMPV6, m.len());
        c.extend_from_slice(m);
        pkt::checksum(&c) == 0
    }
}

/// An ICMP answer: to the sender, from the VIP, lengths and IP header
/// checksum right. An echo reply's ICMP checksum is derived from the
/// request's incrementally (the data is not summed again), so it must be
/// valid exactly when the request's was; a generated error is always valid.
fn check_answer(frame: &[u8], out: &[u8], echo: bool) -> Result<(), String> {
    if out.get(..6) != frame.get(6..12) {
        return Err("ICMP answer not addressed to the sender's MAC".into());
    }
    let (l3, _) = l3_of(frame).ok_or("answered a frame with no L2")?;
    let (ol3, et) = l3_of(out).ok_or("short answer")?;
    if ol3 != l3 {
        return Err("answer changed the L2 header length".into());
    }
    let i = &frame[l3..];
    let o = &out[ol3..];
    match et {
        0x0800 => {
            if o.len() < 28
                || o[0] != 0x45
                || usize::from(u16::from_be_bytes([o[2], o[3]])) != o.len()
            {
                return Err("answer's IPv4 header malformed or length wrong".into());
            }
            if pkt::checksum(&o[..20]) != 0 || o[9] != ICMP {
                return Err("answer's IPv4 header checksum wrong".into());
            }
            if o[16..20] != i[12..16] || o[12..16] != i[16..20] {
                return Err("answer not from the VIP to the sender".into());
            }
        }
        0x86DD => {
            if o.len() < 48 || usize::from(u16::from_be_bytes([o[4], o[5]])) + 40 != o.len() {
                return Err("answer's IPv6 length wrong".into());
            }
            if o[6] != ICMPV6 {
                return Err("answer is not ICMPv6".into());
            }
            if o[24..40] != i[8..24] || o[8..24] != i[24..40] {
                return Err("answer not from the VIP to the sender".into());
            }
        }
        other => return Err(format!("answer has EtherType {other:#06x}")),
    }
    let v4 = et == 0x0800;
    let to: IpAddr = if v4 {
        <[u8; 4]>::try_from(&o[16..20]).unwrap().into()
    } else {
        <[u8; 16]>::try_from(&o[24..40]).unwrap().into()
    };
    let group = match to {
        IpAddr::V4(a) => a.octets()[0] >= 224,
        IpAddr::V6(a) => a.octets()[0] == 0xff,
    };
    if group {
        return Err(format!("answered a group or broadcast source {to}"));
    }
    let want = !echo || icmp_checksum_ok(i, v4);
    if icmp_checksum_ok(o, v4) != want {
        return Err(format!(
            "answer's ICMP checksum valid: {}, request's: {}",
            !want,
            icmp_checksum_ok(i, v4)
        ));
    }
    Ok(())
}

// ------------------------------------------------------------- generator

/// Clients come from a small pool, and their ports too, so flows repeat:
/// connection-table hits and stale entries happen, not only new flows.
fn client4(rng: &mut Rng) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, 1 + rng.below(64) as u8)
}

fn client6(rng: &mut Rng) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1 + rng.below(64) as u16)
}

/// A router somewhere on the path: any address.
fn router4(rng: &mut Rng) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, rng.below(100) as u8, 1 + rng.below(254) as u8)
}

fn router6(rng: &mut Rng) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, rng.u16(), 1 + rng.u16() % 0xfffe)
}

/// An address that is not a VIP address: random in the test ranges.
fn other_addr(rng: &mut Rng, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(
            0xc612_0000 | (rng.next_u64() as u32 & 0x1_ffff),
        ))
    } else {
        IpAddr::V6(Ipv6Addr::from(
            (0xfd00u128 << 112) | u128::from(rng.next_u64()),
        ))
    }
}

/// A payload length: mostly small, sometimes near the MTU.
fn payload_len(rng: &mut Rng, room: usize) -> usize {
    match rng.below(10) {
        0..=5 => rng.below(64),
        6..=7 => rng.below(600),
        _ => room.saturating_sub(rng.below(40)),
    }
}

/// A frame from `src` to `dst` carrying `l4` of protocol `proto`, IPv4 with
/// DF set or not, optionally VLAN-tagged.
fn ip_frame(rng: &mut Rng, src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let vlan = rng.chance(10).then(|| rng.u16() & 0x0fff);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = Ip4::new(s, d, proto);
            h.tos = rng.byte();
            if rng.chance(20) {
                h.flags_frag = 0;
            }
            pkt::eth(LB_MAC, CLIENT_MAC, vlan, 0x0800, &pkt::ipv4(&h, l4))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => pkt::eth(
            LB_MAC,
            CLIENT_MAC,
            vlan,
            0x86DD,
            &pkt::ipv6(s, d, proto, rng.byte(), 64, l4),
        ),
        _ => unreachable!("one family per frame"),
    }
}

/// A valid frame: to a service, an ICMP echo or error for a VIP, options,
/// fragments, extension headers, another address, or not IP at all.
fn valid_frame(rng: &mut Rng, t: &Target) -> Vec<u8> {
    let svc = rng.pick(&t.services).clone();
    let v4 = svc.addr.is_ipv4();
    let client: IpAddr = if v4 {
        client4(rng).into()
    } else {
        client6(rng).into()
    };
    let sport = if rng.chance(80) {
        40000 + rng.below(16) as u16
    } else {
        1024 + rng.below(60000) as u16
    };
    let dport = if svc.port == 0 { rng.u16() } else { svc.port };
    let room = if v4 { 1480 } else { 1460 } - 20;
    match rng.below(12) {
        // TCP or UDP to a service (weighted: the common case).
        0..=4 => {
            let n = payload_len(rng, room);
            let payload = rng.bytes(n);
            let l4 = if svc.proto == TCP {
                let any = rng.byte();
                let flags = *rng.pick(&[pkt::SYN, pkt::ACK, pkt::ACK | pkt::PSH, any]);
                pkt::tcp(client, svc.addr, sport, dport, flags, &payload)
            } else {
                pkt::udp(client, svc.addr, sport, dport, &payload)
            };
            ip_frame(rng, client, svc.addr, svc.proto, &l4)
        }
        // ICMP echo request to a VIP address.
        5 => {
            let data = rng.some_bytes(0, 200);
            let rest = [rng.byte(), rng.byte(), rng.byte(), rng.byte()];
            // Sometimes from a group or broadcast source, which must not
            // be answered (RFC 1122 3.2.2.6).
            let client: IpAddr = match (rng.chance(10), client) {
                (true, IpAddr::V4(_)) => {
                    *rng.pick(&[ip("224.0.0.1"), ip("239.1.2.3"), ip("255.255.255.255")])
                }
                (true, IpAddr::V6(_)) => *rng.pick(&[ip("ff02::1"), ip("ff05::2")]),
                (false, c) => c,
            };
            match (client, svc.addr) {
                (IpAddr::V4(_), _) => {
                    let m = pkt::icmp4(8, 0, rest, &data);
                    ip_frame(rng, client, svc.addr, ICMP, &m)
                }
                (IpAddr::V6(c), IpAddr::V6(v)) => {
                    let m = pkt::icmp6(c, v, 128, 0, rest, &data);
                    ip_frame(rng, client, svc.addr, ICMPV6, &m)
                }
                _ => unreachable!(),
            }
        }
        // An ICMP error from a router to the VIP, quoting the VIP's reply
        // to a client (source = VIP, destination = client).
        6 => {
            let router: IpAddr = if v4 {
                router4(rng).into()
            } else {
                router6(rng).into()
            };
            let reply = if svc.proto == TCP {
                pkt::tcp(svc.addr, client, dport, sport, pkt::ACK, &rng.bytes(16))
            } else {
                pkt::udp(svc.addr, client, dport, sport, &rng.bytes(16))
            };
            match (svc.addr, client, router) {
                (IpAddr::V4(v), IpAddr::V4(c), IpAddr::V4(_)) => {
                    let mut h = Ip4::new(v, c, svc.proto);
                    if rng.chance(10) {
                        h.options = vec![1; 4];
                    }
                    let mut quoted = pkt::ipv4(&h, &reply);
                    if rng.chance(10) {
                        quoted[0] = (rng.byte() & 0xf0) | (quoted[0] & 0x0f);
                    }
                    // Sometimes shorter than the IP header and 8 bytes of ports.
                    let cut = 16 + rng.below(quoted.len() - 15);
                    let mtu = (1200 + rng.below(300) as u16).to_be_bytes();
                    let code = *rng.pick(&[4u8, 1, 3, 13]);
                    let m = pkt::icmp4(3, code, [0, 0, mtu[0], mtu[1]], &quoted[..cut]);
                    ip_frame(rng, router, svc.addr, ICMP, &m)
                }
                (IpAddr::V6(v), IpAddr::V6(c), IpAddr::V6(r)) => {
                    let mut quoted = pkt::ipv6(v, c, svc.proto, 0, 64, &reply);
                    if rng.chance(10) {
                        quoted[0] = (rng.byte() & 0xf0) | (quoted[0] & 0x0f);
                    }
                    let cut = 32 + rng.below(quoted.len() - 31);
                    let (kind, rest) = if rng.chance(50) {
                        (2u8, (1280 + rng.below(200) as u32).to_be_bytes())
                    } else {
                        (1u8, [0; 4])
                    };
                    let m = pkt::icmp6(r, v, kind, rng.below(7) as u8, rest, &quoted[..cut]);
                    ip_frame(rng, router, svc.addr, ICMPV6, &m)
                }
                _ => unreachable!(),
            }
        }
        // IPv4 options, fragments; IPv6 extension or fragment headers.
        7 => {
            let l4 = pkt::tcp(
                client,
                svc.addr,
                sport,
                dport,
                pkt::SYN,
                &rng.some_bytes(0, 40),
            );
            match (client, svc.addr) {
                (IpAddr::V4(c), IpAddr::V4(v)) => {
                    let mut h = Ip4::new(c, v, svc.proto);
                    if rng.chance(50) {
                        h.options = vec![1; 4 * (1 + rng.below(10))];
                    } else {
                        h.flags_frag = *rng.pick(&[0x2000, 0x0001, 0x2010, 0x4000 | 0x2000]);
                    }
                    pkt::eth(LB_MAC, CLIENT_MAC, None, 0x0800, &pkt::ipv4(&h, &l4))
                }
                (IpAddr::V6(c), IpAddr::V6(v)) => {
                    let next = *rng.pick(&[0u8, 43, 44, 60, 135]);
                    let mut ext = vec![svc.proto, 0, 0, 0, 0, 0, 0, 0];
                    ext.extend_from_slice(&l4);
                    pkt::eth(
                        LB_MAC,
                        CLIENT_MAC,
                        None,
                        0x86DD,
                        &pkt::ipv6(c, v, next, 0, 64, &ext),
                    )
                }
                _ => unreachable!(),
            }
        }
        // To an address that is not a VIP address.
        8 | 9 => {
            let dst = other_addr(rng, v4);
            let proto = *rng.pick(&[TCP, UDP, if v4 { ICMP } else { ICMPV6 }, 47]);
            let l4 = match proto {
                TCP => pkt::tcp(client, dst, sport, dport, pkt::SYN, &rng.some_bytes(0, 64)),
                UDP => pkt::udp(client, dst, sport, dport, &rng.some_bytes(0, 64)),
                _ => rng.some_bytes(8, 64),
            };
            ip_frame(rng, client, dst, proto, &l4)
        }
        // Not IP: ARP, LLDP, QinQ.
        10 => {
            let et = *rng.pick(&[0x0806u16, 0x88cc, 0x88a8, 0x8847]);
            pkt::eth(LB_MAC, CLIENT_MAC, None, et, &rng.some_bytes(28, 100))
        }
        // A UDP/TCP packet to the VIP address on a port it does not serve.
        _ => {
            let port = rng.u16();
            let l4 = pkt::udp(client, svc.addr, sport, port, &rng.some_bytes(0, 64));
            ip_frame(rng, client, svc.addr, UDP, &l4)
        }
    }
}

/// One mutation of a frame: bits, bytes, lengths, header fields, trailers,
/// truncation, a VLAN tag, another destination.
fn mutate(rng: &mut Rng, t: &Target, f: &mut Vec<u8>) {
    let l3 = l3_of(f).map(|(o, _)| o).unwrap_or(14);
    let set = |f: &mut Vec<u8>, at: usize, v: u8| {
        if let Some(b) = f.get_mut(at) {
            *b = v;
        }
    };
    match rng.below(10) {
        0 => {
            let at = rng.below(f.len());
            f[at] ^= 1 << rng.below(8);
        }
        1 => {
            let at = rng.below(f.len());
            f[at] = rng.byte();
        }
        2 => {
            let len = 14 + rng.below(f.len() - 13);
            f.truncate(len);
        }
        3 => {
            // Ethernet padding (zeros) or a trailer (an FCS, garbage).
            let n = 1 + rng.below(64);
            let tail = if rng.chance(50) {
                vec![0; n]
            } else {
                rng.bytes(n)
            };
            f.extend_from_slice(&tail);
        }
        4 => {
            // IPv4 length / IHL / version / protocol / fragment field, or the
            // IPv6 payload length / next header.
            let at = *rng.pick(&[2usize, 3, 0, 9, 6, 4, 5]);
            let v = rng.byte();
            set(f, l3 + at, v);
        }
        5 => {
            // A length field off by a little.
            let at = l3
                + if f.get(l3).map(|b| b >> 4) == Some(6) {
                    4
                } else {
                    2
                };
            if let Some(b) = f.get(at..at + 2) {
                let v = u16::from_be_bytes([b[0], b[1]]);
                let d = rng.below(9) as i32 - 4;
                let nv = (i32::from(v) + d).clamp(0, 0xffff) as u16;
                f[at..at + 2].copy_from_slice(&nv.to_be_bytes());
            }
        }
        6 => {
            // Insert a VLAN tag (a second one if there is one).
            let tag = [0x81, 0x00, rng.byte() & 0x0f, rng.byte()];
            f.splice(12..12, tag);
        }
        7 => {
            // Another destination: another VIP address or a random one.
            let v4 = f.get(l3).map(|b| b >> 4) == Some(4);
            let dst = if rng.chance(50) {
                let vips: Vec<IpAddr> = t
                    .vip_addrs
                    .iter()
                    .copied()
                    .filter(|a| a.is_ipv4() == v4)
                    .collect();
                *rng.pick(&vips)
            } else {
                other_addr(rng, v4)
            };
            let (at, bytes) = match dst {
                IpAddr::V4(a) => (l3 + 16, a.octets().to_vec()),
                IpAddr::V6(a) => (l3 + 24, a.octets().to_vec()),
            };
            if f.len() >= at + bytes.len() {
                f[at..at + bytes.len()].copy_from_slice(&bytes);
            }
        }
        8 => {
            // L4 ports and TCP flags.
            let l4 = l3
                + if f.get(l3).map(|b| b >> 4) == Some(6) {
                    40
                } else {
                    20
                };
            let at = l4 + *rng.pick(&[0usize, 1, 2, 3, 13]);
            set(f, at, rng.byte());
        }
        _ => {
            // A run of random bytes somewhere in the headers.
            let at = rng.below(f.len().min(80));
            for i in at..(at + 1 + rng.below(8)).min(f.len()) {
                f[i] = rng.byte();
            }
        }
    }
    if f.len() < 14 {
        f.resize(14, 0);
    }
}

/// The next frame, and whether it was mutated from a valid one.
fn generate(rng: &mut Rng, t: &Target) -> (Vec<u8>, bool) {
    match rng.below(20) {
        // Pure noise, of any length the test run accepts.
        0 | 1 => {
            let spread = if rng.chance(80) { 100 } else { 1600 };
            let len = 14 + rng.below(spread);
            (rng.bytes(len), false)
        }
        // Noise behind a valid IP start for a VIP address: deep paths.
        2 => {
            let vip = *rng.pick(&t.services.iter().map(|s| s.addr).collect::<Vec<_>>());
            let mut f = rng.some_bytes(14 + 40, 200);
            match vip {
                IpAddr::V4(a) => {
                    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                    f[14] = 0x45;
                    f[30..34].copy_from_slice(&a.octets());
                }
                IpAddr::V6(a) => {
                    f[12..14].copy_from_slice(&0x86DDu16.to_be_bytes());
                    f[14] = 0x60;
                    f[38..54].copy_from_slice(&a.octets());
                }
            }
            (f, false)
        }
        n => {
            let mut f = valid_frame(rng, t);
            // A quarter stay valid, the rest get one to four mutations.
            if n < 7 {
                return (f, false);
            }
            for _ in 0..1 + rng.below(4) {
                mutate(rng, t, &mut f);
            }
            (f, true)
        }
    }
}
