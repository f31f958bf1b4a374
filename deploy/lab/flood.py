#!/usr/bin/python3
"""A bounded SYN flood from random sources, for the lab only.

Runs in the router namespace and writes raw frames on the router's link to
the LB (Python standard library only):
  lab.sh exec router python3 deploy/lab/flood.py --iface lbr-lb \\
      --src-mac 02:00:00:00:00:01 --dst-mac 02:00:00:00:00:02 \\
      --dst 198.18.100.10 --dport 9000 --count 200000 --seconds 4

Every frame is a valid IPv4 TCP SYN (both checksums right) from a random
address of --src-net (default 198.19.128.0/17: inside 198.18.0.0/15, and not
an address the lab uses) and a random source port, so nearly every frame is
a flow the LB has never seen. With --ack every SYN is followed by a bare
ACK of the same flow (as if the handshake went on), so the LB looks each
flood flow up once: a flow referenced after its insert ranks as "active"
in the kernel's LRU, which a flood of single SYNs never does (see
lb-privileged-tests/tests/e2e.rs, section 9). Bounded twice: at most --count frames, and it
stops after --seconds whatever it sent; --rate caps frames per second.
--per-cpu sends an equal share from each CPU in turn, pinned, so the LB
sees the flood on every CPU as RSS would spread it. Prints one JSON object:
{"sent": n, "enobufs": n, "seconds": t, "pps": x, "per_cpu": [n, ...]}
(enobufs: frames the full link queue refused, not counted as sent).
"""

import argparse
import errno
import ipaddress
import json
import os
import random
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800


def mac(text):
    b = bytes(int(x, 16) for x in text.split(":"))
    if len(b) != 6:
        raise argparse.ArgumentTypeError(f"not a MAC address: {text}")
    return b


def fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def words(b):
    return sum(struct.unpack(f"!{len(b) // 2}H", b))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iface", required=True)
    p.add_argument("--src-mac", type=mac, required=True)
    p.add_argument("--dst-mac", type=mac, required=True)
    p.add_argument("--dst", type=ipaddress.IPv4Address, required=True)
    p.add_argument("--dport", type=int, required=True)
    p.add_argument("--src-net", type=ipaddress.IPv4Network, default=ipaddress.IPv4Network("198.19.128.0/17"))
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True, help="stop after this long")
    p.add_argument("--rate", type=int, default=0, help="frames per second at most (0: as fast as it goes)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--ack", action="store_true", help="follow every SYN with an ACK of its flow (2 frames a flow)")
    p.add_argument("--per-cpu", action="store_true",
                   help="send an equal share pinned to each CPU in turn (a veth runs XDP on the sender's CPU)")
    args = p.parse_args()
    lab = ipaddress.IPv4Network("198.18.0.0/15")
    if not args.src_net.subnet_of(lab) or args.count < 1 or args.seconds <= 0:
        sys.exit("flood.py: --src-net must lie in 198.18.0.0/15, --count and --seconds positive")

    rnd = random.Random(args.seed)
    net = int(args.src_net.network_address)
    host_bits = 32 - args.src_net.prefixlen
    dst = args.dst.packed

    # IPv4 header (20) + TCP SYN with an MSS option (24). Fields that vary
    # (source address, source port, checksums) are zero in the template; the
    # checksums are the template's fixed sum plus the varying words.
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 44, 0, 0x4000, 64, 6, 0, b"\0" * 4, dst))
    def tcp_hdr(seq, ack, flags):
        # The MSS option stays on the ACK too (ignored there): one length.
        return bytearray(struct.pack("!HHIIBBHHH", 0, args.dport, seq, ack, 6 << 4, flags, 64240, 0, 0)
                         + b"\x02\x04\x05\xb4")

    ip_base = words(ip)
    eth = args.dst_mac + args.src_mac + struct.pack("!H", ETH_P_IP)
    frames = []
    for seq, ack, flags in [(1, 0, 0x02)] + ([(2, 1, 0x10)] if args.ack else []):
        tcp = tcp_hdr(seq, ack, flags)
        # Pseudo-header: destination, protocol, TCP length (source varies).
        frames.append((bytearray(eth) + ip + tcp, words(tcp) + words(dst) + 6 + len(tcp)))
    o_ip, o_tcp = 14, 34

    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((args.iface, 0))
    # With --per-cpu, an equal share from each CPU in turn, pinned: on a
    # veth the receiving XDP program runs on the sender's CPU, and a real
    # flood reaches every CPU (RSS). It matters for the connection table:
    # the kernel's LRU keeps new entries in a per-CPU list until that CPU
    # needs free entries, so a flood on one CPU cannot evict entries another
    # CPU made.
    cpus = sorted(os.sched_getaffinity(0)) if args.per_cpu else [None]
    t0 = time.monotonic()
    sent = 0
    dropped = 0
    per_cpu = []
    for i, cpu in enumerate(cpus):
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        goal = args.count * (i + 1) // len(cpus)
        p0 = time.monotonic()
        deadline = t0 + args.seconds * (i + 1) / len(cpus)
        first = sent
        while sent + len(frames) <= goal:
            now = time.monotonic()
            if now >= deadline:
                break
            if args.rate and sent - first > args.rate * (now - p0):
                time.sleep(0.001)
                continue
            # A batch between clock reads keeps the loop cheap.
            for _ in range(min(256, (goal - sent) // len(frames))):
                src = net | rnd.getrandbits(host_bits) if host_bits else net
                sport = rnd.randint(1024, 65535)
                hi, lo = src >> 16, src & 0xFFFF
                for frame, tcp_base in frames:
                    struct.pack_into("!I", frame, o_ip + 12, src)
                    struct.pack_into("!H", frame, o_ip + 10, 0xFFFF - fold(ip_base + hi + lo))
                    struct.pack_into("!H", frame, o_tcp, sport)
                    struct.pack_into("!H", frame, o_tcp + 16, 0xFFFF - fold(tcp_base + hi + lo + sport))
                    try:
                        s.send(frame)
                        sent += 1
                    except OSError as e:
                        # The link's queue is full: a frame not sent is not counted.
                        if e.errno != errno.ENOBUFS:
                            raise
                        dropped += 1
        per_cpu.append(sent - first)
    took = time.monotonic() - t0
    json.dump({"sent": sent, "enobufs": dropped, "seconds": round(took, 3),
               "pps": round(sent / took) if took > 0 else None, "per_cpu": per_cpu}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
