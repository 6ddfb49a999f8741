//! N client sessions and one or more hub nodes (sharing one in-memory broker) on in-memory links,
//! driven together in virtual time: the whole protocol, both halves, with seeded link faults, hub
//! restarts and node failures, in milliseconds of real time and the same way on every run.

use std::collections::{BTreeMap, VecDeque};

use crate::config::Config;
use crate::error::ConfigError;
use crate::event::{Event, State};
use crate::hub::{
    AgentSource, ConnId, HubCore, HubOutput, HubSettings, InMemoryBroker, ScriptedAgent,
};
use crate::output::Output;
use crate::rng::Rng;
use crate::session::Session;
use crate::timer::Timestamp;
use crate::wire::Envelope;

/// Identifies one client session of a [`Network`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub usize);

/// Seeded faults applied to every frame on every link.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkFaults {
    /// Chance (0.0-1.0) that sending a frame cuts its link instead: both ends see it end
    /// without a close frame.
    pub drop: f64,
    /// Up to this much extra delay per frame (order on a link is kept, as TCP keeps it).
    pub delay_ms: u64,
    /// Chance (0.0-1.0) that a frame from the hub arrives broken (not JSON any more).
    pub corrupt: f64,
}

/// Why a bounded drive stopped without its predicate holding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriveError {
    /// Virtual time ran out.
    #[error("predicate still false after {max_ms} ms of virtual time (now {now})")]
    Timeout {
        /// The bound.
        max_ms: u64,
        /// Where time stopped.
        now: Timestamp,
    },
    /// Work kept coming without virtual time moving: a livelock.
    #[error("livelock: {steps} steps at {now} without time moving")]
    Livelock {
        /// Steps taken at that instant.
        steps: usize,
        /// The instant.
        now: Timestamp,
    },
}

/// Steps allowed at one instant before the drive calls it a livelock.
const MAX_STEPS_PER_INSTANT: usize = 100_000;

/// Counts the steps a drive takes at one virtual instant: work that keeps coming while time
/// stands still is a livelock, reported rather than spun on.
#[derive(Debug)]
pub struct Watchdog {
    at: Timestamp,
    steps: usize,
}

impl Watchdog {
    /// A watchdog for a drive starting at `now`.
    pub fn new(now: Timestamp) -> Watchdog {
        Watchdog { at: now, steps: 0 }
    }

    /// Records one step that ended at `now`; an error once too many ended at the same instant.
    pub fn check(&mut self, now: Timestamp) -> Result<(), DriveError> {
        if now != self.at {
            (self.at, self.steps) = (now, 0);
            return Ok(());
        }
        self.steps += 1;
        if self.steps > MAX_STEPS_PER_INSTANT {
            return Err(DriveError::Livelock {
                steps: self.steps,
                now,
            });
        }
        Ok(())
    }
}

/// What travels on a link.
#[derive(Clone, Debug)]
enum Wire {
    Text(String),
    /// A close frame (towards the client: with the hub's code and reason).
    Close(u16, String),
    /// The link ended without a close frame.
    Lost,
}

/// Which way something travels on a link.
#[derive(Clone, Copy, Debug)]
enum Direction {
    ToHub,
    ToClient,
}

/// Something scheduled to happen.
#[derive(Clone, Debug)]
enum Due {
    /// A transport a client asked for finishes opening (or is refused).
    Open {
        client: ClientId,
        conn: ConnId,
        url: String,
    },
    /// Something reaches the hub.
    ToHub { conn: ConnId, wire: Wire },
    /// Something reaches a client.
    ToClient {
        client: ClientId,
        conn: ConnId,
        wire: Wire,
    },
}

#[derive(Debug)]
struct Link {
    client: ClientId,
    /// The hub node at its other end.
    node: usize,
    /// Half-open: nothing flows either way any more.
    stalled: bool,
    /// The client stopped reading: frames for it wait here.
    held: Option<Vec<Wire>>,
    /// When the last frame in each direction arrives (frames never overtake each other).
    last_to_hub: Timestamp,
    last_to_client: Timestamp,
}

#[derive(Debug)]
struct Client {
    session: Session,
    /// The transport the session is using (or opening); news of any other is stale.
    conn: Option<ConnId>,
    log: Vec<(Timestamp, Output)>,
}

