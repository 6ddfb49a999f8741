//! The tokio client against the real hub over real loopback WebSockets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use sockline_core::hub::{ChaosConfig, ScriptedAgent};
use sockline_core::{Config, Delivery, DropReason, Event, Jitter, Output, SendRequest, State};
use sockline_tokio::hub::{Hub, HubConfig, HubHandle};
use sockline_tokio::{Client, ClientOptions, StreamUpdate};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

async fn hub_with(f: impl FnOnce(&mut HubConfig)) -> HubHandle {
    let mut cfg = HubConfig::default();
    cfg.settings.agent_chunk_ms = 10;
    f(&mut cfg);
    Hub::start(cfg).await.expect("hub starts")
}

fn config(url: &str, user: &str) -> Config {
    let mut c = Config::new(url);
    c.user_id = Some(user.into());
    c.reconnect.jitter = Jitter::None;
    c.reconnect.initial_ms = 100;
    c.reconnect.max_attempts = None;
    c
}

fn client(c: Config) -> Client {
    Client::connect_with(
        c,
        ClientOptions {
            seed: Some(7),
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

/// A TCP relay in front of the hub whose cable a test can pull: every connection through it is
/// cut at once, without a close frame (the client's transport is lost).
struct Cable {
    url: String,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Cable {
    async fn to(hub: &HubHandle) -> Cable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let target = hub.local_addr();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let held = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                held.lock().unwrap().push(relay.abort_handle());
            }
        });
        Cable { url, conns, accept }
    }

    fn pull(&self) {
        for relay in self.conns.lock().unwrap().drain(..) {
            relay.abort();
        }
    }
}

impl Drop for Cable {
    fn drop(&mut self) {
        self.pull();
        self.accept.abort();
    }
}

async fn wait_state(c: &Client, want: State) {
    let mut st = c.state();
    timeout(WAIT, st.wait_for(|s| *s == want))
        .await
        .unwrap_or_else(|_| panic!("never reached {want}, stuck at {}", *c.state().borrow()))
        .unwrap();
}

/// Waits for the first event matching `f`, returning what `f` extracted.
async fn wait_event<T>(
    events: &mut sockline_tokio::EventStream,
    mut f: impl FnMut(&Event) -> Option<T>,
) -> T {
    timeout(WAIT, async {
        loop {
            let e = events.recv().await.expect("client still running");
            if let Some(t) = f(&e) {
                return t;
            }
        }
    })
    .await
    .expect("event in time")
}

/// The reason given for the next move to `reconnecting`.
async fn reconnect_reason(events: &mut sockline_tokio::EventStream) -> String {
    wait_event(events, |e| match e {
        Event::Status {
            to: State::Reconnecting,
            reason,
            ..
        } => Some(reason.clone()),
        _ => None,
    })
    .await
}

