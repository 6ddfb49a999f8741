//! Scenario tests: a session driven through the scripted server on a virtual clock.

use serde_json::{json, Value};
use sockline_core::testing::{Accept, Harness};
use sockline_core::{
    Config, Delivery, DropReason, Event, Jitter, Output, Overflow, SendRequest, SessionError,
    State, Timestamp,
};

fn config() -> Config {
    let mut c = Config::new("ws://127.0.0.1:9000/ws");
    c.reconnect.jitter = Jitter::None;
    c
}

fn harness(c: Config) -> Harness {
    Harness::new(c, 1).expect("valid config")
}

fn open(c: Config) -> Harness {
    let mut h = harness(c);
    h.connect().unwrap();
    assert_eq!(h.state(), State::Open);
    h
}

fn scheduled(h: &Harness) -> Vec<(u32, u64)> {
    h.events()
        .iter()
        .filter_map(|e| match e {
            Event::ReconnectScheduled { attempt, delay_ms } => Some((*attempt, *delay_ms)),
            _ => None,
        })
        .collect()
}

fn open_times(h: &Harness) -> Vec<(u64, u32)> {
    h.log()
        .iter()
        .filter_map(|(t, o)| match o {
            Output::OpenTransport { attempt, .. } => Some((t.as_millis(), *attempt)),
            _ => None,
        })
        .collect()
}

fn dropped(h: &Harness) -> Vec<(String, DropReason)> {
    h.events()
        .iter()
        .filter_map(|e| match e {
            Event::Dropped { id, reason, .. } => Some((id.clone(), *reason)),
            _ => None,
        })
        .collect()
}

fn app_types(h: &Harness) -> Vec<String> {
    h.server
        .received_app()
        .iter()
        .map(|e| e.msg_type.clone())
        .collect()
}

fn last_status(h: &Harness) -> (State, State, String) {
    h.events()
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Status {
                from, to, reason, ..
            } => Some((*from, *to, reason.clone())),
            _ => None,
        })
        .expect("a status event")
}

#[test]
fn backoff_schedule_is_the_seeds_then_gives_up_after_five() {
    let mut h = harness(config());
    h.server.accept = Accept::Refuse {
        code: 1006,
        reason: String::new(),
    };
    h.connect().unwrap();
    h.advance(120_000);
    assert_eq!(
        scheduled(&h),
        vec![(1, 1000), (2, 2000), (3, 4000), (4, 8000), (5, 16000)]
    );
    // Six connections in all, each exactly when its delay ran out.
    assert_eq!(
        open_times(&h),
        vec![
            (0, 0),
            (1000, 1),
            (3000, 2),
            (7000, 3),
            (15000, 4),
            (31000, 5)
        ]
    );
    assert_eq!(h.state(), State::Failed);
    let (from, to, reason) = last_status(&h);
    assert_eq!((from, to), (State::Connecting, State::Failed));
    assert!(reason.contains("gave up after 5"), "{reason}");
    assert_eq!(h.session.poll_timeout(), None);
    assert_eq!(h.session.stats().reconnects, 5);
}

