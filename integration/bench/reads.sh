#!/usr/bin/env bash
# Ringfence benchmark of reads at 100,000 rules: prints figures, never fails
# because a target is missed (only if something cannot be set up). See
# docs/performance.md, "Reads under load".
#
#   1. Each large read (`show rules`, `show stats`, `show profiles`, `show
#      policy`, all --json) once: its time through the CLI, the daemon's peak
#      RSS growth (VmHWM, reset before each through /proc/PID/clear_refs) and
#      its RSS after, against before; then `show rules` 10 times through
#      reads.py (connect to the answer's last byte, without the CLI).
#   2. `show state` latency (reads.py: connect to the answer's last byte),
#      BENCH_QUERIES (300) queries one every 10 ms, p50/p99/max:
#      (0) on a quiet daemon;
#      (a) while 100,000-rule policies are applied back to back (`ringfence
#          apply` in a loop, the files alternating between two policies);
#      (b) while BENCH_EVENTS (10,000) address events arrive (`ip addr add` /
#          `del` of IPv4 /32s on a veth; the policy has a
#          `local-subnet` rule, so that each is a dynamic set update);
#      (c) while another client loops `show rules` (100,000 rules).
#
# Everything runs in a network namespace it creates, removed on exit.
# Environment (all optional):
#   RINGFENCE          binary to measure (default: cargo build --release, target/release/ringfence)
#   BENCH_RULES=100000 rules in the policy
#   BENCH_QUERIES=300  `show state` queries in each case
#   BENCH_EVENTS=10000 address events in case (b)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/common.sh" nft ip python3

RULES=${BENCH_RULES:-100000}
QUERIES=${BENCH_QUERIES:-300}
EVENTS=${BENCH_EVENTS:-10000}
T0=$(date +%s)
log() { echo "[$(($(date +%s) - T0))s] $*" >&2; }
log "ringfence ($RINGFENCE); load average $(cut -d' ' -f1-3 /proc/loadavg)"

fw=$(host fw)
P="$WORK/policy"
python3 "$HERE/gen-policy.py" "$RULES" "$P" >/dev/null
cat >"$P/10-subnet.yaml" <<'YAML'
version: 1
rules:
  - { name: lan, direction: in, action: allow, protocol: tcp, local-ports: [22], remote-addresses: [local-subnet] }
YAML
log "starting the daemon with $RULES rules"
daemon_start "$fw" "$P"
SOCK=$(sock "$fw")
kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$DAEMON_PID/status"; }
now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
latency() { ip netns exec "$fw" python3 "$HERE/reads.py" "$SOCK" time "$@"; }
state_latency() { latency state "$QUERIES"; }

SUMMARY=()
for what in rules stats profiles policy; do
    echo 5 >"/proc/$DAEMON_PID/clear_refs"
    base=$(kb VmRSS)
    t0=$(now_ms)
    rf "$fw" show "$what" --json | wc -c >"$WORK/size"
    took=$(($(now_ms) - t0))
    hwm=$(kb VmHWM) after=$(kb VmRSS)
    SUMMARY+=("show $what --json: $took ms, $(($(cat "$WORK/size") / 1000000)) MB; daemon peak RSS +$(((hwm - base) / 1024)) MB, after +$(((after - base) / 1024)) MB (baseline $((base / 1024)) MB)")
    log "${SUMMARY[-1]}"
done

SUMMARY+=("show rules, the daemon's answer alone: $(latency rules 10)")
log "${SUMMARY[-1]}"
SUMMARY+=("show state, quiet:                     $(state_latency)")
log "${SUMMARY[-1]}"

# (a) Applies back to back, alternating between the policy and the same with
# every port one higher (so that every apply replaces the table).
cp -r "$P" "$WORK/first"
cp -r "$P" "$WORK/other"
python3 - "$WORK/other" <<'PY'
import pathlib, re, sys
for f in pathlib.Path(sys.argv[1]).glob("50-bench-*.yaml"):
    f.write_text(re.sub(r"local-ports: \[(\d+)\]", lambda m: "local-ports: [%d]" % (int(m[1]) + 1), f.read_text()))
PY
applies() {
    local i=0
    while :; do
        if ((i++ % 2)); then cp "$WORK/first/"50-bench-*.yaml "$P/"; else cp "$WORK/other/"50-bench-*.yaml "$P/"; fi
        ip netns exec "$fw" "$RINGFENCE" --socket "$SOCK" apply >/dev/null
    done
}
gen0=$(state "$fw" generation)
applies &
LOOP=$!
SUMMARY+=("show state, during 100k-rule applies:  $(state_latency)")
kill "$LOOP"; wait "$LOOP" 2>/dev/null || true
# The loop's last `apply` goes on after it, and the files it copied make the
# daemon reload once more (their watch, after 300 ms of quiet): wait until
# nothing is in progress and the generation holds for a second, so that no
# apply of (a) runs in (b) nor is left out of the count.
settled() {
    local gen
    until [ "$(state "$fw" changes-in-progress)" = 0 ]; do sleep 0.1; done
    gen=$(state "$fw" generation)
    sleep 1
    [ "$(state "$fw" changes-in-progress)" = 0 ] && [ "$(state "$fw" generation)" = "$gen" ]
}
until settled; do :; done
SUMMARY[-1]+=" ($(($(state "$fw" generation) - gen0)) applies)"
log "${SUMMARY[-1]}"

# (b) Address events.
ip -n "$fw" link add bench0 type veth peer name bench1
ip -n "$fw" link set bench0 up
python3 -c "
n = $EVENTS // 2
for i in range(n): print('addr add 10.200.%d.%d/32 dev bench0' % (i // 250, i % 250 + 1))
for i in range(n): print('addr del 10.200.%d.%d/32 dev bench0' % (i // 250, i % 250 + 1))
" >"$WORK/events"
t0=$(now_ms)
ip -n "$fw" -batch "$WORK/events" &
EV=$!
SUMMARY+=("show state, during $EVENTS address events: $(state_latency)")
wait "$EV"
SUMMARY[-1]+=" (events took $(($(now_ms) - t0)) ms)"
log "${SUMMARY[-1]}"

# (c) Another client reading every rule, back to back.
ip netns exec "$fw" python3 "$HERE/reads.py" "$SOCK" loop rules &
LOOP=$!
SUMMARY+=("show state, during show rules loops:   $(state_latency)")
kill "$LOOP"; wait "$LOOP" 2>/dev/null || true
log "${SUMMARY[-1]}"

echo "== reads at $RULES rules ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)) =="
printf '%s\n' "${SUMMARY[@]}"
