//! Windows' Secure Request at first contact: a packet to a secure-subnet peer
//! with no SA waits (in the xfrm policy's queue) while charon negotiates; if no
//! SA is up within `isolation.fallback`, or the negotiation failed before, the
//! peer gets a *soft SA*: a clear policy for that one address, so the waiting
//! packets and the rest of the conversation go in clear. The soft SA ends when
//! an SA with the peer comes up (a late negotiation: the traffic moves to ESP)
//! or after `lifetimes.idle` with no traffic; the next packet then tries IPsec
//! again. The `require` modes never fall back.
//!
//! A pure state machine: the daemon feeds it the kernel's ACQUIREs and SAs
//! (`xfrm::events`), charon's failures (`ike::failures`) and the time, and
//! puts [`FirstContact::soft_peers`] into the xfrm policies.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

pub use crate::ike::failures::Reason;

/// A soft SA, as `show sas` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SoftSa {
    pub peer: IpAddr,
    pub reason: Reason,
    /// Unix seconds.
    pub since: u64,
    /// Unix seconds: when it ends unless traffic goes on.
    pub expires: u64,
}

#[derive(Debug, Clone, Copy)]
enum Peer {
    /// Waiting for an SA since then; a failure charon reported meanwhile.
    Negotiating { since: Instant, failure: Option<Reason> },
    /// In clear since then (Unix seconds), for that reason; traffic last seen
    /// then (Unix seconds).
    Soft { reason: Reason, since: u64, last_used: u64 },
}

/// The settings of the policy that apply now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The mode falls back (`request`, `secure-request`, `boundary`).
    pub enabled: bool,
    pub fallback: Duration,
    /// `lifetimes.idle`.
    pub idle: Duration,
}

#[derive(Debug)]
pub struct FirstContact {
    settings: Settings,
    peers: BTreeMap<IpAddr, Peer>,
    /// Soft SAs made, by reason, since the daemon started.
    fallbacks: BTreeMap<Reason, u64>,
}

impl Default for FirstContact {
    fn default() -> Self {
        let settings =
            Settings { enabled: false, fallback: Duration::from_millis(500), idle: Duration::from_secs(300) };
        FirstContact { settings, peers: BTreeMap::new(), fallbacks: BTreeMap::new() }
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl FirstContact {
    /// The policy changed. Returns whether the soft SAs changed: a mode that
    /// no longer falls back ends them all (a `require` host sends nothing in
    /// clear, whatever it did before).
    pub fn configure(&mut self, settings: Settings) -> bool {
        self.settings = settings;
        if settings.enabled {
            return false;
        }
        let had = !self.soft_peers().is_empty();
        self.peers.clear();
        had
    }

    /// A packet to `peer` waits for an SA.
    pub fn acquire(&mut self, peer: IpAddr, now: Instant) {
        if self.settings.enabled {
            self.peers.entry(peer).or_insert(Peer::Negotiating { since: now, failure: None });
        }
    }

    /// charon gave up on `peer`: it falls back at the next [`Self::due`]
    /// (no reason to wait out `fallback`), or a soft SA learns why.
    pub fn failed(&mut self, peer: IpAddr, why: Reason) {
        match self.peers.get_mut(&peer) {
            Some(Peer::Negotiating { failure, .. }) => *failure = Some(why),
            Some(Peer::Soft { reason, .. }) if *reason == Reason::Timeout => *reason = why,
            _ => {}
        }
    }

    /// An SA between `a` and `b` is up: whichever is a peer here is protected
    /// now. Returns whether a soft SA ended.
    pub fn sa_up(&mut self, a: IpAddr, b: IpAddr) -> bool {
        [a, b].iter().filter_map(|p| self.peers.remove(p)).any(|p| matches!(p, Peer::Soft { .. }))
    }

    /// When [`Self::due`] has something to do next, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| match p {
                Peer::Negotiating { since, failure: None } => Some(*since + self.settings.fallback),
                Peer::Negotiating { since, failure: Some(_) } => Some(*since),
                Peer::Soft { .. } => None,
            })
            .min()
    }

    /// Negotiations that ran out of time or failed become soft SAs. Returns
    /// those peers, with the reason.
    pub fn due(&mut self, now: Instant, wall: SystemTime) -> Vec<(IpAddr, Reason)> {
        let fallback = self.settings.fallback;
        let mut fell_back = Vec::new();
        for (peer, p) in &mut self.peers {
            let Peer::Negotiating { since, failure } = *p else { continue };
            let reason = match failure {
                Some(why) => why,
                None if now >= since + fallback => Reason::Timeout,
                None => continue,
            };
            *self.fallbacks.entry(reason).or_default() += 1;
            *p = Peer::Soft { reason, since: unix(wall), last_used: unix(wall) };
            fell_back.push((*peer, reason));
        }
        fell_back
    }

    /// Ends the soft SAs with no traffic for `idle`; `last_used`: the newest
    /// use the kernel stamped on each peer's policies (Unix seconds). Returns
    /// whether any ended.
    pub fn expire(&mut self, last_used: &BTreeMap<IpAddr, u64>, wall: SystemTime) -> bool {
        let idle = self.settings.idle.as_secs();
        let now = unix(wall);
        let before = self.peers.len();
        self.peers.retain(|peer, p| match p {
            Peer::Soft { last_used: seen, .. } => {
                *seen = (*seen).max(last_used.get(peer).copied().unwrap_or(0));
                now < *seen + idle
            }
            Peer::Negotiating { .. } => true,
        });
        self.peers.len() != before
    }

    /// How often [`Self::expire`] should look: a tenth of `idle`, within 1 s
    /// and 30 s; never while no soft SA exists.
    pub fn expiry_check(&self) -> Option<Duration> {
        let any = self.peers.values().any(|p| matches!(p, Peer::Soft { .. }));
        any.then(|| (self.settings.idle / 10).clamp(Duration::from_secs(1), Duration::from_secs(30)))
    }

    /// The peers that go in clear now.
    pub fn soft_peers(&self) -> BTreeSet<IpAddr> {
        self.peers.iter().filter(|(_, p)| matches!(p, Peer::Soft { .. })).map(|(a, _)| *a).collect()
    }

    pub fn soft_sas(&self) -> Vec<SoftSa> {
        let idle = self.settings.idle.as_secs();
        self.peers
            .iter()
            .filter_map(|(peer, p)| match *p {
                Peer::Soft { reason, since, last_used } => {
                    Some(SoftSa { peer: *peer, reason, since, expires: last_used + idle })
                }
                Peer::Negotiating { .. } => None,
            })
            .collect()
    }

    /// Soft SAs made since the daemon started, for each reason.
    pub fn fallbacks(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL.into_iter().map(|r| (r, self.fallbacks.get(&r).copied().unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests;
