#!/usr/bin/env bash
# Ringfence benchmark of network location detection: prints figures, never
# fails because a target is missed (only if something cannot be set up). See
# docs/performance.md, "Location detection".
#
# fw's eth0 leads to dc, which serves https for dc.corp.test with a certificate
# of the domain CA (socat) and resolves the name (dnsmasq); fw's policy
# detects the domain profile with the probe https://dc.corp.test/. BENCH_FLAPS
# (20) times: eth0 is set down and, once the detector has it undecided,
# up again; measured is the time from writing `link set eth0 up` to a
# long-running `ip -batch -` until `nft monitor` in fw's namespace prints eth0
# added to location_domain (the domain profile's ruleset in force for it), and
# the probe's own time as the daemon reports it (connect and TLS handshake of
# the last round; the name's DNS query is outside it). Two rounds decide
# (docs/policy.md, hysteresis), so the total holds two probes. Median, p90,
# max. (Issue 13's goal: probe RTT + under 200 ms.)
#
# Everything runs in network namespaces it creates, removed on exit.
# Environment (all optional):
#   RINGFENCE        binary to measure (default: cargo build --release, target/release/ringfence)
#   BENCH_FLAPS=20   link flaps measured
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/common.sh" nft ip python3 stdbuf socat dnsmasq openssl
export PYTHONPATH="$HERE:$PYTHONPATH"
FLAPS=${BENCH_FLAPS:-20}

fw=$(host fw); dc=$(host dc)
link "$fw" eth0 10.251.0.1 fd00:251::1 "$dc" eth0 10.251.0.2 fd00:251::2
PKI="$WORK/pki"; mkdir "$PKI"
pki_ca domain-ca "/CN=Corp Domain CA"
pki_leaf dc domain-ca "/CN=dc.corp.test" "DNS:dc.corp.test"
dc_dns "$dc" 10.251.0.2 10.251.0.2
dc_https "$dc" dc
echo "nameserver 10.251.0.2" >"$WORK/resolv.conf"
mkdir "$WORK/policy"
location_policy "$WORK/policy/10-location.yaml"
daemon_start "$fw" "$WORK/policy" --resolv-conf "$WORK/resolv.conf"
echo "ringfence $("$RINGFENCE" --version 2>/dev/null | awk '{print $2}') ($RINGFENCE); load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$fw" "$FLAPS" "$RINGFENCE" "$(sock "$fw")" <<'PY'
import json, subprocess, sys, time
import setlatency as sl
ns, flaps, rf, sock = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def eth0():
    out = subprocess.run(["ip", "netns", "exec", ns, rf, "--socket", sock, "show", "profiles", "--json"],
                         capture_output=True, text=True, check=True).stdout
    return next(i for i in json.loads(out)["host-interfaces"] if i["interface"] == "eth0")

def wait(what, cond, secs=10):
    deadline = time.monotonic() + secs
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit("eth0 never became %s" % what)
        time.sleep(0.02)

ipb = subprocess.Popen(["ip", "-n", ns, "-batch", "-"], stdin=subprocess.PIPE, text=True)
def ip(cmd):
    t = time.monotonic()
    ipb.stdin.write(cmd + "\n")
    ipb.stdin.flush()
    return t

wait("domain", lambda: eth0()["profile"] == "domain")
mon = sl.Monitor(ns)
time.sleep(0.3)
total, probe, missed = [], [], 0
for _ in range(flaps):
    ip("link set eth0 down")
    wait("undecided", lambda: (eth0().get("detection") or {}).get("state") == "undecided")
    # The kernel's linkwatch handles carrier changes at most once a second
    # (a veth pair whose two ends have the same ifindex, in two namespaces,
    # is not "urgent"), and the down just before was one: without the pause
    # the up's carrier, on both ends, waits for the rest of that second, and
    # the figure would be the kernel's.
    time.sleep(1.1)
    mon.drain()
    t0 = ip("link set eth0 up")
    t1 = mon.wait("location_domain", '"eth0"', t0 + 5.0)
    if t1 is None:
        missed += 1
        continue
    total.append((t1 - t0) * 1000)
    wait("domain in show profiles", lambda: eth0()["profile"] == "domain")
    probe.append(eth0()["detection"]["rtt-ms"])
    sl.pause()
ipb.stdin.close()
ipb.wait()
mon.stop()
print("location detection, %d link flaps (%d missed): link up -> eth0 in location_domain" % (flaps, missed))
print("   total  median %s ms   p90 %s ms   max %s ms" % (sl.fmt(total, 50), sl.fmt(total, 90), sl.fmt(total, 100)))
print("   probe  median %s ms   p90 %s ms   max %s ms   (connect + TLS handshake, one round; two rounds decide)" % (
    sl.fmt(probe, 50), sl.fmt(probe, 90), sl.fmt(probe, 100)))
PY
