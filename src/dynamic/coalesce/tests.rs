use super::*;

const W: Duration = WINDOW;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn the_first_event_is_read_at_once_and_the_rest_of_the_burst_once_after_a_window() {
    let t0 = Instant::now();
    let mut c = Coalesce::default();
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
    let mut c = Coalesce::default();
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

/// A storm of events, each changing the source's value: reads at most one per
/// `WINDOW` and at least one per `MAX_WINDOW`, and the last read sees the last
/// value.
#[test]
fn a_storm_is_read_at_least_once_per_max_window_and_converges_on_its_last_value() {
    let t0 = Instant::now();
    let mut c = Coalesce::default();
    let (mut value, mut read_value, mut reads) = (0u32, None, Vec::new());
    // Simulated time in steps of 0.5 ms; an event every step for 2 s, then quiet.
    let step = Duration::from_micros(500);
    for i in 0..8000 {
        let now = t0 + step * i;
        let mut read = c.due().is_some_and(|d| d <= now);
        if i < 4000 {
            value = i;
            // The event comes after the value changed.
            read |= c.event(now, Event::Complete);
        }
        if read {
            c.read_at(now);
            read_value = Some(value);
            reads.push(now - t0);
        }
    }
    assert_eq!(read_value, Some(value), "the last read must see the last change");
    assert_eq!(c.due(), None);
    let gaps: Vec<Duration> = reads.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g >= W && *g <= MAX_WINDOW), "gaps between reads: {gaps:?}");
    // The windows grew: 20, 20, 40, 80, 160, then 200 ms.
    assert_eq!(&gaps[..5], [W, W, W * 2, W * 4, W * 8]);
    assert_eq!(gaps[6], MAX_WINDOW);
}

#[test]
fn a_change_of_two_events_keeps_the_window_and_a_quiet_window_resets_a_storms() {
    let t0 = Instant::now();
    let mut c = Coalesce::default();
    // A route deleted and added: one read at once, one a window later.
    assert!(c.event(t0, Event::Complete));
    c.read_at(t0);
    assert!(!c.event(t0 + ms(1), Event::Complete));
    c.read_at(t0 + W);
    // The next change, a window after that read, is read at once.
    assert!(c.event(t0 + W * 2, Event::Complete));
    c.read_at(t0 + W * 2);
    // A storm: the window grows...
    let mut now = t0 + W * 2;
    for _ in 0..10 {
        assert!(!c.event(now + ms(1), Event::Complete));
        now = c.due().unwrap();
        c.read_at(now);
    }
    assert!(!c.event(now + W * 2, Event::Complete), "within the grown window");
    assert_eq!(c.due(), Some(now + MAX_WINDOW));
    now += MAX_WINDOW;
    c.read_at(now);
    // ...and after a quiet window the next event is read at once, the window back to WINDOW.
    now += MAX_WINDOW;
    assert!(c.event(now, Event::Complete));
    c.read_at(now);
    assert!(!c.event(now + ms(1), Event::Complete));
    assert_eq!(c.due(), Some(now + W));
}
