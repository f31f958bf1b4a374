#!/usr/bin/env python3
"""Drives lb-daemon's API the way a new operator would from Python.

Only the stock PyPI packages (grpcio, grpcio-reflection,
grpcio-health-checking) and DEFAULT channel options: no generated stubs, no
`grpc.default_authority`, no `ssl_target_name_override`. The lb.v1 message
types are discovered through server reflection.

    lb_client_check.py unix:///path/lb.sock
    lb_client_check.py 127.0.0.1:50161 --ca ca.pem [--cert c.pem --key c.key]

Prints one `ok: ...` line per check and exits 0, or prints `FAIL: ...` and
exits 1 at the first deviation (lb-privileged-tests/tests/python_client.rs
runs it for the Unix socket and for TCP with TLS).
"""

import argparse
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "lb.v1.LoadBalancer"


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def ok(msg):
    print(f"ok: {msg}", flush=True)


class Api:
    """Calls lb.v1.LoadBalancer methods by name with reflected types."""

    def __init__(self, channel):
        self.channel = channel
        self.db = ProtoReflectionDescriptorDatabase(channel)
        self.pool = descriptor_pool.DescriptorPool(self.db)
        self.service = self.pool.FindServiceByName(SERVICE)

    def msg(self, full_name, **fields):
        cls = message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))
        return cls(**fields)

    def enum(self, enum_name, value_name):
        return self.pool.FindEnumTypeByName(enum_name).values_by_name[value_name].number

    def call(self, method, **fields):
        m = self.service.methods_by_name[method]
        req = self.msg(m.input_type.full_name, **fields)
        resp_cls = message_factory.GetMessageClass(m.output_type)
        stub = self.channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=lambda r: r.SerializeToString(),
            response_deserializer=resp_cls.FromString,
        )
        return stub(req, timeout=10)

    def vip(self, address, port, proto="PROTOCOL_TCP"):
        return self.msg(
            "lb.v1.Vip",
            address=address,
            port=port,
            protocol=self.enum("lb.v1.Protocol", proto),
        )


def expect_code(what, code, fn):
    try:
        fn()
    except grpc.RpcError as e:
        if e.code() != code:
            fail(f"{what}: expected {code.name}, got {e.code().name}: {e.details()}")
        ok(f"{what} -> {code.name} ({e.details()})")
        return
    fail(f"{what}: expected {code.name}, the call succeeded")


def listing(api):
    """ListVips as comparable plain data."""
    out = []
    for v in api.call("ListVips").vips:
        out.append(
            (
                v.vip.address,
                v.vip.port,
                v.vip.protocol,
                tuple(sorted(v.flags)),
                tuple((b.address, b.weight, b.slot, b.state) for b in v.backends),
            )
        )
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("target", help="unix:///path or host:port (TLS)")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--vip", default="198.18.100.10", help="VIP address to create")
    a = p.parse_args()

    if a.ca:
        read = lambda f: open(f, "rb").read() if f else None  # noqa: E731
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(a.ca),
            private_key=read(a.key),
            certificate_chain=read(a.cert),
        )
        channel = grpc.secure_channel(a.target, creds)
    else:
        channel = grpc.insecure_channel(a.target)
    print(f"grpcio {grpc.__version__}, target {a.target}", flush=True)

    # Reflection: the services the server lists.
    api = Api(channel)
    services = set(api.db.get_services())
    for s in (SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"):
        if s not in services:
            fail(f"reflection lists {sorted(services)}, missing {s}")
    ok(f"reflection lists {sorted(services)}")
    methods = set(api.service.methods_by_name)
    for m in ("CreateVip", "AddBackend", "ListVips", "SetBackendWeight"):
        if m not in methods:
            fail(f"{SERVICE} has no {m}: {sorted(methods)}")
    ok(f"{SERVICE} methods resolved by reflection ({len(methods)})")

    # Health: the server as a whole and our service.
    health = health_pb2_grpc.HealthStub(channel)
    for svc in ("", SERVICE):
        st = health.Check(health_pb2.HealthCheckRequest(service=svc), timeout=10).status
        if st != health_pb2.HealthCheckResponse.SERVING:
            fail(f"health of {svc!r}: {health_pb2.HealthCheckResponse.ServingStatus.Name(st)}")
        ok(f"health {svc or '(server)'} SERVING")

    # Valid calls.
    vip = api.vip(a.vip, 80)
    created = api.call("CreateVip", vip=vip).vip
    if created.vip.address != a.vip or created.vip.port != 80 or len(created.backends) != 0:
        fail(f"CreateVip answered {created}")
    ok(f"CreateVip {a.vip}:80/tcp")
    added = api.call(
        "AddBackend", vip=vip, backend=api.msg("lb.v1.Backend", address="198.19.0.11", weight=7)
    ).backend
    if added.address != "198.19.0.11" or added.weight != 7:
        fail(f"AddBackend answered {added}")
    ok(f"AddBackend 198.19.0.11 weight 7 slot {added.slot}")
    api.call("AddBackend", vip=vip, backend=api.msg("lb.v1.Backend", address="fd00:19::12"))
    ok("AddBackend fd00:19::12 (default weight)")
    drained = api.call("SetBackendWeight", vip=vip, address="198.19.0.11", weight=0).backend
    draining = api.enum("lb.v1.BackendState", "BACKEND_STATE_DRAINING")
    if drained.weight != 0 or drained.state != draining or drained.slot != added.slot:
        fail(f"SetBackendWeight 0 answered {drained}")
    ok("SetBackendWeight 198.19.0.11 -> 0 (draining, slot kept)")

    vips = api.call("ListVips").vips
    mine = [v for v in vips if v.vip.address == a.vip and v.vip.port == 80]
    if len(mine) != 1:
        fail(f"ListVips: {len(mine)} entries for {a.vip}:80 in {vips}")
    got = [(b.address, b.weight) for b in mine[0].backends]
    if got != [("198.19.0.11", 0), ("fd00:19::12", 100)]:
        fail(f"ListVips backends {got}")
    ok(f"ListVips shows {got}")

    # Three invalid calls, each with the code lb.proto documents, and nothing changed.
    before = listing(api)
    expect_code(
        "CreateVip of an existing VIP",
        grpc.StatusCode.ALREADY_EXISTS,
        lambda: api.call("CreateVip", vip=vip),
    )
    expect_code(
        "AddBackend to a VIP that does not exist",
        grpc.StatusCode.NOT_FOUND,
        lambda: api.call(
            "AddBackend",
            vip=api.vip(a.vip, 81),
            backend=api.msg("lb.v1.Backend", address="198.19.0.13"),
        ),
    )
    expect_code(
        "SetBackendWeight 70000 (above 65535)",
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: api.call("SetBackendWeight", vip=vip, address="fd00:19::12", weight=70000),
    )
    after = listing(api)
    if after != before:
        fail(f"state changed by refused calls:\n before {before}\n after  {after}")
    ok("refused calls changed nothing")
    # The VIP stays: the caller checks the daemon's state with lbctl.
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
