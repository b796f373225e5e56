//! Fuzzing the resolv.conf parser: the servers it finds come back the same
//! from a file written from them, and each line it rejects is a `nameserver`
//! line of the text.

use proptest::prelude::*;

use super::parse;
use crate::testutil::fuzz::{corpus, fuzz};

const TOKENS: &[&[u8]] = &[
    b"nameserver ",
    b"\n",
    b"\r\n",
    b"\t",
    b" ",
    b"#",
    b";",
    b"%",
    b"%eth0",
    b"::",
    b"::ffff:",
    b"127.0.0.53",
    b"fe80::1",
    b"search ",
    b"options ",
    b"\xc2\xa0",
    b"\xe2\x80\xa8",
    b"\x0b",
];

fn resolv_conf(bytes: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(bytes);
    let (servers, bad) = parse(&text);
    let lines: Vec<&str> = text.lines().collect();
    for (n, line) in &bad {
        prop_assert_eq!(lines.get(n - 1), Some(&line.as_str()));
        prop_assert_eq!(line.split_whitespace().next(), Some("nameserver"));
    }
    let written: String = servers.iter().map(|s| format!("nameserver {s}\n")).collect();
    prop_assert_eq!(parse(&written), (servers, vec![]));
    Ok(())
}

#[test]
fn fuzz_resolv_conf() {
    fuzz("resolv.conf", 5000, corpus(&["fuzz/corpus/resolv"]), TOKENS, resolv_conf);
}
