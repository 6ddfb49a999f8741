//! Reconnect policy: whether, when and as which attempt the session reconnects after losing its
//! transport.
//!
//! It owns every input to that decision: the attempt counter and its delays (`Backoff`), server
//! `retryAfterMs` hints and `spreadMs` windows, whether the host is online, the fatal close codes, the stable period that
//! forgives past failures, and the backoff and stable timers. It returns `Decision`s; the session
//! turns them into state changes and events.

use crate::backoff::{Backoff, NextAttempt};
use crate::close::UNAUTHORIZED as CLOSE_UNAUTHORIZED;
use crate::config::ReconnectConfig;
use crate::rng::Rng;
use crate::timer::{take_due, Deadline, TimerKind, Timestamp};
use crate::wire::{self, RetryHint};

/// What the session should do about reconnecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Attempt `attempt` is scheduled `delay_ms` from now (the backoff timer is armed).
    Retry { attempt: u32, delay_ms: u64 },
    /// Open attempt `attempt` now. `announce`: no `reconnect_scheduled` went out for it yet
    /// (the network came back before one was scheduled), so one with no delay goes first.
    Open { attempt: u32, announce: bool },
    /// The host is offline: wait for it to come back before scheduling anything.
    WaitForNetwork,
    /// The server refused the credentials: wait for a new token.
    Unauthorized,
    /// The close code is one of `fatal_close_codes`: never reconnect on its own.
    Fatal,
    /// `max_attempts` reconnects have failed.
    GiveUp { attempts: u32 },
}

/// The reconnect state of one session.
#[derive(Clone, Debug)]
pub(crate) struct Reconnect {
    backoff: Backoff,
    /// Draws the jitter; only reconnect decisions consume it.
    rng: Rng,
    stable_ms: u64,
    /// Server hint for the next reconnect delay (or the window to draw it in).
    hint: Option<RetryHint>,
    online: bool,
    /// A reconnect is due but the host is offline.
    waiting_online: bool,
    /// The reconnect attempt announced and waiting for its backoff.
    pending_attempt: Option<u32>,
    /// When the pending attempt opens.
    backoff_at: Option<Timestamp>,
    /// When the open link has lasted long enough to forget past failures.
    stable_at: Option<Timestamp>,
    /// The link (or the attempt in flight) lived through an offline period and nothing has
    /// been heard on it since the network came back: its loss is the outage's, not the
    /// server's, so the first reconnect needs no backoff.
    through_outage: bool,
}

impl Reconnect {
    /// Creates the policy for `cfg`, drawing jitter from `rng`.
    pub(crate) fn new(cfg: ReconnectConfig, rng: Rng) -> Self {
        Reconnect {
            stable_ms: cfg.stable_ms,
            backoff: Backoff::new(cfg),
            rng,
            hint: None,
            online: true,
            waiting_online: false,
            pending_attempt: None,
            backoff_at: None,
            stable_at: None,
            through_outage: false,
        }
    }

    /// The number of the most recent reconnect attempt (0 = the initial connect).
    pub(crate) fn attempt(&self) -> u32 {
        self.backoff.attempt()
    }

    /// A fresh user `connect`: past failures and hints no longer count.
    pub(crate) fn restart(&mut self) {
        self.backoff.reset();
        self.hint = None;
    }

    /// A new token ends the wait after `unauthorized`: the schedule starts over.
    pub(crate) fn reset_attempts(&mut self) {
        self.backoff.reset();
    }

    /// The peer's close reason may carry `{"retryAfterMs":A,"spreadMs":W}`: the next delay is
    /// drawn in `[A, A+W]` instead of by the session's own jitter.
    pub(crate) fn on_close_reason(&mut self, reason: &str) {
        if let Some(hint) = wire::retry_hint_from_reason(reason) {
            self.hint = Some(hint);
        }
    }

    /// A server `error` named how long to wait before the next reconnect.
    pub(crate) fn on_server_hint(&mut self, retry_after_ms: u64) {
        self.hint = Some(RetryHint::after(retry_after_ms));
    }

