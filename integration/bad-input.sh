#!/usr/bin/env bash
# Bad input: every broken policy must be rejected with a precise message, and must
# change nothing.
#
#  1. The corpus: integration/bad-policies/*.yaml (one problem per file; the first
#     line is "# expect: LINE:COL: SUBSTRING"), its subdirectories (cases of
#     several files, with an `expect` file of "FILE:LINE:COL: SUBSTRING" lines),
#     and cases made here because git cannot or should not hold them (10 MB,
#     deep nesting, not UTF-8, world-writable, symlinks, a directory).
#     In a SUBSTRING, "DIR" stands for the policy directory of the run.
#  2. `ringfence check` on each case alone, in a fresh directory: exit 1 within
#     10 s, and an error line "DIR/FILE:LINE:COL: ..." containing SUBSTRING.
#  3. One daemon: each case is added to its policy directory and `apply` must
#     fail naming the file, with the table byte-identical and the daemon alive.
#  4. No message line is longer than 1000 characters, whatever the input.
source "$(dirname "$0")/lib.sh"

CORPUS="$ROOT/integration/bad-policies"
CASES="$WORK/cases"            # CASES/NAME/files/* and CASES/NAME/expect
mkdir -p "$CASES"
NAMES=()

# bi_add_case NAME EXPECT_LINE...: registers a case whose files are already in
# CASES/NAME/files.
bi_add_case() {
    local name=$1; shift
    printf '%s\n' "$@" >"$CASES/$name/expect"
    NAMES+=("$name")
}

# bi_new_case NAME: prints the directory to put the files of a generated case in.
bi_new_case() { mkdir -p "$CASES/$1/files"; echo "$CASES/$1/files"; }

# --- the stored corpus
stored=0
for f in "$CORPUS"/*.yaml; do
    name=$(basename "$f")
    header=$(head -n1 "$f")
    case $header in
        "# expect: "*) ;;
        *) fail "$name: first line is not '# expect: LINE:COL: SUBSTRING'"; continue ;;
    esac
    cp -a "$f" "$(bi_new_case "$name")/"
    bi_add_case "$name" "$name:${header#\# expect: }"
    stored=$((stored + 1))
done
for d in "$CORPUS"/*/; do
    name=$(basename "$d")
    [ -f "$d/expect" ] || { fail "$name/: no expect file"; continue; }
    files=$(bi_new_case "$name")
    find "$d" -maxdepth 1 -name '*.yaml' -exec cp -a {} "$files/" \;
    mapfile -t lines <"$d/expect"
    bi_add_case "$name" "${lines[@]}"
    stored=$((stored + 1))
done
[ "$stored" -ge 30 ] || fail "the stored corpus has $stored cases, fewer than 30"

# --- cases made at test time
# A valid policy somewhere else, for a symlink to leave the directory to.
mkdir -p "$WORK/elsewhere"
printf 'version: 1\nrules:\n  - { name: elsewhere, direction: in, action: allow, protocol: tcp, local-ports: [8443] }\n' \
    >"$WORK/elsewhere/good.yaml"

f=$(bi_new_case g-10mb.yaml)/g-10mb.yaml
{ echo 'version: 1'; yes '# padding padding padding padding padding padding padding padding' | head -c 10485760 || true; } >"$f"
bi_add_case g-10mb.yaml "g-10mb.yaml:1:1: policy files are limited to 1048576 bytes"

# 10,000 levels of flow sequences (10 KB: under the size limit, so the parser meets it).
f=$(bi_new_case g-deep-nesting.yaml)/g-deep-nesting.yaml
{ printf 'version: 1\nrules: '; printf '%*s' 10000 '' | tr ' ' '['; printf '%*s' 10000 '' | tr ' ' ']'; echo; } >"$f"
bi_add_case g-deep-nesting.yaml "g-deep-nesting.yaml:2:263: nested too deeply for a policy file"

f=$(bi_new_case g-not-utf8.yaml)/g-not-utf8.yaml
printf 'version: 1\n# caf\xff\xfe\nrules: []\n' >"$f"
bi_add_case g-not-utf8.yaml "g-not-utf8.yaml:2:6: is not UTF-8 text"

f=$(bi_new_case g-utf16.yaml)/g-utf16.yaml
printf '\xff\xfev\0e\0r\0s\0i\0o\0n\0:\0 \x001\0\n\0' >"$f"
bi_add_case g-utf16.yaml "g-utf16.yaml:1:1: is not UTF-8 text"

f=$(bi_new_case g-nul-byte.yaml)/g-nul-byte.yaml
printf 'version: 1\nrules:\n  - name: we\0b\n    direction: in\n    action: allow\n' >"$f"
bi_add_case g-nul-byte.yaml "g-nul-byte.yaml:3:13: unexpected character"

