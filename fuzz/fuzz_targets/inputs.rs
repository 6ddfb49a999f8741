//! `inputs`: structured fuzzing of the whole public `Session` API.
//!
//! `arbitrary` turns the input into a small configuration, a seed and a list of steps, each a
//! time delta plus one operation: connect, disconnect, transport opened/closed/error, a frame
//! (from a dictionary of valid server frames, acks for ids the session handed out, pongs,
//! numbered app messages, or an arbitrary string), a binary frame, send (type, delivery, ttl,
//! coalescing key, id, project, payload size), subscribe/unsubscribe, online/offline,
//! visible/hidden, timeout, a late timeout, suspend.
//!
//! The driver is punctual: before each step it fires every deadline that fell due, at its own
//! time, as `replay` does (except `LateTimeout`, which jumps and calls `handle_timeout` once, and
//! `Suspend`, which sleeps then wakes). After every step: no panic, `handle_timeout(now)` leaves
//! no deadline at or before `now`, `poll_output()` drains to a `Timeout` that agrees with
//! `poll_timeout()`, and the outbox stays within `max_messages` / `max_bytes`.
//!
//! The session records itself; at the end the recorded trace must survive the canonical JSON
//! round trip and replay to exactly the outputs the live run printed.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use sockline_core::{
    Config, Delivery, Jitter, Output, Overflow, RateLimitConfig, SendRequest, Session,
    SessionError, SubscriptionId, Timestamp, Trace,
};
use sockline_fuzz::{
    check_limits, drain, handle_timeout_checked, t, MAX_FIRINGS_PER_ADVANCE,
};

const MAX_STEPS: usize = 200;
/// Timer firings one run may spend: with a 1 ms heartbeat and 65 s steps a run could otherwise
/// fire millions of pings, which is a slow input rather than a bug. The run stops at the budget
/// (the replay check still covers everything up to there).
const MAX_FIRINGS_PER_RUN: usize = 4_000;

