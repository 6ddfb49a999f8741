//! Monotonic time as plain milliseconds, and the deadlines the session hands back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A monotonic instant in milliseconds, supplied by the driver (never read from a clock).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The origin of the driver's clock.
    pub const ZERO: Timestamp = Timestamp(0);

    /// The instant `ms` milliseconds after the driver's origin.
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the driver's origin.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// This instant plus `ms`, saturating instead of overflowing.
    pub const fn add_ms(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, or 0 if `earlier` is later.
    pub const fn ms_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl From<u64> for Timestamp {
    fn from(ms: u64) -> Self {
        Timestamp(ms)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Which timer a deadline belongs to; the order of the variants breaks ties between equal deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TimerKind {
    /// The transport did not open and finish its handshake in time.
    ConnectTimeout,
    /// A user-initiated close is taking too long.
    CloseTimeout,
    /// The backoff before the next reconnect attempt has elapsed.
    Backoff,
    /// The connection has been open long enough to reset the attempt counter.
    Stable,
    /// No inbound traffic since the last ping for too long.
    HeartbeatTimeout,
    /// Time to send the next ping.
    Heartbeat,
    /// A queued message reached its time to live.
    OutboxExpiry,
    /// An at-least-once message has waited too long for its ack.
    AckTimeout,
    /// The rate limiter has a token for the next queued message.
    RateLimit,
    /// Local typing went idle or a remote typist expired.
    Typing,
    /// An agent stream has gone quiet for too long.
    StreamStall,
    /// The token is about to expire.
    TokenRefresh,
    /// The transport has stayed blocked (peer not reading) for `write_timeout_ms`.
    WriteTimeout,
    /// A project join was not answered in time (its answer was lost): ask again.
    ProjectJoin,
}

/// A deadline: when the session next needs `handle_timeout`, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Deadline {
    /// When the timer falls due.
    pub at: Timestamp,
    /// Which timer it is.
    pub timer: TimerKind,
}

impl Deadline {
    /// The earlier of two optional deadlines (the first wins ties).
    pub(crate) fn earliest(a: Option<Deadline>, b: Option<Deadline>) -> Option<Deadline> {
        match (a, b) {
            (Some(x), Some(y)) => Some(if y < x { y } else { x }),
            (x, None) => x,
            (None, y) => y,
        }
    }
}

/// The session's clock: the latest time it was given; time going backwards is clamped.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Clock {
    now: Timestamp,
}

impl Clock {
    /// A clock starting at `start`.
    pub(crate) fn new(start: Timestamp) -> Self {
        Clock { now: start }
    }

    /// Moves the clock to `t` unless that would move it backwards; returns the clamped time.
    pub(crate) fn advance(&mut self, t: Timestamp) -> Timestamp {
        if t > self.now {
            self.now = t;
        }
        self.now
    }

    /// The latest time given.
    pub(crate) fn now(&self) -> Timestamp {
        self.now
    }
}

/// Disarms a module's own single-shot deadline `slot`; true if it was due at `now`.
pub(crate) fn take_due(slot: &mut Option<Timestamp>, now: Timestamp) -> bool {
    match *slot {
        Some(at) if at <= now => {
            *slot = None;
            true
        }
        _ => false,
    }
}

/// The session's single-shot lifecycle timers, at most one per kind.
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerSet {
    slots: BTreeMap<TimerKind, Timestamp>,
}

impl TimerSet {
    /// Arms `kind` at `at`, replacing any earlier arming.
    pub(crate) fn set(&mut self, kind: TimerKind, at: Timestamp) {
        self.slots.insert(kind, at);
    }

    /// When `kind` is armed for, if it is.
    pub(crate) fn at(&self, kind: TimerKind) -> Option<Timestamp> {
        self.slots.get(&kind).copied()
    }

    /// Disarms `kind`.
    pub(crate) fn clear(&mut self, kind: TimerKind) {
        self.slots.remove(&kind);
    }

    /// The earliest armed timer.
    pub(crate) fn next(&self) -> Option<Deadline> {
        self.slots
            .iter()
            .map(|(&timer, &at)| Deadline { at, timer })
            .min()
    }

    /// Disarms and returns `kind` if it is due at `now`.
    pub(crate) fn take_due(&mut self, kind: TimerKind, now: Timestamp) -> bool {
        match self.slots.get(&kind) {
            Some(&at) if at <= now => {
                self.slots.remove(&kind);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_clamps_backwards_time() {
        let mut c = Clock::new(Timestamp::from_millis(100));
        assert_eq!(c.advance(Timestamp::from_millis(50)).as_millis(), 100);
        assert_eq!(c.advance(Timestamp::from_millis(150)).as_millis(), 150);
        assert_eq!(c.now().as_millis(), 150);
    }

    #[test]
    fn timer_set_orders_by_time_then_kind() {
        let mut t = TimerSet::default();
        t.set(TimerKind::Stable, Timestamp::from_millis(10));
        t.set(TimerKind::ConnectTimeout, Timestamp::from_millis(10));
        t.set(TimerKind::Backoff, Timestamp::from_millis(5));
        assert_eq!(t.next().unwrap().timer, TimerKind::Backoff);
        assert!(t.take_due(TimerKind::Backoff, Timestamp::from_millis(5)));
        assert!(!t.take_due(TimerKind::Stable, Timestamp::from_millis(9)));
        assert_eq!(t.next().unwrap().timer, TimerKind::ConnectTimeout);
    }

    #[test]
    fn add_saturates() {
        assert_eq!(
            Timestamp::from_millis(u64::MAX).add_ms(5).as_millis(),
            u64::MAX
        );
        assert_eq!(
            Timestamp::from_millis(3).ms_since(Timestamp::from_millis(9)),
            0
        );
    }
}
