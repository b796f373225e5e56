//! Command-line interface definitions (clap).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::protocol::DEFAULT_SOCKET;

#[derive(Parser)]
#[command(name = "ringfence", version, about = "Host firewall for Linux: Windows-Firewall-style policy on nftables")]
pub struct Cli {
    /// Control socket of the daemon to talk to (or, for `daemon`, to create).
    #[arg(long, global = true, env = "RINGFENCE_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone)]
pub struct PolicyDirs {
    /// Read policy files from DIR instead of /usr/lib/ringfence/policy.d,
    /// /var/lib/ringfence/fleet/policy.d (the fleet layer),
    /// /etc/ringfence/policy.d and /run/ringfence/policy.d (repeatable; later
    /// directories override files of the same name in earlier ones). The
    /// embedded default is the layer 00-default.yaml under them all.
    #[arg(long = "policy-dir", value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub services: ServiceDirs,
}

#[derive(Args, Clone)]
pub struct ServiceDirs {
    /// Read service definitions from DIR instead of /usr/lib/ringfence/services.d
    /// and /etc/ringfence/services.d (repeatable, later directories winning), on
    /// top of the embedded catalogue.
    #[arg(long = "services-dir", value_name = "DIR")]
    pub service_dirs: Vec<PathBuf>,
}

impl PolicyDirs {
    pub fn resolve(&self) -> crate::policy::Dirs {
        crate::policy::Dirs::new(self.dirs.clone(), self.services.service_dirs.clone())
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Apply the policy and keep it applied: reload on SIGHUP and on file changes.
    Daemon {
        #[command(flatten)]
        policy: PolicyDirs,
        /// Group allowed to read state through the control socket (root only by default).
        #[arg(long, value_name = "GROUP")]
        socket_group: Option<String>,
        /// Delete the ringfence table on SIGTERM/SIGINT (by default the ruleset
        /// stays in force when the daemon stops: fail closed).
        #[arg(long)]
        flush_on_exit: bool,
        /// The resolver configuration whose name servers the `dns` keyword
        /// stands for (followed through symlinks and replacements), and which
        /// location detection asks for its probes' names over a link whose
        /// DHCP lease names no name servers.
        #[arg(long, value_name = "PATH", default_value = "/etc/resolv.conf")]
        resolv_conf: PathBuf,
        /// A DHCP lease file, or a directory of them, that the `dhcp` and
        /// `wins` keywords and location detection's name servers per link
        /// follow (repeatable; replaces the default places:
        /// /var/lib/dhcp, /var/lib/dhclient, /run/systemd/netif/leases,
        /// /var/lib/NetworkManager, /var/lib/dhcpcd).
        #[arg(long = "leases", value_name = "PATH")]
        lease_paths: Vec<PathBuf>,
        /// Samba's configuration, whose `wins server` the `wins` keyword
        /// includes (a missing file is no WINS server).
        #[arg(long, value_name = "PATH", default_value = crate::dynamic::leases::DEFAULT_SMB_CONF)]
        smb_conf: PathBuf,
        /// Serve Prometheus metrics (the figures of `show stats`) at
        /// unix:/PATH or on a loopback ADDRESS:PORT (e.g. 127.0.0.1:9477).
        #[arg(long, value_name = "WHERE")]
        metrics: Option<crate::metrics::Listen>,
    },
    /// Validate and compile the policy files without touching the kernel.
    /// Prints every error as FILE:LINE:COLUMN: message and exits 1.
    Check {
        #[command(flatten)]
        policy: PolicyDirs,
        /// Print the nftables batch that the daemon would apply: JSON, or nft's
        /// text syntax for a policy with unit rules.
        #[arg(long)]
        dump: bool,
    },
    /// Show what the daemon has applied (`show services`: the catalogue of
    /// named services, read from the services directories).
    Show {
        #[arg(value_enum)]
        what: ShowWhat,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// With `show services`: only the names, one a line (for shell completion).
        #[arg(long)]
        names: bool,
        #[command(flatten)]
        services: ServiceDirs,
    },
    /// Say which rule (or profile default) decides a new connection's first packet.
    /// Asks the daemon about its applied policy, or evaluates the files offline
    /// with --policy-dir.
    Explain(ExplainArgs),
    /// Re-read the policy files and apply them now.
    Apply {
        /// Roll back to the previous ruleset unless `ringfence confirm` comes
        /// within DURATION (e.g. 60s, 2m): the safety net for remote changes.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        confirm: Option<Duration>,
    },
    /// Keep the ruleset of a pending `apply --confirm`.
    Confirm,
    /// One-line rule changes, as `ufw allow` or `netsh advfirewall firewall add
    /// rule`: they edit the managed drop-in 90-local.yaml, validate the whole
    /// resulting policy before writing, and ask the daemon to apply.
    Rule {
        #[command(subcommand)]
        command: RuleCommand,
    },
    /// Print logged packets as they come: rules with `log: true` and, with
    /// `settings.log-dropped`, what the profile defaults drop (rate limited).
    Monitor {
        /// First print up to N recent events the daemon kept (at most 1000).
        #[arg(long, value_name = "N", default_value_t = 0)]
        backlog: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the policy file format (for editors and CI).
    Schema,
    /// Print the embedded default policy (a starting point for your own).
    DefaultPolicy,
    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (ringfence.8, ringfence-SUBCOMMAND.8) into DIR, as the packages do.
    Manpages { dir: PathBuf },
    /// Fleet policy on etcd: publish signed policy bundles per scope, run the
    /// host's agent that applies them, see what every host applied, roll
    /// isolation modes out in phases (docs/fleet.md).
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
}

#[derive(Subcommand)]
pub enum FleetCommand {
    /// Check DIR's policy files (as `check --policy-dir DIR`), sign them as
    /// the scope's next revision (one more than the highest of the scope's
    /// bundle in etcd and the revisions hosts report applied) and write them
    /// to /ringfence/v1/policy/SCOPE.
    Publish {
        /// `all`, or LABEL=VALUE[,LABEL=VALUE...]: the hosts whose labels
        /// have every one of these values.
        #[arg(long)]
        scope: String,
        #[command(flatten)]
        signer: Signer,
        #[command(flatten)]
        etcd: crate::fleet::config::Etcd,
        /// The directory of the scope's policy files (*.yaml).
        dir: PathBuf,
    },
    /// Delete /ringfence/v1/policy/SCOPE: its hosts take its files out of
    /// their fleet layer (checked as a new bundle is) and report it removed.
    /// Needs the publisher's etcd credential. (To empty a scope with a signed
    /// revision instead, publish an empty directory.)
    Withdraw {
        /// The scope, as for `publish`.
        #[arg(long)]
        scope: String,
        #[command(flatten)]
        etcd: crate::fleet::config::Etcd,
    },
    /// Move SCOPE's isolation mode one step (request -> secure-request ->
    /// require) in phases: --canary or --canary-hosts publish it to canaries
    /// and wait for them to report it; --complete checks the gate on the
    /// canaries' reports (the new mode, no error, at most --max-drop-rise
    /// packets dropped since they applied it) and publishes it to the whole
    /// scope; --abort goes back to the mode before (docs/fleet.md, Phased rollout).
    #[command(group(clap::ArgGroup::new("step").required(true).args(["canary", "canary_hosts", "complete", "abort"])))]
    Rollout {
        /// The scope, as for `publish` (naming no host).
        #[arg(long)]
        scope: String,
        /// Start: this share of the scope's live hosts are canaries (`10%`;
        /// at least one; the same hosts each time, by a hash of their names).
        #[arg(long, value_name = "PERCENT", value_parser = crate::fleet::rollout::percent)]
        canary: Option<u32>,
        /// Start: these hosts of the scope are canaries.
        #[arg(long, value_delimiter = ',', value_name = "HOSTS")]
        canary_hosts: Vec<String>,
        /// Check the gate and move the whole scope.
        #[arg(long)]
        complete: bool,
        /// Withdraw the canaries' bundles and, after --complete, publish the
        /// scope's files from before the rollout as a new revision.
        #[arg(long)]
        abort: bool,
        /// The gate: the most packets a canary's profile defaults may have
        /// dropped since it applied the new mode.
        #[arg(long, value_name = "PACKETS", default_value_t = 0)]
        max_drop_rise: u64,
        /// How long to wait for the hosts to report the change.
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        wait: u64,
        #[command(flatten)]
        signer: Signer,
        #[command(flatten)]
        etcd: crate::fleet::config::Etcd,
    },
    /// What publishing DIR to SCOPE would change: the files added, removed
    /// and changed (with a unified diff of each) against the scope's bundle
    /// in etcd, and the revision the publish would take. Reads only (the
    /// publisher's etcd credential: the policy key and the hosts' reports).
    Diff {
        /// The scope, as for `publish`.
        #[arg(long)]
        scope: String,
        #[command(flatten)]
        etcd: crate::fleet::config::Etcd,
        /// The directory of the scope's policy files (*.yaml).
        dir: PathBuf,
    },
    /// Follow this host's scopes in etcd: verify each bundle, write it into the
    /// fleet layer (/var/lib/ringfence/fleet/policy.d), ask the daemon to
    /// apply, report under /ringfence/v1/status/HOST and /ringfence/v1/report/HOST.
    /// The daemon's socket is the configuration's `socket`, not --socket.
    Agent {
        /// The agent's configuration (YAML; docs/fleet.md).
        #[arg(long, value_name = "FILE", default_value = "/etc/ringfence/fleet.yaml")]
        config: PathBuf,
    },
    /// Every host that reported: per scope the hosts at each revision, the
    /// failing ones with their reasons, the offline ones (no live status key),
    /// and each host's daemon summary (interface profiles, isolation mode, SA
    /// and soft-SA counts, packets dropped by the profile defaults).
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        etcd: crate::fleet::config::Etcd,
    },
}

/// The publisher's signing key and certificate.
#[derive(Args)]
pub struct Signer {
    /// The publisher's private key: PKCS#8 PEM, ECDSA P-256 (as `openssl
    /// genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes it).
    #[arg(long, value_name = "PEM")]
    pub sign_key: PathBuf,
    /// The publisher's certificate (PEM), issued by the fleet CA.
    #[arg(long, value_name = "PEM")]
    pub sign_cert: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ShowWhat {
    /// The daemon, its table and its last apply.
    State,
    /// Every rule with its source and packet/byte counters.
    Rules,
    /// Profiles, their defaults and counters, and which profile each interface has
    /// and why (a name pattern, or network location detection).
    Profiles,
    /// The resultant policy after merging, with the file that set each value.
    Policy,
    /// The dynamic address sets (default-gateway, local-subnet, dns, dhcp,
    /// wins): their current elements and where each came from.
    Sets,
    /// IPsec: charon's IKE SAs and their CHILD SAs (peer, certificate
    /// identity, SPIs, algorithms, traffic, lifetimes).
    Sas,
    /// Counters of rules and defaults, applies, dynamic set sizes, isolation and
    /// the dropped-packet monitor.
    Stats,
    /// The named services rules can use (`services: [https]`), with their ports
    /// and the file that defines each.
    Services,
    /// The staged rules (`stage: audit`): the new connections each would have
    /// decided otherwise, and their remote addresses.
    Staged,
}

#[derive(Subcommand)]
pub enum RuleCommand {
    /// Add a rule to the managed drop-in. List options take one value each time
    /// or several separated by commas (--local-ports 80,443).
    Add(Box<RuleAdd>),
    /// Delete a rule of the managed drop-in.
    Delete {
        name: String,
        #[command(flatten)]
        edit: RuleEdit,
    },
    /// Enable a rule of the managed drop-in.
    Enable {
        name: String,
        #[command(flatten)]
        edit: RuleEdit,
    },
    /// Disable a rule of the managed drop-in (it stays in the file).
    Disable {
        name: String,
        #[command(flatten)]
        edit: RuleEdit,
    },
    /// List every rule of the policy files with the file that defines it.
    List {
        /// Only the names of the managed drop-in's rules, one a line (for shell
        /// completion).
        #[arg(long)]
        names: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        policy: PolicyDirs,
    },
}

/// Where a rule command writes and how it applies.
#[derive(Args, Clone)]
pub struct RuleEdit {
    /// The policy to validate against: by default the directories the daemon
    /// reads (or the default ones). The managed drop-in is 90-local.yaml in
    /// /etc/ringfence/policy.d, or with --policy-dir in the last DIR given (a
    /// daemon reading other directories: in the last of them).
    #[command(flatten)]
    pub policy: PolicyDirs,
    /// Roll back unless `ringfence confirm` comes within DURATION, as `apply
    /// --confirm` (the file stays changed: edit it back or run the opposite command).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "no_apply")]
    pub confirm: Option<Duration>,
    /// Only write the file (the daemon applies it at its next reload).
    #[arg(long)]
    pub no_apply: bool,
}

#[derive(Args, Clone)]
pub struct RuleAdd {
    /// The rule's name, unique in the policy.
    pub name: String,
    #[arg(long, value_parser = ["in", "out"])]
    pub direction: String,
    #[arg(long, value_parser = ["allow", "block"])]
    pub action: String,
    /// tcp, udp, icmp, icmpv6, sctp, dccp, udplite, any or a number.
    #[arg(long)]
    pub protocol: Option<String>,
    /// Ports or ranges (443, 8000-8080).
    #[arg(long, value_delimiter = ',', value_name = "PORTS")]
    pub local_ports: Vec<String>,
    #[arg(long, value_delimiter = ',', value_name = "PORTS")]
    pub remote_ports: Vec<String>,
    /// Addresses, prefixes, ranges or keywords (default-gateway, local-subnet,
    /// dns, dhcp, wins).
    #[arg(long, value_delimiter = ',', value_name = "ADDRESSES")]
    pub remote_addresses: Vec<String>,
    #[arg(long, value_delimiter = ',', value_name = "ADDRESSES")]
    pub local_addresses: Vec<String>,
    /// Named services (`ringfence show services`), instead of --protocol and ports.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub services: Vec<String>,
    #[arg(long, value_delimiter = ',', value_name = "PROFILES", value_parser = ["domain", "private", "public"])]
    pub profiles: Vec<String>,
    /// Interface names or patterns (eth0, wg*).
    #[arg(long, value_delimiter = ',', value_name = "INTERFACES")]
    pub interfaces: Vec<String>,
    /// ICMP or ICMPv6 type names or numbers (with --protocol icmp or icmpv6).
    #[arg(long, value_delimiter = ',', value_name = "TYPES")]
    pub icmp_types: Vec<String>,
    /// Log the packets the rule matches (rate limited; `ringfence monitor`).
    #[arg(long)]
    pub log: bool,
    /// Add it disabled.
    #[arg(long)]
    pub disabled: bool,
    #[command(flatten)]
    pub edit: RuleEdit,
}

#[derive(Args)]
pub struct ExplainArgs {
    #[arg(long, value_parser = ["in", "out"])]
    pub direction: String,
    /// tcp, udp, icmp, icmpv6 or a number.
    #[arg(long)]
    pub protocol: String,
    /// The other end's address.
    #[arg(long)]
    pub remote: Option<std::net::IpAddr>,
    /// This host's address.
    #[arg(long)]
    pub local: Option<std::net::IpAddr>,
    #[arg(long)]
    pub remote_port: Option<u16>,
    #[arg(long)]
    pub local_port: Option<u16>,
    /// The interface the packet arrives on (in) or leaves by (out); decides the
    /// profile (the daemon's: by location detection, then by the patterns;
    /// with --policy-dir, by the patterns). Without it the packet is taken to
    /// match no profile's interfaces (public).
    #[arg(long)]
    pub interface: Option<String>,
    /// ICMP type name or number (with --protocol icmp or icmpv6).
    #[arg(long)]
    pub icmp_type: Option<String>,
    /// Owner of the local socket, name or uid (outbound).
    #[arg(long)]
    pub user: Option<String>,
    /// The systemd unit whose cgroup holds the local socket (outbound the
    /// sender's, inbound the listener's); unit rules match it while it runs.
    #[arg(long)]
    pub unit: Option<String>,
    /// The packet comes over an IPsec SA of a peer in no group (inbound;
    /// without it or --group the packet is in clear).
    #[arg(long)]
    pub secure: bool,
    /// The packet comes over the IPsec SA of a peer whose certificate puts it
    /// in group NAME (repeatable: in all of them); implies --secure.
    #[arg(long = "group", value_name = "NAME")]
    pub groups: Vec<String>,
    /// Also what the staged rules (`stage: audit`) would decide.
    #[arg(long)]
    pub staged: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub policy: PolicyDirs,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let q = crate::policy::text::Quoted(s);
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("{q} is not a duration (e.g. 60s, 2m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{q} is not a duration (units: s, m, h)")),
    };
    if secs == 0 {
        return Err("the confirmation window must be at least one second".into());
    }
    Ok(Duration::from_secs(secs))
}
