//! Certificate subject patterns, read and compared exactly as strongSwan's
//! charon reads and compares a connection's `remote.id` (libstrongswan's
//! `identification.c`: `atodn` and `compare_dn`):
//!
//! - a pattern matches a subject only if both have the same attribute types,
//!   in the same order and number (`O=Example, CN=*` never matches
//!   `C=XX, O=Example, CN=host`);
//! - a value of exactly `*` matches any value; any other value, `scan*`
//!   included, is compared as it is written;
//! - charon picks, of the connections whose pattern matches a peer, the one
//!   with the fewest `*` (it ranks up to 17 of them apart, hence
//!   [`MAX_ATTRIBUTES`]).
//!
//! Two patterns "intersect" when some subject matches both, and one is
//! "within" another when every subject it matches, the other matches too;
//! with the rules above both are decided value by value.

use std::fmt;

use serde::Serialize;

use crate::policy::text::Quoted;

/// Attribute types as charon names them (its `x501rdns` table), with the
/// other names this parser also reads. Case does not matter, as in charon.
/// Beware: charon's `SN` is serialNumber (OpenSSL's `SN` is surname, `S` here).
const ATTRIBUTES: &[(&str, &[&str])] = &[
    ("C", &[]),
    ("ST", &[]),
    ("L", &[]),
    ("O", &[]),
    ("OU", &[]),
    ("CN", &[]),
    ("DC", &[]),
    ("UID", &[]),
    ("E", &["Email", "emailAddress"]),
    ("SN", &["serialNumber"]),
    ("S", &["surname"]),
    ("G", &["GN", "givenName"]),
    ("T", &["title"]),
    ("D", &[]),
    ("N", &[]),
    ("I", &[]),
    ("ID", &[]),
    ("EN", &["employeeNumber"]),
    ("UN", &["unstructuredName"]),
    ("UA", &["unstructuredAddress"]),
    ("ND", &[]),
    ("dnQualifier", &[]),
    ("TCGID", &[]),
];

/// charon counts a match's wildcards only up to 17 (`matches_dn` caps them at
/// `ID_MATCH_ONE_WILDCARD - ID_MATCH_MAX_WILDCARDS`): with more attributes two
/// patterns could tie, and the choice between them would be charon's.
pub const MAX_ATTRIBUTES: usize = 17;

/// One attribute of a pattern: its canonical type and its value (`None` is `*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Rdn {
    attr: &'static str,
    value: Option<String>,
}

/// A subject pattern such as `C=XX, O=Example, OU=Scanners, CN=*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnPattern(Vec<Rdn>);

/// The way charon writes it (and reads it back): `C=XX, O=Example, CN=*`.
impl fmt::Display for DnPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{}={}", rdn.attr, rdn.value.as_deref().unwrap_or("*"))?;
        }
        Ok(())
    }
}

