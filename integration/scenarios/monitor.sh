#!/usr/bin/env bash
# The dropped-packet monitor: `ringfence monitor` shows a real dropped packet
# with the rule that dropped it (and its file:line) within a second; profile
# defaults are logged with `log-dropped`; `show stats` and the Prometheus
# endpoint count them. A flood of 100,000 dropped packets leaves the daemon's
# memory flat (kernel rate limit, bounded ring) and the monitor responsive.
source "$(dirname "$0")/../lib.sh"

fw=$(host fw); a=$(host a)
link "$fw" eth0 10.207.1.1 fd00:207:1::1 "$a" eth0 10.207.1.2 fd00:207:1::2

P="$WORK/policy"
mkdir "$P"
cat >"$P/10-monitor.yaml" <<'YAML'
version: 1
profiles:
  domain: { interfaces: ["eth*"] }
settings:
  log-dropped: true
rules:
  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [8080] }
  - { name: no-9090, direction: in, action: block, protocol: tcp, local-ports: [9090], log: true }
  - { name: no-v6-9091, direction: in, action: block, protocol: udp, local-ports: [9091], remote-addresses: ["fd00:207:1::/64"], log: true }
  - { name: nobody-no-9092, direction: out, action: block, protocol: udp, remote-ports: [9092], users: [nobody], log: true }
YAML
echo "$ND_RULE" >>"$P/10-monitor.yaml"
# nobody (primary group nogroup) may read state, and so the monitor, not change anything.
chmod o+x "$WORK"
daemon_start "$fw" "$P" --metrics 127.0.0.1:9477 --socket-group nogroup

# first_event WANT CMD...: starts `ringfence monitor --json`, then runs CMD,
# which sends a packet, and prints the first event line that contains WANT
# and the time from sending to seeing it (ms). Fails if none comes within 1 s.
# The event is also kept in $WORK/event.json.
first_event() {
    ip netns exec "$fw" timeout 20 python3 - "$RINGFENCE" "$(sock "$fw")" "$@" <<'PY' | tee "$WORK/event.json"
import json, select, subprocess, sys, time
rf, sock, want, cmd = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
mon = subprocess.Popen([rf, "--socket", sock, "monitor", "--json"], stdout=subprocess.PIPE, text=True)
time.sleep(0.5)  # the subscription is made before the packet is sent
t0 = time.monotonic()
sender = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
line = None
while time.monotonic() - t0 < 1.0:
    r, _, _ = select.select([mon.stdout], [], [], 0.05)
    if r:
        line = mon.stdout.readline()
        if want in line:
            break
        line = None
latency = (time.monotonic() - t0) * 1000
mon.kill(); sender.kill()
if not line:
    sys.exit("no event within 1 s")
print(line.strip())
print(f"latency-ms {latency:.0f}", file=sys.stderr)
PY
}

check "a monitor sees a TCP SYN to 9090 within 1 s" \
    first_event '"local-port":9090' ip netns exec "$a" timeout 3 socat -T1 - TCP:10.207.1.1:9090,connect-timeout=1
latency=$(grep -o 'latency-ms [0-9]*' "$WORK/last.out" | awk '{print $2}')
echo "       monitor latency: ${latency} ms"
# j EXPR: EXPR of the event the last first_event printed (`e` is the event).
j() { jget "(lambda e: $1)(v['event'])" <"$WORK/event.json"; }
check "the event names the rule no-9090" test "$(j 'e["decided-by"]["name"]')" = no-9090
check "... with its file:line" grep -qE '10-monitor\.yaml:8:[0-9]+' <<<"$(j 'e["decided-by"]["place"]')"
check "... and the packet: in, eth0, tcp, 10.207.1.2 -> :9090, block" test \
    "$(j '" ".join(str(e[k]) for k in ["direction","interface","protocol","remote","local","local-port","verdict","profile"])')" \
    = "in eth0 tcp 10.207.1.2 10.207.1.1 9090 block domain"

check "an IPv6 UDP datagram to 9091 is logged with its rule" \
    first_event '"local-port":9091' ip netns exec "$a" python3 -c 'import socket; s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.sendto(b"x", ("fd00:207:1::1", 9091))'