#[derive(Arbitrary, Debug)]
struct Scenario {
    cfg: FuzzConfig,
    seed: u64,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
struct FuzzConfig {
    max_messages: u8,
    max_bytes: u16,
    overflow: u8,
    rate: Option<(u8, u8)>,
    max_attempts: Option<u8>,
    jitter: u8,
    initial_ms: u16,
    max_hint_ms: u16,
    connect_timeout_ms: u16,
    close_timeout_ms: u16,
    interval_ms: u16,
    timeout_ms: u16,
    suspend_detect_ms: u16,
    ack_timeout_ms: u16,
    stable_ms: u16,
    dedupe_window: u8,
}

impl FuzzConfig {
    fn build(&self) -> Config {
        let mut c = Config::new("ws://127.0.0.1:9/ws");
        c.outbox.max_messages = usize::from(self.max_messages % 16) + 1;
        c.outbox.max_bytes = usize::from(self.max_bytes % 4096) + 64;
        c.outbox.overflow = match self.overflow % 3 {
            0 => Overflow::DropOldest,
            1 => Overflow::DropNewest,
            _ => Overflow::Reject,
        };
        c.outbox.ack_timeout_ms = u64::from(self.ack_timeout_ms) + 1;
        c.rate_limit = match self.rate {
            None => RateLimitConfig::Off,
            Some((per_sec, burst)) => RateLimitConfig::Bucket {
                per_sec: u32::from(per_sec % 20) + 1,
                burst: u32::from(burst % 5) + 1,
            },
        };
        c.reconnect.max_attempts = self.max_attempts.map(|n| u32::from(n % 8));
        c.reconnect.jitter = match self.jitter % 3 {
            0 => Jitter::None,
            1 => Jitter::Full,
            _ => Jitter::Equal,
        };
        c.reconnect.initial_ms = u64::from(self.initial_ms % 5000) + 1;
        c.reconnect.max_ms = c.reconnect.initial_ms * 8;
        c.reconnect.max_hint_ms = u64::from(self.max_hint_ms);
        c.reconnect.stable_ms = u64::from(self.stable_ms);
        c.connect_timeout_ms = u64::from(self.connect_timeout_ms) + 1;
        c.close_timeout_ms = u64::from(self.close_timeout_ms) + 1;
        c.heartbeat.interval_ms = u64::from(self.interval_ms) + 1;
        c.heartbeat.timeout_ms = u64::from(self.timeout_ms) + 1;
        c.heartbeat.suspend_detect_ms = u64::from(self.suspend_detect_ms) + 1;
        c.dedupe_window = usize::from(self.dedupe_window % 32);
        c
    }
}

#[derive(Arbitrary, Debug)]
struct Step {
    dt_ms: u16,
    op: Op,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Connect,
    Disconnect,
    TransportOpened,
    TransportClosed { code: CloseCode, reason: Reason },
    TransportClosedWithoutCode,
    TransportLost,
    TransportError,
    Buffered(u32),
    Frame(FrameSpec),
    BinaryFrame(u32),
    Send(SendSpec),
    Subscribe { pattern: u8, project: Option<u8> },
    Unsubscribe(u8),
    Online,
    Offline,
    Visible,
    Hidden,
    Timeout,
    LateTimeout,
    Suspend(u32),
}

#[derive(Arbitrary, Debug)]
enum CloseCode {
    Common(u8),
    Raw(u16),
}

const CLOSE_CODES: [u16; 10] = [1000, 1001, 1006, 1011, 1002, 1008, 4000, 4001, 4003, 4999];

#[derive(Arbitrary, Debug)]
enum Reason {
    Empty,
    RetryAfter(u16),
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum FrameSpec {
    Dict(u8),
    Ack(u8),
    Pong(u8),
    App {
        ty: u8,
        seq: Option<u8>,
        id: Option<u8>,
        project: Option<u8>,
    },
    ErrorRetry(u16),
    Raw(String),
}

const FRAMES: [&str; 16] = [
    r#"{"type":"welcome","data":{"sessionId":"s1"}}"#,
    r#"{"type":"welcome","data":{"sessionId":"s1","resumed":true}}"#,
    r#"{"type":"welcome","data":{"sessionId":"s2","resumed":false}}"#,
    r#"{"type":"project_joined","data":{"epoch":"e1","offset":2},"projectId":1}"#,
    r#"{"type":"project_joined","data":{"epoch":"e2","offset":0,"recovered":false,"reason":"epoch_changed"},"projectId":1}"#,
    r#"{"type":"ping","data":{"nonce":1}}"#,
    r#"{"type":"error","data":{"code":"rate_limited","message":"slow down","retryAfterMs":1500}}"#,
    r#"{"type":"error","data":{"code":"rate_limited","message":"slow down"}}"#,
    r#"{"type":"error","data":{"code":"unauthorized","message":"bad token"}}"#,
    r#"{"type":"error","data":{"code":"overloaded","message":"busy"}}"#,
    r#"{"type":"ack","data":{}}"#,
    r#"{"type":"hello","data":{"protocol":2}}"#,
    r#"{"type":"note","data":1}"#,
    r#"{"type":"welcome","data":{}}"#,
    r#"{"type":"pong","data":{"nonce":"x"}}"#,
    r#"{"type":"#,
];

const APP_TYPES: [&str; 5] = [
    "note",
    "note_added",
    "chat",
    "agent_stream_delta",
    "project_updated",
];

#[derive(Arbitrary, Debug)]
struct SendSpec {
    ty: u8,
    delivery: u8,
    ttl_ms: Option<u16>,
    coalesce: Option<u8>,
    id: Option<u8>,
    project: Option<u8>,
    payload: u8,
    unix_ms: Option<u64>,
}

const SEND_TYPES: [&str; 8] = [
    "chat",
    "typing",
    "cursor.move",
    "a:b-c_d",
    "",
    "ping",
    "bad type",
    "x",
];
const PATTERNS: [&str; 8] = [
    "*",
    "chat",
    "note",
    "note*",
    "agent_*",
    "bad*pattern",
    "",
    "project_updated",
];

impl SendSpec {
    fn request(&self) -> SendRequest {
        let ty = SEND_TYPES[usize::from(self.ty) % SEND_TYPES.len()];
        let ty = if self.ty == 255 {
            "t".repeat(65)
        } else {
            ty.to_string()
        };
        let mut r = SendRequest::new(ty, json!("x".repeat(usize::from(self.payload) * 4)));
        r.delivery = match self.delivery % 3 {
            0 => Delivery::AtMostOnce,
            1 => Delivery::AtLeastOnce,
            _ => Delivery::Volatile,
        };
        r.ttl_ms = self.ttl_ms.map(u64::from);
        r.coalesce = self.coalesce.map(|c| {
            if c == 255 {
                String::new()
            } else {
                format!("k{}", c % 4)
            }
        });
        r.id = self.id.map(|i| {
            if i == 255 {
                String::new()
            } else {
                format!("id{}", i % 8)
            }
        });
        r.project_id = self.project.map(|p| u64::from(p % 4));
        r.unix_ms = self.unix_ms;
        r
    }
}

/// The live run, printing lines exactly as `replay` does.
struct Driver {
    s: Session,
    clock: Timestamp,
    lines: Vec<String>,
    sent_ids: Vec<String>,
    out: Vec<Output>,
    firings: usize,
}

impl Driver {
    fn drain_at(&mut self, at: Timestamp) {
        self.out.clear();
        drain(&mut self.s, &mut self.out);
        self.lines.extend(self.out.iter().map(|o| o.to_json_at(at)));
        check_limits(&self.s);
    }

