//! A probe's TLS handshake, out of one interface: the certificate must chain
//! to the detection's CA (and only to it: the root store holds nothing else),
//! be valid now, name the probe's host, and, with pins, carry one of the
//! pinned keys. Only the handshake is made; no request is sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

use crate::policy::location::{Detect, Host, Pin};

/// The client configuration of one detection: its CA as the only root, its pins.
pub fn config(detect: &Detect) -> Result<Arc<ClientConfig>, String> {
    let ca = detect.ca.as_ref().ok_or("no CA")?;
    let ca = crate::pki::read_certificate(&ca.value)?;
    let verifier = Arc::new(Pinned::new(ca, detect.pins.clone())?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name the certificate must carry.
pub fn server_name(host: &Host) -> Result<ServerName<'static>, String> {
    match host {
        Host::Name(n) => ServerName::try_from(n.clone()).map_err(|e| format!("{n}: {e}")),
        Host::Ip(a) => Ok(ServerName::IpAddress((*a).into())),
    }
}

/// Connects to `addr` through `ifname` (SO_BINDTODEVICE: the kernel routes
/// the connection out of that interface whatever the routing table prefers)
/// and completes a handshake. Returns the time from connect to the end of
/// the handshake.
pub async fn handshake(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    addr: SocketAddr,
    ifname: &str,
) -> Result<Duration, String> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() };
    let socket = socket.map_err(|e| format!("cannot open a socket: {e}"))?;
    super::bind_to_device(&socket, ifname)?;
    let start = Instant::now();
    let stream = socket.connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    TlsConnector::from(config).connect(name, stream).await.map_err(|e| format!("{addr}: {}", tls_error(&e)))?;
    Ok(start.elapsed())
}

/// rustls's errors come wrapped in io::Error; its own text is the useful part.
fn tls_error(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(tls) => format!("TLS: {tls}"),
        None => format!("TLS: {e}"),
    }
}

/// webpki's verification against one root, then the pins.
#[derive(Debug)]
pub struct Pinned {
    inner: Arc<WebPkiServerVerifier>,
    pins: Vec<Pin>,
}

impl Pinned {
    pub fn new(ca_der: Vec<u8>, pins: Vec<Pin>) -> Result<Pinned, String> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(ca_der)).map_err(|e| format!("the CA is not usable as a root: {e}"))?;
        let inner = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| e.to_string())?;
        Ok(Pinned { inner, pins })
    }
}

/// The SHA-256 of a certificate's SubjectPublicKeyInfo.
pub fn spki_digest(der: &[u8]) -> Result<[u8; 32], String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("not a certificate: {e}"))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.tbs_certificate.subject_pki.raw);
    Ok(digest.as_ref().try_into().expect("SHA-256 is 32 bytes"))
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        if self.pins.is_empty() {
            return Ok(verified);
        }
        let digest = spki_digest(end_entity).map_err(rustls::Error::General)?;
        if self.pins.iter().any(|p| p.0 == digest) {
            Ok(verified)
        } else {
            let key = Pin(digest);
            Err(rustls::Error::General(format!("the certificate's key {key} matches no pin")))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    /// Test certificates (src/location/testdata/README).
    fn der(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/location/testdata").join(name);
        crate::pki::read_certificate(&path).unwrap()
    }

    /// 2030-01-01, inside the test certificates' validity.
    const NOW: u64 = 1_893_456_000;

    fn verify(verifier: &Pinned, leaf: &str, name: &str, now: u64) -> Result<(), String> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        let now = UnixTime::since_unix_epoch(Duration::from_secs(now));
        verifier.verify_server_cert(&der(leaf).into(), &[], &name, &[], now).map(drop).map_err(|e| e.to_string())
    }

    #[test]
    fn the_domain_ca_s_certificate_for_the_name_passes() {
        let v = Pinned::new(der("domain-ca.pem"), Vec::new()).unwrap();
        verify(&v, "dc.pem", "dc.corp.test", NOW).unwrap();
        let ip = ServerName::IpAddress(IpAddr::from([10, 0, 0, 1]).into());
        let now = UnixTime::since_unix_epoch(Duration::from_secs(NOW));
        v.verify_server_cert(&der("dc.pem").into(), &[], &ip, &[], now).unwrap();
    }

    #[test]
    fn another_ca_another_name_or_out_of_validity_fails() {
        let v = Pinned::new(der("domain-ca.pem"), Vec::new()).unwrap();
        let e = verify(&v, "rogue.pem", "dc.corp.test", NOW).unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{e}");
        let e = verify(&v, "dc.pem", "evil.corp.test", NOW).unwrap_err();
        assert!(e.contains("not valid for name \"evil.corp.test\""), "{e}");
        // Valid 2026-2126: a clock past the end sees it expired.
        let e = verify(&v, "dc.pem", "dc.corp.test", 5_000_000_000).unwrap_err();
        assert!(e.contains("certificate expired"), "{e}");
        let e = verify(&v, "dc.pem", "dc.corp.test", 1_600_000_000).unwrap_err();
        assert!(e.contains("certificate not valid yet"), "{e}");
    }

    #[test]
    fn with_pins_the_leaf_s_key_must_be_pinned() {
        let digest = spki_digest(&der("dc.pem")).unwrap();
        let v = Pinned::new(der("domain-ca.pem"), vec![Pin([0; 32]), Pin(digest)]).unwrap();
        verify(&v, "dc.pem", "dc.corp.test", NOW).unwrap();
        let v = Pinned::new(der("domain-ca.pem"), vec![Pin([0; 32])]).unwrap();
        let e = verify(&v, "dc.pem", "dc.corp.test", NOW).unwrap_err();
        assert!(e.contains("matches no pin"), "{e}");
        // A pin does not stand in for the chain.
        let rogue = spki_digest(&der("rogue.pem")).unwrap();
        let v = Pinned::new(der("domain-ca.pem"), vec![Pin(rogue)]).unwrap();
        assert!(verify(&v, "rogue.pem", "dc.corp.test", NOW).unwrap_err().contains("UnknownIssuer"));
    }

    #[test]
    fn the_pin_of_a_key_is_what_openssl_prints() {
        // openssl x509 -in dc.pem -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64
        let expected = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/location/testdata/dc.pin"),
        )
        .unwrap();
        assert_eq!(Pin(spki_digest(&der("dc.pem")).unwrap()).to_string(), expected.trim());
    }
}
