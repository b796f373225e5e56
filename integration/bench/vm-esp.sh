#!/usr/bin/env bash
# VM benchmark (figures, not pass/fail), inside the test VM (integration/vm/):
#   1. time from the first packet of a flow to the first packet carried in ESP
#      on the wire, for two pairs of hosts in the same guest, runs interleaved:
#      - hand: charons configured by hand (swanctl, IKEv2, ECDSA, ESP-null
#        transport, start_action trap, charon's own policies);
#      - ringfence: two Ringfence members in `require` mode (Ringfence's xfrm
#        policies and nft table, the connection it loads into each charon).
#      BENCH_VM_RUNS (default 20) fresh negotiations per pair, the SAs ended and
#      flushed between runs; median and p90 of each, and the ratio of the
#      medians (ringfence / hand). The sender sends a datagram every 5 ms from t0
#      until the SA is up; the first ESP frame's capture time is t1.
#   2. bytes on the wire per packet, ESP-null against clear, for the same UDP
#      payload sizes (the clear ones pass through a bypass policy).
# Run on the host: bash integration/bench/vm-esp.sh (it boots the VM itself).
# Under TCG (no KVM) every figure is slower than on hardware: compare only with
# figures measured the same way.
set -euo pipefail
if [ -z "${RF_VM_KDIR:-}" ]; then
    # 2 x 20 negotiations under TCG on a busy machine can take over 10 min.
    RF_VM_TIMEOUT=${RF_VM_TIMEOUT:-1500} exec bash "$(dirname "$0")/../vm/run.sh" "$0" "$@"
fi
source "$(dirname "$0")/../vm/guest-lib.sh"
RUNS=${BENCH_VM_RUNS:-20}
prefer_release

pki_ca ca "C=XX, O=Example, CN=Example Root CA"
# The hand-configured pair.
h1=$(host h1); h2=$(host h2)
link "$h1" eth0 10.99.0.1 fd00:99::1 "$h2" eth0 10.99.0.2 fd00:99::2
for n in 1 2; do
    pki_host host$n ca 10.99.0.$n
    trap_conf host$n 10.99.0.0/24 10.99.0.$n | swanctl_dir "$PREFIX-h$n" host$n ca
    charon_start "$PREFIX-h$n"
    sw_load "$PREFIX-h$n" >/dev/null
done
sink_start "$h2" 7001 7009
# The Ringfence pair.
r1=$(host r1); r2=$(host r2)
link "$r1" eth0 10.98.0.1 fd00:98::1 "$r2" eth0 10.98.0.2 fd00:98::2
for n in 1 2; do
    ns=$PREFIX-r$n
    pki_host rf$n ca 10.98.0.$n
    mkdir -p "$WORK/rf$n"
    cat >"$WORK/rf$n/50-isolation.yaml" <<YAML
version: 1
isolation:
  mode: require
  secure-subnets: ["10.98.0.0/24"]
  identity: { ca: $PKI/ca.crt, certificate: $PKI/rf$n.crt, private-key: $PKI/rf$n.key }
  ike: { socket: "$(vici "$ns")" }
rules:
  - { name: bench, direction: in, action: allow, protocol: udp, local-ports: [7001] }
YAML
    charon_start "$ns"
    : >"$WORK/rf$n.resolv.conf"
    daemon_start "$ns" "$WORK/rf$n" --resolv-conf "$WORK/rf$n.resolv.conf" --leases "$WORK/no-leases"
    wait_for 10 loaded "$ns" || { echo "rf$n: the connection did not load"; exit 1; }
done

# --- 1. first packet -> first ESP packet ---------------------------------------------
# first_esp PAIR FROM TO ADDR CONN: one fresh negotiation; appends t0 to $WORK/PAIR.t0.
first_esp() {
    local pair=$1 from=$2 to=$3 addr=$4 conn=$5 ns sender
    for ns in "$from" "$to"; do
        sw "$ns" --terminate --ike "$conn" --force --timeout 10 >/dev/null 2>&1 || true
        ip -n "$ns" xfrm state flush
    done
    wait_for 5 sh -c "! ip -n $from xfrm state | grep -q . && ! ip -n $to xfrm state | grep -q ." ||
        echo "$pair run: SAs left after the flush"
    sleep 0.3
    ip netns exec "$from" python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print("%.6f" % time.time(), flush=True)
for _ in range(3000):
    try:
        s.sendto(b"bench", (sys.argv[1], 7001))
    except OSError:
        pass
    time.sleep(0.005)' "$addr" >>"$WORK/$pair.t0" &
    sender=$!
    wait_for 20 has_sas "$from" || echo "$pair run: no SA within 20 s"
    sleep 0.2
    kill "$sender" 2>/dev/null; wait "$sender" 2>/dev/null || true
}
capture_start "$h2" eth0 hand
capture_start "$r2" eth0 ringfence
for i in $(seq "$RUNS"); do
    # Alternate which pair goes first, so that neither always follows the other.
    if [ $((i % 2)) -eq 1 ]; then
        first_esp hand "$h1" "$h2" 10.99.0.2 lan; first_esp ringfence "$r1" "$r2" 10.98.0.2 ringfence
    else
        first_esp ringfence "$r1" "$r2" 10.98.0.2 ringfence; first_esp hand "$h1" "$h2" 10.99.0.2 lan
    fi