check "... no-v6-9091, from fd00:207:1::2" test "$(j 'e["decided-by"]["name"] + " " + e["remote"]')" = "no-v6-9091 fd00:207:1::2"
check "an outbound datagram of nobody's is logged with its rule" \
    first_event '"remote-port":9092' ip netns exec "$fw" setpriv --reuid nobody --regid nogroup --clear-groups \
    python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("10.207.1.2", 9092))'
check "... out, eth0, uid 65534, nobody-no-9092" \
    test "$(j '" ".join(str(x) for x in [e["direction"], e["interface"], e["uid"], e["decided-by"]["name"]])')" = "out eth0 65534 nobody-no-9092"
check "a packet the domain default drops is logged (log-dropped)" \
    first_event '"local-port":4444' ip netns exec "$a" timeout 3 socat -T1 - TCP:10.207.1.1:4444,connect-timeout=1
said "... as the domain profile's default" '"decided-by":\{"kind":"profile-default","profile":"domain"\}'

rf "$fw" monitor --backlog 10 >"$WORK/human.out" 2>&1 & mpid=$!; sleep 1; kill "$mpid" 2>/dev/null || true
check "human monitor --backlog names the rule and file:line" \
    grep -qE 'in +eth0 +tcp 10\.207\.1\.2:[0-9]+ -> 10\.207\.1\.1:9090  block  rule no-9090 \(.*10-monitor\.yaml:8:[0-9]+\)' "$WORK/human.out"
check "human monitor shows the default drop" grep -q 'domain default' "$WORK/human.out"
as_nobody() { ip netns exec "$fw" setpriv --reuid nobody --regid nogroup --clear-groups "$RINGFENCE" --socket "$(sock "$fw")" "$@"; }
as_nobody monitor --backlog 10 --json >"$WORK/nobody.out" 2>&1 & mpid=$!; sleep 1; kill "$mpid" 2>/dev/null || true
check "a member of --socket-group may read the monitor" grep -q '"name":"no-9090"' "$WORK/nobody.out"
refute "... but not apply (permission denied)" --status 1 --says 'permission denied: only root' as_nobody apply

# show stats counts what was logged, next to the kernel's counters.
rf "$fw" show stats --json >"$WORK/stats.json"
stats_of() { jget "$1" <"$WORK/stats.json"; }
check "show stats: no-9090 logged >= 1 and packets >= 1" \
    test "$(stats_of '[r["logged"] >= 1 and r["packets"] >= 1 for r in v["rules"] if r["name"] == "no-9090"][0]')" = true
check "show stats: the domain inbound default logged >= 1" \
    test "$(stats_of '[d["logged"] for d in v["defaults"] if d["profile"] == "domain" and d["direction"] == "in"][0] >= 1')" = true
check "show stats: applies >= 1, isolation has 0 SAs up" test "$(stats_of '[v["applies"] >= 1, v["isolation"]["sas-up"]]')" = "[true, 0]"
check "show stats (human)" rf "$fw" show stats
said "... has a row for no-9090" '^no-9090 +in +block'

