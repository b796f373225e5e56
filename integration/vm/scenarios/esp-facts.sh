# The kernel and strongSwan facts Ringfence's IPsec isolation rests on, each
# shown with real packets between namespaces (IPv4) in the VM:
#  1. a charon child with a static `reqid`, `policies = no` and `start_action =
#     trap` installs no kernel policy, yet an xfrm policy installed by someone
#     else (ip xfrm policy ... tmpl proto esp mode transport reqid N) makes the
#     kernel's ACQUIRE start charon's negotiation, and the SAs get reqid N; an
#     ACQUIRE for a reqid no child has starts nothing; an outbound template
#     uses only SAs of its own reqid (0 included);
#  2. level `use`: the first packet goes in clear while negotiation starts;
#     level `required`: packets are dropped until the SA exists;
#  3. an inbound template with reqid 0 accepts any SA; another reqid rejects;
#  4. nftables on the receiver: meta ipsec exists|missing, ipsec in reqid N, a
#     set `typeof ipsec in reqid` matched as `ipsec in reqid @set`; `ipsec in ip
#     saddr` does not match transport mode;
#  5. a peer whose certificate comes from another CA gets nothing through;
#  6. charon killed: the SAs stay in the kernel and keep working; what a
#     restarted charon needs again over VICI; what larval (ACQUIRE) states do.
# Run: bash integration/vm/run.sh integration/vm/scenarios/esp-facts.sh
source "$(dirname "$0")/../guest-lib.sh"

REQID=7
h1=$(host h1); h2=$(host h2); h3=$(host h3)
link "$h1" eth0 10.99.0.1 fd00:99::1 "$h2" eth0 10.99.0.2 fd00:99::2
link "$h1" eth1 10.99.3.1 fd00:99:3::1 "$h3" eth0 10.99.3.3 fd00:99:3::3
A1=10.99.0.1 A2=10.99.0.2 A13=10.99.3.1 A3=10.99.3.3

pki_ca ca "C=XX, O=Example, CN=Example Root CA"
pki_ca other "C=XX, O=Other, CN=Other Root CA"
pki_host host1 ca $A1 $A13
pki_host host2 ca $A2
# host3: the same kind of subject, from the other CA.
pki_host host3 other $A3

# iso_conf NAME: the connection every host loads: any peer in 10.99.0.0/16,
# identified by a certificate with OU=Members; the child has a static reqid,
# installs no policies and is only trapped: the kernel's policies are someone
# else's (Ringfence's) business.
iso_conf() {
    cat <<CONF
connections {
    iso {
        version = 2
        remote_addrs = 10.99.0.0/16
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
            iso {
                mode = transport
                esp_proposals = null-sha256
                local_ts = dynamic
                remote_ts = dynamic
                start_action = trap
                policies = no
                reqid = $REQID
            }
        }
    }
}
CONF
}
iso_conf host1 | swanctl_dir "$h1" host1 ca
iso_conf host2 | swanctl_dir "$h2" host2 ca
iso_conf host3 | swanctl_dir "$h3" host3 other
for ns in "$h1" "$h2" "$h3"; do
    charon_start "$ns"
    check "$ns: swanctl --load-all" sw_load "$ns"
done

