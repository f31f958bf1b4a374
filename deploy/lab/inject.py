#!/usr/bin/python3
"""Send what lb_xdp would send, without lb_xdp: one hand-made IP-in-IP frame.

Runs in the LB namespace (Debian's python3 with python3-scapy):
  lab.sh exec lb /usr/bin/python3 deploy/lab/inject.py --iface lblb0 \\
      --gw-mac 02:00:00:00:00:01 --outer-src 198.18.2.2 --outer-dst 198.19.0.11 \\
      --inner-src 198.18.1.2 --inner-dst 198.18.100.10 --proto tcp --sport 40001 --dport 80

Outer IPv4 or IPv6 (by the outer addresses), inner IPv4 or IPv6 (by the inner
addresses): proto 4 / next header 4 for IPv4 inside, 41 for IPv6 inside.
Inner: a TCP SYN or a UDP datagram with correct checksums (scapy computes
them), TTL/hop limit 63 as after the router. Ethernet: dst = the gateway
(router) MAC, src = the interface's own MAC, as lb_xdp's XDP_TX would.
Prints the frame summary and its hex.
"""

import argparse
import ipaddress
import sys

from scapy.all import IP, TCP, UDP, Ether, IPv6, Raw, get_if_hwaddr, sendp  # noqa: E402


def ip_layer(src, dst, ttl):
    if ipaddress.ip_address(src).version != ipaddress.ip_address(dst).version:
        sys.exit(f"inject.py: {src} and {dst} are not the same family")
    if ipaddress.ip_address(src).version == 4:
        return IP(src=src, dst=dst, ttl=ttl)
    return IPv6(src=src, dst=dst, hlim=ttl)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iface", required=True)
    p.add_argument("--gw-mac", required=True)
    p.add_argument("--outer-src", required=True)
    p.add_argument("--outer-dst", required=True, help="the backend's own address")
    p.add_argument("--inner-src", required=True, help="the client's address")
    p.add_argument("--inner-dst", required=True, help="the VIP")
    p.add_argument("--proto", choices=["tcp", "udp"], required=True)
    p.add_argument("--sport", type=int, required=True)
    p.add_argument("--dport", type=int, required=True)
    p.add_argument("--payload", default="", help="UDP payload")
    p.add_argument("--seq", type=int, default=1000, help="TCP sequence number")
    p.add_argument("--count", type=int, default=1)
    args = p.parse_args()

    inner = ip_layer(args.inner_src, args.inner_dst, 63)
    if args.proto == "tcp":
        inner = inner / TCP(sport=args.sport, dport=args.dport, flags="S", seq=args.seq,
                            window=64240, options=[("MSS", 1460)])
    else:
        inner = inner / UDP(sport=args.sport, dport=args.dport) / Raw(args.payload.encode())
    outer = ip_layer(args.outer_src, args.outer_dst, 64)
    # scapy fills the outer protocol / next header (4 or 41), lengths and
    # every checksum when the frame is built.
    frame = Ether(src=get_if_hwaddr(args.iface), dst=args.gw_mac) / outer / inner
    raw = bytes(frame)
    print(Ether(raw).summary())
    print(raw.hex())
    sendp(Ether(raw), iface=args.iface, count=args.count, verbose=False)


if __name__ == "__main__":
    main()
