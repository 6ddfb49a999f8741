//! The hub's half of the protocol, sans-IO: connections' frames and the current time in, frames
//! to send and connections to close out. A driver only accepts sockets, moves bytes and sleeps
//! until `poll_output` names the next deadline.
//!
//! ```
//! use sockline_core::hub::{ConnId, HubCore, HubOutput, HubSettings, InMemoryBroker};
//! use sockline_core::Timestamp;
//! let mut hub = HubCore::new(HubSettings::default(), InMemoryBroker::new(1024, 7), 1);
//! let (c, t) = (ConnId(1), Timestamp::ZERO);
//! hub.accepted(t, c);
//! hub.frame(t, c, r#"{"type":"hello","data":{"protocol":2,"userId":"ann"}}"#);
//! match hub.poll_output() {
//!     HubOutput::Send { conn, text } => assert!(conn == c && text.contains("welcome")),
//!     other => panic!("{other:?}"),
//! }
//! ```

mod agent;
mod auth;
mod broker;
mod chaos;
mod io;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::Value;

use crate::close;
use crate::config::RateLimitConfig;
use crate::dedupe::DedupeWindow;
use crate::ratelimit::RateLimiter;
use crate::rng::Rng;
use crate::timer::Timestamp;
use crate::wire::{self, Envelope, RetryHint};

pub use agent::{AgentSource, ScriptedAgent};
use auth::Grant;
pub use auth::{accepts_origin, Claims, HubLimits, SecretSource, TokenError, TokenVerifier};
pub use broker::{
    presence_diff_frame, project_updated, Broker, BrokerCommand, BrokerEvent, Frame,
    InMemoryBroker, JoinAnswer, LogPosition, Origin, Replay, Unrecoverable,
};
pub use chaos::ChaosConfig;
use chaos::{ConnChaos, PongFate};
pub use io::{ConnId, HubInput, HubOutput};

/// Protocol settings of the hub.
#[derive(Clone, Debug, PartialEq)]
pub struct HubSettings {
    /// Required `hello.token`, if any (a development option: one secret for everybody; a hub
    /// with a token verifier checks signed tokens instead).
    pub token: Option<String>,
    /// Per-user and per-connection limits.
    pub limits: HubLimits,
    /// Origins whose browsers may open a WebSocket (empty: any); see `accepts_origin`.
    pub allowed_origins: Vec<String>,
    /// A connection whose token runs out within this is told so (`token_expiring`), so it can
    /// send a new one before it is closed (4001) at expiry.
    pub token_warning_ms: u64,
    /// Messages kept per session for replay on resume.
    pub replay_capacity: usize,
    /// How long a disconnected session stays resumable.
    pub session_ttl_ms: u64,
    /// How long a new connection may take to send `hello`.
    pub hello_timeout_ms: u64,
    /// Inbound token bucket per connection.
    pub rate_limit: RateLimitConfig,
    /// Time between agent stream chunks.
    pub agent_chunk_ms: u64,
    /// Message ids remembered per session for deduplication.
    pub dedupe_window: usize,
    /// A welcomed connection silent this long is closed (1001 "idle timeout"): a client that
    /// vanished without a FIN must not hold its connection forever. Clients ping every 30 s by
    /// default; 0 turns it off.
    pub idle_timeout_ms: u64,
    /// Largest frame, in and out: a bigger frame, or a message whose relay would be bigger (the
    /// hub adds `seq`), is refused with `error{too_large, id}`. Drivers cut off (`frame_too_large`,
    /// 1009) only frames over twice this, so the core sees, and refuses by id, what is merely big.
    pub max_frame_bytes: usize,
    /// Deepest JSON nesting accepted in a frame.
    pub max_json_depth: usize,
    /// Fault injection for QA (off by default).
    pub chaos: ChaosConfig,
    /// A shutdown tells every client to wait at least this long before reconnecting (the close
    /// reason's `retryAfterMs`): about how long the hub takes to come back.
    pub restart_retry_after_ms: u64,
    /// ... and to draw its reconnect uniformly in this window above that (`spreadMs`), so the
    /// clients arrive at the new hub spread out instead of all at once. Both 0: no hint, each
    /// client keeps its own backoff.
    pub restart_spread_ms: u64,
}

/// The smallest frame limit the hub accepts: a `hello` and a `welcome` must fit.
const MIN_FRAME_BYTES: usize = 256;
/// The latest a restart may send its clients back, `retryAfterMs + spreadMs`: a client caps
/// the window at its `max_hint_ms` (300 s by default), so a longer one would not be what the
/// hub announced.
pub const MAX_RESTART_WINDOW_MS: u64 = 300_000;

impl HubSettings {
    /// The same settings with every value the hub cannot work with raised to its minimum
    /// (one of each count, 1 ms between agent chunks, 256-byte frames) and the restart window
    /// cut to end by 300 s: the one place that decides it, for every driver and binding.
    pub fn within_bounds(mut self) -> HubSettings {
        self.replay_capacity = self.replay_capacity.max(1);
        self.agent_chunk_ms = self.agent_chunk_ms.max(1);
        self.dedupe_window = self.dedupe_window.max(1);
        self.max_frame_bytes = self.max_frame_bytes.max(MIN_FRAME_BYTES);
        self.restart_retry_after_ms = self.restart_retry_after_ms.min(MAX_RESTART_WINDOW_MS);
        self.restart_spread_ms = self
            .restart_spread_ms
            .min(MAX_RESTART_WINDOW_MS - self.restart_retry_after_ms);
        self
    }

    /// Whether a WebSocket upgrade from `origin` is accepted (drivers ask this in the handshake).
    pub fn accepts_origin(&self, origin: Option<&str>) -> bool {
        accepts_origin(&self.allowed_origins, origin)
    }

    /// The close reason a shutdown sends: `{"retryAfterMs":A,"spreadMs":W}` (at most 69 bytes,
    /// within a close frame's 123), or plain text when there is no window to announce.
    pub fn restart_reason(&self) -> String {
        if self.restart_retry_after_ms == 0 && self.restart_spread_ms == 0 {
            return "hub restarting".to_string();
        }
        RetryHint {
            after_ms: self.restart_retry_after_ms,
            spread_ms: self.restart_spread_ms,
        }
        .to_reason()
    }
}

impl Default for HubSettings {
    fn default() -> Self {
        HubSettings {
            token: None,
            limits: HubLimits::default(),
            allowed_origins: Vec::new(),
            token_warning_ms: 60_000,
            replay_capacity: 1024,
            session_ttl_ms: 300_000,
            hello_timeout_ms: 10_000,
            rate_limit: RateLimitConfig::Bucket {
                per_sec: 200,
                burst: 400,
            },
            agent_chunk_ms: 50,
            dedupe_window: 4096,
            idle_timeout_ms: 120_000,
            max_frame_bytes: 1 << 20,
            max_json_depth: 64,
            chaos: ChaosConfig::default(),
            restart_retry_after_ms: 0,
            // 10,000 clients over 30 buckets of 100 ms: 333 per bucket, sd 18, so the busiest
            // bucket stays under 1.2x the mean for all but about 1 seed set in 200 (5 s, with 200
            // per bucket, would miss it for 1 in 9; docs/reliability.md).
            restart_spread_ms: 3_000,
        }
    }
}

/// How long a user over the connection limit is asked to wait.
const TOO_MANY_CONNECTIONS_RETRY_MS: u64 = 10_000;
/// Room for the `,"epoch":"…","offset":N` a relayed message gets in the log.
const POSITION_ROOM: usize = 64;
/// Longest stream id a client may choose.
const MAX_STREAM_ID: usize = 128;

/// A connection's deadlines, in the order they are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnTimer {
    /// No `hello` in time.
    Hello,
    /// Welcomed, then silent for too long.
    Idle,
    /// Its token runs out soon: tell it.
    TokenWarning,
    /// Its token ran out.
    TokenExpired,
    /// Chaos: drop it now.
    ChaosDrop,
    /// Chaos: stall it now.
    ChaosStall,
}

