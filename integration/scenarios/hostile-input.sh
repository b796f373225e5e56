#!/usr/bin/env bash
# Input a local user or a broken tool can put in front of the daemon, beyond the
# policy corpus of bad-input.sh:
# - lease files: a NetworkManager-style name with a two-byte character where
#   the dash after the UUID goes (byte 37 inside it: the daemon panicked
#   there), and a dhclient file nested 100,000 blocks deep (unbounded
#   recursion): the daemon keeps running and keeps following the good files;
# - a policy value of 1,000,000 characters: apply fails, and `show state`'s
#   last error quotes 80 characters of it, not the megabyte.
source "$(dirname "$0")/../lib.sh"

fw=$(host fw)
P="$WORK/policy"; L="$WORK/leases"
mkdir "$P" "$L"
cat >"$P/10-dhcp.yaml" <<'YAML'
version: 1
rules:
  - { name: to-dhcp, direction: out, action: allow, protocol: tcp, remote-addresses: [dhcp], remote-ports: [8067] }
YAML
# Present from the start: read before the first table.
straddling="internal-$(printf '%*s' 36 '' | tr ' ' a)é-eth0.lease"
printf 'ADDRESS=10.1.1.5\nSERVER_ADDRESS=10.1.1.1\n' >"$L/$straddling"
daemon_start "$fw" "$P" --leases "$L"

# dhcp4 ADDR: the dhcp set holds ADDR, per show sets and per the kernel.
# (Outputs are read whole: `grep -q` would close the pipe early, and under
# pipefail the writer's SIGPIPE would fail the check.)
dhcp4() {
    local shown kernel
    shown=$(rf "$fw" show sets --json | jget '[e["address"] for s in v if s["set"] == "dyn_dhcp4" for e in s["elements"]]')
    kernel=$(ip netns exec "$fw" nft list set inet ringfence dyn_dhcp4)
    grep -q "\"$1\"" <<<"$shown" && grep -qw "$1" <<<"$kernel"
}

check "a lease file named with a two-byte character at byte 37: the daemon runs" rf "$fw" show state
check "... and its server is in the dhcp set" dhcp4 10.1.1.1
check "... under the file's whole name" rf "$fw" show sets
said "... (the name as it is)" "$straddling"

{ printf 'lease {\n'; printf '%*s' 100000 '' | sed 's/ /x {/g'; printf '%*s' 100000 '' | tr ' ' '}'; printf '}\n'; } \
    >"$L/dhclient.deep.leases"
printf 'lease {\n  interface "eth1";\n  option dhcp-server-identifier 10.2.2.2;\n}\n' >"$L/dhclient.eth1.leases"
check "a dhclient file nested 100,000 blocks deep is refused, the next good file followed" wait_for 10 dhcp4 10.2.2.2
check "... the daemon still runs" kill -0 "$DAEMON_PID"
check "... the log gives the reason" grep -q "nested more than 8 deep" "$WORK/$fw.log"
check "... and the first lease is still there" dhcp4 10.1.1.1

# --- a huge invalid value
{ printf 'version: 1\nrules:\n  - { name: huge, direction: in, action: allow, protocol: tcp, local-ports: ["'
  printf '%*s' 1000000 '' | tr ' ' 9; printf '"] }\n'; } >"$P/20-huge.yaml"
refute "a policy with a 1,000,000-character port is refused" --status 1 --says "\(1000000 characters\) is not a port" \
    rf "$fw" apply
check "... in a short message" sh -c "[ \$(wc -c <'$WORK/last.out') -lt 1000 ]"
state "$fw" last-error >"$WORK/last-error" 2>&1
check "show state's last error quotes 80 characters of the value and an ellipsis" \
    grep -q "\"$(printf '%*s' 80 '' | tr ' ' 9)…\" (1000000 characters) is not a port or port range" "$WORK/last-error"
check "... and is short ($(wc -c <"$WORK/last-error") bytes)" test "$(wc -c <"$WORK/last-error")" -lt 1000
check "no line of the daemon's log is longer than 2000 characters" \
    awk 'length($0) > 2000 { long = 1 } END { exit long }' "$WORK/$fw.log"
finish