# policy NS DIR SRC DST LEVEL REQID PRIORITY [SELECTOR...]: our own xfrm policy
# (what Ringfence would install), template ESP transport without addresses.
policy() {
    local ns=$1 dir=$2 src=$3 dst=$4 level=$5 reqid=$6 prio=$7; shift 7
    ip -n "$ns" xfrm policy update dir "$dir" src "$src" dst "$dst" "$@" priority "$prio" \
        tmpl proto esp mode transport reqid "$reqid" level "$level"
}
# bypass NS DIR SRC DST PRIORITY SELECTOR...: a policy that lets matching packets pass in clear.
bypass() {
    local ns=$1 dir=$2 src=$3 dst=$4 prio=$5; shift 5
    ip -n "$ns" xfrm policy update dir "$dir" src "$src" dst "$dst" "$@" priority "$prio" action allow
}
# acquires NS: how many ACQUIREs NS's charon has received so far;
# acquired_since NS N: more than N. initiations NS: IKE SAs it has initiated.
acquires() { grep -c "creating acquire job" "$WORK/$1.charon.log" || true; }
acquired_since() { [ "$(acquires "$1")" -gt "$2" ]; }
initiations() { grep -c "initiating IKE_SA" "$WORK/$1.charon.log" || true; }
# our_policies NS: the in and out policies of NS (per-socket ones left out).
our_policies() { ip -n "$1" xfrm policy list dir in; ip -n "$1" xfrm policy list dir out; }
# dir_policies NS: how many policies (not per-socket ones) NS's SPD holds.
dir_policies() { ip -n "$1" xfrm policy | grep -cE '^\s+dir (in|out|fwd) ' || true; }
# sas_with NS ADDR: the ESP SAs of NS with ADDR as source or destination.
sas_with() { esp_sas "$1" | awk -v a="$2" '$3 == a || $4 == a'; }
# no_sas NS: NS's kernel has no ESP SA (larval states aside).
no_sas() { ! has_sas "$1"; }
# reset_sas: ends every IKE SA of h1 and h2 (DELETE sent, SAs removed), flushes
# what remains, including larval states.
reset_sas() {
    sw "$h1" --terminate --ike iso --force --timeout 10 >/dev/null 2>&1 || true
    sw "$h2" --terminate --ike iso --force --timeout 10 >/dev/null 2>&1 || true
    ip -n "$h1" xfrm state flush; ip -n "$h2" xfrm state flush
    wait_for 5 no_sas "$h1"; wait_for 5 no_sas "$h2"
}
sink_start "$h2" 7001 7002 7003

# --- 1. reqid, policies = no, trap, ACQUIRE -------------------------------------------
check  "1: charon (policies = no, start_action = trap) installed no xfrm policy on h1" test "$(dir_policies "$h1")" -eq 0
check  "1: nor on h2" test "$(dir_policies "$h2")" -eq 0
# What `ip xfrm policy` does list: the per-socket bypass policies charon puts on
# its IKE sockets (so that IKE itself never needs ESP).
check  "1: ip xfrm policy lists charon's per-socket policies (socket in/out) on h1" ip -n "$h1" xfrm policy
said   "1: ... 'socket in' and 'socket out' entries" "socket (in|out) priority 0"
check  "1: h1's trap is registered (swanctl --list-pols --trap)" sw "$h1" --list-pols --trap
said   "1: list-pols shows the trapped child" "iso.*TRANSPORT"
# Our policies: h1 <-> h2 and h1 <-> h3's subnet, outbound reqid $REQID, inbound reqid 0.
policy "$h1" out $A1/32 10.99.0.0/24 required $REQID 100
policy "$h1" in  10.99.0.0/24 $A1/32 required 0 100
policy "$h2" out $A2/32 10.99.0.0/24 required $REQID 100
policy "$h2" in  10.99.0.0/24 $A2/32 required 0 100
check  "1: our policies are in h1's SPD" ip -n "$h1" xfrm policy
said   "1: ... with our template (reqid $REQID, level required: no 'level use')" "proto esp reqid $REQID mode transport"
refute "1: no SA before traffic" has_sas "$h1"
a0=$(acquires "$h1")
udp_send "$h1" $A2 7001 first-packet-required
check  "1: the first packet made the kernel send an ACQUIRE and charon act on it" wait_for 10 acquired_since "$h1" "$a0"
# (charon prints ports by service name when it knows one: 7001 is afs3-callback)
check  "1: charon's acquire job names our policy's flow and reqid $REQID" \
    grep -E "creating acquire job for policy $A1/32\[udp/[^]]+\] === $A2/32\[udp/[^]]+\] with reqid \{$REQID\}" "$WORK/$h1.charon.log"
check  "1: h1 initiated the IKE SA to h2 (the ACQUIRE's destination)" grep -q "initiating IKE_SA iso\[[0-9]*\] to $A2" "$WORK/$h1.charon.log"
check  "1: SAs appear on h1" wait_for 20 has_sas "$h1"
check  "1: h1 has two ESP SAs, both reqid $REQID" test "$(esp_sas "$h1" | awk -v r=$REQID '$2 == r' | wc -l)" -eq 2
check  "1: h2 (responder, same static reqid) has two ESP SAs, both reqid $REQID" test "$(esp_sas "$h2" | awk -v r=$REQID '$2 == r' | wc -l)" -eq 2
check  "1: h1's SPD still holds only our two policies (charon added none)" test "$(dir_policies "$h1")" -eq 2
udp_send "$h1" $A2 7001 second-packet-required
check  "1: the next datagram arrives" wait_for 5 received "$h2" 7001 second-packet-required
check  "1: ... the first one never did (dropped while negotiating)" test "$(grep -c first-packet-required "$WORK/$h2.sink")" -eq 0

