//! The tokio client against the real hub over real loopback WebSockets.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use sockline_core::hub::ChaosConfig;
use sockline_core::{Config, Event, Jitter, SendRequest, State};
use sockline_tokio::hub::{Hub, HubConfig, HubHandle};
use sockline_tokio::{Client, ClientOptions, StreamUpdate};
use support::{wait_event, WAIT};
use tokio::time::timeout;

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
    // No restart window (the next test has one): the clients' own schedule is what is observed.
    let hub = hub_with(|c| c.settings.restart_spread_ms = 0).await;
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
async fn a_client_with_two_urls_fails_over_to_the_other_hub_and_loses_nothing_it_queued() {
    let a = hub_with(|_| {}).await;
    let b = hub_with(|_| {}).await;
    let mut ann_cfg = config("", "ann");
    ann_cfg.url.clear();
    ann_cfg.urls = vec![a.url(), b.url()];
    let ann = client(ann_cfg);
    let bob = client(config(&b.url(), "bob"));
    for c in [&ann, &bob] {
        wait_state(c, State::Open).await;
        c.join_project(5).await.unwrap();
    }
    let mut inbox = bob.subscribe("chat", Some(5)).await.unwrap();
    let mut ann_events = ann.events();
    assert_eq!(a.connections_open(), 1, "ann starts on the first URL");
    a.shutdown().await;
    // Queued while she has no hub: delivered once, in order, by the next one.
    wait_state(&ann, State::Reconnecting).await;
    for i in 0..3 {
        ann.send(SendRequest::new("chat", json!(i)).project(5))
            .await
            .unwrap();
    }
    wait_event(&mut ann_events, |e| {
        matches!(e, Event::Ready { .. }).then_some(())
    })
    .await;
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = timeout(WAIT, inbox.recv())
            .await
            .expect("chat in time")
            .unwrap();
        got.push(m.data_value());
    }
    assert_eq!(got, vec![json!(0), json!(1), json!(2)]);
    assert!(
        timeout(Duration::from_millis(300), inbox.recv())
            .await
            .is_err(),
        "nothing is delivered twice"
    );
    assert_eq!(b.connections_open(), 2, "ann is on the second hub with bob");
    ann.close().await.unwrap();
    bob.close().await.unwrap();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hub_sees_200_clients_come_back_spread_over_its_window() {
    const CLIENTS: u64 = 200;
    const AFTER_MS: u64 = 300;
    const SPREAD_MS: u64 = 2_000;
    const SLACK_MS: u64 = 1_500;
    let window = |c: &mut HubConfig| {
        c.settings.restart_retry_after_ms = AFTER_MS;
        c.settings.restart_spread_ms = SPREAD_MS;
    };
    let hub = hub_with(window).await;
    let addr = hub.local_addr();
    // Their own schedule would bring every one of them back 100 ms after the close, together.
    let clients: Vec<Client> = (0..CLIENTS)
        .map(|i| {
            Client::connect_with(
                config(&hub.url(), &format!("u{i}")),
                ClientOptions {
                    seed: Some((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                    ..ClientOptions::default()
                },
            )
            .unwrap()
        })
        .collect();
    for c in &clients {
        wait_state(c, State::Open).await;
    }
    let mut events: Vec<_> = clients.iter().map(Client::events).collect();
    // The CLI's SIGTERM path: `HubHandle::shutdown`.
    let t0 = tokio::time::Instant::now();
    hub.shutdown().await;
    let hub = hub_with(|c| {
        c.listen = addr;
        window(c);
    })
    .await;
    let back_at = t0.elapsed();
    // The new hub's accepts, timed from the shutdown (every 5 ms).
    let mut accepts: Vec<u64> = Vec::new();
    let deadline = Duration::from_millis(AFTER_MS + SPREAD_MS + SLACK_MS);
    while (accepts.len() as u64) < CLIENTS && t0.elapsed() < deadline {
        let ms = t0.elapsed().as_millis() as u64;
        let n = hub.connections_accepted() as usize;
        accepts.resize(n.max(accepts.len()), ms);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let per_200ms: Vec<usize> = {
        let mut h = vec![0; ((AFTER_MS + SPREAD_MS + SLACK_MS) / 200) as usize + 1];
        for &a in &accepts {
            h[(a / 200) as usize] += 1;
        }
        h
    };
    println!(
        "new hub listening {} ms after the shutdown began; accepts per 200 ms from it: {per_200ms:?}",
        back_at.as_millis()
    );
    assert_eq!(
        accepts.len() as u64,
        CLIENTS,
        "every client is back within A+W plus {SLACK_MS} ms: {per_200ms:?}"
    );
    // Each client drew its delay in the window announced in the 1012's reason.
    for e in &mut events {
        let (reason, delay) = (
            reconnect_reason(e).await,
            wait_event(e, |e| match e {
                Event::ReconnectScheduled {
                    attempt: 1,
                    delay_ms,
                } => Some(*delay_ms),
                _ => None,
            })
            .await,
        );
        assert!(reason.starts_with("closed by peer (1012: "), "{reason}");
        assert!(
            (AFTER_MS..=AFTER_MS + SPREAD_MS).contains(&delay),
            "{delay} ms"
        );
    }
    // None before A; spread over the window, not bunched at its start (uniform: 10% in its
    // first tenth, half in its second half, about 7 clients' standard deviation).
    assert!(accepts[0] >= AFTER_MS, "{accepts:?}");
    let first_tenth = accepts
        .iter()
        .filter(|&&a| a < AFTER_MS + SPREAD_MS / 10)
        .count();
    let second_half = accepts
        .iter()
        .filter(|&&a| a >= AFTER_MS + SPREAD_MS / 2)
        .count();
    assert!(
        first_tenth <= 60,
        "{first_tenth} in the first tenth: {per_200ms:?}"
    );
    assert!(
        second_half >= 60,
        "{second_half} in the second half: {per_200ms:?}"
    );
    for c in &clients {
        wait_state(c, State::Open).await;
    }
    for c in clients {
        c.close().await.unwrap();
    }
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
    raw.send(Message::text(r#"{"type":"hello","data":{"protocol":2}}"#))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_from_concurrent_senders_reach_a_member_once_each_and_in_each_senders_order() {
    // Two connections' inputs are fed to the core on different threads: what the core sends a
    // third connection must reach its queue in the core's order, or its `seq`s arrive shuffled.
    let hub = hub_with(|_| {}).await;
    let rx = client(config(&hub.url(), "rx"));
    let mut rx_events = rx.events();
    let mut ticks = rx.subscribe("tick", Some(9)).await.unwrap();
    rx.join_project(9).await.unwrap();
    let senders: Vec<Client> = ["s0", "s1", "s2"]
        .iter()
        .map(|u| client(config(&hub.url(), u)))
        .collect();
    for s in &senders {
        s.join_project(9).await.unwrap();
    }
    wait_event(&mut rx_events, |e| match e {
        Event::Presence { members, .. } if members.len() == 4 => Some(()),
        _ => None,
    })
    .await;
    const EACH: u64 = 120;
    let sends = senders.iter().enumerate().map(|(i, s)| async move {
        for n in 0..EACH {
            s.send(SendRequest::new("tick", json!({"from": i, "n": n})).project(9))
                .await
                .unwrap();
        }
    });
    futures_util::future::join_all(sends).await;
    let mut next = [0u64; 3];
    for _ in 0..3 * EACH {
        let m = timeout(WAIT, ticks.recv())
            .await
            .unwrap_or_else(|_| panic!("a tick is missing; got {next:?} of each"))
            .unwrap();
        let d = m.data_value();
        let from = d["from"].as_u64().unwrap() as usize;
        assert_eq!(d["n"].as_u64().unwrap(), next[from], "sender {from}");
        next[from] += 1;
    }
    assert_eq!(next, [EACH; 3]);
    for s in senders {
        s.close().await.unwrap();
    }
    rx.close().await.unwrap();
    hub.shutdown().await;
}
