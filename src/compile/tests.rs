//! Golden tests of the generated ruleset (a reviewer reads the nftables JSON in
//! the diff; `UPDATE_GOLDEN=1 cargo test` rewrites them) and unit tests of the
//! layout's properties.

use std::path::{Path, PathBuf};

use super::*;
use crate::explain::{Decider, Explanation, Packet};
use crate::policy::load_text;
use crate::policy::values::Keyword;

/// `explain` of a packet that names no group, which cannot fail.
fn explain(p: &Policy, c: &Compiled, direction: Direction, packet: &Packet) -> Explanation {
    crate::explain::explain(p, c, direction, packet).unwrap_or_else(|e| panic!("{e}"))
}

fn compile_default(p: &Policy) -> Result<Compiled, Diagnostics> {
    compile(p, &DynState::default())
}

/// The policy of `text` alone: these tests are about the sets of its rules, so
/// the core networking group is off (its own tests say `with_core`).
fn policy(text: &str) -> Policy {
    with_core(&format!("{text}\nsettings:\n  core-networking: false\n"))
}

fn with_core(text: &str) -> Policy {
    load_text(&[(PathBuf::from("test.yaml"), text.to_string())]).unwrap_or_else(|d| panic!("{d}"))
}

fn golden(policy_file: &Path, golden_file: &Path) {
    let text = std::fs::read_to_string(policy_file).unwrap();
    let name = PathBuf::from(policy_file.file_name().unwrap());
    let p = load_text(&[(name, text)]).unwrap_or_else(|d| panic!("{d}"));
    let c = compile(&p, &DynState::default()).unwrap_or_else(|d| panic!("{d}"));
    let got = serde_json::to_string_pretty(&c.table.replace()).unwrap() + "\n";
    crate::testutil::assert_golden(golden_file, &got);
}

#[test]
fn shipped_policies_match_their_golden_rulesets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let goldens = root.join("src/compile/golden");
    let mut files = vec![root.join("policies/default.yaml")];
    let mut examples: Vec<PathBuf> =
        std::fs::read_dir(root.join("policies/examples")).unwrap().map(|e| e.unwrap().path()).collect();
    examples.sort();
    files.extend(examples);
    for f in files {
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        golden(&f, &goldens.join(format!("{stem}.json")));
    }
}

fn sets_named<'a>(c: &'a Compiled, prefix: &str) -> Vec<&'a Set> {
    c.table.sets.iter().filter(|s| s.name.starts_with(prefix)).collect()
}

#[test]
fn rules_of_one_shape_share_one_set() {
    let mut text = String::from("rules:\n");
    for i in 0..500 {
        text += &format!("  - {{ name: r{i}, direction: in, action: block, protocol: tcp, remote-addresses: [\"10.0.{}.{}\"], local-ports: [{}] }}\n", i / 250, i % 250, 1000 + i);
    }
    let c = compile_default(&policy(&text)).unwrap();
    assert_eq!(c.table.sets.len(), 1);
    assert_eq!(c.table.sets[0].elems.len(), 500);
    assert!(!c.table.sets[0].interval, "exact values go to a hash set");
    assert_eq!(c.table.sets[0].key, vec![nft::KeyType::InetProto, nft::KeyType::Ipv4Addr, nft::KeyType::InetService]);
    // One lookup in the public inbound chain, plus the default.
    let chain = c.table.chains.iter().find(|ch| ch.name == "in_public").unwrap();
    assert_eq!(chain.rules.len(), 2);
}

