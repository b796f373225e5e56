#!/usr/bin/env bash
# Isolation on this machine's kernel, which has xfrm but no ESP (ESP traffic
# is the VM tier's): what the daemon puts in nftables and in charon, with real
# clear packets. fw (eth0 10.71.0.1/24 to lan, eth1 10.72.0.1/24 to far) runs
# the daemon and a charon; lan holds a member's address (.2), an exempt host's
# (.10) and fw's DNS server's (.53); far is outside the secure subnets.
#
# - secure-request: a new clear connection from the member is dropped; the
#   exempt host, the DNS server (keyword) and the far host get through; fw's
#   own clear connection to the member gets its replies.
# - require: even the replies to fw's clear connection are dropped.
# - request: the member gets through.
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
charon_start "$fw"

R="$WORK/resolv.conf"
echo "nameserver 10.71.0.53" >"$R"
P="$WORK/policy"
mkdir "$P"
# policy MODE [CERT] [KEY]: the isolation policy in MODE.
policy() {
    cat >"$P/10-isolation.yaml" <<YAML
version: 1
isolation:
  mode: $1
  secure-subnets: ["10.71.0.0/24", "fd00:71::/64"]
  exempt: [dns, "10.71.0.10/32"]
  identity: { ca: $PKI/ca.crt, certificate: $PKI/${2:-fw}.crt, private-key: $PKI/${3:-fw}.key }
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
check  "show sas answers (no SA: this kernel has no ESP)" rf "$fw" show sas
said   "show sas says there is no SA" "no SA"

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
refute "require: fw's clear connection to the member gets no reply" tcp "$fw" 10.71.0.2 9000
check  "require: the exempt host still gets through" from 10.71.0.10
policy request
rf "$fw" apply >/dev/null
check  "request: applied" mode_is request
check  "request: the member gets through in clear" from 10.71.0.2

# --- off --------------------------------------------------------------------------------
policy off
rf "$fw" apply >/dev/null
check  "off: applied" mode_is off
wait_for 5 unloaded || true
check  "off: charon no longer has the connection" unloaded
refute "off: the isolation chains are gone" ip netns exec "$fw" nft list chain inet ringfence isolation_in

finish
