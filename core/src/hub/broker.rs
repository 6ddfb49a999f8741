//! What outlives one hub process and is shared by every hub node: each project's log (its epoch,
//! top offset and last messages, for recovery) and its state. The hub core talks to its broker in
//! commands and events, so a remote broker (Redis, answering later) and the in-memory one
//! (answering at once) are driven the same way.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use crate::hub::io::ConnId;
use crate::rng::Rng;
use crate::wire::{self, Envelope};

/// One encoded frame, shared by every connection it goes to (encoded once).
pub type Frame = Arc<str>;

/// Why a position cannot be recovered from a project's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unrecoverable {
    /// The log is another one than the position's (created anew, or lost and created again).
    EpochChanged,
    /// The log no longer holds the messages right after the position.
    TooOld,
    /// More messages were missed than one replay carries.
    TooMany,
    /// The position is beyond the log's top (the log lost its tail).
    Ahead,
}

impl Unrecoverable {
    /// The wire name (`project_joined.reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Unrecoverable::EpochChanged => "epoch_changed",
            Unrecoverable::TooOld => "too_old",
            Unrecoverable::TooMany => "too_many",
            Unrecoverable::Ahead => "ahead",
        }
    }
}

/// A project log's epoch and an offset in it (the top: 0 for a log with nothing in it yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPosition {
    /// The log's epoch.
    pub epoch: String,
    /// The offset.
    pub offset: u64,
}

/// Where a command came from, so the node that sent it can answer its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The connection the message came on.
    pub conn: ConnId,
    /// The message's id, acknowledged with its place once logged.
    pub id: Option<String>,
    /// Whether the origin connection gets the frame too (a `project_updated` goes to its editor).
    pub echo: bool,
}

/// What a hub node asks of the broker it shares with the other nodes.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum BrokerCommand {
    /// Log a project message (it gets the next offset) and publish it to every node; a
    /// message its session logged already (by `origin.id`) is not logged again (`Duplicate`).
    Publish {
        /// The project.
        project: u64,
        /// The message, without a position.
        message: Envelope,
        /// Who sent it.
        origin: Origin,
        /// The sender's session: with `origin.id`, the message's key for exactly-once logging
        /// across nodes (a resend after a failover).
        session: Option<String>,
    },
    /// Store a project's new state (its version goes up by one) and log and publish its
    /// `project_updated{version, …state}`.
    Update {
        /// The project.
        project: u64,
        /// The new state.
        state: Value,
        /// Who changed it.
        origin: Origin,
    },
    /// A volatile frame (typing) for every node's members of a project; never logged.
    Broadcast {
        /// The project.
        project: u64,
        /// The frame.
        frame: Frame,
        /// Who sent it.
        origin: Origin,
    },
    /// A connection joins a project: the log's top, what follows `since` (at most `limit`
    /// messages), the project's state, and who is present (`user` now is, on every node).
    Join {
        /// The project.
        project: u64,
        /// The joining connection.
        conn: ConnId,
        /// The position it recovers from, if it has one.
        since: Option<LogPosition>,
        /// The most messages one replay carries.
        limit: usize,
        /// The connection's user.
        user: String,
        /// The connection's session: its own messages in the replay are named in `own`.
        session: Option<String>,
    },
    /// A connection is no longer a member: `user` is no longer present through it.
    Leave {
        /// The project.
        project: u64,
        /// The connection.
        conn: ConnId,
        /// Its user.
        user: String,
    },
    /// The project's state, for a snapshot.
    Snapshot {
        /// The project.
        project: u64,
        /// The connection that asked.
        conn: ConnId,
    },
    /// Whether a session this node does not hold can be resumed here, and whose it is.
    Resume {
        /// The connection whose `hello` names it.
        conn: ConnId,
        /// The session id.
        session: String,
    },
    /// A session is connected to this node (resumable on any node while this node lives).
    SessionLive {
        /// The session id.
        session: String,
        /// Its user.
        user: String,
    },
    /// A session's connection ended: resumable on any node for `ttl_ms`.
    SessionAway {
        /// The session id.
        session: String,
        /// How long it stays resumable.
        ttl_ms: u64,
    },
}

