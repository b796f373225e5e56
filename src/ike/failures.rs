//! Why a negotiation this host started failed, read from charon's log as VICI
//! streams it (the `log` event: `ikesa-uniqueid`, `msg`). charon reports a
//! failed IKE_SA in no other event: `ike-updown` is for SAs that were up.
//!
//! The peer of an IKE_SA comes from charon's "initiating IKE_SA NAME[ID] to
//! ADDRESS"; its failure from the messages below (strongSwan 5.9), each of
//! which names no peer:
//!
//! | message | reason |
//! |---|---|
//! | `received AUTHENTICATION_FAILED notify error` (the peer refused this host) | auth-failed |
//! | `no trusted ... public key found for ...`, `constraint check failed`, `no issuer certificate found` (this host refused the peer) | auth-failed |
//! | `received NO_PROPOSAL_CHOSEN notify error`, `... no CHILD_SA built`, `no acceptable proposal found` | no-proposal |
//!
//! A peer that never answers is not reported: the daemon's timer sees it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::conn::CONN;

/// Why a peer went on in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// No SA within `fallback`: the peer did not answer IKE in time.
    Timeout,
    /// A certificate was refused, by the peer or by this host.
    AuthFailed,
    /// The peer accepted none of the proposals.
    NoProposal,
}

impl Reason {
    pub const ALL: [Reason; 3] = [Reason::Timeout, Reason::AuthFailed, Reason::NoProposal];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::AuthFailed => "auth-failed",
            Reason::NoProposal => "no-proposal",
        }
    }
}

/// One `log` event (the fields Ringfence reads).
#[derive(Debug, Deserialize)]
pub struct Log {
    #[serde(rename = "ikesa-uniqueid")]
    pub uniqueid: Option<String>,
    pub msg: String,
}

/// More IKE_SAs than this being initiated at once is a storm: the oldest are
/// forgotten (their failures then show as timeouts).
const MAX_TRACKED: usize = 4096;

/// The IKE_SAs this host initiated under Ringfence's connections, by unique id.
#[derive(Debug, Default)]
pub struct Failures {
    initiated: BTreeMap<u64, IpAddr>,
}

impl Failures {
    /// Reads one log message; returns the peer and the reason when it says
    /// that a negotiation with a Ringfence peer failed.
    pub fn read(&mut self, log: &Log) -> Option<(IpAddr, Reason)> {
        let id: u64 = log.uniqueid.as_deref()?.parse().ok()?;
        if let Some(peer) = initiating(&log.msg) {
            if self.initiated.len() >= MAX_TRACKED {
                self.initiated.pop_first();
            }
            self.initiated.insert(id, peer);
            return None;
        }
        let reason = reason(&log.msg)?;
        Some((self.initiated.remove(&id)?, reason))
    }
}

/// The peer of "initiating IKE_SA ringfence[3] to 10.0.0.2" (Ringfence's
/// connections only).
fn initiating(msg: &str) -> Option<IpAddr> {
    let rest = msg.strip_prefix("initiating IKE_SA ")?;
    let (name, addr) = rest.split_once(" to ")?;
    name.starts_with(CONN).then_some(())?;
    addr.trim().parse().ok()
}

fn reason(msg: &str) -> Option<Reason> {
    if msg.contains("AUTHENTICATION_FAILED")
        || (msg.starts_with("no trusted ") && msg.contains("public key found"))
        || msg.starts_with("constraint check failed")
        || msg.starts_with("no issuer certificate found")
    {
        Some(Reason::AuthFailed)
    } else if msg.contains("NO_PROPOSAL_CHOSEN") || msg.contains("no acceptable proposal found") {
        Some(Reason::NoProposal)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(id: &str, msg: &str) -> Log {
        Log { uniqueid: Some(id.into()), msg: msg.into() }
    }

    #[test]
    fn a_failure_names_the_peer_its_ike_sa_was_initiated_to() {
        let mut f = Failures::default();
        assert_eq!(f.read(&log("3", "initiating IKE_SA ringfence[3] to 10.90.0.4")), None);
        assert_eq!(f.read(&log("3", "establishing CHILD_SA ringfence{2}")), None);
        assert_eq!(
            f.read(&log("3", "received AUTHENTICATION_FAILED notify error")),
            Some(("10.90.0.4".parse().unwrap(), Reason::AuthFailed))
        );
        // Once: the IKE_SA is gone.
        assert_eq!(f.read(&log("3", "received AUTHENTICATION_FAILED notify error")), None);
        f.read(&log("4", "initiating IKE_SA ringfence[4] to fd00::5"));
        assert_eq!(
            f.read(&log("4", "received NO_PROPOSAL_CHOSEN notify error")),
            Some(("fd00::5".parse().unwrap(), Reason::NoProposal))
        );
        f.read(&log("5", "initiating IKE_SA ringfence[5] to 10.90.0.6"));
        let refused = "no trusted ECDSA public key found for 'C=XX, O=Other, CN=st'";
        assert_eq!(f.read(&log("5", refused)).map(|(_, r)| r), Some(Reason::AuthFailed));
    }

    #[test]
    fn failures_of_other_ike_sas_are_not_ours() {
        let mut f = Failures::default();
        // The peer started it (no "initiating"), or another connection did.
        assert_eq!(f.read(&log("7", "received AUTHENTICATION_FAILED notify error")), None);
        f.read(&log("8", "initiating IKE_SA office[8] to 10.1.1.1"));
        assert_eq!(f.read(&log("8", "received NO_PROPOSAL_CHOSEN notify error")), None);
        assert_eq!(f.read(&Log { uniqueid: None, msg: "initiating IKE_SA ringfence[9] to 10.1.1.1".into() }), None);
    }
}
