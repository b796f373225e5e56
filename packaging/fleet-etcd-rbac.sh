#!/usr/bin/env bash
# Sets up etcd's users and roles for a Ringfence fleet (docs/fleet.md, "Access
# control"). Run it with etcdctl v3 as etcd's root user: a client certificate
# whose CN is `root` (before auth is enabled, any client certificate will do).
set -eu

usage() {
    cat <<'EOF'
Usage: fleet-etcd-rbac.sh [CONNECTION] setup PUBLISHER...
       fleet-etcd-rbac.sh [CONNECTION] add-host HOST...

Sets up etcd's access control for a Ringfence fleet. etcd must run with
--client-cert-auth: with auth enabled, it takes a client's user name from the
CN of its certificate, so each host's certificate CN must be its `host:` name
in the agent's configuration, and a publisher's its user name here.

  setup PUBLISHER...  creates the user and role `root` (role root: everything),
                      the role `publisher` (read and write /ringfence/v1/policy/
                      and /ringfence/v1/rollout/, read /ringfence/v1/status/
                      and /ringfence/v1/report/) and
                      a user of that role for each PUBLISHER, then enables auth.
  add-host HOST...    creates the role host-HOST (read /ringfence/v1/policy/,
                      read and write the two keys /ringfence/v1/status/HOST and
                      /ringfence/v1/report/HOST) and the user HOST with it.

Users have no password (--no-password): certificates authenticate them. Every
step is skipped or repeated harmlessly when already done, so a run may be
repeated; once auth is enabled, run it as root (a certificate with CN root).

CONNECTION (or etcdctl's own ETCDCTL_ENDPOINTS, ETCDCTL_CACERT, ETCDCTL_CERT,
ETCDCTL_KEY in the environment):
  --endpoints URL[,URL...]  --cacert FILE  --cert FILE  --key FILE
EOF
}

PREFIX=/ringfence/v1
export ETCDCTL_API=3
while [ $# -gt 0 ]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --endpoints) export ETCDCTL_ENDPOINTS=$2; shift 2 ;;
        --cacert) export ETCDCTL_CACERT=$2; shift 2 ;;
        --cert) export ETCDCTL_CERT=$2; shift 2 ;;
        --key) export ETCDCTL_KEY=$2; shift 2 ;;
        -*) echo "fleet-etcd-rbac.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) break ;;
    esac
done
[ $# -ge 2 ] || { usage >&2; exit 2; }
command -v etcdctl >/dev/null || { echo "fleet-etcd-rbac.sh: etcdctl is not installed" >&2; exit 1; }

# name_ok NAME: a user name etcd and the status keys both take as it is.
name_ok() {
    case $1 in
        *[!A-Za-z0-9._-]* | "") echo "fleet-etcd-rbac.sh: \"$1\" is not a name of letters, digits, . _ -" >&2; exit 2 ;;
    esac
}
# role NAME: role NAME exists.
role() { etcdctl role get "$1" >/dev/null 2>&1 || etcdctl role add "$1" >/dev/null; }
# user NAME ROLE: user NAME exists, without password, and has ROLE.
user() {
    etcdctl user get "$1" >/dev/null 2>&1 || etcdctl user add "$1" --no-password >/dev/null
    etcdctl user grant-role "$1" "$2" >/dev/null 2>&1 || etcdctl user get "$1" | grep -qw -- "$2"
}
# grant ROLE PERMISSION KEY [--prefix]: granting again replaces the same permission.
grant() { etcdctl role grant-permission "$1" "$2" "$3" ${4:+"$4"} >/dev/null; }

command=$1
shift
for name in "$@"; do name_ok "$name"; done
case $command in
    setup)
        role root
        user root root
        role publisher
        grant publisher readwrite "$PREFIX/policy/" --prefix
        # fleet rollout keeps a scope's phase there; hosts never read it.
        grant publisher readwrite "$PREFIX/rollout/" --prefix
        grant publisher read "$PREFIX/status/" --prefix
        grant publisher read "$PREFIX/report/" --prefix
        for name in "$@"; do
            user "$name" publisher
            echo "publisher $name"
        done
        etcdctl auth enable >/dev/null
        echo "auth enabled"
        ;;
    add-host)
        for name in "$@"; do
            role "host-$name"
            grant "host-$name" read "$PREFIX/policy/" --prefix
            # Single keys, not prefixes: the prefix status/h1 would cover h10 too.
            grant "host-$name" readwrite "$PREFIX/status/$name"
            grant "host-$name" readwrite "$PREFIX/report/$name"
            user "$name" "host-$name"
            echo "host $name"
        done
        ;;
    *) echo "fleet-etcd-rbac.sh: unknown command $command (see --help)" >&2; exit 2 ;;
esac
