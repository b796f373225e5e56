"""dynamic.sh's timing of dynamic sets: from a change the caller makes to the new
element being in a kernel set of the daemon's namespace.

The caller gives `change(value)`, which makes the host's state name `value`
(a route, a resolv.conf...) and returns time.monotonic() taken just before the
change takes effect; the changes alternate between two values.
"""

import atexit
import json
import queue
import random
import re
import statistics
import subprocess
import threading
import time


class Monitor:
    """`nft monitor new elements` in a namespace. It prints each element added
    when the transaction commits; a reader thread timestamps every line as it
    arrives."""

    def __init__(self, ns):
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, "stdbuf", "-oL", "nft", "monitor", "new", "elements"],
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        atexit.register(self.stop)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line))

    def wait(self, nft_set, value, deadline):
        """The time `value` was printed as added to `nft_set`, None if not by `deadline`."""
        pat = re.compile(r"%s \{ %s[ }]" % (re.escape(nft_set), re.escape(value)))
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                t, line = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            if pat.search(line):
                return t

    def drain(self):
        while True:
            try:
                self.lines.get_nowait()
            except queue.Empty:
                return

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()


def kernel_has(ns, nft_set, value):
    """Whether `nft -j list set` in `ns` holds the single address `value`."""
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "set", "inet", "ringfence", nft_set],
                         capture_output=True, text=True).stdout
    for o in json.loads(out)["nftables"]:
        for e in o.get("set", {}).get("elem", []):
            if (e["elem"]["val"] if isinstance(e, dict) else e) == value:
                return True
    return False


def pause():
    # Longer than the daemon's coalescing, so that every change is its own
    # burst; jittered so as not to beat with anything periodic.
    time.sleep(0.05 + random.random() * 0.05)


def monitored(ns, nft_set, values, change, n):
    """`n` changes timed by nft monitor. `values` are the two values, the first
    not the current one. Returns (latencies in ms, missed, the last value)."""
    mon = Monitor(ns)
    # Until nft monitor is listening, changes go unseen: change back and forth
    # until one is seen.
    for i in range(50):
        value = values[i % 2]
        if mon.wait(nft_set, value, change(value) + 0.5) is not None:
            break
    else:
        raise SystemExit("nft monitor saw no element of %s in 25 s" % nft_set)
    time.sleep(0.3)
    random.seed(1)
    lat, missed = [], 0
    for i in range(n):
        value = values[0] if value == values[1] else values[1]
        mon.drain()
        t0 = change(value)
        t1 = mon.wait(nft_set, value, t0 + 2.0)
        if t1 is None:
            missed += 1
        else:
            lat.append((t1 - t0) * 1000)
        pause()
    mon.stop()
    return lat, missed, value


def polled(ns, nft_set, values, change, n, value):
    """The cross-check: `n` more changes from `value`, timed by polling the kernel
    set with nft as fast as it answers. Returns (latencies in ms, missed, median
    polls a change, the ms of one nft call, the last value)."""
    lat, missed, polls = [], 0, []
    for i in range(n):
        value = values[0] if value == values[1] else values[1]
        t0 = change(value)
        k = 0
        while True:
            k += 1
            if kernel_has(ns, nft_set, value):
                lat.append((time.monotonic() - t0) * 1000)
                break
            if time.monotonic() - t0 > 2:
                missed += 1
                break
        polls.append(k)
        pause()
    # One nft invocation, for the resolution of the polling.
    t = time.monotonic()
    for _ in range(10):
        kernel_has(ns, nft_set, value)
    nft_ms = (time.monotonic() - t) * 100
    return lat, missed, statistics.median(polls) if polls else 0, nft_ms, value


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(round(p / 100 * len(v) + 0.5)) - 1))]


def fmt(v, p):
    return "%.1f" % pct(v, p) if v else "n/a"


def summary(prefix, lat, missed):
    """The shell assignments PREFIX_N, _MISSED, _MEDIAN, _P90, _P99, _MIN, _MAX
    and PREFIX_ALL (every latency, sorted)."""
    print("{0}_N={1} {0}_MISSED={2} {0}_MEDIAN={3} {0}_P90={4} {0}_P99={5} {0}_MIN={6} {0}_MAX={7}".format(
        prefix, len(lat), missed, fmt(lat, 50), fmt(lat, 90), fmt(lat, 99), fmt(lat, 0), fmt(lat, 100)))
    print("%s_ALL=%s" % (prefix, ",".join("%.1f" % x for x in sorted(lat))))
