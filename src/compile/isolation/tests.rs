use std::path::PathBuf;

use super::*;
use crate::policy::load_text;

fn iso(secure: &[&str], exempt: &[&str]) -> Isolation {
    let list = |l: &[&str]| l.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "isolation:\n  mode: require\n  secure-subnets: [{}]\n  exempt: [{}]\n  identity: {{ ca: /ca, certificate: /c, private-key: /k }}\n",
        list(secure),
        list(exempt)
    );
    load_text(&[(PathBuf::from("t.yaml"), text)]).unwrap_or_else(|d| panic!("{d}")).isolation
}

fn ranges(iso: &Isolation, v4: bool) -> Vec<String> {
    secure_ranges(iso, v4)
        .into_iter()
        .map(|(lo, hi)| {
            let r = if v4 { AddrRange::V4(lo as u32, hi as u32) } else { AddrRange::V6(lo, hi) };
            crate::net::format_addr_range(&r)
        })
        .collect()
}

#[test]
fn the_most_specific_prefix_decides() {
    // An exempt /24 inside a secure /8, a secure /26 inside that /24 again.
    let i = iso(&["10.0.0.0/8", "10.1.1.0/26", "192.168.0.0/16"], &["10.1.1.0/24", "192.168.0.0/16", "dns"]);
    // (10.0.0.0-10.1.0.255 and 10.1.1.0/26 touch, so they are one range.)
    assert_eq!(ranges(&i, true), ["10.0.0.0-10.1.1.63", "10.1.2.0-10.255.255.255"]);
    assert!(ranges(&i, false).is_empty());
    // Adjacent secure prefixes come out as one range; an exemption outside changes nothing.
    let i = iso(&["10.0.0.0/9", "10.128.0.0/9", "fd00::/8"], &["172.16.0.0/12", "fd00::53/128"]);
    assert_eq!(ranges(&i, true), ["10.0.0.0/8"]);
    assert_eq!(ranges(&i, false), ["fd00::-fd00::52", "fd00::54-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]);
}

#[test]
fn modes_and_their_inbound_rules() {
    let chain_text = |mode: &str| {
        let text = format!(
            "isolation:\n  mode: {mode}\n  secure-subnets: [10.0.0.0/8]\n  exempt: [dns]\n  identity: {{ ca: /ca, certificate: /c, private-key: /k }}\n"
        );
        let p = load_text(&[(PathBuf::from("t.yaml"), text)]).unwrap_or_else(|d| panic!("{d}"));
        chains(&p.isolation)
            .iter()
            .find(|c| c.name == CHAIN_IN)
            .map(|c| c.rules.iter().map(|r| format!("{:?}", r.stmts)).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    for mode in ["request", "boundary"] {
        let rules = chain_text(mode);
        assert!(!rules.iter().any(|r| r.contains("Drop")), "{mode}: no drop: {rules:#?}");
        // New clear connections from a secure subnet are counted, after the
        // exemptions: with ports, and without (port 0).
        let counted: Vec<usize> = (0..rules.len()).filter(|&i| rules[i].contains("iso_clear4")).collect();
        assert_eq!(counted.len(), 2, "{rules:#?}");
        assert!(rules[counted[0]].contains("CtState([\"new\"])") && rules[counted[0]].contains("iso_secure4"));
        assert!(rules[counted[0]].contains("Payload(\"th\", \"dport\")") && rules[counted[1]].contains("Number(0)"));
        assert!(rules.iter().position(|r| r.contains("dyn_dns4")).unwrap() < counted[0]);
    }
    let sr = chain_text("secure-request");
    assert!(sr.iter().any(|r| r.contains("CtState([\"new\"])") && r.contains("iso_secure4") && r.contains("Drop")));
    let req = chain_text("require");
    assert!(req.iter().any(|r| !r.contains("CtState") && r.contains("iso_secure6") && r.contains("Drop")));
    // The exempt keyword returns before the drop, per family.
    let dns4 = req.iter().position(|r| r.contains("dyn_dns4")).unwrap();
    let drop4 = req.iter().position(|r| r.contains("iso_secure4")).unwrap();
    assert!(dns4 < drop4);
    assert!(chain_text("off").is_empty());
}
