//! `fleet diff`: what publishing a directory to a scope would change against
//! the scope's bundle in etcd, file by file, with a unified diff (`diff -u`)
//! of each changed file. The diff is the `similar` crate's, which the golden
//! tests already used; a hand-written LCS would be one more thing to get right.

use std::collections::BTreeMap;

use super::bundle::Bundle;

/// The change from `current` (none: the scope was never published) to
/// `files`, which would be published as `next` revision. Pure.
pub fn render(scope: &str, current: Option<&Bundle>, next: u64, files: &BTreeMap<String, String>) -> String {
    let empty = BTreeMap::new();
    let (now, label) = match current {
        Some(b) => (&b.files, format!("revision {}", b.revision)),
        None => (&empty, "nothing".to_string()),
    };
    let mut out = format!("scope {scope}: etcd has {label}; publishing would make revision {next}\n");
    let names: std::collections::BTreeSet<&String> = now.keys().chain(files.keys()).collect();
    let mut changes = 0;
    for name in names {
        let (old, new) = (now.get(name), files.get(name));
        let what = match (old, new) {
            (Some(a), Some(b)) if a == b => continue,
            (None, _) => "added",
            (_, None) => "removed",
            _ => "changed",
        };
        changes += 1;
        out += &format!("{what} {name}\n");
        let (old, new) = (old.map_or("", String::as_str), new.map_or("", String::as_str));
        let diff = similar::TextDiff::from_lines(old, new);
        let (a, b) = (format!("a/{name}"), format!("b/{name}"));
        out += &diff.unified_diff().context_radius(3).missing_newline_hint(true).header(&a, &b).to_string();
    }
    if changes == 0 {
        out += "no file would change\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect()
    }

    #[test]
    fn added_removed_and_changed_files_with_their_diffs() {
        let current = Bundle {
            scope: "all".into(),
            revision: 3,
            time: 0,
            files: files(&[("10-a.yaml", "one\ntwo\nthree\n"), ("20-gone.yaml", "x\n"), ("30-same.yaml", "s\n")]),
        };
        let next = files(&[("10-a.yaml", "one\n2\nthree\n"), ("30-same.yaml", "s\n"), ("40-new.yaml", "n\n")]);
        assert_eq!(
            render("all", Some(&current), 4, &next),
            "scope all: etcd has revision 3; publishing would make revision 4\n\
             changed 10-a.yaml\n--- a/10-a.yaml\n+++ b/10-a.yaml\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n\
             removed 20-gone.yaml\n--- a/20-gone.yaml\n+++ b/20-gone.yaml\n@@ -1 +0,0 @@\n-x\n\
             added 40-new.yaml\n--- a/40-new.yaml\n+++ b/40-new.yaml\n@@ -0,0 +1 @@\n+n\n"
        );
        assert_eq!(
            render("all", Some(&current), 4, &current.files),
            "scope all: etcd has revision 3; publishing would make revision 4\nno file would change\n"
        );
        assert!(render("role=web", None, 1, &next)
            .starts_with("scope role=web: etcd has nothing; publishing would make revision 1\nadded 10-a.yaml\n"));
    }
}
