//! Who may hold a connection to the daemon, and for how long: the limits shared
//! by the control socket and the metrics endpoint.
//!
//! Every connection costs a file descriptor, and the daemon's are shared with
//! its real work (nft, netlink, policy files). So that no local user can use
//! them up (1,100 idle connections once left root's `show state` unanswered and
//! reloads failing with EMFILE):
//!
//! - connections are counted per peer uid ([`PER_UID`]) and in all
//!   ([`TOTAL`]); past either, a connection is answered with a short refusal
//!   and closed. Root is never counted nor refused: root can stop the daemon
//!   anyway, and must always be able to ask it what it is doing. A TCP peer
//!   (the metrics port) has no credentials to read, so it counts in the total
//!   only;
//! - a client has [`REQUEST_TIMEOUT`] to send its request and
//!   [`WRITE_TIMEOUT`] to read each answer (a `monitor` stream that is being
//!   read never waits that long, however quiet it is);
//! - when accept itself fails (EMFILE, ENFILE, ENOBUFS), the loop sleeps with
//!   exponential backoff instead of retrying at once (the pending connection
//!   keeps the listener readable, so an immediate retry spins), and says so at
//!   most once per [`LOG_EVERY`].

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Connections one uid other than root may hold on one listener.
pub const PER_UID: usize = 16;
/// Connections all peers but root may hold on one listener. With the two
/// listeners that is at most 256 descriptors of the 1024 a process gets by
/// default (the unit raises the limit further, LimitNOFILE).
pub const TOTAL: usize = 128;
/// Time to send the request after connecting.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time the client has to take each answer (or each line of a stream).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// At most one warning per listener and kind of trouble this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Root, or the daemon's own user when it is not root (its tests): who
    /// could change the daemon's memory anyway.
    Root,
    Uid(u32),
    /// A TCP peer, or a Unix one whose credentials could not be read.
    Unknown,
}

impl Peer {
    pub fn of_unix(stream: &tokio::net::UnixStream) -> Peer {
        match stream.peer_cred().map(|c| c.uid()) {
            Ok(uid) if uid == 0 || uid == nix::unistd::geteuid().as_raw() => Peer::Root,
            Ok(uid) => Peer::Uid(uid),
            Err(_) => Peer::Unknown,
        }
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("too many connections from uid {uid} (at most {max}); try again later")]
    PerUid { uid: u32, max: usize },
    #[error("too many connections (at most {max} from users other than root); try again later")]
    Total { max: usize },
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_uid: HashMap<u32, usize>,
}

/// The connections one listener holds.
pub struct Limits {
    per_uid: usize,
    total: usize,
    counts: Mutex<Counts>,
}

/// A connection's place in its listener's count, given back when dropped.
pub struct Permit {
    limits: Option<Arc<Limits>>,
    uid: Option<u32>,
}

impl Limits {
    pub fn new(per_uid: usize, total: usize) -> Arc<Limits> {
        Arc::new(Limits { per_uid, total, counts: Mutex::default() })
    }

    /// Counts a new connection from `peer`, or says why it may not have one.
    pub fn admit(self: &Arc<Self>, peer: Peer) -> Result<Permit, Refused> {
        let uid = match peer {
            Peer::Root => return Ok(Permit { limits: None, uid: None }),
            Peer::Uid(uid) => Some(uid),
            Peer::Unknown => None,
        };
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if c.total >= self.total {
            return Err(Refused::Total { max: self.total });
        }
        if let Some(uid) = uid {
            let n = c.by_uid.entry(uid).or_default();
            if *n >= self.per_uid {
                return Err(Refused::PerUid { uid, max: self.per_uid });
            }
            *n += 1;
        }
        c.total += 1;
        Ok(Permit { limits: Some(Arc::clone(self)), uid })
    }

    /// Connections counted now (root's are not).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some(limits) = &self.limits else { return };
        let mut c = limits.counts.lock().unwrap_or_else(PoisonError::into_inner);
        c.total -= 1;
        if let Some(uid) = self.uid {
            if let Some(n) = c.by_uid.get_mut(&uid) {
                *n -= 1;
                if *n == 0 {
                    c.by_uid.remove(&uid);
                }
            }
        }
    }
}

/// Lets a warning through at most once per [`LOG_EVERY`], counting the ones
/// held back in between.
#[derive(Debug, Default)]
pub struct RateLimited {
    last: Option<Instant>,
    held_back: u64,
}

