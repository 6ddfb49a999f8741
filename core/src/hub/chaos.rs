//! Seeded, bounded fault injection for QA: dropped connections, late or lost pongs, half-open
//! stalls, corrupted frames. Everything is off by default; every choice comes from the seed.

use std::ops::Range;

use crate::hub::Frame;
use crate::rng::Rng;

/// Which faults the hub injects, all derived from `seed`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChaosConfig {
    /// Seed for every random choice.
    pub seed: u64,
    /// End each connection after a random time in this range (ms).
    pub drop_ms: Option<Range<u64>>,
    /// Close with this code when dropping (abrupt drop, no close frame, when `None`).
    pub close_code: Option<u16>,
    /// Delay every pong by this long.
    pub pong_delay_ms: Option<u64>,
    /// Never send pongs.
    pub swallow_pongs: bool,
    /// Stop reading and writing (without closing) after a random time in this range (ms).
    pub stall_ms: Option<Range<u64>>,
    /// Fraction of outbound frames to corrupt, 0.0-1.0.
    pub corrupt: f64,
}

impl ChaosConfig {
    /// Whether any fault is configured.
    pub fn enabled(&self) -> bool {
        self.drop_ms.is_some()
            || self.pong_delay_ms.is_some()
            || self.swallow_pongs
            || self.stall_ms.is_some()
            || self.corrupt > 0.0
    }
}

/// What happens to a pong.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PongFate {
    Send,
    Delay(u64),
    Swallow,
}

/// One connection's share of the chaos: its own PRNG stream, so connections do not disturb
/// each other's faults.
#[derive(Debug)]
pub(crate) struct ConnChaos {
    rng: Rng,
}

impl ConnChaos {
    pub(crate) fn new(cfg: &ChaosConfig, conn: u64) -> Self {
        ConnChaos {
            rng: Rng::new(cfg.seed ^ conn.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        }
    }

    fn pick(&mut self, r: &Range<u64>) -> u64 {
        if r.end <= r.start {
            return r.start;
        }
        r.start + self.rng.up_to(r.end - r.start - 1)
    }

    /// When (ms after accept) to drop the connection, if at all.
    pub(crate) fn drop_after(&mut self, cfg: &ChaosConfig) -> Option<u64> {
        cfg.drop_ms.as_ref().map(|r| self.pick(r))
    }

    /// When (ms after accept) to stall, if at all.
    pub(crate) fn stall_after(&mut self, cfg: &ChaosConfig) -> Option<u64> {
        cfg.stall_ms.as_ref().map(|r| self.pick(r))
    }

    /// The fate of one pong.
    pub(crate) fn pong(cfg: &ChaosConfig) -> PongFate {
        if cfg.swallow_pongs {
            PongFate::Swallow
        } else if let Some(ms) = cfg.pong_delay_ms {
            PongFate::Delay(ms)
        } else {
            PongFate::Send
        }
    }

    /// The frame as it goes out: sometimes broken (still valid UTF-8, no longer JSON).
    pub(crate) fn outbound(&mut self, cfg: &ChaosConfig, text: Frame) -> Frame {
        if cfg.corrupt > 0.0 {
            let roll = self.rng.up_to(999_999) as f64 / 1_000_000.0;
            if roll < cfg.corrupt {
                return format!("#{}", &text[text.len().min(1)..]).into();
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_faults_and_ranges_hold() {
        let cfg = ChaosConfig {
            seed: 5,
            drop_ms: Some(500..3000),
            corrupt: 0.5,
            ..ChaosConfig::default()
        };
        let mut a = ConnChaos::new(&cfg, 1);
        let mut b = ConnChaos::new(&cfg, 1);
        let d = a.drop_after(&cfg).unwrap();
        assert_eq!(Some(d), b.drop_after(&cfg));
        assert!((500..3000).contains(&d));
        let fa: Vec<Frame> = (0..50)
            .map(|i| a.outbound(&cfg, format!("{{\"n\":{i}}}").into()))
            .collect();
        let fb: Vec<Frame> = (0..50)
            .map(|i| b.outbound(&cfg, format!("{{\"n\":{i}}}").into()))
            .collect();
        assert_eq!(fa, fb);
        let corrupted = fa.iter().filter(|t| t.starts_with('#')).count();
        assert!((10..40).contains(&corrupted), "{corrupted}");
        assert!(fa
            .iter()
            .all(|t| t.starts_with('#') || serde_json::from_str::<serde_json::Value>(t).is_ok()));
    }

    #[test]
    fn pongs_can_be_delayed_or_swallowed() {
        let delayed = ChaosConfig {
            pong_delay_ms: Some(700),
            ..Default::default()
        };
        assert_eq!(ConnChaos::pong(&delayed), PongFate::Delay(700));
        let swallowed = ChaosConfig {
            swallow_pongs: true,
            ..Default::default()
        };
        assert_eq!(ConnChaos::pong(&swallowed), PongFate::Swallow);
        assert_eq!(ConnChaos::pong(&ChaosConfig::default()), PongFate::Send);
        assert!(!ChaosConfig::default().enabled());
        assert!(swallowed.enabled());
    }
}
