#!/usr/bin/env bash
# Isolation on this machine's kernel, which has xfrm but no ESP (ESP traffic
# is the VM tier's): what the daemon puts in nftables and in charon, with real
# clear packets. fw (eth0 10.71.0.1/24 to lan, eth1 10.72.0.1/24 to far) runs
# the daemon and a charon; lan holds a member's address (.2), an exempt host's
# (.10) and fw's DNS server's (.53); far is outside the secure subnets.
#
# - secure-request: the xfrm policies (ESP transport templates of reqid 0x5246,
#   level required, larval drop off: a first packet waits for its SA
#   for the secure subnets, clear for exemptions, following resolv.conf for
#   the dns keyword); a new clear connection from the member is dropped; the
#   exempt host, the DNS server (keyword) and the far host get through; fw's
#   own connection to the member makes charon start IKE with it (the kernel's
#   ACQUIRE reached the trapped child) and, with no answer, goes on in clear
#   (a soft SA, listed by show sas).
# - require: even the replies to fw's clear connection are dropped.
# - request: the member gets through, and readiness counts its clear
#   connections (by source, protocol and port; not the exempt host's nor those
#   from outside the secure subnets), across a table replacement.
# - charon: the connection and the credentials are loaded (certificate, CA
#   constraint, transport child); charon killed and restarted: loaded again
#   without restarting the daemon; isolation off: unloaded, chains gone.
# - bad identity files: the daemon refuses to start and names the file's place.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../ipsec.sh"

fw=$(host fw); lan=$(host lan); far=$(host far)
link "$fw" eth0 10.71.0.1 fd00:71::1 "$lan" eth0 10.71.0.2 fd00:71::2
link "$fw" eth1 10.72.0.1 fd00:72::1 "$far" eth0 10.72.0.2 fd00:72::2
ip -n "$lan" addr add 10.71.0.10/24 dev eth0
ip -n "$lan" addr add 10.71.0.53/24 dev eth0
serve_tcp "$fw" 8080
serve_tcp "$lan" 9000

pki_ca ca "C=XX, O=Example, CN=Example CA"
pki_ca other "C=XX, O=Other, CN=Other CA"
pki_host fw ca 10.71.0.1
pki_host stranger other 10.71.0.1
pki_revoke ca
pki_revoke other
charon_start "$fw"

R="$WORK/resolv.conf"
echo "nameserver 10.71.0.53" >"$R"
P="$WORK/policy"
mkdir "$P"
# policy MODE [CERT] [KEY] [CRL]: the isolation policy in MODE (with the CA's
# revocation list unless CRL says another file).
policy() {
    cat >"$P/10-isolation.yaml" <<YAML
version: 1
isolation:
  mode: $1
  secure-subnets: ["10.71.0.0/24", "fd00:71::/64"]
  exempt: [dns, "10.71.0.10/32"]
  identity: { ca: $PKI/ca.crt, certificate: $PKI/${2:-fw}.crt, private-key: $PKI/${3:-fw}.key, crl: ${4:-$PKI/ca.crl} }
  ike: { socket: "$(vici "$fw")" }
rules:
  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [8080] }
$ND_RULE
YAML
}