    /// The transport is gone (`code`: its close code, `None` if the session abandoned it).
    ///
    /// `fatal` is the config's `fatal_close_codes`, lent rather than copied into every session.
    pub(crate) fn on_link_lost(
        &mut self,
        now: Timestamp,
        code: Option<u16>,
        fatal: &[u16],
    ) -> Decision {
        match code {
            Some(CLOSE_UNAUTHORIZED) => {
                // A hint was for a reconnect; the next connect waits for the token instead.
                self.hint = None;
                return Decision::Unauthorized;
            }
            Some(c) if fatal.contains(&c) => return Decision::Fatal,
            _ => {}
        }
        if !self.online {
            // Attempts would only fail: do not spend them while the host is offline.
            self.waiting_online = true;
            return Decision::WaitForNetwork;
        }
        if std::mem::take(&mut self.through_outage) {
            // Lost after the network came back, before a word on it: broken by the outage (a
            // browser may report the socket's end only now). Retry at once, as `online` does.
            return match self.backoff.next(&mut self.rng, None) {
                NextAttempt::After { attempt, .. } => Decision::Open {
                    attempt,
                    announce: true,
                },
                NextAttempt::Exhausted { attempts } => Decision::GiveUp { attempts },
            };
        }
        match self.backoff.next(&mut self.rng, self.hint.take()) {
            NextAttempt::After { attempt, delay_ms } => {
                self.pending_attempt = Some(attempt);
                self.backoff_at = Some(now.add_ms(delay_ms));
                Decision::Retry { attempt, delay_ms }
            }
            NextAttempt::Exhausted { attempts } => Decision::GiveUp { attempts },
        }
    }

    /// The host is online again; while `reconnecting` a reconnect waiting for it starts at once.
    pub(crate) fn on_online(&mut self, reconnecting: bool) -> Option<Decision> {
        self.online = true;
        if !reconnecting || !self.waiting_online {
            return None;
        }
        Some(self.open_after_network())
    }

    /// The page is back in view (shown, resumed, restored from the back/forward cache): while
    /// `reconnecting`, the attempt waiting for its backoff opens now, since a user is looking.
    pub(crate) fn on_visible(&mut self, reconnecting: bool) -> Option<Decision> {
        if !reconnecting || !self.online {
            return None;
        }
        self.open_pending()
    }

    /// The user asked to reconnect while reconnecting: the attempt waiting for its backoff, or
    /// for the network (the host's idea of being offline can be wrong), opens now.
    pub(crate) fn on_retry_now(&mut self) -> Option<Decision> {
        self.open_pending()
            .or_else(|| self.waiting_online.then(|| self.open_after_network()))
    }

    /// The attempt announced and waiting for its backoff, opened now.
    fn open_pending(&mut self) -> Option<Decision> {
        let attempt = self.pending_attempt?;
        self.backoff_at.take()?;
        Some(Decision::Open {
            attempt,
            announce: false,
        })
    }

    /// The reconnect that waited for the network, opened now.
    fn open_after_network(&mut self) -> Decision {
        self.waiting_online = false;
        if let Some(attempt) = self.pending_attempt {
            // Announced before the host went offline: its delay is over now.
            return Decision::Open {
                attempt,
                announce: false,
            };
        }
        // The hint stays for a later delay: there is no delay to replace here.
        match self.backoff.next(&mut self.rng, None) {
            NextAttempt::After { attempt, .. } => Decision::Open {
                attempt,
                announce: true,
            },
            NextAttempt::Exhausted { attempts } => Decision::GiveUp { attempts },
        }
    }

    /// The host went offline; while `reconnecting` a scheduled attempt waits for the network.
    pub(crate) fn on_offline(&mut self, reconnecting: bool) {
        self.online = false;
        self.through_outage = !reconnecting;
        if reconnecting && self.backoff_at.is_some() {
            self.backoff_at = None;
            self.waiting_online = true;
        }
    }

    /// A frame arrived: once the network is back, the link that lived through the outage works.
    pub(crate) fn on_inbound(&mut self) {
        if self.online {
            self.through_outage = false;
        }
    }

    /// An attempt is opening: nothing is pending any more.
    pub(crate) fn on_attempt(&mut self) {
        self.through_outage = false;
        self.pending_attempt = None;
        self.backoff_at = None;
    }

    /// The user closed the session: no attempt is pending or awaited, and the link is not
    /// counting towards a stable period.
    pub(crate) fn stop(&mut self) {
        self.backoff_at = None;
        self.pending_attempt = None;
        self.waiting_online = false;
        self.stable_at = None;
    }

    /// A welcome arrived: once the link has lasted `stable_ms`, past failures are forgotten.
    pub(crate) fn on_welcome(&mut self, now: Timestamp) {
        self.stable_at = Some(now.add_ms(self.stable_ms));
    }

    /// The transport went away before it was stable.
    pub(crate) fn on_link_down(&mut self) {
        self.stable_at = None;
    }

    /// The earlier of the backoff and stable deadlines.
    pub(crate) fn next_deadline(&self) -> Option<Deadline> {
        let backoff = self.backoff_at.map(|at| Deadline {
            at,
            timer: TimerKind::Backoff,
        });
        let stable = self.stable_at.map(|at| Deadline {
            at,
            timer: TimerKind::Stable,
        });
        Deadline::earliest(backoff, stable)
    }

