//! Tests of loading, validation and merging.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::PathBuf;

use super::*;
use crate::testutil::{write, TempDir};

fn load_one(text: &str) -> Result<Policy, Diagnostics> {
    load_text(&[(PathBuf::from("p.yaml"), text.to_string())])
}

/// Loads from directories, with the services directories left out.
fn load(dirs: &[PathBuf], required: bool) -> Result<Policy, Diagnostics> {
    super::load(&Dirs {
        policy: dirs.to_vec(),
        services: Vec::new(),
        policy_required: required,
        services_required: false,
    })
}

/// The names of the policy's own rules (not core networking's).
fn own(p: &Policy) -> Vec<&str> {
    p.rules.iter().filter(|r| !r.core).map(|r| r.name.as_str()).collect()
}

fn errors(text: &str) -> Vec<String> {
    load_one(text).unwrap_err().0.iter().map(ToString::to_string).collect()
}

#[test]
fn the_embedded_default_is_valid_and_keeps_ssh_open() {
    let p = load_text(&[(diag::embedded_path(), EMBEDDED_DEFAULT.to_string())]).unwrap();
    let ssh = p.rules.iter().find(|r| r.name == "default-ssh-in").unwrap();
    assert_eq!((ssh.direction, ssh.action, ssh.protocol), (Direction::In, Action::Allow, Some(6)));
    assert!(p.profiles.iter().all(|pr| pr.inbound.value == Verdict::Block && pr.outbound.value == Verdict::Allow));
}

#[test]
fn every_problem_is_reported_with_its_place() {
    let errs = errors(
        "rules:\n\
         \x20 - name: a\n\
         \x20   direction: in\n\
         \x20   action: allow\n\
         \x20   protocol: tcp\n\
         \x20   local-ports: [22, \"80-70\", 70000]\n\
         \x20   remote-addresses: [\"10.0.0.0/33\", dhcp-server]\n",
    );
    assert_eq!(
        errs,
        vec![
            "p.yaml:6:23: rules[0].local-ports[1]: \"80-70\" is not a port range (start > end)",
            "p.yaml:6:32: rules[0].local-ports[2]: 70000 is not a port (0-65535)",
            "p.yaml:7:24: rules[0].remote-addresses[0]: \"10.0.0.0/33\" is not a CIDR prefix (IPv4 prefix length is at most 32)",
            "p.yaml:7:39: rules[0].remote-addresses[1]: \"dhcp-server\" is not a keyword (default-gateway, local-subnet, dns, dhcp, wins) nor an address",
        ]
    );
}

