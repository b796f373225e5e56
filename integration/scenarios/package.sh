#!/usr/bin/env bash
# The packages: builds the .deb and the .rpm (packaging/build-packages.sh) and
# checks their file lists, dependencies and scriptlets. Then boots a fresh
# Debian bookworm root with systemd-nspawn (systemd as the container's PID 1;
# this machine's own PID 1 is not systemd) in a test network namespace linked
# to a peer, and inside it: installs the .deb with apt (which pulls in
# nftables), checks the installed files, `systemd-analyze verify`, --version,
# the man pages and completions; checks that postinst started the service and
# that the INSTALLED daemon runs under the unit's sandbox with the INSTALLED
# default policy (SSH reachable from the peer, other ports blocked); reloads;
# upgrades (one restart, the table in force throughout); removes (the ruleset
# stays) and purges (the ringfence table goes, the namespace's other table
# stays). Then runs the Ansible role (packaging/ansible) into it, with an
# etcd for its fleet agent in the peer's namespace.
#
# The Debian root: mmdebstrap --variant=minbase --include=man-db,systemd from
# deb.debian.org, built once into $RINGFENCE_PKGTEST_CACHE (default
# /var/cache/ringfence-pkgtest/base) and used read-only as the lower layer of an
# overlay mount, so every run starts from the same fresh root and leaves the
# cache as it was. The .debs apt downloads are kept in the cache too.
# mmdebstrap, not debootstrap: the same minbase root (Priority: required, plus
# apt), but resolved by apt and downloaded in parallel: 16 to 45 s here, where
# debootstrap took 54 to 137 s (docs/install.md).
#
# Only the download step runs in the host's network namespace, and it runs no
# maintainer script; every dpkg/apt command that does runs in the container,
# whose network namespace is the test's, so `nft` in a script can only ever
# see the test's tables.

# A private mount namespace: the overlay and proc mounts of this run vanish
# with it, whatever happens to this script.
[ -n "${RF_PKG_MNTNS:-}" ] || exec unshare --mount --propagation private env RF_PKG_MNTNS=1 bash "$0" "$@"
source "$(dirname "$0")/../lib.sh"

for _tool in mmdebstrap rpm rpm2cpio cpio dpkg-deb unshare flock nsenter pgrep systemd-nspawn cargo-deb cargo-generate-rpm \
    ansible-playbook etcd etcdctl openssl; do
    command -v "$_tool" >/dev/null || { echo "$SCENARIO: $_tool is missing (run integration/install-deps.sh)"; exit 1; }
done

CACHE=${RINGFENCE_PKGTEST_CACHE:-/var/cache/ringfence-pkgtest}
MIRROR=http://deb.debian.org/debian
# What the cached root holds besides minbase (systemd to boot it, man-db for
# man, python3-apt and python3 for Ansible's modules); a change here
# rebuilds the cache.
BASE_INCLUDE=man-db,systemd,python3-apt
BASE_STAMP="mmdebstrap bookworm minbase $BASE_INCLUDE"
NSPAWN_PID=
LEADER=
R="$WORK/root"
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -1)
ARCH=$(dpkg --print-architecture)
DEB="$ROOT/target/debian/ringfence_${VERSION}-1_${ARCH}.deb"
RPM="$ROOT/target/generate-rpm/ringfence-${VERSION}-1.$(uname -m).rpm"
START=$SECONDS

_pkg_cleanup() {
    local pid i
    for pid in "${_PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    # The container: a clean shutdown if it is still up, else kill its PID 1,
    # which ends every process of its PID namespace.
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        kill -TERM "$NSPAWN_PID" 2>/dev/null || true
        for i in $(seq 50); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.2; done
        [ -z "$LEADER" ] || kill -9 "$LEADER" 2>/dev/null || true
        kill -9 "$NSPAWN_PID" 2>/dev/null || true
    fi
    # Detach the root's mounts before lib.sh's cleanup removes $WORK.
    umount -R -l "$R" 2>/dev/null || true
    _cleanup
}
trap _pkg_cleanup EXIT