# from SRC: a tcp connection from lan's address SRC (or far) to fw:8080 gets "ok".
from() {
    local ns=$lan
    [ "$1" != 10.72.0.2 ] || ns=$far
    ip netns exec "$ns" timeout 5 socat -T2 - "TCP:${1%.*}.1:8080,bind=$1,connect-timeout=2" </dev/null | grep -qx ok
}
not_loaded() { ! loaded; }
unloaded() { ! sw "$fw" --list-conns | grep -q ringfence; }
mode_is() { [ "$(state "$fw" isolation | jget 'v["mode"]')" = "$1" ]; }
loaded() { [ "$(rf "$fw" show state --json | jget 'v["isolation"]["ike"]["loaded"]')" = true ]; }
loads() { rf "$fw" show state --json | jget 'v["isolation"]["ike"]["loads"]'; }
# xfrm_out DST LEVEL: fw's kernel has the outbound policy to DST with an ESP
# transport template of reqid 0x5246 at LEVEL; xfrm_clear DIR ADDR: a policy
# without template for ADDR (dst out, src in).
# (`ip xfrm` prints `level use` and leaves out `required`, the default.)
xfrm_out() {
    local p
    p=$(ip -n "$fw" xfrm policy show dir out dst "$1" | tr '\n' ' ')
    grep -qE "src 0.0.0.0/0 dst $1 .*proto esp reqid 21062 mode transport" <<<"$p" || return 1
    if [ "$2" = use ]; then grep -q "level use" <<<"$p"; else ! grep -q "level use" <<<"$p"; fi
}
xfrm_clear() {
    local sel="dst $2"
    [ "$1" = out ] || sel="src $2"
    ip -n "$fw" xfrm policy show dir "$1" $sel >"$WORK/xp" && grep -q "dir $1" "$WORK/xp" && ! grep -q tmpl "$WORK/xp"
}
# (charon's per-socket bypass policies, `socket in/out`, are not counted.)
xfrm_count() { ip -n "$fw" xfrm policy show | grep -cE "^\s+dir (in|out|fwd) "; }
drop_counter() {
    ip netns exec "$fw" nft -j list chain inet ringfence isolation_in |
        jget 'sum(e["counter"]["packets"] for o in v["nftables"] if "rule" in o for e in o["rule"]["expr"] if "counter" in e)'
}

# --- Bad identity files: nothing starts, the place is named -----------------------
chmod 644 "$PKI/fw.key"
policy secure-request
refute "key readable by others: ringfence check fails" "$RINGFENCE" check --policy-dir "$P"
said   "key readable by others: the message names the key's place and mode" \
    "10-isolation.yaml:6:[0-9]+: isolation.identity.private-key: .*fw.key has mode 0644"
refute "key readable by others: the daemon does not start" daemon_start "$fw" "$P" --resolv-conf "$R"
refute "key readable by others: no table in the kernel" table "$fw"
chmod 600 "$PKI/fw.key"
policy secure-request stranger stranger
refute "certificate of another CA: ringfence check fails" "$RINGFENCE" check --policy-dir "$P"
said   "certificate of another CA: the message says so" \
    "isolation.identity.certificate: the certificate \(.*CN=stranger\) is not signed by the CA in $PKI/ca.crt"
policy secure-request fw fw "$PKI/other.crl"
refute "revocation list of another CA: ringfence check fails" "$RINGFENCE" check --policy-dir "$P"
said   "revocation list of another CA: the message says so" \
    "10-isolation.yaml:6:[0-9]+: isolation.identity.crl: the revocation list \(issuer .*CN=Other CA\) is not signed by the CA in $PKI/ca.crt"
policy secure-request fw fw "$PKI/ca.crt"
refute "a certificate given as the revocation list: ringfence check fails" "$RINGFENCE" check --policy-dir "$P"
said   "... the message says what the file holds" "isolation.identity.crl: .*ca.crt holds a PEM \"CERTIFICATE\", not a X509 CRL"

# --- secure-request ----------------------------------------------------------------
policy secure-request
daemon_start "$fw" "$P" --resolv-conf "$R" --leases "$WORK/no-leases"
check  "show state: isolation secure-request" mode_is secure-request
wait_for 5 loaded || true
check  "the connection is loaded into charon" loaded
sw "$fw" --list-conns >"$WORK/conns" 2>&1
check  "charon has the connection ringfence" grep -q "^ringfence: IKEv2" "$WORK/conns"
check  "its child is a transport child" grep -q "ringfence: TRANSPORT" "$WORK/conns"
check  "the peer must have a certificate of the domain CA" grep -q "cacerts: C=XX, O=Example, CN=Example CA" "$WORK/conns"
check  "the host authenticates with its certificate" grep -qE "certs: +C=XX, O=Example, OU=Members, CN=fw" "$WORK/conns"
check  "charon has the CA and the host certificate" sw "$fw" --list-certs
said   "the CA is loaded as a CA" "flags: +CA"
check  "charon has the CA's revocation list" sw "$fw" --list-certs --type x509_crl
said   "... issued by the CA" "issuer: +\"?C=XX, O=Example, CN=Example CA"
check  "xfrm: outbound to the secure subnet: ESP transport, reqid 0x5246, level required (a first packet waits for its SA)" xfrm_out 10.71.0.0/24 required
check  "xfrm_larval_drop is 0 in secure-request: packets without SA are held, not dropped" \
    test "$(ip netns exec "$fw" cat /proc/sys/net/core/xfrm_larval_drop)" = 0
