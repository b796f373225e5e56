use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use super::{FirstContact, Reason, Settings};

const FALLBACK: Duration = Duration::from_millis(500);
const IDLE: Duration = Duration::from_secs(300);

fn on() -> FirstContact {
    let mut f = FirstContact::default();
    f.configure(Settings { enabled: true, fallback: FALLBACK, idle: IDLE });
    f
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn a_peer_that_does_not_answer_falls_back_after_the_fallback_time() {
    let (mut f, t0, wall) = (on(), Instant::now(), SystemTime::now());
    f.acquire(ip("10.0.0.3"), t0);
    assert_eq!(f.next_deadline(), Some(t0 + FALLBACK));
    assert!(f.due(t0 + FALLBACK - Duration::from_millis(1), wall).is_empty());
    assert!(f.soft_peers().is_empty());
    assert_eq!(f.due(t0 + FALLBACK, wall), [(ip("10.0.0.3"), Reason::Timeout)]);
    assert_eq!(f.soft_peers(), [ip("10.0.0.3")].into());
    let sas = f.soft_sas();
    assert_eq!((sas[0].reason, sas[0].expires - sas[0].since), (Reason::Timeout, IDLE.as_secs()));
    assert_eq!(
        f.fallbacks().collect::<Vec<_>>(),
        [(Reason::Timeout, 1), (Reason::AuthFailed, 0), (Reason::NoProposal, 0)]
    );
    assert_eq!(f.next_deadline(), None, "a soft SA waits for nothing");
}

#[test]
fn a_failure_falls_back_at_once_with_its_reason() {
    let (mut f, t0, wall) = (on(), Instant::now(), SystemTime::now());
    f.acquire(ip("10.0.0.4"), t0);
    f.failed(ip("10.0.0.4"), Reason::AuthFailed);
    assert_eq!(f.next_deadline(), Some(t0));
    assert_eq!(f.due(t0, wall), [(ip("10.0.0.4"), Reason::AuthFailed)]);
    assert_eq!(f.soft_sas()[0].reason, Reason::AuthFailed);
    // A failure for a peer that is not negotiating changes nothing.
    f.failed(ip("10.0.0.9"), Reason::NoProposal);
    assert_eq!(f.soft_peers().len(), 1);
}

#[test]
fn a_failure_after_the_timeout_names_the_soft_sas_reason() {
    let (mut f, t0, wall) = (on(), Instant::now(), SystemTime::now());
    f.acquire(ip("10.0.0.4"), t0);
    f.due(t0 + FALLBACK, wall);
    f.failed(ip("10.0.0.4"), Reason::NoProposal);
    assert_eq!(f.soft_sas()[0].reason, Reason::NoProposal);
    // (counted once, as the timeout it was when it happened)
    assert_eq!(f.fallbacks().map(|(_, n)| n).sum::<u64>(), 1);
}

#[test]
fn an_sa_ends_a_negotiation_or_a_soft_sa() {
    let (mut f, t0, wall) = (on(), Instant::now(), SystemTime::now());
    f.acquire(ip("10.0.0.2"), t0);
    assert!(!f.sa_up(ip("10.0.0.1"), ip("10.0.0.2")), "no soft SA ended");
    assert_eq!(f.next_deadline(), None);
    f.acquire(ip("10.0.0.3"), t0);
    f.due(t0 + FALLBACK, wall);
    // A late SA (the inbound one: the peer is its source) replaces the soft SA.
    assert!(f.sa_up(ip("10.0.0.3"), ip("10.0.0.1")));
    assert!(f.soft_peers().is_empty());
}

#[test]
fn a_second_acquire_does_not_restart_the_clock() {
    let (mut f, t0) = (on(), Instant::now());
    f.acquire(ip("fd00::3"), t0);
    f.acquire(ip("fd00::3"), t0 + Duration::from_millis(400));
    assert_eq!(f.next_deadline(), Some(t0 + FALLBACK));
}

#[test]
fn soft_sas_end_after_idle_without_traffic() {
    let (mut f, t0) = (on(), Instant::now());
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    f.acquire(ip("10.0.0.3"), t0);
    f.due(t0 + FALLBACK, wall);
    assert_eq!(f.expiry_check(), Some(Duration::from_secs(30)));
    let used: BTreeMap<IpAddr, u64> = [(ip("10.0.0.3"), 1_000_100)].into();
    assert!(!f.expire(&used, wall + IDLE), "used 100 s after it began");
    assert_eq!(f.soft_sas()[0].expires, 1_000_100 + IDLE.as_secs());
    assert!(f.expire(&BTreeMap::new(), wall + IDLE + Duration::from_secs(100)));
    assert!(f.soft_peers().is_empty());
    assert_eq!(f.expiry_check(), None);
}

#[test]
fn modes_that_do_not_fall_back_make_no_soft_sa_and_end_them_all() {
    let (mut f, t0, wall) = (on(), Instant::now(), SystemTime::now());
    f.acquire(ip("10.0.0.3"), t0);
    f.due(t0 + FALLBACK, wall);
    assert!(f.configure(Settings { enabled: false, fallback: FALLBACK, idle: IDLE }), "the soft SA ended");
    f.acquire(ip("10.0.0.5"), t0);
    assert!(f.due(t0 + FALLBACK * 10, wall).is_empty());
    assert!(f.soft_peers().is_empty());
}
