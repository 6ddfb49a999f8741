//! Traces: a config, a seed and timed inputs; replaying one prints every output, byte for byte.

use std::io::Write as _;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::ConfigError;
use crate::input::Input;
use crate::output::Output;
use crate::session::Session;
use crate::timer::Timestamp;

/// One input and the time it arrived.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimedInput {
    /// When (driver monotonic ms).
    pub at: Timestamp,
    /// What.
    pub input: Input,
}

/// A replayable record of a session: `{"config": {...}, "seed": N, "inputs": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    /// The session's configuration (secrets redacted when recorded).
    pub config: Config,
    /// The PRNG seed.
    #[serde(default)]
    pub seed: u64,
    /// The inputs in order.
    pub inputs: Vec<TimedInput>,
}

/// A trace could not be read or replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// The text is not a trace in the canonical form.
    #[error("invalid trace: {0}")]
    Parse(String),
    /// The trace's config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl Trace {
    /// Parses the canonical JSON form.
    pub fn from_json(text: &str) -> Result<Trace, TraceError> {
        serde_json::from_str(text).map_err(|e| TraceError::Parse(e.to_string()))
    }

    /// The canonical JSON form, one input per line.
    pub fn to_json(&self) -> String {
        let config = serde_json::to_string(&self.config).unwrap_or_default();
        let inputs: Vec<String> = self
            .inputs
            .iter()
            .map(|i| serde_json::to_string(i).unwrap_or_default())
            .collect();
        format!(
            "{{\"config\":{config},\"seed\":{},\"inputs\":[\n{}\n]}}\n",
            self.seed,
            inputs.join(",\n")
        )
    }

    /// Replays the trace and returns the printed lines (see `replay`).
    pub fn replay(&self) -> Result<Vec<String>, TraceError> {
        let mut lines = Vec::new();
        replay(self, |line| lines.push(line))?;
        Ok(lines)
    }
}

/// Replays `trace`, handing each printed line to `out`: every output except `timeout`, with the
/// time of the call that produced it as `"at"`, and an `input_error` line for a refused input.
/// Deadlines fire exactly when due, before an input at the same time, up to the last input's time.
pub fn replay(trace: &Trace, mut out: impl FnMut(String)) -> Result<(), TraceError> {
    let mut session = Session::new(trace.config.clone(), trace.seed, Timestamp::ZERO)?;
    let mut clock = Timestamp::ZERO;
    for step in &trace.inputs {
        let at = step.at.max(clock);
        fire_due(&mut session, &mut clock, at, &mut out);
        clock = at;
        let result = session.handle_input(at, step.input.clone());
        if let Err(e) = result {
            out(serde_json::json!({
                "at": at.as_millis(),
                "kind": "input_error",
                "input": step.input.kind(),
                "code": e.code(),
                "error": e.to_string(),
            })
            .to_string());
        }
        if let Input::Suspend { ms } = step.input {
            // The host wakes: whatever fell due while it slept fires now, late.
            let woke = at.add_ms(ms);
            clock = woke;
            drain(&mut session, woke, &mut out);
            fire_due(&mut session, &mut clock, woke, &mut out);
        } else {
            drain(&mut session, at, &mut out);
        }
    }
    Ok(())
}

/// Parses a trace's text and replays it to `out`, one line per output (the `replay` example and
/// `sockline replay` both print exactly this).
pub fn replay_text(text: &str, out: impl std::io::Write) -> Result<(), TraceError> {
    let trace = Trace::from_json(text)?;
    let mut out = std::io::BufWriter::new(out);
    replay(&trace, |line| {
        let _ = writeln!(out, "{line}");
    })?;
    let _ = std::io::Write::flush(&mut out);
    Ok(())
}

fn fire_due(
    session: &mut Session,
    clock: &mut Timestamp,
    until: Timestamp,
    out: &mut impl FnMut(String),
) {
    while let Some(d) = session.poll_timeout() {
        if d.at > until {
            break;
        }
        let t = d.at.max(*clock);
        *clock = t;
        session.handle_timeout(t);
        drain(session, t, out);
    }
}

fn drain(session: &mut Session, at: Timestamp, out: &mut impl FnMut(String)) {
    loop {
        match session.poll_output() {
            Output::Timeout(_) => break,
            o => out(o.to_json_at(at)),
        }
    }
}
