use super::*;
use crate::testutil::TempDir;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

fn dhclient_lease(interface: &str, server: &str, expire: &str) -> String {
    format!(
        "lease {{\n  interface \"{interface}\";\n  fixed-address 10.9.0.50;\n  option subnet-mask 255.255.255.0;\n  \
         option dhcp-server-identifier {server};\n  option netbios-name-servers 10.9.0.7, 10.9.0.8;\n  \
         option domain-name \"a; b {{ c\";\n  renew 2 2026/11/24 10:00:00;\n  expire {expire};\n}}\n"
    )
}

fn render(s: &DynState, k: Keyword) -> Vec<String> {
    s.entries(k, true)
        .iter()
        .map(|e| format!("{} <- {}", crate::net::format_addr_range(&e.addresses), e.source))
        .collect()
}

#[test]
fn sources_with_their_files_and_expiry() {
    let t = TempDir::new("leases");
    let dir = t.sub("dhcp");
    let old = dhclient_lease("eth0", "10.9.0.1", "3 2026/11/25 10:00:00");
    let new = dhclient_lease("eth0", "10.9.0.2", "epoch 1800000000");
    std::fs::write(dir.join("dhclient.eth0.leases"), old + &new).unwrap();
    std::fs::write(dir.join("not-a-lease.conf"), "garbage").unwrap();
    std::fs::write(t.0.join("smb.conf"), "[global]\n  WINS Server = 10.9.0.9\n").unwrap();
    let mut l = Leases::new(vec![dir.clone(), t.0.join("absent")], t.0.join("smb.conf"));
    let read = l.read(at(1_700_000_000));
    let s = read.state.unwrap();
    let file = dir.join("dhclient.eth0.leases").display().to_string();
    assert_eq!(render(&s, Keyword::Dhcp), [format!("10.9.0.2 <- server of the lease of eth0 in {file}")]);
    assert_eq!(
        render(&s, Keyword::Wins),
        [
            format!("10.9.0.7 <- WINS server (option 44) of the lease of eth0 in {file}"),
            format!("10.9.0.8 <- WINS server (option 44) of the lease of eth0 in {file}"),
            format!("10.9.0.9 <- wins server in {}", t.0.join("smb.conf").display()),
        ]
    );
    assert!(s.entries(Keyword::Dhcp, false).is_empty());
    assert_eq!(read.again_at, Some(at(1_800_000_000)));
    // Past its expiry the lease is gone, and nothing asks for another read.
    let later = l.read(at(1_800_000_001));
    assert!(later.state.unwrap().entries(Keyword::Dhcp, true).is_empty());
    assert_eq!(later.again_at, None);
}

