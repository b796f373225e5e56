//! What Ringfence loads into charon for isolation, as VICI messages: the CA and
//! host certificates (and the CA's revocation list), the private key, the
//! isolation connection and one connection per group connection of the policy
//! (`policy::groups`). Pure: built from the policy and the credential files'
//! contents (docs/isolation.md).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::net::format_addr_range;
use crate::policy::groups::{DnPattern, GroupConn};
use crate::policy::isolation::Isolation;
use crate::policy::raw::IsolationMode;
use crate::xfrm::{GROUP_PRIORITY, REQID};

/// The name of the isolation connection (and of its child) in charon; group
/// connections are named `ringfence-GROUP+GROUP...`, after their groups.
pub const CONN: &str = "ringfence";

/// The charon connection of `g`.
pub fn group_conn_name(g: &GroupConn) -> String {
    format!("{CONN}-{}", g.groups.iter().map(String::as_str).collect::<Vec<_>>().join("+"))
}

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
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
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

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Auth {
    pub auth: &'static str,
    /// The identity the peer's certificate subject must match (a group's pattern).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certs: Vec<serde_bytes::ByteBuf>,
    /// Only peers whose certificate this CA signed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cacerts: Vec<serde_bytes::ByteBuf>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Child {
    pub mode: &'static str,
    pub esp_proposals: Vec<&'static str>,
    /// Static: the xfrm policies' templates name it.
    pub reqid: u32,
    /// Ringfence owns the kernel's policies; charon installs SAs only (and,
    /// for a group connection, the per-peer policies of its SAs).
    pub policies: bool,
    /// The priority of charon's own policies (group connections).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
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
    /// The group connections, by name.
    pub groups: Vec<(String, GroupConn)>,
}

impl Load {
    /// The connection charon gives, as responder, a peer whose certificate
    /// subject is `subject`: of the group connections whose pattern matches
    /// it, the one with the fewest wildcards (the closure of the patterns makes
    /// it the one within every other), else the isolation connection.
    pub fn conn_for(&self, subject: &str) -> &str {
        self.group_conn_for(subject).map_or(CONN, |(name, _)| name.as_str())
    }

    /// The groups of the peer whose certificate subject is `subject`: those
    /// of its connection.
    pub fn groups_of(&self, subject: &str) -> Option<&BTreeSet<String>> {
        self.group_conn_for(subject).map(|(_, g)| &g.groups)
    }

    fn group_conn_for(&self, subject: &str) -> Option<&(String, GroupConn)> {
        let subject = DnPattern::parse(subject).ok()?;
        let matching: Vec<&(String, GroupConn)> =
            self.groups.iter().filter(|(_, g)| subject.within(&g.pattern)).collect();
        matching.iter().find(|(_, g)| matching.iter().all(|(_, h)| g.pattern.within(&h.pattern))).copied()
    }
}

impl std::fmt::Debug for LoadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoadKey {{ type: {:?}, .. }}", self.kind)
    }
}

/// The messages for `iso` (whose mode is not `off`) and the policy's group
/// connections.
pub fn load(iso: &Isolation, groups: &[GroupConn], creds: Credentials) -> Load {
    let esp: &[&str] =
        if iso.mode.value == IsolationMode::RequireEncryption { &ESP_ENCRYPTION } else { &ESP_INTEGRITY };
    let secs = |s: u64| format!("{s}s");
    let child = Child {
        mode: "transport",
        esp_proposals: esp.to_vec(),
        reqid: REQID,
        policies: false,
        priority: None,
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
        local: Auth { auth: "pubkey", id: None, certs: vec![creds.certificate.clone().into()], cacerts: Vec::new() },
        remote: Auth { auth: "pubkey", id: None, certs: Vec::new(), cacerts: vec![creds.ca.clone().into()] },
        children: BTreeMap::from([(CONN.to_string(), child)]),
    };
    let names: Vec<String> = groups.iter().map(group_conn_name).collect();
    let mut conns: BTreeMap<String, Conn> =
        names.iter().zip(groups).map(|(name, g)| (name.clone(), group(&conn, name, g))).collect();
    conns.insert(CONN.to_string(), conn);
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
        conns,
        groups: names.into_iter().zip(groups.iter().cloned()).collect(),
    }
}

/// The connection of a group connection, from the isolation connection: the
/// same, for peers whose certificate subject matches the group's pattern.
///
/// As responder, charon gives a peer the connection whose identity matches
/// its subject with the fewest wildcards, so a group member that starts the
/// negotiation gets this one, and its CHILD_SA the group's reqid, which the
/// nft rules match (`ipsec in reqid`). Its child does not trap (the kernel's
/// ACQUIREs name the isolation connection's reqid), and charon installs the
/// per-peer policies of its SAs itself, at [`GROUP_PRIORITY`], ahead of
/// Ringfence's subnet policies: an outbound template matches only SAs of its
/// own reqid, so without them the host's replies to the member would ask for
/// a second SA, of the isolation connection's reqid.
fn group(conn: &Conn, name: &str, g: &GroupConn) -> Conn {
    let mut conn = conn.clone();
    conn.remote.id = Some(g.pattern.to_string());
    let mut child = conn.children.remove(CONN).expect("the isolation connection has its child");
    child.reqid = g.reqid;
    child.policies = true;
    child.priority = Some(GROUP_PRIORITY);
    child.start_action = "none";
    child.dpd_action = "clear";
    child.close_action = "none";
    conn.children = BTreeMap::from([(name.to_string(), child)]);
    conn
}

#[cfg(test)]
mod tests;
