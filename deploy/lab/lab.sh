#!/usr/bin/env bash
# The lb lab: client, router, LB host and N backends, each a network namespace,
# joined by veth links; dual stack, addresses from 198.18.0.0/15 and fd00::/8.
# Nothing in the root namespace is created or changed (except bpffs, mounted
# when missing, and pins under /sys/fs/bpf/${P}-*). See README.md next to this.
#
#   lab.sh [--prefix P] [--backends N] up       create (tears an old one down first)
#   lab.sh [--prefix P] --ecmp up               two LB nodes behind a BIRD 2 router (BGP, BFD,
#                                               ECMP with an L4 hash), a BIRD speaker on each node
#   lab.sh [--prefix P] down                    destroy; fine after a crash or with nothing there
#   lab.sh [--prefix P] status                  show it; exit 1 when it is not (fully) up
#   lab.sh [--prefix P] env                     KEY=VALUE lines for scripts (interfaces, MACs, pins)
#   lab.sh [--prefix P] exec NAME cmd...        run cmd in ${P}-NAME (client, router, lb, b1, ...)
#
# Environment: LAB_PREFIX, LAB_BACKENDS (defaults for --prefix/--backends),
# LAB_ECMP=1 (the same as --ecmp), LB_DAEMON (the lb-daemon binary; default target/release/lb-daemon, built
# when missing), LAB_PYTHON (interpreter for the servers; default
# /usr/bin/python3), LAB_KEEP_ON_FAIL=1 (leave a half-built lab for debugging).
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

P="${LAB_PREFIX:-lb}"
N="${LAB_BACKENDS:-3}"
ECMP="${LAB_ECMP:-0}"
# Debian's interpreter, not whatever `python3` a user's PATH finds first
# (pyenv shims and such run a Python without the system's packages).
if [[ -z ${LAB_PYTHON:-} ]]; then
    if [[ -x /usr/bin/python3 ]]; then LAB_PYTHON=/usr/bin/python3; else LAB_PYTHON=python3; fi
fi

UP_IN_PROGRESS=0
die() {
    if ((UP_IN_PROGRESS)); then up_failed "$*"; fi
    echo "lab.sh: $*" >&2
    exit 1
}
log() { printf '[lab %s] %s\n' "$P" "$*"; }

usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

# ---------------------------------------------------------------- arguments

CMD=""
EXEC_ARGS=()
while (($#)); do
    case "$1" in
        --prefix) P="${2:?--prefix needs a value}"; shift 2 ;;
        --prefix=*) P="${1#*=}"; shift ;;
        --backends) N="${2:?--backends needs a value}"; shift 2 ;;
        --backends=*) N="${1#*=}"; shift ;;
        --ecmp) ECMP=1; shift ;;
        -h|--help|help) usage 0 ;;
        up|down|status|env)
            [[ -z $CMD ]] || die "two commands: $CMD and $1"
            CMD="$1"; shift ;;
        exec)
            [[ -z $CMD ]] || die "two commands: $CMD and $1"
            CMD=exec; shift
            # options may still come before NAME; everything after NAME is the command
            while (($#)); do
                case "$1" in
                    --prefix) P="${2:?}"; shift 2 ;;
                    --prefix=*) P="${1#*=}"; shift ;;
                    *) break ;;
                esac
            done
            EXEC_ARGS=("$@"); set -- ;;
        *) echo "lab.sh: unknown argument: $1" >&2; usage 2 ;;
    esac
done
[[ -n $CMD ]] || usage 2

# Interface names are at most 15 bytes; the longest is "${P}r-b<N>" (P + 6).
[[ $P =~ ^[a-z][a-z0-9]{0,5}$ ]] ||
    die "prefix '$P': 1 to 6 characters, lower-case letters and digits, starting with a letter"
# Each backend costs three small Python servers (~60 MB together).
[[ $N =~ ^[0-9]+$ ]] && ((N >= 1 && N <= 100)) || die "backends '$N': 1..100"

# ---------------------------------------------------------------- names

NS_CLIENT="$P-client"
NS_ROUTER="$P-router"
NS_LB="$P-lb"
NS_LB2="$P-lb2"          # --ecmp: the second LB node
ns_b() { echo "$P-b$1"; }

IF_CLIENT="${P}cli0"     # client's end of client<->router
IF_R_CLIENT="${P}r-cli"  # router's end
IF_LB="${P}lb0"          # LB host's end of router<->LB (lb-daemon attaches here)
IF_R_LB="${P}r-lb"       # router's end (needs an XDP program: lb_pass)
IF_LB2="${P}lb2"         # --ecmp: the second LB node's interface
IF_R_LB2="${P}r-lb2"     # its router end (lb_pass too)
IF_R_BR="${P}r-br"       # bridge in the router joining the backends
if_b() { echo "${P}b$1"; }      # backend i's interface
if_r_b() { echo "${P}r-b$1"; }  # router's bridge port towards backend i

