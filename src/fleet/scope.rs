//! Scopes and the labels that select them.
//!
//! A scope is `all` (every host) or a selector: one or more `LABEL=VALUE`
//! conditions joined by commas, all of which must hold (`role=web`,
//! `role=web,site=paris`). Labels and values are letters, digits, `.`, `_`
//! and `-`. The scope's name is its etcd key's last part, so a scope is
//! written the same way everywhere.
//!
//! Every host has the label `host` (its name) without configuring it, so
//! that a scope can name single hosts: `fleet rollout` publishes its canary
//! part to `S,host=NAME` (or `host=NAME` for `all`), one scope per canary.

use std::collections::BTreeMap;

/// A host's labels (the agent's configuration, and `host`).
pub type Labels = BTreeMap<String, String>;

/// The label every host has: its name.
pub const HOST: &str = "host";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Selector(Vec<(String, String)>),
}

/// A label or value: letters, digits, `.`, `_`, `-`, at most 63.
pub(super) fn word(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope, String> {
        if s == "all" {
            return Ok(Scope::All);
        }
        let conditions = s
            .split(',')
            .map(|c| match c.split_once('=') {
                Some((label, value)) if word(label) && word(value) => Ok((label.to_string(), value.to_string())),
                _ => Err(format!("{c:?} is not LABEL=VALUE (letters, digits, '.', '_', '-')")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("scope {s:?}: {e}; a scope is `all` or LABEL=VALUE[,LABEL=VALUE...]"))?;
        Ok(Scope::Selector(conditions))
    }

    /// Whether the scope names single hosts (has a `host` condition).
    pub fn names_hosts(&self) -> bool {
        matches!(self, Scope::Selector(conditions) if conditions.iter().any(|(l, _)| l == HOST))
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Scope::All => true,
            Scope::Selector(conditions) => conditions.iter().all(|(l, v)| labels.get(l) == Some(v)),
        }
    }
}

/// `scope` narrowed to one host: a rollout's canary scope.
pub fn for_host(scope: &str, host: &str) -> String {
    match scope {
        "all" => format!("{HOST}={host}"),
        _ => format!("{scope},{HOST}={host}"),
    }
}

/// The order in which scopes layer: `all` first, then the selectors by name,
/// then those that name hosts by name (the most specific last, so that a
/// canary's file replaces its scope's). A file of a later scope replaces the
/// file of the same name of an earlier one, as a later policy directory's does.
pub fn layer_order(a: &str, b: &str) -> std::cmp::Ordering {
    let rank = |s: &str| match Scope::parse(s) {
        Ok(Scope::All) => 0,
        Ok(scope) if scope.names_hosts() => 2,
        _ => 1,
    };
    (rank(a), a).cmp(&(rank(b), b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(l, v)| (l.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selectors_match_every_condition() {
        let web_paris = labels(&[("role", "web"), ("site", "paris")]);
        let db = labels(&[("role", "db")]);
        assert!(Scope::parse("all").unwrap().matches(&db));
        let web = Scope::parse("role=web").unwrap();
        assert!(web.matches(&web_paris));
        assert!(!web.matches(&db));
        let both = Scope::parse("role=web,site=paris").unwrap();
        assert!(both.matches(&web_paris));
        assert!(!both.matches(&labels(&[("role", "web")])));
        assert!(!Scope::parse("role=web").unwrap().matches(&Labels::new()));
    }

    #[test]
    fn malformed_scopes_are_refused() {
        for bad in ["", "role", "role=", "=web", "role=web,", "role=we/b", "a=b=c", "All"] {
            let e = Scope::parse(bad).unwrap_err();
            assert!(e.contains("LABEL=VALUE"), "{bad}: {e}");
        }
    }

    #[test]
    fn all_layers_first() {
        let mut scopes = vec!["site=paris", "host=h1", "role=web,host=h1", "all", "role=web"];
        scopes.sort_by(|a, b| layer_order(a, b));
        assert_eq!(scopes, ["all", "role=web", "site=paris", "host=h1", "role=web,host=h1"]);
        assert_eq!(for_host("all", "h1"), "host=h1");
        assert_eq!(for_host("role=web", "h1"), "role=web,host=h1");
    }
}
