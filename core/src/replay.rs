//! Replaying a trace: a fresh session fed the trace's inputs prints every output, byte for byte.

use std::io::Write as _;

use crate::input::Input;
use crate::output::Output;
use crate::session::Session;
use crate::timer::Timestamp;
use crate::trace::{Trace, TraceError};

impl Trace {
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