f=$(bi_new_case g-world-writable.yaml)/g-world-writable.yaml
printf 'version: 1\nrules: []\n' >"$f"
chmod 0666 "$f"
bi_add_case g-world-writable.yaml "g-world-writable.yaml:1:1: is world-writable (mode 0666)"

ln -s "$WORK/elsewhere/good.yaml" "$(bi_new_case g-symlink-out.yaml)/g-symlink-out.yaml"
bi_add_case g-symlink-out.yaml \
    "g-symlink-out.yaml:1:1: is a symlink to $WORK/elsewhere/good.yaml, which is not in the same policy directory"

ln -s ../elsewhere/good.yaml "$(bi_new_case g-symlink-out-relative.yaml)/g-symlink-out-relative.yaml"
bi_add_case g-symlink-out-relative.yaml "g-symlink-out-relative.yaml:1:1: which is not in the same policy directory"

ln -s no-such-file.yaml "$(bi_new_case g-dangling-symlink.yaml)/g-dangling-symlink.yaml"
bi_add_case g-dangling-symlink.yaml "g-dangling-symlink.yaml:1:1: is a dangling symlink"

ln -s g-symlink-loop.yaml "$(bi_new_case g-symlink-loop.yaml)/g-symlink-loop.yaml"
bi_add_case g-symlink-loop.yaml "g-symlink-loop.yaml:1:1: is a symlink loop"

mkdir "$(bi_new_case g-directory.yaml)/g-directory.yaml"
bi_add_case g-directory.yaml "g-directory.yaml:1:1: is not a regular file"

# Opening a FIFO would block until a writer came: the type is checked first.
mkfifo "$(bi_new_case g-fifo.yaml)/g-fifo.yaml"
bi_add_case g-fifo.yaml "g-fifo.yaml:1:1: is not a regular file"

# A 1,000,000-character value: the message quotes 80 characters of it (every
# message line is checked to be short, below).
f=$(bi_new_case g-huge-value.yaml)/g-huge-value.yaml
{ printf 'version: 1\nrules:\n  - { name: huge, direction: in, action: allow, protocol: tcp, local-ports: ["'
  printf '%*s' 1000000 '' | tr ' ' 9; printf '"] }\n'; } >"$f"
bi_add_case g-huge-value.yaml \
    "g-huge-value.yaml:3:78: rules[0].local-ports[0]: \"$(printf '%*s' 80 '' | tr ' ' 9)…\" (1000000 characters) is not a port"
# The same in a message of the YAML library (an unknown word).
f=$(bi_new_case g-huge-word.yaml)/g-huge-word.yaml
{ printf 'version: 1\nrules:\n  - { name: huge, action: allow, direction: '
  printf '%*s' 1000000 '' | tr ' ' x; printf ' }\n'; } >"$f"
bi_add_case g-huge-word.yaml "g-huge-word.yaml:3:45: unknown variant \`$(printf '%*s' 80 '' | tr ' ' x)…\`, expected one of in, out"

