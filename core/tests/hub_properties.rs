//! Properties of the hub's sans-IO protocol logic under random traffic from several connections
//! (with chaos on): it never panics, sends only JSON (unless chaos corrupts a frame on purpose),
//! never names a connection it does not know, never asks to be woken in the past (no spinning
//! tick loop), and relays a project message to each other member exactly once.

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::{json, Value};
use sockline_core::hub::{
    ChaosConfig, ConnId, HubCore, HubInput, HubOutput, HubSettings, InMemoryBroker, ScriptedAgent,
};
use sockline_core::{RateLimitConfig, Timestamp};

#[derive(Clone, Debug)]
enum Op {
    Input(HubInput),
    Advance(u64),
}

fn frame() -> impl Strategy<Value = String> {
    let project = 1u64..3;
    prop_oneof![
        Just(r#"{"type":"hello","data":{"protocol":2,"userId":"u"}}"#.to_string()),
        (0u64..5).prop_map(|s| format!(
            r#"{{"type":"hello","data":{{"protocol":2,"sessionId":"s{s}"}}}}"#
        )),
        project
            .clone()
            .prop_map(|p| format!(r#"{{"type":"project_subscribe","data":{{}},"projectId":{p}}}"#)),
        // A rejoin from a position, in some epoch (mostly not the log's, which is random).
        (project.clone(), 0u64..6).prop_map(|(p, o)| format!(
            r#"{{"type":"project_subscribe","data":{{"epoch":"e","offset":{o}}},"projectId":{p}}}"#
        )),
        project.clone().prop_map(|p| format!(
            r#"{{"type":"project_unsubscribe","data":{{}},"projectId":{p}}}"#
        )),
        (project.clone(), 0u32..4).prop_map(|(p, i)| format!(
            r#"{{"type":"note","data":{i},"id":"m{i}","projectId":{p}}}"#
        )),
        project.clone().prop_map(|p| format!(
            r#"{{"type":"project_update","data":{{"t":1}},"projectId":{p}}}"#
        )),
        project.prop_map(|p| format!(
            r#"{{"type":"user_typing_start","data":{{"userId":"x"}},"projectId":{p}}}"#
        )),
        Just(r#"{"type":"agent_prompt","data":{"prompt":"p","streamId":"r"}}"#.to_string()),
        (0u64..6).prop_map(|f| format!(
            r#"{{"type":"agent_stream_resume","data":{{"streamId":"r","fromSeq":{f}}}}}"#
        )),
        Just(r#"{"type":"agent_stream_interrupt","data":{"streamId":"r"}}"#.to_string()),
        Just(r#"{"type":"ping","data":{"nonce":1}}"#.to_string()),
        ".{0,40}",
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let conn = (1u64..5).prop_map(ConnId);
    prop_oneof![
        1 => conn.clone().prop_map(|conn| Op::Input(HubInput::Accepted { conn })),
        1 => conn.clone().prop_map(|conn| Op::Input(HubInput::Closed { conn })),
        6 => (conn.clone(), frame()).prop_map(|(conn, text)| Op::Input(HubInput::Frame { conn, text })),
        1 => (conn.clone(), 0usize..9).prop_map(|(conn, len)| Op::Input(HubInput::BinaryFrame { conn, len })),
        1 => conn.clone().prop_map(|conn| Op::Input(HubInput::FrameTooLarge { conn })),
        1 => conn.prop_map(|conn| Op::Input(HubInput::WriteBlocked { conn })),
        1 => Just(Op::Input(HubInput::Shutdown)),
        3 => (0u64..3_000).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_hub_logic_holds_under_random_traffic(
        ops in prop::collection::vec(op(), 1..80),
        chaos in any::<bool>(),
    ) {
        let settings = HubSettings {
            hello_timeout_ms: 500,
            idle_timeout_ms: 2_000,
            agent_chunk_ms: 10,
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
        let mut hub = HubCore::new(settings, InMemoryBroker::new(1024, 11), 7)
            .with_agent(Box::new(ScriptedAgent { chunks: 5 }));
        // What the driver has: connections it accepted and not yet reported closed.
        let mut open = BTreeSet::new();
        let mut now = Timestamp::ZERO;
        for op in ops {
            match op {
                Op::Input(input) => {
                    match &input {
                        HubInput::Accepted { conn } => { open.insert(*conn); }
                        HubInput::Closed { conn } => { open.remove(conn); }
                        _ => {}
                    }
                    hub.handle_input(now, input);
                }
                Op::Advance(ms) => {
                    now = now.add_ms(ms);
                    hub.handle_input(now, HubInput::Timeout);
                }
            }
            loop {
                let out = hub.poll_output();
                if let HubOutput::Timeout { deadline } = out {
                    // Nothing is due at or before now once drained: a tick loop never spins.
                    prop_assert!(deadline.is_none_or(|d| d > now), "due at {deadline:?} at {now}");
                    break;
                }
                let conn = out.conn().expect("every other output names a connection");
                prop_assert!(open.contains(&conn), "{out:?} for unknown connection");
                if let HubOutput::Send { text, .. } = &out {
                    let v: Value = serde_json::from_str(text).expect("the hub sends JSON");
                    prop_assert!(v["type"].is_string(), "{text}");
                }
            }
            prop_assert!(hub.connections() <= open.len());
        }
    }
}

#[test]
fn a_project_message_reaches_each_other_member_once_as_one_shared_frame() {
    let mut hub = HubCore::new(HubSettings::default(), InMemoryBroker::new(1024, 11), 3);
    let t = Timestamp::ZERO;
    for (conn, user) in [(1, "ann"), (2, "bob"), (3, "cy")] {
        hub.accepted(t, ConnId(conn));
        let hello = json!({"type": "hello", "data": {"protocol": 2, "userId": user}});
        hub.frame(t, ConnId(conn), &hello.to_string());
        let join = json!({"type": "project_subscribe", "data": {}, "projectId": 4});
        hub.frame(t, ConnId(conn), &join.to_string());
    }
    while !matches!(hub.poll_output(), HubOutput::Timeout { .. }) {}
    hub.frame(t, ConnId(1), r#"{"type":"note","data":"hi","projectId":4}"#);
    let mut notes = Vec::new();
    loop {
        match hub.poll_output() {
            HubOutput::Send { conn, text } if text.contains(r#""type":"note""#) => {
                notes.push((conn, text))
            }
            HubOutput::Timeout { .. } => break,
            _ => {}
        }
    }
    let conns: Vec<ConnId> = notes.iter().map(|(c, _)| *c).collect();
    assert_eq!(conns, vec![ConnId(2), ConnId(3)]);
    // Encoded once: both recipients get the very same bytes, with the log position in them.
    assert!(std::sync::Arc::ptr_eq(&notes[0].1, &notes[1].1));
    assert!(notes[0].1.contains(r#""offset":1"#), "{}", notes[0].1);
}
