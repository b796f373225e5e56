use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::testutil::TempDir;

/// Counts its reads; each read reads the file, as a real source does.
struct Counting {
    dir: PathBuf,
    reads: Arc<AtomicUsize>,
}

impl FileSource for Counting {
    const KEYWORDS: &'static [Keyword] = &[Keyword::Dns];
    fn dirs(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }
    fn read(&mut self, _now: SystemTime) -> Read {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let _ = std::fs::read(self.dir.join("f"));
        Read { state: Ok(DynState::default()), again_at: None }
    }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn reading_the_files_is_not_a_change_but_writing_is() {
    let t = TempDir::new("follow");
    let file = t.0.join("f");
    std::fs::write(&file, "a").unwrap();
    let reads = Arc::new(AtomicUsize::new(0));
    let source = Counting { dir: t.0.clone(), reads: Arc::clone(&reads) };
    let (tx, _rx) = mpsc::channel(4);
    let first = Read { state: Ok(DynState::default()), again_at: None };
    tokio::spawn(follow(source, first, tx));
    settle().await;
    for _ in 0..5 {
        let _ = std::fs::read(Path::new(&file));
    }
    settle().await;
    assert_eq!(reads.load(Ordering::SeqCst), 0, "reads by others must not make the source read");
    std::fs::write(&file, "b").unwrap();
    settle().await;
    // One read for the write, and none after it for the source's own read.
    assert_eq!(reads.load(Ordering::SeqCst), 1);
    settle().await;
    assert_eq!(reads.load(Ordering::SeqCst), 1);
}