/// What the broker tells a hub node: per project in log order, and each answer after
/// everything published before it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum BrokerEvent {
    /// A project message was logged at `position`.
    Published {
        /// The project.
        project: u64,
        /// Its place in the log.
        position: LogPosition,
        /// The frame every member gets, with the position in it.
        frame: Frame,
        /// Who sent it: only on the node it came from.
        origin: Option<Origin>,
    },
    /// A message its session had logged already (a resend): not logged again.
    Duplicate {
        /// The project.
        project: u64,
        /// Where it was logged the first time.
        position: LogPosition,
        /// Who sent it (again).
        origin: Origin,
    },
    /// A volatile frame for a project's members (typing, presence diffs).
    Broadcast {
        /// The project.
        project: u64,
        /// The frame.
        frame: Frame,
        /// Who sent it: only on the node it came from.
        origin: Option<Origin>,
    },
    /// The answer to `Join`.
    Joined {
        /// The project.
        project: u64,
        /// The joining connection.
        conn: ConnId,
        /// Where it continues from and what it needs.
        answer: JoinAnswer,
    },
    /// The answer to `Snapshot`.
    Snapshot {
        /// The project.
        project: u64,
        /// The connection that asked.
        conn: ConnId,
        /// The project's version.
        version: u64,
        /// The project's state.
        state: Value,
    },
    /// The answer to `Resume`.
    Resumed {
        /// The connection that asked.
        conn: ConnId,
        /// The session id.
        session: String,
        /// The session's user (`None`: no such session, or it expired).
        user: Option<String>,
    },
    /// The broker could not carry out a command (it is unreachable) and gave up on it.
    Failed {
        /// The command.
        command: BrokerCommand,
        /// When to try again.
        retry_after_ms: u64,
    },
    /// The broker became unreachable: commands fail until `Up`.
    Down {
        /// When to try again.
        retry_after_ms: u64,
    },
    /// The broker is reachable again.
    Up,
}

/// The broker's answer to a join: where the connection continues from and what it needs.
#[derive(Clone, Debug, PartialEq)]
pub struct JoinAnswer {
    /// The log's top when the join was answered.
    pub top: LogPosition,
    /// What followed the connection's position, or why it cannot be recovered (`None`: it had
    /// no position).
    pub replay: Option<Replay>,
    /// The project's version.
    pub version: u64,
    /// The project's state.
    pub state: Value,
    /// The users present in the project on every node, each once, sorted (the joiner's
    /// included).
    pub present: Vec<String>,
    /// The joiner's session's own messages in the replay, by offset and id: the hub acks those
    /// instead of sending them back (a node died after logging one, before its ack).
    pub own: Vec<(u64, String)>,
}

/// What follows a position in a log, or why it cannot be recovered.
pub type Replay = Result<Vec<Frame>, Unrecoverable>;

/// A hub node's broker: commands in, events out. An in-memory broker answers at once; a remote
/// one later, and its driver then feeds the hub `broker_ready`.
pub trait Broker: Send {
    /// Carries out (or sends off) a command.
    fn submit(&mut self, command: BrokerCommand);
    /// The next event for this node, if one is in.
    fn poll_event(&mut self) -> Option<BrokerEvent>;
}

impl<B: Broker + ?Sized> Broker for Box<B> {
    fn submit(&mut self, command: BrokerCommand) {
        (**self).submit(command)
    }

    fn poll_event(&mut self) -> Option<BrokerEvent> {
        (**self).poll_event()
    }
}

/// A `presence_diff` frame: `joins` arrived in `project`, `leaves` left.
pub fn presence_diff_frame(project: u64, joins: Vec<String>, leaves: Vec<String>) -> Frame {
    Envelope::new("presence_diff", &wire::PresenceDiff { joins, leaves })
        .in_project(project)
        .to_json()
        .into()
}

#[derive(Debug)]
struct ProjectLog {
    epoch: String,
    top: u64,
    /// The last messages, oldest first.
    frames: VecDeque<Entry>,
}

/// A logged message: its offset, its frame, and its sender's key (session, id) if it had one.
#[derive(Debug)]
struct Entry {
    offset: u64,
    frame: Frame,
    key: Option<(String, String)>,
}

