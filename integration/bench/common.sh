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
