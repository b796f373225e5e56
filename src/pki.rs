//! X.509 certificates of the isolation identity: read (PEM or DER) and checked
//! before anything is handed to charon, so that a wrong file is an error with
//! its place in the policy, not a failed negotiation later.

use std::path::Path;

use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

/// The DER bytes of the PEM block labelled `label` (or of the DER file) in `path`.
fn read_der(path: &Path, label: &str) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !bytes.starts_with(b"-----BEGIN") {
        return Ok(bytes);
    }
    let (_, pem) = parse_x509_pem(&bytes).map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
    if pem.label != label {
        return Err(format!(
            "{} holds a PEM {}, not a {label}",
            path.display(),
            crate::policy::text::Quoted(&pem.label)
        ));
    }
    Ok(pem.contents)
}

/// The DER bytes of the certificate in `path` (PEM or DER).
pub fn read_certificate(path: &Path) -> Result<Vec<u8>, String> {
    let der = read_der(path, "CERTIFICATE")?;
    X509Certificate::from_der(&der).map_err(|e| format!("{} is not an X.509 certificate: {e}", path.display()))?;
    Ok(der)
}

/// The DER bytes of the revocation list in `path` (PEM or DER).
pub fn read_crl(path: &Path) -> Result<Vec<u8>, String> {
    let der = read_der(path, "X509 CRL")?;
    CertificateRevocationList::from_der(&der)
        .map_err(|e| format!("{} is not an X.509 revocation list: {e}", path.display()))?;
    Ok(der)
}

/// The revocation list must be the CA's: issued and signed by it. (An
/// outdated one is still loaded: charon decides what to do with it.)
pub fn check_crl_issued_by(crl_der: &[u8], ca_der: &[u8], ca_path: &Path) -> Result<(), String> {
    let (_, crl) = CertificateRevocationList::from_der(crl_der).map_err(|e| e.to_string())?;
    let (_, ca) = X509Certificate::from_der(ca_der).map_err(|e| e.to_string())?;
    if crl.issuer() != ca.subject() || crl.verify_signature(ca.public_key()).is_err() {
        return Err(format!(
            "the revocation list (issuer {}) is not signed by the CA in {} ({})",
            crl.issuer(),
            ca_path.display(),
            ca.subject()
        ));
    }
    Ok(())
}

/// The certificate must be signed by the CA and valid now.
pub fn check_issued_by(cert_der: &[u8], ca_der: &[u8], ca_path: &Path) -> Result<(), String> {
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|e| e.to_string())?;
    let (_, ca) = X509Certificate::from_der(ca_der).map_err(|e| e.to_string())?;
    if cert.issuer() != ca.subject() || cert.verify_signature(Some(ca.public_key())).is_err() {
        return Err(format!(
            "the certificate ({}) is not signed by the CA in {} ({})",
            cert.subject(),
            ca_path.display(),
            ca.subject()
        ));
    }
    let validity = cert.validity();
    if !validity.is_valid() {
        return Err(format!(
            "the certificate ({}) is valid from {} to {}, not now",
            cert.subject(),
            validity.not_before,
            validity.not_after
        ));
    }
    Ok(())
}
