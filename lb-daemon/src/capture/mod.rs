//! Packet capture, the reader's side: turns the records `lb_xdp` writes to
//! the capture ring into frames with their verdict, applies the parts of
//! the filter that need the verdict (drops only, backend). lbctl writes the
//! frames as pcapng.
//!
//! The kernel writes two records per frame (`lb_common::capture`): the frame
//! as received, before the packet path runs, and then the verdict (alone,
//! or with the frame as sent). One CPU handles one frame at a time, so the
//! records of a frame are consecutive among that CPU's records; they carry
//! the same `cpu` and `ts_ns`, which is how [`Pairer`] joins them.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use lb_common::{
    CAPTURE_DIR_RECEIVED, CAPTURE_DIR_SENT, CAPTURE_DIR_VERDICT, CaptureHeader, FAMILY_V4,
    FAMILY_V6,
};

/// One record as read from the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its header.
    pub hdr: CaptureHeader,
    /// The frame bytes it carries (`hdr.cap_len` of them).
    pub data: Vec<u8>,
}

impl Record {
    /// Parses a ring record; `None` if it is shorter than its header says.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let hlen = std::mem::size_of::<CaptureHeader>();
        if bytes.len() < hlen {
            return None;
        }
        // SAFETY: at least a header's bytes; CaptureHeader is repr(C) plain
        // integers, read unaligned.
        let hdr: CaptureHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let data = bytes.get(hlen..hlen + hdr.cap_len as usize)?.to_vec();
        Some(Self { hdr, data })
    }
}

/// What the program did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// XDP_TX: forwarded to a backend (or answered, e.g. ICMP).
    Tx,
    /// XDP_PASS: handed to the kernel.
    Pass,
    /// XDP_DROP.
    Drop,
    /// XDP_ABORTED (a program error).
    Aborted,
}

impl Verdict {
    /// From the XDP action number.
    pub fn from_action(a: u32) -> Self {
        match a {
            3 => Verdict::Tx,
            2 => Verdict::Pass,
            1 => Verdict::Drop,
            _ => Verdict::Aborted,
        }
    }

    /// Lower-case name (`tx`, `pass`, `drop`, `aborted`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Tx => "tx",
            Verdict::Pass => "pass",
            Verdict::Drop => "drop",
            Verdict::Aborted => "aborted",
        }
    }
}

/// A captured frame with its verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Monotonic time stamp (ns) of the frame's arrival.
    pub ts_ns: u64,
    /// Whether this is the frame as sent (after encapsulation).
    pub sent: bool,
    /// The frame's length on the wire.
    pub orig_len: u32,
    /// Its first bytes.
    pub data: Vec<u8>,
    /// The verdict.
    pub verdict: Verdict,
    /// Where a transmitted frame went: the backend of a forwarded packet.
    pub sent_to: Option<IpAddr>,
}

fn sent_to(h: &CaptureHeader) -> Option<IpAddr> {
    let b = |w: u32| w.to_ne_bytes();
    match h.sent_family {
        FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::from(b(h.sent_to[0])))),
        FAMILY_V6 => {
            let mut o = [0u8; 16];
            for (i, w) in h.sent_to.iter().enumerate() {
                o[i * 4..i * 4 + 4].copy_from_slice(&b(*w));
            }
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => None,
    }
}

/// Joins each received record with its verdict record.
#[derive(Debug, Default)]
pub struct Pairer {
    pending: HashMap<u32, Record>,
}

