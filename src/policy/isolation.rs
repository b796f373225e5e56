//! The `isolation:` section: IPsec domain isolation (docs/isolation.md). Its
//! fields merge one by one across files, later files winning, like profiles.
//! `merge` is pure; `check_identity` reads the credential files, for `load`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::diag::Ctx;
use super::diag::Diagnostic;
use super::raw::{IsolationMode, RawIsolation};
use super::text::Quoted;
use super::values::{self, Address};
use super::Sourced;

/// Windows' defaults: main mode key lifetime 480 minutes, quick mode 60
/// minutes, idle time 5 minutes.
const DEFAULT_IKE_LIFETIME: u64 = 8 * 3600;
const DEFAULT_CHILD_LIFETIME: u64 = 3600;
const DEFAULT_IDLE: u64 = 300;
/// Windows' Secure Request: "If IPsec is not successfully negotiated within
/// 500 milliseconds, the computer falls back to unauthenticated traffic".
const DEFAULT_FALLBACK: Duration = Duration::from_millis(500);
/// What `fallback` may be: below 100 ms not even a LAN peer's IKE answers;
/// above 10 s an application gives up before the soft SA would help it.
pub const FALLBACK_RANGE: std::ops::RangeInclusive<Duration> = Duration::from_millis(100)..=Duration::from_secs(10);
/// charon's own default for its VICI socket.
pub const DEFAULT_IKE_SOCKET: &str = "unix:///var/run/charon.vici";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Isolation {
    pub mode: Sourced<IsolationMode>,
    /// Where isolation applies; every item is one CIDR prefix (an xfrm selector).
    pub secure_subnets: Sourced<Vec<crate::net::AddrRange>>,
    /// Never protected: prefixes, or keywords whose addresses follow the host.
    pub exempt: Sourced<Vec<Address>>,
    pub ca: Sourced<Option<PathBuf>>,
    pub certificate: Sourced<Option<PathBuf>>,
    pub private_key: Sourced<Option<PathBuf>>,
    /// The CA's revocation list: charon refuses peers whose certificate it lists.
    pub crl: Sourced<Option<PathBuf>>,
    /// Seconds.
    pub ike_lifetime: Sourced<u64>,
    pub child_lifetime: Sourced<u64>,
    pub idle_timeout: Sourced<u64>,
    /// How long a first contact negotiates before it falls back to clear
    /// (`request`, `secure-request`, `boundary`).
    #[serde(serialize_with = "millis")]
    pub fallback: Sourced<Duration>,
    /// charon's VICI socket, `unix:///path`.
    pub ike_socket: Sourced<String>,
}

impl Default for Isolation {
    fn default() -> Self {
        Isolation {
            mode: Sourced::default(IsolationMode::Off),
            secure_subnets: Sourced::default(Vec::new()),
            exempt: Sourced::default(Vec::new()),
            ca: Sourced::default(None),
            certificate: Sourced::default(None),
            private_key: Sourced::default(None),
            crl: Sourced::default(None),
            ike_lifetime: Sourced::default(DEFAULT_IKE_LIFETIME),
            child_lifetime: Sourced::default(DEFAULT_CHILD_LIFETIME),
            idle_timeout: Sourced::default(DEFAULT_IDLE),
            fallback: Sourced::default(DEFAULT_FALLBACK),
            ike_socket: Sourced::default(DEFAULT_IKE_SOCKET.to_string()),
        }
    }
}

impl Isolation {
    pub fn enabled(&self) -> bool {
        self.mode.value != IsolationMode::Off
    }

    /// Whether a first contact that cannot be protected goes on in clear
    /// after `fallback` (Windows' Secure Request); `require` modes never do.
    pub fn falls_back(&self) -> bool {
        matches!(self.mode.value, IsolationMode::Request | IsolationMode::SecureRequest | IsolationMode::Boundary)
    }
}

/// `fallback` as `show policy` prints it: milliseconds.
fn millis<S: serde::Serializer>(d: &Sourced<Duration>, s: S) -> Result<S::Ok, S::Error> {
    Sourced { value: d.value.as_millis() as u64, from: d.from.clone() }.serialize(s)
}

