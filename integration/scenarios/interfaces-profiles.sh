#!/usr/bin/env bash
# Profiles and interface-scoped rules: a host with three links, one per profile
# (eth0 -> domain through the pattern eth*, br-lan0 -> private through br-*, wan0
# matching nothing -> public). The profiles' defaults differ, so the same port
# behaves differently on each side; a rule scoped with `profiles:` and a rule
# scoped with `interfaces:` apply only where they say.
source "$(dirname "$0")/../lib.sh"

fw=$(host fw); a=$(host a); b=$(host b); c=$(host c)
link "$fw" eth0    10.201.1.1 fd00:201:1::1 "$a" eth0 10.201.1.2 fd00:201:1::2
link "$fw" wan0    10.201.3.1 fd00:201:3::1 "$b" eth0 10.201.3.2 fd00:201:3::2
link "$fw" br-lan0 10.201.2.1 fd00:201:2::1 "$c" eth0 10.201.2.2 fd00:201:2::2

mkdir "$WORK/policy"
cat >"$WORK/policy/10-profiles.yaml" <<'YAML'
version: 1
profiles:
  domain:  { interfaces: ["eth*"], inbound: allow, outbound: allow }
  private: { interfaces: ["br-*"], inbound: block, outbound: block }
  public:  { inbound: block, outbound: allow }
rules:
  - { name: priv-web, direction: in, action: allow, protocol: tcp, local-ports: [8080], profiles: [private] }
  - { name: wan-admin, direction: in, action: allow, protocol: tcp, local-ports: [2222], interfaces: [wan0] }
  - { name: domain-block, direction: in, action: block, protocol: tcp, local-ports: [9090], profiles: [domain] }
  - { name: eth0-block-udp, direction: in, action: block, protocol: udp, local-ports: [5300], interfaces: [eth0] }
  - { name: priv-out-web, direction: out, action: allow, protocol: tcp, remote-ports: [8000], profiles: [private] }
  - { name: nd-out, direction: out, action: allow, protocol: icmpv6, icmp-types: [nd-neighbor-solicit, nd-neighbor-advert] }
YAML
echo "$ND_RULE" >>"$WORK/policy/10-profiles.yaml"
# The profiles' defaults decide the pings: without the default layer, whose
# rules allow every echo request.
mask_default "$WORK/policy"
daemon_start "$fw" "$WORK/policy"
for p in 8080 2222 9090 9091; do serve_tcp "$fw" $p; done
serve_udp "$fw" 5300
serve_udp "$fw" 5301
for h in "$a" "$b" "$c"; do serve_tcp "$h" 8000; serve_tcp "$h" 8001; done

# `show profiles` maps the host's interfaces to their profiles.
rf "$fw" show profiles --json >"$WORK/profiles.json"
profile_of() { jget "[i['profile'] for i in v['host-interfaces'] if i['interface'] == '$1']" <"$WORK/profiles.json" | grep -qx "\[\"$2\"\]"; }
check "show profiles: eth0 is domain (eth*)" profile_of eth0 domain
check "show profiles: br-lan0 is private (br-*)" profile_of br-lan0 private
check "show profiles: wan0 matches no pattern, so public" profile_of wan0 public
default_of() { jget "[p['$2']['verdict'] for p in v['profiles'] if p['profile'] == '$1']" <"$WORK/profiles.json" | grep -qx "\[\"$3\"\]"; }
check "show profiles: domain inbound default is allow" default_of domain inbound allow
check "show profiles: private outbound default is block" default_of private outbound block
check "show profiles: public inbound default is block" default_of public inbound block
human_lists() { rf "$fw" show profiles | grep -Eq "^  $1 +$2 +by pattern\$"; }
check "human show profiles lists br-lan0 as private, by pattern" human_lists br-lan0 private

for v in 4 6; do
    if [ $v = 4 ]; then fwa=10.201.1.1 fwb=10.201.3.1 fwc=10.201.2.1 pa=10.201.1.2 pb=10.201.3.2 pc=10.201.2.2
    else fwa=fd00:201:1::1 fwb=fd00:201:3::1 fwc=fd00:201:2::1 pa=fd00:201:1::2 pb=fd00:201:3::2 pc=fd00:201:2::2; fi
    # Peer A, on eth0: domain, inbound allowed by default.
    check  "A (domain): tcp/9091 allowed by the domain default (v$v)" tcp "$a" $fwa 9091
    check  "A (domain): udp/5301 allowed by the domain default (v$v)" udp "$a" $fwa 5301
    check  "A (domain): ping allowed by the domain default (v$v)" ping1 "$a" $fwa
    refute "A (domain): profiles:[domain] block rule stops tcp/9090 (v$v)" tcp "$a" $fwa 9090
    refute "A (domain): interfaces:[eth0] block rule stops udp/5300 (v$v)" udp "$a" $fwa 5300
    # Peer B, on wan0: public, inbound blocked by default.
    check  "B (public): interfaces:[wan0] allow rule lets tcp/2222 in (v$v)" tcp "$b" $fwb 2222
    refute "B (public): profiles:[private] rule does not open tcp/8080 here (v$v)" tcp "$b" $fwb 8080
    refute "B (public): tcp/9091 blocked by the public default (v$v)" tcp "$b" $fwb 9091
    refute "B (public): ping blocked by the public default (v$v)" ping1 "$b" $fwb
    # Peer C, on br-lan0: private, inbound blocked by default.
    check  "C (private): profiles:[private] allow rule lets tcp/8080 in (v$v)" tcp "$c" $fwc 8080
    refute "C (private): interfaces:[wan0] rule does not open tcp/2222 here (v$v)" tcp "$c" $fwc 2222
    refute "C (private): tcp/9091 blocked by the private default (v$v)" tcp "$c" $fwc 9091
    # Outbound: private blocks by default, with a private-only allow rule.
    check  "out to C (private): profiles:[private] allow rule lets tcp/8000 out (v$v)" tcp "$fw" $pc 8000
    refute "out to C (private): tcp/8001 blocked by the private outbound default (v$v)" tcp "$fw" $pc 8001
    check  "out to B (public): tcp/8001 allowed by the public outbound default (v$v)" tcp "$fw" $pb 8001
    check  "out to A (domain): tcp/8001 allowed by the domain outbound default (v$v)" tcp "$fw" $pa 8001
done

# The profile defaults counted what they dropped.
rf "$fw" show profiles --json >"$WORK/profiles.json"
counted() { [ "$(jget "[p['$2']['packets'] for p in v['profiles'] if p['profile'] == '$1'][0]" <"$WORK/profiles.json")" -gt 0 ]; }
check "public inbound default counted the packets it dropped" counted public inbound
check "private outbound default counted the packets it dropped" counted private outbound
check "the daemon is still running" kill -0 "$DAEMON_PID"
finish
