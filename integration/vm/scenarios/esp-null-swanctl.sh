# ESP-null between two hosts, each with its own charon configured by hand with
# swanctl: IKEv2, ECDSA certificates from one CA, esp_proposals null-sha256,
# transport mode, start_action trap. Traffic (ping and a TCP exchange, IPv4 and
# IPv6) must go as ESP on the wire, readable (ESP-null), and swanctl must show
# the SA with the peer's certificate identity.
# Run: bash integration/vm/run.sh integration/vm/scenarios/esp-null-swanctl.sh
source "$(dirname "$0")/../guest-lib.sh"

h1=$(host h1); h2=$(host h2)
link "$h1" eth0 10.99.0.1 fd00:99::1 "$h2" eth0 10.99.0.2 fd00:99::2

pki_ca ca "C=XX, O=Example, CN=Example Root CA"
pki_host host1 ca 10.99.0.1 fd00:99::1
pki_host host2 ca 10.99.0.2 fd00:99::2

# lan_conf N: host N's swanctl.conf: any member of the LAN, one connection per
# address family. (One connection with local_addrs of both families fails: the
# trap's template takes the first local address, IPv4, and the kernel refuses
# the IPv6 policy with an IPv4 transport template: EINVAL, "installing trap
# failed", and the IPv4 trap is rolled back too. And local_ts is explicit: with
# `dynamic` the trap of an IPv6 connection whose remote_addrs is a range
# installs no policy at all, silently; for IPv4 it becomes 0.0.0.0/0.)
lan_conf() {
    local fam local remote host remote_addrs
    echo "connections {"
    for fam in 4 6; do
        remote_addrs=
        if [ $fam = 4 ]; then
            local=10.99.0.$1 host=10.99.0.$1/32 remote=10.99.0.0/24
        else
            local=fd00:99::$1 host=fd00:99::$1/128 remote=fd00:99::/64
        fi
        # remote_addrs %any6, not the range: with a range the trap's template
        # gets the IPv4 %any as its peer, and the kernel refuses a transport
        # template whose family differs from the selector's (EINVAL). The
        # peers allowed are still only those in remote_ts.
        [ $fam = 4 ] || remote_addrs=%any6
        cat <<CONF
    lan$fam {
        version = 2
        local_addrs = $local
        remote_addrs = ${remote_addrs:-$remote}
        proposals = aes128gcm16-prfsha256-ecp256
        local {
            auth = pubkey
            certs = host$1.crt
        }
        remote {
            auth = pubkey
            id = "C=XX, O=Example, OU=Members, CN=*"
        }
        children {
            lan$fam {
                mode = transport
                esp_proposals = null-sha256
                local_ts = $host
                remote_ts = $remote
                start_action = trap
            }
        }
    }
CONF
    done
    echo "}"
}
for n in 1 2; do
    ns=$PREFIX-h$n
    nd_bypass "$ns"
    lan_conf $n | swanctl_dir "$ns" host$n ca
    charon_start "$ns"
    check "h$n: swanctl loads the connection and credentials" sw_load "$ns"
done
check  "h1: the connection is loaded" sw "$h1" --list-conns
said   "h1: list-conns shows the transport child" "lan4: +TRANSPORT"
check  "h1: charon installed trap policies (out, ESP transport)" ip -n "$h1" xfrm policy list dir out
said   "h1: the out policy's template is ESP in transport mode" "proto esp reqid [0-9]+ mode transport"
check  "h1: a trap policy for IPv6 too" ip -n "$h1" xfrm policy list dir out
said   "h1: the IPv6 trap policy" "src fd00:99::1/128 dst fd00:99::/64"
refute "h1: no SA before any traffic" has_sas "$h1"

# Counted by the kernel too: ESP packets through h2's prerouting and postrouting.
ip netns exec "$h2" nft -f - <<'NFT'
table inet wire {
    counter esp_in { }
    counter esp_out { }
    chain pre { type filter hook prerouting priority -300; meta l4proto esp counter name esp_in; }
    chain post { type filter hook postrouting priority 300; meta l4proto esp counter name esp_out; }
}
NFT

