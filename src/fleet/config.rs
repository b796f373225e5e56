//! The agent's configuration file and the etcd connection shared with the
//! admin commands.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use super::scope::Labels;

/// How to reach etcd: mutual TLS with a client certificate.
#[derive(Debug, Clone, Deserialize, clap::Args)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Etcd {
    /// etcd's client URLs (https://ADDRESS:2379), comma-separated.
    #[arg(long, value_delimiter = ',', required = true, env = "RINGFENCE_ETCD_ENDPOINTS", value_name = "URLS")]
    pub endpoints: Vec<String>,
    /// The CA that issued etcd's server certificates (PEM).
    #[arg(long = "etcd-ca", env = "RINGFENCE_ETCD_CA", value_name = "PEM")]
    pub ca: PathBuf,
    /// This client's certificate (PEM).
    #[arg(long = "etcd-cert", env = "RINGFENCE_ETCD_CERT", value_name = "PEM")]
    pub cert: PathBuf,
    /// This client's private key (PEM).
    #[arg(long = "etcd-key", env = "RINGFENCE_ETCD_KEY", value_name = "PEM")]
    pub key: PathBuf,
}

/// `ringfence fleet agent --config FILE` (YAML; docs/fleet.md).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Agent {
    pub etcd: Etcd,
    /// This host's name in status keys (letters, digits, `.`, `_`, `-`).
    pub host: String,
    /// With `host`, the host's name, added by [`Agent::load`].
    #[serde(default)]
    pub labels: Labels,
    /// The host's isolation certificate: its first OU becomes the label `ou`,
    /// as a Windows host's OU selects the GPOs linked to it.
    #[serde(default)]
    pub isolation_certificate: Option<PathBuf>,
    /// The CA that publishers' certificates must chain to.
    pub fleet_ca: PathBuf,
    /// An OU that publishers' certificates must have.
    #[serde(default)]
    pub publisher_ou: Option<String>,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The daemon's control socket.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// The daemon's policy directories when it runs with --policy-dir (the
    /// layer, STATE_DIR/policy.d, among them); by default the daemon's default ones.
    #[serde(default)]
    pub policy_dirs: Vec<PathBuf>,
    /// Seconds the status key outlives the agent's last refresh.
    #[serde(default = "default_ttl")]
    pub status_ttl: u64,
    /// Seconds between refreshes of the status key's lease.
    #[serde(default = "default_refresh")]
    pub status_refresh: u64,
    /// The paths a bundle must not cut (docs/fleet.md, Failsafe).
    #[serde(default)]
    pub failsafe: Failsafe,
}

/// The SSH side of the failsafe (the etcd side is `etcd.endpoints`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Failsafe {
    /// The port sshd listens on.
    #[serde(default = "default_ssh_port")]
    pub ssh_port: u16,
    /// The management addresses SSH must stay open to; none: SSH from no
    /// particular address on every interface.
    #[serde(default)]
    pub ssh_from: Vec<IpAddr>,
}

impl Default for Failsafe {
    fn default() -> Self {
        Failsafe { ssh_port: default_ssh_port(), ssh_from: Vec::new() }
    }
}

fn default_ssh_port() -> u16 {
    22
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(super::DEFAULT_STATE_DIR)
}

fn default_socket() -> PathBuf {
    PathBuf::from(crate::protocol::DEFAULT_SOCKET)
}

fn default_ttl() -> u64 {
    90
}

fn default_refresh() -> u64 {
    30
}

impl Agent {
    pub fn load(path: &Path) -> anyhow::Result<Agent> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut config: Agent = serde_saphyr::from_str(&text).with_context(|| format!("{}", path.display()))?;
        anyhow::ensure!(
            !config.host.is_empty() && config.host.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "{}: host {:?} is not letters, digits, '.', '_', '-'",
            path.display(),
            config.host
        );
        anyhow::ensure!(
            config.status_refresh >= 1 && config.status_refresh < config.status_ttl,
            "{}: status-refresh must be at least 1 s and shorter than status-ttl",
            path.display()
        );
        anyhow::ensure!(
            !config.labels.contains_key(super::scope::HOST),
            "{}: the label `host` is every host's own name, it is not configured",
            path.display()
        );
        config.labels.insert(super::scope::HOST.into(), config.host.clone());
        if let Some(cert) = &config.isolation_certificate {
            anyhow::ensure!(
                !config.labels.contains_key(OU_LABEL),
                "{}: the label {OU_LABEL} comes from isolation-certificate; it cannot be set in labels too",
                path.display()
            );
            let ou = ou_label(cert)?;
            config.labels.insert(OU_LABEL.into(), ou);
        }
        let cn = certificate_cn(&config.etcd.cert)?;
        anyhow::ensure!(
            cn == config.host,
            "{}: host {:?} is not the CN {cn:?} of the etcd certificate {}: etcd takes the user from the CN and \
             lets a host write only its own status key (docs/fleet.md, Access control)",
            path.display(),
            config.host,
            config.etcd.cert.display()
        );
        Ok(config)
    }

    pub fn refresh(&self) -> Duration {
        Duration::from_secs(self.status_refresh)
    }
}

