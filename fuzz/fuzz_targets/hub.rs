//! `hub`: arbitrary connection events and client frames against the hub core, chaos on or off.
//!
//! Frames are mostly well-formed protocol messages (so the fuzzer reaches sessions, projects,
//! resumes and agent streams) with arbitrary fields, plus raw text. After every step: no panic;
//! only valid JSON is sent (corruption chaos stays off); no output names a connection the driver
//! does not hold; draining ends in a `timeout` whose deadline is after now; and memory stays
//! bounded by what came in (connections by accepts, sessions by hellos).
#![no_main]

use std::collections::BTreeSet;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use sockline_core::hub::{
    ChaosConfig, ConnId, HubCore, HubInput, HubOutput, HubSettings, InMemoryBroker, ScriptedAgent,
};
use sockline_core::{RateLimitConfig, Timestamp};

const MAX_OPS: usize = 256;
const MAX_OUTPUTS: usize = 100_000;

#[derive(Arbitrary, Debug)]
enum Msg {
    Hello { protocol: u8, session: Option<u8>, user: Option<u8> },
    Join(u8),
    Rejoin(u8, bool, u16),
    Leave(u8),
    Update(u8, i16),
    Sync(u8),
    Note { project: Option<u8>, id: Option<u8>, len: u8 },
    Typing(u8, bool),
    Prompt(Option<u8>),
    Interrupt(u8),
    Resume(u8, u16),
    Ping(u16),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Accept(u8),
    Close(u8),
    Frame(u8, Msg),
    Binary(u8, u16),
    TooLarge(u8),
    Blocked(u8),
    Shutdown,
    Advance(u16),
}

fn text(msg: Msg, sessions: &[String]) -> String {
    let v = match msg {
        Msg::Hello { protocol, session, user } => {
            let mut data = json!({"protocol": protocol % 3});
            if let Some(s) = session {
                let id = sessions.get(usize::from(s) % sessions.len().max(1)).cloned();
                data["sessionId"] = json!(id.unwrap_or_else(|| format!("s{s}")));
            }
            if let Some(u) = user {
                data["userId"] = json!(format!("u{}", u % 8));
            }
            json!({"type": "hello", "data": data})
        }
        Msg::Join(p) => json!({"type": "project_subscribe", "data": {}, "projectId": p % 4}),
        // A rejoin from a position: in a made-up epoch, or in none (only an offset).
        Msg::Rejoin(p, epoch, offset) => {
            let data = if epoch {
                json!({"epoch": "e", "offset": offset % 8})
            } else {
                json!({"offset": offset % 8})
            };
            json!({"type": "project_subscribe", "data": data, "projectId": p % 4})
        }
        Msg::Leave(p) => json!({"type": "project_unsubscribe", "data": {}, "projectId": p % 4}),
        Msg::Update(p, v) => json!({"type": "project_update", "data": {"v": v}, "projectId": p % 4}),
        Msg::Sync(p) => json!({"type": "project_sync_request", "data": {"fromVersion": 0}, "projectId": p % 4}),
        Msg::Note { project, id, len } => {
            let mut v = json!({"type": "note", "data": "x".repeat(usize::from(len) * 4)});
            if let Some(p) = project {
                v["projectId"] = json!(p % 4);
            }
            if let Some(i) = id {
                v["id"] = json!(format!("m{}", i % 16));
            }
            v
        }
        Msg::Typing(p, start) => {
            let kind = if start { "user_typing_start" } else { "user_typing_stop" };
            json!({"type": kind, "data": {"userId": "spoof"}, "projectId": p % 4})
        }
        Msg::Prompt(s) => {
            let mut data = json!({"prompt": "p"});
            if let Some(s) = s {
                data["streamId"] = json!(format!("r{}", s % 4));
            }
            json!({"type": "agent_prompt", "id": "p", "data": data})
        }
        Msg::Interrupt(s) => json!({"type": "agent_stream_interrupt", "data": {"streamId": format!("r{}", s % 4)}}),
        Msg::Resume(s, from) => json!({"type": "agent_stream_resume", "data": {"streamId": format!("r{}", s % 4), "fromSeq": from % 12}}),
        Msg::Ping(n) => json!({"type": "ping", "data": {"nonce": n}}),
        Msg::Raw(s) => return s,
    };
    v.to_string()
}

