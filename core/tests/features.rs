//! Scenario tests for the realtime features: typing, agent streams, project sync, presence,
//! auth tokens, rate limiting and outbox persistence, through the scripted server.

use serde_json::json;
use sockline_core::testing::Harness;
use sockline_core::{
    Config, Delivery, Event, Jitter, Output, ProjectState, RateLimitConfig, SendRequest,
    SessionError, State, StreamState, Timestamp,
};

fn config() -> Config {
    let mut c = Config::new("ws://127.0.0.1:9000/ws");
    c.reconnect.jitter = Jitter::None;
    c.user_id = Some("me".into());
    c
}

fn open(c: Config) -> Harness {
    let mut h = Harness::new(c, 3).unwrap();
    h.connect().unwrap();
    assert_eq!(h.state(), State::Open);
    h
}

/// (time, type, data) of every application frame the client transmitted, in order.
fn sent(h: &Harness) -> Vec<(u64, String, serde_json::Value)> {
    h.log()
        .iter()
        .filter_map(|(t, o)| match o {
            Output::Transmit { text } => {
                let v: serde_json::Value = serde_json::from_str(text).unwrap();
                let ty = v["type"].as_str().unwrap().to_string();
                let control = ["hello", "ping", "pong"].contains(&ty.as_str());
                (!control).then(|| (t.as_millis(), ty, v))
            }
            _ => None,
        })
        .collect()
}

fn sent_types(h: &Harness) -> Vec<String> {
    sent(h).into_iter().map(|(_, t, _)| t).collect()
}

fn typing_events(h: &Harness) -> Vec<(u64, Vec<String>)> {
    h.events()
        .iter()
        .filter_map(|e| match e {
            Event::Typing { project_id, users } => Some((*project_id, users.clone())),
            _ => None,
        })
        .collect()
}

fn stream_states(h: &Harness) -> Vec<StreamState> {
    h.events()
        .iter()
        .filter_map(|e| match e {
            Event::Stream { state, .. } => Some(*state),
            _ => None,
        })
        .collect()
}

fn messages_of(h: &Harness, ty: &str) -> usize {
    h.events()
        .iter()
        .filter(|e| matches!(e, Event::Message { message, .. } if message.msg_type == ty))
        .count()
}

fn chunk(stream: &str, seq: u64, delta: &str) -> String {
    json!({"type": "agent_stream_chunk", "data": {"streamId": stream, "seq": seq, "delta": delta}})
        .to_string()
}

fn reconnect(h: &mut Harness) {
    h.server_close(1006, "");
    let wait = h.session.poll_timeout().unwrap().at.ms_since(h.now());
    h.advance(wait);
    assert_eq!(h.state(), State::Open);
}

// ---- typing ------------------------------------------------------------------------------

#[test]
fn local_typing_is_throttled_then_stops_when_idle() {
    let mut h = open(config());
    for t in [0, 1000, 2999] {
        h.advance(t - h.now().as_millis());
        h.with(|s, n| s.start_typing(n, 1)).unwrap();
    }
    h.advance(1);
    h.with(|s, n| s.start_typing(n, 1)).unwrap(); // 3000: a new window
    h.advance(20_000);
    let frames = sent(&h);
    let got: Vec<(u64, &str)> = frames.iter().map(|(t, ty, _)| (*t, ty.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (0, "user_typing_start"),
            (3000, "user_typing_start"),
            (8000, "user_typing_stop")
        ]
    );
    assert_eq!(frames[0].2["data"], json!({"userId": "me"}));
    assert_eq!(frames[0].2["projectId"], json!(1));
}

#[test]
fn explicit_stop_is_sent_once_and_typing_needs_a_user_id() {
    let mut h = open(config());
    h.with(|s, n| s.start_typing(n, 2)).unwrap();
    h.with(|s, n| s.stop_typing(n, 2)).unwrap();
    h.with(|s, n| s.stop_typing(n, 2)).unwrap();
    h.advance(10_000);
    assert_eq!(
        sent_types(&h),
        vec!["user_typing_start", "user_typing_stop"]
    );

    let mut c = config();
    c.user_id = None;
    let mut h = open(c);
    assert_eq!(
        h.with(|s, n| s.start_typing(n, 1)),
        Err(SessionError::NoUserId)
    );
}

