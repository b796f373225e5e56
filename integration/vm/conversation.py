# conversation.py ADDR PORT LINES [PAUSE [TIMEOUT]]: one TCP socket, as an
# application has it: connect (no retry on a new socket; TIMEOUT seconds, 20 by
# default, for the connection and for each line), then LINES round trips of the
# line "MARK-<i>" with an echo server, PAUSE seconds apart. Prints
# {"start": UNIX_SECONDS, "connect_ms": ..., "rtt_ms": [...], "first_byte_ms": ...}
# (first_byte_ms: from before connect() to the first line's echo, the time to
# first byte) and exits 0 when every line came back.
import json, socket, sys, time

addr, port, lines = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pause = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 20.0
wall = time.time()
start = time.monotonic()
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(timeout)
try:
    s.connect((addr, port))
except OSError as e:
    sys.exit(f"connect to {addr} port {port}: {e}")
out = {"start": wall, "connect_ms": round((time.monotonic() - start) * 1000), "rtt_ms": []}
f = s.makefile("rwb", buffering=0)
for i in range(lines):
    sent = time.monotonic()
    f.write(b"MARK-%d\n" % i)
    if f.readline() != b"MARK-%d\n" % i:
        sys.exit(f"line {i} did not come back: {json.dumps(out)}")
    now = time.monotonic()
    out["rtt_ms"].append(round((now - sent) * 1000))
    out.setdefault("first_byte_ms", round((now - start) * 1000))
    time.sleep(pause)
print(json.dumps(out))
