#!/usr/bin/env bash
# Default inbound block, outbound allow, an allow rule, and a block rule beating
# an allow rule, over IPv4 and IPv6, between two hosts.
source "$(dirname "$0")/../lib.sh"

fw=$(host fw); peer=$(host peer)
link "$fw" eth0 10.200.0.1 fd00:200::1 "$peer" eth0 10.200.0.2 fd00:200::2

mkdir "$WORK/policy"
cat >"$WORK/policy/10-test.yaml" <<'YAML'
version: 1
rules:
  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [8080, "9000-9001"] }
  - { name: dns, direction: in, action: allow, protocol: udp, local-ports: [5353] }
  - { name: wide-allow, direction: in, action: allow, protocol: tcp, local-ports: ["7000-7010"] }
  - { name: narrow-block, direction: in, action: block, protocol: tcp, local-ports: [7005], remote-addresses: ["10.200.0.0/24", "fd00:200::/64"] }
YAML
echo "$ND_RULE" >>"$WORK/policy/10-test.yaml"
# The profile defaults alone decide what no rule names: without the default
# layer, which allows SSH and ping.
mask_default "$WORK/policy"
daemon_start "$fw" "$WORK/policy"
for p in 8080 9001 7004 7005 4000; do serve_tcp "$fw" $p; done
serve_udp "$fw" 5353
serve_udp "$fw" 5354
serve_tcp "$peer" 8000

for a in 10.200.0.1 fd00:200::1; do
    check  "allow rule lets tcp/8080 in ($a)" tcp "$peer" $a 8080
    check  "port range 9000-9001 lets 9001 in ($a)" tcp "$peer" $a 9001
    refute "default blocks tcp/4000 ($a)" tcp "$peer" $a 4000
    check  "allow rule lets udp/5353 in ($a)" udp "$peer" $a 5353
    refute "default blocks udp/5354 ($a)" udp "$peer" $a 5354
    check  "wide allow 7000-7010 lets 7004 in ($a)" tcp "$peer" $a 7004
    refute "block rule beats allow rule on 7005 ($a)" tcp "$peer" $a 7005
    refute "no echo rule: ping blocked ($a)" ping1 "$peer" $a
done
for a in 10.200.0.2 fd00:200::2; do
    check "outbound allowed by default, replies come back ($a)" tcp "$fw" $a 8000
done
check "the daemon is still running" kill -0 "$DAEMON_PID"
finish
