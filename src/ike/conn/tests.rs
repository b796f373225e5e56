use std::path::PathBuf;

use super::*;
use crate::policy::load_text;

fn iso(mode: &str) -> Isolation {
    let text = format!(
        "isolation:\n  mode: {mode}\n  secure-subnets: [10.0.0.0/8, \"fd00::/8\"]\n  \
         identity: {{ ca: /ca, certificate: /c, private-key: /k }}\n  lifetimes: {{ ike: 2h, child: 1h, idle: 5m }}\n"
    );
    load_text(&[(PathBuf::from("t.yaml"), text)]).unwrap_or_else(|d| panic!("{d}")).isolation
}

fn creds() -> Credentials {
    Credentials { ca: b"CA".to_vec(), certificate: b"CERT".to_vec(), private_key: b"KEY".to_vec(), crl: None }
}

#[test]
fn the_connection_for_secure_request() {
    let l = load(&iso("secure-request"), &[], creds());
    let conn = &l.conns[CONN];
    assert_eq!(conn.remote_addrs, ["10.0.0.0/8", "fd00::/8"]);
    assert_eq!(conn.rekey_time, "7200s");
    assert_eq!(conn.local.certs, [serde_bytes::ByteBuf::from(b"CERT".to_vec())]);
    assert_eq!(conn.remote.cacerts, [serde_bytes::ByteBuf::from(b"CA".to_vec())]);
    let child = &conn.children[CONN];
    assert_eq!((child.mode, child.reqid, child.policies, child.start_action), ("transport", 0x5246, false, "trap"));
    assert_eq!(child.esp_proposals, ["null-sha256", "aes256gcm16"]);
    assert_eq!((child.rekey_time.as_str(), child.inactivity.as_str()), ("3600s", "300s"));
    assert_eq!(l.certs.iter().map(|c| c.flag).collect::<Vec<_>>(), ["CA", "NONE"]);
    assert_eq!(l.key.data, b"KEY");
    // The key never shows in a debug print.
    assert!(!format!("{l:?}").contains("KEY\""));
    assert!(!format!("{:?}", creds()).contains("KEY"));
}

#[test]
fn require_encryption_offers_only_an_aead() {
    let l = load(&iso("require-encryption"), &[], creds());
    assert_eq!(l.conns[CONN].children[CONN].esp_proposals, ["aes256gcm16"]);
}

#[test]
fn a_revocation_list_is_loaded_after_the_certificates() {
    let l = load(&iso("require"), &[], Credentials { crl: Some(b"CRL".to_vec()), ..creds() });
    let certs: Vec<_> = l.certs.iter().map(|c| (c.kind, c.flag, c.data.as_slice())).collect();
    assert_eq!(certs, [("X509", "CA", &b"CA"[..]), ("X509", "NONE", b"CERT"), ("X509_CRL", "NONE", b"CRL")]);
}

/// Two groups whose patterns intersect (a scanner named admin is in both).
fn scanners_and_admins() -> crate::policy::Policy {
    let text = "isolation:\n  mode: require\n  secure-subnets: [10.0.0.0/8]\n  \
                identity: { ca: /ca, certificate: /c, private-key: /k }\n\
                groups:\n  scanners: { subject: \"C=XX, O=Example, OU=Scanners, CN=*\" }\n  \
                admins: { subject: \"C=XX, O=Example, OU=*, CN=admin\" }\n";
    load_text(&[(PathBuf::from("t.yaml"), text.to_string())]).unwrap_or_else(|d| panic!("{d}"))
}

#[test]
fn one_connection_per_group_connection() {
    let policy = scanners_and_admins();
    let l = load(&policy.isolation, &policy.group_connections, creds());
    let names: Vec<&str> = l.conns.keys().map(String::as_str).collect();
    assert_eq!(names, ["ringfence", "ringfence-admins", "ringfence-admins+scanners", "ringfence-scanners"]);
    let base = &l.conns[CONN];
    for g in &policy.group_connections {
        let name = group_conn_name(g);
        let conn = &l.conns[&name];
        assert_eq!(conn.remote.id.as_deref(), Some(g.pattern.to_string().as_str()));
        // Everything else as the isolation connection: addresses, CA, proposals.
        assert_eq!(
            (&conn.remote_addrs, &conn.remote.cacerts, &conn.local),
            (&base.remote_addrs, &base.remote.cacerts, &base.local)
        );
        let child = &conn.children[&name];
        assert_eq!(
            (child.reqid, child.policies, child.priority, child.start_action),
            (g.reqid, true, Some(GROUP_PRIORITY), "none")
        );
        assert_eq!(child.esp_proposals, base.children[CONN].esp_proposals);
    }
    assert_eq!(
        l.conns["ringfence-admins+scanners"].remote.id.as_deref(),
        Some("C=XX, O=Example, OU=Scanners, CN=admin")
    );
}

#[test]
fn a_peer_s_connection_is_the_most_specific_group_s() {
    let policy = scanners_and_admins();
    let l = load(&policy.isolation, &policy.group_connections, creds());
    assert_eq!(l.conn_for("C=XX, O=Example, OU=Scanners, CN=s1"), "ringfence-scanners");
    assert_eq!(l.conn_for("C=XX, O=Example, OU=Scanners, CN=admin"), "ringfence-admins+scanners");
    assert_eq!(l.conn_for("C=XX, O=Example, OU=Finance, CN=admin"), "ringfence-admins");
    assert_eq!(l.conn_for("C=XX, O=Example, OU=Members, CN=m1"), CONN);
    // Another shape of subject (fewer attributes), or not a subject at all.
    assert_eq!(l.conn_for("O=Example, OU=Scanners, CN=s1"), CONN);
    assert_eq!(l.conn_for("10.0.0.1"), CONN);
}
