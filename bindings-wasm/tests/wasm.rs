//! The bindings compiled to wasm32 and run under Node by `wasm-bindgen-test-runner`: the code
//! paths only wasm has (refusals thrown as JS values, URLs checked by the engine's own `URL`),
//! JSON round trips, every refusal, and the golden traces replayed byte for byte.
#![cfg(target_arch = "wasm32")]

use serde_json::Value;
use sockline_wasm::{replay_trace, Failure, Hub, Session};
use wasm_bindgen_test::wasm_bindgen_test;

fn outputs(s: &mut Session) -> Vec<Value> {
    serde_json::from_str(&s.drain()).expect("drain gives a JSON array")
}

fn code<T>(r: Result<T, Failure>) -> String {
    match r {
        Ok(_) => "accepted".into(),
        Err(f) => {
            assert!(!f.message.is_empty(), "{} has a message", f.code);
            f.code
        }
    }
}

#[wasm_bindgen_test]
fn a_session_round_trip_in_canonical_json() {
    let mut s = Session::new(r#"{"url":"ws://127.0.0.1:9/ws","userId":"ann"}"#, 7.0, 0.0).unwrap();
    s.subscribe(0.0, "*", None).unwrap();
    s.connect(0.0).unwrap();
    let out = outputs(&mut s);
    assert_eq!(out[0]["kind"], "open_transport");
    assert_eq!(out[0]["url"], "ws://127.0.0.1:9/ws");
    assert_eq!(out.last().unwrap()["kind"], "timeout");
    s.transport_opened(3.7).unwrap();
    let out = outputs(&mut s);
    let hello: Value = serde_json::from_str(out[0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(hello["type"], "hello");
    assert_eq!(
        hello["data"]["userId"], "ann",
        "wire messages are camelCase"
    );
    s.frame(
        5.0,
        r#"{"type":"welcome","data":{"sessionId":"s1","resumed":false}}"#,
    )
    .unwrap();
    s.frame(
        6.0,
        r#"{"type":"chat","data":{"n":1},"projectId":4,"epoch":"e","offset":1}"#,
    )
    .unwrap();
    let out = outputs(&mut s);
    assert!(out
        .iter()
        .any(|o| o["kind"] == "ready" && o["session_id"] == "s1"));
    let message = out.iter().find(|o| o["kind"] == "message").unwrap();
    assert_eq!(message["message"]["projectId"], 4);
    assert_eq!(s.state(), "open");
    let stats: Value = serde_json::from_str(&s.stats()).unwrap();
    assert_eq!(
        stats["frames_in"], 2,
        "the session's own JSON is snake_case"
    );
}

#[wasm_bindgen_test]
fn urls_are_checked_by_the_engines_own_parser() {
    for ok in [
        "ws://h/ws",
        "wss://bücher.example/ws",
        "ws://[::1]:9/ws",
        "ws://127.0.0.1:9/ws?x=1",
    ] {
        assert_eq!(
            code(Session::new(&format!(r#"{{"url":"{ok}"}}"#), 1.0, 0.0)),
            "accepted",
            "{ok}"
        );
    }
    for bad in [
        "http://h/",
        "ws://",
        "not a url",
        "ws://user:pw@h/ws",
        "ws://h/ws?token=secret",
    ] {
        assert_eq!(
            code(Session::new(&format!(r#"{{"url":"{bad}"}}"#), 1.0, 0.0)),
            "invalid_config",
            "{bad}"
        );
    }
}

#[wasm_bindgen_test]
fn every_refusal_has_the_cores_code() {
    let new = |json: &str, seed: f64| code(Session::new(json, seed, 0.0));
    assert_eq!(
        new(r#"{"url":"ws://h/ws","bogus":1}"#, 1.0),
        "invalid_config"
    );
    assert_eq!(
        new(r#"{"url":"ws://h/ws","reconnect":{"factor":0}}"#, 1.0),
        "invalid_config"
    );
    assert_eq!(new("not json", 1.0), "invalid_argument");
    assert_eq!(new(r#"{"url":"ws://h/ws"}"#, -1.0), "invalid_argument");
    assert_eq!(new(r#"{"url":"ws://h/ws"}"#, 0.5), "invalid_argument");
    let mut s = Session::new(r#"{"url":"ws://h/ws"}"#, 1.0, 0.0).unwrap();
    assert_eq!(code(s.send(0.0, r#"{"type":"ping"}"#)), "reserved_type");
    assert_eq!(code(s.send(0.0, r#"{"type":"bad type"}"#)), "invalid_type");
    assert_eq!(code(s.send(0.0, "[]")), "invalid_message");
    assert_eq!(code(s.join_project(0.0, 1.5)), "invalid_argument");
    assert_eq!(code(s.subscribe(0.0, "a*b", None)), "invalid_pattern");
    assert_eq!(code(s.start_typing(0.0, 1.0)), "no_user_id");
    assert_eq!(code(s.frame(f64::NAN, "{}")), "invalid_argument");
    assert_eq!(
        code(s.handle_input(0.0, r#"{"kind":"nope"}"#)),
        "invalid_input"
    );
    assert_eq!(code(s.restore_outbox(0.0, "{}")), "invalid_snapshot");
}

#[wasm_bindgen_test]
fn golden_traces_replay_exactly_as_the_rust_replay_prints_them() {
    for (trace, want) in [
        (
            include_str!("../../core/tests/traces/backoff_give_up.json"),
            include_str!("../../core/tests/traces/backoff_give_up.out"),
        ),
        (
            include_str!("../../core/tests/traces/heartbeat_suspend.json"),
            include_str!("../../core/tests/traces/heartbeat_suspend.out"),
        ),
        (
            include_str!("../../core/tests/traces/stream_resume.json"),
            include_str!("../../core/tests/traces/stream_resume.out"),
        ),
    ] {
        let got = replay_trace(trace).unwrap();
        assert_eq!(got.trim_end(), want.trim_end());
    }
    assert_eq!(code(replay_trace("{}")), "invalid_trace");
}

#[wasm_bindgen_test]
fn the_hub_core_welcomes_and_relays() {
    let mut hub = Hub::new("{}", 1.0).unwrap();
    let a = hub.accept(0.0).unwrap();
    let b = hub.accept(0.0).unwrap();
    for (c, u) in [(a, "ann"), (b, "bob")] {
        hub.frame(
            1.0,
            c,
            &format!(r#"{{"type":"hello","data":{{"protocol":2,"userId":"{u}"}}}}"#),
        )
        .unwrap();
        hub.frame(
            2.0,
            c,
            r#"{"type":"project_subscribe","data":{},"projectId":1}"#,
        )
        .unwrap();
    }
    hub.drain();
    hub.frame(3.0, a, r#"{"type":"chat","data":"hi","projectId":1}"#)
        .unwrap();
    let out: Vec<Value> = serde_json::from_str(&hub.drain()).unwrap();
    let to_bob: Vec<&Value> = out
        .iter()
        .filter(|o| o["kind"] == "send" && o["conn"] == b)
        .collect();
    assert_eq!(to_bob.len(), 1, "{out:?}");
    assert!(to_bob[0]["text"]
        .as_str()
        .unwrap()
        .contains(r#""data":"hi""#));
    assert_eq!(
        code(hub.frame(4.0, 99.0, "{}")),
        "accepted",
        "an unknown connection is ignored"
    );
    assert_eq!(code(Hub::new(r#"{"bogus":1}"#, 1.0)), "invalid_argument");
}
