//! The session: orchestrates the modules, turning inputs into outputs. It owns no policy of its own
//! beyond the connection lifecycle; each concern lives in its module. Reconnect decisions come
//! from `reconnect`; the feature modules (backpressure, typing, projects, streams, presence, auth)
//! sit behind the one contract in `feature`, and the `Effect`s they return are applied in `apply`.

use std::collections::VecDeque;

use serde_json::json;

use crate::auth::Auth;
use crate::backpressure::Backpressure;
use crate::config::{validate_token, Config, Secret, MAX_ID_BYTES};
use crate::dedupe::DedupeWindow;
use crate::error::{ConfigError, SessionError};
use crate::event::{DropReason, Event, State, Stats};
use crate::feature::{Effect, Effects, SessionFrame, Verdict};
use crate::features::Features;
use crate::heartbeat::{Beat, Heartbeat};
use crate::input::{Input, Outcome, SendRequest};
use crate::outbox::{Delivery, Held, Outbox, OutboxSnapshot};
use crate::output::Output;
use crate::presence::Presence;
use crate::project::{self, OffsetVerdict, Projects};
use crate::ratelimit::RateLimiter;
use crate::reconnect::{Decision, Reconnect};
use crate::rng::Rng;
use crate::router::{Router, SubscriptionId};
use crate::stream::{InterruptError, StreamEvent, Streams};
use crate::timer::{Clock, Deadline, TimerKind, TimerSet, Timestamp};
use crate::trace::{TimedInput, Trace};
use crate::typing::{LocalSend, Typing};
use crate::wire::{self, Envelope, CONTROL_TYPES};

use crate::close::{
    ABANDONED as CLOSE_ABANDONED, ABNORMAL as CLOSE_ABNORMAL, NORMAL as CLOSE_NORMAL,
    NO_STATUS as CLOSE_NO_STATUS, UNAUTHORIZED as CLOSE_UNAUTHORIZED,
};

/// Bound on timer firings in one `handle_timeout` call; each firing moves its deadline past `now`,
/// so this only guards against a bug turning into a hang.
const MAX_FIRINGS: usize = 256;

/// Most projects one session may join.
pub const MAX_PROJECTS: usize = 1024;
/// Most members kept per project's presence list.
const MAX_MEMBERS: usize = 10_000;

/// Where the current transport is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// No transport (or one the session already abandoned).
    Down,
    /// `open_transport` emitted, not yet opened.
    Opening,
    /// Opened; `hello` sent, waiting for `welcome`.
    Handshaking,
    /// Welcomed.
    Up,
}

/// A deterministic, sans-IO WebSocket client session.
#[derive(Debug)]
pub struct Session {
    cfg: Config,
    seed: u64,
    clock: Clock,
    state: State,
    link: Link,
    /// Which of `cfg.endpoints()` the current or last attempt used.
    endpoint: usize,
    timers: TimerSet,
    reconnect: Reconnect,
    heartbeat: Heartbeat,
    outbox: Outbox,
    router: Router,
    /// The hub's session id, presented in the next `hello` to resume it.
    session_id: Option<String>,
    dedupe: DedupeWindow,
    limiter: RateLimiter,
    features: Features,
    id_prefix: String,
    next_msg: u64,
    outputs: VecDeque<Output>,
    stats: Stats,
    recording: Option<Vec<TimedInput>>,
}

impl Session {
    /// Creates an idle session; `seed` fixes every random choice it will make.
    pub fn new(config: Config, seed: u64, now: Timestamp) -> Result<Session, ConfigError> {
        config.validate()?;
        let mut rng = Rng::new(seed);
        // Receivers drop repeats by id whoever sent them, so two sessions must not share a
        // prefix: 64 bits make that unlikely among billions of sessions (32 bits did not, among
        // tens of thousands).
        let id_prefix = format!("{:016x}", rng.next_u64());
        Ok(Session {
            seed,
            clock: Clock::new(now),
            state: State::Idle,
            link: Link::Down,
            endpoint: 0,
            timers: TimerSet::default(),
            // The id prefix is the seed's first draw; every later one is reconnect jitter.
            reconnect: Reconnect::new(config.reconnect.clone(), rng),
            heartbeat: Heartbeat::new(config.heartbeat.clone()),
            outbox: Outbox::new(config.outbox.clone()),
            router: Router::default(),
            session_id: None,
            dedupe: DedupeWindow::new(config.dedupe_window),
            limiter: RateLimiter::new(config.rate_limit, now),
            features: Features {
                backpressure: Backpressure::new(config.max_buffered_bytes, config.write_timeout_ms),
                typing: Typing::new(config.typing.clone()).with_user(config.user_id.clone()),
                projects: Projects::new(MAX_PROJECTS, config.connect_timeout_ms),
                streams: Streams::new(config.streams.clone()),
                presence: Presence::new(MAX_MEMBERS),
                auth: Auth::new(config.token.clone(), config.token_refresh_margin_ms),
            },
            id_prefix,
            next_msg: 0,
            outputs: VecDeque::new(),
            stats: Stats::default(),
            recording: None,
            cfg: config,
        })
    }

    /// Records every input from now on, for `trace()`; call it before the first input so the
    /// trace replays from a fresh session.
    pub fn start_recording(&mut self) {
        self.recording.get_or_insert_with(Vec::new);
    }

