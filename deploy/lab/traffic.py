#!/usr/bin/env python3
"""Client-side traffic for the lb lab (Python 3 standard library only).

Run inside the client namespace, e.g.
  deploy/lab/lab.sh exec client python3 deploy/lab/traffic.py http --vip 198.18.100.10 --count 300

Subcommands (each prints one JSON object on stdout and exits 0 when every
request/stream succeeded, 1 otherwise):

  http     N HTTP/1.0 requests, each on a new connection from a distinct
           source port (ports are bound explicitly, so N flows really are N
           different 5-tuples); --path /bytes/N downloads N bytes, --upload N
           POSTs N bytes (big client-to-VIP packets):
           {"ok": n, "failed": n, "by_backend": {"backend-1": k, ...}, "errors": {...}}
  udp      N datagrams to the echo server, each from a distinct source port;
           a reply counts only when it comes from the VIP and port asked and
           echoes the payload: same shape as http.
  streams  N concurrent long-lived TCP connections for S seconds; per stream
           the backend, lines received, resets, max gap between lines (ms):
           {"ok": n, "failed": n, "by_backend": {...}, "resets": n,
            "max_gap_ms": x, "streams": [{...}, ...]}
           --pause-at T --pause-for D: T seconds into the run every stream
           asks its server for D seconds of silence ("pause D"), so the
           connection is idle (no packet either way) in that window; the
           gaps then include D.

The backend is taken from the answer itself (HTTP: the X-Backend header, else
the body; UDP: "backend-i:" before the echoed payload; streams: the first word
of each line).
"""

import argparse
import collections
import json
import os
import random
import socket
import sys
import threading
import time


def parse_addr(text):
    a = text.strip()
    if a.startswith("[") and a.endswith("]"):
        a = a[1:-1]
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(fam, a)
            return fam, a
        except OSError:
            pass
    raise argparse.ArgumentTypeError(f"not an IP address: {text}")


class Ports:
    """Distinct local ports: a random base so that repeated runs do not
    reuse 5-tuples still in TIME_WAIT on a backend, then sequential."""

    def __init__(self, first=None):
        self.lock = threading.Lock()
        self.next = first if first is not None else random.randint(20000, 45000)
        self.used = set()

    def take(self):
        with self.lock:
            while True:
                p = self.next
                self.next = 20000 if self.next >= 64999 else self.next + 1
                if p not in self.used:
                    self.used.add(p)
                    return p


def bound_socket(family, kind, ports, source=None):
    """A socket bound to a fresh distinct source port (retries past ports in use)."""
    last = None
    for _ in range(200):
        s = socket.socket(family, kind)
        port = ports.take()
        try:
            s.bind((source or ("0.0.0.0" if family == socket.AF_INET else "::"), port))
            return s, port
        except OSError as e:
            last = e
            s.close()
    raise last


def summarize(results):
    out = {"ok": 0, "failed": 0, "by_backend": {}, "errors": {}}
    by = collections.Counter()
    errs = collections.Counter()
    for ok, backend, err in results:
        if ok:
            out["ok"] += 1
            by[backend] += 1
        else:
            out["failed"] += 1
            errs[err] += 1
    out["by_backend"] = dict(sorted(by.items()))
    out["errors"] = dict(errs.most_common())
    return out


