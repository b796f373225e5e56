"""A UDP sink for the VM scenarios: listens on the given ports (IPv4) and
appends "PORT PAYLOAD" to FILE for every datagram received.

Usage: udp-sink.py FILE PORT...
"""
import selectors
import socket
import sys

path, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
sel = selectors.DefaultSelector()
for port in ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    sel.register(s, selectors.EVENT_READ, port)
with open(path, "a", buffering=1) as out:
    while True:
        for key, _ in sel.select():
            data = key.fileobj.recv(2048)
            out.write("%d %s\n" % (key.data, data.decode(errors="replace").strip()))
