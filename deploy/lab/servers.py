#!/usr/bin/env python3
"""Backend servers for the lb lab (Python 3 standard library only).

Each subcommand serves IPv4 and IPv6 (two sockets, the IPv6 one V6ONLY) on
the wildcard address, so it answers for the backend's own addresses and for
every VIP the backend holds on its loopback:

  http    GET /          -> "backend-i\\n"
          GET /bytes/N   -> N bytes (large transfers, path-MTU tests)
          POST /         -> reads the body, "backend-i received N\n" (uploads:
                            big client-to-VIP packets, for path-MTU tests)
          every answer carries "X-Backend: backend-i"; HTTP/1.0, one request
          per connection.
  udp     echo: replies "backend-i:<payload>" FROM THE ADDRESS THE REQUEST WAS
          SENT TO (IP_PKTINFO / IPV6_PKTINFO). A socket bound to the wildcard
          otherwise answers from the backend's own address, and a client
          talking to a VIP drops that reply.
  stream  after accept, sends "backend-i <seq>\\n" every --interval seconds
          (default 50 ms) until the client closes; a line "pause S" from the
          client delays the next line by S seconds (the stream goes idle).

--pidfile is written only once every socket is bound, so its existence means
"ready". --lab is only a marker in the command line so `lab.sh down` can tell
its own processes from anything else.
"""

import argparse
import errno
import http.server
import os
import select
import signal
import socket
import socketserver
import struct
import sys
import threading
import time

# Not every Python exposes these names; the values are Linux's.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)

MAX_BYTES = 1 << 31  # /bytes/N upper bound


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


def write_pidfile(path):
    if not path:
        return
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(tmp, path)


def remove_pidfile(path):
    if path:
        try:
            with open(path) as f:
                if f.read().strip() == str(os.getpid()):
                    os.unlink(path)
        except OSError:
            pass


def families(args):
    fams = []
    if not args.no_ipv4:
        fams.append(socket.AF_INET)
    if not args.no_ipv6:
        fams.append(socket.AF_INET6)
    return fams


def wildcard(family):
    return "0.0.0.0" if family == socket.AF_INET else "::"


# ---------------------------------------------------------------- HTTP


class HTTPHandler(http.server.BaseHTTPRequestHandler):
    server_version = "lb-lab"
    sys_version = ""
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):  # one line per request is too chatty
        pass

    def _send(self, body_len, chunks, head_only):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(body_len))
        self.send_header("X-Backend", self.server.name)
        self.send_header("Connection", "close")
        self.end_headers()
        if not head_only:
            for c in chunks:
                self.wfile.write(c)

    def _route(self, head_only):
        path = self.path.split("?", 1)[0]
        if path == "/":
            body = f"{self.server.name}\n".encode()
            self._send(len(body), [body], head_only)
        elif path.startswith("/bytes/"):
            try:
                n = int(path[len("/bytes/"):])
                if n < 0 or n > MAX_BYTES:
                    raise ValueError
            except ValueError:
                self.send_error(400, "bad byte count")
                return
            block = bytes(range(256)) * 256  # 64 KiB pattern

            def chunks():
                left = n
                while left > 0:
                    c = block[: min(left, len(block))]
                    left -= len(c)
                    yield c

            self._send(n, chunks(), head_only)
        else:
            self.send_error(404)

    def do_GET(self):
        self._route(False)

    def do_POST(self):
        """Uploads (client-to-VIP bulk data, for path-MTU tests): reads the
        body, answers "backend-i received N"."""
        try:
            left = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self.send_error(411)
            return
        n = 0
        while left > 0:
            c = self.rfile.read(min(left, 1 << 16))
            if not c:
                break
            n += len(c)
            left -= len(c)
        body = f"{self.server.name} received {n}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", self.server.name)
        self.send_header("X-Received", str(n))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST

    def do_HEAD(self):
        self._route(True)


class HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, family, port, name):
        self.address_family = family
        self.name = name
        super().__init__((wildcard(family), port), HTTPHandler)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # Skip HTTPServer.server_bind: its getfqdn() can stall on a lab
        # without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "lab"
        self.server_port = self.server_address[1]