    /// The inputs recorded so far as a replayable trace (token redacted), if recording.
    pub fn trace(&self) -> Option<Trace> {
        self.recording.as_ref().map(|inputs| Trace {
            config: self.cfg.clone(),
            seed: self.seed,
            inputs: inputs.clone(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The current connection state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            last_rtt_ms: self.heartbeat.last_rtt_ms(),
            queue_depth: self.outbox.len(),
            queue_bytes: self.outbox.bytes(),
            ..self.stats.clone()
        }
    }

    /// The next output; `Output::Timeout` once there is nothing left to do right now.
    pub fn poll_output(&mut self) -> Output {
        let mut next = None;
        if self.outputs.is_empty() {
            // A timer an input armed for right now (a zero backoff, a zero TTL) fires here, so
            // the deadline this returns is always in the future.
            let now = self.clock.now();
            next = self.run_timers(now, None);
        }
        match self.outputs.pop_front() {
            Some(output) => output,
            None => {
                // Drained: give the queue's memory back, so an idle session holds none of it
                // (a burst reallocates once, not per output).
                if self.outputs.capacity() > 0 {
                    self.outputs = VecDeque::new();
                }
                let next = next.unwrap_or_else(|| self.poll_timeout());
                Output::Timeout(next.map(|d| d.at))
            }
        }
    }

    /// How many outputs are queued (what `poll_output` returns before it gets to `Timeout`).
    pub fn pending_outputs(&self) -> usize {
        self.outputs.len()
    }

    /// When `handle_timeout` is next needed, and for which timer.
    pub fn poll_timeout(&self) -> Option<Deadline> {
        let mut next = self.timers.next();
        let beat = self.heartbeat.next_deadline().map(|(at, dead)| Deadline {
            at,
            timer: if dead {
                TimerKind::HeartbeatTimeout
            } else {
                TimerKind::Heartbeat
            },
        });
        next = Deadline::earliest(next, self.reconnect.next_deadline());
        next = Deadline::earliest(next, beat);
        next = Deadline::earliest(next, self.outbox.next_deadline());
        next = Deadline::earliest(next, self.features.next_deadline());
        if self.state == State::Open && !self.is_blocked() && self.outbox.has_queued() {
            let release = self.limiter.ready_at().map(|at| Deadline {
                at,
                timer: TimerKind::RateLimit,
            });
            next = Deadline::earliest(next, release);
        }
        next
    }

    /// Applies any input in its canonical form.
    pub fn handle_input(&mut self, now: Timestamp, input: Input) -> Result<Outcome, SessionError> {
        match input {
            Input::Connect => self.connect(now).map(|_| Outcome::Done),
            Input::Disconnect => {
                self.disconnect(now);
                Ok(Outcome::Done)
            }
            Input::TransportOpened => {
                self.transport_opened(now);
                Ok(Outcome::Done)
            }
            Input::TransportClosed { code, reason } => {
                self.transport_closed(now, code, &reason);
                Ok(Outcome::Done)
            }
            Input::TransportLost => {
                self.transport_lost(now);
                Ok(Outcome::Done)
            }
            Input::Buffered { bytes } => {
                self.buffered(now, bytes);
                Ok(Outcome::Done)
            }
            Input::TransportError { message } => {
                self.transport_error(now, &message);
                Ok(Outcome::Done)
            }
            Input::Frame { text } => {
                self.frame(now, &text);
                Ok(Outcome::Done)
            }
            Input::BinaryFrame { len } => {
                self.binary_frame(now, len);
                Ok(Outcome::Done)
            }
            Input::Send(req) => self.send(now, req).map(Outcome::Sent),
            Input::Subscribe {
                pattern,
                project_id,
            } => self
                .subscribe(now, &pattern, project_id)
                .map(Outcome::Subscribed),
            Input::Unsubscribe { id } => self.unsubscribe(now, id).map(|_| Outcome::Done),
            Input::Online => {
                self.online(now);
                Ok(Outcome::Done)
            }
            Input::Offline => {
                self.offline(now);
                Ok(Outcome::Done)
            }
            Input::Visible => {
                self.visible(now);
                Ok(Outcome::Done)
            }
            Input::Hidden => {
                self.hidden(now);
                Ok(Outcome::Done)
            }
            Input::StartTyping { project_id } => {
                self.start_typing(now, project_id).map(|_| Outcome::Done)
            }
            Input::StopTyping { project_id } => {
                self.stop_typing(now, project_id).map(|_| Outcome::Done)
            }
            Input::InterruptStream { stream_id } => self
                .interrupt_stream(now, &stream_id)
                .map(|_| Outcome::Done),
            Input::JoinProject { project_id } => {
                self.join_project(now, project_id).map(|_| Outcome::Done)
            }
            Input::LeaveProject { project_id } => {
                self.leave_project(now, project_id);
                Ok(Outcome::Done)
            }
            Input::SetToken { token, expires_at } => self
                .set_token(now, token.expose(), expires_at)
                .map(|_| Outcome::Done),
            Input::RestoreOutbox { snapshot } => self
                .restore_outbox(now, &snapshot.to_string())
                .map(Outcome::Restored),
            Input::Timeout => {
                self.handle_timeout(now);
                Ok(Outcome::Done)
            }
            Input::Suspend { ms } => {
                self.suspend(now, ms);
                Ok(Outcome::Done)
            }
        }
    }

    /// Starts every input: advances the clock, fires whatever fell due before it (a deadline
    /// equal to an input's time fires first, as in a replay), and records the input.
    fn enter(&mut self, now: Timestamp, input: impl FnOnce() -> Input) -> Timestamp {
        let last = self.clock.now();
        let now = self.clock.advance(now);
        // The deadline before this input, when time moved (`run_timers` starts from it).
        let next = (now > last).then(|| self.poll_timeout());
        let late = next.flatten().is_some_and(|d| d.at < now);
        if let (true, Some(rec)) = (late, &mut self.recording) {
            // The driver was late: record the gap as a suspension so a replay fires as late.
            rec.push(TimedInput {
                at: last,
                input: Input::Suspend {
                    ms: now.ms_since(last),
                },
            });
        }
        self.run_timers(now, next);
        if let Some(rec) = &mut self.recording {
            rec.push(TimedInput {
                at: now,
                input: input(),
            });
        }
        now
    }

    /// Fires every timer due at `now`, each once; each firing moves its deadline past `now`.
    /// `known`: `poll_timeout` as it stands now, if the caller has it. Returns the deadline left
    /// when it stopped (`poll_timeout` after the firings), unless it stopped at `MAX_FIRINGS`.
    fn run_timers(
        &mut self,
        now: Timestamp,
        mut known: Option<Option<Deadline>>,
    ) -> Option<Option<Deadline>> {
        for _ in 0..MAX_FIRINGS {
            match known.take().unwrap_or_else(|| self.poll_timeout()) {
                Some(d) if d.at <= now => self.fire(now, d.timer),
                next => return Some(next),
            }
        }
        None
    }

    // ---- user commands -------------------------------------------------------------------

    /// Opens the connection (from `idle`, `closed` or `failed`); while `reconnecting`, opens the
    /// attempt that waits for its backoff or for the network now (a "reconnect now" button).
    pub fn connect(&mut self, now: Timestamp) -> Result<(), SessionError> {
        let now = self.enter(now, || Input::Connect);
        match self.state {
            State::Idle | State::Closed | State::Failed => {
                self.reconnect.restart();
                self.start_attempt(now, 0);
                Ok(())
            }
            State::Reconnecting => {
                if let Some(decision) = self.reconnect.on_retry_now() {
                    self.reconnect_decided(now, decision, "reconnect requested");
                }
                Ok(())
            }
            state => Err(SessionError::AlreadyActive { state }),
        }
    }

    /// Closes the connection with code 1000; the session never reconnects on its own after this.
    pub fn disconnect(&mut self, now: Timestamp) {
        let now = self.enter(now, || Input::Disconnect);
        if matches!(self.state, State::Closed | State::Closing) {
            return;
        }
        self.reconnect.stop();
        self.timers.clear(TimerKind::ConnectTimeout);
        self.heartbeat.stop();
        if self.link == Link::Opening {
            // Nothing is open yet: abort the attempt and be done, there is no close handshake.
            self.outputs.push_back(Output::CloseTransport {
                code: CLOSE_NORMAL,
                reason: "client closing".into(),
            });
            self.link = Link::Down;
        }
        if self.link == Link::Down {
            self.set_state(State::Closed, "disconnect requested".into());
        } else {
            self.outputs.push_back(Output::CloseTransport {
                code: CLOSE_NORMAL,
                reason: "client closing".into(),
            });
            self.timers.set(
                TimerKind::CloseTimeout,
                now.add_ms(self.cfg.close_timeout_ms),
            );
            self.set_state(State::Closing, "disconnect requested".into());
        }
    }

    /// Sends (or queues) an application message; returns its id.
    pub fn send(&mut self, now: Timestamp, req: SendRequest) -> Result<String, SessionError> {
        let now = self.enter(now, || Input::Send(req.clone()));
        self.submit(now, req)
    }

    /// The send path shared by the user and the feature modules (which must not be recorded twice).
    fn submit(&mut self, now: Timestamp, req: SendRequest) -> Result<String, SessionError> {
        if !wire::is_valid_type(&req.msg_type) {
            let mut t = req.msg_type;
            wire::truncate_utf8(&mut t, 80);
            return Err(SessionError::InvalidType(t));
        }
        if CONTROL_TYPES.contains(&req.msg_type.as_str()) {
            return Err(SessionError::ReservedType(req.msg_type));
        }
        check_key("id", req.id.as_deref())?;
        check_key("coalesce", req.coalesce.as_deref())?;
        let id = match req.id {
            Some(id) => id,
            None => {
                self.next_msg += 1;
                format!("{}-{}", self.id_prefix, self.next_msg)
            }
        };
        if self.outbox.holds(&id) {
            return Err(SessionError::DuplicateId(id));
        }
        let timestamp = req.unix_ms.map(wire::rfc3339_ms);
        let text = wire::Outbound {
            msg_type: &req.msg_type,
            data: &req.data,
            timestamp: timestamp.as_deref(),
            id: &id,
            project_id: req.project_id,
        }
        .encode();
        if text.len() > self.cfg.max_frame_bytes {
            return Err(SessionError::TooLarge {
                bytes: text.len(),
                max: self.cfg.max_frame_bytes,
            });
        }
        let held = Held {
            id: id.clone(),
            msg_type: req.msg_type,
            text,
            delivery: req.delivery,
            expires_at: req.ttl_ms.map(|ttl| now.add_ms(ttl)),
            coalesce: req.coalesce,
            sent: false,
        };
        let open = self.state == State::Open;
        if held.delivery == Delivery::Volatile && !open {
            self.dropped(&held, DropReason::NotConnected);
            return Ok(id);
        }
        if held.delivery == Delivery::Volatile && self.is_blocked() {
            self.dropped(&held, DropReason::Backpressure);
            return Ok(id);
        }
        if open
            && !self.is_blocked()
            && held.delivery != Delivery::AtLeastOnce
            && !self.outbox.has_queued()
            && self.limiter.try_acquire(now)
        {
            self.stats.messages_sent += 1;
            self.transmit(held.text);
            return Ok(id);
        }
        for (h, reason) in self.outbox.push(held)? {
            self.dropped(&h, reason);
        }
        self.flush(now);
        Ok(id)
    }

    /// Subscribes to messages matching `pattern`, optionally only for one project.
    pub fn subscribe(
        &mut self,
        now: Timestamp,
        pattern: &str,
        project_id: Option<u64>,
    ) -> Result<SubscriptionId, SessionError> {
        self.enter(now, || Input::Subscribe {
            pattern: pattern.to_string(),
            project_id,
        });
        self.router.subscribe(pattern, project_id)
    }

    /// Removes a subscription.
    pub fn unsubscribe(&mut self, now: Timestamp, id: SubscriptionId) -> Result<(), SessionError> {
        self.enter(now, || Input::Unsubscribe { id });
        self.router.unsubscribe(id)
    }

    /// Number of live subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.router.len()
    }

    /// The local user is typing in `project_id`: sends `user_typing_start`, throttled.
    pub fn start_typing(&mut self, now: Timestamp, project_id: u64) -> Result<(), SessionError> {
        let now = self.enter(now, || Input::StartTyping { project_id });
        if self.cfg.user_id.is_none() {
            return Err(SessionError::NoUserId);
        }
        // Typing state is only meaningful to peers while connected; it is never queued.
        if self.state == State::Open {
            if let Some(send) = self.features.typing.start_typing(now, project_id) {
                self.send_typing(now, send);
            }
        }
        Ok(())
    }

    /// The local user stopped typing in `project_id`: sends `user_typing_stop` once.
    pub fn stop_typing(&mut self, now: Timestamp, project_id: u64) -> Result<(), SessionError> {
        let now = self.enter(now, || Input::StopTyping { project_id });
        if self.cfg.user_id.is_none() {
            return Err(SessionError::NoUserId);
        }
        if let Some(send) = self.features.typing.stop_typing(now, project_id) {
            self.send_typing(now, send);
        }
        Ok(())
    }

    /// Users typing in `project_id` right now, sorted.
    pub fn typing_users(&self, project_id: u64) -> Vec<String> {
        self.features.typing.users(project_id)
    }

    /// Stops an agent stream: sends `agent_stream_interrupt`; later chunks are ignored.
    pub fn interrupt_stream(
        &mut self,
        now: Timestamp,
        stream_id: &str,
    ) -> Result<(), SessionError> {
        let now = self.enter(now, || Input::InterruptStream {
            stream_id: stream_id.to_string(),
        });
        match self.features.streams.interrupt(stream_id) {
            Ok(events) => {
                self.emit_all(events);
                let req =
                    SendRequest::new("agent_stream_interrupt", json!({ "streamId": stream_id }));
                self.submit(now, req).map(|_| ())
            }
            Err(InterruptError::Unknown) => Err(SessionError::UnknownStream(short(stream_id))),
            Err(InterruptError::Finished) => Err(SessionError::StreamFinished(short(stream_id))),
        }
    }

    /// The state of an agent stream (`started` or `delta` while it streams).
    pub fn stream_state(&self, stream_id: &str) -> Option<crate::event::StreamState> {
        self.features.streams.state(stream_id)
    }

    /// The text of an agent stream so far.
    pub fn stream_content(&self, stream_id: &str) -> Option<&str> {
        self.features.streams.content(stream_id)
    }

    /// Joins a project: `project_subscribe` now if open, and again after every reconnect.
    pub fn join_project(&mut self, now: Timestamp, project_id: u64) -> Result<(), SessionError> {
        let now = self.enter(now, || Input::JoinProject { project_id });
        let new = self
            .features
            .projects
            .join(project_id)
            .map_err(|_| SessionError::TooManyProjects { max: MAX_PROJECTS })?;
        if new && self.state == State::Open {
            let frame = self.features.projects.subscribe(project_id, now);
            self.send_session_frame(now, frame);
        }
        Ok(())
    }

    /// Leaves a project (no-op if not joined).
    pub fn leave_project(&mut self, now: Timestamp, project_id: u64) {
        let now = self.enter(now, || Input::LeaveProject { project_id });
        if !self.features.projects.leave(project_id) {
            return;
        }
        if let Some(change) = self.features.presence.forget(project_id) {
            self.emit(change.into());
        }
        if self.state == State::Open {
            self.send_session_frame(now, project::unsubscribe_frame(project_id));
        }
    }

    /// The last version applied for a joined project.
    pub fn project_version(&self, project_id: u64) -> Option<u64> {
        self.features.projects.version(project_id)
    }

    /// Members present in a joined project, sorted.
    pub fn presence(&self, project_id: u64) -> Vec<String> {
        self.features.presence.members(project_id)
    }

    /// Replaces the token; reconnects at once if the session was waiting for one.
    pub fn set_token(
        &mut self,
        now: Timestamp,
        token: &str,
        expires_at: Option<Timestamp>,
    ) -> Result<(), SessionError> {
        let now = self.enter(now, || Input::SetToken {
            token: Secret::new(token),
            expires_at,
        });
        validate_token(token).map_err(SessionError::InvalidToken)?;
        self.features.auth.set(Secret::new(token), expires_at);
        if self.link == Link::Up {
            // The open connection keeps going on the new token (the hub closes it when the old
            // one runs out otherwise); a later hello carries it anyway.
            let auth = wire::AuthData {
                token: token.to_string(),
            };
            self.transmit(wire::encode_control("auth", &auth));
        }
        if self.state == State::Unauthorized {
            self.reconnect.reset_attempts();
            self.stats.reconnects += 1;
            self.start_attempt(now, 0);
        }
        Ok(())
    }

    /// The queued and unacknowledged messages as canonical JSON, to survive a reload or restart.
    pub fn snapshot_outbox(&self) -> String {
        serde_json::to_string(&self.outbox.snapshot(self.clock.now())).unwrap_or_default()
    }

    /// Puts back messages from `snapshot_outbox` (ids kept); all or nothing. Returns how many.
    pub fn restore_outbox(
        &mut self,
        now: Timestamp,
        snapshot: &str,
    ) -> Result<usize, SessionError> {
        let now = self.enter(now, || Input::RestoreOutbox {
            snapshot: serde_json::from_str(snapshot).unwrap_or(serde_json::Value::Null),
        });
        // A snapshot can never legitimately exceed what the outbox holds, plus JSON escaping.
        let max_len = self
            .cfg
            .outbox
            .max_bytes
            .saturating_mul(2)
            .saturating_add(64 * 1024);
        if snapshot.len() > max_len {
            return Err(SessionError::InvalidSnapshot(format!(
                "{} bytes is larger than any snapshot of this outbox ({max_len})",
                snapshot.len()
            )));
        }
        let snap: OutboxSnapshot = serde_json::from_str(snapshot)
            .map_err(|e| SessionError::InvalidSnapshot(e.to_string()))?;
        let n = self
            .outbox
            .restore(snap, now, self.cfg.max_frame_bytes)
            .map_err(SessionError::InvalidSnapshot)?;
        self.flush(now);
        Ok(n)
    }

    // ---- host inputs ---------------------------------------------------------------------

    /// The host regained connectivity: a waiting reconnect starts at once.
    pub fn online(&mut self, now: Timestamp) {
        let now = self.enter(now, || Input::Online);
        let reconnecting = self.state == State::Reconnecting;
        if let Some(decision) = self.reconnect.on_online(reconnecting) {
            self.reconnect_decided(now, decision, "network back");
        }
    }

    /// The host lost connectivity: pause reconnecting, and probe an open link at once.
    pub fn offline(&mut self, now: Timestamp) {
        let now = self.enter(now, || Input::Offline);
        self.reconnect.on_offline(self.state == State::Reconnecting);
        if self.state == State::Open {
            self.probe(now);
        }
    }

    /// The page became visible: timers may have been throttled, so probe an open link; a
    /// reconnect waiting for its backoff starts at once.
    pub fn visible(&mut self, now: Timestamp) {
        let now = self.enter(now, || Input::Visible);
        if self.state == State::Open {
            self.probe(now);
        }
        let reconnecting = self.state == State::Reconnecting;
        if let Some(decision) = self.reconnect.on_visible(reconnecting) {
            self.reconnect_decided(now, decision, "page visible");
        }
    }

    /// The page was hidden (recorded; no action: suspension is detected from late deadlines).
    pub fn hidden(&mut self, now: Timestamp) {
        self.enter(now, || Input::Hidden);
    }

    /// Moves the clock forward `ms` without firing the deadlines in between (a sleeping host).
    pub fn suspend(&mut self, now: Timestamp, ms: u64) {
        let now = self.enter(now, || Input::Suspend { ms });
        self.clock.advance(now.add_ms(ms));
    }

    // ---- transport inputs ----------------------------------------------------------------

    /// The transport opened: send `hello`.
    pub fn transport_opened(&mut self, now: Timestamp) {
        self.enter(now, || Input::TransportOpened);
        if self.link != Link::Opening || self.state != State::Connecting {
            return;
        }
        self.link = Link::Handshaking;
        let hello = wire::Hello {
            protocol: wire::PROTOCOL_VERSION,
            session_id: self.session_id.clone(),
            token: self.features.auth.token().map(|t| t.expose().to_string()),
            user_id: self.cfg.user_id.clone(),
        };
        self.transmit(wire::encode_control("hello", &hello));
    }

    /// A close frame arrived with `code` (`None`: a frame without one, named 1005) and `reason`.
    pub fn transport_closed(&mut self, now: Timestamp, code: impl Into<Option<u16>>, reason: &str) {
        let code = code.into();
        let now = self.enter(now, || Input::TransportClosed {
            code,
            reason: reason.to_string(),
        });
        if self.link == Link::Down {
            return;
        }
        if code == Some(CLOSE_ABNORMAL) {
            // 1006 is never sent in a close frame: a driver reporting it (a browser's
            // `CloseEvent` does) saw the transport end without one, so it is named as lost.
            self.link_lost(now);
            return;
        }
        self.reconnect.on_close_reason(reason);
        let code = code.unwrap_or(CLOSE_NO_STATUS);
        let why = if reason.is_empty() {
            format!("closed by peer ({code})")
        } else {
            format!("closed by peer ({code}: {})", short(reason))
        };
        self.lose_transport(now, Some(code), why);
    }

    /// The transport ended without any close frame (EOF or reset), named 1006.
    pub fn transport_lost(&mut self, now: Timestamp) {
        let now = self.enter(now, || Input::TransportLost);
        if self.link != Link::Down {
            self.link_lost(now);
        }
    }

    /// The transport ended without a close frame, however the driver reported it.
    fn link_lost(&mut self, now: Timestamp) {
        self.lose_transport(
            now,
            Some(CLOSE_ABNORMAL),
            format!("connection lost ({CLOSE_ABNORMAL})"),
        );
    }

    /// Whether the driver should feed `buffered(bytes)` now: `bytes` unsent crosses
    /// `max_buffered_bytes` the other way from what the session last heard on a live transport.
    pub fn should_report_buffered(&self, bytes: u64) -> bool {
        matches!(self.link, Link::Handshaking | Link::Up)
            && self.features.backpressure.would_change(bytes)
    }

    /// Whether the current transport is blocked (the peer is not reading what is sent).
    pub fn is_blocked(&self) -> bool {
        self.features.backpressure.is_blocked()
    }

    /// The driver holds `bytes` of transmitted frames unsent: above `max_buffered_bytes` the
    /// transport is blocked (application messages wait in the outbox, volatile ones are
    /// dropped, `write_timeout_ms` later it is abandoned); at or below it, it is unblocked.
    pub fn buffered(&mut self, now: Timestamp, bytes: u64) {
        let now = self.enter(now, || Input::Buffered { bytes });
        if !matches!(self.link, Link::Handshaking | Link::Up) {
            return;
        }
        let Some(blocked) = self.features.backpressure.on_buffered(now, bytes) else {
            return;
        };
        self.emit(Event::Backpressure {
            blocked,
            buffered_bytes: bytes,
        });
        if !blocked {
            // What the outbox held back goes out now.
            self.flush(now);
        }
    }

    /// The transport failed: the session abandons it.
    pub fn transport_error(&mut self, now: Timestamp, message: &str) {
        let now = self.enter(now, || Input::TransportError {
            message: message.to_string(),
        });
        if self.link == Link::Down {
            return;
        }
        self.abandon(
            now,
            "transport error",
            format!("transport error: {}", short(message)),
        );
    }

    /// A text frame arrived.
    pub fn frame(&mut self, now: Timestamp, text: &str) {
        let now = self.enter(now, || Input::Frame {
            text: text.to_string(),
        });
        if !matches!(self.link, Link::Handshaking | Link::Up) || self.state == State::Closing {
            return;
        }
        self.stats.frames_in += 1;
        self.stats.bytes_in = self.stats.bytes_in.saturating_add(text.len() as u64);
        self.heartbeat.on_inbound();
        self.reconnect.on_inbound();
        match wire::decode(text, self.cfg.max_frame_bytes, self.cfg.max_json_depth) {
            Ok(env) => self.dispatch(now, env),
            Err(e) => self.protocol_error(e.to_string()),
        }
    }

    /// A binary frame arrived; protocol v1 has none, so it is reported and dropped.
    pub fn binary_frame(&mut self, now: Timestamp, len: usize) {
        self.enter(now, || Input::BinaryFrame { len });
        if !matches!(self.link, Link::Handshaking | Link::Up) || self.state == State::Closing {
            return;
        }
        self.stats.frames_in += 1;
        self.stats.bytes_in = self.stats.bytes_in.saturating_add(len as u64);
        self.heartbeat.on_inbound();
        self.reconnect.on_inbound();
        self.protocol_error(wire::WireError::Binary { len }.to_string());
    }

    // ---- time ----------------------------------------------------------------------------

    /// Fires every timer due at `now` (each once, however late), leaving the next deadline after `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.enter(now, || Input::Timeout);
    }

