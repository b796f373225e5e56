#!/usr/bin/env bash
# Network location detection (profiles.domain.detect): fw has two links, eth0
# to the office, where dc serves https for dc.corp.test with a certificate of
# the domain CA and dnsmasq resolves the name, and wan0 to a café, where an
# attacker's dnsmasq answers dc.corp.test with its own address and serves a
# certificate of another CA. No interface pattern names either link.
#  - eth0 becomes domain by detection, wan0 public (the attacker's answer
#    fails the certificate check); domain's inbound default (allow) opens a
#    port on eth0 only, and `explain` says so.
#  - From domain, each of a wrong CA, an expired certificate, a key not
#    pinned and a server down makes eth0 public (two failed rounds, started
#    by an address added to eth0), with the reason as last-error; the right
#    server makes it domain again.
#  - A link flap: eth0 undecided (public) while down, domain again when up.
#  - Each link's own name servers: with resolv.conf naming only the café's
#    server (as dhclient leaves it when wan0's lease came last), eth0's probe
#    gets no answer and eth0 goes public; a dhclient lease of eth0 naming
#    dc's server makes it domain again, and the `dns` keyword still holds
#    resolv.conf's server only.
source "$(dirname "$0")/../lib.sh"

fw=$(host fw); dc=$(host dc); cafe=$(host cafe)
link "$fw" eth0 10.213.1.1 fd00:213:1::1 "$dc" eth0 10.213.1.2 fd00:213:1::2
link "$fw" wan0 10.213.2.1 fd00:213:2::1 "$cafe" eth0 10.213.2.2 fd00:213:2::2

PKI="$WORK/pki"; mkdir "$PKI"
pki_ca domain-ca "/CN=Corp Domain CA"
pki_ca rogue-ca "/CN=Rogue CA"
pki_leaf dc domain-ca "/CN=dc.corp.test" "DNS:dc.corp.test"
pki_leaf rogue rogue-ca "/CN=dc.corp.test" "DNS:dc.corp.test"
# The same name from the domain CA, with another key (not pinned).
pki_leaf dc-rekeyed domain-ca "/CN=dc.corp.test" "DNS:dc.corp.test"
# Expired: its validity ended a day before it began.
openssl x509 -req -in "$PKI/dc.csr" -CA "$PKI/domain-ca.pem" -CAkey "$PKI/domain-ca.key" -CAcreateserial \
    -days -1 -extfile "$PKI/dc.ext" -out "$PKI/dc-expired.pem" 2>/dev/null
cp "$PKI/dc.key" "$PKI/dc-expired.key"
pin() { openssl x509 -in "$PKI/$1.pem" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64; }

dc_dns "$dc" 10.213.1.2 10.213.1.2
dc_dns "$cafe" 10.213.2.2 10.213.2.2
https_off() {
    local pid; pid=$(cat "$WORK/https-$1.pid")
    kill "$pid"; wait_exit "$pid"
}
dc_https "$dc" dc
dc_https "$cafe" rogue

# Both servers in fw's resolv.conf: each link reaches only its own.
printf 'nameserver 10.213.1.2\nnameserver 10.213.2.2\n' >"$WORK/resolv.conf"
mkdir "$WORK/policy" "$WORK/leases"
location_policy "$WORK/policy/10-location.yaml" "pins: [\"$(pin dc)\"]" "timeout: 2s"
daemon_start "$fw" "$WORK/policy" --resolv-conf "$WORK/resolv.conf" --leases "$WORK/leases"
serve_tcp "$fw" 7000

# detected IF FIELD VALUE: FIELD of IF's entry in show profiles --json is VALUE
# (profile, source, or detection.state).
detected() {
    local expr="i['$2']"
    [ "$2" = state ] && expr="(i.get('detection') or {}).get('state')"
    rf "$fw" show profiles --json >"$WORK/p.json" &&
        jget "[$expr for i in v['host-interfaces'] if i['interface'] == '$1']" <"$WORK/p.json" | grep -qx "\[\"$3\"\]"
}
# last_error IF REGEX: IF's last detection error (printed) matches REGEX.
last_error() {
    local e
    e=$(rf "$fw" show profiles --json | jget "[str(i['detection']['last-error']) for i in v['host-interfaces'] if i['interface'] == '$1'][0]")
    echo "$e"
    grep -qE -- "$2" <<<"$e"
}
wait_state() { wait_for 10 detected "$1" state "$2"; }
in_set() { ip netns exec "$fw" nft -j list set inet ringfence "$2" | jget "[e for e in v['nftables'][1]['set'].get('elem', [])]" | grep -q "\"$1\""; }

check "eth0 is detected domain (dc's certificate chains to the domain CA)" wait_state eth0 domain
check "show profiles: eth0 is domain by detection" detected eth0 source detection
check "wan0 is judged not-domain" wait_state wan0 not-domain
check "wan0 is public" detected wan0 profile public
check "wan0's error: the attacker's address served another CA's certificate" last_error wan0 "10\.213\.2\.2.*UnknownIssuer"
check "the kernel's location_domain set holds eth0" in_set eth0 location_domain
refute "... and not wan0" in_set wan0 location_domain
human_detection() { rf "$fw" show profiles | grep -qE "detection: domain since .*dc.corp.test:443 answered in"; }
check "show profiles names the endpoint and its time" human_detection

