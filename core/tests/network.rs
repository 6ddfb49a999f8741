//! Protocol scenarios with both halves in one process: client sessions against the real hub core
//! in virtual time (`sockline_core::testing::Network`). Each runs in milliseconds, never sleeps,
//! and runs the same way every time.

use serde_json::{json, Value};
use sockline_core::hub::{AgentSource, HubSettings, ScriptedAgent};
use sockline_core::testing::{ClientId, LinkFaults, Network};
use sockline_core::{Config, Delivery, Event, ProjectState, SendRequest, State, StreamState};

fn config(user: &str) -> Config {
    let mut c = Config::new("ws://hub.test/ws");
    c.user_id = Some(user.into());
    c
}

/// A network with `users` connected, welcomed, subscribed to everything and in `project`.
fn joined(settings: HubSettings, users: &[&str], project: u64) -> (Network, Vec<ClientId>) {
    let mut net = Network::new(settings, 11);
    let ids: Vec<ClientId> = users
        .iter()
        .map(|u| net.add_client(config(u)).unwrap())
        .collect();
    for &id in &ids {
        net.with(id, |s, now| {
            s.subscribe(now, "*", None).unwrap();
            s.join_project(now, project).unwrap();
            s.connect(now).unwrap();
        });
    }
    net.until(1_000, |n| ids.iter().all(|&id| n.state(id) == State::Open))
        .expect("everyone connects");
    // Let the joins, snapshots and presence settle.
    net.advance(100).unwrap();
    (net, ids)
}

fn notes(net: &Network, id: ClientId) -> Vec<Value> {
    net.messages(id)
        .into_iter()
        .filter(|m| m.msg_type == "note")
        .map(|m| m.data_value())
        .collect()
}

fn send_note(net: &mut Network, id: ClientId, project: u64, n: u64, delivery: Delivery) -> String {
    net.with(id, |s, now| {
        s.send(
            now,
            SendRequest::new("note", json!(n))
                .project(project)
                .delivery(delivery),
        )
        .unwrap()
    })
}

