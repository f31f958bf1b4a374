#!/usr/bin/env bash
# The Quick start demo. Sets everything up (scripts/setup.sh), builds lb, and
# shows the data plane at work on this machine's kernel:
#   1. lb_xdp attached to a veth (native and generic) answering real packets
#      in two network namespaces;
#   2. the kernel's backend choice for 10,000 flows over 100 weighted backends
#      agreeing with userspace's prediction;
#   3. hot restart of the pinned data plane (forwarding with no owner process).
# The full lab demo (daemon, HTTP through a VIP, drain/remove over gRPC) is
# tracked as its own issue and replaces this once it lands.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

./scripts/setup.sh
echo "== building (release)"
cargo build --release --locked
echo "== data plane demo"
cargo test --release --locked -p lb-daemon \
    --test attach --test agreement --test pinning -- --nocapture --test-threads 1
