# Helpers for scripts that run inside the test VM (integration/vm/run.sh SCRIPT);
# source it from such a script. It sources integration/lib.sh (hosts as network
# namespaces, links, check/refute/finish, wait_for, cleanup in an EXIT trap) and
# adds what IPsec tests need: a throwaway PKI, one charon per namespace driven
# over VICI, packet captures on the wire and nft counters.
#
# Inside the VM / is this machine's root, read-only; /tmp (so $WORK), /run and
# /mnt are tmpfs. The kernel is Debian's, with ESP; its modules are loaded at
# boot (integration/vm/guest-modules.txt).

if [ -z "${RF_VM_KDIR:-}" ]; then
    echo "$(basename "$0"): runs inside the test VM: bash integration/vm/run.sh $0"
    exit 1
fi
_RINGFENCE_GIVEN=${RINGFENCE:-}
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# prefer_release: for benchmarks, the release build when there is one and
# RINGFENCE (passed on by run.sh) named no binary.
prefer_release() {
    [ -n "$_RINGFENCE_GIVEN" ] || [ ! -x "$ROOT/target/release/ringfence" ] || RINGFENCE=$ROOT/target/release/ringfence
}
VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v tcpdump >/dev/null || { echo "$SCENARIO: tcpdump is missing (run integration/install-deps.sh)"; exit 1; }

# finish: as lib.sh's, but on failure first shows the end of every charon and
# Ringfence daemon log (the guest's files are gone once it powers off).
finish() {
    local f
    if [ "$FAILED" -ne 0 ]; then
        for f in "$WORK"/*.log; do
            case $f in *.charon.log | */bg.log) ;; */"$PREFIX"-*.log) ;; *) continue ;; esac
            [ -f "$f" ] || continue
            echo "--- last lines of $(basename "$f")"
            tail -n "${RF_VM_LOG_LINES:-40}" "$f" | sed 's/^/    /'
        done
    fi
    echo "$SCENARIO: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

# The PKI, one charon per namespace, swanctl (shared with the namespace scenarios).
# shellcheck source=../ipsec.sh
source "$VM_DIR/../ipsec.sh"

# swanctl_dir NS HOST CA...: the swanctl directory of NS ($WORK/NS.swanctl),
# holding HOST's key and certificate and the CA certificates; swanctl.conf is read
# from stdin. swanctl reads credentials from the folders beside swanctl.conf
# (x509/, x509ca/, private/); a `secrets` entry cannot name a key elsewhere.
swanctl_dir() {
    local ns=$1 me=$2 d="$WORK/$1.swanctl" ca; shift 2
    # (every folder swanctl --load-creds reads, so that it does not complain)
    mkdir -p "$d"/{x509,x509ca,x509ocsp,x509aa,x509ac,x509crl,pubkey,rsa,ecdsa,bliss,pkcs8,pkcs12,private}
    chmod 700 "$d/private"
    cp "$PKI/$me.crt" "$d/x509/"
    cp "$PKI/$me.key" "$d/private/"
    for ca in "$@"; do cp "$PKI/$ca.crt" "$d/x509ca/"; done
    cat >"$d/swanctl.conf"
}

# trap_conf CERT REMOTE_NET [LOCAL_ADDR [REQID]]: the swanctl.conf of a host
# configured by hand: one connection `lan` to any peer in REMOTE_NET whose
# certificate says OU=Members, authenticating with CERT, one ESP-null transport
# child trapped for REMOTE_NET (from LOCAL_ADDR, when given, as local address
# and selector). With REQID: the child's static reqid, and charon installs no
# policy (`policies = no`): the caller's xfrm policies name REQID, as
# Ringfence's do.
trap_conf() {
    local local_addrs="" local_ts="" reqid=""
    [ -z "${3:-}" ] || { local_addrs="local_addrs = $3"; local_ts="local_ts = $3/32"; }
    [ -z "${4:-}" ] || reqid="reqid = $4
                policies = no"
    cat <<CONF
connections {
    lan {
        version = 2
        $local_addrs
        remote_addrs = $2
        proposals = aes128gcm16-prfsha256-ecp256
        local {
            auth = pubkey
            certs = $1.crt
        }
        remote {
            auth = pubkey
            id = "C=XX, O=Example, OU=Members, CN=*"
        }
        children {
            lan {
                mode = transport
                esp_proposals = null-sha256
                $local_ts
                remote_ts = $2
                start_action = trap
                $reqid
            }
        }
    }
}
CONF
}

# sw_load NS [WHAT]: loads NS's swanctl directory into its charon: --load-all
# (default) or --load-conns, --load-creds...
sw_load() { sw "$1" "${2:---load-all}" --file "$WORK/$1.swanctl/swanctl.conf"; }