/// The label a host's isolation certificate gives it.
pub const OU_LABEL: &str = "ou";

/// The first value of the subject's CN (`ou` false) or OU of the certificate
/// in `path`.
fn subject_value(path: &Path, ou: bool) -> anyhow::Result<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = crate::pki::read_certificate(path).map_err(anyhow::Error::msg)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let subject = cert.subject();
    let value = if ou { subject.iter_organizational_unit().next() } else { subject.iter_common_name().next() };
    let kind = if ou { "OU" } else { "CN" };
    let value = value.and_then(|v| v.as_str().ok());
    value.map(str::to_string).with_context(|| format!("{}: the certificate's subject has no {kind}", path.display()))
}

/// The subject CN of the certificate in `path`: the user etcd takes it for.
fn certificate_cn(path: &Path) -> anyhow::Result<String> {
    subject_value(path, false)
}

/// The `ou` label of the certificate in `path`: its subject's first OU, each
/// run of characters a label value cannot hold (other than letters, digits,
/// `.`, `_`, `-`) made one `-`: `Web Servers` is `Web-Servers`.
fn ou_label(path: &Path) -> anyhow::Result<String> {
    let ou = subject_value(path, true)?;
    let mut label = String::new();
    for c in ou.chars() {
        if c.is_ascii_alphanumeric() || "._-".contains(c) {
            label.push(c);
        } else if !label.ends_with('-') {
            label.push('-');
        }
    }
    anyhow::ensure!(
        super::scope::word(&label) && label.chars().any(|c| c.is_ascii_alphanumeric()),
        "{}: the OU {ou:?} makes no label value",
        path.display()
    );
    Ok(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration of `host` with the lines `more`, in a directory of
    /// its own (`test` names it: tests run at once).
    fn load_with(test: &str, host: &str, more: &str) -> anyhow::Result<Agent> {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fleet/testdata");
        let dir = crate::testutil::TempDir::new(&format!("fleet-config-{test}"));
        let path = dir.0.join("fleet.yaml");
        let yaml = format!(
            "etcd: {{ endpoints: [https://127.0.0.1:2379], ca: {d}/fleet-ca.pem, cert: {d}/publisher.pem, \
             key: {d}/publisher.key }}\nhost: {host}\nfleet-ca: {d}/fleet-ca.pem\n{more}",
            d = data.display()
        );
        std::fs::write(&path, yaml).unwrap();
        Agent::load(&path)
    }

    #[test]
    fn the_host_must_be_the_cn_of_its_etcd_certificate() {
        let config = load_with("cn", "publisher", "").unwrap();
        assert_eq!(config.host, "publisher");
        assert_eq!(config.labels[super::super::scope::HOST], "publisher");
        let error = format!("{:#}", load_with("not-cn", "web1", "").unwrap_err());
        assert!(error.contains(r#"host "web1" is not the CN "publisher" of the etcd certificate"#), "{error}");
    }

    #[test]
    fn every_host_has_its_name_as_label_host_and_may_not_set_it() {
        let config = load_with("labels", "publisher", "labels: { role: web }\n").unwrap();
        assert_eq!(config.labels.len(), 2);
        assert_eq!(config.labels["role"], "web");
        let error = format!("{:#}", load_with("host-label", "publisher", "labels: { host: web9 }\n").unwrap_err());
        assert!(error.contains("the label `host` is every host's own name"), "{error}");
    }

    #[test]
    fn the_isolation_certificate_gives_the_ou_label() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fleet/testdata");
        let cert = format!("isolation-certificate: {}/publisher.pem\n", data.display());
        let config = load_with("ou", "publisher", &format!("{cert}labels: {{ role: web }}\n")).unwrap();
        let labels: Vec<(&str, &str)> = config.labels.iter().map(|(l, v)| (l.as_str(), v.as_str())).collect();
        assert_eq!(labels, [("host", "publisher"), ("ou", "Fleet-Publishers"), ("role", "web")]);
        let twice = load_with("ou-twice", "publisher", &format!("{cert}labels: {{ ou: web }}\n")).unwrap_err();
        assert!(format!("{twice:#}").contains("the label ou comes from isolation-certificate"), "{twice:#}");
        let ca = format!("isolation-certificate: {}/fleet-ca.pem\n", data.display());
        let none = load_with("ou-none", "publisher", &ca).unwrap_err();
        assert!(format!("{none:#}").contains("the certificate's subject has no OU"), "{none:#}");
    }
}
