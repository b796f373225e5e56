#!/usr/bin/env bash
# Outbound rules scoped to the local socket's owner (`users:`, by name and by
# uid): the same connection works for one user and is blocked for another.
source "$(dirname "$0")/../lib.sh"

fw=$(host fw); peer=$(host peer)
link "$fw" eth0 10.202.0.1 fd00:202::1 "$peer" eth0 10.202.0.2 fd00:202::2

nobody_uid=$(id -u nobody)
mkdir "$WORK/policy"
cat >"$WORK/policy/10-users.yaml" <<YAML
version: 1
rules:
  - { name: nobody-no-web, direction: out, action: block, protocol: tcp, remote-ports: [8000], users: [nobody] }
  - { name: uid-no-dns, direction: out, action: block, protocol: udp, remote-ports: [5353], users: [$nobody_uid] }
  - { name: daemon-no-8001, direction: out, action: block, protocol: tcp, remote-ports: [8001], users: [daemon] }
YAML
echo "$ND_RULE" >>"$WORK/policy/10-users.yaml"
daemon_start "$fw" "$WORK/policy"
serve_tcp "$peer" 8000
serve_tcp "$peer" 8001
serve_udp "$peer" 5353
serve_udp "$peer" 5354

for a in 10.202.0.2 fd00:202::2; do
    check  "root connects to tcp/8000 ($a)" tcp "$fw" $a 8000
    refute "users:[nobody] blocks nobody's tcp/8000 ($a)" tcp "$fw" $a 8000 nobody
    check  "nobody still reaches tcp/8001, blocked only for daemon ($a)" tcp "$fw" $a 8001 nobody
    refute "users:[daemon] blocks daemon's tcp/8001 ($a)" tcp "$fw" $a 8001 daemon
    check  "root reaches udp/5353 ($a)" udp "$fw" $a 5353
    refute "users:[$nobody_uid] (a uid) blocks nobody's udp/5353 ($a)" udp "$fw" $a 5353 nobody
    check  "nobody reaches udp/5354, which no rule names ($a)" udp "$fw" $a 5354 nobody
done

verdict() { rf "$fw" explain --direction out --protocol "$1" --remote 10.202.0.2 --remote-port "$2" --user "$3" --json | jget 'v["verdict"]'; }
is() { [ "$("${@:2}")" = "$1" ]; }
check "explain: tcp/8000 as nobody is blocked" is block verdict tcp 8000 nobody
check "explain: tcp/8000 as root is allowed" is allow verdict tcp 8000 root
check "explain: udp/5353 as uid $nobody_uid is blocked" is block verdict udp 5353 "$nobody_uid"
packets() { rf "$fw" show rules --json | jget "[r['packets'] for r in v if r['name'] == '$1'][0]"; }
positive() { [ "$("$@")" -gt 0 ]; }
check "show rules counted nobody's blocked SYNs" positive packets nobody-no-web
users_of() { rf "$fw" show rules --json | jget "[r['users'] for r in v if r['name'] == '$1'][0]"; }
check "show rules gives the rule's user as its uid" is "[$nobody_uid]" users_of nobody-no-web
check "the daemon is still running" kill -0 "$DAEMON_PID"
finish
