//! `trace`: the input as UTF-8 text is parsed with `Trace::from_json`; a trace that parses is
//! clamped (at most 256 inputs, times and suspensions bounded so one replay cannot fire millions
//! of timers: see `clamp_trace`) and replayed twice. Replay must not panic or hang, and must be
//! deterministic: both replays give the same result, byte for byte. The canonical form must round
//! trip too: `from_json(to_json(trace))` is the same trace (checked without a token, which
//! `to_json` redacts by design).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockline_core::Trace;
use sockline_fuzz::clamp_trace;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut trace) = Trace::from_json(text) else {
        return;
    };
    clamp_trace(&mut trace);
    let first = trace.replay();
    let second = trace.replay();
    assert_eq!(first, second, "replay is not deterministic");
    if trace.config.token.is_none() {
        let canonical = trace.to_json();
        let back = Trace::from_json(&canonical).expect("to_json output must parse");
        assert!(
            back == trace,
            "canonical form does not round trip:\n{canonical}"
        );
    }
});
