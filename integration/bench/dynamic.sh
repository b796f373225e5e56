#!/usr/bin/env bash
# Ringfence benchmark of the dynamic sets (`default-gateway`, `local-subnet`, `dns`):
# prints figures, never fails because a target is missed (only if something
# cannot be set up). See docs/performance.md, "Dynamic sets".
#
#   1. Latency from a route change to the element being in the kernel set:
#      BENCH_CHANGES (200) times `ip route replace default via <alternating
#      gateway>` in the daemon's namespace; for each, the time from writing the
#      command to a long-running `ip -batch -` until `nft monitor` in the same
#      namespace prints the new gateway's element being added to
#      dyn_default_gateway4. Median, p90, p99, max. As a cross-check,
#      BENCH_POLL_CHANGES (20) more changes measured by polling `nft -j list set`
#      in a tight loop instead.
#   2. The same for resolv.conf (the daemon runs with --resolv-conf pointing
#      to a file in the work directory): BENCH_RESOLV_CHANGES (200) times a new
#      file naming the other of two name servers (10.250.0.53, .54) is written
#      next to it and renamed over it (rename(2)), by one long-running python3;
#      for each, the time from just before the rename until `nft monitor`
#      prints the new server's element being added to dyn_dns4. Median, p90,
#      p99, max.
#   3. A burst of BENCH_EVENTS (10,000) address events in one `ip -batch`: 60%
#      adds (2/3 IPv4 /24s, 1/3 IPv6 /64s, on one interface) then 40% of them
#      deleted. The daemon's CPU time (utime+stime from /proc/PID/stat, and
#      separately that of the nft processes it ran, cutime+cstime) from the
#      start of the batch until the sets are final, the time until they are
#      final (the daemon's log line of its last update; checked against
#      `ip -j addr`), how many set updates the burst took, and how long
#      `show state` took to answer during the burst.
#   4. With the burst's addresses left in place (local-subnet sets of about
#      2,000 elements), BENCH_ADDR_CHANGES single addresses added and deleted:
#      the time until the daemon's update is done (its log line, written when
#      nft returned; the kernel set is checked after each).
#   5. To explain 3 and 4: in a scratch namespace, `nft -f` of what one update
#      sends (flush set + add every element) for a set of that size and type,
#      against adding or deleting only the element that changed.
#
# Everything runs in network namespaces it creates, removed on exit.
# Environment (all optional):
#   RINGFENCE             binary to measure (default: cargo build --release, target/release/ringfence)
#   BENCH_CHANGES=200     route changes measured with nft monitor
#   BENCH_POLL_CHANGES=20 route changes measured by polling (0 to skip)
#   BENCH_RESOLV_CHANGES=200  resolv.conf replacements measured with nft monitor
#   BENCH_EVENTS=10000    address events in the burst
#   BENCH_ADDR_CHANGES=10 single address adds and deletes after the burst
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/common.sh" nft ip python3 stdbuf
# Parts 1 and 2 time their changes with setlatency.py.
export PYTHONPATH="$HERE:$PYTHONPATH"

CHANGES=${BENCH_CHANGES:-200}
POLL_CHANGES=${BENCH_POLL_CHANGES:-20}
RESOLV_CHANGES=${BENCH_RESOLV_CHANGES:-200}
EVENTS=${BENCH_EVENTS:-10000}
ADDR_CHANGES=${BENCH_ADDR_CHANGES:-10}
T0=$(date +%s)
log() { echo "[$(($(date +%s) - T0))s] $*" >&2; }
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
log "ringfence $("$RINGFENCE" --version 2>/dev/null | awk '{print $2}') ($RINGFENCE); load average $(cut -d' ' -f1-3 /proc/loadavg)"

