//! When a source is read again after events that say it changed: at once on the
//! first event of a burst, then at most once per window for the rest of it, and
//! always once after its last event. A change on a quiet host thus reaches the
//! kernel set without waiting, and the last read comes after the last event, so
//! the result is exact however many events were coalesced. (A quiet window
//! before every read, as before, put 20 ms in every change's latency.)
//!
//! In a storm the window doubles with each read that the burst goes on past,
//! up to `MAX_WINDOW`: every read of rtnetlink is a dump of all links,
//! addresses and routes, which holds the kernel's RTNL lock against the very
//! program that makes the changes (`ip -batch` of 10,000 address events took 5
//! times as long with a dump every 20 ms), and every update may rewrite a
//! large set. A read after a quiet window starts again at `WINDOW`.

use std::time::Duration;

use tokio::time::Instant;

/// The least time between two reads of a source during a burst of events.
pub const WINDOW: Duration = Duration::from_millis(20);
/// The most: how long a storm may delay an update.
pub const MAX_WINDOW: Duration = Duration::from_millis(200);

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
    /// The window after the last read.
    window: Duration,
    last_read: Option<Instant>,
    /// When to read for the events that came since the last read.
    due: Option<Instant>,
    /// An event came within the window after the last read.
    in_burst: bool,
    /// Reads in a row that the burst went on past.
    streak: u32,
}

impl Default for Coalesce {
    fn default() -> Self {
        Coalesce { window: WINDOW, last_read: None, due: None, in_burst: false, streak: 0 }
    }
}

impl Coalesce {
    /// Takes an event that came at `now`; true if the source is to be read now
    /// (then call `read_at`). Otherwise the read is due at `due()`.
    pub fn event(&mut self, now: Instant, event: Event) -> bool {
        let quiet = self.last_read.is_none_or(|t| now >= t + self.window);
        if event == Event::Complete && quiet {
            return true;
        }
        self.in_burst |= !quiet;
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
    /// The next window is `WINDOW` after a quiet one, and doubles from the
    /// second read in a row that a burst goes on past (a change may be two
    /// events, a route deleted and added: that is no storm yet).
    pub fn read_at(&mut self, now: Instant) {
        self.streak = if self.in_burst { self.streak + 1 } else { 0 };
        self.window = WINDOW.saturating_mul(1 << self.streak.saturating_sub(1).min(16)).min(MAX_WINDOW);
        self.last_read = Some(now);
        self.due = None;
        self.in_burst = false;
    }
}

#[cfg(test)]
mod tests;
