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
    let l = load(&iso("secure-request"), creds(), 0x5246);
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
    let l = load(&iso("require-encryption"), creds(), 1);
    assert_eq!(l.conns[CONN].children[CONN].esp_proposals, ["aes256gcm16"]);
}

#[test]
fn a_revocation_list_is_loaded_after_the_certificates() {
    let l = load(&iso("require"), Credentials { crl: Some(b"CRL".to_vec()), ..creds() }, 1);
    let certs: Vec<_> = l.certs.iter().map(|c| (c.kind, c.flag, c.data.as_slice())).collect();
    assert_eq!(certs, [("X509", "CA", &b"CA"[..]), ("X509", "NONE", b"CERT"), ("X509_CRL", "NONE", b"CRL")]);
}
