# IPsec helpers shared by the namespace scenarios and the VM tier (source it
# after lib.sh): a throwaway PKI made with strongSwan's `pki`, and one charon per
# network namespace driven over VICI.

CHARON=/usr/lib/ipsec/charon
for _tool in $CHARON swanctl pki unshare; do
    command -v "$_tool" >/dev/null || { echo "$SCENARIO: $_tool is missing (run integration/install-deps.sh)"; exit 1; }
done

# --- PKI ------------------------------------------------------------------------
# Throwaway ECDSA keys and certificates under $PKI. Keys are written with mode 600.
PKI=$WORK/pki
mkdir -p "$PKI"
# pki quietly: its plugins print TPM noise on stderr; the status tells success.
_pki() { pki "$@" 2>>"$WORK/pki.log"; }

# pki_ca NAME DN: a self-signed CA, $PKI/NAME.key and $PKI/NAME.crt.
pki_ca() {
    (umask 077 && _pki --gen --type ecdsa --size 256 --outform pem >"$PKI/$1.key")
    _pki --self --ca --lifetime 30 --in "$PKI/$1.key" --type ecdsa --dn "$2" --outform pem >"$PKI/$1.crt"
}

# pki_host NAME CA ADDR...: a host key and certificate issued by CA, subject
# "C=XX, O=Example, OU=$PKI_OU, CN=NAME" (PKI_OU defaults to Members),
# subjectAltName NAME.example and ADDRs. PKI_EXPIRED=1: valid for one day,
# a month ago.
pki_host() {
    local name=$1 ca=$2 a sans=(--san "$1.example") dates=(--lifetime 30); shift 2
    for a in "$@"; do sans+=(--san "$a"); done
    [ -z "${PKI_EXPIRED:-}" ] ||
        dates=(--dateform %s --not-before $(($(date +%s) - 31 * 86400)) --not-after $(($(date +%s) - 30 * 86400)))
    (umask 077 && _pki --gen --type ecdsa --size 256 --outform pem >"$PKI/$name.key")
    _pki --pub --in "$PKI/$name.key" --type ecdsa |
        _pki --issue --cacert "$PKI/$ca.crt" --cakey "$PKI/$ca.key" --type pub \
            --dn "C=XX, O=Example, OU=${PKI_OU:-Members}, CN=$name" "${sans[@]}" "${dates[@]}" \
            --outform pem >"$PKI/$name.crt"
}

# pki_revoke CA CERT...: CA's CRL ($PKI/CA.crl, PEM) revoking the CERTs ($PKI/CERT.crt).
pki_revoke() {
    local ca=$1 c args=(); shift
    for c in "$@"; do args+=(--reason key-compromise --cert "$PKI/$c.crt"); done
    _pki --signcrl --cacert "$PKI/$ca.crt" --cakey "$PKI/$ca.key" "${args[@]}" --outform pem >"$PKI/$ca.crl"
}

# --- charon, one per namespace -----------------------------------------------------
# Every charon writes a fixed pid file (/var/run/charon.pid, /var/run being
# /run): each runs in its own mount namespace with a private tmpfs on /run. Its
# configuration is its own strongswan.conf (STRONGSWAN_CONF), its VICI socket
# is $VICI/NS.vici, in a directory every namespace sees, and its log is
# $WORK/NS.charon.log.
VICI=$WORK/vici
mkdir -p "$VICI"
# The plugins charon needs, nothing else: the distribution's defaults load more
# (bypass-lan, for one, installs pass policies for local subnets).
# (kdf: since 5.9.8 the IKE key derivation lives in its own plugin; without it
# IKE_SA_INIT ends in "KDF_PRF with PRF_HMAC_SHA2_256 not supported".
# revocation: checks certificates against the CRLs loaded over VICI.)
CHARON_PLUGINS="random nonce openssl pem pkcs1 pkcs8 x509 pubkey constraints revocation sha2 hmac kdf kernel-netlink socket-default vici"
declare -A CHARON_PID=()

# vici NS: the VICI URI of NS's charon.
vici() { echo "unix://$VICI/$1.vici"; }

# charon_start NS: starts NS's charon (CHARON_PID[NS]) and waits until it answers over VICI.
charon_start() {
    local ns=$1 conf="$WORK/$1.strongswan.conf"
    cat >"$conf" <<CONF
charon {
    load = $CHARON_PLUGINS
    install_routes = no
    plugins {
        vici {
            socket = $(vici "$ns")
        }
    }
    filelog {
        log {
            path = $WORK/$ns.charon.log
            time_format = %T
            append = yes
            flush_line = yes
            default = 1
            knl = 2
            cfg = 2
        }
    }
}
CONF
    rm -f "$VICI/$ns.vici"
    STRONGSWAN_CONF=$conf ip netns exec "$ns" unshare -m --propagation private \
        sh -c 'mount -t tmpfs tmpfs /run && exec "$0"' "$CHARON" >>"$WORK/$ns.charon.out" 2>&1 &
    CHARON_PID[$ns]=$!
    _PIDS+=($!)
    disown
    wait_for 20 sw "$ns" --stats || { echo "charon in $ns did not start:"; cat "$WORK/$ns.charon.out"; return 1; }
}

# charon_stop NS [SIGNAL]: stops NS's charon with SIGNAL (default TERM) and waits until it is gone.
charon_stop() {
    local pid=${CHARON_PID[$1]}
    kill -"${2:-TERM}" "$pid" 2>/dev/null || true
    wait_for 10 _gone "$pid"
}

# swanctl's own settings: the plugins it needs to read keys and certificates
# (the distribution's would also load tpm, which prints noise).
cat >"$WORK/swanctl.strongswan.conf" <<'CONF'
swanctl {
    load = pem pkcs1 pkcs8 x509 openssl pubkey random nonce
}
CONF

# sw NS COMMAND [ARGS...]: swanctl against NS's charon (options after the command).
sw() {
    local ns=$1 cmd=$2; shift 2
    STRONGSWAN_CONF=$WORK/swanctl.strongswan.conf timeout 20 swanctl "$cmd" --uri "$(vici "$ns")" "$@"
}
