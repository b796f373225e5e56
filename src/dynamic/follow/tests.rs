use std::path::Path;

use super::*;
use crate::filewatch::FileWatch;
use crate::testutil::TempDir;

/// Reports each of its reads, numbered; each read reads the file, as a real
/// source does. Only the file `f` concerns it.
struct Counting {
    dir: PathBuf,
    reads: usize,
    done: mpsc::UnboundedSender<usize>,
}

impl FileSource for Counting {
    const KEYWORDS: &'static [Keyword] = &[Keyword::Dns];
    fn paths(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }
    fn concerns(&self, path: &Path) -> bool {
        path == self.dir.join("f")
    }
    fn read(&mut self, _now: SystemTime) -> Read {
        self.reads += 1;
        let _ = std::fs::read(self.dir.join("f"));
        let _ = self.done.send(self.reads);
        Read { state: Ok(DynState::default()), again_at: None }
    }
}

async fn next_read(reads: &mut mpsc::UnboundedReceiver<usize>) -> usize {
    tokio::time::timeout(std::time::Duration::from_secs(5), reads.recv()).await.expect("a read").unwrap()
}

#[tokio::test]
async fn only_writes_to_the_files_that_concern_the_source_make_it_read() {
    let t = TempDir::new("follow");
    let file = t.0.join("f");
    std::fs::write(&file, "a").unwrap();
    let (done, mut reads) = mpsc::unbounded_channel();
    let source = Counting { dir: t.0.clone(), reads: 0, done };
    let mut files = FileWatch::start();
    let changes = files.subscribe(source.paths());
    let (tx, _rx) = mpsc::channel(4);
    let first = Read { state: Ok(DynState::default()), again_at: None };
    tokio::spawn(follow(source, first, changes, tx));
    // Reads by others, and a write to a file that does not concern the source,
    // come before the write that does: the first read is that write's.
    for _ in 0..5 {
        let _ = std::fs::read(Path::new(&file));
    }
    std::fs::write(t.0.join("g"), "x").unwrap();
    std::fs::write(&file, "b").unwrap();
    assert_eq!(next_read(&mut reads).await, 1);
    // The source's own read is not a change either: the next read is the next write's.
    std::fs::write(&file, "c").unwrap();
    assert_eq!(next_read(&mut reads).await, 2);
}
