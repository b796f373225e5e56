#!/usr/bin/env bash
# How the daemon watches its files (src/filewatch.rs).
#
# 1. resolv.conf bind-mounted, as `ip netns exec` sets it up from
#    /etc/netns/NS/resolv.conf: written in place inside the namespace, then to
#    the bind source, the set dyn_dns4 follows each time. The daemon holds one
#    inotify instance.
# 2. No inotify instance to be had: a namespace owned by a user namespace of its
#    own, whose limit of inotify instances (/proc/sys/user/max_inotify_instances,
#    the per-user-namespace form of fs.inotify.max_user_instances) is 0, so that
#    the exhaustion touches nothing else on the host. The daemon starts and runs,
#    `show state` says it polls, and changes to a policy file, resolv.conf and a
#    lease file are applied; with the limit raised again, it watches with
#    inotify again.
source "$(dirname "$0")/../lib.sh"
command -v nsenter >/dev/null && command -v unshare >/dev/null || { echo "$SCENARIO: util-linux's nsenter and unshare are missing"; exit 1; }

# only NS SET ADDR: the kernel set SET of NS's table holds exactly ADDR.
# (nft's output is read whole first: grep -q stopping early would SIGPIPE nft.)
only() {
    local set
    set=$(ip netns exec "$1" nft list set inet ringfence "$2") || return 1
    grep -Eq "elements = \{ $3 counter packets [0-9]+ bytes [0-9]+ \}$" <<<"$set"
}
# watch_mode NS: show state's file-watch mode.
watch_mode() { rf "$1" show state --json | jget 'v["file-watch"]["mode"]'; }
is_mode() { [ "$(watch_mode "$1")" = "$2" ]; }
inotify_fds() { find "/proc/$1/fd" -lname 'anon_inode:inotify' | wc -l; }

# --- 1. A bind-mounted resolv.conf, written in place ---------------------------
fw=$(host fw)
NETNS_ETC=/etc/netns/$fw
trap 'rm -rf "$NETNS_ETC"; _cleanup' EXIT
mkdir -p "$NETNS_ETC"
echo "nameserver 10.0.1.53" >"$NETNS_ETC/resolv.conf"
P="$WORK/policy"
mkdir "$P"
cat >"$P/10-dns.yaml" <<'YAML'
version: 1
rules:
  - { name: dns, direction: out, action: allow, protocol: udp, remote-ports: [53], remote-addresses: [dns] }
  - { name: dhcp, direction: out, action: allow, protocol: tcp, remote-ports: [8067], remote-addresses: [dhcp] }
YAML
# Without --resolv-conf: /etc/resolv.conf, which `ip netns exec` bind-mounts.
daemon_start "$fw" "$P"
check "resolv.conf is a bind mount in the daemon's namespace" ip netns exec "$fw" findmnt -n /etc/resolv.conf
check "start: dyn_dns4 holds the bind source's server" only "$fw" dyn_dns4 10.0.1.53

check "show state: the files are watched with inotify" is_mode "$fw" inotify
check "the daemon holds one inotify instance" test "$(inotify_fds "$DAEMON_PID")" -eq 1
inode=$(stat -c %i "$NETNS_ETC/resolv.conf")
ip netns exec "$fw" sh -c 'printf "nameserver 10.0.2.53\n" >/etc/resolv.conf'
check "written in place inside the namespace (same inode)" test "$(stat -c %i "$NETNS_ETC/resolv.conf")" = "$inode"
wait_for 5 only "$fw" dyn_dns4 10.0.2.53 || true
check "written in place inside the namespace: dyn_dns4 follows" only "$fw" dyn_dns4 10.0.2.53
printf 'nameserver 10.0.3.53\n' >"$NETNS_ETC/resolv.conf"
wait_for 5 only "$fw" dyn_dns4 10.0.3.53 || true
check "written in place to the bind source: dyn_dns4 follows" only "$fw" dyn_dns4 10.0.3.53

