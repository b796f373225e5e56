//! The `groups:` section and the rules that name groups (docs/isolation.md).
//!
//! A group is the peers whose certificate subject matches a pattern. charon,
//! not the address, decides a peer's group: the daemon loads one charon
//! connection per pattern of [`connections`], each with a CHILD_SA of its own
//! static reqid, and nftables tells groups apart by the reqid of the SA a
//! packet came over (`ipsec in reqid`).
//!
//! Groups merge like rules: the union of every file's groups, names unique.

mod dn;

use std::collections::BTreeSet;

use serde::Serialize;

pub use dn::DnPattern;

use super::diag::Ctx;
use super::diag::{Diagnostic, Place};
use super::isolation::Isolation;
use super::raw::{Action, Direction, Groups, RawRule};
use super::text::Quoted;

/// The reqid of the first group connection: the one after isolation's own
/// connection's (`xfrm::REQID`, 0x5246), which peers in no group use.
pub const FIRST_REQID: u32 = 0x5247;

/// Group connections' reqids are FIRST_REQID.. up to the end of `xfrm::REQIDS`.
const REQID_SLOTS: u32 = 255;

/// Group connections are the closure of the patterns under intersection,
/// which can grow combinatorially: past this many, the policy is refused.
pub const MAX_CONNECTIONS: usize = 64;

const MAX_NAME_CHARS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupDef {
    pub name: String,
    pub subject: DnPattern,
    /// Where its name is written.
    pub place: Place,
}

/// One charon connection for the groups: its peers' identity must match
/// `pattern` (charon's `remote.id`, written as `pattern.to_string()`), and
/// its CHILD_SA has the static `reqid`. Its peers are in every group of `groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupConn {
    pub pattern: DnPattern,
    pub reqid: u32,
    pub groups: BTreeSet<String>,
}

/// The connections that make every group exact, sorted by pattern text;
/// `None` if there would be more than [`MAX_CONNECTIONS`]. A connection's
/// reqid follows from its pattern's text (see [`reqids`]).
///
/// charon gives a peer the connection whose pattern matches its identity with
/// the fewest wildcards. With one connection per group pattern only, a peer
/// that matches two groups' patterns would get one of the two and what only
/// the other grants would be lost. So every intersection of patterns gets a
/// connection too: the patterns a subject matches then always include their
/// intersection, the most specific of them, which is within exactly the
/// groups the subject is in. A group's reqids are those of the connections
/// whose pattern is within the group's.
pub fn connections(groups: &[GroupDef]) -> Option<Vec<GroupConn>> {
    let mut closure: Vec<DnPattern> = Vec::new();
    for g in groups {
        if !closure.contains(&g.subject) {
            closure.push(g.subject.clone());
        }
    }
    // Each pattern meets every earlier one once; intersections join the end
    // and meet every pattern before them in turn.
    let mut next = 0;
    while next < closure.len() {
        for earlier in 0..next {
            if let Some(both) = closure[next].intersect(&closure[earlier]) {
                if !closure.contains(&both) {
                    closure.push(both);
                }
            }
        }
        if closure.len() > MAX_CONNECTIONS {
            return None;
        }
        next += 1;
    }
    let mut closure: Vec<(String, DnPattern)> = closure.into_iter().map(|p| (p.to_string(), p)).collect();
    closure.sort();
    let reqids = reqids(closure.iter().map(|(text, _)| text.as_str()));
    let conns = closure.into_iter().zip(reqids).map(|((_, pattern), reqid)| GroupConn {
        groups: groups.iter().filter(|g| pattern.within(&g.subject)).map(|g| g.name.clone()).collect(),
        pattern,
        reqid,
    });
    Some(conns.collect())
}

/// The reqids of connections whose patterns have these texts (sorted): each
/// from a hash of its text (FNV-1a, the same in every run), the next free one
/// on a collision. So a connection keeps its reqid, and its SAs stay up, when
/// other groups are added, changed or removed (a changed reqid is a changed
/// connection, whose SAs Ringfence closes).
fn reqids<'a>(texts: impl Iterator<Item = &'a str>) -> Vec<u32> {
    let mut taken = BTreeSet::new();
    texts
        .map(|text| {
            let hash = text.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
            let mut slot = hash % REQID_SLOTS;
            while !taken.insert(slot) {
                slot = (slot + 1) % REQID_SLOTS;
            }
            FIRST_REQID + slot
        })
        .collect()
}

/// Lowercase letters, digits and `-`: a group's name is part of nftables set
/// names and log prefixes, where `_` and spaces separate words.
fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= MAX_NAME_CHARS
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a group name (lowercase letters, digits and -, starting with a letter, at most {MAX_NAME_CHARS})",
            Quoted(name)
        ))
    }
}

