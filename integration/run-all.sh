#!/usr/bin/env bash
# Installs the test dependencies, builds, and runs every test tier: unit and
# golden tests, the bad-input corpus, the namespace scenarios, and the VM
# scenarios (integration/vm/: ESP, which this machine's kernel lacks, in a QEMU
# guest). Prints one closing line "N passed, M failed".
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

[ "$(id -u)" -eq 0 ] || { echo "run-all.sh needs root (network namespaces, nftables)"; exit 1; }
bash integration/install-deps.sh || exit 1
cargo build --quiet --locked || exit 1
export RINGFENCE="$ROOT/target/debug/ringfence"

passed=0
failed=0
failed_names=()
tally() { # tally NAME LOGFILE STATUS
    local line p f
    line=$(grep -E '^[^ ]*:? ?[0-9]+ passed, [0-9]+ failed' "$2" | tail -1)
    p=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+'); f=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+')
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
    if [ "$3" -ne 0 ] || [ -z "$line" ]; then
        failed_names+=("$1")
        # (A scenario that failed without a failed check, or printed no tally, counts once.)
        [ "${f:-0}" -ne 0 ] || failed=$((failed + 1))
    fi
}

echo "== unit and golden tests"
# As root: the tests that need it (`#[ignore = "needs root..."]`) run too.
cargo test --quiet --locked -- --include-ignored 2>&1 | tee "$ROOT/target/unit.log"
status=${PIPESTATUS[0]}
p=$(grep -Eo '[0-9]+ passed' "$ROOT/target/unit.log" | awk '{s+=$1} END {print s+0}')
f=$(grep -Eo '[0-9]+ failed' "$ROOT/target/unit.log" | awk '{s+=$1} END {print s+0}')
passed=$((passed + p)); failed=$((failed + f))
[ "$status" -eq 0 ] || { failed_names+=(unit); [ "$f" -ne 0 ] || failed=$((failed + 1)); }

for t in integration/bad-input.sh integration/scenarios/*.sh; do
    [ -f "$t" ] || continue
    echo "== $t"
    log="$ROOT/target/$(basename "$t" .sh).log"
    timeout 600 bash "$t" 2>&1 | tee "$log"
    tally "$t" "$log" "${PIPESTATUS[0]}"
done

# The VM tier: ESP between namespaces inside a QEMU guest running Debian's
# kernel (this machine's has no ESP). Each scenario boots its own guest.
for t in integration/vm/scenarios/*.sh; do
    [ -f "$t" ] || continue
    echo "== $t (VM)"
    log="$ROOT/target/vm-$(basename "$t" .sh).log"
    bash integration/vm/run.sh "$t" 2>&1 | tee "$log"
    tally "$t" "$log" "${PIPESTATUS[0]}"
done

[ ${#failed_names[@]} -eq 0 ] || echo "failed: ${failed_names[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#failed_names[@]} -eq 0 ]
