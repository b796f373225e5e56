#!/usr/bin/env bash
# Isolation at first contact (docs/isolation.md "First contact"), in the VM:
# every check uses one socket, as an application does, never a retry on a new
# one. One switch (10.90.0.0/24, fd00:90::/64), on it:
#   m1 (.1), m2 (.2)  members: Ringfence + their own charon
#   nm (.3)           a non-member: no IPsec at all
#   st (.4)           a stranger: charon answers IKE with a certificate of another CA
# Each host runs an echo server on tcp/7001 and a UDP sink on 7002.
# Run: bash integration/vm/run.sh integration/vm/scenarios/first-contact.sh
source "$(dirname "$0")/../guest-lib.sh"
phase() { echo "-- [${SECONDS}s] $*"; }

sw=$(switch sw)
m1=$(host m1); m2=$(host m2); nm=$(host nm); st=$(host st)
n=1
for ns in "$m1" "$m2" "$nm" "$st"; do
    echo_host "$sw" "$ns" "10.90.0.$n" "fd00:90::$n"
    n=$((n + 1))
done
sink_start "$m1" 7002
pki_ca ca "C=XX, O=Example, CN=Example Root CA"
pki_ca other "C=XX, O=Other, CN=Other Root CA"
pki_host m1 ca; pki_host m2 ca; pki_host st other

# (member, conversation, figure, forget, soft, no_soft: guest-lib.sh)
# unqueued NAME: after the first round trip, at least two of the others took
# under 80 ms. A socket left on the xfrm queue's placeholder route sends every
# packet through the queue's timer, 100 ms or more each (integration/vm/README.md).
unqueued() { [ "$(figure "$1" 'sum(r < 80 for r in c["rtt_ms"][1:])')" -ge 2 ]; }
soft_reason() { rf "$1" show sas --json | jget "[s['reason'] for s in v['soft-sas'] if s['peer'] == '$2'][0]"; }
# clear_from NS SRC: NS's readiness count of clear connections from SRC.
clear_from() { rf "$1" show sas --json | jget "sum(c['connections'] for c in v['clear-inbound'] if c['source'] == '$2')"; }
fallbacks() { rf "$1" show stats --json | jget "{f['reason']: f['count'] for f in v['isolation']['fallbacks']}['$2']"; }

for pair in "$m1 m1" "$m2 m2"; do
    set -- $pair
    charon_start "$1"
done

# --- Members at first contact: held while IKE runs, then ESP; never a clear packet
for mode in secure-request request boundary; do
    phase "Two members in $mode, first contact"
    member "$m1" m1 "$mode" 5s 5m
    member "$m2" m2 "$mode" 5s 5m
    check "$mode: both daemons loaded into charon" wait_for 10 loaded "$m1"
    check "$mode: ... (m2)" wait_for 10 loaded "$m2"
    forget "$m1" "$m2"
    capture_start "$m2" eth0 "first-$mode"
    check "$mode: m1 -> m2, one TCP socket at first contact: connects and echoes 5 lines" \
        conversation "tcp-$mode" "$m1" 10.90.0.2 5
    echo "   $mode first contact: $(cat "$WORK/tcp-$mode.json")"
    check "$mode: ... and its packets left the queue's timer once the SA was up" unqueued "tcp-$mode"
    forget "$m1" "$m2"
    check "$mode: m2 -> m1, one UDP datagram at first contact" udp_send "$m2" 10.90.0.1 7002 "first-$mode"
    check "$mode: ... arrives (it was held, not dropped)" wait_for 15 received "$m1" 7002 "first-$mode"
    capture_stop "first-$mode"
    check "$mode: no clear TCP or UDP packet between the members" test "$(wire "first-$mode" clear-traffic)" -eq 0
    check "$mode: ... ESP only" test "$(wire "first-$mode" esp)" -ge 10
    check "$mode: no soft SA between members" no_soft "$m1" 10.90.0.2
    [ "$mode" = secure-request ] ||
        check "$mode: m2's readiness counts nothing from m1 (its connection came over ESP)" \
            test "$(clear_from "$m2" 10.90.0.1)" = 0
done

phase "IPv6 members, first contact"
forget "$m1" "$m2"
capture_start "$m2" eth0 first-v6
check "IPv6: m1 -> m2, one TCP socket at first contact" conversation tcp-v6 "$m1" fd00:90::2 5
echo "   IPv6 first contact: $(cat "$WORK/tcp-v6.json")"
capture_stop first-v6
check "IPv6: no clear TCP between the members" test "$(wire first-v6 clear-traffic)" -eq 0
check "IPv6: ... ESP only" test "$(wire first-v6 esp)" -ge 10

