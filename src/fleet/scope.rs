//! Scopes and the labels that select them.
//!
//! A scope is `all` (every host) or a selector: one or more `LABEL=VALUE`
//! conditions joined by commas, all of which must hold (`role=web`,
//! `role=web,site=paris`). Labels and values are letters, digits, `.`, `_`
//! and `-`. The scope's name is its etcd key's last part, so a scope is
//! written the same way everywhere.

use std::collections::BTreeMap;

/// A host's labels (the agent's configuration).
pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Selector(Vec<(String, String)>),
}

fn word(s: &str) -> bool {
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

    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Scope::All => true,
            Scope::Selector(conditions) => conditions.iter().all(|(l, v)| labels.get(l) == Some(v)),
        }
    }
}

/// The order in which scopes layer: `all` first, then the others by name. A
/// file of a later scope replaces the file of the same name of an earlier
/// one, as a later policy directory's does.
pub fn layer_order(a: &str, b: &str) -> std::cmp::Ordering {
    (a != "all", a).cmp(&(b != "all", b))
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
        let mut scopes = vec!["site=paris", "all", "role=web"];
        scopes.sort_by(|a, b| layer_order(a, b));
        assert_eq!(scopes, ["all", "role=web", "site=paris"]);
    }
}
