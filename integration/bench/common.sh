# Shared start of the benchmarks: the release binary (unless RINGFENCE names
# one), root, the tools given as arguments, and lib.sh's namespace helpers.
# Source it with the tools each benchmark needs: `source common.sh nft ip python3`.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [ -z "${RINGFENCE:-}" ]; then
    (cd "$REPO" && cargo build --release --quiet)
    RINGFENCE=$REPO/target/release/ringfence
fi
RINGFENCE=$(realpath "$RINGFENCE")
export RINGFENCE
[ "$(id -u)" -eq 0 ] || { echo "the benchmark needs root (network namespaces, nftables)"; exit 1; }
for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "missing $tool (bash integration/install-deps.sh)"; exit 1; }
done
# shellcheck source=../lib.sh
source "$REPO/integration/lib.sh"

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# iperf_gbps CLIENT_NS ADDRESS PORT SECONDS: Gbit/s received, one TCP stream.
iperf_gbps() {
    ip netns exec "$1" timeout $(($4 + 20)) iperf3 -c "$2" -p "$3" -t "$4" -J \
        | python3 -c 'import json, sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))'
}
