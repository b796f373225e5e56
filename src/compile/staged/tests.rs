use std::path::PathBuf;

use crate::compile::compile;
use crate::dynamic::DynState;
use crate::explain::{explain_staged, Decider, Packet};
use crate::net::{IPPROTO_TCP, IPPROTO_UDP};
use crate::policy::{load_text, Direction, Policy, Verdict};

use super::Would;

const ENFORCED: &str = "
version: 1
rules:
  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [8080, 8081] }
  - { name: no-9000, direction: in, action: block, protocol: tcp, local-ports: [9000] }
";

const STAGED: &str = "
stage: audit
rules:
  - { name: no-8081, direction: in, action: block, protocol: tcp, local-ports: [8081, 9000] }
  - { name: open-5301, direction: in, action: allow, protocol: udp, local-ports: [5301] }
  - { name: no-ssh-out, direction: out, action: block, protocol: tcp, remote-ports: [22] }
";

fn load(files: &[&str]) -> Policy {
    let files: Vec<(PathBuf, String)> =
        files.iter().enumerate().map(|(i, t)| (PathBuf::from(format!("{i}0-test.yaml")), t.to_string())).collect();
    load_text(&files).unwrap_or_else(|d| panic!("{d}"))
}

fn packet(protocol: u8, local_port: Option<u16>, remote_port: Option<u16>) -> Packet {
    Packet { protocol, local_port, remote_port, remote: Some("192.0.2.7".parse().unwrap()), ..Packet::default() }
}

#[test]
fn staged_rules_leave_the_enforced_lookups_as_they_were() {
    let without = compile(&load(&[ENFORCED]), &DynState::default()).unwrap();
    let with = compile(&load(&[ENFORCED, STAGED]), &DynState::default()).unwrap();
    assert_eq!(without.lookups, with.lookups);
    assert!(without.staged.is_empty());
    assert_eq!(with.staged.len(), 3);
}

#[test]
fn explain_staged_says_what_would_change_and_by_which_rule() {
    let policy = load(&[ENFORCED, STAGED]);
    let compiled = compile(&policy, &DynState::default()).unwrap();
    let explain = |direction, p: &Packet| explain_staged(&policy, &compiled, direction, p).unwrap();
    let staged_rule = |d: &Decider| match d {
        Decider::Rule { name, .. } => name.clone(),
        other => panic!("decided by {other:?}"),
    };

    let x = explain(Direction::In, &packet(IPPROTO_TCP, Some(8081), None));
    assert_eq!((x.enforced.verdict, x.staged.verdict, x.would), (Verdict::Allow, Verdict::Block, Some(Would::Block)));
    assert_eq!(staged_rule(&x.staged.decided_by), "no-8081");

    let x = explain(Direction::In, &packet(IPPROTO_UDP, Some(5301), None));
    assert_eq!((x.enforced.verdict, x.would), (Verdict::Block, Some(Would::Allow)));
    assert_eq!(staged_rule(&x.staged.decided_by), "open-5301");

    let x = explain(Direction::Out, &packet(IPPROTO_TCP, None, Some(22)));
    assert_eq!(x.would, Some(Would::Block));

    // An enforced block decides alone: the staged block agrees, nothing to count.
    let x = explain(Direction::In, &packet(IPPROTO_TCP, Some(9000), None));
    assert_eq!((x.would, x.staged.clone()), (None, x.enforced.clone()));
    // Where no staged rule matches, the two are the same.
    let x = explain(Direction::In, &packet(IPPROTO_TCP, Some(8080), None));
    assert_eq!((x.would, x.staged.verdict), (None, Verdict::Allow));
}

#[test]
fn promoting_is_removing_the_marker() {
    let promoted = STAGED.replace("stage: audit\n", "");
    let policy = load(&[ENFORCED, &promoted]);
    let compiled = compile(&policy, &DynState::default()).unwrap();
    assert!(compiled.staged.is_empty());
    let x = explain_staged(&policy, &compiled, Direction::In, &packet(IPPROTO_TCP, Some(8081), None)).unwrap();
    assert_eq!((x.enforced.verdict, x.would), (Verdict::Block, None));
    assert!(!compiled.table.sets.iter().any(|s| s.name.starts_with("staged_")));
}

#[test]
fn a_staged_rule_with_bypass_is_an_error_at_its_place() {
    let bad = "rules:\n  - { name: b, direction: in, action: bypass, remote-groups: [g], stage: audit }\n";
    let err = load_text(&[(PathBuf::from("b.yaml"), bad.into())]).unwrap_err().to_string();
    assert!(err.contains("b.yaml:2:39: rules[0].action: a staged rule cannot use authenticated bypass"), "{err}");
}
