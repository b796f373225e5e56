#!/usr/bin/env bash
# Prepares what integration/vm/run.sh boots: Debian's own kernel (this machine's
# kernel has no ESP: CONFIG_INET_ESP is not set), its modules with a module
# index, and a small initramfs that mounts the host's root read-only over 9p.
#
# Everything goes to $RF_VM_CACHE (default /var/cache/ringfence-vm/<kernel-version>/):
#   root/          the unpacked kernel package (root/lib/modules/<version>/, depmod run)
#   vmlinuz        the kernel image
#   initrd.gz      busybox-static + the virtio/9p modules + init (integration/vm/initramfs-init)
#   complete       written last: its presence means the cache is usable
# and $BASE/current, a symbolic link to the version run.sh boots.
# Idempotent and quiet: does nothing when the cache is complete. Works from a
# fresh machine (it needs apt, kmod, cpio, busybox-static: install-deps.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BASE=${RF_VM_CACHE_BASE:-/var/cache/ringfence-vm}

# The exact package linux-image-amd64 depends on (e.g. linux-image-6.1.0-56-amd64):
# never a glob, which `apt-get download` would expand to every flavour.
kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}
PKG=$(kernel_package)
if [ -z "$PKG" ]; then
    apt-get update -qq >/dev/null
    PKG=$(kernel_package)
fi
[ -n "$PKG" ] || { echo "prepare.sh: cannot tell which kernel linux-image-amd64 depends on"; exit 1; }
KVER=${PKG#linux-image-}
CACHE=$BASE/$KVER
# The initramfs depends on the init script and the module list: rebuild when they changed.
STAMP="$PKG $(cat "$HERE/initramfs-init" "$HERE/guest-modules.txt" | sha256sum | cut -c1-16)"
if [ -f "$CACHE/complete" ] && [ "$(cat "$CACHE/complete")" = "$STAMP" ]; then
    [ "$(readlink "$BASE/current" 2>/dev/null)" = "$KVER" ] || ln -sfn "$KVER" "$BASE/current"
    exit 0
fi
echo "prepare.sh: building the VM cache in $CACHE ($PKG)"

TMP=$(mktemp -d /tmp/ringfence-vm-prepare.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$CACHE"
rm -f "$CACHE/complete"

if [ ! -f "$CACHE/root/boot/vmlinuz-$KVER" ] || [ ! -f "$CACHE/root/lib/modules/$KVER/modules.dep" ]; then
    # apt-get runs downloads as user _apt, which cannot write into a root-only
    # directory; running the download as root is what we want here.
    (cd "$TMP" && apt-get download -qq -o APT::Sandbox::User=root "$PKG" >/dev/null)
    rm -rf "$CACHE/root"
    dpkg-deb -x "$TMP"/"$PKG"_*.deb "$CACHE/root"
    depmod -b "$CACHE/root" "$KVER"
fi
cp "$CACHE/root/boot/vmlinuz-$KVER" "$CACHE/vmlinuz"

# The initramfs: busybox, the modules to reach the root over virtio 9p, and the
# modules of guest-modules.txt, each with its dependencies in the order modprobe
# would load them; and init. (Loading them from the initramfs takes well under a
# second; modprobe in the guest reads the module indexes over 9p, about 10 s.)
I=$TMP/initramfs
mkdir -p "$I"/{bin,mods,proc,sys,dev,newroot}
# busybox-static's busybox: the initramfs has no C library.
cp /bin/busybox "$I/bin/busybox"
# module_files NAME...: the .ko files to insmod for NAME (one name per modprobe
# call: further names would be taken as module parameters).
module_files() {
    local m
    for m in "$@"; do
        modprobe -d "$CACHE/root" -S "$KVER" --show-depends "$m" |
            awk '$1 == "insmod" { print $2 }'
        # ("builtin NAME" lines need nothing.)
    done
}
# add_modules DIR NAME...: copies the modules and dependencies, numbered in load
# order, skipping those already there.
add_modules() {
    local dir=$1 ko n; shift
    mkdir -p "$I/$dir"
    n=$(find "$I/mods" "$I/$dir" -name '*.ko' | wc -l)
    while read -r ko; do
        find "$I/mods" "$I/$dir" -name "*-$(basename "$ko" .xz)" | grep -q . && continue
        n=$((n + 1))
        case $ko in
            *.ko) cp "$ko" "$I/$dir/$(printf %03d $n)-$(basename "$ko")" ;;
            *.ko.xz) xz -dc "$ko" >"$I/$dir/$(printf %03d $n)-$(basename "$ko" .xz)" ;;
            *) echo "prepare.sh: unexpected module file $ko"; return 1 ;;
        esac
    done < <(module_files "$@")
}
add_modules mods virtio_pci 9pnet_virtio 9p
[ -n "$(ls "$I/mods")" ] || { echo "prepare.sh: no virtio/9p modules found"; exit 1; }
required=() optional=()
while read -r a b; do
    case $a in ''|'#'*) ;; optional) optional+=("$b") ;; *) required+=("$a") ;; esac
done <"$HERE/guest-modules.txt"
add_modules guest "${required[@]}"
for m in "${optional[@]}"; do add_modules guest-optional "$m"; done
cp "$HERE/initramfs-init" "$I/init"
chmod 755 "$I/init"
(cd "$I" && find . | cpio -o -H newc --quiet | gzip -1 >"$CACHE/initrd.gz.new")
mv "$CACHE/initrd.gz.new" "$CACHE/initrd.gz"
echo "$STAMP" >"$CACHE/complete"
# run.sh boots whatever "current" points to.
ln -sfn "$KVER" "$BASE/current"
