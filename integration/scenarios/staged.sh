#!/usr/bin/env bash
# Staged rules (`stage: audit`): a staged drop-in never changes what gets
# through (the same connections pass and fail with and without it), counts
# exactly the new connections it would decide otherwise, by rule and by
# remote address, logs some of them to monitor (rate-limited), and is
# enforced once its marker is removed.
source "$(dirname "$0")/../lib.sh"

fw=$(host fw); a=$(host a)
link "$fw" eth0 10.210.1.1 fd00:210:1::1 "$a" eth0 10.210.1.2 fd00:210:1::2

P="$WORK/policy"; mkdir "$P"
cat >"$P/10-base.yaml" <<'YAML'
version: 1
rules:
  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [8080, 8081] }
  - { name: dns, direction: in, action: allow, protocol: udp, local-ports: [5300] }
YAML
echo "$ND_RULE" >>"$P/10-base.yaml"
mask_default "$P"
staged_file() {
    cat >"$P/20-staged.yaml" <<YAML
version: 1
$1
rules:
  - { name: no-8081, direction: in, action: block, protocol: tcp, local-ports: [8081] }
  - { name: open-5301, direction: in, action: allow, protocol: udp, local-ports: [5301] }
YAML
}
daemon_start "$fw" "$P"
for p in 8080 8081 9090; do serve_tcp "$fw" $p; done
for p in 5300 5301; do serve_udp "$fw" $p; done

# matrix: what gets through, one line per connection.
matrix() {
    local v addr
    for v in 10.210.1.1 fd00:210:1::1; do
        for p in 8080 8081 9090; do tcp "$a" $v $p && echo "tcp $v $p ok" || echo "tcp $v $p no"; done
        for p in 5300 5301; do udp "$a" $v $p && echo "udp $v $p ok" || echo "udp $v $p no"; done
    done
}
matrix >"$WORK/without.txt"
check "without the staged file: 8080, 8081 and udp 5300 pass, 9090 and udp 5301 do not" \
    grep -c ' ok$' "$WORK/without.txt"
said "6 passing connections" '^6$'

gen=$(state "$fw" generation)
staged_file "stage: audit"
rf "$fw" apply >/dev/null
wait_gen "$fw" $((gen + 1))
matrix >"$WORK/with.txt"
check "with the staged file the same connections pass and fail" diff "$WORK/without.txt" "$WORK/with.txt"

staged_json() { rf "$fw" show staged --json; }
count() { staged_json | jget "[r['connections'] for r in v['rules'] if r['name'] == '$1'][0]"; }
source_count() {
    staged_json | jget "sum(s['connections'] for s in v['sources'] if s['address'] == '$1' and s['would'] == '$2')"
}
check "show staged: no-8081 would block the matrix's two tcp/8081 connections (v4, v6)" test "$(count no-8081)" -eq 2
check "show staged: open-5301 would allow the matrix's two udp/5301 datagrams" test "$(count open-5301)" -eq 2

# 100 connections, one socket each, to the port the staged rule blocks.
before=$(count no-8081); src_before=$(source_count 10.210.1.2 block)
hundred() {
    ip netns exec "$a" timeout 30 python3 -c '
import socket
for _ in range(100):
    s = socket.create_connection(("10.210.1.1", 8081), timeout=2)
    assert s.recv(16).strip() == b"ok"
    s.close()'
}
check "100 connections to tcp/8081 all pass" hundred
check "exactly 100 more would-block for no-8081" test "$(( $(count no-8081) - before ))" -eq 100
check "exactly 100 more would-block from 10.210.1.2" \
    test "$(( $(source_count 10.210.1.2 block) - src_before ))" -eq 100

# 50 datagrams, each from a socket of its own, to the port the staged rule opens.
before=$(count open-5301); src_before=$(source_count 10.210.1.2 allow)
fifty() {
    ip netns exec "$a" timeout 30 python3 -c '
import socket
for _ in range(50):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"hi\n", ("10.210.1.1", 5301))
    s.close()'
}
check "50 datagrams to udp/5301 sent" fifty
check "exactly 50 more would-allow for open-5301" test "$(( $(count open-5301) - before ))" -eq 50
check "exactly 50 more would-allow from 10.210.1.2" \
    test "$(( $(source_count 10.210.1.2 allow) - src_before ))" -eq 50

check "show rules marks the staged rules" rf "$fw" show rules
said "no-8081 staged" 'no-8081 +in +block \(staged\)'
check "human show staged lists the rule with its file:line" rf "$fw" show staged
said "its line" 'no-8081 \(.*20-staged\.yaml:[0-9]+:[0-9]+, in\): [0-9]+ new connections would-block'

rf "$fw" monitor --backlog 1000 --json >"$WORK/monitor.json" 2>&1 & mpid=$!
named() { grep '"staged":"block"' "$WORK/monitor.json" | grep -q '"name":"no-8081"'; }
check "monitor shows a staged would-block event named by its staged rule" wait_for 5 named
kill "$mpid" 2>/dev/null || true
logged=$(rf "$fw" show stats --json | jget "[r['logged'] for r in v['rules'] if r['name'] == 'no-8081'][0]")
check "... rate-limited: the daemon read $logged of its lines, fewer than the 102 connections counted" \
    test "$logged" -gt 0 -a "$logged" -lt 100

check "explain --staged: enforced allows tcp/8081, staged would block" \
    rf "$fw" explain --staged --json --direction in --protocol tcp --remote 10.210.1.2 --local-port 8081 --interface eth0
said "would block by no-8081" '"would": "block"'
said "the staged decider" '"name": "no-8081"'
stats_staged() { rf "$fw" show stats --json | jget "[r['staged'] for r in v['rules'] if r['name'] == 'no-8081']"; }
check "show stats marks no-8081 as staged" stats_staged
said "would block" '^\["block"\]$'

# Promoting: the marker removed, the rules are enforced.
gen=$(state "$fw" generation)
staged_file ""
rf "$fw" apply >/dev/null
wait_gen "$fw" $((gen + 1))
refute "promoted: tcp/8081 is blocked" tcp "$a" 10.210.1.1 8081
check "promoted: udp/5301 is allowed" udp "$a" 10.210.1.1 5301
check "promoted: tcp/8080 still passes" tcp "$a" 10.210.1.1 8080
check "promoted: show staged has no rule left" rf "$fw" show staged
said "no staged rule" '^no staged rule'

finish
