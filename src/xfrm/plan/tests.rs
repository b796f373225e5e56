//! The isolation policies: a golden file for the shipped example (a reviewer
//! reads the `ip xfrm policy add` arguments in the diff; `UPDATE_GOLDEN=1 cargo
//! test` rewrites it) and the mapping's properties per mode.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::dynamic::{DynState, Entry};
use crate::policy::isolation::Isolation;
use crate::policy::raw::IsolationMode;
use crate::policy::values::{parse_addr_range, parse_address, Keyword};
use crate::policy::{load_text, Sourced};
use crate::xfrm::{policies, Action, Dir, Level, Policy, Prefix, BAND, INBOUND_REQID, REQID};

/// The section as the policy files would make it (validated there).
pub(crate) fn isolation(mode: IsolationMode, secure: &[&str], exempt: &[&str]) -> Isolation {
    Isolation {
        mode: Sourced::default(mode),
        secure_subnets: Sourced::default(secure.iter().map(|s| parse_addr_range(s).unwrap()).collect()),
        exempt: Sourced::default(exempt.iter().map(|s| parse_address(s, false).unwrap()).collect()),
        ..Isolation::default()
    }
}

/// The DNS servers 10.0.0.53 and fd00::53, the local subnet 192.168.1.0/24 on eth0.
pub(crate) fn dynamic() -> DynState {
    let mut d = DynState::default();
    for a in ["10.0.0.53", "fd00::53"] {
        d.push_host(Keyword::Dns, a.parse().unwrap(), "resolv.conf".into());
    }
    let subnet = parse_addr_range("192.168.1.0/24").unwrap();
    d.values.insert(
        (Keyword::LocalSubnet, true),
        vec![Entry { interface: Some("eth0".into()), addresses: subnet, source: "address of eth0".into() }],
    );
    d
}

fn text(policies: &[Policy]) -> Vec<String> {
    policies.iter().map(ToString::to_string).collect()
}

/// The policy whose remote side (destination out, source in) is `remote`.
fn find<'a>(all: &'a [Policy], dir: Dir, remote: &str) -> &'a Policy {
    all.iter()
        .find(|p| {
            let r = if dir == Dir::Out { p.selector.dst } else { p.selector.src };
            p.dir == dir && p.selector.proto.is_none() && r.to_string() == remote
        })
        .unwrap_or_else(|| panic!("no {dir:?} policy for {remote} in {:#?}", text(all)))
}

#[test]
fn shipped_example_matches_its_golden_policies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = root.join("policies/examples/domain-isolation.yaml");
    let p = load_text(&[(PathBuf::from("domain-isolation.yaml"), std::fs::read_to_string(&file).unwrap())])
        .unwrap_or_else(|d| panic!("{d}"));
    let mut dynamic = dynamic();
    dynamic.push_host(Keyword::Dhcp, "10.0.0.2".parse().unwrap(), "lease".into());
    let got = text(&policies(&p.isolation, &dynamic, &BTreeSet::new())).join("\n") + "\n";
    crate::testutil::assert_golden(&root.join("src/xfrm/golden/domain-isolation.txt"), &got);
}

#[test]
fn off_has_no_policies() {
    assert!(
        policies(&isolation(IsolationMode::Off, &["10.0.0.0/8"], &["dns"]), &dynamic(), &BTreeSet::new()).is_empty()
    );
}

#[test]
fn every_mode_holds_outbound_until_an_sa_and_inbound_takes_any_sa() {
    // (`required` everywhere: a first packet waits in the policy's queue; the
    // modes that fall back do it with soft SAs, never with a `use` template.)
    let level = Level::Required;
    for mode in [
        IsolationMode::Request,
        IsolationMode::SecureRequest,
        IsolationMode::Boundary,
        IsolationMode::Require,
        IsolationMode::RequireEncryption,
    ] {
        let all = policies(&isolation(mode, &["10.0.0.0/8", "fd00::/8"], &[]), &DynState::default(), &BTreeSet::new());
        for remote in ["10.0.0.0/8", "fd00::/8"] {
            let out = find(&all, Dir::Out, remote);
            assert_eq!(out.action, Action::Esp { reqid: REQID, level }, "{mode:?}");
            let any = Prefix::any(remote.contains('.'));
            assert_eq!(out.selector.src, any);
            let inbound = find(&all, Dir::In, remote);
            assert_eq!(inbound.action, Action::Esp { reqid: INBOUND_REQID, level: Level::Use }, "{mode:?}");
            assert_eq!(inbound.selector.dst, any);
        }
        // 2 per secure subnet, 10 for neighbour discovery.
        assert_eq!(all.len(), 14, "{mode:?}: {:#?}", text(&all));
    }
}

