//! The control socket's protocol: one JSON request per line, one JSON response
//! per line. Shared by the daemon and the CLI.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::explain::Packet;
use crate::policy::Direction;

/// Default path of the control socket.
pub const DEFAULT_SOCKET: &str = "/run/ringfence/ringfence.sock";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Unknown keys are errors: a misspelt `confirm-secs` must not become a plain
// apply without its safety net.
#[serde(tag = "request", rename_all = "kebab-case", rename_all_fields = "kebab-case", deny_unknown_fields)]
pub enum Request {
    State,
    Rules,
    Profiles,
    Policy,
    Sets,
    /// charon's IKE and CHILD SAs.
    Sas,
    /// Counters of rules, defaults, applies, dynamic sets and the monitor.
    Stats,
    /// Keep the connection open: the answer, then the last `backlog` logged
    /// packets, then every new one, one JSON object per line.
    Monitor {
        #[serde(default)]
        backlog: usize,
    },
    Explain {
        direction: Direction,
        packet: Packet,
    },
    /// Re-read the policy files and apply them; with `confirm_secs`, roll back
    /// unless `Confirm` arrives in time.
    Apply {
        confirm_secs: Option<u64>,
    },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_kebab_case_and_strict() {
        let apply: Request = serde_json::from_str(r#"{"request":"apply","confirm-secs":60}"#).unwrap();
        assert_eq!(apply, Request::Apply { confirm_secs: Some(60) });
        let misspelt = serde_json::from_str::<Request>(r#"{"request":"apply","confirm_secs":60}"#).unwrap_err();
        assert!(
            misspelt.to_string().starts_with("unknown field `confirm_secs`, expected `confirm-secs`"),
            "{misspelt}"
        );
        let misspelt = r#"{"request":"explain","direction":"in","packet":{"protocol":6,"local_port":22}}"#;
        assert!(serde_json::from_str::<Request>(misspelt).is_err());
        let monitor: Request = serde_json::from_str(r#"{"request":"monitor"}"#).unwrap();
        assert_eq!(monitor, Request::Monitor { backlog: 0 });
        assert!(!monitor.mutates());
    }
}
