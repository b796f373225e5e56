//! The failsafe: the agent refuses a bundle under which the host would drop
//! its own way to etcd or SSH (docs/fleet.md, Failsafe). A refusal rather
//! than an exemption like Calico's failsafe ports: the ruleset is then exactly
//! what the policy says, and the bundle that would have cut the host off is
//! reported, not silently overridden.
//!
//! The paths are packets for `explain`, the same lookups as the kernel's
//! chains, over the policy as the daemon would load it with the staged layer:
//! outbound TCP from the agent to each etcd endpoint, and inbound TCP to the
//! SSH port from each management address (or from no particular address on
//! every interface). Each is sent the way the kernel routes it now (interface
//! and source address), and keyword rules match the host's live
//! `default-gateway` and `local-subnet` values, read over rtnetlink as the
//! daemon reads them; `dns`, `dhcp` and `wins` match nothing here (their
//! sources are the daemon's files, which the agent does not know).

use std::net::{IpAddr, SocketAddr, UdpSocket};

use anyhow::Context;

use super::config;
use crate::compile::Compiled;
use crate::dynamic::DynState;
use crate::explain::{explain, isolation_drops, Decider, Packet};
use crate::net::IPPROTO_TCP;
use crate::policy::{Direction, Policy, Verdict};

/// The default port of an etcd endpoint that names none.
const ETCD_PORT: u16 = 2379;

/// A connection that the applied policy must let through.
#[derive(Debug)]
pub struct Connection {
    /// For messages: "outbound to etcd 10.0.0.1:2379".
    pub what: String,
    pub direction: Direction,
    pub packet: Packet,
}

/// The paths to keep open, and the keyword values they are evaluated under.
#[derive(Debug, Default)]
pub struct Failsafe {
    pub connections: Vec<Connection>,
    pub dynamic: DynState,
}

impl Failsafe {
    /// The paths as the host routes them now.
    pub async fn now(config: &config::Agent) -> anyhow::Result<Failsafe> {
        let (conn, handle, _) = rtnetlink::new_connection().context("cannot open an rtnetlink socket")?;
        let conn = tokio::spawn(conn);
        let dynamic = crate::dynamic::netlink::read(&handle).await;
        conn.abort();
        let dynamic = dynamic.context("reading the host's addresses and routes")?;
        let interfaces = interfaces()?;
        let uid = nix::unistd::geteuid().as_raw();
        let mut connections = Vec::new();
        for endpoint in &config.etcd.endpoints {
            for remote in resolve(endpoint).await? {
                let (interface, local) = route(remote.ip(), &interfaces);
                let packet = Packet {
                    protocol: IPPROTO_TCP,
                    remote: Some(remote.ip()),
                    local,
                    remote_port: Some(remote.port()),
                    interface,
                    uid: Some(uid),
                    ..Packet::default()
                };
                connections.push(Connection {
                    what: format!("outbound to etcd {remote}"),
                    direction: Direction::Out,
                    packet,
                });
            }
        }
        let ssh = |remote: Option<IpAddr>, (interface, local): (Option<String>, Option<IpAddr>)| {
            let from = remote.map_or("anywhere".to_string(), |r| r.to_string());
            let on = interface.as_deref().map_or(String::new(), |i| format!(" on {i}"));
            let packet = Packet {
                protocol: IPPROTO_TCP,
                remote,
                local,
                local_port: Some(config.failsafe.ssh_port),
                interface: interface.clone(),
                ..Packet::default()
            };
            Connection {
                what: format!("inbound SSH (port {}) from {from}{on}", config.failsafe.ssh_port),
                direction: Direction::In,
                packet,
            }
        };
        if config.failsafe.ssh_from.is_empty() {
            connections.extend(interfaces.iter().map(|(i, a)| ssh(None, (Some(i.clone()), Some(*a)))));
        } else {
            connections.extend(config.failsafe.ssh_from.iter().map(|&r| ssh(Some(r), route(r, &interfaces))));
        }
        Ok(Failsafe { connections, dynamic })
    }

