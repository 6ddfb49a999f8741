//! The async client: one task per connection moves frames and time between a WebSocket and a
//! `sockline_core::Session`. Every decision (retry, drop, resend, expire, backpressure) is the
//! session's: the driver reports what it saw (frames, how a transport ended, the bytes it holds
//! unsent) and carries out the outputs.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::mailbox;
use crate::transport::Ws;
use futures_util::{SinkExt, Stream, StreamExt};
use serde_json::Value;
use sockline_core::{
    Config, ConfigError, Envelope, Event, Output, SendRequest, Session, SessionError, State, Stats,
    StreamState, SubscriptionId, Timestamp, Trace,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Transport tuning for one client; the defaults keep an idle connection small.
#[derive(Clone)]
pub struct ClientOptions {
    /// Seed for the session's PRNG (jitter, id prefix); drawn at random when `None`.
    pub seed: Option<u64>,
    /// Socket read buffer (tungstenite's default is 128 KiB; 4 KiB keeps idle clients small).
    pub read_buffer_bytes: usize,
    /// Bytes buffered before a write is flushed.
    pub write_buffer_bytes: usize,
    /// Record every input from the start, for `Client::trace`.
    pub record: bool,
    /// TLS settings for `wss://` (webpki roots when `None`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            seed: None,
            read_buffer_bytes: 2048,
            write_buffer_bytes: 0,
            record: false,
            tls: None,
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("seed", &self.seed)
            .field("read_buffer_bytes", &self.read_buffer_bytes)
            .field("write_buffer_bytes", &self.write_buffer_bytes)
            .field("record", &self.record)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The configuration was rejected.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The session refused the command.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The client's task has ended (closed).
    #[error("the client is closed")]
    Closed,
}

/// What an agent stream subscriber sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamUpdate {
    /// New text, in order, exactly once.
    Delta(String),
    /// No chunk for the stall period.
    Stalled,
    /// All content arrived.
    Done,
    /// The stream was interrupted.
    Interrupted,
    /// The stream failed.
    Failed(String),
}

/// Work for the connection task; one boxed closure keeps the command queue's slots small (its
/// first block of slots is allocated per client up front).
struct Command(Box<CommandFn>);

type CommandFn = dyn FnOnce(&mut Driver, Timestamp) + Send;

impl Command {
    fn new(f: impl FnOnce(&mut Driver, Timestamp) + Send + 'static) -> Command {
        Command(Box::new(f))
    }
}

/// An async sockline client; cheap to share behind an `Arc`.
pub struct Client {
    commands: mailbox::Sender<Command>,
    state: watch::Receiver<State>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// The recorded trace, left here by the task when it ends (only with `record`: a client
    /// that records nothing allocates no slot).
    final_trace: Option<FinalTrace>,
}

/// Where the connection task leaves its recorded trace when it ends.
type FinalTrace = Arc<Mutex<Option<Trace>>>;

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &*self.state.borrow())
            .finish()
    }
}

impl Client {
    /// Validates `config`, spawns the connection task and starts connecting.
    pub fn connect(config: Config) -> Result<Client, ClientError> {
        Client::connect_with(config, ClientOptions::default())
    }

    /// Like `connect`, with transport options.
    pub fn connect_with(config: Config, options: ClientOptions) -> Result<Client, ClientError> {
        Client::start(config, options, Vec::new(), true)
    }