/// One hub process of the network.
struct Node {
    hub: HubCore<InMemoryBroker>,
    /// The URL clients reach it at (`None`: a lone hub answers every URL).
    url: Option<String>,
    /// Restarts so far (each draws new session ids).
    generation: u64,
    /// It refuses connections until then (`Some(None)`: until revived).
    down_until: Option<Option<Timestamp>>,
}

/// Clients and hub nodes connected through in-memory links in virtual time.
pub struct Network {
    now: Timestamp,
    seed: u64,
    latency_ms: u64,
    outbound_queue: usize,
    faults: LinkFaults,
    rng: Rng,
    settings: HubSettings,
    agent: Option<ScriptedAgent>,
    /// The broker every node shares (this handle makes the nodes' own).
    broker: InMemoryBroker,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    links: BTreeMap<ConnId, Link>,
    agenda: BTreeMap<(Timestamp, u64), Due>,
    agenda_seq: u64,
    next_conn: u64,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("now", &self.now)
            .field("clients", &self.clients.len())
            .field("links", &self.links.len())
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl Network {
    /// A hub with `settings` (and the scripted agent) and no clients; `seed` fixes the hub's
    /// session ids, every client's seed and every fault.
    pub fn new(settings: HubSettings, seed: u64) -> Network {
        Network::with_nodes(settings, seed, &[])
    }

    /// Hub nodes at these URLs sharing one broker (none: one hub answering every URL); a
    /// client reaches the node its `url` (or its current entry of `urls`) names.
    pub fn with_nodes(settings: HubSettings, seed: u64, urls: &[&str]) -> Network {
        let agent = Some(ScriptedAgent::default());
        let broker = new_broker(&settings, seed);
        let urls: Vec<Option<String>> = if urls.is_empty() {
            vec![None]
        } else {
            urls.iter().map(|u| Some(u.to_string())).collect()
        };
        let nodes = urls
            .into_iter()
            .enumerate()
            .map(|(i, url)| Node {
                hub: new_hub(
                    &settings,
                    agent.as_ref(),
                    broker.add_node(),
                    node_seed(seed, i, 0),
                ),
                url,
                generation: 0,
                down_until: None,
            })
            .collect();
        Network {
            now: Timestamp::ZERO,
            seed,
            latency_ms: 5,
            outbound_queue: 64,
            faults: LinkFaults::default(),
            rng: Rng::new(seed ^ 0x5EED_F00D),
            broker,
            nodes,
            settings,
            agent,
            clients: Vec::new(),
            links: BTreeMap::new(),
            agenda: BTreeMap::new(),
            agenda_seq: 0,
            next_conn: 0,
        }
    }

    /// The same network with another agent (`None`: the hub refuses prompts). Call before
    /// anything connects.
    pub fn with_agent(mut self, agent: Option<ScriptedAgent>) -> Network {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            let seed = node_seed(self.seed, i, node.generation);
            node.hub = new_hub(&self.settings, agent.as_ref(), self.broker.add_node(), seed);
        }
        self.agent = agent;
        self
    }

    /// One-way delay of every frame (5 ms by default).
    pub fn set_latency_ms(&mut self, ms: u64) {
        self.latency_ms = ms;
    }

    /// Frames the hub's side of a link holds for a client that is not reading before it
    /// reports the link `write_blocked` (64 by default).
    pub fn set_outbound_queue(&mut self, frames: usize) {
        self.outbound_queue = frames.max(1);
    }

    /// Faults applied from now on.
    pub fn set_faults(&mut self, faults: LinkFaults) {
        self.faults = faults;
    }

    /// Adds an idle client session (call `connect` on it to start).
    pub fn add_client(&mut self, config: Config) -> Result<ClientId, ConfigError> {
        let id = ClientId(self.clients.len());
        let seed = self
            .seed
            .wrapping_add(1 + id.0 as u64)
            .wrapping_mul(0x9E37_79B9);
        let session = Session::new(config, seed, self.now)?;
        self.clients.push(Client {
            session,
            conn: None,
            log: Vec::new(),
        });
        Ok(id)
    }

    /// How many clients were added (numbered from 0).
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// The virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The (first) hub node's core.
    pub fn hub(&self) -> &HubCore<InMemoryBroker> {
        &self.nodes[0].hub
    }

    /// The broker the nodes share (to read what was published).
    pub fn broker(&self) -> &InMemoryBroker {
        &self.broker
    }