#[test]
fn neighbour_discovery_is_clear_both_ways_before_everything() {
    let all = policies(
        &isolation(IsolationMode::Require, &["::/0", "10.0.0.0/8"], &[]),
        &DynState::default(),
        &BTreeSet::new(),
    );
    let nd: Vec<&Policy> = all.iter().filter(|p| p.selector.proto == Some(58)).collect();
    assert_eq!(nd.len(), 10);
    for t in 133..=137 {
        for dir in [Dir::In, Dir::Out] {
            let p = nd.iter().find(|p| p.selector.icmp_type == Some(t) && p.dir == dir).expect("one per type and way");
            assert_eq!(p.action, Action::Clear);
            assert_eq!((p.selector.src, p.selector.dst), (Prefix::any(false), Prefix::any(false)));
            assert_eq!(p.priority, *BAND.start());
        }
    }
    assert!(all.iter().filter(|p| p.selector.proto.is_none()).all(|p| p.priority > *BAND.start()));
}

#[test]
fn exemptions_by_prefix_and_by_keyword_are_clear_both_ways() {
    let i =
        isolation(IsolationMode::Require, &["10.0.0.0/8", "fd00::/8"], &["10.0.0.0/28", "dns", "local-subnet", "wins"]);
    let all = policies(&i, &dynamic(), &BTreeSet::new());
    for remote in ["10.0.0.0/28", "10.0.0.53/32", "fd00::53/128", "192.168.1.0/24"] {
        for dir in [Dir::In, Dir::Out] {
            assert_eq!(find(&all, dir, remote).action, Action::Clear, "{dir:?} {remote}");
        }
    }
    // wins has no address now: nothing for it. 10 ND + 2 x (2 secure + 4 exempt).
    assert_eq!(all.len(), 22, "{:#?}", text(&all));
    // Without the keywords' addresses, only the prefix exemption stays.
    let bare = policies(&i, &DynState::default(), &BTreeSet::new());
    assert_eq!(bare.len(), 16, "{:#?}", text(&bare));
}

#[test]
fn the_more_specific_prefix_is_preferred_and_an_equal_exemption_wins() {
    let i = isolation(
        IsolationMode::Require,
        &["10.0.0.0/8", "10.1.1.0/26", "fd00::/8"],
        &["10.1.1.0/24", "fd00::/8", "10.0.0.0/8"],
    );
    let all = policies(&i, &DynState::default(), &BTreeSet::new());
    for dir in [Dir::In, Dir::Out] {
        let wide = find(&all, dir, "10.0.0.0/8");
        let exempt = find(&all, dir, "10.1.1.0/24");
        let narrow = find(&all, dir, "10.1.1.0/26");
        assert!(narrow.priority < exempt.priority && exempt.priority < wide.priority);
        // One policy per selector: the exemption equal to a secure subnet replaced it.
        assert_eq!(wide.action, Action::Clear);
        assert_eq!(find(&all, dir, "fd00::/8").action, Action::Clear);
        assert!(matches!(narrow.action, Action::Esp { .. }));
    }
    let mut keys: Vec<_> = all.iter().map(Policy::key).collect();
    keys.dedup();
    assert_eq!(keys.len(), all.len());
}

#[test]
fn an_exempt_keyword_beats_every_secure_subnet() {
    // As in nftables: the DNS server stays in clear even inside a secure /128 of its own.
    let i = isolation(IsolationMode::Require, &["10.0.0.53/32", "fd00::53/128"], &["dns"]);
    let all = policies(&i, &dynamic(), &BTreeSet::new());
    for (dir, remote) in [(Dir::Out, "10.0.0.53/32"), (Dir::In, "fd00::53/128")] {
        assert_eq!(find(&all, dir, remote).action, Action::Clear);
    }
    let i = isolation(IsolationMode::Require, &["192.168.1.0/26"], &["local-subnet"]);
    let all = policies(&i, &dynamic(), &BTreeSet::new());
    assert!(find(&all, Dir::Out, "192.168.1.0/24").priority < find(&all, Dir::Out, "192.168.1.0/26").priority);
}