#[test]
fn a_file_cut_short_or_a_vanished_directory_keeps_the_last_good_leases() {
    let t = TempDir::new("leases-bad");
    let dir = t.sub("dhcp");
    let text = dhclient_lease("eth0", "10.9.0.1", "never");
    std::fs::write(dir.join("a.leases"), &text).unwrap();
    let mut l = Leases::new(vec![dir.clone()], t.0.join("smb.conf"));
    let servers = |l: &mut Leases| render(&l.read(at(0)).state.unwrap(), Keyword::Dhcp).len();
    assert_eq!(servers(&mut l), 1);
    std::fs::write(dir.join("a.leases"), &text[..text.len() / 2]).unwrap();
    assert_eq!(servers(&mut l), 1);
    assert!(l.warned[&dir.join("a.leases")].contains("is not closed"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(servers(&mut l), 1);
    assert!(l.warned[&dir].contains("keeping the leases last read there"));
    // Back, without the file: the lease is gone.
    std::fs::create_dir(&dir).unwrap();
    assert_eq!(servers(&mut l), 0);
    assert!(l.warned.is_empty());
}

#[test]
fn watched_paths_and_the_changes_that_concern_them() {
    let t = TempDir::new("leases-dirs");
    let dir = t.sub("present");
    let (missing, file, smb) = (t.0.join("missing/leases"), t.0.join("file.lease"), t.0.join("smb.conf"));
    let l = Leases::new(vec![dir.clone(), missing.clone(), file.clone()], smb.clone());
    assert_eq!(l.paths(), [t.0.clone(), file.clone(), t.0.join("missing"), missing.clone(), dir.clone(), smb.clone()]);
    for path in [dir.join("dhclient.eth0.leases"), dir.join("2"), missing.clone(), file, smb] {
        assert!(l.concerns(&path), "{}", path.display());
    }
    // networkd's temporary file before its rename, the neighbours of watched files.
    for path in [dir.join(".#2abcdef"), t.0.join("other.lease"), t.0.join("missing/other")] {
        assert!(!l.concerns(&path), "{}", path.display());
    }
}

#[test]
fn one_server_of_two_leases_is_one_element() {
    let t = TempDir::new("leases-same");
    std::fs::write(t.0.join("a.leases"), dhclient_lease("eth0", "10.9.0.1", "never")).unwrap();
    std::fs::write(t.0.join("b.leases"), dhclient_lease("eth1", "10.9.0.1", "never")).unwrap();
    let s = Leases::new(vec![t.0.clone()], t.0.join("smb.conf")).read(at(0)).state.unwrap();
    assert_eq!(s.entries(Keyword::Dhcp, true).len(), 2);
    assert_eq!(crate::compile::keyword_sets::set(&s, Keyword::Dhcp, true).elems.len(), 1);
}

#[test]
fn each_unexpired_lease_names_its_links_name_servers() {
    let t = TempDir::new("leases-dns");
    let lease = |interface: &str, dns: &str, expire: &str| {
        dhclient_lease(interface, "10.9.0.1", expire)
            .replace("  expire", &format!("  option domain-name-servers {dns};\n  expire"))
    };
    let dhclient = lease("eth0", "10.9.1.53, 10.9.1.54", "epoch 1800000000")
        + &lease("eth1", "10.9.2.53", "epoch 1800000000")
        + &lease("eth2", "10.9.3.53", "epoch 1600000000");
    std::fs::write(t.0.join("dhclient.leases"), dhclient).unwrap();
    // networkd's file of link 1, lo in every network namespace; the same
    // server twice counts once.
    std::fs::write(t.0.join("1"), "ADDRESS=127.0.0.2\nSERVER_ADDRESS=127.0.0.1\nDNS=127.0.0.53 127.0.0.53\n").unwrap();
    let mut l = Leases::new(vec![t.0.clone()], t.0.join("smb.conf"));
    let s = l.read(at(1_700_000_000)).state.unwrap();
    let ips = |list: &[&str]| list.iter().map(|a| a.parse().unwrap()).collect::<Vec<IpAddr>>();
    let links: Vec<(&str, Vec<IpAddr>)> = s.link_dns.iter().map(|(i, d)| (i.as_str(), d.clone())).collect();
    // eth2's lease has expired.
    assert_eq!(
        links,
        [("eth0", ips(&["10.9.1.53", "10.9.1.54"])), ("eth1", ips(&["10.9.2.53"])), ("lo", ips(&["127.0.0.53"])),]
    );
    // Not the `dns` keyword's values: that set is resolv.conf's.
    assert!(s.entries(Keyword::Dns, true).is_empty());
    assert!(l.read(at(1_800_000_000)).state.unwrap().link_dns.keys().eq(["lo"]));
}

#[test]
fn the_links_name_servers_are_the_leases_sources_alone() {
    let resolv = |server: &str| {
        let mut s = DynState::default();
        s.push_host(Keyword::Dns, server.parse().unwrap(), "resolv.conf".into());
        (super::super::resolv::Resolv::KEYWORDS, s)
    };
    let leases = |server: &str| {
        let mut s = DynState::default();
        s.push_host(Keyword::Dhcp, "10.9.0.1".parse().unwrap(), "lease".into());
        s.link_dns.insert("eth0".into(), vec![server.parse().unwrap()]);
        (Leases::KEYWORDS, s)
    };
    let mut state = DynState::default();
    for (keywords, update) in [resolv("10.9.2.53"), leases("10.9.1.53"), resolv("10.9.2.54")] {
        state.replace(keywords, update);
    }
    // The resolvers' update keeps the links' servers, which stay out of `dns`.
    assert_eq!(state.link_dns["eth0"], ["10.9.1.53".parse::<IpAddr>().unwrap()]);
    assert_eq!(render(&state, Keyword::Dns), ["10.9.2.54 <- resolv.conf"]);
    let (keywords, update) = leases("10.9.1.54");
    state.replace(keywords, update);
    assert_eq!(state.link_dns["eth0"], ["10.9.1.54".parse::<IpAddr>().unwrap()]);
    assert_eq!(render(&state, Keyword::Dns), ["10.9.2.54 <- resolv.conf"]);
    state.replace(Leases::KEYWORDS, DynState::default());
    assert!(state.link_dns.is_empty());
}
