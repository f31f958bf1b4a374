//! Packet capture in `lb_xdp`, packet-exact: the real program and maps,
//! frames through BPF_PROG_TEST_RUN, the capture ring read back from
//! userspace. A record holds the frame as received (and, on request, as
//! sent) byte for byte, the verdict and the address it was sent to; the
//! filter decides which frames are copied (the VIP) or kept (backend,
//! drops only: by the reader, on the verdict); a
//! full ring loses records (counted) and never a packet; no capture, no
//! record. Records are joined with their verdict by `lb_daemon::capture`.

use std::net::{IpAddr, Ipv4Addr};

use aya::maps::{MapData, RingBuf};
use lb_common::{CAPTURE_F_SENT, CAPTURE_F_VIP, CAPTURE_SNAP_MAX, CaptureFilter, FAMILY_V4, Stat};
use lb_daemon::capture::{Frame, Pairer, Record, Verdict, VerdictFilter};
use lb_privileged_tests::{pkt::*, *};

const TCP: u8 = 6;
const VIP4: &str = "198.18.100.10";
const OTHER: &str = "198.18.100.99";
const CLIENT4: &str = "198.18.1.7";
const BE_A: &str = "198.19.0.11";
const BE_B: &str = "198.19.0.12";

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn word(s: &str) -> [u32; 4] {
    [u32::from_ne_bytes(v4(s).octets()), 0, 0, 0]
}

/// One VIP (tcp/80) whose ring holds `backend` (slot 1).
fn fixture(backend: &str) -> Fixture {
    let mut f = Fixture::new();
    f.vip(ip(VIP4), 80, TCP, 0);
    f.backend(1, ip(backend));
    f.ring(ip(VIP4), 80, TCP, &[1]);
    f
}

fn vip_filter(flags: u32) -> CaptureFilter {
    CaptureFilter {
        flags: flags | CAPTURE_F_VIP,
        snaplen: CAPTURE_SNAP_MAX,
        vip_addr: word(VIP4),
        vip_port: 80u16.to_be(),
        vip_proto: TCP,
        vip_family: FAMILY_V4,
        ..CaptureFilter::default()
    }
}

/// Every frame in the ring, joined with its verdict (lb_daemon::capture).
fn drain(ring: &mut RingBuf<MapData>) -> Vec<Frame> {
    let mut pairer = Pairer::default();
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        out.extend(pairer.push(Record::parse(&item).expect("a whole record")));
    }
    out
}

fn syn(sport: u16) -> Vec<u8> {
    v4_tcp(v4(CLIENT4), v4(VIP4), sport, 80, SYN, b"")
}

#[test]
fn a_capture_records_the_frame_as_received_and_sent_with_verdict_and_backend() {
    require_root();
    let mut f = fixture(BE_A);
    let mut ring = f.lb.start_capture(&vip_filter(CAPTURE_F_SENT)).unwrap();
    let frame = syn(40000);
    let (act, out) = f.run(&frame);
    assert_eq!(act, XDP_TX);
    // Not for the VIP: passed, not captured.
    let other = v4_tcp(v4(CLIENT4), v4(OTHER), 40001, 80, SYN, b"");
    assert_eq!(f.run(&other).0, XDP_PASS);
    // The VIP on another port: not captured either.
    let port = v4_tcp(v4(CLIENT4), v4(VIP4), 40002, 443, SYN, b"");
    f.run(&port);

    let recs = drain(&mut ring);
    assert_eq!(
        recs.len(),
        2,
        "received and sent copies of the one VIP frame"
    );
    let rx = &recs[0];
    assert!(!rx.sent);
    assert_eq!(rx.data, frame, "as received, byte for byte");
    assert_eq!(rx.orig_len as usize, frame.len());
    assert_eq!(rx.verdict, Verdict::Tx);
    assert_eq!(rx.sent_to, Some(ip(BE_A)), "the chosen backend");
    assert!(rx.ts_ns > 0);
    let tx = &recs[1];
    assert!(tx.sent);
    assert_eq!(tx.data, out, "as sent: the encapsulated frame");
    assert_eq!(tx.sent_to, Some(ip(BE_A)));
    assert_eq!(tx.ts_ns, rx.ts_ns);

    // Stopped: nothing more is copied.
    f.lb.stop_capture(ring).unwrap();
    f.run(&syn(40003));
    let mut ring = f.lb.start_capture(&vip_filter(0)).unwrap();
    assert!(drain(&mut ring).is_empty(), "no record while stopped");
    f.lb.stop_capture(ring).unwrap();
    assert_eq!(f.stat(Stat::CaptureLost), 0);
}