    /// Handles one timer that `poll_timeout` named as due.
    fn fire(&mut self, now: Timestamp, timer: TimerKind) {
        match timer {
            TimerKind::ConnectTimeout => {
                let late = self.timers.at(timer).is_some_and(|at| {
                    at <= now && now.ms_since(at) > self.cfg.heartbeat.suspend_detect_ms
                });
                if late {
                    // The deadline passed while the host was suspended (a frozen tab, a sleeping
                    // laptop): the transport may have opened meanwhile, its news not delivered
                    // yet. A fresh window, as the heartbeat probes, instead of a false death.
                    let again = now.add_ms(self.cfg.connect_timeout_ms);
                    self.timers.set(timer, again);
                } else if self.timers.take_due(timer, now) {
                    self.abandon(now, "connect timeout", "connect timeout".into());
                }
            }
            TimerKind::CloseTimeout => {
                if self.timers.take_due(timer, now) {
                    self.forget_transport(now);
                    self.set_state(State::Closed, "close timed out".into());
                }
            }
            TimerKind::Backoff | TimerKind::Stable => {
                if let Some(decision) = self.reconnect.on_timer(now, timer) {
                    self.reconnect_decided(now, decision, "backoff over");
                }
            }
            TimerKind::Heartbeat | TimerKind::HeartbeatTimeout => {
                match self.heartbeat.on_timeout(now) {
                    Beat::Idle => {}
                    Beat::Ping(nonce) | Beat::Probe(nonce) => self.send_ping(nonce),
                    Beat::Dead => {
                        self.abandon(now, "heartbeat timeout", "heartbeat timeout".into())
                    }
                }
            }
            TimerKind::OutboxExpiry => {
                for h in self.outbox.expire(now) {
                    self.dropped(&h, DropReason::Expired);
                }
            }
            TimerKind::AckTimeout => {
                for id in self.outbox.ack_timeouts(now) {
                    self.emit(Event::AckTimeout { id });
                }
            }
            TimerKind::RateLimit => self.flush(now),
            // The rest belong to the feature modules, each of which names its own timer.
            feature_timer => {
                let fx = self.features.on_timer(now, feature_timer);
                self.apply(now, fx);
            }
        }
    }

