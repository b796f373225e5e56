//! The dropped-packet log: packets the kernel logged to NFLOG (rules with
//! `log: true`, profile defaults with `settings.log-dropped`), each named by the
//! rule that decided it, counted, kept in a bounded ring of recent events and
//! sent to the live `ringfence monitor` subscribers.
//!
//! Everything is bounded, so that a flood costs neither memory nor the log: the
//! kernel's `limit rate` lets 10 packets per second (burst 20) of each kind
//! through; the NFLOG socket buffer is fixed (the kernel drops batches past
//! it, counted as overruns); the queue to the daemon's loop drops when full;
//! the ring holds the last [`RING`] events; a subscriber that reads too slowly
//! loses its oldest events and is told how many (`{"lagged": N}`).

pub mod nflog;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, mpsc};

use crate::admission;
use crate::compile::staged::Would;
use crate::compile::{Compiled, Gate, LogOrigin, LOG_GROUP, LOG_PREFIX};
use crate::explain::{explain, explain_staged, Decider, Packet};
use crate::net::{icmp_type_name, protocol_name};
use crate::policy::{Action, Direction, Policy, ProfileKind, Verdict};
use crate::protocol::answers::MonitorStats;
use nflog::{Logged, Nflog};

/// Recent events kept for `monitor --backlog` and `show stats`.
pub const RING: usize = 1000;
/// Events queued for one live subscriber before its oldest are dropped.
const SUBSCRIBER_QUEUE: usize = 256;
/// Logged packets queued from the NFLOG reader to the daemon's loop.
const PENDING: usize = 256;

/// Reads a prefix made by `compile::log_prefix`.
pub fn parse_prefix(prefix: &str) -> Option<(Direction, LogOrigin)> {
    let words: Vec<&str> = prefix.strip_prefix(LOG_PREFIX)?.trim_end().trim_end_matches(':').split(' ').collect();
    let direction = match *words.first()? {
        "in" => Direction::In,
        "out" => Direction::Out,
        _ => return None,
    };
    let action = |word: &str| [Action::Allow, Action::Block, Action::Bypass].into_iter().find(|a| a.as_str() == word);
    let origin = match words[1..] {
        [profile, "default"] => LogOrigin::Default(*ProfileKind::ALL.iter().find(|p| p.as_str() == profile)?),
        ["staged", would] => LogOrigin::Staged(*Would::ALL.iter().find(|w| w.as_str() == would)?),
        [a] => LogOrigin::Rule(action(a)?, None),
        [a, "secure"] => LogOrigin::Rule(action(a)?, Some(Gate::Secure)),
        [a, "group", name] => LogOrigin::Rule(action(a)?, Some(Gate::Group(name.to_string()))),
        _ => return None,
    };
    Some((direction, origin))
}

/// One logged packet, from this host's point of view.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Event {
    /// RFC 3339, UTC, when the daemon received it.
    pub time: String,
    pub direction: Direction,
    pub interface: Option<String>,
    pub protocol: Option<String>,
    pub remote: Option<std::net::IpAddr>,
    pub remote_port: Option<u16>,
    pub local: Option<std::net::IpAddr>,
    pub local_port: Option<u16>,
    pub icmp_type: Option<String>,
    pub uid: Option<u32>,
    /// What the kernel did (from the prefix).
    pub verdict: Verdict,
    pub profile: Option<ProfileKind>,
    /// The rule or profile default that decided (of a staged event, the
    /// staged rule that would have), by `explain` over the applied sets;
    /// `None` when that does not agree with the kernel's prefix (the policy
    /// changed between the packet and its reading) or the packet was not IP.
    pub decided_by: Option<Decider>,
    /// A new connection that a staged rule would decide otherwise: what it
    /// would do (the kernel did the opposite, `verdict`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staged: Option<Would>,
}

/// Counters since the daemon started.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Totals {
    pub logged: u64,
    /// Events whose rule could not be named (see [`Event::decided_by`]), and
    /// packets with a prefix Ringfence does not write (not shown).
    pub unattributed: u64,
    /// Times the kernel dropped log messages because the socket buffer was full.
    pub overruns: u64,
    /// Logged packets dropped because the daemon's loop was behind.
    pub queue_drops: u64,
}

