//! Seeded, bounded fault injection for QA: dropped connections, late or lost pongs, half-open
//! stalls, corrupted frames. Everything is off by default.

use std::ops::Range;

use sockline_core::rng::Rng;

/// Which faults to inject, all derived from `seed`.
#[derive(Clone, Debug, Default)]
pub struct ChaosConfig {
    /// Seed for every random choice.
    pub seed: u64,
    /// End each connection after a random time in this range (ms).
    pub drop_ms: Option<Range<u64>>,
    /// Close with this code when dropping (abrupt TCP drop when `None`).
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

/// One connection's share of the chaos: its own PRNG stream.
#[derive(Debug)]
pub(crate) struct ConnChaos {
    cfg: ChaosConfig,
    rng: Rng,
}

/// What to do with an outbound frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outbound {
    /// Send it (possibly corrupted).
    Send(String),
    /// Send it after this delay.
    Delay(u64, String),
    /// Drop it.
    Swallow,
}

impl ConnChaos {
    pub(crate) fn new(cfg: &ChaosConfig, conn: u64) -> Self {
        ConnChaos {
            cfg: cfg.clone(),
            rng: Rng::new(cfg.seed ^ conn.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        }
    }

    fn pick(&mut self, r: &Range<u64>) -> u64 {
        if r.end <= r.start {
            return r.start;
        }
        r.start + self.rng.up_to(r.end - r.start - 1)
    }

    /// When (ms after connect) to drop the connection, if at all.
    pub(crate) fn drop_after(&mut self) -> Option<u64> {
        self.cfg.drop_ms.clone().map(|r| self.pick(&r))
    }

    /// The close code to drop with (`None`: abrupt).
    pub(crate) fn close_code(&self) -> Option<u16> {
        self.cfg.close_code
    }

    /// When (ms after connect) to stall, if at all.
    pub(crate) fn stall_after(&mut self) -> Option<u64> {
        self.cfg.stall_ms.clone().map(|r| self.pick(&r))
    }

    /// Decides the fate of one outbound frame.
    pub(crate) fn outbound(&mut self, text: String) -> Outbound {
        let pong_chaos = self.cfg.swallow_pongs || self.cfg.pong_delay_ms.is_some();
        if pong_chaos && is_pong(&text) {
            if self.cfg.swallow_pongs {
                return Outbound::Swallow;
            }
            if let Some(ms) = self.cfg.pong_delay_ms {
                return Outbound::Delay(ms, text);
            }
        }
        if self.cfg.corrupt > 0.0 {
            let roll = self.rng.up_to(999_999) as f64 / 1_000_000.0;
            if roll < self.cfg.corrupt {
                // Break the JSON while keeping it valid UTF-8.
                return Outbound::Send(format!("#{}", &text[text.len().min(1)..]));
            }
        }
        Outbound::Send(text)
    }
}

/// True for a `pong` envelope, whatever its key order (the hub serialises keys sorted).
fn is_pong(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    serde_json::from_str::<Kind<'_>>(text).is_ok_and(|k| k.kind == "pong")
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
        let d = a.drop_after().unwrap();
        assert_eq!(Some(d), b.drop_after());
        assert!((500..3000).contains(&d));
        let fa: Vec<Outbound> = (0..50)
            .map(|i| a.outbound(format!("{{\"n\":{i}}}")))
            .collect();
        let fb: Vec<Outbound> = (0..50)
            .map(|i| b.outbound(format!("{{\"n\":{i}}}")))
            .collect();
        assert_eq!(fa, fb);
        let corrupted = fa
            .iter()
            .filter(|o| matches!(o, Outbound::Send(t) if t.starts_with('#')))
            .count();
        assert!((10..40).contains(&corrupted), "{corrupted}");
    }

    #[test]
    fn pongs_can_be_delayed_or_swallowed() {
        let pong = r#"{"type":"pong","data":{"nonce":1}}"#.to_string();
        let mut c = ConnChaos::new(
            &ChaosConfig {
                pong_delay_ms: Some(700),
                ..Default::default()
            },
            1,
        );
        assert_eq!(c.outbound(pong.clone()), Outbound::Delay(700, pong.clone()));
        let mut c = ConnChaos::new(
            &ChaosConfig {
                swallow_pongs: true,
                ..Default::default()
            },
            1,
        );
        assert_eq!(c.outbound(pong), Outbound::Swallow);
        // The hub's own pongs put `data` first; a message merely mentioning pong is no pong.
        let hub_pong = r#"{"data":{"nonce":2},"type":"pong"}"#.to_string();
        assert_eq!(c.outbound(hub_pong), Outbound::Swallow);
        let other = r#"{"data":{"type":"pong"},"type":"note"}"#.to_string();
        assert_eq!(c.outbound(other.clone()), Outbound::Send(other));
        assert!(!ChaosConfig::default().enabled());
    }
}