    // ---- inbound -------------------------------------------------------------------------

    /// Routes a decoded frame: control messages here, application messages to `on_app_message`.
    fn dispatch(&mut self, now: Timestamp, env: Envelope) {
        match env.msg_type.as_str() {
            "welcome" => self.on_welcome(now, &env),
            "pong" => {
                if let Some(nonce) = env
                    .data_as::<wire::Nonce>()
                    .ok()
                    .and_then(|n| n.nonce.as_u64())
                {
                    self.heartbeat.on_pong(nonce, now);
                }
            }
            "token_expiring" => match env.data_as::<wire::TokenExpiring>() {
                // The hub's clock says when: the app's refresh flow (`set_token`) applies, and
                // an open link sends the new token in band.
                Ok(t) => self.emit(Event::TokenRefreshDue {
                    expires_at: now.add_ms(t.expires_in_ms),
                }),
                Err(e) => self.protocol_error(format!("invalid token_expiring: {e}")),
            },
            "ping" => {
                let pong = wire::encode_control("pong", &env.data);
                self.transmit(pong);
            }
            "ack" => match env.data_as::<wire::Ack>() {
                Ok(ack) => {
                    if let Some(h) = self.outbox.ack(&ack.id) {
                        self.stats.acked += 1;
                        self.emit(Event::Acked { id: h.id });
                    }
                    // The client's own project message took this place in the log: the position
                    // moves past it as if it had come back (the hub does not echo it).
                    if let (Some(p), Some(epoch), Some(offset)) =
                        (ack.project_id, ack.epoch.as_deref(), ack.offset)
                    {
                        self.sequence(now, p, epoch, offset);
                    }
                }
                Err(e) => self.protocol_error(format!("invalid ack: {e}")),
            },
            "error" => self.on_server_error(now, &env),
            "hello" => self.protocol_error("unexpected hello from server".into()),
            _ if self.link != Link::Up => {
                self.protocol_error(format!("`{}` before welcome", env.msg_type))
            }
            _ => self.on_app_message(now, env),
        }
    }

