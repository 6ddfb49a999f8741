//! The tokio side of the hub: accepts sockets, serves the demo's static files, runs WebSockets
//! at `/ws`, and moves frames and time between them and `sockline_core::hub::HubCore`. Every
//! protocol decision (closes and their codes, timeouts, chaos) is the core's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sockline_core::hub::{
    Broker, Claims, ConnId, Frame, HubCore, HubInput, HubOutput, HubSettings, InMemoryBroker,
    ScriptedAgent, TokenError, TokenVerifier,
};

use crate::hub::{JwtVerifier, OsSecrets};
use sockline_core::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

/// Everything the hub can be started with.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Protocol settings (chaos included).
    pub settings: HubSettings,
    /// The agent answering `agent_prompt` (none: prompts are refused).
    pub agent: Option<ScriptedAgent>,
    /// Frames queued per connection before the core is told its peer is not reading.
    pub outbound_queue: usize,
    /// Directory served at `/` (the browser demo), if any.
    pub static_dir: Option<PathBuf>,
    /// Seed for session ids and chaos (random by default: ids must differ across restarts).
    pub seed: u64,
    /// Serve `wss://` with this TLS configuration (every connection must then be a WebSocket).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Share projects with other hubs through the Redis at this URL (`redis://host:port`);
    /// `None`: this hub's own in-memory broker.
    pub redis: Option<String>,
    /// Prefix of the Redis keys and channel (several clusters can share one Redis).
    pub redis_prefix: String,
    /// Checks `hello.token` as a signed JWT: a connection is its token's `sub` (`None`: the
    /// settings' shared token, if any, or anybody).
    pub jwt: Option<Arc<JwtVerifier>>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            settings: HubSettings::default(),
            agent: Some(ScriptedAgent::default()),
            outbound_queue: 1024,
            static_dir: None,
            seed: fastrand::u64(..),
            tls: None,
            redis: None,
            redis_prefix: "sockline".into(),
            jwt: None,
        }
    }
}

/// One verifier for every hub started with the same config.
struct SharedVerifier(Arc<JwtVerifier>);

impl TokenVerifier for SharedVerifier {
    fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.0.verify(token)
    }
}

/// The reference hub server.
#[derive(Debug)]
pub struct Hub;

