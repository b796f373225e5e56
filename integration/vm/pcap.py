"""Counts packets in a pcap file written by tcpdump (see `wire` in guest-lib.sh).

Usage: pcap.py FILE KIND [MARKER]; prints one number.
"""
import struct
import sys


def packets(path):
    """Yields (frame bytes, IP protocol, L4 bytes) for each IPv4/IPv6 frame."""
    with open(path, "rb") as f:
        header = f.read(24)
        if len(header) < 24:
            return
        endian = "<" if header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            _, _, caplen, _ = struct.unpack(endian + "4I", rec)
            frame = f.read(caplen)
            ethertype = struct.unpack("!H", frame[12:14])[0]
            if ethertype == 0x0800:
                ihl = (frame[14] & 0xF) * 4
                yield frame, frame[23], frame[14 + ihl:]
            elif ethertype == 0x86DD:
                yield frame, frame[20], frame[54:]
            else:
                yield frame, None, b""


def is_control(proto, l4):
    """IKE (UDP 500/4500), ICMPv6 neighbour discovery and router messages, non-IP."""
    if proto is None:
        return True
    if proto == 17 and len(l4) >= 4:
        sport, dport = struct.unpack("!HH", l4[:4])
        return sport in (500, 4500) or dport in (500, 4500)
    if proto == 58 and l4:
        return l4[0] in (133, 134, 135, 136, 143)
    return False


def main():
    path, kind = sys.argv[1], sys.argv[2]
    marker = sys.argv[3].encode() if len(sys.argv) > 3 else b""
    n = 0
    for frame, proto, l4 in packets(path):
        esp = proto == 50
        has = bool(marker) and marker in frame
        if kind == "esp":
            n += esp
        elif kind == "esp-marker":
            n += esp and has
        elif kind == "clear-marker":
            n += (not esp) and has
        elif kind == "clear-traffic":
            n += (not esp) and not is_control(proto, l4)
        elif kind == "esp-bytes":
            n += len(frame) if esp and has else 0
        elif kind == "clear-bytes":
            n += len(frame) if (not esp) and has else 0
        else:
            sys.exit(f"unknown kind {kind}")
    print(n)


main()
