use super::*;
use serde_json::json;

fn outputs(h: &mut Hub) -> Vec<Value> {
    serde_json::from_str(&h.drain()).expect("drain is a JSON array")
}

/// The frames sent to `conn` in `outs`, parsed.
fn sent_to(outs: &[Value], conn: u64) -> Vec<Value> {
    outs.iter()
        .filter(|o| o["kind"] == "send" && o["conn"] == conn)
        .map(|o| serde_json::from_str(o["text"].as_str().unwrap()).unwrap())
        .collect()
}

fn hub(options: Value) -> Hub {
    Hub::new(&options.to_string(), 3.0).unwrap()
}

fn hello(user: &str) -> String {
    json!({"type": "hello", "data": {"protocol": 2, "userId": user}}).to_string()
}

/// Accepts a connection, says hello as `user` and joins `project`; returns the conn and the
/// session id.
fn member(h: &mut Hub, now: f64, user: &str, project: u64) -> (f64, String) {
    let conn = h.accept(now).unwrap();
    h.frame(now, conn, &hello(user)).unwrap();
    let welcome = sent_to(&outputs(h), conn as u64).remove(0);
    assert_eq!(welcome["type"], "welcome");
    let sub = json!({"type": "project_subscribe", "data": {}, "projectId": project});
    h.frame(now, conn, &sub.to_string()).unwrap();
    h.drain();
    let sid = welcome["data"]["sessionId"].as_str().unwrap().to_string();
    (conn, sid)
}

#[test]
fn two_connections_relay_in_canonical_json_and_the_drain_ends_with_the_deadline() {
    let mut h = hub(json!({"idleTimeoutMs": 60000}));
    let (ann, _) = member(&mut h, 0.0, "ann", 7);
    let (bob, _) = member(&mut h, 1.0, "bob", 7);
    assert_eq!((ann, bob), (1.0, 2.0), "ids are handed out in order");
    let note = json!({"type": "note", "data": {"n": 1}, "id": "m1", "projectId": 7});
    h.frame(10.0, ann, &note.to_string()).unwrap();
    let outs = outputs(&mut h);
    let relayed = &sent_to(&outs, 2)[0];
    assert_eq!(
        (&relayed["type"], &relayed["data"]),
        (&json!("note"), &json!({"n": 1}))
    );
    assert_eq!(relayed["offset"], 1, "{relayed}");
    assert_eq!(
        sent_to(&outs, 1)[0],
        json!({"type": "ack", "data": {"id": "m1", "projectId": 7, "epoch": relayed["epoch"], "offset": 1}})
    );
    // The last object names the next deadline: no later than bob's idle timeout, 60 s after
    // his last frame (the hub's bound may be earlier: the hello deadlines it knew at accept).
    let deadline = outs.last().unwrap()["deadline"].as_f64().unwrap();
    assert_eq!(outs.last().unwrap()["kind"], "timeout");
    assert!(deadline <= 60001.0, "{deadline}");
    assert_eq!(h.poll_timeout(), Some(deadline));
    h.timeout(deadline).unwrap();
    assert!(
        outputs(&mut h).iter().all(|o| o["kind"] != "close"),
        "nobody is due yet"
    );
    assert_eq!(h.poll_timeout(), Some(60001.0), "then bob's, exactly");
    assert!(h.relayed() >= 1.0);
    assert_eq!((h.connections(), h.sessions()), (2.0, 2.0));
}

#[test]
fn a_closed_connection_s_session_resumes_and_rejoins_from_its_position_with_what_it_missed() {
    let mut h = hub(json!({}));
    let (ann, _) = member(&mut h, 0.0, "ann", 1);
    let (bob, bob_sid) = member(&mut h, 0.0, "bob", 1);
    h.drain();
    h.closed(5.0, bob).unwrap();
    let note = json!({"type": "note", "data": 9, "projectId": 1, "id": "n9"});
    h.frame(6.0, ann, &note.to_string()).unwrap();
    let ack = sent_to(&outputs(&mut h), 1)
        .into_iter()
        .find(|f| f["type"] == "ack")
        .expect("the note is acked");
    let epoch = ack["data"]["epoch"].clone();
    assert!(epoch.is_string(), "{ack}");
    let again = h.accept(20.0).unwrap();
    assert_eq!(again, 3.0);
    let resume =
        json!({"type": "hello", "data": {"protocol": 2, "userId": "bob", "sessionId": bob_sid}});
    h.frame(20.0, again, &resume.to_string()).unwrap();
    let rejoin =
        json!({"type": "project_subscribe", "data": {"epoch": epoch, "offset": 0}, "projectId": 1});
    h.frame(20.0, again, &rejoin.to_string()).unwrap();
    let frames = sent_to(&outputs(&mut h), 3);
    assert_eq!(frames[0]["type"], "welcome");
    assert_eq!(frames[0]["data"]["resumed"], true);
    assert_eq!(frames[1]["type"], "project_joined");
    assert_eq!(frames[1]["data"]["recovered"], true);
    assert!(
        frames.iter().any(|f| f["type"] == "note" && f["data"] == 9),
        "{frames:?}"
    );
}