/// A running hub.
#[derive(Debug)]
pub struct HubHandle {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

/// What the core asked of one connection besides frames.
#[derive(Clone, Debug, PartialEq)]
enum Fate {
    /// Keep going.
    Live,
    /// Send a close frame and end.
    Close(u16, String),
    /// End without a close frame.
    Abort,
    /// Stop reading and writing, keep the socket until the hub stops.
    Stall,
}

struct ConnHandle {
    tx: mpsc::Sender<Frame>,
    fate: watch::Sender<Fate>,
}

/// The hub's protocol state, shareable so a restarted hub can carry on where one stopped (as a
/// broker shared by several hub processes would).
pub type HubState = Arc<Mutex<HubCore<Box<dyn Broker>>>>;

/// Connection ids are unique across every hub in the process, so hubs sharing a state never mix
/// up their connections.
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

struct Shared {
    core: HubState,
    conns: Mutex<BTreeMap<ConnId, ConnHandle>>,
    /// The core's deadline may have moved.
    changed: Notify,
    /// The broker has events for the core (a remote broker's worker says so).
    broker_ready: Arc<Notify>,
    accepted: AtomicU64,
    cfg: HubConfig,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Shared {
    fn now(&self) -> Timestamp {
        // One clock for every hub in the process: a state handed to a restarted hub keeps its
        // deadlines meaningful.
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        Timestamp::from_millis(ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64)
    }

    /// Feeds one input to the core and carries out what it asks.
    fn feed(&self, input: HubInput) {
        self.feed_with(|core, now| core.handle_input(now, input));
    }

    /// Applies `apply` to the core at the current time and carries out what it asks (a frame
    /// goes in borrowed: no copy of its text on the hub's hot path).
    fn feed_with(&self, apply: impl FnOnce(&mut HubCore<Box<dyn Broker>>, Timestamp)) {
        let mut apply = Some(apply);
        let mut pending: Vec<HubInput> = Vec::new();
        // The outputs are handed to the connections' queues before the core's lock is released:
        // another thread's outputs for the same connection must never overtake these (a
        // `presence_diff` arriving before the `presence_state` it amends would be lost).
        let mut core = match self.core.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        loop {
            let now = self.now();
            match (apply.take(), pending.pop()) {
                (Some(f), _) => f(&mut core, now),
                (None, Some(input)) => core.handle_input(now, input),
                (None, None) => break,
            }
            let conns = match self.conns.lock() {
                Ok(c) => c,
                Err(p) => p.into_inner(),
            };
            loop {
                let (conn, fate) = match core.poll_output() {
                    HubOutput::Timeout { .. } => break,
                    HubOutput::Send { conn, text } => {
                        if let Some(h) = conns.get(&conn) {
                            if h.tx.try_send(text).is_err() {
                                pending.push(HubInput::WriteBlocked { conn });
                            }
                        }
                        continue;
                    }
                    HubOutput::Close { conn, code, reason } => (conn, Fate::Close(code, reason)),
                    HubOutput::Abort { conn } => (conn, Fate::Abort),
                    HubOutput::Stall { conn } => (conn, Fate::Stall),
                    // Future outputs: nothing this driver knows to do.
                    _ => continue,
                };
                if let Some(h) = conns.get(&conn) {
                    h.fate.send_replace(fate);
                }
            }
        }
        drop(core);
        self.changed.notify_one();
    }

    fn deadline(&self) -> Option<Timestamp> {
        match self.core.lock() {
            Ok(c) => c.poll_timeout(),
            Err(p) => p.into_inner().poll_timeout(),
        }
    }
}

impl Hub {
    /// Binds and starts serving with fresh state; returns once the listener is bound.
    pub async fn start(cfg: HubConfig) -> std::io::Result<HubHandle> {
        let broker_ready = Arc::new(Notify::new());
        let broker: Box<dyn Broker> = match &cfg.redis {
            Some(url) => {
                let redis = crate::hub::RedisConfig {
                    prefix: cfg.redis_prefix.clone(),
                    ..crate::hub::RedisConfig::new(url.clone(), cfg.settings.replay_capacity)
                };
                let ready = broker_ready.clone();
                let wake: crate::hub::Wake = Arc::new(move || ready.notify_one());
                let broker = crate::hub::RedisBroker::connect(redis, wake)
                    .await
                    .map_err(|e| std::io::Error::other(format!("redis at {url}: {e}")))?;
                Box::new(broker)
            }
            // The broker's epochs come from this process's randomness, never from `cfg.seed`: a
            // hub restarted with the same seed and no state must not reuse the logs' epochs (a
            // client would take the new log for the old one).
            None => Box::new(InMemoryBroker::new(
                cfg.settings.replay_capacity,
                fastrand::u64(..),
            )),
        };
        // Session ids from the OS CSPRNG: with a resume they are credentials.
        let mut core =
            HubCore::new(cfg.settings.clone(), broker, cfg.seed).with_secrets(Box::new(OsSecrets));
        if let Some(agent) = cfg.agent.clone() {
            core = core.with_agent(Box::new(agent));
        }
        if let Some(jwt) = cfg.jwt.clone() {
            core = core.with_verifier(Box::new(SharedVerifier(jwt)));
        }
        Hub::serve_state(cfg, Arc::new(Mutex::new(core)), broker_ready).await
    }

    /// Starts serving an existing state (sessions, replay logs, projects, agent streams), e.g.
    /// the state of a hub that was shut down.
    pub async fn start_with_state(cfg: HubConfig, state: HubState) -> std::io::Result<HubHandle> {
        // A state's in-memory broker answers at once; a Redis broker's wake-ups went to the hub
        // that made it, so a hub is best started afresh on Redis (its logs are there anyway).
        Hub::serve_state(cfg, state, Arc::new(Notify::new())).await
    }

    async fn serve_state(
        cfg: HubConfig,
        state: HubState,
        broker_ready: Arc<Notify>,
    ) -> std::io::Result<HubHandle> {
        let listener = TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            core: state,
            conns: Mutex::new(BTreeMap::new()),
            changed: Notify::new(),
            broker_ready,
            accepted: AtomicU64::new(0),
            cfg,
        });
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, shared.clone(), rx));
        tracing::info!(%addr, "hub listening");
        Ok(HubHandle {
            addr,
            shutdown,
            task: Some(task),
            shared,
        })
    }
}