#[test]
fn typing_is_never_queued_or_replayed() {
    let mut h = open(config());
    h.server_close(1006, "");
    h.with(|s, n| s.start_typing(n, 1)).unwrap();
    h.advance(2_000);
    assert_eq!(h.state(), State::Open);
    assert!(sent_types(&h).is_empty());
}

#[test]
fn remote_typists_expire_at_the_moment_of_expiry() {
    let mut h = open(config());
    let start = |u: &str| {
        json!({"type": "user_typing_start", "projectId": 1, "data": {"userId": u}}).to_string()
    };
    h.inject(&start("bob"));
    h.inject(&start("me")); // our own echo
    h.advance(4_000);
    h.inject(&start("bob")); // refresh: no change event
    h.inject(&start("ann"));
    assert_eq!(
        typing_events(&h),
        vec![
            (1, vec!["bob".into()]),
            (1, vec!["ann".into(), "bob".into()])
        ]
    );
    h.take_log();
    h.advance(6_000); // both expire at 10 000
    let log = h.take_log();
    let expiry: Vec<_> = log
        .iter()
        .filter(|(_, o)| matches!(o, Output::Event(Event::Typing { .. })))
        .collect();
    assert_eq!(expiry.len(), 1);
    assert_eq!(expiry[0].0, Timestamp::from_millis(10_000));
    assert_eq!(h.session.typing_users(1), Vec::<String>::new());
}

#[test]
fn remote_stop_and_disconnect_clear_typists() {
    let mut h = open(config());
    for u in ["bob", "cy"] {
        h.inject(
            &json!({"type": "user_typing_start", "projectId": 4, "data": {"userId": u}})
                .to_string(),
        );
    }
    h.inject(
        &json!({"type": "user_typing_stop", "projectId": 4, "data": {"userId": "bob"}}).to_string(),
    );
    h.server_close(1006, "");
    assert_eq!(
        typing_events(&h),
        vec![
            (4, vec!["bob".into()]),
            (4, vec!["bob".into(), "cy".into()]),
            (4, vec!["cy".into()]),
            (4, vec![])
        ]
    );
}

// ---- agent streams -----------------------------------------------------------------------