# nd_bypass NS: xfrm policies that let IPv6 neighbour discovery and router
# messages (ICMPv6 types 133-136) pass in clear, ahead of every IPsec policy
# (priority 1; charon's are near 390000, lower wins). Neighbour discovery goes
# through the xfrm policy lookup like any packet: a policy that requires ESP for
# a peer's address also catches the unicast neighbour advertisements and
# solicitations exchanged with that peer, so without this bypass IPv6 to the
# peer (IKE included) cannot even resolve its link-layer address.
nd_bypass() {
    local dir t
    for dir in in out; do
        for t in 133 134 135 136; do
            ip -n "$1" xfrm policy add dir "$dir" src ::/0 dst ::/0 proto ipv6-icmp type "$t" priority 1 action allow
        done
    done
}

# --- Ringfence members ----------------------------------------------------------------
# rf_policy NS DIR: NS's daemon applies the policy in DIR/policy: the first
# time it is started on it (DIR/resolv.conf, no lease files; DAEMON[NS] is its
# pid), later `ringfence apply`.
declare -A DAEMON=()
rf_policy() {
    local ns=$1 dir=$2
    if [ -n "${DAEMON[$ns]:-}" ]; then
        rf "$ns" apply >/dev/null
    else
        daemon_start "$ns" "$dir/policy" --resolv-conf "$dir/resolv.conf" --leases "$dir/no-leases"
        DAEMON[$ns]=$DAEMON_PID
    fi
}
# member_policy NS NAME [RESOLVER]: NS's daemon applies the policy on stdin,
# written as $WORK/NAME/policy/50-isolation.yaml (renamed into place, so that
# the daemon never reads it half-written), with RESOLVER as the only name
# server of $WORK/NAME/resolv.conf (none when not given).
member_policy() {
    local dir="$WORK/$2"
    mkdir -p "$dir/policy"
    if [ -n "${3:-}" ]; then echo "nameserver $3"; fi >"$dir/resolv.conf"
    cat >"$dir/policy/.50-isolation.yaml.new"
    mv "$dir/policy/.50-isolation.yaml.new" "$dir/policy/50-isolation.yaml"
    rf_policy "$1" "$dir"
}
# loaded NS: NS's daemon has loaded its connections into its charon.
loaded() { [ "$(rf "$1" show state --json | jget 'v["isolation"]["ike"]["loaded"]')" = true ]; }
not_loaded() { ! loaded "$1"; }

# child_sas any|all NS PEER COND: some (any) or every one (all, and at least one)
# of NS's CHILD SAs with PEER, as `ringfence show sas --json` shows them, meets
# COND, a Python expression over c (the CHILD SA's object).
child_sas() {
    rf "$2" show sas --json | python3 -c '
import json, sys
v = json.load(sys.stdin)
kids = [c for s in v["ike-sas"] if s["remote-host"] == sys.argv[2] for c in s["child-sas"].values()]
met = [eval(sys.argv[3], {"c": c}) for c in kids]
ok = any(met) if sys.argv[1] == "any" else bool(met) and all(met)
sys.exit(0 if ok else "not %s of %s" % (sys.argv[1], json.dumps(kids, indent=1)))' "$1" "$3" "$4"
}

# member NS NAME MODE FALLBACK IDLE: NS's isolation policy (written, applied if
# its daemon runs): MODE, `fallback` FALLBACK, `lifetimes.idle` IDLE, secure
# subnets 10.90.0.0/24 and fd00:90::/64 (the switch of first-contact.sh and
# bench/first-contact.sh), identity NAME's ($PKI/NAME.crt, issued by ca), the
# echo server (tcp/7001) and the UDP sink (udp/7002) open.
member() {
    local ns=$1 name=$2
    member_policy "$ns" "$name" <<YAML
version: 1
isolation:
  mode: $3
  fallback: $4
  secure-subnets: ["10.90.0.0/24", "fd00:90::/64"]
  identity: { ca: $PKI/ca.crt, certificate: $PKI/$name.crt, private-key: $PKI/$name.key }
  lifetimes: { ike: 1h, child: 30m, idle: $5 }
  ike: { socket: "$(vici "$ns")" }
rules:
$ND_RULE
  - { name: echo, direction: in, action: allow, protocol: tcp, local-ports: [7001] }
  - { name: sink, direction: in, action: allow, protocol: udp, local-ports: [7002] }
YAML
}
# soft NS PEER: NS's soft SAs with PEER (`show sas --json`), as a JSON list.
# no_soft NS PEER: there is none.
soft() { rf "$1" show sas --json | jget "[s for s in v['soft-sas'] if s['peer'] == '$2']"; }
no_soft() { [ "$(soft "$1" "$2")" = "[]" ]; }

