#!/usr/bin/env bash
# Reloading: a new, changed or removed file in the policy directory is applied by
# itself (debounced); SIGHUP reloads; a broken file is rejected with the running
# ruleset left byte-for-byte as it was and the error reported, and fixing the
# file applies it again.
source "$(dirname "$0")/../lib.sh"

fw=$(host fw); peer=$(host peer)
link "$fw" eth0 10.203.0.1 fd00:203::1 "$peer" eth0 10.203.0.2 fd00:203::2

P="$WORK/policy"
mkdir "$P"
{ printf 'version: 1\nrules:\n'
  echo '  - { name: base-web, direction: in, action: allow, protocol: tcp, local-ports: [8080] }'
  echo "$ND_RULE"; } >"$P/10-base.yaml"
# 30-hup.yaml is a symlink (inside the directory, so allowed) to a file whose name
# does not end in .yaml: editing that file is invisible to the watcher, so only
# SIGHUP can pick the change up.
echo 'version: 1' >"$P/30-hup.src"
ln -s 30-hup.src "$P/30-hup.yaml"
daemon_start "$fw" "$P"
for p in 8080 8081 8082 8083; do serve_tcp "$fw" $p; done

gen() { state "$fw" generation; }
# The answer is read whole before grep: `grep -q` would close the pipe at the
# first match, and the CLI's last write would fail (EPIPE).
state_has() { rf "$fw" show state --json >"$WORK/state.out" && grep -qF -- "$1" "$WORK/state.out"; }
human_state_has() { rf "$fw" show state >"$WORK/state.out" && grep -qF -- "$1" "$WORK/state.out"; }
check_reports() { ! "$RINGFENCE" check --policy-dir "$P" >"$WORK/check.out" 2>&1 && grep -Eq -- "$1" "$WORK/check.out"; }
up() { local a; for a in 10.203.0.1 fd00:203::1; do tcp "$peer" $a "$1" || return 1; done; }
down() { local a; for a in 10.203.0.1 fd00:203::1; do ! tcp "$peer" $a "$1" || return 1; done; }

check  "before: tcp/8080 allowed (v4+v6)" up 8080
refute "before: tcp/8081 blocked (v4 or v6 reachable)" tcp "$peer" 10.203.0.1 8081

# 1. A new file is applied by itself.
g=$(gen)
echo '  - { name: more-web, direction: in, action: allow, protocol: tcp, local-ports: [8081] }' |
    cat <(printf 'version: 1\nrules:\n') - >"$P/20-more.yaml"
check "a new file is applied by itself (generation $g -> $((g + 1)))" wait_gen "$fw" $((g + 1))
check "new file: tcp/8081 now allowed (v4+v6)" up 8081
check "show state lists the new file" state_has 20-more.yaml

# 2. A changed file is applied by itself.
g=$(gen)
sed -i 's/8081/8082/' "$P/20-more.yaml"
check "a changed file is applied by itself" wait_gen "$fw" $((g + 1))
check "changed file: tcp/8082 allowed (v4+v6)" up 8082
check "changed file: tcp/8081 blocked again (v4+v6)" down 8081

# 3. SIGHUP.
g=$(gen)
printf 'version: 1\nrules:\n  - { name: hup-web, direction: in, action: allow, protocol: tcp, local-ports: [8083] }\n' >"$P/30-hup.src"
sleep 1
check "editing a non-.yaml file does not reload by itself" test "$(gen)" = "$g"
kill -HUP "$DAEMON_PID"
check "SIGHUP reloads" wait_gen "$fw" $((g + 1))
check "after SIGHUP: tcp/8083 allowed (v4+v6)" up 8083
check "after SIGHUP: no last-error" test "$(state "$fw" last-error)" = null

# 4. A broken file: port 70000. Nothing changes, the daemon stays, the error is reported.
before=$(table_same "$fw")
g=$(gen)
cat >"$P/40-broken.yaml" <<'YAML'
version: 1
rules:
  - { name: broken, direction: in, action: allow, protocol: tcp, local-ports: [8081] }
  - { name: also-broken, direction: in, action: allow, protocol: tcp, local-ports: [70000] }
YAML
check "the broken file is read and rejected (last-error set within 3 s)" wait_for 3 state_has '"last-error": "'
check "broken file: table inet ringfence is identical (apart from counters)" test "$(table_same "$fw")" = "$before"
check "broken file: generation unchanged" test "$(gen)" = "$g"
check "broken file: the daemon is still running" kill -0 "$DAEMON_PID"
err=$(state "$fw" last-error)
echo "$err" >"$WORK/last-error.txt"
check "last-error names the file, line and the bad port" grep -Eq '40-broken\.yaml:4:[0-9]+: .*70000 is not a port' "$WORK/last-error.txt"
check "last-error says the running ruleset is unchanged" grep -q 'unchanged' "$WORK/last-error.txt"
check "human show state reports the failed reload" human_state_has 'last reload: FAILED'
check "broken file: tcp/8082 still allowed (v4+v6)" up 8082
refute "broken file: its valid rule for tcp/8081 is not applied either" tcp "$peer" 10.203.0.1 8081
before=$(table_same "$fw")   # the traffic above moved counters: a new reference
n=$(logged "$fw" "reload (SIGHUP) failed")
kill -HUP "$DAEMON_PID"
check "SIGHUP with the broken file: the daemon logged the rejection" wait_logged "$fw" "reload (SIGHUP) failed" "$n"
check "SIGHUP with the broken file: table still identical (apart from counters)" test "$(table_same "$fw")" = "$before"
check "SIGHUP with the broken file: the daemon is still running" kill -0 "$DAEMON_PID"
check "ringfence check reports FILE:LINE:COL for the broken file" check_reports '40-broken\.yaml:4:[0-9]+: '

# 5. Fixing the file applies it.
g=$(gen)
sed -i 's/70000/7000/' "$P/40-broken.yaml"
check "the fixed file is applied by itself" wait_gen "$fw" $((g + 1))
check "fixed: last-error cleared" test "$(state "$fw" last-error)" = null
check "fixed: tcp/8081 from the fixed file allowed (v4+v6)" up 8081

# 6. A removed file is applied by itself.
g=$(gen)
rm "$P/40-broken.yaml"
check "a removed file is applied by itself" wait_gen "$fw" $((g + 1))
check "removed: tcp/8081 blocked again (v4+v6)" down 8081
check "removed: tcp/8080 still allowed (v4+v6)" up 8080
check "the daemon is still running" kill -0 "$DAEMON_PID"
finish