    /// The first path that `policy` drops and the host's policy without the
    /// bundle, `before`, does not, described. A path dropped before is not the
    /// bundle's doing (a host whose own files shut SSH, say), so it does not
    /// refuse the bundle; `before` is compiled only if a path is dropped.
    pub fn check(
        &self,
        policy: &Policy,
        compiled: &Compiled,
        before: impl FnOnce() -> Option<(Policy, Compiled)>,
    ) -> Result<(), String> {
        let cut: Vec<(&Connection, String)> =
            self.connections.iter().filter_map(|p| Some((p, drops(policy, compiled, p)?))).collect();
        if cut.is_empty() {
            return Ok(());
        }
        let before = before();
        let new = cut.into_iter().find(|(p, _)| before.as_ref().is_none_or(|(pol, c)| drops(pol, c, p).is_none()));
        new.map_or(Ok(()), |(path, why)| Err(format!("it would block {}: {why}", path.what)))
    }
}

/// What in `policy` drops `path`, if anything does.
fn drops(policy: &Policy, compiled: &Compiled, path: &Connection) -> Option<String> {
    // The replies of a connection the host opens pass the rules as
    // established, but not a requiring isolation mode in clear.
    if path.direction == Direction::Out && isolation_drops(policy, compiled, &path.packet, false) {
        return Some(format!("isolation ({}) drops its replies in clear", policy.isolation.mode.value.as_str()));
    }
    let explained = match explain(policy, compiled, path.direction, &path.packet) {
        Ok(e) => e,
        Err(e) => return Some(e),
    };
    (explained.verdict == Verdict::Block).then(|| match explained.decided_by {
        Decider::Rule { name, place, .. } | Decider::CoreNetworking { name, place, .. } => {
            format!("rule {name} ({place})")
        }
        Decider::ProfileDefault { profile } => format!("the {} profile's default", profile.as_str()),
        Decider::Isolation { mode } => format!("isolation ({}) in clear", mode.as_str()),
        Decider::Loopback => "loopback".into(),
    })
}

/// The addresses of an endpoint URL (`https://10.0.0.1:2379`).
async fn resolve(endpoint: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let has_port = authority.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']'));
    let authority = if has_port { authority.to_string() } else { format!("{authority}:{ETCD_PORT}") };
    let addresses = tokio::net::lookup_host(&authority).await.with_context(|| format!("cannot resolve {endpoint}"))?;
    Ok(addresses.collect())
}

/// Every address of the host but the loopback interface's, with its interface.
fn interfaces() -> anyhow::Result<Vec<(String, IpAddr)>> {
    let all = nix::ifaddrs::getifaddrs().context("cannot list the host's addresses")?;
    let ip = |a: &nix::sys::socket::SockaddrStorage| {
        a.as_sockaddr_in().map(|a| IpAddr::V4(a.ip())).or_else(|| a.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())))
    };
    Ok(all
        .filter(|i| i.interface_name != "lo")
        .filter_map(|i| Some((i.interface_name.clone(), i.address.as_ref().and_then(ip)?)))
        .collect())
}

