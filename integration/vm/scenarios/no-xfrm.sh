#!/usr/bin/env bash
# A kernel without xfrm's netlink API (no xfrm_user): the firewall works, and
# isolation says why it cannot. The guest's kernel has xfrm_user as a module,
# loaded at boot; it is removed first (nothing autoloads modules in the guest,
# so opening a NETLINK_XFRM socket then fails with EPROTONOSUPPORT, as on a
# kernel built without CONFIG_XFRM_USER). This machine's kernel has it built
# in, hence the VM.
# Run: bash integration/vm/run.sh integration/vm/scenarios/no-xfrm.sh
source "$(dirname "$0")/../guest-lib.sh"

check  "xfrm_user can be removed (nothing uses it)" rmmod xfrm_user
check  "... and it is gone" sh -c '! grep -q "^xfrm_user " /proc/modules'
check  "... so NETLINK_XFRM is not supported" python3 -c '
import errno, socket, sys
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 6)
except OSError as e:
    sys.exit(0 if e.errno == errno.EPROTONOSUPPORT else f"unexpected: {e}")
sys.exit("the socket opened")'

fw=$(host fw); peer=$(host peer)
link "$fw" eth0 10.92.0.1 fd00:92::1 "$peer" eth0 10.92.0.2 fd00:92::2
serve_tcp "$fw" 7000
serve_tcp "$fw" 7001
mkdir -p "$WORK/fw/policy"
: >"$WORK/fw/resolv.conf"
cat >"$WORK/fw/policy/50-rules.yaml" <<YAML
version: 1
rules:
  - { name: service, direction: in, action: allow, protocol: tcp, local-ports: [7000] }
YAML
check  "the daemon starts" rf_policy "$fw" "$WORK/fw"
check  "its table is in the kernel" ip netns exec "$fw" nft list table inet ringfence
check  "tcp/7000 (allowed) works" wait_for 10 tcp "$peer" 10.92.0.1 7000
refute "tcp/7001 (default inbound: block) is refused" tcp "$peer" 10.92.0.1 7001
check  "show state: no xfrm error while isolation is off" \
    test "$(rf "$fw" show state --json | jget 'v["isolation"]["xfrm-error"]')" = null

# Isolation on: its xfrm policies cannot be installed; the rest still applies.
pki_ca ca "C=XX, O=Example, CN=Example Root CA"
pki_host fw ca
cat >"$WORK/fw/policy/60-isolation.yaml" <<YAML
version: 1
isolation:
  mode: secure-request
  secure-subnets: ["10.92.0.0/24"]
  identity: { ca: $PKI/ca.crt, certificate: $PKI/fw.crt, private-key: $PKI/fw.key }
  ike: { socket: "unix://$WORK/no-charon.vici" }
YAML
check  "isolation on: ringfence apply" rf "$fw" apply
check  "isolation on: show state" rf "$fw" show state --json
said   "... names the missing kernel API (xfrm-error)" '"xfrm-error": "this kernel has no xfrm netlink API'

check  "the daemon still runs and answers" rf "$fw" show state
check  "the table follows the policy (isolation_in is there)" ip netns exec "$fw" nft list chain inet ringfence isolation_in
finish
