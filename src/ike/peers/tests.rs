use std::net::IpAddr;
use std::path::PathBuf;

use super::*;
use crate::ike::conn::{load, Credentials};
use crate::policy::load_text;

fn scanners_and_admins() -> Load {
    let text = "isolation:\n  mode: require\n  secure-subnets: [10.0.0.0/8, \"fd00::/8\"]\n  \
                identity: { ca: /ca, certificate: /c, private-key: /k }\n\
                groups:\n  scanners: { subject: \"C=XX, O=Example, OU=Scanners, CN=*\" }\n  \
                admins: { subject: \"C=XX, O=Example, OU=*, CN=admin\" }\n";
    let policy = load_text(&[(PathBuf::from("t.yaml"), text.to_string())]).unwrap_or_else(|d| panic!("{d}"));
    let creds = Credentials { ca: b"CA".to_vec(), certificate: b"C".to_vec(), private_key: b"K".to_vec(), crl: None };
    load(&policy.isolation, &policy.group_connections, creds)
}

fn sa(name: &str, state: &str, host: &str, id: &str) -> IkeSa {
    let text = |s: &str| Some(s.to_string());
    IkeSa {
        name: name.into(),
        uniqueid: text("1"),
        state: text(state),
        local_host: None,
        local_id: None,
        remote_host: text(host),
        remote_id: text(id),
        initiator: text("yes"),
        responder_spi: None,
        encr_alg: None,
        integ_alg: None,
        prf_alg: None,
        dh_group: None,
        established: None,
        rekey_time: None,
        child_sas: Default::default(),
        groups: Vec::new(),
    }
}

fn addrs(peers: &GroupPeers, group: &str) -> Vec<IpAddr> {
    peers.get(group).into_iter().flatten().copied().collect()
}

#[test]
fn an_initiated_sa_puts_its_peer_in_the_groups_of_its_subject() {
    let l = scanners_and_admins();
    let sas = [
        sa(CONN, "ESTABLISHED", "10.0.0.7", "C=XX, O=Example, OU=Scanners, CN=s1"),
        sa(CONN, "REKEYING", "fd00::9", "C=XX, O=Example, OU=Scanners, CN=admin"),
        sa(CONN, "ESTABLISHED", "10.0.0.8", "C=XX, O=Example, OU=Members, CN=m1"),
    ];
    let peers = group_peers(&l, &sas);
    assert_eq!(addrs(&peers, "scanners"), ["10.0.0.7".parse::<IpAddr>().unwrap(), "fd00::9".parse().unwrap()]);
    assert_eq!(addrs(&peers, "admins"), ["fd00::9".parse::<IpAddr>().unwrap()], "in both groups");
    assert_eq!(peers.len(), 2, "a member in no group is in no set: {peers:?}");
}

#[test]
fn only_authenticated_sas_of_the_isolation_connection_count() {
    let l = scanners_and_admins();
    let scanner = "C=XX, O=Example, OU=Scanners, CN=s1";
    let sas = [
        // Not yet authenticated: the identity is what the host asked for.
        sa(CONN, "CONNECTING", "10.0.0.7", scanner),
        sa(CONN, "DELETING", "10.0.0.8", scanner),
        // The peer started it: its group connection's reqid says its groups.
        sa("ringfence-scanners", "ESTABLISHED", "10.0.0.9", scanner),
        // Not an address, not a subject.
        sa(CONN, "ESTABLISHED", "%any", scanner),
        sa(CONN, "ESTABLISHED", "10.0.0.10", "%any"),
    ];
    assert_eq!(group_peers(&l, &sas), GroupPeers::new());
}