# An ACQUIRE for a reqid no trapped child has: a more specific policy (higher
# precedence: lower priority number) with reqid 8.
policy "$h1" out $A1/32 $A2/32 required 8 50 proto udp dport 7003
i0=$(initiations "$h1")
udp_send "$h1" $A2 7003 reqid-8
check  "1: reqid 8: the kernel made a larval state with reqid 8 (ACQUIRE sent)" wait_for 5 sh -c "ip -n $h1 xfrm state | grep -q 'reqid 8 '"
check  "1: reqid 8: charon says: trap not found, unable to acquire reqid 8" wait_for 5 grep -q "trap not found, unable to acquire reqid 8" "$WORK/$h1.charon.log"
check  "1: reqid 8: charon started no negotiation" test "$(initiations "$h1")" -eq "$i0"
refute "1: reqid 8: no SA with reqid 8" sh -c "ip -n $h1 xfrm state | grep -E 'spi 0x[0-9a-f]*[1-9a-f][0-9a-f]* reqid 8 '"
refute "1: reqid 8: the datagram did not use the reqid $REQID SAs (out templates match their own reqid only)" received "$h2" 7003 reqid-8
# Outbound template reqid 0 is no wildcard either.
policy "$h1" out $A1/32 $A2/32 required 0 50 proto udp dport 7003
i0=$(initiations "$h1")
udp_send "$h1" $A2 7003 reqid-0-out
wait_for 5 grep -q "acquire reqid 0\|with reqid {0}" "$WORK/$h1.charon.log" || true
sleep 2
refute "1: out reqid 0: the datagram did not use the reqid $REQID SAs" received "$h2" 7003 reqid-0-out
check  "1: out reqid 0: a larval state with reqid 0 (ACQUIRE sent)" sh -c "ip -n $h1 xfrm state | grep -q 'spi 0x00000000 reqid 0 '"
check  "1: out reqid 0: charon says: trap not found, unable to acquire reqid 0" grep -q "trap not found, unable to acquire reqid 0" "$WORK/$h1.charon.log"
check  "1: out reqid 0: charon started no negotiation" test "$(initiations "$h1")" -eq "$i0"
ip -n "$h1" xfrm policy delete dir out src $A1/32 dst $A2/32 proto udp dport 7003

# --- 2. level use / required ------------------------------------------------------------
reset_sas
check  "2: no SAs after the reset" no_sas "$h1"
policy "$h1" out $A1/32 10.99.0.0/24 use $REQID 100
capture_start "$h2" eth0 use
udp_send "$h1" $A2 7001 use-first
check  "2: use: SAs come up after a packet under level use (the ACQUIRE is sent)" wait_for 20 has_sas "$h1"
udp_send "$h1" $A2 7001 use-second
check  "2: use: the second datagram arrives" wait_for 5 received "$h2" 7001 use-second
capture_stop use
check  "2: use: the first datagram went on the wire in clear" test "$(wire use clear-marker use-first)" -ge 1
check  "2: use: the second went in ESP" test "$(wire use esp-marker use-second)" -ge 1
refute "2: use: h2 (inbound required) dropped the clear one" received "$h2" 7001 use-first

reset_sas
policy "$h1" out $A1/32 10.99.0.0/24 required $REQID 100
capture_start "$h2" eth0 required
sendto=$(udp_send "$h1" $A2 7001 required-first)
echo "  info: sendto of the first packet under level required: ${sendto:-no error}"
check  "2: required: SAs come up after the first packet" wait_for 20 has_sas "$h1"
udp_send "$h1" $A2 7001 required-second
check  "2: required: the second datagram arrives" wait_for 5 received "$h2" 7001 required-second
capture_stop required
check  "2: required: the first datagram never reached the wire (not in clear)" test "$(wire required clear-marker required-first)" -eq 0
check  "2: required: ... nor in ESP (dropped, not queued)" test "$(wire required esp-marker required-first)" -eq 0
refute "2: required: h2 never got the first" received "$h2" 7001 required-first
check  "2: required: the second went in ESP" test "$(wire required esp-marker required-second)" -ge 1

