//! Gated rules in the table and in `explain`, which reads the same reqids.

use std::path::PathBuf;

use super::*;
use crate::compile::{compile, Compiled};
use crate::dynamic::DynState;
use crate::explain::{explain, Decider, Explanation, Packet};
use crate::policy::{load_text, Direction, Policy, Verdict};

/// With the core networking group off: these tests look at the order of the
/// policy's own sets.
const ISOLATION: &str = "settings:\n  core-networking: false\nisolation:\n  mode: secure-request\n  secure-subnets: [\"10.0.0.0/8\"]\n  identity: { ca: /ca, certificate: /c, private-key: /k }\n";

fn setup(rest: &str) -> (Policy, Compiled) {
    let p = load_text(&[(PathBuf::from("t.yaml"), format!("{ISOLATION}{rest}"))]).unwrap_or_else(|d| panic!("{d}"));
    let c = compile(&p, &DynState::default()).unwrap_or_else(|d| panic!("{d}"));
    (p, c)
}

const SCANNERS: &str = "groups:\n\
    \x20 scanners: { subject: \"C=XX, O=Example, OU=Scanners, CN=*\" }\n\
    \x20 sql-clients: { subject: \"C=XX, O=Example, OU=Finance, CN=*\" }\n\
    rules:\n\
    - { name: no-ssh, direction: in, action: block, protocol: tcp, local-ports: [22] }\n\
    - { name: scanner-bypass, direction: in, action: bypass, remote-groups: [scanners] }\n\
    - { name: sql, direction: in, action: allow, protocol: tcp, local-ports: [5432], remote-groups: [sql-clients] }\n\
    - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [443], require-secure: true }\n\
    - { name: plain, direction: in, action: allow, protocol: tcp, local-ports: [80] }\n";

/// A TCP connection from a member's address to `port`, over an SA as `secure`
/// and `groups` say.
fn tcp(port: u16, secure: bool, groups: &[&str]) -> Packet {
    Packet {
        protocol: 6,
        remote: Some("10.1.2.3".parse().unwrap()),
        local_port: Some(port),
        secure,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Default::default()
    }
}

/// The reqid of the group connection for `pattern`.
fn reqid(p: &Policy, pattern: &str) -> u32 {
    p.group_connections.iter().find(|g| g.pattern.to_string() == pattern).unwrap().reqid
}

fn decided(p: &Policy, c: &Compiled, packet: &Packet) -> (Verdict, String) {
    let Explanation { verdict, decided_by, .. } =
        explain(p, c, Direction::In, packet).unwrap_or_else(|e| panic!("{e}"));
    let by = match decided_by {
        Decider::Rule { name, .. } => name,
        other => format!("{other:?}"),
    };
    (verdict, by)
}

#[test]
fn bypass_is_looked_up_first_and_only_over_the_groups_sas() {
    let (p, c) = setup(SCANNERS);
    let scanners = reqid(&p, "C=XX, O=Example, OU=Scanners, CN=*");
    assert_eq!(c.reqids.get("scanners"), Some(&vec![scanners]));
    let chain = c.table.chains.iter().find(|ch| ch.name == "in_public").unwrap();
    // Over the group connection's SA, or over an SA the host started with a
    // peer it found in the group (IPv4, IPv6).
    let gates: Vec<&[Stmt]> = chain.rules[..3].iter().map(|r| &r.stmts[..r.stmts.len() - 2]).collect();
    let isolation_sa = Stmt::Equals(Expr::IpsecIn("reqid"), json!(crate::xfrm::REQID));
    let by_peer = |family, set: &str| Stmt::InSet(Expr::Payload(family, "saddr"), set.into());
    assert_eq!(
        gates,
        [
            &[Stmt::Equals(Expr::IpsecIn("reqid"), json!(scanners))][..],
            &[isolation_sa.clone(), by_peer("ip", "grp_scanners_peers4")],
            &[isolation_sa, by_peer("ip6", "grp_scanners_peers6")],
        ]
    );
    for rule in &chain.rules[..3] {
        let lookup = &rule.stmts[rule.stmts.len() - 2];
        assert!(matches!(lookup, Stmt::InSet(_, set) if set.starts_with("in_bypass_all_grp_scanners")), "{rule:?}");
    }
    assert!(matches!(&chain.rules[3].stmts[0], Stmt::InSet(_, set) if set.starts_with("in_block")), "then blocks");
    let sets: Vec<&str> = c.table.sets.iter().map(|s| s.name.as_str()).filter(|n| n.ends_with("_peers4")).collect();
    assert_eq!(sets, ["grp_scanners_peers4", "grp_sql-clients_peers4"], "empty until the daemon fills them");
    let web =
        chain.rules.iter().find(|r| r.stmts.iter().any(|s| matches!(s, Stmt::InSet(_, n) if n.contains("secure"))));
    assert_eq!(web.unwrap().stmts[0], Stmt::Equals(Expr::Meta("ipsec"), json!(true)));

    assert_eq!(decided(&p, &c, &tcp(22, false, &["scanners"])), (Verdict::Allow, "scanner-bypass".into()));
    assert_eq!(decided(&p, &c, &tcp(22, false, &[])), (Verdict::Block, "Isolation { mode: SecureRequest }".into()));
    assert_eq!(decided(&p, &c, &tcp(22, true, &[])), (Verdict::Block, "no-ssh".into()), "an SA, but no group");
    assert_eq!(decided(&p, &c, &tcp(22, false, &["sql-clients"])), (Verdict::Block, "no-ssh".into()));
}

