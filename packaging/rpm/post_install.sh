# ringfence %post ($1 = 1: install, 2: upgrade). Touches no nftables table
# itself: the daemon replaces its own table (inet ringfence) and no other.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    # Enabled and started on first install, as with the .deb. This cannot lock
    # out a remote admin: the shipped default policy allows SSH (tcp/22) and
    # every established connection, so the session running rpm/dnf survives.
    # An sshd on another port needs a policy file first (docs/install.md).
    systemctl enable ringfence.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl start ringfence.service >/dev/null 2>&1 || :
    fi
fi
# Upgrades restart in %postun, once the old files are gone.
