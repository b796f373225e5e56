use std::path::PathBuf;

use super::*;
use crate::policy::{load_text, Policy};

fn def(name: &str, subject: &str) -> GroupDef {
    let file: std::sync::Arc<std::path::Path> = std::sync::Arc::from(std::path::Path::new("t.yaml"));
    GroupDef { name: name.into(), subject: DnPattern::parse(subject).unwrap(), place: Place::new(&file, 1, 1) }
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn reqids_follow_isolations_own() {
    assert_eq!(FIRST_REQID, crate::xfrm::REQID + 1);
}

#[test]
fn connections_are_the_patterns_closed_under_intersection() {
    let groups = [
        def("example", "C=XX, O=Example, OU=*, CN=*"),
        def("scanners", "C=XX, O=Example, OU=Scanners, CN=*"),
        def("admins", "C=XX, O=*, OU=*, CN=admin"),
        def("also-scanners", "C=XX, O=Example, OU=Scanners, CN=*"),
        def("short", "O=Example, CN=*"),
    ];
    let conns = connections(&groups).unwrap();
    let got: Vec<(String, BTreeSet<String>)> =
        conns.iter().map(|c| (c.pattern.to_string(), c.groups.clone())).collect();
    let want = [
        ("C=XX, O=*, OU=*, CN=admin", names(&["admins"])),
        ("C=XX, O=Example, OU=*, CN=*", names(&["example"])),
        ("C=XX, O=Example, OU=*, CN=admin", names(&["admins", "example"])),
        ("C=XX, O=Example, OU=Scanners, CN=*", names(&["also-scanners", "example", "scanners"])),
        ("C=XX, O=Example, OU=Scanners, CN=admin", names(&["admins", "also-scanners", "example", "scanners"])),
        ("O=Example, CN=*", names(&["short"])),
    ];
    let want: Vec<(String, BTreeSet<String>)> = want.into_iter().map(|(p, g)| (p.to_string(), g)).collect();
    assert_eq!(got, want);
    let reqids: BTreeSet<u32> = conns.iter().map(|c| c.reqid).collect();
    assert_eq!(reqids.len(), conns.len(), "one reqid each");
}

/// charon's choice, simulated: of the connections whose pattern matches the
/// subject, the one with the fewest wildcards, which must be unique; its
/// groups must be exactly those whose pattern matches the subject.
#[test]
fn a_peer_gets_exactly_the_groups_its_subject_is_in() {
    let groups = [
        def("finance", "C=XX, O=Example, OU=Finance, CN=*"),
        def("sql", "C=XX, O=*, OU=*, CN=sql1"),
        def("hosts", "C=XX, O=Example, OU=*, CN=db1"),
        def("any-xx", "C=XX, O=*, OU=*, CN=*"),
        def("other", "C=XX, O=Other, OU=*, CN=*"),
    ];
    let conns = connections(&groups).unwrap();
    let wildcards = |p: &DnPattern| p.to_string().split(", ").filter(|rdn| rdn.ends_with("=*")).count();
    for subject in [
        "C=XX, O=Example, OU=Finance, CN=db1",
        "C=XX, O=Example, OU=Finance, CN=web",
        "C=XX, O=Example, OU=Sales, CN=db1",
        "C=XX, O=Other, OU=Finance, CN=db1",
        "C=XX, O=Other, OU=Sales, CN=sql1",
        "C=YY, O=Example, OU=Finance, CN=db1",
        "O=Example, OU=Finance, CN=db1",
    ] {
        let s = DnPattern::parse(subject).unwrap();
        let matching: Vec<&GroupConn> = conns.iter().filter(|c| s.within(&c.pattern)).collect();
        let in_groups: BTreeSet<String> =
            groups.iter().filter(|g| s.within(&g.subject)).map(|g| g.name.clone()).collect();
        let Some(fewest) = matching.iter().map(|c| wildcards(&c.pattern)).min() else {
            assert!(in_groups.is_empty(), "{subject}: no connection, but in {in_groups:?}");
            continue;
        };
        let chosen: Vec<&&GroupConn> = matching.iter().filter(|c| wildcards(&c.pattern) == fewest).collect();
        assert_eq!(chosen.len(), 1, "{subject}: charon would choose between {chosen:?}");
        assert_eq!(chosen[0].groups, in_groups, "{subject}");
    }
}

#[test]
fn the_closure_is_bounded() {
    // Seven patterns, each fixing another attribute: every subset intersects.
    let groups: Vec<GroupDef> = (0..7)
        .map(|i| {
            let rdns: Vec<&str> = (0..7).map(|j| if i == j { "DC=x" } else { "DC=*" }).collect();
            def(&format!("g{i}"), &rdns.join(", "))
        })
        .collect();
    assert!(connections(&groups).is_none());
    assert_eq!(connections(&groups[..6]).map(|c| c.len()), Some(63));
}

const ISOLATION: &str = "isolation:\n  mode: request\n  secure-subnets: [\"10.0.0.0/8\"]\n  identity: { ca: /ca, certificate: /c, private-key: /k }\n";

fn load(files: &[(&str, &str)]) -> Result<Policy, Vec<String>> {
    let sources: Vec<(PathBuf, String)> = files.iter().map(|(n, t)| (PathBuf::from(n), t.to_string())).collect();
    load_text(&sources).map_err(|d| d.0.iter().map(ToString::to_string).collect())
}

#[test]
fn group_rules_load_and_remote_groups_imply_require_secure() {
    let text = format!(
        "{ISOLATION}groups:\n  scanners: {{ subject: \"C=XX, O=Example, OU=Scanners, CN=*\" }}\nrules:\n\
         - {{ name: scan, direction: in, action: bypass, remote-groups: [scanners] }}\n\
         - {{ name: web, direction: in, action: allow, protocol: tcp, local-ports: [443], require-secure: true }}\n"
    );
    let p = load(&[("p.yaml", &text)]).unwrap();
    assert_eq!(
        (p.rules[0].action, &p.rules[0].remote_groups, p.rules[0].require_secure),
        (Action::Bypass, &vec!["scanners".to_string()], true)
    );
    assert_eq!((&p.rules[1].remote_groups, p.rules[1].require_secure), (&Vec::new(), true));
    assert_eq!(p.groups[0].place.to_string(), "p.yaml:6:3");
    assert_eq!(p.group_connections.len(), 1);
}

#[test]
fn every_group_and_rule_problem_is_reported_with_its_place() {
    let text = format!(
        "{ISOLATION}groups:\n\
         \x20 scanners: {{ subject: \"C=XX, O=Example, OU=Scanners, CN=scan*\" }}\n\
         \x20 Bad_Name: {{ subject: \"CN=*\" }}\n\
         \x20 nosubject: {{}}\n\
         \x20 finance: {{ subject: \"C=XX, OU=Finance, CN=*\" }}\n\
         \x20 finance2: {{ subject: \"C=XX, OU=FINANCE, CN=*\" }}\n\
         rules:\n\
         - {{ name: a, direction: in, action: bypass, protocol: tcp }}\n\
         - {{ name: b, direction: out, action: allow, remote-groups: [finance] }}\n\
         - {{ name: c, direction: in, action: block, require-secure: true }}\n\
         - {{ name: d, direction: in, action: allow, remote-groups: [finance, nobody] }}\n\
         - {{ name: e, direction: in, action: allow, remote-groups: [finance], require-secure: false }}\n\
         - {{ name: f, direction: in, action: allow, remote-groups: [scanners, nosubject] }}\n"
    );
    let want = [
        "p.yaml:6:24: groups.scanners.subject: \"C=XX, O=Example, OU=Scanners, CN=scan*\" can never match as intended: charon compares \"CN=scan*\" literally; * stands for a whole value only (CN=*)",
        "p.yaml:7:3: groups: \"Bad_Name\" is not a group name (lowercase letters, digits and -, starting with a letter, at most 32)",
        "p.yaml:8:14: groups.nosubject: missing subject (the certificate subject pattern of its members)",
        "p.yaml:12:37: rules[0].action: bypass needs remote-groups, the peers whose authentication lets them past block rules",
        "p.yaml:13:61: rules[1].remote-groups: remote-groups applies to direction in only: the kernel knows the SA of the packets it receives, not of those it sends",
        "p.yaml:14:60: rules[2].require-secure: a block rule cannot be limited to IPsec (it would let the same packets through in clear); require-secure goes with allow and bypass",
        "p.yaml:16:86: rules[4].require-secure: false contradicts remote-groups, which match only packets that came over IPsec",
        "p.yaml:10:3: groups.finance2: OU=FINANCE and OU=Finance of group finance at p.yaml:9:3 differ in case only; charon ignores case or not depending on how a certificate encodes the value: spell them alike",
        "p.yaml:15:69: rules[3].remote-groups[1]: \"nobody\" is not a group (groups: finance, finance2)",
        // (Not again for rules[5]'s groups, which are defined, though wrongly.)
    ];
    assert_eq!(load(&[("p.yaml", &text)]).unwrap_err(), want);
}

#[test]
fn a_group_defined_twice_names_both_places() {
    let a = "groups:\n  scanners: { subject: \"CN=*\" }\n";
    let b = "groups:\n  other: { subject: \"O=x, CN=*\" }\n  scanners: { subject: \"O=*, CN=*\" }\n";
    assert_eq!(
        load(&[("10-a.yaml", a), ("20-b.yaml", b)]).unwrap_err(),
        ["20-b.yaml:3:3: groups.scanners: \"scanners\" is already the name of the group at 10-a.yaml:2:3"]
    );
}

#[test]
fn rules_that_need_ipsec_need_isolation() {
    let text = "groups:\n  scanners: { subject: \"CN=*\" }\nrules:\n\
                - { name: a, direction: in, action: bypass, remote-groups: [scanners] }\n\
                - { name: b, direction: in, action: allow, require-secure: true }\n\
                - { name: c, direction: in, action: allow }\n";
    assert_eq!(
        load(&[("p.yaml", text)]).unwrap_err(),
        [
            "p.yaml:4:61: rules[0].remote-groups: needs isolation, which is off (isolation.mode): only its IPsec tells who sent a packet",
            "p.yaml:5:60: rules[1].require-secure: needs isolation, which is off (isolation.mode): only its IPsec tells who sent a packet",
        ]
    );
    // A group alone is no error: a drop-in may define groups before isolation is on.
    assert!(load(&[("p.yaml", "groups:\n  scanners: { subject: \"CN=*\" }\n")]).is_ok());
}

#[test]
fn a_group_used_before_the_file_that_defines_it_is_found() {
    let rules = "rules:\n  - { name: a, direction: in, action: allow, remote-groups: [scanners] }\n";
    let groups = format!("{ISOLATION}groups:\n  scanners: {{ subject: \"CN=*\" }}\n");
    assert!(load(&[("10-rules.yaml", rules), ("20-groups.yaml", &groups)]).is_ok());
}

#[test]
fn reqids_are_ringfence_s_and_stay_when_other_groups_change() {
    let g = def;
    let reqid_of = |conns: &[GroupConn], subject: &str| {
        conns.iter().find(|c| c.pattern.to_string() == subject).map(|c| c.reqid).unwrap()
    };
    let finance = g("sql-clients", "C=XX, O=Example, OU=Finance, CN=*");
    let before = connections(&[g("scanners", "C=XX, O=Example, OU=Scanners, CN=*"), finance.clone()]).unwrap();
    let after = connections(&[g("scanners", "C=XX, O=Example, OU=Auditors, CN=*"), finance]).unwrap();
    let subject = "C=XX, O=Example, OU=Finance, CN=*";
    assert_eq!(reqid_of(&before, subject), reqid_of(&after, subject));
    // 64 connections (the most a policy may have) fit, each its own, all Ringfence's.
    let many: Vec<GroupDef> = (0..64).map(|i| g(&format!("g{i}"), &format!("CN=host{i}"))).collect();
    let reqids: BTreeSet<u32> = connections(&many).unwrap().iter().map(|c| c.reqid).collect();
    assert_eq!(reqids.len(), 64);
    assert!(reqids.iter().all(|r| crate::xfrm::REQIDS.contains(r) && *r != crate::xfrm::REQID));
}