fn opened_urls(h: &Harness) -> Vec<String> {
    h.log()
        .iter()
        .filter_map(|(_, o)| match o {
            Output::OpenTransport { url, .. } => Some(url.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn attempts_rotate_through_urls_under_the_same_backoff() {
    let mut c = config();
    c.url.clear();
    c.urls = vec!["ws://a/ws".into(), "ws://b/ws".into(), "ws://c/ws".into()];
    let mut h = harness(c);
    h.server.accept = Accept::Refuse {
        code: 1006,
        reason: String::new(),
    };
    h.connect().unwrap();
    h.advance(10_000);
    // The backoff is the one-URL schedule; only the URL moves on, wrapping.
    assert_eq!(
        open_times(&h),
        vec![(0, 0), (1000, 1), (3000, 2), (7000, 3)]
    );
    assert_eq!(
        opened_urls(&h),
        ["ws://a/ws", "ws://b/ws", "ws://c/ws", "ws://a/ws"]
    );
    // A hub that answers: the session settles on the URL that worked, and a lost link moves on.
    h.server.accept = Accept::Open;
    h.advance(10_000);
    assert_eq!(h.state(), State::Open);
    assert_eq!(
        opened_urls(&h).last().map(String::as_str),
        Some("ws://b/ws")
    );
    h.server_close(1001, "going away");
    h.advance(5_000);
    assert_eq!(h.state(), State::Open);
    assert_eq!(
        opened_urls(&h).last().map(String::as_str),
        Some("ws://c/ws")
    );
    // A user close and connect again stays on the last URL used.
    h.disconnect();
    h.advance(10_000);
    h.connect().unwrap();
    assert_eq!(
        opened_urls(&h).last().map(String::as_str),
        Some("ws://c/ws")
    );
}

#[test]
fn forever_retries_cap_at_max_delay() {
    let mut c = config();
    c.reconnect.max_attempts = None;
    let mut h = harness(c);
    h.server.accept = Accept::Refuse {
        code: 1011,
        reason: String::new(),
    };
    h.connect().unwrap();
    h.advance(400_000);
    let delays: Vec<u64> = scheduled(&h).iter().map(|&(_, d)| d).collect();
    assert!(delays.len() > 10);
    assert_eq!(&delays[..7], &[1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    assert_eq!(h.state(), State::Reconnecting);
}

#[test]
fn attempt_counter_resets_only_after_stable_period() {
    let mut h = open(config());
    h.advance(1_000);
    h.server_close(1001, "restart");
    h.advance(1_000); // attempt 1 after 1 s, opens at once
    assert_eq!(h.state(), State::Open);
    h.advance(4_999); // not yet stable
    h.server_close(1001, "restart");
    assert_eq!(scheduled(&h), vec![(1, 1000), (2, 2000)]);
    h.advance(2_000);
    assert_eq!(h.state(), State::Open);
    h.advance(5_000); // stable now
    h.server_close(1001, "restart");
    assert_eq!(scheduled(&h), vec![(1, 1000), (2, 2000), (1, 1000)]);
}

#[test]
fn flapping_server_cannot_defeat_backoff() {
    let mut h = open(config());
    for _ in 0..5 {
        h.server_close(1006, "");
        h.advance(
            60_000.min(h.session.poll_timeout().unwrap().at.as_millis() - h.now().as_millis()),
        );
        assert_eq!(h.state(), State::Open);
        h.advance(100);
    }
    h.server_close(1006, "");
    assert_eq!(h.state(), State::Failed);
}

#[test]
fn heartbeat_timeout_closes_and_schedules_in_the_same_call() {
    let mut h = open(config());
    h.server.auto_pong = false;
    h.take_log();
    h.advance(30_000);
    assert_eq!(
        h.transmitted(),
        vec![r#"{"type":"ping","data":{"nonce":1}}"#]
    );
    h.take_log();
    h.advance(9_999);
    assert_eq!(h.state(), State::Open);
    h.advance(1);
    let log = h.take_log();
    let kinds: Vec<String> = log
        .iter()
        .map(|(t, o)| format!("{}:{}", t.as_millis(), kind(o)))
        .collect();
    assert_eq!(
        &kinds[..3],
        &[
            "40000:close_transport",
            "40000:status",
            "40000:reconnect_scheduled"
        ]
    );
    assert_eq!(
        log[0].1,
        Output::CloseTransport {
            code: 4000,
            reason: "heartbeat timeout".into()
        }
    );
}

#[test]
fn pong_measures_rtt_and_keeps_link() {
    let mut c = config();
    c.heartbeat.interval_ms = 1_000;
    let mut h = open(c);
    h.server.latency_ms = 25;
    h.advance(10_000);
    assert_eq!(h.state(), State::Open);
    assert_eq!(h.session.stats().last_rtt_ms, Some(25));
}

#[test]
fn suspension_probes_instead_of_declaring_death() {
    let mut h = open(config());
    h.server.auto_pong = false;
    h.advance(30_000); // ping sent, dead-line deadline at 40 s
    h.take_log();
    h.server.auto_pong = true;
    h.suspend(100_000); // laptop lid closed through both deadlines
    assert_eq!(h.state(), State::Open, "a suspension is not a dead peer");
    assert_eq!(
        h.transmitted(),
        vec![r#"{"type":"ping","data":{"nonce":2}}"#]
    );
    h.advance(60_000);
    assert_eq!(h.state(), State::Open);
}

#[test]
fn suspension_probe_unanswered_then_dies() {
    let mut h = open(config());
    h.server.auto_pong = false;
    h.advance(30_000);
    h.suspend(100_000);
    h.take_log();
    h.advance(10_000);
    assert_eq!(h.state(), State::Reconnecting);
    assert!(h
        .log()
        .iter()
        .any(|(_, o)| matches!(o, Output::CloseTransport { code: 4000, .. })));
}

#[test]
fn overflow_policies() {
    for overflow in [Overflow::DropOldest, Overflow::DropNewest, Overflow::Reject] {
        let mut c = config();
        c.outbox.max_messages = 2;
        c.outbox.overflow = overflow;
        let mut h = harness(c);
        let ids: Vec<Result<String, SessionError>> = (0..3)
            .map(|i| h.send(SendRequest::new("chat", json!(i)).id(format!("m{i}"))))
            .collect();
        match overflow {
            Overflow::DropOldest => {
                assert!(ids.iter().all(Result::is_ok));
                assert_eq!(dropped(&h), vec![("m0".into(), DropReason::QueueFull)]);
            }
            Overflow::DropNewest => {
                assert!(ids.iter().all(Result::is_ok));
                assert_eq!(dropped(&h), vec![("m2".into(), DropReason::QueueFull)]);
            }
            Overflow::Reject => {
                assert!(matches!(
                    ids[2],
                    Err(SessionError::QueueFull { messages: 2, .. })
                ));
                assert!(dropped(&h).is_empty());
            }
            other => panic!("no expectation written for {other:?}"),
        }
        assert_eq!(h.session.stats().queue_depth, 2);
        h.connect().unwrap();
        let sent: Vec<String> = h
            .server
            .received_app()
            .iter()
            .map(|e| e.id.clone().unwrap())
            .collect();
        let want: Vec<&str> = match overflow {
            Overflow::DropOldest => vec!["m1", "m2"],
            _ => vec!["m0", "m1"],
        };
        assert_eq!(sent, want, "{overflow:?}");
    }
}

#[test]
fn byte_limit_applies_too() {
    let mut c = config();
    c.outbox.max_bytes = 200;
    let mut h = harness(c);
    h.send(SendRequest::new("a", json!("x".repeat(100))).id("a"))
        .unwrap();
    h.send(SendRequest::new("b", json!("x".repeat(100))).id("b"))
        .unwrap();
    assert_eq!(dropped(&h), vec![("a".into(), DropReason::QueueFull)]);
    assert!(h.session.stats().queue_bytes <= 200);
    let too_big = h.send(SendRequest::new("c", json!("x".repeat(300))));
    assert!(matches!(
        too_big,
        Err(SessionError::TooLarge { max: 200, .. })
    ));
}

#[test]
fn ttl_expires_queued_messages_with_an_event_at_expiry() {
    let mut h = harness(config());
    h.send(SendRequest::new("cursor", json!(1)).id("old").ttl_ms(5_000))
        .unwrap();
    h.send(SendRequest::new("chat", json!(2)).id("keep"))
        .unwrap();
    h.advance(4_999);
    assert!(dropped(&h).is_empty());
    h.advance(1);
    assert_eq!(dropped(&h), vec![("old".into(), DropReason::Expired)]);
    assert_eq!(h.log().last().unwrap().0.as_millis(), 5_000);
    h.connect().unwrap();
    assert_eq!(app_types(&h), vec!["chat"]);
}

#[test]
fn coalescing_keeps_only_the_newest() {
    let mut h = harness(config());
    for i in 0..3 {
        h.send(
            SendRequest::new("cursor", json!({"x": i}))
                .id(format!("c{i}"))
                .coalesce("cursor"),
        )
        .unwrap();
    }
    h.send(SendRequest::new("chat", json!("hi")).id("chat"))
        .unwrap();
    assert_eq!(
        dropped(&h),
        vec![
            ("c0".into(), DropReason::Coalesced),
            ("c1".into(), DropReason::Coalesced)
        ]
    );
    h.connect().unwrap();
    let ids: Vec<String> = h
        .server
        .received_app()
        .iter()
        .map(|e| e.id.clone().unwrap())
        .collect();
    assert_eq!(ids, vec!["c2", "chat"]);
}

#[test]
fn volatile_is_dropped_not_queued_when_offline() {
    let mut h = harness(config());
    h.send(
        SendRequest::new("typing", json!(null))
            .id("v")
            .delivery(Delivery::Volatile),
    )
    .unwrap();
    assert_eq!(dropped(&h), vec![("v".into(), DropReason::NotConnected)]);
    h.connect().unwrap();
    assert!(app_types(&h).is_empty());
}

#[test]
fn at_least_once_is_resent_across_two_reconnects_until_acked() {
    let mut h = open(config());
    h.server.auto_ack = false;
    let id = h
        .send(SendRequest::new("order", json!({"n": 1})).delivery(Delivery::AtLeastOnce))
        .unwrap();
    let first = h.transmitted().last().unwrap().to_string();
    for _ in 0..2 {
        h.server_close(1006, "");
        h.advance(h.session.poll_timeout().unwrap().at.as_millis() - h.now().as_millis());
        assert_eq!(h.state(), State::Open);
        assert_eq!(
            h.transmitted().last().unwrap(),
            &first,
            "resent verbatim, same id"
        );
    }
    assert_eq!(h.server.received_app().len(), 3);
    assert_eq!(h.session.stats().resent, 2);
    h.inject(&format!(r#"{{"type":"ack","data":{{"id":"{id}"}}}}"#));
    assert!(h.events().contains(&&Event::Acked { id: id.clone() }));
    h.server_close(1006, "");
    h.advance(5_000);
    assert_eq!(
        h.server.received_app().len(),
        3,
        "acked messages are not resent"
    );
    assert_eq!(h.session.stats().queue_depth, 0);
}

#[test]
fn ack_timeout_is_reported_once_and_message_kept() {
    let mut h = open(config());
    h.server.auto_ack = false;
    let id = h
        .send(SendRequest::new("order", json!(1)).delivery(Delivery::AtLeastOnce))
        .unwrap();
    h.advance(9_999);
    assert!(!h
        .events()
        .iter()
        .any(|e| matches!(e, Event::AckTimeout { .. })));
    h.advance(50_000);
    let timeouts: Vec<_> = h
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::AckTimeout { .. }))
        .collect();
    assert_eq!(timeouts, vec![&Event::AckTimeout { id }]);
    assert_eq!(h.session.stats().queue_depth, 1);
}

#[test]
fn a_message_the_server_refuses_is_dropped_with_an_event_and_never_resent() {
    let mut h = open(config());
    h.server.auto_ack = false;
    let id = h
        .send(SendRequest::new("order", json!({"n": 1})).delivery(Delivery::AtLeastOnce))
        .unwrap();
    let kept = h
        .send(SendRequest::new("order", json!({"n": 2})).delivery(Delivery::AtLeastOnce))
        .unwrap();
    h.inject(&format!(
        r#"{{"type":"error","data":{{"code":"too_large","message":"relay too big","id":"{id}"}}}}"#
    ));
    assert!(h.events().contains(&&Event::ServerError {
        code: "too_large".into(),
        message: "relay too big".into(),
        retry_after_ms: None,
        id: Some(id.clone()),
    }));
    assert!(h.events().contains(&&Event::Dropped {
        id: id.clone(),
        msg_type: "order".into(),
        reason: DropReason::Rejected,
    }));
    assert_eq!(h.state(), State::Open, "the connection stays up");
    // After a reconnect only the other message is resent.
    h.server_close(1006, "");
    h.advance(5_000);
    let resent: Vec<String> = h.server.received_app()[2..]
        .iter()
        .filter_map(|e| e.id.clone())
        .collect();
    assert_eq!(resent, vec![kept]);
    assert_eq!(h.session.stats().queue_depth, 1);
}

/// A project message as a hub relays it, with its place in the log.
fn logged(data: u64, id: &str, offset: u64) -> String {
    json!({"type": "note", "data": data, "id": id, "projectId": 3, "epoch": "e1", "offset": offset})
        .to_string()
}

/// A session open and joined to project 3, whose log (epoch `e1`) is empty.
fn joined() -> Harness {
    let mut h = open(config());
    h.with(|s, now| s.join_project(now, 3)).unwrap();
    h
}

#[test]
fn server_resends_and_offset_duplicates_are_delivered_once_and_a_hole_rejoins() {
    let mut h = joined();
    let sub = h.with(|s, now| s.subscribe(now, "*", None)).unwrap();
    h.inject(r#"{"type":"note","data":1,"id":"n1"}"#);
    h.inject(r#"{"type":"note","data":1,"id":"n1"}"#);
    h.inject(&logged(2, "a-1", 1));
    h.inject(&logged(2, "a-1", 1));
    h.inject(&logged(4, "a-3", 3));
    let delivered: Vec<String> = h
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Message {
                subscriptions,
                message,
            } => {
                assert_eq!(subscriptions, &vec![sub]);
                Some(message.data.get().to_string())
            }
            _ => None,
        })
        .collect();
    // Offset 3 came after a hole: withheld, and the project joined again from offset 1.
    assert_eq!(delivered, vec!["1", "2"]);
    assert!(h.events().contains(&&Event::Gap {
        project_id: 3,
        from: 1,
        to: 3
    }));
    let rejoin = h
        .transmitted()
        .into_iter()
        .rfind(|t| t.contains("project_subscribe"))
        .unwrap()
        .to_string();
    assert!(
        rejoin.contains(r#""data":{"epoch":"e1","offset":1}"#),
        "{rejoin}"
    );
    assert_eq!(h.session.stats().duplicates, 2);
}

#[test]
fn relayed_messages_of_two_senders_sharing_an_id_are_both_delivered() {
    let mut h = joined();
    h.with(|s, now| s.subscribe(now, "*", None)).unwrap();
    // Ids are unique per sender only; the log's offsets tell the messages apart.
    h.inject(&logged(1, "0000-1", 1));
    h.inject(&logged(2, "0000-1", 2));
    let delivered = h
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Message { .. }))
        .count();
    assert_eq!(delivered, 2);
    assert_eq!(h.session.stats().duplicates, 0);
}

#[test]
fn the_senders_own_message_moves_its_position_through_the_ack() {
    let mut h = joined();
    h.with(|s, now| s.subscribe(now, "*", None)).unwrap();
    h.server.auto_ack = false;
    let id = h
        .send(SendRequest::new("note", json!(0)).project(3))
        .unwrap();
    h.inject(&logged(1, "b-1", 1));
    h.inject(
        &json!({"type": "ack", "data": {"id": id, "projectId": 3, "epoch": "e1", "offset": 2}})
            .to_string(),
    );
    h.inject(&logged(2, "b-3", 3));
    let delivered = h
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Message { .. }))
        .count();
    assert_eq!(
        delivered, 2,
        "offset 2 is the client's own: no hole before 3"
    );
    assert!(!h.events().iter().any(|e| matches!(e, Event::Gap { .. })));
}

#[test]
fn routing_by_pattern_and_project() {
    let mut h = open(config());
    let exact = h
        .with(|s, n| s.subscribe(n, "project_updated", Some(1)))
        .unwrap();
    let prefix = h
        .with(|s, n| s.subscribe(n, "agent_stream_*", None))
        .unwrap();
    let all = h.with(|s, n| s.subscribe(n, "*", None)).unwrap();
    h.push("project_updated", json!({"version": 1}), Some(1));
    h.push("project_updated", json!({"version": 1}), Some(2));
    h.push("agent_stream_chunk", json!({}), None);
    h.with(|s, n| s.unsubscribe(n, all)).unwrap();
    h.push("chat", json!({}), None);
    let routes: Vec<Vec<u64>> = h
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Message { subscriptions, .. } => {
                Some(subscriptions.iter().map(|s| s.0).collect())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        routes,
        vec![vec![exact.0, all.0], vec![all.0], vec![prefix.0, all.0]]
    );
    assert_eq!(h.session.stats().messages_unrouted, 1);
    assert!(matches!(
        h.with(|s, n| s.subscribe(n, "a*b", None)),
        Err(SessionError::InvalidPattern { .. })
    ));
}

#[test]
fn hello_goes_first_and_nothing_flushes_before_welcome() {
    let mut h = harness(config());
    h.send(SendRequest::new("chat", json!("queued")).id("q"))
        .unwrap();
    h.server.auto_welcome = false;
    h.connect().unwrap();
    h.advance(1_000);
    assert_eq!(h.transmitted().len(), 1);
    assert!(h.transmitted()[0].starts_with(r#"{"type":"hello","data":{"protocol":2"#));
    assert_eq!(h.state(), State::Connecting);
    h.inject(r#"{"type":"welcome","data":{"sessionId":"x"}}"#);
    assert_eq!(h.state(), State::Open);
    assert_eq!(h.transmitted().len(), 2);
    assert!(h.transmitted()[1].contains(r#""id":"q""#));
}

#[test]
fn flush_keeps_fifo_order_before_later_sends() {
    let mut h = harness(config());
    for i in 0..5 {
        h.send(SendRequest::new("chat", json!(i)).id(format!("m{i}")))
            .unwrap();
    }
    h.connect().unwrap();
    h.send(SendRequest::new("chat", json!(5)).id("m5")).unwrap();
    let ids: Vec<String> = h
        .server
        .received_app()
        .iter()
        .map(|e| e.id.clone().unwrap())
        .collect();
    assert_eq!(ids, vec!["m0", "m1", "m2", "m3", "m4", "m5"]);
}

#[test]
fn connect_timeout_counts_as_a_failed_attempt() {
    let mut h = harness(config());
    h.server.accept = Accept::Hang;
    h.connect().unwrap();
    h.advance(10_000);
    let log: Vec<String> = h
        .log()
        .iter()
        .map(|(t, o)| format!("{}:{}", t.as_millis(), kind(o)))
        .collect();
    assert_eq!(
        log,
        vec![
            "0:open_transport",
            "0:status",
            "10000:close_transport",
            "10000:status",
            "10000:reconnect_scheduled"
        ]
    );
}

#[test]
fn a_connect_timeout_that_fell_due_during_a_suspension_gives_the_attempt_a_fresh_window() {
    let mut h = harness(config());
    h.server.accept = Accept::Hang;
    h.connect().unwrap();
    h.suspend(20_000); // a tab frozen while connecting, past its 10 s connect timeout
    assert_eq!(
        h.state(),
        State::Connecting,
        "the transport's news may be on its way"
    );
    h.advance(9_999);
    assert_eq!(h.state(), State::Connecting);
    h.advance(1);
    assert_eq!(
        h.state(),
        State::Reconnecting,
        "a whole window without news: timed out"
    );
    assert_eq!(last_status(&h).2, "connect timeout");
}

#[test]
fn late_transport_closed_for_an_abandoned_transport_is_ignored() {
    let mut h = harness(config());
    h.server.accept = Accept::Hang;
    h.connect().unwrap();
    h.advance(10_000);
    let before = h.log().len();
    h.with(|s, n| s.transport_closed(n, 1006, ""));
    assert_eq!(h.log().len(), before);
    assert_eq!(scheduled(&h), vec![(1, 1000)]);
}

#[test]
fn close_codes_decide_what_happens() {
    let mut h = open(config());
    h.server_close(4001, "token expired");
    assert_eq!(h.state(), State::Unauthorized);
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::TokenRequired { .. })));
    h.advance(60_000);
    assert_eq!(h.server.opens(), 1, "no reconnect without a new token");

    let mut h = open(config());
    h.server_close(1008, "policy");
    assert_eq!(h.state(), State::Failed);
    h.advance(60_000);
    assert_eq!(h.server.opens(), 1);

    let mut h = open(config());
    h.server_close(1013, r#"{"retryAfterMs": 7500}"#);
    assert_eq!(scheduled(&h), vec![(1, 7500)]);
}

#[test]
fn a_service_restart_reconnects_within_the_announced_window_once() {
    // Default config: 1012 is not fatal, and the window replaces the equal jitter's [500, 1000].
    let mut h = open(Config::new("ws://127.0.0.1:9000/ws"));
    h.advance(10_000); // stable: the restart is attempt 1 of a fresh schedule
    let closed_at = h.now().as_millis();
    h.server_close(1012, r#"{"retryAfterMs":2000,"spreadMs":3000}"#);
    assert_eq!(h.state(), State::Reconnecting);
    let [(1, delay)] = scheduled(&h)[..] else {
        panic!("one attempt scheduled: {:?}", scheduled(&h));
    };
    assert!((2_000..=5_000).contains(&delay), "{delay}");
    h.advance(delay - 1);
    assert_eq!(open_times(&h).len(), 1, "not before its draw");
    h.advance(1);
    assert_eq!(open_times(&h)[1], (closed_at + delay, 1));
    assert_eq!(h.state(), State::Open);
    // A close without a window right away: the session's own schedule (attempt 2: [1, 2] s).
    h.server_close(1012, "hub restarting");
    let (attempt, delay) = scheduled(&h)[1];
    assert_eq!(attempt, 2);
    assert!((1_000..=2_000).contains(&delay), "{delay}");
}

#[test]
fn server_error_hint_sets_next_delay_and_unauthorized_error_waits_for_token() {
    let mut h = open(config());
    h.inject(
        r#"{"type":"error","data":{"code":"overloaded","message":"busy","retryAfterMs":4200}}"#,
    );
    assert_eq!(h.state(), State::Open);
    h.server_close(1013, "");
    assert_eq!(scheduled(&h), vec![(1, 4200)]);

    let mut h = open(config());
    h.inject(r#"{"type":"error","data":{"code":"unauthorized","message":"bad token"}}"#);
    assert_eq!(h.state(), State::Unauthorized);
    assert!(h
        .log()
        .iter()
        .any(|(_, o)| matches!(o, Output::CloseTransport { .. })));
}

#[test]
fn rate_limited_error_pauses_sending_only() {
    let mut h = open(config());
    h.inject(r#"{"type":"error","data":{"code":"rate_limited","retryAfterMs":2000}}"#);
    h.send(SendRequest::new("chat", json!(1))).unwrap();
    assert!(app_types(&h).is_empty());
    h.advance(1_999);
    assert!(app_types(&h).is_empty());
    h.advance(1);
    assert_eq!(app_types(&h), vec!["chat"]);
    assert_eq!(h.state(), State::Open);
}

#[test]
fn a_message_refused_as_unavailable_is_kept_and_sent_again_after_the_hint() {
    let mut h = open(config());
    h.server.auto_ack = false;
    let id = h
        .send(SendRequest::new("order", json!(1)).delivery(Delivery::AtLeastOnce))
        .unwrap();
    let first = h.transmitted().last().unwrap().to_string();
    h.inject(&format!(
        r#"{{"type":"error","data":{{"code":"unavailable","message":"no broker","retryAfterMs":1500,"id":"{id}"}}}}"#
    ));
    assert!(
        !h.events()
            .iter()
            .any(|e| matches!(e, Event::Dropped { .. })),
        "not dropped: the hub will take it later"
    );
    assert_eq!(h.server.received_app().len(), 1);
    h.advance(1_499);
    assert_eq!(h.server.received_app().len(), 1, "held until the hint");
    h.advance(1);
    assert_eq!(h.server.received_app().len(), 2);
    assert_eq!(
        h.transmitted().last().unwrap(),
        &first,
        "the same message, same id"
    );
    assert_eq!(h.session.stats().dropped, 0);
    assert_eq!(h.state(), State::Open);
}

#[test]
fn token_expiring_asks_for_a_token_and_set_token_while_open_sends_it_in_band() {
    let mut h = open(config());
    let now = h.now().as_millis();
    h.inject(r#"{"type":"token_expiring","data":{"expiresInMs":60000}}"#);
    assert!(h.events().contains(&&Event::TokenRefreshDue {
        expires_at: Timestamp::from_millis(now + 60_000)
    }));
    h.with(|s, n| s.set_token(n, "fresh", None)).unwrap();
    assert_eq!(
        h.transmitted().last().unwrap(),
        &r#"{"type":"auth","data":{"token":"fresh"}}"#,
        "the open link renews in band, no reconnect"
    );
    assert_eq!(h.server.opens(), 1);
    assert_eq!(h.state(), State::Open);
}

#[test]
fn a_join_refused_by_id_is_left_not_asked_again() {
    let mut h = open(config());
    h.server.auto_ack = false;
    h.with(|s, n| s.join_project(n, 9)).unwrap();
    let sub = h
        .transmitted()
        .into_iter()
        .rev()
        .find(|t| t.contains("project_subscribe"))
        .map(str::to_string)
        .unwrap();
    let id = serde_json::from_str::<Value>(&sub).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    h.inject(&format!(
        r#"{{"type":"error","data":{{"code":"forbidden","message":"no","id":"{id}"}},"projectId":9}}"#
    ));
    let subs = |h: &Harness| {
        h.transmitted()
            .iter()
            .filter(|t| t.contains("project_subscribe"))
            .count()
    };
    h.advance(60_000);
    assert_eq!(subs(&h), 1, "never asked again");
    // Nor after a reconnect: the project was left.
    h.server_close(1006, "");
    h.advance(5_000);
    assert_eq!(h.state(), State::Open);
    assert_eq!(h.server.opens(), 2);
    assert_eq!(subs(&h), 1);
}

#[test]
fn offline_pauses_reconnect_and_online_reconnects_at_once() {
    let mut h = open(config());
    h.server_close(1006, "");
    h.with(|s, n| s.offline(n));
    h.advance(30_000);
    assert_eq!(h.server.opens(), 1, "no attempts while offline");
    h.with(|s, n| s.online(n));
    assert_eq!(h.server.opens(), 2);
    assert_eq!(h.state(), State::Open);
}

#[test]
fn a_link_lost_right_after_the_network_came_back_is_retried_at_once() {
    let mut c = config();
    c.reconnect.initial_ms = 20_000;
    let mut h = open(c);
    // A browser may report the socket's end only after `online`: the outage broke it.
    h.with(|s, n| s.offline(n));
    h.advance(2_000);
    h.with(|s, n| s.online(n));
    h.with(|s, n| s.transport_lost(n));
    assert_eq!(
        scheduled(&h),
        vec![(1, 0)],
        "no backoff for a loss the outage explains"
    );
    assert_eq!(h.server.opens(), 2);
    assert_eq!(h.state(), State::Open);
    // A link that has been heard from since the network came back is lost for another reason.
    h.with(|s, n| s.offline(n));
    h.with(|s, n| s.online(n));
    h.inject(r#"{"type":"note","data":1}"#);
    h.with(|s, n| s.transport_lost(n));
    let (attempt, delay) = *scheduled(&h).last().unwrap();
    assert_eq!(attempt, 2, "not yet stable: the count goes on");
    assert!(delay >= 10_000, "the backoff applies: {:?}", scheduled(&h));
}

#[test]
fn loss_while_offline_waits_for_network() {
    let mut h = open(config());
    h.with(|s, n| s.offline(n));
    h.server_close(1006, "");
    assert_eq!(h.state(), State::Reconnecting);
    assert!(scheduled(&h).is_empty());
    h.advance(10_000);
    h.with(|s, n| s.online(n));
    assert_eq!(scheduled(&h), vec![(1, 0)]);
    assert_eq!(h.state(), State::Open);
}

#[test]
fn user_close_never_reconnects() {
    let mut h = open(config());
    h.disconnect();
    assert_eq!(h.state(), State::Closing);
    assert!(h.log().iter().any(|(_, o)| o
        == &Output::CloseTransport {
            code: 1000,
            reason: "client closing".into()
        }));
    h.with(|s, n| s.transport_closed(n, 1000, ""));
    assert_eq!(h.state(), State::Closed);
    h.advance(120_000);
    assert_eq!(h.server.opens(), 1);
    assert_eq!(h.session.poll_timeout(), None);
}

#[test]
fn close_timeout_ends_closing() {
    let mut h = open(config());
    h.disconnect();
    h.advance(5_000);
    assert_eq!(h.state(), State::Closed);
}

#[test]
fn connect_while_active_is_an_error() {
    let mut h = open(config());
    assert_eq!(
        h.connect(),
        Err(SessionError::AlreadyActive { state: State::Open })
    );
}

#[test]
fn bad_frames_are_protocol_errors_and_the_link_stays() {
    let mut h = open(config());
    let deep = format!(
        r#"{{"type":"x","data":{}{}}}"#,
        "[".repeat(80),
        "]".repeat(80)
    );
    let big = format!(r#"{{"type":"x","data":"{}"}}"#, "a".repeat(2 << 20));
    for bad in [
        "nope",
        r#"{"data":1}"#,
        r#"{"type":""}"#,
        &deep,
        &big,
        "[1,2]",
    ] {
        h.inject(bad);
    }
    h.with(|s, n| s.binary_frame(n, 10));
    let errors = h
        .events()
        .iter()
        .filter(|e| matches!(e, Event::ProtocolError { .. }))
        .count();
    assert_eq!(errors, 7);
    assert_eq!(h.session.stats().protocol_errors, 7);
    assert_eq!(h.state(), State::Open);
}

#[test]
fn a_rejoin_replays_the_projects_missed_messages_exactly_once() {
    let mut h = open(config());
    h.with(|s, n| s.subscribe(n, "*", None)).unwrap();
    h.with(|s, n| s.join_project(n, 3)).unwrap();
    h.push("note", json!(1), Some(3));
    h.server_close(1006, "");
    h.push("note", json!(2), Some(3)); // while away
    h.push("note", json!(3), Some(3));
    h.advance(1_000);
    assert_eq!(h.state(), State::Open);
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::Ready { resumed: true, .. })));
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::Rejoined {
            project_id: 3,
            recovered: true,
            replayed: 2,
            ..
        }
    )));
    let data: Vec<String> = h
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Message { message, .. } => Some(message.data.get().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(data, vec!["1", "2", "3"]);
    let hello = h
        .transmitted()
        .into_iter()
        .rfind(|t| t.contains("hello"))
        .unwrap()
        .to_string();
    assert!(hello.contains(r#""sessionId":"s1""#), "{hello}");
    // A server that lost its logs cannot recover the position: the client hears why.
    h.server.forget_sessions();
    h.server_close(1006, "");
    h.advance(2_000);
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::Rejoined { project_id: 3, recovered: false, reason: Some(r), .. } if r == "epoch_changed"
    )), "{:?}", h.events());
}

#[test]
fn time_going_backwards_is_clamped() {
    let mut h = open(config());
    h.advance(30_000);
    h.with(|s, _| s.handle_timeout(Timestamp::from_millis(5)));
    let d = h.session.poll_timeout().unwrap();
    assert!(d.at > Timestamp::from_millis(30_000));
}

#[test]
fn recorded_trace_replays_to_the_same_outputs() {
    let mut c = config();
    c.token = Some(sockline_core::Secret::new("s3cret"));
    c.reconnect.jitter = Jitter::Full;
    let mut h = Harness::new(c, 99).unwrap();
    h.session.start_recording();
    h.with(|s, n| s.subscribe(n, "*", None)).unwrap();
    h.connect().unwrap();
    h.push("note", json!(1), Some(3));
    h.server.auto_pong = false;
    h.advance(45_000);
    h.send(SendRequest::new("chat", json!("x")).delivery(Delivery::AtLeastOnce))
        .unwrap();
    h.server.auto_pong = true;
    h.advance(20_000);
    h.suspend(90_000);
    h.advance(1_000);
    let trace = h.session.trace().unwrap();
    let text = trace.to_json();
    assert!(!text.contains("s3cret"), "token must be redacted");
    let live: Vec<String> = h
        .log()
        .iter()
        .map(|(t, o)| o.to_json_at(*t))
        .map(|l| l.replace("s3cret", "<redacted>"))
        .collect();
    let replayed = sockline_core::Trace::from_json(&text)
        .unwrap()
        .replay()
        .unwrap();
    assert_eq!(replayed, live);
    // And replay is byte-identical run to run.
    assert_eq!(
        sockline_core::Trace::from_json(&text)
            .unwrap()
            .replay()
            .unwrap(),
        replayed
    );
}

fn kind(o: &Output) -> String {
    let v: serde_json::Value = serde_json::from_str(&o.to_json()).unwrap();
    v["kind"].as_str().unwrap().to_string()
}

#[test]
fn disconnect_while_the_transport_is_still_opening_closes_at_once() {
    let mut h = harness(config());
    h.server.accept = Accept::Hang;
    h.connect().unwrap();
    h.disconnect();
    assert_eq!(h.state(), State::Closed);
    assert!(h.log().iter().any(|(_, o)| o
        == &Output::CloseTransport {
            code: 1000,
            reason: "client closing".into()
        }));
    assert_eq!(h.session.poll_timeout(), None);
}

#[test]
fn a_close_timeout_drops_queued_volatile_messages_too() {
    let mut c = config();
    c.rate_limit = sockline_core::RateLimitConfig::Bucket {
        per_sec: 1,
        burst: 1,
    };
    let mut h = open(c);
    h.send(
        SendRequest::new("cursor", json!(1))
            .id("a")
            .delivery(Delivery::Volatile),
    )
    .unwrap();
    h.send(
        SendRequest::new("cursor", json!(2))
            .id("b")
            .delivery(Delivery::Volatile),
    )
    .unwrap();
    h.disconnect();
    h.advance(5_000); // the peer never confirms the close
    assert_eq!(h.state(), State::Closed);
    assert_eq!(dropped(&h), vec![("b".into(), DropReason::Disconnected)]);
    h.connect().unwrap();
    h.advance(3_000);
    assert_eq!(
        h.server
            .received_app()
            .iter()
            .filter(|e| e.id.as_deref() == Some("b"))
            .count(),
        0
    );
}

#[test]
fn a_stray_ack_does_not_remove_a_message_that_waits_for_none() {
    let mut h = harness(config());
    h.send(SendRequest::new("chat", json!(1)).id("m")).unwrap();
    h.server.auto_welcome = false;
    h.connect().unwrap();
    h.inject(r#"{"type":"ack","data":{"id":"m"}}"#);
    assert!(!h.events().iter().any(|e| matches!(e, Event::Acked { .. })));
    assert_eq!(h.session.stats().queue_depth, 1);
}

// ---- how a transport ended is named by the core --------------------------------------------

#[test]
fn a_lost_transport_and_a_close_without_code_are_named_by_the_core() {
    let mut h = open(config());
    h.with(|s, n| s.transport_lost(n));
    let (from, to, reason) = last_status(&h);
    assert_eq!((from, to), (State::Open, State::Reconnecting));
    assert_eq!(reason, "connection lost (1006)");
    h.advance(1_000);
    assert_eq!(h.state(), State::Open);
    h.with(|s, n| s.transport_closed(n, None, ""));
    assert_eq!(last_status(&h).2, "closed by peer (1005)");
    // News of a transport already gone changes nothing.
    let before = h.log().len();
    h.with(|s, n| s.transport_lost(n));
    assert_eq!(h.log().len(), before);
    // A browser reports a lost transport as a close with 1006: the same loss, the same name.
    h.advance(2_000);
    assert_eq!(h.state(), State::Open);
    h.with(|s, n| s.transport_closed(n, 1006, ""));
    assert_eq!(last_status(&h).2, "connection lost (1006)");
}

#[test]
fn connect_while_reconnecting_opens_the_waiting_attempt_now() {
    let mut c = config();
    c.reconnect.initial_ms = 5_000;
    let mut h = open(c);
    h.with(|s, n| s.transport_lost(n));
    h.advance(100);
    h.with(|s, n| s.connect(n)).unwrap();
    assert_eq!(h.server.opens(), 2, "the button skips the backoff");
    assert_eq!(h.state(), State::Open);
    assert_eq!(
        scheduled(&h),
        vec![(1, 5_000)],
        "the same attempt, announced once"
    );
    // Waiting for the network: the user knows better than the host's offline flag.
    h.with(|s, n| s.offline(n));
    h.with(|s, n| s.transport_lost(n));
    h.advance(30_000);
    assert_eq!(h.server.opens(), 2);
    h.with(|s, n| s.connect(n)).unwrap();
    assert_eq!(h.server.opens(), 3);
    // Open already: connect is still refused.
    assert!(matches!(
        h.with(|s, n| s.connect(n)),
        Err(SessionError::AlreadyActive { .. })
    ));
}

#[test]
fn becoming_visible_while_reconnecting_opens_the_waiting_attempt_at_once() {
    let mut c = config();
    c.reconnect.initial_ms = 5_000;
    let mut h = open(c);
    h.with(|s, n| s.transport_lost(n));
    assert_eq!(scheduled(&h), vec![(1, 5_000)]);
    h.advance(1_000);
    assert_eq!(h.server.opens(), 1);
    h.with(|s, n| s.visible(n));
    assert_eq!(h.server.opens(), 2, "the page in view reconnects now");
    assert_eq!(h.state(), State::Open);
    // The attempt that opened is the one announced: no second announcement, no extra attempt.
    assert_eq!(scheduled(&h), vec![(1, 5_000)]);
    h.advance(10_000);
    assert_eq!(h.server.opens(), 2);
    // Visible while open only probes; visible while offline waits for the network.
    h.with(|s, n| s.offline(n));
    h.with(|s, n| s.transport_lost(n));
    h.with(|s, n| s.visible(n));
    assert_eq!(h.server.opens(), 2);
}

// ---- backpressure ------------------------------------------------------------------------

const BIG: u64 = 2 << 20;

fn backpressure(h: &Harness) -> Vec<(bool, u64)> {
    h.events()
        .iter()
        .filter_map(|e| match e {
            Event::Backpressure {
                blocked,
                buffered_bytes,
            } => Some((*blocked, *buffered_bytes)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_blocked_transport_holds_messages_drops_volatile_ones_and_flushes_when_it_drains() {
    let mut h = open(config());
    assert!(
        !h.with(|s, _| s.should_report_buffered(1 << 20)),
        "at the limit is fine"
    );
    assert!(h.with(|s, _| s.should_report_buffered(BIG)));
    h.with(|s, n| s.buffered(n, BIG));
    assert!(h.with(|s, _| s.is_blocked()));
    assert_eq!(backpressure(&h), vec![(true, BIG)]);
    assert!(
        !h.with(|s, _| s.should_report_buffered(BIG + 1)),
        "still blocked: nothing new"
    );
    let kept = h.send(SendRequest::new("chat", json!(1))).unwrap();
    let lost = h
        .send(SendRequest::new("cursor", json!(2)).delivery(Delivery::Volatile))
        .unwrap();
    h.advance(100);
    assert!(app_types(&h).is_empty(), "nothing sent while blocked");
    assert_eq!(dropped(&h), vec![(lost, DropReason::Backpressure)]);
    assert_eq!(h.session.stats().queue_depth, 1);
    // Pings still go out: the heartbeat must be able to find a dead peer.
    assert!(h.with(|s, _| s.should_report_buffered(0)));
    h.with(|s, n| s.buffered(n, 0));
    assert_eq!(backpressure(&h), vec![(true, BIG), (false, 0)]);
    h.advance(10);
    assert_eq!(app_types(&h), vec!["chat"]);
    assert!(h.transmitted().iter().any(|t| t.contains(&kept)));
}

#[test]
fn a_transport_blocked_for_write_timeout_is_abandoned_then_reconnects_unblocked() {
    let mut c = config();
    c.write_timeout_ms = 2_000;
    c.heartbeat.interval_ms = 60_000;
    let mut h = open(c);
    h.advance(500);
    h.with(|s, n| s.buffered(n, BIG));
    h.advance(1_999);
    assert_eq!(h.state(), State::Open);
    h.with(|s, n| s.buffered(n, BIG + 10)); // still blocked: the deadline does not move
    h.advance(1);
    let closes: Vec<(u16, String)> = h
        .log()
        .iter()
        .filter_map(|(_, o)| match o {
            Output::CloseTransport { code, reason } => Some((*code, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(closes, vec![(4000, "write timeout".to_string())]);
    let (_, to, reason) = last_status(&h);
    assert_eq!(to, State::Reconnecting);
    assert!(
        reason.starts_with("write timeout: 2097162 bytes unsent for 2000 ms"),
        "{reason}"
    );
    assert_eq!(backpressure(&h), vec![(true, BIG), (false, 0)]);
    h.advance(1_000);
    assert_eq!(h.state(), State::Open);
    assert_eq!(h.server.opens(), 2);
    assert!(!h.with(|s, _| s.is_blocked()));
}

#[test]
fn buffered_reports_without_a_live_transport_are_ignored() {
    let mut h = harness(config());
    h.server.accept = Accept::Hang;
    assert!(!h.with(|s, _| s.should_report_buffered(BIG)));
    h.connect().unwrap();
    assert!(!h.with(|s, _| s.should_report_buffered(BIG)));
    h.with(|s, n| s.buffered(n, BIG));
    assert!(backpressure(&h).is_empty());
    assert!(!h.with(|s, _| s.is_blocked()));
}

#[test]
fn a_server_ping_before_welcome_is_answered_and_nothing_else_goes_out() {
    use sockline_core::Session;
    let mut c = config();
    c.user_id = Some("ann".into());
    let mut s = Session::new(c, 1, Timestamp::ZERO).unwrap();
    s.join_project(Timestamp::ZERO, 3).unwrap();
    s.send(Timestamp::ZERO, SendRequest::new("chat", json!(1)))
        .unwrap();
    s.connect(Timestamp::ZERO).unwrap();
    s.transport_opened(Timestamp::from_millis(1));
    s.frame(
        Timestamp::from_millis(2),
        r#"{"type":"ping","data":{"nonce":9}}"#,
    );
    let mut sent = Vec::new();
    while let Some(text) = match s.poll_output() {
        Output::Timeout(_) => None,
        Output::Transmit { text } => Some(Some(text)),
        _ => Some(None),
    } {
        sent.extend(text);
    }
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[0].starts_with(r#"{"type":"hello""#));
    assert_eq!(sent[1], r#"{"type":"pong","data":{"nonce":9}}"#);
}
