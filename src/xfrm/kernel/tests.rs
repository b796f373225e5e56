//! `diff` alone, then `apply`, `dump` and `remove_all` against this machine's
//! kernel, each test in a fresh network namespace of its own thread (a
//! namespace is per thread, and the `ip` commands a thread starts run in its
//! namespace). Those need root (CAP_NET_ADMIN), so they are `#[ignore]`d: a
//! plain `cargo test` as any user passes without them, and
//! integration/run-all.sh, which runs as root, adds `--include-ignored`. No ESP
//! is needed, only policies.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use nix::sched::CloneFlags;

use super::{diff, Op, Plan};
use super::{Changes, Installed};
use crate::policy::raw::IsolationMode;
use crate::xfrm::plan::tests::{dynamic, isolation};
use crate::xfrm::{policies, Dir, Error, Policy, Xfrm};

/// The policies of a mode over 10.0.0.0/8, fd00::/8 and `extra`, with `exempt`
/// and the DNS servers 10.0.0.53 and fd00::53.
fn desired(mode: IsolationMode, extra: &[&str], exempt: &[&str]) -> Vec<Policy> {
    let secure: Vec<&str> = ["10.0.0.0/8", "fd00::/8"].iter().chain(extra).copied().collect();
    policies(&isolation(mode, &secure, exempt), &dynamic(), &BTreeSet::new())
}

/// Runs `f` on a thread of its own in a new network namespace.
pub(crate) fn in_new_netns(f: impl FnOnce() + Send) {
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET): these tests need root");
            f()
        });
        if let Err(panic) = t.join() {
            std::panic::resume_unwind(panic);
        }
    });
}

