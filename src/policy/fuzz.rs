//! Fuzzing the policy loader: one drop-in's text through YAML parsing,
//! validation and merging (`load_text`), seeded with the shipped policies and
//! the bad-input corpus.

use std::path::PathBuf;

use proptest::prelude::*;

use super::load_text;
use crate::testutil::fuzz::{bounded, corpus, fuzz};

const TOKENS: &[&[u8]] = &[
    b": ",
    b"- ",
    b"\n",
    b"\n  ",
    b"\n    - ",
    b"[",
    b"]",
    b"{",
    b"}",
    b", ",
    b"\"",
    b"'",
    b"#",
    b"&a ",
    b"*a",
    b"<<: ",
    b"!!str ",
    b"!!python/object ",
    b"---\n",
    b"|\n",
    b"~",
    b"null",
    b"true",
    b"no",
    b"0x10",
    b"-1",
    b"1e9",
    b"65536",
    b"4294967296",
    b"10.0.0.0/8",
    b"::/0",
    b"fe80::1%eth0",
    b"1-2",
    b"eth*",
    b"rules",
    b"name",
    b"direction",
    b"action",
    b"protocol",
    b"local-ports",
    b"remote-addresses",
    b"profiles",
    b"isolation",
    b"groups",
    b"services",
    b"users",
    b"units",
    b".service",
    b"icmp-types",
    b"dhcp",
    b"\t",
    b"\xc2\xa0",
    b"\xe2\x80\xae",
];

fn one_dropin(bytes: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(bytes);
    let path = PathBuf::from("/etc/ringfence/policy.d/50-fuzz.yaml");
    let Err(diags) = load_text(&[(path.clone(), text.to_string())]) else { return Ok(()) };
    prop_assert!(!diags.0.is_empty());
    // YAML breaks lines at CR too; a line past the end is where an unclosed
    // construct is reported.
    let lines = text.replace("\r\n", "\n").split(['\n', '\r']).count() as u32 + 1;
    for d in &diags.0 {
        prop_assert!(d.place.line >= 1 && d.place.column >= 1, "{d}");
        if *d.place.file == *path {
            prop_assert!(d.place.line <= lines, "{d}: the file has {lines} lines");
        }
        bounded(&d.to_string())?;
    }
    Ok(())
}

#[test]
fn fuzz_one_dropin() {
    let samples = corpus(&["policies", "integration/bad-policies", "fuzz/corpus/policy"]);
    fuzz("policy", 1000, samples, TOKENS, one_dropin);
}