    /// The handshake finished: the session is open and re-sends what the new link needs.
    fn on_welcome(&mut self, now: Timestamp, env: &Envelope) {
        if self.link != Link::Handshaking {
            self.protocol_error("unexpected welcome".into());
            return;
        }
        let welcome = match env.data_as::<wire::Welcome>() {
            Ok(w) => w,
            Err(e) => {
                self.protocol_error(format!("invalid welcome: {e}"));
                return;
            }
        };
        self.timers.clear(TimerKind::ConnectTimeout);
        self.link = Link::Up;
        self.session_id = Some(welcome.session_id.clone());
        let reason = if welcome.resumed {
            "session resumed"
        } else {
            "welcomed"
        };
        self.set_state(State::Open, reason.into());
        self.emit(Event::Ready {
            session_id: welcome.session_id,
            resumed: welcome.resumed,
        });
        self.heartbeat.start(now);
        self.reconnect.on_welcome(now);
        // Order after welcome: the features' re-sends (project re-joins, stream resumes),
        // at-least-once resends, the rest.
        let fx = self.features.on_welcome(now);
        self.apply(now, fx);
        self.outbox.requeue_inflight();
        self.flush(now);
    }

    /// A server `error`: reported, and acted on for `rate_limited`, `unavailable`,
    /// `unauthorized` and hints.
    fn on_server_error(&mut self, now: Timestamp, env: &Envelope) {
        let err = match env.data_as::<wire::ErrorData>() {
            Ok(e) => e,
            Err(e) => {
                self.protocol_error(format!("invalid error message: {e}"));
                return;
            }
        };
        self.emit(Event::ServerError {
            code: err.code.clone(),
            message: err.message.clone(),
            retry_after_ms: err.retry_after_ms,
            id: err.id.clone(),
        });
        // Refused for now, not for good: the message stays and goes again after the pause.
        let retry_later = matches!(err.code.as_str(), "rate_limited" | "unavailable");
        let rejected = err.id.as_deref().filter(|_| !retry_later);
        if let Some(held) = rejected.and_then(|id| self.outbox.reject(id)) {
            self.stats.dropped += 1;
            self.emit(Event::Dropped {
                id: held.id,
                msg_type: held.msg_type,
                reason: DropReason::Rejected,
            });
        }
        match err.code.as_str() {
            // A refused join is not asked again (on a timer or after a reconnect): the project
            // is left, and the app hears why (`server_error`).
            "forbidden" | "too_many_projects" if env.project_id.is_some() => {
                if let Some(p) = env.project_id {
                    self.features.projects.leave(p);
                }
            }
            "rate_limited" | "unavailable" => {
                let pause = err
                    .retry_after_ms
                    .unwrap_or(1_000)
                    .min(self.cfg.reconnect.max_hint_ms);
                self.limiter.pause_until(now.add_ms(pause));
                // The hub applied nothing over its rate (or logged nothing without its broker):
                // what awaits an ack goes again after the pause (it deduplicates by id what it
                // did apply).
                self.outbox.requeue_inflight();
            }
            "unauthorized" => {
                self.outputs.push_back(Output::CloseTransport {
                    code: CLOSE_NORMAL,
                    reason: "unauthorized".into(),
                });
                self.lose_transport(
                    now,
                    Some(CLOSE_UNAUTHORIZED),
                    format!("unauthorized: {}", short(&err.message)),
                );
            }
            _ => {
                if let Some(ms) = err.retry_after_ms {
                    self.reconnect.on_server_hint(ms);
                }
            }
        }
    }