check  "xfrm: inbound from the secure subnet: ESP template of any reqid, level use" sh -c \
    "ip -n $fw xfrm policy show dir in src 10.71.0.0/24 | tr '\n' ' ' | grep -qE 'proto esp reqid 0 mode transport.*level use'"
check  "xfrm: the exempt prefix is clear, out" xfrm_clear out 10.71.0.10/32
check  "xfrm: the exempt prefix is clear, in" xfrm_clear in 10.71.0.10/32
check  "xfrm: the DNS server (dns keyword) is clear" xfrm_clear out 10.71.0.53/32
check  "xfrm: IPv6 neighbour solicitations are clear" sh -c "ip -n $fw xfrm policy show dir out | grep -A1 'proto ipv6-icmp type 135' | grep -q 'dir out'"
echo "nameserver 10.71.0.54" >"$R.new" && mv "$R.new" "$R"
wait_for 5 xfrm_clear out 10.71.0.54/32 || true
check  "xfrm: a new DNS server in resolv.conf is exempt at once" xfrm_clear out 10.71.0.54/32
refute "xfrm: ... and the old one no longer" xfrm_clear out 10.71.0.53/32
echo "nameserver 10.71.0.53" >"$R.new" && mv "$R.new" "$R"
wait_for 5 xfrm_clear out 10.71.0.53/32 || true
check  "the table has the isolation chains" ip netns exec "$fw" nft list chain inet ringfence isolation_in
said   "isolation_in drops new clear connections from the secure subnets" "ct state new meta ipsec missing ip saddr @iso_secure4 counter packets [0-9]+ bytes [0-9]+ drop"
refute "a new clear connection from the member (.2) is dropped" from 10.71.0.2
check  "... and counted by the isolation rule" test "$(drop_counter)" -gt 0
check  "the exempt host (.10) gets through" from 10.71.0.10
check  "the DNS server (.53, exempt by the dns keyword) gets through" from 10.71.0.53
check  "a host outside the secure subnets gets through" from 10.72.0.2
check  "fw's own clear connection to the member gets its replies" tcp "$fw" 10.71.0.2 9000
ex() { rf "$fw" explain --direction in --protocol tcp --remote "$1" --local-port 8080; }
check  "explain: the member's clear connection" ex 10.71.0.2
said   "explain: dropped by isolation, as the kernel did" "decided by: isolation \(secure-request\)"
check  "explain: the DNS server's connection" ex 10.71.0.53
said   "explain: the DNS server is decided by the web rule (exempt)" "decided by: rule web"
# That connection waited for an SA and raised an ACQUIRE for reqid 0x5246,
# which charon's trapped child answered: it negotiated with the member (which
# runs no charon); after `fallback` (500 ms) the member got a soft SA and the
# connection went on in clear.
check  "show sas answers" rf "$fw" show sas
said   "show sas: the member has a soft SA (no IKE answer within the fallback)" \
    "^10\.71\.0\.2 in clear \(soft SA: timeout\)"
check  "charon's log: it started IKE with the member because of the kernel's ACQUIRE" \
    grep -q "initiating IKE_SA ringfence\[[0-9]*\] to 10.71.0.2" "$WORK/$fw.charon.log"

