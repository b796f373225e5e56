use super::*;
use crate::testutil::{write, TempDir};

#[test]
fn name_servers_and_bad_lines() {
    let (servers, bad) = parse("# comment\nsearch example.org\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver 192.0.2.53\nnameserver not-an-ip\noptions edns0\n");
    assert_eq!(servers, ["192.0.2.53".parse::<IpAddr>().unwrap(), "fe80::1".parse().unwrap()]);
    assert_eq!(bad, [(6, "nameserver not-an-ip".to_string())]);
}

#[test]
fn the_stub_leads_to_its_upstreams() {
    let t = TempDir::new("resolv");
    write(&t.0, "resolv.conf", "nameserver 127.0.0.53\noptions edns0 trust-ad\n");
    write(&t.0, "upstream.conf", "nameserver 198.51.100.1\nnameserver 2001:db8::53\n");
    let s = read(&t.0.join("resolv.conf"), &t.0.join("upstream.conf")).unwrap();
    let v4 = s.entries(Keyword::Dns, true);
    assert_eq!(v4.len(), 1);
    assert_eq!(v4[0].source, format!("nameserver in {}", t.0.join("upstream.conf").display()));
    assert_eq!(s.entries(Keyword::Dns, false).len(), 1);
}

#[test]
fn unusable_files_are_errors_so_the_last_good_servers_stay() {
    let t = TempDir::new("resolv-bad");
    assert!(read(&t.0.join("missing"), &t.0.join("missing")).is_err());
    write(&t.0, "garbage.conf", "nameserver 999.1.1.1\n");
    assert!(read(&t.0.join("garbage.conf"), &t.0.join("missing")).is_err());
    write(&t.0, "stub.conf", "nameserver 127.0.0.53\n");
    assert!(read(&t.0.join("stub.conf"), &t.0.join("missing")).unwrap_err().contains("systemd-resolved's stub"));
    // No server at all: a broken or half-written file, not "block all DNS".
    write(&t.0, "empty.conf", "# nothing\n");
    assert!(read(&t.0.join("empty.conf"), &t.0.join("missing")).is_err());
}

#[test]
fn the_file_itself_is_watched_with_its_directories_and_only_it_concerns() {
    let t = TempDir::new("resolv-paths");
    let run = t.sub("run");
    write(&run, "stub-resolv.conf", "nameserver 127.0.0.53\n");
    let etc = t.sub("etc");
    std::os::unix::fs::symlink(run.join("stub-resolv.conf"), etc.join("resolv.conf")).unwrap();
    let r = Resolv { path: etc.join("resolv.conf"), upstream: t.0.join("up/resolv.conf") };
    assert_eq!(
        r.paths(),
        [etc.clone(), etc.join("resolv.conf"), run.clone(), t.0.join("up"), t.0.join("up/resolv.conf")]
    );
    for path in [etc.join("resolv.conf"), run.join("stub-resolv.conf"), t.0.join("up/resolv.conf")] {
        assert!(r.concerns(&path), "{}", path.display());
    }
    for path in [etc.join("resolv.conf.new"), run.join("other"), etc.join("hosts")] {
        assert!(!r.concerns(&path), "{}", path.display());
    }
}
