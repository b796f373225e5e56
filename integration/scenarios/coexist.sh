#!/usr/bin/env bash
# Other nftables tables: an admin's own `inet` table (counter object, set, a
# hooked chain with its own drop rule), a NAT table, and a table named
# "ringfence" in another family all exist before the daemon starts and stay
# byte-identical through start, reload, `apply`, SIGHUP and stop. SIGTERM leaves
# the ringfence table in force (fail closed); with --flush-on-exit it removes
# that table and nothing else. When another tool flushes the whole ruleset,
# SIGHUP or `apply` puts the ringfence table back.
source "$(dirname "$0")/../lib.sh"

fw=$(host fw); peer=$(host peer)
link "$fw" eth0 10.204.0.1 fd00:204::1 "$peer" eth0 10.204.0.2 fd00:204::2

ip netns exec "$fw" nft -f - <<'NFT'
table inet admin {
    counter seen {
    }
    set blocked {
        type ipv4_addr
        elements = { 192.0.2.1, 192.0.2.9 }
    }
    chain audit {
        counter name "seen"
        ip saddr @blocked drop
    }
    chain input {
        type filter hook input priority -10; policy accept;
        tcp dport 8081 drop
    }
}
table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "eth9" masquerade
    }
}
table ip ringfence {
    chain mine {
    }
}
NFT
others() { nft_table "$fw" inet admin; nft_table "$fw" ip nat; nft_table "$fw" ip ringfence; }
others >"$WORK/others.0"
same_others() { others | cmp -s - "$WORK/others.0"; }

P="$WORK/policy"
mkdir "$P"
{ printf 'version: 1\nrules:\n'
  echo '  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [8080, 8081] }'
  echo "$ND_RULE"; } >"$P/10-base.yaml"
# 30-manual.yaml points to a file the watcher ignores (not *.yaml): its edits
# reach the kernel only through `apply` or SIGHUP, so each of those really
# replaces the table.
echo 'version: 1' >"$P/30-manual.src"
ln -s 30-manual.src "$P/30-manual.yaml"
manual() { printf 'version: 1\nrules:\n  - { name: manual, direction: in, action: allow, protocol: tcp, local-ports: [%s] }\n' "$1" >"$P/30-manual.src"; }
for p in 8080 8081 8082 4000; do serve_tcp "$fw" $p; done
check "without ringfence: tcp/4000 reachable" tcp "$peer" 10.204.0.1 4000

daemon_start "$fw" "$P"
check "start: the other tables are byte-identical" same_others
check "start: ringfence allows tcp/8080" tcp "$peer" 10.204.0.1 8080
refute "start: tcp/4000 blocked by ringfence although the admin's chain accepts" tcp "$peer" 10.204.0.1 4000
refute "start: the admin's own drop of tcp/8081 still applies" tcp "$peer" 10.204.0.1 8081

g=$(state "$fw" generation)
printf 'version: 1\nrules:\n  - { name: more, direction: in, action: allow, protocol: tcp, local-ports: [8082] }\n' >"$P/20-more.yaml"
check "file change: reloaded" wait_gen "$fw" $((g + 1))
check "file change: the other tables are byte-identical" same_others
check "file change: tcp/8082 now allowed" tcp "$peer" 10.204.0.1 8082

g=$(state "$fw" generation)
manual 4000
check "apply: succeeds" rf "$fw" apply
check "apply: a new generation" test "$(state "$fw" generation)" = $((g + 1))
check "apply: the other tables are byte-identical" same_others
check "apply: tcp/4000 now allowed" tcp "$peer" 10.204.0.1 4000

g=$(state "$fw" generation)
manual 9999
kill -HUP "$DAEMON_PID"
check "SIGHUP: reloaded" wait_gen "$fw" $((g + 1))
check "SIGHUP: the other tables are byte-identical" same_others

# Stop with SIGTERM: fail closed.
# Counters may move (neighbour discovery keeps running), so compare the table
# apart from counters.
shape_before=$(table_shape "$fw")
kill -TERM "$DAEMON_PID"
check "SIGTERM: the daemon exits" wait_exit "$DAEMON_PID"
check "SIGTERM: the ringfence table is still there, unchanged apart from counters" test "$(table_shape "$fw")" = "$shape_before"
check "SIGTERM: the other tables are byte-identical" same_others
check "SIGTERM: the control socket is removed" test ! -e "$(sock "$fw")"
check "SIGTERM: the daemon logged that the ruleset stays" grep -q 'ruleset stays in force' "$WORK/$fw.log"
for a in 10.204.0.1 fd00:204::1; do
    check  "after SIGTERM: tcp/8080 still allowed ($a)" tcp "$peer" $a 8080
    refute "after SIGTERM: tcp/4000 still blocked ($a)" tcp "$peer" $a 4000
done

# With --flush-on-exit, SIGTERM deletes the ringfence table and nothing else.
daemon_start "$fw" "$P" --flush-on-exit
check "restart: the other tables are byte-identical" same_others
refute "restart: tcp/4000 blocked" tcp "$peer" 10.204.0.1 4000
kill -TERM "$DAEMON_PID"
check "--flush-on-exit SIGTERM: the daemon exits" wait_exit "$DAEMON_PID"
refute "--flush-on-exit SIGTERM: table inet ringfence is gone" table "$fw"
check "--flush-on-exit SIGTERM: the other tables are byte-identical (ip ringfence too)" same_others
check "--flush-on-exit SIGTERM: tcp/4000 reachable again" tcp "$peer" 10.204.0.1 4000
refute "--flush-on-exit SIGTERM: the admin's drop of tcp/8081 still applies" tcp "$peer" 10.204.0.1 8081

# Another tool flushes the whole ruleset (as `systemctl restart nftables` does on
# Debian: /etc/nftables.conf starts with `flush ruleset`). Ringfence's table is
# gone; a reload (SIGHUP) or `apply` must put it back, whatever the files say.
daemon_start "$fw" "$P"
ip netns exec "$fw" nft flush ruleset
check "after a flush: show state reports the table missing" test "$(state "$fw" present)" = false
check "after a flush: tcp/4000 reachable (no firewall at all)" tcp "$peer" 10.204.0.1 4000
kill -HUP "$DAEMON_PID"
check "after a flush: SIGHUP puts table inet ringfence back" wait_for 3 table "$fw"
check "after a flush: apply succeeds" rf "$fw" apply
check "after a flush: apply puts table inet ringfence back" table "$fw"
check "after a flush and apply: show state reports the table present" test "$(state "$fw" present)" = true
refute "after a flush and apply: tcp/4000 blocked again" tcp "$peer" 10.204.0.1 4000
finish
