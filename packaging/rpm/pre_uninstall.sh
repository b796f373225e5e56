# ringfence %preun ($1 = 0: erase, 1: upgrade). On erase stop and disable the
# daemon (the ruleset stays until %postun); on upgrade keep it running.
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable ringfence.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl stop ringfence.service >/dev/null 2>&1 || :
    fi
fi
