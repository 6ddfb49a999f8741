//! The reconnect herd after a hub restart, simulated in virtual time (no sockets): 10,000
//! sessions, each with its own seed, open on a scripted welcome; at t=0 the restart reaches them
//! all; each one's first reconnect attempt is timed. Prints, per jitter mode and for the hub's
//! server-directed spread, the attempts per 100 ms and the peak over the mean.
//!
//! `cargo run --release -p sockline-core --example herd [-- --sessions N --retry-after-ms A
//! --spread-ms W [--spread-ms W2 ...] --seed-sets K]` (default: 10,000 sessions, the hub's
//! default window, one seed set). With `--seed-sets K`, each spread is run again over K disjoint
//! seed sets and the spread of its peak over mean printed: one set's peak is one random draw.
//! `HERD_CONSECUTIVE_SEEDS=1` seeds the sessions 0..N instead (see `herd::seeds` for why not).

use std::process::ExitCode;

use sockline_core::hub::HubSettings;
use sockline_core::testing::herd::{first_attempts, histogram, peak_over_mean, seeds, Restart};
use sockline_core::{Config, Jitter};

const BUCKET_MS: u64 = 100;

struct Args {
    sessions: u64,
    retry_after_ms: u64,
    spreads: Vec<u64>,
    seed_sets: u64,
}

fn args() -> Result<Args, String> {
    let defaults = HubSettings::default();
    let mut a = Args {
        sessions: 10_000,
        retry_after_ms: defaults.restart_retry_after_ms,
        spreads: Vec::new(),
        seed_sets: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: bad number {value:?}"))?;
        match flag.as_str() {
            "--sessions" => a.sessions = n.max(1),
            "--retry-after-ms" => a.retry_after_ms = n,
            "--spread-ms" => a.spreads.push(n),
            "--seed-sets" => a.seed_sets = n.max(1),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.spreads.is_empty() {
        a.spreads.push(defaults.restart_spread_ms);
    }
    Ok(a)
}

/// Prints one mode's lines: the range, the counts per 100 ms bucket from the first non-empty
/// one, and the peak over the mean of a uniform spread over the `window_ms` from `offset_ms`.
fn report(label: &str, sessions: u64, firsts: &[u64], offset_ms: u64, window_ms: u64) {
    // Buckets start at the window's start, so a window at A = 250 ms is not cut at 300.
    let shifted: Vec<u64> = firsts.iter().map(|d| d.saturating_sub(offset_ms)).collect();
    let counts = histogram(&shifted, BUCKET_MS);
    let from = counts.iter().position(|&c| c > 0).unwrap_or(0);
    let (lo, hi) = (
        firsts.iter().min().copied().unwrap_or(0),
        firsts.iter().max().copied().unwrap_or(0),
    );
    let peak = counts.iter().max().copied().unwrap_or(0);
    let buckets = window_ms.div_ceil(BUCKET_MS).max(1);
    println!("{label}");
    println!(
        "  {} of {sessions} attempted, first attempts in [{lo}, {hi}] ms",
        firsts.len()
    );
    let shown: Vec<String> = counts[from..].iter().map(|c| c.to_string()).collect();
    println!(
        "  per 100 ms from {} ms: {}",
        offset_ms + from as u64 * BUCKET_MS,
        shown.join(" ")
    );
    println!(
        "  peak {peak} over mean {:.0} ({} over the {buckets} buckets of [{offset_ms}, {}] ms): {:.2}x",
        firsts.len() as f64 / buckets as f64,
        firsts.len(),
        offset_ms + window_ms,
        peak_over_mean(&shifted, BUCKET_MS, window_ms)
    );
}

/// The first attempts of `n` sessions with `config` from seed set `set` (sets are disjoint).
fn run(config: &Config, n: u64, set: u64, consecutive: bool, restart: &Restart) -> Vec<u64> {
    let indices = set * n..(set + 1) * n;
    let result = if consecutive {
        first_attempts(config, indices, restart)
    } else {
        first_attempts(config, seeds(indices), restart)
    };
    // The configs here are the defaults with one field changed: valid.
    result.expect("a valid config")
}

fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("herd: {e}");
            return ExitCode::from(2);
        }
    };
    let consecutive = std::env::var_os("HERD_CONSECUTIVE_SEEDS").is_some();
    println!(
        "herd: {} sessions ({} seeds), the hub restarts at t=0; first reconnect attempt of each, per 100 ms",
        a.sessions,
        if consecutive { "consecutive" } else { "splitmix64" }
    );
    // The session's own jitter: a plain close without a window, over the 1 s first delay.
    let going_away = Restart::Closed {
        code: sockline_core::close::GOING_AWAY,
        reason: "going away".into(),
    };
    for (name, jitter) in [
        ("none", Jitter::None),
        ("full", Jitter::Full),
        ("equal (the default)", Jitter::Equal),
    ] {
        let mut config = Config::new("ws://hub.test/ws");
        config.reconnect.jitter = jitter;
        let firsts = run(&config, a.sessions, 0, consecutive, &going_away);
        // The yardstick: the uniform spread over the 1 s first delay.
        report(
            &format!("jitter {name}, close 1001 without a window"),
            a.sessions,
            &firsts,
            0,
            config.reconnect.base_delay(1),
        );
    }
    for &spread in &a.spreads {
        let settings = HubSettings {
            restart_retry_after_ms: a.retry_after_ms,
            restart_spread_ms: spread,
            ..HubSettings::default()
        }
        .within_bounds();
        let restart = Restart::from_hub(settings.clone());
        let Restart::Closed { code, reason } = &restart else {
            unreachable!("a hub closes with a frame");
        };
        // The default session (equal jitter): the window replaces it.
        let config = Config::new("ws://hub.test/ws");
        let (from, to) = (
            settings.restart_retry_after_ms,
            settings.restart_retry_after_ms + settings.restart_spread_ms,
        );
        let firsts = run(&config, a.sessions, 0, consecutive, &restart);
        report(
            &format!("server-directed spread, close {code} {reason} (target <= 1.20x)"),
            a.sessions,
            &firsts,
            from,
            settings.restart_spread_ms,
        );
        let outside = firsts.iter().filter(|&&d| d < from || d > to).count();
        println!("  outside [{from}, {to}] ms: {outside}");
        if a.seed_sets > 1 {
            let mut peaks: Vec<f64> = (0..a.seed_sets)
                .map(|set| {
                    let firsts = run(&config, a.sessions, set, consecutive, &restart);
                    let shifted: Vec<u64> = firsts.iter().map(|d| d.saturating_sub(from)).collect();
                    peak_over_mean(&shifted, BUCKET_MS, settings.restart_spread_ms)
                })
                .collect();
            peaks.sort_by(f64::total_cmp);
            let over = peaks.iter().filter(|&&p| p > 1.2).count();
            println!(
                "  over {} seed sets: peak over mean min {:.2}x, median {:.2}x, max {:.2}x; above 1.20x in {over}",
                a.seed_sets,
                peaks[0],
                peaks[peaks.len() / 2],
                peaks[peaks.len() - 1]
            );
        }
    }
    ExitCode::SUCCESS
}