#[test]
fn overlapping_rules_become_disjoint_elements_with_the_same_union() {
    let p = policy(
        "rules:\n\
         - { name: wide, direction: in, action: allow, protocol: tcp, remote-addresses: [\"10.0.0.0/8\"], local-ports: [22] }\n\
         - { name: inside, direction: in, action: allow, protocol: tcp, remote-addresses: [\"10.1.0.0/16\"], local-ports: [\"20-80\"] }\n",
    );
    let c = compile(&p, &DynState::default()).unwrap();
    let elems = &c.table.sets[0].elems;
    for (i, a) in elems.iter().enumerate() {
        for b in &elems[i + 1..] {
            assert!(
                !a.ranges.iter().zip(b.ranges.iter()).all(|(x, y)| x.0 <= y.1 && y.0 <= x.1),
                "{a:?} overlaps {b:?}"
            );
        }
    }
    // Where both rules match, the element (and its counter) belongs to one of them.
    for (addr, port, want) in
        [("10.9.9.9", 22, "wide"), ("10.1.2.3", 22, "wide|inside"), ("10.1.2.3", 80, "inside"), ("10.2.0.1", 80, "")]
    {
        let pkt =
            Packet { protocol: 6, remote: Some(addr.parse().unwrap()), local_port: Some(port), ..Default::default() };
        let e = explain(&p, &c, Direction::In, &pkt);
        match e.decided_by {
            Decider::Rule { name, .. } => assert!(want.split('|').any(|w| w == name), "{addr}:{port}: {name}"),
            other => assert_eq!(want, "", "{addr}:{port} decided by {other:?}"),
        }
    }
}

#[test]
fn block_beats_allow_whatever_the_order() {
    for (first, second) in [("allow", "block"), ("block", "allow")] {
        let p = policy(&format!(
            "rules:\n\
             - {{ name: a, direction: in, action: {first}, protocol: tcp, local-ports: [443] }}\n\
             - {{ name: b, direction: in, action: {second}, protocol: tcp, local-ports: [443] }}\n"
        ));
        let c = compile(&p, &DynState::default()).unwrap();
        let pkt = Packet {
            protocol: 6,
            remote: Some("192.0.2.1".parse().unwrap()),
            local_port: Some(443),
            ..Default::default()
        };
        assert_eq!(explain(&p, &c, Direction::In, &pkt).verdict, Verdict::Block);
        let chain = c.table.chains.iter().find(|ch| ch.name == "in_public").unwrap();
        let first_lookup = match &chain.rules[0].stmts[0] {
            Stmt::InSet(_, set) => set.clone(),
            other => panic!("{other:?}"),
        };
        assert!(first_lookup.starts_with("in_block"), "blocks are looked up first: {first_lookup}");
    }
}