    /// An application message: position and id checks, the features, then delivery.
    fn on_app_message(&mut self, now: Timestamp, env: Envelope) {
        if let (Some(p), Some(epoch), Some(offset)) =
            (env.project_id, env.epoch.as_deref(), env.offset)
        {
            if !self.sequence(now, p, epoch, offset) {
                return;
            }
        } else if let Some(id) = &env.id {
            // Only messages without a log position are deduplicated by id: a logged one already
            // is, by its offset, and ids are unique per sender only, so two senders' messages
            // relayed by a hub may share one.
            if !self.dedupe.insert(id) {
                self.stats.duplicates += 1;
                return;
            }
        }
        if self.apply_features(now, &env) {
            self.deliver(env);
        }
    }

    /// Checks a project message's log position (inbound, or acked for the client's own); true
    /// if it is the next one, or untracked, and may be delivered.
    fn sequence(&mut self, now: Timestamp, project_id: u64, epoch: &str, offset: u64) -> bool {
        match self.features.projects.on_offset(project_id, epoch, offset) {
            OffsetVerdict::Next | OffsetVerdict::Untracked => true,
            OffsetVerdict::Joining => false,
            OffsetVerdict::Duplicate => {
                self.stats.duplicates += 1;
                false
            }
            OffsetVerdict::Gap { from, to } => {
                self.emit(Event::Gap {
                    project_id,
                    from,
                    to,
                });
                let frame = self.features.projects.subscribe(project_id, now);
                self.send_session_frame(now, frame);
                false
            }
        }
    }