#[derive(Default)]
struct State {
    ring: VecDeque<Event>,
    by_rule: HashMap<String, u64>,
    by_default: HashMap<(Direction, ProfileKind), u64>,
    totals: Totals,
}

/// Shared by the NFLOG reader, the daemon's loop and the subscribers' tasks.
pub struct Hub {
    state: Mutex<State>,
    live: broadcast::Sender<Event>,
    /// Why the NFLOG group is not being read, if it is not (then nothing will
    /// ever be logged).
    error: Mutex<Option<String>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub { state: Mutex::default(), live: broadcast::channel(SUBSCRIBER_QUEUE).0, error: Mutex::new(None) }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    /// Names the rule of a logged packet, counts it, keeps it and sends it to
    /// the subscribers.
    pub fn record(&self, applied: Option<(&Policy, &Compiled)>, logged: Logged) {
        let Some((direction, origin)) = parse_prefix(&logged.prefix) else {
            // Not one of our log statements: some other rule logs to our group.
            let mut s = lock(&self.state);
            s.totals.logged += 1;
            s.totals.unattributed += 1;
            return;
        };
        let event = event(applied, logged, direction, origin);
        let mut s = lock(&self.state);
        s.totals.logged += 1;
        match &event.decided_by {
            Some(Decider::Rule { name, .. }) => *s.by_rule.entry(name.clone()).or_default() += 1,
            Some(Decider::ProfileDefault { profile }) => *s.by_default.entry((direction, *profile)).or_default() += 1,
            // (Isolation drops are not logged: `isolation_in` has no log
            // statement; nor are the core networking rules.)
            Some(Decider::Loopback | Decider::Isolation { .. } | Decider::CoreNetworking { .. }) | None => {
                s.totals.unattributed += 1
            }
        }
        if s.ring.len() == RING {
            s.ring.pop_front();
        }
        s.ring.push_back(event.clone());
        drop(s);
        // No subscriber is not an error.
        let _ = self.live.send(event);
    }

    /// Logged packets per rule name.
    pub fn logged_by_rule(&self, name: &str) -> u64 {
        lock(&self.state).by_rule.get(name).copied().unwrap_or(0)
    }

    pub fn logged_by_default(&self, direction: Direction, profile: ProfileKind) -> u64 {
        lock(&self.state).by_default.get(&(direction, profile)).copied().unwrap_or(0)
    }

    /// The monitor's own figures for `show stats`.
    pub fn view(&self) -> MonitorStats {
        let s = lock(&self.state);
        let error = lock(&self.error).clone();
        MonitorStats {
            nflog_group: LOG_GROUP,
            reading: error.is_none(),
            error,
            totals: s.totals.clone(),
            recent: s.ring.len(),
            ring_size: RING,
            subscribers: self.live.receiver_count(),
        }
    }

