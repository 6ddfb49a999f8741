//! Properties of the hub's sans-IO protocol logic under random traffic from several connections:
//! it never panics, never names a connection it does not know, never asks to be ticked in the
//! past (no spinning tick loop), and relays a project message to each other member exactly once.

use proptest::prelude::*;
use serde_json::{json, Value};
use sockline_tokio::hub::{Action, HubCore, HubSettings, InMemoryBroker};

#[derive(Clone, Debug)]
enum Op {
    Connect(u64),
    Disconnect(u64),
    Frame(u64, String),
    Advance(u64),
}

fn frame() -> impl Strategy<Value = String> {
    let project = 1u64..3;
    prop_oneof![
        Just(r#"{"type":"hello","data":{"protocol":1,"userId":"u"}}"#.to_string()),
        (0u64..5).prop_map(|s| format!(
            r#"{{"type":"hello","data":{{"protocol":1,"sessionId":"s{s}","lastSeq":{s}}}}}"#
        )),
        project
            .clone()
            .prop_map(|p| format!(r#"{{"type":"project_subscribe","data":{{}},"projectId":{p}}}"#)),
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
    let conn = 1u64..5;
    prop_oneof![
        1 => conn.clone().prop_map(Op::Connect),
        1 => conn.clone().prop_map(Op::Disconnect),
        6 => (conn, frame()).prop_map(|(c, f)| Op::Frame(c, f)),
        2 => (0u64..3_000).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_hub_logic_holds_under_random_traffic(ops in prop::collection::vec(op(), 1..80)) {
        let settings = HubSettings {
            hello_timeout_ms: 500,
            idle_timeout_ms: 2_000,
            agent_chunk_ms: 10,
            agent_chunks: 5,
            rate_limit: Some((50, 20)),
            ..HubSettings::default()
        };
        let mut hub = HubCore::new(settings, InMemoryBroker::default(), 7);
        let mut open = std::collections::BTreeSet::new();
        let mut now = 0u64;
        for op in ops {
            let actions = match op {
                Op::Connect(c) => {
                    if open.insert(c) {
                        hub.connected(c, now);
                    }
                    Vec::new()
                }
                Op::Disconnect(c) => {
                    if open.remove(&c) {
                        hub.disconnected(c, now)
                    } else {
                        Vec::new()
                    }
                }
                Op::Frame(c, text) => {
                    if !open.contains(&c) {
                        continue;
                    }
                    hub.frame(c, &text, now)
                }
                Op::Advance(ms) => {
                    now += ms;
                    hub.tick(now)
                }
            };
            for a in &actions {
                let conn = match a {
                    Action::Send { conn, text } => {
                        let v: Value = serde_json::from_str(text).expect("the hub sends JSON");
                        prop_assert!(v["type"].is_string(), "{text}");
                        conn
                    }
                    Action::Close { conn, .. } => conn,
                };
                prop_assert!(open.contains(conn), "action for unknown connection {conn}");
            }
            // After a tick at `now`, nothing is due at or before it: a tick loop never spins.
            let due = hub.tick(now);
            for a in &due {
                let (Action::Close { conn, .. } | Action::Send { conn, .. }) = a;
                prop_assert!(open.contains(conn), "action for unknown connection {conn}");
            }
            let next = hub.next_deadline();
            prop_assert!(next.is_none_or(|d| d > now), "due at {next:?} after tick({now})");
        }
    }
}

#[test]
fn a_project_message_reaches_each_other_member_once() {
    let mut hub = HubCore::new(HubSettings::default(), InMemoryBroker::default(), 3);
    for (conn, user) in [(1, "ann"), (2, "bob"), (3, "cy")] {
        hub.connected(conn, 0);
        let hello = json!({"type": "hello", "data": {"protocol": 1, "userId": user}});
        hub.frame(conn, &hello.to_string(), 0);
        let join = json!({"type": "project_subscribe", "data": {}, "projectId": 4});
        hub.frame(conn, &join.to_string(), 0);
    }
    let out = hub.frame(1, r#"{"type":"note","data":"hi","projectId":4}"#, 1);
    let notes: Vec<u64> = out
        .iter()
        .filter_map(|a| match a {
            Action::Send { conn, text } if text.contains(r#""type":"note""#) => Some(*conn),
            _ => None,
        })
        .collect();
    assert_eq!(notes, vec![2, 3]);
}