/// A node handle's number in the shared logs.
type NodeId = usize;

/// The last message keys a session logged, and where.
#[derive(Debug, Default)]
struct SessionKeys {
    order: VecDeque<String>,
    logged: BTreeMap<String, (u64, LogPosition)>,
}

#[derive(Debug)]
struct Logs {
    capacity: usize,
    dedupe_window: usize,
    /// Draws epochs: a broker that starts afresh must never reuse one.
    rng: Rng,
    logs: BTreeMap<u64, ProjectLog>,
    states: BTreeMap<u64, (u64, Value)>,
    /// Who is present in each project, through which node's connection.
    presence: BTreeMap<u64, BTreeMap<(NodeId, ConnId), String>>,
    /// Resumable sessions and their users.
    sessions: BTreeMap<String, String>,
    /// Sessions away from every node, oldest first (the in-memory broker has no clock: the
    /// oldest are forgotten beyond `MAX_AWAY`).
    away: VecDeque<String>,
    keys: BTreeMap<String, SessionKeys>,
    /// Each live node's events, in order.
    queues: BTreeMap<NodeId, VecDeque<BrokerEvent>>,
    next_node: NodeId,
}

/// Away sessions the in-memory broker keeps resumable, at most.
const MAX_AWAY: usize = 65_536;

/// The in-memory broker: every log in memory, at most `capacity` messages each, shared by every
/// node handle made with `add_node` (a cluster in one process: the test harness's). A dropped
/// handle is a node gone: its connections' presence ends.
#[derive(Debug)]
pub struct InMemoryBroker {
    logs: Arc<Mutex<Logs>>,
    node: NodeId,
}

/// Message keys a session's exactly-once logging remembers by default.
const DEDUPE_WINDOW: usize = 1024;

impl InMemoryBroker {
    /// An empty broker keeping the last `capacity` messages of each project, for one node;
    /// `seed` draws its epochs (give every broker its own, or one started afresh reuses them).
    pub fn new(capacity: usize, seed: u64) -> Self {
        let logs = Logs {
            capacity: capacity.max(1),
            dedupe_window: DEDUPE_WINDOW,
            rng: Rng::new(seed),
            logs: BTreeMap::new(),
            states: BTreeMap::new(),
            presence: BTreeMap::new(),
            sessions: BTreeMap::new(),
            away: VecDeque::new(),
            keys: BTreeMap::new(),
            queues: BTreeMap::from([(0, VecDeque::new())]),
            next_node: 1,
        };
        InMemoryBroker {
            logs: Arc::new(Mutex::new(logs)),
            node: 0,
        }
    }

    /// The same broker remembering the last `window` message keys of each session.
    pub fn with_dedupe_window(self, window: usize) -> Self {
        self.lock().dedupe_window = window.max(1);
        self
    }

    /// Another node's handle on the same logs: what one node publishes, every node hears.
    pub fn add_node(&self) -> InMemoryBroker {
        let mut logs = self.lock();
        let node = logs.next_node;
        logs.next_node += 1;
        logs.queues.insert(node, VecDeque::new());
        InMemoryBroker {
            logs: self.logs.clone(),
            node,
        }
    }