def run_parallel(fn, count, parallel):
    results = [None] * count
    idx = iter(range(count))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(idx, None)
            if i is None:
                return
            results[i] = fn(i)

    threads = [threading.Thread(target=worker) for _ in range(max(1, min(parallel, count)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def err_text(e):
    if isinstance(e, socket.timeout):
        return "timeout"
    if isinstance(e, ConnectionResetError):
        return "reset"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    return f"{type(e).__name__}: {e}"


# ---------------------------------------------------------------- http


def http_once(args, ports, i):
    fam, vip = args.vip
    try:
        s, sport = bound_socket(fam, socket.SOCK_STREAM, ports, args.source)
    except OSError as e:
        return (False, None, f"bind: {err_text(e)}")
    try:
        s.settimeout(args.timeout)
        s.connect((vip, args.port))
        host = vip if fam == socket.AF_INET else f"[{vip}]"
        if args.upload is None:
            s.sendall(f"GET {args.path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lb-lab\r\n\r\n".encode())
        else:
            s.sendall(f"POST {args.path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lb-lab\r\n"
                      f"Content-Length: {args.upload}\r\n\r\n".encode())
            block = b"u" * 65536
            left = args.upload
            while left > 0:
                s.sendall(block[: min(left, len(block))])
                left -= min(left, len(block))
        chunks = []
        while True:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
        data = b"".join(chunks)
    except OSError as e:
        return (False, None, err_text(e))
    finally:
        s.close()
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return (False, None, "no HTTP header")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split()
    if len(status) < 2 or status[1] != "200":
        return (False, None, f"status {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers and int(headers["content-length"]) != len(body):
        return (False, None, f"short body {len(body)}/{headers['content-length']}")
    if args.upload is not None and headers.get("x-received") != str(args.upload):
        return (False, None, f"server received {headers.get('x-received')} of {args.upload} bytes")
    backend = headers.get("x-backend") or body.decode("utf-8", "replace").strip()
    return (True, backend, None)


def cmd_http(args):
    ports = Ports(args.sport_base)
    return summarize(run_parallel(lambda i: http_once(args, ports, i), args.count, args.parallel))


# ---------------------------------------------------------------- udp


def udp_once(args, ports, i):
    fam, vip = args.vip
    try:
        s, sport = bound_socket(fam, socket.SOCK_DGRAM, ports, args.source)
    except OSError as e:
        return (False, None, f"bind: {err_text(e)}")
    payload = f"lab-{os.getpid()}-{i}".encode()
    try:
        s.settimeout(args.timeout)
        for _attempt in range(args.retries + 1):
            s.sendto(payload, (vip, args.port))
            deadline = time.monotonic() + args.timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                s.settimeout(left)
                try:
                    data, peer = s.recvfrom(65535)
                except socket.timeout:
                    break
                if socket.inet_pton(fam, peer[0]) != socket.inet_pton(fam, vip) or peer[1] != args.port:
                    return (False, None, f"reply from {peer[0]} port {peer[1]}, not the VIP")
                name, sep, echoed = data.partition(b":")
                if not sep or echoed != payload:
                    return (False, None, "bad echo")
                return (True, name.decode("utf-8", "replace"), None)
        return (False, None, "timeout")
    except OSError as e:
        return (False, None, err_text(e))
    finally:
        s.close()


def cmd_udp(args):
    ports = Ports(args.sport_base)
    return summarize(run_parallel(lambda i: udp_once(args, ports, i), args.count, args.parallel))


# ---------------------------------------------------------------- streams


def stream_run(args, ports, i, start_barrier, first_line, stop_at, rec):
    """One stream. Gaps are measured between the arrivals of consecutive
    lines, plus the silence from the last line to the end (a stream stalled
    at the end is not hidden); the wait for the first line is reported apart
    as first_line_ms."""
    fam, vip = args.vip
    rec.update(id=i, backend=None, sport=None, connected=False, lines=0, resets=0, eof=False, paused=False,
               first_line_ms=None, max_gap_ms=None, seq_errors=0, error=None)
    s = None
    last = None
    max_gap = 0.0
    try:
        start_barrier.wait()
        s, rec["sport"] = bound_socket(fam, socket.SOCK_STREAM, ports, args.source)
        s.settimeout(args.connect_timeout)
        t_connect = time.monotonic()
        s.connect((vip, args.port))
        rec["connected"] = True
        buf = b""
        expect = None
        pause_at = None
        if args.pause_at is not None:
            pause_at = stop_at[0] - args.seconds + args.pause_at
        while True:
            now = time.monotonic()
            left = stop_at[0] - now
            if left <= 0:
                break
            if pause_at is not None and now >= pause_at:
                s.sendall(f"pause {args.pause_for}\n".encode())
                rec["paused"] = True
                pause_at = None
            wait = min(left, 0.5)
            if pause_at is not None:
                wait = max(0.001, min(wait, pause_at - now))
            s.settimeout(wait)
            try:
                c = s.recv(65536)
            except socket.timeout:
                continue
            now = time.monotonic()
            if not c:
                rec["eof"] = True
                break
            buf += c
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                rec["lines"] += 1
                if last is None:
                    rec["first_line_ms"] = round((now - t_connect) * 1000.0, 1)
                    first_line.release()
                else:
                    max_gap = max(max_gap, (now - last) * 1000.0)
                last = now
                parts = line.decode("utf-8", "replace").split()
                if len(parts) != 2 or not parts[1].isdigit():
                    rec["seq_errors"] += 1
                    continue
                if rec["backend"] is None:
                    rec["backend"] = parts[0]
                elif parts[0] != rec["backend"]:
                    rec["error"] = f"backend changed to {parts[0]}"
                seq = int(parts[1])
                if expect is not None and seq != expect:
                    rec["seq_errors"] += 1
                expect = seq + 1
        if last is not None and not rec["eof"]:
            max_gap = max(max_gap, (min(time.monotonic(), stop_at[0]) - last) * 1000.0)
    except ConnectionResetError:
        rec["resets"] += 1
        rec["error"] = "reset"
        # Wall clock, to compare with the daemon's health transition times.
        rec["reset_unix_ms"] = round(time.time() * 1000)
    except OSError as e:
        rec["error"] = err_text(e)
    finally:
        if last is not None:
            rec["max_gap_ms"] = round(max_gap, 1)
        else:
            first_line.release()  # never hold --ready-file back
        if s is not None:
            s.close()


def cmd_streams(args):
    ports = Ports(args.sport_base)
    n = args.count
    recs = [dict() for _ in range(n)]
    barrier = threading.Barrier(n + 1)
    first_line = threading.Semaphore(0)
    stop_at = [None]
    threads = [
        threading.Thread(target=stream_run, args=(args, ports, i, barrier, first_line, stop_at, recs[i]))
        for i in range(n)
    ]
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + args.seconds
    barrier.wait()
    for _ in range(n):
        first_line.acquire(timeout=max(0.0, stop_at[0] - time.monotonic()))
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(f"{n}\n")
    for t in threads:
        t.join()
    results = []
    for r in recs:
        ok = r.get("connected") and not r.get("resets") and not r.get("eof") and not r.get("error") \
            and r.get("lines", 0) > 0 and not r.get("seq_errors")
        r["ok"] = bool(ok)
        err = r.get("error") or ("eof" if r.get("eof") else None) or \
            ("no lines" if not r.get("lines") else None) or ("seq" if r.get("seq_errors") else None)
        results.append((ok, r.get("backend"), err))
    out = summarize(results)
    out["resets"] = sum(r.get("resets", 0) for r in recs)
    gaps = [r["max_gap_ms"] for r in recs if r.get("max_gap_ms") is not None]
    out["max_gap_ms"] = max(gaps) if gaps else None
    out["lines"] = sum(r.get("lines", 0) for r in recs)
    out["seconds"] = args.seconds
    out["streams"] = recs
    return out


# ---------------------------------------------------------------- main


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, port):
        sp.add_argument("--vip", type=parse_addr, required=True, help="address to talk to (IPv4 or IPv6)")
        sp.add_argument("--port", type=int, default=port)
        sp.add_argument("--count", type=int, required=True)
        sp.add_argument("--source", help="local address to bind (default: the route's)")
        sp.add_argument("--sport-base", type=int, help="first source port (default: random 20000-45000)")

    sp = sub.add_parser("http", help="N HTTP requests from distinct source ports")
    common(sp, 80)
    sp.add_argument("--path", default="/", help="GET /, /bytes/N (download N bytes)")
    sp.add_argument("--upload", type=int, metavar="BYTES", help="POST BYTES bytes instead of GET")
    sp.add_argument("--timeout", type=float, default=3.0, help="per request, seconds")
    sp.add_argument("--parallel", type=int, default=1, help="requests in flight")

    sp = sub.add_parser("udp", help="N UDP echo requests from distinct source ports")
    common(sp, 5353)
    sp.add_argument("--timeout", type=float, default=1.0, help="per attempt, seconds")
    sp.add_argument("--retries", type=int, default=0)
    sp.add_argument("--parallel", type=int, default=1)

    sp = sub.add_parser("streams", help="N concurrent long-lived TCP streams for S seconds")
    common(sp, 9000)
    sp.add_argument("--seconds", type=float, required=True)
    sp.add_argument("--connect-timeout", type=float, default=3.0)
    sp.add_argument("--ready-file", help="written once every stream got its first line (or failed)")
    sp.add_argument("--pause-at", type=float, help="seconds into the run: ask the servers for silence")
    sp.add_argument("--pause-for", type=float, default=0.0, help="seconds of silence (with --pause-at)")

    args = p.parse_args()
    if args.count < 1:
        p.error("--count must be at least 1")
    out = {"http": cmd_http, "udp": cmd_udp, "streams": cmd_streams}[args.cmd](args)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0 if out["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
