use super::*;
use crate::cli::{Cli, Command};
use crate::testutil::{write, TempDir};
use clap::Parser;

/// The change a command line asks for, as `run` reads it (without applying).
fn edit(dir: &Path, args: &str) -> Result<&'static str, RuleError> {
    let line = format!("ringfence rule {args} --no-apply --policy-dir {}", dir.display());
    let Command::Rule { command } = Cli::try_parse_from(line.split_whitespace()).unwrap().command else {
        panic!("not a rule command: {args}")
    };
    let (name, edit, change) = match command {
        RuleCommand::Add(a) => (a.name.clone(), a.edit.clone(), Change::Add(Box::new(ManagedRule::from_args(&a)))),
        RuleCommand::Delete { name, edit } => (name, edit, Change::Delete),
        RuleCommand::Enable { name, edit } => (name, edit, Change::Enable(true)),
        RuleCommand::Disable { name, edit } => (name, edit, Change::Enable(false)),
        RuleCommand::List { .. } => panic!("list changes nothing"),
    };
    let dirs = edit.policy.resolve();
    edit_managed(&dirs, &managed_path(&dirs), &name, change)
}

fn rule<'p>(p: &'p Policy, name: &str) -> &'p crate::policy::Rule {
    p.rules.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no rule {name}"))
}

fn load(dir: &Path) -> Policy {
    policy::load(&Dirs::new(vec![dir.to_path_buf()], Vec::new())).unwrap()
}

#[test]
fn add_disable_enable_delete_round_trip() {
    let t = TempDir::new("rulecmd-trip");
    let dir = t.sub("policy.d");
    assert_eq!(
        edit(&dir, "add web --direction in --action allow --protocol tcp --local-ports 443,8000-8080").unwrap(),
        "added"
    );
    let p = load(&dir);
    let web = rule(&p, "web");
    assert_eq!(web.place.file.as_ref(), dir.join(MANAGED_FILE));
    assert_eq!(web.local_ports, [crate::net::PortRange(443, 443), crate::net::PortRange(8000, 8080)]);
    assert!(web.enabled);
    assert_eq!(edit(&dir, "add mail --direction in --action allow --services smtp,submission").unwrap(), "added");
    assert_eq!(edit(&dir, "disable web").unwrap(), "disabled");
    assert!(!rule(&load(&dir), "web").enabled);
    assert_eq!(edit(&dir, "enable web").unwrap(), "enabled");
    assert!(rule(&load(&dir), "web").enabled);
    assert_eq!(edit(&dir, "delete web").unwrap(), "deleted");
    let p = load(&dir);
    assert!(p.rules.iter().all(|r| r.name != "web"));
    assert_eq!(rule(&p, "mail").services, ["smtp", "submission"]);
    let mode = fs::metadata(dir.join(MANAGED_FILE)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
}

#[test]
fn an_invalid_change_writes_nothing() {
    let t = TempDir::new("rulecmd-invalid");
    let dir = t.sub("policy.d");
    edit(&dir, "add web --direction in --action allow --protocol tcp --local-ports 443").unwrap();
    let before = fs::read_to_string(dir.join(MANAGED_FILE)).unwrap();
    let err = edit(&dir, "add bad --direction in --action allow --protocol tcp --local-ports 70000").unwrap_err();
    let RuleError::Invalid(diags) = &err else { panic!("{err}") };
    let m = diags.to_string();
    assert!(m.contains(&format!("{}:", dir.join(MANAGED_FILE).display())) && m.contains("70000 is not a port"), "{m}");
    let err = edit(&dir, "add nosuch --direction in --action allow --services no-such-service").unwrap_err();
    assert!(err.to_string().contains("\"no-such-service\" is not a known service"), "{err}");
    assert_eq!(fs::read_to_string(dir.join(MANAGED_FILE)).unwrap(), before);
    assert!(matches!(edit(&dir, "add web --direction in --action block").unwrap_err(), RuleError::Exists { .. }));
}

#[test]
fn rules_of_other_files_are_refused_by_name_of_their_file() {
    let t = TempDir::new("rulecmd-other");
    let dir = t.sub("policy.d");
    write(
        &dir,
        "20-web.yaml",
        "rules:\n  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [80] }\n",
    );
    let err = edit(&dir, "disable web").unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "rule \"web\" is defined at {}:2:5, not in the managed {}: edit that file",
            dir.join("20-web.yaml").display(),
            dir.join(MANAGED_FILE).display()
        )
    );
    let err = edit(&dir, "add web --direction in --action block").unwrap_err().to_string();
    assert!(err.contains("20-web.yaml:2:5"), "{err}");
    let err = edit(&dir, "delete default-ssh-in").unwrap_err().to_string();
    assert!(err.contains("<embedded>/00-default.yaml"), "{err}");
    assert!(!dir.join(MANAGED_FILE).exists());
    assert!(matches!(edit(&dir, "delete nothing").unwrap_err(), RuleError::Missing { .. }));
}

#[test]
fn a_file_the_commands_did_not_write_is_left_alone() {
    let t = TempDir::new("rulecmd-foreign");
    let dir = t.sub("policy.d");
    let foreign = "profiles:\n  public: { inbound: allow }\n";
    write(&dir, MANAGED_FILE, foreign);
    let err = edit(&dir, "add web --direction in --action allow --protocol tcp --local-ports 443").unwrap_err();
    assert!(matches!(err, RuleError::NotManaged { .. }), "{err}");
    assert_eq!(fs::read_to_string(dir.join(MANAGED_FILE)).unwrap(), foreign);
}

#[test]
fn concurrent_adds_both_land() {
    let t = TempDir::new("rulecmd-race");
    let dir = t.sub("policy.d");
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                edit(&dir, &format!("add r{i} --direction in --action allow --protocol tcp --local-ports {}", 1000 + i))
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let p = load(&dir);
    for i in 0..4 {
        rule(&p, &format!("r{i}"));
    }
}