    /// Lets the feature modules see a message; false if it must be withheld (stale or duplicate).
    fn apply_features(&mut self, now: Timestamp, env: &Envelope) -> bool {
        let (verdict, fx) = self.features.on_message(now, env);
        self.apply(now, fx);
        verdict == Verdict::Deliver
    }

    /// Carries out what the feature modules asked for, in order.
    fn apply(&mut self, now: Timestamp, fx: Effects) {
        for effect in fx {
            match effect {
                Effect::Emit(event) => self.emit(event),
                Effect::Volatile(req) => {
                    if self.state == State::Open {
                        // Best effort: a full outbox under `reject` just loses this message.
                        let _ = self.submit(now, req);
                    }
                }
                Effect::Send(frame) => self.send_session_frame(now, frame),
                Effect::Queue(frame) => {
                    let held = self.session_frame(frame);
                    self.outbox.push_session(held);
                }
                Effect::Duplicate => self.stats.duplicates += 1,
                Effect::Stale => self.stats.stale_versions += 1,
                Effect::ProtocolError(reason) => self.protocol_error(reason),
                Effect::Abandon { close_reason, why } => self.abandon(now, close_reason, why),
            }
        }
    }

    /// Hands a message to the subscriptions it matches (counted as unrouted if none).
    fn deliver(&mut self, env: Envelope) {
        let subscriptions = self.router.route(&env);
        if subscriptions.is_empty() {
            self.stats.messages_unrouted += 1;
        } else {
            self.stats.messages_delivered += 1;
            self.emit(Event::Message {
                subscriptions,
                message: env,
            });
        }
    }

    // ---- lifecycle -----------------------------------------------------------------------

    /// Opens connection attempt `attempt` (0 = the initial connect).
    fn start_attempt(&mut self, now: Timestamp, attempt: u32) {
        self.reconnect.on_attempt();
        if attempt > 0 {
            self.stats.reconnects += 1;
        }
        self.link = Link::Opening;
        let endpoints = self.cfg.endpoints();
        // Every reconnect follows a failed attempt or a lost link: try the next hub. A fresh
        // connect stays on the last one used, which is the likeliest to be up.
        if attempt > 0 {
            self.endpoint = (self.endpoint + 1) % endpoints.len();
        }
        let url = endpoints[self.endpoint % endpoints.len()].to_string();
        self.outputs
            .push_back(Output::OpenTransport { url, attempt });
        self.timers.set(
            TimerKind::ConnectTimeout,
            now.add_ms(self.cfg.connect_timeout_ms),
        );
        let reason = if attempt == 0 {
            "connect requested".to_string()
        } else {
            format!("reconnect attempt {attempt}")
        };
        self.set_state(State::Connecting, reason);
    }

    /// The session ends the transport itself and moves on in the same call.
    fn abandon(&mut self, now: Timestamp, close_reason: &str, why: String) {
        self.outputs.push_back(Output::CloseTransport {
            code: CLOSE_ABANDONED,
            reason: close_reason.into(),
        });
        self.lose_transport(now, None, why);
    }

    /// The transport is gone (`code`: its close code): close, wait or reconnect as decided.
    fn lose_transport(&mut self, now: Timestamp, code: Option<u16>, why: String) {
        self.forget_transport(now);
        if self.state == State::Closing {
            self.timers.clear(TimerKind::CloseTimeout);
            self.set_state(State::Closed, "closed by client".into());
            return;
        }
        let decision = self
            .reconnect
            .on_link_lost(now, code, &self.cfg.fatal_close_codes);
        self.reconnect_decided(now, decision, &why);
    }