# The daemon's host: eth0 to a peer holding both gateways (10.250.0.2 and .3),
# a default route via the first, a resolv.conf of its own naming 10.250.0.53,
# and a policy that uses the three keywords.
fw=$(host fw); peer=$(host peer)
link "$fw" eth0 10.250.0.1 fd00:250::1 "$peer" eth0 10.250.0.2 fd00:250::2
ip -n "$peer" addr add 10.250.0.3/24 dev eth0
ip -n "$fw" route add default via 10.250.0.2
RESOLV=$WORK/etc/resolv.conf
mkdir "$WORK/policy" "$WORK/etc"
echo "nameserver 10.250.0.53" >"$RESOLV"
cat >"$WORK/policy/10-dynamic.yaml" <<'YAML'
version: 1
rules:
  - { name: lan-web, direction: in, action: allow, protocol: tcp, local-ports: [8080], remote-addresses: [local-subnet] }
  - { name: gw-udp, direction: in, action: allow, protocol: udp, local-ports: [9999], remote-addresses: [default-gateway] }
  - { name: dns-udp, direction: out, action: allow, protocol: udp, remote-ports: [53], remote-addresses: [dns] }
YAML
echo "$ND_RULE" >>"$WORK/policy/10-dynamic.yaml"
daemon_start "$fw" "$WORK/policy" --resolv-conf "$RESOLV"
DAEMON_LOG="$WORK/$fw.log"

# figures PREFIX FILE: reads the figures setlatency.summary wrote to FILE
# (shell variables PREFIX_MEDIAN, PREFIX_P99... and PREFIX_ALL).
# shellcheck disable=SC1090
figures() { eval "$(grep -E "^$1_" "$2")"; }
# figures_line PREFIX: those figures, as the summary prints them.
figures_line() {
    local median=$1_MEDIAN p90=$1_P90 p99=$1_P99 min=$1_MIN max=$1_MAX missed=$1_MISSED
    echo "   median ${!median} ms   p90 ${!p90} ms   p99 ${!p99} ms   min ${!min} ms   max ${!max} ms   missed ${!missed} (target p99 < 15 ms, issue 15)"
}
# holds SET ADDRESS: the kernel set SET in the daemon's namespace holds ADDRESS.
holds() { ip netns exec "$fw" nft -j list set inet ringfence "$1" | grep -q "\"$2\""; }

# ------------------------------------------------------------------ 1. latency
log "1. $CHANGES route changes, latency by nft monitor; $POLL_CHANGES by polling"
python3 - "$fw" "$CHANGES" "$POLL_CHANGES" >"$WORK/latency.out" <<'PY'
import subprocess, sys, time
import setlatency as sl
ns, changes, poll_changes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gws = ["10.250.0.3", "10.250.0.2"]
# One `ip` process for every change, so that no process start is measured:
# `ip -batch -` reads a line and sends its netlink request at once.
ipb = subprocess.Popen(["ip", "-n", ns, "-force", "-batch", "-"], stdin=subprocess.PIPE, text=True)
def change(gw):
    t = time.monotonic()
    ipb.stdin.write("route replace default via %s\n" % gw)
    ipb.stdin.flush()
    return t
lat, missed, gw = sl.monitored(ns, "dyn_default_gateway4", gws, change, changes)
poll_lat, poll_missed, tries, nft_ms, gw = sl.polled(ns, "dyn_default_gateway4", gws, change, poll_changes, gw)
ipb.stdin.close()
ipb.wait()
sl.summary("MON", lat, missed)
print("POLL_N=%d POLL_MISSED=%d POLL_MEDIAN=%s POLL_P99=%s POLL_MAX=%s POLL_NFT_MS=%.1f POLL_TRIES=%s" % (
    len(poll_lat), poll_missed, sl.fmt(poll_lat, 50), sl.fmt(poll_lat, 99), sl.fmt(poll_lat, 100), nft_ms, tries))
PY
figures MON "$WORK/latency.out"
# shellcheck disable=SC1090
eval "$(grep -E '^POLL_' "$WORK/latency.out")"
# The last change's gateway must be in the kernel set (the figures measured the real thing).
final_gw=$(ip -n "$fw" -j route show default | jget 'v[0]["gateway"]')
holds dyn_default_gateway4 "$final_gw" || { echo "the kernel set does not hold the last gateway $final_gw"; exit 1; }
log "latency: median $MON_MEDIAN ms, p99 $MON_P99 ms (monitor); polling median $POLL_MEDIAN ms"

