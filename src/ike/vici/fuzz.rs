//! Fuzzing the decoding of the VICI messages Ringfence reads: `list-sa`
//! events (IKE SAs with their CHILD SAs) and `log` events, seeded with
//! messages encoded as charon sends them.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::ike::failures::{Failures, Log};
use crate::ike::sas::IkeSa;
use crate::testutil::fuzz::{corpus, fuzz};

/// VICI's element types and lengths (section start and end, key-value, list
/// start, item and end), and packet headers (lengths, event types, the name).
const TOKENS: &[&[u8]] = &[
    b"\x00\x00\x00\x01\x05",
    b"\x00\x00\x00\x09\x07\x07list-sa",
    b"\x00\x08\x00\x01",
    b"\x00\x00\x00\x00",
    b"\x07\xff",
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
    fuzz("vici list-sa", 5000, corpus(&["fuzz/corpus/vici"]), TOKENS, list_sa);
}

#[test]
fn fuzz_log_events() {
    let mut failures = Failures::default();
    let failures = std::cell::RefCell::new(&mut failures);
    fuzz("vici log", 3000, corpus(&["fuzz/corpus/vici"]), TOKENS, |bytes| {
        if let Ok(log) = decode::<Log>("log", bytes) {
            failures.borrow_mut().read(&log);
        }
        Ok(())
    });
}

/// A packet as charon frames it: length, type, and for named types the name.
fn packet(kind: u8, name: &[u8], message: &[u8]) -> Vec<u8> {
    let named = matches!(kind, CMD_REQUEST | EVENT_REGISTER | EVENT_UNREGISTER | EVENT);
    let body: Vec<u8> = if named { [&[name.len() as u8], name, message].concat() } else { message.to_vec() };
    [&(1 + body.len() as u32).to_be_bytes()[..], &[kind], &body].concat()
}

/// What charon sends for `list-sas`: the registration's confirmation, one
/// event per IKE SA, the response, the confirmation of the unregistration.
fn list_sas_answer(events: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = packet(EVENT_CONFIRM, b"", b"");
    for e in events {
        bytes.extend(packet(EVENT, b"list-sa", e));
    }
    bytes.extend(packet(CMD_RESPONSE, b"", b""));
    bytes.extend(packet(EVENT_CONFIRM, b"", b""));
    bytes
}

/// The transport: whatever charon's socket sends, a `list-sas` stream and the
/// events after it end (in an answer or an error) without a panic, and a
/// well-framed answer is read whole.
#[test]
fn fuzz_vici_packets() {
    let messages = corpus(&["fuzz/corpus/vici"]);
    let sas: Vec<Vec<u8>> =
        messages.iter().filter(|m| decode::<BTreeMap<String, IkeSa>>("", m).is_ok()).cloned().collect();
    let mut seeds = vec![list_sas_answer(&sas), list_sas_answer(&[])];
    seeds.extend(messages.iter().map(|m| [list_sas_answer(&[]), packet(EVENT, b"log", m)].concat()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let converse = |bytes: &[u8]| {
        runtime.block_on(async {
            let (client, mut charon) = UnixStream::pair().unwrap();
            // All of it is in the socket before the client reads; then EOF.
            charon.write_all(bytes).await.unwrap();
            charon.shutdown().await.unwrap();
            let mut vici = Vici { stream: client, path: PathBuf::from("fuzz.vici") };
            let listed = vici.stream::<_, BTreeMap<String, IkeSa>>("list-sas", "list-sa", &()).await;
            while vici.event().await.is_some() {}
            listed.map(|events| events.len())
        })
    };
    let answer = list_sas_answer(&sas);
    assert_eq!(converse(&answer).unwrap(), sas.len());
    fuzz("vici packets", 2000, seeds, TOKENS, |bytes| {
        let _ = converse(bytes);
        Ok(())
    });
}