#[test]
fn the_filter_selects_vip_backend_drops_and_snap_length() {
    require_root();
    let mut f = fixture(BE_A);
    // A capture at a time: the ring is handed to one holder.
    let ring = f.lb.start_capture(&vip_filter(0)).unwrap();
    assert!(f.lb.start_capture(&vip_filter(0)).is_err(), "busy");
    f.lb.stop_capture(ring).unwrap();

    // Backend and drops-only are judged on the verdict, by the reader.
    let mut ring = f.lb.start_capture(&vip_filter(0)).unwrap();
    f.run(&syn(41000));
    let good = syn(41003);
    let mut cut = good[..14 + 20 + 8].to_vec();
    // Total length that matches the cut frame, so only the TCP header is short.
    let total = (cut.len() - 14) as u16;
    cut[16..18].copy_from_slice(&total.to_be_bytes());
    cut[24..26].copy_from_slice(&[0, 0]);
    let c = checksum(&cut[14..34]);
    cut[24..26].copy_from_slice(&c.to_be_bytes());
    let (act, _) = f.run(&cut);
    assert_eq!(act, XDP_DROP);
    let frames = drain(&mut ring);
    assert_eq!(frames.len(), 2, "{frames:?}");
    f.lb.stop_capture(ring).unwrap();
    let pick =
        |flt: VerdictFilter| -> Vec<&Frame> { frames.iter().filter(|x| flt.accepts(x)).collect() };
    let to_b = VerdictFilter {
        backend: Some(ip(BE_B)),
        ..VerdictFilter::default()
    };
    assert!(pick(to_b).is_empty(), "nothing was sent to B");
    let to_a = VerdictFilter {
        backend: Some(ip(BE_A)),
        ..VerdictFilter::default()
    };
    assert_eq!(pick(to_a).len(), 1, "the SYN was sent to A");
    let drops = pick(VerdictFilter {
        drops_only: true,
        ..VerdictFilter::default()
    });
    assert_eq!(drops.len(), 1, "only the drop");
    assert_eq!(drops[0].verdict, Verdict::Drop);
    assert_eq!(drops[0].data, cut);
    assert_eq!(drops[0].sent_to, None);

    // Snap length: the first 60 bytes of a larger frame.
    let mut short = vip_filter(0);
    short.snaplen = 60;
    let mut ring = f.lb.start_capture(&short).unwrap();
    let big = v4_tcp(v4(CLIENT4), v4(VIP4), 41004, 80, SYN, &[7u8; 400]);
    f.run(&big);
    let recs = drain(&mut ring);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].orig_len as usize, big.len());
    assert_eq!(recs[0].data, big[..60].to_vec());
    f.lb.stop_capture(ring).unwrap();
}

#[test]
fn a_full_ring_loses_records_never_packets() {
    require_root();
    let mut f = fixture(BE_A);
    let mut ring = f.lb.start_capture(&vip_filter(0)).unwrap();
    // The ring holds about a thousand records; nobody reads it meanwhile.
    let n = 1400u16;
    for i in 0..n {
        let (act, _) = f.run(&syn(20000 + i));
        assert_eq!(act, XDP_TX, "frame {i} forwarded");
    }
    let kept = drain(&mut ring).len() as u64;
    let lost = f.stat(Stat::CaptureLost);
    assert!(lost > 0, "the ring filled up");
    assert!(
        kept > 0 && kept < n as u64,
        "{kept} frames kept, {lost} records lost"
    );
    // A frame is a received and a verdict record; when either does not fit
    // (one count), the frame is not kept: so every frame is one or the other.
    assert_eq!(kept + lost, n as u64, "{kept} kept, {lost} lost of {n}");
    assert_eq!(f.stat(Stat::Forwarded), n as u64, "every packet forwarded");
    // Read: room again.
    f.run(&syn(30000));
    assert_eq!(drain(&mut ring).len(), 1);
    f.lb.stop_capture(ring).unwrap();
}
