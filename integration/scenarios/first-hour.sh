#!/usr/bin/env bash
# The first hour of a new user, without a lockout (issue 14):
# - the embedded default is a layer: a one-rule file keeps SSH, ping, IPv6
#   neighbour discovery and DHCP client replies; masking the default removes SSH;
# - core networking stays whatever the layers say, until `core-networking: false`
#   (then IPv6 neighbour discovery fails);
# - `services: [http]` admits tcp/80 and nothing else; an unknown service is a
#   FILE:LINE:COL error;
# - `ringfence rule add/disable/enable/delete` round trip, each seen in the
#   kernel and in `explain`; two adds at once both land; bad arguments and a
#   change that would make the policy invalid write nothing.
# Every "did not get through" is checked after the daemon reported the apply,
# beside a positive control in the same state.
source "$(dirname "$0")/../lib.sh"

fw=$(host fw); peer=$(host peer)
link "$fw" eth0 10.214.0.1 fd00:214::1 "$peer" eth0 10.214.0.2 fd00:214::2
A4=10.214.0.1; A6=fd00:214::1

P="$WORK/policy"
mkdir "$P"
# One allow rule, as the issue's new user wrote it: no neighbour discovery rule.
cat >"$P/10-web.yaml" <<'YAML'
version: 1
rules:
  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [8080], remote-addresses: ["10.214.0.0/24", "fd00:214::/64"] }
YAML
daemon_start "$fw" "$P"
for p in 22 80 81 8080 9090 9091 9092 9093; do serve_tcp "$fw" $p; done
serve_udp "$fw" 80
serve_udp "$fw" 68

# No IPv6 packet has crossed the link yet: the first connection must resolve
# the firewall's address by neighbour discovery.
check "IPv6 tcp/8080 from the rule's prefix works (neighbour discovery through the default)" tcp "$peer" $A6 8080
check "IPv4 tcp/8080 works" tcp "$peer" $A4 8080
for a in $A4 $A6; do
    check "the default layer keeps SSH open ($a)" tcp "$peer" $a 22
    check "the default layer keeps ping ($a)" ping1 "$peer" $a
done

# udp_from NS SRC_PORT ADDR PORT: one datagram from SRC_PORT, answered with "ok".
udp_from() {
    ip netns exec "$1" timeout 20 python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(2)
s.sendto(b"hi\n", (sys.argv[2], int(sys.argv[3])))
sys.exit(0 if s.recv(512).strip() == b"ok" else "unexpected answer")' "$2" "$3" "$4"
}
check "a DHCP server's reply (udp 67 -> 68) gets in" udp_from "$peer" 67 $A4 68
refute "udp to port 68 from another port is blocked" udp_from "$peer" 6700 $A4 68
check "explain names core networking for the DHCP reply" \
    rf "$fw" explain --direction in --protocol udp --remote 10.214.0.2 --remote-port 67 --local-port 68
said "core networking decides the DHCP reply" "core networking, rule dhcp-client-in"
check "show rules lists the core networking group" rf "$fw" show rules
said "show rules has the group" "^core networking \(on unless settings.core-networking: false"
said "and its neighbour discovery rule" "^ipv6-neighbour-discovery-in +in +allow +icmpv6 type=nd-neighbor-solicit,nd-neighbor-advert "
check "show policy says the default is the embedded copy" rf "$fw" show policy
said "the default layer is embedded" "default layer \(00-default.yaml\): the embedded copy"

# Masking the default removes SSH; core networking stays.
ln -s /dev/null "$P/00-default.yaml"
check "apply with the default masked" rf "$fw" apply
check "show policy says the default is masked" rf "$fw" show policy
said "the mask is named" "default layer \(00-default.yaml\): masked by $P/00-default.yaml"
flush_neighbours() { ip -n "$fw" neigh flush dev eth0; ip -n "$peer" neigh flush dev eth0; }
flush_neighbours
check "positive control: IPv6 tcp/8080 still works, neighbour discovery by core networking" tcp "$peer" $A6 8080
for a in $A4 $A6; do refute "masked default: SSH blocked ($a)" tcp "$peer" $a 22; done
check "explain: SSH now decided by the public default" rf "$fw" explain --direction in --protocol tcp --local-port 22
said "SSH: the profile default" "decided by: the public profile's default"

# core-networking: false removes neighbour discovery.
printf 'settings:\n  core-networking: false\n' >"$P/50-no-core.yaml"
check "apply with core networking off" rf "$fw" apply
flush_neighbours
check "positive control: IPv4 tcp/8080 works (ARP is not IP)" tcp "$peer" $A4 8080
refute "without core networking, IPv6 neighbour discovery fails: IPv6 tcp/8080 cannot connect" tcp "$peer" $A6 8080
check "explain: a neighbour solicitation goes to the default" \
    rf "$fw" explain --direction in --protocol icmpv6 --icmp-type nd-neighbor-solicit
said "no core networking in the answer" "decided by: the public profile's default"
rm "$P/50-no-core.yaml" "$P/00-default.yaml"

