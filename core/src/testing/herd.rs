//! The herd a hub restart sets off, in virtual time: many sessions, each with its own seed, open
//! on the scripted server's welcome; the restart reaches all of them at one instant; each one's
//! first reconnect attempt (its `OpenTransport`) is timed. Shared by the `herd` example, which
//! prints the figures, and the tests that hold them.

use std::ops::Range;

use crate::config::Config;
use crate::error::ConfigError;
use crate::event::State;
use crate::hub::{ConnId, HubCore, HubOutput, HubSettings, InMemoryBroker};
use crate::output::Output;
use crate::timer::Timestamp;

use super::Harness;

/// How the restart reaches every session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restart {
    /// The transport ends without a close frame (a crashed hub, a cut cable).
    Lost,
    /// A close frame with this code and reason.
    Closed {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
}

impl Restart {
    /// The close a hub core with `settings` sends each client when it shuts down (the close the
    /// real hub sends, not a copy of its format).
    pub fn from_hub(settings: HubSettings) -> Restart {
        let mut hub = HubCore::new(settings, InMemoryBroker::new(1, 0), 0);
        hub.accepted(Timestamp::ZERO, ConnId(1));
        hub.shutdown(Timestamp::ZERO);
        loop {
            match hub.poll_output() {
                HubOutput::Close { code, reason, .. } => return Restart::Closed { code, reason },
                HubOutput::Timeout { .. } => unreachable!("a shutdown closes every connection"),
                _ => {}
            }
        }
    }
}

/// Session seeds as unrelated as random ones, one per index (splitmix64 of each, reproducible):
/// `seeds(0..10_000)` is one set of 10,000, `seeds(10_000..20_000)` another.
///
/// Why not the indices themselves: the PRNG's streams for consecutive seeds are correlated, so
/// their draws land far more evenly than independent ones would (over 10,000 sessions, bucket
/// counts spread a fifth to a half as much as binomial draws'), which would flatter every
/// figure; clients in the field seed from the OS, independently.
pub fn seeds(indices: Range<u64>) -> impl Iterator<Item = u64> {
    indices.map(|i| {
        let mut z = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// The longest a session is followed after the restart: past any delay a default config draws.
const FOLLOW_MS: u64 = 600_000;

/// Each session's first reconnect attempt after `restart`, in ms after it: one session per seed
/// in `seeds` (see [`seeds`]), all with `config`. A session that makes none within 10 minutes (a fatal close
/// code, no attempts allowed) is left out, so the result is shorter than `seeds`.
pub fn first_attempts(
    config: &Config,
    seeds: impl IntoIterator<Item = u64>,
    restart: &Restart,
) -> Result<Vec<u64>, ConfigError> {
    let mut firsts = Vec::new();
    for seed in seeds {
        let mut h = Harness::new(config.clone(), seed)?;
        // A session that cannot open against the scripted server measures nothing.
        if h.connect().is_err() || h.state() != State::Open {
            continue;
        }
        let at = h.now();
        h.take_log();
        match restart {
            Restart::Lost => h.with(|s, now| s.transport_lost(now)),
            Restart::Closed { code, reason } => h.server_close(*code, reason),
        }
        let opened = |h: &Harness| {
            h.log().iter().find_map(|(t, o)| {
                matches!(o, Output::OpenTransport { .. }).then(|| t.ms_since(at))
            })
        };
        // In steps, so a session is followed only until its attempt, not for 10 minutes.
        let mut followed = 0;
        while opened(&h).is_none() && followed < FOLLOW_MS {
            h.advance(1_000);
            followed += 1_000;
        }
        firsts.extend(opened(&h));
    }
    Ok(firsts)
}

/// How many of `delays` fall in each `bucket_ms` from 0: `[i·bucket_ms, (i+1)·bucket_ms)`.
pub fn histogram(delays: &[u64], bucket_ms: u64) -> Vec<usize> {
    let bucket_ms = bucket_ms.max(1);
    let Some(last) = delays.iter().max() else {
        return Vec::new();
    };
    let mut counts = vec![0; (last / bucket_ms) as usize + 1];
    for d in delays {
        counts[(d / bucket_ms) as usize] += 1;
    }
    counts
}

/// The busiest `bucket_ms` bucket of `delays` over the mean of a uniform spread over `window_ms`
/// (`len / (window_ms / bucket_ms)`): 1.0 is perfectly even, 10 is one bucket of ten holding all.
pub fn peak_over_mean(delays: &[u64], bucket_ms: u64, window_ms: u64) -> f64 {
    let peak = histogram(delays, bucket_ms).into_iter().max().unwrap_or(0);
    let buckets = window_ms.div_ceil(bucket_ms.max(1)).max(1);
    if delays.is_empty() {
        return 0.0;
    }
    peak as f64 * buckets as f64 / delays.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_and_peak_over_mean() {
        assert_eq!(histogram(&[0, 99, 100, 350], 100), [2, 1, 0, 1]);
        assert!(histogram(&[], 100).is_empty());
        // Ten in one bucket of a 1 s window: 10x the even spread; one per bucket: 1x.
        assert_eq!(peak_over_mean(&[5; 10], 100, 1_000), 10.0);
        let even: Vec<u64> = (0..10).map(|i| i * 100).collect();
        assert_eq!(peak_over_mean(&even, 100, 1_000), 1.0);
    }

    #[test]
    fn the_hub_restart_is_the_cores_shutdown_close() {
        assert_eq!(
            Restart::from_hub(HubSettings {
                restart_retry_after_ms: 100,
                restart_spread_ms: 900,
                ..HubSettings::default()
            }),
            Restart::Closed {
                code: 1012,
                reason: r#"{"retryAfterMs":100,"spreadMs":900}"#.into()
            }
        );
    }

    #[test]
    fn a_fatal_close_is_left_out() {
        let config = Config::new("ws://hub.test/ws");
        let fatal = Restart::Closed {
            code: 1008,
            reason: String::new(),
        };
        assert!(first_attempts(&config, 0..3, &fatal).unwrap().is_empty());
        assert_eq!(
            first_attempts(&config, 0..3, &Restart::Lost).unwrap().len(),
            3
        );
    }
}
