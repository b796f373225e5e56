#!/usr/bin/env bash
# The `dhcp` and `wins` keywords, with `dns`, `default-gateway` and
# `local-subnet`, on a host configured by a real DHCP client. Four hosts on one
# bridge (10.67.0.0/24): fw gets its address from ISC dhclient; srv1 (.2) runs
# dnsmasq as DHCP and DNS server (router .2, DNS .2, WINS .4, renewal after 4 s
# and rebinding after 6 s); srv2 (.3) is a second dnsmasq, started later;
# other (.4) runs a DNS server fw is not told about, and serves the WINS port.
# dhclient's script only sets the address and default route and writes a
# resolv.conf in $WORK (never the host's /etc/resolv.conf).
#
# fw blocks outbound by default and allows tcp 8067 to `dhcp`, 8137 to `wins`,
# 8001 to `default-gateway`, 8002 to `local-subnet` and DNS to `dns`. The sets
# and real connections follow: the lease from srv1, then srv1 gone and the
# lease rebound by srv2; smb.conf's wins server; a lease file cut in half and a
# lease directory removed (last good leases kept, one warning); a lease that
# expires with no file event. Only set elements change.
source "$(dirname "$0")/../lib.sh"
command -v dhclient >/dev/null || { echo "$SCENARIO: dhclient is missing (run integration/install-deps.sh)"; exit 1; }

sw=$(switch sw); fw=$(host fw); srv1=$(host srv1); srv2=$(host srv2); other=$(host other)
port "$sw" "$fw"; port "$sw" "$srv1" 10.67.0.2; port "$sw" "$srv2" 10.67.0.3; port "$sw" "$other" 10.67.0.4

# dnsmasq_dhcp NS N: DHCP and DNS server 10.67.0.N, itself the router and the
# DNS server it hands out, WINS server 10.67.0.4; answers test.ringfence with
# 192.0.2.N. T1 4 s and T2 6 s make dhclient renew and rebind within seconds
# (the lease itself lasts dnsmasq's minimum, 2 minutes).
dnsmasq_dhcp() {
    bg "$1" dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts --log-facility=- \
        --interface=eth0 --bind-interfaces --dhcp-authoritative \
        --dhcp-range=10.67.0.50,10.67.0.60,255.255.255.0,2m --dhcp-leasefile="$WORK/dnsmasq$2.leases" \
        --dhcp-option=option:router,10.67.0."$2" --dhcp-option=option:dns-server,10.67.0."$2" \
        --dhcp-option=option:netbios-ns,10.67.0.4 --dhcp-option=58,4 --dhcp-option=59,6 \
        --address=/test.ringfence/192.0.2."$2" --pid-file="$WORK/dnsmasq$2.pid"
    SERVER_PID=${_PIDS[-1]}
    wait_port "$1" 53 udp
}
dnsmasq_dhcp "$srv1" 2
SRV1_PID=$SERVER_PID
bg "$other" dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts --log-facility=- \
    --listen-address=10.67.0.4 --bind-interfaces --address=/test.ringfence/192.0.2.4 --pid-file="$WORK/dnsmasq4.pid"
wait_port "$other" 53 udp
for ns in "$srv1" "$srv2" "$other"; do
    for p in 8067 8137 8001 8002 8999; do serve_tcp "$ns" $p; done
done

# The DHCP client: dhclient with a script of ours.
L="$WORK/leases"; R="$WORK/resolv.conf"; S="$WORK/smb.conf"
mkdir "$L"
cat >"$WORK/dhclient.conf" <<'CONF'
request subnet-mask, routers, domain-name-servers, netbios-name-servers;
initial-interval 1;
CONF
cat >"$WORK/dhclient-script" <<SCRIPT
#!/bin/sh
# dhclient runs this with \$reason and the lease's options in the environment.
case "\$reason" in
PREINIT) ip link set "\$interface" up ;;
BOUND|RENEW|REBIND|REBOOT)
    [ "\$old_ip_address" = "\$new_ip_address" ] || ip addr flush dev "\$interface"
    ip addr replace "\$new_ip_address/\$new_subnet_mask" dev "\$interface"
    ip route replace default via "\${new_routers%% *}" dev "\$interface"
    for s in \$new_domain_name_servers; do echo "nameserver \$s"; done >"$R.new" && mv -f "$R.new" "$R" ;;
