use std::collections::HashMap;

use super::*;
use crate::backend::NoopBackend;
use crate::compile::default_rule_comment;
use crate::compile::location::Source;
use crate::compile::staged::Would;
use crate::daemon::engine::{Engine, Trigger};
use crate::ike::failures::Reason;
use crate::protocol::answers::{ClearByPort, Detection, Fallbacks, HostInterface};
use crate::testutil::{write, TempDir};

/// The stats of a compiled policy of two rules and a staged one (the default
/// layer masked, core networking off), with counters as the kernel would give them.
fn snapshot(dir: &TempDir) -> Snapshot {
    std::os::unix::fs::symlink("/dev/null", dir.0.join("00-default.yaml")).unwrap();
    let rules = "settings:\n  core-networking: false\nrules:\n  - { name: 'web \"a\"', direction: in, action: allow, protocol: tcp, local-ports: [80] }\n  - { name: dns, direction: out, action: block, protocol: udp, remote-ports: [53], log: true }\n  - { name: no-web, direction: in, action: block, protocol: tcp, local-ports: [80], stage: audit }\n";
    write(&dir.0, "10.yaml", rules);
    let mut engine = Engine::new(crate::policy::Dirs::new(vec![dir.0.clone()], Vec::new()), NoopBackend::default());
    engine.reload(Trigger::Files).unwrap();
    // A measured duration's milliseconds need not survive serde_json's
    // default float parsing to the last bit; these tests are about the fields.
    let mut snapshot = engine.snapshot();
    snapshot.last_apply = std::time::Duration::from_micros(12_500);
    snapshot
}

fn counters() -> Counters {
    Counters {
        rules: HashMap::from([(0, (7, 420)), (1, (2, 130)), (2, (6, 360))]),
        defaults: HashMap::from([(default_rule_comment(Direction::In, ProfileKind::Public), (3, 180))]),
    }
}

fn isolation() -> IsolationStats {
    IsolationStats {
        mode: None,
        sas_up: Some(4),
        soft_sas: 1,
        fallbacks: vec![Fallbacks { reason: Reason::AuthFailed, count: 2 }],
        error: None,
        charon_loaded: false,
        clear_inbound: Some(vec![ClearByPort { protocol: "tcp".into(), port: 22, connections: 5 }]),
    }
}

#[test]
fn the_metrics_of_a_compiled_policy() {
    let dir = TempDir::new("stats-metrics");
    let (snapshot, hub) = (snapshot(&dir), Hub::default());
    let mut stats = stats(&snapshot, &hub, isolation(), counters());
    let detection = Detection {
        state: crate::location::State::Domain,
        detected_at: Some("2026-12-03T05:40:18+01:00".into()),
        checked_at: None,
        endpoint: None,
        rtt_ms: None,
        last_error: None,
    };
    stats.interfaces = vec![
        HostInterface {
            interface: "eth0".into(),
            profile: ProfileKind::Domain,
            source: Source::Detection,
            detection: Some(detection),
        },
        HostInterface {
            interface: "wg0".into(),
            profile: ProfileKind::Private,
            source: Source::Pattern,
            detection: None,
        },
    ];
    let mut text = Vec::new();
    crate::metrics::render(&mut text, &stats).unwrap();
    let text = String::from_utf8(text).unwrap();
    let web = format!(
        "name=\"web \\\"a\\\"\",direction=\"in\",action=\"allow\",source=\"{}:4:5\"",
        dir.0.join("10.yaml").display()
    );
    let dns =
        format!("name=\"dns\",direction=\"out\",action=\"block\",source=\"{}:5:5\"", dir.0.join("10.yaml").display());
    for line in [
        "# TYPE ringfence_applies_total counter\nringfence_applies_total 1\n".to_string(),
        // Each family's samples together, after its HELP and TYPE.
        format!("# TYPE ringfence_rule_packets_total counter\nringfence_rule_packets_total{{{web}}} 7\nringfence_rule_packets_total{{{dns}}} 2\n"),
        format!("# TYPE ringfence_rule_bytes_total counter\nringfence_rule_bytes_total{{{web}}} 420\nringfence_rule_bytes_total{{{dns}}} 130\n"),
        format!("ringfence_rule_logged_total{{{dns}}} 0\n"),
        "ringfence_default_packets_total{profile=\"public\",direction=\"in\",verdict=\"block\"} 3\n".into(),
        "ringfence_default_bytes_total{profile=\"domain\",direction=\"out\",verdict=\"allow\"} 0\n".into(),
        "ringfence_dynamic_set_elements{set=\"dyn_local_subnet6\",keyword=\"local-subnet\",family=\"ipv6\"} 0\n".into(),
        // A staged rule's packets are the connections it would have decided
        // otherwise, and it is in no rule family.
        "# TYPE ringfence_staged_decisions_total counter\nringfence_staged_decisions_total{rule=\"no-web\",would=\"block\"} 6\n".into(),
        "ringfence_isolation_sas_up 4\n".into(),
        "ringfence_isolation_soft_sas 1\n".into(),
        "ringfence_isolation_fallbacks_total{reason=\"auth-failed\"} 2\n".into(),
        "ringfence_isolation_clear_inbound_total{protocol=\"tcp\",port=\"22\"} 5\n".into(),
        "# TYPE ringfence_monitor_subscribers gauge\nringfence_monitor_subscribers 0\n".into(),
        "ringfence_interface_profile{interface=\"eth0\",profile=\"domain\",source=\"detection\"} 1\n".into(),
        "ringfence_interface_profile{interface=\"wg0\",profile=\"private\",source=\"pattern\"} 1\n".into(),
        "# TYPE ringfence_location_decided_timestamp_seconds gauge\nringfence_location_decided_timestamp_seconds{interface=\"eth0\",state=\"domain\"} 1796272818\n".into(),
    ] {
        assert!(text.contains(&line), "no {line:?} in\n{text}");
    }
    assert_eq!(text.matches("# HELP ").count(), 21, "{text}");
    assert!(!text.contains("ringfence_rule_packets_total{name=\"no-web\""), "{text}");
    assert!(text.lines().all(|l| l.starts_with("# ") || l.starts_with("ringfence_")), "{text}");
}

#[test]
fn the_cli_reads_back_what_the_daemon_writes() {
    let dir = TempDir::new("stats-json");
    let (snapshot, hub) = (snapshot(&dir), Hub::default());
    let json = serde_json::to_string(&stats(&snapshot, &hub, isolation(), counters())).unwrap();
    let read: Stats = serde_json::from_str(&json).unwrap();
    let rules: Vec<_> = read.rules.iter().map(|r| (&*r.name, r.direction, r.packets, r.log, r.staged)).collect();
    assert_eq!(
        rules,
        [
            ("web \"a\"", Direction::In, 7, false, None),
            ("dns", Direction::Out, 2, true, None),
            ("no-web", Direction::In, 6, false, Some(Would::Block))
        ]
    );
    assert_eq!(read.defaults.len(), 6);
    assert_eq!(read.isolation.clear_inbound.as_ref().unwrap()[0].connections, 5);
    assert_eq!(serde_json::to_string(&read).unwrap(), json);
}
