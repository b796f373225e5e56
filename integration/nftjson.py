"""Helpers for the scenarios' inline Python: reading nft -j set elements."""

import ipaddress


def addr_range(v):
    """An element of `nft -j` (or its value; of a concatenation, its last
    field) or an address, prefix or range in text, as (lo, hi) integers."""
    if isinstance(v, dict) and "elem" in v:
        v = v["elem"]["val"]
    if isinstance(v, dict) and "concat" in v:  # (ifname . address): the address
        v = v["concat"][-1]
    if isinstance(v, dict) and "prefix" in v:
        v = "%s/%d" % (v["prefix"]["addr"], v["prefix"]["len"])
    elif isinstance(v, dict) and "range" in v:
        v = "%s-%s" % tuple(v["range"])
    if "-" in v:
        lo, hi = v.split("-")
        return int(ipaddress.ip_address(lo)), int(ipaddress.ip_address(hi))
    n = ipaddress.ip_network(v, strict=False)
    return int(n.network_address), int(n.broadcast_address)
