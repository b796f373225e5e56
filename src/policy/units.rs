//! systemd unit names, as `units:` takes them: what systemd itself accepts
//! (`unit_name_is_valid` in src/basic/unit-name.c), narrowed to the units that
//! have a cgroup of their own, since a rule matches the sockets of that cgroup.

use super::text::Quoted;

/// systemd's UNIT_NAME_MAX (256) less the terminating NUL.
const MAX_LEN: usize = 255;

/// The characters systemd allows before the type suffix (VALID_CHARS_WITH_AT).
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\' | '@')
}

/// The unit types systemd gives a cgroup: their processes (and so their
/// sockets) are in `<slice>/<unit>`.
const WITH_CGROUP: [&str; 6] = ["service", "socket", "scope", "slice", "mount", "swap"];
/// The other unit types: they run no processes of their own.
const WITHOUT_CGROUP: [&str; 5] = ["target", "device", "automount", "timer", "path"];

/// Checks one name of `units:`; the error says what systemd, or a cgroup,
/// would object to.
pub fn parse_unit(name: &str) -> Result<String, String> {
    let q = Quoted(name);
    if name.len() > MAX_LEN {
        return Err(format!("{q} is longer than the {MAX_LEN} characters systemd allows in a unit name"));
    }
    if name.starts_with('/') {
        return Err(format!("{q} is a path: rules name systemd units, not executables (docs/policy.md, units)"));
    }
    let Some((stem, suffix)) = name.rsplit_once('.').filter(|(stem, _)| !stem.is_empty()) else {
        return Err(format!("{q} is not a unit name (NAME.TYPE, e.g. nginx.service)"));
    };
    if WITHOUT_CGROUP.contains(&suffix) {
        return Err(format!(
            "{q}: a .{suffix} unit runs no processes, so it has no sockets; name a .{} unit",
            WITH_CGROUP.join(", .")
        ));
    }
    if !WITH_CGROUP.contains(&suffix) {
        return Err(format!("{q}: .{suffix} is not a systemd unit type; name a .{} unit", WITH_CGROUP.join(", .")));
    }
    if let Some(bad) = stem.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "{q}: systemd does not allow {} in a unit name (letters, digits and : - _ . \\ @ only)",
            Quoted(&bad.to_string())
        ));
    }
    match stem.split_once('@') {
        Some(("", _)) => Err(format!("{q}: a unit name cannot start with @")),
        Some((_, instance)) if instance.contains('@') => Err(format!("{q}: a unit name has at most one @")),
        Some((prefix, "")) => {
            Err(format!("{q} is a template, which never runs itself; name its instances ({prefix}@INSTANCE.{suffix})"))
        }
        _ if name == "-.slice" => Err(format!("{q} is the root slice, which holds every socket; leave `units` out")),
        _ => Ok(name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_unit;

    #[test]
    fn accepts_what_systemd_accepts_with_a_cgroup() {
        for ok in [
            "nginx.service",
            "getty@tty1.service",
            "system-openvpn.slice",
            "user@1000.service",
            "session-3.scope",
            "sshd.socket",
            "dev-disk-by\\x2duuid-1.swap",
            "a:b_c.d-e.service",
            &format!("{}.service", "a".repeat(247)),
        ] {
            assert_eq!(parse_unit(ok).as_deref(), Ok(ok), "{ok}");
        }
    }

    #[test]
    fn refuses_with_the_reason() {
        for (bad, says) in [
            ("nginx", "is not a unit name"),
            (".service", "is not a unit name"),
            ("nginx.", "is not a systemd unit type"),
            ("nginx.daemon", ".daemon is not a systemd unit type"),
            ("multi-user.target", "runs no processes"),
            ("apt-daily.timer", "runs no processes"),
            ("ngi nx.service", "does not allow \" \""),
            ("/usr/sbin/nginx", "is a path: rules name systemd units, not executables"),
            ("usr/sbin/nginx.service", "does not allow \"/\""),
            ("ngïnx.service", "does not allow \"ï\""),
            ("@foo.service", "cannot start with @"),
            ("a@b@c.service", "at most one @"),
            ("getty@.service", "is a template"),
            ("-.slice", "the root slice"),
            (&format!("{}.service", "a".repeat(248)), "longer than the 255"),
        ] {
            let err = parse_unit(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