    fn timeout_at(&mut self, at: Timestamp) {
        self.firings += 1;
        self.clock = self.clock.max(at);
        handle_timeout_checked(&mut self.s, at);
        self.drain_at(at);
    }

    /// Fires every deadline due by `until`, each at its own time (as `replay` does); false when
    /// the run's firing budget ran out first.
    fn fire_due(&mut self, until: Timestamp) -> bool {
        for _ in 0..MAX_FIRINGS_PER_ADVANCE {
            match self.s.poll_timeout() {
                Some(d) if d.at <= until => {
                    if self.firings >= MAX_FIRINGS_PER_RUN {
                        return false;
                    }
                    let at = d.at.max(self.clock);
                    self.timeout_at(at);
                }
                _ => return true,
            }
        }
        panic!("deadlines keep falling due at or before {until}");
    }

    fn refused(&mut self, at: Timestamp, kind: &str, e: SessionError) {
        self.lines.push(
            json!({
                "at": at.as_millis(),
                "kind": "input_error",
                "input": kind,
                "code": e.code(),
                "error": e.to_string(),
            })
            .to_string(),
        );
    }

    fn frame_text(&self, spec: &FrameSpec) -> String {
        match spec {
            FrameSpec::Dict(i) => FRAMES[usize::from(*i) % FRAMES.len()].to_string(),
            FrameSpec::Ack(i) => {
                let id = if self.sent_ids.is_empty() {
                    "nope".to_string()
                } else {
                    self.sent_ids[usize::from(*i) % self.sent_ids.len()].clone()
                };
                json!({"type": "ack", "data": {"id": id}}).to_string()
            }
            FrameSpec::Pong(n) => json!({"type": "pong", "data": {"nonce": n % 8}}).to_string(),
            FrameSpec::App {
                ty,
                seq,
                id,
                project,
            } => {
                let mut v = json!({"type": APP_TYPES[usize::from(*ty) % APP_TYPES.len()], "data": {"n": ty}});
                if let Some(seq) = seq {
                    // A log position: mostly epoch e1, sometimes another.
                    v["epoch"] = json!(if seq % 5 == 0 { "e2" } else { "e1" });
                    v["offset"] = json!(seq % 16);
                }
                if let Some(id) = id {
                    v["id"] = json!(format!("srv{}", id % 8));
                }
                if let Some(p) = project {
                    v["projectId"] = json!(p % 4);
                }
                v.to_string()
            }
            FrameSpec::ErrorRetry(ms) => json!({
                "type": "error",
                "data": {"code": "overloaded", "message": "later", "retryAfterMs": ms}
            })
            .to_string(),
            FrameSpec::Raw(s) => s.clone(),
        }
    }

