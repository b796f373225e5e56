#!/usr/bin/env bash
# `explain` agrees with the kernel: for a list of inbound packets (TCP, UDP, ICMP,
# ICMPv6; IPv4 and IPv6; two interfaces in two profiles) the daemon's verdict is
# the expected one, real traffic from the peer gets exactly that verdict, and the
# offline `explain --policy-dir` gives the same answer. The counters of the rules
# that decided go up.
source "$(dirname "$0")/../lib.sh"

fw=$(host fw); a=$(host a); b=$(host b)
link "$fw" eth0 10.206.1.1 fd00:206:1::1 "$a" eth0 10.206.1.2 fd00:206:1::2
link "$fw" wan0 10.206.2.1 fd00:206:2::1 "$b" eth0 10.206.2.2 fd00:206:2::2

P="$WORK/policy"
mkdir "$P"
cat >"$P/10-explain.yaml" <<'YAML'
version: 1
profiles:
  domain: { interfaces: ["eth*"], inbound: allow }
rules:
  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [8080] }
  - { name: web-block-b4, direction: in, action: block, protocol: tcp, local-ports: [8080], remote-addresses: ["10.206.2.0/24"] }
  - { name: wan-admin, direction: in, action: allow, protocol: tcp, local-ports: [2222], interfaces: [wan0] }
  - { name: eth0-no-udp, direction: in, action: block, protocol: udp, local-ports: [5300], interfaces: [eth0] }
  - { name: ping-from-b, direction: in, action: allow, protocol: icmp, icmp-types: [echo-request], remote-addresses: ["10.206.2.2-10.206.2.3"] }
  - { name: dns-v6, direction: in, action: allow, protocol: udp, local-ports: [5353], remote-addresses: ["fd00:206:2::/64"] }
  - { name: wan-glob-udp, direction: in, action: allow, protocol: udp, local-ports: [5301], interfaces: ["wa*"] }
YAML
echo "$ND_RULE" >>"$P/10-explain.yaml"
# The pings are decided by these rules and the profile defaults: without the
# default layer, whose rules allow every echo request.
mask_default "$P"
daemon_start "$fw" "$P"
for p in 8080 2222 4000; do serve_tcp "$fw" $p; done
for p in 5300 5301 5353; do serve_udp "$fw" $p; done

rules_json() { rf "$fw" show rules --json; }
packets_of() { jget "[r['packets'] for r in v if r['name'] == '$1'][0]" <"$2"; }
rules_json >"$WORK/rules.0"
rf "$fw" show profiles --json >"$WORK/profiles.0"

# Who decides, as "rule NAME" or "default PROFILE", from an explain answer.
decider() { jget '(lambda d: ("rule " + d["name"]) if d["kind"] == "rule" else ("default " + d.get("profile", d["kind"])))(v.get("decided-by") or v["decided_by"])'; }

# Sends the packet for real: a TCP connection, a UDP datagram or one echo request.
send() { # PEER PROTO LOCAL_ADDR PORT
    case $2 in
        tcp) tcp "$1" "$3" "$4" ;;
        udp) udp "$1" "$3" "$4" ;;
        icmp | icmpv6) ping1 "$1" "$3" ;;
    esac
}

n=0
# peer  proto   remote          local           port  interface  expected  decided by
while read -r peer proto remote local port ifname want by <&3; do
    [ -n "$peer" ] && [ "${peer:0:1}" != "#" ] || continue
    n=$((n + 1))
    ns=${!peer}
    args=(--direction in --protocol "$proto" --remote "$remote" --local "$local" --interface "$ifname" --json)
    case $proto in icmp | icmpv6) args+=(--icmp-type "$port") ;; *) args+=(--local-port "$port") ;; esac
    what="#$n $proto $remote -> $local ${port} on $ifname"
    if ! rf "$fw" explain "${args[@]}" >"$WORK/explain.$n" 2>&1; then
        fail "$what: explain fails"; sed 's/^/       | /' "$WORK/explain.$n"; continue
    fi
    got=$(jget 'v["verdict"]' <"$WORK/explain.$n" 2>&1) || true
    got_by=$(decider <"$WORK/explain.$n" 2>&1) || true
    check "$what: explain says $want ($by)" test "$got ($got_by)" = "$want ($by)"
    ip netns exec "$fw" timeout 30 "$RINGFENCE" explain "${args[@]}" --policy-dir "$P" >"$WORK/offline.$n" 2>&1 || true
    check "$what: offline explain --policy-dir gives the same answer" cmp "$WORK/explain.$n" "$WORK/offline.$n"
    if [ "$got" = allow ]; then
        check  "$what: real traffic from $peer gets through, as explained" send "$ns" "$proto" "$local" "$port"
    else
        refute "$what: real traffic from $peer is dropped, as explained" send "$ns" "$proto" "$local" "$port"
    fi