fn acked(net: &Network, id: ClientId) -> Vec<String> {
    net.events(id)
        .into_iter()
        .filter_map(|e| match e {
            Event::Acked { id } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

fn readies(net: &Network, id: ClientId) -> Vec<bool> {
    net.events(id)
        .into_iter()
        .filter_map(|e| match e {
            Event::Ready { resumed, .. } => Some(*resumed),
            _ => None,
        })
        .collect()
}

#[test]
fn resume_replays_what_was_sent_while_away_exactly_once() {
    let (mut net, ids) = joined(HubSettings::default(), &["ann", "bob"], 7);
    let (ann, bob) = (ids[0], ids[1]);
    net.drop_link(bob);
    // While bob is away (the drop reaches him after the latency), ann keeps sending.
    for n in 0..5 {
        send_note(&mut net, ann, 7, n, Delivery::AtMostOnce);
        net.advance(200).unwrap();
    }
    net.until(40_000, |n| notes(n, bob).len() >= 5).unwrap();
    net.advance(2_000).unwrap();
    let got: Vec<Value> = notes(&net, bob);
    assert_eq!(got, (0..5).map(|n| json!(n)).collect::<Vec<_>>());
    assert_eq!(
        readies(&net, bob),
        [false, true],
        "one fresh welcome, then a resume"
    );
    assert_eq!(net.session(bob).stats().duplicates, 0);
}

#[test]
fn at_least_once_survives_twenty_forced_drops_without_loss_or_duplicates() {
    let (mut net, ids) = joined(HubSettings::default(), &["ann", "bob"], 3);
    let (ann, bob) = (ids[0], ids[1]);
    let stable_ms = Config::default().reconnect.stable_ms;
    let mut sent = Vec::new();
    for round in 0..20u64 {
        for k in 0..3 {
            sent.push(send_note(
                &mut net,
                ann,
                3,
                round * 3 + k,
                Delivery::AtLeastOnce,
            ));
        }
        net.advance(3).unwrap();
        // Alternate whose link is cut, mid-flight.
        net.drop_link(if round % 2 == 0 { ann } else { bob });
        net.until(60_000, |n| {
            n.state(ann) == State::Open && n.state(bob) == State::Open
        })
        .unwrap();
        // Past the stable period, so the backoff starts over (else 5 attempts end it).
        net.advance(stable_ms).unwrap();
    }
    net.until(60_000, |n| acked(n, ann).len() >= sent.len())
        .unwrap();
    net.advance(5_000).unwrap();
    let mut got_acks = acked(&net, ann);
    got_acks.sort();
    let mut want = sent.clone();
    want.sort();
    assert_eq!(got_acks, want, "every message acked once");
    let got: Vec<Value> = notes(&net, bob);
    let want: Vec<Value> = (0..60).map(|n| json!(n)).collect();
    assert_eq!(got, want, "delivered once each, in order");
    assert!(net.session(ann).stats().reconnects >= 10);
}

#[test]
fn a_vanished_typist_expires_on_the_other_side() {
    let (mut net, ids) = joined(HubSettings::default(), &["ann", "bob"], 5);
    let (ann, bob) = (ids[0], ids[1]);
    net.with(ann, |s, now| s.start_typing(now, 5).unwrap());
    net.until(1_000, |n| n.session(bob).typing_users(5) == ["ann"])
        .unwrap();
    // Ann's link goes half-open: no stop will ever come.
    net.stall_link(ann);
    let took = net
        .until(30_000, |n| n.session(bob).typing_users(5).is_empty())
        .unwrap();
    let expiry = Config::default().typing.expire_ms;
    assert!(
        took <= expiry + 100,
        "expired after {took} ms (expiry {expiry})"
    );
    let typing: Vec<Vec<String>> = net
        .events(bob)
        .into_iter()
        .filter_map(|e| match e {
            Event::Typing { users, .. } => Some(users.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(typing, [vec!["ann".to_string()], vec![]]);
}

fn stream_text(net: &Network, id: ClientId, stream: &str) -> (String, Vec<StreamState>) {
    let text = net
        .session(id)
        .stream_content(stream)
        .unwrap_or("")
        .to_string();
    let states = net
        .events(id)
        .into_iter()
        .filter_map(|e| match e {
            Event::Stream {
                stream_id, state, ..
            } if stream_id == stream => Some(*state),
            _ => None,
        })
        .filter(|s| !matches!(s, StreamState::Delta))
        .collect();
    (text, states)
}

fn prompt(net: &mut Network, id: ClientId, stream: &str) {
    net.with(id, |s, now| {
        s.send(
            now,
            SendRequest::new("agent_prompt", json!({"prompt": "hi", "streamId": stream})),
        )
        .unwrap()
    });
}

#[test]
fn an_agent_stream_resumes_across_a_hub_restart_and_fails_on_a_hub_that_lost_it() {
    let settings = HubSettings {
        agent_chunk_ms: 20,
        ..HubSettings::default()
    };
    let whole = ScriptedAgent { chunks: 30 }.answer("hi").concat();
    for keep_state in [true, false] {
        let mut net =
            Network::new(settings.clone(), 5).with_agent(Some(ScriptedAgent { chunks: 30 }));
        let ann = net.add_client(config("ann")).unwrap();
        net.with(ann, |s, now| s.connect(now).unwrap());
        net.until(1_000, |n| n.state(ann) == State::Open).unwrap();
        prompt(&mut net, ann, "r1");
        net.until(2_000, |n| {
            n.session(ann)
                .stream_content("r1")
                .is_some_and(|t| t.len() > 20)
        })
        .unwrap();
        net.restart_hub(keep_state, 300);
        let finished = |n: &Network| {
            n.session(ann)
                .stream_state("r1")
                .is_some_and(|s| matches!(s, StreamState::Done | StreamState::Failed))
        };
        net.until(30_000, finished).unwrap();
        let (text, states) = stream_text(&net, ann, "r1");
        if keep_state {
            assert_eq!(text, whole, "exactly the undisturbed answer, once");
            assert_eq!(*states.last().unwrap(), StreamState::Done);
            assert_eq!(readies(&net, ann), [false, true]);
        } else {
            assert_eq!(*states.last().unwrap(), StreamState::Failed, "{states:?}");
            assert_eq!(readies(&net, ann), [false, false]);
        }
    }
}

#[test]
fn interrupting_a_stream_stops_it_on_both_sides() {
    let settings = HubSettings {
        agent_chunk_ms: 20,
        ..HubSettings::default()
    };
    let (mut net, ids) = joined(settings, &["ann"], 1);
    let ann = ids[0];
    prompt(&mut net, ann, "r2");
    net.until(2_000, |n| {
        n.session(ann)
            .stream_content("r2")
            .is_some_and(|t| !t.is_empty())
    })
    .unwrap();
    net.with(ann, |s, now| s.interrupt_stream(now, "r2").unwrap());
    let len = net.session(ann).stream_content("r2").unwrap().len();
    net.advance(2_000).unwrap();
    assert_eq!(
        net.session(ann).stream_state("r2"),
        Some(StreamState::Interrupted)
    );
    assert_eq!(net.session(ann).stream_content("r2").unwrap().len(), len);
    let relayed = net.hub().relayed();
    net.advance(2_000).unwrap();
    assert_eq!(net.hub().relayed(), relayed, "the hub stopped streaming");
}

#[test]
fn a_project_update_lost_on_the_way_is_recovered_from_the_log_in_order() {
    let (mut net, ids) = joined(HubSettings::default(), &["ann", "bob"], 9);
    let (ann, bob) = (ids[0], ids[1]);
    let update = |net: &mut Network, v: u64| {
        net.with(ann, |s, now| {
            s.send(
                now,
                SendRequest::new("project_update", json!({"title": v})).project(9),
            )
            .unwrap()
        });
        net.advance(50).unwrap();
    };
    update(&mut net, 1);
    // Every frame to bob breaks for a moment: he misses version 2.
    net.set_faults(LinkFaults {
        corrupt: 1.0,
        ..LinkFaults::default()
    });
    update(&mut net, 2);
    net.set_faults(LinkFaults::default());
    update(&mut net, 3);
    net.advance(500).unwrap();
    // Version 3 showed the hole in the log: bob joined again from his position, and the
    // replay brought 2 and 3, in order, once each; no snapshot was needed.
    let versions: Vec<u64> = net
        .messages(bob)
        .into_iter()
        .filter(|m| m.msg_type == "project_updated")
        .filter_map(|m| m.data_value()["version"].as_u64())
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    let events = net.events(bob);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Gap { project_id: 9, .. })));
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Rejoined {
                project_id: 9,
                recovered: true,
                replayed: 2,
                ..
            }
        )),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| matches!(
        e,
        Event::Project {
            state: ProjectState::Stale,
            ..
        }
    )));
    assert_eq!(net.session(bob).project_version(9), Some(3));
}