    /// Like `connect_with`, also returning every output from the very first (the CLI prints
    /// them all, including the first `open_transport`).
    pub fn connect_observed(
        config: Config,
        options: ClientOptions,
    ) -> Result<(Client, OutputStream), ClientError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = Client::start(config, options, vec![tx], true)?;
        Ok((client, output_stream(rx)))
    }

    /// Like `connect_observed`, but the session stays idle until `reconnect()`: subscriptions
    /// and joins made before it come first in the session's history, whatever the network does.
    pub fn idle_observed(
        config: Config,
        options: ClientOptions,
    ) -> Result<(Client, OutputStream), ClientError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = Client::start(config, options, vec![tx], false)?;
        Ok((client, output_stream(rx)))
    }

    fn start(
        config: Config,
        options: ClientOptions,
        listeners: Vec<mpsc::UnboundedSender<(Timestamp, Output)>>,
        connect: bool,
    ) -> Result<Client, ClientError> {
        let origin = Instant::now();
        let seed = options.seed.unwrap_or_else(|| fastrand::u64(..));
        let mut session = Session::new(config, seed, Timestamp::ZERO)?;
        if options.record {
            session.start_recording();
        }
        if connect {
            session.connect(Timestamp::ZERO)?;
        }
        let (commands, rx) = mailbox::mailbox();
        let (status_tx, state) = watch::channel(session.state());
        let final_trace = options.record.then(|| Arc::new(Mutex::new(None)));
        let driver = Driver {
            session,
            origin,
            options,
            subs: BTreeMap::new(),
            streams: BTreeMap::new(),
            status: status_tx,
            listeners,
            closers: Vec::new(),
            final_trace: final_trace.clone(),
        };
        let task = tokio::spawn(Box::new(driver).run(rx));
        Ok(Client {
            commands,
            state,
            task: Mutex::new(Some(task)),
            final_trace,
        })
    }

    /// Runs `f` against the session inside the connection task and returns its result. Private:
    /// only the driver feeds the session, so every input is one the driver saw or was asked for.
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session, Timestamp) -> R + Send + 'static,
    ) -> Result<R, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::new(move |d, now| {
                let _ = tx.send(f(&mut d.session, now));
            }))
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    async fn try_call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session, Timestamp) -> Result<R, SessionError> + Send + 'static,
    ) -> Result<R, ClientError> {
        Ok(self.call(f).await??)
    }

    /// Sends (or queues) a message; returns its id.
    pub async fn send(&self, req: SendRequest) -> Result<String, ClientError> {
        self.try_call(move |s, now| s.send(now, req)).await
    }

    /// Sends a message of `msg_type` with `data`, with default options.
    pub async fn send_json(&self, msg_type: &str, data: Value) -> Result<String, ClientError> {
        self.send(SendRequest::new(msg_type, data)).await
    }

    /// Messages matching `pattern` (optionally for one project); dropping it unsubscribes.
    pub async fn subscribe(
        &self,
        pattern: &str,
        project_id: Option<u64>,
    ) -> Result<Subscription, ClientError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::new({
                let pattern = pattern.to_string();
                move |d, now| {
                    let r = d.session.subscribe(now, &pattern, project_id);
                    if let Ok(id) = r {
                        let batch = Vec::new();
                        d.subs.insert(id, SubSlot { tx, batch });
                    }
                    let _ = reply.send(r);
                }
            }))
            .map_err(|_| ClientError::Closed)?;
        let id = answer.await.map_err(|_| ClientError::Closed)??;
        Ok(Subscription {
            id,
            rx,
            buffered: Vec::new().into_iter(),
            commands: self.commands.clone(),
        })
    }

    /// The connection state, updated on every change.
    pub fn state(&self) -> watch::Receiver<State> {
        self.state.clone()
    }

    /// Every core event from now on (each listener has its own queue: nothing is skipped).
    pub fn events(&self) -> EventStream {
        let events = self.outputs().filter_map(|(_, o)| async move {
            match o {
                Output::Event(e) => Some(e),
                _ => None,
            }
        });
        EventStream {
            inner: Box::pin(events),
        }
    }

    /// Every output but `timeout` (events, transmits, opens, closes) with the session time it was
    /// produced at, as the CLI and traces print them.
    pub fn outputs(&self) -> OutputStream {
        // Listeners are registered with the task rather than broadcast to, so an idle client
        // holds no preallocated ring of outputs.
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self
            .commands
            .send(Command::new(move |d, _| d.listeners.push(tx)));
        output_stream(rx)
    }

    /// The deltas of an agent stream from now on; ends when the stream finishes.
    pub fn stream(&self, stream_id: &str) -> Result<StreamDeltas, ClientError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.commands
            .send(Command::new({
                let id = stream_id.to_string();
                move |d, _| d.streams.entry(id).or_default().push(tx)
            }))
            .map_err(|_| ClientError::Closed)?;
        Ok(StreamDeltas { rx })
    }

    /// The text of an agent stream so far.
    pub async fn stream_content(&self, stream_id: &str) -> Result<Option<String>, ClientError> {
        let id = stream_id.to_string();
        self.call(move |s, _| s.stream_content(&id).map(str::to_string))
            .await
    }

    /// Stops an agent stream.
    pub async fn interrupt_stream(&self, stream_id: &str) -> Result<(), ClientError> {
        let id = stream_id.to_string();
        self.try_call(move |s, now| s.interrupt_stream(now, &id))
            .await
    }

    /// The local user is typing in a project.
    pub async fn start_typing(&self, project_id: u64) -> Result<(), ClientError> {
        self.try_call(move |s, now| s.start_typing(now, project_id))
            .await
    }

    /// The local user stopped typing in a project.
    pub async fn stop_typing(&self, project_id: u64) -> Result<(), ClientError> {
        self.try_call(move |s, now| s.stop_typing(now, project_id))
            .await
    }

    /// Users typing in a project now.
    pub async fn typing_users(&self, project_id: u64) -> Result<Vec<String>, ClientError> {
        self.call(move |s, _| s.typing_users(project_id)).await
    }

    /// Joins a project (re-joined after every reconnect).
    pub async fn join_project(&self, project_id: u64) -> Result<(), ClientError> {
        self.try_call(move |s, now| s.join_project(now, project_id))
            .await
    }

    /// Leaves a project.
    pub async fn leave_project(&self, project_id: u64) -> Result<(), ClientError> {
        self.call(move |s, now| s.leave_project(now, project_id))
            .await
    }

    /// The last version applied for a joined project.
    pub async fn project_version(&self, project_id: u64) -> Result<Option<u64>, ClientError> {
        self.call(move |s, _| s.project_version(project_id)).await
    }

    /// Members present in a joined project.
    pub async fn presence(&self, project_id: u64) -> Result<Vec<String>, ClientError> {
        self.call(move |s, _| s.presence(project_id)).await
    }

    /// Replaces the token; `expires_in` schedules `token_refresh_due` before it lapses.
    pub async fn set_token(
        &self,
        token: &str,
        expires_in: Option<Duration>,
    ) -> Result<(), ClientError> {
        let token = token.to_string();
        self.try_call(move |s, now| {
            let expires_at = expires_in.map(|d| now.add_ms(d.as_millis() as u64));
            s.set_token(now, &token, expires_at)
        })
        .await
    }

    /// Counters so far.
    pub async fn stats(&self) -> Result<Stats, ClientError> {
        self.call(|s, _| s.stats()).await
    }

    /// The outbox as canonical JSON, to persist across restarts.
    pub async fn snapshot_outbox(&self) -> Result<String, ClientError> {
        self.call(|s, _| s.snapshot_outbox()).await
    }

    /// Puts back a persisted outbox; returns how many messages.
    pub async fn restore_outbox(&self, snapshot: &str) -> Result<usize, ClientError> {
        let snapshot = snapshot.to_string();
        self.try_call(move |s, now| s.restore_outbox(now, &snapshot))
            .await
    }

    /// Connects: an idle client (`idle_observed`) for the first time, or again after the
    /// session gave up (`failed`) or was closed; while reconnecting, the waiting attempt opens now.
    pub async fn reconnect(&self) -> Result<(), ClientError> {
        self.try_call(|s, now| s.connect(now)).await
    }

    /// The host regained network connectivity: a waiting reconnect starts at once.
    pub async fn online(&self) -> Result<(), ClientError> {
        self.call(|s, now| s.online(now)).await
    }

    /// The host lost network connectivity: reconnects pause, an open link is probed.
    pub async fn offline(&self) -> Result<(), ClientError> {
        self.call(|s, now| s.offline(now)).await
    }

    /// The application became visible (timers may have been throttled: an open link is probed).
    pub async fn visible(&self) -> Result<(), ClientError> {
        self.call(|s, now| s.visible(now)).await
    }

    /// The application was hidden (recorded; suspension is detected from late deadlines).
    pub async fn hidden(&self) -> Result<(), ClientError> {
        self.call(|s, now| s.hidden(now)).await
    }

    /// The inputs recorded so far (`ClientOptions::record`), also after `close`; `None` when
    /// not recording.
    pub async fn trace(&self) -> Option<Trace> {
        match self.call(|s, _| s.trace()).await {
            Ok(t) => t,
            Err(_) => self
                .final_trace
                .as_ref()
                .and_then(|slot| slot.lock().ok().and_then(|t| t.clone())),
        }
    }

    /// Closes gracefully (code 1000) and waits for the task to end.
    pub async fn close(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        let close = Command::new(move |d, now| {
            d.closers.push(tx);
            d.session.disconnect(now);
        });
        if self.commands.send(close).is_ok() {
            let _ = rx.await;
        }
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
        Ok(())
    }
}

