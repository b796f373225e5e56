#!/usr/bin/env bash
# The golden rulesets that the unit tests compare against are accepted by this
# kernel's nftables as they are, and come back with every set element.
source "$(dirname "$0")/../lib.sh"

ns=$(host golden)
count_elems() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(len(o["set"].get("elem",[])) for o in d["nftables"] if "set" in o))'; }
for g in "$ROOT"/src/compile/golden/*.json; do
    name=$(basename "$g")
    check "$name loads with nft -j -f" ip netns exec "$ns" nft -j -f "$g"
    want=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(len(o["add"]["set"].get("elem",[])) for o in d["nftables"] if "set" in o.get("add",{})))' "$g")
    got=$(table "$ns" | count_elems)
    check "$name: the kernel holds all $want elements" test "$got" = "$want"
done
finish