# --- Kernel state -------------------------------------------------------------------
# esp_sas NS: one line "SPI REQID SRC DST" per ESP SA in NS's kernel, larval
# (ACQUIRE) states left out.
esp_sas() {
    ip -n "$1" xfrm state | awk '
        /^src / { src = $2; dst = $4 }
        $1 == "proto" && $2 == "esp" { spi = $4; reqid = $6; if (spi != "0x00000000") print spi, reqid, src, dst }'
}
# has_sas NS: NS has at least one ESP SA.
has_sas() { esp_sas "$1" | grep -q .; }
# larval NS: the ACQUIRE (larval) states of NS ("src dst reqid"): states with SPI 0.
larval() {
    ip -n "$1" xfrm state | awk '
        /^src / { src = $2; dst = $4 }
        $1 == "proto" && $2 == "esp" && $4 == "0x00000000" { print src, dst, $6 }'
}
# forget A B [CONN]: A closes its IKE SA CONN (default ringfence, Ringfence's
# isolation connection) and waits until neither A's kernel nor B's holds an ESP
# SA, as at expiry. (charon sends DELETE: the peer removes its SAs too. Nothing
# to close is no error.)
forget() {
    sw "$1" --terminate --ike "${3:-ringfence}" >/dev/null 2>&1 || true
    wait_for 10 _no_sas "$1" && wait_for 10 _no_sas "$2"
}
_no_sas() { ! has_sas "$1"; }
# xfrm_stat NS NAME: one counter of /proc/net/xfrm_stat in NS (e.g. XfrmInTmplMismatch).
xfrm_stat() { ip netns exec "$1" awk -v n="$2" '$1 == n { print $2 }' /proc/net/xfrm_stat; }

# counter NS FAMILY TABLE NAME: packets of a named nft counter.
counter() {
    ip netns exec "$1" nft -j list counter "$2" "$3" "$4" |
        jget '[o["counter"]["packets"] for o in v["nftables"] if "counter" in o][0]'
}

# --- Packets on the wire ----------------------------------------------------------------
# capture_start NS IFACE NAME: tcpdump on IFACE of NS into $WORK/NAME.pcap, returns
# once tcpdump is capturing. capture_stop NAME: stops it and waits until the file
# is complete.
declare -A CAPTURE_PID=()
capture_start() {
    ip netns exec "$1" tcpdump -i "$2" -n -s 0 -U --immediate-mode -w "$WORK/$3.pcap" 2>"$WORK/$3.tcpdump" &
    CAPTURE_PID[$3]=$!
    _PIDS+=($!)
    disown
    wait_for 10 grep -q "listening on" "$WORK/$3.tcpdump" || { cat "$WORK/$3.tcpdump"; return 1; }
}
capture_stop() {
    kill -INT "${CAPTURE_PID[$1]}" 2>/dev/null || true
    wait_for 10 _gone "${CAPTURE_PID[$1]}"
}

# wire NAME KIND [MARKER]: counts packets of $WORK/NAME.pcap (Ethernet, IPv4/IPv6):
#   esp            ESP packets (IP protocol 50)
#   esp-marker     ESP packets whose bytes contain MARKER (readable: ESP-null)
#   clear-marker   packets other than ESP that contain MARKER (sent in clear)
#   clear-traffic  packets other than ESP, IKE (UDP 500/4500) and neighbour
#                  discovery/ARP: test traffic that went in clear
#   esp-bytes / clear-bytes   frame bytes of the packets containing MARKER
# and prints the number.
wire() { python3 "$VM_DIR/pcap.py" "$WORK/$1.pcap" "$2" "${3:-}"; }

# --- TCP test traffic -------------------------------------------------------------------
# echo_host SWITCH NS ADDR4 ADDR6: NS plugged into SWITCH with ADDR4/24 and
# ADDR6/64, running an echo server on tcp/7001 (IPv4 and IPv6).
echo_host() {
    port "$1" "$2" "$3"
    ip -n "$2" addr add "$4/64" dev eth0 nodad
    bg "$2" socat TCP6-LISTEN:7001,ipv6only=0,reuseaddr,fork EXEC:cat
    wait_port "$2" 7001 tcp
}
# conversation NAME FROM ADDR LINES [PAUSE [TIMEOUT]]: one TCP socket from FROM
# to ADDR's echo server (conversation.py); its figures in $WORK/NAME.json.
conversation() {
    ip netns exec "$2" timeout 90 python3 "$VM_DIR/conversation.py" "$3" 7001 "$4" "${5:-0}" "${6:-20}" >"$WORK/$1.json"
}
# figure NAME EXPR: a Python expression over c, the conversation's figures.
figure() { python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$WORK/$1.json" "$2"; }

# --- UDP test traffic -------------------------------------------------------------------
# sink_start NS PORT...: records every datagram NS receives on PORTs (IPv4) in
# $WORK/NS.sink as "PORT PAYLOAD". received NS PORT PAYLOAD: it got that one.
sink_start() {
    local ns=$1; shift
    bg "$ns" python3 "$VM_DIR/udp-sink.py" "$WORK/$ns.sink" "$@"
    local p
    for p in "$@"; do wait_port "$ns" "$p" udp; done
}
received() { grep -qx "$2 $3" "$WORK/$1.sink" 2>/dev/null; }
# udp_send NS ADDR PORT PAYLOAD: one datagram; prints the error of sendto, if
# any (a packet the kernel drops for want of an SA is not always an error).
udp_send() {
    ip netns exec "$1" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
except OSError as e:
    print("sendto:", e)' "$2" "$3" "$4"
}
