//! What Ringfence loads into charon for isolation, as VICI messages: the CA and
//! host certificates, the private key, and one connection. Pure: built from the
//! policy and the credential files' contents (docs/isolation.md).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::policy::isolation::Isolation;
use crate::policy::raw::IsolationMode;
use crate::policy::values::format_addr_range;

/// The name of the connection (and of its child) in charon.
pub const CONN: &str = "ringfence";

/// ESP with integrity only (Windows' ESP-null with SHA-256) first, an AEAD
/// second, so that a host in any mode can talk to one that requires encryption
/// (the responder picks the first proposal it accepts).
const ESP_INTEGRITY: [&str; 2] = ["null-sha256", "aes256gcm16"];
const ESP_ENCRYPTION: [&str; 1] = ["aes256gcm16"];

/// Seconds between liveness checks of an idle IKE SA.
const DPD_DELAY: u64 = 30;

/// The credentials as read from their files (PEM or DER). The key is secret:
/// `Debug` does not show it, and nothing logs these messages.
pub struct Credentials {
    pub ca: Vec<u8>,
    pub certificate: Vec<u8>,
    pub private_key: Vec<u8>,
    /// The CA's revocation list, when the policy names one.
    pub crl: Option<Vec<u8>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

/// `load-cert`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct LoadCert {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub flag: &'static str,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// `load-key`.
#[derive(Serialize, PartialEq, Eq)]
pub struct LoadKey {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// One connection of `load-conn` (swanctl.conf's `connections.<name>`).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Conn {
    pub version: u32,
    pub remote_addrs: Vec<String>,
    pub rekey_time: String,
    /// Dead peer detection: an IKE SA whose peer is gone (its charon
    /// restarted) is noticed and closed, with its CHILD SAs.
    pub dpd_delay: String,
    pub local: Auth,
    pub remote: Auth,
    pub children: BTreeMap<String, Child>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Auth {
    pub auth: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certs: Vec<serde_bytes::ByteBuf>,
    /// Only peers whose certificate this CA signed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cacerts: Vec<serde_bytes::ByteBuf>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Child {
    pub mode: &'static str,
    pub esp_proposals: Vec<&'static str>,
    /// Static: the xfrm policies' templates name it.
    pub reqid: u32,
    /// Ringfence owns the kernel's policies; charon installs SAs only.
    pub policies: bool,
    /// Negotiate when the kernel asks (an ACQUIRE for `reqid`), and again when
    /// the peer is gone or closes.
    pub start_action: &'static str,
    pub dpd_action: &'static str,
    pub close_action: &'static str,
    pub rekey_time: String,
    pub inactivity: String,
}

/// Everything charon needs, in loading order.
#[derive(Debug, PartialEq, Eq)]
pub struct Load {
    pub certs: Vec<LoadCert>,
    pub key: LoadKey,
    pub conns: BTreeMap<String, Conn>,
}

impl std::fmt::Debug for LoadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoadKey {{ type: {:?}, .. }}", self.kind)
    }
}

/// The messages for `iso` (whose mode is not `off`).
pub fn load(iso: &Isolation, creds: Credentials, reqid: u32) -> Load {
    let esp: &[&str] =
        if iso.mode.value == IsolationMode::RequireEncryption { &ESP_ENCRYPTION } else { &ESP_INTEGRITY };
    let secs = |s: u64| format!("{s}s");
    let child = Child {
        mode: "transport",
        esp_proposals: esp.to_vec(),
        reqid,
        policies: false,
        start_action: "trap",
        dpd_action: "trap",
        close_action: "trap",
        rekey_time: secs(iso.child_lifetime.value),
        inactivity: secs(iso.idle_timeout.value),
    };
    let conn = Conn {
        version: 2,
        remote_addrs: iso.secure_subnets.value.iter().map(format_addr_range).collect(),
        rekey_time: secs(iso.ike_lifetime.value),
        dpd_delay: secs(DPD_DELAY),
        local: Auth { auth: "pubkey", certs: vec![creds.certificate.clone().into()], cacerts: Vec::new() },
        remote: Auth { auth: "pubkey", certs: Vec::new(), cacerts: vec![creds.ca.clone().into()] },
        children: BTreeMap::from([(CONN.to_string(), child)]),
    };
    let crl = creds.crl.map(|data| LoadCert { kind: "X509_CRL", flag: "NONE", data });
    Load {
        certs: [
            LoadCert { kind: "X509", flag: "CA", data: creds.ca },
            LoadCert { kind: "X509", flag: "NONE", data: creds.certificate },
        ]
        .into_iter()
        .chain(crl)
        .collect(),
        key: LoadKey { kind: "any", data: creds.private_key },
        conns: BTreeMap::from([(CONN.to_string(), conn)]),
    }
}

#[cfg(test)]
mod tests;
