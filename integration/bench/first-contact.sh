#!/usr/bin/env bash
# VM benchmark of isolation's first contact (figures, not pass/fail; issue 11,
# docs/isolation.md "First contact"), inside the test VM (integration/vm/):
#   1. time to first byte of a new TCP connection to a peer with which no SA is
#      up: one socket, no retry on a new one (conversation.py, one line: from
#      before connect() to the echo of the first line). Two pairs in the same
#      guest, contacts interleaved (hand first on odd contacts):
#      - hand: charons configured by hand as the VM README's first-contact
#        probes were: a static reqid, `policies = no`, `start_action = trap`,
#        xfrm policies installed by hand with `level required` templates in
#        and out, and `net.core.xfrm_larval_drop=0` (the kernel's policy queue
#        holds the first packets);
#      - ringfence: two Ringfence members in secure-request with `fallback: 5s`
#        (above IKE's time under TCG: members never fall back).
#      RUNS (default 20) first contacts per pair; before each, one side
#      terminates the IKE SA and both kernels are waited for until they hold no
#      ESP SA. Median and p90 of each, and the ratios ringfence / hand.
#   2. time to connect to a non-member (no IKE at all) from a member in
#      secure-request with `fallback: 500ms`, NM_RUNS (default 10) times; the
#      soft SA lasts `lifetimes.idle` (2 s here) and each contact waits until
#      `show sas` lists none. Median and p90, and their ratio to 500 ms.
#   3. clear TCP/UDP packets between the members over all the first contacts
#      of 1 (capture on the responder's port, guest-lib's `wire ...
#      clear-traffic`); the hand pair's count beside it.
# Run on the host: bash integration/bench/first-contact.sh [RUNS [NM_RUNS]]
# (it boots the VM itself; RINGFENCE=PATH names the binary). Under TCG (no
# KVM) every figure is slower than on hardware: compare only figures measured
# in the same run.
set -euo pipefail
if [ -z "${RF_VM_KDIR:-}" ]; then
    # 2 x 20 first contacts and 10 fallbacks under TCG on a busy machine: 20-30 min.
    RF_VM_TIMEOUT=${RF_VM_TIMEOUT:-2700} exec bash "$(dirname "$0")/../vm/run.sh" "$0" "$@"
fi
source "$(dirname "$0")/../vm/guest-lib.sh"
prefer_release
RUNS=${1:-20}
NM_RUNS=${2:-10}
HAND_REQID=7
phase() { echo "-- [${SECONDS}s] $*"; }
echo "binary: $RINGFENCE"

phase "Hosts"
pki_ca ca "C=XX, O=Example, CN=Example Root CA"
# The Ringfence members and the non-member: first-contact.sh's switch.
sw=$(switch sw)
m1=$(host m1); m2=$(host m2); nm=$(host nm)
n=1
for ns in "$m1" "$m2" "$nm"; do
    echo_host "$sw" "$ns" "10.90.0.$n" "fd00:90::$n"
    n=$((n + 1))
done
for n in 1 2; do
    ns=$PREFIX-m$n
    pki_host "m$n" ca
    charon_start "$ns"
    member "$ns" "m$n" secure-request 5s 5m
    wait_for 10 loaded "$ns" || { echo "m$n: the connection did not load"; exit 1; }
done
# The hand-configured pair, on a switch of its own.
hsw=$(switch hsw)
h1=$(host h1); h2=$(host h2)
for n in 1 2; do
    ns=$PREFIX-h$n
    echo_host "$hsw" "$ns" "10.99.0.$n" "fd00:99::$n"
    pki_host "host$n" ca "10.99.0.$n"
    trap_conf "host$n" 10.99.0.0/24 "10.99.0.$n" "$HAND_REQID" | swanctl_dir "$ns" "host$n" ca
    ip netns exec "$ns" sysctl -qw net.core.xfrm_larval_drop=0
    ip -n "$ns" xfrm policy add dir out src "10.99.0.$n/32" dst 10.99.0.0/24 priority 100 \
        tmpl proto esp mode transport reqid "$HAND_REQID" level required
    ip -n "$ns" xfrm policy add dir in src 10.99.0.0/24 dst "10.99.0.$n/32" priority 100 \
        tmpl proto esp mode transport reqid "$HAND_REQID" level required
    charon_start "$ns"
    sw_load "$ns" >/dev/null
done

