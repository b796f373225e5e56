#!/usr/bin/env bash
# Authenticated bypass and group-based rules (docs/isolation.md, "Groups"),
# ESP on the wire, in the VM. One switch (10.91.0.0/24), on it:
#   t  (.1)  the target: Ringfence, secure-request; blocks tcp/22; a bypass
#            rule for the group `scanners`; tcp/5432 only for `sql-clients`;
#            tcp/443 for any authenticated peer; tcp/8443 for `admins`
#            (CN=sc in any OU); tcp/7000 for everyone
#   sc (.2)  a scanner: a member whose certificate says OU=Scanners, CN=sc,
#            so in two groups: scanners and admins
#   m  (.3)  a member (OU=Members)
#   f  (.4)  a finance member (OU=Finance): a `sql-clients` peer
#   nm (.5)  a non-member: no IPsec
#   old (.6) a scanner whose certificate has expired (charon configured by hand)
#   rv (.7)  a scanner whose certificate the CA revoked (t has the CRL)
# sc, m, f and rv are Ringfence members in secure-request (fallback 5 s, above
# the emulated guest's IKE time, so that members never fall back to clear).
# Last, t contacts the scanner first: its SA is then of t's isolation
# connection, and the bypass follows the scanner's certificate all the same.
# Run: bash integration/vm/run.sh integration/vm/scenarios/groups.sh
source "$(dirname "$0")/../guest-lib.sh"
phase() { echo "-- [${SECONDS}s] $*"; }

sw=$(switch sw)
t=$(host t); sc=$(host sc); m=$(host m); f=$(host f); nm=$(host nm); old=$(host old); rv=$(host rv)
port "$sw" "$t" 10.91.0.1; port "$sw" "$sc" 10.91.0.2; port "$sw" "$m" 10.91.0.3; port "$sw" "$f" 10.91.0.4
port "$sw" "$nm" 10.91.0.5; port "$sw" "$old" 10.91.0.6; port "$sw" "$rv" 10.91.0.7
for p in 22 443 5432 7000 8443; do serve_tcp "$t" "$p"; done
serve_tcp "$sc" 22

pki_ca ca "C=XX, O=Example, CN=Example Root CA"
pki_host t ca; pki_host m ca
PKI_OU=Scanners pki_host sc ca
PKI_OU=Scanners pki_host rv ca
PKI_OU=Scanners PKI_EXPIRED=1 pki_host old ca
PKI_OU=Finance pki_host f ca
pki_revoke ca rv

