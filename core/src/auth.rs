//! The credential: the current token, its expiry, and when to ask the driver for a fresh one.

use crate::config::Secret;
use crate::event::Event;
use crate::feature::{Effect, Effects, Feature};
use crate::timer::{TimerKind, Timestamp};

/// Owns the token sent in `hello` and its refresh deadline.
#[derive(Clone, Debug)]
pub(crate) struct Auth {
    token: Option<Secret>,
    expires_at: Option<Timestamp>,
    refresh_at: Option<Timestamp>,
    margin_ms: u64,
}

impl Auth {
    /// The configured token (no expiry known yet); refreshes fall `margin_ms` before expiry.
    pub(crate) fn new(token: Option<Secret>, margin_ms: u64) -> Self {
        Auth {
            token,
            expires_at: None,
            refresh_at: None,
            margin_ms,
        }
    }

    /// The token to present, if any.
    pub(crate) fn token(&self) -> Option<&Secret> {
        self.token.as_ref()
    }

    /// Replaces the token; with an expiry, `token_refresh_due` falls `margin_ms` before it.
    pub(crate) fn set(&mut self, token: Secret, expires_at: Option<Timestamp>) {
        self.token = Some(token);
        self.expires_at = expires_at;
        self.refresh_at = expires_at
            .map(|e| Timestamp::from_millis(e.as_millis().saturating_sub(self.margin_ms)));
    }

    /// When the driver should be asked for a new token.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.refresh_at
    }

    /// At the refresh deadline: returns the expiry to report, once per token.
    pub(crate) fn on_timeout(&mut self, now: Timestamp) -> Option<Timestamp> {
        match self.refresh_at {
            Some(at) if at <= now => {
                self.refresh_at = None;
                self.expires_at
            }
            _ => None,
        }
    }
}

impl Feature for Auth {
    fn timer(&self) -> Option<TimerKind> {
        Some(TimerKind::TokenRefresh)
    }

    fn due_at(&self) -> Option<Timestamp> {
        self.next_deadline()
    }

    /// Asks the driver for a fresh token before this one expires.
    fn on_timer(&mut self, now: Timestamp, fx: &mut Effects) {
        if let Some(expires_at) = self.on_timeout(now) {
            fx.push(Effect::Emit(Event::TokenRefreshDue { expires_at }));
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
    fn refresh_falls_due_once_margin_before_expiry() {
        let mut a = Auth::new(None, 30_000);
        assert_eq!(a.next_deadline(), None);
        a.set(Secret::new("t1"), Some(t(100_000)));
        assert_eq!(a.next_deadline(), Some(t(70_000)));
        assert_eq!(a.on_timeout(t(69_999)), None);
        assert_eq!(a.on_timeout(t(70_000)), Some(t(100_000)));
        assert_eq!(a.on_timeout(t(80_000)), None);
        assert_eq!(a.next_deadline(), None);
        assert_eq!(a.token().unwrap().expose(), "t1");
    }

    #[test]
    fn expiry_inside_margin_is_due_at_once_and_no_expiry_never() {
        let mut a = Auth::new(Some(Secret::new("t0")), 30_000);
        a.set(Secret::new("t1"), Some(t(10_000)));
        assert_eq!(a.next_deadline(), Some(t(0)));
        a.set(Secret::new("t2"), None);
        assert_eq!(a.next_deadline(), None);
    }
}