    /// Every message `project`'s log still holds, oldest first (for tests and tools: what was
    /// published, in order).
    pub fn log(&self, project: u64) -> Vec<Frame> {
        self.lock()
            .logs
            .get(&project)
            .map(|l| l.frames.iter().map(|e| e.frame.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether this node has events waiting (for a harness deciding which node to run).
    pub fn has_events(&self) -> bool {
        self.lock()
            .queues
            .get(&self.node)
            .is_some_and(|q| !q.is_empty())
    }

    fn lock(&self) -> MutexGuard<'_, Logs> {
        // A panic while holding the lock leaves the logs as they were between two commands.
        self.logs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for InMemoryBroker {
    fn drop(&mut self) {
        let node = self.node;
        let mut logs = self.lock();
        logs.queues.remove(&node);
        // The node's connections are gone with it (what a TTL does for a remote broker).
        let gone: Vec<(u64, ConnId)> = logs
            .presence
            .iter()
            .flat_map(|(p, m)| m.keys().filter(|(n, _)| *n == node).map(|(_, c)| (*p, *c)))
            .collect();
        for (project, conn) in gone {
            logs.leave(node, project, conn);
        }
    }
}

impl Logs {
    fn log(&mut self, project: u64) -> &mut ProjectLog {
        let rng = &mut self.rng;
        self.logs.entry(project).or_insert_with(|| ProjectLog {
            epoch: format!("{:016x}", rng.next_u64()),
            top: 0,
            frames: VecDeque::new(),
        })
    }

    fn append(
        &mut self,
        project: u64,
        mut message: Envelope,
        key: Option<(String, String)>,
    ) -> (LogPosition, Frame) {
        let capacity = self.capacity;
        let log = self.log(project);
        log.top += 1;
        message.project_id = Some(project);
        message.epoch = Some(log.epoch.clone());
        message.offset = Some(log.top);
        let frame: Frame = message.to_json().into();
        if log.frames.len() >= capacity {
            log.frames.pop_front();
        }
        log.frames.push_back(Entry {
            offset: log.top,
            frame: frame.clone(),
            key,
        });
        let position = LogPosition {
            epoch: log.epoch.clone(),
            offset: log.top,
        };
        (position, frame)
    }

    fn top(&mut self, project: u64) -> LogPosition {
        let log = self.log(project);
        LogPosition {
            epoch: log.epoch.clone(),
            offset: log.top,
        }
    }

    /// What follows `since`, and which of it is `session`'s own (offset, id).
    fn replay(
        &mut self,
        project: u64,
        since: &LogPosition,
        limit: usize,
        session: Option<&str>,
    ) -> (Replay, Vec<(u64, String)>) {
        let own = |log: &ProjectLog| {
            log.frames
                .iter()
                .filter(|e| e.offset > since.offset)
                .filter_map(|e| match &e.key {
                    Some((s, id)) if Some(s.as_str()) == session => Some((e.offset, id.clone())),
                    _ => None,
                })
                .collect()
        };
        let frames = self.replay_frames(project, since, limit);
        let mine = match (&frames, self.logs.get(&project)) {
            (Ok(_), Some(log)) => own(log),
            _ => Vec::new(),
        };
        (frames, mine)
    }

    fn replay_frames(&mut self, project: u64, since: &LogPosition, limit: usize) -> Replay {
        let log = self.log(project);
        if log.epoch != since.epoch {
            return Err(Unrecoverable::EpochChanged);
        }
        let offset = since.offset;
        if offset > log.top {
            return Err(Unrecoverable::Ahead);
        }
        let missed = log.top - offset;
        if missed == 0 {
            return Ok(Vec::new());
        }
        // The top lives apart from the kept messages: a quiet project whose messages all aged
        // out still recovers a client that saw the last one (nothing was missed).
        let oldest = log.frames.front().map_or(log.top + 1, |e| e.offset);
        if oldest > offset + 1 {
            return Err(Unrecoverable::TooOld);
        }
        if missed > limit as u64 {
            return Err(Unrecoverable::TooMany);
        }
        Ok(log
            .frames
            .iter()
            .filter(|e| e.offset > offset)
            .map(|e| e.frame.clone())
            .collect())
    }

    fn state(&self, project: u64) -> (u64, Value) {
        self.states
            .get(&project)
            .cloned()
            .unwrap_or((0, Value::Object(Default::default())))
    }

    /// Logs a message and tells every node; `origin` only the node it came from.
    fn publish(&mut self, from: NodeId, project: u64, message: Envelope, origin: Origin) {
        let (position, frame) = self.append(project, message, None);
        self.queue_for_every_node(from, |own| BrokerEvent::Published {
            project,
            position: position.clone(),
            frame: frame.clone(),
            origin: own.then(|| origin.clone()),
        });
    }

    /// Logs a message once per key: a key logged already is answered with its first place.
    fn publish_once(
        &mut self,
        from: NodeId,
        project: u64,
        message: Envelope,
        origin: Origin,
        session: Option<String>,
    ) {
        let key = session.zip(origin.id.clone());
        if let Some((session, id)) = &key {
            let first = self
                .keys
                .get(session)
                .and_then(|k| k.logged.get(id))
                .filter(|(p, _)| *p == project)
                .map(|(_, pos)| pos.clone());
            if let Some(position) = first {
                self.queue(
                    from,
                    BrokerEvent::Duplicate {
                        project,
                        position,
                        origin,
                    },
                );
                return;
            }
        }
        let (position, frame) = self.append(project, message, key.clone());
        if let Some((session, id)) = key {
            let window = self.dedupe_window;
            let keys = self.keys.entry(session).or_default();
            keys.order.push_back(id.clone());
            keys.logged.insert(id, (project, position.clone()));
            while keys.order.len() > window {
                if let Some(old) = keys.order.pop_front() {
                    keys.logged.remove(&old);
                }
            }
        }
        self.queue_for_every_node(from, |own| BrokerEvent::Published {
            project,
            position: position.clone(),
            frame: frame.clone(),
            origin: own.then(|| origin.clone()),
        });
    }

    fn queue(&mut self, node: NodeId, event: BrokerEvent) {
        if let Some(q) = self.queues.get_mut(&node) {
            q.push_back(event);
        }
    }

    /// Queues an event for every node; `origin` only on the node it came from.
    fn queue_for_every_node(&mut self, from: NodeId, event: impl Fn(bool) -> BrokerEvent) {
        for (node, queue) in self.queues.iter_mut() {
            queue.push_back(event(*node == from));
        }
    }

    /// Whether `user` is present in `project` through any connection of any node.
    fn is_present(&self, project: u64, user: &str) -> bool {
        self.presence
            .get(&project)
            .is_some_and(|m| m.values().any(|u| u == user))
    }

    fn present(&self, project: u64) -> Vec<String> {
        let users: BTreeSet<&String> = self
            .presence
            .get(&project)
            .into_iter()
            .flat_map(|m| m.values())
            .collect();
        users.into_iter().cloned().collect()
    }

    /// `user` present through `conn`; true if they were not before (news for the others).
    fn arrive(&mut self, node: NodeId, project: u64, conn: ConnId, user: &str) -> bool {
        let news = !self.is_present(project, user);
        self.presence
            .entry(project)
            .or_default()
            .insert((node, conn), user.to_string());
        news
    }

    /// `conn`'s presence ends: every node's members hear it if its user is gone.
    fn leave(&mut self, node: NodeId, project: u64, conn: ConnId) {
        let Some(members) = self.presence.get_mut(&project) else {
            return;
        };
        let Some(user) = members.remove(&(node, conn)) else {
            return;
        };
        if members.is_empty() {
            self.presence.remove(&project);
        }
        if !self.is_present(project, &user) {
            self.presence_diff(node, project, conn, vec![], vec![user]);
        }
    }

    fn presence_diff(
        &mut self,
        node: NodeId,
        project: u64,
        conn: ConnId,
        joins: Vec<String>,
        leaves: Vec<String>,
    ) {
        let frame = presence_diff_frame(project, joins, leaves);
        let origin = Origin {
            conn,
            id: None,
            echo: false,
        };
        self.queue_for_every_node(node, |own| BrokerEvent::Broadcast {
            project,
            frame: frame.clone(),
            origin: own.then(|| origin.clone()),
        });
    }
}

impl Broker for InMemoryBroker {
    fn submit(&mut self, command: BrokerCommand) {
        let node = self.node;
        let mut logs = self.lock();
        match command {
            BrokerCommand::Publish {
                project,
                message,
                origin,
                session,
            } => logs.publish_once(node, project, message, origin, session),
            BrokerCommand::Update {
                project,
                state,
                origin,
            } => {
                let entry = logs.states.entry(project).or_insert((0, Value::Null));
                entry.0 += 1;
                entry.1 = state.clone();
                let version = entry.0;
                let message = project_updated(project, state, version);
                logs.publish(node, project, message, origin);
            }
            BrokerCommand::Broadcast {
                project,
                frame,
                origin,
            } => logs.queue_for_every_node(node, |own| BrokerEvent::Broadcast {
                project,
                frame: frame.clone(),
                origin: own.then(|| origin.clone()),
            }),
            BrokerCommand::Join {
                project,
                conn,
                since,
                limit,
                user,
                session,
            } => {
                let top = logs.top(project);
                let (replay, own) = match since {
                    Some(s) => {
                        let (r, own) = logs.replay(project, &s, limit, session.as_deref());
                        (Some(r), own)
                    }
                    None => (None, Vec::new()),
                };
                let (version, state) = logs.state(project);
                let news = logs.arrive(node, project, conn, &user);
                let present = logs.present(project);
                logs.queue(
                    node,
                    BrokerEvent::Joined {
                        project,
                        conn,
                        answer: JoinAnswer {
                            top,
                            replay,
                            version,
                            state,
                            present,
                            own,
                        },
                    },
                );
                // The others hear of the joiner after its answer went out.
                if news {
                    logs.presence_diff(node, project, conn, vec![user], vec![]);
                }
            }
            BrokerCommand::Leave { project, conn, .. } => logs.leave(node, project, conn),
            BrokerCommand::Snapshot { project, conn } => {
                let (version, state) = logs.state(project);
                logs.queue(
                    node,
                    BrokerEvent::Snapshot {
                        project,
                        conn,
                        version,
                        state,
                    },
                );
            }
            BrokerCommand::Resume { conn, session } => {
                let user = logs.sessions.get(&session).cloned();
                logs.queue(
                    node,
                    BrokerEvent::Resumed {
                        conn,
                        session,
                        user,
                    },
                );
            }
            BrokerCommand::SessionLive { session, user } => {
                logs.away.retain(|s| *s != session);
                logs.sessions.insert(session, user);
            }
            BrokerCommand::SessionAway { session, .. } => {
                if !logs.sessions.contains_key(&session) {
                    return;
                }
                logs.away.retain(|s| *s != session);
                logs.away.push_back(session);
                while logs.away.len() > MAX_AWAY {
                    if let Some(old) = logs.away.pop_front() {
                        logs.sessions.remove(&old);
                        logs.keys.remove(&old);
                    }
                }
            }
        }
    }

    fn poll_event(&mut self) -> Option<BrokerEvent> {
        let node = self.node;
        self.lock().queues.get_mut(&node)?.pop_front()
    }
}

/// The `project_updated` message a broker logs for an update of `project` to `state` at
/// `version` (without its position): the same bytes from every broker.
pub fn project_updated(project: u64, state: Value, version: u64) -> Envelope {
    Envelope::new("project_updated", &with_version(state, version)).in_project(project)
}

/// A project's state as its `project_updated`/`project_snapshot` data: the state's fields and
/// its `version`.
pub(crate) fn with_version(state: Value, version: u64) -> Value {
    let mut obj = match state {
        Value::Object(m) => m,
        Value::Null => serde_json::Map::new(),
        other => {
            let mut m = serde_json::Map::new();
            m.insert("value".into(), other);
            m
        }
    };
    obj.insert("version".into(), version.into());
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(conn: u64) -> Origin {
        Origin {
            conn: ConnId(conn),
            id: Some("m".into()),
            echo: false,
        }
    }

    fn publish(b: &mut InMemoryBroker, project: u64, n: u64) {
        b.submit(BrokerCommand::Publish {
            project,
            message: Envelope::new("n", &n),
            origin: origin(1),
            session: None,
        });
    }

    fn events(b: &mut InMemoryBroker) -> Vec<BrokerEvent> {
        std::iter::from_fn(|| b.poll_event()).collect()
    }

    fn join(b: &mut InMemoryBroker, project: u64, since: Option<LogPosition>) -> BrokerEvent {
        b.submit(BrokerCommand::Join {
            project,
            conn: ConnId(9),
            since,
            limit: 10,
            user: "u".into(),
            session: None,
        });
        events(b)
            .into_iter()
            .find(|e| matches!(e, BrokerEvent::Joined { .. }))
            .expect("a join is answered")
    }

    #[test]
    fn offsets_count_from_one_in_one_epoch_every_node_hears_it_and_only_the_origin_is_told_so() {
        let mut a = InMemoryBroker::new(8, 1);
        let mut b = a.add_node();
        publish(&mut a, 7, 1);
        publish(&mut a, 7, 2);
        let (got_a, got_b) = (events(&mut a), events(&mut b));
        assert_eq!(got_a.len(), 2);
        let BrokerEvent::Published {
            position,
            frame,
            origin: o,
            ..
        } = &got_a[0]
        else {
            panic!("{got_a:?}")
        };
        assert_eq!(position.offset, 1);
        assert_eq!(o.as_ref(), Some(&origin(1)));
        assert_eq!(
            &**frame,
            format!(
                r#"{{"type":"n","data":1,"projectId":7,"epoch":"{}","offset":1}}"#,
                position.epoch
            )
        );
        assert!(matches!(
            &got_b[1],
            BrokerEvent::Published { position, origin: None, .. } if position.offset == 2
        ));
        let BrokerEvent::Joined { answer, .. } = join(&mut a, 8, None) else {
            panic!()
        };
        let top = answer.top;
        assert_ne!(top.epoch, position.epoch, "each log has its own epoch");
        let mut fresh = InMemoryBroker::new(8, 2);
        let BrokerEvent::Joined { answer, .. } = join(&mut fresh, 7, None) else {
            panic!()
        };
        let again = answer.top;
        assert_ne!(
            again.epoch, position.epoch,
            "a broker started afresh draws new epochs"
        );
    }

    #[test]
    fn a_join_recovers_what_the_log_still_holds_and_says_why_not() {
        let mut b = InMemoryBroker::new(3, 1);
        let BrokerEvent::Joined { answer, .. } = join(&mut b, 1, None) else {
            panic!()
        };
        let top = answer.top;
        let at = |offset| {
            Some(LogPosition {
                epoch: top.epoch.clone(),
                offset,
            })
        };
        let replay = |e: BrokerEvent| match e {
            BrokerEvent::Joined { answer, .. } => answer.replay,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            replay(join(&mut b, 1, at(0))),
            Some(Ok(vec![])),
            "nothing missed"
        );
        for i in 0..5 {
            publish(&mut b, 1, i);
        }
        events(&mut b);
        let got = replay(join(&mut b, 1, at(2))).unwrap().unwrap();
        assert_eq!(got.len(), 3);
        assert!(got[0].contains(r#""offset":3"#), "{}", got[0]);
        assert_eq!(replay(join(&mut b, 1, at(5))), Some(Ok(vec![])));
        assert_eq!(
            replay(join(&mut b, 1, at(1))),
            Some(Err(Unrecoverable::TooOld))
        );
        assert_eq!(
            replay(join(&mut b, 1, at(6))),
            Some(Err(Unrecoverable::Ahead))
        );
        let other = Some(LogPosition {
            epoch: "other".into(),
            offset: 5,
        });
        assert_eq!(
            replay(join(&mut b, 1, other)),
            Some(Err(Unrecoverable::EpochChanged))
        );
        b.submit(BrokerCommand::Join {
            project: 1,
            conn: ConnId(9),
            since: at(2),
            limit: 2,
            user: "u".into(),
            session: None,
        });
        assert_eq!(
            replay(events(&mut b).remove(0)),
            Some(Err(Unrecoverable::TooMany))
        );
    }

    #[test]
    fn updates_count_versions_and_are_logged_as_project_updated() {
        let mut b = InMemoryBroker::new(4, 1);
        for x in [1, 2] {
            b.submit(BrokerCommand::Update {
                project: 1,
                state: serde_json::json!({ "x": x }),
                origin: origin(1),
            });
        }
        let got = events(&mut b);
        let BrokerEvent::Published {
            frame, position, ..
        } = &got[1]
        else {
            panic!("{got:?}")
        };
        assert_eq!(position.offset, 2);
        assert!(
            frame.contains(r#""type":"project_updated","data":{"version":2,"x":2}"#),
            "{frame}"
        );
        b.submit(BrokerCommand::Snapshot {
            project: 1,
            conn: ConnId(3),
        });
        assert_eq!(
            events(&mut b),
            [BrokerEvent::Snapshot {
                project: 1,
                conn: ConnId(3),
                version: 2,
                state: serde_json::json!({"x": 2}),
            }]
        );
    }
}
