#!/usr/bin/env bash
# VM benchmark (figures, not pass/fail): the baseline a Ringfence-managed
# measurement will be compared with. Two hosts with hand-configured charons
# (swanctl, IKEv2, ECDSA, ESP-null transport, start_action trap, charon's own
# policies), inside the test VM (integration/vm/):
#   1. time from the first packet of a flow to the first packet carried in ESP
#      on the wire: BENCH_VM_RUNS (default 20) fresh negotiations, the SAs ended
#      and flushed between runs; median and p90. The sender sends a datagram every
#      5 ms from t0 until the SA is up; the first ESP frame's capture time is t1.
#   2. bytes on the wire per packet, ESP-null against clear, for the same UDP
#      payload sizes (the clear ones pass through a bypass policy).
# Run on the host: bash integration/bench/vm-esp.sh (it boots the VM itself).
# Under TCG (no KVM) every figure is slower than on hardware: compare only with
# figures measured the same way.
set -euo pipefail
if [ -z "${RF_VM_KDIR:-}" ]; then
    # 20 negotiations under TCG on a busy machine can take over 6 min.
    RF_VM_TIMEOUT=${RF_VM_TIMEOUT:-900} exec bash "$(dirname "$0")/../vm/run.sh" "$0" "$@"
fi
source "$(dirname "$0")/../vm/guest-lib.sh"
RUNS=${BENCH_VM_RUNS:-20}

h1=$(host h1); h2=$(host h2)
link "$h1" eth0 10.99.0.1 fd00:99::1 "$h2" eth0 10.99.0.2 fd00:99::2
pki_ca ca "C=XX, O=Example, CN=Example Root CA"
pki_host host1 ca 10.99.0.1
pki_host host2 ca 10.99.0.2
for n in 1 2; do
    trap_conf host$n 10.99.0.0/24 10.99.0.$n | swanctl_dir "$PREFIX-h$n" host$n ca
    charon_start "$PREFIX-h$n"
    sw_load "$PREFIX-h$n" >/dev/null
done
sink_start "$h2" 7001 7009

# --- 1. first packet -> first ESP packet ---------------------------------------------
capture_start "$h2" eth0 bench
: >"$WORK/t0"
for i in $(seq "$RUNS"); do
    sw "$h1" --terminate --ike lan --force --timeout 10 >/dev/null 2>&1 || true
    sw "$h2" --terminate --ike lan --force --timeout 10 >/dev/null 2>&1 || true
    ip -n "$h1" xfrm state flush; ip -n "$h2" xfrm state flush
    wait_for 5 sh -c "! ip -n $h1 xfrm state | grep -q . && ! ip -n $h2 xfrm state | grep -q ." ||
        echo "run $i: SAs left after the flush"
    sleep 0.3
    ip netns exec "$h1" python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print("%.6f" % time.time(), flush=True)
for _ in range(3000):
    try:
        s.sendto(b"bench", ("10.99.0.2", 7001))
    except OSError:
        pass
    time.sleep(0.005)' >>"$WORK/t0" &
    sender=$!
    wait_for 20 has_sas "$h1" || echo "run $i: no SA within 20 s"
    sleep 0.2
    kill "$sender" 2>/dev/null; wait "$sender" 2>/dev/null || true
done
capture_stop bench
python3 - "$WORK/bench.pcap" "$WORK/t0" <<'PY'
import statistics, struct, sys
t0s = [float(l) for l in open(sys.argv[2]) if l.strip()]
esp = []
with open(sys.argv[1], "rb") as f:
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
lat.sort()
p90 = lat[min(len(lat) - 1, int(round(0.9 * len(lat))) - 1)] if lat else float("nan")
print("first packet -> first ESP packet on the wire (trap, IKEv2 ECDSA P-256, ESP-null), %d of %d runs:" % (len(lat), len(t0s)))
if len(lat) < len(t0s):
    print("  (%d runs had no ESP packet between their start and the next run's: left out)" % (len(t0s) - len(lat)))
print("  median %.0f ms, p90 %.0f ms, min %.0f ms, max %.0f ms" % (statistics.median(lat), p90, lat[0], lat[-1]))
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
