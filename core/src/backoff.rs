//! Reconnect backoff: the attempt counter and the jitter over `ReconnectConfig::base_delay`.
//!
//! Crate-private in substance: nothing here is part of the public API (the schedule itself is
//! `ReconnectConfig::base_delay`).

use crate::config::{Jitter, ReconnectConfig};
use crate::rng::Rng;

/// Applies `jitter` to a base delay, drawing from `rng`.
pub(crate) fn jittered(base: u64, jitter: Jitter, rng: &mut Rng) -> u64 {
    match jitter {
        Jitter::None => base,
        Jitter::Full => rng.up_to(base),
        Jitter::Equal => {
            let half = base / 2;
            half + rng.up_to(base - half)
        }
    }
}

/// Counts reconnect attempts and hands out their delays.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    cfg: ReconnectConfig,
    attempt: u32,
}

/// The next attempt to make, or the news that there is none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NextAttempt {
    /// Attempt number `attempt` after `delay_ms`.
    After { attempt: u32, delay_ms: u64 },
    /// `max_attempts` reconnects have failed.
    Exhausted { attempts: u32 },
}

impl Backoff {
    pub(crate) fn new(cfg: ReconnectConfig) -> Self {
        Backoff { cfg, attempt: 0 }
    }

    /// The number of the most recent reconnect attempt (0 = the initial connect).
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Forgets past failures (after a stable connection, or a fresh user `connect`).
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Claims the next attempt; a server `hint` replaces the computed delay but still counts.
    pub(crate) fn next(&mut self, rng: &mut Rng, hint: Option<u64>) -> NextAttempt {
        if let Some(max) = self.cfg.max_attempts {
            if self.attempt >= max {
                return NextAttempt::Exhausted {
                    attempts: self.attempt,
                };
            }
        }
        self.attempt = self.attempt.saturating_add(1);
        // Draw even when a hint wins, so the PRNG stream does not depend on server hints.
        let drawn = jittered(self.cfg.base_delay(self.attempt), self.cfg.jitter, rng);
        let delay_ms = match hint {
            Some(h) => h.min(self.cfg.max_hint_ms),
            None => drawn,
        };
        NextAttempt::After {
            attempt: self.attempt,
            delay_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(jitter: Jitter) -> ReconnectConfig {
        ReconnectConfig {
            jitter,
            ..ReconnectConfig::default()
        }
    }

    #[test]
    fn seed_schedule_without_jitter_then_give_up() {
        let mut b = Backoff::new(cfg(Jitter::None));
        let mut rng = Rng::new(0);
        let got: Vec<NextAttempt> = (0..6).map(|_| b.next(&mut rng, None)).collect();
        let want: Vec<NextAttempt> = [1000, 2000, 4000, 8000, 16000]
            .iter()
            .enumerate()
            .map(|(i, &d)| NextAttempt::After {
                attempt: i as u32 + 1,
                delay_ms: d,
            })
            .chain([NextAttempt::Exhausted { attempts: 5 }])
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn capped_at_max() {
        let c = cfg(Jitter::None);
        assert_eq!(c.base_delay(6), 30_000);
        assert_eq!(c.base_delay(200), 30_000);
        assert_eq!(c.base_delay(u32::MAX), 30_000);
    }

    #[test]
    fn jitter_stays_in_range() {
        let mut rng = Rng::new(42);
        for base in [0u64, 1, 2, 999, 1000, 30_000] {
            for _ in 0..200 {
                assert!(jittered(base, Jitter::Full, &mut rng) <= base);
                let e = jittered(base, Jitter::Equal, &mut rng);
                assert!(
                    e >= base / 2 && e <= base,
                    "{e} not in [{}, {base}]",
                    base / 2
                );
            }
        }
    }

    #[test]
    fn hint_overrides_delay_but_counts_and_is_bounded() {
        let mut b = Backoff::new(cfg(Jitter::None));
        let mut rng = Rng::new(0);
        assert_eq!(
            b.next(&mut rng, Some(7_000)),
            NextAttempt::After {
                attempt: 1,
                delay_ms: 7_000
            }
        );
        assert_eq!(
            b.next(&mut rng, Some(u64::MAX)),
            NextAttempt::After {
                attempt: 2,
                delay_ms: 300_000
            }
        );
        assert_eq!(
            b.next(&mut rng, None),
            NextAttempt::After {
                attempt: 3,
                delay_ms: 4_000
            }
        );
    }

    #[test]
    fn reset_restarts_schedule_and_forever_never_exhausts() {
        let mut b = Backoff::new(ReconnectConfig {
            max_attempts: None,
            ..cfg(Jitter::None)
        });
        let mut rng = Rng::new(0);
        for _ in 0..50 {
            assert!(matches!(b.next(&mut rng, None), NextAttempt::After { .. }));
        }
        b.reset();
        assert_eq!(
            b.next(&mut rng, None),
            NextAttempt::After {
                attempt: 1,
                delay_ms: 1_000
            }
        );
    }
}
