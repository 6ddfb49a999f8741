use super::*;
use serde_json::json;

fn outputs(s: &mut Session) -> Vec<Value> {
    serde_json::from_str(&s.drain()).expect("drain is a JSON array")
}

fn kinds(outs: &[Value]) -> Vec<&str> {
    outs.iter().map(|o| o["kind"].as_str().unwrap()).collect()
}

fn open_session() -> Session {
    let options = json!({"url": "ws://127.0.0.1:9/ws", "userId": "ann", "reconnect": {"initialMs": 250, "maxAttempts": null}});
    let mut s = Session::new(&options.to_string(), 7.0, 0.0).unwrap();
    s.connect(0.0).unwrap();
    s.transport_opened(5.0).unwrap();
    s.frame(10.0, r#"{"type":"welcome","data":{"sessionId":"s1"}}"#)
        .unwrap();
    s.drain();
    s
}

#[test]
fn camel_cased_options_reach_the_core_config() {
    let mut s = open_session();
    assert_eq!(s.state(), "open");
    // reconnect.initialMs = 250 and no attempt limit: a lost link retries after ~250 ms.
    s.transport_lost(20.0).unwrap();
    let outs = outputs(&mut s);
    let scheduled = outs
        .iter()
        .find(|o| o["kind"] == "reconnect_scheduled")
        .unwrap();
    assert!(
        scheduled["delay_ms"].as_u64().unwrap() <= 250,
        "{scheduled}"
    );
    let status = outs.iter().find(|o| o["kind"] == "status").unwrap();
    assert_eq!(status["reason"], "connection lost (1006)");
    assert_eq!(kinds(&outs).last(), Some(&"timeout"));
}

#[test]
fn the_session_round_trip_in_canonical_json() {
    let options = json!({"url": "ws://127.0.0.1:9/ws", "userId": "ann"});
    let mut s = Session::new(&options.to_string(), 1.0, 0.0).unwrap();
    s.subscribe(0.0, "*", None).unwrap();
    s.connect(0.0).unwrap();
    let outs = outputs(&mut s);
    assert_eq!(
        outs[0],
        json!({"kind": "open_transport", "url": "ws://127.0.0.1:9/ws", "attempt": 0})
    );
    s.transport_opened(3.5).unwrap();
    let hello = outputs(&mut s);
    assert_eq!(hello[0]["kind"], "transmit");
    assert!(hello[0]["text"]
        .as_str()
        .unwrap()
        .contains(r#""userId":"ann""#));
    s.frame(4.0, r#"{"type":"welcome","data":{"sessionId":"s1"}}"#)
        .unwrap();
    s.drain();
    let id = s
        .send(
            5.0,
            &json!({"type": "chat", "data": {"projectId": "kept"}, "projectId": 3}).to_string(),
        )
        .unwrap();
    let sent = outputs(&mut s);
    let text: Value = serde_json::from_str(sent[0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(text["projectId"], 3, "top-level option renamed");
    assert_eq!(
        text["data"],
        json!({"projectId": "kept"}),
        "data is the application's"
    );
    assert_eq!(text["id"], id);
    s.frame(
        6.0,
        r#"{"type":"chat","data":1,"projectId":2,"epoch":"e","offset":1}"#,
    )
    .unwrap();
    let got = outputs(&mut s);
    assert_eq!(got[0]["kind"], "message");
    assert_eq!(got[0]["message"]["data"], 1);
    assert!(s.poll_timeout().is_some());
    let stats: Value = serde_json::from_str(&s.stats()).unwrap();
    assert_eq!(stats["messages_delivered"], 1);
}

#[test]
fn every_refusal_carries_the_cores_code() {
    let code = |r: Result<Session>| r.err().map(|f| f.code);
    assert_eq!(
        code(Session::new(r#"{"url":"ftp://x"}"#, 1.0, 0.0)).as_deref(),
        Some("invalid_config")
    );
    assert_eq!(
        code(Session::new(r#"{"url":"ws://x/ws","nope":1}"#, 1.0, 0.0)).as_deref(),
        Some("invalid_config")
    );
    assert_eq!(
        code(Session::new("{", 1.0, 0.0)).as_deref(),
        Some("invalid_argument")
    );
    assert_eq!(
        code(Session::new(r#"{"url":"ws://x/ws"}"#, -1.0, 0.0)).as_deref(),
        Some("invalid_argument")
    );
    assert_eq!(
        code(Session::new(r#"{"url":"ws://x/ws"}"#, 1.0, f64::NAN)).as_deref(),
        Some("invalid_argument")
    );
    let mut s = open_session();
    let refused = |r: std::result::Result<String, Failure>| r.unwrap_err().code;
    assert_eq!(
        refused(s.send(20.0, r#"{"type":"ping","data":1}"#)),
        "reserved_type"
    );
    assert_eq!(
        refused(s.send(20.0, r#"{"type":"x","bogus":1}"#)),
        "invalid_message"
    );
    assert_eq!(refused(s.send(20.0, "[")), "invalid_argument");
    assert_eq!(
        s.join_project(20.0, 1.5).unwrap_err().code,
        "invalid_argument"
    );
    assert_eq!(
        s.join_project(20.0, -3.0).unwrap_err().code,
        "invalid_argument"
    );
    assert_eq!(s.connect(20.0).unwrap_err().code, "already_active");
    assert_eq!(
        s.interrupt_stream(20.0, "nope").unwrap_err().code,
        "unknown_stream"
    );
    assert_eq!(
        s.handle_input(20.0, r#"{"kind":"explode"}"#)
            .unwrap_err()
            .code,
        "invalid_input"
    );
    assert_eq!(
        s.restore_outbox(20.0, "{}").unwrap_err().code,
        "invalid_snapshot"
    );
    let f = s.send(20.0, r#"{"type":"ping"}"#).unwrap_err();
    let thrown: Value = serde_json::from_str(&f.to_json()).unwrap();
    assert_eq!(thrown["code"], "reserved_type");
    assert!(thrown["message"].as_str().unwrap().contains("ping"));
}

#[test]
fn inputs_in_canonical_json_and_outcomes_back() {
    let mut s = open_session();
    let sub = s
        .handle_input(20.0, r#"{"kind":"subscribe","pattern":"chat*"}"#)
        .unwrap();
    assert_eq!(sub, "1");
    let id = s
        .handle_input(20.0, r#"{"kind":"send","type":"chat","data":2}"#)
        .unwrap();
    assert!(id.starts_with('"'));
    assert_eq!(
        s.handle_input(20.0, r#"{"kind":"timeout"}"#).unwrap(),
        "null"
    );
    s.join_project(20.0, 4.0).unwrap();
    assert_eq!(s.presence(4.0).unwrap(), "[]");
    assert_eq!(s.typing_users(4.0).unwrap(), "[]");
    assert!(is_terminal_state("failed").unwrap());
    assert!(!is_terminal_state("unauthorized").unwrap());
    assert!(is_final_stream_state("interrupted").unwrap());
    assert_eq!(
        is_terminal_state("bogus").unwrap_err().code,
        "invalid_argument"
    );
}

#[test]
fn golden_traces_replay_exactly_as_the_rust_replay_prints() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../core/tests/traces");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let want = std::fs::read_to_string(path.with_extension("out")).unwrap();
        assert_eq!(replay_trace(&text).unwrap(), want, "{}", path.display());
        checked += 1;
    }
    assert!(checked >= 3);
    assert_eq!(replay_trace("{}").unwrap_err().code, "invalid_trace");
}

#[test]
fn recording_gives_a_trace_that_replays() {
    let options = json!({"url": "ws://127.0.0.1:9/ws"});
    let mut s = Session::new(&options.to_string(), 3.0, 0.0).unwrap();
    s.start_recording();
    s.connect(0.0).unwrap();
    s.transport_opened(2.0).unwrap();
    s.transport_closed(9.0, None, "").unwrap();
    let live: Vec<String> = outputs(&mut s).iter().map(Value::to_string).collect();
    assert!(live.iter().any(|o| o.contains("closed by peer (1005)")));
    let trace = s.trace().unwrap();
    let replayed = replay_trace(&trace).unwrap();
    assert!(
        replayed.contains(r#""reason":"closed by peer (1005)""#),
        "{replayed}"
    );
}

/// Writes `text` where the JS layer would (`frameBuffer`), then `receive`s it.
fn receive(s: &mut Session, now: f64, text: &str) -> f64 {
    s.frame_buffer(text.len() * 3);
    s.input[..text.len()].copy_from_slice(text.as_bytes());
    s.receive(now, text.len(), 0.0).unwrap()
}

#[test]
fn receive_is_frame_then_drain_with_the_frames_message_as_numbers() {
    let mut a = open_session();
    let mut b = open_session();
    for s in [&mut a, &mut b] {
        s.subscribe(11.0, "*", None).unwrap();
        s.subscribe(11.0, "chat", None).unwrap();
        s.join_project(11.0, 3.0).unwrap();
        let joined = r#"{"type":"project_joined","data":{"epoch":"e","offset":0},"projectId":3}"#;
        s.frame(11.0, joined).unwrap();
        s.drain();
    }
    let text = r#"{"type":"chat","data":{"x":1},"projectId":3,"epoch":"e","offset":1}"#;
    a.frame(12.0, text).unwrap();
    let want = outputs(&mut a);
    assert_eq!(kinds(&want), ["message", "timeout"]);
    assert_eq!(receive(&mut b, 12.0, text), 2.0);
    assert_eq!(b.result[0], want[1]["deadline"].as_f64().unwrap());
    assert_eq!(b.result[1], 0.0, "nothing to report");
    assert_eq!(&b.result[2..4], &[1.0, 2.0]);

    // A duplicate: only the timeout.
    assert_eq!(receive(&mut b, 13.0, text), 0.0);
    // Anything else comes as JSON, the frame's message without its envelope.
    let presence = r#"{"type":"presence_state","data":{"members":["bob"]},"projectId":3}"#;
    a.frame(14.0, text).unwrap();
    a.drain();
    a.frame(14.0, presence).unwrap();
    let mut want = outputs(&mut a);
    assert_eq!(receive(&mut b, 14.0, presence), -1.0);
    let got: Vec<Value> = serde_json::from_str(&b.take_received()).unwrap();
    assert_eq!(kinds(&got), ["presence", "message", "timeout"]);
    want[1].as_object_mut().unwrap().remove("message");
    assert_eq!(got, want);
    // A hole in the log: the gap and the rejoin, the message withheld.
    let gap = r#"{"type":"chat","data":2,"projectId":3,"epoch":"e","offset":3}"#;
    a.frame(15.0, gap).unwrap();
    let want = outputs(&mut a);
    assert_eq!(receive(&mut b, 15.0, gap), -1.0);
    let got: Vec<Value> = serde_json::from_str(&b.take_received()).unwrap();
    assert_eq!(kinds(&got), ["gap", "transmit", "timeout"]);
    assert_eq!(got, want);
    assert_eq!(b.take_received(), "", "taken");
    assert_eq!(b.inner.stats(), a.inner.stats());
}

#[test]
fn receive_gives_a_large_input_buffer_back() {
    let mut s = open_session();
    let text = format!(r#"{{"type":"chat","data":"{}"}}"#, "x".repeat(100_000));
    receive(&mut s, 11.0, &text);
    assert!(s.input.len() >= text.len());
    receive(&mut s, 12.0, r#"{"type":"chat","data":1}"#);
    assert!(s.input.len() <= KEEP_INPUT_BYTES);
}