#[derive(Debug)]
struct Conn {
    session: Option<String>,
    /// Its `hello` named a session this node does not hold: the broker is asked whose it is
    /// (the `userId` the hello gave waits here for a fresh session's sake).
    greeting: Option<Option<String>>,
    /// Its user, once welcomed (counted in `user_conns` until its end is decided).
    user: Option<String>,
    /// What its verified token allows, while it lasts.
    grant: Option<Grant>,
    /// The projects this connection joined (membership is per connection: a reconnect joins
    /// again from its position).
    projects: BTreeSet<u64>,
    opened_at: Timestamp,
    /// When its last frame arrived.
    last_inbound: Timestamp,
    /// A close was decided: no more timers or outputs, frames ignored until it is gone.
    closing: bool,
    limiter: RateLimiter,
    /// Frames refused in a row by the rate limit.
    excess: u32,
    chaos: ConnChaos,
    drop_at: Option<Timestamp>,
    stall_at: Option<Timestamp>,
}

#[derive(Debug)]
struct SessionState {
    conn: Option<ConnId>,
    user: String,
    seen: DedupeWindow,
    /// Ids of its messages the broker is logging: a resend waits for that answer.
    logging: BTreeSet<String>,
    expires_at: Option<Timestamp>,
}

impl SessionState {
    fn new(user: String, dedupe_window: usize) -> Self {
        SessionState {
            conn: None,
            user,
            seen: DedupeWindow::new(dedupe_window.max(1)),
            logging: BTreeSet::new(),
            expires_at: None,
        }
    }
}

#[derive(Debug)]
struct AgentStream {
    chunks: Vec<String>,
    /// Chunks sent so far.
    sent: usize,
    next_at: Timestamp,
    running: bool,
}

impl AgentStream {
    fn finished(&self) -> bool {
        self.sent >= self.chunks.len()
    }
}

/// A connection's membership of a project.
#[derive(Debug)]
enum Member {
    /// Its join went to the broker: what the project publishes meanwhile waits here, with its
    /// offsets, until the answer says where the connection continues from.
    Joining {
        /// The position it recovers from.
        since: Option<LogPosition>,
        held: Vec<(u64, Frame)>,
    },
    /// Joined: it gets the project's messages as they are published.
    Live,
}

/// The hub's protocol state machine.
pub struct HubCore<B: Broker> {
    settings: HubSettings,
    broker: B,
    agent: Option<Box<dyn AgentSource>>,
    verifier: Option<Box<dyn TokenVerifier>>,
    /// Unpredictable bytes for session ids (the driver's CSPRNG; else the seeded PRNG, which
    /// only tests may rely on).
    secrets: Option<Box<dyn SecretSource>>,
    /// Each user's open connections on this node.
    user_conns: BTreeMap<String, usize>,
    /// Each user's inbound rate across their connections on this node.
    user_limiters: BTreeMap<String, RateLimiter>,
    rng: Rng,
    now: Timestamp,
    conns: BTreeMap<ConnId, Conn>,
    sessions: BTreeMap<String, SessionState>,
    streams: BTreeMap<(String, String), AgentStream>,
    /// Each project's member connections.
    members: BTreeMap<u64, BTreeMap<ConnId, Member>>,
    /// Messages the broker is logging, by origin connection and id: their sessions (the answer
    /// goes to the session's connection of the moment).
    logging: BTreeMap<(ConnId, String), String>,
    /// Frames chaos holds back (delayed pongs), due in order: every one waits the same delay.
    delayed: VecDeque<(Timestamp, ConnId, Frame)>,
    /// No connection's timer is due before this (a lower bound: deadlines only move later once
    /// set, so one scan of every connection is needed only when it falls due, not per input).
    conn_due: Option<Timestamp>,
    /// The same for sessions' expiries.
    expiry_due: Option<Timestamp>,
    outputs: VecDeque<HubOutput>,
    next_session: u64,
    relayed: u64,
}

impl<B: Broker> std::fmt::Debug for HubCore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubCore")
            .field("connections", &self.conns.len())
            .field("sessions", &self.sessions.len())
            .field("streams", &self.streams.len())
            .field("relayed", &self.relayed)
            .finish()
    }
}

impl<B: Broker> HubCore<B> {
    /// A hub with no connections and no agent; `seed` makes session ids and chaos reproducible.
    pub fn new(settings: HubSettings, broker: B, seed: u64) -> Self {
        HubCore {
            settings: settings.within_bounds(),
            broker,
            agent: None,
            verifier: None,
            secrets: None,
            user_conns: BTreeMap::new(),
            user_limiters: BTreeMap::new(),
            rng: Rng::new(seed),
            now: Timestamp::ZERO,
            conns: BTreeMap::new(),
            sessions: BTreeMap::new(),
            streams: BTreeMap::new(),
            members: BTreeMap::new(),
            logging: BTreeMap::new(),
            delayed: VecDeque::new(),
            conn_due: None,
            expiry_due: None,
            outputs: VecDeque::new(),
            next_session: 0,
            relayed: 0,
        }
    }

    /// The same hub answering `agent_prompt` from `agent`.
    pub fn with_agent(mut self, agent: Box<dyn AgentSource>) -> Self {
        self.agent = Some(agent);
        self
    }

