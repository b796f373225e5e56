#!/usr/bin/env bash
# Installs what the tests need on a Debian machine (as root). Idempotent and quiet:
# does nothing when everything is present.
set -euo pipefail
PACKAGES=(nftables iproute2 iperf3 socat netcat-openbsd procps util-linux iputils-ping python3 dnsmasq-base)
# The VM tier (integration/vm/): QEMU boots Debian's kernel, which has ESP, over
# this machine's own userland; strongSwan and tcpdump run inside that guest.
# libstrongswan-standard-plugins brings the openssl plugin (ECDSA keys and certificates).
PACKAGES+=(qemu-system-x86 kmod cpio busybox-static gzip strongswan-charon strongswan-swanctl
    strongswan-pki libstrongswan-standard-plugins tcpdump)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >/dev/null
fi
# The guest kernel, its modules and the initramfs, cached (nothing to do when complete).
bash "$(dirname "$0")/vm/prepare.sh"
