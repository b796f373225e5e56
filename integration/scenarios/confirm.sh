#!/usr/bin/env bash
# `apply --confirm`: the new ruleset is in force at once; without `confirm` the
# previous one comes back by itself at the deadline (same table apart from
# counters); with `confirm` the new one stays. Only root may apply or confirm:
# a user the socket's group lets in may read state but is refused, and a user
# outside that group cannot even connect. A daemon stopped inside the window
# must not leave the unconfirmed ruleset in force.
source "$(dirname "$0")/../lib.sh"

fw=$(host fw); peer=$(host peer)
link "$fw" eth0 10.207.0.1 fd00:207::1 "$peer" eth0 10.207.0.2 fd00:207::2

P="$WORK/policy"
mkdir "$P"
{ printf 'version: 1\nrules:\n'
  echo '  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [8080, 8081] }'
  echo "$ND_RULE"; } >"$P/10-base.yaml"
# The change under test goes into 20-change.src, behind the in-directory symlink
# 20-change.yaml: the watcher ignores non-.yaml names, so the change reaches the
# kernel only through `apply` (with the file itself the watcher would apply it
# 0.3 s after the write, and `apply --confirm` would then have nothing to roll
# back to).
echo 'version: 1' >"$P/20-change.src"
ln -s 20-change.src "$P/20-change.yaml"
# Let other users reach the socket (the work directory is 0700); the socket
# itself is root:nogroup 0660.
chmod 711 "$WORK"
daemon_start "$fw" "$P" --socket-group nogroup
for p in 8080 8081 8082; do serve_tcp "$fw" $p; done

pending() { state "$fw" confirm-pending-secs; }
not_pending() { [ "$(pending)" = null ]; }
up() { local a; for a in 10.207.0.1 fd00:207::1; do tcp "$peer" $a "$1" || return 1; done; }
down() { local a; for a in 10.207.0.1 fd00:207::1; do ! tcp "$peer" $a "$1" || return 1; done; }
human_state_has() { rf "$fw" show state | grep -qF -- "$1"; }
between() { python3 -c 'import sys; d = float(sys.argv[2]) - float(sys.argv[1]); print(f"{d:.1f} s"); sys.exit(not float(sys.argv[3]) <= d <= float(sys.argv[4]))' "$@"; }

check "before: tcp/8081 allowed (v4+v6)" up 8081
check "before: nothing is pending" not_pending
shape0=$(table_shape "$fw")

# 1. Not confirmed: rolls back by itself, to the ruleset from before the apply,
# taking back also a file edited inside the window.
printf 'version: 1\nrules:\n  - { name: no-8081, direction: in, action: block, protocol: tcp, local-ports: [8081] }\n' >"$P/20-change.src"
check "apply --confirm 5s succeeds" rf "$fw" apply --confirm 5s
said  "apply --confirm says when it rolls back" 'rolls back in 5 s'
check "pending: show state counts down the confirmation" test "$(pending)" -le 5
check "pending: human show state says it rolls back" human_state_has 'rolls back in'
refute "pending: the change is in force at once (tcp/8081 blocked)" tcp "$peer" 10.207.0.1 8081
printf 'version: 1\nrules:\n  - { name: during, direction: in, action: allow, protocol: tcp, local-ports: [8082] }\n' >"$P/25-during.yaml"
check "pending: a file edited inside the window is applied too (tcp/8082 opens)" wait_for 2 tcp "$peer" 10.207.0.1 8082
check "pending: still pending before the deadline" test "$(pending)" != null
check "not confirmed: the rollback comes by itself" wait_for 15 not_pending
# Timed by the daemon's own log lines (this scenario's probes take seconds on
# a loaded machine): the apply, and the rollback its timer did.
logged_at() { date -d "$(grep -F "trigger=\"$1" "$WORK/$fw.log" | tail -1 | cut -d' ' -f1)" +%s.%N; }
check "the rollback came 5 s after the apply (daemon's log)" \
    between "$(logged_at "apply, waiting for confirmation")" "$(logged_at "rolled back: not confirmed in time")" 4.9 5.5
check "rolled back: tcp/8081 allowed again (v4+v6)" up 8081
refute "rolled back: tcp/8082 from the file edited in the window blocked again" tcp "$peer" 10.207.0.1 8082
check "rolled back: table inet ringfence is as before, apart from counters" test "$(table_shape "$fw")" = "$shape0"
check "rolled back: the daemon logged the rollback" grep -q 'rolled back' "$WORK/$fw.log"
# The files still hold the change: reloads must not bring it back by themselves.
n=$(logged "$fw" SIGHUP)
kill -HUP "$DAEMON_PID"
check "rolled back: the daemon has handled the SIGHUP (logged)" wait_logged "$fw" SIGHUP "$n"
check "rolled back: SIGHUP does not re-apply the unconfirmed files" test "$(table_shape "$fw")" = "$shape0"
check "... and show state says why" grep -q 'rolled back for lack of confirmation' <(rf "$fw" show state --json)
# Back to the files of the start (the watcher sees the removal); nothing changes.
# (The .src first: the watcher sees only the removal, and its reload must
# find both files as at the start.)
n=$(logged "$fw" "policy files changed")
echo 'version: 1' >"$P/20-change.src"
rm "$P/25-during.yaml"
check "files back as at the start: the watcher's reload is logged" wait_logged "$fw" "policy files changed" "$n"
check "files back as at the start: the table is still as before" test "$(table_shape "$fw")" = "$shape0"
printf 'version: 1\nrules:\n  - { name: no-8081, direction: in, action: block, protocol: tcp, local-ports: [8081] }\n' >"$P/20-change.src"