    /// Fires `timer` (`Backoff` or `Stable`) if it is due at `now`.
    pub(crate) fn on_timer(&mut self, now: Timestamp, timer: TimerKind) -> Option<Decision> {
        match timer {
            TimerKind::Backoff if take_due(&mut self.backoff_at, now) => {
                self.pending_attempt.map(|attempt| Decision::Open {
                    attempt,
                    announce: false,
                })
            }
            TimerKind::Stable if take_due(&mut self.stable_at, now) => {
                self.backoff.reset();
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FATAL: &[u16] = &[1008, 4003];
    use crate::config::Jitter;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn reconnect(max_attempts: Option<u32>) -> Reconnect {
        let cfg = ReconnectConfig {
            jitter: Jitter::None,
            max_attempts,
            ..ReconnectConfig::default()
        };
        Reconnect::new(cfg, Rng::new(1))
    }

    /// Loses the link at `now` and opens whatever attempt that scheduled once its backoff is over.
    fn fail_once(r: &mut Reconnect, now: Timestamp) -> Decision {
        let d = r.on_link_lost(now, Some(1006), FATAL);
        if let Decision::Retry { delay_ms, .. } = d {
            let at = now.add_ms(delay_ms);
            assert_eq!(r.next_deadline().map(|d| d.at), Some(at));
            assert!(r.on_timer(at, TimerKind::Backoff).is_some());
            r.on_attempt();
        }
        d
    }

    #[test]
    fn schedules_exponential_attempts_then_gives_up() {
        let mut r = reconnect(Some(3));
        let got: Vec<Decision> = (0..4).map(|_| fail_once(&mut r, t(0))).collect();
        assert_eq!(
            got,
            [
                Decision::Retry {
                    attempt: 1,
                    delay_ms: 1_000
                },
                Decision::Retry {
                    attempt: 2,
                    delay_ms: 2_000
                },
                Decision::Retry {
                    attempt: 3,
                    delay_ms: 4_000
                },
                Decision::GiveUp { attempts: 3 },
            ]
        );
    }

    #[test]
    fn backoff_fires_only_when_due_and_opens_the_pending_attempt() {
        let mut r = reconnect(Some(5));
        assert_eq!(
            r.on_link_lost(t(100), None, FATAL),
            Decision::Retry {
                attempt: 1,
                delay_ms: 1_000
            }
        );
        assert_eq!(
            r.next_deadline(),
            Some(Deadline {
                at: t(1_100),
                timer: TimerKind::Backoff
            })
        );
        assert_eq!(r.on_timer(t(1_099), TimerKind::Backoff), None);
        assert_eq!(
            r.on_timer(t(1_100), TimerKind::Backoff),
            Some(Decision::Open {
                attempt: 1,
                announce: false
            })
        );
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn hints_replace_one_delay_and_are_capped() {
        let mut r = reconnect(None);
        r.on_close_reason(r#"{"retryAfterMs":7000}"#);
        assert_eq!(
            fail_once(&mut r, t(0)),
            Decision::Retry {
                attempt: 1,
                delay_ms: 7_000
            }
        );
        // Used once: the next delay is the schedule's again.
        assert_eq!(
            fail_once(&mut r, t(0)),
            Decision::Retry {
                attempt: 2,
                delay_ms: 2_000
            }
        );
        r.on_server_hint(u64::MAX);
        assert_eq!(
            fail_once(&mut r, t(0)),
            Decision::Retry {
                attempt: 3,
                delay_ms: 300_000
            }
        );
        r.on_close_reason("going away");
        assert_eq!(
            fail_once(&mut r, t(0)),
            Decision::Retry {
                attempt: 4,
                delay_ms: 8_000
            }
        );
    }

    #[test]
    fn a_spread_reason_draws_the_next_delay_in_its_window_once() {
        let mut firsts = std::collections::BTreeSet::new();
        for seed in 0..50 {
            let mut r = Reconnect::new(
                ReconnectConfig {
                    max_attempts: Some(2),
                    ..ReconnectConfig::default()
                },
                Rng::new(seed),
            );
            r.on_close_reason(r#"{"retryAfterMs":4000,"spreadMs":3000}"#);
            let Decision::Retry { attempt, delay_ms } = fail_once(&mut r, t(0)) else {
                panic!("scheduled");
            };
            assert_eq!(attempt, 1);
            assert!((4_000..=7_000).contains(&delay_ms), "{delay_ms}");
            firsts.insert(delay_ms);
            // The window was for one attempt: the next is the equal-jittered 2 s again.
            let Decision::Retry { attempt, delay_ms } = fail_once(&mut r, t(0)) else {
                panic!("scheduled");
            };
            assert_eq!(attempt, 2);
            assert!((1_000..=2_000).contains(&delay_ms), "{delay_ms}");
            assert_eq!(fail_once(&mut r, t(0)), Decision::GiveUp { attempts: 2 });
        }
        assert!(firsts.len() > 40, "drawn per seed: {firsts:?}");
    }

    #[test]
    fn the_latest_server_word_wins() {
        let mut r = reconnect(None);
        // An `error{retryAfterMs}`, then the close that followed it with a window.
        r.on_server_hint(9_000);
        r.on_close_reason(r#"{"spreadMs":1000}"#);
        let Decision::Retry { delay_ms, .. } = fail_once(&mut r, t(0)) else {
            panic!("scheduled");
        };
        assert!(delay_ms <= 1_000, "{delay_ms}");
        r.on_close_reason(r#"{"spreadMs":1000}"#);
        r.on_server_hint(9_000);
        assert_eq!(
            fail_once(&mut r, t(0)),
            Decision::Retry {
                attempt: 2,
                delay_ms: 9_000
            }
        );
    }

    #[test]
    fn unauthorized_and_fatal_codes_never_schedule() {
        let mut r = reconnect(Some(5));
        r.on_server_hint(9_000);
        assert_eq!(
            r.on_link_lost(t(0), Some(4001), FATAL),
            Decision::Unauthorized
        );
        // The hint went with the unauthorized close: a new token starts from the schedule.
        r.reset_attempts();
        assert_eq!(
            fail_once(&mut r, t(0)),
            Decision::Retry {
                attempt: 1,
                delay_ms: 1_000
            }
        );
        assert_eq!(r.on_link_lost(t(0), Some(4003), FATAL), Decision::Fatal);
        assert_eq!(r.on_link_lost(t(0), Some(1008), FATAL), Decision::Fatal);
        assert_eq!(r.attempt(), 1);
    }

    #[test]
    fn offline_loss_waits_and_online_opens_an_announced_attempt() {
        let mut r = reconnect(Some(5));
        r.on_offline(false);
        assert_eq!(
            r.on_link_lost(t(0), Some(1006), FATAL),
            Decision::WaitForNetwork
        );
        assert_eq!(r.attempt(), 0);
        assert_eq!(r.next_deadline(), None);
        // Not while the session is not reconnecting (the user closed meanwhile).
        assert_eq!(r.on_online(false), None);
        assert_eq!(
            r.on_online(true),
            Some(Decision::Open {
                attempt: 1,
                announce: true
            })
        );
        assert_eq!(r.on_online(true), None);
    }

    #[test]
    fn offline_pauses_a_scheduled_attempt_until_online() {
        let mut r = reconnect(Some(5));
        assert!(matches!(
            r.on_link_lost(t(0), Some(1006), FATAL),
            Decision::Retry { attempt: 1, .. }
        ));
        r.on_offline(true);
        assert_eq!(r.next_deadline(), None);
        assert_eq!(
            r.on_online(true),
            Some(Decision::Open {
                attempt: 1,
                announce: false
            })
        );
    }

    #[test]
    fn online_gives_up_when_attempts_are_spent() {
        let mut r = reconnect(Some(1));
        fail_once(&mut r, t(0));
        r.on_offline(false);
        assert_eq!(r.on_link_lost(t(0), None, FATAL), Decision::WaitForNetwork);
        assert_eq!(r.on_online(true), Some(Decision::GiveUp { attempts: 1 }));
    }

    #[test]
    fn a_stable_link_resets_the_attempt_counter_and_an_early_loss_does_not() {
        let mut r = reconnect(Some(5));
        fail_once(&mut r, t(0));
        fail_once(&mut r, t(0));
        r.on_welcome(t(10_000));
        r.on_link_down();
        assert_eq!(r.on_timer(t(20_000), TimerKind::Stable), None);
        assert_eq!(r.attempt(), 2);
        r.on_welcome(t(20_000));
        assert_eq!(
            r.next_deadline(),
            Some(Deadline {
                at: t(25_000),
                timer: TimerKind::Stable
            })
        );
        assert_eq!(r.on_timer(t(25_000), TimerKind::Stable), None);
        assert_eq!(r.attempt(), 0);
        assert_eq!(
            fail_once(&mut r, t(30_000)),
            Decision::Retry {
                attempt: 1,
                delay_ms: 1_000
            }
        );
    }

    #[test]
    fn stop_forgets_pending_and_awaited_attempts() {
        let mut r = reconnect(Some(5));
        r.on_link_lost(t(0), None, FATAL);
        r.on_welcome(t(0));
        r.stop();
        assert_eq!(r.next_deadline(), None);
        assert_eq!(r.on_timer(t(99_999), TimerKind::Backoff), None);
        r.on_offline(false);
        r.on_link_lost(t(0), None, FATAL);
        r.stop();
        assert_eq!(r.on_online(true), None);
    }
}
