#!/usr/bin/env bash
# The kernel and nftables facts that unit rules (issue 13, item 2) rest on,
# each shown with real packets between namespaces:
#  1. nft 1.0.6 (Debian 12) cannot say `socket cgroupv2` in JSON, the only
#     input Ringfence sends it ("Invalid socket key value"); its text syntax can;
#  2. a `cgroupsv2` set element is a path under /sys/fs/cgroup, which nft
#     (not the kernel) turns into the cgroup's id when it parses the batch; a
#     number is read as a path too, and a missing path fails the whole batch;
#     so an element of a unit that has stopped cannot be deleted by its path:
#     only flushing the set and adding what exists clears it;
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
# net_cls/net_prio hierarchy is mounted, which fact 3 shows. `ip netns exec`
# mounts a fresh /sys, so every command that needs the cgroup tree runs with
# cgroup2 mounted at /sys/fs/cgroup in its own mount namespace (`cg`), where
# nft looks, as on a host with the unified hierarchy only.
source "$(dirname "$0")/../lib.sh"

h1=$(host h1); h2=$(host h2)
link "$h1" eth0 10.98.0.1 fd00:98::1 "$h2" eth0 10.98.0.2 fd00:98::2
CG=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
[ -n "$CG" ] || { echo "$SCENARIO: this host has no cgroup2 mount"; exit 1; }
UNIT=system.slice/rftest-$$.service
OTHER=system.slice/rfother-$$.service
# (This machine has no systemd: the test makes system.slice, and removes it
# after if it did.)
[ -d "$CG/system.slice" ] && SLICE= || SLICE="$CG/system.slice"
mkdir -p "$CG/$UNIT" "$CG/$OTHER"
cleanup_cgroups() {
    local d
    for d in "$CG/$UNIT" "$CG/$OTHER" $SLICE; do
        [ -d "$d" ] || continue
        xargs -r kill -9 <"$d/cgroup.procs" 2>/dev/null || true
        for _ in $(seq 50); do rmdir "$d" 2>/dev/null && break; sleep 0.1; done
    done
}
trap 'cleanup_cgroups; _cleanup' EXIT

# cg NS CMD...: CMD inside NS with cgroup2 mounted at /sys/fs/cgroup.
cg() {
    local ns=$1; shift
    ip netns exec "$ns" unshare -m sh -c 'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"' sh "$@"
}
# in_unit NS CGROUP CMD...: CMD inside NS as a process of CGROUP.
in_unit() {
    local ns=$1 group=$2; shift 2
    cg "$ns" sh -c 'echo $$ >"/sys/fs/cgroup/$0/cgroup.procs" && exec "$@"' "$group" "$@"
}
# connect NS CGROUP ADDR PORT: a TCP connection from CGROUP gets "ok" back.
connect() {
    in_unit "$1" "$2" timeout 5 socat -T2 - "TCP:$3:$4,connect-timeout=2" </dev/null | grep -qx ok
}
# serve NS CGROUP PORT: a TCP server in CGROUP.
serve() {
    in_unit "$1" "$2" socat "TCP-LISTEN:$3,reuseaddr,fork" SYSTEM:'echo ok' >>"$WORK/bg.log" 2>&1 &
    _PIDS+=($!)
    wait_port "$1" "$3" tcp
}

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
refute "a number is read as a path" --says "cgroupv2 path fails" cg "$h1" nft add element inet t units "{ $(stat -c %i "$CG/$UNIT") }"
check "the unit's path is an element" cg "$h1" nft add element inet t units "{ \"$UNIT\" }"

serve "$h2" / 80
check "outbound from the unit's cgroup is allowed" connect "$h1" "$UNIT" 10.98.0.2 80
refute "outbound from another cgroup is blocked" connect "$h1" "$OTHER" 10.98.0.2 80

serve "$h1" "$UNIT" 8080
serve "$h1" "$OTHER" 8081
check "inbound to the unit's listener is allowed" tcp "$h2" 10.98.0.1 8080
refute "inbound to another cgroup's listener is blocked" tcp "$h2" 10.98.0.1 8081

# The unit restarts: its processes go, its cgroup is removed and made again.
old=$(stat -c %i "$CG/$UNIT")
xargs -r kill -9 <"$CG/$UNIT/cgroup.procs"
for _ in $(seq 50); do rmdir "$CG/$UNIT" 2>/dev/null && break; sleep 0.1; done
refute "the stopped unit's element cannot be deleted by its path" --says "cgroupv2 path fails" \
    cg "$h1" nft delete element inet t units "{ \"$UNIT\" }"
mkdir "$CG/$UNIT"
check "the restarted unit has a new id" test "$(stat -c %i "$CG/$UNIT")" != "$old"
refute "the old element does not match the restarted unit" connect "$h1" "$UNIT" 10.98.0.2 80
printf 'flush set inet t units\nadd element inet t units { "%s" }\n' "$UNIT" >"$WORK/renew.nft"
check "flushing the set and adding the path again in one batch" cg "$h1" nft -f "$WORK/renew.nft"
check "the restarted unit is allowed" connect "$h1" "$UNIT" 10.98.0.2 80
finish