#[test]
fn unknown_keys_and_wrong_types_point_at_the_key() {
    let errs = errors("rules:\n  - name: a\n    direction: in\n    action: allow\n    colour: red\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("p.yaml:5:5: unknown field `colour`"), "{errs:?}");
    let errs = errors("rules:\n  - name: a\n    direction: sideways\n    action: allow\n");
    assert!(errs[0].starts_with("p.yaml:3:16: "), "{errs:?}");
    assert!(errs[0].contains("sideways"), "{errs:?}");
}

#[test]
fn rule_level_consistency_checks() {
    let errs = errors(
        "rules:\n\
         - { name: a, direction: in, action: allow, local-ports: [22] }\n\
         - { name: b, direction: in, action: allow, protocol: tcp, icmp-types: [echo-request] }\n\
         - { name: c, direction: in, action: allow, users: [root] }\n\
         - { name: d, direction: in, action: allow, remote-addresses: [\"10.0.0.1\"], local-addresses: [\"::1\"] }\n\
         - { name: e, direction: in, action: allow, protocol: icmp, remote-addresses: [\"fd00::1\"] }\n\
         - { name: a, direction: out, action: block }\n",
    );
    let want = [
        "p.yaml:2:58: rules[0].local-ports: ports need protocol tcp, udp, sctp, dccp or udplite (protocol is any)",
        "p.yaml:3:72: rules[1].icmp-types: icmp-types need protocol icmp or icmpv6 (protocol is tcp)",
        "p.yaml:4:52: rules[2].users: users match the owner of a local socket, so they apply to direction out only",
        "p.yaml:5:11: rules[3]: can never match: IPv4 only by remote-addresses, IPv6 only by local-addresses",
        "p.yaml:6:11: rules[4]: can never match: IPv4 only by protocol icmp, IPv6 only by remote-addresses",
        "p.yaml:7:11: rules[5].name: \"a\" is already the name of the rule at p.yaml:2:3",
    ];
    assert_eq!(errs, want);
}

#[test]
fn duplicate_names_across_files_name_both_places() {
    let rule = "rules:\n  - { name: web, direction: in, action: allow }\n";
    let err =
        load_text(&[(PathBuf::from("10-a.yaml"), rule.into()), (PathBuf::from("20-b.yaml"), rule.into())]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "20-b.yaml:2:13: rules[0].name: \"web\" is already the name of the rule at 10-a.yaml:2:5"
    );
}

#[test]
fn profiles_merge_field_by_field_and_remember_who_set_what() {
    let p = load_text(&[
        (PathBuf::from("10-a.yaml"), "profiles:\n  domain: { interfaces: [eth0], inbound: allow }\n".into()),
        (
            PathBuf::from("20-b.yaml"),
            "profiles:\n  domain: { inbound: block }\nsettings: { log-dropped: true }\n".into(),
        ),
    ])
    .unwrap();
    let d = p.profile(ProfileKind::Domain);
    assert_eq!(d.interfaces.value, vec![values::IfPattern("eth0".into())]);
    assert_eq!(d.interfaces.from.as_ref().unwrap().to_string(), "10-a.yaml:2:25");
    assert_eq!(d.inbound.value, Verdict::Block);
    assert_eq!(d.inbound.from.as_ref().unwrap().to_string(), "20-b.yaml:2:22");
    assert_eq!(d.outbound, Sourced::default(Verdict::Allow));
    assert!(p.settings.log_dropped.value);
    assert_eq!(p.pattern_profile("eth0"), Some(ProfileKind::Domain));
    assert_eq!(p.pattern_profile("eth1"), None);
}

#[test]
fn an_interface_belongs_to_one_profile() {
    let errs = errors("profiles:\n  domain: { interfaces: [\"eth*\"] }\n  private: { interfaces: [eth0, wg0] }\n");
    assert_eq!(
        errs,
        vec!["p.yaml:3:27: profiles.private.interfaces: \"eth0\" overlaps \"eth*\" of profile domain at p.yaml:2:26; an interface belongs to one profile"]
    );
}

#[test]
fn empty_and_comment_only_files_are_empty_policies() {
    assert!(own(&load_one("").unwrap()).is_empty());
    assert!(own(&load_one("# nothing yet\n").unwrap()).is_empty());
}

#[test]
fn later_directories_replace_files_of_the_same_name_and_dev_null_masks() {
    let t = TempDir::new("dirs");
    let (usr, etc) = (t.sub("usr"), t.sub("etc"));
    write(&usr, "00-default.yaml", "rules:\n  - { name: from-usr, direction: in, action: allow }\n");
    write(&usr, "50-extra.yaml", "rules:\n  - { name: extra, direction: in, action: allow }\n");
    write(&usr, "notes.txt", "not policy");
    write(&etc, "00-default.yaml", "rules:\n  - { name: from-etc, direction: in, action: allow }\n");
    let p = load(&[usr.clone(), etc.clone()], true).unwrap();
    assert_eq!(own(&p), ["from-etc", "extra"]);
    assert_eq!(p.default, DefaultLayer::File(etc.join("00-default.yaml")));

    symlink("/dev/null", etc.join("50-extra.yaml")).unwrap();
    let p = load(&[usr.clone(), etc.clone()], true).unwrap();
    assert_eq!(own(&p), ["from-etc"]);

    symlink("/dev/null", etc.join("00-default.yaml.tmp")).unwrap();
    fs::rename(etc.join("00-default.yaml.tmp"), etc.join("00-default.yaml")).unwrap();
    let p = load(&[usr, etc.clone()], true).unwrap();
    assert!(own(&p).is_empty(), "{:?}", own(&p));
    assert_eq!(p.default, DefaultLayer::Masked(etc.join("00-default.yaml")));
}

#[test]
fn local_policy_ignore_ends_the_directories_at_its_own() {
    let t = TempDir::new("local");
    let (usr, fleet, etc) = (t.sub("usr"), t.sub("fleet"), t.sub("etc"));
    write(&usr, "00-default.yaml", "version: 1\n");
    write(&usr, "20-base.yaml", "rules:\n  - { name: base, direction: in, action: allow }\n");
    write(&fleet, "20-base.yaml", "rules:\n  - { name: fleet-base, direction: in, action: allow }\n");
    write(&fleet, "30-fleet.yaml", "rules:\n  - { name: fleet, direction: in, action: allow }\n");
    write(&etc, "20-base.yaml", "rules:\n  - { name: etc-base, direction: in, action: allow }\n");
    // A local file that would not even load: unread, it is no error.
    write(&etc, "40-local.yaml", "rules:\n  - { name: local, direction: sideways }\n");
    let dirs = [usr.clone(), fleet.clone(), etc.clone()];
    assert!(load(&dirs, true).is_err());

    write(&fleet, "10-settings.yaml", "settings:\n  local-policy: ignore\n");
    let p = load(&dirs, true).unwrap();
    assert_eq!(own(&p), ["fleet-base", "fleet"]);
    assert_eq!(p.settings.local_policy.value, LocalPolicy::Ignore);
    assert_eq!(
        p.settings.local_policy.from.unwrap().to_string(),
        format!("{}:2:17", fleet.join("10-settings.yaml").display())
    );
    assert_eq!(p.settings.ignored_dirs, std::slice::from_ref(&etc));

    // No later file undoes it; a change checked in an unread directory changes nothing.
    write(&fleet, "90-apply.yaml", "settings:\n  local-policy: apply\n");
    let replaced = super::load_replacing(
        &Dirs { policy: dirs.to_vec(), ..Dirs::new(Vec::new(), Vec::new()) },
        &etc.join("50-x.yaml"),
        "bad: [",
    )
    .unwrap();
    assert_eq!(replaced.settings.local_policy.value, LocalPolicy::Ignore);
    assert_eq!(own(&replaced), ["fleet-base", "fleet"]);
}

#[test]
fn the_embedded_default_is_a_layer_that_stays_when_files_are_added() {
    let t = TempDir::new("layer");
    let dir = t.sub("policy");
    write(
        &dir,
        "10-web.yaml",
        "rules:\n  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [8080] }\n",
    );
    write(&dir, "0-first.yaml", "rules:\n  - { name: first, direction: in, action: allow }\n");
    let p = load(std::slice::from_ref(&dir), true).unwrap();
    assert_eq!(own(&p), ["first", "default-ssh-in", "default-ping-in", "default-ping6-in", "web"]);
    assert_eq!(p.default, DefaultLayer::Embedded);
    assert_eq!(p.files[1], diag::embedded_path());
    // Core networking comes after, from its own file, whatever the layers say.
    let core: Vec<&Rule> = p.rules.iter().filter(|r| r.core).collect();
    assert!(core.iter().any(|r| r.name == "ipv6-neighbour-discovery-in"));
    assert!(core.iter().all(|r| r.place.file.to_str() == Some("<embedded>/core-networking.yaml")));
}

#[test]
fn core_networking_can_be_turned_off_and_says_where() {
    let p = load_one("settings:\n  core-networking: false\n").unwrap();
    assert!(p.rules.is_empty());
    assert_eq!(p.settings.core_networking.from.unwrap().to_string(), "p.yaml:2:20");
    // Its names are its own: a rule may have one of them.
    let p = load_one("rules:\n  - { name: mld-in, direction: in, action: block }\n").unwrap();
    assert_eq!(p.rules.iter().filter(|r| r.name == "mld-in").count(), 2);
}

#[test]
fn services_expand_and_exclude_ports_of_their_own() {
    let p =
        load_one("rules:\n  - { name: web, direction: in, action: allow, services: [https, http, dns] }\n").unwrap();
    let web = &p.rules[0];
    assert_eq!(web.services, ["https", "http", "dns"]);
    let ports: Vec<(u8, Vec<crate::net::PortRange>)> =
        web.service_ports.iter().map(|s| (s.protocol, s.ports.clone())).collect();
    assert_eq!(
        ports,
        [
            (6, vec![crate::net::PortRange(443, 443), crate::net::PortRange(80, 80), crate::net::PortRange(53, 53)]),
            (17, vec![crate::net::PortRange(53, 53)])
        ]
    );
    assert_eq!(
        errors("rules:\n  - { name: a, direction: in, action: allow, protocol: tcp, services: [htp] }\n"),
        [
            "p.yaml:2:72: rules[0].services: a rule with services takes its protocols and ports from them; remove protocol or make a second rule",
            "p.yaml:2:72: rules[0].services[0]: \"htp\" is not a known service (did you mean ftp, http, ntp?); `ringfence show services` lists them",
        ]
    );
}

/// Found by fuzzing (`fuzz.rs`): an unknown service's name was quoted whole,
/// and compared with every known name by edit distance whatever its length.
#[test]
fn a_huge_unknown_service_is_quoted_at_most_80_characters() {
    let huge = "x".repeat(1 << 20);
    let errs = errors(&format!("rules:\n  - {{ name: a, direction: in, action: allow, services: [{huge}] }}\n"));
    assert_eq!(
        errs,
        [format!(
            "p.yaml:2:57: rules[0].services[0]: \"{}…\" (1048576 characters) is not a known service; `ringfence show services` lists them",
            "x".repeat(80)
        )]
    );
}

#[test]
fn no_files_at_all_means_the_embedded_default() {
    let t = TempDir::new("empty");
    let p = load(&[t.sub("none")], true).unwrap();
    assert_eq!(p.files, vec![diag::embedded_path()]);
    let missing = t.0.join("missing");
    let err = load(std::slice::from_ref(&missing), true).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}:1:1: cannot read policy directory", missing.display())), "{err}");
    assert!(load(&[missing], false).is_ok(), "a default directory may be absent");
}