# ------------------------------------------------------- 2. resolv.conf latency
# As 1, the change being a new resolv.conf renamed over the daemon's, as
# resolvers replace it: written next to it first, the time taken just before
# rename(2), both by this one python3 process (no process start measured).
log "2. $RESOLV_CHANGES resolv.conf replacements, latency by nft monitor"
python3 - "$fw" "$RESOLV_CHANGES" "$RESOLV" >"$WORK/resolv.out" <<'PY'
import os, sys, time
import setlatency as sl
ns, changes, resolv = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def change(server):
    with open(resolv + ".new", "w") as f:
        f.write("# written by dynamic.sh\nnameserver %s\n" % server)
    t = time.monotonic()
    os.rename(resolv + ".new", resolv)
    return t
lat, missed, _ = sl.monitored(ns, "dyn_dns4", ["10.250.0.54", "10.250.0.53"], change, changes)
sl.summary("DNS", lat, missed)
PY
figures DNS "$WORK/resolv.out"
final_ns=$(awk '$1 == "nameserver" { print $2 }' "$RESOLV")
holds dyn_dns4 "$final_ns" || { echo "the kernel set does not hold the last name server $final_ns"; exit 1; }
log "resolv.conf latency: median $DNS_MEDIAN ms, p99 $DNS_P99 ms"