# --- 2. No inotify instance -----------------------------------------------------
# The namespace's holder: a process in a new user namespace (root mapped to
# root) and a new network namespace, which gets a name so that `ip netns exec`
# (rf, nft) reaches it; the daemon runs inside both (nsenter).
unshare --user --map-root-user --net -- sleep infinity &
HOLDER=$!
disown
_PIDS+=("$HOLDER")
unshared() { [ "$(readlink "/proc/$HOLDER/ns/user")" != "$(readlink /proc/self/ns/user)" ]; }
wait_for 5 unshared || { echo "the holder did not unshare"; exit 1; }
un="$PREFIX-un"
touch "/run/netns/$un"
mount --bind "/proc/$HOLDER/ns/net" "/run/netns/$un"
ip -n "$un" link set lo up
inside() { nsenter -t "$HOLDER" -U -n -- "$@"; }
limit() { inside sh -c "echo $1 >/proc/sys/user/max_inotify_instances"; }
no_inotify() { inside python3 -c 'import ctypes, sys; sys.exit(0 if ctypes.CDLL(None).inotify_init() < 0 else 1)'; }
limit 0
check "inotify_init fails in the user namespace (limit 0)" no_inotify
check "inotify_init still works on the host" python3 -c 'import ctypes, sys; sys.exit(ctypes.CDLL(None).inotify_init() < 0)'

U="$WORK/un"; mkdir -p "$U/policy" "$U/leases"
cp "$P/10-dns.yaml" "$U/policy/"
echo "nameserver 10.0.4.53" >"$U/resolv.conf"
# A networkd lease (networkd names the file after the link's index).
lease() { printf '# This is private data. Do not parse.\nADDRESS=10.0.9.2\nSERVER_ADDRESS=%s\n' "$1"; }
lease 10.0.4.67 >"$U/leases/2"
# (nsenter execs the daemon: DAEMON_PID is the daemon's.)
daemon_launch "$un" nsenter -t "$HOLDER" -U -n -- "$RINGFENCE" --socket "$(sock "$un")" daemon --policy-dir "$U/policy" \
    --resolv-conf "$U/resolv.conf" --leases "$U/leases"
check "no inotify: the daemon runs" kill -0 "$DAEMON_PID"
check "no inotify: show state --json says it polls" is_mode "$un" polling
check "no inotify: show state --json says why" rf "$un" show state --json
said  "no inotify: the reason is EMFILE" '"reason": *"no inotify instance: Too many open files'
check "no inotify: show state says it polls" rf "$un" show state
said  "no inotify: show state's line" "^file watch: +POLLING every 2000 ms \(no inotify instance: Too many open files.*\); inotify is tried again at each poll"
check "no inotify: the log says it polls" grep -q "no inotify instance: Too many open files (os error 24); polling" "$WORK/$un.log"
check "no inotify: dyn_dns4 holds resolv.conf's server" only "$un" dyn_dns4 10.0.4.53
check "no inotify: dyn_dhcp4 holds the lease's server" only "$un" dyn_dhcp4 10.0.4.67

printf 'nameserver 10.0.5.53\n' >"$U/resolv.conf"
wait_for 6 only "$un" dyn_dns4 10.0.5.53 || true
check "polling: resolv.conf written in place is applied" only "$un" dyn_dns4 10.0.5.53
lease 10.0.5.67 >"$U/leases/2"
wait_for 6 only "$un" dyn_dhcp4 10.0.5.67 || true
check "polling: the lease file written in place is applied" only "$un" dyn_dhcp4 10.0.5.67
gen=$(state "$un" generation)
echo '  - { name: extra, direction: in, action: allow, protocol: tcp, local-ports: [8080] }' >>"$U/policy/10-dns.yaml"
wait_for 6 _gen_at_least "$un" $((gen + 1)) || true
check "polling: the changed policy file is applied (a new generation)" test "$(state "$un" generation)" -gt "$gen"
check "polling: the new rule is in force" rf "$un" show rules
said  "polling: show rules lists the new rule" "extra"

limit 128
wait_for 6 is_mode "$un" inotify || true
check "instances free again: show state says inotify" is_mode "$un" inotify
check "instances free again: the log says so" grep -q "inotify instance obtained: watching files again" "$WORK/$un.log"
check "instances free again: the daemon holds one inotify instance" test "$(inotify_fds "$DAEMON_PID")" -eq 1
printf 'nameserver 10.0.6.53\n' >"$U/resolv.conf"
wait_for 5 only "$un" dyn_dns4 10.0.6.53 || true
check "inotify again: resolv.conf written in place is applied" only "$un" dyn_dns4 10.0.6.53
check "the daemon is still running" kill -0 "$DAEMON_PID"
refute "no error logged" --status 1 grep -q " ERROR " "$WORK/$un.log" "$WORK/$fw.log"
finish
