# ringfence %postun ($1 = 0: erase, 1: upgrade).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -ge 1 ]; then
    # Upgrade: one restart into the new binary. The old daemon leaves its table
    # in force on SIGTERM and the new one replaces it in one nft transaction, so
    # the host is never without its firewall.
    if [ -d /run/systemd/system ]; then
        systemctl try-restart ringfence.service >/dev/null 2>&1 || :
    fi
else
    # Erase (RPM has no separate purge): delete the daemon's table if it
    # exists, and nothing else. No other table is flushed or deleted; policy
    # files the admin wrote in /etc/ringfence/policy.d stay.
    if command -v nft >/dev/null 2>&1 && nft list table inet ringfence >/dev/null 2>&1; then
        nft delete table inet ringfence || echo "ringfence: could not delete table inet ringfence" >&2
    fi
fi