# --- 1. time to first byte at first contact --------------------------------------------
# contact PAIR I FROM TO ADDR CONN: FROM's and TO's SAs closed (FROM terminates
# CONN), then one first contact from FROM to ADDR; appends "FIRST_BYTE CONNECT"
# (ms) to $WORK/PAIR.ms.
contact() {
    local pair=$1 i=$2 from=$3 to=$4 addr=$5 conn=$6
    forget "$from" "$to" "$conn" || echo "$pair contact $i: an ESP SA was left after --terminate"
    if conversation "$pair-$i" "$from" "$addr" 1; then
        figure "$pair-$i" '"%d %d" % (c["first_byte_ms"], c["connect_ms"])' | tee -a "$WORK/$pair.ms" |
            sed "s/^/   [${SECONDS}s] $pair $i: first byte, connect (ms): /"
    else
        echo "$pair contact $i: no answer (left out)"
    fi
}
# spread FILE COL: "N MEDIAN P90 MIN MAX" of the numbers in column COL (from 0)
# of FILE, "0" when there is none. p90 as vm-esp.sh takes it.
spread() {
    python3 -c '
import statistics, sys
try:
    v = sorted(float(l.split()[int(sys.argv[2])]) for l in open(sys.argv[1]) if l.strip())
except FileNotFoundError:
    v = []
print(len(v), *(["%.0f" % x for x in (statistics.median(v), v[min(len(v) - 1, round(0.9 * len(v)) - 1)], v[0], v[-1])] if v else []))' "$@"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

phase "1. $RUNS first contacts per pair, interleaved"
capture_start "$h2" eth0 hand
capture_start "$m2" eth0 ringfence
for i in $(seq "$RUNS"); do
    if [ $((i % 2)) -eq 1 ]; then
        contact hand "$i" "$h1" "$h2" 10.99.0.2 lan; contact ringfence "$i" "$m1" "$m2" 10.90.0.2 ringfence
    else
        contact ringfence "$i" "$m1" "$m2" 10.90.0.2 ringfence; contact hand "$i" "$h1" "$h2" 10.99.0.2 lan
    fi
done
capture_stop hand
capture_stop ringfence
echo "1. time to first byte of a new TCP connection, no SA up (one socket: connect, one line echoed):"
declare -A MED=() P90=()
for pair in hand ringfence; do
    read -r n med p90 min max < <(spread "$WORK/$pair.ms" 0)
    read -r _ cmed cp90 _ < <(spread "$WORK/$pair.ms" 1)
    [ "$n" -gt 0 ] || { echo "   $pair: no contact answered"; continue; }
    MED[$pair]=$med; P90[$pair]=$p90
    echo "   $pair: $n of $RUNS contacts: median $med ms, p90 $p90 ms (min $min, max $max); connect() alone: median $cmed ms, p90 $cp90 ms"
done
[ -z "${MED[hand]:-}" ] || [ -z "${MED[ringfence]:-}" ] ||
    echo "   ratio ringfence / hand: median $(ratio "${MED[ringfence]}" "${MED[hand]}"), p90 $(ratio "${P90[ringfence]}" "${P90[hand]}") (target <= 1.1)"
echo "3. clear TCP/UDP packets between the members over these first contacts:"
echo "   ringfence $(wire ringfence clear-traffic) (target 0; $(wire ringfence esp) ESP packets); hand $(wire hand clear-traffic) ($(wire hand esp) ESP packets)"
# (Members never fall back: a fallback here would make 1 measure something else.)
for ns in "$m1" "$m2"; do
    echo "   ${ns##*-}: fallbacks $(rf "$ns" show stats --json | jget "v['isolation']['fallbacks']"), soft SAs $(rf "$ns" show sas --json | jget "v['soft-sas']")"
done

# --- 2. connect to a non-member --------------------------------------------------------
phase "2. $NM_RUNS contacts with the non-member, fallback 500 ms"
# (lifetimes.idle is also the connection's inactivity timeout: the daemon loads
# it again, and closes the SAs of the old one.)
loads=$(rf "$m1" show state --json | jget 'v["isolation"]["ike"]["loads"]')
member "$m1" m1 secure-request 500ms 2s
reloaded() { [ "$(rf "$1" show state --json | jget 'v["isolation"]["ike"]["loads"] if v["isolation"]["ike"]["loaded"] else -1')" -gt "$2" ]; }
wait_for 60 reloaded "$m1" "$loads" || {
    echo "m1: the connection was not loaded again within 60 s: $(rf "$m1" show state --json | jget 'v["isolation"]["ike"]')"
    tail -n 20 "$WORK/$m1.log"
}
for i in $(seq "$NM_RUNS"); do
    # The previous contact's soft SA has ended (lifetimes.idle without traffic).
    wait_for 30 no_soft "$m1" 10.90.0.3 || echo "non-member contact $i: the soft SA did not end within 30 s"
    if conversation "nm-$i" "$m1" 10.90.0.3 1; then
        figure "nm-$i" 'c["connect_ms"]' | tee -a "$WORK/nm.ms" | sed "s/^/   [${SECONDS}s] non-member $i: connect (ms): /"
    else
        echo "non-member contact $i: no connection (left out)"
    fi
done
echo "   fallbacks counted by m1: $(rf "$m1" show stats --json | jget "v['isolation']['fallbacks']")"

echo "2. time to connect to a non-member (no IKE), fallback 500 ms:"
read -r n med p90 min max < <(spread "$WORK/nm.ms" 0)
if [ "$n" -gt 0 ]; then
    echo "   $n of $NM_RUNS contacts: median $med ms, p90 $p90 ms (min $min, max $max); measured / configured: median $(ratio "$med" 500), p90 $(ratio "$p90" 500) (target <= 1.2)"
else
    echo "   no contact connected"
fi
