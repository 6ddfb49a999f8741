//! Properties over random input sequences (proptest): bounds, conservation, backoff, determinism,
//! no transmit while not open, deadlines always ahead, and the feature invariants.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::{json, Value};
use sockline_core::{
    Config, Delivery, Event, Input, Jitter, Output, Overflow, RateLimitConfig, SendRequest,
    Session, State, TimedInput, Timestamp, Trace,
};

// ---- generators --------------------------------------------------------------------------

fn server_frame() -> impl Strategy<Value = String> {
    let welcome = prop_oneof![
        Just(r#"{"type":"welcome","data":{"sessionId":"s1"}}"#.to_string()),
        Just(r#"{"type":"welcome","data":{"sessionId":"s1","resumed":true}}"#.to_string()),
        Just(r#"{"type":"welcome","data":{"sessionId":"s2","lastSeq":5}}"#.to_string()),
    ];
    let app = (
        0u64..12,
        prop::option::of(0u64..4),
        prop::option::of(0u8..6),
    )
        .prop_map(|(seq, project, id)| {
            let mut v = json!({"type": "note", "data": {"n": seq}, "seq": seq});
            if let Some(p) = project {
                v["projectId"] = p.into();
            }
            if let Some(i) = id {
                v["id"] = format!("srv{i}").into();
            }
            v.to_string()
        });
    let feature = prop_oneof![
        (0u64..3, 0u64..6).prop_map(|(s, q)| json!({"type":"agent_stream_chunk","data":{"streamId":format!("a{s}"),"seq":q,"delta":"xy"}}).to_string()),
        (0u64..3).prop_map(|p| json!({"type":"project_updated","projectId":p,"data":{"version":p*2+1}}).to_string()),
        (0u64..3).prop_map(|p| json!({"type":"user_typing_start","projectId":p,"data":{"userId":"bob"}}).to_string()),
        (0u64..3).prop_map(|p| json!({"type":"presence_state","projectId":p,"data":{"members":["a","b"]}}).to_string()),
    ];
    prop_oneof![
        3 => welcome,
        2 => (1u64..6).prop_map(|n| format!(r#"{{"type":"pong","data":{{"nonce":{n}}}}}"#)),
        2 => "[a-z0-9]{6}".prop_map(|id| format!(r#"{{"type":"ack","data":{{"id":"{id}"}}}}"#)),
        1 => (prop_oneof![Just("rate_limited"), Just("overloaded"), Just("unauthorized")], 0u64..5000)
            .prop_map(|(c, ms)| format!(r#"{{"type":"error","data":{{"code":"{c}","retryAfterMs":{ms}}}}}"#)),
        4 => app,
        2 => feature,
        1 => ".{0,40}",
        1 => (1usize..100).prop_map(|d| format!(r#"{{"type":"x","data":{}{}}}"#, "[".repeat(d), "]".repeat(d))),
    ]
}

fn send_request(with_ids: bool) -> impl Strategy<Value = SendRequest> {
    (
        prop_oneof![
            Just("chat"),
            Just("cursor"),
            Just("order"),
            Just("hello"),
            Just("bad type")
        ],
        0usize..300,
        prop_oneof![
            Just(Delivery::Volatile),
            Just(Delivery::AtMostOnce),
            Just(Delivery::AtLeastOnce)
        ],
        prop::option::of(0u64..20_000),
        prop::option::of(prop_oneof![Just("k1"), Just("k2")]),
        prop::option::of(0u8..4),
        prop::option::of(0u64..4),
    )
        .prop_map(move |(t, size, delivery, ttl, coalesce, id, project)| {
            let mut r = SendRequest::new(t, json!("x".repeat(size))).delivery(delivery);
            r.ttl_ms = ttl;
            r.coalesce = coalesce.map(str::to_string);
            r.project_id = project;
            if with_ids {
                r.id = id.map(|i| format!("u{i}"));
            }
            r
        })
}

fn input(with_ids: bool) -> impl Strategy<Value = Input> {
    let close_reason = prop_oneof![
        Just(String::new()),
        (0u64..9000).prop_map(|ms| format!(r#"{{"retryAfterMs": {ms}}}"#))
    ];
    prop_oneof![
        2 => Just(Input::Connect),
        1 => Just(Input::Disconnect),
        4 => Just(Input::TransportOpened),
        3 => (prop_oneof![Just(Some(1000u16)), Just(Some(1001)), Just(None), Just(Some(1011)), Just(Some(4001)), Just(Some(1008)), Just(Some(4008))], close_reason)
            .prop_map(|(code, reason)| Input::TransportClosed { code, reason }),
        1 => Just(Input::TransportLost),
        2 => prop_oneof![Just(0u64), Just(100), Just(1 << 21)].prop_map(|bytes| Input::Buffered { bytes }),
        1 => Just(Input::TransportError { message: "boom".into() }),
        8 => server_frame().prop_map(|text| Input::Frame { text }),
        1 => (0usize..100).prop_map(|len| Input::BinaryFrame { len }),
        6 => send_request(with_ids).prop_map(Input::Send),
        1 => (prop_oneof![Just("*"), Just("note"), Just("agent_*"), Just("a*b")], prop::option::of(0u64..3))
            .prop_map(|(p, project_id)| Input::Subscribe { pattern: p.to_string(), project_id }),
        1 => (1u64..4).prop_map(|id| Input::Unsubscribe { id: sockline_core::SubscriptionId(id) }),
        1 => Just(Input::Online),
        1 => Just(Input::Offline),
        1 => Just(Input::Visible),
        1 => (0u64..3).prop_map(|project_id| Input::StartTyping { project_id }),
        1 => (0u64..3).prop_map(|project_id| Input::JoinProject { project_id }),
        1 => (0u64..3).prop_map(|s| Input::InterruptStream { stream_id: format!("a{s}") }),
        1 => Just(Input::Timeout),
        1 => (0u64..200_000).prop_map(|ms| Input::Suspend { ms }),
    ]
}

fn steps(with_ids: bool) -> impl Strategy<Value = Vec<(u64, Input)>> {
    prop::collection::vec(
        (
            prop_oneof![4 => 0u64..50, 3 => 0u64..2_000, 1 => 0u64..40_000],
            input(with_ids),
        ),
        1..80,
    )
}

fn config() -> impl Strategy<Value = Config> {
    (
        1usize..6,
        200usize..2_000,
        prop_oneof![
            Just(Overflow::DropOldest),
            Just(Overflow::DropNewest),
            Just(Overflow::Reject)
        ],
        prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)],
        prop::option::of((1u32..5, 1u32..5)),
        prop::option::of(1u32..8),
    )
        .prop_map(
            |(max_messages, max_bytes, overflow, jitter, rate, attempts)| {
                let mut c = Config::new("ws://127.0.0.1:9/ws");
                c.outbox.max_messages = max_messages;
                c.outbox.max_bytes = max_bytes;
                c.outbox.overflow = overflow;
                c.reconnect.jitter = jitter;
                c.reconnect.max_attempts = attempts;
                c.user_id = Some("me".into());
                c.rate_limit = match rate {
                    Some((per_sec, burst)) => RateLimitConfig::Bucket { per_sec, burst },
                    None => RateLimitConfig::Off,
                };
                c
            },
        )
}

// ---- the runner --------------------------------------------------------------------------

/// One call's effect: when, what came out, and the state after it.
struct Call {
    at: Timestamp,
    outputs: Vec<Output>,
    result: Option<Result<sockline_core::Outcome, sockline_core::SessionError>>,
    input: Option<Input>,
}

/// Applies the steps like the replay does: due deadlines fire first, each at its deadline.
fn run(
    cfg: &Config,
    seed: u64,
    steps: &[(u64, Input)],
    mut check: impl FnMut(&Session, &Call),
) -> Vec<Call> {
    let mut s = Session::new(cfg.clone(), seed, Timestamp::ZERO).unwrap();
    let mut now = Timestamp::ZERO;
    let mut calls = Vec::new();
    for (dt, input) in steps {
        let target = now.add_ms(*dt);
        fire_due(&mut s, &mut now, target, &mut calls, &mut check);
        now = target;
        let result = s.handle_input(now, input.clone());
        if matches!(input, Input::Timeout) {
            assert!(s.poll_timeout().is_none_or(|d| d.at > now));
        }
        // As in the replay: after a suspension the host wakes, and what fell due while it
        // slept fires at the wake time.
        let label = match input {
            Input::Suspend { ms } => now.add_ms(*ms),
            _ => now,
        };
        let call = Call {
            at: label,
            outputs: drain(&mut s),
            result: Some(result),
            input: Some(input.clone()),
        };
        check(&s, &call);
        calls.push(call);
        if label > now {
            now = label;
            fire_due(&mut s, &mut now, label, &mut calls, &mut check);
        }
    }
    calls
}

fn fire_due(
    s: &mut Session,
    now: &mut Timestamp,
    until: Timestamp,
    calls: &mut Vec<Call>,
    check: &mut impl FnMut(&Session, &Call),
) {
    while let Some(d) = s.poll_timeout() {
        if d.at > until {
            break;
        }
        let t = d.at.max(*now);
        s.handle_timeout(t);
        *now = t;
        let after = s.poll_timeout();
        assert!(
            after.is_none_or(|d| d.at > t),
            "deadline {after:?} not after {t:?}"
        );
        let call = Call {
            at: t,
            outputs: drain(s),
            result: None,
            input: None,
        };
        check(s, &call);
        calls.push(call);
    }
}

fn drain(s: &mut Session) -> Vec<Output> {
    let mut out = Vec::new();
    loop {
        match s.poll_output() {
            Output::Timeout(_) => return out,
            o => out.push(o),
        }
    }
}

fn app_frame(text: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(text).ok()?;
    let t = v["type"].as_str()?;
    (!["hello", "ping", "pong"].contains(&t)).then_some(v)
}

// ---- issue 2 properties ------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn outbox_never_exceeds_its_limits(cfg in config(), seed in any::<u64>(), steps in steps(true)) {
        run(&cfg, seed, &steps, |s, _| {
            let st = s.stats();
            assert!(st.queue_depth <= cfg.outbox.max_messages, "{} > {}", st.queue_depth, cfg.outbox.max_messages);
            assert!(st.queue_bytes <= cfg.outbox.max_bytes, "{} > {}", st.queue_bytes, cfg.outbox.max_bytes);
        });
    }

    #[test]
    fn every_sent_id_ends_in_exactly_one_place(cfg in config(), seed in any::<u64>(), steps in steps(false)) {
        // Only user sends enter the outbox here: interrupts and typing would add the session's own.
        let steps: Vec<(u64, Input)> = steps
            .into_iter()
            .filter(|(_, i)| !matches!(i, Input::InterruptStream { .. } | Input::StartTyping { .. }))
            .collect();
        let mut s_final = None;
        let calls = run(&cfg, seed, &steps, |s, _| s_final = Some(s.stats()));
        let mut delivery = BTreeMap::new();
        let mut transmitted: BTreeMap<String, usize> = BTreeMap::new();
        let mut dropped: BTreeMap<String, usize> = BTreeMap::new();
        let mut acked: BTreeSet<String> = BTreeSet::new();
        let mut rejected = 0;
        for c in &calls {
            if let (Some(Input::Send(req)), Some(r)) = (&c.input, &c.result) {
                match r {
                    Ok(sockline_core::Outcome::Sent(id)) => { delivery.insert(id.clone(), req.delivery); }
                    Ok(other) => panic!("send returned {other:?}"),
                    Err(_) => rejected += 1,
                }
            }
            for o in &c.outputs {
                match o {
                    Output::Transmit { text } => if let Some(id) = app_frame(text).and_then(|v| v["id"].as_str().map(str::to_string)) {
                        *transmitted.entry(id).or_default() += 1;
                    },
                    Output::Event(Event::Dropped { id, .. }) => *dropped.entry(id.clone()).or_default() += 1,
                    Output::Event(Event::Acked { id }) => { assert!(acked.insert(id.clone()), "acked twice: {id}"); }
                    _ => {}
                }
            }
        }
        let _ = rejected;
        let mut held = 0;
        for (id, d) in &delivery {
            let t = transmitted.get(id).copied().unwrap_or(0);
            let dr = dropped.get(id).copied().unwrap_or(0);
            let ack = acked.contains(id);
            prop_assert!(dr <= 1, "{id} dropped {dr} times");
            prop_assert!(!(dr == 1 && ack), "{id} both dropped and acked");
            match d {
                Delivery::AtLeastOnce => if dr == 0 && !ack { held += 1 },
                _ => {
                    prop_assert!(t + dr <= 1, "{id}: transmitted {t}, dropped {dr}");
                    if t + dr == 0 { held += 1 }
                }
            }
        }
        // Nothing the session invented was transmitted under a user id it never returned.
        for id in transmitted.keys() {
            prop_assert!(delivery.contains_key(id) || !id.starts_with('u'), "unknown id {id} transmitted");
        }
        prop_assert_eq!(held, s_final.map_or(0, |s| s.queue_depth));
    }

    #[test]
    fn app_messages_are_only_transmitted_while_open(cfg in config(), seed in any::<u64>(), steps in steps(true)) {
        let mut state = State::Idle;
        for c in run(&cfg, seed, &steps, |_, _| {}) {
            for o in &c.outputs {
                match o {
                    Output::Event(Event::Status { to, .. }) => state = *to,
                    Output::Transmit { text } => if let Some(v) = app_frame(text) {
                        prop_assert_eq!(state, State::Open, "{} sent while {}", v, state);
                    },
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn same_seed_and_inputs_give_identical_outputs(cfg in config(), seed in any::<u64>(), steps in steps(true)) {
        let lines = |calls: Vec<Call>| -> Vec<String> {
            calls.iter().flat_map(|c| c.outputs.iter().map(|o| o.to_json_at(c.at)).collect::<Vec<_>>()).collect()
        };
        let first = run(&cfg, seed, &steps, |_, _| {});
        // The trace holds each input at the time the runner applied it.
        let inputs = first
            .iter()
            .filter_map(|c| {
                let input = c.input.clone()?;
                let at = match input {
                    Input::Suspend { ms } => Timestamp::from_millis(c.at.as_millis() - ms),
                    _ => c.at,
                };
                Some(TimedInput { at, input })
            })
            .collect();
        let a = lines(first);
        let b = lines(run(&cfg, seed, &steps, |_, _| {}));
        prop_assert_eq!(&a, &b);
        let trace = Trace { config: cfg.clone(), seed, inputs };
        let r1 = trace.replay().unwrap();
        prop_assert_eq!(&r1, &trace.replay().unwrap());
        let outputs: Vec<String> = r1.into_iter().filter(|l| !l.contains(r#""kind":"input_error""#)).collect();
        prop_assert_eq!(outputs, a);
    }

    #[test]
    fn backoff_delays_stay_within_the_cap_or_the_hint(cfg in config(), seed in any::<u64>(), steps in steps(true)) {
        for c in run(&cfg, seed, &steps, |_, _| {}) {
            for o in &c.outputs {
                if let Output::Event(Event::ReconnectScheduled { delay_ms, .. }) = o {
                    let bound = cfg.reconnect.max_ms.max(cfg.reconnect.max_hint_ms);
                    prop_assert!(*delay_ms <= bound);
                }
            }
        }
    }

    #[test]
    fn without_jitter_or_hints_the_schedule_is_exact(
        initial in 1u64..5_000, factor in 1.0f64..4.0, extra in 0u64..60_000, attempts in 1u32..12, seed in any::<u64>(),
    ) {
        let mut cfg = Config::new("ws://127.0.0.1:9/ws");
        cfg.reconnect.jitter = Jitter::None;
        cfg.reconnect.initial_ms = initial;
        cfg.reconnect.factor = factor;
        cfg.reconnect.max_ms = initial + extra;
        cfg.reconnect.max_attempts = Some(attempts);
        let mut s = Session::new(cfg.clone(), seed, Timestamp::ZERO).unwrap();
        let mut now = Timestamp::ZERO;
        s.connect(now).unwrap();
        let mut delays = Vec::new();
        // A server that refuses every connection.
        for _ in 0..100 {
            let mut refused = false;
            for o in drain(&mut s) {
                match o {
                    Output::OpenTransport { .. } => refused = true,
                    Output::Event(Event::ReconnectScheduled { attempt, delay_ms }) => delays.push((attempt, delay_ms)),
                    _ => {}
                }
            }
            if refused {
                s.transport_closed(now, 1006, "");
                continue;
            }
            match s.poll_timeout() {
                Some(d) => { now = d.at; s.handle_timeout(now); }
                None => break,
            }
        }
        let want: Vec<(u32, u64)> = (1..=attempts).map(|n| (n, cfg.reconnect.base_delay(n))).collect();
        prop_assert_eq!(&delays, &want);
        for (n, d) in &delays {
            let exact = ((initial as f64) * factor.powi(*n as i32 - 1)).min(cfg.reconnect.max_ms as f64);
            prop_assert!((*d as f64 - exact).abs() <= 1.0, "attempt {n}: {d} vs {exact}");
        }
        prop_assert_eq!(s.state(), State::Failed);
        prop_assert_eq!(s.stats().reconnects, u64::from(attempts));
    }
}

// ---- issue 3 properties ------------------------------------------------------------------

fn open_session(cfg: Config) -> Session {
    let mut s = Session::new(cfg, 1, Timestamp::ZERO).unwrap();
    s.connect(Timestamp::ZERO).unwrap();
    s.transport_opened(Timestamp::ZERO);
    s.frame(
        Timestamp::ZERO,
        r#"{"type":"welcome","data":{"sessionId":"s"}}"#,
    );
    drain(&mut s);
    s
}

fn reopen(s: &mut Session, now: Timestamp) -> Vec<Output> {
    s.transport_closed(now, 1006, "");
    let mut out = drain(s);
    let t = s.poll_timeout().unwrap().at;
    s.handle_timeout(t);
    s.transport_opened(t);
    s.frame(
        t,
        r#"{"type":"welcome","data":{"sessionId":"s","resumed":true}}"#,
    );
    out.extend(drain(s));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn stream_content_is_the_in_order_concatenation_once(
        texts in prop::collection::vec("[a-zé ]{0,6}", 1..12),
        order in prop::collection::vec(any::<prop::sample::Index>(), 1..40),
        reconnect_at in any::<prop::sample::Index>(),
    ) {
        let mut s = open_session(Config::new("ws://h/ws"));
        let n = texts.len();
        // Any permutation with duplicates, then everything again (as a resume would), with a
        // reconnect somewhere in the middle.
        let mut seqs: Vec<usize> = order.iter().map(|i| i.index(n)).collect();
        seqs.extend(0..n);
        let cut = reconnect_at.index(seqs.len());
        let mut outputs = Vec::new();
        for (k, seq) in seqs.iter().enumerate() {
            let now = Timestamp::from_millis(k as u64 * 10);
            if k == cut {
                outputs.extend(reopen(&mut s, now));
            }
            let frame = json!({"type":"agent_stream_chunk","data":{"streamId":"z","seq":seq,"delta":texts[*seq]}});
            s.frame(now, &frame.to_string());
            outputs.extend(drain(&mut s));
        }
        let whole: String = texts.concat();
        prop_assert_eq!(s.stream_content("z"), Some(whole.as_str()));
        let deltas: String = outputs.iter().filter_map(|o| match o {
            Output::Event(Event::Stream { delta: Some(d), .. }) => Some(d.as_str()),
            _ => None,
        }).collect();
        prop_assert_eq!(deltas, whole);
    }

    #[test]
    fn typing_sets_never_hold_an_expired_user(
        events in prop::collection::vec((0u64..4_000, 0u64..3, 0u8..4, any::<bool>()), 1..60),
    ) {
        let cfg = Config::new("ws://h/ws");
        let expire = cfg.typing.expire_ms;
        let mut s = open_session(cfg);
        let mut now = Timestamp::ZERO;
        let mut last_refresh: BTreeMap<(u64, String), Timestamp> = BTreeMap::new();
        for (dt, project, user, start) in events {
            let target = now.add_ms(dt);
            while let Some(d) = s.poll_timeout().filter(|d| d.at <= target) {
                s.handle_timeout(d.at);
                drain(&mut s);
            }
            now = target;
            let user = format!("u{user}");
            let kind = if start { "user_typing_start" } else { "user_typing_stop" };
            s.frame(now, &json!({"type": kind, "projectId": project, "data": {"userId": user}}).to_string());
            drain(&mut s);
            if start { last_refresh.insert((project, user), now); } else { last_refresh.remove(&(project, user)); }
            for p in 0..3 {
                for u in s.typing_users(p) {
                    let at = last_refresh.get(&(p, u.clone())).copied();
                    prop_assert!(at.is_some_and(|t| now.ms_since(t) < expire), "{u} in {p} expired at {now:?}");
                }
            }
        }
    }

    #[test]
    fn project_versions_seen_by_the_app_strictly_increase(
        versions in prop::collection::vec((0u64..2, 0u64..20, any::<bool>()), 1..60),
    ) {
        let mut s = open_session(Config::new("ws://h/ws"));
        s.subscribe(Timestamp::ZERO, "project_updated", None).unwrap();
        for p in 0..2 { s.join_project(Timestamp::ZERO, p).unwrap(); }
        let mut last: BTreeMap<u64, u64> = BTreeMap::new();
        for (project, version, snapshot) in versions {
            let kind = if snapshot { "project_snapshot" } else { "project_updated" };
            s.frame(Timestamp::ZERO, &json!({"type": kind, "projectId": project, "data": {"version": version}}).to_string());
            for o in drain(&mut s) {
                if let Output::Event(Event::Message { message, .. }) = o {
                    let v = message.data_value()["version"].as_u64().unwrap();
                    if let Some(prev) = last.get(&project) { prop_assert!(v > *prev, "{v} after {prev}"); }
                    last.insert(project, v);
                }
            }
            if snapshot { last.remove(&project); } // a snapshot resets the baseline
        }
    }

    #[test]
    fn rate_limiter_never_exceeds_burst_plus_rate_times_window(
        per_sec in 1u32..20, burst in 1u32..10, sends in prop::collection::vec(0u64..400, 1..80),
    ) {
        let mut cfg = Config::new("ws://h/ws");
        cfg.rate_limit = RateLimitConfig::Bucket { per_sec, burst };
        cfg.outbox.max_messages = 1000;
        cfg.heartbeat.interval_ms = 1_000_000;
        let mut s = open_session(cfg);
        let mut now = Timestamp::ZERO;
        let mut times = Vec::new();
        let collect = |s: &mut Session, at: Timestamp, times: &mut Vec<u64>| {
            for o in drain(s) {
                if let Output::Transmit { text } = o { if app_frame(&text).is_some() { times.push(at.as_millis()); } }
            }
        };
        for dt in sends {
            let target = now.add_ms(dt);
            while let Some(d) = s.poll_timeout().filter(|d| d.at <= target) {
                s.handle_timeout(d.at);
                collect(&mut s, d.at, &mut times);
            }
            now = target;
            s.send(now, SendRequest::new("chat", json!(1))).unwrap();
            collect(&mut s, now, &mut times);
        }
        for i in 0..times.len() {
            for j in i..times.len() {
                let window = times[j] - times[i];
                let allowed = u64::from(burst) + u64::from(per_sec) * window / 1000;
                prop_assert!((j - i + 1) as u64 <= allowed, "{} sends in {window} ms", j - i + 1);
            }
        }
    }

    #[test]
    fn snapshot_restore_snapshot_is_identical(
        reqs in prop::collection::vec(send_request(false), 0..12), acked in 0usize..4,
    ) {
        let mut cfg = Config::new("ws://h/ws");
        cfg.outbox.max_messages = 50;
        let mut s = open_session(cfg.clone());
        let mut ids = Vec::new();
        for (k, r) in reqs.into_iter().enumerate() {
            if k == 3 { s.transport_closed(Timestamp::ZERO, 1006, ""); }
            if let Ok(id) = s.send(Timestamp::ZERO, r) { ids.push(id); }
        }
        drain(&mut s);
        for id in ids.iter().take(acked) {
            s.frame(Timestamp::ZERO, &json!({"type":"ack","data":{"id":id}}).to_string());
        }
        let snap = s.snapshot_outbox();
        let mut fresh = Session::new(cfg, 9, Timestamp::ZERO).unwrap();
        fresh.restore_outbox(Timestamp::ZERO, &snap).unwrap();
        prop_assert_eq!(fresh.snapshot_outbox(), snap);
    }
}