# The ruleset follows: domain's inbound default allows tcp/7000 through eth0 only.
check "dc reaches tcp/7000 through eth0 (domain: inbound allow)" tcp "$dc" 10.213.1.1 7000
refute "the café cannot reach tcp/7000 through wan0 (public: inbound block)" tcp "$cafe" 10.213.2.1 7000
check "explain: a packet in on eth0 is in the domain profile, by detection" \
    rf "$fw" explain --direction in --protocol tcp --interface eth0 --local-port 7000
said "explain says domain (by detection) and allow" "profile: +domain \(by detection\)"
check "explain: on wan0, public" rf "$fw" explain --direction in --protocol tcp --interface wan0 --local-port 7000
said "explain says public and block" "verdict: +block"
check "show policy prints the detection and where it was set" rf "$fw" show policy
said "... its probe" "detect +dc.corp.test:443 +\(set at .*10-location.yaml:6:7\)"
stats_source() { rf "$fw" show stats --json | jget "[i['source'] for i in v['interfaces'] if i['interface'] == 'eth0']" | grep -qx '\["detection"\]'; }
check "show stats (the metrics' figures) says eth0 is domain by detection" stats_source

# recheck: an address added to eth0, an event detection re-probes on.
N=10
recheck() { N=$((N + 1)); ip -n "$fw" addr add "192.0.2.$N/32" dev eth0; }
# case NAME SERVER REGEX: dc serves SERVER's certificate; eth0 goes public with
# REGEX in its last error; then the right server makes it domain again.
case_public() {
    local name=$1 server=$2 regex=$3
    https_off "$dc"
    [ "$server" = none ] || dc_https "$dc" "$server"
    recheck
    check "$name: eth0 goes not-domain" wait_state eth0 not-domain
    check "$name: eth0 is public" detected eth0 profile public
    check "$name: last error says why" last_error eth0 "$regex"
    refute "$name: dc no longer reaches tcp/7000" tcp "$dc" 10.213.1.1 7000
    [ "$server" = none ] || https_off "$dc"
    dc_https "$dc" dc
    recheck
    check "$name: with dc's certificate again, eth0 is domain" wait_state eth0 domain
}
case_public "wrong CA" rogue "UnknownIssuer"
case_public "expired certificate" dc-expired "invalid peer certificate: Expired"
case_public "key not pinned" dc-rekeyed "matches no pin"
case_public "server down" none "cannot connect to 10\.213\.1\.2:443"
check "after the cases dc reaches tcp/7000 again" tcp "$dc" 10.213.1.1 7000

# A link flap: down is undecided (public) at once, up is judged anew.
ip -n "$fw" link set eth0 down
check "eth0 down: undecided" wait_state eth0 undecided
check "eth0 down: public, by detection" detected eth0 profile public
refute "eth0 down: out of the kernel's location_domain set" in_set eth0 location_domain
refute "eth0 down: not in location_not_domain either (public, whatever its name)" in_set eth0 location_not_domain
ip -n "$fw" link set eth0 up
check "eth0 up: domain again" wait_state eth0 domain
check "eth0 up: dc reaches tcp/7000" tcp "$dc" 10.213.1.1 7000

# Each link's own name servers. Files are replaced by a rename, as the
# clients do, so that no read sees one half-written.
printf 'nameserver 10.213.2.2\n' >"$WORK/resolv.conf.new"
mv "$WORK/resolv.conf.new" "$WORK/resolv.conf"
check "resolv.conf names the café's server only: eth0 goes not-domain" wait_state eth0 not-domain
check "... the DNS error names the server asked" last_error eth0 "cannot resolve dc\.corp\.test: 10\.213\.2\.2: "
# lease IF SERVER: a dhclient lease of IF from SERVER, which names it as DNS server.
lease() {
    printf 'lease {\n  interface "%s";\n  option dhcp-server-identifier %s;\n  option domain-name-servers %s;\n  expire epoch %s;\n}\n' \
        "$1" "$2" "$2" $(($(date +%s) + 3600))
}
{ lease eth0 10.213.1.2; lease wan0 10.213.2.2; } >"$WORK/leases/dhclient.leases.new"
mv "$WORK/leases/dhclient.leases.new" "$WORK/leases/dhclient.leases"
check "eth0's lease names dc's server: eth0 is domain again" wait_state eth0 domain
check "wan0 stays not-domain" detected wan0 state not-domain
# holds SET ADDR...: show sets gives SET exactly the addresses ADDR.
holds() {
    local set=$1; shift
    [ "$(rf "$fw" show sets --json | jget "' '.join(sorted(e['address'] for s in v if s['set'] == '$set' for e in s['elements']))")" = "$*" ]
}
check "the dns keyword holds resolv.conf's server only" holds dyn_dns4 10.213.2.2
check "... and dhcp both leases' servers" holds dyn_dhcp4 10.213.1.2 10.213.2.2

finish