# bi_expected_in OUTFILE DIR NAME: succeeds when OUTFILE has, for every expect
# line of case NAME, a line starting "DIR/FILE:LINE:COL: " that contains the
# substring; prints what is missing otherwise.
bi_expected_in() {
    local out=$1 dir=$2 name=$3 line file place sub ok=0
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        file=${line%%:*}; line=${line#*:}
        place=${line%%: *}; sub=${line#*: }
        sub=${sub//DIR/$dir}
        if ! P="$dir/$file:$place: " S="$sub" awk \
            'index($0, ENVIRON["P"]) == 1 && index($0, ENVIRON["S"]) { found = 1 } END { exit !found }' "$out"; then
            echo "       | expected: $dir/$file:$place: ...$sub..."
            ok=1
        fi
    done <"$CASES/$name/expect"
    return $ok
}

# bi_long_lines FILE: succeeds when FILE has a line longer than MAX_LINE characters.
MAX_LINE=1000
bi_long_lines() { LC_ALL=C.UTF-8 awk -v max="$MAX_LINE" 'length($0) > max { found = 1 } END { exit !found }' "$1"; }

bi_show() { sed 's/^/       | /' "$1" | cut -c1-300 | tail -"${2:-10}"; }

# --- 1. `check` on each case alone
echo "-- check: ${#NAMES[@]} cases, each alone in a fresh directory"
for name in "${NAMES[@]}"; do
    dir="$WORK/check.$name"     # beside elsewhere/, as the daemon's directory is
    mkdir "$dir"
    cp -a "$CASES/$name/files/." "$dir/"
    rc=0
    timeout 10 "$RINGFENCE" check --policy-dir "$dir" >"$WORK/out" 2>"$WORK/err" || rc=$?
    if [ "$rc" -ne 1 ]; then
        fail "check $name: exit status $rc, not 1$([ "$rc" -eq 124 ] && echo ' (timed out after 10 s)')"
        bi_show "$WORK/err"; bi_show "$WORK/out" 3
    elif ! bi_expected_in "$WORK/err" "$dir" "$name"; then
        fail "check $name: not the expected message"
        bi_show "$WORK/err"
    elif bi_long_lines "$WORK/err"; then
        fail "check $name: a message line of more than $MAX_LINE characters"
        bi_show "$WORK/err"
    else
        pass "check $name"
    fi
    rm -rf "$dir"
done

# --- 2. a running daemon: a bad file changes nothing
echo "-- daemon: each case added to the policy of a running daemon"
ns=$(host fw)
PDIR="$WORK/daemon-policy"
mkdir "$PDIR"
cat >"$PDIR/00-base.yaml" <<'YAML'
version: 1
profiles:
  public: { inbound: block, outbound: allow }
rules:
  - { name: base-web, direction: in, action: allow, protocol: tcp, local-ports: [80, "8000-8080"], remote-addresses: ["10.0.0.0/8", "2001:db8::/32"] }
  - { name: base-block, direction: in, action: block, protocol: udp, remote-addresses: ["192.0.2.0/24"] }
  - { name: base-ping, direction: in, action: allow, protocol: icmp, icmp-types: [echo-request] }
YAML
daemon_start "$ns" "$PDIR"

# bi_state KEY: one field of the daemon's `show state --json` ("" for null).
bi_state() {
    rf "$ns" show state --json | python3 -c '
import json, sys
v = json.load(sys.stdin).get(sys.argv[1])
print("" if v is None else v)' "$1"
}

check "the base policy applies with \`apply\`" rf "$ns" apply
table "$ns" >"$WORK/table.before"
generation=$(bi_state generation)

# The daemon also reloads by itself, 300 ms after the last file change. The files
# of the next case go in before those of the previous case come out, so a bad
# file is present from the first case to the last and no reload can succeed in
# between: the table must stay byte-identical (a successful reload would
# re-create it with new handles). Each `apply` still sees one case only.
previous=()
for name in "${NAMES[@]}"; do
    added=()
    for f in "$CASES/$name/files"/*; do
        b=$(basename "$f")
        [ ! -e "$PDIR/$b" ] && [ ! -L "$PDIR/$b" ] || { fail "daemon $name: $b is already in the policy directory"; continue 2; }
        cp -a "$f" "$PDIR/"
        added+=("$b")
    done
    for b in "${previous[@]}"; do rm -rf "${PDIR:?}/$b"; done
    previous=("${added[@]}")

    problems=()
    rc=0
    rf "$ns" apply >"$WORK/apply.out" 2>&1 || rc=$?
    [ "$rc" -ne 0 ] || problems+=("apply succeeded")
    bi_expected_in "$WORK/apply.out" "$PDIR" "$name" >"$WORK/missing" || problems+=("apply does not give the expected message")
    ! bi_long_lines "$WORK/apply.out" || problems+=("a message line of more than $MAX_LINE characters")
    table "$ns" >"$WORK/table.now" 2>&1 || true
    cmp -s "$WORK/table.before" "$WORK/table.now" || problems+=("the table changed")
    kill -0 "$DAEMON_PID" 2>/dev/null || problems+=("the daemon died")
    err=$(bi_state last-error 2>/dev/null) || problems+=("show state failed")
    case $err in *"$PDIR/${added[0]}"*|*"$PDIR/$(head -n1 "$CASES/$name/expect" | cut -d: -f1)"*) ;;
        *) problems+=("last-error does not name the file: ${err:0:200}") ;; esac
    [ "$(bi_state generation 2>/dev/null)" = "$generation" ] || problems+=("the generation changed")

    if [ ${#problems[@]} -eq 0 ]; then
        pass "daemon $name: apply rejected, table unchanged"
    else
        fail "daemon $name: $(IFS=';'; echo "${problems[*]}")"
        bi_show "$WORK/apply.out"; cat "$WORK/missing"
        # Judge the next cases against what is in force now, not against this failure.
        table "$ns" >"$WORK/table.before" 2>&1 || true
        generation=$(bi_state generation 2>/dev/null) || true
        if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            bi_show "$WORK/$ns.log" 20
            break
        fi
    fi
done
for b in "${previous[@]}"; do rm -rf "${PDIR:?}/$b"; done

check "with the bad files gone, apply succeeds again" rf "$ns" apply
err=$(bi_state last-error)
check "and last-error is cleared" test -z "$err"
check "the daemon is still running" kill -0 "$DAEMON_PID"
finish