# Named services.
cat >"$P/20-services.yaml" <<'YAML'
version: 1
rules:
  - name: www
    direction: in
    action: allow
    services: [http]
YAML
check "apply with services: [http]" rf "$fw" apply
# (The failed resolutions of the test above are cached.)
flush_neighbours
check "services: [http] admits tcp/80" tcp "$peer" $A4 80
check "services: [http] admits tcp/80 over IPv6" tcp "$peer" $A6 80
refute "services: [http] does not admit tcp/81" tcp "$peer" $A4 81
refute "services: [http] does not admit udp/80" udp "$peer" $A4 80
check "show services lists http" rf "$fw" show services
said "http is tcp/80" "^http +tcp/80 "
sed -i 's/services: \[http\]/services: [http, no-such-service]/' "$P/20-services.yaml"
refute "an unknown service fails check" "$RINGFENCE" check --policy-dir "$P"
said "the error is FILE:LINE:COL" "^$P/20-services.yaml:6:22: rules\[0\]\.services\[1\]: \"no-such-service\" is not a known service"
refute "the daemon refuses it" rf "$fw" apply
said "with the same error" "no-such-service"
check "and keeps the last policy: tcp/80 still in" tcp "$peer" $A4 80
rm "$P/20-services.yaml"
check "apply without the services file" rf "$fw" apply

# Rule commands.
L="$P/90-local.yaml"
rule() { rf "$fw" rule "$@" --policy-dir "$P"; }
decided_by() { # PORT: who decides a tcp packet to PORT, as the daemon explains it
    rf "$fw" explain --direction in --protocol tcp --remote 10.214.0.2 --local-port "$1" --json |
        jget '(lambda d: d.get("name", d["kind"]))(v["decided-by"])'
}
check "rule add" rule add admin-9090 --direction in --action allow --protocol tcp --local-ports 9090
said "rule add applied" "applied \(generation"
check "added: tcp/9090 gets in" tcp "$peer" $A4 9090
check "added: explain names the rule" test "$(decided_by 9090)" = admin-9090
check "the rule is in 90-local.yaml" grep -q "name: admin-9090" "$L"
check "rule disable" rule disable admin-9090
check "disabled: explain says the default" test "$(decided_by 9090)" = profile-default
refute "disabled: tcp/9090 blocked" tcp "$peer" $A4 9090
check "rule enable" rule enable admin-9090
check "enabled again: tcp/9090 gets in" tcp "$peer" $A4 9090
check "enabled again: explain names the rule" test "$(decided_by 9090)" = admin-9090
check "rule delete" rule delete admin-9090
check "deleted: explain says the default" test "$(decided_by 9090)" = profile-default
refute "deleted: tcp/9090 blocked" tcp "$peer" $A4 9090

# Two adds at the same time.
rule add race-a --direction in --action allow --protocol tcp --local-ports 9091 >"$WORK/race-a.out" 2>&1 &
ra=$!
rule add race-b --direction in --action allow --protocol tcp --local-ports 9092 >"$WORK/race-b.out" 2>&1 &
rb=$!
check "concurrent rule add race-a succeeds" wait "$ra"
check "concurrent rule add race-b succeeds" wait "$rb"
check "both landed in the file" rule list --names
said "race-a listed" "^race-a$"
said "race-b listed" "^race-b$"
check "both are in the kernel: tcp/9091" tcp "$peer" $A4 9091
check "both are in the kernel: tcp/9092" tcp "$peer" $A4 9092

# Without --policy-dir, the command edits the policy the daemon reads.
check "rule add without --policy-dir" rf "$fw" rule add via-daemon --direction in --action allow --protocol tcp --local-ports 9093
check "it went into the daemon's directory" grep -q "name: via-daemon" "$L"
check "and into the kernel: tcp/9093" tcp "$peer" $A4 9093

# Bad arguments and invalid changes write nothing.
cp "$L" "$WORK/local.before"
refute "a bad --direction is refused" rule add bad --direction sideways --action allow
said "clap names the value" "invalid value 'sideways' for '--direction"
check "the file is untouched" cmp "$L" "$WORK/local.before"
refute "a port out of range is refused" rule add bad --direction in --action allow --protocol tcp --local-ports 70000
said "refused: nothing written" "refused, nothing written: the policy would be invalid"
said "at the place it would have" "^$L:[0-9]+:[0-9]+: rules\[[0-9]+\]\.local-ports\[0\]: 70000 is not a port"
check "the file is untouched" cmp "$L" "$WORK/local.before"
refute "a rule of another file cannot be changed" rule disable web
said "the other file is named" "rule \"web\" is defined at $P/10-web.yaml:3:5, not in the managed"
check "the file is untouched" cmp "$L" "$WORK/local.before"
check "rule list shows every rule with its file" rule list
said "web from 10-web.yaml" "^web .*10-web.yaml:3:5"
check "the daemon is still running" kill -0 "$DAEMON_PID"
finish
