#!/usr/bin/env bash
# Ringfence benchmark: prints figures, and ratios against baselines measured in
# the same run. It is not a test: it never fails because a target is missed (it
# fails only if something cannot be set up). See docs/performance.md.
#
#   1. iperf3 TCP throughput between two namespaces over veth, the receiver holding:
#      (a) no ruleset, (b) the Ringfence daemon on a 10,000-rule policy, (c) the
#      same pairs as a linear nft chain; and, to explain the figures,
#      (d) a minimal stateful ruleset (conntrack only), (e) Ringfence's table
#      without its established-accept shortcut so that every packet does the set
#      lookups, (f) the same as (e) with every set an interval set (what rules
#      with ranges or prefixes cost per lookup).
#   2. compile time (`ringfence check`), apply time (the daemon's last-apply-ms)
#      and `nft -j -f` of the same batch (`ringfence check --dump`), for 10,000
#      and 100,000 rules; and, for sizes up to 20,000, `nft -j -f` of the batch
#      with every set an interval set.
#   3. daemon RSS on the embedded default policy and with 100,000 rules.
#
# Everything runs in network namespaces it creates, removed on exit.
# Environment (all optional):
#   RINGFENCE           binary to measure (default: cargo build --release, target/release/ringfence)
#   BENCH_ROUNDS=5      interleaved rounds of the throughput measurements (median reported)
#   BENCH_IPERF_SECS=3  length of one iperf3 run
#   BENCH_REPS=3        repetitions of compile/apply/nft (median reported)
#   BENCH_SIZES="10000 100000"   (set to "none" to skip part 2)
#   BENCH_THROUGHPUT_RULES=10000
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/common.sh" nft iperf3 ip python3

ROUNDS=${BENCH_ROUNDS:-5}
IPERF_SECS=${BENCH_IPERF_SECS:-3}
REPS=${BENCH_REPS:-3}
SIZES=${BENCH_SIZES:-"10000 100000"}
[ "$SIZES" != none ] || SIZES=""
TP_RULES=${BENCH_THROUGHPUT_RULES:-10000}
PORT=5201
DAEMON_TIMEOUT=900
GEN="python3 $HERE/gen-policy.py"
T0=$(date +%s)

log() { echo "[$(($(date +%s) - T0))s] $*" >&2; }
now_ns() { date +%s%N; }
# ms START_NS END_NS
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e6 }'; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == ">=") ? v >= t : v < t; print (ok ? "met" : "MISSED") }'; }
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# start_daemon NS DIR: like lib.sh's daemon_start, but waits as long as a large
# apply takes, and without querying the daemon: it waits for the "policy
# applied" line of its log, reads its memory, and only then sends one `show
# state` (a query changes the daemon's memory; see docs/performance.md).
# Sets DAEMON_PID, READY_MS (launch to that log line), RSS_KB and HWM_KB (VmRSS
# and VmHWM then), SHOW_MS (one `show state`), SHOWN_RSS_KB (VmRSS after it) and
# APPLY_MS (the daemon's last-apply-ms).
start_daemon() {
    local ns=$1 dir=$2 t0 t1 i state
    rm -f "$(sock "$ns")"
    : >"$WORK/$ns.log"
    t0=$(now_ns)
    ip netns exec "$ns" "$RINGFENCE" --socket "$(sock "$ns")" daemon --policy-dir "$dir" >>"$WORK/$ns.log" 2>&1 &
    DAEMON_PID=$!
    _PIDS+=("$DAEMON_PID")
    disown
    for ((i = 0; i < DAEMON_TIMEOUT * 50; i++)); do
        grep -q "policy applied" "$WORK/$ns.log" && break
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.02
    done
    if ! grep -q "policy applied" "$WORK/$ns.log"; then
        echo "daemon in $ns did not start:"; cat "$WORK/$ns.log"
        return 1
    fi
    READY_MS=$(ms "$t0" "$(now_ns)")
    sleep 0.2
    RSS_KB=$(status_kb "$DAEMON_PID" VmRSS); HWM_KB=$(status_kb "$DAEMON_PID" VmHWM)
    t0=$(now_ns); state=$(rf "$ns" show state --json); t1=$(now_ns)
    SHOW_MS=$(ms "$t0" "$t1")
    SHOWN_RSS_KB=$(status_kb "$DAEMON_PID" VmRSS)
    APPLY_MS=$(python3 -c 'import json, sys; print("%.1f" % json.loads(sys.argv[1])["last-apply-ms"])' "$state")
}

