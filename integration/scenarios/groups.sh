#!/usr/bin/env bash
# Groups, authenticated bypass and group-gated rules on this machine's kernel,
# which has no ESP: no SA can exist here, so this tier shows what a packet in
# clear gets, with real packets, and that the table and `explain` agree on it
# (the VM tier is where a peer's SA would carry its group's reqid).
#
# fw (eth0 10.73.0.1/24, fd00:73::1/64) runs the daemon and a charon, in
# isolation mode request (clear inbound passes isolation, so the rules decide);
# lan holds the scanner's address (.2). Policy: a block on tcp/22, a bypass for
# the group scanners, tcp/5432 for the group sql-clients, tcp/443 for any peer
# over IPsec, tcp/8080 for everyone.
#
# - In clear from the scanner's address: tcp/22 is refused (the block, not the
#   bypass), 5432 and 443 are refused (the default), 8080 works; IPv6 alike.
# - The kernel's in_public: the bypass lookup, gated on the scanners' reqid,
#   before the block lookup; 5432 gated on sql-clients' reqid, 443 on
#   `meta ipsec exists`; input jumps to isolation_in before the profile.
# - The counters: the block rule counted the refused connections, the bypass
#   and gated rules nothing.
# - explain (daemon and offline) names the block for the clear packet and the
#   bypass rule for --group scanners, and the gated rules only for their SA.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../ipsec.sh"

fw=$(host fw); lan=$(host lan)
link "$fw" eth0 10.73.0.1 fd00:73::1 "$lan" eth0 10.73.0.2 fd00:73::2
for p in 22 443 5432 8080; do serve_tcp "$fw" $p; done

pki_ca ca "C=XX, O=Example, CN=Example CA"
pki_host fw ca 10.73.0.1
charon_start "$fw"

P="$WORK/policy"
mkdir "$P"
cat >"$P/10-groups.yaml" <<YAML
version: 1
isolation:
  mode: request
  secure-subnets: ["10.73.0.0/24", "fd00:73::/64"]
  identity: { ca: $PKI/ca.crt, certificate: $PKI/fw.crt, private-key: $PKI/fw.key }
  ike: { socket: "$(vici "$fw")" }
groups:
  scanners: { subject: "C=XX, O=Example, OU=Scanners, CN=*" }
  sql-clients: { subject: "C=XX, O=Example, OU=Finance, CN=*" }
rules:
  - { name: no-ssh, direction: in, action: block, protocol: tcp, local-ports: [22] }
  - { name: scanner-bypass, direction: in, action: bypass, remote-groups: [scanners] }
  - { name: sql-from-finance, direction: in, action: allow, protocol: tcp, local-ports: [5432], remote-groups: [sql-clients] }
  - { name: web-secure-only, direction: in, action: allow, protocol: tcp, local-ports: [443], require-secure: true }
  - { name: plain-web, direction: in, action: allow, protocol: tcp, local-ports: [8080] }
$ND_RULE
YAML
check  "ringfence check accepts the policy" "$RINGFENCE" check --policy-dir "$P"
daemon_start "$fw" "$P"

# --- Real packets in clear from the scanner's address ----------------------------
refute "clear tcp/22 from the scanner's address is refused (the block rule)" tcp "$lan" 10.73.0.1 22
refute "clear tcp/5432 (remote-groups: sql-clients) is refused" tcp "$lan" 10.73.0.1 5432
refute "clear tcp/443 (require-secure) is refused" tcp "$lan" 10.73.0.1 443
check  "clear tcp/8080 (a plain allow rule) works" tcp "$lan" 10.73.0.1 8080
refute "IPv6: clear tcp/22 is refused" tcp "$lan" fd00:73::1 22
refute "IPv6: clear tcp/443 is refused" tcp "$lan" fd00:73::1 443
check  "IPv6: clear tcp/8080 works" tcp "$lan" fd00:73::1 8080

# --- The table ------------------------------------------------------------------------
ip netns exec "$fw" nft list chain inet ringfence in_public >"$WORK/in_public"
# lookups LINE...: the chain's rules without their counters, one per line.
lookups() { grep -E '@|ipsec' "$WORK/in_public" | sed -E 's/^\s+//'; }
lookups >"$WORK/all-lookups"
# The core networking group's lookups come first, even before the bypass;
# after them, the policy's own, which the checks below are about.
core_first() { grep -q '@core_' "$1" && awk '/@core_/ { if (own) exit 1; next } { own = 1 }' "$1"; }
check  "in_public: the core networking lookups come first" core_first "$WORK/all-lookups"
grep -v '@core_' "$WORK/all-lookups" >"$WORK/lookups"
# reqid PATTERN: the reqid of the group connection for PATTERN (show policy).
reqid() { rf "$fw" show policy --json | jget "[c['reqid'] for c in v['group-connections'] if c['pattern'] == '$1'][0]"; }
scanners=$(reqid "C=XX, O=Example, OU=Scanners, CN=*")
finance=$(reqid "C=XX, O=Example, OU=Finance, CN=*")
check  "the group connections have reqids of Ringfence's (0x5247-0x5345)" \
    test "$scanners" -ge $((0x5247)) -a "$scanners" -le $((0x5345)) -a "$finance" -ge $((0x5247)) -a "$finance" -le $((0x5345))