#[test]
fn every_priority_is_in_the_band_and_a_longer_prefix_always_comes_first() {
    // 10.0.0.0/32 and every prefix that holds it, the same for fd00::.
    let network = |addr: u128, bits: u32, len: u32| addr & !(u128::MAX.checked_shr(128 - bits + len).unwrap_or(0));
    let mut secure: Vec<String> =
        (0..=32).map(|len| format!("{}/{len}", Ipv4Addr::from(network(0x0a00_0000, 32, len) as u32))).collect();
    secure.extend((0..=128).map(|len| format!("{}/{len}", Ipv6Addr::from(network(0xfd00 << 112, 128, len)))));
    let secure: Vec<&str> = secure.iter().map(String::as_str).collect();
    let exempt = ["10.0.0.0/16", "fd00::/64"];
    let all = policies(&isolation(IsolationMode::Require, &secure, &exempt), &DynState::default(), &BTreeSet::new());
    assert!(all.iter().all(|p| BAND.contains(&p.priority)));
    for dir in [Dir::In, Dir::Out] {
        let remote = |p: &Policy| if dir == Dir::Out { p.selector.dst } else { p.selector.src };
        let mine: Vec<&Policy> = all.iter().filter(|p| p.dir == dir && p.selector.proto.is_none()).collect();
        for a in &mine {
            for b in &mine {
                let (ra, rb) = (remote(a), remote(b));
                if ra.addr.is_ipv4() == rb.addr.is_ipv4() && ra.len > rb.len {
                    assert!(a.priority < b.priority, "{a} should come before {b}");
                }
            }
        }
    }
}

#[test]
fn a_keyword_address_that_is_a_range_becomes_prefixes() {
    let mut d = DynState::default();
    let range = parse_addr_range("10.0.0.1-10.0.0.6").unwrap();
    d.values
        .insert((Keyword::Wins, true), vec![Entry { interface: None, addresses: range, source: "smb.conf".into() }]);
    let all = policies(&isolation(IsolationMode::Request, &["10.0.0.0/8"], &["wins"]), &d, &BTreeSet::new());
    let outs: Vec<String> = all
        .iter()
        .filter(|p| p.dir == Dir::Out && p.action == Action::Clear && p.selector.proto.is_none())
        .map(|p| p.selector.dst.to_string())
        .collect();
    assert_eq!(outs, ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]);
}

#[test]
fn a_soft_sa_is_a_clear_host_policy_ahead_of_its_secure_subnet() {
    let i = isolation(IsolationMode::SecureRequest, &["10.0.0.0/8", "fd00::/8"], &[]);
    let soft: BTreeSet<std::net::IpAddr> = ["10.1.2.3".parse().unwrap(), "fd00::7".parse().unwrap()].into();
    let all = policies(&i, &DynState::default(), &soft);
    for (host, subnet) in [("10.1.2.3/32", "10.0.0.0/8"), ("fd00::7/128", "fd00::/8")] {
        for dir in [Dir::Out, Dir::In] {
            let p = find(&all, dir, host);
            assert_eq!(p.action, Action::Clear);
            assert!(p.priority < find(&all, dir, subnet).priority, "{host} {dir:?}");
        }
    }
    assert_eq!(all.len(), 14 + 4, "{:#?}", text(&all));
}

#[test]
fn the_outbound_policy_of_a_peer_is_the_most_preferred_that_holds_it() {
    let i = isolation(IsolationMode::SecureRequest, &["10.0.0.0/8", "fd00::/8"], &["10.0.0.0/28", "dns"]);
    let soft: BTreeSet<std::net::IpAddr> = ["10.1.2.3".parse().unwrap()].into();
    let all = policies(&i, &dynamic(), &soft);
    let action = |a: &str| crate::xfrm::outbound(&all, a.parse().unwrap()).map(|p| p.action);
    let esp = Some(Action::Esp { reqid: REQID, level: Level::Required });
    assert_eq!(action("10.200.0.1"), esp);
    assert_eq!(action("fd00::99"), esp);
    assert_eq!(action("10.0.0.9"), Some(Action::Clear), "exempt prefix");
    assert_eq!(action("10.0.0.53"), Some(Action::Clear), "exempt keyword (dns)");
    assert_eq!(action("10.1.2.3"), Some(Action::Clear), "soft SA");
    assert_eq!(action("192.0.2.1"), None, "outside the secure subnets");
    assert_eq!(action("fe80::1"), None);
}