/// Messages for one subscription; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    id: SubscriptionId,
    rx: mpsc::UnboundedReceiver<Vec<Envelope>>,
    /// The rest of the batch last received (messages arrive in bursts, one wakeup each).
    buffered: std::vec::IntoIter<Envelope>,
    commands: mailbox::Sender<Command>,
}

impl Subscription {
    /// The subscription's id.
    pub fn id(&self) -> SubscriptionId {
        self.id
    }

    /// The next message, or `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<Envelope> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Envelope>> {
        loop {
            if let Some(m) = self.buffered.next() {
                return Poll::Ready(Some(m));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(batch)) => self.buffered = batch.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Stream for Subscription {
    type Item = Envelope;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Envelope>> {
        self.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let id = self.id;
        let _ = self.commands.send(Command::new(move |d, now| {
            if d.subs.remove(&id).is_some() {
                let _ = d.session.unsubscribe(now, id);
            }
        }));
    }
}

/// Updates of one agent stream; ends after `Done`, `Interrupted` or `Failed`.
#[derive(Debug)]
pub struct StreamDeltas {
    rx: mpsc::UnboundedReceiver<StreamUpdate>,
}

impl StreamDeltas {
    /// The next update, or `None` when the stream (or client) ended.
    pub async fn recv(&mut self) -> Option<StreamUpdate> {
        self.rx.recv().await
    }
}

impl Stream for StreamDeltas {
    type Item = StreamUpdate;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamUpdate>> {
        self.rx.poll_recv(cx)
    }
}

/// Every core event, as a `Stream`.
pub struct EventStream {
    inner: Pin<Box<dyn Stream<Item = Event> + Send>>,
}

impl EventStream {
    /// The next event, or `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<Event> {
        self.inner.next().await
    }
}

impl Stream for EventStream {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Outputs with the session time they were produced at; ends when the client's task ends.
pub type OutputStream = Pin<Box<dyn Stream<Item = (Timestamp, Output)> + Send>>;

fn output_stream(rx: mpsc::UnboundedReceiver<(Timestamp, Output)>) -> OutputStream {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|o| (o, rx))
    }))
}