check  "in_public: first the bypass, gated on the scanners' reqid" \
    grep -qE "^ipsec in reqid $scanners meta l4proto @in_bypass_all_grp_scanners_proto_ranges accept\$" <(head -1 "$WORK/lookups")
check  "in_public: then the bypass for the scanners whose SAs this host started (IPv4)" \
    grep -qE "^ipsec in reqid $((0x5246)) ip saddr @grp_scanners_peers4 meta l4proto @in_bypass_all_grp_scanners_proto_ranges accept\$" <(sed -n 2p "$WORK/lookups")
check  "in_public: ... (IPv6)" \
    grep -qE "^ipsec in reqid $((0x5246)) ip6 saddr @grp_scanners_peers6 meta l4proto @in_bypass_all_grp_scanners_proto_ranges accept\$" <(sed -n 3p "$WORK/lookups")
check  "in_public: then the block rule's lookup" grep -q '@in_block_all_proto_lport drop' <(sed -n 4p "$WORK/lookups")
check  "in_public: 5432 gated on sql-clients' reqid" \
    grep -qE "^ipsec in reqid $finance meta l4proto . th dport @in_allow_all_grp_sql-clients_proto_lport accept\$" "$WORK/lookups"
check  "in_public: 443 gated on any SA" \
    grep -qE '^meta ipsec exists meta l4proto . th dport @in_allow_all_secure_proto_lport accept$' "$WORK/lookups"
ip netns exec "$fw" nft list chain inet ringfence input >"$WORK/input"
check  "input: isolation_in comes before the profile chains" \
    python3 -c 'import sys; t = open(sys.argv[1]).read(); sys.exit(not (0 <= t.find("jump isolation_in") < t.find("goto in_public")))' "$WORK/input"

# --- Counters ---------------------------------------------------------------------------
rf "$fw" show rules --json >"$WORK/rules.json"
packets() { jget "[r['packets'] for r in v if r['name'] == '$1'][0]" <"$WORK/rules.json"; }
check  "the block rule counted the refused connections" test "$(packets no-ssh)" -gt 0
check  "the bypass rule counted nothing" test "$(packets scanner-bypass)" = 0
check  "the sql-clients rule counted nothing" test "$(packets sql-from-finance)" = 0
check  "the require-secure rule counted nothing" test "$(packets web-secure-only)" = 0
check  "show rules names the groups and require-secure" rf "$fw" show rules
said   "show rules: the bypass rule's groups" "scanner-bypass +in +bypass +any groups=scanners"
said   "show rules: the secure-only rule" "web-secure-only +in +allow +tcp lport=443 secure"

# --- explain, from the daemon and offline -----------------------------------------------
# ex PORT [ARGS...]: who decides a tcp connection from the scanner's address to PORT.
ex() {
    local port=$1; shift
    rf "$fw" explain --direction in --protocol tcp --remote 10.73.0.2 --local-port "$port" --interface eth0 "$@" --json |
        jget '(lambda d: d["kind"] + " " + d.get("name", d.get("profile", "")))(v["decided-by"]) + " " + v["verdict"]'
}
check  "explain, clear tcp/22: the block rule, as the kernel did" test "$(ex 22)" = "rule no-ssh block"
check  "explain, tcp/22 --group scanners: the bypass rule decides" test "$(ex 22 --group scanners)" = "rule scanner-bypass allow"
check  "explain, tcp/22 --group sql-clients: no bypass" test "$(ex 22 --group sql-clients)" = "rule no-ssh block"
check  "explain, tcp/22 --secure: no bypass" test "$(ex 22 --secure)" = "rule no-ssh block"
check  "explain, clear tcp/5432: the default, as the kernel did" test "$(ex 5432)" = "profile-default public block"
check  "explain, tcp/5432 --group sql-clients: its rule" test "$(ex 5432 --group sql-clients)" = "rule sql-from-finance allow"
check  "explain, clear tcp/443: the default" test "$(ex 443)" = "profile-default public block"
check  "explain, tcp/443 --secure: the require-secure rule" test "$(ex 443 --secure)" = "rule web-secure-only allow"
check  "explain --group scanners names the SA" \
    rf "$fw" explain --direction in --protocol tcp --remote 10.73.0.2 --local-port 22 --group scanners
said   "explain: the scanners' connection and reqid" "packet: +over IPsec, reqid $(printf %#x "$scanners") \(connection for C=XX, O=Example, OU=Scanners, CN=\*; groups scanners\)"
refute "explain --group of no group fails" \
    rf "$fw" explain --direction in --protocol tcp --remote 10.73.0.2 --local-port 22 --group nobody
said   "... and says which groups there are" '"nobody" is not a group of the policy \(groups: scanners, sql-clients\)'
check  "offline explain --policy-dir agrees on the bypass" "$RINGFENCE" explain --policy-dir "$P" \
    --direction in --protocol tcp --remote 10.73.0.2 --local-port 22 --group scanners
said   "offline: decided by the bypass rule" "decided by: rule scanner-bypass"

finish
