#!/usr/bin/env bash
# The daemon killed with SIGKILL (no chance to clean up): the ruleset stays in the
# kernel and filters exactly as before; a new daemon replaces the stale control
# socket and the table cleanly. A second daemon on a live socket is refused and
# must not touch the running ruleset.
source "$(dirname "$0")/../lib.sh"

fw=$(host fw); peer=$(host peer)
link "$fw" eth0 10.205.0.1 fd00:205::1 "$peer" eth0 10.205.0.2 fd00:205::2

P="$WORK/policy"
mkdir "$P"
cat >"$P/10-first.yaml" <<'YAML'
version: 1
rules:
  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [8080, 8081] }
  - { name: dns, direction: in, action: allow, protocol: udp, local-ports: [5353] }
  - { name: no-8081-from-peer, direction: in, action: block, protocol: tcp, local-ports: [8081], remote-addresses: ["10.205.0.2", "fd00:205::2"] }
  - { name: ping, direction: in, action: allow, protocol: icmp, icmp-types: [echo-request] }
YAML
echo "$ND_RULE" >>"$P/10-first.yaml"
# The scenario enforces and counts the rules of its own files: without the
# default layer (which allows ping6) and the core networking group.
mask_default "$P"
printf 'settings:\n  core-networking: false\n' >"$P/05-no-core.yaml"
daemon_start "$fw" "$P"
first_pid=$DAEMON_PID
for p in 8080 8081 8082; do serve_tcp "$fw" $p; done
serve_udp "$fw" 5353
serve_udp "$fw" 5354

# What the first daemon enforces, for both address families; says what differs.
enforced() {
    local a=$1 a6=$2 bad=0 t
    for t in "tcp $a 8080" "udp $a 5353" "ping1 $a" "tcp $a6 8080" "udp $a6 5353"; do
        set -- $t; "$1" "$peer" "${@:2}" || { echo "expected to pass: $t"; bad=1; }
    done
    for t in "tcp $a 8081" "tcp $a6 8081" "tcp $a 8082" "udp $a6 5354" "ping1 $a6"; do
        set -- $t; ! "$1" "$peer" "${@:2}" || { echo "expected to be blocked: $t"; bad=1; }
    done
    return $bad
}
check "the first daemon enforces its policy" enforced 10.205.0.1 fd00:205::1

# A second daemon on the same (live) socket is refused, and leaves the table alone.
mkdir "$WORK/other"
printf 'version: 1\nrules:\n  - { name: open, direction: in, action: allow, protocol: tcp, local-ports: [8082] }\n' >"$WORK/other/10.yaml"
echo "$ND_RULE" >>"$WORK/other/10.yaml"
before=$(table_same "$fw")
second() { ip netns exec "$fw" timeout 10 "$RINGFENCE" --socket "$(sock "$fw")" daemon --policy-dir "$WORK/other" >"$WORK/second.log" 2>&1; }
refute "a second daemon on the live socket fails to start" --status 1 second
check "the second daemon says another daemon is running" grep -Eq 'another (ringfence )?daemon' "$WORK/second.log"
check "the refused second daemon left the table identical (apart from counters)" test "$(table_same "$fw")" = "$before"
refute "the refused second daemon did not open tcp/8082" tcp "$peer" 10.205.0.1 8082
check "the first daemon still answers" rf "$fw" show state
# Put the first daemon's ruleset back in case the second one replaced it.
rf "$fw" apply >/dev/null

# SIGKILL.
before=$(table_same "$fw")
kill -KILL "$first_pid"
check "SIGKILL: the daemon is gone" wait_exit "$first_pid"
check "SIGKILL: table inet ringfence is identical (apart from counters)" test "$(table_same "$fw")" = "$before"
check "SIGKILL: the stale control socket file is left behind" test -S "$(sock "$fw")"
refute "SIGKILL: nothing answers on the stale socket" --status 1 --says 'cannot reach the daemon' rf "$fw" show state
check "SIGKILL: traffic is filtered exactly as before" enforced 10.205.0.1 fd00:205::1

# A new daemon with a changed policy: replaces the stale socket and the table.
cat >"$P/10-first.yaml" <<'YAML'
version: 1
rules:
  - { name: web2, direction: in, action: allow, protocol: tcp, local-ports: [8082] }
YAML
echo "$ND_RULE" >>"$P/10-first.yaml"
check "a new daemon starts over the stale socket" daemon_start "$fw" "$P"
check "the new daemon answers on the socket" rf "$fw" show state
check "the new daemon is generation 1 with its own policy" test "$(state "$fw" generation):$(state "$fw" rules)" = "1:2"
tables() { ip netns exec "$fw" nft list tables | grep -c 'table inet ringfence'; }
check "exactly one ringfence table" test "$(tables)" = 1
kernel_sets() { table "$fw" | jget "sorted(o['set']['name'] for o in v['nftables'] if 'set' in o)"; }
policy_sets() { "$RINGFENCE" check --dump --policy-dir "$P" | jget "sorted(c['add']['set']['name'] for c in v['nftables'] if 'set' in c.get('add', {}))"; }
check "the kernel has exactly the new policy's sets (the old ones are gone)" test "$(kernel_sets)" = "$(policy_sets)"
check "no element of the old rules is left (udp/5353 no longer open)" test "$(table "$fw" | grep -c 5353)" = 0
for a in 10.205.0.1 fd00:205::1; do
    check  "new policy: tcp/8082 allowed ($a)" tcp "$peer" $a 8082
    refute "new policy: tcp/8080 blocked ($a)" tcp "$peer" $a 8080
    refute "new policy: udp/5353 blocked ($a)" udp "$peer" $a 5353
done
check "the new daemon is still running" kill -0 "$DAEMON_PID"
finish
