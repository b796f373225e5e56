#!/usr/bin/env bash
# Installs what the tests need on a Debian machine (as root). Idempotent and quiet:
# does nothing when everything is present.
set -euo pipefail
PACKAGES=(nftables iproute2 iperf3 socat netcat-openbsd procps util-linux iputils-ping python3 dnsmasq-base isc-dhcp-client python3-jsonschema python3-yaml)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