    /// The same hub checking `hello.token` (and `auth`) with `verifier`: a connection is the
    /// user its token names, and may join the projects its token lists.
    pub fn with_verifier(mut self, verifier: Box<dyn TokenVerifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// The same hub drawing session ids (128 bits) from `secrets`: the operating system's
    /// CSPRNG, which every driver outside tests passes in.
    pub fn with_secrets(mut self, secrets: Box<dyn SecretSource>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// The broker this hub talks to (to read, e.g. whether it has events waiting).
    pub fn broker(&self) -> &B {
        &self.broker
    }

    /// The settings in use.
    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    /// Application messages delivered to connections so far.
    pub fn relayed(&self) -> u64 {
        self.relayed
    }

    /// Connections the hub knows (including those it is closing).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Sessions the hub keeps (connected or resumable).
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Applies any input in its canonical form.
    pub fn handle_input(&mut self, now: Timestamp, input: HubInput) {
        match input {
            HubInput::BrokerReady => self.broker_ready(now),
            HubInput::Accepted { conn } => self.accepted(now, conn),
            HubInput::Frame { conn, text } => self.frame(now, conn, &text),
            HubInput::BinaryFrame { conn, len } => self.binary_frame(now, conn, len),
            HubInput::FrameTooLarge { conn } => self.frame_too_large(now, conn),
            HubInput::Closed { conn } => self.closed(now, conn),
            HubInput::WriteBlocked { conn } => self.write_blocked(now, conn),
            HubInput::Shutdown => self.shutdown(now),
            HubInput::Timeout => self.handle_timeout(now),
        }
    }

    /// The next output; `HubOutput::Timeout` once there is nothing left to do right now.
    pub fn poll_output(&mut self) -> HubOutput {
        if self.outputs.is_empty() {
            // Whatever fell due at the current time fires here, so the deadline returned is
            // always in the future.
            self.run_timers(self.now);
        }
        match self.outputs.pop_front() {
            Some(o) => o,
            None => {
                if self.outputs.capacity() > 64 {
                    self.outputs = VecDeque::new();
                }
                HubOutput::Timeout {
                    deadline: self.poll_timeout(),
                }
            }
        }
    }

    /// When `handle_timeout` is next needed.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let streams = self
            .streams
            .values()
            .filter(|a| a.running)
            .map(|a| a.next_at);
        let delayed = self.delayed.front().map(|d| d.0);
        // The bounds may be early (a connection that spoke since): the driver then calls in,
        // the scan finds nothing due, and the bound moves to the true deadline.
        streams
            .chain(self.conn_due)
            .chain(self.expiry_due)
            .chain(delayed)
            .min()
    }

    /// Starts every input: advances the clock and fires whatever fell due before it.
    fn enter(&mut self, now: Timestamp) -> Timestamp {
        self.now = self.now.max(now);
        self.run_timers(self.now);
        self.take_broker_events();
        self.now
    }

    /// The broker has events for this hub (a remote broker's answers or another node's
    /// messages): the driver feeds this when it learns so; an in-memory broker needs none.
    pub fn broker_ready(&mut self, now: Timestamp) {
        self.enter(now);
    }

    /// Hands a command to the broker, then takes whatever it answered already.
    fn submit(&mut self, command: BrokerCommand) {
        self.broker.submit(command);
        self.take_broker_events();
    }

    fn take_broker_events(&mut self) {
        while let Some(event) = self.broker.poll_event() {
            self.on_broker_event(event);
        }
    }

    /// What the broker published or answered.
    fn on_broker_event(&mut self, event: BrokerEvent) {
        match event {
            BrokerEvent::Published {
                project,
                position,
                frame,
                origin,
            } => {
                let except = origin.as_ref().filter(|o| !o.echo).map(|o| o.conn);
                self.publish_locally(project, except, position.offset, &frame);
                // The sender learns its message's place from the ack (it does not get the
                // message back), after every frame logged before it; an echoed one carries
                // its place itself.
                if let Some(Origin {
                    conn,
                    id: Some(id),
                    echo,
                }) = origin
                {
                    let conn = self.answer_to(conn, &id);
                    let logged = (!echo).then_some((project, position));
                    self.push_send(conn, ack_frame(&id, logged));
                }
            }
            BrokerEvent::Duplicate {
                project,
                position,
                origin,
            } => {
                // Logged once already (through a node that died before its ack, say): acked
                // with that first place, never logged twice.
                if let Some(id) = origin.id {
                    let conn = self.answer_to(origin.conn, &id);
                    self.push_send(conn, ack_frame(&id, Some((project, position))));
                }
            }
            BrokerEvent::Broadcast {
                project,
                frame,
                origin,
            } => {
                let except = origin.filter(|o| !o.echo).map(|o| o.conn);
                let live: Vec<ConnId> = self
                    .live_members(project)
                    .filter(|c| Some(*c) != except)
                    .collect();
                for conn in live {
                    self.push_send(conn, frame.clone());
                }
            }
            BrokerEvent::Joined {
                project,
                conn,
                answer,
            } => self.joined(project, conn, answer),
            BrokerEvent::Snapshot {
                project,
                conn,
                version,
                state,
            } => self.send_snapshot(conn, project, version, state),
            BrokerEvent::Resumed {
                conn,
                session,
                user,
            } => self.resumed(conn, session, user),
            BrokerEvent::Failed {
                command,
                retry_after_ms,
            } => self.broker_failed(command, retry_after_ms),
            BrokerEvent::Down { retry_after_ms } => {
                // Visible degradation: every client hears it once, and holds what it sends
                // until the hint (its messages wait in its outbox instead of being refused).
                let live: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.session.is_some() && !c.closing)
                    .map(|(id, _)| *id)
                    .collect();
                let message = "the hub cannot reach its broker: nothing is logged until it returns";
                for conn in live {
                    self.send_error(conn, "unavailable", message, Some(retry_after_ms), None);
                }
            }
            // Back: a remote broker catches its node up on what it missed by itself.
            BrokerEvent::Up => {}
            // Future events: nothing this hub knows to do.
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// Takes a connection's wait for the broker's answer to its `hello`; false if it had none.
    fn greeted(&mut self, conn: ConnId) -> bool {
        self.conns
            .get_mut(&conn)
            .and_then(|c| c.greeting.take())
            .is_some()
    }

    /// A message goes to the broker to be logged: a resend waits for its answer.
    fn logging(&mut self, conn: ConnId, sid: &str, id: Option<&str>) {
        let (Some(id), Some(s)) = (id, self.sessions.get_mut(sid)) else {
            return;
        };
        s.logging.insert(id.to_string());
        self.logging.insert((conn, id.to_string()), sid.to_string());
    }

    /// Where the answer about a message the broker was logging goes: its session's connection
    /// now (the client may have reconnected meanwhile), else the one it came on.
    fn answer_to(&mut self, origin: ConnId, id: &str) -> ConnId {
        let Some(sid) = self.logging.remove(&(origin, id.to_string())) else {
            return origin;
        };
        let Some(s) = self.sessions.get_mut(&sid) else {
            return origin;
        };
        s.logging.remove(id);
        s.conn.unwrap_or(origin)
    }

    /// The broker gave up on a command: whoever it was for hears so (`unavailable`, with when
    /// to try again), so nothing is lost in silence.
    fn broker_failed(&mut self, command: BrokerCommand, retry_after_ms: u64) {
        let hint = Some(retry_after_ms);
        let message = "the hub cannot reach its broker";
        match command {
            BrokerCommand::Publish { origin, .. } | BrokerCommand::Update { origin, .. } => {
                let Some(id) = origin.id else {
                    return self.send_error(origin.conn, "unavailable", message, hint, None);
                };
                let sid = self.logging.get(&(origin.conn, id.clone())).cloned();
                let conn = self.answer_to(origin.conn, &id);
                if let Some(s) = sid.and_then(|sid| self.sessions.get_mut(&sid)) {
                    // Not logged: the client's resend is news.
                    s.seen.forget(&id);
                }
                self.send_error(conn, "unavailable", message, hint, Some(&id));
            }
            BrokerCommand::Join { project, conn, .. } => {
                // Not a member after all; the client asks again (its join timer).
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.projects.remove(&project);
                }
                if let Some(members) = self.members.get_mut(&project) {
                    members.remove(&conn);
                    if members.is_empty() {
                        self.members.remove(&project);
                    }
                }
                self.send_error(conn, "unavailable", message, hint, None);
            }
            BrokerCommand::Snapshot { conn, .. } => {
                self.send_error(conn, "unavailable", message, hint, None)
            }
            // Whose session it is cannot be known: the client comes back later rather than
            // lose it to a fresh one.
            BrokerCommand::Resume { conn, .. } if self.greeted(conn) => {
                self.send_error(conn, "unavailable", message, hint, None);
                self.close(conn, close::TRY_AGAIN_LATER, "broker unavailable");
            }
            // Volatile or kept alive by a TTL: nothing anybody waits for.
            _ => {}
        }
    }

    // ---- transport inputs ----------------------------------------------------------------

    /// A WebSocket connection was accepted (a second report of one id changes nothing).
    pub fn accepted(&mut self, now: Timestamp, conn: ConnId) {
        let now = self.enter(now);
        if self.conns.contains_key(&conn) {
            return;
        }
        let mut chaos = ConnChaos::new(&self.settings.chaos, conn.0);
        let drop_at = chaos
            .drop_after(&self.settings.chaos)
            .map(|ms| now.add_ms(ms));
        let stall_at = chaos
            .stall_after(&self.settings.chaos)
            .map(|ms| now.add_ms(ms));
        self.conns.insert(
            conn,
            Conn {
                session: None,
                greeting: None,
                user: None,
                grant: None,
                projects: BTreeSet::new(),
                opened_at: now,
                last_inbound: now,
                closing: false,
                limiter: RateLimiter::new(self.settings.rate_limit, now),
                excess: 0,
                chaos,
                drop_at,
                stall_at,
            },
        );
        self.note_deadline(conn);
    }

    /// A connection's deadline may now be earlier than every other's: lower the bound.
    fn note_deadline(&mut self, conn: ConnId) {
        let Some((at, _)) = self.conns.get(&conn).and_then(|c| self.conn_deadline(c)) else {
            return;
        };
        self.conn_due = Some(self.conn_due.map_or(at, |d| d.min(at)));
    }

    /// A text frame arrived on a connection.
    pub fn frame(&mut self, now: Timestamp, conn: ConnId, text: &str) {
        let now = self.enter(now);
        match self.conns.get_mut(&conn) {
            Some(c) if !c.closing => c.last_inbound = now,
            // Closing (or unknown): whatever it still says changes nothing.
            _ => return,
        }
        if !self.take_token(now, conn) {
            return;
        }
        if text.len() > self.settings.max_frame_bytes {
            // Refused by id, so the client drops that one message instead of resending it on
            // every reconnect (the driver only cuts off frames far over the limit).
            let id = wire::id_of(text, self.settings.max_json_depth);
            let message = format!(
                "frame of {} bytes is over the {} byte limit",
                text.len(),
                self.settings.max_frame_bytes
            );
            self.send_error(conn, "too_large", &message, None, id.as_deref());
            return;
        }
        let env = match wire::decode(
            text,
            self.settings.max_frame_bytes,
            self.settings.max_json_depth,
        ) {
            Ok(env) => env,
            Err(e) => {
                // By id where it has one (a `projectId` out of range, say): the client drops
                // that message instead of resending what will never be taken.
                let id = wire::id_of(text, self.settings.max_json_depth);
                self.send_error(conn, "bad_message", &e.to_string(), None, id.as_deref());
                return;
            }
        };
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.greeting.is_some() {
            // Its welcome waits on the broker: nothing else is taken before it.
            if env.msg_type != "hello" {
                let message = "wait for welcome";
                self.send_error(conn, "bad_message", message, None, env.id.as_deref());
            }
            return;
        }
        let Some(sid) = c.session.clone() else {
            let max = self.settings.limits.max_hello_bytes;
            if env.msg_type == "hello" && text.len() > max {
                let message = format!(
                    "a hello of {} bytes is over the {max} byte limit",
                    text.len()
                );
                self.refuse_hello(conn, "too_large", &message, close::POLICY);
            } else if env.msg_type == "hello" {
                self.hello(now, conn, &env);
            } else {
                self.close(conn, close::POLICY, "hello expected");
            }
            return;
        };
        match env.msg_type.as_str() {
            "ping" => self.pong(now, conn, &env),
            "pong" | "ack" => {}
            "auth" => self.renew_token(now, conn, &env),
            "hello" | "welcome" | "error" => self.send_error(
                conn,
                "bad_message",
                "unexpected control message",
                None,
                env.id.as_deref(),
            ),
            _ => self.application(now, conn, &sid, env),
        }
    }

    /// A binary frame arrived: not part of protocol v1, the connection is closed (1003).
    pub fn binary_frame(&mut self, now: Timestamp, conn: ConnId, len: usize) {
        self.enter(now);
        if self.is_live(conn) {
            let reason = format!("binary frames ({len} bytes) are not part of protocol v1");
            self.close(conn, close::UNSUPPORTED_DATA, &reason);
        }
    }

    /// A frame over the size limit arrived: the connection is closed (1009).
    pub fn frame_too_large(&mut self, now: Timestamp, conn: ConnId) {
        self.enter(now);
        if self.is_live(conn) {
            let reason = format!(
                "frame too large (limit {} bytes)",
                self.settings.max_frame_bytes
            );
            self.close(conn, close::TOO_BIG, &reason);
        }
    }

    /// A connection's peer stopped reading and its write queue filled: it is cut off (4009).
    pub fn write_blocked(&mut self, now: Timestamp, conn: ConnId) {
        self.enter(now);
        if self.is_live(conn) {
            self.close(conn, close::SLOW_CONSUMER, "slow consumer");
        }
    }

    /// A connection ended (closed by either side, failed, or let go by the driver).
    pub fn closed(&mut self, now: Timestamp, conn: ConnId) {
        let now = self.enter(now);
        self.uncount(conn);
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if self.conns.is_empty() {
            self.conn_due = None;
        }
        self.delayed.retain(|d| d.1 != conn);
        let Some(sid) = c.session else { return };
        let user = self.user_of(&sid);
        for project in c.projects {
            self.leave(project, conn, &user);
        }
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.conn == Some(conn) {
            s.conn = None;
            let ttl_ms = self.settings.session_ttl_ms;
            let at = now.add_ms(ttl_ms);
            s.expires_at = Some(at);
            self.expiry_due = Some(self.expiry_due.map_or(at, |d| d.min(at)));
            self.submit(BrokerCommand::SessionAway {
                session: sid,
                ttl_ms,
            });
        }
    }

    /// The hub is going down: every connection gets 1012 with the restart window as its reason
    /// (clients reconnect elsewhere, or here later, spread over the window).
    pub fn shutdown(&mut self, now: Timestamp) {
        self.enter(now);
        let live: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.closing)
            .map(|(id, _)| *id)
            .collect();
        let reason = self.settings.restart_reason();
        for conn in live {
            self.close(conn, close::SERVICE_RESTART, &reason);
        }
    }