/// The interface and source address the kernel picks for `remote` (a
/// connected UDP socket asks it without sending), none when it has no route.
fn route(remote: IpAddr, interfaces: &[(String, IpAddr)]) -> (Option<String>, Option<IpAddr>) {
    let any = if remote.is_ipv4() { IpAddr::from([0u8; 4]) } else { IpAddr::from([0u16; 8]) };
    let socket = UdpSocket::bind((any, 0));
    let local = socket.and_then(|s| s.connect((remote, 9)).and_then(|()| s.local_addr())).ok().map(|a| a.ip());
    let interface = local.and_then(|l| interfaces.iter().find(|(_, a)| *a == l)).map(|(i, _)| i.clone());
    (interface, local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(direction: Direction, remote: &str, local_port: Option<u16>, remote_port: Option<u16>) -> Connection {
        let packet = Packet {
            protocol: IPPROTO_TCP,
            remote: Some(remote.parse().unwrap()),
            local_port,
            remote_port,
            interface: Some("eth0".into()),
            ..Packet::default()
        };
        Connection { what: remote.to_string(), direction, packet }
    }

    /// The policy of `yaml` alone (no keyword has values).
    fn compiled(yaml: &str) -> (Policy, Compiled) {
        let policy = crate::policy::load_text(&[("test.yaml".into(), yaml.to_string())]).unwrap();
        let compiled = crate::compile::compile(&policy, &DynState::default()).unwrap();
        (policy, compiled)
    }

    /// The failsafe over `yaml`, with nothing dropped before it.
    fn check(failsafe: &Failsafe, yaml: &str) -> Result<(), String> {
        let (policy, compiled) = compiled(yaml);
        failsafe.check(&policy, &compiled, || None)
    }

    #[test]
    fn a_policy_that_drops_a_path_is_named_with_the_rule() {
        let failsafe = Failsafe {
            connections: vec![
                path(Direction::In, "10.0.0.9", Some(22), None),
                path(Direction::Out, "10.0.0.1", None, Some(2379)),
            ],
            dynamic: DynState::default(),
        };
        let ssh = "rules:\n  - { name: ssh, direction: in, action: allow, protocol: tcp, local-ports: [22] }\n";
        assert_eq!(check(&failsafe, ssh), Ok(()));
        let e = check(
            &failsafe,
            &format!(
                "{ssh}  - {{ name: no-etcd, direction: out, action: block, protocol: tcp, remote-ports: [2379] }}\n"
            ),
        );
        assert!(e.as_ref().is_err_and(|e| e.starts_with("it would block 10.0.0.1: rule no-etcd (")), "{e:?}");
        let e = check(&failsafe, "rules: []\n");
        assert_eq!(e, Err("it would block 10.0.0.9: the public profile's default".into()));

        // SSH dropped before the bundle too: only the path it cuts counts.
        let (no_ssh, c) = compiled("rules: []\n");
        assert_eq!(failsafe.check(&no_ssh, &c, || Some(compiled("rules: []\n"))), Ok(()));
        let no_etcd =
            "rules:\n  - { name: no-etcd, direction: out, action: block, protocol: tcp, remote-ports: [2379] }\n";
        let (p, c) = compiled(no_etcd);
        let e = failsafe.check(&p, &c, || Some(compiled("rules: []\n")));
        assert!(e.as_ref().is_err_and(|e| e.starts_with("it would block 10.0.0.1: rule no-etcd (")), "{e:?}");
    }

    #[test]
    fn isolation_counts_for_etcd_replies_and_management_ssh() {
        let failsafe = Failsafe {
            connections: vec![
                path(Direction::Out, "10.0.0.1", None, Some(2379)),
                path(Direction::In, "10.0.0.9", Some(22), None),
            ],
            dynamic: DynState::default(),
        };
        let iso = |mode: &str, exempt: &str| {
            format!(
                "rules:\n  - {{ name: ssh, direction: in, action: allow, protocol: tcp, local-ports: [22] }}\n\
                 isolation:\n  mode: {mode}\n  secure-subnets: [10.0.0.0/8]\n  exempt: [{exempt}]\n  \
                 identity: {{ ca: /ca, certificate: /c, private-key: /k }}\n"
            )
        };
        let e = check(&failsafe, &iso("require", ""));
        assert_eq!(e, Err("it would block 10.0.0.1: isolation (require) drops its replies in clear".into()));
        // secure-request accepts the replies of the host's own clear connections, not new ones in clear.
        let e = check(&failsafe, &iso("secure-request", ""));
        assert_eq!(e, Err("it would block 10.0.0.9: isolation (secure-request) in clear".into()));
        assert_eq!(check(&failsafe, &iso("require", "10.0.0.1/32, 10.0.0.9/32")), Ok(()));
    }

    #[tokio::test]
    async fn endpoints_resolve_with_their_port_or_etcds() {
        assert_eq!(resolve("https://10.0.0.1:2380").await.unwrap(), ["10.0.0.1:2380".parse().unwrap()]);
        assert_eq!(resolve("https://[::1]/x").await.unwrap(), ["[::1]:2379".parse().unwrap()]);
        assert_eq!(resolve("10.0.0.2").await.unwrap(), ["10.0.0.2:2379".parse().unwrap()]);
    }
}
