#!/usr/bin/env bash
# Unit rules (`units:`): traffic of a process in a unit's cgroup is allowed,
# the same traffic from another cgroup blocked, outbound and inbound (the
# listener's cgroup); the rules follow the unit as it restarts (a new cgroup
# id), starts after the policy was applied and stops, by set elements only.
# (integration/cgroups.sh says how units are made here.) The daemon of a
# namespace without cgroup2 mounted refuses unit rules.
source "$(dirname "$0")/../lib.sh"
source "$ROOT/integration/cgroups.sh"

fw=$(host fw); peer=$(host peer); bare=$(host bare)
link "$fw" eth0 10.97.0.1 fd00:97::1 "$peer" eth0 10.97.0.2 fd00:97::2
UNIT=rftest-$$.service OTHER=rfother-$$.service LATE=rflate-$$.service
start "$UNIT"
start "$OTHER"
# The cgroups in the set of the rule out-web, as nft names them (a path; the
# id of a cgroup that no longer exists as a number).
SET=out_allow_all_unit_proto_rport
elements() { cg "$fw" nft -j list set inet ringfence "$SET" | python3 -c '
import json, sys
s = [o["set"] for o in json.load(sys.stdin)["nftables"] if "set" in o][0]
print(" ".join(sorted(str(e["elem"]["val"]["concat"][0]) for e in s.get("elem", []))))'; }
# holds_within SECONDS WANT: the set holds exactly WANT before SECONDS pass.
holds_within() {
    local end=$(($(date +%s%N) + ${1%.*}000000000))
    while [ "$(date +%s%N)" -lt "$end" ]; do
        [ "$(elements)" = "$2" ] && return 0
        sleep 0.05
    done
    echo "after $1 s the set holds: $(elements) (want: $2)"; return 1
}

mkdir "$WORK/policy"
mask_default "$WORK/policy"
cat >"$WORK/policy/10-units.yaml" <<YAML
version: 1
profiles:
  public: { inbound: block, outbound: block }
rules:
  - { name: out-web, direction: out, action: allow, protocol: tcp, remote-ports: [80], units: [$UNIT, $LATE] }
  - { name: in-web, direction: in, action: allow, protocol: tcp, local-ports: [8080, 8081], units: [$UNIT] }
YAML
echo "$ND_RULE" >>"$WORK/policy/10-units.yaml"
daemon_launch "$fw" cg "$fw" "$RINGFENCE" --socket "$(sock "$fw")" daemon --policy-dir "$WORK/policy"
check "the table loaded from nft's text syntax has the unit lookups" \
    sh -c "ip netns exec $fw nft list chain inet ringfence out_public | grep -q 'socket cgroupv2 level 2 . meta l4proto . th dport @$SET'"
check "the set holds the running unit" holds_within 1 "system.slice/$UNIT"
check "show rules names the units" sh -c "ip netns exec $fw timeout 30 $RINGFENCE --socket $(sock "$fw") show rules | grep -q 'unit=$UNIT,$LATE'"

serve_tcp "$peer" 80
check "outbound from the unit's cgroup is allowed" connect "$fw" "$UNIT" 10.97.0.2 80
refute "outbound from another cgroup is blocked" connect "$fw" "$OTHER" 10.97.0.2 80
serve "$fw" "$UNIT" 8080
serve "$fw" "$OTHER" 8081
check "inbound to the unit's listener is allowed" tcp "$peer" 10.97.0.1 8080
refute "inbound to another cgroup's listener is blocked" tcp "$peer" 10.97.0.1 8081

verdict() { rf "$fw" explain --direction out --protocol tcp --remote 10.97.0.2 --remote-port 80 --unit "$1" --json | jget 'v["verdict"]'; }
is() { [ "$("${@:2}")" = "$1" ]; }
check "explain: the unit's connection is allowed" is allow verdict "$UNIT"
check "explain: another unit's is blocked" is block verdict "$OTHER"
check "explain: a unit of the rule that is not running is blocked" is block verdict "$LATE"

generation() { rf "$fw" show state --json | jget 'v["generation"]'; }
before=$(generation)
stop "$UNIT"
start "$UNIT"
check "the restarted unit (a new cgroup id) is in the set within 1 s" holds_within 1 "system.slice/$UNIT"
check "the restarted unit is allowed" connect "$fw" "$UNIT" 10.97.0.2 80

start "$LATE"
check "a unit started after the policy is in the set within 1 s" holds_within 1 "system.slice/$LATE system.slice/$UNIT"
check "the unit started later is allowed" connect "$fw" "$LATE" 10.97.0.2 80
stop "$LATE"
check "the stopped unit's element is gone within 1 s" holds_within 1 "system.slice/$UNIT"
check "the table was not replaced while the units came and went" test "$(generation)" = "$before"
refute "the daemon logged no error" --status 1 grep -Ei "error|failed" "$WORK/$fw.log"

# Without cgroup2 where nft looks: `check` and the daemon refuse the rules.
refute "check refuses unit rules without cgroup2" --says "10-units.yaml:5:5: rule \"out-web\": units: this host has no cgroup v2" \
    ip netns exec "$bare" "$RINGFENCE" check --policy-dir "$WORK/policy"
mkdir "$WORK/bare"
mask_default "$WORK/bare"
printf 'version: 1\nrules:\n%s\n' "$ND_RULE" >"$WORK/bare/10-nd.yaml"
daemon_start "$bare" "$WORK/bare"
grep -v "name: nd," "$WORK/policy/10-units.yaml" >"$WORK/bare/10-units.yaml"
kill -HUP "$DAEMON_PID"
last_error() { rf "$bare" show state --json | jget 'v.get("last-error") or ""'; }
says_no_cgroup2() { for _ in $(seq 50); do last_error | grep -q "no cgroup v2 hierarchy" && return 0; sleep 0.1; done; last_error; return 1; }
check "show state says why the unit rules are refused" says_no_cgroup2
check "the table in force is the one before, without unit lookups" \
    sh -c "t=\$(ip netns exec $bare nft list table inet ringfence) && ! echo \"\$t\" | grep -q cgroupv2"
finish