impl HubHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebSocket URL of this hub (`wss://` when it serves TLS).
    pub fn url(&self) -> String {
        let scheme = if self.shared.cfg.tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}/ws", self.addr)
    }

    /// The protocol state, to start another hub with after this one shuts down.
    pub fn state(&self) -> HubState {
        self.shared.core.clone()
    }

    /// Connections accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn connections_open(&self) -> usize {
        self.with_core(|c| c.connections())
    }

    /// Application messages delivered to sessions so far.
    pub fn messages_relayed(&self) -> u64 {
        self.with_core(|c| c.relayed())
    }

    fn with_core<R>(&self, f: impl FnOnce(&HubCore<Box<dyn Broker>>) -> R) -> R {
        match self.shared.core.lock() {
            Ok(c) => f(&c),
            Err(p) => f(&p.into_inner()),
        }
    }

    /// Stops listening, closes every connection (1012, with the settings' restart window as the
    /// reason) and releases the port.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HubHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let ticker = tokio::spawn(tick_loop(shared.clone()));
    let broker = tokio::spawn(broker_loop(shared.clone()));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.accepted.fetch_add(1, Ordering::Relaxed);
                    conns.spawn(handle_socket(stream, shared.clone(), shutdown.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    // The core tells every connection 1012 (and when to come back); give them a moment to send
    // it, then cut the rest.
    shared.feed(HubInput::Shutdown);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
    ticker.abort();
    broker.abort();
}

/// Feeds the core `broker_ready` whenever the broker says it has events.
async fn broker_loop(shared: Arc<Shared>) {
    loop {
        shared.broker_ready.notified().await;
        shared.feed(HubInput::BrokerReady);
    }
}

/// Sleeps until the core's next deadline (or until an input may have moved it), then feeds it.
async fn tick_loop(shared: Arc<Shared>) {
    loop {
        let sleep = match shared.deadline() {
            Some(at) => Duration::from_millis(at.ms_since(shared.now())),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => shared.feed(HubInput::Timeout),
            _ = shared.changed.notified() => {}
        }
    }
}

// A connection's task holds this future for the connection's whole life, sized by its largest
// state: the TLS handshake and the static page are boxed, so a plain WebSocket connection's task
// is about 1.3 KB instead of 13 KB (measured by `future_sizes` below).
async fn handle_socket(stream: TcpStream, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    if let Some(tls) = shared.cfg.tls.clone() {
        Box::pin(handle_tls(stream, tls, shared, shutdown)).await;
        return;
    }
    let Some(websocket) = Box::pin(is_websocket_upgrade(&stream)).await else {
        return;
    };
    if !websocket {
        Box::pin(serve_static(stream, shared.cfg.static_dir.as_deref())).await;
        return;
    }
    upgrade(stream, shared, shutdown).await;
}

async fn handle_tls(
    stream: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => upgrade(tls_stream, shared, shutdown).await,
        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!("TLS handshake timed out"),
    }
}

/// Whether the request waiting on `stream` asks for a WebSocket (`None`: nothing came in time).
async fn is_websocket_upgrade(stream: &TcpStream) -> Option<bool> {
    let mut head = [0u8; 2048];
    let n = match tokio::time::timeout(Duration::from_secs(10), stream.peek(&mut head)).await {
        Ok(Ok(n)) => n,
        _ => return None,
    };
    let request = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
    Some(request.contains("upgrade: websocket"))
}