#[test]
fn a_clear_packet_gets_nothing_from_gated_rules() {
    // Outside the secure subnets, so that isolation lets it reach the rules.
    let (p, c) = setup(SCANNERS);
    let clear = |port| Packet { remote: Some("192.0.2.9".parse().unwrap()), ..tcp(port, false, &[]) };
    assert_eq!(decided(&p, &c, &clear(22)), (Verdict::Block, "no-ssh".into()));
    for port in [5432, 443, 9999] {
        assert_eq!(decided(&p, &c, &clear(port)), (Verdict::Block, "ProfileDefault { profile: Public }".into()));
    }
    assert_eq!(decided(&p, &c, &clear(80)), (Verdict::Allow, "plain".into()));
}

#[test]
fn remote_groups_need_the_right_group_and_require_secure_any_sa() {
    let (p, c) = setup(SCANNERS);
    assert_eq!(decided(&p, &c, &tcp(5432, false, &["sql-clients"])), (Verdict::Allow, "sql".into()));
    assert_eq!(decided(&p, &c, &tcp(5432, false, &["scanners"])).1, "scanner-bypass", "bypass covers every port");
    assert_eq!(decided(&p, &c, &tcp(5432, true, &[])).1, "ProfileDefault { profile: Public }");
    assert_eq!(decided(&p, &c, &tcp(443, true, &[])), (Verdict::Allow, "web".into()));
    assert_eq!(decided(&p, &c, &tcp(443, false, &["sql-clients"])), (Verdict::Allow, "web".into()));
    let x = explain(&p, &c, Direction::In, &tcp(443, false, &["sql-clients"])).unwrap();
    let sa = x.ipsec.unwrap();
    let finance = "C=XX, O=Example, OU=Finance, CN=*";
    assert_eq!((sa.reqid, sa.connection.unwrap().to_string()), (reqid(&p, finance), finance.into()));
}

#[test]
fn a_peer_in_two_groups_gets_what_both_grant() {
    let (p, c) = setup(
        "groups:\n\
         \x20 example: { subject: \"C=XX, O=Example, OU=*, CN=*\" }\n\
         \x20 finance: { subject: \"C=XX, O=*, OU=Finance, CN=*\" }\n\
         \x20 other: { subject: \"C=XX, O=Other, OU=*, CN=*\" }\n\
         rules:\n\
         - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [80], remote-groups: [example] }\n\
         - { name: books, direction: in, action: allow, protocol: tcp, local-ports: [5432], remote-groups: [finance] }\n",
    );
    let both = ["example", "finance"];
    assert_eq!(decided(&p, &c, &tcp(80, false, &both)).1, "web");
    assert_eq!(decided(&p, &c, &tcp(5432, false, &both)).1, "books");
    assert_eq!(decided(&p, &c, &tcp(5432, false, &["example"])).1, "ProfileDefault { profile: Public }");
    // The SA of a peer in both is the one of their intersection, in both sets.
    let sa = explain(&p, &c, Direction::In, &tcp(80, false, &both)).unwrap().ipsec.unwrap();
    assert_eq!(sa.connection.unwrap().to_string(), "C=XX, O=Example, OU=Finance, CN=*");
    assert!(c.reqids["example"].contains(&sa.reqid) && c.reqids["finance"].contains(&sa.reqid));
    assert_eq!(
        explain(&p, &c, Direction::In, &tcp(80, false, &["example", "other"])).unwrap_err(),
        "no peer is in all of example, other: their subject patterns never match one certificate"
    );
    assert_eq!(
        explain(&p, &c, Direction::In, &tcp(80, false, &["nobody"])).unwrap_err(),
        "\"nobody\" is not a group of the policy (groups: example, finance, other)"
    );
}