# --- 3. inbound template reqid ------------------------------------------------------------
check  "3: h2's inbound template has reqid 0" ip -n "$h2" xfrm policy list dir in
said   "3: ... (ip xfrm policy shows it)" "proto esp reqid 0 mode transport"
check  "3: in reqid 0 accepts the reqid $REQID SA (a datagram arrives)" sh -c "true" # shown by 2. and again here:
udp_send "$h1" $A2 7001 in-reqid-0
check  "3: in reqid 0: received" wait_for 5 received "$h2" 7001 in-reqid-0
mm0=$(xfrm_stat "$h2" XfrmInTmplMismatch)
policy "$h2" in 10.99.0.0/24 $A2/32 required 99 100
udp_send "$h1" $A2 7001 in-reqid-99
sleep 1
refute "3: in reqid 99: the reqid $REQID SA's packet is dropped" received "$h2" 7001 in-reqid-99
check  "3: in reqid 99: counted as XfrmInTmplMismatch" test "$(xfrm_stat "$h2" XfrmInTmplMismatch)" -gt "$mm0"
policy "$h2" in 10.99.0.0/24 $A2/32 required $REQID 100
udp_send "$h1" $A2 7001 in-reqid-7
check  "3: in reqid $REQID: received" wait_for 5 received "$h2" 7001 in-reqid-7
policy "$h2" in 10.99.0.0/24 $A2/32 required 0 100

# --- 4. nftables on the receiver --------------------------------------------------------
# Port 7002 in clear both ways (a bypass on each side), to see `meta ipsec missing` match.
ip netns exec "$h2" nft -f - <<NFT
# (Counter names must not be nft keywords: "exists" and "missing" are.)
table inet facts {
    set reqids {
        typeof ipsec in reqid
        elements = { $REQID }
    }
    counter n_esp_raw { }
    counter n_exists { }
    counter n_missing { }
    counter n_reqid_ok { }
    counter n_reqid_other { }
    counter n_reqid_set { }
    counter n_ipsec_saddr { }
    counter n_saddr_reqid { }
    counter n_gate_pass { }
    chain input {
        type filter hook input priority 0; policy accept;
        meta l4proto esp counter name n_esp_raw
        udp dport 7002 meta ipsec exists counter name n_exists
        udp dport 7002 meta ipsec missing counter name n_missing
        udp dport 7002 ipsec in reqid $REQID counter name n_reqid_ok
        udp dport 7002 ipsec in reqid 8 counter name n_reqid_other
        udp dport 7002 ipsec in reqid @reqids counter name n_reqid_set
        udp dport 7002 ipsec in ip saddr $A1 counter name n_ipsec_saddr
        udp dport 7002 ip saddr $A1 ipsec in reqid $REQID counter name n_saddr_reqid
        # The isolation gate: port 7003 only from SAs whose reqid is in the set.
        udp dport 7003 ipsec in reqid @reqids counter name n_gate_pass accept
        udp dport 7003 drop
    }
}
NFT
for i in 1 2 3 4 5; do udp_send "$h1" $A2 7002 esp-$i; done
check  "4: five datagrams through ESP arrived" wait_for 5 received "$h2" 7002 esp-5
check  "4: meta ipsec exists: 5" test "$(counter "$h2" inet facts n_exists)" -eq 5
check  "4: meta ipsec missing: 0" test "$(counter "$h2" inet facts n_missing)" -eq 0
check  "4: ipsec in reqid $REQID: 5" test "$(counter "$h2" inet facts n_reqid_ok)" -eq 5
check  "4: ipsec in reqid 8: 0" test "$(counter "$h2" inet facts n_reqid_other)" -eq 0
check  "4: ipsec in reqid @reqids (typeof ipsec in reqid): 5" test "$(counter "$h2" inet facts n_reqid_set)" -eq 5
check  "4: ipsec in ip saddr $A1: 0 (never matches transport mode)" test "$(counter "$h2" inet facts n_ipsec_saddr)" -eq 0
check  "4: ip saddr $A1 ipsec in reqid $REQID: 5" test "$(counter "$h2" inet facts n_saddr_reqid)" -eq 5
check  "4: the ESP packets themselves crossed the input hook first (meta l4proto esp >= 5)" test "$(counter "$h2" inet facts n_esp_raw)" -ge 5
bypass "$h1" out $A1/32 $A2/32 10 proto udp dport 7002
bypass "$h2" in  $A1/32 $A2/32 10 proto udp dport 7002
for i in 1 2 3; do udp_send "$h1" $A2 7002 clear-$i; done
check  "4: three datagrams in clear (bypass policies) arrived" wait_for 5 received "$h2" 7002 clear-3
check  "4: meta ipsec missing: 3" test "$(counter "$h2" inet facts n_missing)" -eq 3
check  "4: meta ipsec exists: still 5" test "$(counter "$h2" inet facts n_exists)" -eq 5
check  "4: ipsec in reqid @reqids: still 5" test "$(counter "$h2" inet facts n_reqid_set)" -eq 5
udp_send "$h1" $A2 7003 gate-1
check  "4: gate: the reqid in the set lets port 7003 in" wait_for 5 received "$h2" 7003 gate-1
ip netns exec "$h2" nft delete element inet facts reqids "{ $REQID }"
udp_send "$h1" $A2 7003 gate-2
sleep 1
refute "4: gate: with the reqid out of the set, port 7003 is dropped" received "$h2" 7003 gate-2
ip netns exec "$h2" nft add element inet facts reqids "{ $REQID }"
udp_send "$h1" $A2 7003 gate-3
check  "4: gate: the reqid back in the set lets it in again" wait_for 5 received "$h2" 7003 gate-3
check  "4: gate: counted 2" test "$(counter "$h2" inet facts n_gate_pass)" -eq 2