    /// Advances time: agent stream chunks, hello and idle timeouts, chaos, session expiry.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.enter(now);
    }

    // ---- time ----------------------------------------------------------------------------

    /// Fires everything due at `now`; each firing removes or moves its deadline past `now`.
    fn run_timers(&mut self, now: Timestamp) {
        let due: Vec<(ConnId, ConnTimer)> = if self.conn_due.is_some_and(|at| at <= now) {
            self.conns
                .iter()
                .filter_map(|(id, c)| match self.conn_deadline(c) {
                    Some((at, why)) if at <= now => Some((*id, why)),
                    _ => None,
                })
                .collect()
        } else {
            Vec::new()
        };
        let scanned = !due.is_empty() || self.conn_due.is_some_and(|at| at <= now);
        for (conn, why) in due {
            match why {
                // Never said hello: not a client of this protocol.
                ConnTimer::Hello => self.close(conn, close::POLICY, "hello timeout"),
                // Silent: gone, or alive and welcome to reconnect (1001 is not fatal).
                ConnTimer::Idle => self.close(conn, close::GOING_AWAY, "idle timeout"),
                ConnTimer::ChaosDrop => match self.settings.chaos.close_code {
                    Some(code) => self.close(conn, code, "chaos: dropped"),
                    None => self.end(HubOutput::Abort { conn }),
                },
                ConnTimer::ChaosStall => self.end(HubOutput::Stall { conn }),
                ConnTimer::TokenWarning => self.warn_token(now, conn),
                // Not renewed in time: the client's token refresh flow takes over.
                ConnTimer::TokenExpired => self.refuse_hello(
                    conn,
                    "unauthorized",
                    "the token has expired",
                    close::UNAUTHORIZED,
                ),
            }
        }
        if scanned {
            self.conn_due = self
                .conns
                .values()
                .filter_map(|c| self.conn_deadline(c).map(|(at, _)| at))
                .min();
        }
        while self.delayed.front().is_some_and(|d| d.0 <= now) {
            if let Some((_, conn, text)) = self.delayed.pop_front() {
                self.push_send(conn, text);
            }
        }
        if self.expiry_due.is_some_and(|at| at <= now) {
            let expired: Vec<String> = self
                .sessions
                .iter()
                .filter(|(_, s)| s.expires_at.is_some_and(|e| e <= now))
                .map(|(id, _)| id.clone())
                .collect();
            for sid in expired {
                self.sessions.remove(&sid);
                self.streams.retain(|(s, _), _| *s != sid);
            }
            self.expiry_due = self.sessions.values().filter_map(|s| s.expires_at).min();
        }
        let due: Vec<(String, String)> = self
            .streams
            .iter()
            .filter(|(_, a)| a.running && a.next_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for (sid, stream_id) in due {
            self.advance_stream(now, &sid, &stream_id);
        }
    }

    /// When a connection's next timer fires, and which.
    fn conn_deadline(&self, c: &Conn) -> Option<(Timestamp, ConnTimer)> {
        if c.closing {
            return None;
        }
        let protocol = if c.session.is_none() {
            Some((
                c.opened_at.add_ms(self.settings.hello_timeout_ms),
                ConnTimer::Hello,
            ))
        } else if self.settings.idle_timeout_ms > 0 {
            Some((
                c.last_inbound.add_ms(self.settings.idle_timeout_ms),
                ConnTimer::Idle,
            ))
        } else {
            None
        };
        let chaos = [
            c.drop_at.map(|at| (at, ConnTimer::ChaosDrop)),
            c.stall_at.map(|at| (at, ConnTimer::ChaosStall)),
        ];
        let token = c.grant.as_ref().map(|g| match g.warned {
            false => (
                Timestamp::from_millis(
                    g.expires_at
                        .as_millis()
                        .saturating_sub(self.settings.token_warning_ms),
                ),
                ConnTimer::TokenWarning,
            ),
            true => (g.expires_at, ConnTimer::TokenExpired),
        });
        std::iter::once(protocol)
            .chain([token])
            .chain(chaos)
            .flatten()
            .min_by_key(|(at, _)| *at)
    }

    // ---- inbound -------------------------------------------------------------------------

    fn is_live(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| !c.closing)
    }

    fn take_token(&mut self, now: Timestamp, conn: ConnId) -> bool {
        let conn_burst = match self.settings.rate_limit {
            RateLimitConfig::Bucket { burst, .. } => burst,
            RateLimitConfig::Off => 0,
        };
        let limits = &self.settings.limits;
        let user_burst = limits.user_burst;
        // `Off` turns off every inbound rate, the per-user one too.
        let limited = matches!(self.settings.rate_limit, RateLimitConfig::Bucket { .. });
        let per_user =
            (limited && limits.user_messages_per_sec > 0).then_some(RateLimitConfig::Bucket {
                per_sec: limits.user_messages_per_sec,
                burst: limits.user_burst,
            });
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        // The connection's own bucket, then its user's across all their connections here (a
        // user cannot multiply the rate by opening connections).
        let mut user_wait = None;
        let mut allowed = c.limiter.try_acquire(now);
        if allowed {
            if let (Some(cfg), Some(user)) = (per_user, c.user.as_ref()) {
                // Looked up before inserting: no copy of the user id per frame.
                if !self.user_limiters.contains_key(user) {
                    let fresh = RateLimiter::new(cfg, now);
                    self.user_limiters.insert(user.clone(), fresh);
                }
                let Some(limiter) = self.user_limiters.get_mut(user) else {
                    return false;
                };
                allowed = limiter.try_acquire(now);
                if !allowed {
                    user_wait = limiter.ready_at();
                }
            }
        }
        if allowed {
            c.excess = 0;
            return true;
        }
        c.excess += 1;
        let excess = c.excess;
        let burst = if user_wait.is_some() {
            user_burst
        } else {
            conn_burst
        };
        let wait = user_wait
            .or(c.limiter.ready_at())
            .map_or(1, |at| at.ms_since(now).max(1));
        if excess == 1 {
            self.send_error(conn, "rate_limited", "slow down", Some(wait), None);
        } else if excess > burst.max(1) * 2 {
            self.close(conn, close::RATE_LIMITED, "rate limited");
        }
        false
    }

    fn hello(&mut self, now: Timestamp, conn: ConnId, env: &Envelope) {
        let hello = match env.data_as::<wire::Hello>() {
            Ok(h) => h,
            Err(e) => {
                let message = format!("invalid hello: {e}");
                return self.refuse_hello(conn, "bad_message", &message, close::POLICY);
            }
        };
        if hello.protocol != wire::PROTOCOL_VERSION {
            let message = format!("this hub speaks protocol {} only", wire::PROTOCOL_VERSION);
            return self.refuse_hello(conn, "unsupported_protocol", &message, close::POLICY);
        }
        // Who the connection is: the token's `sub` when tokens are verified (a `userId` that
        // differs is refused: a client claiming to be someone else is misconfigured or worse),
        // else whatever the hello says.
        let user = match &self.verifier {
            Some(verifier) => {
                let verdict = match hello.token.as_deref() {
                    Some(token) => verifier.verify(token),
                    None => Err(TokenError::Missing),
                };
                let claims = match verdict {
                    Ok(c) => c,
                    Err(e) => {
                        let message = e.to_string();
                        return self.refuse_hello(
                            conn,
                            "unauthorized",
                            &message,
                            close::UNAUTHORIZED,
                        );
                    }
                };
                if hello.user_id.as_ref().is_some_and(|u| *u != claims.sub) {
                    let message = "hello.userId differs from the token's sub";
                    return self.refuse_hello(conn, "forbidden", message, close::FORBIDDEN);
                }
                let sub = claims.sub.clone();
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.grant = Some(Grant::new(now, claims));
                }
                Some(sub)
            }
            None => {
                if let Some(required) = &self.settings.token {
                    if hello.token.as_deref() != Some(required.as_str()) {
                        let message = "invalid or missing token";
                        return self.refuse_hello(
                            conn,
                            "unauthorized",
                            message,
                            close::UNAUTHORIZED,
                        );
                    }
                }
                hello.user_id
            }
        };
        let limits = &self.settings.limits;
        if let Some(u) = &user {
            if u.is_empty() || u.len() > limits.max_user_id_bytes {
                let message = format!(
                    "a user id must be 1 to {} bytes, not {}",
                    limits.max_user_id_bytes,
                    u.len()
                );
                return self.refuse_hello(conn, "bad_message", &message, close::POLICY);
            }
            let open = self.user_conns.get(u).copied().unwrap_or(0);
            if open >= limits.max_connections_per_user {
                let message =
                    format!("{u} has {open} connections open here, the most one user may have");
                let retry = Some(TOO_MANY_CONNECTIONS_RETRY_MS);
                self.send_error(conn, "too_many_connections", &message, retry, None);
                self.close(conn, close::TRY_AGAIN_LATER, "too many connections");
                return;
            }
        }
        // A session this node holds resumes (its agent streams and acknowledged ids) for its
        // own user only; one it does not hold may be another node's: the broker says whose it
        // is. Project messages recover per project, from the positions the client joins with.
        match hello.session_id {
            Some(sid) if self.sessions.contains_key(&sid) => {
                if self.owns(&sid, user.as_deref()) {
                    self.welcome(conn, sid, true)
                } else {
                    self.new_session(conn, user)
                }
            }
            Some(session) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.greeting = Some(user);
                }
                self.submit(BrokerCommand::Resume { conn, session });
            }
            None => self.new_session(conn, user),
        }
    }

    /// The connection's token runs out soon: it hears when (`token_expiring{expiresInMs}`), so
    /// it can send a new one (`auth{token}`) before it is closed at expiry.
    fn warn_token(&mut self, now: Timestamp, conn: ConnId) {
        let Some(g) = self.conns.get_mut(&conn).and_then(|c| c.grant.as_mut()) else {
            return;
        };
        g.warned = true;
        let expiring = wire::TokenExpiring {
            expires_in_ms: g.expires_at.ms_since(now),
        };
        self.push_send(
            conn,
            wire::encode_control("token_expiring", &expiring).into(),
        );
    }

    /// `auth{token}`: a welcomed connection's new token, for the same user, replaces its grant
    /// (its expiry and projects); anything else ends the connection as a bad hello would.
    fn renew_token(&mut self, now: Timestamp, conn: ConnId, env: &Envelope) {
        let Some(verifier) = &self.verifier else {
            let message = "this hub does not verify tokens";
            return self.send_error(conn, "bad_message", message, None, env.id.as_deref());
        };
        let verdict = match env.data_as::<wire::AuthData>() {
            Ok(a) => verifier.verify(&a.token),
            Err(_) => Err(TokenError::Missing),
        };
        let claims = match verdict {
            Ok(c) => c,
            Err(e) => {
                let message = e.to_string();
                return self.refuse_hello(conn, "unauthorized", &message, close::UNAUTHORIZED);
            }
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.user.as_deref() != Some(claims.sub.as_str()) {
            let message = "a renewed token must be for the same user";
            return self.refuse_hello(conn, "forbidden", message, close::FORBIDDEN);
        }
        c.grant = Some(Grant::new(now, claims));
        // A later expiry: the bound may stay early, never late.
        self.note_deadline(conn);
    }

    /// Refuses a `hello`: the error, then the close.
    fn refuse_hello(&mut self, conn: ConnId, code: &str, message: &str, close_code: u16) {
        self.send_error(conn, code, message, None, None);
        self.close(conn, close_code, code);
    }

    /// Whether a connection that is `user` (`None`: it named nobody) may resume session `sid`:
    /// only its own user may, and an anonymous session only anonymously.
    fn owns(&self, sid: &str, user: Option<&str>) -> bool {
        let owner = self.sessions.get(sid).map(|s| s.user.as_str());
        owner == Some(user.unwrap_or(sid))
    }

    /// The broker answered whose session a `hello` named: it resumes here if it is the
    /// connection's user's, else a fresh one starts (never another user's log or streams).
    fn resumed(&mut self, conn: ConnId, session: String, owner: Option<String>) {
        let Some(user) = self
            .conns
            .get_mut(&conn)
            .filter(|c| !c.closing)
            .and_then(|c| c.greeting.take())
        else {
            return; // gone before the answer came
        };
        let theirs = owner
            .as_deref()
            .is_some_and(|o| o == user.as_deref().unwrap_or(&session));
        if !theirs {
            return self.new_session(conn, user);
        }
        if !self.sessions.contains_key(&session) {
            let owner = owner.unwrap_or_default();
            let state = SessionState::new(owner, self.settings.dedupe_window);
            self.sessions.insert(session.clone(), state);
        }
        self.welcome(conn, session, true);
    }

    /// A fresh session for a welcomed connection.
    fn new_session(&mut self, conn: ConnId, user: Option<String>) {
        self.next_session += 1;
        let sid = self.session_id();
        let user = user.unwrap_or_else(|| sid.clone());
        let state = SessionState::new(user, self.settings.dedupe_window);
        self.sessions.insert(sid.clone(), state);
        self.welcome(conn, sid, false);
    }

    /// A new session id: 128 bits from the driver's CSPRNG (the only credential a resume needs
    /// besides the user), from the seeded PRNG only where no source was given (tests).
    fn session_id(&mut self) -> String {
        let mut bytes = [0u8; 16];
        match self.secrets.as_mut() {
            Some(secrets) => secrets.fill(&mut bytes),
            None => {
                bytes[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
                bytes[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
            }
        }
        let mut sid = String::with_capacity(33);
        sid.push('s');
        for b in bytes {
            sid.push_str(&format!("{b:02x}"));
        }
        sid
    }

    /// The connection is the session's now (a previous one is closed): `welcome`.
    fn welcome(&mut self, conn: ConnId, sid: String, resumed: bool) {
        let previous = self.sessions.get_mut(&sid).and_then(|s| {
            s.expires_at = None;
            s.conn.replace(conn)
        });
        if let Some(old) = previous {
            self.close(old, close::NORMAL, "session taken over by a new connection");
        }
        let user = self.user_of(&sid);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(sid.clone());
            c.user = Some(user.clone());
        }
        *self.user_conns.entry(user.clone()).or_insert(0) += 1;
        // From the hello deadline to the idle one, which an idle timeout shorter than the
        // hello timeout makes the earlier.
        self.note_deadline(conn);
        self.submit(BrokerCommand::SessionLive {
            session: sid.clone(),
            user,
        });
        let welcome = wire::Welcome {
            session_id: sid,
            resumed,
        };
        self.push_send(conn, wire::encode_control("welcome", &welcome).into());
    }

    fn pong(&mut self, now: Timestamp, conn: ConnId, ping: &Envelope) {
        let pong: Frame = wire::encode_control("pong", &ping.data).into();
        match ConnChaos::pong(&self.settings.chaos) {
            PongFate::Send => self.push_send(conn, pong),
            PongFate::Delay(ms) => self.delayed.push_back((now.add_ms(ms), conn, pong)),
            PongFate::Swallow => {}
        }
    }

    /// An application message of a welcomed session: deduplicated by id, applied, acked.
    fn application(&mut self, now: Timestamp, conn: ConnId, sid: &str, env: Envelope) {
        let id = env.id.clone();
        if let Some(id) = &id {
            if self
                .sessions
                .get(sid)
                .is_some_and(|s| s.logging.contains(id))
            {
                // A resend of one the broker is logging: its answer comes to this connection.
                return;
            }
            let fresh = self.sessions.get_mut(sid).is_none_or(|s| s.seen.insert(id));
            if !fresh {
                // A resend of something already applied: ack again, apply once.
                self.push_send(conn, ack_frame(id, None));
                return;
            }
        }
        let applied = self.apply(now, conn, sid, env);
        if let Some(id) = id {
            match applied {
                Applied::Yes => self.push_send(conn, ack_frame(&id, None)),
                Applied::Logged => {}
                Applied::Refused => {
                    if let Some(s) = self.sessions.get_mut(sid) {
                        // Refused, not applied: a later message with this id is news.
                        s.seen.forget(&id);
                    }
                }
            }
        }
    }

    /// Applies a client message; `Refused` if it was (and the sender told why).
    fn apply(&mut self, now: Timestamp, conn: ConnId, sid: &str, env: Envelope) -> Applied {
        let user = self.user_of(sid);
        if let Some(p) = env.project_id {
            let member = self
                .conns
                .get(&conn)
                .is_some_and(|c| c.projects.contains(&p));
            // Joining and leaving need no membership; the agent's streams are the session's own.
            let own = matches!(
                env.msg_type.as_str(),
                "project_subscribe" | "project_unsubscribe"
            ) || env.msg_type.starts_with("agent_");
            if !member && !own {
                // Only members speak in a project: nothing reaches its members, its log or its
                // state from a connection that never joined it.
                let message = format!("not a member of project {p}: join it first");
                self.send_error(conn, "not_member", &message, None, env.id.as_deref());
                return Applied::Refused;
            }
        }
        match (env.msg_type.as_str(), env.project_id) {
            ("project_subscribe", Some(p)) => {
                if let Some((code, message)) = self.may_join(conn, p) {
                    // In the project: the client knows which join to give up.
                    let data = wire::ErrorData {
                        code: code.to_string(),
                        message,
                        retry_after_ms: None,
                        id: env.id.clone(),
                    };
                    let refusal = Envelope::new("error", &data).in_project(p);
                    self.push_send(conn, refusal.to_json().into());
                    return Applied::Refused;
                }
                let since = env.data_as::<wire::Subscribe>().unwrap_or_default();
                self.join(conn, p, since);
            }
            ("project_unsubscribe", Some(p)) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.projects.remove(&p);
                }
                self.leave(p, conn, &user);
            }
            ("project_update", Some(p)) => {
                // Every member hears the new version, the editor included; the editor's ack
                // follows it (a broker that cannot store it says so instead).
                let origin = Origin {
                    conn,
                    id: env.id.clone(),
                    echo: true,
                };
                let state = env.data_value();
                self.logging(conn, sid, env.id.as_deref());
                self.submit(BrokerCommand::Update {
                    project: p,
                    state,
                    origin,
                });
                return Applied::Logged;
            }
            ("project_sync_request", Some(p)) => {
                self.submit(BrokerCommand::Snapshot { project: p, conn })
            }
            ("user_typing_start" | "user_typing_stop", Some(p)) => {
                // Typing is transient: never logged, only to members connected now. The typist
                // is the connection's user (as presence knows it), whatever the frame claims.
                let typist = wire::TypingData { user_id: user };
                let relay = Envelope {
                    id: env.id,
                    timestamp: env.timestamp,
                    ..Envelope::new(&env.msg_type, &typist).in_project(p)
                };
                let frame: Frame = relay.to_json().into();
                let origin = Origin {
                    conn,
                    id: None,
                    echo: false,
                };
                self.submit(BrokerCommand::Broadcast {
                    project: p,
                    frame,
                    origin,
                });
            }
            ("agent_prompt", _) => return self.start_stream(now, conn, sid, &env),
            ("agent_stream_interrupt", _) => {
                if let Ok(r) = env.data_as::<wire::StreamRef>() {
                    if let Some(a) = self.streams.get_mut(&(sid.to_string(), r.stream_id)) {
                        a.running = false;
                    }
                }
            }
            ("agent_stream_resume", _) => {
                let Ok(r) = env.data_as::<wire::StreamResume>() else {
                    let message = "agent_stream_resume needs data.streamId and data.fromSeq";
                    self.send_error(conn, "bad_message", message, None, env.id.as_deref());
                    return Applied::Refused;
                };
                self.resume_stream(sid, r);
            }
            (_, Some(p)) => {
                let len = env.to_json().len() + POSITION_ROOM;
                if len > self.settings.max_frame_bytes {
                    let message = format!(
                        "relayed it would be {len} bytes, over the {} byte frame limit",
                        self.settings.max_frame_bytes
                    );
                    self.send_error(conn, "too_large", &message, None, env.id.as_deref());
                    return Applied::Refused;
                }
                let origin = Origin {
                    conn,
                    id: env.id.clone(),
                    echo: false,
                };
                let message = Envelope {
                    epoch: None,
                    offset: None,
                    ..env
                };
                // Encoded once by the broker, the same bytes for every other member, on every
                // node; the ack follows the message's publication.
                self.logging(conn, sid, message.id.as_deref());
                self.submit(BrokerCommand::Publish {
                    project: p,
                    message,
                    origin,
                    session: Some(sid.to_string()),
                });
                return Applied::Logged;
            }
            _ => {}
        }
        Applied::Yes
    }

    /// Why a connection may not join `project`, if it may not: its token does not list it, or
    /// it is in as many projects as one connection may be (a rejoin is always allowed).
    fn may_join(&self, conn: ConnId, project: u64) -> Option<(&'static str, String)> {
        let c = self.conns.get(&conn)?;
        if c.projects.contains(&project) {
            return None;
        }
        if c.grant.as_ref().is_some_and(|g| !g.allows(project)) {
            let message = format!("the token does not allow project {project}");
            return Some(("forbidden", message));
        }
        let max = self.settings.limits.max_projects_per_connection;
        (c.projects.len() >= max).then(|| {
            let message = format!("a connection may be in {max} projects at most");
            ("too_many_projects", message)
        })
    }

    /// A connection joins a project (again, after a hole, if it already is a member): the
    /// broker says where it continues from; until then what the project publishes waits.
    fn join(&mut self, conn: ConnId, project: u64, since: wire::Subscribe) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.projects.insert(project);
        }
        let since = match (since.epoch, since.offset) {
            (Some(epoch), Some(offset)) => Some(LogPosition { epoch, offset }),
            _ => None,
        };
        let member = Member::Joining {
            since: since.clone(),
            held: Vec::new(),
        };
        self.members
            .entry(project)
            .or_default()
            .insert(conn, member);
        let limit = self.settings.replay_capacity;
        let user = self.user_of_conn(conn);
        let session = self.conns.get(&conn).and_then(|c| c.session.clone());
        self.submit(BrokerCommand::Join {
            project,
            conn,
            since,
            limit,
            user,
            session,
        });
    }

    /// The broker answered a join: the answer with the position the connection continues
    /// from, the messages it missed or the snapshot, what was published meanwhile, then who is
    /// present.
    fn joined(&mut self, project: u64, conn: ConnId, answer: JoinAnswer) {
        let JoinAnswer {
            top,
            replay,
            version,
            state,
            present: members,
            own,
        } = answer;
        let Some(member) = self
            .members
            .get_mut(&project)
            .and_then(|m| m.get_mut(&conn))
        else {
            return; // gone, or left, before the answer came
        };
        let Member::Joining { since, held } = std::mem::replace(member, Member::Live) else {
            return;
        };
        let from = since.clone();
        let (joined, frames) = match (since, replay) {
            (Some(since), Some(Ok(frames))) => (
                wire::Joined {
                    epoch: since.epoch,
                    offset: since.offset,
                    recovered: Some(true),
                    replayed: Some(frames.len() as u64),
                    reason: None,
                },
                Some(frames),
            ),
            (Some(_), Some(Err(why))) => (
                wire::Joined {
                    epoch: top.epoch,
                    offset: top.offset,
                    recovered: Some(false),
                    replayed: None,
                    reason: Some(why.as_str().to_string()),
                },
                None,
            ),
            _ => (
                wire::Joined {
                    epoch: top.epoch,
                    offset: top.offset,
                    recovered: None,
                    replayed: None,
                    reason: None,
                },
                None,
            ),
        };
        let answer = Envelope::new("project_joined", &joined).in_project(project);
        self.push_send(conn, answer.to_json().into());
        match (frames, from) {
            (Some(frames), Some(from)) => {
                // The replay runs from the offset after the position, one frame per offset;
                // the joiner's own messages (logged by a node that died before their ack) go
                // back as those acks: a sender never gets its own messages.
                for (i, frame) in frames.into_iter().enumerate() {
                    let offset = from.offset + 1 + i as u64;
                    match own.iter().find(|(o, _)| *o == offset) {
                        Some((_, id)) => {
                            let place = LogPosition {
                                epoch: from.epoch.clone(),
                                offset,
                            };
                            self.push_send(conn, ack_frame(id, Some((project, place))));
                        }
                        None => self.push_send(conn, frame),
                    }
                }
            }
            _ => self.send_snapshot(conn, project, version, state),
        }
        // The answer covers the log up to its top; what came later was held meanwhile.
        for (offset, frame) in held {
            if offset > top.offset {
                self.push_send(conn, frame);
            }
        }
        // Presence is volatile: sent on every join, never logged; the broker tells every
        // node's members of a new arrival.
        let presence = Envelope::new("presence_state", &wire::PresenceState { members });
        self.push_send(conn, presence.in_project(project).to_json().into());
    }

    /// A connection is no longer a member (it left, or it is gone).
    fn leave(&mut self, project: u64, conn: ConnId, user: &str) {
        let Some(members) = self.members.get_mut(&project) else {
            return;
        };
        if members.remove(&conn).is_none() {
            return;
        }
        if members.is_empty() {
            self.members.remove(&project);
        }
        // Present since its join was asked: the broker tells every node's members if the user
        // is gone.
        self.submit(BrokerCommand::Leave {
            project,
            conn,
            user: user.to_string(),
        });
    }

    /// A published project message to this hub's members but `except`; a member still joining
    /// holds it for after its answer.
    fn publish_locally(
        &mut self,
        project: u64,
        except: Option<ConnId>,
        offset: u64,
        frame: &Frame,
    ) {
        let Some(members) = self.members.get_mut(&project) else {
            return;
        };
        let mut live = Vec::new();
        for (conn, member) in members.iter_mut() {
            if Some(*conn) == except {
                continue;
            }
            match member {
                Member::Live => live.push(*conn),
                Member::Joining { held, .. } => held.push((offset, frame.clone())),
            }
        }
        for conn in live {
            self.relayed += 1;
            self.push_send(conn, frame.clone());
        }
    }

    fn user_of(&self, sid: &str) -> String {
        self.sessions
            .get(sid)
            .map(|s| s.user.clone())
            .unwrap_or_default()
    }

    fn user_of_conn(&self, conn: ConnId) -> String {
        self.conns
            .get(&conn)
            .and_then(|c| c.user.clone())
            .unwrap_or_default()
    }

    fn send_snapshot(&mut self, conn: ConnId, project: u64, version: u64, state: Value) {
        let snapshot = Envelope::new("project_snapshot", &broker::with_version(state, version));
        self.push_send(conn, snapshot.in_project(project).to_json().into());
    }

    fn start_stream(&mut self, now: Timestamp, conn: ConnId, sid: &str, env: &Envelope) -> Applied {
        let prompt = env.data_as::<wire::AgentPrompt>().unwrap_or_default();
        let Some(agent) = self.agent.as_mut() else {
            let id = env.id.as_deref();
            self.send_error(conn, "unsupported", "this hub has no agent", None, id);
            return Applied::Refused;
        };
        let stream_id = match prompt.stream_id {
            Some(id) if !id.is_empty() && id.len() <= MAX_STREAM_ID => id,
            _ => format!(
                "{}-{}",
                env.id.as_deref().unwrap_or("agent"),
                self.streams.len() + 1
            ),
        };
        let running = self
            .streams
            .iter()
            .filter(|((s, _), a)| s == sid && a.running)
            .count();
        let max = self.settings.limits.max_streams_per_connection;
        if running >= max {
            let message = format!("{max} agent streams are running already, the most at once");
            let id = env.id.as_deref();
            self.send_error(conn, "too_many_streams", &message, None, id);
            return Applied::Refused;
        }
        let key = (sid.to_string(), stream_id.clone());
        if self.streams.contains_key(&key) {
            let id = env.id.as_deref();
            self.send_error(conn, "bad_message", "stream id already in use", None, id);
            return Applied::Refused;
        }
        let chunks = agent.answer(&prompt.prompt);
        self.streams.insert(
            key,
            AgentStream {
                chunks,
                sent: 0,
                next_at: now.add_ms(self.settings.agent_chunk_ms.max(1)),
                running: true,
            },
        );
        let start = wire::StreamStart {
            stream_id,
            prompt: prompt.prompt,
        };
        self.deliver(sid, Envelope::new("agent_stream_start", &start));
        Applied::Yes
    }

    fn resume_stream(&mut self, sid: &str, r: wire::StreamResume) {
        let Some(a) = self.streams.get(&(sid.to_string(), r.stream_id.clone())) else {
            // Streams live in their session: after a `welcome{resumed: false}` the client's
            // stream is gone, and it must hear so rather than wait for a stall.
            let error = wire::StreamError {
                stream_id: r.stream_id,
                error: "unknown stream (its session was not resumed)".into(),
            };
            self.deliver(sid, Envelope::new("agent_stream_error", &error));
            return;
        };
        let from = usize::try_from(r.from_seq).unwrap_or(usize::MAX);
        let chunks: Vec<(usize, String)> = a.chunks[..a.sent]
            .iter()
            .cloned()
            .enumerate()
            .skip(from)
            .collect();
        let ended = a.finished();
        let total = a.chunks.len() as u64;
        for (seq, delta) in chunks {
            let chunk = wire::StreamChunk {
                stream_id: r.stream_id.clone(),
                seq: seq as u64,
                delta,
            };
            self.deliver(sid, Envelope::new("agent_stream_chunk", &chunk));
        }
        if ended {
            // It ended while the client was away and missed the end too.
            let end = wire::StreamEnd {
                stream_id: r.stream_id,
                seq: Some(total),
            };
            self.deliver(sid, Envelope::new("agent_stream_end", &end));
        }
    }

    fn advance_stream(&mut self, now: Timestamp, sid: &str, stream_id: &str) {
        let key = (sid.to_string(), stream_id.to_string());
        let Some(a) = self.streams.get_mut(&key) else {
            return;
        };
        let seq = a.sent;
        let delta = a.chunks.get(seq).cloned();
        a.sent = (a.sent + 1).min(a.chunks.len());
        a.next_at = now.add_ms(self.settings.agent_chunk_ms.max(1));
        let done = a.finished();
        if done {
            a.running = false;
        }
        let total = a.chunks.len() as u64;
        if let Some(delta) = delta {
            let chunk = wire::StreamChunk {
                stream_id: stream_id.to_string(),
                seq: seq as u64,
                delta,
            };
            self.deliver(sid, Envelope::new("agent_stream_chunk", &chunk));
        }
        if done {
            let end = wire::StreamEnd {
                stream_id: stream_id.to_string(),
                seq: Some(total),
            };
            self.deliver(sid, Envelope::new("agent_stream_end", &end));
        }
    }

    // ---- outbound ------------------------------------------------------------------------

    /// Sends a message of the session's own (its agent streams) to its connection, if any: a
    /// stream resumes by chunk `seq`, so nothing is kept while it is away.
    fn deliver(&mut self, sid: &str, msg: Envelope) {
        if let Some(conn) = self.sessions.get(sid).and_then(|s| s.conn) {
            self.relayed += 1;
            self.push_send(conn, msg.to_json().into());
        }
    }

    /// A project's member connections whose join was answered.
    fn live_members(&self, project: u64) -> impl Iterator<Item = ConnId> + '_ {
        self.members
            .get(&project)
            .into_iter()
            .flatten()
            .filter(|(_, m)| matches!(m, Member::Live))
            .map(|(c, _)| *c)
    }

    fn send_error(
        &mut self,
        conn: ConnId,
        code: &str,
        message: &str,
        retry_after_ms: Option<u64>,
        id: Option<&str>,
    ) {
        let data = wire::ErrorData {
            code: code.to_string(),
            message: message.to_string(),
            retry_after_ms,
            id: id.map(str::to_string),
        };
        self.push_send(conn, wire::encode_control("error", &data).into());
    }

    /// Queues a frame for a live connection (chaos may break it on the way).
    fn push_send(&mut self, conn: ConnId, text: Frame) {
        let Some(c) = self.conns.get_mut(&conn).filter(|c| !c.closing) else {
            return;
        };
        let text = if self.settings.chaos.corrupt > 0.0 {
            c.chaos.outbound(&self.settings.chaos, text)
        } else {
            text
        };
        self.outputs.push_back(HubOutput::Send { conn, text });
    }

    fn close(&mut self, conn: ConnId, code: u16, reason: &str) {
        self.end(HubOutput::Close {
            conn,
            code,
            reason: reason.to_string(),
        });
    }

    /// Ends a live connection: no more timers or outputs for it, and what it still sends is
    /// ignored until the driver reports it `closed`.
    fn end(&mut self, output: HubOutput) {
        let Some(conn) = output.conn() else { return };
        if !self.is_live(conn) {
            return;
        }
        self.uncount(conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.closing = true;
        }
        self.outputs.push_back(output);
    }

    /// A welcomed connection whose end is being decided (or that is gone) no longer counts
    /// against its user's limit; one closing already was uncounted then.
    fn uncount(&mut self, conn: ConnId) {
        let Some(user) = self
            .conns
            .get(&conn)
            .filter(|c| !c.closing)
            .and_then(|c| c.user.clone())
        else {
            return;
        };
        if let Some(n) = self.user_conns.get_mut(&user) {
            *n -= 1;
            if *n == 0 {
                self.user_conns.remove(&user);
                self.user_limiters.remove(&user);
            }
        }
    }
}

/// What applying a client message came to.
enum Applied {
    /// Applied: ack it.
    Yes,
    /// Sent to the broker to be logged: acked with its place once published.
    Logged,
    /// Refused (the sender was told why).
    Refused,
}

/// `ack{id}`, with the message's project and log position when it was logged.
fn ack_frame(id: &str, logged: Option<(u64, LogPosition)>) -> Frame {
    let (project_id, epoch, offset) = match logged {
        Some((p, pos)) => (Some(p), Some(pos.epoch), Some(pos.offset)),
        None => (None, None, None),
    };
    let ack = wire::Ack {
        id: id.to_string(),
        project_id,
        epoch,
        offset,
    };
    wire::encode_control("ack", &ack).into()
}

#[cfg(test)]
mod tests;
