//! `frame`: inbound text frames against an open, welcomed session.
//!
//! The input is split on 0xFF bytes (never part of valid UTF-8); each piece, decoded as lossy
//! UTF-8, is one `frame` input, with the clock advancing between frames and due timers fired
//! first. After every step: no panic, `handle_timeout(now)` leaves no deadline at or before
//! `now`, `poll_output()` drains to a `Timeout` that agrees with `poll_timeout()`, the outbox
//! stays within its bounds, a frame that does not decode emits exactly one `protocol_error` and
//! nothing else, and the session stays `open`: bad frames never end it. The only frame that may
//! legitimately end it is a well-formed `error` with code `unauthorized`, which must then leave
//! the session `unauthorized` (the run stops there).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use sockline_core::{Config, Delivery, Envelope, Event, Output, SendRequest, Session, State};
use sockline_fuzz::{
    check_limits, drain, handle_timeout_checked, has_server_error, t,
};

const WELCOME: &str = r#"{"type":"welcome","data":{"sessionId":"s"}}"#;
const MAX_FRAMES: usize = 512;

fn config() -> Config {
    let mut c = Config::new("ws://127.0.0.1:9/ws");
    // Small limits so the fuzzer reaches them: oversized and over-deep frames, dedupe eviction.
    c.max_frame_bytes = 1024;
    c.max_json_depth = 8;
    c.dedupe_window = 16;
    c
}

fn open_session() -> (Session, u64) {
    let mut s = Session::new(config(), 7, t(0)).expect("valid config");
    let mut out = Vec::new();
    s.subscribe(t(0), "*", None).expect("subscribe");
    s.subscribe(t(0), "note*", Some(3)).expect("subscribe");
    s.connect(t(0)).expect("connect");
    drain(&mut s, &mut out);
    s.transport_opened(t(5));
    drain(&mut s, &mut out);
    s.frame(t(10), WELCOME);
    drain(&mut s, &mut out);
    assert_eq!(s.state(), State::Open, "welcome did not open: {out:?}");
    // Messages awaiting acks (ids m1, m2) so fuzzed `ack` frames have something to hit.
    for id in ["m1", "m2"] {
        s.send(
            t(10),
            SendRequest::new("chat", json!("hi"))
                .id(id)
                .delivery(Delivery::AtLeastOnce),
        )
        .expect("send");
    }
    drain(&mut s, &mut out);
    (s, 10)
}

fuzz_target!(|data: &[u8]| {
    let cfg = config();
    let (mut s, mut now) = open_session();
    let mut out = Vec::new();
    for chunk in data.split(|&b| b == 0xFF).take(MAX_FRAMES) {
        let text = String::from_utf8_lossy(chunk);
        // Up to ~3.2 s between frames: timers (heartbeat pings, ack timeouts, the stable timer)
        // fire, but the heartbeat's 10 s dead-link timeout never can, as every frame is traffic.
        now += 1 + (chunk.len() as u64 % 64) * 50;
        handle_timeout_checked(&mut s, t(now));
        out.clear();
        drain(&mut s, &mut out);
        assert_eq!(
            s.state(),
            State::Open,
            "a timer closed the session: {out:?}"
        );

        let before = s.stats();
        out.clear();
        s.frame(t(now), &text);
        drain(&mut s, &mut out);
        let after = s.stats();
        check_limits(&s);
        assert_eq!(after.frames_in, before.frames_in + 1, "frame not counted");
        if Envelope::decode(&text, cfg.max_frame_bytes, cfg.max_json_depth).is_err() {
            assert_eq!(
                after.protocol_errors,
                before.protocol_errors + 1,
                "undecodable frame {text:?} not counted as a protocol error"
            );
            assert!(
                matches!(out.as_slice(), [Output::Event(Event::ProtocolError { .. })]),
                "undecodable frame {text:?} gave {out:?}"
            );
        }
        if has_server_error(&out, "unauthorized") {
            assert_eq!(s.state(), State::Unauthorized, "{out:?}");
            return;
        }
        assert_eq!(
            s.state(),
            State::Open,
            "frame {text:?} took the session out of open: {out:?}"
        );
    }
});
