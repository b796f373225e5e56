//! charon's IKE and CHILD SAs (`list-sas`), shown as Windows shows main mode
//! and quick mode SAs: the peer and its certificate identity, the mode, SPIs,
//! algorithms, traffic and lifetimes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::vici::Vici;

/// One IKE SA as charon reports it (every value is text in VICI; the fields
/// Ringfence shows).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct IkeSa {
    #[serde(default)]
    pub name: String,
    pub uniqueid: Option<String>,
    pub state: Option<String>,
    pub local_host: Option<String>,
    pub local_id: Option<String>,
    pub remote_host: Option<String>,
    pub remote_id: Option<String>,
    pub initiator: Option<String>,
    /// The responder's IKE SPI, zeros until the responder answered.
    #[serde(default, skip_serializing)]
    pub responder_spi: Option<String>,
    pub encr_alg: Option<String>,
    pub integ_alg: Option<String>,
    pub prf_alg: Option<String>,
    pub dh_group: Option<String>,
    pub established: Option<String>,
    pub rekey_time: Option<String>,
    #[serde(default)]
    pub child_sas: BTreeMap<String, ChildSa>,
    /// The groups of the connection the peer got (Ringfence's, not charon's).
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ChildSa {
    pub name: Option<String>,
    pub reqid: Option<String>,
    pub state: Option<String>,
    pub mode: Option<String>,
    pub protocol: Option<String>,
    pub spi_in: Option<String>,
    pub spi_out: Option<String>,
    pub encr_alg: Option<String>,
    pub encr_keysize: Option<String>,
    pub integ_alg: Option<String>,
    pub bytes_in: Option<String>,
    pub packets_in: Option<String>,
    pub bytes_out: Option<String>,
    pub packets_out: Option<String>,
    pub rekey_time: Option<String>,
    pub life_time: Option<String>,
    pub install_time: Option<String>,
    #[serde(default)]
    pub local_ts: Vec<String>,
    #[serde(default)]
    pub remote_ts: Vec<String>,
}

/// Every IKE SA, named.
pub async fn list(client: &mut Vici) -> Result<Vec<IkeSa>, String> {
    let events: Vec<BTreeMap<String, IkeSa>> = client.stream("list-sas", "list-sa", &()).await?;
    Ok(events.into_iter().flatten().map(|(name, sa)| IkeSa { name, ..sa }).collect())
}