# --- charon restarts ------------------------------------------------------------------
n=$(loads)
charon_stop "$fw" KILL
wait_for 5 not_loaded || true
check  "charon killed: show state no longer says loaded" not_loaded
refute "charon killed: the table stays (the member is still dropped)" from 10.71.0.2
charon_start "$fw"
wait_for 10 loaded || true
check  "charon restarted: the connection is loaded again, the daemon still running" loaded
check  "charon restarted: one more load than before" test "$(loads)" -gt "$n"
check  "charon restarted: charon has the connection again" sw "$fw" --list-conns
said   "charon restarted: the connection is ringfence" "ringfence: IKEv2"

# --- require, request ------------------------------------------------------------------
policy require
rf "$fw" apply >/dev/null
check  "require: applied" mode_is require
check  "require: xfrm_larval_drop is back to 1 (packets without SA are dropped: a dead peer cannot block the queue)" \
    test "$(ip netns exec "$fw" cat /proc/sys/net/core/xfrm_larval_drop)" = 1
check  "require: outbound to the secure subnet is ESP at level required" xfrm_out 10.71.0.0/24 required
refute "require: fw's clear connection to the member gets no reply" tcp "$fw" 10.71.0.2 9000
check  "require: the exempt host still gets through" from 10.71.0.10
policy request
rf "$fw" apply >/dev/null
check  "request: applied" mode_is request
check  "request: xfrm_larval_drop is 0 again (held)" test "$(ip netns exec "$fw" cat /proc/sys/net/core/xfrm_larval_drop)" = 0
check  "request: the member gets through in clear" from 10.71.0.2
# clear SRC PROTO PORT: the readiness count of SRC's clear connections to PORT.
clear() {
    rf "$fw" show sas --json | jget "sum(c['connections'] for c in v['clear-inbound'] if (c['source'], c['protocol'], c['port']) == ('$1', '$2', $3))"
}
before=$(clear 10.71.0.2 tcp 8080)
check  "request: readiness counted the member's clear connection" test "$before" -ge 1
for i in 1 2 3; do from 10.71.0.2; done
from 10.71.0.10; from 10.72.0.2
check  "request: 3 more clear connections from the member, 3 more counted (not the exempt host's, not far's)" \
    test "$(clear 10.71.0.2 tcp 8080)" = $((before + 3))
check  "... the exempt host (10.71.0.10) is not counted" test "$(clear 10.71.0.10 tcp 8080)" = 0
check  "... nor the host outside the secure subnets" test "$(clear 10.72.0.2 tcp 8080)" = 0
check  "request: a ping from the member" ip netns exec "$lan" ping -c1 -W2 -I 10.71.0.2 10.71.0.1
check  "... is counted as icmp (no port)" test "$(clear 10.71.0.2 icmp 0)" = 1
rf "$fw" apply >/dev/null
check  "request: a forced apply (a new table) keeps the counts" test "$(clear 10.71.0.2 tcp 8080)" = $((before + 3))
check  "show stats --json: the count by port" test "$(rf "$fw" show stats --json |
    jget "[c['connections'] for c in v['isolation']['clear-inbound'] if (c['protocol'], c['port']) == ('tcp', 8080)][0]")" = $((before + 3))
stats_say() { rf "$fw" show stats | grep -qE "$1"; }
check  "show stats: the readiness line" stats_say "^readiness: +$((before + 4)) new connections in clear from secure subnets \\(tcp/8080 $((before + 3)), icmp 1\\)"

# --- off --------------------------------------------------------------------------------
policy off
rf "$fw" apply >/dev/null
check  "off: applied" mode_is off
wait_for 5 unloaded || true
check  "off: charon no longer has the connection" unloaded
check  "off: no xfrm policy is left" test "$(xfrm_count)" = 0
check  "off: show sas has no readiness counts" test "$(rf "$fw" show sas --json | jget 'v.get("clear-inbound")')" = null
refute "off: the isolation chains are gone" ip netns exec "$fw" nft list chain inet ringfence isolation_in

finish
