#!/usr/bin/env bash
# Runs every test of lb, tier by tier: formatting and lints, the unprivileged
# tier (plain `cargo test`: unit tests, config, Maglev, the gRPC API over the
# fake data plane, lb-proto), then, as root, the privileged tier (the crate
# lb-privileged-tests: the real XDP programs in the kernel, network
# namespaces, a real lb-daemon, the end-to-end lab) and the lab's own check.
# Prints how many tests ran and passed in each tier, from cargo's own
# "test result:" lines; a tier that ran no test fails the run. Without root it
# stops with an error before the privileged tier: a tier that did not run is
# not a pass. Installs what is missing first (scripts/setup.sh, root only).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

PRIVILEGED_CRATE=lb-privileged-tests
LOGS="$(mktemp -d "${TMPDIR:-/tmp}/lb-test.XXXXXX")"
root=0
[[ $(id -u) -eq 0 ]] && root=1

if ((root)); then
    ./scripts/setup.sh
else
    echo "== not root: scripts/setup.sh skipped (it installs packages and mounts bpffs)"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (the workspace, $PRIVILEGED_CRATE and bench included)"
# lb-ebpf builds only for the BPF target, through lb-daemon's build.rs.
cargo clippy --workspace --exclude lb-ebpf --all-targets --locked -- -D warnings

# Sums cargo's "test result: ok. N passed; M failed; K ignored; ..." lines of
# a log: prints "passed failed ignored".
count() {
    sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed; \([0-9]*\) ignored;.*/\1 \2 \3/p' "$1" |
        awk '{p += $1; f += $2; i += $3} END {print p + 0, f + 0, i + 0}'
}
summary=()
# Records a tier's counts; fails when it ran no test.
tier() {
    local name=$1 log=$2 passed failed ignored
    read -r passed failed ignored < <(count "$log")
    summary+=("$(printf '%-22s %4d passed, %d failed, %d ignored (log: %s)' "$name:" "$passed" "$failed" "$ignored" "$log")")
    if ((passed + failed == 0)); then
        echo "tier '$name' ran no test" >&2
        exit 1
    fi
}
print_summary() {
    echo "== tests that ran, per tier"
    printf '%s\n' "${summary[@]}"
}

echo "== unprivileged tier: cargo test (default members)"
cargo test --locked 2>&1 | tee "$LOGS/unprivileged.log"
tier "unprivileged tier" "$LOGS/unprivileged.log"

if ((!root)); then
    summary+=("$(printf '%-22s NOT RUN (needs root)' "privileged tier:")")
    print_summary
    cat >&2 <<EOF

test.sh: the privileged tier ($PRIVILEGED_CRATE: XDP programs in the kernel,
network namespaces, the lab) needs root (CAP_BPF, CAP_NET_ADMIN, netns) and
did NOT run. Run ./scripts/test.sh as root.
EOF
    exit 1
fi

echo "== privileged tier: cargo test -p $PRIVILEGED_CRATE (as root)"
# The tests run target/<profile>/lb-daemon and lbctl, which `cargo test -p`
# does not build for another package.
cargo build --locked --bins
cargo test --locked -p "$PRIVILEGED_CRATE" 2>&1 | tee "$LOGS/privileged.log"
tier "privileged tier" "$LOGS/privileged.log"
# Leftover namespaces would mean a test leaked; make it loud.
if ip netns list | grep -q '^lbt'; then
    echo "test namespaces left behind:" >&2
    ip netns list | grep '^lbt' >&2
    exit 1
fi

echo "== lab selfcheck"
LB_DAEMON="$PWD/target/debug/lb-daemon" ./deploy/lab/selfcheck.sh 2>&1 | tee "$LOGS/selfcheck.log"
summary+=("$(printf '%-22s %s' "lab selfcheck:" "$(sed -n 's/^selfcheck: //p' "$LOGS/selfcheck.log" | tail -1)")")

print_summary
