#!/usr/bin/env bash
# The Quick start demo, as root on a fresh machine:
#   sets everything up (scripts/setup.sh), builds lb, brings the lab up
#   (deploy/lab: client, router, LB, 3 backends in network namespaces),
#   starts lb-daemon from config/demo.toml, sends real HTTP requests from the
#   client to the VIP and shows which backend answered and lbctl stats, then
#   drains one backend and removes another over gRPC (lbctl) and shows the
#   traffic move, and tears everything down again.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

VIP=198.18.100.10
SVC="$VIP:80/tcp"
API=unix:///run/lb-lab/lb.sock
LAB=deploy/lab/lab.sh
PY=/usr/bin/python3
BIN=target/release

step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }

./scripts/setup.sh
step "building lb (release)"
cargo build --release --locked -p lb-daemon -p lbctl --bins

export LB_DAEMON="$PWD/$BIN/lb-daemon"
daemon_pid=""
cleanup() {
    set +e
    [[ -n "$daemon_pid" ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    "$BIN/lb-daemon" teardown --config config/demo.toml >/dev/null 2>&1
    "$LAB" down >/dev/null 2>&1
}
trap cleanup EXIT

step "bringing the lab up (deploy/lab/lab.sh up)"
"$LAB" up
mkdir -p /run/lb-lab

step "starting lb-daemon (config/demo.toml) in the LB namespace"
nsenter --net=/run/netns/lb-lb "$BIN/lb-daemon" run --config config/demo.toml \
    2> /run/lb-lab/daemon.log &
daemon_pid=$!
for _ in $(seq 100); do [[ -S /run/lb-lab/lb.sock ]] && break; sleep 0.1; done
[[ -S /run/lb-lab/lb.sock ]] || { cat /run/lb-lab/daemon.log; exit 1; }
lbctl() { "$BIN/lbctl" --api "$API" "$@"; }
lbctl status
echo
lbctl vip list

traffic() {
    step "$1: 300 HTTP requests from the client to http://$VIP/"
    "$LAB" exec client "$PY" deploy/lab/traffic.py http --vip "$VIP" --count 300 |
        "$PY" -c '
import json, sys
r = json.load(sys.stdin)
print("  ok %d  failed %d" % (r["ok"], r["failed"]))
for b, n in sorted(r["by_backend"].items()):
    print("  %-10s %4d  %s" % (b, n, "#" * (n // 5)))'
}

traffic "all three backends active"
step "lbctl stats"
lbctl stats "$SVC"

step "draining 198.19.0.11 (lbctl backend weight $SVC 198.19.0.11 0)"
lbctl backend weight "$SVC" 198.19.0.11 0
lbctl backend list "$SVC"
traffic "backend-1 drained"

step "removing 198.19.0.12 (lbctl backend del $SVC 198.19.0.12)"
lbctl backend del "$SVC" 198.19.0.12
lbctl backend list "$SVC"
traffic "backend-2 removed"

step "lbctl stats (drops by reason stay 0; conn-table hits and new flows)"
lbctl stats

step "done: tearing down (daemon, XDP, lab)"