done 3<<'PACKETS'
b  tcp    10.206.2.2     10.206.2.1     8080          wan0  block  rule web-block-b4
b  tcp    fd00:206:2::2  fd00:206:2::1  8080          wan0  allow  rule web
a  tcp    10.206.1.2     10.206.1.1     8080          eth0  allow  rule web
b  tcp    10.206.2.2     10.206.2.1     2222          wan0  allow  rule wan-admin
b  tcp    fd00:206:2::2  fd00:206:2::1  2222          wan0  allow  rule wan-admin
b  tcp    10.206.2.2     10.206.2.1     4000          wan0  block  default public
b  tcp    fd00:206:2::2  fd00:206:2::1  4000          wan0  block  default public
a  tcp    10.206.1.2     10.206.1.1     4000          eth0  allow  default domain
a  udp    10.206.1.2     10.206.1.1     5300          eth0  block  rule eth0-no-udp
a  udp    fd00:206:1::2  fd00:206:1::1  5300          eth0  block  rule eth0-no-udp
a  udp    10.206.1.2     10.206.1.1     5301          eth0  allow  default domain
b  udp    10.206.2.2     10.206.2.1     5301          wan0  allow  rule wan-glob-udp
b  udp    fd00:206:2::2  fd00:206:2::1  5300          wan0  block  default public
b  udp    fd00:206:2::2  fd00:206:2::1  5353          wan0  allow  rule dns-v6
b  udp    10.206.2.2     10.206.2.1     5353          wan0  block  default public
b  icmp   10.206.2.2     10.206.2.1     echo-request  wan0  allow  rule ping-from-b
b  icmpv6 fd00:206:2::2  fd00:206:2::1  echo-request  wan0  block  default public
a  icmp   10.206.1.2     10.206.1.1     echo-request  eth0  allow  default domain
a  icmpv6 fd00:206:1::2  fd00:206:1::1  echo-request  eth0  allow  default domain
PACKETS
check "at least 10 packets were explained and sent" test "$n" -ge 10

# The deciding rules' counters went up (and one that decided nothing did not).
rules_json >"$WORK/rules.1"
for r in web web-block-b4 wan-admin eth0-no-udp ping-from-b dns-v6 wan-glob-udp; do
    check "show rules: the counter of $r went up" \
        test "$(packets_of $r "$WORK/rules.1")" -gt "$(packets_of $r "$WORK/rules.0")"
done
rf "$fw" show profiles --json >"$WORK/profiles.1"
default_packets() { jget "[p['inbound']['packets'] for p in v['profiles'] if p['profile'] == '$1'][0]" <"$2"; }
check "show profiles: the public inbound default's counter went up" \
    test "$(default_packets public "$WORK/profiles.1")" -gt "$(default_packets public "$WORK/profiles.0")"
check "show profiles: the domain inbound default's counter went up" \
    test "$(default_packets domain "$WORK/profiles.1")" -gt "$(default_packets domain "$WORK/profiles.0")"
check "human explain answers" rf "$fw" explain --direction in --protocol tcp --remote 10.206.2.2 --local-port 8080 --interface wan0
said  "human explain names the deciding rule and its file:line" 'decided by: rule web-block-b4 \(.*10-explain\.yaml:6:[0-9]+\)'
check "the daemon is still running" kill -0 "$DAEMON_PID"
finish
