#!/usr/bin/env bash
# Runs every test of lb: formatting and lints, unit tests, and (as root) the
# packet tests on the real XDP programs and the network-namespace tests.
# Installs what is missing first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

./scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
# Privileged tests fail (never skip) under CI=true when not root.
cargo test --locked 2>&1 | tee /tmp/lb-test.log
echo "== lab selfcheck"
LB_DAEMON="$PWD/target/debug/lb-daemon" ./deploy/lab/selfcheck.sh
# Leftover namespaces would mean a test leaked; make it loud.
if ip netns list | grep -q '^lbt'; then
    echo "test namespaces left behind:" >&2
    ip netns list | grep '^lbt' >&2
    exit 1
fi