# policy NS NAME [YAML]: NS's policy: isolation in secure-request with NAME's
# certificate, then YAML (rules, groups); applied if its daemon runs.
policy() {
    local ns=$1 name=$2
    member_policy "$ns" "$name" <<YAML
version: 1
isolation:
  mode: secure-request
  secure-subnets: ["10.91.0.0/24"]
  identity: { ca: $PKI/ca.crt, certificate: $PKI/$name.crt, private-key: $PKI/$name.key, crl: $PKI/ca.crl }
  ike: { socket: "$(vici "$ns")" }
  fallback: 5s
${3:-}
YAML
}
# The target's policy; $1 is the subject pattern of `scanners`.
target_policy() {
    policy "$t" t "groups:
  scanners: { subject: \"$1\" }
  sql-clients: { subject: \"C=XX, O=Example, OU=Finance, CN=*\" }
  admins: { subject: \"C=XX, O=Example, OU=*, CN=sc\" }
rules:
  - { name: no-ssh, direction: in, action: block, protocol: tcp, local-ports: [22] }
  - { name: scanner-bypass, direction: in, action: bypass, remote-groups: [scanners] }
  - { name: sql-from-finance, direction: in, action: allow, protocol: tcp, local-ports: [5432], remote-groups: [sql-clients] }
  - { name: web-secure-only, direction: in, action: allow, protocol: tcp, local-ports: [443], require-secure: true }
  - { name: admin-console, direction: in, action: allow, protocol: tcp, local-ports: [8443], remote-groups: [admins] }
  - { name: service, direction: in, action: allow, protocol: tcp, local-ports: [7000] }"
}

phase "Ringfence on every member"
charon_start "$t"
target_policy "C=XX, O=Example, OU=Scanners, CN=*"
check "t: its connections are loaded into its charon" wait_for 10 loaded "$t"
for pair in "$sc sc" "$m m" "$f f" "$rv rv"; do
    set -- $pair
    charon_start "$1"
    policy "$1" "$2"
    check "$2: its connection is loaded" wait_for 10 loaded "$1"
done
# (Ringfence refuses a host certificate past its dates: old is configured by hand.)
trap_conf old 10.91.0.0/24 | swanctl_dir "$old" old ca
charon_start "$old"
check "old: its swanctl configuration loads" sw_load "$old"

# reach FROM PORT: a TCP connection to t gets "ok" within 20 s (the first SYNs
# may be dropped while IKE runs: secure-request drops new clear connections).
reach() { wait_for 20 tcp "$1" 10.91.0.1 "$2"; }
# reqid_from PEER, spi_in PEER: the reqid and SPI of t's inbound ESP SA from PEER.
reqid_from() { esp_sas "$t" | awk -v p="$1" '$3 == p { print $2; exit }'; }
spi_in() { esp_sas "$t" | awk -v p="$1" '$3 == p { print $1; exit }'; }
# gone_spi SPI: t has no SA with that SPI.
gone_spi() { ! esp_sas "$t" | grep -q "^$1 "; }

phase "The scanner bypasses the block rule"
check  "scanner -> t:7000 (allowed to all): works, over ESP" reach "$sc" 7000
check  "scanner -> t:22 (blocked, scanner bypass): works" reach "$sc" 22
check  "t's SA with the scanner has a group reqid, not the members' 21062" \
    test "$(reqid_from 10.91.0.2)" -gt 21062
check  "scanner -> t:5432 (bypass allows every port): works" reach "$sc" 5432
check  "scanner -> t:8443 (admins only; it is in both groups): works" reach "$sc" 8443
check  "t: show sas --json" rf "$t" show sas --json
cp "$WORK/last.out" "$WORK/sas.json"
check  "show sas: the scanner's SA is in the groups admins and scanners" python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
sas = [s for s in v["ike-sas"] if s["remote-host"] == "10.91.0.2"]
assert sas and all(s["groups"] == ["admins", "scanners"] for s in sas), sas' "$WORK/sas.json"

phase "A member, the finance member, a non-member"
check  "member -> t:7000: works over ESP" reach "$m" 7000
check  "... the member and t have SAs, with the members' reqid" test "$(reqid_from 10.91.0.3)" = 21062
refute "member -> t:22 (blocked; not a scanner): refused" tcp "$m" 10.91.0.1 22
refute "member -> t:5432 (sql-clients only): refused" tcp "$m" 10.91.0.1 5432
refute "member -> t:8443 (admins only): refused" tcp "$m" 10.91.0.1 8443
check  "member -> t:443 (require-secure: any authenticated peer): works" reach "$m" 443
check  "finance -> t:5432 (sql-clients): works" reach "$f" 5432
refute "finance -> t:22: refused" tcp "$f" 10.91.0.1 22
refute "finance -> t:8443: refused" tcp "$f" 10.91.0.1 8443
refute "non-member -> t:22: refused" tcp "$nm" 10.91.0.1 22
refute "non-member -> t:5432: refused" tcp "$nm" 10.91.0.1 5432
refute "non-member -> t:443 (clear, not secure): refused" tcp "$nm" 10.91.0.1 443

phase "Certificates that must not pass"
refute "scanner with an expired certificate -> t:22: refused" wait_for 8 tcp "$old" 10.91.0.1 22
check  "... and it has no SA with t" test -z "$(spi_in 10.91.0.6)"
check  "t's charon refused the expired certificate" grep -qE "certificate invalid \(valid from .* to .*\)" "$WORK/$t.charon.log"
refute "scanner whose certificate is revoked -> t:22: refused" wait_for 8 tcp "$rv" 10.91.0.1 22
check  "... and it has no SA with t" test -z "$(spi_in 10.91.0.7)"
check  "t's charon found the certificate revoked (the CRL Ringfence loaded)" grep -qi "revoked" "$WORK/$t.charon.log"

phase "Group changed on reload"
member_spi=$(spi_in 10.91.0.3)
finance_spi=$(spi_in 10.91.0.4)
scanner_spi=$(spi_in 10.91.0.2)
check  "before: the member's, the finance member's and the scanner's SAs are up" \
    test -n "$member_spi" -a -n "$finance_spi" -a -n "$scanner_spi"
target_policy "C=XX, O=Example, OU=Auditors, CN=*"
check  "t closed the scanner's SA (its group's connection changed)" wait_for 10 gone_spi "$scanner_spi"
refute "the scanner, no longer in the group, loses tcp/22" wait_for 8 tcp "$sc" 10.91.0.1 22
check  "the member's SA is untouched (same SPI)" test "$(spi_in 10.91.0.3)" = "$member_spi"
check  "the finance member's SA (another group's) is untouched" test "$(spi_in 10.91.0.4)" = "$finance_spi"
check  "the scanner, still in admins, reaches t:8443" reach "$sc" 8443
refute "... but not tcp/22" tcp "$sc" 10.91.0.1 22

phase "The target contacts the scanner first"
target_policy "C=XX, O=Example, OU=Scanners, CN=*"
check  "the scanner is in the group again (t closed its admins-only SA): t:22 works" reach "$sc" 22
scanner_spi=$(spi_in 10.91.0.2)
sw "$sc" --terminate --ike ringfence >/dev/null
check  "the scanner closed its SAs with t" wait_for 10 gone_spi "$scanner_spi"
# in_peers GROUP ADDR: t's peer set of GROUP holds ADDR.
in_peers() { ip netns exec "$t" nft -j list set inet ringfence "grp_$1_peers4" | grep -q "\"$2\""; }
refute "... and t's peer sets have no scanner" in_peers scanners 10.91.0.2
check  "t -> scanner:22 (t negotiates, one socket): works" \
    sh -c "ip netns exec $t timeout 12 socat -T2 - TCP:10.91.0.2:22,connect-timeout=10 </dev/null | grep -qx ok"
check  "t's SA with the scanner has the members' reqid 21062 (t's isolation connection)" \
    test "$(reqid_from 10.91.0.2)" = 21062
scanner_in_groups() { in_peers scanners 10.91.0.2 && in_peers admins 10.91.0.2; }
check  "t put the scanner in its groups' peer sets (scanners, admins)" wait_for 5 scanner_in_groups
check  "scanner -> t:22 (blocked, scanner bypass over t's SA; one socket): works" tcp "$sc" 10.91.0.1 22
check  "scanner -> t:8443 (admins only): works" tcp "$sc" 10.91.0.1 8443
refute "member -> t:22 (its SA is of the same reqid; not a scanner): refused" tcp "$m" 10.91.0.1 22
check  "t: show sas --json" rf "$t" show sas --json
cp "$WORK/last.out" "$WORK/sas.json"
check  "show sas: t's own SA with the scanner is in the groups admins and scanners" python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
sas = [s for s in v["ike-sas"] if s["remote-host"] == "10.91.0.2"]
assert sas and all(s["initiator"] == "yes" and s["groups"] == ["admins", "scanners"] for s in sas), sas' "$WORK/sas.json"
check  "t: a forced apply replaces its table" rf "$t" apply
check  "... the new table holds the scanner from its first packet" in_peers scanners 10.91.0.2
check  "scanner -> t:22 after the reload: works" tcp "$sc" 10.91.0.1 22

phase "A clear packet from the scanner's address"
# The scanner leaves the wire; the non-member takes its address and speaks in clear.
ip -n "$sc" link set eth0 down
ip -n "$nm" addr add 10.91.0.2/24 dev eth0
refute "a clear connection from the scanner's address to t:22: refused" \
    sh -c "ip netns exec $nm timeout 5 socat -T2 - TCP:10.91.0.1:22,bind=10.91.0.2,connect-timeout=2 </dev/null | grep -qx ok"

finish
