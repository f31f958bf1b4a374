#!/usr/bin/env bash
# Scale-out demo, as root: two lb nodes behind a router's ECMP route.
#   Brings up `deploy/lab/lab.sh --ecmp` (client, a BIRD 2 router, two LB
#   nodes each with a BIRD speaker, 3 backends), starts one lb-daemon per
#   node with [bgp] towards the router, shows the router learning the VIP
#   from both nodes (BGP, BFD, ECMP), 300 HTTP connections spread over both
#   nodes, then 100 long TCP streams while node 2 dies (daemon and speaker
#   killed, data plane and addresses gone, link up: only BFD can tell), and
#   how many streams survived and the longest gap. Tears everything down.
#
# LB_BIN_DIR=target/debug uses a debug build instead of building release.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

P=lbe                       # lab prefix: namespaces lbe-*, run dir /run/lbe-lab
VIP=198.18.100.10
LAB="deploy/lab/lab.sh --prefix $P"
PY=/usr/bin/python3
BIN="${LB_BIN_DIR:-target/release}"
RUN=/run/$P-lab

step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }

./scripts/setup.sh
if [[ -z ${LB_BIN_DIR:-} ]]; then
    step "building lb (release)"
    cargo build --release --locked -p lb-daemon -p lbctl --bins
fi
export LB_DAEMON="$PWD/$BIN/lb-daemon"

pids=()
cleanup() {
    set +e
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    for n in lb lb2; do "$BIN/lb-daemon" teardown --pin-path "/sys/fs/bpf/$P-$n" >/dev/null 2>&1; done
    $LAB down >/dev/null 2>&1
}
trap cleanup EXIT

step "bringing the ECMP lab up (deploy/lab/lab.sh --prefix $P --ecmp up)"
$LAB --ecmp up
eval "$($LAB env | grep -E '^LAB_(ROUTER|LB|ASN|RUN)')"

# One configuration per node: the same VIPs, backends and hash_seed (what
# makes both nodes pick the same backend for a flow), its own interface,
# pins, socket and [bgp] peers (the router's addresses on its link).
node_config() {  # node(lb|lb2) interface router-v4 router-v6 speaker-socket speaker-file
    cat <<TOML
[dataplane]
interface = "$2"
gateway_mac = "02:00:00:00:00:01"
pin_path = "/sys/fs/bpf/$P-$1"
mtu = 1600
hash_seed = 42
encap_source_v4 = "198.18.3.0/24"
encap_source_v6 = "fd00:3::/96"

[api]
listen = "unix://$RUN/$1-daemon/lb.sock"

[state]
dir = "$RUN/$1-daemon/state"

[bgp]
control_socket = "$5"
config_file = "$6"
local_asn = $LAB_ASN_LB
bfd_interval_ms = 100
bfd_multiplier = 3

[[bgp.peer]]
address = "$3"
asn = $LAB_ASN_ROUTER

[[bgp.peer]]
address = "$4"
asn = $LAB_ASN_ROUTER

[[vip]]
address = "$VIP:80/tcp"
backends = [ { address = "198.19.0.11" }, { address = "198.19.0.12" }, { address = "198.19.0.13" } ]

[[vip]]
address = "$VIP:9000/tcp"
backends = [ { address = "198.19.0.11" }, { address = "198.19.0.12" }, { address = "198.19.0.13" } ]
TOML
}
mkdir -p "$RUN/lb-daemon" "$RUN/lb2-daemon"
node_config lb "$LAB_LB_IF" "$LAB_ROUTER_V4_LB" "$LAB_ROUTER_V6_LB" "$LAB_LB_BIRD_CTL" "$LAB_LB_BIRD_FILE" >"$RUN/lb-daemon/lb.toml"
node_config lb2 "$LAB_LB2_IF" "$LAB_ROUTER_V4_LB2" "$LAB_ROUTER_V6_LB2" "$LAB_LB2_BIRD_CTL" "$LAB_LB2_BIRD_FILE" >"$RUN/lb2-daemon/lb.toml"

step "starting lb-daemon on both nodes (lb-daemon check first: the speaker must answer)"
for n in lb lb2; do
    "$BIN/lb-daemon" check --config "$RUN/$n-daemon/lb.toml"
    nsenter --net="/run/netns/$P-$n" "$BIN/lb-daemon" run --config "$RUN/$n-daemon/lb.toml" \
        2>"$RUN/$n-daemon/daemon.log" &
    pids+=($!)
