#!/usr/bin/env bash
# The kernel and nftables facts that unit rules (issue 13, item 2) rest on,
# each shown with real packets between namespaces:
#  1. nft 1.0.6 (Debian 12) cannot say `socket cgroupv2` in JSON, the only
#     input Ringfence sends it ("Invalid socket key value"); its text syntax can.
#     (Nor can nftables' JSON parser of April 2026: it knows the socket keys
#     transparent, mark and wildcard only.)
#  2. a `cgroupsv2` set element is a path under /sys/fs/cgroup, which nft
#     (not the kernel) turns into the cgroup's id when it parses the batch; a
#     number is read as a path too, and a missing path fails the whole batch
#     (a unit that stops while a batch is on its way makes it fail); so an
#     element of a unit that has stopped cannot be deleted by its path: only
#     flushing the set and adding what exists clears it. Elements can be
#     added in JSON, as a path string;
#  3. outbound, `socket cgroupv2 level 2` matches a socket made by a process
#     in system.slice/rftest.service, and not the same traffic from another
#     cgroup;
#  4. inbound, in the input hook, it matches a new connection to a listener
#     in that cgroup (the listening socket is looked up), and not one to a
#     listener of another cgroup;
#  5. a unit restarted (rmdir + mkdir) has a new id: the element added before
#     no longer matches, the same path added again does.
# On this host cgroup v1 controllers are mounted beside cgroup2
# (/sys/fs/cgroup/unified): sockets still carry cgroup v2 ids since no
# net_cls/net_prio hierarchy is mounted, which fact 3 shows.
source "$(dirname "$0")/../lib.sh"
source "$ROOT/integration/cgroups.sh"

h1=$(host h1); h2=$(host h2)
link "$h1" eth0 10.98.0.1 fd00:98::1 "$h2" eth0 10.98.0.2 fd00:98::2
UNIT=rftest-$$.service OTHER=rfother-$$.service
start "$UNIT"
start "$OTHER"

echo '{"nftables":[{"add":{"table":{"family":"inet","name":"t"}}},
 {"add":{"chain":{"family":"inet","table":"t","name":"c"}}},
 {"add":{"rule":{"family":"inet","table":"t","chain":"c","expr":[{"match":{"op":"==",
   "left":{"socket":{"key":"cgroupv2","level":2}},"right":1}},{"accept":null}]}}}]}' >"$WORK/socket.json"
refute "nft -j cannot say socket cgroupv2" --says "invalid socket key" ip netns exec "$h1" nft -j -f "$WORK/socket.json"

cat >"$WORK/table.nft" <<EOF
table inet t {
    set units { type cgroupsv2; }
    chain output {
        type filter hook output priority 0; policy accept;
        ct state established accept
        tcp dport 80 socket cgroupv2 level 2 @units accept
        tcp dport 80 drop
    }
    chain input {
        type filter hook input priority 0; policy accept;
        ct state established accept
        tcp dport { 8080, 8081 } socket cgroupv2 level 2 @units accept
        tcp dport { 8080, 8081 } drop
    }
}
EOF
check "the text syntax loads" cg "$h1" nft -f "$WORK/table.nft"
refute "a missing path is refused" --says "cgroupv2 path fails" cg "$h1" nft add element inet t units '{ "system.slice/absent.service" }'
refute "a number is read as a path" --says "cgroupv2 path fails" cg "$h1" nft add element inet t units "{ $(stat -c %i "$CG/system.slice/$UNIT") }"
printf 'add element inet t units { "system.slice/%s" }\nadd element inet t units { "system.slice/absent.service" }\n' "$UNIT" >"$WORK/partly.nft"
refute "a batch naming one missing path fails as a whole" --says "cgroupv2 path fails" cg "$h1" nft -f "$WORK/partly.nft"
check "nothing of it was added" sh -c "ip netns exec $h1 nft -j list set inet t units | python3 -c 'import json, sys; s = json.load(sys.stdin)[\"nftables\"][1][\"set\"]; sys.exit(\"elem\" in s)'"
echo '{"nftables":[{"add":{"element":{"family":"inet","table":"t","name":"units","elem":["system.slice/'"$UNIT"'"]}}}]}' >"$WORK/add.json"
check "the unit's path is added as an element in JSON" cg "$h1" nft -j -f "$WORK/add.json"

serve_tcp "$h2" 80
check "outbound from the unit's cgroup is allowed" connect "$h1" "$UNIT" 10.98.0.2 80
refute "outbound from another cgroup is blocked" connect "$h1" "$OTHER" 10.98.0.2 80

serve "$h1" "$UNIT" 8080
serve "$h1" "$OTHER" 8081
check "inbound to the unit's listener is allowed" tcp "$h2" 10.98.0.1 8080
refute "inbound to another cgroup's listener is blocked" tcp "$h2" 10.98.0.1 8081

# The unit restarts: its processes go, its cgroup is removed and made again.
old=$(stat -c %i "$CG/system.slice/$UNIT")
stop "$UNIT"
refute "the stopped unit's element cannot be deleted by its path" --says "cgroupv2 path fails" \
    cg "$h1" nft delete element inet t units "{ \"system.slice/$UNIT\" }"
start "$UNIT"
check "the restarted unit has a new id" test "$(stat -c %i "$CG/system.slice/$UNIT")" != "$old"
refute "the old element does not match the restarted unit" connect "$h1" "$UNIT" 10.98.0.2 80
printf 'flush set inet t units\nadd element inet t units { "system.slice/%s" }\n' "$UNIT" >"$WORK/renew.nft"
check "flushing the set and adding the path again in one batch" cg "$h1" nft -f "$WORK/renew.nft"
check "the restarted unit is allowed" connect "$h1" "$UNIT" 10.98.0.2 80
finish