# inroot CMD...: CMD chrooted into the root, in the host's network namespace
# (for downloads only).
inroot() { timeout 600 chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@"; }

# silent CMD...: succeeds when CMD succeeds and prints nothing.
silent() { local out; out=$("$@" 2>&1) && [ -z "$out" ] || { echo "$out"; return 1; }; }

# ---- build and inspect both packages

echo "building the packages"
bash "$ROOT/packaging/build-packages.sh" >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
echo "  built in $((SECONDS - START)) s"
check "the .deb was built ($DEB)" test -s "$DEB"
check "the .rpm was built ($RPM)" test -s "$RPM"

# Every file (not directory) each package installs, whole lists compared. One
# man page for ringfence and for each subcommand that --help lists.
SUBCOMMANDS=$("$ROOT/target/release/ringfence" --help | sed -n '/^Commands:/,/^$/p' | awk 'NR > 1 && NF {print $1}' |
    grep -vx help)
MAN_PAGES=$(echo /usr/share/man/man8/ringfence.8.gz
    for c in $SUBCOMMANDS; do echo "/usr/share/man/man8/ringfence-$c.8.gz"; done)
check "--help lists the subcommands (daemon among them)" grep -qx daemon <<<"$SUBCOMMANDS"
DOCS=$(cd "$ROOT" && for f in README.md docs/*.md; do echo "/usr/share/doc/ringfence/$(basename "$f")"; done)
# expected UNITDIR ZSHDIR: the files a package installs; the formats differ
# only in the units' directory and the zsh completions' place.
expected() {
    sort <<EOF
/usr/bin/ringfence
$1/ringfence.service
$1/ringfence-fleet.service
/usr/share/ringfence/fleet-etcd-rbac.sh
/usr/lib/ringfence/policy.d/00-default.yaml
/usr/lib/ringfence/services.d/00-services.yaml
/etc/ringfence/policy.d/README
/etc/ringfence/services.d/README
/usr/share/bash-completion/completions/ringfence
$2/_ringfence
/usr/share/fish/vendor_completions.d/ringfence.fish
$MAN_PAGES
$DOCS
EOF
}
expected /lib/systemd/system /usr/share/zsh/vendor-completions >"$WORK/deb.expected"
expected /usr/lib/systemd/system /usr/share/zsh/site-functions >"$WORK/rpm.expected"
# cargo-deb adds the copyright file every Debian package must have.
echo /usr/share/doc/ringfence/copyright >>"$WORK/deb.expected"
sort -o "$WORK/deb.expected" "$WORK/deb.expected"
deb_files() { dpkg-deb --fsys-tarfile "$DEB" | tar -t | grep -v '/$' | sed 's|^\./|/|' | sort; }
check "the .deb holds exactly the expected files" diff -u "$WORK/deb.expected" <(deb_files)
check "the .rpm holds exactly the expected files" diff -u "$WORK/rpm.expected" <(rpm -qlp "$RPM" | sort)
check "the fleet's etcd access-control script is executable in both" sh -c \
    "dpkg-deb -c '$DEB' | grep -qE '^-rwxr-xr-x .* ./usr/share/ringfence/fleet-etcd-rbac.sh$' &&
     rpm -qlvp '$RPM' | grep -qE '^-rwxr-xr-x .* /usr/share/ringfence/fleet-etcd-rbac.sh$'"
check "the .deb depends on nftables and procps (/bin/kill)" \
    sh -c "dpkg-deb -f '$DEB' Depends | grep -E '(^|, )nftables(,|$)' | grep -qE '(^|, )procps(,|$)'"
check "the .rpm requires nftables" sh -c "rpm -qpR '$RPM' | grep -qx nftables"
check "/etc/ringfence/policy.d/README is the .deb's conffile" \
    sh -c "dpkg-deb --ctrl-tarfile '$DEB' | tar -xO ./conffiles | grep -qx /etc/ringfence/policy.d/README"
check "/etc/ringfence/policy.d/README is %config(noreplace) in the .rpm (flags cn)" \
    sh -c "rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' '$RPM' | grep -qx 'cn /etc/ringfence/policy.d/README'"
check "the packaged default policy is policies/default.yaml" \
    cmp "$ROOT/policies/default.yaml" <(dpkg-deb --fsys-tarfile "$DEB" | tar -xO ./usr/lib/ringfence/policy.d/00-default.yaml)
check "the packaged services catalogue is services/services.yaml" \
    cmp "$ROOT/services/services.yaml" <(dpkg-deb --fsys-tarfile "$DEB" | tar -xO ./usr/lib/ringfence/services.d/00-services.yaml)
check "the packaged unit is packaging/ringfence.service" \
    cmp "$ROOT/packaging/ringfence.service" <(rpm2cpio "$RPM" | (cd "$WORK" && cpio -i --quiet --to-stdout ./usr/lib/systemd/system/ringfence.service))
# The generated man page is the binary's: it names the subcommands' pages and
# the options of --help.
check "ringfence(8) in the .deb is generated from the CLI" sh -c "dpkg-deb --fsys-tarfile '$DEB' |
    tar -xO ./usr/share/man/man8/ringfence.8.gz | gunzip | grep -q 'ringfence\\\\-daemon(8)'"
check "the .rpm's %postun deletes the table only if it exists, and no other" sh -c "rpm -qp --scripts '$RPM' |
    grep -q 'nft list table inet ringfence >/dev/null 2>&1; then' && ! rpm -qp --scripts '$RPM' | grep -qE 'flush ruleset|nft flush'"
check "the .deb's scripts never flush the ruleset" sh -c "! dpkg-deb --ctrl-tarfile '$DEB' | tar -xO | grep -qE 'flush ruleset|nft flush'"

# ---- the Debian root

mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9
if [ "$(cat "$CACHE/base/.ringfence-base" 2>/dev/null)" != "$BASE_STAMP" ]; then
    echo "building the cached Debian root (once): mmdebstrap --variant=minbase --include=$BASE_INCLUDE bookworm"
    t=$SECONDS
    rm -rf "$CACHE/base" "$CACHE/base.new" "$CACHE/archives"
    if ! timeout 900 mmdebstrap --quiet --variant=minbase --include="$BASE_INCLUDE" \
        bookworm "$CACHE/base.new" "$MIRROR" >"$WORK/mmdebstrap.log" 2>&1; then
        tail -30 "$WORK/mmdebstrap.log"; echo "mmdebstrap failed"; exit 1
    fi
    # (mmdebstrap leaves no .debs in the root: its archive cache then holds
    # only what each run downloads.)
    echo "$BASE_STAMP" >"$CACHE/base.new/.ringfence-base"
    mv "$CACHE/base.new" "$CACHE/base"
    echo "  mmdebstrap took $((SECONDS - t)) s"
fi
# Other runs may use the cache at the same time; none rebuilds it under us.
flock -s 9

mkdir -p "$R" "$WORK/upper" "$WORK/ovl" "$CACHE/archives"
mount -t overlay overlay -o "lowerdir=$CACHE/base,upperdir=$WORK/upper,workdir=$WORK/ovl" "$R"
cp /etc/resolv.conf "$R/etc/resolv.conf"
# /root, not /tmp: the booted container mounts a fresh tmpfs on /tmp.
cp "$DEB" "$R/root/ringfence.deb"
cp "$CACHE"/archives/*.deb "$R/var/cache/apt/archives/" 2>/dev/null || true

# Downloads: the only step in the host's network namespace, and it runs no
# maintainer script.
t=$SECONDS
mount -t proc proc "$R/proc"
check "the root's package lists are fetched" inroot apt-get update -qq
check "apt downloads ringfence's dependencies" inroot apt-get install -y -qq --download-only /root/ringfence.deb
refute "nftables is not in the fresh root" sh -c "chroot '$R' dpkg-query -W -f '\${Status}' nftables 2>/dev/null | grep -q 'ok installed'"
umount "$R/proc"
cp -n "$R"/var/cache/apt/archives/*.deb "$CACHE/archives/" 2>/dev/null || true
echo "  apt update and download took $((SECONDS - t)) s"

# ---- boot it: systemd in a container whose network namespace is the firewall's

fw=$(host fw); peer=$(host peer)
link "$fw" eth0 10.209.0.1 fd00:209::1 "$peer" eth0 10.209.0.2 fd00:209::2
# An admin's own table in the firewall's namespace; it must outlive everything.
ip netns exec "$fw" nft -f - <<'NFT'
table inet admin {
    set blocked { type ipv4_addr; elements = { 192.0.2.99 } }
    chain input { type filter hook input priority 10; policy accept; ip saddr @blocked counter drop; }
}
NFT
admin_table() { nft_table "$fw" inet admin | _strip_counters keep-handles; }
admin_table >"$WORK/admin.before"

# --register=no --keep-unit: no systemd on the host to register with. The
# container gets CAP_NET_ADMIN for the firewall's namespace only.
systemd-nspawn --quiet --directory="$R" --register=no --keep-unit --capability=CAP_NET_ADMIN \
    --network-namespace-path="/run/netns/$fw" --boot >"$WORK/boot.log" 2>&1 &
NSPAWN_PID=$!
_container_init() { LEADER=$(pgrep -P "$NSPAWN_PID" | head -1) && [ -n "$LEADER" ]; }
check "systemd-nspawn started the container" wait_for 30 _container_init
_container_init || { tail -20 "$WORK/boot.log"; exit 1; }
# incont CMD...: CMD inside the container (its mounts, pids and network), as an
# admin's shell there would run it.
incont() { timeout 300 nsenter -t "$LEADER" -m -u -i -n -p -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
_booted() { incont systemctl is-system-running | grep -qxE 'running|degraded'; }
check "systemd in the container finished booting" wait_for 60 _booted
check "systemd runs as the container's PID 1" sh -c "[ \"\$(cat /proc/$LEADER/comm)\" = systemd ]"

# ---- install: apt pulls in nftables, postinst enables and starts the service

t=$SECONDS
check "apt installs the .deb (in the container, offline: from the downloaded archives)" \
    incont apt-get install -y -qq /root/ringfence.deb
echo "  install took $((SECONDS - t)) s"
check "apt pulled in nftables as a dependency" sh -c "chroot '$R' apt-mark showauto | grep -qx nftables"
check "dpkg lists the package's files" sh -c "chroot '$R' dpkg -L ringfence | grep -qx /usr/bin/ringfence"
for f in $(cat "$WORK/deb.expected"); do
    check "installed: $f" test -f "$R$f"
done
check "/etc/ringfence/policy.d holds only the README" sh -c "[ \"\$(ls -A '$R/etc/ringfence/policy.d')\" = README ]"
check "the unit is enabled" incont systemctl is-enabled ringfence
check "postinst started the service (active: READY=1 came)" incont systemctl is-active ringfence
check "systemd-analyze verify of the installed unit is clean (status 0, no output)" \
    silent incont systemd-analyze verify /lib/systemd/system/ringfence.service
check "systemd-analyze verify of the fleet agent's unit is clean" \
    silent incont systemd-analyze verify /lib/systemd/system/ringfence-fleet.service
check "ringfence --version" incont ringfence --version
said "--version is the package's ($VERSION)" "^ringfence $VERSION$"
check "man ringfence renders" incont env MANPAGER=cat MANWIDTH=80 man ringfence
said "ringfence(8) lists the subcommand pages" 'ringfence-daemon\(8\)'
check "man ringfence-daemon renders" incont env MANPAGER=cat MANWIDTH=80 man ringfence-daemon
said "ringfence-daemon(8) documents --flush-on-exit" '--flush-on-exit'
check "the bash completion loads and completes subcommands" incont bash -c \
    'source /usr/share/bash-completion/completions/ringfence; COMP_WORDS=(ringfence da); COMP_CWORD=1
     _ringfence ringfence da ringfence; echo "[${COMPREPLY[*]}]"'
said "bash completes 'da' to daemon, only" '^\[daemon\]$'
check "the zsh completion is clap's for ringfence" grep -q '^#compdef ringfence' "$R/usr/share/zsh/vendor-completions/_ringfence"
check "the fish completion is clap's for ringfence" grep -q '^complete -c ringfence' "$R/usr/share/fish/vendor_completions.d/ringfence.fish"

# ---- the service, as systemd runs it, with the unit's sandbox

main_pid() { incont systemctl show -p MainPID --value ringfence; }
MAIN=$(main_pid)
check "the daemon's capability bounding set is CAP_NET_ADMIN alone" \
    incont grep -qx $'CapBnd:\t0000000000001000' "/proc/$MAIN/status"
check "the daemon runs with no_new_privs" incont grep -qx $'NoNewPrivs:\t1' "/proc/$MAIN/status"
check "the daemon runs under a seccomp filter" incont grep -qx $'Seccomp:\t2' "/proc/$MAIN/status"
check "a write to /etc in the daemon's mount namespace" incont nsenter -t "$MAIN" -m -- sh -c \
    'touch /etc/ringfence-write-test 2>&1; test ! -e /etc/ringfence-write-test'
said "fails: ProtectSystem=strict made /etc read-only" 'Read-only file system'
check "show state" incont ringfence show state
said "it applied the package's /usr/lib/ringfence/policy.d/00-default.yaml" '^ +/usr/lib/ringfence/policy.d/00-default.yaml$'
check "the ringfence table exists in the namespace" ip netns exec "$fw" nft list table inet ringfence
serve_tcp "$fw" 22
serve_tcp "$fw" 8080
for a in 10.209.0.1 fd00:209::1; do
    check  "default policy: tcp/22 (SSH) reachable from the peer ($a)" tcp "$peer" $a 22
    refute "default policy: tcp/8080 blocked ($a)" tcp "$peer" $a 8080
done
check "systemctl reload succeeds" incont systemctl reload ringfence
check "reload sent SIGHUP to the same process" test "$(main_pid)" = "$MAIN"
_reloaded() { incont journalctl -u ringfence -o cat --no-pager | grep -q 'trigger="SIGHUP"'; }
check "the daemon logged the SIGHUP reload" wait_for 5 _reloaded

# ---- upgrade: one restart, and the table in force all the time

# _watch: lists the table every few milliseconds until $WORK/watch.stop exists;
# prints how many listings there were and how many failed.
_watch() {
    local polls=0 gaps=0
    until [ -e "$WORK/watch.stop" ]; do
        ip netns exec "$fw" nft list table inet ringfence >/dev/null 2>&1 || gaps=$((gaps + 1))
        polls=$((polls + 1))
    done
    echo "$polls polls, $gaps without the table"
}
_watch >"$WORK/watch.out" &
WATCH=$!
sleep 0.5
# postinst's restart returns once the new daemon has sent READY=1.
check "reinstalling the .deb (the upgrade path) succeeds" incont dpkg -i /root/ringfence.deb
touch "$WORK/watch.stop"
wait "$WATCH"
echo "  during the upgrade: $(cat "$WORK/watch.out")"
check "the upgrade restarted the daemon" test "$(main_pid)" != "$MAIN"
check "the service is active after the upgrade" incont systemctl is-active ringfence
check "the table never went away during the upgrade's restart" grep -qE '^[1-9][0-9]* polls, 0 without the table$' "$WORK/watch.out"
check "after the upgrade tcp/22 is reachable" tcp "$peer" 10.209.0.1 22
refute "after the upgrade tcp/8080 is blocked" tcp "$peer" 10.209.0.1 8080
check "systemctl disable --now succeeds" incont systemctl disable --now ringfence
check "an upgrade of the disabled service succeeds" incont dpkg -i /root/ringfence.deb
refute "and leaves it stopped" incont systemctl is-active ringfence
refute "and disabled" incont systemctl is-enabled ringfence
check "systemctl enable --now succeeds" incont systemctl enable --now ringfence
check "and the service is active again" incont systemctl is-active ringfence
table_same "$fw" >"$WORK/table.running"
MAIN=$(main_pid)

# ---- remove, then purge

cp "$R/usr/lib/ringfence/policy.d/00-default.yaml" "$R/etc/ringfence/policy.d/50-admin.yaml"
check "apt remove succeeds" incont apt-get remove -y -qq ringfence
check "remove stopped the daemon" incont sh -c "! kill -0 $MAIN"
check "remove deleted the binary" test ! -e "$R/usr/bin/ringfence"
check "remove kept the conffile" test -f "$R/etc/ringfence/policy.d/README"
check "remove left the ruleset in force, unchanged (fail closed)" cmp "$WORK/table.running" <(table_same "$fw")
refute "after remove tcp/8080 is still blocked" tcp "$peer" 10.209.0.1 8080
check "apt purge succeeds" incont apt-get purge -y -qq ringfence
refute "purge deleted the ringfence table" ip netns exec "$fw" nft list table inet ringfence
check "purge left the admin's table untouched" cmp "$WORK/admin.before" <(admin_table)
check "purge removed the conffile" test ! -e "$R/etc/ringfence/policy.d/README"
check "purge kept the admin's policy file" test -f "$R/etc/ringfence/policy.d/50-admin.yaml"
check "purge removed the enablement symlink" test ! -e "$R/etc/systemd/system/multi-user.target.wants/ringfence.service"
check "after purge tcp/8080 is reachable again" tcp "$peer" 10.209.0.1 8080

rm "$R/etc/ringfence/policy.d/50-admin.yaml"
check "installing again succeeds" incont apt-get install -y -qq /root/ringfence.deb
check "and starts the service" incont systemctl is-active ringfence
check "remove again" incont apt-get remove -y -qq ringfence
# From the config-files state postinst gets the old version, as on an upgrade.
check "installing over the removed package's conffiles succeeds" incont apt-get install -y -qq /root/ringfence.deb
check "and starts the service too" incont systemctl is-active ringfence
check "remove once more" incont apt-get remove -y -qq ringfence
check "the table is deleted by hand" ip netns exec "$fw" nft delete table inet ringfence
check "purge with no ringfence table in the kernel succeeds" incont apt-get purge -y -qq ringfence
check "that purge left the admin's table untouched too" cmp "$WORK/admin.before" <(admin_table)

# The RPM's %postun, the one scriptlet that touches nftables, run as rpm would
# on erase ($1 = 0) by the container's sh (there is no RPM-based root here).
rpm -qp --qf '%{POSTUN}' "$RPM" >"$R/root/postun.sh"
check "the ringfence table is created by hand" ip netns exec "$fw" nft add table inet ringfence
check "the .rpm's %postun on erase succeeds" incont sh /root/postun.sh 0
refute "it deleted the ringfence table" ip netns exec "$fw" nft list table inet ringfence
check "it left the admin's table untouched" cmp "$WORK/admin.before" <(admin_table)
check "the .rpm's %postun on erase succeeds with no ringfence table" incont sh /root/postun.sh 0
check "the .rpm's %postun on upgrade succeeds and creates no table" \
    sh -c "nsenter -t $LEADER -m -u -i -n -p -- sh /root/postun.sh 1 && ! ip netns exec $fw nft list table inet ringfence"

# ---- the Ansible role (packaging/ansible), run from this machine into the
# container (connection community.docker.nsenter, as root): the package, the
# fleet agent's credentials and configuration, both services enabled and
# running; the agent then reports to an etcd (mutual TLS) in the peer's
# namespace, which proves its configuration. A second run changes nothing.

PKI="$WORK/pki"
mkdir "$PKI"
pki_ca etcd-ca "/CN=etcd CA"
pki_ca fleet-ca "/CN=Fleet CA"
pki_leaf etcd etcd-ca "/CN=etcd" "IP:10.209.0.2"
pki_leaf fw etcd-ca "/CN=fw"
ip netns exec "$peer" etcd --name e1 --data-dir "$WORK/etcd" \
    --listen-client-urls https://10.209.0.2:2379 --advertise-client-urls https://10.209.0.2:2379 \
    --cert-file "$PKI/etcd.pem" --key-file "$PKI/etcd.key" --client-cert-auth --trusted-ca-file "$PKI/etcd-ca.pem" \
    >"$WORK/etcd.log" 2>&1 &
_PIDS+=($!)
disown
etcd_get() { ip netns exec "$peer" timeout 10 env ETCDCTL_API=3 etcdctl --endpoints https://10.209.0.2:2379 \
    --cacert "$PKI/etcd-ca.pem" --cert "$PKI/fw.pem" --key "$PKI/fw.key" get --print-value-only "$1"; }
check "etcd for the agent is up" wait_for 20 etcd_get /none
mkdir "$WORK/ansible"
cat >"$WORK/ansible/inventory" <<EOF
[fleet]
fw ansible_connection=community.docker.nsenter ansible_nsenter_pid=$LEADER ansible_become=false ansible_python_interpreter=/usr/bin/python3
EOF
cat >"$WORK/ansible/vars.yml" <<EOF
ringfence_package_file: $DEB
ringfence_fleet_endpoints: [https://10.209.0.2:2379]
ringfence_fleet_etcd_ca: $PKI/etcd-ca.pem
ringfence_fleet_ca: $PKI/fleet-ca.pem
ringfence_fleet_cert: $PKI/fw.pem
ringfence_fleet_key: $PKI/fw.key
ringfence_fleet_labels: { role: web }
EOF
playbook() {
    ANSIBLE_LOCAL_TEMP="$WORK/ansible/tmp" ANSIBLE_NOCOLOR=1 timeout 300 ansible-playbook \
        -i "$WORK/ansible/inventory" "$ROOT/packaging/ansible/site.yml" "$@"
}
refute "the role refuses to run without the fleet's credentials" --says "ringfence_fleet_cert.* are required" \
    playbook -e ringfence_fleet_endpoints='[https://10.209.0.2:2379]'
t=$SECONDS
check "ansible-playbook with the role succeeds" playbook -e "@$WORK/ansible/vars.yml"
echo "  the playbook took $((SECONDS - t)) s"
for unit in ringfence ringfence-fleet; do
    check "the role enabled $unit" incont systemctl is-enabled "$unit"
    check "and started it" incont systemctl is-active "$unit"
done
check "the host's key is mode 0600" test "$(stat -c %a "$R/etc/ringfence/fleet/host.key")" = 600
check "the agent's configuration names the host and its labels" \
    grep -qzE 'host: "fw".*labels: \{"role": "web"\}' "$R/etc/ringfence/fleet.yaml"
_reported() { etcd_get /ringfence/v1/status/fw | grep -q '"host":"fw"'; }
check "the agent the role set up reports its status to etcd" wait_for 30 _reported
check "ansible-playbook again" playbook -e "@$WORK/ansible/vars.yml"
said "changes nothing (idempotent)" '^fw +: ok=[0-9]+ +changed=0 +unreachable=0 +failed=0'

kill -TERM "$NSPAWN_PID"
check "the container shuts down on SIGTERM" wait_for 30 _gone "$NSPAWN_PID"
echo "  the scenario took $((SECONDS - START)) s"
finish
