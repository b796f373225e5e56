//! `profiles.domain.detect`: how the daemon tells that an interface is on the
//! domain's network, as Windows' network location awareness does: a TLS
//! endpoint of the domain answers over that interface with a certificate that
//! chains to the domain's CA. Never a DNS suffix or a network's name, which
//! anyone can claim. `merge` is pure; `check_ca` reads the CA, for `load`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;

use super::diag::{Ctx, Diagnostic};
use super::raw::RawDetect;
use super::text::Quoted;
use super::{isolation::Isolation, Sourced};

/// Windows re-identifies a network on every change; without one, a probe
/// every 10 minutes notices a domain endpoint that went away.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(600);
const INTERVAL_RANGE: std::ops::RangeInclusive<Duration> = Duration::from_secs(10)..=Duration::from_secs(24 * 3600);
/// Long enough for a TLS handshake over a slow VPN, short enough that a
/// silent network is judged soon.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
const TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> = Duration::from_millis(100)..=Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detect {
    /// In order; the first that authenticates decides.
    pub probes: Vec<Probe>,
    /// The CA the probes' certificates must chain to: detect's own `ca`, else
    /// isolation.identity.ca (set by [`resolve_ca`]; `None` only before it).
    pub ca: Option<Sourced<PathBuf>>,
    /// Accepted SHA-256 digests of the leaf's SubjectPublicKeyInfo; empty: any key.
    pub pins: Vec<Pin>,
    #[serde(serialize_with = "secs")]
    pub interval: Duration,
    #[serde(serialize_with = "millis")]
    pub timeout: Duration,
}

/// One TLS endpoint: connected to at `port`, its certificate checked for `host`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub host: Host,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Host {
    /// Resolved through the DNS servers of the interface being judged.
    Name(String),
    /// Connected to as is; the certificate must name the address.
    Ip(IpAddr),
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match &self.host {
            Host::Name(n) => write!(f, "{n}:{}", self.port),
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]:{}", self.port),
            Host::Ip(a) => write!(f, "{a}:{}", self.port),
        }
    }
}

/// A SHA-256 digest of a SubjectPublicKeyInfo, written in base64 (as
/// `openssl pkey -pubout -outform der | openssl dgst -sha256 -binary | base64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin(pub [u8; 32]);

impl Pin {
    pub fn parse(s: &str) -> Result<Pin, String> {
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(s).map_err(|_| format!("{} is not base64", Quoted(s)))?;
        bytes
            .try_into()
            .map(Pin)
            .map_err(|b: Vec<u8>| format!("{} is {} bytes, not a SHA-256 digest (32)", Quoted(s), b.len()))
    }
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}

impl Serialize for Pin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// `https://HOST[:PORT][/PATH]` (port 443 by default) or `HOST:PORT`; HOST
/// is a DNS name, an IPv4 address or a bracketed IPv6 address. Only the TLS
/// handshake is made: the path is not requested.
pub fn parse_probe(s: &str) -> Result<Probe, String> {
    let (authority, default_port) = match s.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => {
            (rest.split(['/', '?', '#']).next().unwrap_or_default(), Some(443))
        }
        Some((scheme, _)) => {
            return Err(format!(
                "{} is not an https URL: a probe is a TLS endpoint (https://HOST[:PORT][/PATH] or HOST:PORT), not {}",
                Quoted(s),
                Quoted(scheme)
            ))
        }
        None => (s, None),
    };
    if authority.contains('@') {
        return Err(format!("{}: a probe takes no user name", Quoted(s)));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) =
                rest.split_once(']').ok_or_else(|| format!("{}: no ] after the IPv6 address", Quoted(s)))?;
            let ip = v6
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("{}: {} is not an IPv6 address", Quoted(s), Quoted(v6)))?;
            (Host::Ip(IpAddr::V6(ip)), after.strip_prefix(':'))
        }
        None => {
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            (parse_host(host).map_err(|m| format!("{}: {m}", Quoted(s)))?, port)
        }
    };
    let port = match (port, default_port) {
        (Some(p), _) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("{}: {} is not a port (1-65535)", Quoted(s), Quoted(p))),
        },
        (None, Some(p)) => p,
        (None, None) => return Err(format!("{} is not HOST:PORT nor https://HOST[:PORT][/PATH]", Quoted(s))),
    };
    Ok(Probe { host, port })
}

fn parse_host(host: &str) -> Result<Host, String> {
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > 253 || !name.split('.').all(label_ok) || name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("{} is not a DNS name or an IP address", Quoted(host)));
    }
    Ok(Host::Name(name.to_ascii_lowercase()))
}

