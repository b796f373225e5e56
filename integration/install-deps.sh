#!/usr/bin/env bash
# Installs what the tests need on a Debian machine (as root). Idempotent and quiet:
# does nothing when everything is present.
set -euo pipefail
PACKAGES=(nftables iproute2 iperf3 socat netcat-openbsd procps util-linux iputils-ping python3 dnsmasq-base isc-dhcp-client)
# strongSwan: the isolation scenarios, in namespaces and in the VM
# (libstrongswan-standard-plugins brings the openssl plugin: ECDSA keys and
# certificates). The VM tier (integration/vm/): QEMU boots Debian's kernel,
# which has ESP, over this machine's own userland; tcpdump runs in the guest.
PACKAGES+=(strongswan-charon strongswan-swanctl strongswan-pki libstrongswan-standard-plugins
    qemu-system-x86 kmod cpio busybox-static gzip tcpdump)
# The schema scenario; the package scenario: mmdebstrap, rpm (rpm -qlp),
# systemd-container (systemd-nspawn) and dpkg-dev (dpkg-shlibdeps for
# cargo-deb's $auto dependencies).
PACKAGES+=(python3-jsonschema python3-yaml mmdebstrap rpm systemd-container dpkg-dev)
# The build: protoc for etcd-client's generated gRPC code. The fleet scenario:
# a 3-member etcd cluster (etcd-server) and etcdctl (etcd-client).
PACKAGES+=(protobuf-compiler etcd-server etcd-client)
# The Ansible role's test (in the package scenario): ansible brings the
# community.docker collection, whose nsenter connection enters the container.
PACKAGES+=(ansible)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >/dev/null
fi

# The package builders, at the versions the packaging was written for; an
# installed one (any version) is kept.
for tool in cargo-deb@3.8.0 cargo-generate-rpm@0.21.1; do
    command -v "${tool%@*}" >/dev/null && continue
    echo "installing: $tool"
    cargo install --locked --quiet "$tool"
done
# The guest kernel, its modules and the initramfs, cached (nothing to do when complete).
bash "$(dirname "$0")/vm/prepare.sh"
