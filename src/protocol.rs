//! The control socket's protocol: one JSON request per line, one JSON response
//! per line. Shared by the daemon and the CLI.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::explain::Packet;
use crate::policy::Direction;

/// Default path of the control socket.
pub const DEFAULT_SOCKET: &str = "/run/ringfence/ringfence.sock";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case", rename_all_fields = "kebab-case")]
pub enum Request {
    State,
    Rules,
    Profiles,
    Policy,
    Explain { direction: Direction, packet: Packet },
    /// Re-read the policy files and apply them; with `confirm_secs`, roll back
    /// unless `Confirm` arrives in time.
    Apply { confirm_secs: Option<u64> },
    Confirm,
}

impl Request {
    /// Requests that change the firewall; only root may send them.
    pub fn mutates(&self) -> bool {
        matches!(self, Request::Apply { .. } | Request::Confirm)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Response {
    Ok(Value),
    Error(String),
}
