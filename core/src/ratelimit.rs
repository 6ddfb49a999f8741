//! Client-side pacing of outbound application messages: a token bucket and server-requested pauses.

use crate::config::RateLimitConfig;
use crate::timer::Timestamp;

/// Milli-tokens per token: integer arithmetic keeps the bucket exact and replayable.
const MILLI: u64 = 1_000;

#[derive(Clone, Debug)]
struct Bucket {
    /// Tokens per second == milli-tokens per millisecond.
    per_sec: u64,
    capacity: u64,
    level: u64,
    last: Timestamp,
}

impl Bucket {
    fn refill(&mut self, now: Timestamp) {
        let gained = now.ms_since(self.last).saturating_mul(self.per_sec);
        self.level = self.level.saturating_add(gained).min(self.capacity);
        if now > self.last {
            self.last = now;
        }
    }

    fn ready_at(&self) -> Timestamp {
        let need = MILLI.saturating_sub(self.level);
        self.last.add_ms(need.div_ceil(self.per_sec))
    }
}

/// Decides whether an outbound application message may go now.
#[derive(Clone, Debug)]
pub(crate) struct RateLimiter {
    bucket: Option<Bucket>,
    paused_until: Option<Timestamp>,
}

impl RateLimiter {
    pub(crate) fn new(cfg: RateLimitConfig, now: Timestamp) -> Self {
        let bucket = match cfg {
            RateLimitConfig::Off => None,
            RateLimitConfig::Bucket { per_sec, burst } => Some(Bucket {
                per_sec: u64::from(per_sec).max(1),
                capacity: u64::from(burst).max(1) * MILLI,
                level: u64::from(burst).max(1) * MILLI,
                last: now,
            }),
        };
        RateLimiter {
            bucket,
            paused_until: None,
        }
    }

    /// Takes a token if a message may be sent at `now`.
    pub(crate) fn try_acquire(&mut self, now: Timestamp) -> bool {
        if self.paused_until.is_some_and(|p| now < p) {
            return false;
        }
        self.paused_until = None;
        match &mut self.bucket {
            None => true,
            Some(b) => {
                b.refill(now);
                if b.level >= MILLI {
                    b.level -= MILLI;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Holds every message back until `until` (the server said `rate_limited`).
    pub(crate) fn pause_until(&mut self, until: Timestamp) {
        if self.paused_until.is_none_or(|p| until > p) {
            self.paused_until = Some(until);
        }
    }

    /// When the next message could go, given that one could not go at the last attempt.
    pub(crate) fn ready_at(&self) -> Option<Timestamp> {
        let bucket = self.bucket.as_ref().map(Bucket::ready_at);
        match (bucket, self.paused_until) {
            (Some(b), Some(p)) => Some(b.max(p)),
            (b, p) => b.or(p),
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
    fn off_always_allows() {
        let mut r = RateLimiter::new(RateLimitConfig::Off, t(0));
        assert!((0..1000).all(|_| r.try_acquire(t(0))));
        assert_eq!(r.ready_at(), None);
    }

    #[test]
    fn bucket_starts_full_then_refills_at_rate() {
        let mut r = RateLimiter::new(
            RateLimitConfig::Bucket {
                per_sec: 20,
                burst: 40,
            },
            t(0),
        );
        assert_eq!((0..100).filter(|_| r.try_acquire(t(0))).count(), 40);
        assert_eq!(r.ready_at(), Some(t(50)));
        assert!(!r.try_acquire(t(49)));
        assert!(r.try_acquire(t(50)));
        assert!(!r.try_acquire(t(50)));
        // One second later: 20 more tokens.
        assert_eq!((0..100).filter(|_| r.try_acquire(t(1050))).count(), 20);
    }

    #[test]
    fn pause_blocks_until_its_end() {
        let mut r = RateLimiter::new(RateLimitConfig::Off, t(0));
        r.pause_until(t(500));
        assert!(!r.try_acquire(t(499)));
        assert_eq!(r.ready_at(), Some(t(500)));
        assert!(r.try_acquire(t(500)));
        assert_eq!(r.ready_at(), None);
    }
}
