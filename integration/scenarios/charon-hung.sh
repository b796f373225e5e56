#!/usr/bin/env bash
# A charon that accepts VICI connections and never answers (hung, or stopped
# with SIGSTOP), configured as isolation.ike.socket: every VICI call times out
# (src/ike/vici.rs, 10 s) and `show state` says charon is not answering, while
# the firewall keeps working: show state answers at once, an apply takes
# effect, packets are filtered, `show sas` fails with the reason instead of
# hanging. Then --flush-on-exit teardown: a clean stop removes the table and
# the xfrm policies; a stop whose first step fails (the control socket cannot
# be removed) still removes both, and reports the failure with its cause.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../ipsec.sh"

fw=$(host fw); lan=$(host lan)
link "$fw" eth0 10.74.0.1 fd00:74::1 "$lan" eth0 10.74.0.2 fd00:74::2
serve_tcp "$fw" 8080
serve_tcp "$fw" 9090

pki_ca ca "C=XX, O=Example, CN=Example CA"
pki_host fw ca 10.74.0.1

# The hung charon: accepts, reads nothing, answers nothing.
HUNG="$WORK/hung.vici"
bg "$fw" python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(64)
held = []
while True:
    held.append(s.accept()[0])' "$HUNG"
wait_for 5 test -S "$HUNG"

P="$WORK/policy"
mkdir "$P"
# The secure subnet is elsewhere: lan's clear traffic is judged by the rules.
cat >"$P/10-isolation.yaml" <<YAML
version: 1
isolation:
  mode: secure-request
  secure-subnets: ["10.75.0.0/24"]
  identity: { ca: $PKI/ca.crt, certificate: $PKI/fw.crt, private-key: $PKI/fw.key }
  ike: { socket: "unix://$HUNG" }
rules:
  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [8080] }
$ND_RULE
YAML
daemon_start "$fw" "$P" --flush-on-exit

ike_error() { rf "$fw" show state --json | jget 'v["isolation"]["ike"]["last-error"] or ""'; }
not_answering() { ike_error | grep -q "is not answering"; }
not_loaded() { [ "$(rf "$fw" show state --json | jget 'v["isolation"]["ike"]["loaded"]')" = false ]; }
within_1s() {
    local t0=${EPOCHREALTIME/./} rc=0
    "$@" || rc=$?
    echo "took $(((${EPOCHREALTIME/./} - t0) / 1000)) ms"
    [ "$rc" -eq 0 ] && [ $(((${EPOCHREALTIME/./} - t0) / 1000)) -lt 1000 ]
}

check "show state answers within 1 s while charon hangs" within_1s rf "$fw" show state
check "within 15 s, show state says charon is not answering" wait_for 15 not_answering
check "... naming the socket and the call that timed out" ike_error
said "... (get-conns, 10 s)" "charon at $HUNG is not answering: get-conns took more than 10 s"
check "the text of show state says it too" rf "$fw" show state
said "... on the isolation line" "^isolation: +secure-request, charon: charon at .* is not answering"
check "the isolation connection is not reported loaded" not_loaded

check "the firewall works: lan reaches tcp/8080 (rule web)" tcp "$lan" 10.74.0.1 8080
refute "... and not tcp/9090 (no rule)" tcp "$lan" 10.74.0.1 9090
refute "show sas fails with the reason instead of hanging" --says "is not answering" rf "$fw" show sas
cat >>"$P/10-isolation.yaml" <<'YAML'
  - { name: admin, direction: in, action: allow, protocol: tcp, local-ports: [9090] }
YAML
check "an apply takes effect while charon hangs" within_1s rf "$fw" apply
check "... lan now reaches tcp/9090" tcp "$lan" 10.74.0.1 9090
check "the daemon logged the timeout" grep -q "is not answering" "$WORK/$fw.log"

# --- --flush-on-exit
check "the xfrm policies are in the kernel before the stop" sh -c "ip -n $fw xfrm policy show | grep -q 'dir out'"
kill -TERM "$DAEMON_PID"
check "SIGTERM: the daemon stops" wait_exit "$DAEMON_PID"
check "... cleanly" grep -q "stopped; table deleted (--flush-on-exit)" "$WORK/$fw.log"
refute "... and deletes its table" --says "No such file or directory" table "$fw"
check "... and its xfrm policies" test -z "$(ip -n "$fw" xfrm policy show | grep -E '^\s+dir (in|out|fwd) ')"

daemon_start "$fw" "$P" --flush-on-exit
# The first step of stopping, removing the control socket, will fail: a
# directory has taken its name.
rm "$(sock "$fw")" && mkdir "$(sock "$fw")" && touch "$(sock "$fw")/x"
kill -TERM "$DAEMON_PID"
check "a stop whose first step fails: the daemon stops" wait_exit "$DAEMON_PID"
check "... reporting the failed step with its cause" grep -A1 "1 step of stopping failed" "$WORK/$fw.log"
said "... (the socket)" "cannot remove the control socket $(sock "$fw"): Is a directory"
check "... after deleting the table all the same" sh -c "! ip netns exec $fw nft list table inet ringfence"
check "... and removing the xfrm policies" \
    test -z "$(ip -n "$fw" xfrm policy show | grep -E '^\s+dir (in|out|fwd) ')"
check "... and it does not say it stopped cleanly" test "$(grep -c 'stopped; table deleted' "$WORK/$fw.log")" -eq 1
finish