    /// Hub node `i`'s core.
    pub fn node(&self, i: usize) -> &HubCore<InMemoryBroker> {
        &self.nodes[i].hub
    }

    /// A client's session, to read its state.
    pub fn session(&self, id: ClientId) -> &Session {
        &self.clients[id.0].session
    }

    /// Applies `f` to a client's session at the current time, then processes what follows.
    pub fn with<R>(&mut self, id: ClientId, f: impl FnOnce(&mut Session, Timestamp) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.clients[id.0].session, now);
        self.pump_client(id);
        r
    }

    /// Every output of a client so far with the time it was produced (timeouts excluded).
    pub fn log(&self, id: ClientId) -> &[(Timestamp, Output)] {
        &self.clients[id.0].log
    }

    /// A client's events so far, in order.
    pub fn events(&self, id: ClientId) -> Vec<&Event> {
        self.log(id)
            .iter()
            .filter_map(|(_, o)| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    /// The application messages delivered to a client's subscriptions, in order.
    pub fn messages(&self, id: ClientId) -> Vec<&Envelope> {
        self.events(id)
            .into_iter()
            .filter_map(|e| match e {
                Event::Message { message, .. } => Some(message),
                _ => None,
            })
            .collect()
    }

    /// A client's connection state.
    pub fn state(&self, id: ClientId) -> State {
        self.clients[id.0].session.state()
    }

    // ---- faults --------------------------------------------------------------------------

    /// Cuts a client's link at once, without a close frame (both ends see it after the latency).
    pub fn drop_link(&mut self, id: ClientId) {
        if let Some(conn) = self.clients[id.0]
            .conn
            .filter(|c| self.links.contains_key(c))
        {
            self.cut(conn);
        }
    }

    /// Makes a client's link half-open: neither end hears the other again, nor that it is gone.
    pub fn stall_link(&mut self, id: ClientId) {
        if let Some(link) = self.clients[id.0].conn.and_then(|c| self.links.get_mut(&c)) {
            link.stalled = true;
        }
    }

    /// The client stops reading its link: what the hub sends piles up on the hub's side.
    pub fn stop_reading(&mut self, id: ClientId) {
        if let Some(link) = self.clients[id.0].conn.and_then(|c| self.links.get_mut(&c)) {
            link.held.get_or_insert_with(Vec::new);
        }
    }

    /// The client reads again: what piled up arrives.
    pub fn resume_reading(&mut self, id: ClientId) {
        let Some(conn) = self.clients[id.0].conn else {
            return;
        };
        let held = self.links.get_mut(&conn).and_then(|l| l.held.take());
        for wire in held.unwrap_or_default() {
            self.send_to_client(conn, wire);
        }
    }

    /// Restarts every hub node: each shuts down (every client hears 1012 and the restart
    /// window), refuses connections for `down_ms`, then comes back with its state
    /// (`keep_state`) or a fresh one (and a fresh broker: every log lost, new epochs).
    pub fn restart_hub(&mut self, keep_state: bool, down_ms: u64) {
        for i in 0..self.nodes.len() {
            self.nodes[i].hub.shutdown(self.now);
            self.pump_node(i);
            self.drop_links_of(i);
        }
        if !keep_state {
            self.broker = new_broker(&self.settings, self.seed.wrapping_add(self.generation()));
        }
        let until = self.now.add_ms(down_ms);
        for i in 0..self.nodes.len() {
            self.nodes[i].generation += 1;
            if !keep_state {
                self.renew_node(i);
            }
            self.nodes[i].down_until = Some(Some(until));
        }
    }

    /// Hub node `i` dies: its links end without close frames and what its process held
    /// (sessions, agent streams) is gone; the shared broker keeps the logs. It refuses
    /// connections until `revive_node`.
    pub fn kill_node(&mut self, i: usize) {
        self.drop_links_of(i);
        // Its process is gone at once (its broker handle too: its members' presence ends, as
        // a remote broker's TTL would end it); what revives is a fresh one.
        self.nodes[i].generation += 1;
        self.renew_node(i);
        self.nodes[i].down_until = Some(None);
    }

    /// Hub node `i`, dead, starts again afresh on the shared broker (a live node carries on).
    pub fn revive_node(&mut self, i: usize) {
        if self.nodes[i].down_until == Some(None) {
            self.nodes[i].down_until = None;
        }
    }

    fn generation(&self) -> u64 {
        self.nodes.iter().map(|n| n.generation).sum::<u64>() + 1
    }

    fn renew_node(&mut self, i: usize) {
        let seed = node_seed(self.seed, i, self.nodes[i].generation);
        let broker = self.broker.add_node();
        self.nodes[i].hub = new_hub(&self.settings, self.agent.as_ref(), broker, seed);
    }

    /// Whatever node `i`'s process held goes with it, stalled links too.
    fn drop_links_of(&mut self, i: usize) {
        let conns: Vec<ConnId> = self
            .links
            .iter()
            .filter(|(_, l)| l.node == i)
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            if let Some(link) = self.links.remove(&conn) {
                if !link.stalled {
                    let at = self.arrival_behind(self.now, link.last_to_client);
                    self.schedule(
                        at,
                        Due::ToClient {
                            client: link.client,
                            conn,
                            wire: Wire::Lost,
                        },
                    );
                }
            }
            self.nodes[i].hub.closed(self.now, conn);
        }
        self.pump_node(i);
    }

    /// The node a client's transport to `url` reaches, if one answers there.
    fn node_at(&self, url: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.url.as_deref().is_none_or(|u| u == url))
    }

    // ---- driving -------------------------------------------------------------------------

    /// Runs `ms` of virtual time.
    pub fn advance(&mut self, ms: u64) -> Result<(), DriveError> {
        let end = self.now.add_ms(ms);
        let mut watchdog = Watchdog::new(self.now);
        while self.step(end) {
            watchdog.check(self.now)?;
        }
        Ok(())
    }

    /// Runs until `done` holds, for at most `max_ms` of virtual time; returns the time it took.
    pub fn until(
        &mut self,
        max_ms: u64,
        mut done: impl FnMut(&Network) -> bool,
    ) -> Result<u64, DriveError> {
        let start = self.now;
        let end = start.add_ms(max_ms);
        let mut watchdog = Watchdog::new(self.now);
        while !done(self) {
            if !self.step(end) {
                return Err(DriveError::Timeout {
                    max_ms,
                    now: self.now,
                });
            }
            watchdog.check(self.now)?;
        }
        Ok(self.now.ms_since(start))
    }

    /// Moves to the next instant something happens (at most `end`) and handles one thing
    /// there; false once nothing more happens before `end` (time then stands at `end`).
    pub fn step(&mut self, end: Timestamp) -> bool {
        let agenda = self.agenda.keys().next().map(|k| k.0);
        let clients = self
            .clients
            .iter()
            .filter_map(|c| c.session.poll_timeout().map(|d| d.at))
            .min();
        let hub = self.nodes.iter().filter_map(|n| n.hub.poll_timeout()).min();
        let Some(next) = [agenda, clients, hub].into_iter().flatten().min() else {
            self.now = self.now.max(end);
            return false;
        };
        if next > end {
            self.now = self.now.max(end);
            return false;
        }
        self.now = self.now.max(next);
        let now = self.now;
        if let Some(key) = self.agenda.keys().next().copied().filter(|k| k.0 <= now) {
            if let Some(due) = self.agenda.remove(&key) {
                self.happen(due);
            }
            return true;
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].hub.poll_timeout().is_some_and(|d| d <= now) {
                self.nodes[i].hub.handle_timeout(now);
                self.pump_node(i);
            }
        }
        for i in 0..self.clients.len() {
            if self.clients[i]
                .session
                .poll_timeout()
                .is_some_and(|d| d.at <= now)
            {
                self.clients[i].session.handle_timeout(now);
                self.pump_client(ClientId(i));
            }
        }
        true
    }

    fn happen(&mut self, due: Due) {
        let now = self.now;
        match due {
            Due::Open { client, conn, url } => {
                if self.clients[client.0].conn != Some(conn) {
                    return; // the session gave up on this attempt
                }
                let up = self
                    .node_at(&url)
                    .filter(|&i| match self.nodes[i].down_until {
                        None => true,
                        Some(until) => until.is_some_and(|t| now >= t),
                    });
                match up {
                    None => {
                        self.clients[client.0].conn = None;
                        self.clients[client.0]
                            .session
                            .transport_error(now, "connection refused");
                    }
                    Some(node) => {
                        self.links.insert(
                            conn,
                            Link {
                                client,
                                node,
                                stalled: false,
                                held: None,
                                last_to_hub: now,
                                last_to_client: now,
                            },
                        );
                        self.nodes[node].hub.accepted(now, conn);
                        self.pump_node(node);
                        self.clients[client.0].session.transport_opened(now);
                    }
                }
                self.pump_client(client);
            }
            Due::ToHub { conn, wire } => {
                let Some(node) = self.links.get(&conn).map(|l| l.node) else {
                    return;
                };
                match wire {
                    Wire::Text(text) => self.nodes[node].hub.frame(now, conn, &text),
                    Wire::Close(..) | Wire::Lost => {
                        self.links.remove(&conn);
                        self.nodes[node].hub.closed(now, conn);
                    }
                }
                self.pump_node(node);
            }
            Due::ToClient { client, conn, wire } => {
                let c = &mut self.clients[client.0];
                if c.conn != Some(conn) {
                    return; // a transport the session already forgot
                }
                match wire {
                    Wire::Text(text) => c.session.frame(now, &text),
                    Wire::Close(code, reason) => {
                        c.conn = None;
                        c.session.transport_closed(now, code, &reason);
                    }
                    Wire::Lost => {
                        c.conn = None;
                        c.session.transport_lost(now);
                    }
                }
                self.pump_client(client);
            }
        }
    }

    /// Carries out what a client's session asks until it names its next deadline.
    fn pump_client(&mut self, id: ClientId) {
        loop {
            let now = self.now;
            let output = self.clients[id.0].session.poll_output();
            if matches!(output, Output::Timeout(_)) {
                return;
            }
            self.clients[id.0].log.push((now, output.clone()));
            match output {
                Output::OpenTransport { url, .. } => {
                    self.next_conn += 1;
                    let conn = ConnId(self.next_conn);
                    self.clients[id.0].conn = Some(conn);
                    let at = now.add_ms(self.latency_ms);
                    self.schedule(
                        at,
                        Due::Open {
                            client: id,
                            conn,
                            url,
                        },
                    );
                }
                Output::Transmit { text } => {
                    if let Some(conn) = self.clients[id.0].conn {
                        self.send_to_hub(conn, Wire::Text(text));
                    }
                }
                Output::CloseTransport { code, reason } => {
                    if let Some(conn) = self.clients[id.0].conn.take() {
                        self.send_to_hub(conn, Wire::Close(code, reason));
                    }
                }
                _ => {}
            }
        }
    }

    /// Carries out what node `i` asks until it names its next deadline, then lets every node
    /// the shared broker has news for take it (another node's messages).
    fn pump_node(&mut self, i: usize) {
        self.pump_one(i);
        while let Some(j) = (0..self.nodes.len()).find(|&j| self.nodes[j].hub.broker().has_events())
        {
            let now = self.now;
            self.nodes[j].hub.broker_ready(now);
            self.pump_one(j);
        }
    }

    fn pump_one(&mut self, i: usize) {
        let mut gone = VecDeque::new();
        loop {
            let now = self.now;
            match self.nodes[i].hub.poll_output() {
                HubOutput::Timeout { .. } => match gone.pop_front() {
                    // The hub's driver reports a connection it ended as closed.
                    Some(conn) => self.nodes[i].hub.closed(now, conn),
                    None => return,
                },
                HubOutput::Send { conn, text } => {
                    let broken = self.roll(self.faults.corrupt);
                    let text = if broken {
                        format!("#{}", &text[text.len().min(1)..])
                    } else {
                        text.to_string()
                    };
                    self.send_to_client(conn, Wire::Text(text));
                }
                HubOutput::Close { conn, code, reason } => {
                    self.send_to_client(conn, Wire::Close(code, reason));
                    if self.links.remove(&conn).is_some() {
                        gone.push_back(conn);
                    }
                }
                HubOutput::Abort { conn } => {
                    self.send_to_client(conn, Wire::Lost);
                    if self.links.remove(&conn).is_some() {
                        gone.push_back(conn);
                    }
                }
                HubOutput::Stall { conn } => {
                    if let Some(link) = self.links.get_mut(&conn) {
                        link.stalled = true;
                    }
                }
            }
        }
    }

    fn send_to_hub(&mut self, conn: ConnId, wire: Wire) {
        if let Some(at) = self.arrival(conn, &wire, Direction::ToHub) {
            self.schedule(at, Due::ToHub { conn, wire });
        }
    }

    fn send_to_client(&mut self, conn: ConnId, wire: Wire) {
        let Some(link) = self.links.get_mut(&conn).filter(|l| !l.stalled) else {
            return;
        };
        let (client, node, held) = (link.client, link.node, &mut link.held);
        let wire = match (wire, held) {
            (Wire::Text(text), Some(held)) => {
                held.push(Wire::Text(text));
                if held.len() > self.outbound_queue {
                    let now = self.now;
                    self.nodes[node].hub.write_blocked(now, conn);
                }
                return;
            }
            // The hub gives up on a link its peer does not read: no room for a close frame,
            // the socket just goes (the peer hears of it as soon as its network stack does).
            (Wire::Close(..) | Wire::Lost, Some(_)) => Wire::Lost,
            (wire, None) => wire,
        };
        if let Some(at) = self.arrival(conn, &wire, Direction::ToClient) {
            self.schedule(at, Due::ToClient { client, conn, wire });
        }
    }

    /// When something put on a link now arrives (`None`: never, the link is stalled or the drop
    /// fault cut it instead); frames never overtake each other in one direction, as on TCP.
    fn arrival(&mut self, conn: ConnId, wire: &Wire, direction: Direction) -> Option<Timestamp> {
        if self.links.get(&conn).is_none_or(|l| l.stalled) {
            return None;
        }
        if matches!(wire, Wire::Text(_)) && self.roll(self.faults.drop) {
            self.cut(conn);
            return None;
        }
        let extra = self.jitter();
        let at = self.now.add_ms(self.latency_ms + extra);
        let link = self.links.get_mut(&conn)?;
        let last = match direction {
            Direction::ToHub => &mut link.last_to_hub,
            Direction::ToClient => &mut link.last_to_client,
        };
        *last = at.max(*last);
        Some(*last)
    }

    /// Ends a link abruptly: both ends hear of it after everything already on its way.
    fn cut(&mut self, conn: ConnId) {
        let Some(link) = self.links.get(&conn) else {
            return;
        };
        let (client, to_hub, to_client) = (link.client, link.last_to_hub, link.last_to_client);
        let at_hub = self.arrival_behind(self.now, to_hub);
        let at_client = self.arrival_behind(self.now, to_client);
        if let Some(link) = self.links.get_mut(&conn) {
            // Nothing more goes onto it.
            link.stalled = true;
        }
        self.schedule(
            at_hub,
            Due::ToHub {
                conn,
                wire: Wire::Lost,
            },
        );
        self.schedule(
            at_client,
            Due::ToClient {
                client,
                conn,
                wire: Wire::Lost,
            },
        );
    }

    /// When news sent now arrives behind everything already on its way.
    fn arrival_behind(&self, now: Timestamp, last: Timestamp) -> Timestamp {
        now.add_ms(self.latency_ms).max(last)
    }

    fn schedule(&mut self, at: Timestamp, due: Due) {
        self.agenda_seq += 1;
        self.agenda.insert((at, self.agenda_seq), due);
    }

    fn roll(&mut self, chance: f64) -> bool {
        chance > 0.0 && (self.rng.up_to(999_999) as f64) < chance * 1_000_000.0
    }

    fn jitter(&mut self) -> u64 {
        if self.faults.delay_ms == 0 {
            0
        } else {
            self.rng.up_to(self.faults.delay_ms)
        }
    }
}

/// A broker for the network's nodes; one started afresh draws new epochs.
fn new_broker(settings: &HubSettings, seed: u64) -> InMemoryBroker {
    InMemoryBroker::new(settings.replay_capacity, seed ^ 0x5eed_b20c_e200)
}

/// Node `i`'s seed in its `generation`: session ids never repeat across nodes or restarts.
fn node_seed(seed: u64, i: usize, generation: u64) -> u64 {
    seed.wrapping_add(generation)
        .wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn new_hub(
    settings: &HubSettings,
    agent: Option<&ScriptedAgent>,
    broker: InMemoryBroker,
    seed: u64,
) -> HubCore<InMemoryBroker> {
    let hub = HubCore::new(settings.clone(), broker, seed);
    match agent {
        Some(a) => hub.with_agent(Box::new(a.clone()) as Box<dyn AgentSource>),
        None => hub,
    }
}
