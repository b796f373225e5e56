#!/usr/bin/env python3
"""Times requests to the daemon's control socket, one connection each.

    reads.py SOCKET time REQUEST N  N `REQUEST` requests, one every 10 ms
                                  after the last answer; prints p50, p99 and
                                  max latency in ms
    reads.py SOCKET loop REQUEST  `REQUEST` requests back to back until killed
                                  (the answer read to its end and dropped)

The latency is from connect to the answer's last byte, without the CLI's
process start and rendering, so that it is the daemon's.
"""

import json
import socket
import sys
import time


def ask(path, request):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    s.sendall(json.dumps({"request": request}).encode() + b"\n")
    size = 0
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        size += len(chunk)
    s.close()
    return size


def main():
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "loop":
        while True:
            ask(path, sys.argv[3])
    request, n = sys.argv[3], int(sys.argv[4])
    took = []
    for _ in range(n):
        t0 = time.monotonic()
        ask(path, request)
        took.append((time.monotonic() - t0) * 1000)
        time.sleep(0.01)
    took.sort()
    pick = lambda q: took[min(len(took) - 1, int(q * len(took)))]
    print("n=%d p50=%.1f p99=%.1f max=%.1f" % (n, pick(0.5), pick(0.99), took[-1]))


if __name__ == "__main__":
    main()