fuzz_target!(|input: (bool, Vec<Op>)| {
    let (chaos, ops) = input;
    let settings = HubSettings {
        hello_timeout_ms: 500,
        idle_timeout_ms: 2_000,
        session_ttl_ms: 5_000,
        agent_chunk_ms: 10,
        replay_capacity: 8,
        dedupe_window: 8,
        max_frame_bytes: 512,
        rate_limit: RateLimitConfig::Bucket { per_sec: 50, burst: 20 },
        chaos: if chaos {
            ChaosConfig {
                seed: 3,
                drop_ms: Some(100..5_000),
                stall_ms: Some(100..5_000),
                pong_delay_ms: Some(300),
                ..ChaosConfig::default()
            }
        } else {
            ChaosConfig::default()
        },
        ..HubSettings::default()
    };
    let mut hub = HubCore::new(settings, InMemoryBroker::new(16, 7), 7)
        .with_agent(Box::new(ScriptedAgent { chunks: 6 }));
    let mut open = BTreeSet::new();
    let mut sessions: Vec<String> = Vec::new();
    let (mut accepts, mut hellos) = (0usize, 0usize);
    let mut now = Timestamp::ZERO;
    for op in ops.into_iter().take(MAX_OPS) {
        let input = match op {
            Op::Accept(c) => {
                accepts += 1;
                open.insert(ConnId(u64::from(c % 8)));
                HubInput::Accepted { conn: ConnId(u64::from(c % 8)) }
            }
            Op::Close(c) => {
                open.remove(&ConnId(u64::from(c % 8)));
                HubInput::Closed { conn: ConnId(u64::from(c % 8)) }
            }
            Op::Frame(c, msg) => {
                if matches!(msg, Msg::Hello { .. }) {
                    hellos += 1;
                }
                HubInput::Frame { conn: ConnId(u64::from(c % 8)), text: text(msg, &sessions) }
            }
            Op::Binary(c, len) => HubInput::BinaryFrame { conn: ConnId(u64::from(c % 8)), len: usize::from(len) },
            Op::TooLarge(c) => HubInput::FrameTooLarge { conn: ConnId(u64::from(c % 8)) },
            Op::Blocked(c) => HubInput::WriteBlocked { conn: ConnId(u64::from(c % 8)) },
            Op::Shutdown => HubInput::Shutdown,
            Op::Advance(ms) => {
                now = now.add_ms(u64::from(ms));
                HubInput::Timeout
            }
        };
        hub.handle_input(now, input);
        let mut drained = false;
        for _ in 0..MAX_OUTPUTS {
            let out = hub.poll_output();
            if let HubOutput::Timeout { deadline } = out {
                assert!(deadline.is_none_or(|d| d > now), "due at {deadline:?} at {now}");
                assert_eq!(deadline, hub.poll_timeout());
                drained = true;
                break;
            }
            let conn = out.conn().expect("every other output names a connection");
            assert!(open.contains(&conn), "{out:?} for a connection the driver does not hold");
            if let HubOutput::Send { text, .. } = &out {
                let v: Value = serde_json::from_str(text).expect("the hub sends JSON");
                assert!(v["type"].is_string(), "{text}");
                if v["type"] == "welcome" {
                    if let Some(sid) = v["data"]["sessionId"].as_str() {
                        sessions.push(sid.to_string());
                    }
                }
            }
        }
        assert!(drained, "poll_output never reached timeout");
        assert!(hub.connections() <= open.len().min(accepts));
        assert!(hub.sessions() <= hellos);
    }
});
