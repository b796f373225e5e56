//! The coalescing of desired lists and the reading of stamps alone; then the
//! thread against this machine's kernel in a fresh network namespace of a
//! thread of its own (root only, `#[ignore]`d as in src/xfrm/kernel/tests.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{last_use, Kernel, Newest, Want};
use crate::policy::raw::IsolationMode;
use crate::xfrm::kernel::tests::in_new_netns;
use crate::xfrm::plan::tests::{dynamic, isolation};
use crate::xfrm::{policies, Action, Dir, Xfrm};

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The policies of `mode` over 10.0.0.0/8, with soft SAs for `soft`.
fn want(mode: IsolationMode, soft: &[&str]) -> Want {
    let iso = isolation(mode, &["10.0.0.0/8"], &[]);
    let soft: BTreeSet<IpAddr> = soft.iter().map(|s| addr(s)).collect();
    Want { policies: policies(&iso, &dynamic(), &soft), falls_back: iso.falls_back() }
}

#[test]
fn a_list_sent_while_another_waits_replaces_it() {
    let newest = Newest::default();
    let (a, b) = (want(IsolationMode::Request, &[]), want(IsolationMode::Request, &["10.0.0.2"]));
    assert!(newest.put(a.clone()), "the first list must be announced");
    assert!(!newest.put(b.clone()), "a list that replaces a waiting one is not announced again");
    assert_eq!(newest.take(), Some(b));
    assert_eq!(newest.take(), None, "the next announcement finds nothing: already applied");
    assert!(newest.put(a), "once taken, the next list is announced");
}

#[test]
fn last_use_is_the_newest_stamp_of_each_soft_peers_clear_policies() {
    let w = want(IsolationMode::Request, &["10.0.0.2", "10.0.0.3"]);
    let soft: BTreeSet<IpAddr> = [addr("10.0.0.2")].into();
    // Each policy stamped by its position: the clear ones of 10.0.0.2 (in and
    // out) are two of them; 10.0.0.3's are not asked for; ESP is never a soft SA's.
    let stamps: Vec<_> = w.policies.iter().enumerate().map(|(i, p)| (*p, 100 + i as u64)).collect();
    let remote = |p: &crate::xfrm::Policy| if p.dir == Dir::Out { p.selector.dst.addr } else { p.selector.src.addr };
    let of_peer: Vec<u64> = stamps
        .iter()
        .filter(|(p, _)| p.action == Action::Clear && remote(p) == addr("10.0.0.2"))
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(of_peer.len(), 2, "one clear policy each way: {:?}", w.policies);
    assert_eq!(last_use(stamps, &soft), BTreeMap::from([(addr("10.0.0.2"), of_peer.into_iter().max().unwrap())]));
}

fn larval_drop() -> String {
    std::fs::read_to_string("/proc/sys/net/core/xfrm_larval_drop").unwrap().trim().to_string()
}

#[test]
#[ignore = "needs root: run by integration/run-all.sh (--include-ignored)"]
fn the_thread_applies_the_newest_list_in_order_reads_stamps_and_removes_everything() {
    // The kernel's thread, started from this one, shares its namespace.
    in_new_netns(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (kernel, mut stamps) = Kernel::start();
            // The thread waits here until `gate` is dropped, while the
            // next commands queue.
            let (gate, wait) = std::sync::mpsc::channel::<()>();
            kernel.then(move || {
                let _ = wait.recv();
            });
            kernel.apply(want(IsolationMode::RequireEncryption, &[]));
            let last = want(IsolationMode::Request, &["10.0.0.2"]);
            kernel.apply(last.clone());
            kernel.last_used([addr("10.0.0.2")].into());
            drop(gate);
            // The stamps were read once the newest list was in: its soft SA's.
            let read = stamps.recv().await.unwrap().unwrap();
            assert_eq!(read.keys().copied().collect::<Vec<_>>(), [addr("10.0.0.2")]);
            kernel.settled().await;
            let installed: Vec<_> = Xfrm::open().unwrap().dump().unwrap().into_iter().map(|i| i.policy).collect();
            let mut expected = last.policies.clone();
            expected.sort();
            assert_eq!(installed, expected);
            assert_eq!(kernel.outcome.borrow().policies, Some(last.policies.len()));
            assert_eq!(kernel.outcome.borrow().error, None);
            assert_eq!(larval_drop(), "0", "a mode that falls back holds packets");
            kernel.remove().await.unwrap();
            assert_eq!(Xfrm::open().unwrap().dump().unwrap(), []);
            assert_eq!(larval_drop(), "1", "put back as it was found");
            kernel.stop().await;
        });
    });
}
