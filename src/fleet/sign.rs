//! Signing and verifying bundles: ECDSA P-256 with SHA-256 (`ring`), the
//! publisher's certificate checked against the fleet CA (`x509-parser`).
//!
//! Keys: a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), as
//! `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes it.
//! SEC1 keys (`BEGIN EC PRIVATE KEY`) are refused: convert them with
//! `openssl pkcs8 -topk8 -nocrypt`. Certificates: PEM. The publisher's
//! certificate must be issued directly by the fleet CA (no intermediates).

use std::path::Path;

use ring::signature::{EcdsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING};
use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::bundle::{hex, unhex, Bundle, Signed};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {0}")]
    Read(String, #[source] std::io::Error),
    #[error("{0} is not a PEM PKCS#8 private key (BEGIN PRIVATE KEY)")]
    NotPkcs8(String),
    #[error("{0} is not an ECDSA P-256 key: {1}")]
    NotP256(String, String),
    #[error("{0}: {1}")]
    Certificate(String, String),
    #[error("signing failed")]
    Sign,
}

/// What publishes: the key pair and the certificate that vouches for it.
pub struct Publisher {
    key: EcdsaKeyPair,
    certificate_pem: String,
}

impl Publisher {
    pub fn load(key: &Path, certificate: &Path) -> Result<Publisher, KeyError> {
        let name = key.display().to_string();
        let pem = std::fs::read(key).map_err(|e| KeyError::Read(name.clone(), e))?;
        let der = match parse_x509_pem(&pem) {
            Ok((_, p)) if p.label == "PRIVATE KEY" => p.contents,
            _ => return Err(KeyError::NotPkcs8(name)),
        };
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der, &rng)
            .map_err(|e| KeyError::NotP256(name, e.to_string()))?;
        let cert_name = certificate.display().to_string();
        let certificate_pem = std::fs::read_to_string(certificate).map_err(|e| KeyError::Read(cert_name.clone(), e))?;
        let der = crate::pki::read_certificate(certificate).map_err(|e| KeyError::Certificate(cert_name.clone(), e))?;
        let (_, cert) =
            X509Certificate::from_der(&der).map_err(|e| KeyError::Certificate(cert_name.clone(), e.to_string()))?;
        if cert.public_key().subject_public_key.data.as_ref() != ring::signature::KeyPair::public_key(&key).as_ref() {
            return Err(KeyError::Certificate(cert_name, "is not the certificate of the key".into()));
        }
        Ok(Publisher { key, certificate_pem })
    }

    pub fn sign(&self, bundle: Bundle) -> Result<Signed, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let signature = self.key.sign(&rng, &bundle.canonical()).map_err(|_| KeyError::Sign)?;
        Ok(Signed { bundle, certificate: self.certificate_pem.clone(), signature: hex(signature.as_ref()) })
    }
}

/// Whom an agent believes: the fleet CA, and the OU a publisher's
/// certificate must have, if any.
pub struct Trust {
    pub ca_der: Vec<u8>,
    pub ca_path: std::path::PathBuf,
    pub required_ou: Option<String>,
}

/// Why an agent refused a bundle: it writes nothing, applies nothing, and
/// reports this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(tag = "refused", content = "detail", rename_all = "kebab-case")]
pub enum Refusal {
    #[error("the bundle cannot be read: {0}")]
    Malformed(String),
    #[error("the bundle is for scope {found:?}, under the key of scope {key:?}")]
    WrongScope { key: String, found: String },
    #[error("the signature is missing or not valid")]
    BadSignature,
    #[error("the publisher is not vouched for by the fleet CA: {0}")]
    Publisher(String),
    #[error("revision {offered} is not newer than the applied revision {applied} (a replay)")]
    Replay { offered: u64, applied: u64 },
    #[error("the bundle's file name {0:?} is not a plain NN-name.yaml")]
    FileName(String),
    #[error("the policy check failed: {0}")]
    Check(String),
    #[error("the failsafe refuses it: {0}")]
    Failsafe(String),
}

impl Trust {
    pub fn load(ca: &Path, required_ou: Option<String>) -> Result<Trust, String> {
        Ok(Trust { ca_der: crate::pki::read_certificate(ca)?, ca_path: ca.to_path_buf(), required_ou })
    }

