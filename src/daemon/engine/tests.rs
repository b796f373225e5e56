use super::*;
use crate::backend::NoopBackend;
use crate::testutil::{write, TempDir};

/// The tests count and name the rules of their own files: the default layer
/// is masked and core networking is off.
fn engine(dir: &TempDir) -> Engine<NoopBackend> {
    std::os::unix::fs::symlink("/dev/null", dir.0.join("00-default.yaml")).unwrap();
    write(&dir.0, "99-no-core.yaml", "settings:\n  core-networking: false\n");
    let mut e = Engine::new(crate::policy::Dirs::new(vec![dir.0.clone()], Vec::new()), NoopBackend::default());
    e.reload(Trigger::Files).unwrap();
    e
}

const ONE: &str = "rules:\n  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [80] }\n";
const TWO: &str = "rules:\n  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [80] }\n  - { name: dns, direction: in, action: allow, protocol: udp, local-ports: [53] }\n";
const THREE: &str = "rules:\n  - { name: ssh, direction: in, action: block, protocol: tcp, local-ports: [22] }\n";
const REQUEST: Trigger = Trigger::Request { confirm: None };

fn confirm(secs: u64) -> Trigger {
    Trigger::Request { confirm: Some(Duration::from_secs(secs)) }
}

fn rules<B: Backend>(e: &Engine<B>) -> usize {
    e.applied.as_ref().unwrap().policy.rules.len()
}

#[test]
fn a_bad_policy_changes_nothing() {
    let d = TempDir::new("bad");
    write(&d.0, "10.yaml", ONE);
    let mut e = engine(&d);
    write(
        &d.0,
        "20.yaml",
        "rules:\n  - { name: x, direction: in, action: allow, protocol: tcp, local-ports: [70000] }\n",
    );
    let err = e.reload(Trigger::Files).unwrap_err();
    assert!(err.to_string().contains(&format!("{}:2:", d.0.join("20.yaml").display())), "{err}");
    assert_eq!((e.backend.applied.len(), e.generation), (1, 1));
    assert!(e.last_error.as_deref().unwrap().contains("70000 is not a port"));
}

#[test]
fn a_failed_apply_keeps_the_old_state() {
    let d = TempDir::new("fail");
    write(&d.0, "10.yaml", ONE);
    let mut e = engine(&d);
    write(&d.0, "10.yaml", TWO);
    e.backend.fail_next = true;
    assert!(matches!(e.reload(Trigger::Files), Err(EngineError::Apply(_))));
    assert_eq!(rules(&e), 1);
}

#[test]
fn a_failed_read_back_is_reported_but_the_new_table_is_what_the_kernel_has() {
    let d = TempDir::new("verify");
    write(&d.0, "10.yaml", ONE);
    let mut e = engine(&d);
    write(&d.0, "10.yaml", TWO);
    e.backend.fail_verify = true;
    assert!(matches!(e.reload(Trigger::Files), Err(EngineError::Verify(_))));
    assert_eq!((rules(&e), e.generation), (2, 2));
}

#[test]
fn an_unchanged_table_is_not_sent_again() {
    let d = TempDir::new("same");
    write(&d.0, "10.yaml", ONE);
    let mut e = engine(&d);
    write(&d.0, "10.yaml", &format!("# a comment moves nothing that matters\n{ONE}"));
    assert_eq!(e.reload(Trigger::Files).unwrap(), Outcome::Unchanged);
    assert_eq!(e.backend.applied.len(), 1);
    assert_eq!(e.applied.as_ref().unwrap().policy.rules[0].place.line, 3, "the policy's places are current");
}

#[test]
fn an_unconfirmed_apply_rolls_back_exactly() {
    let d = TempDir::new("rollback");
    write(&d.0, "10.yaml", ONE);
    let mut e = engine(&d);
    let first = e.backend.applied[0].clone();
    write(&d.0, "10.yaml", TWO);
    e.reload(confirm(60)).unwrap();
    assert_eq!(rules(&e), 2);
    e.rollback().unwrap();
    assert_eq!(e.backend.applied.last(), Some(&first), "the previous table, exactly");
    assert_eq!(rules(&e), 1);
}

#[test]
fn a_confirmed_apply_stays() {
    let d = TempDir::new("confirm");
    write(&d.0, "10.yaml", ONE);
    let mut e = engine(&d);
    write(&d.0, "10.yaml", TWO);
    e.reload(confirm(60)).unwrap();
    e.confirm().unwrap();
    assert!(e.pending.is_none());
    assert!(matches!(e.confirm(), Err(EngineError::NothingToConfirm)));
    assert!(matches!(e.rollback(), Err(EngineError::NothingToConfirm)));
    assert_eq!(rules(&e), 2);
}

#[test]
fn the_window_covers_files_edited_after_it_opens() {
    let d = TempDir::new("window");
    write(&d.0, "10.yaml", ONE);
    let mut e = engine(&d);
    e.reload(confirm(60)).unwrap(); // arm with the files as they are
    write(&d.0, "10.yaml", THREE); // the risky edit, applied by the watcher
    e.reload(Trigger::Files).unwrap();
    assert_eq!(e.applied.as_ref().unwrap().policy.rules[0].name, "ssh");
    e.rollback().unwrap();
    assert_eq!(e.applied.as_ref().unwrap().policy.rules[0].name, "web");
}

