//! Staged rules (`stage: audit`, on a rule or on a whole file): which rules
//! are staged, and what a staged rule may not say. Staging is for rules
//! only: what a staged rule would decide differently is counted against the
//! enforced policy's own defaults, so a staged file cannot change those (nor
//! settings, isolation or groups).

use serde_saphyr::Spanned as S;

use super::diag::Ctx;
use super::raw::{Action, RawFile, RawRule, Stage};
use super::validate::keys_set;

/// Reports the keys a staged file may not have.
pub(super) fn check_file(cx: &mut Ctx, raw: &RawFile) {
    let Some(at) = &raw.stage else { return };
    let sets = keys_set(&[
        ("profiles", raw.profiles.is_some()),
        ("settings", raw.settings.is_some()),
        ("isolation", raw.isolation.is_some()),
        ("groups", raw.groups.is_some()),
    ]);
    if !sets.is_empty() {
        let m = format!(
            "stage: a staged file holds rules only, and this one sets {}: staged rules are measured against the enforced defaults and settings",
            sets.join(" and ")
        );
        cx.error(at, m);
    }
}

/// Whether rule `i` of a file (staged itself or by `file`) is staged;
/// reports what it says that cannot be evaluated beside the enforced rules.
pub(super) fn is_staged(cx: &mut Ctx, i: usize, file: Option<&S<Stage>>, r: &RawRule) -> bool {
    if r.stage.is_none() && file.is_none() {
        return false;
    }
    let key = |k: &str| format!("rules[{i}].{k}");
    // Authenticated bypass depends on the SA of the packet, through gates the
    // staged chains do not have; a staged block rule is measured against it as
    // against any enforced rule.
    let bypass = "a staged rule cannot use authenticated bypass (action bypass, remote-groups, require-secure): it is evaluated without IPsec gates; enforce it, or stage it without them";
    if let Some(at) = r.action.as_ref().filter(|a| a.value == Action::Bypass) {
        cx.error(at, format!("{}: {bypass}", key("action")));
    }
    if let Some(first) = r.remote_groups.first() {
        cx.error(first, format!("{}: {bypass}", key("remote-groups")));
    }
    if let Some(at) = r.require_secure.as_ref().filter(|f| f.value.0) {
        cx.error(at, format!("{}: {bypass}", key("require-secure")));
    }
    if let Some(at) = r.log.as_ref().filter(|f| f.value.0) {
        let m = "log: true is for enforced rules; what a staged rule would decide otherwise is logged to monitor (rate-limited) without it";
        cx.error(at, format!("{}: {m}", key("log")));
    }
    true
}