/// The WebSocket handshake at `/ws`, then the connection's life.
async fn upgrade<S>(stream: S, shared: Arc<Shared>, shutdown: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Twice the protocol limit: the core refuses frames between the two by id (the client
    // drops that message); only beyond this is the connection cut off (1009).
    let max_frame_bytes = match shared.core.lock() {
        Ok(c) => c.settings().max_frame_bytes,
        Err(p) => p.into_inner().settings().max_frame_bytes,
    };
    let transport_limit = max_frame_bytes.saturating_mul(2);
    let config = WebSocketConfig::default()
        .max_message_size(Some(transport_limit))
        .max_frame_size(Some(transport_limit))
        .read_buffer_size(4096);
    let settings = &shared.cfg.settings;
    // The callback's signature is tungstenite's; its large error type is not ours to box.
    #[allow(clippy::result_large_err)]
    let check_path = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        #[allow(clippy::result_large_err)]
        let refuse = |status, why: &str| {
            let mut e = ErrorResponse::new(Some(why.into()));
            *e.status_mut() = status;
            Err(e)
        };
        if req.uri().path() != "/ws" {
            return refuse(StatusCode::NOT_FOUND, "no WebSocket here; use /ws");
        }
        // Which origins a browser may connect from is the core's decision (cross-site
        // WebSocket hijacking: another site's page riding the user's cookies).
        let origin = req
            .headers()
            .get("origin")
            .map(|o| o.to_str().unwrap_or("\u{fffd}"));
        if !settings.accepts_origin(origin) {
            return refuse(StatusCode::FORBIDDEN, "this origin may not connect");
        }
        Ok(resp)
    };
    let ws = match tokio_tungstenite::accept_hdr_async_with_config(stream, check_path, Some(config))
        .await
    {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, "handshake failed");
            return;
        }
    };
    run_connection(ws, shared, shutdown).await;
}

async fn run_connection<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = ConnId(NEXT_CONN.fetch_add(1, Ordering::Relaxed));
    let (tx, mut rx) = mpsc::channel::<Frame>(shared.cfg.outbound_queue.max(1));
    let (fate_tx, mut fate) = watch::channel(Fate::Live);
    if let Ok(mut conns) = shared.conns.lock() {
        conns.insert(conn, ConnHandle { tx, fate: fate_tx });
    }
    shared.feed(HubInput::Accepted { conn });

    let (mut sink, mut stream) = ws.split();
    let ending = loop {
        // An end decided while a write was blocked wins over further queued frames.
        let decided = fate.borrow_and_update().clone();
        if decided != Fate::Live {
            break decided;
        }
        let outgoing = tokio::select! {
            // Biased, reading last: queued frames go out before the next inbound frame is read,
            // so a peer's own replies (acks, pongs) never pile up and make it look like a slow
            // consumer, and a busy link still notices its fate.
            biased;
            out = rx.recv() => match out {
                Some(text) => text,
                None => break Fate::Abort,
            },
            changed = fate.changed() => {
                if changed.is_err() {
                    break Fate::Abort;
                }
                continue;
            }
            msg = stream.next() => {
                let input = match msg {
                    Some(Ok(Message::Text(t))) => {
                        shared.feed_with(|core, now| core.frame(now, conn, t.as_str()));
                        continue;
                    }
                    Some(Ok(Message::Binary(b))) => HubInput::BinaryFrame { conn, len: b.len() },
                    Some(Ok(Message::Close(_))) | None => break Fate::Abort,
                    Some(Ok(_)) => continue,
                    Some(Err(WsError::Capacity(_))) => HubInput::FrameTooLarge { conn },
                    Some(Err(_)) => break Fate::Abort,
                };
                shared.feed(input);
                continue;
            }
        };
        // What else is queued goes out in the same write: one flush (one syscall, one TCP
        // segment where it fits) for a burst instead of one per frame.
        let batch = async {
            sink.feed(text_message(outgoing)).await?;
            for _ in 1..WRITE_BATCH {
                match rx.try_recv() {
                    Ok(text) => sink.feed(text_message(text)).await?,
                    Err(_) => break,
                }
            }
            sink.flush().await
        };
        match write_or_abandon(batch, &mut fate).await {
            Written::Ok => {}
            Written::Failed | Written::Abandoned => break Fate::Abort,
        }
    };
    match ending {
        Fate::Close(code, reason) => {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            };
            // What the core said before deciding the close goes first (an error explaining it,
            // say); a peer that is not reading gets the grace period in all.
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                while let Ok(text) = rx.try_recv() {
                    if sink.send(text_message(text)).await.is_err() {
                        return;
                    }
                }
                let _ = sink.send(Message::Close(Some(frame))).await;
                let _ = sink.close().await;
            })
            .await;
        }
        Fate::Stall => {
            // Half-open: keep the socket but never read or write again.
            let _ = shutdown.changed().await;
        }
        Fate::Abort | Fate::Live => {}
    }
    if let Ok(mut conns) = shared.conns.lock() {
        conns.remove(&conn);
    }
    shared.feed(HubInput::Closed { conn });
}