/// Takes the groups one file defines.
pub(super) fn merge(cx: &mut Ctx, groups: &mut Vec<GroupDef>, pending: &mut Pending, raw: &Groups) {
    for (name_at, def) in &raw.0 {
        let name = &name_at.value;
        // A group in error is reported once, not again at every rule that names it.
        pending.defined.insert(name.clone());
        if let Err(m) = check_name(name) {
            cx.error(name_at, format!("groups: {m}"));
            continue;
        }
        if let Some(first) = groups.iter().find(|g| g.name == *name) {
            cx.error(
                name_at,
                format!("groups.{name}: {} is already the name of the group at {}", Quoted(name), first.place),
            );
            continue;
        }
        let Some(subject) = &def.value.subject else {
            cx.error(def, format!("groups.{name}: missing subject (the certificate subject pattern of its members)"));
            continue;
        };
        match DnPattern::parse(&subject.value) {
            Ok(pattern) => groups.push(GroupDef { name: name.clone(), subject: pattern, place: cx.place(name_at) }),
            Err(m) => cx.error(subject, format!("groups.{name}.subject: {m}")),
        }
    }
}

/// The merged groups' connections, with what is wrong with the groups as a whole.
pub(super) fn check(groups: &[GroupDef], diags: &mut Vec<Diagnostic>) -> Vec<GroupConn> {
    for (i, a) in groups.iter().enumerate() {
        for b in &groups[..i] {
            if let Some((mine, theirs)) = a.subject.case_clash(&b.subject) {
                let m = format!(
                    "groups.{}: {mine} and {theirs} of group {} at {} differ in case only; charon ignores case or not depending on how a certificate encodes the value: spell them alike",
                    a.name, b.name, b.place
                );
                diags.push(Diagnostic::new(a.place.clone(), m));
            }
        }
    }
    connections(groups).unwrap_or_else(|| {
        if let Some(last) = groups.last() {
            let m = format!(
                "groups.{}: the groups' subject patterns and their intersections need more than {MAX_CONNECTIONS} charon connections; use fewer overlapping patterns",
                last.name
            );
            diags.push(Diagnostic::new(last.place.clone(), m));
        }
        Vec::new()
    })
}

/// What rules ask of groups and of isolation, checked once every file is merged
/// (a group may be defined in a later file).
#[derive(Default)]
pub(super) struct Pending {
    /// Every group name defined, valid or not.
    defined: BTreeSet<String>,
    /// `rules[i].remote-groups[j]`, the name written there, and where.
    refs: Vec<(String, String, Place)>,
    /// The key of a rule that needs IPsec, and where.
    ipsec: Vec<(String, Place)>,
}

impl Pending {
    /// A rule's `remote-groups` and `require-secure` (which the groups imply),
    /// checked against its direction and action.
    pub(super) fn rule(
        &mut self,
        cx: &mut Ctx,
        i: usize,
        r: &RawRule,
        direction: Direction,
        action: Action,
    ) -> (Vec<String>, bool) {
        let key = |k: &str| format!("rules[{i}].{k}");
        let groups = cx.list(&key("remote-groups"), &r.remote_groups, |s| Ok::<_, String>(s.clone()));
        for (j, item) in r.remote_groups.iter().enumerate() {
            self.refs.push((format!("{}[{j}]", key("remote-groups")), item.value.clone(), cx.place(item)));
        }
        let flag = r.require_secure.as_ref();
        if let (Some(f), false) = (flag.filter(|f| !f.value.0), groups.is_empty()) {
            cx.error(
                f,
                format!(
                    "{}: false contradicts remote-groups, which match only packets that came over IPsec",
                    key("require-secure")
                ),
            );
        }
        let asks = match (r.remote_groups.first(), flag.filter(|f| f.value.0)) {
            (Some(first), _) => Some(("remote-groups", cx.place(first))),
            (None, Some(f)) => Some(("require-secure", cx.place(f))),
            (None, None) => None,
        };
        if let (Action::Bypass, true, Some(at)) = (action, groups.is_empty(), &r.action) {
            cx.error(
                at,
                format!(
                    "{}: bypass needs remote-groups, the peers whose authentication lets them past block rules",
                    key("action")
                ),
            );
        }
        if let Some((k, place)) = asks {
            let mut error = |m: String| cx.diags.push(Diagnostic::new(place.clone(), format!("{}: {m}", key(k))));
            if direction == Direction::Out {
                error(format!("{k} applies to direction in only: the kernel knows the SA of the packets it receives, not of those it sends"));
            }
            if action == Action::Block {
                error(format!("a block rule cannot be limited to IPsec (it would let the same packets through in clear); {k} goes with allow and bypass"));
            }
            self.ipsec.push((key(k), place));
        }
        let secure = !groups.is_empty() || flag.is_some_and(|f| f.value.0);
        (groups, secure)
    }

    pub(super) fn check(self, groups: &[GroupDef], isolation: &Isolation, diags: &mut Vec<Diagnostic>) {
        for (key, name, place) in self.refs {
            if !self.defined.contains(&name) {
                let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
                let known = if names.is_empty() {
                    "no group is defined".into()
                } else {
                    format!("groups: {}", names.join(", "))
                };
                diags.push(Diagnostic::new(place, format!("{key}: {} is not a group ({known})", Quoted(&name))));
            }
        }
        if !isolation.enabled() {
            for (key, place) in self.ipsec {
                let m = format!(
                    "{key}: needs isolation, which is off (isolation.mode): only its IPsec tells who sent a packet"
                );
                diags.push(Diagnostic::new(place, m));
            }
        }
    }
}

#[cfg(test)]
mod tests;
