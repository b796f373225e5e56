#!/usr/bin/env bash
# Domain isolation with Ringfence (docs/isolation.md), ESP on the wire, in the
# VM. One switch (10.90.0.0/24), on it:
#   m1 (.1), m2 (.2)  members: Ringfence + their own charon, certificates of the
#                     domain CA; secure-subnets 10.90.0.0/24, exempt: dns
#   nm (.3)           a non-member: no IPsec at all
#   st (.4)           a stranger: charon with a certificate of another CA,
#                     configured by hand to protect its traffic with the LAN
#   hand (.6)         a plain strongSwan host configured by hand with swanctl
#                     (domain CA, trap, ESP-null): interop without Ringfence
#   dns (.53)         dnsmasq, the members' DNS server (resolv.conf)
# Every member serves tcp/7000 ("ok"), allowed by its policy.
# Run: bash integration/vm/run.sh integration/vm/scenarios/isolation.sh
source "$(dirname "$0")/../guest-lib.sh"
# phase NAME: a heading with the time so far (the VM is slow: this shows where).
phase() { echo "-- [${SECONDS}s] $*"; }

sw=$(switch sw)
m1=$(host m1); m2=$(host m2); nm=$(host nm); st=$(host st); hand=$(host hand); dns=$(host dns)
port "$sw" "$m1" 10.90.0.1; port "$sw" "$m2" 10.90.0.2; port "$sw" "$nm" 10.90.0.3
port "$sw" "$st" 10.90.0.4; port "$sw" "$hand" 10.90.0.6; port "$sw" "$dns" 10.90.0.53
for ns in "$m1" "$m2" "$nm" "$st" "$hand"; do serve_tcp "$ns" 7000; done
bg "$dns" dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts --log-facility=- \
    --address=/test.ringfence/192.0.2.53 --listen-address=10.90.0.53 --bind-interfaces --pid-file="$WORK/dnsmasq.pid"
wait_port "$dns" 53 udp

pki_ca ca "C=XX, O=Example, CN=Example Root CA"
pki_ca other "C=XX, O=Other, CN=Other Root CA"
for n in m1 m2 hand; do pki_host $n ca; done
pki_host st other

# --- Ringfence members
phase "Ringfence members"
# member NS NAME MODE: NS's policy in MODE (written, and applied if its daemon runs).
member() {
    local ns=$1 name=$2 mode=$3
    member_policy "$ns" "$name" 10.90.0.53 <<YAML
version: 1
isolation:
  mode: $mode
  secure-subnets: ["10.90.0.0/24"]
  exempt: [dns]
  identity: { ca: $PKI/ca.crt, certificate: $PKI/$name.crt, private-key: $PKI/$name.key }
  lifetimes: { ike: 1h, child: 30m, idle: 5m }
  ike: { socket: "$(vici "$ns")" }
rules:
  - { name: service, direction: in, action: allow, protocol: tcp, local-ports: [7000] }
YAML
}
mode_of() { rf "$1" show state --json | jget 'v["isolation"]["mode"]'; }
for pair in "$m1 m1" "$m2 m2"; do
    set -- $pair
    charon_start "$1"
    member "$1" "$2" secure-request
    check "$2: the connection is loaded into its charon" wait_for 10 loaded "$1"
done

# to FROM ADDR: a TCP connection gets "ok" within 20 s (the first SYNs may be
# dropped while IKE runs: secure-request drops new clear connections).
to() { wait_for 20 tcp "$1" "$2" 7000; }
# sas_with NS PEER: NS's kernel has ESP SAs with PEER (both ways).
sas_with() { [ "$(esp_sas "$1" | awk -v p="$2" '$3 == p || $4 == p' | wc -l)" -ge 2 ]; }
# send_marker FROM ADDR MARKER: a TCP connection that carries MARKER.
send_marker() { echo "$3" | ip netns exec "$1" timeout 10 socat -T2 - "TCP:$2:7000,connect-timeout=5" | grep -qx ok; }

# --- Two members in secure-request: ESP-null
phase "Two members in secure-request: ESP-null"
capture_start "$m2" eth0 members
check  "m1 -> m2 (both secure-request): the connection succeeds" to "$m1" 10.90.0.2
check  "m1 and m2 have ESP SAs with each other" sas_with "$m1" 10.90.0.2
check  "the SAs have Ringfence's reqid 0x5246 (21062)" sh -c "ip -n $m1 xfrm state | grep -q 'reqid 21062 '"
check  "a connection with a marker" send_marker "$m1" 10.90.0.2 RINGFENCE-NULL-MARKER
capture_stop members
check  "ESP went on the wire between the members" test "$(wire members esp)" -ge 2
check  "the marker crossed in ESP, readable: ESP-null, integrity only" test "$(wire members esp-marker RINGFENCE-NULL-MARKER)" -ge 1
check  "... and not in clear" test "$(wire members clear-marker RINGFENCE-NULL-MARKER)" -eq 0
check  "m1: show sas" rf "$m1" show sas --json
cp "$WORK/last.out" "$WORK/sas.json"
check  "show sas: the peer's certificate identity" grep -q 'CN=m2' "$WORK/sas.json"
check  "show sas: an ESP transport CHILD SA with HMAC-SHA-256-128, no encryption" child_sas any "$m1" 10.90.0.2 \
    'c["protocol"] == "ESP" and c["mode"] == "TRANSPORT" and c["integ-alg"] == "HMAC_SHA2_256_128" and c.get("encr-alg") in (None, "NULL") and c["reqid"] == "21062"'
check  "show stats counts the ESP SAs" test "$(rf "$m1" show stats --json | jget 'v["isolation"]["sas-up"]')" -ge 2