#[test]
fn a_rolled_back_policy_is_not_reapplied_by_itself() {
    let d = TempDir::new("guard");
    write(&d.0, "10.yaml", ONE);
    let mut e = engine(&d);
    write(&d.0, "10.yaml", THREE);
    e.reload(confirm(60)).unwrap();
    e.rollback().unwrap();
    assert!(matches!(e.reload(Trigger::Files), Err(EngineError::RolledBack)));
    assert_eq!(e.applied.as_ref().unwrap().policy.rules[0].name, "web");
    // Editing the files again, or an explicit apply, lifts the guard.
    e.reload(REQUEST).unwrap();
    assert_eq!(e.applied.as_ref().unwrap().policy.rules[0].name, "ssh");
}

#[test]
fn a_flushed_table_is_restored_even_when_the_policy_is_unchanged() {
    let d = TempDir::new("flushed");
    write(&d.0, "10.yaml", ONE);
    let mut e = engine(&d);
    e.backend.flushed = true;
    assert_eq!(e.reload(Trigger::Files).unwrap(), Outcome::Applied);
    assert_eq!(e.backend.applied.len(), 2);
    assert_eq!(e.reload(Trigger::Files).unwrap(), Outcome::Unchanged);
    assert_eq!(e.reload(REQUEST).unwrap(), Outcome::Applied, "an explicit apply always applies");
}

#[test]
fn a_failed_rollback_keeps_the_window_open_and_retries() {
    let d = TempDir::new("retry");
    write(&d.0, "10.yaml", ONE);
    let mut e = engine(&d);
    write(&d.0, "10.yaml", THREE);
    e.reload(confirm(60)).unwrap();
    e.backend.fail_next = true;
    assert!(e.rollback().is_err());
    let retry_in = e.pending.as_ref().expect("still pending").deadline.saturating_duration_since(Instant::now());
    assert!(retry_in <= ROLLBACK_RETRY, "{retry_in:?}");
    e.rollback().unwrap();
    assert_eq!(e.applied.as_ref().unwrap().policy.rules[0].name, "web");
}

#[test]
fn host_changes_send_only_the_changed_elements() {
    use crate::dynamic::{DynState, Entry};
    use crate::policy::values::{parse_addr_range, Keyword};
    let gateways = |addrs: &[&str]| {
        let mut s = DynState::default();
        let entries = addrs.iter().map(|a| Entry {
            interface: None,
            addresses: parse_addr_range(a).unwrap(),
            source: "test".into(),
        });
        s.values.insert((Keyword::DefaultGateway, true), entries.collect());
        s
    };
    let d = TempDir::new("dynamic");
    write(
        &d.0,
        "10.yaml",
        "rules:\n  - { name: gw, direction: in, action: allow, remote-addresses: [default-gateway] }\n",
    );
    let mut e = engine(&d);
    assert_eq!(e.update_dynamic(gateways(&["10.0.0.1", "10.0.0.2"])).unwrap(), 1);
    let before = e.snapshot();
    assert_eq!(e.update_dynamic(gateways(&["10.0.0.2", "10.0.0.3"])).unwrap(), 1);
    let gateway_set = |a: &Applied| a.compiled.set("dyn_default_gateway4").elems.clone();
    let (was, is) = (gateway_set(before.applied.as_ref().unwrap()), gateway_set(e.applied.as_ref().unwrap()));
    assert!(was != is, "a published snapshot keeps the sets it was taken with");
    let last = &e.backend.set_updates[1][0];
    assert_eq!(
        (last.name.as_str(), last.flush, last.delete.len(), last.add.len()),
        ("dyn_default_gateway4", false, 1, 1)
    );
    let many: Vec<String> = (1..=20).map(|i| format!("10.1.0.{i}")).collect();
    e.update_dynamic(gateways(&many.iter().map(String::as_str).collect::<Vec<_>>())).unwrap();
    e.update_dynamic(gateways(&["10.0.0.2", "10.0.0.3"])).unwrap();
    let last = &e.backend.set_updates[3][0];
    assert_eq!((last.flush, last.delete.len(), last.add.len()), (true, 0, 2), "20 deletions: flush and re-add instead");
    assert_eq!(
        e.update_dynamic(gateways(&["10.0.0.3", "10.0.0.2"])).unwrap(),
        0,
        "the same addresses: nothing to send"
    );
    assert_eq!(e.generation, 1, "no table replacement");

    e.backend.fail_next = true;
    assert!(e.update_dynamic(gateways(&["10.0.0.9"])).is_err());
    let kept =
        e.applied.as_ref().unwrap().compiled.table.sets.iter().find(|s| s.name == "dyn_default_gateway4").unwrap();
    assert_eq!(kept.elems.len(), 2, "a failed update leaves what the kernel has");
}
