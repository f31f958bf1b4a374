#!/usr/bin/env bash
# Runs the lb benchmark suite (as root) and writes
# bench/results/<YYYY-MM-DD>.{md,json,svg}, printing the tables:
#   1. per-packet cost of lb_xdp under BPF_PROG_TEST_RUN, path by path,
#      against a MAC-swap baseline;
#   2. live forwarding rate (frames really sent with XDP_TX on a veth) with
#      1, 10,000 and 1,000,000 flows;
#   3. Maglev table build time (criterion), balance and disruption;
#   4. control plane: add-backend latency, 1,000-backend VIP creation, daemon
#      memory, against a real lb-daemon in a network namespace;
#   6. (only with --only health) what probing 1,000 backends every second
#      costs the daemon, HTTP, TCP and UDP checks (--health-seconds, default 120).
# The method is in bench/README.md. Run it on a quiet machine: the report
# records the load average before and after. Extra arguments go to the
# bench binary (e.g. --only perpkt,live or --quick for a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if [[ $(id -u) -ne 0 ]]; then
    echo "bench.sh: run as root (BPF programs, network namespaces, XDP attach)" >&2
    exit 1
fi

./scripts/setup.sh

target="${CARGO_TARGET_DIR:-target}"
echo "== building (release)"
cargo build --release --locked -p lb-daemon -p bench
echo "== Maglev build time (criterion)"
cargo bench --locked -p bench --bench maglev
echo "== load average before the figures: $(cut -d' ' -f1-3 /proc/loadavg)"

# The bench cleans up after itself (guards, also on panic); a signal kills it
# without unwinding, so then remove what it created: namespaces lbb<label><tag>
# and bpffs pins lbbench-<tag>, where <tag> starts with its PID mod 100000.
bench_pid=""
cleanup() {
    [[ -n "$bench_pid" ]] || return 0
    kill "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
    local tag=$((bench_pid % 100000))
    for pin in /sys/fs/bpf/lbbench-"$tag"*; do
        [[ -e "$pin" ]] && "$target/release/lb-daemon" teardown --pin-path "$pin" >/dev/null 2>&1 || true
    done
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^lbb(live|cp)${tag}[0-9]+$" || true); do
        ip netns del "$ns" || true
    done
}
trap cleanup INT TERM

# The report shows the most recent earlier results beside today's.
today=$(date +%F)
prev=$(ls bench/results/*.json 2>/dev/null | grep -v "/$today.json" | sort | tail -1 || true)
LB_BENCH_COMMAND="./scripts/bench.sh${*:+ $*}" \
    "$target/release/bench" --out bench/results --criterion "$target/criterion" \
    ${prev:+--previous "$prev"} "$@" &
bench_pid=$!
status=0
wait "$bench_pid" || status=$?
bench_pid=""
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if ip netns list | grep -q '^lbb'; then
    echo "bench namespaces left behind:" >&2
    ip netns list | grep '^lbb' >&2
    exit 1
fi
exit "$status"