impl RateLimited {
    /// `Some(n)` when a warning may be logged now, `n` being how many were
    /// held back since the last one.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now.duration_since(last) < LOG_EVERY) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

/// One listener's accept loop: its limits, and how it takes failures.
pub struct Accepting {
    what: &'static str,
    limits: Arc<Limits>,
    delay: Duration,
    failures: RateLimited,
    refusals: RateLimited,
}

impl Accepting {
    /// With the limits [`PER_UID`] and [`TOTAL`].
    pub fn new(what: &'static str) -> Self {
        Accepting {
            what,
            limits: Limits::new(PER_UID, TOTAL),
            delay: Duration::ZERO,
            failures: RateLimited::default(),
            refusals: RateLimited::default(),
        }
    }

    /// The accepted connection; or, when accept failed, `None` after a
    /// backoff sleep (10 ms, doubling to 1 s while failures go on).
    pub async fn next<S>(&mut self, accepted: io::Result<S>) -> Option<S> {
        match accepted {
            Ok(stream) => {
                self.delay = Duration::ZERO;
                Some(stream)
            }
            Err(e) => {
                self.delay = next_delay(self.delay);
                if let Some(held_back) = self.failures.allow(Instant::now()) {
                    tracing::warn!(
                        error = %e,
                        retry_ms = self.delay.as_millis() as u64,
                        failures_not_logged = held_back,
                        "{}: accept failed; backing off",
                        self.what
                    );
                }
                tokio::time::sleep(self.delay).await;
                None
            }
        }
    }

    /// Counts a connection from `peer`; a refusal is logged (rate-limited)
    /// and returned for the caller to tell the client in its protocol.
    pub fn admit(&mut self, peer: Peer) -> Result<Permit, Refused> {
        self.limits.admit(peer).inspect_err(|why| {
            if let Some(held_back) = self.refusals.allow(Instant::now()) {
                tracing::warn!(refusals_not_logged = held_back, "{}: connection refused: {why}", self.what);
            }
        })
    }
}

fn next_delay(delay: Duration) -> Duration {
    if delay.is_zero() {
        BACKOFF_FIRST
    } else {
        (delay * 2).min(BACKOFF_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_uid_and_in_total_but_never_root() {
        let limits = Limits::new(2, 3);
        let a1 = limits.admit(Peer::Uid(1000)).unwrap();
        let _a2 = limits.admit(Peer::Uid(1000)).unwrap();
        assert_eq!(limits.admit(Peer::Uid(1000)).err(), Some(Refused::PerUid { uid: 1000, max: 2 }));
        let _b = limits.admit(Peer::Unknown).unwrap();
        assert_eq!(limits.admit(Peer::Uid(1001)).err(), Some(Refused::Total { max: 3 }));
        assert_eq!(limits.admit(Peer::Unknown).err(), Some(Refused::Total { max: 3 }));
        let roots: Vec<Permit> = (0..100).map(|_| limits.admit(Peer::Root).unwrap()).collect();
        assert_eq!(limits.held(), 3);
        drop(roots);
        // A connection closed gives its place back, to its uid and to the total.
        drop(a1);
        assert_eq!(limits.held(), 2);
        let _a3 = limits.admit(Peer::Uid(1000)).unwrap();
        assert_eq!(limits.admit(Peer::Uid(1000)).err(), Some(Refused::Total { max: 3 }));
    }

    #[test]
    fn warnings_at_most_once_per_period_with_the_count_held_back() {
        let mut r = RateLimited::default();
        let t0 = Instant::now();
        assert_eq!(r.allow(t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(r.allow(t0 + Duration::from_millis(i * 9)), None);
        }
        assert_eq!(r.allow(t0 + LOG_EVERY), Some(1000));
        assert_eq!(r.allow(t0 + LOG_EVERY + Duration::from_secs(1)), None);
        assert_eq!(r.allow(t0 + LOG_EVERY * 2), Some(1));
    }

    #[test]
    fn backoff_doubles_to_a_second() {
        let mut d = Duration::ZERO;
        let delays: Vec<u128> = (0..10)
            .map(|_| {
                d = next_delay(d);
                d.as_millis()
            })
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_accept_sleeps_and_a_success_resets() {
        let mut a = Accepting::new("test");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(a.next::<()>(Err(io::Error::from_raw_os_error(24))).await, None);
        }
        // 10 + 20 + 40 ms of (paused, auto-advanced) sleep.
        assert_eq!(Instant::now() - t0, Duration::from_millis(70));
        assert_eq!(a.next(Ok(7)).await, Some(7));
        let t1 = Instant::now();
        assert_eq!(a.next::<()>(Err(io::Error::from_raw_os_error(24))).await, None);
        assert_eq!(Instant::now() - t1, Duration::from_millis(10));
    }
}