    /// Applies one step at `now`; false when the firing budget ran out (the run stops).
    fn step(&mut self, now: Timestamp, op: &Op) -> bool {
        match op {
            Op::LateTimeout => {
                // A late driver: no punctual firing, one `handle_timeout` at `now`.
                self.timeout_at(now);
                return true;
            }
            _ => {
                if !self.fire_due(now) {
                    return false;
                }
            }
        }
        self.clock = self.clock.max(now);
        let s = &mut self.s;
        match op {
            Op::Connect => {
                if let Err(e) = s.connect(now) {
                    self.refused(now, "connect", e);
                }
            }
            Op::Disconnect => s.disconnect(now),
            Op::TransportOpened => s.transport_opened(now),
            Op::TransportClosed { code, reason } => {
                let code = match code {
                    CloseCode::Common(i) => CLOSE_CODES[usize::from(*i) % CLOSE_CODES.len()],
                    CloseCode::Raw(c) => *c,
                };
                let reason = match reason {
                    Reason::Empty => String::new(),
                    Reason::RetryAfter(ms) => format!(r#"{{"retryAfterMs":{ms}}}"#),
                    Reason::Text(s) => s.clone(),
                };
                s.transport_closed(now, code, &reason);
            }
            Op::TransportClosedWithoutCode => s.transport_closed(now, None, ""),
            Op::TransportLost => s.transport_lost(now),
            Op::TransportError => s.transport_error(now, "reset by peer"),
            // Up to ~4 GiB unsent: both sides of max_buffered_bytes (1 MiB by default).
            Op::Buffered(bytes) => s.buffered(now, u64::from(*bytes)),
            Op::Frame(spec) => {
                let text = self.frame_text(spec);
                self.s.frame(now, &text);
            }
            Op::BinaryFrame(len) => s.binary_frame(now, *len as usize),
            Op::Send(spec) => match s.send(now, spec.request()) {
                Ok(id) => self.sent_ids.push(id),
                Err(e) => self.refused(now, "send", e),
            },
            Op::Subscribe { pattern, project } => {
                let pattern = PATTERNS[usize::from(*pattern) % PATTERNS.len()];
                if let Err(e) = s.subscribe(now, pattern, project.map(u64::from)) {
                    self.refused(now, "subscribe", e);
                }
            }
            Op::Unsubscribe(id) => {
                if let Err(e) = s.unsubscribe(now, SubscriptionId(u64::from(*id % 8))) {
                    self.refused(now, "unsubscribe", e);
                }
            }
            Op::Online => s.online(now),
            Op::Offline => s.offline(now),
            Op::Visible => s.visible(now),
            Op::Hidden => s.hidden(now),
            Op::Timeout => handle_timeout_checked(s, now),
            Op::Suspend(ms) => {
                let ms = u64::from(*ms);
                s.suspend(now, ms);
                // The host wakes: what fell due while it slept fires now, late (already while
                // draining, as `poll_output` fires what is due at the session's clock).
                let woke = now.add_ms(ms);
                self.clock = self.clock.max(woke);
                self.drain_at(woke);
                self.timeout_at(woke);
                return true;
            }
            Op::LateTimeout => unreachable!(),
        }
        self.drain_at(now);
        true
    }
}

fuzz_target!(|scenario: Scenario| {
    let cfg = scenario.cfg.build();
    let Ok(mut s) = Session::new(cfg, scenario.seed, t(0)) else {
        return;
    };
    s.start_recording();
    let mut d = Driver {
        s,
        clock: t(0),
        lines: Vec::new(),
        sent_ids: Vec::new(),
        out: Vec::new(),
        firings: 0,
    };
    let mut now = t(0);
    for step in scenario.steps.iter().take(MAX_STEPS) {
        now = now.max(d.clock).add_ms(u64::from(step.dt_ms));
        if !d.step(now, &step.op) {
            break;
        }
    }

    let trace = d.s.trace().expect("recording");
    let text = trace.to_json();
    let back = Trace::from_json(&text).expect("recorded trace must parse");
    assert!(
        back == trace,
        "recorded trace does not round trip:\n{text}"
    );
    let replayed = back.replay().expect("recorded trace must replay");
    if replayed != d.lines {
        let first = replayed
            .iter()
            .zip(&d.lines)
            .position(|(a, b)| a != b)
            .unwrap_or(replayed.len().min(d.lines.len()));
        panic!(
            "replay differs from the live run at line {first}:\n  replay: {:?}\n  live:   {:?}\ntrace:\n{text}",
            replayed.get(first),
            d.lines.get(first)
        );
    }
});
