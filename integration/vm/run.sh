#!/usr/bin/env bash
# integration/vm/run.sh SCRIPT [ARGS...]
#
# Runs SCRIPT (a bash script) with ARGS inside a QEMU guest that runs Debian's
# kernel, which has ESP (this machine's kernel has none), over this machine's own
# userland, mounted read-only over 9p. Streams the guest's output and exits with
# the script's exit status (125: the guest could not run it; 124: timeout).
#
# Environment: RF_VM_TIMEOUT=900 (seconds for the whole boot + script + power
# off), RF_VM_MEM=1024 (MiB), RF_VM_CPUS=2, RF_VM_CACHE_BASE (see prepare.sh),
# RINGFENCE (the binary the guest runs, passed on to the script).
#
# Inside the guest: / is the host's root, read-only; /run, /mnt, /tmp and
# /dev/shm are fresh tmpfs (the host's /tmp is at /run/host-tmp, and a SCRIPT or
# working directory under /tmp is found there). The guest has no
# network device: test traffic only ever runs between namespaces in the guest.
set -euo pipefail
shopt -s lastpipe
HERE=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 SCRIPT [ARGS...]"; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run.sh needs root (QEMU serves / to the guest as root over 9p)"; exit 2; }
SCRIPT=$(realpath "$1"); shift
[ -f "$SCRIPT" ] || { echo "run.sh: no script $SCRIPT"; exit 2; }
TIMEOUT=${RF_VM_TIMEOUT:-900}

bash "$HERE/prepare.sh"
CACHE=${RF_VM_CACHE_BASE:-/var/cache/ringfence-vm}/current
KVER=$(readlink "$CACHE")

JOB=$(mktemp -d /tmp/ringfence-vm.XXXXXX)
trap 'rm -rf "$JOB"' EXIT
chmod 755 "$JOB"
{
    printf 'RF_VM_KDIR=%q\n' "$CACHE/root"
    printf 'RF_VM_CWD=%q\n' "$PWD"
    printf 'RF_VM_DEBUG=%q\n' "${RF_VM_DEBUG:-}"
    printf 'RF_VM_SCRIPT=%q\n' "$SCRIPT"
    # The script's own deadline in the guest leaves time to boot and power off.
    printf 'RF_VM_SCRIPT_TIMEOUT=%q\n' "$((TIMEOUT > 90 ? TIMEOUT - 45 : TIMEOUT / 2))"
    printf 'RF_VM_ARGS=('; printf '%q ' "$@"; printf ')\n'
    # The binary the guest's scripts run (lib.sh's default otherwise: the
    # checkout's target/debug/ringfence).
    [ -z "${RINGFENCE:-}" ] || printf 'RINGFENCE=%q\n' "$(realpath "$RINGFENCE")"
} >"$JOB/job"

# -accel tcg: /dev/kvm exists on these machines but a KVM guest hangs.
# -display none -serial stdio: the console is our stdout (-nographic printed
#  nothing and hung). -cpu max: AES-NI, SSSE3 etc. for the accelerated crypto.
# The kernel command line (limited to 2048 bytes) carries only two paths.
rc=""
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max \
    -m "${RF_VM_MEM:-1024}" -smp "${RF_VM_CPUS:-2}" \
    -nodefaults -no-user-config -display none -serial stdio -monitor none -no-reboot \
    -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initrd.gz" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 rf.wrapper=$HERE/guest-run.sh rf.job=$JOB/job" \
    </dev/null 2>&1 |
    while IFS= read -r line; do
        line=${line%$'\r'}
        case $line in
            RF-VM-RESULT=*) rc=${line#RF-VM-RESULT=}; rc=${rc%% *} ;;
        esac
        printf '%s\n' "$line"
    done
status=${PIPESTATUS[0]}
if [ -z "$rc" ]; then
    if [ "$status" -eq 124 ]; then
        echo "run.sh: the guest ($KVER) did not finish within ${TIMEOUT}s; killed"
        exit 124
    fi
    echo "run.sh: the guest ($KVER) ended (QEMU status $status) without a result line"
    exit 125
fi
exit "$rc"