    /// Checks everything about a bundle that needs no policy files: publisher,
    /// signature, scope, file names, and that its revision is newer than
    /// `applied` (the scope's applied revision, 0 for none).
    pub fn verify(&self, key_scope: &str, signed: &Signed, applied: u64) -> Result<(), Refusal> {
        let public_key = self.publisher_key(&signed.certificate)?;
        let signature = unhex(&signed.signature).ok_or(Refusal::BadSignature)?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &public_key)
            .verify(&signed.bundle.canonical(), &signature)
            .map_err(|_| Refusal::BadSignature)?;
        let bundle = &signed.bundle;
        if bundle.scope != key_scope {
            return Err(Refusal::WrongScope { key: key_scope.into(), found: bundle.scope.clone() });
        }
        if bundle.revision <= applied {
            return Err(Refusal::Replay { offered: bundle.revision, applied });
        }
        match bundle.files.keys().find(|name| !super::bundle::valid_file_name(name)) {
            Some(name) => Err(Refusal::FileName(name.clone())),
            None => Ok(()),
        }
    }

    /// The public key of a publisher's certificate that the CA issued, is
    /// valid now and has the required OU.
    fn publisher_key(&self, pem: &str) -> Result<Vec<u8>, Refusal> {
        let refuse = |m: String| Refusal::Publisher(m);
        let (_, pem) = parse_x509_pem(pem.as_bytes()).map_err(|e| refuse(format!("no PEM certificate: {e}")))?;
        crate::pki::check_issued_by(&pem.contents, &self.ca_der, &self.ca_path).map_err(refuse)?;
        let (_, cert) = X509Certificate::from_der(&pem.contents).map_err(|e| refuse(e.to_string()))?;
        if let Some(ou) = &self.required_ou {
            if !cert.subject().iter_organizational_unit().any(|a| a.as_str() == Ok(ou.as_str())) {
                return Err(refuse(format!("the certificate ({}) has no OU {ou:?}", cert.subject())));
            }
        }
        Ok(cert.public_key().subject_public_key.data.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    fn testdata(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/fleet/testdata").join(name)
    }

    fn publisher(name: &str) -> Publisher {
        Publisher::load(&testdata(&format!("{name}.key")), &testdata(&format!("{name}.pem"))).unwrap()
    }

    fn trust(ou: Option<&str>) -> Trust {
        Trust::load(&testdata("fleet-ca.pem"), ou.map(String::from)).unwrap()
    }

    fn bundle(revision: u64) -> Bundle {
        let files = BTreeMap::from([("50-web.yaml".to_string(), "rules: []\n".to_string())]);
        Bundle { scope: "all".into(), revision, time: 1_700_000_000, files }
    }

    #[test]
    fn a_signed_bundle_verifies_and_survives_json() {
        let signed = publisher("publisher").sign(bundle(2)).unwrap();
        let json = serde_json::to_string(&signed).unwrap();
        let back: Signed = serde_json::from_str(&json).unwrap();
        assert_eq!(trust(Some("Fleet Publishers")).verify("all", &back, 1), Ok(()));
    }

    #[test]
    fn tampering_and_missing_signatures_are_refused() {
        let t = trust(None);
        let mut signed = publisher("publisher").sign(bundle(2)).unwrap();
        signed.bundle.files.insert("50-web.yaml".into(), "rules: [evil]\n".into());
        assert_eq!(t.verify("all", &signed, 0), Err(Refusal::BadSignature));
        let mut signed = publisher("publisher").sign(bundle(2)).unwrap();
        signed.bundle.revision = 3;
        assert_eq!(t.verify("all", &signed, 0), Err(Refusal::BadSignature));
        signed.signature.clear();
        assert_eq!(t.verify("all", &signed, 0), Err(Refusal::BadSignature));
    }

    #[test]
    fn a_publisher_outside_the_ca_or_its_ou_is_refused() {
        let foreign = publisher("foreign").sign(bundle(2)).unwrap();
        let e = trust(None).verify("all", &foreign, 0).unwrap_err();
        assert!(matches!(&e, Refusal::Publisher(m) if m.contains("not signed by the CA")), "{e}");
        // The foreign signature over the fleet publisher's certificate.
        let mut borrowed = publisher("publisher").sign(bundle(2)).unwrap();
        borrowed.signature = foreign.signature;
        assert_eq!(trust(None).verify("all", &borrowed, 0), Err(Refusal::BadSignature));
        let signed = publisher("publisher").sign(bundle(2)).unwrap();
        let e = trust(Some("Admins")).verify("all", &signed, 0).unwrap_err();
        assert!(matches!(&e, Refusal::Publisher(m) if m.contains("no OU \"Admins\"")), "{e}");
    }

    #[test]
    fn replays_wrong_scopes_and_bad_names_are_refused() {
        let t = trust(None);
        let p = publisher("publisher");
        let signed = p.sign(bundle(2)).unwrap();
        assert_eq!(t.verify("all", &signed, 2), Err(Refusal::Replay { offered: 2, applied: 2 }));
        assert_eq!(t.verify("all", &signed, 5), Err(Refusal::Replay { offered: 2, applied: 5 }));
        let e = t.verify("role=web", &signed, 0).unwrap_err();
        assert_eq!(e, Refusal::WrongScope { key: "role=web".into(), found: "all".into() });
        let mut b = bundle(2);
        b.files.insert("../../etc/x.yaml".into(), String::new());
        let signed = p.sign(b).unwrap();
        assert_eq!(t.verify("all", &signed, 0), Err(Refusal::FileName("../../etc/x.yaml".into())));
    }

    #[test]
    fn keys_must_be_pkcs8_p256_and_match_the_certificate() {
        let e = Publisher::load(&testdata("publisher.pem"), &testdata("publisher.pem")).err().unwrap();
        assert!(matches!(e, KeyError::NotPkcs8(_)), "{e}");
        let e = Publisher::load(&testdata("foreign.key"), &testdata("publisher.pem")).err().unwrap();
        assert!(e.to_string().contains("is not the certificate of the key"), "{e}");
    }
}
