use super::*;
use crate::testutil::TempDir;

async fn next(s: &mut Subscription) -> Change {
    tokio::time::timeout(Duration::from_secs(5), s.next()).await.expect("a change").unwrap()
}

#[tokio::test]
async fn subscribers_share_one_instance_and_get_the_changes_to_their_own_paths() {
    let t = TempDir::new("filewatch");
    let (a, b) = (t.sub("a"), t.sub("b"));
    std::fs::write(b.join("file"), "1").unwrap();
    let mut files = FileWatch::start();
    assert_eq!(files.mode(), Mode::Inotify);
    let mut of_a = files.subscribe(vec![a.clone()]);
    let mut of_file = files.subscribe(vec![b.join("file")]);
    // Each change goes to the subscribers of its path only: `a`'s gets no
    // change of the file between those of `x` and `y`.
    std::fs::write(a.join("x"), "1").unwrap();
    std::fs::write(b.join("file"), "2").unwrap();
    std::fs::write(a.join("y"), "1").unwrap();
    let c = next(&mut of_file).await;
    assert_eq!(c.path.as_deref(), Some(b.join("file").as_path()));
    let x = Some(a.join("x"));
    // Created, written, then closed by its writer: whole.
    for event in [Event::Partial, Event::Partial, Event::Complete] {
        assert_eq!(next(&mut of_a).await, Change { path: x.clone(), event });
    }
    assert_eq!(next(&mut of_a).await.path, Some(a.join("y")));
}

#[test]
fn stamps_see_writes_replacements_new_and_removed_entries() {
    let t = TempDir::new("filewatch-stamps");
    let dir = t.sub("d");
    std::fs::write(dir.join("kept"), "1").unwrap();
    std::fs::write(dir.join("gone"), "1").unwrap();
    std::fs::write(t.0.join("file"), "1").unwrap();
    let paths = [dir.clone(), t.0.join("file"), t.0.join("missing")];
    let before = Stamps::of(&paths);
    assert_eq!(before.changed(&Stamps::of(&paths)), Vec::<PathBuf>::new());
    std::fs::write(t.0.join("file"), "2").unwrap();
    std::fs::remove_file(dir.join("gone")).unwrap();
    std::fs::write(dir.join("new"), "1").unwrap();
    std::fs::write(t.0.join("missing"), "1").unwrap();
    let mut want = vec![dir.clone(), dir.join("gone"), dir.join("new"), t.0.join("file"), t.0.join("missing")];
    want.sort();
    assert_eq!(before.changed(&Stamps::of(&paths)), want);
}
