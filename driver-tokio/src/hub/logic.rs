//! The hub's protocol logic, sans-IO: connections' frames and the current time in, frames to send
//! and connections to close out. The tokio server only moves bytes and time.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{json, Map, Value};
use sockline_core::rng::Rng;
use sockline_core::wire;

use super::broker::Broker;

/// Identifies one WebSocket connection.
pub type ConnId = u64;

/// Protocol settings of the hub.
#[derive(Clone, Debug)]
pub struct HubSettings {
    /// Required `hello.token`, if any.
    pub token: Option<String>,
    /// Messages kept per session for replay on resume.
    pub replay_capacity: usize,
    /// How long a disconnected session stays resumable.
    pub session_ttl_ms: u64,
    /// How long a new connection may take to send `hello`.
    pub hello_timeout_ms: u64,
    /// Inbound token bucket per connection: `(per_sec, burst)`.
    pub rate_limit: Option<(u32, u32)>,
    /// Time between agent stream chunks.
    pub agent_chunk_ms: u64,
    /// Chunks per agent stream.
    pub agent_chunks: u32,
    /// Message ids remembered per session for deduplication.
    pub dedupe_window: usize,
    /// A welcomed connection silent this long is closed (1001 "idle timeout"): a client that
    /// vanished without a FIN must not hold its connection forever. Clients ping every 30 s by
    /// default; 0 turns it off.
    pub idle_timeout_ms: u64,
    /// Largest frame, in and out: bigger inbound frames close the connection with 1009, and a
    /// message whose relay would be bigger (the hub adds `seq`) is refused with an `error`.
    pub max_frame_bytes: usize,
}

impl Default for HubSettings {
    fn default() -> Self {
        HubSettings {
            token: None,
            replay_capacity: 1024,
            session_ttl_ms: 300_000,
            hello_timeout_ms: 10_000,
            rate_limit: Some((200, 400)),
            agent_chunk_ms: 50,
            agent_chunks: 20,
            dedupe_window: 4096,
            idle_timeout_ms: 120_000,
            max_frame_bytes: 1 << 20,
        }
    }
}

/// Something the server must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a text frame on a connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// The frame.
        text: String,
    },
    /// Close a connection.
    Close {
        /// The connection.
        conn: ConnId,
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
}

/// The protocol version a `hello` must name.
pub const PROTOCOL_VERSION: u64 = 1;
/// Close code for a client over the inbound rate.
pub const CLOSE_RATE_LIMITED: u16 = 4008;
/// Close code for a client too slow to read what it is sent.
pub const CLOSE_SLOW_CONSUMER: u16 = 4009;
/// Close code for a refused token.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;

#[derive(Debug)]
struct Conn {
    session: Option<String>,
    opened_at: u64,
    /// When its last frame arrived.
    last_inbound: u64,
    /// A close was decided: no more timers, frames ignored until it is gone.
    closing: bool,
    tokens_milli: u64,
    last_refill: u64,
    excess: u32,
}

/// Why a connection timed out.
#[derive(Clone, Copy, Debug)]
enum Timeout {
    /// No `hello` in time.
    Hello,
    /// Welcomed, then silent for too long.
    Idle,
}

#[derive(Debug)]
struct SessionState {
    conn: Option<ConnId>,
    user: String,
    seen: VecDeque<String>,
    seen_set: BTreeSet<String>,
    expires_at: Option<u64>,
}

#[derive(Debug)]
struct AgentStream {
    words: Vec<String>,
    sent: Vec<String>,
    total: u64,
    next_at: u64,
    running: bool,
}

/// The hub's state machine.
pub struct HubCore<B: Broker> {
    settings: HubSettings,
    broker: B,
    rng: Rng,
    conns: BTreeMap<ConnId, Conn>,
    sessions: BTreeMap<String, SessionState>,
    streams: BTreeMap<(String, String), AgentStream>,
    next_session: u64,
    relayed: u64,
}

