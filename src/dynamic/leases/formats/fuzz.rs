//! Fuzzing the lease and smb.conf parsers. A lease that parses must come back
//! the same from a dhclient block written from it: nothing is lost or
//! invented between the formats.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::*;
use crate::testutil::fuzz::{bounded, corpus, corpus_files, fuzz, inputs, run};

const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b";",
    b"\"",
    b"\\",
    b"#",
    b",",
    b"\n",
    b" ",
    b"lease ",
    b"lease6 ",
    b"interface ",
    b"option dhcp-server-identifier ",
    b"option netbios-name-servers ",
    b"option domain-name-servers ",
    b"DNS=",
    b"expire ",
    b"never",
    b"epoch ",
    b"18446744073709551615",
    b"9223372036854775807",
    b"4294967295",
    b"2 9999/12/31 23:59:59",
    b"0 1969/12/31 23:59:59",
    b"1 2026/02/30 25:61:61.123456789",
    b"SERVER_ADDRESS=",
    b"ADDRESS=",
    b"=",
    b"255.255.255.255",
    b"1.2.3",
    b"\x63\x82\x53\x63",
    b"\x36\x04",
    b"\x2c\x00",
    b"\x33\x04\xff\xff\xff\xff",
    b"\xff",
    b"\x00",
    b"\xc3\xa9",
];

/// A dhclient lease block for `l`, as dhclient would write it.
fn render(l: &Lease) -> String {
    let name = l.interface.replace('\\', "\\\\").replace('"', "\\\"");
    let mut text = format!("lease {{\n  interface \"{name}\";\n  option dhcp-server-identifier {};\n", l.server);
    for (option, list) in [("netbios-name-servers", &l.wins), ("domain-name-servers", &l.dns)] {
        if !list.is_empty() {
            let list: Vec<String> = list.iter().map(ToString::to_string).collect();
            text += &format!("  option {option} {};\n", list.join(", "));
        }
    }
    text += &match l.expires {
        None => "  expire never;\n".to_string(),
        Some(t) => match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) if d.subsec_nanos() == 0 => format!("  expire epoch {};\n", d.as_secs()),
            // Only the date form has fractions of a second (and years up to 9999).
            _ => {
                let stamp = humantime::format_rfc3339_nanos(t).to_string();
                let (date, time) = stamp.trim_end_matches('Z').split_once('T').unwrap();
                format!("  expire 0 {} {time};\n", date.replace('-', "/"))
            }
        },
    };
    text + "}\n"
}

fn lease_file((name, bytes): (String, Vec<u8>)) -> Result<(), TestCaseError> {
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    match parse(&name, &bytes, mtime) {
        Ok(leases) => {
            // dhclient writes control characters as octal escapes, which are
            // not decoded here: interface names never hold them.
            for l in leases.into_iter().filter(|l| !l.interface.contains(char::is_control)) {
                let again = parse("again.leases", render(&l).as_bytes(), mtime);
                prop_assert_eq!(again, Ok(vec![l.clone()]), "rendered as {:?}", render(&l));
            }
            Ok(())
        }
        Err(e) => bounded(&e),
    }
}

/// File names as the clients write them, NetworkManager's with a UUID of
/// characters that may straddle its end, and any text.
fn names(corpus_names: Vec<String>) -> impl Strategy<Value = String> {
    let uuid_chars = vec(select(vec!['a', 'F', '0', '9', '-', 'é', 'ü', 'ß', '€', '😀']), 30..40);
    prop_oneof![
        select(corpus_names),
        (uuid_chars, select(vec!["", "-", "-eth0", "-eth0.lease", "-wlän0.lease"]))
            .prop_map(|(uuid, tail)| format!("internal-{}{tail}", String::from_iter(uuid))),
        vec(any::<char>(), 0..50).prop_map(String::from_iter),
    ]
}

#[test]
fn fuzz_lease_files() {
    let files = corpus_files(&["fuzz/corpus/leases"]);
    // Every sample is a whole lease file of a real client.
    for (name, bytes) in &files {
        let leases = parse(name, bytes, SystemTime::UNIX_EPOCH);
        assert!(leases.as_ref().is_ok_and(|l| !l.is_empty()), "corpus sample {name}: {leases:?}");
        lease_file((name.clone(), bytes.clone())).unwrap_or_else(|e| panic!("corpus sample {name}: {e}"));
    }
    let names = names(files.iter().map(|(n, _)| n.clone()).collect());
    let contents = inputs(files.into_iter().map(|(_, b)| b).collect(), TOKENS);
    run("leases", 5000, (names, contents), lease_file);
}

#[test]
fn fuzz_smb_conf() {
    fuzz("smb.conf", 3000, corpus(&["fuzz/corpus/smb"]), TOKENS, |bytes| {
        match smb_wins(&String::from_utf8_lossy(bytes)) {
            Ok(_) => Ok(()),
            Err(e) => bounded(&e),
        }
    });
}