capture_start "$h2" eth0 lan
# The first packet is dropped while the trap's ACQUIRE makes charon negotiate.
check  "v4: ping h1 -> h2 gets through once the SA is up" wait_for 20 ping1 "$h1" 10.99.0.2
check  "v4: h1 has ESP SAs" has_sas "$h1"
bg "$h2" socat TCP6-LISTEN:7000,ipv6only=0,reuseaddr,fork SYSTEM:'read l; echo "answer-to-$l"'
wait_port "$h2" 7000 tcp
# (Tried again on failure: under a loaded host, the first exchange right after
# the SA came up has timed out once in four runs; not understood yet.)
tcp_question() { # FROM ADDR WORD: sends WORD, expects answer-to-WORD
    echo "$3" | ip netns exec "$1" timeout 15 socat -T10 - "TCP:$(_addr "$2"):7000,connect-timeout=10" | grep -qx "answer-to-$3"
}
check  "v4: a TCP exchange h1 -> h2 (tried for up to 30 s)" wait_for 30 tcp_question "$h1" 10.99.0.2 rf-question-v4
check  "v6: ping h1 -> h2 gets through once the SA is up" wait_for 20 ping1 "$h1" fd00:99::2
check  "v6: a TCP exchange h1 -> h2 (tried for up to 30 s)" wait_for 30 tcp_question "$h1" fd00:99::2 rf-question-v6
check  "v4: ping h2 -> h1" ping1 "$h2" 10.99.0.1
capture_stop lan

check  "wire: ESP packets on h2's veth" test "$(wire lan esp)" -ge 8
check  "wire: the v4 question is readable inside ESP (ESP-null)" test "$(wire lan esp-marker rf-question-v4)" -ge 1
check  "wire: the v4 answer is readable inside ESP" test "$(wire lan esp-marker answer-to-rf-question-v4)" -ge 1
check  "wire: the v6 question is readable inside ESP" test "$(wire lan esp-marker rf-question-v6)" -ge 1
check  "wire: the v6 answer is readable inside ESP" test "$(wire lan esp-marker answer-to-rf-question-v6)" -ge 1
check  "wire: no marker was sent in clear" test "$(wire lan clear-marker rf-question)" -eq 0
check  "wire: no ping or TCP went in clear (only IKE, ND and ESP on the wire)" test "$(wire lan clear-traffic)" -eq 0
check  "nft: h2 counted ESP packets arriving (meta l4proto esp, prerouting)" test "$(counter "$h2" inet wire esp_in)" -ge 4
check  "nft: h2 counted ESP packets leaving (meta l4proto esp, postrouting)" test "$(counter "$h2" inet wire esp_out)" -ge 4

check  "h1: swanctl --list-sas" sw "$h1" --list-sas
said   "h1: the child SA is ESP-null with HMAC-SHA256-128" "ESP:NULL/HMAC_SHA2_256_128"
said   "h1: the child SA is in transport mode" "lan4: .*TRANSPORT"
said   "h1: the peer is identified by host2's certificate" "remote 'C=XX, O=Example, OU=Members, CN=host2'"
check  "h2: swanctl --list-sas" sw "$h2" --list-sas
said   "h2: the child SA is ESP-null with HMAC-SHA256-128" "ESP:NULL/HMAC_SHA2_256_128"
said   "h2: the peer is identified by host1's certificate" "remote 'C=XX, O=Example, OU=Members, CN=host1'"
check  "h1: the kernel's SA uses cipher_null and hmac(sha256) truncated to 128 bits" ip -n "$h1" xfrm state
said   "h1: enc cipher_null" "enc ecb\(cipher_null\)"
said   "h1: auth-trunc hmac(sha256) 128" "auth-trunc hmac\(sha256\) 0x[0-9a-f]+ 128"

# --- Why nd_bypass: IPv6 neighbour discovery goes through the xfrm lookup -------
# Two more hosts, no charon: n2 requires ESP for everything it sends to the
# /64. n1 pings n2; n1's neighbour solicitation is multicast, n2's advertisement
# is unicast to n1 and matches n2's policy: without an SA it is dropped, so n1
# never learns n2's link-layer address. With the ICMPv6 bypass it does (the
# echo reply is still dropped: only neighbour discovery passes).
n1=$(host n1); n2=$(host n2)
link "$n1" eth0 10.98.0.1 fd00:98::1 "$n2" eth0 10.98.0.2 fd00:98::2
ip -n "$n2" xfrm policy add dir out src fd00:98::2/128 dst fd00:98::/64 priority 100 \
    tmpl proto esp mode transport reqid 1 level required
neigh_of_n2() { ip -n "$n1" -6 neigh show fd00:98::2 dev eth0; }
neigh_resolved() { neigh_of_n2 | grep -qE "lladdr .*(REACHABLE|STALE|DELAY|PROBE)"; }
ip netns exec "$n1" ping -6 -c3 -i0.5 -W1 fd00:98::2 >/dev/null 2>&1 || true
check  "ND: n1's neighbour entry for n2 (policy on n2, no bypass)" neigh_of_n2
refute "ND: without a bypass n1 never resolves n2 (n2's unicast advertisement is caught by its policy)" neigh_resolved
nd_bypass "$n2"
ip -n "$n1" -6 neigh flush dev eth0
ip netns exec "$n1" ping -6 -c3 -i0.5 -W1 fd00:98::2 >/dev/null 2>&1 || true
check  "ND: with the ICMPv6 133-136 bypass on n2, n1 resolves n2" neigh_resolved
finish
