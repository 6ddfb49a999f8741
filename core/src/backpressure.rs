//! Backpressure: whether the current transport is blocked because the peer is not reading, and
//! when a blocked transport is given up.
//!
//! The driver reports how many transmitted bytes it still holds unsent (`buffered`); above
//! `max_buffered_bytes` the transport is blocked, and `write_timeout_ms` later it is abandoned.

use crate::event::Event;
use crate::feature::{Effect, Effects, Feature};
use crate::timer::{take_due, TimerKind, Timestamp};

/// The blocked state of the current transport.
#[derive(Clone, Debug)]
pub(crate) struct Backpressure {
    max_buffered_bytes: u64,
    write_timeout_ms: u64,
    /// The driver reported more than `max_buffered_bytes` unsent on the current transport.
    blocked: bool,
    /// The unsent bytes the driver last reported.
    buffered_bytes: u64,
    /// When a transport still blocked is abandoned.
    write_deadline: Option<Timestamp>,
}

impl Backpressure {
    /// An unblocked transport with these limits.
    pub(crate) fn new(max_buffered_bytes: u64, write_timeout_ms: u64) -> Self {
        Backpressure {
            max_buffered_bytes,
            write_timeout_ms,
            blocked: false,
            buffered_bytes: 0,
            write_deadline: None,
        }
    }

    /// Whether the current transport is blocked.
    pub(crate) fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Whether `bytes` unsent would cross `max_buffered_bytes` the other way from now.
    pub(crate) fn would_change(&self, bytes: u64) -> bool {
        (bytes > self.max_buffered_bytes) != self.blocked
    }

    /// The driver holds `bytes` unsent; returns the new blocked state if it changed.
    pub(crate) fn on_buffered(&mut self, now: Timestamp, bytes: u64) -> Option<bool> {
        self.buffered_bytes = bytes;
        let over = bytes > self.max_buffered_bytes;
        if over == self.blocked {
            return None;
        }
        self.blocked = over;
        // The write timeout runs only while blocked: it measures how long the peer stopped reading.
        self.write_deadline = over.then(|| now.add_ms(self.write_timeout_ms));
        Some(over)
    }
}

impl Feature for Backpressure {
    fn timer(&self) -> Option<TimerKind> {
        Some(TimerKind::WriteTimeout)
    }

    fn due_at(&self) -> Option<Timestamp> {
        self.write_deadline
    }

    /// A transport blocked for `write_timeout_ms` is abandoned: the peer is not reading.
    fn on_timer(&mut self, now: Timestamp, fx: &mut Effects) {
        if take_due(&mut self.write_deadline, now) && self.blocked {
            fx.push(Effect::Abandon {
                close_reason: "write timeout",
                why: format!(
                    "write timeout: {} bytes unsent for {} ms (peer not reading)",
                    self.buffered_bytes, self.write_timeout_ms
                ),
            });
        }
    }

    /// What the driver held went with the transport: a blocked one is reported unblocked.
    fn on_link_down(&mut self, fx: &mut Effects) {
        self.write_deadline = None;
        self.buffered_bytes = 0;
        if self.blocked {
            self.blocked = false;
            fx.push(Effect::Emit(Event::Backpressure {
                blocked: false,
                buffered_bytes: 0,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn blocks_above_the_limit_and_times_out_only_while_blocked() {
        let mut b = Backpressure::new(100, 50);
        assert!(!b.would_change(100));
        assert!(b.would_change(101));
        assert_eq!(b.on_buffered(t(0), 100), None);
        assert_eq!(b.on_buffered(t(10), 101), Some(true));
        assert_eq!(b.on_buffered(t(20), 500), None);
        assert_eq!(b.due_at(), Some(t(60)));
        let mut fx = Effects::new();
        b.on_timer(t(59), &mut fx);
        assert!(fx.is_empty());
        b.on_timer(t(60), &mut fx);
        assert!(
            matches!(&fx[..], [Effect::Abandon { why, .. }] if why.starts_with("write timeout: 500 bytes"))
        );
        assert_eq!(b.due_at(), None);
    }

    #[test]
    fn draining_unblocks_and_link_down_reports_only_a_blocked_transport() {
        let mut b = Backpressure::new(100, 50);
        b.on_buffered(t(0), 200);
        assert_eq!(b.on_buffered(t(5), 0), Some(false));
        assert_eq!(b.due_at(), None);
        let mut fx = Effects::new();
        b.on_link_down(&mut fx);
        assert!(fx.is_empty());
        b.on_buffered(t(6), 200);
        b.on_link_down(&mut fx);
        assert_eq!(
            fx,
            vec![Effect::Emit(Event::Backpressure {
                blocked: false,
                buffered_bytes: 0
            })]
        );
        assert!(!b.is_blocked());
        assert_eq!(b.due_at(), None);
    }
}