// ---- the connection task -----------------------------------------------------------------

/// The live transport, read and written by the connection task itself: frames wait in `pending`
/// and go out as the socket takes them, so a peer that stops reading never blocks the session's
/// timers, and an idle client needs no second task. How much may wait is the session's call:
/// the driver reports `pending_bytes` (`Session::buffered`) and the session stops flushing.
struct Link {
    ws: Ws,
    pending: VecDeque<Message>,
    /// Text bytes of the frames in `pending`.
    pending_bytes: u64,
    /// Frames were handed to the socket since the last completed flush.
    unflushed: bool,
    /// The session is blocked: wake the task when frames move, so it can report the drain.
    wake_on_progress: bool,
}

/// What a live transport produced.
enum LinkEvent {
    /// The next inbound message, or `None` once the socket ended.
    Read(Option<Result<Message, WsError>>),
    /// Writing failed.
    WriteFailed(WsError),
    /// Queued frames went into the socket (reported only while `wake_on_progress`).
    Progress,
}

impl Link {
    fn new(ws: Ws) -> Link {
        Link {
            ws,
            pending: VecDeque::new(),
            pending_bytes: 0,
            unflushed: false,
            wake_on_progress: false,
        }
    }

    fn push(&mut self, m: Message) {
        self.pending_bytes += message_bytes(&m);
        self.pending.push_back(m);
    }