# stop_daemon PID NS: stops the daemon, and removes the namespace lock file it
# leaves in /run/ringfence (named after the namespace's inode).
stop_daemon() {
    local i ino
    ino=$(stat -L -c %i "/run/netns/$2" 2>/dev/null || true)
    kill -TERM "$1" 2>/dev/null || true
    for i in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
    [ -z "$ino" ] || rm -f "/run/ringfence/netns-$ino.lock"
}

# Removes a namespace now (the EXIT trap would too), freeing the kernel's copy of
# a large ruleset before the next measurement.
drop_host() { ip netns del "$1" 2>/dev/null || true; }

# Rewrites a `check --dump` batch as compact JSON: nosc drops the input chain's `ct state
# established,related accept`; interval gives every set `flags interval` (the
# compiler puts exact values in hash sets and only ranges in interval sets).
rewrite() {
    python3 - "$@" <<'PY'
import json, sys
src, dst, mode = sys.argv[1:]
batch = json.load(open(src))
def shortcut(cmd):
    rule = cmd.get("add", {}).get("rule")
    return bool(rule) and rule["chain"] == "input" and any(
        e.get("match", {}).get("left") == {"ct": {"key": "state"}} and "established" in e["match"]["right"]
        for e in rule["expr"])
cmds = batch["nftables"]
if "nosc" in mode:
    kept = [c for c in cmds if not shortcut(c)]
    assert len(kept) == len(cmds) - 1, "no established-accept rule found"
    cmds = kept
if "interval" in mode:
    for c in cmds:
        s = c.get("add", {}).get("set")
        if s:
            s["flags"] = sorted(set(s.get("flags", [])) | {"interval"})
json.dump({"nftables": cmds}, open(dst, "w"), separators=(",", ":"))
PY
}

log "ringfence $("$RINGFENCE" --version 2>/dev/null | awk '{print $2}') ($RINGFENCE); load average $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)

# ---------------------------------------------------------------- 1. throughput
log "generating a $TP_RULES-rule policy and its linear nft chain"
$GEN "$TP_RULES" "$WORK/tp-policy" --allow-port $PORT --linear "$WORK/tp-linear.nft"
"$RINGFENCE" check --policy-dir "$WORK/tp-policy" --dump >"$WORK/tp-dump.json"
rewrite "$WORK/tp-dump.json" "$WORK/tp-sets.json" nosc
rewrite "$WORK/tp-dump.json" "$WORK/tp-interval.json" nosc,interval
# The smallest stateful firewall: what every packet of an established connection
# costs in any ruleset that accepts `ct state established` (conntrack itself).
cat >"$WORK/tp-ct.nft" <<EOF
table inet ctonly {
    chain input { type filter hook input priority 0; policy drop; iif lo accept; ct state established,related accept; tcp dport $PORT accept; }
    chain output { type filter hook output priority 0; policy accept; oif lo accept; ct state established,related accept; }
}
EOF

CONFIGS=(none ringfence linear ct sets interval)
declare -A SRV CLI ADDR TP
IPERF_PIDS=()
k=0
for c in "${CONFIGS[@]}"; do
    k=$((k + 1))
    SRV[$c]=$(host "tp$k-srv")
    CLI[$c]=$(host "tp$k-cli")
    ADDR[$c]=10.201.$k.1
    link "${SRV[$c]}" eth0 "${ADDR[$c]}" "fd00:201:$k::1" "${CLI[$c]}" eth0 "10.201.$k.2" "fd00:201:$k::2"
done
start_daemon "${SRV[ringfence]}" "$WORK/tp-policy"
TP_DAEMON_PID=$DAEMON_PID
ip netns exec "${SRV[linear]}" nft -f "$WORK/tp-linear.nft"
ip netns exec "${SRV[ct]}" nft -f "$WORK/tp-ct.nft"
ip netns exec "${SRV[sets]}" nft -j -f "$WORK/tp-sets.json"
ip netns exec "${SRV[interval]}" nft -j -f "$WORK/tp-interval.json"
for c in "${CONFIGS[@]}"; do
    bg "${SRV[$c]}" iperf3 -s -p $PORT
    IPERF_PIDS+=("${_PIDS[-1]}")
    wait_port "${SRV[$c]}" $PORT tcp
done

iperf() { iperf_gbps "${CLI[$1]}" "${ADDR[$1]}" $PORT "$IPERF_SECS"; } # iperf CONFIG
for ((r = 1; r <= ROUNDS; r++)); do
    for c in "${CONFIGS[@]}"; do
        g=$(iperf "$c")
        TP[$c]="${TP[$c]:-} $g"
        log "throughput round $r: $c $g Gbit/s"
    done
done
declare -A GBPS
for c in "${CONFIGS[@]}"; do
    # shellcheck disable=SC2086
    GBPS[$c]=$(median ${TP[$c]})
