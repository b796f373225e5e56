//! The detector's thread: links followed over rtnetlink, probe rounds, and
//! the judgements sent to the daemon. One round at a time probes every judged
//! interface whose link is up, all at once; a round is asked for by a burst of
//! rtnetlink events, a new [`Setup`], an answer that waits for its
//! confirmation (at once, but not after a round that was only a confirmation:
//! answers that keep alternating wait for the next event or the interval
//! instead of probing without pause), or the interval. (A link that comes up
//! sends its events in a burst: a round begun at the first may fail before
//! the routes are back, and the round after it, begun for the later events,
//! is news, whose answer is then confirmed at once.) A link that goes down or comes up
//! makes its interface undecided at once, and the answers of a round started
//! before that are not counted for it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use super::hysteresis::{Answer, Judge};
use super::{dns, tls, Judgement, Judgements, Setup};
use crate::dynamic::coalesce::{Coalesce, Event};
use crate::dynamic::netlink;

/// What one round found over one interface: the probe that authenticated the
/// domain and its time, or why none did.
type Found = Result<(String, Duration), String>;

/// Starts the detector's thread, idle until `setup` has a detection. The
/// thread ends when the receiver is dropped or `setup`'s sender is.
pub fn start(setup: watch::Receiver<Setup>) -> mpsc::Receiver<Judgements> {
    let (out, judged) = mpsc::channel(4);
    let spawned = std::thread::Builder::new().name("location".into()).spawn(move || {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(run(setup, out)),
            Err(e) => tracing::error!("cannot start location detection: {e}"),
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start location detection: {e}");
    }
    judged
}

/// One judged interface.
struct Iface {
    up: bool,
    /// Counts the resets: a round's answer counts only for the epoch it began in.
    epoch: u64,
    judge: Judge,
    view: Judgement,
}

impl Iface {
    fn new(up: bool, epoch: u64) -> Iface {
        Iface { up, epoch, judge: Judge::default(), view: Judgement::default() }
    }
}

#[derive(Default)]
struct Detector {
    setup: Setup,
    /// Every link but `lo` and whether it is up (administratively and with carrier).
    links: BTreeMap<String, bool>,
    ifaces: BTreeMap<String, Iface>,
}

impl Detector {
    /// Takes a dump of the links: new and gone interfaces, and those whose
    /// link went up or down, which start undecided.
    fn links(&mut self, links: BTreeMap<String, bool>) {
        self.ifaces.retain(|name, _| links.contains_key(name));
        for (name, &up) in &links {
            if !self.setup.judges(name) {
                continue;
            }
            match self.ifaces.get_mut(name) {
                Some(i) if i.up == up => {}
                Some(i) => *i = Iface::new(up, i.epoch + 1),
                None => _ = self.ifaces.insert(name.clone(), Iface::new(up, 0)),
            }
        }
        self.links = links;
    }

    /// A new setup: a new detection (or patterns) judges every interface anew.
    fn set(&mut self, setup: Setup) {
        let anew = setup.detect != self.setup.detect || setup.domain_patterns != self.setup.domain_patterns;
        self.setup = setup;
        if anew {
            let epochs: BTreeMap<String, u64> = self.ifaces.iter().map(|(n, i)| (n.clone(), i.epoch + 1)).collect();
            self.ifaces.clear();
            let links = std::mem::take(&mut self.links);
            self.links(links);
            for (name, i) in &mut self.ifaces {
                i.epoch = epochs.get(name).copied().unwrap_or_default();
            }
        }
    }

    /// The interfaces to probe, with their epochs.
    fn targets(&self) -> Vec<(String, u64)> {
        self.ifaces.iter().filter(|(_, i)| i.up).map(|(n, i)| (n.clone(), i.epoch)).collect()
    }

    fn take(&mut self, found: Vec<(String, u64, Found)>) {
        let now = SystemTime::now();
        for (name, epoch, found) in found {
            let Some(i) = self.ifaces.get_mut(&name).filter(|i| i.epoch == epoch) else { continue };
            let answer = match &found {
                Ok(_) => Answer::Domain,
                Err(_) => Answer::Other,
            };
            if i.judge.take(answer) {
                i.view.decided_at = Some(now);
            }
            i.view.state = i.judge.state;
            i.view.checked_at = Some(now);
            match found {
                Ok(endpoint) => (i.view.endpoint, i.view.last_error) = (Some(endpoint), None),
                Err(e) => i.view.last_error = Some(e),
            }
        }
    }

    fn unconfirmed(&self) -> bool {
        self.ifaces.values().any(|i| i.judge.unconfirmed())
    }

    fn judgements(&self) -> Judgements {
        self.ifaces.iter().map(|(n, i)| (n.clone(), i.view.clone())).collect()
    }
}

/// What woke the loop.
enum Wake {
    /// An event whose read of the links is due later.
    Nothing,
    Links,
    Setup,
    Round(Vec<(String, u64, Found)>),
    Timer,
    Stop,
}

async fn run(mut setup: watch::Receiver<Setup>, out: mpsc::Sender<Judgements>) {
    // No rtnetlink socket for a policy without detection.
    while setup.borrow_and_update().detect.is_none() {
        if setup.changed().await.is_err() {
            return;
        }
    }
    let (handle, mut events) = match netlink::connect() {
        Ok(c) => c,
        Err(e) => return tracing::error!("location detection cannot follow the links: {e:#}"),
    };
    let mut d = Detector::default();
    d.set(setup.borrow_and_update().clone());
    let mut coalesce = Coalesce::default();
    let mut round: Option<JoinHandle<Vec<(String, u64, Found)>>> = None;
    // Something changed since the last round began (links, setup, the
    // interval): a round is due.
    let mut news = true;
    // An answer waits for its confirmation: a round is due too, unless the
    // round that gave it was itself only a confirmation (`confirming`).
    let mut confirm = false;
    let mut confirming = false;
    let mut next_at: Option<Instant> = None;
    let mut sent: Option<Judgements> = None;
    let mut wake = Wake::Links;
    loop {
        match std::mem::replace(&mut wake, Wake::Nothing) {
            Wake::Nothing => {}
            Wake::Links => {
                coalesce.read_at(Instant::now());
                match read_links(&handle).await {
                    Ok(links) => d.links(links),
                    Err(e) => tracing::warn!("location detection keeps the last links: {e:#}"),
                }
                news = true;
            }
            Wake::Setup => {
                d.set(setup.borrow_and_update().clone());
                news = true;
            }
            Wake::Round(found) => {
                round = None;
                d.take(found);
                confirm = d.unconfirmed() && !confirming;
                next_at = d.setup.detect.as_ref().map(|x| Instant::now() + x.interval);
            }
            Wake::Timer => {
                next_at = None;
                news = true;
            }
            Wake::Stop => return,
        }
        let now = d.judgements();
        if sent.as_ref() != Some(&now) {
            if out.send(now.clone()).await.is_err() {
                return;
            }
            sent = Some(now);
        }
        if round.is_none() && (news || confirm) {
            if let Some(detect) = &d.setup.detect {
                confirming = !news;
                (news, confirm) = (false, false);
                round = Some(tokio::spawn(probe_all(d.setup.clone(), tls::config(detect), d.targets())));
            }
        }
        let due = coalesce.due();
        wake = tokio::select! {
            event = events.next() => match event {
                Some(_) if coalesce.event(Instant::now(), Event::Complete) => Wake::Links,
                Some(_) => Wake::Nothing,
                None => {
                    tracing::error!("the rtnetlink event socket closed; location detection stops");
                    Wake::Stop
                }
            },
            _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => Wake::Links,
            changed = setup.changed() => if changed.is_ok() { Wake::Setup } else { Wake::Stop },
            found = async { round.as_mut().expect("a round").await }, if round.is_some() => {
                Wake::Round(found.unwrap_or_default())
            }
            _ = sleep_until(next_at.unwrap_or_else(Instant::now)), if next_at.is_some() && round.is_none() => Wake::Timer,
        };
    }
}

/// Every link but `lo`, and whether it is up with a carrier.
async fn read_links(handle: &rtnetlink::Handle) -> Result<BTreeMap<String, bool>, rtnetlink::Error> {
    let links: Vec<LinkMessage> = handle.link().get().execute().try_collect().await?;
    Ok(links
        .iter()
        .filter_map(|l| {
            let name = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })?;
            let up = l.header.flags.contains(LinkFlags::Up | LinkFlags::LowerUp);
            (name != "lo").then_some((name, up))
        })
        .collect())
}

