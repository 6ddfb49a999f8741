use super::*;
use serde_json::json;

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn hub() -> HubCore<InMemoryBroker> {
    hub_with(HubSettings::default())
}

fn hub_with(settings: HubSettings) -> HubCore<InMemoryBroker> {
    HubCore::new(settings, InMemoryBroker::new(1024, 11), 1)
        .with_agent(Box::new(ScriptedAgent { chunks: 2 }))
}

/// Drains every output up to the timeout.
fn drain<B: Broker>(h: &mut HubCore<B>) -> Vec<HubOutput> {
    let mut out = Vec::new();
    loop {
        match h.poll_output() {
            HubOutput::Timeout { .. } => return out,
            o => out.push(o),
        }
    }
}

fn sent_to(out: &[HubOutput], to: u64) -> Vec<Value> {
    out.iter()
        .filter_map(|a| match a {
            HubOutput::Send { conn, text } if *conn == ConnId(to) => {
                serde_json::from_str(text).ok()
            }
            _ => None,
        })
        .collect()
}

fn closes(out: &[HubOutput]) -> Vec<(u64, u16, String)> {
    out.iter()
        .filter_map(|a| match a {
            HubOutput::Close { conn, code, reason } => Some((conn.0, *code, reason.clone())),
            _ => None,
        })
        .collect()
}

fn feed<B: Broker>(h: &mut HubCore<B>, at: u64, conn: u64, text: &str) -> Vec<HubOutput> {
    h.frame(t(at), ConnId(conn), text);
    drain(h)
}

/// Connects, says hello and joins `project`; returns what the join brought.
fn join<B: Broker>(h: &mut HubCore<B>, conn: u64, user: &str, project: u64) -> Vec<HubOutput> {
    h.accepted(t(0), ConnId(conn));
    let hello = json!({"type": "hello", "data": {"protocol": 2, "userId": user}});
    feed(h, 0, conn, &hello.to_string());
    let sub = json!({"type": "project_subscribe", "data": {}, "projectId": project});
    feed(h, 0, conn, &sub.to_string())
}