#[test]
fn a_rule_with_two_groups_is_in_a_set_per_group_and_logs_by_gate() {
    let (p, c) = setup(
        "groups:\n  a: { subject: \"O=A, CN=*\" }\n  b: { subject: \"O=B, CN=*\" }\nrules:\n\
         - { name: ab, direction: in, action: allow, protocol: udp, local-ports: [53], remote-groups: [a, b], log: true }\n",
    );
    let names: Vec<&str> = c.table.sets.iter().map(|s| s.name.as_str()).filter(|n| n.starts_with("in_")).collect();
    assert_eq!(names, ["in_allow_log_all_grp_a_proto_lport", "in_allow_log_all_grp_b_proto_lport"]);
    let chains: Vec<&str> =
        c.table.chains.iter().map(|ch| ch.name.as_str()).filter(|n| n.starts_with("log_")).collect();
    assert_eq!(chains, ["log_in_allow_grp_a", "log_in_allow_grp_b"]);
    let udp = |groups: &[&str]| Packet { protocol: 17, ..tcp(53, false, groups) };
    assert_eq!(decided(&p, &c, &udp(&["b"])).1, "ab");
    assert_eq!(decided(&p, &c, &udp(&["a"])).1, "ab");
}

#[test]
fn the_peer_sets_take_the_peers_of_their_group_only() {
    let (_, mut c) = setup(SCANNERS);
    let peers = GroupPeers::from([
        ("scanners".to_string(), ["10.0.0.7".parse().unwrap(), "fd00::7".parse().unwrap()].into()),
        ("gone".to_string(), ["10.0.0.8".parse().unwrap()].into()),
    ]);
    let updates = c.peer_updates(&peers);
    let got: Vec<(&str, usize)> = updates.iter().map(|s| (s.name.as_str(), s.elems.len())).collect();
    assert_eq!(got, [("grp_scanners_peers4", 1), ("grp_scanners_peers6", 1)], "no set for a group the table lacks");
    assert_eq!(updates[0].elems[0].ranges[..], [(0x0a00_0007, 0x0a00_0007)]);
    c.replace_sets(updates);
    assert!(c.peer_updates(&peers).is_empty(), "what the table holds is not sent again");
    assert_eq!(c.peer_updates(&GroupPeers::new()).len(), 2, "and emptied when the peers are gone");
}

#[test]
fn a_rule_of_one_ip_version_passes_by_that_version_s_peer_set_only() {
    let (_, c) = setup(
        "groups:\n  sql-clients: { subject: \"C=XX, O=Example, OU=Finance, CN=*\" }\n\
         rules:\n  - { name: sql, direction: in, action: allow, protocol: tcp, local-ports: [5432], remote-addresses: [10.1.0.0/16], remote-groups: [sql-clients] }\n",
    );
    let chain = c.table.chains.iter().find(|ch| ch.name == "in_public").unwrap();
    let peer_sets: Vec<&str> = chain
        .rules
        .iter()
        .flat_map(|r| &r.stmts)
        .filter_map(|s| match s {
            Stmt::InSet(_, set) if set.contains("_peers") => Some(set.as_str()),
            _ => None,
        })
        .collect();
    // (nft refuses `ip6 saddr` in a rule that matches `ip saddr`.)
    assert_eq!(peer_sets, ["grp_sql-clients_peers4"]);
}
