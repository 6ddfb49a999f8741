//! Reconnect backoff: the attempt counter and the jitter over `ReconnectConfig::base_delay`.
//!
//! Crate-private in substance: nothing here is part of the public API (the schedule itself is
//! `ReconnectConfig::base_delay`).

use crate::config::{Jitter, ReconnectConfig};
use crate::rng::Rng;
use crate::wire::RetryHint;

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

/// A delay drawn uniformly in the server's window `[after_ms, after_ms + spread_ms]`, the window
/// first cut to `[.., cap]`.
///
/// The window is capped, not the draw: capping each draw would put every session whose draw fell
/// past `cap` at exactly `cap`, the herd the spread exists to prevent. A window of one value
/// draws nothing, so a plain `retryAfterMs` leaves the PRNG stream as it was.
pub(crate) fn within(hint: RetryHint, cap: u64, rng: &mut Rng) -> u64 {
    let lo = hint.after_ms.min(cap);
    let hi = hint.after_ms.saturating_add(hint.spread_ms).min(cap);
    if hi > lo {
        lo + rng.up_to(hi - lo)
    } else {
        lo
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

    /// Claims the next attempt; a server `hint` replaces the computed delay (a delay drawn in
    /// its window, capped by `max_hint_ms`) but still counts.
    pub(crate) fn next(&mut self, rng: &mut Rng, hint: Option<RetryHint>) -> NextAttempt {
        if let Some(max) = self.cfg.max_attempts {
            if self.attempt >= max {
                return NextAttempt::Exhausted {
                    attempts: self.attempt,
                };
            }
        }
        self.attempt = self.attempt.saturating_add(1);
        // Draw even when a hint wins, so the jitter's share of the PRNG stream does not depend
        // on server hints (a spread draws once more after it: the close reason that asked for it
        // is an input, so a replay draws the same).
        let drawn = jittered(self.cfg.base_delay(self.attempt), self.cfg.jitter, rng);
        let delay_ms = match hint {
            Some(h) => within(h, self.cfg.max_hint_ms, rng),
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
            b.next(&mut rng, Some(RetryHint::after(7_000))),
            NextAttempt::After {
                attempt: 1,
                delay_ms: 7_000
            }
        );
        assert_eq!(
            b.next(&mut rng, Some(RetryHint::after(u64::MAX))),
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

    fn spread(after_ms: u64, spread_ms: u64) -> Option<RetryHint> {
        Some(RetryHint {
            after_ms,
            spread_ms,
        })
    }

    #[test]
    fn a_spread_draws_its_window_once_then_the_schedule_resumes() {
        // Equal jitter would draw in [500, 1000]: a window far from it shows which one won.
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let mut b = Backoff::new(cfg(Jitter::Equal));
            let mut rng = Rng::new(seed);
            let NextAttempt::After { attempt, delay_ms } = b.next(&mut rng, spread(10_000, 2_000))
            else {
                panic!("not exhausted");
            };
            assert_eq!(attempt, 1, "the hinted attempt counts");
            assert!((10_000..=12_000).contains(&delay_ms), "{delay_ms}");
            seen.insert(delay_ms / 100);
            let NextAttempt::After { attempt, delay_ms } = b.next(&mut rng, None) else {
                panic!("not exhausted");
            };
            assert_eq!(attempt, 2);
            assert!(
                (1_000..=2_000).contains(&delay_ms),
                "back on the schedule: {delay_ms}"
            );
        }
        // 200 draws over 20 buckets of 100 ms: every bucket is hit (a constant would hit one).
        assert!(seen.len() >= 18, "{seen:?}");
    }

    #[test]
    fn a_spread_is_reproducible_from_the_seed() {
        let draws = |seed| {
            let mut b = Backoff::new(ReconnectConfig {
                max_attempts: None,
                ..cfg(Jitter::Full)
            });
            let mut rng = Rng::new(seed);
            (0..20)
                .map(|_| b.next(&mut rng, spread(0, 5_000)))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
    }

    #[test]
    fn the_window_is_capped_not_the_draws() {
        let c = ReconnectConfig {
            max_hint_ms: 1_000,
            ..cfg(Jitter::None)
        };
        let mut at_cap = 0;
        for seed in 0..100 {
            let mut rng = Rng::new(seed);
            let mut b = Backoff::new(c.clone());
            let NextAttempt::After { delay_ms, .. } = b.next(&mut rng, spread(500, 10_000)) else {
                panic!("not exhausted");
            };
            assert!((500..=1_000).contains(&delay_ms), "{delay_ms}");
            at_cap += usize::from(delay_ms == 1_000);
        }
        // Capping each draw of [500, 10500] would put 95 of 100 at the cap.
        assert!(at_cap <= 5, "{at_cap} at the cap");
        let mut rng = Rng::new(0);
        assert_eq!(within(RetryHint::after(u64::MAX), 1_000, &mut rng), 1_000);
        assert_eq!(
            within(
                RetryHint {
                    after_ms: 2_000,
                    spread_ms: u64::MAX
                },
                1_000,
                &mut rng
            ),
            1_000,
            "a window wholly past the cap is the cap"
        );
    }

    #[test]
    fn a_spread_still_counts_against_max_attempts() {
        let mut b = Backoff::new(ReconnectConfig {
            max_attempts: Some(1),
            ..cfg(Jitter::None)
        });
        let mut rng = Rng::new(0);
        assert!(matches!(
            b.next(&mut rng, spread(0, 3_000)),
            NextAttempt::After { attempt: 1, .. }
        ));
        assert_eq!(
            b.next(&mut rng, spread(0, 3_000)),
            NextAttempt::Exhausted { attempts: 1 }
        );
    }

    #[test]
    fn a_plain_hint_draws_nothing_so_later_jitter_is_unchanged() {
        let later = |hint| {
            let mut b = Backoff::new(cfg(Jitter::Equal));
            let mut rng = Rng::new(9);
            b.next(&mut rng, hint);
            b.next(&mut rng, None)
        };
        assert_eq!(later(Some(RetryHint::after(7_000))), later(None));
        assert_ne!(
            later(spread(0, 5_000)),
            later(None),
            "a spread draws once more (seed 9 shows it)"
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