impl<B: Broker> HubCore<B> {
    /// A hub with no connections; `seed` makes session ids reproducible.
    pub fn new(settings: HubSettings, broker: B, seed: u64) -> Self {
        HubCore {
            settings,
            broker,
            rng: Rng::new(seed),
            conns: BTreeMap::new(),
            sessions: BTreeMap::new(),
            streams: BTreeMap::new(),
            next_session: 0,
            relayed: 0,
        }
    }

    /// Application messages delivered to sessions so far.
    pub fn relayed(&self) -> u64 {
        self.relayed
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// A connection was accepted.
    pub fn connected(&mut self, conn: ConnId, now: u64) {
        let burst = self
            .settings
            .rate_limit
            .map_or(0, |(_, b)| u64::from(b) * 1000);
        self.conns.insert(
            conn,
            Conn {
                session: None,
                opened_at: now,
                last_inbound: now,
                closing: false,
                tokens_milli: burst,
                last_refill: now,
                excess: 0,
            },
        );
    }

    /// A connection ended (closed by either side or failed).
    pub fn disconnected(&mut self, conn: ConnId, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(c) = self.conns.remove(&conn) else {
            return out;
        };
        let Some(sid) = c.session else { return out };
        let Some(s) = self.sessions.get_mut(&sid) else {
            return out;
        };
        if s.conn != Some(conn) {
            return out; // already taken over by a newer connection
        }
        s.conn = None;
        s.expires_at = Some(now + self.settings.session_ttl_ms);
        let user = s.user.clone();
        // Membership stays (the session's log keeps receiving for a resume); presence does not.
        for project in self.broker.projects_of(&sid) {
            self.presence_diff(project, &sid, &user, false, &mut out);
        }
        out
    }

    /// A text frame arrived on a connection.
    pub fn frame(&mut self, conn: ConnId, text: &str, now: u64) -> Vec<Action> {
        match self.conns.get_mut(&conn) {
            Some(c) if !c.closing => c.last_inbound = c.last_inbound.max(now),
            // Closing (or unknown): whatever it still says changes nothing.
            _ => return Vec::new(),
        }
        let out = self.handle_frame(conn, text, now);
        self.mark_closing(&out);
        out
    }

    /// Connections the hub decided to close get no more timers (no tick loop spinning on a
    /// deadline that stays past until the socket is gone) and no more hearing.
    fn mark_closing(&mut self, actions: &[Action]) {
        for a in actions {
            if let Action::Close { conn, .. } = a {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.closing = true;
                }
            }
        }
    }

