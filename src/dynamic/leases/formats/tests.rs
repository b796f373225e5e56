use super::*;

fn epoch(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

const DHCLIENT: &str = r#"default-duid "\000\001\000\001-\254\301\272RT\000\022\0044";
lease {
  interface "eth0";
  fixed-address 192.0.2.50;
  option subnet-mask 255.255.255.0;
  option routers 192.0.2.1;
  option dhcp-lease-time 600;
  option dhcp-message-type 5;
  option domain-name-servers 192.0.2.1;
  option dhcp-server-identifier 192.0.2.1;
  option domain-name "example.org";
  renew 2 2026/11/24 10:05:00;
  rebind 2 2026/11/24 10:08:45;
  expire 2 2026/11/24 10:10:00;
}
lease {
  interface "eth1";
  fixed-address 198.51.100.9;
  option dhcp-server-identifier 198.51.100.1;
  option netbios-name-servers 198.51.100.7,198.51.100.8;
  option domain-name-servers 198.51.100.53, 198.51.100.54;
  expire never;
}
lease {
  interface "eth0";
  fixed-address 192.0.2.50;
  option dhcp-server-identifier 192.0.2.2; # a comment { with a brace
  expire epoch 1795600000; # Sat Nov 26 ...
}
lease6 {
  interface "eth0";
  ia-na 1f:23:45:67 {
    starts 1700000000;
    iaaddr 2001:db8::50 {
      starts 1700000000;
      preferred-life 3600;
    }
  }
  option dhcp6.server-id 0:1:0:1:2d:ac:c1:ba:52:54:0:12:4:34;
}
"#;

#[test]
fn dhclient_keeps_the_last_lease_of_each_interface() {
    let leases = parse("dhclient.leases", DHCLIENT.as_bytes(), epoch(0)).unwrap();
    assert_eq!(
        leases,
        [
            Lease {
                interface: "eth1".into(),
                server: "198.51.100.1".parse().unwrap(),
                wins: vec!["198.51.100.7".parse().unwrap(), "198.51.100.8".parse().unwrap()],
                dns: vec!["198.51.100.53".parse().unwrap(), "198.51.100.54".parse().unwrap()],
                expires: None,
            },
            Lease {
                interface: "eth0".into(),
                server: "192.0.2.2".parse().unwrap(),
                wins: vec![],
                // The earlier lease's servers are not this one's.
                dns: vec![],
                expires: Some(epoch(1795600000))
            },
        ]
    );
    // The date form is UTC.
    let first = &DHCLIENT[..DHCLIENT.find("lease {\n  interface \"eth1\"").unwrap()];
    let leases = parse("x.leases", first.as_bytes(), epoch(0)).unwrap();
    assert_eq!(leases[0].expires, Some(humantime::parse_rfc3339("2026-11-24T10:10:00Z").unwrap()));
}

#[test]
fn dhclient_files_that_are_not_whole() {
    let cut = |n: usize| parse("x.leases", &DHCLIENT.as_bytes()[..n], epoch(0));
    assert!(cut(DHCLIENT.find("option domain-name \"").unwrap() + 22).unwrap_err().contains("unterminated string"));
    assert!(cut(DHCLIENT.find("renew").unwrap()).unwrap_err().contains("the block opened on line 2 is not closed"));
    assert!(cut(DHCLIENT.find("lease {").unwrap() + 3).unwrap_err().contains("ends inside a statement"));
    assert!(parse("x.leases", b"", epoch(0)).unwrap_err().contains("empty"));
    assert!(parse("x.leases", b"lease { }", epoch(0)).unwrap_err().contains("names no interface"));
    assert!(parse("x.leases", b"}", epoch(0)).unwrap_err().contains("unexpected '}'"));
    assert!(parse("x.leases", b"lease { interface \"e\"; option dhcp-server-identifier 1.2.3; }", epoch(0))
        .unwrap_err()
        .contains("\"1.2.3\" is not an IPv4 address"));
    // A database of DHCPv6 leases only, or only a DUID: no server, no error.
    assert_eq!(parse("dhclient6.leases", b"default-duid \"\\000\";\n", epoch(0)).unwrap(), []);
}

#[test]
fn systemd_networkd_and_network_manager() {
    let networkd = "# This is private data. Do not parse.\nADDRESS=192.0.2.50\nNETMASK=255.255.255.0\n\
                    ROUTER=192.0.2.1\nSERVER_ADDRESS=192.0.2.1\nLIFETIME=3600\nDNS=192.0.2.1 192.0.2.3\n";
    let l = parse("2", networkd.as_bytes(), epoch(0)).unwrap();
    assert_eq!(
        l,
        [Lease {
            interface: "link 2".into(),
            server: "192.0.2.1".parse().unwrap(),
            wins: vec![],
            dns: vec!["192.0.2.1".parse().unwrap(), "192.0.2.3".parse().unwrap()],
            expires: None
        }]
    );
    let nm_old = "ADDRESS=10.1.1.5\nSERVER_ADDRESS=10.1.1.1\n";
    let name = "internal-6c6a4e1e-4bd5-3b1a-a1b7-4bbd2c1e2f0b-enp0s3.lease";
    assert_eq!(parse(name, nm_old.as_bytes(), epoch(0)).unwrap()[0].interface, "enp0s3");
    assert_eq!(parse(name, nm_old.as_bytes(), epoch(0)).unwrap()[0].dns, Vec::<Ipv4Addr>::new());
    // NetworkManager's internal client since 1.20 keeps only the address.
    let nm = "# This is private data. Do not parse.\nADDRESS=10.1.1.5\n";
    assert!(parse(name, nm.as_bytes(), epoch(0)).unwrap_err().contains("no SERVER_ADDRESS"));
    assert!(parse("3", b"SERVER_ADDRESS=10.1.1\n", epoch(0)).unwrap_err().contains("not an IPv4 address"));
}

#[test]
fn network_manager_names_that_are_not_uuid_dash_interface() {
    let text = b"SERVER_ADDRESS=10.1.1.1\n";
    let interface = |name: &str| parse(name, text, epoch(0)).unwrap()[0].interface.clone();
    // A two-byte character at bytes 36-37, where the dash after the UUID goes:
    // byte 37 is inside it (this panicked).
    let straddling = format!("internal-{}é-eth0.lease", "a".repeat(36));
    assert_eq!(interface(&straddling), straddling);
    let multibyte = format!("internal-{}ß", "ü".repeat(18));
    assert_eq!(interface(&multibyte), multibyte);
    // Not a UUID before the dash, or nothing after it: the name as it is.
    let not_uuid = format!("internal-{}-eth0.lease", "z".repeat(36));
    assert_eq!(interface(&not_uuid), not_uuid);
    assert_eq!(
        interface("internal-6c6a4e1e-4bd5-3b1a-a1b7-4bbd2c1e2f0b-"),
        "internal-6c6a4e1e-4bd5-3b1a-a1b7-4bbd2c1e2f0b-"
    );
    // Any interface name after a real UUID, multibyte too.
    assert_eq!(interface("internal-6c6a4e1e-4bd5-3b1a-a1b7-4bbd2c1e2f0b-wlän0.lease"), "wlän0");
}

#[test]
fn dhclient_nesting_is_bounded() {
    let deep = format!("{}{}", "x {".repeat(100_000), "}".repeat(100_000));
    assert!(parse("x.leases", deep.as_bytes(), epoch(0)).unwrap_err().contains("nested more than 8 deep"));
    let eight = format!("{}{}", "x {".repeat(8), "}".repeat(8));
    assert_eq!(parse("x.leases", eight.as_bytes(), epoch(0)).unwrap(), []);
}

#[test]
fn a_huge_bad_value_is_quoted_at_most_80_characters() {
    let huge = format!("lease {{ interface \"e\"; option dhcp-server-identifier {}; }}", "9".repeat(1 << 20));
    let e = parse("x.leases", huge.as_bytes(), epoch(0)).unwrap_err();
    assert!(e.len() < 200, "{} bytes: {}", e.len(), &e[..200]);
    assert!(e.contains(&format!("\"{}…\" (1048576 characters) is not an IPv4 address", "9".repeat(80))), "{e}");
}

/// A DHCP ACK as dhcpcd stores it: BOOTP header, magic cookie, options.
fn dhcp_message(options: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = 2; // BOOTREPLY
    m[16..20].copy_from_slice(&[192, 0, 2, 50]); // yiaddr
    m.extend_from_slice(&MAGIC_COOKIE);
    m.extend_from_slice(options);
    m
}

#[test]
fn dhcpcd_raw_message() {
    let ack = dhcp_message(&[
        53, 1, 5, // message type ACK
        0, // pad
        54, 4, 192, 0, 2, 1, // server identifier
        51, 4, 0, 0, 0x0e, 0x10, // lease time 3600 s
        44, 8, 192, 0, 2, 7, 192, 0, 2, 8, // NetBIOS name servers
        6, 4, 192, 0, 2, 53, // domain name servers
        255,
    ]);
    let l = parse("eth0.lease", &ack, epoch(1000)).unwrap();
    assert_eq!(
        l,
        [Lease {
            interface: "eth0".into(),
            server: "192.0.2.1".parse().unwrap(),
            wins: vec!["192.0.2.7".parse().unwrap(), "192.0.2.8".parse().unwrap()],
            dns: vec!["192.0.2.53".parse().unwrap()],
            expires: Some(epoch(4600)),
        }]
    );
    let infinite = dhcp_message(&[54, 4, 192, 0, 2, 1, 51, 4, 255, 255, 255, 255, 255]);
    assert_eq!(parse("eth0.lease", &infinite, epoch(1000)).unwrap()[0].expires, None);
    assert!(parse("eth0.lease", &ack[..ack.len() - 5], epoch(0)).unwrap_err().contains("runs past the end"));
    assert!(parse("eth0.lease", &ack[..ack.len() - 1], epoch(0)).unwrap_err().contains("without an end option"));
    assert!(parse("eth0.lease", &dhcp_message(&[54, 3, 1, 2, 3, 255]), epoch(0)).unwrap_err().contains("option 54"));
    assert!(parse("eth0.lease", &dhcp_message(&[255]), epoch(0)).unwrap_err().contains("no server identifier"));
    assert!(parse("eth0.lease", &[0xff; 100], epoch(0)).unwrap_err().contains("neither text nor a DHCP message"));
}

#[test]
fn smb_conf_wins_server() {
    let text = "; comment\n[global]\n   workgroup = EXAMPLE\n   wins server = 10.0.0.1\n\
                [homes]\n   wins server = 10.9.9.9\n[GLOBAL]\n   WINSServer = eth0:10.0.0.2, \\\n     10.0.0.3\n";
    assert_eq!(smb_wins(text).unwrap(), ["10.0.0.2".parse::<Ipv4Addr>().unwrap(), "10.0.0.3".parse().unwrap()]);
    assert!(smb_wins("[printers]\nload printers = yes\n").unwrap().is_empty());
    assert_eq!(
        smb_wins("[global]\nwins server = wins.example.org\n").unwrap_err(),
        "line 2: wins server: \"wins.example.org\" is not an IPv4 address"
    );
}

/// Found by fuzzing (`fuzz.rs`): a date of any length was quoted whole, and
/// an epoch past what `SystemTime` holds panicked.
#[test]
fn expiries_that_cannot_be_read() {
    let lease =
        |expire: &str| format!("lease {{ interface \"e\"; option dhcp-server-identifier 10.0.0.1; expire {expire}; }}");
    let e = parse("x.leases", lease(&format!("0 {} 10:00:00", "9".repeat(1 << 20))).as_bytes(), epoch(0)).unwrap_err();
    assert!(
        e.starts_with(&format!("cannot read the expiry \"{}…\" (1048585 characters): ", "9".repeat(80))),
        "{}",
        &e[..200]
    );
    let e = parse("x.leases", lease("epoch 18446744073709551615").as_bytes(), epoch(0)).unwrap_err();
    assert_eq!(e, "\"18446744073709551615\" is not a time in seconds");
    let latest = parse("x.leases", lease("epoch 9223372036854775807").as_bytes(), epoch(0)).unwrap();
    assert_eq!(latest[0].expires, Some(epoch(i64::MAX as u64)));
}