EXPIRE|FAIL|RELEASE|STOP) ip addr flush dev "\$interface" ;;
esac
exit 0
SCRIPT
chmod +x "$WORK/dhclient-script"
dhclient_start() {
    bg "$fw" dhclient -4 -d -v -cf "$WORK/dhclient.conf" -lf "$L/dhclient.eth0.leases" -pf "$WORK/dhclient.pid" \
        -sf "$WORK/dhclient-script" eth0
    DHCLIENT_PID=${_PIDS[-1]}
}
# Before the daemon starts: resolv.conf must exist for `dns`.
echo "nameserver 10.67.0.99" >"$R"

P="$WORK/policy"
mkdir "$P"
cat >"$P/10-dhcp.yaml" <<'YAML'
version: 1
profiles: { public: { outbound: block } }
rules:
  - { name: dhcp-client-out, direction: out, action: allow, protocol: udp, local-ports: [68], remote-ports: [67] }
  - { name: dhcp-client-in, direction: in, action: allow, protocol: udp, local-ports: [68], remote-ports: [67] }
  - { name: dns, direction: out, action: allow, protocol: udp, remote-ports: [53], remote-addresses: [dns] }
  - { name: to-dhcp, direction: out, action: allow, protocol: tcp, remote-ports: [8067], remote-addresses: [dhcp] }
  - { name: to-wins, direction: out, action: allow, protocol: tcp, remote-ports: [8137], remote-addresses: [wins] }
  - { name: to-gateway, direction: out, action: allow, protocol: tcp, remote-ports: [8001], remote-addresses: [default-gateway] }
  - { name: to-lan, direction: out, action: allow, protocol: tcp, remote-ports: [8002], remote-addresses: [local-subnet] }
YAML
daemon_start "$fw" "$P" --resolv-conf "$R" --leases "$L" --smb-conf "$S"

# --- Helpers ------------------------------------------------------------------
# sets KEYWORD=ADDR[,ADDR...] ...: for each keyword, show sets --json and the
# kernel's IPv4 set hold exactly these addresses (local-subnet: prefixes on
# eth0; an empty list is an empty set), and the IPv6 set is empty.
cat >"$WORK/sets.py" <<'PY'
import json, subprocess, sys
from nftjson import addr_range as rng
ns, shown_file = sys.argv[1], sys.argv[2]
shown = {s["set"]: s for s in json.load(open(shown_file))}
problems = []
for arg in sys.argv[3:]:
    keyword, _, want = arg.partition("=")
    want = sorted(rng(a) for a in want.split(",") if a)
    for v, expect in (("4", want), ("6", [])):
        name = "dyn_" + keyword.replace("-", "_") + v
        s = shown[name]
        got = sorted(rng(e["address"]) for e in s["elements"])
        if sorted(set(got)) != expect:
            problems.append("show sets %s: %s, expected %s" % (name, [e["address"] for e in s["elements"]], want))
        out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "set", "inet", "ringfence", name],
                             capture_output=True, text=True, check=True).stdout
        kernel = sorted(rng(e) for o in json.loads(out)["nftables"] for e in o.get("set", {}).get("elem", []))
        if kernel != expect:
            problems.append("kernel set %s: %s, expected %s" % (name, kernel, expect))
if problems:
    sys.exit("\n".join(problems))