    fn handle_frame(&mut self, conn: ConnId, text: &str, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.take_token(conn, now, &mut out) {
            return out;
        }
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            out.push(send(
                conn,
                error_frame("bad_message", "not JSON", None, None),
            ));
            return out;
        };
        let Some(kind) = v["type"].as_str().map(str::to_string) else {
            out.push(send(
                conn,
                error_frame("bad_message", "missing type", None, None),
            ));
            return out;
        };
        let session = self.conns.get(&conn).and_then(|c| c.session.clone());
        let Some(sid) = session else {
            if kind == "hello" {
                self.hello(conn, &v["data"], &mut out);
            } else {
                out.push(close(conn, 1008, "hello expected"));
            }
            return out;
        };
        match kind.as_str() {
            "ping" => out.push(send(
                conn,
                json!({"type": "pong", "data": v["data"]}).to_string(),
            )),
            "pong" | "ack" => {}
            "hello" | "welcome" | "error" => out.push(send(
                conn,
                error_frame("bad_message", "unexpected control message", None, None),
            )),
            _ => {
                if let Some(id) = v["id"].as_str() {
                    if !self.remember(&sid, id) {
                        // A resend of something already applied: ack again, apply once.
                        out.push(send(conn, ack_frame(id)));
                        return out;
                    }
                }
                let applied = self.apply(conn, &sid, &kind, &v, now, &mut out);
                if let Some(id) = v["id"].as_str() {
                    if applied {
                        out.push(send(conn, ack_frame(id)));
                    } else {
                        // Refused, not applied: a later message with this id is news.
                        self.forget(&sid, id);
                    }
                }
            }
        }
        out
    }

    /// Advances time: agent stream chunks, hello and idle timeouts, session expiry.
    pub fn tick(&mut self, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let timed_out: Vec<(ConnId, Timeout)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| match self.conn_deadline(c) {
                Some((at, why)) if at <= now => Some((*id, why)),
                _ => None,
            })
            .collect();
        for (conn, why) in timed_out {
            out.push(match why {
                // Never said hello: not a client of this protocol.
                Timeout::Hello => close(conn, 1008, "hello timeout"),
                // Silent: gone, or alive and welcome to reconnect (1001 is not fatal).
                Timeout::Idle => close(conn, 1001, "idle timeout"),
            });
        }
        let expired: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expires_at.is_some_and(|e| e <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for sid in expired {
            self.sessions.remove(&sid);
            self.broker.drop_session(&sid);
            self.streams.retain(|(s, _), _| *s != sid);
        }
        let due: Vec<(String, String)> = self
            .streams
            .iter()
            .filter(|(_, a)| a.running && a.next_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for (sid, stream_id) in due {
            self.advance_stream(&sid, &stream_id, now, &mut out);
        }
        self.mark_closing(&out);
        out
    }

    /// When a connection times out, and why.
    fn conn_deadline(&self, c: &Conn) -> Option<(u64, Timeout)> {
        if c.closing {
            None
        } else if c.session.is_none() {
            Some((c.opened_at + self.settings.hello_timeout_ms, Timeout::Hello))
        } else if self.settings.idle_timeout_ms > 0 {
            Some((
                c.last_inbound + self.settings.idle_timeout_ms,
                Timeout::Idle,
            ))
        } else {
            None
        }
    }

    /// When `tick` is next needed.
    pub fn next_deadline(&self) -> Option<u64> {
        let streams = self
            .streams
            .values()
            .filter(|a| a.running)
            .map(|a| a.next_at);
        let conns = self
            .conns
            .values()
            .filter_map(|c| self.conn_deadline(c).map(|(at, _)| at));
        let expiries = self.sessions.values().filter_map(|s| s.expires_at);
        streams.chain(conns).chain(expiries).min()
    }

    fn take_token(&mut self, conn: ConnId, now: u64, out: &mut Vec<Action>) -> bool {
        let Some((per_sec, burst)) = self.settings.rate_limit else {
            return true;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let cap = u64::from(burst) * 1000;
        c.tokens_milli =
            (c.tokens_milli + now.saturating_sub(c.last_refill) * u64::from(per_sec)).min(cap);
        c.last_refill = c.last_refill.max(now);
        if c.tokens_milli >= 1000 {
            c.tokens_milli -= 1000;
            c.excess = 0;
            return true;
        }
        c.excess += 1;
        if c.excess == 1 {
            let wait = (1000 - c.tokens_milli).div_ceil(u64::from(per_sec).max(1));
            out.push(send(
                conn,
                error_frame("rate_limited", "slow down", Some(wait.max(1)), None),
            ));
        } else if c.excess > burst.max(1) * 2 {
            out.push(close(conn, CLOSE_RATE_LIMITED, "rate limited"));
        }
        false
    }

    fn hello(&mut self, conn: ConnId, data: &Value, out: &mut Vec<Action>) {
        if data["protocol"].as_u64() != Some(PROTOCOL_VERSION) {
            out.push(send(
                conn,
                error_frame(
                    "unsupported_protocol",
                    &format!("this hub speaks protocol {PROTOCOL_VERSION} only"),
                    None,
                    None,
                ),
            ));
            out.push(close(conn, 1008, "unsupported protocol version"));
            return;
        }
        if let Some(required) = &self.settings.token {
            if data["token"].as_str() != Some(required.as_str()) {
                out.push(send(
                    conn,
                    error_frame("unauthorized", "invalid or missing token", None, None),
                ));
                out.push(close(conn, CLOSE_UNAUTHORIZED, "unauthorized"));
                return;
            }
        }
        let last_seq = data["lastSeq"].as_u64().unwrap_or(0);
        let resumable = data["sessionId"]
            .as_str()
            .filter(|sid| self.sessions.contains_key(*sid))
            .and_then(|sid| {
                self.broker
                    .replay_after(sid, last_seq)
                    .map(|f| (sid.to_string(), f))
            });
        let (sid, replay) = match resumable {
            Some((sid, frames)) => (sid, Some(frames)),
            None => {
                self.next_session += 1;
                // Unguessable and unique across hub restarts (the seed is random unless a test
                // fixes it), so a stale id from an earlier hub can never resume someone else.
                let sid = format!("s{}-{:016x}", self.next_session, self.rng.up_to(u64::MAX));
                self.broker
                    .create_session(&sid, self.settings.replay_capacity);
                let user = data["userId"].as_str().unwrap_or(&sid).to_string();
                self.sessions.insert(
                    sid.clone(),
                    SessionState {
                        conn: None,
                        user,
                        seen: VecDeque::new(),
                        seen_set: BTreeSet::new(),
                        expires_at: None,
                    },
                );
                (sid, None)
            }
        };
        if let Some(s) = self.sessions.get_mut(&sid) {
            if let Some(old) = s.conn.replace(conn) {
                out.push(close(old, 1000, "session taken over by a new connection"));
            }
            s.expires_at = None;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(sid.clone());
        }
        let resumed = replay.is_some();
        let welcome = json!({"type": "welcome", "data": {
            "sessionId": sid, "resumed": resumed, "lastSeq": if resumed { last_seq } else { self.broker.last_seq(&sid) }
        }});
        out.push(send(conn, welcome.to_string()));
        for text in replay.unwrap_or_default() {
            out.push(send(conn, text));
        }
    }

    /// Records a message id; false if the session already sent it.
    fn remember(&mut self, sid: &str, id: &str) -> bool {
        let Some(s) = self.sessions.get_mut(sid) else {
            return true;
        };
        if s.seen_set.contains(id) {
            return false;
        }
        if s.seen.len() >= self.settings.dedupe_window.max(1) {
            if let Some(old) = s.seen.pop_front() {
                s.seen_set.remove(&old);
            }
        }
        s.seen.push_back(id.to_string());
        s.seen_set.insert(id.to_string());
        true
    }

    /// Forgets a remembered message id.
    fn forget(&mut self, sid: &str, id: &str) {
        if let Some(s) = self.sessions.get_mut(sid) {
            if s.seen_set.remove(id) {
                s.seen.retain(|x| x != id);
            }
        }
    }

    /// Applies a client message; false if it was refused (and the sender told why).
    fn apply(
        &mut self,
        conn: ConnId,
        sid: &str,
        kind: &str,
        v: &Value,
        now: u64,
        out: &mut Vec<Action>,
    ) -> bool {
        let project = v["projectId"].as_u64();
        let user = self
            .sessions
            .get(sid)
            .map(|s| s.user.clone())
            .unwrap_or_default();
        match (kind, project) {
            ("project_subscribe", Some(p)) => {
                self.broker.join(p, sid);
                let (version, state) = self.broker.project_state(p);
                let snapshot = json!({"type": "project_snapshot", "projectId": p, "data": with_version(state, version)});
                self.deliver(sid, snapshot, out);
                let members = self.present_users(p);
                self.deliver(
                    sid,
                    json!({"type": "presence_state", "projectId": p, "data": {"members": members}}),
                    out,
                );
                self.presence_diff(p, sid, &user, true, out);
            }
            ("project_unsubscribe", Some(p)) => self.unsubscribe(p, sid, &user, out),
            ("project_update", Some(p)) => {
                let version = self.broker.bump_version(p, v["data"].clone());
                let msg = json!({"type": "project_updated", "projectId": p, "data": with_version(v["data"].clone(), version)});
                for member in self.broker.members(p) {
                    self.deliver(&member, msg.clone(), out);
                }
            }
            ("project_sync_request", Some(p)) => {
                let (version, state) = self.broker.project_state(p);
                self.deliver(sid, json!({"type": "project_snapshot", "projectId": p, "data": with_version(state, version)}), out);
            }
            ("user_typing_start" | "user_typing_stop", Some(p)) => {
                // Typing is transient: no seq, never replayed, only to members connected now.
                // The typist is the connection's user (as presence knows it), whatever the
                // frame claims.
                let mut relay = v.clone();
                if let Some(m) = relay.as_object_mut() {
                    m.remove("seq");
                    m.insert("data".into(), json!({ "userId": user }));
                }
                for member in self.broker.members(p) {
                    if member == sid {
                        continue;
                    }
                    if let Some(c) = self.sessions.get(&member).and_then(|s| s.conn) {
                        out.push(send(c, relay.to_string()));
                    }
                }
            }
            ("agent_prompt", _) => self.start_stream(conn, sid, v, now, out),
            ("agent_stream_interrupt", _) => {
                if let Some(id) = v["data"]["streamId"].as_str() {
                    if let Some(a) = self.streams.get_mut(&(sid.to_string(), id.to_string())) {
                        a.running = false;
                    }
                }
            }
            ("agent_stream_resume", _) => {
                let id = v["data"]["streamId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let from = v["data"]["fromSeq"].as_u64().unwrap_or(0) as usize;
                let Some(a) = self.streams.get(&(sid.to_string(), id.clone())) else {
                    // Streams live in their session: after a `welcome{resumed: false}` the
                    // client's stream is gone, and it must hear so rather than wait for a stall.
                    let error = json!({"type": "agent_stream_error", "data": {"streamId": id, "error": "unknown stream (its session was not resumed)"}});
                    self.deliver(sid, error, out);
                    return true;
                };
                let chunks: Vec<(usize, String)> =
                    a.sent.iter().cloned().enumerate().skip(from).collect();
                let finished = !a.running && a.sent.len() as u64 >= a.total;
                let total = a.total;
                for (seq, delta) in chunks {
                    let chunk = json!({"type": "agent_stream_chunk", "data": {"streamId": id, "seq": seq, "delta": delta}});
                    self.deliver(sid, chunk, out);
                }
                if finished {
                    // It ended while the client was away and missed the end too.
                    let end =
                        json!({"type": "agent_stream_end", "data": {"streamId": id, "seq": total}});
                    self.deliver(sid, end, out);
                }
            }
            (_, Some(p)) => {
                let mut relay = v.clone();
                if let Some(m) = relay.as_object_mut() {
                    m.remove("seq");
                }
                // Room for the `,"seq":N` each recipient's copy gets.
                const SEQ_ROOM: usize = 28;
                let len = relay.to_string().len() + SEQ_ROOM;
                if len > self.settings.max_frame_bytes {
                    let message = format!(
                        "relayed it would be {len} bytes, over the {} byte frame limit",
                        self.settings.max_frame_bytes
                    );
                    let id = v["id"].as_str();
                    out.push(send(conn, error_frame("too_large", &message, None, id)));
                    return false;
                }
                for member in self.broker.members(p) {
                    if member != sid {
                        self.deliver(&member, relay.clone(), out);
                    }
                }
            }
            _ => {}
        }
        true
    }

    fn unsubscribe(&mut self, project: u64, sid: &str, user: &str, out: &mut Vec<Action>) {
        if self.broker.leave(project, sid) {
            self.presence_diff(project, sid, user, false, out);
        }
    }

    fn start_stream(
        &mut self,
        conn: ConnId,
        sid: &str,
        v: &Value,
        now: u64,
        out: &mut Vec<Action>,
    ) {
        let prompt = v["data"]["prompt"].as_str().unwrap_or("").to_string();
        let stream_id = match v["data"]["streamId"].as_str() {
            Some(id) if !id.is_empty() && id.len() <= 128 => id.to_string(),
            _ => format!(
                "{}-{}",
                v["id"].as_str().unwrap_or("agent"),
                self.streams.len() + 1
            ),
        };
        let key = (sid.to_string(), stream_id.clone());
        if self.streams.contains_key(&key) {
            out.push(send(
                conn,
                error_frame("bad_message", "stream id already in use", None, None),
            ));
            return;
        }
        let answer = format!(
            "You asked: \"{prompt}\". Here is a deterministic answer streamed by the sockline hub, one word at a time, so interruption and resume can be seen and tested"
        );
        let words: Vec<String> = answer.split(' ').map(|w| format!("{w} ")).collect();
        self.streams.insert(
            key,
            AgentStream {
                words,
                sent: Vec::new(),
                total: u64::from(self.settings.agent_chunks.max(1)),
                next_at: now + self.settings.agent_chunk_ms,
                running: true,
            },
        );
        self.deliver(sid, json!({"type": "agent_stream_start", "data": {"streamId": stream_id, "prompt": prompt}}), out);
    }

    fn advance_stream(&mut self, sid: &str, stream_id: &str, now: u64, out: &mut Vec<Action>) {
        let key = (sid.to_string(), stream_id.to_string());
        let Some(a) = self.streams.get_mut(&key) else {
            return;
        };
        let seq = a.sent.len() as u64;
        let delta = a.words[(seq as usize) % a.words.len().max(1)].clone();
        a.sent.push(delta.clone());
        a.next_at = now + self.settings.agent_chunk_ms;
        let done = seq + 1 >= a.total;
        if done {
            a.running = false;
        }
        let total = a.total;
        self.deliver(sid, json!({"type": "agent_stream_chunk", "data": {"streamId": stream_id, "seq": seq, "delta": delta}}), out);
        if done {
            self.deliver(
                sid,
                json!({"type": "agent_stream_end", "data": {"streamId": stream_id, "seq": total}}),
                out,
            );
        }
    }

    /// Logs an application message in a session (with its `seq`) and sends it if connected.
    fn deliver(&mut self, sid: &str, msg: Value, out: &mut Vec<Action>) {
        let Some(text) = self.broker.append(sid, msg) else {
            return;
        };
        self.relayed += 1;
        if let Some(conn) = self.sessions.get(sid).and_then(|s| s.conn) {
            out.push(send(conn, text));
        }
    }

    fn present_users(&self, project: u64) -> Vec<String> {
        let users: BTreeSet<String> = self
            .broker
            .members(project)
            .iter()
            .filter_map(|m| self.sessions.get(m))
            .filter(|s| s.conn.is_some())
            .map(|s| s.user.clone())
            .collect();
        users.into_iter().collect()
    }

    fn presence_diff(
        &mut self,
        project: u64,
        sid: &str,
        user: &str,
        joined: bool,
        out: &mut Vec<Action>,
    ) {
        // Another live session of the same user keeps them present.
        let still_there = self.broker.members(project).iter().any(|m| {
            m != sid
                && self
                    .sessions
                    .get(m)
                    .is_some_and(|s| s.conn.is_some() && s.user == user)
        });
        if still_there {
            return;
        }
        let (joins, leaves) = if joined {
            (vec![user], vec![])
        } else {
            (vec![], vec![user])
        };
        let diff = json!({"type": "presence_diff", "projectId": project, "data": {"joins": joins, "leaves": leaves}});
        for member in self.broker.members(project) {
            if member != sid && self.sessions.get(&member).is_some_and(|s| s.conn.is_some()) {
                self.deliver(&member, diff.clone(), out);
            }
        }
    }
}

fn with_version(state: Value, version: u64) -> Value {
    let mut obj = match state {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => {
            let mut m = Map::new();
            m.insert("value".into(), other);
            m
        }
    };
    obj.insert("version".into(), version.into());
    Value::Object(obj)
}

fn send(conn: ConnId, text: String) -> Action {
    Action::Send { conn, text }
}

fn close(conn: ConnId, code: u16, reason: &str) -> Action {
    Action::Close {
        conn,
        code,
        reason: reason.to_string(),
    }
}

fn ack_frame(id: &str) -> String {
    json!({"type": "ack", "data": {"id": id}}).to_string()
}

/// An `error` frame; with an `id` it refuses that one client message, which the client drops.
fn error_frame(code: &str, message: &str, retry_after_ms: Option<u64>, id: Option<&str>) -> String {
    let data = wire::ErrorData {
        code: code.to_string(),
        message: message.to_string(),
        retry_after_ms,
        id: id.map(str::to_string),
    };
    wire::encode_control("error", &data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::InMemoryBroker;

    fn hub() -> HubCore<InMemoryBroker> {
        HubCore::new(HubSettings::default(), InMemoryBroker::default(), 1)
    }

    fn sent_to(actions: &[Action], to: ConnId) -> Vec<Value> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { conn, text } if *conn == to => serde_json::from_str(text).ok(),
                _ => None,
            })
            .collect()
    }

    fn join(h: &mut HubCore<InMemoryBroker>, conn: ConnId, user: &str, project: u64) {
        h.connected(conn, 0);
        let hello = json!({"type": "hello", "data": {"protocol": 1, "userId": user}});
        h.frame(conn, &hello.to_string(), 0);
        let sub = json!({"type": "project_subscribe", "data": {}, "projectId": project});
        h.frame(conn, &sub.to_string(), 0);
    }

    #[test]
    fn a_hello_for_another_protocol_version_is_refused() {
        for hello in [
            r#"{"type":"hello","data":{"protocol":2}}"#,
            r#"{"type":"hello","data":{}}"#,
        ] {
            let mut h = hub();
            h.connected(1, 0);
            let out = h.frame(1, hello, 0);
            assert_eq!(sent_to(&out, 1)[0]["data"]["code"], "unsupported_protocol");
            assert!(out.iter().any(|a| matches!(
                a,
                Action::Close {
                    conn: 1,
                    code: 1008,
                    ..
                }
            )));
        }
    }

    #[test]
    fn typing_is_relayed_as_the_connections_user() {
        let mut h = hub();
        join(&mut h, 1, "ann", 5);
        join(&mut h, 2, "bob", 5);
        let spoof = r#"{"type":"user_typing_start","data":{"userId":"bob"},"projectId":5}"#;
        let out = h.frame(1, spoof, 10);
        let to_bob = sent_to(&out, 2);
        assert_eq!(to_bob.len(), 1);
        assert_eq!(to_bob[0]["data"]["userId"], "ann");
        assert!(sent_to(&out, 1).is_empty(), "the typist is not echoed");
    }

    #[test]
    fn resuming_an_unknown_stream_fails_it_and_a_finished_one_ends_again() {
        let settings = HubSettings {
            agent_chunks: 2,
            agent_chunk_ms: 10,
            ..HubSettings::default()
        };
        let mut h = HubCore::new(settings, InMemoryBroker::default(), 1);
        join(&mut h, 1, "ann", 5);
        let unknown = r#"{"type":"agent_stream_resume","data":{"streamId":"gone","fromSeq":3}}"#;
        let out = sent_to(&h.frame(1, unknown, 10), 1);
        assert_eq!(out[0]["type"], "agent_stream_error");
        assert_eq!(out[0]["data"]["streamId"], "gone");
        let prompt = r#"{"type":"agent_prompt","data":{"prompt":"hi","streamId":"r1"}}"#;
        h.frame(1, prompt, 20);
        for t in [30, 40, 50, 60] {
            h.tick(t);
        }
        let resume = r#"{"type":"agent_stream_resume","data":{"streamId":"r1","fromSeq":1}}"#;
        let kinds: Vec<Value> = sent_to(&h.frame(1, resume, 70), 1)
            .into_iter()
            .map(|v| v["type"].clone())
            .collect();
        assert_eq!(kinds, ["agent_stream_chunk", "agent_stream_end"]);
    }

    #[test]
    fn a_message_too_big_to_relay_is_refused_not_acked_and_may_come_again() {
        let settings = HubSettings {
            max_frame_bytes: 300,
            ..HubSettings::default()
        };
        let mut h = HubCore::new(settings, InMemoryBroker::default(), 1);
        join(&mut h, 1, "ann", 5);
        join(&mut h, 2, "bob", 5);
        let big = json!({"type": "note", "id": "m1", "projectId": 5, "data": "x".repeat(260)});
        let out = h.frame(1, &big.to_string(), 10);
        let to_ann = sent_to(&out, 1);
        assert_eq!(to_ann.len(), 1, "a refusal, no ack: {to_ann:?}");
        assert_eq!(to_ann[0]["type"], "error");
        assert_eq!(to_ann[0]["data"]["code"], "too_large");
        assert_eq!(to_ann[0]["data"]["id"], "m1");
        assert!(sent_to(&out, 2).is_empty(), "nothing relayed");
        // The same id, now small enough, is applied: the refusal was forgotten.
        let small = json!({"type": "note", "id": "m1", "projectId": 5, "data": "x"});
        let out = h.frame(1, &small.to_string(), 11);
        assert_eq!(sent_to(&out, 2).len(), 1);
        assert_eq!(sent_to(&out, 1)[0]["type"], "ack");
    }

    fn closes(out: &[Action]) -> Vec<(ConnId, u16, String)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Close { conn, code, reason } => Some((*conn, *code, reason.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn silent_and_helloless_connections_time_out_once_and_stop_being_deadlines() {
        let settings = HubSettings {
            hello_timeout_ms: 1_000,
            idle_timeout_ms: 5_000,
            ..HubSettings::default()
        };
        let mut h = HubCore::new(settings, InMemoryBroker::default(), 1);
        h.connected(1, 0); // never says hello
        join(&mut h, 2, "ann", 5); // welcomed at 0
        assert_eq!(h.next_deadline(), Some(1_000));
        let out = h.tick(1_000);
        assert_eq!(closes(&out), vec![(1, 1008, "hello timeout".to_string())]);
        // The closing connection is no deadline any more: no tick loop spinning on it.
        assert_eq!(h.next_deadline(), Some(5_000));
        assert!(closes(&h.tick(1_001)).is_empty());
        // A frame pushes ann's idle deadline on; silence then ends her connection.
        h.frame(2, r#"{"type":"ping","data":{"nonce":1}}"#, 3_000);
        assert_eq!(h.next_deadline(), Some(8_000));
        assert!(closes(&h.tick(7_999)).is_empty());
        assert_eq!(
            closes(&h.tick(8_000)),
            vec![(2, 1001, "idle timeout".to_string())]
        );
        assert_eq!(h.next_deadline(), None);
        // What a closing connection still sends changes nothing.
        assert!(h.frame(2, r#"{"type":"ping","data":{}}"#, 8_001).is_empty());
    }

    #[test]
    fn message_ids_are_deduplicated_per_session_not_across_senders() {
        let mut h = hub();
        join(&mut h, 1, "ann", 5);
        join(&mut h, 2, "bob", 5);
        join(&mut h, 3, "cy", 5);
        let msg = r#"{"type":"note","data":1,"id":"x-1","projectId":5}"#;
        let first = h.frame(1, msg, 10);
        let resend = h.frame(1, msg, 11);
        let other = h.frame(2, msg, 12);
        let notes = |out: &[Action]| {
            sent_to(out, 3)
                .into_iter()
                .filter(|v| v["type"] == "note")
                .count()
        };
        assert_eq!((notes(&first), notes(&resend), notes(&other)), (1, 0, 1));
        // The resend is acked again, so the sender stops resending.
        assert!(sent_to(&resend, 1).iter().any(|v| v["type"] == "ack"));
    }
}
