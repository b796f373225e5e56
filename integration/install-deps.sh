#!/usr/bin/env bash
# Installs what the tests need on a Debian machine (as root). Idempotent and quiet:
# does nothing when everything is present.
set -euo pipefail
# strongswan-*: the isolation scenarios; python3-jsonschema, python3-yaml: the
# schema scenario; mmdebstrap, rpm (rpm -qlp), systemd-container
# (systemd-nspawn) and dpkg-dev (dpkg-shlibdeps for cargo-deb's $auto
# dependencies): the package scenario.
PACKAGES=(nftables iproute2 iperf3 socat netcat-openbsd procps util-linux iputils-ping python3 dnsmasq-base isc-dhcp-client
    strongswan-charon strongswan-swanctl strongswan-pki python3-jsonschema python3-yaml
    mmdebstrap rpm systemd-container dpkg-dev)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The package builders, at the versions the packaging was written for; an
# installed one (any version) is kept.
for tool in cargo-deb@3.8.0 cargo-generate-rpm@0.21.1; do
    command -v "${tool%@*}" >/dev/null && continue
    echo "installing: $tool"
    cargo install --locked --quiet "$tool"
done