impl Serialize for DnPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl DnPattern {
    /// Reads `TYPE=VALUE, TYPE=VALUE, ...`. Each error completes
    /// "<pattern> is not a subject pattern: ...", or says why it could never match.
    pub fn parse(s: &str) -> Result<DnPattern, String> {
        let q = Quoted(s);
        let bad = |why: String| Err(format!("{q} is not a subject pattern: {why}"));
        if s.trim().is_empty() {
            return bad("it is empty (write the subject's attributes, such as \"C=XX, O=Example, CN=*\")".into());
        }
        if s.starts_with('/') {
            return bad("write the attributes separated by commas, such as \"C=XX, O=Example, CN=*\"".into());
        }
        if s.contains(['"', '\\']) {
            return bad("charon reads no quotes or escapes in it (a value cannot hold a comma)".into());
        }
        let mut rdns = Vec::new();
        for part in s.split(',') {
            let Some((attr, value)) = part.split_once('=') else {
                return bad(format!("{} is not TYPE=VALUE", Quoted(part.trim())));
            };
            let attr = attr.trim_matches(' ');
            let Some(&(canonical, _)) = ATTRIBUTES
                .iter()
                .find(|(name, others)| std::iter::once(name).chain(*others).any(|n| n.eq_ignore_ascii_case(attr)))
            else {
                let known: Vec<&str> = ATTRIBUTES.iter().map(|(name, _)| *name).collect();
                return bad(format!("{} is not an attribute type charon knows ({})", Quoted(attr), known.join(", ")));
            };
            // charon skips spaces and `=` before a value, and spaces after it.
            let value = value.trim_start_matches([' ', '=']).trim_end_matches(' ');
            let value = match value {
                "" => return bad(format!("{attr} has no value (write {attr}=* for any value)")),
                "*" => None,
                v if v.contains('*') => {
                    let rdn = format!("{attr}={v}");
                    return Err(format!(
                        "{q} can never match as intended: charon compares {} literally; * stands for a whole value only ({attr}=*)",
                        Quoted(&rdn)
                    ));
                }
                v => Some(v.to_string()),
            };
            rdns.push(Rdn { attr: canonical, value });
        }
        if rdns.len() > MAX_ATTRIBUTES {
            return bad(format!("{} attributes, more than the {MAX_ATTRIBUTES} charon ranks apart", rdns.len()));
        }
        Ok(DnPattern(rdns))
    }

    /// Whether both have the same attribute types in the same order, without
    /// which no subject can match both.
    fn same_types(&self, other: &DnPattern) -> bool {
        self.0.len() == other.0.len() && self.0.iter().zip(&other.0).all(|(a, b)| a.attr == b.attr)
    }

    /// The pattern of the subjects that match both, if some do.
    pub fn intersect(&self, other: &DnPattern) -> Option<DnPattern> {
        if !self.same_types(other) {
            return None;
        }
        let rdns = self.0.iter().zip(&other.0).map(|(a, b)| match (&a.value, &b.value) {
            (None, _) => Some(b.clone()),
            (_, None) => Some(a.clone()),
            (Some(x), Some(y)) => (x == y).then(|| a.clone()),
        });
        rdns.collect::<Option<Vec<Rdn>>>().map(DnPattern)
    }

    /// Whether every subject that matches `self` matches `other`.
    pub fn within(&self, other: &DnPattern) -> bool {
        self.same_types(other) && self.0.iter().zip(&other.0).all(|(a, b)| b.value.is_none() || a.value == b.value)
    }