/// Waits until `events` (a member's) shows both clients present in `project`: the hub relays to
/// project members only, so a test must not send before then.
async fn both_present(events: &mut sockline_tokio::EventStream, project: u64) {
    wait_event(events, |e| match e {
        Event::Presence {
            project_id,
            members,
        } if *project_id == project && members.len() == 2 => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_updates_typing_and_presence_between_two_clients() {
    let hub = hub_with(|_| {}).await;
    let ann = client(config(&hub.url(), "ann"));
    let bob = client(config(&hub.url(), "bob"));
    let mut ann_events = ann.events();
    let mut updates = bob.subscribe("project_updated", Some(1)).await.unwrap();
    for c in [&ann, &bob] {
        wait_state(c, State::Open).await;
        c.join_project(1).await.unwrap();
    }
    // Presence: ann sees bob arrive.
    wait_event(&mut ann_events, |e| match e {
        Event::Presence {
            project_id: 1,
            members,
        } if members.contains(&"bob".to_string()) => Some(()),
        _ => None,
    })
    .await;
    ann.send(SendRequest::new("project_update", json!({"title": "v1"})).project(1))
        .await
        .unwrap();
    let m = timeout(WAIT, updates.recv()).await.unwrap().unwrap();
    assert_eq!(m.data_value()["version"], json!(1));
    assert_eq!(m.data_value()["title"], json!("v1"));
    // Typing from bob is seen by ann, and expires on ann's side when bob goes quiet.
    bob.start_typing(1).await.unwrap();
    let users = wait_event(&mut ann_events, |e| match e {
        Event::Typing {
            project_id: 1,
            users,
        } => Some(users.clone()),
        _ => None,
    })
    .await;
    assert_eq!(users, vec!["bob"]);
    ann.close().await.unwrap();
    bob.close().await.unwrap();
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_hub_restart_and_delivers_what_was_queued() {
    let hub = hub_with(|_| {}).await;
    let addr = hub.local_addr();
    let url = hub.url();
    let ann = client(config(&url, "ann"));
    let bob = client(config(&url, "bob"));
    let mut ann_events = ann.events();
    for c in [&ann, &bob] {
        wait_state(c, State::Open).await;
        c.join_project(5).await.unwrap();
    }
    let mut inbox = bob.subscribe("chat", Some(5)).await.unwrap();
    let mut bob_events = bob.events();
    hub.shutdown().await;
    // The backoff schedule is observed: 100, 200, 400 ms (jitter none) while the hub is down.
    let mut delays = Vec::new();
    while delays.len() < 3 {
        let d = wait_event(&mut ann_events, |e| match e {
            Event::ReconnectScheduled { delay_ms, .. } => Some(*delay_ms),
            _ => None,
        })
        .await;
        delays.push(d);
    }
    assert_eq!(delays, vec![100, 200, 400]);
    // Hold ann's network down (her third attempt is 400 ms away, none is in flight), so bob is
    // back in the project before her queue flushes: a restarted hub relays only to members.
    ann.offline().await.unwrap();
    // Sent during the outage, in order: delivered after the reconnect, in order.
    for i in 0..3 {
        ann.send(SendRequest::new("chat", json!(i)).project(5))
            .await
            .unwrap();
    }
    let hub = hub_with(|c| c.listen = addr).await;
    // Bob's welcome from the new hub, then his re-join (presence) on it.
    wait_event(&mut bob_events, |e| {
        matches!(e, Event::Ready { .. }).then_some(())
    })
    .await;
    wait_event(&mut bob_events, |e| match e {
        Event::Presence {
            project_id: 5,
            members,
        } if members.contains(&"bob".to_string()) => Some(()),
        _ => None,
    })
    .await;
    ann.online().await.unwrap();
    wait_state(&ann, State::Open).await;
    let mut got = Vec::new();
    while got.len() < 3 {
        let Ok(m) = timeout(WAIT, inbox.recv()).await else {
            let mut log = Vec::new();
            while let Ok(Some(e)) = timeout(Duration::from_millis(10), ann_events.recv()).await {
                log.push(format!("ann {e:?}"));
            }
            while let Ok(Some(e)) = timeout(Duration::from_millis(10), bob_events.recv()).await {
                log.push(format!("bob {e:?}"));
            }
            panic!("queued chat never arrived; got {got:?}\n{}", log.join("\n"));
        };
        let m = m.unwrap();
        got.push(m.data_value());
    }
    assert_eq!(got, vec![json!(0), json!(1), json!(2)]);
    ann.close().await.unwrap();
    bob.close().await.unwrap();
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_messages_sent_while_away_exactly_once() {
    let hub = hub_with(|c| {
        c.settings.chaos = ChaosConfig {
            seed: 1,
            ..ChaosConfig::default()
        }
    })
    .await;
    let cable = Cable::to(&hub).await;
    let ann = client(config(&cable.url, "ann"));
    let mut ann_events = ann.events();
    let bob = client(config(&hub.url(), "bob"));
    let mut bob_events = bob.events();
    for c in [&ann, &bob] {
        wait_state(c, State::Open).await;
        c.join_project(2).await.unwrap();
    }
    both_present(&mut bob_events, 2).await;
    let mut inbox = ann.subscribe("note", Some(2)).await.unwrap();
    bob.send(SendRequest::new("note", json!("before")).project(2))
        .await
        .unwrap();
    assert_eq!(
        timeout(WAIT, inbox.recv())
            .await
            .unwrap()
            .unwrap()
            .data_value(),
        json!("before")
    );
    // Ann's network goes away; the hub keeps her session and logs what she misses.
    ann.offline().await.unwrap();
    cable.pull();
    assert_eq!(
        reconnect_reason(&mut ann_events).await,
        "connection lost (1006); waiting for the network",
        "no close frame: the core names it"
    );
    for i in 0..3 {
        bob.send(SendRequest::new("note", json!(i)).project(2))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    ann.online().await.unwrap();
    wait_state(&ann, State::Open).await;
    let mut got = Vec::new();
    while let Ok(Some(m)) = timeout(Duration::from_millis(500), inbox.recv()).await {
        got.push(m.data_value());
    }
    assert_eq!(
        got,
        vec![json!(0), json!(1), json!(2)],
        "replayed in order, exactly once"
    );
    let stats = ann.stats().await.unwrap();
    assert!(stats.reconnects >= 1);
    ann.close().await.unwrap();
    bob.close().await.unwrap();
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_stream_reads_to_the_end_and_interrupt_stops_one() {
    let hub = hub_with(|c| c.agent = Some(ScriptedAgent { chunks: 12 })).await;
    let ann = client(config(&hub.url(), "ann"));
    wait_state(&ann, State::Open).await;
    let mut deltas = ann.stream("r1").unwrap();
    ann.send(SendRequest::new(
        "agent_prompt",
        json!({"prompt": "hi", "streamId": "r1"}),
    ))
    .await
    .unwrap();
    let mut text = String::new();
    loop {
        match timeout(WAIT, deltas.recv()).await.unwrap() {
            Some(StreamUpdate::Delta(d)) => text.push_str(&d),
            Some(StreamUpdate::Done) | None => break,
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        ann.stream_content("r1").await.unwrap().as_deref(),
        Some(text.as_str())
    );
    assert!(text.starts_with("You asked: \"hi\"."), "{text}");
    assert_eq!(text.split(' ').filter(|w| !w.is_empty()).count(), 12);

    let mut deltas = ann.stream("r2").unwrap();
    ann.send(SendRequest::new(
        "agent_prompt",
        json!({"prompt": "stop me", "streamId": "r2"}),
    ))
    .await
    .unwrap();
    let first = timeout(WAIT, deltas.recv()).await.unwrap();
    assert!(matches!(first, Some(StreamUpdate::Delta(_))));
    ann.interrupt_stream("r2").await.unwrap();
    let rest: Vec<StreamUpdate> = deltas.collect().await;
    assert_eq!(rest.last(), Some(&StreamUpdate::Interrupted));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let len = ann.stream_content("r2").await.unwrap().unwrap().len();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        ann.stream_content("r2").await.unwrap().unwrap().len(),
        len,
        "no content after interrupt"
    );
    ann.close().await.unwrap();
    hub.shutdown().await;
}

/// Reads a stream's updates to its end: the text, and how it ended.
async fn read_stream(deltas: &mut sockline_tokio::StreamDeltas) -> (String, StreamUpdate) {
    let mut text = String::new();
    loop {
        match timeout(WAIT, deltas.recv())
            .await
            .expect("stream update in time")
        {
            Some(StreamUpdate::Delta(d)) => text.push_str(&d),
            Some(StreamUpdate::Stalled) => {}
            Some(end) => return (text, end),
            None => panic!("stream ended without an end"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumes_across_a_hub_restart_and_fails_on_a_hub_that_lost_it() {
    let hub = hub_with(|c| {
        c.agent = Some(ScriptedAgent { chunks: 30 });
        c.settings.agent_chunk_ms = 20;
    })
    .await;
    let addr = hub.local_addr();
    let ann = client(config(&hub.url(), "ann"));
    wait_state(&ann, State::Open).await;
    let prompt =
        |id: &str| SendRequest::new("agent_prompt", json!({"prompt": "hi", "streamId": id}));
    // The whole answer, undisturbed, to compare with.
    let mut deltas = ann.stream("whole").unwrap();
    ann.send(prompt("whole")).await.unwrap();
    let (whole, end) = read_stream(&mut deltas).await;
    assert_eq!(end, StreamUpdate::Done);

    // Restarted with its state mid-stream: the session resumes and so does the stream.
    let mut deltas = ann.stream("r1").unwrap();
    ann.send(prompt("r1")).await.unwrap();
    let mut text = String::new();
    while text.split(' ').filter(|w| !w.is_empty()).count() < 5 {
        match timeout(WAIT, deltas.recv()).await.unwrap() {
            Some(StreamUpdate::Delta(d)) => text.push_str(&d),
            other => panic!("unexpected {other:?}"),
        }
    }
    let state = hub.state();
    hub.shutdown().await;
    let hub = Hub::start_with_state(
        HubConfig {
            listen: addr,
            ..HubConfig::default()
        },
        state,
    )
    .await
    .unwrap();
    let (rest, end) = read_stream(&mut deltas).await;
    assert_eq!(end, StreamUpdate::Done);
    assert_eq!(format!("{text}{rest}"), whole, "exactly the answer, once");
    hub.shutdown().await;
    // Seen gone before the next hub comes, so the prompt below goes to the new one.
    wait_state(&ann, State::Reconnecting).await;

    // Restarted without its state: the session is new, the stream is gone, and it fails at once
    // (long before the 30 s stall timeout).
    let hub = hub_with(|c| {
        c.listen = addr;
        c.agent = Some(ScriptedAgent { chunks: 30 });
        c.settings.agent_chunk_ms = 20;
    })
    .await;
    wait_state(&ann, State::Open).await;
    let mut deltas = ann.stream("r2").unwrap();
    ann.send(prompt("r2")).await.unwrap();
    assert!(matches!(
        timeout(WAIT, deltas.recv()).await.unwrap(),
        Some(StreamUpdate::Delta(_))
    ));
    hub.shutdown().await;
    let hub = hub_with(|c| c.listen = addr).await;
    let (_, end) = read_stream(&mut deltas).await;
    match end {
        StreamUpdate::Failed(reason) => assert!(reason.contains("unknown stream"), "{reason}"),
        other => panic!("expected a failed stream, got {other:?}"),
    }
    ann.close().await.unwrap();
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_detects_a_stalled_hub_within_interval_plus_timeout() {
    let hub = hub_with(|c| {
        c.settings.chaos = ChaosConfig {
            seed: 3,
            stall_ms: Some(300..301),
            ..ChaosConfig::default()
        }
    })
    .await;
    let mut c = config(&hub.url(), "ann");
    c.heartbeat.interval_ms = 400;
    c.heartbeat.timeout_ms = 300;
    c.reconnect.initial_ms = 5_000;
    let ann = client(c);
    let mut events = ann.events();
    wait_state(&ann, State::Open).await;
    let opened = tokio::time::Instant::now();
    let reason = reconnect_reason(&mut events).await;
    let took = opened.elapsed();
    assert_eq!(reason, "heartbeat timeout");
    // Stall at 300 ms, so the ping at 400 ms goes unanswered: dead by 400 + 300 ms, with 600 ms of
    // tolerance for a loaded 2-core CI machine.
    assert!(
        took <= Duration::from_millis(400 + 300 + 600),
        "took {took:?}"
    );
    ann.close().await.unwrap();
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swallowed_pongs_end_the_link_and_delayed_ones_do_not() {
    let c = |url: &str| {
        let mut c = config(url, "ann");
        c.heartbeat.interval_ms = 200;
        c.heartbeat.timeout_ms = 400;
        c.reconnect.initial_ms = 5_000;
        c
    };
    // Delayed by less than the timeout: pings keep being answered, the link stays up.
    let hub = hub_with(|h| {
        h.settings.chaos = ChaosConfig {
            seed: 4,
            pong_delay_ms: Some(150),
            ..ChaosConfig::default()
        }
    })
    .await;
    let ann = client(c(&hub.url()));
    wait_state(&ann, State::Open).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let stats = ann.stats().await.unwrap();
    assert_eq!(*ann.state().borrow(), State::Open);
    assert!(stats.last_rtt_ms.is_some_and(|r| r >= 150), "{stats:?}");
    ann.close().await.unwrap();
    hub.shutdown().await;
    // Swallowed: the first ping goes unanswered and the client gives the link up.
    let hub = hub_with(|h| {
        h.settings.chaos = ChaosConfig {
            seed: 4,
            swallow_pongs: true,
            ..ChaosConfig::default()
        }
    })
    .await;
    let ann = client(c(&hub.url()));
    let mut events = ann.events();
    let reason = reconnect_reason(&mut events).await;
    assert_eq!(reason, "heartbeat timeout");
    ann.close().await.unwrap();
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_pong_holds_back_nothing_else() {
    let hub = hub_with(|h| {
        h.settings.chaos = ChaosConfig {
            seed: 5,
            pong_delay_ms: Some(3_000),
            ..ChaosConfig::default()
        }
    })
    .await;
    let mut c = config(&hub.url(), "ann");
    c.heartbeat.interval_ms = 100;
    c.heartbeat.timeout_ms = 8_000;
    let ann = client(c);
    let bob = client(config(&hub.url(), "bob"));
    let mut events = ann.events();
    let mut inbox = ann.subscribe("chat", Some(3)).await.unwrap();
    for c in [&ann, &bob] {
        wait_state(c, State::Open).await;
        c.join_project(3).await.unwrap();
    }
    both_present(&mut events, 3).await;
    // Ann's first ping went out at 100 ms; its pong is held for 3 s. Bob's chat is not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = tokio::time::Instant::now();
    bob.send(SendRequest::new("chat", json!("now")).project(3))
        .await
        .unwrap();
    let got = timeout(Duration::from_millis(1_500), inbox.recv())
        .await
        .expect("the chat is not queued behind the delayed pong")
        .unwrap();
    assert_eq!(got.data_value(), json!("now"));
    assert!(sent.elapsed() < Duration::from_millis(1_500));
    assert_eq!(ann.stats().await.unwrap().last_rtt_ms, None, "no pong yet");
    ann.close().await.unwrap();
    bob.close().await.unwrap();
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_big_to_relay_is_refused_and_dropped_not_lost_silently() {
    const MAX: usize = 4_000;
    let hub = hub_with(|h| h.settings.max_frame_bytes = MAX).await;
    let ann = client(config(&hub.url(), "ann"));
    let bob = client(config(&hub.url(), "bob"));
    let mut outputs = ann.outputs();
    let mut events = ann.events();
    let mut inbox = bob.subscribe("blob", Some(9)).await.unwrap();
    for c in [&ann, &bob] {
        wait_state(c, State::Open).await;
        c.join_project(9).await.unwrap();
    }
    both_present(&mut events, 9).await;
    let blob = |n: usize| {
        SendRequest::new("blob", json!("x".repeat(n)))
            .project(9)
            .delivery(Delivery::AtLeastOnce)
    };
    // Measure the envelope around a payload, then make a frame the hub takes in (<= MAX) but
    // whose relay, with the seq it adds, would not fit.
    let probe = ann.send(blob(1)).await.unwrap();
    let probe_len = timeout(WAIT, async {
        loop {
            if let Some((_, Output::Transmit { text })) = outputs.next().await {
                if text.contains(&probe) {
                    return text.len();
                }
            }
        }
    })
    .await
    .unwrap();
    assert!(timeout(WAIT, inbox.recv()).await.unwrap().is_some());
    let big = ann.send(blob(MAX - probe_len - 4)).await.unwrap();
    let reason = wait_event(&mut events, |e| match e {
        Event::Dropped { id, reason, .. } if *id == big => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, DropReason::Rejected);
    assert_eq!(*ann.state().borrow(), State::Open, "the link stays up");
    // Nothing of it reached bob, and the next message still does.
    ann.send(blob(2)).await.unwrap();
    let next = timeout(WAIT, inbox.recv()).await.unwrap().unwrap();
    assert_eq!(next.data_value(), json!("xx"));
    ann.close().await.unwrap();
    bob.close().await.unwrap();
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_frames_are_protocol_errors_and_the_link_stays_up() {
    let hub = hub_with(|c| {
        c.settings.chaos = ChaosConfig {
            seed: 9,
            corrupt: 0.3,
            ..ChaosConfig::default()
        }
    })
    .await;
    let mut c = config(&hub.url(), "ann");
    // A corrupted welcome stalls the handshake: retry quickly rather than after 10 s.
    c.connect_timeout_ms = 300;
    let ann = client(c);
    let mut events = ann.events();
    wait_state(&ann, State::Open).await;
    for i in 0..40 {
        let _ = ann.send(SendRequest::new("chat", json!(i))).await;
    }
    wait_event(&mut events, |e| {
        matches!(e, Event::ProtocolError { .. }).then_some(())
    })
    .await;
    let before = ann.stats().await.unwrap();
    assert!(before.protocol_errors >= 1);
    // Bad frames never end the connection: no reconnect happens because of them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..20 {
        let _ = ann.send(SendRequest::new("chat", json!(i))).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(*ann.state().borrow(), State::Open);
    assert_eq!(ann.stats().await.unwrap().reconnects, before.reconnects);
    ann.close().await.unwrap();
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_refused_and_a_new_token_gets_in() {
    let hub = hub_with(|c| c.settings.token = Some("right".into())).await;
    let mut c = config(&hub.url(), "ann");
    c.token = Some(sockline_core::Secret::new("wrong"));
    let ann = client(c);
    let mut events = ann.events();
    wait_event(&mut events, |e| {
        matches!(e, Event::TokenRequired { .. }).then_some(())
    })
    .await;
    wait_state(&ann, State::Unauthorized).await;
    ann.set_token("right", Some(Duration::from_millis(400)))
        .await
        .unwrap();
    wait_state(&ann, State::Open).await;
    // With a 400 ms lifetime and the default 30 s margin, a refresh is due at once.
    wait_event(&mut events, |e| {
        matches!(e, Event::TokenRefreshDue { .. }).then_some(())
    })
    .await;
    ann.close().await.unwrap();
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_disconnected_by_the_hub() {
    let hub = hub_with(|c| {
        c.outbound_queue = 16;
        c.settings.rate_limit = sockline_core::RateLimitConfig::Off;
    })
    .await;
    // A raw client with a tiny receive buffer that joins a project and then never reads, so the
    // hub's writes to it block for certain, however fast the machine.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(hub.local_addr()).await.unwrap();
    let (mut raw, _) = tokio_tungstenite::client_async(hub.url(), tcp)
        .await
        .unwrap();
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    raw.send(Message::text(r#"{"type":"hello","data":{"protocol":1}}"#))
        .await
        .unwrap();
    raw.send(Message::text(
        r#"{"type":"project_subscribe","data":{},"projectId":9}"#,
    ))
    .await
    .unwrap();
    let flood = client(config(&hub.url(), "bob"));
    wait_state(&flood, State::Open).await;
    let mut events = flood.events();
    flood.join_project(9).await.unwrap();
    both_present(&mut events, 9).await;
    assert_eq!(hub.connections_open(), 2);
    let big = "x".repeat(60_000);
    for _ in 0..200 {
        flood
            .send(SendRequest::new("blob", json!(big)).project(9))
            .await
            .unwrap();
    }
    // The hub gives up on the reader: the connection is gone while nobody reads it.
    timeout(WAIT, async {
        while hub.connections_open() > 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the slow consumer is disconnected");
    // What it finally reads ends: a 4009 close if the frame fitted, else the dropped socket.
    let code = timeout(WAIT, async {
        while let Some(msg) = raw.next().await {
            match msg {
                Ok(Message::Close(Some(f))) => return Some(u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the slow consumer's stream ends");
    assert!(matches!(code, None | Some(4009)), "closed with {code:?}");
    assert_eq!(flood.state().borrow().clone(), State::Open);
    flood.close().await.unwrap();
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_survives_forced_disconnects_without_loss_or_duplicates() {
    let hub = hub_with(|c| {
        c.settings.chaos = ChaosConfig {
            seed: 11,
            drop_ms: Some(60..160),
            ..ChaosConfig::default()
        };
    })
    .await;
    let mut cfg = config(&hub.url(), "ann");
    cfg.reconnect.initial_ms = 20;
    cfg.reconnect.max_ms = 100;
    cfg.reconnect.stable_ms = 100;
    let ann = client(cfg.clone());
    let mut bcfg = config(&hub.url(), "bob");
    bcfg.reconnect = cfg.reconnect.clone();
    let bob = client(bcfg);
    let mut events = ann.events();
    for c in [&ann, &bob] {
        wait_state(c, State::Open).await;
        c.join_project(4).await.unwrap();
    }
    let mut inbox = bob.subscribe("order", Some(4)).await.unwrap();
    // Bob must be in the project before the first order: the hub relays to members only.
    both_present(&mut events, 4).await;
    let n = 80;
    let mut acked = std::collections::BTreeSet::new();
    for i in 0..n {
        ann.send(
            SendRequest::new("order", json!(i))
                .project(4)
                .delivery(Delivery::AtLeastOnce)
                .id(format!("o{i}")),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while (acked.len() < n || got.len() < n) && tokio::time::Instant::now() < deadline {
        tokio::select! {
            Some(m) = inbox.recv() => got.push(m.data_value().as_u64().unwrap()),
            Some(e) = events.recv() => if let Event::Acked { id } = e { acked.insert(id); },
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let stats = ann.stats().await.unwrap();
    assert!(
        stats.reconnects >= 20,
        "only {} forced disconnects",
        stats.reconnects
    );
    assert_eq!(acked.len(), n, "every message acked");
    let mut sorted = got.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        got.len(),
        "no message delivered twice: {got:?}"
    );
    assert_eq!(
        sorted,
        (0..n as u64).collect::<Vec<_>>(),
        "no acknowledged message lost"
    );
    ann.close().await.unwrap();
    bob.close().await.unwrap();
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_against_a_tls_hub_with_a_certificate_made_now() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)
        .unwrap();
    let hub = hub_with(|c| c.tls = Some(std::sync::Arc::new(server))).await;
    let url = format!("wss://localhost:{}/ws", hub.local_addr().port());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let options = ClientOptions {
        seed: Some(1),
        tls: Some(std::sync::Arc::new(tls)),
        ..ClientOptions::default()
    };
    let mut cfg = config(&url, "ann");
    cfg.require_tls = true;
    let ann = Client::connect_with(cfg, options).unwrap();
    wait_state(&ann, State::Open).await;
    let mut deltas = ann.stream("t").unwrap();
    ann.send(SendRequest::new(
        "agent_prompt",
        json!({"prompt": "over tls", "streamId": "t"}),
    ))
    .await
    .unwrap();
    assert!(matches!(
        timeout(WAIT, deltas.recv()).await.unwrap(),
        Some(StreamUpdate::Delta(_))
    ));
    // A client that does not trust the certificate never gets in.
    let stranger = client(config(&url, "eve"));
    let mut events = stranger.events();
    let reason = reconnect_reason(&mut events).await;
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");
    stranger.close().await.unwrap();
    ann.close().await.unwrap();
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_typist_expires_on_the_other_side() {
    let hub = hub_with(|_| {}).await;
    let ann = client(config(&hub.url(), "ann"));
    let bob = client(config(&hub.url(), "bob"));
    let mut events = ann.events();
    for c in [&ann, &bob] {
        wait_state(c, State::Open).await;
        c.join_project(8).await.unwrap();
    }
    both_present(&mut events, 8).await;
    bob.start_typing(8).await.unwrap();
    wait_event(&mut events, |e| match e {
        Event::Typing {
            project_id: 8,
            users,
        } if users == &["bob"] => Some(()),
        _ => None,
    })
    .await;
    // Bob's process dies without a stop: his entry must expire after the grace period (6 s).
    let started = tokio::time::Instant::now();
    drop(bob);
    let users = wait_event(&mut events, |e| match e {
        Event::Typing {
            project_id: 8,
            users,
        } => Some(users.clone()),
        _ => None,
    })
    .await;
    assert!(users.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "expired late: {:?}",
        started.elapsed()
    );
    ann.close().await.unwrap();
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_stops_reading_blocks_the_transport_then_the_write_timeout_ends_it() {
    let hub = hub_with(|c| {
        c.settings.chaos = ChaosConfig {
            seed: 4,
            stall_ms: Some(100..101),
            ..ChaosConfig::default()
        }
    })
    .await;
    let mut c = config(&hub.url(), "ann");
    c.heartbeat.interval_ms = 60_000; // only the write timeout may end this link
    c.max_buffered_bytes = 64 * 1024;
    c.write_timeout_ms = 500;
    c.reconnect.initial_ms = 5_000;
    let ann = client(c);
    let mut events = ann.events();
    wait_state(&ann, State::Open).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Far more than the socket buffers hold: the driver ends up holding frames unsent.
    let blob = "x".repeat(60_000);
    for _ in 0..300 {
        ann.send(SendRequest::new("bulk", json!(blob)))
            .await
            .unwrap();
    }
    let blocked = wait_event(&mut events, |e| match e {
        Event::Backpressure {
            blocked: true,
            buffered_bytes,
        } => Some(*buffered_bytes),
        _ => None,
    })
    .await;
    assert!(blocked > 64 * 1024, "{blocked}");
    let reason = reconnect_reason(&mut events).await;
    assert!(reason.starts_with("write timeout: "), "{reason}");
    let stats = ann.stats().await.unwrap();
    assert!(
        stats.dropped > 0,
        "the outbox overflowed under its own policy"
    );
    ann.close().await.unwrap();
    hub.shutdown().await;
}