def serve_http(args):
    servers = [HTTPServer(f, args.port, args.name) for f in families(args)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    log(f"http {args.name} listening on port {args.port}")
    return servers


# ---------------------------------------------------------------- UDP


def udp_socket(family, port):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Sending from a VIP that is only covered by a `local` route (IPv6) is
    # refused with EINVAL unless the socket may use non-assigned addresses.
    s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    s.bind((wildcard(family), port))
    return s


def udp_loop(s, family, name):
    prefix = f"{name}:".encode()
    while True:
        try:
            data, anc, _flags, peer = s.recvmsg(65535, socket.CMSG_SPACE(64))
        except InterruptedError:
            continue
        except OSError as e:
            log(f"udp recvmsg: {e}")
            continue
        cmsgs = []
        for level, ctype, cdata in anc:
            if family == socket.AF_INET and level == socket.IPPROTO_IP and ctype == IP_PKTINFO:
                # struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
                _ifindex, _spec, dst = struct.unpack("=i4s4s", cdata[:12])
                cmsgs = [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, dst, b"\0" * 4))]
            elif family == socket.AF_INET6 and level == socket.IPPROTO_IPV6 and ctype == IPV6_PKTINFO:
                # struct in6_pktinfo { in6_addr addr; int ifindex; }
                dst, _ifindex = struct.unpack("=16si", cdata[:20])
                cmsgs = [(socket.IPPROTO_IPV6, IPV6_PKTINFO, struct.pack("=16si", dst, 0))]
        try:
            s.sendmsg([prefix + data], cmsgs, 0, peer)
        except OSError as e:
            log(f"udp sendmsg to {peer}: {e}")


def serve_udp(args):
    socks = [(udp_socket(f, args.port), f) for f in families(args)]
    for s, f in socks:
        threading.Thread(target=udp_loop, args=(s, f, args.name), daemon=True).start()
    log(f"udp echo {args.name} listening on port {args.port}")
    return socks


# ---------------------------------------------------------------- stream


def stream_conn(conn, name, interval):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    seq = 0
    start = time.monotonic()
    try:
        while True:
            conn.sendall(f"{name} {seq}\n".encode())
            seq += 1
            # Wait for the next tick, watching for the client's FIN so a
            # closed stream stops at once instead of at the next write.
            while True:
                left = start + seq * interval - time.monotonic()
                if left <= 0:
                    break
                r, _, _ = select.select([conn], [], [], left)
                if r:
                    got = conn.recv(4096)
                    if not got:
                        return
                    # "pause S\n" from the client: the next line comes S
                    # seconds later than scheduled (a stream that goes quiet,
                    # as idle connections do, without closing).
                    for word in got.split(b"pause ")[1:]:
                        try:
                            start += float(word.split()[0])
                        except (ValueError, IndexError):
                            pass
    except OSError:
        pass
    finally:
        conn.close()


def stream_accept(lsock, name, interval):
    while True:
        try:
            conn, _ = lsock.accept()
        except OSError as e:
            if e.errno in (errno.EINTR, errno.ECONNABORTED):
                continue
            log(f"stream accept: {e}")
            time.sleep(0.1)
            continue
        threading.Thread(target=stream_conn, args=(conn, name, interval), daemon=True).start()


def serve_stream(args):
    socks = []
    for f in families(args):
        s = socket.socket(f, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if f == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((wildcard(f), args.port))
        s.listen(1024)
        socks.append(s)
        threading.Thread(target=stream_accept, args=(s, args.name, args.interval), daemon=True).start()
    log(f"stream {args.name} listening on port {args.port}, every {args.interval}s")
    return socks


# ---------------------------------------------------------------- main


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    defaults = {"http": 80, "udp": 5353, "stream": 9000}
    for cmd, port in defaults.items():
        sp = sub.add_parser(cmd)
        sp.add_argument("--name", required=True, help="backend name, e.g. backend-1")
        sp.add_argument("--port", type=int, default=port)
        sp.add_argument("--pidfile", help="written once listening")
        sp.add_argument("--lab", help="lab prefix (a marker for lab.sh)")
        sp.add_argument("--no-ipv4", action="store_true")
        sp.add_argument("--no-ipv6", action="store_true")
        if cmd == "stream":
            sp.add_argument("--interval", type=float, default=0.05, help="seconds between lines")
    args = p.parse_args()

    def stop(_sig, _frame):
        # Worker threads may sit in accept/recv; leave at once.
        remove_pidfile(args.pidfile)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    {"http": serve_http, "udp": serve_udp, "stream": serve_stream}[args.cmd](args)
    write_pidfile(args.pidfile)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