# 2. Confirmed: stays.
check "apply --confirm 3s again" rf "$fw" apply --confirm 3s
check "confirm succeeds" rf "$fw" confirm
check "confirmed: nothing is pending any more" not_pending
# The deadline is a time, not an event: wait until it has passed by the
# daemon's own clock (its log), then for a SIGHUP handled after it, so that a
# rollback due at the deadline would have run before the checks.
past_deadline() { python3 -c 'import sys, time; sys.exit(time.time() < float(sys.argv[1]) + 3)' "$(logged_at "apply, waiting for confirmation")"; }
check "confirmed: the confirmation deadline has passed" wait_for 10 past_deadline
n=$(logged "$fw" SIGHUP)
kill -HUP "$DAEMON_PID"
check "confirmed: a SIGHUP after the deadline is handled (logged)" wait_logged "$fw" SIGHUP "$n"
check "confirmed: past the deadline tcp/8081 is still blocked (v4+v6)" down 8081
check "confirmed: tcp/8080 still allowed" tcp "$peer" 10.207.0.1 8080
check "confirmed: the table is the new one" test "$(table_shape "$fw")" != "$shape0"
refute "a second confirm fails, saying nothing is waiting" --status 1 --says 'nothing is waiting' rf "$fw" confirm

# 3. Non-root users. The files now open tcp/8082, so an apply would change something.
printf 'version: 1\nrules:\n  - { name: no-8081, direction: in, action: block, protocol: tcp, local-ports: [8081] }\n  - { name: open-8082, direction: in, action: allow, protocol: tcp, local-ports: [8082] }\n' >"$P/20-change.src"
as() { local user=$1 group=$2; shift 2; ip netns exec "$fw" setpriv --reuid "$user" --regid "$group" --clear-groups timeout 30 "$RINGFENCE" --socket "$(sock "$fw")" "$@"; }
shape1=$(table_shape "$fw")
gen1=$(state "$fw" generation)
check  "nobody (group nogroup, the socket's group) may read state" as nobody nogroup show state
refute "nobody (group nogroup) may not apply: a permission error from the daemon" \
    --status 1 --says 'permission denied: only root' as nobody nogroup apply
refute "nobody (group nogroup) may not apply --confirm" --status 1 --says 'permission denied: only root' \
    as nobody nogroup apply --confirm 60s
refute "nobody (group nogroup) may not confirm" --status 1 --says 'permission denied: only root' as nobody nogroup confirm
refute "a user outside the socket's group cannot connect to apply: the socket refuses the connection" --status 1 \
    --says 'cannot reach the daemon.*permission denied|permission denied.*cannot reach' as nobody 54321 apply
check  "after the refusals: the table is unchanged" test "$(table_shape "$fw")" = "$shape1"
check  "after the refusals: no new generation" test "$(state "$fw" generation)" = "$gen1"
check  "after the refusals: nothing is pending" not_pending
refute "after the refusals: tcp/8082 still blocked" tcp "$peer" 10.207.0.1 8082
check  "root's apply of the same files succeeds" rf "$fw" apply
check  "... and it is open" tcp "$peer" 10.207.0.1 8082
check  "the daemon is still running" kill -0 "$DAEMON_PID"

# 4. The daemon stopped (SIGTERM) inside a window: no confirmation can come any
# more, so the unconfirmed change must not be what stays in force.
shape2=$(table_shape "$fw")
printf 'version: 1\nrules:\n  - { name: no-8080, direction: in, action: block, protocol: tcp, local-ports: [8080] }\n' >"$P/20-change.src"
check  "apply --confirm 60s of a change that blocks tcp/8080" rf "$fw" apply --confirm 60s
refute "pending: tcp/8080 blocked" tcp "$peer" 10.207.0.1 8080
kill -TERM "$DAEMON_PID"
check  "SIGTERM inside the window: the daemon exits" wait_exit "$DAEMON_PID"
check  "SIGTERM inside the window: the ruleset from before the unconfirmed apply stays (apart from counters)" \
    test "$(table_shape "$fw")" = "$shape2"
check  "SIGTERM inside the window: tcp/8080 allowed" tcp "$peer" 10.207.0.1 8080
finish
