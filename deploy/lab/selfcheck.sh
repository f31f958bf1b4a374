#!/usr/bin/env bash
# Verifies the lab for real, without the balancer: brings it up, checks the
# topology, reaches every backend directly, then plays the LB by hand (scapy
# IP-in-IP frames from the LB namespace, all four outer/inner combinations,
# TCP SYN and UDP) and checks that the backends decapsulate (lb-daemon decap
# stats) and answer the client straight through the router, from the VIP,
# without the reply touching the LB. Then: `down` after a simulated crash
# leaves nothing behind, and two labs (prefixes la and lb2) coexist.
#
#   deploy/lab/selfcheck.sh            exit 0 when every check passed
#
# Env: SELFCHECK_PREFIX (main lab, default sc), SELFCHECK_KEEP=1 (leave the
# main lab up at the end), SELFCHECK_DAEMON=1 (also run `lb-daemon run` in
# the LB namespace and send real traffic through the VIPs), LB_DAEMON,
# LAB_PYTHON as for lab.sh. Root only.
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
LAB="$HERE/lab.sh"
PY="${LAB_PYTHON:-/usr/bin/python3}"
[[ -x $PY ]] || PY=python3
export LAB_PYTHON="$PY"

P="${SELFCHECK_PREFIX:-sc}"
PA=la
PB=lb2
WORK="$(mktemp -d /tmp/lab-selfcheck.XXXXXX)"

checks=0
fails=0
ok() { checks=$((checks + 1)); printf '  ok    %s\n' "$*"; }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); printf '  FAIL  %s\n' "$*"; }
# check "description" cmd...: passes when cmd exits 0.
check() {
    local d="$1"; shift
    if "$@" >"$WORK/last.out" 2>&1; then ok "$d"; else bad "$d"; sed 's/^/        | /' "$WORK/last.out" | head -20; fi
}
section() { printf '\n== %s\n' "$*"; }
die() { echo "selfcheck: $*" >&2; exit 2; }

