//! The control socket's protocol: one JSON request per line, one JSON response
//! per line. Shared by the daemon, the CLI and the metrics endpoint; the
//! answers' types are in [`answers`].

pub mod answers;

use std::io;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

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
    /// What the staged rules would have decided otherwise.
    Staged,
    Explain {
        direction: Direction,
        packet: Packet,
        /// Beside the enforced decision, the staged rules'.
        #[serde(default)]
        staged: bool,
    },
    /// Re-read the policy files and apply them; with `confirm_secs`, roll back
    /// unless `Confirm` arrives in time.
    Apply {
        confirm_secs: Option<u64>,
    },
    Confirm,
    /// The metrics endpoint's: `Stats` as an HTTP response in Prometheus'
    /// text format. Never read from the socket.
    #[serde(skip)]
    Metrics,
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

/// A request and where its answer goes: to the connection's task of the
/// control socket or of the metrics endpoint.
pub type Call = (Request, oneshot::Sender<Answer>);

/// Writes a whole answer to the client as it is produced.
pub type Writer = Box<dyn FnOnce(&mut dyn io::Write) -> io::Result<()> + Send>;

/// The daemon's answer to a request: a small one whole, or a writer (a read
/// of a snapshot) that a thread of the connection's runs, so that a
/// 100,000-rule answer is neither held whole nor made on the loop.
pub enum Answer {
    Whole(Response),
    Stream(Writer),
    /// A read that lists every rule, written as `Stream` is, at a lower
    /// priority: on a loaded machine it yields the CPU to the event loop and
    /// to small reads, which then do not wait for it.
    Bulk(Writer),
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
        // The metrics endpoint's request is its own.
        assert!(serde_json::from_str::<Request>(r#"{"request":"metrics"}"#).is_err());
    }
}
