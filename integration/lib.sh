# Shared helpers for the namespace scenarios; source it from a scenario script.
#
# Every scenario builds its own hosts as network namespaces named after its PID,
# runs every command under a timeout, and tears everything down in an EXIT trap,
# so a failed or interrupted run leaves nothing behind on the machine.
# Test traffic only ever goes to addresses inside these namespaces.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Inline Python in the scenarios imports integration/nftjson.py.
export PYTHONPATH="$ROOT/integration${PYTHONPATH:+:$PYTHONPATH}"
RINGFENCE=${RINGFENCE:-$ROOT/target/debug/ringfence}
WORK=$(mktemp -d /tmp/ringfence-test.XXXXXX)
PREFIX="rf$$"
SCENARIO=$(basename "$0" .sh)
PASSED=0
FAILED=0
_PIDS=()

_cleanup() {
    local pid ns
    for pid in "${_PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    # `host` usually runs in a command substitution (a subshell), so a list kept
    # by it would miss those namespaces: delete every namespace with this run's
    # prefix, and the daemon's lock file of each (named by the namespace's inode).
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$PREFIX-"); do
        rm -f "/run/ringfence/netns-$(stat -L -c %i "/run/netns/$ns").lock"
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap _cleanup EXIT

# A missing tool must stop the scenario, not quietly turn every `refute` that
# uses it into a pass (a `ping` that cannot run looks exactly like a blocked ping).
for _tool in nft ip ss socat ping setpriv timeout python3 dnsmasq; do
    command -v "$_tool" >/dev/null || { echo "$SCENARIO: $_tool is missing (run integration/install-deps.sh)"; exit 1; }
done

pass() { PASSED=$((PASSED + 1)); echo "  ok   $SCENARIO: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL $SCENARIO: $*"; }

# check DESCRIPTION CMD...: passes when CMD succeeds.
check() { local d=$1; shift; if "$@" >"$WORK/last.out" 2>&1; then pass "$d"; else fail "$d"; sed 's/^/       | /' "$WORK/last.out" | tail -20; fi; }
# refute DESCRIPTION [--status N] [--says REGEX] CMD...: passes when CMD fails
# the way expected: with exit status N if given, otherwise with any status but
# 124 (timeout(1) stopped it), 126 and 127 (it could not run: a typo in a
# command or function name), which are never the refusal a test looks for;
# and, with --says, with output matching REGEX (extended, case-insensitive).
refute() {
    local d=$1 status= says= rc=0 why=; shift
    while :; do
        case ${1:-} in
            --status) status=$2; shift 2 ;;
            --says) says=$2; shift 2 ;;
            *) break ;;
        esac
    done
    "$@" >"$WORK/last.out" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        why="it succeeded"
    elif [ -n "$status" ] && [ "$rc" -ne "$status" ]; then
        why="exit status $rc, not $status"
    elif [ -z "$status" ] && { [ "$rc" -eq 124 ] || [ "$rc" -eq 126 ] || [ "$rc" -eq 127 ]; }; then
        why="exit status $rc: it timed out or could not run"
    elif [ -n "$says" ] && ! grep -qiE -- "$says" "$WORK/last.out"; then
        why="it failed, but its output does not match /$says/"
    fi
    if [ -z "$why" ]; then pass "$d"; else fail "$d ($why)"; sed 's/^/       | /' "$WORK/last.out" | tail -20; fi
}

# said DESCRIPTION REGEX: passes when the output of the previous check/refute
# matches REGEX (extended, case-insensitive).
said() {
    cp "$WORK/last.out" "$WORK/said.out"
    if grep -qiE -- "$2" "$WORK/said.out"; then pass "$1"; else fail "$1"; sed 's/^/       | /' "$WORK/said.out" | tail -20; fi
}

