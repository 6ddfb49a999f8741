//! The Redis broker: every hub node of a cluster shares one Redis, which holds each project's log
//! (a stream), its epoch and top (a hash) and its state (a hash), and carries every node's events
//! on one pub/sub channel. Lua scripts make each log operation atomic; a background worker task
//! per node sends commands in pipelines and turns the channel back into the ordered events the
//! hub core relies on (`docs/cluster.md`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::{AsyncConnectionConfig, Cmd, Script, Value};
use serde_json::Value as Json;
use sockline_core::hub::{
    presence_diff_frame, project_updated, Broker, BrokerCommand, BrokerEvent, ConnId, Frame,
    JoinAnswer, LogPosition, Origin, Unrecoverable,
};
use tokio::sync::mpsc;

/// Called by the worker whenever it queued events: the driver then feeds the hub `broker_ready`.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// Where the broker finds Redis and how it names its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Prefix of every key and of the events channel.
    pub prefix: String,
    /// Messages kept per project log (exact `MAXLEN`): the replay capacity.
    pub capacity: usize,
    /// Message keys remembered per session for exactly-once logging (its last N).
    pub dedupe_window: usize,
    /// How long this node's liveness key (and a session connected to it) lives unless
    /// refreshed: a node that dies without a word keeps its users present in every project for
    /// about this long plus one `heartbeat` of the node that sweeps it. Default 10 s.
    pub live_ttl: Duration,
    /// How often the node refreshes its liveness key and its sessions' keys, and sweeps the
    /// presence of nodes whose key expired. Keep it well under `live_ttl` (at most a third of
    /// it, so that one late refresh does not make a live node look dead). Default 3 s.
    pub heartbeat: Duration,
}

impl RedisConfig {
    /// The default prefix, `sockline`, and `capacity` messages per log.
    pub fn new(url: impl Into<String>, capacity: usize) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: "sockline".into(),
            capacity,
            dedupe_window: 1024,
            live_ttl: LIVE_TTL,
            heartbeat: HEARTBEAT,
        }
    }
}

/// One hub node's handle on a Redis shared by the cluster.
pub struct RedisBroker {
    node: String,
    tx: mpsc::UnboundedSender<BrokerCommand>,
    events: Arc<Mutex<VecDeque<BrokerEvent>>>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("node", &self.node)
            .finish()
    }
}

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one round trip may take before the connection counts as broken.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a node's liveness key (and a live session's key) lives unless refreshed (default).
const LIVE_TTL: Duration = Duration::from_secs(10);
/// How often the worker refreshes them and sweeps the presence of nodes that are gone (default).
const HEARTBEAT: Duration = Duration::from_secs(3);
/// The first and the longest wait between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(1000);
/// Projects whose logs one catch-up round trip reads.
const CATCH_UP_BATCH: usize = 256;

impl RedisBroker {
    /// Connects to Redis (failing if it is unreachable now) and starts the node's worker task on
    /// the current tokio runtime; `wake` is called whenever events are waiting.
    pub async fn connect(cfg: RedisConfig, wake: Wake) -> redis::RedisResult<RedisBroker> {
        let client = redis::Client::open(cfg.url.as_str())?;
        // Drawn from this process's randomness: a node id (and an epoch) must never repeat
        // across processes or restarts.
        let mut rng = fastrand::Rng::new();
        let node = format!("{:016x}", rng.u64(..));
        let keys = Keys {
            prefix: cfg.prefix.clone(),
            channel: format!("{}:events", cfg.prefix),
            nodes: format!("{}:nodes", cfg.prefix),
        };
        let scripts = Scripts::new();
        let live_ttl = cfg.live_ttl.max(Duration::from_millis(2));
        let heartbeat = cfg.heartbeat.clamp(Duration::from_millis(1), live_ttl / 2);
        let mut link = Link::open(&client, &scripts, &keys.channel).await?;
        heartbeat_cmds(&keys, &node, &HashMap::new(), live_ttl)
            .query_async::<()>(&mut link.cmd)
            .await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let events = Arc::new(Mutex::new(VecDeque::new()));
        let worker = Worker {
            client,
            keys,
            scripts,
            node: node.clone(),
            capacity: cfg.capacity.max(1),
            dedupe_window: cfg.dedupe_window.max(1),
            live_ttl,
            heartbeat,
            follows: HashMap::new(),
            leaves: Vec::new(),
            live: HashMap::new(),
            duplicates: Vec::new(),
            rng,
            next_token: 0,
            rx,
            out: events.clone(),
            wake,
            queued: Vec::new(),
            cursors: HashMap::new(),
            origins: HashMap::new(),
            joins: HashMap::new(),
            backoff: BACKOFF_MIN,
        };
        tokio::spawn(worker.run(link));
        Ok(RedisBroker { node, tx, events })
    }