done
for n in lb lb2; do
    for _ in $(seq 100); do [[ -S $RUN/$n-daemon/lb.sock ]] && break; sleep 0.1; done
done
lbctl() { local n="$1"; shift; "$BIN/lbctl" --api "unix://$RUN/$n-daemon/lb.sock" "$@"; }

step "waiting for the router to learn $VIP/32 from both nodes"
for _ in $(seq 300); do
    [[ $(ip -n "$P-router" route show "$VIP" | grep -c nexthop) == 2 ]] && break
    sleep 0.1
done
birdc -s "$LAB_ROUTER_BIRD_CTL" show route "$VIP/32"
echo; echo "router's kernel route (ECMP, L4 hash: fib_multipath_hash_policy=1):"
ip -n "$P-router" route show "$VIP"
birdc -s "$LAB_ROUTER_BIRD_CTL" show bfd sessions

step "lbctl announce list (node 1)"
lbctl lb announce list

new_flows() { lbctl "$1" stats --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["counters"]["new_flow"])'; }
step "300 HTTP connections from the client to http://$VIP/"
a0=$(new_flows lb); b0=$(new_flows lb2)
$LAB exec client "$PY" deploy/lab/traffic.py http --vip "$VIP" --count 300 --parallel 8 |
    "$PY" -c '
import json, sys
r = json.load(sys.stdin)
print("  ok %d  failed %d" % (r["ok"], r["failed"]))
for b, n in sorted(r["by_backend"].items()):
    print("  %-10s %4d  %s" % (b, n, "#" * (n // 5)))'
a=$(($(new_flows lb) - a0)); b=$(($(new_flows lb2) - b0))
echo "  connections per LB node: node 1 $a, node 2 $b"

step "same backend whichever node: lbctl route on both, 5 clients"
for port in 40001 40002 40003 40004 40005; do
    echo "  198.18.1.2:$port -> node 1: $(lbctl lb route "$VIP:80/tcp" "198.18.1.2:$port" | grep -m1 "^backend")"
    echo "  198.18.1.2:$port -> node 2: $(lbctl lb2 route "$VIP:80/tcp" "198.18.1.2:$port" | grep -m1 "^backend")"
done

step "100 TCP streams through the VIP (10 s); node 2 dies after 3 s"
ready="$RUN/streams.ready"
$LAB exec client "$PY" deploy/lab/traffic.py streams --vip "$VIP" --port 9000 --count 100 \
    --seconds 10 --ready-file "$ready" >"$RUN/streams.json" &
streams=$!
for _ in $(seq 200); do [[ -e $ready ]] && break; sleep 0.05; done
sleep 3
t0=$(date +%s%N)
# The speaker frozen (it cannot react), the node silent (data plane
# detached, addresses gone: not even a FIN leaves), then the daemon and the
# speaker killed; the link stays up.
kill -STOP "$(cat "$RUN/lb2-bird.pid")"
"$BIN/lb-daemon" teardown --pin-path "/sys/fs/bpf/$P-lb2" >/dev/null 2>&1
ip -n "$P-lb2" addr flush dev "$LAB_LB2_IF"
ip -n "$P-lb2" -4 route flush dev "$LAB_LB2_IF"
ip -n "$P-lb2" -6 route flush dev "$LAB_LB2_IF"
kill -9 "$(cat "$RUN/lb2-bird.pid")"
kill -9 "${pids[1]}"; wait "${pids[1]}" 2>/dev/null || true
until [[ $(ip -n "$P-router" route show "$VIP" | grep -c "via") == 1 ]]; do sleep 0.01; done
echo "  router's route down to node 1 after $((($(date +%s%N) - t0) / 1000000)) ms (BFD 100 ms x 3):"
ip -n "$P-router" route show "$VIP" | sed 's/^/    /'
wait "$streams" || true
"$PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("  streams: %d of 100 survived, %d resets, longest gap without progress %.0f ms"
      % (r["ok"], r["resets"], r["max_gap_ms"]))' "$RUN/streams.json"
pids=("${pids[0]}")

step "router's BIRD log about node 2"
grep -E "lbnode2|lbnode4" "$LAB_ROUTER_BIRD_LOG" | grep -iE "bfd|error|changed to (stop|down)" | head -6 || true

step "done: tearing down (daemons, XDP, BIRD, lab)"