    /// Moves queued frames into the socket as far as it accepts them, then polls for the next
    /// inbound message.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<LinkEvent> {
        let mut moved = false;
        while !self.pending.is_empty() {
            match self.ws.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    if let Some(m) = self.pending.pop_front() {
                        self.pending_bytes -= message_bytes(&m);
                        moved = true;
                        if let Err(e) = self.ws.start_send_unpin(m) {
                            return Poll::Ready(LinkEvent::WriteFailed(e));
                        }
                        self.unflushed = true;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(LinkEvent::WriteFailed(e)),
                Poll::Pending => break,
            }
        }
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            // An idle link keeps no queue memory (a burst reallocates once).
            self.pending = VecDeque::new();
        }
        if self.unflushed {
            match self.ws.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(LinkEvent::WriteFailed(e)),
                Poll::Pending => {}
            }
        }
        if moved && self.wake_on_progress {
            return Poll::Ready(LinkEvent::Progress);
        }
        self.ws.poll_next_unpin(cx).map(LinkEvent::Read)
    }
}

fn message_bytes(m: &Message) -> u64 {
    match m {
        Message::Text(t) => t.len() as u64,
        _ => 0,
    }
}

/// Whether a read or write error means the transport ended without a close frame (EOF or a
/// reset): the session then hears `transport_lost`, as every driver reports it.
fn is_lost(e: &WsError) -> bool {
    use std::io::ErrorKind;
    match e {
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => true,
        WsError::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::UnexpectedEof
                | ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}

/// A subscriber's channel and the messages gathered for it in the current pump.
struct SubSlot {
    tx: mpsc::UnboundedSender<Vec<Envelope>>,
    batch: Vec<Envelope>,
}

/// Frames handled per wakeup before the task yields back to its other inputs.
const READ_BATCH: usize = 256;

type Connecting = Pin<Box<dyn std::future::Future<Output = Result<Ws, String>> + Send>>;

struct Driver {
    session: Session,
    origin: Instant,
    options: ClientOptions,
    subs: BTreeMap<SubscriptionId, SubSlot>,
    streams: BTreeMap<String, Vec<mpsc::UnboundedSender<StreamUpdate>>>,
    status: watch::Sender<State>,
    listeners: Vec<mpsc::UnboundedSender<(Timestamp, Output)>>,
    closers: Vec<oneshot::Sender<()>>,
    final_trace: Option<FinalTrace>,
}

impl Driver {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.origin.elapsed().as_millis() as u64)
    }

    // Boxed: the task's future then holds a pointer rather than a second copy of the driver.
    async fn run(mut self: Box<Self>, mut commands: mailbox::Receiver<Command>) {
        let mut link: Option<Link> = None;
        let mut connecting: Option<Connecting> = None;
        let mut handles_gone = false;
        loop {
            self.pump(&mut link, &mut connecting);
            if let Some(l) = link.as_mut() {
                // Report the bytes held unsent when the session wants to hear them.
                if self.session.should_report_buffered(l.pending_bytes) {
                    let now = self.now();
                    self.session.buffered(now, l.pending_bytes);
                    continue;
                }
                l.wake_on_progress = self.session.is_blocked();
            }
            if (!self.closers.is_empty() || handles_gone) && self.session.state().is_terminal() {
                break;
            }
            let deadline = self
                .session
                .poll_timeout()
                .map(|d| self.origin + Duration::from_millis(d.at.as_millis()));
            // Check the clock before polling the sleep: a due deadline is handled without a wakeup.
            if deadline.is_some_and(|d| d <= Instant::now()) {
                let now = self.now();
                self.session.handle_timeout(now);
                continue;
            }
            tokio::select! {
                cmd = commands.recv(), if !handles_gone => match cmd {
                    Some(cmd) => self.apply(cmd),
                    None => {
                        // Every handle dropped: close gracefully and end.
                        handles_gone = true;
                        let now = self.now();
                        self.session.disconnect(now);
                    }
                },
                opened = wait_connecting(&mut connecting) => {
                    connecting = None;
                    let now = self.now();
                    match opened {
                        Ok(ws) => {
                            link = Some(Link::new(ws));
                            self.session.transport_opened(now);
                        }
                        Err(e) => self.session.transport_error(now, &e),
                    }
                }
                ev = std::future::poll_fn(|cx| poll_link(&mut link, cx)) => {
                    // Frames taken in one wakeup arrived together: one clock reading serves all.
                    let now = self.now();
                    self.on_link(now, ev, &mut link);
                    // Take what the socket already holds in the same wakeup: one pass through
                    // the select, and one delivery per subscriber, for a whole burst.
                    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
                    for _ in 0..READ_BATCH {
                        match poll_link(&mut link, &mut cx) {
                            Poll::Ready(ev) => self.on_link(now, ev, &mut link),
                            Poll::Pending => break,
                        }
                    }
                }
                _ = sleep_until(deadline) => {
                    let now = self.now();
                    self.session.handle_timeout(now);
                }
            }
        }
        if let (Some(trace), Some(slot)) = (self.session.trace(), &self.final_trace) {
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(trace);
            }
        }
        for c in self.closers.drain(..) {
            let _ = c.send(());
        }
    }

    /// Feeds one transport event to the session.
    fn on_link(&mut self, now: Timestamp, ev: LinkEvent, link: &mut Option<Link>) {
        match ev {
            LinkEvent::Read(Some(Ok(Message::Text(t)))) => self.session.frame(now, t.as_str()),
            LinkEvent::Read(Some(Ok(Message::Binary(b)))) => {
                self.session.binary_frame(now, b.len())
            }
            LinkEvent::Read(Some(Ok(Message::Close(frame)))) => {
                *link = None;
                match frame {
                    Some(f) => self
                        .session
                        .transport_closed(now, u16::from(f.code), &f.reason),
                    None => self.session.transport_closed(now, None, ""),
                }
            }
            // Ping/pong frames: tungstenite answers pings itself.
            LinkEvent::Read(Some(Ok(_))) | LinkEvent::Progress => {}
            LinkEvent::Read(Some(Err(e))) | LinkEvent::WriteFailed(e) => {
                *link = None;
                if is_lost(&e) {
                    self.session.transport_lost(now);
                } else {
                    self.session.transport_error(now, &e.to_string());
                }
            }
            LinkEvent::Read(None) => {
                *link = None;
                self.session.transport_lost(now);
            }
        }
    }

    fn apply(&mut self, cmd: Command) {
        let now = self.now();
        (cmd.0)(self, now);
    }

    /// Drains the session's outputs: opens and closes transports, writes frames, fans out events.
    fn pump(&mut self, link: &mut Option<Link>, connecting: &mut Option<Connecting>) {
        loop {
            let output = self.session.poll_output();
            if !matches!(output, Output::Timeout(_)) && !self.listeners.is_empty() {
                let at = self.now();
                self.listeners
                    .retain(|l| l.send((at, output.clone())).is_ok());
            }
            match output {
                Output::Timeout(_) => {
                    for slot in self.subs.values_mut() {
                        if !slot.batch.is_empty() {
                            let _ = slot.tx.send(std::mem::take(&mut slot.batch));
                        }
                    }
                    return;
                }
                Output::OpenTransport { url, attempt } => {
                    tracing::debug!(attempt, "opening transport");
                    *link = None;
                    *connecting = Some(Box::pin(open(url, self.options.clone())));
                }
                Output::Transmit { text } => {
                    if let Some(l) = link.as_mut() {
                        l.push(Message::text(text));
                    }
                }
                Output::CloseTransport { code, reason } => {
                    *connecting = None;
                    if let Some(l) = link.as_mut() {
                        let frame = CloseFrame {
                            code: CloseCode::from(code),
                            reason: reason.into(),
                        };
                        // Keep reading: the peer's close reply completes a user close at once
                        // (the session ignores news of a transport it already abandoned).
                        l.push(Message::Close(Some(frame)));
                    }
                }
                Output::Event(e) => self.dispatch(e),
                // An output a newer core adds: nothing this driver knows to do with it.
                _ => {}
            }
        }
    }

    fn dispatch(&mut self, event: Event) {
        match &event {
            Event::Status { to, reason, .. } => {
                tracing::info!(state = %to, %reason, "status");
                self.status.send_replace(*to);
            }
            Event::Message {
                subscriptions,
                message,
            } => {
                // The last subscriber takes the message itself; the others get copies.
                if let Some((last, rest)) = subscriptions.split_last() {
                    for id in rest {
                        if let Some(slot) = self.subs.get_mut(id) {
                            slot.batch.push(message.clone());
                        }
                    }
                    if let Some(slot) = self.subs.get_mut(last) {
                        if let Event::Message { message, .. } = event {
                            slot.batch.push(message);
                        }
                    }
                }
            }
            Event::Stream {
                stream_id,
                state,
                delta,
                error,
                ..
            } => {
                let update = match state {
                    StreamState::Started => None,
                    StreamState::Delta => delta.clone().map(StreamUpdate::Delta),
                    StreamState::Stalled => Some(StreamUpdate::Stalled),
                    StreamState::Done => Some(StreamUpdate::Done),
                    StreamState::Interrupted => Some(StreamUpdate::Interrupted),
                    StreamState::Failed => {
                        Some(StreamUpdate::Failed(error.clone().unwrap_or_default()))
                    }
                    _ => None,
                };
                let finished = state.is_final();
                if let Some(update) = update {
                    if let Some(txs) = self.streams.get_mut(stream_id) {
                        txs.retain(|tx| tx.send(update.clone()).is_ok());
                    }
                }
                if finished {
                    self.streams.remove(stream_id);
                }
            }
            Event::ProtocolError { reason } => tracing::warn!(%reason, "protocol error"),
            _ => {}
        }
    }
}

async fn open(url: String, options: ClientOptions) -> Result<Ws, String> {
    let config = WebSocketConfig::default()
        .read_buffer_size(options.read_buffer_bytes.max(256))
        .write_buffer_size(options.write_buffer_bytes);
    crate::transport::open(&url, config, options.tls).await
}

async fn wait_connecting(connecting: &mut Option<Connecting>) -> Result<Ws, String> {
    match connecting {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

fn poll_link(link: &mut Option<Link>, cx: &mut Context<'_>) -> Poll<LinkEvent> {
    match link {
        Some(l) => l.poll(cx),
        None => Poll::Pending,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