#[test]
fn profiles_get_their_own_chains_and_sets() {
    let p = policy(
        "profiles:\n  domain: { interfaces: [\"eth*\"], inbound: allow }\n  private: { interfaces: [wg0] }\n\
         rules:\n\
         - { name: dom-block, direction: in, action: block, protocol: udp, local-ports: [53], profiles: [domain] }\n\
         - { name: all-ssh, direction: in, action: allow, protocol: tcp, local-ports: [22] }\n",
    );
    let c = compile(&p, &DynState::default()).unwrap();
    let names: Vec<&str> = c.table.chains.iter().map(|ch| ch.name.as_str()).collect();
    for want in ["in_domain", "in_private", "in_public", "out_domain", "input", "output"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert_eq!(sets_named(&c, "in_block_domain").len(), 1);
    let udp53 = |iface: &str| Packet {
        protocol: 17,
        remote: Some("192.0.2.1".parse().unwrap()),
        local_port: Some(53),
        interface: Some(iface.into()),
        ..Default::default()
    };
    let e = explain(&p, &c, Direction::In, &udp53("eth1"));
    assert_eq!((e.verdict, e.profile), (Verdict::Block, ProfileKind::Domain));
    let e = explain(&p, &c, Direction::In, &udp53("wg0"));
    assert_eq!(
        (e.verdict, e.profile, e.decided_by),
        (Verdict::Block, ProfileKind::Private, Decider::ProfileDefault { profile: ProfileKind::Private })
    );
    let e = explain(
        &p,
        &c,
        Direction::In,
        &Packet { protocol: 17, local_port: Some(54), interface: Some("eth0".into()), ..Default::default() },
    );
    assert_eq!(e.verdict, Verdict::Allow, "domain's inbound default is allow");
}

#[test]
fn interface_wildcards_stay_wildcards_when_rules_overlap() {
    let p = policy(
        "rules:\n\
         - { name: any-eth, direction: in, action: allow, protocol: tcp, interfaces: [\"eth*\"], local-ports: [\"1-100\"] }\n\
         - { name: eth0, direction: in, action: allow, protocol: tcp, interfaces: [eth0], local-ports: [\"50-200\"] }\n",
    );
    let c = compile(&p, &DynState::default()).unwrap();
    let json = serde_json::to_string(&c.table.replace()).unwrap();
    assert!(json.contains("\"eth*\"") && json.contains("\"eth0\""), "{json}");
    for (iface, port, allowed) in [("eth0", 150, true), ("eth1", 150, false), ("eth1", 60, true), ("eth0", 60, true)] {
        let pkt = Packet { protocol: 6, local_port: Some(port), interface: Some(iface.into()), ..Default::default() };
        assert_eq!(explain(&p, &c, Direction::In, &pkt).verdict == Verdict::Allow, allowed, "{iface}:{port}");
    }
}

#[test]
fn a_rule_with_both_ip_versions_gets_a_set_per_version() {
    let p = policy(
        "rules:\n- { name: r, direction: in, action: block, remote-addresses: [\"10.0.0.0/8\", \"fd00::/8\"] }\n",
    );
    let c = compile(&p, &DynState::default()).unwrap();
    let keys: Vec<Vec<nft::KeyType>> = c.table.sets.iter().map(|s| s.key.clone()).collect();
    assert_eq!(keys, vec![vec![nft::KeyType::Ipv4Addr], vec![nft::KeyType::Ipv6Addr]]);
}

#[test]
fn disabled_rules_compile_to_nothing_and_logged_rules_jump_to_a_log_chain() {
    let p = policy(
        "rules:\n\
         - { name: off, direction: in, action: allow, protocol: tcp, local-ports: [1], enabled: false }\n\
         - { name: logged, direction: out, action: block, protocol: udp, remote-ports: [9], log: true }\n",
    );
    let c = compile(&p, &DynState::default()).unwrap();
    assert_eq!(c.table.sets.len(), 1);
    assert_eq!(c.table.sets[0].elems[0].tag, 1);
    let chain = c.table.chains.iter().find(|ch| ch.name == "out_public").unwrap();
    assert_eq!(chain.rules[0].stmts[1], Stmt::Verdict(nft::Verdict::Goto("log_out_block".into())));
    assert!(c.table.chains.iter().any(|ch| ch.name == "log_out_block"));
}

#[test]
fn users_match_the_socket_owner_outbound() {
    let p = policy("rules:\n- { name: u, direction: out, action: block, users: [0, 65534], protocol: tcp }\n");
    let c = compile(&p, &DynState::default()).unwrap();
    let out = |uid| Packet {
        protocol: 6,
        remote: Some("192.0.2.1".parse().unwrap()),
        remote_port: Some(80),
        uid,
        ..Default::default()
    };
    assert_eq!(explain(&p, &c, Direction::Out, &out(Some(65534))).verdict, Verdict::Block);
    assert_eq!(explain(&p, &c, Direction::Out, &out(Some(1000))).verdict, Verdict::Allow);
    assert_eq!(explain(&p, &c, Direction::Out, &out(None)).verdict, Verdict::Allow, "no socket, no owner");
}

#[test]
fn a_rule_that_multiplies_to_too_many_elements_is_an_error() {
    let ports: Vec<String> = (1..=1100).map(|p| p.to_string()).collect();
    let addrs: Vec<String> = (0..1000).map(|i| format!("\"10.0.{}.{}\"", i / 256, i % 256)).collect();
    let p = policy(&format!(
        "rules:\n- {{ name: big, direction: in, action: allow, protocol: tcp, local-ports: [{}], remote-addresses: [{}] }}\n",
        ports.join(","),
        addrs.join(",")
    ));
    let err = compile(&p, &DynState::default()).unwrap_err().to_string();
    assert!(err.starts_with("test.yaml:2:3: rule \"big\" expands to 1100000 set elements"), "{err}");
}

fn dyn_state(entries: &[(Keyword, Option<&str>, &str)]) -> DynState {
    let mut s = DynState::default();
    for (k, iface, addr) in entries {
        let a = crate::policy::values::parse_addr_range(addr).unwrap();
        let e = crate::dynamic::Entry { interface: iface.map(str::to_string), addresses: a, source: "test".into() };
        s.values.entry((*k, a.is_v4())).or_default().push(e);
    }
    s
}

#[test]
fn keywords_are_looked_up_in_dynamic_sets_that_follow_the_host() {
    let p = policy(
        "rules:\n\
         - { name: gw-dns, direction: in, action: allow, protocol: udp, local-ports: [53], remote-addresses: [default-gateway, \"192.0.2.53\"] }\n\
         - { name: lan-ssh, direction: in, action: allow, protocol: tcp, local-ports: [22], remote-addresses: [local-subnet] }\n",
    );
    let state =
        dyn_state(&[(Keyword::DefaultGateway, None, "10.0.0.1"), (Keyword::LocalSubnet, Some("eth0"), "10.0.0.0/24")]);
    let c = compile(&p, &state).unwrap();
    let names: Vec<&str> = c.table.sets.iter().map(|s| s.name.as_str()).collect();
    for want in ["dyn_default_gateway4", "dyn_default_gateway6", "dyn_local_subnet4", "dyn_local_subnet6"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let udp53 = |from: &str| Packet {
        protocol: 17,
        remote: Some(from.parse().unwrap()),
        local_port: Some(53),
        interface: Some("eth0".into()),
        ..Default::default()
    };
    let ssh = |from: &str, iface: &str| Packet {
        protocol: 6,
        remote: Some(from.parse().unwrap()),
        local_port: Some(22),
        interface: Some(iface.into()),
        ..Default::default()
    };
    let verdict = |c: &Compiled, pkt| explain(&p, c, Direction::In, &pkt).verdict;
    assert_eq!(verdict(&c, udp53("10.0.0.1")), Verdict::Allow, "the gateway");
    assert_eq!(verdict(&c, udp53("192.0.2.53")), Verdict::Allow, "the literal address beside the keyword");
    assert_eq!(verdict(&c, udp53("10.0.0.2")), Verdict::Block);
    assert_eq!(verdict(&c, ssh("10.0.0.7", "eth0")), Verdict::Allow, "on eth0's subnet");
    assert_eq!(verdict(&c, ssh("10.0.0.7", "eth1")), Verdict::Block, "the same address arriving on another interface");

    // The host changes: only the dynamic sets change, and they are the only ones to send.
    let moved = dyn_state(&[
        (Keyword::DefaultGateway, None, "10.0.0.254"),
        (Keyword::LocalSubnet, Some("eth0"), "10.0.0.0/24"),
    ]);
    let updates = c.dynamic_updates(&moved);
    assert_eq!(updates.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["dyn_default_gateway4"]);
    let recompiled = compile(&p, &moved).unwrap();
    let mut updated = c.clone();
    updated.replace_sets(updates);
    assert_eq!(updated, recompiled, "updating elements gives what compiling anew would");
    assert_eq!(verdict(&updated, udp53("10.0.0.254")), Verdict::Allow);
    assert_eq!(verdict(&updated, udp53("10.0.0.1")), Verdict::Block);
}

#[test]
fn core_networking_is_looked_up_first_and_no_rule_overrides_it() {
    let text = "rules:\n\
         - { name: no-icmpv6, direction: in, action: block, protocol: icmpv6 }\n\
         - { name: no-dhcp, direction: in, action: block, protocol: udp, local-ports: [68] }\n";
    let p = with_core(text);
    let c = compile(&p, &DynState::default()).unwrap();
    let chain = c.table.chains.iter().find(|ch| ch.name == "in_public").unwrap();
    let lookups: Vec<&str> = chain
        .rules
        .iter()
        .filter_map(|r| match r.stmts.first() {
            Some(Stmt::InSet(_, set)) => Some(set.as_str()),
            _ => None,
        })
        .collect();
    let first_own = lookups.iter().position(|s| !s.starts_with("core_")).unwrap();
    assert!(first_own > 0 && lookups[first_own..].iter().all(|s| !s.starts_with("core_")), "{lookups:?}");
    let icmpv6 = |t: u8, from: &str| Packet {
        protocol: IPPROTO_ICMPV6,
        icmp_type: Some(t),
        remote: Some(from.parse().unwrap()),
        ..Default::default()
    };
    let ns = explain(&p, &c, Direction::In, &icmpv6(135, "fd00::1"));
    assert_eq!(ns.verdict, Verdict::Allow);
    assert!(
        matches!(&ns.decided_by, Decider::CoreNetworking { name, .. } if name == "ipv6-neighbour-discovery-in"),
        "{ns:?}"
    );
    let ptb = explain(&p, &c, Direction::In, &icmpv6(2, "2001:db8::1"));
    assert!(matches!(&ptb.decided_by, Decider::CoreNetworking { name, .. } if name == "icmpv6-errors-in"), "{ptb:?}");
    // A router advertisement from a global address is not one (RFC 4861 6.1.2).
    let ra = explain(&p, &c, Direction::In, &icmpv6(134, "2001:db8::1"));
    assert!(matches!(&ra.decided_by, Decider::Rule { name, .. } if name == "no-icmpv6"), "{ra:?}");
    assert_eq!(explain(&p, &c, Direction::In, &icmpv6(134, "fe80::1")).verdict, Verdict::Allow);
    let dhcp = Packet { protocol: 17, remote_port: Some(67), local_port: Some(68), ..Default::default() };
    assert!(matches!(explain(&p, &c, Direction::In, &dhcp).decided_by, Decider::CoreNetworking { .. }));
    let echo = explain(&p, &c, Direction::In, &icmpv6(128, "fd00::1"));
    assert!(matches!(&echo.decided_by, Decider::Rule { name, .. } if name == "no-icmpv6"), "not core: {echo:?}");

    // Off: the rules decide, and no core set is left.
    let off = policy(text);
    let c = compile(&off, &DynState::default()).unwrap();
    assert!(c.table.sets.iter().all(|s| !s.name.starts_with("core_")));
    assert_eq!(explain(&off, &c, Direction::In, &icmpv6(135, "fd00::1")).verdict, Verdict::Block);
}

#[test]
fn services_compile_per_protocol_without_crossing_ports() {
    let p = policy(
        "rules:\n\
         - { name: web-dns, direction: in, action: allow, services: [https, dns] }\n\
         - { name: out-web, direction: out, action: allow, services: [http] }\n",
    );
    let c = compile(&p, &DynState::default()).unwrap();
    let tcp_or_udp = |protocol: u8, port: u16| Packet { protocol, local_port: Some(port), ..Default::default() };
    let inbound = |pkt: Packet| explain(&p, &c, Direction::In, &pkt).verdict;
    assert_eq!(inbound(tcp_or_udp(6, 443)), Verdict::Allow);
    assert_eq!(inbound(tcp_or_udp(6, 53)), Verdict::Allow);
    assert_eq!(inbound(tcp_or_udp(17, 53)), Verdict::Allow);
    assert_eq!(inbound(tcp_or_udp(17, 443)), Verdict::Block, "https is tcp only");
    assert_eq!(inbound(tcp_or_udp(6, 80)), Verdict::Block);
    // Outbound, a service's port is the remote end's.
    let set = c.table.sets.iter().find(|s| s.name.starts_with("out_allow")).unwrap();
    assert_eq!(set.key, [crate::nft::KeyType::InetProto, crate::nft::KeyType::InetService]);
    let chain = c.table.chains.iter().find(|ch| ch.name == "out_public").unwrap();
    assert!(
        matches!(&chain.rules[0].stmts[0], Stmt::InSet(Expr::Concat(k), _) if k[1] == Expr::Payload("th", "dport")),
        "{:?}",
        chain.rules[0]
    );
}

fn running(units: &[(&str, u64)]) -> crate::units::Units {
    let unit = |&(name, id): &(&str, u64)| {
        let path = format!("system.slice/{name}");
        (name.to_string(), crate::units::UnitCgroup { id, path })
    };
    crate::units::Units(units.iter().map(unit).collect())
}

#[test]
fn unit_rules_look_up_the_socket_cgroup_at_every_level() {
    let p = policy(
        "rules:\n- { name: web, direction: in, action: allow, protocol: tcp, local-ports: [80], units: [a.service, b.service] }\n\
         - { name: out, direction: out, action: block, units: [b.service] }\n",
    );
    let c = compile_with_units(&p, &DynState::default(), &running(&[("a.service", 7), ("c.service", 9)])).unwrap();
    let set = c.set("in_allow_all_unit_proto_lport");
    assert_eq!(
        (set.key.as_slice(), set.interval),
        (&[nft::KeyType::Cgroup, nft::KeyType::InetProto, nft::KeyType::InetService][..], true)
    );
    assert_eq!(set.elems.iter().map(|e| e.ranges.to_vec()).collect::<Vec<_>>(), [vec![(7, 7), (6, 6), (80, 80)]]);
    assert_eq!(set.cgroups.iter().collect::<Vec<_>>(), [(&7, &"system.slice/a.service".to_string())]);
    // No unit of the rule runs: its set is there, empty, and looked up all the same.
    assert!(c.set("out_block_all_unit").elems.is_empty());
    let chain = c.table.chains.iter().find(|ch| ch.name == "in_public").unwrap();
    let levels: Vec<u8> = (chain.rules.iter().flat_map(|r| &r.stmts))
        .filter_map(|s| match s {
            Stmt::InSet(Expr::Concat(parts), _) => match parts[0] {
                Expr::SocketCgroup(level) => Some(level),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(levels, [1, 2, 3, 4]);
    let web = |unit: &str| Packet {
        protocol: 6,
        remote: Some("192.0.2.1".parse().unwrap()),
        local_port: Some(80),
        unit: Some(unit.into()),
        ..Default::default()
    };
    assert_eq!(explain(&p, &c, Direction::In, &web("a.service")).verdict, Verdict::Allow);
    assert_eq!(explain(&p, &c, Direction::In, &web("b.service")).verdict, Verdict::Block, "b is not running");
    assert_eq!(explain(&p, &c, Direction::In, &web("c.service")).verdict, Verdict::Block, "c is not the rule's");
    assert!(c.table.needs_text());
    assert!(!compile_default(&policy("rules:\n- { name: w, direction: in, action: allow }\n"))
        .unwrap()
        .table
        .needs_text());
}

#[test]
fn units_that_start_stop_and_restart_change_the_unit_sets_only() {
    let p = policy("rules:\n- { name: web, direction: out, action: allow, units: [a.service, b.service] }\n");
    let before = running(&[("a.service", 7)]);
    let c = compile_with_units(&p, &DynState::default(), &before).unwrap();
    assert!(c.unit_updates(&p, &before).is_empty());
    // a restarted (a new id), b started, an unrelated unit: one set changes.
    let after = running(&[("a.service", 8), ("b.service", 3), ("x.service", 5)]);
    let updates = c.unit_updates(&p, &after);
    assert_eq!(updates.len(), 1);
    let ids: Vec<u128> = updates[0].elems.iter().map(|e| e.ranges[0].0).collect();
    assert_eq!(ids, [3, 8]);
    assert_eq!(updates[0].cgroups.len(), 2);
    // a's old id has no path left to delete it by: the set is refilled.
    let diff = nft::SetDiff::between(c.set(&updates[0].name), &updates[0]);
    assert!(diff.flush && diff.delete.is_empty() && diff.add.len() == 2, "{diff:?}");
    // Only started: elements added, nothing deleted, no flush.
    let started = c.unit_updates(&p, &running(&[("a.service", 7), ("b.service", 3)]));
    let diff = nft::SetDiff::between(c.set(&started[0].name), &started[0]);
    assert!(!diff.flush && diff.add.len() == 1, "{diff:?}");
    // Whole compiles agree with the updates.
    let whole = compile_with_units(&p, &DynState::default(), &after).unwrap();
    assert_eq!(whole.set(&updates[0].name), &updates[0]);
}
