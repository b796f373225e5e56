use super::*;

const W: Duration = WINDOW;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn the_first_event_is_read_at_once_and_the_rest_of_the_burst_once_after_a_window() {
    let t0 = Instant::now();
    let mut c = Coalesce::new(W);
    assert!(c.event(t0, Event::Complete));
    c.read_at(t0);
    assert_eq!(c.due(), None);
    // Within the window: one read at its end, whatever the number of events.
    assert!(!c.event(t0 + ms(1), Event::Complete));
    assert!(!c.event(t0 + ms(5), Event::Partial));
    assert!(!c.event(t0 + ms(19), Event::Complete));
    assert_eq!(c.due(), Some(t0 + W));
    c.read_at(t0 + W);
    assert_eq!(c.due(), None);
    // After a quiet window, the next event is read at once again.
    assert!(c.event(t0 + W * 2, Event::Complete));
}

#[test]
fn a_change_under_way_waits_a_window_unless_it_completes_first() {
    let t0 = Instant::now();
    let mut c = Coalesce::new(W);
    // A writer truncates the file: reading now would see it empty.
    assert!(!c.event(t0, Event::Partial));
    assert_eq!(c.due(), Some(t0 + W));
    // It closes the file: whole now, read at once.
    assert!(c.event(t0 + ms(1), Event::Complete));
    c.read_at(t0 + ms(1));
    assert_eq!(c.due(), None);
    // A writer that never closes (appending to a lease file) is read a window
    // after its write, even right after a read.
    assert!(!c.event(t0 + ms(2), Event::Partial));
    assert_eq!(c.due(), Some(t0 + ms(2) + W));
}

/// A storm of events, each changing the source's value: the reads are at most
/// one per window (plus the first), and the last read sees the last value.
#[test]
fn a_storm_is_read_once_per_window_and_converges_on_its_last_value() {
    let t0 = Instant::now();
    let mut c = Coalesce::new(W);
    let (mut value, mut read_value, mut reads) = (0u32, None, 0);
    // Simulated time in steps of 0.5 ms; an event every step for 1 s, then quiet.
    let step = Duration::from_micros(500);
    for i in 0..4000 {
        let now = t0 + step * i;
        let mut read = c.due().is_some_and(|d| d <= now);
        if i < 2000 {
            value = i;
            let kind = if i % 3 == 0 { Event::Partial } else { Event::Complete };
            // The event comes after the value changed.
            read |= c.event(now, kind);
        }
        if read {
            c.read_at(now);
            read_value = Some(value);
            reads += 1;
        }
    }
    assert_eq!(read_value, Some(value), "the last read must see the last change");
    assert_eq!(c.due(), None);
    let windows = (step * 2000).as_millis() / W.as_millis();
    assert!(reads as u128 <= windows + 2, "{reads} reads for {windows} windows");
    assert!(reads as u128 >= windows / 2, "{reads} reads for {windows} windows: the storm must not starve the reads");
}