    /// The first attribute whose values differ in case only, as `(self's, other's)`:
    /// charon compares two printable strings ignoring case and a printable
    /// string with a UTF-8 one exactly, so whether both match one subject
    /// depends on how its certificate encodes the value.
    pub fn case_clash(&self, other: &DnPattern) -> Option<(String, String)> {
        if !self.same_types(other) {
            return None;
        }
        self.0.iter().zip(&other.0).find_map(|(a, b)| match (&a.value, &b.value) {
            (Some(x), Some(y)) if x != y && x.eq_ignore_ascii_case(y) => {
                Some((format!("{}={x}", a.attr), format!("{}={y}", b.attr)))
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DnPattern {
        DnPattern::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parsing_and_the_canonical_text() {
        assert_eq!(p("C=XX, O=Example, OU=Scanners, CN=*").to_string(), "C=XX, O=Example, OU=Scanners, CN=*");
        // Synonyms and case of types, spaces and a doubled `=` as charon reads them.
        assert_eq!(
            p(" c = XX,emailAddress=a@example.org ,GN==Ann,serialNumber= 7 ").to_string(),
            "C=XX, E=a@example.org, G=Ann, SN=7"
        );
        assert_eq!(p("surname=Doe, title=*").to_string(), "S=Doe, T=*");
        assert_eq!(p("CN=Müller Wörth").to_string(), "CN=Müller Wörth");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = |s: &str| DnPattern::parse(s).unwrap_err();
        assert_eq!(err(""), "\"\" is not a subject pattern: it is empty (write the subject's attributes, such as \"C=XX, O=Example, CN=*\")");
        assert_eq!(err("scanners"), "\"scanners\" is not a subject pattern: \"scanners\" is not TYPE=VALUE");
        assert_eq!(err("C=XX,, CN=*"), "\"C=XX,, CN=*\" is not a subject pattern: \"\" is not TYPE=VALUE");
        assert!(err("STREET=x, CN=*").starts_with("\"STREET=x, CN=*\" is not a subject pattern: \"STREET\" is not an attribute type charon knows (C, ST, L, O, OU, CN, DC, UID, E, SN,"));
        assert_eq!(err("O=, CN=*"), "\"O=, CN=*\" is not a subject pattern: O has no value (write O=* for any value)");
        assert_eq!(
            err("O=Example, CN=scan*"),
            "\"O=Example, CN=scan*\" can never match as intended: charon compares \"CN=scan*\" literally; * stands for a whole value only (CN=*)"
        );
        // Found by fuzzing (`policy/fuzz.rs`): the value was quoted whole.
        let huge = format!("DC=x, DC={}*", "]".repeat(2000));
        assert_eq!(
            err(&huge),
            format!(
                "\"DC=x, DC={}…\" (2010 characters) can never match as intended: charon compares \"DC={}…\" (2004 characters) literally; * stands for a whole value only (DC=*)",
                "]".repeat(71),
                "]".repeat(77)
            )
        );
        assert!(err("/C=XX/CN=*").contains("separated by commas"));
        assert!(err("CN=\"Doe, J\"").contains("no quotes or escapes"));
        let long = vec!["DC=x"; MAX_ATTRIBUTES + 1].join(", ");
        assert!(err(&long).ends_with("18 attributes, more than the 17 charon ranks apart"), "{}", err(&long));
        assert!(DnPattern::parse(&vec!["DC=x"; MAX_ATTRIBUTES].join(", ")).is_ok());
    }

    #[test]
    fn intersection_needs_the_same_types_in_the_same_order() {
        let scanners = p("C=XX, O=Example, OU=Scanners, CN=*");
        let example = p("C=XX, O=Example, OU=*, CN=*");
        assert_eq!(scanners.intersect(&example), Some(scanners.clone()));
        assert_eq!(example.intersect(&scanners), Some(scanners.clone()));
        assert_eq!(
            p("C=XX, O=*, CN=host1").intersect(&p("C=XX, O=Example, CN=*")),
            Some(p("C=XX, O=Example, CN=host1"))
        );
        assert_eq!(scanners.intersect(&p("C=XX, O=Example, OU=Finance, CN=*")), None, "different values");
        assert_eq!(scanners.intersect(&p("O=Example, OU=Scanners, CN=*")), None, "one attribute fewer");
        assert_eq!(p("C=XX, O=*").intersect(&p("O=*, C=XX")), None, "another order");
    }

    #[test]
    fn within_is_matching_every_subject_of_the_other() {
        let scanners = p("C=XX, O=Example, OU=Scanners, CN=*");
        let example = p("C=XX, O=Example, OU=*, CN=*");
        assert!(scanners.within(&example));
        assert!(!example.within(&scanners));
        assert!(scanners.within(&scanners));
        assert!(p("C=XX, O=Example, OU=Scanners, CN=s1").within(&scanners));
        assert!(!p("O=Example, OU=Scanners, CN=*").within(&example));
    }

    #[test]
    fn values_that_differ_in_case_only_clash() {
        let a = p("O=Example, OU=Finance, CN=*");
        assert_eq!(a.case_clash(&p("O=Example, OU=FINANCE, CN=*")), Some(("OU=Finance".into(), "OU=FINANCE".into())));
        assert_eq!(a.case_clash(&p("O=Example, OU=Sales, CN=*")), None);
        assert_eq!(a.case_clash(&p("C=XX, OU=FINANCE, CN=*")), None, "other types: they never meet");
    }
}