done
TP_STATE=$(rf "${SRV[ringfence]}" show state --json | python3 -c 'import json, sys; s = json.load(sys.stdin); print("%d sets, %d elements" % (s["sets"], s["elements"]))')
# Proof that the iperf3 connections went through the daemon's table: the allow
# rule's counter (first packets of each connection; the rest are established).
TP_ALLOW=$(rf "${SRV[ringfence]}" show rules --json | python3 -c 'import json, sys; print(sum(r["packets"] for r in json.load(sys.stdin) if r["name"] == "bench-allow"))')
stop_daemon "$TP_DAEMON_PID" "${SRV[ringfence]}"
kill "${IPERF_PIDS[@]}" 2>/dev/null || true
for c in "${CONFIGS[@]}"; do drop_host "${SRV[$c]}"; drop_host "${CLI[$c]}"; done

# ---------------------------------------------------- 2. compile and apply time
declare -A COMPILE APPLY READY NFT NFTINT ELEMS REPS_USED RSS HWM SHOWN SHOW
for n in $SIZES; do
    reps=$REPS
    REPS_USED[$n]=$reps
    dir=$WORK/policy-$n
    $GEN "$n" "$dir" --allow-port $PORT
    # The daemon streams compact JSON to nft; `check --dump` pretty-prints the same
    # batch. The baseline gets the compact form (nft parses the pretty one ~20%
    # slower at 100,000 rules), so that the ratio compares like with like.
    "$RINGFENCE" check --policy-dir "$dir" --dump >"$WORK/dump-$n-pretty.json"
    rewrite "$WORK/dump-$n-pretty.json" "$WORK/dump-$n.json" compact
    rewrite "$WORK/dump-$n-pretty.json" "$WORK/dump-$n-interval.json" interval
    ELEMS[$n]=$("$RINGFENCE" check --policy-dir "$dir" | sed -E 's/.* ([0-9]+) elements.*/\1/')

    c=(); a=(); d=(); f=(); h=()
    for ((r = 1; r <= reps; r++)); do
        t0=$(now_ns); "$RINGFENCE" check --policy-dir "$dir" >/dev/null; t1=$(now_ns)
        c+=("$(ms "$t0" "$t1")")
    done
    COMPILE[$n]=$(median "${c[@]}")
    log "$n rules: compile (check) ${c[*]} ms"

    for ((r = 1; r <= reps; r++)); do
        ns=$(host "apply$n-$r")
        start_daemon "$ns" "$dir"
        a+=("$APPLY_MS"); d+=("$READY_MS")
        if [ "$r" -eq 1 ]; then
            RSS[$n]=$RSS_KB; HWM[$n]=$HWM_KB; SHOWN[$n]=$SHOWN_RSS_KB; SHOW[$n]=$SHOW_MS
        fi
        stop_daemon "$DAEMON_PID" "$ns"
        drop_host "$ns"
        log "$n rules: daemon apply $APPLY_MS ms (launch to ready $READY_MS ms; RSS $(mb "$RSS_KB") MB, $(mb "$SHOWN_RSS_KB") MB after a $SHOW_MS ms show state)"
    done
    APPLY[$n]=$(median "${a[@]}"); READY[$n]=$(median "${d[@]}")

    # The all-interval variant only where it is quick: its load time grows with
    # the square of the element count (minutes at 100,000; docs/performance.md).
    variants=("")
    [ "$n" -gt 20000 ] || variants+=(-interval)
    for ((r = 1; r <= reps; r++)); do
        for variant in "${variants[@]}"; do
            ns=$(host "nft$n-$r$variant")
            t0=$(now_ns); ip netns exec "$ns" nft -j -f "$WORK/dump-$n$variant.json"; t1=$(now_ns)
            drop_host "$ns"
            if [ -z "$variant" ]; then f+=("$(ms "$t0" "$t1")"); else h+=("$(ms "$t0" "$t1")"); fi
        done
        log "$n rules: nft -j -f ${f[-1]} ms (all sets interval: $([ ${#h[@]} -eq 0 ] && echo "not measured" || echo "${h[-1]}") ms)"
    done
    NFT[$n]=$(median "${f[@]}"); NFTINT[$n]=$([ ${#h[@]} -eq 0 ] && echo - || median "${h[@]}")
done

# ------------------------------------------------------------------ 3. idle RSS
mkdir "$WORK/default-policy"
cp "$REPO/policies/default.yaml" "$WORK/default-policy/00-default.yaml"
ns=$(host idle)
start_daemon "$ns" "$WORK/default-policy"
IDLE_RSS=$RSS_KB; IDLE_HWM=$HWM_KB; IDLE_SHOWN=$SHOWN_RSS_KB; IDLE_SHOW=$SHOW_MS
stop_daemon "$DAEMON_PID" "$ns"
drop_host "$ns"

# -------------------------------------------------------------------- summary
LOAD_END=$(cut -d' ' -f1 /proc/loadavg)
A=${GBPS[none]}
B_A=$(ratio "${GBPS[ringfence]}" "$A")
raw() { echo "${TP[$1]}" | sed 's/^ //; s/ /, /g'; }
row() { printf '   %-62s %7s %6s   %s\n' "$2" "${GBPS[$1]}" "$(ratio "${GBPS[$1]}" "$A")" "$(raw "$1")"; }
{
echo
echo "== Ringfence benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, kernel $(uname -r), $(nft --version | awk '{print $1, $2}'), $(iperf3 --version | head -1 | awk '{print $1, $2}')"
echo "   load average $LOAD_START at start, $LOAD_END at end (other work on the machine makes figures noisy)"
echo
echo "1. iperf3 TCP throughput, one stream, $IPERF_SECS s, veth between two namespaces,"
echo "   median of $ROUNDS interleaved rounds; ruleset in the receiving namespace:"
printf '   %-62s %7s %6s   %s\n' "" "Gbit/s" "x (a)" "runs"
row none "(a) none"
row ringfence "(b) ringfence daemon, $TP_RULES-rule policy ($TP_STATE)"
row linear "(c) the same $TP_RULES pairs, linear nft chain"
echo "   explaining (b):"
row ct "(d) conntrack only: ct state established accept, 1 allow"
row sets "(e) table of (b) minus the established shortcut: every packet"
row interval "(f) table of (e) with every set an interval set (pipapo)"
echo "   (b): the allow rule for tcp/$PORT counted $TP_ALLOW packets (new connections; the rest are established)"
echo "   b/a = $B_A, target >= 0.95: $(verdict "$B_A" ">=" 0.95);  b/d = $(ratio "${GBPS[ringfence]}" "${GBPS[ct]}");  c/a = $(ratio "${GBPS[linear]}" "$A")"
if [ -n "$SIZES" ]; then
    echo
    echo "2. compile and apply, ms (median of the runs shown)"
    printf '   %-7s %8s %4s %8s %8s %10s %6s %8s %13s %5s %10s\n' rules elements runs compile apply "nft -j -f" ratio ready "apply+verify" ratio "intervals"
    for n in $SIZES; do
        av=$(awk -v r="${READY[$n]}" -v c="${COMPILE[$n]}" 'BEGIN { printf "%.1f", r - c }')
        printf '   %-7s %8s %4s %8s %8s %10s %6s %8s %13s %5s %10s\n' "$n" "${ELEMS[$n]}" "${REPS_USED[$n]}" "${COMPILE[$n]}" "${APPLY[$n]}" "${NFT[$n]}" \
            "$(ratio "${APPLY[$n]}" "${NFT[$n]}")" "${READY[$n]}" "$av" "$(ratio "$av" "${NFT[$n]}")" "${NFTINT[$n]}"
    done
    echo "   compile: \`ringfence check\` wall time; apply: the daemon's last-apply-ms (batch to nft, commit);"
    echo "   nft -j -f: the same batch, compact, into a fresh namespace; ratio: apply / nft;"
    echo "   ready: daemon launch to its \"policy applied\" log line; apply+verify: ready - compile,"
    echo "   which adds the read-back check (nft -j -t list table) that follows the commit;"
    echo "   intervals: nft -j -f of the batch with every set an interval set (as ranges and prefixes get)"
    for n in $SIZES; do
        echo "   apply/nft at $n rules = $(ratio "${APPLY[$n]}" "${NFT[$n]}"), target <= 1.3: $(verdict "$(ratio "${APPLY[$n]}" "${NFT[$n]}")" "<" 1.3001)"
    done
fi
echo
echo "3. daemon memory, MB: VmRSS when the first apply is done, its peak so far (VmHWM),"
echo "   and VmRSS after one \`show state\` (with how long that request took)"
printf '   %-30s %8s %8s %18s\n' policy RSS peak "after show state"
printf '   %-30s %8s %8s %18s\n' "embedded default (idle)" "$(mb "$IDLE_RSS")" "$(mb "$IDLE_HWM")" "$(mb "$IDLE_SHOWN") ($IDLE_SHOW ms)"
for n in $SIZES; do
    printf '   %-30s %8s %8s %18s\n' "$n rules" "$(mb "${RSS[$n]}")" "$(mb "${HWM[$n]}")" "$(mb "${SHOWN[$n]}") (${SHOW[$n]} ms)"
done
echo "   idle RSS target < 20 MB: $(verdict "$(mb "$IDLE_RSS")" "<" 20)"
echo
echo "   total benchmark time $(($(date +%s) - T0)) s"
}