/// Takes the fields one file sets.
pub(super) fn merge(cx: &mut Ctx, iso: &mut Isolation, raw: &RawIsolation) {
    if let Some(m) = &raw.mode {
        iso.mode = Sourced { value: m.value, from: Some(cx.place(m)) };
    }
    if let Some(list) = &raw.secure_subnets {
        let value = cx.list("isolation.secure-subnets", &list.value, |s| prefix(s));
        iso.secure_subnets = Sourced { value, from: Some(cx.place(list)) };
    }
    if let Some(list) = &raw.exempt {
        let value = cx.list("isolation.exempt", &list.value, |s| match values::parse_address(s, false)? {
            Address::Range(r) => prefix(s).map(|_| Address::Range(r)),
            keyword => Ok(keyword),
        });
        iso.exempt = Sourced { value, from: Some(cx.place(list)) };
    }
    if let Some(id) = &raw.identity {
        for (key, at, field) in [
            ("ca", &id.ca, &mut iso.ca),
            ("certificate", &id.certificate, &mut iso.certificate),
            ("private-key", &id.private_key, &mut iso.private_key),
            ("crl", &id.crl, &mut iso.crl),
        ] {
            let Some(at) = at else { continue };
            if !at.value.starts_with('/') {
                cx.error(at, format!("isolation.identity.{key}: {} is not an absolute path", Quoted(&at.value)));
            }
            *field = Sourced { value: Some(PathBuf::from(&at.value)), from: Some(cx.place(at)) };
        }
    }
    if let Some(l) = &raw.lifetimes {
        for (key, at, field) in [
            ("ike", &l.ike, &mut iso.ike_lifetime),
            ("child", &l.child, &mut iso.child_lifetime),
            ("idle", &l.idle, &mut iso.idle_timeout),
        ] {
            let Some(at) = at else { continue };
            match humantime::parse_duration(&at.value) {
                Ok(d) if d.as_secs() > 0 => *field = Sourced { value: d.as_secs(), from: Some(cx.place(at)) },
                _ => cx.error(
                    at,
                    format!("isolation.lifetimes.{key}: {} is not a duration such as 8h or 5m", Quoted(&at.value)),
                ),
            }
        }
    }
    if let Some(at) = &raw.fallback {
        match humantime::parse_duration(&at.value) {
            Ok(d) if FALLBACK_RANGE.contains(&d) => iso.fallback = Sourced { value: d, from: Some(cx.place(at)) },
            Ok(_) => cx.error(at, format!("isolation.fallback: {} is not between 100ms and 10s", Quoted(&at.value))),
            Err(_) => {
                cx.error(at, format!("isolation.fallback: {} is not a duration such as 500ms", Quoted(&at.value)))
            }
        }
    }
    if let Some(socket) = raw.ike.as_ref().and_then(|i| i.socket.as_ref()) {
        if !socket.value.starts_with("unix:///") {
            cx.error(socket, format!("isolation.ike.socket: {} is not unix:///PATH", Quoted(&socket.value)));
        }
        iso.ike_socket = Sourced { value: socket.value.clone(), from: Some(cx.place(socket)) };
    }
}

/// A prefix, as xfrm selectors need: a range that is not one is refused.
fn prefix(s: &str) -> Result<crate::net::AddrRange, String> {
    let r = values::parse_addr_range(s)?;
    match r.prefix() {
        Some(_) => Ok(r),
        None => Err(format!("{} is not a CIDR prefix (IPsec selectors are prefixes)", Quoted(s))),
    }
}

/// What the merged section needs as a whole: a mode other than `off` needs
/// secure subnets and an identity.
pub(super) fn check(iso: &Isolation, diags: &mut Vec<Diagnostic>) {
    let Some(at) = iso.mode.from.clone().filter(|_| iso.enabled()) else { return };
    let mode = iso.mode.value.as_str();
    // (Not when the list is empty because its items were wrong: those are reported.)
    let bad_items = diags.iter().any(|d| d.message.starts_with("isolation.secure-subnets["));
    if iso.secure_subnets.value.is_empty() && !bad_items {
        diags.push(Diagnostic::new(at.clone(), format!("isolation.mode {mode} needs isolation.secure-subnets")));
    }
    let missing: Vec<&str> = [("ca", &iso.ca), ("certificate", &iso.certificate), ("private-key", &iso.private_key)]
        .iter()
        .filter(|(_, f)| f.value.is_none())
        .map(|(k, _)| *k)
        .collect();
    if !missing.is_empty() {
        let m = format!("isolation.mode {mode} needs isolation.identity with {}", missing.join(", "));
        diags.push(Diagnostic::new(at, m));
    }
}

/// Reads the identity's files: the CA and the certificate must parse, the CA
/// must have signed the certificate and it must be valid now; the private key
/// must be a regular file owned by root (or the daemon's user) that no one
/// else may read or write. Each problem is reported at the path's place.
pub fn check_identity(iso: &Isolation, diags: &mut Vec<Diagnostic>) {
    if !iso.enabled() {
        return;
    }
    let (Some(ca), Some(cert), Some(key)) = (&iso.ca.value, &iso.certificate.value, &iso.private_key.value) else {
        return;
    };
    // A path that is set was written somewhere: `from` is there.
    let mut fail = |field: &Sourced<Option<PathBuf>>, key: &str, m: String| {
        if let Some(at) = field.from.clone() {
            diags.push(Diagnostic::new(at, format!("isolation.identity.{key}: {m}")));
        }
    };
    if let Err(m) = private_key_file(key) {
        fail(&iso.private_key, "private-key", m);
    }
    let ca_der = match crate::pki::read_certificate(ca) {
        Ok(der) => Some(der),
        Err(m) => {
            fail(&iso.ca, "ca", m);
            None
        }
    };
    match crate::pki::read_certificate(cert) {
        Ok(der) => {
            if let Some(ca_der) = &ca_der {
                if let Err(m) = crate::pki::check_issued_by(&der, ca_der, ca) {
                    fail(&iso.certificate, "certificate", m);
                }
            }
        }
        Err(m) => fail(&iso.certificate, "certificate", m),
    }
    if let Some(crl) = &iso.crl.value {
        let checked = crate::pki::read_crl(crl)
            .and_then(|der| ca_der.as_ref().map_or(Ok(()), |ca_der| crate::pki::check_crl_issued_by(&der, ca_der, ca)));
        if let Err(m) = checked {
            fail(&iso.crl, "crl", m);
        }
    }
}

/// The checks of a private key file, without reading its secret.
pub fn private_key_file(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!("{} is owned by uid {}; a private key must be owned by root", path.display(), meta.uid()));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} has mode {:04o}; a private key must be readable by its owner only (chmod 0600)",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    std::fs::File::open(path).map(drop).map_err(|e| format!("cannot read {}: {e}", path.display()))
}