    /// Serves one `monitor` request: the answer line, the last `backlog` events,
    /// then live events until the client goes away.
    pub async fn stream(&self, mut read: OwnedReadHalf, mut write: OwnedWriteHalf, backlog: usize) {
        let mut rx = self.live.subscribe();
        let recent: Vec<Event> = {
            let s = lock(&self.state);
            s.ring.iter().skip(s.ring.len().saturating_sub(backlog)).cloned().collect()
        };
        let status = json!({ "monitoring": true, "nflog-group": LOG_GROUP, "error": *lock(&self.error) });
        let mut out = line(&crate::protocol::Response::Ok(status));
        for e in &recent {
            out.extend(line(&Line::Event(e)));
        }
        if !sent(&mut write, &out).await {
            return;
        }
        let mut probe = [0u8; 1];
        loop {
            let out = tokio::select! {
                got = rx.recv() => match got {
                    Ok(e) => line(&Line::Event(&e)),
                    Err(broadcast::error::RecvError::Lagged(n)) => line(&Line::<'_>::Lagged(n)),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                // EOF or anything else from the client ends the stream.
                _ = read.read(&mut probe) => return,
            };
            if !sent(&mut write, &out).await {
                return;
            }
        }
    }
}

/// Writes to a subscriber; false when it has gone or has not taken the bytes
/// within [`admission::WRITE_TIMEOUT`] (a stream that is read is never idle;
/// one that is not read ends, and gives its connection back).
async fn sent(write: &mut OwnedWriteHalf, out: &[u8]) -> bool {
    matches!(tokio::time::timeout(admission::WRITE_TIMEOUT, write.write_all(out)).await, Ok(Ok(())))
}

/// A line of the stream after the answer: `{"event":{...}}` (its keys in the
/// order of [`Event`]) or `{"lagged":N}`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
enum Line<'a> {
    Event(&'a Event),
    Lagged(u64),
}

/// One line of JSON, as the control socket sends answers and events.
pub fn line(value: &impl Serialize) -> Vec<u8> {
    // Serializing these types to JSON cannot fail (string keys, no maps of others).
    let mut out = serde_json::to_vec(value).unwrap_or_default();
    out.push(b'\n');
    out
}

fn event(applied: Option<(&Policy, &Compiled)>, logged: Logged, direction: Direction, origin: LogOrigin) -> Event {
    let interface = match direction {
        Direction::In => logged.in_interface,
        Direction::Out => logged.out_interface,
    };
    let h = logged.header;
    let (remote, local, remote_port, local_port) = match (&h, direction) {
        (Some(h), Direction::In) => (Some(h.src), Some(h.dst), h.src_port, h.dst_port),
        (Some(h), Direction::Out) => (Some(h.dst), Some(h.src), h.dst_port, h.src_port),
        (None, _) => (None, None, None, None),
    };
    let uid = logged.uid.filter(|_| direction == Direction::Out);
    let verdict = match &origin {
        LogOrigin::Rule(action, _) => action.verdict(),
        LogOrigin::Default(_) => Verdict::Block,
        // The kernel applied the enforced decision, the other one.
        LogOrigin::Staged(Would::Block) => Verdict::Allow,
        LogOrigin::Staged(Would::Allow) => Verdict::Block,
    };
    // The prefix tells what the packet's SA was enough for: a gate it passed.
    // Taking the SA to be just that can only match fewer rules than the real
    // one, so the first lookup that matches is still the one that logged it.
    let (secure, groups) = match &origin {
        LogOrigin::Rule(_, Some(Gate::Group(name))) => (true, vec![name.clone()]),
        LogOrigin::Rule(_, Some(Gate::Secure)) => (true, Vec::new()),
        _ => (false, Vec::new()),
    };
    let explained = h.as_ref().zip(applied).map(|(h, (policy, compiled))| {
        let packet = Packet {
            protocol: h.protocol,
            remote,
            local,
            remote_port,
            local_port,
            interface: interface.clone(),
            icmp_type: h.icmp_type,
            uid,
            // NFLOG does not say the socket's cgroup: a packet that a unit
            // rule logged is named by its prefix only.
            unit: None,
            secure,
            groups,
        };
        match origin {
            LogOrigin::Staged(would) => explain_staged(policy, compiled, direction, &packet)
                .ok()
                .filter(|x| x.would == Some(would))
                .map(|x| x.staged),
            _ => explain(policy, compiled, direction, &packet).ok(),
        }
    });
    // The kernel's prefix is the truth; explain only names who decided, and only
    // when it agrees with it.
    let agrees = |d: &Decider| match (d, &origin) {
        (Decider::Rule { .. }, LogOrigin::Rule(..) | LogOrigin::Staged(_)) => true,
        (Decider::ProfileDefault { profile }, LogOrigin::Default(p)) => profile == p,
        _ => false,
    };
    let staged = if let LogOrigin::Staged(would) = origin { Some(would) } else { None };
    // A staged line is explained by the staged decision, which the kernel did not apply.
    let explained_verdict = staged.map_or(verdict, Would::verdict);
    let (profile, decided_by) = match explained.flatten() {
        Some(x) if x.verdict == explained_verdict && agrees(&x.decided_by) => (Some(x.profile), Some(x.decided_by)),
        _ => (if let LogOrigin::Default(p) = origin { Some(p) } else { None }, None),
    };
    Event {
        time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        direction,
        interface,
        protocol: h.as_ref().map(|h| protocol_name(Some(h.protocol))),
        remote,
        remote_port,
        local,
        local_port,
        icmp_type: h.as_ref().and_then(|h| h.icmp_type.map(|t| icmp_type_name(h.protocol, t))),
        uid,
        verdict,
        profile,
        decided_by,
        staged,
    }
}

/// Binds the NFLOG group and reads it in a task; the packets come out of the
/// returned queue. If the group cannot be bound the daemon goes on without a
/// monitor (the firewall matters more), says so in its log and in `show stats`,
/// and the queue stays empty.
pub async fn start(hub: Arc<Hub>) -> mpsc::Receiver<Logged> {
    let (tx, rx) = mpsc::channel(PENDING);
    match Nflog::bind(LOG_GROUP).await {
        Ok(nflog) => {
            tokio::spawn(read(nflog, hub, tx));
        }
        Err(e) => {
            let message = format!("{:#}", anyhow::Error::from(e));
            tracing::warn!("no dropped-packet monitor: {message}");
            *lock(&hub.error) = Some(message);
        }
    }
    rx
}

async fn read(mut nflog: Nflog, hub: Arc<Hub>, tx: mpsc::Sender<Logged>) {
    loop {
        match nflog.recv().await {
            Ok(batch) => {
                for logged in batch {
                    if tx.try_send(logged).is_err() {
                        lock(&hub.state).totals.queue_drops += 1;
                    }
                }
            }
            Err(e) if nflog::is_overrun(&e) => lock(&hub.state).totals.overruns += 1,
            Err(e) => {
                tracing::error!(error = %e, "reading NFLOG failed; the dropped-packet monitor stops");
                *lock(&hub.error) = Some(format!("reading NFLOG failed: {e}"));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::log_prefix;

    #[test]
    fn prefixes_round_trip() {
        let gates = [None, Some(Gate::Secure), Some(Gate::Group("sql-clients".into()))];
        for d in [Direction::In, Direction::Out] {
            for a in [Action::Allow, Action::Block, Action::Bypass] {
                for g in &gates {
                    let origin = LogOrigin::Rule(a, g.clone());
                    assert_eq!(parse_prefix(&log_prefix(d, &origin)), Some((d, origin)));
                }
            }
            for p in ProfileKind::ALL {
                let origin = LogOrigin::Default(p);
                assert_eq!(parse_prefix(&log_prefix(d, &origin)), Some((d, origin)));
            }
            for w in Would::ALL {
                let origin = LogOrigin::Staged(w);
                assert_eq!(parse_prefix(&log_prefix(d, &origin)), Some((d, origin)));
            }
        }
        assert_eq!(parse_prefix("ringfence sideways block: "), None);
        assert_eq!(parse_prefix("other in block: "), None);
    }

    fn dropped_udp() -> Logged {
        Logged {
            prefix: log_prefix(Direction::In, &LogOrigin::Default(ProfileKind::Public)),
            in_interface: Some("eth0".into()),
            out_interface: None,
            uid: None,
            header: nflog::parse_ip(&[0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1]),
        }
    }

    #[test]
    fn the_ring_is_bounded_and_counts_per_rule() {
        let hub = Hub::default();
        for _ in 0..RING + 10 {
            hub.record(None, dropped_udp());
        }
        let s = lock(&hub.state);
        assert_eq!(s.ring.len(), RING);
        assert_eq!(s.totals.logged, (RING + 10) as u64);
        // Without an applied policy nothing can be named.
        assert_eq!(s.totals.unattributed, (RING + 10) as u64);
        assert_eq!(s.ring[0].verdict, Verdict::Block);
        assert_eq!(s.ring[0].remote, Some("10.0.0.2".parse().unwrap()));
    }

    /// A packet a gated rule logged is named by explaining it as coming over
    /// an SA that passes the gate its prefix names (in clear, the block rule
    /// would decide, which the prefix contradicts).
    #[test]
    fn a_logged_bypass_is_named_by_its_gate() {
        let text = "isolation: { mode: request, secure-subnets: [\"10.0.0.0/8\"], identity: { ca: /ca, certificate: /c, private-key: /k } }\n\
            groups: { scanners: { subject: \"O=Example, CN=*\" } }\n\
            rules:\n\
            - { name: no-udp, direction: in, action: block, protocol: udp }\n\
            - { name: scan, direction: in, action: bypass, remote-groups: [scanners], log: true }\n";
        let policy = crate::policy::load_text(&[("t.yaml".into(), text.into())]).unwrap();
        let compiled = crate::compile::compile(&policy, &crate::dynamic::DynState::default()).unwrap();
        let hub = Hub::default();
        let gate = Some(Gate::Group("scanners".into()));
        let logged =
            Logged { prefix: log_prefix(Direction::In, &LogOrigin::Rule(Action::Bypass, gate)), ..dropped_udp() };
        hub.record(Some((&policy, &compiled)), logged);
        let s = lock(&hub.state);
        assert!(matches!(&s.ring[0].decided_by, Some(Decider::Rule { name, .. }) if name == "scan"), "{:?}", s.ring[0]);
        assert_eq!((s.ring[0].verdict, s.totals.unattributed), (Verdict::Allow, 0));
    }

    /// A staged line is named by the staged rule that would have decided, and
    /// keeps the verdict the kernel applied; one that `explain --staged` does
    /// not confirm (no staged rule differs) is not named.
    #[test]
    fn a_staged_line_is_named_by_the_staged_rule() {
        let text = "rules:\n- { name: no-udp, direction: in, action: block, protocol: udp, stage: audit }\n";
        let policy = crate::policy::load_text(&[("t.yaml".into(), text.into())]).unwrap();
        let compiled = crate::compile::compile(&policy, &crate::dynamic::DynState::default()).unwrap();
        let hub = Hub::default();
        for would in Would::ALL {
            let logged = Logged { prefix: log_prefix(Direction::In, &LogOrigin::Staged(would)), ..dropped_udp() };
            hub.record(Some((&policy, &compiled)), logged);
        }
        let s = lock(&hub.state);
        // The public default blocks inbound udp: the staged block rule changes
        // nothing, so neither line is confirmed.
        assert!(s.ring.iter().all(|e| e.decided_by.is_none()), "{:?}", s.ring);
        assert_eq!((s.ring[0].verdict, s.ring[0].staged), (Verdict::Allow, Some(Would::Block)));
        drop(s);

        let text = "rules:\n- { name: udp, direction: in, action: allow, protocol: udp }\n\
            - { name: no-udp, direction: in, action: block, protocol: udp, stage: audit }\n";
        let policy = crate::policy::load_text(&[("t.yaml".into(), text.into())]).unwrap();
        let compiled = crate::compile::compile(&policy, &crate::dynamic::DynState::default()).unwrap();
        let logged = Logged { prefix: log_prefix(Direction::In, &LogOrigin::Staged(Would::Block)), ..dropped_udp() };
        hub.record(Some((&policy, &compiled)), logged);
        let s = lock(&hub.state);
        let e = s.ring.back().unwrap();
        assert!(matches!(&e.decided_by, Some(Decider::Rule { name, .. }) if name == "no-udp"), "{e:?}");
        assert_eq!((e.verdict, s.by_rule.get("no-udp")), (Verdict::Allow, Some(&1)));
    }

    /// A subscriber that cannot keep up loses its oldest events, is told how
    /// many, and then gets the newest ones.
    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_subscriber_is_told_what_it_lost() {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let hub = Arc::new(Hub::default());
        for _ in 0..5 {
            hub.record(None, dropped_udp());
        }
        let (server, client) = tokio::net::UnixStream::pair().unwrap();
        let (read, write) = server.into_split();
        let task = tokio::spawn({
            let hub = Arc::clone(&hub);
            async move { hub.stream(read, write, 2).await }
        });
        let mut lines = BufReader::new(client).lines();
        assert!(lines.next_line().await.unwrap().unwrap().contains("\"monitoring\":true"));
        for _ in 0..2 {
            assert!(lines.next_line().await.unwrap().unwrap().starts_with("{\"event\":"));
        }
        // The stream task cannot run while these are recorded.
        for _ in 0..SUBSCRIBER_QUEUE + 100 {
            hub.record(None, dropped_udp());
        }
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "{\"lagged\":100}");
        for _ in 0..SUBSCRIBER_QUEUE {
            assert!(lines.next_line().await.unwrap().unwrap().starts_with("{\"event\":"));
        }
        drop(lines);
        task.await.unwrap();
        assert_eq!(hub.live.receiver_count(), 0);
    }
}
