//! When a source is read again after events that say it changed: at once on the
//! first event of a burst, then at most once per window for the rest of it, and
//! always once after its last event. A change on a quiet host thus reaches the
//! kernel set without waiting, a storm costs one read per window, and the last
//! read comes after the last event, so the result is exact however many events
//! were coalesced. (A quiet window before every read, as before, put 20 ms in
//! every change's latency.)

use std::time::Duration;

use tokio::time::Instant;

/// The least time between two reads of a source during a burst of events.
pub const WINDOW: Duration = Duration::from_millis(20);

/// What an event says about the state it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The change is whole: a file closed after writing or renamed into place,
    /// a route replaced.
    Complete,
    /// A change under way (a file being written): a read now could see half of
    /// it, so it waits a window.
    Partial,
}

/// The state of one source's reads. Pure: the caller gives the time.
#[derive(Debug)]
pub struct Coalesce {
    window: Duration,
    last_read: Option<Instant>,
    /// When to read for the events that came since the last read.
    due: Option<Instant>,
}

impl Coalesce {
    pub fn new(window: Duration) -> Self {
        Coalesce { window, last_read: None, due: None }
    }

    /// Takes an event that came at `now`; true if the source is to be read now
    /// (then call `read_at`). Otherwise the read is due at `due()`.
    pub fn event(&mut self, now: Instant, event: Event) -> bool {
        let quiet = self.last_read.is_none_or(|t| now >= t + self.window);
        if event == Event::Complete && quiet {
            return true;
        }
        if self.due.is_none() {
            self.due = Some(match (event, self.last_read) {
                (Event::Complete, Some(t)) => t + self.window,
                _ => now + self.window,
            });
        }
        false
    }

    /// When the source is to be read for events not read yet, if any.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Records a read starting at `now`: every event taken so far is in it.
    pub fn read_at(&mut self, now: Instant) {
        self.last_read = Some(now);
        self.due = None;
    }
}

#[cfg(test)]
mod tests;