# --- 5. a peer with a certificate from another CA ---------------------------------------
policy "$h1" out $A13/32 10.99.3.0/24 required $REQID 100
policy "$h1" in  10.99.3.0/24 $A13/32 required 0 100
policy "$h3" out $A3/32 10.99.0.0/16 required $REQID 100
policy "$h3" in  10.99.0.0/16 $A3/32 required 0 100
ip netns exec "$h1" nft -f - <<NFT
table inet facts {
    counter from_h3 { }
    chain input {
        type filter hook input priority 0; policy accept;
        ip saddr $A3 meta l4proto icmp counter name from_h3
    }
}
NFT
refute "5: h1 -> h3: no ping gets through (8 s of tries)" wait_for 8 ping1 "$h1" $A3
refute "5: h3 -> h1: no ping gets through (8 s of tries)" wait_for 8 ping1 "$h3" $A13
check  "5: h1 has no SA with h3" test -z "$(sas_with "$h1" $A3)"
check  "5: h3 has no SA at all" no_sas "$h3"
check  "5: no ping from h3 reached h1's input hook" test "$(counter "$h1" inet facts from_h3)" -eq 0
check  "5: h1's charon tried (an acquire job toward h3)" grep -q "creating acquire job for policy $A13/32.* === $A3/32" "$WORK/$h1.charon.log"
check  "5: and the authentication failed (h1 or h3 says why)" grep -hE "AUTHENTICATION_FAILED|no trusted .* public key found|constraint check failed" "$WORK/$h1.charon.log" "$WORK/$h3.charon.log"
echo "  info: why h3 was refused:"; grep -hE "AUTHENTICATION_FAILED|no trusted|constraint check failed|no issuer" "$WORK/$h1.charon.log" "$WORK/$h3.charon.log" | cut -d' ' -f2- | sort -u | head -n 4 | sed 's/^/    /'

