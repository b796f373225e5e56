//! A fleet bundle: the policy files of one scope at one revision, and the
//! exact bytes a publisher signs.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The policy files of one scope at one revision, as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Bundle {
    pub scope: String,
    /// Grows by one at each publish of the scope; an agent refuses one not
    /// newer than what it applied (a replay).
    pub revision: u64,
    /// When it was published, seconds since the Unix epoch.
    pub time: i64,
    /// File name (`NN-name.yaml`) -> its text.
    pub files: BTreeMap<String, String>,
}

/// A bundle with the publisher's certificate and signature: the value of a
/// policy key in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Signed {
    pub bundle: Bundle,
    /// The publisher's certificate, PEM.
    pub certificate: String,
    /// ECDSA P-256 SHA-256 (ASN.1 DER) of [`Bundle::canonical`], hex.
    pub signature: String,
}

/// Tells the encoding apart from any other signed bytes (and later versions).
const MAGIC: &[u8] = b"ringfence-fleet-bundle-v1\n";

impl Bundle {
    /// The signed bytes: the magic line, then scope, revision, time and every
    /// file (in name order) as big-endian integers and length-prefixed
    /// strings, so that no two bundles encode alike.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        let string = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&(s.len() as u64).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        string(&mut out, &self.scope);
        out.extend_from_slice(&self.revision.to_be_bytes());
        out.extend_from_slice(&self.time.to_be_bytes());
        out.extend_from_slice(&(self.files.len() as u64).to_be_bytes());
        for (name, text) in &self.files {
            string(&mut out, name);
            string(&mut out, text);
        }
        out
    }

    /// SHA-256 of the canonical bytes, hex: what status reports as applied.
    pub fn hash(&self) -> String {
        hex(ring::digest::digest(&ring::digest::SHA256, &self.canonical()).as_ref())
    }
}

/// Whether `name` may be a file of a bundle: a plain `.yaml` name that is not
/// hidden (what the daemon reads from a policy directory).
pub fn valid_file_name(name: &str) -> bool {
    name.ends_with(".yaml")
        && !name.starts_with('.')
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// The `.yaml` files of `dir` (not hidden, not in subdirectories), by name.
pub fn files_of(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    use anyhow::Context;
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".yaml") {
            continue;
        }
        anyhow::ensure!(valid_file_name(&name), "{name:?}: a fleet file name is letters, digits, '.', '_', '-'");
        let text = std::fs::read_to_string(entry.path()).with_context(|| format!("cannot read {name}"))?;
        files.insert(name, text);
    }
    Ok(files)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> Bundle {
        let files = BTreeMap::from([("50-web.yaml".into(), "rules: []\n".into())]);
        Bundle { scope: "all".into(), revision: 3, time: 1_700_000_000, files }
    }

    #[test]
    fn canonical_bytes_are_fixed_and_unambiguous() {
        let b = bundle();
        let mut expected = MAGIC.to_vec();
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3]);
        expected.extend_from_slice(b"all");
        expected.extend_from_slice(&3u64.to_be_bytes());
        expected.extend_from_slice(&1_700_000_000i64.to_be_bytes());
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(&11u64.to_be_bytes());
        expected.extend_from_slice(b"50-web.yaml");
        expected.extend_from_slice(&10u64.to_be_bytes());
        expected.extend_from_slice(b"rules: []\n");
        assert_eq!(b.canonical(), expected);
        // Moving bytes from a name to its text changes the encoding.
        let mut moved = bundle();
        moved.files = BTreeMap::from([("50-web.yam".into(), "lrules: []\n".into())]);
        assert_ne!(moved.canonical(), b.canonical());
        assert_ne!(moved.hash(), b.hash());
        assert_eq!(b.hash().len(), 64);
    }

    #[test]
    fn hex_round_trips_and_refuses_odd_input() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(unhex("00ab10"), Some(vec![0, 0xab, 0x10]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn file_names_are_plain_yaml_names() {
        assert!(valid_file_name("50-web.yaml"));
        for bad in ["../x.yaml", ".hidden.yaml", "a/b.yaml", "x.yml", "a b.yaml"] {
            assert!(!valid_file_name(bad), "{bad}");
        }
    }
}
