//! A fuzzing harness that `cargo test` runs: each target gets its corpus as it
//! is, then arbitrary bytes and mutations of the corpus (bit flips, inserted
//! and deleted runs, splices of two samples, the target's own tokens, long
//! runs that test how much of a value a message quotes).
//!
//! proptest rather than cargo-fuzz: cargo-fuzz needs a nightly toolchain and
//! runs outside `cargo test`, so it would not guard every change; proptest
//! runs on stable, shrinks a failing input to a small one, and a bounded run
//! fits in the unit tests (fuzz/README.md gives its duration).
//! `RINGFENCE_FUZZ_CASES=N` runs N cases per target instead, for a longer hunt.
//!
//! The corpus lives in fuzz/corpus/TARGET/ (and, for policies, the shipped
//! policies and integration/bad-policies); fuzz/README.md says where each
//! sample came from.

use std::path::Path;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

/// The files under `dirs` (relative to the repository, searched recursively),
/// in a stable order, with their names.
pub fn corpus_files(dirs: &[&str]) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    let mut pending: Vec<_> = dirs.iter().map(|d| root.join(d)).collect();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                paths.push(path);
            }
        }
    }
    paths.sort();
    assert!(!paths.is_empty(), "no corpus in {dirs:?}");
    paths.iter().map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(p).unwrap())).collect()
}

/// The contents of [`corpus_files`].
pub fn corpus(dirs: &[&str]) -> Vec<Vec<u8>> {
    corpus_files(dirs).into_iter().map(|(_, bytes)| bytes).collect()
}

/// One change to a sample; positions are taken modulo its length.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, Index),
    Duplicate(Index, Index),
    Truncate(Index),
    /// Part of another sample, inserted.
    Splice(Index, Index, Index, Index),
    /// One of the target's tokens, inserted.
    Token(Index, Index),
    /// A run of 2,000 copies of a byte: a value too long to quote whole.
    LongRun(Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0..8u8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(i, s, f, n)| Mutation::Splice(i, s, f, n)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Mutation::Token(i, t)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::LongRun(i, b)),
    ]
}

/// Where a change goes: anywhere from the start to the end.
fn at(i: &Index, data: &[u8]) -> usize {
    i.index(data.len() + 1)
}

/// A run of at most 64 bytes from `from` on.
fn run_of(data: &[u8], from: usize, len: &Index) -> std::ops::Range<usize> {
    let end = (from + 1 + len.index(64)).min(data.len());
    from.min(end)..end
}

fn apply(mut data: Vec<u8>, corpus: &[Vec<u8>], tokens: &[&[u8]], m: &Mutation) -> Vec<u8> {
    match m {
        Mutation::FlipBit(i, bit) if !data.is_empty() => {
            let i = i.index(data.len());
            data[i] ^= 1 << bit;
        }
        Mutation::FlipBit(..) => {}
        Mutation::Insert(i, bytes) => {
            let i = at(i, &data);
            data.splice(i..i, bytes.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let r = run_of(&data, at(i, &data), n);
            data.drain(r);
        }
        Mutation::Duplicate(i, n) => {
            let r = run_of(&data, at(i, &data), n);
            let copy = data[r.clone()].to_vec();
            data.splice(r.end..r.end, copy);
        }
        Mutation::Truncate(i) => data.truncate(at(i, &data)),
        Mutation::Splice(i, sample, from, n) => {
            let other = &corpus[sample.index(corpus.len())];
            let part = other[run_of(other, at(from, other), n)].to_vec();
            let i = at(i, &data);
            data.splice(i..i, part);
        }
        Mutation::Token(i, t) if !tokens.is_empty() => {
            let i = at(i, &data);
            data.splice(i..i, tokens[t.index(tokens.len())].iter().copied());
        }
        Mutation::Token(..) => {}
        Mutation::LongRun(i, b) => {
            let i = at(i, &data);
            data.splice(i..i, std::iter::repeat_n(*b, 2000));
        }
    }
    data
}

/// Inputs for a target: mostly mutated samples of `corpus` (one to eight
/// changes each), and arbitrary bytes.
pub fn inputs(corpus: Vec<Vec<u8>>, tokens: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    let samples = select(corpus.clone());
    let mutated = (samples, vec(mutation(), 1..8))
        .prop_map(move |(seed, ms)| ms.iter().fold(seed, |d, m| apply(d, &corpus, tokens, m)));
    prop_oneof![4 => mutated, 1 => vec(any::<u8>(), 0..512)]
}

/// Runs `test` on every sample of `corpus`, then on `cases` inputs of
/// [`inputs`] (or `RINGFENCE_FUZZ_CASES`); a failure shows the smallest
/// failing input proptest found, to paste into a regression test.
pub fn fuzz(
    target: &str,
    cases: u32,
    corpus: Vec<Vec<u8>>,
    tokens: &'static [&'static [u8]],
    test: impl Fn(&[u8]) -> Result<(), TestCaseError>,
) {
    for (i, sample) in corpus.iter().enumerate() {
        if let Err(e) = test(sample) {
            panic!("{target}: corpus sample {i} fails: {e}");
        }
    }
    run(target, cases, inputs(corpus, tokens), |input| test(&input));
}

/// Runs `test` on `cases` values of `strategy` (or `RINGFENCE_FUZZ_CASES`).
pub fn run<S: Strategy>(target: &str, cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let cases = std::env::var("RINGFENCE_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    // No regression files written next to the sources: a failure found here
    // becomes a named regression test.
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    match TestRunner::new(config).run(&strategy, test) {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => {
            let input = format!("{input:?}");
            let shown: String = input.chars().take(2000).collect();
            panic!("{target}: {why}\nminimal failing input ({} characters as Debug): {shown}", input.len())
        }
        Err(TestError::Abort(why)) => panic!("{target}: aborted: {why}"),
    }
}

/// Asserts that a message shown to a person stays short whatever the size of
/// the input: at most 1,000 characters (as `integration/bad-input.sh` checks),
/// the room for a value quoted to [`crate::policy::text::QUOTE_CHARS`]
/// characters, each escaped, and the words around it.
pub fn bounded(message: &str) -> Result<(), TestCaseError> {
    const LIMIT: usize = 1000;
    let n = message.chars().count();
    prop_assert!(n <= LIMIT, "a message of {n} characters: {:?}…", message.chars().take(400).collect::<String>());
    Ok(())
}