# Prometheus text on the namespace's loopback.
metrics() { ip netns exec "$fw" timeout 5 python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9477/metrics", timeout=3).read().decode())'; }
metrics >"$WORK/metrics.txt" 2>&1
check "the metrics endpoint answers with the logged counter of no-9090" grep -qE \
    '^ringfence_rule_logged_total\{name="no-9090",direction="in",action="block",source="[^"]*10-monitor.yaml:8:[0-9]+"\} [1-9]' "$WORK/metrics.txt"
check "... the domain default's drops" grep -qE '^ringfence_default_packets_total\{profile="domain",direction="in",verdict="block"\} [1-9]' "$WORK/metrics.txt"
check "... and the SAs gauge" grep -qx 'ringfence_isolation_sas_up 0' "$WORK/metrics.txt"
refute "a non-loopback metrics address is refused" --says 'is not a loopback address' "$RINGFENCE" --socket "$WORK/x.sock" daemon --metrics 0.0.0.0:9477
said "... saying why" 'not a loopback address'

# The flood: UDP datagrams that the domain default drops and logs, at least
# 100,000 and for at least 3 s (so that the check below happens during it).
rss() { awk '/^VmRSS/ {print $2}' "/proc/$DAEMON_PID/status"; }
rss_before=$(rss)
logged_before=$(rf "$fw" show stats --json | jget 'v["monitor"]["totals"]["logged"]')
flood_start=$EPOCHREALTIME
ip netns exec "$a" timeout 120 python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
i, end = 0, time.monotonic() + 3
while i < 100000 or time.monotonic() < end:
    s.sendto(b"flood", ("10.207.1.1", 7000 + i % 50))
    i += 1' &
flood=$!
# During the flood, another kind of drop still reaches a monitor within 1 s:
# each kind has its own rate limit, and the daemon is not behind.
check "during the flood, a monitor sees the 9090 drop within 1 s" \
    first_event '"local-port":9090' ip netns exec "$a" timeout 3 socat -T1 - TCP:10.207.1.1:9090,connect-timeout=1
said "... named no-9090" '"name":"no-9090"'
during=$(grep -o 'latency-ms [0-9]*' "$WORK/said.out" | awk '{print $2}')
kill -0 "$flood" 2>/dev/null && while_flooding="still flooding" || while_flooding="the flood had ended"
wait "$flood"
flood_secs=$(python3 -c "print(f'{$EPOCHREALTIME - $flood_start:.1f}')")
sleep 1
rss_after=$(rss)
rf "$fw" show stats --json >"$WORK/stats2.json"
dropped=$(jget '[d["packets"] for d in v["defaults"] if d["profile"] == "domain" and d["direction"] == "in"][0]' <"$WORK/stats2.json")
logged_after=$(jget 'v["monitor"]["totals"]["logged"]' <"$WORK/stats2.json")
echo "       flood: ${dropped} packets dropped by the domain default in ${flood_secs} s;" \
    "$((logged_after - logged_before)) logged; daemon RSS ${rss_before} kB -> ${rss_after} kB;" \
    "monitor latency during the flood ${during} ms (when it was seen, $while_flooding)"
check "the kernel dropped at least 100,000 packets" test "$dropped" -ge 100000
# 10/s and a burst of 20 per kind, for the flood's seconds (plus the 9090 check).
limit=$(python3 -c "print(int(10 * ($flood_secs + 2) + 20 + 5))")
check "the kernel's rate limit let at most $limit through to the daemon" test "$((logged_after - logged_before))" -le "$limit"
check "the daemon's memory stayed flat (RSS grew by < 2 MiB)" test "$((rss_after - rss_before))" -lt 2048
check "the daemon is still running" kill -0 "$DAEMON_PID"

# Another program holds the NFLOG group: the firewall still starts, and says
# it has no monitor.
taken=$(host taken)
bg "$taken" python3 -c '
import socket, struct, time
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
s.bind((0, 0))
# NFULNL_MSG_CONFIG with NFULA_CFG_CMD = NFULNL_CFG_CMD_BIND, for group 2714
body = struct.pack("=BBH", 0, 0, socket.htons(2714)) + struct.pack("=HHB3x", 5, 1, 1)
s.send(struct.pack("=IHHII", 16 + len(body), (4 << 8) | 1, 1 | 4, 1, 0) + body)
s.recv(100)
print("bound", flush=True)
time.sleep(60)'
wait_for 5 grep -q bound "$WORK/bg.log"
mkdir "$WORK/p2" && echo "version: 1" >"$WORK/p2/a.yaml"
daemon_start "$taken" "$WORK/p2" --metrics "unix:$WORK/metrics.sock"
check "with the group taken, the daemon starts and says why it has no monitor" \
    grep -q 'no dropped-packet monitor: cannot bind NFLOG group 2714' "$WORK/$taken.log"
check "show stats says it is not reading" rf "$taken" show stats
said "... NOT reading" '^monitor: +NOT reading: cannot bind NFLOG group 2714'
ip netns exec "$taken" timeout 1 "$RINGFENCE" --socket "$(sock "$taken")" monitor >"$WORK/taken.out" 2>&1 || true
check "ringfence monitor warns" grep -q 'warning: the daemon is not reading logged packets' "$WORK/taken.out"
check "metrics are served on a Unix socket too" timeout 5 python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
reply = b"".join(iter(lambda: s.recv(65536), b"")).decode()
print(reply)
sys.exit(0 if reply.startswith("HTTP/1.0 200 OK") else 1)' "$WORK/metrics.sock"
said "... with the applies counter" '^ringfence_applies_total 1$'
finish
