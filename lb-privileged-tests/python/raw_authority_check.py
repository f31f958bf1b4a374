#!/usr/bin/env python3
"""The `:authority` values gRPC clients send on a Unix socket, byte for byte.

grpcio (lb_client_check.py) covers the C-core's spelling; this sends, with
the `h2` HTTP/2 library from PyPI, a grpc.health.v1.Health/Check request
with each authority other clients use, and one that is malformed in a way no
client uses, which the server must still refuse:

    raw_authority_check.py /path/lb.sock

Prints one `ok: ...` line per case and `ALL OK`, or `FAIL: ...` and exits 1.
"""

import socket
import sys

import h2.config
import h2.connection
import h2.events

# (authority, what sends it, accepted?)
CASES = [
    ("/run/lb/lb.sock", "grpc-java (raw socket path)", True),
    ("%2Frun%2Flb%2Flb.sock", "grpc-swift / C-core unix:/path", True),
    ("run%2Flb%2Flb.sock", "C-core unix:///path", True),
    ("localhost", "grpc-go", True),
    ("bad host", "nobody (a space is never valid)", False),
]


def check(path, authority):
    """Returns ('ok', grpc-status, body) or ('reset', error code)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(
        sid,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/grpc.health.v1.Health/Check"),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
    )
    # An empty HealthCheckRequest: uncompressed, length 0.
    conn.send_data(sid, b"\x00\x00\x00\x00\x00", end_stream=True)
    s.sendall(conn.data_to_send())
    body, status = b"", None
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return ("closed",)
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.TrailersReceived):
                    status = dict(ev.headers).get("grpc-status")
                elif isinstance(ev, h2.events.StreamReset):
                    return ("reset", int(ev.error_code))
                elif isinstance(ev, h2.events.StreamEnded):
                    return ("ok", status, body)
            s.sendall(conn.data_to_send())
    finally:
        s.close()


def main():
    path = sys.argv[1]
    for authority, who, accepted in CASES:
        got = check(path, authority)
        if accepted:
            # Status 0 and a SERVING (1) HealthCheckResponse: field 1 = 1.
            if got != ("ok", "0", b"\x00\x00\x00\x00\x02\x08\x01"):
                print(f"FAIL: {authority!r} ({who}): {got}")
                sys.exit(1)
            print(f"ok: {authority!r} ({who}) -> SERVING")
        else:
            if got != ("reset", 1):
                print(f"FAIL: {authority!r} ({who}) should be refused: {got}")
                sys.exit(1)
            print(f"ok: {authority!r} ({who}) -> RST_STREAM(PROTOCOL_ERROR)")
    print("ALL OK")


if __name__ == "__main__":
    main()
