#!/usr/bin/env bash
# Dynamic exceptions: `local-subnet` and `default-gateway` follow the host's
# live addresses and routes. A real network: the firewall host fw has eth0 on a
# switched LAN (10.210.0.0/24, fd00:210::/64) with a router rt, a second router
# gw2, a neighbour nb and a host nb2 of another subnet; behind rt a host far on
# 10.220.0.0/24; and a second link eth1 to b (10.211.0.0/24, fd00:211::/64).
# The sets hold the right elements (show sets and the kernel's set agree),
# traffic follows them, and they follow route and address changes, a default
# route in another table, multipath routes, a burst of 1,000 address changes
# and an interface rename, all without touching the table's chains and rules.
source "$(dirname "$0")/../lib.sh"

fw=$(host fw); sw=$(host sw); rt=$(host rt); gw2=$(host gw2); nb=$(host nb)
nb2=$(host nb2); far=$(host far); b=$(host b)

# The LAN: a bridge in its own namespace, and plug NS IF ADDR/LEN [ADDR6/LEN]
# connects NS's IF to it.
ip -n "$sw" link add br0 type bridge mcast_snooping 0
ip -n "$sw" link set br0 up
_port=0
plug() {
    _port=$((_port + 1))
    ip link add "$2" netns "$1" type veth peer name "p$_port" netns "$sw"
    ip -n "$sw" link set "p$_port" master br0
    ip -n "$sw" link set "p$_port" up
    ip -n "$1" addr add "$3" dev "$2"
    [ -z "${4:-}" ] || ip -n "$1" addr add "$4" dev "$2" nodad
    ip -n "$1" link set "$2" up
}
plug "$fw"  eth0 10.210.0.1/24   fd00:210::1/64
plug "$rt"  eth0 10.210.0.254/24 fd00:210::fe/64
plug "$gw2" eth0 10.210.0.253/24 fd00:210::fd/64
plug "$nb"  eth0 10.210.0.10/24  fd00:210::10/64
plug "$nb2" eth0 10.230.0.5/24
link "$fw" eth1 10.211.0.1 fd00:211::1 "$b" eth0 10.211.0.2 fd00:211::2
link "$rt" eth1 10.220.0.1 fd00:220::1 "$far" eth0 10.220.0.2 fd00:220::2
ip netns exec "$rt" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
ip -n "$far" route add default via 10.220.0.1
ip -n "$far" -6 route add default via fd00:220::1
ip -n "$fw" route add default via 10.210.0.254
ip -n "$fw" -6 route add default via fd00:210::fe
# nb2 is on 10.230.0.0/24 only; it reaches fw's 10.210.0.1 on the link, and fw
# answers it on the link whether or not fw has an address on its subnet.
ip -n "$nb2" route add 10.210.0.0/24 dev eth0
ip -n "$fw" route add 10.230.0.0/24 dev eth0 metric 50
# b may reach fw's eth0 address through eth1 (for local-addresses: local-subnet).
ip -n "$b" route add 10.210.0.0/24 via 10.211.0.1

P="$WORK/policy"
mkdir "$P"
cat >"$P/10-dynamic.yaml" <<'YAML'
version: 1
rules:
  - { name: lan-web, direction: in, action: allow, protocol: tcp, local-ports: [8080], remote-addresses: [local-subnet] }
  - { name: gw-udp, direction: in, action: allow, protocol: udp, local-ports: [9999], remote-addresses: [default-gateway] }
  - { name: lan-local, direction: in, action: allow, protocol: tcp, local-ports: [8082], local-addresses: [local-subnet] }
  - { name: open-tcp, direction: in, action: allow, protocol: tcp, local-ports: [8081] }
  - { name: open-udp, direction: in, action: allow, protocol: udp, local-ports: [9998] }
YAML
echo "$ND_RULE" >>"$P/10-dynamic.yaml"
daemon_start "$fw" "$P"
for p in 8080 8081 8082; do serve_tcp "$fw" $p; done
serve_udp "$fw" 9999
serve_udp "$fw" 9998

