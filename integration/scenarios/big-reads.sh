#!/usr/bin/env bash
# Reads of a 100,000-rule policy (docs/performance.md): `show rules`, `show
# stats`, `show profiles`, `show policy` and a scrape of the metrics endpoint
# answer completely (every rule) and cost the daemon less than 64 MB of peak RSS (VmHWM, reset before each
# request through /proc/PID/clear_refs), after which its RSS is back near where
# it was. And reads never wait on a change: while the reload of another
# 100,000-rule policy (its files edited) is in progress, `show state` answers
# at once, with the change in progress and the old generation.
source "$(dirname "$0")/../lib.sh"

fw=$(host fw)
P="$WORK/policy"
python3 "$ROOT/integration/bench/gen-policy.py" 100000 "$P" >/dev/null
daemon_start "$fw" "$P" --metrics "unix:$WORK/metrics.sock"

# kb FIELD: the daemon's VmRSS or VmHWM, in kB.
kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$DAEMON_PID/status"; }
now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

# read_answer WHAT: `show WHAT --json`; for `metrics`, a scrape of the
# endpoint summed up as JSON: its status line and each family's samples.
read_answer() {
    [ "$1" = metrics ] || { rf "$fw" show "$1" --json; return; }
    timeout 30 python3 - "$WORK/metrics.sock" <<'PY'
import collections, json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
reply = s.makefile("rb")
status = reply.readline().decode().strip()
while reply.readline() not in (b"\r\n", b""):
    pass
samples = collections.Counter(l.split(b"{")[0].split(b" ")[0].decode() for l in reply if not l.startswith(b"#"))
print(json.dumps({"status": status, "samples": samples}))
PY
}

# big_read WHAT COUNT_EXPR COUNT: `read_answer WHAT`, in which COUNT_EXPR (a
# jget expression) must count COUNT (every rule, or every profile), must
# answer within 20 s (a generous bound for a debug build and its client's
# parsing; docs/performance.md has the release figures), grow the daemon's
# peak RSS by less than 64 MB, and leave its RSS within 16 MB of where it was.
big_read() {
    local what=$1 count=$2 expected=$3 label="show $1" base t0 took hwm after
    [ "$what" = metrics ] && label="a metrics scrape"
    echo 5 >"/proc/$DAEMON_PID/clear_refs"
    base=$(kb VmRSS)
    t0=$(now_ms)
    read_answer "$what" >"$WORK/$what.json"
    took=$(($(now_ms) - t0))
    hwm=$(kb VmHWM) after=$(kb VmRSS)
    echo "  $label: ${took} ms, peak RSS +$(((hwm - base) / 1024)) MB, after +$(((after - base) / 1024)) MB"
    check "$label lists all $expected" test "$(jget "$count" <"$WORK/$what.json")" = "$expected"
    check "$label answers within 20 s" test "$took" -lt 20000
    check "$label grows peak RSS by less than 64 MB" test $((hwm - base)) -lt 65536
    check "after $label, RSS is back within 16 MB" test $((after - base)) -lt 16384
}
big_read rules 'len(v)' 100000
big_read stats 'len(v["rules"])' 100000
big_read profiles 'len(v["profiles"])' 3
big_read policy 'len(v["rules"])' 100000
# Every rule in each of the three rule families, written as they are read.
big_read metrics 'v["status"] == "HTTP/1.0 200 OK" and min(v["samples"][f"ringfence_rule_{k}_total"] for k in ("packets", "bytes", "logged"))' 100000
# quiet_pipe: `show rules` read by `head -1`, which goes away after a line of
# 100,000 rules' text: the CLI ends as a Unix filter does, by SIGPIPE (status
# 141), saying nothing (it used to panic writing to the closed pipe).
quiet_pipe() {
    rf "$fw" show rules 2>"$WORK/pipe.err" | head -1 >/dev/null
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 141 ] && [ ! -s "$WORK/pipe.err" ] || { echo "status $rc: $(head -c 300 "$WORK/pipe.err")"; return 1; }
}
check "show rules | head -1: the CLI ends by SIGPIPE, quietly" quiet_pipe

# Another 100,000 rules (every port one higher), written over the files: the
# daemon's reload takes its engine seconds to compile and apply.
gen=$(state "$fw" generation)
python3 - "$P" <<'PY'
import pathlib, re, sys
for f in pathlib.Path(sys.argv[1]).glob("50-bench-*.yaml"):
    f.write_text(re.sub(r"local-ports: \[(\d+)\]", lambda m: "local-ports: [%d]" % (int(m[1]) + 1), f.read_text()))
PY

# in_progress: one `show state` that reports a change in progress; its time
# (ms) and generation are kept in $WORK/seen.
in_progress() {
    local t0
    t0=$(now_ms)
    rf "$fw" show state --json >"$WORK/state.json"
    echo "$(($(now_ms) - t0)) $(jget 'v["generation"]' <"$WORK/state.json")" >"$WORK/seen"
    [ "$(jget 'v["changes-in-progress"]' <"$WORK/state.json")" -ge 1 ]
}
check "show state answers while the reload is in progress" wait_for 20 in_progress
read -r took seen <"$WORK/seen"
echo "  show state during the reload: $took ms"
check "... within 1 s (with the client's start)" test "$took" -lt 1000
check "... with the generation before the reload" test "$seen" = "$gen"
# reloaded: the reload applied, and nothing else is in progress.
reloaded() { test "$(state "$fw" generation)/$(state "$fw" changes-in-progress)" = "$((gen + 1))/0"; }
check "then the new generation, with nothing in progress" wait_for 60 reloaded
check "the new rules are in force" test "$(rf "$fw" show rules --json | jget 'v[0]["local-ports"][0]')" = 1025
finish
