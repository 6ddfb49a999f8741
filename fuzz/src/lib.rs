//! Helpers shared by the fuzz targets: draining a session, firing its timers, and the
//! invariants every target checks after every step.

use sockline_core::{Config, Event, Input, Output, Session, Timestamp, Trace};

/// A session that keeps emitting outputs without ever reaching `Output::Timeout` is a bug.
pub const MAX_OUTPUTS_PER_DRAIN: usize = 100_000;

/// A driver that keeps finding a deadline at or before `now` after firing it is a bug.
pub const MAX_FIRINGS_PER_ADVANCE: usize = 100_000;

/// Shorthand for a timestamp.
pub fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// Drains `poll_output()` into `out` until `Timeout`, and checks that the final `Timeout` names
/// the same deadline as `poll_timeout()`.
pub fn drain(s: &mut Session, out: &mut Vec<Output>) {
    for _ in 0..MAX_OUTPUTS_PER_DRAIN {
        match s.poll_output() {
            Output::Timeout(deadline) => {
                assert_eq!(
                    deadline,
                    s.poll_timeout().map(|d| d.at),
                    "Output::Timeout disagrees with poll_timeout()"
                );
                return;
            }
            o => out.push(o),
        }
    }
    panic!("poll_output() produced {MAX_OUTPUTS_PER_DRAIN} outputs without a Timeout");
}

/// Calls `handle_timeout(now)` and checks that it left no deadline at or before `now`.
pub fn handle_timeout_checked(s: &mut Session, now: Timestamp) {
    s.handle_timeout(now);
    if let Some(d) = s.poll_timeout() {
        assert!(
            d.at > now,
            "after handle_timeout({now}) the next deadline {:?} is not after now",
            d
        );
    }
}

/// Checks the outbox bounds the configuration promises.
pub fn check_limits(s: &Session) {
    let st = s.stats();
    let cfg = &s.config().outbox;
    assert!(
        st.queue_depth <= cfg.max_messages,
        "queue_depth {} > max_messages {}",
        st.queue_depth,
        cfg.max_messages
    );
    assert!(
        st.queue_bytes <= cfg.max_bytes,
        "queue_bytes {} > max_bytes {}",
        st.queue_bytes,
        cfg.max_bytes
    );
}

/// Whether `outputs` include a `server_error` event with `code`.
pub fn has_server_error(outputs: &[Output], code: &str) -> bool {
    outputs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::ServerError { code: c, .. }) if c == code))
}

/// Most inputs a fuzzed trace may keep.
pub const MAX_TRACE_INPUTS: usize = 256;
/// Latest time (and longest total suspension) a fuzzed trace may use.
pub const MAX_TRACE_MS: u64 = 10_000_000;
/// Roughly how many periods of the shortest recurring timer one replay may span.
pub const MAX_TRACE_PERIODS: u64 = 4_096;

/// Shortest period of any timer that can recur without a new input: heartbeat pings and
/// dead-link deadlines, connect timeouts in an endless reconnect loop, close and ack timeouts,
/// and backoff delays.
pub fn shortest_period_ms(cfg: &Config) -> u64 {
    [
        cfg.heartbeat.interval_ms,
        cfg.heartbeat.timeout_ms,
        cfg.connect_timeout_ms,
        cfg.close_timeout_ms,
        cfg.outbox.ack_timeout_ms,
        cfg.reconnect.initial_ms,
    ]
    .into_iter()
    .min()
    .unwrap_or(1)
    .max(1)
}

/// Bounds a fuzzed trace so one replay stays fast: at most `MAX_TRACE_INPUTS` inputs, and every
/// `at` and the sum of all suspensions capped at a horizon of at most `MAX_TRACE_MS`, shorter
/// when the config's timers are short (`MAX_TRACE_PERIODS` times the shortest period).
/// Otherwise a trace like `{"heartbeat":{"interval_ms":1}}` with one input at 10^15 ms would
/// make the replay fire 10^15 pings, which is a slow input, not a bug.
pub fn clamp_trace(trace: &mut Trace) {
    trace.inputs.truncate(MAX_TRACE_INPUTS);
    let horizon =
        MAX_TRACE_MS.min(shortest_period_ms(&trace.config).saturating_mul(MAX_TRACE_PERIODS));
    let mut suspend_budget = horizon;
    for step in &mut trace.inputs {
        step.at = step.at.min(t(horizon));
        if let Input::Suspend { ms } = &mut step.input {
            *ms = (*ms).min(suspend_budget);
            suspend_budget -= *ms;
        }
    }
}