    /// This node's id (as tagged on its pub/sub messages and log entries).
    pub fn node_id(&self) -> &str {
        &self.node
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<BrokerEvent>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Broker for RedisBroker {
    fn submit(&mut self, command: BrokerCommand) {
        // Called under the hub core's lock: never wait here.
        if let Err(e) = self.tx.send(command) {
            // The worker is gone (its runtime shut down): nothing will ever carry it out.
            self.lock().push_back(BrokerEvent::Failed {
                command: e.0,
                retry_after_ms: BACKOFF_MAX.as_millis() as u64,
            });
        }
    }

    fn poll_event(&mut self) -> Option<BrokerEvent> {
        self.lock().pop_front()
    }
}

// ---- keys and scripts -----------------------------------------------------------------------

struct Keys {
    prefix: String,
    channel: String,
    /// The set of node ids that may have presence entries.
    nodes: String,
}

impl Keys {
    fn presence(&self, project: u64) -> String {
        format!("{}:p:{project}:presence", self.prefix)
    }
    /// A node's liveness key (it has a TTL: gone means the node is).
    fn node(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }
    /// The projects a node has presence entries in.
    fn node_projects(&self, node: &str) -> String {
        format!("{}:node:{node}:projects", self.prefix)
    }
    /// A resumable session: its user.
    fn session(&self, session: &str) -> String {
        format!("{}:s:{session}", self.prefix)
    }
    /// A session's logged message keys (id → `project|epoch|offset`) and their order.
    fn session_keys(&self, session: &str) -> (String, String) {
        (
            format!("{}:s:{session}:keys", self.prefix),
            format!("{}:s:{session}:order", self.prefix),
        )
    }
    fn log(&self, project: u64) -> String {
        format!("{}:p:{project}:log", self.prefix)
    }
    fn meta(&self, project: u64) -> String {
        format!("{}:p:{project}:meta", self.prefix)
    }
    fn state(&self, project: u64) -> String {
        format!("{}:p:{project}:state", self.prefix)
    }
}

/// Appends `msg` (a message's JSON without its position) to a project's log and publishes it:
/// creates the log with the caller's epoch if it has none (deleting whatever stream an earlier
/// log left, so a new epoch never sits on old entries), takes the next offset, splices
/// `,"epoch":E,"offset":N` in place of the final `}` (the `Envelope` serializes those two last,
/// so the bytes are those of `Envelope::to_json`), adds the entry with an exact MAXLEN and
/// publishes it tagged with the node and its request token. XADD and PUBLISH in one script make
/// the channel's order the log's order.
const APPEND_LUA: &str = r#"
local function append(meta, log, chan, candidate, maxlen, msg, project, node, token, session, id)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = candidate
    redis.call('DEL', log)
    redis.call('HSET', meta, 'epoch', epoch, 'top', 0)
  end
  local top = redis.call('HINCRBY', meta, 'top', 1)
  local offset = string.format('%d', top)
  local frame = string.sub(msg, 1, -2) .. ',"epoch":"' .. epoch .. '","offset":' .. offset .. '}'
  if session ~= '' and id ~= '' then
    redis.call('XADD', log, 'MAXLEN', maxlen, offset .. '-0', 'f', frame, 'n', node .. '|' .. token,
      's', session, 'i', id)
  else
    redis.call('XADD', log, 'MAXLEN', maxlen, offset .. '-0', 'f', frame, 'n', node .. '|' .. token)
  end
  redis.call('PUBLISH', chan,
    'P|' .. project .. '|' .. node .. '|' .. token .. '|' .. epoch .. '|' .. offset .. '|' .. frame)
  return {epoch, top}
end
"#;

/// KEYS: meta, log, channel, session keys, session key order. ARGV: epoch candidate, maxlen,
/// message, project, node, token, session (`''`: none), message id, window, keys' TTL (ms). A
/// message whose key its session logged already (in this project) is not logged again: the
/// reply is {'dup', epoch, offset} of its first place. Key and entry are written together, so a
/// resend through another node after a failover is caught whatever the timing.
const PUBLISH_LUA: &str = r#"
local keyed = ARGV[7] ~= '' and ARGV[8] ~= ''
if keyed then
  local prev = redis.call('HGET', KEYS[4], ARGV[8])
  if prev then
    local p, e, o = string.match(prev, '^(%d+)|([^|]*)|(%d+)$')
    if p == ARGV[4] then return {'dup', e, tonumber(o)} end
  end
end
local r = append(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
  ARGV[7], ARGV[8])
if keyed then
  redis.call('HSET', KEYS[4], ARGV[8], ARGV[4] .. '|' .. r[1] .. '|' .. string.format('%d', r[2]))
  redis.call('RPUSH', KEYS[5], ARGV[8])
  while redis.call('LLEN', KEYS[5]) > tonumber(ARGV[9]) do
    redis.call('HDEL', KEYS[4], redis.call('LPOP', KEYS[5]))
  end
  redis.call('PEXPIRE', KEYS[4], ARGV[10])
  redis.call('PEXPIRE', KEYS[5], ARGV[10])
end
return r
"#;

/// KEYS: meta, log, channel, state. ARGV: epoch candidate, maxlen, frame prefix (ending in
/// `"version":`), frame suffix, project, node, token, state JSON. The new version goes between
/// prefix and suffix: the node encodes the frame around it, so no JSON is built in Lua.
const UPDATE_LUA: &str = r#"
local version = redis.call('HINCRBY', KEYS[4], 'version', 1)
redis.call('HSET', KEYS[4], 'state', ARGV[8])
local msg = ARGV[3] .. string.format('%d', version) .. ARGV[4]
return append(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], msg, ARGV[5], ARGV[6], ARGV[7], '', '')
"#;

/// KEYS: meta, log, state, channel, presence, node's projects. ARGV: epoch candidate,
/// has-position (0/1), its epoch, its offset, replay limit, project, node, token, user, conn,
/// the `presence_diff{joins: [user]}` frame, the joiner's session (`''`: none). The decision is
/// `InMemoryBroker`'s; the marker published after it gives the answer its place among the
/// channel's messages, and the diff (only if the user was not present through any connection)
/// follows it. Returns {epoch, top, version, state, outcome, n, n present users..., frames...},
/// a frame of the joiner's own session preceded by `=offset|id`.
const JOIN_LUA: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local top = 0
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
else
  top = tonumber(redis.call('HGET', KEYS[1], 'top'))
end
local st = redis.call('HMGET', KEYS[3], 'version', 'state')
local out = {epoch, top, st[1] or '', st[2] or '', 'none'}
local user = ARGV[9]
local news = true
for _, u in ipairs(redis.call('HVALS', KEYS[5])) do
  if u == user then news = false end
end
redis.call('HSET', KEYS[5], ARGV[7] .. ':' .. ARGV[10], user)
redis.call('SADD', KEYS[6], ARGV[6])
local seen = {}
for _, u in ipairs(redis.call('HVALS', KEYS[5])) do seen[u] = true end
local present = {}
for u, _ in pairs(seen) do present[#present + 1] = u end
table.sort(present)
out[6] = #present
for _, u in ipairs(present) do out[#out + 1] = u end
if ARGV[2] == '1' then
  local since = tonumber(ARGV[4])
  if ARGV[3] ~= epoch then
    out[5] = 'epoch_changed'
  elseif since > top then
    out[5] = 'ahead'
  elseif since == top then
    out[5] = 'ok'
  else
    local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
    local oldest = top + 1
    if #first > 0 then
      oldest = tonumber(string.match(first[1][1], '^(%d+)'))
    end
    if oldest > since + 1 then
      out[5] = 'too_old'
    elseif top - since > tonumber(ARGV[5]) then
      out[5] = 'too_many'
    else
      out[5] = 'ok'
      local entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', since + 1), '+')
      for _, e in ipairs(entries) do
        local fields = e[2]
        local frame, session, id = nil, nil, nil
        for i = 1, #fields, 2 do
          if fields[i] == 'f' then frame = fields[i + 1] end
          if fields[i] == 's' then session = fields[i + 1] end
          if fields[i] == 'i' then id = fields[i + 1] end
        end
        if ARGV[12] ~= '' and session == ARGV[12] and id then
          out[#out + 1] = '=' .. string.match(e[1], '^(%d+)') .. '|' .. id
        end
        out[#out + 1] = frame
      end
    end
  end
end
redis.call('PUBLISH', KEYS[4], 'J|' .. ARGV[6] .. '|' .. ARGV[7] .. '|' .. ARGV[8])
if news then
  redis.call('PUBLISH', KEYS[4], 'B|' .. ARGV[6] .. '|' .. ARGV[7] .. '|c' .. ARGV[10] .. '|' .. ARGV[11])
end
return out
"#;

/// KEYS: presence, channel, node's projects. ARGV: project, node, conn, user, the
/// `presence_diff{leaves: [user]}` frame. The diff goes out only if no other connection keeps
/// the user present; the project leaves the node's set once the node has no entry in it (the set
/// holds the projects the node is in now, not every one it ever was in).
const LEAVE_LUA: &str = r#"
if redis.call('HDEL', KEYS[1], ARGV[2] .. ':' .. ARGV[3]) == 0 then return 0 end
local mine = ARGV[2] .. ':'
local present, ours = false, false
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i + 1] == ARGV[4] then present = true end
  if string.sub(all[i], 1, #mine) == mine then ours = true end
end
if not ours then redis.call('SREM', KEYS[3], ARGV[1]) end
if present then return 0 end
redis.call('PUBLISH', KEYS[2], 'B|' .. ARGV[1] .. '|' .. ARGV[2] .. '|c' .. ARGV[3] .. '|' .. ARGV[5])
return 1
"#;

/// KEYS: the nodes set. ARGV: key prefix. Removes the presence entries of every node whose
/// liveness key expired; returns {project, user, ...} for each user no longer present (the
/// caller publishes their diffs: their frames are the core's to encode). Touches keys it
/// computes, so it is for a single Redis, not a Redis Cluster.
const SWEEP_LUA: &str = r#"
local out = {}
local prefix = ARGV[1]
for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', prefix .. ':node:' .. n) == 0 then
    local projects = prefix .. ':node:' .. n .. ':projects'
    for _, p in ipairs(redis.call('SMEMBERS', projects)) do
      local h = prefix .. ':p:' .. p .. ':presence'
      local all = redis.call('HGETALL', h)
      local gone, kept = {}, {}
      for i = 1, #all, 2 do
        if string.sub(all[i], 1, #n + 1) == n .. ':' then
          redis.call('HDEL', h, all[i])
          gone[all[i + 1]] = true
        else
          kept[all[i + 1]] = true
        end
      end
      for u, _ in pairs(gone) do
        if not kept[u] then
          out[#out + 1] = p
          out[#out + 1] = u
        end
      end
    end
    redis.call('DEL', projects)
    redis.call('SREM', KEYS[1], n)
  end
end
return out
"#;

/// KEYS: meta, log. ARGV: first offset, last offset (or `+`), count. The log's epoch and top and
/// its entries in that range, read together: {epoch, top, id, frame, tag, id, frame, tag...};
/// {} when the log is gone.
const READ_LUA: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {} end
local out = {epoch, tonumber(redis.call('HGET', KEYS[1], 'top'))}
local last = ARGV[2]
if last ~= '+' then last = last .. '-0' end
local entries = redis.call('XRANGE', KEYS[2], ARGV[1] .. '-0', last, 'COUNT', ARGV[3])
for _, e in ipairs(entries) do
  local f, n = '', ''
  local fields = e[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'f' then f = fields[i + 1] elseif fields[i] == 'n' then n = fields[i + 1] end
  end
  out[#out + 1] = e[1]
  out[#out + 1] = f
  out[#out + 1] = n
end
return out
"#;

struct Scripts {
    publish: Script,
    update: Script,
    join: Script,
    read: Script,
    leave: Script,
    sweep: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            publish: Script::new(&format!("{APPEND_LUA}{PUBLISH_LUA}")),
            update: Script::new(&format!("{APPEND_LUA}{UPDATE_LUA}")),
            join: Script::new(JOIN_LUA),
            read: Script::new(READ_LUA),
            leave: Script::new(LEAVE_LUA),
            sweep: Script::new(SWEEP_LUA),
        }
    }

    fn all(&self) -> [&Script; 6] {
        [
            &self.publish,
            &self.update,
            &self.join,
            &self.read,
            &self.leave,
            &self.sweep,
        ]
    }
}

/// `EVALSHA` of a loaded script (pipelines carry no script text: every script is loaded on each
/// connection, before any command is sent on it).
fn evalsha(script: &Script, keys: &[&str], args: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash())
        .arg(keys.len())
        .arg(keys)
        .arg(args);
    cmd
}

// ---- the connections ------------------------------------------------------------------------

/// A node's two connections: commands (multiplexed, pipelined) and the events channel.
struct Link {
    cmd: MultiplexedConnection,
    sub: PubSubStream,
}

impl Link {
    async fn open(
        client: &redis::Client,
        scripts: &Scripts,
        channel: &str,
    ) -> redis::RedisResult<Link> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut cmd = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        for script in scripts.all() {
            script.prepare_invoke().load_async(&mut cmd).await?;
        }
        let subscribe = async {
            let mut sub = client.get_async_pubsub().await?;
            sub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(sub.into_on_message())
        };
        let sub = tokio::time::timeout(RESPONSE_TIMEOUT, subscribe)
            .await
            .map_err(|_| {
                redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
            })??;
        Ok(Link { cmd, sub })
    }
}

// ---- the worker -----------------------------------------------------------------------------

/// Where a node is in a project's log: the last offset it emitted, in that epoch.
#[derive(Clone, Debug)]
struct Cursor {
    epoch: String,
    last: u64,
}

/// A join's script answered; it is emitted when its marker comes through the channel.
struct JoinReply {
    command: BrokerCommand,
    project: u64,
    conn: ConnId,
    answer: JoinAnswer,
}

/// What a pipelined command's reply is for.
enum Sent {
    /// Answered through the channel (its token's origin waits in `origins`).
    Logged {
        command: BrokerCommand,
        token: u64,
    },
    /// The same, unless the reply says it was a duplicate.
    Publish {
        command: BrokerCommand,
        token: u64,
    },
    Resume {
        command: BrokerCommand,
    },
    /// Nothing waits for its answer.
    Quiet {
        command: BrokerCommand,
    },
    Join {
        command: BrokerCommand,
        token: u64,
    },
    Snapshot {
        project: u64,
        conn: ConnId,
        command: BrokerCommand,
    },
}

/// The connection broke: these commands' outcome is unknown.
struct Fault {
    in_flight: Vec<BrokerCommand>,
}

struct Worker {
    client: redis::Client,
    keys: Keys,
    scripts: Scripts,
    node: String,
    capacity: usize,
    rng: fastrand::Rng,
    next_token: u64,
    rx: mpsc::UnboundedReceiver<BrokerCommand>,
    out: Arc<Mutex<VecDeque<BrokerEvent>>>,
    wake: Wake,
    /// Events not handed to the hub yet (handed over in one lock per step).
    queued: Vec<BrokerEvent>,
    /// The projects this node follows (it has members in, or joining): their connections. Only
    /// these have cursors, are caught up after a reconnect and have their messages emitted;
    /// another project's message reaches the hub only if it is this node's own (to be acked).
    follows: HashMap<u64, HashSet<ConnId>>,
    /// Where this node is in each followed project's log.
    cursors: HashMap<u64, Cursor>,
    /// This node's commands whose messages have not come through the channel yet, by token.
    origins: HashMap<u64, Origin>,
    /// Join answers waiting for their markers, by token.
    joins: HashMap<u64, JoinReply>,
    backoff: Duration,
    dedupe_window: usize,
    live_ttl: Duration,
    heartbeat: Duration,
    /// The sessions connected to this node, and their users (their keys are kept alive).
    live: HashMap<String, String>,
    /// Duplicates whose first place this node has not emitted yet: they wait for it.
    duplicates: Vec<(u64, LogPosition, Origin)>,
    /// Leaves still to carry out (they met a broken connection): sent ahead of the next batch.
    leaves: Vec<BrokerCommand>,
}

/// One pipeline refreshing a node's liveness (and its live sessions' keys).
fn heartbeat_cmds(
    keys: &Keys,
    node: &str,
    live: &HashMap<String, String>,
    ttl: Duration,
) -> redis::Pipeline {
    let ttl = ttl.as_millis() as u64;
    let mut pipe = redis::pipe();
    pipe.cmd("SET")
        .arg(keys.node(node))
        .arg(1)
        .arg("PX")
        .arg(ttl)
        .ignore();
    pipe.cmd("SADD").arg(&keys.nodes).arg(node).ignore();
    for (session, user) in live {
        // SET rather than PEXPIRE: a Redis that lost its data gets the session back.
        pipe.cmd("SET")
            .arg(keys.session(session))
            .arg(user)
            .arg("PX")
            .arg(ttl)
            .ignore();
        let (k, o) = keys.session_keys(session);
        pipe.cmd("PEXPIRE").arg(k).arg(ttl).ignore();
        pipe.cmd("PEXPIRE").arg(o).arg(ttl).ignore();
    }
    pipe
}

impl Worker {
    async fn run(mut self, mut link: Link) {
        loop {
            let fault = match self.serve(&mut link).await {
                Ok(()) => return, // the broker was dropped
                Err(f) => f,
            };
            self.down(fault);
            loop {
                link = match self.reconnect().await {
                    Some(l) => l,
                    None => return,
                };
                match self.recover(&mut link).await {
                    Ok(()) => break,
                    Err(f) => self.fail_all(f.in_flight),
                }
            }
            self.backoff = BACKOFF_MIN;
            self.emit(BrokerEvent::Up);
            self.flush();
            tracing::info!(node = %self.node, "redis broker up again");
        }
    }

    /// Carries out commands and relays the channel until the connection breaks (`Err`) or the
    /// broker is dropped (`Ok`).
    async fn serve(&mut self, link: &mut Link) -> Result<(), Fault> {
        let mut heartbeat = tokio::time::interval(self.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                // The heartbeat before everything: a node kept busy by the channel must still
                // refresh its liveness key, or the other nodes sweep a live node's presence.
                _ = heartbeat.tick() => self.heartbeat(link).await?,
                // Then the channel: the events already in are older than any command's answer.
                msg = link.sub.next() => {
                    let Some(msg) = msg else {
                        return Err(Fault { in_flight: Vec::new() });
                    };
                    self.on_message(link, msg.get_payload_bytes()).await?;
                    // Whatever else has arrived goes in the same hand-over.
                    while let Some(Some(msg)) = link.sub.next().now_or_never() {
                        self.on_message(link, msg.get_payload_bytes()).await?;
                    }
                }
                command = self.rx.recv() => {
                    let Some(command) = command else {
                        self.leave_cluster(link).await;
                        return Ok(());
                    };
                    let mut batch = std::mem::take(&mut self.leaves);
                    batch.push(command);
                    while let Ok(c) = self.rx.try_recv() {
                        batch.push(c);
                    }
                    self.send(link, batch).await?;
                }
            }
            self.flush();
        }
    }

    /// Keeps this node (and its sessions) alive and ends the presence of nodes that are gone.
    async fn heartbeat(&mut self, link: &mut Link) -> Result<(), Fault> {
        let broken = |e: redis::RedisError| {
            tracing::warn!(error = %e, "redis broker: heartbeat failed");
            Fault {
                in_flight: Vec::new(),
            }
        };
        heartbeat_cmds(&self.keys, &self.node, &self.live, self.live_ttl)
            .query_async::<()>(&mut link.cmd)
            .await
            .map_err(broken)?;
        if !self.leaves.is_empty() {
            let leaves = std::mem::take(&mut self.leaves);
            self.send(link, leaves).await?;
        }
        self.sweep(link).await.map_err(broken)
    }

    /// Removes the presence of every node whose liveness key expired and tells every node who
    /// left.
    async fn sweep(&mut self, link: &mut Link) -> redis::RedisResult<()> {
        let gone: Vec<String> = evalsha(
            &self.scripts.sweep,
            &[&self.keys.nodes],
            &[&self.keys.prefix],
        )
        .query_async(&mut link.cmd)
        .await?;
        if gone.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for pair in gone.chunks_exact(2) {
            let Ok(project) = pair[0].parse::<u64>() else {
                continue;
            };
            let frame = presence_diff_frame(project, vec![], vec![pair[1].clone()]);
            let payload = format!("B|{project}|{}|-|{frame}", self.node);
            pipe.cmd("PUBLISH")
                .arg(&self.keys.channel)
                .arg(payload)
                .ignore();
        }
        pipe.query_async::<()>(&mut link.cmd).await
    }

    /// The broker was dropped (its hub stopped): this node's presence ends now rather than when
    /// its liveness key expires.
    async fn leave_cluster(&mut self, link: &mut Link) {
        let _ = redis::cmd("DEL")
            .arg(self.keys.node(&self.node))
            .query_async::<()>(&mut link.cmd)
            .await;
        let _ = self.sweep(link).await;
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn candidate(&mut self) -> String {
        format!("{:016x}", self.rng.u64(..))
    }

    /// Sends a batch of commands in one pipeline (one round trip) and takes their replies.
    async fn send(&mut self, link: &mut Link, batch: Vec<BrokerCommand>) -> Result<(), Fault> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut sent = Vec::with_capacity(batch.len());
        let capacity = self.capacity.to_string();
        for command in batch {
            match &command {
                BrokerCommand::Publish {
                    project,
                    message,
                    origin,
                    session,
                } => {
                    let token = self.token();
                    let mut message = message.clone();
                    message.project_id = Some(*project);
                    message.epoch = None;
                    message.offset = None;
                    let (meta, log) = (self.keys.meta(*project), self.keys.log(*project));
                    let candidate = self.candidate();
                    let session = session.as_deref().unwrap_or_default();
                    let (skeys, sorder) = self.keys.session_keys(session);
                    let args = [
                        candidate.as_str(),
                        &capacity,
                        &message.to_json(),
                        &project.to_string(),
                        &self.node,
                        &token.to_string(),
                        session,
                        origin.id.as_deref().unwrap_or_default(),
                        &self.dedupe_window.to_string(),
                        &self.live_ttl.as_millis().to_string(),
                    ];
                    let keys = [meta.as_str(), &log, &self.keys.channel, &skeys, &sorder];
                    pipe.add_command(evalsha(&self.scripts.publish, &keys, &args));
                    self.origins.insert(token, origin.clone());
                    sent.push(Sent::Publish { command, token });
                }
                BrokerCommand::Update {
                    project,
                    state,
                    origin,
                } => {
                    let token = self.token();
                    let (prefix, suffix) = update_frame_parts(*project, state);
                    let keys = [
                        self.keys.meta(*project),
                        self.keys.log(*project),
                        self.keys.channel.clone(),
                        self.keys.state(*project),
                    ];
                    let candidate = self.candidate();
                    let args = [
                        candidate.as_str(),
                        &capacity,
                        &prefix,
                        &suffix,
                        &project.to_string(),
                        &self.node,
                        &token.to_string(),
                        &state.to_string(),
                    ];
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    pipe.add_command(evalsha(&self.scripts.update, &keys, &args));
                    self.origins.insert(token, origin.clone());
                    sent.push(Sent::Logged { command, token });
                }
                BrokerCommand::Broadcast {
                    project,
                    frame,
                    origin,
                } => {
                    let token = self.token();
                    let payload = format!("B|{project}|{}|{token}|{frame}", self.node);
                    pipe.cmd("PUBLISH").arg(&self.keys.channel).arg(payload);
                    self.origins.insert(token, origin.clone());
                    sent.push(Sent::Logged { command, token });
                }
                BrokerCommand::Join {
                    project,
                    conn,
                    since,
                    limit,
                    user,
                    session,
                } => {
                    let token = self.token();
                    let keys = [
                        self.keys.meta(*project),
                        self.keys.log(*project),
                        self.keys.state(*project),
                        self.keys.channel.clone(),
                        self.keys.presence(*project),
                        self.keys.node_projects(&self.node),
                    ];
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    let (has, epoch, offset) = match since {
                        Some(p) => ("1", p.epoch.clone(), p.offset.to_string()),
                        None => ("0", String::new(), "0".to_string()),
                    };
                    let candidate = self.candidate();
                    let args = [
                        candidate.as_str(),
                        has,
                        &epoch,
                        &offset,
                        &limit.to_string(),
                        &project.to_string(),
                        &self.node,
                        &token.to_string(),
                        user,
                        &conn.0.to_string(),
                        &presence_diff_frame(*project, vec![user.clone()], vec![]),
                        session.as_deref().unwrap_or_default(),
                    ];
                    pipe.add_command(evalsha(&self.scripts.join, &keys, &args));
                    self.follows.entry(*project).or_default().insert(*conn);
                    sent.push(Sent::Join { command, token });
                }
                BrokerCommand::Snapshot { project, conn } => {
                    pipe.cmd("HMGET")
                        .arg(self.keys.state(*project))
                        .arg("version")
                        .arg("state");
                    sent.push(Sent::Snapshot {
                        project: *project,
                        conn: *conn,
                        command,
                    });
                }
                BrokerCommand::Leave {
                    project,
                    conn,
                    user,
                } => {
                    let keys = [
                        self.keys.presence(*project),
                        self.keys.channel.clone(),
                        self.keys.node_projects(&self.node),
                    ];
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    let frame = presence_diff_frame(*project, vec![], vec![user.clone()]);
                    self.unfollow(*project, *conn);
                    let args = [
                        &project.to_string(),
                        &self.node,
                        &conn.0.to_string(),
                        user,
                        &*frame,
                    ];
                    pipe.add_command(evalsha(&self.scripts.leave, &keys, &args));
                    sent.push(Sent::Quiet { command });
                }
                BrokerCommand::Resume { session, .. } => {
                    pipe.cmd("GET").arg(self.keys.session(session));
                    sent.push(Sent::Resume { command });
                }
                BrokerCommand::SessionLive { session, user } => {
                    self.live.insert(session.clone(), user.clone());
                    let ttl = self.live_ttl.as_millis() as u64;
                    pipe.cmd("SET")
                        .arg(self.keys.session(session))
                        .arg(user)
                        .arg("PX")
                        .arg(ttl);
                    sent.push(Sent::Quiet { command });
                }
                BrokerCommand::SessionAway { session, ttl_ms } => {
                    self.live.remove(session);
                    // Resumable anywhere for its TTL, then gone with its message keys.
                    let ttl = (*ttl_ms).max(1);
                    let (k, o) = self.keys.session_keys(session);
                    pipe.cmd("PEXPIRE")
                        .arg(self.keys.session(session))
                        .arg(ttl)
                        .ignore();
                    pipe.cmd("PEXPIRE").arg(k).arg(ttl).ignore();
                    pipe.cmd("PEXPIRE").arg(o).arg(ttl);
                    sent.push(Sent::Quiet { command });
                }
                other => {
                    // A command this broker does not know yet: say so rather than drop it.
                    tracing::warn!(?other, "redis broker: unsupported command");
                    self.failed(other.clone(), BACKOFF_MAX.as_millis() as u64);
                }
            }
        }
        if sent.is_empty() {
            return Ok(());
        }
        let replies: Vec<Value> = match pipe.query_async(&mut link.cmd).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "redis broker: pipeline failed");
                return Err(self.unknown_outcome(sent));
            }
        };
        if replies.len() != sent.len() {
            return Err(self.unknown_outcome(sent));
        }
        let mut lost_scripts = false;
        for (reply, s) in replies.into_iter().zip(sent) {
            if let Value::ServerError(e) = &reply {
                // NOSCRIPT: this Redis is not the one the scripts were loaded into (it restarted
                // under a connection that survived): start over, as after a broken connection.
                lost_scripts |= e.code() == "NOSCRIPT";
                tracing::warn!(error = ?e, "redis broker: command refused");
                let command = self.forget(s);
                self.failed(command, BACKOFF_MIN.as_millis() as u64);
                continue;
            }
            match s {
                Sent::Logged { .. } | Sent::Quiet { .. } => {} // answered through the channel
                Sent::Publish { command, token } => {
                    if let Some(position) = duplicate_of(&reply) {
                        let BrokerCommand::Publish { project, .. } = command else {
                            continue;
                        };
                        if let Some(origin) = self.origins.remove(&token) {
                            self.duplicate(project, position, origin);
                        }
                    }
                }
                Sent::Resume { command } => {
                    let BrokerCommand::Resume { conn, session } = command else {
                        continue;
                    };
                    self.emit(BrokerEvent::Resumed {
                        conn,
                        session,
                        user: text_of(&reply),
                    });
                }
                Sent::Join { command, token } => match join_reply(command.clone(), &reply) {
                    Some(r) => {
                        self.joins.insert(token, r);
                    }
                    None => self.failed(command, BACKOFF_MIN.as_millis() as u64),
                },
                Sent::Snapshot { project, conn, .. } => {
                    let (version, state) = match &reply {
                        Value::Array(v) if v.len() == 2 => state_of(&v[0], &v[1]),
                        _ => (0, empty_state()),
                    };
                    self.emit(BrokerEvent::Snapshot {
                        project,
                        conn,
                        version,
                        state,
                    });
                }
            }
        }
        if lost_scripts {
            return Err(Fault {
                in_flight: Vec::new(),
            });
        }
        Ok(())
    }

    /// A pipeline broke: its commands may or may not have been carried out. They are reported
    /// failed (the hub tells their senders; an at-least-once client resends), and their origins
    /// forgotten, so a message that was logged after all reaches this node as anyone else's.
    fn unknown_outcome(&mut self, sent: Vec<Sent>) -> Fault {
        let in_flight = sent.into_iter().map(|s| self.forget(s)).collect();
        Fault { in_flight }
    }

    /// A sent command given up on: its origin (if it waits for one) is forgotten.
    fn forget(&mut self, sent: Sent) -> BrokerCommand {
        match sent {
            Sent::Logged { command, token } | Sent::Publish { command, token } => {
                self.origins.remove(&token);
                command
            }
            Sent::Join { command, .. }
            | Sent::Snapshot { command, .. }
            | Sent::Resume { command }
            | Sent::Quiet { command } => command,
        }
    }

    /// One message of the events channel.
    async fn on_message(&mut self, link: &mut Link, payload: &[u8]) -> Result<(), Fault> {
        let Ok(text) = std::str::from_utf8(payload) else {
            return Ok(());
        };
        // Anybody can publish on the channel: whatever does not parse is ignored, never a
        // panic (that would end the worker and with it the node's broker).
        let (kind, rest) = text.split_once('|').unwrap_or((text, ""));
        match kind {
            "P" => {
                let mut f = rest.splitn(6, '|');
                let (
                    Some(project),
                    Some(node),
                    Some(token),
                    Some(epoch),
                    Some(offset),
                    Some(frame),
                ) = (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
                else {
                    return Ok(());
                };
                let (Ok(project), Ok(offset)) = (project.parse::<u64>(), offset.parse::<u64>())
                else {
                    return Ok(());
                };
                let tag = (node == self.node).then_some(token);
                self.logged(link, project, epoch, offset, frame, tag).await
            }
            "B" => {
                let mut f = rest.splitn(4, '|');
                let (Some(project), Some(node), Some(token), Some(frame)) =
                    (f.next(), f.next(), f.next(), f.next())
                else {
                    return Ok(());
                };
                let Ok(project) = project.parse::<u64>() else {
                    return Ok(());
                };
                let origin = self.own_origin(node, token);
                self.emit(BrokerEvent::Broadcast {
                    project,
                    frame: frame.into(),
                    origin,
                });
                Ok(())
            }
            "J" => {
                let mut f = rest.splitn(3, '|');
                let (Some(_project), Some(node), Some(token)) = (f.next(), f.next(), f.next())
                else {
                    return Ok(());
                };
                if node != self.node {
                    return Ok(());
                }
                let Some(reply) = token.parse().ok().and_then(|t| self.joins.remove(&t)) else {
                    return Ok(());
                };
                self.answer_join(link, reply).await
            }
            _ => Ok(()),
        }
    }

    fn own_origin(&mut self, node: &str, token: &str) -> Option<Origin> {
        if node != self.node {
            return None;
        }
        if let Some(conn) = token.strip_prefix('c') {
            // A presence diff about one of this node's connections: not for that connection.
            return Some(Origin {
                conn: ConnId(conn.parse().ok()?),
                id: None,
                echo: false,
            });
        }
        token.parse().ok().and_then(|t| self.origins.remove(&t))
    }

    /// A logged message came through the channel (`tag`: its token, if this node sent it):
    /// emitted after whatever the node missed of its epoch, never twice.
    async fn logged(
        &mut self,
        link: &mut Link,
        project: u64,
        epoch: &str,
        offset: u64,
        frame: &str,
        tag: Option<&str>,
    ) -> Result<(), Fault> {
        if !self.follows.contains_key(&project) {
            // Nobody here is a member: only the sender's ack is wanted (it may have left
            // meanwhile), and nothing is kept for the project.
            let origin = tag
                .and_then(|t| t.parse().ok())
                .and_then(|t| self.origins.remove(&t));
            if origin.is_some() {
                self.emit_published(project, epoch, offset, frame.into(), origin);
            }
            return Ok(());
        }
        if let Some(c) = self.cursors.get(&project) {
            if c.epoch == epoch {
                if offset <= c.last {
                    // Emitted already (by a catch-up read): only its origin is left to forget.
                    if let Some(t) = tag.and_then(|t| t.parse().ok()) {
                        self.origins.remove(&t);
                    }
                    return Ok(());
                }
                if offset > c.last + 1 {
                    let from = c.last + 1;
                    self.fill(link, project, from, offset - 1).await?;
                }
            }
        }
        let origin = tag
            .and_then(|t| t.parse().ok())
            .and_then(|t| self.origins.remove(&t));
        self.emit_published(project, epoch, offset, frame.into(), origin);
        Ok(())
    }

    fn emit_published(
        &mut self,
        project: u64,
        epoch: &str,
        offset: u64,
        frame: Frame,
        origin: Option<Origin>,
    ) {
        if self.follows.contains_key(&project) {
            self.cursors.insert(
                project,
                Cursor {
                    epoch: epoch.to_string(),
                    last: offset,
                },
            );
        }
        self.emit(BrokerEvent::Published {
            project,
            position: LogPosition {
                epoch: epoch.to_string(),
                offset,
            },
            frame,
            origin,
        });
        self.release_duplicates();
    }

    /// The held duplicates whose first place is now emitted (or never will be) go.
    fn release_duplicates(&mut self) {
        if !self.duplicates.is_empty() {
            let waiting = std::mem::take(&mut self.duplicates);
            for (project, position, origin) in waiting {
                self.duplicate(project, position, origin);
            }
        }
    }

    /// A resend's first place: answered once this node has emitted that place (the sender's
    /// ack must not overtake the messages before it), at once if it has or never will.
    fn duplicate(&mut self, project: u64, position: LogPosition, origin: Origin) {
        let waits = self
            .cursors
            .get(&project)
            .is_some_and(|c| c.epoch == position.epoch && c.last < position.offset);
        if waits {
            self.duplicates.push((project, position, origin));
        } else {
            self.emit(BrokerEvent::Duplicate {
                project,
                position,
                origin,
            });
        }
    }

    /// Emits what the log holds from `from` to `to` (`None`: its end) if it still is the
    /// cursor's epoch; returns the log's epoch and top (`None`: the log is gone).
    async fn fill(
        &mut self,
        link: &mut Link,
        project: u64,
        from: u64,
        to: u64,
    ) -> Result<Option<(String, u64)>, Fault> {
        self.read_into(link, project, from, Some(to)).await
    }

    async fn read_into(
        &mut self,
        link: &mut Link,
        project: u64,
        from: u64,
        to: Option<u64>,
    ) -> Result<Option<(String, u64)>, Fault> {
        let cmd = self.read_cmd(project, from, to);
        let reply: Value = match cmd.query_async(&mut link.cmd).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "redis broker: read failed");
                return Err(Fault {
                    in_flight: Vec::new(),
                });
            }
        };
        Ok(self.take_read(project, reply))
    }

    /// The read script for a project's entries from `from` to `to` (`None`: the log's end).
    fn read_cmd(&self, project: u64, from: u64, to: Option<u64>) -> Cmd {
        let keys = [self.keys.meta(project), self.keys.log(project)];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let last = to.map_or("+".to_string(), |t| t.to_string());
        let count = self.capacity.to_string();
        evalsha(
            &self.scripts.read,
            &keys,
            &[&from.to_string(), &last, &count],
        )
    }

    /// Emits what a read returned past the cursor, if the log still is the cursor's epoch;
    /// returns the log's epoch and top (`None`: the log is gone).
    fn take_read(&mut self, project: u64, reply: Value) -> Option<(String, u64)> {
        let Value::Array(items) = reply else {
            return None;
        };
        if items.len() < 2 {
            return None;
        }
        let (Some(epoch), Some(top)) = (text_of(&items[0]), u64_of(&items[1])) else {
            return None;
        };
        let same = self.cursors.get(&project).is_some_and(|c| c.epoch == epoch);
        if same {
            for entry in items[2..].chunks_exact(3) {
                let (Some(id), Some(frame), tag) =
                    (text_of(&entry[0]), text_of(&entry[1]), text_of(&entry[2]))
                else {
                    continue;
                };
                let Some(offset) = id.split('-').next().and_then(|o| o.parse::<u64>().ok()) else {
                    continue;
                };
                if self.cursors.get(&project).is_some_and(|c| offset <= c.last) {
                    continue;
                }
                let origin = tag.and_then(|t| {
                    let (node, token) = t.split_once('|')?;
                    self.own_origin(node, token)
                });
                self.emit_published(project, &epoch, offset, frame.into(), origin);
            }
        }
        Some((epoch, top))
    }

    /// A join's marker came through: everything up to its top has been emitted (filled in if the
    /// channel missed some), so its answer goes now.
    async fn answer_join(&mut self, link: &mut Link, reply: JoinReply) -> Result<(), Fault> {
        let project = reply.project;
        let top = reply.answer.top.clone();
        match self.cursors.get(&project) {
            // The joiner left before its answer, and nobody else here is a member.
            _ if !self.follows.contains_key(&project) => {}
            Some(c) if c.epoch == top.epoch => {
                if c.last < top.offset {
                    let from = c.last + 1;
                    self.fill(link, project, from, top.offset).await?;
                }
                if let Some(c) = self.cursors.get_mut(&project) {
                    c.last = c.last.max(top.offset);
                }
            }
            _ => {
                self.cursors.insert(
                    project,
                    Cursor {
                        epoch: top.epoch.clone(),
                        last: top.offset,
                    },
                );
            }
        }
        self.emit(BrokerEvent::Joined {
            project,
            conn: reply.conn,
            answer: reply.answer,
        });
        Ok(())
    }

    // ---- faults -------------------------------------------------------------------------

    /// The connection broke: `Down`, then every command whose outcome is unknown and every join
    /// still waiting for its marker fails.
    fn down(&mut self, fault: Fault) {
        tracing::warn!(node = %self.node, "redis broker down");
        self.emit(BrokerEvent::Down {
            retry_after_ms: self.retry_after_ms(),
        });
        self.fail_all(fault.in_flight);
    }

    fn fail_all(&mut self, commands: Vec<BrokerCommand>) {
        let retry_after_ms = self.retry_after_ms();
        let joins: BTreeMap<u64, JoinReply> = self.joins.drain().collect();
        for command in commands
            .into_iter()
            .chain(joins.into_values().map(|j| j.command))
        {
            self.failed(command, retry_after_ms);
        }
        self.flush();
    }

    /// The broker gives up on a command. A join given up on is no member (the core drops it),
    /// so its connection no longer makes this node follow the project.
    ///
    /// Presence must not outlive its connection, so a leave is never given up on, and neither
    /// is the entry a failed join may have written (its script may have run before the
    /// connection broke): both go again, before anything else, once Redis answers.
    fn failed(&mut self, command: BrokerCommand, retry_after_ms: u64) {
        match &command {
            BrokerCommand::Join {
                project,
                conn,
                user,
                ..
            } => {
                self.unfollow(*project, *conn);
                self.leaves.push(BrokerCommand::Leave {
                    project: *project,
                    conn: *conn,
                    user: user.clone(),
                });
            }
            BrokerCommand::Leave { .. } => {
                // Nobody waits for its answer: it is carried out later instead.
                self.leaves.push(command);
                return;
            }
            _ => {}
        }
        self.emit(BrokerEvent::Failed {
            command,
            retry_after_ms,
        });
    }

    /// A connection is no longer a member: once a project has none here, this node stops
    /// following it (its cursor goes; a later join starts from that join's top).
    fn unfollow(&mut self, project: u64, conn: ConnId) {
        let Some(conns) = self.follows.get_mut(&project) else {
            return;
        };
        conns.remove(&conn);
        if conns.is_empty() {
            self.follows.remove(&project);
            self.cursors.remove(&project);
        }
    }

    fn retry_after_ms(&self) -> u64 {
        self.backoff.as_millis() as u64
    }

    /// Tries to connect again (backing off up to a second), failing every command meanwhile;
    /// `None` once the broker is dropped.
    async fn reconnect(&mut self) -> Option<Link> {
        loop {
            let wait = tokio::time::sleep(self.backoff);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    command = self.rx.recv() => {
                        let command = command?;
                        let retry_after_ms = self.retry_after_ms();
                        self.failed(command, retry_after_ms);
                        self.flush();
                    }
                }
            }
            match Link::open(&self.client, &self.scripts, &self.keys.channel).await {
                Ok(link) => return Some(link),
                Err(e) => {
                    tracing::debug!(error = %e, "redis broker: reconnect failed");
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Connected again: the leaves that met the broken connection, then the catch-up.
    async fn recover(&mut self, link: &mut Link) -> Result<(), Fault> {
        if !self.leaves.is_empty() {
            let leaves = std::mem::take(&mut self.leaves);
            self.send(link, leaves).await?;
        }
        self.catch_up(link).await
    }

    /// Subscribed again: every project this node follows gets what its log holds past the
    /// node's cursor (the channel lost it meanwhile). A log that is gone or has another epoch
    /// was lost by Redis: its next message carries the new epoch and members recover by
    /// themselves.
    async fn catch_up(&mut self, link: &mut Link) -> Result<(), Fault> {
        let projects: Vec<(u64, Cursor)> =
            self.cursors.iter().map(|(p, c)| (*p, c.clone())).collect();
        // One round trip per `CATCH_UP_BATCH` projects (a pipeline of reads), not per project;
        // bounded, so that one reply never grows past what the response timeout allows.
        for chunk in projects.chunks(CATCH_UP_BATCH) {
            let mut pipe = redis::pipe();
            for (project, cursor) in chunk {
                pipe.add_command(self.read_cmd(*project, cursor.last + 1, None));
            }
            let replies: Vec<Value> = match pipe.query_async::<Vec<Value>>(&mut link.cmd).await {
                Ok(r) if r.len() == chunk.len() => r,
                Ok(_) => {
                    return Err(Fault {
                        in_flight: Vec::new(),
                    })
                }
                Err(e) => {
                    tracing::warn!(error = %e, "redis broker: catch-up failed");
                    return Err(Fault {
                        in_flight: Vec::new(),
                    });
                }
            };
            for ((project, cursor), reply) in chunk.iter().zip(replies) {
                match self.take_read(*project, reply) {
                    Some((epoch, top)) if epoch == cursor.epoch => {
                        if let Some(c) = self.cursors.get_mut(project) {
                            // Entries that aged out are lost to this node: members see the hole.
                            c.last = c.last.max(top);
                        }
                    }
                    _ => {
                        self.cursors.remove(project);
                    }
                }
            }
        }
        // Whatever was sent before the fault and not seen since will not be.
        self.origins.clear();
        self.release_duplicates();
        Ok(())
    }

    // ---- events to the hub --------------------------------------------------------------

    fn emit(&mut self, event: BrokerEvent) {
        self.queued.push(event);
    }

    fn flush(&mut self) {
        if self.queued.is_empty() {
            return;
        }
        {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(self.queued.drain(..));
        }
        (self.wake)();
    }
}

// ---- replies --------------------------------------------------------------------------------

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn u64_of(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => text_of(other)?.parse().ok(),
    }
}

fn empty_state() -> Json {
    Json::Object(Default::default())
}

/// A state hash's `version` and `state` (a project never updated: 0 and `{}`).
fn state_of(version: &Value, state: &Value) -> (u64, Json) {
    let version = u64_of(version).unwrap_or(0);
    let state = text_of(state)
        .filter(|s| !s.is_empty())
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(empty_state);
    (version, state)
}

fn join_reply(command: BrokerCommand, reply: &Value) -> Option<JoinReply> {
    let BrokerCommand::Join { project, conn, .. } = &command else {
        return None;
    };
    let (project, conn) = (*project, *conn);
    let Value::Array(items) = reply else {
        return None;
    };
    if items.len() < 5 {
        return None;
    }
    let top = LogPosition {
        epoch: text_of(&items[0])?,
        offset: u64_of(&items[1])?,
    };
    let (version, state) = state_of(&items[2], &items[3]);
    let n = usize::try_from(u64_of(items.get(5)?)?).ok()?;
    let present: Vec<String> = items.get(6..6 + n)?.iter().filter_map(text_of).collect();
    // A frame of the joiner's own is preceded by `=offset|id` (a frame is a JSON object).
    let mut own = Vec::new();
    let mut frames = Vec::new();
    for item in items[6 + n..].iter().filter_map(text_of) {
        match item.strip_prefix('=').and_then(|m| m.split_once('|')) {
            Some((offset, id)) => own.push((offset.parse().ok()?, id.to_string())),
            None => frames.push(Frame::from(item)),
        }
    }
    let replay = match text_of(&items[4])?.as_str() {
        "none" => None,
        "ok" => Some(Ok(frames)),
        "epoch_changed" => Some(Err(Unrecoverable::EpochChanged)),
        "ahead" => Some(Err(Unrecoverable::Ahead)),
        "too_old" => Some(Err(Unrecoverable::TooOld)),
        "too_many" => Some(Err(Unrecoverable::TooMany)),
        _ => return None,
    };
    Some(JoinReply {
        command,
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
    })
}

/// A publish script's `{'dup', epoch, offset}`: the first place of a message logged already.
fn duplicate_of(reply: &Value) -> Option<LogPosition> {
    let Value::Array(items) = reply else {
        return None;
    };
    if items.len() != 3 || text_of(&items[0]).as_deref() != Some("dup") {
        return None;
    }
    Some(LogPosition {
        epoch: text_of(&items[1])?,
        offset: u64_of(&items[2])?,
    })
}

// ---- frames ---------------------------------------------------------------------------------

/// The `project_updated` message of `state` (without its position) in two parts around its
/// version's digits, for the update script to put the new version between: the text with
/// version 0 and with version 1 differ in that one byte, wherever the map puts `version`.
fn update_frame_parts(project: u64, state: &Json) -> (String, String) {
    let text = |v| project_updated(project, state.clone(), v).to_json();
    let (zero, one) = (text(0), text(1));
    let at = zero
        .bytes()
        .zip(one.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(zero.len());
    (
        zero[..at].to_string(),
        zero.get(at + 1..).unwrap_or_default().to_string(),
    )
}