# The table as it is before any change: chains, rules and sets with their
# handles, without set elements and counters.
shape() { table_rules "$fw"; }
chain_text() { ip netns exec "$fw" nft -a list chain inet ringfence in_public | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/'; }
shape >"$WORK/shape.0"
chain_text >"$WORK/chain.0"
gen0=$(state "$fw" generation)

# --- Comparing a dynamic set with what it should hold ------------------------
# dyn SET MODE [ENTRY...]: `show sets --json` and the kernel's set SET compared
# with ENTRY... ("IFACE ADDR <- SOURCE" or "ADDR <- SOURCE"). MODE: exact (show
# sets lists exactly these entries and the kernel's set covers exactly their
# addresses), has (these are among them), lacks (none of these), ipaddr (exactly
# the prefixes of fw's addresses per `ip -j addr`).
cat >"$WORK/dyn.py" <<'PY'
import ipaddress, json, sys
from nftjson import addr_range as rng
sets_file, kset_file, addr_file, name, mode, *want = sys.argv[1:]
def entry(line):
    addr, source = line.split(" <- ", 1)
    iface, _, a = addr.rpartition(" ")
    return (iface or None, *rng(a), source)
def show(e):
    a = ipaddress.IPv4Address if name.endswith("4") else ipaddress.IPv6Address
    return "%s%s-%s <- %s" % (e[0] + " " if e[0] else "", a(e[1]), a(e[2]), e[3])
def merged(entries):
    out = {}
    for iface, lo, hi in sorted(entries, key=lambda e: (e[0] or "", e[1], e[2])):
        spans = out.setdefault(iface, [])
        if spans and lo <= spans[-1][1] + 1:
            spans[-1][1] = max(spans[-1][1], hi)
        else:
            spans.append([lo, hi])
    return out
shown = [s for s in json.load(open(sets_file)) if s["set"] == name]
if len(shown) != 1:
    sys.exit("show sets has no set %s" % name)
if not shown[0]["in-table"]:
    sys.exit("show sets says %s is not in the table" % name)
have = {(e["interface"], *rng(e["address"]), e["source"]) for e in shown[0]["elements"]}
kernel = []
for o in json.load(open(kset_file))["nftables"]:
    for el in o.get("set", {}).get("elem", []):
        v = el["elem"]["val"] if isinstance(el, dict) and "elem" in el else el
        iface, a = (v["concat"][0], v["concat"][1]) if isinstance(v, dict) and "concat" in v else (None, v)
        kernel.append((iface, *rng(a)))
if mode == "ipaddr":
    v6 = name.endswith("6")
    want = set()
    for link in json.load(open(addr_file)):
        if link["ifname"] == "lo":
            continue
        for a in link.get("addr_info", []):
            if (a["family"] == "inet6") != v6:
                continue
            addr = a.get("address", a["local"])
            want.add((link["ifname"], *rng("%s/%d" % (addr, a["prefixlen"])), "address %s/%d on %s" % (addr, a["prefixlen"], link["ifname"])))
else:
    want = {entry(w) for w in want}
problems = []
if mode in ("exact", "ipaddr"):
    problems += ["show sets lacks: " + show(e) for e in sorted(want - have, key=str)]
    problems += ["show sets has extra: " + show(e) for e in sorted(have - want, key=str)]
    if merged(kernel) != merged(e[:3] for e in want):
        a = ipaddress.IPv4Address if name.endswith("4") else ipaddress.IPv6Address
        spans = lambda m: "; ".join("%s %s" % (i, ", ".join("%s-%s" % (a(lo), a(hi)) for lo, hi in v)) for i, v in sorted(m.items(), key=lambda x: str(x[0])))
        problems.append("the kernel's set covers: %s\nexpected: %s" % (spans(merged(kernel)), spans(merged(e[:3] for e in want))))
elif mode == "has":
    problems += ["show sets lacks: " + show(e) for e in sorted(want - have, key=str)]
    k = merged(kernel)
    for e in want:
        if not any(lo <= e[1] and e[2] <= hi for lo, hi in k.get(e[0], [])):
            problems.append("the kernel's set lacks: " + show(e))
elif mode == "lacks":
    problems += ["show sets still has: " + show(e) for e in sorted(want & have, key=str)]
    for e in want:
        if any(i == e[0] and lo <= e[2] and e[1] <= hi for i, lo, hi in kernel):
            problems.append("the kernel's set still has: " + show(e))
if problems:
    sys.exit("\n".join(problems[:20]) + ("\n(%d problems)" % len(problems) if len(problems) > 20 else ""))
print("%s: %d elements as expected" % (name, len(have)))
PY
dyn() {
    local name=$1; shift
    rf "$fw" show sets --json >"$WORK/sets.json" || return 1
    ip netns exec "$fw" nft -j list set inet ringfence "$name" >"$WORK/kset.json" || return 1
    ip -n "$fw" -j addr show >"$WORK/addr.json" || return 1
    python3 "$WORK/dyn.py" "$WORK/sets.json" "$WORK/kset.json" "$WORK/addr.json" "$name" "$@"
}
# settle DESCRIPTION CMD...: waits (at most 5 s) for CMD to succeed, then checks it.
settle() { local d=$1; shift; wait_for 5 "$@" || true; check "$d" "$@"; }
# tcp_from NS SRC ADDR PORT: like tcp, from the source address SRC.
tcp_from() { ip netns exec "$1" timeout 5 socat -T2 - "TCP:$3:$4,bind=$2,connect-timeout=2" </dev/null | grep -qx ok; }

# --- The sets at start --------------------------------------------------------
settle "default-gateway v4: the default route's next hop, with its source" \
    dyn dyn_default_gateway4 exact "10.210.0.254 <- default route in table 254 via 10.210.0.254 on eth0"
check  "default-gateway v6: the default route's next hop, with its source" \
    dyn dyn_default_gateway6 exact "fd00:210::fe <- default route in table 254 via fd00:210::fe on eth0"
check  "local-subnet v4: fw's subnets per interface" dyn dyn_local_subnet4 exact \
    "eth0 10.210.0.0/24 <- address 10.210.0.1/24 on eth0" "eth1 10.211.0.0/24 <- address 10.211.0.1/24 on eth1"
check  "local-subnet v6: fw's global subnets per interface" dyn dyn_local_subnet6 has \
    "eth0 fd00:210::/64 <- address fd00:210::1/64 on eth0" "eth1 fd00:211::/64 <- address fd00:211::1/64 on eth1"
settle "local-subnet v6: exactly the prefixes of every address (link-local too) per interface" \
    dyn dyn_local_subnet6 ipaddr
check  "local-subnet: no loopback prefix" dyn dyn_local_subnet4 lacks "lo 127.0.0.0/8 <- address 127.0.0.1/8 on lo"
check  "human show sets names each element's source" rf "$fw" show sets
said   "human show sets: the eth1 subnet and its address" 'eth1 10\.211\.0\.0/24 +<- address 10\.211\.0\.1/24 on eth1'

# --- Traffic at start ---------------------------------------------------------
for v in 4 6; do
    if [ $v = 4 ]; then me=10.210.0.1 mine1=10.211.0.1; else me=fd00:210::1 mine1=fd00:211::1; fi
    check  "nb on fw's subnet reaches tcp/8080 (local-subnet, v$v)" tcp "$nb" $me 8080
    refute "far, routed from another subnet, does not reach tcp/8080 (v$v)" tcp "$far" $me 8080
    check  "far reaches the open tcp/8081 (its path works, v$v)" tcp "$far" $me 8081
    check  "the gateway rt reaches udp/9999 (default-gateway, v$v)" udp "$rt" $me 9999
    refute "nb, not a gateway, does not reach udp/9999 (v$v)" udp "$nb" $me 9999
    check  "nb reaches the open udp/9998 (v$v)" udp "$nb" $me 9998
    check  "b on eth1's subnet reaches tcp/8080 there (v$v)" tcp "$b" $mine1 8080
done

# --- The interface matters: the same remote address on the right and the wrong
# interface. b (on eth1) gets 10.210.0.77, an address of eth0's subnet, and fw
# routes it back through eth1; later nb (on eth0) has it.
ip -n "$b" addr add 10.210.0.77/32 dev eth0
ip -n "$fw" route add 10.210.0.77/32 dev eth1
explain_says() { # INTERFACE LOCAL PORT REMOTE VERDICT DECIDER
    rf "$fw" explain --direction in --protocol tcp --remote "$4" --local "$2" --local-port "$3" --interface "$1" --json >"$WORK/explain.json" || return 1
    local got
    got=$(jget '(lambda d: v["verdict"] + " " + (("rule " + d["name"]) if d["kind"] == "rule" else ("default " + d.get("profile", d["kind"]))))(v.get("decided-by") or v["decided_by"])' <"$WORK/explain.json")
    echo "explain: $got"
    [ "$got" = "$5 $6" ]
}
check  "explain: 10.210.0.77 on eth1 -> tcp/8080 is blocked (not eth1's subnet)" \
    explain_says eth1 10.211.0.1 8080 10.210.0.77 block "default public"
refute "real traffic from 10.210.0.77 on eth1 to tcp/8080 is dropped, as explained" tcp_from "$b" 10.210.0.77 10.211.0.1 8080
check  "10.210.0.77 on eth1 reaches the open tcp/8081 (the path works)" tcp_from "$b" 10.210.0.77 10.211.0.1 8081
check  "explain: to fw's eth0 address through eth1, tcp/8082 is blocked (local-addresses: local-subnet)" \
    explain_says eth1 10.210.0.1 8082 10.211.0.2 block "default public"
refute "real traffic from b to 10.210.0.1:8082 through eth1 is dropped, as explained" tcp "$b" 10.210.0.1 8082
check  "b reaches 10.210.0.1:8081 through eth1 (the path works)" tcp "$b" 10.210.0.1 8081
check  "explain: to fw's eth1 address through eth1, tcp/8082 is allowed" \
    explain_says eth1 10.211.0.1 8082 10.211.0.2 allow "rule lan-local"
check  "real traffic from b to 10.211.0.1:8082 gets through, as explained" tcp "$b" 10.211.0.1 8082
ip -n "$fw" route del 10.210.0.77/32 dev eth1
ip -n "$b" addr del 10.210.0.77/32 dev eth0
ip -n "$nb" addr add 10.210.0.77/24 dev eth0
check  "explain: 10.210.0.77 on eth0 -> tcp/8080 is allowed by lan-web" \
    explain_says eth0 10.210.0.1 8080 10.210.0.77 allow "rule lan-web"
check  "real traffic from 10.210.0.77 on eth0 to tcp/8080 gets through, as explained" tcp_from "$nb" 10.210.0.77 10.210.0.1 8080

# --- Default route replaced ---------------------------------------------------
ip -n "$fw" route replace default via 10.210.0.253
settle "route replaced: default-gateway v4 is the new gateway only" \
    dyn dyn_default_gateway4 exact "10.210.0.253 <- default route in table 254 via 10.210.0.253 on eth0"
refute "route replaced: the old gateway rt loses udp/9999" udp "$rt" 10.210.0.1 9999
check  "route replaced: the new gateway gw2 reaches udp/9999" udp "$gw2" 10.210.0.1 9999
check  "route replaced: rt still reaches the open udp/9998" udp "$rt" 10.210.0.1 9998

# --- An address added to and removed from eth0 --------------------------------
check  "before: 10.230.0.0/24 is not a local subnet" \
    dyn dyn_local_subnet4 lacks "eth0 10.230.0.0/24 <- address 10.230.0.1/24 on eth0"
refute "before: nb2 (10.230.0.5) does not reach tcp/8080" tcp "$nb2" 10.210.0.1 8080
ip -n "$fw" addr add 10.230.0.1/24 dev eth0
ip -n "$fw" addr add fd00:230::1/64 dev eth0 nodad
settle "address added: local-subnet v4 has eth0 10.230.0.0/24" dyn dyn_local_subnet4 exact \
    "eth0 10.210.0.0/24 <- address 10.210.0.1/24 on eth0" "eth1 10.211.0.0/24 <- address 10.211.0.1/24 on eth1" \
    "eth0 10.230.0.0/24 <- address 10.230.0.1/24 on eth0"
settle "address added: local-subnet v6 has eth0 fd00:230::/64" \
    dyn dyn_local_subnet6 has "eth0 fd00:230::/64 <- address fd00:230::1/64 on eth0"
check  "address added: nb2 on the new subnet reaches tcp/8080" tcp "$nb2" 10.210.0.1 8080
check  "address added: nb2 reaches tcp/8080 on the new address too" tcp "$nb2" 10.230.0.1 8080
ip -n "$fw" addr del 10.230.0.1/24 dev eth0
ip -n "$fw" addr del fd00:230::1/64 dev eth0
settle "address removed: local-subnet v4 is back to eth0 and eth1's subnets" dyn dyn_local_subnet4 exact \
    "eth0 10.210.0.0/24 <- address 10.210.0.1/24 on eth0" "eth1 10.211.0.0/24 <- address 10.211.0.1/24 on eth1"
settle "address removed: local-subnet v6 lost fd00:230::/64" \
    dyn dyn_local_subnet6 lacks "eth0 fd00:230::/64 <- address fd00:230::1/64 on eth0"
refute "address removed: nb2 loses tcp/8080" tcp "$nb2" 10.210.0.1 8080
check  "address removed: nb2 still reaches the open tcp/8081" tcp "$nb2" 10.210.0.1 8081

# --- A default route in another routing table ---------------------------------
ip -n "$fw" route add default via 10.210.0.10 table 100
settle "table 100: default-gateway v4 has its next hop too" dyn dyn_default_gateway4 exact \
    "10.210.0.253 <- default route in table 254 via 10.210.0.253 on eth0" \
    "10.210.0.10 <- default route in table 100 via 10.210.0.10 on eth0"
check  "table 100: nb, its gateway, now reaches udp/9999" udp "$nb" 10.210.0.1 9999

# --- Multipath default routes -------------------------------------------------
refute "before multipath: b does not reach udp/9999" udp "$b" 10.211.0.1 9999
ip -n "$fw" route replace default nexthop via 10.210.0.254 dev eth0 nexthop via 10.211.0.2 dev eth1
settle "multipath v4: every next hop, and table 100's" dyn dyn_default_gateway4 exact \
    "10.210.0.254 <- default route in table 254 via 10.210.0.254 on eth0" \
    "10.211.0.2 <- default route in table 254 via 10.211.0.2 on eth1" \
    "10.210.0.10 <- default route in table 100 via 10.210.0.10 on eth0"
check  "multipath: b, the second next hop, reaches udp/9999" udp "$b" 10.211.0.1 9999
check  "multipath: rt, the first next hop, reaches udp/9999 again" udp "$rt" 10.210.0.1 9999
refute "multipath: gw2, no longer a gateway, loses udp/9999" udp "$gw2" 10.210.0.1 9999
ip -n "$fw" -6 route del default
ip -n "$fw" -6 route add default nexthop via fd00:210::fe dev eth0 nexthop via fd00:211::2 dev eth1
settle "multipath v6: both next hops" dyn dyn_default_gateway6 exact \
    "fd00:210::fe <- default route in table 254 via fd00:210::fe on eth0" \
    "fd00:211::2 <- default route in table 254 via fd00:211::2 on eth1"
check  "multipath v6: b reaches udp/9999" udp "$b" fd00:211::1 9999
ip -n "$fw" route del default table 100
ip -n "$fw" route del default
settle "every v4 default route deleted: default-gateway v4 is empty" dyn dyn_default_gateway4 exact
refute "no default route: b loses udp/9999" udp "$b" 10.211.0.1 9999

# --- A burst of 1,000 address changes -----------------------------------------
# 700 IPv4 addresses (distinct /24s, some with a /30 inside on the same
# interface) and 300 IPv6 ones on eth0 and eth1, then 600 of them deleted, in
# one `ip -batch`; then the other 400.
python3 - "$WORK" <<'PY'
import random, sys
random.seed(7)
adds = []
for i in range(600):
    dev = "eth1" if i % 3 == 0 else "eth0"
    adds.append("addr add 172.%d.%d.1/24 dev %s" % (16 + i // 200, i % 200, dev))
    if i % 6 == 1:
        adds.append("addr add 172.%d.%d.%d/30 dev %s" % (16 + i // 200, i % 200, 4 * (1 + i % 50), dev))
while len(adds) < 700:
    k = len(adds)
    adds.append("addr add 172.30.%d.%d/32 dev eth0" % (k // 250, 1 + k % 250))
for i in range(300):
    dev = "eth1" if i % 2 else "eth0"
    adds.append("addr add fd00:240:%x::1/%d dev %s nodad" % (i, 64 if i % 5 else 128, dev))
dels = ["addr del " + a.split(" ", 2)[2].replace(" nodad", "") for a in adds]
order = list(range(len(adds)))
random.shuffle(order)
first, rest = order[:600], order[600:]
open(sys.argv[1] + "/burst1", "w").write("\n".join(adds + [dels[i] for i in first]) + "\n")
open(sys.argv[1] + "/burst2", "w").write("\n".join(dels[i] for i in rest) + "\n")
PY
ip -n "$fw" -j addr show >"$WORK/addr.before"
# Meanwhile nb opens new connections to tcp/8080 one after the other: every
# update replaces the set's elements in one transaction, so none may be lost
# (a lost SYN would be sent again after 1 s: a connection slower than 0.9 s fails).
ip netns exec "$nb" python3 -c '
import os, socket, sys, time
stop, out = sys.argv[1:]
ok = bad = 0
deadline = time.monotonic() + 60
while not os.path.exists(stop) and time.monotonic() < deadline:
    try:
        s = socket.create_connection(("10.210.0.1", 8080), timeout=0.9)
        s.settimeout(2)
        data = s.recv(16)
        s.close()
        ok, bad = (ok + 1, bad) if data.strip() == b"ok" else (ok, bad + 1)
    except OSError:
        bad += 1
    with open(out, "w") as f:
        f.write("%d %d\n" % (ok, bad))
' "$WORK/prober.stop" "$WORK/prober.out" &
prober=$!
_PIDS+=("$prober")
wait_for 5 test -s "$WORK/prober.out" || true
t0=${EPOCHREALTIME/./}
check  "burst: 1,000 addresses added and 600 deleted in one ip -batch" ip -n "$fw" -batch "$WORK/burst1"
check  "burst: 400 addresses left on fw" test "$(ip -n "$fw" -j addr show | jget 'sum(len(l["addr_info"]) for l in v)')" \
    -eq $(($(jget 'sum(len(l["addr_info"]) for l in v)' <"$WORK/addr.before") + 400))
wait_for 20 dyn dyn_local_subnet4 ipaddr || true
t1=${EPOCHREALTIME/./}
check  "burst: local-subnet v4 equals ip -j addr exactly (show sets and the kernel's set)" dyn dyn_local_subnet4 ipaddr
settle "burst: local-subnet v6 equals ip -j addr exactly" dyn dyn_local_subnet6 ipaddr
echo "       (the sets were final $(((t1 - t0) / 1000)) ms after the batch started)"
touch "$WORK/prober.stop"
wait "$prober" || true
read -r conn_ok conn_bad <"$WORK/prober.out"
echo "       ($conn_ok connections during the burst, $conn_bad failed)"
check  "burst: new connections from nb during the updates all got through at once" test "$conn_bad" -eq 0
check  "burst: and there were some (at least 10)" test "$conn_ok" -ge 10
check  "burst: the daemon is alive" kill -0 "$DAEMON_PID"
check  "burst: the daemon answers show state at once" timeout 2 "$RINGFENCE" --socket "$(sock "$fw")" show state
check  "burst: traffic still follows the sets (nb reaches tcp/8080)" tcp "$nb" 10.210.0.1 8080
check  "burst: the other 400 deleted" ip -n "$fw" -batch "$WORK/burst2"
settle "after the burst: local-subnet v4 equals ip -j addr exactly" dyn dyn_local_subnet4 ipaddr
settle "after the burst: local-subnet v6 equals ip -j addr exactly" dyn dyn_local_subnet6 ipaddr
check  "after the burst: local-subnet v4 is eth0 and eth1's subnets again" dyn dyn_local_subnet4 exact \
    "eth0 10.210.0.0/24 <- address 10.210.0.1/24 on eth0" "eth1 10.211.0.0/24 <- address 10.211.0.1/24 on eth1"

# --- An interface renamed -----------------------------------------------------
ip -n "$fw" link set eth1 down
ip -n "$fw" link set eth1 name lan1
ip -n "$fw" link set lan1 up
settle "rename: local-subnet v4 names lan1" dyn dyn_local_subnet4 exact \
    "eth0 10.210.0.0/24 <- address 10.210.0.1/24 on eth0" "lan1 10.211.0.0/24 <- address 10.211.0.1/24 on lan1"
settle "rename: local-subnet v6 equals ip -j addr" dyn dyn_local_subnet6 ipaddr
check  "rename: b on lan1's subnet reaches tcp/8080" tcp "$b" 10.211.0.1 8080

# --- Only set elements changed ------------------------------------------------
shape >"$WORK/shape.1"
chain_text >"$WORK/chain.1"
check  "the chain in_public (rules and handles) is unchanged after every change" diff "$WORK/chain.0" "$WORK/chain.1"
check  "the table (sets, chains, rules, handles; elements aside) is unchanged" diff "$WORK/shape.0" "$WORK/shape.1"
check  "show state: the generation is unchanged ($gen0)" test "$(state "$fw" generation)" = "$gen0"
check  "the daemon logged dynamic set updates" grep -q "dynamic sets updated" "$WORK/$fw.log"
refute "the daemon logged no failed update or lost event socket" grep -Eq "updating the dynamic sets failed|socket closed|keeping the last" "$WORK/$fw.log"
check  "the daemon is still running" kill -0 "$DAEMON_PID"
finish
