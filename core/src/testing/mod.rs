//! Deterministic test doubles in virtual time: [`Network`] runs client sessions against the
//! real hub core on in-memory links (with seeded faults and hub restarts); [`Harness`] drives one
//! session against a [`ScriptedServer`] for tests that need to say exactly what the server does.
//! The drivers' own tests use real sockets for what only sockets can show. [`herd`] times the
//! reconnects a hub restart sets off across thousands of sessions.

pub mod herd;
mod network;

pub use network::{ClientId, DriveError, LinkFaults, Network, Watchdog};

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::config::Config;
use crate::error::{ConfigError, SessionError};
use crate::event::{Event, State};
use crate::input::SendRequest;
use crate::output::Output;
use crate::session::Session;
use crate::timer::Timestamp;
use crate::wire::{self, Envelope};

/// How the scripted server answers a new transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accept {
    /// Open it.
    Open,
    /// Close it at once with this code and reason.
    Refuse {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Never answer (the client's connect timeout must fire).
    Hang,
}

/// A scripted protocol-v2 server: welcomes, pongs, acks, logs what it pushes to a project (one
/// epoch, offsets from 1) and replays it to a client that joins again from its position.
#[derive(Clone, Debug)]
pub struct ScriptedServer {
    /// How new transports are answered.
    pub accept: Accept,
    /// Answer `hello` with `welcome`.
    pub auto_welcome: bool,
    /// Answer `ping` with `pong`.
    pub auto_pong: bool,
    /// Ack every application message that carries an id.
    pub auto_ack: bool,
    /// Delay of every frame the server sends.
    pub latency_ms: u64,
    received: Vec<Envelope>,
    sessions: BTreeSet<String>,
    /// Each project's log: its frames with their offsets.
    logs: BTreeMap<u64, Vec<(u64, String)>>,
    /// The logs' epoch (a new one once they are forgotten).
    epoch: u64,
    next_session: u64,
    opens: u32,
}

impl Default for ScriptedServer {
    fn default() -> Self {
        ScriptedServer {
            accept: Accept::Open,
            auto_welcome: true,
            auto_pong: true,
            auto_ack: true,
            latency_ms: 0,
            received: Vec::new(),
            sessions: BTreeSet::new(),
            logs: BTreeMap::new(),
            epoch: 1,
            next_session: 0,
            opens: 0,
        }
    }
}

impl ScriptedServer {
    /// Every frame the client sent, parsed, in order.
    pub fn received(&self) -> &[Envelope] {
        &self.received
    }

    /// Application messages (not control frames) the client sent.
    pub fn received_app(&self) -> Vec<&Envelope> {
        self.received
            .iter()
            .filter(|e| !wire::CONTROL_TYPES.contains(&e.msg_type.as_str()))
            .collect()
    }

    /// How many transports the client asked for.
    pub fn opens(&self) -> u32 {
        self.opens
    }

    /// Forgets every session and project log (as a hub restarted without state): the next
    /// `hello` cannot resume, and the logs start again in a new epoch.
    pub fn forget_sessions(&mut self) {
        self.sessions.clear();
        self.logs.clear();
        self.epoch += 1;
    }

    fn epoch(&self) -> String {
        format!("e{}", self.epoch)
    }

    /// Handles one client frame; returns the frames to send back.
    fn on_client_frame(&mut self, text: &str) -> Vec<String> {
        let Ok(env) = wire::decode(text, usize::MAX, 128) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match env.msg_type.as_str() {
            "hello" if self.auto_welcome => {
                let hello: wire::Hello = env.data_as().unwrap_or_default();
                let resumed = hello
                    .session_id
                    .as_ref()
                    .is_some_and(|s| self.sessions.contains(s));
                let sid = match hello.session_id.filter(|_| resumed) {
                    Some(s) => s,
                    None => {
                        self.next_session += 1;
                        let s = format!("s{}", self.next_session);
                        self.sessions.insert(s.clone());
                        s
                    }
                };
                let welcome = wire::Welcome {
                    session_id: sid,
                    resumed,
                };
                out.push(wire::encode_control("welcome", &welcome));
            }
            "project_subscribe" if self.auto_welcome => {
                if let Some(p) = env.project_id {
                    let since: wire::Subscribe = env.data_as().unwrap_or_default();
                    out.extend(self.joined(p, since));
                }
                if let Some(id) = &env.id {
                    out.push(ack_text(id));
                }
            }
            "ping" if self.auto_pong => out.push(wire::encode_control("pong", &env.data)),
            t if !wire::CONTROL_TYPES.contains(&t) && self.auto_ack => {
                if let Some(id) = &env.id {
                    out.push(ack_text(id));
                }
            }
            _ => {}
        }
        self.received.push(env);
        out
    }

    /// The answer to a `project_subscribe`: the position the client continues from, then what
    /// it missed (every logged message after its position, when its epoch is this one).
    fn joined(&self, project: u64, since: wire::Subscribe) -> Vec<String> {
        let log = self.logs.get(&project);
        let top = log.and_then(|l| l.last()).map_or(0, |(o, _)| *o);
        let epoch = self.epoch();
        let (joined, replay) = match (since.epoch, since.offset) {
            (Some(e), Some(o)) if e == epoch && o <= top => {
                let missed: Vec<String> = log
                    .into_iter()
                    .flatten()
                    .filter(|(offset, _)| *offset > o)
                    .map(|(_, t)| t.clone())
                    .collect();
                let joined = wire::Joined {
                    epoch: e,
                    offset: o,
                    recovered: Some(true),
                    replayed: Some(missed.len() as u64),
                    reason: None,
                };
                (joined, missed)
            }
            (Some(e), Some(_)) => {
                let joined = wire::Joined {
                    epoch: epoch.clone(),
                    offset: top,
                    recovered: Some(false),
                    replayed: None,
                    reason: Some(if e == epoch { "ahead" } else { "epoch_changed" }.into()),
                };
                (joined, Vec::new())
            }
            _ => {
                let joined = wire::Joined {
                    epoch: epoch.clone(),
                    offset: top,
                    recovered: None,
                    replayed: None,
                    reason: None,
                };
                (joined, Vec::new())
            }
        };
        let answer = Envelope::new("project_joined", &joined).in_project(project);
        std::iter::once(answer.to_json()).chain(replay).collect()
    }

    /// Encodes a pushed message; one for a project takes the next offset in its log and is kept
    /// for replay.
    fn stamp(&mut self, msg_type: &str, data: Value, project_id: Option<u64>) -> Option<String> {
        let mut obj = serde_json::json!({ "type": msg_type, "data": data });
        let Some(p) = project_id else {
            return Some(obj.to_string());
        };
        let epoch = self.epoch();
        let log = self.logs.entry(p).or_default();
        let offset = log.last().map_or(1, |(o, _)| o + 1);
        obj["projectId"] = p.into();
        obj["epoch"] = epoch.into();
        obj["offset"] = offset.into();
        let text = obj.to_string();
        log.push((offset, text.clone()));
        Some(text)
    }
}

fn ack_text(id: &str) -> String {
    let ack = wire::Ack {
        id: id.to_string(),
        project_id: None,
        epoch: None,
        offset: None,
    };
    wire::encode_control("ack", &ack)
}

#[derive(Clone, Debug)]
enum Action {
    Opened,
    Closed { code: u16, reason: String },
    Frame(String),
}

/// Drives a `Session` against a `ScriptedServer` on a virtual clock.
#[derive(Debug)]
pub struct Harness {
    /// The session under test.
    pub session: Session,
    /// Its peer.
    pub server: ScriptedServer,
    now: Timestamp,
    log: Vec<(Timestamp, Output)>,
    agenda: BTreeMap<(Timestamp, u64), (u64, Action)>,
    agenda_seq: u64,
    conn: u64,
    link_open: bool,
}

impl Harness {
    /// A harness at time 0 around a new session.
    pub fn new(config: Config, seed: u64) -> Result<Harness, ConfigError> {
        Ok(Harness {
            session: Session::new(config, seed, Timestamp::ZERO)?,
            server: ScriptedServer::default(),
            now: Timestamp::ZERO,
            log: Vec::new(),
            agenda: BTreeMap::new(),
            agenda_seq: 0,
            conn: 0,
            link_open: false,
        })
    }

    /// The virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Every output so far with the time it was produced (timeouts excluded).
    pub fn log(&self) -> &[(Timestamp, Output)] {
        &self.log
    }

    /// Takes the log, leaving it empty.
    pub fn take_log(&mut self) -> Vec<(Timestamp, Output)> {
        std::mem::take(&mut self.log)
    }

    /// Events so far, in order.
    pub fn events(&self) -> Vec<&Event> {
        self.log
            .iter()
            .filter_map(|(_, o)| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    /// Frames the session transmitted so far.
    pub fn transmitted(&self) -> Vec<&str> {
        self.log
            .iter()
            .filter_map(|(_, o)| match o {
                Output::Transmit { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.session.state()
    }

    /// Calls `connect` and processes what follows at this instant.
    pub fn connect(&mut self) -> Result<(), SessionError> {
        let r = self.session.connect(self.now);
        self.settle();
        r
    }

    /// Calls `disconnect`.
    pub fn disconnect(&mut self) {
        self.session.disconnect(self.now);
        self.settle();
    }

    /// Calls `send`.
    pub fn send(&mut self, req: SendRequest) -> Result<String, SessionError> {
        let r = self.session.send(self.now, req);
        self.settle();
        r
    }

    /// Runs any closure against the session at the current time, then processes its outputs.
    pub fn with<R>(&mut self, f: impl FnOnce(&mut Session, Timestamp) -> R) -> R {
        let r = f(&mut self.session, self.now);
        self.settle();
        r
    }

    /// The server pushes an application message (numbered, kept for replay); delivered if connected.
    pub fn push(&mut self, msg_type: &str, data: Value, project_id: Option<u64>) {
        if let Some(text) = self.server.stamp(msg_type, data, project_id) {
            if self.link_open {
                self.schedule(self.server.latency_ms, Action::Frame(text));
            }
        }
        self.settle();
    }

    /// The server sends a raw text frame now.
    pub fn inject(&mut self, text: &str) {
        self.inject_after(0, text);
    }

    /// The server sends a raw text frame `delay_ms` from now (on the current transport only).
    pub fn inject_after(&mut self, delay_ms: u64, text: &str) {
        if self.link_open {
            self.schedule(delay_ms, Action::Frame(text.to_string()));
        }
        self.settle();
    }

    /// The server closes the current transport `delay_ms` from now (the link stays up until then).
    pub fn server_close_after(&mut self, delay_ms: u64, code: u16, reason: &str) {
        if self.link_open {
            self.schedule(
                delay_ms,
                Action::Closed {
                    code,
                    reason: reason.to_string(),
                },
            );
        }
        self.settle();
    }

    /// The server closes the transport with `code` and `reason`.
    pub fn server_close(&mut self, code: u16, reason: &str) {
        if self.link_open {
            self.link_open = false;
            self.schedule(
                0,
                Action::Closed {
                    code,
                    reason: reason.to_string(),
                },
            );
        }
        self.settle();
    }

    /// The host sleeps `ms`: the clock jumps without firing deadlines, then the session wakes.
    pub fn suspend(&mut self, ms: u64) {
        self.session.suspend(self.now, ms);
        self.now = self.now.add_ms(ms);
        self.session.handle_timeout(self.now);
        self.settle();
    }

    /// Advances virtual time by `ms`, delivering frames and firing deadlines as they fall due.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now.add_ms(ms);
        loop {
            let deadline = self.session.poll_timeout().map(|d| d.at);
            let action = self.agenda.keys().next().map(|k| k.0);
            let next = match (deadline, action) {
                (Some(d), Some(a)) => d.min(a),
                (d, a) => match d.or(a) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > target {
                break;
            }
            self.now = self.now.max(next);
            if action.is_some_and(|a| a <= self.now) {
                self.run_agenda();
            } else {
                self.session.handle_timeout(self.now);
                self.settle();
            }
        }
        self.now = target;
    }

    fn schedule(&mut self, delay_ms: u64, action: Action) {
        self.agenda_seq += 1;
        self.agenda.insert(
            (self.now.add_ms(delay_ms), self.agenda_seq),
            (self.conn, action),
        );
    }

    /// Processes outputs and every agenda item due now, until quiet.
    fn settle(&mut self) {
        loop {
            self.pump();
            if self.agenda.keys().next().is_none_or(|k| k.0 > self.now) {
                break;
            }
            self.run_agenda();
        }
    }

    fn run_agenda(&mut self) {
        while let Some(entry) = self.agenda.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let (conn, action) = entry.remove();
            if conn != self.conn {
                continue; // that transport is gone
            }
            match action {
                Action::Opened => {
                    self.link_open = true;
                    self.session.transport_opened(self.now);
                }
                Action::Closed { code, reason } => {
                    self.link_open = false;
                    self.session.transport_closed(self.now, code, &reason);
                }
                Action::Frame(text) => {
                    if self.link_open {
                        self.session.frame(self.now, &text);
                    }
                }
            }
            self.pump();
        }
    }

    fn pump(&mut self) {
        loop {
            let out = self.session.poll_output();
            match &out {
                Output::Timeout(_) => break,
                Output::OpenTransport { .. } => {
                    self.conn += 1;
                    self.link_open = false;
                    self.server.opens += 1;
                    match self.server.accept.clone() {
                        Accept::Open => self.schedule(self.server.latency_ms, Action::Opened),
                        Accept::Refuse { code, reason } => {
                            self.schedule(self.server.latency_ms, Action::Closed { code, reason })
                        }
                        Accept::Hang => {}
                    }
                }
                Output::Transmit { text } => {
                    if self.link_open {
                        for reply in self.server.on_client_frame(text) {
                            self.schedule(self.server.latency_ms, Action::Frame(reply));
                        }
                    }
                }
                Output::CloseTransport { .. } => {
                    // The session abandoned the transport; nothing more is reported about it.
                    self.conn += 1;
                    self.link_open = false;
                }
                Output::Event(_) => {}
            }
            self.log.push((self.now, out));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn got_a_message(h: &Harness) -> bool {
        h.events()
            .iter()
            .any(|e| matches!(e, Event::Message { .. }))
    }

    fn open_harness() -> Harness {
        let mut h = Harness::new(Config::new("ws://scripted.test/ws"), 1).unwrap();
        h.connect().unwrap();
        assert_eq!(h.state(), State::Open);
        h
    }

    #[test]
    fn injected_frames_and_closes_wait_for_their_delay() {
        let mut h = open_harness();
        h.with(|s, now| s.subscribe(now, "note", None)).unwrap();
        h.inject_after(500, r#"{"type":"note","data":1}"#);
        h.advance(499);
        assert!(!got_a_message(&h));
        h.advance(1);
        assert!(got_a_message(&h));

        h.server_close_after(200, 1012, "restart");
        h.advance(199);
        assert_eq!(h.state(), State::Open);
        h.advance(1);
        assert_eq!(h.state(), State::Reconnecting);
    }

    #[test]
    fn a_delayed_frame_for_a_dropped_transport_is_never_delivered() {
        let mut h = open_harness();
        h.with(|s, now| s.subscribe(now, "note", None)).unwrap();
        h.inject_after(500, r#"{"type":"note","data":1}"#);
        h.server_close(1006, "");
        h.advance(10_000);
        assert_eq!(h.state(), State::Open, "reconnected");
        assert!(!got_a_message(&h));
    }
}
