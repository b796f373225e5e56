#!/usr/bin/env bash
# The golden rulesets that the unit tests compare against are accepted by this
# kernel's nftables as they are, and come back with every set element.
source "$(dirname "$0")/../lib.sh"

ns=$(host golden)
# set_sizes KIND FILE: "SET: N elements" for each set, from a golden file
# (KIND add: its `add set` commands) or from `nft -j list` (KIND list).
set_sizes() {
    python3 -c '
import json, sys
kind, path = sys.argv[1], sys.argv[2]
objects = json.load(open(path))["nftables"]
sets = [o["add"]["set"] for o in objects if "set" in o.get("add", {})] if kind == "add" else [o["set"] for o in objects if "set" in o]
for s in sorted(sets, key=lambda s: s["name"]):
    print(s["name"] + ":", len(s.get("elem", [])), "elements")' "$1" "$2"
}
for g in "$ROOT"/src/compile/golden/*.json; do
    name=$(basename "$g")
    check "$name loads with nft -j -f" ip netns exec "$ns" nft -j -f "$g"
    set_sizes add "$g" >"$WORK/want"
    table "$ns" >"$WORK/listed.json"
    set_sizes list "$WORK/listed.json" >"$WORK/got"
    # On a mismatch check shows the diff: the sets that lost or gained elements.
    check "$name: the kernel holds all $(awk '{n += $2} END {print n}' "$WORK/want") elements of its sets" \
        diff -u --label golden --label kernel "$WORK/want" "$WORK/got"
done
finish
