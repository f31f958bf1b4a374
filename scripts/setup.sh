#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test lb, idempotently:
# Debian packages, rust-src for the nightly toolchain, bpf-linker 0.10.0, and
# a bpffs mount. Safe to run again and again; does nothing when all is there.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh: run as root (it installs packages and mounts bpffs)" >&2
    exit 1
fi

# Debian packages the build, the tests, the lab and the demo use
# (systemd for `systemd-analyze verify`, util-linux for `setpriv`).
PKGS=(bpftool iproute2 iputils-ping ethtool tcpdump python3-scapy iperf3 hping3
      nginx-light curl openssl pkg-config python3-venv man-db groff-base
      prometheus systemd util-linux bird2)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nginx-light's package scripts start a server on port 80 of the root
# namespace; the lab starts its own servers inside namespaces instead.
if systemctl is-active --quiet nginx 2>/dev/null; then systemctl stop nginx || true; fi
# Likewise prometheus (2.42, with promtool): the metrics test runs its own,
# inside the lab's namespace; the packaged service would scrape nothing.
if systemctl is-active --quiet prometheus 2>/dev/null; then systemctl stop prometheus || true; fi
# Likewise bird2 (BIRD 2, the BGP speaker and the ECMP lab's router): the
# lab starts one BIRD per namespace with its own config and control socket;
# the packaged service would speak for the root namespace, which has no VIPs.
if systemctl is-active --quiet bird 2>/dev/null; then systemctl stop bird || true; fi

# The eBPF crate builds with the installed nightly and needs its core sources.
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
    log "adding rust-src to the nightly toolchain"
    rustup component add rust-src --toolchain nightly
fi

# bpf-linker 0.10 uses rustc's own LLVM (later versions need a system LLVM 21+).
if ! bpf-linker --version 2>/dev/null | grep -q ' 0\.10\.0'; then
    log "installing bpf-linker 0.10.0 (a few minutes)"
    cargo install bpf-linker@0.10.0 --locked --force
fi

if ! grep -q ' /sys/fs/bpf bpf ' /proc/mounts; then
    log "mounting bpffs at /sys/fs/bpf"
    mount -t bpf bpf /sys/fs/bpf
fi
log "ready"