done
capture_stop hand
capture_stop ringfence
python3 - "$WORK" <<'PY'
import statistics, struct, sys
def first_esp_ms(pcap, t0file):
    t0s = [float(l) for l in open(t0file) if l.strip()]
    esp = []
    with open(pcap, "rb") as f:
        f.read(24)
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                break
            sec, usec, caplen, _ = struct.unpack("<4I", rec)
            frame = f.read(caplen)
            if frame[12:14] == b"\x08\x00" and frame[23] == 50:
                esp.append(sec + usec / 1e6)
    lat = []
    for i, t0 in enumerate(t0s):
        end = t0s[i + 1] if i + 1 < len(t0s) else float("inf")
        first = next((t for t in esp if t0 <= t < end), None)
        if first is not None:
            lat.append((first - t0) * 1000)
    return sorted(lat), len(t0s)
print("first packet -> first ESP packet on the wire (trap, IKEv2 ECDSA P-256, ESP-null):")
medians = {}
for pair in ("hand", "ringfence"):
    lat, runs = first_esp_ms(f"{sys.argv[1]}/{pair}.pcap", f"{sys.argv[1]}/{pair}.t0")
    if not lat:
        print(f"  {pair}: no run had an ESP packet")
        continue
    p90 = lat[min(len(lat) - 1, int(round(0.9 * len(lat))) - 1)]
    medians[pair] = statistics.median(lat)
    left = f" ({runs - len(lat)} without an ESP packet before the next run: left out)" if len(lat) < runs else ""
    print(f"  {pair:9} {len(lat)} of {runs} runs: median {medians[pair]:.0f} ms, p90 {p90:.0f} ms, "
          f"min {lat[0]:.0f} ms, max {lat[-1]:.0f} ms{left}")
if len(medians) == 2:
    print(f"  ratio of the medians, ringfence / hand: {medians['ringfence'] / medians['hand']:.2f}")
PY

# --- 2. bytes on the wire ---------------------------------------------------------------
# Port 7009 passes in clear (bypass policies at priority 1, ahead of charon's).
for d in out in; do
    ip -n "$h1" xfrm policy add dir $d src 0.0.0.0/0 dst 0.0.0.0/0 proto udp dport 7009 priority 1 action allow
    ip -n "$h2" xfrm policy add dir $d src 0.0.0.0/0 dst 0.0.0.0/0 proto udp dport 7009 priority 1 action allow
done
wait_for 20 ping1 "$h1" 10.99.0.2
capture_start "$h2" eth0 size
for n in 16 64 256 512 1024 1400; do
    udp_send "$h1" 10.99.0.2 7001 "$(printf 'e%04d%*s' "$n" $((n - 5)) '' | tr ' ' x)"
    udp_send "$h1" 10.99.0.2 7009 "$(printf 'c%04d%*s' "$n" $((n - 5)) '' | tr ' ' x)"
done
wait_for 5 received "$h2" 7009 "c1400$(printf '%*s' 1395 '' | tr ' ' x)" || true
capture_stop size
echo "bytes on the wire per UDP/IPv4 packet (Ethernet frame), ESP-null (HMAC-SHA256-128) against clear:"
printf '  %8s %8s %8s %9s\n' payload clear esp overhead
for n in 16 64 256 512 1024 1400; do
    c=$(wire size clear-bytes "c$(printf %04d "$n")xxx")
    e=$(wire size esp-bytes "e$(printf %04d "$n")xxx")
    printf '  %8s %8s %8s %9s\n' "$n" "$c" "$e" "$((e - c))"
done