# Fixed, locally administered MACs (links are private to a lab, so two labs
# may reuse them). The router's MAC on the LB link is the LB's gateway_mac.
MAC_R_LB=02:00:00:00:00:01
MAC_LB=02:00:00:00:00:02
# --ecmp: the router's end of the second LB link has the same MAC, so both
# nodes share one configuration (gateway_mac) but for their interface.
MAC_R_LB2=$MAC_R_LB
MAC_LB2=02:00:00:00:00:04
MAC_R_CLIENT=02:00:00:00:01:01
MAC_CLIENT=02:00:00:00:01:02
MAC_R_BR=02:00:00:19:00:01
mac_r_b() { printf '02:00:00:19:%02x:01' "$1"; }
mac_b() { printf '02:00:00:19:%02x:02' "$1"; }

V4_R_CLIENT=198.18.1.1;  V6_R_CLIENT=fd00:1::1
V4_CLIENT=198.18.1.2;    V6_CLIENT=fd00:1::2
V4_R_LB=198.18.2.1;      V6_R_LB=fd00:2::1
V4_LB=198.18.2.2;        V6_LB=fd00:2::2
V4_R_LB2=198.18.5.1;     V6_R_LB2=fd00:5::1
V4_LB2=198.18.5.2;       V6_LB2=fd00:5::2
# --ecmp: AS numbers (private, RFC 6996); both LB nodes share one AS, as a
# fleet does, so the router sees equal paths and merges them.
ASN_ROUTER=65000
ASN_LB=65001
V4_R_BR=198.19.0.1;      V6_R_BR=fd00:19::1
v4_b() { echo "198.19.0.$((10 + $1))"; }
v6_b() { echo "fd00:19::$((10 + $1))"; }
VIP4_NET=198.18.100.0/24
VIP6_NET=fd00:100::/64

MTU_CLIENT=1500
MTU_INNER=1600  # router<->LB and router<->backends: room for the outer header

RUN_DIR="/run/$P-lab"
PIN_ROUTER="/sys/fs/bpf/$P-router-pass"
pin_b() { echo "/sys/fs/bpf/$P-b$1-decap"; }
PIN_LB="/sys/fs/bpf/$P-lb"  # suggested pin directory for lb-daemon in this lab
PIN_LB2="/sys/fs/bpf/$P-lb2"        # --ecmp: the second node's
PIN_ROUTER2="/sys/fs/bpf/$P-router-pass2"

# ---------------------------------------------------------------- helpers

# Run in a namespace. nsenter, not `ip netns exec`: the latter remounts /sys
# for the namespace, which hides the real bpffs and makes pins vanish.
nsx() {
    local ns="$1"; shift
    nsenter --net="/run/netns/$ns" -- "$@"
}

ns_exists() { [[ -e /run/netns/$1 ]]; }

# The namespaces of this lab that exist, whatever N they were made with.
lab_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' |
        grep -E "^$P-(client|router|lb|lb2|b[0-9]+)\$" || true
}

sysctl_w() {  # ns key=value...
    local ns="$1"; shift
    nsx "$ns" sysctl -q -w "$@" >/dev/null
}

lb_daemon() {
    if [[ -n ${LB_DAEMON:-} ]]; then
        [[ -x $LB_DAEMON ]] || die "LB_DAEMON=$LB_DAEMON is not executable"
        echo "$LB_DAEMON"; return
    fi
    local bin="$REPO/target/release/lb-daemon"
    if [[ ! -x $bin ]]; then
        log "building lb-daemon (target/release/lb-daemon is missing)" >&2
        (cd "$REPO" && PATH="$HOME/.cargo/bin:$PATH" \
            cargo build --release -p lb-daemon --bin lb-daemon >&2) ||
            die "building lb-daemon failed"
    fi
    echo "$bin"
}

# A pid from a pid file, only when that process is still one of ours.
our_pid() {  # pidfile
    local f="$1" pid
    [[ -r $f ]] || return 1
    pid="$(tr -dc 0-9 <"$f")"
    [[ -n $pid ]] && running "$pid" || return 1
    # Our servers carry "--lab P"; BIRD instances name a file of the run dir.
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -e "--lab $P " -e "$RUN_DIR/" || return 1
    echo "$pid"
}

# Running (not a zombie: PID 1 on some machines reaps orphans lazily, and
# a zombie is already gone for our purposes).
running() {  # pid
    local st
    st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
    [[ -n $st && $st != Z && $st != X ]]
}

