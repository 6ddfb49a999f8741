//! The Redis broker against a real `redis-server` (started per test on a free loopback port and
//! killed after it): its frames and decisions are the in-memory broker's, its events keep the
//! core's ordering contract, and a cluster of hubs on it loses nothing when a hub or Redis dies.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sockline_core::hub::{
    Broker, BrokerCommand, BrokerEvent, ConnId, InMemoryBroker, LogPosition, Origin, Unrecoverable,
};
use sockline_core::{Config, Delivery, Envelope, Event, Jitter, SendRequest, State};
use sockline_tokio::hub::{Hub, HubConfig, HubHandle, RedisBroker, RedisConfig};
use sockline_tokio::{Client, ClientOptions, EventStream, Subscription};
use support::{wait_event, WAIT};
use tokio::sync::Notify;
use tokio::time::timeout;

// ---- the redis-server fixture ---------------------------------------------------------------

/// A `redis-server` of this test's own, killed when dropped (also when the test panics).
struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// A server on a free loopback port.
    fn start() -> RedisServer {
        for _ in 0..20 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            // Another process may take the port between its release and the server's bind.
            if let Some(s) = RedisServer::start_on(port) {
                return s;
            }
        }
        panic!("redis-server did not start on any of 20 free ports");
    }

    /// A server on `port` (`None`: it could not bind it).
    fn start_on(port: u16) -> Option<RedisServer> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed (these tests need a real one: \
                 `apt-get install redis-server`; CI installs it)"
            ),
            Err(e) => panic!("cannot run redis-server: {e}"),
        };
        let mut server = RedisServer {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if server.pings() {
                return Some(server);
            }
            let exited = server
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited {
                server.child = None;
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server on port {port} never answered PING");
    }

    fn pings(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Killed and started again on the same port, empty.
    fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(mut s) = RedisServer::start_on(self.port) {
                self.child = s.child.take();
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not restart");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- broker nodes ---------------------------------------------------------------------------

/// A broker node as a hub drives it: submit, then take events when woken.
struct Node {
    broker: RedisBroker,
    ready: Arc<Notify>,
}

async fn node(url: &str, capacity: usize) -> Node {
    node_with(RedisConfig::new(url, capacity)).await
}

async fn node_with(cfg: RedisConfig) -> Node {
    let ready = Arc::new(Notify::new());
    let wake = ready.clone();
    let broker = RedisBroker::connect(cfg, Arc::new(move || wake.notify_one()))
        .await
        .expect("redis reachable");
    Node { broker, ready }
}

/// A short liveness TTL and heartbeat, so that a dead node is noticed within a second.
fn fast_config(url: &str) -> RedisConfig {
    RedisConfig {
        live_ttl: Duration::from_millis(600),
        heartbeat: Duration::from_millis(200),
        ..RedisConfig::new(url, 64)
    }
}

/// A tokio runtime of its own for a broker node or a hub that the test kills as a process
/// death would: `kill` drops every task of it at once (each connection's socket closes without a
/// close frame, the broker's worker goes without deleting its liveness key or sweeping). Dropped
/// without `kill` (a failed test), it is shut down in the background.
struct Doomed(Option<tokio::runtime::Runtime>);

impl Doomed {
    fn new() -> Doomed {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        Doomed(Some(rt))
    }

    /// Runs `f` on this runtime (whatever it spawns lives there) and returns its output.
    async fn run<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        let rt = self.0.as_ref().expect("not killed yet");
        rt.spawn(f).await.expect("ran")
    }

    /// Every task dropped, every socket closed; returns once they all are.
    async fn kill(&mut self) {
        if let Some(rt) = self.0.take() {
            tokio::task::spawn_blocking(move || rt.shutdown_timeout(Duration::from_secs(5)))
                .await
                .unwrap();
        }
    }
}

impl Drop for Doomed {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Node {
    fn submit(&mut self, c: BrokerCommand) {
        self.broker.submit(c);
    }

    async fn next(&mut self) -> BrokerEvent {
        timeout(WAIT, async {
            loop {
                if let Some(e) = self.broker.poll_event() {
                    return e;
                }
                self.ready.notified().await;
            }
        })
        .await
        .expect("a broker event in time")
    }

    async fn take(&mut self, n: usize) -> Vec<BrokerEvent> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            got.push(self.next().await);
        }
        got
    }

    /// The events up to and including the first `f` accepts.
    async fn until(&mut self, f: impl Fn(&BrokerEvent) -> bool) -> Vec<BrokerEvent> {
        let mut got = Vec::new();
        loop {
            let e = self.next().await;
            let done = f(&e);
            got.push(e);
            if done {
                return got;
            }
        }
    }
}

fn origin(conn: u64, id: &str) -> Origin {
    Origin {
        conn: ConnId(conn),
        id: Some(id.into()),
        echo: false,
    }
}

fn publish(project: u64, text: &str, origin: Origin, session: Option<&str>) -> BrokerCommand {
    BrokerCommand::Publish {
        project,
        message: Envelope::decode(text, 1 << 20, 64).expect("a valid envelope"),
        origin,
        session: session.map(str::to_string),
    }
}

fn update(project: u64, state: Value) -> BrokerCommand {
    BrokerCommand::Update {
        project,
        state,
        origin: Origin {
            conn: ConnId(2),
            id: None,
            echo: true,
        },
    }
}

fn join_as(project: u64, conn: u64, user: &str) -> BrokerCommand {
    BrokerCommand::Join {
        project,
        conn: ConnId(conn),
        since: None,
        limit: 10,
        user: user.into(),
        session: None,
    }
}

fn leave_as(project: u64, conn: u64, user: &str) -> BrokerCommand {
    BrokerCommand::Leave {
        project,
        conn: ConnId(conn),
        user: user.into(),
    }
}

/// A presence diff's frame, if `e` is one.
fn diff_of(e: &BrokerEvent) -> Option<String> {
    match e {
        BrokerEvent::Broadcast { frame, .. } if frame.contains("presence_diff") => {
            Some(frame.to_string())
        }
        _ => None,
    }
}

/// Cuts one of Redis's client connections (as a network fault would).
async fn kill_client(con: &mut redis::aio::MultiplexedConnection, id: i64) {
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(con)
        .await
        .unwrap();
}

/// A raw connection to the test's Redis.
async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn join(project: u64, since: Option<LogPosition>, limit: usize, user: &str) -> BrokerCommand {
    BrokerCommand::Join {
        project,
        conn: ConnId(9),
        since,
        limit,
        user: user.into(),
        session: None,
    }
}

fn drain(b: &mut InMemoryBroker) -> Vec<BrokerEvent> {
    std::iter::from_fn(|| b.poll_event()).collect()
}

fn published(events: &[BrokerEvent]) -> Vec<(LogPosition, String, Option<Origin>)> {
    events
        .iter()
        .filter_map(|e| match e {
            BrokerEvent::Published {
                position,
                frame,
                origin,
                ..
            } => Some((position.clone(), frame.to_string(), origin.clone())),
            _ => None,
        })
        .collect()
}

// ---- broker-level tests ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_are_byte_identical_to_the_in_memory_brokers() {
    let redis = RedisServer::start();
    let mut r = node(&redis.url(), 64).await;
    let mut mem = InMemoryBroker::new(64, 1);
    let commands = vec![
        publish(
            7,
            r#"{"type":"chat","data":{"b":1,"a":"x"},"id":"m1"}"#,
            origin(1, "m1"),
            None,
        ),
        publish(
            7,
            r#"{"type":"chat","data":"é \" \\ \n </script> \u2028","timestamp":"2026-12-01T10:00:00.000Z","id":"m2","projectId":99,"epoch":"forged","offset":5}"#,
            origin(1, "m2"),
            None,
        ),
        update(7, json!({"title": "a"})),
        update(7, json!({"z": 1, "a": [1, {"y": null}], "vv": true})),
        update(7, json!({"version": 99, "x": "y"})),
        update(7, json!({"v": 1, "versio": 2, "versions": 3, "w": 4})),
        update(7, json!(5)),
        update(7, Value::Null),
        update(7, json!("text")),
        update(7, json!([1, 2])),
        publish(8, r#"{"type":"n","data":null}"#, origin(3, "m3"), None),
    ];
    let n = commands.len();
    for c in commands {
        mem.submit(c.clone());
        r.submit(c);
    }
    let want = published(&drain(&mut mem));
    let got = published(&r.take(n).await);
    assert_eq!(got.len(), want.len());
    for ((gp, gf, go), (wp, wf, wo)) in got.iter().zip(&want) {
        assert_eq!(gp.offset, wp.offset);
        // Epochs are drawn by each broker: the rest is the same bytes.
        assert_eq!(
            gf,
            &wf.replace(&wp.epoch, &gp.epoch),
            "frame at {}",
            gp.offset
        );
        assert_eq!(go, wo, "only the origin's node is told its origin");
    }
    for project in [7, 8, 1] {
        let ask = BrokerCommand::Snapshot {
            project,
            conn: ConnId(4),
        };
        mem.submit(ask.clone());
        r.submit(ask);
        assert_eq!(
            r.next().await,
            drain(&mut mem).remove(0),
            "snapshot of {project}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_decides_replays_as_the_in_memory_broker_does() {
    let redis = RedisServer::start();
    let mut r = node(&redis.url(), 3).await;
    let mut mem = InMemoryBroker::new(3, 1);
    let joined = |e: BrokerEvent| match e {
        BrokerEvent::Joined { answer: a, .. } => (a.top, a.replay, a.present, a.version, a.state),
        other => panic!("{other:?}"),
    };
    let is_joined = |e: &BrokerEvent| matches!(e, BrokerEvent::Joined { .. });
    r.submit(join(1, None, 10, "ann"));
    mem.submit(join(1, None, 10, "ann"));
    let (rtop, replay, present, version, state) = joined(r.until(is_joined).await.pop().unwrap());
    let (mtop, ..) = joined(drain(&mut mem).remove(0));
    assert_eq!(
        (rtop.offset, replay, present),
        (0, None, vec!["ann".to_string()])
    );
    assert_eq!((version, state), (0, json!({})));
    for i in 0..5 {
        let text = format!(r#"{{"type":"n","data":{i}}}"#);
        r.submit(publish(1, &text, origin(1, "x"), None));
        mem.submit(publish(1, &text, origin(1, "x"), None));
    }
    let mut events = Vec::new();
    while published(&events).len() < 5 {
        events.push(r.next().await);
    }
    drain(&mut mem);
    let at = |epoch: &str, offset| {
        Some(LogPosition {
            epoch: epoch.into(),
            offset,
        })
    };
    let cases = [
        (
            at(&rtop.epoch, 2),
            at(&mtop.epoch, 2),
            10,
            "recovered: 3 missed",
        ),
        (at(&rtop.epoch, 5), at(&mtop.epoch, 5), 10, "nothing missed"),
        (at(&rtop.epoch, 1), at(&mtop.epoch, 1), 10, "too old"),
        (at(&rtop.epoch, 6), at(&mtop.epoch, 6), 10, "ahead"),
        (
            at("0123456789abcdef", 5),
            at("0123456789abcdef", 5),
            10,
            "epoch changed",
        ),
        (at(&rtop.epoch, 2), at(&mtop.epoch, 2), 2, "too many"),
    ];
    let mut outcomes = BTreeSet::new();
    for (rs, ms, limit, what) in cases {
        r.submit(join(1, rs, limit, "bob"));
        mem.submit(join(1, ms, limit, "bob"));
        let (top, replay, present, ..) = joined(r.until(is_joined).await.pop().unwrap());
        let want = drain(&mut mem)
            .into_iter()
            .find(|e| matches!(e, BrokerEvent::Joined { .. }))
            .map(joined)
            .unwrap();
        assert_eq!(top.offset, want.0.offset, "{what}");
        assert_eq!(present, want.2, "{what}");
        let replay = replay.expect("a position was given");
        let want_replay = want.1.expect("a position was given");
        match (&replay, &want_replay) {
            (Ok(got), Ok(want)) => {
                let want: Vec<String> = want
                    .iter()
                    .map(|f| f.replace(&mtop.epoch, &rtop.epoch))
                    .collect();
                let got: Vec<String> = got.iter().map(|f| f.to_string()).collect();
                assert_eq!(got, want, "{what}");
                outcomes.insert(if got.is_empty() { "empty" } else { "frames" });
            }
            (g, w) => {
                assert_eq!(g, w, "{what}");
                outcomes.insert(g.as_ref().unwrap_err().as_str());
            }
        }
    }
    assert_eq!(outcomes.len(), 6, "every outcome was seen: {outcomes:?}");
    assert!(outcomes.contains(Unrecoverable::TooMany.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_s_own_messages_in_its_replay_are_named_as_the_in_memory_broker_names_them() {
    let redis = RedisServer::start();
    let mut r = node(&redis.url(), 16).await;
    let mut mem = InMemoryBroker::new(16, 1);
    let is_joined = |e: &BrokerEvent| matches!(e, BrokerEvent::Joined { .. });
    let top = |e: BrokerEvent| match e {
        BrokerEvent::Joined { answer, .. } => answer.top,
        other => panic!("{other:?}"),
    };
    r.submit(join(4, None, 10, "ann"));
    mem.submit(join(4, None, 10, "ann"));
    let (rtop, mtop) = (
        top(r.until(is_joined).await.pop().unwrap()),
        top(drain(&mut mem).remove(0)),
    );
    // Ann's session s1 logs k1 and k3, bob's s2 logs k2, and one has no session.
    for (i, (session, id)) in [
        (Some("s1"), "k1"),
        (Some("s2"), "k2"),
        (Some("s1"), "k3"),
        (None, "k4"),
    ]
    .into_iter()
    .enumerate()
    {
        let text = format!(r#"{{"type":"chat","data":{i},"id":"{id}"}}"#);
        r.submit(publish(4, &text, origin(1, id), session));
        mem.submit(publish(4, &text, origin(1, id), session));
    }
    let mut events = Vec::new();
    while published(&events).len() < 4 {
        events.push(r.next().await);
    }
    drain(&mut mem);
    let rejoin = |epoch: &str| BrokerCommand::Join {
        project: 4,
        conn: ConnId(9),
        since: Some(LogPosition {
            epoch: epoch.into(),
            offset: 0,
        }),
        limit: 10,
        user: "ann".into(),
        session: Some("s1".into()),
    };
    r.submit(rejoin(&rtop.epoch));
    mem.submit(rejoin(&mtop.epoch));
    let own = |e: BrokerEvent| match e {
        BrokerEvent::Joined { answer, .. } => (answer.own, answer.replay.unwrap().unwrap().len()),
        other => panic!("{other:?}"),
    };
    let got = own(r.until(is_joined).await.pop().unwrap());
    let want = own(drain(&mut mem).into_iter().find(is_joined).unwrap());
    assert_eq!(got, want);
    assert_eq!(got, (vec![(1, "k1".to_string()), (3, "k3".to_string())], 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_through_another_node_is_a_duplicate_and_presence_spans_nodes() {
    let redis = RedisServer::start();
    let mut a = node(&redis.url(), 16).await;
    let mut b = node(&redis.url(), 16).await;
    let text = r#"{"type":"chat","data":1,"id":"k1"}"#;
    a.submit(publish(3, text, origin(1, "k1"), Some("s1")));
    let first = match a.next().await {
        BrokerEvent::Published { position, .. } => position,
        other => panic!("{other:?}"),
    };
    // (Node b has no member in project 3: it is not told of a's message at all.)
    // The ack died with node a: the client resends through node b.
    b.submit(publish(3, text, origin(5, "k1"), Some("s1")));
    assert_eq!(
        b.next().await,
        BrokerEvent::Duplicate {
            project: 3,
            position: first.clone(),
            origin: origin(5, "k1"),
        }
    );
    // Another project, or no session: news.
    b.submit(publish(4, text, origin(5, "k1"), Some("s1")));
    assert!(matches!(
        b.next().await,
        BrokerEvent::Published { project: 4, .. }
    ));

    // Presence: ann on a, bob on b; each node hears the other's arrival and departure.
    a.submit(join(3, None, 10, "ann"));
    let got = a.until(|e| matches!(e, BrokerEvent::Joined { .. })).await;
    let BrokerEvent::Joined { answer, .. } = got.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(answer.present, vec!["ann".to_string()]);
    let diff = |e: &BrokerEvent| match e {
        BrokerEvent::Broadcast { frame, origin, .. } => Some((frame.to_string(), origin.clone())),
        _ => None,
    };
    let seen = b.until(|e| diff(e).is_some()).await;
    let (frame, from) = diff(seen.last().unwrap()).unwrap();
    assert_eq!(
        frame,
        r#"{"type":"presence_diff","data":{"joins":["ann"],"leaves":[]},"projectId":3}"#
    );
    assert_eq!(from, None, "another node's joiner");
    let (_, own) = diff(&a.next().await).expect("the joiner's node hears the diff too");
    assert_eq!(
        own.map(|o| o.conn),
        Some(ConnId(9)),
        "so it skips the joiner"
    );
    b.submit(join(3, None, 10, "bob"));
    let got = b.until(|e| matches!(e, BrokerEvent::Joined { .. })).await;
    let BrokerEvent::Joined { answer, .. } = got.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(answer.present, vec!["ann".to_string(), "bob".to_string()]);
    a.until(|e| diff(e).is_some_and(|(f, _)| f.contains(r#""joins":["bob"]"#)))
        .await;
    // Node b goes away without a word: its presence ends when its liveness key expires.
    drop(b);
    let got = a
        .until(|e| diff(e).is_some_and(|(f, _)| f.contains(r#""leaves":["bob"]"#)))
        .await;
    assert!(!got.is_empty());

    // Sessions: live here, resumable anywhere, unknown when never seen.
    a.submit(BrokerCommand::SessionLive {
        session: "s1".into(),
        user: "ann".into(),
    });
    a.submit(BrokerCommand::SessionAway {
        session: "s1".into(),
        ttl_ms: 60_000,
    });
    let mut c = node(&redis.url(), 16).await;
    for (session, user) in [("s1", Some("ann".to_string())), ("s2", None)] {
        c.submit(BrokerCommand::Resume {
            conn: ConnId(7),
            session: session.into(),
        });
        assert_eq!(
            c.next().await,
            BrokerEvent::Resumed {
                conn: ConnId(7),
                session: session.into(),
                user,
            }
        );
    }
}

/// Checks the ordering contract on one node's events for `project`: offsets rising by one from
/// the first, each once, no hole; a `Joined` after everything up to its top and before anything past it. Returns the
/// offsets that came with an origin.
fn check_order(events: &[BrokerEvent], project: u64) -> BTreeSet<u64> {
    let mut last = events
        .iter()
        .find_map(|e| match e {
            BrokerEvent::Published {
                project: p,
                position,
                ..
            } if *p == project => Some(position.offset - 1),
            _ => None,
        })
        .unwrap_or(0);
    let mut own = BTreeSet::new();
    for e in events {
        match e {
            BrokerEvent::Published {
                project: p,
                position,
                origin,
                ..
            } if *p == project => {
                assert_eq!(
                    position.offset,
                    last + 1,
                    "offsets in order, no hole, no repeat"
                );
                last = position.offset;
                if origin.is_some() {
                    own.insert(last);
                }
            }
            BrokerEvent::Joined { answer, .. } => {
                assert_eq!(
                    answer.top.offset, last,
                    "a join answered right after its top"
                );
            }
            _ => {}
        }
    }
    own
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_publishing_at_once_see_one_order_and_joins_in_their_place() {
    let redis = RedisServer::start();
    let mut a = node(&redis.url(), 4096).await;
    let mut b = node(&redis.url(), 4096).await;
    let n = 600;
    // Each node follows the project from the start (a node is told of others' messages only
    // in projects it has members in).
    a.submit(join(1, None, 10, "ann"));
    b.submit(join(1, None, 10, "bob"));
    let mut ea = a.until(|e| matches!(e, BrokerEvent::Joined { .. })).await;
    let mut eb = b.until(|e| matches!(e, BrokerEvent::Joined { .. })).await;
    let (mut joins_a, mut joins_b) = (1, 1);
    for i in 0..n {
        let text = format!(r#"{{"type":"n","data":{i}}}"#);
        a.submit(publish(1, &text, origin(1, "a"), None));
        b.submit(publish(1, &text, origin(2, "b"), None));
        if i % 50 == 0 {
            a.submit(join(1, None, 10, "ann"));
            b.submit(join(1, None, 10, "bob"));
            joins_a += 1;
            joins_b += 1;
        }
        if i % 20 == 0 {
            // Let the workers run: batches of different sizes interleave in Redis.
            while let Some(e) = a.broker.poll_event() {
                ea.push(e);
            }
            while let Some(e) = b.broker.poll_event() {
                eb.push(e);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let count = |v: &[BrokerEvent]| {
        v.iter()
            .filter(|e| {
                matches!(
                    e,
                    BrokerEvent::Published { .. } | BrokerEvent::Joined { .. }
                )
            })
            .count()
    };
    while count(&ea) < 2 * n + joins_a {
        ea.push(a.next().await);
    }
    while count(&eb) < 2 * n + joins_b {
        eb.push(b.next().await);
    }
    let (own_a, own_b) = (check_order(&ea, 1), check_order(&eb, 1));
    assert_eq!(
        (own_a.len(), own_b.len()),
        (n, n),
        "each node is told its own"
    );
    assert!(own_a.is_disjoint(&own_b));
    assert_eq!(published(&ea).len(), 2 * n);
    let frames =
        |v: &[BrokerEvent]| -> Vec<String> { published(v).into_iter().map(|p| p.1).collect() };
    assert_eq!(frames(&ea), frames(&eb), "the same bytes in the same order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelining_publishes_measured() {
    let redis = RedisServer::start();
    let mut a = node(&redis.url(), 1024).await;
    // One at a time: a round trip (and a pub/sub delivery) per publish.
    let serial = 300;
    let t = Instant::now();
    for i in 0..serial {
        a.submit(publish(
            1,
            &format!(r#"{{"type":"n","data":{i}}}"#),
            origin(1, "x"),
            None,
        ));
        a.next().await;
    }
    let one_by_one = serial as f64 / t.elapsed().as_secs_f64();
    // All at once: the worker drains what is queued into one pipeline per round trip.
    let burst = 20_000;
    let t = Instant::now();
    for i in 0..burst {
        a.submit(publish(
            1,
            &format!(r#"{{"type":"n","data":{i}}}"#),
            origin(1, "x"),
            None,
        ));
    }
    let events = a.take(burst).await;
    let pipelined = burst as f64 / t.elapsed().as_secs_f64();
    assert_eq!(check_order(&events, 1).len(), burst);
    eprintln!(
        "redis broker: {one_by_one:.0} publishes/s one at a time, {pipelined:.0} publishes/s pipelined ({:.1}x)",
        pipelined / one_by_one
    );
    assert!(
        pipelined > one_by_one * 2.0,
        "batching pays: {pipelined:.0} vs {one_by_one:.0}"
    );
}

/// The id of the newest pub/sub connection (the node connected last).
async fn newest_subscriber(url: &str) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut con)
        .await
        .unwrap();
    list.lines()
        .filter(|l| l.contains(" sub=1"))
        .filter_map(|l| l.split(' ').next()?.strip_prefix("id=")?.parse().ok())
        .max()
        .expect("a subscriber")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_connection_broke_goes_down_comes_up_and_misses_nothing() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let mut a = node(&url, 4096).await;
    let mut b = node(&url, 4096).await;
    b.submit(join(1, None, 10, "bob"));
    b.until(|e| matches!(e, BrokerEvent::Joined { .. })).await;
    // Node b's events connection is cut while node a keeps publishing: b catches up from the
    // log once it is back.
    let victim = newest_subscriber(&url).await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let n = 400;
    for i in 0..n {
        a.submit(publish(
            1,
            &format!(r#"{{"type":"n","data":{i}}}"#),
            origin(1, "x"),
            None,
        ));
        if i == 50 {
            kill_client(&mut con, victim).await;
        }
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let mut events = Vec::new();
    while published(&events).len() < n {
        events.push(b.next().await);
    }
    let down = events
        .iter()
        .position(|e| matches!(e, BrokerEvent::Down { .. }));
    let up = events.iter().position(|e| matches!(e, BrokerEvent::Up));
    assert!(
        matches!((down, up), (Some(d), Some(u)) if d < u),
        "down, then up: {down:?} {up:?}"
    );
    check_order(&events, 1);

    // Redis itself dies: commands fail (the hub says so), and after it returns the log starts
    // over in a new epoch.
    let epoch = published(&events)[0].0.epoch.clone();
    redis.kill();
    a.until(|e| matches!(e, BrokerEvent::Down { .. })).await;
    a.submit(publish(
        1,
        r#"{"type":"n","data":"lost"}"#,
        origin(1, "y"),
        None,
    ));
    let failed = a.until(|e| matches!(e, BrokerEvent::Failed { .. })).await;
    let Some(BrokerEvent::Failed {
        command,
        retry_after_ms,
    }) = failed.last()
    else {
        unreachable!()
    };
    assert!(matches!(command, BrokerCommand::Publish { .. }) && *retry_after_ms <= 1000);
    redis.restart();
    a.until(|e| matches!(e, BrokerEvent::Up)).await;
    a.submit(publish(
        1,
        r#"{"type":"n","data":"again"}"#,
        origin(1, "z"),
        None,
    ));
    let got = a
        .until(|e| matches!(e, BrokerEvent::Published { .. }))
        .await;
    let (position, _, from) = published(&got).remove(0);
    assert_eq!(position.offset, 1);
    assert_ne!(position.epoch, epoch, "a lost log is a new epoch");
    assert!(from.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_dies_silently_leaves_presence_within_its_ttl() {
    let redis = RedisServer::start();
    let url = redis.url();
    let cfg = fast_config(&url);
    let mut a = node_with(cfg.clone()).await;
    let mut doomed = Doomed::new();
    let b_cfg = cfg.clone();
    let mut b = doomed.run(node_with(b_cfg)).await;
    let b_id = b.broker.node_id().to_string();
    a.submit(join_as(5, 1, "ann"));
    a.submit(join_as(6, 2, "ann"));
    a.until(|e| matches!(e, BrokerEvent::Joined { project: 6, .. }))
        .await;
    b.submit(join_as(5, 9, "bob"));
    b.submit(join_as(5, 10, "carol"));
    b.submit(join_as(6, 11, "bob"));
    b.until(|e| matches!(e, BrokerEvent::Joined { project: 6, .. }))
        .await;
    let mut want: BTreeSet<(u64, &str)> = [(5, "bob"), (5, "carol"), (6, "bob")].into();
    let mut joined = want.clone();
    while !joined.is_empty() {
        let e = a.next().await;
        if let (Some(f), BrokerEvent::Broadcast { project, .. }) = (diff_of(&e), &e) {
            joined.retain(|(p, u)| !(p == project && f.contains(&format!(r#""joins":["{u}"]"#))));
        }
    }
    // Node b's process dies: no DEL of its liveness key, no sweep of its own.
    doomed.kill().await;
    let died = Instant::now();
    drop(b);
    while !want.is_empty() {
        let e = a.next().await;
        if let (
            Some(f),
            BrokerEvent::Broadcast {
                project, origin, ..
            },
        ) = (diff_of(&e), &e)
        {
            assert!(!f.contains("ann"), "a live node's user stays: {f}");
            assert_eq!(origin, &None, "a swept user is nobody's connection here");
            want.retain(|(p, u)| !(p == project && f.contains(&format!(r#""leaves":["{u}"]"#))));
        }
    }
    let after = died.elapsed();
    eprintln!("a silent node's users left after {after:?} (ttl 600 ms, heartbeat 200 ms)");
    // Its key lived on for the rest of its TTL (at least 400 ms: refreshed at most 200 ms before
    // the death); the sweep came within one heartbeat of its expiry.
    assert!(
        after >= Duration::from_millis(350),
        "not before the TTL: {after:?}"
    );
    assert!(
        after <= Duration::from_millis(600 + 200 + 300),
        "within TTL + a period: {after:?}"
    );
    let mut con = raw(&url).await;
    for p in [5, 6] {
        let users: Vec<String> = redis::cmd("HVALS")
            .arg(format!("sockline:p:{p}:presence"))
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(users, vec!["ann".to_string()], "project {p}");
    }
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg("sockline:nodes")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        nodes,
        vec![a.broker.node_id().to_string()],
        "the dead node is forgotten"
    );
    let exists: u64 = redis::cmd("EXISTS")
        .arg(format!("sockline:node:{b_id}:projects"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(exists, 0);
    // The live node, meanwhile, kept itself alive through several TTLs.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let alive: u64 = redis::cmd("EXISTS")
        .arg(format!("sockline:node:{}", a.broker.node_id()))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(alive, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_that_meets_a_broken_connection_still_ends_the_presence() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut a = node(&url, 16).await;
    let mut b = node(&url, 16).await;
    a.submit(join_as(4, 1, "ann"));
    a.until(|e| matches!(e, BrokerEvent::Joined { .. })).await;
    b.submit(join_as(4, 9, "bob"));
    b.until(|e| matches!(e, BrokerEvent::Joined { .. })).await;
    a.until(|e| diff_of(e).is_some_and(|f| f.contains(r#""joins":["bob"]"#)))
        .await;
    // Every command connection is cut (the nodes' pub/sub ones stay); bob's leave is the first
    // command node b sends on its broken one.
    let mut con = raw(&url).await;
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query_async(&mut con)
        .await
        .unwrap();
    b.submit(leave_as(4, 9, "bob"));
    let got = b.until(|e| matches!(e, BrokerEvent::Up)).await;
    assert!(
        !got.iter().any(|e| matches!(e, BrokerEvent::Failed { .. })),
        "a leave is carried out later, not given up on: {got:?}"
    );
    a.until(|e| diff_of(e).is_some_and(|f| f.contains(r#""leaves":["bob"]"#)))
        .await;
    let mut con = raw(&url).await;
    let users: Vec<String> = redis::cmd("HVALS")
        .arg("sockline:p:4:presence")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(users, vec!["ann".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_follows_only_projects_it_has_members_in() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut a = node(&url, 16).await;
    let mut b = node(&url, 16).await;
    // Node b has a member in 40 projects, one after the other, then none.
    for p in 0..40 {
        b.submit(join_as(1000 + p, 9, "bob"));
        b.until(|e| matches!(e, BrokerEvent::Joined { .. })).await;
        b.submit(leave_as(1000 + p, 9, "bob"));
    }
    b.submit(join_as(7, 9, "bob"));
    b.until(|e| matches!(e, BrokerEvent::Joined { project: 7, .. }))
        .await;
    let mut con = raw(&url).await;
    let projects: Vec<u64> = redis::cmd("SMEMBERS")
        .arg(format!("sockline:node:{}:projects", b.broker.node_id()))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        projects,
        vec![7],
        "the node's set holds the projects it is in now"
    );
    // Node a publishes in all of them, 7 last: node b is told of 7's only.
    for p in 0..40 {
        a.submit(publish(
            1000 + p,
            r#"{"type":"n","data":1}"#,
            origin(1, "x"),
            None,
        ));
    }
    a.submit(publish(7, r#"{"type":"n","data":2}"#, origin(1, "y"), None));
    let mut own = Vec::new();
    while published(&own).len() < 41 {
        own.push(a.next().await);
    }
    assert!(
        published(&own).iter().all(|p| p.2.is_some()),
        "node a, a member nowhere, is told only of its own messages (for their acks)"
    );
    let got = b
        .until(|e| matches!(e, BrokerEvent::Published { .. }))
        .await;
    let (position, frame, _) = published(&got).remove(0);
    assert!(frame.contains(r#""data":2"#), "{frame}");
    assert_eq!(position.offset, 1);
    // A sender that left before its message came back still gets its ack.
    a.submit(join_as(8, 3, "ann"));
    a.until(|e| matches!(e, BrokerEvent::Joined { .. })).await;
    a.submit(publish(8, r#"{"type":"n","data":3}"#, origin(3, "z"), None));
    a.submit(leave_as(8, 3, "ann"));
    let got = a
        .until(|e| matches!(e, BrokerEvent::Published { project: 8, .. }))
        .await;
    assert_eq!(published(&got)[0].2, Some(origin(3, "z")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_channel_is_ignored() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut a = node(&url, 16).await;
    let mut con = raw(&url).await;
    for junk in [
        "P",
        "B",
        "J",
        "",
        "P|",
        "P|x|y",
        "B|1",
        "J|1|n",
        "P|1|n|t|e|x|f",
        "é",
    ] {
        let _: () = redis::cmd("PUBLISH")
            .arg("sockline:events")
            .arg(junk)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    // The worker is still there, in order.
    a.submit(publish(1, r#"{"type":"n","data":1}"#, origin(1, "x"), None));
    let got = a
        .until(|e| matches!(e, BrokerEvent::Published { .. }))
        .await;
    assert_eq!(published(&got)[0].0.offset, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_catches_up_many_projects_in_one_round_trip() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut a = node(&url, 4096).await;
    let mut b = node(&url, 4096).await;
    let projects = 60u64;
    for p in 0..projects {
        b.submit(join_as(p, 9, "bob"));
    }
    let mut joined = 0;
    while joined < projects {
        if let BrokerEvent::Joined { .. } = b.next().await {
            joined += 1;
        }
    }
    let victim = newest_subscriber(&url).await;
    let mut con = raw(&url).await;
    // Node b's events connection is cut while node a publishes in every project.
    let rounds = 10;
    for i in 0..rounds {
        for p in 0..projects {
            a.submit(publish(
                p,
                &format!(r#"{{"type":"n","data":{i}}}"#),
                origin(1, "x"),
                None,
            ));
        }
        if i == 2 {
            kill_client(&mut con, victim).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = (projects * rounds) as usize;
    let mut events = Vec::new();
    while published(&events).len() < total {
        events.push(b.next().await);
    }
    let down = events
        .iter()
        .position(|e| matches!(e, BrokerEvent::Down { .. }));
    if !events.iter().any(|e| matches!(e, BrokerEvent::Up)) {
        // The catch-up's last messages come just before its `Up`.
        events.extend(b.until(|e| matches!(e, BrokerEvent::Up)).await);
    }
    let up = events.iter().position(|e| matches!(e, BrokerEvent::Up));
    assert!(
        matches!((down, up), (Some(d), Some(u)) if d < u),
        "{down:?} {up:?}"
    );
    for p in 0..projects {
        check_order(&events, p);
        let n = published(&events)
            .iter()
            .filter(|(_, f, _)| f.contains(&format!(r#""projectId":{p},"#)))
            .count();
        assert_eq!(n, rounds as usize, "project {p}");
    }
    // What node b caught up on came between Down and Up.
    let caught = events[down.unwrap()..up.unwrap()]
        .iter()
        .filter(|e| matches!(e, BrokerEvent::Published { .. }))
        .count();
    eprintln!("caught up {caught} messages of {projects} projects on reconnect");
}

// ---- a cluster of hubs ----------------------------------------------------------------------

async fn hub(url: &str, capacity: usize) -> HubHandle {
    let mut cfg = HubConfig {
        redis: Some(url.to_string()),
        ..HubConfig::default()
    };
    cfg.settings.replay_capacity = capacity;
    cfg.settings.rate_limit = sockline_core::RateLimitConfig::Off;
    Hub::start(cfg).await.expect("hub starts on redis")
}

struct Member {
    name: String,
    project: u64,
    client: Client,
    events: EventStream,
    inbox: Subscription,
    /// What it received: (sender, n, offset).
    got: Vec<(String, u64, u64)>,
}

fn client_config(urls: Vec<String>, user: &str) -> Config {
    let mut c = Config::new("");
    c.url.clear();
    c.urls = urls;
    c.user_id = Some(user.into());
    c.reconnect.jitter = Jitter::None;
    c.reconnect.initial_ms = 50;
    c.reconnect.max_ms = 500;
    c.reconnect.max_attempts = None;
    c
}

async fn member(urls: Vec<String>, name: &str, project: u64) -> Member {
    let client = Client::connect_with(
        client_config(urls, name),
        ClientOptions {
            seed: Some(name.len() as u64),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let events = client.events();
    let inbox = client.subscribe("chat", Some(project)).await.unwrap();
    Member {
        name: name.into(),
        project,
        client,
        events,
        inbox,
        got: Vec::new(),
    }
}

impl Member {
    async fn joined(&mut self) {
        let mut st = self.client.state();
        timeout(WAIT, st.wait_for(|s| *s == State::Open))
            .await
            .expect("open in time")
            .unwrap();
        self.client.join_project(self.project).await.unwrap();
        let p = self.project;
        wait_event(&mut self.events, |e| {
            matches!(e, Event::Project { project_id, .. } if *project_id == p).then_some(())
        })
        .await;
    }

    async fn say(&self, n: u64) {
        let data = json!({"from": self.name, "n": n});
        self.client
            .send(
                SendRequest::new("chat", data)
                    .project(self.project)
                    .delivery(Delivery::AtLeastOnce),
            )
            .await
            .unwrap();
    }

    /// Receives until it holds `total` messages.
    async fn receive(&mut self, total: usize) {
        while self.got.len() < total {
            let m = timeout(WAIT, self.inbox.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("{} has {} of {total} messages", self.name, self.got.len())
                })
                .unwrap();
            let d = m.data_value();
            let from = d["from"].as_str().unwrap_or_default().to_string();
            self.got
                .push((from, d["n"].as_u64().unwrap_or(0), m.offset.unwrap_or(0)));
        }
    }

    /// Every other member's messages `0..n` exactly once each, in order per sender and in one
    /// log order (offsets rising, within each epoch `from_epoch..`).
    fn check(&self, senders: &BTreeSet<String>, n: u64, since: usize) {
        check_got(&self.name, &self.got[since..], senders, n);
    }
}

/// What `Member::check` checks, of `name`'s messages `got`.
fn check_got(name: &str, got: &[(String, u64, u64)], senders: &BTreeSet<String>, n: u64) {
    let mut per: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (from, k, _) in got {
        assert_ne!(from, name, "a member does not get its own messages back");
        per.entry(from).or_default().push(*k);
    }
    for s in senders.iter().filter(|s| *s != name) {
        let want: Vec<u64> = (0..n).collect();
        assert_eq!(per.get(s.as_str()), Some(&want), "{name} got {s}'s");
    }
    assert!(
        got.windows(2).all(|w| w[0].2 < w[1].2),
        "{name} got them in log order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_on_redis_thirty_clients_a_hub_dies_then_redis_restarts() {
    let started = Instant::now();
    let mut redis = RedisServer::start();
    let url = redis.url();
    let mut hubs = Vec::new();
    for _ in 0..3 {
        hubs.push(Some(hub(&url, 256).await));
    }
    let urls: Vec<String> = hubs.iter().map(|h| h.as_ref().unwrap().url()).collect();
    let mut members = Vec::new();
    for i in 0..30usize {
        // Each starts on its own hub (the first URL), the others to fail over to.
        let mine: Vec<String> = (0..3).map(|k| urls[(i + k) % 3].clone()).collect();
        let project = 100 + (i / 3 % 3) as u64;
        members.push(member(mine, &format!("u{i:02}"), project).await);
    }
    for m in members.iter_mut() {
        m.joined().await;
    }
    for (i, h) in hubs.iter().enumerate() {
        assert_eq!(
            h.as_ref().unwrap().connections_open(),
            10,
            "hub {i} has its ten"
        );
    }
    let senders: BTreeMap<u64, BTreeSet<String>> =
        members.iter().fold(BTreeMap::new(), |mut acc, m| {
            acc.entry(m.project).or_default().insert(m.name.clone());
            acc
        });
    let others = |m: &Member| senders[&m.project].len() - 1;

    // Every member says three things; every other member hears each once, in one order.
    for m in &members {
        for n in 0..3 {
            m.say(n).await;
        }
    }
    for m in members.iter_mut() {
        let total = others(m) * 3;
        m.receive(total).await;
        m.check(&senders[&m.project], 3, 0);
    }
    eprintln!("30 clients, 3 hubs: first round in {:?}", started.elapsed());

    // A hub dies mid-run: its clients fail over and recover what they missed; the others keep
    // talking meanwhile.
    hubs[0].take().unwrap().shutdown().await;
    for m in &members {
        for n in 3..6 {
            m.say(n).await;
        }
    }
    for m in members.iter_mut() {
        let total = others(m) * 6;
        m.receive(total).await;
        m.check(&senders[&m.project], 6, 0);
    }
    let open: usize = hubs.iter().flatten().map(|h| h.connections_open()).sum();
    assert_eq!(open, 30, "everybody is on the two hubs left");
    eprintln!("hub killed, all recovered by {:?}", started.elapsed());

    // Redis restarts empty: the hubs say they cannot log, then recover by themselves.
    redis.restart();
    for m in members.iter_mut() {
        wait_event(&mut m.events, |e| match e {
            Event::ServerError { code, .. } if code == "unavailable" => Some(()),
            _ => None,
        })
        .await;
    }
    eprintln!(
        "redis restarted, every client told by {:?}",
        started.elapsed()
    );
    // The first message of each project after that opens a new log: every member's next
    // message is in a new epoch, so each rejoins and gets a snapshot instead.
    let first: Vec<usize> = senders
        .keys()
        .map(|p| members.iter().position(|m| m.project == *p).unwrap())
        .collect();
    for &i in &first {
        loop {
            // Until the hub is back on Redis, a message waits in the client (it is refused
            // as unavailable and held).
            members[i].say(100).await;
            let ok = timeout(Duration::from_millis(500), async {
                wait_event(&mut members[i].events, |e| {
                    matches!(e, Event::Acked { .. }).then_some(())
                })
                .await
            })
            .await;
            if ok.is_ok() {
                break;
            }
        }
    }
    for (i, m) in members.iter_mut().enumerate() {
        if first.contains(&i) {
            continue;
        }
        let p = m.project;
        let reason = wait_event(&mut m.events, |e| match e {
            Event::Rejoined {
                project_id,
                recovered: false,
                reason,
                ..
            } if *project_id == p => Some(reason.clone()),
            _ => None,
        })
        .await;
        assert_eq!(reason.as_deref(), Some("epoch_changed"), "{}", m.name);
    }
    // Drain what the new epoch started with, then talk again: everything flows.
    let base: Vec<usize> = members.iter().map(|m| m.got.len()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for m in &members {
        m.say(200).await;
    }
    for (i, m) in members.iter_mut().enumerate() {
        let total = others(m);
        let from = m.got.len().max(base[i]);
        let deadline = Instant::now() + WAIT;
        while m.got[from..].iter().filter(|g| g.1 == 200).count() < total {
            assert!(Instant::now() < deadline, "{} after recovery", m.name);
            m.receive(m.got.len() + 1).await;
        }
        let mut heard: Vec<&str> = m.got[from..]
            .iter()
            .filter(|g| g.1 == 200)
            .map(|g| g.0.as_str())
            .collect();
        let n = heard.len();
        heard.sort();
        heard.dedup();
        assert_eq!(heard.len(), n, "{} heard nobody twice", m.name);
    }
    eprintln!("messages flow again by {:?}", started.elapsed());
    for m in &members {
        m.client.close().await.unwrap();
    }
    for h in hubs.into_iter().flatten() {
        h.shutdown().await;
    }
}

/// A TCP relay in front of a hub that a test can close (every connection through it cut, new
/// ones refused) and open again: a client away for as long as the test likes.
struct Gate {
    url: String,
    closed: Arc<std::sync::atomic::AtomicBool>,
    relays: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Gate {
    async fn to(hub: &HubHandle) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let target = hub.local_addr();
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let relays = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, r) = (closed.clone(), relays.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                r.lock().unwrap().push(relay.abort_handle());
            }
        });
        Gate {
            url,
            closed,
            relays,
            accept,
        }
    }

    fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        for relay in self.relays.lock().unwrap().drain(..) {
            relay.abort();
        }
    }

    fn open(&self) {
        self.closed
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.close();
        self.accept.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_away_longer_than_the_log_holds_gets_a_snapshot() {
    let redis = RedisServer::start();
    let (a, b) = (hub(&redis.url(), 5).await, hub(&redis.url(), 5).await);
    let gate = Gate::to(&b).await;
    let mut ann = member(vec![a.url()], "ann", 1).await;
    let mut bob = member(vec![gate.url.clone()], "bob", 1).await;
    ann.joined().await;
    bob.joined().await;
    ann.say(0).await;
    bob.receive(1).await;
    gate.close();
    // Ann says more than the log keeps while bob is away.
    for n in 1..12 {
        ann.say(n).await;
    }
    for _ in 1..12 {
        wait_event(&mut ann.events, |e| {
            matches!(e, Event::Acked { .. }).then_some(())
        })
        .await;
    }
    gate.open();
    let reason = wait_event(&mut bob.events, |e| match e {
        Event::Rejoined {
            recovered: false,
            reason,
            ..
        } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason.as_deref(), Some("too_old"));
    wait_event(&mut bob.events, |e| {
        matches!(e, Event::Project { project_id: 1, .. }).then_some(())
    })
    .await;
    for m in [&ann, &bob] {
        m.client.close().await.unwrap();
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_while_clients_publish_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let redis = RedisServer::start();
    let url = redis.url();
    // Hub 0 runs on a runtime of its own: killing it is a process death (no close frames, no
    // broker cleanup, its liveness key and presence entries left to expire).
    let mut doomed = Doomed::new();
    let u = url.clone();
    let hub0 = doomed.run(async move { hub(&u, 1024).await }).await;
    let hubs = [hub(&url, 1024).await, hub(&url, 1024).await];
    let urls = [hub0.url(), hubs[0].url(), hubs[1].url()];
    let mut members = Vec::new();
    for i in 0..12usize {
        // Each starts on its own hub (the first URL); every project has members on every hub.
        let mine: Vec<String> = (0..3).map(|k| urls[(i + k) % 3].clone()).collect();
        let project = 200 + (i / 3 % 3) as u64;
        members.push(member(mine, &format!("k{i:02}"), project).await);
    }
    for m in members.iter_mut() {
        m.joined().await;
    }
    let senders: BTreeMap<u64, BTreeSet<String>> =
        members.iter().fold(BTreeMap::new(), |mut acc, m| {
            acc.entry(m.project).or_default().insert(m.name.clone());
            acc
        });
    // Every member publishes one message every 10 ms for about 400 ms; hub 0 dies 150 ms in.
    let rounds = 40u64;
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        doomed.kill().await;
        drop(hub0);
        Instant::now()
    });
    let mut ids: Vec<BTreeSet<String>> = vec![BTreeSet::new(); members.len()];
    for n in 0..rounds {
        for (i, m) in members.iter().enumerate() {
            let data = json!({"from": m.name, "n": n});
            let id = m
                .client
                .send(
                    SendRequest::new("chat", data)
                        .project(m.project)
                        .delivery(Delivery::AtLeastOnce),
                )
                .await
                .unwrap();
            ids[i].insert(id);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed = killer.await.unwrap();
    // Every message is acked in the end (the killed hub's clients resend theirs elsewhere).
    for (i, m) in members.iter_mut().enumerate() {
        let mut waiting = std::mem::take(&mut ids[i]);
        while !waiting.is_empty() {
            wait_event(&mut m.events, |e| match e {
                Event::Acked { id } => Some(waiting.remove(id)),
                Event::Dropped { id, reason, .. } => panic!("{} dropped {id}: {reason:?}", m.name),
                _ => None,
            })
            .await;
        }
    }
    eprintln!(
        "12 clients, 3 hubs, one killed: every message acked {:?} after the kill",
        killed.elapsed()
    );
    // Every member got every other member's messages once each, in order, in one log order.
    let mut place: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for m in members.iter_mut() {
        let others = senders[&m.project].iter().filter(|s| **s != m.name);
        let total = others.count() * rounds as usize;
        let deadline = Instant::now() + WAIT;
        while m.got.iter().filter(|g| g.0 != m.name).count() < total {
            assert!(Instant::now() < deadline, "{} has too few", m.name);
            m.receive(m.got.len() + 1).await;
        }
        // A message the killed hub logged but never acked is in the replay of its sender's
        // rejoin: the client core takes it for its ack and never delivers it. Every other
        // member's message once.
        let own: Vec<(String, u64, u64)> =
            m.got.iter().filter(|g| g.0 == m.name).cloned().collect();
        assert!(own.is_empty(), "{} got its own back: {own:?}", m.name);
        let theirs: Vec<_> = m.got.iter().filter(|g| g.0 != m.name).cloned().collect();
        check_got(&m.name, &theirs, &senders[&m.project], rounds);
        assert!(
            m.got.windows(2).all(|w| w[0].2 < w[1].2),
            "{} got everything in log order",
            m.name
        );
        for (from, n, offset) in &m.got {
            let at = place.entry((from.clone(), *n)).or_insert(*offset);
            assert_eq!(
                at, offset,
                "{} got {from}'s {n} at the same place as all",
                m.name
            );
        }
    }
    // Nothing more comes: a late duplicate would.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for m in members.iter_mut() {
        let late = timeout(Duration::from_millis(1), m.inbox.recv()).await;
        assert!(late.is_err(), "{} got one more: {late:?}", m.name);
    }
    let open: usize = hubs.iter().map(|h| h.connections_open()).sum();
    assert_eq!(open, 12, "the killed hub's clients are on the two left");
    eprintln!("all checked by {:?}", started.elapsed());
    for m in &members {
        m.client.close().await.unwrap();
    }
    for h in hubs {
        h.shutdown().await;
    }
}
