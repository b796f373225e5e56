# Shared helpers for the namespace scenarios; source it from a scenario script.
#
# Every scenario builds its own hosts as network namespaces named after its PID,
# runs every command under a timeout, and tears everything down in an EXIT trap,
# so a failed or interrupted run leaves nothing behind on the machine.
# Test traffic only ever goes to addresses inside these namespaces.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RINGFENCE=${RINGFENCE:-$ROOT/target/debug/ringfence}
WORK=$(mktemp -d /tmp/ringfence-test.XXXXXX)
PREFIX="rf$$"
SCENARIO=$(basename "$0" .sh)
PASSED=0
FAILED=0
_NETNS=()
_PIDS=()

_cleanup() {
    local pid ns
    for pid in "${_PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for ns in "${_NETNS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap _cleanup EXIT

pass() { PASSED=$((PASSED + 1)); echo "  ok   $SCENARIO: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL $SCENARIO: $*"; }

# check DESCRIPTION CMD...: passes when CMD succeeds.
check() { local d=$1; shift; if "$@" >"$WORK/last.out" 2>&1; then pass "$d"; else fail "$d"; sed 's/^/       | /' "$WORK/last.out" | tail -20; fi; }
# refute DESCRIPTION CMD...: passes when CMD fails.
refute() { local d=$1; shift; if "$@" >"$WORK/last.out" 2>&1; then fail "$d"; sed 's/^/       | /' "$WORK/last.out" | tail -20; else pass "$d"; fi; }

# Prints the closing line run-all.sh and CI read, and exits non-zero on failure.
finish() {
    echo "$SCENARIO: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

# host NAME: a new namespace "$PREFIX-NAME" with loopback up; prints its name.
host() {
    local ns="$PREFIX-$1"
    ip netns add "$ns"
    _NETNS+=("$ns")
    ip -n "$ns" link set lo up
    echo "$ns"
}

# link NS_A IF_A ADDR4_A ADDR6_A NS_B IF_B ADDR4_B ADDR6_B: a veth pair between two
# hosts with IPv4 /24 and IPv6 /64 addresses (DAD off so they are usable at once).
link() {
    ip link add "$2" netns "$1" type veth peer name "$6" netns "$5"
    ip -n "$1" addr add "$3/24" dev "$2"
    ip -n "$1" addr add "$4/64" dev "$2" nodad
    ip -n "$5" addr add "$7/24" dev "$6"
    ip -n "$5" addr add "$8/64" dev "$6" nodad
    ip -n "$1" link set "$2" up
    ip -n "$5" link set "$6" up
}

# bg NS CMD...: runs CMD in the background inside NS; killed at exit.
bg() { local ns=$1; shift; ip netns exec "$ns" "$@" >>"$WORK/bg.log" 2>&1 & _PIDS+=($!); disown; }

# The control socket of the daemon of NS.
sock() { echo "$WORK/$1.sock"; }

# rf NS ARGS...: the CLI, inside NS, talking to NS's daemon.
rf() { local ns=$1; shift; ip netns exec "$ns" timeout 30 "$RINGFENCE" --socket "$(sock "$ns")" "$@"; }

# daemon_start NS POLICY_DIR [ARGS...]: starts the daemon in NS and waits until it
# answers (DAEMON_PID is its pid, its log is $WORK/NS.log).
daemon_start() {
    local ns=$1 dir=$2; shift 2
    ip netns exec "$ns" "$RINGFENCE" --socket "$(sock "$ns")" daemon --policy-dir "$dir" "$@" \
        >>"$WORK/$ns.log" 2>&1 &
    DAEMON_PID=$!
    _PIDS+=("$DAEMON_PID")
    disown
    local i
    for i in $(seq 100); do
        rf "$ns" show state >/dev/null 2>&1 && return 0
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "daemon in $ns did not start:"; cat "$WORK/$ns.log"
    return 1
}

# The rule every IPv6 test policy needs: without neighbour discovery a host
# cannot resolve its neighbours' addresses (the shipped default policy has it).
ND_RULE='  - { name: nd, direction: in, action: allow, protocol: icmpv6, icmp-types: [nd-neighbor-solicit, nd-neighbor-advert] }'

# table NS: the ringfence table as JSON, for byte-for-byte comparisons.
table() { ip netns exec "$1" nft -j list table inet ringfence; }

# serve_tcp NS PORT / serve_udp NS PORT: a server answering "ok" on every address
# (IPv4 and IPv6) of NS.
serve_tcp() { bg "$1" socat "TCP6-LISTEN:$2,ipv6only=0,reuseaddr,fork" SYSTEM:'echo ok'; wait_port "$1" "$2" tcp; }
serve_udp() { bg "$1" socat "UDP6-RECVFROM:$2,ipv6only=0,reuseaddr,fork" SYSTEM:'echo ok'; wait_port "$1" "$2" udp; }

wait_port() {
    local i flag=-tln
    [ "$3" = udp ] && flag=-uln
    for i in $(seq 50); do
        ip netns exec "$1" ss -H "$flag" "sport = :$2" | grep -q . && return 0
        sleep 0.1
    done
    echo "no $3 listener on port $2 in $1"; return 1
}

# Address literal for socat: IPv6 in brackets.
_addr() { case $1 in *:*) echo "[$1]" ;; *) echo "$1" ;; esac; }

# tcp FROM_NS ADDR PORT [AS_USER]: succeeds when a TCP connection gets "ok" back.
tcp() {
    local run=(ip netns exec "$1")
    [ $# -ge 4 ] && run+=(setpriv --reuid "$4" --regid "$4" --clear-groups)
    "${run[@]}" timeout 5 socat -T2 - "TCP:$(_addr "$2"):$3,connect-timeout=2" </dev/null | grep -qx ok
}

# udp FROM_NS ADDR PORT: succeeds when a UDP datagram gets "ok" back.
udp() { echo hi | ip netns exec "$1" timeout 5 socat -T2 - "UDP:$(_addr "$2"):$3" | grep -qx ok; }

# ping1 FROM_NS ADDR: one echo request, answered within a second.
ping1() { ip netns exec "$1" ping -c1 -W1 "$2" >/dev/null; }
