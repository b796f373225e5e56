# Helpers for the scenarios of unit rules (units.sh, units-facts.sh); source
# it after lib.sh.
#
# There is no systemd here: a scenario makes units' cgroups itself, under
# system.slice of the host's cgroup2 hierarchy, and moves processes into
# them. `ip netns exec` mounts a fresh /sys, so whatever needs the cgroup
# tree (nft, the daemon, the units' processes) runs with cgroup2 mounted at
# /sys/fs/cgroup in a mount namespace of its own (`cg`), where nft looks for
# cgroups, as on a host with the unified hierarchy only.

CG=$(awk '$9 == "cgroup2" && $4 == "/" { print $5; exit }' /proc/self/mountinfo)
[ -n "$CG" ] || { echo "$SCENARIO: this host has no cgroup2 mount"; exit 1; }
# The test makes system.slice if there is none, and then removes it after.
[ -d "$CG/system.slice" ] && _SLICE= || _SLICE="$CG/system.slice"
_UNITS=()
trap 'for _u in "${_UNITS[@]}"; do stop "$_u"; done; [ -z "$_SLICE" ] || rmdir "$_SLICE"; _cleanup' EXIT

# start UNIT: its cgroup, system.slice/UNIT, made (removed at exit).
start() { mkdir -p "$CG/system.slice/$1"; _UNITS+=("$1"); }
# stop UNIT: its processes killed and its cgroup removed, as systemd does.
stop() {
    local d="$CG/system.slice/$1"
    [ -d "$d" ] || return 0
    xargs -r kill -9 <"$d/cgroup.procs" 2>/dev/null || true
    for _ in $(seq 50); do rmdir "$d" 2>/dev/null && return 0; sleep 0.1; done
    echo "cannot remove $d"; return 1
}
# cg NS CMD...: CMD inside NS with cgroup2 mounted at /sys/fs/cgroup.
cg() {
    local ns=$1; shift
    ip netns exec "$ns" unshare -m sh -c 'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"' sh "$@"
}
# in_unit NS UNIT CMD...: CMD inside NS as a process of UNIT.
in_unit() {
    local ns=$1 unit=$2; shift 2
    cg "$ns" sh -c 'echo $$ >"/sys/fs/cgroup/system.slice/$0/cgroup.procs" && exec "$@"' "$unit" "$@"
}
# connect NS UNIT ADDR PORT: a TCP connection from UNIT gets "ok" back.
connect() {
    in_unit "$1" "$2" timeout 5 socat -T2 - "TCP:$3:$4,connect-timeout=2" </dev/null | grep -qx ok
}
# serve NS UNIT PORT: a TCP server in UNIT.
serve() {
    in_unit "$1" "$2" socat "TCP-LISTEN:$3,reuseaddr,fork" SYSTEM:'echo ok' >>"$WORK/bg.log" 2>&1 &
    _PIDS+=($!)
    disown
    wait_port "$1" "$3" tcp
}
