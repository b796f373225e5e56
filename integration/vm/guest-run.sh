#!/bin/bash
# The guest-side wrapper: the VM's init (initramfs-init) runs it chrooted into
# the host's root, mounted read-only over 9p, with the path of a job file that
# run.sh wrote. It makes the writable places a test needs, loads the kernel
# modules, runs the job's script and prints the result line run.sh reads:
#   RF-VM-RESULT=<exit status of the script>
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
# shellcheck disable=SC1090
source "$1" || { echo "RF-VM-RESULT=125 (cannot read the job file $1)"; exit; }
# Sets RF_VM_KDIR (the unpacked kernel package), RF_VM_CWD, RF_VM_SCRIPT, RF_VM_ARGS,
# RF_VM_SCRIPT_TIMEOUT, and RINGFENCE when the host's environment named a binary.

# The root is read-only: tmpfs wherever tests write. /tmp is mounted after the
# job file (which run.sh writes under the host's /tmp) has been read.
mount -t proc proc /proc
[ -z "${RF_VM_DEBUG:-}" ] || echo "guest: wrapper started at $(cut -d" " -f1 /proc/uptime) s"
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev 2>/dev/null
# devtmpfs has no /dev/fd nor /dev/std*: udev or systemd make them on a real
# system (nft reads `-f -` from /dev/stdin).
ln -sfn /proc/self/fd /dev/fd
for fd in 0:stdin 1:stdout 2:stderr; do ln -sf "/proc/self/fd/${fd%%:*}" "/dev/${fd#*:}"; done
mkdir -p /dev/shm
for d in /run /mnt /dev/shm; do mount -t tmpfs tmpfs "$d"; done
# The host's /tmp stays visible at /run/host-tmp (a checkout there, as CI's may
# be, and the script in it) under the guest's own tmpfs /tmp.
mkdir -p /run/host-tmp
mount --bind /tmp /run/host-tmp
mount -t tmpfs tmpfs /tmp
host_path() { case $1 in /tmp/*) echo "/run/host-tmp/${1#/tmp/}" ;; *) echo "$1" ;; esac; }
RF_VM_CWD=$(host_path "$RF_VM_CWD")
RF_VM_SCRIPT=$(host_path "$RF_VM_SCRIPT")
[ -z "${RINGFENCE:-}" ] || export RINGFENCE=$(host_path "$RINGFENCE")
mkdir -p /run/netns
hostname ringfence-vm

# Nothing autoloads modules in the guest: the host's /lib/modules belongs to the
# host's kernel. initramfs-init has loaded guest-modules.txt; a script that needs
# more can run `modprobe -d "$RF_VM_KDIR" NAME` (slow: the indexes come over 9p).
export RF_VM_KDIR

[ -z "${RF_VM_DEBUG:-}" ] || echo "guest: script starts at $(cut -d" " -f1 /proc/uptime) s"
cd "$RF_VM_CWD" || { echo "RF-VM-RESULT=125 (no directory $RF_VM_CWD)"; exit; }
# A guest-side deadline shorter than run.sh's: a hung script is killed here, so
# that its output so far and a result line (124) still reach the host.
timeout -k 5 "$RF_VM_SCRIPT_TIMEOUT" bash "$RF_VM_SCRIPT" "${RF_VM_ARGS[@]}" </dev/null 2>&1
rc=$?
[ "$rc" -ne 124 ] || echo "guest: $RF_VM_SCRIPT did not finish within ${RF_VM_SCRIPT_TIMEOUT}s; killed"
echo "RF-VM-RESULT=$rc"