/// `ip xfrm ARGS`, in the calling thread's namespace; its output.
fn ip_xfrm(args: &str) -> String {
    let out = Command::new("ip").arg("xfrm").args(args.split_whitespace()).output().expect("run ip");
    assert!(out.status.success(), "ip xfrm {args}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn indexes(installed: &[Installed]) -> BTreeMap<(Dir, crate::xfrm::Selector), u32> {
    installed.iter().map(|i| (i.policy.key(), i.index)).collect()
}

fn policies_of(installed: &[Installed]) -> Vec<Policy> {
    installed.iter().map(|i| i.policy).collect()
}

#[test]
fn diff_adds_updates_and_removes_by_direction_and_selector() {
    let before = desired(IsolationMode::Request, &["10.0.0.0/28"], &["10.1.0.0/16"]);
    let after = desired(IsolationMode::Require, &["172.16.0.0/12"], &["10.0.0.0/28"]);
    let installed: Vec<Installed> = before.iter().zip(1..).map(|(p, index)| Installed { policy: *p, index }).collect();
    let plan = diff(&installed, &after);
    let show = |l: &[Policy]| l.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(
        show(&plan.add),
        [
            "src 172.16.0.0/12 dst 0.0.0.0/0 dir in priority 65771 tmpl proto esp mode transport reqid 0 level use",
            "src 0.0.0.0/0 dst 172.16.0.0/12 dir out priority 65771 tmpl proto esp mode transport reqid 21062 level required",
        ]
    );
    // The same selectors, secure before and exempt now: updated in place.
    assert_eq!(
        show(&plan.update),
        ["src 10.0.0.0/28 dst 0.0.0.0/0 dir in priority 65738", "src 0.0.0.0/0 dst 10.0.0.0/28 dir out priority 65738"]
    );
    let removed: Vec<Policy> = plan.remove.iter().map(|i| i.policy).collect();
    assert_eq!(
        show(&removed),
        ["src 10.1.0.0/16 dst 0.0.0.0/0 dir in priority 65762", "src 0.0.0.0/0 dst 10.1.0.0/16 dir out priority 65762"]
    );
    assert_eq!(diff(&installed, &before), Plan::default());
}

#[test]
#[ignore = "needs root: run by integration/run-all.sh (--include-ignored)"]
fn apply_changes_only_the_differences_and_remove_all_removes_everything() {
    in_new_netns(|| {
        assert_eq!(ip_xfrm("policy show"), "", "the new namespace has no policies");
        let mut x = Xfrm::open().unwrap();
        let first = desired(IsolationMode::SecureRequest, &[], &["10.0.0.0/28", "dns"]);
        assert_eq!(x.apply(&first).unwrap(), Changes { added: first.len(), updated: 0, removed: 0 });
        let installed = x.dump().unwrap();
        assert_eq!(policies_of(&installed), first);
        // `ip xfrm` sees them too, as it would have made them.
        let shown = ip_xfrm("policy show");
        assert_eq!(shown.lines().filter(|l| l.starts_with("src ")).count(), first.len(), "{shown}");
        assert!(shown.contains(
            "src 0.0.0.0/0 dst 10.0.0.0/8 \n\tdir out priority 65779 ptype main \n\ttmpl src 0.0.0.0 dst 0.0.0.0\n\t\tproto esp reqid 21062 mode transport\nsrc "
        ), "{shown}");

        // Nothing to do: nothing done, same indexes.
        assert_eq!(x.apply(&first).unwrap(), Changes::default());
        assert_eq!(x.dump().unwrap(), installed);

        // A secure subnet added, an exemption made secure (updated in place), dns no longer exempt.
        let second = desired(IsolationMode::Require, &["172.16.0.0/12", "10.0.0.0/28"], &[]);
        assert_eq!(x.apply(&second).unwrap(), Changes { added: 2, updated: 2, removed: 4 });
        let now = x.dump().unwrap();
        assert_eq!(policies_of(&now), second);
        // Kept and updated policies (UPDPOLICY) keep their index.
        let (old, new) = (indexes(&installed), indexes(&now));
        for (key, index) in &new {
            if let Some(was) = old.get(key) {
                assert_eq!(index, was, "{key:?}");
            }
        }

        assert_eq!(x.remove_all().unwrap(), Changes { added: 0, updated: 0, removed: second.len() });
        assert!(x.dump().unwrap().is_empty());
        assert_eq!(ip_xfrm("policy show"), "");
    });
}

#[test]
#[ignore = "needs root: run by integration/run-all.sh (--include-ignored)"]
fn policies_made_by_ip_xfrm_from_their_display_are_equal() {
    in_new_netns(|| {
        let want = desired(IsolationMode::Require, &[], &["10.0.0.0/28", "dns"]);
        for p in &want {
            ip_xfrm(&format!("policy add {p}"));
        }
        let mut x = Xfrm::open().unwrap();
        assert_eq!(policies_of(&x.dump().unwrap()), want);
        assert_eq!(x.apply(&want).unwrap(), Changes::default());
    });
}

#[test]
#[ignore = "needs root: run by integration/run-all.sh (--include-ignored)"]
fn policies_that_are_not_ringfences_are_left_alone() {
    in_new_netns(|| {
        // Outside the band; outside the band with a selector Ringfence wants;
        // in the band but with a mark, which Ringfence never sets.
        ip_xfrm("policy add src 192.0.2.0/24 dst 0.0.0.0/0 dir in priority 5");
        ip_xfrm("policy add src 0.0.0.0/0 dst 10.0.0.0/8 dir out priority 100 tmpl proto esp mode transport");
        ip_xfrm("policy add src 0.0.0.0/0 dst 198.51.100.0/24 dir out priority 65540 mark 7");
        let foreign = ip_xfrm("policy show");
        let mut x = Xfrm::open().unwrap();
        assert!(x.dump().unwrap().is_empty());

        let want = desired(IsolationMode::Request, &[], &[]);
        let Err(Error::Changes { done, failed }) = x.apply(&want) else { panic!("the clash is not reported") };
        assert_eq!(done, Changes { added: want.len() - 1, updated: 0, removed: 0 });
        let [f] = &failed[..] else { panic!("{failed:?}") };
        assert_eq!((f.op, f.policy.dir, f.policy.selector.dst.to_string()), (Op::Add, Dir::Out, "10.0.0.0/8".into()));
        assert_eq!(f.error.raw_os_error(), Some(nix::libc::EEXIST));
        let message = Error::Changes { done, failed }.to_string();
        assert!(
            message.starts_with("cannot add xfrm policy `src 0.0.0.0/0 dst 10.0.0.0/8 dir out priority"),
            "{message}"
        );
        assert!(message.ends_with("(a policy that is not Ringfence's has this selector and direction)"), "{message}");

        assert_eq!(x.remove_all().unwrap().removed, want.len() - 1);
        assert_eq!(ip_xfrm("policy show"), foreign);
    });
}

#[test]
#[ignore = "needs root: run by integration/run-all.sh (--include-ignored)"]
fn kick_replaces_the_held_policies_by_themselves_and_last_used_reads_their_stamps() {
    in_new_netns(|| {
        let mut x = Xfrm::open().unwrap();
        let want = desired(IsolationMode::SecureRequest, &[], &["dns"]);
        x.apply(&want).unwrap();
        let before = x.dump().unwrap();
        x.kick().unwrap();
        // Nothing changed that a dump shows: the same policies, at the same indexes.
        assert_eq!(x.dump().unwrap(), before);
        let mut stamps = x.last_used().unwrap();
        stamps.sort();
        assert_eq!(stamps.iter().map(|(p, _)| *p).collect::<Vec<_>>(), policies_of(&before));
        // An inbound policy is stamped by the packets it checks: none yet.
        assert!(stamps.iter().all(|(p, used)| p.dir == Dir::Out || *used == 0), "{stamps:?}");
    });
}