# --- 6. charon killed, charon restarted ---------------------------------------------------
check  "6: h1 <-> h2 SAs are up" wait_for 10 ping1 "$h1" $A2
spis0=$(esp_sas "$h1" | sort)
pols0=$(our_policies "$h1")
esp0=$(counter "$h2" inet facts n_esp_raw)
charon_stop "$h1" KILL
check  "6: SIGKILL: the SAs stay in h1's kernel (same SPIs)" test "$(esp_sas "$h1" | sort)" = "$spis0"
check  "6: SIGKILL: our policies stay" test "$(our_policies "$h1")" = "$pols0"
check  "6: SIGKILL: charon's per-socket policies are gone with its sockets" test "$(ip -n "$h1" xfrm policy | grep -c socket)" -eq 0
check  "6: SIGKILL: ping h1 -> h2 still works" ping1 "$h1" $A2
check  "6: SIGKILL: ... through ESP (h2 counted more ESP packets)" test "$(counter "$h2" inet facts n_esp_raw)" -gt "$esp0"
# New traffic needing a new SA while no charon runs: the SAs gone (as at expiry).
ip -n "$h1" xfrm state flush
refute "6: no charon, no SA: ping h1 -> h2 fails" ping1 "$h1" $A2
# With nobody listening for ACQUIREs the kernel keeps no larval state either
# (km_query finds no listener: the lookup fails with ESRCH, the packet is dropped).
check  "6: no charon: no larval state (the ACQUIRE had no listener)" test -z "$(larval "$h1")"
charon_start "$h1"
check  "6: restarted: charon knows no connection" test -z "$(sw "$h1" --list-conns 2>/dev/null)"
check  "6: restarted: charon holds no certificate" test -z "$(sw "$h1" --list-certs 2>/dev/null | grep -v '^$')"
# Traffic before the connections are loaded: the ACQUIRE finds no trap, and
# the larval state it leaves blocks further ACQUIREs for that pair of
# addresses and reqid until it expires (net.core.xfrm_acq_expires, 30 s).
a0=$(acquires "$h1")
ping1 "$h1" $A2 || true
check  "6: restarted, nothing loaded: charon gets the ACQUIRE but has no trap" wait_for 5 sh -c "grep -c 'trap not found, unable to acquire reqid $REQID' $WORK/$h1.charon.log | grep -qv '^0$'"
check  "6: restarted, nothing loaded: a larval state (reqid $REQID) stays" sh -c "ip -n $h1 xfrm state | grep -q 'spi 0x00000000 reqid $REQID '"
check  "6: restarted: load the connections only" sw_load "$h1" --load-conns
a0=$(acquires "$h1")
ping1 "$h1" $A2 || true
sleep 3
check  "6: loaded, but while the larval state lives the kernel sends no new ACQUIRE" test "$(acquires "$h1")" -eq "$a0"
ip -n "$h1" xfrm state flush
ping1 "$h1" $A2 || true
check  "6: larval state flushed: the next packet brings an ACQUIRE" wait_for 5 acquired_since "$h1" "$a0"
check  "6: connections without credentials: the negotiation fails (no private key)" wait_for 10 grep -q "no private key found" "$WORK/$h1.charon.log"
refute "6: connections without credentials: no SA" has_sas "$h1"
check  "6: load the credentials (keys, certificates, CAs)" sw_load "$h1" --load-creds
ip -n "$h1" xfrm state flush
check  "6: with connections and credentials: ping h1 -> h2 works again" wait_for 20 ping1 "$h1" $A2
check  "6: h1 has SAs with reqid $REQID again" test "$(esp_sas "$h1" | awk -v r=$REQID '$2 == r' | wc -l)" -eq 2
# h2 never heard of h1's SIGKILL: it keeps the orphaned pair next to the new one
# (same reqid) and sends with the newest, which h1 has.
check  "6: h2 holds 4 SAs with h1: the pair orphaned by the SIGKILL and the new pair" test "$(esp_sas "$h2" | wc -l)" -eq 4
check  "6: h2 -> h1 works (h2 sends with the newest SA)" ping1 "$h2" $A1
pols0=$(our_policies "$h1")
charon_stop "$h1" TERM
check  "6: SIGTERM: our policies stay" test "$(our_policies "$h1")" = "$pols0"
check  "6: SIGTERM: charon removed its SAs from h1's kernel" no_sas "$h1"
h2_left_with_orphans() { [ "$(esp_sas "$h2" | awk '{print $1}' | sort)" = "$(awk '{print $1}' <<<"$spis0" | sort)" ]; }
check  "6: SIGTERM: h2 deleted the pair h1 said DELETE for; the orphaned pair is left" wait_for 5 h2_left_with_orphans
finish