TCPDUMPS=()
cleanup() {
    local pid
    for pid in "${TCPDUMPS[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ ${SELFCHECK_KEEP:-0} != 1 ]]; then "$LAB" --prefix "$P" down >/dev/null 2>&1 || true; fi
    "$LAB" --prefix "$PA" down >/dev/null 2>&1 || true
    "$LAB" --prefix "$PB" down >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "selfcheck: ABORTED at line $LINENO ($BASH_COMMAND) after $checks checks, $fails failed" >&2; exit 1' ERR

# pyjson FILE EXPR: EXPR (Python, the JSON as d) must be true.
pyjson() {
    "$PY" - "$1" "$2" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
ok = eval(sys.argv[2], {"d": d})
if not ok:
    print("expected:", sys.argv[2])
    print("got:", json.dumps(d)[:1500])
sys.exit(0 if ok else 1)
EOF
}

# traffic LAB OUTFILE args...: traffic.py in LAB's client namespace.
traffic() {
    local lab="$1" out="$2"; shift 2
    "$LAB" --prefix "$lab" exec client "$PY" "$HERE/traffic.py" "$@" >"$out" || true
}

decap_stats() {  # lab i -> JSON on stdout
    "$LAB_DAEMON_BIN" decap stats --json --pin-path "/sys/fs/bpf/$1-b$2-decap"
}

# Starts tcpdump in LAB's NS writing FILE, waits until it listens.
start_tcpdump() {  # lab ns iface file filter
    local lab="$1" ns="$2" ifc="$3" file="$4" filter="$5" i
    "$LAB" --prefix "$lab" exec "$ns" tcpdump -nn --immediate-mode -i "$ifc" -U -w "$file" "$filter" \
        2>"$file.err" &
    TCPDUMPS+=($!)
    for i in $(seq 1 50); do
        grep -q 'listening on' "$file.err" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$file.err" >&2
    die "tcpdump in $lab-$ns did not start"
}

stop_tcpdumps() {
    local pid
    sleep 1
    for pid in "${TCPDUMPS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${TCPDUMPS[@]}"; do wait "$pid" 2>/dev/null || true; done
    TCPDUMPS=()
}

nothing_left() {  # prefix: no namespace, pin, process, run dir or root interface of that lab
    local p="$1" f c x
    local -a left=()
    for x in $(ip netns list | awk '{print $1}' | grep -E "^$p-"); do left+=("namespace $x"); done
    for x in /sys/fs/bpf/"$p"-*; do [[ -e $x ]] && left+=("pin $x"); done
    for f in /proc/[0-9]*/cmdline; do
        c="$(tr '\0' ' ' <"$f" 2>/dev/null)" || continue
        if [[ $c == *servers.py*"--lab $p "* ]]; then x="${f#/proc/}"; left+=("process ${x%/cmdline}: $c"); fi
    done
    [[ -e /run/$p-lab ]] && left+=("/run/$p-lab")
    for x in $(ip -o link show | awk -F': ' '{print $2}' | grep -E "^$p(cli0|lb0|r-|b[0-9])"); do
        left+=("root interface $x")
    done
    ((${#left[@]} == 0)) || { printf 'left behind: %s\n' "${left[@]}"; return 1; }
}

# ---------------------------------------------------------------- setup

[[ $(id -u) -eq 0 ]] || die "run as root"
[[ $P =~ ^[a-z][a-z0-9]{0,5}$ && $P != "$PA" && $P != "$PB" ]] ||
    die "SELFCHECK_PREFIX '$P': 1-6 lower-case letters/digits, not $PA or $PB"
for t in ip nsenter tcpdump ethtool; do command -v "$t" >/dev/null || die "$t missing"; done
"$PY" -c 'import scapy.all' 2>/dev/null || die "$PY cannot import scapy (apt-get install python3-scapy)"

echo "lab selfcheck: main lab '$P', then '$PA' and '$PB' side by side (work dir $WORK)"

section "arguments"
check "a 7-character prefix is refused" bash -c "! '$LAB' --prefix abcdefg up"
check "a prefix with a dash is refused" bash -c "! '$LAB' --prefix a-b up"
check "--backends 0 is refused" bash -c "! '$LAB' --prefix $P --backends 0 up"
check "down with nothing there succeeds" "$LAB" --prefix "$P" down
check "status with nothing there says down (exit 1)" bash -c "! '$LAB' --prefix $P status"

section "up (twice: the second tears the first down)"
root_links_before="$(ip -o link show | awk -F': ' '{print $2}' | sort)"
check "lab.sh up" "$LAB" --prefix "$P" up
check "lab.sh up again on a running lab" "$LAB" --prefix "$P" up
check "status reports it up" "$LAB" --prefix "$P" status
"$LAB" --prefix "$P" status >"$WORK/status.txt" 2>&1 || true
eval "$("$LAB" --prefix "$P" env | grep -E '^LAB_[A-Z_]+=[^ ]*$')"
if [[ -n ${LB_DAEMON:-} ]]; then LAB_DAEMON_BIN="$LB_DAEMON"; else LAB_DAEMON_BIN="$REPO/target/release/lb-daemon"; fi
[[ -x $LAB_DAEMON_BIN ]] || die "no lb-daemon binary at $LAB_DAEMON_BIN"

section "topology"
nsv() { "$LAB" --prefix "$P" exec "$1" sysctl -n "$2"; }
check "namespaces: client, router, lb, b1..b3" bash -c "[[ \$(ip netns list | awk '{print \$1}' | grep -cE '^$P-(client|router|lb|b[1-3])\$') == 6 ]]"
check "root namespace: no new interface" bash -c "[[ \"\$(ip -o link show | awk -F': ' '{print \$2}' | sort)\" == '$root_links_before' ]]"
for ns in router b1 b2 b3; do
    check "$ns: rp_filter off (all, default)" bash -c "[[ \$('$LAB' --prefix $P exec $ns sysctl -n net.ipv4.conf.all.rp_filter net.ipv4.conf.default.rp_filter | tr -d '\n') == 00 ]]"
done
check "router: rp_filter off on every interface" bash -c "! '$LAB' --prefix $P exec router sh -c 'cat /proc/sys/net/ipv4/conf/*/rp_filter' | grep -v '^0\$'"
check "router: IPv4 and IPv6 forwarding on" bash -c "[[ \$('$LAB' --prefix $P exec router sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding | tr -d '\n') == 11 ]]"
check "client: tx checksum offload off on ${P}cli0" bash -c "'$LAB' --prefix $P exec client ethtool -k ${P}cli0 | grep -q '^tx-checksumming: off'"
check "MTU: client link 1500, LB link 1600 both ends, backends 1600" bash -c "
    [[ \$(ip -n $P-client -o link show ${P}cli0 | grep -o 'mtu [0-9]*') == 'mtu 1500' ]] &&
    [[ \$(ip -n $P-lb -o link show ${P}lb0 | grep -o 'mtu [0-9]*') == 'mtu 1600' ]] &&
    [[ \$(ip -n $P-router -o link show ${P}r-lb | grep -o 'mtu [0-9]*') == 'mtu 1600' ]] &&
    [[ \$(ip -n $P-b1 -o link show ${P}b1 | grep -o 'mtu [0-9]*') == 'mtu 1600' ]]"
check "router: ${P}r-lb runs XDP lb_pass (veth peer of an XDP_TX sender)" bash -c "ip -n $P-router -d link show ${P}r-lb | grep -q 'prog/xdp.*name lb_pass'"
for i in 1 2 3; do
    check "b$i: ${P}b$i runs XDP lb_decap, pinned at /sys/fs/bpf/$P-b$i-decap" bash -c "ip -n $P-b$i -d link show ${P}b$i | grep -q 'prog/xdp.*name lb_decap' && [[ -e /sys/fs/bpf/$P-b$i-decap/link ]]"
done
check "router routes the VIPs to the LB" bash -c "ip -n $P-router route get 198.18.100.77 | grep -q 'via 198.18.2.2' && ip -n $P-router -6 route get fd00:100::77 | grep -q 'via fd00:2::2'"
check "backends hold the whole VIP ranges locally" bash -c "ip -n $P-b2 route get 198.18.100.77 | grep -q '^local' && ip -n $P-b2 -6 route get fd00:100::77 | grep -q '^local'"

section "client reaches the backends' own addresses"
for i in 1 2 3; do
    for a in "198.19.0.$((10 + i))" "fd00:19::$((10 + i))"; do
        traffic "$P" "$WORK/h.json" http --vip "$a" --count 10
        check "http  $a: 10/10 from backend-$i" pyjson "$WORK/h.json" "d['ok']==10 and d['by_backend']=={'backend-$i':10}"
        traffic "$P" "$WORK/u.json" udp --vip "$a" --count 10
        check "udp   $a: 10/10 echoed by backend-$i from $a" pyjson "$WORK/u.json" "d['ok']==10 and d['by_backend']=={'backend-$i':10}"
    done
done
traffic "$P" "$WORK/s.json" streams --vip 198.19.0.11 --count 6 --seconds 2
check "streams 198.19.0.11: 6 streams x 2 s, no reset, ~40 lines each, max gap < 250 ms" \
    pyjson "$WORK/s.json" "d['ok']==6 and d['resets']==0 and d['max_gap_ms']<250 and all(30<=s['lines']<=45 for s in d['streams'])"
traffic "$P" "$WORK/s6.json" streams --vip fd00:19::12 --count 3 --seconds 1
check "streams fd00:19::12: 3 streams x 1 s" pyjson "$WORK/s6.json" "d['ok']==3 and d['by_backend']=={'backend-2':3}"
sleep 0.3
check "stream server closed its side after the clients left" bash -c "[[ -z \$('$LAB' --prefix $P exec b1 ss -Htn state established '( sport = :9000 )') ]]"
check "large transfer: 20 MB over IPv4 and IPv6" bash -c "
    [[ \$('$LAB' --prefix $P exec client curl -s -o /dev/null -w '%{size_download}' http://198.19.0.13/bytes/20000000) == 20000000 ]] &&
    [[ \$('$LAB' --prefix $P exec client curl -s -o /dev/null -w '%{size_download}' 'http://[fd00:19::13]/bytes/20000000') == 20000000 ]]"

section "direct server return with hand-made IP-in-IP frames from the LB namespace"
for i in 1 2 3; do decap_stats "$P" "$i" >"$WORK/before-b$i.json"; done
start_tcpdump "$P" client "${P}cli0" "$WORK/client.pcap" "src net 198.18.100.0/24 or src net fd00:100::/64"
start_tcpdump "$P" lb "${P}lb0" "$WORK/lb.pcap" "src net 198.18.100.0/24 or src net fd00:100::/64"
# outer-family inner-family proto backend vip sport
CASES=(
    "4 4 tcp 1 198.18.100.10 41001"
    "4 4 udp 2 198.18.100.10 41002"
    "6 6 tcp 3 fd00:100::10 41003"
    "6 6 udp 1 fd00:100::10 41004"
    "6 4 tcp 2 198.18.100.20 41005"
    "6 4 udp 3 198.18.100.20 41006"
    "4 6 tcp 1 fd00:100::20 41007"
    "4 6 udp 2 fd00:100::20 41008"
)
declare -A expect_decap=()
for c in "${CASES[@]}"; do
    read -r of inf proto b vip sport <<<"$c"
    if [[ $of == 4 ]]; then osrc=198.18.2.2; odst="198.19.0.$((10 + b))"; else osrc=fd00:2::2; odst="fd00:19::$((10 + b))"; fi
    if [[ $inf == 4 ]]; then csrc=198.18.1.2; else csrc=fd00:1::2; fi
    dport=80; [[ $proto == udp ]] && dport=5353
    "$LAB" --prefix "$P" exec lb "$PY" "$HERE/inject.py" --iface "${P}lb0" --gw-mac "$LAB_GATEWAY_MAC" \
        --outer-src "$osrc" --outer-dst "$odst" --inner-src "$csrc" --inner-dst "$vip" \
        --proto "$proto" --sport "$sport" --dport "$dport" --payload "sc-$sport" \
        >"$WORK/inject-$sport.txt" 2>&1 || { bad "inject $c"; cat "$WORK/inject-$sport.txt"; }
    k="b$b:v${inf}_in_v${of}"
    expect_decap[$k]=$((${expect_decap[$k]:-0} + 1))
done
stop_tcpdumps
tcpdump -nn -r "$WORK/client.pcap" -A >"$WORK/client.txt" 2>/dev/null || true
for c in "${CASES[@]}"; do
    read -r of inf proto b vip sport <<<"$c"
    if [[ $inf == 4 ]]; then ip=IP; csrc=198.18.1.2; else ip=IP6; csrc=fd00:1::2; fi
    label="IPv$inf-in-IPv$of $proto -> b$b"
    if [[ $proto == tcp ]]; then
        check "$label: client got SYN-ACK from $vip:80 (to port $sport)" \
            grep -qF "$ip $vip.80 > $csrc.$sport: Flags [S.]" "$WORK/client.txt"
    else
        check "$label: client got 'backend-$b:sc-$sport' from $vip:5353" bash -c "
            grep -qF '$ip $vip.5353 > $csrc.$sport:' '$WORK/client.txt' && grep -qF 'backend-$b:sc-$sport' '$WORK/client.txt'"
    fi
done
check "no reply passed through the LB namespace (tcpdump there saw 0 packets from the VIPs)" \
    bash -c "[[ \$(tcpdump -nn -r '$WORK/lb.pcap' 2>/dev/null | wc -l) == 0 ]]"
for i in 1 2 3; do
    decap_stats "$P" "$i" >"$WORK/after-b$i.json"
    for k in v4_in_v4 v6_in_v4 v4_in_v6 v6_in_v6; do
        want=${expect_decap[b$i:$k]:-0}
        check "b$i: lb-daemon decap stats $k +$want" "$PY" -c "
import json,sys
b=json.load(open('$WORK/before-b$i.json')); a=json.load(open('$WORK/after-b$i.json'))
d=a['$k']-b['$k']
print('delta', d); sys.exit(0 if d==$want else 1)"
    done
    check "b$i: decap drop counter still 0" pyjson "$WORK/after-b$i.json" "d['drop']==0"
done
# One line per injected flow for the summary: what the client saw first.
for c in "${CASES[@]}"; do
    read -r of inf proto b vip sport <<<"$c"
    if [[ $inf == 4 ]]; then ip=IP; csrc=198.18.1.2; else ip=IP6; csrc=fd00:1::2; fi
    dport=80; what="Flags [S.]"
    if [[ $proto == udp ]]; then dport=5353; what="payload backend-$b:sc-$sport"; fi
    seen="$(grep -m1 -F "$ip $vip.$dport > $csrc.$sport:" "$WORK/client.txt" | cut -d' ' -f1-5 || true)"
    printf '%-26s %s\n' "IPv$inf-in-IPv$of $proto b$b:" "${seen:-NOTHING} ${seen:+$what}"
done >"$WORK/client-summary.txt"

if [[ ${SELFCHECK_DAEMON:-0} == 1 ]]; then
    section "with the real balancer (SELFCHECK_DAEMON=1): lb-daemon run in $P-lb"
    if ! "$LAB_DAEMON_BIN" run --help >/dev/null 2>&1; then
        bad "$LAB_DAEMON_BIN has no 'run' subcommand"
    else
        D="/run/$P-lab/daemon"
        mkdir -p "$D"
        {
            printf '[dataplane]\ninterface = "%s"\ngateway_mac = "%s"\npin_path = "%s"\nmtu = 1600\n' \
                "$LAB_LB_IF" "$LAB_GATEWAY_MAC" "$LAB_LB_PIN_DIR"
            printf 'encap_source_v4 = "198.18.3.0/24"\nencap_source_v6 = "fd00:3::/96"\n'
            printf '[api]\nlisten = "unix://%s/lb.sock"\n[state]\ndir = "%s/state"\n' "$D" "$D"
            b4='[ { address = "198.19.0.11" }, { address = "198.19.0.12" }, { address = "198.19.0.13" } ]'
            b6='[ { address = "fd00:19::11" }, { address = "fd00:19::12" }, { address = "fd00:19::13" } ]'
            for v in "198.18.100.10:80/tcp|$b4" "198.18.100.10:5353/udp|$b4" "198.18.100.10:9000/tcp|$b4" \
                "[fd00:100::10]:80/tcp|$b6" "[fd00:100::10]:5353/udp|$b6" \
                "198.18.100.11:80/tcp|$b6" "[fd00:100::11]:80/tcp|$b4"; do
                printf '[[vip]]\naddress = "%s"\nbackends = %s\n' "${v%%|*}" "${v#*|}"
            done
        } >"$D/lb.toml"
        "$LAB" --prefix "$P" exec lb env NO_COLOR=1 "$LAB_DAEMON_BIN" run --config "$D/lb.toml" \
            >"$D/daemon.log" 2>&1 &
        daemon=$!
        for _ in $(seq 1 100); do [[ -S $D/lb.sock ]] && break; sleep 0.1; done
        check "lb-daemon up (API socket $D/lb.sock)" test -S "$D/lb.sock"
        traffic "$P" "$WORK/d1.json" http --vip 198.18.100.10 --count 300
        check "300 HTTP requests to 198.18.100.10: all ok, each backend 20-47%" pyjson "$WORK/d1.json" \
            "d['ok']==300 and len(d['by_backend'])==3 and all(60<=k<=141 for k in d['by_backend'].values())"
        for v in fd00:100::10 198.18.100.11 fd00:100::11; do
            traffic "$P" "$WORK/d2.json" http --vip "$v" --count 60
            check "60 HTTP requests to $v: all ok, 3 backends" pyjson "$WORK/d2.json" "d['ok']==60 and len(d['by_backend'])==3"
        done
        for v in 198.18.100.10 fd00:100::10; do
            traffic "$P" "$WORK/d3.json" udp --vip "$v" --count 60
            check "60 UDP echoes via $v: all ok, from the VIP" pyjson "$WORK/d3.json" "d['ok']==60 and len(d['by_backend'])==3"
        done
        traffic "$P" "$WORK/d4.json" streams --vip 198.18.100.10 --count 20 --seconds 2
        check "20 streams via 198.18.100.10 for 2 s: no reset, max gap < 500 ms" pyjson "$WORK/d4.json" \
            "d['ok']==20 and d['resets']==0 and d['max_gap_ms']<500"
        traffic "$P" "$WORK/d5.json" http --vip 198.18.100.10 --count 3 --upload 2000000
        check "3 uploads of 2 MB through the VIP (1500-byte packets + outer header fit)" pyjson "$WORK/d5.json" "d['ok']==3"
        kill "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
    fi
fi

section "down after a crash"
# A stand-in for an lb-daemon left running in the LB namespace, a killed
# server, and a namespace deleted under the lab: its servers live on in an
# unnamed namespace and its pin stays.
"$LAB" --prefix "$P" exec lb sleep 3600 &
standin=$!
kill -KILL "$(cat "/run/$P-lab/b1-http.pid")"
ip netns del "$P-b2"
check "status notices the damage (exit 1)" bash -c "! '$LAB' --prefix $P status"
check "lab.sh down" "$LAB" --prefix "$P" down
check "nothing left: namespaces, pins, processes, run dir, root interfaces" nothing_left "$P"
check "the process left in the LB namespace was stopped" bash -c "! kill -0 $standin 2>/dev/null || grep -q '^State:.*Z' /proc/$standin/status"
wait "$standin" 2>/dev/null || true
check "down again (nothing there)" "$LAB" --prefix "$P" down

section "two labs side by side: '$PA' (env vars) and '$PB' (options)"
check "LAB_PREFIX=$PA LAB_BACKENDS=2 lab.sh up" env LAB_PREFIX="$PA" LAB_BACKENDS=2 "$LAB" up
check "lab.sh --prefix $PB --backends 2 up" "$LAB" --prefix "$PB" --backends 2 up
check "both report up" bash -c "'$LAB' --prefix $PA status && '$LAB' --prefix $PB status"
traffic "$PA" "$WORK/a.json" http --vip 198.19.0.11 --count 20 &
traffic "$PB" "$WORK/b.json" http --vip fd00:19::12 --count 20 &
wait
check "$PA: 20 requests at once with $PB" pyjson "$WORK/a.json" "d['ok']==20 and d['by_backend']=={'backend-1':20}"
check "$PB: 20 requests at once with $PA" pyjson "$WORK/b.json" "d['ok']==20 and d['by_backend']=={'backend-2':20}"
decap_stats "$PB" 1 >"$WORK/pb-before.json"
decap_stats "$PA" 1 >"$WORK/pa-before.json"
"$LAB" --prefix "$PA" exec lb "$PY" "$HERE/inject.py" --iface "${PA}lb0" --gw-mac 02:00:00:00:00:01 \
    --outer-src 198.18.2.2 --outer-dst 198.19.0.11 --inner-src 198.18.1.2 --inner-dst 198.18.100.10 \
    --proto udp --sport 42000 --dport 5353 --payload twolabs >/dev/null 2>&1
decap_stats "$PB" 1 >"$WORK/pb-after.json"
decap_stats "$PA" 1 >"$WORK/pa-after.json"
check "a frame injected in $PA is decapsulated by $PA's b1 only" "$PY" -c "
import json,sys
l=lambda f: json.load(open('$WORK/'+f))['v4_in_v4']
sys.exit(0 if l('pa-after.json')-l('pa-before.json')==1 and l('pb-after.json')==l('pb-before.json') else 1)"
check "lab.sh --prefix $PA down" "$LAB" --prefix "$PA" down
check "nothing of $PA left" nothing_left "$PA"
check "$PB still up after $PA went down" "$LAB" --prefix "$PB" status
traffic "$PB" "$WORK/b2.json" udp --vip 198.19.0.12 --count 5
check "$PB still answers" pyjson "$WORK/b2.json" "d['ok']==5"
check "lab.sh --prefix $PB down" "$LAB" --prefix "$PB" down
check "nothing of $PB left" nothing_left "$PB"

if [[ ${SELFCHECK_KEEP:-0} == 1 ]]; then
    "$LAB" --prefix "$P" up >/dev/null
    echo "(SELFCHECK_KEEP=1: lab '$P' left up)"
fi

echo
echo "client-side capture of the injected flows' replies:"
sed 's/^/  /' "$WORK/client-summary.txt"
echo
if ((fails)); then
    echo "selfcheck: $fails of $checks checks FAILED"
    exit 1
fi
echo "selfcheck: all $checks checks passed"