print("sets as expected: " + " ".join(sys.argv[3:]))
PY
sets() { rf "$fw" show sets --json >"$WORK/sets.json" && python3 "$WORK/sets.py" "$fw" "$WORK/sets.json" "$@"; }
# (30 s: dhclient's retransmissions back off, doubling from 1 s, and a busy machine
# adds to them; a wait that is met returns at once.)
settle() { local d=$1; shift; wait_for 30 "$@" || true; check "$d" "$@"; }
# to HOST PORT: a tcp connection from fw to 10.67.0.HOST:PORT gets its answer.
to() { tcp "$fw" "10.67.0.$1" "$2"; }
source_of() { rf "$fw" show sets --json | jget "[e['source'] for s in v if s['set'] == '$1' for e in s['elements'] if e['address'] == '$2'][0]"; }
warned() { grep -qF "$1" "$WORK/$fw.log"; }
addr_of_fw() { ip -n "$fw" -4 -o addr show dev eth0 | awk '{print $4}'; }

# --- The lease from srv1 ----------------------------------------------------------
check  "before any lease: the dhcp and wins sets are empty" sets dhcp= wins=
dhclient_start
settle "dhclient got a lease from srv1 (fw has an address in 10.67.0.50-60)" grep -q "10.67.0.2" "$L/dhclient.eth0.leases"
wait_for 10 test -n "$(addr_of_fw)" || true
check  "fw's eth0 has the leased address $(addr_of_fw)" test -n "$(addr_of_fw)"
settle "lease from srv1: dhcp=srv1, wins=.4, dns=srv1, default-gateway=srv1, local-subnet=10.67.0.0/24" \
    sets dhcp=10.67.0.2 wins=10.67.0.4 dns=10.67.0.2 default-gateway=10.67.0.2 local-subnet=10.67.0.0/24
check  "show sets names the lease file as the source of the dhcp server" \
    test "$(source_of dyn_dhcp4 10.67.0.2)" = "server of the lease of eth0 in $L/dhclient.eth0.leases"
check  "show sets names option 44 of the lease as the source of the wins server" \
    test "$(source_of dyn_wins4 10.67.0.4)" = "WINS server (option 44) of the lease of eth0 in $L/dhclient.eth0.leases"
check  "human show sets lists the dhcp server and its lease" rf "$fw" show sets
said   "human show sets: the dhcp server and its lease file" "10\.67\.0\.2 +<- server of the lease of eth0 in $L"
check  "tcp to srv1:8067 (dhcp) passes" to 2 8067
refute "tcp to other:8067 (not dhcp) is blocked" to 4 8067
refute "tcp to srv2:8067 (not dhcp yet) is blocked" to 3 8067
check  "tcp to other:8137 (wins) passes" to 4 8137
refute "tcp to srv1:8137 (not wins) is blocked" to 2 8137
check  "tcp to srv1:8001 (default-gateway) passes" to 2 8001
refute "tcp to other:8001 (not the gateway) is blocked" to 4 8001
check  "tcp to other:8002 (local-subnet) passes" to 4 8002
refute "tcp to other:8999 (no rule) is blocked" to 4 8999
check  "a DNS query to srv1 (dns, from the lease) is answered" dns_query "$fw" 10.67.0.2 udp 192.0.2.2
refute "a DNS query to other (a DNS server, but not dns) is blocked" dns_query "$fw" 10.67.0.4 udp 192.0.2.4
check  "other answers DNS queries from its own host (the refusal above is the firewall)" \
    dns_query "$other" 10.67.0.4 udp 192.0.2.4
table_rules "$fw" >"$WORK/rules.0"
gen0=$(state "$fw" generation)

# --- srv1 gone, the lease rebound by srv2 -------------------------------------------
kill "$SRV1_PID"
dnsmasq_dhcp "$srv2" 3
# dhclient renews with srv1 at T1 (4 s, no answer), then rebinds by broadcast at
# T2 (6 s), which srv2 (authoritative) acknowledges.
settle "the lease was rebound by srv2 (its server identifier is in the lease file)" \
    grep -q "dhcp-server-identifier 10.67.0.3" "$L/dhclient.eth0.leases"
check  "dhclient kept running (this was a rebinding, not a new client)" kill -0 "$DHCLIENT_PID"
settle "rebound by srv2: dhcp=srv2, dns=srv2, default-gateway=srv2" \
    sets dhcp=10.67.0.3 wins=10.67.0.4 dns=10.67.0.3 default-gateway=10.67.0.3 local-subnet=10.67.0.0/24