#[test]
fn a_hello_for_another_protocol_version_or_a_broken_one_is_refused() {
    for (hello, code) in [
        (
            r#"{"type":"hello","data":{"protocol":1}}"#,
            "unsupported_protocol",
        ),
        (r#"{"type":"hello","data":{}}"#, "unsupported_protocol"),
        (
            r#"{"type":"hello","data":{"protocol":2,"userId":5}}"#,
            "bad_message",
        ),
    ] {
        let mut h = hub();
        h.accepted(t(0), ConnId(1));
        let out = feed(&mut h, 0, 1, hello);
        assert_eq!(sent_to(&out, 1)[0]["data"]["code"], code, "{hello}");
        assert_eq!(closes(&out)[0].1, close::POLICY);
    }
}

#[test]
fn anything_before_hello_closes_with_policy_and_bad_json_is_an_error() {
    let mut h = hub();
    h.accepted(t(0), ConnId(1));
    let out = feed(&mut h, 0, 1, "not json");
    assert_eq!(sent_to(&out, 1)[0]["data"]["code"], "bad_message");
    let out = feed(&mut h, 0, 1, r#"{"type":"chat","data":1}"#);
    assert_eq!(closes(&out), vec![(1, 1008, "hello expected".to_string())]);
    assert!(feed(&mut h, 1, 1, r#"{"type":"hello","data":{"protocol":2}}"#).is_empty());
}

#[test]
fn typing_is_relayed_as_the_connections_user() {
    let mut h = hub();
    join(&mut h, 1, "ann", 5);
    join(&mut h, 2, "bob", 5);
    let spoof = r#"{"type":"user_typing_start","data":{"userId":"bob"},"projectId":5}"#;
    let out = feed(&mut h, 10, 1, spoof);
    let to_bob = sent_to(&out, 2);
    assert_eq!(to_bob.len(), 1);
    assert_eq!(to_bob[0]["data"]["userId"], "ann");
    assert!(to_bob[0].get("seq").is_none(), "typing is never logged");
    assert!(sent_to(&out, 1).is_empty(), "the typist is not echoed");
}

#[test]
fn resuming_an_unknown_stream_fails_it_and_a_finished_one_ends_again() {
    let mut h = hub_with(HubSettings {
        agent_chunk_ms: 10,
        ..HubSettings::default()
    });
    join(&mut h, 1, "ann", 5);
    let unknown = r#"{"type":"agent_stream_resume","data":{"streamId":"gone","fromSeq":3}}"#;
    let out = sent_to(&feed(&mut h, 10, 1, unknown), 1);
    assert_eq!(out[0]["type"], "agent_stream_error");
    assert_eq!(out[0]["data"]["streamId"], "gone");
    let prompt = r#"{"type":"agent_prompt","data":{"prompt":"hi","streamId":"r1"}}"#;
    feed(&mut h, 20, 1, prompt);
    let mut streamed = Vec::new();
    for at in [30, 40, 50, 60] {
        h.handle_timeout(t(at));
        streamed.extend(sent_to(&drain(&mut h), 1));
    }
    let kinds: Vec<&Value> = streamed.iter().map(|v| &v["type"]).collect();
    assert_eq!(
        kinds,
        [
            "agent_stream_chunk",
            "agent_stream_chunk",
            "agent_stream_end"
        ]
    );
    assert_eq!(streamed[2]["data"]["seq"], 2);
    let resume = r#"{"type":"agent_stream_resume","data":{"streamId":"r1","fromSeq":1}}"#;
    let again = sent_to(&feed(&mut h, 70, 1, resume), 1);
    let kinds: Vec<&Value> = again.iter().map(|v| &v["type"]).collect();
    assert_eq!(kinds, ["agent_stream_chunk", "agent_stream_end"]);
    assert_eq!(again[0]["data"]["delta"], streamed[1]["data"]["delta"]);
}

#[test]
fn a_hub_without_an_agent_refuses_prompts_by_id() {
    let mut h = HubCore::new(HubSettings::default(), InMemoryBroker::new(1024, 11), 1);
    join(&mut h, 1, "ann", 5);
    let out = feed(
        &mut h,
        1,
        1,
        r#"{"type":"agent_prompt","id":"p1","data":{"prompt":"hi"}}"#,
    );
    let to_ann = sent_to(&out, 1);
    assert_eq!(to_ann.len(), 1, "refused, not acked: {to_ann:?}");
    assert_eq!(to_ann[0]["data"]["code"], "unsupported");
    assert_eq!(to_ann[0]["data"]["id"], "p1");
}

#[test]
fn a_message_too_big_to_relay_is_refused_not_acked_and_may_come_again() {
    let mut h = hub_with(HubSettings {
        max_frame_bytes: 300,
        ..HubSettings::default()
    });
    join(&mut h, 1, "ann", 5);
    join(&mut h, 2, "bob", 5);
    let big = json!({"type": "note", "id": "m1", "projectId": 5, "data": "x".repeat(240)});
    let out = feed(&mut h, 10, 1, &big.to_string());
    let to_ann = sent_to(&out, 1);
    assert_eq!(to_ann.len(), 1, "a refusal, no ack: {to_ann:?}");
    assert_eq!(to_ann[0]["data"]["code"], "too_large");
    assert_eq!(to_ann[0]["data"]["id"], "m1");
    assert!(sent_to(&out, 2).is_empty(), "nothing relayed");
    // The same id, now small enough, is applied: the refusal was forgotten.
    let small = json!({"type": "note", "id": "m1", "projectId": 5, "data": "x"});
    let out = feed(&mut h, 11, 1, &small.to_string());
    assert_eq!(sent_to(&out, 2).len(), 1);
    assert_eq!(sent_to(&out, 1)[0]["type"], "ack");
}

#[test]
fn silent_and_helloless_connections_time_out_once_and_stop_being_deadlines() {
    let mut h = hub_with(HubSettings {
        hello_timeout_ms: 1_000,
        idle_timeout_ms: 5_000,
        ..HubSettings::default()
    });
    h.accepted(t(0), ConnId(1)); // never says hello
    join(&mut h, 2, "ann", 5); // welcomed at 0
    assert_eq!(h.poll_timeout(), Some(t(1_000)));
    h.handle_timeout(t(1_000));
    assert_eq!(
        closes(&drain(&mut h)),
        vec![(1, 1008, "hello timeout".to_string())]
    );
    // The closing connection is no deadline any more: no tick loop spinning on it.
    assert_eq!(h.poll_timeout(), Some(t(5_000)));
    h.handle_timeout(t(1_001));
    assert!(closes(&drain(&mut h)).is_empty());
    // A frame pushes ann's idle deadline on (the hub may wake at the old one, finds nothing
    // due and names the new one); silence then ends her connection.
    feed(&mut h, 3_000, 2, r#"{"type":"ping","data":{"nonce":1}}"#);
    assert!(h.poll_timeout().is_some_and(|d| d <= t(8_000)));
    h.handle_timeout(t(5_000));
    assert!(closes(&drain(&mut h)).is_empty());
    assert_eq!(h.poll_timeout(), Some(t(8_000)));
    h.handle_timeout(t(7_999));
    assert!(closes(&drain(&mut h)).is_empty());
    h.handle_timeout(t(8_000));
    assert_eq!(
        closes(&drain(&mut h)),
        vec![(2, 1001, "idle timeout".to_string())]
    );
    assert_eq!(h.poll_timeout(), None);
    // What a closing connection still sends changes nothing.
    assert!(feed(&mut h, 8_001, 2, r#"{"type":"ping","data":{}}"#).is_empty());
}

#[test]
fn message_ids_are_deduplicated_per_session_not_across_senders() {
    let mut h = hub();
    join(&mut h, 1, "ann", 5);
    join(&mut h, 2, "bob", 5);
    join(&mut h, 3, "cy", 5);
    let msg = r#"{"type":"note","data":1,"id":"x-1","projectId":5}"#;
    let first = feed(&mut h, 10, 1, msg);
    let resend = feed(&mut h, 11, 1, msg);
    let other = feed(&mut h, 12, 2, msg);
    let notes = |out: &[HubOutput]| {
        sent_to(out, 3)
            .into_iter()
            .filter(|v| v["type"] == "note")
            .count()
    };
    assert_eq!((notes(&first), notes(&resend), notes(&other)), (1, 0, 1));
    // The resend is acked again, so the sender stops resending.
    assert!(sent_to(&resend, 1).iter().any(|v| v["type"] == "ack"));
}

#[test]
fn transport_decisions_binary_oversize_slow_consumer_and_shutdown() {
    let mut h = hub();
    for c in 1..=5 {
        join(&mut h, c, &format!("u{c}"), 1);
    }
    h.binary_frame(t(1), ConnId(1), 12);
    h.frame_too_large(t(1), ConnId(2));
    h.write_blocked(t(1), ConnId(3));
    let codes: Vec<(u64, u16)> = closes(&drain(&mut h))
        .into_iter()
        .map(|(c, code, _)| (c, code))
        .collect();
    assert_eq!(codes, [(1, 1003), (2, 1009), (3, 4009)]);
    // A decided close is decided once.
    h.write_blocked(t(2), ConnId(3));
    assert!(drain(&mut h).is_empty());
    h.shutdown(t(3));
    let reason = r#"{"retryAfterMs":0,"spreadMs":3000}"#.to_string();
    assert_eq!(
        closes(&drain(&mut h)),
        [(4, 1012, reason.clone()), (5, 1012, reason)],
        "only the live ones, told the default restart window"
    );
    // Nothing for connections the hub never saw.
    h.frame(
        t(4),
        ConnId(99),
        r#"{"type":"hello","data":{"protocol":2}}"#,
    );
    h.binary_frame(t(4), ConnId(99), 1);
    h.closed(t(4), ConnId(99));
    assert!(drain(&mut h).is_empty());
}

#[test]
fn a_rejoin_from_a_position_replays_exactly_what_followed_and_a_takeover_closes_the_old_link() {
    let mut h = hub();
    join(&mut h, 1, "ann", 5);
    let out = join(&mut h, 2, "bob", 5);
    let joined = sent_to(&out, 2)
        .into_iter()
        .find(|v| v["type"] == "project_joined")
        .expect("the join is answered");
    let epoch = joined["data"]["epoch"].as_str().unwrap().to_string();
    assert_eq!(joined["data"]["offset"], 0, "nothing in the log yet");
    let note = json!({"type": "note", "data": "seen", "projectId": 5});
    let out = feed(&mut h, 5, 1, &note.to_string());
    let seen = &sent_to(&out, 2)[0];
    assert_eq!(
        (seen["epoch"].as_str(), seen["offset"].as_u64()),
        (Some(epoch.as_str()), Some(1))
    );
    h.closed(t(6), ConnId(2));
    drain(&mut h);
    for i in 0..3 {
        let note = json!({"type": "note", "data": i, "projectId": 5, "id": format!("n{i}")});
        let out = feed(&mut h, 10 + i, 1, &note.to_string());
        // The sender's ack names the place its message took.
        let ack = &sent_to(&out, 1)[0];
        assert_eq!(ack["type"], "ack");
        assert_eq!(ack["data"]["offset"], 2 + i);
        assert_eq!(ack["data"]["projectId"], 5);
    }
    let sid = h
        .sessions
        .iter()
        .find(|(_, s)| s.user == "bob")
        .map(|(id, _)| id.clone())
        .unwrap();
    h.accepted(t(20), ConnId(3));
    let hello = json!({"type": "hello", "data": {"protocol": 2, "sessionId": sid}});
    let out = feed(&mut h, 20, 3, &hello.to_string());
    assert_eq!(sent_to(&out, 3)[0]["data"]["resumed"], true);
    let rejoin =
        json!({"type": "project_subscribe", "data": {"epoch": epoch, "offset": 1}, "projectId": 5});
    let out = feed(&mut h, 21, 3, &rejoin.to_string());
    let frames = sent_to(&out, 3);
    assert_eq!(frames[0]["type"], "project_joined");
    assert_eq!(frames[0]["data"]["recovered"], true);
    assert_eq!(frames[0]["data"]["replayed"], 3);
    let datas: Vec<&Value> = frames[1..4].iter().map(|v| &v["data"]).collect();
    assert_eq!(datas, [&json!(0), &json!(1), &json!(2)], "{frames:?}");
    assert_eq!(
        frames[4]["type"], "presence_state",
        "no snapshot: the replay rebuilt it"
    );
    // Another epoch cannot be recovered: the answer says so and the snapshot follows.
    let stale = json!({"type": "project_subscribe", "data": {"epoch": "gone", "offset": 1}, "projectId": 5});
    let out = feed(&mut h, 22, 3, &stale.to_string());
    let frames = sent_to(&out, 3);
    assert_eq!(frames[0]["data"]["recovered"], false);
    assert_eq!(frames[0]["data"]["reason"], "epoch_changed");
    assert_eq!(
        (
            frames[0]["data"]["epoch"].as_str(),
            frames[0]["data"]["offset"].as_u64()
        ),
        (Some(epoch.as_str()), Some(4))
    );
    assert_eq!(frames[1]["type"], "project_snapshot");
    // The same session on yet another connection: the older one is closed with 1000.
    h.accepted(t(30), ConnId(4));
    let hello = json!({"type": "hello", "data": {"protocol": 2, "sessionId": sid}});
    let out = feed(&mut h, 30, 4, &hello.to_string());
    assert_eq!(closes(&out)[0].0, 3);
    assert_eq!(closes(&out)[0].1, close::NORMAL);
}

#[test]
fn rate_limit_warns_once_then_closes() {
    let mut h = hub_with(HubSettings {
        rate_limit: RateLimitConfig::Bucket {
            per_sec: 10,
            burst: 2,
        },
        ..HubSettings::default()
    });
    h.accepted(t(0), ConnId(1));
    feed(&mut h, 0, 1, r#"{"type":"hello","data":{"protocol":2}}"#);
    let mut errors = 0;
    let mut closed = None;
    for i in 0..10 {
        let out = feed(&mut h, 0, 1, r#"{"type":"ping","data":{"nonce":1}}"#);
        errors += sent_to(&out, 1)
            .iter()
            .filter(|v| v["data"]["code"] == "rate_limited")
            .count();
        if let Some(c) = closes(&out).first() {
            closed = Some((i, c.1));
        }
    }
    assert_eq!(errors, 1, "one warning per excess run");
    // hello and the first ping take the burst; the next warns; 2 x burst more excess closes.
    assert_eq!(closed, Some((5, close::RATE_LIMITED)));
}

#[test]
fn chaos_drops_stalls_and_delays_pongs_from_its_seed() {
    let drop = |close_code| {
        let mut h = hub_with(HubSettings {
            chaos: ChaosConfig {
                seed: 9,
                drop_ms: Some(100..200),
                close_code,
                ..ChaosConfig::default()
            },
            ..HubSettings::default()
        });
        h.accepted(t(0), ConnId(1));
        let at = h.poll_timeout().unwrap();
        assert!((100..200).contains(&at.as_millis()));
        h.handle_timeout(at);
        (at, drain(&mut h))
    };
    let (at_a, abrupt) = drop(None);
    assert_eq!(abrupt, [HubOutput::Abort { conn: ConnId(1) }]);
    let (at_b, coded) = drop(Some(4321));
    assert_eq!(at_a, at_b, "same seed, same fault");
    assert_eq!(closes(&coded), [(1, 4321, "chaos: dropped".to_string())]);

    let mut h = hub_with(HubSettings {
        chaos: ChaosConfig {
            stall_ms: Some(50..51),
            pong_delay_ms: Some(700),
            ..ChaosConfig::default()
        },
        ..HubSettings::default()
    });
    h.accepted(t(0), ConnId(1));
    let out = feed(&mut h, 0, 1, r#"{"type":"hello","data":{"protocol":2}}"#);
    assert_eq!(sent_to(&out, 1)[0]["type"], "welcome");
    assert!(feed(&mut h, 10, 1, r#"{"type":"ping","data":{"nonce":3}}"#).is_empty());
    assert_eq!(h.poll_timeout(), Some(t(50)));
    h.handle_timeout(t(50));
    assert_eq!(drain(&mut h), [HubOutput::Stall { conn: ConnId(1) }]);
    // A stalled link sends nothing more, not even its delayed pong.
    h.handle_timeout(t(710));
    assert!(drain(&mut h).is_empty());

    let mut h = hub_with(HubSettings {
        chaos: ChaosConfig {
            pong_delay_ms: Some(700),
            ..ChaosConfig::default()
        },
        ..HubSettings::default()
    });
    h.accepted(t(0), ConnId(1));
    feed(&mut h, 0, 1, r#"{"type":"hello","data":{"protocol":2}}"#);
    assert!(feed(&mut h, 10, 1, r#"{"type":"ping","data":{"nonce":3}}"#).is_empty());
    assert!(feed(&mut h, 20, 1, r#"{"type":"ping","data":{"nonce":4}}"#).is_empty());
    assert_eq!(h.poll_timeout(), Some(t(710)));
    h.handle_timeout(t(720));
    let pongs = sent_to(&drain(&mut h), 1);
    assert_eq!(pongs.len(), 2);
    assert_eq!(pongs[1], json!({"type": "pong", "data": {"nonce": 4}}));
}

#[test]
fn a_disconnected_session_expires_with_its_log() {
    let mut h = hub_with(HubSettings {
        session_ttl_ms: 1_000,
        ..HubSettings::default()
    });
    join(&mut h, 1, "ann", 5);
    h.closed(t(10), ConnId(1));
    assert_eq!(h.sessions(), 1);
    assert_eq!(h.poll_timeout(), Some(t(1_010)));
    h.handle_timeout(t(1_010));
    assert_eq!((h.sessions(), h.connections()), (0, 0));
    assert_eq!(h.poll_timeout(), None);
}

#[test]
fn an_oversized_frame_is_refused_by_its_id_and_the_link_stays() {
    let mut h = hub_with(HubSettings {
        max_frame_bytes: 256,
        ..HubSettings::default()
    });
    join(&mut h, 1, "ann", 5);
    let big = json!({"type": "note", "id": "m9", "projectId": 5, "data": "x".repeat(300)});
    let out = feed(&mut h, 1, 1, &big.to_string());
    let to_ann = sent_to(&out, 1);
    assert_eq!(to_ann.len(), 1);
    assert_eq!(to_ann[0]["data"]["code"], "too_large");
    assert_eq!(to_ann[0]["data"]["id"], "m9");
    assert!(closes(&out).is_empty());
}

#[test]
fn settings_the_hub_cannot_work_with_are_raised_to_their_minimum() {
    let mut h = hub_with(HubSettings {
        replay_capacity: 0,
        agent_chunk_ms: 0,
        dedupe_window: 0,
        max_frame_bytes: 0,
        ..HubSettings::default()
    });
    let s = h.settings().clone();
    assert_eq!(
        (
            s.replay_capacity,
            s.agent_chunk_ms,
            s.dedupe_window,
            s.max_frame_bytes
        ),
        (1, 1, 1, 256)
    );
    join(&mut h, 1, "ann", 5);
    let out = feed(
        &mut h,
        1,
        1,
        r#"{"type":"note","id":"a","data":1,"projectId":5}"#,
    );
    assert_eq!(
        sent_to(&out, 1)[0]["type"],
        "ack",
        "a small frame still fits"
    );
}

#[test]
fn a_shutdown_announces_the_configured_window_bounded_and_none_when_off() {
    let reason_of = |retry_after, spread| {
        let mut h = hub_with(HubSettings {
            restart_retry_after_ms: retry_after,
            restart_spread_ms: spread,
            ..HubSettings::default()
        });
        join(&mut h, 1, "ann", 1);
        drain(&mut h);
        h.shutdown(t(1));
        let c = closes(&drain(&mut h));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].1, 1012);
        c[0].2.clone()
    };
    assert_eq!(
        reason_of(250, 2_000),
        r#"{"retryAfterMs":250,"spreadMs":2000}"#
    );
    assert_eq!(
        reason_of(0, 0),
        "hub restarting",
        "no window: the clients' own backoff"
    );
    // The window ends by 300 s, the latest a default client would honour.
    assert_eq!(
        reason_of(u64::MAX, u64::MAX),
        r#"{"retryAfterMs":300000,"spreadMs":0}"#
    );
    assert_eq!(
        reason_of(100_000, u64::MAX),
        r#"{"retryAfterMs":100000,"spreadMs":200000}"#
    );
    assert!(reason_of(u64::MAX, u64::MAX).len() <= 123);
}

/// A broker that can become unreachable: it then fails every command (what a remote broker does
/// while its server is gone; the real one is tested against redis-server in the tokio driver).
struct Flaky {
    inner: InMemoryBroker,
    down: bool,
    events: VecDeque<BrokerEvent>,
}

impl Flaky {
    fn set_down(&mut self, down: bool) {
        self.down = down;
        self.events.push_back(if down {
            BrokerEvent::Down {
                retry_after_ms: 700,
            }
        } else {
            BrokerEvent::Up
        });
    }
}

impl Broker for Flaky {
    fn submit(&mut self, command: BrokerCommand) {
        if self.down {
            self.events.push_back(BrokerEvent::Failed {
                command,
                retry_after_ms: 700,
            });
        } else {
            self.inner.submit(command);
        }
    }

    fn poll_event(&mut self) -> Option<BrokerEvent> {
        self.events.pop_front().or_else(|| self.inner.poll_event())
    }
}

fn flaky_hub() -> HubCore<Flaky> {
    let broker = Flaky {
        inner: InMemoryBroker::new(64, 3),
        down: false,
        events: VecDeque::new(),
    };
    HubCore::new(HubSettings::default(), broker, 1)
}

/// Takes the hub's broker down or up and tells the hub, as a driver would.
fn set_broker_down(h: &mut HubCore<Flaky>, at: u64, down: bool) -> Vec<HubOutput> {
    h.broker.set_down(down);
    h.broker_ready(t(at));
    drain(h)
}

#[test]
fn without_its_broker_the_hub_says_so_and_refuses_messages_by_id_until_it_returns() {
    let mut h = flaky_hub();
    join(&mut h, 1, "ann", 5);
    join(&mut h, 2, "bob", 5);
    drain(&mut h);
    let out = set_broker_down(&mut h, 10, true);
    for conn in [1, 2] {
        let got = sent_to(&out, conn);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["data"]["code"], "unavailable");
        assert_eq!(got[0]["data"]["retryAfterMs"], 700);
    }
    let note = r#"{"type":"note","data":1,"id":"m1","projectId":5}"#;
    let out = feed(&mut h, 20, 1, note);
    let to_ann = sent_to(&out, 1);
    assert_eq!(to_ann.len(), 1, "{to_ann:?}");
    assert_eq!(to_ann[0]["type"], "error");
    assert_eq!(to_ann[0]["data"]["code"], "unavailable");
    assert_eq!(to_ann[0]["data"]["id"], "m1", "by id: the client keeps it");
    assert!(sent_to(&out, 2).is_empty(), "nothing relayed");
    let update = r#"{"type":"project_update","data":{"x":1},"id":"u1","projectId":5}"#;
    let to_ann = sent_to(&feed(&mut h, 21, 1, update), 1);
    assert_eq!(
        to_ann[0]["data"]["id"], "u1",
        "an update is not acked unstored"
    );
    assert!(set_broker_down(&mut h, 30, false).is_empty());
    // The resend is news (nothing was logged): relayed once, acked with its place.
    let out = feed(&mut h, 40, 1, note);
    assert_eq!(sent_to(&out, 2).len(), 1);
    let ack = &sent_to(&out, 1)[0];
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["data"]["offset"], 1);
    assert!(feed(&mut h, 41, 1, note)
        .iter()
        .all(|o| !matches!(o, HubOutput::Send { conn, .. } if *conn == ConnId(2))));
}

#[test]
fn without_its_broker_a_join_is_refused_and_a_hello_naming_an_unknown_session_is_closed_1013() {
    let mut h = flaky_hub();
    h.accepted(t(0), ConnId(1));
    feed(
        &mut h,
        0,
        1,
        r#"{"type":"hello","data":{"protocol":2,"userId":"ann"}}"#,
    );
    set_broker_down(&mut h, 5, true);
    let sub = r#"{"type":"project_subscribe","data":{},"projectId":5}"#;
    let to_ann = sent_to(&feed(&mut h, 10, 1, sub), 1);
    assert_eq!(to_ann.len(), 1, "no project_joined: {to_ann:?}");
    assert_eq!(to_ann[0]["data"]["code"], "unavailable");
    // Asked again once the broker is back: a full answer.
    set_broker_down(&mut h, 20, false);
    let to_ann = sent_to(&feed(&mut h, 30, 1, sub), 1);
    assert_eq!(to_ann[0]["type"], "project_joined");
    set_broker_down(&mut h, 40, true);
    h.accepted(t(50), ConnId(2));
    let hello = r#"{"type":"hello","data":{"protocol":2,"sessionId":"s9-elsewhere"}}"#;
    let out = feed(&mut h, 50, 2, hello);
    assert_eq!(sent_to(&out, 2)[0]["data"]["code"], "unavailable");
    assert_eq!(
        closes(&out),
        [(2, close::TRY_AGAIN_LATER, "broker unavailable".to_string())]
    );
}
