//! Liveness: periodic pings, the dead-link deadline, suspension detection and RTT.

use crate::config::HeartbeatConfig;
use crate::timer::Timestamp;

/// Heartbeat state for one open connection.
#[derive(Clone, Debug)]
pub(crate) struct Heartbeat {
    cfg: HeartbeatConfig,
    running: bool,
    next_ping: Option<Timestamp>,
    dead_at: Option<Timestamp>,
    outstanding: Option<(u64, Timestamp)>,
    next_nonce: u64,
    last_rtt_ms: Option<u64>,
}

/// What the heartbeat wants done when its deadline passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Beat {
    /// Nothing is due.
    Idle,
    /// Send `ping{nonce}`.
    Ping(u64),
    /// The host was asleep: send `ping{nonce}` as a probe rather than declaring the link dead.
    Probe(u64),
    /// No inbound traffic within the timeout after a ping: the link is dead.
    Dead,
}

impl Heartbeat {
    pub(crate) fn new(cfg: HeartbeatConfig) -> Self {
        Heartbeat {
            cfg,
            running: false,
            next_ping: None,
            dead_at: None,
            outstanding: None,
            next_nonce: 1,
            last_rtt_ms: None,
        }
    }

    /// Starts the schedule on a freshly opened connection.
    pub(crate) fn start(&mut self, now: Timestamp) {
        self.running = true;
        self.next_ping = Some(now.add_ms(self.cfg.interval_ms));
        self.dead_at = None;
        self.outstanding = None;
    }

    /// Stops all heartbeat deadlines (connection gone).
    pub(crate) fn stop(&mut self) {
        self.running = false;
        self.next_ping = None;
        self.dead_at = None;
        self.outstanding = None;
    }

    /// Any inbound frame proves the link alive.
    pub(crate) fn on_inbound(&mut self) {
        self.dead_at = None;
    }

    /// A `pong` arrived; returns the round trip if it answers the outstanding ping.
    pub(crate) fn on_pong(&mut self, nonce: u64, now: Timestamp) -> Option<u64> {
        match self.outstanding {
            Some((n, sent)) if n == nonce => {
                self.outstanding = None;
                let rtt = now.ms_since(sent);
                self.last_rtt_ms = Some(rtt);
                Some(rtt)
            }
            _ => None,
        }
    }

    /// The most recent measured round trip.
    pub(crate) fn last_rtt_ms(&self) -> Option<u64> {
        self.last_rtt_ms
    }

    /// Sends a ping now (network came back, tab became visible); returns its nonce.
    pub(crate) fn probe(&mut self, now: Timestamp) -> Option<u64> {
        if !self.running {
            return None;
        }
        Some(self.ping(now))
    }

    fn ping(&mut self, now: Timestamp) -> u64 {
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        self.outstanding = Some((nonce, now));
        self.next_ping = Some(now.add_ms(self.cfg.interval_ms));
        // A ping already waiting keeps its earlier deadline: silence is measured from the first.
        if self.dead_at.is_none() {
            self.dead_at = Some(now.add_ms(self.cfg.timeout_ms));
        }
        nonce
    }

    /// Handles the heartbeat's deadline at `now`.
    pub(crate) fn on_timeout(&mut self, now: Timestamp) -> Beat {
        if let Some(dead_at) = self.dead_at {
            if dead_at <= now {
                if now.ms_since(dead_at) > self.cfg.suspend_detect_ms {
                    // The deadline passed while we were not running: the silence is ours, not the peer's.
                    self.dead_at = None;
                    return Beat::Probe(self.ping(now));
                }
                self.stop();
                return Beat::Dead;
            }
        }
        match self.next_ping {
            Some(at) if at <= now => Beat::Ping(self.ping(now)),
            _ => Beat::Idle,
        }
    }

    /// The earliest heartbeat deadline, and whether it is the dead-link one.
    pub(crate) fn next_deadline(&self) -> Option<(Timestamp, bool)> {
        match (self.dead_at, self.next_ping) {
            (Some(d), Some(p)) if p < d => Some((p, false)),
            (Some(d), _) => Some((d, true)),
            (None, Some(p)) => Some((p, false)),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn hb() -> Heartbeat {
        let mut h = Heartbeat::new(HeartbeatConfig::default());
        h.start(t(0));
        h
    }

    #[test]
    fn pings_every_interval_and_measures_rtt() {
        let mut h = hb();
        assert_eq!(h.next_deadline(), Some((t(30_000), false)));
        assert_eq!(h.on_timeout(t(29_999)), Beat::Idle);
        assert_eq!(h.on_timeout(t(30_000)), Beat::Ping(1));
        assert_eq!(h.next_deadline(), Some((t(40_000), true)));
        h.on_inbound();
        assert_eq!(h.on_pong(1, t(30_042)), Some(42));
        assert_eq!(h.on_pong(1, t(30_050)), None);
        assert_eq!(h.last_rtt_ms(), Some(42));
        assert_eq!(h.next_deadline(), Some((t(60_000), false)));
    }

    #[test]
    fn silence_after_ping_is_death() {
        let mut h = hb();
        assert_eq!(h.on_timeout(t(30_000)), Beat::Ping(1));
        assert_eq!(h.on_timeout(t(39_999)), Beat::Idle);
        assert_eq!(h.on_timeout(t(40_000)), Beat::Dead);
        assert_eq!(h.next_deadline(), None);
    }

    #[test]
    fn inbound_traffic_proves_liveness() {
        let mut h = hb();
        h.on_timeout(t(30_000));
        h.on_inbound();
        assert_eq!(h.on_timeout(t(40_000)), Beat::Idle);
        assert_eq!(h.next_deadline(), Some((t(60_000), false)));
    }

    #[test]
    fn late_deadline_is_a_suspension_probe() {
        let mut h = hb();
        h.on_timeout(t(30_000));
        // Woke up 50 s after the dead-link deadline.
        assert_eq!(h.on_timeout(t(90_000)), Beat::Probe(2));
        assert_eq!(h.next_deadline(), Some((t(100_000), true)));
        assert_eq!(h.on_timeout(t(100_000)), Beat::Dead);
    }

    #[test]
    fn a_late_ping_fires_once_and_moves_past_now() {
        let mut h = hb();
        assert_eq!(h.on_timeout(t(95_000)), Beat::Ping(1));
        let (next, _) = h.next_deadline().unwrap();
        assert!(next > t(95_000));
    }
}