#[test]
fn a_slow_consumer_is_cut_off_by_the_hub_then_resumes_with_nothing_lost() {
    let (mut net, ids) = joined(HubSettings::default(), &["ann", "bob"], 2);
    let (ann, bob) = (ids[0], ids[1]);
    net.set_outbound_queue(16);
    net.stop_reading(bob);
    for n in 0..40 {
        send_note(&mut net, ann, 2, n, Delivery::AtMostOnce);
    }
    net.advance(100).unwrap();
    assert_ne!(net.state(bob), State::Open, "the hub let bob go");
    net.until(30_000, |n| notes(n, bob).len() >= 40).unwrap();
    assert_eq!(
        notes(&net, bob),
        (0..40).map(|n| json!(n)).collect::<Vec<_>>()
    );
    assert_eq!(readies(&net, bob), [false, true]);
}

#[test]
fn over_the_rate_the_hub_warns_and_the_client_paces_itself() {
    let settings = HubSettings {
        rate_limit: sockline_core::RateLimitConfig::Bucket {
            per_sec: 20,
            burst: 5,
        },
        ..HubSettings::default()
    };
    let (mut net, ids) = joined(settings, &["ann", "bob"], 4);
    let (ann, bob) = (ids[0], ids[1]);
    for n in 0..8 {
        send_note(&mut net, ann, 4, n, Delivery::AtLeastOnce);
    }
    // The hub refuses what exceeds its rate; the client resends it after the pause it names.
    net.until(20_000, |n| acked(n, ann).len() == 8).unwrap();
    let warned = net.events(ann).into_iter().any(
        |e| matches!(e, Event::ServerError { code, retry_after_ms: Some(_), .. } if code == "rate_limited"),
    );
    assert!(warned, "the hub said rate_limited with a hint");
    assert_eq!(net.state(ann), State::Open, "a warning, not a disconnect");
    assert_eq!(
        notes(&net, bob),
        (0..8).map(|n| json!(n)).collect::<Vec<_>>()
    );
}

