#!/usr/bin/env python3
"""Asks lb-daemon's plaintext health-probe listener what kubelet's `grpc`
probe asks, with the stock grpcio health-checking client and default channel
options, and checks that nothing but grpc.health.v1 is served there.

Usage: health_probe_check.py HOST:PORT
Prints one line per check and "ALL OK" at the end; exits 1 on the first
failure.
"""
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def fail(msg):
    print(f"FAIL {msg}")
    sys.exit(1)


def main():
    target = sys.argv[1]
    channel = grpc.insecure_channel(target)
    health = health_pb2_grpc.HealthStub(channel)
    # "" is the server as a whole: what kubelet asks when the probe names no
    # service.
    for svc in ("", "lb.v1.LoadBalancer"):
        st = health.Check(health_pb2.HealthCheckRequest(service=svc), timeout=10).status
        if st != health_pb2.HealthCheckResponse.SERVING:
            fail(f"health of {svc!r}: {health_pb2.HealthCheckResponse.ServingStatus.Name(st)}")
        print(f"health {svc or '(server)'} SERVING")
    try:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        fail("an unknown service was answered")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            fail(f"unknown service: {e.code()}")
        print("unknown service -> NOT_FOUND")
    # The API itself and reflection are not on this listener: an empty
    # request message is enough to ask.
    for method in ("/lb.v1.LoadBalancer/GetStatus", "/lb.v1.LoadBalancer/DeleteVip",
                   "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"):
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            call(b"", timeout=10)
            fail(f"{method} was answered on the probe listener")
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                fail(f"{method}: {e.code()} {e.details()}")
            print(f"{method} -> UNIMPLEMENTED")
    print("ALL OK")


if __name__ == "__main__":
    main()
