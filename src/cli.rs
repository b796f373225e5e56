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
    /// /etc/ringfence/policy.d and /run/ringfence/policy.d (repeatable; later
    /// directories override files of the same name in earlier ones).
    #[arg(long = "policy-dir", value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
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
        /// stands for (followed through symlinks and replacements).
        #[arg(long, value_name = "PATH", default_value = "/etc/resolv.conf")]
        resolv_conf: PathBuf,
        /// A DHCP lease file, or a directory of them, that the `dhcp` and
        /// `wins` keywords follow (repeatable; replaces the default places:
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
        /// Print the nftables JSON batch that the daemon would apply.
        #[arg(long)]
        dump: bool,
    },
    /// Show what the daemon has applied.
    Show {
        #[arg(value_enum)]
        what: ShowWhat,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
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
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ShowWhat {
    /// The daemon, its table and its last apply.
    State,
    /// Every rule with its source and packet/byte counters.
    Rules,
    /// Profiles, their defaults and counters, and which profile each interface has.
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
    /// profile. Without it the packet is taken to match no profile's interfaces
    /// (public).
    #[arg(long)]
    pub interface: Option<String>,
    /// ICMP type name or number (with --protocol icmp or icmpv6).
    #[arg(long)]
    pub icmp_type: Option<String>,
    /// Owner of the local socket, name or uid (outbound).
    #[arg(long)]
    pub user: Option<String>,
    /// The packet comes over an IPsec SA of a peer in no group (inbound;
    /// without it or --group the packet is in clear).
    #[arg(long)]
    pub secure: bool,
    /// The packet comes over the IPsec SA of a peer whose certificate puts it
    /// in group NAME (repeatable: in all of them); implies --secure.
    #[arg(long = "group", value_name = "NAME")]
    pub groups: Vec<String>,
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
