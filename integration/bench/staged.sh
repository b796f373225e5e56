#!/usr/bin/env bash
# What a staged copy of a policy costs (docs/performance.md, "Staged rules"):
# iperf3 TCP throughput to a receiver whose daemon holds a 10,000-rule policy
# and a staged copy of all its rules, divided by the same without the copy
# (goal: at least 0.9), and the same ratio for the rate of new connections,
# where the staged chains' work falls (established packets never reach them).
# Not a test: it prints figures, and fails only if something cannot be set up.
# Environment (all optional):
#   RINGFENCE            binary to measure (default: cargo build --release)
#   BENCH_ROUNDS=5       interleaved rounds (median reported)
#   BENCH_IPERF_SECS=3   length of one iperf3 run
#   BENCH_STAGED_RULES=10000
#   BENCH_CONNECTIONS=2000  new connections per round of the connection rate
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/common.sh" nft iperf3 ip python3

ROUNDS=${BENCH_ROUNDS:-5}
IPERF_SECS=${BENCH_IPERF_SECS:-3}
RULES=${BENCH_STAGED_RULES:-10000}
CONNS=${BENCH_CONNECTIONS:-2000}
PORT=5201
CONN_PORT=7000
log() { echo "[$SECONDS s] $*" >&2; }

CONFIGS=(enforced staged)
declare -A SRV CLI ADDR TP CPS
k=0
for c in "${CONFIGS[@]}"; do
    k=$((k + 1))
    SRV[$c]=$(host "st$k-srv"); CLI[$c]=$(host "st$k-cli"); ADDR[$c]=10.202.$k.1
    link "${SRV[$c]}" eth0 "${ADDR[$c]}" "fd00:202:$k::1" "${CLI[$c]}" eth0 "10.202.$k.2" "fd00:202:$k::2"
    dir=$WORK/policy-$c
    flag=(); [ "$c" = staged ] && flag=(--staged-copy)
    python3 "$HERE/gen-policy.py" "$RULES" "$dir" --allow-port $PORT "${flag[@]}"
    printf 'version: 1\nrules:\n  - { name: bench-conn, direction: in, action: allow, protocol: tcp, local-ports: [%d] }\n' \
        $CONN_PORT >"$dir/11-bench-conn.yaml"
    log "starting the daemon of $c ($(ls "$dir" | wc -l) files)"
    daemon_start "${SRV[$c]}" "$dir"
    bg "${SRV[$c]}" iperf3 -s -p $PORT
    wait_port "${SRV[$c]}" $PORT tcp
    bg "${SRV[$c]}" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(__import__("sys").argv[1]))); s.listen(1024)
while True:
    s.accept()[0].close()' $CONN_PORT
    wait_port "${SRV[$c]}" $CONN_PORT tcp
done

iperf() { iperf_gbps "${CLI[$1]}" "${ADDR[$1]}" $PORT "$IPERF_SECS"; } # iperf CONFIG
conns() { # conns CONFIG: new connections per second, one after another
    ip netns exec "${CLI[$1]}" timeout 120 python3 -c '
import socket, sys, time
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = time.monotonic()
for _ in range(n):
    s = socket.create_connection((addr, port), timeout=2)
    s.close()
print("%.0f" % (n / (time.monotonic() - t)))' "${ADDR[$1]}" $CONN_PORT "$CONNS"
}
for ((r = 1; r <= ROUNDS; r++)); do
    for c in "${CONFIGS[@]}"; do
        g=$(iperf "$c"); TP[$c]="${TP[$c]:-} $g"
        n=$(conns "$c"); CPS[$c]="${CPS[$c]:-} $n"
        log "round $r: $c $g Gbit/s, $n connections/s"
    done
done

# Proof that the staged copy was in the path: the table has its chains and
# sets, and the daemon counts its rules (none of which the traffic matches).
staged_rules=$(rf "${SRV[staged]}" show staged --json | python3 -c 'import json, sys; v = json.load(sys.stdin); print(len(v["rules"]), sum(r["connections"] for r in v["rules"]))')
ip netns exec "${SRV[staged]}" nft list chain inet ringfence staged_in_public_blocks >/dev/null
elements() { rf "$1" show state --json | python3 -c 'import json, sys; s = json.load(sys.stdin); print("%d sets, %d elements" % (s["sets"], s["elements"]))'; }

# shellcheck disable=SC2086
tp_e=$(median ${TP[enforced]}); tp_s=$(median ${TP[staged]})
# shellcheck disable=SC2086
c_e=$(median ${CPS[enforced]}); c_s=$(median ${CPS[staged]})
echo "== staged rules, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, kernel $(uname -r), $ROUNDS rounds (median)"
echo "enforced: $RULES block rules ($(elements "${SRV[enforced]}"))"
echo "staged:   the same and a staged copy of them ($(elements "${SRV[staged]}")); show staged: $staged_rules (rules, connections counted)"
echo "iperf3 one stream, $IPERF_SECS s:  enforced $tp_e Gbit/s, with the staged copy $tp_s Gbit/s, ratio $(ratio "$tp_s" "$tp_e") (goal >= 0.9)"
echo "new connections, $CONNS a round: enforced $c_e/s, with the staged copy $c_s/s, ratio $(ratio "$c_s" "$c_e")"
