#!/usr/bin/env python3
"""Writes a benchmark policy of N inbound block rules and the same rules as a
linear nft ruleset.

Rule i (0-based) blocks tcp from one remote address to one local port:
    remote-addresses: ["10.A.B.C"]  (10.64.0.1 + i: distinct, inside 10.64.0.0/10)
    local-ports: [1024 + i % 64000]  (distinct for N <= 64,000)
so every (address, port) pair is distinct. None of them is an address the
benchmark's namespaces use, so test traffic never matches a block rule: it walks
the whole linear chain (its worst case) and misses Ringfence's block set.

Policy files are limited to 1 MiB each (src/policy/load.rs), so the rules are
split into files of RULES_PER_FILE. With --allow-port, one more file allows
inbound tcp to that port (the iperf3 port), since the default profile blocks
inbound. With --staged-copy, the N rules are written a second time, staged
(`stage: audit`, names prefixed `staged-`): what a staged copy of a policy
costs beside it.

The policy is the N rules alone: the directory masks the default layer
(00-default.yaml, a symlink to /dev/null) and turns core networking off
(05-bench-settings.yaml), so that its sets and lookups are the rules' only, as
the linear ruleset's are.

Usage: gen-policy.py N POLICY_DIR [--allow-port 5201] [--linear FILE.nft] [--staged-copy]
"""

import argparse
import ipaddress
import os
import sys

RULES_PER_FILE = 5000  # about 120 bytes a rule: well under 1 MiB a file
BASE = int(ipaddress.IPv4Address("10.64.0.1"))


def pair(i):
    return str(ipaddress.IPv4Address(BASE + i)), 1024 + i % 64000


def write_rules(n, out_dir, file_prefix, stage):
    for start in range(0, n, RULES_PER_FILE):
        path = os.path.join(out_dir, "%s-%06d.yaml" % (file_prefix, start))
        with open(path, "w") as f:
            f.write("version: 1\n%srules:\n" % ("stage: audit\n" if stage else ""))
            for i in range(start, min(n, start + RULES_PER_FILE)):
                addr, port = pair(i)
                f.write(
                    '  - { name: %sbench-block-%06d, direction: in, action: block, protocol: tcp, '
                    'remote-addresses: ["%s"], local-ports: [%d] }\n' % ("staged-" if stage else "", i, addr, port)
                )


def write_policy(n, out_dir, allow_port, staged_copy):
    os.makedirs(out_dir, exist_ok=True)
    mask = os.path.join(out_dir, "00-default.yaml")
    if not os.path.lexists(mask):
        os.symlink("/dev/null", mask)
    with open(os.path.join(out_dir, "05-bench-settings.yaml"), "w") as f:
        f.write("version: 1\nsettings:\n  core-networking: false\n")
    write_rules(n, out_dir, "50-bench", False)
    if staged_copy:
        write_rules(n, out_dir, "60-bench-staged", True)
    if allow_port is not None:
        with open(os.path.join(out_dir, "10-bench-allow.yaml"), "w") as f:
            f.write(
                "version: 1\nrules:\n"
                "  - { name: bench-allow, direction: in, action: allow, protocol: tcp, local-ports: [%d] }\n"
                % allow_port
            )


def write_linear(n, path):
    """One `ip saddr X tcp dport Y drop` rule per pair in an input chain
    (policy accept, no conntrack shortcut: every packet walks every rule)."""
    with open(path, "w") as f:
        f.write("table inet linear {\n  chain input {\n")
        f.write("    type filter hook input priority 0; policy accept;\n")
        for i in range(n):
            addr, port = pair(i)
            f.write("    ip saddr %s tcp dport %d drop\n" % (addr, port))
        f.write("  }\n}\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("n", type=int, help="number of block rules")
    p.add_argument("policy_dir")
    p.add_argument("--allow-port", type=int, help="also allow inbound tcp to this port")
    p.add_argument("--linear", metavar="FILE", help="also write the linear nft ruleset here")
    p.add_argument("--staged-copy", action="store_true", help="also write the rules again, staged")
    a = p.parse_args()
    if not 1 <= a.n <= (1 << 22) - 2:
        sys.exit("n must be between 1 and 4,194,302 (addresses stay inside 10.64.0.0/10)")
    write_policy(a.n, a.policy_dir, a.allow_port, a.staged_copy)
    if a.linear:
        write_linear(a.n, a.linear)


if __name__ == "__main__":
    main()