impl Pairer {
    /// Takes the next record; returns the frames it completes (the received
    /// frame, and the frame as sent if the record carries it). A received
    /// record whose verdict never came (the ring was full) is dropped when
    /// the next one of its CPU arrives.
    pub fn push(&mut self, r: Record) -> Vec<Frame> {
        match r.hdr.direction {
            CAPTURE_DIR_RECEIVED => {
                self.pending.insert(r.hdr.cpu, r);
                Vec::new()
            }
            CAPTURE_DIR_VERDICT | CAPTURE_DIR_SENT => {
                let Some(rx) = self.pending.remove(&r.hdr.cpu) else {
                    return Vec::new();
                };
                if rx.hdr.ts_ns != r.hdr.ts_ns {
                    return Vec::new();
                }
                let verdict = Verdict::from_action(r.hdr.action);
                let to = sent_to(&r.hdr);
                let mut out = vec![Frame {
                    ts_ns: rx.hdr.ts_ns,
                    sent: false,
                    orig_len: rx.hdr.orig_len,
                    data: rx.data,
                    verdict,
                    sent_to: to,
                }];
                if r.hdr.direction == CAPTURE_DIR_SENT {
                    out.push(Frame {
                        ts_ns: r.hdr.ts_ns,
                        sent: true,
                        orig_len: r.hdr.orig_len,
                        data: r.data,
                        verdict,
                        sent_to: to,
                    });
                }
                out
            }
            _ => Vec::new(),
        }
    }
}

/// The parts of a capture filter applied to frames with their verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerdictFilter {
    /// Only dropped frames.
    pub drops_only: bool,
    /// Only frames sent to this address.
    pub backend: Option<IpAddr>,
}

impl VerdictFilter {
    /// Whether `f` is wanted.
    pub fn accepts(&self, f: &Frame) -> bool {
        if self.drops_only && f.verdict != Verdict::Drop {
            return false;
        }
        match self.backend {
            Some(b) => f.sent_to == Some(b),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(direction: u8, cpu: u32, ts: u64, action: u32, data: &[u8]) -> Record {
        Record {
            hdr: CaptureHeader {
                ts_ns: ts,
                orig_len: data.len() as u32,
                cap_len: data.len() as u32,
                action,
                cpu,
                direction,
                sent_family: if action == 3 { FAMILY_V4 } else { 0 },
                sent_to: [u32::from_ne_bytes([198, 19, 0, 11]), 0, 0, 0],
                ..CaptureHeader::default()
            },
            data: data.to_vec(),
        }
    }

    #[test]
    fn records_pair_per_cpu_and_verdicts_filter() {
        let mut p = Pairer::default();
        // Two CPUs interleaved.
        assert!(p.push(rec(CAPTURE_DIR_RECEIVED, 0, 10, 0, b"a")).is_empty());
        assert!(p.push(rec(CAPTURE_DIR_RECEIVED, 1, 11, 0, b"b")).is_empty());
        let b = p.push(rec(CAPTURE_DIR_VERDICT, 1, 11, 1, b""));
        assert_eq!(b.len(), 1);
        assert_eq!(
            (b[0].data.as_slice(), b[0].verdict),
            (&b"b"[..], Verdict::Drop)
        );
        assert_eq!(b[0].sent_to, None);
        let a = p.push(rec(CAPTURE_DIR_SENT, 0, 10, 3, b"A!"));
        assert_eq!(a.len(), 2);
        assert!(!a[0].sent && a[1].sent);
        assert_eq!(a[1].data, b"A!");
        assert_eq!(a[0].sent_to, Some("198.19.0.11".parse().unwrap()));
        // A verdict whose received record was lost pairs with nothing.
        assert!(p.push(rec(CAPTURE_DIR_VERDICT, 0, 99, 2, b"")).is_empty());

        let drops = VerdictFilter {
            drops_only: true,
            backend: None,
        };
        assert!(drops.accepts(&b[0]) && !drops.accepts(&a[0]));
        let be = VerdictFilter {
            drops_only: false,
            backend: Some("198.19.0.11".parse().unwrap()),
        };
        assert!(be.accepts(&a[0]) && !be.accepts(&b[0]));
    }

    #[test]
    fn a_short_record_is_refused() {
        assert_eq!(Record::parse(&[0u8; 10]), None);
        let mut bytes = vec![0u8; std::mem::size_of::<CaptureHeader>()];
        bytes[12] = 5; // cap_len 5, but no data follows
        assert_eq!(Record::parse(&bytes), None);
    }
}