/// How long a blocked write may still finish once the core has decided the connection's end.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The outcome of one outbound write.
enum Written {
    Ok,
    Failed,
    /// The connection's end was decided while the write stayed blocked past [`CLOSE_GRACE`].
    Abandoned,
}

/// Frames written before one flush, at most.
const WRITE_BATCH: usize = 64;

/// Runs one write (a batch of frames and its flush); a peer that stops reading cannot pin the
/// connection (and its memory) forever: once its end is decided, the write gets
/// [`CLOSE_GRACE`] to finish.
async fn write_or_abandon<E>(
    write: impl std::future::Future<Output = Result<(), E>>,
    fate: &mut watch::Receiver<Fate>,
) -> Written {
    tokio::pin!(write);
    if *fate.borrow() == Fate::Live {
        tokio::select! {
            r = &mut write => return if r.is_ok() { Written::Ok } else { Written::Failed },
            changed = fate.changed() => {
                if changed.is_err() {
                    return Written::Failed;
                }
            }
        }
    }
    match tokio::time::timeout(CLOSE_GRACE, &mut write).await {
        Ok(Ok(())) => Written::Ok,
        Ok(Err(_)) => Written::Failed,
        Err(_) => Written::Abandoned,
    }
}

/// Serves a file of the static directory for a plain HTTP GET (the browser demo).
async fn serve_static(mut stream: TcpStream, dir: Option<&Path>) {
    let mut buf = vec![0u8; 4096];
    let n = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
        Ok(Ok(n)) => n,
        _ => return,
    };
    let head = String::from_utf8_lossy(&buf[..n]);
    let path = head
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("GET "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    let file = dir.and_then(|d| resolve(d, path));
    let response = match file {
        Some(f) => match tokio::fs::read(&f).await {
            Ok(body) => {
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                    content_type(&f),
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            }
            Err(_) => not_found(),
        },
        None => not_found(),
    };
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

fn not_found() -> Vec<u8> {
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n"
        .to_vec()
}

/// Maps a URL path into `dir`, refusing anything that could leave it.
fn resolve(dir: &Path, path: &str) -> Option<PathBuf> {
    let rel = path.trim_start_matches('/');
    // The demo page lives at the seed's address, `/demo/websocket`, and at `/`.
    let rel = match rel.trim_end_matches('/') {
        "" | "demo/websocket" => "index.html",
        _ => rel,
    };
    if rel
        .split('/')
        .any(|p| p == ".." || p.is_empty() || p.starts_with('.'))
        || rel.contains('\\')
    {
        return None;
    }
    let full = dir.join(rel);
    full.is_file().then_some(full)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ts" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A hub frame as a WebSocket text message sharing the frame's bytes: a project message is
/// encoded once and its buffer goes to every recipient without a copy.
fn text_message(frame: Frame) -> Message {
    struct Shared(Frame);
    impl AsRef<[u8]> for Shared {
        fn as_ref(&self) -> &[u8] {
            self.0.as_bytes()
        }
    }
    let fallback = frame.clone();
    // A `str` is UTF-8, so the one-pass check always succeeds (and needs no `unsafe`).
    match Utf8Bytes::try_from(bytes::Bytes::from_owner(Shared(frame))) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::text(&*fallback),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every connection's task holds for its whole life (the hub's memory per connection).
    #[tokio::test]
    async fn future_sizes() {
        let broker: Box<dyn Broker> = Box::new(InMemoryBroker::new(1, 1));
        let core = HubCore::new(HubSettings::default(), broker, 1);
        let shared = Arc::new(Shared {
            core: Arc::new(Mutex::new(core)),
            conns: Mutex::new(BTreeMap::new()),
            changed: Notify::new(),
            broker_ready: Arc::new(Notify::new()),
            accepted: AtomicU64::new(0),
            cfg: HubConfig::default(),
        });
        let (_tx, rx) = watch::channel(false);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let task = handle_socket(s, shared, rx);
        let size = std::mem::size_of_val(&task);
        // 13,136 bytes before the TLS handshake and the static page were boxed.
        assert!(size < 2_048, "a connection's task future is {size} bytes");
    }
}
