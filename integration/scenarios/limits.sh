#!/usr/bin/env bash
# Connection limits (src/admission.rs): a member of --socket-group holding
# 1,100 idle connections to the control socket and 1,100 to the metrics port
# (127.0.0.1) must not take the daemon down: root's `show state` answers within
# 1 s, a reload applies, the daemon's CPU stays low and its log quiet; the
# member's 17th connection is refused with a reason; idle connections are
# closed after 10 s, after which the member and the scraper get through again
# while the 2,200 sockets are still open on the client's side. Then a daemon
# whose descriptors run out (prlimit 64; root's connections are never capped)
# backs off instead of spinning, logs that at most once per 10 s, and recovers
# when the idle ones are closed.
source "$(dirname "$0")/../lib.sh"

fw=$(host fw)
P="$WORK/policy"
mkdir "$P"
cat >"$P/10-web.yaml" <<'YAML'
version: 1
rules:
  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [8080] }
YAML
# nobody (primary group nogroup) may connect and read, like a member of the group.
chmod o+x "$WORK"
daemon_start "$fw" "$P" --metrics 127.0.0.1:9477 --socket-group nogroup

# hold NS AS_USER COUNT: opens COUNT connections to the control socket and
# COUNT to the metrics port as AS_USER, in the background, and keeps them open
# (sending nothing) until the scenario ends; waits until all are open.
hold() {
    local ns=$1 user=$2 count=$3 log="$WORK/hold-$1.log" i
    # Raise the client's descriptor limit as root, then drop to the user.
    # (/usr/bin/python3: a python3 under root's home is not the user's to run.)
    ip netns exec "$ns" bash -c 'ulimit -n 8192; exec "$@"' _ \
        setpriv --reuid "$user" --regid "$(id -g "$user")" --clear-groups \
        /usr/bin/python3 -c '
import socket, sys, time
path, count = sys.argv[1], int(sys.argv[2])
held, failed = [], 0
for kind in ("unix", "tcp"):
    for _ in range(count):
        try:
            if kind == "unix":
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(5)
                s.connect(path)
            else:
                s = socket.create_connection(("127.0.0.1", 9477), timeout=5)
            held.append(s)
        except OSError as e:
            failed += 1
    print(f"{kind}: open", flush=True)
print(f"held {len(held)}, failed {failed}", flush=True)
time.sleep(3600)' "$(sock "$ns")" "$count" >"$log" 2>&1 &
    _PIDS+=($!)
    disown
    for i in $(seq 600); do
        grep -q '^held' "$log" && return 0
        sleep 0.1
    done
    echo "the connections were not all opened:"; cat "$log"; return 1
}

# within_1s CMD...: CMD succeeds within a second.
within_1s() {
    local t0=${EPOCHREALTIME/./} rc=0
    "$@" || rc=$?
    local ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
    echo "took $ms ms"
    [ "$rc" -eq 0 ] && [ "$ms" -lt 1000 ]
}

# cpu_ticks PID: the process's user and system time so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# cpu_low PID SECONDS: the process used less than 10% of one CPU over SECONDS.
cpu_low() {
    local before after hz
    hz=$(getconf CLK_TCK)
    before=$(cpu_ticks "$1"); sleep "$2"; after=$(cpu_ticks "$1")
    echo "$((after - before)) ticks in $2 s (CLK_TCK $hz)"
    [ $(((after - before) * 100)) -lt $((hz * $2 * 10)) ]
}

as_nobody() { ip netns exec "$fw" setpriv --reuid nobody --regid nogroup --clear-groups timeout 10 "$RINGFENCE" --socket "$(sock "$fw")" "$@"; }
metrics() { ip netns exec "$fw" timeout 5 python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9477/metrics", timeout=3).read().decode())'; }

check "before: a member of the socket's group reads state" as_nobody show state
check "before: the metrics endpoint answers" metrics

check "nobody opens 1,100 idle connections to the socket and 1,100 to the metrics port" hold "$fw" nobody 1100
check "... every one of them is accepted by the kernel" grep -qx "held 2200, failed 0" "$WORK/hold-$fw.log"
# (Within 10 s of the flood: the 16 it was let keep are still open.)
refute "the member's 17th connection is refused, with the reason" --says "too many connections from uid [0-9]+ \(at most 16\)" \
    as_nobody show state
refute "a scrape is refused while 128 of the flood's TCP connections are open (TCP has no uid)" --says "503" metrics
for i in 1 2 3; do
    check "root's show state answers within 1 s ($i)" within_1s rf "$fw" show state
done
cat >>"$P/10-web.yaml" <<'YAML'
  - { name: web-tls, direction: in, action: allow, protocol: tcp, local-ports: [8443] }
YAML
check "root's apply applies the changed policy" rf "$fw" apply
check "... and show rules lists the new rule" rf "$fw" show rules
said "... (web-tls)" "web-tls"
check "the daemon uses less than 10% of a CPU meanwhile" cpu_low "$DAEMON_PID" 3
refusals=$(grep -c "connection refused" "$WORK/$fw.log" || true)
check "its log holds a few rate-limited refusal lines, not one per connection ($refusals)" test "$refusals" -ge 1 -a "$refusals" -le 4
check "no accept failed (the caps keep the descriptors)" sh -c "! grep -q 'accept failed' '$WORK/$fw.log'"

# The daemon closes connections that sent no request within 10 s, while the
# client keeps every socket open.
check "after the idle timeout the member reads state again" wait_for 20 as_nobody show state
check "... and the metrics endpoint answers again" wait_for 20 metrics
check "... though the client still holds its sockets" kill -0 "${_PIDS[-1]}"

# A monitor stream is not idle however quiet: it outlives the request timeout.
ip netns exec "$fw" setpriv --reuid nobody --regid nogroup --clear-groups \
    timeout 14 "$RINGFENCE" --socket "$(sock "$fw")" monitor --json >"$WORK/monitor.out" 2>&1 &
monitor=$!
# The barrier: a connection opened after the monitor, sending nothing, is
# closed by the idle timeout; the monitor, quiet for longer, must still be open.
idle_until_closed() {
    ip netns exec "$fw" setpriv --reuid nobody --regid nogroup --clear-groups timeout 20 /usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.settimeout(19)
while s.recv(4096):
    pass' "$(sock "$fw")"
}
check "an idle connection opened after the monitor is closed by the daemon" idle_until_closed
check "... while the quiet monitor stream, older, is still open" kill -0 "$monitor"
rc=0; wait "$monitor" || rc=$?
check "... and ends only when its client stops it (timeout's 124, not an error: $rc)" test "$rc" -eq 124

# --- descriptors exhausted: root's connections are not capped.
fw2=$(host fw2)
daemon_start "$fw2" "$P" --metrics 127.0.0.1:9477
check "the second daemon's descriptor limit is lowered to 64" prlimit --pid "$DAEMON_PID" --nofile=64:64
echo "       (the daemon holds $(ls "/proc/$DAEMON_PID/fd" | wc -l) descriptors)"
check "root opens 60 idle connections, more than the daemon has descriptors for" hold "$fw2" root 30
check "the daemon backs off instead of spinning: less than 10% of a CPU" cpu_low "$DAEMON_PID" 3
failures=$(grep -c "accept failed" "$WORK/$fw2.log" || true)
check "accept failures are logged at most once per 10 s ($failures lines)" test "$failures" -ge 1 -a "$failures" -le 2
check "after the idle timeout frees descriptors, root's show state answers" wait_for 25 rf "$fw2" show state
finish