#[test]
fn shutdown_timeouts_and_transport_limits_come_from_the_core() {
    let mut h = hub(json!({"maxFrameBytes": 10, "helloTimeoutMs": 1000}));
    assert_eq!(h.max_frame_bytes(), 256.0, "the core's minimum applies");
    let (a, b) = (h.accept(0.0).unwrap(), h.accept(0.0).unwrap());
    h.frame(0.0, a, &hello("ann")).unwrap();
    h.drain();
    // b never says hello: 1008 at the hello timeout, fed as `timeout`.
    assert_eq!(h.poll_timeout(), Some(1000.0));
    h.timeout(1000.0).unwrap();
    let outs = outputs(&mut h);
    assert_eq!(
        outs[0],
        json!({"kind": "close", "conn": b as u64, "code": 1008, "reason": "hello timeout"})
    );
    h.closed(1000.0, b).unwrap();
    h.shutdown(1001.0).unwrap();
    let outs = outputs(&mut h);
    assert_eq!(
        outs[0],
        json!({"kind": "close", "conn": a as u64, "code": 1012, "reason": r#"{"retryAfterMs":0,"spreadMs":3000}"#})
    );
    let c = h.accept(1002.0).unwrap();
    h.binary_frame(1002.0, c, 4.0).unwrap();
    assert_eq!(outputs(&mut h)[0]["code"], 1003);
    let d = h.accept(1002.0).unwrap();
    h.frame_too_large(1002.0, d).unwrap();
    assert_eq!(outputs(&mut h)[0]["code"], 1009);
    let e = h.accept(1002.0).unwrap();
    h.frame(1002.0, e, &hello("eve")).unwrap();
    h.write_blocked(1003.0, e).unwrap();
    let outs = outputs(&mut h);
    assert!(outs.iter().any(|o| o["code"] == 4009), "{outs:?}");
}

#[test]
fn options_reach_the_core_settings() {
    // A token is required.
    let mut h = hub(json!({"token": "s3cret"}));
    let c = h.accept(0.0).unwrap();
    h.frame(0.0, c, &hello("ann")).unwrap();
    let outs = outputs(&mut h);
    assert_eq!(sent_to(&outs, 1)[0]["data"]["code"], "unauthorized");
    assert_eq!(outs[1]["code"], 4001);
    // No agent: prompts are refused by id.
    let mut h = hub(json!({"agentChunks": null, "rateLimit": "off"}));
    let c = h.accept(0.0).unwrap();
    h.frame(0.0, c, &hello("ann")).unwrap();
    h.drain();
    let prompt = json!({"type": "agent_prompt", "data": {"prompt": "hi"}, "id": "p1"});
    h.frame(1.0, c, &prompt.to_string()).unwrap();
    let err = &sent_to(&outputs(&mut h), 1)[0];
    assert_eq!(
        (&err["data"]["code"], &err["data"]["id"]),
        (&json!("unsupported"), &json!("p1"))
    );
    // A scripted agent of two chunks, 10 ms apart.
    let mut h = hub(json!({"agentChunks": 2, "agentChunkMs": 10}));
    let c = h.accept(0.0).unwrap();
    h.frame(0.0, c, &hello("ann")).unwrap();
    h.frame(0.0, c, &prompt.to_string()).unwrap();
    h.drain();
    assert_eq!(h.poll_timeout(), Some(10.0));
    for at in [10.0, 20.0] {
        h.timeout(at).unwrap();
        h.drain();
    }
    assert_eq!(h.relayed(), 4.0, "start, two chunks, end");
    // Chaos: every connection dropped abruptly 5 ms after it opened.
    let mut h = hub(json!({"chaos": {"dropMs": [5, 5]}}));
    let c = h.accept(0.0).unwrap();
    h.timeout(5.0).unwrap();
    assert_eq!(
        outputs(&mut h)[0],
        json!({"kind": "abort", "conn": c as u64})
    );
    let mut h = hub(
        json!({"chaos": {"stallMs": [1, 2], "closeCode": 1012, "corrupt": 0.5, "pongDelayMs": 3, "swallowPongs": false, "seed": 8}}),
    );
    let c = h.accept(0.0).unwrap();
    h.timeout(2.0).unwrap();
    assert_eq!(
        outputs(&mut h)[0],
        json!({"kind": "stall", "conn": c as u64})
    );
    // The restart window a shutdown announces.
    let mut h = hub(json!({"restartRetryAfterMs": 500, "restartSpreadMs": 1500}));
    let c = h.accept(0.0).unwrap();
    h.shutdown(1.0).unwrap();
    assert_eq!(
        outputs(&mut h)[0],
        json!({"kind": "close", "conn": c as u64, "code": 1012, "reason": r#"{"retryAfterMs":500,"spreadMs":1500}"#})
    );
    assert!(Hub::new(r#"{"restartSpreadMs": -1}"#, 0.0).is_err());
}

#[test]
fn the_same_seed_gives_the_same_session_ids() {
    let ids = |seed: f64| {
        let mut h = Hub::new("{}", seed).unwrap();
        let c = h.accept(0.0).unwrap();
        h.frame(0.0, c, &hello("ann")).unwrap();
        h.drain()
    };
    assert_eq!(ids(5.0), ids(5.0));
    assert_ne!(ids(5.0), ids(6.0));
}

#[test]
fn canonical_inputs_are_accepted_and_never_reuse_an_id() {
    let mut h = hub(json!({}));
    h.handle_input(0.0, r#"{"kind":"accepted","conn":41}"#)
        .unwrap();
    h.handle_input(
        0.0,
        &json!({"kind": "frame", "conn": 41, "text": hello("ann")}).to_string(),
    )
    .unwrap();
    assert_eq!(sent_to(&outputs(&mut h), 41)[0]["type"], "welcome");
    assert_eq!(h.accept(1.0).unwrap(), 42.0);
    assert_eq!(
        h.handle_input(0.0, r#"{"kind":"explode"}"#)
            .unwrap_err()
            .code,
        "invalid_input"
    );
}

#[test]
fn every_refusal_is_typed() {
    let code = |options: &str, seed: f64| Hub::new(options, seed).err().map(|f| f.code);
    for bad in [
        "{",
        "[]",
        r#"{"sessionTtl": 5}"#,
        r#"{"latencyMs": 5}"#,
        r#"{"token": 5}"#,
        r#"{"idleTimeoutMs": -1}"#,
        r#"{"replayCapacity": 1.5}"#,
        r#"{"agentChunks": "many"}"#,
        r#"{"rateLimit": {"bucket": {"perSec": "x"}}}"#,
        r#"{"chaos": {"dropMs": [9, 1]}}"#,
        r#"{"chaos": {"dropMs": 5}}"#,
        r#"{"chaos": {"corrupt": 2}}"#,
        r#"{"chaos": {"closeCode": 70000}}"#,
        r#"{"chaos": {"swallowPongs": 1}}"#,
        r#"{"chaos": {"bogus": 1}}"#,
        r#"{"chaos": 3}"#,
    ] {
        assert_eq!(code(bad, 1.0).as_deref(), Some("invalid_argument"), "{bad}");
    }
    assert_eq!(code("{}", -1.0).as_deref(), Some("invalid_argument"));
    assert_eq!(code("{}", 0.5).as_deref(), Some("invalid_argument"));
    let mut h = hub(json!({}));
    assert_eq!(h.accept(f64::NAN).unwrap_err().code, "invalid_argument");
    assert_eq!(
        h.frame(0.0, -1.0, "{}").unwrap_err().code,
        "invalid_argument"
    );
    assert_eq!(h.closed(0.0, 1.5).unwrap_err().code, "invalid_argument");
    assert_eq!(h.timeout(-3.0).unwrap_err().code, "invalid_argument");
    assert_eq!(
        h.binary_frame(0.0, 1.0, -2.0).unwrap_err().code,
        "invalid_argument"
    );
    // Frames for connections the hub never had change nothing.
    h.frame(0.0, 99.0, &hello("ann")).unwrap();
    h.closed(0.0, 99.0).unwrap();
    assert_eq!(
        outputs(&mut h),
        vec![json!({"kind": "timeout", "deadline": null})]
    );
    let thrown: Value =
        serde_json::from_str(&h.frame(0.0, -1.0, "").unwrap_err().to_json()).unwrap();
    assert_eq!(thrown["code"], "invalid_argument");
}