/// Probes every target at once.
async fn probe_all(
    setup: Setup,
    config: Result<Arc<rustls::ClientConfig>, String>,
    targets: Vec<(String, u64)>,
) -> Vec<(String, u64, Found)> {
    let setup = &setup;
    let config = &config;
    futures::future::join_all(targets.into_iter().map(|(name, epoch)| async move {
        let found = match config {
            Ok(config) => probe(setup, config, &name).await,
            Err(e) => Err(format!("the CA: {e}")),
        };
        (name, epoch, found)
    }))
    .await
}

/// The probes over `ifname` in order, until one authenticates the domain.
async fn probe(setup: &Setup, config: &Arc<rustls::ClientConfig>, ifname: &str) -> Found {
    let Some(detect) = &setup.detect else { return Err("no detection".into()) };
    let mut errors = Vec::new();
    for p in &detect.probes {
        let attempt = async {
            let addrs = match &p.host {
                crate::policy::location::Host::Ip(a) => vec![*a],
                crate::policy::location::Host::Name(n) => dns::resolve(n, &setup.servers(ifname), ifname).await?,
            };
            let name = tls::server_name(&p.host)?;
            let mut failed = Vec::new();
            for addr in addrs {
                match tls::handshake(Arc::clone(config), name.clone(), SocketAddr::new(addr, p.port), ifname).await {
                    Ok(rtt) => return Ok(rtt),
                    Err(e) => failed.push(e),
                }
            }
            Err(failed.join("; "))
        };
        match tokio::time::timeout(detect.timeout, attempt).await {
            Ok(Ok(rtt)) => return Ok((p.to_string(), rtt)),
            Ok(Err(e)) => errors.push(format!("{p}: {e}")),
            Err(_) => errors.push(format!("{p}: no answer within {}", humantime::format_duration(detect.timeout))),
        }
    }
    Err(errors.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::State;

    fn detector() -> Detector {
        let mut d = Detector::default();
        let detect = crate::policy::location::Detect {
            probes: Vec::new(),
            ca: None,
            pins: Vec::new(),
            interval: Duration::from_secs(600),
            timeout: Duration::from_secs(3),
        };
        d.set(Setup {
            detect: Some(detect),
            domain_patterns: vec![crate::policy::values::IfPattern("corp*".into())],
            ..Setup::default()
        });
        d
    }

    fn links(list: &[(&str, bool)]) -> BTreeMap<String, bool> {
        list.iter().map(|&(n, up)| (n.to_string(), up)).collect()
    }

    #[test]
    fn domain_patterns_are_not_judged_and_down_links_not_probed() {
        let mut d = detector();
        d.links(links(&[("corp0", true), ("eth0", true), ("eth1", false)]));
        assert_eq!(d.judgements().keys().collect::<Vec<_>>(), ["eth0", "eth1"]);
        assert_eq!(d.targets(), [("eth0".to_string(), 0)]);
    }

    #[test]
    fn a_link_flap_makes_the_interface_undecided_and_drops_older_answers() {
        let mut d = detector();
        d.links(links(&[("eth0", true)]));
        let ok = || Ok(("dc:443".to_string(), Duration::from_millis(3)));
        d.take(vec![("eth0".into(), 0, ok())]);
        assert!(d.unconfirmed());
        d.take(vec![("eth0".into(), 0, ok())]);
        assert_eq!(d.judgements()["eth0"].state, State::Domain);
        d.links(links(&[("eth0", false)]));
        assert_eq!(d.judgements()["eth0"].state, State::Undecided);
        d.links(links(&[("eth0", true)]));
        // Answers of a round begun before the flap do not count.
        d.take(vec![("eth0".into(), 0, ok())]);
        assert!(!d.unconfirmed());
        assert_eq!(d.targets(), [("eth0".to_string(), 2)]);
        d.take(vec![("eth0".into(), 2, ok()), ("eth0".into(), 2, ok())]);
        assert_eq!(d.judgements()["eth0"].state, State::Domain);
        d.links(links(&[]));
        assert!(d.judgements().is_empty());
    }
}
