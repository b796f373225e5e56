//! Fuzzing the decoding of the VICI messages Ringfence reads: `list-sa`
//! events (IKE SAs with their CHILD SAs) and `log` events, seeded with
//! messages encoded as charon sends them.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::ike::failures::{Failures, Log};
use crate::ike::sas::IkeSa;
use crate::testutil::fuzz::{corpus, fuzz};

/// VICI's element types and lengths: section start and end, key-value, list
/// start, item and end.
const TOKENS: &[&[u8]] = &[
    b"\x01\x01a",
    b"\x02",
    b"\x03\x01a\x00\x01x",
    b"\x04\x01a",
    b"\x05\x00\x01x",
    b"\x06",
    b"\x01\x09child-sas",
    b"\x03\x03msg\x00\x00",
    b"\xff\xff",
    b"\x00",
    b"\xff",
    b"\x07",
    b"\x01\x01a\x01\x01a\x01\x01a\x01\x01a",
];

fn list_sa(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok(sas) = decode::<BTreeMap<String, IkeSa>>("list-sa", bytes) else { return Ok(()) };
    // What Ringfence reads comes back the same when encoded again (the
    // responder's SPI is read, never written).
    let again: BTreeMap<String, IkeSa> = decode("again", &encode("again", &sas).unwrap()).unwrap();
    let read = sas.into_iter().map(|(n, sa)| (n, IkeSa { responder_spi: None, ..sa })).collect::<BTreeMap<_, _>>();
    prop_assert_eq!(again, read);
    Ok(())
}

#[test]
fn fuzz_list_sa_events() {
    fuzz("vici list-sa", 10000, corpus(&["fuzz/corpus/vici"]), TOKENS, list_sa);
}

#[test]
fn fuzz_log_events() {
    let mut failures = Failures::default();
    let failures = std::cell::RefCell::new(&mut failures);
    fuzz("vici log", 5000, corpus(&["fuzz/corpus/vici"]), TOKENS, |bytes| {
        if let Ok(log) = decode::<Log>("log", bytes) {
            failures.borrow_mut().read(&log);
        }
        Ok(())
    });
}