#[test]
fn a_refused_token_waits_for_a_new_one_and_gets_in() {
    let settings = HubSettings {
        token: Some("right".into()),
        ..HubSettings::default()
    };
    let mut net = Network::new(settings, 3);
    let mut c = config("ann");
    c.token = Some(sockline_core::Secret::new("wrong"));
    let ann = net.add_client(c).unwrap();
    net.with(ann, |s, now| s.connect(now).unwrap());
    net.until(1_000, |n| n.state(ann) == State::Unauthorized)
        .unwrap();
    assert!(net
        .events(ann)
        .iter()
        .any(|e| matches!(e, Event::TokenRequired { .. })));
    // It waits, however long, without hammering the hub.
    net.advance(60_000).unwrap();
    assert_eq!(net.state(ann), State::Unauthorized);
    net.with(ann, |s, now| s.set_token(now, "right", None).unwrap());
    net.until(1_000, |n| n.state(ann) == State::Open).unwrap();
}

#[test]
fn a_half_open_link_is_found_by_the_heartbeat_and_the_session_resumes() {
    let (mut net, ids) = joined(HubSettings::default(), &["ann", "bob"], 6);
    let (ann, bob) = (ids[0], ids[1]);
    net.stall_link(bob);
    let hb = Config::default().heartbeat;
    let took = net.until(120_000, |n| n.state(bob) != State::Open).unwrap();
    assert!(
        took <= hb.interval_ms + hb.timeout_ms + 100,
        "took {took} ms"
    );
    send_note(&mut net, ann, 6, 1, Delivery::AtMostOnce);
    net.until(60_000, |n| notes(n, bob).len() == 1).unwrap();
    assert_eq!(net.state(bob), State::Open);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = || {
        let (mut net, ids) = joined(HubSettings::default(), &["ann", "bob", "cy"], 1);
        net.set_faults(LinkFaults {
            drop: 0.05,
            delay_ms: 30,
            corrupt: 0.02,
        });
        for n in 0..30 {
            send_note(&mut net, ids[(n % 3) as usize], 1, n, Delivery::AtLeastOnce);
            net.advance(40).unwrap();
        }
        net.set_faults(LinkFaults::default());
        net.advance(20_000).unwrap();
        ids.iter()
            .map(|&id| {
                net.log(id)
                    .iter()
                    .map(|(at, o)| o.to_json_at(*at))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let (a, b) = (run(), run());
    assert!(a.iter().all(|log| log.len() > 50));
    assert_eq!(a, b);
}

#[test]
fn swallowed_pongs_end_the_link_and_delayed_ones_do_not() {
    use sockline_core::hub::ChaosConfig;
    let hb = Config::default().heartbeat;
    for (chaos, survives) in [
        (
            ChaosConfig {
                swallow_pongs: true,
                ..ChaosConfig::default()
            },
            false,
        ),
        (
            ChaosConfig {
                pong_delay_ms: Some(hb.timeout_ms / 2),
                ..ChaosConfig::default()
            },
            true,
        ),
    ] {
        let settings = HubSettings {
            chaos,
            ..HubSettings::default()
        };
        let (mut net, ids) = joined(settings, &["ann"], 1);
        let ann = ids[0];
        net.advance(hb.interval_ms * 3).unwrap();
        let abandoned = net.events(ann).iter().any(|e| {
            matches!(e, Event::Status { to: State::Reconnecting, reason, .. } if reason.contains("heartbeat timeout"))
        });
        assert_eq!(abandoned, !survives, "{:?}", net.events(ann));
        if survives {
            assert!(net.session(ann).stats().last_rtt_ms.unwrap() >= hb.timeout_ms / 2);
        }
    }
}

#[test]
fn a_message_too_big_to_relay_is_refused_and_dropped_not_lost_silently() {
    let settings = HubSettings {
        max_frame_bytes: 400,
        ..HubSettings::default()
    };
    let (mut net, ids) = joined(settings, &["ann", "bob"], 2);
    let (ann, bob) = (ids[0], ids[1]);
    let id = net.with(ann, |s, now| {
        s.send(
            now,
            SendRequest::new("note", json!("x".repeat(350)))
                .project(2)
                .delivery(Delivery::AtLeastOnce),
        )
        .unwrap()
    });
    net.advance(1_000).unwrap();
    let dropped = net.events(ann).into_iter().any(|e| {
        matches!(e, Event::Dropped { id: d, reason: sockline_core::DropReason::Rejected, .. } if *d == id)
    });
    assert!(dropped, "{:?}", net.events(ann));
    assert!(notes(&net, bob).is_empty());
    assert_eq!(net.state(ann), State::Open, "a refusal, not a disconnect");
    // Nothing is resent after a reconnect: the refusal was final.
    net.drop_link(ann);
    net.until(30_000, |n| n.state(ann) == State::Open).unwrap();
    net.advance(1_000).unwrap();
    assert!(notes(&net, bob).is_empty());
}

#[test]
fn corrupt_frames_are_protocol_errors_the_link_stays_up_and_the_log_fills_the_holes() {
    let (mut net, ids) = joined(HubSettings::default(), &["ann", "bob"], 8);
    let (ann, bob) = (ids[0], ids[1]);
    net.set_faults(LinkFaults {
        corrupt: 0.5,
        ..LinkFaults::default()
    });
    for n in 0..20 {
        send_note(&mut net, ann, 8, n, Delivery::AtMostOnce);
    }
    net.advance(500).unwrap();
    assert!(net.session(bob).stats().protocol_errors > 0);
    assert_eq!(net.state(bob), State::Open);
    // A broken frame is noticed at the next whole one of its project: once frames get through
    // again, one more note shows any hole left, and the rejoin's replay fills it (a join whose
    // answer broke is asked again after the connect timeout).
    net.set_faults(LinkFaults::default());
    send_note(&mut net, ann, 8, 20, Delivery::AtMostOnce);
    net.until(30_000, |n| notes(n, bob).len() >= 21).unwrap();
    net.advance(1_000).unwrap();
    let want: Vec<Value> = (0..21).map(|n| json!(n)).collect();
    assert_eq!(notes(&net, bob), want, "every note, in order, once");
    assert_eq!(net.state(bob), State::Open);
}

#[test]
fn work_that_never_lets_time_move_is_reported_as_a_livelock() {
    use sockline_core::testing::{DriveError, Watchdog};
    let t = sockline_core::Timestamp::from_millis(7);
    let mut dog = Watchdog::new(t);
    let first_error = (0..200_000).position(|_| dog.check(t).is_err());
    assert_eq!(
        first_error,
        Some(100_000),
        "100,000 steps at one instant are allowed"
    );
    assert!(matches!(dog.check(t), Err(DriveError::Livelock { now, .. }) if now == t));
    // Time moving on resets it.
    assert!(dog.check(t.add_ms(1)).is_ok());
    assert!(dog.check(t.add_ms(1)).is_ok());
}

#[test]
fn a_reader_that_pauses_below_the_queue_limit_gets_everything_when_it_reads_again() {
    let (mut net, ids) = joined(HubSettings::default(), &["ann", "bob"], 2);
    let (ann, bob) = (ids[0], ids[1]);
    net.stop_reading(bob);
    for n in 0..5 {
        send_note(&mut net, ann, 2, n, Delivery::AtMostOnce);
    }
    net.advance(1_000).unwrap();
    assert!(notes(&net, bob).is_empty(), "held on the hub's side");
    net.resume_reading(bob);
    net.advance(100).unwrap();
    assert_eq!(
        notes(&net, bob),
        (0..5).map(|n| json!(n)).collect::<Vec<_>>()
    );
    assert_eq!(readies(&net, bob), [false], "the same link throughout");
}

#[test]
fn a_dead_node_s_clients_fail_over_and_recover_every_project_message_from_the_shared_log() {
    const NODES: [&str; 3] = ["ws://n0.test/ws", "ws://n1.test/ws", "ws://n2.test/ws"];
    let mut net = Network::with_nodes(HubSettings::default(), 5, &NODES);
    // Six clients, two per node, all in project 4, each failing over to the next node.
    let ids: Vec<ClientId> = (0..6)
        .map(|i| {
            let mut c = config(&format!("u{i}"));
            c.url.clear();
            c.urls = (0..3).map(|k| NODES[(i + k) % 3].to_string()).collect();
            net.add_client(c).unwrap()
        })
        .collect();
    for &id in &ids {
        net.with(id, |s, now| {
            s.subscribe(now, "*", None).unwrap();
            s.join_project(now, 4).unwrap();
            s.connect(now).unwrap();
        });
    }
    net.until(2_000, |n| {
        ids.iter()
            .all(|&id| n.session(id).project_version(4).is_some())
    })
    .unwrap();
    assert_eq!(net.node(0).connections(), 2);
    // Traffic from the clients of nodes 1 and 2 while node 0 dies and its clients move.
    for n in 0..10 {
        send_note(
            &mut net,
            ids[1 + (n as usize % 2) * 3],
            4,
            n,
            Delivery::AtLeastOnce,
        );
        if n == 3 {
            net.kill_node(0);
        }
        net.advance(200).unwrap();
    }
    net.advance(10_000).unwrap();
    assert_eq!(net.node(0).connections(), 0, "the dead node holds nobody");
    let want: Vec<Value> = (0..10).map(|n| json!(n)).collect();
    for (i, &id) in ids.iter().enumerate() {
        assert_eq!(net.state(id), State::Open, "client {i}");
        let got = notes(&net, id);
        if i == 1 || i == 4 {
            // A sender does not get its own notes back: the other sender's five.
            assert_eq!(got.len(), 5, "client {i}: {got:?}");
        } else {
            assert_eq!(got, want, "client {i}: every note, in order, once");
        }
    }
    // The dead node's clients rejoined elsewhere and recovered from their position.
    for i in [0, 3] {
        let recovered = net.events(ids[i]).into_iter().any(|e| {
            matches!(
                e,
                Event::Rejoined {
                    project_id: 4,
                    recovered: true,
                    ..
                }
            )
        });
        assert!(recovered, "client {i}: {:?}", net.events(ids[i]));
    }
}

const THREE: [&str; 3] = ["ws://n0.test/ws", "ws://n1.test/ws", "ws://n2.test/ws"];

/// A client of `user` that starts on node `first` and fails over through `urls` after it.
fn on_nodes(net: &mut Network, user: &str, urls: &[&str]) -> ClientId {
    let mut c = config(user);
    c.url.clear();
    c.urls = urls.iter().map(|u| u.to_string()).collect();
    net.add_client(c).unwrap()
}

fn join_all(net: &mut Network, ids: &[ClientId], project: u64) {
    for &id in ids {
        net.with(id, |s, now| {
            s.subscribe(now, "*", None).unwrap();
            s.join_project(now, project).unwrap();
            s.connect(now).unwrap();
        });
    }
    net.until(2_000, |n| {
        ids.iter()
            .all(|&id| n.session(id).project_version(project).is_some())
    })
    .unwrap();
    net.advance(100).unwrap();
}

#[test]
fn presence_spans_every_node_and_a_dead_node_s_users_leave_everywhere() {
    let mut net = Network::with_nodes(HubSettings::default(), 8, &THREE);
    // ann can only reach node 0: when it dies she is gone.
    let ann = on_nodes(&mut net, "ann", &THREE[..1]);
    let bob = on_nodes(&mut net, "bob", &[THREE[1]]);
    let cat = on_nodes(&mut net, "cat", &[THREE[2]]);
    join_all(&mut net, &[ann, bob, cat], 5);
    for id in [ann, bob, cat] {
        assert_eq!(
            net.session(id).presence(5),
            ["ann", "bob", "cat"],
            "everyone sees everyone, whichever node they are on"
        );
    }
    // A second connection of bob's, through another node, changes nobody's view.
    let bob2 = on_nodes(&mut net, "bob", &[THREE[0]]);
    join_all(&mut net, &[bob2], 5);
    assert_eq!(net.session(cat).presence(5), ["ann", "bob", "cat"]);
    net.kill_node(0);
    net.advance(500).unwrap();
    for id in [bob, cat] {
        assert_eq!(
            net.session(id).presence(5),
            ["bob", "cat"],
            "ann left with her node; bob stays through his other connection"
        );
    }
}

#[test]
fn a_session_resumes_on_another_node() {
    let mut net = Network::with_nodes(HubSettings::default(), 9, &THREE);
    let ann = on_nodes(&mut net, "ann", &THREE);
    join_all(&mut net, &[ann], 2);
    net.drop_link(ann);
    // The next attempt goes to node 1, which never saw the session: the broker knows it.
    net.until(10_000, |n| readies(n, ann).len() == 2).unwrap();
    assert_eq!(readies(&net, ann), [false, true]);
    let sessions: Vec<String> = net
        .events(ann)
        .into_iter()
        .filter_map(|e| match e {
            Event::Ready { session_id, .. } => Some(session_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(sessions[0], sessions[1], "the same session");
    assert_eq!(net.node(1).sessions(), 1, "node 1 holds it now");
}

#[test]
fn a_message_logged_by_a_node_that_died_before_its_ack_is_logged_once() {
    let mut net = Network::with_nodes(HubSettings::default(), 10, &THREE);
    net.set_latency_ms(50);
    let ann = on_nodes(&mut net, "ann", &THREE);
    let bob = on_nodes(&mut net, "bob", &[THREE[1]]);
    join_all(&mut net, &[ann, bob], 3);
    // What node 0 sends ann piles up unread, so its ack dies with it.
    net.stop_reading(ann);
    let id = send_note(&mut net, ann, 3, 1, Delivery::AtLeastOnce);
    net.advance(75).unwrap();
    assert_eq!(net.broker().log(3).len(), 1, "logged by node 0");
    net.kill_node(0);
    net.until(20_000, |n| acked(n, ann).contains(&id)).unwrap();
    net.advance(1_000).unwrap();
    assert_eq!(
        net.broker().log(3).len(),
        1,
        "the resend through node 1 is the same message: logged once"
    );
    assert_eq!(notes(&net, bob), [json!(1)], "bob gets it once");
    assert_eq!(net.session(ann).stats().dropped, 0);
}