#[test]
fn unsafe_files_are_refused() {
    let t = TempDir::new("unsafe");
    let (dir, other) = (t.sub("policy"), t.sub("elsewhere"));
    write(&other, "x.yaml", "rules: []\n");
    symlink(other.join("x.yaml"), dir.join("a.yaml")).unwrap();
    write(&dir, "b.yaml", "rules: []\n");
    fs::set_permissions(dir.join("b.yaml"), fs::Permissions::from_mode(0o666)).unwrap();
    fs::write(dir.join("c.yaml"), b"# caf\xe9\n").unwrap();
    let errs: Vec<String> =
        load(std::slice::from_ref(&dir), true).unwrap_err().0.iter().map(ToString::to_string).collect();
    let d = dir.display();
    assert!(
        errs[0].starts_with(&format!("{d}/a.yaml:1:1: is a symlink to "))
            && errs[0].ends_with("which is not in the same policy directory; copy the file instead"),
        "{errs:?}"
    );
    assert_eq!(
        errs[1],
        format!("{d}/b.yaml:1:1: is world-writable (mode 0666); any user could change the firewall: chmod o-w it")
    );
    assert_eq!(errs[2], format!("{d}/c.yaml:1:6: is not UTF-8 text (invalid byte here)"));
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let t = TempDir::new("fifo");
    let dir = t.sub("policy");
    nix::unistd::mkfifo(&dir.join("f.yaml"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let err = load(std::slice::from_ref(&dir), true).unwrap_err().to_string();
    assert_eq!(err, format!("{}/f.yaml:1:1: is not a regular file", dir.display()));
}

#[test]
fn hidden_files_are_not_policy() {
    let t = TempDir::new("hidden");
    let dir = t.sub("policy");
    symlink("/nonexistent", dir.join(".#10-web.yaml")).unwrap();
    write(&dir, "10-web.yaml", "rules:\n  - { name: web, direction: in, action: allow }\n");
    assert!(own(&load(&[dir], true).unwrap()).contains(&"web"));
}

#[test]
fn booleans_are_true_or_false_only() {
    for bad in ["yes", "\"true\"", "on", "1"] {
        let text = format!("rules:\n  - {{ name: a, direction: in, action: allow, enabled: {bad} }}\n");
        assert!(load_one(&text).is_err(), "enabled: {bad} was accepted");
    }
    assert!(
        !load_one("rules:\n  - { name: a, direction: in, action: allow, enabled: false }\n").unwrap().rules[0].enabled
    );
}

#[test]
fn keywords_are_addresses_and_local_addresses_take_only_local_subnet() {
    let p = load_one("rules:\n  - { name: a, direction: in, action: allow, remote-addresses: [default-gateway, \"10.0.0.0/8\"], local-addresses: [local-subnet] }\n").unwrap();
    assert_eq!(p.rules[0].remote_addresses[0], values::Address::Keyword(values::Keyword::DefaultGateway));
    assert_eq!(
        errors("rules:\n  - { name: a, direction: in, action: allow, local-addresses: [default-gateway] }\n"),
        vec!["p.yaml:2:64: rules[0].local-addresses[0]: \"default-gateway\" names remote hosts; local-addresses takes only the keyword \"local-subnet\""]
    );
}

#[test]
fn missing_keys_are_reported_at_the_rule() {
    assert_eq!(
        errors("rules:\n  - name: a\n    protocol: tcp\n"),
        vec!["p.yaml:2:5: rules[0]: missing direction and action (every rule needs name, direction and action)"]
    );
}

#[test]
fn empty_lists_may_be_written_without_a_value() {
    let p = load_one("rules:\n  - name: a\n    direction: in\n    action: allow\n    local-addresses:\n").unwrap();
    assert!(p.rules[0].local_addresses.is_empty());
    assert!(own(&load_one("rules:\n").unwrap()).is_empty());
}

#[test]
fn unit_names_are_checked_where_they_are_written() {
    let errs = errors(
        "rules:\n\
         - { name: a, direction: in, action: allow, units: [nginx.service, \"/usr/sbin/nginx\"] }\n\
         - { name: b, direction: out, action: block, units: [multi-user.target] }\n",
    );
    let want = [
        "p.yaml:2:67: rules[0].units[1]: \"/usr/sbin/nginx\" is a path: rules name systemd units, not executables \
         (docs/policy.md, units)",
        "p.yaml:3:53: rules[1].units[0]: \"multi-user.target\": a .target unit runs no processes, so it has no \
         sockets; name a .service, .socket, .scope, .slice, .mount, .swap unit",
    ];
    assert_eq!(errs, want);
}

#[test]
fn detection_is_checked_with_places() {
    let errs = errors(
        "profiles:\n\
         \x20 domain:\n\
         \x20   detect:\n\
         \x20     probes: [\"http://dc.corp.test/\", \"dc.corp.test:443\"]\n\
         \x20     pins: [\"AAAA\"]\n\
         \x20     interval: 1s\n\
         \x20 private:\n\
         \x20   detect: { probes: [\"dc.corp.test:443\"], ca: relative.pem }\n",
    );
    assert_eq!(
        errs,
        vec![
            "p.yaml:4:16: profiles.domain.detect.probes[0]: \"http://dc.corp.test/\" is not an https URL: a probe is a TLS endpoint (https://HOST[:PORT][/PATH] or HOST:PORT), not \"http\"",
            "p.yaml:5:14: profiles.domain.detect.pins[0]: \"AAAA\" is 3 bytes, not a SHA-256 digest (32)",
            "p.yaml:6:17: profiles.domain.detect.interval: \"1s\" is not between 10s and 1day",
            "p.yaml:8:13: profiles.private.detect: only the domain profile is detected; the others are chosen by interfaces",
            "p.yaml:4:7: profiles.domain.detect needs a CA: its own ca, or isolation.identity.ca",
        ]
    );
}

#[test]
fn detection_takes_isolation_s_ca_and_a_later_file_replaces_it_whole() {
    let first = "profiles:\n  domain:\n    detect: { probes: ['dc1.corp.test:443'], pins: ['47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='] }\n\
                 isolation:\n  identity: { ca: /etc/ca.pem }\n";
    let second = "profiles:\n  domain:\n    detect: { probes: ['https://dc2.corp.test:8443/x'] }\n";
    let p = load_text(&[("a.yaml".into(), first.into()), ("b.yaml".into(), second.into())]).unwrap();
    let d = p.detect().unwrap();
    assert_eq!(d.probes.iter().map(ToString::to_string).collect::<Vec<_>>(), ["dc2.corp.test:8443"]);
    assert!(d.pins.is_empty());
    let ca = d.ca.as_ref().unwrap();
    assert_eq!(
        (ca.value.to_str(), ca.from.as_ref().map(ToString::to_string)),
        (Some("/etc/ca.pem"), Some("a.yaml:5:19".into()))
    );
}

#[test]
fn an_unreadable_detection_ca_is_reported_where_it_is_named() {
    let d = TempDir::new("detect-ca");
    write(
        &d.0,
        "10.yaml",
        "profiles:\n  domain:\n    detect: { probes: ['dc.corp.test:443'], ca: /nonexistent/ca.pem }\n",
    );
    let e = load(std::slice::from_ref(&d.0), true).unwrap_err().to_string();
    assert!(e.contains("10.yaml:3:49: profiles.domain.detect: the CA: cannot read /nonexistent/ca.pem"), "{e}");
}