    /// Whatever way a transport ends, what belonged to it goes with it.
    fn forget_transport(&mut self, now: Timestamp) {
        self.link = Link::Down;
        self.heartbeat.stop();
        self.timers.clear(TimerKind::ConnectTimeout);
        self.reconnect.on_link_down();
        for h in self.outbox.on_disconnect() {
            self.dropped(&h, DropReason::Disconnected);
        }
        let fx = self.features.on_link_down();
        self.apply(now, fx);
    }

    /// Turns a reconnect decision into state changes and events; `why` names what led to it.
    fn reconnect_decided(&mut self, now: Timestamp, decision: Decision, why: &str) {
        match decision {
            Decision::Retry { attempt, delay_ms } => {
                self.set_state_attempt(State::Reconnecting, why.to_string(), attempt);
                self.emit(Event::ReconnectScheduled { attempt, delay_ms });
            }
            Decision::Open { attempt, announce } => {
                if announce {
                    self.emit(Event::ReconnectScheduled {
                        attempt,
                        delay_ms: 0,
                    });
                }
                self.start_attempt(now, attempt);
            }
            Decision::WaitForNetwork => self.set_state(
                State::Reconnecting,
                format!("{why}; waiting for the network"),
            ),
            Decision::Unauthorized => {
                self.set_state(State::Unauthorized, why.to_string());
                self.emit(Event::TokenRequired {
                    reason: why.to_string(),
                });
            }
            Decision::Fatal => self.set_state(State::Failed, format!("fatal close: {why}")),
            Decision::GiveUp { attempts } => self.set_state(
                State::Failed,
                format!("gave up after {attempts} reconnect attempts: {why}"),
            ),
        }
    }

    /// Moves to `to`, reporting the current attempt.
    fn set_state(&mut self, to: State, reason: String) {
        let attempt = self.reconnect.attempt();
        self.set_state_attempt(to, reason, attempt);
    }

    /// Moves to `to` with a `status` event, unless already there.
    fn set_state_attempt(&mut self, to: State, reason: String, attempt: u32) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.emit(Event::Status {
            from,
            to,
            reason,
            attempt,
        });
    }

    // ---- outbound ------------------------------------------------------------------------

    /// Transmits whatever the outbox and rate limiter allow, in lane then FIFO order.
    fn flush(&mut self, now: Timestamp) {
        if self.state != State::Open || self.is_blocked() {
            return;
        }
        for h in self.outbox.expire(now) {
            self.dropped(&h, DropReason::Expired);
        }
        while self.outbox.has_queued() && self.limiter.try_acquire(now) {
            let Some((key, held)) = self.outbox.pop_front() else {
                break;
            };
            if held.sent {
                self.stats.resent += 1;
            } else {
                self.stats.messages_sent += 1;
            }
            self.transmit(held.text.clone());
            if held.delivery == Delivery::AtLeastOnce {
                let due = now.add_ms(self.cfg.outbox.ack_timeout_ms);
                self.outbox.hold_for_ack(key, held, due);
            }
        }
    }

    /// Encodes a frame the session derives from its own state (re-joins, resumes, sync requests).
    fn session_frame(&mut self, frame: SessionFrame) -> Held {
        self.next_msg += 1;
        let id = format!("{}-{}", self.id_prefix, self.next_msg);
        let text = wire::Outbound {
            msg_type: frame.msg_type,
            data: &frame.data,
            timestamp: None,
            id: &id,
            project_id: frame.project_id,
        }
        .encode();
        Held {
            id,
            msg_type: frame.msg_type.to_string(),
            text,
            delivery: Delivery::AtMostOnce,
            expires_at: None,
            coalesce: None,
            sent: false,
        }
    }

    /// Sends a session frame now if nothing waits and the rate allows, else queues it ahead of app messages.
    fn send_session_frame(&mut self, now: Timestamp, frame: SessionFrame) {
        let held = self.session_frame(frame);
        if self.state == State::Open
            && !self.is_blocked()
            && !self.outbox.has_queued()
            && self.limiter.try_acquire(now)
        {
            self.transmit(held.text);
        } else if self.state == State::Open {
            self.outbox.push_session(held);
        }
    }

    /// Sends a local typing signal (only while open, like every volatile message of a feature).
    fn send_typing(&mut self, now: Timestamp, send: LocalSend) {
        let mut fx = Effects::new();
        self.features.typing.signal(send, &mut fx);
        self.apply(now, fx);
    }

    /// Emits a stream's events.
    fn emit_all(&mut self, events: Vec<StreamEvent>) {
        for e in events {
            self.emit(e.into());
        }
    }

    /// Pings at once to check an open link (after offline, visible or a suspension).
    fn probe(&mut self, now: Timestamp) {
        if let Some(nonce) = self.heartbeat.probe(now) {
            self.send_ping(nonce);
        }
    }

    /// Transmits a `ping` with `nonce`.
    fn send_ping(&mut self, nonce: u64) {
        let ping = wire::encode_control(
            "ping",
            &wire::Nonce {
                nonce: nonce.into(),
            },
        );
        self.transmit(ping);
    }

    /// Emits a frame to send, counting it.
    fn transmit(&mut self, text: String) {
        self.stats.frames_out += 1;
        self.stats.bytes_out += text.len() as u64;
        self.outputs.push_back(Output::Transmit { text });
    }

    /// Reports a message the session will never send.
    fn dropped(&mut self, held: &Held, reason: DropReason) {
        self.stats.dropped += 1;
        self.emit(Event::Dropped {
            id: held.id.clone(),
            msg_type: held.msg_type.clone(),
            reason,
        });
    }

    /// Reports a frame that broke the protocol (the link stays).
    fn protocol_error(&mut self, reason: String) {
        self.stats.protocol_errors += 1;
        self.emit(Event::ProtocolError { reason });
    }

    /// Emits an event to the application.
    fn emit(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }
}

/// Checks a user-chosen id or coalescing key: not empty, at most `MAX_ID_BYTES`.
fn check_key(what: &'static str, value: Option<&str>) -> Result<(), SessionError> {
    match value {
        Some(v) if v.is_empty() || v.len() > MAX_ID_BYTES => Err(SessionError::InvalidKey {
            what,
            value: v.chars().take(40).collect(),
        }),
        _ => Ok(()),
    }
}

/// Bounds text from the peer before it goes into a reason string.
fn short(s: &str) -> String {
    let mut s = s.to_string();
    wire::truncate_utf8(&mut s, 200);
    s
}