#[test]
fn stream_assembles_in_order_and_still_routes_messages() {
    let mut h = open(config());
    h.with(|s, n| s.subscribe(n, "agent_stream_*", None))
        .unwrap();
    h.inject(r#"{"type":"agent_stream_start","data":{"streamId":"a"}}"#);
    h.inject(&chunk("a", 1, "lo "));
    h.inject(&chunk("a", 0, "Hel"));
    h.inject(&chunk("a", 0, "Hel"));
    h.inject(&chunk("a", 2, "wörld"));
    h.inject(r#"{"type":"agent_stream_end","data":{"streamId":"a","seq":3}}"#);
    assert_eq!(h.session.stream_content("a"), Some("Hello wörld"));
    assert_eq!(
        stream_states(&h),
        vec![
            StreamState::Started,
            StreamState::Delta,
            StreamState::Delta,
            StreamState::Delta,
            StreamState::Done
        ]
    );
    let last_len = h.events().iter().rev().find_map(|e| match e {
        Event::Stream { len, .. } => Some(*len),
        _ => None,
    });
    assert_eq!(last_len, Some("Hello wörld".len()));
    assert_eq!(
        messages_of(&h, "agent_stream_chunk"),
        3,
        "the duplicate chunk is withheld"
    );
}

#[test]
fn stream_resumes_after_reconnect_seamlessly() {
    let mut h = open(config());
    h.with(|s, n| s.join_project(n, 9)).unwrap();
    h.server.auto_ack = false;
    h.send(
        SendRequest::new("note", json!(1))
            .id("alo")
            .delivery(Delivery::AtLeastOnce),
    )
    .unwrap();
    h.inject(&chunk("s", 0, "one "));
    h.inject(&chunk("s", 1, "two "));
    h.server_close(1006, "");
    h.send(SendRequest::new("chat", json!("queued")).id("later"))
        .unwrap();
    h.take_log();
    h.advance(1_000);
    // Order after welcome: re-joins, stream resumes, at-least-once resends, then the rest.
    let after: Vec<(String, serde_json::Value)> =
        sent(&h).into_iter().map(|(_, t, v)| (t, v)).collect();
    let types: Vec<&str> = after.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        vec!["project_subscribe", "agent_stream_resume", "note", "chat"]
    );
    assert_eq!(after[1].1["data"], json!({"streamId": "s", "fromSeq": 2}));
    h.inject(&chunk("s", 1, "two "));
    h.inject(&chunk("s", 2, "three"));
    h.inject(r#"{"type":"agent_stream_end","data":{"streamId":"s"}}"#);
    assert_eq!(h.session.stream_content("s"), Some("one two three"));
    let deltas: String = h
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Stream { delta: Some(d), .. } => Some(d.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, "three", "only new content after the resume");
}

#[test]
fn interrupt_sends_and_ignores_later_chunks() {
    let mut h = open(config());
    h.inject(&chunk("x", 0, "abc"));
    h.with(|s, n| s.interrupt_stream(n, "x")).unwrap();
    h.inject(&chunk("x", 1, "def"));
    assert_eq!(h.session.stream_content("x"), Some("abc"));
    assert_eq!(stream_states(&h).last(), Some(&StreamState::Interrupted));
    let frames = sent(&h);
    assert_eq!(frames.last().unwrap().1, "agent_stream_interrupt");
    assert_eq!(frames.last().unwrap().2["data"], json!({"streamId": "x"}));
    assert_eq!(
        h.with(|s, n| s.interrupt_stream(n, "x")),
        Err(SessionError::StreamFinished("x".into()))
    );
    assert_eq!(
        h.with(|s, n| s.interrupt_stream(n, "nope")),
        Err(SessionError::UnknownStream("nope".into()))
    );
}

#[test]
fn stall_is_reported_at_the_stall_deadline_and_cap_fails_the_stream() {
    let mut c = config();
    c.streams.max_bytes = 8;
    let mut h = open(c);
    h.inject(&chunk("a", 0, "1234"));
    h.take_log();
    h.advance(30_000);
    let stalled: Vec<u64> = h
        .log()
        .iter()
        .filter(|(_, o)| {
            matches!(
                o,
                Output::Event(Event::Stream {
                    state: StreamState::Stalled,
                    ..
                })
            )
        })
        .map(|(t, _)| t.as_millis())
        .collect();
    assert_eq!(stalled, vec![30_000]);
    h.inject(&chunk("a", 1, "56789"));
    let failed = h.events().into_iter().find_map(|e| match e {
        Event::Stream {
            state: StreamState::Failed,
            error,
            ..
        } => error.clone(),
        _ => None,
    });
    assert!(failed.unwrap().contains("max_bytes"));
}

// ---- project sync ------------------------------------------------------------------------

fn update(project: u64, version: u64) -> String {
    json!({"type": "project_updated", "projectId": project, "data": {"version": version, "name": "x"}}).to_string()
}

#[test]
fn versions_gaps_sync_requests_and_snapshots() {
    let mut h = open(config());
    h.with(|s, n| s.subscribe(n, "project_updated", Some(1)))
        .unwrap();
    h.with(|s, n| s.join_project(n, 1)).unwrap();
    for v in [1, 2, 2, 5, 4] {
        h.inject(&update(1, v));
    }
    let delivered: Vec<u64> = h
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Message { message, .. } => message.data_value()["version"].as_u64(),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, vec![1, 2, 5]);
    // A version gap is the project's state going stale (`gap` names holes in the log).
    assert!(!h.events().iter().any(|e| matches!(e, Event::Gap { .. })));
    assert!(h.events().contains(&&Event::Project {
        project_id: 1,
        version: 5,
        state: ProjectState::Stale
    }));
    let frames = sent(&h);
    assert_eq!(frames[0].1, "project_subscribe");
    assert_eq!(frames[1].1, "project_sync_request");
    assert_eq!(frames[1].2["projectId"], json!(1));
    assert_eq!(frames[1].2["data"], json!({"fromVersion": 3}));
    assert_eq!(h.session.stats().stale_versions, 2);
    h.inject(
        &json!({"type": "project_snapshot", "projectId": 1, "data": {"version": 4}}).to_string(),
    );
    assert!(h.events().contains(&&Event::Project {
        project_id: 1,
        version: 4,
        state: ProjectState::Synced
    }));
    h.inject(&update(1, 5));
    assert_eq!(h.session.project_version(1), Some(5));
}

#[test]
fn joined_projects_are_rejoined_after_every_reconnect_and_left_for_good() {
    let mut h = Harness::new(config(), 3).unwrap();
    h.with(|s, n| s.join_project(n, 7)).unwrap();
    h.with(|s, n| s.join_project(n, 3)).unwrap();
    h.connect().unwrap();
    reconnect(&mut h);
    h.with(|s, n| s.leave_project(n, 7));
    reconnect(&mut h);
    let frames: Vec<(String, Option<u64>)> = sent(&h)
        .into_iter()
        .map(|(_, t, v)| (t, v["projectId"].as_u64()))
        .collect();
    let want: Vec<(&str, u64)> = vec![
        ("project_subscribe", 3),
        ("project_subscribe", 7),
        ("project_subscribe", 3),
        ("project_subscribe", 7),
        ("project_unsubscribe", 7),
        ("project_subscribe", 3),
    ];
    let want: Vec<(String, Option<u64>)> = want
        .into_iter()
        .map(|(t, p)| (t.to_string(), Some(p)))
        .collect();
    assert_eq!(frames, want);
}

// ---- presence ----------------------------------------------------------------------------

#[test]
fn presence_from_state_and_diffs_cleared_on_disconnect() {
    let mut h = open(config());
    h.with(|s, n| s.join_project(n, 2)).unwrap();
    h.inject(
        &json!({"type": "presence_state", "projectId": 2, "data": {"members": ["zed", "amy"]}})
            .to_string(),
    );
    h.inject(&json!({"type": "presence_diff", "projectId": 2, "data": {"joins": ["bo"], "leaves": ["zed"]}}).to_string());
    h.inject(&json!({"type": "presence_diff", "projectId": 2, "data": {"joins": ["bo"], "leaves": ["bo"]}}).to_string());
    assert_eq!(h.session.presence(2), vec!["amy", "bo"]);
    h.server_close(1006, "");
    let lists: Vec<Vec<String>> = h
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Presence { members, .. } => Some(members.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        lists,
        vec![
            vec!["amy".to_string(), "zed".into()],
            vec!["amy".into(), "bo".into()],
            vec![]
        ]
    );
}

// ---- auth --------------------------------------------------------------------------------

fn hellos(h: &Harness) -> Vec<serde_json::Value> {
    h.transmitted()
        .iter()
        .filter(|t| t.contains(r#""type":"hello""#))
        .map(|t| serde_json::from_str(t).unwrap())
        .collect()
}

#[test]
fn token_goes_in_hello_and_a_new_one_reconnects_at_once() {
    let mut c = config();
    c.token = Some(sockline_core::Secret::new("t1"));
    let mut h = open(c);
    assert_eq!(hellos(&h)[0]["data"]["token"], json!("t1"));
    assert!(!h
        .log()
        .iter()
        .any(|(_, o)| matches!(o, Output::OpenTransport { url, .. } if url.contains("t1"))));
    h.server_close(4001, "expired");
    assert_eq!(h.state(), State::Unauthorized);
    h.advance(10_000);
    assert_eq!(h.server.opens(), 1);
    h.with(|s, n| s.set_token(n, "t2", None)).unwrap();
    assert_eq!(h.state(), State::Open);
    assert_eq!(hellos(&h)[1]["data"]["token"], json!("t2"));
    assert!(matches!(
        h.with(|s, n| s.set_token(n, "", None)),
        Err(SessionError::InvalidToken(_))
    ));
}

#[test]
fn refresh_due_falls_margin_before_expiry() {
    let mut h = open(config());
    h.with(|s, n| s.set_token(n, "t", Some(Timestamp::from_millis(100_000))))
        .unwrap();
    h.take_log();
    h.advance(100_000);
    let due: Vec<u64> = h
        .log()
        .iter()
        .filter(|(_, o)| matches!(o, Output::Event(Event::TokenRefreshDue { .. })))
        .map(|(t, _)| t.as_millis())
        .collect();
    assert_eq!(due, vec![70_000]);
}

#[test]
fn tokens_never_leak_into_debug_or_traces() {
    let mut c = config();
    c.token = Some(sockline_core::Secret::new("hunter2"));
    let mut h = Harness::new(c, 1).unwrap();
    h.session.start_recording();
    h.connect().unwrap();
    h.with(|s, n| s.set_token(n, "hunter3", None)).unwrap();
    assert!(!format!("{:?}", h.session).contains("hunter"));
    let trace = h.session.trace().unwrap().to_json();
    assert!(!trace.contains("hunter"), "{trace}");
    // The replay prints transmitted frames verbatim: hello carries the (redacted) config token.
    let lines = sockline_core::Trace::from_json(&trace)
        .unwrap()
        .replay()
        .unwrap();
    assert!(lines
        .iter()
        .any(|l| l.contains(r#"\"token\":\"<redacted>\""#)));
}

#[test]
fn unauthorized_error_waits_for_token() {
    let mut h = open(config());
    h.inject(r#"{"type":"error","data":{"code":"unauthorized","message":"nope"}}"#);
    assert_eq!(h.state(), State::Unauthorized);
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::TokenRequired { .. })));
}

// ---- rate limiting -----------------------------------------------------------------------

#[test]
fn bucket_paces_app_messages_but_not_control_frames() {
    let mut c = config();
    c.rate_limit = RateLimitConfig::Bucket {
        per_sec: 2,
        burst: 2,
    };
    c.heartbeat.interval_ms = 100;
    let mut h = open(c);
    for i in 0..5 {
        h.send(SendRequest::new("chat", json!(i))).unwrap();
    }
    h.advance(2_000);
    let times: Vec<u64> = sent(&h).iter().map(|(t, _, _)| *t).collect();
    assert_eq!(times, vec![0, 0, 500, 1000, 1500]);
    let pings = h
        .transmitted()
        .iter()
        .filter(|t| t.contains(r#""type":"ping""#))
        .count();
    assert!(pings >= 19, "pings are exempt: {pings}");
}

#[test]
fn bucket_applies_to_the_flush_after_welcome() {
    let mut c = config();
    c.rate_limit = RateLimitConfig::Bucket {
        per_sec: 1,
        burst: 1,
    };
    let mut h = Harness::new(c, 3).unwrap();
    h.with(|s, n| s.join_project(n, 1)).unwrap();
    for i in 0..2 {
        h.send(SendRequest::new("chat", json!(i))).unwrap();
    }
    h.connect().unwrap();
    h.advance(5_000);
    let got: Vec<(u64, String)> = sent(&h).into_iter().map(|(t, ty, _)| (t, ty)).collect();
    assert_eq!(
        got,
        vec![
            (0, "project_subscribe".into()),
            (1000, "chat".into()),
            (2000, "chat".into())
        ]
    );
}

// ---- outbox persistence ------------------------------------------------------------------

#[test]
fn snapshot_survives_a_restart_with_ids_kept() {
    let mut h = open(config());
    h.server.auto_ack = false;
    h.send(
        SendRequest::new("order", json!(1))
            .id("o1")
            .delivery(Delivery::AtLeastOnce),
    )
    .unwrap();
    h.server_close(1006, "");
    h.with(|s, n| s.offline(n));
    h.send(SendRequest::new("chat", json!(2)).id("c2").ttl_ms(60_000))
        .unwrap();
    h.send(SendRequest::new("typing", json!(0)).delivery(Delivery::Volatile))
        .unwrap();
    let snap = h.session.snapshot_outbox();
    // "Restart": a new session restores it and connects.
    let mut h2 = Harness::new(config(), 4).unwrap();
    assert_eq!(h2.with(|s, n| s.restore_outbox(n, &snap)), Ok(2));
    assert_eq!(h2.session.snapshot_outbox(), snap);
    h2.connect().unwrap();
    let ids: Vec<String> = h2
        .server
        .received_app()
        .iter()
        .map(|e| e.id.clone().unwrap())
        .collect();
    assert_eq!(ids, vec!["o1", "c2"]);
    assert_eq!(h2.session.stats().resent, 1);
}

#[test]
fn bad_snapshots_are_refused_with_clear_errors() {
    let mut h = Harness::new(config(), 1).unwrap();
    for bad in ["", "{}", "[1]", r#"{"version":1,"messages":[{"id":"a"}]}"#] {
        let err = h.with(|s, n| s.restore_outbox(n, bad)).unwrap_err();
        assert!(
            matches!(err, SessionError::InvalidSnapshot(_)),
            "{bad}: {err}"
        );
    }
    let huge = format!(
        r#"{{"version":1,"messages":[],"pad":"{}"}}"#,
        "x".repeat(3 << 20)
    );
    let err = h.with(|s, n| s.restore_outbox(n, &huge)).unwrap_err();
    assert!(
        err.to_string().contains("larger than any snapshot"),
        "{err}"
    );
    assert_eq!(h.session.stats().queue_depth, 0);
}
