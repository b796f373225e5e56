//! Named services: a catalogue of names for protocols and ports (`https` is
//! tcp/443), which rules use with `services: [https, ssh]` instead of numbers.
//!
//! The catalogue is drop-in files like the policy: the shipped one is embedded
//! and stands for `/usr/lib/ringfence/services.d/00-services.yaml`; files of
//! `/etc/ringfence/services.d/` add services, and a service defined again in a
//! later file (by name order, later directories winning for one file name)
//! replaces the earlier definition.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned as S;

use super::diag::{Diagnostic, Diagnostics, Place};
use super::load::{discover_files, parse, read, Entry};
use super::raw::List;
use super::text::Quoted;
use super::values;
use crate::net::PortRange;

/// Read in this order, as the policy directories.
pub const DEFAULT_DIRS: [&str; 2] = ["/usr/lib/ringfence/services.d", "/etc/ringfence/services.d"];

/// The shipped catalogue (also installed as [`SHIPPED_FILE`]).
pub const EMBEDDED: &str = include_str!("../../services/services.yaml");

/// The file name the shipped catalogue has in a services directory.
pub const SHIPPED_FILE: &str = "00-services.yaml";

/// Where messages place the embedded catalogue.
pub fn embedded_path() -> PathBuf {
    PathBuf::from(format!("<embedded>/{SHIPPED_FILE}"))
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServicesFile {
    #[serde(default)]
    pub services: List<S<RawService>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    #[schemars(with = "Option<String>", required)]
    pub name: Option<S<String>>,
    #[schemars(with = "Option<String>")]
    pub description: Option<S<String>>,
    /// `tcp/443`, `udp/60000-61000`, or a protocol alone (`esp`, `50`).
    #[serde(default)]
    pub ports: List<S<String>>,
}

/// The ports of one protocol; empty: the whole protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePorts {
    pub protocol: u8,
    pub ports: Vec<PortRange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    pub name: String,
    pub description: String,
    /// One entry per protocol, in the order first written.
    pub ports: Vec<ServicePorts>,
    pub place: Place,
}

/// Every service by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalogue(pub BTreeMap<String, Service>);

impl Catalogue {
    /// The shipped catalogue alone.
    #[cfg(test)]
    pub fn embedded() -> Catalogue {
        Catalogue::from_texts(&[(embedded_path(), EMBEDDED.to_string())]).expect("the shipped catalogue is valid")
    }

    /// Parses and merges catalogue texts, in order. Pure: no file access.
    pub fn from_texts(sources: &[(PathBuf, String)]) -> Result<Catalogue, Diagnostics> {
        let mut diags = Vec::new();
        let mut catalogue = Catalogue::default();
        for (path, text) in sources {
            let file: Arc<Path> = Arc::from(path.as_path());
            match parse::<RawServicesFile>(&file, text) {
                Ok(raw) => catalogue.add(&file, &raw, &mut diags),
                Err(d) => diags.push(d),
            }
        }
        if diags.is_empty() {
            Ok(catalogue)
        } else {
            Err(Diagnostics(diags))
        }
    }

    fn add(&mut self, file: &Arc<Path>, raw: &RawServicesFile, diags: &mut Vec<Diagnostic>) {
        fn at<T>(file: &Arc<Path>, s: &S<T>) -> Place {
            Place::new(file, s.referenced.line() as u32, s.referenced.column() as u32)
        }
        let place = |s: &S<String>| at(file, s);
        let mut seen: BTreeMap<String, Place> = BTreeMap::new();
        for (i, item) in raw.services.iter().enumerate() {
            let r = &item.value;
            let Some(name_at) = &r.name else {
                diags.push(Diagnostic::new(at(file, item), format!("services[{i}]: missing name")));
                continue;
            };
            let name = name_at.value.trim().to_string();
            if !valid_name(&name) {
                let m = format!(
                    "services[{i}].name: {} is not a service name (lower-case letters, digits and '-', starting with a letter)",
                    Quoted(&name)
                );
                diags.push(Diagnostic::new(place(name_at), m));
                continue;
            }
            if let Some(first) = seen.get(&name) {
                let m = format!("services[{i}].name: {} is already defined in this file at {first}", Quoted(&name));
                diags.push(Diagnostic::new(place(name_at), m));
                continue;
            }
            seen.insert(name.clone(), place(name_at));
            let mut ports: Vec<ServicePorts> = Vec::new();
            for (j, p) in r.ports.iter().enumerate() {
                match parse_entry(&p.value) {
                    Ok((protocol, range)) => {
                        let at = match ports.iter().position(|e| e.protocol == protocol) {
                            Some(at) => at,
                            None => {
                                ports.push(ServicePorts { protocol, ports: Vec::new() });
                                ports.len() - 1
                            }
                        };
                        match range {
                            Some(range) if !ports[at].ports.contains(&range) => ports[at].ports.push(range),
                            _ => {}
                        }
                    }
                    Err(m) => diags.push(Diagnostic::new(place(p), format!("services[{i}].ports[{j}]: {m}"))),
                }
            }
            if r.ports.is_empty() {
                diags.push(Diagnostic::new(at(file, item), format!("services[{i}]: {} has no ports", Quoted(&name))));
            }
            let description = r.description.as_ref().map_or_else(String::new, |d| d.value.clone());
            self.0.insert(name.clone(), Service { name, description, ports, place: place(name_at) });
        }
    }