# --- A late SA: a clear conversation moves to ESP on the same socket
phase "A conversation that began in clear moves to ESP"
# fallback 100 ms: shorter than IKE under TCG, so m1 starts in clear (soft SA)
# and the SA comes up while the socket is in use.
member "$m1" m1 request 100ms 5m
member "$m2" m2 request 100ms 5m
forget "$m1" "$m2"
fell_back=$(fallbacks "$m1" timeout)
capture_start "$m2" eth0 late
check "m1 -> m2: one socket, 12 lines 0.3 s apart" conversation late "$m1" 10.90.0.2 12 0.3
echo "   late SA: $(cat "$WORK/late.json")"
capture_stop late
# (The first round trip also waits for the echo server to start `cat`.)
check "... no round trip stalled (all after the first under 1 s)" test "$(figure late 'max(c["rtt_ms"][1:])')" -lt 1000
check "... m1 went on in clear meanwhile (a soft SA for m2)" test "$(fallbacks "$m1" timeout)" -gt "$fell_back"
check "... the last line crossed in ESP" test "$(wire late esp-marker MARK-11)" -ge 1
check "... and not in clear" test "$(wire late clear-marker MARK-11)" -eq 0
check "... the soft SA ended with the SA" no_soft "$m1" 10.90.0.2

# --- Non-members: fall back after `fallback`, soft SA listed, ends after idle
phase "A non-member: fallback to clear"
member "$m1" m1 secure-request 500ms 8s
check "m1 -> nm (no IKE at all), one socket: connects in clear" conversation nm "$m1" 10.90.0.3 2
echo "   non-member, fallback 500 ms: $(cat "$WORK/nm.json")"
check "... after about the fallback (connect >= 400 ms)" test "$(figure nm 'c["connect_ms"]')" -ge 400
check "show sas lists the soft SA with nm, reason timeout" test "$(soft_reason "$m1" 10.90.0.3)" = timeout
check "show stats counts the fallback" test "$(fallbacks "$m1" timeout)" -ge 1
check "the soft SA ends after lifetimes.idle (8 s) without traffic" wait_for 30 no_soft "$m1" 10.90.0.3
# (charon's first IKE_SA with nm still retransmits, and the kernel raises no new
# ACQUIRE while its larval state lasts: the held-flow log starts the timer.)
check "... then the next connection is held again and falls back again" conversation nm2 "$m1" 10.90.0.3 1
echo "   non-member again: $(cat "$WORK/nm2.json")"
check "... (held: connect >= 400 ms)" test "$(figure nm2 'c["connect_ms"]')" -ge 400
check "... a second fallback counted" test "$(fallbacks "$m1" timeout)" -ge 2
member "$m1" m1 require 500ms 8s
check "require: the soft SA is gone" no_soft "$m1" 10.90.0.3
refute "require m1 -> nm: no connection (never falls back)" conversation nm3 "$m1" 10.90.0.3 1 0 6

# --- A peer's charon comes back: reached at once, not at charon's next retransmission
phase "Recovery: the peer's charon comes back"
member "$m2" m2 require 5s 5m
forget "$m1" "$m2"
charon_stop "$m2" KILL
refute "require m1 -> m2 while m2's charon is dead: no connection" conversation dead "$m1" 10.90.0.2 1 0 6
check "m1's charon is still trying (IKE_SA_INIT retransmitted or aborted and started again)" \
    grep -qE "retransmit 1 of request|IKE negotiation with no answer aborted" "$WORK/$m1.charon.log" "$WORK/$m1.log"
charon_start "$m2"
check "m2's daemon loads its connection into the new charon" wait_for 20 loaded "$m2"
back=$EPOCHREALTIME
check "require m1 -> m2: one socket after the restart connects" conversation back "$m1" 10.90.0.2 1
# (From the restart to the connection, as the application sees it: without
# the time the test's Python takes to start under emulation.)
took=$(figure back "round((c['start'] - $back) * 1000 + c['connect_ms'])")
echo "   recovery: connected ${took} ms after m2's connection was loaded again: $(cat "$WORK/back.json")"
check "... within 10 s of the restart" test "$took" -lt 10000

# --- A peer of another CA: auth-failed
phase "A stranger (another CA): auth-failed"
swanctl_dir "$st" st other <<CONF
connections {
    lan {
        version = 2
        remote_addrs = 10.90.0.0/24
        proposals = aes128gcm16-prfsha256-ecp256
        local {
            auth = pubkey
            certs = st.crt
        }
        remote {
            auth = pubkey
        }
        children {
            lan {
                mode = transport
                esp_proposals = null-sha256
            }
        }
    }
}
CONF
charon_start "$st"
check "stranger: its configuration loads" sw_load "$st"
member "$m1" m1 secure-request 5s 5m
check "secure-request m1 -> st: connects in clear after IKE failed" conversation st "$m1" 10.90.0.4 1
echo "   stranger: $(cat "$WORK/st.json")"
check "... the soft SA says auth-failed" test "$(soft_reason "$m1" 10.90.0.4)" = auth-failed
check "... before the 5 s fallback ran out" test "$(figure st 'c["connect_ms"]')" -lt 5000
member "$m1" m1 require 5s 5m
refute "require m1 -> st: refused" conversation st2 "$m1" 10.90.0.4 1

finish