# --- Non-members and strangers
phase "Non-members and strangers"
refute "non-member nm -> m2: a new clear connection is refused" tcp "$nm" 10.90.0.2 7000
check  "m2 -> non-member nm: m2's own connection works in clear (secure-request falls back)" wait_for 10 tcp "$m2" 10.90.0.3 7000
# The stranger protects its traffic to the LAN, like a member, with its own CA.
trap_conf st 10.90.0.0/24 | swanctl_dir "$st" st other
charon_start "$st"
check  "stranger: its swanctl configuration loads" sw_load "$st"
refute "stranger (another CA) -> m2: refused" tcp "$st" 10.90.0.2 7000
refute "stranger: no SA with m2" sas_with "$m2" 10.90.0.4
check  "m2's charon refused the stranger's certificate" grep -qiE "constraint check failed|no trusted|not.*issued|authentication.*failed|no issuer" "$WORK/$m2.charon.log"

# --- The exempt DNS server
phase "The exempt DNS server"
check  "m1's query to the DNS server (exempt) is answered" wait_for 10 dns_query "$m1" 10.90.0.53 udp 192.0.2.53
refute "no SA with the DNS server: it was reached in clear" sas_with "$m1" 10.90.0.53

# --- Interop: a plain strongSwan host, configured by hand
phase "Interop: a plain strongSwan host, configured by hand"
trap_conf hand 10.90.0.0/24 | swanctl_dir "$hand" hand ca
charon_start "$hand"
check  "hand: its swanctl configuration loads" sw_load "$hand"
check  "hand -> m1 (Ringfence, secure-request): the connection succeeds" to "$hand" 10.90.0.1
check  "hand and m1 talk ESP" sas_with "$m1" 10.90.0.6
check  "m1 -> hand: the connection succeeds" to "$m1" 10.90.0.6
check  "m1's show sas names hand" rf "$m1" show sas
said   "... with hand's certificate identity" "CN=hand"

# --- boundary and require
phase "boundary and require"
member "$m1" m1 boundary
check  "boundary m1: the non-member's clear connection is accepted" wait_for 10 tcp "$nm" 10.90.0.1 7000
check  "boundary m1: m2 still talks ESP with m1" to "$m2" 10.90.0.1
member "$m2" m2 require
check  "require m2: show state says so" test "$(mode_of "$m2")" = require
refute "require m2 -> non-member nm: fails (no clear fallback)" tcp "$m2" 10.90.0.3 7000
refute "non-member nm -> require m2: fails" tcp "$nm" 10.90.0.2 7000
check  "require m2 -> m1: works over ESP" to "$m2" 10.90.0.1
check  "require m2: its DNS server (exempt) is still reached in clear" wait_for 10 dns_query "$m2" 10.90.0.53 udp 192.0.2.53

# --- charon killed, then restarted
phase "charon killed, then restarted"
charon_stop "$m2" KILL
check  "charon killed on m2: the daemon says it is not loaded" wait_for 5 not_loaded "$m2"
refute "charon killed: require m2 cannot reach hand, with which it has no SA (fail closed)" tcp "$m2" 10.90.0.6 7000
check  "charon killed: the exempt DNS server is still reached" wait_for 10 dns_query "$m2" 10.90.0.53 udp 192.0.2.53
charon_start "$m2"
check  "charon restarted: Ringfence loads the connection again (no Ringfence restart)" wait_for 10 loaded "$m2"
check  "charon restarted: m2 -> hand works over ESP" to "$m2" 10.90.0.6
check  "charon restarted: ... with SAs" sas_with "$m2" 10.90.0.6
check  "m2's daemon is the one started at the beginning" kill -0 "${DAEMON[$m2]}"

# --- require-encryption
phase "require-encryption"
# The connection changes (AES-GCM only): Ringfence loads it and closes the SAs
# negotiated under the old one. m1 (boundary) offers ESP-null first and AES-GCM
# second, so m1 and m2 agree on AES-GCM; hand offers ESP-null only.
member "$m2" m2 require-encryption
check  "require-encryption: show state says so" test "$(mode_of "$m2")" = require-encryption
check  "require-encryption: m2's daemon closed the SAs of the old connection" \
    wait_for 10 grep -q "isolation connection changed: its IKE SAs are closed" "$WORK/$m2.log"
# (charon logs the child's proposals when the connection is installed.)
check  "require-encryption: charon's child now offers AES-GCM only" \
    wait_for 5 grep -qE "configured proposals: ESP:AES_GCM_16_256/NO_EXT_SEQ$" "$WORK/$m2.charon.log"
capture_start "$m2" eth0 encrypted
check  "require-encryption m2 -> m1: works over ESP" to "$m2" 10.90.0.1
check  "a connection with a marker" send_marker "$m1" 10.90.0.2 RINGFENCE-SECRET-MARKER
capture_stop encrypted
check  "ESP went on the wire between m1 and m2" test "$(wire encrypted esp)" -ge 2
check  "the marker is not readable in ESP: the SA encrypts" test "$(wire encrypted esp-marker RINGFENCE-SECRET-MARKER)" -eq 0
check  "... nor was it sent in clear" test "$(wire encrypted clear-marker RINGFENCE-SECRET-MARKER)" -eq 0
check  "show sas: the CHILD SAs with m1 use AES-GCM-256" child_sas all "$m2" 10.90.0.1 'c["encr-alg"] == "AES_GCM_16" and c["encr-keysize"] == "256"'
refute "require-encryption m2 -> hand (ESP-null only): no agreement, no connection" tcp "$m2" 10.90.0.6 7000
refute "... and no SA with hand" sas_with "$m2" 10.90.0.6

finish