    pub fn get(&self, name: &str) -> Option<&Service> {
        self.0.get(name)
    }
}

fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `tcp/443`, `udp/60000-61000` or a protocol alone.
fn parse_entry(s: &str) -> Result<(u8, Option<PortRange>), String> {
    let (proto, ports) = match s.split_once('/') {
        Some((p, ports)) => (p, Some(ports)),
        None => (s, None),
    };
    let protocol = values::parse_protocol(proto)?
        .ok_or_else(|| format!("{} is not a protocol and ports (`any` is every protocol, not a service)", Quoted(s)))?;
    let Some(ports) = ports else { return Ok((protocol, None)) };
    if !crate::net::has_ports(protocol) {
        return Err(format!("{}: ports need tcp, udp, sctp, dccp or udplite", Quoted(s)));
    }
    Ok((protocol, Some(values::parse_port_range(ports)?)))
}

/// Loads the catalogue: the embedded one under the files of `dirs`.
pub fn load(dirs: &[PathBuf], dirs_required: bool) -> Result<Catalogue, Diagnostics> {
    let mut diags = Vec::new();
    let mut sources = Vec::new();
    for entry in discover_files(dirs, dirs_required, "services", SHIPPED_FILE, &mut diags).into_values() {
        match entry {
            Entry::Embedded => sources.push((embedded_path(), EMBEDDED.to_string())),
            Entry::File(path) => match read(&path) {
                Ok(text) => sources.push((path, text)),
                Err(d) => diags.push(d),
            },
            Entry::Masked(_) => {}
        }
    }
    match Catalogue::from_texts(&sources) {
        Ok(c) if diags.is_empty() => Ok(c),
        Ok(_) => Err(Diagnostics(diags)),
        Err(more) => {
            diags.extend(more.0);
            Err(Diagnostics(diags))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalogue_is_valid_and_large_enough() {
        let c = Catalogue::from_texts(&[(embedded_path(), EMBEDDED.to_string())]).unwrap();
        assert!(c.0.len() >= 60, "{} services", c.0.len());
        let https = c.get("https").unwrap();
        assert_eq!(https.ports, vec![ServicePorts { protocol: 6, ports: vec![PortRange(443, 443)] }]);
        let dns = c.get("dns").unwrap();
        assert_eq!(dns.ports.iter().map(|p| p.protocol).collect::<Vec<_>>(), [6, 17]);
    }

    #[test]
    fn directories_extend_and_override_the_embedded_catalogue() {
        let t = crate::testutil::TempDir::new("services-dirs");
        let (usr, etc) = (t.sub("usr"), t.sub("etc"));
        crate::testutil::write(
            &etc,
            "50-ours.yaml",
            "services:\n  - { name: my-app, ports: [tcp/8443] }\n  - { name: http, ports: [tcp/8080] }\n",
        );
        let c = load(&[usr.clone(), etc.clone()], true).unwrap();
        assert_eq!(c.get("my-app").unwrap().ports[0].ports, [PortRange(8443, 8443)]);
        assert_eq!(c.get("http").unwrap().ports[0].ports, [PortRange(8080, 8080)]);
        assert!(c.get("https").is_some(), "the embedded catalogue is under the files");
        // A file of the shipped catalogue's name replaces it; a mask removes it.
        crate::testutil::write(&usr, SHIPPED_FILE, "services:\n  - { name: only, ports: [udp/1] }\n");
        let c = load(&[usr.clone(), etc.clone()], true).unwrap();
        assert!(c.get("https").is_none() && c.get("only").is_some());
        std::os::unix::fs::symlink("/dev/null", etc.join(SHIPPED_FILE)).unwrap();
        let c = load(&[usr, etc], true).unwrap();
        assert_eq!(c.0.keys().collect::<Vec<_>>(), ["http", "my-app"]);
    }

    #[test]
    fn later_files_replace_a_service_and_errors_have_places() {
        let c = Catalogue::from_texts(&[
            (embedded_path(), EMBEDDED.to_string()),
            ("etc.yaml".into(), "services:\n  - name: http\n    ports: [tcp/8080]\n".into()),
        ])
        .unwrap();
        assert_eq!(c.get("http").unwrap().ports[0].ports, [PortRange(8080, 8080)]);
        assert_eq!(c.get("http").unwrap().place.to_string(), "etc.yaml:2:11");
        let errs = Catalogue::from_texts(&[(
            "x.yaml".into(),
            "services:\n  - name: Web\n    ports: [tcp/80]\n  - name: a\n    ports: [icmp/3, tcp/99999]\n".into(),
        )])
        .unwrap_err()
        .to_string();
        assert_eq!(
            errs,
            "x.yaml:2:11: services[0].name: \"Web\" is not a service name (lower-case letters, digits and '-', starting with a letter)\n\
             x.yaml:5:13: services[1].ports[0]: \"icmp/3\": ports need tcp, udp, sctp, dccp or udplite\n\
             x.yaml:5:21: services[1].ports[1]: 99999 is not a port (0-65535)"
        );
    }
}
