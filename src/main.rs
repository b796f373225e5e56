//! Ringfence: a host firewall for Linux on nftables.

mod admission;
mod backend;
mod cli;
mod client;
mod compile;
mod daemon;
mod docgen;
mod dynamic;
mod explain;
mod filewatch;
mod fleet;
mod ike;
mod location;
mod metrics;
mod monitor;
mod net;
mod nft;
mod pki;
mod policy;
mod protocol;
mod rulecmd;
mod schema;
mod show;
#[cfg(test)]
mod testutil;
mod units;
mod xfrm;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;

use cli::{Cli, Command, ExplainArgs, FleetCommand, PolicyDirs, ShowWhat};
use policy::{values, Direction};
use protocol::Request;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Rust ignores SIGPIPE, so a command whose reader went away (`ringfence
    // show rules | head`) would panic at its next print. Commands end as Unix
    // filters do, killed by the signal; the daemon and the agent keep ignoring
    // it, as their clients may go away at any time.
    if !matches!(cli.command, Command::Daemon { .. } | Command::Fleet { command: FleetCommand::Agent { .. } }) {
        use nix::sys::signal::{signal, SigHandler, Signal};
        // SAFETY: no other thread exists yet, and SIG_DFL runs no handler.
        let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RINGFENCE_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringfence: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print<T: serde::Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", human(value));
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the daemon and prints its answer: as it came with `--json`, else
/// read as a `T` and rendered by `human`.
fn show_answer<T: serde::de::DeserializeOwned>(
    json: bool,
    socket: &std::path::Path,
    request: Request,
    human: impl FnOnce(&T) -> String,
) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(&client::call(socket, &request)?)?);
    } else {
        print!("{}", human(&client::ask::<T>(socket, &request)?));
    }
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Daemon { policy, socket_group, flush_on_exit, resolv_conf, mut lease_paths, smb_conf, metrics } => {
            if lease_paths.is_empty() {
                lease_paths = dynamic::leases::DEFAULT_LEASE_PATHS.iter().map(PathBuf::from).collect();
            }
            let opts = daemon::Options {
                dirs: policy.resolve(),
                socket: cli.socket,
                socket_group,
                flush_on_exit,
                resolv_conf,
                lease_paths,
                smb_conf,
                metrics,
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(daemon::host(opts))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { policy, dump } => check(&policy, dump),
        Command::Show { what, json, names, services } => {
            let socket = &cli.socket;
            match what {
                ShowWhat::Services => show_services(json, names, services.service_dirs),
                ShowWhat::State => show_answer(json, socket, Request::State, show::state),
                ShowWhat::Rules => show_answer(json, socket, Request::Rules, |r: &Vec<_>| show::rules(r)),
                ShowWhat::Profiles => show_answer(json, socket, Request::Profiles, show::profiles),
                ShowWhat::Policy => show_answer(json, socket, Request::Policy, show::policy),
                ShowWhat::Sets => show_answer(json, socket, Request::Sets, |s: &Vec<_>| show::sets(s)),
                ShowWhat::Sas => show_answer(json, socket, Request::Sas, show::sas),
                ShowWhat::Stats => show_answer(json, socket, Request::Stats, show::stats),
                ShowWhat::Staged => show_answer(json, socket, Request::Staged, show::staged),
            }
        }
        Command::Explain(args) => explain(&cli.socket, args),
        Command::Apply { confirm } => {
            apply(&cli.socket, confirm)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rule { command } => rulecmd::run(&cli.socket, command),
        Command::Confirm => {
            client::call(&cli.socket, &Request::Confirm)?;
            println!("confirmed; the ruleset stays");
            Ok(ExitCode::SUCCESS)
        }
        Command::Monitor { backlog, json } => {
            let mut out = std::io::stdout().lock();
            client::stream(&cli.socket, &Request::Monitor { backlog }, |line| {
                let written = if json {
                    writeln!(out, "{line}")
                } else {
                    let event = serde_json::from_str(line).context("the daemon's event cannot be read")?;
                    write!(out, "{}", show::monitor_line(&event))
                };
                match written {
                    // The reader (`| head`) has gone: stop quietly.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(std::ops::ControlFlow::Break(())),
                    other => Ok(other.map(std::ops::ControlFlow::Continue)?),
                }
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&schema::policy_schema())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::DefaultPolicy => {
            print!("{}", policy::EMBEDDED_DEFAULT);
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            std::io::Write::write_all(&mut std::io::stdout().lock(), &docgen::completions(shell))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Manpages { dir } => {
            for path in docgen::manpages(&dir)? {
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Fleet { command } => fleet_command(command),
    }
}

fn fleet_command(command: FleetCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match command {
        FleetCommand::Publish { scope, signer, etcd, dir } => {
            let publisher = fleet::sign::Publisher::load(&signer.sign_key, &signer.sign_cert)?;
            let bundle = rt.block_on(fleet::commands::publish(&etcd, &publisher, &scope, &dir))?;
            println!(
                "published scope {scope} revision {} ({} files, {})",
                bundle.revision,
                bundle.files.len(),
                bundle.hash()
            );
        }
        FleetCommand::Withdraw { scope, etcd } => match rt.block_on(fleet::commands::withdraw(&etcd, &scope))? {
            Some(revision) => println!("withdrew scope {scope} (revision {revision}); its hosts remove its files"),
            None => anyhow::bail!("scope {scope} has no bundle in etcd"),
        },
        FleetCommand::Rollout { scope, canary, canary_hosts, complete, abort, max_drop_rise, wait, signer, etcd } => {
            use fleet::rollout::{self, Canaries};
            let publisher = fleet::sign::Publisher::load(&signer.sign_key, &signer.sign_cert)?;
            let wait = std::time::Duration::from_secs(wait);
            rt.block_on(async {
                let rollout = rollout::Rollout::open(&etcd, &publisher, &scope, wait).await?;
                if complete {
                    rollout.complete(max_drop_rise).await
                } else if abort {
                    rollout.abort().await
                } else {
                    rollout.start(canary.map_or(Canaries::Hosts(canary_hosts), Canaries::Percent)).await
                }
            })?
        }
        FleetCommand::Diff { scope, etcd, dir } => {
            print!("{}", rt.block_on(fleet::commands::diff(&etcd, &scope, &dir))?)
        }
        FleetCommand::Agent { config } => rt.block_on(fleet::agent::run(fleet::config::Agent::load(&config)?))?,
        FleetCommand::Status { json, etcd } => {
            let fleet = rt.block_on(fleet::commands::status(&etcd))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&fleet)?);
            } else {
                print!("{}", fleet.render());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the daemon to apply, with a confirmation window if `confirm`, and
/// says what it did.
fn apply(socket: &std::path::Path, confirm: Option<std::time::Duration>) -> anyhow::Result<()> {
    let answer = client::call(socket, &Request::Apply { confirm_secs: confirm.map(|d| d.as_secs()) })?;
    match confirm {
        Some(d) => println!(
            "applied (generation {}); it rolls back in {} s unless `ringfence confirm` comes first",
            answer["generation"],
            d.as_secs()
        ),
        None => println!("applied (generation {})", answer["generation"]),
    }
    Ok(())
}

/// The catalogue as the services directories have it (the daemon reads the
/// same files at its next apply).
fn show_services(json: bool, names: bool, dirs: Vec<PathBuf>) -> anyhow::Result<ExitCode> {
    let dirs = policy::Dirs::new(Vec::new(), dirs);
    let catalogue = policy::services::load(&dirs.services, dirs.services_required)?;
    if names {
        catalogue.0.keys().for_each(|name| println!("{name}"));
        return Ok(ExitCode::SUCCESS);
    }
    print(json, &show::services_view(&catalogue), show::services)
}

fn check(p: &PolicyDirs, dump: bool) -> anyhow::Result<ExitCode> {
    let compiled = policy::load(&p.resolve())
        .and_then(|pol| compile::compile(&pol, &dynamic::DynState::default()).map(|c| (pol, c)));
    match compiled {
        Err(diags) => {
            eprintln!("{diags}");
            Ok(ExitCode::FAILURE)
        }
        // A table whose unit rules could never match is refused, as the daemon does.
        Ok((ref pol, _)) if let Some((rule, Err(e))) = unit_rule_and_hierarchy(pol) => {
            eprintln!("{}: rule {:?}: units: {e}", rule.place, rule.name);
            Ok(ExitCode::FAILURE)
        }
        Ok((_, c)) if dump && c.table.needs_text() => {
            print!("{}", nft::replace_text(&c.table));
            Ok(ExitCode::SUCCESS)
        }
        Ok((_, c)) if dump => {
            serde_json::to_writer_pretty(std::io::stdout().lock(), &c.table.replace())?;
            println!();
            Ok(ExitCode::SUCCESS)
        }
        Ok((pol, c)) => {
            println!(
                "ok: {} files, {} rules -> {} sets, {} elements, {} chains",
                pol.files.len(),
                pol.rules.len(),
                c.table.sets.len(),
                c.table.element_count(),
                c.table.chains.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The first enabled rule with units, and whether the host has the cgroup2
/// hierarchy they match in.
fn unit_rule_and_hierarchy(
    pol: &policy::Policy,
) -> Option<(&policy::Rule, Result<units::Hierarchy, units::UnitsError>)> {
    pol.unit_rule().map(|r| (r, units::Hierarchy::find()))
}

fn explain(socket: &std::path::Path, a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let direction = if a.direction == "in" { Direction::In } else { Direction::Out };
    let protocol = values::parse_protocol(&a.protocol)
        .map_err(anyhow::Error::msg)?
        .context("--protocol any cannot be a packet's protocol")?;
    let icmp_type = match &a.icmp_type {
        None => None,
        Some(_) if protocol != crate::net::IPPROTO_ICMP && protocol != crate::net::IPPROTO_ICMPV6 => {
            bail!("--icmp-type needs --protocol icmp or icmpv6")
        }
        Some(t) => Some(values::parse_icmp_type(protocol, t).map_err(anyhow::Error::msg)?),
    };
    let uid = match &a.user {
        None => None,
        Some(u) => match u.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => Some(nix::unistd::User::from_name(u)?.with_context(|| format!("no user {u:?}"))?.uid.as_raw()),
        },
    };
    let unit = a.unit.as_deref().map(policy::units::parse_unit).transpose().map_err(anyhow::Error::msg)?;
    if (a.local_port.is_some() || a.remote_port.is_some()) && !crate::net::has_ports(protocol) {
        bail!("--local-port and --remote-port need a protocol with ports (tcp, udp, ...)");
    }
    if (a.secure || !a.groups.is_empty()) && direction == Direction::Out {
        bail!("--secure and --group describe how a packet arrives: they need --direction in");
    }
    let packet = explain::Packet {
        protocol,
        remote: a.remote,
        local: a.local,
        remote_port: a.remote_port,
        local_port: a.local_port,
        interface: a.interface,
        icmp_type,
        uid,
        unit,
        secure: a.secure,
        groups: a.groups,
    };
    let staged = a.staged;
    let answer = if a.policy.dirs.is_empty() {
        client::call(socket, &Request::Explain { direction, packet, staged })?
    } else {
        let policy = policy::load(&a.policy.resolve())?;
        // Offline there is no live host: keyword rules match nothing; unit
        // rules match the units running now, if cgroup2 can be read.
        let running = units::Hierarchy::find().and_then(|h| h.read()).map(|(u, _)| u).unwrap_or_default();
        let compiled = compile::compile_with_units(&policy, &dynamic::DynState::default(), &running)?;
        if staged {
            let explained = explain::explain_staged(&policy, &compiled, direction, &packet);
            serde_json::to_value(explained.map_err(anyhow::Error::msg)?)?
        } else {
            serde_json::to_value(explain::explain(&policy, &compiled, direction, &packet).map_err(anyhow::Error::msg)?)?
        }
    };
    let render: fn(&serde_json::Value) -> String = if staged { show::staged_explanation } else { show::explanation };
    print(a.json, &answer, render)
}
