use super::*;

#[test]
fn the_cgroup2_mount_is_found_in_mountinfo() {
    let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
    assert_eq!(mount_point(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
    let unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
    assert_eq!(mount_point(unified), Some(PathBuf::from("/sys/fs/cgroup")));
    // A container's view: a subtree mounted, not the hierarchy's root.
    let subtree = "30 23 0:26 /system.slice/x.service /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    assert_eq!(mount_point(subtree), None);
    let spaced = "30 23 0:26 / /mnt/cg\\0402 rw - cgroup2 cgroup2 rw\n";
    assert_eq!(mount_point(spaced), Some(PathBuf::from("/mnt/cg 2")));
    assert_eq!(mount_point("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"), None);
}

#[test]
fn units_are_read_from_the_slices_down_to_the_deepest_level() {
    let dir = crate::testutil::TempDir::new("units");
    for d in [
        "init.scope",
        "system.slice/nginx.service/sub",
        "system.slice/system-getty.slice/getty@tty1.service",
        "a.slice/a-b.slice/a-b-c.slice/deep.service",
        "a.slice/a-b.slice/a-b-c.slice/a-b-c-d.slice/deeper.service",
        "user.slice/user-1000.slice/user@1000.service/app.slice/editor.service",
        "system.slice/not-a-unit",
    ] {
        std::fs::create_dir_all(dir.0.join(d)).unwrap();
    }
    let h = Hierarchy { dir: dir.0.clone(), below_nft_root: "unified".into() };
    let (units, slices) = h.read().unwrap();
    let got: Vec<(&str, &str)> = units.0.iter().map(|(n, u)| (n.as_str(), u.path.as_str())).collect();
    assert_eq!(
        got,
        [
            ("a-b-c-d.slice", "unified/a.slice/a-b.slice/a-b-c.slice/a-b-c-d.slice"),
            ("a-b-c.slice", "unified/a.slice/a-b.slice/a-b-c.slice"),
            ("a-b.slice", "unified/a.slice/a-b.slice"),
            ("a.slice", "unified/a.slice"),
            ("deep.service", "unified/a.slice/a-b.slice/a-b-c.slice/deep.service"),
            ("getty@tty1.service", "unified/system.slice/system-getty.slice/getty@tty1.service"),
            ("init.scope", "unified/init.scope"),
            ("nginx.service", "unified/system.slice/nginx.service"),
            ("system-getty.slice", "unified/system.slice/system-getty.slice"),
            ("system.slice", "unified/system.slice"),
            ("user-1000.slice", "unified/user.slice/user-1000.slice"),
            ("user.slice", "unified/user.slice"),
            ("user@1000.service", "unified/user.slice/user-1000.slice/user@1000.service"),
        ]
    );
    let nginx = &units.0["nginx.service"];
    assert_eq!(nginx.id, std::fs::metadata(dir.0.join("system.slice/nginx.service")).unwrap().ino());
    assert_eq!(slices.len(), 8, "the root and the slices above level 4: {slices:?}");
}