kill_wait() {  # pids...
    (($#)) || return 0
    kill -TERM "$@" 2>/dev/null || true
    local i pid alive
    for i in $(seq 1 50); do
        alive=()
        for pid in "$@"; do running "$pid" && alive+=("$pid"); done
        ((${#alive[@]})) || return 0
        sleep 0.1
    done
    kill -KILL "${alive[@]}" 2>/dev/null || true
}

# ---------------------------------------------------------------- down

detach_pin() {  # ns pin
    local ns="$1" pin="$2" bin
    [[ -e $pin ]] || return 0
    bin="$(lb_daemon_nobuild)"
    if [[ -n $bin ]]; then
        if ns_exists "$ns"; then
            nsx "$ns" "$bin" decap detach --pin-path "$pin" >/dev/null 2>&1 || true
        else
            "$bin" decap detach --pin-path "$pin" >/dev/null 2>&1 || true
        fi
    fi
    # Whatever detach left (or no binary at all): removing the last pin of a
    # link releases it, which detaches the program.
    if [[ -e $pin ]]; then rm -rf -- "$pin"; fi
}

# lb-daemon without building it: down must work on a machine where the build
# is broken or absent.
lb_daemon_nobuild() {
    if [[ -n ${LB_DAEMON:-} && -x $LB_DAEMON ]]; then echo "$LB_DAEMON"
    elif [[ -x $REPO/target/release/lb-daemon ]]; then echo "$REPO/target/release/lb-daemon"
    fi
}

cmd_down() {
    local ns pids f pid pin
    # 1. Processes: whatever runs in the lab's namespaces (servers, an
    #    lb-daemon, tcpdumps, shells), then pid files whose process outlived
    #    its namespace.
    pids=()
    for ns in $(lab_namespaces); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            if [[ $pid != "$$" ]]; then pids+=("$pid"); fi
        done
    done
    if [[ -d $RUN_DIR ]]; then
        for f in "$RUN_DIR"/*.pid; do
            [[ -e $f ]] || continue
            if pid="$(our_pid "$f")"; then pids+=("$pid"); fi
        done
    fi
    kill_wait "${pids[@]}"
    # 2. XDP programs: detach through their pins (while the namespaces exist).
    detach_pin "$NS_ROUTER" "$PIN_ROUTER"
    detach_pin "$NS_ROUTER" "$PIN_ROUTER2"
    for pin in /sys/fs/bpf/"$P"-b*-decap; do
        [[ -e $pin ]] || continue
        [[ $pin =~ /$P-b([0-9]+)-decap$ ]] || continue
        detach_pin "$(ns_b "${BASH_REMATCH[1]}")" "$pin"
    done
    # lb-daemon's pins when it used the suggested directory.
    if [[ -e $PIN_LB ]]; then rm -rf -- "$PIN_LB"; fi
    if [[ -e $PIN_LB2 ]]; then rm -rf -- "$PIN_LB2"; fi
    # 3. Namespaces (their veths and the bridge go with them).
    for ns in $(lab_namespaces); do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf -- "$RUN_DIR"
    local left
    left="$(lab_namespaces)"
    [[ -z $left ]] || die "namespaces still there: $left"
}

# ---------------------------------------------------------------- up

ns_init() {  # ns
    local ns="$1"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # Before any interface exists, so each one inherits them from "default".
    sysctl_w "$ns" net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
        net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
        net.ipv6.conf.all.dad_transmits=0 net.ipv6.conf.default.dad_transmits=0 \
        net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.all.accept_ra=0
}

# veth pair created directly inside two namespaces: it never exists in the
# root namespace, not even for a moment.
veth() {  # ns1 if1 mac1 ns2 if2 mac2 mtu
    ip link add "$2" address "$3" mtu "$7" netns "$1" type veth \
        peer name "$5" address "$6" mtu "$7" netns "$4"
}

if_conf() {  # ns if: per-interface sysctls, then up
    local ns="$1" ifc="$2"
    sysctl_w "$ns" "net.ipv4.conf.$ifc.rp_filter=0" "net.ipv6.conf.$ifc.accept_dad=0"
    ip -n "$ns" link set "$ifc" up
}

addr() {  # ns if v4/len v6/len
    ip -n "$1" addr add "$3" dev "$2"
    ip -n "$1" -6 addr add "$4" dev "$2" nodad
}

start_server() {  # i kind
    local i="$1" kind="$2" ns pidf
    ns="$(ns_b "$i")"
    pidf="$RUN_DIR/b$i-$kind.pid"
    # setsid: no controlling terminal, survives the shell that ran `up`.
    # 3>&-: fd 3 is `up`'s saved stderr; a server holding it open would keep
    # a caller that reads our stderr through a pipe waiting forever.
    setsid nsenter --net="/run/netns/$ns" -- \
        "$LAB_PYTHON" "$HERE/servers.py" "$kind" --name "backend-$i" \
        --pidfile "$pidf" --lab "$P" \
        </dev/null >>"$RUN_DIR/b$i-$kind.log" 2>&1 3>&- &
}

wait_ready() {
    local i kind deadline=$((SECONDS + 10 + N))
    for i in $(seq 1 "$N"); do
        for kind in http udp stream; do
            while [[ ! -s $RUN_DIR/b$i-$kind.pid ]]; do
                ((SECONDS < deadline)) || {
                    cat "$RUN_DIR/b$i-$kind.log" >&2 || true
                    die "server $kind on backend $i did not start"
                }
                sleep 0.05
            done
        done
    done
}

up_failed() {
    trap - ERR
    UP_IN_PROGRESS=0
    {
        echo "lab.sh: up failed: $1"
        if [[ -s $RUN_DIR/xdp.log ]]; then echo "--- $RUN_DIR/xdp.log"; tail -n 20 "$RUN_DIR/xdp.log"; fi
        if [[ ${LAB_KEEP_ON_FAIL:-0} == 1 ]]; then
            echo "lab.sh: LAB_KEEP_ON_FAIL=1: leaving the half-built lab; 'lab.sh --prefix $P down' removes it"
        else
            echo "lab.sh: tearing down (LAB_KEEP_ON_FAIL=1 keeps it)"
        fi
    } >&3
    [[ ${LAB_KEEP_ON_FAIL:-0} == 1 ]] || cmd_down 2>&3 || true
    exit 1
}

cmd_up() {
    local bin i ns ifc peer
    [[ $(id -u) -eq 0 ]] || die "run as root"
    for tool in ip nsenter ethtool sysctl setsid; do
        command -v "$tool" >/dev/null || die "$tool is missing"
    done
    "$LAB_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 7))' ||
        die "$LAB_PYTHON: need Python 3.7+"
    bin="$(lb_daemon)"
    if ! grep -q ' /sys/fs/bpf bpf ' /proc/mounts; then
        log "mounting bpffs at /sys/fs/bpf"
        mount -t bpf bpf /sys/fs/bpf
    fi

    if [[ -n $(lab_namespaces) || -e $RUN_DIR || -e $PIN_ROUTER ]]; then
        log "tearing down the existing lab first"
        cmd_down
    fi
    # fd 3: the real stderr, for the ERR trap, which runs with the failing
    # command's redirections (e.g. 2>>xdp.log) still in place.
    exec 3>&2
    trap 'up_failed "$BASH_COMMAND"' ERR
    UP_IN_PROGRESS=1
    mkdir -p "$RUN_DIR"
    echo "$N" >"$RUN_DIR/backends"
    if ((ECMP)); then
        command -v bird >/dev/null || die "bird is missing (Debian bird2; scripts/setup.sh installs it)"
        echo 1 >"$RUN_DIR/ecmp"
    fi

    log "namespaces"
    ns_init "$NS_CLIENT"; ns_init "$NS_ROUTER"; ns_init "$NS_LB"
    for i in $(seq 1 "$N"); do ns_init "$(ns_b "$i")"; done
    sysctl_w "$NS_ROUTER" net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
        net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0

    log "client <-> router"
    veth "$NS_CLIENT" "$IF_CLIENT" "$MAC_CLIENT" "$NS_ROUTER" "$IF_R_CLIENT" "$MAC_R_CLIENT" "$MTU_CLIENT"
    if_conf "$NS_CLIENT" "$IF_CLIENT"; if_conf "$NS_ROUTER" "$IF_R_CLIENT"
    addr "$NS_CLIENT" "$IF_CLIENT" "$V4_CLIENT/24" "$V6_CLIENT/64"
    addr "$NS_ROUTER" "$IF_R_CLIENT" "$V4_R_CLIENT/24" "$V6_R_CLIENT/64"
    ip -n "$NS_CLIENT" route add default via "$V4_R_CLIENT"
    ip -n "$NS_CLIENT" -6 route add default via "$V6_R_CLIENT"
    # veth leaves locally generated TCP/UDP checksums to be filled in
    # (CHECKSUM_PARTIAL); after the LB's XDP_TX that state is lost and the
    # backend drops the packet as corrupt. Real wires carry full checksums.
    nsx "$NS_CLIENT" ethtool -K "$IF_CLIENT" tx off >/dev/null

    log "router <-> LB"
    veth "$NS_LB" "$IF_LB" "$MAC_LB" "$NS_ROUTER" "$IF_R_LB" "$MAC_R_LB" "$MTU_INNER"
    if_conf "$NS_LB" "$IF_LB"; if_conf "$NS_ROUTER" "$IF_R_LB"
    addr "$NS_LB" "$IF_LB" "$V4_LB/24" "$V6_LB/64"
    addr "$NS_ROUTER" "$IF_R_LB" "$V4_R_LB/24" "$V6_R_LB/64"
    ip -n "$NS_LB" route add default via "$V4_R_LB"
    ip -n "$NS_LB" -6 route add default via "$V6_R_LB"
    if ((ECMP)); then
        # The VIP routes come from BGP (ecmp_up below), not from here.
        log "router <-> LB node 2 (--ecmp)"
        ns_init "$NS_LB2"
        veth "$NS_LB2" "$IF_LB2" "$MAC_LB2" "$NS_ROUTER" "$IF_R_LB2" "$MAC_R_LB2" "$MTU_INNER"
        if_conf "$NS_LB2" "$IF_LB2"; if_conf "$NS_ROUTER" "$IF_R_LB2"
        addr "$NS_LB2" "$IF_LB2" "$V4_LB2/24" "$V6_LB2/64"
        addr "$NS_ROUTER" "$IF_R_LB2" "$V4_R_LB2/24" "$V6_R_LB2/64"
        ip -n "$NS_LB2" route add default via "$V4_R_LB2"
        ip -n "$NS_LB2" -6 route add default via "$V6_R_LB2"
    else
        ip -n "$NS_ROUTER" route add "$VIP4_NET" via "$V4_LB"
        ip -n "$NS_ROUTER" -6 route add "$VIP6_NET" via "$V6_LB"
    fi

    log "router <-> backends (bridge $IF_R_BR)"
    ip -n "$NS_ROUTER" link add "$IF_R_BR" address "$MAC_R_BR" mtu "$MTU_INNER" type bridge \
        stp_state 0 forward_delay 0 mcast_snooping 0
    if_conf "$NS_ROUTER" "$IF_R_BR"
    addr "$NS_ROUTER" "$IF_R_BR" "$V4_R_BR/24" "$V6_R_BR/64"
    for i in $(seq 1 "$N"); do
        ns="$(ns_b "$i")"; ifc="$(if_b "$i")"; peer="$(if_r_b "$i")"
        veth "$ns" "$ifc" "$(mac_b "$i")" "$NS_ROUTER" "$peer" "$(mac_r_b "$i")" "$MTU_INNER"
        ip -n "$NS_ROUTER" link set "$peer" master "$IF_R_BR"
        if_conf "$NS_ROUTER" "$peer"; if_conf "$ns" "$ifc"
        # Direct server return: the backend must not answer ARP for the VIPs
        # it holds on lo, nor use a VIP as the sender of its own ARP requests.
        sysctl_w "$ns" net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
            "net.ipv4.conf.$ifc.arp_ignore=1" "net.ipv4.conf.$ifc.arp_announce=2" \
            net.ipv4.conf.lo.rp_filter=0
        addr "$ns" "$ifc" "$(v4_b "$i")/24" "$(v6_b "$i")/64"
        ip -n "$ns" route add default via "$V4_R_BR"
        ip -n "$ns" -6 route add default via "$V6_R_BR"
        # Every address of the VIP ranges is local on a backend.
        ip -n "$ns" addr add "$VIP4_NET" dev lo
        ip -n "$ns" -6 route add local "$VIP6_NET" dev lo
    done
    sysctl_w "$NS_ROUTER" net.ipv4.conf.lo.rp_filter=0

    log "XDP: lb_pass on $NS_ROUTER/$IF_R_LB, lb_decap on the backends"
    # A veth only delivers its peer's XDP_TX frames when it runs an XDP
    # program itself.
    nsx "$NS_ROUTER" env NO_COLOR=1 "$bin" decap attach --interface "$IF_R_LB" --pass-only \
        --pin-path "$PIN_ROUTER" 2>>"$RUN_DIR/xdp.log"
    if ((ECMP)); then
        nsx "$NS_ROUTER" env NO_COLOR=1 "$bin" decap attach --interface "$IF_R_LB2" --pass-only \
            --pin-path "$PIN_ROUTER2" 2>>"$RUN_DIR/xdp.log"
    fi
    for i in $(seq 1 "$N"); do
        nsx "$(ns_b "$i")" env NO_COLOR=1 "$bin" decap attach --interface "$(if_b "$i")" \
            --address "$(v4_b "$i")" --address "$(v6_b "$i")" \
            --pin-path "$(pin_b "$i")" 2>>"$RUN_DIR/xdp.log"
    done

    log "servers: http :80, udp echo :5353, stream :9000 on every backend"
    for i in $(seq 1 "$N"); do
        for kind in http udp stream; do start_server "$i" "$kind"; done
    done
    wait_ready

    # Addresses work at once (no DAD); resolve neighbours now so the first
    # test packet does not wait for ARP/ND.
    for i in $(seq 1 "$N"); do
        nsx "$NS_CLIENT" ping -c1 -W2 -q "$(v4_b "$i")" >/dev/null ||
            die "client cannot ping backend $i at $(v4_b "$i")"
        nsx "$NS_CLIENT" ping -6 -c1 -W2 -q "$(v6_b "$i")" >/dev/null ||
            die "client cannot ping backend $i at $(v6_b "$i")"
    done
    nsx "$NS_LB" ping -c1 -W2 -q "$V4_R_LB" >/dev/null
    nsx "$NS_LB" ping -6 -c1 -W2 -q "$V6_R_LB" >/dev/null
    if ((ECMP)); then
        nsx "$NS_LB2" ping -c1 -W2 -q "$V4_R_LB2" >/dev/null
        nsx "$NS_LB2" ping -6 -c1 -W2 -q "$V6_R_LB2" >/dev/null
        ecmp_up
    fi
    trap - ERR
    UP_IN_PROGRESS=0
    log "up: $N backends"
    cmd_status_brief
}

# ---------------------------------------------------------------- ECMP (--ecmp)

# BIRD instance NAME (router, lb, lb2): its files in the run dir.
bird_conf() { echo "$RUN_DIR/$1-bird.conf"; }
bird_ctl() { echo "$RUN_DIR/$1-bird.ctl"; }
bird_log() { echo "$RUN_DIR/$1-bird.log"; }
# What lb-daemon renders for the node's BIRD ([bgp] config_file).
bird_lb_file() { echo "$RUN_DIR/$1-announce.conf"; }

start_bird() {  # name ns
    local name="$1" ns="$2"
    # -P: pid file (lab down kills what it names); BIRD daemonises itself.
    nsx "$ns" bird -c "$(bird_conf "$name")" -s "$(bird_ctl "$name")" \
        -P "$RUN_DIR/$name-bird.pid" 3>&-
}

ecmp_up() {
    log "ECMP: BIRD on $NS_ROUTER (BGP from both LB nodes, BFD, merge paths), a BIRD speaker per node"
    # The router spreads flows over the LB nodes by a hash of the 5-tuple
    # (policy 1), not of the addresses only (policy 0), so one client's
    # connections use both nodes.
    sysctl_w "$NS_ROUTER" net.ipv4.fib_multipath_hash_policy=1 net.ipv6.fib_multipath_hash_policy=1
    local bfd='protocol bfd {
    interface "*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
}'
    local peer fam addr ns v4 i=0 deadline
    {
        echo "# lab.sh --ecmp: the router. VIP routes learnt over BGP from the LB nodes,"
        echo "# merged into one multipath kernel route (ECMP)."
        echo "router id $V4_R_CLIENT;"
        echo "log \"$(bird_log router)\" all;"
        echo "debug protocols { states, routes, events };"
        echo "protocol device {}"
        for fam in ipv4 ipv6; do
            echo "protocol kernel kernel_$fam { $fam { import none; export all; }; merge paths on; }"
        done
        echo "$bfd"
        for addr in "$V4_LB" "$V4_LB2" "$V6_LB" "$V6_LB2"; do
            i=$((i + 1))
            if [[ $addr == *:* ]]; then fam=ipv6; else fam=ipv4; fi
            echo "protocol bgp lbnode$i {
    local as $ASN_ROUTER; neighbor $addr as $ASN_LB;
    hold time 9; keepalive time 3; connect retry time 2; error wait time 1, 10;
    bfd on;
    $fam { import all; export none; };
}"
        done
    } >"$(bird_conf router)"
    for peer in lb lb2; do
        ns="$NS_LB"; v4="$V4_LB"
        if [[ $peer == lb2 ]]; then ns="$NS_LB2"; v4="$V4_LB2"; fi
        {
            echo "# lab.sh --ecmp: the speaker of LB node $ns. lb-daemon owns the included"
            echo "# file ([bgp] config_file): VIP routes, BFD and the BGP sessions."
            echo "router id $v4;"
            echo "log \"$(bird_log "$peer")\" all;"
            echo "protocol device {}"
            echo "include \"$(bird_lb_file "$peer")\";"
        } >"$(bird_conf "$peer")"
        # Empty until lb-daemon writes it: BIRD starts, announces nothing.
        : >"$(bird_lb_file "$peer")"
        start_bird "$peer" "$ns"
    done
    start_bird router "$NS_ROUTER"
    for peer in router lb lb2; do
        deadline=$((SECONDS + 10))
        until [[ -S $(bird_ctl "$peer") ]]; do
            ((SECONDS < deadline)) || die "BIRD ($peer) did not start; see $(bird_log "$peer")"
            sleep 0.05
        done
    done
}

# ---------------------------------------------------------------- status

cmd_status_brief() {
    local i
    cat <<EOF
  ${NS_CLIENT}  ${IF_CLIENT} ${MAC_CLIENT} ${V4_CLIENT}/24 ${V6_CLIENT}/64  (tx checksum offload off)
  ${NS_ROUTER}  ${IF_R_CLIENT} ${MAC_R_CLIENT} ${V4_R_CLIENT}/24 ${V6_R_CLIENT}/64
  ${NS_ROUTER}  ${IF_R_LB} ${MAC_R_LB} ${V4_R_LB}/24 ${V6_R_LB}/64  (XDP lb_pass, pin ${PIN_ROUTER})
  ${NS_ROUTER}  ${IF_R_BR} ${MAC_R_BR} ${V4_R_BR}/24 ${V6_R_BR}/64  (bridge to the backends)
  ${NS_LB}  ${IF_LB} ${MAC_LB} ${V4_LB}/24 ${V6_LB}/64  gateway MAC ${MAC_R_LB}
EOF
    for i in $(seq 1 "$(backends_count)"); do
        echo "  $(ns_b "$i")  $(if_b "$i") $(mac_b "$i") $(v4_b "$i")/24 $(v6_b "$i")/64  (XDP lb_decap, pin $(pin_b "$i"))"
    done
    if [[ -e $RUN_DIR/ecmp ]]; then
        echo "  ${NS_LB2}  ${IF_LB2} ${MAC_LB2} ${V4_LB2}/24 ${V6_LB2}/64  gateway MAC ${MAC_R_LB2} (router end ${IF_R_LB2} ${V4_R_LB2})"
        echo "  VIPs: learnt by $NS_ROUTER over BGP (AS $ASN_ROUTER) from both LB nodes (AS $ASN_LB), ECMP; local on every backend"
    else
        echo "  VIPs: $VIP4_NET and $VIP6_NET routed by $NS_ROUTER to $V4_LB / $V6_LB; local on every backend"
    fi
}

backends_count() {
    if [[ -r $RUN_DIR/backends ]]; then cat "$RUN_DIR/backends"; else echo "$N"; fi
}

cmd_status() {
    local bad=0 i ns kind pidf nb bin
    if [[ -z $(lab_namespaces) ]]; then
        echo "lab '$P': down (no namespaces)"
        return 1
    fi
    nb="$(backends_count)"
    echo "lab '$P': $nb backends, run dir $RUN_DIR"
    cmd_status_brief
    echo
    local lbs="$NS_LB"
    if [[ -e $RUN_DIR/ecmp ]]; then lbs="$NS_LB $NS_LB2"; fi
    for ns in "$NS_CLIENT" "$NS_ROUTER" $lbs $(for i in $(seq 1 "$nb"); do ns_b "$i"; done); do
        if ns_exists "$ns"; then
            echo "== $ns"
            ip -n "$ns" -brief address show | grep -v '^lo ' | sed 's/^/  /'
            # "IF: xdp|xdpgeneric prog NAME id ID" for every interface with XDP
            ip -n "$ns" -details link show | awk '
                /^[0-9]+: / { ifc = $2; sub(/@.*/, "", ifc); sub(/:$/, "", ifc);
                              mode = ""; if (match($0, / xdp(generic|drv|offload)? /)) mode = substr($0, RSTART + 1, RLENGTH - 2) }
                /prog\/xdp/ { printf "  %s: %s prog %s id %s\n", ifc, mode, $5, $3 }'
        else
            echo "== $ns MISSING"; bad=1
        fi
    done
    echo
    echo "== XDP pins"
    bin="$(lb_daemon_nobuild)"
    for pidf in "$PIN_ROUTER" $(for i in $(seq 1 "$nb"); do pin_b "$i"; done); do
        if [[ -e $pidf/link ]]; then
            if [[ -n $bin && $pidf == *-decap ]]; then
                echo "  $pidf: $("$bin" decap stats --pin-path "$pidf" --json 2>/dev/null || echo '?')"
            else
                echo "  $pidf: attached"
            fi
        else
            echo "  $pidf: MISSING"; bad=1
        fi
    done
    echo
    echo "== servers"
    for i in $(seq 1 "$nb"); do
        for kind in http udp stream; do
            if pid="$(our_pid "$RUN_DIR/b$i-$kind.pid")"; then
                echo "  b$i $kind: pid $pid"
            else
                echo "  b$i $kind: NOT RUNNING"; bad=1
            fi
        done
    done
    if [[ -e $RUN_DIR/ecmp ]]; then
        echo
        echo "== BIRD (--ecmp)"
        for kind in router lb lb2; do
            if pid="$(our_pid "$RUN_DIR/$kind-bird.pid")"; then
                echo "  $kind: pid $pid, socket $(bird_ctl "$kind")"
            else
                echo "  $kind: NOT RUNNING"; bad=1
            fi
        done
        if our_pid "$RUN_DIR/router-bird.pid" >/dev/null; then
            birdc -s "$(bird_ctl router)" show protocols 2>/dev/null | sed 's/^/  /' || true
            echo "  router's VIP routes:"
            ip -n "$NS_ROUTER" route show root "$VIP4_NET" 2>/dev/null | sed 's/^/    /' || true
        fi
    fi
    if ((bad)); then echo "lab '$P': DEGRADED"; return 1; fi
    echo "lab '$P': up"
}

cmd_env() {
    local i nb
    nb="$(backends_count)"
    cat <<EOF
LAB_PREFIX=$P
LAB_BACKENDS=$nb
LAB_NS_CLIENT=$NS_CLIENT
LAB_NS_ROUTER=$NS_ROUTER
LAB_NS_LB=$NS_LB
LAB_CLIENT_IF=$IF_CLIENT
LAB_CLIENT_V4=$V4_CLIENT
LAB_CLIENT_V6=$V6_CLIENT
LAB_LB_IF=$IF_LB
LAB_LB_MAC=$MAC_LB
LAB_LB_V4=$V4_LB
LAB_LB_V6=$V6_LB
LAB_GATEWAY_MAC=$MAC_R_LB
LAB_ROUTER_LB_IF=$IF_R_LB
LAB_VIP4_NET=$VIP4_NET
LAB_VIP6_NET=$VIP6_NET
LAB_LB_PIN_DIR=$PIN_LB
LAB_RUN_DIR=$RUN_DIR
EOF
    if [[ -e $RUN_DIR/ecmp ]]; then
        cat <<EOF
LAB_ECMP=1
LAB_NS_LB2=$NS_LB2
LAB_LB2_IF=$IF_LB2
LAB_LB2_MAC=$MAC_LB2
LAB_LB2_V4=$V4_LB2
LAB_LB2_V6=$V6_LB2
LAB_LB2_PIN_DIR=$PIN_LB2
LAB_ROUTER_V4_LB=$V4_R_LB
LAB_ROUTER_V6_LB=$V6_R_LB
LAB_ROUTER_V4_LB2=$V4_R_LB2
LAB_ROUTER_V6_LB2=$V6_R_LB2
LAB_ROUTER_LB2_IF=$IF_R_LB2
LAB_ASN_ROUTER=$ASN_ROUTER
LAB_ASN_LB=$ASN_LB
LAB_ROUTER_BIRD_CTL=$(bird_ctl router)
LAB_ROUTER_BIRD_LOG=$(bird_log router)
LAB_LB_BIRD_CTL=$(bird_ctl lb)
LAB_LB_BIRD_FILE=$(bird_lb_file lb)
LAB_LB2_BIRD_CTL=$(bird_ctl lb2)
LAB_LB2_BIRD_FILE=$(bird_lb_file lb2)
EOF
    fi
    for i in $(seq 1 "$nb"); do
        echo "LAB_B${i}_NS=$(ns_b "$i") LAB_B${i}_IF=$(if_b "$i") LAB_B${i}_V4=$(v4_b "$i") LAB_B${i}_V6=$(v6_b "$i") LAB_B${i}_PIN=$(pin_b "$i")"
    done
}

cmd_exec() {
    ((${#EXEC_ARGS[@]} >= 2)) || die "usage: lab.sh exec NAME cmd..."
    local ns="$P-${EXEC_ARGS[0]}"
    ns_exists "$ns" || die "no namespace $ns (lab '$P' up?)"
    exec nsenter --net="/run/netns/$ns" -- "${EXEC_ARGS[@]:1}"
}

case "$CMD" in
    up) cmd_up ;;
    down)
        [[ $(id -u) -eq 0 ]] || die "run as root"
        cmd_down
        log "down" ;;
    status) cmd_status ;;
    env) cmd_env ;;
    exec) cmd_exec ;;
esac