# ------------------------------------------------------------------- 3. burst
log "3. $EVENTS address events in one ip -batch"
python3 - "$WORK" "$EVENTS" <<'PY'
import random, sys
work, events = sys.argv[1], int(sys.argv[2])
adds_n = events * 6 // 10
adds = []
for i in range(adds_n):
    if i % 3 == 2:
        adds.append("addr add fd00:260:%x::1/64 dev eth0 nodad" % i)
    else:
        adds.append("addr add 10.%d.%d.1/24 dev eth0" % (100 + i // 256, i % 256))
random.seed(2)
dels = random.sample(adds, events - adds_n)
dels = ["addr del " + a.split(" ", 2)[2].replace(" nodad", "") for a in dels]
open(work + "/burst", "w").write("\n".join(adds + dels) + "\n")
PY
CLK_TCK=$(getconf CLK_TCK)
# cpu PID: "own children" CPU time in clock ticks (utime+stime, cutime+cstime).
cpu() { awk '{ sub(/^.*\) /, ""); print $12 + $13, $14 + $15, $14, $15 }' "/proc/$1/stat"; }
updates_before=$(grep -c "dynamic sets updated" "$DAEMON_LOG" || true)
read -r own0 kids0 ku0 ks0 < <(cpu "$DAEMON_PID")
# How long `show state` takes to answer while the daemon works: one query every
# 100 ms from the start of the batch until the prober is stopped.
python3 - "$RINGFENCE" "$(sock "$fw")" "$WORK/show.times" <<'PY' &
import subprocess, sys, time
exe, sock, out = sys.argv[1:]
times = []
try:
    while True:
        t = time.monotonic()
        subprocess.run([exe, "--socket", sock, "show", "state"], capture_output=True, timeout=30)
        times.append((time.monotonic() - t) * 1000)
        with open(out, "w") as f:
            f.write(" ".join("%.1f" % x for x in times))
        time.sleep(0.1)
except KeyboardInterrupt:
    pass
PY
PROBER=$!
_PIDS+=("$PROBER")
burst_start=$(date +%s.%N)
ip -n "$fw" -batch "$WORK/burst"
burst_end=$(date +%s.%N)
# Final: show sets and the kernel's sets hold exactly the prefixes of
# `ip -j addr`, and stay so (no update for 2 s).
final() {
    rf "$fw" show sets --json >"$WORK/sets.json"
    ip -n "$fw" -j addr show >"$WORK/addr.json"
    ip netns exec "$fw" nft -j list set inet ringfence dyn_local_subnet4 >"$WORK/k4.json"
    ip netns exec "$fw" nft -j list set inet ringfence dyn_local_subnet6 >"$WORK/k6.json"
    python3 - "$WORK" <<'PY'
import ipaddress, json, sys
w = sys.argv[1]
want = {4: set(), 6: set()}
for link in json.load(open(w + "/addr.json")):
    if link["ifname"] == "lo":
        continue
    for a in link["addr_info"]:
        n = ipaddress.ip_network("%s/%d" % (a.get("address", a["local"]), a["prefixlen"]), strict=False)
        want[n.version].add((link["ifname"], str(n)))
shown = {4: set(), 6: set()}
for s in json.load(open(w + "/sets.json")):
    if s["keyword"] == "local-subnet":
        v = 4 if s["family"] == "ipv4" else 6
        shown[v] = {(e["interface"], str(ipaddress.ip_network(e["address"]))) for e in s["elements"]}
for v in (4, 6):
    kernel = set()
    for o in json.load(open("%s/k%d.json" % (w, v)))["nftables"]:
        for e in o.get("set", {}).get("elem", []):
            iface, a = e["elem"]["val"]["concat"]
            a = "%s/%d" % (a["prefix"]["addr"], a["prefix"]["len"]) if isinstance(a, dict) else a
            kernel.add((iface, str(ipaddress.ip_network(a))))
    if shown[v] != want[v] or kernel != want[v]:
        sys.exit("v%d: %d wanted, %d shown, %d in the kernel" % (v, len(want[v]), len(shown[v]), len(kernel)))
print("%d + %d elements" % (len(want[4]), len(want[6])))
PY
}
# Waiting must not load the machine while the daemon works: it watches the
# daemon's log until no update came for 2 s, and only then compares the sets
# with `ip -j addr` (once; again after more quiet if they were not final yet).
updates() { grep -c "dynamic sets updated" "$DAEMON_LOG" || true; }
quiet_since=$(date +%s%N); seen=$(updates)
for i in $(seq 600); do
    sleep 0.2
    n=$(updates)
    if [ "$n" != "$seen" ]; then seen=$n; quiet_since=$(date +%s%N); continue; fi
    [ $(($(date +%s%N) - quiet_since)) -ge 2000000000 ] || continue
    [ "$n" -gt "$updates_before" ] && final >/dev/null 2>&1 && break
    quiet_since=$(date +%s%N)
done
read -r own1 kids1 ku1 ks1 < <(cpu "$DAEMON_PID")
kill "$PROBER" 2>/dev/null || true
wait "$PROBER" 2>/dev/null || true
read -r SHOW_N SHOW_MEDIAN SHOW_MAX < <(python3 -c '
import sys
v = sorted(float(x) for x in open(sys.argv[1]).read().split())
print(len(v), "%.0f" % v[len(v) // 2], "%.0f" % v[-1])' "$WORK/show.times")
FINAL_ELEMENTS=$(final) || { echo "the sets never became final: $(final 2>&1)"; exit 1; }
kill -0 "$DAEMON_PID" || { echo "the daemon died"; exit 1; }
UPDATES=$(($(grep -c "dynamic sets updated" "$DAEMON_LOG") - updates_before))
last_update=$(grep "dynamic sets updated" "$DAEMON_LOG" | tail -1 | cut -d' ' -f1)
read -r BATCH_MS FINAL_MS < <(python3 -c '
import sys, datetime
start, end, last = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
t = datetime.datetime.strptime(last.rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc).timestamp()
print("%.0f %.0f" % ((end - start) * 1000, (t - start) * 1000))' "$burst_start" "$burst_end" "$last_update")
# When each update of the burst was done, from the start of the batch.
UPDATE_TIMES=$(grep "dynamic sets updated" "$DAEMON_LOG" | tail -n "$UPDATES" | cut -d' ' -f1 | python3 -c '
import sys, datetime
start = float(sys.argv[1])
ts = [datetime.datetime.strptime(l.strip().rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc).timestamp() for l in sys.stdin]
print(", ".join("%.0f" % ((t - start) * 1000) for t in ts))' "$burst_start")
OWN_MS=$(( (own1 - own0) * 1000 / CLK_TCK ))
KIDS_MS=$(( (kids1 - kids0) * 1000 / CLK_TCK ))
KIDS_USER_MS=$(( (ku1 - ku0) * 1000 / CLK_TCK )); KIDS_SYS_MS=$(( (ks1 - ks0) * 1000 / CLK_TCK ))
# The CPU window ends after 2 s without an update; an idle daemon uses nothing
# in them.
log "burst: batch ${BATCH_MS} ms, final after ${FINAL_MS} ms, $UPDATES updates, daemon ${OWN_MS} ms CPU, nft ${KIDS_MS} ms"

# ------------------------------------------------------ 4. one address change
# With the burst's addresses still there (local-subnet sets of about 2,000
# elements), one address added, then deleted: the time until the daemon has
# updated the set (its log line of the update, written when nft returned).
log "4. $ADDR_CHANGES single address changes, with the burst's addresses in the sets"
python3 - "$fw" "$DAEMON_LOG" "$ADDR_CHANGES" >"$WORK/single.out" <<'PY'
import datetime, json, subprocess, sys, time
ns, logfile, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def updates():
    with open(logfile) as f:
        return [l for l in f if "dynamic sets updated" in l]
def stamp(line):
    return datetime.datetime.strptime(line.split()[0].rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc).timestamp()
def timed(cmd):
    before = len(updates())
    t0 = time.time()
    subprocess.run(["ip", "-n", ns] + cmd.split(), check=True)
    while time.time() - t0 < 30:
        u = updates()
        if len(u) > before:
            return (stamp(u[before]) - t0) * 1000
        time.sleep(0.002)
    sys.exit("no update within 30 s after: ip " + cmd)
def in_kernel(prefix):
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "set", "inet", "ringfence", "dyn_local_subnet4"],
                         capture_output=True, text=True, check=True).stdout
    elems = [e["elem"]["val"]["concat"][1] for o in json.loads(out)["nftables"] for e in o.get("set", {}).get("elem", [])]
    return any(isinstance(a, dict) and "%s/%d" % (a["prefix"]["addr"], a["prefix"]["len"]) == prefix for a in elems)
adds, dels = [], []
for k in range(n):
    adds.append(timed("addr add 10.99.%d.1/24 dev eth0" % k))
    if not in_kernel("10.99.%d.0/24" % k):
        sys.exit("10.99.%d.0/24 is not in the kernel set after its update" % k)
    time.sleep(0.1)
    dels.append(timed("addr del 10.99.%d.1/24 dev eth0" % k))
    if in_kernel("10.99.%d.0/24" % k):
        sys.exit("10.99.%d.0/24 is still in the kernel set after its update" % k)
    time.sleep(0.1)
med = lambda v: sorted(v)[len(v) // 2]
print("ADD_MEDIAN=%.0f ADD_MAX=%.0f DEL_MEDIAN=%.0f DEL_MAX=%.0f" % (med(adds), max(adds), med(dels), max(dels)))
PY
eval "$(cat "$WORK/single.out")"
log "single address: add median $ADD_MEDIAN ms, delete median $DEL_MEDIAN ms"

# ------------------------------------------- 5. what one update costs in nft
# Explains 3 and 4: the daemon replaces a changed set's elements with `flush
# set` + `add element` of all of them (one transaction). In a scratch
# namespace, a set of the same type as dyn_local_subnet4 holding N elements:
# that rewrite, against adding or deleting the one element that changed.
N4=${FINAL_ELEMENTS%% *}
log "5. nft cost of one update, $N4-element set"
scratch=$(host scratch)
python3 - "$WORK" "$N4" <<'PY'
import sys
w, n = sys.argv[1], int(sys.argv[2])
els = ", ".join('"eth0" . 10.%d.%d.0/24' % (100 + i // 256, i % 256) for i in range(n))
open(w + "/nft.create", "w").write("table inet t { set s { type ifname . ipv4_addr; flags interval; counter; }; }\nadd element inet t s { %s }\n" % els)
open(w + "/nft.rewrite", "w").write("flush set inet t s\nadd element inet t s { %s }\n" % els)
open(w + "/nft.add1", "w").write('add element inet t s { "eth0" . 10.99.0.0/24 }\n')
open(w + "/nft.drop", "w").write("delete table inet t\n")
open(w + "/nft.del1", "w").write('delete element inet t s { "eth0" . 10.99.0.0/24 }\n')
PY
nft_ms() { # median of 5 runs of nft -f FILE (FILE2 run after each, untimed)
    local i t0 t1 v=()
    for i in 1 2 3 4 5; do
        t0=$(date +%s%N); ip netns exec "$scratch" nft -f "$WORK/$1"; t1=$(date +%s%N)
        v+=($(((t1 - t0) / 1000000)))
        [ -z "${2:-}" ] || ip netns exec "$scratch" nft -f "$WORK/$2"
    done
    printf '%s\n' "${v[@]}" | sort -n | sed -n 3p
}
ip netns exec "$scratch" nft -f "$WORK/nft.create"
NFT_REWRITE_MS=$(nft_ms nft.rewrite)
NFT_ADD1_MS=$(nft_ms nft.add1 nft.del1)
# (Each add above was undone: the element to delete must be there first.)
ip netns exec "$scratch" nft -f "$WORK/nft.add1"
NFT_DEL1_MS=$(nft_ms nft.del1 nft.add1)
ip netns exec "$scratch" nft delete table inet t
NFT_CREATE_MS=$(nft_ms nft.create nft.drop)
log "nft: rewrite $NFT_REWRITE_MS ms, add one $NFT_ADD1_MS ms, delete one $NFT_DEL1_MS ms"
LOAD_END=$(cut -d' ' -f1 /proc/loadavg)

cat <<EOF
== Ringfence dynamic sets benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, kernel $(uname -r), $(nft --version | awk '{print $1, $2}')
   load average $LOAD_START at start, $LOAD_END at end (other work on the machine makes figures noisy)

1. route change -> element in the kernel set (dyn_default_gateway4), $CHANGES changes
   (ip route replace default via <alternating gateway>, one ip -batch process;
   time until nft monitor in the namespace prints the new element)
$(figures_line MON)
   cross-check by polling nft -j list set ($POLL_N changes, one nft call ${POLL_NFT_MS} ms, median $POLL_TRIES calls):
   median $POLL_MEDIAN ms   p99 $POLL_P99 ms   max $POLL_MAX ms   missed $POLL_MISSED

2. resolv.conf renamed into place -> element in the kernel set (dyn_dns4), $RESOLV_CHANGES changes
   (a new file naming the other name server written next to it, then rename(2) over it, one python3
   process; time from just before the rename until nft monitor in the namespace prints the new element)
$(figures_line DNS)

3. burst: $EVENTS address events in one ip -batch ($((EVENTS * 6 / 10)) adds, $((EVENTS - EVENTS * 6 / 10)) deletes), final sets $FINAL_ELEMENTS
   ip -batch took $BATCH_MS ms; the sets were final ${FINAL_MS} ms after it started, after $UPDATES set updates
   (each done at, ms after the start: $UPDATE_TIMES)
   daemon CPU (utime+stime) ${OWN_MS} ms; its nft processes (cutime+cstime) ${KIDS_MS} ms (user ${KIDS_USER_MS}, system ${KIDS_SYS_MS})
   show state during the burst: median $SHOW_MEDIAN ms, max $SHOW_MAX ms ($SHOW_N queries)

4. one address change with $FINAL_ELEMENTS in the sets, $ADDR_CHANGES times each: until the daemon's update is done
   add: median $ADD_MEDIAN ms, max $ADD_MAX ms   delete: median $DEL_MEDIAN ms, max $DEL_MAX ms

5. nft -f in a scratch namespace, a set like dyn_local_subnet4 (ifname . ipv4_addr, interval) of $N4 elements, median of 5:
   flush set + add all $N4 elements (what the daemon sends when more than 8 go): $NFT_REWRITE_MS ms
   add the one element that changed: $NFT_ADD1_MS ms   delete it: $NFT_DEL1_MS ms
   (creating the set with its $N4 elements in one transaction: $NFT_CREATE_MS ms)
EOF
echo "   all route latencies (ms, sorted): $MON_ALL" >&2
echo "   all resolv.conf latencies (ms, sorted): $DNS_ALL" >&2