check  "rebound: tcp to srv2:8067 (dhcp) passes" to 3 8067
refute "rebound: tcp to srv1:8067 (no longer dhcp) is blocked" to 2 8067
check  "rebound: a DNS query to srv2 is answered" dns_query "$fw" 10.67.0.3 udp 192.0.2.3
check  "rebound: tcp to srv2:8001 (the new gateway) passes" to 3 8001
refute "rebound: tcp to srv1:8001 (the old gateway) is blocked" to 2 8001
table_rules "$fw" >"$WORK/rules.1"
check  "rebound: the table's chains, rules and handles are unchanged (elements aside)" diff "$WORK/rules.0" "$WORK/rules.1"
check  "rebound: the generation is unchanged (no table replacement)" test "$(state "$fw" generation)" = "$gen0"

# --- smb.conf -------------------------------------------------------------------
printf '[global]\n   workgroup = RINGFENCE\n   wins server = 10.67.0.2\n' >"$S"
settle "smb.conf's wins server joins the lease's" sets wins=10.67.0.4,10.67.0.2
check  "show sets names smb.conf" test "$(source_of dyn_wins4 10.67.0.2)" = "wins server in $S"
check  "smb.conf: tcp to srv1:8137 (now wins) passes" to 2 8137
rm "$S"
settle "smb.conf removed: its wins server is gone" sets wins=10.67.0.4

# --- Reliability: a lease file cut in half, a lease directory removed -----------------
kill "$DHCLIENT_PID"
wait_exit "$DHCLIENT_PID" || true
cp "$L/dhclient.eth0.leases" "$WORK/whole.leases"
head -c "$(($(stat -c %s "$WORK/whole.leases") * 2 / 3))" "$WORK/whole.leases" >"$L/dhclient.eth0.leases"
settle "cut in half: one warning names the file" warned "$L/dhclient.eth0.leases: keeping its last good leases"
check  "cut in half: the sets keep srv2" sets dhcp=10.67.0.3 wins=10.67.0.4
check  "cut in half: tcp to srv2:8067 still passes" to 3 8067
cut_warnings() { grep -cF "$L/dhclient.eth0.leases: keeping its last good leases" "$WORK/$fw.log"; }
n=$(cut_warnings)
touch "$L/dhclient.eth0.leases"
# The barrier: a file that cannot be read, written after the touch, is
# warned about once the daemon has read the directory again.
echo garbage >"$L/marker.leases"
settle "cut in half, touched again: the daemon has read the directory again" warned "$L/marker.leases: keeping its last good leases"
check  "cut in half, touched again: no new warning for the same state" test "$(cut_warnings)" = "$n"
rm "$L/marker.leases"
mv "$L" "$WORK/leases.gone"
settle "lease directory removed: a warning names it" warned "$L: keeping the leases last read there"
check  "lease directory removed: the sets keep srv2" sets dhcp=10.67.0.3
check  "lease directory removed: the daemon answers" rf "$fw" show state
mkdir "$L"
settle "lease directory back, empty: the lease is gone" sets dhcp= wins=
refute "no lease: tcp to srv2:8067 is blocked" to 3 8067

# --- A lease that expires: no file event, the set empties at the expiry ---------------
expire=$(($(date +%s) + 3))
sed -E "s/^( *expire ).*;/\1epoch $expire;/" "$WORK/whole.leases" >"$L/dhclient.eth0.leases"
settle "a lease expiring in 3 s: dhcp=srv2" sets dhcp=10.67.0.3
wait_for 8 test "$(date +%s)" -gt "$expire" || true
settle "past its expiry: the dhcp and wins sets are empty" sets dhcp= wins=
check  "the daemon is alive" kill -0 "$DAEMON_PID"
table_rules "$fw" >"$WORK/rules.2"
check  "at the end: chains, rules and handles as at start" diff "$WORK/rules.0" "$WORK/rules.2"

finish