# Prints the closing line run-all.sh and CI read, and exits non-zero on failure.
finish() {
    echo "$SCENARIO: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

# host NAME: a new namespace "$PREFIX-NAME" with loopback up; prints its name.
host() {
    local ns="$PREFIX-$1"
    ip netns add "$ns"
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

# switch NAME: a new host holding an Ethernet switch, the bridge br0; prints its name.
switch() {
    local ns
    ns=$(host "$1")
    ip -n "$ns" link add br0 type bridge
    ip -n "$ns" link set br0 up
    echo "$ns"
}

# port SWITCH NS [ADDR4]: NS's eth0 plugged into SWITCH, with ADDR4/24 if given.
port() {
    local peer="p-${2##*-}"
    ip link add eth0 netns "$2" type veth peer name "$peer" netns "$1"
    ip -n "$1" link set "$peer" master br0 up
    [ -z "${3:-}" ] || ip -n "$2" addr add "$3/24" dev eth0
    ip -n "$2" link set eth0 up
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
    daemon_launch "$ns" ip netns exec "$ns" "$RINGFENCE" --socket "$(sock "$ns")" daemon --policy-dir "$dir" "$@"
}

# daemon_launch NS CMD...: runs CMD, a daemon serving NS's socket, in the
# background (DAEMON_PID, its log $WORK/NS.log) and waits until it answers.
daemon_launch() {
    local ns=$1; shift
    "$@" >>"$WORK/$ns.log" 2>&1 &
    DAEMON_PID=$!
    _PIDS+=("$DAEMON_PID")
    disown
    local i
    # Generous: creating and destroying namespaces elsewhere on the machine can
    # hold the first netlink call of a fresh namespace for seconds.
    for i in $(seq 300); do
        rf "$ns" show state >/dev/null 2>&1 && return 0
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "daemon in $ns did not start:"; cat "$WORK/$ns.log"
    return 1
}

# Neighbour discovery, as a rule of the policy's own. Core networking accepts
# it anyway (docs/policy.md); the scenarios that turn core networking off or
# test the policy's own sets keep it.
ND_RULE='  - { name: nd, direction: in, action: allow, protocol: icmpv6, icmp-types: [nd-neighbor-solicit, nd-neighbor-advert] }'

# mask_default DIR: a policy without the default layer (SSH and ping allowed):
# its name in DIR, a symlink to /dev/null, masks it, as an administrator would.
mask_default() { ln -s /dev/null "$1/00-default.yaml"; }

# table NS: the ringfence table as JSON, for byte-for-byte comparisons.
table() { ip netns exec "$1" nft -j list table inet ringfence; }

# serve_tcp NS PORT / serve_udp NS PORT: a server answering "ok" on every address
# (IPv4 and IPv6) of NS.
serve_tcp() { bg "$1" socat "TCP6-LISTEN:$2,ipv6only=0,reuseaddr,fork" SYSTEM:'echo ok'; wait_port "$1" "$2" tcp; }
# (The UDP answer reads the datagram first: a program that exits without reading
# makes socat's write of the datagram fail with EPIPE, and socat may then quit
# before it has sent "ok".)
serve_udp() { bg "$1" socat "UDP6-RECVFROM:$2,ipv6only=0,reuseaddr,fork" SYSTEM:'timeout 1 head -n1 >/dev/null; echo ok'; wait_port "$1" "$2" udp; }

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

# _as NS [USER]: the command prefix that runs inside NS, as USER (name or uid, with
# that user's primary group and no supplementary groups) when given.
_as() {
    _RUN=(ip netns exec "$1")
    if [ -n "${2:-}" ]; then
        local gid
        gid=$(id -g "$2") || return 1
        _RUN+=(setpriv --reuid "$2" --regid "$gid" --clear-groups)
    fi
}

# tcp FROM_NS ADDR PORT [AS_USER]: succeeds when a TCP connection gets "ok" back.
tcp() {
    _as "$1" "${4:-}" || return 1
    "${_RUN[@]}" timeout 5 socat -T2 - "TCP:$(_addr "$2"):$3,connect-timeout=2" </dev/null | grep -qx ok
}

# udp FROM_NS ADDR PORT [AS_USER]: succeeds when a UDP datagram gets "ok" back
# within 2 s. (A socat client gives up 0.5 s after its stdin ends, which a busy
# machine's forking server can miss; this client returns as soon as the answer
# comes.)
udp() {
    _as "$1" "${4:-}" || return 1
    # (The outer timeout only stops a hung interpreter: starting Python takes
    # seconds in the test VM on a busy machine. The socket's timeout is the check.)
    "${_RUN[@]}" timeout 20 python3 -c '
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(b"hi\n", (host, port))
try:
    data = s.recv(512)
except OSError as e:
    sys.exit(f"no answer from {host} port {port}: {e}")
sys.exit(0 if data.strip() == b"ok" else f"unexpected answer {data!r}")' "$2" "$3"
}

# dns_query NS SERVER PROTO ANSWER: from NS, a DNS query for test.ringfence (A)
# over udp or tcp to SERVER port 53 gets the answer ANSWER within 1.5 s.
dns_query() {
    ip netns exec "$1" timeout 20 python3 -c '
import random, socket, struct, sys
server, proto, want = sys.argv[1], sys.argv[2], socket.inet_aton(sys.argv[3])
qid = random.randrange(1 << 16)
q = struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + b"".join(bytes([len(w)]) + w for w in (b"test", b"ringfence", b"")) + struct.pack("!2H", 1, 1)
family = socket.AF_INET6 if ":" in server else socket.AF_INET
try:
    if proto == "udp":
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.settimeout(1.5)
        s.sendto(q, (server, 53))
        r = s.recv(4096)
    else:
        s = socket.create_connection((server, 53), timeout=1.5)
        s.sendall(struct.pack("!H", len(q)) + q)
        r = b""
        while len(r) < 2 or len(r) < 2 + struct.unpack("!H", r[:2])[0]:
            chunk = s.recv(4096)
            if not chunk:
                sys.exit("connection closed early")
            r += chunk
        r = r[2:]
except OSError as e:
    sys.exit(f"no answer from {server} ({proto}): {e}")
rid, flags, _, ancount = struct.unpack("!4H", r[:8])
ok = rid == qid and flags & 0x8000 and flags & 0xF == 0 and ancount >= 1 and want in r[len(q):]
print(f"answer from {server} ({proto}): rcode {flags & 0xF}, {ancount} answers")
sys.exit(0 if ok else f"not the expected answer {sys.argv[3]}: {r!r}")' "$2" "$3" "$4"
}

# ping1 FROM_NS ADDR: one echo request, answered within a second.
ping1() { ip netns exec "$1" ping -c1 -W1 "$2" >/dev/null; }

# table_shape NS: the ringfence table as JSON without packet/byte counters and
# object handles, for comparing rulesets that saw different traffic or were
# re-created (a rollback re-creates the table, so the kernel gives new handles).
table_shape() { table "$1" | _strip_counters; }
# table_same NS: the table with counters left out but handles kept: equal output
# means nothing replaced or changed the table, whatever traffic (neighbour
# discovery never stops) did to its counters. The check for "byte-identical".
table_same() { table "$1" | _strip_counters keep-handles; }
# table_rules NS: the table without set elements and counters, handles kept:
# what must not change when only the dynamic sets' elements do.
table_rules() { table "$1" | _strip_counters keep-handles drop-elements; }

# nft_table NS FAMILY NAME: any table as JSON (e.g. an admin's own table).
nft_table() { ip netns exec "$1" nft -j list table "$2" "$3"; }

_strip_counters() {
    python3 -c '
import json, sys
def strip(v):
    if isinstance(v, dict):
        return {k: (None if k == "counter" and isinstance(x, dict) else strip(x)) for k, x in v.items()
                if (keep or k != "handle") and not (drop_elements and k == "elem")}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
keep = "keep-handles" in sys.argv[1:]
drop_elements = "drop-elements" in sys.argv[1:]
print(json.dumps(strip(json.load(sys.stdin)), sort_keys=True))' "$@"
}

# jget EXPR: reads JSON on stdin and prints the Python expression EXPR of it (the
# document is `v`); strings print bare, everything else as JSON.
jget() {
    python3 -c '
import json, sys
v = json.load(sys.stdin)
r = eval(sys.argv[1], {"v": v})
print(r if isinstance(r, str) else json.dumps(r))' "$1"
}

# state NS KEY: one field of `show state --json` of NS's daemon.
state() { rf "$1" show state --json | jget "v[\"$2\"]"; }

# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds (status 0) or
# SECONDS pass (status 1).
wait_for() {
    local deadline=$((${EPOCHREALTIME/./} + $1 * 1000000)); shift
    until "$@" >/dev/null 2>&1; do
        [ "${EPOCHREALTIME/./}" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# wait_gen NS N: waits (at most 5 s) until NS's daemon has applied generation N or later.
wait_gen() { wait_for 5 _gen_at_least "$1" "$2"; }
_gen_at_least() { [ "$(state "$1" generation)" -ge "$2" ]; }

# logged NS TEXT: how many lines of NS's daemon log hold TEXT (a fixed string).
logged() { grep -cF -- "$2" "$WORK/$1.log" || true; }

# wait_logged NS TEXT N: waits (at most 10 s) until more than N lines of NS's
# daemon log hold TEXT. The barrier before checking that something did not
# happen: count, act, then wait for the line that proves the daemon has
# handled the action (a reload, a file read) instead of sleeping.
wait_logged() { wait_for 10 _logged_more "$@"; }
_logged_more() { [ "$(logged "$1" "$2")" -gt "$3" ]; }

# wait_exit PID: waits (at most 5 s) until the process PID is gone.
wait_exit() { wait_for 5 _gone "$1"; }
_gone() { ! kill -0 "$1" 2>/dev/null || [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" = Z ]; }

# A test PKI in $PKI (the caller sets and creates it): ECDSA P-256 keys (PKCS#8)
# and certificates valid for two days. pki_ca NAME SUBJECT: a self-signed CA;
# pki_leaf NAME CA SUBJECT [SAN]: a certificate signed by CA, with the
# subjectAltName SAN (default DNS:NAME).
_pki_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$1.key" 2>/dev/null; }
pki_ca() { _pki_key "$1"; openssl req -new -x509 -key "$PKI/$1.key" -out "$PKI/$1.pem" -days 2 -subj "$2" 2>/dev/null; }
pki_leaf() {
    _pki_key "$1"
    openssl req -new -key "$PKI/$1.key" -subj "$3" -out "$PKI/$1.csr" 2>/dev/null
    echo "subjectAltName=${4:-DNS:$1}" >"$PKI/$1.ext"
    openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/$2.pem" -CAkey "$PKI/$2.key" -CAcreateserial -days 2 \
        -extfile "$PKI/$1.ext" -out "$PKI/$1.pem" 2>/dev/null
}

# Location detection (profiles.domain.detect), with the test PKI in $PKI.
# dc_dns NS ADDR4 ANSWER: dnsmasq on ADDR4 answering dc.corp.test with ANSWER.
dc_dns() {
    bg "$1" dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts --log-facility=- \
        --address=/dc.corp.test/"$3" --listen-address="$2" --bind-interfaces --pid-file="$WORK/dnsmasq-$2.pid"
    wait_port "$1" 53 udp
}
# dc_https NS CERT: https on port 443 of NS with $PKI/CERT.pem and .key (its
# pid in $WORK/https-NS.pid).
dc_https() {
    ip netns exec "$1" socat "OPENSSL-LISTEN:443,reuseaddr,fork,verify=0,cert=$PKI/$2.pem,key=$PKI/$2.key" \
        SYSTEM:'echo ok' >>"$WORK/bg.log" 2>&1 &
    echo $! >"$WORK/https-$1.pid"; _PIDS+=($!); disown
    wait_port "$1" 443 tcp
}
# location_policy FILE [YAML...]: a policy whose domain profile (inbound
# allow) is detected by https://dc.corp.test/ with $PKI/domain-ca.pem, and
# the lines YAML added to its detect.
location_policy() {
    local file=$1; shift
    printf 'version: 1\nprofiles:\n  domain:\n    inbound: allow\n    detect:\n' >"$file"
    printf '      %s\n' 'probes: ["https://dc.corp.test/"]' "ca: $PKI/domain-ca.pem" "$@" >>"$file"
}