/// Takes the `detect` of one file: it replaces any earlier one whole.
pub(super) fn merge(cx: &mut Ctx, detect: &mut Sourced<Option<Detect>>, raw: &serde_saphyr::Spanned<RawDetect>) {
    let key = "profiles.domain.detect";
    let r = &raw.value;
    let probes = match &r.probes {
        Some(list) if list.value.is_empty() => {
            cx.error(list, format!("{key}.probes: give at least one probe"));
            Vec::new()
        }
        Some(list) => cx.list(&format!("{key}.probes"), &list.value, |s| parse_probe(s)),
        None => {
            cx.error(raw, format!("{key}: probes is missing"));
            Vec::new()
        }
    };
    let ca = r.ca.as_ref().map(|at| {
        if !at.value.starts_with('/') {
            cx.error(at, format!("{key}.ca: {} is not an absolute path", Quoted(&at.value)));
        }
        Sourced { value: PathBuf::from(&at.value), from: Some(cx.place(at)) }
    });
    let pins = cx.list(&format!("{key}.pins"), &r.pins, |s| Pin::parse(s));
    let mut duration = |field: &str,
                        at: &Option<serde_saphyr::Spanned<String>>,
                        range: std::ops::RangeInclusive<Duration>,
                        default| {
        let Some(at) = at else { return default };
        match humantime::parse_duration(&at.value) {
            Ok(d) if range.contains(&d) => d,
            Ok(_) => {
                let (lo, hi) = (humantime::format_duration(*range.start()), humantime::format_duration(*range.end()));
                cx.error(at, format!("{key}.{field}: {} is not between {lo} and {hi}", Quoted(&at.value)));
                default
            }
            Err(_) => {
                cx.error(at, format!("{key}.{field}: {} is not a duration such as 10m or 3s", Quoted(&at.value)));
                default
            }
        }
    };
    let interval = duration("interval", &r.interval, INTERVAL_RANGE, DEFAULT_INTERVAL);
    let timeout = duration("timeout", &r.timeout, TIMEOUT_RANGE, DEFAULT_TIMEOUT);
    *detect = Sourced { value: Some(Detect { probes, ca, pins, interval, timeout }), from: Some(cx.place(raw)) };
}

/// A detect without a `ca` of its own takes isolation's; one with neither is
/// an error at its place.
pub(super) fn resolve_ca(detect: &mut Sourced<Option<Detect>>, iso: &Isolation, diags: &mut Vec<Diagnostic>) {
    let (Some(d), Some(at)) = (&mut detect.value, &detect.from) else { return };
    if d.ca.is_some() {
        return;
    }
    match &iso.ca.value {
        Some(path) => d.ca = Some(Sourced { value: path.clone(), from: iso.ca.from.clone() }),
        None => diags.push(Diagnostic::new(
            at.clone(),
            "profiles.domain.detect needs a CA: its own ca, or isolation.identity.ca",
        )),
    }
}

/// Reads the CA, as `load` does every file a policy names: a CA that cannot
/// be read is reported at the place that named it.
pub fn check_ca(detect: &Sourced<Option<Detect>>, diags: &mut Vec<Diagnostic>) {
    let Some(Sourced { value: path, from: Some(at) }) = detect.value.as_ref().and_then(|d| d.ca.as_ref()) else {
        return;
    };
    if let Err(m) = crate::pki::read_certificate(path) {
        diags.push(Diagnostic::new(at.clone(), format!("profiles.domain.detect: the CA: {m}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_https_urls_or_host_and_port() {
        let p = |s| parse_probe(s).map(|p| p.to_string());
        assert_eq!(p("https://DC1.corp.example/health").unwrap(), "dc1.corp.example:443");
        assert_eq!(p("https://dc1.corp.example:8443").unwrap(), "dc1.corp.example:8443");
        assert_eq!(p("10.0.0.5:636").unwrap(), "10.0.0.5:636");
        assert_eq!(p("https://[2001:db8::5]/").unwrap(), "[2001:db8::5]:443");
        assert_eq!(p("[2001:db8::5]:443").unwrap(), "[2001:db8::5]:443");
        for (bad, says) in [
            ("http://dc1.corp.example/", "is not an https URL"),
            ("ldap://dc1.corp.example", "not \"ldap\""),
            ("dc1.corp.example", "is not HOST:PORT"),
            ("dc1.corp.example:0", "is not a port"),
            ("dc1.corp.example:https", "is not a port"),
            ("https://user@dc1.corp.example/", "no user name"),
            ("https://dc_1.corp.example/", "is not a DNS name"),
            ("https://[2001:db8::5/", "no ]"),
            ("https://300.1.2.3/", "is not a DNS name"),
        ] {
            let e = p(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_pin_is_the_base64_of_32_bytes() {
        let pin = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert_eq!(Pin::parse(pin).unwrap().to_string(), pin);
        assert!(Pin::parse("not base64!").unwrap_err().contains("is not base64"));
        assert!(Pin::parse("AAAA").unwrap_err().contains("is 3 bytes"));
    }
}
